//! Which inbound request an outbound call belongs to, on threads that
//! serve several at once (event loops).
//!
//! [`context`](crate::context) keeps the request whose head a thread read
//! most recently; that is the right parent on a thread-per-request server
//! and a guess on an event loop, where one thread interleaves requests.
//! This module keeps, per thread:
//!
//! - the requests *in flight* on it (head read, answer not complete), each
//!   with the fd it arrived on ([`OnFd`] tells which fd the library is
//!   handling while a head is read);
//! - *hints* from the runtime (Node.js's `AsyncLocalStorage`, Python's
//!   `contextvars`, which follow a request through callbacks and awaits):
//!   "the next request head written on outbound fd F belongs to the request
//!   being served on inbound fd G". A hint only chooses the parent; the head
//!   is parsed and its span made as without one.
//!
//! [`choose`] then decides a CLIENT span's parent: the hinted request, else
//! the thread's one request in flight; with several in flight and no hint,
//! the tracer makes the span a root carrying `lumigo.parent.candidates`
//! (a guess measured right for under a quarter of such calls).
//!
//! The runtime scripts reach [`on_hint_write`] through a `write` to
//! [`HINT_FD`], a number that is never an open descriptor: without the
//! library the write fails with `EBADF` and changes nothing; with it, the
//! library takes the message and makes no system call.
//!
//! Everything here is a `const`-initialised thread-local with no destructor
//! and fixed-size tables: usable during thread teardown, never allocating.

use std::cell::RefCell;

use crate::span::SpanContext;

/// The descriptor number the runtime scripts write hints to: `INT_MAX`,
/// above any limit the kernel allows (`fs.nr_open` tops out below it), so
/// it is never open and a write to it without the library is `EBADF`.
pub const HINT_FD: i32 = i32::MAX;

/// First bytes of a hint message (the runtime scripts use the same).
pub const HINT_MAGIC: &[u8; 8] = b"\0LUMIGO\x01";

/// Length of a hint message: magic, outbound fd, inbound fd (i32 LE each).
pub const HINT_LEN: usize = 16;

/// Requests tracked in flight per thread; past it the oldest is forgotten.
pub const MAX_IN_FLIGHT: usize = 32;

/// Hints waiting for their outbound head, per thread.
const MAX_HINTS: usize = 16;

/// One request in flight on the thread: its SERVER span (or a CONSUMER
/// span of a message being processed) and the fd it came in on.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    fd: i32,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
    filtered: bool,
}

const EMPTY: Entry = Entry {
    fd: -1,
    trace_id: [0; 16],
    span_id: [0; 8],
    flags: 0,
    filtered: false,
};

struct InFlight {
    len: usize,
    entries: [Entry; MAX_IN_FLIGHT],
}

struct Hints {
    next: usize,
    /// (outbound fd, the request it serves); fd -1: free.
    slots: [(i32, Entry); MAX_HINTS],
}

thread_local! {
    static IN_FLIGHT: RefCell<InFlight> = const {
        RefCell::new(InFlight { len: 0, entries: [EMPTY; MAX_IN_FLIGHT] })
    };
    static HINTS: RefCell<Hints> = const {
        RefCell::new(Hints { next: 0, slots: [(-1, EMPTY); MAX_HINTS] })
    };
}

/// While alive, the calling thread is handling bytes of `fd` (a request
/// head read there is in flight on that fd; a head written there takes its
/// hint). Restores the previous value when dropped. The hooks set the fd
/// with their reentrancy flag instead (`guard::run_internal_on`).
#[cfg(test)]
struct OnFd(i32);

#[cfg(test)]
impl OnFd {
    pub fn enter(fd: i32) -> OnFd {
        OnFd(crate::guard::set_on_fd(fd))
    }
}

#[cfg(test)]
impl Drop for OnFd {
    fn drop(&mut self) {
        crate::guard::set_on_fd(self.0);
    }
}

fn current_fd() -> i32 {
    crate::guard::on_fd()
}

