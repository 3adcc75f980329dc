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
    let conf = nginx_config(
        &tmp,
        &format!(
            "server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {cert}; ssl_certificate_key {key};\n\
               root {root}; }}",
            cert = cert.display(),
            key = key.display(),
            root = root.display(),
        ),
    );
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

/// Regression: README promises that under LUMIGO_DEBUG the library says
/// Node's OpenSSL is built in; it said nothing, because the address of our
/// own `SSL_write` bound to Node's exported one and the two compared equal.
#[test]
fn node_built_in_openssl_is_reported_under_debug() {
    assert!(
        have("node"),
        "node is required (scripts/install-deps.sh installs it)"
    );
    let said = |program: &str, args: &[&str]| {
        let mut cmd = traced(program);
        cmd.args(args).env("LUMIGO_DEBUG", "true");
        let out = run(cmd, T);
        assert!(out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(stderr.contains("#LUMIGO#"), "not traced: {stderr}");
        stderr
            .lines()
            .find(|l| l.contains("OpenSSL is built into"))
            .map(str::to_owned)
    };
    let node = said("node", &["-e", "1"]);
    let line = node.expect("node: the built-in OpenSSL is reported");
    assert!(line.contains("HTTPS traffic cannot be traced"), "{line}");
    // Programs using the system's libssl: nothing to report.
    assert_eq!(said("python3", &["-c", "import ssl"]), None);
    assert_eq!(said("curl", &["-s", "file:///dev/null"]), None);
}

/// Builds tests/apps/tls_method_client.c (a `TLS_method()` client that sets
/// SNI before its handshake) with the C compiler and the system's libssl.
fn tls_method_client(tmp: &TempDir) -> PathBuf {
    let exe = tmp.path("tls_method_client");
    let out = Command::new("cc")
        .arg("-O1")
        .arg("-o")
        .arg(&exe)
        .arg(app("tls_method_client.c"))
        .args(["-lssl", "-lcrypto"])
        .output()
        .expect("run cc (scripts/install-deps.sh installs gcc and libssl-dev)");
    assert!(
        out.status.success(),
        "cc tls_method_client.c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Regression (Ruby `Net::HTTP`, Perl `HTTP::Tiny`): a client with a
/// generic `TLS_method()` context that sets SNI before its handshake was
/// filed as a server (`SSL_is_server()` says 1 until the role is set): no
/// CLIENT span, no `traceparent`. Every way of starting the handshake is
/// tried: `SSL_connect`, `SSL_set_connect_state` + `SSL_do_handshake`,
/// `SSL_set_connect_state` + the handshake inside `SSL_write`,
/// `SSL_connect` with partial writes on (Ruby's and Net::SSLeay's mode)
/// and a body larger than one TLS record, and partial writes with 512-byte
/// records that cut the inserted line in two.
#[test]
fn tls_method_client_with_sni_before_the_handshake_is_a_client() {
    let tmp = TempDir::new("tls-method");
    let client = tls_method_client(&tmp);
    let dump = tmp.path("tls.jsonl");
    let port = free_port();
    let mut server = tls_python_server(&tmp, &dump, port);
    let modes = [
        ("connect", "/len/5"),
        ("state", "/len/5"),
        ("implicit", "/len/5"),
        ("partial", "/echo"),
        ("fragment", "/len/5"),
    ];
    for (mode, path) in modes {
        let mut cmd = traced(client.to_str().unwrap());
        cmd.arg(port.to_string())
            .arg(path)
            .arg(mode)
            .env("LUMIGO_DEBUG_SPANDUMP", &dump)
            .env("OTEL_SERVICE_NAME", format!("c-{mode}"));
        let out = run(cmd, T);
        assert!(out.status.success(), "{mode}: {out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with("HTTP/1.1 200 OK\n"), "{mode}: {stdout}");
        if mode == "partial" {
            assert!(stdout.ends_with(" echo=same\n"), "{stdout}");
        }
        if mode == "fragment" {
            // The first 512-byte record ended inside the inserted line: the
            // app was told it wrote fewer bytes and wrote again.
            assert!(stdout.ends_with("head=500 writes=2\n"), "{stdout}");
        }
    }
    let spans = wait_spans(&dump, T, |s| s.len() >= 2 * modes.len());
    server.stop();
    assert_eq!(spans.len(), 2 * modes.len(), "{spans:#?}");
    for (mode, path) in modes {
        check_pair(&spans, &format!("c-{mode}"), path, 200, port);
    }
    let partial = spans
        .iter()
        .find(|s| s["resource"]["attributes"]["service.name"] == "c-partial")
        .unwrap();
    assert_eq!(a(partial, "http.request.body.size"), 40000);
    assert_eq!(a(partial, "http.response.body.size"), 40000);
}

/// Regression: Perl `HTTP::Tiny` (IO::Socket::SSL) and Ruby `Net::HTTP`
/// over HTTPS gave no span and no `traceparent`: a generic context with SNI
/// set before `SSL_connect`, and partial writes on.
#[test]
fn perl_and_ruby_https_clients_get_client_spans_and_propagate() {
    let perl_ok = Command::new("perl")
        .args(["-MIO::Socket::SSL", "-MHTTP::Tiny", "-e", "1"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        perl_ok,
        "perl with IO::Socket::SSL is required (scripts/install-deps.sh installs it)"
    );
    let tmp = TempDir::new("tls-perl-ruby");
    let dump = tmp.path("tls.jsonl");
    let port = free_port();
    let mut server = tls_python_server(&tmp, &dump, port);
    let url = format!("https://localhost:{port}/len/5");
    let mut perl = traced("perl");
    perl.args([
        "-MHTTP::Tiny",
        "-e",
        "my $r = HTTP::Tiny->new(verify_SSL => 0)->get($ARGV[0]); print \"$r->{status}\\n\"",
        &url,
    ])
    .env("LUMIGO_DEBUG_SPANDUMP", &dump)
    .env("OTEL_SERVICE_NAME", "perl-client");
    let out = run(perl, T);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200\n");
    let mut clients = vec!["perl-client"];
    if have("ruby") {
        let mut ruby = traced("ruby");
        ruby.args([
            "-rnet/http",
            "-ropenssl",
            "-e",
            "h = Net::HTTP.new('localhost', ARGV[0].to_i); h.use_ssl = true; \
             h.verify_mode = OpenSSL::SSL::VERIFY_NONE; puts h.get('/len/5').code",
            &port.to_string(),
        ])
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_SERVICE_NAME", "ruby-client");
        let out = run(ruby, T);
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200\n");
        clients.push("ruby-client");
    }
    let is_http = |s: &Value| !s["attributes"]["http.request.method"].is_null();
    let all = wait_spans(&dump, T, |s| {
        s.iter().filter(|x| is_http(x)).count() >= 2 * clients.len()
    });
    server.stop();
    let spans: Vec<Value> = all.iter().filter(|x| is_http(x)).cloned().collect();
    assert_eq!(spans.len(), 2 * clients.len(), "{all:#?}");
    for client in clients {
        check_pair(&spans, client, "/len/5", 200, port);
    }
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
