//! OTLP/HTTP JSON (`http/json`), written straight from [`SpanRecord`]s.
//!
//! The same `ExportTraceServiceRequest` as `proto.rs`, in the OTLP JSON
//! mapping of the specification: field names in lowerCamelCase, trace and
//! span ids as lower-case hex (not base64), enums (`kind`, `status.code`) as
//! integers, 64-bit integers (`startTimeUnixNano`, `intValue`) as decimal
//! strings as the protobuf JSON mapping writes them, and fields at their
//! default value left out. The tests decode the output with
//! `opentelemetry-proto`'s serde types.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::span::{AttrValue, SpanKind, SpanRecord, SpanStatus};

/// A JSON string, quoted and escaped.
fn string(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
    out.push(b'"');
}

fn key_value(out: &mut Vec<u8>, key: &str, value: &AttrValue) {
    out.extend_from_slice(b"{\"key\":");
    string(out, key);
    out.extend_from_slice(b",\"value\":{");
    match value {
        AttrValue::Str(s) => {
            out.extend_from_slice(b"\"stringValue\":");
            string(out, s);
        }
        AttrValue::Bool(b) => {
            let _ = write!(out, "\"boolValue\":{b}");
        }
        AttrValue::Int(n) => {
            let _ = write!(out, "\"intValue\":\"{n}\"");
        }
    }
    out.extend_from_slice(b"}}");
}

fn attributes<'a, K: AsRef<str> + 'a>(
    out: &mut Vec<u8>,
    attrs: impl Iterator<Item = (&'a K, &'a AttrValue)>,
) {
    out.extend_from_slice(b"\"attributes\":[");
    for (i, (key, value)) in attrs.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        key_value(out, key.as_ref(), value);
    }
    out.push(b']');
}

/// `"resource":{…}`, written once per exporter.
pub(crate) fn resource_field(attrs: &[(String, AttrValue)]) -> Vec<u8> {
    let mut out = b"\"resource\":{".to_vec();
    attributes(&mut out, attrs.iter().map(|(k, v)| (k, v)));
    out.push(b'}');
    out
}

/// `"scope":{…}`, written once per exporter.
pub(crate) fn scope_field(name: &str, version: &str) -> Vec<u8> {
    let mut out = b"\"scope\":{\"name\":".to_vec();
    string(&mut out, name);
    out.extend_from_slice(b",\"version\":");
    string(&mut out, version);
    out.push(b'}');
    out
}

/// Replaces `out` with one `ExportTraceServiceRequest` in JSON.
pub(crate) fn encode_request(
    out: &mut Vec<u8>,
    resource_field: &[u8],
    scope_field: &[u8],
    spans: &[SpanRecord],
) {
    out.clear();
    out.extend_from_slice(b"{\"resourceSpans\":[{");
    out.extend_from_slice(resource_field);
    out.extend_from_slice(b",\"scopeSpans\":[{");
    out.extend_from_slice(scope_field);
    out.extend_from_slice(b",\"spans\":[");
    for (i, span) in spans.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        encode_span(out, span);
    }
    out.extend_from_slice(b"]}]}]}");
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn encode_span(out: &mut Vec<u8>, span: &SpanRecord) {
    let ctx = &span.context;
    out.extend_from_slice(b"{\"traceId\":");
    hex(out, &ctx.trace_id);
    out.extend_from_slice(b",\"spanId\":");
    hex(out, &ctx.span_id);
    if let Some(state) = ctx.trace_state.as_deref() {
        out.extend_from_slice(b",\"traceState\":");
        string(out, state);
    }
    if let Some(parent) = &span.parent_span_id {
        out.extend_from_slice(b",\"parentSpanId\":");
        hex(out, parent);
    }
    let remote = span.parent_span_id.is_some() && span.parent_is_remote;
    let flags = u32::from(ctx.trace_flags)
        | super::proto::FLAG_HAS_IS_REMOTE
        | if remote {
            super::proto::FLAG_IS_REMOTE
        } else {
            0
        };
    let _ = write!(out, ",\"flags\":{flags},\"name\":");
    string(out, &span.name);
    let kind = match span.kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    let _ = write!(
        out,
        ",\"kind\":{kind},\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\",",
        unix_nanos(span.start),
        unix_nanos(span.end)
    );
    attributes(out, span.attributes.iter().map(|(k, v)| (k, v)));
    if !span.links.is_empty() {
        out.extend_from_slice(b",\"links\":[");
        for (i, link) in span.links.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"traceId\":");
            hex(out, &link.context.trace_id);
            out.extend_from_slice(b",\"spanId\":");
            hex(out, &link.context.span_id);
            if let Some(state) = link.context.trace_state.as_deref() {
                out.extend_from_slice(b",\"traceState\":");
                string(out, state);
            }
            let _ = write!(out, ",\"flags\":{}}}", super::proto::link_flags(link));
        }
        out.push(b']');
    }
    match &span.status {
        SpanStatus::Unset => {}
        SpanStatus::Ok => out.extend_from_slice(b",\"status\":{\"code\":1}"),
        SpanStatus::Error(message) => {
            out.extend_from_slice(b",\"status\":{\"message\":");
            string(out, message);
            out.extend_from_slice(b",\"code\":2}");
        }
    }
    out.push(b'}');
}

