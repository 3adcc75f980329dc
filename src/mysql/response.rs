//! Framing of one command's response, packet by packet.
//!
//! What ends a response depends on the command and on the capabilities
//! both sides agreed on:
//! - OK (`0x00`) or ERR (`0xff`) alone;
//! - a result set: a column count, column definitions (left out when
//!   MariaDB's metadata cache or MySQL's optional metadata says so), an EOF
//!   unless CLIENT_DEPRECATE_EOF, rows (skipped unseen), then an EOF, or an
//!   OK with a `0xfe` header under CLIENT_DEPRECATE_EOF, or an ERR;
//! - several of those in a row while the status says
//!   SERVER_MORE_RESULTS_EXISTS (multi-statements, stored procedures);
//! - LOCAL INFILE (`0xfb`): the client uploads a file, then OK or ERR;
//! - a prepare's OK, its parameter and column definitions, each group
//!   followed by an EOF unless CLIENT_DEPRECATE_EOF.
//!
//! An ERR with code `0xffff` is MariaDB's progress report, not an error.
//! OK packets may carry session-state changes; a change of schema (`USE`,
//! COM_INIT_DB, COM_CHANGE_USER) is picked up from them.

use super::handshake::{caps, database_name};
use super::packet::{Cursor, Packet};
use super::{lossy_prefix, MAX_ERROR_MESSAGE_BYTES};

/// Server status flags.
const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x0040;
const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
const SERVER_SESSION_STATE_CHANGED: u16 = 0x4000;

/// Session-state change type carrying the new default schema.
const SESSION_TRACK_SCHEMA: u8 = 1;

/// Error code of MariaDB's progress report packets.
const PROGRESS_REPORT: u16 = 0xffff;

/// The capabilities that shape responses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Framing {
    pub protocol_41: bool,
    pub deprecate_eof: bool,
    /// A column count is followed by a "metadata follows" byte.
    pub metadata_flag: bool,
    pub session_track: bool,
    /// Prepare responses carry a "metadata follows" byte (MySQL only).
    pub prepare_metadata_flag: bool,
}

impl Framing {
    /// From the capabilities both sides agreed on.
    pub(super) fn new(caps: u32, ext_caps: u32) -> Framing {
        let optional_metadata = caps & caps::OPTIONAL_RESULTSET_METADATA != 0;
        Framing {
            protocol_41: caps & caps::PROTOCOL_41 != 0,
            deprecate_eof: caps & caps::DEPRECATE_EOF != 0,
            metadata_flag: optional_metadata || ext_caps & caps::MARIADB_CACHE_METADATA != 0,
            session_track: caps & caps::SESSION_TRACK != 0,
            prepare_metadata_flag: optional_metadata,
        }
    }
}

/// A server's ERR packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ServerError {
    pub code: u16,
    /// The five-character SQL state (protocol 4.1), e.g. `42S02`.
    pub state: Option<String>,
    pub message: String,
}

/// Parses an ERR packet (starting with its `0xff`).
pub(super) fn parse_error(payload: &[u8], protocol_41: bool) -> Option<ServerError> {
    let mut c = Cursor(payload);
    c.u8()?;
    let code = c.u16()?;
    let mut state = None;
    if protocol_41 && c.rest().first() == Some(&b'#') {
        c.u8()?;
        state = c.bytes(5).map(|s| lossy_prefix(s, 5));
    }
    Some(ServerError {
        code,
        state,
        message: lossy_prefix(c.rest(), MAX_ERROR_MESSAGE_BYTES),
    })
}

/// What a response waits for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expect {
    /// OK, ERR, LOCAL INFILE or a column count.
    ResultStart,
    /// `left` definitions, then an EOF if `eof`, then `then`.
    Definitions { left: u64, eof: bool, then: Then },
    /// Rows, until an EOF / OK terminator or an ERR.
    Rows,
    /// After a LOCAL INFILE request: the server's OK or ERR once the upload
    /// is over.
    InfileReply,
    /// The OK of a COM_STMT_PREPARE, or an ERR.
    PrepareStart,
    /// Any single packet (OK, ERR, EOF, COM_STATISTICS' string).
    OnePacket,
    /// COM_CHANGE_USER: authentication packets until OK or ERR.
    Reauthentication,
}

