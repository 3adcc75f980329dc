//! `NatsConnection` fed a script of calls whole and cut into pieces: the
//! same messages either way, control lines and header blocks within their
//! caps (and a reply's kept body), the Stop contract, bounded names and
//! values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumigo_core::messaging::MAX_NAME_BYTES;
use lumigo_core::nats::{NatsConnection, MAX_ACK_BYTES, MAX_HEADER_BYTES, MAX_LINE_BYTES};
use lumigo_fuzz::{check_operation, operation_conn, run};

operation_conn!(
    NatsConnection,
    |c| {
        assert!(
            c.buffered() <= 2 * MAX_LINE_BYTES + MAX_HEADER_BYTES + MAX_ACK_BYTES,
            "{} buffered",
            c.buffered()
        );
    },
    |_c| {}
);

fuzz_target!(|input: &[u8]| {
    let (_, ops) = run(input, &|| Target(NatsConnection::new()));
    for op in &ops {
        check_operation(op, 2 * MAX_NAME_BYTES + 16, MAX_LINE_BYTES);
    }
});
