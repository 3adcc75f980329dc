//! The export pipeline: a bounded queue in front of one lazily started worker
//! thread that sends batches to every destination.
//!
//! App threads call [`Pipeline::submit`] from inside libc hooks. It takes a
//! short lock to push onto a bounded queue (full → the span is dropped and
//! counted), never waits for the worker or for I/O, and never panics. The
//! first submit spawns the worker (with every signal blocked, so the app's
//! signals never land on it). A process that never produces a span has no
//! thread, socket or file of ours.
//!
//! The worker (`worker.rs`) sends batches of up to `max_export_batch_size`
//! spans to every destination (OTLP/HTTP per endpoint: `otlp.rs`; the span
//! dump: `spandump.rs`) when a batch is full, when it is due, or when a
//! flush is requested. A batch is due 100 ms after its first span, but no
//! sooner than the schedule delay after the previous export: light traffic
//! leaves at once, a busy process exports once per schedule delay. A failed export is
//! dropped there (the OTLP exporter retries a throttled endpoint with
//! backoff within its timeout, see `otlp.rs`);
//! lost spans are counted by reason (`loss.rs`) and summed up in one line at
//! exit under `LUMIGO_DEBUG`.
//!
//! Fork: nothing here needs its destructor to run. The preload
//! `mem::forget`s the parent's pipeline in the child and creates a new one,
//! whose worker starts with the child's first span. [`Pipeline::new`] does no
//! I/O and starts nothing, so it may run in a `pthread_atfork` child handler.
//!
//! Exit: [`Pipeline::flush`] asks the worker to export everything queued and
//! waits for it with a deadline; it touches no thread-local with a destructor.

mod health;
mod http1;
pub(crate) mod json;
pub(crate) mod limits;
mod loss;
mod otlp;
pub(crate) mod proto;
#[cfg(test)]
mod sdk_parity;
mod spandump;
mod transport;
mod worker;

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::lumigo_debug;
use crate::span::{AttrValue, Attributes, SpanRecord, Text, ATTRIBUTES_CAPACITY};
use health::EndpointHealth;
use loss::Losses;

pub use loss::Loss;
pub use otlp::{needs_transport_library, SCOPE_NAME};
pub(crate) use proto::encode_attributes;
pub use spandump::open_before_privilege_drop;
pub use transport::{
    encode_headers, set_transport_factory, Answer, FreeFn, NewFn, PostFn, Transport, TransportAbi,
    TransportFactory, OPTION_CA_FILE, OPTION_CLIENT_CERT_FILE, OPTION_CLIENT_KEY_FILE,
    OPTION_CONTENT_ENCODING, OPTION_CONTENT_TYPE, OPTION_PROTOCOL, TRANSPORT_ABI_VERSION,
};

/// Name of the worker thread (as shown by `ps -L`, `top -H`).
pub const WORKER_THREAD_NAME: &str = "lumigo-export";

/// Stack of the worker: rustls handshakes and protobuf encoding are the
/// deepest things it does. Giving it explicitly also keeps std from reading
/// `RUST_MIN_STACK` from the environment on the app's thread.
const WORKER_STACK_SIZE: usize = 2 << 20;

const NOT_STARTED: u8 = 0;
const RUNNING: u8 = 1;
/// The worker could not start, has no exporter, or stopped: spans are dropped.
const DISABLED: u8 = 2;

/// States of a flush asked for by a fatal signal ([`Pipeline::flush_from_signal`]).
const SIGNAL_NONE: u32 = 0;
/// Asked by the signal handler; the worker has not seen it yet.
const SIGNAL_REQUESTED: u32 = 1;
/// The worker ended in-flight exchanges and exports everything queued.
const SIGNAL_DRAINING: u32 = 2;
/// Everything queued was exported (or failed): the handler may go on.
const SIGNAL_DONE: u32 = 3;

/// Run by the worker when a fatal signal asks for a flush, before it
/// drains the queue: the embedding ends what is in flight (requests still
/// waiting for a response) as spans. Runs on the worker thread, never in
/// the signal handler.
static EXIT_HOOK: OnceLock<fn()> = OnceLock::new();

