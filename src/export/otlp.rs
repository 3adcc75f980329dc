//! OTLP export of span batches to one endpoint, over HTTP or gRPC.
//!
//! A batch is encoded straight from our [`SpanRecord`]s into a buffer kept
//! across batches (protobuf: `proto.rs`, or JSON: `json.rs`), gzipped when
//! the destination says so, and POSTed by a blocking client
//! (`transport.rs`) on the worker thread. The request follows the OTLP/HTTP
//! specification: `POST` of an `ExportTraceServiceRequest` with
//! `Content-Type: application/x-protobuf` or `application/json` (and
//! `Content-Encoding: gzip`); any 2xx is success. A plain `http://`
//! endpoint is reached by the small HTTP/1.1 client of this library
//! (`http1.rs`); `https://` and gRPC by the transport library
//! (`transport.rs`), which is then loaded. OTLP/gRPC sends the same
//! protobuf (gzipped: `grpc-encoding: gzip`) in a unary
//! `TraceService/Export` call; the transport library frames it, and OK is
//! success.
//!
//! Retries, as the specification says: a throttled or unavailable endpoint
//! (429, 502, 503, 504) is asked again after its `Retry-After`, or else
//! after an exponential backoff with jitter (1 s, 2 s, 4 s, at most 5 s,
//! ±20%), as long as the wait ends within the export timeout
//! (`OTEL_EXPORTER_OTLP_TIMEOUT`) and, while the process exits, within its
//! flush deadline. gRPC calls are retried likewise for the statuses the
//! specification names retryable (CANCELLED, DEADLINE_EXCEEDED, ABORTED,
//! OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS, and RESOURCE_EXHAUSTED when the
//! answer carries a `RetryInfo`), after the `RetryInfo` delay when there is
//! one. A transport error is retried once after a short pause
//! (a kept-alive connection the server closed). Then the batch is dropped
//! and the failure counted by the pipeline. Retrying happens on the worker:
//! the app never waits, and spans arriving meanwhile wait in the bounded
//! queue (full → dropped and counted), so memory does not grow.
//!
//! Everything about the destination (endpoint, headers, protocol,
//! compression, timeout, certificates) comes from the configuration; no
//! `OTEL_EXPORTER_OTLP_*` variable is read here.

use std::time::{Duration, Instant};

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::health::EndpointHealth;
use super::http1::{self, Http1Client};
use super::transport::{new_transport, Answer, Transport};
use super::{json, proto, Exporter, Loss};
use crate::config::{BatchConfig, Compression, OtlpDestination, OtlpProtocol};
use crate::fd_custody;
use crate::span::{AttrValue, SpanRecord};

/// The instrumentation scope of every span we export.
pub const SCOPE_NAME: &str = "lumigo-run";

/// Pause before the one retry of an export that failed in transport.
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// First backoff before retrying a throttled or unavailable endpoint that
/// gave no `Retry-After`; doubled each time, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A retry wait is cut into slices this long, so that an exit flush that
/// starts meanwhile is noticed.
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// Encode buffers larger than this are released after the batch instead of
/// kept for the next one (a batch of huge spans must not pin its memory).
const KEEP_BUFFER_BYTES: usize = 4 << 20;

/// Transports replaced at most (each replaced one is forgotten, not
/// freed); beyond this, a lost connection just fails one attempt.
const MAX_TRANSPORT_REPLACEMENTS: u32 = 16;

/// Sends batches to one OTLP endpoint (HTTP or gRPC).
pub(crate) struct OtlpExporter {
    endpoint: String,
    client: Box<dyn Transport>,
    /// For a replacement transport: headers and options.
    headers: Vec<(String, String)>,
    protocol: OtlpProtocol,
    compression: Compression,
    /// The gzipped body, reused from batch to batch.
    compressed: Vec<u8>,
    /// [`fd_custody::revocations`] when `client` was made.
    revocations: u64,
    replacements: u32,
    timeout: Duration,
    /// `ResourceSpans.resource`, encoded once.
    resource: Vec<u8>,
    /// `ScopeSpans.scope`, encoded once.
    scope: Vec<u8>,
    /// The request body, reused from batch to batch: `body[body_start..]`
    /// (protobuf is written after room for its front; see
    /// `proto::encode_request_at`).
    body: Vec<u8>,
    body_start: usize,
    /// Why the last failed export failed.
    failure: Loss,
    /// Shared with the pipeline's exit flush (see `health.rs`).
    health: Arc<EndpointHealth>,
}

