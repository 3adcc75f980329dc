//! Finding `liblumigo_preload.so`: next to the launcher, then in
//! `../lib/lumigo/` (an install prefix), then at `LUMIGO_PRELOAD_PATH`.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use goblin::elf::header::ET_DYN;

use crate::elf::{self, FileKind, Machine};
use crate::env::absolute;

pub const LIBRARY_FILE_NAME: &str = "liblumigo_preload.so";

/// OTLP's HTTP client, which the preload library loads from beside itself
/// when it first exports.
pub const TRANSPORT_FILE_NAME: &str = "liblumigo_transport.so";

/// A library the loader can preload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Library {
    /// Absolute.
    pub path: PathBuf,
    /// What a program must be built for to load it.
    pub machine: Machine,
}

#[derive(Debug)]
pub enum LibraryError {
    /// No candidate exists.
    NotFound { searched: Vec<PathBuf> },
    /// The first existing candidate cannot be preloaded.
    Unusable { path: PathBuf, reason: String },
}

impl fmt::Display for LibraryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LibraryError::NotFound { searched } => {
                write!(f, "{LIBRARY_FILE_NAME} not found (looked for ")?;
                for (i, path) in searched.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{}", path.display())?;
                }
                if searched.is_empty() {
                    f.write_str("nothing")?;
                }
                f.write_str("; LUMIGO_PRELOAD_PATH can name it)")
            }
            LibraryError::Unusable { path, reason } => {
                write!(f, "cannot preload {}: {reason}", path.display())
            }
        }
    }
}

/// The places to look, in order. `exe` is the launcher's own (resolved)
/// path, `preload_path` the value of `LUMIGO_PRELOAD_PATH`.
pub fn candidates(exe: Option<&Path>, preload_path: Option<&OsStr>, cwd: &Path) -> Vec<PathBuf> {
    let mut out = Vec::with_capacity(3);
    if let Some(dir) = exe.and_then(Path::parent) {
        out.push(dir.join(LIBRARY_FILE_NAME));
        if let Some(prefix) = dir.parent() {
            out.push(prefix.join("lib/lumigo").join(LIBRARY_FILE_NAME));
        }
    }
    if let Some(path) = preload_path.filter(|p| !p.is_empty()) {
        out.push(absolute(Path::new(path), cwd));
    }
    out
}

/// The first candidate that exists, checked for use in `LD_PRELOAD`. A
/// directory given as `LUMIGO_PRELOAD_PATH` is searched for the library.
pub fn locate(candidates: &[PathBuf]) -> Result<Library, LibraryError> {
    let mut searched = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let mut path = candidate.clone();
        let mut meta = path.metadata();
        if meta.as_ref().is_ok_and(|m| m.is_dir()) {
            path.push(LIBRARY_FILE_NAME);
            meta = path.metadata();
        }
        match meta {
            Ok(_) => return check(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => searched.push(path),
            Err(e) => {
                return Err(LibraryError::Unusable {
                    path,
                    reason: e.to_string(),
                })
            }
        }
    }
    Err(LibraryError::NotFound { searched })
}

