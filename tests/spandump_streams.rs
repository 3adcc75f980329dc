//! The span dump on the program's own standard streams
//! (`LUMIGO_DEBUG_SPANDUMP=/dev/stderr`, as README recommends), and on a
//! path through a directory link another user planted, with real programs
//! under the real launcher.

mod support;

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

const T: Duration = Duration::from_secs(60);

fn untraced_curl(url: &str) -> std::process::Output {
    Command::new("curl")
        .args(["-s", "-w", " %{http_code}"])
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The JSON objects among `text`'s lines.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

#[test]
fn span_dump_on_stderr_gets_the_spans_and_leaves_stdout_alone() {
    if !have("curl") {
        eprintln!("skipped: no curl");
        return;
    }
    let server = http_server();
    let url = format!("http://127.0.0.1:{}/len/5", server.port);
    let untraced = untraced_curl(&url);
    // The variable and the flag, with each spelling.
    let runs: Vec<(&str, bool)> = vec![
        ("/dev/stderr", false),
        ("/proc/self/fd/2", false),
        ("/dev/fd/2", true),
    ];
    for (name, as_flag) in runs {
        let mut cmd = if as_flag {
            traced_with_flags(&[OsStr::new("--spandump"), OsStr::new(name)], "curl")
        } else {
            let mut c = traced("curl");
            c.env("LUMIGO_DEBUG_SPANDUMP", name);
            c
        };
        cmd.args(["-s", "-w", " %{http_code}"]).arg(&url);
        let out = run(cmd, T);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        assert_eq!(out.stdout, untraced.stdout, "{name}: stdout untouched");
        assert!(
            !stderr.contains("warning"),
            "{name}: no launcher warning: {stderr}"
        );
        let spans = json_lines(&stderr);
        let client: Vec<&Value> = spans
            .iter()
            .filter(|s| kind(s) == "SpanKind.CLIENT")
            .collect();
        assert_eq!(client.len(), 1, "{name}: {stderr}");
        assert_eq!(attr(client[0], "url.full"), url.as_str(), "{name}");
        assert_eq!(attr(client[0], "url.path"), "/len/5", "{name}");
        // Every line on stderr is a whole span line.
        assert_eq!(
            stderr.lines().count(),
            spans.len(),
            "{name}: only span lines: {stderr}"
        );
    }
}

#[test]
fn span_dump_on_a_socket_stderr_is_refused() {
    if !have("curl") {
        eprintln!("skipped: no curl");
        return;
    }
    let server = http_server();
    let url = format!("http://127.0.0.1:{}/len/5", server.port);
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut cmd = traced("curl");
    cmd.env("LUMIGO_DEBUG_SPANDUMP", "/dev/stderr")
        .args(["-s", "-w", " %{http_code}"])
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::os::fd::OwnedFd::from(theirs)));
    let child = cmd.spawn().unwrap();
    drop(cmd); // our copy of the socket's other end
    let out = wait_output(child, T);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, untraced_curl(&url).stdout);
    ours.set_read_timeout(Some(T)).unwrap();
    let mut got = String::new();
    std::io::Read::read_to_string(&mut ours, &mut got).unwrap();
    assert!(
        json_lines(&got).is_empty(),
        "no span into the socket: {got}"
    );
    let warnings: Vec<&str> = got.lines().filter(|l| l.contains("span dump")).collect();
    assert_eq!(warnings.len(), 1, "{got}");
    assert!(
        warnings[0].contains("/dev/stderr") && warnings[0].contains("socket"),
        "{got}"
    );
}

#[test]
fn span_dump_through_a_directory_link_another_user_planted_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    if !have("curl") {
        eprintln!("skipped: no curl");
        return;
    }
    let server = http_server();
    let url = format!("http://127.0.0.1:{}/len/5", server.port);
    let trial = TempDir::new("planted-parent");
    let rootonly = trial.path("rootonly");
    std::fs::create_dir(&rootonly).unwrap();
    std::fs::set_permissions(
        &rootonly,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let nob = trial.path("nob");
    std::fs::create_dir(&nob).unwrap();
    std::os::unix::fs::chown(&nob, Some(NOBODY), Some(NOBODY)).unwrap();
    let link = nob.join("d");
    let status = Command::new("ln")
        .arg("-s")
        .arg(&rootonly)
        .arg(&link)
        .uid(NOBODY)
        .gid(NOBODY)
        .status()
        .unwrap();
    assert!(status.success(), "ln as nobody");

    let dump = link.join("x.jsonl");
    let mut cmd = traced_with_flags(&[OsStr::new("--spandump"), dump.as_os_str()], "curl");
    cmd.args(["-s", "-w", " %{http_code}"]).arg(&url);
    let out = run(cmd, T);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(out.stdout, untraced_curl(&url).stdout, "output unchanged");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("span dump")).collect();
    assert_eq!(warnings.len(), 1, "one warning: {stderr}");
    assert!(
        warnings[0].contains(&link.display().to_string())
            && warnings[0].contains("symbolic link")
            && warnings[0].contains("uid 65534"),
        "names the link and its owner: {stderr}"
    );
    assert!(
        !rootonly.join("x.jsonl").exists(),
        "nothing created in a directory nobody chose"
    );

    // The same directory through a link of root's own: written.
    let own_link = trial.path("mine");
    std::os::unix::fs::symlink(&rootonly, &own_link).unwrap();
    let dump = own_link.join("y.jsonl");
    let mut cmd = traced_with_flags(&[OsStr::new("--spandump"), dump.as_os_str()], "curl");
    cmd.args(["-s", "-w", " %{http_code}"]).arg(&url);
    let out = run(cmd, T);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("span dump"),
        "{out:?}"
    );
    let spans = wait_spans(&rootonly.join("y.jsonl"), T, |s| {
        !of_kind(s, "SpanKind.CLIENT").is_empty()
    });
    assert_eq!(
        attr(of_kind(&spans, "SpanKind.CLIENT")[0], "url.path"),
        "/len/5"
    );
}