/// A request became the thread's active context ([`crate::context::set_active`]).
pub(crate) fn started(ctx: &SpanContext) {
    let fd = current_fd();
    let _ = IN_FLIGHT.try_with(|t| {
        let Ok(mut t) = t.try_borrow_mut() else {
            return;
        };
        let entry = Entry {
            fd,
            trace_id: ctx.trace_id,
            span_id: ctx.span_id,
            flags: ctx.trace_flags,
            filtered: false,
        };
        let len = t.len;
        // One connection serves one request at a time (no pipelining seen
        // in practice): a new head on fd G replaces G's last one, so an
        // answer we never saw complete does not linger.
        let at = t.entries[..len]
            .iter()
            .position(|e| e.span_id == ctx.span_id || (fd >= 0 && e.fd == fd));
        match at {
            Some(i) => {
                t.entries.copy_within(i + 1..len, i);
                t.entries[len - 1] = entry;
            }
            None if len < MAX_IN_FLIGHT => {
                t.entries[len] = entry;
                t.len += 1;
            }
            None => {
                t.entries.copy_within(1.., 0);
                t.entries[MAX_IN_FLIGHT - 1] = entry;
            }
        }
    });
}

/// The active request (the most recent) matched an endpoint filter.
pub(crate) fn filtered(span_id: [u8; 8]) {
    let _ = IN_FLIGHT.try_with(|t| {
        if let Ok(mut t) = t.try_borrow_mut() {
            let len = t.len;
            if let Some(e) = t.entries[..len].iter_mut().find(|e| e.span_id == span_id) {
                e.filtered = true;
            }
        }
    });
}

/// The request `span_id` is answered (or its connection closed).
pub(crate) fn ended(span_id: [u8; 8]) {
    let _ = IN_FLIGHT.try_with(|t| {
        if let Ok(mut t) = t.try_borrow_mut() {
            let len = t.len;
            if let Some(i) = t.entries[..len].iter().position(|e| e.span_id == span_id) {
                t.entries.copy_within(i + 1..len, i);
                t.len -= 1;
            }
        }
    });
}

/// `fd` was closed on the calling thread: its request, if still in flight
/// here, never gets an answer (a span made on another thread, or none).
pub fn closed(fd: i32) {
    if fd < 0 {
        return;
    }
    let _ = IN_FLIGHT.try_with(|t| {
        if let Ok(mut t) = t.try_borrow_mut() {
            let len = t.len;
            if let Some(i) = t.entries[..len].iter().position(|e| e.fd == fd) {
                t.entries.copy_within(i + 1..len, i);
                t.len -= 1;
            }
        }
    });
}

/// How many requests are in flight on the calling thread.
pub fn in_flight() -> usize {
    IN_FLIGHT
        .try_with(|t| t.try_borrow().map(|t| t.len).unwrap_or(0))
        .unwrap_or(0)
}

/// Whether `span_id` is a request in flight on the calling thread.
pub fn is_in_flight(span_id: [u8; 8]) -> bool {
    IN_FLIGHT
        .try_with(|t| {
            t.try_borrow()
                .is_ok_and(|t| t.entries[..t.len].iter().any(|e| e.span_id == span_id))
        })
        .unwrap_or(false)
}

/// The runtime says: the next request head written on `out_fd` belongs to
/// the request in flight on `in_fd`. Returns whether that request is known
/// on this thread (if not, the hint is dropped and the usual rule applies).
pub fn hint(out_fd: i32, in_fd: i32) -> bool {
    if out_fd < 0 || in_fd < 0 {
        return false;
    }
    let entry = IN_FLIGHT
        .try_with(|t| {
            let t = t.try_borrow().ok()?;
            t.entries[..t.len]
                .iter()
                .rev()
                .find(|e| e.fd == in_fd)
                .copied()
        })
        .ok()
        .flatten();
    let Some(entry) = entry else {
        return false;
    };
    HINTS
        .try_with(|h| {
            let Ok(mut h) = h.try_borrow_mut() else {
                return false;
            };
            let at = match h.slots.iter().position(|(fd, _)| *fd == out_fd) {
                Some(i) => i,
                None => {
                    let i = h.next;
                    h.next = (i + 1) % MAX_HINTS;
                    i
                }
            };
            h.slots[at] = (out_fd, entry);
            true
        })
        .unwrap_or(false)
}

