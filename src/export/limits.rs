//! Attribute limits (`OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`,
//! `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`), applied on the export thread to each
//! batch just before it is encoded, so both the OTLP encoder and the span
//! dump write the same cut values and the app's threads never pay for it.

use crate::config::AttributeLimits;
use crate::span::{AttrValue, SpanRecord, Text};

/// Cuts every string attribute of `spans` to `limits.value_length` bytes
/// (on a character boundary) and keeps at most `limits.count` attributes
/// per span (the first ones, as the SDK keeps the first ones set).
pub(crate) fn apply(spans: &mut [SpanRecord], limits: AttributeLimits) {
    for span in spans {
        // A cut inside the already encoded run makes it stale.
        if let Some(run) = &span.encoded {
            let end = run.at.saturating_add(run.count);
            let cut_inside = span.attributes.get(run.at..end).is_none_or(|run| {
                run.iter()
                    .any(|(_, v)| matches!(v, AttrValue::Str(t) if t.len() > limits.value_length))
            });
            if end > limits.count || cut_inside {
                span.encoded = None;
            }
        }
        span.attributes.truncate(limits.count);
        for (_, value) in span.attributes.iter_mut() {
            if let AttrValue::Str(text) = value {
                cut(text, limits.value_length);
            }
        }
    }
}

/// Cuts one value in place; a no-op (no allocation) when it fits.
fn cut(text: &mut Text, max: usize) {
    if text.len() <= max {
        return;
    }
    match text {
        Text::Owned(s) => {
            let keep = crate::config::cut_str(s, max).len();
            s.truncate(keep);
        }
        Text::Static(s) => *s = crate::config::cut_str(s, max),
        other => *other = Text::copy(crate::config::cut_str(other, max)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::{SpanContext, SpanKind, SpanStatus};
    use std::sync::Arc;
    use std::time::UNIX_EPOCH;

    fn span(attributes: Vec<(&'static str, AttrValue)>) -> SpanRecord {
        SpanRecord {
            name: "GET".into(),
            kind: SpanKind::Client,
            context: SpanContext {
                trace_id: [1; 16],
                span_id: [2; 8],
                trace_flags: 1,
                trace_state: None,
            },
            parent_span_id: None,
            parent_is_remote: false,
            start: UNIX_EPOCH,
            end: UNIX_EPOCH,
            status: SpanStatus::Unset,
            attributes,
            links: Vec::new(),
            encoded: None,
        }
    }

    fn text(v: &AttrValue) -> &str {
        match v {
            AttrValue::Str(t) => t,
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn every_kind_of_string_is_cut_on_a_character_boundary() {
        let shared: Arc<str> = Arc::from("é".repeat(10).as_str());
        let mut spans = [span(vec![
            ("owned", AttrValue::from("x".repeat(100))),
            ("static", AttrValue::from_static("static text here")),
            ("shared", AttrValue::shared(&shared)),
            ("inline", AttrValue::from("short €€")),
            ("int", AttrValue::Int(123_456_789)),
            ("fits", AttrValue::from("abc")),
        ])];
        apply(
            &mut spans,
            AttributeLimits {
                value_length: 7,
                count: 128,
            },
        );
        let a = &spans[0];
        assert_eq!(text(a.attr("owned").unwrap()), "xxxxxxx");
        assert_eq!(text(a.attr("static").unwrap()), "static ");
        assert_eq!(text(a.attr("shared").unwrap()), "ééé");
        assert_eq!(text(a.attr("inline").unwrap()), "short ");
        assert_eq!(a.attr("int"), Some(&AttrValue::Int(123_456_789)));
        assert_eq!(text(a.attr("fits").unwrap()), "abc");
    }

    #[test]
    fn a_cut_inside_an_encoded_run_drops_the_run() {
        let attrs = vec![
            ("a", AttrValue::from("x".repeat(20))),
            ("b", AttrValue::from("short")),
            ("c", AttrValue::Int(7)),
            ("d", AttrValue::from("y".repeat(20))),
        ];
        let with_run = |at: usize, count: usize| {
            let mut s = span(attrs.clone());
            s.encoded = Some(crate::span::EncodedRun {
                at,
                count,
                bytes: crate::export::encode_attributes(&attrs[at..at + count]),
            });
            s
        };
        let limits = |value_length, count| AttributeLimits {
            value_length,
            count,
        };
        // (run at, run length, value length limit, count limit, run kept)
        let cases = [
            (1, 2, 10, 128, true),  // cuts outside the run
            (0, 2, 10, 128, false), // a value inside the run cut
            (1, 2, 100, 2, false),  // the count limit ends inside the run
            (1, 2, 100, 3, true),   // or right after it
        ];
        for (at, count, value_length, limit, kept) in cases {
            let mut spans = [with_run(at, count)];
            apply(&mut spans, limits(value_length, limit));
            assert_eq!(
                spans[0].encoded.is_some(),
                kept,
                "{at} {count} {value_length} {limit}"
            );
        }
    }

    #[test]
    fn count_limit_keeps_the_first_attributes() {
        let mut spans = [span(vec![
            ("a", AttrValue::Int(1)),
            ("b", AttrValue::Int(2)),
            ("c", AttrValue::Int(3)),
        ])];
        apply(
            &mut spans,
            AttributeLimits {
                value_length: 10,
                count: 2,
            },
        );
        let keys: Vec<_> = spans[0].attributes.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["a", "b"]);
    }
}
