//! The spans of a Redis connection, per the semantic conventions: a CLIENT
//! span per command (database conventions, Redis flavour), a PRODUCER span
//! per PUBLISH and a CONSUMER span per pub/sub message received (messaging
//! conventions: span name `{messaging.operation.name} {destination}`, so
//! `publish orders` and `receive orders`; a pattern subscription's message
//! is named after its pattern, the low-cardinality
//! `messaging.destination.template`).

use std::time::SystemTime;

use super::command::{Command, Kind};
use super::reply::Reply;
use super::{capped_string, errors, MAX_KEY_BYTES, MAX_STATUS_BYTES};
use crate::protocol::Operation;
use crate::span::{AttrValue, SpanKind, SpanStatus};

/// How a command ended.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome<'a> {
    /// Its reply (or, for a subscription, its confirmations) arrived.
    Reply(&'a Reply),
    /// No reply comes (CLIENT REPLY OFF or SKIP); it ends when sent.
    Unanswered,
    /// It ended without a reply, for this reason (one of [`errors`]).
    Cut(&'static str),
}

/// Longest error prefix taken as `error.type`.
const MAX_PREFIX_BYTES: usize = 32;

/// The span of a command.
pub(crate) fn command(
    cmd: Command,
    namespace: &str,
    end: SystemTime,
    outcome: Outcome,
) -> Operation {
    let (status, error) = match outcome {
        Outcome::Reply(r) if r.is_error() => {
            let prefix = error_prefix(&r.head);
            (
                SpanStatus::Error(capped_string(without_arguments(&r.head), MAX_STATUS_BYTES)),
                Some((prefix.clone(), Some(prefix))),
            )
        }
        Outcome::Cut(why) => (
            SpanStatus::Error(describe(why).to_owned()),
            Some((why.to_owned(), None)),
        ),
        Outcome::Reply(_) | Outcome::Unanswered => (SpanStatus::Unset, None),
    };
    let (name, kind, mut attributes) = match cmd.kind {
        Kind::Publish { channel, size } => {
            let operation = cmd.name.to_ascii_lowercase();
            let name = if channel.is_empty() {
                operation.clone()
            } else {
                format!("{operation} {channel}")
            };
            let attributes = vec![
                ("messaging.system", AttrValue::from("redis")),
                ("messaging.operation.type", "send".into()),
                ("messaging.operation.name", operation.into()),
                ("messaging.destination.name", channel.into()),
                ("messaging.message.body.size", size.into()),
            ];
            (name, SpanKind::Producer, attributes)
        }
        _ => {
            let attributes = vec![
                ("db.system.name", AttrValue::from("redis")),
                ("db.operation.name", cmd.name.clone().into()),
                ("db.query.text", cmd.text.into()),
                ("db.namespace", namespace.into()),
            ];
            (cmd.name, SpanKind::Client, attributes)
        }
    };
    if let Some((error_type, status_code)) = error {
        attributes.push(("error.type", error_type.into()));
        if let Some(code) = status_code {
            attributes.push(("db.response.status_code", code.into()));
        }
    }
    Operation {
        name,
        kind,
        start: cmd.start,
        end,
        status,
        attributes,
        carried: None,
    }
}

/// The span of a pub/sub message push (`message`, `pmessage`,
/// `smessage`), received at `now`.
pub(crate) fn message(push: &Reply, now: SystemTime) -> Option<Operation> {
    let (pattern, channel, payload) = match push.child(0)? {
        b"message" | b"smessage" => (None, push.child(1)?, push.children.get(2)),
        b"pmessage" => (push.child(1), push.child(2)?, push.children.get(3)),
        _ => return None,
    };
    let channel = capped_string(channel, MAX_KEY_BYTES);
    let pattern = pattern.map(|p| capped_string(p, MAX_KEY_BYTES));
    let name = format!("receive {}", pattern.as_deref().unwrap_or(&channel));
    let mut attributes = vec![
        ("messaging.system", AttrValue::from("redis")),
        ("messaging.operation.type", "receive".into()),
        ("messaging.operation.name", "receive".into()),
        ("messaging.destination.name", channel.into()),
    ];
    if let Some(p) = pattern {
        attributes.push(("messaging.destination.template", p.into()));
    }
    if let Some(body) = payload {
        attributes.push(("messaging.message.body.size", body.len.into()));
    }
    Some(Operation {
        name,
        kind: SpanKind::Consumer,
        start: now,
        end: now,
        status: SpanStatus::Unset,
        attributes,
        carried: None,
    })
}

/// An error reply's prefix (`ERR`, `WRONGTYPE`, `NOAUTH`…): its first word
/// when that is an upper-case code, as Redis and modules write them; else
/// `ERR`, the generic one.
fn error_prefix(line: &[u8]) -> String {
    let word = line.split(|&b| b == b' ').next().unwrap_or_default();
    let is_code = word.first().is_some_and(u8::is_ascii_uppercase)
        && word.len() <= MAX_PREFIX_BYTES
        && word
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if is_code {
        String::from_utf8_lossy(word).into_owned()
    } else {
        "ERR".to_owned()
    }
}

/// Redis quotes a command's arguments in its "unknown command" error:
/// they are values, and stay out of the span like in `db.query.text`.
fn without_arguments(line: &[u8]) -> &[u8] {
    const ARGS: &[u8] = b", with args beginning with:";
    match line.windows(ARGS.len()).position(|w| w == ARGS) {
        Some(i) => line.get(..i).unwrap_or(line),
        None => line,
    }
}

fn describe(why: &str) -> &'static str {
    match why {
        errors::CONNECTION_CLOSED => "connection closed before the reply",
        errors::PROCESS_EXIT => "process exited before the reply",
        errors::PIPELINE_OVERFLOW => "too many commands awaiting replies; tracing stopped",
        _ => "unexpected bytes on the connection; tracing stopped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_prefixes() {
        let cases: &[(&[u8], &str)] = &[
            (b"ERR value is not an integer or out of range", "ERR"),
            (b"WRONGTYPE Operation against a key", "WRONGTYPE"),
            (b"NOAUTH Authentication required.", "NOAUTH"),
            (b"CLUSTERDOWN", "CLUSTERDOWN"),
            (b"user_script:1: oops", "ERR"),
            (b"", "ERR"),
            (b"Error something", "ERR"),
        ];
        for (line, want) in cases {
            assert_eq!(error_prefix(line), *want, "{line:?}");
        }
    }

    #[test]
    fn quoted_arguments_are_cut_from_errors() {
        assert_eq!(
            without_arguments(b"ERR unknown command 'X', with args beginning with: 'secret' "),
            b"ERR unknown command 'X'"
        );
        assert_eq!(without_arguments(b"ERR syntax error"), b"ERR syntax error");
    }

    #[test]
    fn error_replies_set_type_code_and_capped_status() {
        let cmd = Command {
            start: SystemTime::UNIX_EPOCH,
            name: "INCR".into(),
            text: "INCR k".into(),
            kind: Kind::Plain,
        };
        let mut head = b"ERR ".to_vec();
        head.extend(std::iter::repeat_n(b'x', 300));
        let reply = Reply {
            kind: b'-',
            head,
            ..Reply::default()
        };
        let op = command(cmd, "0", SystemTime::UNIX_EPOCH, Outcome::Reply(&reply));
        assert!(matches!(&op.status, SpanStatus::Error(d) if d.len() == MAX_STATUS_BYTES));
        assert!(op.attributes.contains(&("error.type", "ERR".into())));
        assert!(op
            .attributes
            .contains(&("db.response.status_code", "ERR".into())));
    }
}