fn check(path: PathBuf) -> Result<Library, LibraryError> {
    let unusable = |path: PathBuf, reason: String| Err(LibraryError::Unusable { path, reason });
    // The loader splits LD_PRELOAD on both; there is no quoting.
    if path
        .as_os_str()
        .as_bytes()
        .iter()
        .any(|b| matches!(b, b' ' | b':'))
    {
        return unusable(
            path,
            "LD_PRELOAD cannot hold a path with a space or ':'".into(),
        );
    }
    match elf::inspect(&path) {
        Ok(inspection) => match inspection.kind {
            FileKind::Elf(info) if info.e_type == ET_DYN => Ok(Library {
                path,
                machine: info.machine,
            }),
            _ => unusable(path, "not an ELF shared library".into()),
        },
        Err(e) => unusable(path, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    /// A real shared library of this machine, copied under the given name.
    fn real_library(t: &TempDir, rel: &str) -> PathBuf {
        let bytes = std::fs::read(crate::testutil::mapped_libc()).unwrap();
        t.file(rel, &bytes)
    }

    #[test]
    fn candidate_order() {
        let c = candidates(
            Some(Path::new("/usr/local/bin/lumigo-run")),
            Some(OsStr::new("lib/x.so")),
            Path::new("/work"),
        );
        assert_eq!(
            c,
            [
                PathBuf::from("/usr/local/bin/liblumigo_preload.so"),
                PathBuf::from("/usr/local/lib/lumigo/liblumigo_preload.so"),
                PathBuf::from("/work/lib/x.so"),
            ]
        );
        assert_eq!(
            candidates(None, Some(OsStr::new("")), Path::new("/")),
            Vec::<PathBuf>::new()
        );
    }

    #[test]
    fn first_existing_candidate_wins() {
        let t = TempDir::new();
        t.subdir("bin");
        t.subdir("lib/lumigo");
        let prefix_lib = real_library(&t, "lib/lumigo/liblumigo_preload.so");
        let env_lib = real_library(&t, "custom.so");
        let exe = t.path().join("bin/lumigo-run");
        let found = locate(&candidates(Some(&exe), Some(env_lib.as_os_str()), t.path())).unwrap();
        assert_eq!(found.path, prefix_lib);

        let next_to_exe = real_library(&t, "bin/liblumigo_preload.so");
        let found = locate(&candidates(Some(&exe), Some(env_lib.as_os_str()), t.path())).unwrap();
        assert_eq!(found.path, next_to_exe);
    }

    #[test]
    fn preload_path_file_or_directory() {
        let t = TempDir::new();
        let lib = real_library(&t, "liblumigo_preload.so");
        let exe = Path::new("/nonexistent/bin/lumigo-run");
        let found = locate(&candidates(Some(exe), Some(lib.as_os_str()), t.path())).unwrap();
        assert_eq!(found.path, lib);
        assert_eq!(found.machine, elf_machine_of_bin_true());
        let found = locate(&candidates(Some(exe), Some(t.path().as_os_str()), t.path())).unwrap();
        assert_eq!(found.path, lib);
    }

    fn elf_machine_of_bin_true() -> Machine {
        match elf::inspect(Path::new("/bin/true")).unwrap().kind {
            FileKind::Elf(info) => info.machine,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_library_lists_the_places_searched() {
        let exe = Path::new("/nonexistent/bin/lumigo-run");
        let err = locate(&candidates(Some(exe), None, Path::new("/"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "liblumigo_preload.so not found (looked for /nonexistent/bin/liblumigo_preload.so, \
             /nonexistent/lib/lumigo/liblumigo_preload.so; LUMIGO_PRELOAD_PATH can name it)"
        );
    }

    #[test]
    fn unusable_libraries() {
        let t = TempDir::new();
        let text = t.file("liblumigo_preload.so", b"not a library");
        let err = locate(std::slice::from_ref(&text)).unwrap_err();
        assert!(
            err.to_string().ends_with("not an ELF shared library"),
            "{err}"
        );

        t.subdir("with space");
        let spaced = real_library(&t, "with space/liblumigo_preload.so");
        let err = locate(&[spaced]).unwrap_err();
        assert!(err.to_string().contains("space or ':'"), "{err}");

        // A static executable is ELF but not a shared library.
        let gcc_static = t.path().join("static");
        let src = t.file("s.c", b"int main(void) { return 0; }\n");
        let built = std::process::Command::new("gcc")
            .args(["-static", "-o"])
            .arg(&gcc_static)
            .arg(&src)
            .status();
        if matches!(built, Ok(s) if s.success()) {
            let err = locate(&[gcc_static]).unwrap_err();
            assert!(
                err.to_string().ends_with("not an ELF shared library"),
                "{err}"
            );
        } else {
            eprintln!("SKIPPED part of unusable_libraries: gcc -static unavailable");
        }
    }
}
