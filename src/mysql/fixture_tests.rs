//! Replays traffic captured from real clients against MariaDB 10.11
//! (`tests/fixtures/mysql/`, recorded by `capture.sh` there): each recv()
//! chunk is one event, replayed as recorded, byte by byte and at random
//! splits, and once with each direction's consecutive chunks merged.

use super::tests::{run, run_all_splits, summaries};
use super::*;
use crate::testkit::{at, steps, Ev, Split};

/// Parses a capture: `>` lines are the client's outbound bytes, `<` lines
/// its inbound bytes, in hex; `#` lines are comments.
fn parse(capture: &str) -> Vec<Ev> {
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    };
    capture
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| match l.split_once(' ') {
            Some((">", h)) => Ev::Out(hex(h.trim())),
            Some(("<", h)) => Ev::In(hex(h.trim())),
            _ => panic!("bad fixture line {l:?}"),
        })
        .collect()
}

/// Consecutive chunks of one direction merged into one call.
fn merged(events: &[Ev]) -> Vec<Ev> {
    let mut out: Vec<Ev> = Vec::new();
    for ev in events {
        match (out.last_mut(), ev) {
            (Some(Ev::Out(a)), Ev::Out(b)) | (Some(Ev::In(a)), Ev::In(b)) => a.extend_from_slice(b),
            _ => out.push(ev.clone()),
        }
    }
    out
}

fn replay(capture: &str, want: &[&str]) -> Vec<Operation> {
    let events = parse(capture);
    let out = run_all_splits(&events);
    assert_eq!(summaries(&out), want);
    assert_eq!(out.stopped_at, None);
    assert!(!out.tls);
    let again = run(&merged(&events), Split::Whole);
    assert_eq!(summaries(&again), want, "merged chunks");
    // A close at the end changes nothing: every command was answered.
    let mut closed = events.clone();
    closed.push(Ev::Close(CloseReason::PeerClosed));
    assert_eq!(run(&closed, Split::Whole).ops, out.ops);
    out.ops
}

fn attr<'a>(op: &'a Operation, key: &str) -> Option<&'a str> {
    op.attributes
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| match v {
            crate::span::AttrValue::Str(s) => Some(s.as_str()),
            _ => None,
        })
}

#[test]
fn mariadb_cli_create_insert_select() {
    let ops = replay(
        include_str!("../../tests/fixtures/mysql/cli_queries.txt"),
        &[
            "CREATE lumigo_fx_cli [test] [CREATE TABLE lumigo_fx_cli (id INT PRIMARY KEY, name VARCHAR(?))] ok",
            "INSERT lumigo_fx_cli [test] [INSERT INTO lumigo_fx_cli VALUES (?,?),(?,?)] ok",
            "SELECT lumigo_fx_cli [test] [SELECT * FROM lumigo_fx_cli WHERE id = ?] ok",
            "DROP lumigo_fx_cli [test] [DROP TABLE lumigo_fx_cli] ok",
        ],
    );
    assert!(ops
        .iter()
        .all(|op| attr(op, "db.system.name") == Some("mariadb")));
    let select = &ops[2];
    assert_eq!(attr(select, "db.operation.name"), Some("SELECT"));
    assert_eq!(attr(select, "db.collection.name"), Some("lumigo_fx_cli"));
    // The query is chunk 7, its result set chunk 8.
    assert_eq!((select.start, select.end), (at(7), at(8)));
}

#[test]
fn mariadb_cli_missing_table() {
    let ops = replay(
        include_str!("../../tests/fixtures/mysql/cli_error.txt"),
        &["SELECT lumigo_no_such_table [test] [SELECT * FROM lumigo_no_such_table] error 1146 (42S02: Table 'test.lumigo_no_such_table' doesn't exist)"],
    );
    assert_eq!(attr(&ops[0], "db.response.status_code"), Some("1146"));
    assert_eq!(attr(&ops[0], "error.type"), Some("1146"));
}

#[test]
fn mariadb_cli_use() {
    // `USE information_schema` goes as COM_INIT_DB; the CLI sent the last
    // `USE` as a query.
    replay(
        include_str!("../../tests/fixtures/mysql/cli_init_db.txt"),
        &[
            "SELECT [test] [SELECT DATABASE()] ok",
            "USE [information_schema] [-] ok",
            "SELECT TABLES [information_schema] [SELECT COUNT(*) FROM TABLES WHERE TABLE_SCHEMA = ?] ok",
            "USE [information_schema] [USE lumigo_no_such_db] error 1049 (42000: Unknown database 'lumigo_no_such_db')",
        ],
    );
}

