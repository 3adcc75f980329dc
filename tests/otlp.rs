//! Spans of real traced programs arriving at an OTLP/HTTP receiver that
//! decodes them with the opentelemetry-proto types.

#[path = "support/otlp_grpc_receiver.rs"]
mod otlp_grpc_receiver;
#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use otlp_grpc_receiver::{have_grpc, GrpcReceiver};
use otlp_receiver::{OtlpReceiver, SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_ERROR};
use support::*;

const T: Duration = Duration::from_secs(30);

fn http11_server(port: u16, traced_with: Option<&OtlpReceiver>) -> Server {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/http11_server.py");
    let mut cmd = match traced_with {
        Some(r) => {
            let mut c = traced("python3");
            c.env("OTEL_EXPORTER_OTLP_ENDPOINT", r.base_url());
            c.env("OTEL_SERVICE_NAME", "py-server");
            c
        }
        None => Command::new("python3"),
    };
    cmd.arg(script).arg(port.to_string());
    Server::spawn(cmd, port)
}

/// An OTLP receiver, and an untraced HTTP server for traced clients to call.
fn receiver_and_untraced_server() -> (OtlpReceiver, u16, Server) {
    let receiver = OtlpReceiver::start();
    let port = free_port();
    let server = http11_server(port, None);
    (receiver, port, server)
}

#[test]
fn curl_and_python_server_spans_reach_an_otlp_receiver() {
    let receiver = OtlpReceiver::start();
    let port = free_port();
    let mut server = http11_server(port, Some(&receiver));

    let mut cmd = traced("curl");
    cmd.args(["-s", "-o", "/dev/null"])
        .arg(format!("http://localhost:{port}/status/502?api_key=k"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url())
        .env("OTEL_EXPORTER_OTLP_HEADERS", "x-team=blue")
        .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test");
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");

    let spans = receiver.wait_for(|s| s.len() >= 2, T);
    server.stop();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let client = spans
        .iter()
        .find(|s| s.kind == SPAN_KIND_CLIENT)
        .expect("client span");
    let srv = spans
        .iter()
        .find(|s| s.kind == SPAN_KIND_SERVER)
        .expect("server span");

    assert_eq!(client.name, "GET");
    assert_eq!(client.attr("http.response.status_code"), Some("502"));
    assert_eq!(client.attr("server.address"), Some("localhost"));
    assert_eq!(
        client.attr("url.full"),
        Some(format!("http://localhost:{port}/status/502?api_key=****").as_str())
    );
    assert_eq!(client.status_code, STATUS_ERROR);
    assert_eq!(client.trace_id.len(), 32);
    assert!(client.end_ns >= client.start_ns && client.start_ns > 0);
    assert_eq!(client.resource_attr("service.name"), Some("curl"));
    assert_eq!(client.resource_attr("deployment.environment"), Some("test"));
    assert_eq!(
        client.resource_attr("process.executable.name"),
        Some("curl")
    );
    assert!(client.resource_attr("process.pid").is_some());
    assert!(client.resource_attr("host.name").is_some());
    assert!(client.resource_attr("lumigo.distro.version").is_some());
    assert_eq!(client.header("x-team"), Some("blue"));

    assert_eq!(srv.resource_attr("service.name"), Some("py-server"));
    assert_eq!(srv.attr("url.path"), Some("/status/502"));
    assert_eq!(srv.attr("url.query"), Some("api_key=****"));
    assert_eq!(srv.attr("http.response.status_code"), Some("502"));
    assert_eq!(srv.status_code, STATUS_ERROR);
    assert_eq!(srv.attr("server.address"), Some("localhost"));
    // The connection's attributes, encoded once per connection: each end's
    // view of the same TCP connection.
    let peer = client.attr("network.peer.address").expect("peer address");
    assert!(peer == "127.0.0.1" || peer == "::1", "{peer}");
    assert_eq!(
        client.attr("network.peer.port"),
        Some(port.to_string().as_str())
    );
    assert_eq!(srv.attr("client.address"), Some(peer));
    assert_eq!(srv.attr("network.peer.address"), Some(peer));
    let client_port = srv.attr("client.port").expect("client port");
    assert_eq!(srv.attr("network.peer.port"), Some(client_port));
    assert_ne!(client_port, port.to_string());
}

#[test]
fn lumigo_token_sends_the_authorization_header() {
    let (receiver, port, mut server) = receiver_and_untraced_server();
    // Our flags go before the command word; everything after it is curl's.
    let mut cmd2 = Command::new(&binaries().launcher);
    cmd2.args([
        "--token",
        " t_abc ",
        "--endpoint",
        &receiver.endpoint(),
        "--service-name",
        "svc",
        "--",
    ])
    .args(["curl", "-s", "-o", "/dev/null"])
    .arg(format!("http://127.0.0.1:{port}/len/3"))
    .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
    .env_remove("LD_PRELOAD");
    let out = run(cmd2, T);
    assert!(out.status.success(), "{out:?}");
    let spans = receiver.wait_for(|s| !s.is_empty(), T);
    server.stop();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].header("authorization"), Some("LumigoToken t_abc"));
    assert_eq!(spans[0].resource_attr("service.name"), Some("svc"));
}

