//! The per-process tracing state and the safe operations hooks call.
//!
//! A [`Runtime`] holds the configuration, the tracked connections and the
//! export pipeline. It is created by the constructor, replaced (never
//! freed) in the child after `fork`, and lives for the rest of the process.
//! Hooks reach it through [`traced`], which adds the reentrancy guard,
//! `catch_unwind` and errno preservation around every piece of tracing work,
//! so no hook can change what the app sees.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use lumigo_core::address::Address;
use lumigo_core::capture::{Capture, Stamp};
use lumigo_core::config::Config;
use lumigo_core::connection::{CloseReason, Connection, Flow, OutboundPlan, Tracer};
use lumigo_core::export::Pipeline;
use lumigo_core::filter::EndpointFilters;
use lumigo_core::http::Role;
use lumigo_core::mask::Masker;
use lumigo_core::process::{ExitStatus, Lifecycle, ProcessSpan};
use lumigo_core::sharded::Table;
use lumigo_core::span::SpanContext;
use lumigo_core::tls_write::{Combined, PendingWrite};
use lumigo_core::{guard, lumigo_debug};

use crate::fdtable::{self, Mark};
use crate::hooks::libssl::SslLib;

/// Set after an internal panic: from then on the process is not traced.
static DISABLED: AtomicBool = AtomicBool::new(false);
static RUNTIME: AtomicPtr<Runtime> = AtomicPtr::new(std::ptr::null_mut());

/// The tracing state of this process.
pub struct Runtime {
    /// The process this state is for (a vfork child must not touch it),
    /// and whether it has shut down.
    lifecycle: Lifecycle,
    config: Arc<Config>,
    pipeline: Arc<Pipeline>,
    tracer: Tracer,
    conns: ConnTable,
    /// TLS connections, by `SSL*`: their plaintext.
    tls: Table<usize, TlsConn>,
    /// The process span this process reports at exit (`LUMIGO_PROCESS_SPAN`).
    process: Option<ProcessSpan>,
    /// HTTP records on their way to the capture thread.
    capture: Capture,
}

/// `exit`'s status, for the process span (unknown when `main` returns, as
/// glibc calls exit internally then).
static EXIT_STATUS: ExitStatus = ExitStatus::new();

impl Runtime {
    /// `inherited`: the parent's process span, in a forked child.
    fn new(config: Arc<Config>, inherited: Option<Option<SpanContext>>) -> Runtime {
        let pipeline = Arc::new(Pipeline::new(config.clone()));
        let masker = Masker::new(&config.query_secret_patterns);
        lumigo_core::tags::install(&config.execution_tag_headers);
        let mut tracer = Tracer::new(masker, Box::new(pipeline.clone()))
            .with_root(config.env_parent, config.env_tracestate.clone())
            .with_propagators(config.propagators)
            .with_sampler(config.sampler)
            .with_filters(EndpointFilters::new(
                &config.server_filter_patterns,
                &config.client_filter_patterns,
                config
                    .destinations
                    .iter()
                    .map(|d| d.endpoint.as_str())
                    .chain([lumigo_core::config::DEFAULT_LUMIGO_ENDPOINT]),
            ));
        let process = match inherited {
            Some(parent_process) => {
                tracer.adopt_process_span(parent_process);
                None
            }
            None if config.process_span => Some(ProcessSpan::new(
                tracer.start_process_span(),
                SystemTime::now(),
                std::env::args_os().next().as_deref(),
            )),
            None => None,
        };
        let prefix = config.payload_prefix_limit();
        Runtime {
            lifecycle: Lifecycle::new(),
            tracer,
            pipeline,
            config,
            conns: ConnTable::default(),
            tls: Table::default(),
            process,
            capture: Capture::new(prefix),
        }
    }

    /// Makes the runtime the process's and arms its capture thread.
    fn publish(self: Box<Runtime>) {
        let rt: &'static Runtime = Box::leak(self);
        rt.capture
            .set_starter(Box::new(move || start_capture_thread(rt)));
        RUNTIME.store(rt as *const Runtime as *mut Runtime, Ordering::Release);
    }

    /// The context children of this process should join when no request
    /// is being served: the process span's.
    pub fn process_context(&self) -> Option<SpanContext> {
        self.tracer.process_context().cloned()
    }
}

/// Records the status passed to `exit`.
pub fn record_exit_status(status: i32) {
    EXIT_STATUS.record(status);
}

/// Debug builds only (`LUMIGO_RUN_TEST_PANIC=1`): every piece of tracing
/// work panics, so a test can see a panic caught inside the library, with
/// its statically linked unwinder (build.rs), and tracing switched off
/// without the app noticing.
#[cfg(debug_assertions)]
pub static TEST_PANIC: AtomicBool = AtomicBool::new(false);

