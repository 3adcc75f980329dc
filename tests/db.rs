//! Databases, caches and DNS from the wire: real clients (redis-cli,
//! redis-py, psql, psycopg, the mariadb client, PyMySQL,
//! mysql-connector-python, curl) against the real servers on this machine.
//! Each test starts the service it needs when it is not running.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

const T: Duration = Duration::from_secs(60);

fn a<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

/// Runs a traced command and returns its spans (DNS lookups left out).
fn traced_spans(program: &str, args: &[&str]) -> Vec<Value> {
    let tmp = TempDir::new("db");
    let dump = tmp.path("db.jsonl");
    let mut cmd = traced(program);
    cmd.args(args).env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(cmd, T);
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    read_spandump(&dump)
        .into_iter()
        .filter(|s| a(s, "dns.question.name").is_null())
        .collect()
}

fn clients_script(mode: &str) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/db_clients.py");
    vec![script.display().to_string(), mode.to_owned()]
}

fn py(mode: &str) -> Vec<Value> {
    let args = clients_script(mode);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    traced_spans("python3", &args)
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

#[test]
fn redis_cli_commands_and_an_error() {
    ensure_service("redis", 6379);
    let set = traced_spans(
        "redis-cli",
        &["-h", "127.0.0.1", "set", "lumigo:cli", "secret-value"],
    );
    assert_eq!(set.len(), 1, "{set:#?}");
    let s = &set[0];
    assert_eq!(s["kind"], "SpanKind.CLIENT");
    assert_eq!(s["name"], "SET");
    assert_eq!(a(s, "db.system.name"), "redis");
    assert_eq!(a(s, "db.operation.name"), "SET");
    assert_eq!(
        a(s, "db.query.text"),
        "SET lumigo:cli ?",
        "values never recorded"
    );
    assert_eq!(a(s, "db.namespace"), "0");
    assert_eq!(a(s, "server.address"), "127.0.0.1");
    assert_eq!(a(s, "server.port"), 6379);
    assert_eq!(s["status"]["status_code"], "UNSET");

    // INCR on a string value: an error reply.
    let err = traced_spans("redis-cli", &["-h", "127.0.0.1", "incr", "lumigo:cli"]);
    let incr = named(&err, "INCR");
    assert_eq!(incr.len(), 1, "{err:#?}");
    assert_eq!(incr[0]["status"]["status_code"], "ERROR");
    assert_eq!(a(incr[0], "error.type"), "ERR");

    // redis-cli -n 2 sends SELECT 2 first: the namespace follows it.
    let db2 = traced_spans(
        "redis-cli",
        &["-h", "127.0.0.1", "-n", "2", "get", "lumigo:cli"],
    );
    let get = named(&db2, "GET");
    assert_eq!(get.len(), 1, "{db2:#?}");
    assert_eq!(a(get[0], "db.namespace"), "2");
}

#[test]
fn redis_py_pipeline_gives_each_command_its_span() {
    ensure_service("redis", 6379);
    let spans = py("redis-pipeline");
    let names: Vec<&str> = spans
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .filter(|n| !n.starts_with("CLIENT"))
        .collect();
    assert_eq!(
        names,
        ["SET", "GET", "INCRBY", "LPUSH", "DEL"],
        "{spans:#?}"
    );
    let del = named(&spans, "DEL")[0];
    assert_eq!(a(del, "db.query.text"), "DEL lumigo:t:a lumigo:t:l");
}

#[test]
fn redis_pubsub_publish_is_a_producer_and_messages_are_consumers() {
    ensure_service("redis", 6379);
    let spans = py("redis-pubsub");
    let producers: Vec<&Value> = spans
        .iter()
        .filter(|s| s["kind"] == "SpanKind.PRODUCER")
        .collect();
    let consumers: Vec<&Value> = spans
        .iter()
        .filter(|s| s["kind"] == "SpanKind.CONSUMER")
        .collect();
    assert_eq!(producers.len(), 2, "{spans:#?}");
    assert_eq!(consumers.len(), 2, "{spans:#?}");
    for s in producers.iter().chain(&consumers) {
        assert_eq!(a(s, "messaging.destination.name"), "lumigo-chan");
        assert_eq!(a(s, "messaging.system"), "redis");
    }
    assert_eq!(named(&spans, "SUBSCRIBE").len(), 1);
    // What the app does while handling a message is the message's child:
    // each SET made then, on another connection, by its CONSUMER span's id.
    let sets = named(&spans, "SET");
    assert_eq!(sets.len(), 2, "{spans:#?}");
    let mut parents = Vec::new();
    for set in &sets {
        let consumer = consumers
            .iter()
            .find(|c| c["context"]["span_id"] == set["parent_id"])
            .unwrap_or_else(|| panic!("a SET with no CONSUMER parent: {spans:#?}"));
        assert_eq!(set["context"]["trace_id"], consumer["context"]["trace_id"]);
        parents.push(&set["parent_id"]);
    }
    assert_ne!(parents[0], parents[1], "one SET per message");
}

#[test]
fn psql_simple_queries_and_an_error_in_plain_text_and_over_tls() {
    ensure_service("postgresql", 5432);
    for sslmode in ["disable", "require"] {
        let conn = format!("host=127.0.0.1 user=postgres dbname=test sslmode={sslmode}");
        let spans = traced_spans(
            "psql",
            &[
                &conn,
                "-tA",
                "-c",
                "select count(*) from pg_class where relname = 'lumigo'",
            ],
        );
        let ok = spans
            .iter()
            .find(|s| s["name"] == "SELECT pg_class")
            .unwrap_or_else(|| panic!("sslmode={sslmode}: {spans:#?}"));
        assert_eq!(a(ok, "db.system.name"), "postgresql");
        assert_eq!(a(ok, "db.namespace"), "test");
        assert_eq!(a(ok, "db.collection.name"), "pg_class");
        assert_eq!(
            a(ok, "db.query.text"),
            "select count(*) from pg_class where relname = ?"
        );
        assert_eq!(a(ok, "server.port"), 5432);
        assert_eq!(spans.len(), 1, "one span, none from ciphertext: {spans:#?}");

        let tmp = TempDir::new("psql-err");
        let dump = tmp.path("e.jsonl");
        let mut cmd = traced("psql");
        cmd.args([&conn, "-tA", "-c", "select * from lumigo_missing_table"])
            .env("LUMIGO_DEBUG_SPANDUMP", &dump);
        let out = run(cmd, T);
        assert!(!out.status.success(), "psql reports the error itself");
        let spans = read_spandump(&dump);
        assert_eq!(spans.len(), 1, "{spans:#?}");
        assert_eq!(a(&spans[0], "error.type"), "42P01");
        assert_eq!(spans[0]["status"]["status_code"], "ERROR");
    }
}

#[test]
fn psycopg_extended_protocol_gives_a_span_per_execution() {
    ensure_service("postgresql", 5432);
    assert!(
        python_has("psycopg"),
        "psycopg 3 is required (scripts/install-deps.sh)"
    );
    let spans = py("pg-extended");
    let selects: Vec<&Value> = spans
        .iter()
        .filter(|s| a(s, "db.query.text") == "select $1::int + ? as x")
        .collect();
    assert_eq!(
        selects.len(),
        2,
        "a prepared statement executed twice: {spans:#?}"
    );
    let missing = spans
        .iter()
        .find(|s| s["name"] == "SELECT lumigo_missing_table")
        .expect("error span");
    assert_eq!(a(missing, "error.type"), "42P01");
    assert_eq!(a(missing, "db.response.status_code"), "42P01");
}

#[test]
fn mariadb_client_query_and_an_error() {
    ensure_service("mariadb", 3306);
    let tmp = TempDir::new("mariadb");
    let dump = tmp.path("m.jsonl");
    let mut cmd = traced("mariadb");
    cmd.args([
        "-h127.0.0.1",
        "-uroot",
        "test",
        "-e",
        "select 'x' as a; select * from lumigo_missing_table",
    ])
    .env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(cmd, T);
    assert!(!out.status.success(), "the second statement fails");
    let spans = read_spandump(&dump);
    let ok = named(&spans, "SELECT");
    assert_eq!(ok.len(), 1, "{spans:#?}");
    assert_eq!(a(ok[0], "db.system.name"), "mariadb");
    assert_eq!(a(ok[0], "db.namespace"), "test");
    assert_eq!(a(ok[0], "db.query.text"), "select ? as a");
    let err = named(&spans, "SELECT lumigo_missing_table");
    assert_eq!(err.len(), 1, "{spans:#?}");
    assert_eq!(a(err[0], "error.type"), "1146");
    assert_eq!(err[0]["status"]["status_code"], "ERROR");
}

#[test]
fn pymysql_and_a_server_side_prepared_statement() {
    ensure_service("mariadb", 3306);
    let spans = py("mysql-pymysql");
    let q = spans
        .iter()
        .find(|s| a(s, "db.query.text") == "select ? + ?")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(q["status"]["status_code"], "UNSET");
    assert_eq!(named(&spans, "SELECT lumigo_missing_table").len(), 1);

    assert!(
        python_has("mysql.connector"),
        "mysql-connector-python is required"
    );
    let spans = py("mysql-prepared");
    let prepare = named(&spans, "PREPARE");
    assert_eq!(prepare.len(), 1, "{spans:#?}");
    let execute = spans
        .iter()
        .find(|s| s["name"] == "SELECT" && a(s, "db.query.text") == "select ? + ?")
        .expect("the execute span carries the prepared text");
    assert_eq!(a(execute, "db.operation.name"), "SELECT");
}

/// A client that reads a large binary result set a packet at a time (two
/// reads per row, 80,000 records to the capture thread in well under a
/// second, with the server busy on the same two cores) loses no span:
/// records that find their ring full wait in the spill.
#[test]
fn a_large_result_set_read_a_packet_at_a_time_loses_no_span() {
    ensure_service("mariadb", 3306);
    assert!(
        python_has("mysql.connector"),
        "mysql-connector-python is required"
    );
    let tmp = TempDir::new("big");
    let dump = tmp.path("big.jsonl");
    let mut cmd = traced("python3");
    cmd.args(clients_script("mysql-big-binary"))
        .env("LUMIGO_DEBUG", "true")
        .env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(cmd, T);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "20000\n20000\n42\n");
    assert!(!stderr.contains("refused"), "{stderr}");
    let spans = read_spandump(&dump);
    let big: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "SELECT seq_1_to_20000")
        .collect();
    assert_eq!(big.len(), 2, "{stderr}\n{spans:#?}");
    assert!(big.iter().all(|s| s["status"]["status_code"] == "UNSET"));
    let last = spans
        .iter()
        .find(|s| a(s, "db.query.text") == "select ? + ?")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(last["status"]["status_code"], "UNSET");
}

