//! Per-thread single-producer, single-consumer rings of capture records.
//!
//! Each app thread that moves bytes on a traced HTTP connection gets its own
//! [`Ring`] (a fixed [`RING_BYTES`] buffer, allocated at its first record)
//! and is its only writer; the capture thread is its only reader. Pushing
//! a record is a bounds check, a copy and one release store: no lock, no
//! allocation, no system call, except the single futex wake that rouses a
//! sleeping capture thread. A record that finds its ring full goes to the
//! registry's spill instead (an allocation and a lock tried, not waited
//! for: the capture thread has fallen behind, as when it gets no CPU for a
//! while), within [`SPILL_BUDGET`] bytes for the process; only when that
//! too is full (or its lock busy) is the record refused (the caller counts
//! it and stops recording that connection until its next head). The
//! decoder puts each connection's records back in order by their sequence
//! numbers, wherever they were drained from.
//!
//! A record is a fixed [`Header`] and up to [`MAX_PAYLOAD`] bytes, never
//! split across the ring's end (a padding record fills the gap). Rings are
//! found through the process's [`Rings`] registry; a thread's ring outlives
//! the thread until the capture thread has drained it.

use std::cell::{RefCell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Bytes of one ring.
pub const RING_BYTES: usize = 64 * 1024;

/// Most payload bytes of one record: longer data goes in several.
pub const MAX_PAYLOAD: usize = 8 * 1024;

/// Most bytes the records waiting in the spill may take (see
/// [`spill_cost`]).
pub const SPILL_BUDGET: usize = 4 * 1024 * 1024;

/// Times a record going to the spill tries its lock again before it is
/// refused.
const SPILL_LOCK_TRIES: usize = 64;

/// What a spilled record of `len` payload bytes takes: its entry in the
/// spill, its bytes, and the allocator's header of their block.
fn spill_cost(len: usize) -> usize {
    std::mem::size_of::<Spilled>() + len + 16
}

/// A record's kind.
pub mod kind {
    /// Filler up to the ring's end.
    pub const PAD: u8 = 0;
    /// A connection's first record: `extra` is a `Box<Opened>` pointer.
    pub const OPEN: u8 = 1;
    /// Bytes the app moved (`dir`), copied.
    pub const DATA: u8 = 2;
    /// Body bytes not copied: `extra` wire bytes; the payload is the body's
    /// content so far (u64) and whether it ended there (u8).
    pub const SKIP: u8 = 3;
    /// The span identity of the next request head (`span::encode_assigned`).
    pub const IDENT: u8 = 4;
    /// The connection ended: `extra` is the close reason.
    pub const CLOSE: u8 = 5;
    /// Like `DATA`, for long heads: `extra` is a `Box<[u8]>`'s pointer, the
    /// payload its length (u64), from the capture's big-record budget.
    pub const DATA_BOXED: u8 = 6;
}

/// Record flags.
pub mod flag {
    /// Records of this connection were lost before this one: start afresh.
    pub const RESYNC: u8 = 1;
    /// A DATA record whose payload starts with an identity (u16 length,
    /// then `decode::encode_identity`'s bytes) for the head in its bytes.
    pub const HAS_IDENT: u8 = 2;
    /// A DATA record followed at once by a SKIP: its payload ends with the
    /// SKIP's (the body's content so far, u64, and whether it ended there,
    /// u8) and its `extra` is the SKIP's wire bytes. One record instead of
    /// two for a head and a body not (all) kept.
    pub const SKIP_AFTER: u8 = 4;
}

/// The fixed part of a record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Header {
    pub conn: u64,
    /// Per connection, from 0, in the order the app's threads pushed.
    pub seq: u64,
    /// Wall-clock time of the call, ns since the Unix epoch.
    pub time_ns: u64,
    pub extra: u64,
    /// Payload bytes that follow.
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    /// 1: outbound, 0: inbound.
    pub dir: u8,
    pub _pad: u8,
}

const HEADER: usize = std::mem::size_of::<Header>();

/// Records are 8-byte aligned.
fn padded(n: usize) -> usize {
    (n + 7) & !7
}

