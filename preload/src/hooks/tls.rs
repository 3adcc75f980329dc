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
//! of its own bytes. With `SSL_MODE_ENABLE_PARTIAL_WRITE` (Ruby, Perl's
//! Net::SSLeay) a write may take part of the combined buffer: the app is
//! told how many of its bytes went, and the rest of an inserted line goes
//! first in its next write, as on a plain socket.
//!
//! A connection's role (client or server) comes from what the program does:
//! `SSL_connect`, `SSL_accept`, `SSL_set_connect_state`,
//! `SSL_set_accept_state`; at `SSL_do_handshake` and the first read or
//! write, from whether its socket was connected or accepted, then from
//! `SSL_is_server`. Never from the context's method alone: a generic
//! `TLS_method()` context says "server" until the role is set, and Ruby and
//! Perl set the server name (SNI, which only a client sends) before
//! `SSL_connect`. A connection first seen at SNI is filed as a client and
//! re-filed if the program then accepts on it.
//!
//! The real functions are those of the caller's own libssl, found on the
//! first call from each call site ([`super::libssl`]): a process without
//! libssl resolves nothing, and processes holding several OpenSSL copies
//! (a wheel's private one beside the system's) call each copy's own
//! functions. Each exported symbol is a two-instruction trampoline that
//! passes the return address on to the hook (x86_64 and aarch64; on other
//! architectures OpenSSL is not hooked).

#![allow(non_snake_case)]

use libc::{c_char, c_int, c_long, c_void, size_t};

use lumigo_core::http::Role;

use super::libssl::{self, SslLib};
use crate::fdtable;
use crate::runtime::{self, traced, traced_value, Direction};

/// `SSL_CTRL_SET_TLSEXT_HOSTNAME`: `SSL_set_tlsext_host_name`.
const SET_TLSEXT_HOSTNAME: c_int = 55;
/// `SSL_CTRL_MODE`, and its partial-write bit.
const CTRL_MODE: c_int = 33;
const MODE_ENABLE_PARTIAL_WRITE: c_long = 1;

pub type SslWriteFn = unsafe extern "C" fn(*mut c_void, *const c_void, c_int) -> c_int;
pub type SslReadFn = unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int;
pub type SslWriteExFn =
    unsafe extern "C" fn(*mut c_void, *const c_void, size_t, *mut size_t) -> c_int;
pub type SslReadExFn = unsafe extern "C" fn(*mut c_void, *mut c_void, size_t, *mut size_t) -> c_int;
pub type SslFn = unsafe extern "C" fn(*mut c_void) -> c_int;
pub type SslFreeFn = unsafe extern "C" fn(*mut c_void);
/// `SSL_set_connect_state`, `SSL_set_accept_state`.
pub type SslVoidFn = unsafe extern "C" fn(*mut c_void);
pub type SslCtrlFn = unsafe extern "C" fn(*mut c_void, c_int, c_long, *mut c_void) -> c_long;

/// An exported symbol that jumps to `$imp` with the return address as an
/// extra last argument (in register `$x86` / `$arm`). The stack is left as
/// the caller made it, so `$imp` returns straight to the caller.
macro_rules! trampoline {
    ($name:ident => $imp:ident, $x86:literal, $arm:literal) => {
        #[cfg(target_arch = "x86_64")]
        #[unsafe(naked)]
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name() {
            core::arch::naked_asm!(concat!("mov ", $x86, ", [rsp]"), "jmp {imp}", imp = sym $imp)
        }
        #[cfg(target_arch = "aarch64")]
        #[unsafe(naked)]
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name() {
            core::arch::naked_asm!(concat!("mov ", $arm, ", x30"), "b {imp}", imp = sym $imp)
        }
    };
}

trampoline!(SSL_write => ssl_write, "rcx", "x3");
trampoline!(SSL_read => ssl_read, "rcx", "x3");
trampoline!(SSL_write_ex => ssl_write_ex, "r8", "x4");
trampoline!(SSL_read_ex => ssl_read_ex, "r8", "x4");
trampoline!(SSL_shutdown => ssl_shutdown, "rsi", "x1");
trampoline!(SSL_free => ssl_free, "rsi", "x1");
trampoline!(SSL_ctrl => ssl_ctrl, "r8", "x4");
trampoline!(SSL_connect => ssl_connect, "rsi", "x1");
trampoline!(SSL_accept => ssl_accept, "rsi", "x1");
trampoline!(SSL_do_handshake => ssl_do_handshake, "rsi", "x1");
trampoline!(SSL_set_connect_state => ssl_set_connect_state, "rsi", "x1");
trampoline!(SSL_set_accept_state => ssl_set_accept_state, "rsi", "x1");