/// The runtime, unless tracing is off for this process.
#[inline]
fn runtime() -> Option<&'static Runtime> {
    if DISABLED.load(Ordering::Relaxed) {
        return None;
    }
    let p = RUNTIME.load(Ordering::Acquire);
    // SAFETY: a non-null RUNTIME points to a leaked Box that is never freed.
    unsafe { p.as_ref() }
}

/// True while tracing is on for this process.
pub fn active() -> bool {
    runtime().is_some()
}

/// Installs the runtime (from the constructor).
pub fn install(config: Config) {
    Box::new(Runtime::new(Arc::new(config), None)).publish();
}

/// Starts the thread that decodes the capture rings (at the first record).
fn start_capture_thread(rt: &'static Runtime) {
    let spawned = lumigo_core::export::spawn_with_signals_blocked(move || {
        guard::mark_thread_internal();
        let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
            rt.pipeline.warm_up();
            rt.capture.run(&rt.tracer)
        }));
        if run.is_err() {
            lumigo_debug!("the capture thread failed; HTTP spans are no longer made");
        }
    });
    if let Err(e) = spawned {
        lumigo_debug!("cannot start the capture thread: {e}");
    }
}

/// Runs tracing work `f` for a hook: never for our own calls, never when
/// tracing is off; errno is preserved and a panic switches tracing off for
/// the process instead of unwinding into the app.
#[inline]
pub fn traced(f: impl FnOnce(&'static Runtime)) {
    traced_on(-1, f);
}

/// [`traced`] for a hook handling the bytes of `fd` ([`on_data`],
/// [`plan_outbound`]): the thread's hint code keys its request by `fd`,
/// set in the same thread-local lookup as the reentrancy flag.
#[inline]
pub fn traced_on(fd: i32, f: impl FnOnce(&'static Runtime)) {
    let Some(rt) = runtime() else { return };
    // Skipped when the thread already runs our code; a signal deferred
    // meanwhile is raised on leaving, after errno is restored.
    let _ = guard::run_internal_on(fd, || {
        let saved = errno();
        let work = || {
            #[cfg(debug_assertions)]
            if TEST_PANIC.load(Ordering::Relaxed) {
                panic!("LUMIGO_RUN_TEST_PANIC is set");
            }
            f(rt)
        };
        if std::panic::catch_unwind(AssertUnwindSafe(work)).is_err() {
            DISABLED.store(true, Ordering::Relaxed);
            lumigo_debug!("internal error; tracing is switched off for this process");
        }
        set_errno(saved);
    });
}

/// Like [`traced`], for work that returns a value (`None` when skipped).
#[inline]
pub fn traced_value<R>(f: impl FnOnce(&'static Runtime) -> Option<R>) -> Option<R> {
    traced_value_on(-1, f)
}

/// Like [`traced_on`], for work that returns a value.
#[inline]
pub fn traced_value_on<R>(fd: i32, f: impl FnOnce(&'static Runtime) -> Option<R>) -> Option<R> {
    let mut out = None;
    traced_on(fd, |rt| out = f(rt));
    out
}

fn errno() -> i32 {
    // SAFETY: __errno_location always returns a valid pointer for this thread.
    unsafe { *libc::__errno_location() }
}

fn set_errno(v: i32) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = v }
}

/// A lock that survives a panic of a previous holder (the panic already
/// switched tracing off; the data is only read to shut down).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

type Shared = Arc<Mutex<Connection>>;

/// The plaintext side of one `SSL*`.
pub struct TlsConn {
    conn: Connection,
    /// Set once the program showed its side (`SSL_connect`, `SSL_accept`,
    /// `SSL_set_*_state`, a handshake): the role is no longer a guess.
    role_known: bool,
    /// Plaintext moved: the connection is never re-filed after that.
    seen_data: bool,
    /// The SNI name, kept to re-file the connection.
    server_name: Option<String>,
    partial_writes: bool,
    /// A write carrying inserted bytes that OpenSSL has not taken yet: it
    /// must be retried with this very buffer.
    pending: Option<PendingWrite>,
}

/// fd → connection: one slot per fd, indexed like the hot-path fd table
/// and kept in step with it. A lookup is a spin on the slot's own flag
/// (held for a pointer copy, never across a call) and a reference count
/// increment: no hash, no shared lock. A connection reached through `dup`
/// is shared by both fds.
struct ConnTable {
    slots: Box<[Slot]>,
}

struct Slot {
    busy: AtomicBool,
    conn: std::cell::UnsafeCell<Option<Shared>>,
}

// SAFETY: `conn` is only read or written while `busy` is held.
unsafe impl Sync for Slot {}

impl Default for ConnTable {
    fn default() -> Self {
        let layout = std::alloc::Layout::array::<Slot>(fdtable::MAX_FDS)
            .unwrap_or_else(|_| std::alloc::Layout::new::<Slot>());
        let n = layout.size() / std::mem::size_of::<Slot>();
        // SAFETY: an all-zero `Slot` is a valid one (`false`, `None`: `Arc`
        // is non-null, so `None` is the null pointer); zeroed memory from
        // the allocator is mapped lazily, so untouched slots cost nothing.
        let slots = unsafe {
            let p = std::alloc::alloc_zeroed(layout) as *mut Slot;
            if p.is_null() {
                std::alloc::handle_alloc_error(layout);
            }
            Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n))
        };
        ConnTable { slots }
    }
}

