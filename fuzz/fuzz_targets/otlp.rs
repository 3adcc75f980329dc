//! The OTLP encoders on spans with hostile strings: the attribute limits
//! hold after `limits::apply`, the protobuf request is well-formed (every
//! length-delimited field within its message, one span message per span,
//! each with its name), the JSON request parses; and the decoder of a
//! collector's answer (protobuf and JSON) takes any bytes.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use lumigo_core::config::AttributeLimits;
use lumigo_core::fuzzing::{encode, partial_success};
use lumigo_core::span::{AttrValue, SpanContext, SpanKind, SpanLink, SpanRecord, SpanStatus};

const KEYS: [&str; 6] = ["a", "url.full", "db.query.text", "", "k\u{e9}\"\\", "x.y"];

/// The fields of one protobuf message: (number, wire type, length-delimited
/// payload). Panics unless the message is well-formed.
fn fields(mut buf: &[u8]) -> Vec<(u64, u64, &[u8])> {
    fn varint(buf: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        for shift in 0..10 {
            let (&b, rest) = buf.split_first().expect("varint cut short");
            *buf = rest;
            v |= u64::from(b & 0x7f) << (7 * shift);
            if b & 0x80 == 0 {
                return v;
            }
        }
        panic!("varint longer than 10 bytes")
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let tag = varint(&mut buf);
        let payload: &[u8] = match tag & 7 {
            0 => {
                varint(&mut buf);
                &[]
            }
            1 | 5 => {
                let n = if tag & 7 == 1 { 8 } else { 4 };
                assert!(buf.len() >= n, "fixed field cut short");
                buf = &buf[n..];
                &[]
            }
            2 => {
                let len = varint(&mut buf) as usize;
                assert!(len <= buf.len(), "length beyond its message");
                let (p, rest) = buf.split_at(len);
                buf = rest;
                p
            }
            t => panic!("wire type {t}"),
        };
        out.push((tag >> 3, tag & 7, payload));
    }
    out
}

fn sub(msg: &[u8], number: u64) -> Vec<&[u8]> {
    fields(msg)
        .into_iter()
        .filter(|(n, t, _)| *n == number && *t == 2)
        .map(|(_, _, p)| p)
        .collect()
}

fuzz_target!(|input: &[u8]| {
    let (head, rest) = input.split_at(input.len().min(3));
    let limits = AttributeLimits {
        value_length: usize::from(head.first().copied().unwrap_or(0)) * 16,
        count: usize::from(head.get(1).copied().unwrap_or(0) % 40),
    };
    let text = String::from_utf8_lossy(rest);
    let pieces: Vec<&str> = text.split('\n').collect();
    let mut spans: Vec<SpanRecord> = pieces
        .chunks(4)
        .take(8)
        .enumerate()
        .map(|(i, p)| SpanRecord {
            name: p[0].to_owned().into(),
            kind: SpanKind::Client,
            context: SpanContext {
                trace_id: [i as u8 + 1; 16],
                span_id: [7; 8],
                trace_flags: 1,
                trace_state: p.get(1).map(|s| (*s).to_owned()),
            },
            parent_span_id: (i % 2 == 0).then_some([3; 8]),
            parent_is_remote: i % 3 == 0,
            start: SystemTime::UNIX_EPOCH + Duration::from_nanos(i as u64),
            end: SystemTime::UNIX_EPOCH
                + Duration::from_secs(u64::from(head.get(2).copied().unwrap_or(0))),
            status: match i % 3 {
                0 => SpanStatus::Unset,
                1 => SpanStatus::Ok,
                _ => SpanStatus::Error(p.get(2).copied().unwrap_or("").to_owned()),
            },
            attributes: p
                .iter()
                .enumerate()
                .flat_map(|(j, s)| {
                    [
                        (KEYS[j % KEYS.len()], AttrValue::from(*s)),
                        ("n", AttrValue::Int(s.len() as i64 - 2)),
                        ("b", AttrValue::Bool(s.is_empty())),
                    ]
                })
                .collect(),
            links: (0..i % 3)
                .map(|k| SpanLink {
                    context: SpanContext {
                        trace_id: [k as u8 + 9; 16],
                        span_id: [k as u8 + 5; 8],
                        trace_flags: k as u8,
                        trace_state: p.get(3).map(|s| (*s).to_owned()),
                    },
                    remote: k == 0,
                })
                .collect(),
            encoded: None,
        })
        .collect();
    // Some spans carry a run of their attributes already encoded (as a
    // connection's attributes are), which the limits may cut into.
    for (i, span) in spans.iter_mut().enumerate().filter(|(i, _)| i % 2 == 1) {
        span.encoded = lumigo_core::fuzzing::encoded_run(&span.attributes, i % 3, 1 + i % 4);
    }
    let names: Vec<String> = spans.iter().map(|s| s.name.to_string()).collect();
    let resource: Vec<(String, AttrValue)> = pieces
        .iter()
        .take(4)
        .map(|p| ((*p).to_owned(), AttrValue::from(*p)))
        .collect();

    let (protobuf, json) = encode(&mut spans, limits, &resource);

    for span in &spans {
        assert!(span.attributes.len() <= limits.count);
        for (_, v) in &span.attributes {
            if let AttrValue::Str(s) = v {
                assert!(s.len() <= limits.value_length);
            }
        }
    }

    // ExportTraceServiceRequest → ResourceSpans(1) → ScopeSpans(2) → Span(2).
    let mut found = Vec::new();
    for rs in sub(&protobuf, 1) {
        for ss in sub(rs, 2) {
            for span in sub(ss, 2) {
                let name = sub(span, 5);
                found.push(
                    String::from_utf8(name.first().copied().unwrap_or_default().to_vec()).unwrap(),
                );
                for kv in sub(span, 9) {
                    fields(kv);
                }
                let i = found.len() - 1;
                assert_eq!(sub(span, 9).len(), spans[i].attributes.len());
            }
        }
    }
    assert_eq!(found, names);

    let parsed: serde_json::Value = serde_json::from_slice(&json).expect("the JSON request parses");
    let json_spans = &parsed["resourceSpans"][0]["scopeSpans"][0]["spans"];
    assert_eq!(json_spans.as_array().map_or(0, Vec::len), spans.len());
    for (s, name) in json_spans.as_array().into_iter().flatten().zip(&names) {
        assert_eq!(s["name"].as_str(), Some(name.as_str()));
    }

    let (pb, js) = partial_success(input);
    if let Some((_, message)) = pb {
        assert!(message.len() <= 3 * input.len());
    }
    if let Some((_, message)) = js {
        assert!(message.len() <= input.len());
    }
});
