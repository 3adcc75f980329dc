//! Lumigo parity (issue 14): resource attributes, switches, limits and
//! propagator names, checked on real programs under the real launcher, in
//! the span dump and over OTLP.

#[path = "support/otlp_receiver.rs"]
mod otlp_receiver;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use otlp_receiver::{OtlpReceiver, ReceivedSpan, SPAN_KIND_CLIENT};
use serde_json::Value;
use support::*;

const T: Duration = Duration::from_secs(30);

/// A secret in the environment, unique so a leak is unmistakable.
const ENV_SECRET: &str = "env-QsecretQ-4801";

fn app(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/apps")
        .join(name)
}

fn untraced_http_server() -> Server {
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.arg(app("http11_server.py")).arg(port.to_string());
    Server::spawn(cmd, port)
}

/// `lumigo-run curl -s -o /dev/null http://127.0.0.1:PORT/len/3`.
fn curl(port: u16) -> Command {
    let mut cmd = traced("curl");
    cmd.args(["-s", "-o", "/dev/null"])
        .arg(format!("http://127.0.0.1:{port}/len/3"));
    cmd
}

/// curl's HTTP client span in a span dump.
fn client_span(spans: &[Value]) -> &Value {
    of_kind(spans, "SpanKind.CLIENT")
        .into_iter()
        .find(|s| s["attributes"]["http.request.method"] == "GET")
        .unwrap_or_else(|| panic!("no HTTP client span: {spans:#?}"))
}

fn otlp_client(spans: &[ReceivedSpan]) -> &ReceivedSpan {
    spans
        .iter()
        .find(|s| s.kind == SPAN_KIND_CLIENT && s.attr("http.request.method") == Some("GET"))
        .unwrap_or_else(|| panic!("no HTTP client span: {spans:#?}"))
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// `process.environ` is the environment as JSON, secrets masked, in both
/// outputs; a long variable cuts it at the 2048-byte default limit.
#[test]
fn process_environ_is_masked_in_the_dump_and_over_otlp() {
    let mut server = untraced_http_server();
    let receiver = OtlpReceiver::start();
    let tmp = TempDir::new("environ");
    let dump = tmp.path("spans.jsonl");
    let mut cmd = curl(server.port);
    // A small, known environment: names sort, so ZZ_LONG comes last.
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("DB_PASSWORD", ENV_SECRET)
        .env("MY_API_KEY", ENV_SECRET)
        .env("GREETING", "hello")
        .env(
            "DATABASE_URL",
            format!("postgres://app:{ENV_SECRET}@127.0.0.1:5432/orders"),
        )
        .env("ZZ_LONG", "z".repeat(5000))
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url());
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let spans = wait_spans(&dump, T, |s| !of_kind(s, "SpanKind.CLIENT").is_empty());
    let otlp = receiver.wait_for(|s| s.iter().any(|s| s.kind == SPAN_KIND_CLIENT), T);
    server.stop();

    let client = client_span(&spans);
    let environ = client["resource"]["attributes"]["process.environ"]
        .as_str()
        .unwrap_or_else(|| panic!("no process.environ: {client:#}"));
    assert_eq!(environ.len(), 2048, "cut to the default limit: {environ}");
    assert!(environ.starts_with('{'), "{environ}");
    for pair in [
        r#""DB_PASSWORD":"****""#,
        r#""MY_API_KEY":"****""#,
        r#""GREETING":"hello""#,
        r#""DATABASE_URL":"postgres://app:****@127.0.0.1:5432/orders""#,
        r#""ZZ_LONG":"zzz"#,
    ] {
        assert!(environ.contains(pair), "{pair} not in {environ}");
    }
    let over_otlp = otlp_client(&otlp);
    assert_eq!(over_otlp.resource_attr("process.environ"), Some(environ));
    assert_eq!(
        over_otlp.trace_id,
        client["context"]["trace_id"].as_str().unwrap()[2..]
    );

    assert!(!contains(&std::fs::read(&dump).unwrap(), ENV_SECRET));
    let requests = receiver.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert!(!contains(&r.body, ENV_SECRET), "secret in an OTLP request");
    }
}

