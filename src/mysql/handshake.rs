//! The connection phase: the server's greeting, the client's
//! HandshakeResponse (or its SSLRequest), and COM_CHANGE_USER, which
//! re-authenticates and may switch databases.
//!
//! Only what framing and spans need is read: the server's product (MySQL or
//! MariaDB), both sides' capabilities (their intersection decides EOF
//! packets, metadata flags, session tracking and compression), and the
//! database the client names.

use super::packet::Cursor;
use super::{lossy_prefix, MAX_QUERY_BYTES};

/// Capability flags (the low 32 bits, MySQL's and MariaDB's alike).
pub(super) mod caps {
    /// In a MariaDB handshake: unset means "MariaDB, read the extended
    /// capabilities"; MySQL's CLIENT_LONG_PASSWORD.
    pub const CLIENT_MYSQL: u32 = 1;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const COMPRESS: u32 = 1 << 5;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const SSL: u32 = 1 << 11;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const PLUGIN_AUTH_LENENC_DATA: u32 = 1 << 21;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;
    pub const OPTIONAL_RESULTSET_METADATA: u32 = 1 << 25;
    pub const ZSTD_COMPRESSION: u32 = 1 << 26;
    pub const QUERY_ATTRIBUTES: u32 = 1 << 27;

    /// MariaDB's extended capabilities (bits 32 and up, shifted down).
    pub const MARIADB_CACHE_METADATA: u32 = 1 << 4;
}

/// What the server's greeting tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Greeting {
    /// `db.system.name`: `mariadb` if the version says so, else `mysql`.
    pub system: &'static str,
    pub caps: u32,
    /// MariaDB's extended capabilities (0 for MySQL).
    pub ext_caps: u32,
}

/// Parses an initial handshake of protocol 10; `None` if it is not one.
pub(super) fn parse_greeting(payload: &[u8]) -> Option<Greeting> {
    let mut c = Cursor(payload);
    if c.u8()? != 10 {
        return None;
    }
    let version = c.nul_terminated()?;
    let system = if version.windows(7).any(|w| w == b"MariaDB") {
        "mariadb"
    } else {
        "mysql"
    };
    c.bytes(4 + 8 + 1)?; // thread id, scramble part 1, filler
    let low = u32::from(c.u16()?);
    // Older servers stop here.
    let high = (|| {
        c.bytes(1 + 2)?; // charset, status
        let high = u32::from(c.u16()?);
        Some(high)
    })()
    .unwrap_or(0);
    let caps = low | high << 16;
    let ext_caps = (|| {
        c.bytes(1 + 6)?; // auth data length, reserved
        c.u32()
    })()
    .filter(|_| caps & caps::CLIENT_MYSQL == 0)
    .unwrap_or(0);
    Some(Greeting {
        system,
        caps,
        ext_caps,
    })
}

/// What the client's first packet tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Login {
    pub caps: u32,
    pub ext_caps: u32,
    /// An SSLRequest: the rest of the connection is TLS.
    pub ssl_request: bool,
    /// The database named with CLIENT_CONNECT_WITH_DB.
    pub database: Option<String>,
}

/// Fixed part of a HandshakeResponse41 (and the whole SSLRequest):
/// capabilities, max packet, charset, 19 filler bytes, 4 bytes of MariaDB
/// extended capabilities.
const LOGIN_FIXED: usize = 32;

/// Most bytes kept of a database name (64 characters of up to 4 bytes).
pub(super) const MAX_DATABASE_BYTES: usize = 256;

/// Parses a HandshakeResponse (4.1 or 3.20) or an SSLRequest; `len` is the
/// whole packet's length, `payload` its kept prefix.
pub(super) fn parse_login(payload: &[u8], len: u64) -> Option<Login> {
    let mut c = Cursor(payload);
    let low = c.u16()?;
    if u32::from(low) & caps::PROTOCOL_41 == 0 {
        // HandshakeResponse320: 2 bytes of capabilities, 3 of max packet.
        let caps = u32::from(low);
        return Some(Login {
            caps,
            ext_caps: 0,
            ssl_request: caps & caps::SSL != 0 && len <= 5,
            database: None,
        });
    }
    let caps = u32::from(low) | u32::from(c.u16()?) << 16;
    let ext_caps = {
        let mut fixed = Cursor(
            payload
                .get(LOGIN_FIXED - 4..LOGIN_FIXED)
                .unwrap_or_default(),
        );
        fixed
            .u32()
            .filter(|_| caps & caps::CLIENT_MYSQL == 0)
            .unwrap_or(0)
    };
    if caps & caps::SSL != 0 && len <= LOGIN_FIXED as u64 {
        return Some(Login {
            caps,
            ext_caps,
            ssl_request: true,
            database: None,
        });
    }
    // The rest may be cut short (a long authentication token): the
    // capabilities alone still frame the connection.
    let database = (|| {
        c.bytes(LOGIN_FIXED - 4)?;
        c.nul_terminated()?; // user
        skip_auth_response(&mut c, caps)?;
        if caps & caps::CONNECT_WITH_DB == 0 {
            return None;
        }
        c.nul_terminated().and_then(database_name)
    })();
    Some(Login {
        caps,
        ext_caps,
        ssl_request: false,
        database,
    })
}

