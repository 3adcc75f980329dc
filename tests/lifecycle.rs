//! The end of a traced process, and how soon spans leave it: spans of
//! light traffic are exported within ~100 ms; a default-disposition
//! SIGTERM, SIGINT, SIGHUP or SIGQUIT flushes them and still kills the
//! process with that signal; an app's own handlers are left exactly as the
//! app set them; a dead collector costs short-lived processes little.

#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;
mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use otlp_receiver::OtlpReceiver;
use support::*;

const T: Duration = Duration::from_secs(30);

/// `python3 -m http.server` on `port`, traced into `dump`, with the default
/// schedule delay (5 s) unless `env` says otherwise.
fn python_http_server(port: u16, dump: &Path, env: &[(&str, &str)]) -> Child {
    let mut cmd = traced("python3");
    cmd.args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .env_remove("OTEL_BSP_SCHEDULE_DELAY")
        .env("LUMIGO_DEBUG_SPANDUMP", dump)
        .current_dir(dump.parent().unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    spawn_listening(cmd, port)
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
    assert!(server.try_wait().unwrap().is_none(), "still running");
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
    let _ = server.kill();
    let _ = server.wait();
}

fn app(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/apps")
        .join(name)
}

/// Starts `cmd` (stdout and stderr piped) and waits until it listens.
fn spawn_listening(mut cmd: Command, port: u16) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    if !wait_for_port(port, Duration::from_secs(15)) {
        let _ = child.kill();
        panic!("no listener on {port}: {:?}", child.wait_with_output());
    }
    child
}

/// Sends `sig` to `child` and collects how it ended.
fn kill_and_wait(child: Child, sig: i32) -> Output {
    // SAFETY: signalling our own, unreaped child.
    unsafe { libc::kill(child.id() as i32, sig) };
    wait_output(child, T)
}

/// `tests/apps/signal_server.py` in `mode`, traced into `dump` (or not):
/// `requests` GETs, then `sig`. Returns how it ended.
fn serve_then_signal(mode: &str, dump: Option<&Path>, requests: usize, sig: i32) -> Output {
    let script = app("signal_server.py");
    run_then_signal("python3", dump, requests, sig, |port| {
        vec![
            script.display().to_string(),
            port.to_string(),
            mode.to_owned(),
        ]
    })
}

/// `program` with `args(port)`, a server on `port`, traced into `dump` (or
/// not): `requests` GETs `/r?n=I`, then `sig`. Returns how it ended.
fn run_then_signal(
    program: &str,
    dump: Option<&Path>,
    requests: usize,
    sig: i32,
    args: impl Fn(u16) -> Vec<String>,
) -> Output {
    let port = free_port();
    let mut cmd = match dump {
        Some(dump) => {
            let mut c = traced(program);
            c.env_remove("OTEL_BSP_SCHEDULE_DELAY")
                .env("LUMIGO_DEBUG_SPANDUMP", dump);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args(port));
    let child = spawn_listening(cmd, port);
    for i in 0..requests {
        assert!(get(port, &format!("/r?n={i}")));
    }
    kill_and_wait(child, sig)
}

/// The traced run ended as the untraced one: killed by `sig`, with the
/// same wait status and output.
fn assert_dies_as_untraced(traced_out: &Output, untraced: &Output, sig: i32, name: &str) {
    assert_eq!(untraced.status.signal(), Some(sig), "{untraced:?}");
    assert_eq!(
        traced_out.status.into_raw(),
        untraced.status.into_raw(),
        "{name}: {traced_out:?}"
    );
    assert_eq!(traced_out.stdout, untraced.stdout, "{name}");
}

/// The SERVER spans of a dump: one per request `0..n`, each its own trace.
fn assert_server_spans(dump: &Path, n: usize, context: &str) {
    let spans = read_spandump(dump);
    let servers = of_kind(&spans, "SpanKind.SERVER");
    let mut queries: Vec<String> = servers
        .iter()
        .map(|s| attr(s, "url.query").as_str().unwrap_or("").to_owned())
        .collect();
    queries.sort();
    let mut expected: Vec<String> = (0..n).map(|i| format!("n={i}")).collect();
    expected.sort();
    assert_eq!(queries, expected, "{context}: {spans:#?}");
    let mut traces: Vec<&str> = servers
        .iter()
        .map(|s| s["context"]["trace_id"].as_str().unwrap_or(""))
        .collect();
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), n, "one trace per request");
    assert!(servers.iter().all(|s| s["parent_id"].is_null()));
}

