//! W3C trace context across real processes in three runtimes, the
//! transparency of the inserted `traceparent`, and in-process correlation
//! under concurrent load.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

const T: Duration = Duration::from_secs(60);

fn app(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/apps")
        .join(name)
}

fn s<'a>(span: &'a Value, key: &str) -> &'a str {
    span[key].as_str().unwrap_or("")
}
fn trace_id(span: &Value) -> &str {
    span["context"]["trace_id"].as_str().unwrap()
}
fn span_id(span: &Value) -> &str {
    span["context"]["span_id"].as_str().unwrap()
}
fn parent_id(span: &Value) -> Option<&str> {
    span["parent_id"].as_str()
}
fn service(span: &Value) -> &str {
    span["resource"]["attributes"]["service.name"]
        .as_str()
        .unwrap_or("")
}

/// curl → Python service → Node.js service, all traced: one trace whose
/// parent chain is client → server → client → server, checked by ids.
fn three_runtime_chain(traceparent: Option<&str>) -> Vec<Value> {
    assert!(have("node"), "node is required for this test");
    let tmp = TempDir::new("chain");
    let dump = tmp.path("chain.jsonl");
    let (node_port, py_port) = (free_port(), free_port());

    let mut node = traced("node");
    node.arg(app("node_service.js")).arg(node_port.to_string());
    node.env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_SERVICE_NAME", "node-svc");
    let mut node = Server::spawn(node, node_port);

    let mut py = traced("python3");
    py.arg(app("py_service.py"))
        .arg(py_port.to_string())
        .arg(node_port.to_string());
    py.env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_SERVICE_NAME", "py-svc");
    let mut py = Server::spawn(py, py_port);

    let mut curl = traced("curl");
    curl.args(["-s", "-f"])
        .arg(format!("http://127.0.0.1:{py_port}/hop"));
    curl.env("LUMIGO_DEBUG_SPANDUMP", &dump);
    if let Some(tp) = traceparent {
        curl.env("TRACEPARENT", tp);
    }
    let out = run(curl, T);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "node ok\n");

    let spans = wait_spans(&dump, T, |s| s.len() >= 4);
    py.stop();
    node.stop();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let find = |svc: &str, k: &str| -> Value {
        spans
            .iter()
            .find(|x| service(x) == svc && s(x, "kind") == k)
            .unwrap_or_else(|| panic!("no {k} span from {svc}: {spans:#?}"))
            .clone()
    };
    let curl_client = find("curl", "SpanKind.CLIENT");
    let py_server = find("py-svc", "SpanKind.SERVER");
    let py_client = find("py-svc", "SpanKind.CLIENT");
    let node_server = find("node-svc", "SpanKind.SERVER");

    let trace = trace_id(&curl_client);
    for sp in [&py_server, &py_client, &node_server] {
        assert_eq!(trace_id(sp), trace, "one trace: {spans:#?}");
    }
    assert_eq!(parent_id(&py_server), Some(span_id(&curl_client)));
    assert_eq!(parent_id(&py_client), Some(span_id(&py_server)));
    assert_eq!(parent_id(&node_server), Some(span_id(&py_client)));
    assert_eq!(node_server["attributes"]["url.path"], "/downstream/hop");
    vec![curl_client, py_server, py_client, node_server]
}

#[test]
fn one_trace_across_curl_python_and_node() {
    let chain = three_runtime_chain(None);
    assert_eq!(parent_id(&chain[0]), None, "curl's span is the root");
}

#[test]
fn traceparent_in_the_environment_joins_an_existing_trace() {
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let chain = three_runtime_chain(Some(tp));
    assert_eq!(trace_id(&chain[0]), "0x4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(parent_id(&chain[0]), Some("0x00f067aa0ba902b7"));
}

/// Removes the one `traceparent` line a captured request must carry and
/// checks where it was.
fn strip_traceparent(captured: &[u8]) -> Vec<u8> {
    let text = captured;
    let needle = b"\r\ntraceparent: 00-";
    let starts: Vec<usize> = text
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| w.eq_ignore_ascii_case(needle))
        .map(|(i, _)| i + 2)
        .collect();
    assert_eq!(
        starts.len(),
        1,
        "exactly one traceparent line: {}",
        String::from_utf8_lossy(captured)
    );
    let start = starts[0];
    let len = "traceparent: 00-".len() + 32 + 1 + 16 + 1 + 2 + 2;
    let line = &text[start..start + len];
    assert!(line.ends_with(b"\r\n"), "{}", String::from_utf8_lossy(line));
    assert_eq!(
        &text[start + len..start + len + 2],
        b"\r\n",
        "the line goes just before the empty line ending the head"
    );
    let mut out = text[..start].to_vec();
    out.extend_from_slice(&text[start + len..]);
    out
}

