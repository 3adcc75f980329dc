//! Fuzz-style test of [`NatsConnection`]: fragments of the protocol and
//! noise, split at random, never panic, stay within the line cap and keep
//! the Stop contract.

use super::*;
use crate::testkit::{at, fuzz_connection, Pieces, Rng};

const FRAGMENTS: &[&[u8]] = &[
    b"INFO {\"client_id\":7,\"headers\":true}\r\n",
    b"PUB a 5\r\nhello\r\n",
    b"PUB a _INBOX.x 0\r\n\r\n",
    b"HPUB a 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
    b"MSG a 1 3\r\nabc\r\n",
    b"HMSG a 1 r 12 12\r\nNATS/1.0\r\n\r\n\r\n",
    b"SUB a 1\r\n",
    b"CONNECT {\"headers\":true}\r\n",
    b"PING\r\n",
    b"PONG\r\n",
    b"+OK\r\n",
    b"-ERR 'x'\r\n",
    b"PUB a 99999999999\r\n",
    b"\r\n",
    b"\n",
    b"HPUB a 9 3\r\n",
    b"MSG _INBOX.x 1 22\r\n{\"stream\":\"S\",\"seq\":1}\r\n",
    b"HMSG _INBOX.x 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n",
];

#[test]
fn random_input_never_panics_and_stays_bounded() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let pieces = Pieces {
        outbound: FRAGMENTS,
        inbound: FRAGMENTS,
        noise: 8,
    };
    let mut reported = 0;
    for _ in 0..3000 {
        let mut conn = NatsConnection::new();
        reported += fuzz_connection(&mut rng, &mut conn, &pieces, 0, |conn| {
            assert!(conn.out.line.len() <= MAX_LINE_BYTES);
            assert!(conn.inb.line.len() <= MAX_LINE_BYTES);
            assert!(conn.inb.headers.len() <= MAX_HEADER_BYTES);
            assert!(conn.inb.body.len() <= MAX_ACK_BYTES);
            assert!(conn.awaiting.len() <= MAX_AWAITING);
        });
    }
    assert!(reported > 300, "the fragments reach spans: {reported}");
}

#[test]
fn an_endless_line_stops_at_the_cap() {
    let mut conn = NatsConnection::new();
    let mut done = Vec::new();
    let chunk = vec![b'a'; 4096];
    let mut flow = Flow::Continue;
    for _ in 0..=(MAX_LINE_BYTES / chunk.len()) {
        flow = conn.on_outbound(&chunk, at(0), &mut done);
    }
    assert_eq!(flow, Flow::Stop);
    assert!(conn.out.line.len() <= MAX_LINE_BYTES);
}
