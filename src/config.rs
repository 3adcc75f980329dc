//! Configuration: the environment, read once into a typed value.
//!
//! Every setting of lumigo-run comes from environment variables (the launcher
//! turns its flags into variables), as with the Lumigo OpenTelemetry
//! distributions. [`Config::from_lookup`] takes the lookup as a function so
//! tests never touch the real environment. A broken value never fails: it
//! falls back to the default and leaves a human-readable entry in
//! [`Config::warnings`], which the launcher prints and the library shows
//! under `LUMIGO_DEBUG`.

use std::path::PathBuf;
use std::time::Duration;

/// Lumigo's OTLP/HTTP traces endpoint, used with `LUMIGO_TRACER_TOKEN`.
pub const DEFAULT_LUMIGO_ENDPOINT: &str =
    "https://ga-otlp.lumigo-tracer-edge.golumigo.com/v1/traces";

/// Lumigo's default secret patterns (matched case-insensitively against the
/// whole name of a query parameter, header or JSON key).
pub const DEFAULT_SECRET_PATTERNS: &[&str] = &[
    ".*pass.*",
    ".*key.*",
    ".*secret.*",
    ".*credential.*",
    ".*passphrase.*",
    ".*token.*",
    "SessionToken",
    "x-amz-security-token",
    "Signature",
    "Credential",
    "Authorization",
];

/// One OTLP/HTTP destination: endpoint URL, extra request headers and how
/// requests are encoded, compressed, timed and authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpDestination {
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`.
    pub protocol: OtlpProtocol,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION`.
    pub compression: Compression,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT`: one export, retries included.
    pub timeout: Duration,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`: PEM file of the CA(s)
    /// trusted for an `https` endpoint instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// `OTEL_EXPORTER_OTLP_[TRACES_]CLIENT_CERTIFICATE` and `_CLIENT_KEY`:
    /// PEM files of the client certificate (chain) and its private key,
    /// for collectors that require mutual TLS. Both or neither.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl OtlpDestination {
    /// A destination with the specification's defaults.
    pub fn new(endpoint: String, headers: Vec<(String, String)>) -> OtlpDestination {
        OtlpDestination {
            endpoint,
            headers,
            protocol: OtlpProtocol::HttpProtobuf,
            compression: Compression::None,
            timeout: DEFAULT_OTLP_TIMEOUT,
            ca_file: None,
            client_cert: None,
        }
    }
}

/// `OTEL_EXPORTER_OTLP_TIMEOUT`'s default.
pub const DEFAULT_OTLP_TIMEOUT: Duration = Duration::from_millis(10_000);

/// How an OTLP request body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf`: `application/x-protobuf` (the default).
    HttpProtobuf,
    /// `http/json`: the OTLP JSON mapping, `application/json`.
    HttpJson,
    /// `grpc`: unary `TraceService/Export` over HTTP/2 (protobuf).
    Grpc,
}

/// The OTLP/gRPC endpoint when `grpc` is asked for and no endpoint is set
/// (the specification's default).
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";

/// Compression of OTLP request bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    /// `Content-Encoding: gzip`.
    Gzip,
}

/// `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` (`_TRACES_` wins).
fn parse_protocol(name: &str, raw: Option<String>, w: &mut Vec<String>) -> OtlpProtocol {
    match raw.as_deref().map(str::trim) {
        None | Some("") | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
        Some("http/json") => OtlpProtocol::HttpJson,
        Some("grpc") => OtlpProtocol::Grpc,
        Some(other) => {
            w.push(format!(
                "{name}={other:?} is not http/protobuf, http/json or grpc; using http/protobuf"
            ));
            OtlpProtocol::HttpProtobuf
        }
    }
}

/// `OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION`: `gzip` or `none`.
fn parse_compression(name: &str, raw: Option<String>, w: &mut Vec<String>) -> Compression {
    match raw.as_deref().map(str::trim) {
        None | Some("") | Some("none") => Compression::None,
        Some("gzip") => Compression::Gzip,
        Some(other) => {
            w.push(format!("{name}={other:?} is not gzip or none; using none"));
            Compression::None
        }
    }
}

/// The batch span processor's settings (`OTEL_BSP_*`, SDK defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// `OTEL_BSP_MAX_QUEUE_SIZE`, default 2048.
    pub max_queue_size: usize,
    /// `OTEL_BSP_SCHEDULE_DELAY` in ms, default 5000.
    pub schedule_delay: Duration,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, default 512 (never above the queue size).
    pub max_export_batch_size: usize,
    /// `OTEL_BSP_EXPORT_TIMEOUT` in ms, default 30000.
    pub export_timeout: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_queue_size: 2048,
            schedule_delay: Duration::from_millis(5000),
            max_export_batch_size: 512,
            export_timeout: Duration::from_millis(30_000),
        }
    }
}

/// Attribute limits of the OpenTelemetry SDK specification, applied on the
/// export thread to every span (and, for the length, to the resource).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttributeLimits {
    /// Longest string value in bytes (`OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`,
    /// else `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`, else Lumigo's 2048), cut on
    /// a UTF-8 character boundary.
    pub value_length: usize,
    /// Most attributes on one span (`OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`, else
    /// `OTEL_ATTRIBUTE_COUNT_LIMIT`, else 128); later ones are dropped.
    pub count: usize,
}

impl Default for AttributeLimits {
    fn default() -> Self {
        AttributeLimits {
            value_length: 2048,
            count: 128,
        }
    }
}

impl AttributeLimits {
    /// `s` cut to at most [`AttributeLimits::value_length`] bytes, on a
    /// character boundary.
    pub fn cut<'a>(&self, s: &'a str) -> &'a str {
        cut_str(s, self.value_length)
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn cut_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Names `OTEL_PROPAGATORS` may list: the OpenTelemetry specification's.
/// Only `tracecontext` (and `none`) are implemented.
const KNOWN_PROPAGATORS: [&str; 8] = [
    "tracecontext",
    "baggage",
    "b3",
    "b3multi",
    "jaeger",
    "xray",
    "ottrace",
    "none",
];

