//! Message framing for one direction of a PostgreSQL connection.
//!
//! Every message is length-prefixed: a type byte and a big-endian `u32`
//! length that counts itself (the startup packets have no type byte). The
//! [`Framer`] reads messages across calls, keeps only a prefix of each body
//! (how much depends on the message type: the SQL of a `Query` or `Parse`,
//! nothing of a `DataRow`) and skips the rest on the fly, so memory stays
//! within [`MAX_MESSAGE_BYTES`](super::MAX_MESSAGE_BYTES) whatever the
//! message sizes.
//!
//! Two oddities of the protocol live here too: the server answers an
//! `SSLRequest` or `GSSENCRequest` with one bare byte, and after an accepted
//! `SSLRequest` the raw stream carries TLS records, which are skipped whole
//! if the caller hands them over (it should not: see
//! [`PgConnection::tls_accepted`](super::PgConnection::tls_accepted)).

use std::time::SystemTime;

use super::MAX_MESSAGE_BYTES;

/// Longest startup packet the server accepts (`MAX_STARTUP_PACKET_LENGTH`).
pub(super) const MAX_STARTUP_BYTES: usize = 10_000;

/// What the next message of the stream looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// A startup packet: length, then a protocol code and parameters.
    Untyped,
    /// A type byte, then the length.
    Typed,
    /// One bare byte: the answer to an `SSLRequest` or `GSSENCRequest`.
    AnswerByte,
}

/// Which side sent the stream: decides the valid type bytes and how much of
/// each body to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Frontend,
    Backend,
}

/// A whole message (or the bare answer byte), with the kept prefix of its body.
#[derive(Debug)]
pub(super) struct Frame<'a> {
    /// The type byte; `0` for a startup packet; the byte itself for an answer.
    pub tag: u8,
    /// The body, or as much of it as the message type keeps.
    pub body: &'a [u8],
    /// Time of the call that carried the message's first byte.
    pub started: SystemTime,
}

/// The verdict of [`Framer::next`].
#[derive(Debug)]
pub(super) enum Next<'a> {
    Frame(Frame<'a>),
    /// All input consumed inside a message (or at a boundary).
    NeedMore,
    /// Not PostgreSQL framing: an unknown type byte or an impossible length.
    Invalid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// Collecting a header (`have` bytes of it so far).
    Header,
    /// Inside a message body.
    Body,
    /// Inside a TLS record, skipping.
    TlsRecord,
}

/// Reads the messages of one direction. See the module docs.
#[derive(Debug)]
pub(super) struct Framer {
    side: Side,
    mode: Mode,
    step: Step,
    header: [u8; 5],
    have: usize,
    tag: u8,
    /// Body length (without the length field), and how much of it was seen.
    body_len: usize,
    seen: usize,
    /// How much of the body to keep.
    keep: usize,
    buf: Vec<u8>,
    started: SystemTime,
    /// Skip TLS records found at message boundaries.
    tls: bool,
}

/// The TLS record content types (change_cipher_spec, alert, handshake,
/// application_data): no PostgreSQL message starts with these bytes.
fn is_tls_record_type(b: u8) -> bool {
    (0x14..=0x17).contains(&b)
}

impl Framer {
    pub(super) fn new(side: Side, mode: Mode) -> Framer {
        Framer {
            side,
            mode,
            step: Step::Header,
            header: [0; 5],
            have: 0,
            tag: 0,
            body_len: 0,
            seen: 0,
            keep: 0,
            buf: Vec::new(),
            started: SystemTime::UNIX_EPOCH,
            tls: false,
        }
    }

    /// What the next message will be; takes effect at the next boundary
    /// (callers switch modes only between messages).
    pub(super) fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    pub(super) fn mode(&self) -> Mode {
        self.mode
    }

    /// From now on, TLS records at message boundaries are skipped.
    pub(super) fn skip_tls_records(&mut self) {
        self.tls = true;
    }

    /// Part of a message has been read, not all.
    pub(super) fn in_message(&self) -> bool {
        self.have > 0 || self.step != Step::Header
    }

    /// Bytes held, for bounds checks.
    pub(super) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Frees the buffer (tracing stopped).
    pub(super) fn release(&mut self) {
        self.buf = Vec::new();
    }

