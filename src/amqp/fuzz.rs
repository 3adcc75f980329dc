//! Fuzz-style test of [`AmqpConnection`]: frames of every kind and noise,
//! split at random, never panic, stay within the caps and keep the Stop
//! contract.

use super::tests::{frame, header, publish};
use super::*;
use crate::testkit::{at, fuzz_connection, Pieces, Rng};

fn inbound() -> Vec<Vec<u8>> {
    let mut deliver = vec![0, 60, 0, 60, 1, b't'];
    deliver.extend_from_slice(&9u64.to_be_bytes());
    deliver.extend_from_slice(&[0, 1, b'x', 1, b'k']);
    let mut get_ok = vec![0, 60, 0, 71];
    get_ok.extend_from_slice(&1u64.to_be_bytes());
    get_ok.extend_from_slice(&[0, 0, 1, b'q', 0, 0, 0, 0]);
    let whole = [frame(1, 1, &deliver), header(3, None), frame(3, 1, b"abc")].concat();
    vec![
        whole.clone(),
        whole,
        frame(1, 1, &deliver),
        frame(1, 1, &get_ok),
        frame(1, 1, &[0, 60, 0, 21, 1, b't']),
        frame(1, 1, &[0, 60, 0, 50, 0, 1, 0, 0, 0]),
        frame(1, 1, &[0, 20, 0, 40]),
        header(3, Some("m")),
        header(0, None),
        frame(3, 1, b"abc"),
        frame(8, 0, b""),
        frame(9, 0, b""),
    ]
}

fn outbound() -> Vec<Vec<u8>> {
    let whole = [publish("", "q"), header(2, Some("m")), frame(3, 1, b"ab")].concat();
    vec![
        whole.clone(),
        whole,
        publish("", "q"),
        publish("ex", "k"),
        frame(1, 1, &[0, 60, 0, 20, 0, 0, 1, b'q', 1, b't', 0]),
        frame(1, 1, &[0, 60, 0, 70, 0, 0, 1, b'q', 0]),
        header(3, Some("m")),
        header(2, None),
        frame(3, 1, b"abc"),
        frame(3, 1, b""),
        frame(1, 7, &[0, 60]),
    ]
}

#[test]
fn random_input_never_panics_and_stays_bounded() {
    let (ins, outs) = (inbound(), outbound());
    let ins: Vec<&[u8]> = ins.iter().map(Vec::as_slice).collect();
    let outs: Vec<&[u8]> = outs.iter().map(Vec::as_slice).collect();
    let pieces = Pieces {
        outbound: &outs,
        inbound: &ins,
        noise: 12,
    };
    let mut rng = Rng(0xfeed_f00d_dead_beef);
    let mut reported = 0;
    for _ in 0..3000 {
        let mut conn = AmqpConnection::new();
        let mut done = Vec::new();
        let _ = conn.on_outbound(PROTOCOL_HEADER, at(0), &mut done);
        reported += done.len();
        reported += fuzz_connection(&mut rng, &mut conn, &pieces, 1, |conn| {
            for r in [&conn.out, &conn.inb] {
                assert!(r.kept.len() <= MAX_KEEP_BYTES && r.head.len() <= 7);
            }
            assert!(conn.channels.len() <= MAX_CHANNELS);
            assert!(conn.consumers.len() <= MAX_CONSUMERS);
        });
    }
    assert!(reported > 300, "the frames reach spans: {reported}");
}
