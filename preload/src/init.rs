//! The constructor: runs when the dynamic loader maps the library, before
//! the program's `main`.

use lumigo_core::config::Config;
use lumigo_core::{guard, log, lumigo_debug};

use crate::{real, runtime};

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    let _guard = guard::Internal::enter();
    // Nothing may unwind out of a constructor.
    let _ = std::panic::catch_unwind(start);
}

fn start() {
    real::resolve_all();
    // Our copy of std has its own panic hook: keep panics silent (they are
    // caught and switch tracing off) unless debugging. A Rust app's own
    // hook lives in its own std and is not touched.
    std::panic::set_hook(Box::new(|info| {
        lumigo_debug!("internal panic: {info}");
    }));

    let config = Config::from_env();
    log::set_debug(config.debug);
    if config.switch_off {
        lumigo_debug!("LUMIGO_SWITCH_OFF is set: not tracing");
        return;
    }
    for w in &config.warnings {
        lumigo_debug!("configuration: {w}");
    }
    if !config.has_destination() {
        lumigo_debug!(
            "no LUMIGO_TRACER_TOKEN, OTEL_EXPORTER_OTLP_ENDPOINT or LUMIGO_DEBUG_SPANDUMP: spans are not sent anywhere"
        );
    }
    lumigo_core::ids::reseed();
    runtime::install(config);

    // SAFETY: registering plain `extern "C"` handlers that never unwind.
    unsafe {
        libc::pthread_atfork(None, None, Some(runtime::after_fork_in_child));
        libc::atexit(runtime::at_exit);
    }
    lumigo_debug!("tracing {}", std::env::args().next().unwrap_or_default());
}