    /// Reads from `data` (advancing it) up to the end of the next message.
    pub(super) fn next(&mut self, data: &mut &[u8], now: SystemTime) -> Next<'_> {
        self.advance(data, now, None)
    }

    /// As [`Framer::next`], for the app's thread (see [`super::capture`]):
    /// appends to `out` the stream as the parser needs it, each message's
    /// body cut to what [`Framer::next`] keeps of it, its length field
    /// rewritten to match, and one filler byte standing for a cut tail,
    /// written when the tail's last byte passes. Fed to a [`Framer`], that
    /// stream gives the same frames, with the same bodies, completed by the
    /// same calls. Only startup packets' bodies are kept in the framer
    /// (their codes decide the modes); invalid framing goes to `out` as it
    /// came, so that the parser fails on it too.
    pub(super) fn compact(
        &mut self,
        data: &mut &[u8],
        now: SystemTime,
        out: &mut Vec<u8>,
    ) -> Next<'_> {
        self.advance(data, now, Some(out))
    }

    fn advance(
        &mut self,
        data: &mut &[u8],
        now: SystemTime,
        mut out: Option<&mut Vec<u8>>,
    ) -> Next<'_> {
        loop {
            match self.step {
                Step::Header
                    if self.have == 0
                        && self.mode == Mode::Typed
                        && !self.tls
                        && data.len() >= 5 =>
                {
                    // The common case: a whole header in this call, read at
                    // once (the same as byte by byte below).
                    let Some(h) = data.get(..5) else {
                        return Next::NeedMore;
                    };
                    self.started = now;
                    self.buf.clear();
                    self.header.copy_from_slice(h);
                    self.have = 5;
                    *data = data.get(5..).unwrap_or_default();
                    let valid = self.begin_body();
                    if let Some(out) = out.as_deref_mut() {
                        match valid {
                            Ok(()) => {
                                let len = self.compact_len();
                                out.push(self.header[0]);
                                out.extend_from_slice(&len.to_be_bytes());
                            }
                            Err(()) => out.extend_from_slice(&self.header),
                        }
                    }
                    if let Err(()) = valid {
                        return Next::Invalid;
                    }
                }
                Step::Header => {
                    let Some((&b, rest)) = data.split_first() else {
                        return Next::NeedMore;
                    };
                    if self.have == 0 {
                        self.started = now;
                        self.buf.clear();
                        if self.mode == Mode::AnswerByte {
                            *data = rest;
                            self.mode = Mode::Typed;
                            self.header[0] = b;
                            if let Some(out) = out.as_deref_mut() {
                                out.push(b);
                            }
                            return Next::Frame(Frame {
                                tag: b,
                                body: &[],
                                started: now,
                            });
                        }
                        // A type byte goes out at once: the message
                        // starts in the call that carried it.
                        if let (Some(out), Mode::Typed) = (out.as_deref_mut(), self.mode) {
                            out.push(b);
                        }
                    }
                    let header = &mut self.header;
                    let want = match (self.tls && is_tls_record_type(header[0]), self.mode) {
                        _ if self.have == 0 => 1,
                        (true, _) => 5,
                        (false, Mode::Untyped) => 4,
                        (false, _) => 5,
                    };
                    let take = (want - self.have).min(data.len());
                    if let (Some(dst), Some(src)) = (
                        header.get_mut(self.have..self.have + take),
                        data.get(..take),
                    ) {
                        dst.copy_from_slice(src);
                    }
                    *data = data.get(take..).unwrap_or_default();
                    self.have += take;
                    if self.have == 1 && want == 1 {
                        continue; // now the header's size is known
                    }
                    if self.have < want {
                        return Next::NeedMore;
                    }
                    let valid = self.begin_body();
                    if let Some(out) = out.as_deref_mut() {
                        let from = usize::from(self.mode == Mode::Typed);
                        match valid {
                            Ok(()) => out.extend_from_slice(&self.compact_len().to_be_bytes()),
                            Err(()) => out.extend_from_slice(&self.header[from..self.have]),
                        }
                    }
                    if let Err(()) = valid {
                        return Next::Invalid;
                    }
                }
                Step::TlsRecord | Step::Body => {
                    let take = (self.body_len - self.seen).min(data.len());
                    if self.step == Step::Body {
                        let kept = self.seen.min(self.keep);
                        let room = (self.keep - kept).min(take);
                        let bytes = data.get(..room).unwrap_or_default();
                        match out.as_deref_mut() {
                            None => self.buf.extend_from_slice(bytes),
                            Some(out) => {
                                out.extend_from_slice(bytes);
                                if self.mode == Mode::Untyped {
                                    self.buf.extend_from_slice(bytes);
                                }
                            }
                        }
                    }
                    *data = data.get(take..).unwrap_or_default();
                    self.seen += take;
                    if self.seen < self.body_len {
                        return Next::NeedMore;
                    }
                    let was = self.step;
                    self.step = Step::Header;
                    self.have = 0;
                    if was == Step::TlsRecord {
                        continue;
                    }
                    if let Some(out) = out.as_deref_mut() {
                        if self.keep < self.body_len {
                            out.push(0); // the cut tail, ended here
                        }
                    }
                    return Next::Frame(Frame {
                        tag: self.tag,
                        body: &self.buf,
                        started: self.started,
                    });
                }
            }
        }
    }

    /// The length field of the current message as compacted: its kept
    /// body, and one byte for a cut tail.
    fn compact_len(&self) -> u32 {
        let cut = usize::from(self.keep < self.body_len);
        u32::try_from(4 + self.keep + cut).unwrap_or(u32::MAX)
    }

    /// A complete header: checks it and starts the body.
    fn begin_body(&mut self) -> Result<(), ()> {
        let h = self.header;
        self.seen = 0;
        if self.tls && is_tls_record_type(h[0]) {
            self.body_len = usize::from(u16::from_be_bytes([h[3], h[4]]));
            self.step = Step::TlsRecord;
            return Ok(());
        }
        let (tag, len) = match self.mode {
            Mode::Untyped => (0, u32::from_be_bytes([h[0], h[1], h[2], h[3]])),
            _ => (h[0], u32::from_be_bytes([h[1], h[2], h[3], h[4]])),
        };
        let len = usize::try_from(len).map_err(|_| ())?;
        let body_len = len.checked_sub(4).ok_or(())?;
        let keep = match (self.mode, self.side) {
            (Mode::Untyped, _) if (4..=MAX_STARTUP_BYTES - 4).contains(&body_len) => body_len,
            (Mode::Untyped, _) => return Err(()),
            (_, Side::Frontend) => frontend_keep(tag).ok_or(())?,
            (_, Side::Backend) => backend_keep(tag).ok_or(())?,
        };
        self.tag = tag;
        self.body_len = body_len;
        self.keep = keep.min(MAX_MESSAGE_BYTES).min(body_len);
        self.step = Step::Body;
        Ok(())
    }
}

