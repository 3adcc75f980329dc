//! The packet layer: a 3-byte little-endian payload length and a sequence
//! id, then the payload. A payload of `0xffffff` bytes means the logical
//! packet goes on in the next packet (whose length may be 0).
//!
//! [`PacketReader`] cuts one direction's byte stream into logical packets,
//! across any split of the input. It keeps only a prefix of each packet,
//! as long as its caller asks for once the first payload byte is known
//! ([`Event::Begin`]): the text of a query, an OK or ERR packet, nothing of
//! a result-set row. [`Cursor`] reads the protocol's integer and string
//! encodings out of such a prefix, without panicking on short input.

use std::time::SystemTime;

/// A physical packet of this length is continued by the next one.
pub(super) const MAX_PAYLOAD: usize = 0xff_ffff;

/// What [`PacketReader::next`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Event {
    /// A non-empty logical packet starts with this byte; its length so far
    /// (the first physical packet's) is `len`. The caller says how much of
    /// it to keep with [`PacketReader::keep`] before reading on.
    Begin { first: u8, len: usize },
    /// A logical packet ended: take it with [`PacketReader::take`].
    End,
}

/// A whole logical packet, as far as it was kept.
#[derive(Debug)]
pub(super) struct Packet {
    /// Sequence id of its first physical packet.
    pub seq: u8,
    /// Payload length, all physical packets together.
    pub len: u64,
    /// The kept prefix of the payload.
    pub data: Vec<u8>,
    /// Time of the call that carried its first byte.
    pub start: SystemTime,
}

impl Packet {
    pub(super) fn first(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// An EOF or OK packet with a `0xfe` header. A text-protocol row may
    /// start with `0xfe` too, but then it is at least `0xffffff` long.
    pub(super) fn is_eof(&self) -> bool {
        self.first() == Some(0xfe) && self.len < MAX_PAYLOAD as u64
    }
}

/// One direction's packets, cut out of the stream incrementally.
#[derive(Debug)]
pub(super) struct PacketReader {
    header: [u8; 4],
    header_len: usize,
    /// Payload bytes of the current physical packet still to come.
    left: usize,
    /// The current physical packet is `MAX_PAYLOAD` long: more follow.
    continued: bool,
    /// Inside a logical packet (its first header was read).
    active: bool,
    /// [`Event::Begin`] was reported for the current logical packet.
    begun: bool,
    seq: u8,
    len: u64,
    keep: usize,
    data: Vec<u8>,
    start: Option<SystemTime>,
    /// Reading a compacted stream (see [`super::capture`]): how many bytes
    /// of each physical packet of a logical packet starting with a given
    /// byte (and whether it is the stream's first) the stream carries;
    /// `None`: every byte.
    carried: Option<fn(u8, bool) -> usize>,
    /// That, for the current logical packet.
    carry: usize,
    /// A logical packet has begun before the current one.
    began_any: bool,
}

impl PacketReader {
    pub(super) fn new() -> PacketReader {
        PacketReader {
            header: [0; 4],
            header_len: 0,
            left: 0,
            continued: false,
            active: false,
            begun: false,
            seq: 0,
            len: 0,
            keep: 0,
            data: Vec::new(),
            start: None,
            carried: None,
            carry: usize::MAX,
            began_any: false,
        }
    }

    /// A reader of a compacted stream: each physical packet of a logical
    /// packet starting with `first` carries `carried(first, is the first
    /// to begin)` bytes at most (its header, so its length, unchanged).
    pub(super) fn compacted(carried: fn(u8, bool) -> usize) -> PacketReader {
        PacketReader {
            carried: Some(carried),
            ..PacketReader::new()
        }
    }

