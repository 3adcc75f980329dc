//! Memory, shared by the processes of one user, that an OTLP endpoint just
//! failed, so that a dead or black-holed collector does not cost every
//! short-lived process the whole `LUMIGO_FLUSH_TIMEOUT` at exit.
//!
//! An endpoint is marked down when an export to it fails in transport
//! (refused, reset, timed out) or is still running when the exit flush runs
//! out of time. The mark is a small file, `lumigo-run-<euid>-<hash>.down`
//! in `$XDG_RUNTIME_DIR` (else `/dev/shm`), holding the time of the
//! failure. For [`DOWN_FOR`] after it, a process whose only destinations
//! are marked endpoints waits at most [`DOWN_WAIT`] at exit instead of the
//! flush timeout: enough for a collector that came back to take the batch,
//! and any 2xx answer removes the mark. While the collector is healthy there
//! is no mark and nothing changes.
//!
//! The file is opened without following symlinks; a file that is not a
//! regular file owned by the effective user, or that others can write, is
//! neither read nor written (the memory is then simply off).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a failure is remembered.
pub const DOWN_FOR: Duration = Duration::from_secs(60);
/// The exit wait while every destination is remembered as down.
pub const DOWN_WAIT: Duration = Duration::from_millis(100);

/// What this process knows about one OTLP endpoint.
pub(crate) struct EndpointHealth {
    /// The mark file; `None` when there is no usable directory.
    file: Option<PathBuf>,
    /// An export to this endpoint is running right now.
    pub(crate) busy: AtomicBool,
    /// The mark exists, as far as this process knows (it read or wrote it).
    marked: AtomicBool,
    /// When the exit flush gives up ([`monotonic_ms`]; 0: not exiting). An
    /// export waits for no retry that would end after it.
    exit_deadline_ms: AtomicU64,
}

/// `CLOCK_MONOTONIC` in milliseconds. Async-signal-safe.
pub(crate) fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own; it cannot fail
    // with a valid clock and pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

impl EndpointHealth {
    /// No I/O: only the file's name is computed.
    pub(crate) fn new(endpoint: &str, dir: Option<&Path>) -> EndpointHealth {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        EndpointHealth {
            file: dir.map(|d| d.join(format!("lumigo-run-{euid}-{:016x}.down", fnv1a(endpoint)))),
            busy: AtomicBool::new(false),
            marked: AtomicBool::new(false),
            exit_deadline_ms: AtomicU64::new(0),
        }
    }

    /// The process is exiting and its flush ends `within` from now: no
    /// retry may wait beyond that. Async-signal-safe.
    pub(crate) fn set_exit_deadline(&self, within: std::time::Duration) {
        let at = monotonic_ms()
            .saturating_add(within.as_millis() as u64)
            .max(1);
        self.exit_deadline_ms.store(at, Ordering::Release);
    }

    /// Time left before the exit flush gives up; `None` when not exiting.
    pub(crate) fn exit_time_left(&self) -> Option<std::time::Duration> {
        match self.exit_deadline_ms.load(Ordering::Acquire) {
            0 => None,
            at => Some(std::time::Duration::from_millis(
                at.saturating_sub(monotonic_ms()),
            )),
        }
    }

    /// True when a failure of this endpoint, by any process of this user,
    /// is recent. Reads the mark file.
    pub(crate) fn recently_down(&self) -> bool {
        let Some(path) = &self.file else { return false };
        let Some(text) = read_owned(path) else {
            return false;
        };
        let Ok(at_ms) = text.trim().parse::<u64>() else {
            return false;
        };
        self.marked.store(true, Ordering::Relaxed);
        let now_ms = now_ms();
        // A time in the future (a clock step) counts as just now.
        now_ms.saturating_sub(at_ms) < DOWN_FOR.as_millis() as u64
    }

    /// Remembers that the endpoint failed just now.
    pub(crate) fn mark_down(&self) {
        let Some(path) = &self.file else { return };
        if write_owned(path, &now_ms().to_string()) {
            self.marked.store(true, Ordering::Relaxed);
        }
    }

    /// The endpoint answered: forget any failure.
    pub(crate) fn mark_up(&self) {
        if !self.marked.swap(false, Ordering::Relaxed) {
            return;
        }
        if let Some(path) = &self.file {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `$XDG_RUNTIME_DIR` when it is an absolute path, else `/dev/shm` (where
/// it is missing, opening the file fails and there is no memory). `xdg` is
/// the variable's value, from the configuration. No I/O.
pub(crate) fn state_dir(xdg: Option<&Path>) -> Option<PathBuf> {
    match xdg.filter(|d| d.is_absolute()) {
        Some(dir) => Some(dir.to_path_buf()),
        None => Some(PathBuf::from("/dev/shm")),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// FNV-1a, 64 bits: a stable file name for an endpoint (not a secret).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn read_owned(path: &Path) -> Option<String> {
    use std::io::Read;
    let file = crate::owned_file::open_owned(path, libc::O_RDONLY, false).ok()?;
    let mut text = String::new();
    file.take(64).read_to_string(&mut text).ok()?;
    Some(text)
}

fn write_owned(path: &Path, text: &str) -> bool {
    use std::io::Write;
    let Ok(mut file) = crate::owned_file::open_owned(path, libc::O_WRONLY, true) else {
        return false;
    };
    file.set_len(0).is_ok() && file.write_all(text.as_bytes()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lumigo-health-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_failure_is_remembered_by_another_process_view_and_cleared_by_success() {
        let dir = temp_dir("mark");
        let a = EndpointHealth::new("http://127.0.0.1:4318/v1/traces", Some(&dir));
        let b = EndpointHealth::new("http://127.0.0.1:4318/v1/traces", Some(&dir));
        let other = EndpointHealth::new("http://127.0.0.1:4319/v1/traces", Some(&dir));
        assert!(!b.recently_down());
        a.mark_down();
        assert!(b.recently_down(), "shared through the file");
        assert!(!other.recently_down(), "per endpoint");
        let file = a.file.clone().unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        // SAFETY: no preconditions.
        assert_eq!(meta.uid(), unsafe { libc::geteuid() });
        b.mark_up();
        assert!(!file.exists());
        assert!(!a.recently_down());
        // An old failure is forgotten.
        let old = now_ms() - DOWN_FOR.as_millis() as u64 - 1;
        std::fs::write(&file, old.to_string()).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!a.recently_down());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn symlinks_and_files_others_can_write_are_refused() {
        let dir = temp_dir("refuse");
        let h = EndpointHealth::new("http://x:1/v1/traces", Some(&dir));
        let file = h.file.clone().unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, &file).unwrap();
        h.mark_down();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(!h.recently_down());
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, now_ms().to_string()).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!h.recently_down(), "world-writable: not trusted");
        h.mark_down();
        assert!(!h.recently_down());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_directory_no_memory() {
        let h = EndpointHealth::new("http://x:1/v1/traces", None);
        h.mark_down();
        assert!(!h.recently_down());
        assert_eq!(
            state_dir(Some(Path::new("/run/user/0"))),
            Some(PathBuf::from("/run/user/0"))
        );
        assert_ne!(
            state_dir(Some(Path::new("relative"))),
            Some(PathBuf::from("relative"))
        );
    }
}
