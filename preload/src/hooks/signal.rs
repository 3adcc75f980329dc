//! Fatal signals: SIGTERM, SIGINT, SIGHUP and SIGQUIT with the default
//! disposition kill the process without running `atexit`, so the spans
//! still queued would be lost (`docker stop`, Kubernetes).
//!
//! When tracing has a destination, the constructor puts our handler in
//! place of each of these signals whose disposition is `SIG_DFL` (an
//! ignored signal or an inherited handler is left alone). The handler asks
//! the export thread to end in-flight exchanges and export what is queued,
//! waits for it at most `LUMIGO_FLUSH_TIMEOUT`, then restores `SIG_DFL`,
//! unblocks the signal and raises it again: the process dies of the same
//! signal, with the same wait status and core-dump semantics (SIGQUIT). No
//! span ever queued → it re-raises at once. The handler takes no lock and
//! allocates nothing (see [`lumigo_core::export::Pipeline::flush_from_signal`]).
//!
//! The app never sees our handler: `sigaction`, `signal`, `bsd_signal`,
//! `sysv_signal` and `__sysv_signal` are interposed for these four
//! signals. An app handler (or `SIG_IGN`) replaces ours for real; setting
//! `SIG_DFL` puts ours back; and what the app reads back is what the kernel
//! and glibc would report for what it set (`SIG_DFL` with its flags and
//! mask, or the inherited action if it never set one).
//!
//! A one-shot app handler (`SA_RESETHAND`, as `sysv_signal` sets, and as
//! Node.js sets for SIGINT and SIGTERM: it restores the terminal, then
//! raises the signal again to die of it) is kept by us instead: our handler
//! goes in with the app's flags (without `SA_RESETHAND`, plus `SA_SIGINFO`)
//! and mask, calls the app's handler at the first signal, exactly once, as
//! the kernel would, and from then on stands in for the default the kernel
//! would have reset it to: the signal the app raises again flushes and
//! kills. The app reads back its own action until then, `SIG_DFL` after.
//! `sigset`, `sigvec` and raw `rt_sigaction` system calls are not
//! interposed.
//!
//! If the signal interrupts a thread holding the export queue's lock, the
//! export thread cannot take it and the handler gives up after the flush
//! timeout: spans are lost, the process still dies of its signal.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

use libc::{c_int, sighandler_t, SIG_DFL, SIG_ERR};

use super::call_real;
use crate::real::{self, Real, SignalFn};

/// The signals whose default action we flush before.
const MANAGED: [c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT];

/// The kernel's `sa_flags` bits (`UAPI_SA_FLAGS`): it clears the others.
const KERNEL_FLAGS: c_int = libc::SA_NOCLDSTOP
    | libc::SA_NOCLDWAIT
    | libc::SA_SIGINFO
    | libc::SA_ONSTACK
    | libc::SA_RESTART
    | libc::SA_NODEFER
    | libc::SA_RESETHAND
    | 0x0000_0800 // SA_EXPOSE_TAGBITS
    | 0x0400_0000; // SA_RESTORER

/// glibc adds it (with its own restorer) to every action it sets.
const SA_RESTORER: c_int = 0x0400_0000;

/// Bytes of `sa_mask` the kernel keeps (64 signals). glibc copies a whole
/// `sigset_t` back, the rest of it from its own uninitialised stack; we
/// copy only the defined part.
const KERNEL_MASK_BYTES: usize = 8;

/// One managed signal.
struct Slot {
    /// Our handler is in the kernel, standing in for the app's `SIG_DFL`
    /// (or for its one-shot handler, see `oneshot`).
    ours: AtomicBool,
    /// While `ours`: the app's one-shot (`SA_RESETHAND`) handler, not yet
    /// called (0: none). Our handler takes it (swaps in 0) and calls it.
    oneshot: AtomicUsize,
    /// The one-shot handler takes three arguments (`SA_SIGINFO`).
    oneshot_siginfo: AtomicBool,
    /// What the app is told the action is while `ours` is set. Only
    /// touched under [`LOCK`].
    view: UnsafeCell<libc::sigaction>,
}

