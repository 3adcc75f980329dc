//! OTLP/HTTP (protobuf) export through opentelemetry-otlp's `SpanExporter`.
//!
//! We skip the SDK's tracer and batch processor (their threads, thread-locals
//! and fork behaviour do not suit a preloaded library) and feed the exporter
//! `SpanData` converted from our own [`SpanRecord`]s. The exporter's async
//! `export` is driven by [`block_on`] on the worker thread; the HTTP client
//! underneath is blocking ([`UreqClient`]), so the future normally completes
//! on its first poll.
//!
//! The exporter builder reads `OTEL_EXPORTER_OTLP_*` variables itself. Every
//! one that matters is overridden here by the configuration: the endpoint
//! (`with_endpoint`), the protocol (`with_protocol`), the timeout
//! (`with_timeout`) and the headers (the client owns them, see
//! [`super::http_client`]). A compression variable is ignored by the builder
//! because no compression feature is compiled in.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind as OtelKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, Key, KeyValue, Value};
use opentelemetry_otlp::{Protocol, RetryPolicy, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter as _, SpanLinks};
use opentelemetry_sdk::Resource;

use super::http_client::UreqClient;
use super::Exporter;
use crate::config::{BatchConfig, OtlpDestination};
use crate::span::{AttrValue, SpanKind, SpanRecord, SpanStatus};

/// The instrumentation scope of every span we export.
pub const SCOPE_NAME: &str = "lumigo-run";

/// Sends batches to one OTLP/HTTP endpoint.
pub(crate) struct OtlpExporter {
    endpoint: String,
    exporter: opentelemetry_otlp::SpanExporter,
    scope: InstrumentationScope,
}

impl OtlpExporter {
    /// Builds the exporter; the returned strings are non-fatal problems
    /// (e.g. an invalid header that was skipped).
    pub(crate) fn new(
        destination: &OtlpDestination,
        batch: &BatchConfig,
        resource: &Resource,
    ) -> Result<(OtlpExporter, Vec<String>), String> {
        let (client, problems) = UreqClient::new(&destination.headers, batch.export_timeout);
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(destination.endpoint.clone())
            .with_timeout(batch.export_timeout)
            .with_http_client(client)
            // One retry at most (connection errors, 429/502/503/504), within
            // the export timeout: a dead endpoint must not hold the queue.
            .with_retry_policy(RetryPolicy::default().with_max_retries(1))
            .build()
            .map_err(|e| format!("OTLP exporter for {}: {e}", destination.endpoint))?;
        exporter.set_resource(resource);
        let exporter = OtlpExporter {
            endpoint: destination.endpoint.clone(),
            exporter,
            scope: scope(),
        };
        Ok((exporter, problems))
    }
}

impl Exporter for OtlpExporter {
    fn export(&mut self, spans: &[SpanRecord]) -> Result<(), String> {
        let batch = spans.iter().map(|s| to_span_data(s, &self.scope)).collect();
        block_on(self.exporter.export(batch)).map_err(|e| e.to_string())
    }

    fn describe(&self) -> String {
        format!("OTLP endpoint {}", self.endpoint)
    }
}

/// The OpenTelemetry resource for a detected attribute list.
pub(crate) fn resource(attrs: &[(String, AttrValue)]) -> Resource {
    Resource::builder_empty()
        .with_attributes(
            attrs
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), value(v))),
        )
        .build()
}

pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(SCOPE_NAME)
        .with_version(crate::VERSION)
        .build()
}

fn value(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => Value::String(s.clone().into()),
        AttrValue::Int(n) => Value::I64(*n),
        AttrValue::Bool(b) => Value::Bool(*b),
    }
}

/// Our span record as the SDK's exportable span.
pub(crate) fn to_span_data(span: &SpanRecord, scope: &InstrumentationScope) -> SpanData {
    let ctx = &span.context;
    // An invalid `tracestate` is dropped, as the W3C spec says a vendor must.
    let trace_state = ctx
        .trace_state
        .as_deref()
        .and_then(|raw| raw.parse::<TraceState>().ok())
        .unwrap_or_default();
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(ctx.trace_id),
            SpanId::from_bytes(ctx.span_id),
            TraceFlags::new(ctx.trace_flags),
            false,
            trace_state,
        ),
        parent_span_id: span
            .parent_span_id
            .map_or(SpanId::INVALID, SpanId::from_bytes),
        parent_span_is_remote: span.parent_span_id.is_some() && span.parent_is_remote,
        span_kind: match span.kind {
            SpanKind::Internal => OtelKind::Internal,
            SpanKind::Server => OtelKind::Server,
            SpanKind::Client => OtelKind::Client,
            SpanKind::Producer => OtelKind::Producer,
            SpanKind::Consumer => OtelKind::Consumer,
        },
        name: span.name.clone().into(),
        start_time: span.start,
        end_time: span.end,
        attributes: span
            .attributes
            .iter()
            .map(|(k, v)| KeyValue::new(Key::from_static_str(k), value(v)))
            .collect(),
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: match &span.status {
            SpanStatus::Unset => Status::Unset,
            SpanStatus::Ok => Status::Ok,
            SpanStatus::Error(description) => Status::error(description.clone()),
        },
        instrumentation_scope: scope.clone(),
    }
}

