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
//! A cheap read never waits for the fill's row locks, and those are most of what a fill costs
//! an application that updates the table: an update of a row a batch has updated waits until
//! the batch commits. So with each probe the probe's session also reads `pg_stat_activity`
//! ([`app_activity_sql`]): the longest current wait of an application statement for a lock a
//! pgbaton session holds counts as that probe's latency when it is longer.
//!
//! The budget protects an application that is there: the same read counts the other client
//! sessions of the database that are running a statement or in a transaction (pgbaton's own
//! sessions left out). While none is seen, the fill has nobody to slow down and runs at full
//! speed, however much it slows the probe (on an idle database it always does a little). A
//! short, light application may be missed between two probes; its latency is then what the
//! probe saw the moment it was seen again.
//!
//! The pace is a duty cycle: after a batch that took `t`, the run waits `factor × t`. Over
//! the budget the factor doubles (from 1/4, up to [`MAX_DELAY_FACTOR`]) and the batches get
//! half as long (down to [`MIN_BATCH_SCALE`] of the target batch time: a shorter batch holds
//! its rows' locks less long); well under the budget the factor shrinks by a fifth per batch
//! ([`RECOVERY`]; below 1/20 it is 0, full speed) and the batches grow by a quarter
//! ([`REGROWTH`]) — by half and by double when the probe is back near its baseline
//! ([`FAST_BAND`]); in between, the pace holds ([`HOLD_BAND`]). A fill that finds an
//! application there starts at half speed ([`Budget::cautious`]). So a busy application gets
//! room within a few batches and keeps it, and an idle one gets the fill back within a few
//! dozen. The budget governs the total of a parallel fill: while it slows the fill, each of
//! `n` workers waits `((1 + factor) × n − 1) × t`, so the `n` of them take what one worker
//! would ([`worker_delay`]); under the budget every worker runs at full speed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::types::Type;
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

/// What the probe's session sees of the others, with each probe: how many client sessions
/// are busy now (running a statement or inside a transaction, or whose state this role may not
/// see, which counts as busy), and how long the longest of their statements that waits for a
/// lock a pgbaton session holds has waited so far (ms; 0 when none does).
///
/// pgbaton's own sessions are left out: by name, and the sessions in `$1` (an `int4[]`, those
/// holding a backfill's or a chunk's advisory lock, [`our_sessions_sql`]: a library caller's
/// connections may have any name). The lock wait is what a batch's row locks cost the
/// application: an update of a row the batch has updated waits until the batch commits, and a
/// cheap read — the probe — never sees that. `pg_blocking_pids` runs only for sessions waiting
/// on a lock; `pg_locks`, which takes every lock-table partition's lock while it reads, is read
/// only once a second, by [`our_sessions_sql`].
pub fn app_activity_sql() -> &'static str {
    "WITH ours AS ( \
       SELECT pid FROM pg_stat_activity \
        WHERE datname = current_database() \
          AND coalesce(application_name, '') IN ('pgbaton', 'pgbaton probe', 'pgbaton read-ahead') \
       UNION SELECT unnest($1::int4[])), \
     app AS ( \
       SELECT a.pid, a.state, a.wait_event_type, a.query_start FROM pg_stat_activity AS a \
        WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() \
          AND a.backend_type = 'client backend' AND a.pid NOT IN (SELECT pid FROM ours)) \
     SELECT count(*) FILTER (WHERE state IS NULL OR state IN ('active', 'idle in transaction')), \
            coalesce(max(1000 * extract(epoch FROM clock_timestamp() - query_start)) \
              FILTER (WHERE wait_event_type = 'Lock' \
                        AND pg_blocking_pids(pid) && ARRAY(SELECT pid FROM ours)), 0)::float8 \
       FROM app"
}

/// The sessions holding a backfill's or a chunk's advisory lock: pgbaton's, whatever their
/// name.
pub fn our_sessions_sql() -> String {
    format!(
        "SELECT coalesce(array_agg(DISTINCT l.pid), '{{}}')::int4[] FROM pg_locks AS l \
          WHERE l.locktype = 'advisory' AND l.objsubid = 2 \
            AND l.classid IN ({}::oid, {}::oid) AND l.pid IS NOT NULL",
        super::BACKFILL_LOCK_CLASS as u32,
        super::parallel::CHUNK_LOCK_CLASS as u32
    )
}

/// How often the probe reads [`our_sessions_sql`].
const OUR_SESSIONS_EVERY: Duration = Duration::from_secs(1);

/// What [`app_activity_sql`] saw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Activity {
    /// Another client session was busy.
    pub busy: bool,
    /// The longest current wait of another session for a lock a pgbaton session holds (ms).
    pub lock_wait_ms: f64,
}