fn write_pattern(mode: &str, server_delay: &str) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, String) {
    write_pattern_with(mode, server_delay, &[])
}

fn write_pattern_with(
    mode: &str,
    server_delay: &str,
    env: &[(&str, &str)],
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, String) {
    let tmp = TempDir::new(&format!("patterns-{mode}"));
    let log = tmp.path("captured.jsonl");
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.arg(app("capture_server.py"))
        .arg(port.to_string())
        .arg(&log)
        .arg(server_delay);
    let mut server = Server::spawn(cmd, port);

    let mut client = traced("python3");
    client
        .arg(app("write_patterns.py"))
        .arg(port.to_string())
        .arg(mode)
        .envs(env.iter().copied());
    let out = run(client, T);
    assert!(out.status.success(), "{out:?}");
    server.stop();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let sent: Vec<Vec<u8>> = stdout
        .lines()
        .filter(|l| !l.contains('='))
        .map(hex_decode)
        .collect();
    let captured: Vec<Vec<u8>> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            hex_decode(v["bytes"].as_str().unwrap())
        })
        // wait_for_port's probe connection sends nothing.
        .filter(|c| !c.is_empty())
        .collect();
    (sent, captured, stdout)
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn head_split_at_every_offset_gets_exactly_one_traceparent() {
    let (sent, captured, _) = write_pattern("split", "0");
    assert!(sent.len() > 60, "one request per split offset");
    assert_eq!(sent.len(), captured.len());
    let mut captured_clean: Vec<Vec<u8>> = captured.iter().map(|c| strip_traceparent(c)).collect();
    captured_clean.sort();
    let mut sent = sent;
    sent.sort();
    assert!(
        captured_clean == sent,
        "the peer got the app's bytes plus the line, nothing else"
    );
}

#[test]
fn writev_with_many_small_buffers_gets_exactly_one_traceparent() {
    let (sent, captured, _) = write_pattern("writev", "0");
    assert_eq!(captured.len(), 1);
    assert!(strip_traceparent(&captured[0]) == sent[0]);
}

