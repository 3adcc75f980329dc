//! Recognising PostgreSQL on the first bytes a client sends.
//!
//! Every PostgreSQL connection opens with an untyped startup packet: a
//! big-endian `u32` length (counting itself) and a `u32` code: protocol
//! 3.x (`196608` for 3.0), or one of the special requests (SSLRequest
//! `80877103`, GSSENCRequest `80877104`, CancelRequest `80877102`). The
//! length is small (a startup packet is at most 10,000 bytes), so its first
//! two bytes are zero: anything else is rejected on the first byte.

use super::frame::MAX_STARTUP_BYTES;
use super::message::{CANCEL_REQUEST, GSSENC_REQUEST, SSL_REQUEST};
use crate::protocol::Detect;

/// Decides whether `first_outbound` (the first bytes a client sent) starts a
/// PostgreSQL connection. `Detect::Yes` is the shared type's "yes".
///
/// ```
/// use lumigo_core::postgres::detect;
/// use lumigo_core::protocol::Detect;
/// assert_eq!(detect(b"\x00\x00\x00\x08\x04\xd2\x16\x2f"), Detect::Yes); // SSLRequest
/// assert_eq!(detect(b"\x00\x00\x00"), Detect::NeedMore);
/// assert_eq!(detect(b"GET / HTTP/1.1\r\n"), Detect::No);
/// ```
pub fn detect(first_outbound: &[u8]) -> Detect {
    let possible = first_outbound.iter().take(2).all(|&b| b == 0);
    let (Some(len), Some(code)) = (word(first_outbound, 0), word(first_outbound, 4)) else {
        return if possible {
            Detect::NeedMore
        } else {
            Detect::No
        };
    };
    let len = len as usize;
    let yes = match code {
        SSL_REQUEST | GSSENC_REQUEST => len == 8,
        CANCEL_REQUEST => len == 16,
        // Protocol 3.x; a real startup packet names at least `user`.
        _ if code >> 16 == 3 => (9..=MAX_STARTUP_BYTES).contains(&len),
        _ => false,
    };
    if yes {
        Detect::Yes
    } else {
        Detect::No
    }
}

fn word(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Detect::{NeedMore, No, Yes};

    #[test]
    fn first_bytes() {
        let cases: &[(&[u8], Detect)] = &[
            (b"", NeedMore),
            (b"\x00", NeedMore),
            (b"\x00\x00\x00\x08\x04\xd2\x16", NeedMore),
            (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", Yes),
            (b"\x00\x00\x00\x08\x04\xd2\x16\x30", Yes),
            (
                b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x00\x01\x00\x00\x00\x02",
                Yes,
            ),
            (b"\x00\x00\x00\x3b\x00\x03\x00\x00user\x00postgres\x00", Yes),
            (b"\x00\x00\x00\x3b\x00\x03\x00\x02", Yes),
            (b"\x00\x00\x00\x09\x00\x02\x00\x00", No),
            (b"\x00\x00\x00\x10\x04\xd2\x16\x2f", No),
            (b"\x00\x00\x00\x08\x00\x03\x00\x00", No),
            (b"\x00\x01\x00\x08\x00\x03\x00\x00", No),
            (b"\x01", No),
            (b"\x00\x01", No),
            (b"\x16\x03\x01\x02\x00", No),
            (b"GET / HTTP/1.1\r\n", No),
            (b"*1\r\n$4\r\nPING\r\n", No),
            (b"\x00\x00\x00\x00\x00\x00\x00\x00", No),
        ];
        for (input, want) in cases {
            assert_eq!(detect(input), *want, "{input:?}");
        }
    }
}
