//! Tests of [`MysqlConnection`]: scenarios built packet by packet, each
//! replayed whole, byte by byte and at random splits (the results must not
//! differ), and the harness the other test files share. The edges (phases,
//! closes, bounds) are in `edge_tests.rs`; captured traffic of real clients
//! is replayed in `fixture_tests.rs`.

use super::handshake::caps;
use super::*;
use crate::span::{AttrValue, SpanStatus};
use crate::testkit::Ev::{self, *};
use crate::testkit::{at, Split, StopWatch};

/// What a run produced.
#[derive(Debug, PartialEq)]
pub(super) struct Outcome {
    pub ops: Vec<Operation>,
    /// Index of the event at which the connection first said Stop.
    pub stopped_at: Option<usize>,
    pub tls: bool,
}

/// Runs the events, event `i` at time [`at`]`(i)`.
pub(super) fn run(events: &[Ev], split: Split) -> Outcome {
    run_from(MysqlConnection::new(), events, split)
}

/// As [`run`], on a connection made by the caller.
pub(super) fn run_from(mut conn: MysqlConnection, events: &[Ev], split: Split) -> Outcome {
    let mut done = Vec::new();
    let mut stop = StopWatch::default();
    let mut cutter = split.cutter(12);
    for (i, ev) in events.iter().enumerate() {
        let now = at(i);
        let reported = done.len();
        let mut flows = Vec::new();
        let (data, out) = match ev {
            Out(d) => (d, true),
            In(d) => (d, false),
            Close(reason) => {
                conn.on_close(now, *reason, &mut done);
                continue;
            }
        };
        for piece in cutter.pieces(data) {
            flows.push(if out {
                conn.on_outbound(piece, now, &mut done)
            } else {
                conn.on_inbound(piece, now, &mut done)
            });
        }
        stop.note(i, &flows, reported, done.len());
        assert!(conn.in_flight() <= MAX_IN_FLIGHT);
        assert!(conn.buffered() <= 2 * (1 + 256 + MAX_QUERY_BYTES) + MAX_STATEMENT_BYTES);
    }
    Outcome {
        ops: done,
        stopped_at: stop.at,
        tls: conn.tls_requested(),
    }
}

/// Runs whole, byte by byte and at random splits; all must agree.
pub(super) fn run_all_splits(events: &[Ev]) -> Outcome {
    let whole = run(events, Split::Whole);
    assert_eq!(run(events, Split::Bytes), whole, "byte by byte");
    for seed in [3, 17, 99, 1234] {
        assert_eq!(
            run(events, Split::Random(seed)),
            whole,
            "random split {seed}"
        );
    }
    whole
}

pub(super) fn attr<'a>(op: &'a Operation, key: &str) -> Option<&'a str> {
    op.attributes
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| match v {
            AttrValue::Str(s) => Some(s.as_str()),
            _ => None,
        })
}

/// An operation in one line: `name [namespace] [query text] outcome`.
pub(super) fn summary(op: &Operation) -> String {
    let status = match &op.status {
        SpanStatus::Error(desc) => {
            format!("error {} ({desc})", attr(op, "error.type").unwrap_or("-"))
        }
        _ => "ok".to_owned(),
    };
    format!(
        "{} [{}] [{}] {status}",
        op.name,
        attr(op, "db.namespace").unwrap_or("-"),
        attr(op, "db.query.text").unwrap_or("-"),
    )
}

pub(super) fn summaries(out: &Outcome) -> Vec<String> {
    out.ops.iter().map(summary).collect()
}

// Packet builders.

pub(super) fn pkt(seq: u8, payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut v = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, seq];
    v.extend_from_slice(payload);
    v
}

/// Several packets in one buffer.
pub(super) fn pkts(packets: &[(u8, &[u8])]) -> Vec<u8> {
    packets.iter().flat_map(|(seq, p)| pkt(*seq, p)).collect()
}

pub(super) const SERVER_CAPS: u32 = 0xffff_f7ff & !caps::COMPRESS & !caps::SSL;

/// A protocol-10 greeting.
pub(super) fn greeting(version: &str, server_caps: u32, ext_caps: u32) -> Vec<u8> {
    let mut p = vec![10];
    p.extend_from_slice(version.as_bytes());
    p.push(0);
    p.extend_from_slice(&[7, 0, 0, 0]);
    p.extend_from_slice(b"abcdefgh\x00");
    p.extend_from_slice(&(server_caps as u16).to_le_bytes());
    p.extend_from_slice(&[0x2d, 0x02, 0x00]);
    p.extend_from_slice(&((server_caps >> 16) as u16).to_le_bytes());
    p.extend_from_slice(&[21, 0, 0, 0, 0, 0, 0]);
    p.extend_from_slice(&ext_caps.to_le_bytes());
    p.extend_from_slice(b"ijklmnopqrst\x00mysql_native_password\x00");
    pkt(0, &p)
}

