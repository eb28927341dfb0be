//! Prometheus metrics while `start`, `complete`, `migrate` (and `resume`, `verify`) run:
//! executor events become series of the [`metrics`] facade, which the CLI's
//! `--metrics-listen ADDR` serves in Prometheus' text format
//! (`metrics-exporter-prometheus`). Every series is listed in [`SERIES`] and the README.

use std::collections::HashMap;
use std::sync::Mutex;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::backfill::{PauseReason, Progress, ProgressState, Throttle};
use crate::executor::{Event, Observer};

/// (name, kind, labels, help): what `--metrics-listen` serves.
pub const SERIES: &[(&str, &str, &str, &str)] = &[
    ("pgbaton_phase", "gauge", "phase", "1 for the phase running now (start, complete, rollback), 0 for the others"),
    ("pgbaton_step", "gauge", "phase", "ordinal (1-based) of the step running now"),
    ("pgbaton_steps_total", "gauge", "phase", "steps in the phase"),
    ("pgbaton_lock_retries_total", "counter", "phase", "lock timeouts of DDL steps, each retried"),
    ("pgbaton_backfill_rows_done", "gauge", "table, pass", "rows walked by the backfill (pass fill or catch_up: the catch-up rows)"),
    ("pgbaton_backfill_rows_updated", "gauge", "table, pass", "rows the backfill updated"),
    ("pgbaton_backfill_rows_estimate", "gauge", "table", "estimated rows in the table (reltuples)"),
    ("pgbaton_backfill_rows_per_second", "gauge", "table, pass", "the backfill's rate, paused time excluded"),
    ("pgbaton_backfill_batch_seconds", "histogram", "table, pass", "duration of each batch"),
    ("pgbaton_backfill_batch_size", "gauge", "table, pass", "rows aimed at per batch"),
    ("pgbaton_backfill_throttled", "gauge", "table, reason", "1 while the backfill is slowed for reason (budget, rate_cap, lag, paused), 0 otherwise"),
    ("pgbaton_backfill_probe_latency_seconds", "gauge", "table", "the latency budget's probe when it last slowed the fill"),
    ("pgbaton_backfill_probe_baseline_seconds", "gauge", "table", "the probe's baseline, measured before the fill"),
    ("pgbaton_backfill_lock_waits_total", "counter", "table", "batches rolled back by a lock timeout and retried"),
    ("pgbaton_backfill_workers", "gauge", "table", "connections filling the table"),
    ("pgbaton_backfill_done", "gauge", "table, pass", "1 once the pass is done"),
    ("pgbaton_replication_lag_bytes", "gauge", "table", "standby lag that made the backfill wait (bytes)"),
    ("pgbaton_replication_lag_seconds", "gauge", "table", "standby lag that made the backfill wait (seconds)"),
    ("pgbaton_version_writes", "gauge", "version", "statements the old or new version ran on the migration's tables since its triggers were installed"),
    ("pgbaton_version_last_write_timestamp_seconds", "gauge", "version", "when that version last wrote (Unix time)"),
    ("pgbaton_verify_mismatches", "gauge", "table", "rows `verify` found not equal to up(old) / down(new)"),
];

/// Registers the help text of every series (once, after the exporter is installed).
pub fn describe() {
    for (name, kind, _, help) in SERIES {
        match *kind {
            "counter" => describe_counter!(*name, *help),
            "histogram" => describe_histogram!(*name, metrics::Unit::Seconds, *help),
            _ => describe_gauge!(*name, *help),
        }
    }
}

/// Records executor events as metrics.
#[derive(Default)]
pub struct MetricsObserver {
    /// The throttle reason last reported per table, to reset it when it changes.
    throttled: Mutex<HashMap<String, &'static str>>,
}

const PHASES: [&str; 3] = ["start", "complete", "rollback"];
const REASONS: [&str; 4] = ["budget", "rate_cap", "lag", "paused"];

