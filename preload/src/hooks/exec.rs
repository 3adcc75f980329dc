//! Starting programs: the execve family and posix_spawn.
//!
//! A thread that starts a program while serving a request passes that
//! request's context to it in `TRACEPARENT` (and `TRACESTATE`), the
//! OpenTelemetry environment carrier, so work done through `sh -c`, cron-style
//! jobs or subprocesses joins the trace. Otherwise the call is passed
//! through untouched. With a process span (`LUMIGO_PROCESS_SPAN`), programs
//! started outside any request join the process span's trace. The variadic `execl*` functions cannot be interposed
//! from Rust and are not covered.

use std::ffi::{CStr, CString};

use libc::{c_char, c_int, pid_t, posix_spawn_file_actions_t, posix_spawnattr_t};

use super::call_real;
use crate::real::{self, ExecveFn, PosixSpawnFn, Real};
use crate::runtime::traced_value;

extern "C" {
    static environ: *const *const c_char;
}

/// An environment with the thread's active context in it.
struct ChildEnv {
    _owned: [CString; 2],
    ptrs: Vec<*const c_char>,
}

/// `envp` plus the active context, or `None` when the thread serves no
/// request (then the environment is passed on as it is).
///
/// # Safety
/// `envp` must be null or a null-terminated array of C strings.
unsafe fn with_active_context(envp: *const *const c_char) -> Option<ChildEnv> {
    let ctx = traced_value(|rt| lumigo_core::context::active().or_else(|| rt.process_context()))?;
    let tp = CString::new(format!(
        "TRACEPARENT={}",
        lumigo_core::propagation::format_traceparent(&ctx)
    ))
    .ok()?;
    let ts = CString::new(format!(
        "TRACESTATE={}",
        ctx.trace_state.as_deref().unwrap_or("")
    ))
    .ok()?;
    let mut ptrs = Vec::new();
    if !envp.is_null() {
        let mut i = 0;
        loop {
            // SAFETY: a null-terminated array, as the caller guarantees.
            let entry = unsafe { *envp.add(i) };
            if entry.is_null() {
                break;
            }
            // SAFETY: each entry is a C string.
            let bytes = unsafe { CStr::from_ptr(entry) }.to_bytes();
            if !bytes.starts_with(b"TRACEPARENT=") && !bytes.starts_with(b"TRACESTATE=") {
                ptrs.push(entry);
            }
            i += 1;
        }
    }
    ptrs.push(tp.as_ptr());
    if ctx.trace_state.is_some() {
        ptrs.push(ts.as_ptr());
    }
    ptrs.push(std::ptr::null());
    Some(ChildEnv {
        _owned: [tp, ts],
        ptrs,
    })
}

/// Records the exit status for the process span, then exits.
///
/// # Safety
/// Called by the dynamic linker in place of libc's `exit`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn exit(status: c_int) -> ! {
    crate::runtime::record_exit_status(status);
    match real::EXIT.get() {
        // SAFETY: libc's exit, with the app's status.
        Some(f) => unsafe { f(status) },
        // SAFETY: our `_exit`, only if libc had no `exit`.
        None => unsafe { _exit(status) },
    }
}

/// Records the status and exports what is pending (bounded by
/// `LUMIGO_FLUSH_TIMEOUT`), as at exit: forked workers and children often
/// end with `_exit`.
///
/// # Safety
/// Called by the dynamic linker in place of libc's `_exit`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn _exit(status: c_int) -> ! {
    crate::runtime::record_exit_status(status);
    crate::runtime::at_underscore_exit();
    match real::UNDERSCORE_EXIT.get() {
        // SAFETY: libc's _exit, with the app's status.
        Some(f) => unsafe { f(status) },
        // SAFETY: the raw system call, if libc had no `_exit`.
        None => unsafe {
            libc::syscall(libc::SYS_exit_group, status);
            std::hint::unreachable_unchecked()
        },
    }
}

/// # Safety
/// Called by the dynamic linker in place of libc's `_Exit`.
#[cfg_attr(not(test), no_mangle)]
#[cfg_attr(test, allow(non_snake_case))]
pub unsafe extern "C" fn _Exit(status: c_int) -> ! {
    // SAFETY: the same contract as `_exit`.
    unsafe { _exit(status) }
}

/// # Safety
/// Called by the dynamic linker in place of libc's `execve`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: forwarding the app's own arguments.
    unsafe { exec_with(&real::EXECVE, path, argv, envp) }
}

/// # Safety
/// Called by the dynamic linker in place of libc's `execv`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: `environ` is the process's environment array.
    let env = unsafe { with_active_context(environ) };
    let began = crate::runtime::before_exec();
    let r = match env {
        Some(env) => call_real!(real::EXECVE, -1, path, argv, env.ptrs.as_ptr()),
        None => call_real!(real::EXECV, -1, path, argv),
    };
    crate::runtime::after_failed_exec(began);
    r
}

/// # Safety
/// Called by the dynamic linker in place of libc's `execvp`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: `environ` is the process's environment array.
    let env = unsafe { with_active_context(environ) };
    let began = crate::runtime::before_exec();
    let r = match env {
        Some(env) => call_real!(real::EXECVPE, -1, file, argv, env.ptrs.as_ptr()),
        None => call_real!(real::EXECVP, -1, file, argv),
    };
    crate::runtime::after_failed_exec(began);
    r
}

/// # Safety
/// Called by the dynamic linker in place of libc's `execvpe`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: forwarding the app's own arguments.
    unsafe { exec_with(&real::EXECVPE, file, argv, envp) }
}

/// # Safety
/// Called by the dynamic linker in place of libc's `posix_spawn`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut pid_t,
    path: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // SAFETY: forwarding the app's own arguments.
    unsafe { spawn_with(&real::POSIX_SPAWN, pid, path, actions, attr, argv, envp) }
}

/// # Safety
/// Called by the dynamic linker in place of libc's `posix_spawnp`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut pid_t,
    file: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // SAFETY: forwarding the app's own arguments.
    unsafe { spawn_with(&real::POSIX_SPAWNP, pid, file, actions, attr, argv, envp) }
}

/// `execve`/`execvpe` with the active context added to `envp`.
///
/// # Safety
/// The arguments must be valid for the real call.
unsafe fn exec_with(
    real: &Real<ExecveFn>,
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: the app's environment array.
    let env = unsafe { with_active_context(envp) };
    let envp = env.as_ref().map_or(envp, |e| e.ptrs.as_ptr());
    let began = crate::runtime::before_exec();
    let r = call_real!(real, -1, file, argv, envp);
    crate::runtime::after_failed_exec(began);
    r
}

/// `posix_spawn`/`posix_spawnp` with the active context added to `envp`.
/// Errors come back as the return value, not in errno.
///
/// # Safety
/// The arguments must be valid for the real call.
unsafe fn spawn_with(
    real: &Real<PosixSpawnFn>,
    pid: *mut pid_t,
    file: *const c_char,
    actions: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: *const *mut c_char,
    envp: *const *mut c_char,
) -> c_int {
    // SAFETY: the app's environment array.
    let env = unsafe { with_active_context(envp.cast()) };
    let envp = env.as_ref().map_or(envp, |e| e.ptrs.as_ptr().cast());
    call_real!(real, libc::ENOSYS, pid, file, actions, attr, argv, envp)
}
