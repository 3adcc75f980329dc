//! Entry points for the fuzz targets in `fuzz/` that reach code private to
//! this crate: the HTTP head parser's two paths (the quick one and
//! `httparse`), and the OTLP encoders with the decoder of a collector's
//! answer. Not part of the API: nothing but `fuzz/` calls these.

use crate::span::{AttrValue, SpanRecord};

/// How the request head parser read one complete head: the quick path
/// (`None` when it deferred), `httparse` (`None` when it rejected the head),
/// what [`crate::http`] uses (quick, else `httparse`), and the salvage of a
/// head that cannot be parsed. Each reading is its `Debug` text, so that
/// readings can be compared; `fields` are the lengths of the string fields
/// of every reading (method, target, host, user agent, trace context,
/// execution tags) and `carriers` those of the B3 and baggage values, for
/// the caps.
#[derive(Debug)]
pub struct RequestReadings {
    pub quick: Option<String>,
    pub httparse: Option<String>,
    pub parsed: Option<String>,
    pub salvaged: String,
    pub fields: Vec<usize>,
    pub carriers: Vec<usize>,
}

/// The request head parser's readings of `head` (see [`RequestReadings`]).
pub fn request_head(head: &[u8]) -> RequestReadings {
    use crate::http::parser::{
        parse_request, parse_request_httparse, quick_request, salvage_request, RequestHead,
    };
    let mut fields = Vec::new();
    let mut carriers = Vec::new();
    let mut note = |h: &RequestHead| {
        fields.extend([h.method.len(), h.target.len()]);
        for s in [&h.host, &h.user_agent] {
            fields.extend(s.as_deref().map(str::len));
        }
        for s in [&h.traceparent, &h.tracestate] {
            fields.extend(s.as_deref().map(str::len));
        }
        if let Some(c) = &h.carriers {
            let b3 = &c.b3;
            for s in [
                &b3.single,
                &b3.trace_id,
                &b3.span_id,
                &b3.sampled,
                &b3.flags,
            ] {
                carriers.extend(s.as_ref().map(String::len));
            }
            carriers.extend(c.baggage.as_ref().map(String::len));
            fields.extend(c.tags.iter().map(|(_, v)| v.len()));
        }
        format!("{h:?}")
    };
    let quick = quick_request(head).map(|h| note(&h));
    let httparse = parse_request_httparse(head).ok().map(|h| note(&h));
    let parsed = parse_request(head).ok().map(|h| note(&h));
    let salvaged = note(&salvage_request(head));
    RequestReadings {
        quick,
        httparse,
        parsed,
        salvaged,
        fields,
        carriers,
    }
}

/// How the response head parser read one complete head (see
/// [`RequestReadings`]), and the status a salvage finds in it.
#[derive(Debug)]
pub struct ResponseReadings {
    pub quick: Option<String>,
    pub httparse: Option<String>,
    pub parsed: Option<String>,
    pub salvaged_status: Option<u16>,
}

/// The response head parser's readings of `head`.
pub fn response_head(head: &[u8]) -> ResponseReadings {
    use crate::http::parser::{
        parse_response, parse_response_httparse, quick_response, salvage_status,
    };
    let show = |h: crate::http::parser::ResponseHead| format!("{h:?}");
    ResponseReadings {
        quick: quick_response(head).map(show),
        httparse: parse_response_httparse(head).ok().map(show),
        parsed: parse_response(head).ok().map(show),
        salvaged_status: salvage_status(head),
    }
}

/// The attribute limits applied to `spans` as the export thread applies
/// them, then one OTLP/protobuf and one OTLP/JSON request holding them.
pub fn encode(
    spans: &mut [SpanRecord],
    limits: crate::config::AttributeLimits,
    resource: &[(String, AttrValue)],
) -> (Vec<u8>, Vec<u8>) {
    use crate::export::{json, limits as cut, proto};
    cut::apply(spans, limits);
    let mut protobuf = Vec::new();
    proto::encode_request(
        &mut protobuf,
        &proto::resource_field(resource),
        &proto::scope_field("fuzz", "0"),
        spans,
    );
    let mut text = Vec::new();
    json::encode_request(
        &mut text,
        &json::resource_field(resource),
        &json::scope_field("fuzz", "0"),
        spans,
    );
    (protobuf, text)
}

/// A partial success: rejected spans and the collector's message.
pub type PartialSuccess = Option<(i64, String)>;

/// A collector's answer read as the exporter reads it: the partial success
/// of a protobuf answer and of a JSON one.
pub fn partial_success(answer: &[u8]) -> (PartialSuccess, PartialSuccess) {
    (
        crate::export::proto::partial_success(answer),
        crate::export::json::partial_success(answer),
    )
}

/// The payload headers of `head` read in one pass and field by field, with
/// the default masking and a limit of `limit` bytes: `Err` with both
/// readings where they differ (see `crate::payload`).
pub fn payload_head_ways(head: &[u8], limit: usize) -> Result<(), String> {
    crate::payload::PayloadRules::with_limit(limit).compare_head_ways(head)
}

/// `attrs[at..at + count]` as an encoded run (see [`crate::span::EncodedRun`]),
/// `None` when out of range.
pub fn encoded_run(
    attrs: &[(&'static str, AttrValue)],
    at: usize,
    count: usize,
) -> Option<crate::span::EncodedRun> {
    let run = attrs.get(at..at.checked_add(count)?)?;
    Some(crate::span::EncodedRun {
        at,
        count,
        bytes: crate::export::encode_attributes(run),
    })
}
