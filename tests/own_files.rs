//! Files and descriptors of our own among the app's, with real programs
//! under the real launcher: the span dump cannot be pointed elsewhere by
//! another user (issue 11, item 1), the app closing or replacing our
//! descriptors never makes us touch its files or sockets (item 4), and a
//! server whose workers drop privileges still gets its spans dumped (item 5).

#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;
mod support;

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

const T: Duration = Duration::from_secs(60);

/// Runs `sh -c script` as user `nobody`.
fn as_nobody(script: &str) {
    let status = Command::new("sh")
        .args(["-c", script])
        .uid(NOBODY)
        .gid(NOBODY)
        .status()
        .expect("run sh as nobody");
    assert!(status.success(), "as nobody: {script}");
}

fn curl_with_dump(dump: &Path, port: u16) -> std::process::Output {
    let mut cmd = traced_with_flags(&[OsStr::new("--spandump"), dump.as_os_str()], "curl");
    cmd.args(["-s", "-w", " %{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/len/5"));
    run(cmd, T)
}

#[test]
fn span_dump_path_hijack_by_another_user_is_refused_with_a_warning() {
    if !is_root() {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let server = http_server();
    // A shared, sticky, world-writable directory (like /tmp), and a file
    // only root may change.
    let shared = TempDir::new("shared-dir");
    std::fs::set_permissions(&shared.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let private = TempDir::new("root-only");
    let victim = private.path("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let planted_target = private.path("created-by-root");

    // `nobody` plants a symbolic link to the victim, a dangling one into a
    // root-only directory, and a world-writable file of its own.
    let link = shared.path("d.jsonl");
    let dangling = shared.path("dangling.jsonl");
    let open_file = shared.path("open.jsonl");
    as_nobody(&format!(
        "ln -s {} {} && ln -s {} {} && umask 0 && : > {} && chmod 666 {}",
        victim.display(),
        link.display(),
        planted_target.display(),
        dangling.display(),
        open_file.display(),
        open_file.display(),
    ));

    let untraced = Command::new("curl")
        .args(["-s", "-w", " %{http_code}"])
        .arg(format!("http://127.0.0.1:{}/len/5", server.port))
        .output()
        .unwrap();
    for (dump, reason) in [
        (&link, "symbolic link"),
        (&dangling, "symbolic link"),
        (&open_file, "belongs to uid 65534"),
    ] {
        let out = curl_with_dump(dump, server.port);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), untraced.status.code(), "{stderr}");
        assert_eq!(out.stdout, untraced.stdout, "the app's output is unchanged");
        let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("span dump")).collect();
        assert_eq!(warnings.len(), 1, "one warning: {stderr}");
        assert!(
            warnings[0].contains(&dump.display().to_string()) && warnings[0].contains(reason),
            "says where and why: {stderr}"
        );
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert!(!planted_target.exists(), "no file created through a link");
    assert_eq!(std::fs::read_to_string(&open_file).unwrap(), "");
    assert_eq!(std::fs::metadata(&open_file).unwrap().uid(), NOBODY);

    // The same directory, a path nobody planted: spans are written, 0600.
    let fresh = shared.path("fresh.jsonl");
    let out = curl_with_dump(&fresh, server.port);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("span dump"),
        "{out:?}"
    );
    let spans = wait_spans(&fresh, T, |s| !of_kind(s, "SpanKind.CLIENT").is_empty());
    let client = of_kind(&spans, "SpanKind.CLIENT");
    assert_eq!(client.len(), 1, "{spans:#?}");
    assert_eq!(attr(client[0], "url.path"), "/len/5");
    let meta = std::fs::metadata(&fresh).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), 0);
}

/// A server that sends a banner to the first client, then keeps everything
/// it receives until the client closes.
fn banner_server() -> (u16, std::sync::mpsc::Receiver<Vec<u8>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"BANNER\n").unwrap();
        let mut got = Vec::new();
        let _ = conn.read_to_end(&mut got);
        let _ = tx.send(got);
    });
    (port, rx)
}

fn takeover_app(http_port: u16, mode: &str, target: &str) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/fd_takeover.py");
    let mut cmd = traced("python3");
    cmd.arg(script)
        .arg(http_port.to_string())
        .arg(mode)
        .arg(target);
    cmd
}

