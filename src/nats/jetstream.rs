//! JetStream publish acknowledgements: what the reply to a publish says.
//!
//! A JetStream publish is a request: `PUB subject reply size`, answered on
//! `reply` by the stream with a JSON body, `{"stream":"S","seq":5}` (with
//! `"duplicate":true` when the stream had it already) or
//! `{"error":{"code":400,"err_code":10060,"description":"…"},…}`; when no
//! stream takes the subject, the server answers for it with a header-only
//! status `NATS/1.0 503` (no responders). Any other reply (a service's
//! answer to a core request, a JetStream API response, which has a
//! `"type"`) is not an acknowledgement.

use super::json_number;
use crate::messaging::{name, Message};

/// Most bytes of a reply's body kept to read an acknowledgement from (one
/// with an error description is about 120).
pub const MAX_ACK_BYTES: usize = 512;

/// A JetStream publish acknowledgement.
#[derive(Debug, PartialEq)]
pub(super) enum Ack {
    /// The stream stored the message (or had it already).
    Stored {
        stream: String,
        sequence: Option<u64>,
        duplicate: bool,
    },
    /// It refused it: `error.type` (the error's `code`, or the status) and
    /// a description.
    Refused(String, String),
}

impl Ack {
    /// Puts the acknowledgement on its publish's PRODUCER span.
    pub(super) fn apply(self, m: &mut Message) {
        match self {
            Ack::Stored {
                stream,
                sequence,
                duplicate,
            } => {
                m.extra
                    .push(("messaging.nats.jetstream.stream", stream.into()));
                if let Some(seq) = sequence {
                    m.extra
                        .push(("messaging.nats.jetstream.sequence", seq.into()));
                }
                if duplicate {
                    m.extra
                        .push(("messaging.nats.jetstream.duplicate", true.into()));
                }
            }
            Ack::Refused(kind, description) => m.error = Some((kind, description)),
        }
    }
}

/// The acknowledgement a reply carries, if it is one: its header block (a
/// status line `NATS/1.0 503 …`; empty for a `MSG`) and its body's first
/// bytes.
pub(super) fn ack(headers: &[u8], body: &[u8]) -> Option<Ack> {
    if let Some(code) = status(headers) {
        return (code == b"503").then(|| Ack::Refused(name(code), "no responders".to_owned()));
    }
    let body = body.trim_ascii_start();
    if !body.starts_with(b"{") || find(body, b"\"type\"").is_some() {
        return None;
    }
    if let Some(at) = find(body, b"\"error\"") {
        let error = &body[at..];
        let code = json_number(error, b"\"code\"")?;
        let description = json_string(error, b"\"description\"").unwrap_or_default();
        return Some(Ack::Refused(name(code), name(description)));
    }
    let stream = json_string(body, b"\"stream\"")?;
    let sequence =
        json_number(body, b"\"seq\"").and_then(|d| std::str::from_utf8(d).ok()?.parse().ok());
    Some(Ack::Stored {
        stream: name(stream),
        sequence,
        duplicate: super::json_true(body, b"\"duplicate\""),
    })
}

