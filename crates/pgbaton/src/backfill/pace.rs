//! The latency budget: a probe on its own connection measures what the application would see,
//! before the fill (the baseline) and while it runs; the run waits after each batch, in
//! proportion to the batch's duration, while the probe is over `baseline × (1 + budget)`.
//!
//! The probe is one cheap read, by default of the table being filled (the end of its key's
//! index, or its first page without a key), every [`BackfillOptions::probe_interval`], in a
//! read-only session. It sees what the fill takes from the application: CPU, I/O, buffer
//! pressure, WAL writes and locks all slow it the way they slow the application's own queries.
//! The budget goes by the probe's tail, not its median: the 90th percentile ([`QUANTILE`]) of
//! the probes of the last second, against the same percentile of 30 probes before the fill. On
//! a busy machine a fill first stretches the application's tail (queries waiting for a CPU),
//! and a median hardly moves meanwhile. A probe still in flight counts with its age, so a
//! probe that hangs (a lock, a stall) slows the fill at once.
//!
//! The budget protects an application that is there: with each probe, the probe's session
//! also counts the other client sessions of the database that are running a statement or in a
//! transaction (`pg_stat_activity`, pgbaton's own sessions left out). While none is seen, the
//! fill has nobody to slow down and runs at full speed, however much it slows the probe (on an
//! idle database it always does a little). A short, light application may be missed between
//! two probes; its latency is then what the probe saw the moment it was seen again.
//!
//! The pace is a duty cycle: after a batch that took `t`, the run waits `factor × t`. Over
//! the budget the factor doubles (from 1/4, up to [`MAX_DELAY_FACTOR`]) and the batches get
//! half as long (down to [`MIN_BATCH_SCALE`] of the target batch time: a shorter batch holds
//! its rows' locks, which an application's update of one of them waits for, less long); back
//! under the budget the factor halves, and below 1/20 it is 0 (full speed), and the batches
//! get twice as long again. So a busy application gets room
//! within a few batches, and an idle one gets the fill back within a few more. The budget
//! governs the total of a parallel fill: while it slows the fill, each of `n` workers waits
//! `((1 + factor) × n − 1) × t`, so the `n` of them take what one worker would
//! ([`worker_delay`]); under the budget every worker runs at full speed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::config::ConnConfig;
use crate::step::{BackfillKey, BackfillSpec};

use super::options::BackfillOptions;
use super::status::Throttle;

/// Probes measured before the fill starts; their [`QUANTILE`] is the baseline.
const BASELINE_SAMPLES: usize = 30;
/// The quantile of the probes the budget goes by, before and during the fill: the
/// application's tail, which a fill taking CPU from a busy machine raises long before its
/// median (measured: p99 ×6 while the median rose ×1.6).
pub(super) const QUANTILE: f64 = 0.9;
/// The probes the budget looks at after a batch: those of the last second, or since its last
/// look when that is longer, and at least [`MIN_WINDOW_SAMPLES`].
pub(super) const WINDOW: Duration = Duration::from_secs(1);
pub(super) const MIN_WINDOW_SAMPLES: usize = 5;
/// Latency below this much over the baseline is the machine's jitter, never over budget.
const NOISE_FLOOR_MS: f64 = 0.25;
/// The most the run waits after a batch, in batch durations.
pub(super) const MAX_DELAY_FACTOR: f64 = 20.0;
/// Probes kept (a few seconds' worth).
const SAMPLES_KEPT: usize = 256;

/// The default probe of `spec`'s table.
pub(super) fn default_probe_sql(spec: &BackfillSpec) -> String {
    let t = &spec.table;
    match &spec.key {
        BackfillKey::Columns(cols) if !cols.is_empty() => {
            format!("SELECT {k} FROM {t} ORDER BY {k} DESC LIMIT 1", k = cols[0])
        }
        _ => format!("SELECT 1 FROM {t} LIMIT 1"),
    }
}

/// Other client sessions busy now: running a statement or inside a transaction (or whose state
/// this role may not see, which counts as busy). pgbaton's own are left out: by name, and the
/// sessions holding a backfill's or a chunk's advisory lock (a library caller's connections
/// may have any name).
fn app_activity_sql() -> String {
    format!(
        "SELECT count(*) FROM pg_stat_activity \
          WHERE datname = current_database() AND pid <> pg_backend_pid() \
            AND backend_type = 'client backend' \
            AND coalesce(application_name, '') NOT IN ('pgbaton', 'pgbaton probe') \
            AND (state IS NULL OR state IN ('active', 'idle in transaction')) \
            AND pid NOT IN (SELECT l.pid FROM pg_locks AS l WHERE l.locktype = 'advisory' \
                              AND l.objsubid = 2 AND l.classid IN ({}::oid, {}::oid))",
        super::BACKFILL_LOCK_CLASS as u32,
        super::parallel::CHUNK_LOCK_CLASS as u32
    )
}