/// Installs the hook run before a signal's flush (first call wins).
pub fn set_exit_hook(hook: fn()) {
    let _ = EXIT_HOOK.set(hook);
}

/// One destination of the worker. Never called concurrently; must return
/// within a bounded time.
trait Exporter: Send {
    fn export(&mut self, spans: &[SpanRecord]) -> Result<(), String>;
    /// Why the last failed export failed (for the loss summary).
    fn failure(&self) -> Loss {
        Loss::Write
    }
    /// For diagnostics, without secrets.
    fn describe(&self) -> String;
}

/// The bounded, lazily started batch exporter of one process.
pub struct Pipeline {
    config: Arc<Config>,
    shared: Arc<Shared>,
}

/// State shared between app threads, flushers and the worker.
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the worker: a first span while idle, a full batch, a flush, close.
    work: Condvar,
    /// Wakes flushers when a flush generation completes or the worker stops.
    flushed: Condvar,
    worker: AtomicU8,
    /// Set when the `Pipeline` is dropped: the worker exports what is queued
    /// and exits.
    closed: AtomicBool,
    dropped: AtomicU64,
    failed_exports: AtomicU64,
    /// Lost spans by reason (the `dropped` ones and failed exports).
    losses: Losses,
    /// A flush asked for by a fatal signal: `SIGNAL_*`. Also the futex word
    /// the handler waits on.
    signal_exit: AtomicU32,
    /// One per OTLP destination, in the configuration's order.
    endpoints: Vec<Arc<EndpointHealth>>,
    said_no_destination: AtomicBool,
    said_queue_full: AtomicBool,
    /// An exit flush ran out of time (an `exec` that then failed): the next
    /// waits at most [`health::DOWN_WAIT`].
    exit_gave_up: AtomicBool,
    /// Emptied attribute vectors of exported spans, for new spans: a span
    /// then costs its app thread no allocation for them, and the export
    /// thread no free. Only ever `try_lock`ed, by both sides: a busy or
    /// poisoned pool means allocating (or freeing) as usual, never waiting.
    spare: Mutex<Vec<Attributes>>,
    /// The span dump's `"resource"` member, once the worker has built the
    /// dump: what [`Pipeline::dump_queued`] writes lines with.
    dump_resource: OnceLock<String>,
}

/// Spare attribute vectors kept at most: one default batch's worth, 384
/// KiB at most (16 entries of 48 bytes each). The pool is this pipeline's:
/// a forked child starts with a new, empty one.
const MAX_SPARE: usize = 512;

#[derive(Default)]
struct Queue {
    spans: VecDeque<SpanRecord>,
    /// The worker sleeps until the next span arrives (no timer running).
    worker_idle: bool,
    /// Spans taken by the worker and not yet exported.
    in_flight: usize,
    /// Flush generations: requested by [`Pipeline::flush`], completed by the worker.
    flush_requested: u64,
    flush_done: u64,
}

