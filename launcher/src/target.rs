//! Can the command load the library? The decision, from what [`elf`]
//! found in the command's file (and in its `#!` interpreter's).
//!
//! Injecting where the loader cannot honour it is worse than useless: a
//! 32-bit program or a musl one would print loader errors (musl's loader
//! even refuses to start the program), so those run untraced, with a
//! warning. Static programs simply ignore `LD_PRELOAD`; they get a warning
//! so that nobody waits for spans that cannot come.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use goblin::elf::header::ET_DYN;

use crate::elf::{self, ElfInfo, FileKind, Machine};

/// The kernel follows at most this many `#!` interpreters (Linux: 4).
const MAX_SCRIPT_DEPTH: usize = 4;

/// Why a program cannot load the library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Obstacle {
    /// No `PT_INTERP`: no dynamic loader, so no `LD_PRELOAD`.
    Static,
    /// Its loader is musl's; the library is linked against glibc.
    Musl { loader: OsString },
    /// Built for another class or machine than the library.
    Machine { program: Machine, library: Machine },
}

/// What the loader will make of the command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The program that cannot load the library (the command, or the
    /// interpreter of a script) and why.
    pub obstacle: Option<(PathBuf, Obstacle)>,
    /// The command runs in secure-execution mode: `LD_PRELOAD` is ignored.
    pub secure_exec: bool,
    /// The file could not be read (e.g. execute-only): nothing is known.
    pub unknown: bool,
}

/// A warning sentence for an obstacle met by `program`.
pub fn describe(program: &Path, obstacle: &Obstacle) -> String {
    let program = program.display();
    match obstacle {
        Obstacle::Static => format!("{program} is statically linked, so it cannot be traced"),
        Obstacle::Musl { loader } => format!(
            "{program} uses the musl C library ({}); the tracer library is built for glibc",
            loader.to_string_lossy()
        ),
        Obstacle::Machine {
            program: p,
            library,
        } => format!(
            "{program} is a {} program; the tracer library is {}",
            p.describe(),
            library.describe()
        ),
    }
}

/// Inspects `path` (following `#!` interpreters) for a library built for
/// `library`.
pub fn check(path: &Path, library: &Machine) -> Verdict {
    let mut verdict = Verdict {
        obstacle: None,
        secure_exec: false,
        unknown: false,
    };
    let mut program = path.to_path_buf();
    for depth in 0..MAX_SCRIPT_DEPTH {
        let inspection = match elf::inspect(&program) {
            Ok(i) => i,
            // An unreadable command: inject and let the loader decide. A
            // missing interpreter: exec will report it.
            Err(_) => {
                verdict.unknown = depth == 0;
                return verdict;
            }
        };
        if depth == 0 {
            // The kernel ignores set-ID bits on scripts.
            verdict.secure_exec =
                inspection.secure_exec && !matches!(inspection.kind, FileKind::Script { .. });
        }
        match inspection.kind {
            FileKind::Elf(info) => {
                verdict.obstacle = obstacle(&program, &info, library).map(|o| (program, o));
                return verdict;
            }
            FileKind::Script { interpreter } => program = PathBuf::from(interpreter),
            FileKind::Other => return verdict,
        }
    }
    verdict
}

/// Whether the ELF program at `path` described by `info` can load a library
/// built for `library`.
pub fn obstacle(path: &Path, info: &ElfInfo, library: &Machine) -> Option<Obstacle> {
    if info.machine != *library {
        return Some(Obstacle::Machine {
            program: info.machine,
            library: *library,
        });
    }
    match &info.interpreter {
        Some(loader) if contains(loader, b"musl") => Some(Obstacle::Musl {
            loader: loader.clone(),
        }),
        Some(_) => None,
        // The dynamic loader itself, run as a program
        // (`ld-linux-x86-64.so.2 ./app`), honours LD_PRELOAD.
        None if info.e_type == ET_DYN && is_glibc_loader(path) => None,
        None => Some(Obstacle::Static),
    }
}

fn is_glibc_loader(path: &Path) -> bool {
    let name = path.file_name().map(OsStr::as_bytes).unwrap_or_default();
    [&b"ld-linux"[..], b"ld.so", b"ld64.so"]
        .iter()
        .any(|p| name.starts_with(p))
}

