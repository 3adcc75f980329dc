//! The app's-thread side of a captured PostgreSQL connection (see
//! [`crate::capture`] and [`Compact`]): each direction is framed by the
//! messages' own lengths, and what [`PgConnection`](super::PgConnection)
//! keeps of each message goes on, its body cut (a `DataRow` goes on as its
//! header and one byte). Only the startup packets are read here, for the
//! framing modes they set (an `SSLRequest` is answered by one bare byte).

use std::time::SystemTime;

use super::frame::{Framer, Mode, Next, Side};
use super::message::{decode_frontend, Frontend};
use crate::protocol::{Compact, Compacted, Flow};

/// Both directions of a captured PostgreSQL client connection.
#[derive(Debug)]
pub struct PgCompactor {
    front: Framer,
    back: Framer,
    /// Queries, Syncs, function calls and the startup sent, less the
    /// ReadyForQuery messages received (each of those gets one).
    owed: u32,
}

impl PgCompactor {
    pub fn new() -> PgCompactor {
        PgCompactor {
            front: Framer::new(Side::Frontend, Mode::Untyped),
            back: Framer::new(Side::Backend, Mode::Typed),
            owed: 0,
        }
    }
}

impl Default for PgCompactor {
    fn default() -> Self {
        PgCompactor::new()
    }
}

/// Frame times are not used here: the capture thread's parser has its own.
const NO_TIME: SystemTime = SystemTime::UNIX_EPOCH;

impl Compact for PgCompactor {
    fn compact(&mut self, mut data: &[u8], outbound: bool, out: &mut Vec<u8>) -> Compacted {
        let mut requests = false;
        if outbound {
            // Whether the message being framed began in these bytes (not
            // in an earlier call, whose record carried its context).
            let mut fresh = !self.front.in_message();
            loop {
                let typed = self.front.mode() == Mode::Typed;
                let (tag, startup) = match self.front.compact(&mut data, NO_TIME, out) {
                    Next::Frame(f) if !typed => (f.tag, Some(decode_frontend(&f))),
                    Next::Frame(f) => (f.tag, None),
                    Next::NeedMore => break,
                    Next::Invalid => return stop(requests),
                };
                match startup {
                    Some(Frontend::Startup { .. }) => {
                        self.front.set_mode(Mode::Typed);
                        self.owed = self.owed.saturating_add(1);
                    }
                    Some(Frontend::SslRequest | Frontend::GssEncRequest) => {
                        self.back.set_mode(Mode::AnswerByte);
                    }
                    // A cancel connection, or not PostgreSQL: the parser
                    // stops there.
                    Some(_) => return stop(requests),
                    None => {
                        requests |=
                            fresh && !matches!(tag, b'S' | b'H' | b'X' | b'd' | b'c' | b'f');
                        if matches!(tag, b'Q' | b'S' | b'F') {
                            self.owed = self.owed.saturating_add(1);
                        }
                    }
                }
                fresh = true;
            }
            // A message started in these bytes and not yet framed.
            requests |= fresh && self.front.mode() == Mode::Typed && self.front.in_message();
        } else {
            loop {
                let answer = self.back.mode() == Mode::AnswerByte;
                match self.back.compact(&mut data, NO_TIME, out) {
                    // Refused: the startup packet follows in plain text.
                    Next::Frame(f) if answer && f.tag == b'N' => {}
                    // TLS (its plaintext comes through the TLS hooks, as a
                    // connection of its own), GSSAPI encryption, or not an
                    // answer: the parser stops reading this stream.
                    Next::Frame(_) if answer => return stop(requests),
                    Next::Frame(f) => {
                        if f.tag == b'Z' {
                            self.owed = self.owed.saturating_sub(1);
                        }
                    }
                    Next::NeedMore => break,
                    Next::Invalid => return stop(requests),
                }
            }
        }
        Compacted {
            flow: Flow::Continue,
            requests,
            messages: 0,
        }
    }

    fn in_flight(&self) -> bool {
        self.owed > 0 || self.front.in_message()
    }
}

fn stop(requests: bool) -> Compacted {
    Compacted {
        flow: Flow::Stop,
        requests,
        messages: 0,
    }
}