/// `OTEL_PROPAGATORS` → the formats read from requests and inserted into
/// them. Unknown names are warned about and ignored; a list of nothing but
/// unknown names is the default (`tracecontext,baggage`); names we know but
/// do not implement are warned about; `none` alone turns propagation off.
fn parse_propagators(
    raw: Option<String>,
    warnings: &mut Vec<String>,
) -> crate::propagators::Propagators {
    use crate::propagators::Propagators;
    let Some(raw) = nonempty(raw) else {
        return Propagators::default();
    };
    let mut p = Propagators::NONE;
    let mut known = false;
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let lower = name.to_ascii_lowercase();
        if !KNOWN_PROPAGATORS.contains(&lower.as_str()) {
            warnings.push(format!(
                "OTEL_PROPAGATORS: ignoring unknown propagator {name:?} (known: {})",
                KNOWN_PROPAGATORS.join(", ")
            ));
            continue;
        }
        known = true;
        match lower.as_str() {
            "tracecontext" => p.tracecontext = true,
            "baggage" => p.baggage = true,
            "b3" => p.b3 = true,
            "b3multi" => p.b3multi = true,
            "none" => {}
            _ => warnings.push(format!(
                "OTEL_PROPAGATORS: {name:?} is not implemented by lumigo-run; ignored"
            )),
        }
    }
    if known {
        p
    } else {
        Propagators::default()
    }
}

/// `OTEL_TRACES_EXPORTER`: whether spans go over OTLP (`otlp`, the default)
/// or not (`none`). `console` is refused: it would write into the app's
/// standard output.
fn parse_traces_exporter(raw: Option<String>, warnings: &mut Vec<String>) -> bool {
    let Some(raw) = nonempty(raw) else {
        return true;
    };
    let mut otlp = false;
    let mut any = false;
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name.to_ascii_lowercase().as_str() {
            "otlp" => {
                otlp = true;
                any = true;
            }
            "none" => any = true,
            "console" => warnings.push(
                "OTEL_TRACES_EXPORTER=console would write into the program's standard output; \
                 ignored: use LUMIGO_DEBUG_SPANDUMP=/dev/stderr instead"
                    .to_owned(),
            ),
            _ => warnings.push(format!(
                "OTEL_TRACES_EXPORTER: ignoring unknown exporter {name:?} (use otlp or none)"
            )),
        }
    }
    otlp || !any
}

/// Everything lumigo-run can be told, parsed and validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// `LUMIGO_SWITCH_OFF=true`, `OTEL_SDK_DISABLED=true` or
    /// `LUMIGO_ENABLE_TRACES=false`: trace nothing at all.
    pub switch_off: bool,
    /// Which of those switched tracing off, for the debug line.
    pub switch_off_reason: &'static str,
    /// `LUMIGO_DEBUG=true`: `#LUMIGO#` diagnostics on stderr.
    pub debug: bool,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `LUMIGO_TRACER_TOKEN`, trimmed.
    pub token: Option<String>,
    /// Where spans go over OTLP/HTTP: Lumigo (with a token) and/or the
    /// endpoint named by `OTEL_EXPORTER_OTLP_*`.
    pub destinations: Vec<OtlpDestination>,
    /// `LUMIGO_DEBUG_SPANDUMP`: append every span as a JSON line to this file.
    pub spandump: Option<PathBuf>,
    /// `LUMIGO_FLUSH_TIMEOUT`: how long exit may wait for the last export.
    pub flush_timeout: Duration,
    pub batch: BatchConfig,
    /// `OTEL_RESOURCE_ATTRIBUTES`, decoded.
    pub resource_attributes: Vec<(String, String)>,
    /// `LUMIGO_TAG` → resource attribute `lumigo.tag`.
    pub tag: Option<String>,
    /// Patterns whose matching query-parameter names get `****` values
    /// (`LUMIGO_SECRET_MASKING_REGEX_HTTP_QUERY_PARAMS`, else
    /// `LUMIGO_SECRET_MASKING_REGEX`, else the defaults).
    pub query_secret_patterns: Vec<String>,
    /// Patterns whose matching variable names get `****` values in
    /// `process.environ` (`LUMIGO_SECRET_MASKING_REGEX_ENVIRONMENT`, else
    /// `LUMIGO_SECRET_MASKING_REGEX`, else the defaults).
    pub environment_secret_patterns: Vec<String>,
    /// Patterns for request header names (`…_HTTP_REQUEST_HEADERS`).
    pub request_header_secret_patterns: Vec<String>,
    /// Patterns for response header names (`…_HTTP_RESPONSE_HEADERS`).
    pub response_header_secret_patterns: Vec<String>,
    /// Patterns for JSON keys and form fields of request bodies
    /// (`…_HTTP_REQUEST_BODIES`).
    pub request_body_secret_patterns: Vec<String>,
    /// Patterns for JSON keys and form fields of response bodies
    /// (`…_HTTP_RESPONSE_BODIES`).
    pub response_body_secret_patterns: Vec<String>,
    /// `LUMIGO_CAPTURE_PAYLOADS` (default true): HTTP headers and bodies on
    /// HTTP spans.
    pub capture_payloads: bool,
    /// `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_{SERVER,CLIENT}_{REQUEST,RESPONSE}`:
    /// lower-case header names to set as `http.{request,response}.header.<name>`.
    pub capture_headers: CaptureHeaders,
    /// `OTEL_SPAN_ATTRIBUTE_*_LIMIT` / `OTEL_ATTRIBUTE_*_LIMIT`.
    pub attribute_limits: AttributeLimits,
    /// `LUMIGO_PROCESS_SPAN=true`: one INTERNAL span around the whole run.
    pub process_span: bool,
    /// `OTEL_PROPAGATORS`: the formats read and inserted (default
    /// `tracecontext,baggage`); `none` turns propagation off.
    pub propagators: crate::propagators::Propagators,
    /// `LUMIGO_FILTER_HTTP_ENDPOINTS_REGEX` and `_SERVER`: request paths
    /// whose SERVER spans (and everything made while serving them) are
    /// dropped.
    pub server_filter_patterns: Vec<String>,
    /// `LUMIGO_FILTER_HTTP_ENDPOINTS_REGEX` and `_CLIENT`: `url.full`s
    /// whose CLIENT spans are dropped.
    pub client_filter_patterns: Vec<String>,
    /// `LUMIGO_EXECUTION_TAG_HEADERS`: inbound request headers whose values
    /// become `lumigo.execution_tags.<name>` (lower-case names).
    pub execution_tag_headers: Vec<String>,
    /// `OTEL_TRACES_SAMPLER` with `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler: crate::sampling::Sampler,
    /// `TRACEPARENT` (the OpenTelemetry environment carrier): the process's
    /// root spans become children of this remote context.
    pub env_parent: Option<crate::propagation::Traceparent>,
    /// `TRACESTATE`, carried along with `env_parent`.
    pub env_tracestate: Option<String>,
    /// `XDG_RUNTIME_DIR`: where the memory of failed endpoints is kept
    /// (else `/dev/shm`).
    pub runtime_dir: Option<PathBuf>,
    /// Problems found while parsing, for the user's eyes.
    pub warnings: Vec<String>,
}

