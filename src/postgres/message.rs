//! The messages that matter for spans, decoded from the kept body prefix of
//! a [`Frame`] into small owned values.
//!
//! Decoding never fails: a body too short or garbled for its type yields
//! empty strings or `None`s; framing errors are the [`Framer`]'s business.
//!
//! [`Framer`]: super::frame::Framer

use super::frame::Frame;

/// The protocol codes of the startup packets.
pub(super) const CANCEL_REQUEST: u32 = 80_877_102;
pub(super) const SSL_REQUEST: u32 = 80_877_103;
pub(super) const GSSENC_REQUEST: u32 = 80_877_104;

/// A client message, as far as spans care.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Frontend {
    Startup {
        user: Option<String>,
        database: Option<String>,
    },
    SslRequest,
    GssEncRequest,
    CancelRequest,
    /// A startup packet with an unknown protocol code.
    UnknownStartup,
    /// Simple query: the SQL (possibly several statements), cut if long.
    Query(Vec<u8>),
    Parse {
        statement: String,
        sql: Vec<u8>,
    },
    Bind {
        portal: String,
        statement: String,
    },
    Describe,
    Execute {
        portal: String,
    },
    /// Close of a prepared statement (`true`) or a portal, by name.
    Close {
        statement: bool,
        name: String,
    },
    Sync,
    Flush,
    Terminate,
    FunctionCall,
    /// CopyData, CopyDone, CopyFail, password and SASL messages: no reply of
    /// their own.
    Other,
}

/// A server message, as far as spans care.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Backend {
    /// The one-byte answer to an SSLRequest or GSSENCRequest.
    Answer(u8),
    ParseComplete,
    BindComplete,
    CloseComplete,
    ParameterDescription,
    /// RowDescription or NoData: the end of a Describe's reply.
    RowShape,
    DataRow,
    CommandComplete(CommandTag),
    EmptyQuery,
    PortalSuspended,
    Error(ServerError),
    ReadyForQuery,
    /// Authentication, ParameterStatus, BackendKeyData, NoticeResponse,
    /// NotificationResponse, Copy*, FunctionCallResponse,
    /// NegotiateProtocolVersion: not tied to a span's end.
    Other,
}

/// A CommandComplete tag: `INSERT 0 5` is command `INSERT`, 5 rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CommandTag {
    /// The words before the row count (`CREATE TABLE`, `SELECT`).
    pub command: String,
    pub rows: Option<u64>,
}

/// The fields of an ErrorResponse that spans use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct ServerError {
    /// SQLSTATE (`C`), e.g. `42P01`.
    pub code: Option<String>,
    /// Primary message (`M`).
    pub message: Option<String>,
}

/// Splits a NUL-terminated string off the front of `body`. Without a NUL
/// (a cut body), the whole rest is the string.
fn cstr(body: &[u8]) -> (&[u8], &[u8]) {
    match body.iter().position(|&b| b == 0) {
        Some(i) => (
            body.get(..i).unwrap_or_default(),
            body.get(i + 1..).unwrap_or_default(),
        ),
        None => (body, &[]),
    }
}

fn string(bytes: &[u8]) -> String {
    crate::http::capped_string(bytes)
}

pub(super) fn decode_frontend(f: &Frame<'_>) -> Frontend {
    let body = f.body;
    match f.tag {
        0 => decode_startup(body),
        b'Q' => Frontend::Query(cstr(body).0.to_vec()),
        b'P' => {
            let (name, rest) = cstr(body);
            Frontend::Parse {
                statement: string(name),
                sql: cstr(rest).0.to_vec(),
            }
        }
        b'B' => {
            let (portal, rest) = cstr(body);
            Frontend::Bind {
                portal: string(portal),
                statement: string(cstr(rest).0),
            }
        }
        b'D' => Frontend::Describe,
        b'E' => Frontend::Execute {
            portal: string(cstr(body).0),
        },
        b'C' => {
            let (kind, rest) = body.split_first().map_or((0, &[][..]), |(k, r)| (*k, r));
            Frontend::Close {
                statement: kind == b'S',
                name: string(cstr(rest).0),
            }
        }
        b'S' => Frontend::Sync,
        b'H' => Frontend::Flush,
        b'X' => Frontend::Terminate,
        b'F' => Frontend::FunctionCall,
        _ => Frontend::Other,
    }
}

