//! Replays of real pika traffic captured against RabbitMQ (see
//! `tests/fixtures/brokers.sh`), at every split.

use super::*;
use crate::testkit::fixture::{replay_every_way, summary};

#[test]
fn pika_publishes_gets_and_consumes() {
    let ops = replay_every_way(
        include_str!("../../tests/fixtures/amqp/pika.txt"),
        &AmqpConnection::new,
    );
    let got: Vec<String> = ops
        .iter()
        .map(|op| {
            summary(op)
                .replace(" messaging.system=rabbitmq", "")
                .replace("messaging.", "")
        })
        .collect();
    let q = "destination.name=lumigo.fx.q";
    let rk = "rabbitmq.destination.routing_key";
    let want = [
        format!("Producer publish lumigo.fx.q operation.type=send operation.name=publish {q} message.body.size=9 message.id=m-1 {rk}=lumigo.fx.q"),
        format!("Producer publish amq.topic operation.type=send operation.name=publish destination.name=amq.topic message.body.size=3000 {rk}=fx.key"),
        format!("Producer publish lumigo.fx.q operation.type=send operation.name=publish {q} message.body.size=0 {rk}=lumigo.fx.q"),
        format!("Consumer receive lumigo.fx.q operation.type=receive operation.name=receive {q} message.body.size=9 message.id=m-1 {rk}=lumigo.fx.q rabbitmq.message.delivery_tag=1"),
        format!("Consumer process lumigo.fx.q operation.type=process operation.name=process {q} message.body.size=3000 {rk}=fx.key rabbitmq.message.delivery_tag=2"),
        format!("Consumer process lumigo.fx.q operation.type=process operation.name=process {q} message.body.size=0 {rk}=lumigo.fx.q rabbitmq.message.delivery_tag=3"),
    ];
    assert_eq!(got, want);
}
