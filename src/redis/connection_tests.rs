//! Tests of [`RedisConnection`]: scenarios as tables, each replayed whole,
//! byte by byte and at random splits (the results must not differ). Event
//! `i` happens at second `i`, so each summary also checks timing.

use std::time::SystemTime;

use super::*;
use crate::redis::MAX_IN_FLIGHT;
use crate::span::{AttrValue, SpanKind, SpanStatus};
use crate::testkit::Ev::{self, *};
use crate::testkit::{at, Split, StopWatch};

/// A command as a RESP array of bulk strings.
pub(super) fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

fn out(args: &[&str]) -> Ev {
    Out(resp(args))
}

fn inb(bytes: &[u8]) -> Ev {
    In(bytes.to_vec())
}

pub(super) fn attr(op: &Operation, key: &str) -> String {
    match op.attributes.iter().find(|(k, _)| *k == key) {
        Some((_, AttrValue::Str(s))) => s.to_string(),
        Some((_, AttrValue::Int(i))) => i.to_string(),
        Some((_, AttrValue::Bool(b))) => b.to_string(),
        None => "-".to_owned(),
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An operation in one line.
pub(super) fn summary(op: &Operation) -> String {
    let at = format!("@{}-{}", secs(op.start), secs(op.end));
    let error = match &op.status {
        SpanStatus::Error(d) => format!(" !{} {d}", attr(op, "error.type")),
        _ => String::new(),
    };
    match op.kind {
        SpanKind::Producer => format!(
            "PRODUCER {} size={} {at}{error}",
            op.name,
            attr(op, "messaging.message.body.size")
        ),
        SpanKind::Consumer => format!(
            "CONSUMER {} ch={} size={} {at}",
            op.name,
            attr(op, "messaging.destination.name"),
            attr(op, "messaging.message.body.size")
        ),
        _ => format!(
            "{} \"{}\" db={} {at}{error}",
            op.name,
            attr(op, "db.query.text"),
            attr(op, "db.namespace")
        ),
    }
}

/// Runs the events; returns the operations and the index of the event at
/// which the connection first said Stop.
pub(super) fn run_ops(events: &[Ev], split: Split) -> (Vec<Operation>, Option<usize>) {
    let mut conn = RedisConnection::new();
    let mut done = Vec::new();
    let mut stop = StopWatch::default();
    let mut cutter = split.cutter(9);
    for (i, ev) in events.iter().enumerate() {
        let now = at(i);
        let reported = done.len();
        let mut flows = Vec::new();
        match ev {
            Out(d) | In(d) => {
                for piece in cutter.pieces(d) {
                    flows.push(match ev {
                        Out(_) => conn.on_outbound(piece, now, &mut done),
                        _ => conn.on_inbound(piece, now, &mut done),
                    });
                }
            }
            Close(reason) => conn.on_close(now, *reason, &mut done),
        }
        stop.note(i, &flows, reported, done.len());
        assert!(conn.buffered() <= 2 * crate::redis::MAX_HEAD_BYTES + 64 * 1024);
        assert!(conn.pending.len() <= MAX_IN_FLIGHT);
    }
    (done, stop.at)
}

pub(super) fn run(events: &[Ev], split: Split) -> (Vec<String>, Option<usize>) {
    let (ops, stopped_at) = run_ops(events, split);
    (ops.iter().map(summary).collect(), stopped_at)
}

struct Case {
    name: &'static str,
    events: Vec<Ev>,
    want: &'static [&'static str],
    stops_at: Option<usize>,
}

fn case(name: &'static str, events: Vec<Ev>, want: &'static [&'static str]) -> Case {
    Case {
        name,
        events,
        want,
        stops_at: None,
    }
}

fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn cases() -> Vec<Case> {
    vec![
        case(
            "set then get",
            vec![out(&["SET", "k", "secret"]), inb(b"+OK\r\n"), out(&["get", "k"]), inb(b"$6\r\nsecret\r\n")],
            &["SET \"SET k ?\" db=0 @0-1", "GET \"GET k\" db=0 @2-3"],
        ),
        case(
            "pipeline: replies in order, each when it arrives",
            vec![
                Out(concat(&[resp(&["SET", "a", "1"]), resp(&["INCR", "n"]), resp(&["GET", "b"])])),
                inb(b"+OK\r\n:4"),
                inb(b"2\r\n"),
                inb(b"$-1\r\n"),
            ],
            &["SET \"SET a ?\" db=0 @0-1", "INCR \"INCR n\" db=0 @0-2", "GET \"GET b\" db=0 @0-3"],
        ),
        case(
            "error replies: prefix as type, line as status",
            vec![
                out(&["INCR", "s"]),
                inb(b"-ERR value is not an integer or out of range\r\n"),
                out(&["LPUSH", "s", "x"]),
                inb(b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
                out(&["SET", "k", "v", "bad"]),
                inb(b"!21\r\nSYNTAX invalid syntax\r\n"),
            ],
            &[
                "INCR \"INCR s\" db=0 @0-1 !ERR ERR value is not an integer or out of range",
                "LPUSH \"LPUSH s ?\" db=0 @2-3 !WRONGTYPE WRONGTYPE Operation against a key holding the wrong kind of value",
                "SET \"SET k ? ?\" db=0 @4-5 !SYNTAX SYNTAX invalid syntax",
            ],
        ),
        case(
            "SELECT changes the namespace once answered OK",
            vec![
                out(&["SELECT", "2"]),
                inb(b"+OK\r\n"),
                out(&["GET", "k"]),
                inb(b"$-1\r\n"),
                out(&["SELECT", "99"]),
                inb(b"-ERR DB index is out of range\r\n"),
                Out(concat(&[resp(&["SELECT", "3"]), resp(&["GET", "k"])])),
                inb(b"+OK\r\n$-1\r\n"),
            ],
            &[
                "SELECT \"SELECT 2\" db=2 @0-1",
                "GET \"GET k\" db=2 @2-3",
                "SELECT \"SELECT 99\" db=2 @4-5 !ERR ERR DB index is out of range",
                "SELECT \"SELECT 3\" db=3 @6-7",
                "GET \"GET k\" db=3 @6-7",
            ],
        ),
        case(
            "MULTI/EXEC: QUEUED ends each command, EXEC ends with its array, a queued SELECT applies at EXEC",
            vec![
                out(&["MULTI"]),
                inb(b"+OK\r\n"),
                out(&["SET", "k", "v"]),
                inb(b"+QUEUED\r\n"),
                out(&["SELECT", "4"]),
                inb(b"+QUEUED\r\n"),
                out(&["EXEC"]),
                inb(b"*2\r\n+OK\r\n+OK\r\n"),
                out(&["GET", "k"]),
                inb(b"$-1\r\n"),
            ],
            &[
                "MULTI \"MULTI\" db=0 @0-1",
                "SET \"SET k ?\" db=0 @2-3",
                "SELECT \"SELECT 4\" db=0 @4-5",
                "EXEC \"EXEC\" db=4 @6-7",
                "GET \"GET k\" db=4 @8-9",
            ],
        ),
        case(
            "DISCARD and an aborted EXEC drop a queued SELECT",
            vec![
                Out(concat(&[resp(&["MULTI"]), resp(&["SELECT", "5"]), resp(&["DISCARD"])])),
                inb(b"+OK\r\n+QUEUED\r\n+OK\r\n"),
                Out(concat(&[resp(&["WATCH", "w"]), resp(&["MULTI"]), resp(&["SELECT", "6"]), resp(&["EXEC"])])),
                inb(b"+OK\r\n+OK\r\n+QUEUED\r\n*-1\r\n"),
                Out(concat(&[resp(&["MULTI"]), resp(&["NOPE"]), resp(&["EXEC"])])),
                inb(b"+OK\r\n-ERR unknown command 'NOPE'\r\n-EXECABORT Transaction discarded because of previous errors.\r\n"),
            ],
            &[
                "MULTI \"MULTI\" db=0 @0-1",
                "SELECT \"SELECT 5\" db=0 @0-1",
                "DISCARD \"DISCARD\" db=0 @0-1",
                "WATCH \"WATCH w\" db=0 @2-3",
                "MULTI \"MULTI\" db=0 @2-3",
                "SELECT \"SELECT 6\" db=0 @2-3",
                "EXEC \"EXEC\" db=0 @2-3",
                "MULTI \"MULTI\" db=0 @4-5",
                "NOPE \"NOPE\" db=0 @4-5 !ERR ERR unknown command 'NOPE'",
                "EXEC \"EXEC\" db=0 @4-5 !EXECABORT EXECABORT Transaction discarded because of previous errors.",
            ],
        ),
        case(
            "a blocking command ends when its reply comes",
            vec![out(&["BLPOP", "q1", "q2", "5"]), Out(Vec::new()), inb(b"*2\r\n$2\r\nq2\r\n$3\r\njob\r\n")],
            &["BLPOP \"BLPOP q1 q2 ?\" db=0 @0-2"],
        ),
        case(
            "PUBLISH is a producer span",
            vec![out(&["PUBLISH", "orders", "hello"]), inb(b":2\r\n")],
            &["PRODUCER publish orders size=5 @0-1"],
        ),
        case(
            "RESP2 pub/sub: confirmations end SUBSCRIBE, messages are consumer spans, PING answers pong",
            vec![
                out(&["SUBSCRIBE", "a", "b"]),
                inb(b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"),
                inb(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"),
                inb(b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$5\r\nhello\r\n"),
                out(&["PSUBSCRIBE", "n.*"]),
                inb(b"*3\r\n$10\r\npsubscribe\r\n$3\r\nn.*\r\n:3\r\n*4\r\n$8\r\npmessage\r\n$3\r\nn.*\r\n$3\r\nn.x\r\n$2\r\nhi\r\n"),
                out(&["PING"]),
                inb(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
                Out(concat(&[resp(&["UNSUBSCRIBE"]), resp(&["PUNSUBSCRIBE"])])),
                inb(b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:2\r\n*3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:1\r\n"),
                inb(b"*3\r\n$12\r\npunsubscribe\r\n$3\r\nn.*\r\n:0\r\n"),
                out(&["LRANGE", "l", "0", "-1"]),
                inb(b"*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$1\r\ny\r\n"),
            ],
            &[
                "SUBSCRIBE \"SUBSCRIBE a b\" db=0 @0-2",
                "CONSUMER receive a ch=a size=5 @3-3",
                "PSUBSCRIBE \"PSUBSCRIBE n.*\" db=0 @4-5",
                "CONSUMER receive n.* ch=n.x size=2 @5-5",
                "PING \"PING\" db=0 @6-7",
                "UNSUBSCRIBE \"UNSUBSCRIBE\" db=0 @8-9",
                "PUNSUBSCRIBE \"PUNSUBSCRIBE\" db=0 @8-10",
                // No longer subscribed: an array that looks like a message is a reply.
                "LRANGE \"LRANGE l ? ?\" db=0 @11-12",
            ],
        ),
        case(
            "UNSUBSCRIBE with nothing held gets one confirmation",
            vec![out(&["UNSUBSCRIBE"]), inb(b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n")],
            &["UNSUBSCRIBE \"UNSUBSCRIBE\" db=0 @0-1"],
        ),
        case(
            "RESP3: pushes are never replies",
            vec![
                out(&["HELLO", "3"]),
                inb(b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n"),
                out(&["SUBSCRIBE", "a"]),
                inb(b">3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"),
                out(&["GET", "k"]),
                inb(b">3\r\n$7\r\nmessage\r\n$1\r\na\r\n$3\r\nabc\r\n$1\r\nv\r\n"),
                out(&["LRANGE", "l", "0", "1"]),
                inb(b"*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$1\r\ny\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"),
                out(&["GET", "k"]),
                inb(b"|1\r\n+key-popularity\r\n%1\r\n$1\r\nk\r\n,0.5\r\n$1\r\nv\r\n"),
            ],
            &[
                "HELLO \"HELLO 3\" db=0 @0-1",
                "SUBSCRIBE \"SUBSCRIBE a\" db=0 @2-3",
                "CONSUMER receive a ch=a size=3 @5-5",
                "GET \"GET k\" db=0 @4-5",
                "LRANGE \"LRANGE l ? ?\" db=0 @6-7",
                "GET \"GET k\" db=0 @8-9",
            ],
        ),
        case(
            "CLIENT REPLY OFF and SKIP: silenced commands end when sent",
            vec![
                out(&["CLIENT", "REPLY", "OFF"]),
                out(&["SET", "k", "v"]),
                out(&["CLIENT", "REPLY", "ON"]),
                inb(b"+OK\r\n"),
                out(&["CLIENT", "REPLY", "SKIP"]),
                out(&["SET", "k", "v"]),
                out(&["GET", "k"]),
                inb(b"$1\r\nv\r\n"),
            ],
            &[
                "CLIENT REPLY \"CLIENT REPLY ?\" db=0 @0-0",
                "SET \"SET k ?\" db=0 @1-1",
                "CLIENT REPLY \"CLIENT REPLY ?\" db=0 @2-3",
                "CLIENT REPLY \"CLIENT REPLY ?\" db=0 @4-4",
                "SET \"SET k ?\" db=0 @5-5",
                "GET \"GET k\" db=0 @6-7",
            ],
        ),
        case(
            "secrets stay out of the query text",
            vec![
                out(&["AUTH", "hunter2"]),
                inb(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"),
                out(&["HELLO", "3", "AUTH", "default", "hunter2", "SETNAME", "app"]),
                inb(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"),
                out(&["CONFIG", "SET", "requirepass", "hunter2"]),
                inb(b"+OK\r\n"),
            ],
            &[
                "AUTH \"AUTH ?\" db=0 @0-1 !WRONGPASS WRONGPASS invalid username-password pair or user is disabled.",
                "HELLO \"HELLO 3 ? ? ? ? ?\" db=0 @2-3 !WRONGPASS WRONGPASS invalid username-password pair or user is disabled.",
                "CONFIG SET \"CONFIG SET ? ?\" db=0 @4-5",
            ],
        ),
        case(
            "RESET goes back to database 0 and RESP2",
            vec![
                Out(concat(&[resp(&["SELECT", "2"]), resp(&["HELLO", "3"]), resp(&["RESET"])])),
                inb(b"+OK\r\n%1\r\n$5\r\nproto\r\n:3\r\n+RESET\r\n"),
                out(&["SUBSCRIBE", "a"]),
                inb(b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"),
            ],
            &[
                "SELECT \"SELECT 2\" db=2 @0-1",
                "HELLO \"HELLO 3\" db=2 @0-1",
                "RESET \"RESET\" db=0 @0-1",
                "SUBSCRIBE \"SUBSCRIBE a\" db=0 @2-3",
            ],
        ),
        case(
            "inline commands and empty lines",
            vec![Out(b"\r\nPING\r\nset k  v\n".to_vec()), inb(b"+PONG\r\n+OK\r\n")],
            &["PING \"PING\" db=0 @0-1", "SET \"SET k ?\" db=0 @0-1"],
        ),
        case(
            "a large value streams through",
            vec![
                Out(resp(&["SET", "big", &"x".repeat(100_000)])),
                inb(b"+OK\r\n"),
                out(&["GET", "big"]),
                In(format!("$100000\r\n{}\r\n", "x".repeat(100_000)).into_bytes()),
            ],
            &["SET \"SET big ?\" db=0 @0-1", "GET \"GET big\" db=0 @2-3"],
        ),
        case(
            "a deep, wide reply completes once",
            vec![
                out(&["COMMAND", "DOCS"]),
                In(concat(&[
                    b"%2\r\n$3\r\nget\r\n%2\r\n$7\r\nsummary\r\n$3\r\nGet\r\n$9\r\narguments\r\n*1\r\n".to_vec(),
                    b"*2\r\n~1\r\n#t\r\n_\r\n".to_vec(),
                    b"$3\r\nset\r\n*0\r\n".to_vec(),
                ])),
                out(&["PING"]),
                inb(b"+PONG\r\n"),
            ],
            &["COMMAND DOCS \"COMMAND DOCS\" db=0 @0-1", "PING \"PING\" db=0 @2-3"],
        ),
        case(
            "closing with commands in flight reports them",
            vec![
                Out(concat(&[resp(&["GET", "a"]), resp(&["GET", "b"])])),
                inb(b"$1\r\nx\r\n"),
                Out(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nab".to_vec()),
                Close(CloseReason::PeerClosed),
                out(&["GET", "c"]),
            ],
            &[
                "GET \"GET a\" db=0 @0-1",
                "GET \"GET b\" db=0 @0-3 !connection_closed connection closed before the reply",
                "SET \"SET k ?\" db=0 @2-3 !connection_closed connection closed before the reply",
            ],
        )
        .stops_at(4),
        case(
            "process exit",
            vec![out(&["BLPOP", "q", "0"]), Close(CloseReason::ProcessExit)],
            &["BLPOP \"BLPOP q ?\" db=0 @0-1 !process_exit process exited before the reply"],
        ),
        case(
            "a reply to nothing stops tracing",
            vec![out(&["GET", "a"]), inb(b"$1\r\nx\r\n+OK\r\n"), out(&["GET", "b"])],
            &["GET \"GET a\" db=0 @0-1"],
        )
        .stops_at(1),
        case(
            "inbound bytes that are not RESP stop tracing",
            vec![out(&["GET", "a"]), inb(b"HTTP/1.1 200 OK\r\n")],
            &["GET \"GET a\" db=0 @0-1 !protocol_error unexpected bytes on the connection; tracing stopped"],
        )
        .stops_at(1),
        case(
            "outbound bytes that are not RESP stop tracing",
            vec![out(&["GET", "a"]), Out(b"\x16\x03\x01".to_vec())],
            &["GET \"GET a\" db=0 @0-1 !protocol_error unexpected bytes on the connection; tracing stopped"],
        )
        .stops_at(1),
        case(
            "MONITOR: once accepted, the stream is not replies",
            vec![out(&["MONITOR"]), inb(b"+OK\r\n+1700000000.1 [0 127.0.0.1:5] \"get\" \"k\"\r\n")],
            &["MONITOR \"MONITOR\" db=0 @0-1"],
        )
        .stops_at(1),
    ]
}

impl Case {
    fn stops_at(mut self, i: usize) -> Case {
        self.stops_at = Some(i);
        self
    }
}

#[test]
fn scenarios_whole() {
    for c in cases() {
        let (got, stopped) = run(&c.events, Split::Whole);
        assert_eq!(got, c.want, "{}", c.name);
        assert_eq!(stopped, c.stops_at, "{}: stop", c.name);
    }
}

#[test]
fn scenarios_byte_by_byte_and_at_random_splits() {
    for c in cases() {
        let whole = run(&c.events, Split::Whole);
        assert_eq!(
            run(&c.events, Split::Bytes),
            whole,
            "{} byte by byte",
            c.name
        );
        for seed in 1..20 {
            assert_eq!(
                run(&c.events, Split::Random(seed)),
                whole,
                "{} seed {seed}",
                c.name
            );
        }
    }
}

#[test]
fn attributes_follow_the_conventions() {
    let (ops, _) = run_ops(
        &[
            out(&["SET", "k", "v"]),
            inb(b"-ERR oops\r\n"),
            out(&["PUBLISH", "ch", "hello"]),
            inb(b":1\r\n"),
            out(&["SUBSCRIBE", "ch"]),
            inb(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$2\r\nhi\r\n"),
        ],
        Split::Whole,
    );
    assert_eq!(
        ops.len(),
        4,
        "{:?}",
        ops.iter().map(summary).collect::<Vec<_>>()
    );
    let set = &ops[0];
    assert_eq!(set.kind, SpanKind::Client);
    assert_eq!(set.name, "SET");
    assert_eq!(set.status, SpanStatus::Error("ERR oops".into()));
    for (k, v) in [
        ("db.system.name", "redis"),
        ("db.operation.name", "SET"),
        ("db.query.text", "SET k ?"),
        ("db.namespace", "0"),
        ("error.type", "ERR"),
        ("db.response.status_code", "ERR"),
    ] {
        assert_eq!(attr(set, k), v, "{k}");
    }
    let publish = &ops[1];
    assert_eq!(
        (publish.kind, publish.name.as_str()),
        (SpanKind::Producer, "publish ch")
    );
    for (k, v) in [
        ("messaging.system", "redis"),
        ("messaging.operation.type", "send"),
        ("messaging.operation.name", "publish"),
        ("messaging.destination.name", "ch"),
        ("messaging.message.body.size", "5"),
    ] {
        assert_eq!(attr(publish, k), v, "{k}");
    }
    assert_eq!(publish.status, SpanStatus::Unset);
    let message = &ops[3];
    assert_eq!(
        (message.kind, message.name.as_str()),
        (SpanKind::Consumer, "receive c*")
    );
    assert_eq!(message.start, message.end);
    for (k, v) in [
        ("messaging.system", "redis"),
        ("messaging.operation.type", "receive"),
        ("messaging.destination.name", "ch"),
        ("messaging.destination.template", "c*"),
        ("messaging.message.body.size", "2"),
    ] {
        assert_eq!(attr(message, k), v, "{k}");
    }
}

#[test]
fn too_many_commands_in_flight_stop_tracing() {
    let one = resp(&["GET", "k"]);
    let mut conn = RedisConnection::new();
    let mut done = Vec::new();
    let now = SystemTime::UNIX_EPOCH;
    for _ in 0..MAX_IN_FLIGHT {
        assert_eq!(conn.on_outbound(&one, now, &mut done), Flow::Continue);
    }
    assert_eq!(conn.in_flight(), MAX_IN_FLIGHT);
    assert!(done.is_empty());
    assert_eq!(conn.on_outbound(&one, now, &mut done), Flow::Stop);
    assert_eq!(done.len(), MAX_IN_FLIGHT + 1);
    assert!(done
        .iter()
        .all(|op| attr(op, "error.type") == "pipeline_overflow"));
    assert_eq!(conn.in_flight(), 0);
    assert_eq!(conn.on_inbound(b"+OK\r\n", now, &mut done), Flow::Stop);
    conn.on_close(now, CloseReason::Closed, &mut done);
    assert_eq!(done.len(), MAX_IN_FLIGHT + 1);
}

#[test]
fn in_flight_counts_a_command_being_sent() {
    let mut conn = RedisConnection::new();
    let mut done = Vec::new();
    let now = SystemTime::UNIX_EPOCH;
    assert_eq!(conn.in_flight(), 0);
    let _ = conn.on_outbound(b"*2\r\n$3\r\nGET", now, &mut done);
    assert_eq!(conn.in_flight(), 1);
    let _ = conn.on_outbound(b"\r\n$1\r\nk\r\n", now, &mut done);
    assert_eq!(conn.in_flight(), 1);
    let _ = conn.on_inbound(b"$-1\r\n", now, &mut done);
    assert_eq!(conn.in_flight(), 0);
    assert_eq!(done.len(), 1);
}