    /// Reads from the front of `data`, advancing it, up to the next event;
    /// `None` once `data` is used up.
    pub(super) fn next(&mut self, data: &mut &[u8], now: SystemTime) -> Option<Event> {
        loop {
            if self.header_len < 4 {
                if self.header_len == 0 && !self.active && !data.is_empty() {
                    self.start = Some(now);
                }
                let n = (4 - self.header_len).min(data.len());
                for (slot, &b) in self.header.iter_mut().skip(self.header_len).zip(*data) {
                    *slot = b;
                }
                self.header_len += n;
                *data = data.get(n..).unwrap_or_default();
                if self.header_len < 4 {
                    return None;
                }
                let [a, b, c, seq] = self.header;
                let len = usize::from(a) | usize::from(b) << 8 | usize::from(c) << 16;
                if !self.active {
                    self.active = true;
                    self.begun = false;
                    self.seq = seq;
                    self.len = 0;
                    self.keep = 0;
                    self.data = Vec::new();
                }
                // A compacted stream carries part of a continuation
                // packet as of the first (`carry` is set at `Begin`).
                self.left = if self.begun { len.min(self.carry) } else { len };
                self.continued = len == MAX_PAYLOAD;
                self.len = self.len.saturating_add(len as u64);
            }
            if !self.begun {
                if self.left == 0 && !self.continued {
                    return Some(self.end());
                }
                let &first = data.first()?;
                self.begun = true;
                if let Some(carried) = self.carried {
                    self.carry = carried(first, !self.began_any);
                    self.left = self.left.min(self.carry);
                }
                self.began_any = true;
                return Some(Event::Begin {
                    first,
                    len: self.left,
                });
            }
            let n = self.left.min(data.len());
            let room = self.keep.saturating_sub(self.data.len()).min(n);
            self.data
                .extend_from_slice(data.get(..room).unwrap_or_default());
            *data = data.get(n..).unwrap_or_default();
            self.left -= n;
            if self.left > 0 {
                return None;
            }
            self.header_len = 0; // This physical packet is done.
            if !self.continued {
                return Some(self.end());
            }
        }
    }

    fn end(&mut self) -> Event {
        self.header_len = 0;
        Event::End
    }

    /// Keep at most `n` bytes of the packet that just began.
    pub(super) fn keep(&mut self, n: usize) {
        self.keep = n;
        if n > 0 {
            self.data.reserve_exact(n.min(self.left));
        }
    }

    /// The packet that just ended.
    pub(super) fn take(&mut self, now: SystemTime) -> Packet {
        self.active = false;
        self.begun = false;
        Packet {
            seq: self.seq,
            len: self.len,
            data: std::mem::take(&mut self.data),
            start: self.start.take().unwrap_or(now),
        }
    }

    /// Whether a packet is partly read.
    #[cfg(test)]
    pub(super) fn mid_packet(&self) -> bool {
        self.active || self.header_len > 0
    }

    /// Drops what is held (tracing stopped).
    pub(super) fn release(&mut self) {
        *self = PacketReader {
            carried: self.carried,
            ..PacketReader::new()
        };
    }

    /// Bytes held, for bounds checks in tests.
    pub(super) fn buffered(&self) -> usize {
        self.data.capacity()
    }
}

/// Reads the protocol's encodings from a byte slice; every read returns
/// `None` rather than panic when the bytes run out.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cursor<'a>(pub &'a [u8]);

impl<'a> Cursor<'a> {
    pub(super) fn rest(&self) -> &'a [u8] {
        self.0
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        self.bytes(1).and_then(|b| b.first().copied())
    }

    pub(super) fn u16(&mut self) -> Option<u16> {
        let b = self.bytes(2)?;
        Some(u16::from_le_bytes([*b.first()?, *b.get(1)?]))
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        let b = self.bytes(4)?;
        Some(u32::from_le_bytes(b.try_into().ok()?))
    }

    /// A length-encoded integer; `0xfb` (NULL) and `0xff` are not integers.
    pub(super) fn lenenc(&mut self) -> Option<u64> {
        let width = match self.u8()? {
            b @ 0..=0xfa => return Some(u64::from(b)),
            0xfc => 2,
            0xfd => 3,
            0xfe => 8,
            _ => return None,
        };
        let b = self.bytes(width)?;
        Some(b.iter().rev().fold(0, |n, &x| n << 8 | u64::from(x)))
    }

