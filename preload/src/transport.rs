//! Loads `liblumigo_transport.so` (the HTTP client and TLS stack of OTLP
//! export) from the directory this library was loaded from, the first time
//! the export thread builds an OTLP exporter.
//!
//! Only the export thread gets here (the core library calls the factory
//! while building its exporters), so `dlopen` never runs on an app thread,
//! inside one of its hooks or signal handlers, and never in a process that
//! has no span to send. The outcome, loaded or not, is kept for the life of
//! the process. The library is opened `RTLD_LOCAL`: none of its symbols can
//! interpose on the app's.
//!
//! Fork: a child must never inherit a load that was half done (the loader's
//! own lists would hold a library whose relocation another thread, absent
//! from the child, was in the middle of). The load runs under `LOAD_LOCK`,
//! and a `pthread_atfork` prepare handler takes that lock before any fork,
//! so the child sees the library either not loaded (its own export thread
//! loads it) or loaded. The handler waits at most [`FORK_WAIT`]; a load
//! still running then (a `dlopen` takes about a millisecond) leaves the
//! child without OTLP export, said under `LUMIGO_DEBUG`, rather than keep
//! the app's `fork` waiting longer.

use std::cell::UnsafeCell;
use std::ffi::{c_void, CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use lumigo_core::export::{FreeFn, NewFn, PostFn, Transport, TransportAbi, TRANSPORT_ABI_VERSION};

/// File name of the transport library, beside `liblumigo_preload.so`.
pub const LIBRARY_NAME: &str = "liblumigo_transport.so";

/// Longest a `fork` waits for a load in progress.
const FORK_WAIT: Duration = Duration::from_millis(20);

const IDLE: u8 = 0;
const LOADING: u8 = 1;
const DONE: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(IDLE);
static LOADED: OnceLock<Result<TransportAbi, String>> = OnceLock::new();
/// Where to load it from, fixed by the constructor (see [`remember_location`]).
static LOCATION: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// A plain pthread mutex: usable from `pthread_atfork` handlers and
/// re-initialisable in a child.
struct RawMutex(UnsafeCell<libc::pthread_mutex_t>);
// SAFETY: a pthread mutex is made to be shared between threads; it is only
// touched through pthread calls, and re-initialised only in a fork child,
// where one thread exists.
unsafe impl Sync for RawMutex {}
static LOAD_LOCK: RawMutex = RawMutex(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER));
/// The prepare handler holds `LOAD_LOCK` across this fork.
static HELD_FOR_FORK: AtomicBool = AtomicBool::new(false);

/// The [`lumigo_core::export::TransportFactory`] of a traced process.
pub fn factory(
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(Box<dyn Transport>, Vec<String>), String> {
    if LOADED.get().is_none() {
        // SAFETY: a valid, initialised mutex, unlocked below.
        unsafe { libc::pthread_mutex_lock(LOAD_LOCK.0.get()) };
        if STATE.load(Ordering::Acquire) == IDLE {
            STATE.store(LOADING, Ordering::Release);
            let _ = LOADED.set(load());
            STATE.store(DONE, Ordering::Release);
        }
        // SAFETY: locked above by this thread.
        unsafe { libc::pthread_mutex_unlock(LOAD_LOCK.0.get()) };
    }
    match LOADED.get() {
        Some(Ok(abi)) => abi.client(headers, timeout),
        Some(Err(e)) => Err(e.clone()),
        None => Err(format!(
            "this process was forked while its parent was still loading {LIBRARY_NAME}; \
             OTLP export is off in this process"
        )),
    }
}

/// Called by the constructor: fixes the transport library's path while the
/// working directory is still the one a relative `LD_PRELOAD` entry means.
/// An absolute entry (what the launcher sets) costs no system call.
pub fn remember_location() {
    LOCATION.get_or_init(library_path);
}

/// Registered with `pthread_atfork` by the constructor.
pub extern "C" fn before_fork() {
    let mut deadline = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec; the mutex is valid.
    let locked = unsafe {
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut deadline);
        deadline.tv_nsec += FORK_WAIT.as_nanos() as libc::c_long;
        if deadline.tv_nsec >= 1_000_000_000 {
            deadline.tv_sec += 1;
            deadline.tv_nsec -= 1_000_000_000;
        }
        libc::pthread_mutex_timedlock(LOAD_LOCK.0.get(), &deadline) == 0
    };
    HELD_FOR_FORK.store(locked, Ordering::Relaxed);
}