fn decode_startup(body: &[u8]) -> Frontend {
    let code = match body {
        [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]),
        _ => return Frontend::UnknownStartup,
    };
    match code {
        SSL_REQUEST => Frontend::SslRequest,
        GSSENC_REQUEST => Frontend::GssEncRequest,
        CANCEL_REQUEST => Frontend::CancelRequest,
        _ if code >> 16 == 3 => {
            let (mut user, mut database) = (None, None);
            let mut rest = body.get(4..).unwrap_or_default();
            while !rest.is_empty() {
                let (key, after_key) = cstr(rest);
                if key.is_empty() {
                    break;
                }
                let (value, after_value) = cstr(after_key);
                match key {
                    b"user" => user = Some(string(value)),
                    b"database" => database = Some(string(value)),
                    _ => {}
                }
                rest = after_value;
            }
            Frontend::Startup { user, database }
        }
        _ => Frontend::UnknownStartup,
    }
}

pub(super) fn decode_backend(f: &Frame<'_>, answer: bool) -> Backend {
    if answer {
        return Backend::Answer(f.tag);
    }
    let body = f.body;
    match f.tag {
        b'1' => Backend::ParseComplete,
        b'2' => Backend::BindComplete,
        b'3' => Backend::CloseComplete,
        b't' => Backend::ParameterDescription,
        b'T' | b'n' => Backend::RowShape,
        b'D' => Backend::DataRow,
        b'C' => Backend::CommandComplete(parse_tag(cstr(body).0)),
        b'I' => Backend::EmptyQuery,
        b's' => Backend::PortalSuspended,
        b'E' => Backend::Error(parse_error(body)),
        b'Z' => Backend::ReadyForQuery,
        _ => Backend::Other,
    }
}

/// `INSERT 0 5` → (`INSERT`, 5); `CREATE TABLE` → (`CREATE TABLE`, none).
fn parse_tag(tag: &[u8]) -> CommandTag {
    let tag = string(tag);
    let mut words: Vec<&str> = tag.split_ascii_whitespace().collect();
    let mut rows = None;
    if let Some(n) = words.last().and_then(|w| w.parse::<u64>().ok()) {
        rows = Some(n);
        words.pop();
        // INSERT's tag carries an OID (always 0 now) before the count.
        if words.first() == Some(&"INSERT") && words.len() == 2 {
            words.pop();
        }
    }
    CommandTag {
        command: words.join(" "),
        rows,
    }
}

