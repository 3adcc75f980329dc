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
    }
}

/// Marks the current thread as ours for good (the export worker).
pub fn mark_thread_internal() {
    let _ = INTERNAL.try_with(|c| c.set(true));
}

#[cfg(test)]
mod tests {
    use super::*;

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