/// `partialSuccess` of a JSON `ExportTraceServiceResponse`: (rejected
/// spans, error message), when the response has one. `rejectedSpans` may
/// be a string (the protobuf JSON mapping) or a number.
pub(crate) fn partial_success(response: &[u8]) -> Option<(i64, String)> {
    let v: serde_json::Value = serde_json::from_slice(response).ok()?;
    let partial = v.get("partialSuccess")?;
    let rejected = match partial.get("rejectedSpans") {
        Some(serde_json::Value::String(s)) => s.parse().ok()?,
        Some(n) => n.as_i64()?,
        None => 0,
    };
    let message = partial
        .get("errorMessage")
        .and_then(|m| m.as_str())
        .unwrap_or("")
        .to_owned();
    Some((rejected, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::SpanContext;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use std::time::Duration;

    fn records() -> Vec<SpanRecord> {
        let remote_child = SpanRecord {
            name: "POST /pay \"quoted\" \u{e9}\n".into(),
            kind: SpanKind::Client,
            context: SpanContext {
                trace_id: *b"0123456789abcdef",
                span_id: [0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 0xff],
                trace_flags: 1,
                trace_state: Some("congo=t61rcWkgMzE".into()),
            },
            parent_span_id: Some(*b"parent01"),
            parent_is_remote: true,
            start: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            end: UNIX_EPOCH + Duration::from_nanos(1_700_000_001_000_000_001),
            status: SpanStatus::Error("HTTP 503".into()),
            encoded: None,
            attributes: vec![
                ("http.request.method", AttrValue::from("POST")),
                ("server.port", AttrValue::Int(443)),
                ("big", AttrValue::Int(i64::MAX)),
                ("negative", AttrValue::Int(-5)),
                ("lumigo.truncated", AttrValue::Bool(true)),
                ("empty", AttrValue::from("")),
            ],
            links: vec![crate::span::SpanLink {
                context: SpanContext {
                    trace_id: [7; 16],
                    span_id: [8; 8],
                    trace_flags: 1,
                    trace_state: Some("rojo=00f067aa0ba902b7".into()),
                },
                remote: true,
            }],
        };
        let mut root = remote_child.clone();
        root.parent_span_id = None;
        root.context.trace_state = None;
        root.context.trace_flags = 0;
        root.status = SpanStatus::Ok;
        root.kind = SpanKind::Server;
        root.attributes.clear();
        root.links[0].context.trace_state = None;
        root.links[0].remote = false;
        root.links.push(root.links[0].clone());
        let mut local = remote_child.clone();
        local.parent_is_remote = false;
        local.status = SpanStatus::Unset;
        local.kind = SpanKind::Consumer;
        local.links.clear();
        vec![remote_child, root, local]
    }

    fn resource() -> Vec<(String, AttrValue)> {
        vec![
            ("service.name".into(), AttrValue::from("svc")),
            ("process.pid".into(), AttrValue::Int(4242)),
        ]
    }

    #[test]
    fn json_decodes_to_the_same_request_as_the_protobuf() {
        let spans = records();
        let mut json = b"stale".to_vec();
        encode_request(
            &mut json,
            &resource_field(&resource()),
            &scope_field("lumigo-run", "9.9.9"),
            &spans,
        );
        let from_json: ExportTraceServiceRequest = serde_json::from_slice(&json)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&json)));
        let mut pb = Vec::new();
        super::super::proto::encode_request(
            &mut pb,
            &super::super::proto::resource_field(&resource()),
            &super::super::proto::scope_field("lumigo-run", "9.9.9"),
            &spans,
        );
        let from_pb = ExportTraceServiceRequest::decode(&pb[..]).unwrap();
        assert_eq!(from_json, from_pb);
        assert_eq!(from_json.resource_spans[0].scope_spans[0].spans.len(), 3);
    }

    #[test]
    fn json_follows_the_otlp_mapping() {
        let mut json = Vec::new();
        encode_request(
            &mut json,
            &resource_field(&resource()),
            &scope_field("lumigo-run", "9.9.9"),
            &records()[..1],
        );
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let rs = &v["resourceSpans"][0];
        assert_eq!(rs["resource"]["attributes"][1]["value"]["intValue"], "4242");
        let ss = &rs["scopeSpans"][0];
        assert_eq!(ss["scope"]["name"], "lumigo-run");
        let s = &ss["spans"][0];
        // Hex ids, not base64.
        assert_eq!(s["traceId"], "30313233343536373839616263646566");
        assert_eq!(s["spanId"], "deadbeef000102ff");
        assert_eq!(s["parentSpanId"], "706172656e743031");
        assert_eq!(s["traceState"], "congo=t61rcWkgMzE");
        // Enums as integers, 64-bit integers as strings.
        assert_eq!(s["kind"], 3);
        assert_eq!(s["status"]["code"], 2);
        assert_eq!(s["status"]["message"], "HTTP 503");
        assert_eq!(s["startTimeUnixNano"], "1700000000123456789");
        assert_eq!(s["endTimeUnixNano"], "1700000001000000001");
        assert_eq!(s["flags"], 0x301);
        assert_eq!(s["name"], "POST /pay \"quoted\" \u{e9}\n");
        assert_eq!(
            s["attributes"][2]["value"]["intValue"],
            i64::MAX.to_string()
        );
        assert_eq!(s["attributes"][4]["value"]["boolValue"], true);
        assert_eq!(s["attributes"][0]["value"]["stringValue"], "POST");
    }

    #[test]
    fn partial_success_is_read_from_the_json_response() {
        use opentelemetry_proto::tonic::collector::trace::v1::{
            ExportTracePartialSuccess, ExportTraceServiceResponse,
        };
        let response = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "too old".into(),
            }),
        };
        let body = serde_json::to_vec(&response).unwrap();
        assert_eq!(partial_success(&body), Some((3, "too old".into())));
        let as_string = br#"{"partialSuccess":{"rejectedSpans":"2"}}"#;
        assert_eq!(partial_success(as_string), Some((2, String::new())));
        assert_eq!(partial_success(b"{}"), None);
        assert_eq!(partial_success(b""), None);
    }
}
