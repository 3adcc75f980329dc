//! What every wire-protocol parser shares with the connection glue.
//!
//! A parser (HTTP, Redis, PostgreSQL, MySQL…) is a pure state machine fed
//! the bytes of one TCP connection, in order, per direction. It reports each
//! finished operation as an [`Operation`]: timing, name, kind, status and
//! the protocol's own attributes. The glue adds the identity (trace and span
//! ids, parent) and the network attributes (`server.address`,
//! `server.port`, `network.peer.*`), then exports it.

use std::time::SystemTime;

use crate::span::{AttrValue, SpanKind, SpanStatus};

pub use crate::http::{CloseReason, Detect, Flow};

/// One finished operation on a connection (a command and its reply, a
/// query and its result), ready to become a span.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    /// Span name, per the semantic conventions (e.g. `SET`, `SELECT users`).
    pub name: String,
    pub kind: SpanKind,
    /// First byte of the request.
    pub start: SystemTime,
    /// Last byte of the reply (or the close that cut it short).
    pub end: SystemTime,
    pub status: SpanStatus,
    /// The protocol's attributes (`db.system.name`, `db.query.text`, …).
    pub attributes: Vec<(&'static str, AttrValue)>,
}
