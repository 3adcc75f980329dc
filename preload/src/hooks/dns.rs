//! Name lookups: `getaddrinfo`, `gethostbyname`, `gethostbyname_r`.
//!
//! Each lookup the app makes becomes a CLIENT span (see `lumigo_core::dns`).
//! Lookups made by our own code (the exporter resolving its endpoint) run
//! on threads marked internal and are not traced.

use std::ffi::CStr;
use std::time::SystemTime;

use libc::{addrinfo, c_char, c_int, hostent, size_t};

use super::call_real;
use crate::real;
use crate::runtime::{self, traced};

extern "C" {
    fn __h_errno_location() -> *mut c_int;
}

/// The name looked up, unless there is none or it is an address literal
/// (`getaddrinfo("127.0.0.1")` parses; it asks no resolver).
fn question(name: *const c_char) -> Option<String> {
    if name.is_null() {
        return None;
    }
    // SAFETY: the app's NUL-terminated host name.
    let name = unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned();
    let literal = name.parse::<std::net::IpAddr>().is_ok()
        || name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .is_some_and(|n| n.parse::<std::net::Ipv6Addr>().is_ok());
    (!literal && !name.is_empty()).then_some(name)
}

/// # Safety
/// Called by the dynamic linker in place of libc's `getaddrinfo`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn getaddrinfo(
    node: *const c_char,
    service: *const c_char,
    hints: *const addrinfo,
    res: *mut *mut addrinfo,
) -> c_int {
    let start = SystemTime::now();
    let r = call_real!(
        real::GETADDRINFO,
        libc::EAI_SYSTEM,
        node,
        service,
        hints,
        res
    );
    traced(|rt| {
        let Some(name) = question(node) else { return };
        let outcome = if r == 0 && !res.is_null() {
            let mut n = 0usize;
            // SAFETY: on success *res is a valid list we only read.
            let mut p = unsafe { *res };
            while !p.is_null() && n < 10_000 {
                n += 1;
                // SAFETY: each node is valid until freeaddrinfo.
                p = unsafe { (*p).ai_next };
            }
            Ok(n)
        } else {
            Err(lumigo_core::dns::eai_name(r))
        };
        runtime::on_lookup(rt, &name, start, outcome);
    });
    r
}

/// # Safety
/// Called by the dynamic linker in place of libc's `gethostbyname`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn gethostbyname(name: *const c_char) -> *mut hostent {
    let start = SystemTime::now();
    let r = call_real!(real::GETHOSTBYNAME, std::ptr::null_mut(), name);
    traced(|rt| {
        let Some(q) = question(name) else { return };
        let outcome = if r.is_null() {
            // SAFETY: h_errno of this thread.
            Err(lumigo_core::dns::h_errno_name(unsafe {
                *__h_errno_location()
            }))
        } else {
            // SAFETY: a valid hostent until the next call on this thread.
            Ok(unsafe { count_addresses(r) })
        };
        runtime::on_lookup(rt, &q, start, outcome);
    });
    r
}

/// # Safety
/// Called by the dynamic linker in place of libc's `gethostbyname_r`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn gethostbyname_r(
    name: *const c_char,
    ret: *mut hostent,
    buf: *mut c_char,
    buflen: size_t,
    result: *mut *mut hostent,
    h_errnop: *mut c_int,
) -> c_int {
    let start = SystemTime::now();
    let r = call_real!(
        real::GETHOSTBYNAME_R,
        libc::ENOSYS,
        name,
        ret,
        buf,
        buflen,
        result,
        h_errnop
    );
    // ERANGE asks the caller to retry with a bigger buffer: not a lookup result.
    if r == libc::ERANGE {
        return r;
    }
    traced(|rt| {
        let Some(q) = question(name) else { return };
        // SAFETY: out-parameters the real call filled.
        let found = if result.is_null() {
            std::ptr::null_mut()
        } else {
            unsafe { *result }
        };
        let outcome = if r == 0 && !found.is_null() {
            // SAFETY: `found` points to the app's hostent, filled by the call.
            Ok(unsafe { count_addresses(found) })
        } else if !h_errnop.is_null() {
            // SAFETY: set by the real call.
            Err(lumigo_core::dns::h_errno_name(unsafe { *h_errnop }))
        } else {
            Err("_OTHER")
        };
        runtime::on_lookup(rt, &q, start, outcome);
    });
    r
}

/// # Safety
/// `h` must point to a valid hostent.
unsafe fn count_addresses(h: *const hostent) -> usize {
    // SAFETY: guaranteed by the caller; h_addr_list is NULL-terminated.
    let list = unsafe { (*h).h_addr_list };
    let mut n = 0;
    while !list.is_null() && n < 10_000 && !unsafe { *list.add(n) }.is_null() {
        n += 1;
    }
    n
}
