//! Tests of the command reader: names, query texts, kinds, inline
//! commands, streaming of large values, caps and malformed input.

use super::*;

fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_one(bytes: &[u8]) -> Command {
    let mut r = CommandReader::new();
    match r.feed(bytes, SystemTime::UNIX_EPOCH) {
        Step::Command(c, n) => {
            assert_eq!(n, bytes.len());
            c
        }
        other => panic!("{other:?} for {:?}", String::from_utf8_lossy(bytes)),
    }
}

#[test]
fn names_and_texts() {
    let cases: &[(&[&[u8]], &str, &str)] = &[
        (&[b"set", b"k", b"v"], "SET", "SET k ?"),
        (&[b"SET", b"k", b"v", b"EX", b"10"], "SET", "SET k ? ? ?"),
        (&[b"GET", b"user:1"], "GET", "GET user:1"),
        (&[b"MGET", b"a", b"b"], "MGET", "MGET a b"),
        (&[b"MSET", b"a", b"1", b"b", b"2"], "MSET", "MSET a ? b ?"),
        (&[b"BLPOP", b"q1", b"q2", b"0"], "BLPOP", "BLPOP q1 q2 ?"),
        (&[b"AUTH", b"user", b"pw"], "AUTH", "AUTH ? ?"),
        (&[b"AUTH", b"pw"], "AUTH", "AUTH ?"),
        (
            &[b"HELLO", b"3", b"AUTH", b"u", b"p"],
            "HELLO",
            "HELLO 3 ? ? ?",
        ),
        (
            &[b"client", b"setname", b"app"],
            "CLIENT SETNAME",
            "CLIENT SETNAME ?",
        ),
        (
            &[b"CONFIG", b"GET", b"maxmemory"],
            "CONFIG GET",
            "CONFIG GET ?",
        ),
        (
            &[b"CONFIG", b"SET", b"requirepass", b"s"],
            "CONFIG SET",
            "CONFIG SET ? ?",
        ),
        (
            &[b"OBJECT", b"ENCODING", b"k"],
            "OBJECT ENCODING",
            "OBJECT ENCODING k",
        ),
        (&[b"CLIENT", b"a b", b"x"], "CLIENT", "CLIENT ? ?"),
        (
            &[b"EVAL", b"return 1", b"1", b"k", b"arg"],
            "EVAL",
            "EVAL ? 1 k ?",
        ),
        (&[b"SELECT", b"2"], "SELECT", "SELECT 2"),
        (&[b"PING"], "PING", "PING"),
        (&[b"ECHO", b"secret"], "ECHO", "ECHO ?"),
        (&[b"NOSUCH", b"x", b"y"], "NOSUCH", "NOSUCH ? ?"),
        (&[b"SUBSCRIBE", b"a", b"b"], "SUBSCRIBE", "SUBSCRIBE a b"),
        (&[b"PUBLISH", b"ch", b"msg"], "PUBLISH", "PUBLISH ch ?"),
    ];
    for (args, name, text) in cases {
        let c = read_one(&resp(args));
        assert_eq!((c.name.as_str(), c.text.as_str()), (*name, *text));
    }
}

#[test]
fn kinds() {
    let cases: &[(&[&[u8]], Kind)] = &[
        (&[b"SELECT", b"3"], Kind::Select("3".into())),
        (
            &[b"PUBLISH", b"ch", b"hello"],
            Kind::Publish {
                channel: "ch".into(),
                size: 5,
            },
        ),
        (
            &[b"unsubscribe"],
            Kind::Pubsub {
                class: Class::Channel,
                subscribe: false,
                names: 0,
            },
        ),
        (
            &[b"PSUBSCRIBE", b"a*", b"b*"],
            Kind::Pubsub {
                class: Class::Pattern,
                subscribe: true,
                names: 2,
            },
        ),
        (
            &[b"CLIENT", b"REPLY", b"off"],
            Kind::ClientReply(ReplyMode::Off),
        ),
        (&[b"multi"], Kind::Multi),
        (&[b"GET", b"k"], Kind::Plain),
    ];
    for (args, kind) in cases {
        assert_eq!(read_one(&resp(args)).kind, *kind, "{args:?}");
    }
}

#[test]
fn inline_commands() {
    let c = read_one(b"set k  v\r\n");
    assert_eq!((c.name.as_str(), c.text.as_str()), ("SET", "SET k ?"));
    let mut r = CommandReader::new();
    assert!(matches!(
        r.feed(b"\r\n\r\n", SystemTime::UNIX_EPOCH),
        Step::Partial
    ));
    assert!(!r.mid_command());
    assert!(matches!(
        r.feed(b"\x00", SystemTime::UNIX_EPOCH),
        Step::Malformed
    ));
}

#[test]
fn values_are_skipped_not_kept() {
    let big = vec![b'x'; 1 << 20];
    let bytes = resp(&[b"SET", b"k", &big]);
    let mut r = CommandReader::new();
    let mut max = 0;
    let mut got = None;
    for piece in bytes.chunks(1000) {
        if let Step::Command(c, _) = r.feed(piece, SystemTime::UNIX_EPOCH) {
            got = Some(c);
        }
        max = max.max(r.buffered());
    }
    assert_eq!(got.unwrap().text, "SET k ?");
    assert!(max <= 64, "{max}");
}

#[test]
fn long_commands_are_capped() {
    let key = vec![b'k'; 10_000];
    let mut args: Vec<&[u8]> = vec![b"DEL"];
    args.extend(std::iter::repeat_n(key.as_slice(), 200));
    let c = read_one(&resp(&args));
    assert!(c.text.len() <= MAX_QUERY_TEXT_BYTES);
    let c = read_one(&resp(&[&b"MGET"[..]; 100]));
    assert!(c.text.ends_with(" ..."), "{}", c.text);
}

#[test]
fn malformed() {
    for bad in [
        &b"*x\r\n"[..],
        b"*1\r\n:1\r\n",
        b"*1\r\n$-1\r\n",
        b"*99999999999\r\n",
        b"\x16",
    ] {
        let mut r = CommandReader::new();
        assert!(
            matches!(r.feed(bad, SystemTime::UNIX_EPOCH), Step::Malformed),
            "{bad:?}"
        );
    }
}

#[test]
fn a_partial_command_is_known_by_its_name() {
    let mut r = CommandReader::new();
    assert!(r.partial().is_none());
    let _ = r.feed(
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva",
        SystemTime::UNIX_EPOCH,
    );
    assert!(r.mid_command());
    assert_eq!(r.partial().unwrap().text, "SET k ?");
}