#[test]
fn name_lookups_from_python_and_curl() {
    let host = String::from_utf8(Command::new("hostname").output().unwrap().stdout).unwrap();
    let host = host.trim();
    let tmp = TempDir::new("dns");
    let dump = tmp.path("dns.jsonl");
    let mut cmd = traced("python3");
    cmd.args([
        "-c",
        &format!(
            "import socket\nsocket.getaddrinfo('{host}', 80)\ntry:\n    socket.getaddrinfo('no-such-host.invalid', 80)\nexcept socket.gaierror:\n    pass"
        ),
    ])
    .env("LUMIGO_DEBUG_SPANDUMP", &dump);
    assert!(run(cmd, T).status.success());
    let mut curl = traced("curl");
    curl.args(["-s", "-o", "/dev/null", &format!("http://{host}:9/")])
        .env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let _ = run(curl, T); // connection refused: the lookup still happened
    let spans = read_spandump(&dump);
    let ok: Vec<&Value> = spans
        .iter()
        .filter(|s| a(s, "dns.question.name") == host)
        .collect();
    assert_eq!(
        ok.len(),
        2,
        "one lookup from python, one from curl: {spans:#?}"
    );
    assert!(ok
        .iter()
        .all(|s| a(s, "dns.answers.count").as_i64() >= Some(1)));
    let bad = spans
        .iter()
        .find(|s| a(s, "dns.question.name") == "no-such-host.invalid")
        .expect("failed lookup span");
    assert_eq!(a(bad, "error.type"), "EAI_NONAME");
    assert_eq!(bad["status"]["status_code"], "ERROR");
}

