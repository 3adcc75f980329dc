//! The export pipeline against a real OTLP/HTTP receiver and a real span-dump
//! file, driven directly (no preload).

#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lumigo_core::config::Config;
use lumigo_core::export::{set_transport_factory, Pipeline, TransportAbi, TRANSPORT_ABI_VERSION};
use lumigo_core::span::{hex, AttrValue, SpanContext, SpanKind, SpanRecord, SpanStatus};
use otlp_receiver::{OtlpReceiver, SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_ERROR, STATUS_UNSET};

const WAIT: Duration = Duration::from_secs(10);

/// The transport library's C entry points, linked in here; a traced
/// process reaches the same functions through `dlopen` and `dlsym`.
static TRANSPORT: LazyLock<TransportAbi> = LazyLock::new(|| {
    assert_eq!(
        lumigo_transport::lumigo_transport_abi(),
        TRANSPORT_ABI_VERSION
    );
    // SAFETY: the three entry points of one linked transport library whose
    // ABI version was just checked.
    unsafe {
        TransportAbi::new(
            lumigo_transport::lumigo_transport_new,
            lumigo_transport::lumigo_transport_post,
            lumigo_transport::lumigo_transport_free,
        )
    }
});

/// The configuration of a test pipeline, with the transport installed.
fn config(vars: &[(&str, &str)]) -> Arc<Config> {
    set_transport_factory(|headers, timeout| TRANSPORT.client(headers, timeout));
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::from_lookup(|k| map.get(k).cloned());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    Arc::new(config)
}

fn server_span(n: u8) -> SpanRecord {
    SpanRecord {
        name: "GET".into(),
        kind: SpanKind::Server,
        context: SpanContext {
            trace_id: [n; 16],
            span_id: [n, 1, 2, 3, 4, 5, 6, 7],
            trace_flags: 1,
            trace_state: Some("vendor=abc".into()),
        },
        parent_span_id: Some([0xee; 8]),
        parent_is_remote: true,
        start: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
        end: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_223_456_789),
        status: SpanStatus::Unset,
        attributes: vec![
            ("http.request.method", AttrValue::from("GET")),
            ("url.path", AttrValue::from("/orders")),
            ("http.response.status_code", AttrValue::Int(200)),
            ("lumigo.truncated", AttrValue::Bool(false)),
        ],
        links: Vec::new(),
        encoded: None,
    }
}

fn client_span(parent: &SpanRecord) -> SpanRecord {
    SpanRecord {
        name: "POST".into(),
        kind: SpanKind::Client,
        context: SpanContext {
            trace_id: parent.context.trace_id,
            span_id: [0xc1; 8],
            trace_flags: 1,
            trace_state: None,
        },
        parent_span_id: Some(parent.context.span_id),
        parent_is_remote: false,
        start: SystemTime::now(),
        end: SystemTime::now(),
        status: SpanStatus::Error("HTTP 503".into()),
        attributes: vec![
            ("http.request.method", AttrValue::from("POST")),
            ("url.full", AttrValue::from("http://backend:8080/pay")),
            ("http.response.status_code", AttrValue::Int(503)),
        ],
        links: Vec::new(),
        encoded: None,
    }
}

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lumigo-export-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// A TCP endpoint that accepts connections (via the backlog) and never answers.
fn black_hole() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    (listener, url)
}

