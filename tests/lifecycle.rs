//! The end of a traced process, and how soon spans leave it: spans of
//! light traffic are exported within ~100 ms; a default-disposition
//! SIGTERM, SIGINT, SIGHUP or SIGQUIT flushes them and still kills the
//! process with that signal; an app's own handlers are left exactly as the
//! app set them; a dead collector costs short-lived processes little.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const T: Duration = Duration::from_secs(30);

/// `python3 -m http.server` on `port`, traced into `dump`, with the default
/// schedule delay (5 s) unless `env` says otherwise.
fn python_http_server(port: u16, dump: &std::path::Path, env: &[(&str, &str)]) -> Server {
    let mut cmd = traced("python3");
    cmd.args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .env_remove("OTEL_BSP_SCHEDULE_DELAY")
        .env("LUMIGO_DEBUG_SPANDUMP", dump)
        .current_dir(dump.parent().unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Server::spawn(cmd, port)
}

/// GETs `path` with an untraced curl; true on HTTP 200.
fn get(port: u16, path: &str) -> bool {
    Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .stderr(Stdio::null())
        .output()
        .map(|o| o.stdout == b"200")
        .unwrap_or(false)
}

/// With the default 5 s schedule delay, the span of a single request used
/// to wait 5 s in the queue (and died with the process on SIGKILL). Light
/// traffic now leaves within ~100 ms while the process keeps running.
#[test]
fn light_traffic_spans_wait_for_the_five_second_batch_delay() {
    let tmp = TempDir::new("light");
    let dump = tmp.path("spans.jsonl");
    let port = free_port();
    let mut server = python_http_server(port, &dump, &[]);
    assert!(get(port, "/"));
    let sent = Instant::now();
    let spans = wait_spans(&dump, Duration::from_secs(4), |s| !s.is_empty());
    let took = sent.elapsed();
    assert!(server.child.try_wait().unwrap().is_none(), "still running");
    eprintln!("light traffic: span in the dump {took:?} after the response");
    assert_eq!(of_kind(&spans, "SpanKind.SERVER").len(), 1, "{spans:#?}");
    assert!(took < Duration::from_millis(1000), "took {took:?}");
    // A second request right after the first export waits for the delay:
    // not an export per span.
    assert!(get(port, "/"));
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(read_spandump(&dump).len(), 1, "exported before the delay");
    let spans = wait_spans(&dump, Duration::from_secs(10), |s| s.len() >= 2);
    assert_eq!(spans.len(), 2);
    server.stop();
}
