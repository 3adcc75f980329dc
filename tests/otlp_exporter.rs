//! The OTLP exporter's settings (`OTEL_EXPORTER_OTLP_*` protocol,
//! compression, timeout, certificates) and retries, with a real traced
//! program (curl under the launcher, exporting through the `dlopen`ed
//! transport library) against real receivers: the decoding OTLP receiver,
//! and nginx terminating TLS in front of it on a CA made at test time.

#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;
mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use otlp_receiver::{OtlpReceiver, ReceivedSpan, SPAN_KIND_CLIENT};
use support::*;

const T: Duration = Duration::from_secs(30);

/// An untraced HTTP server for the traced curl to call.
fn http_server() -> (u16, Server) {
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/http11_server.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(port.to_string());
    (port, Server::spawn(cmd, port))
}

/// Runs `curl http://127.0.0.1:port/len/3` under the launcher with `--debug`
/// and these variables; returns its output and how long it ran.
fn traced_curl(port: u16, vars: &[(&str, &str)]) -> (Output, Duration) {
    let mut cmd = traced_with_flags(&["--debug".as_ref()], "curl");
    cmd.args(["-s", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{port}/len/3"))
        .env_remove("LUMIGO_DEBUG_SPANDUMP");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out = run(cmd, T);
    let took = start.elapsed();
    assert!(out.status.success(), "{out:?}");
    (out, took)
}

/// The one client span curl made, checked against the request it traced.
fn the_curl_span(spans: &[ReceivedSpan], port: u16) -> ReceivedSpan {
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let span = spans[0].clone();
    assert_eq!(span.kind, SPAN_KIND_CLIENT);
    assert_eq!(span.name, "GET");
    assert_eq!(
        span.attr("url.full"),
        Some(format!("http://127.0.0.1:{port}/len/3").as_str())
    );
    assert_eq!(span.attr("http.response.status_code"), Some("200"));
    assert_eq!(span.trace_id.len(), 32);
    assert_eq!(span.span_id.len(), 16);
    assert!(span.parent_span_id.is_empty(), "a root span");
    assert!(span.end_ns > span.start_ns && span.start_ns > 0);
    assert_eq!(span.resource_attr("service.name"), Some("curl"));
    span
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn http_json_and_gzip_bodies_decode_at_the_collector() {
    let (port, mut server) = http_server();
    for (protocol, compression, content_type) in [
        ("http/json", "gzip", "application/json"),
        ("http/json", "none", "application/json"),
        ("http/protobuf", "gzip", "application/x-protobuf"),
    ] {
        let receiver = OtlpReceiver::start();
        // The `_TRACES_` forms win over the general ones.
        let (out, _) = traced_curl(
            port,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.base_url()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "deflate"),
                ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", compression),
            ],
        );
        let spans = receiver.wait_for_spans(1, T);
        assert!(receiver.errors().is_empty(), "{:?}", receiver.errors());
        let span = the_curl_span(&spans, port);
        assert_eq!(
            span.header("content-type"),
            Some(content_type),
            "{protocol}"
        );
        let requests = receiver.requests();
        assert_eq!(requests.len(), 1);
        if compression == "gzip" {
            assert_eq!(span.header("content-encoding"), Some("gzip"));
            assert_eq!(&requests[0].body[..2], &[0x1f, 0x8b], "gzip magic");
        } else {
            assert_eq!(span.header("content-encoding"), None);
            assert_eq!(requests[0].body[0], b'{', "a JSON object");
        }
        // No word about the general form's `grpc`, which lost.
        let err = stderr(&out);
        assert!(!err.contains("PROTOCOL"), "{err}");
    }
    server.stop();
}

#[test]
fn a_partial_success_is_told_under_debug_with_the_rejected_count() {
    let (port, mut server) = http_server();
    for protocol in ["http/protobuf", "http/json"] {
        let receiver = OtlpReceiver::start();
        receiver.set_partial_success(1, "span too old");
        let (out, _) = traced_curl(
            port,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.base_url()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ],
        );
        the_curl_span(&receiver.wait_for_spans(1, T), port);
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "{} accepted the batch but rejected 1 of 1 spans: \"span too old\"",
                receiver.endpoint()
            )),
            "{protocol}: {err}"
        );
    }
    server.stop();
}

/// Used to be: retried once after 100 ms whatever the collector asked, so a
/// collector shedding load with `Retry-After: 1` lost the batch.
#[test]
fn a_503_with_retry_after_is_honoured_and_the_spans_arrive_once() {
    let (port, mut server) = http_server();
    let receiver = OtlpReceiver::start();
    receiver.answer_next(&[(503, Some(1))]);
    let (out, _) = traced_curl(
        port,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.base_url()),
            ("LUMIGO_FLUSH_TIMEOUT", "5"),
        ],
    );
    let spans = receiver.wait_for_spans(1, T);
    server.stop();
    the_curl_span(&spans, port);
    let requests = receiver.requests();
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![503, 200],
        "{}",
        stderr(&out)
    );
    let gap = requests[1].received_at - requests[0].received_at;
    assert!(
        gap >= Duration::from_millis(950) && gap < Duration::from_secs(3),
        "{gap:?}"
    );
    assert_eq!(requests[0].body, requests[1].body, "the same batch again");
}

