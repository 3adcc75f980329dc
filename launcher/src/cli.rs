//! The command line: `lumigo-run [OPTIONS] [--] COMMAND [ARGS...]`.
//!
//! Options end at the first word that is not one of ours, so everything from
//! COMMAND on belongs to the command (`lumigo-run curl -v x` gives `-v` to
//! curl). Each option only sets an environment variable for the command; the
//! meaning of the variables lives in the core's configuration.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser};

const EXAMPLES: &str = "\
Examples:
  lumigo-run curl -s https://example.com
  lumigo-run --service-name shop python3 app.py
  lumigo-run nginx -g 'daemon off;'
  LUMIGO_TRACER_TOKEN=t_xxx lumigo-run ./server --port 8080

  Export to a local OpenTelemetry collector (OTLP/HTTP):
    OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 lumigo-run ./server

  Write every span as a JSON line to a file:
    lumigo-run --spandump /tmp/spans.jsonl curl -s http://localhost:8080/

  In a Dockerfile:
    ENTRYPOINT [\"lumigo-run\", \"--\"]
    CMD [\"python3\", \"app.py\"]

Without the launcher: LD_PRELOAD=/path/to/liblumigo_preload.so plus the same
variables. LUMIGO_SWITCH_OFF=true runs the command untouched. Statically linked
programs (most Go binaries), set-user-ID programs and musl-based programs
cannot be traced; they run untraced, with a warning.";

/// Runs COMMAND with no-code OpenTelemetry tracing (HTTP and more), by
/// preloading liblumigo_preload.so into it.
#[derive(Debug, PartialEq, Parser)]
#[command(
    name = "lumigo-run",
    version = lumigo_core::VERSION,
    override_usage = "lumigo-run [OPTIONS] [--] COMMAND [ARGS]...",
    after_help = EXAMPLES,
    // The first positional word and everything after it is the command.
    trailing_var_arg = true,
)]
pub struct Cli {
    #[command(flatten)]
    pub flags: Flags,

    /// The command to run, and its arguments.
    #[arg(value_name = "COMMAND", required = true, num_args = 1..)]
    pub command: Vec<OsString>,
}

/// The options that become environment variables for the command.
#[derive(Debug, Default, Clone, PartialEq, Args)]
pub struct Flags {
    /// Service name of the spans [sets OTEL_SERVICE_NAME]
    #[arg(long, value_name = "NAME")]
    pub service_name: Option<OsString>,

    /// Lumigo token; prefer the variable, which `ps` does not show [sets LUMIGO_TRACER_TOKEN]
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<OsString>,

    /// Lumigo OTLP/HTTP traces endpoint [sets LUMIGO_ENDPOINT]
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<OsString>,

    /// Append every span as a JSON line to PATH [sets LUMIGO_DEBUG_SPANDUMP]
    #[arg(long, value_name = "PATH")]
    pub spandump: Option<PathBuf>,

    /// Diagnostics on stderr, prefixed #LUMIGO# [sets LUMIGO_DEBUG=true]
    #[arg(long)]
    pub debug: bool,

    /// One span around the whole run of each process [sets LUMIGO_PROCESS_SPAN=true]
    #[arg(long)]
    pub process_span: bool,
}

/// The command line without clap when it has no option of ours: `COMMAND
/// ...` or `-- COMMAND ...`, by far the most common forms (a Dockerfile's
/// `ENTRYPOINT ["lumigo-run", "--"]`, a prefixed command). Building clap's
/// parser costs page faults and allocations on every traced start; the
/// result is the same as clap's (checked in the tests). `None` for anything
/// else, which clap then parses.
pub fn without_options(args: impl IntoIterator<Item = OsString>) -> Option<Cli> {
    let mut args = args.into_iter().skip(1).peekable();
    let first = args.peek()?;
    if first == "--" {
        args.next();
    } else if first.as_encoded_bytes().starts_with(b"-") {
        return None;
    }
    let command: Vec<OsString> = args.collect();
    (!command.is_empty()).then(|| Cli {
        flags: Flags::default(),
        command,
    })
}

