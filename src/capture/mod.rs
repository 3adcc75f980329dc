//! The data path: capture on the app's thread, decode on ours.
//!
//! On the app's thread, a traced HTTP connection (plain, or the plaintext
//! inside TLS) is followed only as far as the app's thread must: where
//! heads end and how long bodies are ([`frame::Framer`]), and what
//! propagation needs there (the SERVER span's identity and the thread's
//! active context when a request comes in; the CLIENT span's identity and
//! the inserted `traceparent` when one goes out). The bytes of each head,
//! a bounded prefix of each body, and those identities go as records into
//! the thread's [`ring`]. The capture thread drains the rings and replays
//! the records ([`decode::Decoder`]) into the same parsers that once ran
//! on the app's thread, which build the spans.
//!
//! The databases go the same way ([`crate::protocol::Compact`]):
//! PostgreSQL framed by its messages' own lengths (a `DataRow` goes as its
//! header and one byte), MySQL by its packets' headers (each packet cut to
//! what the parser may read of one starting with that byte), Redis by
//! RESP's lines, counts and lengths (a string's content past 256 bytes
//! left out); a write that starts commands carries the thread's context,
//! which their spans are children of, and a Redis subscriber's message
//! gets its CONSUMER span's identity on the app's thread, which makes it
//! the thread's active context. The message brokers are still parsed on
//! the app's thread (a context is written into each message published,
//! and a consumer's context is set when its message is read).

pub mod decode;
#[doc(hidden)]
pub mod differential;
pub mod frame;
pub mod ring;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::address::Address;
use crate::http::Role;
use crate::tracer::Tracer;

pub use decode::Decoder;
pub use ring::{Header, Rings};

/// How often a busy capture thread drains the rings.
const POLL: Duration = Duration::from_millis(5);

/// The capture state of one process: its rings and its decoder.
pub struct Capture {
    pub rings: Rings,
    decoder: Mutex<Decoder>,
    /// Starts the capture thread (set by the preload library).
    starter: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// Body bytes copied per message and direction (payload capture).
    pub body_prefix: usize,
    next_conn: AtomicU64,
    /// Bytes of long heads on their way to the capture thread outside the
    /// rings (see [`ring::kind::DATA_BOXED`]); at most [`BOXED_BUDGET`].
    boxed: std::sync::atomic::AtomicUsize,
}

/// Heads longer than this go outside the rings (a 40 KiB cookie would fill
/// one); most heads are a few hundred bytes.
pub const BOX_OVER: usize = 4 * 1024;

/// Most bytes of long heads outstanding at once, for the whole process.
pub const BOXED_BUDGET: usize = 4 * 1024 * 1024;

impl Capture {
    pub fn new(body_prefix: usize) -> Capture {
        Capture {
            rings: Rings::new(),
            decoder: Mutex::new(Decoder::default()),
            starter: OnceLock::new(),
            body_prefix,
            next_conn: AtomicU64::new(1),
            boxed: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// What starts the capture thread at the first record.
    pub fn set_starter(&self, f: Box<dyn Fn() + Send + Sync>) {
        let _ = self.starter.set(f);
    }

    /// A new connection id.
    pub fn conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn push(&self, cache: &mut ring::RingCache, h: Header, parts: &[&[u8]]) -> bool {
        self.rings.push_via(cache, h, parts, || {
            if let Some(start) = self.starter.get() {
                start();
            }
        })
    }

    /// Takes `n` bytes of the long-head budget; false if it is spent.
    pub(crate) fn reserve_boxed(&self, n: usize) -> bool {
        self.boxed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                (b + n <= BOXED_BUDGET).then_some(b + n)
            })
            .is_ok()
    }

    /// Gives back `n` bytes of the long-head budget.
    pub(crate) fn release_boxed(&self, n: usize) {
        self.boxed.fetch_sub(n, Ordering::AcqRel);
    }