/// Locks, ignoring poisoning: the queue holds plain data and stays
/// consistent even if a holder panicked.
fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pipeline {
    /// Cheap and side-effect free: no thread, no socket, no file. Safe to call
    /// in a `pthread_atfork` child handler.
    pub fn new(config: Arc<Config>) -> Pipeline {
        let state_dir = health::state_dir(config.runtime_dir.as_deref());
        let endpoints = config
            .destinations
            .iter()
            .map(|d| Arc::new(EndpointHealth::new(&d.endpoint, state_dir.as_deref())))
            .collect();
        Pipeline {
            config,
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                work: Condvar::new(),
                flushed: Condvar::new(),
                worker: AtomicU8::new(NOT_STARTED),
                closed: AtomicBool::new(false),
                dropped: AtomicU64::new(0),
                failed_exports: AtomicU64::new(0),
                losses: Losses::default(),
                signal_exit: AtomicU32::new(SIGNAL_NONE),
                endpoints,
                said_no_destination: AtomicBool::new(false),
                said_queue_full: AtomicBool::new(false),
                exit_gave_up: AtomicBool::new(false),
                spare: Mutex::new(Vec::new()),
                dump_resource: OnceLock::new(),
            }),
        }
    }

    /// The configuration the pipeline was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// An empty attribute vector for a new span, reused from an exported
    /// span when one is spare. Never waits.
    pub fn attributes(&self) -> Attributes {
        if let Ok(mut spare) = self.shared.spare.try_lock() {
            if let Some(v) = spare.pop() {
                return v;
            }
        }
        Vec::with_capacity(ATTRIBUTES_CAPACITY)
    }

    /// Queues a finished span for export. Never blocks on the worker or on
    /// I/O, never panics. The first call starts the worker. Without any
    /// destination, or with a full queue, the span is dropped and counted.
    pub fn submit(&self, span: SpanRecord) {
        let shared = &*self.shared;
        if !self.config.has_destination() {
            shared.lose(Loss::NoDestination, 1);
            if !shared.said_no_destination.swap(true, Ordering::Relaxed) {
                lumigo_debug!(
                    "no destination for spans (set LUMIGO_TRACER_TOKEN, \
                     OTEL_EXPORTER_OTLP_ENDPOINT or LUMIGO_DEBUG_SPANDUMP); spans are dropped"
                );
            }
            return;
        }
        let batch_size = self.config.batch.max_export_batch_size.max(1);
        let wake_worker = {
            let mut queue = lock(&shared.queue);
            // Checked under the lock: `disable` sets the state before it
            // drains the queue, so no span can be stranded after the drain.
            if shared.worker.load(Ordering::Acquire) == DISABLED {
                drop(queue);
                shared.lose(Loss::Disabled, 1);
                return;
            }
            if queue.spans.len() >= self.config.batch.max_queue_size {
                drop(queue);
                shared.lose(Loss::QueueFull, 1);
                if !shared.said_queue_full.swap(true, Ordering::Relaxed) {
                    lumigo_debug!(
                        "span queue full (OTEL_BSP_MAX_QUEUE_SIZE={}); dropping spans",
                        self.config.batch.max_queue_size
                    );
                }
                return; // `span` is freed here, outside the lock.
            }
            queue.spans.push_back(span);
            let len = queue.spans.len();
            // Wake the worker only on a transition, so a busy app does not
            // pay a futex wake per span.
            if queue.worker_idle && len == 1 {
                queue.worker_idle = false;
                true
            } else {
                len == batch_size
            }
        };
        if shared.worker.load(Ordering::Acquire) == NOT_STARTED {
            self.start_worker();
        } else if wake_worker {
            shared.work.notify_one();
        }
    }

    /// Asks the worker to export everything queued and waits at most
    /// `deadline`. True when every span submitted before the call has been
    /// exported without an export failure. True at once if no worker was
    /// ever started (nothing was queued).
    pub fn flush(&self, deadline: Duration) -> bool {
        let shared = &*self.shared;
        match shared.worker.load(Ordering::Acquire) {
            NOT_STARTED => return true,
            DISABLED => return false,
            _ => {}
        }
        let failures_before = shared.failed_exports.load(Ordering::Acquire);
        let start = Instant::now();
        let mut queue = lock(&shared.queue);
        if queue.spans.is_empty() && queue.in_flight == 0 {
            return true;
        }
        queue.flush_requested += 1;
        let target = queue.flush_requested;
        shared.work.notify_one();
        while queue.flush_done < target {
            if shared.worker.load(Ordering::Acquire) == DISABLED {
                return false;
            }
            let left = deadline.saturating_sub(start.elapsed());
            if left.is_zero() {
                // What is still queued or being sent will not make it out.
                let behind = queue.spans.len() + queue.in_flight;
                shared.losses.set_deadline(behind as u64);
                return false;
            }
            queue = shared
                .flushed
                .wait_timeout(queue, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(queue);
        shared.failed_exports.load(Ordering::Acquire) == failures_before
    }

    /// The flush of a process that is exiting: [`flush`](Self::flush) with
    /// `timeout`, or with at most [`health::DOWN_WAIT`] when every
    /// destination is an OTLP endpoint that failed within the last minute
    /// (for any process of this user), or when an earlier exit flush of
    /// this pipeline ran out of time (an `exec` that failed, then another
    /// try: `execvp` through each directory of `PATH`); not at all, then,
    /// when no span was queued since. An endpoint still busy when the wait
    /// ends is remembered as down (see `health.rs`).
    pub fn flush_at_exit(&self, timeout: Duration) -> bool {
        let (idle, queued) = {
            let queue = lock(&self.shared.queue);
            (
                queue.spans.is_empty() && queue.in_flight == 0,
                !queue.spans.is_empty(),
            )
        };
        if idle || self.shared.worker.load(Ordering::Acquire) != RUNNING {
            return self.flush(timeout);
        }
        let gave_up = self.shared.exit_gave_up.load(Ordering::Acquire);
        if gave_up && !queued {
            // All that is left is the batch whose export held back that
            // flush: waiting again would get nothing out.
            return false;
        }
        let endpoints = &self.shared.endpoints;
        let all_down = self.config.spandump.is_none()
            && !endpoints.is_empty()
            && endpoints.iter().all(|e| e.recently_down());
        let wait = if all_down || gave_up {
            timeout.min(health::DOWN_WAIT)
        } else {
            timeout
        };
        for e in endpoints {
            e.set_exit_deadline(wait);
        }
        let flushed = self.flush(wait);
        if !flushed {
            self.shared.exit_gave_up.store(true, Ordering::Release);
            for e in endpoints {
                if e.busy.load(Ordering::Acquire) {
                    e.mark_down();
                }
            }
        }
        flushed
    }

    /// For a process that is exiting after [`flush_at_exit`](Self::flush_at_exit)
    /// ran out of time: the spans still queued (behind an OTLP post that
    /// hangs) are written to the span dump from this thread, so that the
    /// dump has every span even when a collector does not answer (the
    /// worker writes the dump before each post, but is held in the post).
    /// They stay lost to the OTLP destinations. `Ok`: how many were written
    /// (none without a span dump, with nothing queued, or before the worker
    /// built the dump). `Err`: what was not written and why, to be said:
    /// a write that failed, or a dump that is a standard stream, left
    /// alone (a pipe whose reader stalls could hold the exit past its
    /// wait).
    pub fn dump_queued(&self) -> Result<usize, String> {
        let Some(path) = &self.config.spandump else {
            return Ok(0);
        };
        let Some(resource_json) = self.shared.dump_resource.get() else {
            return Ok(0);
        };
        let mut dump = spandump::SpanDump::with_resource_json(path.clone(), resource_json.clone());
        if dump.to_a_stream() {
            let n = lock(&self.shared.queue).spans.len();
            if n == 0 {
                return Ok(0);
            }
            return Err(format!(
                "{n} spans queued behind an unfinished export are not written to the span dump {}: a standard stream's reader could hold the exit",
                path.display()
            ));
        }
        let mut spans: Vec<SpanRecord> = lock(&self.shared.queue).spans.drain(..).collect();
        if spans.is_empty() {
            return Ok(0);
        }
        limits::apply(&mut spans, self.config.attribute_limits);
        dump.export(&spans).map(|()| spans.len()).map_err(|e| {
            format!(
                "{} queued spans not written to the span dump: {e}",
                spans.len()
            )
        })
    }

    /// For a signal handler about to let the process die: asks the worker to
    /// end in-flight exchanges (the exit hook) and export everything
    /// queued, and waits for it at most `timeout`. Returns at once when no
    /// worker runs (no span was ever queued).
    ///
    /// Async-signal-safe: it takes no lock and allocates nothing (atomics,
    /// `clock_gettime`, `futex`), so it cannot wait on a lock the
    /// interrupted thread holds. It wakes the worker with
    /// `Condvar::notify_one`, which on Linux is an atomic add and a
    /// `FUTEX_WAKE`; the wake is repeated every 10 ms, so a worker that was
    /// just about to sleep when the request came cannot miss it.
    pub fn flush_from_signal(&self, timeout: Duration) -> bool {
        let shared = &*self.shared;
        if shared.worker.load(Ordering::Acquire) != RUNNING {
            return true;
        }
        let start = Instant::now();
        for e in &shared.endpoints {
            e.set_exit_deadline(timeout);
        }
        let _ = shared.signal_exit.compare_exchange(
            SIGNAL_NONE,
            SIGNAL_REQUESTED,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        loop {
            let state = shared.signal_exit.load(Ordering::Acquire);
            if state == SIGNAL_DONE {
                return true;
            }
            if shared.worker.load(Ordering::Acquire) != RUNNING {
                return false;
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return false;
            }
            shared.work.notify_one();
            futex_wait(&shared.signal_exit, state, left.min(SIGNAL_POLL));
        }
    }

    /// Spans dropped so far: queue full, no destination, or export disabled.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// `12 spans lost: 10 HTTP 503, 2 deadline`: every span lost so far, by
    /// reason (a span lost at two destinations counts twice); `None` when
    /// none was. Spans still queued when a [`flush`](Self::flush) ran out
    /// of time count as `deadline`.
    pub fn loss_summary(&self) -> Option<String> {
        self.shared.losses.summary()
    }

    /// Batches whose export to some destination failed (and were dropped there).
    pub fn failed_exports(&self) -> u64 {
        self.shared.failed_exports.load(Ordering::Relaxed)
    }

    /// True once the first span has started (or tried to start) the worker.
    pub fn worker_started(&self) -> bool {
        self.shared.worker.load(Ordering::Acquire) != NOT_STARTED
    }

    /// Starts the worker before the first span, when one is sure to come
    /// (the first traced exchange has begun): it loads its transport and
    /// connects while the exchange is still in flight, so a short process
    /// exporting at exit does not pay for that inside its flush deadline.
    pub fn warm_up(&self) {
        if self.config.has_destination()
            && self.shared.worker.load(Ordering::Acquire) == NOT_STARTED
        {
            self.start_worker();
        }
    }

    fn start_worker(&self) {
        let won = self.shared.worker.compare_exchange(
            NOT_STARTED,
            RUNNING,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if won.is_err() {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let config = Arc::clone(&self.config);
        if let Err(e) = spawn_with_signals_blocked(move || worker::run_worker(shared, config)) {
            lumigo_debug!("cannot start the export thread ({e}); spans will be dropped");
            self.shared.disable();
        }
    }
}

impl Drop for Pipeline {
    /// Lets the worker finish what is queued and exit. Harmless if never run
    /// (the preload forgets pipelines); never blocks, and never waits for a
    /// lock that a thread lost in `fork` might hold.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        // Taking the lock (when free) orders the flag before the worker's
        // next look at it, so an idle worker cannot miss the wake-up.
        drop(self.shared.queue.try_lock());
        self.shared.work.notify_one();
    }
}

impl Shared {
    /// Counts spans dropped before reaching any exporter.
    fn lose(&self, why: Loss, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        self.losses.add(why, n);
    }

    /// Drops the exported spans of `batch`, keeping their attribute vectors
    /// (emptied) as spares where there is room. Vectors that grew past the
    /// usual size are freed, so the pool holds at most `MAX_SPARE` vectors.
    fn recycle(&self, batch: &mut Vec<SpanRecord>, strings: &mut Vec<String>) {
        // The values are freed before the lock is taken, not under it; the
        // longer strings go back to the threads that build spans.
        for span in batch.iter_mut() {
            for (_, value) in span.attributes.iter_mut() {
                if let AttrValue::Str(Text::Owned(s)) = value {
                    if s.capacity() >= crate::spare::MIN_CAPACITY {
                        strings.push(std::mem::take(s));
                    }
                }
            }
            span.attributes.clear();
        }
        crate::spare::give_back(strings);
        if let Ok(mut spare) = self.spare.try_lock() {
            for span in batch.iter_mut() {
                if spare.len() >= MAX_SPARE {
                    break;
                }
                if span.attributes.capacity() == ATTRIBUTES_CAPACITY {
                    spare.push(std::mem::take(&mut span.attributes));
                }
            }
        }
        batch.clear();
    }

    /// The worker finished a signal's flush: the handler may go on.
    fn signal_flush_done(&self) {
        // Said first: the process dies as soon as the handler wakes.
        if let Some(lost) = self.losses.summary() {
            lumigo_debug!("exit on a signal: {lost}");
        }
        self.signal_exit.store(SIGNAL_DONE, Ordering::Release);
        futex_wake_all(&self.signal_exit);
    }

    /// Stops accepting spans: the queue is dropped (and counted) and waiting
    /// flushers are released.
    fn disable(&self) {
        self.worker.store(DISABLED, Ordering::Release);
        let lost: Vec<SpanRecord> = {
            let mut queue = lock(&self.queue);
            queue.in_flight = 0;
            queue.spans.drain(..).collect()
        };
        self.lose(Loss::Disabled, lost.len() as u64);
        self.flushed.notify_all();
    }
}

/// How often [`Pipeline::flush_from_signal`] repeats its wake-up.
const SIGNAL_POLL: Duration = Duration::from_millis(10);

/// Sleeps while `word` holds `expected`, at most `timeout`.
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: FUTEX_WAIT on a live, aligned u32 with a valid relative
    // timeout; it only reads the word.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            &ts as *const libc::timespec,
        );
    }
}

