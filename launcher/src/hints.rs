//! The runtime hint scripts (Node.js, Python asyncio) the command gets
//! beside the library: they tell the library which inbound request an
//! outbound call belongs to on event-loop servers (`lumigo_core::hint`).
//!
//! They ship next to the library (`node/lumigo-hint.js`,
//! `python/sitecustomize.py`, see scripts/package.sh) and are added only if
//! there: `--require` appended to the command's own `NODE_OPTIONS`, the
//! Python directory put first in `PYTHONPATH` (its `sitecustomize` then runs
//! the app's own). Both are harmless to programs that are not Node.js or
//! Python, and to Node.js or Python without the library (every hint then
//! fails with `EBADF` once and the scripts stop).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::env::{lookup, set, Env};

/// The Node.js script, relative to the library's directory.
pub const NODE_SCRIPT: &str = "node/lumigo-hint.js";
/// The directory of the Python `sitecustomize`, relative to the library's.
pub const PYTHON_DIR: &str = "python";

/// Adds the hint scripts found beside `library` to the command's environment.
pub fn add(env: &mut Env, library: &Path) {
    let Some(dir) = library.parent() else {
        return;
    };
    let script = dir.join(NODE_SCRIPT);
    if script.is_file() {
        if let Some(v) = node_options(lookup(env, "NODE_OPTIONS"), &script) {
            set(env, "NODE_OPTIONS", v);
        }
    }
    let python: PathBuf = dir.join(PYTHON_DIR);
    if python.join("sitecustomize.py").is_file() {
        if let Some(v) = python_path(lookup(env, "PYTHONPATH"), &python) {
            set(env, "PYTHONPATH", v);
        }
    }
}

/// `NODE_OPTIONS` with `--require "script"` appended to what is there, or
/// `None` when it is there already or the path cannot be quoted.
pub fn node_options(current: Option<&OsStr>, script: &Path) -> Option<OsString> {
    let path = script.as_os_str().as_bytes();
    if path.iter().any(|b| matches!(b, b'"' | b'\\' | b'\n')) {
        return None;
    }
    let current = current.map(OsStr::as_bytes).unwrap_or_default();
    if current.windows(path.len()).any(|w| w == path) {
        return None;
    }
    let mut value = current.to_vec();
    if !value.is_empty() && !value.ends_with(b" ") {
        value.push(b' ');
    }
    value.extend_from_slice(b"--require \"");
    value.extend_from_slice(path);
    value.push(b'"');
    Some(OsString::from_vec(value))
}

/// `PYTHONPATH` with `dir` first, or `None` when it is listed already or
/// its name has a `:` (which would split it).
pub fn python_path(current: Option<&OsStr>, dir: &Path) -> Option<OsString> {
    let path = dir.as_os_str().as_bytes();
    if path.contains(&b':') {
        return None;
    }
    let current = current.map(OsStr::as_bytes).unwrap_or_default();
    if current.split(|b| *b == b':').any(|e| e == path) {
        return None;
    }
    let mut value = path.to_vec();
    if !current.is_empty() {
        value.push(b':');
        value.extend_from_slice(current);
    }
    Some(OsString::from_vec(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> OsString {
        OsString::from(s)
    }

    #[test]
    fn node_options_keeps_the_apps_own() {
        let js = Path::new("/opt/lumigo/lib/lumigo/node/lumigo-hint.js");
        assert_eq!(
            node_options(None, js),
            Some(os(
                "--require \"/opt/lumigo/lib/lumigo/node/lumigo-hint.js\""
            ))
        );
        assert_eq!(
            node_options(Some(OsStr::new("--max-old-space-size=64")), js),
            Some(os(
                "--max-old-space-size=64 --require \"/opt/lumigo/lib/lumigo/node/lumigo-hint.js\""
            ))
        );
        let once = node_options(None, js).unwrap();
        assert_eq!(node_options(Some(&once), js), None, "not twice");
        assert_eq!(node_options(None, Path::new("/a\"b/x.js")), None);
    }

    #[test]
    fn scripts_beside_the_library_are_added_unless_switched_off() {
        use crate::cli::Flags;
        use crate::env::{child_env, Tracing};
        let t = crate::testutil::TempDir::new();
        t.subdir("lib/node");
        t.subdir("lib/python");
        let lib = t.file("lib/liblumigo_preload.so", b"");
        let js = t.file("lib/node/lumigo-hint.js", b"");
        t.file("lib/python/sitecustomize.py", b"");
        let before: Env = vec![(os("NODE_OPTIONS"), os("--inspect"))];
        let cwd = Path::new("/");
        let env = child_env(
            before.clone(),
            &Flags::default(),
            cwd,
            &Tracing::Preload(lib.clone()),
        );
        let want = format!("--inspect --require \"{}\"", js.display());
        assert_eq!(lookup(&env, "NODE_OPTIONS"), Some(OsStr::new(&want)));
        let py = t.path().join("lib/python");
        assert_eq!(lookup(&env, "PYTHONPATH"), Some(py.as_os_str()));
        let off = child_env(
            before.clone(),
            &Flags::default(),
            cwd,
            &Tracing::SwitchedOff,
        );
        assert_eq!(off, before, "switched off: nothing added");
        let bare = crate::testutil::TempDir::new();
        let lib = bare.file("liblumigo_preload.so", b"");
        let env = child_env(before, &Flags::default(), cwd, &Tracing::Preload(lib));
        assert_eq!(lookup(&env, "NODE_OPTIONS"), Some(OsStr::new("--inspect")));
        assert_eq!(lookup(&env, "PYTHONPATH"), None, "no scripts installed");
    }

    #[test]
    fn python_path_goes_first_once() {
        let dir = Path::new("/opt/lumigo/lib/lumigo/python");
        assert_eq!(
            python_path(None, dir),
            Some(os("/opt/lumigo/lib/lumigo/python"))
        );
        assert_eq!(
            python_path(Some(OsStr::new("/app/lib")), dir),
            Some(os("/opt/lumigo/lib/lumigo/python:/app/lib"))
        );
        assert_eq!(
            python_path(Some(OsStr::new("/x:/opt/lumigo/lib/lumigo/python")), dir),
            None
        );
        assert_eq!(python_path(None, Path::new("/a:b")), None);
    }
}