#[test]
fn pymysql_queries_multi_statements_select_db_and_ping() {
    replay(
        include_str!("../../tests/fixtures/mysql/pymysql_queries.txt"),
        &[
            "SET [test] [SET NAMES utf8mb4] ok",
            "SET [test] [SET AUTOCOMMIT = ?] ok",
            "CREATE lumigo_fx_py [test] [CREATE TABLE IF NOT EXISTS lumigo_fx_py (id INT PRIMARY KEY, name VARCHAR(?))] ok",
            "INSERT lumigo_fx_py [test] [INSERT INTO lumigo_fx_py VALUES (?, ?), (?, ?)] ok",
            "COMMIT [test] [COMMIT] ok",
            "SELECT lumigo_fx_py [test] [SELECT id, name FROM lumigo_fx_py WHERE id > ?] ok",
            "SELECT lumigo_no_such_table [test] [SELECT * FROM lumigo_no_such_table] error 1146 (42S02: Table 'test.lumigo_no_such_table' doesn't exist)",
            "SELECT [test] [SELECT ?; SELECT ?, ?; UPDATE lumigo_fx_py SET name = ? WHERE id = ?] ok",
            "USE [information_schema] [-] ok",
            "SELECT TABLES [information_schema] [SELECT COUNT(*) FROM TABLES WHERE TABLE_SCHEMA = ?] ok",
            "USE [test] [-] ok",
            "DROP lumigo_fx_py [test] [DROP TABLE lumigo_fx_py] ok",
            "PING [test] [-] ok",
        ],
    );
}

#[test]
fn pymysql_load_data_local_infile() {
    replay(
        include_str!("../../tests/fixtures/mysql/pymysql_infile.txt"),
        &[
            "SET [test] [SET NAMES utf8mb4] ok",
            "SET [test] [SET AUTOCOMMIT = ?] ok",
            "CREATE lumigo_fx_in [test] [CREATE TABLE IF NOT EXISTS lumigo_fx_in (id INT, name VARCHAR(?))] ok",
            "LOAD [test] [LOAD DATA LOCAL INFILE ? INTO TABLE lumigo_fx_in FIELDS TERMINATED BY ?] ok",
            "DROP lumigo_fx_in [test] [DROP TABLE lumigo_fx_in] ok",
            "COMMIT [test] [COMMIT] ok",
        ],
    );
}

#[test]
fn mysql_connector_python_prepared_statements() {
    // cursor(prepared=True): PREPARE, then per execute COM_STMT_RESET (no
    // span) and COM_STMT_EXECUTE, then COM_STMT_CLOSE (no span).
    let ops = replay(
        include_str!("../../tests/fixtures/mysql/connector_prepared.txt"),
        &[
            "SET [test] [SET NAMES ? COLLATE ?] ok",
            "SET [test] [SET @@session.autocommit = OFF] ok",
            "PING [test] [-] ok",
            "PREPARE lumigo_fx_ps [test] [CREATE TABLE IF NOT EXISTS lumigo_fx_ps (id INT PRIMARY KEY, name VARCHAR(?))] ok",
            "CREATE lumigo_fx_ps [test] [CREATE TABLE IF NOT EXISTS lumigo_fx_ps (id INT PRIMARY KEY, name VARCHAR(?))] ok",
            "PREPARE lumigo_fx_ps [test] [INSERT INTO lumigo_fx_ps VALUES (?, ?)] ok",
            "INSERT lumigo_fx_ps [test] [INSERT INTO lumigo_fx_ps VALUES (?, ?)] ok",
            "INSERT lumigo_fx_ps [test] [INSERT INTO lumigo_fx_ps VALUES (?, ?)] ok",
            "COMMIT [test] [COMMIT] ok",
            "PREPARE lumigo_fx_ps [test] [SELECT id, name FROM lumigo_fx_ps WHERE id >= ?] ok",
            "SELECT lumigo_fx_ps [test] [SELECT id, name FROM lumigo_fx_ps WHERE id >= ?] ok",
            "PREPARE lumigo_fx_ps [test] [INSERT INTO lumigo_fx_ps VALUES (?, ?)] ok",
            "INSERT lumigo_fx_ps [test] [INSERT INTO lumigo_fx_ps VALUES (?, ?)] error 1062 (23000: Duplicate entry '?' for key 'PRIMARY')",
            "PREPARE lumigo_fx_ps [test] [DROP TABLE lumigo_fx_ps] ok",
            "DROP lumigo_fx_ps [test] [DROP TABLE lumigo_fx_ps] ok",
        ],
    );
    assert_eq!(attr(&ops[3], "db.operation.name"), Some("PREPARE"));
    assert_eq!(attr(&ops[4], "db.operation.name"), Some("CREATE"));
}

