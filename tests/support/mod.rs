//! Helpers for the integration tests: building lumigo-run, running real
//! programs under it, waiting for servers, reading span dumps.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// `target/<profile>/`, where cargo put the test binary's siblings.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe path");
    // target/<profile>/deps/<test>-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("target profile dir")
        .to_path_buf()
}

/// Paths of the built launcher and preload library (built once per test run).
pub struct Binaries {
    pub launcher: PathBuf,
    pub library: PathBuf,
}

pub fn binaries() -> &'static Binaries {
    static BINS: OnceLock<Binaries> = OnceLock::new();
    BINS.get_or_init(|| {
        let dir = target_dir();
        let profile = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_owned();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-q", "-p", "lumigo-run", "-p", "lumigo-preload"]);
        cmd.args(["-p", "lumigo-transport"]);
        if profile == "release" {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(
            status.success(),
            "building lumigo-run and the preload library failed"
        );
        let b = Binaries {
            launcher: dir.join("lumigo-run"),
            library: dir.join("liblumigo_preload.so"),
        };
        assert!(b.launcher.exists(), "{} missing", b.launcher.display());
        assert!(b.library.exists(), "{} missing", b.library.display());
        let transport = dir.join("liblumigo_transport.so");
        assert!(transport.exists(), "{} missing", transport.display());
        install_hint_scripts(&dir);
        b
    })
}

/// Puts the runtime hint scripts beside the built library, where
/// scripts/package.sh puts them in the installed tree (the launcher adds
/// them from there).
fn install_hint_scripts(dir: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("preload/runtimes");
    for rel in [
        "node/lumigo-hint.js",
        "python/sitecustomize.py",
        "python/_lumigo_asyncio.py",
    ] {
        let to = dir.join(rel);
        std::fs::create_dir_all(to.parent().expect("a directory")).expect("hint script directory");
        // Written beside, then renamed: a concurrent test binary never sees half a file.
        let tmp = dir.join(format!("{rel}.{}", std::process::id()));
        std::fs::copy(src.join(rel), &tmp).expect("copy a hint script");
        std::fs::rename(&tmp, &to).expect("install a hint script");
    }
}

/// True if a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("lumigo-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP port free right now on 127.0.0.1, for a server the test starts.
///
/// Taken above the kernel's ephemeral range (`ip_local_port_range`, 32768 to
/// 60999 by default), so that between this call and the server's `bind` no
/// other socket of a concurrent test (a client's `connect`, a `bind` to port
/// 0) can be given the same port; each port is handed out once per test
/// process. Falls back to a kernel-chosen port if that range is exhausted.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 61_000;
    const SPAN: u16 = 4_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Start where another test binary of this run is unlikely to be.
    let offset = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = FIRST + (offset + n % SPAN) % SPAN;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Waits until something listens on 127.0.0.1:port.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// A `lumigo-run` command with a clean, test-controlled tracing environment.
pub fn traced(program: &str) -> Command {
    let b = binaries();
    let mut cmd = Command::new(&b.launcher);
    for var in [
        "LD_PRELOAD",
        "LUMIGO_TRACER_TOKEN",
        "LUMIGO_ENDPOINT",
        "LUMIGO_DEBUG_SPANDUMP",
        "LUMIGO_SWITCH_OFF",
        "LUMIGO_DEBUG",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SERVICE_NAME",
        "TRACEPARENT",
        "TRACESTATE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("OTEL_BSP_SCHEDULE_DELAY", "100");
    cmd.arg("--").arg(program);
    cmd
}

/// [`traced`], with launcher flags (`--spandump PATH`…) before the command.
pub fn traced_with_flags(flags: &[&std::ffi::OsStr], program: &str) -> Command {
    let base = traced(program);
    let mut cmd = Command::new(base.get_program());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.args(flags).arg("--").arg(program);
    cmd
}

/// Runs a command to completion with a time limit; panics on timeout.
pub fn run(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A test that copies an executable and runs it can meet ETXTBSY: another
    // test thread's fork inherited the copy's write descriptor until its
    // exec. That passes in moments; retry.
    let mut tries = 0;
    let child = loop {
        match cmd.spawn() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            other => break other.expect("spawn"),
        }
    };
    wait_output(child, timeout)
}