/// A query made while a request is served is a child of that request's
/// SERVER span, each of two requests its own, for a database parsed on the
/// app's thread (Redis) and for those parsed on the capture thread from
/// what the app's thread recorded (MySQL, PostgreSQL), whose connections
/// were opened before serving.
#[test]
fn a_query_made_while_serving_a_request_is_a_child_of_its_server_span() {
    for (db, service, port, system, name) in [
        ("redis", "redis", 6379, "redis", "GET"),
        ("mysql", "mariadb", 3306, "mariadb", "SELECT"),
        ("pg", "postgresql", 5432, "postgresql", "SELECT"),
    ] {
        ensure_service(service, port);
        let tmp = TempDir::new("served");
        let dump = tmp.path("served.jsonl");
        let port = free_port();
        let args = clients_script(&format!("served-{db}"));
        let mut cmd = traced("python3");
        cmd.args(&args)
            .arg(port.to_string())
            .env("LUMIGO_DEBUG_SPANDUMP", &dump);
        let mut server = Server::spawn(cmd, port);
        for path in ["/a", "/b"] {
            let mut curl = Command::new("curl");
            curl.args(["-s", "-o", "/dev/null"])
                .arg(format!("http://127.0.0.1:{port}{path}"));
            assert!(run(curl, T).status.success());
        }
        let queries = |s: &[Value]| {
            s.iter()
                .filter(|x| a(x, "db.system.name") == system && x["name"] == name)
                .count()
        };
        let spans = wait_spans(&dump, T, |s| queries(s) >= 2);
        server.stop();
        let servers: Vec<&Value> = spans
            .iter()
            .filter(|s| s["kind"] == "SpanKind.SERVER")
            .collect();
        let gets: Vec<&Value> = spans
            .iter()
            .filter(|s| a(s, "db.system.name") == system && s["name"] == name)
            .collect();
        assert_eq!((servers.len(), gets.len()), (2, 2), "{db}: {spans:#?}");
        for srv in &servers {
            let children: Vec<&&Value> = gets
                .iter()
                .filter(|g| g["parent_id"] == srv["context"]["span_id"])
                .collect();
            assert_eq!(children.len(), 1, "{db}: one query per request: {spans:#?}");
            assert_eq!(
                children[0]["context"]["trace_id"],
                srv["context"]["trace_id"]
            );
        }
    }
}

