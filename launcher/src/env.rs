//! The command's environment, built as a pure function of the launcher's own.
//!
//! Flags become variables (a flag wins over the environment), and the
//! library is put first in `LD_PRELOAD`, keeping what is already there. With
//! `LUMIGO_SWITCH_OFF` the environment is passed on untouched. Everything is
//! `OsString`: values need not be UTF-8.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use crate::cli::Flags;
use crate::library::LIBRARY_FILE_NAME;

/// One environment, in order, as `(name, value)` pairs.
pub type Env = Vec<(OsString, OsString)>;

/// What the launcher decided to do to the command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tracing {
    /// `LUMIGO_SWITCH_OFF=true` (or `OTEL_SDK_DISABLED=true`,
    /// `LUMIGO_ENABLE_TRACES=false`): pass the environment on exactly as it is.
    SwitchedOff,
    /// The command cannot or will not be traced: set the flags' variables,
    /// leave `LD_PRELOAD` alone.
    Uninstrumented,
    /// Preload this library (an absolute path).
    Preload(PathBuf),
}

/// The variables the flags set, in a fixed order. A relative span dump path
/// is made absolute against `cwd`, so the command changing directory does
/// not move the file.
pub fn flag_vars(flags: &Flags, cwd: &Path) -> Vec<(&'static str, OsString)> {
    let mut vars = Vec::new();
    if let Some(v) = &flags.service_name {
        vars.push(("OTEL_SERVICE_NAME", v.clone()));
    }
    if let Some(v) = &flags.token {
        vars.push(("LUMIGO_TRACER_TOKEN", v.clone()));
    }
    if let Some(v) = &flags.endpoint {
        vars.push(("LUMIGO_ENDPOINT", v.clone()));
    }
    if let Some(p) = &flags.spandump {
        vars.push(("LUMIGO_DEBUG_SPANDUMP", absolute(p, cwd).into_os_string()));
    }
    if flags.debug {
        vars.push(("LUMIGO_DEBUG", "true".into()));
    }
    if flags.process_span {
        vars.push(("LUMIGO_PROCESS_SPAN", "true".into()));
    }
    vars
}

/// `path` if absolute (or empty), else `cwd/path` without `.` components.
/// A standard stream's name (`/dev/stderr`, `/proc/self/fd/2`…) is kept
/// exactly as it is: it names the command's own descriptor, not a file.
pub fn absolute(path: &Path, cwd: &Path) -> PathBuf {
    if path.is_absolute() || path.as_os_str().is_empty() {
        return path.to_path_buf();
    }
    let mut out = cwd.to_path_buf();
    out.extend(path.components().filter(|c| *c != Component::CurDir));
    out
}

/// The first value of `name` in `env`, as `getenv` would return it.
pub fn lookup<'a>(env: &'a Env, name: &str) -> Option<&'a OsStr> {
    env.iter()
        .find(|(k, _)| k.as_bytes() == name.as_bytes())
        .map(|(_, v)| v.as_os_str())
}

/// The command's environment.
pub fn child_env(mut env: Env, flags: &Flags, cwd: &Path, tracing: &Tracing) -> Env {
    if *tracing == Tracing::SwitchedOff {
        return env;
    }
    // The span dump path is made absolute whether it came from a flag or
    // from the environment: the reason is the same.
    let dump = lookup(&env, "LUMIGO_DEBUG_SPANDUMP").map(|p| absolute(Path::new(p), cwd));
    if let Some(dump) = dump {
        set(&mut env, "LUMIGO_DEBUG_SPANDUMP", dump.into_os_string());
    }
    for (name, value) in flag_vars(flags, cwd) {
        set(&mut env, name, value);
    }
    if let Tracing::Preload(library) = tracing {
        let current = lookup(&env, "LD_PRELOAD").map(OsStr::to_os_string);
        if let Some(value) = with_library(current.as_deref(), library) {
            set(&mut env, "LD_PRELOAD", value);
        }
        crate::hints::add(&mut env, library);
    }
    env
}

/// `LD_PRELOAD` with `library` first, or `None` when a lumigo library is
/// already listed (loading two copies would report every span twice).
pub fn with_library(current: Option<&OsStr>, library: &Path) -> Option<OsString> {
    let current = current.map(OsStr::as_bytes).unwrap_or_default();
    // The dynamic loader splits LD_PRELOAD on spaces and colons.
    let entries = current
        .split(|b| *b == b':' || *b == b' ')
        .filter(|e| !e.is_empty());
    let mut has_entries = false;
    for entry in entries {
        has_entries = true;
        let entry = Path::new(OsStr::from_bytes(entry));
        if entry == library || entry.file_name() == Some(OsStr::new(LIBRARY_FILE_NAME)) {
            return None;
        }
    }
    let mut value = library.as_os_str().as_bytes().to_vec();
    if has_entries {
        value.push(b':');
        value.extend_from_slice(current);
    }
    Some(OsString::from_vec(value))
}

