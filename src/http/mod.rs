//! HTTP/1.x: incremental parsing of both directions of one TCP connection into
//! exchanges (a request and its response), and their span attributes.
//!
//! Everything here is pure: bytes and timestamps in, finished
//! [`HttpExchange`]s out. No I/O, no allocation per byte, no panic on any
//! input. The caller (the connection glue) hands over every byte the app
//! sends or receives on a tracked socket, in order, per direction:
//!
//! ```
//! use std::time::SystemTime;
//! use lumigo_core::http::{Flow, HttpConnection, Role};
//!
//! let mut conn = HttpConnection::new(Role::Client);
//! let mut done = Vec::new();
//! let now = SystemTime::now();
//! conn.on_outbound(b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", now, &mut done);
//! let flow = conn.on_inbound(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", now, &mut done);
//! assert!(matches!(flow, Flow::Continue));
//! assert_eq!(done[0].status, Some(200));
//! assert_eq!(done[0].response_body_size, 2);
//! ```
//!
//! The pieces, each in its own file:
//! - [`detect`](detect_request): is this the start of an HTTP/1.x request (or
//!   response)? Decided on as few bytes as possible.
//! - `parser`: message heads, accumulated across calls up to
//!   [`MAX_HEAD_BYTES`] (longer heads keep their framing and the headers
//!   that matter, read past the cap) and parsed into owned values.
//! - `body`: body framing (Content-Length, chunked, until close), streamed:
//!   bodies are counted and decoded on the fly, never buffered (with payload
//!   capture on, [`HttpConnection::capture_payloads`], each exchange keeps
//!   its raw heads and a bounded prefix of each body's content in
//!   [`Captured`], for [`crate::payload`] to turn into attributes).
//! - `exchange`: [`HttpConnection`], the per-connection state machine
//!   (keep-alive, pipelining, interim responses, upgrades, closes).
//! - [`span`]: the attributes of a finished exchange, per the stable HTTP
//!   semantic conventions.

pub(crate) mod body;
pub(crate) mod detect;
mod exchange;
pub mod inject;
pub(crate) mod parser;
pub(crate) use parser::{initials, REQUEST_HEADERS};
pub mod span;

use std::time::SystemTime;

use crate::span::{InlineText, Text};

pub use detect::{detect_request, Detect};
pub use exchange::HttpConnection;
pub use span::{span_parts, Endpoints, HttpSpanParts};

/// Most head bytes (request or response line plus headers) buffered per
/// direction. A longer head is still framed: past the cap its bytes are
/// streamed over, keeping only the header lines that matter.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most requests awaiting their responses on one connection (pipelining).
/// Past it, everything pending is reported with
/// [`errors::PIPELINE_OVERFLOW`] and tracing stops.
pub const MAX_IN_FLIGHT: usize = 32;

/// Most bytes kept of any string of an [`HttpExchange`] (method, target,
/// header values); longer values are cut at a character boundary.
pub const MAX_FIELD_BYTES: usize = 2048;

/// Which side of the connection the traced process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The process connected: outbound bytes are requests, inbound bytes responses.
    Client,
    /// The process accepted: inbound bytes are requests, outbound bytes responses.
    Server,
}

/// What the caller should do with the connection after a call.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep handing over this connection's bytes.
    Continue,
    /// Not (or no longer) HTTP/1.x, or tracing gave up: stop tracing this
    /// connection, after taking the exchanges pushed to `done`. Every later
    /// call returns `Stop` again and reports nothing.
    Stop,
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side (a read returned 0).
    PeerClosed,
    /// The process closed the socket.
    Closed,
    /// The process is exiting with the connection still open.
    ProcessExit,
}

/// The values of [`HttpExchange::error`]: why an exchange ended abnormally.
/// They become the span's `error.type`.
pub mod errors {
    /// The connection closed before the response was complete (or with no
    /// response at all).
    pub const CONNECTION_CLOSED: &str = "connection_closed";
    /// The process exited before the response was complete.
    pub const PROCESS_EXIT: &str = "process_exit";
    /// Bytes that are not HTTP/1.x where a head or a chunk was expected, an
    /// invalid framing header, or a response with no request.
    pub const PROTOCOL_ERROR: &str = "protocol_error";
    /// More than [`MAX_IN_FLIGHT`](super::MAX_IN_FLIGHT) requests awaited
    /// their responses.
    pub const PIPELINE_OVERFLOW: &str = "pipeline_overflow";
    /// Bytes were sent that could not be seen (`sendfile`) outside a body
    /// whose framing allows skipping them.
    pub const OPAQUE_DATA: &str = "opaque_data";
}

