//! `AmqpConnection` fed a script of calls whole and cut into pieces: the
//! same messages either way, frame readers and tables within their caps,
//! the Stop contract, bounded names and values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumigo_core::amqp::{AmqpConnection, MAX_CHANNELS, MAX_CONSUMERS, MAX_KEEP_BYTES};
use lumigo_core::messaging::MAX_NAME_BYTES;
use lumigo_fuzz::{check_operation, operation_conn, run};

operation_conn!(
    AmqpConnection,
    |c| {
        assert!(
            c.buffered() <= 2 * (MAX_KEEP_BYTES + 7),
            "{} buffered",
            c.buffered()
        );
        let (channels, consumers) = c.entries();
        assert!(channels <= MAX_CHANNELS && consumers <= MAX_CONSUMERS);
    },
    |_c| {}
);

fuzz_target!(|input: &[u8]| {
    let (_, ops) = run(input, &|| Target(AmqpConnection::new()));
    for op in &ops {
        check_operation(op, 2 * MAX_NAME_BYTES + 16, MAX_KEEP_BYTES);
    }
});
