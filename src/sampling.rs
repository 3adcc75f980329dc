//! Head sampling: `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`.
//!
//! The decision is taken once, when a span's identity is chosen, and lives
//! in the sampled bit of its trace flags: an unsampled span is not exported,
//! and the `traceparent` (or `b3`) we send carries the bit, so downstream
//! services follow it. `traceidratio` compares the trace id's low 8 bytes
//! with a bound, as the OpenTelemetry SDKs do (Go, Java), so every service
//! using the same ratio keeps the same traces.

/// A sampler of the OpenTelemetry SDK specification.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampler {
    /// The decision for a span with no parent (or, without `parent_based`,
    /// for every span).
    root: Root,
    /// `parentbased_*`: a span with a parent follows the parent's decision.
    parent_based: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Root {
    AlwaysOn,
    AlwaysOff,
    /// Keeps a trace when its id's low 63 bits (bytes 8..16, big-endian,
    /// shifted right once) are below this bound.
    Ratio {
        ratio: f64,
        bound: u64,
    },
}

impl Default for Sampler {
    /// `parentbased_always_on`, the specification's default.
    fn default() -> Sampler {
        Sampler {
            root: Root::AlwaysOn,
            parent_based: true,
        }
    }
}

impl Sampler {
    /// Reads `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`; problems
    /// become warnings and the default.
    pub fn from_env(name: Option<&str>, arg: Option<&str>, warnings: &mut Vec<String>) -> Sampler {
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        let Some(name) = name else {
            return Sampler::default();
        };
        let mut ratio = || -> f64 {
            let Some(raw) = arg.map(str::trim).filter(|a| !a.is_empty()) else {
                return 1.0;
            };
            match raw.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => {
                    warnings.push(format!(
                        "OTEL_TRACES_SAMPLER_ARG={raw:?} is not a ratio between 0 and 1; using 1.0"
                    ));
                    1.0
                }
            }
        };
        let (root, parent_based) = match name.to_ascii_lowercase().as_str() {
            "always_on" => (Root::AlwaysOn, false),
            "always_off" => (Root::AlwaysOff, false),
            "traceidratio" => (Root::ratio(ratio()), false),
            "parentbased_always_on" => (Root::AlwaysOn, true),
            "parentbased_always_off" => (Root::AlwaysOff, true),
            "parentbased_traceidratio" => (Root::ratio(ratio()), true),
            _ => {
                warnings.push(format!(
                    "OTEL_TRACES_SAMPLER: unknown sampler {name:?} (known: always_on, always_off, \
                     traceidratio, parentbased_always_on, parentbased_always_off, \
                     parentbased_traceidratio); using parentbased_always_on"
                ));
                return Sampler::default();
            }
        };
        Sampler { root, parent_based }
    }

    /// The trace flags of a new span in trace `trace_id`, whose parent (if
    /// it has one that decided) was sampled or not.
    pub fn flags(&self, trace_id: &[u8; 16], parent_sampled: Option<bool>) -> u8 {
        let keep = match parent_sampled {
            Some(sampled) if self.parent_based => sampled,
            _ => self.root.keeps(trace_id),
        };
        u8::from(keep)
    }

    /// The ratio of traces kept at the root, for tests and diagnostics.
    pub fn root_ratio(&self) -> f64 {
        match self.root {
            Root::AlwaysOn => 1.0,
            Root::AlwaysOff => 0.0,
            Root::Ratio { ratio, .. } => ratio,
        }
    }
}

impl Root {
    fn ratio(ratio: f64) -> Root {
        if ratio >= 1.0 {
            return Root::AlwaysOn;
        }
        if ratio <= 0.0 {
            return Root::AlwaysOff;
        }
        // As Go's TraceIDRatioBased: ratio × 2^63, compared with the low
        // 8 bytes shifted right once.
        Root::Ratio {
            ratio,
            bound: (ratio * (1u64 << 63) as f64) as u64,
        }
    }

