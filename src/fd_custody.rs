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

use std::os::fd::{OwnedFd, RawFd};
use std::sync::OnceLock;

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

/// Installs the preload's functions; the first call wins.
pub fn install(custody: Custody) {
    let _ = CUSTODY.set(custody);
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
