//! Tests of [`MysqlConnection`] at the edges: the connection phase
//! (authentication rounds, TLS, compression, refusals), closes, protocol
//! errors, and every bound (commands in flight, huge packets, prepared
//! statements), with the harness of `tests.rs`.

use super::handshake::caps;
use super::tests::*;
use super::*;
use crate::testkit::Ev::{self, *};
use crate::testkit::{at, Rng, Split};

#[test]
fn authentication_rounds_make_no_spans() {
    let ev = vec![
        In(greeting("8.0.36", SERVER_CAPS, 0)),
        Out(login(0, None)),
        In(pkt(
            2,
            b"\xfecaching_sha2_password\x00abcdefghijklmnopqrst\x00",
        )),
        Out(pkt(3, &[0x11; 32])),
        In(pkt(4, b"\x01\x04")), // perform full authentication
        Out(pkt(5, b"secret\x00")),
        In(pkt(6, OK)),
        Out(query("SELECT 1")),
        In(result_set(1)),
    ];
    check("auth", ev, &["SELECT [-] [SELECT ?] ok"], None);
    let refused = vec![
        In(greeting("8.0.36", SERVER_CAPS, 0)),
        Out(login(0, Some("test"))),
        In(pkt(2, &err(1045, "28000", "Access denied for user 'app'"))),
        Out(query("SELECT 1")),
    ];
    check("auth failed", refused, &[], Some(2));
    let host_refused = vec![In(pkt(
        0,
        b"\xff\x6a\x04Host '10.1.1.1' is not allowed to connect",
    ))];
    check("greeting error", host_refused, &[], Some(0));
}

#[test]
fn tls_request_is_reported_and_the_plaintext_login_follows() {
    let server = SERVER_CAPS | caps::SSL;
    let ssl_caps = caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::SSL | caps::CONNECT_WITH_DB;
    let mut ssl_request = ssl_caps.to_le_bytes().to_vec();
    ssl_request.extend_from_slice(&[0, 0, 0, 1, 0x21]);
    ssl_request.extend_from_slice(&[0; 23]);
    let mut full = login(caps::SSL, Some("secure"));
    full[3] = 2; // after the SSLRequest, the login is packet 2
    let ev = vec![
        In(greeting("8.0.36", server, 0)),
        Out(pkt(1, &ssl_request)),
        // What TLS hooks would see inside the tunnel:
        Out(full),
        In(pkt(3, OK)),
        Out(query("SELECT 1")),
        In(result_set(1)),
    ];
    let out = check("tls", ev, &["SELECT [secure] [SELECT ?] ok"], None);
    assert!(out.tls);
}

#[test]
fn compression_stops_tracing() {
    let server = SERVER_CAPS | caps::COMPRESS;
    let ev = vec![
        In(greeting("8.0.36", server, 0)),
        Out(login(caps::COMPRESS, Some("test"))),
    ];
    check("compressed", ev, &[], Some(1));
    // Asked for but not offered: not compressed.
    let mut ev = connect("8.0.36", caps::COMPRESS);
    ev.extend([Out(query("SELECT 1")), In(result_set(1))]);
    check("not compressed", ev, &["SELECT [test] [SELECT ?] ok"], None);
}

#[test]
fn closes_report_what_is_pending() {
    let mut ev = connect("8.0.36", 0);
    ev.extend([
        Out(query("SELECT SLEEP(10)")),
        In(pkts(&[(1, b"\x01"), (2, COLUMN)])),
        Close(CloseReason::PeerClosed),
    ]);
    check(
        "closed",
        ev,
        &["SELECT [test] [SELECT SLEEP(?)] error connection_closed (connection_closed)"],
        None,
    );
    let mut ev = connect("8.0.36", 0);
    ev.extend([Out(query("SELECT 1")), Close(CloseReason::ProcessExit)]);
    check(
        "exit",
        ev,
        &["SELECT [test] [SELECT ?] error process_exit (process_exit)"],
        None,
    );
}

#[test]
fn protocol_errors_stop_and_report_pending() {
    // A response with no command.
    let mut ev = connect("8.0.36", 0);
    ev.extend([In(result_set(1)), Out(query("SELECT 1"))]);
    check("unsolicited", ev, &[], Some(3));
    // An ERR with no command is the server's goodbye: not a reason to stop.
    let mut ev = connect("8.0.36", 0);
    ev.extend([
        In(pkt(0, &err(4031, "HY000", "The client was disconnected"))),
        Out(query("SELECT 1")),
        In(result_set(1)),
    ]);
    check("goodbye", ev, &["SELECT [test] [SELECT ?] ok"], None);
    // A command out of sequence, with one pending.
    let mut ev = connect("8.0.36", 0);
    ev.extend([Out(query("SELECT 1")), Out(pkt(3, b"\x03SELECT 2"))]);
    check(
        "out of sequence",
        ev,
        &["SELECT [test] [SELECT ?] error protocol_error (protocol_error)"],
        Some(4),
    );
    // The client speaking first.
    check("client first", vec![Out(query("SELECT 1"))], &[], Some(0));
    // Replication.
    let mut ev = connect("8.0.36", 0);
    ev.push(Out(command(0x12, b"\x04\x00\x00\x00\x00\x00")));
    check("binlog", ev, &[], Some(3));
}