/// `docker stop` sends SIGTERM: with the default disposition every queued
/// span was lost (0 of 10 from `python3 -m http.server`). Now all 10 are
/// exported, and the process still dies of SIGTERM, exactly as untraced.
#[test]
fn sigterm_with_default_disposition_loses_every_queued_span() {
    let tmp = TempDir::new("sigterm");
    let dump = tmp.path("spans.jsonl");
    let port = free_port();
    let child = python_http_server(port, &dump, &[]);
    for _ in 0..10 {
        assert!(get(port, "/"));
    }
    let start = Instant::now();
    let out = kill_and_wait(child, libc::SIGTERM);
    eprintln!("SIGTERM to exit: {:?}", start.elapsed());
    assert_eq!(out.status.signal(), Some(libc::SIGTERM), "{out:?}");
    assert!(!out.status.core_dumped());
    let spans = read_spandump(&dump);
    assert_eq!(of_kind(&spans, "SpanKind.SERVER").len(), 10, "{spans:#?}");

    // Untraced, the same command ends with the same wait status.
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .current_dir(&tmp.0);
    let untraced = kill_and_wait(spawn_listening(cmd, port), libc::SIGTERM);
    assert_eq!(untraced.status.into_raw(), out.status.into_raw());
}

/// SIGINT, SIGHUP and SIGQUIT with the default disposition: the queued
/// spans are exported, and the wait status (signal, core flag) is the one
/// the untraced program ends with.
#[test]
fn sigint_sighup_sigquit_with_default_disposition_lose_queued_spans() {
    for (sig, name) in [
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
        (libc::SIGQUIT, "SIGQUIT"),
    ] {
        let tmp = TempDir::new("fatal-signal");
        let dump = tmp.path("spans.jsonl");
        let traced_out = serve_then_signal("default", Some(&dump), 3, sig);
        let untraced = serve_then_signal("default", None, 0, sig);
        assert_dies_as_untraced(&traced_out, &untraced, sig, name);
        assert_server_spans(&dump, 3, name);
    }
}

/// The endpoint of a collector that accepts every connection and holds it,
/// answering nothing (for the test's lifetime).
fn hung_collector() -> String {
    let collector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", collector.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in collector.incoming().flatten() {
            held.push(c);
        }
    });
    endpoint
}

/// A collector that takes the request and never answers: the OTLP post
/// of the first batch hangs until its timeout. The span dump was written
/// after it, so a SIGTERM meanwhile (the flush gives up after 1 s) lost
/// the dump's lines too (0 of 5). The dump is written first now.
#[test]
fn a_hung_collector_does_not_hold_back_the_span_dump() {
    let endpoint = hung_collector();
    let tmp = TempDir::new("hung-collector");
    let dump = tmp.path("spans.jsonl");
    let port = free_port();
    let child = python_http_server(
        port,
        &dump,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
    );
    // Within the ~100 ms the first span of a quiet spell waits for
    // company: one batch.
    for _ in 0..5 {
        assert!(get(port, "/"));
    }
    // The batch of the five is taken and its post hangs.
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let out = kill_and_wait(child, libc::SIGTERM);
    let took = start.elapsed();
    assert_eq!(out.status.signal(), Some(libc::SIGTERM), "{out:?}");
    assert!(took < Duration::from_secs(5), "SIGTERM to exit: {took:?}");
    let spans = read_spandump(&dump);
    assert_eq!(of_kind(&spans, "SpanKind.SERVER").len(), 5, "{spans:#?}");
}

/// Node.js puts its own one-shot handlers on SIGINT and SIGTERM (they
/// restore the terminal and raise the signal again): those replaced ours,
/// and every queued span was lost (0 of 3 with SIGTERM). Now Node's handler
/// runs once, as the kernel would run it, and the signal it raises again
/// flushes: every span is in the dump, and the process dies of the signal
/// with the wait status and output the untraced one has.
#[test]
fn node_exit_handlers_still_flush_on_sigterm_and_sigint() {
    if !have("node") {
        eprintln!("skipped: no node");
        return;
    }
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGINT, "SIGINT")] {
        let tmp = TempDir::new("node-signal");
        let dump = tmp.path("spans.jsonl");
        let script = app("node_service.js");
        let run = |traced_into: Option<&Path>, requests: usize| {
            run_then_signal("node", traced_into, requests, sig, |port| {
                vec![
                    script.display().to_string(),
                    port.to_string(),
                    "no-handlers".to_owned(),
                ]
            })
        };
        let traced_out = run(Some(&dump), 3);
        let untraced = run(None, 0);
        assert_dies_as_untraced(&traced_out, &untraced, sig, name);
        assert_server_spans(&dump, 3, name);
    }
}

