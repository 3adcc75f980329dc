//! Files we write on the user's behalf (the span dump, small state files),
//! opened so that no one else can choose what we write into.
//!
//! lumigo-run often runs as root inside other people's processes. A path
//! such as `/tmp/spans.jsonl` lives in a directory anyone can write to, so
//! another user can plant a symbolic link there (to `/etc/passwd`), or a
//! world-writable file of their own. [`open_owned_append`] therefore:
//! - never follows a symbolic link in the last component (`O_NOFOLLOW`);
//! - follows a symbolic link among the directories of the path only if it
//!   belongs to root or to the effective user: a link another user planted
//!   (`/tmp/theirs/d -> /root/private`) would choose the directory we
//!   create the file in. This is the kernel's `fs.protected_symlinks` rule,
//!   applied on our whole path, not only in sticky directories. The path
//!   is walked one component at a time from a directory already checked
//!   (`openat` with `O_PATH|O_NOFOLLOW`; a link is judged and read through
//!   a descriptor of the link itself, `fstat` and `readlinkat`), so no
//!   component can be swapped between its check and its use;
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
//! Real directories on the way are accepted whoever owns them: the rules
//! protect the file itself, in a directory the user named.
//!
//! The span dump may also name the process's own standard output or error
//! ([`named_descriptor`]: `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`,
//! `/proc/self/fd/N`, N = 1 or 2). Those are not files to open: they are
//! the descriptor the process was started with, chosen by whoever started
//! it, and are used through a duplicate ([`dup_stream`]), never through the
//! link. Such a descriptor is refused when it is closed, or a socket
//! (JSON lines in an app's connection would corrupt its protocol).

use std::collections::VecDeque;
use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

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
    /// A symbolic link among the directories of the path belongs to another
    /// user (neither root nor the effective user).
    UntrustedLink {
        link: PathBuf,
        owner: u32,
        euid: u32,
    },
    /// A standard stream named as the span dump is closed.
    StreamClosed { fd: RawFd },
    /// A standard stream named as the span dump is a socket.
    StreamIsSocket { fd: RawFd },
    /// `/dev/fd/N` (or the like) with N other than 1 or 2.
    NotStandardStream { fd: RawFd },
    /// The system refused (no such directory, permission denied…).
    Os(std::io::ErrorKind, String),
}

impl Refusal {
    /// True for the refusals these rules make (not a plain I/O error).
    pub fn is_unsafe_file(&self) -> bool {
        !matches!(self, Refusal::Os(..)) && !self.is_stream()
    }