impl OtlpExporter {
    /// Builds the exporter; the returned strings are non-fatal problems
    /// (e.g. an invalid header that was skipped). Fails when no transport
    /// can be made (the transport library cannot be loaded).
    pub(crate) fn new(
        destination: &OtlpDestination,
        batch: &BatchConfig,
        resource: &[(String, AttrValue)],
        health: Arc<EndpointHealth>,
    ) -> Result<(OtlpExporter, Vec<String>), String> {
        let revocations = fd_custody::revocations();
        let headers = transport_headers(destination);
        // `OTEL_BSP_EXPORT_TIMEOUT` bounds every export too.
        let timeout = destination.timeout.min(batch.export_timeout);
        let (client, problems) = make_transport(
            destination.protocol,
            &destination.endpoint,
            &headers,
            timeout,
        )?;
        let (resource, scope) = match destination.protocol {
            OtlpProtocol::HttpProtobuf | OtlpProtocol::Grpc => (
                proto::resource_field(resource),
                proto::scope_field(SCOPE_NAME, crate::VERSION),
            ),
            OtlpProtocol::HttpJson => (
                json::resource_field(resource),
                json::scope_field(SCOPE_NAME, crate::VERSION),
            ),
        };
        let exporter = OtlpExporter {
            endpoint: destination.endpoint.clone(),
            client,
            headers,
            protocol: destination.protocol,
            compression: destination.compression,
            compressed: Vec::new(),
            revocations,
            replacements: 0,
            timeout,
            resource,
            scope,
            body: Vec::new(),
            body_start: 0,
            failure: Loss::Transport,
            health,
        };
        Ok((exporter, problems))
    }

    /// The app closed or replaced a socket of ours (perhaps one of this
    /// transport's connections, whose number may now be the app's): the
    /// transport is forgotten, never freed (freeing would close and shut
    /// down what it holds), and a new one made.
    fn replace_transport_if_revoked(&mut self) {
        let now = fd_custody::revocations();
        if now == self.revocations || self.replacements >= MAX_TRANSPORT_REPLACEMENTS {
            return;
        }
        self.revocations = now;
        let made = make_transport(self.protocol, &self.endpoint, &self.headers, self.timeout);
        if let Ok((client, _)) = made {
            std::mem::forget(std::mem::replace(&mut self.client, client));
            self.replacements += 1;
        }
    }

    /// A 2xx answer may say that the collector rejected some spans (OTLP
    /// partial success): told under `LUMIGO_DEBUG`, not retried.
    fn report_partial_success(&self, body: &[u8], spans: usize) {
        let partial = match self.protocol {
            OtlpProtocol::HttpProtobuf | OtlpProtocol::Grpc => proto::partial_success(body),
            OtlpProtocol::HttpJson => json::partial_success(body),
        };
        if let Some((rejected, message)) = partial {
            if rejected > 0 || !message.is_empty() {
                crate::lumigo_debug!(
                    "{} accepted the batch but rejected {rejected} of {spans} spans: {message:?}",
                    self.endpoint
                );
            }
        }
    }