// SAFETY: `view` is only read or written with `LOCK` held.
unsafe impl Sync for Slot {}

#[allow(clippy::declare_interior_mutable_const)] // ok: only used to build SLOTS
const EMPTY: Slot = Slot {
    ours: AtomicBool::new(false),
    oneshot: AtomicUsize::new(0),
    oneshot_siginfo: AtomicBool::new(false),
    // SAFETY: an all-zero sigaction is valid (SIG_DFL, no flags, empty
    // mask, no restorer).
    view: UnsafeCell::new(unsafe { std::mem::zeroed() }),
};
static SLOTS: [Slot; 4] = [EMPTY; 4];

/// Set once the constructor installed our handlers: until then (and when
/// tracing has nowhere to send spans) every call goes straight to libc.
static ENABLED: AtomicBool = AtomicBool::new(false);
static LOCK: AtomicBool = AtomicBool::new(false);
/// What glibc adds to the flags of every action it sets (`SA_RESTORER` on
/// x86-64), and the restorer it sets: learnt by reading our own back.
static ADDED_FLAGS: AtomicI32 = AtomicI32::new(0);
static RESTORER: AtomicUsize = AtomicUsize::new(0);

fn slot_of(sig: c_int) -> Option<&'static Slot> {
    if !ENABLED.load(Ordering::Acquire) {
        return None;
    }
    MANAGED.iter().position(|&s| s == sig).map(|i| &SLOTS[i])
}

/// Runs `f` with [`LOCK`] held and every signal blocked on this thread, so
/// a handler of the app that calls `sigaction` cannot spin on a lock its
/// own thread holds. The app's call looks atomic, as in the kernel.
fn locked<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: plain sigset_t values on the stack; pthread_sigmask reads
    // `all` and writes `old`.
    let old = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    };
    while LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
    }
    let out = f();
    LOCK.store(false, Ordering::Release);
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    out
}

fn real_sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    call_real!(real::SIGACTION, -1, sig, act, old)
}

/// Our action: the handler, with the other managed signals blocked while
/// it waits, so a second one does not nest on the same thread.
fn our_action() -> libc::sigaction {
    // SAFETY: all-zero is a valid sigaction; the set functions write into it.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = HANDLER as sighandler_t;
    act.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
    // SAFETY: `sa_mask` is a valid sigset_t.
    unsafe {
        libc::sigemptyset(&mut act.sa_mask);
        for s in MANAGED {
            libc::sigaddset(&mut act.sa_mask, s);
        }
    }
    act
}

/// What the kernel and glibc would report after the app set `act`
/// (a `SIG_DFL` one): flags the kernel keeps plus glibc's, glibc's
/// restorer, the mask without SIGKILL and SIGSTOP.
fn view_of(act: &libc::sigaction) -> libc::sigaction {
    let mut view = *act;
    view.sa_flags = (act.sa_flags & KERNEL_FLAGS) | ADDED_FLAGS.load(Ordering::Relaxed);
    let restorer = RESTORER.load(Ordering::Relaxed);
    // SAFETY: `restorer` is 0 or the address glibc itself stored as
    // sa_restorer in an action it set: the same function pointer type.
    view.sa_restorer = unsafe { std::mem::transmute::<usize, Option<extern "C" fn()>>(restorer) };
    // SAFETY: `sa_mask` is a valid sigset_t.
    unsafe {
        libc::sigdelset(&mut view.sa_mask, libc::SIGKILL);
        libc::sigdelset(&mut view.sa_mask, libc::SIGSTOP);
    }
    view
}

/// Writes `from` to the app's `oldact` as glibc does: handler, flags,
/// restorer and the kernel's 64 bits of the mask (glibc's copy of the rest
/// is undefined; the app's bytes are left there).
///
/// # Safety
/// `to` must be valid for writes of a `sigaction`.
unsafe fn copy_out(from: &libc::sigaction, to: *mut libc::sigaction) {
    // SAFETY: the caller vouches for `to`; the mask copy stays within both
    // sigset_t values (128 bytes each).
    unsafe {
        (*to).sa_sigaction = from.sa_sigaction;
        (*to).sa_flags = from.sa_flags;
        (*to).sa_restorer = from.sa_restorer;
        std::ptr::copy_nonoverlapping(
            &from.sa_mask as *const libc::sigset_t as *const u8,
            &mut (*to).sa_mask as *mut libc::sigset_t as *mut u8,
            KERNEL_MASK_BYTES,
        );
    }
}