    /// True for the refusals of a standard stream named as the span dump.
    pub fn is_stream(&self) -> bool {
        matches!(
            self,
            Refusal::StreamClosed { .. }
                | Refusal::StreamIsSocket { .. }
                | Refusal::NotStandardStream { .. }
        )
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
            Refusal::UntrustedLink { link, owner, euid } => write!(
                f,
                "the path goes through the symbolic link {}, which belongs to uid {owner}; \
                 only links of root or of uid {euid} are followed",
                link.display()
            ),
            Refusal::StreamClosed { fd } => {
                write!(f, "descriptor {fd} is not open in the program")
            }
            Refusal::StreamIsSocket { fd } => write!(
                f,
                "descriptor {fd} is a socket: span lines would corrupt what the program \
                 sends on it"
            ),
            Refusal::NotStandardStream { fd } => write!(
                f,
                "descriptor {fd} is not standard output (1) or standard error (2), \
                 the only descriptors a span dump can name"
            ),
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

fn c_name(name: &[u8]) -> Result<CString, Refusal> {
    CString::new(name).map_err(|_| {
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

/// The status of an open descriptor.
fn fstat(fd: RawFd) -> std::io::Result<libc::stat> {
    // SAFETY: fstat fills a plain struct; a bad descriptor is an error.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(st)
    }
}

/// `openat(dir, name, flags)`, close-on-exec, as an owned descriptor.
fn open_at(dir: RawFd, name: &CString, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated name; flags only.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just opened and own alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The directory holding the last component of a path, reached component
/// by component, and that last component.
struct Parent {
    /// `None`: the working directory (a relative path without directories).
    dir: Option<OwnedFd>,
    name: CString,
}

impl Parent {
    fn raw(&self) -> RawFd {
        self.dir.as_ref().map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd)
    }
}

/// Symbolic links followed on one path, at most (the kernel's limit).
const MAX_LINKS: usize = 40;

/// Walks to the directory of `path`'s last component from `/` (or the
/// working directory), one component at a time, each opened `O_PATH` and
/// `O_NOFOLLOW` relative to the one before: a real directory is entered; a
/// symbolic link is judged by the status of the link itself (through its
/// own descriptor, so it cannot be swapped after the check) and followed
/// only if it belongs to root or to `euid`, its target read from that same
/// descriptor. The last component is not touched.
fn walk_to_parent(path: &Path, euid: u32) -> Result<Parent, Refusal> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(Refusal::Os(
            std::io::ErrorKind::NotFound,
            "the path is empty".into(),
        ));
    }
    let root = c_name(b"/")?;
    let open_root = || {
        open_at(libc::AT_FDCWD, &root, libc::O_PATH | libc::O_DIRECTORY)
            .map_err(|e| Refusal::Os(e.kind(), format!("cannot open /: {e}")))
    };
    let mut names: VecDeque<Vec<u8>> = split(bytes);
    // A trailing slash means the directory itself.
    let last = if bytes.ends_with(b"/") {
        b".".to_vec()
    } else {
        names.pop_back().unwrap_or_else(|| b".".to_vec())
    };
    let (mut dir, mut shown) = if bytes.starts_with(b"/") {
        (Some(open_root()?), PathBuf::from("/"))
    } else {
        (None, PathBuf::new())
    };
    let mut links = 0;
    while let Some(name) = names.pop_front() {
        if name == b"." {
            continue;
        }
        let here = shown.join(std::ffi::OsStr::from_bytes(&name));
        let c = c_name(&name)?;
        let raw = dir.as_ref().map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd);
        let cannot = |e: std::io::Error| {
            Refusal::Os(
                e.kind(),
                format!("cannot open the directory {}: {e}", here.display()),
            )
        };
        let fd = open_at(raw, &c, libc::O_PATH | libc::O_NOFOLLOW).map_err(cannot)?;
        let st = fstat(fd.as_raw_fd()).map_err(cannot)?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                dir = Some(fd);
                shown = here;
            }
            libc::S_IFLNK => {
                if st.st_uid != 0 && st.st_uid != euid {
                    return Err(Refusal::UntrustedLink {
                        link: here,
                        owner: st.st_uid,
                        euid,
                    });
                }
                links += 1;
                if links > MAX_LINKS {
                    return Err(Refusal::Os(
                        std::io::ErrorKind::Other,
                        format!("too many symbolic links at {}", here.display()),
                    ));
                }
                let target = read_link(&fd).map_err(|e| {
                    Refusal::Os(
                        e.kind(),
                        format!("cannot read the symbolic link {}: {e}", here.display()),
                    )
                })?;
                // The target's components come next, from the link's
                // directory (or from `/`).
                for n in split(&target).into_iter().rev() {
                    names.push_front(n);
                }
                if target.starts_with(b"/") {
                    dir = Some(open_root()?);
                    shown = PathBuf::from("/");
                }
            }
            _ => {
                return Err(Refusal::Os(
                    std::io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", here.display()),
                ))
            }
        }
    }
    Ok(Parent {
        dir,
        name: c_name(&last)?,
    })
}

