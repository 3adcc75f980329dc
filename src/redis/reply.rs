//! Inbound values, read as a stream: every RESP2 and RESP3 type, nested to
//! any depth (`+ - : $ *` and `_ , # ( ! = % ~ > |`). A value is complete
//! only once its whole nested structure is in.
//!
//! Matching replies to commands needs little of a value: its type, the
//! line of a simple string or error (`+QUEUED`, `-WRONGTYPE …`), and for
//! an aggregate the first few direct elements (a pub/sub push is
//! `[kind, channel, payload]` or `[kind, pattern, channel, payload]`).
//! That much is kept, capped; everything else is counted and skipped as it
//! streams by. Depth costs no memory: below the top value's direct
//! elements, one counter holds how many values are still to come (an
//! aggregate of n adds n, a map 2n; an attribute adds its 2n values without
//! counting as one).

use super::line::Line;
use super::{parse_int, LEN_LINE_BYTES, MAX_KEY_BYTES};

/// Most bytes kept of a top-level simple string or error, or of a blob
/// error (enough for the prefix and the status description).
const HEAD_BYTES: usize = 256;
/// Direct elements of an aggregate recorded.
const MAX_CHILDREN: usize = 4;
/// Most bytes kept of a short element (a push kind, a count).
const SHORT_BYTES: usize = 32;
// A compacted stream carries every byte kept of a string.
const _: () = assert!(
    HEAD_BYTES <= super::CARRIED
        && MAX_KEY_BYTES <= super::CARRIED
        && SHORT_BYTES <= super::CARRIED
);

/// One direct element of a top-level aggregate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Child {
    /// Its type byte.
    pub(crate) kind: u8,
    /// Its first bytes (a string's content, a number's digits), if kept.
    pub(crate) bytes: Vec<u8>,
    /// A string's length, or an aggregate's element count.
    pub(crate) len: u64,
}

/// A complete top-level value, as far as it was kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Reply {
    /// Its type byte (`+`, `-`, `*`, `>`, `%`…).
    pub(crate) kind: u8,
    /// A simple string's or error's line, or a blob error's first bytes.
    pub(crate) head: Vec<u8>,
    /// A null (`_`, `$-1`, `*-1`).
    pub(crate) null: bool,
    /// The first direct elements of an aggregate.
    pub(crate) children: Vec<Child>,
}

impl Reply {
    /// An error reply (`-ERR …` or RESP3's blob error `!`).
    pub(crate) fn is_error(&self) -> bool {
        self.kind == b'-' || self.kind == b'!'
    }

    /// A simple string reply equal to `s` (`+OK`).
    pub(crate) fn is_simple(&self, s: &[u8]) -> bool {
        self.kind == b'+' && self.head == s
    }

    /// A non-null array, set or map.
    pub(crate) fn is_aggregate(&self) -> bool {
        matches!(self.kind, b'*' | b'~' | b'%') && !self.null
    }

    /// The content of direct element `i`, if it was kept.
    pub(crate) fn child(&self, i: usize) -> Option<&[u8]> {
        self.children.get(i).map(|c| c.bytes.as_slice())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Into {
    Nothing,
    Head,
    Child,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting a type byte.
    Type,
    /// The rest of a line after a type byte.
    Line(u8),
    /// A string's content: `left` bytes, the first `keep` of them kept.
    Bulk { left: u64, keep: usize, into: Into },
    /// The CR LF after a string's content.
    BulkEnd { left: u8 },
}

/// Where the value being read sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum At {
    Top,
    Child,
    Deep,
}

/// What follows type byte `ty` on its line: a length or count (`true`) or
/// a scalar's content (`false`); `None`: not a RESP type.
pub(super) fn counted(ty: u8) -> Option<bool> {
    match ty {
        b'$' | b'!' | b'=' | b'*' | b'~' | b'>' | b'%' | b'|' => Some(true),
        b'+' | b'-' | b':' | b',' | b'#' | b'(' | b'_' => Some(false),
        _ => None,
    }
}

/// The length or count on a complete line after type `ty`: `Ok(None)` for
/// RESP2's nulls (`$-1`, `*-1`), `Err` for anything else that is no count.
pub(super) fn count(line: &Line, ty: u8) -> Result<Option<u64>, ()> {
    match parse_int(line.content()) {
        Some(n) if line.complete() && n >= 0 => Ok(Some(n as u64)),
        Some(-1) if line.complete() && matches!(ty, b'$' | b'*') => Ok(None),
        _ => Err(()),
    }
}

/// The nesting of the value being read: the open top-level aggregate's
/// element count and how many are to come, and below its direct elements
/// one counter of the values still to come (an aggregate of n adds n, a
/// map 2n; an attribute adds its 2n values without counting as one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Shape {
    top: Option<(u64, u64)>,
    deep: u64,
}

