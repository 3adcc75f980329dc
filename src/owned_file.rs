//! Files we write on the user's behalf (the span dump, small state files),
//! opened so that no one else can choose what we write into.
//!
//! lumigo-run often runs as root inside other people's processes. A path
//! such as `/tmp/spans.jsonl` lives in a directory anyone can write to, so
//! another user can plant a symbolic link there (to `/etc/passwd`), or a
//! world-writable file of their own. [`open_owned_append`] therefore:
//! - never follows a symbolic link in the last component (`O_NOFOLLOW`);
//! - creates a missing file itself, exclusively (`O_CREAT|O_EXCL`), mode
//!   0600;
//! - accepts an existing file only if it is a regular file, owned by the
//!   effective user, not writable by others, with exactly one hard link (a
//!   planted hard link to someone's file, or to one of our own sensitive
//!   ones, has two);
//! - checks the file it opened (`fstat`), not the path, so a swap between
//!   check and open changes nothing;
//! - opens `O_APPEND|O_CLOEXEC|O_NOCTTY`, and `O_NONBLOCK` while opening,
//!   so a planted FIFO cannot hang the caller.
//!
//! [`check_path`] applies the same rules to a path without opening or
//! creating anything (the launcher's warning before exec).
//!
//! Directories on the way are followed as usual: the rules protect the file
//! itself, in a directory the user chose.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Why a file was not opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The last component is a symbolic link.
    SymbolicLink,
    /// Not a regular file (the kind, in words).
    NotRegularFile(&'static str),
    /// Owned by another user.
    NotOwned { owner: u32, euid: u32 },
    /// Others may write to it (its permission bits).
    WritableByOthers { mode: u32 },
    /// More than one hard link.
    HardLinked { links: u64 },
    /// The system refused (no such directory, permission denied…).
    Os(std::io::ErrorKind, String),
}

impl Refusal {
    /// True for the refusals these rules make (not a plain I/O error).
    pub fn is_unsafe_file(&self) -> bool {
        !matches!(self, Refusal::Os(..))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::SymbolicLink => f.write_str("it is a symbolic link"),
            Refusal::NotRegularFile(kind) => write!(f, "it is a {kind}, not a regular file"),
            Refusal::NotOwned { owner, euid } => {
                write!(f, "it belongs to uid {owner}, not to uid {euid}")
            }
            Refusal::WritableByOthers { mode } => {
                write!(f, "others can write to it (mode {:04o})", mode & 0o7777)
            }
            Refusal::HardLinked { links } => write!(f, "it has {links} hard links"),
            Refusal::Os(_, message) => f.write_str(message),
        }
    }
}

/// What [`check_path`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// A file that passes the rules.
    Acceptable,
    /// Nothing there: it would be created (0600, exclusively).
    Missing,
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The rules, on the status of an existing file.
pub fn vet(st: &libc::stat, euid: u32) -> Result<(), Refusal> {
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => None,
        libc::S_IFLNK => return Err(Refusal::SymbolicLink),
        libc::S_IFDIR => Some("directory"),
        libc::S_IFIFO => Some("FIFO"),
        libc::S_IFSOCK => Some("socket"),
        libc::S_IFCHR => Some("character device"),
        libc::S_IFBLK => Some("block device"),
        _ => Some("special file"),
    };
    if let Some(kind) = kind {
        return Err(Refusal::NotRegularFile(kind));
    }
    if st.st_uid != euid {
        return Err(Refusal::NotOwned {
            owner: st.st_uid,
            euid,
        });
    }
    if st.st_mode & libc::S_IWOTH != 0 {
        return Err(Refusal::WritableByOthers { mode: st.st_mode });
    }
    #[allow(clippy::unnecessary_cast)] // st_nlink is u32 on some targets
    let links = st.st_nlink as u64;
    if links != 1 {
        return Err(Refusal::HardLinked { links });
    }
    Ok(())
}

fn c_path(path: &Path) -> Result<CString, Refusal> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        Refusal::Os(
            std::io::ErrorKind::InvalidInput,
            "the path holds a NUL byte".into(),
        )
    })
}

fn os_error(what: &str) -> Refusal {
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ELOOP) {
        return Refusal::SymbolicLink;
    }
    Refusal::Os(e.kind(), format!("cannot {what} it: {e}"))
}

/// Opens `path` for appending under the rules above, creating it (0600) if
/// it does not exist. The file is close-on-exec.
pub fn open_owned_append(path: &Path) -> Result<File, Refusal> {
    open_owned(path, libc::O_WRONLY | libc::O_APPEND, true)
}

/// Opens `path` under the rules above with `access` (`O_RDONLY`,
/// `O_WRONLY`, `O_RDWR`, optionally `O_APPEND`), creating it exclusively
/// (0600) when it is missing and `create` is set. The file is close-on-exec
/// and blocking.
pub fn open_owned(path: &Path, access: libc::c_int, create: bool) -> Result<File, Refusal> {
    let c = c_path(path)?;
    let base = access | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NOCTTY;
    // Existing file first; if it is missing, create it exclusively. A file
    // appearing or vanishing in between is retried a few times.
    for _ in 0..4 {
        // SAFETY: a valid NUL-terminated path; flags only.
        let fd = unsafe { libc::open(c.as_ptr(), base | libc::O_NONBLOCK) };
        if fd >= 0 {
            // SAFETY: a descriptor we just opened and own alone.
            let file = unsafe { File::from_raw_fd(fd) };
            return accept(file, access);
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT) || !create {
            return Err(os_error("open"));
        }
        // SAFETY: as above; mode is a plain integer.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                base | libc::O_CREAT | libc::O_EXCL,
                0o600 as libc::c_uint,
            )
        };
        if fd >= 0 {
            // SAFETY: as above.
            let file = unsafe { File::from_raw_fd(fd) };
            return accept(file, access);
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            return Err(os_error("create"));
        }
    }
    Err(Refusal::Os(
        std::io::ErrorKind::Other,
        "it keeps appearing and disappearing".into(),
    ))
}

