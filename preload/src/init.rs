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
    lumigo_core::export::set_transport_factory(crate::transport::factory);
    if !config.destinations.is_empty() {
        // Only OTLP export ever loads the transport library.
        crate::transport::remember_location();
    }
    runtime::install(config);

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
/// (Node.js links OpenSSL statically): its TLS calls never reach our hooks,
/// so its HTTPS traffic is not traced (plain HTTP still is).
fn report_static_openssl() {
    // SAFETY: dlsym with a valid name; dladdr fills a plain struct.
    unsafe {
        let found = libc::dlsym(libc::RTLD_DEFAULT, c"SSL_write".as_ptr());
        let ours = crate::hooks::tls::SSL_write as *const () as *mut libc::c_void;
        if found.is_null() || found == ours {
            return;
        }
        let mut info: libc::Dl_info = std::mem::zeroed();
        let name = if libc::dladdr(found, &mut info) != 0 && !info.dli_fname.is_null() {
            std::ffi::CStr::from_ptr(info.dli_fname)
                .to_string_lossy()
                .into_owned()
        } else {
            "the program".to_owned()
        };
        let name = if name.is_empty() {
            "the program".to_owned()
        } else {
            name
        };
        lumigo_debug!(
            "OpenSSL is linked into {name} ahead of lumigo-run (as in Node.js): its HTTPS traffic cannot be traced; plain HTTP is"
        );
    }
}