/// Runs a future to completion on the current thread, parking between polls.
/// Only for the export worker: the futures it drives do blocking I/O and
/// are ready on their first poll, so this rarely parks at all.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::SpanContext as Ctx;
    use std::time::{Duration, UNIX_EPOCH};

    fn record() -> SpanRecord {
        SpanRecord {
            name: "POST".into(),
            kind: SpanKind::Client,
            context: Ctx {
                trace_id: *b"0123456789abcdef",
                span_id: *b"spanid01",
                trace_flags: 1,
                trace_state: Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".into()),
            },
            parent_span_id: Some(*b"parent01"),
            parent_is_remote: true,
            start: UNIX_EPOCH + Duration::from_secs(10),
            end: UNIX_EPOCH + Duration::from_secs(11),
            status: SpanStatus::Error("HTTP 503".into()),
            attributes: vec![
                ("http.request.method", AttrValue::from("POST")),
                ("server.port", AttrValue::Int(443)),
                ("lumigo.truncated", AttrValue::Bool(true)),
            ],
        }
    }

    #[test]
    fn converts_every_field() {
        let data = to_span_data(&record(), &scope());
        assert_eq!(
            data.span_context.trace_id(),
            TraceId::from_bytes(*b"0123456789abcdef")
        );
        assert_eq!(
            data.span_context.span_id(),
            SpanId::from_bytes(*b"spanid01")
        );
        assert!(data.span_context.is_sampled());
        assert!(!data.span_context.is_remote(), "our own span is local");
        assert_eq!(
            data.span_context.trace_state().header(),
            "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        );
        assert_eq!(data.parent_span_id, SpanId::from_bytes(*b"parent01"));
        assert!(data.parent_span_is_remote);
        assert_eq!(data.span_kind, OtelKind::Client);
        assert_eq!(data.name, "POST");
        assert_eq!(data.start_time, UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(data.end_time, UNIX_EPOCH + Duration::from_secs(11));
        assert_eq!(data.status, Status::error("HTTP 503"));
        assert_eq!(
            data.attributes,
            vec![
                KeyValue::new("http.request.method", "POST"),
                KeyValue::new("server.port", 443i64),
                KeyValue::new("lumigo.truncated", true),
            ]
        );
        assert_eq!(data.instrumentation_scope.name(), "lumigo-run");
        assert_eq!(data.instrumentation_scope.version(), Some(crate::VERSION));
    }

    #[test]
    fn root_spans_and_bad_tracestate() {
        let mut r = record();
        r.parent_span_id = None;
        r.context.trace_state = Some("not a valid=tracestate,,=".into());
        r.context.trace_flags = 0;
        r.status = SpanStatus::Ok;
        let data = to_span_data(&r, &scope());
        assert_eq!(data.parent_span_id, SpanId::INVALID);
        assert!(
            !data.parent_span_is_remote,
            "no parent, so no remote parent"
        );
        assert_eq!(data.span_context.trace_state().header(), "");
        assert!(!data.span_context.is_sampled());
        assert_eq!(data.status, Status::Ok);
    }

    #[test]
    fn resource_carries_typed_attributes() {
        let r = resource(&[
            ("service.name".into(), AttrValue::from("svc")),
            ("process.pid".into(), AttrValue::Int(9)),
        ]);
        assert_eq!(r.get(&Key::new("service.name")), Some(Value::from("svc")));
        assert_eq!(r.get(&Key::new("process.pid")), Some(Value::I64(9)));
        assert_eq!(r.len(), 2, "no SDK detectors, no environment");
    }

    #[test]
    fn block_on_handles_pending_futures() {
        struct YieldOnce(bool);
        impl Future for YieldOnce {
            type Output = u8;
            fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u8> {
                if self.0 {
                    Poll::Ready(7)
                } else {
                    self.0 = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }
        }
        assert_eq!(block_on(YieldOnce(false)), 7);
    }
}
