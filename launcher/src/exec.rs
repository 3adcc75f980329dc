//! Replacing the launcher with the command (`execve`), so the command keeps
//! the launcher's pid and its exit status and signals reach the caller as
//! they are. Everything else the command inherits (signal dispositions,
//! open file descriptors) is as the launcher received it: `main.rs` says
//! why the Rust runtime's start-up is skipped.

use std::convert::Infallible;
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use nix::errno::Errno;

use crate::elf::{self, FileKind};
use crate::env::Env;

/// Why the command could not be started, as a shell would report it.
#[derive(Debug, PartialEq, Eq)]
pub struct ExecFailure {
    pub message: String,
    pub exit_code: i32,
}

/// Executes `path` with `argv` and `env`; returns only if that fails.
pub fn exec(path: &Path, argv: &[OsString], env: &Env) -> ExecFailure {
    match try_exec(path, argv, env) {
        Ok(never) => match never {},
        Err(errno) => failure(errno, path),
    }
}

fn try_exec(path: &Path, argv: &[OsString], env: &Env) -> Result<Infallible, Errno> {
    // Arguments and environment entries from the kernel never contain NUL;
    // should one appear anyway, fail like the kernel would.
    let c = |bytes: Vec<u8>| CString::new(bytes).map_err(|_| Errno::EINVAL);
    let c_path = c(path.as_os_str().as_bytes().to_vec())?;
    let c_argv = argv
        .iter()
        .map(|a| c(a.clone().into_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    let c_env = env
        .iter()
        .map(|(k, v)| {
            let mut entry = Vec::with_capacity(k.len() + 1 + v.len());
            entry.extend_from_slice(k.as_bytes());
            entry.push(b'=');
            entry.extend_from_slice(v.as_bytes());
            c(entry)
        })
        .collect::<Result<Vec<_>, _>>()?;
    nix::unistd::execve(&c_path, &c_argv, &c_env)
}

/// The message and status for a failed `execve` of `path` (which existed
/// and looked executable a moment before).
pub fn failure(errno: Errno, path: &Path) -> ExecFailure {
    let (message, exit_code) = match errno {
        // The file is there, so what is missing is its interpreter.
        Errno::ENOENT => match elf::inspect(path).map(|i| i.kind) {
            Ok(FileKind::Script { interpreter }) => (
                format!(
                    "{}: bad interpreter: No such file or directory",
                    show(&interpreter)
                ),
                126,
            ),
            Ok(FileKind::Elf(elf::ElfInfo {
                interpreter: Some(loader),
                ..
            })) => (
                format!(
                    "cannot execute: required file not found (its loader {} is missing)",
                    show(&loader)
                ),
                127,
            ),
            _ => ("No such file or directory".to_owned(), 127),
        },
        Errno::EACCES => ("Permission denied".to_owned(), 126),
        Errno::ENOEXEC => (
            "cannot execute binary file: Exec format error".to_owned(),
            126,
        ),
        other => (format!("cannot execute: {}", other.desc()), 126),
    };
    ExecFailure { message, exit_code }
}

fn show(s: &OsStr) -> std::borrow::Cow<'_, str> {
    s.to_string_lossy()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn failure_messages_and_codes() {
        let t = TempDir::new();
        let script = t.file("s", b"#!/nonexistent/interp\n");
        assert_eq!(
            failure(Errno::ENOENT, &script),
            ExecFailure {
                message: "/nonexistent/interp: bad interpreter: No such file or directory".into(),
                exit_code: 126
            }
        );
        let plain = t.file("p", b"data");
        assert_eq!(failure(Errno::ENOENT, &plain).exit_code, 127);
        assert_eq!(failure(Errno::EACCES, &plain).exit_code, 126);
        let noexec = failure(Errno::ENOEXEC, &plain);
        assert_eq!(noexec.exit_code, 126);
        assert!(noexec.message.contains("Exec format error"));
        assert_eq!(failure(Errno::E2BIG, &plain).exit_code, 126);
    }

    #[test]
    fn exec_of_a_text_file_fails_without_replacing_the_test() {
        use std::os::unix::fs::PermissionsExt;
        let t = TempDir::new();
        let path = t.file("data", b"\x01\x02 not a program");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = exec(&path, &["data".into()], &Vec::new());
        assert_eq!(f.exit_code, 126);
        assert!(f.message.contains("Exec format error"), "{}", f.message);
    }
}