#[test]
fn spans_reach_lumigo_endpoint_with_token_ids_kinds_attributes_and_resource() {
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.endpoint();
    let pipeline = Pipeline::new(config(&[
        ("LUMIGO_TRACER_TOKEN", " t_123 "),
        ("LUMIGO_ENDPOINT", &endpoint),
        ("OTEL_SERVICE_NAME", "orders"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=test,service.name=ignored",
        ),
        ("LUMIGO_TAG", "blue"),
        ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
    ]));
    let server = server_span(7);
    let client = client_span(&server);
    pipeline.submit(server.clone());
    pipeline.submit(client.clone());
    assert!(pipeline.flush(WAIT), "flush exports everything");
    let spans = receiver.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");

    let s = spans
        .iter()
        .find(|s| s.kind == SPAN_KIND_SERVER)
        .expect("server span");
    assert_eq!(s.name, "GET");
    assert_eq!(s.trace_id, hex(&server.context.trace_id));
    assert_eq!(s.span_id, hex(&server.context.span_id));
    assert_eq!(s.parent_span_id, "ee".repeat(8));
    assert_eq!(s.trace_state, "vendor=abc");
    assert_eq!(s.flags & 0xff, 1, "sampled");
    assert_eq!(s.start_ns, 1_700_000_000_123_456_789);
    assert_eq!(s.end_ns, 1_700_000_000_223_456_789);
    assert_eq!(s.status_code, STATUS_UNSET);
    assert_eq!(s.attr("http.request.method"), Some("GET"));
    assert_eq!(s.attr("url.path"), Some("/orders"));
    assert_eq!(s.attr("http.response.status_code"), Some("200"));
    assert_eq!(s.attr("lumigo.truncated"), Some("false"));
    assert_eq!(s.scope_name, "lumigo-run");
    assert_eq!(s.scope_version, lumigo_core::VERSION);

    let c = spans
        .iter()
        .find(|s| s.kind == SPAN_KIND_CLIENT)
        .expect("client span");
    assert_eq!(c.trace_id, s.trace_id);
    assert_eq!(c.parent_span_id, s.span_id);
    assert_eq!(c.status_code, STATUS_ERROR);
    assert_eq!(c.status_message, "HTTP 503");
    assert_eq!(c.attr("url.full"), Some("http://backend:8080/pay"));

    for span in &spans {
        assert_eq!(span.header("authorization"), Some("LumigoToken t_123"));
        assert_eq!(span.header("content-type"), Some("application/x-protobuf"));
        let r = &span.resource;
        assert_eq!(r.get("service.name").map(String::as_str), Some("orders"));
        assert_eq!(
            r.get("deployment.environment").map(String::as_str),
            Some("test")
        );
        assert_eq!(r.get("lumigo.tag").map(String::as_str), Some("blue"));
        assert_eq!(r.get("process.pid"), Some(&std::process::id().to_string()));
        assert_eq!(
            r.get("lumigo.distro.version").map(String::as_str),
            Some(lumigo_core::VERSION)
        );
        assert_eq!(
            r.get("telemetry.sdk.language").map(String::as_str),
            Some("rust")
        );
        for key in [
            "host.name",
            "process.executable.name",
            "process.executable.path",
            "process.command_line",
        ] {
            assert!(r.contains_key(key), "resource has {key}: {r:?}");
        }
    }
    assert_eq!(pipeline.dropped(), 0);
    assert_eq!(pipeline.failed_exports(), 0);
    assert!(receiver.errors().is_empty(), "{:?}", receiver.errors());
}

#[test]
fn otel_endpoint_and_headers_go_only_to_their_destination() {
    let lumigo = OtlpReceiver::start();
    let collector = OtlpReceiver::start();
    let (lumigo_url, collector_url) = (lumigo.endpoint(), collector.base_url());
    let pipeline = Pipeline::new(config(&[
        ("LUMIGO_TRACER_TOKEN", "t_1"),
        ("LUMIGO_ENDPOINT", &lumigo_url),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector_url),
        ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cret"),
    ]));
    pipeline.submit(server_span(1));
    assert!(pipeline.flush(WAIT));
    let at_lumigo = lumigo.spans();
    let at_collector = collector.spans();
    assert_eq!((at_lumigo.len(), at_collector.len()), (1, 1));
    assert_eq!(
        at_lumigo[0].header("authorization"),
        Some("LumigoToken t_1")
    );
    assert_eq!(
        at_lumigo[0].header("api-key"),
        None,
        "collector key never sent to Lumigo"
    );
    assert_eq!(at_collector[0].header("api-key"), Some("s3cret"));
    assert_eq!(
        at_collector[0].header("authorization"),
        None,
        "token never sent to the collector"
    );
    assert_eq!(collector.requests()[0].path, "/v1/traces");
}

/// The variables the opentelemetry-otlp builder and ureq read by themselves
/// must not change where, how or with which headers spans are sent. Runs in
/// a child process (this same test binary) so the environment of the other
/// tests stays untouched.
#[test]
fn environment_read_by_libraries_is_ignored() {
    if std::env::var_os("LUMIGO_EXPORT_ENV_CHILD").is_some() {
        return env_child();
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "environment_read_by_libraries_is_ignored",
            "--nocapture",
        ])
        .env("LUMIGO_EXPORT_ENV_CHILD", "1")
        .env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer leaked,x-leak=1",
        )
        .env("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-leak-traces=1")
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:9/v1/traces",
        )
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
        .env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
        .env("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
        .env("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("http_proxy", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the child really ran the test:\n{text}"
    );
}

fn env_child() {
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.endpoint();
    let pipeline = Pipeline::new(config(&[
        ("LUMIGO_TRACER_TOKEN", "t_env"),
        ("LUMIGO_ENDPOINT", &endpoint),
    ]));
    pipeline.submit(server_span(3));
    assert!(pipeline.flush(WAIT), "exported despite the environment");
    let spans = receiver.spans();
    assert_eq!(spans.len(), 1);
    let headers = &spans[0].request_headers;
    assert_eq!(
        headers.get("authorization").map(String::as_str),
        Some("LumigoToken t_env")
    );
    assert_eq!(
        headers.get("content-type").map(String::as_str),
        Some("application/x-protobuf")
    );
    assert!(
        headers.keys().all(|k| !k.starts_with("x-leak")),
        "{headers:?}"
    );
    assert!(!headers.contains_key("content-encoding"), "{headers:?}");
}

