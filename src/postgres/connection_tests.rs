//! Tests of [`PgConnection`]: scenarios, each replayed whole, byte by byte
//! and at random splits (the results must not differ).

use std::time::SystemTime;

use super::harness::*;
use super::*;
use crate::testkit::Ev::*;
use crate::testkit::Split;

#[test]
fn simple_query_with_rows() {
    let events = with(
        connect(),
        vec![
            Out(query("SELECT * FROM users WHERE name = 'bob'")),
            In(cat(&[
                row_desc(),
                data_row(b"1"),
                data_row(b"2"),
                complete("SELECT 2"),
                ready(),
            ])),
        ],
    );
    let want = format!(
        "SELECT users [-] t=2-3 {NS} text=SELECT * FROM users WHERE name = ? op=SELECT table=users returned_rows=2"
    );
    check("simple", &events, &[&want], None);
}

#[test]
fn simple_query_error_ends_at_ready_for_query() {
    let events = with(
        connect(),
        vec![
            Out(query("SELECT * FROM missing")),
            In(error("42P01", "relation \"missing\" does not exist")),
            In(ready()),
        ],
    );
    let want = format!(
        "SELECT missing [error(relation \"missing\" does not exist)] t=2-4 {NS} text=SELECT * FROM missing op=SELECT table=missing status_code=42P01 type=42P01"
    );
    check("error", &events, &[&want], None);
}

#[test]
fn several_statements_in_one_query_are_a_batch() {
    let events = with(
        connect(),
        vec![
            Out(query("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)")),
            In(cat(&[
                complete("INSERT 0 1"),
                complete("INSERT 0 1"),
                ready(),
            ])),
            Out(query("SELECT 1; SELECT 2, 3")),
            In(cat(&[
                row_desc(),
                data_row(b"1"),
                complete("SELECT 1"),
                row_desc(),
                data_row(b"2"),
                complete("SELECT 1"),
                ready(),
            ])),
            Out(query("CREATE TABLE a (id int); SELECT 1")),
            In(cat(&[
                complete("CREATE TABLE"),
                row_desc(),
                data_row(b"1"),
                complete("SELECT 1"),
                ready(),
            ])),
            Out(query("")),
            In(cat(&[msg(b'I', b""), ready()])),
        ],
    );
    let a = format!("BATCH INSERT [-] t=2-3 {NS} text=INSERT INTO t VALUES (?); INSERT INTO t VALUES (?) op=BATCH INSERT batch.size=2 affected_rows=2");
    let b = format!("BATCH SELECT [-] t=4-5 {NS} text=SELECT ?; SELECT ?, ? op=BATCH SELECT batch.size=2 returned_rows=2");
    let c = format!("BATCH [-] t=6-7 {NS} text=CREATE TABLE a (id int); SELECT ? op=BATCH batch.size=2 returned_rows=1");
    let d = format!("postgresql [-] t=8-9 {NS}");
    check("batch", &events, &[&a, &b, &c, &d], None);
}

#[test]
fn extended_unnamed_statement() {
    let events = with(
        connect(),
        vec![
            Out(cat(&[
                parse("", "SELECT name FROM users WHERE id = $1"),
                bind("", ""),
            ])),
            Out(cat(&[describe(""), execute("", 0), sync()])),
            In(cat(&[
                parse_complete(),
                bind_complete(),
                row_desc(),
                data_row(b"bob"),
            ])),
            In(cat(&[complete("SELECT 1"), ready()])),
        ],
    );
    let want = format!(
        "SELECT users [-] t=2-5 {NS} text=SELECT name FROM users WHERE id = $1 op=SELECT table=users returned_rows=1"
    );
    check("extended", &events, &[&want], None);
}

#[test]
fn named_statement_executed_twice() {
    let group = || cat(&[bind("", "s1"), describe(""), execute("", 0), sync()]);
    let reply = || {
        In(cat(&[
            bind_complete(),
            no_data(),
            complete("UPDATE 3"),
            ready(),
        ]))
    };
    let events = with(
        connect(),
        vec![
            Out(cat(&[
                parse("s1", "UPDATE t SET a = 'x' WHERE b = $1"),
                sync(),
            ])),
            In(cat(&[parse_complete(), ready()])),
            Out(group()),
            reply(),
            Out(group()),
            reply(),
            Out(cat(&[close_statement("s1"), sync()])),
            In(cat(&[msg(b'3', b""), ready()])),
            // Closed: a Bind to it now finds no SQL; the tag names the span.
            Out(group()),
            reply(),
        ],
    );
    let a = format!("UPDATE t [-] t=4-5 {NS} text=UPDATE t SET a = ? WHERE b = $1 op=UPDATE table=t affected_rows=3");
    let b = a.replace("t=4-5", "t=6-7");
    let c = format!("UPDATE [-] t=10-11 {NS} op=UPDATE affected_rows=3");
    check("named", &events, &[&a, &b, &c], None);
}