/// Collects a child's output (reading its pipes as it runs, so a chatty
/// child never blocks), killing it if it outlives `timeout`.
pub fn wait_output(child: Child, timeout: Duration) -> Output {
    let pid = child.id() as i32;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(timeout).is_err() {
            // SAFETY: signalling our own child; it is still unreaped, so the
            // pid cannot have been reused.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            return true;
        }
        false
    });
    let out = child.wait_with_output().expect("output");
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    assert!(
        !timed_out,
        "command timed out after {timeout:?}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A child process killed (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Server {
    pub fn spawn(mut cmd: Command, port: u16) -> Server {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn server");
        if !wait_for_port(port, Duration::from_secs(15)) {
            let _ = child.kill();
            let out = child.wait_with_output().ok();
            panic!(
                "server did not listen on {port}; stderr: {}",
                out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default()
            );
        }
        Server { child, port }
    }

    /// Stops the server gracefully (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every span in a span-dump file (one JSON object per line).
pub fn read_spandump(path: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    // A line still being written by a live process (no line feed yet) is
    // not a span yet: the next read has it whole.
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("bad span dump line {l:?}: {e}"))
        })
        .collect()
}

/// Polls a span dump until `pred` holds or the timeout passes.
pub fn wait_spans(path: &Path, timeout: Duration, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let spans = read_spandump(path);
        if pred(&spans) || Instant::now() >= deadline {
            return spans;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

pub fn kind(span: &Value) -> &str {
    span["kind"].as_str().unwrap_or("")
}

/// The spans of one kind.
pub fn of_kind<'a>(spans: &'a [Value], k: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| kind(s) == k).collect()
}