    pub(super) fn lenenc_bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.lenenc()?).ok()?;
        self.bytes(n)
    }

    /// Bytes up to a NUL, which is consumed.
    pub(super) fn nul_terminated(&mut self) -> Option<&'a [u8]> {
        let end = self.0.iter().position(|&b| b == 0)?;
        let s = self.bytes(end)?;
        self.0 = self.0.get(1..)?;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: SystemTime = SystemTime::UNIX_EPOCH;

    /// Reads everything, keeping `keep` bytes of each packet.
    fn read_all(
        reader: &mut PacketReader,
        mut data: &[u8],
        keep: usize,
    ) -> Vec<(u8, u64, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(ev) = reader.next(&mut data, T) {
            match ev {
                Event::Begin { .. } => reader.keep(keep),
                Event::End => {
                    let p = reader.take(T);
                    out.push((p.seq, p.len, p.data));
                }
            }
        }
        out
    }

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut v = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, seq];
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn packets_at_any_split() {
        let mut stream = packet(0, b"\x03SELECT 1");
        stream.extend(packet(1, b""));
        stream.extend(packet(2, b"\x00\x00\x00\x02\x00\x00\x00"));
        let want = vec![
            (0, 9, b"\x03SELECT".to_vec()),
            (1, 0, vec![]),
            (2, 7, b"\x00\x00\x00\x02\x00\x00\x00".to_vec()),
        ];
        for step in 1..=stream.len() {
            let mut reader = PacketReader::new();
            let mut got = Vec::new();
            for piece in stream.chunks(step) {
                got.extend(read_all(&mut reader, piece, 7));
            }
            assert_eq!(got, want, "step {step}");
            assert!(!reader.mid_packet());
        }
    }

    #[test]
    fn a_full_packet_continues_in_the_next() {
        let big = vec![b'x'; MAX_PAYLOAD];
        // 0xffffff bytes, then 3 more in the next packet; then 0xffffff
        // bytes and an empty packet; then an ordinary packet.
        let mut stream = packet(0, &big);
        stream.extend(packet(1, b"abc"));
        stream.extend(packet(2, &big));
        stream.extend(packet(3, b""));
        stream.extend(packet(4, b"\x01"));
        let mut reader = PacketReader::new();
        let mut got = Vec::new();
        for piece in stream.chunks(1 << 20) {
            got.extend(read_all(&mut reader, piece, 4));
        }
        let want = vec![
            (0, MAX_PAYLOAD as u64 + 3, b"xxxx".to_vec()),
            (2, MAX_PAYLOAD as u64, b"xxxx".to_vec()),
            (4, 1, b"\x01".to_vec()),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn cursor_reads_and_never_panics() {
        let mut c = Cursor(b"\x05\xfc\x34\x12\xfd\x01\x02\x03\x03abcname\x00rest");
        assert_eq!(c.lenenc(), Some(5));
        assert_eq!(c.lenenc(), Some(0x1234));
        assert_eq!(c.lenenc(), Some(0x030201));
        assert_eq!(c.lenenc_bytes(), Some(&b"abc"[..]));
        assert_eq!(c.nul_terminated(), Some(&b"name"[..]));
        assert_eq!(c.rest(), b"rest");
        assert_eq!(c.u32(), Some(u32::from_le_bytes(*b"rest")));
        assert!(c.is_empty());
        assert_eq!(c.u8(), None);
        for bad in [
            &b"\xfe\x01"[..],
            b"\xfb",
            b"\xff",
            b"\xfc\x01",
            b"\x09abc",
            b"",
        ] {
            let mut c = Cursor(bad);
            assert_eq!(c.lenenc_bytes(), None, "{bad:?}");
        }
        assert_eq!(Cursor(b"no nul").nul_terminated(), None);
        assert_eq!(Cursor(b"\x01").u16(), None);
    }
}
