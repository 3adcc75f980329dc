//! Why spans were lost, counted, for one summary line at exit under
//! `LUMIGO_DEBUG` (e.g. `12 spans lost: 10 HTTP 503, 2 deadline`) instead
//! of a message per lost batch.
//!
//! App threads count with one relaxed atomic add; HTTP statuses are kept in
//! a small table written only by the export thread, so no lock is needed
//! anywhere. A span lost at two destinations counts twice.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};

/// Why a span (or a batch of them) did not reach a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// `OTEL_BSP_MAX_QUEUE_SIZE` spans were already waiting.
    QueueFull,
    /// No token, endpoint or span dump is configured.
    NoDestination,
    /// Export is off: the export thread could not start, or stopped.
    Disabled,
    /// Still queued when `LUMIGO_FLUSH_TIMEOUT` ran out at exit.
    Deadline,
    /// Connection refused, timed out, reset; DNS or TLS failure.
    Transport,
    /// The endpoint answered with this non-2xx status.
    Http(u16),
    /// The OTLP/gRPC endpoint answered with this non-OK status.
    Grpc(u8),
    /// The span dump could not be opened or written.
    Write,
    /// The exporter panicked.
    Panic,
}

/// gRPC statuses share the table of HTTP statuses, above every HTTP one.
const GRPC_SLOT_BASE: u16 = 1000;

/// gRPC status names, by code.
const GRPC_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// `UNAVAILABLE (14)`.
pub fn grpc_name(code: u8) -> String {
    match GRPC_NAMES.get(usize::from(code)) {
        Some(name) => format!("{name} ({code})"),
        None => format!("status {code}"),
    }
}

/// Distinct HTTP statuses counted separately; others share the last slot.
const STATUS_SLOTS: usize = 8;

/// Counters of lost spans by [`Loss`].
#[derive(Default)]
pub(super) struct Losses {
    queue_full: AtomicU64,
    no_destination: AtomicU64,
    disabled: AtomicU64,
    deadline: AtomicU64,
    transport: AtomicU64,
    write: AtomicU64,
    panic: AtomicU64,
    /// (status, count); a status is written once, by the export thread.
    http: [(AtomicU16, AtomicU64); STATUS_SLOTS],
    http_other: AtomicU64,
}

impl Losses {
    /// At exit: `n` spans were still queued when the flush deadline passed.
    /// Stored, not added: a later flush that also runs out replaces it.
    pub(super) fn set_deadline(&self, n: u64) {
        self.deadline.store(n, Ordering::Relaxed);
    }

    pub(super) fn add(&self, why: Loss, n: u64) {
        if n == 0 {
            return;
        }
        let counter = match why {
            Loss::QueueFull => &self.queue_full,
            Loss::NoDestination => &self.no_destination,
            Loss::Disabled => &self.disabled,
            Loss::Deadline => &self.deadline,
            Loss::Transport => &self.transport,
            Loss::Write => &self.write,
            Loss::Panic => &self.panic,
            Loss::Http(status) => self.http_slot(status),
            Loss::Grpc(code) => self.http_slot(GRPC_SLOT_BASE + u16::from(code)),
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Only the export thread counts HTTP statuses, so claiming a free slot
    /// needs no compare-and-swap.
    fn http_slot(&self, status: u16) -> &AtomicU64 {
        for (s, count) in &self.http {
            match s.load(Ordering::Relaxed) {
                0 => {
                    s.store(status, Ordering::Relaxed);
                    return count;
                }
                known if known == status => return count,
                _ => {}
            }
        }
        &self.http_other
    }

    /// Everything lost so far, by reason, largest first.
    pub(super) fn breakdown(&self) -> Vec<(String, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out: Vec<(String, u64)> = Vec::new();
        for (s, c) in &self.http {
            let status = s.load(Ordering::Relaxed);
            if status >= GRPC_SLOT_BASE {
                out.push((
                    format!("gRPC {}", grpc_name((status - GRPC_SLOT_BASE) as u8)),
                    get(c),
                ));
            } else if status != 0 {
                out.push((format!("HTTP {status}"), get(c)));
            }
        }
        for (name, c) in [
            ("other HTTP status", &self.http_other),
            ("connection failed", &self.transport),
            ("deadline", &self.deadline),
            ("queue full", &self.queue_full),
            ("no destination", &self.no_destination),
            ("export disabled", &self.disabled),
            ("span dump not writable", &self.write),
            ("exporter failed", &self.panic),
        ] {
            out.push((name.to_owned(), get(c)));
        }
        out.retain(|(_, n)| *n > 0);
        out.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        out
    }

    /// `12 spans lost: 10 HTTP 503, 2 deadline`, or `None` if none was.
    pub(super) fn summary(&self) -> Option<String> {
        let parts = self.breakdown();
        let total: u64 = parts.iter().map(|(_, n)| n).sum();
        if total == 0 {
            return None;
        }
        let parts: Vec<String> = parts.iter().map(|(why, n)| format!("{n} {why}")).collect();
        let noun = if total == 1 { "span" } else { "spans" };
        Some(format!("{total} {noun} lost: {}", parts.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_each_reason_largest_first() {
        let l = Losses::default();
        assert_eq!(l.summary(), None);
        l.add(Loss::Deadline, 2);
        l.add(Loss::Http(503), 4);
        l.add(Loss::Http(503), 6);
        l.add(Loss::Transport, 0);
        assert_eq!(
            l.summary().as_deref(),
            Some("12 spans lost: 10 HTTP 503, 2 deadline")
        );
        l.add(Loss::Grpc(14), 1);
        assert!(l
            .summary()
            .unwrap()
            .ends_with(", 2 deadline, 1 gRPC UNAVAILABLE (14)"));
        l.add(Loss::QueueFull, 1);
        l.add(Loss::Transport, 3);
        assert_eq!(
            l.summary().as_deref(),
            Some(
                "17 spans lost: 10 HTTP 503, 3 connection failed, 2 deadline, \
                 1 gRPC UNAVAILABLE (14), 1 queue full"
            )
        );
    }

    #[test]
    fn statuses_beyond_the_table_are_counted_together() {
        let l = Losses::default();
        for status in 400..400 + STATUS_SLOTS as u16 + 3 {
            l.add(Loss::Http(status), 1);
        }
        let b = l.breakdown();
        assert_eq!(b.len(), STATUS_SLOTS + 1);
        assert!(b.contains(&("other HTTP status".to_owned(), 3)), "{b:?}");
        let l = Losses::default();
        l.add(Loss::NoDestination, 1);
        assert_eq!(
            l.summary().as_deref(),
            Some("1 span lost: 1 no destination")
        );
    }
}
