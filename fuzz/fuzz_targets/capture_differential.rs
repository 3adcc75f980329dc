//! The data path's differential target: a script of calls (see
//! `fuzz/src/lib.rs`) through a connection parsed on the app's thread and
//! through a captured one (framed on the app's thread, replayed on the
//! capture thread) must give the same spans and put the same number of
//! bytes on the wire, whole and cut into pieces, with and without body
//! prefixes; unless the direct parser rejected bytes as not HTTP, where
//! the two may give up at different places (neither may panic).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lumigo_core::capture::differential::compare_once;
use lumigo_core::capture::Capture;
use lumigo_fuzz::Script;

fn capture(prefix: usize) -> &'static Capture {
    static WITH: OnceLock<&'static Capture> = OnceLock::new();
    static WITHOUT: OnceLock<&'static Capture> = OnceLock::new();
    let cell = if prefix == 0 { &WITHOUT } else { &WITH };
    cell.get_or_init(|| Box::leak(Box::new(Capture::new(prefix))))
}

fuzz_target!(|input: &[u8]| {
    let script = Script::parse(input);
    let (steps, longest) = script.steps();
    let piece = usize::from(script.piece).max(1);
    for prefix in [0, 7] {
        for step in [longest, piece] {
            let cap = capture(prefix);
            match compare_once(script.server, &steps, prefix, step, cap) {
                Ok(_) => {}
                // On bytes the parser rejects as not HTTP, the framer (which
                // reads only what framing needs) may give up elsewhere.
                Err(e) if e.direct_rejected => {}
                Err(e) => panic!("prefix {prefix}, {step} bytes per call: {}", e.message),
            }
        }
    }
});