/// A HandshakeResponse41 (seq 1) naming `db`.
pub(super) fn login(client_caps: u32, db: Option<&str>) -> Vec<u8> {
    let mut caps = client_caps | caps::PROTOCOL_41 | caps::SECURE_CONNECTION;
    if db.is_some() {
        caps |= caps::CONNECT_WITH_DB;
    }
    let mut p = caps.to_le_bytes().to_vec();
    p.extend_from_slice(&[0, 0, 0, 1, 0x21]);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(b"app\x00\x14");
    p.extend_from_slice(&[0x5a; 20]);
    if let Some(db) = db {
        p.extend_from_slice(db.as_bytes());
        p.push(0);
    }
    p.extend_from_slice(b"mysql_native_password\x00");
    pkt(1, &p)
}

pub(super) const OK: &[u8] = b"\x00\x00\x00\x02\x00\x00\x00";
pub(super) const EOF: &[u8] = b"\xfe\x00\x00\x02\x00";
pub(super) const OK_FE: &[u8] = b"\xfe\x00\x00\x02\x00\x00\x00";
pub(super) const COLUMN: &[u8] =
    b"\x03def\x04test\x01t\x01t\x02id\x02id\x0c\x3f\x00\x0b\x00\x00\x00\x03\x03\x50\x00\x00\x00";

pub(super) fn err(code: u16, state: &str, message: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    p.extend_from_slice(state.as_bytes());
    p.extend_from_slice(message.as_bytes());
    p
}

pub(super) fn command(cmd: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![cmd];
    p.extend_from_slice(body);
    pkt(0, &p)
}

pub(super) fn query(text: &str) -> Vec<u8> {
    command(0x03, text.as_bytes())
}

/// Greeting, login (with `client_caps`, database `test`) and its OK.
pub(super) fn connect(version: &str, client_caps: u32) -> Vec<Ev> {
    vec![
        In(greeting(version, SERVER_CAPS, 0)),
        Out(login(client_caps, Some("test"))),
        In(pkt(2, OK)),
    ]
}

/// A result set of `rows` one-column rows, classic framing.
pub(super) fn result_set(rows: usize) -> Vec<u8> {
    let mut v = pkts(&[(1, b"\x01"), (2, COLUMN), (3, EOF)]);
    for i in 0..rows {
        v.extend(pkt(4 + i as u8, b"\x011"));
    }
    v.extend(pkt(4 + rows as u8, EOF));
    v
}

pub(super) fn check(
    name: &str,
    events: Vec<Ev>,
    want: &[&str],
    stops_at: Option<usize>,
) -> Outcome {
    let out = run_all_splits(&events);
    assert_eq!(summaries(&out), want, "{name}");
    assert_eq!(out.stopped_at, stops_at, "{name}: stop");
    out
}

#[test]
fn queries_results_and_errors() {
    let mut ev = connect("8.0.36", 0);
    ev.extend([
        Out(query("SELECT id FROM t WHERE name = 'bob'")),
        In(result_set(2)),
        Out(query("INSERT INTO t VALUES (1, \"x\")")),
        In(pkt(1, OK)),
        Out(query("SELECT * FROM missing")),
        In(pkt(
            1,
            &err(1146, "42S02", "Table 'test.missing' doesn't exist"),
        )),
        Out(command(0x0e, b"")),
        In(pkt(1, OK)),
        Out(command(0x01, b"")),
        Close(CloseReason::PeerClosed),
    ]);
    let out = check(
        "queries",
        ev,
        &[
            "SELECT t [test] [SELECT id FROM t WHERE name = ?] ok",
            "INSERT t [test] [INSERT INTO t VALUES (?, ?)] ok",
            "SELECT missing [test] [SELECT * FROM missing] error 1146 (42S02: Table 'test.missing' doesn't exist)",
            "PING [test] [-] ok",
        ],
        None,
    );
    let sel = &out.ops[0];
    assert_eq!(
        (sel.start, sel.end),
        (at(3), at(4)),
        "from the command to the last byte"
    );
    assert_eq!(attr(sel, "db.system.name"), Some("mysql"));
    assert_eq!(attr(sel, "db.operation.name"), Some("SELECT"));
    assert_eq!(attr(sel, "db.collection.name"), Some("t"));
    assert_eq!(attr(&out.ops[2], "db.response.status_code"), Some("1146"));
}

