//! Trace and span id generation.
//!
//! Ids come from a process-wide counter passed through the SplitMix64 mixer,
//! seeded from `getrandom(2)`. This needs no lock, no allocation and no
//! thread-local (OpenTelemetry's generator uses a thread-local RNG, which is
//! unusable during thread teardown and `atexit`). After `fork` the child must
//! call [`reseed`], or parent and child would hand out the same ids.

use std::sync::atomic::{AtomicU64, Ordering};

static SEED: AtomicU64 = AtomicU64::new(0);
static COUNTER: AtomicU64 = AtomicU64::new(0);

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Seeds the generator from the kernel's random source (falling back to the
/// clock and pid). Called at load and in the child after `fork`.
pub fn reseed() {
    let mut buf = [0u8; 8];
    // SAFETY: getrandom writes at most `buf.len()` bytes into our buffer.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
    let mut seed = u64::from_ne_bytes(buf);
    if n != 8 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        seed ^= now ^ (u64::from(std::process::id()) << 32);
    }
    SEED.store(seed, Ordering::Relaxed);
    COUNTER.store(0, Ordering::Relaxed);
}

fn next() -> u64 {
    let mut seed = SEED.load(Ordering::Relaxed);
    if seed == 0 {
        reseed();
        seed = SEED.load(Ordering::Relaxed);
    }
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    splitmix(seed.wrapping_add(n.wrapping_mul(GOLDEN)))
}

/// A new, non-zero span id.
pub fn span_id() -> [u8; 8] {
    loop {
        let v = next();
        if v != 0 {
            return v.to_be_bytes();
        }
    }
}

/// A new, non-zero trace id.
pub fn trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&next().to_be_bytes());
    id[8..].copy_from_slice(&span_id());
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_nonzero() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = span_id();
            assert_ne!(id, [0; 8]);
            assert!(seen.insert(id), "duplicate span id");
        }
        assert_ne!(trace_id(), trace_id());
    }

    #[test]
    fn reseed_changes_the_sequence() {
        reseed();
        let a = span_id();
        reseed();
        let b = span_id();
        assert_ne!(a, b, "a forked child must not repeat its parent's ids");
    }
}
