//! HTTP payloads (issue 14): headers and bodies on CLIENT and SERVER
//! spans, plain and TLS, masked, in the span dump and over OTLP. Real
//! clients (curl, Python's urllib) against a traced Python server.

#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use otlp_receiver::{OtlpReceiver, SPAN_KIND_CLIENT, SPAN_KIND_SERVER};
use serde_json::Value;
use support::*;

const T: Duration = Duration::from_secs(30);

/// Secrets the client sends, each unique so a leak is unmistakable.
const AUTH_SECRET: &str = "auth-QsecretQ-1001";
const KEY_SECRET: &str = "key-QsecretQ-1002";
const COOKIE_SECRET: &str = "cookie-QsecretQ-1003";
const BODY_SECRET: &str = "body-QsecretQ-1004";
const QUERY_SECRET: &str = "query-QsecretQ-1005";
/// What the server answers with (tests/apps/payload_server.py).
const RESP_SECRET: &str = "resp-QsecretQ-7719";
const SECRETS: [&str; 6] = [
    AUTH_SECRET,
    KEY_SECRET,
    COOKIE_SECRET,
    BODY_SECRET,
    QUERY_SECRET,
    RESP_SECRET,
];

fn app(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/apps")
        .join(name)
}

/// The traced payload server, writing spans to `dump` (and to `otlp`).
fn payload_server(dump: &Path, otlp: Option<&OtlpReceiver>, tls: Option<&TempDir>) -> Server {
    let port = free_port();
    let mut cmd = traced("python3");
    cmd.arg(app("payload_server.py")).arg(port.to_string());
    if let Some(tmp) = tls {
        let (cert, key) = certificate(tmp);
        cmd.arg(cert).arg(key);
    }
    cmd.env("LUMIGO_DEBUG_SPANDUMP", dump)
        .env("OTEL_SERVICE_NAME", "payload-server");
    if let Some(r) = otlp {
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", r.base_url());
    }
    Server::spawn(cmd, port)
}

/// A JSON POST with secrets in headers, nested in the body and in the query.
fn curl_login(port: u16, scheme: &str, dump: &Path) -> Command {
    let mut cmd = traced("curl");
    let body = format!(r#"{{"user":{{"name":"bob","password":"{BODY_SECRET}"}},"remember":true}}"#);
    cmd.args(["-s", "-k", "-o", "/dev/null", "-X", "POST"])
        .args(["-H", "Content-Type: application/json"])
        .args(["-H", &format!("Authorization: Bearer {AUTH_SECRET}")])
        .args(["-H", &format!("X-Api-Key: {KEY_SECRET}")])
        .args(["-H", &format!("Cookie: sid={COOKIE_SECRET}")])
        .args(["-H", "X-Request-Id: req-42"])
        .args(["--data", &body])
        .arg(format!(
            "{scheme}://localhost:{port}/login?token={QUERY_SECRET}&page=2"
        ))
        .env("LUMIGO_DEBUG_SPANDUMP", dump)
        .env("OTEL_SERVICE_NAME", "curl");
    cmd
}

fn str_attr<'a>(span: &'a Value, key: &str) -> &'a str {
    span["attributes"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key}: {span:#}"))
}

fn json_attr(span: &Value, key: &str) -> Value {
    serde_json::from_str(str_attr(span, key))
        .unwrap_or_else(|e| panic!("{key} is not JSON ({e}): {span:#}"))
}

/// The CLIENT span from `service` for `path`, and the SERVER span under it.
fn pair<'a>(spans: &'a [Value], service_name: &str, path: &str) -> (&'a Value, &'a Value) {
    let client = spans
        .iter()
        .find(|s| {
            kind(s) == "SpanKind.CLIENT"
                && service(s) == service_name
                && attr(s, "url.path") == path
        })
        .unwrap_or_else(|| panic!("no CLIENT span for {path}: {spans:#?}"));
    let server = spans
        .iter()
        .find(|s| kind(s) == "SpanKind.SERVER" && parent_id(s) == Some(span_id(client)))
        .unwrap_or_else(|| panic!("no SERVER span under the CLIENT span for {path}: {spans:#?}"));
    assert_eq!(trace_id(server), trace_id(client));
    (client, server)
}