/// [`app_activity_sql`] on `client`, `ours` being pgbaton's sessions whatever their name
/// ([`our_sessions_sql`]). Unknown (no privilege to see other sessions' state, an
/// error) counts as busy with no lock wait: the budget then goes by the probe's latency alone.
pub async fn application_activity(client: &Client, ours: &[i32]) -> Activity {
    // One round trip, unnamed statement (query_typed): safe behind a transaction pooler.
    let rows = client
        .query_typed(app_activity_sql(), &[(&ours, Type::INT4_ARRAY)])
        .await;
    match rows.as_deref() {
        Ok([row]) => Activity {
            busy: row.get::<_, i64>(0) > 0,
            lock_wait_ms: row.get::<_, f64>(1).max(0.0),
        },
        _ => Activity {
            busy: true,
            lock_wait_ms: 0.0,
        },
    }
}

#[derive(Debug, Default)]
struct Samples {
    /// (when it finished, latency in ms, whether another session was busy then).
    done: VecDeque<(Instant, f64, bool)>,
    /// (when it was seen, ms): the application's waits for a pgbaton session's lock, when
    /// there was one at a probe.
    lock_waits: VecDeque<(Instant, f64)>,
    /// When the probe in flight started.
    in_flight: Option<Instant>,
    /// The last error of the probe, if it failed.
    error: Option<String>,
}