#[test]
fn mariadb_modern_framing_and_schema_tracking() {
    // CLIENT_DEPRECATE_EOF, session tracking and MariaDB's metadata cache.
    let client = caps::DEPRECATE_EOF | caps::SESSION_TRACK;
    let use_ok = b"\x00\x00\x00\x02\x40\x00\x00\x00\x08\x01\x06\x05other";
    let ev = vec![
        In(greeting(
            "5.5.5-10.11.19-MariaDB-0+deb12u1",
            SERVER_CAPS & !1,
            0x1d,
        )),
        Out({
            let mut l = login(client, None);
            let ext = 4 + 4 + 1 + 19; // where MariaDB's extended capabilities go
            l[4 + ext..4 + ext + 4].copy_from_slice(&0x10u32.to_le_bytes());
            l
        }),
        In(pkt(2, OK)),
        Out(query("SELECT id FROM t")),
        // Count 1 with "metadata follows", a definition, rows, 0xfe OK.
        In(pkts(&[
            (1, b"\x01\x01"),
            (2, COLUMN),
            (3, b"\x011"),
            (4, OK_FE),
        ])),
        Out(query("USE other")),
        In(pkt(1, use_ok)),
        Out(query("SELECT id FROM t")),
        // Metadata left out: the rows follow the count at once.
        In(pkts(&[(1, b"\x01\x00"), (2, b"\x011"), (3, OK_FE)])),
    ];
    let out = check(
        "modern",
        ev,
        &[
            "SELECT t [-] [SELECT id FROM t] ok",
            "USE [-] [USE other] ok",
            "SELECT t [other] [SELECT id FROM t] ok",
        ],
        None,
    );
    assert_eq!(attr(&out.ops[0], "db.system.name"), Some("mariadb"));
}

#[test]
fn init_db_changes_the_namespace_only_when_it_succeeds() {
    let mut ev = connect("8.0.36", 0);
    ev.extend([
        Out(command(0x02, b"shop")),
        In(pkt(1, OK)),
        Out(query("SELECT 1")),
        In(result_set(1)),
        Out(command(0x02, b"nope")),
        In(pkt(1, &err(1049, "42000", "Unknown database 'nope'"))),
        Out(query("SELECT 1")),
        In(result_set(1)),
    ]);
    check(
        "init db",
        ev,
        &[
            "USE [shop] [-] ok",
            "SELECT [shop] [SELECT ?] ok",
            "USE [nope] [-] error 1049 (42000: Unknown database 'nope')",
            "SELECT [shop] [SELECT ?] ok",
        ],
        None,
    );
}

pub(super) fn prepare_ok(id: u32, columns: u16, params: u16) -> Vec<u8> {
    let mut p = vec![0];
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(&columns.to_le_bytes());
    p.extend_from_slice(&params.to_le_bytes());
    p.extend_from_slice(&[0, 0, 0]);
    p
}

pub(super) fn execute(id: u32) -> Vec<u8> {
    let mut body = id.to_le_bytes().to_vec();
    body.extend_from_slice(&[0, 1, 0, 0, 0, 0, 1, 3, 0, 7, 0, 0, 0]);
    command(0x17, &body)
}

#[test]
fn prepared_statements() {
    let sel = "SELECT id, name FROM users WHERE id >= ?";
    let mut ev = connect("8.0.36", 0);
    ev.extend([
        Out(command(0x16, sel.as_bytes())),
        // One parameter and two columns, each group with its EOF.
        In(pkts(&[
            (1, &prepare_ok(5, 2, 1)),
            (2, COLUMN),
            (3, EOF),
            (4, COLUMN),
            (5, COLUMN),
            (6, EOF),
        ])),
        Out(execute(5)),
        // Binary result set: rows start with 0x00.
        In(pkts(&[
            (1, b"\x02"),
            (2, COLUMN),
            (3, COLUMN),
            (4, EOF),
            (5, b"\x00\x00\x01\x00\x00\x00\x03bob"),
            (6, EOF),
        ])),
        Out(command(0x1a, &5u32.to_le_bytes())), // COM_STMT_RESET: no span
        In(pkt(1, OK)),
        Out(execute(5)),
        In(pkt(1, &err(1205, "HY000", "Lock wait timeout exceeded"))),
        Out(command(0x19, &5u32.to_le_bytes())), // COM_STMT_CLOSE: no response
        Out(execute(5)),
        In(pkt(
            1,
            &err(1243, "HY000", "Unknown prepared statement handler"),
        )),
    ]);
    let out = check(
        "prepared",
        ev,
        &[
            "PREPARE users [test] [SELECT id, name FROM users WHERE id >= ?] ok",
            "SELECT users [test] [SELECT id, name FROM users WHERE id >= ?] ok",
            "SELECT users [test] [SELECT id, name FROM users WHERE id >= ?] error 1205 (HY000: Lock wait timeout exceeded)",
            "mysql [test] [-] error 1243 (HY000: Unknown prepared statement handler)",
        ],
        None,
    );
    assert_eq!(attr(&out.ops[0], "db.operation.name"), Some("PREPARE"));
    assert_eq!(attr(&out.ops[1], "db.operation.name"), Some("SELECT"));
}