/// The command line: [`without_options`] when it applies, else clap (which
/// exits with 2 on a usage error, 0 after `--help`/`--version`).
#[cfg_attr(test, allow(dead_code))]
pub fn parse_command_line() -> Cli {
    without_options(std::env::args_os()).unwrap_or_else(Cli::parse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_short_path_agrees_with_clap() {
        let cases: &[&[&str]] = &[
            &["curl", "-v", "x"],
            &["--", "curl", "-v"],
            &["--", "--debug"],
            &["--", "-"],
            &["sh", "--", "--debug"],
            &["python3", "app.py"],
            &["./a b", ""],
        ];
        for case in cases {
            let argv = || std::iter::once("lumigo-run").chain(case.iter().copied());
            let short = without_options(argv().map(OsString::from))
                .unwrap_or_else(|| panic!("short path for {case:?}"));
            assert_eq!(Some(&short), parse(case).ok().as_ref(), "{case:?}");
        }
        // Everything else is clap's.
        let others: &[&[&str]] = &[
            &[],
            &["--"],
            &["--debug", "x"],
            &["-"],
            &["--help"],
            &["-x", "y"],
        ];
        for case in others {
            let argv = std::iter::once("lumigo-run").chain(case.iter().copied());
            assert_eq!(without_options(argv.map(OsString::from)), None, "{case:?}");
        }
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("lumigo-run").chain(args.iter().copied()))
    }

    fn command(cli: &Cli) -> Vec<&str> {
        cli.command.iter().map(|a| a.to_str().unwrap()).collect()
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn options_stop_at_the_command() {
        let cli = parse(&["curl", "-v", "x"]).unwrap();
        assert_eq!(command(&cli), ["curl", "-v", "x"]);
        assert!(!cli.flags.debug);

        // Our own option names after the command belong to the command.
        let cli = parse(&["--debug", "sh", "--debug", "--help", "--version", "--", "y"]).unwrap();
        assert!(cli.flags.debug);
        assert_eq!(
            command(&cli),
            ["sh", "--debug", "--help", "--version", "--", "y"]
        );
    }

    #[test]
    fn double_dash_ends_options() {
        let cli = parse(&["--", "--debug"]).unwrap();
        assert!(!cli.flags.debug);
        assert_eq!(command(&cli), ["--debug"]);

        let cli = parse(&["--service-name", "s", "--", "ls", "-l"]).unwrap();
        assert_eq!(cli.flags.service_name.as_deref(), Some("s".as_ref()));
        assert_eq!(command(&cli), ["ls", "-l"]);
    }

    #[test]
    fn all_flags_parse() {
        let cli = parse(&[
            "--service-name=svc",
            "--token",
            "t_1",
            "--endpoint",
            "http://e/v1/traces",
            "--spandump",
            "spans.jsonl",
            "--debug",
            "--process-span",
            "true",
        ])
        .unwrap();
        let f = &cli.flags;
        assert_eq!(f.service_name.as_deref(), Some("svc".as_ref()));
        assert_eq!(f.token.as_deref(), Some("t_1".as_ref()));
        assert_eq!(f.endpoint.as_deref(), Some("http://e/v1/traces".as_ref()));
        assert_eq!(f.spandump.as_deref(), Some("spans.jsonl".as_ref()));
        assert!(f.debug && f.process_span);
        assert_eq!(command(&cli), ["true"]);
    }

    #[test]
    fn unknown_option_before_the_command_is_an_error() {
        let err = parse(&["--no-such-option", "true"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
        let err = parse(&["-x", "true"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn command_is_required() {
        let err = parse(&[]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let err = parse(&["--debug"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn help_and_version_before_the_command() {
        let err = parse(&["--help"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        assert!(err
            .to_string()
            .contains("ENTRYPOINT [\"lumigo-run\", \"--\"]"));
        let err = parse(&["--version"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
    }
}