impl ConnTable {
    /// Runs `f` on `fd`'s slot, holding it (`None`: fd out of range).
    fn with<R>(&self, fd: i32, f: impl FnOnce(&mut Option<Shared>) -> R) -> Option<R> {
        let slot = self.slots.get(usize::try_from(fd).ok()?)?;
        while slot
            .busy
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: `busy` is held.
        let r = f(unsafe { &mut *slot.conn.get() });
        slot.busy.store(false, Ordering::Release);
        Some(r)
    }

    fn insert(&self, fd: i32, conn: Shared) -> Option<Shared> {
        let mark = match lock(&conn).role() {
            Role::Client => Mark::Client,
            Role::Server => Mark::Server,
        };
        if !fdtable::set(fd, mark) {
            return None;
        }
        self.with(fd, |c| c.replace(conn)).flatten()
    }

    fn get(&self, fd: i32) -> Option<Shared> {
        self.with(fd, |c| c.clone()).flatten()
    }

    fn remove(&self, fd: i32) -> Option<Shared> {
        fdtable::set(fd, Mark::Untracked);
        self.with(fd, |c| c.take()).flatten()
    }

    /// Every connection whose slot is free right now (at exit, where
    /// waiting is not an option).
    fn all(&self) -> Vec<Shared> {
        let mut out = Vec::new();
        let end = fdtable::high_water().min(self.slots.len());
        for slot in &self.slots[..end] {
            if slot
                .busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                // SAFETY: `busy` is held. (A connection shared by dups
                // comes once per fd.)
                if let Some(c) = unsafe { &*slot.conn.get() } {
                    out.push(Arc::clone(c));
                }
                slot.busy.store(false, Ordering::Release);
            }
        }
        out
    }
}

// ---- operations called by the hooks (always inside `traced`) ----

/// The app connected (or started connecting) a TCP or Unix stream socket.
pub fn on_connect(rt: &'static Runtime, fd: i32, peer: Option<Address>, local: Option<Address>) {
    if rt.conns.get(fd).is_some_and(|c| !lock(&c).has_traffic()) {
        // A repeated connect on a non-blocking socket: same connection.
        return;
    }
    if peer.as_ref().is_some_and(Address::is_excluded_peer) {
        return;
    }
    let conn = Connection::captured(Role::Client, peer, local, &rt.capture);
    finish(rt, rt.conns.insert(fd, Arc::new(Mutex::new(conn))));
}

/// The app accepted a TCP or Unix stream connection.
pub fn on_accept(rt: &'static Runtime, fd: i32, peer: Option<Address>, local: Option<Address>) {
    let conn = Connection::captured(Role::Server, peer, local, &rt.capture);
    finish(rt, rt.conns.insert(fd, Arc::new(Mutex::new(conn))));
}

/// Which direction bytes went.
#[derive(Clone, Copy)]
pub enum Direction {
    Outbound,
    Inbound,
}

/// The app moved `data` over a tracked fd. Called once per contiguous piece,
/// inside [`traced_on`] for `fd`.
pub fn on_data(rt: &Runtime, fd: i32, dir: Direction, pieces: &mut dyn Iterator<Item = &[u8]>) {
    let Some(conn) = rt.conns.get(fd) else {
        fdtable::set(fd, Mark::Untracked);
        return;
    };
    let now = Stamp::now();
    let mut stop = false;
    {
        let mut c = lock(&conn);
        for data in pieces {
            let flow = match dir {
                Direction::Outbound => c.on_outbound(data, now, &rt.tracer),
                Direction::Inbound => c.on_inbound(data, now, &rt.tracer),
            };
            if let Flow::Stop = flow {
                stop = true;
                break;
            }
        }
        if !stop && fdtable::is_client(fd) && !c.may_insert() {
            // Its protocol is known now, and takes nothing inserted: its
            // writes need not ask.
            fdtable::set(fd, Mark::Plain);
        }
    }
    if stop {
        rt.conns.remove(fd);
    }
}