/// A value no test output may show (issue 14: a duplicate key's value
/// reached the span status).
const DB_SECRET: &str = "dup-QsecretQ-5150";

/// Server error messages keep their text but lose the values they quote:
/// PostgreSQL (a duplicate key, and a value that is not an integer) and
/// MariaDB (a duplicate entry). The statements come from a file, so no
/// value is on the command line either, and the whole dump is checked.
#[test]
fn database_error_statuses_keep_their_text_but_not_the_values() {
    ensure_service("postgresql", 5432);
    ensure_service("mariadb", 3306);
    let tmp = TempDir::new("db-errors");
    let sql = tmp.path("pg.sql");
    std::fs::write(
        &sql,
        format!(
            "create temp table lumigo_dup (email text primary key);\n\
             insert into lumigo_dup values ('{DB_SECRET}');\n\
             insert into lumigo_dup values ('{DB_SECRET}');\n\
             select '{DB_SECRET}'::int;\n"
        ),
    )
    .unwrap();
    let dump = tmp.path("pg.jsonl");
    let mut cmd = traced("psql");
    cmd.args([
        "host=127.0.0.1 user=postgres dbname=test sslmode=disable",
        "-f",
    ])
    .arg(&sql)
    .env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(cmd, T);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(DB_SECRET), "psql itself shows it: {stderr}");
    let spans = read_spandump(&dump);
    let errors: Vec<&Value> = spans
        .iter()
        .filter(|s| s["status"]["status_code"] == "ERROR")
        .collect();
    assert_eq!(errors.len(), 2, "{spans:#?}");
    assert_eq!(a(errors[0], "error.type"), "23505");
    assert_eq!(
        errors[0]["status"]["description"],
        "duplicate key value violates unique constraint \"lumigo_dup_pkey\"",
        "{:#}",
        errors[0]
    );
    assert_eq!(a(errors[1], "error.type"), "22P02");
    assert_eq!(
        errors[1]["status"]["description"], "invalid input syntax for type integer: \"?\"",
        "{:#}",
        errors[1]
    );
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(!text.contains(DB_SECRET), "{text}");

    let sql = tmp.path("my.sql");
    std::fs::write(
        &sql,
        format!(
            "create temporary table lumigo_dup (email varchar(64) primary key);\n\
             insert into lumigo_dup values ('{DB_SECRET}');\n\
             insert into lumigo_dup values ('{DB_SECRET}');\n"
        ),
    )
    .unwrap();
    let dump = tmp.path("my.jsonl");
    let mut cmd = traced("mariadb");
    cmd.args(["-h127.0.0.1", "-uroot", "test", "-e"])
        .arg(format!("source {}", sql.display()))
        .env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(cmd, T);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(DB_SECRET),
        "the client itself shows it: {stderr}"
    );
    let spans = read_spandump(&dump);
    let dup = spans
        .iter()
        .find(|s| a(s, "error.type") == "1062")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(
        dup["status"]["description"], "23000: Duplicate entry '?' for key 'PRIMARY'",
        "{dup:#}"
    );
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(!text.contains(DB_SECRET), "{text}");
}

