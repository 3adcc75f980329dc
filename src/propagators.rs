//! `OTEL_PROPAGATORS` beyond W3C Trace Context: B3 (single `b3` header and
//! the multi-header `X-B3-*` form) and W3C Baggage.
//!
//! Inbound, a SERVER span continues the trace named by `traceparent` first,
//! then by B3 (single header, then the multi-header form, as the SDKs'
//! B3 propagator reads both whichever it writes). Outbound, each configured
//! format gets its header lines, inserted with `traceparent` just before the
//! end of the request head; a header the app already sent keeps its value.
//! Baggage is not interpreted: a well-formed inbound `baggage` value is
//! carried as it came to the requests the thread makes while serving it.

use crate::span::{hex, SpanContext};

/// Which formats are read from requests and written into them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Propagators {
    pub tracecontext: bool,
    pub baggage: bool,
    /// B3, single header (`b3: {trace}-{span}-{sampled}`).
    pub b3: bool,
    /// B3, multiple headers (`X-B3-TraceId`, `X-B3-SpanId`, `X-B3-Sampled`).
    pub b3multi: bool,
}

impl Default for Propagators {
    /// The specification's default: `tracecontext,baggage`.
    fn default() -> Propagators {
        Propagators {
            tracecontext: true,
            baggage: true,
            b3: false,
            b3multi: false,
        }
    }
}

impl Propagators {
    pub const NONE: Propagators = Propagators {
        tracecontext: false,
        baggage: false,
        b3: false,
        b3multi: false,
    };

    /// Any format at all: otherwise nothing is read or inserted.
    pub fn any(&self) -> bool {
        self.tracecontext || self.baggage || self.b3 || self.b3multi
    }

    /// Whether B3 parents are read (either B3 format configured).
    pub fn reads_b3(&self) -> bool {
        self.b3 || self.b3multi
    }
}

/// Longest `baggage` value carried along; a longer one is dropped whole
/// (cutting it could break an entry).
pub const MAX_BAGGAGE: usize = 2048;

/// A `baggage` value worth carrying on: non-empty, at most [`MAX_BAGGAGE`]
/// bytes, printable ASCII (so it can go into a header line as it is).
pub fn valid_baggage(value: &[u8]) -> bool {
    let v = value.trim_ascii();
    !v.is_empty()
        && v.len() <= MAX_BAGGAGE
        && v.iter().all(|&b| (0x20..0x7f).contains(&b) || b == b'\t')
}

/// The B3 headers of an inbound request (values as sent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct B3Headers {
    pub single: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub sampled: Option<String>,
    pub flags: Option<String>,
}

/// What a request head carries for the propagators other than
/// `traceparent`/`tracestate`; boxed in the exchange, as most requests
/// carry none of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InboundCarriers {
    pub b3: B3Headers,
    /// A valid `baggage` value (see [`valid_baggage`]).
    pub baggage: Option<String>,
    /// Execution tag headers (`crate::tags`): index and value.
    pub tags: Vec<(u8, String)>,
}

impl InboundCarriers {
    /// Notes a header line; false if its name is none of ours.
    pub fn header(this: &mut Option<Box<InboundCarriers>>, name: &[u8], value: &[u8]) -> bool {
        let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
        let which = if is(b"b3") {
            0
        } else if is(b"x-b3-traceid") {
            1
        } else if is(b"x-b3-spanid") {
            2
        } else if is(b"x-b3-sampled") {
            3
        } else if is(b"x-b3-flags") {
            4
        } else if is(b"baggage") {
            if !valid_baggage(value) {
                return true;
            }
            5
        } else if let Some(i) = crate::tags::index(name) {
            let c = this.get_or_insert_with(Box::default);
            if !c.tags.iter().any(|(t, _)| *t == i) {
                c.tags.push((i, crate::tags::value(value)));
            }
            return true;
        } else {
            return false;
        };
        let c = this.get_or_insert_with(Box::default);
        let slot = match which {
            0 => &mut c.b3.single,
            1 => &mut c.b3.trace_id,
            2 => &mut c.b3.span_id,
            3 => &mut c.b3.sampled,
            4 => &mut c.b3.flags,
            _ => &mut c.baggage,
        };
        if slot.is_none() {
            *slot = Some(String::from_utf8_lossy(value.trim_ascii()).into_owned());
        }
        true
    }
}

/// A parent named by B3: ids, and its sampling decision if it made one
/// (`None`: deferred to our sampler).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct B3Parent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: Option<bool>,
}

fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let d = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        out[i] = d(pair[0])? << 4 | d(pair[1])?;
    }
    Some(out)
}

