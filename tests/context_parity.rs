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
    eprintln!("traceidratio 0.25: {} of 200 kept", servers.len());
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

/// An untraced server recording every request it gets (heads as text).
struct Capture {
    server: Server,
    port: u16,
    log: PathBuf,
}

impl Capture {
    fn start(tmp: &TempDir) -> Capture {
        let log = tmp.path("captured.jsonl");
        let port = free_port();
        let mut cmd = Command::new("python3");
        cmd.arg(app("capture_server.py"))
            .arg(port.to_string())
            .arg(&log);
        Capture {
            server: Server::spawn(cmd, port),
            port,
            log,
        }
    }

    /// The request heads received, as text (lines split, CRLF removed).
    fn heads(&mut self) -> Vec<Vec<String>> {
        self.server.stop();
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                let hex = v["bytes"].as_str().unwrap();
                let bytes: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let head = text.split("\r\n\r\n").next().unwrap_or("").to_owned();
                head.split("\r\n").map(str::to_owned).collect::<Vec<_>>()
            })
            // wait_for_port's probe connection sends nothing.
            .filter(|h: &Vec<String>| h.iter().any(|l| !l.is_empty()))
            .collect()
    }
}

/// The values of header `name` (any case) in a captured head.
fn header<'a>(head: &'a [String], name: &str) -> Vec<&'a str> {
    head.iter()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

fn bare(id: &str) -> &str {
    id.trim_start_matches("0x")
}

const B3_TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
const B3_SPAN: &str = "e457b5a2e4d86bd1";

/// `OTEL_PROPAGATORS=b3`: a traced curl sending its own `b3` header to a
/// traced middle service continues that trace (the header the app wrote
/// is kept, not replaced by ours), and the middle's downstream request, as
/// an untraced server sees it, carries a `b3` header naming the middle's
/// CLIENT span and no `traceparent`.
#[test]
fn b3_header_continues_the_trace_and_goes_downstream() {
    let tmp = TempDir::new("b3");
    let dump = tmp.path("spans.jsonl");
    let mut cap = Capture::start(&tmp);
    let (mut mid, mid_port) = middle(&dump, "mid", cap.port, &[("OTEL_PROPAGATORS", "b3")]);
    let mut curl = traced("curl");
    curl.args(["-s", "-o", "/dev/null", "-H"])
        .arg(format!("b3: {B3_TRACE}-{B3_SPAN}-1"))
        .arg(format!("http://127.0.0.1:{mid_port}/b3"))
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_SERVICE_NAME", "curl")
        .env("OTEL_PROPAGATORS", "b3");
    let out = run(curl, T);
    assert!(out.status.success(), "{out:?}");
    mid.stop();
    let spans = read_spandump(&dump);
    let heads = cap.heads();
    let server = spans_of(&spans, "mid", "SpanKind.SERVER");
    let client = spans_of(&spans, "mid", "SpanKind.CLIENT");
    assert_eq!((server.len(), client.len()), (1, 1), "{spans:#?}");
    let (server, client) = (server[0], client[0]);
    assert_eq!(bare(trace_id(server)), B3_TRACE, "{server:#?}");
    assert_eq!(parent_id(server).map(bare), Some(B3_SPAN));
    assert_eq!(parent_id(client), Some(span_id(server)));
    assert_eq!(trace_id(client), trace_id(server));
    assert_eq!(heads.len(), 1, "{heads:?}");
    let expected = format!("{B3_TRACE}-{}-1", bare(span_id(client)));
    assert_eq!(
        header(&heads[0], "b3"),
        vec![expected.as_str()],
        "{heads:?}"
    );
    assert!(header(&heads[0], "traceparent").is_empty(), "{heads:?}");
}

