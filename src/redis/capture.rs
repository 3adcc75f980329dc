//! The app's-thread side of a captured Redis connection (see
//! [`crate::capture`] and [`Compact`]): both directions are framed by
//! RESP's own lines, lengths and counts, by the same rules as the parser's
//! readers, and every byte goes on except the content of a string past its
//! first [`CARRIED`] (a 1 MB SET goes on as its head, 256 bytes of the value
//! and the CR LF after it). Lines go on whole.
//!
//! Two things are read here because the app's thread needs them at once:
//! where a command starts (its record carries the thread's context, the
//! parent of the command's span), and where a pub/sub message ends (its
//! CONSUMER span's identity is chosen here and becomes the thread's active
//! context while the app handles the message, as on a connection parsed on
//! the app's thread). A message is a push (`>`) whose first element is
//! `message`, `pmessage` or `smessage`, or, in RESP2 (no map or push came
//! yet), such an array once the connection has sent a subscribe command
//! (and no RESET since).

use super::command::{arg_len, argc};
use super::line::Line;
use super::reply::{count, counted, At, Shape};
use super::{CARRIED, LEN_LINE_BYTES};
use crate::protocol::{Compact, Compacted, Flow};

/// Most bytes of a command's name looked at: `PSUBSCRIBE`.
const NAME_BYTES: usize = 10;
/// Most bytes of a value's first element looked at: `pmessage`.
const KIND_BYTES: usize = 8;

/// Outbound framing, as [`super::command::CommandReader`] frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Out {
    Idle,
    Count,
    ArgStart,
    ArgLen,
    Arg(Body),
    Inline,
}

/// Inbound framing, as [`super::reply::ReplyReader`] frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum In {
    Type,
    Line(u8),
    Bulk(Body),
}

/// A string's content going by, then the two bytes after it (unchecked,
/// as the parser skips them): `keep` bytes go on, then `skip` do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Body {
    keep: u64,
    skip: u64,
    end: u8,
}

impl Body {
    /// A string of `len` content bytes.
    fn new(len: u64) -> Body {
        let keep = len.min(CARRIED as u64);
        Body {
            keep,
            skip: len - keep,
            end: 2,
        }
    }

    /// Takes what it can of `rest`, which starts at `pos` of the call's
    /// bytes: how many bytes, those of them that go on as content (for a
    /// look at a name), and whether the string is over.
    fn take<'a>(
        &mut self,
        rest: &'a [u8],
        pos: usize,
        runs: &mut Runs<'_, '_>,
    ) -> (usize, &'a [u8], bool) {
        if self.keep > 0 {
            let n = upto(self.keep, rest);
            self.keep -= n as u64;
            return (n, rest.get(..n).unwrap_or_default(), false);
        }
        if self.skip > 0 {
            let n = upto(self.skip, rest);
            runs.cut(pos, n);
            self.skip -= n as u64;
            return (n, &[], false);
        }
        let n = upto(u64::from(self.end), rest);
        self.end -= n as u8;
        (n, &[], self.end == 0)
    }
}

/// A few bytes of a string, and its full length.
#[derive(Clone, Copy, Debug, Default)]
struct Peek {
    bytes: [u8; NAME_BYTES],
    kept: usize,
    len: u64,
}

impl Peek {
    fn start(&mut self, len: u64) {
        self.kept = 0;
        self.len = len;
    }

    fn take(&mut self, data: &[u8]) {
        let n = (NAME_BYTES - self.kept).min(data.len());
        if let (Some(to), Some(from)) =
            (self.bytes.get_mut(self.kept..self.kept + n), data.get(..n))
        {
            to.copy_from_slice(from);
        }
        self.kept += n;
    }

    /// The whole string, if it was no longer than the bytes looked at.
    fn whole(&self) -> Option<&[u8]> {
        (self.len == self.kept as u64).then(|| self.bytes.get(..self.kept).unwrap_or_default())
    }
}

/// Both directions of a captured Redis client connection.
#[derive(Debug)]
pub struct RedisCompactor {
    out: Out,
    out_line: Line,
    argc: u64,
    /// Arguments of the current command fully sent.
    args: u64,
    name: Peek,
    /// A subscribe command was sent: arrays may be pub/sub messages.
    subscribed: bool,
    /// A map or a push came: the connection speaks RESP3, where messages
    /// come only as pushes.
    resp3: bool,
    inb: In,
    in_line: Line,
    shape: Shape,
    /// The open top-level value's type and element count, and its first
    /// element, when that is a string.
    top: u8,
    top_len: u64,
    first: Peek,
    /// Commands started and top-level values received.
    sent: u64,
    received: u64,
}

