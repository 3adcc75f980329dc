//! The hot-path table: one byte per file descriptor, "is this a tracked
//! connection, and on which side?".
//!
//! Every hooked I/O call looks here first; for any fd that is not a tracked
//! TCP connection this one relaxed load is all the work we do. Descriptors at
//! or above [`MAX_FDS`] are never tracked. The array lives in .bss: untouched
//! pages cost no memory.

use std::sync::atomic::{AtomicU8, Ordering};

/// Highest tracked fd + 1.
pub const MAX_FDS: usize = 1 << 18;

static TRACKED: [AtomicU8; MAX_FDS] = [const { AtomicU8::new(0) }; MAX_FDS];

/// What the table holds for one fd.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mark {
    Untracked = 0,
    /// An accepted connection: writes never carry inserted bytes.
    Server = 1,
    /// A connected one: outbound request heads get a `traceparent`.
    Client = 2,
}

#[inline(always)]
fn get(fd: libc::c_int) -> u8 {
    match usize::try_from(fd) {
        Ok(i) if i < MAX_FDS => TRACKED[i].load(Ordering::Relaxed),
        _ => 0,
    }
}

#[inline(always)]
pub fn is_tracked(fd: libc::c_int) -> bool {
    get(fd) != Mark::Untracked as u8
}

/// A tracked client connection (the only kind writes may insert into).
#[inline(always)]
pub fn is_client(fd: libc::c_int) -> bool {
    get(fd) == Mark::Client as u8
}

/// Marks `fd`; returns false if the fd is out of range.
pub fn set(fd: libc::c_int, mark: Mark) -> bool {
    match usize::try_from(fd) {
        Ok(i) if i < MAX_FDS => {
            TRACKED[i].store(mark as u8, Ordering::Relaxed);
            true
        }
        _ => false,
    }
}
