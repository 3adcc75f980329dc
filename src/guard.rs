//! The reentrancy guard: marks a thread as running lumigo-run's own code.
//!
//! While a thread is inside our code (a hook's tracing logic, the export
//! worker, resource detection) every libc call it makes must go straight to
//! the real function, or we would trace ourselves and could recurse. The flag
//! is a `const`-initialised thread-local `Cell<bool>` with no destructor, so
//! it can be read at any time, including during thread teardown and in
//! `atexit` handlers, without ever panicking.

use std::cell::Cell;

/// This thread's flags, in one thread-local so that a hook reaches both
/// with one lookup (in a preloaded library each lookup is a call into the
/// dynamic linker).
struct Flags {
    /// The thread runs our code.
    internal: Cell<bool>,
    /// A fatal signal that arrived while this thread was inside our code
    /// (0: none): raised again when the thread leaves it. See
    /// [`defer_signal`].
    deferred: Cell<i32>,
    /// The fd whose bytes the thread's hook is handling (-1: none): what
    /// `hint` keys a request in flight by. Set with the flag, in the same
    /// lookup, and cleared with it.
    on_fd: Cell<i32>,
}

thread_local! {
    static FLAGS: Flags = const {
        Flags {
            internal: Cell::new(false),
            deferred: Cell::new(0),
            on_fd: Cell::new(-1),
        }
    };
}

/// Called by the preload's fatal-signal handler when the signal interrupted
/// this thread inside our code: that code may hold a lock (a connection's,
/// the export queue's) that the flush the handler waits for needs, so the
/// handler returns at once and the signal is raised again, on this thread,
/// the moment it leaves our code (microseconds later; our code never blocks
/// on I/O of the app's). Async-signal-safe: a thread-local store.
pub fn defer_signal(sig: i32) {
    let _ = FLAGS.try_with(|f| f.deferred.set(sig));
}

/// True while the current thread runs lumigo-run's own code.
#[inline]
pub fn is_internal() -> bool {
    // `try_with` cannot fail for a const-initialised value without a
    // destructor, but we still fall back to "internal" (pass through) if it did.
    FLAGS.try_with(|f| f.internal.get()).unwrap_or(true)
}

/// Runs `f` as our code, unless the thread already runs ours (`None`):
/// what [`is_internal`] and an [`Internal`] guard do together, with one
/// thread-local lookup. On leaving (`f` returned or unwound), a signal
/// deferred meanwhile is raised.
#[inline]
pub fn run_internal<R>(f: impl FnOnce() -> R) -> Option<R> {
    run_internal_on(-1, f)
}

/// [`run_internal`] for a hook handling the bytes of `fd`: [`on_fd`] is
/// `fd` until `f` returns.
#[inline]
pub fn run_internal_on<R>(fd: i32, f: impl FnOnce() -> R) -> Option<R> {
    FLAGS
        .try_with(|flags| {
            if flags.internal.replace(true) {
                return None;
            }
            flags.on_fd.set(fd);
            let _leave = Leave(flags);
            Some(f())
        })
        .ok()
        .flatten()
}

/// The fd whose bytes the calling thread's hook is handling, or -1.
pub fn on_fd() -> i32 {
    FLAGS.try_with(|f| f.on_fd.get()).unwrap_or(-1)
}

/// Sets [`on_fd`]; returns the value it replaces (tests of the hints).
#[cfg(test)]
pub(crate) fn set_on_fd(fd: i32) -> i32 {
    FLAGS.try_with(|f| f.on_fd.replace(fd)).unwrap_or(-1)
}

/// Marks the thread as no longer ours when dropped (see [`run_internal`]).
struct Leave<'a>(&'a Flags);

impl Drop for Leave<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.internal.set(false);
        self.0.on_fd.set(-1);
        raise_deferred(self.0);
    }
}

/// Raises a signal deferred while the thread was inside our code.
#[inline]
fn raise_deferred(flags: &Flags) {
    let sig = flags.deferred.replace(0);
    if sig != 0 {
        // SAFETY: raise has no preconditions; the handler it runs is
        // ours, now outside our code.
        unsafe {
            libc::raise(sig);
        }
    }
}