/// Whether `a` is a one-shot handler of the app's (see the module docs).
fn is_oneshot(a: &libc::sigaction) -> bool {
    a.sa_flags & libc::SA_RESETHAND != 0
        && a.sa_sigaction != SIG_DFL
        && a.sa_sigaction != libc::SIG_IGN
}

/// Our handler in the kernel for the app's one-shot action `a`: its flags
/// and mask, without `SA_RESETHAND` (we do the reset), with `SA_SIGINFO`
/// (for the app's handler's arguments).
fn oneshot_action(a: &libc::sigaction) -> libc::sigaction {
    let mut act = *a;
    act.sa_sigaction = HANDLER as sighandler_t;
    act.sa_flags = (a.sa_flags & !libc::SA_RESETHAND & !SA_RESTORER) | libc::SA_SIGINFO;
    act
}

/// What the app is told while our handler is in: its one-shot action
/// until our handler took it, the default the kernel would have reset it
/// to after that. With [`LOCK`] held.
///
/// # Safety
/// LOCK is held.
unsafe fn settled_view(slot: &Slot) -> libc::sigaction {
    // SAFETY: LOCK is held (the caller's contract).
    let view = unsafe { &mut *slot.view.get() };
    if view.sa_sigaction != SIG_DFL && slot.oneshot.load(Ordering::Acquire) == 0 {
        // The kernel resets only the handler of a one-shot action.
        view.sa_sigaction = SIG_DFL;
        view.sa_flags &= !libc::SA_SIGINFO;
    }
    *view
}

/// `sigaction` for a managed signal, with [`LOCK`] held.
///
/// # Safety
/// `act` and `oldact` are null or valid, as for `sigaction`.
unsafe fn managed_sigaction(
    slot: &Slot,
    sig: c_int,
    act: *const libc::sigaction,
    oldact: *mut libc::sigaction,
) -> c_int {
    // SAFETY: `act` is null or valid (the caller's contract).
    let wanted = unsafe { act.as_ref() }.copied();
    let stands_in = |a: &libc::sigaction| a.sa_sigaction == SIG_DFL || is_oneshot(a);
    if slot.ours.load(Ordering::Relaxed) {
        // SAFETY: LOCK is held (the caller's contract).
        let told = unsafe { settled_view(slot) };
        // SAFETY: as above.
        let view = unsafe { &mut *slot.view.get() };
        match wanted {
            Some(a) if stands_in(&a) => {
                let r = stand_in(slot, sig, &a, std::ptr::null_mut());
                if r != 0 {
                    return r;
                }
                *view = view_of(&a);
            }
            Some(_) => {
                // The app's own handler (or SIG_IGN) replaces ours.
                let r = real_sigaction(sig, act, std::ptr::null_mut());
                if r != 0 {
                    return r;
                }
                slot.oneshot.store(0, Ordering::Release);
                slot.ours.store(false, Ordering::Relaxed);
            }
            None => {}
        }
        if !oldact.is_null() {
            // SAFETY: non-null, valid by the caller's contract.
            unsafe { copy_out(&told, oldact) };
        }
        return 0;
    }
    let Some(a) = wanted.filter(stands_in) else {
        return real_sigaction(sig, act, oldact);
    };
    // Back to the default, or a one-shot handler: ours stands in.
    // SAFETY: all-zero is a valid sigaction, filled by libc.
    let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
    if stand_in(slot, sig, &a, &mut previous) != 0 {
        return real_sigaction(sig, act, oldact);
    }
    // SAFETY: LOCK is held (the caller's contract).
    unsafe { *slot.view.get() = view_of(&a) };
    slot.ours.store(true, Ordering::Relaxed);
    if !oldact.is_null() {
        // SAFETY: non-null, valid by the caller's contract.
        unsafe { copy_out(&previous, oldact) };
    }
    0
}

