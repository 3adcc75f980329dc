//! The SQL sanitizer and summarizer on hostile queries (PostgreSQL and
//! MySQL dialects): never a panic, a sanitized query no longer than the
//! query, a summary whose span name is made of the query's own words.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumigo_core::sql::{sanitize, sanitize_mysql, summarize};

fuzz_target!(|input: &[u8]| {
    let query = String::from_utf8_lossy(input);
    for s in [sanitize(&query), sanitize_mysql(&query)] {
        assert!(s.len() <= query.len(), "{query:?} -> {s:?}");
    }
    let summary = summarize(&query);
    let name = summary.span_name("db");
    assert!(name.len() <= query.len() + 3, "{query:?} -> {name:?}");
    if let Some(op) = &summary.operation {
        assert!(!op.is_empty() && *op == op.to_ascii_uppercase(), "{op:?}");
    }
});