/// Where definitions lead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Then {
    Rows,
    /// A prepare's column definitions (`count`, with a trailing EOF if `eof`).
    PrepareColumns {
        count: u16,
        eof: bool,
    },
    Done,
}

/// What the caller should do after a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    Continue,
    /// The server asked for a LOCAL INFILE upload: the client's next
    /// packets, up to an empty one, are file contents.
    Infile,
    /// The response is complete.
    Done,
}

/// One command's response as it arrives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Response {
    pub expect: Expect,
    /// The ERR that ended it.
    pub error: Option<ServerError>,
    /// The last schema change the server reported (session tracking).
    pub schema: Option<Option<String>>,
    /// A prepare's statement id.
    pub statement_id: Option<u32>,
}

impl Response {
    pub(super) fn new(expect: Expect) -> Response {
        Response {
            expect,
            error: None,
            schema: None,
            statement_id: None,
        }
    }

    /// Whether packets starting with `first` are worth keeping: everything
    /// but rows and column definitions.
    pub(super) fn keeps(&self, first: u8) -> bool {
        match self.expect {
            Expect::Rows | Expect::Definitions { .. } => matches!(first, 0xfe | 0xff),
            _ => true,
        }
    }

    /// Takes the next packet of the response.
    pub(super) fn on_packet(&mut self, p: &Packet, f: Framing) -> Step {
        let first = p.first();
        if first == Some(0xff) {
            let error = parse_error(&p.data, f.protocol_41);
            if error.as_ref().is_some_and(|e| e.code == PROGRESS_REPORT) {
                return Step::Continue;
            }
            // An ERR ends any response, even in the middle of a result set.
            self.error = error.or(Some(ServerError {
                code: 0,
                state: None,
                message: String::new(),
            }));
            return Step::Done;
        }
        match self.expect {
            Expect::OnePacket => {
                if first == Some(0x00) {
                    self.ok(p, f);
                }
                Step::Done
            }
            Expect::Reauthentication => {
                if first == Some(0x00) {
                    self.ok(p, f);
                    return Step::Done;
                }
                Step::Continue // Auth switch or more authentication data.
            }
            Expect::InfileReply => self.after_ok(p, f),
            Expect::ResultStart => match first {
                Some(0x00) => self.after_ok(p, f),
                Some(0xfe) => self.after_terminator(p, f),
                Some(0xfb) => {
                    self.expect = Expect::InfileReply;
                    Step::Infile
                }
                _ => self.column_count(p, f),
            },
            Expect::Definitions { left, eof, then } => {
                if p.is_eof() {
                    // The EOF after definitions (or one arriving early).
                    if then == Then::Rows && status_of(p, f) & SERVER_STATUS_CURSOR_EXISTS != 0 {
                        // Rows come later, through COM_STMT_FETCH.
                        return Step::Done;
                    }
                    return self.go(then);
                }
                let left = left.saturating_sub(1);
                self.expect = Expect::Definitions { left, eof, then };
                self.settle()
            }
            Expect::Rows => {
                if p.is_eof() {
                    return self.after_terminator(p, f);
                }
                Step::Continue
            }
            Expect::PrepareStart => {
                let mut c = Cursor(&p.data);
                let prepare_ok = (|| {
                    if c.u8()? != 0 {
                        return None;
                    }
                    let id = c.u32()?;
                    let columns = c.u16()?;
                    let params = c.u16()?;
                    Some((id, columns, params))
                })();
                let Some((id, columns, params)) = prepare_ok else {
                    return Step::Done; // Not a prepare OK: nothing follows.
                };
                self.statement_id = Some(id);
                let with_metadata = !f.prepare_metadata_flag
                    || Cursor(p.data.get(12..).unwrap_or_default()).u8() != Some(0);
                let (params, columns) = if with_metadata {
                    (params, columns)
                } else {
                    (0, 0)
                };
                let eof = !f.deprecate_eof;
                self.expect = Expect::Definitions {
                    left: u64::from(params),
                    eof: eof && params > 0,
                    then: Then::PrepareColumns {
                        count: columns,
                        eof: eof && columns > 0,
                    },
                };
                self.settle()
            }
        }
    }

