//! One tracked connection (TCP or a Unix stream socket): protocol
//! recognition, parsing, span making.
//!
//! The preload library creates a [`Connection`] when the app connects or
//! accepts a TCP or Unix stream socket and feeds it every byte the app actually sent or
//! received on it. The first bytes in the request direction decide the
//! protocol; anything not recognised returns [`Flow::Stop`], after which the
//! preload stops looking at the fd at all (one array lookup per call).
//! Finished exchanges become [`SpanRecord`](crate::span::SpanRecord)s and go to the [`Tracer`]'s sink.
//!
//! On client connections it also plans what goes into outbound request
//! heads before the real write ([`Connection::plan_outbound`]): a
//! `traceparent` line inserted at the head's end, or, when the app forwards
//! the very `traceparent` the thread's inbound request came with (a proxy),
//! that value replaced in place by one naming our CLIENT span. And since a
//! planned write is fed only once the real call returns, a response read on
//! another thread meanwhile is held until its request is in.

use std::collections::VecDeque;
use std::time::SystemTime;

use crate::address::Address;
use crate::context;
use crate::http::inject::{scan_head, SentHead, ValueAt};
use crate::http::{self, Detect, HttpConnection, HttpExchange, Role};
use crate::propagation::{format_traceparent, parse_traceparent};
use crate::protocol::{Operation, Wire};
use crate::span::SpanKind;

pub use crate::tracer::{Assigned, SpanSink, Tracer};

pub use crate::http::{CloseReason, Flow};

/// Bytes to insert into one outbound write, or to write in place of some
/// of the app's, planned before the real call. The wire then carries the
/// app's first `at` bytes, `insert`, and the app's bytes from `at + replace`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundPlan {
    /// App bytes of this write that go before the inserted bytes.
    pub at: usize,
    /// The bytes to insert (what is left of them after a partial write).
    pub insert: Vec<u8>,
    /// App bytes at `at` that `insert` stands in for: 0 for an insertion;
    /// `insert.len()` for a replacement (a forwarded `traceparent`'s value),
    /// so the wire carries as many bytes as the app wrote.
    pub replace: usize,
    /// Outbound stream position when planned.
    offset: u64,
}

impl OutboundPlan {
    /// Of `sent` bytes the kernel took from the combined write: the app's
    /// bytes, and the inserted ones.
    pub fn split_sent(&self, sent: usize) -> (usize, usize) {
        let (k, m) = (self.at, self.insert.len());
        if self.replace > 0 {
            // One for one: every byte on the wire stands for one of the app's.
            (sent, 0)
        } else if sent <= k {
            (sent, 0)
        } else if sent < k + m {
            (k, sent - k)
        } else {
            (sent - m, m)
        }
    }
}

/// A `traceparent` line on its way into the outbound stream.
struct Injection {
    /// Stream position (in app bytes) where it goes.
    at: u64,
    line: Vec<u8>,
    /// How many of its bytes the kernel has taken.
    sent: usize,
}

/// A forwarded `traceparent` value being replaced on its way out, byte for
/// byte, with one naming our CLIENT span.
struct Replacement {
    /// Stream position (in app bytes) of the value's first byte.
    at: u64,
    bytes: Vec<u8>,
}

/// Most inbound bytes held back while a request is being written on
/// another thread (see [`Connection::on_inbound`]).
const MAX_HELD: usize = 64 * 1024;

/// Bytes kept while the protocol is not yet known (enough for a method
/// token, a startup message or a server greeting's version).
const DETECT_PREFIX: usize = 64;

enum Protocol {
    /// Nothing seen yet, or too little to tell. `outbound`: which direction
    /// the first bytes went.
    Detecting {
        prefix: [u8; DETECT_PREFIX],
        len: usize,
        outbound: bool,
    },
    Http(Box<HttpConnection>),
    /// A database, cache or message broker protocol (client side).
    Db(Box<dyn Wire>),
    /// Not ours: the caller should already have stopped feeding us.
    Ignored,
}