fn contains(haystack: &OsStr, needle: &[u8]) -> bool {
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use goblin::elf::header::{ELFCLASS32, ELFCLASS64, ELFDATA2LSB, EM_386, EM_X86_64, ET_EXEC};

    const X86_64: Machine = Machine {
        class: ELFCLASS64,
        data: ELFDATA2LSB,
        machine: EM_X86_64,
    };
    const I386: Machine = Machine {
        class: ELFCLASS32,
        data: ELFDATA2LSB,
        machine: EM_386,
    };

    fn info(machine: Machine, e_type: u16, interpreter: Option<&str>) -> ElfInfo {
        ElfInfo {
            machine,
            e_type,
            interpreter: interpreter.map(OsString::from),
        }
    }

    fn native() -> Machine {
        match elf::inspect(Path::new("/bin/true")).unwrap().kind {
            FileKind::Elf(i) => i.machine,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn table_of_obstacles() {
        let p = Path::new("/usr/bin/app");
        let glibc = "/lib64/ld-linux-x86-64.so.2";
        let musl = "/lib/ld-musl-x86_64.so.1";
        let cases: &[(ElfInfo, Option<Obstacle>)] = &[
            (info(X86_64, ET_DYN, Some(glibc)), None),
            (info(X86_64, ET_EXEC, Some(glibc)), None),
            (info(X86_64, ET_EXEC, None), Some(Obstacle::Static)),
            // static-pie
            (info(X86_64, ET_DYN, None), Some(Obstacle::Static)),
            (
                info(X86_64, ET_DYN, Some(musl)),
                Some(Obstacle::Musl {
                    loader: musl.into(),
                }),
            ),
            (
                info(I386, ET_EXEC, Some("/lib/ld-linux.so.2")),
                Some(Obstacle::Machine {
                    program: I386,
                    library: X86_64,
                }),
            ),
        ];
        for (info, expected) in cases {
            assert_eq!(obstacle(p, info, &X86_64), *expected, "{info:?}");
        }
        // The glibc loader run directly has no PT_INTERP but preloads fine.
        let ld = Path::new("/lib64/ld-linux-x86-64.so.2");
        assert_eq!(obstacle(ld, &info(X86_64, ET_DYN, None), &X86_64), None);
    }

    #[test]
    fn messages() {
        let p = Path::new("/app");
        assert_eq!(
            describe(p, &Obstacle::Static),
            "/app is statically linked, so it cannot be traced"
        );
        assert_eq!(
            describe(
                p,
                &Obstacle::Machine {
                    program: I386,
                    library: X86_64
                }
            ),
            "/app is a 32-bit 386 program; the tracer library is 64-bit X86_64"
        );
        assert!(describe(
            p,
            &Obstacle::Musl {
                loader: "/lib/ld-musl-x86_64.so.1".into()
            }
        )
        .contains("musl C library (/lib/ld-musl-x86_64.so.1)"));
    }

    #[test]
    fn real_dynamic_program_is_traceable() {
        let v = check(Path::new("/bin/true"), &native());
        assert_eq!(
            v,
            Verdict {
                obstacle: None,
                secure_exec: false,
                unknown: false
            }
        );
    }

    #[test]
    fn real_program_with_another_machine_library() {
        let other = Machine {
            class: ELFCLASS32,
            data: ELFDATA2LSB,
            machine: 0x1234,
        };
        let v = check(Path::new("/bin/true"), &other);
        assert!(
            matches!(v.obstacle, Some((_, Obstacle::Machine { .. }))),
            "{v:?}"
        );
    }

    #[test]
    fn script_is_judged_by_its_interpreter() {
        let t = TempDir::new();
        let script = t.script("s");
        let v = check(&script, &native());
        assert_eq!(v.obstacle, None);

        // An interpreter that is itself a script of a missing interpreter.
        let inner = t.file("inner", b"#!/nonexistent/interp\n");
        let outer = t.file("outer", format!("#!{}\n", inner.display()).as_bytes());
        assert_eq!(check(&outer, &native()).obstacle, None);

        // A static interpreter.
        let src = t.file("s.c", b"int main(void) { return 0; }\n");
        let st = t.path().join("static-interp");
        let built = std::process::Command::new("gcc")
            .arg("-static")
            .arg("-o")
            .arg(&st)
            .arg(&src)
            .status();
        if !matches!(built, Ok(s) if s.success()) {
            eprintln!(
                "SKIPPED part of script_is_judged_by_its_interpreter: gcc -static unavailable"
            );
            return;
        }
        let script = t.file("static-script", format!("#!{}\n", st.display()).as_bytes());
        let v = check(&script, &native());
        assert_eq!(v.obstacle, Some((st.clone(), Obstacle::Static)));
        assert_eq!(check(&st, &native()).obstacle, Some((st, Obstacle::Static)));
    }

    #[test]
    fn unreadable_or_non_elf_is_injected() {
        let t = TempDir::new();
        let text = t.file("text", b"just text");
        assert_eq!(
            check(&text, &native()),
            Verdict {
                obstacle: None,
                secure_exec: false,
                unknown: false
            }
        );
        let missing = check(&t.path().join("missing"), &native());
        assert!(missing.unknown && missing.obstacle.is_none());
    }
}
