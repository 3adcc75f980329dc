//! Name lookups (`getaddrinfo`, `gethostbyname`) as CLIENT spans.
//!
//! There is no stable OpenTelemetry convention for DNS client spans yet; the
//! span is named `DNS <name>` after the question, with `dns.question.name`
//! (from the semantic conventions' DNS namespace), `dns.answers.count`, and
//! on failure `error.type` set to the resolver's error name (`EAI_NONAME`,
//! `HOST_NOT_FOUND`, …) and status ERROR.

use std::time::SystemTime;

use crate::connection::Assigned;
use crate::span::{AttrValue, SpanKind, SpanRecord, SpanStatus};

/// The symbolic name of a `getaddrinfo` error code (glibc's values).
pub fn eai_name(code: i32) -> &'static str {
    match code {
        -1 => "EAI_BADFLAGS",
        -2 => "EAI_NONAME",
        -3 => "EAI_AGAIN",
        -4 => "EAI_FAIL",
        -5 => "EAI_NODATA",
        -6 => "EAI_FAMILY",
        -7 => "EAI_SOCKTYPE",
        -8 => "EAI_SERVICE",
        -9 => "EAI_ADDRFAMILY",
        -10 => "EAI_MEMORY",
        -11 => "EAI_SYSTEM",
        -12 => "EAI_OVERFLOW",
        _ => "_OTHER",
    }
}

/// The symbolic name of an `h_errno` value (`gethostbyname`).
pub fn h_errno_name(code: i32) -> &'static str {
    match code {
        1 => "HOST_NOT_FOUND",
        2 => "TRY_AGAIN",
        3 => "NO_RECOVERY",
        4 => "NO_DATA",
        _ => "_OTHER",
    }
}

/// The span of one lookup of `name`: `Ok(answers)` or `Err(error name)`.
pub fn lookup_span(
    who: Assigned,
    name: &str,
    start: SystemTime,
    end: SystemTime,
    outcome: Result<usize, &'static str>,
) -> SpanRecord {
    // DNS names are at most 253 characters; anything longer is cut.
    let name: String = name.chars().take(255).collect();
    let mut attributes: Vec<(&'static str, AttrValue)> =
        vec![("dns.question.name", name.as_str().into())];
    let status = match outcome {
        Ok(answers) => {
            attributes.push(("dns.answers.count", (answers as u64).into()));
            SpanStatus::Unset
        }
        Err(error) => {
            attributes.push(("error.type", error.into()));
            SpanStatus::Error(error.to_owned())
        }
    };
    SpanRecord {
        name: format!("DNS {name}").into(),
        kind: SpanKind::Client,
        context: who.context,
        parent_span_id: who.parent,
        parent_is_remote: who.parent_is_remote,
        start,
        end,
        status,
        attributes,
        links: Vec::new(),
        encoded: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::SpanContext;

    fn who() -> Assigned {
        Assigned {
            context: SpanContext {
                trace_id: [1; 16],
                span_id: [2; 8],
                trace_flags: 1,
                trace_state: None,
            },
            parent: None,
            parent_is_remote: false,
            candidates: 0,
        }
    }

    #[test]
    fn success_and_failure() {
        let now = SystemTime::now();
        let ok = lookup_span(who(), "localhost", now, now, Ok(2));
        assert_eq!(ok.name, "DNS localhost");
        assert_eq!(ok.attr("dns.answers.count"), Some(&AttrValue::Int(2)));
        assert_eq!(ok.status, SpanStatus::Unset);
        let bad = lookup_span(who(), "nope.invalid", now, now, Err(eai_name(-2)));
        assert_eq!(bad.attr("error.type"), Some(&"EAI_NONAME".into()));
        assert!(matches!(bad.status, SpanStatus::Error(_)));
        assert_eq!(h_errno_name(1), "HOST_NOT_FOUND");
    }
}
