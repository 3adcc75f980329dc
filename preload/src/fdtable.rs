//! The hot-path table: one byte per file descriptor, "is this a tracked
//! connection, and on which side? Is it one of ours?".
//!
//! Every hooked I/O call looks here first; for any fd with no mark this one
//! relaxed load is all the work we do. Descriptors at or above [`MAX_FDS`]
//! are never marked. The array lives in .bss: untouched pages cost no
//! memory.
//!
//! Besides the connection mark (two bits), a byte says whether the fd is
//! one of our own (the span dump, an export socket: [`OURS`]) or was ours
//! until the app closed or replaced it ([`LOST`]): that number is the app's
//! now, and our threads must never touch it again (see `custody.rs`).

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// Highest tracked fd + 1.
pub const MAX_FDS: usize = 1 << 18;

static TRACKED: [AtomicU8; MAX_FDS] = [const { AtomicU8::new(0) }; MAX_FDS];

/// Every marked fd is below this (so a `close_range(3, ~0)` scans only
/// the part of the table that was ever used).
static HIGH_WATER: AtomicUsize = AtomicUsize::new(0);

/// One past the highest fd ever marked.
pub fn high_water() -> usize {
    HIGH_WATER.load(Ordering::Acquire)
}

/// The connection bits of a byte.
const CONN: u8 = 0b0011;
/// A descriptor of ours, opened by our own code.
pub const OURS: u8 = 0b0100;
/// Was ours; the app closed or replaced it.
pub const LOST: u8 = 0b1000;
/// With `OURS` or `LOST`: a socket (of the OTLP transport).
pub const SOCKET: u8 = 0b1_0000;

/// What the table holds for one fd.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mark {
    Untracked = 0,
    /// An accepted connection: writes never carry inserted bytes.
    Server = 1,
    /// A connected one: outbound request heads get a `traceparent`.
    Client = 2,
    /// A connected one whose protocol takes nothing inserted (a database
    /// or cache): its writes skip the insertion path.
    Plain = 3,
}

#[inline(always)]
fn slot(fd: libc::c_int) -> Option<&'static AtomicU8> {
    match usize::try_from(fd) {
        Ok(i) if i < MAX_FDS => Some(&TRACKED[i]),
        _ => None,
    }
}

/// The whole byte for `fd` (0: nothing to do).
#[inline(always)]
pub fn get(fd: libc::c_int) -> u8 {
    match usize::try_from(fd) {
        Ok(i) if i < MAX_FDS => TRACKED[i].load(Ordering::Relaxed),
        _ => 0,
    }
}

/// Anything at all to look at for `fd` (the shims' fast-path test).
#[inline(always)]
pub fn is_marked(fd: libc::c_int) -> bool {
    get(fd) != 0
}

/// The shims' fast-path test: false only for a descriptor in the table
/// with no mark. One unsigned compare covers both ends: a negative number
/// or one at or above [`MAX_FDS`] (the event-loop hint's private number
/// among them) is "look", and takes the out-of-line path, where it is
/// handled (or found to be nothing of ours) and passed on unchanged.
#[inline(always)]
pub fn needs_look(fd: libc::c_int) -> bool {
    match TRACKED.get(fd as u32 as usize) {
        Some(b) => b.load(Ordering::Relaxed) != 0,
        None => true,
    }
}

/// A tracked connection.
#[inline(always)]
pub fn is_tracked(fd: libc::c_int) -> bool {
    get(fd) & CONN != 0
}

/// A tracked client connection (the only kind writes may insert into).
#[inline(always)]
pub fn is_client(fd: libc::c_int) -> bool {
    get(fd) & CONN == Mark::Client as u8
}

/// A tracked connection the app accepted.
#[inline(always)]
pub fn is_server(fd: libc::c_int) -> bool {
    get(fd) & CONN == Mark::Server as u8
}

/// Was ours, and the app closed or replaced it.
#[inline(always)]
pub fn is_lost(fd: libc::c_int) -> bool {
    get(fd) & LOST != 0
}

/// Updates the byte of `fd` with `f`; false if the fd is out of range.
fn update(fd: libc::c_int, f: impl FnMut(u8) -> Option<u8>) -> bool {
    let Some(s) = slot(fd) else { return false };
    // In range, so non-negative and below MAX_FDS.
    let end = fd as usize + 1;
    if HIGH_WATER.load(Ordering::Relaxed) < end {
        HIGH_WATER.fetch_max(end, Ordering::AcqRel);
    }
    s.fetch_update(Ordering::AcqRel, Ordering::Acquire, f)
        .is_ok()
}

/// Sets the connection mark of `fd` (its other bits stay); returns false
/// if the fd is out of range.
pub fn set(fd: libc::c_int, mark: Mark) -> bool {
    update(fd, |b| Some((b & !CONN) | mark as u8))
}

/// Registers a fresh descriptor of ours (`extra`: [`SOCKET`] or 0).
/// Refused (false) for a number whose `LOST` mark says some code of ours
/// may still hold it.
pub fn mark_ours(fd: libc::c_int, extra: u8) -> bool {
    update(fd, |b| {
        if b & LOST != 0 {
            None
        } else {
            Some(OURS | extra)
        }
    })
}

