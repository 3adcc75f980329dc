//! Fuzz-style tests of [`MysqlConnection`]: pseudo-random mixtures of
//! protocol fragments and noise, and randomly damaged real captures, split
//! at random, must never panic and must keep every buffer within its caps.

use std::time::SystemTime;

use super::tests::{command, greeting, login, pkt, COLUMN, EOF, OK, OK_FE};
use super::*;
use crate::testkit::Rng;

/// Client packets that reach deep states.
fn client_fragment(rng: &mut Rng) -> Vec<u8> {
    let id = (rng.below(4) as u32).to_le_bytes();
    match rng.below(24) {
        0..=3 => command(0x03, b"SELECT a FROM t WHERE b = 'x'"),
        4 | 5 => command(0x16, b"SELECT ? FROM t"),
        6..=8 => command(0x17, &id),
        9 => command(0x19, &id),
        10 => command(0x02, b"db"),
        11 => command(0x11, b"u\x00\x00other\x00"),
        12 | 13 => command(0x0e, b""),
        14 => command(0x1c, &id),
        15 => command(0xfa, &[0xff; 4]),
        16 => command(0x04, b"t\x00"),
        17 => command(0x1a, &id),
        // Rarer: what stops tracing (an upload's end out of place, an
        // unknown or replication command, a packet out of sequence).
        18 => pkt(rng.below(4) as u8, b""),
        19 => command(rng.next() as u8, b""),
        20 => pkt(rng.below(3) as u8, b"\x03SELECT 1"),
        _ => command(0x03, b"INSERT INTO t VALUES (1)"),
    }
}

/// Server packets: pieces of every response shape.
fn server_fragment(rng: &mut Rng) -> Vec<u8> {
    let seq = 1 + rng.below(6) as u8;
    let prepare_ok = [
        0,
        rng.below(4) as u8,
        0,
        0,
        0,
        rng.below(3) as u8,
        0,
        rng.below(3) as u8,
        0,
        0,
        0,
        0,
    ];
    match rng.below(16) {
        0 | 1 => pkt(seq, OK),
        2 => pkt(seq, b"\x00\x00\x00\x0a\x00\x00\x00"), // more results
        3 => pkt(seq, EOF),
        4 => pkt(seq, b"\xfe\x00\x00\x4a\x00"), // cursor, more results
        5 => pkt(seq, OK_FE),
        6 => pkt(seq, b"\xff\x7a\x04#42S02nope"),
        7 => pkt(seq, b"\xff\xff\xff\x01\x01"),
        8 => pkt(seq, &[1 + rng.below(3) as u8, rng.below(2) as u8]),
        9 | 10 => pkt(seq, COLUMN),
        11 => pkt(seq, b"\x011\x03abc"),
        12 => pkt(seq, b"\xfb/f"),
        13 => pkt(seq, &prepare_ok),
        14 => pkt(seq, b"\x00\x00\x00\x02\x40\x00\x00\x00\x07\x01\x05\x04test"),
        _ => pkt(seq, b"\xfemysql_native_password\x00x\x00"),
    }
}

/// Noise: random bytes, sometimes a header announcing a large packet.
fn noise(rng: &mut Rng) -> Vec<u8> {
    let n = if rng.below(40) == 0 {
        70_000
    } else {
        rng.below(24)
    };
    let mut v: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
    if rng.below(3) == 0 {
        let len = rng.below(3 * MAX_QUERY_BYTES);
        v.splice(0..0, [len as u8, (len >> 8) as u8, (len >> 16) as u8, 0]);
    }
    v
}

/// Feeds `data` in random pieces; returns whether any call said Stop.
fn feed(
    conn: &mut MysqlConnection,
    rng: &mut Rng,
    data: &[u8],
    out: bool,
    done: &mut Vec<Operation>,
) -> bool {
    let t = SystemTime::UNIX_EPOCH;
    let mut stopped = false;
    for piece in data.chunks(1 + rng.below(40)) {
        let flow = if out {
            conn.on_outbound(piece, t, done)
        } else {
            conn.on_inbound(piece, t, done)
        };
        stopped |= flow == Flow::Stop;
        assert!(conn.buffered() <= 2 * (2048 + 256 + MAX_QUERY_BYTES) + MAX_STATEMENT_BYTES);
        assert!(conn.in_flight() <= MAX_IN_FLIGHT);
    }
    stopped
}

