//! Libraries loaded with `RTLD_DEEPBIND` (PHP's extensions, libcurl with
//! them): their calls bind to libc ahead of `LD_PRELOAD`, and are traced
//! only because lumigo-run re-points their call slots after the load. And
//! the `dlopen`/`dlsym` hooks that make this possible must leave every
//! lookup the app does exactly as it was (RUNPATH, `$ORIGIN`, `RTLD_NEXT`).

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

/// Compiles C sources with `cc`; panics with the compiler's output.
fn cc(args: &[&str], sources: &[PathBuf], out: &Path) {
    let o = Command::new("cc")
        .args(args)
        .args(sources)
        .arg("-o")
        .arg(out)
        .output()
        .expect("run cc");
    assert!(
        o.status.success(),
        "cc {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn http_server(dump: &Path, port: u16) -> Server {
    let mut cmd = traced("python3");
    cmd.arg(app("http11_server.py"))
        .arg(port.to_string())
        .env("LUMIGO_DEBUG_SPANDUMP", dump)
        .env("OTEL_SERVICE_NAME", "server");
    Server::spawn(cmd, port)
}

fn tls_server(tmp: &TempDir, dump: &Path, port: u16) -> Server {
    let (cert, key) = (tmp.path("cert.pem"), tmp.path("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl: {out:?}");
    let mut cmd = traced("python3");
    cmd.arg(app("tls_server.py"))
        .arg(port.to_string())
        .arg(cert)
        .arg(key)
        .env("LUMIGO_DEBUG_SPANDUMP", dump)
        .env("OTEL_SERVICE_NAME", "server");
    Server::spawn(cmd, port)
}

/// The client's CLIENT span for `url`, checked with its status, and the
/// server's SERVER span its child by ids (the `traceparent` the client's
/// request carried names the client span).
fn check_exchange(spans: &[Value], client_service: &str, url: &str, status: i64) {
    let client = spans
        .iter()
        .find(|s| {
            kind(s) == "SpanKind.CLIENT"
                && s["resource"]["attributes"]["service.name"] == client_service
                && attr(s, "url.full") == url
        })
        .unwrap_or_else(|| panic!("no CLIENT span for {url} from {client_service}: {spans:#?}"));
    assert_eq!(attr(client, "http.response.status_code"), status);
    let server = spans
        .iter()
        .find(|s| {
            kind(s) == "SpanKind.SERVER"
                && s["resource"]["attributes"]["service.name"] == "server"
                && s["parent_id"] == client["context"]["span_id"]
        })
        .unwrap_or_else(|| panic!("no SERVER span under the CLIENT span for {url}: {spans:#?}"));
    assert_eq!(server["context"]["trace_id"], client["context"]["trace_id"]);
    assert_eq!(attr(server, "http.response.status_code"), status);
}

fn php_available() -> bool {
    let ok = have("php")
        && Command::new("php")
            .args(["-r", "exit(function_exists('curl_init') ? 0 : 1);"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "SKIPPED: php with the curl extension is not installed (scripts/install-deps.sh)"
        );
    }
    ok
}

fn run_php(dump: &Path, script: &str) -> String {
    let mut php = traced("php");
    php.args(["-r", script])
        .env("LUMIGO_DEBUG_SPANDUMP", dump)
        .env("OTEL_SERVICE_NAME", "php-client");
    let out = run(php, T);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// PHP loads its extensions with RTLD_DEEPBIND: libcurl's connect/send/recv
/// went straight to libc, and PHP's curl gave no span at all.
#[test]
fn php_curl_extension_loaded_with_rtld_deepbind_is_traced_over_http() {
    if !php_available() {
        return;
    }
    let tmp = TempDir::new("deepbind-php");
    let dump = tmp.path("spans.jsonl");
    let port = free_port();
    let mut server = http_server(&dump, port);
    let url = format!("http://127.0.0.1:{port}/status/201");
    let script = format!(
        r#"$c = curl_init("{url}");
curl_setopt($c, CURLOPT_RETURNTRANSFER, true);
curl_exec($c);
echo curl_getinfo($c, CURLINFO_HTTP_CODE), "\n";"#
    );
    assert_eq!(run_php(&dump, &script), "201\n");
    let spans = wait_spans(&dump, T, |s| s.len() >= 2);
    server.stop();
    check_exchange(&spans, "php-client", &url, 201);
}

#[test]
fn php_curl_extension_loaded_with_rtld_deepbind_is_traced_over_https() {
    if !php_available() {
        return;
    }
    let tmp = TempDir::new("deepbind-php-tls");
    let dump = tmp.path("spans.jsonl");
    let port = free_port();
    let mut server = tls_server(&tmp, &dump, port);
    let url = format!("https://localhost:{port}/len/7");
    let script = format!(
        r#"$c = curl_init("{url}");
curl_setopt($c, CURLOPT_RETURNTRANSFER, true);
curl_setopt($c, CURLOPT_SSL_VERIFYPEER, false);
curl_setopt($c, CURLOPT_SSL_VERIFYHOST, 0);
$body = curl_exec($c);
echo curl_getinfo($c, CURLINFO_HTTP_CODE), " ", $body, "\n";"#
    );
    assert_eq!(run_php(&dump, &script), "200 xxxxxxx\n");
    let spans = wait_spans(&dump, T, |s| s.len() >= 2);
    server.stop();
    check_exchange(&spans, "php-client", &url, 200);
}

/// PHP's own HTTP stream wrapper (no extension library involved).
#[test]
fn php_file_get_contents_over_http_is_traced() {
    if !php_available() {
        return;
    }
    let tmp = TempDir::new("deepbind-php-fgc");
    let dump = tmp.path("spans.jsonl");
    let port = free_port();
    let mut server = http_server(&dump, port);
    let url = format!("http://127.0.0.1:{port}/len/4");
    let script = format!(r#"echo file_get_contents("{url}"), "\n";"#);
    assert_eq!(run_php(&dump, &script), "xxxx\n");
    let spans = wait_spans(&dump, T, |s| s.len() >= 2);
    server.stop();
    check_exchange(&spans, "php-client", &url, 200);
}

/// A C program loading a plugin that speaks HTTP with connect/send/recv:
/// traced with RTLD_DEEPBIND (lazy binding; immediate binding with a
/// read-only GOT) as without it. Without RTLD_DEEPBIND nothing is patched.
#[test]
fn plugin_loaded_with_rtld_deepbind_is_traced() {
    let tmp = TempDir::new("deepbind-c");
    let lazy_lib = tmp.path("libhttpget.so");
    let now_lib = tmp.path("libhttpget_now.so");
    let loader = tmp.path("dl_loader");
    let src = app("dl/http_get.c");
    cc(
        &["-shared", "-fPIC", "-O1"],
        std::slice::from_ref(&src),
        &lazy_lib,
    );
    cc(
        &["-shared", "-fPIC", "-O1", "-Wl,-z,relro,-z,now"],
        &[src],
        &now_lib,
    );
    cc(&["-O1"], &[app("dl/dl_loader.c")], &loader);

    let dump = tmp.path("spans.jsonl");
    let port = free_port();
    let mut server = http_server(&dump, port);
    let cases = [
        ("deepbind-lazy", &lazy_lib, "/status/202", 202),
        ("deepbind-now", &now_lib, "/status/203", 203),
        ("plain", &lazy_lib, "/status/204", 204),
    ];
    for (mode, lib, path, status) in cases {
        let mut cmd = traced(loader.to_str().unwrap());
        cmd.arg(lib)
            .arg(mode)
            .arg(port.to_string())
            .arg(path)
            .env("LUMIGO_DEBUG_SPANDUMP", &dump)
            .env("LUMIGO_DEBUG", "true")
            .env("OTEL_SERVICE_NAME", format!("loader-{mode}"));
        let out = run(cmd, T);
        assert!(out.status.success(), "{mode}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{status}\n"));
        let log = String::from_utf8_lossy(&out.stderr);
        let patched = log.contains("call slots of") && log.contains(lib.to_str().unwrap());
        assert_eq!(patched, mode != "plain", "{mode}: {log}");
    }
    let spans = wait_spans(&dump, T, |s| s.len() >= 6);
    server.stop();
    for (mode, _, path, status) in cases {
        let url = format!("http://127.0.0.1:{port}{path}");
        check_exchange(&spans, &format!("loader-{mode}"), &url, status);
    }
}

/// The dlopen/dlsym hooks jump to glibc with the app's return address, so
/// glibc still resolves for the real caller: the program's RUNPATH and
/// `$ORIGIN`, a deep-bound library's own RUNPATH, `RTLD_NEXT`.
#[test]
fn dlopen_and_dlsym_still_resolve_for_their_real_caller() {
    let tmp = TempDir::new("deepbind-origin");
    for dir in ["plugins", "plugins2", "hostlib"] {
        std::fs::create_dir_all(tmp.path(dir)).unwrap();
    }
    let plug = app("dl/plug.c");
    cc(
        &["-shared", "-fPIC", "-DPLUG_VALUE=1"],
        std::slice::from_ref(&plug),
        &tmp.path("plugins/libplug.so"),
    );
    cc(
        &["-shared", "-fPIC", "-DPLUG_VALUE=2"],
        &[plug],
        &tmp.path("plugins2/libplug2.so"),
    );
    cc(
        &[
            "-shared",
            "-fPIC",
            "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../plugins2",
        ],
        &[app("dl/host.c")],
        &tmp.path("hostlib/libhost.so"),
    );
    let main = tmp.path("origin_main");
    cc(
        &["-Wl,--enable-new-dtags,-rpath,$ORIGIN/plugins"],
        &[app("dl/origin_main.c")],
        &main,
    );
    let readelf = Command::new("readelf").arg("-d").arg(&main).output();
    if let Ok(r) = readelf {
        assert!(String::from_utf8_lossy(&r.stdout).contains("RUNPATH"));
    }

    // Untraced first: the program itself is right.
    let mut untraced = Command::new(&main);
    untraced.env_remove("LD_LIBRARY_PATH");
    let out = run(untraced, T);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{out:?}");

    let mut cmd = traced(main.to_str().unwrap());
    cmd.env("LD_DEBUG", "libs")
        .env("LUMIGO_DEBUG", "true")
        .env_remove("LD_LIBRARY_PATH");
    let out = run(cmd, T);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{out:?}");
    let log = String::from_utf8_lossy(&out.stderr);
    // The loader says whose RUNPATH it searched: the program's for its own
    // dlopen, the library's for the library's (whose dlopen we re-pointed).
    let main_runpath = format!("(RUNPATH from file {})", main.display());
    let host_runpath = "hostlib/libhost.so)";
    let searched = |lib: &str, whose: &str| {
        log.lines()
            .skip_while(|l| !l.contains(&format!("find library={lib} ")))
            .skip(1)
            .take_while(|l| !l.contains("find library=") && !l.contains("calling init"))
            .any(|l| l.contains("search path=") && l.contains(whose))
    };
    assert!(searched("libplug.so", &main_runpath), "{log}");
    assert!(searched("libplug2.so", host_runpath), "{log}");
    assert!(
        log.contains("call slots of") && log.contains("libhost.so now reach"),
        "the deep-bound library's dlopen goes through our hook: {log}"
    );
}

/// A deep-bound plugin closed and loaded again comes back as a new copy
/// (often at the same address): it is patched again, not taken for the one
/// already seen.
#[test]
fn plugin_closed_and_loaded_again_with_rtld_deepbind_is_traced_both_times() {
    let tmp = TempDir::new("deepbind-reload");
    let lib = tmp.path("libhttpget.so");
    let loader = tmp.path("dl_loader");
    cc(&["-shared", "-fPIC", "-O1"], &[app("dl/http_get.c")], &lib);
    cc(&["-O1"], &[app("dl/dl_loader.c")], &loader);
    let dump = tmp.path("spans.jsonl");
    let port = free_port();
    let mut server = http_server(&dump, port);
    let mut cmd = traced(loader.to_str().unwrap());
    cmd.arg(&lib)
        .arg("deepbind-reload")
        .arg(port.to_string())
        .arg("/status/205")
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_SERVICE_NAME", "loader-reload");
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "205\n205\n");
    let spans = wait_spans(&dump, T, |s| s.len() >= 4);
    server.stop();
    let clients: Vec<&Value> = of_kind(&spans, "SpanKind.CLIENT");
    assert_eq!(clients.len(), 2, "one CLIENT span per load: {spans:#?}");
    for client in clients {
        assert_eq!(attr(client, "http.response.status_code"), 205);
        assert!(
            spans
                .iter()
                .any(|s| kind(s) == "SpanKind.SERVER"
                    && s["parent_id"] == client["context"]["span_id"]),
            "{spans:#?}"
        );
    }
}
