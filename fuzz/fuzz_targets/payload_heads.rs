//! Payload headers: the one pass over a head (`head_pass`) and the
//! field-by-field way give the same headers JSON, content type, content
//! encoding and request secrets for every head the one pass takes, at any
//! length limit; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let (first, head) = input.split_first().unwrap_or((&0, &[]));
    // Small limits cut the JSON at every place; 255 is the default's size.
    let limit = if *first == 255 {
        2048
    } else {
        usize::from(*first) + 1
    };
    if let Err(diff) = lumigo_core::fuzzing::payload_head_ways(head, limit) {
        panic!("{head:?} at {limit}: {diff}");
    }
});