/// An app with its own SIGTERM handler gets exactly its own behaviour: the
/// handler runs (it exits with 7), `signal.getsignal` reports what it set,
/// and its spans leave through the normal exit path.
#[test]
fn app_sigterm_handler_runs_as_untraced_and_reads_back_what_it_set() {
    let tmp = TempDir::new("app-handler");
    let dump = tmp.path("spans.jsonl");
    let traced_out = serve_then_signal("handler", Some(&dump), 2, libc::SIGTERM);
    let untraced = serve_then_signal("handler", None, 0, libc::SIGTERM);
    assert_eq!(untraced.status.code(), Some(7), "{untraced:?}");
    assert_eq!(traced_out.status.code(), Some(7), "{traced_out:?}");
    let stdout = String::from_utf8_lossy(&traced_out.stdout);
    assert_eq!(stdout, String::from_utf8_lossy(&untraced.stdout));
    assert!(
        stdout.contains("SIGTERM on_term\n") && stdout.ends_with("handled 15\n"),
        "{stdout}"
    );
    assert_server_spans(&dump, 2, "app handler");
}

/// What `sigaction`, `signal`, `sysv_signal` and Python's `signal` module
/// report back for the four signals, after setting handlers, `SIG_IGN`
/// and `SIG_DFL` with flags and masks, is what they report untraced: our
/// handler is never visible.
#[test]
fn sigaction_and_signal_report_back_what_the_app_set() {
    let tmp = TempDir::new("readback");
    let script = app("sigaction_readback.py");
    let untraced = run(
        {
            let mut c = Command::new("python3");
            c.arg(&script);
            c
        },
        T,
    );
    let mut cmd = traced("python3");
    cmd.arg(&script)
        .env("LUMIGO_DEBUG_SPANDUMP", tmp.path("spans.jsonl"));
    let traced_out = run(cmd, T);
    assert!(untraced.status.success(), "{untraced:?}");
    assert!(traced_out.status.success(), "{traced_out:?}");
    assert_eq!(
        String::from_utf8_lossy(&traced_out.stdout),
        String::from_utf8_lossy(&untraced.stdout)
    );
}

/// An untraced HTTP server (tests/apps/http11_server.py) for traced clients.
fn http11_server() -> (Server, u16) {
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.arg(app("http11_server.py")).arg(port.to_string());
    (Server::spawn(cmd, port), port)
}

/// `sh -c` running 10 curls against `port`, all traced, exporting to
/// `endpoint`, with `state` as `XDG_RUNTIME_DIR`. Returns the wall time.
fn traced_curl_loop(port: u16, endpoint: &str, state: &Path) -> Duration {
    let mut cmd = traced("sh");
    cmd.arg("-c")
        .arg(format!(
            "for i in 0 1 2 3 4 5 6 7 8 9; do curl -s -o /dev/null http://127.0.0.1:{port}/len/1?n=$i || exit 1; done"
        ))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("XDG_RUNTIME_DIR", state);
    let start = Instant::now();
    let out = run(cmd, Duration::from_secs(60));
    let took = start.elapsed();
    assert!(out.status.success(), "{out:?}");
    took
}