/// Puts our handler in the kernel for the app's `a` (`SIG_DFL`, or a
/// one-shot handler), `old` as for `sigaction`. The one-shot handler is
/// noted before the kernel gets our action, so that a signal in between
/// finds what the app asked for; put back if the kernel refuses.
fn stand_in(slot: &Slot, sig: c_int, a: &libc::sigaction, old: *mut libc::sigaction) -> c_int {
    let (kernel, handler) = if is_oneshot(a) {
        (oneshot_action(a), a.sa_sigaction)
    } else {
        (our_action(), 0)
    };
    let before = slot.oneshot.load(Ordering::Acquire);
    let before_siginfo = slot.oneshot_siginfo.load(Ordering::Relaxed);
    slot.oneshot_siginfo
        .store(a.sa_flags & libc::SA_SIGINFO != 0, Ordering::Relaxed);
    slot.oneshot.store(handler, Ordering::Release);
    let r = real_sigaction(sig, &kernel, old);
    if r != 0 {
        slot.oneshot_siginfo
            .store(before_siginfo, Ordering::Relaxed);
        slot.oneshot.store(before, Ordering::Release);
    }
    r
}

/// # Safety
/// Called by the dynamic linker in place of libc's `sigaction`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sigaction(
    sig: c_int,
    act: *const libc::sigaction,
    oldact: *mut libc::sigaction,
) -> c_int {
    match slot_of(sig) {
        // SAFETY: the app's own pointers, as valid as for libc.
        Some(slot) => locked(|| unsafe { managed_sigaction(slot, sig, act, oldact) }),
        None => real_sigaction(sig, act, oldact),
    }
}

/// The `signal` family for a managed signal: `SIG_DFL` becomes the action
/// glibc would have set (`flags`, and `sig` itself in the mask when
/// `mask_self`); any other handler goes to libc's own function.
fn signal_like(
    real_fn: &Real<SignalFn>,
    sig: c_int,
    handler: sighandler_t,
    flags: c_int,
    mask_self: bool,
) -> sighandler_t {
    let Some(slot) = slot_of(sig) else {
        return call_real!(real_fn, SIG_ERR, sig, handler);
    };
    locked(|| {
        if handler == SIG_DFL || (flags & libc::SA_RESETHAND != 0 && handler != libc::SIG_IGN) {
            // SAFETY: all-zero is a valid sigaction.
            let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
            act.sa_sigaction = handler;
            act.sa_flags = flags;
            if mask_self {
                // SAFETY: a valid sigset_t.
                unsafe { libc::sigaddset(&mut act.sa_mask, sig) };
            }
            // SAFETY: as above.
            let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: two valid local actions; LOCK is held.
            return match unsafe { managed_sigaction(slot, sig, &act, &mut old) } {
                0 => old.sa_sigaction,
                _ => SIG_ERR,
            };
        }
        // SAFETY: LOCK is held.
        let told = slot
            .ours
            .load(Ordering::Relaxed)
            .then(|| unsafe { settled_view(slot) });
        let previous = call_real!(real_fn, SIG_ERR, sig, handler);
        if previous != SIG_ERR && slot.ours.swap(false, Ordering::Relaxed) {
            slot.oneshot.store(0, Ordering::Release);
            return told.map_or(previous, |t| t.sa_sigaction);
        }
        previous
    })
}

/// # Safety
/// Called by the dynamic linker in place of libc's `signal`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    signal_like(&real::SIGNAL, sig, handler, libc::SA_RESTART, true)
}

/// # Safety
/// Called by the dynamic linker in place of libc's `bsd_signal`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn bsd_signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    signal_like(&real::BSD_SIGNAL, sig, handler, libc::SA_RESTART, true)
}

/// System V semantics: one-shot, not masked during the handler.
const SYSV_FLAGS: c_int = libc::SA_RESETHAND | libc::SA_NODEFER;

/// # Safety
/// Called by the dynamic linker in place of libc's `sysv_signal`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn sysv_signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    signal_like(&real::SYSV_SIGNAL, sig, handler, SYSV_FLAGS, false)
}