    /// A column count: definitions (unless left out), then rows.
    fn column_count(&mut self, p: &Packet, f: Framing) -> Step {
        let mut c = Cursor(&p.data);
        let Some(count) = c.lenenc() else {
            return Step::Done; // Not a result set: nothing sensible follows.
        };
        let with_metadata = !f.metadata_flag || c.u8() != Some(0);
        self.expect = Expect::Definitions {
            left: if with_metadata { count } else { 0 },
            eof: !f.deprecate_eof,
            then: Then::Rows,
        };
        self.settle()
    }

    /// Moves past definitions that are all in.
    fn settle(&mut self) -> Step {
        match self.expect {
            Expect::Definitions {
                left: 0,
                eof: false,
                then,
            } => self.go(then),
            _ => Step::Continue,
        }
    }

    fn go(&mut self, then: Then) -> Step {
        match then {
            Then::Rows => {
                self.expect = Expect::Rows;
                Step::Continue
            }
            Then::PrepareColumns { count, eof } => {
                self.expect = Expect::Definitions {
                    left: u64::from(count),
                    eof,
                    then: Then::Done,
                };
                self.settle()
            }
            Then::Done => Step::Done,
        }
    }

    /// An OK ends the response unless more results follow.
    fn after_ok(&mut self, p: &Packet, f: Framing) -> Step {
        let status = self.ok(p, f);
        self.more_or_done(status)
    }

    /// The EOF (or `0xfe` OK) ending a result set.
    fn after_terminator(&mut self, p: &Packet, f: Framing) -> Step {
        let status = if f.deprecate_eof {
            self.ok(p, f)
        } else {
            status_of(p, f)
        };
        self.more_or_done(status)
    }

    fn more_or_done(&mut self, status: u16) -> Step {
        if status & SERVER_MORE_RESULTS_EXISTS != 0 {
            self.expect = Expect::ResultStart;
            Step::Continue
        } else {
            Step::Done
        }
    }

    /// Reads an OK packet: its status flags, and any schema change.
    fn ok(&mut self, p: &Packet, f: Framing) -> u16 {
        let ok = parse_ok(&p.data, f);
        if let Some(schema) = ok.schema {
            self.schema = Some(schema);
        }
        ok.status
    }
}

/// The status flags of an EOF packet (protocol 4.1; 0 before).
fn status_of(p: &Packet, f: Framing) -> u16 {
    if !f.protocol_41 {
        return 0;
    }
    let mut c = Cursor(&p.data);
    (|| {
        c.bytes(1 + 2)?; // header, warnings
        c.u16()
    })()
    .unwrap_or(0)
}

struct Ok {
    status: u16,
    schema: Option<Option<String>>,
}