/// ErrorResponse: fields of a code byte and a NUL-terminated value, ended
/// by a zero byte.
fn parse_error(mut body: &[u8]) -> ServerError {
    let mut err = ServerError::default();
    while let Some((&code, rest)) = body.split_first() {
        if code == 0 {
            break;
        }
        let (value, after) = cstr(rest);
        match code {
            b'C' => err.code = Some(string(value)),
            b'M' => err.message = Some(string(value)),
            _ => {}
        }
        body = after;
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn frame(tag: u8, body: &[u8]) -> Frame<'_> {
        Frame {
            tag,
            body,
            started: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn startup_packets() {
        let cases: &[(&[u8], Frontend)] = &[
            (
                b"\x00\x03\x00\x00user\x00bob\x00database\x00shop\x00application_name\x00psql\x00\x00",
                Frontend::Startup {
                    user: Some("bob".into()),
                    database: Some("shop".into()),
                },
            ),
            (
                b"\x00\x03\x00\x02user\x00bob\x00\x00",
                Frontend::Startup {
                    user: Some("bob".into()),
                    database: None,
                },
            ),
            (b"\x00\x03\x00\x00user", Frontend::Startup { user: Some(String::new()), database: None }),
            (b"\x04\xd2\x16\x2f", Frontend::SslRequest),
            (b"\x04\xd2\x16\x30", Frontend::GssEncRequest),
            (b"\x04\xd2\x16\x2e\x00\x00\x00\x01\x00\x00\x00\x02", Frontend::CancelRequest),
            (b"\x00\x02\x00\x00", Frontend::UnknownStartup),
            (b"\x00\x03", Frontend::UnknownStartup),
        ];
        for (body, want) in cases {
            assert_eq!(decode_frontend(&frame(0, body)), *want, "{body:?}");
        }
    }

    #[test]
    fn client_messages() {
        let cases: &[(u8, &[u8], Frontend)] = &[
            (b'Q', b"SELECT 1\x00", Frontend::Query(b"SELECT 1".to_vec())),
            (
                b'Q',
                b"SELECT 'cut",
                Frontend::Query(b"SELECT 'cut".to_vec()),
            ),
            (
                b'P',
                b"s1\x00SELECT $1\x00\x00\x01\x00\x00\x00\x17",
                Frontend::Parse {
                    statement: "s1".into(),
                    sql: b"SELECT $1".to_vec(),
                },
            ),
            (
                b'B',
                b"\x00s1\x00\x00\x00\x00\x00\x00\x00",
                Frontend::Bind {
                    portal: String::new(),
                    statement: "s1".into(),
                },
            ),
            (
                b'E',
                b"\x00\x00\x00\x00\x00",
                Frontend::Execute {
                    portal: String::new(),
                },
            ),
            (
                b'E',
                b"",
                Frontend::Execute {
                    portal: String::new(),
                },
            ),
            (
                b'C',
                b"Ss1\x00",
                Frontend::Close {
                    statement: true,
                    name: "s1".into(),
                },
            ),
            (
                b'C',
                b"",
                Frontend::Close {
                    statement: false,
                    name: String::new(),
                },
            ),
            (b'S', b"", Frontend::Sync),
            (b'X', b"", Frontend::Terminate),
            (b'p', b"", Frontend::Other),
        ];
        for (tag, body, want) in cases {
            assert_eq!(decode_frontend(&frame(*tag, body)), *want, "{body:?}");
        }
    }

    #[test]
    fn command_tags() {
        let cases: &[(&[u8], &str, Option<u64>)] = &[
            (b"INSERT 0 5\x00", "INSERT", Some(5)),
            (b"SELECT 3\x00", "SELECT", Some(3)),
            (b"UPDATE 0\x00", "UPDATE", Some(0)),
            (b"CREATE TABLE\x00", "CREATE TABLE", None),
            (b"COPY 2\x00", "COPY", Some(2)),
            (b"MERGE 1\x00", "MERGE", Some(1)),
            (b"\x00", "", None),
            (b"", "", None),
        ];
        for (body, command, rows) in cases {
            let Backend::CommandComplete(tag) = decode_backend(&frame(b'C', body), false) else {
                panic!("{body:?}");
            };
            assert_eq!(
                (tag.command.as_str(), tag.rows),
                (*command, *rows),
                "{body:?}"
            );
        }
    }

    #[test]
    fn error_fields() {
        let body = b"SERROR\x00VERROR\x00C42P01\x00Mrelation \"t\" does not exist\x00P15\x00\x00";
        assert_eq!(
            decode_backend(&frame(b'E', body), false),
            Backend::Error(ServerError {
                code: Some("42P01".into()),
                message: Some("relation \"t\" does not exist".into()),
            })
        );
        // Cut short: whatever was there.
        assert_eq!(
            decode_backend(&frame(b'E', b"C2"), false),
            Backend::Error(ServerError {
                code: Some("2".into()),
                message: None,
            })
        );
        assert_eq!(
            decode_backend(&frame(b'N', b"x"), true),
            Backend::Answer(b'N')
        );
    }
}
