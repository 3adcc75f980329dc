//! Event-loop servers (README, "Event-loop servers"): a traced server whose
//! handler awaits, calls a downstream service and answers, under 200
//! requests from 20 concurrent clients. Request N calls `/down/N`; every
//! downstream CLIENT span must be the child, by ids, of the SERVER span of
//! `/req/N`. Node.js and Python asyncio get there through the runtime hint
//! scripts the launcher adds; a thread-per-request server through the
//! thread's own context. Without the hints (the library preloaded by hand),
//! no CLIENT span may sit under another request: each is right or a root
//! that says how many requests were in flight.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

const REQUESTS: usize = 200;
const CONCURRENCY: usize = 20;

fn app(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/apps")
        .join(name)
}

/// What became of the downstream calls.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    /// SERVER spans of `/req/N`.
    servers: usize,
    /// CLIENT spans of `/down/N`.
    clients: usize,
    /// CLIENT spans whose parent is their own request's SERVER span.
    right: usize,
    /// CLIENT spans left a root with `lumigo.parent.candidates`.
    marked_roots: usize,
    /// CLIENT spans under another request's SERVER span.
    wrong: usize,
}

fn tally(spans: &[Value]) -> Tally {
    let number = |s: &str, prefix: &str| s.rsplit_once(prefix).map(|(_, n)| n.to_owned());
    let mut servers = HashMap::new();
    for s in spans.iter().filter(|s| kind(s) == "SpanKind.SERVER") {
        if let Some(n) = attr(s, "url.path")
            .as_str()
            .and_then(|p| number(p, "/req/"))
        {
            servers.insert(n, span_id(s).to_owned());
        }
    }
    let mut t = Tally {
        servers: servers.len(),
        ..Tally::default()
    };
    for c in spans.iter().filter(|s| kind(s) == "SpanKind.CLIENT") {
        let Some(n) = attr(c, "url.full")
            .as_str()
            .and_then(|u| number(u, "/down/"))
        else {
            continue;
        };
        t.clients += 1;
        let parent = parent_id(c).unwrap_or("");
        if servers.get(&n).map(String::as_str) == Some(parent) {
            t.right += 1;
        } else if servers.values().any(|id| id == parent) {
            t.wrong += 1;
        } else if attr(c, "lumigo.parent.candidates").as_i64().unwrap_or(0) > 1 {
            t.marked_roots += 1;
        }
    }
    t
}

/// Runs `server` (given its port and the downstream port as its last two
/// arguments, then `extra`) under load and tallies its spans.
fn run_loop(server: Command, extra: &[&str], tmp: &TempDir) -> (Tally, String) {
    run_loop_with(server, extra, tmp, &[])
}

/// [`run_loop`], with `down_args` after the downstream service's port.
fn run_loop_with(
    mut server: Command,
    extra: &[&str],
    tmp: &TempDir,
    down_args: &[&str],
) -> (Tally, String) {
    let dump = tmp.path("spans.jsonl");
    let (port, down_port) = (free_port(), free_port());
    let mut down = Command::new("python3");
    down.arg(app("loop_load.py"))
        .args(["serve", &down_port.to_string()])
        .args(down_args);
    let _down = Server::spawn(down, down_port);
    server
        .args([port.to_string(), down_port.to_string()])
        .args(extra)
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_SERVICE_NAME", "loop");
    let mut server = Server::spawn(server, port);
    let mut load = Command::new("python3");
    load.arg(app("loop_load.py")).args([
        "load",
        &port.to_string(),
        &REQUESTS.to_string(),
        &CONCURRENCY.to_string(),
    ]);
    let out = run(load, Duration::from_secs(120));
    let answered = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let spans = wait_spans(&dump, Duration::from_secs(20), |s| {
        let t = tally(s);
        t.servers >= REQUESTS && t.clients >= REQUESTS
    });
    server.stop();
    let stderr = {
        let mut s = String::new();
        if let Some(mut e) = server.child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut s);
        }
        s
    };
    (
        tally(&spans),
        format!("answered {answered}; stderr: {stderr}"),
    )
}

fn all_right(t: &Tally, what: &str) {
    let want = Tally {
        servers: REQUESTS,
        clients: REQUESTS,
        right: REQUESTS,
        marked_roots: 0,
        wrong: 0,
    };
    assert_eq!(*t, want, "{what}");
}

fn node_server(mode: &str) {
    assert!(have("node"), "node is required (scripts/install-deps.sh)");
    let tmp = TempDir::new(&format!("loop-node-{mode}"));
    let mut cmd = traced("node");
    cmd.arg(app("loop_node.js"));
    let (t, info) = run_loop(cmd, &[mode], &tmp);
    all_right(&t, &info);
}

#[test]
fn node_http_with_a_keep_alive_agent_gives_every_call_its_own_request() {
    node_server("agent");
}