/// `n` zero bytes from the allocator's zeroed memory (no loop on the
/// app's thread).
fn zeroed(n: usize) -> Box<[UnsafeCell<u8>]> {
    let bytes: Box<[u8]> = vec![0u8; n].into_boxed_slice();
    // SAFETY: `UnsafeCell<u8>` has the layout of `u8` (repr(transparent)).
    unsafe { Box::from_raw(Box::into_raw(bytes) as *mut [UnsafeCell<u8>]) }
}

/// One thread's ring.
///
/// The producer's and the consumer's positions are on cache lines of
/// their own (two lines each: the prefetcher pulls lines in pairs), so
/// that the consumer draining one record does not take from the app's
/// thread the line it writes on its next push. The producer reads the
/// consumer's position only when its last reading says a record may not
/// fit (or the ring looks half full, see [`Ring::push`]); the consumer
/// publishes its position every [`RELEASE_EVERY`] bytes and when done.
pub struct Ring {
    buf: Box<[UnsafeCell<u8>]>,
    /// Its thread has exited: once drained, the ring goes.
    orphaned: AtomicBool,
    producer: Line<Producer>,
    /// Bytes ever consumed (written by the consumer only).
    tail: Line<AtomicU64>,
}

/// A value alone on its two cache lines.
#[repr(align(128))]
struct Line<T>(T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// What the producer writes (and the consumer reads once per drain).
struct Producer {
    /// Bytes ever written.
    head: AtomicU64,
    /// The consumer's `tail` as the producer last read it: at most the
    /// true one, so what it says is free is free. The producer's alone.
    tail_seen: AtomicU64,
    /// Its records waiting in the spill: while there are any, the next
    /// go there too, so that its records are drained in the order they
    /// were pushed (the decoder holds only so many early ones).
    spilled: AtomicUsize,
}

/// How many bytes the consumer takes before it tells the producer (and
/// once more when a drain ends, and after every record while more than
/// half the ring is still to drain): a store on the producer's side each
/// time, instead of one per record.
const RELEASE_EVERY: u64 = (RING_BYTES / 8) as u64;

// SAFETY: one producer writes `buf` between `head` and `tail + RING_BYTES`
// only; one consumer reads between `tail` and `head` only; the atomics'
// release/acquire order the bytes.
unsafe impl Sync for Ring {}
unsafe impl Send for Ring {}

impl Ring {
    fn new() -> Ring {
        Ring {
            buf: zeroed(RING_BYTES),
            orphaned: AtomicBool::new(false),
            producer: Line(Producer {
                head: AtomicU64::new(0),
                tail_seen: AtomicU64::new(0),
                spilled: AtomicUsize::new(0),
            }),
            tail: Line(AtomicU64::new(0)),
        }
    }

    fn base(&self) -> *mut u8 {
        self.buf.as_ptr() as *mut u8
    }

    /// Bytes waiting for the consumer.
    pub fn used(&self) -> usize {
        let head = self.producer.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        (head - tail) as usize
    }

    /// Appends a record (header, then the `parts` one after another) and
    /// returns the bytes then waiting (an upper bound while the ring is
    /// less than half full); `None`, and nothing written, when it does not
    /// fit.
    fn push(&self, mut h: Header, parts: &[&[u8]]) -> Option<usize> {
        let p = &self.producer;
        if p.spilled.load(Ordering::Acquire) > 0 {
            return None;
        }
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > MAX_PAYLOAD {
            return None;
        }
        h.len = len as u32;
        let need = padded(HEADER + len);
        let head = p.head.load(Ordering::Relaxed);
        let at = (head as usize) % RING_BYTES;
        let gap = if at + need > RING_BYTES {
            RING_BYTES - at
        } else {
            0
        };
        let after = |tail: u64| (head - tail) as usize + gap + need;
        let mut tail = p.tail_seen.load(Ordering::Relaxed);
        // The consumer's position is read again (a cache line from its
        // core) only when the last reading says this may not fit, or that
        // the ring is half full (when a dozing consumer is woken, see
        // `Rings::wake_if_needed`, which must not be told so wrongly).
        if after(tail) >= RING_BYTES / 2 {
            tail = self.tail.load(Ordering::Acquire);
            p.tail_seen.store(tail, Ordering::Relaxed);
        }
        if after(tail) > RING_BYTES {
            return None;
        }
        let mut at = at;
        // SAFETY: [head, head + gap + need) is free (checked above against
        // a position the consumer published, with acquire: it has read
        // those bytes), and only this thread writes there; records never
        // cross the end.
        unsafe {
            if gap > 0 {
                // A gap shorter than a header is skipped by position.
                if gap >= HEADER {
                    let pad = Header {
                        kind: kind::PAD,
                        len: (gap - HEADER) as u32,
                        ..Header::default()
                    };
                    std::ptr::write_unaligned(self.base().add(at) as *mut Header, pad);
                }
                at = 0;
            }
            std::ptr::write_unaligned(self.base().add(at) as *mut Header, h);
            let mut p = at + HEADER;
            for part in parts {
                std::ptr::copy_nonoverlapping(part.as_ptr(), self.base().add(p), part.len());
                p += part.len();
            }
        }
        p.head.store(head + (gap + need) as u64, Ordering::Release);
        Some(after(tail))
    }

    /// Hands every record written so far to `f`, then frees their room.
    pub fn drain(&self, mut f: impl FnMut(&Header, &[u8])) -> usize {
        let head = self.producer.head.load(Ordering::Acquire);
        let mut tail = self.tail.load(Ordering::Relaxed);
        let mut told = tail;
        let mut n = 0;
        while tail < head {
            let at = (tail as usize) % RING_BYTES;
            if RING_BYTES - at < HEADER {
                // A gap too small for a padding header.
                tail += (RING_BYTES - at) as u64;
                continue;
            }
            // SAFETY: [tail, head) was published by the producer's release
            // store, which the acquire load above saw.
            let h = unsafe { std::ptr::read_unaligned(self.base().add(at) as *const Header) };
            let len = (h.len as usize).min(RING_BYTES - at - HEADER);
            if h.kind == kind::PAD {
                tail += (RING_BYTES - at) as u64;
                continue;
            }
            // SAFETY: as above; the payload follows its header.
            let payload = unsafe { std::slice::from_raw_parts(self.base().add(at + HEADER), len) };
            f(&h, payload);
            n += 1;
            tail += padded(HEADER + len) as u64;
            // Room is given back as the drain goes: in steps (no store per
            // record), or at once while the ring is more than half full
            // (the producer may be about to find it full).
            if tail - told >= RELEASE_EVERY || head - tail >= (RING_BYTES / 2) as u64 {
                self.tail.store(tail, Ordering::Release);
                told = tail;
            }
        }
        self.tail.store(head, Ordering::Release);
        n
    }
}

/// The ring a connection's last pushing thread used (see
/// [`Rings::push_via`]).
#[derive(Default)]
pub struct RingCache {
    thread: libc::pthread_t,
    generation: u64,
    ring: Option<Arc<Ring>>,
}

/// The capture thread's sleep states (the futex word).
const AWAKE: u32 = 0;
/// Sleeping for a short while: records are pending.
const DOZING: u32 = 1;
/// Sleeping until woken.
const ASLEEP: u32 = 2;

/// Every ring of this process, and the word the capture thread sleeps on.
pub struct Rings {
    /// Tells this registry's rings from a forked parent's.
    generation: u64,
    rings: Mutex<Vec<Arc<Ring>>>,
    sleep: AtomicU32,
    /// Records refused by full rings (and a full spill).
    dropped: AtomicU64,
    started: AtomicBool,
    /// Records that found their ring full (or its earlier records here),
    /// in the order they came, with their ring.
    spill: Mutex<Vec<Spilled>>,
    /// Bytes of the spill's records (at most [`SPILL_BUDGET`]).
    spilled: AtomicUsize,
    /// Records that went through the spill.
    spills: AtomicU64,
}

/// A record in the spill, and the ring it could not go into.
type Spilled = (Header, Box<[u8]>, Arc<Ring>);

static GENERATION: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's ring, and the generation of the registry it is in.
    static LOCAL: RefCell<Local> = const { RefCell::new(Local(0, None)) };
}

