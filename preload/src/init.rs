//! The constructor: runs when the dynamic loader maps the library, before
//! the program's `main`.

use lumigo_core::config::Config;
use lumigo_core::{guard, log, lumigo_debug};

use crate::{real, runtime};

/// Not in the unit-test binary: there the library is not loaded by
/// `LD_PRELOAD`, its hooks are not exported (`cfg_attr(not(test),
/// no_mangle)`), and the constructor must not take over the test harness's
/// process (signal handlers, fork and exit handlers, the runtime).
#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    let _guard = guard::Internal::enter();
    // Nothing may unwind out of a constructor.
    let _ = std::panic::catch_unwind(start);
}

fn start() {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    crate::hooks::dl::resolve();
    real::resolve_all();
    // Our copy of std has its own panic hook: keep panics silent (they are
    // caught and switch tracing off) unless debugging. A Rust app's own
    // hook lives in its own std and is not touched.
    std::panic::set_hook(Box::new(|info| {
        lumigo_debug!("internal panic: {info}");
    }));

    #[cfg(debug_assertions)]
    runtime::TEST_PANIC.store(
        std::env::var_os("LUMIGO_RUN_TEST_PANIC").is_some_and(|v| v == "1"),
        std::sync::atomic::Ordering::Relaxed,
    );
    let config = Config::from_env();
    log::set_debug(config.debug);
    if config.switch_off {
        lumigo_debug!("{}: not tracing", config.switch_off_reason);
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
    lumigo_core::export::set_transport_factory(crate::transport::factory);
    crate::custody::install();
    if !config.destinations.is_empty() {
        // Only OTLP export ever loads the transport library.
        crate::transport::remember_location();
    }
    if let Some(argv0) = std::env::args_os().next() {
        // Now, before the program can rewrite its argv (nginx does).
        lumigo_core::resource::remember_program(&argv0.to_string_lossy());
    }
    let has_destination = config.has_destination();
    runtime::install(config);
    if has_destination {
        // Default-disposition SIGTERM, SIGINT, SIGHUP, SIGQUIT flush first.
        lumigo_core::export::set_exit_hook(runtime::end_in_flight_for_signal);
        crate::hooks::signal::install();
    }

    // SAFETY: registering plain `extern "C"` handlers that never unwind.
    unsafe {
        libc::pthread_atfork(None, None, Some(runtime::after_fork_in_child));
        libc::pthread_atfork(
            Some(crate::transport::before_fork),
            Some(crate::transport::after_fork_in_parent),
            Some(crate::transport::after_fork_in_child),
        );
        libc::atexit(runtime::at_exit);
    }
    lumigo_debug!("tracing {}", std::env::args().next().unwrap_or_default());
    if lumigo_core::log::debug_enabled() {
        report_static_openssl();
    }
}

/// Under debug: says when the program defines OpenSSL's `SSL_write` itself
/// (Node.js links OpenSSL statically and exports its symbols): its TLS calls
/// never reach our hooks, so its HTTPS traffic is not traced (plain HTTP
/// still is).
///
/// The first `SSL_write` in the global scope is compared with ours by the
/// object defining it, not by address: the address of our own exported
/// `SSL_write`, taken here, goes through the GOT and binds to that same
/// first definition (Node's), so the two always compared equal.
fn report_static_openssl() {
    // SAFETY: dlsym with a valid name; dladdr only fills plain structs.
    unsafe {
        let found = libc::dlsym(libc::RTLD_DEFAULT, c"SSL_write".as_ptr());
        if found.is_null() {
            return;
        }
        let mut theirs: libc::Dl_info = std::mem::zeroed();
        let mut ours: libc::Dl_info = std::mem::zeroed();
        let here = report_static_openssl as *const () as *const libc::c_void;
        if libc::dladdr(found, &mut theirs) == 0
            || libc::dladdr(here, &mut ours) == 0
            || theirs.dli_fbase == ours.dli_fbase
        {
            return;
        }
        let name = if theirs.dli_fname.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(theirs.dli_fname)
                .to_string_lossy()
                .into_owned()
        };
        let name = if name.is_empty() {
            "the program".to_owned()
        } else {
            name
        };
        lumigo_debug!(
            "OpenSSL is built into {name}, not loaded from libssl: its HTTPS traffic cannot be traced; plain HTTP is"
        );
    }
}