/// One request and its response, as seen on the wire. Owned plain data:
/// strings are converted lossily from the wire bytes and cut to
/// [`MAX_FIELD_BYTES`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpExchange {
    /// Position of this exchange on its connection (0, 1, 2, …), so a caller
    /// can tie state to an exchange from [`HttpConnection::pending`] until it
    /// completes.
    pub seq: u64,
    /// Request method as sent (`GET`, `PROPFIND`, …); empty if unknown (a
    /// truncated or garbled request line).
    pub method: Text,
    /// Request-target as sent: origin form (`/a?b`), absolute form
    /// (`http://host/a`), authority form (`host:443`) or `*`.
    pub target: Text,
    /// Minor HTTP version of the request (`0` or `1`), if known.
    pub version: Option<u8>,
    /// The `Host` header.
    pub host: Option<Text>,
    /// The `User-Agent` header.
    pub user_agent: Option<Text>,
    /// The first `traceparent` header (any case).
    pub traceparent: Option<String>,
    /// The first `tracestate` header (any case).
    pub tracestate: Option<String>,
    /// B3 and `baggage` headers, when the request had any.
    pub carriers: Option<Box<crate::propagators::InboundCarriers>>,
    /// Signed with AWS SigV4 (an `x-amz-content-sha256` header, or an
    /// `Authorization` header starting with `AWS4-HMAC-SHA256`).
    pub aws_sigv4: bool,
    /// Status code of the final (non-1xx) response, if one was seen.
    pub status: Option<u16>,
    /// Bytes of request body content (decoded size for chunked bodies).
    pub request_body_size: u64,
    /// Bytes of response body content (decoded size for chunked bodies).
    pub response_body_size: u64,
    /// Time of the call that carried the first byte of the request.
    pub start: SystemTime,
    /// Time of the call that carried the last byte of the response, or of
    /// the close or stop that ended the exchange.
    pub end: SystemTime,
    /// Why the exchange ended abnormally: one of [`errors`].
    pub error: Option<&'static str>,
    /// Raw heads and body prefixes, when payloads are captured
    /// ([`HttpConnection::capture_payloads`]).
    pub captured: Option<Box<Captured>>,
}

/// What an exchange kept of its messages for payload attributes, as the
/// bytes passed: nothing is decoded, masked or formatted here (that is the
/// span builder's work, off the app's threads).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Captured {
    /// The request head as sent, up to [`MAX_HEAD_BYTES`].
    pub request_head: Vec<u8>,
    /// The final response head, up to [`MAX_HEAD_BYTES`].
    pub response_head: Vec<u8>,
    /// The first bytes of the request body's content (chunked framing
    /// removed), up to the capture limit.
    pub request_body: Vec<u8>,
    /// The same for the response body.
    pub response_body: Vec<u8>,
}

/// Spent [`Captured`] boxes, their buffers emptied but not freed, for the
/// next exchanges: a span's payload bytes are copied into buffers that
/// already exist instead of four new allocations and four frees. Shared by
/// every thread that builds spans and taken only when free. Boxes, not
/// the structs, since an exchange holds its `Captured` boxed: the box's own
/// allocation is reused too.
#[allow(clippy::vec_box)]
static SPARE: std::sync::Mutex<Vec<Box<Captured>>> = std::sync::Mutex::new(Vec::new());

/// Most boxes kept spare, and the largest buffer a kept box may hold: at
/// most 32 × 4 × 4 KiB (512 KiB) stay allocated this way.
const SPARE_BOXES: usize = 32;
const SPARE_BUFFER: usize = 4 << 10;

impl Captured {
    /// A box for an exchange whose request head is `head`: a spare one
    /// when there is one.
    pub(crate) fn with_request_head(head: &[u8]) -> Box<Captured> {
        let spare = SPARE.try_lock().ok().and_then(|mut spare| spare.pop());
        let mut c = spare.unwrap_or_default();
        c.request_head.extend_from_slice(head);
        c
    }

    /// Gives back the box of an exchange whose span was built: emptied,
    /// and kept if its buffers are small and there is room.
    pub(crate) fn give_back(mut c: Box<Captured>) {
        let Captured {
            request_head,
            response_head,
            request_body,
            response_body,
        } = &mut *c;
        for buf in [request_head, response_head, request_body, response_body] {
            if buf.capacity() > SPARE_BUFFER {
                return;
            }
            buf.clear();
        }
        if let Ok(mut spare) = SPARE.try_lock() {
            if spare.len() < SPARE_BOXES {
                spare.push(c);
            }
        }
    }

    /// Appends `bytes` to `buf`, keeping at most `limit` bytes in all.
    pub(crate) fn keep(buf: &mut Vec<u8>, limit: usize, bytes: &[u8]) {
        let room = limit.saturating_sub(buf.len());
        if room > 0 {
            buf.extend_from_slice(bytes.get(..room).unwrap_or(bytes));
        }
    }
}

