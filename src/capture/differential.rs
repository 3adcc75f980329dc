//! The differential check of the data path, shared by the unit tests and
//! the `capture_differential` fuzz target: the same conversation fed to a
//! connection parsed on the app's thread (direct) and to a captured one
//! whose records are replayed on the capture thread must give the same
//! spans (names, kinds, times, status, attributes, parents) and put the
//! same number of bytes on the wire.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::Capture;
use crate::address::Address;
use crate::connection::{CloseReason, Connection, SpanSink, Tracer};
use crate::mask::Masker;
use crate::protocol::Flow;
use crate::span::SpanRecord;

#[derive(Default, Clone)]
pub struct Collect(pub Arc<Mutex<Vec<SpanRecord>>>);
impl SpanSink for Collect {
    fn submit(&self, span: SpanRecord) {
        self.0.lock().unwrap().push(span);
    }
}

/// A tracer whose payload attributes keep `limit` bytes of each body.
pub fn tracer_capturing(limit: usize) -> (Tracer, Collect) {
    let c = Collect::default();
    let patterns: Vec<String> = crate::config::DEFAULT_SECRET_PATTERNS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let t = Tracer::new(Masker::new(&patterns), Box::new(c.clone()))
        .with_payload(crate::payload::PayloadRules::with_limit(limit));
    (t, c)
}

fn addr(s: &str) -> Option<Address> {
    Some(Address::Inet(s.parse().unwrap()))
}

