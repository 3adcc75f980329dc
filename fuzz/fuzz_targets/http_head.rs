//! The HTTP head parser on one complete head: the quick path and httparse
//! agree whenever both read it (the quick path may only defer, or read what
//! httparse rejects), what is used is one of them, every string kept is
//! within its cap, and a salvaged status is a three-digit code.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumigo_core::fuzzing::{request_head, response_head};
use lumigo_core::http::{MAX_FIELD_BYTES, MAX_HEAD_BYTES};
use lumigo_core::propagators::MAX_BAGGAGE;

fuzz_target!(|head: &[u8]| {
    let req = request_head(head);
    if let (Some(q), Some(h)) = (&req.quick, &req.httparse) {
        assert_eq!(q, h, "the quick path and httparse disagree");
    }
    assert_eq!(
        req.parsed.as_ref(),
        req.quick.as_ref().or(req.httparse.as_ref())
    );
    for n in &req.fields {
        assert!(*n <= MAX_FIELD_BYTES, "a request field of {n} bytes");
    }
    for n in &req.carriers {
        assert!(
            *n <= MAX_HEAD_BYTES.max(MAX_BAGGAGE),
            "a B3 or baggage value of {n} bytes"
        );
    }
    let resp = response_head(head);
    if let (Some(q), Some(h)) = (&resp.quick, &resp.httparse) {
        assert_eq!(q, h, "the quick path and httparse disagree");
    }
    assert_eq!(
        resp.parsed.as_ref(),
        resp.quick.as_ref().or(resp.httparse.as_ref())
    );
    if let Some(status) = resp.salvaged_status {
        assert!((100..1000).contains(&status));
    }
});