impl RedisCompactor {
    pub fn new() -> RedisCompactor {
        RedisCompactor {
            out: Out::Idle,
            out_line: Line::default(),
            argc: 0,
            args: 0,
            name: Peek::default(),
            subscribed: false,
            resp3: false,
            inb: In::Type,
            in_line: Line::default(),
            shape: Shape::default(),
            top: 0,
            top_len: 0,
            first: Peek::default(),
            sent: 0,
            received: 0,
        }
    }
}

impl Default for RedisCompactor {
    fn default() -> Self {
        RedisCompactor::new()
    }
}

/// The parts of a call's bytes that go on.
struct Runs<'a, 'o> {
    data: &'a [u8],
    out: &'o mut Vec<u8>,
    /// Where the part going on now began.
    from: usize,
}

impl Runs<'_, '_> {
    /// `n` bytes at `at` do not go on.
    fn cut(&mut self, at: usize, n: usize) {
        self.out
            .extend_from_slice(self.data.get(self.from..at).unwrap_or_default());
        self.from = at + n;
    }

    fn finish(self) {
        self.out
            .extend_from_slice(self.data.get(self.from..).unwrap_or_default());
    }
}

/// Takes up to `want` bytes of `rest`: how many.
fn upto(want: u64, rest: &[u8]) -> usize {
    usize::try_from(want).unwrap_or(usize::MAX).min(rest.len())
}

impl RedisCompactor {
    /// Commands: notes in `started` whether one started in `data`; `Err`
    /// where the parser finds bytes that are not RESP.
    fn outbound(
        &mut self,
        data: &[u8],
        runs: &mut Runs<'_, '_>,
        started: &mut bool,
    ) -> Result<(), ()> {
        let mut pos = 0;
        while let Some(rest) = data.get(pos..).filter(|r| !r.is_empty()) {
            match self.out {
                Out::Idle => match rest.first().copied().unwrap_or_default() {
                    b'*' => {
                        pos += 1;
                        *started = true;
                        self.out_line.start(LEN_LINE_BYTES);
                        self.out = Out::Count;
                    }
                    b'\r' | b'\n' | b' ' => pos += 1,
                    b if b.is_ascii_alphabetic() => {
                        *started = true;
                        self.sent += 1;
                        self.out_line.start(NAME_BYTES + 1);
                        self.out = Out::Inline;
                    }
                    _ => return Err(()),
                },
                Out::Count => {
                    let Some(n) = self.out_line.feed(rest) else {
                        break;
                    };
                    pos += n;
                    self.out = match argc(&self.out_line)? {
                        None => Out::Idle,
                        Some(c) => {
                            self.sent += 1;
                            self.argc = c;
                            self.args = 0;
                            Out::ArgStart
                        }
                    };
                }
                Out::ArgStart => {
                    if rest.first() != Some(&b'$') {
                        return Err(());
                    }
                    pos += 1;
                    self.out_line.start(LEN_LINE_BYTES);
                    self.out = Out::ArgLen;
                }
                Out::ArgLen => {
                    let Some(n) = self.out_line.feed(rest) else {
                        break;
                    };
                    pos += n;
                    let len = arg_len(&self.out_line).ok_or(())?;
                    if self.args == 0 {
                        self.name.start(len);
                    }
                    self.out = Out::Arg(Body::new(len));
                }
                Out::Arg(mut body) => {
                    let (n, content, over) = body.take(rest, pos, runs);
                    if self.args == 0 {
                        self.name.take(content);
                    }
                    pos += n;
                    if !over {
                        self.out = Out::Arg(body);
                        continue;
                    }
                    if self.args == 0 {
                        self.saw_name(false);
                    }
                    self.args += 1;
                    self.out = if self.args < self.argc {
                        Out::ArgStart
                    } else {
                        Out::Idle
                    };
                }
                Out::Inline => {
                    let Some(n) = self.out_line.feed(rest) else {
                        break;
                    };
                    pos += n;
                    self.saw_name(true);
                    self.out = Out::Idle;
                }
            }
        }
        Ok(())
    }

    /// A command's name is in: a subscribe command lets arrays be messages;
    /// RESET goes back to RESP2 with no subscription.
    fn saw_name(&mut self, inline: bool) {
        let name = if inline {
            let line = self.out_line.content();
            line.split(|b| b.is_ascii_whitespace()).next()
        } else {
            self.name.whole()
        };
        let Some(name) = name else {
            return;
        };
        if name.eq_ignore_ascii_case(b"RESET") {
            self.subscribed = false;
            self.resp3 = false;
        }
        self.subscribed |= [&b"SUBSCRIBE"[..], b"PSUBSCRIBE", b"SSUBSCRIBE"]
            .iter()
            .any(|s| name.eq_ignore_ascii_case(s));
    }

