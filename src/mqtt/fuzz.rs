//! Fuzz-style test of [`MqttConnection`]: packets of every kind and noise,
//! split at random, never panic, stay within the caps and keep the Stop
//! contract.

use super::*;
use crate::testkit::{fuzz_connection, Pieces, Rng};

const OUT: &[&[u8]] = &[
    b"\x10\x0f\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x02c1",
    b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1",
    b"\x30\x04\x00\x01tx",
    b"\x32\x06\x00\x01t\x00\x01x",
    b"\x34\x07\x00\x01t\x00\x02\x00x",
    b"\x30\x07\x00\x00\x03\x23\x00\x01x",
    b"\x30\x08\x00\x01t\x03\x23\x00\x01",
    b"\x40\x02\x00\x01",
    b"\x82\x06\x00\x01\x00\x01t\x00",
    b"\xc0\x00",
    b"\xe0\x00",
    b"\x30\xff\xff\xff\x7f",
];

const IN: &[&[u8]] = &[
    b"\x20\x02\x00\x00",
    b"\x30\x04\x00\x01tx",
    b"\x40\x02\x00\x01",
    b"\x40\x03\x00\x01\x87",
    b"\x50\x02\x00\x02",
    b"\x70\x02\x00\x02",
    b"\x90\x03\x00\x01\x02",
    b"\xd0\x00",
    b"\x30\x80\x80\x80\x80\x01",
];

#[test]
fn random_input_never_panics_and_stays_bounded() {
    let mut rng = Rng(0x0ddb_a11c_afe5_eed5);
    let pieces = Pieces {
        outbound: OUT,
        inbound: IN,
        noise: 10,
    };
    let mut reported = 0;
    for _ in 0..3000 {
        let mut conn = MqttConnection::new();
        reported += fuzz_connection(&mut rng, &mut conn, &pieces, 0, |conn| {
            for r in [&conn.out, &conn.inb] {
                assert!(r.kept.len() <= MAX_KEEP_BYTES && r.head.len() <= 5);
                assert!(r.aliases.len() <= MAX_ALIASES);
            }
            assert!(conn.pending.len() <= MAX_IN_FLIGHT);
        });
    }
    assert!(reported > 300, "the fragments reach spans: {reported}");
}