crate::protocol::wire!(crate::redis::RedisConnection);
crate::protocol::wire!(crate::postgres::PgConnection, tls_accepted);
crate::protocol::wire!(crate::mysql::MysqlConnection, tls_requested);
crate::protocol::wire!(crate::amqp::AmqpConnection);
crate::protocol::wire!(crate::mqtt::MqttConnection);
crate::protocol::wire!(crate::nats::NatsConnection);

/// Which protocol a connection's first bytes start, if any is sure yet.
enum Recognised {
    NeedMore,
    Not,
    Is(Protocol),
}

/// One protocol the first bytes of a connection can start: who we are on
/// it, which way its first bytes go, how to tell, and how to start its
/// parser.
struct Recogniser {
    /// Our role on the connection (client: we connected; server: we accepted).
    role: Role,
    /// The first bytes go out (the client speaks first), or come in (the
    /// server greets first).
    outbound: bool,
    detect: fn(&[u8]) -> Detect,
    make: fn(Role) -> Protocol,
}

/// Every protocol traced, in the order they are tried. Adding one is one
/// line here (and its parser implementing [`Wire`]).
#[rustfmt::skip]
const RECOGNISERS: &[Recogniser] = &[
    // Our role, the first bytes go out, the recogniser, the parser.
    on(Role::Server, false, http::detect_request, new_http),
    on(Role::Client, true, http::detect_request, new_http),
    on(Role::Client, true, crate::redis::detect, |_| db(crate::redis::RedisConnection::new())),
    on(Role::Client, true, crate::postgres::detect, |_| db(crate::postgres::PgConnection::new())),
    on(Role::Client, true, crate::amqp::detect, |_| db(crate::amqp::AmqpConnection::new())),
    on(Role::Client, true, crate::mqtt::detect, |_| db(crate::mqtt::MqttConnection::new())),
    // The server speaks first.
    on(Role::Client, false, crate::mysql::detect_greeting, |_| db(crate::mysql::MysqlConnection::new())),
    on(Role::Client, false, crate::nats::detect, |_| db(crate::nats::NatsConnection::new())),
];

const fn on(
    role: Role,
    outbound: bool,
    detect: fn(&[u8]) -> Detect,
    make: fn(Role) -> Protocol,
) -> Recogniser {
    Recogniser {
        role,
        outbound,
        detect,
        make,
    }
}

fn new_http(role: Role) -> Protocol {
    Protocol::Http(Box::new(HttpConnection::new(role)))
}

fn db(wire: impl Wire + 'static) -> Protocol {
    Protocol::Db(Box::new(wire))
}

/// Recognises the protocol from the first bytes, in the direction they went.
fn recognise(role: Role, first: &[u8], outbound: bool) -> Recognised {
    let mut undecided = false;
    for r in RECOGNISERS {
        if r.role != role || r.outbound != outbound {
            continue;
        }
        match (r.detect)(first) {
            Detect::Yes => return Recognised::Is((r.make)(role)),
            Detect::NeedMore => undecided = true,
            Detect::No => {}
        }
    }
    if undecided && first.len() < DETECT_PREFIX {
        Recognised::NeedMore
    } else {
        Recognised::Not
    }
}

/// One tracked connection, from connect/accept to close.
pub struct Connection {
    role: Role,
    ends: http::Endpoints,
    protocol: Protocol,
    /// Reused buffer for finished exchanges, so a call that finishes nothing
    /// allocates nothing.
    done: Vec<HttpExchange>,
    /// The same, for database operations.
    ops: Vec<Operation>,
    /// Span identities of requests in flight, by exchange sequence number.
    assigned: VecDeque<(u64, Assigned)>,
    /// Sequence number of the next request to get an identity.
    next_seq: u64,
    /// Identity chosen for the outbound request head being written.
    planned: Option<Assigned>,
    /// App bytes sent so far.
    out_offset: u64,
    injection: Option<Injection>,
    replacement: Option<Replacement>,
    /// The identity in `planned` was chosen for a forwarded `traceparent`
    /// replaced in the head being written: the head's end keeps it.
    replaced_head: bool,
    /// A write was planned whose bytes have not been fed yet: it may be in
    /// the kernel already, and its response read on another thread.
    writing: bool,
    /// Response bytes that arrived before the request they answer was fed.
    held: Vec<u8>,
    /// The CONSUMER span of the last message received, while it is the
    /// reading thread's active context.
    consuming: Option<[u8; 8]>,
}