#[test]
fn too_many_pipelined_commands_stop_tracing() {
    let mut ev = connect("8.0.36", 0);
    let mut burst = Vec::new();
    for _ in 0..=MAX_IN_FLIGHT {
        burst.extend(query("DO 1"));
    }
    ev.push(Out(burst));
    let out = run(&ev, Split::Whole);
    assert_eq!(out.stopped_at, Some(3));
    assert_eq!(out.ops.len(), MAX_IN_FLIGHT + 1);
    assert!(out
        .ops
        .iter()
        .all(|op| attr(op, "error.type") == Some("pipeline_overflow")));
}

#[test]
fn long_queries_are_cut_and_huge_packets_stream_by() {
    // A COM_QUERY of 20 MB: a full 0xffffff-byte packet and its continuation.
    let mut text = b"INSERT INTO blobs VALUES ('".to_vec();
    text.resize(20 << 20, b'a');
    text.extend_from_slice(b"')");
    let mut payload = vec![0x03];
    payload.extend_from_slice(&text);
    let (first, rest) = payload.split_at(packet::MAX_PAYLOAD);
    let mut big = pkt(0, first);
    big.extend(pkt(1, rest));
    // A row of 17 MB starting with 0xfe (an 8-byte length), then the EOF.
    let mut row = vec![0xfe];
    row.extend_from_slice(&(17u64 << 20).to_le_bytes());
    row.resize(9 + (17 << 20), b'z');
    let (row_a, row_b) = row.split_at(packet::MAX_PAYLOAD);
    let mut response = pkts(&[(1, b"\x01"), (2, COLUMN), (3, EOF), (4, row_a), (5, row_b)]);
    response.extend(pkt(6, EOF));
    let mut ev = connect("8.0.36", 0);
    ev.extend([
        Out(big),
        In(pkt(1, OK)),
        Out(query("SELECT b FROM blobs")),
        In(response),
    ]);
    let whole = run(&ev, Split::Whole);
    for seed in [5, 6] {
        // Random splits of up to 12 bytes would take long on 40 MB: use big chunks.
        let mut conn = MysqlConnection::new();
        let mut done = Vec::new();
        let mut rng = Rng(seed);
        for (i, e) in ev.iter().enumerate() {
            let (Out(d) | In(d)) = e else { continue };
            for piece in d.chunks(1 + rng.below(70_000)) {
                let flow = match e {
                    Out(_) => conn.on_outbound(piece, at(i), &mut done),
                    _ => conn.on_inbound(piece, at(i), &mut done),
                };
                assert_eq!(flow, Flow::Continue);
                assert!(conn.buffered() < 2 * (MAX_QUERY_BYTES + 1024));
            }
        }
        assert_eq!(done, whole.ops);
    }
    assert_eq!(whole.ops.len(), 2);
    let insert = attr(&whole.ops[0], "db.query.text").unwrap();
    assert_eq!(insert, "INSERT INTO blobs VALUES (?");
    assert_eq!(whole.ops[0].name, "INSERT blobs");
    assert_eq!(
        summary(&whole.ops[1]),
        "SELECT blobs [test] [SELECT b FROM blobs] ok"
    );
}

#[test]
fn prepared_statements_are_bounded() {
    let mut conn = MysqlConnection::new();
    let mut done = Vec::new();
    let mut feed_all = |conn: &mut MysqlConnection, ev: &[Ev]| {
        for e in ev {
            let _ = match e {
                Out(d) => conn.on_outbound(d, at(0), &mut done),
                In(d) => conn.on_inbound(d, at(0), &mut done),
                Close(_) => Flow::Continue,
            };
        }
    };
    feed_all(&mut conn, &connect("8.0.36", 0));
    let long = format!("SELECT {} FROM t WHERE a = ?", "c, ".repeat(2000));
    for id in 0..(MAX_STATEMENTS as u32 + 50) {
        let text = if id % 2 == 0 {
            long.as_str()
        } else {
            "SELECT 1"
        };
        feed_all(
            &mut conn,
            &[
                Out(command(0x16, text.as_bytes())),
                In(pkt(1, &prepare_ok(id, 0, 0))),
            ],
        );
        assert!(conn.statement_count() <= MAX_STATEMENTS);
        assert!(conn.buffered() <= MAX_STATEMENT_BYTES + 4096);
    }
    // The newest are remembered, the oldest forgotten.
    feed_all(
        &mut conn,
        &[Out(execute(MAX_STATEMENTS as u32 + 49)), In(pkt(1, OK))],
    );
    feed_all(&mut conn, &[Out(execute(1)), In(pkt(1, OK))]);
    let last = done.len();
    assert_eq!(done[last - 2].name, "SELECT");
    assert_eq!(done[last - 1].name, "mysql");
}

/// Invalid UTF-8 (an error message, a database name) cut to its cap, then
/// converted, came out up to three times the cap (each byte a three-byte
/// U+FFFD); it is cut again after the conversion. Found while checking the
/// caps for `fuzz/`.
#[test]
fn a_lossy_prefix_stays_within_its_cap() {
    for max in [5, MAX_ERROR_MESSAGE_BYTES] {
        let out = lossy_prefix(&vec![0xff; 2 * max], max);
        assert!(out.len() <= max, "{} bytes for a cap of {max}", out.len());
        assert!(out.len() + 3 > max);
    }
    assert_eq!(lossy_prefix("é".as_bytes(), 1), "");
    assert_eq!(lossy_prefix(b"abc", 2), "ab");
}