/// Body bytes worth keeping of a client message; `None` for a type byte
/// no client sends.
fn frontend_keep(tag: u8) -> Option<usize> {
    Some(match tag {
        b'Q' | b'P' => MAX_MESSAGE_BYTES,
        // Portal and statement names (the server cuts them at 63 bytes).
        b'B' | b'E' | b'D' | b'C' => 1024,
        // Sync, Flush, Terminate, CopyData/Done/Fail, FunctionCall, and the
        // password / SASL messages, which are never kept.
        b'S' | b'H' | b'X' | b'd' | b'c' | b'f' | b'F' | b'p' => 0,
        _ => return None,
    })
}

/// Body bytes worth keeping of a server message; `None` for a type byte
/// no server sends.
fn backend_keep(tag: u8) -> Option<usize> {
    Some(match tag {
        b'C' => 256,
        b'E' => 4096,
        b'Z' => 1,
        b'R' | b'S' | b'K' | b'N' | b'T' | b'D' | b'I' | b'1' | b'2' | b'3' | b'n' | b's'
        | b't' | b'G' | b'H' | b'W' | b'd' | b'c' | b'A' | b'V' | b'v' => 0,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framer: &mut Framer, input: &[u8], piece: usize) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        for chunk in input.chunks(piece.max(1)) {
            let mut data = chunk;
            loop {
                match framer.next(&mut data, SystemTime::UNIX_EPOCH) {
                    Next::Frame(f) => out.push((f.tag, f.body.to_vec())),
                    Next::NeedMore => break,
                    Next::Invalid => {
                        out.push((0xff, Vec::new()));
                        return out;
                    }
                }
            }
            assert!(data.is_empty());
        }
        out
    }

    #[test]
    fn typed_messages_at_any_split() {
        let mut input = b"C\x00\x00\x00\x0dSELECT 1\x00Z\x00\x00\x00\x05I".to_vec();
        input.extend_from_slice(b"D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x01x");
        for piece in 1..=input.len() {
            let mut f = Framer::new(Side::Backend, Mode::Typed);
            let got = frames(&mut f, &input, piece);
            assert_eq!(
                got,
                vec![
                    (b'C', b"SELECT 1\x00".to_vec()),
                    (b'Z', b"I".to_vec()),
                    (b'D', Vec::new()),
                ],
                "piece {piece}"
            );
            assert_eq!(f.step, Step::Header);
            assert_eq!(f.have, 0);
        }
    }

    #[test]
    fn startup_then_typed_and_answer_byte() {
        let mut f = Framer::new(Side::Frontend, Mode::Untyped);
        let got = frames(&mut f, b"\x00\x00\x00\x08\x04\xd2\x16\x2f", 3);
        assert_eq!(got, vec![(0, b"\x04\xd2\x16\x2f".to_vec())]);
        let mut b = Framer::new(Side::Backend, Mode::AnswerByte);
        let got = frames(&mut b, b"NZ\x00\x00\x00\x05I", 1);
        assert_eq!(got, vec![(b'N', vec![]), (b'Z', b"I".to_vec())]);
    }

    #[test]
    fn large_bodies_are_cut_and_skipped() {
        let mut input = vec![b'Q'];
        let text = vec![b'a'; 3 * MAX_MESSAGE_BYTES];
        input.extend_from_slice(&((text.len() + 5) as u32).to_be_bytes());
        input.extend_from_slice(&text);
        input.push(0);
        input.extend_from_slice(b"S\x00\x00\x00\x04");
        let mut f = Framer::new(Side::Frontend, Mode::Typed);
        let mut data = &input[..];
        match f.next(&mut data, SystemTime::UNIX_EPOCH) {
            Next::Frame(fr) => {
                assert_eq!((fr.tag, fr.body.len()), (b'Q', MAX_MESSAGE_BYTES));
            }
            other => panic!("{other:?}"),
        }
        assert!(f.buffered() <= MAX_MESSAGE_BYTES);
        assert!(
            matches!(f.next(&mut data, SystemTime::UNIX_EPOCH), Next::Frame(fr) if fr.tag == b'S')
        );
    }

    #[test]
    fn invalid_framing() {
        let cases: &[(Side, Mode, &[u8])] = &[
            (Side::Backend, Mode::Typed, b"Q\x00\x00\x00\x04"),
            (Side::Frontend, Mode::Typed, b"Z\x00\x00\x00\x05I"),
            (Side::Frontend, Mode::Typed, b"Q\x00\x00\x00\x03"),
            (Side::Frontend, Mode::Untyped, b"\x00\x00\x00\x07abc"),
            (Side::Frontend, Mode::Untyped, b"\x00\x01\x00\x00abcd"),
            (Side::Frontend, Mode::Typed, b"\x16\x03\x01\x00\x05hello"),
        ];
        for (side, mode, input) in cases {
            let mut f = Framer::new(*side, *mode);
            let got = frames(&mut f, input, 64);
            assert_eq!(got.last().map(|g| g.0), Some(0xff), "{input:?}");
        }
    }

    #[test]
    fn tls_records_are_skipped_once_enabled() {
        let mut input = b"\x16\x03\x01\x00\x05hello\x17\x03\x03\x00\x01x".to_vec();
        input.extend_from_slice(b"\x00\x00\x00\x08\x00\x03\x00\x00");
        for piece in 1..=input.len() {
            let mut f = Framer::new(Side::Frontend, Mode::Untyped);
            f.skip_tls_records();
            let got = frames(&mut f, &input, piece);
            assert_eq!(got, vec![(0, b"\x00\x03\x00\x00".to_vec())]);
        }
    }
}