/// A message written to [`HINT_FD`]: takes it if it is a hint (whether or
/// not its request is known), so the caller returns `len` without a system
/// call; `false` for anything else, which the caller hands to the real call.
pub fn on_hint_write(msg: &[u8]) -> bool {
    if msg.len() != HINT_LEN || &msg[..8] != HINT_MAGIC {
        return false;
    }
    let int = |at: usize| i32::from_le_bytes([msg[at], msg[at + 1], msg[at + 2], msg[at + 3]]);
    hint(int(8), int(12));
    true
}

/// The hint for the fd the thread is writing a head on, if any (used once).
fn take_hint() -> Option<Entry> {
    let fd = current_fd();
    if fd < 0 {
        return None;
    }
    HINTS
        .try_with(|h| {
            let mut h = h.try_borrow_mut().ok()?;
            let slot = h.slots.iter_mut().find(|(f, _)| *f == fd)?;
            slot.0 = -1;
            Some(slot.1)
        })
        .ok()
        .flatten()
}

/// A CLIENT span's parent among the requests the thread serves.
#[derive(Clone, Debug, PartialEq)]
pub enum Choice {
    /// The runtime named the request (or it is the one request in flight
    /// on the thread, though not the thread's active one): its context,
    /// and whether it matched an endpoint filter.
    Hinted(SpanContext, bool),
    /// No hint, and no request in flight but the thread's active one (if
    /// any): exact.
    Active,
    /// No hint, and this many requests in flight: the active context (the
    /// most recent) would be a guess.
    Inferred(usize),
}

/// Decides the parent of a CLIENT span started now on the calling thread.
/// `active` is the thread's active context (for the `tracestate` of a
/// hinted request that is also the most recent one).
pub fn choose(active: Option<&SpanContext>) -> Choice {
    if let Some(e) = take_hint() {
        return Choice::Hinted(context_of(&e, active), e.filtered);
    }
    let (n, last) = IN_FLIGHT
        .try_with(|t| {
            t.try_borrow()
                .map(|t| (t.len, t.entries[..t.len].last().copied()))
                .unwrap_or((0, None))
        })
        .unwrap_or((0, None));
    match (n, last) {
        (1, Some(e)) if active.is_none_or(|a| a.span_id != e.span_id) => {
            // The one request in flight, though not the most recent one
            // read (that one is answered already).
            Choice::Hinted(context_of(&e, None), e.filtered)
        }
        (n, _) if n > 1 => Choice::Inferred(n),
        _ => Choice::Active,
    }
}

