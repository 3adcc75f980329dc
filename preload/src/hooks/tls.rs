//! OpenSSL: the plaintext of TLS connections, at `SSL_write` / `SSL_read`.
//!
//! The bytes the socket hooks see on a TLS connection are ciphertext (they
//! are recognised as not-HTTP on their first record and left alone). The
//! plaintext goes through the same connection machinery here, keyed by the
//! `SSL*`, with `url.scheme=https`, and outbound heads get their
//! `traceparent` inside the encryption.
//!
//! OpenSSL's write contract: after `SSL_ERROR_WANT_WRITE`/`WANT_READ` the
//! same buffer must be retried, and a successful write takes everything
//! unless partial writes are enabled. So when bytes are inserted, the
//! combined buffer is kept until a call with it succeeds, and every retry of
//! the app's write is made with that same buffer; the app is told the count
//! of its own bytes. On an SSL with `SSL_MODE_ENABLE_PARTIAL_WRITE`, nothing
//! is inserted.
//!
//! The real functions are found only when first called: a process without
//! libssl resolves nothing, and one that loads it later (Python's `_ssl`,
//! loaded with RTLD_LOCAL) is found through `dlopen(RTLD_NOLOAD)`.

#![allow(non_snake_case)]

use libc::{c_char, c_int, c_long, c_void, size_t};

use crate::real::SslReal;
use crate::runtime::{self, traced, traced_value, Direction};

/// `SSL_CTRL_SET_TLSEXT_HOSTNAME`: `SSL_set_tlsext_host_name`.
const SET_TLSEXT_HOSTNAME: c_int = 55;

pub type SslWriteFn = unsafe extern "C" fn(*mut c_void, *const c_void, c_int) -> c_int;
pub type SslReadFn = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int;
pub type SslWriteExFn =
    unsafe extern "C" fn(*mut c_void, *const c_void, size_t, *mut size_t) -> c_int;
pub type SslReadExFn = unsafe extern "C" fn(*mut c_void, *mut c_void, size_t, *mut size_t) -> c_int;
pub type SslFn = unsafe extern "C" fn(*mut c_void) -> c_int;
pub type SslFreeFn = unsafe extern "C" fn(*mut c_void);
pub type SslCtrlFn = unsafe extern "C" fn(*mut c_void, c_int, c_long, *mut c_void) -> c_long;

pub static SSL_WRITE: SslReal<SslWriteFn> = SslReal::new(c"SSL_write");
pub static SSL_READ: SslReal<SslReadFn> = SslReal::new(c"SSL_read");
pub static SSL_WRITE_EX: SslReal<SslWriteExFn> = SslReal::new(c"SSL_write_ex");
pub static SSL_READ_EX: SslReal<SslReadExFn> = SslReal::new(c"SSL_read_ex");
pub static SSL_SHUTDOWN: SslReal<SslFn> = SslReal::new(c"SSL_shutdown");
pub static SSL_FREE: SslReal<SslFreeFn> = SslReal::new(c"SSL_free");
pub static SSL_CTRL: SslReal<SslCtrlFn> = SslReal::new(c"SSL_ctrl");
pub static SSL_GET_FD: SslReal<SslFn> = SslReal::new(c"SSL_get_fd");
pub static SSL_IS_SERVER: SslReal<SslFn> = SslReal::new(c"SSL_is_server");

/// What the runtime needs to know about an `SSL*` it has not seen before.
pub struct SslFacts {
    pub fd: Option<c_int>,
    pub server: bool,
    pub partial_writes: bool,
}

/// Asks OpenSSL about `ssl` (only through the real functions).
pub fn facts(ssl: *mut c_void) -> SslFacts {
    // SAFETY (all three): `ssl` is a live SSL* the app passed to an SSL
    // call we are inside of; these are read-only queries.
    let fd = SSL_GET_FD
        .get()
        .map(|f| unsafe { f(ssl) })
        .filter(|fd| *fd >= 0);
    let server = SSL_IS_SERVER.get().is_some_and(|f| unsafe { f(ssl) } == 1);
    // SSL_CTRL_MODE (33) with larg 0 reads the mode; bit 1 is partial writes.
    let partial_writes = SSL_CTRL
        .get()
        .is_some_and(|f| unsafe { f(ssl, 33, 0, std::ptr::null_mut()) } & 1 != 0);
    SslFacts {
        fd,
        server,
        partial_writes,
    }
}

/// Fails like OpenSSL does for a call it cannot make (never expected: the
/// caller linked against libssl, so the symbol exists).
const FAIL: c_int = -1;

/// # Safety
/// Called by the dynamic linker in place of libssl's `SSL_write`.
#[no_mangle]
pub unsafe extern "C" fn SSL_write(ssl: *mut c_void, buf: *const c_void, num: c_int) -> c_int {
    let Some(real) = SSL_WRITE.get() else {
        return FAIL;
    };
    let app: &[u8] = if buf.is_null() || num <= 0 {
        &[]
    } else {
        // SAFETY: the app's buffer of `num` bytes.
        unsafe { std::slice::from_raw_parts(buf.cast(), num as usize) }
    };
    match traced_value(|rt| runtime::tls_before_write(rt, ssl as usize, app)) {
        Some(combined) => {
            let len = c_int::try_from(combined.len).unwrap_or(c_int::MAX);
            // SAFETY: `combined` stays alive in the runtime until committed.
            let r = unsafe { real(ssl, combined.ptr.cast(), len) };
            if r <= 0 {
                return r;
            }
            let app_count =
                traced_value(|rt| runtime::tls_after_combined(rt, ssl as usize, r as usize))
                    .unwrap_or(app.len());
            c_int::try_from(app_count).unwrap_or(num)
        }
        None => {
            // SAFETY: the app's own call.
            let r = unsafe { real(ssl, buf, num) };
            if r > 0 {
                let n = (r as usize).min(app.len());
                traced(|rt| runtime::tls_data(rt, ssl as usize, Direction::Outbound, &app[..n]));
            }
            r
        }
    }
}