/// `LUMIGO_SECRET_MASKING_REGEX_ENVIRONMENT` replaces the patterns for the
/// environment only; the whole JSON parses when it fits the limit.
#[test]
fn process_environ_uses_the_environment_masking_patterns() {
    let mut server = untraced_http_server();
    let tmp = TempDir::new("environ-regex");
    let dump = tmp.path("spans.jsonl");
    let mut cmd = curl(server.port);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("LUMIGO_SECRET_MASKING_REGEX_ENVIRONMENT", r#"["greet.*"]"#)
        .env("GREETING", ENV_SECRET)
        .env("DB_PASSWORD", "not-masked-here")
        .env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let spans = wait_spans(&dump, T, |s| !of_kind(s, "SpanKind.CLIENT").is_empty());
    server.stop();
    let environ = client_span(&spans)["resource"]["attributes"]["process.environ"]
        .as_str()
        .expect("process.environ")
        .to_owned();
    let env: Value = serde_json::from_str(&environ).expect("JSON object");
    assert_eq!(env["GREETING"], "****");
    assert_eq!(env["DB_PASSWORD"], "not-masked-here");
    assert_eq!(
        env["PATH"],
        std::env::var("PATH").unwrap_or_default().as_str()
    );
    assert!(!contains(&std::fs::read(&dump).unwrap(), ENV_SECRET));
}

/// `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT` and `_COUNT_LIMIT` shape every
/// span and resource value in both outputs the same way.
#[test]
fn attribute_limits_apply_to_the_dump_and_to_otlp() {
    let mut server = untraced_http_server();
    let receiver = OtlpReceiver::start();
    let tmp = TempDir::new("limits");
    let dump = tmp.path("spans.jsonl");
    let mut cmd = traced("curl");
    let url = format!("http://127.0.0.1:{}/len/3?{}", server.port, "q".repeat(300));
    cmd.args(["-s", "-o", "/dev/null", &url])
        .env("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "40")
        .env("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "1000")
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url());
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let spans = wait_spans(&dump, T, |s| !of_kind(s, "SpanKind.CLIENT").is_empty());
    let otlp = receiver.wait_for(|s| s.iter().any(|s| s.kind == SPAN_KIND_CLIENT), T);
    let client = client_span(&spans);
    assert_eq!(client["attributes"]["url.full"], &url[..40]);
    assert_eq!(otlp_client(&otlp).attr("url.full"), Some(&url[..40]));
    let resource = client["resource"]["attributes"].as_object().unwrap();
    for (key, value) in resource {
        if let Some(s) = value.as_str() {
            assert!(s.len() <= 40, "resource {key} is {} bytes", s.len());
        }
    }
    assert_eq!(resource["process.environ"].as_str().map(str::len), Some(40));

    // The count limit keeps the first attributes.
    let dump2 = tmp.path("count.jsonl");
    let mut cmd = curl(server.port);
    cmd.env("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "3")
        .env("LUMIGO_DEBUG_SPANDUMP", &dump2);
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let spans = wait_spans(&dump2, T, |s| !of_kind(s, "SpanKind.CLIENT").is_empty());
    server.stop();
    for span in &spans {
        let n = span["attributes"].as_object().map_or(0, |a| a.len());
        assert!(n <= 3, "{n} attributes: {span:#}");
    }
    assert!(!of_kind(&spans, "SpanKind.CLIENT").is_empty());
}

/// A traced HTTP server (its own span dump) and a traced curl with the extra
/// variables `env`; returns (curl's spans, the server's spans).
fn curl_to_traced_server(env: &[(&str, &str)]) -> (Vec<Value>, Vec<Value>, String) {
    let tmp = TempDir::new("switch");
    let (client_dump, server_dump) = (tmp.path("client.jsonl"), tmp.path("server.jsonl"));
    let port = free_port();
    let mut server = traced("python3");
    server
        .arg(app("http11_server.py"))
        .arg(port.to_string())
        .env("LUMIGO_DEBUG_SPANDUMP", &server_dump);
    let mut server = Server::spawn(server, port);
    let mut cmd = traced("sh");
    cmd.args([
        "-c",
        r#"printf 'LD_PRELOAD=%s\n' "$LD_PRELOAD"; exec curl -s -o /dev/null "$0""#,
    ])
    .arg(format!("http://127.0.0.1:{port}/len/3"))
    .env("LUMIGO_DEBUG_SPANDUMP", &client_dump)
    .envs(env.iter().copied());
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let server_spans = wait_spans(&server_dump, T, |s| {
        of_kind(s, "SpanKind.SERVER")
            .iter()
            .any(|s| s["attributes"]["url.path"] == "/len/3")
    });
    server.stop();
    // The client flushed at exit: its dump is complete now.
    let client_spans = read_spandump(&client_dump);
    (
        client_spans,
        server_spans,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn server_span(spans: &[Value]) -> &Value {
    of_kind(spans, "SpanKind.SERVER")
        .into_iter()
        .find(|s| s["attributes"]["url.path"] == "/len/3")
        .unwrap_or_else(|| panic!("no server span: {spans:#?}"))
}

/// `OTEL_SDK_DISABLED=true` and `LUMIGO_ENABLE_TRACES=false` are
/// `LUMIGO_SWITCH_OFF`: nothing preloaded, no span, no traceparent sent.
#[test]
fn otel_sdk_disabled_and_enable_traces_false_trace_nothing_and_insert_nothing() {
    // Control: traced, the server span is the child of curl's client span.
    let (client, server, stdout) = curl_to_traced_server(&[]);
    assert!(stdout.contains("liblumigo_preload"), "{stdout}");
    let parent = server_span(&server)["parent_id"]
        .as_str()
        .map(str::to_owned);
    assert_eq!(
        parent.as_deref(),
        client_span(&client)["context"]["span_id"].as_str()
    );

    for switch in [
        ("OTEL_SDK_DISABLED", "true"),
        ("LUMIGO_ENABLE_TRACES", "false"),
    ] {
        let (client, server, stdout) = curl_to_traced_server(&[switch]);
        assert!(client.is_empty(), "{switch:?}: spans {client:#?}");
        assert_eq!(
            stdout.trim(),
            "LD_PRELOAD=",
            "{switch:?}: nothing preloaded"
        );
        let span = server_span(&server);
        assert_eq!(span["parent_id"], Value::Null, "{switch:?}: {span:#}");
    }
}

/// `OTEL_TRACES_EXPORTER=none`: the span dump is written, the OTLP endpoint
/// gets nothing.
#[test]
fn otel_traces_exporter_none_keeps_the_dump_and_sends_no_otlp() {
    let mut server = untraced_http_server();
    let receiver = OtlpReceiver::start();
    let tmp = TempDir::new("exporter-none");
    let dump = tmp.path("spans.jsonl");
    let mut cmd = curl(server.port);
    cmd.env("OTEL_TRACES_EXPORTER", "none")
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url());
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    // The process flushed at exit: the dump is complete.
    let spans = read_spandump(&dump);
    client_span(&spans);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(receiver.requests().len(), 0, "{:?}", receiver.requests());

    // Control: with the default exporter the same run reaches the receiver.
    let mut cmd = curl(server.port);
    cmd.env("OTEL_TRACES_EXPORTER", "otlp")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url());
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    server.stop();
    let otlp = receiver.wait_for(|s| s.iter().any(|s| s.kind == SPAN_KIND_CLIENT), T);
    otlp_client(&otlp);

    // `console` is refused with a pointer to the span dump.
    let mut cmd = traced("true");
    cmd.env("OTEL_TRACES_EXPORTER", "console")
        .env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(cmd, T);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("LUMIGO_DEBUG_SPANDUMP=/dev/stderr"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing written to the app's stdout");
}

/// A misspelt `OTEL_PROPAGATORS` (here `;` for `,`) is warned about and
/// ignored: W3C trace context still reaches the server.
#[test]
fn misspelt_otel_propagators_warn_and_keep_tracecontext() {
    let (client, server, _) =
        curl_to_traced_server(&[("OTEL_PROPAGATORS", "tracecontext;baggage")]);
    let parent = server_span(&server)["parent_id"]
        .as_str()
        .map(str::to_owned);
    assert_eq!(
        parent.as_deref(),
        client_span(&client)["context"]["span_id"].as_str()
    );
    let mut cmd = traced("true");
    cmd.env("OTEL_PROPAGATORS", "tracecontext,jaeger");
    let stderr = String::from_utf8_lossy(&run(cmd, T).stderr).into_owned();
    assert!(stderr.contains("\"jaeger\" is not implemented"), "{stderr}");
}

const POD_UID: &str = "0c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f";

/// Kubernetes, faked: in a private mount namespace a kubelet-style hosts
/// file (under `/pods/<uid>/`) is bind-mounted over `/etc/hosts`.
#[test]
fn kubernetes_pod_uid_from_mountinfo_in_a_private_mount_namespace() {
    assert!(have("unshare"), "unshare (util-linux) is required");
    let mut server = untraced_http_server();
    let tmp = TempDir::new("k8s");
    let hosts_dir = tmp.0.join("kubelet/pods").join(POD_UID);
    std::fs::create_dir_all(&hosts_dir).unwrap();
    let hosts = hosts_dir.join("etc-hosts");
    std::fs::write(
        &hosts,
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n",
    )
    .unwrap();
    let dump = tmp.path("spans.jsonl");
    let mut inner = curl(server.port);
    inner
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("LUMIGO_CONTAINER_NAME", "web");
    // unshare -m -- sh -c 'mount --bind HOSTS /etc/hosts && exec lumigo-run -- curl ...'
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--", "sh", "-c"])
        .arg(r#"mount --bind "$1" /etc/hosts && shift && exec "$@""#)
        .arg("sh")
        .arg(&hosts)
        .arg(inner.get_program())
        .args(inner.get_args());
    for (name, value) in inner.get_envs() {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let spans = read_spandump(&dump);
    let resource = &client_span(&spans)["resource"]["attributes"];
    assert_eq!(resource["k8s.pod.uid"], POD_UID, "{resource:#}");
    assert_eq!(resource["k8s.container.name"], "web");

    // Control: the same run outside the namespace is not in Kubernetes.
    let dump = tmp.path("plain.jsonl");
    let mut cmd = curl(server.port);
    cmd.env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    server.stop();
    let spans = read_spandump(&dump);
    assert_eq!(
        client_span(&spans)["resource"]["attributes"]["k8s.pod.uid"],
        Value::Null
    );
}

/// Amazon ECS: a local metadata server stands in for the agent; every
/// `aws.ecs.*` attribute comes from its task and container documents, in
/// both outputs, and the metadata requests themselves are not traced.
#[test]
fn amazon_ecs_attributes_from_the_task_metadata_endpoint() {
    let mut server = untraced_http_server();
    let receiver = OtlpReceiver::start();
    let tmp = TempDir::new("ecs");
    let log = tmp.path("metadata.log");
    let port = free_port();
    let mut meta = Command::new("python3");
    meta.arg(app("ecs_metadata.py"))
        .arg(port.to_string())
        .arg(&log);
    let mut meta = Server::spawn(meta, port);
    let dump = tmp.path("spans.jsonl");
    let mut cmd = curl(server.port);
    cmd.env(
        "ECS_CONTAINER_METADATA_URI_V4",
        format!("http://127.0.0.1:{port}/v4/cd189a933e58"),
    )
    .env("LUMIGO_DEBUG_SPANDUMP", &dump)
    .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url());
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    let spans = read_spandump(&dump);
    let otlp = receiver.wait_for(|s| s.iter().any(|s| s.kind == SPAN_KIND_CLIENT), T);
    server.stop();
    meta.stop();

    let want = [
        ("cloud.provider", "aws"),
        ("cloud.platform", "aws_ecs"),
        ("container.name", "curl"),
        (
            "container.id",
            "cd189a933e5849daa93386466019ab50-2495160603",
        ),
        (
            "aws.ecs.container.arn",
            "arn:aws:ecs:us-west-2:111122223333:container/05966557-f16c-49cb-9352-24b3a0dcd0e1",
        ),
        (
            "aws.ecs.cluster.arn",
            "arn:aws:ecs:us-west-2:111122223333:cluster/default",
        ),
        ("aws.ecs.launchtype", "fargate"),
        (
            "aws.ecs.task.arn",
            "arn:aws:ecs:us-west-2:111122223333:task/default/e9028f8d5d8e4f258373e7b93ce9a3c3",
        ),
        ("aws.ecs.task.family", "curltest"),
        ("aws.ecs.task.revision", "3"),
    ];
    let client = client_span(&spans);
    let over_otlp = otlp_client(&otlp);
    for (key, value) in want {
        assert_eq!(client["resource"]["attributes"][key], value, "{key}");
        assert_eq!(over_otlp.resource_attr(key), Some(value), "{key} over OTLP");
    }
    // Our own requests: made once, by the export thread, untraced.
    let requests = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        requests.lines().collect::<Vec<_>>(),
        ["/v4/cd189a933e58", "/v4/cd189a933e58/task"]
    );
    assert!(
        spans.iter().all(|s| !s["attributes"]["url.full"]
            .as_str()
            .unwrap_or("")
            .contains("/v4/")),
        "metadata requests traced: {spans:#?}"
    );
}

/// An unreachable ECS agent costs a debug line, not the spans.
#[test]
fn unreachable_ecs_metadata_endpoint_leaves_the_attributes_out() {
    let mut server = untraced_http_server();
    let tmp = TempDir::new("ecs-down");
    let dump = tmp.path("spans.jsonl");
    let mut cmd = curl(server.port);
    cmd.env(
        "ECS_CONTAINER_METADATA_URI_V4",
        format!("http://127.0.0.1:{}/v4/x", free_port()),
    )
    .env("LUMIGO_DEBUG", "true")
    .env("LUMIGO_DEBUG_SPANDUMP", &dump);
    let out = run(cmd, T);
    assert!(out.status.success(), "{out:?}");
    server.stop();
    let spans = read_spandump(&dump);
    let resource = &client_span(&spans)["resource"]["attributes"];
    assert_eq!(resource["cloud.platform"], Value::Null);
    assert_eq!(resource["aws.ecs.task.arn"], Value::Null);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Amazon ECS metadata not read"), "{stderr}");
}

/// `process.runtime.*` from the interpreter's executable, without running
/// code in it: each available runtime runs once with a process span.
#[test]
fn process_runtime_from_the_executable() {
    let cases: [(&str, &[&str], &str); 4] = [
        ("python3", &["-c", "pass"], "cpython"),
        ("node", &["-e", "0"], "nodejs"),
        ("perl", &["-e", "1"], "perl"),
        ("ruby", &["-e", "1"], "ruby"),
    ];
    let mut seen = 0;
    for (program, args, want) in cases {
        if !have(program) {
            continue;
        }
        seen += 1;
        let tmp = TempDir::new("runtime");
        let dump = tmp.path("spans.jsonl");
        let mut cmd = traced(program);
        cmd.args(args)
            .env("LUMIGO_DEBUG_SPANDUMP", &dump)
            .env("LUMIGO_PROCESS_SPAN", "true");
        let out = run(cmd, T);
        assert!(out.status.success(), "{program}: {out:?}");
        let spans = read_spandump(&dump);
        let found = spans.iter().any(|s| {
            s["resource"]["attributes"]["process.runtime.name"] == want
                && s["resource"]["attributes"]["process.runtime.description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty())
        });
        assert!(
            found,
            "{program}: no process.runtime.name={want}: {spans:#?}"
        );
    }
    assert!(
        seen >= 2,
        "python3 and node are installed on the test machines"
    );
    // Python's version is in its executable's name (python3.11).
    let tmp = TempDir::new("runtime-py");
    let dump = tmp.path("spans.jsonl");
    let mut cmd = traced("python3");
    cmd.args(["-c", "pass"])
        .env("LUMIGO_DEBUG_SPANDUMP", &dump)
        .env("LUMIGO_PROCESS_SPAN", "true");
    assert!(run(cmd, T).status.success());
    let real = Command::new("python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .unwrap();
    let major_minor = String::from_utf8_lossy(&real.stdout).trim().to_owned();
    let spans = read_spandump(&dump);
    assert!(
        spans
            .iter()
            .any(|s| s["resource"]["attributes"]["process.runtime.version"]
                .as_str()
                .is_some_and(|v| v.starts_with(&major_minor))),
        "no process.runtime.version {major_minor}: {spans:#?}"
    );
}
