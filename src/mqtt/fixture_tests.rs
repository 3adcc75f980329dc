//! Replays of real paho-mqtt traffic captured against Mosquitto (see
//! `tests/fixtures/brokers.sh`), at every split.

use super::*;
use crate::testkit::fixture::{replay_every_way, summary};

/// The spans paho-mqtt's run makes, in order: each QoS 1 and 2 publish
/// ends at its acknowledgement, after the broker already delivered it back.
fn want(version: u8) -> Vec<String> {
    let span = |kind: &str, qos: u8| {
        let (k, op, ty) = match kind {
            "send" => ("Producer", "publish", "send"),
            _ => ("Consumer", "process", "process"),
        };
        format!(
            "{k} {op} lumigo/fx/q{qos} messaging.system=mqtt messaging.operation.type={ty} \
             messaging.operation.name={op} messaging.destination.name=lumigo/fx/q{qos} \
             messaging.message.body.size=9 messaging.client.id=lumigo-fx-{version}"
        )
    };
    vec![
        span("send", 0),
        span("process", 0),
        span("process", 1),
        span("send", 1),
        span("process", 2),
        span("send", 2),
    ]
}

#[test]
fn paho_v5_publishes_at_each_qos_and_receives_them() {
    let ops = replay_every_way(
        include_str!("../../tests/fixtures/mqtt/paho_v5.txt"),
        &MqttConnection::new,
    );
    assert_eq!(ops.iter().map(summary).collect::<Vec<_>>(), want(5));
    // QoS 1 and 2 publishes last until their acknowledgement.
    assert!(ops[3].end > ops[3].start && ops[5].end > ops[5].start);
}

#[test]
fn paho_v311_publishes_at_each_qos_and_receives_them() {
    let ops = replay_every_way(
        include_str!("../../tests/fixtures/mqtt/paho_v311.txt"),
        &MqttConnection::new,
    );
    assert_eq!(ops.iter().map(summary).collect::<Vec<_>>(), want(4));
}