/// The app looked up `name` (DNS hooks): a CLIENT span.
pub fn on_lookup(
    rt: &Runtime,
    name: &str,
    start: SystemTime,
    outcome: Result<usize, &'static str>,
) {
    let who = rt.tracer.client_identity();
    if who.context.is_sampled() {
        let span = lumigo_core::dns::lookup_span(who, name, start, SystemTime::now(), outcome);
        rt.tracer.sink().submit(span);
    }
}

// ---- TLS (called by the OpenSSL hooks, keyed by the SSL* address) ----

fn tls_conn(rt: &'static Runtime, lib: &SslLib, ssl: usize) -> Arc<Mutex<TlsConn>> {
    rt.tls
        .get_or_insert_with(ssl, || new_tls_conn(rt, lib, ssl, None, None))
}

/// A TLS connection as `ssl` is now: `role` if known, else from its socket
/// or `SSL_is_server` ([`crate::hooks::tls::facts`]).
fn new_tls_conn(
    rt: &'static Runtime,
    lib: &SslLib,
    ssl: usize,
    role: Option<Role>,
    server_name: Option<String>,
) -> TlsConn {
    let facts = crate::hooks::tls::facts(lib, ssl as *mut libc::c_void);
    let (peer, local) = match facts.fd {
        Some(fd) => (
            crate::hooks::socket::socket_addr(fd, true),
            crate::hooks::socket::socket_addr(fd, false),
        ),
        None => (None, None),
    };
    let server = match role {
        Some(role) => role == Role::Server,
        None => facts.server,
    };
    let role = if server { Role::Server } else { Role::Client };
    let mut conn = Connection::captured(role, peer, local, &rt.capture);
    conn.set_tls(server_name.clone());
    TlsConn {
        conn,
        role_known: false,
        seen_data: false,
        server_name,
        partial_writes: facts.partial_writes,
        pending: None,
    }
}

/// The program showed `ssl`'s side: `role`, or `None` at a handshake,
/// where the socket (or `SSL_is_server`, correct by then) tells. A
/// connection filed under a guess (at SNI) is re-filed while no plaintext
/// has moved; one not seen yet is filed at its first read or write.
pub fn tls_role(rt: &'static Runtime, lib: &SslLib, ssl: usize, role: Option<Role>) {
    let Some(t) = rt.tls.get(ssl) else { return };
    let mut t = lock(&t);
    if role.is_none() && t.role_known {
        return;
    }
    let role = role.unwrap_or_else(|| {
        if crate::hooks::tls::facts(lib, ssl as *mut libc::c_void).server {
            Role::Server
        } else {
            Role::Client
        }
    });
    if t.conn.role() != role && !t.seen_data {
        let server_name = t.server_name.take();
        *t = new_tls_conn(rt, lib, ssl, Some(role), server_name);
    }
    t.role_known = true;
}

/// Plaintext moved through `ssl`.
pub fn tls_data(rt: &'static Runtime, lib: &SslLib, ssl: usize, dir: Direction, data: &[u8]) {
    let t = tls_conn(rt, lib, ssl);
    let mut t = lock(&t);
    t.seen_data = true;
    let now = Stamp::now();
    let _ = match dir {
        Direction::Outbound => t.conn.on_outbound(data, now, &rt.tracer),
        Direction::Inbound => t.conn.on_inbound(data, now, &rt.tracer),
    };
}

/// Before an SSL write: the buffer to write instead of the app's, when
/// bytes are inserted (or a write with inserted bytes is being retried).
pub fn tls_before_write(
    rt: &'static Runtime,
    lib: &SslLib,
    ssl: usize,
    app: &[u8],
) -> Option<Combined> {
    let t = tls_conn(rt, lib, ssl);
    let mut t = lock(&t);
    if let Some(p) = &t.pending {
        if p.is_retried_by(app) {
            return Some(p.combined());
        }
        // A different write: the app gave up on the one we changed.
        t.pending = None;
    }
    t.seen_data = true;
    if app.is_empty() {
        return None;
    }
    let plan = t.conn.plan_outbound(&[app], &rt.tracer)?;
    // None: the write goes as it is (its span is still made).
    let pending = PendingWrite::new(app, plan, t.partial_writes)?;
    Some(t.pending.insert(pending).combined())
}