/// Checks the opened file, then makes it blocking again (`O_NONBLOCK` only
/// guarded the open against a FIFO; for a regular file it does nothing).
fn accept(file: File, access: libc::c_int) -> Result<File, Refusal> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fstat fills a plain struct for a descriptor we own.
    let st = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return Err(os_error("examine"));
        }
        st
    };
    vet(&st, effective_uid())?;
    // SAFETY: fcntl on a descriptor we own, with plain flags.
    unsafe {
        libc::fcntl(fd, libc::F_SETFL, access & libc::O_APPEND);
    }
    Ok(file)
}

/// The rules applied to `path` without opening or creating anything:
/// `Missing` if nothing is there (it would be created), `Acceptable` if
/// [`open_owned_append`] would accept what is there, else the refusal.
pub fn check_path(path: &Path) -> Result<PathState, Refusal> {
    let c = c_path(path)?;
    // SAFETY: lstat fills a plain struct; the path is NUL-terminated.
    let st = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::lstat(c.as_ptr(), &mut st) != 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
                return Ok(PathState::Missing);
            }
            return Err(os_error("examine"));
        }
        st
    };
    vet(&st, effective_uid())?;
    Ok(PathState::Acceptable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    struct Dir(std::path::PathBuf);
    impl Dir {
        fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir()
                .join(format!("lumigo-owned-file-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn creates_a_missing_file_0600_and_appends_to_it_later() {
        let d = Dir::new("create");
        let p = d.0.join("f");
        assert_eq!(check_path(&p), Ok(PathState::Missing));
        open_owned_append(&p).unwrap().write_all(b"a\n").unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(check_path(&p), Ok(PathState::Acceptable));
        open_owned_append(&p).unwrap().write_all(b"b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a\nb\n");
    }

    #[test]
    fn refuses_a_symbolic_link_and_leaves_its_target_alone() {
        let d = Dir::new("symlink");
        let target = d.0.join("victim");
        std::fs::write(&target, "precious").unwrap();
        let link = d.0.join("dump");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(open_owned_append(&link).unwrap_err(), Refusal::SymbolicLink);
        assert_eq!(check_path(&link), Err(Refusal::SymbolicLink));
        // A dangling link is not followed to create its target either.
        let dangling = d.0.join("dangling");
        std::os::unix::fs::symlink(d.0.join("created-through-link"), &dangling).unwrap();
        assert_eq!(
            open_owned_append(&dangling).unwrap_err(),
            Refusal::SymbolicLink
        );
        assert!(!d.0.join("created-through-link").exists());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    }

    #[test]
    fn refuses_files_others_can_write_or_that_have_more_links() {
        let d = Dir::new("rules");
        let p = d.0.join("open-to-all");
        std::fs::write(&p, "").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(
            open_owned_append(&p),
            Err(Refusal::WritableByOthers { .. })
        ));
        assert!(matches!(
            check_path(&p),
            Err(Refusal::WritableByOthers { .. })
        ));
        let q = d.0.join("linked");
        std::fs::write(&q, "").unwrap();
        std::fs::hard_link(&q, d.0.join("second-name")).unwrap();
        assert_eq!(
            open_owned_append(&q).unwrap_err(),
            Refusal::HardLinked { links: 2 }
        );
        assert!(open_owned_append(&d.0).is_err(), "a directory");
        assert_eq!(check_path(&d.0), Err(Refusal::NotRegularFile("directory")));
    }

    #[test]
    fn a_fifo_is_refused_without_hanging() {
        let d = Dir::new("fifo");
        let p = d.0.join("fifo");
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Nobody reads it: a blocking open would hang here.
        assert!(open_owned_append(&p).is_err());
        // With a reader, the open succeeds and the type check refuses it.
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags_nonblock()
            .open(&p)
            .unwrap();
        assert_eq!(
            open_owned_append(&p).unwrap_err(),
            Refusal::NotRegularFile("FIFO")
        );
        let mut buf = [0u8; 8];
        assert!(reader.read(&mut buf).map_or(true, |n| n == 0));
    }

    trait NonBlock {
        fn custom_flags_nonblock(&mut self) -> &mut Self;
    }
    impl NonBlock for std::fs::OpenOptions {
        fn custom_flags_nonblock(&mut self) -> &mut Self {
            use std::os::unix::fs::OpenOptionsExt;
            self.custom_flags(libc::O_NONBLOCK)
        }
    }

    #[test]
    fn vet_checks_owner_against_the_effective_user() {
        let d = Dir::new("owner");
        let p = d.0.join("f");
        std::fs::write(&p, "").unwrap();
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: lstat into a zeroed struct.
        let st = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            assert_eq!(libc::lstat(c.as_ptr(), &mut st), 0);
            st
        };
        let me = std::fs::metadata(&p).unwrap().uid();
        assert_eq!(vet(&st, me), Ok(()));
        assert_eq!(
            vet(&st, me + 1),
            Err(Refusal::NotOwned {
                owner: me,
                euid: me + 1
            })
        );
        let text = vet(&st, me + 1).unwrap_err().to_string();
        assert!(text.contains(&format!("uid {me}")), "{text}");
    }
}
