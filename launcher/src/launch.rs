//! From the parsed command line to `execve`: find the command, read the
//! configuration, find the library, decide whether to inject it, build the
//! environment, exec.
//!
//! Tracing never stops a command from running: every problem on the way
//! (no library, a program that cannot load it) is one warning, and the
//! command runs untraced. Only a command that cannot run at all ends here,
//! with the status a shell would give.

use std::ffi::OsStr;
use std::path::Path;

use lumigo_core::config::Config;

use crate::cli::Cli;
use crate::env::{self, lookup, Env, Tracing};
use crate::library::{self, Library};
use crate::{command, diag, dump, exec, target};

/// Said once, by the launcher (the library stays silent without
/// `LUMIGO_DEBUG`), when a traced command's spans have nowhere to go.
const NO_DESTINATION: &str = "no destination set, so spans go nowhere; \
     set LUMIGO_TRACER_TOKEN (Lumigo), OTEL_EXPORTER_OTLP_ENDPOINT (an OTLP collector) \
     or --spandump FILE";

/// Runs the command; returns the exit status only if it could not be
/// started.
pub fn run(cli: Cli) -> i32 {
    let current: Env = std::env::vars_os().collect();
    let word = &cli.command[0];
    let path = match command::resolve(word, lookup(&current, "PATH")) {
        Ok(path) => path,
        Err(e) => {
            diag::error(format_args!("{}: {e}", word.to_string_lossy()));
            return e.exit_code();
        }
    };
    // If the working directory is gone, relative paths stay relative.
    let cwd = std::env::current_dir().unwrap_or_default();

    // The configuration the command will see: flags over the environment.
    let flag_vars = env::flag_vars(&cli.flags, &cwd);
    let config = Config::from_lookup(|name| {
        flag_vars
            .iter()
            .find(|(flag_name, _)| *flag_name == name)
            .map(|(_, value)| value.as_os_str())
            .or_else(|| lookup(&current, name))
            .map(|value| value.to_string_lossy().into_owned())
    });
    let tracing = if config.switch_off {
        // The flags are ignored too, `--debug` included.
        let debug = lookup(&current, "LUMIGO_DEBUG")
            .is_some_and(|v| lumigo_core::config::is_true(&v.to_string_lossy()));
        diag::debug(
            debug,
            format_args!(
                "{}: running {} untouched",
                config.switch_off_reason,
                path.display()
            ),
        );
        Tracing::SwitchedOff
    } else {
        let debug = config.debug;
        diag::debug(
            debug,
            format_args!(
                "version {}, command {}",
                lumigo_core::VERSION,
                path.display()
            ),
        );
        for warning in &config.warnings {
            diag::warn(warning);
        }
        if let Some(dump) = &config.spandump {
            dump::warn_if_refused(dump);
        }
        let needs_transport = config
            .destinations
            .iter()
            .any(lumigo_core::export::needs_transport_library);
        let tracing = decide(word, &path, &current, &cwd, debug, needs_transport);
        if matches!(tracing, Tracing::Preload(_)) && !config.has_destination() {
            diag::warn(NO_DESTINATION);
        }
        tracing
    };

    let child = env::child_env(current, &cli.flags, &cwd, &tracing);
    let failure = exec::exec(&path, &cli.command, &child);
    diag::error(format_args!(
        "{}: {}",
        word.to_string_lossy(),
        failure.message
    ));
    failure.exit_code
}

/// Whether to preload the library into `path`, warning when tracing is off
/// for a reason the user should know.
/// `needs_transport`: a destination is served by the transport library
/// (`https://` or gRPC; plain `http://` collectors are not).
fn decide(
    word: &OsStr,
    path: &Path,
    current: &Env,
    cwd: &Path,
    debug: bool,
    needs_transport: bool,
) -> Tracing {
    let untraced = |reason: &dyn std::fmt::Display| {
        diag::warn(format_args!(
            "{reason}; running {} without tracing",
            word.to_string_lossy()
        ));
        Tracing::Uninstrumented
    };

    let exe = std::env::current_exe().ok();
    let candidates =
        library::candidates(exe.as_deref(), lookup(current, "LUMIGO_PRELOAD_PATH"), cwd);
    let Library {
        path: library,
        machine,
    } = match library::locate(&candidates) {
        Ok(found) => found,
        Err(e) => return untraced(&e),
    };
    diag::debug(debug, format_args!("library: {}", library.display()));
    let transport = library.with_file_name(library::TRANSPORT_FILE_NAME);
    if needs_transport && !transport.is_file() {
        diag::warn(format_args!(
            "{} is missing: spans cannot be sent over OTLP to https:// or gRPC endpoints \
             (a span dump and http:// endpoints still work); install it beside {}",
            transport.display(),
            library::LIBRARY_FILE_NAME
        ));
    }

    let verdict = target::check(path, &machine);
    if let Some((program, obstacle)) = &verdict.obstacle {
        return untraced(&target::describe(program, obstacle));
    }
    if verdict.unknown {
        diag::debug(
            debug,
            format_args!("cannot read {}; injecting anyway", path.display()),
        );
    }
    if verdict.secure_exec {
        diag::warn(format_args!(
            "{} is set-user-ID, set-group-ID or has file capabilities; \
             the loader ignores LD_PRELOAD for it, so it will not be traced",
            path.display()
        ));
    }
    match env::with_library(lookup(current, "LD_PRELOAD"), &library) {
        Some(value) => diag::debug(
            debug,
            format_args!("injecting: LD_PRELOAD={}", value.to_string_lossy()),
        ),
        None => diag::debug(
            debug,
            "the library is already in LD_PRELOAD; leaving it as is",
        ),
    }
    Tracing::Preload(library)
}
