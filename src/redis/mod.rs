//! Redis (RESP2 and RESP3), client side: the commands a process sends and
//! the replies it receives on one connection, turned into [`Operation`]s.
//!
//! Everything here is pure: bytes and timestamps in, finished operations
//! out. No I/O, no panic on any input, bounded memory. The connection glue
//! hands over every byte the app sends (commands) and receives (replies and
//! pushes), in order, per direction:
//!
//! ```
//! use std::time::SystemTime;
//! use lumigo_core::redis::RedisConnection;
//!
//! let mut conn = RedisConnection::new();
//! let mut done = Vec::new();
//! let now = SystemTime::now();
//! let _ = conn.on_outbound(b"*3\r\n$3\r\nSET\r\n$2\r\nk1\r\n$6\r\nsecret\r\n", now, &mut done);
//! let _ = conn.on_inbound(b"+OK\r\n", now, &mut done);
//! assert_eq!(done[0].name, "SET");
//! assert!(done[0].attributes.contains(&("db.query.text", "SET k1 ?".into())));
//! ```
//!
//! One span per command: `db.system.name=redis`, `db.operation.name` (the
//! command, or command and subcommand: `CLIENT SETNAME`), `db.query.text`
//! (the command with its keys; every other argument is `?`, so values never
//! appear), `db.namespace` (the database index, following SELECT), and on
//! an error reply `error.type` and `db.response.status_code` (the error
//! prefix, `ERR`, `WRONGTYPE`…) with status Error. PUBLISH is a PRODUCER
//! span and each pub/sub message received a CONSUMER span, per the
//! messaging conventions (`publish <channel>`, `receive <channel>`).
//!
//! The pieces, each in its own file:
//! - [`detect`]: is this the start of a RESP command?
//! - `line`: one CRLF-terminated line, kept up to a cap.
//! - `command`: outbound commands, streamed: names and keys are kept (up to
//!   [`MAX_HEAD_BYTES`] per command), other arguments only counted.
//! - `keys`: which arguments of which commands are keys.
//! - `reply`: inbound values, streamed: a reply is complete once its whole
//!   nested structure is in; payloads are counted and skipped.
//! - `connection`: [`RedisConnection`], matching replies to commands
//!   (pipelining, MULTI/EXEC, SELECT, pub/sub, RESP3 pushes).
//! - `operation`: the attributes of a finished command or message.

mod capture;
mod command;
mod connection;
mod keys;
mod line;
mod operation;
mod reply;

pub use capture::RedisCompactor;
pub use connection::RedisConnection;

use crate::protocol::Detect;
#[cfg(doc)]
use crate::protocol::Operation;

/// Most bytes kept of one command: its name, subcommand and keys (an
/// inline command's line counts whole). Other arguments are never kept.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most commands awaiting their replies on one connection (pipelining).
/// Past it, everything pending is reported with
/// [`errors::PIPELINE_OVERFLOW`] and tracing stops.
pub const MAX_IN_FLIGHT: usize = 1024;

/// Most bytes kept of one key or channel name.
pub const MAX_KEY_BYTES: usize = 256;

/// Most bytes of `db.query.text`; longer texts are cut at a character
/// boundary. With [`MAX_IN_FLIGHT`], this bounds what pending commands hold.
pub const MAX_QUERY_TEXT_BYTES: usize = 512;

/// Most content bytes of a string (a command's argument, a reply's bulk
/// string) that a compacted stream carries (see [`RedisCompactor`]): no
/// fewer than the parser keeps of any.
pub const CARRIED: usize = 256;

/// Most bytes of a length or count line (`*N`, `$N`): a sign, 19 digits
/// and a CR.
const LEN_LINE_BYTES: usize = 21;

/// Most bytes of an error reply kept for the span status description.
pub const MAX_STATUS_BYTES: usize = 128;

/// The values of `error.type` when a command ends without its reply; an
/// error reply's type is its prefix instead (`ERR`, `WRONGTYPE`…).
pub mod errors {
    pub use crate::http::errors::{
        CONNECTION_CLOSED, PIPELINE_OVERFLOW, PROCESS_EXIT, PROTOCOL_ERROR,
    };
}

const REDIS: Detect = Detect::Yes;
const NOT_REDIS: Detect = Detect::No;

/// Longest element count accepted in the first line (`*` and 10 digits).
const DETECT_MAX_DIGITS: usize = 10;