#[test]
fn node_mariadb_deprecate_eof_pipelining_and_bulk() {
    // CLIENT_DEPRECATE_EOF and metadata caching; `execute` pipelines
    // PREPARE with EXECUTE(-1); `batch` is COM_STMT_BULK_EXECUTE. When the
    // prepare fails, the pipelined execute fails too (1243) and carries the
    // text it was meant for.
    replay(
        include_str!("../../tests/fixtures/mysql/node_mariadb_prepared.txt"),
        &[
            "CREATE lumigo_fx_njs [test] [CREATE TABLE IF NOT EXISTS lumigo_fx_njs (id INT PRIMARY KEY, name VARCHAR(?))] ok",
            "PREPARE lumigo_fx_njs [test] [INSERT INTO lumigo_fx_njs VALUES (?, ?)] ok",
            "INSERT lumigo_fx_njs [test] [INSERT INTO lumigo_fx_njs VALUES (?, ?)] ok",
            "INSERT lumigo_fx_njs [test] [INSERT INTO lumigo_fx_njs VALUES (?, ?)] ok",
            "PREPARE lumigo_fx_njs [test] [SELECT id, name FROM lumigo_fx_njs WHERE id >= ?] ok",
            "SELECT lumigo_fx_njs [test] [SELECT id, name FROM lumigo_fx_njs WHERE id >= ?] ok",
            "SELECT lumigo_fx_njs [test] [SELECT id, name FROM lumigo_fx_njs WHERE id >= ?] ok",
            "PREPARE lumigo_no_such_table [test] [SELECT * FROM lumigo_no_such_table WHERE id = ?] error 1146 (42S02: Table 'test.lumigo_no_such_table' doesn't exist)",
            "SELECT lumigo_no_such_table [test] [SELECT * FROM lumigo_no_such_table WHERE id = ?] error 1243 (HY000: Unknown prepared statement handler (4294967295) given to mysqld_stmt_execute)",
            "SELECT [test] [SELECT id FROM lumigo_fx_njs; SELECT ?] error 1064 (42000: You have an error in your SQL syntax; check the manual that corresponds to your MariaDB server version for the right syntax to use near '?' at line 1)",
            "DROP lumigo_fx_njs [test] [DROP TABLE lumigo_fx_njs] ok",
        ],
    );
}

#[test]
fn node_mysql2_change_user() {
    // COM_CHANGE_USER to information_schema, with an auth switch round.
    replay(
        include_str!("../../tests/fixtures/mysql/node_mysql2_change_user.txt"),
        &[
            "CREATE lumigo_fx_m2 [test] [CREATE TABLE IF NOT EXISTS lumigo_fx_m2 (id INT PRIMARY KEY, name VARCHAR(?))] ok",
            "PREPARE lumigo_fx_m2 [test] [INSERT INTO lumigo_fx_m2 VALUES (?, ?)] ok",
            "INSERT lumigo_fx_m2 [test] [INSERT INTO lumigo_fx_m2 VALUES (?, ?)] ok",
            "PREPARE lumigo_fx_m2 [test] [SELECT id, name FROM lumigo_fx_m2 WHERE id >= ?] ok",
            "SELECT lumigo_fx_m2 [test] [SELECT id, name FROM lumigo_fx_m2 WHERE id >= ?] ok",
            "SELECT TABLES [information_schema] [SELECT COUNT(*) FROM TABLES] ok",
            "DROP test.lumigo_fx_m2 [information_schema] [DROP TABLE test.lumigo_fx_m2] ok",
        ],
    );
}

#[test]
fn every_capture_prefix_closes_cleanly() {
    // Cut each capture after every chunk and close: the commands reported
    // are those answered, then those in flight (at most a pipelined
    // prepare and its execute) with `connection_closed`.
    for capture in [
        include_str!("../../tests/fixtures/mysql/connector_prepared.txt"),
        include_str!("../../tests/fixtures/mysql/node_mariadb_prepared.txt"),
        include_str!("../../tests/fixtures/mysql/pymysql_infile.txt"),
    ] {
        let events = parse(capture);
        let full = run(&events, Split::Whole).ops;
        for cut in 0..events.len() {
            let mut ev = events[..cut].to_vec();
            ev.push(Ev::Close(CloseReason::Closed));
            let ops = run(&ev, Split::Whole).ops;
            let is_closed =
                |op: &&Operation| attr(op, "error.type") == Some(errors::CONNECTION_CLOSED);
            let closed = ops.iter().filter(is_closed).count();
            assert!(closed <= 2, "cut {cut}: {closed} closed");
            assert_eq!(
                ops[..ops.len() - closed],
                full[..ops.len() - closed],
                "cut {cut}"
            );
        }
    }
}