impl Shape {
    pub(super) fn at(&self) -> At {
        if self.deep > 0 {
            At::Deep
        } else if self.top.is_some() {
            At::Child
        } else {
            At::Top
        }
    }

    /// Index of the next direct element of the open aggregate.
    pub(super) fn child_index(&self) -> u64 {
        self.top.map_or(0, |(n, left)| n - left)
    }

    /// An aggregate of `n` values (a map's counted twice) begins at `at`;
    /// true: the top-level value is complete.
    pub(super) fn aggregate(&mut self, n: u64, at: At) -> bool {
        match at {
            At::Deep => {
                self.deep = (self.deep - 1).saturating_add(n);
                self.top_complete()
            }
            At::Child => {
                if let Some((_, left)) = &mut self.top {
                    *left = left.saturating_sub(1);
                }
                self.deep = n;
                self.top_complete()
            }
            At::Top => {
                if n == 0 {
                    return true;
                }
                self.top = Some((n, n));
                false
            }
        }
    }

    /// An attribute of `n` pairs: they come first, then the value they
    /// annotate, in the same place.
    pub(super) fn attribute(&mut self, n: u64) {
        self.deep = self.deep.saturating_add(n.saturating_mul(2));
    }

    /// A scalar or string is complete; true: so is the top-level value.
    pub(super) fn value_done(&mut self) -> bool {
        if self.deep > 0 {
            self.deep -= 1;
            return self.top_complete();
        }
        if let Some((_, left)) = &mut self.top {
            *left = left.saturating_sub(1);
            return self.top_complete();
        }
        true
    }

    fn top_complete(&mut self) -> bool {
        if self.deep == 0 && matches!(self.top, Some((_, 0))) {
            self.top = None;
            return true;
        }
        false
    }

    /// Inside a top-level aggregate.
    pub(super) fn open(&self) -> bool {
        self.top.is_some() || self.deep > 0
    }
}

/// What [`ReplyReader::feed`] found.
#[derive(Debug)]
pub(crate) enum Step {
    /// Every byte taken; no value complete yet.
    Partial,
    /// A top-level value, complete after this many bytes of the input.
    Reply(Reply, usize),
    /// Bytes that are not RESP (or RESP3 streamed types, which Redis does
    /// not send).
    Malformed,
}

/// Reads top-level values from the inbound stream.
#[derive(Debug)]
pub(crate) struct ReplyReader {
    state: State,
    line: Line,
    shape: Shape,
    reply: Reply,
    /// Most content bytes of a string present in the stream: all of them,
    /// or [`super::CARRIED`] in a compacted one.
    carried: u64,
}

impl ReplyReader {
    pub(crate) fn new() -> ReplyReader {
        ReplyReader {
            state: State::Type,
            line: Line::default(),
            shape: Shape::default(),
            reply: Reply::default(),
            carried: u64::MAX,
        }
    }

