//! In-process correlation: which inbound request a thread is serving.
//!
//! When a thread reads a complete request head on an accepted connection,
//! that request's SERVER span becomes the thread's *active* context, until
//! its response is complete or the thread reads another request head.
//! CLIENT spans the thread starts meanwhile (and children it execs) become
//! its children.
//!
//! This is exact for thread-per-request servers (a thread reads a request,
//! calls downstream, answers). For event-loop servers (Node.js, asyncio,
//! nginx), one thread interleaves requests: the rule then picks the request
//! whose head was read most recently, which is right when a handler calls
//! downstream before the loop reads another request, and wrong when
//! requests overlap. [`crate::hint`] keeps every request in flight on the
//! thread, takes the runtime's word on which one a call belongs to (Node.js,
//! Python asyncio) and, without it, leaves a call made among several a root. See
//! README, "Event-loop servers".
//!
//! The slot also keeps the span id the request's own `traceparent` named
//! (its remote parent), so a proxy forwarding that very `traceparent` can be
//! recognised ([`forwarded_parent`]).
//!
//! The slot also holds the request's `baggage` value (W3C Baggage), which
//! outbound requests made while serving it carry on.
//!
//! The slot is a `const`-initialised thread-local with no destructor (it
//! must be usable during thread teardown and at exit) and a fixed buffer
//! for `tracestate`, so setting it never allocates.

use std::cell::RefCell;

use crate::propagation::MAX_TRACESTATE;
use crate::propagators::MAX_BAGGAGE;
use crate::span::SpanContext;

struct Slot {
    present: bool,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
    /// The span id the request's `traceparent` named, if it had one.
    inbound_parent: Option<[u8; 8]>,
    state_len: usize,
    state: [u8; MAX_TRACESTATE],
    baggage_len: usize,
    baggage: [u8; MAX_BAGGAGE],
    /// The request matched an endpoint filter: nothing made while serving
    /// it is exported.
    filtered: bool,
    /// Its execution tags, packed: index, length, value bytes.
    tags_len: usize,
    tags: [u8; MAX_TAG_BYTES],
}

/// Room for the execution tags of the request a thread serves; tags past
/// it are not carried to the spans made while serving it.
pub const MAX_TAG_BYTES: usize = 1024;

thread_local! {
    static ACTIVE: RefCell<Slot> = const {
        RefCell::new(Slot {
            present: false,
            trace_id: [0; 16],
            span_id: [0; 8],
            flags: 0,
            inbound_parent: None,
            state_len: 0,
            state: [0; MAX_TRACESTATE],
            baggage_len: 0,
            baggage: [0; MAX_BAGGAGE],
            filtered: false,
            tags_len: 0,
            tags: [0; MAX_TAG_BYTES],
        })
    };
}

/// Makes `ctx` the calling thread's active context; `inbound_parent` is
/// the span id the request's own `traceparent` named (same trace as `ctx`).
pub fn set_active(ctx: &SpanContext, inbound_parent: Option<[u8; 8]>) {
    let _ = ACTIVE.try_with(|slot| {
        if let Ok(mut s) = slot.try_borrow_mut() {
            s.present = true;
            s.trace_id = ctx.trace_id;
            s.span_id = ctx.span_id;
            s.flags = ctx.trace_flags;
            s.inbound_parent = inbound_parent;
            let state = ctx.trace_state.as_deref().unwrap_or("").as_bytes();
            let n = if state.len() <= MAX_TRACESTATE {
                state.len()
            } else {
                0
            };
            s.state[..n].copy_from_slice(&state[..n]);
            s.state_len = n;
            s.baggage_len = 0;
            s.filtered = false;
            s.tags_len = 0;
        }
    });
    crate::hint::started(ctx);
}