/// Registered with `pthread_atfork` by the constructor.
pub extern "C" fn after_fork_in_parent() {
    if HELD_FOR_FORK.swap(false, Ordering::Relaxed) {
        // SAFETY: locked by this thread in `before_fork`.
        unsafe { libc::pthread_mutex_unlock(LOAD_LOCK.0.get()) };
    }
}

/// Registered with `pthread_atfork` by the constructor. Whoever held the
/// lock in the parent does not exist here: the child starts with a fresh
/// one. A load cut short stays `LOADING`, which [`factory`] reports.
pub extern "C" fn after_fork_in_child() {
    HELD_FOR_FORK.store(false, Ordering::Relaxed);
    // SAFETY: the child has one thread, so nothing else can be using the
    // mutex while it is overwritten with a fresh one.
    unsafe { std::ptr::write(LOAD_LOCK.0.get(), libc::PTHREAD_MUTEX_INITIALIZER) };
}

fn load() -> Result<TransportAbi, String> {
    let path = LOCATION.get_or_init(library_path).clone()?;
    let display = path.display().to_string();
    let c_path = CString::new(path.into_os_string().into_encoded_bytes())
        .map_err(|_| format!("{display}: the path holds a NUL byte"))?;
    // SAFETY: dlopen with a valid C string; dlerror is read right after on
    // this thread.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!("cannot load {display}: {}", dl_error()));
    }
    let symbol = |name: &CStr| -> Result<*mut c_void, String> {
        // SAFETY: a live handle and a valid C string.
        let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
        if p.is_null() {
            Err(format!("{display} has no {}", name.to_string_lossy()))
        } else {
            Ok(p)
        }
    };
    let abi = symbol(c"lumigo_transport_abi")?;
    // SAFETY: lumigo_transport_abi is `extern "C" fn() -> u32` in every
    // version of the library.
    let version = unsafe { std::mem::transmute::<*mut c_void, extern "C" fn() -> u32>(abi)() };
    if version != TRANSPORT_ABI_VERSION {
        return Err(format!(
            "{display} speaks ABI {version}, this library {TRANSPORT_ABI_VERSION}: \
             the two files come from different builds"
        ));
    }
    let (new, post, free) = (
        symbol(c"lumigo_transport_new")?,
        symbol(c"lumigo_transport_post")?,
        symbol(c"lumigo_transport_free")?,
    );
    // SAFETY: the version check above vouches for these signatures; the
    // handle is never closed, so the functions stay loaded.
    unsafe {
        Ok(TransportAbi::new(
            std::mem::transmute::<*mut c_void, NewFn>(new),
            std::mem::transmute::<*mut c_void, PostFn>(post),
            std::mem::transmute::<*mut c_void, FreeFn>(free),
        ))
    }
}

/// `liblumigo_transport.so` in the directory of the file this code was
/// loaded from (as the loader names it: the `LD_PRELOAD` entry, made
/// absolute if it is not).
fn library_path() -> Result<PathBuf, String> {
    // SAFETY: dladdr fills a plain struct; dli_fname points into the
    // loader's own, permanent data.
    let ours = unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        let here = library_path as fn() -> Result<PathBuf, String> as *const c_void;
        if libc::dladdr(here, &mut info) == 0 || info.dli_fname.is_null() {
            return Err("cannot tell where liblumigo_preload.so was loaded from".into());
        }
        PathBuf::from(OsStr::from_bytes(CStr::from_ptr(info.dli_fname).to_bytes()))
    };
    let dir = ours.parent().unwrap_or(Path::new("."));
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot resolve {}: {e}", ours.display()))?
            .join(dir)
    };
    Ok(dir.join(LIBRARY_NAME))
}

fn dl_error() -> String {
    // SAFETY: dlerror returns null or a C string valid until the next dl call
    // on this thread; it is copied at once.
    unsafe {
        let e = libc::dlerror();
        if e.is_null() {
            "unknown error".into()
        } else {
            CStr::from_ptr(e).to_string_lossy().into_owned()
        }
    }
}
