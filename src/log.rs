//! Diagnostics on stderr, prefixed `#LUMIGO#`, only when `LUMIGO_DEBUG=true`.
//!
//! Inside a traced process the library prints nothing unless asked to. Lines
//! are written with a single `write(2)` each so that they do not interleave
//! with the app's own output more than a line at a time.

use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

#[inline]
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Writes one diagnostic line if debug output is on.
pub fn debug_line(args: std::fmt::Arguments<'_>) {
    if !debug_enabled() {
        return;
    }
    let _guard = crate::guard::Internal::enter();
    let line = format!("#LUMIGO# [{}] {}\n", std::process::id(), args);
    // SAFETY: writing an owned, initialised buffer to fd 2; the result is
    // deliberately ignored (diagnostics must never affect the app).
    unsafe {
        libc::write(2, line.as_ptr().cast(), line.len());
    }
}

/// `lumigo_debug!("fmt", args…)`: a `#LUMIGO#` line on stderr under `LUMIGO_DEBUG`.
#[macro_export]
macro_rules! lumigo_debug {
    ($($arg:tt)*) => {
        if $crate::log::debug_enabled() {
            $crate::log::debug_line(format_args!($($arg)*));
        }
    };
}