/// Makes sure a local service answers on 127.0.0.1:`port`, starting it with
/// the machine's own command when it is not running (a fresh CI machine may
/// not have it up). Panics with the reason if it cannot be started.
pub fn ensure_service(name: &str, port: u16) {
    if TcpStream::connect(("127.0.0.1", port)).is_ok() {
        return;
    }
    let start = match name {
        "redis" => "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save '' \
                    --appendonly no --dir /tmp --logfile /tmp/lumigo-test-redis.log",
        "postgresql" => "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | head -1) main start",
        "mariadb" => "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql",
        other => panic!("unknown service {other}"),
    };
    let out = Command::new("sh")
        .args(["-c", start])
        .output()
        .expect("run sh");
    assert!(
        wait_for_port(port, Duration::from_secs(30)),
        "{name} is not running on port {port} and could not be started ({}): {}",
        start,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// True if python3 can import `module`.
pub fn python_has(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A self-signed certificate for `localhost` and 127.0.0.1, made at test
/// time: (cert, key). It is its own CA, so a client trusts it by taking the
/// cert file as its CA file (Python `cafile`, Ruby `ca_file`, curl
/// `--cacert`...), and hostname checks pass on either name.
pub fn certificate(tmp: &TempDir) -> (PathBuf, PathBuf) {
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
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
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

/// A private CA made at test time, with a server certificate for
/// `localhost` and 127.0.0.1 and a client certificate, both signed by it
/// (PEM files; keys unencrypted).
pub struct PrivateCa {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(args: &[&str], tmp: &TempDir) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(&tmp.0)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// See [`PrivateCa`]. Files are made in `tmp`.
pub fn private_ca(tmp: &TempDir) -> PrivateCa {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=lumigo-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        tmp,
    );
    for (name, ext) in [
        (
            "server",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "client",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        std::fs::write(tmp.path(&format!("{name}.ext")), ext).expect("write extensions");
        openssl(
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-subj", &format!("/CN={name}"),
                "-keyout", &format!("{name}.key"), "-out", &format!("{name}.csr"),
            ],
            tmp,
        );
        openssl(
            &[
                "x509", "-req", "-in", &format!("{name}.csr"), "-CA", "ca.pem", "-CAkey",
                "ca.key", "-CAcreateserial", "-days", "1", "-extfile", &format!("{name}.ext"),
                "-out", &format!("{name}.pem"),
            ],
            tmp,
        );
    }
    PrivateCa {
        ca: tmp.path("ca.pem"),
        server_cert: tmp.path("server.pem"),
        server_key: tmp.path("server.key"),
        client_cert: tmp.path("client.pem"),
        client_key: tmp.path("client.key"),
    }
}

pub fn span_id(span: &Value) -> &str {
    span["context"]["span_id"].as_str().unwrap_or("")
}

pub fn trace_id(span: &Value) -> &str {
    span["context"]["trace_id"].as_str().unwrap_or("")
}

pub fn parent_id(span: &Value) -> Option<&str> {
    span["parent_id"].as_str()
}

pub fn service(span: &Value) -> &str {
    span["resource"]["attributes"]["service.name"]
        .as_str()
        .unwrap_or("")
}

/// HTTP spans only (DNS lookups and database spans left out).
pub fn http_spans(spans: &[Value]) -> Vec<&Value> {
    spans
        .iter()
        .filter(|s| !attr(s, "http.request.method").is_null())
        .collect()
}

/// One traced HTTP exchange seen from both ends: the CLIENT span `service`
/// made for `method url_full`, and the SERVER span it caused. Checks the
/// client's method, URL, scheme and status, that the server span is the
/// client span's child by ids in the same trace (so the `traceparent` got
/// through), and that both ends agree on path and status. Returns
/// (client, server).
pub fn http_pair<'a>(
    spans: &'a [Value],
    service_name: &str,
    method: &str,
    url_full: &str,
    status: i64,
) -> (&'a Value, &'a Value) {
    let client = spans
        .iter()
        .find(|s| {
            kind(s) == "SpanKind.CLIENT"
                && service(s) == service_name
                && attr(s, "url.full") == url_full
        })
        .unwrap_or_else(|| panic!("no CLIENT span from {service_name} for {url_full}: {spans:#?}"));
    let scheme = url_full.split(':').next().unwrap_or("");
    assert_eq!(attr(client, "http.request.method"), method, "{client}");
    assert_eq!(attr(client, "url.scheme"), scheme, "{client}");
    assert_eq!(
        attr(client, "http.response.status_code"),
        status,
        "{client}"
    );
    let server = spans
        .iter()
        .find(|s| kind(s) == "SpanKind.SERVER" && parent_id(s) == Some(span_id(client)))
        .unwrap_or_else(|| {
            panic!("no SERVER span under {service_name}'s CLIENT span for {url_full}: {spans:#?}")
        });
    assert_eq!(trace_id(server), trace_id(client), "one trace");
    assert_eq!(attr(server, "http.request.method"), method, "{server}");
    assert_eq!(attr(server, "url.scheme"), scheme, "{server}");
    assert_eq!(
        attr(server, "url.path"),
        attr(client, "url.path"),
        "{server}"
    );
    assert_eq!(
        attr(server, "http.response.status_code"),
        status,
        "{server}"
    );
    (client, server)
}

/// Writes an nginx configuration into `tmp` (one worker, everything nginx
/// writes kept inside `tmp`, running as root as the tests do) with the given
/// `server { ... }` blocks, and returns its path. Start it with
/// `traced("nginx")` and `-c <conf> -p <tmp>`.
pub fn nginx_config(tmp: &TempDir, servers: &str) -> PathBuf {
    assert!(
        have("nginx"),
        "nginx is required (scripts/install-deps.sh installs it)"
    );
    let conf = tmp.path("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nuser root;\nmaster_process on;\nworker_processes 1;\npid {t}/nginx.pid;\n\
             error_log {t}/error.log warn;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n\
               fastcgi_temp_path {t}/fcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n\
               {servers}\n}}\n",
            t = tmp.0.display(),
        ),
    )
    .expect("write nginx.conf");
    conf
}

/// The uid of `nobody`, for tests that run a program as another user.
pub const NOBODY: u32 = 65534;

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// An untraced HTTP/1.1 server (`tests/apps/http11_server.py`) for traced
/// clients to call.
pub fn http_server() -> Server {
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/http11_server.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(port.to_string());
    Server::spawn(cmd, port)
}