/// A preload library installed without its transport library still traces
/// and writes the span dump; OTLP export that needs it (here gRPC; also
/// `https://`) is refused with a diagnostic that names the missing file,
/// and the launcher warns before starting the app. A plain `http://`
/// collector does not need it: its spans arrive, and nothing is said.
#[test]
fn missing_transport_library_is_reported_and_the_span_dump_still_works() {
    let (receiver, port, mut server) = receiver_and_untraced_server();
    let tmp = TempDir::new("no-transport");
    let b = binaries();
    let library = tmp.path("liblumigo_preload.so");
    let launcher = tmp.path("lumigo-run");
    std::fs::copy(&b.library, &library).unwrap();
    std::fs::copy(&b.launcher, &launcher).unwrap();
    let missing = tmp.path("liblumigo_transport.so");
    let dump = tmp.path("spans.jsonl");

    let mut cmd = Command::new(&launcher);
    cmd.args(["--", "curl", "-s", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/len/3"))
        .env_remove("LD_PRELOAD")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("LUMIGO_DEBUG", "true");
    let out = run(cmd, T);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "xxx200", "{stderr}");
    assert!(
        stderr.contains(&format!("warning: {} is missing", missing.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("cannot load {}", missing.display())),
        "{stderr}"
    );
    let spans = read_spandump(&dump);
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0]["attributes"]["http.response.status_code"], 200);
    std::thread::sleep(Duration::from_millis(300));
    assert!(receiver.spans().is_empty());

    let mut cmd = Command::new(&launcher);
    cmd.args(["--", "curl", "-s", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/len/3"))
        .env_remove("LD_PRELOAD")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url())
        .env("LUMIGO_DEBUG", "true");
    let out = run(cmd, T);
    server.stop();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(!stderr.contains("missing"), "{stderr}");
    assert!(!stderr.contains("cannot load"), "{stderr}");
    let spans = receiver.wait_for(|s| !s.is_empty(), T);
    assert_eq!(spans.len(), 1, "{stderr}");
}

/// The transport library (TLS, gRPC) is not mapped into a traced process
/// at start-up; the export thread loads it once there is a span to send
/// to an endpoint that needs it (here gRPC).
#[test]
fn the_transport_library_is_loaded_only_when_there_is_a_span_to_send() {
    assert!(
        have_grpc(),
        "python grpcio and opentelemetry-proto are missing: run scripts/install-deps.sh"
    );
    let tmp = TempDir::new("transport-load");
    let receiver = GrpcReceiver::start(&tmp, "calls", &[]);
    let port = free_port();
    let mut server = http11_server(port, None);
    let script = format!(
        r#"
import time, urllib.request
def mapped():
    return "liblumigo_transport.so" in open("/proc/self/maps").read()
before = mapped()
urllib.request.urlopen("http://127.0.0.1:{port}/len/2").read()
deadline = time.time() + 10
while not mapped() and time.time() < deadline:
    time.sleep(0.02)
print(before, mapped())
"#
    );
    let mut cmd = traced("python3");
    cmd.args(["-c", &script])
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", receiver.port),
        )
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
    let out = run(cmd, T);
    server.stop();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "False True");
    let calls = receiver.wait_calls(1);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].spans[0].attr("url.path"), Some("/len/2"));
}

