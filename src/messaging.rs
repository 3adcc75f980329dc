//! What the message-broker parsers (AMQP, MQTT, NATS) share: one message
//! sent or received, turned into a PRODUCER or CONSUMER [`Operation`] with
//! the messaging semantic conventions' attributes. Bodies are only counted.

use std::collections::VecDeque;
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
    let value = || {
        // Each invalid byte becomes a three-byte U+FFFD: cut again.
        let v = String::from_utf8_lossy(value);
        crate::config::cut_str(v.trim(), MAX_CONTEXT_BYTES).to_owned()
    };
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

/// A W3C `traceparent` the app put in a message's payload itself (the
/// pattern of a protocol without headers: a JSON envelope with a
/// `"traceparent": "00-…"` field, or `traceparent=00-…` text): the first
/// valid one after a `traceparent` name (without case), in `payload`'s
/// first bytes.
pub(crate) fn payload_traceparent(payload: &[u8]) -> Option<(String, Option<String>)> {
    const NAME: &[u8] = b"traceparent";
    const LEN: usize = 55;
    let mut from = 0;
    while let Some(i) = payload
        .get(from..)?
        .windows(NAME.len())
        .position(|w| w.eq_ignore_ascii_case(NAME))
    {
        let after = from + i + NAME.len();
        let gap = payload[after..]
            .iter()
            .take(8)
            .take_while(|b| matches!(b, b'"' | b'\'' | b':' | b'=' | b' ' | b'\t'))
            .count();
        if let Some(value) = payload.get(after + gap..after + gap + LEN) {
            if let Ok(text) = std::str::from_utf8(value) {
                if crate::propagation::parse_traceparent(text).is_some() {
                    return Some((text.to_owned(), None));
                }
            }
        }
        from = after;
    }
    None
}

/// Most outbound messages whose injected context waits to be reported.
const MAX_STAMPS: usize = 1024;

/// The contexts injected into outbound messages not yet reported, by the
/// message's number: the parser hands each to its PRODUCER operation.
#[derive(Debug, Default)]
pub(crate) struct Stamps {
    /// Outbound messages seen so far (the next one's number).
    pub next: u64,
    waiting: VecDeque<(u64, String)>,
}

impl Stamps {
    pub(crate) fn put(&mut self, ordinal: u64, traceparent: String) {
        self.waiting.retain(|(o, _)| *o != ordinal);
        if self.waiting.len() >= MAX_STAMPS {
            self.waiting.pop_front();
        }
        let i = self.waiting.partition_point(|(o, _)| *o < ordinal);
        self.waiting.insert(i, (ordinal, traceparent));
    }

    /// A new outbound message: its number.
    pub(crate) fn next_message(&mut self) -> u64 {
        self.next += 1;
        self.next - 1
    }

    /// The context injected into message `ordinal`, if any, as its
    /// operation's `carried`.
    pub(crate) fn take(&mut self, ordinal: u64) -> Option<(String, Option<String>)> {
        let i = self.waiting.iter().position(|(o, _)| *o == ordinal)?;
        self.waiting.remove(i).map(|(_, tp)| (tp, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found with `fuzz/` (target nats, a hand-made input): a carried
    /// value of invalid UTF-8 within the byte cap came out up to three
    /// times the cap once converted (each byte a three-byte U+FFFD).
    #[test]
    fn a_carried_value_stays_within_the_cap() {
        let mut carried = None;
        carried_header(&mut carried, b"traceparent", &[0xff; MAX_CONTEXT_BYTES]);
        carried_header(&mut carried, b"TraceState", &[0xfe; 300]);
        let (parent, state) = carried.expect("both kept");
        assert!(parent.len() <= MAX_CONTEXT_BYTES, "{} bytes", parent.len());
        assert!(state.is_some_and(|s| s.len() <= MAX_CONTEXT_BYTES));
        // Too long on the wire: not kept at all.
        let mut none = None;
        carried_header(&mut none, b"traceparent", &[b'a'; MAX_CONTEXT_BYTES + 1]);
        assert_eq!(none, None);
    }

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_traceparent_in_a_payload_is_found_where_an_app_puts_one() {
        for payload in [
            format!(r#"{{"headers": {{"Traceparent": "{TP}"}}, "body": "x"}}"#),
            format!("traceparent={TP};rest"),
            format!(r#"{{"traceparent":"bad", "x": "y", "traceparent": "{TP}"}}"#),
        ] {
            assert_eq!(
                payload_traceparent(payload.as_bytes()),
                Some((TP.to_owned(), None)),
                "{payload}"
            );
        }
        assert_eq!(payload_traceparent(b"traceparent: 00-zz"), None);
        assert_eq!(payload_traceparent(TP.as_bytes()), None);
    }
}
