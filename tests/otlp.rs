//! Spans of real traced programs arriving at an OTLP/HTTP receiver that
//! decodes them with the opentelemetry-proto types.

#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

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
}

#[test]
fn lumigo_token_sends_the_authorization_header() {
    let receiver = OtlpReceiver::start();
    let port = free_port();
    let mut server = http11_server(port, None);
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
