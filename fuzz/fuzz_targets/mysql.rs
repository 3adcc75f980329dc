//! `MysqlConnection` fed a script of calls whole and cut into pieces: the
//! same operations either way, buffers within their caps, the Stop
//! contract, bounded names and values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumigo_core::mysql::{MysqlConnection, MAX_IN_FLIGHT, MAX_QUERY_BYTES, MAX_STATEMENT_BYTES};
use lumigo_fuzz::{check_operation, operation_conn, run};

operation_conn!(
    MysqlConnection,
    |c| {
        assert!(c.buffered() <= 2 * (2048 + 256 + MAX_QUERY_BYTES) + MAX_STATEMENT_BYTES);
        assert!(c.in_flight() <= MAX_IN_FLIGHT);
    },
    |c| {
        assert_eq!(c.in_flight(), 0);
    }
);

fuzz_target!(|input: &[u8]| {
    let (_, ops) = run(input, &|| Target(MysqlConnection::new()));
    for op in &ops {
        check_operation(op, 2 * 256 + 1, MAX_QUERY_BYTES);
    }
});
