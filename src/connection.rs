//! One tracked TCP connection: protocol recognition, parsing, span making.
//!
//! The preload library creates a [`Connection`] when the app connects or
//! accepts a TCP socket and feeds it every byte the app actually sent or
//! received on it. The first bytes in the request direction decide the
//! protocol; anything not recognised returns [`Flow::Stop`], after which the
//! preload stops looking at the fd at all (one array lookup per call).
//! Finished exchanges become [`SpanRecord`]s and go to the [`Tracer`]'s sink.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::SystemTime;

use crate::context;
use crate::http::inject::{header_lines, scan_head, SentHead, ValueAt};
use crate::http::{self, Detect, HttpConnection, HttpExchange, Role};
use crate::propagation::{format_traceparent, parse_traceparent};
use crate::protocol::Operation;

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
    /// A database or cache protocol (client side).
    Db(Box<dyn DbWire>),
    /// Not ours: the caller should already have stopped feeding us.
    Ignored,
}

/// The client-side database and cache parsers, seen alike.
trait DbWire: Send {
    fn outbound(&mut self, data: &[u8], now: SystemTime, done: &mut Vec<Operation>) -> Flow;
    fn inbound(&mut self, data: &[u8], now: SystemTime, done: &mut Vec<Operation>) -> Flow;
    fn close(&mut self, now: SystemTime, reason: CloseReason, done: &mut Vec<Operation>);
    fn in_flight(&self) -> usize;
    /// The connection moved to TLS: its raw bytes are ciphertext from now
    /// on (the plaintext comes through the TLS hooks, as a new connection).
    fn now_tls(&self) -> bool {
        false
    }
}

macro_rules! db_wire {
    ($t:ty, $tls:ident) => {
        impl DbWire for $t {
            fn outbound(&mut self, d: &[u8], now: SystemTime, done: &mut Vec<Operation>) -> Flow {
                self.on_outbound(d, now, done)
            }
            fn inbound(&mut self, d: &[u8], now: SystemTime, done: &mut Vec<Operation>) -> Flow {
                self.on_inbound(d, now, done)
            }
            fn close(&mut self, now: SystemTime, reason: CloseReason, done: &mut Vec<Operation>) {
                self.on_close(now, reason, done)
            }
            fn in_flight(&self) -> usize {
                <$t>::in_flight(self)
            }
            fn now_tls(&self) -> bool {
                db_wire!(@tls self, $tls)
            }
        }
    };
    (@tls $self:ident, none) => { false };
    (@tls $self:ident, $m:ident) => { $self.$m() };
}

db_wire!(crate::redis::RedisConnection, none);
db_wire!(crate::postgres::PgConnection, tls_accepted);
db_wire!(crate::mysql::MysqlConnection, tls_requested);

/// Which protocol a connection's first bytes start, if any is sure yet.
enum Recognised {
    NeedMore,
    Not,
    Is(Protocol),
}

/// A protocol's recogniser, and how to start its parser.
type Candidate = (fn(&[u8]) -> Detect, fn(Role) -> Protocol);

/// Recognises the protocol from the first bytes, in the direction they went.
fn recognise(role: Role, first: &[u8], outbound: bool) -> Recognised {
    let requests_outbound = role == Role::Client;
    if outbound != requests_outbound && role == Role::Server {
        return Recognised::Not;
    }
    let candidates: &[Candidate] = match (role, outbound) {
        (Role::Server, _) => &[(http::detect_request, |r| {
            Protocol::Http(Box::new(HttpConnection::new(r)))
        })],
        (Role::Client, true) => &[
            (http::detect_request, |r| {
                Protocol::Http(Box::new(HttpConnection::new(r)))
            }),
            (crate::redis::detect, |_| {
                Protocol::Db(Box::new(crate::redis::RedisConnection::new()))
            }),
            (crate::postgres::detect, |_| {
                Protocol::Db(Box::new(crate::postgres::PgConnection::new()))
            }),
        ],
        // The server spoke first.
        (Role::Client, false) => &[(crate::mysql::detect_greeting, |_| {
            Protocol::Db(Box::new(crate::mysql::MysqlConnection::new()))
        })],
    };
    let mut undecided = false;
    for (detect, make) in candidates {
        match detect(first) {
            Detect::Http => return Recognised::Is(make(role)),
            Detect::NeedMore => undecided = true,
            Detect::NotHttp => {}
        }
    }
    if undecided && first.len() < DETECT_PREFIX {
        Recognised::NeedMore
    } else {
        Recognised::Not
    }
}

