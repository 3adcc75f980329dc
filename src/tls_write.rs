//! Splicing inserted bytes into a TLS plaintext write.
//!
//! The OpenSSL hooks hand `SSL_write` a buffer of their own when a request
//! head gets a `traceparent` (or a broker message its rewritten header):
//! the app's bytes with the plan's bytes spliced in. OpenSSL insists that a
//! write it did not finish be retried with the very same buffer, so that
//! buffer is kept ([`PendingWrite`]) until a call takes it. What the app is
//! told afterwards is a count of *its* bytes, which this module works out
//! from the count OpenSSL reports for the combined buffer.
//!
//! Only arithmetic lives here; the preload library keeps the `SSL*` table
//! and the calls.

use crate::connection::OutboundPlan;

/// The smallest TLS record OpenSSL can be told to send
/// (`SSL_set_max_send_fragment`'s lower bound).
pub const MIN_TLS_RECORD: usize = 512;

/// A buffer to hand to the real SSL_write in place of the app's.
pub struct Combined {
    pub ptr: *const u8,
    pub len: usize,
    /// Where the inserted bytes are in it, and how many.
    at: usize,
    inserted: usize,
}

impl Combined {
    /// Of `sent` bytes of this buffer, how many were the app's: the
    /// fallback should tracing stop between the call and its commit (with
    /// partial writes, `sent` may be any part of the buffer).
    pub fn app_count(&self, sent: usize) -> usize {
        if sent <= self.at {
            sent
        } else if sent < self.at + self.inserted {
            self.at
        } else {
            sent - self.inserted
        }
    }
}

/// A write carrying inserted bytes that OpenSSL has not taken yet: it must
/// be retried with this very buffer.
pub struct PendingWrite {
    buf: Vec<u8>,
    plan: OutboundPlan,
    app_len: usize,
    /// The app's bytes that a replacement left out of `buf` (all of them
    /// for a plan of several edits).
    replaced: Vec<u8>,
}

impl PendingWrite {
    /// The buffer that carries the app's write `app` with `plan`'s bytes,
    /// or `None` when the write should go as it is (the span is still
    /// made from the app's bytes).
    ///
    /// `partial_writes`: the `SSL*` has `SSL_MODE_ENABLE_PARTIAL_WRITE`, so
    /// OpenSSL may report any number of whole records. Then
    /// - a plan of several edits (a broker message's rewritten header,
    ///   which must go all or nothing) is not applied;
    /// - an insertion at the very start of at least [`MIN_TLS_RECORD`]
    ///   bytes is not applied either: one record of inserted bytes alone
    ///   would have to be reported to the app as 0 bytes written (an
    ///   error). A shorter line (a `traceparent` is ~70 bytes) or app bytes
    ///   before it rule that out.
    pub fn new(app: &[u8], plan: OutboundPlan, partial_writes: bool) -> Option<PendingWrite> {
        if !plan.is_single() {
            if partial_writes {
                return None;
            }
            let buf = plan.apply(app)?;
            return Some(PendingWrite {
                buf,
                plan,
                app_len: app.len(),
                replaced: app.to_vec(),
            });
        }
        if partial_writes && plan.at() == 0 && plan.insert().len() >= MIN_TLS_RECORD {
            return None;
        }
        let resume = plan.at() + plan.replace();
        let replaced = app.get(plan.at()..resume)?.to_vec();
        let mut buf = Vec::with_capacity(app.len() + plan.insert().len());
        buf.extend_from_slice(&app[..plan.at()]);
        buf.extend_from_slice(plan.insert());
        buf.extend_from_slice(&app[resume..]);
        Some(PendingWrite {
            buf,
            plan,
            app_len: app.len(),
            replaced,
        })
    }

    /// The plan whose bytes are in the buffer.
    pub fn plan(&self) -> &OutboundPlan {
        &self.plan
    }