#[test]
fn non_blocking_socket_with_a_full_send_buffer_gets_exactly_one_traceparent() {
    let (sent, captured, stdout) = write_pattern("nonblock", "0.5");
    assert_eq!(captured.len(), 1);
    assert!(
        strip_traceparent(&captured[0]) == sent[0],
        "2 MB body intact"
    );
    let stats = stdout.lines().last().unwrap();
    let eagain: u64 = stats
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("eagain="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(eagain > 0, "the test must really hit EAGAIN: {stats}");
}

/// A threaded Python service calling downstream on every request, under
/// concurrent load: every CLIENT span lands under the SERVER span of the
/// request that made it.
#[test]
fn threaded_server_client_spans_land_under_the_right_server_span() {
    let tmp = TempDir::new("threaded");
    let dump = tmp.path("svc.jsonl");
    let (down_port, svc_port) = (free_port(), free_port());
    let mut down = Command::new("python3");
    down.arg(app("http11_server.py")).arg(down_port.to_string());
    // The downstream answers /downstream/... with 404 quickly; fine for timing.
    let mut down = Server::spawn(down, down_port);
    let mut svc = traced("python3");
    svc.arg(app("py_service.py"))
        .arg(svc_port.to_string())
        .arg(down_port.to_string());
    svc.env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let mut svc = Server::spawn(svc, svc_port);

    // 40 requests, 8 at a time, each with its own trace.
    let script = format!(
        r#"
import http.client, concurrent.futures
def one(i):
    c = http.client.HTTPConnection("127.0.0.1", {svc_port}, timeout=20)
    c.request("GET", "/r%d" % i, headers={{"traceparent": "00-%032x-%016x-01" % (i + 1, i + 1)}})
    c.getresponse().read()
    c.close()
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    list(ex.map(one, range(40)))
"#
    );
    let mut load = Command::new("python3");
    load.args(["-c", &script]);
    let out = run(load, T);
    assert!(out.status.success(), "{out:?}");
    let spans = wait_spans(&dump, T, |s| s.len() >= 80);
    svc.stop();
    down.stop();
    assert_eq!(spans.len(), 80, "40 server + 40 client spans");

    let servers: HashMap<&str, &Value> = spans
        .iter()
        .filter(|x| s(x, "kind") == "SpanKind.SERVER")
        .map(|x| (span_id(x), x))
        .collect();
    assert_eq!(servers.len(), 40);
    for client in spans.iter().filter(|x| s(x, "kind") == "SpanKind.CLIENT") {
        let parent = parent_id(client).expect("client span has a parent");
        let server = servers
            .get(parent)
            .unwrap_or_else(|| panic!("parent is not a server span: {client}"));
        assert_eq!(trace_id(client), trace_id(server));
        // The request path tells which inbound request made the call.
        let inbound = server["attributes"]["url.path"].as_str().unwrap();
        let outbound = client["attributes"]["url.path"].as_str().unwrap();
        assert_eq!(outbound, format!("/downstream{inbound}"));
        let n: u64 = inbound.trim_start_matches("/r").parse().unwrap();
        assert_eq!(
            trace_id(server),
            format!("0x{:032x}", n + 1),
            "server continues its request's trace"
        );
    }
}

/// A child process started while serving a request (subprocess → curl)
/// gets the request's context through TRACEPARENT and joins the trace.
#[test]
fn subprocess_started_while_serving_joins_the_trace() {
    let tmp = TempDir::new("subprocess");
    let dump = tmp.path("sub.jsonl");
    let (down_port, svc_port) = (free_port(), free_port());
    let mut down = Command::new("python3");
    down.arg(app("http11_server.py")).arg(down_port.to_string());
    let mut down = Server::spawn(down, down_port);
    let mut svc = traced("python3");
    svc.arg(app("subprocess_service.py"))
        .arg(svc_port.to_string())
        .arg(down_port.to_string());
    svc.env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_SERVICE_NAME", "parent-svc");
    let mut svc = Server::spawn(svc, svc_port);

    let mut curl = Command::new("curl");
    curl.args(["-s", "-f", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{svc_port}/work"));
    assert!(run(curl, T).status.success());
    let spans = wait_spans(&dump, T, |s| s.len() >= 2);
    svc.stop();
    down.stop();
    let server = spans
        .iter()
        .find(|x| s(x, "kind") == "SpanKind.SERVER")
        .expect("server span");
    let child = spans
        .iter()
        .find(|x| x["resource"]["attributes"]["process.executable.name"] == "curl")
        .expect("the child curl's span");
    assert_eq!(s(child, "kind"), "SpanKind.CLIENT");
    assert_eq!(trace_id(child), trace_id(server));
    assert_eq!(parent_id(child), Some(span_id(server)));
}

/// `lumigo-run --process-span sh -c SCRIPT`, with `{url}` in SCRIPT a
/// local server's URL: the exit code and the `sh`, `curl` and `GET` spans
/// (checked to be the only ones, in one trace, each the child of the one
/// before).
fn process_span_run(script: &str) -> (Option<i32>, [Value; 3]) {
    let tmp = TempDir::new("process-span");
    let dump = tmp.path("ps.jsonl");
    let port = free_port();
    let mut down = Command::new("python3");
    down.arg(app("http11_server.py")).arg(port.to_string());
    let mut down = Server::spawn(down, port);
    let mut cmd = Command::new(&binaries().launcher);
    cmd.args(["--process-span", "--spandump"])
        .arg(&dump)
        .args(["--", "sh", "-c"])
        .arg(script.replace("{url}", &format!("http://127.0.0.1:{port}/len/1")))
        .env_remove("LD_PRELOAD")
        .env_remove("TRACEPARENT");
    let out = run(cmd, T);
    down.stop();
    let spans = read_spandump(&dump);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let by_name = |n: &str| {
        spans
            .iter()
            .find(|x| s(x, "name") == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n}: {spans:#?}"))
    };
    let (sh, curl, get) = (by_name("sh"), by_name("curl"), by_name("GET"));
    assert_eq!(parent_id(&sh), None);
    assert_eq!(parent_id(&curl), Some(span_id(&sh)));
    assert_eq!(parent_id(&get), Some(span_id(&curl)));
    assert!(spans.iter().all(|x| trace_id(x) == trace_id(&sh)));
    (out.status.code(), [sh, curl, get])
}

/// `--process-span` wraps a run in an INTERNAL span that ends at exit with
/// the exit status; programs it starts join it. The shell ends through
/// `_exit`, which must still export.
#[test]
fn process_span_wraps_a_run_and_its_children() {
    let (code, [sh, _, _]) = process_span_run("curl -s -o /dev/null {url}; exit 3");
    assert_eq!(code, Some(3));
    assert_eq!(s(&sh, "kind"), "SpanKind.INTERNAL");
    assert_eq!(sh["status"]["status_code"], "ERROR");
    assert_eq!(sh["attributes"]["process.exit.code"], 3);
}

/// A process that `exec`s another program: its image, queue and process
/// span used to vanish, and the new program's spans named a parent no one
/// exported (every `psql` run with `--process-span`: Debian's `psql` is a
/// Perl script that execs the real one). The process span ends and is
/// exported at the exec, as at exit; the new image's is its child.
#[test]
fn a_process_that_execs_exports_its_process_span_first() {
    let (code, _) = process_span_run("exec curl -s -o /dev/null {url}");
    assert_eq!(code, Some(0));
}

/// An `exec` that fails (`execv` of a path that does not exist) shut the
/// tracing down for nothing: the process goes on, and what it does next
/// is exported at its own exit. Its process span ends once, at the failed
/// exec; the app sees the exec's errno as it would untraced.
#[test]
fn a_failed_exec_leaves_the_process_traced_to_its_exit() {
    let tmp = TempDir::new("failed-exec");
    let dump = tmp.path("fx.jsonl");
    let port = free_port();
    let mut down = Command::new("python3");
    down.arg(app("http11_server.py")).arg(port.to_string());
    let mut down = Server::spawn(down, port);
    let script = "import os, sys, urllib.request\n\
                  u = sys.argv[1]\n\
                  urllib.request.urlopen(u + '/len/1').read()\n\
                  try:\n    os.execv('/nonexistent/lumigo-run-test', ['x'])\n\
                  except OSError as e:\n    print('errno', e.errno)\n\
                  urllib.request.urlopen(u + '/len/2').read()\n";
    let mut cmd = Command::new(&binaries().launcher);
    cmd.args(["--process-span", "--spandump"])
        .arg(&dump)
        .args(["--", "python3", "-c", script])
        .arg(format!("http://127.0.0.1:{port}"))
        .env_remove("LD_PRELOAD")
        .env_remove("TRACEPARENT");
    let out = run(cmd, T);
    down.stop();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "errno 2");
    let spans = read_spandump(&dump);
    let process: Vec<&Value> = spans.iter().filter(|x| s(x, "name") == "python3").collect();
    assert_eq!(process.len(), 1, "one process span: {spans:#?}");
    let gets: Vec<&Value> = spans.iter().filter(|x| s(x, "name") == "GET").collect();
    let targets: Vec<&str> = gets
        .iter()
        .map(|g| g["attributes"]["url.full"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        gets.len(),
        2,
        "the request after the failed exec too: {spans:#?}"
    );
    assert!(
        targets[0].ends_with("/len/1") && targets[1].ends_with("/len/2"),
        "{targets:?}"
    );
    for g in gets {
        assert_eq!(parent_id(g), Some(span_id(process[0])));
        assert_eq!(trace_id(g), trace_id(process[0]));
    }
}

/// `OTEL_PROPAGATORS=none`: requests go out exactly as the app wrote them.
#[test]
fn propagation_off_sends_the_apps_bytes_untouched() {
    let (sent, captured, _) = write_pattern_with("writev", "0", &[("OTEL_PROPAGATORS", "none")]);
    assert_eq!(captured.len(), 1);
    assert!(captured[0] == sent[0], "no traceparent inserted");
}

/// nginx as a reverse proxy forwards the caller's `traceparent` unchanged:
/// it is replaced in place with one naming nginx's CLIENT span, so the
/// chain curl CLIENT → nginx SERVER → nginx CLIENT → upstream SERVER holds
/// by ids, on every request of a keep-alive connection (a flat trace before:
/// nginx's CLIENT and the upstream's SERVER were both children of curl's).
#[test]
fn nginx_proxy_forwarding_the_callers_traceparent_keeps_the_chain() {
    assert!(
        have("nginx"),
        "nginx is required (scripts/install-deps.sh installs it)"
    );
    let tmp = TempDir::new("proxy");
    let (up_port, port) = (free_port(), free_port());
    let (curl_dump, nginx_dump, up_dump) = (
        tmp.path("curl.jsonl"),
        tmp.path("nginx.jsonl"),
        tmp.path("up.jsonl"),
    );
    let mut up = traced("python3");
    up.arg(app("http11_server.py")).arg(up_port.to_string());
    up.env("LUMIGO_DEBUG_SPANDUMP", &up_dump)
        .env("OTEL_SERVICE_NAME", "upstream");
    let mut up = Server::spawn(up, up_port);

    let conf = nginx_config(
        &tmp,
        &format!(
            "upstream up {{ server 127.0.0.1:{up_port}; keepalive 4; }}\n\
             server {{ listen 127.0.0.1:{port};\n\
               location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}"
        ),
    );
    let mut nginx = traced("nginx");
    nginx.arg("-c").arg(&conf).arg("-p").arg(&tmp.0);
    nginx.env("LUMIGO_DEBUG_SPANDUMP", &nginx_dump);
    let mut nginx = Server::spawn(nginx, port);

    let mut curl = traced("curl");
    curl.args([
        "-s",
        "-f",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
    ])
    .arg(format!("http://127.0.0.1:{port}/len/10"))
    .arg(format!("http://127.0.0.1:{port}/len/20"))
    .arg(format!("http://127.0.0.1:{port}/status/204"));
    curl.env("LUMIGO_DEBUG_SPANDUMP", &curl_dump);
    let out = run(curl, T);
    assert!(out.status.success(), "{out:?}");

    let curls = read_spandump(&curl_dump);
    let ups = wait_spans(&up_dump, T, |s| s.len() >= 3);
    let nginxes = wait_spans(&nginx_dump, T, |s| s.len() >= 6);
    nginx.stop();
    up.stop();
    assert_eq!(curls.len(), 3, "{curls:#?}");
    assert_eq!(ups.len(), 3, "{ups:#?}");
    assert_eq!(nginxes.len(), 6, "{nginxes:#?}");
    for (i, curl_client) in curls.iter().enumerate() {
        let path = curl_client["attributes"]["url.path"].as_str().unwrap();
        let by = |spans: &[Value], k: &str| -> Value {
            spans
                .iter()
                .find(|x| s(x, "kind") == k && x["attributes"]["url.path"] == path)
                .unwrap_or_else(|| panic!("no {k} span for {path}: {spans:#?}"))
                .clone()
        };
        let nginx_server = by(&nginxes, "SpanKind.SERVER");
        let nginx_client = by(&nginxes, "SpanKind.CLIENT");
        let up_server = by(&ups, "SpanKind.SERVER");
        let trace = trace_id(curl_client);
        for sp in [&nginx_server, &nginx_client, &up_server] {
            assert_eq!(trace_id(sp), trace, "request {i}: one trace");
        }
        assert_eq!(parent_id(&nginx_server), Some(span_id(curl_client)));
        assert_eq!(parent_id(&nginx_client), Some(span_id(&nginx_server)));
        assert_eq!(
            parent_id(&up_server),
            Some(span_id(&nginx_client)),
            "request {i}: the upstream's parent is nginx's CLIENT span"
        );
    }
}

/// A proxy's outbound request carrying the very `traceparent` its inbound
/// request came with, its head split in two sends at every offset: the peer
/// gets the app's bytes with only that value changed, in place, to one of the
/// same trace and length naming another span (our CLIENT span); no line is
/// added and every count is the app's (the script checks each send). A value
/// whose line the app's own sends cut in two after the value's start is left
/// alone: its first part is gone before the line can be recognised.
#[test]
fn a_forwarded_traceparent_is_replaced_in_place_at_every_split() {
    const FORWARDED: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (sent, captured, _) = write_pattern("forward", "0");
    assert!(sent.len() > 60, "one request per split offset");
    assert_eq!(sent.len(), captured.len());
    let mut ours = std::collections::HashSet::new();
    for (i, (sent, got)) in sent.iter().zip(&captured).enumerate() {
        let split = i + 1;
        assert_eq!(got.len(), sent.len(), "split {split}: nothing inserted");
        let at = sent
            .windows(FORWARDED.len())
            .position(|w| w == FORWARDED)
            .unwrap();
        // Cut inside the value, or before its line's end: the line is not
        // complete until the value's first bytes are gone.
        if (at + 1..=at + FORWARDED.len() + 1).contains(&split) {
            assert_eq!(got, sent, "split {split} inside the value: left alone");
            continue;
        }
        assert_eq!(got[..at], sent[..at]);
        assert_eq!(got[at + 55..], sent[at + 55..]);
        let value = &got[at..at + 55];
        let text = String::from_utf8_lossy(value);
        assert_eq!(
            value[..36],
            FORWARDED[..36],
            "split {split}: same trace: {text}"
        );
        assert_ne!(
            value[36..52],
            FORWARDED[36..52],
            "split {split}: ours: {text}"
        );
        assert_eq!(value[52..], FORWARDED[52..]);
        ours.insert(value.to_vec());
    }
    assert_eq!(
        ours.len(),
        captured.len() - (FORWARDED.len() + 1),
        "a CLIENT span per request"
    );
}
