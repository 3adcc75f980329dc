//! `PgConnection` fed a script of calls whole and cut into pieces: the same
//! operations either way, framers and the pending queue within their caps,
//! the Stop contract, bounded names and values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumigo_core::postgres::{PgConnection, MAX_MESSAGE_BYTES, MAX_PENDING};
use lumigo_fuzz::{check_operation, operation_conn, run};

operation_conn!(
    PgConnection,
    |c| {
        assert!(
            c.buffered() <= 2 * MAX_MESSAGE_BYTES,
            "{} buffered",
            c.buffered()
        );
        assert!(c.pending_len() <= MAX_PENDING);
    },
    |c| {
        assert_eq!(c.buffered(), 0);
        assert_eq!(c.in_flight(), 0);
    }
);

fuzz_target!(|input: &[u8]| {
    let (_, ops) = run(input, &|| Target(PgConnection::new()));
    for op in &ops {
        check_operation(op, MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES);
    }
});
