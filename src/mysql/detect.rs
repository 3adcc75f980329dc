//! Recognising a MySQL / MariaDB server on the first bytes it sends.
//!
//! The server speaks first: a packet with sequence id 0 holding the initial
//! handshake, protocol version 10 then a NUL-terminated, printable version
//! string (`8.0.36`, `5.5.5-10.11.19-MariaDB-0+deb12u1`). A server that
//! refuses the client outright (`Host '…' is not allowed to connect`) sends
//! an ERR packet instead: `0xff`, a two-byte error code, a message. Either
//! is decided within [`MAX_DETECT_BYTES`]; anything else is rejected as soon
//! as a byte does not fit.
//!
//! Over TLS the greeting and the client's TLS request went in plain text
//! on the socket, and the plaintext the TLS hooks see starts with the
//! client's login: [`detect_tls_login`] recognises that.

use super::Detect;

/// Longest server version string accepted.
const MAX_VERSION_LEN: usize = 64;

/// Bytes after which [`detect_greeting`] has always decided: the packet
/// header, the protocol version, the longest version string and its NUL.
pub const MAX_DETECT_BYTES: usize = 4 + 1 + MAX_VERSION_LEN + 1;

/// Fields after the version string that a handshake of protocol 10 always
/// has: thread id (4), scramble part 1 (8), filler (1), capabilities (2).
const MIN_AFTER_VERSION: usize = 15;

/// Largest initial packet believed: real greetings are about 100 bytes, and
/// a refusal's message a few hundred.
const MAX_GREETING_LEN: usize = 4096;

/// Decides whether `first_inbound` (the first bytes a client connection
/// received) is a MySQL / MariaDB server's greeting. [`Detect::Yes`] is the
/// shared enum's "yes".
///
/// ```
/// use lumigo_core::mysql::detect_greeting;
/// use lumigo_core::protocol::Detect;
/// assert_eq!(detect_greeting(b"\x4a\x00\x00\x00\x0a8.0"), Detect::NeedMore);
/// assert_eq!(detect_greeting(b"\x4a\x00\x00\x00\x0a8.0.36\x00"), Detect::Yes);
/// assert_eq!(detect_greeting(b"HTTP/1.1 200 OK\r\n"), Detect::No);
/// ```
pub fn detect_greeting(first_inbound: &[u8]) -> Detect {
    let Some(header) = first_inbound.get(..4) else {
        return Detect::NeedMore;
    };
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    if header[3] != 0 || len == 0 || len > MAX_GREETING_LEN {
        return Detect::No;
    }
    let payload = first_inbound.get(4..).unwrap_or_default();
    let payload = payload.get(..len).unwrap_or(payload);
    match payload.first() {
        None => Detect::NeedMore,
        Some(10) => handshake_v10(len, payload.get(1..).unwrap_or_default()),
        Some(0xff) => refusal(len, payload.get(1..).unwrap_or_default()),
        Some(_) => Detect::No,
    }
}

/// After the protocol version byte: the version string.
fn handshake_v10(len: usize, rest: &[u8]) -> Detect {
    for (i, &b) in rest.iter().enumerate() {
        if b == 0 {
            // A version, and room in the packet for the fixed fields.
            let fits = i > 0 && len >= 1 + i + 1 + MIN_AFTER_VERSION;
            return if fits { Detect::Yes } else { Detect::No };
        }
        if !(0x20..0x7f).contains(&b) || i >= MAX_VERSION_LEN {
            return Detect::No;
        }
    }
    if rest.len() + 1 >= len {
        return Detect::No; // The packet ended without the NUL.
    }
    Detect::NeedMore
}

/// After `0xff`: an error code (MySQL's and MariaDB's are 1000–9999) and
/// the first byte of a printable message.
fn refusal(len: usize, rest: &[u8]) -> Detect {
    if len < 4 {
        return Detect::No;
    }
    let (Some(&lo), Some(&hi)) = (rest.first(), rest.get(1)) else {
        return Detect::NeedMore;
    };
    let code = u16::from(lo) | u16::from(hi) << 8;
    if !(1000..=9999).contains(&code) {
        return Detect::No;
    }
    match rest.get(2) {
        None => Detect::NeedMore,
        Some(b) if (0x20..0x7f).contains(b) => Detect::Yes,
        Some(_) => Detect::No,
    }
}

/// The fixed part of a login (HandshakeResponse41): capabilities (4),
/// largest packet (4), character set (1), 19 zero bytes, and 4 more that
/// are zero, or MariaDB's extended capabilities.
const LOGIN_FIXED: usize = 32;