    /// Replies and pushes: counts in `messages` those that ended in
    /// `data`; `Err` where the parser finds bytes that are not RESP.
    fn inbound(
        &mut self,
        data: &[u8],
        runs: &mut Runs<'_, '_>,
        messages: &mut u32,
    ) -> Result<(), ()> {
        let mut pos = 0;
        while let Some(rest) = data.get(pos..).filter(|r| !r.is_empty()) {
            match self.inb {
                In::Type => {
                    let ty = rest.first().copied().unwrap_or_default();
                    pos += 1;
                    let cap = match counted(ty).ok_or(())? {
                        true => LEN_LINE_BYTES,
                        false if self.looks_at_first() => KIND_BYTES + 1,
                        false => 0,
                    };
                    self.in_line.start(cap);
                    self.inb = In::Line(ty);
                }
                In::Line(ty) => {
                    let Some(n) = self.in_line.feed(rest) else {
                        break;
                    };
                    pos += n;
                    self.inb = In::Type;
                    if let Some(message) = self.on_line(ty)? {
                        *messages += u32::from(message);
                    }
                }
                In::Bulk(mut body) => {
                    let (n, content, over) = body.take(rest, pos, runs);
                    if self.looks_at_first() {
                        self.first.take(content);
                    }
                    pos += n;
                    if !over {
                        self.inb = In::Bulk(body);
                        continue;
                    }
                    self.inb = In::Type;
                    if let Some(message) = self.value_done() {
                        *messages += u32::from(message);
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether the value being read is a top-level aggregate's first
    /// element, which tells a message.
    fn looks_at_first(&self) -> bool {
        self.shape.at() == At::Child && self.shape.child_index() == 0
    }

    /// A line after type `ty` is complete: `Some` when a top-level value
    /// ended (whether it is a message).
    fn on_line(&mut self, ty: u8) -> Result<Option<bool>, ()> {
        let at = self.shape.at();
        if counted(ty) == Some(false) {
            if self.looks_at_first() {
                let content = self.in_line.content();
                self.first.start(self.in_line.len());
                self.first.take(content);
            }
            return Ok(self.value_done());
        }
        let Some(n) = count(&self.in_line, ty)? else {
            if self.looks_at_first() {
                self.first.start(u64::MAX);
            }
            return Ok(self.value_done());
        };
        if at == At::Top {
            self.top = ty;
            self.top_len = n;
        }
        match ty {
            b'$' | b'!' | b'=' => {
                if self.looks_at_first() {
                    self.first.start(n);
                }
                self.inb = In::Bulk(Body::new(n));
                Ok(None)
            }
            b'*' | b'~' | b'>' | b'%' => {
                if self.looks_at_first() {
                    self.first.start(u64::MAX);
                }
                let n = if ty == b'%' { n.saturating_mul(2) } else { n };
                Ok(self.shape.aggregate(n, at).then(|| self.ended()))
            }
            _ => {
                self.shape.attribute(n);
                Ok(None)
            }
        }
    }

    /// A scalar or string is complete: `Some` when a top-level value ended.
    fn value_done(&mut self) -> Option<bool> {
        self.shape.value_done().then(|| self.ended())
    }

    /// A top-level value ended: whether it is a pub/sub message.
    fn ended(&mut self) -> bool {
        self.received += 1;
        // HELLO 3 is answered by a map, and only RESP3 has pushes.
        self.resp3 |= matches!(self.top, b'%' | b'>');
        let pubsub = self.top == b'>' || (self.top == b'*' && self.subscribed && !self.resp3);
        // As the parser makes a span of one: with a channel, and for a
        // pattern's message the pattern too.
        let message = pubsub
            && match self.first.whole() {
                Some(b"message" | b"smessage") => self.top_len >= 2,
                Some(b"pmessage") => self.top_len >= 3,
                _ => false,
            };
        self.top = 0;
        self.first.start(u64::MAX);
        message
    }
}

impl Compact for RedisCompactor {
    fn compact(&mut self, data: &[u8], outbound: bool, out: &mut Vec<u8>) -> Compacted {
        let mut runs = Runs { data, out, from: 0 };
        let (mut requests, mut messages) = (false, 0);
        let framed = if outbound {
            self.outbound(data, &mut runs, &mut requests)
        } else {
            self.inbound(data, &mut runs, &mut messages)
        };
        // Bytes that are not RESP go on whole: the parser stops at them.
        runs.finish();
        Compacted {
            flow: if framed.is_ok() {
                Flow::Continue
            } else {
                Flow::Stop
            },
            requests,
            messages,
        }
    }

    fn in_flight(&self) -> bool {
        self.out != Out::Idle
            || self.inb != In::Type
            || self.shape.open()
            || self.sent > self.received
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compacts `bytes` in calls of `step` bytes: what goes on, and the
    /// messages and requests seen.
    fn compact(
        c: &mut RedisCompactor,
        bytes: &[u8],
        outbound: bool,
        step: usize,
    ) -> (Vec<u8>, u32, usize) {
        let (mut out, mut messages, mut requests) = (Vec::new(), 0, 0);
        for piece in bytes.chunks(step) {
            let seen = c.compact(piece, outbound, &mut out);
            assert_eq!(seen.flow, Flow::Continue);
            messages += seen.messages;
            requests += usize::from(seen.requests);
        }
        (out, messages, requests)
    }

    #[test]
    fn long_strings_go_on_as_their_first_bytes() {
        let mut set = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000\r\n".to_vec();
        set.extend(std::iter::repeat_n(b'v', 1000));
        set.extend_from_slice(b"\r\n*1\r\n$4\r\nPING\r\n");
        let mut want = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000\r\n".to_vec();
        want.extend(std::iter::repeat_n(b'v', CARRIED));
        want.extend_from_slice(b"\r\n*1\r\n$4\r\nPING\r\n");
        for step in [1, 3, 7, 300, usize::MAX] {
            let mut c = RedisCompactor::new();
            let (out, _, requests) = compact(&mut c, &set, true, step);
            assert_eq!(out, want, "step {step}");
            assert!((1..=2).contains(&requests));
            assert!(c.in_flight());
            compact(&mut c, b"+OK\r\n", false, step);
            assert!(c.in_flight(), "PING's reply is not in yet");
            let mut reply = b"$2000\r\n".to_vec();
            reply.extend(std::iter::repeat_n(b'r', 2000));
            reply.extend_from_slice(b"\r\n");
            let (out, messages, _) = compact(&mut c, &reply, false, step);
            assert_eq!(out.len(), 7 + CARRIED + 2, "step {step}");
            assert_eq!(messages, 0);
            assert!(!c.in_flight());
        }
    }

    #[test]
    fn messages_are_told_from_replies() {
        let mut c = RedisCompactor::new();
        let msg = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n";
        // Not subscribed: an array that looks like one is a reply.
        assert_eq!(compact(&mut c, msg, false, 1).1, 0);
        compact(&mut c, b"*2\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n", true, 5);
        let confirm = b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n";
        let mut two = confirm.to_vec();
        two.extend_from_slice(msg);
        two.extend_from_slice(b"*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$1\r\nx\r\n");
        two.extend_from_slice(b"*3\r\n$8\r\nmessages\r\n$2\r\nch\r\n$2\r\nhi\r\n");
        for step in [1, 4, usize::MAX] {
            assert_eq!(compact(&mut c, &two, false, step).1, 2, "step {step}");
        }
        // RESET: no subscription, an array is a reply again.
        compact(&mut c, b"*1\r\n$5\r\nreset\r\n", true, 3);
        compact(&mut c, b"+RESET\r\n", false, 3);
        assert_eq!(compact(&mut c, msg, false, 1).1, 0);

        // RESP3 (HELLO 3 answered by a map): a push is a message whatever
        // was sent, an array never is.
        let mut c = RedisCompactor::new();
        compact(&mut c, b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n", true, 7);
        compact(&mut c, b"%1\r\n+proto\r\n:3\r\n", false, 7);
        let push = b">3\r\n+message\r\n$2\r\nch\r\n$2\r\nhi\r\n";
        assert_eq!(compact(&mut c, push, false, 2).1, 1);
        compact(&mut c, b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n", true, 5);
        assert_eq!(
            compact(&mut c, msg, false, 1).1,
            0,
            "an LRANGE's reply, say"
        );
        assert_eq!(compact(&mut c, push, false, 3).1, 1);
    }

    #[test]
    fn not_resp_stops_where_the_parser_does() {
        for (bytes, outbound) in [
            (&b"*1\r\n$4\r\nPING\r\n#"[..], true),
            (b"*1\r\n:4\r\n", true),
            (b"*x\r\n", true),
            (b"*1\r\n$-1\r\n", true),
            (b"+OK\r\n?", false),
            (b"$-2\r\n", false),
            (b"%-1\r\n", false),
        ] {
            let mut c = RedisCompactor::new();
            let mut out = Vec::new();
            let seen = c.compact(bytes, outbound, &mut out);
            assert_eq!(
                seen.flow,
                Flow::Stop,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
            assert_eq!(out, bytes, "not RESP: the bytes go on whole");
        }
    }
}