/// A B3 trace id: 32 hex digits, or 16 (the high half then zero); not all zero.
fn b3_trace_id(s: &str) -> Option<[u8; 16]> {
    let s = s.trim();
    let id = match s.len() {
        32 => hex_bytes::<16>(s)?,
        16 => {
            let low = hex_bytes::<8>(s)?;
            let mut id = [0u8; 16];
            id[8..].copy_from_slice(&low);
            id
        }
        _ => return None,
    };
    (id != [0; 16]).then_some(id)
}

fn b3_span_id(s: &str) -> Option<[u8; 8]> {
    hex_bytes::<8>(s.trim()).filter(|id| *id != [0; 8])
}

/// The parent a request's B3 headers name: the single header first, then
/// the multi-header form. `None` when neither names valid ids.
pub fn parse_b3(h: &B3Headers) -> Option<B3Parent> {
    if let Some(single) = h.single.as_deref().and_then(parse_b3_single) {
        return Some(single);
    }
    let trace_id = b3_trace_id(h.trace_id.as_deref()?)?;
    let span_id = b3_span_id(h.span_id.as_deref()?)?;
    let debug = h.flags.as_deref().map(str::trim) == Some("1");
    let sampled = match h.sampled.as_deref().map(str::trim) {
        _ if debug => Some(true),
        None => None,
        Some(s) if s == "1" || s.eq_ignore_ascii_case("true") => Some(true),
        Some(s) if s == "0" || s.eq_ignore_ascii_case("false") => Some(false),
        Some(_) => return None,
    };
    Some(B3Parent {
        trace_id,
        span_id,
        sampled,
    })
}

/// `{traceid}-{spanid}[-{sampled}[-{parentspanid}]]`, sampled `1`, `0` or
/// `d` (debug, read as sampled).
pub fn parse_b3_single(value: &str) -> Option<B3Parent> {
    let mut parts = value.trim().split('-');
    let trace_id = b3_trace_id(parts.next()?)?;
    let span_id = b3_span_id(parts.next()?)?;
    let sampled = match parts.next() {
        None => None,
        Some("1") | Some("d") => Some(true),
        Some("0") => Some(false),
        Some(_) => return None,
    };
    if let Some(parent) = parts.next() {
        b3_span_id(parent)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(B3Parent {
        trace_id,
        span_id,
        sampled,
    })
}

/// Which of the headers we insert the app's request already has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Present {
    pub b3: bool,
    pub b3multi: bool,
    pub baggage: bool,
}

impl Present {
    /// Notes a header of the app's request head.
    pub fn note(&mut self, name: &[u8]) {
        if name.eq_ignore_ascii_case(b"b3") {
            self.b3 = true;
        } else if name.len() > 5 && name[..5].eq_ignore_ascii_case(b"x-b3-") {
            self.b3multi = true;
        } else if name.eq_ignore_ascii_case(b"baggage") {
            self.baggage = true;
        }
    }
}

