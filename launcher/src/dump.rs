//! The span dump path, checked before exec with the rules the library
//! applies when it opens the file ([`lumigo_core::owned_file`]): the
//! library itself stays silent without `LUMIGO_DEBUG`, so this is where the
//! user hears why no span will be written there.
//!
//! `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`, `/proc/self/fd/N` are not
//! checked as files: they name the command's own descriptor, which it
//! inherits from the launcher, so the launcher's is checked (open, not a
//! socket, 1 or 2), as the library will check its copy.

use std::path::Path;

use lumigo_core::owned_file::{check_path, check_stream, named_descriptor, Refusal};

use crate::diag;

/// Warns (once) if the library will refuse to write the span dump `path`.
/// Nothing is opened or created.
pub fn warn_if_refused(path: &Path) {
    if let Err(refusal) = refusal(path) {
        diag::warn(message(path, &refusal));
    }
}

/// What the library will say of `path`, judged before exec.
fn refusal(path: &Path) -> Result<(), Refusal> {
    match named_descriptor(path) {
        Some(fd) => check_stream(fd),
        None => check_path(path).map(drop),
    }
}

fn message(path: &Path, refusal: &Refusal) -> String {
    let rule = if refusal.is_unsafe_file() {
        "; the span dump must be a regular file of your own that no one else can write, \
         with one link (or a path where lumigo-run can create it)"
    } else {
        ""
    };
    format!(
        "spans will not be written to the span dump {}: {refusal}{rule}",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_where_and_why() {
        let m = message(Path::new("/tmp/d.jsonl"), &Refusal::SymbolicLink);
        assert!(m.contains("/tmp/d.jsonl"), "{m}");
        assert!(m.contains("symbolic link"), "{m}");
        assert!(m.contains("regular file of your own"), "{m}");
        let m = message(Path::new("/dev/stdout"), &Refusal::StreamIsSocket { fd: 1 });
        assert!(m.contains("/dev/stdout") && m.contains("socket"), "{m}");
        assert!(!m.contains("regular file"), "{m}");
    }

    #[test]
    fn standard_streams_are_not_checked_as_files() {
        // The test harness's descriptor 2 is open (and not a socket under
        // cargo test); as files, these paths are symbolic links.
        // SAFETY: fstat into a zeroed struct.
        let stderr_is_socket = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            libc::fstat(2, &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFSOCK
        };
        if !stderr_is_socket {
            for p in ["/dev/stderr", "/dev/fd/2", "/proc/self/fd/2"] {
                assert_eq!(refusal(Path::new(p)), Ok(()), "{p}");
            }
        }
        assert_eq!(
            refusal(Path::new("/dev/fd/0")),
            Err(Refusal::NotStandardStream { fd: 0 })
        );
        assert!(refusal(Path::new("/dev/fd/9")).is_err());
        // A file of the same name elsewhere is still a file.
        assert!(!refusal(Path::new("/nonexistent-lumigo/dev/stderr"))
            .unwrap_err()
            .is_unsafe_file());
    }
}
