//! Our own descriptors (the span dump, the OTLP transport's sockets) kept
//! out of the app's way, and given up when the app takes their number.
//!
//! A descriptor our code opens is moved to a high number
//! (`F_DUPFD_CLOEXEC`, below [`HIGH_CAP`] and the soft `RLIMIT_NOFILE`),
//! close-on-exec, and marked ours in the fd table. When the app closes or
//! replaces it (`close`, `close_range`, `dup2`, `dup3` from an app thread),
//! the real call happens exactly as asked, and the number is marked *lost*
//! first: from then on our threads' hooked calls on it fail with `EBADF`
//! instead of touching what the app put there, and our own `close` of it
//! only lets go of the number. The span dump notices and reopens its file;
//! the OTLP exporter sees [`revocations`] change and replaces its
//! transport (whose connections used the lost socket) with a new one.

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use libc::c_int;

use crate::fdtable;
use crate::real;

/// Our descriptors stay below this number even when the limit is higher:
/// the kernel sizes a process's descriptor table for its highest open
/// number, so a descriptor near a limit of 1,048,576 would cost every
/// traced process megabytes.
const HIGH_CAP: c_int = 2048;
/// How far below the cap (or the soft limit) our descriptors start.
const HIGH_ROOM: c_int = 64;

/// Export sockets of ours that the app closed or replaced.
static SOCKETS_LOST: AtomicU64 = AtomicU64::new(0);

/// The process whose descriptor table the fd table describes (set at load
/// and in every forked child; a vfork child, which shares our memory but
/// not our descriptors, has another pid).
static OWNER_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn after_fork_in_child() {
    // SAFETY: getpid has no preconditions.
    OWNER_PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
}

/// Where our descriptors go: near the top of the soft limit (capped), or
/// nowhere special if the limit is too low to leave the app its room.
fn high_base() -> Option<c_int> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a plain struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    let soft = c_int::try_from(lim.rlim_cur).unwrap_or(c_int::MAX);
    let top = soft.min(HIGH_CAP);
    (top >= 4 * HIGH_ROOM).then_some(top - HIGH_ROOM)
}

fn real_close(fd: c_int) {
    if let Some(close) = real::CLOSE.get() {
        // SAFETY: closing a descriptor our own code just made.
        unsafe { close(fd) };
    }
}

/// Moves a descriptor our code just opened to a high number and marks it
/// ours (`extra`: [`fdtable::SOCKET`] or 0); returns the number to use. On
/// failure to move, the descriptor stays where it is, still marked ours;
/// if even that is impossible (its number is still held by code of ours
/// that lost it), it is closed and -1 returned with `EMFILE`.
pub fn adopt_raw(fd: c_int, extra: u8) -> c_int {
    if let (Some(mut from), Some(fcntl)) = (high_base(), real::FCNTL.get()) {
        for _ in 0..8 {
            // SAFETY: duplicating a descriptor we own.
            let high = unsafe { fcntl(fd, libc::F_DUPFD_CLOEXEC, from as libc::c_ulong) };
            if high < 0 {
                break;
            }
            if fdtable::mark_ours(high, extra) {
                real_close(fd);
                return high;
            }
            // A lost number some old handle of ours may still use: skip it.
            real_close(high);
            from = high + 1;
        }
    }
    if fdtable::mark_ours(fd, extra) {
        return fd;
    }
    real_close(fd);
    // SAFETY: writing this thread's errno.
    unsafe { *libc::__errno_location() = libc::EMFILE };
    -1
}

/// The app is closing or replacing `fd`: if it was ours, it is lost from
/// now on.
pub fn app_takes(fd: c_int) {
    if fdtable::get(fd) & fdtable::OURS == 0 {
        return;
    }
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != OWNER_PID.load(Ordering::Relaxed) {
        // A vfork child: it shares our memory, not our descriptors.
        return;
    }
    let was = fdtable::lose(fd);
    if was & fdtable::OURS != 0 && was & fdtable::SOCKET != 0 {
        SOCKETS_LOST.fetch_add(1, Ordering::AcqRel);
    }
}

fn adopt(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    let high = adopt_raw(fd.into_raw_fd(), 0);
    if high < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `adopt_raw` returned a descriptor we own alone.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}

fn is_lost(fd: RawFd) -> bool {
    fdtable::is_lost(fd)
}

fn release_lost(fd: RawFd) {
    fdtable::release(fd);
}

fn revocations() -> u64 {
    SOCKETS_LOST.load(Ordering::Acquire)
}

/// Hands the core its side of the contract (from the constructor).
pub fn install() {
    after_fork_in_child();
    // SAFETY: registering a plain `extern "C"` handler that never unwinds.
    unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    lumigo_core::fd_custody::install(lumigo_core::fd_custody::Custody {
        adopt,
        is_lost,
        release_lost,
        revocations,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> (c_int, c_int) {
        let mut fds = [0; 2];
        // SAFETY: pipe fills the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        (fds[0], fds[1])
    }

    fn is_open(fd: c_int) -> bool {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    }

    #[test]
    fn our_descriptors_go_high_close_on_exec_and_are_given_up_to_the_app() {
        let base = high_base();
        if let Some(b) = base {
            assert!(
                (3 * HIGH_ROOM..HIGH_CAP - HIGH_ROOM + 1).contains(&b),
                "{b}"
            );
        }
        let (r, w) = pipe();
        let ours = adopt_raw(w, fdtable::SOCKET);
        assert!(ours >= 0);
        if let Some(b) = base {
            assert!(ours >= b, "{ours} below {b}");
            assert!(!is_open(w), "the low number is closed");
        }
        assert!(is_open(ours));
        // SAFETY: as above.
        let flags = unsafe { libc::fcntl(ours, libc::F_GETFD) };
        assert!(base.is_none() || flags & libc::FD_CLOEXEC != 0);
        assert_eq!(fdtable::get(ours), fdtable::OURS | fdtable::SOCKET);

        // In another process (a vfork child) the app's close changes nothing.
        OWNER_PID.store(-1, Ordering::Relaxed);
        app_takes(ours);
        assert_eq!(fdtable::get(ours), fdtable::OURS | fdtable::SOCKET);

        // Here, the app takes the number: it is lost to us, and the export
        // side hears of it.
        after_fork_in_child();
        let before = revocations();
        app_takes(ours);
        assert!(is_lost(ours));
        assert_eq!(revocations(), before + 1);
        // Only once.
        app_takes(ours);
        assert_eq!(revocations(), before + 1);
        release_lost(ours);
        assert_eq!(fdtable::get(ours), 0);
        // SAFETY: closing the descriptors this test opened.
        unsafe {
            libc::close(ours);
            libc::close(r);
        }
    }

    #[test]
    fn the_apps_own_descriptors_are_not_ours_to_lose() {
        let (r, w) = pipe();
        let before = fdtable::get(r);
        app_takes(r);
        assert_eq!(fdtable::get(r), before);
        assert!(!is_lost(r));
        // SAFETY: closing the descriptors this test opened.
        unsafe {
            libc::close(r);
            libc::close(w);
        }
    }
}
