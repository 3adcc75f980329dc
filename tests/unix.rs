//! Unix domain stream sockets, traced like TCP: psql and the mariadb
//! client on their servers' default sockets, psycopg and PyMySQL given the
//! socket, redis-cli against a second redis-server listening on a socket,
//! nginx proxying to a traced Python HTTP server on a socket, and fd passing
//! (`SCM_RIGHTS`) unchanged under tracing. Datagram and seqpacket sockets
//! stay untraced.

mod support;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const T: Duration = Duration::from_secs(60);
const PG_SOCKET_DIR: &str = "/var/run/postgresql";
const PG_SOCKET: &str = "/var/run/postgresql/.s.PGSQL.5432";
const MARIADB_SOCKET: &str = "/run/mysqld/mysqld.sock";

fn app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/unix_apps.py")
}

fn a<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}
fn trace_id(span: &Value) -> &str {
    span["context"]["trace_id"].as_str().unwrap_or("")
}
fn span_id(span: &Value) -> &str {
    span["context"]["span_id"].as_str().unwrap_or("")
}
fn parent_id(span: &Value) -> Option<&str> {
    span["parent_id"].as_str()
}
fn service(span: &Value) -> &str {
    span["resource"]["attributes"]["service.name"]
        .as_str()
        .unwrap_or("")
}

/// Spans other than name lookups.
fn without_dns(spans: Vec<Value>) -> Vec<Value> {
    spans
        .into_iter()
        .filter(|s| a(s, "dns.question.name").is_null())
        .collect()
}