fn skip_auth_response(c: &mut Cursor<'_>, caps: u32) -> Option<()> {
    if caps & caps::PLUGIN_AUTH_LENENC_DATA != 0 {
        c.lenenc_bytes()?;
    } else if caps & caps::SECURE_CONNECTION != 0 {
        let n = c.u8()?;
        c.bytes(usize::from(n))?;
    } else {
        c.nul_terminated()?;
    }
    Some(())
}

/// The database of a COM_CHANGE_USER (after its command byte): `Some(None)`
/// when it names none (the session then has no current database), `None`
/// if the packet could not be read.
pub(super) fn parse_change_user(payload: &[u8], caps: u32) -> Option<Option<String>> {
    let mut c = Cursor(payload);
    c.nul_terminated()?; // user
    if caps & caps::SECURE_CONNECTION != 0 {
        let n = c.u8()?;
        c.bytes(usize::from(n))?;
    } else {
        c.nul_terminated()?;
    }
    Some(c.nul_terminated().and_then(database_name))
}

/// A database name from the wire; empty means none.
pub(super) fn database_name(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty()).then(|| lossy_prefix(bytes, MAX_DATABASE_BYTES))
}

/// The statement text of a COM_QUERY (after its command byte). With
/// CLIENT_QUERY_ATTRIBUTES (MySQL 8.0.23+) the text follows a parameter
/// block, skipped here; `None` if that block cannot be read.
pub(super) fn query_text(payload: &[u8], caps: u32) -> Option<String> {
    let mut c = Cursor(payload);
    if caps & caps::QUERY_ATTRIBUTES != 0 {
        skip_query_attributes(&mut c)?;
    }
    Some(lossy_prefix(c.rest(), MAX_QUERY_BYTES))
}

fn skip_query_attributes(c: &mut Cursor<'_>) -> Option<()> {
    let count = usize::try_from(c.lenenc()?).ok()?;
    c.lenenc()?; // parameter set count, always 1
    if count == 0 {
        return Some(());
    }
    let nulls = c.bytes(count.div_ceil(8))?;
    if c.u8()? != 1 {
        return None; // Types not sent: values cannot be framed.
    }
    let mut types = Vec::new();
    for _ in 0..count.min(4096) {
        let ty = c.u16()?;
        c.lenenc_bytes()?; // name
        types.push(ty);
    }
    for (i, ty) in types.into_iter().enumerate() {
        let is_null = nulls.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
        if !is_null {
            skip_binary_value(c, (ty & 0xff) as u8)?;
        }
    }
    Some(())
}