#[test]
fn pipeline_error_skips_the_rest_of_the_group() {
    let events = with(
        connect(),
        vec![
            Out(cat(&[
                pbde("SELECT 1"),
                pbde("SELECT * FROM missing"),
                pbde("SELECT 3"),
                sync(),
            ])),
            In(cat(&[
                parse_complete(),
                bind_complete(),
                row_desc(),
                data_row(b"1"),
                complete("SELECT 1"),
            ])),
            In(cat(&[error("42P01", "no such table"), ready()])),
            Out(cat(&[pbde("SELECT 4"), sync()])),
            In(cat(&[
                parse_complete(),
                bind_complete(),
                row_desc(),
                data_row(b"4"),
                complete("SELECT 1"),
                ready(),
            ])),
        ],
    );
    let a = format!("SELECT [-] t=2-3 {NS} text=SELECT ? op=SELECT returned_rows=1");
    let b = format!("SELECT missing [error(no such table)] t=2-4 {NS} text=SELECT * FROM missing op=SELECT table=missing status_code=42P01 type=42P01");
    let c = format!("SELECT [-] t=5-6 {NS} text=SELECT ? op=SELECT returned_rows=1");
    check("pipeline", &events, &[&a, &b, &c], None);
}

#[test]
fn error_before_sync_is_sent_skips_until_sync() {
    let events = with(
        connect(),
        vec![
            Out(cat(&[pbde("SELECT 1/0"), flush()])),
            In(cat(&[
                parse_complete(),
                bind_complete(),
                row_desc(),
                error("22012", "division by zero"),
            ])),
            // Sent after the error, before Sync: the server discards them.
            Out(cat(&[pbde("SELECT 2"), sync()])),
            In(ready()),
            Out(query("SELECT 3")),
            In(cat(&[
                row_desc(),
                data_row(b"3"),
                complete("SELECT 1"),
                ready(),
            ])),
        ],
    );
    let a = format!("SELECT [error(division by zero)] t=2-3 {NS} text=SELECT ?/? op=SELECT status_code=22012 type=22012");
    let b = format!("SELECT [-] t=6-7 {NS} text=SELECT ? op=SELECT returned_rows=1");
    check("skip until sync", &events, &[&a, &b], None);
}

#[test]
fn failed_prepare_is_an_error_span() {
    let events = with(
        connect(),
        vec![
            Out(cat(&[parse("s", "SELEC 1"), sync()])),
            In(cat(&[error("42601", "syntax error"), ready()])),
        ],
    );
    let want = format!(
        "SELEC [error(syntax error)] t=2-3 {NS} text=SELEC ? op=SELEC status_code=42601 type=42601"
    );
    check("failed prepare", &events, &[&want], None);
}

#[test]
fn portal_suspended_and_resumed() {
    let events = with(
        connect(),
        vec![
            Out(cat(&[
                parse("", "SELECT * FROM big"),
                bind("c", ""),
                execute("c", 1),
                flush(),
            ])),
            In(cat(&[
                parse_complete(),
                bind_complete(),
                data_row(b"1"),
                msg(b's', b""),
            ])),
            Out(cat(&[execute("c", 0), sync()])),
            In(cat(&[
                data_row(b"2"),
                data_row(b"3"),
                complete("SELECT 2"),
                ready(),
            ])),
        ],
    );
    let a = format!(
        "SELECT big [-] t=2-3 {NS} text=SELECT * FROM big op=SELECT table=big returned_rows=1"
    );
    let b = format!(
        "SELECT big [-] t=4-5 {NS} text=SELECT * FROM big op=SELECT table=big returned_rows=2"
    );
    check("portal", &events, &[&a, &b], None);
}

