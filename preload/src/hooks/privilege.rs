//! The calls that change a process's user or group ids (`setuid`,
//! `setgid`, … `setgroups`, `initgroups`).
//!
//! A prefork server started as root (nginx, Apache) drops privileges in
//! each worker, and a worker running as `nobody` cannot open a span dump in
//! a root-only directory. So just before such a call, the span dump (if
//! configured and not open yet) is opened with the privileges the process
//! still has, under the usual file rules; the descriptor stays valid after
//! the change. The call itself is then made exactly as asked and returns
//! its own result and errno.

use libc::{c_char, c_int, gid_t, size_t, uid_t};

use super::call_real;
use crate::real;
use crate::runtime::{self, traced};

fn before_id_change() {
    traced(runtime::before_privilege_change);
}

/// # Safety
/// Called by the dynamic linker in place of libc's `setuid`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn setuid(uid: uid_t) -> c_int {
    before_id_change();
    call_real!(real::SETUID, -1, uid)
}

/// # Safety
/// Called by the dynamic linker in place of libc's `seteuid`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn seteuid(uid: uid_t) -> c_int {
    before_id_change();
    call_real!(real::SETEUID, -1, uid)
}

/// # Safety
/// Called by the dynamic linker in place of libc's `setreuid`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn setreuid(ruid: uid_t, euid: uid_t) -> c_int {
    before_id_change();
    call_real!(real::SETREUID, -1, ruid, euid)
}

/// # Safety
/// Called by the dynamic linker in place of libc's `setresuid`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn setresuid(ruid: uid_t, euid: uid_t, suid: uid_t) -> c_int {
    before_id_change();
    call_real!(real::SETRESUID, -1, ruid, euid, suid)
}

/// # Safety
/// Called by the dynamic linker in place of libc's `setgid`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn setgid(gid: gid_t) -> c_int {
    before_id_change();
    call_real!(real::SETGID, -1, gid)
}

/// # Safety
/// Called by the dynamic linker in place of libc's `setegid`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn setegid(gid: gid_t) -> c_int {
    before_id_change();
    call_real!(real::SETEGID, -1, gid)
}

/// # Safety
/// Called by the dynamic linker in place of libc's `setregid`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn setregid(rgid: gid_t, egid: gid_t) -> c_int {
    before_id_change();
    call_real!(real::SETREGID, -1, rgid, egid)
}

/// # Safety
/// Called by the dynamic linker in place of libc's `setresgid`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn setresgid(rgid: gid_t, egid: gid_t, sgid: gid_t) -> c_int {
    before_id_change();
    call_real!(real::SETRESGID, -1, rgid, egid, sgid)
}

/// # Safety
/// Called by the dynamic linker in place of libc's `setgroups`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn setgroups(size: size_t, list: *const gid_t) -> c_int {
    before_id_change();
    call_real!(real::SETGROUPS, -1, size, list)
}

/// # Safety
/// Called by the dynamic linker in place of libc's `initgroups`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn initgroups(user: *const c_char, group: gid_t) -> c_int {
    before_id_change();
    call_real!(real::INITGROUPS, -1, user, group)
}
