//! A cheap look at an executable: is it ELF, for which machine, with which
//! dynamic loader (`PT_INTERP`), or a `#!` script?
//!
//! Start-up cost matters (the launcher runs in front of every command), so
//! only the first page of the file is read, plus the program headers and the
//! interpreter path if they happen to lie beyond it. Sections, symbols and
//! the dynamic table are never read.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use goblin::container::{Container, Ctx};
use goblin::elf::header::{EI_CLASS, EI_DATA, ELFCLASS32, ELFCLASS64, ELFMAG, SELFMAG};
use goblin::elf::program_header::PT_INTERP;
use goblin::elf::{Elf, ProgramHeader};

/// How much of the file is read up front: the ELF header, the program
/// headers of almost every binary, and a `#!` line.
const HEAD: usize = 4096;
/// Program header tables larger than this are not read (real ones are < 1 KiB).
const MAX_PHDRS_BYTES: usize = 64 * 1024;
/// Linux's own limit on a `PT_INTERP` path.
const MAX_INTERP: usize = 4096;

/// The identity of an ELF file: what must match between a program and a
/// library for the loader to put them in one process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Machine {
    /// `ELFCLASS32` or `ELFCLASS64`.
    pub class: u8,
    /// `ELFDATA2LSB` or `ELFDATA2MSB`.
    pub data: u8,
    /// `e_machine`.
    pub machine: u16,
}

impl Machine {
    /// "64-bit X86_64", "32-bit 386".
    pub fn describe(&self) -> String {
        let bits = if self.class == ELFCLASS32 { 32 } else { 64 };
        format!(
            "{bits}-bit {}",
            goblin::elf::header::machine_to_str(self.machine)
        )
    }
}

/// What an ELF file says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfInfo {
    pub machine: Machine,
    /// `e_type` (`ET_EXEC`, `ET_DYN`, …).
    pub e_type: u16,
    /// The dynamic loader named by `PT_INTERP`; `None` for a statically
    /// linked program (or a shared library).
    pub interpreter: Option<OsString>,
}

/// What kind of file the kernel will be asked to execute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileKind {
    Elf(ElfInfo),
    /// `#!interpreter …`.
    Script {
        interpreter: OsString,
    },
    /// Anything else (ENOEXEC, a malformed ELF, an empty file…): the kernel
    /// decides.
    Other,
}

/// A file's kind plus what secure-execution mode depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inspection {
    pub kind: FileKind,
    /// Executing it changes the user or group (set-user-ID/set-group-ID
    /// owned by someone else), or it carries file capabilities: the loader
    /// runs it in secure-execution mode and ignores `LD_PRELOAD` paths.
    pub secure_exec: bool,
}

/// Reads the head of `path` and classifies it.
pub fn inspect(path: &Path) -> io::Result<Inspection> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(Inspection {
            kind: FileKind::Other,
            secure_exec: false,
        });
    }
    let mut head = vec![0u8; HEAD];
    let n = read_at_most(&file, &mut head, 0)?;
    head.truncate(n);
    let kind = classify(&head, |offset, len| {
        let mut buf = vec![0u8; len];
        let n = read_at_most(&file, &mut buf, offset)?;
        buf.truncate(n);
        Ok(buf)
    });
    Ok(Inspection {
        kind,
        secure_exec: secure_exec(&file, &meta),
    })
}

/// Classifies a file from its first bytes; `read` fetches `len` bytes at an
/// offset when the program headers or the interpreter lie beyond `head`.
pub fn classify(head: &[u8], mut read: impl FnMut(u64, usize) -> io::Result<Vec<u8>>) -> FileKind {
    if head.len() >= SELFMAG && &head[..SELFMAG] == ELFMAG {
        return parse_elf(head, &mut read).map_or(FileKind::Other, FileKind::Elf);
    }
    if let Some(line) = head.strip_prefix(b"#!") {
        // Like the kernel: skip blanks, the interpreter ends at a blank or
        // the end of the line.
        let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
        let start = line.iter().position(|b| *b != b' ' && *b != b'\t');
        if let Some(start) = start {
            let rest = &line[start..];
            let end = rest
                .iter()
                .position(|b| *b == b' ' || *b == b'\t')
                .unwrap_or(rest.len());
            return FileKind::Script {
                interpreter: OsStr::from_bytes(&rest[..end]).to_os_string(),
            };
        }
    }
    FileKind::Other
}

