//! The resource: what every span says about the process that made it,
//! checked on real programs under the real launcher, in the span dump and
//! in the OTLP requests.

#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use otlp_receiver::{OtlpReceiver, SPAN_KIND_CLIENT};
use serde_json::Value;
use support::*;

const T: Duration = Duration::from_secs(30);

/// Secrets on curl's command line, each unique so a leak is unmistakable.
const BEARER: &str = "bearer-XsecretX-4711";
const PASSWORD: &str = "pw-YsecretY-4712";
const API_KEY: &str = "key-ZsecretZ-4713";

fn untraced_http_server() -> Server {
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/http11_server.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(port.to_string());
    Server::spawn(cmd, port)
}

/// `curl -H 'Authorization: Bearer X' 'http://127.0.0.1:PORT/?password=Y&api_key=Z'`.
fn curl_with_secrets(port: u16) -> Command {
    let mut cmd = traced("curl");
    cmd.args(["-s", "-o", "/dev/null", "-H"])
        .arg(format!("Authorization: Bearer {BEARER}"))
        .arg(format!(
            "http://127.0.0.1:{port}/?password={PASSWORD}&api_key={API_KEY}"
        ));
    cmd
}

fn assert_no_secret(bytes: &[u8], what: &str) {
    for secret in [BEARER, PASSWORD, API_KEY] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} leaked into {what}: {}",
            String::from_utf8_lossy(bytes)
        );
    }
}

fn masked_command_line(port: u16) -> String {
    format!(
        "curl -s -o /dev/null -H Authorization: **** http://127.0.0.1:{port}/?password=****&api_key=****"
    )
}

#[test]
fn secrets_in_process_command_line_are_masked_in_the_span_dump() {
    let mut server = untraced_http_server();
    let tmp = TempDir::new("cmdline-dump");
    let dump = tmp.path("spans.jsonl");
    let mut cmd = curl_with_secrets(server.port);
    cmd.env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let spans = wait_spans(&dump, T, |s| !of_kind(s, "SpanKind.CLIENT").is_empty());
    server.stop();
    let client = of_kind(&spans, "SpanKind.CLIENT")
        .into_iter()
        .find(|s| s["attributes"]["http.request.method"] == "GET")
        .unwrap_or_else(|| panic!("no HTTP client span: {spans:#?}"));
    let resource = &client["resource"]["attributes"];
    assert_eq!(
        resource["process.command_line"],
        masked_command_line(server.port).as_str()
    );
    assert_eq!(resource["service.name"], "curl");
    assert_eq!(
        client["attributes"]["url.query"],
        "password=****&api_key=****"
    );
    assert_no_secret(&std::fs::read(&dump).unwrap(), "the span dump");
}

#[test]
fn secrets_in_process_command_line_are_masked_over_otlp() {
    let mut server = untraced_http_server();
    let receiver = OtlpReceiver::start();
    let mut cmd = curl_with_secrets(server.port);
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url());
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let spans = receiver.wait_for(|s| s.iter().any(|s| s.kind == SPAN_KIND_CLIENT), T);
    server.stop();
    let client = spans
        .iter()
        .find(|s| s.kind == SPAN_KIND_CLIENT && s.attr("http.request.method") == Some("GET"))
        .unwrap_or_else(|| panic!("no HTTP client span: {spans:#?}"));
    assert_eq!(
        client.resource_attr("process.command_line"),
        Some(masked_command_line(server.port).as_str())
    );
    let requests = receiver.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_no_secret(&r.body, "an OTLP request body");
        assert_no_secret(format!("{:?}", r.headers).as_bytes(), "OTLP headers");
    }
}

/// The process span of `LUMIGO_PROCESS_SPAN=true lumigo-run COMMAND` from
/// the process whose executable's name starts with `exe` (python3 may be a
/// pyenv shim: a shell script that runs helpers before the interpreter).
fn process_span(program: &str, args: &[&str], env: &[(&str, &str)], exe: &str) -> Value {
    let tmp = TempDir::new("service-name");
    let dump = tmp.path("spans.jsonl");
    let mut cmd = traced(program);
    cmd.args(args)
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("LUMIGO_PROCESS_SPAN", "true")
        .envs(env.iter().copied());
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let spans = wait_spans(&dump, T, |s| !of_kind(s, "SpanKind.INTERNAL").is_empty());
    of_kind(&spans, "SpanKind.INTERNAL")
        .into_iter()
        .find(|s| {
            s["resource"]["attributes"]["process.executable.name"]
                .as_str()
                .is_some_and(|n| n.starts_with(exe))
        })
        .cloned()
        .unwrap_or_else(|| panic!("no process span from {program}: {spans:#?}"))
}

#[test]
fn service_name_defaults_to_the_command_as_run_not_the_resolved_executable() {
    // `sh` is a symlink to dash here; the user typed `sh`.
    let sh_target = std::fs::canonicalize("/bin/sh").unwrap();
    let dash = sh_target.file_name().unwrap().to_str().unwrap();
    let span = process_span("sh", &["-c", "true; exit 0"], &[], dash);
    let resource = &span["resource"]["attributes"];
    assert_eq!(resource["service.name"], "sh", "{span:#}");
    assert_eq!(
        resource["process.executable.name"], dash,
        "the executable is still named as it is"
    );

    let span = process_span("python3", &["-c", "pass"], &[], "python3");
    let resource = &span["resource"]["attributes"];
    assert_eq!(resource["service.name"], "python3", "{span:#}");

    // OTEL_SERVICE_NAME still says otherwise.
    let span = process_span(
        "sh",
        &["-c", "true; exit 0"],
        &[("OTEL_SERVICE_NAME", "jobs")],
        dash,
    );
    assert_eq!(span["resource"]["attributes"]["service.name"], "jobs");
}
