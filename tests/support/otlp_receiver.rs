//! A real OTLP/HTTP receiver for integration tests.
//!
//! `OtlpReceiver::start()` listens on `127.0.0.1:0` and serves HTTP/1.1 on a
//! thread per connection (keep-alive; `Content-Length` and chunked bodies).
//! Each `POST /v1/traces` body is decoded as an
//! `ExportTraceServiceRequest` with the opentelemetry-proto types (protobuf,
//! or JSON through their serde support when the `Content-Type` is
//! `application/json`; gunzipped first under `Content-Encoding: gzip`) and
//! its spans are stored, flattened, as [`ReceivedSpan`]s together with the
//! request's headers. The answer is `200` with an empty
//! `ExportTraceServiceResponse` (or the status set by
//! [`OtlpReceiver::set_status`], or the next one queued by
//! [`OtlpReceiver::answer_next`], after [`OtlpReceiver::set_delay`]).
//!
//! It never hangs a test: every read has a timeout, waits are bounded, and
//! idle connections are closed.
//!
//! Include it with `#[path = "support/otlp_receiver.rs"] mod otlp_receiver;`
//! (or `pub mod otlp_receiver;` in `tests/support/mod.rs`).
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;

/// OTLP `Span.SpanKind` values.
pub const SPAN_KIND_INTERNAL: i32 = 1;
pub const SPAN_KIND_SERVER: i32 = 2;
pub const SPAN_KIND_CLIENT: i32 = 3;
pub const SPAN_KIND_PRODUCER: i32 = 4;
pub const SPAN_KIND_CONSUMER: i32 = 5;
/// OTLP `Status.StatusCode` values.
pub const STATUS_UNSET: i32 = 0;
pub const STATUS_OK: i32 = 1;
pub const STATUS_ERROR: i32 = 2;

/// Largest request head or body the receiver accepts.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 64 * 1024 * 1024;
/// How long a connection may wait for the rest of a request.
const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle keep-alive connections are closed after this (longer than ureq's
/// pool idle age, so the client never writes into a closing connection).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(200);

/// One received span, flattened, with values as strings.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedSpan {
    pub name: String,
    /// OTLP span kind, e.g. [`SPAN_KIND_SERVER`].
    pub kind: i32,
    /// Lower-case hex.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub trace_state: String,
    /// OTLP span flags (trace flags in the low byte, plus the
    /// "has remote parent" bits).
    pub flags: u32,
    pub start_ns: u64,
    pub end_ns: u64,
    /// OTLP status code, e.g. [`STATUS_ERROR`].
    pub status_code: i32,
    pub status_message: String,
    pub attributes: BTreeMap<String, String>,
    pub resource: BTreeMap<String, String>,
    pub scope_name: String,
    pub scope_version: String,
    /// Headers of the HTTP request that carried this span (lower-case names).
    pub request_headers: BTreeMap<String, String>,
}

impl ReceivedSpan {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
    pub fn resource_attr(&self, key: &str) -> Option<&str> {
        self.resource.get(key).map(String::as_str)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request_headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// One HTTP request the receiver got.
#[derive(Clone, Debug)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub body_len: usize,
    /// The request body as it arrived (protobuf bytes).
    pub body: Vec<u8>,
    pub span_count: usize,
    /// The status the receiver answered with.
    pub status: u16,
    /// When the request was read.
    pub received_at: Instant,
}

#[derive(Default)]
struct State {
    spans: Mutex<Vec<ReceivedSpan>>,
    requests: Mutex<Vec<ReceivedRequest>>,
    errors: Mutex<Vec<String>>,
    status: AtomicU16,
    /// Answers for the next requests: status and `Retry-After` seconds.
    script: Mutex<VecDeque<(u16, Option<u64>)>>,
    /// Milliseconds to wait before answering.
    delay_ms: AtomicU64,
    /// The partial success told in every 200 answer.
    partial: Mutex<Option<(i64, String)>>,
    stop: AtomicBool,
}

/// See the module documentation.
pub struct OtlpReceiver {
    addr: SocketAddr,
    state: Arc<State>,
}

impl OtlpReceiver {
    pub fn start() -> OtlpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("receiver address");
        let state = Arc::new(State::default());
        state.status.store(200, Ordering::Relaxed);
        let accept_state = Arc::clone(&state);
        std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || accept_loop(listener, accept_state))
            .expect("spawn the receiver thread");
        OtlpReceiver { addr, state }
    }

    /// `http://127.0.0.1:PORT/v1/traces`.
    pub fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// `http://127.0.0.1:PORT` (for `OTEL_EXPORTER_OTLP_ENDPOINT`, which gets `/v1/traces` appended).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.state.spans).clone()
    }

    /// How many spans were received so far (cheaper than `spans().len()`).
    pub fn span_count(&self) -> usize {
        lock(&self.state.spans).len()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.state.requests).clone()
    }

    /// Protocol problems seen (undecodable bodies, bad requests).
    pub fn errors(&self) -> Vec<String> {
        lock(&self.state.errors).clone()
    }

    /// Answer further requests with `status` (spans of non-2xx requests are
    /// not stored).
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::Relaxed);
    }

    /// Answer the next requests with these statuses (and `Retry-After`
    /// seconds), one each, before going back to [`set_status`](Self::set_status)'s.
    pub fn answer_next(&self, answers: &[(u16, Option<u64>)]) {
        lock(&self.state.script).extend(answers.iter().copied());
    }

    /// Answer 200s with a partial success: `rejected` spans, `message`.
    pub fn set_partial_success(&self, rejected: i64, message: &str) {
        *lock(&self.state.partial) = Some((rejected, message.to_owned()));
    }

    /// Wait this long before answering each request (a slow collector).
    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Polls until `pred` holds for the spans received, or `timeout` passes;
    /// returns the spans either way.
    pub fn wait_for(
        &self,
        pred: impl Fn(&[ReceivedSpan]) -> bool,
        timeout: Duration,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if pred(&spans) || Instant::now() >= deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until at least `n` spans arrived (or `timeout`).
    pub fn wait_for_spans(&self, n: usize, timeout: Duration) -> Vec<ReceivedSpan> {
        self.wait_for(|s| s.len() >= n, timeout)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        // Unblock accept(); connection threads notice the flag within POLL.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    for stream in listener.incoming() {
        if state.stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let conn_state = Arc::clone(&state);
        let _ = std::thread::Builder::new()
            .name("otlp-conn".into())
            .spawn(move || {
                if let Err(e) = serve(stream, &conn_state) {
                    lock(&conn_state.errors).push(e);
                }
            });
    }
}

