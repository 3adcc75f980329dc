//! `RedisConnection` fed a script of calls whole and cut into pieces: the
//! same operations either way, buffers within their caps, the Stop
//! contract, bounded names and values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumigo_core::redis::{RedisConnection, MAX_HEAD_BYTES, MAX_IN_FLIGHT, MAX_QUERY_TEXT_BYTES};
use lumigo_fuzz::{check_operation, operation_conn, run};

operation_conn!(
    RedisConnection,
    |c| {
        assert!(c.buffered() <= 2 * MAX_HEAD_BYTES + MAX_IN_FLIGHT * 1024);
        assert!(c.in_flight() <= MAX_IN_FLIGHT + 1);
    },
    |c| {
        assert_eq!(c.buffered(), 0);
        assert_eq!(c.in_flight(), 0);
    }
);

fuzz_target!(|input: &[u8]| {
    let (_, ops) = run(input, &|| Target(RedisConnection::new()));
    for op in &ops {
        // A command's name is at most two words of 64 bytes; a publish
        // names its channel (a messaging name, 256 bytes at most).
        check_operation(
            op,
            8 + lumigo_core::messaging::MAX_NAME_BYTES,
            MAX_QUERY_TEXT_BYTES,
        );
    }
});
