//! W3C Trace Context (level 1): `traceparent` and `tracestate`.
//!
//! Parsing is strict where the specification is (lowercase hex, non-zero
//! ids, version `ff` forbidden, exact length for version 00) so an invalid
//! header starts a new trace instead of joining a wrong one. `tracestate` is
//! carried along as the raw string, after a sanity check.

use crate::span::{hex, SpanContext};

/// A parsed `traceparent`: the remote parent of a span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Traceparent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

impl Traceparent {
    pub fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn parse_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = hex_digit(pair[0])? << 4 | hex_digit(pair[1])?;
    }
    Some(out)
}

/// Parses a `traceparent` header value; `None` if it is not valid.
pub fn parse_traceparent(value: &str) -> Option<Traceparent> {
    let v = value.trim_matches(|c| c == ' ' || c == '\t').as_bytes();
    if v.len() < 55 {
        return None;
    }
    let version: [u8; 1] = parse_hex(&v[0..2])?;
    if version[0] == 0xff || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more,
    // after a '-', and must still be read as version 00.
    if (version[0] == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let trace_id: [u8; 16] = parse_hex(&v[3..35])?;
    let span_id: [u8; 8] = parse_hex(&v[36..52])?;
    let flags: [u8; 1] = parse_hex(&v[53..55])?;
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    Some(Traceparent {
        trace_id,
        span_id,
        flags: flags[0],
    })
}

/// Formats the `traceparent` value naming `ctx` as the parent.
pub fn format_traceparent(ctx: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        hex(&ctx.trace_id),
        hex(&ctx.span_id),
        ctx.trace_flags
    )
}

/// Longest `tracestate` carried along (the specification lets vendors cut
/// at 512 characters).
pub const MAX_TRACESTATE: usize = 512;

/// A `tracestate` value worth carrying: a well-formed list (see
/// [`valid_tracestate`]) of at most [`MAX_TRACESTATE`] bytes, blanks around
/// it removed. Anything else is dropped whole, as the W3C specification asks
/// of a vendor that cannot parse the header. Every `tracestate` we take in
/// (request headers, the `TRACESTATE` variable) goes through here, so what
/// we propagate and what we export are always valid.
pub fn sanitize_tracestate(value: &str) -> Option<String> {
    let v = value.trim_matches(|c| c == ' ' || c == '\t');
    (v.len() <= MAX_TRACESTATE && valid_tracestate(v)).then(|| v.to_owned())
}

/// True when `value` is a well-formed W3C `tracestate` list: at most 32
/// members (empty ones between commas allowed), each `key=value` with the
/// specification's key grammar (`simple` or `tenant@system`) and a value of
/// 1 to 256 printable characters that does not end in a space and holds no
/// `,` or `=`.
pub fn valid_tracestate(value: &str) -> bool {
    fn key_char(b: u8) -> bool {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-*/".contains(&b)
    }
    fn valid_key(key: &[u8]) -> bool {
        match key.iter().position(|&b| b == b'@') {
            None => {
                (1..=256).contains(&key.len())
                    && key[0].is_ascii_lowercase()
                    && key.iter().all(|&b| key_char(b))
            }
            Some(at) => {
                let (tenant, system) = (&key[..at], &key[at + 1..]);
                (1..=241).contains(&tenant.len())
                    && (tenant[0].is_ascii_lowercase() || tenant[0].is_ascii_digit())
                    && tenant.iter().all(|&b| key_char(b))
                    && (1..=14).contains(&system.len())
                    && system[0].is_ascii_lowercase()
                    && system.iter().all(|&b| key_char(b))
            }
        }
    }
    fn valid_value(v: &[u8]) -> bool {
        (1..=256).contains(&v.len())
            && v.last() != Some(&b' ')
            && v.iter()
                .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
    }
    let mut members = 0;
    for member in value.split(',') {
        let member = member.trim_matches(|c| c == ' ' || c == '\t').as_bytes();
        if member.is_empty() {
            continue;
        }
        members += 1;
        let Some(eq) = member.iter().position(|&b| b == b'=') else {
            return false;
        };
        if members > 32 || !valid_key(&member[..eq]) || !valid_value(&member[eq + 1..]) {
            return false;
        }
    }
    members > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_specification_example() {
        let tp = parse_traceparent(VALID).unwrap();
        assert_eq!(hex(&tp.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&tp.span_id), "00f067aa0ba902b7");
        assert!(tp.is_sampled());
        assert!(!parse_traceparent(&VALID.replace("-01", "-00"))
            .unwrap()
            .is_sampled());
        assert_eq!(parse_traceparent(&format!("  {VALID}\t")), Some(tp));
    }

    #[test]
    fn rejects_invalid_values() {
        let cases = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ];
        for c in cases {
            assert_eq!(parse_traceparent(c), None, "{c:?}");
        }
    }

    #[test]
    fn future_versions_are_read_as_version_00() {
        let v = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert!(parse_traceparent(v).is_some());
        assert!(parse_traceparent(&v[..55]).is_some());
    }

    #[test]
    fn format_round_trips() {
        let ctx = SpanContext {
            trace_id: [0xab; 16],
            span_id: [0x01; 8],
            trace_flags: 1,
            trace_state: None,
        };
        let s = format_traceparent(&ctx);
        assert_eq!(s, "00-abababababababababababababababab-0101010101010101-01");
        let tp = parse_traceparent(&s).unwrap();
        assert_eq!(
            (tp.trace_id, tp.span_id, tp.flags),
            (ctx.trace_id, ctx.span_id, 1)
        );
    }

    #[test]
    fn tracestate_grammar() {
        for ok in [
            "congo=t61rcWkgMzE",
            "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
            " a=1 ,, b=2 ",
            "fw529a3039@dt=00f067aa0ba902b7",
            "0tenant@sys-1=x y",
            "k=trailing ",
        ] {
            assert!(valid_tracestate(ok), "{ok}");
        }
        let too_many = (0..33)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        let thirty_two = (0..32)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        assert!(valid_tracestate(&thirty_two));
        for bad in [
            "",
            ",",
            "not a valid=tracestate,,=",
            "Upper=1",
            "1digit=1",
            "k=",
            "k",
            "k=a=b",
            "k=\u{7f}",
            "@sys=1",
            "tenant@=1",
            "tenant@Sys=1",
            "tenant@waytoolongsystemid=1",
            too_many.as_str(),
        ] {
            assert!(!valid_tracestate(bad), "{bad:?}");
        }
        assert!(valid_tracestate(&format!("k={}", "v".repeat(256))));
        assert!(!valid_tracestate(&format!("k={}", "v".repeat(257))));
    }

    #[test]
    fn tracestate_is_sanitized() {
        assert_eq!(
            sanitize_tracestate(" congo=t61rcWkgMzE "),
            Some("congo=t61rcWkgMzE".into())
        );
        assert_eq!(sanitize_tracestate(""), None);
        assert_eq!(sanitize_tracestate("a=\u{7f}"), None);
        assert_eq!(sanitize_tracestate(&"a".repeat(513)), None);
        let long = format!("k={}", "v".repeat(256));
        assert_eq!(sanitize_tracestate(&long), Some(long.clone()));
        // Printable but not a tracestate list: dropped whole.
        assert_eq!(sanitize_tracestate("not a valid=tracestate,,="), None);
        assert_eq!(sanitize_tracestate("Upper=1,rojo=2"), None);
    }
}