/// A MariaDB server of the test's own, with TLS on (this machine's has it
/// off), on a free port; stopped when dropped.
struct TlsMariadb {
    _tmp: TempDir,
    server: Server,
}

fn tls_mariadb() -> TlsMariadb {
    for program in ["mariadbd", "mariadb-install-db", "openssl"] {
        assert!(have(program), "{program} is required");
    }
    let tmp = TempDir::new("mysql-tls");
    let (cert, key, data) = (tmp.path("cert.pem"), tmp.path("key.pem"), tmp.path("data"));
    let mut req = Command::new("openssl");
    req.args([
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
    ])
    .args(["-subj", "/CN=127.0.0.1", "-keyout"])
    .arg(&key)
    .arg("-out")
    .arg(&cert);
    assert!(run(req, T).status.success(), "a certificate");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut install = Command::new("mariadb-install-db");
    install
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg("--auth-root-authentication-method=normal");
    if root {
        install.arg("--user=root");
    }
    let out = run(install, T);
    assert!(out.status.success(), "mariadb-install-db: {out:?}");
    let port = free_port();
    let mut cmd = Command::new("mariadbd");
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--port={port}"))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--socket={}", tmp.path("sock").display()))
        .arg(format!("--ssl-cert={}", cert.display()))
        .arg(format!("--ssl-key={}", key.display()));
    if root {
        cmd.arg("--user=root");
    }
    let server = Server::spawn(cmd, port);
    TlsMariadb { _tmp: tmp, server }
}

/// MySQL through TLS: the plaintext the OpenSSL hooks see starts at the
/// client's login (the greeting and the TLS request went in the clear), and
/// gives the same spans as a connection in the clear. The mariadb client's
/// statements are children of `TRACEPARENT`, by ids; PyMySQL's are made too.
#[test]
fn mysql_through_tls_gives_a_span_per_statement() {
    let mut db = tls_mariadb();
    let port = db.server.port.to_string();
    let tmp = TempDir::new("mysql-tls-dump");
    let dump = tmp.path("spans.jsonl");
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let mut cli = traced("mariadb");
    cli.args(["-h127.0.0.1", "-uroot", "-P", &port, "--ssl"])
        .args([
            "--ssl-verify-server-cert=0",
            "--batch",
            "--skip-column-names",
        ])
        .args(["-e", "SELECT 41 + 1; SHOW STATUS LIKE 'Ssl_cipher'"])
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("TRACEPARENT", format!("00-{trace}-{parent}-01"));
    let out = run(cli, T);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("42") && stdout.contains("TLS"), "{stdout}");
    let script = format!(
        "import pymysql, ssl\n\
         ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE\n\
         c = pymysql.connect(host='127.0.0.1', port={port}, user='root', ssl=ctx)\n\
         cur = c.cursor(); cur.execute('SELECT 6 * 7'); print(cur.fetchone()[0])\n\
         cur.execute(\"SHOW STATUS LIKE 'Ssl_cipher'\"); print(cur.fetchone()[1])\n"
    );
    let mut py = traced("python3");
    py.args(["-c", &script]).env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(py, T);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("TLS"),
        "{out:?}"
    );
    db.server.stop();

    let spans = read_spandump(&dump);
    let text = |s: &Value| a(s, "db.query.text").as_str().unwrap_or("").to_owned();
    let cli: Vec<&Value> = spans
        .iter()
        .filter(|s| service(s) == "mariadb")
        .filter(|s| !text(s).is_empty())
        .collect();
    let select = cli
        .iter()
        .find(|s| text(s) == "SELECT ? + ?")
        .unwrap_or_else(|| panic!("the mariadb client's SELECT: {spans:#?}"));
    assert_eq!(a(select, "db.system.name"), "mariadb");
    assert_eq!(a(select, "server.port"), db.server.port);
    assert_eq!(trace_id(select), format!("0x{trace}"));
    assert_eq!(parent_id(select), Some(format!("0x{parent}").as_str()));
    assert!(
        cli.iter().any(|s| text(s).starts_with("SHOW")),
        "{spans:#?}"
    );
    let py = spans
        .iter()
        .find(|s| text(s) == "SELECT ? * ?")
        .unwrap_or_else(|| panic!("PyMySQL's SELECT: {spans:#?}"));
    assert_eq!(a(py, "server.port"), db.server.port);
    assert_eq!(py["kind"], "SpanKind.CLIENT");
}
