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
//! that value replaced in place by one naming our CLIENT span. On a message
//! broker's connection, each published message's header is rewritten to
//! carry its PRODUCER span's context (see `Wire::plan_edits`): a plan of
//! several edits, each of whose app bytes count as written only once all
//! of it is out. And since a
//! planned write is fed only once the real call returns, a response read on
//! another thread meanwhile is held until its request is in.

use std::collections::VecDeque;
use std::time::SystemTime;

use crate::address::Address;
use crate::capture::Stamp;
use crate::context;
use crate::http::inject::{scan_head, SentHead, ValueAt};
use crate::http::{self, Detect, HttpConnection, HttpExchange, Role};
use crate::propagation::{format_traceparent, parse_traceparent};
use crate::protocol::{Operation, Wire};
use crate::span::{SpanContext, SpanKind, SpanLink};

pub use crate::tracer::{Assigned, SpanSink, Tracer};

pub use crate::http::{CloseReason, Flow};

/// One change to the app's bytes in an outbound write: the `replace` app
/// bytes at `at` go out as `insert` instead (`replace` 0: an insertion).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    /// App bytes of this write before the edit.
    pub at: usize,
    /// App bytes at `at` that `insert` stands in for.
    pub replace: usize,
    /// The bytes that go out in their place (what is left of them after a
    /// partial write).
    pub insert: Vec<u8>,
}

/// The edits to one outbound write, planned before the real call, in
/// order and not overlapping. The wire carries the app's bytes with each
/// edit applied.
///
/// Two kinds. A *single* plan (HTTP's) is one insertion, or one
/// replacement by as many bytes, whose bytes a partial write may cut
/// anywhere (an insertion's rest goes out first on the retry; a
/// replacement is one for one). Any other plan (a broker message's
/// headers, which several fields' sizes must follow) is *atomic per edit*:
/// the app's bytes an edit replaces count as written only once all of its
/// bytes are out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundPlan {
    edits: Vec<Edit>,
    single: bool,
    /// Outbound stream position when planned.
    offset: u64,
}

/// What a real call that took `sent` bytes of a planned write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accounted {
    /// The app's bytes that went out (the count the app is told).
    pub app: usize,
    /// Edits whose bytes all went out.
    pub edits_done: usize,
    /// Bytes of the next edit that went out, if the call stopped inside it
    /// (its app bytes are then not counted: the rest must follow).
    pub cut: Option<usize>,
}

impl OutboundPlan {
    /// One insertion (`replace` 0) or one replacement by as many bytes
    /// (`replace == insert.len()`) at `at`, planned at stream `offset`.
    pub fn single(at: usize, insert: Vec<u8>, replace: usize, offset: u64) -> OutboundPlan {
        OutboundPlan {
            edits: vec![Edit {
                at,
                replace,
                insert,
            }],
            single: true,
            offset,
        }
    }

    /// Several edits (see the type's docs), in order; `None` if there are
    /// none or they overlap.
    pub fn edits_at(edits: Vec<Edit>, offset: u64) -> Option<OutboundPlan> {
        let mut end = 0;
        for e in &edits {
            if e.at < end {
                return None;
            }
            end = e.at.checked_add(e.replace)?;
        }
        (!edits.is_empty()).then_some(OutboundPlan {
            edits,
            single: false,
            offset,
        })
    }

    /// One insertion or one same-length replacement (HTTP's plans).
    pub fn is_single(&self) -> bool {
        self.single
    }

    pub fn edits(&self) -> &[Edit] {
        &self.edits
    }

    /// The (first) edit's position in the app's bytes.
    pub fn at(&self) -> usize {
        self.edits[0].at
    }

    /// The (first) edit's bytes.
    pub fn insert(&self) -> &[u8] {
        &self.edits[0].insert
    }

    /// The app bytes the (first) edit stands in for.
    pub fn replace(&self) -> usize {
        self.edits[0].replace
    }

    /// The app's bytes after the last edit start here.
    pub fn resume(&self) -> usize {
        self.edits.last().map_or(0, |e| e.at + e.replace)
    }

    /// The bytes that go out for the app's `app` with these edits; `None`
    /// if they do not fit it.
    pub fn apply(&self, app: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(self.wire_len(app.len()));
        let mut pos = 0;
        for e in &self.edits {
            out.extend_from_slice(app.get(pos..e.at)?);
            out.extend_from_slice(&e.insert);
            pos = e.at.checked_add(e.replace)?;
        }
        out.extend_from_slice(app.get(pos..)?);
        Some(out)
    }