/// A `b3` parent that says "not sampled" is followed: no span exported,
/// and the decision goes on downstream (`-0`).
#[test]
fn unsampled_b3_parent_is_followed() {
    let tmp = TempDir::new("b3-unsampled");
    let dump = tmp.path("spans.jsonl");
    let mut cap = Capture::start(&tmp);
    let (mut mid, mid_port) = middle(&dump, "mid", cap.port, &[("OTEL_PROPAGATORS", "b3")]);
    untraced_requests(
        mid_port,
        "/b3",
        1,
        &[("b3", &format!("{B3_TRACE}-{B3_SPAN}-0"))],
    );
    mid.stop();
    let heads = cap.heads();
    assert!(read_spandump(&dump).is_empty());
    assert_eq!(heads.len(), 1, "{heads:?}");
    let b3 = header(&heads[0], "b3");
    assert_eq!(b3.len(), 1, "{heads:?}");
    assert!(
        b3[0].starts_with(B3_TRACE) && b3[0].ends_with("-0"),
        "{b3:?}"
    );
}

/// `OTEL_PROPAGATORS=b3multi`: a traced client's request, as an untraced
/// server sees it, carries `X-B3-TraceId`, `X-B3-SpanId` and
/// `X-B3-Sampled` naming the client's CLIENT span, and no `traceparent`.
#[test]
fn b3multi_headers_name_the_client_span() {
    let tmp = TempDir::new("b3multi");
    let dump = tmp.path("spans.jsonl");
    let mut cap = Capture::start(&tmp);
    let mut curl = traced("curl");
    curl.args(["-s", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{}/multi", cap.port))
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_PROPAGATORS", "b3multi");
    let out = run(curl, T);
    assert!(out.status.success(), "{out:?}");
    let spans = wait_spans(&dump, T, |s| !s.is_empty());
    let heads = cap.heads();
    let client = of_kind(&spans, "SpanKind.CLIENT");
    assert_eq!(client.len(), 1, "{spans:#?}");
    assert_eq!(heads.len(), 1, "{heads:?}");
    let h = &heads[0];
    assert_eq!(header(h, "X-B3-TraceId"), vec![bare(trace_id(client[0]))]);
    assert_eq!(header(h, "X-B3-SpanId"), vec![bare(span_id(client[0]))]);
    assert_eq!(header(h, "X-B3-Sampled"), vec!["1"]);
    assert!(header(h, "traceparent").is_empty(), "{h:?}");
    assert!(header(h, "b3").is_empty(), "{h:?}");
}

/// W3C Baggage (on by default, with tracecontext): the `baggage` an
/// inbound request brings reaches the request the middle service makes
/// while serving it, beside a `traceparent` naming its CLIENT span; a
/// request that brought none sends none on.
#[test]
fn baggage_from_an_inbound_request_reaches_the_downstream_request() {
    let tmp = TempDir::new("baggage");
    let dump = tmp.path("spans.jsonl");
    let mut cap = Capture::start(&tmp);
    let (mut mid, mid_port) = middle(&dump, "mid", cap.port, &[]);
    let baggage = "userId=alice,serverNode=DF%2028;prop=1";
    untraced_requests(mid_port, "/with", 1, &[("baggage", baggage)]);
    untraced_requests(mid_port, "/without", 1, &[]);
    mid.stop();
    let spans = read_spandump(&dump);
    let heads = cap.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    let with = heads
        .iter()
        .find(|h| h[0].contains("/downstream/with"))
        .unwrap();
    let without = heads
        .iter()
        .find(|h| h[0].contains("/downstream/without"))
        .unwrap();
    assert_eq!(header(with, "baggage"), vec![baggage], "{with:?}");
    assert!(header(without, "baggage").is_empty(), "{without:?}");
    let tp = header(with, "traceparent");
    assert_eq!(tp.len(), 1, "{with:?}");
    let client = spans_of(&spans, "mid", "SpanKind.CLIENT")
        .into_iter()
        .find(|c| tp[0].contains(bare(span_id(c))))
        .unwrap_or_else(|| panic!("no CLIENT span named by {tp:?}: {spans:#?}"));
    assert_eq!(
        attr(client, "url.full"),
        &format!("http://127.0.0.1:{}/downstream/with", cap.port)
    );
}

/// `LUMIGO_FILTER_HTTP_ENDPOINTS_REGEX_SERVER`: a health check leaves no
/// trace. The filtered SERVER span, the CLIENT span the middle service
/// makes while serving it (even under `always_on`, which ignores parents)
/// and the downstream service's span (it follows the `-00` it receives)
/// are all missing; an unfiltered request keeps its whole chain.
#[test]
fn server_filter_drops_a_health_check_and_what_it_causes() {
    let tmp = TempDir::new("filter-server");
    let dump = tmp.path("spans.jsonl");
    let (mut down, down_port) = downstream(&dump, "down", &[]);
    let (mut mid, mid_port) = middle(
        &dump,
        "mid",
        down_port,
        &[
            (
                "LUMIGO_FILTER_HTTP_ENDPOINTS_REGEX_SERVER",
                r#"["^/health$"]"#,
            ),
            ("OTEL_TRACES_SAMPLER", "always_on"),
        ],
    );
    untraced_requests(mid_port, "/health", 3, &[]);
    untraced_requests(mid_port, "/orders?id=1", 1, &[]);
    mid.stop();
    down.stop();
    let spans = read_spandump(&dump);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let server = spans_of(&spans, "mid", "SpanKind.SERVER");
    let client = spans_of(&spans, "mid", "SpanKind.CLIENT");
    let down = spans_of(&spans, "down", "SpanKind.SERVER");
    assert_eq!(attr(server[0], "url.path"), "/orders");
    assert_eq!(parent_id(client[0]), Some(span_id(server[0])));
    assert_eq!(parent_id(down[0]), Some(span_id(client[0])));
    assert_eq!(attr(down[0], "url.path"), "/downstream/orders");
}

/// `LUMIGO_FILTER_HTTP_ENDPOINTS_REGEX` (both sides) on a client, matched
/// on `url.full`: the matching request yields no span, the other does.
#[test]
fn client_filter_matches_url_full() {
    let tmp = TempDir::new("filter-client");
    let dump = tmp.path("spans.jsonl");
    let (mut server, port) = downstream(&tmp.path("unused.jsonl"), "s", &[]);
    let mut curl = traced("curl");
    curl.args(["-s", "-o", "/dev/null", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{port}/len/1?skip=me"))
        .arg(format!("http://127.0.0.1:{port}/len/3"))
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env(
            "LUMIGO_FILTER_HTTP_ENDPOINTS_REGEX",
            format!(r#"["127\\.0\\.0\\.1:{port}/len/1\\?skip"]"#),
        );
    let out = run(curl, T);
    assert!(out.status.success(), "{out:?}");
    server.stop();
    let spans = read_spandump(&dump);
    let clients = of_kind(&spans, "SpanKind.CLIENT");
    let urls: Vec<&str> = clients
        .iter()
        .filter_map(|c| attr(c, "url.full").as_str())
        .collect();
    assert_eq!(
        urls,
        vec![format!("http://127.0.0.1:{port}/len/3")],
        "{spans:#?}"
    );
}

/// A request the app itself sends to the endpoint spans are exported to
/// (here `LUMIGO_ENDPOINT`, a local server) yields no span.
#[test]
fn requests_to_our_own_endpoint_are_not_traced() {
    let tmp = TempDir::new("filter-own");
    let dump = tmp.path("spans.jsonl");
    let (mut endpoint, endpoint_port) = downstream(&tmp.path("unused.jsonl"), "e", &[]);
    let (mut other, other_port) = downstream(&tmp.path("unused2.jsonl"), "o", &[]);
    let mut curl = traced("curl");
    curl.args(["-s", "-o", "/dev/null", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{endpoint_port}/len/1"))
        .arg(format!("http://127.0.0.1:{other_port}/len/3"))
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("LUMIGO_TRACER_TOKEN", "t_123")
        .env(
            "LUMIGO_ENDPOINT",
            format!("http://127.0.0.1:{endpoint_port}/v1/traces"),
        );
    let out = run(curl, T);
    assert!(out.status.success(), "{out:?}");
    endpoint.stop();
    other.stop();
    let spans = read_spandump(&dump);
    let urls: Vec<&str> = of_kind(&spans, "SpanKind.CLIENT")
        .iter()
        .filter_map(|c| attr(c, "url.full").as_str())
        .collect();
    assert_eq!(
        urls,
        vec![format!("http://127.0.0.1:{other_port}/len/3")],
        "{spans:#?}"
    );
}

/// `LUMIGO_EXECUTION_TAG_HEADERS`: the inbound request's header values
/// become `lumigo.execution_tags.<name>` on the middle service's SERVER
/// span and on the CLIENT span it makes while serving it (checked by ids),
/// values cut to 70 characters, secret ones masked; a request without the
/// headers gets none.
#[test]
fn execution_tags_from_headers_reach_the_spans_made_while_serving() {
    let tmp = TempDir::new("tags");
    let dump = tmp.path("spans.jsonl");
    let (mut down, down_port) = downstream(&dump, "down", &[]);
    let (mut mid, mid_port) = middle(
        &dump,
        "mid",
        down_port,
        &[(
            "LUMIGO_EXECUTION_TAG_HEADERS",
            r#"["x-tenant", "X-Long", "x-absent", "x-api-key", "Region"]"#,
        )],
    );
    let long = "L".repeat(80);
    untraced_requests(
        mid_port,
        "/tagged",
        1,
        &[
            ("X-Tenant", "acme-corp"),
            ("x-long", &long),
            ("X-Api-Key", "tag-QsecretQ-3131"),
            // A name whose first byte no span header's has.
            ("region", "eu-west-9"),
        ],
    );
    untraced_requests(mid_port, "/plain", 1, &[]);
    mid.stop();
    down.stop();
    let spans = read_spandump(&dump);
    let servers = spans_of(&spans, "mid", "SpanKind.SERVER");
    let clients = spans_of(&spans, "mid", "SpanKind.CLIENT");
    assert_eq!((servers.len(), clients.len()), (2, 2), "{spans:#?}");
    let tagged = servers
        .iter()
        .find(|s| attr(s, "url.path") == "/tagged")
        .unwrap();
    let plain = servers
        .iter()
        .find(|s| attr(s, "url.path") == "/plain")
        .unwrap();
    let child_of = |p: &Value| -> &Value {
        clients
            .iter()
            .find(|c| parent_id(c) == Some(span_id(p)))
            .unwrap_or_else(|| panic!("no child of {p:#?}"))
    };
    for s in [*tagged, child_of(tagged)] {
        assert_eq!(
            attr(s, "lumigo.execution_tags.x-tenant"),
            "acme-corp",
            "{s:#?}"
        );
        assert_eq!(attr(s, "lumigo.execution_tags.x-long"), &"L".repeat(70));
        // A secret header's value is masked, as in `http.request.headers`.
        assert_eq!(attr(s, "lumigo.execution_tags.x-api-key"), "****");
        assert_eq!(attr(s, "lumigo.execution_tags.region"), "eu-west-9");
        assert!(attr(s, "lumigo.execution_tags.x-absent").is_null());
    }
    for s in [*plain, child_of(plain)] {
        let tags = s["attributes"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("lumigo.execution_tags."))
            .count();
        assert_eq!(tags, 0, "{s:#?}");
    }
    for d in spans_of(&spans, "down", "SpanKind.SERVER") {
        assert!(
            attr(d, "lumigo.execution_tags.x-tenant").is_null(),
            "another process"
        );
    }
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(!text.contains("tag-QsecretQ-3131"), "{text}");
}