/// Wakes every thread sleeping in [`futex_wait`] on `word`.
fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a live, aligned u32.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        );
    }
}

/// Spawns the detached worker with all signals blocked in it: the mask is
/// inherited from the spawning thread, so we block everything around the
/// spawn and restore the caller's mask afterwards.
pub fn spawn_with_signals_blocked(f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    // SAFETY: sigset_t is plain data; sigfillset initialises it fully, and
    // pthread_sigmask only reads `all` and writes `old`, both valid locals.
    let old = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        if libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old) != 0 {
            return Err("pthread_sigmask failed".to_owned());
        }
        old
    };
    let spawned = catch_unwind(AssertUnwindSafe(|| {
        std::thread::Builder::new()
            .name(WORKER_THREAD_NAME.to_owned())
            .stack_size(WORKER_STACK_SIZE)
            .spawn(f)
    }));
    // SAFETY: restores the mask saved above; `old` is a valid sigset_t.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
    match spawned {
        Ok(Ok(_detached)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("thread spawn panicked".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{AttrValue, SpanContext, SpanKind, SpanStatus};
    use std::collections::HashMap;
    use std::time::SystemTime;

    fn config(vars: &[(&str, &str)]) -> Arc<Config> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Arc::new(Config::from_lookup(|k| map.get(k).cloned()))
    }

    fn span(i: u8) -> SpanRecord {
        SpanRecord {
            name: format!("GET {i}").into(),
            kind: SpanKind::Server,
            context: SpanContext {
                trace_id: [i; 16],
                span_id: [i; 8],
                trace_flags: 1,
                trace_state: None,
            },
            parent_span_id: None,
            parent_is_remote: false,
            start: SystemTime::now(),
            end: SystemTime::now(),
            status: SpanStatus::Unset,
            attributes: vec![("n", AttrValue::Int(i64::from(i)))],
            links: Vec::new(),
            encoded: None,
        }
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("lumigo-export-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    /// Spans still queued at an exit whose wait ran out go to the span dump
    /// from the exiting thread (written once, and no longer queued); not to
    /// a standard stream, whose reader could stall the exit.
    #[test]
    fn queued_spans_go_to_a_dump_file_at_exit_not_to_a_stream() {
        let path = temp_path("queued.jsonl");
        // No worker runs: the queue is filled by hand.
        let file = Pipeline::new(config(&[("LUMIGO_DEBUG_SPANDUMP", path.to_str().unwrap())]));
        let stream = Pipeline::new(config(&[("LUMIGO_DEBUG_SPANDUMP", "/dev/stdout")]));
        for p in [&file, &stream] {
            assert_eq!(
                p.dump_queued(),
                Ok(0),
                "nothing before the worker built the dump"
            );
            p.shared.dump_resource.set("{}".to_owned()).unwrap();
            lock(&p.shared.queue)
                .spans
                .extend([span(1), span(2), span(3)]);
        }
        assert_eq!(file.dump_queued(), Ok(3));
        assert!(lock(&file.shared.queue).spans.is_empty());
        assert_eq!(file.dump_queued(), Ok(0), "written once");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.contains("\"name\":\"GET 2\""), "{text}");
        let said = stream.dump_queued().unwrap_err();
        assert!(said.starts_with("3 spans queued"), "{said}");
        assert!(said.contains("/dev/stdout"), "{said}");
        assert_eq!(lock(&stream.shared.queue).spans.len(), 3, "left queued");
    }

    #[test]
    fn new_starts_nothing_and_flush_is_immediate() {
        let path = temp_path("never.jsonl");
        let p = Pipeline::new(config(&[("LUMIGO_DEBUG_SPANDUMP", path.to_str().unwrap())]));
        assert!(!p.worker_started());
        let t = Instant::now();
        assert!(p.flush(Duration::from_secs(5)));
        assert!(t.elapsed() < Duration::from_millis(100));
        assert!(!p.worker_started(), "flush alone starts nothing");
        assert!(!path.exists(), "no file before the first span");
    }

    #[test]
    fn attribute_vectors_of_exported_spans_are_reused_empty_and_bounded() {
        let path = temp_path("spare.jsonl");
        let p = Pipeline::new(config(&[("LUMIGO_DEBUG_SPANDUMP", path.to_str().unwrap())]));
        let mut usual = p.attributes();
        assert!(usual.is_empty());
        assert_eq!(usual.capacity(), ATTRIBUTES_CAPACITY);
        usual.push(("a", AttrValue::from("text")));
        let kept = usual.as_ptr();
        let mut grown = p.attributes();
        for i in 0..=ATTRIBUTES_CAPACITY as i64 {
            grown.push(("n", AttrValue::Int(i)));
        }
        let (mut a, mut b) = (span(1), span(2));
        a.attributes = usual;
        b.attributes = grown;
        p.submit(a);
        p.submit(b);
        assert!(p.flush(Duration::from_secs(5)));
        assert_eq!(
            p.shared.spare.lock().unwrap().len(),
            1,
            "the grown one is freed"
        );
        let reused = p.attributes();
        assert_eq!(reused.as_ptr(), kept);
        assert!(reused.is_empty());
        assert_eq!(reused.capacity(), ATTRIBUTES_CAPACITY);

        for _ in 0..MAX_SPARE + 10 {
            let mut s = span(3);
            s.attributes = Vec::with_capacity(ATTRIBUTES_CAPACITY);
            p.submit(s);
        }
        assert!(p.flush(Duration::from_secs(5)));
        assert_eq!(p.shared.spare.lock().unwrap().len(), MAX_SPARE);
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written.lines().count(), MAX_SPARE + 12);
    }

    #[test]
    fn no_destination_drops_without_a_thread() {
        let p = Pipeline::new(config(&[]));
        p.submit(span(1));
        p.submit(span(2));
        assert!(!p.worker_started());
        assert_eq!(p.dropped(), 2);
        assert!(p.flush(Duration::from_millis(10)));
    }

    #[test]
    fn first_submit_starts_the_worker_and_flush_exports() {
        let path = temp_path("flush.jsonl");
        let p = Pipeline::new(config(&[
            ("LUMIGO_DEBUG_SPANDUMP", path.to_str().unwrap()),
            ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
        ]));
        for i in 0..5 {
            p.submit(span(i));
        }
        assert!(p.worker_started());
        assert!(p.flush(Duration::from_secs(10)));
        let names: Vec<String> = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .collect();
        assert!(
            names.iter().any(|n| n.trim() == WORKER_THREAD_NAME),
            "{names:?}"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert!(
            text.lines().next().unwrap().contains("\"name\":\"GET 0\""),
            "FIFO order"
        );
        assert_eq!(p.dropped(), 0);
    }

    #[test]
    fn full_batch_is_exported_without_waiting_for_the_delay() {
        let path = temp_path("batch.jsonl");
        let p = Pipeline::new(config(&[
            ("LUMIGO_DEBUG_SPANDUMP", path.to_str().unwrap()),
            ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4"),
        ]));
        for i in 0..8 {
            p.submit(span(i));
        }
        let t = Instant::now();
        while std::fs::read_to_string(&path).map_or(0, |s| s.lines().count()) < 8 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "two full batches go out at once"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn schedule_delay_exports_a_partial_batch() {
        let path = temp_path("delay.jsonl");
        let p = Pipeline::new(config(&[
            ("LUMIGO_DEBUG_SPANDUMP", path.to_str().unwrap()),
            ("OTEL_BSP_SCHEDULE_DELAY", "20"),
        ]));
        p.submit(span(1));
        let t = Instant::now();
        while std::fs::read_to_string(&path).map_or(0, |s| s.lines().count()) < 1 {
            assert!(t.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
        }
        // The worker went idle; the next span must wake it again.
        std::thread::sleep(Duration::from_millis(50));
        p.submit(span(2));
        while std::fs::read_to_string(&path).map_or(0, |s| s.lines().count()) < 2 {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "idle worker woken by a new span"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    // The full-queue case (a wedged worker) is tested against a black-hole
    // OTLP endpoint in tests/export.rs: a FIFO can no longer wedge it.
    #[test]
    fn a_fifo_span_dump_is_refused_without_wedging_the_worker() {
        let path = temp_path("wedge.fifo");
        let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let p = Pipeline::new(config(&[
            ("LUMIGO_DEBUG_SPANDUMP", path.to_str().unwrap()),
            ("OTEL_BSP_SCHEDULE_DELAY", "0"),
        ]));
        p.submit(span(0));
        let t = Instant::now();
        // The export may be over before the flush starts (then the flush
        // has nothing to wait for): the failure count tells either way.
        let _ = p.flush(Duration::from_secs(10));
        assert!(t.elapsed() < Duration::from_secs(5), "no reader, no hang");
        assert_eq!(p.failed_exports(), 1, "nothing is written");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn unopenable_spandump_fails_exports_but_never_panics() {
        let p = Pipeline::new(config(&[(
            "LUMIGO_DEBUG_SPANDUMP",
            "/nonexistent-dir/x.jsonl",
        )]));
        p.submit(span(1));
        assert!(!p.flush(Duration::from_secs(10)));
        assert_eq!(p.failed_exports(), 1);
        p.submit(span(2));
        assert!(!p.flush(Duration::from_secs(10)));
        assert_eq!(p.failed_exports(), 2);
    }

    #[test]
    fn drop_lets_the_worker_finish_the_queue() {
        let path = temp_path("drop.jsonl");
        let p = Pipeline::new(config(&[
            ("LUMIGO_DEBUG_SPANDUMP", path.to_str().unwrap()),
            ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
        ]));
        p.submit(span(1));
        p.submit(span(2));
        drop(p);
        let t = Instant::now();
        while std::fs::read_to_string(&path).map_or(0, |s| s.lines().count()) < 2 {
            assert!(t.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_signal_flush_exports_what_waits_for_the_schedule_delay() {
        let idle = Pipeline::new(config(&[("LUMIGO_DEBUG_SPANDUMP", "/nonexistent/x")]));
        let t = Instant::now();
        assert!(idle.flush_from_signal(Duration::from_secs(5)));
        assert!(
            t.elapsed() < Duration::from_millis(50),
            "no worker: at once"
        );

        let path = temp_path("signal.jsonl");
        let p = Pipeline::new(config(&[
            ("LUMIGO_DEBUG_SPANDUMP", path.to_str().unwrap()),
            ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
        ]));
        p.submit(span(1));
        let t = Instant::now();
        while std::fs::read_to_string(&path).map_or(0, |s| s.lines().count()) < 1 {
            assert!(t.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
        }
        // These two now wait for the 60 s delay since the first export.
        p.submit(span(2));
        p.submit(span(3));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        let t = Instant::now();
        assert!(p.flush_from_signal(Duration::from_secs(5)));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
        // Asked again (a second signal): already done.
        assert!(p.flush_from_signal(Duration::from_secs(5)));
    }

    #[test]
    fn worker_runs_with_all_signals_blocked() {
        let (tx, rx) = std::sync::mpsc::channel();
        spawn_with_signals_blocked(move || {
            // SAFETY: reads the current mask into a zeroed sigset_t.
            let blocked = unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut set);
                [
                    libc::SIGINT,
                    libc::SIGTERM,
                    libc::SIGUSR1,
                    libc::SIGCHLD,
                    libc::SIGPIPE,
                ]
                .iter()
                .all(|&s| libc::sigismember(&set, s) == 1)
            };
            tx.send(blocked).unwrap();
        })
        .unwrap();
        assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
        // SAFETY: as above, for the calling thread.
        let caller_blocks_int = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut set);
            libc::sigismember(&set, libc::SIGINT) == 1
        };
        assert!(!caller_blocks_int, "the caller's mask is restored");
    }
}