    /// A write of `app` is the retry of this one (OpenSSL asks for the
    /// same length); any other means the app gave up on it.
    pub fn is_retried_by(&self, app: &[u8]) -> bool {
        self.app_len == app.len()
    }

    /// The buffer to write, and where its inserted bytes are.
    pub fn combined(&self) -> Combined {
        let (at, inserted) = if self.plan.is_single() {
            (
                self.plan.at(),
                // A replacement is one for one: no net inserted bytes.
                self.plan.insert().len().saturating_sub(self.plan.replace()),
            )
        } else {
            (0, self.buf.len().saturating_sub(self.app_len))
        };
        Combined {
            ptr: self.buf.as_ptr(),
            len: self.buf.len(),
            at,
            inserted,
        }
    }

    /// The app's own bytes among the first `app` of its write that went
    /// out (`app` as the connection's `commit_outbound` counted them), in
    /// order, as the pieces to feed the connection: those before the
    /// plan's bytes, those a replacement stood in for, those after.
    pub fn app_bytes(&self, app: usize) -> impl Iterator<Item = &[u8]> {
        let none: &[u8] = &[];
        let (pieces, n) = if !self.plan.is_single() {
            // `replaced` holds all the app's bytes.
            ([&self.replaced[..app.min(self.app_len)], none, none], 1)
        } else {
            let (at, m, r) = (
                self.plan.at(),
                self.plan.insert().len(),
                self.plan.replace(),
            );
            let before = &self.buf[..at.min(app)];
            let theirs = &self.replaced[..app.saturating_sub(at).min(r)];
            if app > at + r {
                let after = &self.buf[at + m..at + m + (app - at - r)];
                ([before, theirs, after], 3)
            } else {
                ([before, theirs, none], 2)
            }
        };
        pieces.into_iter().take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::connection::{Connection, Edit};
    use crate::mask::Masker;
    use crate::span::SpanRecord;
    use crate::tracer::{SpanSink, Tracer};
    use std::time::SystemTime;

    struct Discard;
    impl SpanSink for Discard {
        fn submit(&self, _: SpanRecord) {}
    }

    fn tracer() -> Tracer {
        Tracer::new(Masker::new(&[]), Box::new(Discard))
    }

    fn client() -> Connection {
        Connection::client(Some(Address::Inet("127.0.0.1:443".parse().unwrap())), None)
    }

    const HEAD: &[u8] = b"GET /a HTTP/1.1\r\nHost: example\r\n\r\n";

    fn bytes(p: &PendingWrite) -> &[u8] {
        let c = p.combined();
        // SAFETY: `c` points into `p.buf`, alive while `p` is borrowed.
        unsafe { std::slice::from_raw_parts(c.ptr, c.len) }
    }

    fn app_bytes(p: &PendingWrite, app: usize) -> Vec<u8> {
        p.app_bytes(app).flatten().copied().collect()
    }

    fn insertion(at: usize, n: usize) -> OutboundPlan {
        OutboundPlan::single(at, vec![b'x'; n], 0, 0)
    }

    #[test]
    fn the_app_count_of_a_sent_count() {
        let p = PendingWrite::new(&[b'a'; 100], insertion(10, 70), false).unwrap();
        let c = p.combined();
        assert_eq!(c.len, 170);
        let want = |sent: usize| match sent {
            0..=10 => sent,
            // Inside the inserted bytes: only the app's before them.
            11..=79 => 10,
            _ => sent - 70,
        };
        for sent in 0..=170 {
            assert_eq!(c.app_count(sent), want(sent), "sent {sent}");
        }
        assert_eq!(c.app_count(170), 100);
    }

    #[test]
    fn a_replacement_counts_one_for_one() {
        let app = b"GET / HTTP/1.1\r\ntraceparent: 00-aa-bb-01\r\n\r\n";
        let at = 16 + "traceparent: ".len();
        let plan = OutboundPlan::single(at, b"00-cc-dd-01".to_vec(), 11, 0);
        let p = PendingWrite::new(app, plan, false).unwrap();
        assert_eq!(p.combined().len, app.len());
        assert!(bytes(&p).windows(11).any(|w| w == b"00-cc-dd-01"));
        for sent in 0..=app.len() {
            assert_eq!(p.combined().app_count(sent), sent);
            // The app's own bytes, including those the new value replaced.
            assert_eq!(app_bytes(&p, sent), &app[..sent], "app {sent}");
        }
    }

    #[test]
    fn an_insertion_is_spliced_in_place() {
        let at = HEAD.len() - 2;
        let line = b"traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n";
        let p =
            PendingWrite::new(HEAD, OutboundPlan::single(at, line.to_vec(), 0, 0), false).unwrap();
        let mut want = HEAD[..at].to_vec();
        want.extend_from_slice(line);
        want.extend_from_slice(b"\r\n");
        assert_eq!(bytes(&p), want);
        let c = p.combined();
        assert_eq!((c.at, c.inserted), (at, line.len()));
    }

    #[test]
    fn the_app_bytes_of_any_count_are_the_apps_in_order() {
        let app: Vec<u8> = (0..200u8).collect();
        for (at, n) in [(0, 5), (0, 70), (3, 70), (150, 70), (199, 1), (200, 70)] {
            let p = PendingWrite::new(&app, insertion(at, n), false).unwrap();
            for count in 0..=app.len() {
                assert_eq!(
                    app_bytes(&p, count),
                    &app[..count],
                    "at {at} n {n} app {count}"
                );
            }
            // Never more than three pieces; the third only past the plan.
            assert_eq!(p.app_bytes(at).count(), 2);
            if at < app.len() {
                assert_eq!(p.app_bytes(at + 1).count(), 3);
            }
        }
    }

    #[test]
    fn with_partial_writes_a_long_insertion_at_the_start_goes_without() {
        let app = [b'a'; 64];
        // Shorter than a record, or after app bytes: the app is never told 0.
        assert!(PendingWrite::new(&app, insertion(0, MIN_TLS_RECORD - 1), true).is_some());
        assert!(PendingWrite::new(&app, insertion(1, MIN_TLS_RECORD), true).is_some());
        assert!(PendingWrite::new(&app, insertion(1, 4 * MIN_TLS_RECORD), true).is_some());
        // A record's worth of inserted bytes first: the write goes as it is.
        assert!(PendingWrite::new(&app, insertion(0, MIN_TLS_RECORD), true).is_none());
        assert!(PendingWrite::new(&app, insertion(0, 4 * MIN_TLS_RECORD), true).is_none());
        // Without partial writes OpenSSL takes all or nothing.
        assert!(PendingWrite::new(&app, insertion(0, 4 * MIN_TLS_RECORD), false).is_some());
        // A write shorter than a record: the same rules (the length of the
        // app's bytes plays no part).
        assert!(PendingWrite::new(b"x", insertion(0, 70), true).is_some());
        assert!(PendingWrite::new(b"x", insertion(0, MIN_TLS_RECORD), true).is_none());
    }

    #[test]
    fn a_plan_that_does_not_fit_the_write_leaves_it_alone() {
        let app = [b'a'; 10];
        assert!(PendingWrite::new(&app, insertion(11, 3), false).is_none());
        assert!(
            PendingWrite::new(&app, OutboundPlan::single(8, b"xyz".to_vec(), 3, 0), false)
                .is_none()
        );
        assert!(PendingWrite::new(&app, insertion(10, 3), false).is_some());
    }

    fn edits() -> OutboundPlan {
        OutboundPlan::edits_at(
            vec![
                Edit {
                    at: 2,
                    replace: 2,
                    insert: b"LONGER".to_vec(),
                },
                Edit {
                    at: 6,
                    replace: 0,
                    insert: b"++".to_vec(),
                },
            ],
            0,
        )
        .unwrap()
    }

    #[test]
    fn several_edits_go_all_or_nothing() {
        let app = b"abcdefghij";
        assert!(PendingWrite::new(app, edits(), true).is_none());
        let p = PendingWrite::new(app, edits(), false).unwrap();
        assert_eq!(bytes(&p), b"abLONGERef++ghij");
        let c = p.combined();
        assert_eq!((c.at, c.inserted), (0, 6));
        assert_eq!(c.app_count(16), 10);
        assert_eq!(c.app_count(5), 0);
        // All the app's bytes, in one piece, however many were counted.
        for count in 0..=12 {
            let pieces: Vec<&[u8]> = p.app_bytes(count).collect();
            assert_eq!(pieces, [&app[..count.min(10)]]);
        }
        // A plan that shrinks the write has no net inserted bytes.
        let shrink = OutboundPlan::edits_at(
            vec![Edit {
                at: 0,
                replace: 4,
                insert: b"z".to_vec(),
            }],
            0,
        )
        .unwrap();
        let p = PendingWrite::new(app, shrink, false).unwrap();
        assert_eq!(bytes(&p), b"zefghij");
        assert_eq!(p.combined().inserted, 0);
        // Edits past the write's end do not fit it.
        let far = OutboundPlan::edits_at(
            vec![Edit {
                at: 11,
                replace: 0,
                insert: b"z".to_vec(),
            }],
            0,
        )
        .unwrap();
        assert!(PendingWrite::new(app, far, false).is_none());
    }

    #[test]
    fn a_retry_gets_the_same_buffer() {
        let p = PendingWrite::new(HEAD, insertion(4, 70), false).unwrap();
        let (first, again) = (p.combined(), p.combined());
        assert_eq!((first.ptr, first.len), (again.ptr, again.len));
        assert!(p.is_retried_by(HEAD));
        assert!(p.is_retried_by(&[0; 35][..HEAD.len()]));
        assert!(!p.is_retried_by(&HEAD[1..]));
        assert!(!p.is_retried_by(b""));
    }

    /// What the hooks do, against a real client connection: every count
    /// OpenSSL may report for the combined buffer, including cuts inside
    /// the inserted `traceparent` line.
    #[test]
    fn partial_sends_against_a_connection() {
        let t = tracer();
        let probe = client().plan_outbound(&[HEAD], &t).expect("a traceparent");
        let (at, m) = (probe.at(), probe.insert().len());
        assert_eq!(at, HEAD.len() - 2);
        assert!(m < MIN_TLS_RECORD, "a line of {m} bytes");
        for sent in 0..=HEAD.len() + m {
            let mut c = client();
            let plan = c.plan_outbound(&[HEAD], &t).unwrap();
            let p = PendingWrite::new(HEAD, plan, true).expect("short line: applied");
            let combined = p.combined();
            assert_eq!(combined.len, HEAD.len() + m);
            let app = c.commit_outbound(p.plan(), sent);
            // The fallback agrees with the connection's own count.
            assert_eq!(combined.app_count(sent), app, "sent {sent}");
            let want = match sent {
                s if s <= at => s,
                s if s < at + m => at,
                s => s - m,
            };
            assert_eq!(app, want, "sent {sent}");
            assert_eq!(app_bytes(&p, app), &HEAD[..app], "sent {sent}");
            for piece in p.app_bytes(app) {
                let _ = c.on_outbound(piece, SystemTime::now(), &t);
            }
            // The app writes the rest: a line cut short goes out first.
            let rest = c.plan_outbound(&[&HEAD[app..]], &t);
            match sent {
                s if s > at && s < at + m => {
                    let rest = rest.expect("the rest of the line");
                    assert_eq!(rest.at(), 0);
                    assert_eq!(rest.insert(), &p.plan().insert()[sent - at..]);
                    // Short: applied even with partial writes.
                    assert!(PendingWrite::new(&HEAD[app..], rest, true).is_some());
                }
                s if s >= at + m => assert_eq!(rest, None, "sent {sent}: the line is out"),
                _ => {}
            }
        }
    }
}