/// A process whose collector is a plain `http://` one exports through the
/// preload library's own HTTP/1.1 client: the transport library (and its
/// TLS stack) is never mapped, and the export socket is ours: high,
/// close-on-exec, untraced.
#[test]
fn http_collectors_never_map_the_transport_library() {
    let (receiver, port, mut server) = receiver_and_untraced_server();
    let collector = receiver.addr().port();
    let script = format!(
        r#"
import os, time, urllib.request
def mapped():
    return "liblumigo_transport.so" in open("/proc/self/maps").read()
def export_socket():
    # The connection to the collector that the export keeps alive.
    inodes = set()
    for line in open("/proc/self/net/tcp").read().splitlines()[1:]:
        f = line.split()
        if int(f[2].split(":")[1], 16) == {collector} and f[3] == "01":
            inodes.add(f[9])
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            flags = [l for l in open("/proc/self/fdinfo/" + fd) if l.startswith("flags:")]
            return int(fd), int(flags[0].split()[1], 8)
    return None
for i in range(3):
    urllib.request.urlopen("http://127.0.0.1:{port}/len/2").read()
deadline = time.time() + 10
while export_socket() is None and time.time() < deadline:
    time.sleep(0.02)
time.sleep(0.5)
fd, flags = export_socket()
print(mapped(), fd, bool(flags & 0o2000000))
"#
    );
    let mut cmd = traced("python3");
    cmd.args(["-c", &script])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url());
    let out = run(cmd, T);
    server.stop();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{stdout}");
    assert_eq!(fields[0], "False", "the transport library was mapped");
    let fd: i32 = fields[1].parse().unwrap();
    assert!(fd >= 256, "the export socket is fd {fd}, among the app's");
    assert_eq!(fields[2], "True", "close-on-exec");
    let spans = receiver.wait_for(|s| s.len() >= 3, T);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    assert!(
        spans.iter().all(|s| s.attr("url.path") == Some("/len/2")),
        "only the app's requests are traced, not the export's: {spans:#?}"
    );
}

/// Children forked while the parent's export thread is loading the
/// transport library (the parent forks right after its first request)
/// export their own spans: a fork waits for a load in progress instead of
/// handing the child a half-loaded library or a lock nobody will release.
/// The wait is bounded (20 ms, `preload/src/transport.rs`): a child forked
/// while a slower load is still running (a loaded machine, this debug
/// build of the library, about 12 ms to load when idle) has no OTLP
/// export and says so, as documented; every other child exports, none
/// hangs or crashes.
#[test]
fn children_forked_while_the_transport_loads_still_export() {
    assert!(
        have_grpc(),
        "python grpcio and opentelemetry-proto are missing: run scripts/install-deps.sh"
    );
    // gRPC: an endpoint the transport library serves.
    let tmp = TempDir::new("fork-transport-load");
    let receiver = GrpcReceiver::start(&tmp, "calls", &[]);
    let port = free_port();
    let mut server = http11_server(port, None);
    let script = format!(
        r#"
import os, sys, time, urllib.request
def get(who):
    urllib.request.urlopen("http://127.0.0.1:{port}/len/1?who=" + who).read()
get("parent")
children = []
for i in range(24):
    pid = os.fork()
    if pid == 0:
        get("child")
        sys.exit(0)
    children.append(pid)
    time.sleep(0.0003)
started = time.time()
codes = [os.waitpid(pid, 0)[1] for pid in children]
print(all(c == 0 for c in codes), round(time.time() - started, 1))
"#
    );
    let mut cmd = traced("python3");
    cmd.args(["-c", &script])
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{}", receiver.port),
        )
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("LUMIGO_DEBUG", "true");
    let out = run(cmd, T);
    server.stop();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("True "), "{stdout} {stderr}");
    let off = stderr
        .matches("forked while its parent was still loading")
        .count();
    assert!(off < 24, "{stderr}");
    let start = std::time::Instant::now();
    let mut spans = Vec::new();
    while spans.len() < 25 - off && start.elapsed() < T {
        std::thread::sleep(Duration::from_millis(100));
        spans = receiver.calls().into_iter().flat_map(|c| c.spans).collect();
    }
    let children = spans
        .iter()
        .filter(|s| s.attr("url.query") == Some("who=child"))
        .count();
    assert_eq!(children + off, 24, "{stderr}");
    assert_eq!(
        spans
            .iter()
            .filter(|s| s.attr("url.query") == Some("who=parent"))
            .count(),
        1
    );
}