/// One tracked TCP connection, from connect/accept to close.
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
}

impl Connection {
    /// A connection the app opened with `connect` (we are the client).
    pub fn client(peer: Option<SocketAddr>, local: Option<SocketAddr>) -> Connection {
        Connection::new(Role::Client, peer, local)
    }

    /// A connection the app accepted (we are the server).
    pub fn server(peer: Option<SocketAddr>, local: Option<SocketAddr>) -> Connection {
        Connection::new(Role::Server, peer, local)
    }

    fn new(role: Role, peer: Option<SocketAddr>, local: Option<SocketAddr>) -> Connection {
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
    pub fn set_addresses(&mut self, peer: Option<SocketAddr>, local: Option<SocketAddr>) {
        self.ends.peer = self.ends.peer.or(peer);
        self.ends.local = self.ends.local.or(local);
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
    /// [`MAX_HELD`]) until the write is fed, then paired with its request.
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
                    let who = identity_for(self.role, &mut self.planned, ex, tracer);
                    self.replaced_head = false;
                    if self.role == Role::Server {
                        let inbound = ex.traceparent.as_deref().and_then(parse_traceparent);
                        let inbound_parent = inbound
                            .filter(|tp| who.parent == Some(tp.span_id))
                            .map(|tp| tp.span_id);
                        context::set_active(&who.context, inbound_parent);
                    }
                    self.assigned.push_back((ex.seq, who));
                }
            }
        }
        for op in self.ops.drain(..) {
            tracer.emit_operation(op, &self.ends);
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
                    identity_for(self.role, &mut self.planned, &ex, tracer)
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
                }
            }
            _ => return None,
        };
        let forwarded = context::forwarded_parent().filter(|_| !self.replaced_head);
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
            let tp = format_traceparent(&who.context);
            header_lines(&tp, who.context.trace_state.as_deref(), found.crlf)
        });
        self.planned = Some(who);
        let line = line?;
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
/// written, or decides now.
fn identity_for(
    role: Role,
    planned: &mut Option<Assigned>,
    ex: &HttpExchange,
    tracer: &Tracer,
) -> Assigned {
    match role {
        Role::Server => tracer.server_span(ex.traceparent.as_deref(), ex.tracestate.as_deref()),
        Role::Client => planned.take().unwrap_or_else(|| {
            tracer.client_span(ex.traceparent.as_deref(), ex.tracestate.as_deref())
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::Masker;
    use crate::propagation::parse_traceparent;
    use crate::span::SpanRecord;
    use std::sync::{Arc, Mutex};

    #[derive(Default, Clone)]
    struct Collect(Arc<Mutex<Vec<SpanRecord>>>);
    impl SpanSink for Collect {
        fn submit(&self, span: SpanRecord) {
            self.0.lock().unwrap().push(span);
        }
    }

    fn tracer() -> (Tracer, Collect) {
        let c = Collect::default();
        let patterns: Vec<String> = crate::config::DEFAULT_SECRET_PATTERNS
            .iter()
            .map(|s| s.to_string())
            .collect();
        (Tracer::new(Masker::new(&patterns), Box::new(c.clone())), c)
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn client_exchange_split_into_single_bytes_makes_one_span() {
        let (t, spans) = tracer();
        let mut c = Connection::client(addr("127.0.0.1:8080"), addr("127.0.0.1:5555"));
        let now = SystemTime::now();
        for b in b"GET /a?token=s HTTP/1.1\r\nHost: example\r\n\r\n".chunks(1) {
            assert!(matches!(c.on_outbound(b, now, &t), Flow::Continue));
        }
        assert_eq!(c.in_flight(), 1);
        for b in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi".chunks(1) {
            assert!(matches!(c.on_inbound(b, now, &t), Flow::Continue));
        }
        let spans = spans.0.lock().unwrap();
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.name, "GET");
        assert_eq!(s.attr("url.query"), Some(&"token=****".into()));
        assert_eq!(s.attr("http.response.status_code"), Some(&200i64.into()));
    }

    #[test]
    fn server_speaking_first_is_not_http() {
        let (t, spans) = tracer();
        let mut c = Connection::client(addr("127.0.0.1:25"), None);
        let flow = c.on_inbound(
            b"220 mail.example.com ESMTP ready\r\n",
            SystemTime::now(),
            &t,
        );
        assert!(matches!(flow, Flow::Stop));
        assert!(spans.0.lock().unwrap().is_empty());
    }

    #[test]
    fn tls_client_hello_is_not_http() {
        let (t, _) = tracer();
        let mut c = Connection::client(addr("127.0.0.1:443"), None);
        let flow = c.on_outbound(b"\x16\x03\x01\x02\x00\x01", SystemTime::now(), &t);
        assert!(matches!(flow, Flow::Stop));
    }

    #[test]
    fn close_with_request_in_flight_reports_error() {
        let (t, spans) = tracer();
        let mut c = Connection::server(addr("127.0.0.1:40000"), addr("127.0.0.1:8000"));
        let now = SystemTime::now();
        let _ = c.on_inbound(b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", now, &t);
        c.on_close(now, CloseReason::Closed, &t);
        let spans = spans.0.lock().unwrap();
        assert_eq!(spans.len(), 1);
        assert!(spans[0].attr("error.type").is_some());
    }

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn server_continues_the_request_trace_and_client_calls_become_children() {
        let (t, spans) = tracer();
        let now = SystemTime::now();
        let mut server = Connection::server(addr("127.0.0.1:40000"), addr("127.0.0.1:8000"));
        let req = format!("GET /in HTTP/1.1\r\ntraceparent: {TP}\r\ntracestate: k=v\r\n\r\n");
        let _ = server.on_inbound(req.as_bytes(), now, &t);

        // While serving, this thread calls downstream.
        let mut client = Connection::client(addr("127.0.0.1:9000"), None);
        let head = b"GET /down HTTP/1.1\r\nHost: d\r\n\r\n";
        let plan = client.plan_outbound(&[head], &t).expect("inject");
        assert_eq!(plan.at, head.len() - 2);
        let line = String::from_utf8(plan.insert.clone()).unwrap();
        assert!(
            line.starts_with("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{line}"
        );
        assert!(line.ends_with("-01\r\ntracestate: k=v\r\n"), "{line}");
        assert_eq!(
            client.commit_outbound(&plan, head.len() + plan.insert.len()),
            head.len()
        );
        let _ = client.on_outbound(head, now, &t);
        let _ = client.on_inbound(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", now, &t);
        let _ = server.on_outbound(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", now, &t);
        assert_eq!(
            context::active(),
            None,
            "the response ends the active request"
        );

        let spans = spans.0.lock().unwrap();
        let (c, s) = (&spans[0], &spans[1]);
        assert_eq!(s.kind, crate::span::SpanKind::Server);
        assert_eq!(
            crate::span::hex(&s.context.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            s.parent_span_id.map(|p| crate::span::hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(s.parent_is_remote);
        assert_eq!(c.context.trace_id, s.context.trace_id);
        assert_eq!(c.parent_span_id, Some(s.context.span_id));
        let injected_span = &line[49..65];
        assert_eq!(
            injected_span,
            crate::span::hex(&c.context.span_id),
            "the line names the client span"
        );
    }

    #[test]
    fn partial_writes_send_the_line_exactly_once() {
        let (t, _) = tracer();
        let mut c = Connection::client(addr("127.0.0.1:9000"), None);
        let head: &[u8] = b"GET / HTTP/1.1\r\nHost: d\r\n\r\n";
        let plan = c.plan_outbound(&[head], &t).unwrap();
        let (k, m) = (plan.at, plan.insert.len());
        // The kernel takes the app bytes before the line and 10 line bytes.
        assert_eq!(c.commit_outbound(&plan, k + 10), k);
        let _ = c.on_outbound(&head[..k], SystemTime::now(), &t);
        // The app retries with the rest: the rest of the line goes first.
        let plan2 = c.plan_outbound(&[&head[k..]], &t).unwrap();
        assert_eq!(plan2.at, 0);
        assert_eq!(plan2.insert, plan.insert[10..]);
        assert_eq!(c.commit_outbound(&plan2, m - 10), 0);
        let plan3 = c.plan_outbound(&[&head[k..]], &t);
        assert_eq!(plan3, None, "the whole line is out: nothing more to insert");
    }

    #[test]
    fn an_apps_own_traceparent_is_kept_and_becomes_the_parent() {
        let (t, spans) = tracer();
        let now = SystemTime::now();
        let mut c = Connection::client(addr("127.0.0.1:9000"), None);
        let head = format!("GET / HTTP/1.1\r\nTRACEPARENT: {TP}\r\n\r\n");
        assert_eq!(c.plan_outbound(&[head.as_bytes()], &t), None);
        let _ = c.on_outbound(head.as_bytes(), now, &t);
        let _ = c.on_inbound(b"HTTP/1.1 204 No Content\r\n\r\n", now, &t);
        let spans = spans.0.lock().unwrap();
        assert_eq!(
            crate::span::hex(&spans[0].parent_span_id.unwrap()),
            "00f067aa0ba902b7"
        );
    }

    #[test]
    fn unsampled_traces_are_not_exported_but_propagate() {
        let (t, spans) = tracer();
        let now = SystemTime::now();
        let mut s = Connection::server(addr("127.0.0.1:40000"), None);
        let tp = TP.replace("-01", "-00");
        let _ = s.on_inbound(
            format!("GET / HTTP/1.1\r\ntraceparent: {tp}\r\n\r\n").as_bytes(),
            now,
            &t,
        );
        let mut c = Connection::client(addr("127.0.0.1:9000"), None);
        let plan = c.plan_outbound(&[b"GET / HTTP/1.1\r\n\r\n"], &t).unwrap();
        assert!(String::from_utf8_lossy(&plan.insert).contains("-00\r\n"));
        let _ = s.on_outbound(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", now, &t);
        assert!(spans.0.lock().unwrap().is_empty());
    }

    #[test]
    fn environment_parent_adopts_root_spans() {
        let c = Collect::default();
        let t = Tracer::new(Masker::lumigo_defaults(), Box::new(c.clone()))
            .with_root(parse_traceparent(TP), Some("e=1".into()));
        let a = t.root_span();
        assert_eq!(
            crate::span::hex(&a.context.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(a.parent_is_remote);
        assert_eq!(a.context.trace_state.as_deref(), Some("e=1"));
    }

    /// Sends `head` as the preload does: plan, the real write taking
    /// `sent` bytes of the combined write, commit, feed the app's bytes.
    /// Returns the plan and how many app bytes went.
    fn write(
        c: &mut Connection,
        head: &[u8],
        sent: Option<usize>,
        t: &Tracer,
    ) -> (Option<OutboundPlan>, usize) {
        let plan = c.plan_outbound(&[head], t);
        let wire = head.len() + plan.as_ref().map_or(0, |p| p.insert.len() - p.replace);
        let sent = sent.unwrap_or(wire).min(wire);
        let app = match &plan {
            Some(p) => c.commit_outbound(p, sent),
            None => sent,
        };
        let _ = c.on_outbound(&head[..app], SystemTime::now(), t);
        (plan, app)
    }

    fn cookie_head(cookie: usize, tail: &str) -> Vec<u8> {
        let mut h = b"GET /big HTTP/1.1\r\nHost: h\r\nCookie: c=".to_vec();
        h.resize(h.len() + cookie, b'j');
        h.extend_from_slice(format!("\r\n{tail}\r\n").as_bytes());
        h
    }

    #[test]
    fn a_request_head_over_16_kib_gets_a_traceparent_and_an_ordinary_span() {
        let (t, spans) = tracer();
        let mut c = Connection::client(addr("127.0.0.1:9000"), None);
        let head = cookie_head(40 * 1024, "Accept: */*\r\n");
        for round in 0..3 {
            // The head in two writes, split before and after the cap.
            let split = [100, crate::http::MAX_HEAD_BYTES + 5, head.len() - 3][round];
            let (p1, _) = write(&mut c, &head[..split], None, &t);
            let (p2, _) = write(&mut c, &head[split..], None, &t);
            let plan = p1.or(p2).expect("a traceparent is inserted");
            let line = String::from_utf8(plan.insert).unwrap();
            let _ = c.on_inbound(
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                SystemTime::now(),
                &t,
            );
            let spans = spans.0.lock().unwrap();
            assert_eq!(
                spans.len(),
                round + 1,
                "round {round}: the connection stays traced"
            );
            let s = &spans[round];
            assert_eq!(s.attr("http.response.status_code"), Some(&200i64.into()));
            assert_eq!(s.attr("error.type"), None);
            assert_eq!(s.attr("url.path"), Some(&"/big".into()));
            assert_eq!(&line[49..65], crate::span::hex(&s.context.span_id));
        }
    }

    const FORWARDED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// A server connection on this thread serving a request that came with
    /// [`FORWARDED`].
    fn serving(t: &Tracer) -> Connection {
        let mut server = Connection::server(addr("127.0.0.1:40000"), addr("127.0.0.1:8000"));
        let req = format!("GET /in HTTP/1.1\r\nTraceparent: {FORWARDED}\r\n\r\n");
        let _ = server.on_inbound(req.as_bytes(), SystemTime::now(), t);
        server
    }

    #[test]
    fn a_proxy_forwarding_the_inbound_traceparent_gets_it_replaced_in_place() {
        let (t, spans) = tracer();
        let mut server = serving(&t);
        let head =
            format!("GET /up HTTP/1.1\r\nHost: u\r\ntraceparent: {FORWARDED}\r\nX: y\r\n\r\n");
        let value_at = head.find(FORWARDED).unwrap();
        // Every way a partial write can cut the value.
        for cut in [
            0,
            value_at,
            value_at + 1,
            value_at + 30,
            value_at + 54,
            head.len(),
        ] {
            let mut c = Connection::client(addr("127.0.0.1:9000"), None);
            let mut wire = Vec::new();
            let mut sent = 0;
            let mut first = true;
            while sent < head.len() {
                let rest = &head.as_bytes()[sent..];
                let plan = c.plan_outbound(&[rest], &t);
                let mut combined = rest.to_vec();
                if let Some(p) = &plan {
                    assert_eq!(p.insert.len(), p.replace, "same length");
                    combined.splice(p.at..p.at + p.replace, p.insert.iter().copied());
                }
                let take = if first {
                    (cut - sent).max(1).min(rest.len())
                } else {
                    rest.len()
                };
                first = false;
                wire.extend_from_slice(&combined[..take]);
                let app = plan.as_ref().map_or(take, |p| c.commit_outbound(p, take));
                assert_eq!(app, take, "counts are the app's");
                let _ = c.on_outbound(&rest[..app], SystemTime::now(), &t);
                sent += app;
            }
            assert_eq!(wire.len(), head.len());
            let wire = String::from_utf8(wire).unwrap();
            let _ = c.on_inbound(
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                SystemTime::now(),
                &t,
            );
            let spans = spans.0.lock().unwrap();
            let client = spans.last().unwrap();
            let ours = format_traceparent(&client.context);
            assert_eq!(wire, head.replace(FORWARDED, &ours), "cut {cut}");
            assert_eq!(
                crate::span::hex(&client.context.trace_id),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            assert_eq!(
                client.parent_span_id,
                Some(context::active().unwrap().span_id),
                "child of our SERVER span"
            );
        }
        let _ = server.on_outbound(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            SystemTime::now(),
            &t,
        );
        assert_eq!(context::forwarded_parent(), None);
    }

    #[test]
    fn a_traceparent_the_app_made_itself_is_not_replaced() {
        let (t, spans) = tracer();
        let mut server = serving(&t);
        let own = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";
        let mut c = Connection::client(addr("127.0.0.1:9000"), None);
        let head = format!("GET / HTTP/1.1\r\ntraceparent: {own}\r\n\r\n");
        let (plan, _) = write(&mut c, head.as_bytes(), None, &t);
        assert_eq!(plan, None);
        let _ = c.on_inbound(b"HTTP/1.1 204 No Content\r\n\r\n", SystemTime::now(), &t);
        let _ = server.on_outbound(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            SystemTime::now(),
            &t,
        );
        let spans = spans.0.lock().unwrap();
        assert_eq!(
            crate::span::hex(&spans[0].parent_span_id.unwrap()),
            "1111111111111111"
        );
        // Without an inbound request, the forwarded value is just a value.
        let mut c = Connection::client(addr("127.0.0.1:9000"), None);
        let head = format!("GET / HTTP/1.1\r\ntraceparent: {FORWARDED}\r\n\r\n");
        assert_eq!(write(&mut c, head.as_bytes(), None, &t).0, None);
    }

    #[test]
    fn a_response_read_before_its_request_was_fed_still_pairs() {
        let (t, spans) = tracer();
        let mut c = Connection::client(addr("127.0.0.1:9000"), None);
        let now = SystemTime::now();
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        for (i, req) in [&b"GET /1 HTTP/1.1\r\n\r\n"[..], b"GET /2 HTTP/1.1\r\n\r\n"]
            .iter()
            .enumerate()
        {
            // The write is planned and goes out; another thread reads the
            // response before this one feeds the request.
            let plan = c.plan_outbound(&[req], &t).unwrap();
            for piece in ok.chunks(7) {
                assert_eq!(c.on_inbound(piece, now, &t), Flow::Continue);
            }
            let app = c.commit_outbound(&plan, req.len() + plan.insert.len());
            assert_eq!(c.on_outbound(&req[..app], now, &t), Flow::Continue);
            let spans = spans.0.lock().unwrap();
            assert_eq!(spans.len(), i + 1, "request {i} has its span");
            let s = &spans[i];
            assert_eq!(s.attr("http.response.status_code"), Some(&200i64.into()));
            assert_eq!(s.attr("http.response.body.size"), Some(&2i64.into()));
            let line = String::from_utf8_lossy(&plan.insert);
            assert_eq!(&line[49..65], crate::span::hex(&s.context.span_id));
        }
        // A response with no write under way is not held: no span is made up.
        assert_eq!(c.on_inbound(ok, now, &t), Flow::Stop);
        assert_eq!(spans.0.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_held_response_whose_write_never_went_out_makes_no_span() {
        let (t, spans) = tracer();
        let now = SystemTime::now();
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        // The write is planned and fails (EAGAIN, EPIPE): nothing is fed.
        let mut c = Connection::client(addr("127.0.0.1:9000"), None);
        let _ = c.plan_outbound(&[b"GET / HTTP/1.1\r\n\r\n"], &t);
        assert_eq!(c.on_inbound(ok, now, &t), Flow::Continue, "held");
        c.on_close(now, CloseReason::PeerClosed, &t);
        assert!(spans.0.lock().unwrap().is_empty(), "no span made up");
        // More than a response could be: not held, as before.
        let mut c = Connection::client(addr("127.0.0.1:9000"), None);
        let _ = c.on_outbound(b"GET /a HTTP/1.1\r\n\r\n", now, &t);
        let _ = c.on_inbound(ok, now, &t);
        let _ = c.plan_outbound(&[b"GET /b HTTP/1.1\r\n\r\n"], &t);
        let flood = vec![b'x'; MAX_HELD + 1];
        assert_eq!(c.on_inbound(&flood, now, &t), Flow::Stop);
        assert_eq!(spans.0.lock().unwrap().len(), 1, "only /a");
    }
}