/// Addresses of our own exported hooks, never to be taken for libssl's.
pub fn our_hooks() -> [usize; 12] {
    [
        SSL_write as *const () as usize,
        SSL_read as *const () as usize,
        SSL_write_ex as *const () as usize,
        SSL_read_ex as *const () as usize,
        SSL_shutdown as *const () as usize,
        SSL_free as *const () as usize,
        SSL_ctrl as *const () as usize,
        SSL_connect as *const () as usize,
        SSL_accept as *const () as usize,
        SSL_do_handshake as *const () as usize,
        SSL_set_connect_state as *const () as usize,
        SSL_set_accept_state as *const () as usize,
    ]
}

/// What the runtime needs to know about an `SSL*` it has not seen before.
pub struct SslFacts {
    pub fd: Option<c_int>,
    /// The socket's side when our fd table still tracks it (connected:
    /// client, accepted: server), else `SSL_is_server`.
    pub server: bool,
    pub partial_writes: bool,
}

/// Asks the `SSL*`'s own libssl about it.
pub fn facts(lib: &SslLib, ssl: *mut c_void) -> SslFacts {
    // SAFETY (all three): `ssl` is a live SSL* of this library that the app
    // passed to an SSL call we are inside of; these are read-only queries.
    let fd = lib.get_fd.map(|f| unsafe { f(ssl) }).filter(|fd| *fd >= 0);
    let server = match fd {
        Some(fd) if fdtable::is_tracked(fd) => fdtable::is_server(fd),
        _ => lib.is_server.is_some_and(|f| unsafe { f(ssl) } == 1),
    };
    let partial_writes = lib.ctrl.is_some_and(
        |f| unsafe { f(ssl, CTRL_MODE, 0, std::ptr::null_mut()) } & MODE_ENABLE_PARTIAL_WRITE != 0,
    );
    SslFacts {
        fd,
        server,
        partial_writes,
    }
}

/// What OpenSSL's functions return for failure, should the caller's libssl
/// lack one (never expected: the caller linked against it).
const FAIL: c_int = -1;

unsafe extern "C" fn ssl_write(
    ssl: *mut c_void,
    buf: *const c_void,
    num: c_int,
    ret: usize,
) -> c_int {
    let Some(lib) = libssl::for_caller(ret) else {
        return FAIL;
    };
    let Some(real) = lib.write else { return FAIL };
    let app: &[u8] = if buf.is_null() || num <= 0 {
        &[]
    } else {
        // SAFETY: the app's buffer of `num` bytes.
        unsafe { std::slice::from_raw_parts(buf.cast(), num as usize) }
    };
    match traced_value(|rt| runtime::tls_before_write(rt, lib, ssl as usize, app)) {
        Some(combined) => {
            let len = c_int::try_from(combined.len).unwrap_or(c_int::MAX);
            // SAFETY: `combined` stays alive in the runtime until committed.
            let r = unsafe { real(ssl, combined.ptr.cast(), len) };
            if r <= 0 {
                return r;
            }
            let app_count =
                traced_value(|rt| runtime::tls_after_combined(rt, lib, ssl as usize, r as usize))
                    .unwrap_or_else(|| combined.app_count(r as usize));
            c_int::try_from(app_count).unwrap_or(num)
        }
        None => {
            // SAFETY: the app's own call.
            let r = unsafe { real(ssl, buf, num) };
            if r > 0 {
                let n = (r as usize).min(app.len());
                traced(|rt| {
                    runtime::tls_data(rt, lib, ssl as usize, Direction::Outbound, &app[..n])
                });
            }
            r
        }
    }
}

unsafe extern "C" fn ssl_write_ex(
    ssl: *mut c_void,
    buf: *const c_void,
    num: size_t,
    written: *mut size_t,
    ret: usize,
) -> c_int {
    let Some(lib) = libssl::for_caller(ret) else {
        return 0;
    };
    let Some(real) = lib.write_ex else { return 0 };
    let app: &[u8] = if buf.is_null() || num == 0 {
        &[]
    } else {
        // SAFETY: the app's buffer of `num` bytes.
        unsafe { std::slice::from_raw_parts(buf.cast(), num) }
    };
    match traced_value(|rt| runtime::tls_before_write(rt, lib, ssl as usize, app)) {
        Some(combined) => {
            let mut ours: size_t = 0;
            // SAFETY: `combined` stays alive in the runtime until committed.
            let ok = unsafe { real(ssl, combined.ptr.cast(), combined.len, &mut ours) };
            if ok != 1 {
                return ok;
            }
            let app_count =
                traced_value(|rt| runtime::tls_after_combined(rt, lib, ssl as usize, ours))
                    .unwrap_or_else(|| combined.app_count(ours));
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
                traced(|rt| {
                    runtime::tls_data(rt, lib, ssl as usize, Direction::Outbound, &app[..n])
                });
            }
            ok
        }
    }
}

unsafe extern "C" fn ssl_read(ssl: *mut c_void, buf: *mut c_void, num: c_int, ret: usize) -> c_int {
    let Some(lib) = libssl::for_caller(ret) else {
        return FAIL;
    };
    let Some(real) = lib.read else { return FAIL };
    // SAFETY: the app's own call.
    let r = unsafe { real(ssl, buf, num) };
    if r > 0 && !buf.is_null() {
        traced(|rt| {
            // SAFETY: the real call filled `r` bytes of the app's buffer.
            let data = unsafe { std::slice::from_raw_parts(buf as *const u8, r as usize) };
            runtime::tls_data(rt, lib, ssl as usize, Direction::Inbound, data);
        });
    }
    r
}