/// Words read as "on" in a boolean variable (any case): `true` as in the
/// Lumigo distributions, and the usual shell spellings.
const TRUE_WORDS: [&str; 4] = ["true", "1", "yes", "on"];
/// Words read as "off" (any case).
const FALSE_WORDS: [&str; 4] = ["false", "0", "no", "off"];

/// Whether a boolean variable's value means "on" (`true`, `1`, `yes`,
/// `on`, any case, surrounding blanks ignored).
pub fn is_true(value: &str) -> bool {
    let v = value.trim();
    TRUE_WORDS.iter().any(|w| v.eq_ignore_ascii_case(w))
}

/// Parses a boolean variable: [`TRUE_WORDS`] and [`FALSE_WORDS`], any case.
fn parse_bool(name: &str, value: Option<String>, warnings: &mut Vec<String>) -> bool {
    match value.as_deref().map(str::trim) {
        None | Some("") => false,
        Some(v) if is_true(v) => true,
        Some(v) if FALSE_WORDS.iter().any(|w| v.eq_ignore_ascii_case(w)) => false,
        Some(v) => {
            warnings.push(format!(
                "{name}={v:?} is not true/1/yes/on or false/0/no/off; using false"
            ));
            false
        }
    }
}

/// A duration: plain numbers are in `default_unit_ms` units; `ms` and `s`
/// suffixes are accepted.
fn parse_duration(
    name: &str,
    value: Option<String>,
    default: Duration,
    plain_unit_ms: f64,
    warnings: &mut Vec<String>,
) -> Duration {
    let Some(raw) = value else { return default };
    let v = raw.trim();
    if v.is_empty() {
        return default;
    }
    let (number, unit_ms) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, plain_unit_ms)
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 && n * unit_ms < 1e12 => {
            Duration::from_micros((n * unit_ms * 1000.0) as u64)
        }
        _ => {
            warnings.push(format!(
                "{name}={raw:?} is not a duration; using {}ms",
                default.as_millis()
            ));
            default
        }
    }
}

fn parse_count(
    name: &str,
    value: Option<String>,
    default: usize,
    warnings: &mut Vec<String>,
) -> usize {
    let Some(raw) = value else { return default };
    match raw.trim().parse::<usize>() {
        Ok(n) if n > 0 => n,
        _ if raw.trim().is_empty() => default,
        _ => {
            warnings.push(format!(
                "{name}={raw:?} is not a positive whole number; using {default}"
            ));
            default
        }
    }
}

/// `key1=value1,key2=value2` with percent-decoding, as in the OTel
/// specification for `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_EXPORTER_OTLP_HEADERS`.
pub fn parse_key_values(
    name: &str,
    raw: &str,
    warnings: &mut Vec<String>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for item in raw.split(',') {
        if item.trim().is_empty() {
            continue;
        }
        match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.push((percent_decode(k.trim()), percent_decode(v.trim())));
            }
            _ => warnings.push(format!("{name}: ignoring {item:?} (expected key=value)")),
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Header names to capture as attributes, per side and direction
/// (lower case, as the semantic conventions' attribute keys want them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureHeaders {
    pub server_request: Vec<String>,
    pub server_response: Vec<String>,
    pub client_request: Vec<String>,
    pub client_response: Vec<String>,
}

/// A comma-separated list of header names, lower-cased, blanks and
/// duplicates dropped.
fn header_list(get: &impl Fn(&str) -> Option<String>, name: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for n in get(name).unwrap_or_default().split(',') {
        let n = n.trim().to_ascii_lowercase();
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// A JSON array of strings (`LUMIGO_SECRET_MASKING_REGEX`), or `all`.
/// Anything broken (not such an array, or a regex that does not compile)
/// is warned about and the whole setting ignored, so the fallback (the
/// general setting, else Lumigo's defaults) masks instead of a weakened
/// list.
fn parse_pattern_list(name: &str, raw: &str, warnings: &mut Vec<String>) -> Option<Vec<String>> {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("all") {
        return Some(vec![".*".to_owned()]);
    }
    match serde_json::from_str::<Vec<String>>(raw) {
        Ok(list) => {
            for p in &list {
                if let Err(e) = regex_lite::Regex::new(p) {
                    warnings.push(format!(
                        "{name}: invalid regex {p:?} ({e}); using the default patterns"
                    ));
                    return None;
                }
            }
            Some(list)
        }
        Err(_) => {
            warnings.push(format!(
                "{name}={raw:?} is not a JSON array of strings; using the default patterns"
            ));
            None
        }
    }
}

/// Joins an OTLP base endpoint with the traces path, as the OTel spec says
/// for `OTEL_EXPORTER_OTLP_ENDPOINT`.
fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

/// Checks that an OTLP endpoint names exactly one place: an `http` or
/// `https` URL with a host and, when a port is written, a port in
/// 1..=65535.
pub fn check_endpoint(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "not an http:// or https:// URL".to_owned())?;
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err(format!("scheme {scheme:?} is not http or https"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // Credentials (`user:pw@`) are the transport's business, not the host's.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6
            .split_once(']')
            .ok_or_else(|| "unclosed [ in the host".to_owned())?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {p:?} after the host"))?,
            ),
        };
        (inside, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host".to_owned());
    }
    if host
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'[' || b == b']')
    {
        return Err(format!("host {host:?} is not a host name or address"));
    }
    if let Some(port) = port {
        match port.parse::<u32>() {
            Ok(1..=65535) if port.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(format!("port {port:?} is not a number from 1 to 65535")),
        }
    }
    Ok(())
}

/// The `_TRACES_` form of an `OTEL_EXPORTER_OTLP_*` variable when set,
/// else the general one: (the name that was used, its value).
fn traces_or_general(
    get: &impl Fn(&str) -> Option<String>,
    suffix: &str,
) -> (String, Option<String>) {
    let traces = format!("OTEL_EXPORTER_OTLP_TRACES_{suffix}");
    if let Some(v) = nonempty(get(&traces)) {
        return (traces, Some(v));
    }
    let general = format!("OTEL_EXPORTER_OTLP_{suffix}");
    let v = nonempty(get(&general));
    (general, v)
}

