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