/// Runs a traced command to success and returns its spans and stdout.
fn traced_run(program: &str, args: &[&str]) -> (Vec<Value>, String) {
    let tmp = TempDir::new("unix");
    let dump = tmp.path("spans.jsonl");
    let mut cmd = traced(program);
    cmd.args(args).env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(cmd, T);
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    (
        without_dns(read_spandump(&dump)),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The attributes every span over the Unix socket `path` has, and the ones
/// it must not have.
fn assert_unix_peer(span: &Value, path: &str) {
    assert_eq!(a(span, "network.transport"), "unix", "{span:#}");
    assert_eq!(a(span, "network.peer.address"), path, "{span:#}");
    assert!(a(span, "network.peer.port").is_null(), "{span:#}");
    assert!(a(span, "server.port").is_null(), "{span:#}");
}

/// Makes sure the local service is up (started if not) and that its Unix
/// socket exists.
fn ensure_socket(service: &str, port: u16, socket: &str) {
    ensure_service(service, port);
    assert!(
        wait_for_unix_socket(Path::new(socket), Duration::from_secs(15)),
        "{service} does not listen on {socket}"
    );
}

fn wait_for_unix_socket(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if UnixStream::connect(path).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// Spawns a server and waits for its Unix socket (a [`Server`] without a port).
fn spawn_on_socket(mut cmd: Command, path: &Path) -> Server {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn server");
    if !wait_for_unix_socket(path, Duration::from_secs(15)) {
        let _ = child.kill();
        let out = child.wait_with_output().ok();
        panic!(
            "server did not listen on {}; stderr: {}",
            path.display(),
            out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default()
        );
    }
    Server { child, port: 0 }
}

/// The first line: psql on its default socket gives its span,
/// with `db.*` as over TCP.
#[test]
fn psql_on_its_default_unix_socket_gives_a_span_per_statement() {
    ensure_socket("postgresql", 5432, PG_SOCKET);
    let (spans, out) = traced_run(
        "psql",
        &[
            "-U",
            "postgres",
            "-d",
            "test",
            "-tA",
            "-c",
            "select 1",
            "-c",
            "select count(*) from pg_class where relname = 'lumigo'",
        ],
    );
    assert_eq!(out, "1\n0\n");
    assert_eq!(spans.len(), 2, "one span per statement: {spans:#?}");
    let one = &spans[0];
    assert_eq!(one["kind"], "SpanKind.CLIENT");
    assert_eq!(one["name"], "SELECT");
    assert_eq!(a(one, "db.system.name"), "postgresql");
    assert_eq!(a(one, "db.namespace"), "test");
    assert_eq!(a(one, "db.query.text"), "select ?");
    assert_eq!(a(one, "server.address"), PG_SOCKET);
    assert_unix_peer(one, PG_SOCKET);
    let two = &spans[1];
    assert_eq!(two["name"], "SELECT pg_class");
    assert_eq!(a(two, "db.collection.name"), "pg_class");
    assert_unix_peer(two, PG_SOCKET);
}

#[test]
fn mariadb_client_on_its_default_unix_socket_gives_a_span_per_statement() {
    ensure_socket("mariadb", 3306, MARIADB_SOCKET);
    let tmp = TempDir::new("unix-mariadb");
    let dump = tmp.path("m.jsonl");
    let mut cmd = traced("mariadb");
    cmd.args([
        "-uroot",
        "test",
        "-e",
        "select 'x' as a; select * from lumigo_missing_table",
    ])
    .env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(cmd, T);
    assert!(!out.status.success(), "the second statement fails");
    let spans = without_dns(read_spandump(&dump));
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let ok = &spans[0];
    assert_eq!(ok["name"], "SELECT");
    assert_eq!(a(ok, "db.system.name"), "mariadb");
    assert_eq!(a(ok, "db.namespace"), "test");
    assert_eq!(a(ok, "db.query.text"), "select ? as a");
    assert_eq!(a(ok, "server.address"), MARIADB_SOCKET);
    assert_unix_peer(ok, MARIADB_SOCKET);
    let err = &spans[1];
    assert_eq!(err["name"], "SELECT lumigo_missing_table");
    assert_eq!(a(err, "error.type"), "1146");
    assert_eq!(err["status"]["status_code"], "ERROR");
}

#[test]
fn psycopg_and_pymysql_given_a_unix_socket_are_traced() {
    ensure_socket("postgresql", 5432, PG_SOCKET);
    ensure_socket("mariadb", 3306, MARIADB_SOCKET);
    assert!(python_has("psycopg"), "psycopg 3 is required");
    assert!(python_has("pymysql"), "PyMySQL is required");
    let script = app().display().to_string();

    let (spans, out) = traced_run("python3", &[&script, "psycopg", PG_SOCKET_DIR]);
    assert_eq!(out, "42\n");
    let q = spans
        .iter()
        .find(|s| a(s, "db.query.text") == "select ? + $1 as x")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(a(q, "db.system.name"), "postgresql");
    assert_eq!(a(q, "server.address"), PG_SOCKET);
    assert_unix_peer(q, PG_SOCKET);

    let (spans, out) = traced_run("python3", &[&script, "pymysql", MARIADB_SOCKET]);
    assert_eq!(out, "42\n");
    let q = spans
        .iter()
        .find(|s| a(s, "db.query.text") == "select ? + ?")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(a(q, "db.system.name"), "mariadb");
    assert_eq!(a(q, "server.address"), MARIADB_SOCKET);
    assert_unix_peer(q, MARIADB_SOCKET);
}

/// A second redis-server, listening only on a Unix socket.
#[test]
fn redis_cli_over_a_unix_socket() {
    assert!(have("redis-server"), "redis-server is required");
    let tmp = TempDir::new("unix-redis");
    let sock = tmp.path("redis.sock");
    let mut server = Command::new("redis-server");
    server.args([
        "--port",
        "0",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
    ]);
    server.arg("--unixsocket").arg(&sock);
    server.arg("--dir").arg(&tmp.0);
    let mut server = spawn_on_socket(server, &sock);

    let path = sock.display().to_string();
    let (spans, out) = traced_run("redis-cli", &["-s", &path, "set", "lumigo:unix", "secret"]);
    assert_eq!(out.trim(), "OK");
    let (get, out) = traced_run("redis-cli", &["-s", &path, "get", "lumigo:unix"]);
    assert_eq!(out.trim(), "secret");
    server.stop();

    assert_eq!(spans.len(), 1, "{spans:#?}");
    let set = &spans[0];
    assert_eq!(set["name"], "SET");
    assert_eq!(a(set, "db.system.name"), "redis");
    assert_eq!(a(set, "db.query.text"), "SET lumigo:unix ?");
    assert_eq!(a(set, "server.address"), path.as_str());
    assert_unix_peer(set, &path);
    assert_eq!(get.len(), 1, "{get:#?}");
    assert_eq!(get[0]["name"], "GET");
    assert_unix_peer(&get[0], &path);
}

/// curl → nginx → (Unix socket) → a traced Python HTTP server, which runs
/// a PostgreSQL query over PostgreSQL's Unix socket for each request.
struct ProxyChain {
    spans: Vec<Value>,
    app_socket: String,
}

fn proxy_chain() -> ProxyChain {
    assert!(have("nginx"), "nginx is required");
    assert!(python_has("psycopg"), "psycopg 3 is required");
    ensure_socket("postgresql", 5432, PG_SOCKET);
    let tmp = TempDir::new("unix-proxy");
    let dump = tmp.path("spans.jsonl");
    let app_socket = tmp.path("app.sock");

    let mut py = traced("python3");
    py.arg(app())
        .arg("http-server")
        .arg(&app_socket)
        .arg(PG_SOCKET_DIR);
    py.env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_SERVICE_NAME", "py-unix");
    let mut py = spawn_on_socket(py, &app_socket);

    let port = free_port();
    let conf = tmp.path("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nuser root;\nmaster_process on;\nworker_processes 1;\npid {pid};\nerror_log {err} warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n\
               client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n  fastcgi_temp_path {tmp}/fcgi;\n\
               uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n\
               server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://unix:{sock}:/; }} }}\n}}\n",
            pid = tmp.path("nginx.pid").display(),
            err = tmp.path("error.log").display(),
            tmp = tmp.0.display(),
            sock = app_socket.display(),
        ),
    )
    .unwrap();
    let mut nginx = traced("nginx");
    nginx.arg("-c").arg(&conf).arg("-p").arg(&tmp.0);
    nginx
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_SERVICE_NAME", "nginx");
    let mut nginx = Server::spawn(nginx, port);

    let mut curl = traced("curl");
    curl.args(["-s", "-f"])
        .arg(format!("http://127.0.0.1:{port}/hop"));
    curl.env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_SERVICE_NAME", "curl");
    let out = run(curl, T);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "answer 42\n");

    // curl CLIENT, nginx SERVER + CLIENT, Python SERVER + its transaction
    // (psycopg's BEGIN, SELECT, COMMIT).
    let spans = wait_spans(&dump, T, |s| without_dns(s.to_vec()).len() >= 7);
    nginx.stop();
    py.stop();
    ProxyChain {
        spans: without_dns(spans),
        app_socket: app_socket.display().to_string(),
    }
}

impl ProxyChain {
    fn find(&self, svc: &str, kind: &str, name: &str) -> &Value {
        self.spans
            .iter()
            .find(|x| service(x) == svc && x["kind"] == kind && x["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} span from {svc}: {:#?}", self.spans))
    }
}

#[test]
fn nginx_proxying_to_a_unix_socket_upstream_is_one_trace() {
    let chain = proxy_chain();
    let spans = &chain.spans;
    assert_eq!(spans.len(), 7, "{spans:#?}");
    let curl_client = chain.find("curl", "SpanKind.CLIENT", "GET");
    let nginx_server = chain.find("nginx", "SpanKind.SERVER", "GET");
    let nginx_client = chain.find("nginx", "SpanKind.CLIENT", "GET");
    let py_server = chain.find("py-unix", "SpanKind.SERVER", "GET");
    let py_query = chain.find("py-unix", "SpanKind.CLIENT", "SELECT");

    let trace = trace_id(curl_client);
    for sp in spans {
        assert_eq!(trace_id(sp), trace, "one trace: {spans:#?}");
    }
    assert_eq!(parent_id(nginx_server), Some(span_id(curl_client)));
    // In-process parents over Unix sockets both ways: every statement run
    // while serving a request on a Unix socket is that request's child.
    for sp in spans
        .iter()
        .filter(|s| service(s) == "py-unix" && s["kind"] == "SpanKind.CLIENT")
    {
        assert_eq!(parent_id(sp), Some(span_id(py_server)), "{sp:#}");
    }
    // nginx CLIENT → nginx SERVER and upstream SERVER → nginx CLIENT: see
    // the ignored test below.

    // nginx's upstream request, over the Unix socket.
    assert_eq!(a(nginx_client, "url.path"), "/hop");
    assert_eq!(a(nginx_client, "http.response.status_code"), 200);
    assert_eq!(
        a(nginx_client, "server.address"),
        "localhost",
        "its Host header"
    );
    assert_unix_peer(nginx_client, &chain.app_socket);
    // The Python server: the peer is unnamed; the listening socket shows.
    assert_eq!(a(py_server, "url.path"), "/hop");
    assert_eq!(a(py_server, "network.transport"), "unix");
    assert_eq!(
        a(py_server, "network.local.address"),
        chain.app_socket.as_str()
    );
    assert!(
        a(py_server, "network.peer.address").is_null(),
        "{py_server:#}"
    );
    assert!(a(py_server, "client.port").is_null(), "{py_server:#}");
    assert!(a(py_server, "server.port").is_null(), "{py_server:#}");
    assert_eq!(a(py_query, "server.address"), PG_SOCKET);
    assert_unix_peer(py_query, PG_SOCKET);
    // The TCP hop keeps its ports and has no transport attribute.
    assert!(a(nginx_server, "network.transport").is_null());
    assert!(a(nginx_server, "server.port").is_i64());
}

/// The links through nginx: it forwards curl's `traceparent` unchanged
/// today, so its CLIENT span is taken for a child of curl's (the app's own
/// header) and the upstream SERVER span's parent is curl's CLIENT span too.
/// The same holds over TCP.
#[test]
fn nginx_client_span_links_its_server_span_to_the_unix_upstream() {
    let chain = proxy_chain();
    let nginx_server = chain.find("nginx", "SpanKind.SERVER", "GET");
    let nginx_client = chain.find("nginx", "SpanKind.CLIENT", "GET");
    let py_server = chain.find("py-unix", "SpanKind.SERVER", "GET");
    assert_eq!(parent_id(nginx_client), Some(span_id(nginx_server)));
    assert_eq!(parent_id(py_server), Some(span_id(nginx_client)));
}

/// Removes the one `traceparent` line a traced client inserted into a head.
fn strip_traceparent(head: &str) -> String {
    let lines: Vec<&str> = head.split("\r\n").collect();
    let inserted: Vec<&&str> = lines
        .iter()
        .filter(|l| l.to_ascii_lowercase().starts_with("traceparent: 00-"))
        .collect();
    assert_eq!(inserted.len(), 1, "exactly one traceparent line: {head:?}");
    lines
        .iter()
        .filter(|l| !l.to_ascii_lowercase().starts_with("traceparent:"))
        .copied()
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// fds passed with `SCM_RIGHTS` over traced Unix stream connections, both
/// ways, under an HTTP exchange (the request carrying the inserted
/// `traceparent`) and under raw bytes: the app's bytes and working fds
/// arrive as without tracing.
#[test]
fn fds_passed_with_scm_rights_arrive_unchanged_under_tracing() {
    let tmp = TempDir::new("unix-scm");
    let sock = tmp.path("scm.sock");
    let script = app().display().to_string();
    let path = sock.display().to_string();
    let (spans, out) = traced_run("python3", &[&script, "scm-rights", &path]);
    let got: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));

    let request = "GET /with-fd HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(got["client_sent"], request.len(), "the app's own count");
    let head = got["server_got_head"].as_str().unwrap_or_default();
    assert_eq!(strip_traceparent(head), request);
    assert_eq!(got["server_got_fd_content"], "file from the client");
    let reply = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npong";
    assert_eq!(got["server_sent"], reply.len());
    assert_eq!(got["client_got"], reply);
    assert_eq!(got["client_got_fd_content"], "file from the server");

    let raw = "000000 0a 7261772d6279746573 fe".replace(' ', "");
    assert_eq!(got["raw_client_sent"], raw.len() / 2);
    assert_eq!(got["raw_server_got"], raw);
    assert_eq!(got["raw_server_fd_content"], "raw file");
    assert_eq!(got["raw_client_got"], "0001726177206261636bff");
    assert_eq!(got["raw_client_fd_content"], "raw file");

    // The HTTP exchange was traced on both ends, as one trace.
    let client = spans
        .iter()
        .find(|s| s["kind"] == "SpanKind.CLIENT")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    let server = spans
        .iter()
        .find(|s| s["kind"] == "SpanKind.SERVER")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(spans.len(), 2, "raw bytes make no span: {spans:#?}");
    assert_eq!(parent_id(server), Some(span_id(client)));
    assert_eq!(trace_id(server), trace_id(client));
    assert!(
        head.contains(span_id(client).trim_start_matches("0x")),
        "the inserted line names the client span"
    );
    assert_unix_peer(client, &path);
    assert_eq!(a(server, "network.local.address"), path.as_str());
}