#[test]
fn node_http_with_the_default_agent_gives_every_call_its_own_request() {
    node_server("plain");
}

#[test]
fn node_fetch_gives_every_call_its_own_request() {
    node_server("fetch");
}

#[test]
fn node_express_gives_every_call_its_own_request() {
    node_server("express");
}

/// Regression (issue 16): libuv closes sockets with `syscall(SYS_close)`,
/// which no `close` hook sees; a new socket then got the old one's number
/// and was taken for a repeated `connect` of the old connection, whose
/// parser had stopped after an HTTP/1.0 answer: its requests made no span.
#[test]
fn node_keep_alive_agent_against_a_closing_downstream_loses_no_span() {
    assert!(have("node"), "node is required (scripts/install-deps.sh)");
    for mode in ["agent", "fetch"] {
        let tmp = TempDir::new(&format!("loop-node-close-{mode}"));
        let mut cmd = traced("node");
        cmd.arg(app("loop_node.js"));
        let (t, info) = run_loop_with(cmd, &[mode], &tmp, &["close"]);
        all_right(&t, &format!("{mode}: {info}"));
    }
}

fn asyncio_server(mode: &str) {
    if mode == "aiohttp" {
        assert!(
            python_has("aiohttp"),
            "aiohttp is required (scripts/install-deps.sh)"
        );
    }
    let tmp = TempDir::new(&format!("loop-py-{mode}"));
    let mut cmd = traced("python3");
    cmd.arg(app("loop_asyncio.py"));
    let (t, info) = run_loop(cmd, &[mode], &tmp);
    all_right(&t, &info);
}

#[test]
fn aiohttp_server_and_client_session_give_every_call_its_own_request() {
    asyncio_server("aiohttp");
}

#[test]
fn asyncio_streams_server_gives_every_call_its_own_request() {
    asyncio_server("streams");
}

#[test]
fn threaded_python_server_keeps_exact_parents() {
    let tmp = TempDir::new("loop-threaded");
    let mut cmd = traced("python3");
    cmd.arg(app("loop_threaded.py"));
    let (t, info) = run_loop(cmd, &[], &tmp);
    all_right(&t, &info);
}

/// The library preloaded by hand: no hint scripts. Calls made while
/// several requests are in flight are roots that say so, never another
/// request's children.
#[test]
fn without_hints_no_call_is_put_under_another_request() {
    assert!(have("node"), "node is required (scripts/install-deps.sh)");
    let tmp = TempDir::new("loop-nohint");
    let mut cmd = Command::new("node");
    cmd.env("LD_PRELOAD", &binaries().library)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env_remove("NODE_OPTIONS")
        .arg(app("loop_node.js"));
    let (t, info) = run_loop(cmd, &["agent"], &tmp);
    assert_eq!(
        (t.servers, t.clients, t.wrong),
        (REQUESTS, REQUESTS, 0),
        "{t:?} {info}"
    );
    assert_eq!(t.right + t.marked_roots, REQUESTS, "{t:?} {info}");
    assert!(t.marked_roots > 0, "the load overlaps requests: {t:?}");
}

/// The app's own `NODE_OPTIONS` and `sitecustomize` still apply, with the
/// hints on top.
#[test]
fn the_apps_own_node_options_and_sitecustomize_still_apply() {
    assert!(have("node"), "node is required (scripts/install-deps.sh)");
    let tmp = TempDir::new("loop-own");
    let pre = tmp.path("app-preload.js");
    std::fs::write(&pre, "process.stdout.write('app preload\\n');\n").unwrap();
    let mut cmd = traced("node");
    cmd.env("NODE_OPTIONS", format!("--require {}", pre.display()))
        .args([
            "-e",
            "console.log(process.env.NODE_OPTIONS.includes('lumigo-hint.js'))",
        ]);
    let out = run(cmd, Duration::from_secs(30));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "app preload\ntrue\n");
    assert!(out.status.success());

    let site = tmp.path("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(
        site.join("sitecustomize.py"),
        "import sys\nsys.stdout.write('app sitecustomize\\n')\nVALUE = 42\n",
    )
    .unwrap();
    let script = "import sitecustomize, sys\nprint(sitecustomize.VALUE)\nsys.exit(3)";
    let expect = |mut cmd: Command| {
        cmd.env("PYTHONPATH", &site)
            .args(["-c", script])
            .stdin(Stdio::null());
        let out = run(cmd, Duration::from_secs(30));
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.stderr,
        )
    };
    let alone = expect(Command::new("python3"));
    let traced_out = expect(traced("python3"));
    assert_eq!(alone.0, Some(3));
    assert_eq!(alone.1, "app sitecustomize\n42\n");
    assert_eq!((traced_out.0, traced_out.1), (alone.0, alone.1));
}
