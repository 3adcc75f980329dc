//! OTLP/gRPC export (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`) from a real traced
//! program (curl under the launcher) to a real gRPC receiver: Python
//! `grpcio` serving the `opentelemetry-proto` package's `TraceService`
//! (tests/apps/otlp_grpc_receiver.py), in cleartext (h2c), over TLS on a CA
//! made at test time, with a client certificate, gzipped, and answering
//! UNAVAILABLE or RESOURCE_EXHAUSTED before OK. The receiver records each
//! request as the service decoded it; the test decodes it again with the
//! opentelemetry-proto crate and checks the spans by their ids.

#[path = "support/otlp_grpc_receiver.rs"]
mod otlp_grpc_receiver;
#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use otlp_grpc_receiver::{have_grpc, Call, GrpcReceiver};
use otlp_receiver::SPAN_KIND_CLIENT;
use support::*;

const T: Duration = Duration::from_secs(30);

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

/// A TCP relay in front of a cleartext receiver that keeps what the client
/// sent: to see whether the request bodies went gzipped on the wire (the
/// receiver only sees them decompressed).
struct Tap {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Tap {
    fn start(upstream: u16) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let kept = sent.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { return };
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                let (mut client_r, mut server_w) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let kept = kept.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n @ 1..) = client_r.read(&mut buf) {
                        kept.lock().unwrap().extend_from_slice(&buf[..n]);
                        if server_w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = server_w.shutdown(Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server, &mut client);
                    let _ = client.shutdown(Shutdown::Write);
                });
            }
        });
        Tap { port, sent }
    }

    fn saw(&self, needle: &[u8]) -> bool {
        let sent = self.sent.lock().unwrap();
        sent.windows(needle.len()).any(|w| w == needle)
    }
}

/// An untraced HTTP server for the traced curl to call.
fn http_server() -> (u16, Server) {
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/http11_server.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(port.to_string());
    (port, Server::spawn(cmd, port))
}

/// What every test starts from: the receiver's Python packages checked, a
/// temporary directory and the HTTP server curl calls.
fn start(name: &str) -> (TempDir, u16, Server) {
    if !have_grpc() {
        panic!("python grpcio and opentelemetry-proto are missing: run scripts/install-deps.sh");
    }
    let tmp = TempDir::new(name);
    let (port, server) = http_server();
    (tmp, port, server)
}

