//! OTLP trace protobuf, encoded straight from [`SpanRecord`]s.
//!
//! The export thread used to convert each record into the SDK's `SpanData`,
//! then into the generated OTLP structs, then into bytes: three copies of
//! every string and about 24,000 instructions per span, four fifths of the
//! export thread's work (BENCHMARKS.md). Here each record is written once,
//! field by field, into a buffer the exporter reuses from batch to batch.
//!
//! Only the messages we send are written: `ExportTraceServiceRequest` →
//! one `ResourceSpans` (resource encoded once per exporter) → one
//! `ScopeSpans` (scope encoded once) → `Span`s with string, int and bool
//! attributes and a status. Field numbers are those of
//! `opentelemetry/proto/trace/v1/trace.proto` and its imports; the tests
//! decode the output with the generated `opentelemetry-proto` types.
//!
//! Nested messages are written length-first without a sizing pass: one byte
//! is reserved for the length, and when the body turns out to need a longer
//! varint the body is moved up by the difference. Small messages
//! (attributes, status) never move. A span reserves two bytes (spans of 128
//! bytes to 16 KiB, nearly all, never move), and the request's two outer
//! messages are written last, in front of the spans, into room left for
//! them ([`encode_request_at`]): no byte of a batch is copied twice.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::span::{AttrValue, SpanKind, SpanRecord, SpanStatus};

const WIRE_VARINT: u32 = 0;
const WIRE_FIXED64: u32 = 1;
const WIRE_LEN: u32 = 2;
const WIRE_FIXED32: u32 = 5;

/// `Span.flags` bit: the `is_remote` bit of the parent is known.
pub(crate) const FLAG_HAS_IS_REMOTE: u32 = 0x100;
/// `Span.flags` bit: the parent span context came from another process.
pub(crate) const FLAG_IS_REMOTE: u32 = 0x200;

/// Appends protobuf fields to a byte buffer.
pub(crate) struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

