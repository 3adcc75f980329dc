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
        "Consumer process lumigo.fx.plain operation.type=process operation.name=process destination.name=lumigo.fx.plain message.body.size=5".to_owned(),
        "Consumer process lumigo.fx.headers operation.type=process operation.name=process destination.name=lumigo.fx.headers message.body.size=12".to_owned(),
        "Consumer process lumigo.fx.req operation.type=process operation.name=process destination.name=lumigo.fx.req message.body.size=4".to_owned(),
        format!("Producer publish (temporary) operation.type=send operation.name=publish destination.name={inbox} destination.temporary=true message.body.size=4"),
        // The request waited for its reply, which is no JetStream
        // acknowledgement: it ends as sent, the reply is a message.
        "Producer publish lumigo.fx.req operation.type=send operation.name=publish destination.name=lumigo.fx.req message.body.size=4".to_owned(),
        format!("Consumer process (temporary) operation.type=process operation.name=process destination.name={inbox} destination.temporary=true message.body.size=4"),
    ];
    assert_eq!(got, want);
    let req = &ops[6];
    assert_eq!(req.end, req.start, "{}", summary(req));
    // The server's INFO named the client.
    assert!(ops
        .iter()
        .all(|op| op.attributes.contains(&("messaging.client.id", "5".into()))));
}

/// nats-py's JetStream publishes: each waits for its reply; an
/// acknowledgement ends its span (stream and sequence, or the error it
/// names) and makes no span of its own. The JetStream API requests around
/// them (create and delete the stream) are answered by API responses, not
/// acknowledgements: their spans end as sent, their replies are messages.
#[test]
fn nats_py_jetstream_publish_acknowledgements() {
    let ops = replay_every_way(
        include_str!("../../tests/fixtures/nats/nats_py_jetstream.txt"),
        &NatsConnection::new,
    );
    let got: Vec<String> = ops
        .iter()
        .map(|op| {
            summary(op)
                .replace(" messaging.system=nats", "")
                .replace(
                    " messaging.operation.type=send messaging.operation.name=publish",
                    "",
                )
                .replace(" messaging.client.id=29", "")
                .replace("messaging.", "")
        })
        .collect();
    let want = [
        "Producer publish $JS.API.STREAM.CREATE.LUMIGO_FX destination.name=$JS.API.STREAM.CREATE.LUMIGO_FX message.body.size=294",
        "Consumer process (temporary) operation.type=process operation.name=process destination.name=_INBOX.R9zLlHuGf0Fg2c4RaJWaG8.R9zLlHuGf0Fg2c4RaJWaL4e979 destination.temporary=true message.body.size=659",
        "Producer publish lumigo.fxjs.a destination.name=lumigo.fxjs.a message.body.size=3 nats.jetstream.stream=LUMIGO_FX nats.jetstream.sequence=1",
        "Producer publish lumigo.fxjs.b destination.name=lumigo.fxjs.b message.body.size=3 nats.jetstream.stream=LUMIGO_FX nats.jetstream.sequence=2",
        "Producer publish lumigo.fxjs.a [error: expected stream does not match] destination.name=lumigo.fxjs.a message.body.size=5 error.type=400",
        "Producer publish lumigo.nostream.x [error: no responders] destination.name=lumigo.nostream.x message.body.size=4 error.type=503",
        "Producer publish $JS.API.STREAM.DELETE.LUMIGO_FX destination.name=$JS.API.STREAM.DELETE.LUMIGO_FX message.body.size=0",
        "Consumer process (temporary) operation.type=process operation.name=process destination.name=_INBOX.R9zLlHuGf0Fg2c4RaJWaG8.R9zLlHuGf0Fg2c4RaJWajk7ce9 destination.temporary=true message.body.size=73",
    ];
    assert_eq!(got, want);
    // Acknowledged publishes end with their reply, the others as sent.
    for op in &ops {
        let acked = op
            .attributes
            .iter()
            .any(|(k, _)| *k == "messaging.nats.jetstream.stream" || *k == "error.type");
        assert_eq!(op.end > op.start, acked, "{}", summary(op));
    }
}
