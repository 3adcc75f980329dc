//! Differential test: the direct encoder (`proto.rs`) against the
//! OpenTelemetry SDK it replaced on the hot path.
//!
//! The same spans are made twice: as our `SpanRecord`s, encoded by
//! `proto::encode_request`, and through `opentelemetry_sdk` (a tracer
//! provider with our resource and scope, ids fed by an id generator,
//! explicit start and end times, parents given as span contexts), whose
//! finished `SpanData` opentelemetry-proto's transform turns into an
//! `ExportTraceServiceRequest`. Both requests are encoded to bytes and
//! decoded with opentelemetry-proto, and must say the same: names, ids,
//! parents, flags, trace state, kinds, times, status, attributes, links,
//! resource and scope.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    SpanContext as SdkContext, SpanId, SpanKind as SdkKind, Status, TraceContextExt, TraceFlags,
    TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue as ProtoKeyValue;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{IdGenerator, SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;
use prost::Message;

use super::otlp::SCOPE_NAME;
use super::proto;
use crate::span::{AttrValue, SpanContext, SpanKind, SpanLink, SpanRecord, SpanStatus};

/// Trace ids and span ids waiting to be handed out.
type Queues = (VecDeque<[u8; 16]>, VecDeque<[u8; 8]>);

/// Ids handed out in the order spans are built.
#[derive(Debug, Default, Clone)]
struct QueuedIds(Arc<Mutex<Queues>>);

impl IdGenerator for QueuedIds {
    fn new_trace_id(&self) -> TraceId {
        TraceId::from_bytes(self.0.lock().unwrap().0.pop_front().expect("a trace id"))
    }
    fn new_span_id(&self) -> SpanId {
        SpanId::from_bytes(self.0.lock().unwrap().1.pop_front().expect("a span id"))
    }
}

/// Keeps what the SDK exports.
#[derive(Debug, Default, Clone)]
struct Keep(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Keep {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        self.0.lock().unwrap().extend(batch);
        std::future::ready(Ok(()))
    }
}

fn sdk_value(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => Value::from(s.as_str().to_owned()),
        AttrValue::Int(i) => Value::I64(*i),
        AttrValue::Bool(b) => Value::Bool(*b),
    }
}

fn sdk_kind(k: SpanKind) -> SdkKind {
    match k {
        SpanKind::Internal => SdkKind::Internal,
        SpanKind::Server => SdkKind::Server,
        SpanKind::Client => SdkKind::Client,
        SpanKind::Producer => SdkKind::Producer,
        SpanKind::Consumer => SdkKind::Consumer,
    }
}

/// The request the SDK makes of `spans`, as bytes.
fn through_the_sdk(resource: &[(String, AttrValue)], spans: &[SpanRecord]) -> Vec<u8> {
    let ids = QueuedIds::default();
    let kept = Keep::default();
    let sdk_resource = Resource::builder_empty()
        .with_attributes(
            resource
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), sdk_value(v))),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_resource(sdk_resource.clone())
        .with_id_generator(ids.clone())
        .with_simple_exporter(kept.clone())
        .build();
    let tracer = provider.tracer_with_scope(
        InstrumentationScope::builder(SCOPE_NAME)
            .with_version(crate::VERSION)
            .build(),
    );
    for span in spans {
        let parent = match span.parent_span_id {
            Some(parent) => Context::new().with_remote_span_context(SdkContext::new(
                TraceId::from_bytes(span.context.trace_id),
                SpanId::from_bytes(parent),
                TraceFlags::new(span.context.trace_flags),
                span.parent_is_remote,
                span.context
                    .trace_state
                    .as_deref()
                    .map(|s| TraceState::from_key_value(parse_state(s)).unwrap())
                    .unwrap_or_default(),
            )),
            None => {
                ids.0.lock().unwrap().0.push_back(span.context.trace_id);
                Context::new()
            }
        };
        ids.0.lock().unwrap().1.push_back(span.context.span_id);
        let mut sdk_span = tracer
            .span_builder(span.name.as_str().to_owned())
            .with_kind(sdk_kind(span.kind))
            .with_start_time(span.start)
            .with_attributes(
                span.attributes
                    .iter()
                    .map(|(k, v)| KeyValue::new(*k, sdk_value(v))),
            )
            .with_links(
                span.links
                    .iter()
                    .map(|l| {
                        let state = l
                            .context
                            .trace_state
                            .as_deref()
                            .map_or_else(TraceState::default, |s| {
                                TraceState::from_key_value(parse_state(s)).unwrap()
                            });
                        opentelemetry::trace::Link::with_context(SdkContext::new(
                            TraceId::from_bytes(l.context.trace_id),
                            SpanId::from_bytes(l.context.span_id),
                            TraceFlags::new(l.context.trace_flags),
                            l.remote,
                            state,
                        ))
                    })
                    .collect(),
            )
            .start_with_context(&tracer, &parent);
        use opentelemetry::trace::Span as _;
        match &span.status {
            SpanStatus::Unset => {}
            SpanStatus::Ok => sdk_span.set_status(Status::Ok),
            SpanStatus::Error(message) => sdk_span.set_status(Status::error(message.clone())),
        }
        sdk_span.end_with_timestamp(span.end);
    }
    provider.force_flush().unwrap();
    let spans = std::mem::take(&mut *kept.0.lock().unwrap());
    let request = ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(
            spans,
            &ResourceAttributesWithSchema::from(&sdk_resource),
        ),
    };
    request.encode_to_vec()
}

