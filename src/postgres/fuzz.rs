//! Fuzz-style test of [`PgConnection`]: pseudo-random mixtures of protocol
//! messages, cut messages and noise, split and interleaved at random, must
//! never panic, must keep every buffer within its cap, and must report the
//! same operations however the bytes are split.

use std::time::SystemTime;

use super::harness::{auth_ok, cat, complete, error, msg, query, ready, startup, summary};
use super::*;
use crate::testkit::Rng;

/// Client messages, whole, valid or nearly.
fn client_pieces() -> Vec<Vec<u8>> {
    vec![
        query("SELECT * FROM t WHERE a = 'x'"),
        query("INSERT INTO t VALUES (1); SELECT 2"),
        msg(b'P', b"\x00SELECT $1\x00\x00\x00"),
        msg(b'P', b"s1\x00UPDATE t SET a = 1\x00\x00\x00"),
        msg(b'B', b"\x00\x00\x00\x00\x00\x00\x00\x00"),
        msg(b'B', b"p\x00s1\x00\x00\x00\x00\x00\x00\x00"),
        msg(b'D', b"P\x00"),
        msg(b'E', b"\x00\x00\x00\x00\x00"),
        msg(b'E', b"p\x00\x00\x00\x00\x01"),
        msg(b'C', b"Ss1\x00"),
        msg(b'S', b""),
        msg(b'H', b""),
        msg(b'd', b"1\t2\n"),
        msg(b'c', b""),
        msg(b'F', b"\x00\x00\x00\x01"),
        msg(b'p', b"secret\x00"),
        msg(b'X', b""),
        b"\x00\x00\x00\x08\x04\xd2\x16\x2f".to_vec(),
        startup(&[("user", "u"), ("database", "d")]),
        // A huge declared length: skipped as it streams.
        b"d\x7f\xff\xff\xff".to_vec(),
    ]
}

/// Server messages, whole, valid or nearly.
fn server_pieces() -> Vec<Vec<u8>> {
    vec![
        auth_ok(),
        ready(),
        complete("SELECT 1"),
        complete("INSERT 0 3"),
        complete(""),
        error("42P01", "missing"),
        msg(b'E', b"\x00"),
        msg(b'1', b""),
        msg(b'2', b""),
        msg(b'3', b""),
        msg(b'n', b""),
        msg(b't', b"\x00\x00"),
        msg(b'T', b"\x00\x00"),
        msg(b'D', b"\x00\x01\x00\x00\x00\x01x"),
        msg(b'I', b""),
        msg(b's', b""),
        msg(b'N', b"Mhi\x00\x00"),
        msg(b'A', b"\x00\x00\x00\x01c\x00\x00"),
        msg(b'G', b"\x00\x00\x00"),
        msg(b'V', b"\xff\xff\xff\xff"),
        b"N".to_vec(),
        b"S".to_vec(),
        b"\x16\x03\x03\x00\x02ab".to_vec(),
        b"D\x00\x10\x00\x00".to_vec(),
    ]
}

/// A request and its reply, well-formed.
fn exchange(rng: &mut Rng) -> Vec<(bool, Vec<u8>)> {
    let row = || msg(b'D', b"\x00\x01\x00\x00\x00\x01x");
    let shape = || msg(b'T', b"\x00\x00");
    let fails = rng.below(4) == 0;
    match rng.below(4) {
        0 => vec![
            (true, query("SELECT * FROM t WHERE a = 'x'")),
            (
                false,
                if fails {
                    cat(&[error("42P01", "missing"), ready()])
                } else {
                    cat(&[shape(), row(), row(), complete("SELECT 2"), ready()])
                },
            ),
        ],
        1 => vec![
            (
                true,
                cat(&[
                    msg(b'P', b"\x00SELECT $1\x00\x00\x00"),
                    msg(b'B', b"\x00\x00\x00\x00\x00\x00\x00\x00"),
                    msg(b'D', b"P\x00"),
                    msg(b'E', b"\x00\x00\x00\x00\x00"),
                    msg(b'S', b""),
                ]),
            ),
            (
                false,
                if fails {
                    cat(&[error("42P01", "missing"), ready()])
                } else {
                    cat(&[
                        msg(b'1', b""),
                        msg(b'2', b""),
                        shape(),
                        row(),
                        complete("SELECT 1"),
                        ready(),
                    ])
                },
            ),
        ],
        2 => vec![
            (
                true,
                cat(&[
                    msg(b'P', b"s1\x00UPDATE t SET a = 1\x00\x00\x00"),
                    msg(b'S', b""),
                ]),
            ),
            (false, cat(&[msg(b'1', b""), ready()])),
            (
                true,
                cat(&[
                    msg(b'B', b"p\x00s1\x00\x00\x00\x00\x00\x00\x00"),
                    msg(b'E', b"p\x00\x00\x00\x00\x00"),
                    msg(b'S', b""),
                ]),
            ),
            (
                false,
                if fails {
                    cat(&[msg(b'2', b""), error("42P01", "missing"), ready()])
                } else {
                    cat(&[msg(b'2', b""), complete("UPDATE 4"), ready()])
                },
            ),
        ],
        _ => vec![
            (true, query("COPY t FROM STDIN")),
            (false, msg(b'G', b"\x00\x00\x00")),
            (true, cat(&[msg(b'd', b"1\t2\n"), msg(b'c', b"")])),
            (
                false,
                cat(&[complete("COPY 1"), msg(b'N', b"Mhi\x00\x00"), ready()]),
            ),
        ],
    }
}