/// Protocol, compression, timeout and TLS files of the `OTEL_EXPORTER_OTLP_*`
/// destination (the Lumigo destination keeps the defaults).
fn otlp_settings(
    d: &mut OtlpDestination,
    get: &impl Fn(&str) -> Option<String>,
    w: &mut Vec<String>,
) {
    let (name, raw) = traces_or_general(get, "PROTOCOL");
    d.protocol = parse_protocol(&name, raw, w);
    let (name, raw) = traces_or_general(get, "COMPRESSION");
    d.compression = parse_compression(&name, raw, w);
    let (name, raw) = traces_or_general(get, "TIMEOUT");
    d.timeout = parse_duration(&name, raw, DEFAULT_OTLP_TIMEOUT, 1.0, w);
    if d.timeout.is_zero() {
        w.push(format!("{name}=0 leaves no time to export; using 10000ms"));
        d.timeout = DEFAULT_OTLP_TIMEOUT;
    }
    d.ca_file = traces_or_general(get, "CERTIFICATE").1.map(PathBuf::from);
    let (cert_name, cert) = traces_or_general(get, "CLIENT_CERTIFICATE");
    let (key_name, key) = traces_or_general(get, "CLIENT_KEY");
    d.client_cert = match (cert, key) {
        (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
        (None, None) => None,
        (Some(_), None) => {
            w.push(format!(
                "{cert_name} is set without {key_name}; no client certificate is sent"
            ));
            None
        }
        (None, Some(_)) => {
            w.push(format!(
                "{key_name} is set without {cert_name}; no client certificate is sent"
            ));
            None
        }
    };
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl Config {
    /// Reads the process environment (the preload's constructor does, in
    /// the traced process). A span dump on the process's own standard
    /// output or error (`/dev/stderr`…) takes its copy of that stream now,
    /// before the program can close or redirect it.
    pub fn from_env() -> Config {
        let config = Config::from_lookup(|k| std::env::var(k).ok());
        if let Some(dump) = config.spandump.as_deref() {
            if !config.switch_off && crate::owned_file::named_descriptor(dump).is_some() {
                crate::export::open_before_privilege_drop(dump);
            }
        }
        config
    }

    /// Reads configuration through `get`, which returns a variable's value.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Config {
        let mut warnings = Vec::new();
        let w = &mut warnings;

        let sdk_disabled = parse_bool("OTEL_SDK_DISABLED", get("OTEL_SDK_DISABLED"), w);
        let traces_disabled = nonempty(get("LUMIGO_ENABLE_TRACES")).is_some_and(|v| {
            if FALSE_WORDS.iter().any(|f| v.eq_ignore_ascii_case(f)) {
                return true;
            }
            if !is_true(&v) {
                w.push(format!(
                    "LUMIGO_ENABLE_TRACES={v:?} is not true/1/yes/on or false/0/no/off; using true"
                ));
            }
            false
        });
        let switch_off_reason = if parse_bool("LUMIGO_SWITCH_OFF", get("LUMIGO_SWITCH_OFF"), w) {
            "LUMIGO_SWITCH_OFF is set"
        } else if sdk_disabled {
            "OTEL_SDK_DISABLED is set"
        } else if traces_disabled {
            "LUMIGO_ENABLE_TRACES is false"
        } else {
            ""
        };
        let switch_off = !switch_off_reason.is_empty();
        let debug = parse_bool("LUMIGO_DEBUG", get("LUMIGO_DEBUG"), w);
        let token = nonempty(get("LUMIGO_TRACER_TOKEN"));

        let mut destinations = Vec::new();
        if let Some(token) = &token {
            let endpoint = nonempty(get("LUMIGO_ENDPOINT"))
                .unwrap_or_else(|| DEFAULT_LUMIGO_ENDPOINT.to_owned());
            destinations.push(OtlpDestination::new(
                endpoint,
                vec![("Authorization".to_owned(), format!("LumigoToken {token}"))],
            ));
        }
        // OTLP/gRPC takes the endpoint as it is (no `/v1/traces`), with
        // a default of its own.
        let grpc = traces_or_general(&get, "PROTOCOL").1.as_deref() == Some("grpc");
        let otlp_endpoint = nonempty(get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
            .or_else(|| {
                nonempty(get("OTEL_EXPORTER_OTLP_ENDPOINT")).map(|b| {
                    if grpc {
                        b
                    } else {
                        traces_url(&b)
                    }
                })
            })
            .or_else(|| grpc.then(|| DEFAULT_GRPC_ENDPOINT.to_owned()))
            .map(|e| {
                // A gRPC endpoint may come without a scheme (`collector:4317`,
                // as gRPC clients take it): TLS unless
                // OTEL_EXPORTER_OTLP_[TRACES_]INSECURE says otherwise.
                if !grpc || e.contains("://") {
                    return e;
                }
                let (name, insecure) = traces_or_general(&get, "INSECURE");
                let scheme = if parse_bool(&name, insecure, w) {
                    "http"
                } else {
                    "https"
                };
                format!("{scheme}://{e}")
            });
        if let Some(endpoint) = otlp_endpoint {
            let mut headers = Vec::new();
            for var in [
                "OTEL_EXPORTER_OTLP_HEADERS",
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            ] {
                if let Some(raw) = get(var) {
                    headers.extend(parse_key_values(var, &raw, w));
                }
            }
            if !destinations.iter().any(|d| d.endpoint == endpoint) {
                let mut d = OtlpDestination::new(endpoint, headers);
                otlp_settings(&mut d, &get, w);
                destinations.push(d);
            }
        }
        if !parse_traces_exporter(get("OTEL_TRACES_EXPORTER"), w) {
            destinations.clear();
        }
        // An endpoint we cannot reach exactly as written is dropped, never
        // "repaired": a port out of range must not become port 80.
        destinations.retain(|d| match check_endpoint(&d.endpoint) {
            Ok(()) => true,
            Err(why) => {
                w.push(format!(
                    "OTLP endpoint {:?} is not usable ({why}); no spans are sent there",
                    d.endpoint
                ));
                false
            }
        });

        let mut batch = BatchConfig::default();
        batch.max_queue_size = parse_count(
            "OTEL_BSP_MAX_QUEUE_SIZE",
            get("OTEL_BSP_MAX_QUEUE_SIZE"),
            batch.max_queue_size,
            w,
        );
        batch.schedule_delay = parse_duration(
            "OTEL_BSP_SCHEDULE_DELAY",
            get("OTEL_BSP_SCHEDULE_DELAY"),
            batch.schedule_delay,
            1.0,
            w,
        );
        batch.max_export_batch_size = parse_count(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
            batch.max_export_batch_size,
            w,
        )
        .min(batch.max_queue_size);
        batch.export_timeout = parse_duration(
            "OTEL_BSP_EXPORT_TIMEOUT",
            get("OTEL_BSP_EXPORT_TIMEOUT"),
            batch.export_timeout,
            1.0,
            w,
        );

        let flush_timeout = parse_duration(
            "LUMIGO_FLUSH_TIMEOUT",
            get("LUMIGO_FLUSH_TIMEOUT"),
            Duration::from_secs(1),
            1000.0,
            w,
        );

        let resource_attributes = get("OTEL_RESOURCE_ATTRIBUTES")
            .map(|raw| parse_key_values("OTEL_RESOURCE_ATTRIBUTES", &raw, w))
            .unwrap_or_default();

        let defaults = || -> Vec<String> {
            DEFAULT_SECRET_PATTERNS
                .iter()
                .map(|p| (*p).to_owned())
                .collect()
        };
        let general = nonempty(get("LUMIGO_SECRET_MASKING_REGEX"))
            .and_then(|raw| parse_pattern_list("LUMIGO_SECRET_MASKING_REGEX", &raw, w));
        let mut area_patterns = |var: &str| {
            nonempty(get(var))
                .and_then(|raw| parse_pattern_list(var, &raw, w))
                .or_else(|| general.clone())
                .unwrap_or_else(defaults)
        };
        let query_secret_patterns = area_patterns("LUMIGO_SECRET_MASKING_REGEX_HTTP_QUERY_PARAMS");
        let environment_secret_patterns = area_patterns("LUMIGO_SECRET_MASKING_REGEX_ENVIRONMENT");
        let request_header_secret_patterns =
            area_patterns("LUMIGO_SECRET_MASKING_REGEX_HTTP_REQUEST_HEADERS");
        let response_header_secret_patterns =
            area_patterns("LUMIGO_SECRET_MASKING_REGEX_HTTP_RESPONSE_HEADERS");
        let request_body_secret_patterns =
            area_patterns("LUMIGO_SECRET_MASKING_REGEX_HTTP_REQUEST_BODIES");
        let response_body_secret_patterns =
            area_patterns("LUMIGO_SECRET_MASKING_REGEX_HTTP_RESPONSE_BODIES");
        let capture_payloads = match nonempty(get("LUMIGO_CAPTURE_PAYLOADS")) {
            None => true,
            Some(v) if FALSE_WORDS.iter().any(|f| v.eq_ignore_ascii_case(f)) => false,
            Some(v) => {
                if !is_true(&v) {
                    w.push(format!(
                        "LUMIGO_CAPTURE_PAYLOADS={v:?} is not true/1/yes/on or false/0/no/off; using true"
                    ));
                }
                true
            }
        };
        let capture_headers = CaptureHeaders {
            server_request: header_list(
                &get,
                "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
            ),
            server_response: header_list(
                &get,
                "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE",
            ),
            client_request: header_list(
                &get,
                "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST",
            ),
            client_response: header_list(
                &get,
                "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE",
            ),
        };

        let defaults = AttributeLimits::default();
        let limit =
            |names: [&str; 2], default: usize, w: &mut Vec<String>| match nonempty(get(names[0])) {
                Some(v) => parse_count(names[0], Some(v), default, w),
                None => parse_count(names[1], get(names[1]), default, w),
            };
        let attribute_limits = AttributeLimits {
            value_length: limit(
                [
                    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                ],
                defaults.value_length,
                w,
            ),
            count: limit(
                [
                    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
                    "OTEL_ATTRIBUTE_COUNT_LIMIT",
                ],
                defaults.count,
                w,
            ),
        };

        let filter_patterns = |name: &str, w: &mut Vec<String>| {
            crate::filter::parse_patterns(name, get(name).as_deref(), w)
        };
        let both = filter_patterns("LUMIGO_FILTER_HTTP_ENDPOINTS_REGEX", w);
        let mut server_filter_patterns = both.clone();
        server_filter_patterns.extend(filter_patterns(
            "LUMIGO_FILTER_HTTP_ENDPOINTS_REGEX_SERVER",
            w,
        ));
        let mut client_filter_patterns = both;
        client_filter_patterns.extend(filter_patterns(
            "LUMIGO_FILTER_HTTP_ENDPOINTS_REGEX_CLIENT",
            w,
        ));
        let env_parent = nonempty(get("TRACEPARENT")).and_then(|raw| {
            let parsed = crate::propagation::parse_traceparent(&raw);
            if parsed.is_none() {
                w.push(format!(
                    "TRACEPARENT={raw:?} is not a valid W3C traceparent; starting new traces"
                ));
            }
            parsed
        });
        let env_tracestate = env_parent
            .and(get("TRACESTATE"))
            .and_then(|raw| crate::propagation::sanitize_tracestate(&raw));

        Config {
            env_parent,
            env_tracestate,
            switch_off,
            switch_off_reason,
            debug,
            service_name: nonempty(get("OTEL_SERVICE_NAME")),
            token,
            destinations,
            spandump: nonempty(get("LUMIGO_DEBUG_SPANDUMP")).map(PathBuf::from),
            flush_timeout,
            batch,
            resource_attributes,
            tag: nonempty(get("LUMIGO_TAG")),
            query_secret_patterns,
            environment_secret_patterns,
            request_header_secret_patterns,
            response_header_secret_patterns,
            request_body_secret_patterns,
            response_body_secret_patterns,
            capture_payloads,
            capture_headers,
            attribute_limits,
            process_span: parse_bool("LUMIGO_PROCESS_SPAN", get("LUMIGO_PROCESS_SPAN"), w),
            propagators: parse_propagators(get("OTEL_PROPAGATORS"), w),
            server_filter_patterns,
            client_filter_patterns,
            execution_tag_headers: crate::tags::parse_names(
                get("LUMIGO_EXECUTION_TAG_HEADERS").as_deref(),
                w,
            ),
            sampler: crate::sampling::Sampler::from_env(
                get("OTEL_TRACES_SAMPLER").as_deref(),
                get("OTEL_TRACES_SAMPLER_ARG").as_deref(),
                w,
            ),
            runtime_dir: nonempty(get("XDG_RUNTIME_DIR")).map(PathBuf::from),
            warnings,
        }
    }

    /// How many bytes of each body (request and response) the app thread
    /// must copy for payload capture: the attribute length limit when
    /// `LUMIGO_CAPTURE_PAYLOADS` is on, 0 when it is off.
    pub fn payload_prefix_limit(&self) -> usize {
        if self.capture_payloads {
            self.attribute_limits.value_length
        } else {
            0
        }
    }

    /// True when spans have somewhere to go.
    pub fn has_destination(&self) -> bool {
        !self.destinations.is_empty() || self.spandump.is_some()
    }
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

    #[test]
    fn otlp_exporter_settings_take_the_traces_form_first() {
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]);
        let d = &c.destinations[0];
        assert_eq!(d.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(d.compression, Compression::None);
        assert_eq!(d.timeout, Duration::from_secs(10));
        assert_eq!((d.ca_file.as_ref(), d.client_cert.as_ref()), (None, None));

        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                "/etc/traces-ca.pem",
            ),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/etc/c.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "/etc/k.pem"),
        ]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let d = &c.destinations[0];
        assert_eq!(d.protocol, OtlpProtocol::HttpJson);
        assert_eq!(d.compression, Compression::Gzip);
        assert_eq!(d.timeout, Duration::from_millis(700));
        assert_eq!(d.ca_file, Some(PathBuf::from("/etc/traces-ca.pem")));
        assert_eq!(
            d.client_cert,
            Some((PathBuf::from("/etc/c.pem"), PathBuf::from("/etc/k.pem")))
        );

        // The Lumigo destination keeps the defaults.
        let c = config(&[
            ("LUMIGO_TRACER_TOKEN", "t"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/ca.pem"),
        ]);
        assert_eq!(
            c.destinations[0],
            OtlpDestination::new(
                c.destinations[0].endpoint.clone(),
                c.destinations[0].headers.clone()
            )
        );
        assert_eq!(c.destinations[1].protocol, OtlpProtocol::HttpJson);
    }

    #[test]
    fn unknown_or_unsupported_exporter_settings_are_said_and_defaulted() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/xml"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/etc/k.pem"),
        ]);
        let d = &c.destinations[0];
        assert_eq!(d.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(d.compression, Compression::None);
        assert_eq!(d.timeout, DEFAULT_OTLP_TIMEOUT);
        assert_eq!(d.client_cert, None);
        assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
        assert!(
            c.warnings[0].starts_with(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=\"http/xml\" is not http/protobuf, http/json \
                 or grpc; using http/protobuf"
            ),
            "{:?}",
            c.warnings
        );
        assert!(c.warnings[1].contains("\"zstd\" is not gzip or none"));
        assert!(c.warnings[3].contains("OTEL_EXPORTER_OTLP_CLIENT_KEY is set without"));
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/xml"),
        ]);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    }

    #[test]
    fn a_grpc_endpoint_without_scheme_is_tls_unless_insecure() {
        let grpc = ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"), grpc]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.destinations[0].endpoint, "https://collector:4317");
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
            grpc,
        ]);
        assert_eq!(c.destinations[0].endpoint, "http://collector:4317");
        // The traces variable wins; a scheme written wins over INSECURE.
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "[::1]:4317"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
            ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "false"),
            grpc,
        ]);
        assert_eq!(c.destinations[0].endpoint, "https://[::1]:4317");
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4317"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
            grpc,
        ]);
        assert_eq!(c.destinations[0].endpoint, "https://c:4317");
        // A broken value is told and read as false.
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4317"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "maybe"),
            grpc,
        ]);
        assert_eq!(c.destinations[0].endpoint, "https://c:4317");
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        // Not for OTLP/HTTP, whose endpoint is a URL: still refused.
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]);
        assert!(c.destinations.is_empty());
    }

    #[test]
    fn grpc_takes_the_endpoint_as_it_is_or_the_default() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.destinations[0].protocol, OtlpProtocol::Grpc);
        assert_eq!(c.destinations[0].endpoint, "https://c:4317");
        let c = config(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
        assert_eq!(c.destinations[0].endpoint, DEFAULT_GRPC_ENDPOINT);
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:9999"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        assert_eq!(c.destinations[0].endpoint, "http://c:9999");
        // http/protobuf still gets the traces path.
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        assert_eq!(c.destinations[0].endpoint, "http://c:4318/v1/traces");
    }

    #[test]
    fn defaults_have_no_destination() {
        let c = config(&[]);
        assert!(!c.switch_off && !c.debug);
        assert!(!c.has_destination());
        assert_eq!(c.flush_timeout, Duration::from_secs(1));
        assert_eq!(c.batch, BatchConfig::default());
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn switch_off_any_case() {
        assert!(config(&[("LUMIGO_SWITCH_OFF", "TRUE")]).switch_off);
        assert!(config(&[("LUMIGO_SWITCH_OFF", "True")]).switch_off);
        let c = config(&[("LUMIGO_SWITCH_OFF", "yes please")]);
        assert!(!c.switch_off);
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn switch_off_accepts_1_yes_on_in_any_case() {
        for on in ["1", "yes", "YES", "On", " on ", "tRuE"] {
            let c = config(&[("LUMIGO_SWITCH_OFF", on)]);
            assert!(c.switch_off, "{on:?}");
            assert!(c.warnings.is_empty(), "{on:?}: {:?}", c.warnings);
        }
        for off in ["0", "no", "OFF", "false", ""] {
            let c = config(&[("LUMIGO_SWITCH_OFF", off)]);
            assert!(!c.switch_off, "{off:?}");
            assert!(c.warnings.is_empty(), "{off:?}: {:?}", c.warnings);
        }
        assert!(config(&[("LUMIGO_DEBUG", "1")]).debug);
        assert!(is_true(" Yes") && !is_true("2") && !is_true(""));
    }

    #[test]
    fn token_selects_lumigo_endpoint_with_auth_header() {
        let c = config(&[("LUMIGO_TRACER_TOKEN", "  t_123 ")]);
        assert_eq!(c.destinations.len(), 1);
        assert_eq!(c.destinations[0].endpoint, DEFAULT_LUMIGO_ENDPOINT);
        assert_eq!(
            c.destinations[0].headers,
            vec![("Authorization".to_owned(), "LumigoToken t_123".to_owned())]
        );
        let c = config(&[
            ("LUMIGO_TRACER_TOKEN", "t"),
            ("LUMIGO_ENDPOINT", "http://127.0.0.1:4318/v1/traces"),
        ]);
        assert_eq!(
            c.destinations[0].endpoint,
            "http://127.0.0.1:4318/v1/traces"
        );
    }

    #[test]
    fn otel_endpoints_and_headers() {
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b, x=1,broken"),
        ]);
        assert_eq!(
            c.destinations[0].endpoint,
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            c.destinations[0].headers,
            vec![("api-key".into(), "a b".into()), ("x".into(), "1".into())]
        );
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        let c = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4318/custom"),
        ]);
        assert_eq!(c.destinations[0].endpoint, "http://b:4318/custom");
    }

    #[test]
    fn impossible_endpoints_are_dropped_with_a_warning() {
        for bad in [
            "http://127.0.0.1:99999",
            "http://127.0.0.1:0",
            "http://127.0.0.1:",
            "http://127.0.0.1:4318x",
            "http://127.0.0.1:+80",
            "http://:4318",
            "http://",
            "ftp://collector:4318",
            "collector:4318",
            "http://user:pw@:4318",
            "http://[::1:4318",
            "http://[::1]x:4318",
            "http://coll ector:4318",
        ] {
            let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", bad)]);
            assert!(c.destinations.is_empty(), "{bad} accepted");
            assert_eq!(c.warnings.len(), 1, "{bad}: {:?}", c.warnings);
            assert!(
                c.warnings[0].contains("no spans are sent there"),
                "{:?}",
                c.warnings
            );
        }
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:99999")]);
        assert!(c.warnings[0].contains("\"99999\""), "{:?}", c.warnings);
        let c = config(&[
            ("LUMIGO_TRACER_TOKEN", "t"),
            ("LUMIGO_ENDPOINT", "https://x:70000/v1/traces"),
        ]);
        assert!(c.destinations.is_empty() && c.warnings.len() == 1);
        for good in [
            "http://127.0.0.1:4318",
            "HTTPS://collector",
            "http://collector:1/",
            "http://collector:65535?x=1",
            "http://[::1]:4318",
            "http://[::1]",
            "http://user:pw@collector:4318",
        ] {
            let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", good)]);
            assert_eq!(c.destinations.len(), 1, "{good} refused: {:?}", c.warnings);
            assert!(c.warnings.is_empty(), "{good}: {:?}", c.warnings);
        }
    }

    #[test]
    fn durations_and_counts() {
        let c = config(&[
            ("LUMIGO_FLUSH_TIMEOUT", "2.5"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512"),
        ]);
        assert_eq!(c.flush_timeout, Duration::from_millis(2500));
        assert_eq!(c.batch.schedule_delay, Duration::from_millis(200));
        assert_eq!(c.batch.max_queue_size, 100);
        assert_eq!(
            c.batch.max_export_batch_size, 100,
            "batch never exceeds the queue"
        );
        assert_eq!(
            config(&[("LUMIGO_FLUSH_TIMEOUT", "300ms")]).flush_timeout,
            Duration::from_millis(300)
        );
        let c = config(&[
            ("LUMIGO_FLUSH_TIMEOUT", "soon"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "-3"),
        ]);
        assert_eq!(c.flush_timeout, Duration::from_secs(1));
        assert_eq!(c.batch.max_queue_size, 2048);
        assert_eq!(c.warnings.len(), 2);
    }

    #[test]
    fn propagators() {
        use crate::propagators::Propagators;
        assert_eq!(config(&[]).propagators, Propagators::default());
        let c = config(&[("OTEL_PROPAGATORS", "baggage, tracecontext")]);
        assert_eq!(c.propagators, Propagators::default());
        assert_eq!(
            config(&[("OTEL_PROPAGATORS", "none")]).propagators,
            Propagators::NONE
        );
        let c = config(&[("OTEL_PROPAGATORS", "b3")]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(
            c.propagators,
            Propagators {
                b3: true,
                ..Propagators::NONE
            },
            "b3 alone asks for no W3C headers"
        );
        let c = config(&[("OTEL_PROPAGATORS", "B3Multi,tracecontext")]);
        assert!(c.propagators.b3multi && c.propagators.tracecontext);
        assert!(!c.propagators.b3 && !c.propagators.baggage);
        let c = config(&[("OTEL_PROPAGATORS", "xray,tracecontext")]);
        assert_eq!(c.warnings.len(), 1, "xray is not implemented");
        assert!(c.propagators.tracecontext);
    }

    #[test]
    fn environment_carrier() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = config(&[("TRACEPARENT", tp), ("TRACESTATE", "k=v")]);
        assert_eq!(
            c.env_parent.unwrap().span_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(c.env_tracestate.as_deref(), Some("k=v"));
        let c = config(&[("TRACEPARENT", "garbage"), ("TRACESTATE", "k=v")]);
        assert!(c.env_parent.is_none() && c.env_tracestate.is_none());
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn resource_attributes_are_decoded() {
        let c = config(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=prod,team=a%2Cb",
        )]);
        assert_eq!(
            c.resource_attributes,
            vec![
                ("deployment.environment".into(), "prod".into()),
                ("team".into(), "a,b".into())
            ]
        );
    }

    #[test]
    fn masking_patterns_fall_back_in_order() {
        assert_eq!(
            config(&[]).query_secret_patterns.len(),
            DEFAULT_SECRET_PATTERNS.len()
        );
        let c = config(&[("LUMIGO_SECRET_MASKING_REGEX", r#"["sid"]"#)]);
        assert_eq!(c.query_secret_patterns, vec!["sid"]);
        let c = config(&[
            ("LUMIGO_SECRET_MASKING_REGEX", r#"["sid"]"#),
            (
                "LUMIGO_SECRET_MASKING_REGEX_HTTP_QUERY_PARAMS",
                r#"["q.*"]"#,
            ),
        ]);
        assert_eq!(c.query_secret_patterns, vec!["q.*"]);
        let c = config(&[("LUMIGO_SECRET_MASKING_REGEX", "not json")]);
        assert_eq!(c.query_secret_patterns.len(), DEFAULT_SECRET_PATTERNS.len());
        assert_eq!(c.warnings.len(), 1);
        // One broken regex: the defaults, not a weakened list.
        let c = config(&[("LUMIGO_SECRET_MASKING_REGEX", r#"["ok", "(unclosed"]"#)]);
        assert_eq!(c.query_secret_patterns.len(), DEFAULT_SECRET_PATTERNS.len());
        assert_eq!(
            c.request_body_secret_patterns.len(),
            DEFAULT_SECRET_PATTERNS.len()
        );
        // Parsed once, warned once.
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("\"(unclosed\""), "{:?}", c.warnings);
        let c = config(&[
            ("LUMIGO_SECRET_MASKING_REGEX", r#"["sid"]"#),
            (
                "LUMIGO_SECRET_MASKING_REGEX_HTTP_REQUEST_BODIES",
                r#"["[x"]"#,
            ),
        ]);
        assert_eq!(c.request_body_secret_patterns, vec!["sid"]);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    }

    #[test]
    fn sdk_disabled_and_enable_traces_false_switch_tracing_off() {
        for vars in [
            [("OTEL_SDK_DISABLED", "true")],
            [("OTEL_SDK_DISABLED", "TRUE")],
            [("LUMIGO_ENABLE_TRACES", "false")],
            [("LUMIGO_ENABLE_TRACES", "False")],
        ] {
            let c = config(&vars);
            assert!(c.switch_off, "{vars:?}");
            assert!(c.switch_off_reason.contains(vars[0].0), "{vars:?}");
            assert!(c.warnings.is_empty(), "{vars:?}: {:?}", c.warnings);
        }
        for vars in [
            [("OTEL_SDK_DISABLED", "false")],
            [("LUMIGO_ENABLE_TRACES", "true")],
            [("LUMIGO_ENABLE_TRACES", "")],
        ] {
            assert!(!config(&vars).switch_off, "{vars:?}");
        }
        let c = config(&[("LUMIGO_ENABLE_TRACES", "nope")]);
        assert!(!c.switch_off);
        assert_eq!(c.warnings.len(), 1);
        assert_eq!(
            config(&[("LUMIGO_SWITCH_OFF", "true")]).switch_off_reason,
            "LUMIGO_SWITCH_OFF is set"
        );
    }

    #[test]
    fn traces_exporter_none_drops_otlp_but_keeps_the_span_dump() {
        let base = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("LUMIGO_TRACER_TOKEN", "t"),
            ("LUMIGO_DEBUG_SPANDUMP", "/tmp/x.jsonl"),
        ];
        let with = |v: &str| {
            let mut vars = base.to_vec();
            vars.push(("OTEL_TRACES_EXPORTER", v));
            config(&vars)
        };
        assert_eq!(config(&base).destinations.len(), 2);
        assert_eq!(with("otlp").destinations.len(), 2);
        let c = with("none");
        assert!(c.destinations.is_empty());
        assert!(c.spandump.is_some() && c.has_destination());
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = with("console");
        assert_eq!(c.destinations.len(), 2, "console is refused, otlp stays");
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("LUMIGO_DEBUG_SPANDUMP=/dev/stderr"));
        let c = with("zipkin");
        assert_eq!(c.destinations.len(), 2, "unknown: the default");
        assert_eq!(c.warnings.len(), 1);
        assert!(!config(&[("OTEL_TRACES_EXPORTER", "none")]).has_destination());
    }

    #[test]
    fn misspelt_propagator_does_not_turn_tracecontext_off() {
        let c = config(&[("OTEL_PROPAGATORS", "tracecontext,baggagge")]);
        assert!(c.propagators.tracecontext);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("baggagge"));
        // Nothing but unknown names: the default, with a warning.
        let c = config(&[("OTEL_PROPAGATORS", "tracecontxt")]);
        assert!(c.propagators.tracecontext);
        assert_eq!(c.warnings.len(), 1);
        // Known but not implemented: said so.
        let c = config(&[("OTEL_PROPAGATORS", "tracecontext,jaeger")]);
        assert!(c.propagators.tracecontext);
        assert!(
            c.warnings[0].contains("not implemented"),
            "{:?}",
            c.warnings
        );
        let c = config(&[("OTEL_PROPAGATORS", " None ")]);
        assert!(!c.propagators.any() && c.warnings.is_empty());
        assert!(
            config(&[("OTEL_PROPAGATORS", "TraceContext")])
                .propagators
                .tracecontext
        );
    }

    #[test]
    fn attribute_limits_fall_back_in_order() {
        assert_eq!(config(&[]).attribute_limits, AttributeLimits::default());
        assert_eq!(AttributeLimits::default().value_length, 2048);
        assert_eq!(AttributeLimits::default().count, 128);
        let c = config(&[("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100")]);
        assert_eq!(c.attribute_limits.value_length, 100);
        let c = config(&[
            ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100"),
            ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "50"),
            ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "7"),
        ]);
        assert_eq!(c.attribute_limits.value_length, 50);
        assert_eq!(c.attribute_limits.count, 7);
        let c = config(&[("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "lots")]);
        assert_eq!(c.attribute_limits.value_length, 2048);
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn cut_str_keeps_whole_characters() {
        assert_eq!(cut_str("abc", 5), "abc");
        assert_eq!(cut_str("abc", 2), "ab");
        assert_eq!(cut_str("aé", 2), "a");
        assert_eq!(cut_str("€€", 4), "€");
        assert_eq!(cut_str("x", 0), "");
    }

    #[test]
    fn payload_capture_settings() {
        let c = config(&[]);
        assert!(c.capture_payloads);
        assert_eq!(c.payload_prefix_limit(), 2048);
        assert_eq!(c.capture_headers, CaptureHeaders::default());
        let c = config(&[
            ("LUMIGO_CAPTURE_PAYLOADS", "FALSE"),
            ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100"),
        ]);
        assert!(!c.capture_payloads);
        assert_eq!(c.payload_prefix_limit(), 0);
        let c = config(&[
            ("LUMIGO_CAPTURE_PAYLOADS", "maybe"),
            ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100"),
            (
                "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
                " X-Request-Id ,Accept,, accept",
            ),
            (
                "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_RESPONSE",
                "ETag",
            ),
        ]);
        assert!(c.capture_payloads);
        assert_eq!(c.payload_prefix_limit(), 100);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert_eq!(c.capture_headers.server_request, ["x-request-id", "accept"]);
        assert_eq!(c.capture_headers.client_response, ["etag"]);
        assert!(c.capture_headers.client_request.is_empty());
    }

    #[test]
    fn every_masking_area_falls_back_and_takes_all() {
        let c = config(&[
            ("LUMIGO_SECRET_MASKING_REGEX", r#"["sid"]"#),
            ("LUMIGO_SECRET_MASKING_REGEX_HTTP_REQUEST_HEADERS", "ALL"),
            (
                "LUMIGO_SECRET_MASKING_REGEX_HTTP_RESPONSE_BODIES",
                r#"["r.*"]"#,
            ),
        ]);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.request_header_secret_patterns, [".*"]);
        assert_eq!(c.response_header_secret_patterns, ["sid"]);
        assert_eq!(c.request_body_secret_patterns, ["sid"]);
        assert_eq!(c.response_body_secret_patterns, ["r.*"]);
        let c = config(&[]);
        for p in [
            &c.request_header_secret_patterns,
            &c.response_header_secret_patterns,
            &c.request_body_secret_patterns,
            &c.response_body_secret_patterns,
        ] {
            assert_eq!(p.len(), DEFAULT_SECRET_PATTERNS.len());
        }
    }

    #[test]
    fn environment_masking_patterns_fall_back_in_order() {
        let c = config(&[]);
        assert_eq!(
            c.environment_secret_patterns.len(),
            DEFAULT_SECRET_PATTERNS.len()
        );
        let c = config(&[("LUMIGO_SECRET_MASKING_REGEX", r#"["sid"]"#)]);
        assert_eq!(c.environment_secret_patterns, vec!["sid"]);
        let c = config(&[
            ("LUMIGO_SECRET_MASKING_REGEX", r#"["sid"]"#),
            ("LUMIGO_SECRET_MASKING_REGEX_ENVIRONMENT", "all"),
        ]);
        assert_eq!(c.environment_secret_patterns, vec![".*"]);
        assert_eq!(c.query_secret_patterns, vec!["sid"]);
    }
}