/// A parsed request.
struct Request {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    close: bool,
}

/// Serves requests on one connection until the peer closes, the connection
/// idles out, or the receiver stops.
fn serve(stream: TcpStream, state: &State) -> Result<(), String> {
    stream
        .set_read_timeout(Some(POLL))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(STALL_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    loop {
        let Some(request) = conn.read_request(state)? else {
            return Ok(());
        };
        let (status, retry_after) = handle(&request, state);
        let delay = state.delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let json = is_json(&request.headers);
        let response = ExportTraceServiceResponse {
            partial_success: lock(&state.partial).clone().map(|(rejected, message)| {
                ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message,
                }
            }),
        };
        let body = match (status, json) {
            (200, false) => response.encode_to_vec(),
            (200, true) => serde_json::to_vec(&response).unwrap_or_default(),
            _ => Vec::new(),
        };
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}{}\r\n",
            reason(status),
            if json {
                "application/json"
            } else {
                "application/x-protobuf"
            },
            body.len(),
            retry_after
                .map(|s| format!("Retry-After: {s}\r\n"))
                .unwrap_or_default(),
            if request.close {
                "Connection: close\r\n"
            } else {
                ""
            }
        );
        let mut out = head.into_bytes();
        out.extend_from_slice(&body);
        conn.stream
            .write_all(&out)
            .map_err(|e| format!("writing the response: {e}"))?;
        if request.close {
            return Ok(());
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn is_json(headers: &BTreeMap<String, String>) -> bool {
    headers
        .get("content-type")
        .is_some_and(|t| t.starts_with("application/json"))
}

/// The request as the OTLP/HTTP specification has it sent: gzipped or
/// not, protobuf or JSON.
fn decode_request(request: &Request) -> Result<ExportTraceServiceRequest, String> {
    let gunzipped;
    let body = match request.headers.get("content-encoding").map(String::as_str) {
        None => &request.body[..],
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&request.body[..])
                .read_to_end(&mut out)
                .map_err(|e| format!("not gzip: {e}"))?;
            gunzipped = out;
            &gunzipped[..]
        }
        Some(other) => return Err(format!("unknown Content-Encoding {other:?}")),
    };
    if is_json(&request.headers) {
        serde_json::from_slice(body).map_err(|e| format!("not OTLP JSON: {e}"))
    } else {
        ExportTraceServiceRequest::decode(body).map_err(|e| e.to_string())
    }
}

/// Records the request and its spans; returns the status to answer with
/// and its `Retry-After`.
fn handle(request: &Request, state: &State) -> (u16, Option<u64>) {
    let (mut status, retry_after) = lock(&state.script)
        .pop_front()
        .unwrap_or((state.status.load(Ordering::Relaxed), None));
    let mut spans = Vec::new();
    if request.method != "POST" || request.path != "/v1/traces" {
        status = 404;
    } else {
        match decode_request(request) {
            Ok(decoded) => spans = flatten(&decoded, &request.headers),
            Err(e) => {
                lock(&state.errors).push(format!("undecodable OTLP body: {e}"));
                status = 400;
            }
        }
    }
    lock(&state.requests).push(ReceivedRequest {
        method: request.method.clone(),
        path: request.path.clone(),
        headers: request.headers.clone(),
        body_len: request.body.len(),
        body: request.body.clone(),
        span_count: spans.len(),
        status,
        received_at: Instant::now(),
    });
    if (200..300).contains(&status) {
        lock(&state.spans).extend(spans);
    }
    (status, retry_after)
}