/// The combined write went out (`sent` bytes of it): the app's count.
pub fn tls_after_combined(
    rt: &'static Runtime,
    lib: &SslLib,
    ssl: usize,
    sent: usize,
) -> Option<usize> {
    let t = tls_conn(rt, lib, ssl);
    let mut t = lock(&t);
    let p = t.pending.take()?;
    let app = t.conn.commit_outbound(p.plan(), sent);
    let now = Stamp::now();
    for piece in p.app_bytes(app) {
        let _ = t.conn.on_outbound(piece, now, &rt.tracer);
    }
    Some(app)
}

/// The client asked for this server name (SNI). Only a client sends one:
/// a connection first seen here is filed as a client, whatever
/// `SSL_is_server` says before the role is set (a generic `TLS_method()`
/// context says "server").
pub fn tls_server_name(rt: &'static Runtime, lib: &SslLib, ssl: usize, name: String) {
    let t = rt
        .tls
        .get_or_insert_with(ssl, || new_tls_conn(rt, lib, ssl, Some(Role::Client), None));
    let mut t = lock(&t);
    t.conn.set_tls(Some(name.clone()));
    t.server_name = Some(name);
}

/// `ssl` is shut down or freed.
pub fn tls_end(rt: &Runtime, ssl: usize) {
    if let Some(t) = rt.tls.remove(ssl) {
        lock(&t)
            .conn
            .on_close(SystemTime::now(), CloseReason::Closed, &rt.tracer);
    }
}

/// Before a write on a tracked fd: bytes to insert into it, if any. Inside
/// [`traced_value_on`] for `fd`.
pub fn plan_outbound(rt: &Runtime, fd: i32, pieces: &[&[u8]]) -> Option<OutboundPlan> {
    let conn = rt.conns.get(fd)?;
    let plan = lock(&conn).plan_outbound(pieces, &rt.tracer);
    plan
}

/// After the real call carrying `plan` accepted `sent` bytes: records how
/// much of the inserted bytes went out.
pub fn commit_outbound(rt: &Runtime, fd: i32, plan: &OutboundPlan, sent: usize) {
    if let Some(conn) = rt.conns.get(fd) {
        let _ = lock(&conn).commit_outbound(plan, sent);
    }
}

/// The app sent `n` bytes we cannot see (sendfile).
pub fn on_opaque_outbound(rt: &Runtime, fd: i32, n: usize) {
    let Some(conn) = rt.conns.get(fd) else {
        fdtable::set(fd, Mark::Untracked);
        return;
    };
    let flow = lock(&conn).on_outbound_opaque(n, SystemTime::now(), &rt.tracer);
    if let Flow::Stop = flow {
        rt.conns.remove(fd);
    }
}

/// A read returned end-of-file.
pub fn on_eof(rt: &Runtime, fd: i32) {
    let Some(conn) = rt.conns.get(fd) else { return };
    let mut c = lock(&conn);
    // A server keeps answering after its client half-closes; only a client's
    // view of the exchange ends here (a response framed by the close).
    if c.role() == Role::Client {
        c.on_close(SystemTime::now(), CloseReason::PeerClosed, &rt.tracer);
        drop(c);
        rt.conns.remove(fd);
    }
}

/// `fd` is about to be closed (or replaced by dup2/dup3).
pub fn on_close(rt: &Runtime, fd: i32) {
    if !same_process(rt) {
        // A vfork child shares our memory: it must not touch the parent's state.
        return;
    }
    if let Some(conn) = rt.conns.remove(fd) {
        finish(rt, Some(conn));
    }
    lumigo_core::hint::closed(fd);
}

/// `new_fd` now refers to the same socket as `old_fd`.
pub fn on_dup(rt: &Runtime, old_fd: i32, new_fd: i32) {
    if !same_process(rt) {
        return;
    }
    if let Some(conn) = rt.conns.get(old_fd) {
        finish(rt, rt.conns.insert(new_fd, conn));
    }
}

/// The process is about to change its user or group ids: a span dump that
/// is configured but not open yet is opened now, while it still can be.
pub fn before_privilege_change(rt: &'static Runtime) {
    if !same_process(rt) {
        // A vfork child: a descriptor opened here would not be the parent's.
        return;
    }
    if let Some(path) = &rt.config.spandump {
        lumigo_core::export::open_before_privilege_drop(path);
    }
}

/// Ends a connection that no fd refers to any more.
fn finish(rt: &Runtime, conn: Option<Shared>) {
    let Some(conn) = conn else { return };
    // Other fds (dups) still use it: it lives on.
    if Arc::strong_count(&conn) > 1 {
        return;
    }
    lock(&conn).on_close(SystemTime::now(), CloseReason::Closed, &rt.tracer);
}

fn same_process(rt: &Runtime) -> bool {
    rt.lifecycle.is_same_process()
}

// ---- process lifecycle ----

