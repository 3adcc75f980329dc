//! Replays of real client traffic captured against Redis 7.0 (see
//! `tests/fixtures/redis/capture.sh`): redis-cli, redis-py in RESP2 and
//! RESP3. Each connection is replayed as recorded, byte by byte, at random
//! splits and split at every offset of every chunk; the operations must
//! not differ, and must be the ones listed.

use std::time::Duration;

use super::tests::summary;
use super::*;

/// Every way of splitting a fixture's chunks gives the same operations
/// (see [`crate::testkit::fixture`]).
fn replay_every_way(text: &str) -> Vec<Operation> {
    crate::testkit::fixture::replay_every_way(text, &RedisConnection::new)
}

/// A summary without its timing (fixture times are fractions of seconds).
fn untimed(op: &Operation) -> String {
    let s = summary(op);
    match s.find(" @") {
        Some(i) => {
            let rest = &s[i + 2..];
            let after = rest.find(' ').map_or("", |j| &rest[j..]);
            format!("{}{after}", &s[..i])
        }
        None => s,
    }
}

macro_rules! fixture {
    ($file:literal) => {
        include_str!(concat!("../../tests/fixtures/redis/", $file))
    };
}

const REDIS_PY_HELLO: &[&str] = &[
    "HELLO \"HELLO 3\" db=0",
    "CLIENT MAINT_NOTIFICATIONS \"CLIENT MAINT_NOTIFICATIONS ? ? ?\" db=0 !ERR ERR unknown subcommand 'MAINT_NOTIFICATIONS'. Try CLIENT HELP.",
    "CLIENT SETINFO \"CLIENT SETINFO ? ?\" db=0 !ERR ERR unknown subcommand 'SETINFO'. Try CLIENT HELP.",
    "CLIENT SETINFO \"CLIENT SETINFO ? ?\" db=0 !ERR ERR unknown subcommand 'SETINFO'. Try CLIENT HELP.",
];