/// Decides whether `first_outbound` (the first plaintext a client sent
/// through TLS) is a MySQL / MariaDB login after a TLS request: a packet
/// with sequence id 2 (the greeting was 0, the TLS request 1) whose fixed
/// part says protocol 4.1 and TLS and has its 19 reserved bytes zero.
/// Decided within 36 bytes.
///
/// ```
/// use lumigo_core::mysql::detect_tls_login;
/// use lumigo_core::protocol::Detect;
/// let mut login = vec![0x40, 0x00, 0x00, 0x02, 0x0c, 0xaa, 0x3e, 0x00];
/// login.extend([0u8; 5]);
/// assert_eq!(detect_tls_login(&login), Detect::NeedMore);
/// login.extend([0u8; 23]);
/// assert_eq!(detect_tls_login(&login), Detect::Yes);
/// assert_eq!(detect_tls_login(b"GET / HTTP/1.1\r\n\r\n"), Detect::No);
/// ```
pub fn detect_tls_login(first_outbound: &[u8]) -> Detect {
    let Some(header) = first_outbound.get(..4) else {
        return Detect::NeedMore;
    };
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    if header[3] != 2 || len <= LOGIN_FIXED || len > MAX_GREETING_LEN {
        return Detect::No;
    }
    let Some(fixed) = first_outbound.get(4..4 + LOGIN_FIXED) else {
        return Detect::NeedMore;
    };
    let caps = u32::from_le_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]);
    let (protocol_41, ssl) = (1 << 9, 1 << 11);
    let reserved_zero = fixed[9..28].iter().all(|&b| b == 0);
    if caps & protocol_41 != 0 && caps & ssl != 0 && reserved_zero {
        Detect::Yes
    } else {
        Detect::No
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let mariadb: &[u8] = b"\x64\x00\x00\x00\x0a5.5.5-10.11.19-MariaDB\x00\x0c\x00";
        let refused: &[u8] = b"\x44\x00\x00\x00\xff\x6a\x04Host '10.0.0.1' is not allowed";
        let cases: &[(&[u8], Detect)] = &[
            (b"", Detect::NeedMore),
            (b"\x64\x00\x00", Detect::NeedMore),
            (b"\x64\x00\x00\x00", Detect::NeedMore),
            (b"\x64\x00\x00\x00\x0a", Detect::NeedMore),
            (b"\x64\x00\x00\x00\x0a5.5", Detect::NeedMore),
            (mariadb, Detect::Yes),
            (b"\x64\x00\x00\x00\x0a8.0.36\x00", Detect::Yes),
            (refused, Detect::Yes),
            (b"\x44\x00\x00\x00\xff", Detect::NeedMore),
            (b"\x44\x00\x00\x00\xff\x6a\x04", Detect::NeedMore),
            // Sequence id not 0, empty or huge packet, other protocol versions.
            (b"\x64\x00\x00\x01\x0a8.0\x00", Detect::No),
            (b"\x00\x00\x00\x00", Detect::No),
            (b"\xff\xff\xff\x00\x0a", Detect::No),
            (b"\x64\x00\x00\x00\x09", Detect::No),
            // Empty or unprintable version, no NUL within the packet.
            (b"\x64\x00\x00\x00\x0a\x00", Detect::No),
            (b"\x64\x00\x00\x00\x0a8.0\x01", Detect::No),
            (b"\x05\x00\x00\x00\x0a8.0.", Detect::No),
            // A greeting too short for the fields after the version.
            (b"\x08\x00\x00\x00\x0a8.0.3\x00\x00", Detect::No),
            // Error codes out of range, unprintable messages.
            (b"\x44\x00\x00\x00\xff\x01\x00H", Detect::No),
            (b"\x44\x00\x00\x00\xff\x6a\x04\x00", Detect::No),
            (b"\x02\x00\x00\x00\xff\x6a", Detect::No),
            // Other protocols.
            (b"HTTP/1.1 200 OK\r\n", Detect::No),
            (b"+OK\r\n", Detect::No),
            (b"\x16\x03\x01\x02\x00", Detect::No),
            (b"SSH-2.0-OpenSSH_9.2\r\n", Detect::No),
        ];
        for (input, want) in cases {
            assert_eq!(detect_greeting(input), *want, "{input:?}");
        }
    }

    #[test]
    fn long_versions_are_decided_within_the_bound() {
        let mut g = b"\x64\x00\x00\x00\x0a".to_vec();
        g.extend(std::iter::repeat_n(b'9', MAX_VERSION_LEN));
        assert_eq!(detect_greeting(&g), Detect::NeedMore);
        g.push(b'9');
        assert_eq!(g.len(), MAX_DETECT_BYTES);
        assert_eq!(detect_greeting(&g), Detect::No);
        g.pop();
        g.push(0);
        assert_eq!(detect_greeting(&g), Detect::Yes);
    }

    #[test]
    fn any_prefix_is_decided_the_same_once_decided() {
        // Once a verdict is reached, more bytes never change it.
        let g: &[u8] = b"\x64\x00\x00\x00\x0a8.0.36\x00\x0c\x00\x00\x00abcdefgh\x00";
        let mut seen = None;
        for end in 0..=g.len() {
            let d = detect_greeting(&g[..end]);
            if let Some(prev) = seen {
                assert_eq!(d, prev, "at {end}");
            } else if d != Detect::NeedMore {
                seen = Some(d);
            }
        }
        assert_eq!(seen, Some(Detect::Yes));
    }
}