/// The CLIENT spans of the app's requests for `/len/N`, one per path, each
/// with its own span id.
fn check_client_spans(paths: &[&str], spans: &[(String, String, String)]) {
    for path in paths {
        let found: Vec<_> = spans.iter().filter(|(p, _, _)| p == path).collect();
        assert_eq!(found.len(), 1, "{path}: {spans:?}");
        assert_eq!(found[0].1.len(), 32, "trace id of {path}");
    }
    let mut ids: Vec<&String> = spans.iter().map(|(_, _, id)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), spans.len(), "distinct span ids: {spans:?}");
}

fn dump_client_spans(dump: &Path) -> Vec<(String, String, String)> {
    let strip =
        |v: &serde_json::Value| v.as_str().unwrap_or("").trim_start_matches("0x").to_owned();
    read_spandump(dump)
        .iter()
        .filter(|s| kind(s) == "SpanKind.CLIENT")
        .map(|s| {
            (
                attr(s, "url.path").as_str().unwrap_or("").to_owned(),
                strip(&s["context"]["trace_id"]),
                strip(&s["context"]["span_id"]),
            )
        })
        .collect()
}

fn app_closing_our_fds_keeps_its_file_and_our_dump(mode: &str) {
    let server = http_server();
    let dir = TempDir::new("fd-takeover");
    let dump = dir.path("spans.jsonl");
    let app_file = dir.path("app.txt");
    let mut cmd = takeover_app(server.port, mode, &format!("file:{}", app_file.display()));
    cmd.env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "app-1\napp-2\n");
    assert_eq!(std::fs::read(&app_file).unwrap(), b"app-1\napp-2\n");
    let spans = wait_spans(&dump, T, |s| of_kind(s, "SpanKind.CLIENT").len() >= 3);
    assert!(!spans.is_empty());
    check_client_spans(&["/len/1", "/len/2", "/len/3"], &dump_client_spans(&dump));
}

#[test]
fn app_closerange_and_reused_fd_never_receive_span_dump_json() {
    app_closing_our_fds_keeps_its_file_and_our_dump("closerange");
}

#[test]
fn app_close_range_over_our_fds_never_makes_us_write_into_its_file() {
    app_closing_our_fds_keeps_its_file_and_our_dump("closeall");
}

#[test]
fn app_closefrom_never_makes_us_write_span_dump_json_into_its_file() {
    app_closing_our_fds_keeps_its_file_and_our_dump("closefrom");
}

/// Our span dump closed by a raw system call no hook sees: the write fails
/// with EBADF, the number is forgotten, the file reopened.
#[test]
fn raw_close_range_syscall_under_our_span_dump_never_stops_it() {
    app_closing_our_fds_keeps_its_file_and_our_dump("rawclose");
}

#[test]
fn app_dup2_onto_our_fds_never_receives_span_dump_json() {
    app_closing_our_fds_keeps_its_file_and_our_dump("replace");
}

fn app_closing_our_fds_keeps_its_socket_and_our_otlp_export(mode: &str) {
    let receiver = otlp_receiver::OtlpReceiver::start();
    let server = http_server();
    let (banner_port, received) = banner_server();
    let mut cmd = takeover_app(server.port, mode, &format!("tcp:{banner_port}"));
    cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url());
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "banner ok\n");
    let got = received.recv_timeout(T).expect("banner server finished");
    assert_eq!(
        String::from_utf8_lossy(&got),
        "app-1\napp-2\n",
        "the app's socket carried only the app's bytes"
    );
    let spans = receiver.wait_for(
        |s| {
            s.iter()
                .filter(|s| s.kind == otlp_receiver::SPAN_KIND_CLIENT)
                .count()
                >= 3
        },
        T,
    );
    let clients: Vec<(String, String, String)> = spans
        .iter()
        .filter(|s| s.kind == otlp_receiver::SPAN_KIND_CLIENT)
        .map(|s| {
            (
                s.attr("url.path").unwrap_or("").to_owned(),
                s.trace_id.clone(),
                s.span_id.clone(),
            )
        })
        .collect();
    check_client_spans(&["/len/1", "/len/2", "/len/3"], &clients);
}

