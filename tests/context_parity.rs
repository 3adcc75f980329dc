//! Lumigo parity (issue 14), the trace-context half: sampling, the b3 and
//! baggage propagators, endpoint filters and execution tags from headers,
//! checked on real programs under the real launcher, by span ids.

mod support;

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

/// An untraced Python client sending `n` GET requests for `path` to
/// `port`, one connection each, with `headers` on every request.
fn untraced_requests(port: u16, path: &str, n: usize, headers: &[(&str, &str)]) {
    let script = format!(
        "import http.client\n\
         for _ in range({n}):\n\
         \x20   c = http.client.HTTPConnection('127.0.0.1', {port}, timeout=10)\n\
         \x20   c.request('GET', {path:?}, headers=dict({headers:?}))\n\
         \x20   c.getresponse().read()\n\
         \x20   c.close()\n"
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script);
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
}

/// A traced `py_service.py` (calls `down_port` on every request) with
/// `env`, writing spans to `dump` as service `name`.
fn middle(dump: &Path, name: &str, down_port: u16, env: &[(&str, &str)]) -> (Server, u16) {
    let port = free_port();
    let mut cmd = traced("python3");
    cmd.arg(app("py_service.py"))
        .arg(port.to_string())
        .arg(down_port.to_string())
        .env("LUMIGO_DEBUG_SPANDUMP", dump)
        .env("OTEL_SERVICE_NAME", name);
    for (k, v) in env {
        cmd.env(k, v);
    }
    (Server::spawn(cmd, port), port)
}

/// A traced `http11_server.py` writing spans to `dump` as service `name`.
fn downstream(dump: &Path, name: &str, env: &[(&str, &str)]) -> (Server, u16) {
    let port = free_port();
    let mut cmd = traced("python3");
    cmd.arg(app("http11_server.py"))
        .arg(port.to_string())
        .env("LUMIGO_DEBUG_SPANDUMP", dump)
        .env("OTEL_SERVICE_NAME", name);
    for (k, v) in env {
        cmd.env(k, v);
    }
    (Server::spawn(cmd, port), port)
}

fn spans_of<'a>(spans: &'a [Value], svc: &str, k: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|s| service(s) == svc && kind(s) == k)
        .collect()
}

/// The sampled bit as the SDKs decide it for ratio 0.25: the trace id's
/// low 8 bytes, shifted right once, below 0.25 × 2^63.
fn kept_at_quarter(trace: &str) -> bool {
    let hex = trace.trim_start_matches("0x");
    let low = u64::from_str_radix(&hex[16..32], 16).unwrap();
    (low >> 1) < (1u64 << 61)
}

/// `OTEL_TRACES_SAMPLER=traceidratio` at 0.25 on a middle service, over
/// 200 requests: about a quarter kept, each kept trace's id below the
/// ratio's bound, and the downstream service (default sampler) follows the
/// decision it receives in `traceparent`: exactly the kept traces, as
/// children of the middle's CLIENT spans.
#[test]
fn ratio_sampler_keeps_about_a_quarter_and_downstream_follows() {
    let tmp = TempDir::new("sampling");
    let dump = tmp.path("spans.jsonl");
    let (mut down, down_port) = downstream(&dump, "down", &[]);
    let (mut mid, mid_port) = middle(
        &dump,
        "mid",
        down_port,
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ],
    );
    untraced_requests(mid_port, "/len/3", 200, &[]);
    mid.stop();
    down.stop();
    let spans = read_spandump(&dump);
    let servers = spans_of(&spans, "mid", "SpanKind.SERVER");
    let clients = spans_of(&spans, "mid", "SpanKind.CLIENT");
    let downs = spans_of(&spans, "down", "SpanKind.SERVER");
    assert!(
        (20..=80).contains(&servers.len()),
        "{} of 200 kept at 0.25",
        servers.len()
    );
    for s in &servers {
        assert_eq!(parent_id(s), None, "untraced caller: a root span");
        assert!(kept_at_quarter(trace_id(s)), "{s:#?}");
    }
    assert_eq!(clients.len(), servers.len(), "children follow their parent");
    for c in &clients {
        assert!(servers
            .iter()
            .any(|s| parent_id(c) == Some(span_id(s)) && trace_id(s) == trace_id(c)));
    }
    assert_eq!(downs.len(), clients.len(), "downstream follows: {spans:#?}");
    for d in &downs {
        assert!(clients
            .iter()
            .any(|c| parent_id(d) == Some(span_id(c)) && trace_id(d) == trace_id(c)));
    }
}

/// `always_off` on the middle service: nothing of it is exported, and the
/// `-00` flags it sends make the downstream service drop its spans too;
/// `always_on` downstream ignores the parent's decision.
#[test]
fn always_off_sampler_is_followed_downstream_unless_it_samples_always() {
    let tmp = TempDir::new("sampling-off");
    let dump = tmp.path("spans.jsonl");
    let (mut down, down_port) = downstream(&dump, "down", &[]);
    let (mut eager, eager_port) =
        downstream(&dump, "eager", &[("OTEL_TRACES_SAMPLER", "always_on")]);
    let (mut mid, mid_port) = middle(
        &dump,
        "mid",
        down_port,
        &[("OTEL_TRACES_SAMPLER", "always_off")],
    );
    let (mut mid2, mid2_port) = middle(
        &dump,
        "mid2",
        eager_port,
        &[("OTEL_TRACES_SAMPLER", "always_off")],
    );
    untraced_requests(mid_port, "/len/3", 5, &[]);
    untraced_requests(mid2_port, "/len/3", 5, &[]);
    mid.stop();
    mid2.stop();
    down.stop();
    eager.stop();
    let spans = read_spandump(&dump);
    let eager_spans = spans_of(&spans, "eager", "SpanKind.SERVER");
    assert_eq!(eager_spans.len(), 5, "{spans:#?}");
    for s in &eager_spans {
        assert!(parent_id(s).is_some(), "still a child of the caller's span");
    }
    assert_eq!(spans.len(), 5, "only always_on spans: {spans:#?}");
}