unsafe extern "C" fn ssl_read_ex(
    ssl: *mut c_void,
    buf: *mut c_void,
    num: size_t,
    readbytes: *mut size_t,
    ret: usize,
) -> c_int {
    let Some(lib) = libssl::for_caller(ret) else {
        return 0;
    };
    let Some(real) = lib.read_ex else { return 0 };
    // SAFETY: the app's own call.
    let ok = unsafe { real(ssl, buf, num, readbytes) };
    if ok == 1 && !buf.is_null() && !readbytes.is_null() {
        traced(|rt| {
            // SAFETY: the real call set `*readbytes` and filled that much.
            let n = unsafe { *readbytes }.min(num);
            let data = unsafe { std::slice::from_raw_parts(buf as *const u8, n) };
            runtime::tls_data(rt, lib, ssl as usize, Direction::Inbound, data);
        });
    }
    ok
}

unsafe extern "C" fn ssl_shutdown(ssl: *mut c_void, ret: usize) -> c_int {
    let Some(lib) = libssl::for_caller(ret) else {
        return FAIL;
    };
    let Some(real) = lib.shutdown else {
        return FAIL;
    };
    traced(|rt| runtime::tls_end(rt, ssl as usize));
    // SAFETY: the app's own call.
    unsafe { real(ssl) }
}

unsafe extern "C" fn ssl_free(ssl: *mut c_void, ret: usize) {
    // The pointer may be reused by the next SSL_new: forget it first.
    traced(|rt| runtime::tls_end(rt, ssl as usize));
    if let Some(real) = libssl::for_caller(ret).and_then(|lib| lib.free) {
        // SAFETY: the app's own call.
        unsafe { real(ssl) }
    }
}

unsafe extern "C" fn ssl_ctrl(
    ssl: *mut c_void,
    cmd: c_int,
    larg: c_long,
    parg: *mut c_void,
    ret: usize,
) -> c_long {
    let Some(lib) = libssl::for_caller(ret) else {
        return 0;
    };
    let Some(real) = lib.ctrl else { return 0 };
    // SAFETY: the app's own call.
    let r = unsafe { real(ssl, cmd, larg, parg) };
    if cmd == SET_TLSEXT_HOSTNAME && larg == 0 && !parg.is_null() && r == 1 {
        traced(|rt| {
            // SAFETY: for this command `parg` is the host name, a C string.
            let name = unsafe { std::ffi::CStr::from_ptr(parg as *const c_char) };
            runtime::tls_server_name(rt, lib, ssl as usize, name.to_string_lossy().into_owned());
        });
    }
    r
}

/// `SSL_connect`, `SSL_accept`, `SSL_do_handshake`: the role (known, or
/// `None` to work it out from the socket), then the real call.
fn handshake(
    ssl: *mut c_void,
    ret: usize,
    role: Option<Role>,
    pick: fn(&SslLib) -> Option<SslFn>,
) -> c_int {
    let Some(lib) = libssl::for_caller(ret) else {
        return FAIL;
    };
    let Some(real) = pick(lib) else { return FAIL };
    traced(|rt| runtime::tls_role(rt, lib, ssl as usize, role));
    // SAFETY: the app's own call.
    unsafe { real(ssl) }
}

unsafe extern "C" fn ssl_connect(ssl: *mut c_void, ret: usize) -> c_int {
    handshake(ssl, ret, Some(Role::Client), |lib| lib.connect)
}

unsafe extern "C" fn ssl_accept(ssl: *mut c_void, ret: usize) -> c_int {
    handshake(ssl, ret, Some(Role::Server), |lib| lib.accept)
}

unsafe extern "C" fn ssl_do_handshake(ssl: *mut c_void, ret: usize) -> c_int {
    handshake(ssl, ret, None, |lib| lib.do_handshake)
}

/// `SSL_set_connect_state`, `SSL_set_accept_state`: the real call, then
/// the role it set.
fn set_state(ssl: *mut c_void, ret: usize, role: Role, pick: fn(&SslLib) -> Option<SslVoidFn>) {
    let Some(lib) = libssl::for_caller(ret) else {
        return;
    };
    if let Some(real) = pick(lib) {
        // SAFETY: the app's own call.
        unsafe { real(ssl) };
        traced(|rt| runtime::tls_role(rt, lib, ssl as usize, Some(role)));
    }
}

unsafe extern "C" fn ssl_set_connect_state(ssl: *mut c_void, ret: usize) {
    set_state(ssl, ret, Role::Client, |lib| lib.set_connect_state);
}

unsafe extern "C" fn ssl_set_accept_state(ssl: *mut c_void, ret: usize) {
    set_state(ssl, ret, Role::Server, |lib| lib.set_accept_state);
}
