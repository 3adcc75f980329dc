//! Which libssl a call came from.
//!
//! A process can hold several copies of OpenSSL: the system's, and private
//! ones bundled by Python wheels (`psycopg2-binary` ships
//! `libssl-<hash>.so.3`), each loaded with RTLD_LOCAL. Our `SSL_*` hooks
//! interpose on all of them, so the real function must be the one from the
//! *caller's* libssl: handing an `SSL*` of one copy to another copy's
//! `SSL_write` would crash the app.
//!
//! Each hook is entered through a trampoline that passes its return
//! address. `dladdr` names the calling object; `dlsym` on that object's
//! handle searches the object and its own dependencies, which is exactly the
//! libssl it was linked with. The answer is cached per call site (a return
//! address), so the lookup happens once per site. If the caller cannot be
//! identified, the global definition after ours (`RTLD_NEXT`, then an
//! already-loaded `libssl.so.3` / `.so.1.1`) is used.

use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use libc::c_void;

use super::tls::{
    SslCtrlFn, SslFn, SslFreeFn, SslReadExFn, SslReadFn, SslVoidFn, SslWriteExFn, SslWriteFn,
};

/// The functions of one libssl copy that the hooks call.
pub struct SslLib {
    pub write: Option<SslWriteFn>,
    pub read: Option<SslReadFn>,
    pub write_ex: Option<SslWriteExFn>,
    pub read_ex: Option<SslReadExFn>,
    pub shutdown: Option<SslFn>,
    pub free: Option<SslFreeFn>,
    pub ctrl: Option<SslCtrlFn>,
    pub get_fd: Option<SslFn>,
    pub is_server: Option<SslFn>,
    pub connect: Option<SslFn>,
    pub accept: Option<SslFn>,
    pub do_handshake: Option<SslFn>,
    pub set_connect_state: Option<SslVoidFn>,
    pub set_accept_state: Option<SslVoidFn>,
}

/// Call sites seen so far: (return address, library).
const SITES: usize = 256;
static SITE_RET: [AtomicUsize; SITES] = [const { AtomicUsize::new(0) }; SITES];
static SITE_LIB: [AtomicPtr<SslLib>; SITES] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; SITES];

/// Distinct libssl copies found (each leaked once, never freed).
const LIBS: usize = 8;
static KNOWN: [AtomicPtr<SslLib>; LIBS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; LIBS];

/// Sonames of the system's libssl, newest first (global fallback).
const LIBSSL_NAMES: [&CStr; 3] = [c"libssl.so.3", c"libssl.so.1.1", c"libssl.so"];

/// The libssl the code at return address `ret` calls into.
pub fn for_caller(ret: usize) -> Option<&'static SslLib> {
    let slot = (ret >> 2) % SITES;
    for i in 0..SITES {
        let k = (slot + i) % SITES;
        match SITE_RET[k].load(Ordering::Acquire) {
            0 => break,
            r if r == ret => {
                let lib = SITE_LIB[k].load(Ordering::Acquire);
                // SAFETY: non-null SITE_LIB entries point to leaked SslLibs.
                if let Some(lib) = unsafe { lib.as_ref() } {
                    return Some(lib);
                }
            }
            _ => {}
        }
    }
    let lib = resolve(ret)?;
    for i in 0..SITES {
        let k = (slot + i) % SITES;
        if SITE_RET[k]
            .compare_exchange(0, ret, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            SITE_LIB[k].store(lib as *const SslLib as *mut SslLib, Ordering::Release);
            break;
        }
    }
    Some(lib)
}

fn resolve(ret: usize) -> Option<&'static SslLib> {
    let lib = caller_handle(ret)
        .and_then(|h| {
            let lib = from_lookup(|name| {
                // SAFETY: a handle from dlopen and a valid symbol name.
                unsafe { libc::dlsym(h, name.as_ptr()) as usize }
            });
            // SAFETY: drops the reference RTLD_NOLOAD took; still loaded.
            unsafe { libc::dlclose(h) };
            lib
        })
        .or_else(global)?;
    Some(intern(lib))
}

/// A handle to the object containing `ret`, without loading anything.
fn caller_handle(ret: usize) -> Option<*mut c_void> {
    // SAFETY: dladdr only reads loader data; it fills a plain struct.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(ret as *const c_void, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        let h = libc::dlopen(info.dli_fname, libc::RTLD_LAZY | libc::RTLD_NOLOAD);
        (!h.is_null()).then_some(h)
    }
}

/// The global definitions: the next after ours, or an already-loaded
/// system libssl.
fn global() -> Option<SslLib> {
    let next = from_lookup(|name| {
        // SAFETY: dlsym with a valid name.
        unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) as usize }
    });
    if next.is_some() {
        return next;
    }
    for soname in LIBSSL_NAMES {
        // SAFETY: RTLD_NOLOAD returns only an already-loaded library.
        let h = unsafe { libc::dlopen(soname.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
        if h.is_null() {
            continue;
        }
        let lib = from_lookup(|name| {
            // SAFETY: a handle from dlopen and a valid symbol name.
            unsafe { libc::dlsym(h, name.as_ptr()) as usize }
        });
        // SAFETY: drops the reference NOLOAD took.
        unsafe { libc::dlclose(h) };
        if lib.is_some() {
            return lib;
        }
    }
    None
}

/// Builds an SslLib from a symbol lookup; `None` if the core functions are
/// missing or resolve to our own hooks.
fn from_lookup(lookup: impl Fn(&CStr) -> usize) -> Option<SslLib> {
    let ours = super::tls::our_hooks();
    let find = |name: &CStr| {
        let addr = lookup(name);
        (addr != 0 && !ours.contains(&addr)).then_some(addr)
    };
    // SAFETY (every transmute below): the address is libssl's definition of
    // the symbol whose C signature the target type declares.
    macro_rules! f {
        ($name:expr) => {
            find($name).map(|a| unsafe { std::mem::transmute_copy(&a) })
        };
    }
    let lib = SslLib {
        write: f!(c"SSL_write"),
        read: f!(c"SSL_read"),
        write_ex: f!(c"SSL_write_ex"),
        read_ex: f!(c"SSL_read_ex"),
        shutdown: f!(c"SSL_shutdown"),
        free: f!(c"SSL_free"),
        ctrl: f!(c"SSL_ctrl"),
        get_fd: f!(c"SSL_get_fd"),
        is_server: f!(c"SSL_is_server"),
        connect: f!(c"SSL_connect"),
        accept: f!(c"SSL_accept"),
        do_handshake: f!(c"SSL_do_handshake"),
        set_connect_state: f!(c"SSL_set_connect_state"),
        set_accept_state: f!(c"SSL_set_accept_state"),
    };
    (lib.write.is_some() && lib.read.is_some() && lib.free.is_some()).then_some(lib)
}

/// One leaked SslLib per distinct library.
fn intern(lib: SslLib) -> &'static SslLib {
    let key = lib.read.map(|f| f as usize);
    for slot in &KNOWN {
        let p = slot.load(Ordering::Acquire);
        // SAFETY: non-null KNOWN entries are leaked SslLibs.
        if let Some(known) = unsafe { p.as_ref() } {
            if known.read.map(|f| f as usize) == key {
                return known;
            }
        }
    }
    let leaked: &'static SslLib = Box::leak(Box::new(lib));
    for slot in &KNOWN {
        if slot
            .compare_exchange(
                std::ptr::null_mut(),
                leaked as *const SslLib as *mut SslLib,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
        {
            break;
        }
    }
    leaked
}
