//! Fuzz-style test of [`RedisConnection`]: pseudo-random mixtures of RESP
//! fragments and noise, split at random, must never panic, must keep every
//! buffer within its cap and must keep the Stop contract.

use std::time::SystemTime;

use super::tests::resp;
use super::*;
use crate::redis::{MAX_HEAD_BYTES, MAX_IN_FLIGHT, MAX_QUERY_TEXT_BYTES};
use crate::testkit::Rng;

/// Reply pieces that reach deep states, mixed with noise.
const REPLY_FRAGMENTS: &[&[u8]] = &[
    b"+OK\r\n",
    b"+QUEUED\r\n",
    b"+RESET\r\n",
    b"-ERR x\r\n",
    b"-WRONGTYPE y\r\n",
    b":1\r\n",
    b"$3\r\nabc\r\n",
    b"$-1\r\n",
    b"*-1\r\n",
    b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n",
    b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n",
    b">4\r\n$8\r\npmessage\r\n$2\r\na*\r\n$1\r\na\r\n$1\r\nx\r\n",
    b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n",
    b">3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:0\r\n",
    b"%1\r\n+a\r\n:1\r\n",
    b"|1\r\n+a\r\n+b\r\n",
    b"~1\r\n_\r\n",
    b",1.5\r\n#t\r\n(12345\r\n",
    b"!3\r\nERR\r\n",
    b"=7\r\ntxt:abc\r\n",
];

/// Reply pieces that break framing or nest what follows.
const ODD_REPLIES: &[&[u8]] = &[b"$99999999999\r\n", b"*2\r\n", b"\r\n", b"*?\r\n"];

/// Command pieces that break framing or swallow what follows.
const ODD_COMMANDS: &[&[u8]] = &[
    b"*2\r\n$3\r\nGET\r\n$99999999\r\n",
    b"*99\r\n",
    b"$3\r\n",
    b"*0\r\n",
];

fn commands() -> Vec<Vec<u8>> {
    vec![
        resp(&["GET", "k"]),
        resp(&["SET", "k", "v"]),
        resp(&["SELECT", "3"]),
        resp(&["MULTI"]),
        resp(&["EXEC"]),
        resp(&["HELLO", "3"]),
        resp(&["SUBSCRIBE", "a", "b"]),
        resp(&["UNSUBSCRIBE"]),
        resp(&["PSUBSCRIBE", "a*"]),
        resp(&["PUBLISH", "a", "x"]),
        resp(&["CLIENT", "REPLY", "SKIP"]),
        resp(&["CLIENT", "REPLY", "ON"]),
        resp(&["RESET"]),
        resp(&["MONITOR"]),
        b"PING\r\n".to_vec(),
    ]
}

#[test]
fn random_input_never_panics_and_stays_bounded() {
    let commands = commands();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut reported, mut answered, mut consumed) = (0, 0, 0);
    for _ in 0..3000 {
        let mut conn = RedisConnection::new();
        let mut done = Vec::new();
        let mut stopped = false;
        // Operations reported by the time Stop was first returned.
        let mut at_stop = 0;
        let t = SystemTime::UNIX_EPOCH;
        for _ in 0..(1 + rng.below(40)) {
            let outbound = rng.below(3) != 0;
            let mut data = Vec::new();
            for _ in 0..(1 + rng.below(6)) {
                if rng.below(20) == 0 {
                    let max = if rng.below(50) == 0 {
                        3 * MAX_HEAD_BYTES
                    } else {
                        32
                    };
                    let n = rng.below(max);
                    data.extend((0..n).map(|_| rng.next() as u8));
                } else if rng.below(20) == 0 {
                    let odd = if outbound { ODD_COMMANDS } else { ODD_REPLIES };
                    data.extend_from_slice(odd[rng.below(odd.len())]);
                } else if outbound {
                    data.extend_from_slice(&commands[rng.below(commands.len())]);
                } else {
                    data.extend_from_slice(REPLY_FRAGMENTS[rng.below(REPLY_FRAGMENTS.len())]);
                }
            }
            let mut pos = 0;
            while pos < data.len() {
                let n = 1 + rng.below(data.len());
                let end = (pos + n).min(data.len());
                let flow = if outbound {
                    conn.on_outbound(&data[pos..end], t, &mut done)
                } else {
                    conn.on_inbound(&data[pos..end], t, &mut done)
                };
                if stopped {
                    assert_eq!(flow, Flow::Stop);
                    assert_eq!(done.len(), at_stop, "nothing is reported after Stop");
                } else if flow == Flow::Stop {
                    stopped = true;
                    at_stop = done.len();
                }
                pos = end;
            }
            assert!(conn.buffered() <= 2 * MAX_HEAD_BYTES + MAX_IN_FLIGHT * 1024);
            assert!(conn.pending.len() <= MAX_IN_FLIGHT);
            assert!(conn.in_flight() <= MAX_IN_FLIGHT + 1);
        }
        let before = done.len();
        conn.on_close(t, CloseReason::Closed, &mut done);
        if stopped {
            assert_eq!(done.len(), before);
        }
        assert_eq!(conn.buffered(), 0);
        assert_eq!(conn.in_flight(), 0);
        for op in &done {
            assert!(op.name.len() <= 2 * 64 + 1 || op.name.starts_with("publish "));
            for (_, v) in &op.attributes {
                if let crate::span::AttrValue::Str(s) = v {
                    assert!(s.len() <= MAX_QUERY_TEXT_BYTES);
                }
            }
        }
        reported += done.len();
        consumed += done
            .iter()
            .filter(|op| op.kind == crate::span::SpanKind::Consumer)
            .count();
        answered += done
            .iter()
            .filter(|op| op.attributes.iter().all(|(k, _)| *k != "error.type"))
            .count();
    }
    // The input reaches deep states, not only the first command.
    assert!(
        reported > 10_000 && answered > 3000 && consumed > 100,
        "{reported} reported, {answered} answered, {consumed} consumed"
    );
}

#[test]
fn random_bytes_after_a_valid_start_never_panic() {
    const ALPHABET: &[u8] = b"*$:+-%>|_\r\n0123456789?";
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..2000 {
        let mut conn = RedisConnection::new();
        let mut done = Vec::new();
        let t = SystemTime::UNIX_EPOCH;
        let _ = conn.on_outbound(&resp(&["GET", "k"]), t, &mut done);
        for _ in 0..(1 + rng.below(10)) {
            let n = rng.below(64);
            // Bytes from the RESP alphabet are likelier to go deep.
            let data: Vec<u8> = (0..n)
                .map(|_| match rng.below(4) {
                    0 => ALPHABET[rng.below(ALPHABET.len())],
                    _ => rng.next() as u8,
                })
                .collect();
            let _ = crate::redis::detect(&data);
            if rng.below(2) == 0 {
                let _ = conn.on_outbound(&data, t, &mut done);
            } else {
                let _ = conn.on_inbound(&data, t, &mut done);
            }
            assert!(conn.buffered() <= 2 * MAX_HEAD_BYTES + MAX_IN_FLIGHT * 1024);
        }
        conn.on_close(t, CloseReason::Closed, &mut done);
        assert_eq!(conn.in_flight(), 0);
    }
}