/// # Safety
/// Called by the dynamic linker in place of libc's `__sysv_signal`.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __sysv_signal(sig: c_int, handler: sighandler_t) -> sighandler_t {
    signal_like(&real::SYSV_SIGNAL_INTERNAL, sig, handler, SYSV_FLAGS, false)
}

/// Called by the constructor when spans have a destination: our handler
/// goes in place of every managed signal whose disposition is `SIG_DFL`.
pub fn install() {
    locked(|| {
        for (slot, &sig) in SLOTS.iter().zip(MANAGED.iter()) {
            // SAFETY: all-zero is a valid sigaction, filled by libc.
            let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
            if real_sigaction(sig, std::ptr::null(), &mut current) != 0
                || current.sa_sigaction != SIG_DFL
            {
                continue; // ignored, or the parent's handler: not ours to touch
            }
            let ours = our_action();
            if real_sigaction(sig, &ours, std::ptr::null_mut()) != 0 {
                continue;
            }
            // SAFETY: as above.
            let mut readback: libc::sigaction = unsafe { std::mem::zeroed() };
            if real_sigaction(sig, std::ptr::null(), &mut readback) == 0 {
                ADDED_FLAGS.store(readback.sa_flags & !ours.sa_flags, Ordering::Relaxed);
                RESTORER.store(
                    readback.sa_restorer.map_or(0, |f| f as usize),
                    Ordering::Relaxed,
                );
            }
            // SAFETY: LOCK is held.
            unsafe { *slot.view.get() = current };
            slot.ours.store(true, Ordering::Relaxed);
        }
        ENABLED.store(true, Ordering::Release);
    });
}

type Handler = extern "C" fn(c_int, *mut libc::siginfo_t, *mut libc::c_void);
/// Our handler, as the kernel gets it.
const HANDLER: Handler = on_managed_signal;

/// Our handler. Async-signal-safe: it only reads atomics, waits on a futex
/// with a deadline and makes plain system calls. Calls the app's one-shot
/// handler when one waits (and returns); otherwise never returns in
/// practice: the re-raised signal kills the process.
extern "C" fn on_managed_signal(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    if let Some(slot) = MANAGED.iter().position(|&s| s == sig).map(|i| &SLOTS[i]) {
        let app = slot.oneshot.swap(0, Ordering::AcqRel);
        if app != 0 && app != SIG_DFL && app != libc::SIG_IGN {
            if slot.oneshot_siginfo.load(Ordering::Relaxed) {
                // SAFETY: the app set this address as an SA_SIGINFO
                // handler; it gets the kernel's own arguments.
                let f: Handler = unsafe { std::mem::transmute::<usize, Handler>(app) };
                f(sig, info, ctx);
            } else {
                // SAFETY: the app set this address as a plain handler.
                let f: extern "C" fn(c_int) =
                    unsafe { std::mem::transmute::<usize, extern "C" fn(c_int)>(app) };
                f(sig);
            }
            return;
        }
    }
    on_fatal_signal(sig);
}

/// Our stand-in for the default action: flush, then die of `sig`.
fn on_fatal_signal(sig: c_int) {
    // SAFETY: __errno_location is valid for this thread.
    let saved_errno = unsafe { *libc::__errno_location() };
    if lumigo_core::guard::is_internal() {
        // This thread was inside our code, perhaps holding a lock the flush
        // needs: the signal comes again when it leaves (guard::defer_signal).
        lumigo_core::guard::defer_signal(sig);
        // SAFETY: restoring this thread's errno.
        unsafe { *libc::__errno_location() = saved_errno };
        return;
    }
    crate::runtime::flush_for_signal();
    if let Some(i) = MANAGED.iter().position(|&s| s == sig) {
        SLOTS[i].ours.store(false, Ordering::Relaxed);
    }
    // SAFETY: plain system calls with valid local arguments; all are
    // async-signal-safe.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = SIG_DFL;
        real_sigaction(sig, &default, std::ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
        *libc::__errno_location() = saved_errno;
    }
}