#[derive(Debug, Default)]
struct Samples {
    /// (when it finished, latency in ms, whether another session was busy then).
    done: VecDeque<(Instant, f64, bool)>,
    /// When the probe in flight started.
    in_flight: Option<Instant>,
    /// The last error of the probe, if it failed.
    error: Option<String>,
}

/// A probe running in the background on its own connection; stops when dropped.
pub(super) struct Probe {
    samples: Arc<Mutex<Samples>>,
    task: tokio::task::JoinHandle<()>,
    /// Median latency before the fill started (ms).
    pub(super) baseline_ms: f64,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Probe {
    /// Connects, measures the baseline, then probes every `interval` until dropped. `Err`
    /// (the probe cannot run: connection refused, a bad `--probe-query`) leaves the budget off
    /// for the run, which says so.
    pub(super) async fn start(
        conn: &ConnConfig,
        sql: String,
        interval: Duration,
    ) -> Result<Probe, String> {
        let client = crate::pg::connect(conn)
            .await
            .map_err(|e| format!("the probe's connection: {e}"))?;
        client
            .batch_execute(
                "SET application_name = 'pgbaton probe'; \
                 SET default_transaction_read_only = on; SET statement_timeout = '30s'",
            )
            .await
            .map_err(|e| format!("setting up the probe: {}", crate::pg::describe(&e)))?;
        let mut baseline = Vec::with_capacity(BASELINE_SAMPLES);
        for _ in 0..BASELINE_SAMPLES {
            let started = Instant::now();
            // One statement through the extended protocol (an operator's `--probe-query` too).
            client
                .query_typed(&sql, &[])
                .await
                .map_err(|e| format!("the probe query: {}", crate::pg::describe(&e)))?;
            baseline.push(started.elapsed().as_secs_f64() * 1000.0);
            tokio::time::sleep(interval.min(Duration::from_millis(20))).await;
        }
        let baseline_ms = quantile(&mut baseline, QUANTILE).unwrap_or(0.0);
        let samples = Arc::new(Mutex::new(Samples::default()));
        let task = tokio::spawn(probe_loop(client, sql, interval, samples.clone()));
        Ok(Probe {
            samples,
            task,
            baseline_ms,
        })
    }

    /// The probe's latency now: the [`QUANTILE`] of the probes of the last [`WINDOW`] (or since
    /// `since`, when that is longer; at least [`MIN_WINDOW_SAMPLES`]), or the age of the probe
    /// in flight when that is larger. `None` when no probe has finished yet.
    pub(super) fn latency_ms(&self, since: Instant) -> Option<f64> {
        let guard = self.samples.lock().ok()?;
        let in_flight = guard
            .in_flight
            .map(|t| t.elapsed().as_secs_f64() * 1000.0)
            .unwrap_or(0.0);
        window_latency(&guard.done, Instant::now(), since).map(|m| m.max(in_flight))
    }

    /// Whether another session was busy at a probe since `since` (or at one of the last three).
    pub(super) fn application_active(&self, since: Instant) -> bool {
        let Ok(guard) = self.samples.lock() else {
            return true;
        };
        let recent = guard.done.iter().filter(|(t, ..)| *t >= since).count();
        if recent >= 3 {
            guard.done.iter().any(|(t, _, busy)| *t >= since && *busy)
        } else {
            guard.done.iter().rev().take(3).any(|(_, _, busy)| *busy)
        }
    }

    /// The probe's last error, if its last query failed.
    pub(super) fn error(&self) -> Option<String> {
        self.samples.lock().ok().and_then(|s| s.error.clone())
    }
}

async fn probe_loop(client: Client, sql: String, interval: Duration, samples: Arc<Mutex<Samples>>) {
    let activity = app_activity_sql();
    loop {
        let started = Instant::now();
        if let Ok(mut s) = samples.lock() {
            s.in_flight = Some(started);
        }
        let result = client.query_typed(&sql, &[]).await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        // Unknown (no privilege to see other sessions' state, an error) counts as busy: the
        // budget then goes by the latency alone.
        let busy = match client.query_one(&activity, &[]).await {
            Ok(row) => row.get::<_, i64>(0) > 0,
            Err(_) => true,
        };
        if let Ok(mut s) = samples.lock() {
            s.in_flight = None;
            match result {
                Ok(_) => {
                    s.error = None;
                    s.done.push_back((Instant::now(), ms, busy));
                    while s.done.len() > SAMPLES_KEPT {
                        s.done.pop_front();
                    }
                }
                Err(e) => s.error = Some(crate::pg::describe(&e)),
            }
        }
        if client.is_closed() {
            return;
        }
        tokio::time::sleep(interval.saturating_sub(started.elapsed())).await;
    }
}

/// The `q` quantile of `values` (nearest rank), `None` when empty.
pub(super) fn quantile(values: &mut [f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = (q * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

/// The [`QUANTILE`] of the probes in `done` (finished when, ms, busy) that finished in the last
/// [`WINDOW`] before `now` or since `since`, whichever is longer; the last
/// [`MIN_WINDOW_SAMPLES`] when fewer did.
pub(super) fn window_latency(
    done: &VecDeque<(Instant, f64, bool)>,
    now: Instant,
    since: Instant,
) -> Option<f64> {
    let from = now.checked_sub(WINDOW).map_or(since, |w| w.min(since));
    let mut recent: Vec<f64> = done
        .iter()
        .filter(|(t, ..)| *t >= from)
        .map(|(_, ms, _)| *ms)
        .collect();
    if recent.len() < MIN_WINDOW_SAMPLES {
        recent = done
            .iter()
            .rev()
            .take(MIN_WINDOW_SAMPLES)
            .map(|(_, ms, _)| *ms)
            .collect();
    }
    quantile(&mut recent, QUANTILE)
}

/// The budget's state: how long to wait after each batch, in batch durations, and how much
/// of its target time a batch gets.
#[derive(Clone, Debug)]
pub(super) struct Budget {
    pub(super) factor: f64,
    /// Over the budget the batches get shorter too (halved each time, down to
    /// [`MIN_BATCH_SCALE`] of the target batch time; doubled back under it): a batch holds the
    /// row locks of its range until it commits, and an application's update of one of those
    /// rows waits that long.
    pub(super) batch_scale: f64,
}

/// The shortest batches the budget asks for, as a share of the target batch time (10 ms of
/// the default 100 ms).
pub(super) const MIN_BATCH_SCALE: f64 = 0.1;

impl Default for Budget {
    fn default() -> Self {
        Budget {
            factor: 0.0,
            batch_scale: 1.0,
        }
    }
}

/// The wait after a batch that took `elapsed`, for one of `workers` workers, when one worker
/// alone would wait `factor` batch durations: the workers together then take what one worker
/// would, `1 / (1 + factor)` of a connection's time, so the budget governs the total whatever
/// the number of workers. (Each worker then waits `(1 + factor) × workers − 1` batches.)
pub(super) fn worker_delay(elapsed: Duration, factor: f64, workers: u32) -> Duration {
    if factor <= 0.0 {
        return Duration::ZERO;
    }
    let workers = f64::from(workers.max(1));
    elapsed.mul_f64((1.0 + factor) * workers - 1.0)
}

impl Budget {
    /// Takes the probe's latency after a batch that took `elapsed`, run by one of `workers`
    /// workers; returns the wait before the next batch and, when there is one, why.
    pub(super) fn after_batch(
        &mut self,
        probe_ms: f64,
        baseline_ms: f64,
        fraction: f64,
        elapsed: Duration,
        workers: u32,
    ) -> (Duration, Option<Throttle>) {
        let limit_ms = (baseline_ms * (1.0 + fraction)).max(baseline_ms + NOISE_FLOOR_MS);
        if probe_ms > limit_ms {
            self.factor = (self.factor * 2.0).clamp(0.25, MAX_DELAY_FACTOR);
            self.batch_scale = (self.batch_scale / 2.0).max(MIN_BATCH_SCALE);
        } else {
            self.factor /= 2.0;
            if self.factor < 0.05 {
                self.factor = 0.0;
            }
            self.batch_scale = (self.batch_scale * 2.0).min(1.0);
        }
        if self.factor == 0.0 {
            return (Duration::ZERO, None);
        }
        let delay = worker_delay(elapsed, self.factor, workers);
        let throttle = Throttle::Budget {
            probe_ms,
            baseline_ms,
            limit_ms,
            delay_ms: delay.as_secs_f64() * 1000.0,
            batch_time_scale: self.batch_scale,
        };
        (delay, Some(throttle))
    }
}

/// Whether a run of `opts` over a table of `rows_estimate` rows starts a probe.
pub(super) fn wants_probe(opts: &BackfillOptions, rows_estimate: f64) -> bool {
    opts.max_latency_increase.is_some_and(f64::is_finite)
        && rows_estimate >= opts.budget_min_rows as f64
}