/// Sets the execution tags (index, value) of the active request.
pub fn set_tags(tags: &[(u8, String)]) {
    let _ = ACTIVE.try_with(|slot| {
        if let Ok(mut s) = slot.try_borrow_mut() {
            if !s.present {
                return;
            }
            let mut n = 0;
            for (i, v) in tags {
                let v = v.as_bytes();
                let Ok(len) = u8::try_from(v.len()) else {
                    continue;
                };
                if n + 2 + v.len() > MAX_TAG_BYTES {
                    break;
                }
                s.tags[n] = *i;
                s.tags[n + 1] = len;
                s.tags[n + 2..n + 2 + v.len()].copy_from_slice(v);
                n += 2 + v.len();
            }
            s.tags_len = n;
        }
    });
}

/// The execution tags of the request the calling thread serves, if its
/// SERVER span is `span_id`.
pub fn tags_of(span_id: [u8; 8]) -> Vec<(u8, String)> {
    with_packed_tags(span_id, unpack_tags)
}

/// Unpacks tags packed as [`set_tags`] keeps them.
pub fn unpack_tags(packed: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    let mut n = 0;
    while n + 2 <= packed.len() {
        let (i, len) = (packed[n], usize::from(packed[n + 1]));
        let Some(v) = packed.get(n + 2..n + 2 + len) else {
            break;
        };
        out.push((i, String::from_utf8_lossy(v).into_owned()));
        n += 2 + len;
    }
    out
}

/// Calls `f` with the packed execution tags of the request the calling
/// thread serves, if its SERVER span is `span_id` (empty otherwise).
pub fn with_packed_tags<R>(span_id: [u8; 8], f: impl FnOnce(&[u8]) -> R) -> R {
    let mut buf = [0u8; MAX_TAG_BYTES];
    let n = ACTIVE
        .try_with(|slot| {
            let s = slot.try_borrow().ok()?;
            (s.present && s.span_id == span_id && s.tags_len > 0).then(|| {
                buf[..s.tags_len].copy_from_slice(&s.tags[..s.tags_len]);
                s.tags_len
            })
        })
        .ok()
        .flatten()
        .unwrap_or(0);
    f(&buf[..n])
}

/// Marks the active request (set with [`set_active`] first) as filtered.
pub fn set_filtered() {
    let _ = ACTIVE.try_with(|slot| {
        if let Ok(mut s) = slot.try_borrow_mut() {
            s.filtered = s.present;
            if s.present {
                crate::hint::filtered(s.span_id);
            }
        }
    });
}

/// Whether the request the calling thread serves matched an endpoint
/// filter.
pub fn active_filtered() -> bool {
    ACTIVE
        .try_with(|slot| slot.try_borrow().is_ok_and(|s| s.present && s.filtered))
        .unwrap_or(false)
}

/// Sets the `baggage` of the active request (set with [`set_active`]
/// first); a value longer than [`MAX_BAGGAGE`] is not kept.
pub fn set_baggage(value: &[u8]) {
    let _ = ACTIVE.try_with(|slot| {
        if let Ok(mut s) = slot.try_borrow_mut() {
            if s.present && value.len() <= MAX_BAGGAGE {
                s.baggage[..value.len()].copy_from_slice(value);
                s.baggage_len = value.len();
            }
        }
    });
}

/// The `baggage` of the request the calling thread serves, if it had one.
pub fn baggage() -> Option<Vec<u8>> {
    ACTIVE
        .try_with(|slot| {
            let s = slot.try_borrow().ok()?;
            (s.present && s.baggage_len > 0).then(|| s.baggage[..s.baggage_len].to_vec())
        })
        .ok()
        .flatten()
}

/// Clears the active context if it is the span `span_id`.
pub fn clear_active(span_id: [u8; 8]) {
    let _ = ACTIVE.try_with(|slot| {
        if let Ok(mut s) = slot.try_borrow_mut() {
            if s.present && s.span_id == span_id {
                s.present = false;
            }
        }
    });
    crate::hint::ended(span_id);
}

/// Clears the calling thread's active context, whatever it is (tests).
#[doc(hidden)]
pub fn clear_active_all() {
    let _ = ACTIVE.try_with(|slot| {
        if let Ok(mut s) = slot.try_borrow_mut() {
            s.present = false;
        }
    });
}