#[test]
fn retries_never_outlast_the_exit_flush_timeout() {
    let (port, mut server) = http_server();
    let receiver = OtlpReceiver::start();
    receiver.answer_next(&[(503, Some(4))]);
    let (out, took) = traced_curl(
        port,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.base_url()),
            ("LUMIGO_FLUSH_TIMEOUT", "1"),
        ],
    );
    server.stop();
    let err = stderr(&out);
    assert!(took < Duration::from_millis(2500), "{took:?}: {err}");
    assert_eq!(receiver.requests().len(), 1, "{err}");
    assert!(err.contains("1 span lost: 1 HTTP 503"), "{err}");
}

#[test]
fn a_slow_collector_is_given_up_after_otel_exporter_otlp_timeout() {
    let (port, mut server) = http_server();
    let receiver = OtlpReceiver::start();
    receiver.set_delay(Duration::from_secs(4));
    let (out, took) = traced_curl(
        port,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.base_url()),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "500"),
            ("LUMIGO_FLUSH_TIMEOUT", "10"),
        ],
    );
    server.stop();
    let err = stderr(&out);
    assert!(took < Duration::from_millis(3000), "{took:?}: {err}");
    assert!(err.contains("1 span lost: 1 connection failed"), "{err}");
}

/// nginx terminating TLS with `ca`'s server certificate in front of
/// `receiver`, on two ports: the second requires a client certificate
/// signed by `ca`.
fn tls_front(tmp: &TempDir, ca: &PrivateCa, receiver: &OtlpReceiver) -> (u16, u16, Server) {
    let (open, mutual) = (free_port(), free_port());
    let server = |port: u16, extra: &str| {
        format!(
            "server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {}; ssl_certificate_key {}; {extra}\n\
             location / {{ proxy_pass http://{}; proxy_http_version 1.1; }} }}\n",
            ca.server_cert.display(),
            ca.server_key.display(),
            receiver.addr()
        )
    };
    let servers = server(open, "")
        + &server(
            mutual,
            &format!(
                "ssl_client_certificate {}; ssl_verify_client on;",
                ca.ca.display()
            ),
        );
    let conf = nginx_config(tmp, &servers);
    let mut cmd = Command::new("nginx");
    cmd.arg("-c").arg(&conf).arg("-p").arg(&tmp.0);
    let nginx = Server::spawn(cmd, open);
    assert!(wait_for_port(mutual, T));
    (open, mutual, nginx)
}

#[test]
fn https_collectors_on_a_private_ca_and_with_mutual_tls() {
    let tmp = TempDir::new("otlp-tls");
    let ca = private_ca(&tmp);
    let receiver = OtlpReceiver::start();
    let (open, mutual, mut nginx) = tls_front(&tmp, &ca, &receiver);
    let (port, mut server) = http_server();
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let endpoint = |p: u16| format!("https://localhost:{p}/v1/traces");

    // The system's roots do not know the private CA.
    let (out, _) = traced_curl(
        port,
        &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint(open))],
    );
    let err = stderr(&out);
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert_eq!(receiver.span_count(), 0);

    // OTEL_EXPORTER_OTLP_CERTIFICATE names it.
    let (out, _) = traced_curl(
        port,
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint(open)),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", &path(&ca.ca)),
        ],
    );
    let spans = receiver.wait_for_spans(1, T);
    the_curl_span(&spans, port);
    assert!(!stderr(&out).contains("lost"), "{}", stderr(&out));

    // A collector requiring a client certificate refuses one without.
    let (out, _) = traced_curl(
        port,
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint(mutual)),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", &path(&ca.ca)),
        ],
    );
    assert!(
        stderr(&out).contains("1 span lost: 1 HTTP 400"),
        "{}",
        stderr(&out)
    );
    assert_eq!(receiver.span_count(), 1);

    // ... and takes the spans of one with.
    let (out, _) = traced_curl(
        port,
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &endpoint(mutual)),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", &path(&ca.ca)),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                &path(&ca.client_cert),
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
                &path(&ca.client_key),
            ),
        ],
    );
    let spans = receiver.wait_for_spans(2, T);
    assert!(!stderr(&out).contains("lost"), "{}", stderr(&out));
    the_curl_span(&spans[1..], port);
    server.stop();
    nginx.stop();
}