/// `LD_PRELOAD` set by hand to a relative path, and a program that changes
/// directory before its first span: the transport library is still found
/// (its location is fixed when the library is loaded).
#[test]
fn a_relative_ld_preload_entry_survives_a_chdir() {
    let (receiver, port, mut server) = receiver_and_untraced_server();
    let library = &binaries().library;
    let dir = library.parent().unwrap();
    let script = format!(
        r#"
import os, urllib.request
os.chdir("/")
urllib.request.urlopen("http://127.0.0.1:{port}/len/1").read()
"#
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-c", &script])
        .current_dir(dir)
        .env("LD_PRELOAD", "./liblumigo_preload.so")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url())
        .env("LUMIGO_DEBUG", "true");
    let out = run(cmd, T);
    server.stop();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stderr.contains("#LUMIGO#"),
        "the library was not preloaded: {stderr}"
    );
    let spans = receiver.wait_for(|s| !s.is_empty(), T);
    assert_eq!(spans.len(), 1, "{stderr}");
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:99999` used to send spans
/// to port 80. Now the launcher warns, the endpoint is dropped, the app runs
/// as usual and the other destination (the span dump) still gets its span;
/// nothing connects to port 80.
#[test]
fn impossible_endpoint_port_is_rejected_not_sent_to_port_80() {
    let (_receiver, port, mut server) = receiver_and_untraced_server();
    // Watch port 80 where we can (root, port free): nothing may arrive.
    let port80 = std::net::TcpListener::bind("127.0.0.1:80").ok();
    let tmp = TempDir::new("bad-endpoint");
    let dump = tmp.path("spans.jsonl");
    let mut cmd = traced("curl");
    cmd.args(["-s", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/len/3"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:99999")
        .env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(cmd, T);
    server.stop();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "xxx200", "{stderr}");
    assert!(
        stderr
            .contains("warning: OTLP endpoint \"http://127.0.0.1:99999/v1/traces\" is not usable")
            && stderr.contains("\"99999\""),
        "{stderr}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "one warning, nothing else: {stderr}"
    );
    let spans = read_spandump(&dump);
    assert_eq!(spans.len(), 1, "{spans:#?}");
    if let Some(l) = port80 {
        l.set_nonblocking(true).unwrap();
        assert!(l.accept().is_err(), "something connected to port 80");
    }
}

/// Spans lost to an endpoint answering 503 used to give one debug line per
/// failed batch and no count. Now the first failure is told once and the
/// exit line sums up every lost span by reason.
#[test]
fn lost_spans_are_not_counted_by_reason_at_exit() {
    let (receiver, port, mut server) = receiver_and_untraced_server();
    receiver.set_status(503);
    let script = format!(
        r#"
import time, urllib.request
for i in range(6):
    urllib.request.urlopen("http://127.0.0.1:{port}/len/1").read()
    if i == 2:
        # Two batches: one before the pause (a first span leaves ~100 ms
        # after it is made; the pause leaves room for a loaded machine),
        # one at exit.
        time.sleep(1.5)
"#
    );
    let mut cmd = Command::new(&binaries().launcher);
    cmd.args(["--debug", "--"])
        .args(["python3", "-c", &script])
        .env_remove("LD_PRELOAD")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url())
        .env_remove("LUMIGO_DEBUG_SPANDUMP")
        .env("LUMIGO_FLUSH_TIMEOUT", "5");
    let out = run(cmd, T);
    server.stop();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    let exit_lines: Vec<&str> = stderr.lines().filter(|l| l.contains("exit:")).collect();
    assert_eq!(exit_lines.len(), 1, "{stderr}");
    assert!(
        exit_lines[0].ends_with("exit: 6 spans lost: 6 HTTP 503"),
        "{stderr}"
    );
    let failures = stderr.lines().filter(|l| l.contains("failed")).count();
    assert_eq!(
        failures, 1,
        "one failure message, not one per batch: {stderr}"
    );
    let batches = receiver.requests().len();
    assert!(batches >= 4, "two batches, each tried twice: {batches}");
    assert!(receiver.spans().is_empty());
}