impl Connection {
    /// A connection the app opened with `connect` (we are the client).
    pub fn client(peer: Option<Address>, local: Option<Address>) -> Connection {
        Connection::new(Role::Client, peer, local)
    }

    /// A connection the app accepted (we are the server).
    pub fn server(peer: Option<Address>, local: Option<Address>) -> Connection {
        Connection::new(Role::Server, peer, local)
    }

    fn new(role: Role, peer: Option<Address>, local: Option<Address>) -> Connection {
        Connection {
            role,
            ends: http::Endpoints::new(peer, local),
            protocol: Protocol::Detecting {
                prefix: [0; DETECT_PREFIX],
                len: 0,
                outbound: true,
            },
            done: Vec::new(),
            ops: Vec::new(),
            assigned: VecDeque::new(),
            next_seq: 0,
            planned: None,
            out_offset: 0,
            injection: None,
            replacement: None,
            replaced_head: false,
            writing: false,
            held: Vec::new(),
            consuming: None,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Marks the connection's bytes as the plaintext inside TLS: spans say
    /// `https`, and `server_name` (SNI) names the server when the request
    /// does not.
    pub fn set_tls(&mut self, server_name: Option<String>) {
        self.ends.scheme = "https";
        if server_name.is_some() {
            self.ends.server_name = server_name;
        }
    }

    /// Fills in addresses learnt after the connection was created.
    pub fn set_addresses(&mut self, peer: Option<Address>, local: Option<Address>) {
        self.ends.peer = self.ends.peer.take().or(peer);
        self.ends.local = self.ends.local.take().or(local);
    }

    /// The app sent `data` (bytes the kernel accepted).
    pub fn on_outbound(&mut self, data: &[u8], now: SystemTime, tracer: &Tracer) -> Flow {
        self.out_offset += data.len() as u64;
        self.writing = false;
        let flow = self.feed(data, true, now, tracer);
        if flow == Flow::Stop || self.held.is_empty() || self.must_hold() {
            return flow;
        }
        // The request the held response answers is in: pair them.
        let held = std::mem::take(&mut self.held);
        self.feed(&held, false, now, tracer)
    }

    /// The app received `data`.
    ///
    /// On a client, a response can reach us before its request: the app
    /// writes on one thread and reads on another, and the write is fed only
    /// after the real call returns. Response bytes that arrive while a write
    /// is under way and no request awaits them are held back (up to
    /// `MAX_HELD`) until the write is fed, then paired with its request.
    pub fn on_inbound(&mut self, data: &[u8], now: SystemTime, tracer: &Tracer) -> Flow {
        if !data.is_empty() && (self.writing || !self.held.is_empty()) && self.must_hold() {
            if self.held.len() + data.len() <= MAX_HELD {
                self.held.extend_from_slice(data);
                return Flow::Continue;
            }
            // Too much to be the early answer to a write: as if not held.
            let held = std::mem::take(&mut self.held);
            if self.feed(&held, false, now, tracer) == Flow::Stop {
                return Flow::Stop;
            }
        }
        self.feed(data, false, now, tracer)
    }

    /// Whether inbound bytes now would find no request to answer on a
    /// client connection that may yet see one.
    fn must_hold(&self) -> bool {
        self.role == Role::Client
            && match &self.protocol {
                Protocol::Detecting { .. } => true,
                Protocol::Http(h) => !h.awaits_response(),
                _ => false,
            }
    }

    /// The app sent `n` bytes we cannot see (`sendfile`).
    pub fn on_outbound_opaque(&mut self, n: usize, now: SystemTime, tracer: &Tracer) -> Flow {
        match &mut self.protocol {
            Protocol::Http(h) => {
                let flow = h.on_outbound_opaque(n, now, &mut self.done);
                self.flush(tracer);
                flow
            }
            // Invisible bytes before we know the protocol: give up.
            _ => {
                self.protocol = Protocol::Ignored;
                Flow::Stop
            }
        }
    }

    /// The connection ended: the peer closed, the app closed, or the process exits.
    pub fn on_close(&mut self, now: SystemTime, reason: CloseReason, tracer: &Tracer) {
        if !self.held.is_empty() {
            // The write they waited for never came: they go as they are.
            let held = std::mem::take(&mut self.held);
            let _ = self.feed(&held, false, now, tracer);
        }
        match &mut self.protocol {
            Protocol::Http(h) => h.on_close(now, reason, &mut self.done),
            Protocol::Db(p) => p.close(now, reason, &mut self.ops),
            _ => {}
        }
        self.flush(tracer);
        if let Some(span_id) = self.consuming.take() {
            context::clear_active(span_id);
        }
        self.protocol = Protocol::Ignored;
    }

    /// Requests still waiting for their response.
    pub fn in_flight(&self) -> usize {
        match &self.protocol {
            Protocol::Http(h) => h.in_flight(),
            Protocol::Db(p) => p.in_flight(),
            _ => 0,
        }
    }

    fn feed(&mut self, data: &[u8], outbound: bool, now: SystemTime, tracer: &Tracer) -> Flow {
        if data.is_empty() {
            return Flow::Continue;
        }
        if let Protocol::Detecting {
            prefix,
            len,
            outbound: first_outbound,
        } = &mut self.protocol
        {
            if *len > 0 && *first_outbound != outbound {
                // Bytes went both ways before the protocol was clear.
                self.protocol = Protocol::Ignored;
                return Flow::Stop;
            }
            *first_outbound = outbound;
            let seen = *len;
            let take = data.len().min(DETECT_PREFIX - seen);
            prefix[seen..seen + take].copy_from_slice(&data[..take]);
            let earlier = *prefix;
            match recognise(self.role, &prefix[..seen + take], outbound) {
                Recognised::NeedMore => {
                    *len = seen + take;
                    return Flow::Continue;
                }
                Recognised::Not => {
                    self.protocol = Protocol::Ignored;
                    return Flow::Stop;
                }
                Recognised::Is(protocol) => {
                    self.protocol = protocol;
                    if seen > 0 && self.step(&earlier[..seen], outbound, now) == Flow::Stop {
                        self.flush(tracer);
                        self.protocol = Protocol::Ignored;
                        return Flow::Stop;
                    }
                }
            }
        }
        let mut flow = self.step(data, outbound, now);
        if let Protocol::Db(p) = &self.protocol {
            if p.now_tls() {
                flow = Flow::Stop;
            }
        }
        self.flush(tracer);
        if flow == Flow::Stop {
            self.protocol = Protocol::Ignored;
        }
        flow
    }

    /// Hands bytes to the connection's parser.
    fn step(&mut self, data: &[u8], outbound: bool, now: SystemTime) -> Flow {
        match (&mut self.protocol, outbound) {
            (Protocol::Http(h), true) => h.on_outbound(data, now, &mut self.done),
            (Protocol::Http(h), false) => h.on_inbound(data, now, &mut self.done),
            (Protocol::Db(p), true) => p.outbound(data, now, &mut self.ops),
            (Protocol::Db(p), false) => p.inbound(data, now, &mut self.ops),
            _ => Flow::Stop,
        }
    }

    /// Gives every request whose head just became known its span identity,
    /// then reports the finished exchanges.
    fn flush(&mut self, tracer: &Tracer) {
        if let Protocol::Http(h) = &self.protocol {
            for ex in h.pending() {
                if ex.seq >= self.next_seq {
                    self.next_seq = ex.seq + 1;
                    let (who, filtered) = identity_for(self.role, &mut self.planned, ex, tracer);
                    self.replaced_head = false;
                    if self.role == Role::Server {
                        let inbound = ex.traceparent.as_deref().and_then(parse_traceparent);
                        let inbound_parent = inbound
                            .filter(|tp| who.parent == Some(tp.span_id))
                            .map(|tp| tp.span_id);
                        context::set_active(&who.context, inbound_parent);
                        let baggage = ex.carriers.as_ref().and_then(|c| c.baggage.as_deref());
                        if let Some(b) = baggage.filter(|_| tracer.propagators.baggage) {
                            context::set_baggage(b.as_bytes());
                        }
                        if filtered {
                            context::set_filtered();
                        }
                        if let Some(c) = ex.carriers.as_ref().filter(|c| !c.tags.is_empty()) {
                            context::set_tags(&c.tags);
                        }
                    }
                    self.assigned.push_back((ex.seq, who));
                }
            }
        }
        for op in self.ops.drain(..) {
            if op.kind != SpanKind::Consumer {
                tracer.emit_operation(op, &self.ends, None);
                continue;
            }
            // A message received: the thread processes it until it reads
            // the next, so its span is the thread's active context for now.
            if let Some(previous) = self.consuming.take() {
                context::clear_active(previous);
            }
            // It continues the trace its headers carried, if any.
            let who = match &op.carried {
                Some((tp, ts)) if tracer.inject && parse_traceparent(tp).is_some() => {
                    tracer.server_span(Some(tp), ts.as_deref(), None)
                }
                _ => tracer.client_identity(),
            };
            context::set_active(&who.context, None);
            self.consuming = Some(who.context.span_id);
            tracer.emit_operation(op, &self.ends, Some(who));
        }
        let mut done = std::mem::take(&mut self.done);
        for ex in done.drain(..) {
            let who = match self.assigned.iter().position(|(seq, _)| *seq == ex.seq) {
                Some(i) => self.assigned.remove(i).map(|(_, who)| who),
                None => None,
            };
            let who = match who {
                Some(who) => who,
                None => {
                    self.next_seq = self.next_seq.max(ex.seq + 1);
                    identity_for(self.role, &mut self.planned, &ex, tracer).0
                }
            };
            if self.role == Role::Server {
                context::clear_active(who.context.span_id);
            }
            tracer.emit_http(&ex, self.role, &self.ends, who);
        }
        self.done = done;
    }

    /// Before the app's bytes go out on a client connection: the bytes to
    /// insert into this write, if a request head ends in it (or if an
    /// earlier partial write left part of an inserted line unsent); or the
    /// bytes to write in place of a forwarded `traceparent`'s value in it.
    pub fn plan_outbound(&mut self, pieces: &[&[u8]], tracer: &Tracer) -> Option<OutboundPlan> {
        if self.role != Role::Client {
            return None;
        }
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        if total == 0 {
            return None;
        }
        self.writing = true;
        if !tracer.inject {
            return None;
        }
        if let Some(inj) = &self.injection {
            if inj.sent < inj.line.len() && inj.at >= self.out_offset {
                let at = inj.at - self.out_offset;
                return (at < total as u64).then(|| OutboundPlan {
                    at: at as usize,
                    insert: inj.line[inj.sent..].to_vec(),
                    replace: 0,
                    offset: self.out_offset,
                });
            }
            if inj.sent == inj.line.len() && inj.at >= self.out_offset {
                // The line is out; the app's bytes after it are not yet.
                return None;
            }
            // Past it (or writes that do not add up: another thread wrote).
            self.injection = None;
        }
        if let Some(r) = &self.replacement {
            if r.at + r.bytes.len() as u64 > self.out_offset {
                // Not all of it out yet (a partial write, or a retry).
                return self.replacement_plan(total);
            }
            self.replacement = None;
        }
        let sent: SentHead<'_> = match &self.protocol {
            Protocol::Http(h) => h.outbound_request_head()?,
            Protocol::Detecting {
                prefix,
                len,
                outbound: true,
            } => {
                let mut probe = [0u8; DETECT_PREFIX];
                let mut n = *len;
                probe[..n].copy_from_slice(&prefix[..n]);
                for p in pieces {
                    let take = p.len().min(DETECT_PREFIX - n);
                    probe[n..n + take].copy_from_slice(&p[..take]);
                    n += take;
                }
                if !matches!(
                    recognise(self.role, &probe[..n], true),
                    Recognised::Is(Protocol::Http(_))
                ) {
                    return None;
                }
                let kept = &prefix[..*len];
                SentHead {
                    kept,
                    beyond: None,
                    after_lf: kept.last() == Some(&b'\n'),
                    after_lf_cr: kept.ends_with(b"\n\r"),
                }
            }
            _ => return None,
        };
        let forwarded = context::forwarded_parent()
            .filter(|_| !self.replaced_head && tracer.propagators.tracecontext);
        let scan = scan_head(sent, pieces, forwarded.is_some());
        if let (Some(value), Some(parent)) = (scan.traceparent, forwarded) {
            if let Some((who, bytes)) = replacement_for(&value, parent, tracer) {
                self.planned = Some(who);
                self.replaced_head = true;
                self.replacement = Some(Replacement {
                    at: self.out_offset + value.offset as u64,
                    bytes,
                });
                return self.replacement_plan(total);
            }
        }
        let found = scan.end?;
        if self.replaced_head {
            return None;
        }
        let who = tracer.client_span(found.traceparent.as_deref(), found.tracestate.as_deref());
        let line = (!found.leave_alone).then(|| {
            crate::propagators::outbound_lines(
                &tracer.propagators,
                &who.context,
                context::baggage().as_deref(),
                found.present,
                found.crlf,
            )
        });
        self.planned = Some(who);
        let line = line.filter(|l| !l.is_empty())?;
        self.injection = Some(Injection {
            at: self.out_offset + found.offset as u64,
            line: line.clone(),
            sent: 0,
        });
        Some(OutboundPlan {
            at: found.offset,
            insert: line,
            replace: 0,
            offset: self.out_offset,
        })
    }

    /// The part of the pending replacement that falls in a write of `total`
    /// bytes starting at the current stream position.
    fn replacement_plan(&self, total: usize) -> Option<OutboundPlan> {
        let r = self.replacement.as_ref()?;
        let start = r.at.max(self.out_offset);
        let at = usize::try_from(start - self.out_offset).ok()?;
        if at >= total {
            return None;
        }
        let skip = usize::try_from(start - r.at).ok()?;
        let rest = r.bytes.get(skip..)?;
        let n = rest.len().min(total - at);
        Some(OutboundPlan {
            at,
            insert: rest[..n].to_vec(),
            replace: n,
            offset: self.out_offset,
        })
    }

    /// After the real call for `plan` accepted `sent` bytes in all: how many
    /// of them were the app's. The caller then feeds those app bytes.
    pub fn commit_outbound(&mut self, plan: &OutboundPlan, sent: usize) -> usize {
        let (app, inserted) = plan.split_sent(sent);
        match &mut self.injection {
            Some(inj) if plan.offset == self.out_offset => inj.sent += inserted,
            _ => self.injection = None,
        }
        app
    }
}

/// When an outbound `traceparent` value is exactly the one the request the
/// thread serves arrived with (a proxy forwarding it): the identity of our
/// CLIENT span, a child of that request's SERVER span, and the value naming
/// it, as long as the one it replaces (so write counts stay the app's).
fn replacement_for(
    value: &ValueAt,
    (trace_id, parent): ([u8; 16], [u8; 8]),
    tracer: &Tracer,
) -> Option<(Assigned, Vec<u8>)> {
    let text = std::str::from_utf8(&value.value).ok()?;
    let tp = parse_traceparent(text)?;
    if tp.trace_id != trace_id || tp.span_id != parent {
        return None;
    }
    let who = tracer.client_span(None, None);
    let bytes = format_traceparent(&who.context).into_bytes();
    (bytes.len() == value.value.len() && who.context.trace_id == trace_id).then_some((who, bytes))
}

/// The span identity of a request whose head is known: a server continues
/// the request's trace; a client takes what was planned when its head was
/// written, or decides now. And whether a SERVER request matched an
/// endpoint filter (its context is then unsampled).
fn identity_for(
    role: Role,
    planned: &mut Option<Assigned>,
    ex: &HttpExchange,
    tracer: &Tracer,
) -> (Assigned, bool) {
    match role {
        Role::Server => {
            let mut who = tracer.server_span(
                ex.traceparent.as_deref(),
                ex.tracestate.as_deref(),
                ex.carriers.as_deref(),
            );
            let filtered = tracer.server_filtered(&ex.target);
            if filtered {
                who.context.trace_flags &= !1;
            }
            (who, filtered)
        }
        Role::Client => (
            planned.take().unwrap_or_else(|| {
                tracer.client_span(ex.traceparent.as_deref(), ex.tracestate.as_deref())
            }),
            false,
        ),
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
