//! What the message-broker parsers (AMQP, MQTT, NATS) share: one message
//! sent or received, turned into a PRODUCER or CONSUMER [`Operation`] with
//! the messaging semantic conventions' attributes. Bodies are only counted.

use std::time::SystemTime;

use crate::protocol::Operation;
use crate::span::{AttrValue, SpanKind, SpanStatus};

/// Most bytes kept of a destination, routing key, message id or client id.
pub const MAX_NAME_BYTES: usize = 256;

/// One message the app published or received.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Message {
    /// `messaging.system`: `rabbitmq`, `mqtt`, `nats`.
    pub system: &'static str,
    /// Published (PRODUCER, `send`) or received (CONSUMER).
    pub sent: bool,
    /// For a received message: pulled by the app (`receive`) rather than
    /// pushed to it (`process`).
    pub pulled: bool,
    pub destination: String,
    /// A reply inbox or other generated name: the span name says
    /// `(temporary)` instead of it.
    pub temporary: bool,
    pub body_size: Option<u64>,
    pub message_id: Option<String>,
    pub client_id: Option<String>,
    /// The protocol's own attributes (`messaging.rabbitmq.*`).
    pub extra: Vec<(&'static str, AttrValue)>,
    pub start: SystemTime,
    pub end: SystemTime,
    /// `error.type` and a description, when it failed.
    pub error: Option<(String, String)>,
    /// The `traceparent` and `tracestate` the message's headers carried.
    pub carried: Option<(String, Option<String>)>,
}

impl Message {
    pub(crate) fn new(
        system: &'static str,
        sent: bool,
        destination: String,
        now: SystemTime,
    ) -> Message {
        Message {
            system,
            sent,
            pulled: false,
            destination,
            temporary: false,
            body_size: None,
            message_id: None,
            client_id: None,
            extra: Vec::new(),
            start: now,
            end: now,
            error: None,
            carried: None,
        }
    }

    /// The span: `publish <destination>` (PRODUCER), `process
    /// <destination>` or `receive <destination>` (CONSUMER).
    pub(crate) fn into_operation(self) -> Operation {
        let (op_type, op_name) = match (self.sent, self.pulled) {
            (true, _) => ("send", "publish"),
            (false, true) => ("receive", "receive"),
            (false, false) => ("process", "process"),
        };
        let name = if self.temporary {
            format!("{op_name} (temporary)")
        } else if self.destination.is_empty() {
            op_name.to_owned()
        } else {
            format!("{op_name} {}", self.destination)
        };
        let mut attributes = vec![
            ("messaging.system", AttrValue::from(self.system)),
            ("messaging.operation.type", op_type.into()),
            ("messaging.operation.name", op_name.into()),
            ("messaging.destination.name", self.destination.into()),
        ];
        if self.temporary {
            attributes.push(("messaging.destination.temporary", true.into()));
        }
        if let Some(n) = self.body_size {
            attributes.push(("messaging.message.body.size", n.into()));
        }
        if let Some(id) = self.message_id {
            attributes.push(("messaging.message.id", id.into()));
        }
        if let Some(id) = self.client_id {
            attributes.push(("messaging.client.id", id.into()));
        }
        attributes.extend(self.extra);
        let status = match self.error {
            Some((kind, description)) => {
                attributes.push(("error.type", kind.into()));
                SpanStatus::Error(description)
            }
            None => SpanStatus::Unset,
        };
        Operation {
            name,
            kind: if self.sent {
                SpanKind::Producer
            } else {
                SpanKind::Consumer
            },
            start: self.start,
            end: self.end,
            status,
            attributes,
            carried: self.carried,
        }
    }
}

/// Bytes as a string, lossily, at most [`MAX_NAME_BYTES`] of them.
pub(crate) fn name(bytes: &[u8]) -> String {
    crate::redis::capped_string(bytes, MAX_NAME_BYTES)
}

/// Most bytes of a carried `traceparent` or `tracestate` value kept.
pub const MAX_CONTEXT_BYTES: usize = 512;

/// Notes a message header: `traceparent` and `tracestate` (names compared
/// without case) become the message's carried context.
pub(crate) fn carried_header(
    carried: &mut Option<(String, Option<String>)>,
    key: &[u8],
    value: &[u8],
) {
    if value.len() > MAX_CONTEXT_BYTES {
        return;
    }
    let value = || String::from_utf8_lossy(value).trim().to_owned();
    if key.eq_ignore_ascii_case(b"traceparent") {
        let state = carried.take().and_then(|(_, s)| s);
        *carried = Some((value(), state));
    } else if key.eq_ignore_ascii_case(b"tracestate") {
        match carried {
            Some((_, s)) => *s = Some(value()),
            None => *carried = Some((String::new(), Some(value()))),
        }
    }
}
