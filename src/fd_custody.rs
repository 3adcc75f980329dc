//! Our own file descriptors among the app's (the span dump file, the
//! export thread's sockets).
//!
//! They live in the app's descriptor table, where the app may close or
//! replace them (`closerange`, a daemon's close-everything loop, `dup2`)
//! and then reuse the number for a file or socket of its own. The preload
//! library keeps them out of the way (high numbers, close-on-exec), notices
//! when the app closes or replaces one, and from then on calls the number
//! *lost*: none of our code may touch it again. This module is the core's
//! side of that contract; the preload installs the real functions with
//! [`install`]. Without them (unit tests, the launcher) nothing is moved,
//! nothing is ever lost, and there are no revocations.

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, OnceLock};

/// The preload library's side.
#[derive(Clone, Copy)]
pub struct Custody {
    /// Takes a descriptor we just opened; returns it (perhaps under another,
    /// higher number) registered as ours; an error closed it.
    pub adopt: fn(OwnedFd) -> std::io::Result<OwnedFd>,
    /// True once the app closed or replaced this descriptor of ours.
    pub is_lost: fn(RawFd) -> bool,
    /// We forget a lost number for good (never closing it: it is the app's).
    pub release_lost: fn(RawFd),
    /// How many of our descriptors the app has closed or replaced so far.
    pub revocations: fn() -> u64,
}

static CUSTODY: OnceLock<Custody> = OnceLock::new();

/// Slots given to [`adopt_into`] before the custody was installed: each
/// holds a descriptor not adopted yet.
static EARLY: Mutex<Vec<&'static AtomicI32>> = Mutex::new(Vec::new());

/// Installs the preload's functions; the first call wins. Descriptors
/// [`adopt_into`] took before are adopted now, their slots updated (the
/// preload's constructor installs the custody before the program runs, so
/// nothing uses those slots meanwhile).
pub fn install(custody: Custody) {
    let _ = CUSTODY.set(custody);
    let Some(c) = CUSTODY.get() else { return };
    let early = std::mem::take(&mut *EARLY.lock().unwrap_or_else(|e| e.into_inner()));
    for slot in early {
        let fd = slot.swap(-1, Ordering::AcqRel);
        if fd < 0 {
            continue;
        }
        // SAFETY: the descriptor `adopt_into` stored, ours alone.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if let Ok(adopted) = (c.adopt)(fd) {
            slot.store(adopted.into_raw_fd(), Ordering::Release);
        }
    }
}

/// Adopts `fd` (see [`Custody::adopt`]) and stores its number in `slot`,
/// which must hold -1 (else `fd` is closed). Before the custody is
/// installed (while the preload's constructor reads the configuration) the
/// number is stored as it is and adopted by [`install`], which may move it.
pub fn adopt_into(fd: OwnedFd, slot: &'static AtomicI32) -> std::io::Result<()> {
    let mut early = EARLY.lock().unwrap_or_else(|e| e.into_inner());
    let (fd, waiting) = match CUSTODY.get() {
        Some(c) => ((c.adopt)(fd)?, false),
        None => (fd, true),
    };
    let raw = fd.into_raw_fd();
    if slot
        .compare_exchange(-1, raw, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // SAFETY: `raw` is ours alone, not stored anywhere.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
        return Ok(());
    }
    if waiting {
        early.push(slot);
    }
    Ok(())
}

/// Registers a descriptor we just opened (see [`Custody::adopt`]).
pub fn adopt(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    match CUSTODY.get() {
        Some(c) => (c.adopt)(fd),
        None => Ok(fd),
    }
}

/// See [`Custody::is_lost`].
pub fn is_lost(fd: RawFd) -> bool {
    CUSTODY.get().is_some_and(|c| (c.is_lost)(fd))
}

/// See [`Custody::release_lost`].
pub fn release_lost(fd: RawFd) {
    if let Some(c) = CUSTODY.get() {
        (c.release_lost)(fd);
    }
}

/// See [`Custody::revocations`].
pub fn revocations() -> u64 {
    CUSTODY.get().map_or(0, |c| (c.revocations)())
}
