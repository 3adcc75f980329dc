//! Resource detection: the attributes that describe the traced process.
//!
//! [`detect`] runs once per export worker, on the worker thread, so its
//! `/proc` reads and `gethostname` never happen on the app's threads (and
//! are not traced: the worker is marked internal). The result is a plain
//! list that both exporters use: OTLP as the `Resource`, the span dump as
//! `resource.attributes`.
//!
//! `service.name` defaults to the name of the command as it was run
//! (`argv[0]`'s file name: `sh`, not the `dash` it resolves to), taken when
//! the library starts ([`remember_program`]), before a server can rewrite
//! its `argv` (nginx's "nginx: worker process"). `process.command_line`
//! has its secrets masked with the same rules as `url.query`.
//!
//! Also detected (see README, "Resource attributes"): `process.environ`
//! (from `/proc/self/environ`, the environment the process started with,
//! so no lock races the app's `setenv`; secrets masked), `process.runtime.*`
//! (`runtime.rs`), `container.id` and Kubernetes (`container.rs`), and
//! Amazon ECS (`ecs.rs`, a 1 s HTTP request to the local agent). Every
//! string value is cut to the attribute length limit.
//!
//! Precedence follows the OpenTelemetry specification: detected values
//! first, then `OTEL_RESOURCE_ATTRIBUTES` overrides them, then
//! `OTEL_SERVICE_NAME` overrides `service.name`, then `LUMIGO_TAG` sets
//! `lumigo.tag`.

use std::borrow::Cow;
use std::sync::OnceLock;

mod container;
mod ecs;
mod runtime;

use crate::config::Config;
use crate::mask::Masker;
use crate::span::AttrValue;

/// `argv[0]` of this process, as it was when the library started.
static PROGRAM: OnceLock<String> = OnceLock::new();

/// Records `argv[0]` (call once, at start-up: programs may rewrite their
/// `argv` later). Later calls are ignored.
pub fn remember_program(argv0: &str) {
    let _ = PROGRAM.set(argv0.to_owned());
}

/// Longest `process.command_line` we report, in bytes. Command lines can be
/// megabytes long; the resource travels with every batch.
const MAX_COMMAND_LINE: usize = 4096;

/// Name of the distribution, as `telemetry.distro.name`.
pub const DISTRO_NAME: &str = "lumigo-run";

/// The resource attributes of this process, in a stable order, each key once.
pub fn detect(config: &Config) -> Vec<(String, AttrValue)> {
    let exe = std::fs::read_link("/proc/self/exe")
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    let cmdline = std::fs::read("/proc/self/cmdline").ok();
    let environ = std::fs::read("/proc/self/environ").ok();
    let vars = environ.as_deref().map(environ_vars).unwrap_or_default();
    let var = |name: &str| {
        vars.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let ecs = match var("ECS_CONTAINER_METADATA_URI_V4") {
        Some(uri) => ecs::fetch(&uri).unwrap_or_else(|e| {
            crate::lumigo_debug!("Amazon ECS metadata not read: {e}");
            Vec::new()
        }),
        None => Vec::new(),
    };
    let runtime = exe.as_deref().and_then(|exe| {
        runtime::detect(exe, |path| {
            // A JDK `release` file is a few hundred bytes.
            std::fs::read_to_string(path)
                .ok()
                .filter(|text| text.len() < 64 * 1024)
        })
    });
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let facts = ProcessFacts {
        pid: std::process::id(),
        argv0: PROGRAM.get().cloned(),
        exe,
        cmdline,
        host_name: host_name(),
        environ,
        runtime,
        hosts: read("/etc/hosts"),
        mountinfo: read("/proc/self/mountinfo"),
        cgroup: read("/proc/self/cgroup"),
        container_name: var("LUMIGO_CONTAINER_NAME"),
        ecs,
    };
    build(config, &facts)
}

/// What [`detect`] reads from the system; separate so the merge logic is testable.
#[derive(Debug, Default)]
struct ProcessFacts {
    pid: u32,
    /// `argv[0]` at start-up, if known.
    argv0: Option<String>,
    /// Target of `/proc/self/exe`.
    exe: Option<String>,
    /// Raw `/proc/self/cmdline` (NUL-separated).
    cmdline: Option<Vec<u8>>,
    host_name: Option<String>,
    /// Raw `/proc/self/environ` (NUL-separated `NAME=value`).
    environ: Option<Vec<u8>>,
    runtime: Option<runtime::Runtime>,
    /// `/etc/hosts`.
    hosts: Option<String>,
    /// `/proc/self/mountinfo`.
    mountinfo: Option<String>,
    /// `/proc/self/cgroup`.
    cgroup: Option<String>,
    /// `LUMIGO_CONTAINER_NAME`.
    container_name: Option<String>,
    /// Amazon ECS attributes, fetched.
    ecs: Vec<(&'static str, AttrValue)>,
}

/// `NAME=value` pairs of a raw environment block, in order.
fn environ_vars(raw: &[u8]) -> Vec<(String, String)> {
    raw.split(|&b| b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            match entry.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (entry.into_owned(), String::new()),
            }
        })
        .collect()
}