#[test]
fn flush_waits_for_the_batch_and_honours_its_deadline() {
    // Exported by flush long before the 60 s schedule delay.
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.endpoint();
    let pipeline = Pipeline::new(config(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
    ]));
    for i in 0..50 {
        pipeline.submit(server_span(i));
    }
    let t = Instant::now();
    assert!(pipeline.flush(WAIT));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(receiver.spans().len(), 50);
    assert!(pipeline.flush(Duration::ZERO), "nothing left: true at once");

    // An endpoint that never answers: flush gives up at its deadline.
    let (_hole, url) = black_hole();
    let pipeline = Pipeline::new(config(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &url),
        ("OTEL_BSP_EXPORT_TIMEOUT", "30000"),
    ]));
    pipeline.submit(server_span(1));
    let t = Instant::now();
    assert!(!pipeline.flush(Duration::from_millis(300)));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn scheduled_export_without_flush() {
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.endpoint();
    let pipeline = Pipeline::new(config(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ]));
    pipeline.submit(server_span(1));
    assert_eq!(receiver.wait_for_spans(1, WAIT).len(), 1);
    pipeline.submit(server_span(2));
    pipeline.submit(server_span(3));
    assert_eq!(receiver.wait_for_spans(3, WAIT).len(), 3);
}

#[test]
fn rejected_exports_are_retried_with_backoff_within_the_export_timeout() {
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.endpoint();
    let pipeline = Pipeline::new(config(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2000"),
    ]));

    receiver.set_status(500); // not retryable
    pipeline.submit(server_span(1));
    assert!(!pipeline.flush(WAIT));
    assert_eq!(receiver.requests().len(), 1);

    // Retryable: after 1 s (±20%, so at most 1.2 s: inside the 2 s
    // timeout); the next wait (2 s ±20%, at least 1.6 s) would end at
    // 2.4 s or later, past the timeout whatever the jitter drew, so the
    // batch is dropped then. (With a 2.5 s timeout, 0.8 s + 1.6 s fitted:
    // a fourth request on an unlucky draw.)
    receiver.set_status(503);
    pipeline.submit(server_span(2));
    assert!(!pipeline.flush(WAIT));
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    let gap = requests[2].received_at - requests[1].received_at;
    assert!(
        gap >= Duration::from_millis(790) && gap < Duration::from_millis(1500),
        "{gap:?}"
    );
    assert_eq!(pipeline.failed_exports(), 2);

    receiver.set_status(200); // the pipeline carries on
    pipeline.submit(server_span(3));
    assert!(pipeline.flush(WAIT));
    assert_eq!(receiver.spans().len(), 1);
}

#[test]
fn unreachable_endpoint_fails_fast_and_keeps_the_pipeline_alive() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dump = temp_path("unreachable.jsonl");
    let pipeline = Pipeline::new(config(&[
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            &format!("http://127.0.0.1:{port}/v1/traces"),
        ),
        ("LUMIGO_DEBUG_SPANDUMP", dump.to_str().unwrap()),
    ]));
    pipeline.submit(server_span(1));
    let t = Instant::now();
    assert!(!pipeline.flush(WAIT), "the OTLP destination failed");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(
        std::fs::read_to_string(&dump).unwrap().lines().count(),
        1,
        "other destinations still get the batch"
    );
}

#[test]
fn span_dump_appends_one_line_per_span_with_mode_0600() {
    let path = temp_path("spans.jsonl");
    let vars = [
        ("LUMIGO_DEBUG_SPANDUMP", path.to_str().unwrap()),
        ("OTEL_SERVICE_NAME", "dumped"),
    ];
    // Two pipelines stand for two processes sharing the file.
    let first = Pipeline::new(config(&vars));
    let second = Pipeline::new(config(&vars));
    let server = server_span(9);
    first.submit(server.clone());
    first.submit(client_span(&server));
    second.submit(server_span(10));
    assert!(first.flush(WAIT) && second.flush(WAIT));

    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON object"))
        .collect();
    assert_eq!(lines.len(), 3);
    let s = lines
        .iter()
        .find(|l| l["context"]["span_id"] == format!("0x{}", hex(&server.context.span_id)))
        .expect("server span line");
    assert_eq!(s["name"], "GET");
    assert_eq!(s["kind"], "SpanKind.SERVER");
    assert_eq!(s["context"]["trace_id"], format!("0x{}", "09".repeat(16)));
    assert_eq!(s["parent_id"], format!("0x{}", "ee".repeat(8)));
    assert_eq!(s["start_time"], "2023-11-14T22:13:20.123456Z");
    assert_eq!(s["end_time"], "2023-11-14T22:13:20.223456Z");
    assert_eq!(s["status"]["status_code"], "UNSET");
    assert_eq!(s["attributes"]["http.response.status_code"], 200);
    assert_eq!(s["attributes"]["lumigo.truncated"], false);
    assert_eq!(s["resource"]["attributes"]["service.name"], "dumped");
    assert_eq!(
        s["resource"]["attributes"]["process.pid"],
        std::process::id()
    );
    let c = lines
        .iter()
        .find(|l| l["kind"] == "SpanKind.CLIENT")
        .expect("client line");
    assert_eq!(c["status"]["status_code"], "ERROR");
    assert_eq!(c["parent_id"], s["context"]["span_id"]);
}