/// `pthread_atfork` child handler: the child starts with a fresh runtime.
/// The parent's is leaked, never dropped: its worker thread does not exist
/// here, and its locks may be held by threads that did not survive the fork.
pub extern "C" fn after_fork_in_child() {
    let _guard = guard::Internal::enter();
    let result = std::panic::catch_unwind(|| {
        lumigo_core::ids::reseed();
        let old = RUNTIME.load(Ordering::Acquire);
        // SAFETY: non-null RUNTIME values are leaked Boxes, valid forever.
        if let Some(old) = unsafe { old.as_ref() } {
            let inherited = old.tracer.process_context().cloned();
            Box::new(Runtime::new(old.config.clone(), Some(inherited))).publish();
        }
    });
    if result.is_err() {
        DISABLED.store(true, Ordering::Relaxed);
    }
}

/// `atexit` handler: see [`shut_down`].
pub extern "C" fn at_exit() {
    traced(shut_down);
}

/// `_exit` was called: shut down as at exit, unless this is a vfork child
/// (it shares the parent's memory and must not touch its state).
pub fn at_underscore_exit() {
    traced(|rt| {
        if rt.lifecycle.begin_shut_down_here() {
            shut_down_now(rt, true);
        }
    });
}

/// The process replaces its image (`execve` and the like): what it queued
/// would die with the image, and its process span would never end (the
/// new image's, a child of it, would name a parent no one exported). As
/// at `_exit`: requests in flight and the process span end, and the queue
/// gets `LUMIGO_FLUSH_TIMEOUT` to leave. Not in a `vfork` child (whose
/// memory is its parent's). True when this call shut down: should the
/// exec fail, [`after_failed_exec`] lets the process's own exit do it again.
pub fn before_exec() -> bool {
    traced_value(|rt| {
        let began = rt.lifecycle.begin_shut_down_here();
        if began {
            shut_down_now(rt, false);
        }
        Some(began)
    })
    .unwrap_or(false)
}

/// The exec that [`before_exec`] shut down for failed (`began`): the
/// process goes on traced, and its exit or next exec flushes what it makes
/// from now on. The process span already ended, at the failed exec.
pub fn after_failed_exec(began: bool) {
    if began {
        traced(|rt| rt.lifecycle.resume_after_failed_exec());
    }
}

/// The process is ending: requests still in flight become spans, the
/// process span ends, and the pipeline gets a bounded time to export. Runs
/// once. Never from inside our own code on this thread (`traced` checks):
/// a signal handler calling exit there could otherwise wait on a lock its
/// own thread holds.
fn shut_down(rt: &'static Runtime) {
    if rt.lifecycle.begin_shut_down() {
        shut_down_now(rt, true);
    }
}

/// The shut-down itself, by the one caller that began it.
fn shut_down_now(rt: &'static Runtime, exiting: bool) {
    end_in_flight(rt);
    rt.capture.drain(&rt.tracer);
    if rt.capture.spilled() > 0 {
        lumigo_debug!(
            "exit: {} capture records found their ring full and waited in the spill",
            rt.capture.spilled()
        );
    }
    if rt.capture.dropped() > 0 {
        lumigo_debug!(
            "exit: {} capture records refused by full rings and spill (their exchanges were not traced)",
            rt.capture.dropped()
        );
    }
    if rt.capture.gaps() > 0 {
        lumigo_debug!(
            "exit: {} connections lost capture records out of order (their exchanges in flight were not traced)",
            rt.capture.gaps()
        );
    }
    // Spans still queued when LUMIGO_FLUSH_TIMEOUT runs out count as
    // "deadline" in the summary; a process that exits (not one that execs,
    // which may fail and go on, its queue still to be sent) writes them to
    // the span dump itself.
    if !rt.pipeline.flush_at_exit(rt.config.flush_timeout) && exiting {
        match rt.pipeline.dump_queued() {
            Ok(0) => {}
            Ok(n) => lumigo_debug!(
                "exit: {n} spans queued behind an unfinished export written to the span dump only (the collector did not get them)"
            ),
            Err(why) => lumigo_debug!("exit: {why}"),
        }
    }
    if let Some(lost) = rt.pipeline.loss_summary() {
        lumigo_debug!("exit: {lost}");
    }
}

/// From the handler of a fatal signal (`hooks::signal`): lets the export
/// thread end in-flight exchanges and export what is queued, waiting at
/// most `LUMIGO_FLUSH_TIMEOUT`. Async-signal-safe: atomics, `getpid` and
/// [`Pipeline::flush_from_signal`]; no lock, no allocation.
pub fn flush_for_signal() {
    let Some(rt) = runtime() else { return };
    if rt.lifecycle.may_flush_from_signal() {
        rt.pipeline.flush_from_signal(rt.config.flush_timeout);
    }
}