    /// Reads a stream compacted by [`super::RedisCompactor`]: each string
    /// carries at most [`super::CARRIED`] bytes of its content.
    pub(crate) fn compacted() -> ReplyReader {
        ReplyReader {
            carried: super::CARRIED as u64,
            ..ReplyReader::new()
        }
    }

    /// Reads from `data` up to the end of the next complete value.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Step {
        let mut pos = 0;
        while let Some(rest) = data.get(pos..).filter(|r| !r.is_empty()) {
            match self.state {
                State::Type => {
                    let ty = rest.first().copied().unwrap_or_default();
                    pos += 1;
                    let cap = match counted(ty) {
                        Some(true) => LEN_LINE_BYTES,
                        Some(false) => self.scalar_cap(ty),
                        None => return Step::Malformed,
                    };
                    self.line.start(cap);
                    self.state = State::Line(ty);
                }
                State::Line(ty) => {
                    let Some(n) = self.line.feed(rest) else {
                        return Step::Partial;
                    };
                    pos += n;
                    self.state = State::Type;
                    match self.on_line(ty) {
                        Err(()) => return Step::Malformed,
                        Ok(Some(reply)) => return Step::Reply(reply, pos),
                        Ok(None) => {}
                    }
                }
                State::Bulk { left, keep, into } => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    let kept = rest.get(..keep.min(take)).unwrap_or_default();
                    match into {
                        Into::Head => self.reply.head.extend_from_slice(kept),
                        Into::Child => {
                            if let Some(c) = self.reply.children.last_mut() {
                                c.bytes.extend_from_slice(kept);
                            }
                        }
                        Into::Nothing => {}
                    }
                    pos += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::BulkEnd { left: 2 }
                    } else {
                        State::Bulk {
                            left,
                            keep: keep - kept.len(),
                            into,
                        }
                    };
                }
                State::BulkEnd { left } => {
                    let take = usize::from(left).min(rest.len());
                    pos += take;
                    let left = left - take as u8;
                    if left > 0 {
                        self.state = State::BulkEnd { left };
                        continue;
                    }
                    self.state = State::Type;
                    if let Some(reply) = self.value_done() {
                        return Step::Reply(reply, pos);
                    }
                }
            }
        }
        Step::Partial
    }

    fn at(&self) -> At {
        self.shape.at()
    }

    fn child_index(&self) -> u64 {
        self.shape.child_index()
    }

    /// How much of direct element `i` to keep: the push kind, the channel
    /// or pattern, a pmessage's channel, a confirmation's count; never a
    /// message's payload.
    fn child_cap(&self, i: u64, string: bool) -> usize {
        match i {
            0 => SHORT_BYTES,
            1 => MAX_KEY_BYTES,
            2 if self.reply.child(0) == Some(b"pmessage") => MAX_KEY_BYTES,
            2 if !string => SHORT_BYTES,
            _ => 0,
        }
    }

    fn scalar_cap(&self, ty: u8) -> usize {
        match self.at() {
            At::Top if ty == b'+' || ty == b'-' => HEAD_BYTES,
            At::Child => self.child_cap(self.child_index(), false),
            _ => 0,
        }
    }

    /// Records a direct element of the open aggregate, if it is among the
    /// first few.
    fn push_child(&mut self, kind: u8, len: u64) -> bool {
        if self.reply.children.len() >= MAX_CHILDREN {
            return false;
        }
        self.reply.children.push(Child {
            kind,
            bytes: Vec::new(),
            len,
        });
        true
    }

    /// A line after type `ty` is complete.
    fn on_line(&mut self, ty: u8) -> Result<Option<Reply>, ()> {
        let at = self.at();
        if matches!(ty, b'+' | b'-' | b':' | b',' | b'#' | b'(' | b'_') {
            let len = self.line.len();
            match at {
                At::Top => {
                    self.reply.kind = ty;
                    self.reply.null = ty == b'_';
                    self.reply.head.extend_from_slice(self.line.content());
                }
                At::Child => {
                    if self.push_child(ty, len) {
                        if let Some(c) = self.reply.children.last_mut() {
                            c.bytes.extend_from_slice(self.line.content());
                        }
                    }
                }
                At::Deep => {}
            }
            return Ok(self.value_done());
        }
        // A length or a count.
        let Some(n) = count(&self.line, ty)? else {
            // RESP2's null string and null array.
            match at {
                At::Top => {
                    self.reply.kind = ty;
                    self.reply.null = true;
                }
                At::Child => {
                    self.push_child(ty, 0);
                }
                At::Deep => {}
            }
            return Ok(self.value_done());
        };
        match ty {
            b'$' | b'!' | b'=' => {
                let (keep, into) = match at {
                    At::Top => {
                        self.reply.kind = ty;
                        if ty == b'!' {
                            (HEAD_BYTES, Into::Head)
                        } else {
                            (0, Into::Nothing)
                        }
                    }
                    At::Child => {
                        let cap = self.child_cap(self.child_index(), true);
                        if self.push_child(ty, n) {
                            (cap, Into::Child)
                        } else {
                            (0, Into::Nothing)
                        }
                    }
                    At::Deep => (0, Into::Nothing),
                };
                self.state = State::Bulk {
                    left: n.min(self.carried),
                    keep,
                    into,
                };
                Ok(None)
            }
            b'*' | b'~' | b'>' | b'%' => {
                let n = if ty == b'%' { n.saturating_mul(2) } else { n };
                match at {
                    At::Top => self.reply.kind = ty,
                    At::Child => {
                        self.push_child(ty, n);
                    }
                    At::Deep => {}
                }
                Ok(self.shape.aggregate(n, at).then(|| self.take_reply()))
            }
            _ => {
                self.shape.attribute(n);
                Ok(None)
            }
        }
    }

    /// A scalar or string is complete.
    fn value_done(&mut self) -> Option<Reply> {
        self.shape.value_done().then(|| self.take_reply())
    }

    fn take_reply(&mut self) -> Reply {
        std::mem::take(&mut self.reply)
    }

    /// Whether a value has started and is not complete.
    #[cfg(test)]
    pub(crate) fn mid_value(&self) -> bool {
        self.state != State::Type || self.shape.open()
    }

    /// Bytes held.
    pub(crate) fn buffered(&self) -> usize {
        self.line.buffered()
            + self.reply.head.len()
            + self
                .reply
                .children
                .iter()
                .map(|c| c.bytes.len())
                .sum::<usize>()
    }

    /// Frees everything (when tracing stops).
    pub(crate) fn release(&mut self) {
        self.line.release();
        self.reply = Reply::default();
        self.shape = Shape::default();
        self.state = State::Type;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads every value of `bytes`, whole and then byte by byte; both
    /// must agree. Returns the values and whether bytes were left over.
    fn read_all(bytes: &[u8]) -> Vec<Reply> {
        let mut whole = Vec::new();
        let mut r = ReplyReader::new();
        let mut pos = 0;
        loop {
            match r.feed(&bytes[pos..]) {
                Step::Reply(reply, n) => {
                    whole.push(reply);
                    pos += n;
                }
                Step::Partial => break,
                Step::Malformed => panic!("malformed at {pos}"),
            }
        }
        let mut single = Vec::new();
        let mut r = ReplyReader::new();
        for b in bytes.chunks(1) {
            match r.feed(b) {
                Step::Reply(reply, n) => {
                    assert_eq!(n, 1);
                    single.push(reply);
                }
                Step::Partial => {}
                Step::Malformed => panic!("malformed"),
            }
        }
        assert_eq!(whole, single);
        assert!(!r.mid_value());
        whole
    }

    #[test]
    fn every_type_completes_once() {
        let cases: &[(&[u8], u8)] = &[
            (b"+OK\r\n", b'+'),
            (b"-ERR no\r\n", b'-'),
            (b":42\r\n", b':'),
            (b"$5\r\nhello\r\n", b'$'),
            (b"$0\r\n\r\n", b'$'),
            (b"$-1\r\n", b'$'),
            (b"*-1\r\n", b'*'),
            (b"*0\r\n", b'*'),
            (b"*2\r\n:1\r\n$1\r\nx\r\n", b'*'),
            (b"_\r\n", b'_'),
            (b",1.5\r\n", b','),
            (b"#t\r\n", b'#'),
            (b"(3492890328409238509324850943850943825024385\r\n", b'('),
            (b"!21\r\nSYNTAX invalid syntax\r\n", b'!'),
            (b"=15\r\ntxt:Some string\r\n", b'='),
            (b"%2\r\n+a\r\n:1\r\n+b\r\n:2\r\n", b'%'),
            (b"~2\r\n+a\r\n+b\r\n", b'~'),
            (b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n", b'>'),
            (b"|1\r\n+ttl\r\n:3\r\n+OK\r\n", b'+'),
            (b"*1\r\n*1\r\n*1\r\n*1\r\n*0\r\n", b'*'),
            (
                b"*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n*2\r\n%1\r\n:1\r\n~0\r\n:2\r\n",
                b'*',
            ),
        ];
        for (bytes, kind) in cases {
            let got = read_all(bytes);
            assert_eq!(got.len(), 1, "{:?}", String::from_utf8_lossy(bytes));
            assert_eq!(got[0].kind, *kind, "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn heads_and_children() {
        let r = read_all(b"-WRONGTYPE Operation against a key\r\n");
        assert_eq!(r[0].head, b"WRONGTYPE Operation against a key");
        assert!(r[0].is_error());
        let r = read_all(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n");
        assert_eq!(r[0].child(0), Some(&b"message"[..]));
        assert_eq!(r[0].child(1), Some(&b"ch"[..]));
        assert_eq!(r[0].child(2), Some(&b""[..]), "a payload is not kept");
        assert_eq!(r[0].children[2].len, 5);
        let r = read_all(b">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$3\r\nabc\r\n");
        assert_eq!(r[0].child(2), Some(&b"ch"[..]));
        assert_eq!(r[0].children[3].len, 3);
        let r = read_all(b"*3\r\n$9\r\nsubscribe\r\n$-1\r\n:0\r\n");
        assert_eq!(r[0].child(2), Some(&b"0"[..]));
        let r = read_all(b"+OK\r\n+QUEUED\r\n*-1\r\n");
        assert!(r[0].is_simple(b"OK") && r[1].is_simple(b"QUEUED") && r[2].null);
    }

    #[test]
    fn big_and_deep_values_cost_no_memory() {
        let mut bytes = b"*3\r\n".to_vec();
        bytes.extend_from_slice(b"$1000000\r\n");
        bytes.extend(std::iter::repeat_n(b'x', 1_000_000));
        bytes.extend_from_slice(b"\r\n");
        bytes.extend(std::iter::repeat_n(&b"*1\r\n"[..], 100_000).flatten());
        bytes.extend_from_slice(b":1\r\n:2\r\n");
        let mut r = ReplyReader::new();
        let mut got = Vec::new();
        for piece in bytes.chunks(4096) {
            let mut pos = 0;
            while pos < piece.len() {
                match r.feed(&piece[pos..]) {
                    Step::Reply(reply, n) => {
                        got.push(reply);
                        pos += n;
                    }
                    Step::Partial => break,
                    Step::Malformed => panic!(),
                }
            }
            assert!(r.buffered() <= 64);
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].children.len(), 3);
    }

    #[test]
    fn malformed() {
        for bad in [
            &b"x"[..],
            b"$x\r\n",
            b"$-2\r\n",
            b"%-1\r\n",
            b"*?\r\n",
            b"$?\r\n",
            b"$1234567890123456789012\r\n",
        ] {
            let mut r = ReplyReader::new();
            assert!(matches!(r.feed(bad), Step::Malformed), "{bad:?}");
        }
    }
}