/// Skips one value of the binary protocol, by its column type.
fn skip_binary_value(c: &mut Cursor<'_>, ty: u8) -> Option<()> {
    let n = match ty {
        0x06 => 0,               // NULL
        0x01 => 1,               // TINY
        0x02 | 0x0d => 2,        // SHORT, YEAR
        0x03 | 0x04 | 0x09 => 4, // LONG, FLOAT, INT24
        0x05 | 0x08 => 8,        // DOUBLE, LONGLONG
        // TIMESTAMP, DATE, TIME, DATETIME: a one-byte length.
        0x07 | 0x0a | 0x0b | 0x0c => usize::from(c.u8()?),
        // Strings, decimals, blobs, JSON, …: a length-encoded string.
        _ => usize::try_from(c.lenenc()?).ok()?,
    };
    c.bytes(n).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A MariaDB 10.11 greeting as captured (tests/fixtures/mysql).
    const MARIADB_GREETING: &[u8] = b"\x0a5.5.5-10.11.19-MariaDB-0+deb12u1\x00\x0c\x00\x00\x00zF0YRlJl\x00\xfe\xf7\x2d\x02\x00\xff\x81\x15\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00a#';43ABCDE\x00mysql_native_password\x00";

    #[test]
    fn greetings() {
        let g = parse_greeting(MARIADB_GREETING).unwrap();
        assert_eq!(g.system, "mariadb");
        assert_eq!(g.caps, 0x81ff_f7fe);
        assert_eq!(g.ext_caps, 0x1d);
        assert!(g.caps & caps::DEPRECATE_EOF != 0);
        // MySQL: CLIENT_MYSQL set, so the reserved bytes are not capabilities.
        let mysql = b"\x0a8.0.36\x00\x01\x00\x00\x00abcdefgh\x00\xff\xff\x21\x02\x00\xff\xdf\x15\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00";
        let g = parse_greeting(mysql).unwrap();
        assert_eq!((g.system, g.caps, g.ext_caps), ("mysql", 0xdfff_ffff, 0));
        // An old server: no capabilities past the first two bytes.
        let old = b"\x0a5.0.1\x00\x01\x00\x00\x00abcdefgh\x00\x2c\xa2";
        assert_eq!(parse_greeting(old).unwrap().caps, 0xa22c);
        for bad in [
            &b""[..],
            b"\x09x\x00",
            b"\x0a5.0",
            b"\x0a5.0\x00\x01",
            b"\xff\x15\x04",
        ] {
            assert_eq!(parse_greeting(bad), None, "{bad:?}");
        }
    }

    fn login41(caps: u32, ext: u32, tail: &[u8]) -> Vec<u8> {
        let mut v = caps.to_le_bytes().to_vec();
        v.extend_from_slice(&[0, 0, 0, 1, 0x21]);
        v.extend_from_slice(&[0; 19]);
        v.extend_from_slice(&ext.to_le_bytes());
        v.extend_from_slice(tail);
        v
    }

    #[test]
    fn logins() {
        let base = caps::PROTOCOL_41 | caps::SECURE_CONNECTION;
        let with_db = base | caps::CONNECT_WITH_DB;
        let cases: &[(Vec<u8>, Login)] = &[
            (
                login41(
                    with_db,
                    0x1d,
                    b"root\x00\x00test\x00mysql_native_password\x00",
                ),
                Login {
                    caps: with_db,
                    ext_caps: 0x1d,
                    ssl_request: false,
                    database: Some("test".into()),
                },
            ),
            (
                login41(base | caps::CLIENT_MYSQL, 0x1d, b"root\x00\x03abc"),
                Login {
                    caps: base | 1,
                    ext_caps: 0,
                    ssl_request: false,
                    database: None,
                },
            ),
            (
                login41(
                    with_db | caps::PLUGIN_AUTH_LENENC_DATA,
                    0,
                    b"u\x00\x02ab\x00",
                ),
                Login {
                    caps: with_db | caps::PLUGIN_AUTH_LENENC_DATA,
                    ext_caps: 0,
                    ssl_request: false,
                    database: None,
                },
            ),
            (
                login41(base | caps::SSL, 0, b""),
                Login {
                    caps: base | caps::SSL,
                    ext_caps: 0,
                    ssl_request: true,
                    database: None,
                },
            ),
            (
                b"\x8d\xa0\xff\xff\x00".to_vec(),
                Login {
                    caps: 0xa08d,
                    ext_caps: 0,
                    ssl_request: false,
                    database: None,
                },
            ),
            (
                b"\x8d\xa8\xff\xff\x00".to_vec(),
                Login {
                    caps: 0xa88d,
                    ext_caps: 0,
                    ssl_request: true,
                    database: None,
                },
            ),
        ];
        for (payload, want) in cases {
            let got = parse_login(payload, payload.len() as u64);
            assert_eq!(got.as_ref(), Some(want), "{payload:?}");
        }
        // A full login with CLIENT_SSL set is not a TLS request.
        let full = login41(with_db | caps::SSL, 0, b"u\x00\x00d\x00");
        assert!(!parse_login(&full, full.len() as u64).unwrap().ssl_request);
        // A cut-off login still gives its capabilities.
        let cut = login41(with_db, 0, b"root");
        let want = Login {
            caps: with_db,
            ext_caps: 0,
            ssl_request: false,
            database: None,
        };
        assert_eq!(parse_login(&cut, 500), Some(want));
        assert_eq!(parse_login(b"\x0d", 1), None);
    }

    #[test]
    fn change_user() {
        let secure = caps::SECURE_CONNECTION;
        let p = b"root\x00\x00information_schema\x00\xe0\x00mysql_native_password\x00\x00";
        assert_eq!(
            parse_change_user(p, secure),
            Some(Some("information_schema".into()))
        );
        assert_eq!(parse_change_user(b"root\x00\x00\x00", secure), Some(None));
        assert_eq!(
            parse_change_user(b"root\x00pw\x00db\x00", 0),
            Some(Some("db".into()))
        );
        assert_eq!(parse_change_user(b"root", secure), None);
    }

    #[test]
    fn query_texts() {
        let qa = caps::QUERY_ATTRIBUTES;
        assert_eq!(query_text(b"SELECT 1", 0).as_deref(), Some("SELECT 1"));
        assert_eq!(
            query_text(b"\x00\x01SELECT 1", qa).as_deref(),
            Some("SELECT 1")
        );
        // Two attributes: a LONGLONG and a string, neither NULL.
        let with_attrs = b"\x02\x01\x00\x01\x08\x00\x01a\xfd\x00\x01b\x07\x00\x00\x00\x00\x00\x00\x00\x02hiSELECT 2";
        assert_eq!(query_text(with_attrs, qa).as_deref(), Some("SELECT 2"));
        // One NULL attribute: no value bytes.
        assert_eq!(
            query_text(b"\x01\x01\x01\x01\x08\x00\x01aSELECT 3", qa).as_deref(),
            Some("SELECT 3")
        );
        assert_eq!(query_text(b"\x02\x01\x00\x00", qa), None);
        assert_eq!(query_text(b"", qa), None);
        let long = vec![b'x'; MAX_QUERY_BYTES + 10];
        assert_eq!(query_text(&long, 0).map(|s| s.len()), Some(MAX_QUERY_BYTES));
    }
}