/// Where an open nested message's reserved length byte sits.
#[must_use]
pub(crate) struct Open(usize);

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut Vec<u8>) -> Writer<'a> {
        Writer { buf }
    }

    fn varint(&mut self, v: u64) {
        let mut encoded = Scratch::default();
        encoded.varint(v);
        encoded.append_to(self.buf);
    }

    fn tag(&mut self, field: u32, wire: u32) {
        self.varint(u64::from(field << 3 | wire));
    }

    pub(crate) fn bytes(&mut self, field: u32, value: &[u8]) {
        self.tag(field, WIRE_LEN);
        self.varint(value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    pub(crate) fn string(&mut self, field: u32, value: &str) {
        self.bytes(field, value.as_bytes());
    }

    fn uint(&mut self, field: u32, value: u64) {
        self.tag(field, WIRE_VARINT);
        self.varint(value);
    }

    fn fixed64(&mut self, field: u32, value: u64) {
        self.tag(field, WIRE_FIXED64);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    fn fixed32(&mut self, field: u32, value: u32) {
        self.tag(field, WIRE_FIXED32);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    /// Starts a nested message; close it with [`Writer::close`].
    pub(crate) fn open(&mut self, field: u32) -> Open {
        self.tag(field, WIRE_LEN);
        self.buf.push(0);
        Open(self.buf.len() - 1)
    }

    /// Ends a nested message: writes its length, moving the body up when
    /// the length needs more than the one byte reserved for it.
    pub(crate) fn close(&mut self, open: Open) {
        let at = open.0;
        let body_start = at + 1;
        let len = self.buf.len() - body_start;
        if len < 0x80 {
            self.buf[at] = len as u8;
            return;
        }
        let mut encoded = Scratch::default();
        encoded.varint(len as u64);
        let n = encoded.len;
        let old_end = self.buf.len();
        self.buf.resize(old_end + n - 1, 0);
        self.buf.copy_within(body_start..old_end, at + n);
        self.buf[at..at + n].copy_from_slice(&encoded.bytes[..n]);
    }

    /// Starts a nested message expected to be 128 bytes to 16 KiB long
    /// (a span): two bytes are reserved for its length. Close it with
    /// [`Writer::close_wide`].
    fn open_wide(&mut self, field: u32) -> Open {
        self.tag(field, WIRE_LEN);
        self.buf.extend_from_slice(&[0, 0]);
        Open(self.buf.len() - 2)
    }

    /// Ends a message begun with [`Writer::open_wide`]: a two-byte length is
    /// written in place; a shorter or longer one moves the body.
    fn close_wide(&mut self, open: Open) {
        let at = open.0;
        let len = self.buf.len() - (at + 2);
        if (0x80..0x4000).contains(&len) {
            self.buf[at] = (len as u8 & 0x7f) | 0x80;
            self.buf[at + 1] = (len >> 7) as u8;
            return;
        }
        if len < 0x80 {
            self.buf[at] = len as u8;
            self.buf.copy_within(at + 2.., at + 1);
            self.buf.pop();
            return;
        }
        // Over 16 KiB: one reserved byte becomes the usual one, and
        // `close` makes room for the rest.
        self.buf.remove(at + 1);
        self.close(Open(at));
    }

    /// `KeyValue { key = 1; AnyValue value = 2 }` as field `field`. The most
    /// frequent message by far, so its lengths are computed up front rather
    /// than patched in after the body.
    pub(crate) fn key_value(&mut self, field: u32, key: &str, value: &AttrValue) {
        // int64 is a two's-complement varint: negative values take 10 bytes.
        let any_body = match value {
            AttrValue::Str(s) => 1 + varint_len(s.len() as u64) + s.len(),
            AttrValue::Bool(_) => 2,
            AttrValue::Int(n) => 1 + varint_len(*n as u64),
        };
        let kv_body = 1
            + varint_len(key.len() as u64)
            + key.len()
            + 1
            + varint_len(any_body as u64)
            + any_body;
        self.buf.reserve(kv_body + 6);
        if kv_body < 0x80 && field < 16 {
            // Nearly every attribute: all lengths and tags take one byte,
            // written as four-byte groups with no varint loop.
            let tag = (field << 3 | WIRE_LEN) as u8;
            self.buf
                .extend_from_slice(&[tag, kv_body as u8, 1 << 3 | 2, key.len() as u8]);
            self.buf.extend_from_slice(key.as_bytes());
            match value {
                AttrValue::Str(s) => {
                    let v = s.as_bytes();
                    self.buf.extend_from_slice(&[
                        2 << 3 | 2,
                        any_body as u8,
                        1 << 3 | 2,
                        v.len() as u8,
                    ]);
                    self.buf.extend_from_slice(v);
                }
                AttrValue::Bool(b) => {
                    self.buf
                        .extend_from_slice(&[2 << 3 | 2, any_body as u8, 2 << 3, u8::from(*b)]);
                }
                AttrValue::Int(n) => {
                    let mut head = Scratch::default();
                    head.varint(u64::from(2 << 3 | WIRE_LEN));
                    head.varint(any_body as u64);
                    head.varint(u64::from(3 << 3 | WIRE_VARINT));
                    head.varint(*n as u64);
                    head.append_to(self.buf);
                }
            }
            return;
        }
        // The framing bytes before the key, then before the value, are
        // assembled on the stack and appended at once.
        let mut head = Scratch::default();
        head.varint(u64::from(field << 3 | WIRE_LEN));
        head.varint(kv_body as u64);
        head.varint(u64::from(1 << 3 | WIRE_LEN));
        head.varint(key.len() as u64);
        head.append_to(self.buf);
        self.buf.extend_from_slice(key.as_bytes());
        let mut head = Scratch::default();
        head.varint(u64::from(2 << 3 | WIRE_LEN));
        head.varint(any_body as u64);
        match value {
            AttrValue::Str(s) => {
                head.varint(u64::from(1 << 3 | WIRE_LEN));
                head.varint(s.len() as u64);
                head.append_to(self.buf);
                self.buf.extend_from_slice(s.as_bytes());
            }
            AttrValue::Bool(b) => {
                head.varint(u64::from(2 << 3 | WIRE_VARINT));
                head.varint(u64::from(*b));
                head.append_to(self.buf);
            }
            AttrValue::Int(n) => {
                head.varint(u64::from(3 << 3 | WIRE_VARINT));
                head.varint(*n as u64);
                head.append_to(self.buf);
            }
        }
    }
}

/// The one varint encoder: up to 32 bytes of varints (one to four at the
/// call sites), built on the stack and appended to a buffer with one
/// fixed-size copy (which the compiler turns into a few vector stores,
/// unlike a call to `memcpy`) and a truncation.
#[derive(Default)]
struct Scratch {
    bytes: [u8; 32],
    len: usize,
}

impl Scratch {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            if let Some(b) = self.bytes.get_mut(self.len) {
                *b = (v as u8) | 0x80;
            }
            self.len += 1;
            v >>= 7;
        }
        if let Some(b) = self.bytes.get_mut(self.len) {
            *b = v as u8;
        }
        self.len += 1;
    }

    fn append_to(&self, buf: &mut Vec<u8>) {
        let end = buf.len() + self.len.min(self.bytes.len());
        buf.extend_from_slice(&self.bytes);
        buf.truncate(end);
    }
}

/// Bytes of `v` as a varint.
fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// `Resource { repeated KeyValue attributes = 1 }`, encoded as field 1 of
/// `ResourceSpans`: written once per exporter and copied into every request.
pub(crate) fn resource_field(attrs: &[(String, AttrValue)]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = Writer::new(&mut buf);
    let resource = w.open(1);
    for (key, value) in attrs {
        w.key_value(1, key, value);
    }
    w.close(resource);
    buf
}

/// Attributes as `Span.attributes` fields (field 9), for an
/// [`EncodedRun`](crate::span::EncodedRun).
pub(crate) fn encode_attributes(attrs: &[(&'static str, AttrValue)]) -> std::sync::Arc<[u8]> {
    let mut buf = Vec::new();
    let mut w = Writer::new(&mut buf);
    for (key, value) in attrs {
        w.key_value(9, key, value);
    }
    buf.into()
}

/// `InstrumentationScope { name = 1; version = 2 }`, encoded as field 1 of
/// `ScopeSpans`.
pub(crate) fn scope_field(name: &str, version: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = Writer::new(&mut buf);
    let scope = w.open(1);
    w.string(1, name);
    w.string(2, version);
    w.close(scope);
    buf
}

/// Replaces `out` with one `ExportTraceServiceRequest` holding `spans`
/// under the given pre-encoded resource and scope fields.
pub(crate) fn encode_request(
    out: &mut Vec<u8>,
    resource_field: &[u8],
    scope_field: &[u8],
    spans: &[SpanRecord],
) {
    let start = encode_request_at(out, resource_field, scope_field, spans);
    out.drain(..start);
}

/// Like [`encode_request`], without moving the spans: the request is
/// `out[start..]`, where `start` is returned. The spans are written after
/// room for the longest possible front (`ResourceSpans` and `ScopeSpans`
/// with their lengths, the resource and the scope), which is written
/// last, right-aligned against them.
pub(crate) fn encode_request_at(
    out: &mut Vec<u8>,
    resource_field: &[u8],
    scope_field: &[u8],
    spans: &[SpanRecord],
) -> usize {
    // A tag of one byte and a length of at most five (a request is far
    // below 4 GiB), twice.
    let room = 2 * 6 + resource_field.len() + scope_field.len();
    out.clear();
    out.resize(room, 0);
    let mut w = Writer::new(out);
    for span in spans {
        encode_span(&mut w, span);
    }
    let spans_len = out.len() - room;
    let scope_spans = scope_field.len() + spans_len;
    let resource_spans = resource_field.len() + 1 + varint_len(scope_spans as u64) + scope_spans;
    let mut front = Vec::with_capacity(room);
    let mut w = Writer::new(&mut front);
    w.tag(1, WIRE_LEN);
    w.varint(resource_spans as u64);
    w.buf.extend_from_slice(resource_field);
    w.tag(2, WIRE_LEN);
    w.varint(scope_spans as u64);
    w.buf.extend_from_slice(scope_field);
    let start = room - front.len();
    out[start..room].copy_from_slice(&front);
    start
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// One `Span` as field 2 of `ScopeSpans`.
fn encode_span(w: &mut Writer<'_>, span: &SpanRecord) {
    let ctx = &span.context;
    let s = w.open_wide(2);
    w.bytes(1, &ctx.trace_id);
    w.bytes(2, &ctx.span_id);
    // Valid by construction: every tracestate comes through
    // `propagation::sanitize_tracestate`.
    if let Some(state) = ctx.trace_state.as_deref() {
        w.string(3, state);
    }
    if let Some(parent) = &span.parent_span_id {
        w.bytes(4, parent);
    }
    w.string(5, &span.name);
    let kind = match span.kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    w.uint(6, kind);
    w.fixed64(7, unix_nanos(span.start));
    w.fixed64(8, unix_nanos(span.end));
    let attrs = &span.attributes;
    match span
        .encoded
        .as_ref()
        .and_then(|r| Some((r, attrs.get(r.at..r.at.checked_add(r.count)?)?)))
    {
        Some((run, encoded)) => {
            debug_assert_eq!(*encode_attributes(encoded), *run.bytes);
            for (key, value) in &attrs[..run.at] {
                w.key_value(9, key, value);
            }
            w.buf.extend_from_slice(&run.bytes);
            for (key, value) in &attrs[run.at + run.count..] {
                w.key_value(9, key, value);
            }
        }
        None => {
            for (key, value) in attrs {
                w.key_value(9, key, value);
            }
        }
    }
    // `Link { trace_id = 1; span_id = 2; trace_state = 3; flags = 6 }`.
    for link in &span.links {
        let l = w.open(13);
        w.bytes(1, &link.context.trace_id);
        w.bytes(2, &link.context.span_id);
        if let Some(state) = link.context.trace_state.as_deref() {
            w.string(3, state);
        }
        w.fixed32(6, link_flags(link));
        w.close(l);
    }
    // `Status { message = 2; code = 3 }`; an unset status is the default.
    match &span.status {
        SpanStatus::Unset => {}
        SpanStatus::Ok => {
            let status = w.open(15);
            w.uint(3, 1);
            w.close(status);
        }
        SpanStatus::Error(message) => {
            let status = w.open(15);
            w.string(2, message);
            w.uint(3, 2);
            w.close(status);
        }
    }
    let remote = span.parent_span_id.is_some() && span.parent_is_remote;
    let flags =
        u32::from(ctx.trace_flags) | FLAG_HAS_IS_REMOTE | if remote { FLAG_IS_REMOTE } else { 0 };
    w.fixed32(16, flags);
    w.close_wide(s);
}

/// A link's `flags`: the trace flags, and whether the linked context is
/// remote (known either way).
pub(crate) fn link_flags(link: &crate::span::SpanLink) -> u32 {
    u32::from(link.context.trace_flags)
        | FLAG_HAS_IS_REMOTE
        | if link.remote { FLAG_IS_REMOTE } else { 0 }
}

/// Reads one varint at the start of `buf`: (value, bytes read).
fn read_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in buf.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The fields of `buf` that are varints or length-delimited: (field,
/// value or length, the bytes of a length-delimited one). Stops at the
/// first malformed or other-typed field.
fn fields(mut buf: &[u8]) -> impl Iterator<Item = (u64, u64, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, n) = read_varint(buf)?;
        buf = &buf[n..];
        let (v, n) = read_varint(buf)?;
        buf = &buf[n..];
        match tag & 7 {
            0 => Some((tag >> 3, v, &[][..])),
            2 => {
                let len = usize::try_from(v).ok().filter(|l| *l <= buf.len())?;
                let (bytes, rest) = buf.split_at(len);
                buf = rest;
                Some((tag >> 3, v, bytes))
            }
            _ => None,
        }
    })
}

/// `ExportTraceServiceResponse.partial_success`: (rejected spans, error
/// message), when the response has one.
pub(crate) fn partial_success(response: &[u8]) -> Option<(i64, String)> {
    let (_, _, partial) = fields(response).find(|(f, _, _)| *f == 1)?;
    let mut rejected = 0;
    let mut message = String::new();
    for (field, value, bytes) in fields(partial) {
        match field {
            1 => rejected = value as i64,
            2 => message = String::from_utf8_lossy(bytes).into_owned(),
            _ => {}
        }
    }
    Some((rejected, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::SpanContext;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use prost::Message;
    use std::time::Duration;

    fn record(attrs: Vec<(&'static str, AttrValue)>) -> SpanRecord {
        SpanRecord {
            name: "POST /pay".into(),
            kind: SpanKind::Client,
            context: SpanContext {
                trace_id: *b"0123456789abcdef",
                span_id: *b"spanid01",
                trace_flags: 1,
                trace_state: Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".into()),
            },
            parent_span_id: Some(*b"parent01"),
            parent_is_remote: true,
            start: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            end: UNIX_EPOCH + Duration::from_nanos(1_700_000_001_000_000_001),
            status: SpanStatus::Error("HTTP 503".into()),
            encoded: None,
            attributes: attrs,
            links: vec![crate::span::SpanLink {
                context: SpanContext {
                    trace_id: *b"linkedtrace01234",
                    span_id: *b"linked01",
                    trace_flags: 1,
                    trace_state: Some("rojo=00f067aa0ba902b7".into()),
                },
                remote: true,
            }],
        }
    }

    fn decode(spans: &[SpanRecord]) -> ExportTraceServiceRequest {
        let resource = resource_field(&[
            ("service.name".into(), AttrValue::from("svc")),
            ("process.pid".into(), AttrValue::Int(4242)),
        ]);
        let scope = scope_field("lumigo-run", "9.9.9");
        let mut buf = vec![0xff; 3]; // stale content must go
        encode_request(&mut buf, &resource, &scope, spans);
        ExportTraceServiceRequest::decode(&buf[..]).expect("valid protobuf")
    }

    fn value(kv: &KeyValue) -> Value {
        kv.value.clone().unwrap().value.unwrap()
    }

    #[test]
    fn every_field_decodes_with_the_generated_types() {
        let req = decode(&[record(vec![
            ("http.request.method", AttrValue::from("POST")),
            ("server.port", AttrValue::Int(443)),
            ("lumigo.truncated", AttrValue::Bool(true)),
            ("negative", AttrValue::Int(-5)),
            ("empty", AttrValue::from("")),
        ])]);
        assert_eq!(req.resource_spans.len(), 1);
        let rs = &req.resource_spans[0];
        let resource = rs.resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0].key, "service.name");
        assert_eq!(
            value(&resource.attributes[0]),
            Value::StringValue("svc".into())
        );
        assert_eq!(value(&resource.attributes[1]), Value::IntValue(4242));
        let ss = &rs.scope_spans[0];
        let scope = ss.scope.as_ref().unwrap();
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("lumigo-run", "9.9.9")
        );
        let s = &ss.spans[0];
        assert_eq!(s.trace_id, b"0123456789abcdef");
        assert_eq!(s.span_id, b"spanid01");
        assert_eq!(s.parent_span_id, b"parent01");
        assert_eq!(s.trace_state, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
        assert_eq!(s.name, "POST /pay");
        assert_eq!(s.kind, 3);
        assert_eq!(s.start_time_unix_nano, 1_700_000_000_123_456_789);
        assert_eq!(s.end_time_unix_nano, 1_700_000_001_000_000_001);
        assert_eq!(s.flags, 0x301, "sampled, remote parent known and remote");
        let status = s.status.as_ref().unwrap();
        assert_eq!((status.code, status.message.as_str()), (2, "HTTP 503"));
        assert_eq!(s.links.len(), 1);
        let link = &s.links[0];
        assert_eq!(
            (
                &link.trace_id[..],
                &link.span_id[..],
                link.trace_state.as_str()
            ),
            (
                &b"linkedtrace01234"[..],
                &b"linked01"[..],
                "rojo=00f067aa0ba902b7"
            )
        );
        assert_eq!(link.flags, 0x301, "sampled, remote known and remote");
        let attrs: Vec<(&str, Value)> = s
            .attributes
            .iter()
            .map(|kv| (kv.key.as_str(), value(kv)))
            .collect();
        assert_eq!(
            attrs,
            vec![
                ("http.request.method", Value::StringValue("POST".into())),
                ("server.port", Value::IntValue(443)),
                ("lumigo.truncated", Value::BoolValue(true)),
                ("negative", Value::IntValue(-5)),
                ("empty", Value::StringValue(String::new())),
            ]
        );
    }

    #[test]
    fn roots_local_parents_ok_status_and_no_tracestate() {
        let mut root = record(vec![]);
        root.parent_span_id = None;
        root.context.trace_flags = 0;
        root.context.trace_state = None;
        root.status = SpanStatus::Ok;
        root.kind = SpanKind::Server;
        root.links[0].context.trace_state = None;
        root.links[0].remote = false;
        let mut local = record(vec![]);
        local.links.clear();
        local.parent_is_remote = false;
        local.status = SpanStatus::Unset;
        local.kind = SpanKind::Consumer;
        let req = decode(&[root, local]);
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 2);
        assert!(spans[0].parent_span_id.is_empty());
        assert_eq!(spans[0].trace_state, "", "no tracestate, none sent");
        assert_eq!(spans[0].flags, 0x100, "unsampled, no remote parent");
        assert_eq!(spans[0].status.as_ref().unwrap().code, 1);
        assert_eq!(spans[0].kind, 2);
        assert_eq!(spans[0].links[0].flags, 0x101, "a local link");
        assert_eq!(spans[0].links[0].trace_state, "");
        assert!(spans[1].links.is_empty());
        assert_eq!(spans[1].flags, 0x101, "local parent");
        assert!(spans[1].status.is_none(), "unset status is the default");
        assert_eq!(spans[1].kind, 5);
    }

    #[test]
    fn long_values_and_large_batches_get_multi_byte_lengths() {
        // Lengths around every varint boundary, at every nesting level.
        for len in [
            0usize, 1, 100, 127, 128, 129, 16_383, 16_384, 70_000, 2_100_000,
        ] {
            let big = "x".repeat(len);
            let mut r = record(vec![("big", AttrValue::from(big.clone()))]);
            r.name = big.clone().into();
            let req = decode(&[r.clone(), r]);
            let spans = &req.resource_spans[0].scope_spans[0].spans;
            assert_eq!(spans.len(), 2, "len {len}");
            for s in spans {
                assert_eq!(s.name.len(), len);
                assert_eq!(value(&s.attributes[0]), Value::StringValue(big.clone()));
                assert_eq!(s.flags, 0x301);
            }
        }
        let many: Vec<SpanRecord> = (0..2048)
            .map(|i| {
                let mut r = record(vec![("i", AttrValue::Int(i))]);
                r.context.span_id = (i as u64).to_be_bytes();
                r
            })
            .collect();
        let req = decode(&many);
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 2048);
        for (i, s) in spans.iter().enumerate() {
            assert_eq!(s.span_id, (i as u64).to_be_bytes());
            assert_eq!(value(&s.attributes[0]), Value::IntValue(i as i64));
        }
    }

    #[test]
    fn an_encoded_run_writes_the_same_bytes_as_its_attributes() {
        let attrs = vec![
            ("http.request.method", AttrValue::from("GET")),
            ("client.address", AttrValue::from("10.1.2.3")),
            ("client.port", AttrValue::Int(51000)),
            ("network.peer.address", AttrValue::from("10.1.2.3")),
            ("http.response.status_code", AttrValue::Int(200)),
        ];
        let plain = record(attrs.clone());
        for (at, count) in [(1, 3), (0, 5), (4, 1), (0, 1)] {
            let mut run = record(attrs.clone());
            run.encoded = Some(crate::span::EncodedRun {
                at,
                count,
                bytes: encode_attributes(&attrs[at..at + count]),
            });
            let (mut a, mut b) = (Vec::new(), Vec::new());
            encode_request(&mut a, b"", b"", std::slice::from_ref(&plain));
            encode_request(&mut b, b"", b"", &[run]);
            assert_eq!(a, b, "run at {at}, {count} attributes");
        }
        // A run that no longer fits the attributes (cut by someone who did
        // not drop it) is ignored rather than trusted.
        let mut stale = record(attrs[..2].to_vec());
        stale.encoded = Some(crate::span::EncodedRun {
            at: 1,
            count: 3,
            bytes: encode_attributes(&attrs[1..4]),
        });
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode_request(&mut a, b"", b"", &[record(attrs[..2].to_vec())]);
        encode_request(&mut b, b"", b"", &[stale]);
        assert_eq!(a, b);
    }

    #[test]
    fn varint_lengths() {
        for (v, n) in [
            (0u64, 1usize),
            (1, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::from(u32::MAX), 5),
            (i64::MAX as u64, 9),
            (u64::MAX, 10),
        ] {
            assert_eq!(varint_len(v), n, "{v}");
            let mut buf = Vec::new();
            Writer::new(&mut buf).varint(v);
            assert_eq!(buf.len(), n, "{v}");
        }
    }

    #[test]
    fn times_before_the_epoch_are_zero() {
        let mut r = record(vec![]);
        r.start = UNIX_EPOCH - Duration::from_secs(1);
        let req = decode(&[r]);
        assert_eq!(
            req.resource_spans[0].scope_spans[0].spans[0].start_time_unix_nano,
            0
        );
    }

    #[test]
    fn partial_success_is_read_from_the_response() {
        use opentelemetry_proto::tonic::collector::trace::v1::{
            ExportTracePartialSuccess, ExportTraceServiceResponse,
        };
        let response = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "too old".into(),
            }),
        };
        assert_eq!(
            partial_success(&response.encode_to_vec()),
            Some((3, "too old".into()))
        );
        assert_eq!(partial_success(&[]), None, "an empty response");
        let full = ExportTraceServiceResponse::default().encode_to_vec();
        assert_eq!(partial_success(&full), None);
        let bytes = response.encode_to_vec();
        for cut in 0..bytes.len() {
            let _ = partial_success(&bytes[..cut]); // never panics
        }
        assert_eq!(partial_success(b"\xff\xff\xff"), None);
    }
}
