//! MySQL / MariaDB client protocol: incremental parsing of both directions of
//! a client connection into one [`Operation`] per command (a query, a
//! prepared statement's prepare or execute, `USE`, `PING`).
//!
//! Everything here is pure, like [`crate::http`]: bytes and timestamps in,
//! finished operations out; no I/O, no panic on any input, bounded memory.
//! MySQL is server-speaks-first, so the connection glue asks
//! [`detect_greeting`] about the first *inbound* bytes of a client
//! connection, then creates a [`MysqlConnection`] and hands it every byte of
//! both directions in order, starting with the greeting it detected:
//!
//! ```
//! use std::time::SystemTime;
//! use lumigo_core::mysql::{detect_greeting, MysqlConnection};
//! use lumigo_core::protocol::{Detect, Flow};
//!
//! // A greeting (protocol 10, "8.0.36"), a login, its OK, a query and its OK.
//! let greeting = b"\x27\x00\x00\x00\x0a8.0.36\x00\x01\x00\x00\x00abcdefgh\x00\xff\xf7\x21\x02\x00\xff\xdf\x15\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
//! assert_eq!(detect_greeting(greeting), Detect::Yes); // "yes, MySQL"
//! let mut conn = MysqlConnection::new();
//! let (mut done, now) = (Vec::new(), SystemTime::now());
//! let mut login = b"\x2b\x00\x00\x01\x0d\xa2\x0a\x00\x00\x00\x00\x01\x21".to_vec();
//! login.extend_from_slice(&[0; 23]);
//! login.extend_from_slice(b"root\x00\x00shop\x00");
//! let _ = conn.on_inbound(greeting, now, &mut done);
//! let _ = conn.on_outbound(&login, now, &mut done);
//! let _ = conn.on_inbound(b"\x07\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00", now, &mut done);
//! let _ = conn.on_outbound(b"\x1d\x00\x00\x00\x03DELETE FROM carts WHERE id=7", now, &mut done);
//! let flow = conn.on_inbound(b"\x07\x00\x00\x01\x00\x01\x00\x02\x00\x00\x00", now, &mut done);
//! assert_eq!(flow, Flow::Continue);
//! assert_eq!(done[0].name, "DELETE carts");
//! ```
//!
//! The pieces, each in its own file:
//! - [`detect_greeting`]: is this a server's initial handshake (or its
//!   initial ERR)?
//! - `packet`: the packet layer (3-byte length, sequence id, packets of
//!   `0xffffff` bytes continued in the next), keeping only a capped prefix
//!   of each packet; rows are skipped as they stream by.
//! - `handshake`: the greeting, the client's HandshakeResponse (capabilities,
//!   database, TLS request) and COM_CHANGE_USER.
//! - `response`: framing of each command's response (OK, ERR, result sets,
//!   several result sets, LOCAL INFILE, prepare responses).
//! - `session`: [`MysqlConnection`], the per-connection state machine
//!   (phases, pipelined commands, prepared statements, the current database).
//! - `span`: a finished command as an [`Operation`], per the stable database
//!   semantic conventions.

mod capture;
mod detect;
mod handshake;
mod packet;
mod response;
mod session;
mod span;

pub use capture::MysqlCompactor;
pub use detect::{detect_greeting, detect_tls_login, MAX_DETECT_BYTES};
pub use session::MysqlConnection;

pub use crate::protocol::{CloseReason, Detect, Flow, Operation};

/// Most bytes of a statement's text (COM_QUERY, COM_STMT_PREPARE) kept; the
/// rest of the packet streams by unseen and `db.query.text` is the cut text.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// Most commands awaiting their responses on one connection (drivers such as
/// MariaDB Connector/C and the Node `mariadb` connector pipeline a prepare
/// and its execute). Past it, everything pending is reported with
/// [`errors::PIPELINE_OVERFLOW`] and tracing stops.
pub const MAX_IN_FLIGHT: usize = 32;

/// Most prepared statements remembered per connection, and most bytes of
/// their (sanitized) texts together; past either, the lowest statement ids
/// (the oldest, as servers number them in order) are forgotten and their
/// executes become spans without a text.
pub const MAX_STATEMENTS: usize = 256;
pub const MAX_STATEMENT_BYTES: usize = 256 * 1024;

/// Most bytes kept of a server error message (the span status description).
pub const MAX_ERROR_MESSAGE_BYTES: usize = 512;

/// The values of `error.type` for commands that ended without a server
/// response (a server error's `error.type` is its code, such as `1146`).
pub mod errors {
    /// The connection closed before the response was complete.
    pub const CONNECTION_CLOSED: &str = "connection_closed";
    /// The process exited before the response was complete.
    pub const PROCESS_EXIT: &str = "process_exit";
    /// Bytes that are not the MySQL protocol where a packet was expected (a
    /// response with no command, a command out of sequence).
    pub const PROTOCOL_ERROR: &str = "protocol_error";
    /// More than [`MAX_IN_FLIGHT`](super::MAX_IN_FLIGHT) commands awaited
    /// their responses.
    pub const PIPELINE_OVERFLOW: &str = "pipeline_overflow";
}

/// Converts wire bytes to a string, lossily, keeping at most `max` bytes and
/// never cutting a UTF-8 sequence in two.
pub(crate) fn lossy_prefix(bytes: &[u8], max: usize) -> String {
    let mut cut = bytes.len().min(max);
    if cut < bytes.len() {
        // Back off over continuation bytes (at most 3) to a character start.
        let mut backed = 0;
        while backed < 3 && cut > 0 && bytes.get(cut).is_some_and(|b| b & 0xC0 == 0x80) {
            cut -= 1;
            backed += 1;
        }
    }
    let mut s = String::from_utf8_lossy(bytes.get(..cut).unwrap_or_default()).into_owned();
    // Each invalid byte became a three-byte U+FFFD: cut again.
    s.truncate(crate::config::cut_str(&s, max).len());
    s
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod edge_tests;

#[cfg(test)]
mod fixture_tests;

#[cfg(test)]
mod fuzz;