/// Reads an OK packet (header `0x00` or `0xfe`).
fn parse_ok(payload: &[u8], f: Framing) -> Ok {
    let mut c = Cursor(payload);
    let mut ok = Ok {
        status: 0,
        schema: None,
    };
    let _ = (|| {
        c.u8()?;
        c.lenenc()?; // affected rows
        c.lenenc()?; // last insert id
        if !f.protocol_41 {
            return None;
        }
        ok.status = c.u16()?;
        c.u16()?; // warnings
        if !f.session_track || c.is_empty() {
            return None;
        }
        c.lenenc_bytes()?; // info
        if ok.status & SERVER_SESSION_STATE_CHANGED == 0 {
            return None;
        }
        let mut changes = Cursor(c.lenenc_bytes()?);
        while !changes.is_empty() {
            let kind = changes.u8()?;
            let data = changes.lenenc_bytes()?;
            if kind == SESSION_TRACK_SCHEMA {
                ok.schema = Some(Cursor(data).lenenc_bytes().and_then(database_name));
            }
        }
        Some(())
    })();
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn pkt(data: &[u8]) -> Packet {
        Packet {
            seq: 1,
            len: data.len() as u64,
            data: data.to_vec(),
            start: SystemTime::UNIX_EPOCH,
        }
    }

    const CLASSIC: Framing = Framing {
        protocol_41: true,
        deprecate_eof: false,
        metadata_flag: false,
        session_track: true,
        prepare_metadata_flag: false,
    };
    const MODERN: Framing = Framing {
        protocol_41: true,
        deprecate_eof: true,
        metadata_flag: true,
        session_track: true,
        prepare_metadata_flag: false,
    };

    /// Feeds packets; returns the steps.
    fn run(expect: Expect, f: Framing, packets: &[&[u8]]) -> (Vec<Step>, Response) {
        let mut r = Response::new(expect);
        let steps = packets.iter().map(|p| r.on_packet(&pkt(p), f)).collect();
        (steps, r)
    }

    use Step::{Continue as C, Done as D, Infile as I};

    const COL: &[u8] =
        b"\x03def\x00\x00\x00\x011\x00\x0c?\x00\x01\x00\x00\x00\x03\x81\x00\x00\x00\x00";
    const EOF: &[u8] = b"\xfe\x00\x00\x02\x00";
    const EOF_MORE: &[u8] = b"\xfe\x00\x00\x0a\x00";
    const OK_FE: &[u8] = b"\xfe\x00\x00\x02\x00\x00\x00";
    const OK: &[u8] = b"\x00\x01\x00\x02\x00\x00\x00";
    const OK_MORE: &[u8] = b"\x00\x01\x00\x0a\x00\x00\x00";
    const ERR: &[u8] = b"\xff\x7a\x04#42S02Table 'test.t' doesn't exist";

    #[test]
    fn result_sets() {
        type Case<'a> = (&'a str, Expect, Framing, &'a [&'a [u8]], &'a [Step]);
        let cases: &[Case<'_>] = &[
            ("ok", Expect::ResultStart, CLASSIC, &[OK], &[D]),
            ("err", Expect::ResultStart, CLASSIC, &[ERR], &[D]),
            (
                "classic",
                Expect::ResultStart,
                CLASSIC,
                &[b"\x01", COL, EOF, b"\x011", b"\x012", EOF],
                &[C, C, C, C, C, D],
            ),
            (
                "no rows",
                Expect::ResultStart,
                CLASSIC,
                &[b"\x01", COL, EOF, EOF],
                &[C, C, C, D],
            ),
            (
                "deprecate eof",
                Expect::ResultStart,
                MODERN,
                &[b"\x01\x01", COL, b"\x011", OK_FE],
                &[C, C, C, D],
            ),
            (
                "metadata skipped",
                Expect::ResultStart,
                MODERN,
                &[b"\x01\x00", b"\x00\x00\x01", OK_FE],
                &[C, C, D],
            ),
            (
                "metadata skipped, classic eof",
                Expect::ResultStart,
                Framing {
                    metadata_flag: true,
                    ..CLASSIC
                },
                &[b"\x02\x00", EOF, b"\x011", EOF],
                &[C, C, C, D],
            ),
            (
                "error mid rows",
                Expect::ResultStart,
                CLASSIC,
                &[b"\x01", COL, EOF, b"\x011", ERR],
                &[C, C, C, C, D],
            ),
            (
                "multi",
                Expect::ResultStart,
                CLASSIC,
                &[
                    b"\x01", COL, EOF, b"\x011", EOF_MORE, OK_MORE, b"\x01", COL, EOF, EOF,
                ],
                &[C, C, C, C, C, C, C, C, C, D],
            ),
            (
                "progress",
                Expect::ResultStart,
                CLASSIC,
                &[b"\xff\xff\xff\x01\x01\x02\x00\x00", OK],
                &[C, D],
            ),
            (
                "infile",
                Expect::ResultStart,
                CLASSIC,
                &[b"\xfb/tmp/x.csv", OK],
                &[I, D],
            ),
            (
                "infile refused",
                Expect::ResultStart,
                CLASSIC,
                &[b"\xfb/tmp/x.csv", ERR],
                &[I, D],
            ),
            (
                "cursor",
                Expect::ResultStart,
                CLASSIC,
                &[b"\x01", COL, b"\xfe\x00\x00\x42\x00"],
                &[C, C, D],
            ),
            (
                "fetch",
                Expect::Rows,
                CLASSIC,
                &[b"\x00\x00\x01", b"\xfe\x00\x00\x82\x00"],
                &[C, D],
            ),
            (
                "one packet",
                Expect::OnePacket,
                CLASSIC,
                &[b"Uptime: 5  Threads: 1"],
                &[D],
            ),
            (
                "reauth",
                Expect::Reauthentication,
                CLASSIC,
                &[b"\xfemysql_native_password\x00abc", b"\x01\x03", OK],
                &[C, C, D],
            ),
            (
                "garbage count",
                Expect::ResultStart,
                CLASSIC,
                &[b"\xfc\x01"],
                &[D],
            ),
        ];
        for (name, expect, f, packets, want) in cases {
            let (steps, _) = run(*expect, *f, packets);
            assert_eq!(steps, *want, "{name}");
        }
    }

    #[test]
    fn prepares() {
        let ok = |cols: u16, params: u16| {
            let mut v = b"\x00\x07\x00\x00\x00".to_vec();
            v.extend_from_slice(&cols.to_le_bytes());
            v.extend_from_slice(&params.to_le_bytes());
            v.extend_from_slice(b"\x00\x00\x00");
            v
        };
        let (a, b, c, d) = (ok(0, 0), ok(2, 1), ok(0, 2), ok(1, 0));
        type Case<'a> = (Framing, Vec<&'a [u8]>, &'a [Step]);
        let cases: &[Case<'_>] = &[
            (CLASSIC, vec![&a], &[D]),
            (
                CLASSIC,
                vec![&b, COL, EOF, COL, COL, EOF],
                &[C, C, C, C, C, D],
            ),
            (MODERN, vec![&b, COL, COL, COL], &[C, C, C, D]),
            (CLASSIC, vec![&c, COL, COL, EOF], &[C, C, C, D]),
            (CLASSIC, vec![&d, COL, EOF], &[C, C, D]),
            (CLASSIC, vec![ERR], &[D]),
        ];
        for (f, packets, want) in cases {
            let (steps, r) = run(Expect::PrepareStart, *f, packets);
            assert_eq!(steps, *want, "{packets:?}");
            if r.error.is_none() {
                assert_eq!(r.statement_id, Some(7));
            }
        }
    }

    #[test]
    fn errors_and_schema_changes() {
        let (_, r) = run(Expect::ResultStart, CLASSIC, &[ERR]);
        let e = r.error.unwrap();
        assert_eq!((e.code, e.state.as_deref()), (1146, Some("42S02")));
        assert_eq!(e.message, "Table 'test.t' doesn't exist");
        let old = parse_error(b"\xff\x15\x04Access denied", false).unwrap();
        assert_eq!(
            (old.code, old.state, old.message.as_str()),
            (1045, None, "Access denied")
        );
        assert_eq!(parse_error(b"\xff\x15", true), None);
        // OK with a session-state change naming the new schema.
        let ok = b"\x00\x00\x00\x02\x40\x00\x00\x00\x15\x01\x13\x12information_schema";
        let (_, r) = run(Expect::OnePacket, CLASSIC, &[ok]);
        assert_eq!(r.schema, Some(Some("information_schema".to_owned())));
        // Without session tracking the same bytes are an info string.
        let (_, r) = run(
            Expect::OnePacket,
            Framing {
                session_track: false,
                ..CLASSIC
            },
            &[ok],
        );
        assert_eq!(r.schema, None);
        // Other state changes (system variables) are not schema changes.
        let vars = b"\x00\x00\x00\x02\x40\x00\x00\x00\x10\x00\x0e\x0aautocommit\x02ON";
        let (_, r) = run(Expect::OnePacket, CLASSIC, &[vars]);
        assert_eq!(r.schema, None);
    }

    #[test]
    fn only_terminators_are_kept_among_rows() {
        let mut r = Response::new(Expect::Rows);
        assert!(!r.keeps(0x01) && !r.keeps(0x00) && r.keeps(0xfe) && r.keeps(0xff));
        r.expect = Expect::ResultStart;
        assert!(r.keeps(0x01));
    }
}