/// The data path (see `capture.rs`): every capture, whole, cut short (a
/// close with commands in flight) and cut into calls of many sizes, each
/// call at a time of its own, gives the same spans at the same times
/// through a connection parsed here and one compacted here and parsed on
/// the capture thread.
#[test]
fn every_capture_gives_the_same_spans_captured() {
    use crate::capture::differential::compare_calls;
    use crate::capture::Capture;
    let captures = [
        (
            "cli_queries",
            include_str!("../../tests/fixtures/mysql/cli_queries.txt"),
        ),
        (
            "cli_error",
            include_str!("../../tests/fixtures/mysql/cli_error.txt"),
        ),
        (
            "cli_init_db",
            include_str!("../../tests/fixtures/mysql/cli_init_db.txt"),
        ),
        (
            "pymysql_queries",
            include_str!("../../tests/fixtures/mysql/pymysql_queries.txt"),
        ),
        (
            "pymysql_infile",
            include_str!("../../tests/fixtures/mysql/pymysql_infile.txt"),
        ),
        (
            "connector_prepared",
            include_str!("../../tests/fixtures/mysql/connector_prepared.txt"),
        ),
        (
            "node_mariadb_prepared",
            include_str!("../../tests/fixtures/mysql/node_mariadb_prepared.txt"),
        ),
        (
            "node_mysql2_change_user",
            include_str!("../../tests/fixtures/mysql/node_mysql2_change_user.txt"),
        ),
    ];
    let mut conversations: Vec<(String, Vec<Ev>)> = captures
        .iter()
        .map(|(name, c)| (name.to_string(), merged(&parse(c))))
        .collect();
    conversations.push(("long packets".into(), long_packets()));
    for (name, events) in &conversations {
        let steps = steps(events);
        let cut = &steps[..steps.len() - 1];
        for steps in [&steps[..], cut] {
            for step in [1, 2, 3, 4, 5, 7, 64, 1 << 20] {
                let cap: &'static crate::capture::Capture = Box::leak(Box::new(Capture::new(0)));
                match compare_calls(false, steps, 0, step, cap, true) {
                    Ok(n) => assert!(n > 0, "{name}: no spans at step {step}"),
                    Err(e) => panic!("{name}, step {step}: {}", e.message),
                }
                assert_eq!(cap.dropped(), 0);
                assert_eq!(cap.open_connections(), 0, "{name}: its CLOSE was decoded");
            }
        }
    }
}

/// A conversation whose packets are longer than a compacted stream
/// carries: a long query, rows of 3000 bytes (and one starting `0x00`),
/// an ERR with a long message, an OK with a long info string.
fn long_packets() -> Vec<Ev> {
    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut p = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, seq];
        p.extend_from_slice(payload);
        p
    }
    let events = parse(include_str!("../../tests/fixtures/mysql/cli_queries.txt"));
    // The greeting, login and its OK of a real capture (before the first
    // command, sequence id 0 from the client).
    let login_end = events
        .iter()
        .position(|e| matches!(e, Ev::Out(b) if b.get(3) == Some(&0)))
        .expect("a command");
    let mut ev = merged(&events[..login_end]);
    let mut query = b"\x03SELECT '".to_vec();
    query.extend(std::iter::repeat_n(b'x', 20_000));
    query.extend_from_slice(b"' AS a, 'password' AS b");
    ev.push(Ev::Out(packet(0, &query)));
    let mut reply = packet(1, b"\x02");
    for (seq, name) in [(2u8, &b"a"[..]), (3, b"b")] {
        let mut def = b"\x03def\x00\x00\x00".to_vec();
        def.push(name.len() as u8);
        def.extend_from_slice(name);
        def.extend_from_slice(b"\x00\x0c\x21\x00\x00\x10\x00\x00\xfd\x00\x00\x27\x00\x00");
        reply.extend(packet(seq, &def));
    }
    reply.extend(packet(4, b"\xfe\x00\x00\x02\x00"));
    let mut row = vec![0xfc, 0xb8, 0x0b];
    row.extend(std::iter::repeat_n(b'y', 3000));
    row.extend_from_slice(b"\x01z");
    reply.extend(packet(5, &row));
    row[0] = 0x00;
    reply.extend(packet(6, &row));
    reply.extend(packet(7, b"\xfe\x00\x00\x02\x00"));
    ev.push(Ev::In(reply));
    ev.push(Ev::Out(packet(0, b"\x03SELECT * FROM nowhere")));
    let mut err = b"\xff\x7a\x04#42S02".to_vec();
    err.extend(std::iter::repeat_n(b'm', 3000));
    ev.push(Ev::In(packet(1, &err)));
    ev.push(Ev::Out(packet(0, b"\x03UPDATE t SET a = 1")));
    let mut ok = b"\x00\x05\x00\x02\x00\x00\x00".to_vec();
    ok.extend(std::iter::repeat_n(b'i', 3000));
    ev.push(Ev::In(packet(1, &ok)));
    ev
}