    fn keeps(&self, trace_id: &[u8; 16]) -> bool {
        match *self {
            Root::AlwaysOn => true,
            Root::AlwaysOff => false,
            Root::Ratio { bound, .. } => {
                let mut low = [0u8; 8];
                low.copy_from_slice(&trace_id[8..]);
                (u64::from_be_bytes(low) >> 1) < bound
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(name: &str, arg: Option<&str>) -> (Sampler, Vec<String>) {
        let mut w = Vec::new();
        (Sampler::from_env(Some(name), arg, &mut w), w)
    }

    fn id(low: u64) -> [u8; 16] {
        let mut t = [0xffu8; 16];
        t[8..].copy_from_slice(&low.to_be_bytes());
        t
    }

    #[test]
    fn names_and_defaults() {
        let mut w = Vec::new();
        assert_eq!(Sampler::from_env(None, None, &mut w), Sampler::default());
        assert_eq!(
            Sampler::from_env(Some(" "), None, &mut w),
            Sampler::default()
        );
        assert!(w.is_empty());
        let (s, w) = sampler("ALWAYS_OFF", None);
        assert!(w.is_empty());
        assert_eq!(
            s.flags(&id(0), Some(true)),
            0,
            "always_off ignores the parent"
        );
        let (s, w) = sampler("always_on", None);
        assert!(w.is_empty());
        assert_eq!(
            s.flags(&id(0), Some(false)),
            1,
            "always_on ignores the parent"
        );
        let (s, w) = sampler("parentbased_always_off", None);
        assert!(w.is_empty());
        assert_eq!(s.flags(&id(0), None), 0);
        assert_eq!(s.flags(&id(0), Some(true)), 1);
        let (s, w) = sampler("parentbased_always_on", None);
        assert!(w.is_empty());
        assert_eq!(s.flags(&id(0), None), 1);
        assert_eq!(s.flags(&id(0), Some(false)), 0);
        let (s, w) = sampler("sometimes", Some("0.5"));
        assert_eq!(s, Sampler::default());
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn ratio_argument() {
        assert_eq!(sampler("traceidratio", None).0.root_ratio(), 1.0);
        assert_eq!(sampler("traceidratio", Some("0.25")).0.root_ratio(), 0.25);
        for bad in ["1.5", "-0.1", "half", "NaN"] {
            let (s, w) = sampler("parentbased_traceidratio", Some(bad));
            assert_eq!(s.root_ratio(), 1.0, "{bad}");
            assert_eq!(w.len(), 1, "{bad}: {w:?}");
        }
        let (s, _) = sampler("traceidratio", Some("0"));
        assert_eq!(s.flags(&id(0), Some(true)), 0);
    }

    /// The low 8 bytes decide, as in the SDKs: below ratio × 2^64 kept.
    #[test]
    fn ratio_compares_the_low_bytes() {
        let (s, _) = sampler("traceidratio", Some("0.25"));
        assert_eq!(s.flags(&id(0), None), 1);
        assert_eq!(s.flags(&id((1 << 62) - 2), None), 1);
        assert_eq!(s.flags(&id(1 << 62), None), 0);
        assert_eq!(s.flags(&id(u64::MAX), None), 0);
        // The high bytes play no part.
        let mut t = id(5);
        t[0] = 0;
        assert_eq!(s.flags(&t, None), 1);
        // Over many random ids, about a quarter.
        crate::ids::reseed();
        let kept: u32 = (0..10_000)
            .map(|_| u32::from(s.flags(&crate::ids::trace_id(), None)))
            .sum();
        assert!((2_000..3_000).contains(&kept), "{kept}");
        let (p, _) = sampler("parentbased_traceidratio", Some("0.25"));
        assert_eq!(p.flags(&id(u64::MAX), Some(true)), 1);
        assert_eq!(p.flags(&id(0), Some(false)), 0);
    }
}