fn context_of(e: &Entry, active: Option<&SpanContext>) -> SpanContext {
    SpanContext {
        trace_id: e.trace_id,
        span_id: e.span_id,
        trace_flags: e.flags,
        trace_state: active
            .filter(|a| a.span_id == e.span_id)
            .and_then(|a| a.trace_state.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(id: u8) -> SpanContext {
        SpanContext {
            trace_id: [id; 16],
            span_id: [id; 8],
            trace_flags: 1,
            trace_state: None,
        }
    }

    fn read_on(fd: i32, id: u8) {
        let _on = OnFd::enter(fd);
        started(&ctx(id));
    }

    fn message(out_fd: i32, in_fd: i32) -> Vec<u8> {
        let mut m = HINT_MAGIC.to_vec();
        m.extend_from_slice(&out_fd.to_le_bytes());
        m.extend_from_slice(&in_fd.to_le_bytes());
        m
    }

    #[test]
    fn a_hint_names_the_request_of_an_inbound_fd() {
        read_on(10, 1);
        read_on(11, 2);
        assert_eq!(in_flight(), 2);
        assert!(on_hint_write(&message(20, 10)));
        {
            let _on = OnFd::enter(20);
            assert_eq!(choose(Some(&ctx(2))), Choice::Hinted(ctx(1), false));
            // Used once: the next head on fd 20 has no hint.
            assert_eq!(choose(Some(&ctx(2))), Choice::Inferred(2));
        }
        let _on = OnFd::enter(21);
        assert_eq!(choose(Some(&ctx(2))), Choice::Inferred(2), "another fd");
        ended([1; 8]);
        ended([2; 8]);
        assert_eq!(choose(None), Choice::Active);
    }

    #[test]
    fn one_request_in_flight_is_exact() {
        read_on(12, 3);
        let _on = OnFd::enter(22);
        assert_eq!(choose(Some(&ctx(3))), Choice::Active);
        // Answered while another request on the thread is not: that one.
        read_on(13, 5);
        ended([5; 8]);
        assert_eq!(choose(None), Choice::Hinted(ctx(3), false));
        assert_eq!(choose(Some(&ctx(5))), Choice::Hinted(ctx(3), false));
        // The next request on the same connection replaces it.
        read_on(12, 4);
        assert_eq!(in_flight(), 1);
        ended([4; 8]);
        assert_eq!(in_flight(), 0);
        // A connection closed with its request unanswered.
        read_on(14, 6);
        closed(15);
        assert_eq!(in_flight(), 1);
        closed(14);
        assert_eq!(in_flight(), 0);
    }

    #[test]
    fn unknown_inbound_fds_and_other_bytes_are_not_hints() {
        assert!(!hint(30, 31), "no request on fd 31");
        assert!(on_hint_write(&message(30, 31)), "still taken: it is ours");
        assert!(!on_hint_write(b"hello, world!!!!"));
        assert!(!on_hint_write(&message(30, 31)[..15]));
        let _on = OnFd::enter(30);
        assert_eq!(choose(None), Choice::Active);
    }

    #[test]
    fn the_table_is_bounded() {
        for i in 0..(MAX_IN_FLIGHT as u8 + 5) {
            started(&ctx(100 + i));
        }
        assert_eq!(in_flight(), MAX_IN_FLIGHT);
        for i in 0..(MAX_IN_FLIGHT as u8 + 5) {
            ended([100 + i; 8]);
        }
        assert_eq!(in_flight(), 0);
    }

    /// The whole path: two requests read on fds 50 and 51 of one thread,
    /// then three downstream calls as the preload makes them.
    #[test]
    fn a_call_among_several_requests_is_a_hinted_child_or_a_marked_root() {
        use crate::connection::Connection;
        use crate::span::{AttrValue, SpanRecord};
        use crate::tracer::{SpanSink, Tracer};
        use std::sync::{Arc, Mutex};
        use std::time::SystemTime;

        #[derive(Default, Clone)]
        struct Collect(Arc<Mutex<Vec<SpanRecord>>>);
        impl SpanSink for Collect {
            fn submit(&self, span: SpanRecord) {
                self.0.lock().unwrap().push(span);
            }
        }
        let spans = Collect::default();
        let t = Tracer::new(crate::mask::Masker::new(&[]), Box::new(spans.clone()));
        let now = SystemTime::now();
        let mut servers = Vec::new();
        for (fd, user) in [(50, "a"), (51, "b")] {
            let _on = OnFd::enter(fd);
            let mut s = Connection::server(None, None);
            let head = format!("GET /{user} HTTP/1.1\r\nbaggage: user={user}\r\n\r\n");
            let _ = s.on_inbound(head.as_bytes(), now, &t);
            servers.push((s, crate::context::active().expect("serving").span_id));
        }
        // A downstream call on `fd`: the line inserted into its head.
        let call = |fd: i32| {
            let _on = OnFd::enter(fd);
            let mut c = Connection::client(None, None);
            let head = b"GET /down HTTP/1.1\r\nHost: d\r\n\r\n";
            let plan = c.plan_outbound(&[head], &t).expect("a traceparent");
            let _ = c.commit_outbound(&plan, head.len() + plan.insert().len());
            let _ = c.on_outbound(head, now, &t);
            let _ = c.on_inbound(b"HTTP/1.1 204 No Content\r\n\r\n", now, &t);
            String::from_utf8(plan.insert().to_vec()).unwrap()
        };
        let unhinted = call(60);
        assert!(hint(61, 50));
        let for_a = call(61);
        assert!(hint(62, 51));
        let for_b = call(62);

        let spans = spans.0.lock().unwrap();
        let candidates = |s: &SpanRecord| {
            s.attributes
                .iter()
                .find(|(k, _)| *k == "lumigo.parent.candidates")
                .map(|(_, v)| v.clone())
        };
        assert_eq!(spans.len(), 3);
        assert_eq!(spans[0].parent_span_id, None, "a root");
        assert_eq!(candidates(&spans[0]), Some(AttrValue::Int(2)));
        assert_eq!(spans[1].parent_span_id, Some(servers[0].1));
        assert_eq!(spans[2].parent_span_id, Some(servers[1].1));
        assert_eq!(candidates(&spans[1]), None);
        // Baggage goes only with the request it came with.
        assert!(!unhinted.contains("baggage"), "{unhinted}");
        assert!(!for_a.contains("user=b"), "{for_a}");
        assert!(for_b.contains("baggage: user=b"), "{for_b}");
        drop(spans);
        for (fd, (mut s, _)) in [50, 51].into_iter().zip(servers) {
            let _on = OnFd::enter(fd);
            let _ = s.on_outbound(b"HTTP/1.1 204 No Content\r\n\r\n", now, &t);
        }
        assert_eq!(in_flight(), 0);
    }

    /// A proxy forwarding the `traceparent` of the request it serves names
    /// that request itself, however many are in flight.
    #[test]
    fn a_forwarded_traceparent_names_its_request_among_several() {
        use crate::connection::Connection;
        use crate::tracer::Tracer;
        use std::time::SystemTime;

        struct Drop;
        impl crate::tracer::SpanSink for Drop {
            fn submit(&self, _: crate::span::SpanRecord) {}
        }
        let t = Tracer::new(crate::mask::Masker::new(&[]), Box::new(Drop));
        let now = SystemTime::now();
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut servers = Vec::new();
        for (fd, head) in [
            (70, "GET /a HTTP/1.1\r\n\r\n".to_owned()),
            (71, format!("GET /b HTTP/1.1\r\ntraceparent: {tp}\r\n\r\n")),
        ] {
            let _on = OnFd::enter(fd);
            let mut s = Connection::server(None, None);
            let _ = s.on_inbound(head.as_bytes(), now, &t);
            servers.push(s);
        }
        let b = crate::context::active().expect("serving /b");
        let _on = OnFd::enter(72);
        let mut c = Connection::client(None, None);
        let head = format!("GET /down HTTP/1.1\r\ntraceparent: {tp}\r\n\r\n");
        let plan = c.plan_outbound(&[head.as_bytes()], &t).expect("replaced");
        let value = String::from_utf8(plan.insert().to_vec()).unwrap();
        assert_eq!(plan.replace(), value.len());
        let named = crate::propagation::parse_traceparent(&value).expect("a traceparent");
        assert_eq!(named.trace_id, b.trace_id);
        assert_ne!(named.span_id, b.span_id, "our CLIENT span, under /b");
        for (fd, mut s) in [70, 71].into_iter().zip(servers) {
            let _on = OnFd::enter(fd);
            let _ = s.on_outbound(b"HTTP/1.1 204 No Content\r\n\r\n", now, &t);
        }
    }

    #[test]
    fn a_filtered_request_stays_filtered_through_a_hint() {
        read_on(40, 50);
        filtered([50; 8]);
        assert!(hint(41, 40));
        let _on = OnFd::enter(41);
        assert_eq!(choose(None), Choice::Hinted(ctx(50), true));
        ended([50; 8]);
    }
}
