//! The `extern "C"` shims, grouped by domain. Each one calls the real
//! function first, exactly as the app asked, and returns its result
//! untouched; tracing work happens afterwards inside
//! [`crate::runtime::traced`] and only for fds the table says are tracked.

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub mod dl;
pub mod dns;
pub mod exec;
pub mod hint;
pub mod inject;
pub mod io;
pub mod libssl;
pub mod privilege;
pub mod signal;
pub mod socket;
pub mod tls;

/// Calls the real function, or fails with ENOSYS if the C library lacks it
/// (which cannot happen for a symbol the app itself linked against).
macro_rules! call_real {
    ($slot:expr, $fail:expr, $($arg:expr),* $(,)?) => {
        match $slot.get() {
            // SAFETY: forwarding the app's own arguments, unchanged, to the
            // C library function it meant to call.
            Some(f) => unsafe { f($($arg),*) },
            None => {
                // SAFETY: __errno_location is always valid for this thread.
                unsafe { *libc::__errno_location() = libc::ENOSYS };
                $fail
            }
        }
    };
}
pub(crate) use call_real;