    fn decoder(&self) -> MutexGuard<'_, Decoder> {
        self.decoder.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drains every ring into the decoder; spans go to `tracer`'s sink.
    /// Returns the records decoded.
    pub fn drain(&self, tracer: &Tracer) -> usize {
        let mut d = self.decoder();
        let n = self.rings.drain(|h, p| {
            if h.kind == ring::kind::DATA_BOXED {
                let len = p
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, |b| u64::from_le_bytes(b) as usize);
                // SAFETY: a DATA_BOXED record's `extra` is a leaked
                // `Box<[u8]>` of `len` bytes whose ownership the push gave
                // up; each record is drained once.
                let bytes: Box<[u8]> = unsafe {
                    Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                        h.extra as usize as *mut u8,
                        len,
                    ))
                };
                self.release_boxed(len);
                let h = Header {
                    kind: ring::kind::DATA,
                    ..*h
                };
                d.record(&h, &bytes, tracer);
            } else {
                d.record(h, p, tracer);
            }
        });
        d.tick(tracer);
        n
    }

    /// The capture thread's loop: drain, sleep until woken (or briefly
    /// while records wait for earlier ones), forever.
    pub fn run(&self, tracer: &Tracer) -> ! {
        loop {
            let n = self.drain(tracer);
            // While records flow, poll every few milliseconds, so the app's
            // threads never pay a wake-up; once idle, sleep until the next
            // record wakes the thread.
            let busy = n > 0 || self.decoder().waiting();
            self.rings.sleep(busy.then_some(POLL));
        }
    }

    /// Connections the decoder follows now.
    pub fn open_connections(&self) -> usize {
        self.decoder().open()
    }

    /// Records refused by full rings (and a full spill).
    pub fn dropped(&self) -> u64 {
        self.rings.dropped()
    }

    /// Records that found their ring full and went through the spill.
    pub fn spilled(&self) -> u64 {
        self.rings.spilled()
    }

    /// Connections whose records stopped coming in order (a record went
    /// missing, or too many waited for an earlier one).
    pub fn gaps(&self) -> u64 {
        self.decoder().gaps
    }
}

/// What the decoder learns of a connection from its first record.
#[derive(Debug)]
pub struct Opened {
    pub role: Role,
    pub peer: Option<Address>,
    pub local: Option<Address>,
    /// `Some` inside TLS, with the server name if known.
    pub tls: Option<Option<String>>,
}

/// The time of an app's call, read once, as nanoseconds since the epoch
/// (what records carry); [`Stamp::time`] gives it as a `SystemTime` (for
/// parsers and spans) only where one is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub ns: u64,
}

impl Stamp {
    /// Now: one `clock_gettime`, without the general `SystemTime`
    /// subtraction.
    pub fn now() -> Stamp {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        let ok = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) } == 0;
        match (u64::try_from(ts.tv_sec), u64::try_from(ts.tv_nsec)) {
            (Ok(sec), Ok(nsec)) if ok && nsec < 1_000_000_000 => Stamp {
                ns: sec.wrapping_mul(1_000_000_000).wrapping_add(nsec),
            },
            // A clock before 1970, or no clock: the general way.
            _ => Stamp::from(SystemTime::now()),
        }
    }

    /// The time as a `SystemTime` (a time before 1970 reads as 1970, as
    /// records carry it).
    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.ns)
    }
}

impl From<SystemTime> for Stamp {
    fn from(time: SystemTime) -> Stamp {
        Stamp { ns: time_ns(time) }
    }
}

/// A record time.
pub fn time_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Back from a record time.
pub fn from_ns(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

#[cfg(test)]
#[path = "differential_tests.rs"]
mod differential_tests;

#[cfg(test)]
mod stamp_tests {
    use super::*;

    #[test]
    fn a_stamp_is_one_time_in_both_forms() {
        let before = SystemTime::now();
        let s = Stamp::now();
        let after = SystemTime::now();
        assert!(before <= s.time() && s.time() <= after, "{s:?}");
        assert_eq!(s.ns, time_ns(s.time()));
        assert_eq!(Stamp::from(s.time()), s);
        assert_eq!(from_ns(s.ns), s.time());
    }
}