/// Marks the current thread as ours for the lifetime of the returned value.
/// Nested guards are fine: only the outermost one clears the flag.
#[must_use]
pub struct Internal {
    was: bool,
}

impl Internal {
    #[inline]
    pub fn enter() -> Internal {
        let was = FLAGS.try_with(|f| f.internal.replace(true)).unwrap_or(true);
        Internal { was }
    }
}

impl Drop for Internal {
    #[inline]
    fn drop(&mut self) {
        let was = self.was;
        let _ = FLAGS.try_with(|f| {
            f.internal.set(was);
            if !was {
                raise_deferred(f);
            }
        });
    }
}

/// Marks the current thread as ours for good (the export worker).
pub fn mark_thread_internal() {
    let _ = FLAGS.try_with(|f| f.internal.set(true));
}

#[cfg(test)]
mod tests {
    use super::*;

    static DELIVERED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    extern "C" fn count(_: libc::c_int) {
        DELIVERED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    #[test]
    fn a_hooks_fd_is_known_inside_its_run_and_cleared_after() {
        assert_eq!(on_fd(), -1);
        let inside = run_internal_on(17, || {
            // A nested run (our own code calling a hooked function) is
            // skipped and leaves the fd as it is.
            assert_eq!(run_internal_on(18, on_fd), None);
            on_fd()
        });
        assert_eq!(inside, Some(17));
        assert_eq!(on_fd(), -1);
    }

    #[test]
    fn a_deferred_signal_is_raised_when_the_outermost_guard_ends() {
        // SAFETY: installs a plain counting handler for SIGUSR2, which
        // nothing else in this test binary uses.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = count as extern "C" fn(libc::c_int) as libc::sighandler_t;
            assert_eq!(
                libc::sigaction(libc::SIGUSR2, &act, std::ptr::null_mut()),
                0
            );
        }
        let before = DELIVERED.load(std::sync::atomic::Ordering::SeqCst);
        {
            let _outer = Internal::enter();
            {
                let _inner = Internal::enter();
                defer_signal(libc::SIGUSR2);
            }
            let now = DELIVERED.load(std::sync::atomic::Ordering::SeqCst);
            assert_eq!(now, before, "not while still inside our code");
        }
        let after = DELIVERED.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(after, before + 1, "raised once, on leaving");
        {
            let _again = Internal::enter();
        }
        let later = DELIVERED.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(later, before + 1, "and only once");
    }

    #[test]
    fn run_internal_runs_once_per_entry_and_raises_a_deferred_signal_on_leaving() {
        extern "C" fn count_usr1(_: libc::c_int) {
            DELIVERED_USR1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        // SAFETY: a plain counting handler for SIGUSR1, which nothing else
        // in this test binary uses.
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = count_usr1 as extern "C" fn(libc::c_int) as libc::sighandler_t;
            assert_eq!(
                libc::sigaction(libc::SIGUSR1, &act, std::ptr::null_mut()),
                0
            );
        }
        assert!(!is_internal());
        let got = run_internal(|| {
            assert!(is_internal());
            assert_eq!(run_internal(|| 1), None, "not entered twice");
            defer_signal(libc::SIGUSR1);
            assert_eq!(DELIVERED_USR1.load(std::sync::atomic::Ordering::SeqCst), 0);
            7
        });
        assert_eq!(got, Some(7));
        assert!(!is_internal());
        assert_eq!(DELIVERED_USR1.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Under a guard, it runs nothing.
        let _g = Internal::enter();
        assert_eq!(run_internal(|| 1), None);
    }

    static DELIVERED_USR1: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    #[test]
    fn nested_guards_restore_outer_state() {
        assert!(!is_internal());
        {
            let _a = Internal::enter();
            assert!(is_internal());
            {
                let _b = Internal::enter();
                assert!(is_internal());
            }
            assert!(is_internal(), "inner guard must not clear the outer one");
        }
        assert!(!is_internal());
    }
}