/// `execv` tried on many paths that fail (as `os.execvp` does through
/// each directory of `PATH`) with a collector that never answers and a
/// span dump (so the memory of a down collector does not shorten the
/// wait): each try shuts down and flushes, and only the first may wait the
/// whole `LUMIGO_FLUSH_TIMEOUT`; the others, with nothing queued since,
/// return at once (a user trial saw 0.1 s more per directory).
#[test]
fn failed_execs_behind_a_hung_collector_wait_the_flush_timeout_once() {
    let endpoint = hung_collector();
    let (mut server, port) = http11_server();
    let tmp = TempDir::new("failed-execs");
    let dump = tmp.path("spans.jsonl");
    let script = "import os, sys, urllib.request\n\
                  urllib.request.urlopen(sys.argv[1]).read()\n\
                  for d in range(20):\n\
                  \x20   try:\n\
                  \x20       os.execv('/nonexistent/%d/x' % d, ['x'])\n\
                  \x20   except OSError:\n\
                  \x20       pass\n";
    let mut cmd = traced("python3");
    cmd.args(["-c", script])
        .arg(format!("http://127.0.0.1:{port}/len/1"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("LUMIGO_FLUSH_TIMEOUT", "1")
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("XDG_RUNTIME_DIR", &tmp.0);
    let start = Instant::now();
    let out = run(cmd, Duration::from_secs(60));
    let took = start.elapsed();
    server.stop();
    assert!(out.status.success(), "{out:?}");
    // 21 shut-downs (20 execs, the exit): 1 s for the first, where each
    // waited 1 s at first, then 0.1 s.
    eprintln!("failed execs, then exit: {took:?}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    let spans = read_spandump(&dump);
    assert_eq!(spans.len(), 1, "{spans:#?}");
}

/// A process that exits while an OTLP post hangs: the worker wrote the
/// first batch to the span dump before its post, but the spans queued
/// behind that post never reached the dump (1 of 6 requests' spans). The
/// exit now writes them to the dump itself.
#[test]
fn spans_queued_behind_a_hung_post_reach_the_span_dump_at_exit() {
    let endpoint = hung_collector();
    let (mut server, port) = http11_server();
    let tmp = TempDir::new("hung-post-exit");
    let dump = tmp.path("spans.jsonl");
    // One request, a pause for its batch to be taken and posted (the post
    // hangs), then five more.
    let script = "import sys, time, urllib.request\n\
                  urllib.request.urlopen(sys.argv[1]).read()\n\
                  time.sleep(0.5)\n\
                  for _ in range(5):\n\
                  \x20   urllib.request.urlopen(sys.argv[1]).read()\n";
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let app = |dump: &Path| {
        let mut cmd = traced("python3");
        cmd.args(["-c", script])
            .arg(format!("http://127.0.0.1:{port}/len/1"))
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("TRACEPARENT", format!("00-{trace}-{caller}-01"))
            .env("LUMIGO_FLUSH_TIMEOUT", "1")
            .env("LUMIGO_DEBUG", "true")
            .env("LUMIGO_DEBUG_SPANDUMP", dump)
            .env("XDG_RUNTIME_DIR", &tmp.0);
        let start = Instant::now();
        let out = run(cmd, Duration::from_secs(60));
        eprintln!("exit behind a hung post: {:?}", start.elapsed());
        assert!(out.status.success(), "{out:?}");
        out
    };
    let out = app(&dump);
    let spans = read_spandump(&dump);
    let clients = of_kind(&spans, "SpanKind.CLIENT");
    assert_eq!(clients.len(), 6, "{spans:#?}");
    let mut ids: Vec<&str> = clients.iter().map(|s| span_id(s)).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6, "six distinct spans: {spans:#?}");
    for c in clients {
        assert_eq!(trace_id(c), format!("0x{trace}"), "{c:#}");
        assert_eq!(parent_id(c), Some(format!("0x{caller}").as_str()), "{c:#}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("5 spans queued behind an unfinished export written to the span dump only"),
        "the exit says so: {stderr}"
    );
    // A dump on standard output is left alone (its reader could stall the
    // exit), and the exit says what it did not write.
    let out = app(Path::new("/dev/stdout"));
    server.stop();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("\"trace_id\"").count(), 1, "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("5 spans queued behind an unfinished export are not written to the span dump /dev/stdout"),
        "the exit says so: {stderr}"
    );
}

/// The mark file of `endpoint` (as `src/export/health.rs` names it).
fn mark_file(state: &Path, endpoint: &str) -> PathBuf {
    let hash = endpoint.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    // SAFETY: no preconditions.
    let euid = unsafe { libc::geteuid() };
    state.join(format!("lumigo-run-{euid}-{hash:016x}.down"))
}

/// 10 traced curls in a traced shell loop against a black-holed collector
/// (it accepts and never answers) took 10.1 s: each paid the whole
/// LUMIGO_FLUSH_TIMEOUT. The first failure is now remembered (a 0600 file
/// in XDG_RUNTIME_DIR) and the others wait at most 100 ms.
#[test]
fn dead_collector_costs_every_short_lived_process_the_flush_timeout() {
    let (mut server, port) = http11_server();
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", black_hole.local_addr().unwrap());
    let state = TempDir::new("dead-collector");
    let first = traced_curl_loop(port, &endpoint, &state.0);
    let again = traced_curl_loop(port, &endpoint, &state.0);
    server.stop();
    eprintln!("black-holed collector: first loop {first:?}, next loop {again:?}");
    let mark = mark_file(&state.0, &format!("{endpoint}/v1/traces"));
    let meta = std::fs::metadata(&mark).expect("the failure is remembered");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    assert!(first < Duration::from_secs(4), "first loop took {first:?}");
    assert!(again < Duration::from_secs(3), "next loop took {again:?}");
}

/// A remembered failure of a collector that is healthy again costs no
/// span: the short exit wait is enough for it to answer, and its answer
/// clears the memory.
#[test]
fn a_remembered_failure_loses_nothing_once_the_collector_answers() {
    let (mut server, port) = http11_server();
    let receiver = OtlpReceiver::start();
    let state = TempDir::new("recovered-collector");
    let mark = mark_file(&state.0, &receiver.endpoint());
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    std::fs::write(&mark, now_ms.to_string()).unwrap();
    std::fs::set_permissions(&mark, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    traced_curl_loop(port, &receiver.base_url(), &state.0);
    let spans = receiver.wait_for(|s| s.len() >= 10, T);
    server.stop();
    let mut queries: Vec<String> = spans
        .iter()
        .map(|s| s.attr("url.query").unwrap_or("").to_owned())
        .collect();
    queries.sort();
    let expected: Vec<String> = (0..10).map(|i| format!("n={i}")).collect();
    assert_eq!(queries, expected);
    assert!(!mark.exists(), "the first success clears the memory");
}
