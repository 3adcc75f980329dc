//! Finding the command the way a shell does.
//!
//! The launcher resolves COMMAND itself (instead of `execvp`) because it must
//! look at the file before deciding on the environment, and because a missing
//! or unusable command must be reported as a shell would: "command not
//! found" with status 127, a file that cannot be executed with 126.

use std::ffi::{CString, OsStr};
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Search path when `PATH` is unset (glibc's `execvp` uses the same).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Why COMMAND cannot be run.
#[derive(Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// No such command in `PATH` (a bare name).
    NotFound,
    /// A path (with `/`) that does not exist.
    NoSuchFile,
    /// Exists, but this user may not execute it.
    PermissionDenied(PathBuf),
    /// A directory.
    IsDirectory(PathBuf),
}

impl ResolveError {
    /// The exit status a shell uses for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            ResolveError::NotFound | ResolveError::NoSuchFile => 127,
            ResolveError::PermissionDenied(_) | ResolveError::IsDirectory(_) => 126,
        }
    }
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResolveError::NotFound => "command not found",
            ResolveError::NoSuchFile => "No such file or directory",
            ResolveError::PermissionDenied(_) => "Permission denied",
            ResolveError::IsDirectory(_) => "Is a directory",
        })
    }
}

/// The file to execute for `word`: `word` itself if it contains a `/`,
/// else the first executable regular file named `word` in `path_var`'s
/// directories (an empty entry is the current directory).
pub fn resolve(word: &OsStr, path_var: Option<&OsStr>) -> Result<PathBuf, ResolveError> {
    if word.is_empty() {
        return Err(ResolveError::NotFound);
    }
    if word.as_bytes().contains(&b'/') {
        let path = Path::new(word);
        return match candidate(path) {
            Candidate::Executable => Ok(path.to_path_buf()),
            Candidate::Missing => Err(ResolveError::NoSuchFile),
            Candidate::Directory => Err(ResolveError::IsDirectory(path.to_path_buf())),
            Candidate::NotExecutable => Err(ResolveError::PermissionDenied(path.to_path_buf())),
        };
    }
    let path_var = path_var.unwrap_or(OsStr::new(DEFAULT_PATH));
    // Like bash: a file found without execute permission is reported only
    // if no executable one comes later in PATH.
    let mut denied = None;
    for dir in path_var.as_bytes().split(|b| *b == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let path = dir.join(word);
        match candidate(&path) {
            Candidate::Executable => return Ok(path),
            Candidate::NotExecutable if denied.is_none() => denied = Some(path),
            _ => {}
        }
    }
    Err(denied.map_or(ResolveError::NotFound, ResolveError::PermissionDenied))
}

enum Candidate {
    Executable,
    NotExecutable,
    Directory,
    Missing,
}

fn candidate(path: &Path) -> Candidate {
    match path.metadata() {
        Err(_) => Candidate::Missing,
        Ok(m) if m.is_dir() => Candidate::Directory,
        Ok(_) if executable(path).unwrap_or(false) => Candidate::Executable,
        Ok(_) => Candidate::NotExecutable,
    }
}

/// Whether the effective user may execute `path` (as `execve` would check,
/// including `noexec` mounts).
fn executable(path: &Path) -> io::Result<bool> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the
    // call; faccessat only reads it.
    let rc = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    Ok(rc == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::os::unix::fs::PermissionsExt;

    fn resolve_in(word: &str, path: &str) -> Result<PathBuf, ResolveError> {
        resolve(OsStr::new(word), Some(OsStr::new(path)))
    }

    #[test]
    fn finds_in_path_order() {
        let t = TempDir::new();
        let (a, b) = (t.subdir("a"), t.subdir("b"));
        t.script("b/tool");
        t.script("a/tool");
        let path = format!("{}:{}", a.display(), b.display());
        assert_eq!(resolve_in("tool", &path), Ok(a.join("tool")));
        let path = format!("/nonexistent:{}", b.display());
        assert_eq!(resolve_in("tool", &path), Ok(b.join("tool")));
    }

    #[test]
    fn real_commands_resolve() {
        let sh = resolve_in("sh", "/usr/bin:/bin").unwrap();
        assert!(sh.ends_with("sh"));
        assert_eq!(resolve_in("/bin/sh", ""), Ok(PathBuf::from("/bin/sh")));
    }

    #[test]
    fn not_found() {
        let t = TempDir::new();
        let path = t.path().display().to_string();
        assert_eq!(
            resolve_in("no-such-command-xyz", &path),
            Err(ResolveError::NotFound)
        );
        assert_eq!(resolve_in("", &path), Err(ResolveError::NotFound));
        assert_eq!(ResolveError::NotFound.exit_code(), 127);
        let missing = t.path().join("missing");
        assert_eq!(
            resolve_in(missing.to_str().unwrap(), &path),
            Err(ResolveError::NoSuchFile)
        );
        assert_eq!(ResolveError::NoSuchFile.exit_code(), 127);
    }

    #[test]
    fn directory_is_skipped_in_path_and_refused_by_path() {
        let t = TempDir::new();
        t.subdir("d/tool");
        let d = t.path().join("d");
        assert_eq!(
            resolve_in("tool", d.to_str().unwrap()),
            Err(ResolveError::NotFound)
        );
        let err = resolve_in(d.join("tool").to_str().unwrap(), "").unwrap_err();
        assert_eq!(err, ResolveError::IsDirectory(d.join("tool")));
        assert_eq!(err.exit_code(), 126);
    }

    #[test]
    fn not_executable() {
        // Holds for root too: root may execute only files with an x bit.
        let t = TempDir::new();
        let file = t.file("plain", b"data");
        let err = resolve_in(file.to_str().unwrap(), "").unwrap_err();
        assert_eq!(err, ResolveError::PermissionDenied(file.clone()));
        assert_eq!(err.exit_code(), 126);
        assert_eq!(err.to_string(), "Permission denied");
        // In PATH: reported only when nothing executable comes later.
        let path = t.path().display().to_string();
        assert_eq!(
            resolve_in("plain", &path),
            Err(ResolveError::PermissionDenied(file))
        );
        let other = t.subdir("other");
        t.script("other/plain");
        let path = format!("{}:{}", t.path().display(), other.display());
        assert_eq!(resolve_in("plain", &path), Ok(other.join("plain")));
    }

    #[test]
    fn empty_path_entry_is_current_directory() {
        // The test's cwd is the crate directory, which holds Cargo.toml
        // (not executable) and src/ (a directory).
        assert!(
            std::fs::metadata("Cargo.toml")
                .unwrap()
                .permissions()
                .mode()
                & 0o111
                == 0
        );
        assert_eq!(
            resolve_in("Cargo.toml", ":/nonexistent"),
            Err(ResolveError::PermissionDenied(PathBuf::from(
                "./Cargo.toml"
            )))
        );
        assert_eq!(resolve_in("src", ""), Err(ResolveError::NotFound));
    }
}