#[test]
fn app_closerange_and_reused_fd_never_carry_otlp_export_traffic() {
    app_closing_our_fds_keeps_its_socket_and_our_otlp_export("closerange");
}

#[test]
fn app_close_range_over_our_sockets_never_makes_us_use_its_socket() {
    app_closing_our_fds_keeps_its_socket_and_our_otlp_export("closeall");
}

/// The app closes our sockets with a raw system call no hook sees: export
/// must neither abort the app (std's debug check on dropping a closed
/// descriptor) nor stop.
#[test]
fn raw_close_range_syscall_under_our_sockets_neither_aborts_nor_stops_export() {
    app_closing_our_fds_keeps_its_socket_and_our_otlp_export("rawclose");
}

#[test]
fn app_closefrom_never_makes_us_use_its_socket_for_otlp_export() {
    app_closing_our_fds_keeps_its_socket_and_our_otlp_export("closefrom");
}

#[test]
fn app_dup2_onto_our_sockets_never_carries_otlp_export_traffic() {
    app_closing_our_fds_keeps_its_socket_and_our_otlp_export("replace");
}

/// nginx started as root with its workers as `nobody`, the span dump in a
/// directory only root may enter: the workers' spans still reach it (the
/// dump is opened before the worker drops privileges, and inherited).
#[test]
fn privilege_dropping_nginx_workers_write_their_spans_to_a_root_only_dump() {
    if !is_root() {
        eprintln!("skipped: nginx must start as root to switch its workers to nobody");
        return;
    }
    assert!(have("nginx"), "nginx is not installed");
    let tmp = TempDir::new("nginx-nobody");
    let port = free_port();
    let root = tmp.path("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), "hello\n").unwrap();
    let private = tmp.path("private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let dump = private.join("spans.jsonl");
    let conf = tmp.path("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nuser nobody nogroup;\nmaster_process on;\nworker_processes 2;\npid {pid};\nerror_log {err} warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n\
               client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n  fastcgi_temp_path {tmp}/fcgi;\n\
               uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n\
               server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n",
            pid = tmp.path("nginx.pid").display(),
            err = tmp.path("error.log").display(),
            tmp = tmp.0.display(),
            root = root.display(),
        ),
    )
    .unwrap();
    let mut cmd = traced_with_flags(&[OsStr::new("--spandump"), dump.as_os_str()], "nginx");
    cmd.arg("-c").arg(&conf).arg("-p").arg(&tmp.0);
    let mut server = Server::spawn(cmd, port);

    // 20 requests, each in its own trace, with a known parent.
    let mut sent = Vec::new();
    for i in 0..20u32 {
        let trace = format!("{:024x}{:08x}", 0xabcdef_u64, i + 1);
        let parent = format!("{:016x}", 0x1000 + u64::from(i));
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
            .arg(format!("traceparent: 00-{trace}-{parent}-01"))
            .arg(format!("http://127.0.0.1:{port}/index.html"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
        sent.push((trace, parent));
    }
    let spans = wait_spans(&dump, T, |s| of_kind(s, "SpanKind.SERVER").len() >= 20);
    let master = server.child.id();
    server.stop();
    let servers = of_kind(&spans, "SpanKind.SERVER");
    assert_eq!(servers.len(), 20, "{spans:#?}");
    let hex = |v: &serde_json::Value| v.as_str().unwrap_or("").trim_start_matches("0x").to_owned();
    let mut span_ids = Vec::new();
    for (trace, parent) in &sent {
        let found: Vec<_> = servers
            .iter()
            .filter(|s| hex(&s["context"]["trace_id"]) == *trace)
            .collect();
        assert_eq!(found.len(), 1, "trace {trace}: {servers:#?}");
        let s = found[0];
        assert_eq!(hex(&s["parent_id"]), *parent, "parent of {trace}");
        assert_eq!(attr(s, "http.response.status_code"), 200);
        let pid = s["resource"]["attributes"]["process.pid"].as_i64().unwrap();
        assert_ne!(pid, i64::from(master), "spans come from the workers");
        span_ids.push(hex(&s["context"]["span_id"]));
    }
    span_ids.sort();
    span_ids.dedup();
    assert_eq!(span_ids.len(), 20, "each span has its own id");
    let meta = std::fs::metadata(&dump).unwrap();
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (0, 0o600));
}
