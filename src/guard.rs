//! The reentrancy guard: marks a thread as running lumigo-run's own code.
//!
//! While a thread is inside our code (a hook's tracing logic, the export
//! worker, resource detection) every libc call it makes must go straight to
//! the real function, or we would trace ourselves and could recurse. The flag
//! is a `const`-initialised thread-local `Cell<bool>` with no destructor, so
//! it can be read at any time, including during thread teardown and in
//! `atexit` handlers, without ever panicking.

use std::cell::Cell;

thread_local! {
    static INTERNAL: Cell<bool> = const { Cell::new(false) };
    /// A fatal signal that arrived while this thread was inside our code
    /// (0: none): raised again when the thread leaves it. See [`defer_signal`].
    static DEFERRED_SIGNAL: Cell<i32> = const { Cell::new(0) };
}

/// Called by the preload's fatal-signal handler when the signal interrupted
/// this thread inside our code: that code may hold a lock (a connection's,
/// the export queue's) that the flush the handler waits for needs, so the
/// handler returns at once and the signal is raised again, on this thread,
/// the moment it leaves our code (microseconds later; our code never blocks
/// on I/O of the app's). Async-signal-safe: a thread-local store.
pub fn defer_signal(sig: i32) {
    let _ = DEFERRED_SIGNAL.try_with(|c| c.set(sig));
}

/// True while the current thread runs lumigo-run's own code.
#[inline]
pub fn is_internal() -> bool {
    // `try_with` cannot fail for a const-initialised value without a
    // destructor, but we still fall back to "internal" (pass through) if it did.
    INTERNAL.try_with(|c| c.get()).unwrap_or(true)
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
        let was = INTERNAL.try_with(|c| c.replace(true)).unwrap_or(true);
        Internal { was }
    }
}

impl Drop for Internal {
    #[inline]
    fn drop(&mut self) {
        let was = self.was;
        let _ = INTERNAL.try_with(|c| c.set(was));
        if !was {
            let sig = DEFERRED_SIGNAL.try_with(|c| c.replace(0)).unwrap_or(0);
            if sig != 0 {
                // SAFETY: raise has no preconditions; the handler it runs is
                // ours, now outside our code.
                unsafe {
                    libc::raise(sig);
                }
            }
        }
    }
}

/// Marks the current thread as ours for good (the export worker).
pub fn mark_thread_internal() {
    let _ = INTERNAL.try_with(|c| c.set(true));
}

#[cfg(test)]
mod tests {
    use super::*;

    static DELIVERED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    extern "C" fn count(_: libc::c_int) {
        DELIVERED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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