impl Observer for MetricsObserver {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::StepStarted {
                phase,
                ordinal,
                total,
                ..
            } => {
                let phase = phase.to_string();
                for p in PHASES {
                    gauge!("pgbaton_phase", "phase" => p).set(f64::from(u8::from(p == phase)));
                }
                gauge!("pgbaton_step", "phase" => phase.clone()).set((*ordinal + 1) as f64);
                gauge!("pgbaton_steps_total", "phase" => phase).set(*total as f64);
            }
            Event::LockRetry { .. } => {
                counter!("pgbaton_lock_retries_total").increment(1);
            }
            Event::Backfill(p) => self.backfill(p),
            Event::StepSkipped { .. }
            | Event::StepFinished { .. }
            | Event::AutovacuumCancelled { .. } => {}
        }
    }
}

impl MetricsObserver {
    fn backfill(&self, p: &Progress) {
        let table = p.table.clone();
        let pass = p.pass.as_str().to_string();
        let labels = [("table", table.clone()), ("pass", pass)];
        gauge!("pgbaton_backfill_rows_done", &labels).set(p.rows_done as f64);
        gauge!("pgbaton_backfill_rows_updated", &labels).set(p.rows_updated as f64);
        gauge!("pgbaton_backfill_rows_per_second", &labels).set(p.rate);
        gauge!("pgbaton_backfill_batch_size", &labels).set(f64::from(p.batch_size));
        gauge!("pgbaton_backfill_done", &labels)
            .set(f64::from(u8::from(p.state == ProgressState::Done)));
        if let Some(ms) = p.last_batch_ms {
            histogram!("pgbaton_backfill_batch_seconds", &labels).record(ms / 1000.0);
        }
        if let Some(e) = p.rows_estimate {
            gauge!("pgbaton_backfill_rows_estimate", "table" => table.clone()).set(e as f64);
        }
        gauge!("pgbaton_backfill_workers", "table" => table.clone())
            .set(f64::from(p.settings.workers));
        if let Some(b) = p.settings.probe_baseline_ms {
            gauge!("pgbaton_backfill_probe_baseline_seconds", "table" => table.clone())
                .set(b / 1000.0);
        }
        match &p.state {
            ProgressState::LockWait { .. } => {
                counter!("pgbaton_backfill_lock_waits_total", "table" => table.clone())
                    .increment(1);
            }
            ProgressState::Paused(PauseReason::ReplicationLag {
                lag_bytes,
                lag_seconds,
            }) => {
                if let Some(b) = lag_bytes {
                    gauge!("pgbaton_replication_lag_bytes", "table" => table.clone())
                        .set(*b as f64);
                }
                if let Some(s) = lag_seconds {
                    gauge!("pgbaton_replication_lag_seconds", "table" => table.clone()).set(*s);
                }
            }
            _ => {}
        }
        if let Some(Throttle::Budget { probe_ms, .. }) = &p.throttle {
            gauge!("pgbaton_backfill_probe_latency_seconds", "table" => table.clone())
                .set(probe_ms / 1000.0);
        }
        let reason = p.throttle.as_ref().map(Throttle::kind).unwrap_or("none");
        let mut last = self.throttled.lock().unwrap_or_else(|e| e.into_inner());
        if last.get(&table) != Some(&reason) {
            for r in REASONS {
                gauge!("pgbaton_backfill_throttled", "table" => table.clone(), "reason" => r)
                    .set(f64::from(u8::from(r == reason)));
            }
            last.insert(table, reason);
        }
    }
}

/// Records writes per version (from [`crate::version_writes::read`]).
pub fn record_version_writes(old: (u64, Option<i64>), new: (u64, Option<i64>)) {
    for (version, (writes, last)) in [("old", old), ("new", new)] {
        gauge!("pgbaton_version_writes", "version" => version).set(writes as f64);
        if let Some(ms) = last {
            gauge!("pgbaton_version_last_write_timestamp_seconds", "version" => version)
                .set(ms as f64 / 1000.0);
        }
    }
}

/// Records what `verify` found.
pub fn record_verify(table: &str, mismatches: u64) {
    gauge!("pgbaton_verify_mismatches", "table" => table.to_string()).set(mismatches as f64);
}