/// The non-empty components of a path, in order.
fn split(bytes: &[u8]) -> VecDeque<Vec<u8>> {
    bytes
        .split(|b| *b == b'/')
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// The target of the symbolic link open (`O_PATH|O_NOFOLLOW`) as `link`.
fn read_link(link: &OwnedFd) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: an empty path reads the link `link` refers to; `buf` is
    // writable for its length.
    let n = unsafe {
        libc::readlinkat(
            link.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
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
    let parent = walk_to_parent(path, effective_uid())?;
    let (dir, c) = (parent.raw(), &parent.name);
    let base = access | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NOCTTY;
    // Existing file first; if it is missing, create it exclusively. A file
    // appearing or vanishing in between is retried a few times.
    for _ in 0..4 {
        // SAFETY: a valid NUL-terminated name in an open directory; flags only.
        let fd = unsafe { libc::openat(dir, c.as_ptr(), base | libc::O_NONBLOCK) };
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
            libc::openat(
                dir,
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
    let fd = file.as_raw_fd();
    let st = fstat(fd).map_err(|_| os_error("examine"))?;
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
/// Directories on the way are opened `O_PATH` to walk the path (and the
/// links among them judged) exactly as [`open_owned`] does.
pub fn check_path(path: &Path) -> Result<PathState, Refusal> {
    let parent = walk_to_parent(path, effective_uid())?;
    // SAFETY: fstatat fills a plain struct; the name is NUL-terminated and
    // relative to an open directory.
    let st = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstatat(
            parent.raw(),
            parent.name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        ) != 0
        {
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

/// The process's own descriptor that `path` names, if it is one of
/// `/dev/stdin`, `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`,
/// `/proc/self/fd/N` (spelled with extra slashes or `.` components too).
/// Only 1 and 2 are accepted as a span dump ([`check_stream`]); any other
/// number is returned so that it can be refused by name.
pub fn named_descriptor(path: &Path) -> Option<RawFd> {
    let mut parts = path.components();
    if parts.next() != Some(Component::RootDir) {
        return None;
    }
    let mut names = Vec::new();
    for part in parts {
        match part {
            Component::Normal(n) => names.push(n.as_bytes()),
            _ => return None,
        }
    }
    let number = |n: &[u8]| -> Option<RawFd> {
        if n.is_empty() || n.len() > 9 || !n.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(n).ok()?.parse().ok()
    };
    match names.as_slice() {
        [b"dev", b"stdin"] => Some(0),
        [b"dev", b"stdout"] => Some(1),
        [b"dev", b"stderr"] => Some(2),
        [b"dev", b"fd", n] | [b"proc", b"self", b"fd", n] => number(n),
        _ => None,
    }
}

/// The rules for a standard stream named as the span dump, applied to this
/// process's descriptor `fd` (the launcher's check before exec: the command
/// inherits it): 1 or 2, open, not a socket.
pub fn check_stream(fd: RawFd) -> Result<(), Refusal> {
    if fd != 1 && fd != 2 {
        return Err(Refusal::NotStandardStream { fd });
    }
    vet_stream(fd, fd)
}

/// A close-on-exec duplicate of the standard stream `fd` (1 or 2), if it
/// passes the rules of [`check_stream`]; the duplicate is what is checked,
/// so the app changing `fd` meanwhile changes nothing.
pub fn dup_stream(fd: RawFd) -> Result<OwnedFd, Refusal> {
    if fd != 1 && fd != 2 {
        return Err(Refusal::NotStandardStream { fd });
    }
    dup_descriptor(fd)
}

/// [`dup_stream`] without the choice of numbers.
fn dup_descriptor(fd: RawFd) -> Result<OwnedFd, Refusal> {
    // SAFETY: F_DUPFD_CLOEXEC only creates a descriptor; a closed `fd` is an
    // error. Numbers from 3 up: never one of the standard three.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EBADF) {
            return Err(Refusal::StreamClosed { fd });
        }
        return Err(Refusal::Os(
            e.kind(),
            format!("cannot duplicate descriptor {fd}: {e}"),
        ));
    }
    // SAFETY: a descriptor we just created and own alone.
    let dup = unsafe { OwnedFd::from_raw_fd(dup) };
    vet_stream(dup.as_raw_fd(), fd)?;
    Ok(dup)
}

/// Checks the descriptor `fd` (a copy of `named`, or `named` itself).
fn vet_stream(fd: RawFd, named: RawFd) -> Result<(), Refusal> {
    match fstat(fd) {
        Err(e) if e.raw_os_error() == Some(libc::EBADF) => Err(Refusal::StreamClosed { fd: named }),
        Err(e) => Err(Refusal::Os(
            e.kind(),
            format!("cannot examine descriptor {named}: {e}"),
        )),
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFSOCK => {
            Err(Refusal::StreamIsSocket { fd: named })
        }
        Ok(_) => Ok(()),
    }
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

    /// A symbolic link of another user among the directories: its owner is
    /// made someone other than `euid` (and not root), by `lchown` as root,
    /// or by judging as another user otherwise.
    fn foreign_link(d: &Dir, target: &Path, name: &str) -> (std::path::PathBuf, u32, u32) {
        let link = d.0.join(name);
        std::os::unix::fs::symlink(target, &link).unwrap();
        let me = effective_uid();
        if me == 0 {
            let c = CString::new(link.as_os_str().as_bytes()).unwrap();
            // SAFETY: valid path; changes the link itself, not its target.
            assert_eq!(unsafe { libc::lchown(c.as_ptr(), 65534, 65534) }, 0);
            (link, 65534, 0)
        } else {
            (link, me, me + 1)
        }
    }

    #[test]
    fn a_directory_link_of_another_user_is_not_followed() {
        let d = Dir::new("foreign-link");
        let private = d.0.join("private");
        std::fs::create_dir(&private).unwrap();
        let (link, owner, euid) = foreign_link(&d, &private, "d");
        let path = link.join("x.jsonl");
        let expected = Refusal::UntrustedLink {
            link: link.clone(),
            owner,
            euid,
        };
        assert_eq!(walk_to_parent(&path, euid).err(), Some(expected.clone()));
        // Deeper, and reached through `..` and a trusted link, too.
        let deeper = d.0.join("private").join("..").join("d").join("x.jsonl");
        assert!(matches!(
            walk_to_parent(&deeper, euid),
            Err(Refusal::UntrustedLink { owner: o, .. }) if o == owner
        ));
        if euid == effective_uid() {
            // Root: the public functions judge as the effective user.
            assert_eq!(open_owned_append(&path).unwrap_err(), expected);
            assert_eq!(check_path(&path), Err(expected.clone()));
            let text = expected.to_string();
            assert!(text.contains(&link.display().to_string()), "{text}");
            assert!(text.contains("uid 65534"), "{text}");
        }
        assert!(!private.join("x.jsonl").exists(), "nothing created");
    }

    #[test]
    fn directory_links_of_the_user_are_followed() {
        let d = Dir::new("own-link");
        let real = d.0.join("real");
        std::fs::create_dir_all(real.join("sub")).unwrap();
        // Relative, absolute, and a link to a link.
        std::os::unix::fs::symlink("real", d.0.join("rel")).unwrap();
        std::os::unix::fs::symlink(&real, d.0.join("abs")).unwrap();
        std::os::unix::fs::symlink("rel/sub", d.0.join("chain")).unwrap();
        for (via, file) in [("rel", "a"), ("abs", "b"), ("chain", "c")] {
            let p = d.0.join(via).join(file);
            assert_eq!(check_path(&p), Ok(PathState::Missing), "{via}");
            open_owned_append(&p).unwrap().write_all(b"x\n").unwrap();
            assert_eq!(check_path(&p), Ok(PathState::Acceptable), "{via}");
        }
        assert!(real.join("a").is_file() && real.join("b").is_file());
        assert!(real.join("sub").join("c").is_file());
        // A loop ends.
        std::os::unix::fs::symlink("loop", d.0.join("loop")).unwrap();
        assert!(matches!(
            open_owned_append(&d.0.join("loop").join("f")),
            Err(Refusal::Os(..))
        ));
        // A relative path from the working directory still works.
        let rel = Path::new("lumigo-owned-file-no-such-dir/x");
        assert!(matches!(check_path(rel), Err(Refusal::Os(..))));
    }

    #[test]
    fn standard_streams_are_named() {
        for (p, fd) in [
            ("/dev/stdout", Some(1)),
            ("/dev/stderr", Some(2)),
            ("/dev/stdin", Some(0)),
            ("/dev//stderr", Some(2)),
            ("/dev/fd/2", Some(2)),
            ("/dev/fd/1", Some(1)),
            ("/proc/self/fd/2", Some(2)),
            ("/dev/fd/7", Some(7)),
            ("/dev/fd/x", None),
            ("/dev/fd/", None),
            ("dev/stderr", None),
            ("/dev/../dev/stderr", None),
            ("/tmp/stderr", None),
            ("/proc/1/fd/2", None),
        ] {
            assert_eq!(named_descriptor(Path::new(p)), fd, "{p}");
        }
        assert_eq!(check_stream(0), Err(Refusal::NotStandardStream { fd: 0 }));
        assert_eq!(check_stream(7), Err(Refusal::NotStandardStream { fd: 7 }));
        assert!(matches!(
            dup_stream(3),
            Err(Refusal::NotStandardStream { fd: 3 })
        ));
    }

    #[test]
    fn a_stream_is_duplicated_close_on_exec_unless_closed_or_a_socket() {
        let mut p = [0; 2];
        // SAFETY: pipe fills the array.
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        let dup = dup_descriptor(p[1]).unwrap();
        assert!(dup.as_raw_fd() > 2);
        // SAFETY: F_GETFD only reads flags.
        let flags = unsafe { libc::fcntl(dup.as_raw_fd(), libc::F_GETFD) };
        assert!(flags & libc::FD_CLOEXEC != 0);
        // Written through the copy, read from the pipe.
        File::from(dup).write_all(b"line\n").unwrap();
        let mut buf = [0u8; 5];
        // SAFETY: reading into a local buffer from our pipe.
        assert_eq!(unsafe { libc::read(p[0], buf.as_mut_ptr().cast(), 5) }, 5);
        assert_eq!(&buf, b"line\n");

        let mut s = [0; 2];
        // SAFETY: socketpair fills the array.
        assert_eq!(
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, s.as_mut_ptr()) },
            0
        );
        assert_eq!(
            dup_descriptor(s[0]).unwrap_err(),
            Refusal::StreamIsSocket { fd: s[0] }
        );
        assert!(Refusal::StreamIsSocket { fd: 2 }.is_stream());
        let closed = s[1];
        // SAFETY: closing our own descriptors.
        unsafe {
            libc::close(s[0]);
            libc::close(closed);
            libc::close(p[0]);
            libc::close(p[1]);
        }
        // (Another test may reuse the number meanwhile: then it is open.)
        if let Err(refusal) = dup_descriptor(closed) {
            assert!(
                matches!(
                    refusal,
                    Refusal::StreamClosed { .. } | Refusal::StreamIsSocket { .. }
                ),
                "{refusal:?}"
            );
        }
        assert_eq!(
            dup_descriptor(1 << 20).unwrap_err(),
            Refusal::StreamClosed { fd: 1 << 20 }
        );
    }
}
