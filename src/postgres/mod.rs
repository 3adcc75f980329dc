//! PostgreSQL (frontend/backend protocol 3.x), client side: incremental
//! parsing of both directions of a client connection into one
//! [`Operation`](crate::protocol::Operation) per executed statement.
//!
//! Everything here is pure, like [`crate::http`]: bytes and timestamps in,
//! finished operations out; no I/O, no panic on any input, bounded memory.
//! The connection glue asks [`detect`] about the first outbound bytes, then
//! creates a [`PgConnection`] and hands it every byte of both directions in
//! order, starting with the bytes it detected on:
//!
//! ```
//! use std::time::SystemTime;
//! use lumigo_core::postgres::{detect, PgConnection};
//! use lumigo_core::protocol::{Detect, Flow};
//!
//! let startup = b"\x00\x00\x00\x20\x00\x03\x00\x00user\x00bob\x00database\x00shop\x00\x00";
//! assert_eq!(detect(startup), Detect::Yes); // "yes, PostgreSQL"
//! let mut conn = PgConnection::new();
//! let (mut done, now) = (Vec::new(), SystemTime::now());
//! let _ = conn.on_outbound(startup, now, &mut done);
//! let _ = conn.on_inbound(b"R\x00\x00\x00\x08\x00\x00\x00\x00Z\x00\x00\x00\x05I", now, &mut done);
//! let _ = conn.on_outbound(b"Q\x00\x00\x00\x22DELETE FROM carts WHERE id = 7\x00", now, &mut done);
//! assert_eq!(conn.in_flight(), 1);
//! let flow = conn.on_inbound(b"C\x00\x00\x00\x0dDELETE 1\x00Z\x00\x00\x00\x05I", now, &mut done);
//! assert_eq!(flow, Flow::Continue);
//! assert_eq!(done[0].name, "DELETE carts");
//! ```
//!
//! What becomes a span:
//! - A simple `Query`: one span for the whole message, from its first byte
//!   to ReadyForQuery. A query string with several statements is one span
//!   too (one round trip), reported as a batch (see `report` for the rules).
//! - An extended-protocol `Execute`: one span, from the first message of its
//!   Parse/Bind/Describe group to its CommandComplete (or EmptyQueryResponse,
//!   PortalSuspended, ErrorResponse), with the SQL of the statement its
//!   portal was bound to, named or unnamed. A prepared statement executed
//!   twice is two spans.
//! - A failed Parse or Bind in a group without an Execute (a failed
//!   `PREPARE` from a driver): one error span with that statement's SQL.
//! - Not spans: the startup and authentication exchange, ParameterStatus,
//!   BackendKeyData, ReadyForQuery, notices and notifications, COPY data,
//!   FunctionCall; all are framed and skipped.
//!
//! SSL: an `SSLRequest` answered `N` continues in plain text; answered `S`,
//! [`PgConnection::tls_accepted`] turns true and the parser expects the
//! StartupMessage again, now from the plaintext the TLS hooks see. A
//! GSSAPI-encrypted connection (`GSSENCRequest` answered `G`) cannot be
//! read: tracing stops. So does a CancelRequest connection (it carries
//! nothing else).
//!
//! The pieces: [`detect`](detect()); `frame` (length-prefixed framing, capped
//! at [`MAX_MESSAGE_BYTES`] per message, skipping large bodies on the fly);
//! `message` (decoding); `statements` (prepared statements and portals by
//! name, bounded); `connection` ([`PgConnection`], the state machine);
//! `report` (the operation's name, status and attributes).

mod capture;
mod connection;
mod detect;
mod frame;
mod message;
mod report;
mod statements;

pub use capture::PgCompactor;
pub use connection::PgConnection;
pub use detect::detect;
use statements::Statement;

pub use crate::protocol::{CloseReason, Detect, Flow};

/// Most bytes kept of one message: the SQL of a `Query` or `Parse` is cut
/// there (and sanitized as cut); bodies of other messages are kept much
/// shorter or not at all (a `DataRow` is skipped as it streams by).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Most client messages awaiting their replies on one connection (a
/// pipelined Parse/Bind/Describe/Execute group is four). Past it, every run
/// in flight is reported with [`errors::PIPELINE_OVERFLOW`] and tracing
/// stops.
pub const MAX_PENDING: usize = 512;

/// The `error.type` values of runs that ended without their reply (the
/// same strings as HTTP's).
pub mod errors {
    pub use crate::http::errors::{
        CONNECTION_CLOSED, PIPELINE_OVERFLOW, PROCESS_EXIT, PROTOCOL_ERROR,
    };
}

#[cfg(test)]
mod harness;

#[cfg(test)]
mod connection_tests;

#[cfg(test)]
mod fixture_tests;

#[cfg(test)]
mod fuzz;