#[test]
fn full_queue_drops_counts_and_never_blocks() {
    let (hole, url) = black_hole();
    let pipeline = Pipeline::new(config(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &url),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "10"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1"),
        ("OTEL_BSP_SCHEDULE_DELAY", "0"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "30000"),
    ]));
    pipeline.submit(server_span(0)); // the worker takes it and waits on the black hole
    hole.set_nonblocking(true).unwrap();
    let t = Instant::now();
    let _conn = loop {
        match hole.accept() {
            Ok((conn, _)) => break conn, // the batch is in flight
            Err(_) if t.elapsed() < WAIT => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("the worker never connected: {e}"),
        }
    };
    let t = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..10_000u32 {
        let one = Instant::now();
        pipeline.submit(server_span(i as u8));
        slowest = slowest.max(one.elapsed());
    }
    let took = t.elapsed();
    assert_eq!(pipeline.dropped(), 10_000 - 10);
    assert!(took < Duration::from_secs(2), "10k submits took {took:?}");
    assert!(
        slowest < Duration::from_millis(200),
        "one submit took {slowest:?}"
    );
    let t = Instant::now();
    assert!(!pipeline.flush(Duration::from_millis(100)));
    assert!(t.elapsed() < Duration::from_secs(1));
}

/// After `fork` the preload forgets the parent's pipeline and makes a new
/// one: the child's spans must be exported by the child, the parent's
/// pipeline must keep working, and nothing may be reported twice.
#[test]
fn a_new_pipeline_works_in_a_forked_child() {
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.endpoint();
    let config = config(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "60000"),
    ]);
    let parent = Pipeline::new(Arc::clone(&config));
    parent.submit(server_span(1));
    assert!(parent.flush(WAIT), "the parent's worker is running");
    parent.submit(server_span(2)); // queued in the parent at fork time

    // SAFETY: the child only builds a pipeline, exports and `_exit`s; it
    // never returns into the test harness or runs destructors of state
    // shared with the parent's threads.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = std::panic::catch_unwind(|| {
            let child = Pipeline::new(Arc::clone(&config));
            child.submit(server_span(3));
            child.flush(WAIT)
        });
        std::mem::forget(parent);
        // SAFETY: ends the child at once, without atexit handlers.
        unsafe { libc::_exit(if matches!(ok, Ok(true)) { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status}"
    );
    assert!(parent.flush(WAIT), "the parent's pipeline is unaffected");

    let spans = receiver.wait_for_spans(3, WAIT);
    let mut ids: Vec<&str> = spans.iter().map(|s| &s.trace_id[..2]).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["01", "02", "03"], "each span once: {spans:#?}");
    let child_span = spans.iter().find(|s| s.trace_id.starts_with("03")).unwrap();
    assert_eq!(
        child_span.resource_attr("process.pid"),
        Some(pid.to_string().as_str())
    );
    let parent_span = spans.iter().find(|s| s.trace_id.starts_with("02")).unwrap();
    assert_eq!(
        parent_span.resource_attr("process.pid"),
        Some(std::process::id().to_string().as_str())
    );
}

/// Throughput to the local receiver: `cargo test --release --test export -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_to_local_receiver() {
    let receiver = OtlpReceiver::start();
    let endpoint = receiver.endpoint();
    let pipeline = Pipeline::new(config(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "100000"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]));
    let total = 200_000usize;
    let t = Instant::now();
    let mut submitted = 0;
    while submitted < total {
        for _ in 0..1000 {
            pipeline.submit(server_span((submitted % 256) as u8));
            submitted += 1;
        }
        // Pace the producer so the queue never overflows.
        while receiver.span_count() + 50_000 < submitted {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert!(pipeline.flush(Duration::from_secs(60)));
    let took = t.elapsed();
    let received = receiver.wait_for_spans(total, WAIT).len();
    println!(
        "exported {received} spans in {took:?}: {:.0} spans/s, dropped {}",
        received as f64 / took.as_secs_f64(),
        pipeline.dropped()
    );
    assert_eq!(received, total);
}
