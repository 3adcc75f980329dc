//! The export worker: one thread per pipeline, started by the first span.
//!
//! It marks itself internal (its I/O bypasses our hooks), detects the
//! resource, builds one exporter per destination, then loops: wait for a
//! full batch, the schedule delay or a flush; take up to
//! `max_export_batch_size` spans; export them to every destination; tell
//! waiting flushers when the queue is drained. Whatever ends the loop (the
//! pipeline was dropped, no exporter could be built, a panic), the pipeline
//! is disabled so spans are dropped and counted instead of piling up.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{limits, lock, otlp, spandump, Exporter, Shared};
use crate::config::Config;
use crate::span::SpanRecord;
use crate::{guard, lumigo_debug, resource};

/// The worker thread's body.
pub(super) fn run_worker(shared: Arc<Shared>, config: Arc<Config>) {
    guard::mark_thread_internal();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let exporters = build_exporters(&config);
        if exporters.is_empty() {
            lumigo_debug!("no exporter could be built; spans will be dropped");
            return;
        }
        Worker {
            shared: &shared,
            config: &config,
            exporters,
            batch: Vec::new(),
        }
        .run();
    }));
    if outcome.is_err() {
        lumigo_debug!("the export thread failed; spans will be dropped from now on");
    }
    shared.disable();
}

fn build_exporters(config: &Config) -> Vec<Box<dyn Exporter>> {
    let attrs = resource::detect(config);
    let mut exporters: Vec<Box<dyn Exporter>> = Vec::new();
    if !config.destinations.is_empty() {
        for destination in &config.destinations {
            match otlp::OtlpExporter::new(destination, &config.batch, &attrs) {
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
    if let Some(path) = &config.spandump {
        exporters.push(Box::new(spandump::SpanDump::new(path.clone(), &attrs)));
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
}

impl Worker<'_> {
    fn run(mut self) {
        while let Some(flush_target) = self.next_batch() {
            let mut batch = std::mem::take(&mut self.batch);
            limits::apply(&mut batch, self.config.attribute_limits);
            self.export(&batch);
            self.batch = batch;
            self.shared.recycle(&mut self.batch);
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
        let mut deadline: Option<Instant> = None;
        let mut queue = lock(&shared.queue);
        loop {
            let closed = shared.closed.load(Ordering::Acquire);
            let flush_pending = queue.flush_requested > queue.flush_done;
            if queue.spans.is_empty() {
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
            if queue.spans.len() >= batch_size || flush_pending || closed {
                break;
            }
            let now = Instant::now();
            let due = *deadline.get_or_insert_with(|| now.checked_add(delay).unwrap_or(now));
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
        for exporter in &mut self.exporters {
            let result = catch_unwind(AssertUnwindSafe(|| exporter.export(batch)));
            let error = match result {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(_) => "the exporter panicked".to_owned(),
            };
            self.shared.failed_exports.fetch_add(1, Ordering::Release);
            lumigo_debug!(
                "export of {} spans to {} failed: {error}",
                batch.len(),
                exporter.describe()
            );
        }
    }
}