/// # Safety
/// Called by the dynamic linker in place of libssl's `SSL_write_ex`.
#[no_mangle]
pub unsafe extern "C" fn SSL_write_ex(
    ssl: *mut c_void,
    buf: *const c_void,
    num: size_t,
    written: *mut size_t,
) -> c_int {
    let Some(real) = SSL_WRITE_EX.get() else {
        return 0;
    };
    let app: &[u8] = if buf.is_null() || num == 0 {
        &[]
    } else {
        // SAFETY: the app's buffer of `num` bytes.
        unsafe { std::slice::from_raw_parts(buf.cast(), num) }
    };
    match traced_value(|rt| runtime::tls_before_write(rt, ssl as usize, app)) {
        Some(combined) => {
            let mut ours: size_t = 0;
            // SAFETY: `combined` stays alive in the runtime until committed.
            let ok = unsafe { real(ssl, combined.ptr.cast(), combined.len, &mut ours) };
            if ok != 1 {
                return ok;
            }
            let app_count = traced_value(|rt| runtime::tls_after_combined(rt, ssl as usize, ours))
                .unwrap_or(app.len());
            if !written.is_null() {
                // SAFETY: the app's out-parameter.
                unsafe { *written = app_count };
            }
            ok
        }
        None => {
            // SAFETY: the app's own call.
            let ok = unsafe { real(ssl, buf, num, written) };
            if ok == 1 && !written.is_null() {
                // SAFETY: set by the real call.
                let n = unsafe { *written }.min(app.len());
                traced(|rt| runtime::tls_data(rt, ssl as usize, Direction::Outbound, &app[..n]));
            }
            ok
        }
    }
}

/// # Safety
/// Called by the dynamic linker in place of libssl's `SSL_read`.
#[no_mangle]
pub unsafe extern "C" fn SSL_read(ssl: *mut c_void, buf: *mut c_void, num: c_int) -> c_int {
    let Some(real) = SSL_READ.get() else {
        return FAIL;
    };
    // SAFETY: the app's own call.
    let r = unsafe { real(ssl, buf, num) };
    if r > 0 && !buf.is_null() {
        traced(|rt| {
            // SAFETY: the real call filled `r` bytes of the app's buffer.
            let data = unsafe { std::slice::from_raw_parts(buf as *const u8, r as usize) };
            runtime::tls_data(rt, ssl as usize, Direction::Inbound, data);
        });
    }
    r
}

/// # Safety
/// Called by the dynamic linker in place of libssl's `SSL_read_ex`.
#[no_mangle]
pub unsafe extern "C" fn SSL_read_ex(
    ssl: *mut c_void,
    buf: *mut c_void,
    num: size_t,
    readbytes: *mut size_t,
) -> c_int {
    let Some(real) = SSL_READ_EX.get() else {
        return 0;
    };
    // SAFETY: the app's own call.
    let ok = unsafe { real(ssl, buf, num, readbytes) };
    if ok == 1 && !buf.is_null() && !readbytes.is_null() {
        traced(|rt| {
            // SAFETY: the real call set `*readbytes` and filled that much.
            let n = unsafe { *readbytes }.min(num);
            let data = unsafe { std::slice::from_raw_parts(buf as *const u8, n) };
            runtime::tls_data(rt, ssl as usize, Direction::Inbound, data);
        });
    }
    ok
}

/// # Safety
/// Called by the dynamic linker in place of libssl's `SSL_shutdown`.
#[no_mangle]
pub unsafe extern "C" fn SSL_shutdown(ssl: *mut c_void) -> c_int {
    let Some(real) = SSL_SHUTDOWN.get() else {
        return FAIL;
    };
    traced(|rt| runtime::tls_end(rt, ssl as usize));
    // SAFETY: the app's own call.
    unsafe { real(ssl) }
}

/// # Safety
/// Called by the dynamic linker in place of libssl's `SSL_free`.
#[no_mangle]
pub unsafe extern "C" fn SSL_free(ssl: *mut c_void) {
    // The pointer may be reused by the next SSL_new: forget it first.
    traced(|rt| runtime::tls_end(rt, ssl as usize));
    if let Some(real) = SSL_FREE.get() {
        // SAFETY: the app's own call.
        unsafe { real(ssl) }
    }
}

/// # Safety
/// Called by the dynamic linker in place of libssl's `SSL_ctrl`.
#[no_mangle]
pub unsafe extern "C" fn SSL_ctrl(
    ssl: *mut c_void,
    cmd: c_int,
    larg: c_long,
    parg: *mut c_void,
) -> c_long {
    let Some(real) = SSL_CTRL.get() else { return 0 };
    // SAFETY: the app's own call.
    let r = unsafe { real(ssl, cmd, larg, parg) };
    if cmd == SET_TLSEXT_HOSTNAME && larg == 0 && !parg.is_null() && r == 1 {
        traced(|rt| {
            // SAFETY: for this command `parg` is the host name, a C string.
            let name = unsafe { std::ffi::CStr::from_ptr(parg as *const c_char) };
            runtime::tls_server_name(rt, ssl as usize, name.to_string_lossy().into_owned());
        });
    }
    r
}
