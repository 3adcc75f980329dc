//! The export worker: one thread per pipeline, started by the first span.
//!
//! It marks itself internal (its I/O bypasses our hooks), detects the
//! resource, builds one exporter per destination, then loops: wait for a
//! full batch, the batch's due time (see [`due_time`]) or a flush; take up to
//! `max_export_batch_size` spans; export them to every destination; tell
//! waiting flushers when the queue is drained. Whatever ends the loop (the
//! pipeline was dropped, no exporter could be built, a panic), the pipeline
//! is disabled so spans are dropped and counted instead of piling up.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    limits, lock, otlp, spandump, Exporter, Loss, Shared, EXIT_HOOK, SIGNAL_DRAINING,
    SIGNAL_REQUESTED,
};
use crate::config::Config;
use crate::span::SpanRecord;
use crate::{guard, lumigo_debug, resource};

/// The worker thread's body.
pub(super) fn run_worker(shared: Arc<Shared>, config: Arc<Config>) {
    guard::mark_thread_internal();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let exporters = build_exporters(&config, &shared);
        if exporters.is_empty() {
            lumigo_debug!("no exporter could be built; spans will be dropped");
            return;
        }
        Worker {
            shared: &shared,
            config: &config,
            said_failure: vec![false; exporters.len()],
            exporters,
            batch: Vec::new(),
            strings: Vec::new(),
            last_export: None,
        }
        .run();
    }));
    if outcome.is_err() {
        lumigo_debug!("the export thread failed; spans will be dropped from now on");
    }
    shared.disable();
}

fn build_exporters(config: &Config, shared: &Shared) -> Vec<Box<dyn Exporter>> {
    let attrs = resource::detect(config);
    let mut exporters: Vec<Box<dyn Exporter>> = Vec::new();
    // The span dump first: a local write, done before an OTLP post that a
    // slow collector may hold for seconds, so that a batch's lines are in
    // the dump even if the process is killed meanwhile.
    if let Some(path) = &config.spandump {
        let dump = spandump::SpanDump::new(path.clone(), &attrs);
        let _ = shared.dump_resource.set(dump.resource_json().to_owned());
        exporters.push(Box::new(dump));
    }
    if !config.destinations.is_empty() {
        for (destination, health) in config.destinations.iter().zip(&shared.endpoints) {
            match otlp::OtlpExporter::new(destination, &config.batch, &attrs, Arc::clone(health)) {
                Ok((exporter, problems)) => {
                    for p in problems {
                        lumigo_debug!("{}: {p}", exporter.describe());
                    }
                    exporters.push(Box::new(exporter));
                }
                Err(e) => lumigo_debug!(
                    "cannot export to OTLP endpoint {}: {e}; its spans will be dropped",
                    destination.endpoint
                ),
            }
        }
    }
    for e in &exporters {
        lumigo_debug!("exporting spans to {}", e.describe());
    }
    exporters
}

struct Worker<'a> {
    shared: &'a Shared,
    config: &'a Config,
    exporters: Vec<Box<dyn Exporter>>,
    /// The batch being exported; its allocation is kept for the next one.
    batch: Vec<SpanRecord>,
    /// The strings of the last batch on their way back (`crate::spare`);
    /// its allocation is kept too.
    strings: Vec<String>,
    /// When the last export started.
    last_export: Option<Instant>,
    /// Per exporter: its first failure was reported.
    said_failure: Vec<bool>,
}

/// How long the first span after a quiet spell waits for company.
const LIGHT_TRAFFIC_DELAY: Duration = Duration::from_millis(100);

/// When a partial batch whose first span the worker saw at `first` goes
/// out: `quick` after it, but never sooner than `delay` after the previous
/// export (`OTEL_BSP_SCHEDULE_DELAY` is the interval between two exports).
/// Light traffic thus leaves within ~100 ms (a kill, even SIGKILL, loses
/// little), while a busy process still exports once per schedule delay.
fn due_time(
    first: Instant,
    last_export: Option<Instant>,
    quick: Duration,
    delay: Duration,
) -> Instant {
    let soonest = first.checked_add(quick).unwrap_or(first);
    let latest = first.checked_add(delay).unwrap_or(first);
    match last_export.and_then(|t| t.checked_add(delay)) {
        Some(spaced) => spaced.clamp(soonest, latest),
        None => soonest,
    }
}