struct Local(u64, Option<Arc<Ring>>);

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(r) = &self.1 {
            r.orphaned.store(true, Ordering::Release);
        }
    }
}

impl Default for Rings {
    fn default() -> Self {
        Rings::new()
    }
}

impl Rings {
    pub fn new() -> Rings {
        Rings {
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            rings: Mutex::new(Vec::new()),
            sleep: AtomicU32::new(AWAKE),
            dropped: AtomicU64::new(0),
            started: AtomicBool::new(false),
            spill: Mutex::new(Vec::new()),
            spilled: AtomicUsize::new(0),
            spills: AtomicU64::new(0),
        }
    }

    /// Pushes a record into the calling thread's ring (made and registered
    /// at its first record). False when refused: the ring is full, or the
    /// thread is exiting. `start` runs once, at the first ring: it starts
    /// the capture thread.
    pub fn push(&self, h: Header, parts: &[&[u8]], start: impl FnOnce()) -> bool {
        let pushed = LOCAL.try_with(|local| {
            let Ok(mut local) = local.try_borrow_mut() else {
                return None;
            };
            if local.0 != self.generation || local.1.is_none() {
                let ring = Arc::new(Ring::new());
                if let Ok(mut all) = self.rings.lock() {
                    all.push(Arc::clone(&ring));
                } else {
                    return None;
                }
                if let Some(old) = local.1.replace(ring) {
                    old.orphaned.store(true, Ordering::Release);
                }
                local.0 = self.generation;
            }
            let ring = local.1.as_ref()?;
            let used = ring.push(h, parts);
            Some((used, used.is_none().then(|| Arc::clone(ring))))
        });
        if !self.started.load(Ordering::Relaxed) && !self.started.swap(true, Ordering::AcqRel) {
            start();
        }
        match pushed {
            Ok(Some((Some(used), _))) => {
                self.wake_if_needed(used);
                true
            }
            Ok(Some((None, Some(ring)))) => self.overflow(ring, h, parts),
            _ => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.wake_if_needed(RING_BYTES);
                false
            }
        }
    }

    /// A record its thread's ring has no room for (or whose earlier ones
    /// wait in the spill): into the spill, if the spill has room and its
    /// lock is free; refused (and counted) if not.
    #[cold]
    #[inline(never)]
    fn overflow(&self, ring: Arc<Ring>, mut h: Header, parts: &[&[u8]]) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let cost = spill_cost(len);
        let room = len <= MAX_PAYLOAD
            && self
                .spilled
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                    (b + cost <= SPILL_BUDGET).then_some(b + cost)
                })
                .is_ok();
        let spilled = room && {
            h.len = len as u32;
            let mut bytes = Vec::with_capacity(len);
            for p in parts {
                bytes.extend_from_slice(p);
            }
            // The capture thread holds the lock only to take the spill's
            // records out: a few tries, never a wait.
            let mut lock = self.spill.try_lock();
            for _ in 0..SPILL_LOCK_TRIES {
                if lock.is_ok() {
                    break;
                }
                std::hint::spin_loop();
                lock = self.spill.try_lock();
            }
            match lock {
                Ok(mut spill) => {
                    ring.producer.spilled.fetch_add(1, Ordering::AcqRel);
                    spill.push((h, bytes.into_boxed_slice(), ring));
                    self.spills.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(_) => {
                    self.spilled.fetch_sub(cost, Ordering::AcqRel);
                    false
                }
            }
        };
        if !spilled {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.wake_if_needed(RING_BYTES);
        spilled
    }

    /// Like [`Rings::push`], through `cache`: the ring of the thread that
    /// pushed last for the caller (a connection). When that thread pushes
    /// again, its ring is reached without a thread-local lookup (which,
    /// in a preloaded library, is a call into the dynamic linker).
    pub fn push_via(
        &self,
        cache: &mut RingCache,
        h: Header,
        parts: &[&[u8]],
        start: impl FnOnce(),
    ) -> bool {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        if let Some(ring) = cache.ring.as_ref().filter(|r| {
            cache.thread == me
                && cache.generation == self.generation
                && !r.orphaned.load(Ordering::Acquire)
        }) {
            if let Some(used) = ring.push(h, parts) {
                self.wake_if_needed(used);
                return true;
            }
            return self.overflow(Arc::clone(ring), h, parts);
        }
        let ok = self.push(h, parts, start);
        let _ = LOCAL.try_with(|local| {
            if let Ok(local) = local.try_borrow() {
                if local.0 == self.generation {
                    cache.ring = local.1.clone();
                    cache.thread = me;
                    cache.generation = self.generation;
                }
            }
        });
        ok
    }

    /// Rouses the capture thread when it sleeps with nothing to wake it,
    /// or when this ring fills up.
    #[inline]
    fn wake_if_needed(&self, used: usize) {
        let s = self.sleep.load(Ordering::Relaxed);
        if (s == ASLEEP || (s == DOZING && used >= RING_BYTES / 2))
            && self.sleep.swap(AWAKE, Ordering::AcqRel) != AWAKE
        {
            futex_wake(&self.sleep);
        }
    }

    /// Records refused so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records that went through the spill so far.
    pub fn spilled(&self) -> u64 {
        self.spills.load(Ordering::Relaxed)
    }

    /// Drains every ring, oldest registered first; drops the rings of
    /// exited threads once empty. Returns the number of records.
    pub fn drain(&self, mut f: impl FnMut(&Header, &[u8])) -> usize {
        let rings: Vec<Arc<Ring>> = match self.rings.lock() {
            Ok(all) => all.clone(),
            Err(_) => return 0,
        };
        let mut n = 0;
        for r in &rings {
            n += r.drain(&mut f);
        }
        // After the rings: a spilled record found its ring full (or its
        // ring's earlier records in the spill), so it follows every record
        // of its ring drained above, and its ring takes no record until
        // the spill holds none of its own.
        if self.spilled.load(Ordering::Acquire) > 0 {
            let spill = match self.spill.lock() {
                Ok(mut s) => std::mem::take(&mut *s),
                Err(_) => Vec::new(),
            };
            for (h, bytes, ring) in &spill {
                f(h, bytes);
                self.spilled
                    .fetch_sub(spill_cost(bytes.len()), Ordering::AcqRel);
                ring.producer.spilled.fetch_sub(1, Ordering::AcqRel);
            }
            n += spill.len();
        }
        if rings.iter().any(|r| r.orphaned.load(Ordering::Acquire)) {
            if let Ok(mut all) = self.rings.lock() {
                all.retain(|r| !(r.orphaned.load(Ordering::Acquire) && r.used() == 0));
            }
        }
        n
    }

    /// Sleeps until woken, or for `doze` when given (something is pending).
    pub fn sleep(&self, doze: Option<Duration>) {
        let state = if doze.is_some() { DOZING } else { ASLEEP };
        if self
            .sleep
            .compare_exchange(AWAKE, state, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        // A record pushed between the last drain and now would find the
        // thread not yet asleep: look once more before sleeping.
        let pending = self.spilled.load(Ordering::Acquire) > 0
            || match self.rings.lock() {
                Ok(all) => all.iter().any(|r| r.used() > 0),
                Err(_) => false,
            };
        if !pending {
            futex_wait(&self.sleep, state, doze);
        }
        self.sleep.store(AWAKE, Ordering::Release);
    }

    /// Wakes the capture thread now (a flush).
    pub fn wake(&self) {
        if self.sleep.swap(AWAKE, Ordering::AcqRel) != AWAKE {
            futex_wake(&self.sleep);
        }
    }

    /// Rings registered (for tests and diagnostics).
    pub fn count(&self) -> usize {
        self.rings.lock().map(|v| v.len()).unwrap_or(0)
    }
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs() as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: a futex wait on a live atomic, with a valid or null timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            tsp,
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: a futex wake on a live atomic.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(conn: u64, seq: u64) -> Header {
        Header {
            conn,
            seq,
            kind: kind::DATA,
            ..Header::default()
        }
    }

    #[test]
    fn the_two_sides_write_on_lines_of_their_own() {
        let r = Ring::new();
        let at = |p: *const u8| p as usize;
        let head = at((&r.producer.head as *const AtomicU64).cast());
        let spilled = at((&r.producer.spilled as *const AtomicUsize).cast());
        let tail = at((&*r.tail as *const AtomicU64).cast());
        let orphaned = at((&r.orphaned as *const AtomicBool).cast());
        // Which pair of 64-byte lines each is on.
        let pair = |a: usize| a / 128;
        for producer in [head, spilled] {
            assert_ne!(pair(tail), pair(producer), "{tail:#x} {producer:#x}");
            assert_ne!(pair(orphaned), pair(producer));
        }
        assert_ne!(pair(orphaned), pair(tail));
    }

    #[test]
    fn a_push_past_half_full_reads_the_room_drained_since() {
        let r = Ring::new();
        let bytes = [7u8; 1000];
        let mut used = 0;
        while used < RING_BYTES * 3 / 4 {
            used = r.push(rec(1, 0), &[&bytes]).unwrap();
        }
        assert!(r.drain(|_, _| {}) > 0);
        // The producer's last reading of the consumer's position is from
        // before the drain; a push that would take the ring past half full
        // by it reads it again: the ring is nearly empty, and a dozing
        // capture thread is not woken for nothing.
        let after = r.push(rec(1, 0), &[&bytes]).unwrap();
        assert_eq!(after, padded(HEADER + bytes.len()));
        // Filled again without a drain: room runs out where it should.
        let mut pushed = 1;
        while r.push(rec(1, 0), &[&bytes]).is_some() {
            pushed += 1;
        }
        assert_eq!(pushed, RING_BYTES / padded(HEADER + bytes.len()));
    }

    #[test]
    fn a_long_drain_gives_room_back_as_it_goes() {
        let distinct = |seen: &[u64]| seen.iter().collect::<std::collections::BTreeSet<_>>().len();
        // Less than half full: in steps of RELEASE_EVERY bytes.
        let r = Ring::new();
        let small = [1u8; 136];
        let mut records = 0;
        while r.used() < RING_BYTES / 2 - 2 * (HEADER + small.len()) {
            r.push(rec(1, 0), &[&small]).unwrap();
            records += 1;
        }
        let mut seen = Vec::new();
        r.drain(|_, _| seen.push(r.tail.load(Ordering::Acquire)));
        assert_eq!(seen.len(), records);
        let steps = RING_BYTES / 2 / RELEASE_EVERY as usize;
        assert!((2..=steps + 1).contains(&distinct(&seen)), "{seen:?}");
        assert_eq!(r.used(), 0);
        // Full: every record while more than half is left, then in steps.
        let r = Ring::new();
        let big = [1u8; 2000];
        while r.push(rec(1, 0), &[&big]).is_some() {}
        let mut seen = Vec::new();
        r.drain(|_, _| seen.push(r.tail.load(Ordering::Acquire)));
        let half = seen.len() / 2;
        assert_eq!(distinct(&seen[..half]), half, "{seen:?}");
        assert!(distinct(&seen[half..]) < seen.len() - half, "{seen:?}");
        assert_eq!(r.used(), 0);
    }

    #[test]
    fn records_come_out_in_order_across_the_wrap() {
        let rings = Rings::new();
        let mut seen = Vec::new();
        let mut next = 0u64;
        for round in 0..200u64 {
            let len = (round as usize * 37) % 3000;
            let payload = vec![round as u8; len];
            for _ in 0..3 {
                assert!(rings.push(
                    rec(1, next),
                    &[&payload[..len / 2], &payload[len / 2..]],
                    || {}
                ));
                next += 1;
            }
            rings.drain(|h, p| {
                assert_eq!(p.len(), (h.seq / 3 * 37 % 3000) as usize);
                assert!(p.iter().all(|&b| b == (h.seq / 3) as u8));
                seen.push(h.seq);
            });
        }
        assert_eq!(seen, (0..next).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_ring_spills_and_a_full_spill_refuses_and_counts() {
        let rings = Rings::new();
        let big = vec![7u8; MAX_PAYLOAD];
        let mut pushed = 0;
        while rings.push(rec(1, pushed), &[&big[..4000], &big[4000..]], || {}) {
            pushed += 1;
        }
        let in_ring = RING_BYTES / padded(HEADER + MAX_PAYLOAD);
        let spilled = SPILL_BUDGET / spill_cost(MAX_PAYLOAD);
        assert!(pushed as usize >= in_ring - 1 + spilled);
        assert!(pushed as usize <= in_ring + spilled);
        assert_eq!(rings.dropped(), 1);
        assert!(!rings.push(rec(1, 0), &[&vec![0u8; MAX_PAYLOAD + 1]], || {}));
        assert_eq!(rings.dropped(), 2);
        // The ring's records, then the spilled ones: in the order pushed,
        // whole.
        let mut seen = Vec::new();
        assert_eq!(
            rings.drain(|h, p| {
                assert_eq!(p, &big[..]);
                seen.push(h.seq);
            }),
            pushed as usize
        );
        assert_eq!(seen, (0..pushed).collect::<Vec<_>>());
        assert_eq!(
            rings.spilled.load(Ordering::Relaxed),
            0,
            "budget given back"
        );
        assert!(
            rings.push(rec(1, pushed), &[&big], || {}),
            "room again after a drain"
        );
    }

    /// A producer faster than a consumer that sleeps between drains: once
    /// a record has spilled, the ring's next ones follow it there until
    /// the spill is drained, so they come out in the order pushed.
    #[test]
    fn records_come_out_in_order_through_ring_and_spill() {
        let rings = Arc::new(Rings::new());
        let done = Arc::new(AtomicBool::new(false));
        let producer = {
            let (rings, done) = (Arc::clone(&rings), Arc::clone(&done));
            std::thread::spawn(move || {
                let payload = [5u8; 300];
                let mut pushed = Vec::new();
                for seq in 0..100_000u64 {
                    let len = (seq as usize * 7) % 300;
                    if rings.push(rec(1, seq), &[&payload[..len]], || {}) {
                        pushed.push(seq);
                    }
                }
                done.store(true, Ordering::Release);
                pushed
            })
        };
        let mut seen = Vec::new();
        loop {
            let finished = done.load(Ordering::Acquire);
            rings.drain(|h, p| {
                assert_eq!(p.len(), (h.seq as usize * 7) % 300);
                seen.push(h.seq);
            });
            if finished {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(300));
        }
        let pushed = producer.join().unwrap();
        assert!(rings.spilled() > 0, "the consumer fell behind");
        assert_eq!(seen, pushed, "in the order pushed");
    }

    #[test]
    fn each_thread_has_its_own_ring_and_exited_ones_go() {
        let rings = Arc::new(Rings::new());
        let started = Arc::new(AtomicU32::new(0));
        let mut handles = Vec::new();
        for t in 0..4u64 {
            let (rings, started) = (Arc::clone(&rings), Arc::clone(&started));
            handles.push(std::thread::spawn(move || {
                for i in 0..10 {
                    assert!(rings.push(rec(t, i), &[b"x"], || {
                        started.fetch_add(1, Ordering::Relaxed);
                    }));
                }
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(started.load(Ordering::Relaxed), 1, "started once");
        assert_eq!(rings.count(), 4);
        let mut per_conn = [0; 4];
        rings.drain(|h, _| per_conn[h.conn as usize] += 1);
        assert_eq!(per_conn, [10; 4]);
        rings.drain(|_, _| {});
        assert_eq!(
            rings.count(),
            0,
            "rings of exited threads are dropped once drained"
        );
    }

    #[test]
    fn a_new_registry_gives_the_thread_a_new_ring() {
        let a = Rings::new();
        assert!(a.push(rec(1, 0), &[b"a"], || {}));
        let b = Rings::new();
        assert!(b.push(rec(2, 0), &[b"b"], || {}));
        let mut got = Vec::new();
        b.drain(|h, p| got.push((h.conn, p.to_vec())));
        assert_eq!(got, vec![(2, b"b".to_vec())]);
    }

    #[test]
    fn a_sleeping_consumer_is_woken_by_a_record() {
        let rings = Arc::new(Rings::new());
        let r2 = Arc::clone(&rings);
        let t = std::thread::spawn(move || {
            let begun = std::time::Instant::now();
            r2.sleep(None);
            begun.elapsed()
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(rings.push(rec(1, 0), &[b"x"], || {}));
        let slept = t.join().unwrap();
        assert!(slept < Duration::from_secs(5));
    }
}
