//! The app's-thread side of a captured MySQL / MariaDB connection (see
//! [`crate::capture`] and [`Compact`]): each direction is cut into
//! packets by their headers, which go on unchanged, and of each packet's
//! payload only as much as [`MysqlConnection`](super::MysqlConnection)
//! may read of a packet starting with that byte ([`carried_inbound`],
//! [`carried_outbound`]): a query's text, an OK, ERR or EOF packet, a
//! column count, the first bytes of a row. Which packets are rows depends on the session's state, kept on
//! the capture thread; the rule here needs none, so some rows go on with
//! more bytes than the parser keeps.
//!
//! A packet longer than it carries goes on as its first `carried - 1`
//! bytes, as they arrive, and one filler byte in the call that carries its
//! last byte, so that the parser, reading the stream with
//! [`PacketReader::compacted`](super::packet::PacketReader::compacted),
//! sees every packet start and end in the call it does. Only the login is
//! read here, for a TLS request (after which the raw stream is ciphertext).

use super::handshake::parse_login;
use super::packet::MAX_PAYLOAD;
use super::session::{com, MAX_CONTROL_BYTES, QUERY_ATTRIBUTES_ROOM};
use super::MAX_QUERY_BYTES;
use crate::protocol::{Compact, Compacted, Flow};

/// Bytes of a server packet starting with `first` (`greeting`: the first
/// packet of the stream) that a compacted stream carries: more than the
/// parser reads of it. It reads the greeting, and the rest of an OK
/// (`0x00`, also a prepare's OK), ERR (`0xff`) or EOF (`0xfe`); of any
/// other packet, a column count at most (a length-encoded integer and
/// MariaDB's metadata flag). Rows and column definitions it skips, but
/// which packets are rows depends on the session's state: a row starting
/// `0x00` (every row of a binary result set, and a text row whose first
/// value is empty) goes on as if it were an OK.
pub(super) fn carried_inbound(first: u8, greeting: bool) -> usize {
    match first {
        _ if greeting => MAX_CONTROL_BYTES + 1,
        0x00 | 0xfe | 0xff => MAX_CONTROL_BYTES + 1,
        _ => COLUMN_COUNT_BYTES + 1,
    }
}

/// A column count packet: a length-encoded integer (at most 9 bytes) and
/// a flag.
const COLUMN_COUNT_BYTES: usize = 10;

/// Bytes of a client packet starting with `first` that a compacted stream
/// carries: more than the parser keeps of it (a query's text and
/// attributes, or a login, a database name, a statement id).
pub(super) fn carried_outbound(first: u8, _login: bool) -> usize {
    match first {
        com::QUERY | com::STMT_PREPARE => 1 + QUERY_ATTRIBUTES_ROOM + MAX_QUERY_BYTES + 1,
        _ => MAX_CONTROL_BYTES + 1,
    }
}

/// Where one direction's framing stands.
#[derive(Debug)]
struct Packets {
    header: [u8; 4],
    /// Header bytes read of the current physical packet.
    have: usize,
    /// Payload bytes of the current physical packet still to come.
    left: usize,
    /// Of those, how many go on as they are.
    pass: usize,
    /// Whether one filler byte goes on where the physical packet ends.
    filler: bool,
    /// The current physical packet is `MAX_PAYLOAD` long: more follow.
    continued: bool,
    /// Inside a logical packet (its first header was read).
    active: bool,
    /// Its first payload byte was seen.
    begun: bool,
    /// Bytes carried per physical packet of the current logical packet.
    carry: usize,
    carried: fn(u8, bool) -> usize,
    /// A logical packet has begun before the current one.
    began_any: bool,
    /// A header began in the current call.
    began_here: bool,
    /// The logical packet's length so far, and its first payload bytes
    /// (while `head` is wanted: the login).
    len: u64,
    head: Option<([u8; LOGIN_READ], usize)>,
}

/// What [`Packets::advance`] reached.
enum Reached {
    /// The call's bytes are used up.
    End,
    /// A header is complete: the packet's sequence id, and whether it is
    /// the first of a logical packet.
    Header { seq: u8, first: bool },
    /// A logical packet ended.
    Packet,
}

impl Packets {
    fn new(carried: fn(u8, bool) -> usize) -> Packets {
        Packets {
            header: [0; 4],
            have: 0,
            left: 0,
            pass: 0,
            filler: false,
            continued: false,
            active: false,
            begun: false,
            carry: usize::MAX,
            carried,
            began_any: false,
            began_here: false,
            len: 0,
            head: None,
        }
    }

    /// Inside a packet (or its header).
    fn in_packet(&self) -> bool {
        self.active || self.have > 0
    }

    /// The payload of the current physical packet still to come starts
    /// now: how much of it goes on.
    fn carry_from_here(&mut self) {
        if self.left > self.carry {
            self.pass = self.carry - 1;
            self.filler = true;
        } else {
            self.pass = self.left;
            self.filler = false;
        }
    }