fn parse_elf(
    head: &[u8],
    read: &mut impl FnMut(u64, usize) -> io::Result<Vec<u8>>,
) -> Option<ElfInfo> {
    let header = Elf::parse_header(head).ok()?;
    let container = match header.e_ident[EI_CLASS] {
        ELFCLASS32 => Container::Little,
        ELFCLASS64 => Container::Big,
        _ => return None,
    };
    let ctx = Ctx::new(container, header.endianness().ok()?);
    let machine = Machine {
        class: header.e_ident[EI_CLASS],
        data: header.e_ident[EI_DATA],
        machine: header.e_machine,
    };

    let count = usize::from(header.e_phnum);
    let entry_size = ProgramHeader::size(ctx);
    if count > 0 && usize::from(header.e_phentsize) != entry_size {
        return None;
    }
    let table_len = count * entry_size;
    if table_len > MAX_PHDRS_BYTES {
        return None;
    }
    let phdrs = match slice_at(head, header.e_phoff, table_len) {
        Some(table) => ProgramHeader::parse(table, 0, count, ctx).ok()?,
        None => {
            let table = read(header.e_phoff, table_len).ok()?;
            ProgramHeader::parse(&table, 0, count, ctx).ok()?
        }
    };

    let mut interpreter = None;
    if let Some(ph) = phdrs.iter().find(|ph| ph.p_type == PT_INTERP) {
        let len = usize::try_from(ph.p_filesz).ok()?.min(MAX_INTERP);
        let bytes = match slice_at(head, ph.p_offset, len) {
            Some(b) => b.to_vec(),
            None => read(ph.p_offset, len).ok()?,
        };
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        interpreter = Some(OsStr::from_bytes(&bytes[..end]).to_os_string());
    }
    Some(ElfInfo {
        machine,
        e_type: header.e_type,
        interpreter,
    })
}

/// `buf[offset..offset + len]` if it lies wholly inside `buf`.
fn slice_at(buf: &[u8], offset: u64, len: usize) -> Option<&[u8]> {
    let start = usize::try_from(offset).ok()?;
    buf.get(start..start.checked_add(len)?)
}

/// Fills as much of `buf` as the file has from `offset` (short only at EOF).
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Whether executing this file puts the loader in secure-execution mode
/// (glibc then ignores `LD_PRELOAD` entries with a `/`).
fn secure_exec(file: &File, meta: &std::fs::Metadata) -> bool {
    let mode = meta.mode();
    // SAFETY: getuid and getgid have no preconditions and cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let setuid = mode & libc::S_ISUID != 0 && meta.uid() != uid;
    // Without group-execute the set-group-ID bit means mandatory locking.
    let setgid = mode & (libc::S_ISGID | libc::S_IXGRP) == (libc::S_ISGID | libc::S_IXGRP)
        && meta.gid() != gid;
    setuid || setgid || (uid != 0 && has_file_capabilities(file))
}