#[test]
fn pipelined_prepare_and_execute_of_the_last_statement() {
    // MariaDB connectors send PREPARE and EXECUTE(-1) without waiting.
    let client = caps::DEPRECATE_EOF;
    let mut ev = connect("5.5.5-10.6.1-MariaDB", client);
    let mut both = command(0x16, b"INSERT INTO t VALUES (?)");
    both.extend(execute(u32::MAX));
    ev.extend([
        Out(both),
        In(pkts(&[(1, &prepare_ok(9, 0, 1)), (2, COLUMN)])),
        In(pkt(1, b"\x00\x01\x00\x02\x00\x00\x00")),
        Out(execute(9)),
        In(pkt(1, OK)),
    ]);
    check(
        "pipelined",
        ev,
        &[
            "PREPARE t [test] [INSERT INTO t VALUES (?)] ok",
            "INSERT t [test] [INSERT INTO t VALUES (?)] ok",
            "INSERT t [test] [INSERT INTO t VALUES (?)] ok",
        ],
        None,
    );
}

#[test]
fn multiple_result_sets_make_one_span() {
    let more_eof = b"\xfe\x00\x00\x0a\x00";
    let more_ok = b"\x00\x01\x00\x0a\x00\x00\x00";
    let mut ev = connect("8.0.36", 0);
    ev.extend([
        Out(query("SELECT 1; UPDATE t SET a = 2; SELECT 3")),
        In(pkts(&[
            (1, b"\x01"),
            (2, COLUMN),
            (3, EOF),
            (4, b"\x011"),
            (5, more_eof),
        ])),
        In(pkt(6, more_ok)),
        In(pkts(&[
            (7, b"\x01"),
            (8, COLUMN),
            (9, EOF),
            (10, b"\x013"),
            (11, EOF),
        ])),
        Out(query("CALL p()")),
        In(pkts(&[
            (1, b"\x01"),
            (2, COLUMN),
            (3, EOF),
            (4, more_eof),
            (5, OK),
        ])),
    ]);
    check(
        "multi",
        ev,
        &[
            "SELECT [test] [SELECT ?; UPDATE t SET a = ?; SELECT ?] ok",
            "CALL [test] [CALL p()] ok",
        ],
        None,
    );
}

#[test]
fn local_infile_uploads_are_skipped() {
    let mut ev = connect("8.0.36", 0);
    ev.extend([
        Out(query("LOAD DATA LOCAL INFILE '/tmp/a.csv' INTO TABLE t")),
        In(pkt(1, b"\xfb/tmp/a.csv")),
        // Contents that look like commands, then the empty packet.
        Out(pkts(&[(2, b"\x03SELECT 1\n"), (3, b"\x0e\n"), (4, b"")])),
        In(pkt(5, b"\x00\x02\x00\x02\x00\x00\x00")),
        Out(query("SELECT 1")),
        In(result_set(1)),
    ]);
    check(
        "infile",
        ev,
        &[
            "LOAD [test] [LOAD DATA LOCAL INFILE ? INTO TABLE t] ok",
            "SELECT [test] [SELECT ?] ok",
        ],
        None,
    );
}