/// `curl http://127.0.0.1:port/len/3` under the launcher with `--debug`,
/// continuing the trace of [`TRACE_ID`] / [`PARENT_ID`], exporting over
/// gRPC to `endpoint` with these extra variables.
fn traced_curl(port: u16, endpoint: &str, vars: &[(&str, &str)]) -> (Output, Duration) {
    let mut cmd = traced_with_flags(&["--debug".as_ref()], "curl");
    cmd.args(["-s", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{port}/len/3"))
        .env_remove("LUMIGO_DEBUG_SPANDUMP")
        .env("TRACEPARENT", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_EXPORTER_OTLP_HEADERS", "x-collector-key=k1");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let out = run(cmd, T);
    let took = start.elapsed();
    assert!(out.status.success(), "{out:?}");
    (out, took)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one client span curl made, in the trace and under the parent it
/// was given, with its resource and scope.
fn the_curl_span(call: &Call, port: u16) {
    assert_eq!(call.spans.len(), 1, "{:#?}", call.spans);
    let span = &call.spans[0];
    assert_eq!(span.kind, SPAN_KIND_CLIENT);
    assert_eq!(span.name, "GET");
    assert_eq!(
        span.attr("url.full"),
        Some(format!("http://127.0.0.1:{port}/len/3").as_str())
    );
    assert_eq!(span.attr("http.response.status_code"), Some("200"));
    assert_eq!(span.trace_id, TRACE_ID);
    assert_eq!(span.parent_span_id, PARENT_ID);
    assert_eq!(span.span_id.len(), 16);
    assert_ne!(span.span_id, PARENT_ID);
    assert!(span.end_ns > span.start_ns && span.start_ns > 0);
    assert_eq!(span.resource_attr("service.name"), Some("curl"));
    assert_eq!(span.scope_name, "lumigo-run");
    assert_eq!(
        call.metadata.get("x-collector-key").map(String::as_str),
        Some("k1")
    );
    let agent = call.metadata.get("user-agent").cloned().unwrap_or_default();
    assert!(agent.contains("lumigo-run/"), "{agent}");
}

#[test]
fn spans_reach_a_grpc_collector_in_cleartext_plain_and_gzipped() {
    let (tmp, port, mut server) = start("otlp-grpc-h2c");
    for compression in ["none", "gzip"] {
        let receiver = GrpcReceiver::start(&tmp, compression, &[]);
        let tap = Tap::start(receiver.port);
        let endpoint = format!("http://127.0.0.1:{}", tap.port);
        let (out, _) = traced_curl(
            port,
            &endpoint,
            &[("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", compression)],
        );
        let calls = receiver.wait_calls(1);
        let err = stderr(&out);
        assert_eq!(calls.len(), 1, "{compression}: {err}");
        assert_eq!(calls[0].answer, "OK");
        the_curl_span(&calls[0], port);
        assert!(!err.contains("not supported"), "{err}");
        assert!(!err.contains("lost"), "{err}");
        // The span's URL is in the protobuf as it is, unless gzipped.
        let url = format!("http://127.0.0.1:{port}/len/3");
        assert_eq!(tap.saw(url.as_bytes()), compression == "none");
    }
    server.stop();
}

#[test]
fn a_grpc_endpoint_without_scheme_is_cleartext_when_insecure() {
    let (tmp, port, mut server) = start("otlp-grpc-insecure");
    let receiver = GrpcReceiver::start(&tmp, "none", &[]);
    // As gRPC clients take it: host and port, no scheme.
    let endpoint = format!("127.0.0.1:{}", receiver.port);
    let (out, _) = traced_curl(port, &endpoint, &[("OTEL_EXPORTER_OTLP_INSECURE", "true")]);
    let calls = receiver.wait_calls(1);
    assert_eq!(calls.len(), 1, "{}", stderr(&out));
    the_curl_span(&calls[0], port);
    server.stop();
}

#[test]
fn grpc_over_tls_on_a_private_ca_and_with_a_client_certificate() {
    let (tmp, port, mut server) = start("otlp-grpc-tls");
    let ca = private_ca(&tmp);
    let (cert, key) = (
        ca.server_cert.to_str().unwrap(),
        ca.server_key.to_str().unwrap(),
    );
    let ca_file = ca.ca.to_str().unwrap();

    // Server authentication only, gzipped.
    let receiver = GrpcReceiver::start(&tmp, "tls", &["--tls", cert, key]);
    let endpoint = format!("https://localhost:{}", receiver.port);
    let (out, _) = traced_curl(
        port,
        &endpoint,
        &[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ],
    );
    let calls = receiver.wait_calls(1);
    assert_eq!(calls.len(), 1, "{}", stderr(&out));
    the_curl_span(&calls[0], port);

    // Without the CA: the platform's roots do not know it, nothing arrives.
    let receiver = GrpcReceiver::start(&tmp, "tls-unknown", &["--tls", cert, key]);
    let endpoint = format!("https://localhost:{}", receiver.port);
    let (out, _) = traced_curl(port, &endpoint, &[("LUMIGO_FLUSH_TIMEOUT", "3")]);
    let err = stderr(&out);
    assert!(receiver.calls().is_empty());
    // Given up by our side at the timeout, or by the collector honouring
    // the deadline it was told (grpcio answers DEADLINE_EXCEEDED itself):
    // which comes first is a race, either is right.
    assert!(
        err.contains("1 span lost: 1 connection failed")
            || err.contains("1 span lost: 1 gRPC DEADLINE_EXCEEDED (4)"),
        "{err}"
    );

    // Mutual TLS: with the client certificate it arrives; without, not.
    let mtls = ["--tls", cert, key, "--client-ca", ca_file];
    let receiver = GrpcReceiver::start(&tmp, "mtls", &mtls);
    let endpoint = format!("https://127.0.0.1:{}", receiver.port);
    let (out, _) = traced_curl(
        port,
        &endpoint,
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", ca_file),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                ca.client_cert.to_str().unwrap(),
            ),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                ca.client_key.to_str().unwrap(),
            ),
        ],
    );
    let calls = receiver.wait_calls(1);
    assert_eq!(calls.len(), 1, "{}", stderr(&out));
    the_curl_span(&calls[0], port);

    let receiver = GrpcReceiver::start(&tmp, "mtls-no-cert", &mtls);
    let endpoint = format!("https://127.0.0.1:{}", receiver.port);
    let (out, _) = traced_curl(
        port,
        &endpoint,
        &[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca_file),
            ("LUMIGO_FLUSH_TIMEOUT", "3"),
        ],
    );
    let err = stderr(&out);
    assert!(receiver.calls().is_empty());
    // Given up by our side at the timeout, or by the collector honouring
    // the deadline it was told (grpcio answers DEADLINE_EXCEEDED itself):
    // which comes first is a race, either is right.
    assert!(
        err.contains("1 span lost: 1 connection failed")
            || err.contains("1 span lost: 1 gRPC DEADLINE_EXCEEDED (4)"),
        "{err}"
    );
    server.stop();
}

