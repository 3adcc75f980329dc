//! The configuration read from hostile environment values: every variable
//! lumigo-run reads, each given a piece of the input (pieces separated by
//! NUL, in the order of `VARS`). Never a panic, and what comes out is
//! valid: endpoints that pass `check_endpoint`, batch sizes that fit,
//! a sampling ratio in [0, 1], a `tracestate` worth carrying, patterns that
//! compile, tag header names that are lower-case tokens.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumigo_core::config::{check_endpoint, is_true, parse_key_values, Config};
use lumigo_core::filter::{parse_patterns, EndpointFilters};
use lumigo_core::mask::Masker;
use lumigo_core::propagation::{valid_tracestate, MAX_TRACESTATE};

const VARS: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_PROPAGATORS",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "TRACEPARENT",
    "TRACESTATE",
    "LUMIGO_TRACER_TOKEN",
    "LUMIGO_ENDPOINT",
    "LUMIGO_SECRET_MASKING_REGEX",
    "LUMIGO_SECRET_MASKING_REGEX_HTTP_QUERY_PARAMS",
    "LUMIGO_SECRET_MASKING_REGEX_ENVIRONMENT",
    "LUMIGO_FILTER_HTTP_ENDPOINTS_REGEX",
    "LUMIGO_FILTER_HTTP_ENDPOINTS_REGEX_SERVER",
    "LUMIGO_FILTER_HTTP_ENDPOINTS_REGEX_CLIENT",
    "LUMIGO_EXECUTION_TAG_HEADERS",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_EXPORT_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SERVICE_NAME",
    "OTEL_SDK_DISABLED",
    "LUMIGO_SWITCH_OFF",
    "LUMIGO_ENABLE_TRACES",
    "LUMIGO_DEBUG",
    "LUMIGO_DEBUG_SPANDUMP",
    "LUMIGO_FLUSH_TIMEOUT",
    "LUMIGO_PROCESS_SPAN",
    "LUMIGO_TAG",
];

fuzz_target!(|input: &[u8]| {
    let text = String::from_utf8_lossy(input);
    let values: Vec<&str> = text.split('\0').collect();
    let get = |name: &str| {
        let i = VARS.iter().position(|v| *v == name)?;
        values.get(i).map(|v| (*v).to_owned())
    };
    let c = Config::from_lookup(get);

    for d in &c.destinations {
        assert!(check_endpoint(&d.endpoint).is_ok(), "{:?}", d.endpoint);
        for (name, _) in &d.headers {
            assert!(!name.trim().is_empty());
        }
    }
    assert!(c.batch.max_queue_size > 0);
    assert!(c.batch.max_export_batch_size > 0);
    assert!(c.batch.max_export_batch_size <= c.batch.max_queue_size);
    let ratio = c.sampler.root_ratio();
    assert!((0.0..=1.0).contains(&ratio), "ratio {ratio}");
    if let Some(state) = &c.env_tracestate {
        assert!(state.len() <= MAX_TRACESTATE && valid_tracestate(state));
    }
    if let Some(p) = &c.env_parent {
        assert!(p.trace_id != [0; 16] && p.span_id != [0; 8]);
    }
    for name in &c.execution_tag_headers {
        assert!(
            !name.is_empty() && *name == name.to_ascii_lowercase(),
            "{name:?}"
        );
        assert!(!name.contains(['.', ':', ' ']), "{name:?}");
    }
    let filters = EndpointFilters::new(
        &c.server_filter_patterns,
        &c.client_filter_patterns,
        c.destinations.iter().map(|d| d.endpoint.as_str()),
    );
    let _ = filters.server_filtered(values.first().copied().unwrap_or(""));
    let _ = filters.client_filtered(values.get(1).copied().unwrap_or(""));
    let masker = Masker::new(&c.query_secret_patterns);
    let _ = masker.mask_query(values.last().copied().unwrap_or(""));

    // The helpers on the raw text.
    let mut warnings = Vec::new();
    for (k, _) in parse_key_values("X", &text, &mut warnings) {
        assert!(!k.trim().is_empty());
    }
    let _ = check_endpoint(&text);
    let _ = is_true(&text);
    let _ = parse_patterns("X", Some(&text), &mut warnings);
});
