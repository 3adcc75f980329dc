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
    /// For a received message: the W3C `traceparent` (and `tracestate`)
    /// its headers carried, which its CONSUMER span continues.
    pub carried: Option<(String, Option<String>)>,
}

/// A client-side parser of a protocol other than HTTP (databases, caches,
/// message brokers): fed both directions of one connection in order, it
/// reports finished operations. The connection glue holds every such
/// parser as one of these.
pub(crate) trait Wire: Send {
    fn outbound(&mut self, data: &[u8], now: SystemTime, done: &mut Vec<Operation>) -> Flow;
    fn inbound(&mut self, data: &[u8], now: SystemTime, done: &mut Vec<Operation>) -> Flow;
    fn close(&mut self, now: SystemTime, reason: CloseReason, done: &mut Vec<Operation>);
    fn in_flight(&self) -> usize;
    /// The connection moved to TLS: its raw bytes are ciphertext from now
    /// on (the plaintext comes through the TLS hooks, as a new connection).
    fn now_tls(&self) -> bool {
        false
    }
    /// Before `data` goes out (not yet fed): the edits that make each
    /// message published in it carry a context, one `make()` each (message
    /// brokers; `None` from `make`: leave that message alone). Only
    /// messages whose header starts at or after `from` are edited (those
    /// before were planned by an earlier call).
    fn plan_edits(
        &self,
        _data: &[u8],
        _from: usize,
        _make: &mut dyn FnMut() -> Option<Carry>,
    ) -> Vec<MessageEdit> {
        Vec::new()
    }
    /// Whether writes may have messages edited ([`Wire::plan_edits`]):
    /// false for a protocol that takes nothing inserted.
    fn takes_edits(&self) -> bool {
        false
    }
    /// The outbound message numbered `ordinal` (from 0) goes out carrying
    /// `traceparent`: its PRODUCER operation's `carried` says so.
    fn stamp(&mut self, _ordinal: u64, _traceparent: String) {}
    /// On a captured connection, what follows the protocol on the app's
    /// thread so that this parser can run on the capture thread instead
    /// (see [`Compact`]); `None`: it runs on the app's thread.
    fn compactor(&self) -> Option<Box<dyn Compact>> {
        None
    }
    /// On the capture thread: the bytes fed from now on are what the
    /// [`compactor`](Wire::compactor) handed on.
    fn read_compacted(&mut self) {}
}

/// The app's-thread side of a protocol parsed on the capture thread: it
/// frames each call's bytes by the protocol's own length fields and
/// hands on what the parser needs of them (message bodies cut to what the
/// parser keeps), so that the parser, fed that, reports the same
/// operations at the same times as if fed every byte.
pub(crate) trait Compact: Send {
    /// Bytes the app sent (`outbound`) or received: appends what the
    /// parser needs of them to `out`.
    fn compact(&mut self, data: &[u8], outbound: bool, out: &mut Vec<u8>) -> Compacted;
    /// Whether a request may be waiting for its reply (at the process's
    /// exit, such a connection is closed so that the parser reports it).
    fn in_flight(&self) -> bool;
}

/// What [`Compact::compact`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Compacted {
    /// `Stop`: tracing ends after these bytes (the parser ends there too).
    pub flow: Flow,
    /// An outbound message that may start an operation began in these
    /// bytes: the thread's context goes with them, as the parent of the
    /// operations they start.
    pub requests: bool,
    /// Messages received that ended in these bytes (a subscriber's): each
    /// gets its CONSUMER span's identity here, and the last becomes the
    /// thread's active context while the app handles it.
    pub messages: u32,
}

/// The context to put into one published message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carry {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

/// One published message's header rewritten to carry a context: the
/// `replace` bytes at `at` (of the data planned) go out as `insert`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageEdit {
    pub at: usize,
    pub replace: usize,
    pub insert: Vec<u8>,
    /// The message's number among those the connection sent (from 0).
    pub ordinal: u64,
    /// The context it carries.
    pub traceparent: String,
}

/// Implements [`Wire`] for a parser with the usual inherent methods
/// (`on_outbound`, `on_inbound`, `on_close`, `in_flight`), and optionally
/// the name of its "now TLS" method.
macro_rules! wire {
    ($t:ty) => {
        $crate::protocol::wire!($t, none);
    };
    ($t:ty, $tls:ident) => {
        $crate::protocol::wire!($t, $tls, plain);
    };
    ($t:ty, $tls:ident, $inject:ident) => {
        impl $crate::protocol::Wire for $t {
            $crate::protocol::wire!(@inject $inject);
            fn outbound(
                &mut self,
                d: &[u8],
                now: std::time::SystemTime,
                done: &mut Vec<$crate::protocol::Operation>,
            ) -> $crate::protocol::Flow {
                self.on_outbound(d, now, done)
            }
            fn inbound(
                &mut self,
                d: &[u8],
                now: std::time::SystemTime,
                done: &mut Vec<$crate::protocol::Operation>,
            ) -> $crate::protocol::Flow {
                self.on_inbound(d, now, done)
            }
            fn close(
                &mut self,
                now: std::time::SystemTime,
                reason: $crate::protocol::CloseReason,
                done: &mut Vec<$crate::protocol::Operation>,
            ) {
                self.on_close(now, reason, done)
            }
            fn in_flight(&self) -> usize {
                <$t>::in_flight(self)
            }
            fn now_tls(&self) -> bool {
                $crate::protocol::wire!(@tls self, $tls)
            }
        }
    };
    (@inject plain) => {};
    (@inject compact) => {
        fn compactor(&self) -> Option<Box<dyn $crate::protocol::Compact>> {
            Some(Box::new(Self::compactor()))
        }
        fn read_compacted(&mut self) {
            Self::read_compacted(self)
        }
    };
    (@inject messages) => {
        fn takes_edits(&self) -> bool {
            true
        }
        fn plan_edits(
            &self,
            d: &[u8],
            from: usize,
            make: &mut dyn FnMut() -> Option<$crate::protocol::Carry>,
        ) -> Vec<$crate::protocol::MessageEdit> {
            self.plan_edits(d, from, make)
        }
        fn stamp(&mut self, ordinal: u64, traceparent: String) {
            self.stamp(ordinal, traceparent)
        }
    };
    (@tls $self:ident, none) => { false };
    (@tls $self:ident, $m:ident) => { $self.$m() };
}
pub(crate) use wire;