/// The app closes or replaces `fd`: if it was ours, it becomes lost.
/// Returns the byte as it was.
pub fn lose(fd: libc::c_int) -> u8 {
    let mut was = 0;
    update(fd, |b| {
        was = b;
        if b & OURS != 0 {
            Some((b & !OURS) | LOST)
        } else {
            None
        }
    });
    was
}

/// Our code closes its own `fd`.
pub fn disown(fd: libc::c_int) {
    update(fd, |b| Some(b & !(OURS | SOCKET)));
}

/// Our code lets go of a lost number, without touching it.
pub fn release(fd: libc::c_int) {
    update(fd, |b| Some(b & !(LOST | SOCKET)));
}

#[cfg(test)]
mod tests {
    use super::*;

    // The table is the process's: each test uses its own descriptor
    // numbers (never opened: only the bytes are touched).

    #[test]
    fn connection_marks() {
        let fd = 100_001;
        assert_eq!(get(fd), 0);
        assert!(!is_marked(fd) && !is_tracked(fd) && !is_client(fd));
        assert!(set(fd, Mark::Client));
        assert!(is_marked(fd) && is_tracked(fd) && is_client(fd));
        assert!(!is_server(fd));
        assert!(set(fd, Mark::Plain));
        assert!(is_tracked(fd) && !is_client(fd) && !is_server(fd));
        assert!(set(fd, Mark::Server));
        assert!(is_tracked(fd) && !is_client(fd) && is_server(fd));
        assert!(set(fd, Mark::Untracked));
        assert_eq!(get(fd), 0);
        assert!(high_water() > fd as usize);
    }

    #[test]
    fn the_fast_path_looks_at_marked_and_out_of_range_descriptors_only() {
        let fd = 100_005;
        assert!(!needs_look(fd) && !needs_look(0));
        assert!(!needs_look(MAX_FDS as libc::c_int - 1));
        assert!(set(fd, Mark::Server));
        assert!(needs_look(fd));
        assert!(set(fd, Mark::Untracked));
        assert!(!needs_look(fd));
        assert!(mark_ours(fd, SOCKET) && needs_look(fd));
        for out in [
            -1,
            libc::c_int::MIN,
            MAX_FDS as libc::c_int,
            libc::c_int::MAX,
        ] {
            assert!(needs_look(out), "{out}");
            assert!(!is_marked(out), "{out}");
        }
    }

    #[test]
    fn out_of_range_descriptors_are_never_marked() {
        for fd in [
            -1,
            libc::c_int::MIN,
            MAX_FDS as libc::c_int,
            libc::c_int::MAX,
        ] {
            assert!(!set(fd, Mark::Client), "{fd}");
            assert!(!mark_ours(fd, SOCKET));
            assert_eq!(lose(fd), 0);
            assert_eq!(get(fd), 0);
            assert!(!is_marked(fd) && !is_lost(fd));
        }
        // The last one in range is.
        let last = MAX_FDS as libc::c_int - 1;
        assert!(set(last, Mark::Server));
        assert!(is_tracked(last));
        assert_eq!(high_water(), MAX_FDS);
        set(last, Mark::Untracked);
    }

    #[test]
    fn ours_lost_and_released() {
        let fd = 100_002;
        assert!(mark_ours(fd, SOCKET));
        assert_eq!(get(fd), OURS | SOCKET);
        // Ours is not a connection: the shims' fast path still looks.
        assert!(is_marked(fd) && !is_tracked(fd) && !is_lost(fd));
        // The app closes it: lost, and the byte as it was is returned.
        assert_eq!(lose(fd), OURS | SOCKET);
        assert!(is_lost(fd));
        assert_eq!(get(fd), LOST | SOCKET);
        // A lost number is not ours again until our code lets go of it.
        assert!(!mark_ours(fd, 0));
        release(fd);
        assert_eq!(get(fd), 0);
        assert!(mark_ours(fd, 0));
        assert_eq!(get(fd), OURS);
        disown(fd);
        assert_eq!(get(fd), 0);
    }

    #[test]
    fn losing_what_was_never_ours_changes_nothing() {
        let fd = 100_003;
        assert_eq!(lose(fd), 0);
        assert_eq!(get(fd), 0);
        set(fd, Mark::Client);
        assert_eq!(lose(fd), Mark::Client as u8);
        assert!(is_client(fd) && !is_lost(fd));
        set(fd, Mark::Untracked);
    }

    #[test]
    fn a_connection_mark_keeps_the_ownership_bits() {
        let fd = 100_004;
        assert!(mark_ours(fd, 0));
        // The app reuses a number our code lost: its connection mark and
        // our LOST bit live side by side.
        lose(fd);
        set(fd, Mark::Client);
        assert!(is_client(fd) && is_lost(fd));
        set(fd, Mark::Untracked);
        assert!(is_lost(fd) && !is_tracked(fd));
        release(fd);
        assert_eq!(get(fd), 0);
    }
}