/// Builds a random conversation: mostly well-formed exchanges, sometimes
/// cut or corrupted, with stray messages and noise. Each element is
/// (outbound?, bytes).
fn conversation(rng: &mut Rng) -> Vec<(bool, Vec<u8>)> {
    let (client, server) = (client_pieces(), server_pieces());
    let mut events = Vec::new();
    if rng.below(5) != 0 {
        events.push((true, startup(&[("user", "u")])));
        events.push((false, auth_ok()));
    }
    for _ in 0..(1 + rng.below(20)) {
        let mut batch = if rng.below(4) != 0 {
            exchange(rng)
        } else {
            let outbound = rng.below(2) == 0;
            let pieces = if outbound { &client } else { &server };
            vec![(outbound, pieces[rng.below(pieces.len())].clone())]
        };
        for (_, p) in &mut batch {
            match rng.below(40) {
                0 => p.truncate(rng.below(p.len() + 1)),
                1 => p.extend((0..rng.below(40)).map(|_| rng.next() as u8)),
                2 if !p.is_empty() => {
                    let i = rng.below(p.len());
                    p[i] = rng.next() as u8;
                }
                _ => {}
            }
        }
        events.extend(batch);
    }
    events
}

/// Feeds a conversation at random splits; returns the operations' summaries.
fn replay(events: &[(bool, Vec<u8>)], rng: &mut Rng, max_piece: usize) -> Vec<String> {
    let mut conn = PgConnection::new();
    let mut done = Vec::new();
    let mut stopped = false;
    let t = SystemTime::UNIX_EPOCH;
    for (outbound, data) in events {
        let mut pos = 0;
        while pos < data.len() {
            let end = (pos + 1 + rng.below(max_piece)).min(data.len());
            let flow = if *outbound {
                conn.on_outbound(&data[pos..end], t, &mut done)
            } else {
                conn.on_inbound(&data[pos..end], t, &mut done)
            };
            if stopped {
                assert_eq!(flow, Flow::Stop, "Stop is sticky");
            }
            stopped |= flow == Flow::Stop;
            pos = end;
            assert!(conn.buffered() <= 2 * MAX_MESSAGE_BYTES);
            assert!(conn.pending_len() <= MAX_PENDING);
        }
    }
    let before = done.len();
    conn.on_close(t, CloseReason::Closed, &mut done);
    if stopped {
        assert_eq!(done.len(), before, "nothing after Stop");
    }
    assert_eq!(conn.in_flight(), 0);
    assert_eq!(conn.buffered(), 0);
    done.iter().map(summary).collect()
}

#[test]
fn random_conversations_never_panic_and_split_the_same() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut reported, mut errors, mut clean) = (0, 0, 0);
    for _ in 0..3000 {
        let events = conversation(&mut rng);
        let whole = replay(&events, &mut rng, usize::MAX / 2);
        let split = replay(&events, &mut rng, 7);
        assert_eq!(whole, split, "{events:?}");
        reported += whole.len();
        errors += whole.iter().filter(|s| s.contains("type=42P01")).count();
        clean += whole.iter().filter(|s| s.contains("[-]")).count();
    }
    // The input reaches deep states, not only the framing checks.
    assert!(
        reported > 5000 && errors > 500 && clean > 2500,
        "{reported} reported, {errors} SQL errors, {clean} clean"
    );
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for round in 0..2000 {
        let mut conn = PgConnection::new();
        let mut done = Vec::new();
        let t = SystemTime::UNIX_EPOCH;
        if round % 2 == 0 {
            let _ = conn.on_outbound(&startup(&[("user", "u")]), t, &mut done);
        }
        for _ in 0..rng.below(20) {
            let n = rng.below(64);
            let data: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            let _ = if rng.below(2) == 0 {
                conn.on_outbound(&data, t, &mut done)
            } else {
                conn.on_inbound(&data, t, &mut done)
            };
            assert!(conn.buffered() <= 2 * MAX_MESSAGE_BYTES);
        }
        conn.on_close(t, CloseReason::ProcessExit, &mut done);
        assert_eq!(conn.in_flight(), 0);
    }
}