/// On the data path, a command's span is a child of the context the
/// thread had when it wrote the command (carried with the record), not of
/// whatever is active when the response is read, nor of anything on the
/// capture thread.
#[test]
fn captured_commands_are_children_of_the_context_they_were_written_in() {
    use crate::capture::differential::parents_when_captured;
    let events = merged(&parse(include_str!(
        "../../tests/fixtures/mysql/cli_queries.txt"
    )));
    // Each write whole, and cut into calls of 1 and 3 bytes (a command's
    // context goes with the call that starts its header).
    for piece in [usize::MAX, 3, 1] {
        let parents = parents_when_captured(&steps(&events), piece);
        let want: Vec<(String, Option<[u8; 8]>, [u8; 16])> = [
            "CREATE lumigo_fx_cli",
            "INSERT lumigo_fx_cli",
            "SELECT lumigo_fx_cli",
            "DROP lumigo_fx_cli",
        ]
        .iter()
        .zip(2u8..)
        .map(|(name, n)| (name.to_string(), Some([n; 8]), [n; 16]))
        .collect();
        assert_eq!(parents, want, "{piece} bytes per call");
    }
}

/// A capture as the TLS hooks would have seen it had the client asked for
/// TLS: the plaintext starts at the login (sequence id 2, the TLS bit set;
/// the greeting and the TLS request went before, on the socket), and the
/// server's answer to it is sequence id 3.
fn as_tls_plaintext(capture: &str) -> Vec<Ev> {
    let mut events = merged(&parse(capture));
    assert!(matches!(events.first(), Some(Ev::In(_))), "the greeting");
    events.remove(0);
    if let Some(Ev::Out(login)) = events.first_mut() {
        assert_eq!(login[3], 1);
        login[3] = 2;
        login[5] |= 0x08; // CLIENT_SSL, bit 11 of the capabilities
    }
    if let Some(Ev::In(answer)) = events.get_mut(1) {
        answer[3] += 1;
    }
    events
}

/// MySQL through TLS (`mariadb --ssl`, PyMySQL with `ssl=`): the plaintext
/// is recognised by its login and gives the same spans as the connection
/// in the clear, parsed here and on the data path, whole and cut into
/// calls of many sizes.
#[test]
fn a_connection_through_tls_starts_at_the_login() {
    use crate::capture::differential::compare_calls;
    use crate::capture::Capture;
    use crate::protocol::Detect;
    let capture = include_str!("../../tests/fixtures/mysql/cli_queries.txt");
    let events = as_tls_plaintext(capture);
    let Some(Ev::Out(login)) = events.first() else {
        panic!("a login first");
    };
    for n in 0..36 {
        assert_eq!(detect_tls_login(&login[..n]), Detect::NeedMore, "{n} bytes");
    }
    assert_eq!(detect_tls_login(login), Detect::Yes);
    // In the clear, the same login (sequence id 1) is not recognised.
    let mut clear = login.clone();
    clear[3] = 1;
    assert_eq!(detect_tls_login(&clear), Detect::No);
    let plain = run(&merged(&parse(capture)), Split::Whole);
    for split in [Split::Whole, Split::Bytes, Split::Random(7)] {
        let tls = super::tests::run_from(MysqlConnection::after_tls(), &events, split);
        assert_eq!(summaries(&tls), summaries(&plain), "{split:?}");
        assert!(tls
            .ops
            .iter()
            .all(|op| attr(op, "db.system.name") == Some("mariadb")));
    }
    let steps = steps(&events);
    for step in [1, 3, 7, 64, 1 << 20] {
        let cap: &'static Capture = Box::leak(Box::new(Capture::new(0)));
        match compare_calls(false, &steps, 0, step, cap, true) {
            Ok(n) => assert_eq!(n, 4, "step {step}: the four statements"),
            Err(e) => panic!("step {step}: {}", e.message),
        }
    }
}