fn has_file_capabilities(file: &File) -> bool {
    let name = c"security.capability";
    // SAFETY: the fd is open for the duration of the call, `name` is a
    // valid NUL-terminated string, and a null buffer of size 0 only asks for
    // the attribute's size.
    let size = unsafe { libc::fgetxattr(file.as_raw_fd(), name.as_ptr(), std::ptr::null_mut(), 0) };
    size > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use goblin::elf::header::{EM_386, EM_X86_64, ET_DYN, ET_EXEC};
    use std::process::Command;

    fn no_read(_: u64, _: usize) -> io::Result<Vec<u8>> {
        panic!("unexpected read beyond the head")
    }

    fn elf(path: &str) -> ElfInfo {
        match inspect(Path::new(path)).unwrap().kind {
            FileKind::Elf(info) => info,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn bin_true_is_dynamic() {
        let info = elf("/bin/true");
        let interp = info.interpreter.expect("PT_INTERP");
        assert!(interp.to_str().unwrap().contains("ld-"), "{interp:?}");
        assert!(info.e_type == ET_DYN || info.e_type == ET_EXEC);
        assert_eq!(info.machine.class, ELFCLASS64);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(info.machine.machine, EM_X86_64);
    }

    #[test]
    fn own_test_binary_is_dynamic() {
        let exe = std::env::current_exe().unwrap();
        assert!(elf(exe.to_str().unwrap()).interpreter.is_some());
    }

    #[test]
    fn static_binary_has_no_interpreter() {
        let t = TempDir::new();
        let src = t.file("s.c", b"int main(void) { return 0; }\n");
        let out = t.path().join("s");
        let built = Command::new("gcc")
            .arg("-static")
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .output();
        match built {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                eprintln!(
                    "SKIPPED static_binary_has_no_interpreter: gcc -static failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                return;
            }
            Err(e) => {
                eprintln!("SKIPPED static_binary_has_no_interpreter: no gcc ({e})");
                return;
            }
        }
        let info = elf(out.to_str().unwrap());
        assert_eq!(info.interpreter, None);
        assert_eq!(info.machine, elf("/bin/true").machine);
    }

    #[test]
    fn script_names_its_interpreter() {
        let t = TempDir::new();
        for (text, interp) in [
            (&b"#!/bin/sh\necho hi\n"[..], "/bin/sh"),
            (b"#! /usr/bin/env python3 -u\n", "/usr/bin/env"),
            (b"#!\t/bin/bash", "/bin/bash"),
        ] {
            let path = t.file("script", text);
            let kind = inspect(&path).unwrap().kind;
            assert_eq!(
                kind,
                FileKind::Script {
                    interpreter: interp.into()
                }
            );
        }
        assert_eq!(classify(b"#!\n", no_read), FileKind::Other);
        assert_eq!(classify(b"#!", no_read), FileKind::Other);
    }

    #[test]
    fn other_files() {
        assert_eq!(classify(b"", no_read), FileKind::Other);
        assert_eq!(classify(b"hello world", no_read), FileKind::Other);
        assert_eq!(classify(b"\x7fELF", no_read), FileKind::Other);
        // A real header cut short of its program headers.
        let head = std::fs::read("/bin/true").unwrap();
        let short = classify(&head[..64], |_, _| Ok(Vec::new()));
        assert_eq!(short, FileKind::Other);
    }

    /// A minimal ELF header (no program headers) for class/machine tests.
    fn synthetic_header(class: u8, machine: u16) -> Vec<u8> {
        let mut h = vec![0u8; if class == ELFCLASS32 { 52 } else { 64 }];
        h[..4].copy_from_slice(ELFMAG);
        h[EI_CLASS] = class;
        h[EI_DATA] = goblin::elf::header::ELFDATA2LSB;
        h[6] = 1; // EI_VERSION
        h[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        h[18..20].copy_from_slice(&machine.to_le_bytes());
        h[20..24].copy_from_slice(&1u32.to_le_bytes());
        h
    }

    #[test]
    fn thirty_two_bit_header() {
        let kind = classify(&synthetic_header(ELFCLASS32, EM_386), no_read);
        let FileKind::Elf(info) = kind else {
            panic!("{kind:?}")
        };
        assert_eq!(info.machine.class, ELFCLASS32);
        assert_eq!(info.machine.machine, EM_386);
        assert_eq!(info.machine.describe(), "32-bit 386");
        assert_eq!(info.interpreter, None);
    }

    #[test]
    fn program_headers_beyond_the_head_are_read() {
        // Move /bin/true's program headers and interpreter "beyond" the
        // head by handing classify only the ELF header.
        let whole = std::fs::read("/bin/true").unwrap();
        let mut reads = 0;
        let kind = classify(&whole[..64], |offset, len| {
            reads += 1;
            let start = offset as usize;
            Ok(whole[start..(start + len).min(whole.len())].to_vec())
        });
        assert_eq!(reads, 2, "program headers, then the interpreter");
        assert_eq!(kind, FileKind::Elf(elf("/bin/true")));
    }

    #[test]
    fn reads_only_the_head() {
        // A big file: classify must not read past the head for a plain ELF.
        let head = std::fs::read("/bin/true").unwrap();
        let kind = classify(&head[..HEAD.min(head.len())], no_read);
        assert!(matches!(kind, FileKind::Elf(_)));
    }

    #[test]
    fn setuid_other_owner_is_secure_exec() {
        // /bin/su (or passwd) is set-user-ID root; only for a non-root user
        // does that change the effective user.
        // SAFETY: getuid has no preconditions.
        let root = unsafe { libc::getuid() } == 0;
        for path in ["/bin/su", "/usr/bin/passwd"] {
            if let Ok(i) = inspect(Path::new(path)) {
                assert_eq!(i.secure_exec, !root, "{path}");
            }
        }
        assert!(!inspect(Path::new("/bin/true")).unwrap().secure_exec);
    }

    #[test]
    fn fifo_is_not_waited_for() {
        let t = TempDir::new();
        let fifo = t.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !matches!(made, Ok(s) if s.success()) {
            eprintln!("SKIPPED fifo_is_not_waited_for: no mkfifo");
            return;
        }
        assert_eq!(inspect(&fifo).unwrap().kind, FileKind::Other);
    }

    #[test]
    fn setuid_bit_on_own_file_is_not_secure_exec() {
        use std::os::unix::fs::PermissionsExt;
        let t = TempDir::new();
        let path = t.script("s");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o4755)).unwrap();
        assert!(!inspect(&path).unwrap().secure_exec);
    }
}