/// The status code of a header block whose first line is `NATS/1.0 CODE
/// [description]`.
fn status(headers: &[u8]) -> Option<&[u8]> {
    let first = headers.split(|&b| b == b'\n').next()?;
    let rest = first.strip_prefix(b"NATS/1.0")?;
    let code = rest.trim_ascii().split(|&b| b == b' ').next()?;
    (code.len() == 3 && code.iter().all(u8::is_ascii_digit)).then_some(code)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The raw bytes of a string field `key` (escapes left as they are).
fn json_string<'a>(json: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = find(json, key)? + key.len();
    let rest = &json[at..];
    let rest = &rest[rest
        .iter()
        .position(|&b| !matches!(b, b' ' | b':' | b'\t'))?..];
    let rest = rest.strip_prefix(b"\"")?;
    let mut escaped = false;
    let end = rest.iter().position(|&b| {
        let quote = b == b'"' && !escaped;
        escaped = b == b'\\' && !escaped;
        quote
    })?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nats::{NatsConnection, MAX_AWAITING, REPLY_WINDOW};
    use crate::protocol::{CloseReason, Operation};
    use crate::span::SpanKind;
    use crate::testkit::at;
    use std::time::{Duration, SystemTime};

    const ACK: &[u8] = b"MSG _INBOX.r.1 1 22\r\n{\"stream\":\"S\",\"seq\":9}\r\n";

    fn ops(done: &[Operation]) -> Vec<(SpanKind, &str, SystemTime)> {
        done.iter()
            .map(|o| (o.kind, o.name.as_str(), o.end))
            .collect()
    }

    #[test]
    fn an_acknowledgement_ends_its_publish_and_is_no_message() {
        let mut c = NatsConnection::new();
        let mut done = Vec::new();
        let _ = c.on_inbound(b"INFO {}\r\n", at(0), &mut done);
        let _ = c.on_outbound(b"PUB s _INBOX.r.1 2\r\nhi\r\n", at(1), &mut done);
        // Another inbox's acknowledgement is a message like any other.
        let other = String::from_utf8_lossy(ACK).replace("r.1", "r.2");
        let _ = c.on_inbound(other.as_bytes(), at(2), &mut done);
        assert_eq!(
            ops(&done),
            [(SpanKind::Consumer, "process (temporary)", at(2))]
        );
        let _ = c.on_inbound(ACK, at(3), &mut done);
        assert_eq!(ops(&done)[1..], [(SpanKind::Producer, "publish s", at(3))]);
        assert!(done[1]
            .attributes
            .contains(&("messaging.nats.jetstream.sequence", 9u64.into())));
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn a_publish_waits_for_its_reply_a_bounded_while_and_number() {
        let mut c = NatsConnection::new();
        let mut done = Vec::new();
        let _ = c.on_inbound(b"INFO {}\r\n", at(0), &mut done);
        let _ = c.on_outbound(b"PUB s _INBOX.r.1 2\r\nhi\r\n", at(1), &mut done);
        assert_eq!(c.in_flight(), 1);
        // Past the window: ended as sent; its late reply is a message.
        let late = at(1) + REPLY_WINDOW + Duration::from_secs(1);
        let _ = c.on_inbound(ACK, late, &mut done);
        assert_eq!(
            ops(&done),
            [
                (SpanKind::Producer, "publish s", at(1)),
                (SpanKind::Consumer, "process (temporary)", late)
            ]
        );
        done.clear();
        for i in 0..=MAX_AWAITING {
            let line = format!("PUB s{i} _INBOX.r.{i} 0\r\n\r\n");
            let _ = c.on_outbound(line.as_bytes(), late, &mut done);
        }
        // The oldest gave way, ended as sent.
        assert_eq!(c.in_flight(), MAX_AWAITING);
        assert_eq!(ops(&done), [(SpanKind::Producer, "publish s0", late)]);
        c.on_close(late, CloseReason::PeerClosed, &mut done);
        assert_eq!((done.len(), c.in_flight()), (MAX_AWAITING + 1, 0));
    }

    #[test]
    fn acknowledgements_and_what_is_not_one() {
        let stored = |stream: &str, sequence, duplicate| {
            Some(Ack::Stored {
                stream: stream.to_owned(),
                sequence,
                duplicate,
            })
        };
        assert_eq!(
            ack(b"", b"{\"stream\":\"S\", \"seq\":5}\r\n"),
            stored("S", Some(5), false)
        );
        assert_eq!(
            ack(
                b"",
                br#"{"stream":"S","domain":"d","seq":7,"duplicate":true}"#
            ),
            stored("S", Some(7), true)
        );
        assert_eq!(
            ack(
                b"",
                br#"{"error":{"code":400,"err_code":10060,"description":"expected \"x\""},"stream":"S","seq":0}"#
            ),
            Some(Ack::Refused("400".into(), r#"expected \"x\""#.into()))
        );
        assert_eq!(
            ack(b"NATS/1.0 503\r\n\r\n", b""),
            Some(Ack::Refused("503".into(), "no responders".into()))
        );
        // A JetStream API response, a service's answer, other statuses.
        assert_eq!(
            ack(
                b"",
                br#"{"type":"io.nats.jetstream.api.v1.stream_delete_response","success":true}"#
            ),
            None
        );
        assert_eq!(
            ack(
                b"",
                br#"{"type":"x","error":{"code":404,"description":"stream not found"}}"#
            ),
            None
        );
        assert_eq!(ack(b"", b"pong"), None);
        assert_eq!(ack(b"", b"{\"stream\": 5}"), None);
        assert_eq!(ack(b"", b"{\"error\": {}}"), None);
        assert_eq!(ack(b"NATS/1.0 408 Request Timeout\r\n\r\n", b""), None);
        assert_eq!(ack(b"NATS/1.0\r\nA: b\r\n\r\n", b"pong"), None);
    }
}
