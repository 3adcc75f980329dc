//! OTLP/HTTP (protobuf) export of span batches to one endpoint.
//!
//! A batch is encoded straight from our [`SpanRecord`]s into a buffer kept
//! across batches (`proto.rs`) and POSTed by a blocking client
//! (`transport.rs`) on the worker thread. The request follows the OTLP/HTTP
//! specification: `POST` of an `ExportTraceServiceRequest` with
//! `Content-Type: application/x-protobuf`; any 2xx is success. A throttled or
//! unavailable endpoint (429, 502, 503, 504) or a transport error is retried
//! once after a short pause, if the export timeout leaves room for it; then
//! the batch is dropped and the failure counted by the pipeline, so a dead
//! endpoint never holds the queue.
//!
//! Everything about the destination (endpoint, headers, timeout) comes from
//! the configuration; no `OTEL_EXPORTER_OTLP_*` variable is read here.

use std::time::{Duration, Instant};

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::health::EndpointHealth;
use super::transport::{new_transport, Transport};
use super::{proto, Exporter, Loss};
use crate::config::{BatchConfig, OtlpDestination};
use crate::fd_custody;
use crate::span::{AttrValue, SpanRecord};

/// The instrumentation scope of every span we export.
pub const SCOPE_NAME: &str = "lumigo-run";

/// Pause before the one retry of a throttled or failed export.
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// Encode buffers larger than this are released after the batch instead of
/// kept for the next one (a batch of huge spans must not pin its memory).
const KEEP_BUFFER_BYTES: usize = 4 << 20;

/// Transports replaced at most (each replaced one is forgotten, not
/// freed); beyond this, a lost connection just fails one attempt.
const MAX_TRANSPORT_REPLACEMENTS: u32 = 16;

/// Sends batches to one OTLP/HTTP endpoint.
pub(crate) struct OtlpExporter {
    endpoint: String,
    client: Box<dyn Transport>,
    /// For a replacement transport.
    headers: Vec<(String, String)>,
    /// [`fd_custody::revocations`] when `client` was made.
    revocations: u64,
    replacements: u32,
    timeout: Duration,
    /// `ResourceSpans.resource`, encoded once.
    resource: Vec<u8>,
    /// `ScopeSpans.scope`, encoded once.
    scope: Vec<u8>,
    /// The request body, reused from batch to batch.
    body: Vec<u8>,
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
        let (client, problems) = new_transport(&destination.headers, batch.export_timeout)?;
        let exporter = OtlpExporter {
            endpoint: destination.endpoint.clone(),
            client,
            headers: destination.headers.clone(),
            revocations,
            replacements: 0,
            timeout: batch.export_timeout,
            resource: proto::resource_field(resource),
            scope: proto::scope_field(SCOPE_NAME, crate::VERSION),
            body: Vec::new(),
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
        if let Ok((client, _)) = new_transport(&self.headers, self.timeout) {
            std::mem::forget(std::mem::replace(&mut self.client, client));
            self.replacements += 1;
        }
    }

    fn post_with_retry(&mut self) -> Result<(), String> {
        let start = Instant::now();
        let mut outcome = self.client.post(&self.endpoint, &self.body);
        let retryable = match &outcome {
            Err(_) => true,
            Ok(status) => matches!(status, 429 | 502 | 503 | 504),
        };
        if retryable && start.elapsed() + RETRY_DELAY < self.timeout {
            std::thread::sleep(RETRY_DELAY);
            outcome = self.client.post(&self.endpoint, &self.body);
        }
        match outcome {
            Ok(200..=299) => Ok(()),
            Ok(status) => {
                self.failure = Loss::Http(status);
                Err(format!("the endpoint answered HTTP {status}"))
            }
            Err(e) => {
                self.failure = Loss::Transport;
                Err(e)
            }
        }
    }
}

impl Exporter for OtlpExporter {
    fn export(&mut self, spans: &[SpanRecord]) -> Result<(), String> {
        self.replace_transport_if_revoked();
        proto::encode_request(&mut self.body, &self.resource, &self.scope, spans);
        self.health.busy.store(true, Ordering::Release);
        let result = self.post_with_retry();
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
        result
    }

    fn failure(&self) -> Loss {
        self.failure
    }

    fn describe(&self) -> String {
        format!("OTLP endpoint {}", self.endpoint)
    }
}
