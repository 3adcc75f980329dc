//! What a record push costs the app's thread while the capture thread
//! drains the same ring on another core: the cost callgrind cannot show
//! (it runs threads one at a time, so it never sees a cache line move
//! between cores).
//!
//! The main thread plays an app thread: per exchange it "works" (spins)
//! for a while, then pushes two records shaped like a keep-alive nginx
//! exchange's (a request head with its identity, a response head). A
//! second thread plays the capture thread: it drains, "decodes" each
//! record (spins), and sleeps as the real one does (a 5 ms doze while
//! busy), or, with DOZE_MS 0, drains again at once (no sleep, so no
//! record waits for the scheduler and none is spilled: the cache lines'
//! cost alone). Printed: CPU cycles (TSC) per push on the app thread, and how
//! many records went to the spill or were refused.
//!
//! usage: ring_handoff [EXCHANGES] [APP_NS] [DECODE_NS] [DOZE_MS]
//! (`scripts/bench/ring_handoff.sh` runs two builds of it alternately.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lumigo_core::capture::ring::{kind, Header, Rings};

#[cfg(target_arch = "x86_64")]
fn ticks() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86-64.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn ticks() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Ticks per nanosecond, measured over 50 ms.
fn ticks_per_ns() -> f64 {
    let (t0, i0) = (ticks(), Instant::now());
    std::thread::sleep(Duration::from_millis(50));
    (ticks() - t0) as f64 / i0.elapsed().as_nanos() as f64
}

fn spin(ticks_wanted: u64) {
    let start = ticks();
    while ticks() - start < ticks_wanted {
        std::hint::spin_loop();
    }
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let exchanges = arg(1, 200_000);
    let app_ns = arg(2, 4_000);
    let decode_ns = arg(3, 1_500);
    let doze_ms = arg(4, 5);
    let per_ns = ticks_per_ns();
    let (app, decode) = (
        (app_ns as f64 * per_ns) as u64,
        (decode_ns as f64 * per_ns) as u64,
    );
    let rings = Arc::new(Rings::new());
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (rings, stop) = (Arc::clone(&rings), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut sum = 0u64;
            loop {
                let n = rings.drain(|h, p| {
                    sum = sum.wrapping_add(h.seq ^ p.len() as u64);
                    spin(decode);
                });
                if n == 0 && stop.load(Ordering::Acquire) {
                    return sum;
                }
                if doze_ms > 0 {
                    rings.sleep((n > 0).then_some(Duration::from_millis(doze_ms)));
                } else {
                    std::hint::spin_loop();
                }
            }
        })
    };
    let request = [b'q'; 120];
    let response = [b'r'; 280];
    let mut pushing = 0u64;
    let mut refused = 0u64;
    let started = Instant::now();
    for i in 0..exchanges {
        spin(app);
        let t0 = ticks();
        for (seq, bytes) in [(2 * i, &request[..]), (2 * i + 1, &response[..])] {
            let h = Header {
                conn: 1,
                seq,
                kind: kind::DATA,
                ..Header::default()
            };
            if !rings.push(h, &[bytes], || {}) {
                refused += 1;
            }
        }
        pushing += ticks() - t0;
    }
    let wall = started.elapsed();
    stop.store(true, Ordering::Release);
    rings.wake();
    let _ = consumer.join();
    println!(
        "ticks_per_push={:.1} ns_per_push={:.1} pushes={} spilled={} refused={} wall_ms={}",
        pushing as f64 / (2 * exchanges) as f64,
        pushing as f64 / per_ns / (2 * exchanges) as f64,
        2 * exchanges,
        rings.spilled(),
        refused,
        wall.as_millis()
    );
}