/// A probe running in the background on its own connection; stops when dropped.
pub(super) struct Probe {
    samples: Arc<Mutex<Samples>>,
    task: tokio::task::JoinHandle<()>,
    /// The [`QUANTILE`] of the probes before the fill started (ms).
    pub(super) baseline_ms: f64,
    /// Whether another session was busy when the baseline was taken (the fill then starts
    /// [`Budget::cautious`]).
    pub(super) application_at_start: bool,
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
        let ours = our_sessions(&client).await;
        let application_at_start = application_activity(&client, &ours).await.busy;
        let samples = Arc::new(Mutex::new(Samples::default()));
        let task = tokio::spawn(probe_loop(client, sql, interval, samples.clone()));
        Ok(Probe {
            samples,
            task,
            baseline_ms,
            application_at_start,
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

    /// The longest wait of an application statement for a pgbaton session's lock seen by the
    /// probes [`Probe::latency_ms`] looks at (0 when none waited): why the budget slowed the fill,
    /// when that is what made it.
    pub(super) fn lock_wait_ms(&self, since: Instant) -> f64 {
        let Ok(guard) = self.samples.lock() else {
            return 0.0;
        };
        let from = window_start(Instant::now(), since);
        guard
            .lock_waits
            .iter()
            .filter(|(t, _)| *t >= from)
            .map(|(_, ms)| *ms)
            .fold(0.0, f64::max)
    }

    /// Whether another session was busy at a probe of the last [`WINDOW`] (or since `since`,
    /// when that is longer; or at one of the last three).
    ///
    /// A second, not just the looks since the last batch: an application of quick statements
    /// is idle between them at most looks, and a budget that let go whenever the last two
    /// looks missed it would start over (cautiously) each time the next one caught it.
    pub(super) fn application_active(&self, since: Instant) -> bool {
        let Ok(guard) = self.samples.lock() else {
            return true;
        };
        application_seen(&guard.done, window_start(Instant::now(), since))
    }

    /// The probe's last error, if its last query failed.
    pub(super) fn error(&self) -> Option<String> {
        self.samples.lock().ok().and_then(|s| s.error.clone())
    }
}

async fn probe_loop(client: Client, sql: String, interval: Duration, samples: Arc<Mutex<Samples>>) {
    let mut ours: (Vec<i32>, Option<Instant>) = (Vec::new(), None);
    loop {
        let started = Instant::now();
        if ours.1.is_none_or(|t| t.elapsed() >= OUR_SESSIONS_EVERY) {
            ours = (our_sessions(&client).await, Some(started));
        }
        if let Ok(mut s) = samples.lock() {
            s.in_flight = Some(started);
        }
        // The probe and the look at the other sessions go out together (pipelined): the
        // probe's backend wakes once for both. On a machine the application keeps busy, every
        // wakeup of another process preempts one of its queries; at 40 probes a second, each
        // with its own round trip for the look, the probe alone raised the p99 of a saturating
        // pgbench mix by 15%.
        let probe = async {
            let result = client.query_typed(&sql, &[]).await;
            (result, started.elapsed().as_secs_f64() * 1000.0)
        };
        let ((result, probe_ms), seen) =
            tokio::join!(probe, application_activity(&client, &ours.0));
        // What the application waits for now: the probe's own latency, or an application
        // statement's wait for a batch's row lock when that is longer.
        let (ms, busy) = (probe_ms.max(seen.lock_wait_ms), seen.busy);
        if let Ok(mut s) = samples.lock() {
            s.in_flight = None;
            match result {
                Ok(_) => {
                    s.error = None;
                    let now = Instant::now();
                    s.done.push_back((now, ms, busy));
                    while s.done.len() > SAMPLES_KEPT {
                        s.done.pop_front();
                    }
                    if seen.lock_wait_ms > 0.0 {
                        s.lock_waits.push_back((now, seen.lock_wait_ms));
                        while s.lock_waits.len() > SAMPLES_KEPT {
                            s.lock_waits.pop_front();
                        }
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

/// [`our_sessions_sql`] on `client`; none when it cannot be read.
pub async fn our_sessions(client: &Client) -> Vec<i32> {
    match client
        .query_typed(&our_sessions_sql(), &[])
        .await
        .as_deref()
    {
        Ok([row]) => row.get(0),
        _ => Vec::new(),
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

/// Where the budget's look at the probes starts: the last [`WINDOW`] before `now`, or `since`
/// (its previous look) when that is earlier.
fn window_start(now: Instant, since: Instant) -> Instant {
    now.checked_sub(WINDOW).map_or(since, |w| w.min(since))
}

/// Whether a probe in `done` (finished when, ms, busy) that finished at `from` or later saw
/// another session busy; when fewer than three did, whether one of the last three did.
pub(super) fn application_seen(done: &VecDeque<(Instant, f64, bool)>, from: Instant) -> bool {
    let recent = done.iter().filter(|(t, ..)| *t >= from).count();
    if recent >= 3 {
        done.iter().any(|(t, _, busy)| *t >= from && *busy)
    } else {
        done.iter().rev().take(3).any(|(_, _, busy)| *busy)
    }
}

/// The [`QUANTILE`] of the probes in `done` (finished when, ms, busy) that finished in the last
/// [`WINDOW`] before `now` or since `since`, whichever is longer; the last
/// [`MIN_WINDOW_SAMPLES`] when fewer did.
pub(super) fn window_latency(
    done: &VecDeque<(Instant, f64, bool)>,
    now: Instant,
    since: Instant,
) -> Option<f64> {
    let from = window_start(now, since);
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
    /// Whether an application was there at the budget's last look (the pace starts
    /// [`Budget::cautious`] when one appears).
    pub(super) governing: bool,
}

/// The shortest batches the budget asks for, as a share of the target batch time (10 ms of
/// the default 100 ms).
pub(super) const MIN_BATCH_SCALE: f64 = 0.1;

impl Default for Budget {
    fn default() -> Self {
        Budget {
            factor: 0.0,
            batch_scale: 1.0,
            governing: false,
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
    /// The pace a fill starts at when an application is there: half speed, half-length
    /// batches. The fill earns full speed over a dozen batches under the budget instead of
    /// taking it first and being pushed back only after the probe has seen the damage (which,
    /// with a second's window, is ten 100 ms batches later).
    pub(super) fn cautious() -> Budget {
        Budget {
            factor: 1.0,
            batch_scale: 0.5,
            governing: true,
        }
    }

    /// Takes the probe's latency after a batch that took `elapsed`, run by one of `workers`
    /// workers; returns the wait before the next batch and, when there is one, why.
    ///
    /// Three bands: over the limit the pace backs off fast (wait doubled, batches halved);
    /// under the lower half of the headroom it recovers slowly (wait × [`RECOVERY`], batches ×
    /// [`REGROWTH`]); in between it holds. A controller that recovered as fast as it backs off
    /// oscillated around the limit, and each swing up was a burst the application paid for
    /// (measured: p99 4.3× the baseline with a +50% budget).
    pub(super) fn after_batch(
        &mut self,
        probe_ms: f64,
        baseline_ms: f64,
        fraction: f64,
        elapsed: Duration,
        workers: u32,
    ) -> (Duration, Option<Throttle>) {
        let limit_ms = (baseline_ms * (1.0 + fraction)).max(baseline_ms + NOISE_FLOOR_MS);
        let headroom = limit_ms - baseline_ms;
        let (recover, back) = if probe_ms <= baseline_ms + headroom * FAST_BAND {
            // The application is as fast as before the fill: no reason to creep back.
            (0.5, 2.0)
        } else {
            (RECOVERY, REGROWTH)
        };
        if probe_ms > limit_ms {
            self.factor = (self.factor * 2.0).clamp(0.25, MAX_DELAY_FACTOR);
            self.batch_scale = (self.batch_scale / 2.0).max(MIN_BATCH_SCALE);
        } else if probe_ms <= baseline_ms + headroom * HOLD_BAND {
            self.factor *= recover;
            if self.factor < 0.05 {
                self.factor = 0.0;
            }
            self.batch_scale = (self.batch_scale * back).min(1.0);
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
            lock_wait_ms: 0.0,
        };
        (delay, Some(throttle))
    }
}

/// Under the budget the wait shrinks by this much per batch (from the longest wait, 20 batch
/// durations, to full speed takes 27 batches; from the cautious start, 14).
pub(super) const RECOVERY: f64 = 0.8;
/// Under the budget the batches grow by this much per batch (from the shortest back to the
/// target: 11 batches).
pub(super) const REGROWTH: f64 = 1.25;
/// The pace recovers only while the probe is in the lower half of the headroom between the
/// baseline and the limit; above that and under the limit it holds.
pub(super) const HOLD_BAND: f64 = 0.5;
/// In the lowest quarter of the headroom (the application about as fast as before the fill)
/// the pace recovers fast: the wait halves and the batches double each batch.
pub(super) const FAST_BAND: f64 = 0.25;

/// Whether a run of `opts` over a table of `rows_estimate` rows starts a probe.
pub(super) fn wants_probe(opts: &BackfillOptions, rows_estimate: f64) -> bool {
    opts.latency_budget().is_some() && rows_estimate >= opts.budget_min_rows as f64
}