/// The calling thread's active context, if it is serving a request.
pub fn active() -> Option<SpanContext> {
    ACTIVE
        .try_with(|slot| {
            let s = slot.try_borrow().ok()?;
            s.present.then(|| SpanContext {
                trace_id: s.trace_id,
                span_id: s.span_id,
                trace_flags: s.flags,
                trace_state: (s.state_len > 0)
                    .then(|| String::from_utf8_lossy(&s.state[..s.state_len]).into_owned()),
            })
        })
        .ok()
        .flatten()
}

/// The trace id and parent span id of the `traceparent` the request the
/// calling thread serves arrived with, if it had one: what a proxy
/// forwards unchanged.
pub fn forwarded_parent() -> Option<([u8; 16], [u8; 8])> {
    ACTIVE
        .try_with(|slot| {
            let s = slot.try_borrow().ok()?;
            let parent = s.inbound_parent.filter(|_| s.present)?;
            Some((s.trace_id, parent))
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(id: u8, state: Option<&str>) -> SpanContext {
        SpanContext {
            trace_id: [id; 16],
            span_id: [id; 8],
            trace_flags: 1,
            trace_state: state.map(str::to_owned),
        }
    }

    #[test]
    fn set_replace_and_clear() {
        assert_eq!(active(), None);
        set_active(&ctx(1, Some("a=b")), None);
        assert_eq!(active(), Some(ctx(1, Some("a=b"))));
        set_active(&ctx(2, None), Some([9; 8]));
        assert_eq!(forwarded_parent(), Some(([2; 16], [9; 8])));
        assert_eq!(active(), Some(ctx(2, None)));
        clear_active([1; 8]);
        assert_eq!(
            active(),
            Some(ctx(2, None)),
            "only the active span clears it"
        );
        clear_active([2; 8]);
        assert_eq!(active(), None);
        assert_eq!(forwarded_parent(), None);
    }

    #[test]
    fn baggage_goes_with_the_active_request() {
        set_baggage(b"ignored=1");
        assert_eq!(baggage(), None, "no request");
        set_active(&ctx(4, None), None);
        set_baggage(b"user=alice");
        assert_eq!(baggage(), Some(b"user=alice".to_vec()));
        set_active(&ctx(5, None), None);
        assert!(baggage().is_none(), "a new request");
        set_baggage(b"k=v");
        clear_active([5; 8]);
        assert!(baggage().is_none());
    }

    #[test]
    fn filtered_goes_with_the_active_request() {
        set_filtered();
        assert!(!active_filtered(), "no request");
        set_active(&ctx(6, None), None);
        assert!(!active_filtered());
        set_filtered();
        assert!(active_filtered());
        set_active(&ctx(7, None), None);
        assert!(!active_filtered(), "a new request");
        set_filtered();
        clear_active([7; 8]);
        assert!(!active_filtered());
    }

    #[test]
    fn tags_go_with_the_active_request() {
        set_active(&ctx(8, None), None);
        set_tags(&[(0, "acme".into()), (3, "é".into())]);
        assert_eq!(tags_of([8; 8]), vec![(0, "acme".into()), (3, "é".into())]);
        assert!(tags_of([9; 8]).is_empty(), "another span's children");
        let many: Vec<(u8, String)> = (0..50).map(|i| (i, "v".repeat(70))).collect();
        set_tags(&many);
        assert_eq!(tags_of([8; 8]).len(), MAX_TAG_BYTES / 72);
        set_active(&ctx(9, None), None);
        assert!(tags_of([9; 8]).is_empty(), "a new request");
        clear_active([9; 8]);
    }

    #[test]
    fn threads_do_not_share_the_slot() {
        set_active(&ctx(3, None), None);
        std::thread::spawn(|| assert_eq!(active(), None))
            .join()
            .unwrap();
        clear_active([3; 8]);
    }
}