fn with_hello(rest: &[&str]) -> Vec<String> {
    REDIS_PY_HELLO
        .iter()
        .chain(rest)
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn captured_streams() {
    let cases: Vec<(&str, &str, Vec<String>)> = vec![
        (
            "cli_basic.txt",
            fixture!("cli_basic.txt"),
            vec![
                "SET \"SET lumigo:fx:k ?\" db=0".into(),
                "GET \"GET lumigo:fx:k\" db=0".into(),
                "INCR \"INCR lumigo:fx:counter\" db=0".into(),
                "DEL \"DEL lumigo:fx:k lumigo:fx:counter\" db=0".into(),
            ],
        ),
        (
            "cli_error.txt",
            fixture!("cli_error.txt"),
            vec![
                "INCR \"INCR lumigo:fx:s\" db=0 !ERR ERR value is not an integer or out of range".into(),
                "LPUSH \"LPUSH lumigo:fx:s ?\" db=0 !WRONGTYPE WRONGTYPE Operation against a key holding the wrong kind of value".into(),
                "NOSUCHCOMMAND \"NOSUCHCOMMAND ? ?\" db=0 !ERR ERR unknown command 'NOSUCHCOMMAND'".into(),
            ],
        ),
        (
            "cli_select.txt",
            fixture!("cli_select.txt"),
            vec![
                "SELECT \"SELECT 2\" db=2".into(),
                "GET \"GET lumigo:fx:k2\" db=2".into(),
            ],
        ),
        (
            "cli_blpop.txt",
            fixture!("cli_blpop.txt"),
            vec!["BLPOP \"BLPOP lumigo:fx:empty ?\" db=0".into()],
        ),
        (
            "cli_publish.txt",
            fixture!("cli_publish.txt"),
            vec!["PRODUCER publish lumigo:fx:chan size=5".into()],
        ),
        (
            "cli_subscribe.txt",
            fixture!("cli_subscribe.txt"),
            vec![
                "SUBSCRIBE \"SUBSCRIBE lumigo:fx:ch1 lumigo:fx:ch2\" db=0".into(),
                "CONSUMER receive lumigo:fx:ch1 ch=lumigo:fx:ch1 size=13".into(),
                "CONSUMER receive lumigo:fx:ch2 ch=lumigo:fx:ch2 size=6".into(),
            ],
        ),
        (
            "cli_resp3.txt",
            fixture!("cli_resp3.txt"),
            [
                "HSET \"HSET lumigo:fx:h ? ? ? ?\" db=0",
                "HGETALL \"HGETALL lumigo:fx:h\" db=0",
                "ZADD \"ZADD lumigo:fx:z ? ?\" db=0",
                "ZSCORE \"ZSCORE lumigo:fx:z ?\" db=0",
                "DEL \"DEL lumigo:fx:h lumigo:fx:z\" db=0",
            ]
            .iter()
            .flat_map(|s| ["HELLO \"HELLO 3\" db=0".to_string(), s.to_string()])
            .collect(),
        ),
        (
            "py_pipeline.txt",
            fixture!("py_pipeline.txt"),
            with_hello(&[
                "SET \"SET lumigo:fx:p1 ?\" db=0",
                "GET \"GET lumigo:fx:p1\" db=0",
                "INCRBY \"INCRBY lumigo:fx:counter ?\" db=0",
                "LPUSH \"LPUSH lumigo:fx:list ? ?\" db=0",
                "DEL \"DEL lumigo:fx:p1 lumigo:fx:list\" db=0",
            ]),
        ),
        (
            "py_multi.txt",
            fixture!("py_multi.txt"),
            with_hello(&[
                "MULTI \"MULTI\" db=0",
                "SET \"SET lumigo:fx:m ?\" db=0",
                "INCRBY \"INCRBY lumigo:fx:m:n ?\" db=0",
                "GET \"GET lumigo:fx:m\" db=0",
                "EXEC \"EXEC\" db=0",
            ]),
        ),
        (
            "py_select.txt",
            fixture!("py_select.txt"),
            with_hello(&[
                "SELECT \"SELECT 2\" db=2",
                "SET \"SET lumigo:fx:in2 ?\" db=2",
                "GET \"GET lumigo:fx:in2\" db=2",
            ]),
        ),
        (
            "py_resp2_pubsub.txt",
            fixture!("py_resp2_pubsub.txt"),
            vec![
                "CLIENT SETINFO \"CLIENT SETINFO ? ?\" db=0 !ERR ERR unknown subcommand 'SETINFO'. Try CLIENT HELP.".into(),
                "CLIENT SETINFO \"CLIENT SETINFO ? ?\" db=0 !ERR ERR unknown subcommand 'SETINFO'. Try CLIENT HELP.".into(),
                "SUBSCRIBE \"SUBSCRIBE lumigo:fx:a lumigo:fx:b\" db=0".into(),
                "PSUBSCRIBE \"PSUBSCRIBE lumigo:fx:p.*\" db=0".into(),
                "CONSUMER receive lumigo:fx:a ch=lumigo:fx:a size=4".into(),
                "CONSUMER receive lumigo:fx:p.* ch=lumigo:fx:p.x size=10".into(),
                "PING \"PING\" db=0".into(),
                "UNSUBSCRIBE \"UNSUBSCRIBE\" db=0".into(),
                "PUNSUBSCRIBE \"PUNSUBSCRIBE\" db=0".into(),
            ],
        ),
        (
            "py_resp3_psubscribe.txt",
            fixture!("py_resp3_psubscribe.txt"),
            with_hello(&[
                "PSUBSCRIBE \"PSUBSCRIBE lumigo:fx:news.*\" db=0",
                "CONSUMER receive lumigo:fx:news.* ch=lumigo:fx:news.sport size=4",
                "CONSUMER receive lumigo:fx:news.* ch=lumigo:fx:news.sport size=23",
                "PUNSUBSCRIBE \"PUNSUBSCRIBE\" db=0",
            ]),
        ),
        (
            "py_resp3_tracking.txt",
            fixture!("py_resp3_tracking.txt"),
            with_hello(&[
                "SET \"SET lumigo:fx:tracked ?\" db=0",
                "CLIENT TRACKING \"CLIENT TRACKING ?\" db=0",
                "GET \"GET lumigo:fx:tracked\" db=0",
                "HSET \"HSET lumigo:fx:h ? ?\" db=0",
                "HGETALL \"HGETALL lumigo:fx:h\" db=0",
                "GET \"GET lumigo:fx:tracked\" db=0",
            ]),
        ),
    ];
    for (file, text, want) in cases {
        let ops = replay_every_way(text);
        let got: Vec<String> = ops.iter().map(untimed).collect();
        assert_eq!(got, want, "{file}");
    }
}

#[test]
fn captured_timing() {
    // BLPOP with a 0.5 s timeout lasts at least that long.
    let ops = replay_every_way(fixture!("cli_blpop.txt"));
    let took = ops[0].end.duration_since(ops[0].start).unwrap();
    assert!(took >= Duration::from_millis(500), "{took:?}");
    // Messages arrive about 1 s after the subscription; each is instant.
    let ops = replay_every_way(fixture!("cli_subscribe.txt"));
    let (sub, first) = (&ops[0], &ops[1]);
    assert!(first.start.duration_since(sub.end).unwrap() > Duration::from_millis(500));
    assert_eq!(first.start, first.end);
    // A pipeline's commands share their start; replies end them in order.
    let ops = replay_every_way(fixture!("py_pipeline.txt"));
    let pipeline = &ops[4..];
    assert!(pipeline.iter().all(|op| op.start == pipeline[0].start));
    assert!(pipeline.windows(2).all(|w| w[0].end <= w[1].end));
}

const FIXTURES: &[(&str, &str)] = &[
    ("cli_basic", fixture!("cli_basic.txt")),
    ("cli_blpop", fixture!("cli_blpop.txt")),
    ("cli_error", fixture!("cli_error.txt")),
    ("cli_publish", fixture!("cli_publish.txt")),
    ("cli_resp3", fixture!("cli_resp3.txt")),
    ("cli_select", fixture!("cli_select.txt")),
    ("cli_subscribe", fixture!("cli_subscribe.txt")),
    ("py_multi", fixture!("py_multi.txt")),
    ("py_pipeline", fixture!("py_pipeline.txt")),
    ("py_resp2_pubsub", fixture!("py_resp2_pubsub.txt")),
    ("py_resp3_psubscribe", fixture!("py_resp3_psubscribe.txt")),
    ("py_resp3_tracking", fixture!("py_resp3_tracking.txt")),
    ("py_select", fixture!("py_select.txt")),
];

/// Every connection of every fixture, as calls.
fn conversations() -> Vec<(String, Vec<crate::testkit::Ev>)> {
    use crate::testkit::Ev;
    let mut all = Vec::new();
    for (name, text) in FIXTURES {
        for (i, chunks) in crate::testkit::fixture::parse(text).into_iter().enumerate() {
            let events = chunks
                .into_iter()
                .map(|(out, _, bytes)| if out { Ev::Out(bytes) } else { Ev::In(bytes) })
                .collect();
            all.push((format!("{name} #{i}"), events));
        }
    }
    all.push(("long values".into(), long_values()));
    all
}

/// Strings longer than a compacted stream carries, both ways: a SET of a
/// 5,000-byte value and its GET, a key of 300 bytes (longer than is kept),
/// a subscriber's messages of 3,000 bytes in RESP2 and as RESP3 pushes, a
/// blob error, a PUBLISH of 5,000 bytes.
fn long_values() -> Vec<crate::testkit::Ev> {
    use crate::testkit::Ev;
    let bulk = |s: &[u8]| {
        let mut b = format!("${}\r\n", s.len()).into_bytes();
        b.extend_from_slice(s);
        b.extend_from_slice(b"\r\n");
        b
    };
    let command = |args: &[&[u8]]| {
        let mut c = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            c.extend(bulk(a));
        }
        c
    };
    let value = vec![b'v'; 5000];
    let key = vec![b'k'; 300];
    let payload = vec![b'p'; 3000];
    let mut message = b"*3\r\n".to_vec();
    message.extend(bulk(b"message"));
    message.extend(bulk(b"ch"));
    message.extend(bulk(&payload));
    let mut push = message.clone();
    push[0] = b'>';
    let mut pmessage = b">4\r\n".to_vec();
    for part in [&b"pmessage"[..], b"c*", &key, &payload] {
        pmessage.extend(bulk(part));
    }
    let mut blob_error = b"!3000\r\n".to_vec();
    blob_error.extend(vec![b'e'; 3000]);
    blob_error.extend_from_slice(b"\r\n");
    vec![
        Ev::Out(command(&[b"SET", &key, &value])),
        Ev::In(b"+OK\r\n".to_vec()),
        Ev::Out(command(&[b"GET", &key])),
        Ev::In(bulk(&value)),
        Ev::Out(command(&[b"EVAL", &value, b"0"])),
        Ev::In(blob_error),
        Ev::Out(command(&[b"PUBLISH", b"ch", &value])),
        Ev::In(b":0\r\n".to_vec()),
        Ev::Out(command(&[b"SUBSCRIBE", b"ch"])),
        Ev::In(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n".to_vec()),
        Ev::In(message.clone()),
        Ev::In([message.clone(), push, pmessage].concat()),
    ]
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
    use crate::testkit::steps;
    for (name, events) in &conversations() {
        let steps = steps(events);
        let cut = &steps[..steps.len() - 1];
        for steps in [&steps[..], cut] {
            for step in [1, 2, 3, 4, 5, 7, 64, 1 << 20] {
                let cap: &'static Capture = Box::leak(Box::new(Capture::new(0)));
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

/// On the data path a command's span is a child of the context the thread
/// had when it wrote the command, and a message's CONSUMER span is the
/// thread's active context from the call that read it until the next
/// message: what the app does meanwhile is its child.
#[test]
fn captured_commands_and_messages_have_the_contexts_of_the_app_thread() {
    use crate::capture::differential::parents_when_captured;
    use crate::testkit::steps;
    let events = &conversations()
        .into_iter()
        .find(|(n, _)| n == "long values")
        .expect("long values")
        .1;
    for piece in [usize::MAX, 3, 1] {
        let got = parents_when_captured(&steps(events), piece);
        // Writes are numbered from 1, the first under no context.
        let commands: Vec<(String, Option<[u8; 8]>)> = got
            .iter()
            .filter(|(name, ..)| !name.starts_with("receive"))
            .map(|(name, parent, _)| (name.clone(), *parent))
            .collect();
        assert_eq!(
            commands,
            [
                ("SET".to_string(), None),
                ("GET".into(), Some([2; 8])),
                ("EVAL".into(), Some([3; 8])),
                ("publish ch".into(), Some([4; 8])),
                ("SUBSCRIBE".into(), Some([5; 8])),
            ],
            "{piece} bytes per call"
        );
        // Messages are read under context 99: they are its children.
        let messages: Vec<_> = got
            .iter()
            .filter(|(name, ..)| name.starts_with("receive"))
            .collect();
        assert_eq!(messages.len(), 4, "{got:?}");
        assert!(messages
            .iter()
            .all(|(_, parent, trace)| *parent == Some([99; 8]) && *trace == [99; 16]));
    }
}

/// The CONSUMER span's id is the one the app's thread made active when it
/// read the message, and the next message replaces it.
#[test]
fn a_message_read_on_a_captured_connection_is_the_threads_active_context() {
    use crate::capture::differential::tracer_capturing;
    use crate::capture::Capture;
    use crate::connection::Connection;
    let (t, spans) = tracer_capturing(0);
    let cap: &'static Capture = Box::leak(Box::new(Capture::new(0)));
    let peer = Some(crate::address::Address::Inet(
        "127.0.0.1:6379".parse().unwrap(),
    ));
    let mut c = Connection::captured(crate::http::Role::Client, peer, None, cap);
    let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s);
    crate::context::clear_active_all();
    let _ = c.on_outbound(b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n", at(1), &t);
    let _ = c.on_inbound(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n", at(2), &t);
    assert!(
        crate::context::active().is_none(),
        "a confirmation is no message"
    );
    let mut active = Vec::new();
    for (i, message) in [
        &b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\na\r\n"[..],
        b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nb\r\n",
    ]
    .iter()
    .enumerate()
    {
        let _ = c.on_inbound(message, at(3 + i as u64), &t);
        active.push(
            crate::context::active()
                .expect("the message's context")
                .span_id,
        );
    }
    assert_ne!(active[0], active[1]);
    c.on_close(at(9), CloseReason::Closed, &t);
    assert!(crate::context::active().is_none(), "cleared at the close");
    cap.drain(&t);
    let spans = spans.0.lock().unwrap();
    let consumers: Vec<[u8; 8]> = spans
        .iter()
        .filter(|s| s.kind == crate::span::SpanKind::Consumer)
        .map(|s| s.context.span_id)
        .collect();
    assert_eq!(consumers, active);
}