/// Decides whether a connection's first outbound bytes start a RESP
/// command: an array of bulk strings, `*<count>\r\n$`. Decided within 14
/// bytes. Inline commands (`PING\r\n`) are not recognised here: a bare line
/// of text is too easily another protocol; once a connection is known to be
/// Redis, [`RedisConnection`] parses them too.
///
/// `Detect::Yes` is the positive answer (see the type's docs).
///
/// ```
/// use lumigo_core::redis::detect;
/// use lumigo_core::protocol::Detect;
/// assert_eq!(detect(b"*2\r\n$3\r\nGET"), Detect::Yes);
/// assert_eq!(detect(b"*2\r"), Detect::NeedMore);
/// assert_eq!(detect(b"GET / HTTP/1.1\r\n"), Detect::No);
/// ```
pub fn detect(first_outbound: &[u8]) -> Detect {
    let mut bytes = first_outbound.iter().copied();
    match bytes.next() {
        None => return Detect::NeedMore,
        Some(b'*') => {}
        Some(_) => return NOT_REDIS,
    }
    let mut digits = 0;
    loop {
        match bytes.next() {
            None => return Detect::NeedMore,
            // No command has zero arguments, and no client pads with zeros.
            Some(b'1'..=b'9') if digits == 0 => digits += 1,
            Some(b'0'..=b'9') if digits > 0 => {
                digits += 1;
                if digits > DETECT_MAX_DIGITS {
                    return NOT_REDIS;
                }
            }
            Some(b'\r') if digits > 0 => break,
            Some(_) => return NOT_REDIS,
        }
    }
    for want in [b'\n', b'$'] {
        match bytes.next() {
            None => return Detect::NeedMore,
            Some(b) if b == want => {}
            Some(_) => return NOT_REDIS,
        }
    }
    REDIS
}

/// Converts wire bytes to a string, lossily, keeping at most `max` bytes
/// and never cutting a UTF-8 sequence in two.
pub(crate) fn capped_string(bytes: &[u8], max: usize) -> String {
    let mut s = String::from_utf8_lossy(bytes).into_owned();
    if s.len() > max {
        let mut cut = max;
        while cut > 0 && !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// A signed decimal as RESP writes lengths and counts; `None` for anything
/// else (empty, a sign alone, other bytes, overflow).
pub(crate) fn parse_int(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if negative { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Detect::NeedMore;

    #[test]
    fn detect_prefixes() {
        let cases: &[(&[u8], Detect)] = &[
            (b"", NeedMore),
            (b"*", NeedMore),
            (b"*1", NeedMore),
            (b"*12\r", NeedMore),
            (b"*12\r\n", NeedMore),
            (b"*1\r\n$", REDIS),
            (b"*3\r\n$3\r\nSET\r\n", REDIS),
            (b"*1234567890\r\n$", REDIS),
            (b"*12345678901", NOT_REDIS),
            (b"*0\r\n", NOT_REDIS),
            (b"*01\r\n$", NOT_REDIS),
            (b"*-1\r\n", NOT_REDIS),
            (b"*\r\n", NOT_REDIS),
            (b"*1\n$", NOT_REDIS),
            (b"*1\r\r", NOT_REDIS),
            (b"*1\r\n*", NOT_REDIS),
            (b"*1\r\n:", NOT_REDIS),
            (b"PING\r\n", NOT_REDIS),
            (b"GET / HTTP/1.1\r\n", NOT_REDIS),
            (b"\x16\x03\x01", NOT_REDIS),
            (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", NOT_REDIS),
        ];
        for (input, want) in cases {
            assert_eq!(detect(input), *want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn detect_is_monotonic_on_prefixes() {
        // A verdict reached on a prefix never changes with more bytes.
        let stream = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n";
        let mut decided = None;
        for n in 0..=stream.len() {
            let d = detect(&stream[..n]);
            if let Some(was) = decided {
                assert_eq!(d, was, "at {n}");
            } else if d != NeedMore {
                decided = Some(d);
            }
        }
        assert_eq!(decided, Some(REDIS));
    }

    #[test]
    fn integers() {
        let cases: &[(&[u8], Option<i64>)] = &[
            (b"0", Some(0)),
            (b"42", Some(42)),
            (b"-1", Some(-1)),
            (b"+7", Some(7)),
            (b"", None),
            (b"-", None),
            (b"1a", None),
            (b"?", None),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"9223372036854775808", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_int(input), *want, "{input:?}");
        }
    }

    #[test]
    fn capped_strings_cut_at_char_boundaries() {
        assert_eq!(capped_string(b"abc", 2), "ab");
        assert_eq!(capped_string("aé".as_bytes(), 2), "a");
        assert_eq!(capped_string(&[0xff], 8), "\u{fffd}");
    }
}