/// One step of a conversation.
#[derive(Clone, Copy, Debug)]
pub enum Step<'a> {
    Out(&'a [u8]),
    In(&'a [u8]),
    /// `sendfile` of n bytes.
    Opaque(usize),
    Eof,
}

/// A span without its random ids: what must be equal.
#[derive(Debug, PartialEq)]
struct Seen {
    name: String,
    kind: crate::span::SpanKind,
    start: SystemTime,
    end: SystemTime,
    status: crate::span::SpanStatus,
    attributes: Vec<(String, String)>,
    has_parent: bool,
}

fn seen(spans: &[SpanRecord]) -> Vec<Seen> {
    let mut out: Vec<Seen> = spans
        .iter()
        .map(|s| Seen {
            name: s.name.to_string(),
            kind: s.kind,
            start: s.start,
            end: s.end,
            status: s.status.clone(),
            attributes: s
                .attributes
                .iter()
                .map(|(k, v)| (k.to_string(), format!("{v:?}")))
                .collect(),
            has_parent: s.parent_span_id.is_some(),
        })
        .collect();
    out.sort_by_key(|s| s.start);
    out
}

/// Runs `steps` through `c`, `step` bytes per call; returns the bytes put
/// on the wire for outbound steps, and whether the connection stopped
/// tracing on bytes (before the script's end).
/// `ticking`: each call is a microsecond after the one before (else the
/// calls of a step share its time), and `after` runs after each.
fn run(
    c: &mut Connection,
    t: &Tracer,
    steps: &[Step<'_>],
    step: usize,
    ticking: bool,
    after: &dyn Fn(),
) -> (Vec<u8>, bool, bool) {
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut wire = Vec::new();
    let mut stopped = false;
    // A client's thread has an active context only while it handles a
    // message it read (a subscriber's).
    let client = c.role() == crate::http::Role::Client;
    let mut handled_message = false;
    let mut calls = 0u64;
    for (i, s) in steps.iter().enumerate() {
        let at = base + Duration::from_millis(i as u64 * 10);
        let mut now = at;
        let mut tick = || {
            if ticking {
                calls += 1;
                after();
            }
            at + Duration::from_micros(calls)
        };
        match *s {
            Step::Out(text) => {
                for piece in text.chunks(step) {
                    now = tick();
                    match c.plan_outbound(&[piece], t) {
                        Some(plan) => {
                            let total = piece.len() + plan.insert().len() - plan.replace();
                            wire.extend_from_slice(&piece[..plan.at()]);
                            wire.extend_from_slice(plan.insert());
                            wire.extend_from_slice(&piece[plan.at() + plan.replace()..]);
                            let app = c.commit_outbound(&plan, total);
                            stopped |= c.on_outbound(&piece[..app], now, t) == Flow::Stop;
                        }
                        None => {
                            wire.extend_from_slice(piece);
                            stopped |= c.on_outbound(piece, now, t) == Flow::Stop;
                        }
                    }
                }
            }
            Step::In(text) => {
                for piece in text.chunks(step) {
                    now = tick();
                    stopped |= c.on_inbound(piece, now, t) == Flow::Stop;
                    handled_message |= client && crate::context::active().is_some();
                }
            }
            Step::Opaque(n) => {
                stopped |= c.on_outbound_opaque(n, now, t) == Flow::Stop;
            }
            Step::Eof => c.on_close(now, CloseReason::PeerClosed, t),
        }
    }
    let end = base + Duration::from_secs(60);
    c.on_close(end, CloseReason::Closed, t);
    (wire, stopped, handled_message)
}

/// How the two paths differed.
#[derive(Debug)]
pub struct Mismatch {
    pub message: String,
    /// The direct path ended an exchange in error (bytes that are not HTTP,
    /// a close mid-exchange: an error status or an `error.type`), or
    /// stopped tracing on bytes (a head httparse rejects after its status
    /// line, reported with the status it had): its parser checks every
    /// byte of a head (httparse), the framer only what framing needs, so
    /// after such bytes the two may give up at different places, and the
    /// captured path may go on inserting `traceparent` into later
    /// requests.
    pub direct_rejected: bool,
}

/// Runs `steps` (`step` bytes per call) through a direct and a captured
/// connection whose bodies keep `prefix` content bytes, drains `cap`, and
/// compares; `Err` says how they differ.
pub fn compare_once(
    server: bool,
    steps: &[Step<'_>],
    prefix: usize,
    step: usize,
    cap: &'static Capture,
) -> Result<usize, Mismatch> {
    compare_calls(server, steps, prefix, step, cap, false)
}

/// As [`compare_once`]; `ticking`: each call at a time of its own, so that
/// which call starts or ends an operation is compared too, with the
/// capture thread draining the rings between calls (as it does while they
/// fill: a script of many one-byte calls would fill them otherwise).
pub fn compare_calls(
    server: bool,
    steps: &[Step<'_>],
    prefix: usize,
    step: usize,
    cap: &'static Capture,
    ticking: bool,
) -> Result<usize, Mismatch> {
    let make = |c: Option<&'static Capture>| {
        let (peer, local) = (addr("127.0.0.1:40000"), addr("127.0.0.1:8000"));
        let role = if server {
            crate::http::Role::Server
        } else {
            crate::http::Role::Client
        };
        match c {
            None if server => Connection::server(peer, local),
            None => Connection::client(peer, local),
            Some(cap) => Connection::captured(role, peer, local, cap),
        }
    };
    let (t, direct_spans) = tracer_capturing(prefix);
    let mut direct = make(None);
    let (direct_wire, direct_stopped, direct_message) =
        run(&mut direct, &t, steps, step, ticking, &|| {});
    crate::context::clear_active_all();
    let (t2, captured_spans) = tracer_capturing(prefix);
    let mut captured = make(Some(cap));
    let (captured_wire, _, captured_message) =
        run(&mut captured, &t2, steps, step, ticking, &|| {
            cap.drain(&t2);
        });
    crate::context::clear_active_all();
    cap.drain(&t2);
    let (a, b) = (
        direct_spans.0.lock().unwrap(),
        captured_spans.0.lock().unwrap(),
    );
    // Bytes that are not HTTP end an exchange in error; where the parser
    // (which checks every byte of a head) and the framer (which reads what
    // framing needs) give up on them may differ.
    let direct_rejected = direct_stopped
        || a.iter().any(|s| {
            matches!(s.status, crate::span::SpanStatus::Error(_)) || s.attr("error.type").is_some()
        });
    let (mut a, mut b) = (seen(&a), seen(&b));
    // A database command's parent is the thread's context when its reply
    // is read on the direct path, and when it was written on the data path
    // (the better answer: a request's query is its child however late the
    // result comes). They differ when a received message (a Redis
    // subscriber's), whose CONSUMER span is the thread's context until the
    // next, comes in between, and on bytes where the app's thread and the
    // parser disagree on which values are messages (only invalid ones: the
    // parser follows subscriptions by their counts, the app's thread by
    // the commands sent). When either path's thread handled a message (had
    // an active context after a read: a client's has none otherwise),
    // parents are not compared here; `parents_when_captured` and the
    // real-program tests check them by ids.
    if direct_message || captured_message {
        for s in a.iter_mut().chain(b.iter_mut()) {
            s.has_parent = false;
        }
    }
    let message = if direct_wire.len() != captured_wire.len() {
        format!(
            "{} bytes on the wire direct, {} captured",
            direct_wire.len(),
            captured_wire.len()
        )
    } else if a != b {
        format!("direct:\n{a:#?}\ncaptured:\n{b:#?}")
    } else {
        return Ok(a.len());
    };
    Err(Mismatch {
        message,
        direct_rejected,
    })
}

/// A database conversation through a captured client connection, each
/// write whole or cut into calls of `piece` bytes: write `n` (from 1)
/// made under a context of trace and span ids all `n` (the first, the
/// login or startup, under none), each read under another context. The
/// spans decoded on the capture thread, in order: name, parent span id
/// and trace id. Panics when a span is made on the app's thread or two
/// share an id.
pub fn parents_when_captured(
    steps: &[Step<'_>],
    piece: usize,
) -> Vec<(String, Option<[u8; 8]>, [u8; 16])> {
    use crate::span::SpanContext;
    let (t, spans) = tracer_capturing(0);
    let cap: &'static Capture = Box::leak(Box::new(Capture::new(0)));
    let mut c = Connection::captured(
        crate::http::Role::Client,
        addr("127.0.0.1:40000"),
        None,
        cap,
    );
    let ctx = |n: u8| SpanContext {
        trace_id: [n; 16],
        span_id: [n; 8],
        trace_flags: 1,
        trace_state: None,
    };
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut writes = 0u8;
    for (i, step) in steps.iter().enumerate() {
        let now = base + Duration::from_millis(i as u64);
        let (bytes, outbound, n) = match *step {
            Step::Out(b) => {
                writes += 1;
                (b, true, writes)
            }
            Step::In(b) => (b, false, 99),
            _ => continue,
        };
        if !outbound || writes > 1 {
            crate::context::set_active(&ctx(n), None);
        }
        for (k, part) in bytes.chunks(piece).enumerate() {
            let at = now + Duration::from_micros(k as u64);
            let _ = if outbound {
                c.on_outbound(part, at, &t)
            } else {
                c.on_inbound(part, at, &t)
            };
        }
        crate::context::clear_active([n; 8]);
    }
    c.on_close(base + Duration::from_secs(1), CloseReason::Closed, &t);
    crate::context::clear_active_all();
    assert!(
        spans.0.lock().unwrap().is_empty(),
        "no span on the app's thread"
    );
    cap.drain(&t);
    let spans = spans.0.lock().unwrap();
    let ids: std::collections::HashSet<[u8; 8]> = spans.iter().map(|s| s.context.span_id).collect();
    assert_eq!(ids.len(), spans.len(), "each span its own id");
    spans
        .iter()
        .map(|s| (s.name.to_string(), s.parent_span_id, s.context.trace_id))
        .collect()
}
