//! HTTPS through OpenSSL: spans and propagation from the plaintext at
//! SSL_write/SSL_read, with certificates made at test time by `openssl`.

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

/// A self-signed certificate for localhost: (cert, key).
fn certificate(tmp: &TempDir) -> (PathBuf, PathBuf) {
    let (cert, key) = (tmp.path("cert.pem"), tmp.path("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

fn a<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

fn tls_python_server(tmp: &TempDir, dump: &Path, port: u16) -> Server {
    let (cert, key) = certificate(tmp);
    let mut cmd = traced("python3");
    cmd.arg(app("tls_server.py"))
        .arg(port.to_string())
        .arg(cert)
        .arg(key);
    cmd.env("LUMIGO_DEBUG_SPANDUMP", dump)
        .env("OTEL_SERVICE_NAME", "tls-server");
    Server::spawn(cmd, port)
}

fn check_pair(spans: &[Value], client_service: &str, path: &str, status: i64, port: u16) {
    let client = spans
        .iter()
        .find(|s| {
            s["kind"] == "SpanKind.CLIENT"
                && s["resource"]["attributes"]["service.name"] == client_service
                && s["attributes"]["url.path"] == path
        })
        .unwrap_or_else(|| panic!("no client span for {path} from {client_service}: {spans:#?}"));
    assert_eq!(a(client, "url.scheme"), "https");
    assert_eq!(
        a(client, "url.full"),
        format!("https://localhost:{port}{path}").as_str()
    );
    assert_eq!(a(client, "http.response.status_code"), status);
    let server = spans
        .iter()
        .find(|s| s["kind"] == "SpanKind.SERVER" && s["parent_id"] == client["context"]["span_id"])
        .unwrap_or_else(|| {
            panic!("no server span under {client_service}'s client span: {spans:#?}")
        });
    assert_eq!(
        server["context"]["trace_id"], client["context"]["trace_id"],
        "one trace"
    );
    assert_eq!(a(server, "url.scheme"), "https");
    assert_eq!(a(server, "url.path"), path.split('?').next().unwrap());
    assert_eq!(a(server, "http.response.status_code"), status);
}

#[test]
fn curl_and_python_https_clients_against_a_traced_python_tls_server() {
    let tmp = TempDir::new("tls-py");
    let dump = tmp.path("tls.jsonl");
    let port = free_port();
    let mut server = tls_python_server(&tmp, &dump, port);

    let mut curl = traced("curl");
    curl.args(["-sk", "-o", "/dev/null"])
        .arg(format!("https://localhost:{port}/len/5"))
        .env("LUMIGO_DEBUG_SPANDUMP", &dump);
    assert!(run(curl, T).status.success());

    let script = format!(
        r#"
import http.client, ssl, urllib.request, urllib.error
ctx = ssl._create_unverified_context()
try:
    urllib.request.urlopen("https://localhost:{port}/status/503", context=ctx)
except urllib.error.HTTPError as e:
    print(e.code)
c = http.client.HTTPSConnection("localhost", {port}, context=ctx)
c.request("POST", "/echo", body=b"secret payload")
print(c.getresponse().read().decode())
"#
    );
    let mut py = traced("python3");
    py.args(["-c", &script])
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_SERVICE_NAME", "py-client");
    let out = run(py, T);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "503\nsecret payload\n"
    );

    let is_http = |s: &Value| !s["attributes"]["http.request.method"].is_null();
    let all = wait_spans(&dump, T, |s| s.iter().filter(|x| is_http(x)).count() >= 6);
    server.stop();
    let spans: Vec<Value> = all.iter().filter(|x| is_http(x)).cloned().collect();
    assert_eq!(
        spans.len(),
        6,
        "one span per exchange per side, none from ciphertext: {all:#?}"
    );
    // Python resolved "localhost" twice (curl answers "localhost" itself).
    let lookups: Vec<&Value> = all
        .iter()
        .filter(|x| x["name"] == "DNS localhost")
        .collect();
    assert_eq!(lookups.len(), 2, "{all:#?}");
    assert!(lookups
        .iter()
        .all(|l| l["attributes"]["dns.answers.count"].as_i64() > Some(0)));
    check_pair(&spans, "curl", "/len/5", 200, port);
    let py_clients: Vec<&Value> = spans
        .iter()
        .filter(|s| {
            s["kind"] == "SpanKind.CLIENT"
                && s["resource"]["attributes"]["service.name"] == "py-client"
        })
        .collect();
    assert_eq!(py_clients.len(), 2);
    assert_eq!(a(py_clients[0], "http.response.status_code"), 503);
    assert_eq!(py_clients[0]["status"]["status_code"], "ERROR");
    assert_eq!(a(py_clients[1], "http.request.method"), "POST");
    assert_eq!(a(py_clients[1], "http.request.body.size"), 14);
    for c in py_clients {
        assert_eq!(
            a(c, "network.peer.address"),
            "127.0.0.1",
            "Python's SSL* has a socket fd"
        );
        let server = spans
            .iter()
            .find(|s| s["parent_id"] == c["context"]["span_id"])
            .expect("server span under the Python client span");
        assert_eq!(server["context"]["trace_id"], c["context"]["trace_id"]);
    }
}

#[test]
fn nginx_with_ssl_gives_one_https_span_per_request() {
    assert!(
        have("nginx"),
        "nginx is required (scripts/install-deps.sh installs it)"
    );
    let tmp = TempDir::new("tls-nginx");
    let (cert, key) = certificate(&tmp);
    let port = free_port();
    let root = tmp.path("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), "hello over tls\n").unwrap();
    let conf = tmp.path("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nuser root;\nmaster_process on;\nworker_processes 1;\npid {t}/nginx.pid;\n\
             error_log {t}/error.log warn;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n\
               fastcgi_temp_path {t}/fcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n\
               server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {cert}; ssl_certificate_key {key};\n\
                 root {root}; }}\n}}\n",
            t = tmp.0.display(),
            cert = cert.display(),
            key = key.display(),
            root = root.display(),
        ),
    )
    .unwrap();
    let dump = tmp.path("nginx.jsonl");
    let mut cmd = traced("nginx");
    cmd.arg("-c").arg(&conf).arg("-p").arg(&tmp.0);
    cmd.env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let mut server = Server::spawn(cmd, port);

    // Two keep-alive requests from a traced curl: two client spans, two
    // server spans, paired by propagation inside TLS.
    let mut curl = traced("curl");
    curl.args(["-sk", "-o", "/dev/null", "-o", "/dev/null"])
        .arg(format!("https://localhost:{port}/index.html"))
        .arg(format!("https://localhost:{port}/nope"))
        .env("LUMIGO_DEBUG_SPANDUMP", &dump);
    assert!(run(curl, T).status.success());
    let spans = wait_spans(&dump, T, |s| s.len() >= 4);
    server.stop();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    check_pair(&spans, "curl", "/index.html", 200, port);
    check_pair(&spans, "curl", "/nope", 404, port);
    for s in spans.iter().filter(|s| s["kind"] == "SpanKind.SERVER") {
        assert_eq!(s["resource"]["attributes"]["service.name"], "nginx");
        assert_eq!(
            a(s, "client.address"),
            "127.0.0.1",
            "nginx's SSL* has its socket fd"
        );
    }
}

/// Regression: a Python wheel with its own private libssl
/// (psycopg2-binary's libssl-<hash>.so.3) beside the system's libssl (loaded
/// by `import ssl`). Each call must reach the caller's own copy; routing it
/// to the other copy crashed the app.
#[test]
fn a_bundled_libssl_beside_the_system_one_keeps_working() {
    ensure_service("postgresql", 5432);
    assert!(
        python_has("psycopg2"),
        "psycopg2 is required (scripts/install-deps.sh)"
    );
    let script = r#"
import ssl, psycopg2
c = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres", sslmode="require")
cur = c.cursor()
cur.execute("select 40 + 2")
print(cur.fetchone()[0], c.info.ssl_in_use)
"#;
    let mut plain = Command::new("python3");
    plain.args(["-c", script]);
    let out = run(plain, T);
    assert!(
        out.status.success(),
        "untraced run failed (is ssl on in PostgreSQL?): {out:?}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42 True\n");
    let mut cmd = traced("python3");
    cmd.args(["-c", script]);
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42 True\n");
}

/// Python urllib over HTTPS, a 404 whose body the app never reads: the
/// span's `error.type` is the status, as over plain HTTP, not
/// `connection_closed` (the close cut a body no one read).
#[test]
fn urllib_https_404_unread_body_gives_error_type_404_not_connection_closed() {
    let tmp = TempDir::new("tls-404");
    let (dump, server_dump) = (tmp.path("client.jsonl"), tmp.path("server.jsonl"));
    let port = free_port();
    let mut server = tls_python_server(&tmp, &server_dump, port);
    let script = format!(
        r#"
import ssl, urllib.request, urllib.error
ctx = ssl._create_unverified_context()
try:
    urllib.request.urlopen("https://localhost:{port}/missing", context=ctx)
except urllib.error.HTTPError as e:
    print(e.code)
"#
    );
    let mut py = traced("python3");
    py.args(["-c", &script]).env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(py, T);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404\n");
    let spans: Vec<Value> = read_spandump(&dump)
        .into_iter()
        .filter(|s| s["kind"] == "SpanKind.CLIENT" && !a(s, "http.request.method").is_null())
        .collect();
    server.stop();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(a(&spans[0], "url.scheme"), "https");
    assert_eq!(a(&spans[0], "http.response.status_code"), 404);
    assert_eq!(a(&spans[0], "error.type"), "404");
    assert_eq!(spans[0]["status"]["status_code"], "ERROR");
}

/// A Python service that forwards its caller's `traceparent` unchanged to
/// an HTTPS upstream (as a proxy does): the value is replaced inside TLS, in
/// place, with one naming the service's CLIENT span, so the chain curl →
/// service SERVER → service CLIENT → upstream SERVER holds by ids.
#[test]
fn a_traceparent_forwarded_over_https_is_replaced_with_our_client_span() {
    let tmp = TempDir::new("tls-forward");
    let dump = tmp.path("spans.jsonl");
    let (up_port, port) = (free_port(), free_port());
    let mut upstream = tls_python_server(&tmp, &dump, up_port);
    let script = format!(
        r#"
import http.client, ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
ctx = ssl._create_unverified_context()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        c = http.client.HTTPSConnection("localhost", {up_port}, context=ctx)
        c.request("GET", "/len/7", headers={{"traceparent": self.headers["traceparent"]}})
        body = c.getresponse().read()
        c.close()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
ThreadingHTTPServer(("127.0.0.1", {port}), H).serve_forever()
"#
    );
    let mut svc = traced("python3");
    svc.args(["-c", &script])
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_SERVICE_NAME", "forwarder");
    let mut svc = Server::spawn(svc, port);
    let mut curl = traced("curl");
    curl.args(["-sf", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{port}/in"))
        .env("LUMIGO_DEBUG_SPANDUMP", &dump);
    assert!(run(curl, T).status.success());

    let is_http = |s: &Value| !s["attributes"]["http.request.method"].is_null();
    let all = wait_spans(&dump, T, |s| s.iter().filter(|x| is_http(x)).count() >= 4);
    svc.stop();
    upstream.stop();
    let spans: Vec<&Value> = all.iter().filter(|x| is_http(x)).collect();
    assert_eq!(spans.len(), 4, "{all:#?}");
    let find = |svc: &str, kind: &str| -> &Value {
        spans
            .iter()
            .find(|s| s["kind"] == kind && s["resource"]["attributes"]["service.name"] == svc)
            .unwrap_or_else(|| panic!("no {kind} from {svc}: {spans:#?}"))
    };
    let curl_client = find("curl", "SpanKind.CLIENT");
    let svc_server = find("forwarder", "SpanKind.SERVER");
    let svc_client = find("forwarder", "SpanKind.CLIENT");
    let up_server = find("tls-server", "SpanKind.SERVER");
    assert_eq!(a(svc_client, "url.scheme"), "https");
    for s in [svc_server, svc_client, up_server] {
        assert_eq!(s["context"]["trace_id"], curl_client["context"]["trace_id"]);
    }
    assert_eq!(svc_server["parent_id"], curl_client["context"]["span_id"]);
    assert_eq!(svc_client["parent_id"], svc_server["context"]["span_id"]);
    assert_eq!(
        up_server["parent_id"], svc_client["context"]["span_id"],
        "the upstream's parent is the forwarder's CLIENT span"
    );
}
