//! The hot-path table: one byte per file descriptor, "is this a tracked
//! connection?".
//!
//! Every hooked I/O call looks here first; for any fd that is not a tracked
//! TCP connection this one relaxed load is all the work we do. Descriptors at
//! or above [`MAX_FDS`] are never tracked. The array lives in .bss: untouched
//! pages cost no memory.

use std::sync::atomic::{AtomicU8, Ordering};

/// Highest tracked fd + 1.
pub const MAX_FDS: usize = 1 << 18;

static TRACKED: [AtomicU8; MAX_FDS] = [const { AtomicU8::new(0) }; MAX_FDS];

#[inline(always)]
pub fn is_tracked(fd: libc::c_int) -> bool {
    match usize::try_from(fd) {
        Ok(i) if i < MAX_FDS => TRACKED[i].load(Ordering::Relaxed) != 0,
        _ => false,
    }
}

/// Marks `fd` tracked or not; returns false if the fd is out of range.
pub fn set(fd: libc::c_int, tracked: bool) -> bool {
    match usize::try_from(fd) {
        Ok(i) if i < MAX_FDS => {
            TRACKED[i].store(u8::from(tracked), Ordering::Relaxed);
            true
        }
        _ => false,
    }
}