/// An abstract-namespace socket (leading NUL) is named `@name`; with no
/// Host header, that name is the server's address on both ends.
#[test]
fn abstract_unix_socket_names_are_shown_readably() {
    let script = app().display().to_string();
    let name = format!("lumigo-test-abstract-{}", std::process::id());
    let (spans, out) = traced_run("python3", &[&script, "abstract", &name]);
    assert!(out.ends_with("\r\n\r\nok\n"), "{out:?}");
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let shown = format!("@{name}");
    let client = spans
        .iter()
        .find(|s| s["kind"] == "SpanKind.CLIENT")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    let server = spans
        .iter()
        .find(|s| s["kind"] == "SpanKind.SERVER")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(a(client, "url.path"), "/abstract");
    assert_eq!(a(client, "server.address"), shown.as_str());
    assert!(
        a(client, "url.full").is_null(),
        "no host to name: {client:#}"
    );
    assert_unix_peer(client, &shown);
    assert_eq!(a(server, "server.address"), shown.as_str());
    assert_eq!(a(server, "network.local.address"), shown.as_str());
    assert!(a(server, "server.port").is_null(), "{server:#}");
    assert_eq!(parent_id(server), Some(span_id(client)));
}

#[test]
fn datagram_and_seqpacket_unix_sockets_stay_untraced() {
    let tmp = TempDir::new("unix-dgram");
    let script = app().display().to_string();
    let dir = tmp.0.display().to_string();
    let (spans, out) = traced_run("python3", &[&script, "dgram-seqpacket", &dir]);
    assert_eq!(out, "True\nTrue\n", "bytes unchanged");
    assert!(spans.is_empty(), "{spans:#?}");
}