/// Both sides of the login exchange carry the same masked payloads.
fn check_login(client: &Value, server: &Value) {
    for span in [client, server] {
        let req = json_attr(span, "http.request.headers");
        assert_eq!(req["authorization"], "****", "{span:#}");
        assert_eq!(req["x-api-key"], "****");
        assert_eq!(req["cookie"], "****");
        assert_eq!(req["x-request-id"], "req-42");
        assert_eq!(req["content-type"], "application/json");
        let body = json_attr(span, "http.request.body");
        assert_eq!(body["user"]["password"], "****", "{span:#}");
        assert_eq!(body["user"]["name"], "bob");
        assert_eq!(body["remember"], true);
        let resp = json_attr(span, "http.response.headers");
        assert_eq!(resp["set-cookie"], "****", "{span:#}");
        assert_eq!(resp["x-served-by"], "payload-server");
        let body = json_attr(span, "http.response.body");
        assert_eq!(body["session"]["access_token"], "****", "{span:#}");
        assert_eq!(body["session"]["id"], 7);
        assert_eq!(attr(span, "url.query"), "token=****&page=2");
    }
}

/// The spans in `dump` once `n` of them carry a response body.
fn wait_bodies(dump: &Path, n: usize) -> Vec<Value> {
    wait_spans(dump, T, |s| {
        s.iter()
            .filter(|s| !attr(s, "http.response.body").is_null())
            .count()
            >= n
    })
}

fn assert_no_secret(what: &str, bytes: &[u8]) {
    for secret in SECRETS {
        if let Some(at) = bytes
            .windows(secret.len())
            .position(|w| w == secret.as_bytes())
        {
            let around = &bytes[at.saturating_sub(300)..(at + 100).min(bytes.len())];
            panic!("{secret} in {what}: …{}…", String::from_utf8_lossy(around));
        }
    }
}

/// curl POSTs JSON with secrets to a traced Python server: both spans
/// carry masked headers and bodies, in the span dump and over OTLP, and
/// no secret reaches either output.
#[test]
fn json_post_secrets_are_masked_on_both_sides_in_both_outputs() {
    let tmp = TempDir::new("payload-json");
    let dump = tmp.path("spans.jsonl");
    let receiver = OtlpReceiver::start();
    let mut server = payload_server(&dump, Some(&receiver), None);
    let mut cmd = curl_login(server.port, "http", &dump);
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url());
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let spans = wait_bodies(&dump, 2);
    let otlp = receiver.wait_for(
        |s| {
            s.iter()
                .any(|s| s.kind == SPAN_KIND_CLIENT && s.attr("http.request.body").is_some())
                && s.iter().any(|s| s.kind == SPAN_KIND_SERVER)
        },
        T,
    );
    server.stop();
    let (client, server_span) = pair(&spans, "curl", "/login");
    check_login(client, server_span);

    // OTLP carries the same values.
    for (k, dumped) in [(SPAN_KIND_CLIENT, client), (SPAN_KIND_SERVER, server_span)] {
        let s = otlp
            .iter()
            .find(|s| s.kind == k && s.attr("url.path") == Some("/login"))
            .unwrap_or_else(|| panic!("no span of kind {k} over OTLP: {otlp:#?}"));
        for key in [
            "http.request.headers",
            "http.request.body",
            "http.response.headers",
            "http.response.body",
        ] {
            assert_eq!(s.attr(key), Some(str_attr(dumped, key)), "{key}");
        }
    }
    assert_no_secret("the span dump", &std::fs::read(&dump).unwrap());
    let requests = receiver.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_no_secret("an OTLP request", &r.body);
    }
}

