//! Replays of real nats-py traffic captured against nats-server (see
//! `tests/fixtures/brokers.sh`), at every split.

use super::*;
use crate::testkit::fixture::{replay_every_way, summary};

#[test]
fn nats_py_publish_headers_and_request() {
    let ops = replay_every_way(
        include_str!("../../tests/fixtures/nats/nats_py.txt"),
        &NatsConnection::new,
    );
    let got: Vec<String> = ops
        .iter()
        .map(|op| {
            summary(op)
                .replace(" messaging.system=nats", "")
                .replace("messaging.", "")
                .replace(" client.id=5", "")
        })
        .collect();
    let inbox = "_INBOX.8HOlv52O3qOyL4bfKxmAIj.8HOlv52O3qOyL4bfKxmALm279f";
    let want = [
        "Producer publish lumigo.fx.plain operation.type=send operation.name=publish destination.name=lumigo.fx.plain message.body.size=5".to_owned(),
        "Producer publish lumigo.fx.headers operation.type=send operation.name=publish destination.name=lumigo.fx.headers message.body.size=12".to_owned(),
        "Producer publish lumigo.fx.req operation.type=send operation.name=publish destination.name=lumigo.fx.req message.body.size=4".to_owned(),
        "Consumer process lumigo.fx.plain operation.type=process operation.name=process destination.name=lumigo.fx.plain message.body.size=5".to_owned(),
        "Consumer process lumigo.fx.headers operation.type=process operation.name=process destination.name=lumigo.fx.headers message.body.size=12".to_owned(),
        "Consumer process lumigo.fx.req operation.type=process operation.name=process destination.name=lumigo.fx.req message.body.size=4".to_owned(),
        format!("Producer publish (temporary) operation.type=send operation.name=publish destination.name={inbox} destination.temporary=true message.body.size=4"),
        format!("Consumer process (temporary) operation.type=process operation.name=process destination.name={inbox} destination.temporary=true message.body.size=4"),
    ];
    assert_eq!(got, want);
    // The server's INFO named the client.
    assert!(ops
        .iter()
        .all(|op| op.attributes.contains(&("messaging.client.id", "5".into()))));
}