fn check_ops(ops: &[Operation]) {
    for op in ops {
        assert!(op.name.len() <= 2 * 256 + 1 || op.name == "mysql" || op.name == "mariadb");
        for (_, v) in &op.attributes {
            if let crate::span::AttrValue::Str(s) = v {
                assert!(s.len() <= MAX_QUERY_BYTES);
            }
        }
    }
}

#[test]
fn random_input_never_panics_and_stays_bounded() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut reported, mut answered) = (0, 0);
    for _ in 0..3000 {
        let mut conn = MysqlConnection::new();
        let mut done = Vec::new();
        let mut stopped = false;
        // Most rounds get through the handshake, to reach deep states.
        if rng.below(5) != 0 {
            let caps = (rng.next() as u32) & !0x20 & !(1 << 26);
            stopped |= feed(
                &mut conn,
                &mut rng,
                &greeting("5.5.5-10.11-MariaDB", 0xffff_ffdf, 0x1d),
                false,
                &mut done,
            );
            stopped |= feed(
                &mut conn,
                &mut rng,
                &login(caps & !(1 << 11), Some("test")),
                true,
                &mut done,
            );
            stopped |= feed(&mut conn, &mut rng, &pkt(2, OK), false, &mut done);
        }
        for _ in 0..(1 + rng.below(40)) {
            let out = rng.below(2) == 0;
            let mut data = Vec::new();
            for _ in 0..(1 + rng.below(4)) {
                let piece = match (rng.below(16), out) {
                    (0, _) => noise(&mut rng),
                    (_, true) => client_fragment(&mut rng),
                    (_, false) => server_fragment(&mut rng),
                };
                data.extend(piece);
            }
            let before = done.len();
            let now_stopped = feed(&mut conn, &mut rng, &data, out, &mut done);
            if stopped && !data.is_empty() {
                assert!(now_stopped, "Stop is sticky");
                assert_eq!(done.len(), before, "nothing after Stop");
            }
            stopped |= now_stopped;
        }
        let before = done.len();
        conn.on_close(SystemTime::UNIX_EPOCH, CloseReason::Closed, &mut done);
        if stopped {
            assert_eq!(done.len(), before);
        }
        assert_eq!(conn.in_flight(), 0);
        assert_eq!(conn.buffered(), 0);
        check_ops(&done);
        reported += done.len();
        answered += done
            .iter()
            .filter(|op| op.attributes.iter().all(|(k, _)| *k != "error.type"))
            .count();
    }
    // The input reaches deep states, not only the handshake.
    assert!(
        reported > 3000 && answered > 1000,
        "{reported} reported, {answered} answered"
    );
}

#[test]
fn damaged_captures_never_panic() {
    let captures = [
        include_str!("../../tests/fixtures/mysql/cli_queries.txt"),
        include_str!("../../tests/fixtures/mysql/pymysql_queries.txt"),
        include_str!("../../tests/fixtures/mysql/pymysql_infile.txt"),
        include_str!("../../tests/fixtures/mysql/connector_prepared.txt"),
        include_str!("../../tests/fixtures/mysql/node_mariadb_prepared.txt"),
        include_str!("../../tests/fixtures/mysql/node_mysql2_change_user.txt"),
    ];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut reported = 0;
    for round in 0..600 {
        let capture = captures[round % captures.len()];
        let mut chunks: Vec<(bool, Vec<u8>)> = capture
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .map(|(dir, h)| {
                let bytes = (0..h.len() / 2)
                    .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap_or(0))
                    .collect();
                (dir == ">", bytes)
            })
            .collect();
        // Damage: flip bytes, drop or repeat chunks, cut one short.
        for _ in 0..(1 + rng.below(4)) {
            let i = rng.below(chunks.len());
            match rng.below(4) {
                0 => {
                    let c = &mut chunks[i].1;
                    if !c.is_empty() {
                        let j = rng.below(c.len());
                        c[j] ^= 1 << rng.below(8);
                    }
                }
                1 => drop(chunks.remove(i)),
                2 => chunks.insert(i, chunks[i].clone()),
                _ => {
                    let n = rng.below(chunks[i].1.len() + 1);
                    chunks[i].1.truncate(n);
                }
            }
        }
        let mut conn = MysqlConnection::new();
        let mut done = Vec::new();
        for (out, bytes) in &chunks {
            feed(&mut conn, &mut rng, bytes, *out, &mut done);
        }
        conn.on_close(SystemTime::UNIX_EPOCH, CloseReason::PeerClosed, &mut done);
        assert_eq!(conn.in_flight(), 0);
        check_ops(&done);
        reported += done.len();
    }
    assert!(reported > 1500, "{reported} reported");
}