#[test]
fn copy_notices_notifications_and_function_calls_keep_framing() {
    let events = with(
        connect(),
        vec![
            Out(query("COPY t FROM STDIN")),
            In(msg(b'G', b"\x00\x00\x02\x00\x00\x00\x00")),
            Out(cat(&[
                msg(b'd', b"1\ta\n"),
                msg(b'd', b"2\tb\n"),
                msg(b'c', b""),
            ])),
            In(cat(&[complete("COPY 2"), ready()])),
            Out(query("NOTIFY c, 'x'")),
            In(cat(&[
                notice(),
                complete("NOTIFY"),
                msg(b'A', b"\x00\x00\x00\x01c\x00x\x00"),
                ready(),
            ])),
            Out(msg(b'F', b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00")),
            In(cat(&[msg(b'V', b"\xff\xff\xff\xff"), ready()])),
            In(msg(b'S', b"TimeZone\x00UTC\x00")),
            Out(terminate()),
        ],
    );
    let a = format!("COPY t [-] t=2-5 {NS} text=COPY t FROM STDIN op=COPY table=t affected_rows=2");
    let b = format!("NOTIFY [-] t=6-7 {NS} text=NOTIFY c, ? op=NOTIFY");
    check("copy", &events, &[&a, &b], Some(11));
}

#[test]
fn large_rows_are_skipped_not_buffered() {
    let big = vec![b'x'; 5 * MAX_MESSAGE_BYTES];
    let long_sql = format!("SELECT '{}'", "y".repeat(2 * MAX_MESSAGE_BYTES));
    let events = with(
        connect(),
        vec![
            Out(query("SELECT big FROM blobs")),
            In(cat(&[
                row_desc(),
                data_row(&big),
                data_row(&big),
                complete("SELECT 2"),
                ready(),
            ])),
            Out(query(&long_sql)),
            In(cat(&[
                row_desc(),
                data_row(b"y"),
                complete("SELECT 1"),
                ready(),
            ])),
        ],
    );
    let a = format!("SELECT blobs [-] t=2-3 {NS} text=SELECT big FROM blobs op=SELECT table=blobs returned_rows=2");
    // The cut text ends inside the literal: one `?`, nothing leaks.
    let b = format!("SELECT [-] t=4-5 {NS} text=SELECT ? op=SELECT returned_rows=1");
    check("large", &events, &[&a, &b], None);
}

#[test]
fn ssl_refused_continues_in_plain_text() {
    let events = vec![
        Out(SSL_REQUEST.to_vec()),
        In(b"N".to_vec()),
        Out(startup(&[("user", "bob")])),
        In(auth_ok()),
        Out(query("SELECT 1")),
        In(cat(&[
            row_desc(),
            data_row(b"1"),
            complete("SELECT 1"),
            ready(),
        ])),
    ];
    // No database parameter: the server uses the user name.
    let want = "SELECT [-] t=4-5 namespace=bob user=bob text=SELECT ? op=SELECT returned_rows=1";
    check("ssl refused", &events, &[want], None);
}

#[test]
fn ssl_accepted_then_plaintext_from_tls_hooks() {
    let events = vec![
        Out(SSL_REQUEST.to_vec()),
        // 'S', then (defensively) TLS records the glue should not feed.
        In(b"S\x16\x03\x03\x00\x02ab".to_vec()),
        Out(b"\x16\x03\x01\x00\x03abc".to_vec()),
        In(b"\x16\x03\x03\x00\x01z\x17\x03\x03\x00\x01y".to_vec()),
        // The plaintext, as the TLS hooks see it.
        Out(startup(&[("user", "bob"), ("database", "shop")])),
        In(auth_ok()),
        Out(query("SELECT 1")),
        In(cat(&[
            row_desc(),
            data_row(b"1"),
            complete("SELECT 1"),
            ready(),
        ])),
    ];
    let want = format!("SELECT [-] t=6-7 {NS} text=SELECT ? op=SELECT returned_rows=1");
    check("ssl accepted", &events, &[&want], None);
    assert!(run(&events[..2], Split::Whole).tls);
    assert!(!run(&events[..1], Split::Whole).tls);
}

#[test]
fn gss_encryption_cancel_and_garbage_stop() {
    check(
        "gss",
        &[Out(GSSENC_REQUEST.to_vec()), In(b"G".to_vec())],
        &[],
        Some(1),
    );
    check(
        "gss refused",
        &[
            Out(GSSENC_REQUEST.to_vec()),
            In(b"N".to_vec()),
            Out(SSL_REQUEST.to_vec()),
            In(b"N".to_vec()),
        ],
        &[],
        None,
    );
    let cancel = b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x00\x01\x00\x00\x00\x02".to_vec();
    check("cancel", &[Out(cancel)], &[], Some(0));
    check(
        "not an answer",
        &[Out(SSL_REQUEST.to_vec()), In(b"E".to_vec())],
        &[],
        Some(1),
    );
    let events = with(
        connect(),
        vec![Out(query("SELECT 1")), Out(b"\x00garbage".to_vec())],
    );
    let want = format!(
        "SELECT [error(protocol_error)] t=2-3 {NS} text=SELECT ? op=SELECT type=protocol_error"
    );
    check("garbage", &events, &[&want], Some(3));
    let events = with(connect(), vec![In(parse_complete())]);
    check("unexpected reply", &events, &[], Some(2));
}

#[test]
fn close_reports_what_is_in_flight() {
    for (reason, why) in [
        (CloseReason::PeerClosed, "connection_closed"),
        (CloseReason::Closed, "connection_closed"),
        (CloseReason::ProcessExit, "process_exit"),
    ] {
        let events = with(
            connect(),
            vec![
                Out(cat(&[query("SELECT 1"), pbde("DELETE FROM t"), sync()])),
                In(cat(&[row_desc(), data_row(b"1")])),
                Close(reason),
            ],
        );
        let a = format!(
            "SELECT [error({why})] t=2-4 {NS} text=SELECT ? op=SELECT returned_rows=1 type={why}"
        );
        let b = format!(
            "DELETE t [error({why})] t=2-4 {NS} text=DELETE FROM t op=DELETE table=t type={why}"
        );
        check("close", &events, &[&a, &b], None);
    }
}

#[test]
fn terminate_ends_cleanly() {
    let events = with(
        connect(),
        vec![Out(terminate()), Close(CloseReason::Closed)],
    );
    check("terminate", &events, &[], Some(2));
}

#[test]
fn too_many_in_flight_stops() {
    let mut out = Vec::new();
    for _ in 0..=MAX_PENDING {
        out.extend(query("SELECT 1"));
    }
    let events = with(connect(), vec![Out(out)]);
    let run = run(&events, Split::Whole);
    assert_eq!(run.ops.len(), MAX_PENDING + 1);
    assert!(
        run.ops[0].ends_with("type=pipeline_overflow"),
        "{}",
        run.ops[0]
    );
    assert_eq!(run.stopped_at, Some(2));
}

#[test]
fn in_flight_counts_queries_and_executes() {
    let mut conn = PgConnection::new();
    let (mut done, t) = (Vec::new(), SystemTime::UNIX_EPOCH);
    let _ = conn.on_outbound(&startup(&[("user", "u")]), t, &mut done);
    assert_eq!(conn.in_flight(), 0);
    let _ = conn.on_inbound(&auth_ok(), t, &mut done);
    let _ = conn.on_outbound(
        &cat(&[query("SELECT 1"), pbde("SELECT 2"), sync()]),
        t,
        &mut done,
    );
    assert_eq!(conn.in_flight(), 2);
    let _ = conn.on_inbound(&cat(&[complete("SELECT 0"), ready()]), t, &mut done);
    assert_eq!(conn.in_flight(), 1);
    conn.on_close(t, CloseReason::Closed, &mut done);
    assert_eq!(conn.in_flight(), 0);
    assert_eq!(done.len(), 2);
}

#[test]
fn prepared_statements_are_bounded() {
    let mut conn = PgConnection::new();
    let (mut done, t) = (Vec::new(), SystemTime::UNIX_EPOCH);
    let _ = conn.on_outbound(&startup(&[("user", "u")]), t, &mut done);
    let _ = conn.on_inbound(&auth_ok(), t, &mut done);
    let sql = format!("SELECT {}", "a, ".repeat(5000));
    for i in 0..60 {
        let flow = conn.on_outbound(&cat(&[parse(&format!("s{i}"), &sql), sync()]), t, &mut done);
        assert_eq!(flow, Flow::Continue);
        let _ = conn.on_inbound(&cat(&[msg(b'1', b""), ready()]), t, &mut done);
        assert!(conn.statement_bytes() <= statements::MAX_STATEMENT_BYTES);
    }
    // The newest are kept: executing one still reports its SQL.
    let _ = conn.on_outbound(
        &cat(&[bind("", "s59"), execute("", 0), sync()]),
        t,
        &mut done,
    );
    let _ = conn.on_inbound(
        &cat(&[msg(b'2', b""), complete("SELECT 0"), ready()]),
        t,
        &mut done,
    );
    assert_eq!(done.len(), 1);
    assert!(
        summary(&done[0]).contains("text=SELECT a, a,"),
        "{}",
        summary(&done[0])
    );
}