/// The header lines to insert into an outbound request whose CLIENT span
/// is `ctx`: each configured format the app's head does not already carry.
pub fn outbound_lines(
    p: &Propagators,
    ctx: &SpanContext,
    baggage: Option<&[u8]>,
    present: Present,
    crlf: bool,
) -> Vec<u8> {
    let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    let mut out = Vec::with_capacity(96);
    let mut line = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(eol);
    };
    if p.tracecontext {
        line(
            b"traceparent",
            crate::propagation::format_traceparent(ctx).as_bytes(),
        );
        if let Some(state) = ctx.trace_state.as_deref() {
            line(b"tracestate", state.as_bytes());
        }
    }
    let sampled: &[u8] = if ctx.is_sampled() { b"1" } else { b"0" };
    if p.b3 && !present.b3 {
        let v = format!(
            "{}-{}-{}",
            hex(&ctx.trace_id),
            hex(&ctx.span_id),
            u8::from(ctx.is_sampled())
        );
        line(b"b3", v.as_bytes());
    }
    if p.b3multi && !present.b3multi {
        line(b"X-B3-TraceId", hex(&ctx.trace_id).as_bytes());
        line(b"X-B3-SpanId", hex(&ctx.span_id).as_bytes());
        line(b"X-B3-Sampled", sampled);
    }
    if let Some(b) = baggage.filter(|_| p.baggage && !present.baggage) {
        line(b"baggage", b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "80f198ee56343ba864fe8b2a57d3eff7";
    const S: &str = "e457b5a2e4d86bd1";

    fn ids() -> ([u8; 16], [u8; 8]) {
        (hex_bytes(T).unwrap(), hex_bytes(S).unwrap())
    }

    #[test]
    fn b3_single_forms() {
        let (t, s) = ids();
        let p = |v: &str| parse_b3_single(v);
        assert_eq!(
            p(&format!("{T}-{S}-1")),
            Some(B3Parent {
                trace_id: t,
                span_id: s,
                sampled: Some(true)
            })
        );
        assert_eq!(p(&format!("{T}-{S}-0")).unwrap().sampled, Some(false));
        assert_eq!(p(&format!("{T}-{S}-d")).unwrap().sampled, Some(true));
        assert_eq!(p(&format!("{T}-{S}")).unwrap().sampled, None);
        assert!(p(&format!("{T}-{S}-1-05e3ac9a4f6e3b90")).is_some());
        assert!(p(&format!(" {}-{S}-1 ", T.to_uppercase())).is_some());
        let short = p(&format!("{}-{S}-1", &T[16..])).unwrap();
        assert_eq!(short.trace_id[..8], [0; 8]);
        assert_eq!(short.trace_id[8..], t[8..]);
        for bad in [
            "0".to_string(),
            T.to_string(),
            format!("{T}-{S}-2"),
            format!("{T}-{S}-1-xyz"),
            format!("{T}-{S}-1-05e3ac9a4f6e3b90-x"),
            format!("{}-{S}-1", "0".repeat(32)),
            format!("{T}-0000000000000000-1"),
            format!("{T}x-{S}-1"),
        ] {
            assert_eq!(p(&bad), None, "{bad}");
        }
    }

    #[test]
    fn b3_multi_and_precedence() {
        let (t, s) = ids();
        let mut h = B3Headers {
            trace_id: Some(T.into()),
            span_id: Some(S.into()),
            sampled: Some("true".into()),
            ..B3Headers::default()
        };
        assert_eq!(
            parse_b3(&h),
            Some(B3Parent {
                trace_id: t,
                span_id: s,
                sampled: Some(true)
            })
        );
        h.sampled = Some("0".into());
        assert_eq!(parse_b3(&h).unwrap().sampled, Some(false));
        h.flags = Some("1".into());
        assert_eq!(parse_b3(&h).unwrap().sampled, Some(true), "debug");
        h.flags = None;
        h.sampled = Some("maybe".into());
        assert_eq!(parse_b3(&h), None);
        h.sampled = None;
        assert_eq!(parse_b3(&h).unwrap().sampled, None);
        // The single header wins when valid.
        h.single = Some(format!("{}-{}-0", "a".repeat(32), "b".repeat(16)));
        assert_eq!(parse_b3(&h).unwrap().trace_id, [0xaa; 16]);
        h.single = Some("garbage".into());
        assert_eq!(parse_b3(&h).unwrap().trace_id, t);
        h.span_id = None;
        assert_eq!(parse_b3(&h), None);
    }

    #[test]
    fn outbound_lines_per_format() {
        let ctx = SpanContext {
            trace_id: [0xab; 16],
            span_id: [0x01; 8],
            trace_flags: 0,
            trace_state: Some("k=v".into()),
        };
        let all = Propagators {
            tracecontext: true,
            baggage: true,
            b3: true,
            b3multi: true,
        };
        let text = |p: &Propagators, present: Present, crlf| {
            String::from_utf8(outbound_lines(p, &ctx, Some(b"a=1,b=2"), present, crlf)).unwrap()
        };
        let tid = "ab".repeat(16);
        assert_eq!(
            text(&all, Present::default(), true),
            format!(
                "traceparent: 00-{tid}-0101010101010101-00\r\ntracestate: k=v\r\n\
                 b3: {tid}-0101010101010101-0\r\nX-B3-TraceId: {tid}\r\n\
                 X-B3-SpanId: 0101010101010101\r\nX-B3-Sampled: 0\r\nbaggage: a=1,b=2\r\n"
            )
        );
        let present = Present {
            b3: true,
            b3multi: true,
            baggage: true,
        };
        assert_eq!(
            text(&all, present, false),
            format!("traceparent: 00-{tid}-0101010101010101-00\ntracestate: k=v\n")
        );
        assert_eq!(text(&Propagators::NONE, Present::default(), true), "");
        let b3 = Propagators {
            b3: true,
            ..Propagators::NONE
        };
        assert_eq!(
            text(&b3, Present::default(), true),
            format!("b3: {tid}-0101010101010101-0\r\n")
        );
    }

    #[test]
    fn present_headers_and_baggage_values() {
        let mut p = Present::default();
        for n in [&b"B3"[..], b"X-B3-SpanId", b"BAGGAGE", b"x-b3-"] {
            p.note(n);
        }
        assert_eq!(
            p,
            Present {
                b3: true,
                b3multi: true,
                baggage: true
            }
        );
        assert!(valid_baggage(b"userId=alice,serverNode=DF%2028"));
        assert!(!valid_baggage(b"  "));
        assert!(!valid_baggage(b"a=\x01"));
        assert!(!valid_baggage(&vec![b'a'; MAX_BAGGAGE + 1]));
    }
}