pub fn flatten(
    req: &ExportTraceServiceRequest,
    headers: &BTreeMap<String, String>,
) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            let (scope_name, scope_version) = ss
                .scope
                .as_ref()
                .map(|s| (s.name.clone(), s.version.clone()))
                .unwrap_or_default();
            for span in &ss.spans {
                let status = span.status.as_ref();
                out.push(ReceivedSpan {
                    name: span.name.clone(),
                    kind: span.kind,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    trace_state: span.trace_state.clone(),
                    flags: span.flags,
                    start_ns: span.start_time_unix_nano,
                    end_ns: span.end_time_unix_nano,
                    status_code: status.map_or(STATUS_UNSET, |s| s.code),
                    status_message: status.map(|s| s.message.clone()).unwrap_or_default(),
                    attributes: attributes(&span.attributes),
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                    request_headers: headers.clone(),
                });
            }
        }
    }
    out
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(stringify).unwrap_or_default(),
            )
        })
        .collect()
}

/// An attribute value as a string: strings as they are, numbers and bools
/// as Rust prints them, arrays and maps in a JSON-like form.
pub fn stringify(v: &AnyValue) -> String {
    match &v.value {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(stringify).collect();
            format!("[{}]", items.join(","))
        }
        Some(any_value::Value::KvlistValue(l)) => {
            let items: Vec<String> = l
                .values
                .iter()
                .map(|kv| {
                    format!(
                        "{}={}",
                        kv.key,
                        kv.value.as_ref().map(stringify).unwrap_or_default()
                    )
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
        #[allow(unreachable_patterns)]
        Some(other) => format!("{other:?}"),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet consumed (pipelined requests).
    buf: Vec<u8>,
}

enum Fill {
    Data,
    Eof,
}

impl Conn {
    /// Reads more bytes. Gives up when the receiver stops, or when nothing
    /// arrives for `limit` (idle or stalled).
    fn fill(&mut self, state: &State, limit: Duration) -> Result<Fill, String> {
        let start = Instant::now();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if state.stop.load(Ordering::Relaxed) {
                return Ok(Fill::Eof);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(Fill::Eof),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(Fill::Data);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if start.elapsed() >= limit {
                        return Err(format!("no data for {limit:?}"));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Makes sure `n` bytes are buffered.
    fn need(&mut self, n: usize, state: &State) -> Result<(), String> {
        while self.buf.len() < n {
            if let Fill::Eof = self.fill(state, STALL_TIMEOUT)? {
                return Err("connection closed mid-request".into());
            }
        }
        Ok(())
    }

    /// Reads a CRLF-terminated line (without the CRLF).
    fn line(&mut self, state: &State) -> Result<String, String> {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err("line too long".into());
            }
            if let Fill::Eof = self.fill(state, STALL_TIMEOUT)? {
                return Err("connection closed mid-line".into());
            }
        }
    }

    /// The next request, or `None` when the connection ends cleanly.
    fn read_request(&mut self, state: &State) -> Result<Option<Request>, String> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > MAX_HEAD {
                return Err("request head too large".into());
            }
            let limit = if self.buf.is_empty() {
                IDLE_TIMEOUT
            } else {
                STALL_TIMEOUT
            };
            match self.fill(state, limit) {
                Ok(Fill::Data) => {}
                Ok(Fill::Eof) if self.buf.is_empty() => return Ok(None),
                Ok(Fill::Eof) => return Err("connection closed mid-head".into()),
                // An idle keep-alive connection timing out is a clean end.
                Err(_) if self.buf.is_empty() => return Ok(None),
                Err(e) => return Err(e),
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let version = parts.next().unwrap_or_default().to_owned();
        let mut headers = BTreeMap::new();
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let chunked = headers
            .get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let body = if chunked {
            self.chunked_body(state)?
        } else {
            let len: usize = match headers.get("content-length") {
                Some(v) => v.parse().map_err(|_| format!("bad Content-Length {v:?}"))?,
                None => 0,
            };
            if len > MAX_BODY {
                return Err(format!("body of {len} bytes is too large"));
            }
            self.need(len, state)?;
            self.buf.drain(..len).collect()
        };
        let connection = headers.get("connection").map(|v| v.to_ascii_lowercase());
        let close = connection.as_deref() == Some("close")
            || (version == "HTTP/1.0" && connection.as_deref() != Some("keep-alive"));
        Ok(Some(Request {
            method,
            path,
            headers,
            body,
            close,
        }))
    }

    fn chunked_body(&mut self, state: &State) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let size_line = self.line(state)?;
            let size_hex = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| format!("bad chunk size {size_line:?}"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !self.line(state)?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > MAX_BODY {
                return Err("chunked body too large".into());
            }
            self.need(size + 2, state)?;
            body.extend_from_slice(&self.buf[..size]);
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err("chunk not followed by CRLF".into());
            }
            self.buf.drain(..size + 2);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
