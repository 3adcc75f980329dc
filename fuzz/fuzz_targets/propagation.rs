//! The context propagation parsers on hostile header values: W3C
//! `traceparent` and `tracestate`, B3 (single and multiple headers),
//! `baggage`. What they accept round-trips through what we write, and the
//! header lines we insert into an app's request are exactly one line each,
//! whatever the inbound values were.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumigo_core::propagation::{
    format_traceparent, parse_traceparent, sanitize_tracestate, valid_tracestate, MAX_TRACESTATE,
};
use lumigo_core::propagators::{
    outbound_lines, parse_b3, parse_b3_single, valid_baggage, B3Headers, InboundCarriers, Present,
    Propagators, MAX_BAGGAGE,
};
use lumigo_core::span::{hex, SpanContext};

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);

    let tp = parse_traceparent(&text);
    let mut ctx = SpanContext {
        trace_id: [1; 16],
        span_id: [2; 8],
        trace_flags: 1,
        trace_state: None,
    };
    if let Some(tp) = tp {
        ctx.trace_id = tp.trace_id;
        ctx.span_id = tp.span_id;
        ctx.trace_flags = tp.flags;
        assert_ne!(tp.trace_id, [0; 16]);
        assert_ne!(tp.span_id, [0; 8]);
        assert_eq!(parse_traceparent(&format_traceparent(&ctx)), Some(tp));
    }

    let state = sanitize_tracestate(&text);
    if let Some(s) = &state {
        assert!(s.len() <= MAX_TRACESTATE && valid_tracestate(s));
        assert_eq!(sanitize_tracestate(s).as_ref(), Some(s), "sanitizing twice");
    }
    ctx.trace_state = state;

    if let Some(b3) = parse_b3_single(&text) {
        assert_ne!(b3.trace_id, [0; 16]);
        assert_ne!(b3.span_id, [0; 8]);
        let sampled = match b3.sampled {
            None => String::new(),
            Some(s) => format!("-{}", u8::from(s)),
        };
        let again = format!("{}-{}{sampled}", hex(&b3.trace_id), hex(&b3.span_id));
        assert_eq!(parse_b3_single(&again), Some(b3));
    }

    // The multi-header form, and the carriers of a request head, from the
    // input's lines.
    let mut lines = text.split('\n').map(|l| Some(l.to_owned()));
    let headers = B3Headers {
        single: None,
        trace_id: lines.next().flatten(),
        span_id: lines.next().flatten(),
        sampled: lines.next().flatten(),
        flags: lines.next().flatten(),
    };
    if let Some(p) = parse_b3(&headers) {
        assert_ne!(p.trace_id, [0; 16]);
        assert_ne!(p.span_id, [0; 8]);
    }
    let mut carriers = None;
    for line in input.split(|&b| b == b'\n') {
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            InboundCarriers::header(&mut carriers, &line[..colon], &line[colon + 1..]);
        }
    }
    if let Some(c) = &carriers {
        if let Some(b) = &c.baggage {
            assert!(valid_baggage(b.as_bytes()));
        }
    }

    // What we insert: one line per header, whatever came in.
    let baggage = carriers
        .as_ref()
        .and_then(|c| c.baggage.clone())
        .or_else(|| valid_baggage(input).then(|| text.trim().to_owned()));
    if let Some(b) = &baggage {
        assert!(b.len() <= MAX_BAGGAGE);
    }
    let all = Propagators {
        tracecontext: true,
        baggage: true,
        b3: true,
        b3multi: true,
    };
    for crlf in [true, false] {
        let out = outbound_lines(
            &all,
            &ctx,
            baggage.as_deref().map(str::as_bytes),
            Present::default(),
            crlf,
        );
        let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        assert!(out.ends_with(eol));
        let body = &out[..out.len() - eol.len()];
        let lines: Vec<&[u8]> = if crlf {
            body.split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
                .collect()
        } else {
            body.split(|&b| b == b'\n').collect()
        };
        let want =
            1 + usize::from(ctx.trace_state.is_some()) + 1 + 3 + usize::from(baggage.is_some());
        assert_eq!(lines.len(), want, "{:?}", String::from_utf8_lossy(&out));
        for line in lines {
            assert!(!line.contains(&b'\r') && !line.contains(&b'\n'), "{line:?}");
            assert!(line.windows(2).any(|w| w == b": "), "{line:?}");
        }
    }
});