#[test]
fn unavailable_is_retried_after_a_backoff_and_the_spans_arrive() {
    let (tmp, port, mut server) = start("otlp-grpc-retry");
    let receiver = GrpcReceiver::start(&tmp, "unavailable", &["--answers", "UNAVAILABLE"]);
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let (out, _) = traced_curl(port, &endpoint, &[("LUMIGO_FLUSH_TIMEOUT", "5")]);
    let calls = receiver.wait_calls(2);
    let err = stderr(&out);
    let answers: Vec<&str> = calls.iter().map(|c| c.answer.as_str()).collect();
    assert_eq!(answers, ["UNAVAILABLE", "OK"], "{err}");
    // No RetryInfo: the first backoff, 1 s ±20%.
    let gap = calls[1].at - calls[0].at;
    assert!((0.75..3.0).contains(&gap), "{gap}");
    assert_eq!(calls[0].spans, calls[1].spans, "the same batch again");
    the_curl_span(&calls[1], port);
    assert!(!err.contains("lost"), "{err}");
    server.stop();
}

#[test]
fn resource_exhausted_is_retried_only_when_retry_info_says_when() {
    let (tmp, port, mut server) = start("otlp-grpc-exhausted");
    let receiver = GrpcReceiver::start(
        &tmp,
        "retry-info",
        &["--answers", "RESOURCE_EXHAUSTED_RETRY", "--retry-ms", "300"],
    );
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let (out, _) = traced_curl(port, &endpoint, &[("LUMIGO_FLUSH_TIMEOUT", "5")]);
    let calls = receiver.wait_calls(2);
    let answers: Vec<&str> = calls.iter().map(|c| c.answer.as_str()).collect();
    assert_eq!(
        answers,
        ["RESOURCE_EXHAUSTED_RETRY", "OK"],
        "{}",
        stderr(&out)
    );
    // The 300 ms it asked for, not the 0.8-1.2 s backoff.
    let gap = calls[1].at - calls[0].at;
    assert!((0.29..0.75).contains(&gap), "{gap}");
    the_curl_span(&calls[1], port);

    let receiver = GrpcReceiver::start(&tmp, "no-retry-info", &["--answers", "RESOURCE_EXHAUSTED"]);
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let (out, _) = traced_curl(port, &endpoint, &[("LUMIGO_FLUSH_TIMEOUT", "5")]);
    let err = stderr(&out);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.calls().len(), 1, "{err}");
    assert!(
        err.contains("1 span lost: 1 gRPC RESOURCE_EXHAUSTED (8)"),
        "{err}"
    );
    server.stop();
}

#[test]
fn a_grpc_partial_success_is_told_under_debug() {
    let (tmp, port, mut server) = start("otlp-grpc-partial");
    let receiver = GrpcReceiver::start(&tmp, "partial", &["--partial", "1"]);
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let (out, _) = traced_curl(port, &endpoint, &[]);
    let calls = receiver.wait_calls(1);
    the_curl_span(&calls[0], port);
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{endpoint} accepted the batch but rejected 1 of 1 spans: \"too old\""
        )),
        "{err}"
    );
    server.stop();
}

#[test]
fn a_slow_grpc_collector_is_given_up_after_the_timeout_it_was_told() {
    let (tmp, port, mut server) = start("otlp-grpc-slow");
    let receiver = GrpcReceiver::start(&tmp, "slow", &["--delay-ms", "4000"]);
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let (out, took) = traced_curl(
        port,
        &endpoint,
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
            ("LUMIGO_FLUSH_TIMEOUT", "10"),
        ],
    );
    let err = stderr(&out);
    assert!(took < Duration::from_millis(3000), "{took:?}: {err}");
    // Given up by our side at the timeout, or by the collector honouring
    // the deadline it was told (grpcio answers DEADLINE_EXCEEDED itself):
    // which comes first is a race, either is right.
    assert!(
        err.contains("1 span lost: 1 connection failed")
            || err.contains("1 span lost: 1 gRPC DEADLINE_EXCEEDED (4)"),
        "{err}"
    );
    // The collector was told the deadline (grpc-timeout).
    let calls = receiver.wait_calls(1);
    let left = calls[0].time_remaining.expect("a grpc-timeout");
    assert!(left > 0.0 && left <= 0.7, "{left}");
    server.stop();
}
