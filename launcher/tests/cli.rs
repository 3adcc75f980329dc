//! The built `lumigo-run` binary, run for real.
//!
//! Each test puts the launcher in a fresh directory of its own (a hard link
//! or a copy), so that whether `liblumigo_preload.so` exists next to the
//! build output does not matter: a test either has no library at all, or
//! places a small real shared library next to its launcher. Every command
//! runs with a cleared environment, so the developer's own LUMIGO_* or
//! LD_PRELOAD variables cannot leak in.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const LAUNCHER: &str = env!("CARGO_BIN_EXE_lumigo-run");

/// A scratch directory with its own copy of the launcher in `bin/`.
struct Sandbox {
    root: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!("lumigo-run-cli-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("bin")).unwrap();
        let exe = root.join("bin/lumigo-run");
        if std::fs::hard_link(LAUNCHER, &exe).is_err() {
            std::fs::copy(LAUNCHER, &exe).unwrap();
        }
        Sandbox { root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `lumigo-run ARGS` with only PATH set, run from the sandbox.
    fn run(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.path("bin/lumigo-run"));
        cmd.args(args)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .current_dir(&self.root)
            .stdin(Stdio::null());
        cmd
    }

    fn write(&self, rel: &str, contents: &[u8], mode: u32) -> PathBuf {
        let path = self.path(rel);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    /// Builds a small, harmless shared library at `rel` with the C
    /// compiler; `None` (and a note) if there is none.
    fn shared_library(&self, rel: &str) -> Option<PathBuf> {
        let src = self.write("marker.c", b"int lumigo_run_test_marker = 1;\n", 0o644);
        let out = self.path(rel);
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&out)
            .arg(&src)
            .status();
        if matches!(status, Ok(s) if s.success()) {
            // A complete install: the transport library beside the preload.
            if out.file_name().is_some_and(|n| n == "liblumigo_preload.so") {
                std::fs::write(out.with_file_name("liblumigo_transport.so"), b"").unwrap();
            }
            Some(out)
        } else {
            eprintln!("SKIPPED: no working C compiler to build a stand-in library");
            None
        }
    }

    /// Builds a statically linked program printing `[$LD_PRELOAD]`.
    fn static_program(&self, rel: &str) -> Option<PathBuf> {
        let src = self.write(
            "static.c",
            b"#include <stdio.h>\n#include <stdlib.h>\n\
              int main(void) { const char *p = getenv(\"LD_PRELOAD\");\n\
              printf(\"[%s]\\n\", p ? p : \"\"); return 3; }\n",
            0o644,
        );
        let out = self.path(rel);
        let status = Command::new("gcc")
            .args(["-static", "-o"])
            .arg(&out)
            .arg(&src)
            .status();
        if matches!(status, Ok(s) if s.success()) {
            // A complete install: the transport library beside the preload.
            if out.file_name().is_some_and(|n| n == "liblumigo_preload.so") {
                std::fs::write(out.with_file_name("liblumigo_transport.so"), b"").unwrap();
            }
            Some(out)
        } else {
            eprintln!("SKIPPED: gcc -static is not available");
            None
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().expect("run lumigo-run")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A destination for spans, so that the launcher has nothing to say about
/// where they go.
const DESTINATION: (&str, &str) = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");

/// One line of `sh -c` output: the child's view of `$NAME`.
fn child_var(
    sandbox: &Sandbox,
    args: &[&str],
    envs: &[(&str, &str)],
    name: &str,
) -> (String, Output) {
    let script = format!("printf '%s' \"${{{name}}}\"");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["sh", "-c", &script]);
    let o = output(sandbox.run(&all).envs(envs.iter().copied()));
    (stdout(&o), o)
}

#[test]
fn exit_status_is_the_commands() {
    let s = Sandbox::new();
    let o = output(&mut s.run(&["sh", "-c", "exit 7"]));
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let o = output(&mut s.run(&["true"]));
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn death_by_signal_is_the_commands() {
    let s = Sandbox::new();
    let o = output(&mut s.run(&["sh", "-c", "kill -TERM $$"]));
    const SIGTERM: i32 = 15;
    assert_eq!(o.status.signal(), Some(SIGTERM), "{:?}", o.status);
    assert_eq!(o.status.code(), None);
}

#[test]
fn command_keeps_the_launchers_pid() {
    let s = Sandbox::new();
    let child = s
        .run(&["sh", "-c", "echo $$"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert_eq!(stdout(&o).trim(), pid.to_string());
}

#[test]
fn argv_is_passed_as_given() {
    let s = Sandbox::new();
    let o = output(&mut s.run(&["cat", "/proc/self/cmdline"]));
    assert_eq!(o.stdout, b"cat\0/proc/self/cmdline\0");
}

#[test]
fn command_not_found_is_127() {
    let s = Sandbox::new();
    let o = output(&mut s.run(&["no-such-command-lumigo-xyz", "arg"]));
    assert_eq!(o.status.code(), Some(127));
    assert_eq!(
        stderr(&o),
        "lumigo-run: no-such-command-lumigo-xyz: command not found\n"
    );
    let o = output(&mut s.run(&["./missing"]));
    assert_eq!(o.status.code(), Some(127));
    assert_eq!(
        stderr(&o),
        "lumigo-run: ./missing: No such file or directory\n"
    );
}

#[test]
fn not_executable_is_126() {
    let s = Sandbox::new();
    s.write("data.txt", b"hello", 0o644);
    let o = output(&mut s.run(&["./data.txt"]));
    assert_eq!(o.status.code(), Some(126));
    assert_eq!(stderr(&o), "lumigo-run: ./data.txt: Permission denied\n");

    std::fs::create_dir(s.path("dir")).unwrap();
    let o = output(&mut s.run(&["./dir"]));
    assert_eq!(o.status.code(), Some(126));
    assert_eq!(stderr(&o), "lumigo-run: ./dir: Is a directory\n");
}

#[test]
fn exec_failures_are_126() {
    let s = Sandbox::new();
    s.write("garbage", b"\x01\x02\x03 not a program", 0o755);
    let o = output(&mut s.run(&["./garbage"]));
    assert_eq!(o.status.code(), Some(126));
    assert!(
        stderr(&o).contains("./garbage: cannot execute binary file: Exec format error"),
        "{}",
        stderr(&o)
    );

    s.write("bad-interp", b"#!/nonexistent/interpreter\n", 0o755);
    let o = output(&mut s.run(&["./bad-interp"]));
    assert_eq!(o.status.code(), Some(126));
    assert!(
        stderr(&o).contains("/nonexistent/interpreter: bad interpreter"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn version_and_help() {
    let s = Sandbox::new();
    let o = output(&mut s.run(&["--version"]));
    assert!(o.status.success());
    assert_eq!(
        stdout(&o),
        format!("lumigo-run {}\n", env!("CARGO_PKG_VERSION"))
    );

    let o = output(&mut s.run(&["--help"]));
    assert!(o.status.success());
    let help = stdout(&o);
    for needle in [
        "--service-name",
        "--token",
        "--endpoint",
        "--spandump",
        "--debug",
        "--process-span",
        "python3",
        "nginx",
        "ENTRYPOINT [\"lumigo-run\", \"--\"]",
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318",
        "LUMIGO_SWITCH_OFF",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn no_command_is_a_usage_error() {
    let s = Sandbox::new();
    let o = output(&mut s.run(&[]));
    assert_eq!(o.status.code(), Some(2));
    let o = output(&mut s.run(&["--debug"]));
    assert_eq!(o.status.code(), Some(2));
    let o = output(&mut s.run(&["--no-such-option", "true"]));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn options_stop_at_the_command() {
    let s = Sandbox::new();
    // `--debug` and `--version` after the command word are the command's.
    let o = output(&mut s.run(&[
        "sh",
        "-c",
        "printf '%s|' \"$@\"",
        "sh",
        "-v",
        "--debug",
        "--version",
    ]));
    assert_eq!(stdout(&o), "-v|--debug|--version|");
    assert!(!stderr(&o).contains("#LUMIGO#"), "{}", stderr(&o));

    // `--` ends our options; the command sees the variable the flag set.
    let (value, _) = child_var(
        &s,
        &["--service-name", "shop", "--"],
        &[],
        "OTEL_SERVICE_NAME",
    );
    assert_eq!(value, "shop");
}

#[test]
fn flags_become_variables_and_win() {
    let s = Sandbox::new();
    let env = [
        ("OTEL_SERVICE_NAME", "from-env"),
        ("LUMIGO_TRACER_TOKEN", "t_env"),
    ];
    let args = [
        "--service-name",
        "from-flag",
        "--token",
        "t_flag",
        "--process-span",
    ];
    assert_eq!(
        child_var(&s, &args, &env, "OTEL_SERVICE_NAME").0,
        "from-flag"
    );
    assert_eq!(
        child_var(&s, &args, &env, "LUMIGO_TRACER_TOKEN").0,
        "t_flag"
    );
    assert_eq!(child_var(&s, &args, &env, "LUMIGO_PROCESS_SPAN").0, "true");
    assert_eq!(child_var(&s, &[], &env, "OTEL_SERVICE_NAME").0, "from-env");
    assert_eq!(
        child_var(
            &s,
            &["--endpoint", "http://e/v1/traces"],
            &[],
            "LUMIGO_ENDPOINT"
        )
        .0,
        "http://e/v1/traces"
    );
}

#[test]
fn spandump_path_is_made_absolute() {
    let s = Sandbox::new();
    let (value, _) = child_var(
        &s,
        &["--spandump", "spans.jsonl"],
        &[],
        "LUMIGO_DEBUG_SPANDUMP",
    );
    let cwd = s.root.canonicalize().unwrap();
    assert_eq!(Path::new(&value), cwd.join("spans.jsonl"));
}

#[test]
fn missing_library_warns_and_runs_untraced() {
    let s = Sandbox::new();
    let (value, o) = child_var(&s, &[], &[("LD_PRELOAD", "")], "LD_PRELOAD");
    assert!(o.status.success());
    assert_eq!(value, "");
    let err = stderr(&o);
    assert!(
        err.starts_with("lumigo-run: warning: liblumigo_preload.so not found")
            && err.ends_with("; running sh without tracing\n")
            && err.lines().count() == 1,
        "{err}"
    );
    // A wrong LUMIGO_PRELOAD_PATH is named in the warning.
    let (_, o) = child_var(
        &s,
        &[],
        &[("LUMIGO_PRELOAD_PATH", "/nonexistent/x.so")],
        "LD_PRELOAD",
    );
    assert!(stderr(&o).contains("/nonexistent/x.so"), "{}", stderr(&o));
}

#[test]
fn unusable_library_warns_and_runs_untraced() {
    let s = Sandbox::new();
    // Not ELF: preloading it would make the loader print errors in the app.
    s.write("bin/liblumigo_preload.so", b"not a library", 0o644);
    let (value, o) = child_var(&s, &[], &[], "LD_PRELOAD");
    assert!(o.status.success());
    assert_eq!(value, "");
    assert!(
        stderr(&o).contains("not an ELF shared library; running sh without tracing"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn library_next_to_the_launcher_is_preloaded_first() {
    let s = Sandbox::new();
    let Some(lib) = s.shared_library("bin/liblumigo_preload.so") else {
        return;
    };
    let (value, o) = child_var(&s, &[], &[DESTINATION], "LD_PRELOAD");
    assert_eq!(value, lib.to_str().unwrap(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "no warnings when all is well");

    // Without the transport library beside it: traced, with a warning
    // when a destination needs it (https:// or gRPC), silently for a plain
    // http:// one, which the preload library serves itself.
    let transport = lib.with_file_name("liblumigo_transport.so");
    std::fs::remove_file(&transport).unwrap();
    let (value, o) = child_var(&s, &[], &[DESTINATION], "LD_PRELOAD");
    assert_eq!(value, lib.to_str().unwrap());
    assert_eq!(stderr(&o), "", "http:// needs no transport library");
    let https = ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4318");
    let (value, o) = child_var(&s, &[], &[https], "LD_PRELOAD");
    assert_eq!(value, lib.to_str().unwrap());
    assert!(
        stderr(&o).contains(&format!(
            "warning: {} is missing: spans cannot be sent over OTLP",
            transport.display()
        )),
        "{}",
        stderr(&o)
    );
    std::fs::write(&transport, b"").unwrap();

    // Existing entries are kept, after ours.
    let Some(other) = s.shared_library("other/libother.so") else {
        return;
    };
    let other = other.to_str().unwrap();
    let (value, _) = child_var(&s, &[], &[("LD_PRELOAD", other)], "LD_PRELOAD");
    assert_eq!(value, format!("{}:{other}", lib.display()));

    // Already there: left as it is.
    let both = format!("{other}:{}", lib.display());
    let (value, _) = child_var(&s, &[], &[("LD_PRELOAD", &both)], "LD_PRELOAD");
    assert_eq!(value, both);
}

#[test]
fn library_from_install_prefix_and_preload_path() {
    let s = Sandbox::new();
    let Some(lib) = s.shared_library("lib/lumigo/liblumigo_preload.so") else {
        return;
    };
    assert_eq!(
        child_var(&s, &[], &[], "LD_PRELOAD").0,
        lib.to_str().unwrap()
    );

    let s = Sandbox::new();
    let Some(lib) = s.shared_library("elsewhere/custom.so") else {
        return;
    };
    let env = [("LUMIGO_PRELOAD_PATH", "elsewhere/custom.so")];
    let (value, o) = child_var(&s, &[], &env, "LD_PRELOAD");
    assert_eq!(
        Path::new(&value),
        lib.canonicalize().unwrap(),
        "{}",
        stderr(&o)
    );
}

#[test]
fn switch_off_passes_the_environment_untouched() {
    let s = Sandbox::new();
    let Some(_) = s.shared_library("bin/liblumigo_preload.so") else {
        return;
    };
    let env = [
        ("LUMIGO_SWITCH_OFF", "True"),
        ("LD_PRELOAD", ""),
        ("LUMIGO_DEBUG_SPANDUMP", "relative.jsonl"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "broken"),
    ];
    let direct = output(
        Command::new("env")
            .env_clear()
            .envs(env)
            .env("PATH", std::env::var_os("PATH").unwrap()),
    );
    let o = output(s.run(&["--service-name", "x", "--debug", "env"]).envs(env));
    assert!(o.status.success());
    assert_eq!(stdout(&o), stdout(&direct));
    assert_eq!(stderr(&o), "", "switched off: no warnings");
}

#[test]
fn static_program_runs_untraced_with_a_warning() {
    let s = Sandbox::new();
    let Some(_) = s.shared_library("bin/liblumigo_preload.so") else {
        return;
    };
    let Some(_) = s.static_program("static-app") else {
        return;
    };
    let o = output(&mut s.run(&["./static-app"]));
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(stdout(&o), "[]\n");
    let err = stderr(&o);
    assert!(
        err.contains("static-app is statically linked, so it cannot be traced"),
        "{err}"
    );
    assert!(
        err.ends_with("; running ./static-app without tracing\n"),
        "{err}"
    );
}

#[test]
fn debug_tells_what_was_decided() {
    let s = Sandbox::new();
    let Some(lib) = s.shared_library("bin/liblumigo_preload.so") else {
        return;
    };
    let o = output(&mut s.run(&["--debug", "true"]));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("#LUMIGO# lumigo-run: library: {}", lib.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "#LUMIGO# lumigo-run: injecting: LD_PRELOAD={}",
            lib.display()
        )),
        "{err}"
    );

    let o = output(s.run(&["true"]).env("LUMIGO_DEBUG", "TRUE"));
    assert!(
        stderr(&o).contains("#LUMIGO# lumigo-run: injecting"),
        "{}",
        stderr(&o)
    );
    let o = output(s.run(&["true"]).env(DESTINATION.0, DESTINATION.1));
    assert_eq!(stderr(&o), "");
}

#[test]
fn config_warnings_are_shown_without_debug() {
    let s = Sandbox::new();
    let o = output(s.run(&["true"]).env("OTEL_BSP_MAX_QUEUE_SIZE", "-1"));
    assert!(o.status.success());
    assert!(
        stderr(&o).contains(
            "lumigo-run: warning: OTEL_BSP_MAX_QUEUE_SIZE=\"-1\" is not a positive whole number"
        ),
        "{}",
        stderr(&o)
    );
    // A flag replaces a broken value: no warning about it.
    let o = output(s.run(&["--debug", "true"]).env("LUMIGO_DEBUG", "maybe"));
    assert!(!stderr(&o).contains("maybe"), "{}", stderr(&o));
}

#[test]
fn sigpipe_disposition_is_inherited_not_the_runtimes() {
    // Rust ignores SIGPIPE at start-up; the command must get what the
    // launcher got. Bit 13 of SigIgn is SIGPIPE.
    let s = Sandbox::new();
    let sigpipe_ignored = |o: &Output| {
        let text = stdout(o);
        let mask = text
            .trim()
            .strip_prefix("SigIgn:")
            .expect("SigIgn line")
            .trim();
        u64::from_str_radix(mask, 16).unwrap() & (1 << 12) != 0
    };
    let o = output(&mut s.run(&["grep", "SigIgn", "/proc/self/status"]));
    assert!(!sigpipe_ignored(&o), "{}", stdout(&o));

    let launcher = s.path("bin/lumigo-run");
    let script = format!(
        "trap '' PIPE; exec {} grep SigIgn /proc/self/status",
        launcher.display()
    );
    let o = output(
        Command::new("sh")
            .args(["-c", &script])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap()),
    );
    assert!(sigpipe_ignored(&o), "{}", stdout(&o));
}

#[test]
fn switch_off_debug_comes_from_the_environment_only() {
    let s = Sandbox::new();
    let o = output(
        s.run(&["true"])
            .env("LUMIGO_SWITCH_OFF", "true")
            .env("LUMIGO_DEBUG", "true"),
    );
    assert!(
        stderr(&o).contains("#LUMIGO# lumigo-run: LUMIGO_SWITCH_OFF is set"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn closed_stdin_stays_closed() {
    // The Rust runtime would have put /dev/null there.
    let s = Sandbox::new();
    let launcher = s.path("bin/lumigo-run");
    let script = format!(
        "exec 0<&-; exec {} sh -c 'if [ -e /proc/$$/fd/0 ]; then echo open; else echo closed; fi'",
        launcher.display()
    );
    let o = output(
        Command::new("sh")
            .args(["-c", &script])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap()),
    );
    assert_eq!(stdout(&o), "closed\n", "{}", stderr(&o));
}

#[test]
fn switch_off_accepts_1_yes_on_in_any_case() {
    let s = Sandbox::new();
    let Some(_) = s.shared_library("bin/liblumigo_preload.so") else {
        return;
    };
    for on in ["1", "yes", "ON", "True"] {
        let (value, o) = child_var(&s, &[], &[("LUMIGO_SWITCH_OFF", on)], "LD_PRELOAD");
        assert_eq!(value, "", "LUMIGO_SWITCH_OFF={on}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "LUMIGO_SWITCH_OFF={on}");
        // The switched-off launcher's own debug check reads the same words.
        let o = output(
            s.run(&["true"])
                .env("LUMIGO_SWITCH_OFF", on)
                .env("LUMIGO_DEBUG", on),
        );
        assert!(
            stderr(&o).contains("#LUMIGO# lumigo-run: LUMIGO_SWITCH_OFF is set"),
            "LUMIGO_SWITCH_OFF={on}: {}",
            stderr(&o)
        );
    }
    let (value, _) = child_var(
        &s,
        &[],
        &[("LUMIGO_SWITCH_OFF", "0"), DESTINATION],
        "LD_PRELOAD",
    );
    assert!(!value.is_empty(), "LUMIGO_SWITCH_OFF=0 traces");
}

#[test]
fn no_destination_says_once_that_spans_go_nowhere() {
    let s = Sandbox::new();
    let Some(_) = s.shared_library("bin/liblumigo_preload.so") else {
        return;
    };
    let o = output(&mut s.run(&["true"]));
    assert!(o.status.success());
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("spans go nowhere"), "{err}");
    for how in [
        "LUMIGO_TRACER_TOKEN",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "--spandump",
    ] {
        assert!(err.contains(how), "{err}");
    }
    // Any destination silences it: a token, an endpoint, a span dump.
    let dump = s.path("spans.jsonl");
    let dump = dump.to_str().unwrap();
    for args in [
        vec!["--token", "t_1", "true"],
        vec!["--spandump", dump, "true"],
    ] {
        let o = output(&mut s.run(&args));
        assert_eq!(stderr(&o), "", "{args:?}");
    }
    let o = output(s.run(&["true"]).env(DESTINATION.0, DESTINATION.1));
    assert_eq!(stderr(&o), "");
    // Switched off, nothing is traced and nothing is said.
    let o = output(s.run(&["true"]).env("LUMIGO_SWITCH_OFF", "yes"));
    assert_eq!(stderr(&o), "");
}