/// Sets `name` to `value`: replaces the first entry in place and drops any
/// duplicates, or appends.
pub(crate) fn set(env: &mut Env, name: &str, value: OsString) {
    let mut value = Some(value);
    env.retain_mut(|(k, v)| {
        if k.as_bytes() != name.as_bytes() {
            return true;
        }
        match value.take() {
            Some(new) => {
                *v = new;
                true
            }
            None => false,
        }
    });
    if let Some(value) = value {
        env.push((name.into(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIB: &str = "/opt/lumigo/liblumigo_preload.so";

    fn env(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn get<'a>(env: &'a Env, name: &str) -> Option<&'a str> {
        lookup(env, name).map(|v| v.to_str().unwrap())
    }

    fn preload() -> Tracing {
        Tracing::Preload(LIB.into())
    }

    fn cwd() -> &'static Path {
        Path::new("/home/app")
    }

    #[test]
    fn no_flags_only_adds_ld_preload() {
        let before = env(&[("PATH", "/bin"), ("HOME", "/root")]);
        let after = child_env(before.clone(), &Flags::default(), cwd(), &preload());
        assert_eq!(after[..2], before[..]);
        assert_eq!(after.len(), 3);
        assert_eq!(get(&after, "LD_PRELOAD"), Some(LIB));
    }

    #[test]
    fn flag_wins_over_environment() {
        let before = env(&[
            ("OTEL_SERVICE_NAME", "from-env"),
            ("LUMIGO_TRACER_TOKEN", "t_env"),
            ("LUMIGO_DEBUG", "false"),
            ("LUMIGO_ENDPOINT", "http://env"),
        ]);
        let flags = Flags {
            service_name: Some("from-flag".into()),
            token: Some("t_flag".into()),
            endpoint: Some("http://flag".into()),
            debug: true,
            process_span: true,
            ..Flags::default()
        };
        let after = child_env(before, &flags, cwd(), &preload());
        assert_eq!(get(&after, "OTEL_SERVICE_NAME"), Some("from-flag"));
        assert_eq!(get(&after, "LUMIGO_TRACER_TOKEN"), Some("t_flag"));
        assert_eq!(get(&after, "LUMIGO_ENDPOINT"), Some("http://flag"));
        assert_eq!(get(&after, "LUMIGO_DEBUG"), Some("true"));
        assert_eq!(get(&after, "LUMIGO_PROCESS_SPAN"), Some("true"));
        // Replaced in place, not appended: one entry per name.
        assert_eq!(after[0].0, "OTEL_SERVICE_NAME");
        assert_eq!(after.iter().filter(|(k, _)| k == "LUMIGO_DEBUG").count(), 1);
    }

    #[test]
    fn unset_flags_leave_environment_values() {
        let before = env(&[("OTEL_SERVICE_NAME", "from-env"), ("LUMIGO_DEBUG", "TRUE")]);
        let after = child_env(before, &Flags::default(), cwd(), &preload());
        assert_eq!(get(&after, "OTEL_SERVICE_NAME"), Some("from-env"));
        assert_eq!(get(&after, "LUMIGO_DEBUG"), Some("TRUE"));
        assert_eq!(get(&after, "LUMIGO_PROCESS_SPAN"), None);
    }

    #[test]
    fn duplicate_entries_collapse_when_set() {
        let before = env(&[
            ("OTEL_SERVICE_NAME", "a"),
            ("X", "1"),
            ("OTEL_SERVICE_NAME", "b"),
        ]);
        let flags = Flags {
            service_name: Some("c".into()),
            ..Flags::default()
        };
        let after = child_env(before, &flags, cwd(), &Tracing::Uninstrumented);
        assert_eq!(after, env(&[("OTEL_SERVICE_NAME", "c"), ("X", "1")]));
    }

    #[test]
    fn ld_preload_is_prepended_keeping_entries() {
        let before = env(&[("LD_PRELOAD", "/usr/lib/libjemalloc.so.2 /x/liby.so")]);
        let after = child_env(before, &Flags::default(), cwd(), &preload());
        assert_eq!(
            get(&after, "LD_PRELOAD"),
            Some("/opt/lumigo/liblumigo_preload.so:/usr/lib/libjemalloc.so.2 /x/liby.so")
        );
    }

    #[test]
    fn ld_preload_empty_value_is_replaced() {
        for value in ["", " ", ":"] {
            let after = child_env(
                env(&[("LD_PRELOAD", value)]),
                &Flags::default(),
                cwd(),
                &preload(),
            );
            assert_eq!(get(&after, "LD_PRELOAD"), Some(LIB), "LD_PRELOAD={value:?}");
        }
    }

    #[test]
    fn ld_preload_library_not_added_twice() {
        for value in [
            LIB,
            "/a/liba.so:/opt/lumigo/liblumigo_preload.so",
            "/a/liba.so /opt/lumigo/liblumigo_preload.so",
            // Another copy of the library, e.g. set by hand in a Dockerfile.
            "/usr/local/lib/liblumigo_preload.so",
        ] {
            let after = child_env(
                env(&[("LD_PRELOAD", value)]),
                &Flags::default(),
                cwd(),
                &preload(),
            );
            assert_eq!(get(&after, "LD_PRELOAD"), Some(value));
        }
        assert_eq!(with_library(Some(OsStr::new(LIB)), Path::new(LIB)), None);
    }

    #[test]
    fn uninstrumented_does_not_touch_ld_preload() {
        let flags = Flags {
            debug: true,
            ..Flags::default()
        };
        let after = child_env(env(&[]), &flags, cwd(), &Tracing::Uninstrumented);
        assert_eq!(after, env(&[("LUMIGO_DEBUG", "true")]));
        let before = env(&[("LD_PRELOAD", "/a/liba.so")]);
        let after = child_env(
            before.clone(),
            &Flags::default(),
            cwd(),
            &Tracing::Uninstrumented,
        );
        assert_eq!(after, before);
    }

    #[test]
    fn switch_off_leaves_environment_untouched() {
        let before = env(&[
            ("LUMIGO_SWITCH_OFF", "True"),
            ("LUMIGO_DEBUG_SPANDUMP", "rel.jsonl"),
            ("LD_PRELOAD", "/a/liba.so"),
        ]);
        let flags = Flags {
            service_name: Some("s".into()),
            spandump: Some("x.jsonl".into()),
            debug: true,
            ..Flags::default()
        };
        let after = child_env(before.clone(), &flags, cwd(), &Tracing::SwitchedOff);
        assert_eq!(after, before);
    }

    #[test]
    fn spandump_is_made_absolute() {
        let flags = Flags {
            spandump: Some("./out/spans.jsonl".into()),
            ..Flags::default()
        };
        let after = child_env(env(&[]), &flags, cwd(), &preload());
        assert_eq!(
            get(&after, "LUMIGO_DEBUG_SPANDUMP"),
            Some("/home/app/out/spans.jsonl")
        );

        let flags = Flags {
            spandump: Some("/tmp/s.jsonl".into()),
            ..Flags::default()
        };
        let after = child_env(env(&[]), &flags, cwd(), &preload());
        assert_eq!(get(&after, "LUMIGO_DEBUG_SPANDUMP"), Some("/tmp/s.jsonl"));

        // The variable itself, too, and the flag still wins.
        let before = env(&[("LUMIGO_DEBUG_SPANDUMP", "s.jsonl")]);
        let after = child_env(before.clone(), &Flags::default(), cwd(), &preload());
        assert_eq!(
            get(&after, "LUMIGO_DEBUG_SPANDUMP"),
            Some("/home/app/s.jsonl")
        );
        let flags = Flags {
            spandump: Some("../f.jsonl".into()),
            ..Flags::default()
        };
        let after = child_env(before, &flags, cwd(), &preload());
        assert_eq!(
            get(&after, "LUMIGO_DEBUG_SPANDUMP"),
            Some("/home/app/../f.jsonl")
        );
    }

    #[test]
    fn standard_stream_spandump_is_kept_as_named() {
        for name in ["/dev/stderr", "/dev/stdout", "/dev/fd/2", "/proc/self/fd/1"] {
            let flags = Flags {
                spandump: Some(name.into()),
                ..Flags::default()
            };
            let after = child_env(env(&[]), &flags, cwd(), &preload());
            assert_eq!(
                get(&after, "LUMIGO_DEBUG_SPANDUMP"),
                Some(name),
                "--spandump"
            );
            let before = env(&[("LUMIGO_DEBUG_SPANDUMP", name)]);
            let after = child_env(before, &Flags::default(), cwd(), &preload());
            assert_eq!(get(&after, "LUMIGO_DEBUG_SPANDUMP"), Some(name), "variable");
        }
    }

    #[test]
    fn non_utf8_values_survive() {
        let odd = OsString::from_vec(vec![b'a', 0xff, b'b']);
        let before: Env = vec![
            ("ODD".into(), odd.clone()),
            ("LD_PRELOAD".into(), odd.clone()),
        ];
        let flags = Flags {
            service_name: Some(odd.clone()),
            ..Flags::default()
        };
        let after = child_env(before, &flags, cwd(), &preload());
        assert_eq!(lookup(&after, "ODD"), Some(odd.as_os_str()));
        assert_eq!(lookup(&after, "OTEL_SERVICE_NAME"), Some(odd.as_os_str()));
        let mut expected = format!("{LIB}:").into_bytes();
        expected.extend_from_slice(odd.as_bytes());
        assert_eq!(
            lookup(&after, "LD_PRELOAD").unwrap().as_bytes(),
            &expected[..]
        );
    }

    #[test]
    fn flag_vars_in_fixed_order() {
        let flags = Flags {
            service_name: Some("s".into()),
            spandump: Some("d".into()),
            debug: true,
            ..Flags::default()
        };
        let names: Vec<_> = flag_vars(&flags, cwd())
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            names,
            ["OTEL_SERVICE_NAME", "LUMIGO_DEBUG_SPANDUMP", "LUMIGO_DEBUG"]
        );
    }
}