/// `process.environ`: the environment as a JSON object string (names
/// sorted), the values of secret-looking names as `****`, and URL
/// passwords and secret query values inside other values masked.
fn environ_json(raw: &[u8], masker: &Masker) -> String {
    let mut map = serde_json::Map::new();
    for (name, value) in environ_vars(raw) {
        // Beyond the distributions: a secret inside a value whose name
        // looks harmless (`DATABASE_URL=postgres://u:PASSWORD@db/x`,
        // `OPTS=a=1&token=T`) is masked as on a command line.
        let value = if masker.is_secret(&name) {
            crate::mask::MASK.to_owned()
        } else if let Some(n) = crate::mask::auth_scheme_len(&value) {
            // Credentials after an authentication scheme, whatever the
            // name (`MY_AUTH=Bearer …`).
            format!("{}{}", &value[..n], crate::mask::MASK)
        } else {
            masker.mask_argument(&value).into_owned()
        };
        map.insert(name, serde_json::Value::String(value));
    }
    serde_json::Value::Object(map).to_string()
}

fn build(config: &Config, facts: &ProcessFacts) -> Vec<(String, AttrValue)> {
    let mut attrs = Attributes::default();
    let exe_name = facts.exe.as_deref().map(executable_name);
    // The command as the user ran it: argv[0] at start-up, else as
    // /proc/self/cmdline has it now, else the executable's name.
    let first_arg = facts.cmdline.as_deref().and_then(|raw| {
        raw.split(|&b| b == 0)
            .next()
            .map(|a| String::from_utf8_lossy(a).into_owned())
    });
    let program = facts
        .argv0
        .as_deref()
        .or(first_arg.as_deref())
        .and_then(program_name);

    attrs.set(
        "service.name",
        program
            .or(exe_name)
            .map_or_else(|| "unknown_service".to_owned(), str::to_owned),
    );
    for (key, value) in telemetry_sdk() {
        attrs.set(key, value);
    }
    attrs.set("telemetry.distro.name", DISTRO_NAME);
    attrs.set("telemetry.distro.version", crate::VERSION);
    attrs.set("lumigo.distro.version", crate::VERSION);
    attrs.set("process.pid", i64::from(facts.pid));
    if let Some(name) = exe_name {
        attrs.set("process.executable.name", name);
    }
    if let Some(path) = &facts.exe {
        attrs.set("process.executable.path", path.as_str());
    }
    if let Some(raw) = &facts.cmdline {
        let line = command_line(raw, &Masker::new(&config.query_secret_patterns));
        if !line.is_empty() {
            attrs.set("process.command_line", line);
        }
    }
    if let Some(host) = &facts.host_name {
        attrs.set("host.name", host.as_str());
    }

    if let Some(rt) = &facts.runtime {
        attrs.set("process.runtime.name", rt.name);
        if let Some(version) = &rt.version {
            attrs.set("process.runtime.version", version.as_str());
        }
        attrs.set("process.runtime.description", rt.description.as_str());
    }
    let cgroup = facts.cgroup.as_deref().unwrap_or("");
    let mountinfo = facts.mountinfo.as_deref().unwrap_or("");
    let container_id = container::container_id_from_cgroup(cgroup)
        .or_else(|| container::container_id_from_mountinfo(mountinfo));
    if let Some(id) = container_id {
        attrs.set("container.id", id);
    }
    if facts.hosts.as_deref().is_some_and(container::is_kubernetes) {
        let pod = container::pod_uid_from_mountinfo(mountinfo)
            .or_else(|| container::pod_uid_from_cgroup(cgroup));
        if let Some(uid) = pod {
            attrs.set("k8s.pod.uid", uid);
        }
    }
    if let Some(name) = &facts.container_name {
        attrs.set("k8s.container.name", name.as_str());
    }
    for (key, value) in &facts.ecs {
        attrs.set(key, value.clone());
    }
    if let Some(raw) = &facts.environ {
        let masker = Masker::new(&config.environment_secret_patterns);
        attrs.set("process.environ", environ_json(raw, &masker));
    }

    for (key, value) in &config.resource_attributes {
        attrs.set(key, value.as_str());
    }
    if let Some(service) = &config.service_name {
        attrs.set("service.name", service.as_str());
    }
    if let Some(tag) = &config.tag {
        attrs.set("lumigo.tag", tag.as_str());
    }
    // The attribute length limit, on every string (the count limit is for
    // spans: the specification exempts resources).
    let max = config.attribute_limits.value_length;
    for (_, value) in &mut attrs.0 {
        if let AttrValue::Str(text) = value {
            if text.len() > max {
                *value = AttrValue::from(crate::config::cut_str(text, max));
            }
        }
    }
    attrs.0
}