/// Tried as a user: a server that shows back what it was sent (here
/// `/echo/...` answers `{"received": <the request body>}`) put the
/// password of a JSON body, masked in `http.request.body`, in clear in
/// `http.response.body`. A JSON and a form body's secret values are now
/// masked wherever they come back, on both sides (the CLIENT span and the
/// SERVER span under it, by ids).
#[test]
fn request_body_secrets_a_server_echoes_are_masked() {
    let tmp = TempDir::new("payload-echo");
    let dump = tmp.path("spans.jsonl");
    let mut server = payload_server(&dump, None, None);
    let base = format!("http://127.0.0.1:{}", server.port);
    let json = format!(r#"{{"user":"bob","password":"{BODY_SECRET}"}}"#);
    let form = format!("user=bob&password={BODY_SECRET}");
    let mut cmd = traced("curl");
    cmd.args([
        "-s",
        "-o",
        "/dev/null",
        "-H",
        "Content-Type: application/json",
    ])
    .args(["--data", &json, &format!("{base}/echo/json"), "--next"])
    .args(["-s", "-o", "/dev/null", "--data", &form])
    .arg(format!("{base}/echo/form"))
    .env("LUMIGO_DEBUG_SPANDUMP", &dump)
    .env("OTEL_SERVICE_NAME", "curl");
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let spans = wait_bodies(&dump, 4);
    server.stop();
    for (path, received) in [
        ("/echo/json", r#"{"user":"bob","password":"****"}"#),
        ("/echo/form", "user=bob&password=****"),
    ] {
        let (client, server_span) = pair(&spans, "curl", path);
        for span in [client, server_span] {
            let body = json_attr(span, "http.response.body");
            assert_eq!(body["received"], received, "{span:#}");
            assert!(
                str_attr(span, "http.request.body").contains("****"),
                "{span:#}"
            );
        }
    }
    assert_no_secret("the span dump", &std::fs::read(&dump).unwrap());
}

/// The same exchange over TLS (curl https → traced Python TLS server).
#[test]
fn https_payloads_are_captured_and_masked() {
    let tmp = TempDir::new("payload-tls");
    let dump = tmp.path("spans.jsonl");
    let mut server = payload_server(&dump, None, Some(&tmp));
    let out = run(curl_login(server.port, "https", &dump), T);
    assert!(out.status.success(), "{out:?}");
    let spans = wait_bodies(&dump, 2);
    server.stop();
    let (client, server_span) = pair(&spans, "curl", "/login");
    assert_eq!(attr(client, "url.scheme"), "https");
    check_login(client, server_span);
    assert_no_secret("the span dump", &std::fs::read(&dump).unwrap());
}

/// A traced Python client: a form body, a chunked response (decoded), a
/// binary response (summarised), a long JSON response (cut to the limit,
/// every complete pair masked) and a gzip-encoded one (decoded).
#[test]
fn python_client_form_chunked_binary_and_cut_bodies() {
    let tmp = TempDir::new("payload-py");
    let dump = tmp.path("spans.jsonl");
    let mut server = payload_server(&dump, None, None);
    let script = format!(
        r#"
import urllib.request
base = "http://127.0.0.1:{port}"
req = urllib.request.Request(base + "/login", data=b"user=bob&password={BODY_SECRET}&n=1",
    headers={{"Content-Type": "application/x-www-form-urlencoded"}})
urllib.request.urlopen(req).read()
for path in ("/chunked", "/binary", "/big", "/gzip"):
    urllib.request.urlopen(base + path).read()
"#,
        port = server.port
    );
    let mut cmd = traced("python3");
    cmd.args(["-c", &script])
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_SERVICE_NAME", "py-client");
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let spans = wait_spans(&dump, T, |s| {
        s.iter().filter(|s| kind(s) == "SpanKind.SERVER").count() >= 5
            && s.iter()
                .filter(|s| kind(s) == "SpanKind.CLIENT" && service(s) == "py-client")
                .count()
                >= 5
    });
    server.stop();

    let (client, server_span) = pair(&spans, "py-client", "/login");
    for span in [client, server_span] {
        assert_eq!(
            str_attr(span, "http.request.body"),
            "user=bob&password=****&n=1"
        );
    }

    let (client, server_span) = pair(&spans, "py-client", "/chunked");
    for span in [client, server_span] {
        assert_eq!(
            str_attr(span, "http.response.body"),
            r#"{"items": [1, 2, 3], "refresh_token": "****"}"#,
            "decoded from its chunks"
        );
        assert_eq!(
            json_attr(span, "http.response.headers")["transfer-encoding"],
            "chunked"
        );
    }

    let (client, server_span) = pair(&spans, "py-client", "/binary");
    for span in [client, server_span] {
        assert_eq!(
            str_attr(span, "http.response.body"),
            "<binary body: 1032 bytes, image/png>"
        );
    }

    let (client, server_span) = pair(&spans, "py-client", "/big");
    for span in [client, server_span] {
        let body = str_attr(span, "http.response.body");
        // The first 2048 bytes, masked (so shorter), and cut.
        assert!(
            (1500..=2048).contains(&body.len()),
            "{}: {body}",
            body.len()
        );
        assert!(!body.ends_with("]}"), "{body}");
        assert!(
            body.starts_with(r#"{"items": [{"n": 0, "name": "item-0000", "password": "****"}"#),
            "{body}"
        );
        let pairs = body.matches(r#""password": "****""#).count();
        assert!(pairs > 20, "{pairs} masked pairs in {body}");
        assert!(attr(span, "http.response.body.size").as_i64().unwrap() > 6000);
    }
    let (client, server_span) = pair(&spans, "py-client", "/gzip");
    for span in [client, server_span] {
        assert_eq!(
            str_attr(span, "http.response.body"),
            r#"{"id_token": "****", "n": 1}"#,
            "decoded, then masked"
        );
    }
    assert_no_secret("the span dump", &std::fs::read(&dump).unwrap());
}

/// Per-area variables and `all`, named header attributes, and
/// `LUMIGO_CAPTURE_PAYLOADS=false`.
#[test]
fn per_area_masking_named_headers_and_the_switch() {
    let tmp = TempDir::new("payload-areas");
    let dump = tmp.path("spans.jsonl");
    let mut server = payload_server(&dump, None, None);
    let mut cmd = curl_login(server.port, "http", &dump);
    cmd.env("LUMIGO_SECRET_MASKING_REGEX", r#"["nothing-matches"]"#)
        .env(
            "LUMIGO_SECRET_MASKING_REGEX_HTTP_REQUEST_HEADERS",
            r#"["x-request-.*"]"#,
        )
        .env(
            "LUMIGO_SECRET_MASKING_REGEX_HTTP_REQUEST_BODIES",
            r#"["NAME"]"#,
        )
        .env("LUMIGO_SECRET_MASKING_REGEX_HTTP_RESPONSE_HEADERS", "all")
        .env("LUMIGO_SECRET_MASKING_REGEX_HTTP_RESPONSE_BODIES", "all")
        .env(
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST",
            "X-Request-Id,Content-Type",
        )
        .env(
            "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE",
            "x-served-by",
        );
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let spans = wait_spans(&dump, T, |s| {
        s.iter()
            .any(|s| kind(s) == "SpanKind.CLIENT" && !attr(s, "http.response.body").is_null())
    });
    let client = spans
        .iter()
        .find(|s| kind(s) == "SpanKind.CLIENT")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    let req = json_attr(client, "http.request.headers");
    assert_eq!(req["x-request-id"], "****");
    assert_eq!(req["authorization"], "****", "always masked");
    assert_eq!(
        req["x-api-key"], KEY_SECRET,
        "not secret under these patterns"
    );
    let body = json_attr(client, "http.request.body");
    assert_eq!(body["user"]["name"], "****", "case-insensitive");
    assert_eq!(body["user"]["password"], BODY_SECRET);
    let resp = json_attr(client, "http.response.headers");
    assert_eq!(resp["x-served-by"], "****");
    assert_eq!(resp["content-type"], "****");
    assert_eq!(str_attr(client, "http.response.body"), "****");
    assert_eq!(
        attr(client, "url.query"),
        format!("token={QUERY_SECRET}&page=2").as_str()
    );
    assert_eq!(str_attr(client, "http.request.header.x-request-id"), "****");
    assert_eq!(
        str_attr(client, "http.request.header.content-type"),
        "application/json"
    );
    assert_eq!(str_attr(client, "http.response.header.x-served-by"), "****");

    // Off: no payload attributes at all, the rest as before.
    let dump2 = tmp.path("off.jsonl");
    let mut cmd = curl_login(server.port, "http", &dump2);
    cmd.env("LUMIGO_CAPTURE_PAYLOADS", "false");
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let spans = wait_spans(&dump2, T, |s| {
        s.iter().any(|s| kind(s) == "SpanKind.CLIENT")
    });
    server.stop();
    let client = spans
        .iter()
        .find(|s| kind(s) == "SpanKind.CLIENT")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(attr(client, "http.response.status_code"), 200);
    for key in [
        "http.request.headers",
        "http.request.body",
        "http.response.headers",
        "http.response.body",
    ] {
        assert!(attr(client, key).is_null(), "{key}: {client:#}");
    }
}

/// A masking regex that does not compile: the launcher says so, and the
/// defaults mask instead.
#[test]
fn a_broken_masking_regex_is_reported_and_the_defaults_mask() {
    let tmp = TempDir::new("payload-badregex");
    let dump = tmp.path("spans.jsonl");
    let mut server = payload_server(&dump, None, None);
    let mut cmd = curl_login(server.port, "http", &dump);
    cmd.env(
        "LUMIGO_SECRET_MASKING_REGEX_HTTP_REQUEST_BODIES",
        r#"["(unclosed"]"#,
    );
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("LUMIGO_SECRET_MASKING_REGEX_HTTP_REQUEST_BODIES")
            && stderr.contains("(unclosed")
            && stderr.contains("default"),
        "{stderr}"
    );
    let spans = wait_spans(&dump, T, |s| {
        s.iter()
            .any(|s| kind(s) == "SpanKind.CLIENT" && !attr(s, "http.request.body").is_null())
    });
    server.stop();
    let client = spans
        .iter()
        .find(|s| kind(s) == "SpanKind.CLIENT")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(
        json_attr(client, "http.request.body")["user"]["password"],
        "****"
    );
    assert_no_secret("the span dump", &std::fs::read(&dump).unwrap());
}

/// Four requests on one keep-alive connection (curl `--next`), header lines
/// repeated and changed between them, so that the second and later heads'
/// repeated lines come from the memo of lines met before: each span, on
/// both sides, still has its own headers, its own content type and
/// encoding (the bodies are read by them) and its own secret masked.
#[test]
fn repeated_header_lines_give_each_exchange_its_own_payloads() {
    let tmp = TempDir::new("payload-repeat");
    let dump = tmp.path("spans.jsonl");
    let mut server = payload_server(&dump, None, None);
    let url = |path: &str| format!("http://localhost:{}{path}", server.port);
    let auth = format!("Authorization: Bearer {AUTH_SECRET}");
    let requests: [(&[&str], &str); 4] = [
        (&["X-Same: same", "X-Step: 1"], "/gzip"),
        (&["X-Same: same", "X-Step: 2", &auth], "/chunked"),
        (&["X-Same: same", "X-Step: 3"], "/gzip"),
        (&["X-Step: 2"], "/binary"),
    ];
    let mut cmd = traced("curl");
    for (i, (headers, path)) in requests.iter().enumerate() {
        if i > 0 {
            cmd.arg("--next");
        }
        cmd.args(["-s", "-o", "/dev/null"]);
        for h in *headers {
            cmd.args(["-H", h]);
        }
        cmd.arg(url(path));
    }
    cmd.env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_SERVICE_NAME", "curl");
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let spans = wait_spans(&dump, T, |s| {
        s.iter()
            .filter(|s| kind(s) == "SpanKind.SERVER" && !attr(s, "http.response.headers").is_null())
            .count()
            >= 4
    });
    server.stop();
    let clients: Vec<&Value> = spans
        .iter()
        .filter(|s| kind(s) == "SpanKind.CLIENT" && service(s) == "curl")
        .collect();
    assert_eq!(clients.len(), 4, "{spans:#?}");
    // One connection: the client's spans share its local port.
    let port = attr(clients[0], "network.local.port");
    assert!(
        clients
            .iter()
            .all(|c| attr(c, "network.local.port") == port),
        "{clients:#?}"
    );
    let mut steps = Vec::new();
    for client in clients {
        let server_span = spans
            .iter()
            .find(|s| kind(s) == "SpanKind.SERVER" && parent_id(s) == Some(span_id(client)))
            .unwrap_or_else(|| panic!("no SERVER span under {client:#}"));
        assert_eq!(trace_id(server_span), trace_id(client));
        for span in [client, server_span] {
            let req = json_attr(span, "http.request.headers");
            let resp = json_attr(span, "http.response.headers");
            let step = req["x-step"].as_str().unwrap_or_default().to_owned();
            let body = str_attr(span, "http.response.body");
            match (
                attr(span, "url.path").as_str().unwrap_or_default(),
                step.as_str(),
            ) {
                ("/gzip", "1" | "3") => {
                    assert_eq!(req["x-same"], "same", "{span:#}");
                    assert!(req.get("authorization").is_none(), "{span:#}");
                    assert_eq!(resp["content-encoding"], "gzip", "{span:#}");
                    // Decoded (by the content encoding), and masked.
                    let body: Value = serde_json::from_str(body).unwrap();
                    assert_eq!(body["id_token"], "****", "{span:#}");
                    assert_eq!(body["n"], 1);
                }
                ("/chunked", "2") => {
                    assert_eq!(req["x-same"], "same", "{span:#}");
                    assert_eq!(req["authorization"], "****", "{span:#}");
                    assert_eq!(resp["transfer-encoding"], "chunked", "{span:#}");
                    let body: Value = serde_json::from_str(body).unwrap();
                    assert_eq!(body["refresh_token"], "****", "{span:#}");
                }
                ("/binary", "2") => {
                    assert!(req.get("x-same").is_none(), "{span:#}");
                    assert!(req.get("authorization").is_none(), "{span:#}");
                    assert_eq!(resp["content-type"], "image/png", "{span:#}");
                    assert!(body.starts_with("<binary body: "), "{span:#}");
                }
                other => panic!("unexpected exchange {other:?}: {span:#}"),
            }
        }
        steps.push(step_of(client));
    }
    steps.sort();
    assert_eq!(steps, ["1", "2", "2", "3"]);
    assert_no_secret("the span dump", &std::fs::read(&dump).unwrap());
}

fn step_of(span: &Value) -> String {
    json_attr(span, "http.request.headers")["x-step"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