    /// The common case, at a packet boundary: the whole packets at the
    /// front of `data` (not continued), appended to `out` as they go on
    /// and taken off `data`. Whether one of them has sequence id 0.
    #[inline]
    fn whole_packets(&mut self, data: &mut &[u8], out: &mut Vec<u8>) -> bool {
        if self.have > 0 || self.active || self.head.is_some() {
            return false;
        }
        // Bytes from `run` to `at` go on as they are.
        let (mut run, mut at) = (0, 0);
        let mut seq0 = false;
        while let Some(&[a, b, c, seq]) = data.get(at..at + 4) {
            let len = usize::from(a) | usize::from(b) << 8 | usize::from(c) << 16;
            let end = at + 4 + len;
            if len == MAX_PAYLOAD || end > data.len() {
                break;
            }
            seq0 |= seq == 0;
            if let Some(&first) = data.get(at + 4).filter(|_| len > 0) {
                let carry = (self.carried)(first, !self.began_any);
                self.began_any = true;
                if len > carry {
                    // Its first `carry - 1` bytes, and the filler.
                    out.extend_from_slice(&data[run..at + 4 + carry - 1]);
                    out.push(0);
                    run = end;
                }
            }
            at = end;
        }
        out.extend_from_slice(&data[run..at]);
        *data = &data[at..];
        seq0
    }

    /// Reads `data` up to the next header or packet end, appending what
    /// goes on to `out`; what was read is taken off `data`.
    fn advance(&mut self, data: &mut &[u8], out: &mut Vec<u8>) -> Reached {
        loop {
            if self.have < 4 {
                let n = (4 - self.have).min(data.len());
                if n == 0 {
                    return Reached::End;
                }
                self.began_here |= self.have == 0;
                let (h, rest) = data.split_at(n);
                self.header[self.have..self.have + n].copy_from_slice(h);
                out.extend_from_slice(h);
                *data = rest;
                self.have += n;
                if self.have < 4 {
                    return Reached::End;
                }
                let [a, b, c, seq] = self.header;
                let len = usize::from(a) | usize::from(b) << 8 | usize::from(c) << 16;
                let first = !self.active;
                if first {
                    self.active = true;
                    self.begun = false;
                    self.len = 0;
                }
                self.len = self.len.saturating_add(len as u64);
                self.left = len;
                self.continued = len == MAX_PAYLOAD;
                if self.begun {
                    self.carry_from_here();
                }
                return Reached::Header { seq, first };
            }
            if !self.begun {
                if self.left == 0 && !self.continued {
                    return self.end();
                }
                let Some(&first) = data.first() else {
                    return Reached::End;
                };
                self.begun = true;
                self.carry = (self.carried)(first, !self.began_any);
                self.began_any = true;
                self.carry_from_here();
            }
            let n = self.left.min(data.len());
            let (body, rest) = data.split_at(n);
            let pass = self.pass.min(n);
            out.extend_from_slice(&body[..pass]);
            if let Some((head, have)) = &mut self.head {
                let take = (head.len() - *have).min(pass);
                head[*have..*have + take].copy_from_slice(&body[..take]);
                *have += take;
            }
            self.pass -= pass;
            *data = rest;
            self.left -= n;
            if self.left > 0 {
                return Reached::End;
            }
            if self.filler {
                out.push(0);
            }
            self.have = 0;
            if !self.continued {
                return self.end();
            }
        }
    }

    fn end(&mut self) -> Reached {
        self.have = 0;
        self.active = false;
        self.begun = false;
        Reached::Packet
    }
}

/// Both directions of a captured MySQL client connection.
#[derive(Debug)]
pub struct MysqlCompactor {
    front: Packets,
    back: Packets,
    /// The login (the client's first packet) is still to be read.
    login: bool,
    /// A command was sent.
    commanded: bool,
}

/// Bytes of the login read for a TLS request: its fixed part.
const LOGIN_READ: usize = 32;

impl MysqlCompactor {
    pub fn new() -> MysqlCompactor {
        let mut front = Packets::new(carried_outbound);
        front.head = Some(([0; LOGIN_READ], 0));
        MysqlCompactor {
            front,
            back: Packets::new(carried_inbound),
            login: true,
            commanded: false,
        }
    }
}

impl Default for MysqlCompactor {
    fn default() -> Self {
        MysqlCompactor::new()
    }
}

impl Compact for MysqlCompactor {
    fn compact(&mut self, mut data: &[u8], outbound: bool, out: &mut Vec<u8>) -> Compacted {
        let mut requests = false;
        if !outbound {
            loop {
                self.back.whole_packets(&mut data, out);
                if let Reached::End = self.back.advance(&mut data, out) {
                    break;
                }
            }
            return Compacted {
                flow: Flow::Continue,
                requests,
                messages: 0,
            };
        }
        let front = &mut self.front;
        if front.whole_packets(&mut data, out) {
            // Commands (the login, its sequence id 1, is read below).
            requests = true;
            self.commanded = true;
        }
        front.began_here = false;
        loop {
            match front.advance(&mut data, out) {
                Reached::End => {
                    // A header begun here and not yet complete may be a
                    // command's (sequence id 0).
                    requests |= front.began_here && front.have > 0 && front.have < 4;
                    break;
                }
                Reached::Header { seq, first } => {
                    if first && seq == 0 {
                        requests |= front.began_here;
                        self.commanded |= !self.login;
                    }
                    front.began_here = false;
                }
                Reached::Packet if self.login => {
                    self.login = false;
                    if let Some((fixed, have)) = front.head.take() {
                        let login = parse_login(&fixed[..have], front.len);
                        if login.is_some_and(|l| l.ssl_request) {
                            // The rest is ciphertext; its plaintext comes
                            // through the TLS hooks.
                            return Compacted {
                                flow: Flow::Stop,
                                requests,
                                messages: 0,
                            };
                        }
                    }
                }
                Reached::Packet => {}
            }
        }
        Compacted {
            flow: Flow::Continue,
            requests,
            messages: 0,
        }
    }

    fn in_flight(&self) -> bool {
        self.commanded || self.front.in_packet()
    }
}