    fn post_with_retry(&mut self, spans: usize) -> Result<(), String> {
        const GRPC_OK: u8 = 0;
        let start = Instant::now();
        let body = match self.compression {
            Compression::None => &self.body[self.body_start..],
            Compression::Gzip => &self.compressed,
        };
        let mut backoff = FIRST_BACKOFF;
        let mut transport_retried = false;
        let outcome = loop {
            let outcome = self.client.post(&self.endpoint, body);
            let wait = match &outcome {
                Err(_) if !transport_retried => {
                    transport_retried = true;
                    RETRY_DELAY
                }
                Ok(Answer {
                    grpc_status: Some(code),
                    retry_after,
                    ..
                }) if grpc_retryable(*code, retry_after.is_some()) => match retry_after {
                    Some(asked) => (*asked).max(RETRY_DELAY),
                    None => {
                        let wait = jittered(backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        wait
                    }
                },
                Ok(Answer {
                    grpc_status: Some(_),
                    ..
                }) => break outcome,
                Ok(Answer {
                    status: 429 | 502 | 503 | 504,
                    retry_after,
                    ..
                }) => match retry_after {
                    // `Retry-After: 0` must not make a busy loop.
                    Some(asked) => (*asked).max(RETRY_DELAY),
                    None => {
                        let wait = jittered(backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        wait
                    }
                },
                _ => break outcome,
            };
            if start.elapsed() + wait >= self.timeout || !wait_unless_exiting(&self.health, wait) {
                break outcome;
            }
        };
        match outcome {
            Ok(Answer {
                grpc_status: Some(GRPC_OK),
                body,
                ..
            }) => {
                self.report_partial_success(&body, spans);
                Ok(())
            }
            Ok(Answer {
                grpc_status: Some(code),
                body,
                ..
            }) => {
                self.failure = Loss::Grpc(code);
                Err(format!(
                    "the endpoint answered gRPC {}: {:?}",
                    super::loss::grpc_name(code),
                    String::from_utf8_lossy(&body)
                ))
            }
            Ok(Answer {
                status: 200..=299,
                body,
                ..
            }) => {
                self.report_partial_success(&body, spans);
                Ok(())
            }
            Ok(Answer { status, .. }) => {
                self.failure = Loss::Http(status);
                Err(format!("the endpoint answered HTTP {status}"))
            }
            Err(e) => {
                self.failure = Loss::Transport;
                Err(e)
            }
        }
    }

    /// Encodes `spans` into `body` (and `compressed`).
    fn encode(&mut self, spans: &[SpanRecord]) {
        match self.protocol {
            OtlpProtocol::HttpProtobuf | OtlpProtocol::Grpc => {
                self.body_start =
                    proto::encode_request_at(&mut self.body, &self.resource, &self.scope, spans)
            }
            OtlpProtocol::HttpJson => {
                json::encode_request(&mut self.body, &self.resource, &self.scope, spans);
                self.body_start = 0;
            }
        }
        if self.compression == Compression::Gzip {
            gzip(&self.body[self.body_start..], &mut self.compressed);
        }
    }
}

/// Whether a gRPC status is worth another try (the OTLP specification's
/// list): RESOURCE_EXHAUSTED only when the server said when (`RetryInfo`).
fn grpc_retryable(code: u8, has_retry_info: bool) -> bool {
    match code {
        // CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE,
        // DATA_LOSS.
        1 | 4 | 10 | 11 | 14 | 15 => true,
        8 => has_retry_info,
        _ => false,
    }
}

/// Whether a destination is served by the transport library (`https://`
/// or gRPC) rather than this library's own HTTP/1.1 client.
pub fn needs_transport_library(destination: &OtlpDestination) -> bool {
    destination.protocol == OtlpProtocol::Grpc || !http1::serves(&destination.endpoint)
}

/// The client of a destination: this library's own HTTP/1.1 client for a
/// plain `http://` OTLP/HTTP endpoint (no transport library loaded), else
/// one from the transport library (TLS, gRPC).
fn make_transport(
    protocol: OtlpProtocol,
    endpoint: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(Box<dyn Transport>, Vec<String>), String> {
    if protocol != OtlpProtocol::Grpc && http1::serves(endpoint) {
        let (client, problems) = Http1Client::new(headers, timeout);
        return Ok((Box::new(client), problems));
    }
    new_transport(headers, timeout)
}

/// The destination's headers plus its options for the transport.
fn transport_headers(destination: &OtlpDestination) -> Vec<(String, String)> {
    use super::transport::*;
    let mut headers = destination.headers.clone();
    let mut option = |name: &str, value: String| headers.push((name.to_owned(), value));
    let content_type = match destination.protocol {
        OtlpProtocol::HttpProtobuf => "application/x-protobuf",
        OtlpProtocol::HttpJson => "application/json",
        OtlpProtocol::Grpc => {
            option(OPTION_PROTOCOL, "grpc".to_owned());
            "application/grpc"
        }
    };
    option(OPTION_CONTENT_TYPE, content_type.to_owned());
    if destination.compression == Compression::Gzip {
        option(OPTION_CONTENT_ENCODING, "gzip".to_owned());
    }
    let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
    if let Some(ca) = &destination.ca_file {
        option(OPTION_CA_FILE, path(ca));
    }
    if let Some((cert, key)) = &destination.client_cert {
        option(OPTION_CLIENT_CERT_FILE, path(cert));
        option(OPTION_CLIENT_KEY_FILE, path(key));
    }
    headers
}

/// `body` gzipped into `out` (replaced). Fast compression: the export
/// thread's time matters more than the last few bytes.
fn gzip(body: &[u8], out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    let mut encoder =
        flate2::write::GzEncoder::new(std::mem::take(out), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(body);
    *out = encoder.finish().unwrap_or_default();
}

/// `base` ±20%, from the id generator's randomness.
fn jittered(base: Duration) -> Duration {
    let r = u64::from_le_bytes(crate::ids::span_id()) % 401; // 0..=400
    base * (800 + r as u32) / 1000
}

/// Sleeps `wait` unless the process is exiting and its flush would give up
/// before the wait ends: then returns false at once (or as soon as an exit
/// starts during the wait).
fn wait_unless_exiting(health: &EndpointHealth, wait: Duration) -> bool {
    let until = Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        if health.exit_time_left().is_some_and(|exit| exit <= left) {
            return false;
        }
        std::thread::sleep(left.min(WAIT_SLICE));
    }
}

impl Exporter for OtlpExporter {
    fn export(&mut self, spans: &[SpanRecord]) -> Result<(), String> {
        self.replace_transport_if_revoked();
        self.encode(spans);
        self.health.busy.store(true, Ordering::Release);
        let result = self.post_with_retry(spans.len());
        self.health.busy.store(false, Ordering::Release);
        match (&result, self.failure) {
            (Ok(()), _) => self.health.mark_up(),
            (Err(_), Loss::Transport) => self.health.mark_down(),
            // It answered: alive, if unhappy.
            (Err(_), _) => self.health.mark_up(),
        }
        if self.body.capacity() > KEEP_BUFFER_BYTES {
            self.body = Vec::new();
        }
        if self.compressed.capacity() > KEEP_BUFFER_BYTES {
            self.compressed = Vec::new();
        }
        result
    }

    fn failure(&self) -> Loss {
        self.failure
    }

    fn describe(&self) -> String {
        format!("OTLP endpoint {}", self.endpoint)
    }
}
