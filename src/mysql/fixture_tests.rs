//! Replays traffic captured from real clients against MariaDB 10.11
//! (`tests/fixtures/mysql/`, recorded by `capture.sh` there): each recv()
//! chunk is one event, replayed as recorded, byte by byte and at random
//! splits, and once with each direction's consecutive chunks merged.

use super::tests::{run, run_all_splits, summaries};
use super::*;
use crate::testkit::{at, Ev, Split};

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