impl HttpExchange {
    /// `network.protocol.version`: `"1.0"` or `"1.1"`.
    pub fn protocol_version(&self) -> Option<&'static str> {
        match self.version {
            Some(0) => Some("1.0"),
            Some(1) => Some("1.1"),
            _ => None,
        }
    }

    /// An exchange with nothing known yet but its position and start.
    pub(crate) fn empty(seq: u64, start: SystemTime) -> HttpExchange {
        HttpExchange {
            seq,
            method: Text::default(),
            target: Text::default(),
            version: None,
            host: None,
            user_agent: None,
            traceparent: None,
            tracestate: None,
            carriers: None,
            aws_sigv4: false,
            status: None,
            request_body_size: 0,
            response_body_size: 0,
            start,
            end: start,
            error: None,
            captured: None,
        }
    }
}

/// [`capped_string`] as a [`Text`]: short ASCII (nearly every target,
/// host and user agent that fits [`InlineText::CAPACITY`]) is held in
/// place, with no allocation to make and free per request.
pub(crate) fn capped_text(bytes: &[u8]) -> Text {
    if bytes.len() <= InlineText::CAPACITY && bytes.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        let s = unsafe { std::str::from_utf8_unchecked(bytes) };
        if let Some(inline) = InlineText::new(s) {
            return Text::Inline(inline);
        }
    }
    Text::Owned(capped_string(bytes))
}

/// Converts wire bytes to a string, lossily, keeping at most
/// [`MAX_FIELD_BYTES`] bytes and never cutting a UTF-8 sequence in two.
pub(crate) fn capped_string(bytes: &[u8]) -> String {
    let mut cut = bytes.len().min(MAX_FIELD_BYTES);
    if cut < bytes.len() {
        // Back off over continuation bytes (at most 3) to a character start.
        let mut backed = 0;
        while backed < 3 && cut > 0 && bytes.get(cut).is_some_and(|b| b & 0xC0 == 0x80) {
            cut -= 1;
            backed += 1;
        }
    }
    let bytes = bytes.get(..cut).unwrap_or_default();
    if bytes.is_ascii() {
        // Nearly always (a target, a host, a user agent): checked a word at
        // a time, where `from_utf8` costs a hundred instructions on a short
        // field. SAFETY: ASCII is UTF-8.
        return unsafe { std::str::from_utf8_unchecked(bytes) }.to_owned();
    }
    // Valid UTF-8 is checked much faster than it is converted lossily.
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => {
            // Each invalid byte became a three-byte U+FFFD: cut again.
            let mut s = String::from_utf8_lossy(bytes).into_owned();
            s.truncate(crate::config::cut_str(&s, MAX_FIELD_BYTES).len());
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_ascii_field_is_held_in_place_and_the_rest_as_capped_strings() {
        assert!(matches!(capped_text(b"/index.html"), Text::Inline(_)));
        assert!(matches!(
            capped_text(&[b'a'; InlineText::CAPACITY]),
            Text::Inline(_)
        ));
        let long = vec![b'a'; InlineText::CAPACITY + 1];
        assert!(matches!(capped_text(&long), Text::Owned(_)));
        for input in [
            &b"caf\xc3\xa9"[..],
            b"\xff\xfe",
            &[b'x'; MAX_FIELD_BYTES + 9],
        ] {
            assert_eq!(capped_text(input).as_str(), capped_string(input));
        }
    }

    #[test]
    fn capped_string_cuts_at_char_boundaries() {
        let cases: &[(&[u8], usize)] = &[
            (b"abc", 3),
            (&[b'a'; MAX_FIELD_BYTES + 10], MAX_FIELD_BYTES),
            (&[0xff, b'a'], "\u{fffd}a".len()),
        ];
        for (input, len) in cases {
            assert_eq!(capped_string(input).len(), *len);
        }
        // A two-byte character straddling the cap is dropped whole.
        let mut s = vec![b'a'; MAX_FIELD_BYTES - 1];
        s.extend_from_slice("é".as_bytes());
        let out = capped_string(&s);
        assert_eq!(out.len(), MAX_FIELD_BYTES - 1);
        assert!(!out.contains('\u{fffd}'));
    }

    /// Found with `fuzz/` (target http_head, a hand-made input): invalid
    /// UTF-8 cut to the cap, then converted, came out up to three times
    /// the cap (each byte a three-byte U+FFFD).
    #[test]
    fn capped_string_stays_within_the_cap_for_invalid_utf8() {
        for input in [vec![0xff; MAX_FIELD_BYTES], vec![0xfe; 3 * MAX_FIELD_BYTES]] {
            let out = capped_string(&input);
            assert!(out.len() <= MAX_FIELD_BYTES, "{} bytes", out.len());
            assert!(out.len() > MAX_FIELD_BYTES - 3);
            assert!(out.chars().all(|c| c == '\u{fffd}'));
        }
    }

    #[test]
    fn protocol_version_names() {
        let mut ex = HttpExchange::empty(0, SystemTime::UNIX_EPOCH);
        for (v, name) in [
            (Some(0), Some("1.0")),
            (Some(1), Some("1.1")),
            (Some(7), None),
            (None, None),
        ] {
            ex.version = v;
            assert_eq!(ex.protocol_version(), name);
        }
    }
}