/// Run by the export thread (never in the handler) when a fatal signal
/// asked for a flush: requests in flight become spans, as at exit.
pub fn end_in_flight_for_signal() {
    let Some(rt) = runtime() else { return };
    if !rt.lifecycle.begin_shut_down_here() {
        return;
    }
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
        end_in_flight(rt);
        rt.capture.drain(&rt.tracer);
    }));
}

/// Ends what is in flight: exchanges waiting for their response (only
/// those whose lock is free: an interrupted thread may hold one) and the
/// process span.
fn end_in_flight(rt: &'static Runtime) {
    let now = SystemTime::now();
    for conn in rt.conns.all() {
        if let Ok(mut c) = conn.try_lock() {
            lumigo_core::process::end_in_flight(&mut c, now, &rt.tracer);
        }
    }
    for t in rt.tls.all() {
        if let Ok(mut t) = t.try_lock() {
            lumigo_core::process::end_in_flight(&mut t.conn, now, &rt.tracer);
        }
    }
    if let Some(p) = &rt.process {
        if p.is_sampled() && rt.lifecycle.end_process_span() {
            rt.pipeline
                .submit(p.record(EXIT_STATUS.get(), SystemTime::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    //! The runtime as the hooks drive it, without interposition: the test
    //! calls what a hook would after the real call. The runtime is the
    //! process's, so one test installs it and walks through its life in
    //! order; the connection table's own tests use a table of their own.
    //! Descriptor numbers are never opened: only tables are touched.

    use super::*;

    fn conn(role: Role) -> Shared {
        Arc::new(Mutex::new(match role {
            Role::Client => Connection::client(None, None),
            Role::Server => Connection::server(None, None),
        }))
    }

    #[test]
    fn the_table_marks_its_fds_and_dups_share_a_connection() {
        let t = ConnTable::default();
        let (a, b) = (100_100, 100_101);
        assert!(t.get(a).is_none());
        let c = conn(Role::Client);
        assert!(t.insert(a, c.clone()).is_none());
        assert!(fdtable::is_client(a));
        assert!(Arc::ptr_eq(&t.get(a).unwrap(), &c));
        // dup: the same connection under both numbers.
        assert!(t.insert(b, t.get(a).unwrap()).is_none());
        assert!(fdtable::is_client(b));
        assert_eq!(Arc::strong_count(&c), 3);
        // A server replaces what the number held, and the mark follows.
        let s = conn(Role::Server);
        let old = t.insert(b, s.clone()).expect("the dup's connection");
        assert!(Arc::ptr_eq(&old, &c));
        assert!(fdtable::is_tracked(b) && !fdtable::is_client(b));
        drop(old);
        assert!(Arc::ptr_eq(&t.remove(a).unwrap(), &c));
        assert_eq!(fdtable::get(a), 0);
        assert!(t.get(a).is_none() && t.remove(a).is_none());
        assert_eq!(Arc::strong_count(&c), 1);
        t.remove(b);
        assert_eq!(fdtable::get(b), 0);
    }

    #[test]
    fn fds_out_of_range_are_not_tracked() {
        let t = ConnTable::default();
        for fd in [-1, fdtable::MAX_FDS as i32, i32::MAX] {
            assert!(t.insert(fd, conn(Role::Client)).is_none());
            assert!(t.get(fd).is_none());
            assert!(t.remove(fd).is_none());
            assert!(t.with(fd, |_| ()).is_none());
        }
    }

    #[test]
    fn all_skips_busy_slots() {
        let t = ConnTable::default();
        let (a, b) = (100_110, 100_111);
        t.insert(a, conn(Role::Client));
        t.insert(b, conn(Role::Server));
        assert_eq!(t.all().len(), 2);
        // A slot held by a thread interrupted at exit is left out.
        let slot = &t.slots[a as usize];
        slot.busy.store(true, Ordering::Release);
        let all = t.all();
        assert_eq!(all.len(), 1);
        assert_eq!(lock(&all[0]).role(), Role::Server);
        slot.busy.store(false, Ordering::Release);
        assert_eq!(t.all().len(), 2);
        t.remove(a);
        t.remove(b);
        assert!(t.all().is_empty());
    }

    #[test]
    fn a_runtime_through_its_life() {
        // Before install: hooks do nothing.
        assert!(!active());
        assert_eq!(traced_value(|_| Some(1)), None);

        let dump =
            std::env::temp_dir().join(format!("lumigo-preload-unit-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&dump);
        let dump_text = dump.to_string_lossy().into_owned();
        let config = Config::from_lookup(|k| match k {
            "LUMIGO_PROCESS_SPAN" => Some("true".into()),
            "LUMIGO_DEBUG_SPANDUMP" => Some(dump_text.clone()),
            _ => None,
        });
        install(config);
        assert!(active());
        assert_eq!(traced_value(|_| Some(1)), Some(1));

        // errno is the app's, whatever the tracing work did to it.
        set_errno(libc::EAGAIN);
        traced(|_| set_errno(libc::EBADF));
        assert_eq!(errno(), libc::EAGAIN);
        // Our own calls (inside tracing work) are never traced.
        assert_eq!(traced_value(|_| traced_value(|_| Some(()))), None);

        let inet = |s: &str| Some(Address::Inet(s.parse().unwrap()));
        // Metadata services are left alone.
        traced(|rt| on_connect(rt, 100_200, inet("169.254.169.254:80"), None));
        assert!(!fdtable::is_marked(100_200));
        traced(|rt| on_connect(rt, 100_200, inet("[::ffff:169.254.170.2]:80"), None));
        assert!(!fdtable::is_marked(100_200));
        // A client connection, and a dup of it.
        traced(|rt| on_connect(rt, 100_201, inet("127.0.0.1:8080"), None));
        assert!(fdtable::is_client(100_201));
        traced(|rt| on_dup(rt, 100_201, 100_202));
        assert!(fdtable::is_client(100_202));
        traced(|rt| on_close(rt, 100_201));
        assert!(!fdtable::is_marked(100_201));
        assert!(fdtable::is_client(100_202));
        // A client's end of file ends it; a server's does not.
        traced(|rt| on_eof(rt, 100_202));
        assert!(!fdtable::is_marked(100_202));
        traced(|rt| on_accept(rt, 100_203, inet("127.0.0.1:40000"), None));
        assert!(fdtable::is_tracked(100_203) && !fdtable::is_client(100_203));
        traced(|rt| on_eof(rt, 100_203));
        assert!(fdtable::is_tracked(100_203));
        // Data on a number the runtime does not know clears a stale mark.
        fdtable::set(100_204, Mark::Client);
        traced_on(100_204, |rt| {
            on_data(
                rt,
                100_204,
                Direction::Inbound,
                &mut std::iter::once(&b"x"[..]),
            )
        });
        assert!(!fdtable::is_marked(100_204));
        // A client connection whose protocol takes nothing inserted
        // (PostgreSQL: its startup packet) stops asking before its writes;
        // an HTTP one goes on asking.
        traced(|rt| on_connect(rt, 100_205, inet("127.0.0.1:5432"), None));
        let startup = b"\x00\x00\x00\x10\x00\x03\x00\x00user\x00bob\x00\x00";
        traced_on(100_205, |rt| {
            on_data(
                rt,
                100_205,
                Direction::Outbound,
                &mut std::iter::once(&startup[..]),
            )
        });
        assert!(fdtable::is_tracked(100_205) && !fdtable::is_client(100_205));
        traced(|rt| on_connect(rt, 100_206, inet("127.0.0.1:8080"), None));
        let get = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        traced_on(100_206, |rt| {
            on_data(
                rt,
                100_206,
                Direction::Outbound,
                &mut std::iter::once(&get[..]),
            )
        });
        assert!(fdtable::is_client(100_206));
        traced(|rt| on_close(rt, 100_205));
        traced(|rt| on_close(rt, 100_206));
        assert!(!fdtable::is_marked(100_205) && !fdtable::is_marked(100_206));
        // Nothing planned for a number the runtime does not know.
        assert!(traced_value_on(100_204, |rt| plan_outbound(
            rt,
            100_204,
            &[b"GET / HTTP/1.1\r\n\r\n"]
        ))
        .is_none());
        traced(|rt| on_close(rt, 100_203));
        assert!(!fdtable::is_marked(100_203));

        // The process exits with status 3: the process span says so.
        record_exit_status(3);
        let rt = runtime().unwrap();
        assert!(rt.lifecycle.may_flush_from_signal());
        at_exit();
        assert!(rt.lifecycle.is_shut_down());
        assert!(!rt.lifecycle.may_flush_from_signal());
        let text = std::fs::read_to_string(&dump).expect("the span dump");
        let _ = std::fs::remove_file(&dump);
        let process: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("process.exit.code"))
            .collect();
        assert_eq!(process.len(), 1, "{text}");
        assert!(process[0].contains("exit status 3"), "{}", process[0]);
        // Once: a second exit (or _exit) does nothing.
        at_exit();
        at_underscore_exit();
        end_in_flight_for_signal();

        // A panic in tracing work switches tracing off for the process.
        traced(|_| panic!("a bug"));
        assert!(!active());
        assert_eq!(traced_value(|_| Some(1)), None);
    }
}