/// An ordered list where setting an existing key replaces its value in place.
#[derive(Default)]
struct Attributes(Vec<(String, AttrValue)>);

impl Attributes {
    fn set(&mut self, key: &str, value: impl Into<AttrValue>) {
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_owned(), value)),
        }
    }
}

/// `telemetry.sdk.*`: the code that encodes and sends our spans is our own
/// (`export/proto.rs`), not the OpenTelemetry SDK, and the semantic
/// conventions reserve the name `opentelemetry` for the official SDKs.
fn telemetry_sdk() -> [(&'static str, AttrValue); 3] {
    [
        ("telemetry.sdk.name", AttrValue::from(DISTRO_NAME)),
        ("telemetry.sdk.language", AttrValue::from("rust")),
        ("telemetry.sdk.version", AttrValue::from(crate::VERSION)),
    ]
}

/// The file name of an executable path (`/usr/bin/python3.12` → `python3.12`),
/// without the ` (deleted)` suffix the kernel adds for a replaced binary.
fn executable_name(path: &str) -> &str {
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    path.rsplit('/').next().unwrap_or(path)
}

/// The file name of a command as run (`/usr/bin/python3` → `python3`,
/// `-bash` for a login shell → `bash`); `None` if nothing is left.
fn program_name(argv0: &str) -> Option<&str> {
    let name = argv0.rsplit('/').next().unwrap_or(argv0);
    let name = name.trim_start_matches('-');
    (!name.is_empty()).then_some(name)
}

/// `/proc/self/cmdline` as one line: the arguments with their secrets
/// masked (`masker`, as `url.query`), joined by spaces; the trailing NUL
/// goes, and the result is capped at [`MAX_COMMAND_LINE`] bytes (on a
/// character boundary).
fn command_line(raw: &[u8], masker: &Masker) -> String {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    // Only what can be shown is masked (bounded work on a huge command
    // line). A prefix is masked as safely as the whole: a cut leaves the
    // name before its value, never a value without its name.
    let raw = &raw[..raw.len().min(2 * MAX_COMMAND_LINE)];
    let args: Vec<Cow<'_, str>> = raw
        .split(|&b| b == 0)
        .map(String::from_utf8_lossy)
        .collect();
    let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
    let mut line = masker.mask_args(&args).join(" ");
    if line.len() > MAX_COMMAND_LINE {
        let mut cut = MAX_COMMAND_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    line
}

fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..len]).into_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Config {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    fn facts() -> ProcessFacts {
        ProcessFacts {
            pid: 4242,
            argv0: None,
            exe: Some("/usr/bin/python3.12".into()),
            cmdline: Some(b"python3\0-m\0http.server\0".to_vec()),
            host_name: Some("box-1".into()),
            ..ProcessFacts::default()
        }
    }

    fn get<'a>(attrs: &'a [(String, AttrValue)], key: &str) -> Option<&'a AttrValue> {
        attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn s(v: &str) -> AttrValue {
        AttrValue::from(v)
    }

    #[test]
    fn detected_process_attributes() {
        let attrs = build(&config(&[]), &facts());
        assert_eq!(get(&attrs, "service.name"), Some(&s("python3")));
        assert_eq!(get(&attrs, "process.pid"), Some(&AttrValue::Int(4242)));
        assert_eq!(
            get(&attrs, "process.executable.name"),
            Some(&s("python3.12"))
        );
        assert_eq!(
            get(&attrs, "process.executable.path"),
            Some(&s("/usr/bin/python3.12"))
        );
        assert_eq!(
            get(&attrs, "process.command_line"),
            Some(&s("python3 -m http.server"))
        );
        assert_eq!(get(&attrs, "host.name"), Some(&s("box-1")));
        assert_eq!(
            get(&attrs, "lumigo.distro.version"),
            Some(&s(crate::VERSION))
        );
        assert_eq!(get(&attrs, "telemetry.distro.name"), Some(&s("lumigo-run")));
        assert_eq!(get(&attrs, "telemetry.sdk.name"), Some(&s("lumigo-run")));
        assert_eq!(get(&attrs, "telemetry.sdk.language"), Some(&s("rust")));
        assert_eq!(
            get(&attrs, "telemetry.sdk.version"),
            Some(&s(crate::VERSION))
        );
        assert_eq!(get(&attrs, "lumigo.tag"), None);
    }

    #[test]
    fn otel_resource_attributes_override_but_service_name_wins() {
        let c = config(&[
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attrs,host.name=h2,team=a",
            ),
            ("LUMIGO_TAG", "blue"),
        ]);
        let attrs = build(&c, &facts());
        assert_eq!(get(&attrs, "service.name"), Some(&s("from-attrs")));
        assert_eq!(get(&attrs, "host.name"), Some(&s("h2")));
        assert_eq!(get(&attrs, "team"), Some(&s("a")));
        assert_eq!(get(&attrs, "lumigo.tag"), Some(&s("blue")));

        let c = config(&[
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
            ("OTEL_SERVICE_NAME", "orders"),
        ]);
        let attrs = build(&c, &facts());
        assert_eq!(get(&attrs, "service.name"), Some(&s("orders")));
        let keys: Vec<_> = attrs.iter().map(|(k, _)| k.as_str()).collect();
        let mut unique = keys.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(keys.len(), unique.len(), "every key once: {keys:?}");
    }

    #[test]
    fn missing_facts_leave_attributes_out() {
        let attrs = build(&config(&[]), &ProcessFacts::default());
        assert_eq!(get(&attrs, "service.name"), Some(&s("unknown_service")));
        assert_eq!(get(&attrs, "process.executable.path"), None);
        assert_eq!(get(&attrs, "process.command_line"), None);
        assert_eq!(get(&attrs, "host.name"), None);
    }

    #[test]
    fn executable_names() {
        assert_eq!(executable_name("/usr/sbin/nginx"), "nginx");
        assert_eq!(executable_name("/tmp/app (deleted)"), "app");
        assert_eq!(executable_name("app"), "app");
    }

    #[test]
    fn command_lines_are_joined_and_capped() {
        let m = Masker::lumigo_defaults();
        assert_eq!(
            command_line(b"curl\0-s\0http://x/\0", &m),
            "curl -s http://x/"
        );
        assert_eq!(command_line(b"a\0\0b", &m), "a  b");
        assert_eq!(command_line(b"", &m), "");
        let long = "é".repeat(MAX_COMMAND_LINE);
        let line = command_line(long.as_bytes(), &m);
        assert!(line.len() <= MAX_COMMAND_LINE && line.len() >= MAX_COMMAND_LINE - 1);
    }

    #[test]
    fn secrets_in_the_command_line_are_masked() {
        let raw =
            b"curl\0-H\0Authorization: Bearer X\0http://h/?password=Y&api_key=Z\0--token\0T\0";
        let facts = ProcessFacts {
            cmdline: Some(raw.to_vec()),
            ..facts()
        };
        let attrs = build(&config(&[]), &facts);
        assert_eq!(
            get(&attrs, "process.command_line"),
            Some(&s(
                "curl -H Authorization: **** http://h/?password=****&api_key=**** --token ****"
            ))
        );
        // The configured patterns, as for url.query.
        let c = config(&[("LUMIGO_SECRET_MASKING_REGEX", r#"["sid"]"#)]);
        let facts = ProcessFacts {
            cmdline: Some(b"app\0--sid\0S\0--password\0P\0".to_vec()),
            ..facts
        };
        assert_eq!(
            get(&build(&c, &facts), "process.command_line"),
            Some(&s("app --sid **** --password P"))
        );
    }

    /// The values a user trial found verbatim in `process.command_line`.
    #[test]
    fn program_credentials_leave_no_trace_in_the_command_line() {
        let m = Masker::lumigo_defaults();
        let cases: [(&[u8], &str); 5] = [
            (
                b"redis-cli\0-a\0redispw6666\0--no-auth-warning\0HSET\0hk\0password\0hsetpw1010\0",
                "redis-cli -a **** --no-auth-warning HSET hk ? ?",
            ),
            (
                b"curl\0-u\0eve:curlpw1\0-b\0session=cookieval8765\0-H\0X-Custom: Bearer bearer5454\0-d\0{\"password\" : \"spacedpw3333\"}\0",
                r#"curl -u eve:**** -b session=**** -H X-Custom: Bearer **** -d {"password" : "****"}"#,
            ),
            (
                b"psql\0-p\x005432\0-c\0create role tmprole password 'rolepw2222'\0",
                "psql -p 5432 -c create role tmprole password ?",
            ),
            (
                b"sh\0-c\0curl -u eve:shpw1111 --data-urlencode 'password=enc pw&4444' h; true\0",
                "sh -c curl -u eve:**** --data-urlencode 'password=****' h; true",
            ),
            (
                b"mysql\0-pmysqlpw1\0-e\0select 'x'\0",
                "mysql -p**** -e select ?",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(command_line(raw, &m), want);
        }
    }

    #[test]
    fn service_name_is_the_command_as_run() {
        // `sh` runs dash; python3 runs python3.11: the name typed wins.
        for (argv0, exe, want) in [
            ("sh", "/usr/bin/dash", "sh"),
            ("python3", "/usr/bin/python3.11", "python3"),
            ("/usr/local/bin/app", "/opt/app-1.2", "app"),
            ("-bash", "/usr/bin/bash", "bash"),
            ("", "/usr/bin/dash", "dash"),
        ] {
            let facts = ProcessFacts {
                argv0: Some(argv0.into()),
                exe: Some(exe.into()),
                cmdline: Some(b"nginx: worker process\0".to_vec()),
                ..facts()
            };
            let attrs = build(&config(&[]), &facts);
            assert_eq!(get(&attrs, "service.name"), Some(&s(want)), "{argv0}");
            let exe_name = exe.rsplit('/').next().unwrap();
            assert_eq!(get(&attrs, "process.executable.name"), Some(&s(exe_name)));
        }
        // Without the start-up argv[0]: the command line's first word.
        let facts = ProcessFacts {
            cmdline: Some(b"/bin/sh\0-c\0true\0".to_vec()),
            exe: Some("/usr/bin/dash".into()),
            ..facts()
        };
        let attrs = build(&config(&[]), &facts);
        assert_eq!(get(&attrs, "service.name"), Some(&s("sh")));
        let c = config(&[("OTEL_SERVICE_NAME", "orders")]);
        assert_eq!(get(&build(&c, &facts), "service.name"), Some(&s("orders")));
    }

    #[test]
    fn detect_reads_this_process() {
        let attrs = detect(&config(&[]));
        assert_eq!(
            get(&attrs, "process.pid"),
            Some(&AttrValue::Int(i64::from(std::process::id())))
        );
        assert!(get(&attrs, "process.executable.path").is_some());
        assert!(get(&attrs, "host.name").is_some());
    }

    #[test]
    fn process_environ_is_json_with_secrets_masked() {
        let facts = ProcessFacts {
            environ: Some(
                b"PATH=/usr/bin\0DB_PASSWORD=hunter2\0LUMIGO_TRACER_TOKEN=t_1\0EMPTY=\0ODD\0\
                  DATABASE_URL=postgres://app:hunter3@db:5432/x\0OPTS=a=1&token=hunter4\0\
                  MY_AUTH=Bearer hunter5\0UPSTREAM_AUTH=basic  aHVudGVyNg==\0"
                    .to_vec(),
            ),
            ..facts()
        };
        let attrs = build(&config(&[]), &facts);
        let Some(AttrValue::Str(json)) = get(&attrs, "process.environ") else {
            panic!("no process.environ: {attrs:?}");
        };
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["PATH"], "/usr/bin");
        assert_eq!(v["DB_PASSWORD"], "****");
        assert_eq!(v["LUMIGO_TRACER_TOKEN"], "****");
        assert_eq!(v["EMPTY"], "");
        assert_eq!(v["ODD"], "");
        assert_eq!(v["DATABASE_URL"], "postgres://app:****@db:5432/x");
        assert_eq!(v["OPTS"], "a=1&token=****");
        assert_eq!(v["MY_AUTH"], "Bearer ****");
        assert_eq!(v["UPSTREAM_AUTH"], "basic  ****");
        assert!(
            !json.contains("hunter") && !json.contains("aHVudGVy"),
            "{json}"
        );
        // The environment's own patterns, else the general ones.
        let c = config(&[
            ("LUMIGO_SECRET_MASKING_REGEX", r#"["path"]"#),
            ("LUMIGO_SECRET_MASKING_REGEX_ENVIRONMENT", r#"["db_.*"]"#),
        ]);
        let Some(AttrValue::Str(json)) = get(&build(&c, &facts), "process.environ").cloned() else {
            panic!()
        };
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["PATH"], "/usr/bin");
        assert_eq!(v["DB_PASSWORD"], "****");
        assert_eq!(v["LUMIGO_TRACER_TOKEN"], "t_1");
    }

    #[test]
    fn string_values_are_cut_to_the_length_limit() {
        let facts = ProcessFacts {
            environ: Some(format!("BIG={}\0", "é".repeat(100)).into_bytes()),
            ..facts()
        };
        let c = config(&[("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "21")]);
        let attrs = build(&c, &facts);
        let Some(AttrValue::Str(json)) = get(&attrs, "process.environ") else {
            panic!()
        };
        // `{"BIG":"` is 8 bytes, each é 2: 21 bytes cut to 20.
        assert_eq!(&**json, "{\"BIG\":\"éééééé");
        assert_eq!(get(&attrs, "process.pid"), Some(&AttrValue::Int(4242)));
    }

    const POD: &str = "5f3c2a2e-8d3b-4c1e-9f0a-1b2c3d4e5f60";
    const CID: &str = "7be92808767a667f35c8505cbf40d14e931ef6db5b0210329cf193b15ba9d605";

    #[test]
    fn kubernetes_pod_and_container() {
        let k8s = ProcessFacts {
            hosts: Some("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n".into()),
            mountinfo: Some(format!(
                "1859 1850 259:1 /var/lib/kubelet/pods/{POD}/etc-hosts /etc/hosts rw,relatime - ext4 /dev/nvme0n1p1 rw\n"
            )),
            cgroup: Some(format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CID}.scope\n",
                POD.replace('-', "_")
            )),
            container_name: Some("web".into()),
            ..facts()
        };
        // The kubelet writes "# Kubernetes-managed hosts file." with a dot.
        let attrs = build(&config(&[]), &k8s);
        assert_eq!(get(&attrs, "container.id"), Some(&s(CID)));
        assert_eq!(get(&attrs, "k8s.container.name"), Some(&s("web")));
        assert_eq!(get(&attrs, "k8s.pod.uid"), Some(&s(POD)));
        // Without the kubelet's mounts: the cgroup.
        let cgroup_only = ProcessFacts {
            mountinfo: None,
            ..k8s
        };
        assert_eq!(
            get(&build(&config(&[]), &cgroup_only), "k8s.pod.uid"),
            Some(&s(POD))
        );
        // Not Kubernetes: no pod, whatever the paths say.
        let plain = ProcessFacts {
            hosts: Some("127.0.0.1 localhost\n".into()),
            ..cgroup_only
        };
        let attrs = build(&config(&[]), &plain);
        assert_eq!(get(&attrs, "k8s.pod.uid"), None);
        assert_eq!(get(&attrs, "container.id"), Some(&s(CID)));
    }

    #[test]
    fn ecs_attributes_join_the_resource() {
        let ecs = ecs::attributes(ecs::tests::CONTAINER_JSON, ecs::tests::TASK_JSON).unwrap();
        let facts = ProcessFacts { ecs, ..facts() };
        let attrs = build(&config(&[]), &facts);
        assert_eq!(get(&attrs, "cloud.platform"), Some(&s("aws_ecs")));
        assert_eq!(get(&attrs, "aws.ecs.task.family"), Some(&s("curltest")));
        let c = config(&[("OTEL_RESOURCE_ATTRIBUTES", "cloud.region=eu-west-1")]);
        assert_eq!(
            get(&build(&c, &facts), "cloud.region"),
            Some(&s("eu-west-1"))
        );
    }
}