#[test]
fn change_user_reauthenticates_and_switches_database() {
    let mut ev = connect("8.0.36", 0);
    ev.extend([
        Out(command(0x16, b"SELECT 1")),
        In(pkts(&[(1, &prepare_ok(1, 1, 0)), (2, COLUMN), (3, EOF)])),
        Out(command(
            0x11,
            b"root\x00\x00other\x00\x21\x00mysql_native_password\x00",
        )),
        In(pkt(
            1,
            b"\xfemysql_native_password\x00abcdefghijklmnopqrst\x00",
        )),
        Out(pkt(2, &[0x5a; 20])),
        In(pkt(3, OK)),
        Out(query("SELECT 2")),
        In(result_set(1)),
        Out(execute(1)), // forgotten by the change of user
        In(pkt(
            1,
            &err(1243, "HY000", "Unknown prepared statement handler"),
        )),
    ]);
    check(
        "change user",
        ev,
        &[
            "PREPARE [test] [SELECT ?] ok",
            "SELECT [other] [SELECT ?] ok",
            "mysql [other] [-] error 1243 (HY000: Unknown prepared statement handler)",
        ],
        None,
    );
}

#[test]
fn housekeeping_commands_are_framed_without_spans() {
    let mut ev = connect("8.0.36", 0);
    ev.extend([
        Out(command(0x09, b"")), // COM_STATISTICS: a bare string answers
        In(pkt(1, b"Uptime: 10  Threads: 1  Questions: 5")),
        Out(command(0x1b, b"\x00\x00")), // COM_SET_OPTION: EOF
        In(pkt(1, EOF)),
        Out(command(0x04, b"t\x00")), // COM_FIELD_LIST: definitions, EOF
        In(pkts(&[(1, COLUMN), (2, COLUMN), (3, EOF)])),
        Out(command(0x0a, b"")), // COM_PROCESS_INFO: a result set
        In(result_set(3)),
        Out(command(0x1f, b"")), // COM_RESET_CONNECTION
        In(pkt(1, OK)),
        Out(command(0x18, b"\x01\x00\x00\x00\x00\x00data")), // no response
        Out(query("SELECT 1")),
        In(result_set(1)),
    ]);
    check("housekeeping", ev, &["SELECT [test] [SELECT ?] ok"], None);
}

#[test]
fn cursors_end_the_execute_and_fetch_brings_the_rows() {
    let mut ev = connect("8.0.36", 0);
    ev.extend([
        Out(command(0x16, b"SELECT id FROM t")),
        In(pkts(&[(1, &prepare_ok(2, 1, 0)), (2, COLUMN), (3, EOF)])),
        Out(execute(2)),
        // Definitions, then an EOF saying a cursor is open: no rows now.
        In(pkts(&[
            (1, b"\x01"),
            (2, COLUMN),
            (3, b"\xfe\x00\x00\x42\x00"),
        ])),
        Out(command(0x1c, b"\x02\x00\x00\x00\x0a\x00\x00\x00")),
        In(pkts(&[
            (1, b"\x00\x00\x01\x00\x00\x00"),
            (2, b"\xfe\x00\x00\xc2\x00"),
        ])),
        Out(query("SELECT 1")),
        In(result_set(1)),
    ]);
    check(
        "cursor",
        ev,
        &[
            "PREPARE t [test] [SELECT id FROM t] ok",
            "SELECT t [test] [SELECT id FROM t] ok",
            "SELECT [test] [SELECT ?] ok",
        ],
        None,
    );
}

#[test]
fn progress_reports_are_not_errors() {
    let mut ev = connect("5.5.5-10.11.1-MariaDB", 0);
    ev.extend([
        Out(query("ALTER TABLE t ADD c INT")),
        In(pkt(
            1,
            b"\xff\xff\xff\x01\x01\x02\x10\x27\x00\x00\x0bcopy to tmp",
        )),
        In(pkt(
            2,
            b"\xff\xff\xff\x01\x01\x02\x20\x4e\x00\x00\x0bcopy to tmp",
        )),
        In(pkt(3, OK)),
    ]);
    check(
        "progress",
        ev,
        &["ALTER t [test] [ALTER TABLE t ADD c INT] ok"],
        None,
    );
}

#[test]
fn mysql8_query_attributes_are_skipped() {
    let mut ev = connect("8.0.36", caps::QUERY_ATTRIBUTES);
    ev.extend([
        Out(command(0x03, b"\x00\x01SELECT 1")),
        In(result_set(1)),
        Out(command(
            0x03,
            b"\x01\x01\x00\x01\xfe\x00\x02ts\x03abcSELECT 2",
        )),
        In(result_set(1)),
    ]);
    check(
        "attributes",
        ev,
        &["SELECT [test] [SELECT ?] ok", "SELECT [test] [SELECT ?] ok"],
        None,
    );
}

#[test]
fn connections_can_move_between_threads() {
    fn send<T: Send>() {}
    send::<MysqlConnection>();
}