    /// The wire length of a write of `total` app bytes with these edits.
    pub fn wire_len(&self, total: usize) -> usize {
        self.edits
            .iter()
            .fold(total, |n, e| n.saturating_sub(e.replace) + e.insert.len())
    }

    /// Of `sent` bytes the kernel took from a single plan's write: the
    /// app's bytes, and the inserted ones.
    pub fn split_sent(&self, sent: usize) -> (usize, usize) {
        let (k, m) = (self.at(), self.insert().len());
        if self.replace() > 0 {
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

    /// After a call that stopped inside an edit (`accounted.cut`): the
    /// plan for the rest of the write, from the first of the app's bytes
    /// not counted (the edit's rest first). What the connection would plan
    /// again, known without asking it, so that an edit begun is always
    /// finished.
    pub fn remainder(&self, accounted: &Accounted) -> Option<OutboundPlan> {
        let cut = accounted.cut?;
        let base = accounted.app;
        let mut edits = Vec::with_capacity(self.edits.len() - accounted.edits_done);
        for (i, e) in self.edits.iter().enumerate().skip(accounted.edits_done) {
            let skip = if i == accounted.edits_done { cut } else { 0 };
            edits.push(Edit {
                at: e.at.checked_sub(base)?,
                replace: e.replace,
                insert: e.insert.get(skip..)?.to_vec(),
            });
        }
        OutboundPlan::edits_at(edits, self.offset + base as u64)
    }

    /// Of `sent` bytes the kernel took from the edited write: the app's
    /// bytes, the edits that went out whole, and how much of the one it
    /// stopped inside.
    pub fn account(&self, sent: usize) -> Accounted {
        if self.single {
            // Not atomic: see `split_sent`.
            return Accounted {
                app: self.split_sent(sent).0,
                edits_done: 0,
                cut: None,
            };
        }
        let (mut app, mut left, mut pos) = (0, sent, 0);
        for (i, e) in self.edits.iter().enumerate() {
            let before = e.at - pos;
            if left < before || (left == before && !e.insert.is_empty()) {
                return Accounted {
                    app: app + left,
                    edits_done: i,
                    cut: None,
                };
            }
            app += before;
            left -= before;
            if left < e.insert.len() {
                return Accounted {
                    app,
                    edits_done: i,
                    cut: Some(left),
                };
            }
            left -= e.insert.len();
            app += e.replace;
            pos = e.at + e.replace;
        }
        Accounted {
            app: app + left,
            edits_done: self.edits.len(),
            cut: None,
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

/// A published message's rewritten header on its way into the outbound
/// stream (see `Wire::plan_edits`).
struct PendingEdit {
    /// Stream position (in app bytes) of the first byte it replaces.
    at: u64,
    replace: usize,
    bytes: Vec<u8>,
    /// How many of its bytes the kernel has taken.
    sent: usize,
    /// The PRODUCER span its context names.
    span_id: [u8; 8],
}

/// Most bytes of one write searched for messages to carry a context.
const MAX_EDIT_SCAN: usize = 1 << 20;

/// Most PRODUCER identities waiting for their message to be reported;
/// past it, messages go as they are (their spans are still made).
const MAX_PRODUCED: usize = 1024;

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
    /// HTTP followed on the app's thread for the capture thread to parse
    /// (see [`crate::capture`]).
    Framed(Box<front::Framed>),
    /// A database, cache or message broker protocol (client side).
    Db(Box<dyn Wire>),
    /// A database protocol followed on the app's thread for the capture
    /// thread to parse (see [`crate::protocol::Compact`]).
    Compact(Box<front::CompactConn>),
    /// Not ours: the caller should already have stopped feeding us.
    Ignored,
}

crate::protocol::wire!(crate::redis::RedisConnection, none, compact);
crate::protocol::wire!(crate::postgres::PgConnection, tls_accepted, compact);
crate::protocol::wire!(crate::mysql::MysqlConnection, tls_requested, compact);
crate::protocol::wire!(crate::amqp::AmqpConnection, none, messages);
crate::protocol::wire!(crate::mqtt::MqttConnection, none, messages);
crate::protocol::wire!(crate::nats::NatsConnection, none, messages);

/// Replay: the identity of an operation that started at `start`, from
/// those given with the app's bytes: the last one given by then (or the
/// first, if none was), with a span id of its own if an earlier
/// operation took it. Those given before it are not needed again.
fn replayed_identity(mode: &mut Mode, start: SystemTime) -> Option<(Assigned, Vec<(u8, String)>)> {
    let Mode::Replay(given) = mode else {
        return None;
    };
    let i = given.iter().rposition(|g| g.at <= start).unwrap_or(0);
    given.drain(..i);
    let g = given.front_mut()?;
    let mut who = g.who.clone();
    if std::mem::replace(&mut g.taken, true) {
        who.context.span_id = crate::ids::span_id();
    }
    Some((who, g.tags.clone()))
}

/// On the capture thread: the identity the app's thread chose for a
/// message received by the call at `at` (see [`Compacted::messages`]), the
/// first not yet taken.
///
/// [`Compacted::messages`]: crate::protocol::Compacted
fn given_for_message(mode: &mut Mode, at: SystemTime) -> Option<(Assigned, Vec<(u8, String)>)> {
    let Mode::Replay(given) = mode else {
        return None;
    };
    let i = given.iter().position(|g| g.at == at && !g.taken)?;
    given.remove(i).map(|g| (g.who, g.tags))
}

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
    // MySQL's plaintext through TLS: the greeting went before, on the socket.
    on(Role::Client, true, crate::mysql::detect_tls_login, |_| db(crate::mysql::MysqlConnection::after_tls())),
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

/// Where a connection's HTTP is parsed.
enum Mode {
    /// Here, as the bytes are fed (and spans made here).
    Direct,
    /// Framed here, recorded for the capture thread.
    Capture(Box<front::Recorder>),
    /// Here, from records: identities come with them.
    Replay(VecDeque<Given>),
}

/// A span identity chosen on the app's thread, with the execution tags of
/// its local parent.
struct Given {
    who: Assigned,
    tags: Vec<(u8, String)>,
    /// When the app's thread chose it (a database operation started then
    /// or later takes it).
    at: SystemTime,
    /// A database operation took it: the next one gets its own span id.
    taken: bool,
}

/// One tracked connection, from connect/accept to close.
pub struct Connection {
    role: Role,
    mode: Mode,
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
    /// Replay: the execution tags given with each request's identity.
    parent_tags: VecDeque<(u64, Vec<(u8, String)>)>,
    /// Broker messages' rewritten headers not yet all out, in order.
    message_edits: VecDeque<PendingEdit>,
    /// Stream position up to which writes were searched for messages.
    planned_to: u64,
    /// The identities of PRODUCER spans whose context went into messages,
    /// until their operations are reported.
    produced: VecDeque<Assigned>,
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

    /// A connection whose HTTP is framed on the app's thread and parsed
    /// on the capture thread (`capture`'s records).
    pub fn captured(
        role: Role,
        peer: Option<Address>,
        local: Option<Address>,
        capture: &'static crate::capture::Capture,
    ) -> Connection {
        let mut c = Connection::new(role, peer, local);
        c.mode = Mode::Capture(Box::new(front::Recorder::new(capture)));
        c
    }

    /// The capture thread's copy of a captured connection.
    pub fn replay(role: Role, peer: Option<Address>, local: Option<Address>) -> Connection {
        let mut c = Connection::new(role, peer, local);
        c.mode = Mode::Replay(VecDeque::new());
        c
    }

    /// An identity chosen on the app's thread at `at`: for the next request
    /// head (HTTP), or for the operations that start from then on (until
    /// the next is given; databases).
    pub fn give_identity(&mut self, who: Assigned, tags: Vec<(u8, String)>, at: SystemTime) {
        if let Mode::Replay(given) = &mut self.mode {
            // No more wait than requests a connection keeps in flight: where
            // the parser stopped and the app's thread framed on (bytes the
            // framer accepts and httparse does not), they are never taken.
            if given.len() > 2 * http::MAX_IN_FLIGHT {
                given.pop_front();
            }
            given.push_back(Given {
                who,
                tags,
                at,
                taken: false,
            });
        }
    }

    /// Records were lost: forget what was in flight (nothing is reported
    /// for it) and start again at a head.
    pub fn resync(&mut self) {
        if let Mode::Replay(given) = &mut self.mode {
            given.clear();
        }
        self.assigned.clear();
        self.held.clear();
        self.done.clear();
        if let Protocol::Http(h) = &mut self.protocol {
            // Afresh, but capturing payloads as before.
            let limit = h.payload_limit();
            let mut fresh = HttpConnection::new(self.role);
            fresh.capture_payloads(limit);
            **h = fresh;
        }
    }

    /// Body bytes recorded as skipped (capture): `wire` bytes, bringing the
    /// body's content to `total`, and whether it ended.
    pub fn on_skipped(
        &mut self,
        outbound: bool,
        wire: u64,
        total: u64,
        ended: bool,
        now: SystemTime,
        tracer: &Tracer,
    ) -> Flow {
        let Protocol::Http(h) = &mut self.protocol else {
            return Flow::Continue;
        };
        let flow = h.on_skipped(outbound, wire, total, ended, now, &mut self.done);
        self.flush(tracer);
        flow
    }

    fn new(role: Role, peer: Option<Address>, local: Option<Address>) -> Connection {
        Connection {
            role,
            mode: Mode::Direct,
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
            parent_tags: VecDeque::new(),
            message_edits: VecDeque::new(),
            planned_to: 0,
            produced: VecDeque::new(),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether any byte went either way yet. A `connect` on an fd whose
    /// connection has traffic is a new socket under a reused number: the
    /// app closed the old one without `close` (libuv, hence Node.js, closes
    /// with `syscall(SYS_close)`).
    pub fn has_traffic(&self) -> bool {
        self.out_offset > 0
            || !matches!(self.protocol, Protocol::Detecting { len: 0, .. })
            || self.next_seq > 0
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
        self.ends.fill(peer, local);
    }

    /// The app sent `data` (bytes the kernel accepted).
    pub fn on_outbound(&mut self, data: &[u8], now: impl Into<Stamp>, tracer: &Tracer) -> Flow {
        let now = now.into();
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
    pub fn on_inbound(&mut self, data: &[u8], now: impl Into<Stamp>, tracer: &Tracer) -> Flow {
        let now = now.into();
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
                Protocol::Framed(f) => !f.awaits_response(),
                _ => false,
            }
    }

    /// The app sent `n` bytes we cannot see (`sendfile`).
    pub fn on_outbound_opaque(&mut self, n: usize, now: SystemTime, tracer: &Tracer) -> Flow {
        if let Protocol::Framed(_) = self.protocol {
            return self.framed_opaque(n, now);
        }
        match &mut self.protocol {
            Protocol::Http(h) => {
                let flow = h.on_outbound_opaque(n, now, &mut self.done);
                self.flush(tracer);
                flow
            }
            // Bytes a length-framed protocol cannot do without: it ends
            // here, what was in flight reported as cut short.
            Protocol::Db(p) => {
                p.close(now, CloseReason::Closed, &mut self.ops);
                self.flush(tracer);
                self.protocol = Protocol::Ignored;
                Flow::Stop
            }
            Protocol::Compact(_) => {
                self.compact_close(now, CloseReason::Closed);
                self.protocol = Protocol::Ignored;
                Flow::Stop
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
            let _ = self.feed(&held, false, now.into(), tracer);
        }
        match &mut self.protocol {
            Protocol::Http(h) => h.on_close(now, reason, &mut self.done),
            Protocol::Db(p) => p.close(now, reason, &mut self.ops),
            Protocol::Framed(_) => self.framed_close(now, reason, None),
            Protocol::Compact(_) => self.compact_close(now, reason),
            _ => {}
        }
        self.flush(tracer);
        if let Some(span_id) = self.consuming.take() {
            context::clear_active(span_id);
        }
        self.protocol = Protocol::Ignored;
    }

    /// Whether a write may yet have bytes inserted (see
    /// [`Connection::plan_outbound`]): false once the protocol is one that
    /// takes none (a database or cache; a message broker takes contexts
    /// into its messages).
    pub fn may_insert(&self) -> bool {
        self.role == Role::Client
            && match &self.protocol {
                Protocol::Db(p) => p.takes_edits(),
                Protocol::Compact(_) | Protocol::Ignored => false,
                _ => true,
            }
    }

    /// Requests still waiting for their response.
    pub fn in_flight(&self) -> usize {
        match &self.protocol {
            Protocol::Http(h) => h.in_flight(),
            Protocol::Framed(f) => f.in_flight(),
            Protocol::Db(p) => p.in_flight(),
            Protocol::Compact(c) => c.in_flight(),
            _ => 0,
        }
    }

    fn feed(&mut self, data: &[u8], outbound: bool, now: Stamp, tracer: &Tracer) -> Flow {
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
                Recognised::Is(mut protocol) => {
                    if let Protocol::Http(h) = &mut protocol {
                        h.capture_payloads(tracer.payload_limit());
                    }
                    self.protocol = match (protocol, &self.mode) {
                        (Protocol::Http(_), Mode::Capture(_)) => Protocol::Framed(Box::new(
                            front::Framed::new(front::prefix(&self.mode)),
                        )),
                        (Protocol::Db(p), Mode::Capture(_)) => match p.compactor() {
                            Some(c) => Protocol::Compact(Box::new(front::CompactConn::new(c))),
                            None => Protocol::Db(p),
                        },
                        (Protocol::Db(mut p), Mode::Replay(_)) => {
                            p.read_compacted();
                            Protocol::Db(p)
                        }
                        (p, _) => p,
                    };
                    if seen > 0 && self.step(&earlier[..seen], outbound, now, tracer) == Flow::Stop
                    {
                        self.flush(tracer);
                        self.protocol = Protocol::Ignored;
                        return Flow::Stop;
                    }
                }
            }
        }
        let mut flow = self.step(data, outbound, now, tracer);
        if let Protocol::Framed(_) | Protocol::Compact(_) = &self.protocol {
            // Nothing finishes here: spans are made on the capture thread.
            if flow == Flow::Stop {
                self.protocol = Protocol::Ignored;
            }
            return flow;
        }
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
    fn step(&mut self, data: &[u8], outbound: bool, now: Stamp, tracer: &Tracer) -> Flow {
        match (&mut self.protocol, outbound) {
            (Protocol::Http(h), true) => h.on_outbound(data, now.time(), &mut self.done),
            (Protocol::Http(h), false) => h.on_inbound(data, now.time(), &mut self.done),
            (Protocol::Db(p), true) => p.outbound(data, now.time(), &mut self.ops),
            (Protocol::Db(p), false) => p.inbound(data, now.time(), &mut self.ops),
            (Protocol::Framed(_), _) => self.framed_step(data, outbound, now, tracer),
            (Protocol::Compact(_), _) => self.compact_step(data, outbound, now, tracer),
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
                    let (who, filtered) = match &mut self.mode {
                        Mode::Replay(given) => match given.pop_front() {
                            Some(g) => {
                                self.parent_tags.push_back((ex.seq, g.tags));
                                (g.who, false)
                            }
                            None => identity_for(self.role, &mut self.planned, ex, tracer),
                        },
                        _ => identity_for(self.role, &mut self.planned, ex, tracer),
                    };
                    self.replaced_head = false;
                    if self.role == Role::Server && matches!(self.mode, Mode::Direct) {
                        activate_server(
                            &who,
                            ex.traceparent.as_deref(),
                            ex.carriers.as_deref(),
                            filtered,
                            tracer,
                        );
                    }
                    self.assigned.push_back((ex.seq, who));
                }
            }
        }
        for op in self.ops.drain(..) {
            if op.kind != SpanKind::Consumer {
                // A message that carries our context: its span is the one
                // the context names.
                let who = match (&op.carried, op.kind) {
                    (Some((tp, _)), SpanKind::Producer) => parse_traceparent(tp).and_then(|tp| {
                        let i = self
                            .produced
                            .iter()
                            .position(|a| a.context.span_id == tp.span_id)?;
                        self.produced.remove(i)
                    }),
                    _ => None,
                };
                let (who, tags) = match who {
                    Some(who) => (Some(who), None),
                    None => match replayed_identity(&mut self.mode, op.start) {
                        Some((who, tags)) => (Some(who), Some(tags)),
                        None => (None, None),
                    },
                };
                tracer.emit_operation(op, &self.ends, who, Vec::new(), tags.as_deref());
                continue;
            }
            // A message received: the thread processes it until it reads
            // the next, so its span is the thread's active context for now.
            if let Some(previous) = self.consuming.take() {
                context::clear_active(previous);
            }
            // It continues the trace its headers carried, if any, and
            // links to that context (the link stays when propagation is
            // off and the span starts its own trace).
            let carried = op.carried.as_ref().and_then(|(tp, ts)| {
                parse_traceparent(tp).map(|parsed| (tp, ts.as_deref(), parsed))
            });
            let given = match carried {
                None => given_for_message(&mut self.mode, op.start),
                Some(_) => None,
            };
            let (who, tags) = match (carried, given) {
                (Some((tp, ts, _)), _) if tracer.inject => {
                    (tracer.server_span(Some(tp), ts, None), None)
                }
                (_, Some((who, tags))) => (who, Some(tags)),
                _ => (tracer.client_identity(), None),
            };
            let links = carried
                .map(|(_, ts, parsed)| SpanLink {
                    context: SpanContext {
                        trace_id: parsed.trace_id,
                        span_id: parsed.span_id,
                        trace_flags: parsed.flags,
                        trace_state: ts.and_then(crate::propagation::sanitize_tracestate),
                    },
                    remote: true,
                })
                .into_iter()
                .collect();
            // On the capture thread (a replay) the app's thread did this
            // when it read the message (see `Compacted::messages`).
            if !matches!(self.mode, Mode::Replay(_)) {
                context::set_active(&who.context, None);
                self.consuming = Some(who.context.span_id);
            }
            tracer.emit_operation(op, &self.ends, Some(who), links, tags.as_deref());
        }
        let mut done = std::mem::take(&mut self.done);
        for mut ex in done.drain(..) {
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
            if self.role == Role::Server && matches!(self.mode, Mode::Direct) {
                context::clear_active(who.context.span_id);
            }
            let tags = match self.parent_tags.iter().position(|(seq, _)| *seq == ex.seq) {
                Some(i) => self.parent_tags.remove(i).map(|(_, t)| t),
                None => None,
            };
            tracer.emit_http(&ex, self.role, &self.ends, who, tags.as_deref());
            if let Some(captured) = ex.captured.take() {
                crate::http::Captured::give_back(captured);
            }
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
        if !tracer.inject || matches!(self.protocol, Protocol::Compact(_)) {
            return None;
        }
        if matches!(self.protocol, Protocol::Db(_)) {
            return self.plan_message_edits(pieces, total, tracer);
        }
        if let Some(inj) = &self.injection {
            if inj.sent < inj.line.len() && inj.at >= self.out_offset {
                let at = inj.at - self.out_offset;
                return (at < total as u64).then(|| {
                    OutboundPlan::single(
                        at as usize,
                        inj.line[inj.sent..].to_vec(),
                        0,
                        self.out_offset,
                    )
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
            Protocol::Framed(f) => f.outbound_request_head()?,
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
                context::baggage()
                    .filter(|_| crate::tracer::baggage_goes_with(&who))
                    .as_deref(),
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
        Some(OutboundPlan::single(found.offset, line, 0, self.out_offset))
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
        Some(OutboundPlan::single(
            at,
            rest[..n].to_vec(),
            n,
            self.out_offset,
        ))
    }

    /// After the real call for `plan` accepted `sent` bytes in all: how many
    /// of them were the app's. The caller then feeds those app bytes.
    pub fn commit_outbound(&mut self, plan: &OutboundPlan, sent: usize) -> usize {
        if !plan.is_single() {
            return self.commit_message_edits(plan, sent);
        }
        let (app, inserted) = plan.split_sent(sent);
        match &mut self.injection {
            Some(inj) if plan.offset == self.out_offset => inj.sent += inserted,
            _ => self.injection = None,
        }
        app
    }
}

/// Makes a SERVER span the thread's active context: the request the
/// thread now serves, with its `baggage`, execution tags, and whether it
/// matched an endpoint filter.
fn activate_server(
    who: &Assigned,
    traceparent: Option<&str>,
    carriers: Option<&crate::propagators::InboundCarriers>,
    filtered: bool,
    tracer: &Tracer,
) {
    let inbound = traceparent.and_then(parse_traceparent);
    let inbound_parent = inbound
        .filter(|tp| who.parent == Some(tp.span_id))
        .map(|tp| tp.span_id);
    context::set_active(&who.context, inbound_parent);
    let baggage = carriers.and_then(|c| c.baggage.as_deref());
    if let Some(b) = baggage.filter(|_| tracer.propagators.baggage) {
        context::set_baggage(b.as_bytes());
    }
    if filtered {
        context::set_filtered();
    }
    if let Some(c) = carriers.filter(|c| !c.tags.is_empty()) {
        context::set_tags(&c.tags);
    }
}

impl Connection {
    /// A broker connection's plan: the messages' rewritten headers that
    /// fall in this write of `total` app bytes, planned now for the
    /// messages not seen by an earlier plan, kept from one for the others
    /// (a retry after a partial write gets the same bytes).
    fn plan_message_edits(
        &mut self,
        pieces: &[&[u8]],
        total: usize,
        tracer: &Tracer,
    ) -> Option<OutboundPlan> {
        let start = self.out_offset;
        let end = start + total as u64;
        // Edits behind us are done (an edit's app bytes count as sent only
        // once all its bytes are out).
        while self.message_edits.front().is_some_and(|e| e.at < start) {
            self.message_edits.pop_front();
        }
        let consistent = self
            .message_edits
            .front()
            .is_none_or(|e| e.sent == 0 || e.at == start);
        if !consistent || self.planned_to < start {
            // Writes that do not add up (another thread wrote): start over.
            self.forget_edits(0);
            self.planned_to = start;
        }
        // A retry shorter than the write planned: the edits past its end
        // are planned again with it.
        if let Some(i) = self
            .message_edits
            .iter()
            .position(|e| e.at + e.replace as u64 > end)
        {
            if self.message_edits[i].sent == 0 {
                self.planned_to = self.message_edits[i].at;
                self.forget_edits(i);
            }
        }
        if end > self.planned_to && total <= MAX_EDIT_SCAN {
            let from = (self.planned_to - start) as usize;
            let data = pieces.concat();
            let produced = &mut self.produced;
            let mut make = || {
                if produced.len() >= MAX_PRODUCED {
                    return None;
                }
                let who = tracer.client_span(None, None);
                let carry = crate::protocol::Carry {
                    traceparent: format_traceparent(&who.context),
                    tracestate: who.context.trace_state.clone(),
                };
                produced.push_back(who);
                Some(carry)
            };
            let found = match &self.protocol {
                Protocol::Db(p) if tracer.propagators.tracecontext => {
                    p.plan_edits(&data, from, &mut make)
                }
                _ => Vec::new(),
            };
            if let Protocol::Db(p) = &mut self.protocol {
                for e in found {
                    let span_id = parse_traceparent(&e.traceparent).map(|tp| tp.span_id);
                    p.stamp(e.ordinal, e.traceparent);
                    self.message_edits.push_back(PendingEdit {
                        at: start + e.at as u64,
                        replace: e.replace,
                        bytes: e.insert,
                        sent: 0,
                        span_id: span_id.unwrap_or_default(),
                    });
                }
            }
            self.planned_to = end;
        }
        let edits: Vec<Edit> = self
            .message_edits
            .iter()
            .filter(|e| e.at + e.replace as u64 <= end)
            .map(|e| Edit {
                at: (e.at - start) as usize,
                replace: e.replace,
                insert: e.bytes[e.sent.min(e.bytes.len())..].to_vec(),
            })
            .collect();
        OutboundPlan::edits_at(edits, start)
    }

    /// Drops the planned edits from the `i`-th on; the identities of those
    /// of them that never went out go too.
    fn forget_edits(&mut self, i: usize) {
        for e in self.message_edits.drain(i.min(self.message_edits.len())..) {
            if e.sent == 0 {
                self.produced.retain(|a| a.context.span_id != e.span_id);
            }
        }
    }

    /// After the real call for a broker plan took `sent` bytes: the edits
    /// that went out, and the app's count.
    fn commit_message_edits(&mut self, plan: &OutboundPlan, sent: usize) -> usize {
        let done = plan.account(sent);
        if plan.offset != self.out_offset {
            self.forget_edits(0);
            self.planned_to = self.out_offset;
            return done.app;
        }
        for (i, planned) in plan.edits().iter().enumerate().take(done.edits_done + 1) {
            let at = plan.offset + planned.at as u64;
            let Some(e) = self.message_edits.iter_mut().find(|e| e.at == at) else {
                continue;
            };
            if i < done.edits_done {
                e.sent = e.bytes.len();
            } else if let Some(n) = done.cut {
                e.sent = (e.sent + n).min(e.bytes.len());
            }
        }
        done.app
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
    let who = tracer.forwarding_span();
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

#[path = "capture/front.rs"]
mod front;

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "connection_edit_tests.rs"]
mod edit_tests;