fn parse_state(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The request our encoder makes of `spans`, as bytes.
fn through_our_encoder(resource: &[(String, AttrValue)], spans: &[SpanRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    proto::encode_request(
        &mut out,
        &proto::resource_field(resource),
        &proto::scope_field(SCOPE_NAME, crate::VERSION),
        spans,
    );
    out
}

fn sorted(mut kvs: Vec<ProtoKeyValue>) -> Vec<ProtoKeyValue> {
    kvs.sort_by(|a, b| a.key.cmp(&b.key));
    kvs
}

fn span(
    name: &str,
    kind: SpanKind,
    ids: ([u8; 16], [u8; 8], Option<[u8; 8]>),
    start_ms: u64,
    status: SpanStatus,
    attributes: Vec<(&'static str, AttrValue)>,
) -> SpanRecord {
    let start = SystemTime::UNIX_EPOCH
        + Duration::from_nanos(1_764_000_000_123_456_789)
        + Duration::from_millis(start_ms);
    SpanRecord {
        name: name.to_owned().into(),
        kind,
        context: SpanContext {
            trace_id: ids.0,
            span_id: ids.1,
            trace_flags: 1,
            trace_state: None,
        },
        parent_span_id: ids.2,
        parent_is_remote: false,
        start,
        end: start + Duration::from_micros(1_234_567),
        status,
        attributes,
        links: Vec::new(),
        encoded: None,
    }
}

#[test]
fn our_requests_decode_to_what_the_sdk_makes_of_the_same_spans() {
    let trace = [0x4b; 16];
    let other_trace = *b"\x0a\xf7\x65\x19\x16\xcd\x43\xdd\x84\x48\xeb\x21\x1c\x80\x31\x9c";
    let resource = vec![
        ("service.name".to_owned(), AttrValue::from("shop")),
        ("process.pid".to_owned(), AttrValue::Int(4242)),
        ("lumigo.tag".to_owned(), AttrValue::from("t\u{e9}st")),
        ("host.containerized".to_owned(), AttrValue::Bool(false)),
    ];
    let mut remote_child = span(
        "GET /orders/{id}",
        SpanKind::Server,
        (trace, [1; 8], Some([9; 8])),
        0,
        SpanStatus::Error("HTTP 503".to_owned()),
        vec![
            ("http.request.method", AttrValue::from("GET")),
            ("http.response.status_code", AttrValue::Int(503)),
            ("url.path", AttrValue::from("/orders/7")),
            ("server.port", AttrValue::Int(8080)),
            ("network.peer.address", AttrValue::from("")),
            ("lumigo.flag", AttrValue::Bool(true)),
        ],
    );
    remote_child.parent_is_remote = true;
    remote_child.context.trace_state = Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".to_owned());
    let root = span(
        "process",
        SpanKind::Internal,
        (other_trace, [4; 8], None),
        5,
        SpanStatus::Unset,
        vec![],
    );
    let mut consumer = span(
        "orders process",
        SpanKind::Consumer,
        (trace, [5; 8], Some([3; 8])),
        3,
        SpanStatus::Unset,
        vec![("messaging.message.body.size", AttrValue::Int(i64::MAX))],
    );
    consumer.links = vec![
        SpanLink {
            context: SpanContext {
                trace_id: other_trace,
                span_id: [6; 8],
                trace_flags: 1,
                trace_state: Some("rojo=00f067aa0ba902b7".to_owned()),
            },
            remote: true,
        },
        SpanLink {
            context: SpanContext {
                trace_id: trace,
                span_id: [3; 8],
                trace_flags: 0,
                trace_state: None,
            },
            remote: false,
        },
    ];
    let spans = vec![
        remote_child,
        span(
            "SELECT shop",
            SpanKind::Client,
            (trace, [2; 8], Some([1; 8])),
            1,
            SpanStatus::Ok,
            vec![
                ("db.system", AttrValue::from("postgresql")),
                (
                    "db.query.text",
                    AttrValue::from("SELECT * FROM orders WHERE id = $1"),
                ),
                ("db.response.returned_rows", AttrValue::Int(-1)),
            ],
        ),
        span(
            "orders publish",
            SpanKind::Producer,
            (trace, [3; 8], Some([1; 8])),
            2,
            SpanStatus::Unset,
            vec![("messaging.system", AttrValue::from("rabbitmq"))],
        ),
        consumer,
        root,
    ];

    let ours = ExportTraceServiceRequest::decode(through_our_encoder(&resource, &spans).as_slice())
        .expect("ours decodes");
    let sdk = ExportTraceServiceRequest::decode(through_the_sdk(&resource, &spans).as_slice())
        .expect("the SDK's decodes");

    assert_eq!(ours.resource_spans.len(), 1);
    assert_eq!(sdk.resource_spans.len(), 1);
    let (ours, sdk) = (&ours.resource_spans[0], &sdk.resource_spans[0]);
    let resource_of = |rs: &opentelemetry_proto::tonic::trace::v1::ResourceSpans| {
        sorted(rs.resource.clone().unwrap_or_default().attributes)
    };
    assert_eq!(resource_of(ours), resource_of(sdk), "resource");
    assert_eq!(resource_of(ours).len(), 4);
    assert_eq!(ours.schema_url, sdk.schema_url);
    assert_eq!(ours.scope_spans.len(), 1);
    assert_eq!(sdk.scope_spans.len(), 1);
    let (ours, sdk) = (&ours.scope_spans[0], &sdk.scope_spans[0]);
    let scope_of = |s: &opentelemetry_proto::tonic::trace::v1::ScopeSpans| {
        let scope = s.scope.clone().unwrap_or_default();
        (scope.name, scope.version, scope.attributes)
    };
    assert_eq!(scope_of(ours), scope_of(sdk), "scope");
    assert_eq!(scope_of(ours).0, SCOPE_NAME);
    assert_eq!(ours.spans.len(), spans.len());
    assert_eq!(sdk.spans.len(), spans.len());
    for (i, (o, s)) in ours.spans.iter().zip(&sdk.spans).enumerate() {
        let at = format!("span {i} ({})", o.name);
        assert_eq!(o.name, s.name, "{at}");
        assert_eq!(o.trace_id, s.trace_id, "{at}: trace id");
        assert_eq!(o.span_id, s.span_id, "{at}: span id");
        assert_eq!(o.parent_span_id, s.parent_span_id, "{at}: parent");
        assert_eq!(o.flags, s.flags, "{at}: flags");
        assert_eq!(o.trace_state, s.trace_state, "{at}: trace state");
        assert_eq!(o.kind, s.kind, "{at}: kind");
        assert_eq!(
            o.start_time_unix_nano, s.start_time_unix_nano,
            "{at}: start"
        );
        assert_eq!(o.end_time_unix_nano, s.end_time_unix_nano, "{at}: end");
        assert_eq!(
            o.status.clone().unwrap_or_default(),
            s.status.clone().unwrap_or_default(),
            "{at}: status"
        );
        assert_eq!(o.attributes, s.attributes, "{at}: attributes, in order");
        assert_eq!(
            o.dropped_attributes_count, s.dropped_attributes_count,
            "{at}"
        );
        assert_eq!((&o.events, &o.links), (&s.events, &s.links), "{at}");
    }
    assert_eq!(
        ours.spans[3].links.len(),
        2,
        "the links are there to compare"
    );
    // The test sees something: ids and times are what the spans said.
    assert_eq!(ours.spans[1].parent_span_id, vec![1; 8]);
    assert_eq!(
        ours.spans[0].trace_state,
        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    );
    assert_eq!(ours.spans[0].flags, 0x301);
    assert!(ours.spans[4].parent_span_id.is_empty(), "a root");
    assert_eq!(ours.spans[4].flags, 0x101);
    assert_eq!(
        ours.spans[0].end_time_unix_nano - ours.spans[0].start_time_unix_nano,
        1_234_567_000
    );
}