impl Worker<'_> {
    fn run(mut self) {
        while let Some(flush_target) = self.next_batch() {
            let mut batch = std::mem::take(&mut self.batch);
            limits::apply(&mut batch, self.config.attribute_limits);
            self.export(&batch);
            self.batch = batch;
            self.shared.recycle(&mut self.batch, &mut self.strings);
            let mut queue = lock(&self.shared.queue);
            queue.in_flight = 0;
            if queue.spans.is_empty() && flush_target > queue.flush_done {
                queue.flush_done = flush_target;
                self.shared.flushed.notify_all();
            }
        }
    }

    /// Waits for the next batch and moves it into `self.batch`; returns the
    /// flush generation it belongs to, or `None` when the pipeline is closed
    /// and empty.
    fn next_batch(&mut self) -> Option<u64> {
        let shared = self.shared;
        let batch_size = self.config.batch.max_export_batch_size.max(1);
        let delay = self.config.batch.schedule_delay;
        let quick = delay.min(LIGHT_TRAFFIC_DELAY);
        let last_export = self.last_export;
        let mut deadline: Option<Instant> = None;
        let mut queue = lock(&shared.queue);
        loop {
            if shared.signal_exit.load(Ordering::Acquire) == SIGNAL_REQUESTED {
                // A fatal signal: end what is in flight (which queues spans,
                // so not under the lock), then export everything.
                shared.signal_exit.store(SIGNAL_DRAINING, Ordering::Release);
                drop(queue);
                if let Some(hook) = EXIT_HOOK.get() {
                    let _ = catch_unwind(hook);
                }
                queue = lock(&shared.queue);
                continue;
            }
            let draining = shared.signal_exit.load(Ordering::Acquire) == SIGNAL_DRAINING;
            let closed = shared.closed.load(Ordering::Acquire);
            let flush_pending = queue.flush_requested > queue.flush_done;
            if queue.spans.is_empty() {
                if draining && queue.in_flight == 0 {
                    shared.signal_flush_done();
                }
                if flush_pending && queue.in_flight == 0 {
                    queue.flush_done = queue.flush_requested;
                    shared.flushed.notify_all();
                    continue;
                }
                if closed {
                    return None;
                }
                // Nothing to do until a span arrives: no timer, no wake-ups.
                queue.worker_idle = true;
                deadline = None;
                queue = shared.work.wait(queue).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            queue.worker_idle = false;
            if queue.spans.len() >= batch_size || flush_pending || closed || draining {
                break;
            }
            let now = Instant::now();
            let due = *deadline.get_or_insert_with(|| due_time(now, last_export, quick, delay));
            if now >= due {
                break;
            }
            queue = shared
                .work
                .wait_timeout(queue, due - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let n = queue.spans.len().min(batch_size);
        self.batch.extend(queue.spans.drain(..n));
        queue.in_flight = n;
        Some(queue.flush_requested)
    }

    fn export(&mut self, batch: &[SpanRecord]) {
        self.last_export = Some(Instant::now());
        for (i, exporter) in self.exporters.iter_mut().enumerate() {
            let result = catch_unwind(AssertUnwindSafe(|| exporter.export(batch)));
            let (why, error) = match result {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => (exporter.failure(), e),
                Err(_) => (Loss::Panic, "the exporter panicked".to_owned()),
            };
            self.shared.losses.add(why, batch.len() as u64);
            self.shared.failed_exports.fetch_add(1, Ordering::Release);
            // The first failure per destination is told as it happens; the
            // rest are counted for the summary at exit.
            if !std::mem::replace(&mut self.said_failure[i], true) {
                lumigo_debug!(
                    "export of {} spans to {} failed: {error} (further failures are counted and summed up at exit)",
                    batch.len(),
                    exporter.describe()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_after_a_quiet_spell_leaves_quickly_busy_ones_wait_for_the_delay() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let (quick, delay) = (ms(100), ms(5000));
        assert_eq!(
            due_time(t0, None, quick, delay),
            t0 + quick,
            "first batch ever"
        );
        let long_ago = t0.checked_sub(ms(6000));
        if let Some(long_ago) = long_ago {
            assert_eq!(due_time(t0, Some(long_ago), quick, delay), t0 + quick);
        }
        // The previous export was 1 s ago: wait until the delay since it.
        let recent = t0.checked_sub(ms(1000)).unwrap_or(t0);
        assert_eq!(due_time(t0, Some(recent), quick, delay), recent + delay);
        // Never later than the delay after the first span.
        assert_eq!(due_time(t0, Some(t0 + ms(10)), quick, delay), t0 + delay);
        // A delay shorter than the quick one wins.
        assert_eq!(due_time(t0, None, ms(20), ms(20)), t0 + ms(20));
    }
}
