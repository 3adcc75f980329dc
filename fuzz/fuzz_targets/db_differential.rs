//! The data path's differential target for the databases parsed on the
//! capture thread (PostgreSQL, MySQL and Redis, told apart by their first
//! bytes as on a real connection): a script of calls (see
//! `fuzz/src/lib.rs`) through a client connection parsed on the app's
//! thread and through a captured one (compacted on the app's thread, see
//! `lumigo_core::postgres::PgCompactor`,
//! `lumigo_core::mysql::MysqlCompactor` and
//! `lumigo_core::redis::RedisCompactor`, parsed on the capture thread) must
//! give the same spans at the same times, whole and cut into pieces, each
//! call at a time of its own. Strict: compaction hands the parser what it
//! reads of every message, so there is no input on which the two may
//! differ, invalid framing included.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lumigo_core::capture::differential::compare_calls;
use lumigo_core::capture::Capture;
use lumigo_fuzz::Script;

fn capture() -> &'static Capture {
    static CAP: OnceLock<&'static Capture> = OnceLock::new();
    CAP.get_or_init(|| Box::leak(Box::new(Capture::new(0))))
}

fuzz_target!(|input: &[u8]| {
    let script = Script::parse(input);
    let (steps, longest) = script.steps();
    let piece = usize::from(script.piece).max(1);
    for step in [longest, piece] {
        if let Err(e) = compare_calls(false, &steps, 0, step, capture(), true) {
            panic!("{step} bytes per call: {}", e.message);
        }
    }
});
