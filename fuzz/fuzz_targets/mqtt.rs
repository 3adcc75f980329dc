//! `MqttConnection` fed a script of calls whole and cut into pieces: the
//! same messages either way, packet readers, aliases and unacknowledged
//! publishes within their caps, the Stop contract, bounded names and
//! values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumigo_core::messaging::MAX_NAME_BYTES;
use lumigo_core::mqtt::{MqttConnection, MAX_ALIASES, MAX_IN_FLIGHT, MAX_KEEP_BYTES};
use lumigo_fuzz::{check_operation, operation_conn, run};

operation_conn!(
    MqttConnection,
    |c| {
        assert!(
            c.buffered() <= 2 * (MAX_KEEP_BYTES + 5),
            "{} buffered",
            c.buffered()
        );
        let (out, inb) = c.aliases();
        assert!(out <= MAX_ALIASES && inb <= MAX_ALIASES);
        assert!(c.in_flight() <= MAX_IN_FLIGHT);
    },
    |c| {
        assert_eq!(c.in_flight(), 0);
    }
);

fuzz_target!(|input: &[u8]| {
    let (_, ops) = run(input, &|| Target(MqttConnection::new()));
    for op in &ops {
        check_operation(op, 2 * MAX_NAME_BYTES + 16, MAX_KEEP_BYTES);
    }
});
