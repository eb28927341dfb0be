//! Progress reports, outcomes and `pgbaton status`: rows done, rate, fraction and ETA.

use std::fmt::{self, Write as _};
use std::time::Duration;

use serde::Serialize;
use tokio_postgres::Client;

use crate::ident::Ident;
use crate::step::BackfillPass;

use super::options::TriggerBypass;
use super::{state_error, BackfillError};

/// Why a backfill is waiting.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum PauseReason {
    /// `pgbaton pause` (the `controls` table).
    Operator,
    /// A standby lags more than the ceiling.
    ReplicationLag {
        lag_bytes: Option<u64>,
        lag_seconds: Option<f64>,
    },
}

impl PauseReason {
    pub(super) fn describe(&self) -> String {
        match self {
            PauseReason::Operator => "paused by operator".to_string(),
            PauseReason::ReplicationLag {
                lag_bytes,
                lag_seconds,
            } => {
                let mut s = "replication lag".to_string();
                if let Some(b) = lag_bytes {
                    let _ = write!(s, " {b} bytes");
                }
                if let Some(t) = lag_seconds {
                    let _ = write!(s, " {t:.1} s");
                }
                s
            }
        }
    }
}

/// What the backfill is doing right now.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ProgressState {
    Running,
    Paused(PauseReason),
    /// A batch could not get its locks in time; it is retried after `backoff_ms`.
    LockWait {
        attempt: u32,
        backoff_ms: u64,
        message: String,
    },
    Done,
}

/// A progress report, sent after every batch and on every state change. Serializes to one JSON
/// object (for `--json` lines).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Progress {
    pub table: String,
    /// The fill, or the catch-up pass after it.
    pub pass: BackfillPass,
    #[serde(flatten)]
    pub state: ProgressState,
    /// Rows walked (keyset) or updated (value ranges, ctid) so far, over every run of this
    /// backfill.
    pub rows_done: u64,
    /// Rows updated (walked rows minus those a live write had already made right).
    pub rows_updated: u64,
    /// Estimated rows in the table (`reltuples`), when known.
    pub rows_estimate: Option<u64>,
    /// Fraction done, 0..=1, when it can be estimated (pages for ctid walks).
    pub fraction: Option<f64>,
    /// Rows per second in this run, paused time excluded.
    pub rate: f64,
    pub eta_seconds: Option<f64>,
    pub batch_size: u32,
    pub batches: u64,
    pub batch_p50_ms: f64,
    pub batch_p99_ms: f64,
    pub paused_seconds: f64,
    pub elapsed_seconds: f64,
    /// Standbys whose lag could not be read (no privilege), when a lag ceiling is set.
    pub lag_unmeasured: u32,
    /// What the run goes by now (options, overridden by `pgbaton set`).
    pub settings: RunSettings,
    /// Why the run slowed down after its last batch, if it did.
    pub throttle: Option<Throttle>,
    /// The duration of the batch this report follows (none for other reports).
    pub last_batch_ms: Option<f64>,
}

/// The settings a run goes by: its options, each replaced by a live control when one is set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunSettings {
    /// The rows-per-second ceiling, if any.
    pub rows_per_second: Option<f64>,
    /// The duration the adaptive batch size aims at.
    pub batch_time_ms: f64,
    /// Connections filling the table.
    pub workers: u32,
    /// The latency budget (a fraction of the probe's baseline); `None`: off.
    pub max_latency_increase: Option<f64>,
    /// The probe's baseline (ms), when it runs.
    pub probe_baseline_ms: Option<f64>,
    /// Why the budget cannot be kept (no probe: no connection for it, or its query failed).
    pub probe_error: Option<String>,
    /// The read-ahead session reads ahead of this run's batches now.
    pub read_ahead: bool,
}

impl fmt::Display for RunSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rows_per_second {
            Some(r) => write!(f, "rows/s cap {r:.0}")?,
            None => f.write_str("no rows/s cap")?,
        }
        write!(f, ", batch time {:.0} ms, ", self.batch_time_ms)?;
        match self.workers {
            1 => f.write_str("1 worker")?,
            n => write!(f, "{n} workers")?,
        }
        match self.max_latency_increase {
            Some(b) => write!(f, ", latency budget +{:.0}%", b * 100.0)?,
            None => f.write_str(", latency budget off")?,
        }
        if let Some(ms) = self.probe_baseline_ms {
            write!(f, " (probe baseline {ms:.2} ms)")?;
        }
        if let Some(e) = &self.probe_error {
            write!(f, " (no probe: {e})")?;
        }
        if self.read_ahead {
            f.write_str(", read-ahead")?;
        }
        Ok(())
    }
}

/// Why a run slowed down: recorded with each batch, shown by `pgbaton status` and the metrics.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Throttle {
    /// The latency budget: the probe's recent latency is over its baseline × (1 + budget), so
    /// the run waits `delay_ms` after each batch, and its batches aim at `batch_time_scale` of
    /// their target time.
    Budget {
        probe_ms: f64,
        baseline_ms: f64,
        limit_ms: f64,
        delay_ms: f64,
        batch_time_scale: f64,
        /// The longest wait of an application statement for a batch's row lock (any lock a
        /// pgbaton session holds) the probes saw meanwhile; 0 when none waited.
        lock_wait_ms: f64,
    },
    /// The rows-per-second ceiling made the run wait.
    RateCap { rows_per_second: f64 },
    /// A standby lags more than the ceiling: the run waits.
    Lag,
    /// `pgbaton pause`.
    Paused,
}

impl Throttle {
    /// `budget`, `rate_cap`, `lag` or `paused` (the metrics' `reason` label).
    pub fn kind(&self) -> &'static str {
        match self {
            Throttle::Budget { .. } => "budget",
            Throttle::RateCap { .. } => "rate_cap",
            Throttle::Lag => "lag",
            Throttle::Paused => "paused",
        }
    }
}

impl fmt::Display for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Throttle::Budget {
                probe_ms,
                baseline_ms,
                limit_ms,
                delay_ms,
                batch_time_scale,
                lock_wait_ms,
            } => {
                write!(
                    f,
                    "latency budget: probe {probe_ms:.2} ms over {limit_ms:.2} ms (baseline \
                     {baseline_ms:.2} ms"
                )?;
                if *lock_wait_ms > 0.0 {
                    write!(
                        f,
                        "; an application statement waited {lock_wait_ms:.0} ms for a batch's \
                         row lock"
                    )?;
                }
                write!(f, "), waiting {delay_ms:.0} ms per batch")?;
                if *batch_time_scale < 1.0 {
                    write!(
                        f,
                        ", batches at {:.0}% of their time",
                        batch_time_scale * 100.0
                    )?;
                }
                Ok(())
            }
            Throttle::RateCap { rows_per_second } => {
                write!(f, "rate cap {rows_per_second:.0} rows/s")
            }
            Throttle::Lag => f.write_str("replication lag"),
            Throttle::Paused => f.write_str("paused by operator"),
        }
    }
}

impl Progress {
    /// The table, and which pass when it is not the fill: `"public"."t" (catch-up)`.
    pub fn label(&self) -> String {
        format!("{}{}", self.table, pass_label(self.pass))
    }
}

impl fmt::Display for Progress {
    /// One line: `"public"."t": 120000/200000 rows (60.0%), 95000 rows/s, ETA 1 s, ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.label())?;
        match &self.state {
            ProgressState::Running => {}
            ProgressState::Done => f.write_str("done, ")?,
            ProgressState::Paused(reason) => write!(f, "waiting ({}), ", reason.describe())?,
            ProgressState::LockWait {
                attempt,
                backoff_ms,
                message,
            } => write!(
                f,
                "lock wait #{attempt}, retry in {backoff_ms} ms ({message}), "
            )?,
        }
        write_counts(
            f,
            self.rows_done,
            self.rows_estimate,
            self.fraction,
            Some(self.rate),
            self.eta_seconds,
        )?;
        write!(
            f,
            ", batch {} rows (p50 {:.0} ms, p99 {:.0} ms), paused {:.0} s",
            self.batch_size, self.batch_p50_ms, self.batch_p99_ms, self.paused_seconds
        )?;
        if let Some(throttle) = &self.throttle {
            write!(f, ", slowed: {throttle}")?;
        }
        if self.lag_unmeasured > 0 {
            write!(
                f,
                ", lag of {} standby(s) not readable",
                self.lag_unmeasured
            )?;
        }
        Ok(())
    }
}

pub(super) fn write_counts(
    f: &mut fmt::Formatter<'_>,
    rows_done: u64,
    rows_estimate: Option<u64>,
    fraction: Option<f64>,
    rate: Option<f64>,
    eta_seconds: Option<f64>,
) -> fmt::Result {
    match rows_estimate {
        Some(total) => write!(f, "{rows_done}/~{total} rows")?,
        None => write!(f, "{rows_done} rows")?,
    }
    if let Some(fraction) = fraction {
        write!(f, " ({:.1}%)", fraction * 100.0)?;
    }
    if let Some(rate) = rate {
        write!(f, ", {rate:.0} rows/s")?;
    }
    if let Some(eta) = eta_seconds {
        write!(f, ", ETA {eta:.0} s")?;
    }
    Ok(())
}

/// The result of a finished backfill.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackfillOutcome {
    pub rows_done: u64,
    pub rows_updated: u64,
    /// Batches in this run.
    pub batches: u64,
    pub elapsed: Duration,
    pub paused: Duration,
    /// The run continued from a checkpoint left by an earlier one.
    pub resumed: bool,
    /// The checkpoint said done already; nothing ran.
    pub already_done: bool,
    /// How the dual-write trigger was kept out of the batches.
    pub bypass: TriggerBypass,
    pub lock_retries: u32,
    pub batch_p50_ms: f64,
    pub batch_p99_ms: f64,
    /// Reads the read-ahead session made for the next batch (0: it did not run).
    pub read_ahead_reads: u64,
}

/// A backfill's row in the state schema, for `pgbaton status`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackfillStatus {
    pub migration: String,
    pub table: String,
    /// `fill` or `catch_up`.
    pub pass: String,
    pub status: String,
    pub key_columns: Option<Vec<String>>,
    pub rows_done: u64,
    pub rows_updated: u64,
    pub rows_estimate: Option<u64>,
    pub fraction: Option<f64>,
    pub rate: Option<f64>,
    pub eta_seconds: Option<f64>,
    pub batch_size: Option<u32>,
    pub batch_p50_ms: Option<f64>,
    pub batch_p99_ms: Option<f64>,
    pub paused_seconds: f64,
    pub pause_reason: Option<String>,
    pub error: Option<String>,
    pub started_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
    /// What the run went by at its last batch ([`RunSettings`], as text).
    pub settings: Option<String>,
    /// Why it slowed down at its last batch ([`Throttle`], as text).
    pub throttle_reason: Option<String>,
}

impl fmt::Display for BackfillStatus {
    /// One line for `pgbaton status`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pass = if self.pass == BackfillPass::CatchUp.as_str() {
            pass_label(BackfillPass::CatchUp)
        } else {
            ""
        };
        write!(f, "{}{pass} {}: ", self.table, self.status)?;
        write_counts(
            f,
            self.rows_done,
            self.rows_estimate,
            self.fraction,
            self.rate,
            self.eta_seconds,
        )?;
        if let (Some(p50), Some(p99)) = (self.batch_p50_ms, self.batch_p99_ms) {
            write!(f, ", batch p50 {p50:.0} ms, p99 {p99:.0} ms")?;
        }
        write!(f, ", paused {:.0} s", self.paused_seconds)?;
        if let Some(reason) = &self.pause_reason {
            write!(f, " ({reason})")?;
        }
        if let Some(settings) = &self.settings {
            write!(f, "; {settings}")?;
        }
        if let Some(throttle) = &self.throttle_reason {
            write!(f, "; slowed: {throttle}")?;
        }
        if let Some(error) = &self.error {
            write!(f, "; error: {error}")?;
        }
        Ok(())
    }
}

/// How reports name a pass after the table: nothing for the fill.
pub(super) fn pass_label(pass: BackfillPass) -> &'static str {
    match pass {
        BackfillPass::Fill => "",
        BackfillPass::CatchUp => " (catch-up)",
    }
}

/// The backfills of `migration` (every migration when `None`), as `pgbaton status` shows them.
pub async fn status(
    client: &Client,
    state_schema: &Ident,
    migration: Option<&str>,
) -> Result<Vec<BackfillStatus>, BackfillError> {
    // The chunks of a parallel fill hold its progress until they are merged (a state schema
    // made before parallel fills has none).
    let chunks_table = format!("{state_schema}.backfill_chunks");
    let has_chunks: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&chunks_table])
        .await
        .map_err(|source| state_error("reading backfills", source))?
        .get(0);
    let chunks = if has_chunks {
        // While chunks exist the backfill's own row is not written: what the run goes by and
        // why it slowed down are those of the chunk a worker wrote last (a running one first).
        let of_chunks = "FROM {chunks_table} AS k WHERE k.migration = b.migration \
                AND k.table_schema = b.table_schema AND k.table_name = b.table_name \
                AND k.pass = coalesce(to_jsonb(b) ->> 'pass', 'fill')"
            .replace("{chunks_table}", &chunks_table);
        format!(
            "LEFT JOIN LATERAL (SELECT count(*) AS k_n, sum(k.rows_done)::int8 AS k_done, \
                    sum(k.rows_updated)::int8 AS k_updated, sum(k.rate) FILTER (WHERE k.status <> 'done' \
                    AND k.updated_at > now() - interval '10 s') AS k_rate \
               {of_chunks}) AS c ON true \
             LEFT JOIN LATERAL (SELECT k.settings AS k_settings, k.throttle_reason AS k_why \
               {of_chunks} AND k.batches > 0 \
               ORDER BY k.status <> 'done' DESC, k.updated_at DESC LIMIT 1) AS l ON true"
        )
    } else {
        "LEFT JOIN LATERAL (SELECT 0::int8 AS k_n, NULL::int8 AS k_done, NULL::int8 AS k_updated, \
                NULL::float8 AS k_rate) AS c ON true \
         LEFT JOIN LATERAL (SELECT NULL::text AS k_settings, NULL::text AS k_why) AS l ON true"
            .to_string()
    };
    let sql = format!(
        "SELECT migration, format('%I.%I', table_schema, table_name), status, key_columns,
                rows_done, rows_updated, rows_estimate, last_page, total_pages, rate, batch_size,
                batch_p50_ms, batch_p99_ms, paused_seconds, pause_reason, error,
                started_at::text, updated_at::text, finished_at::text,
                -- through jsonb: a state schema made before these columns existed has none
                to_jsonb(b) ->> 'key_min', to_jsonb(b) ->> 'key_max', last_key[1],
                coalesce(to_jsonb(b) ->> 'pass', 'fill'),
                CASE WHEN c.k_n > 0 AND l.k_settings IS NOT NULL THEN l.k_settings
                     ELSE to_jsonb(b) ->> 'settings' END,
                CASE WHEN c.k_n > 0 AND l.k_settings IS NOT NULL THEN l.k_why
                     ELSE to_jsonb(b) ->> 'throttle_reason' END,
                c.k_n, c.k_done, c.k_updated, c.k_rate
           FROM {state_schema}.backfills AS b {chunks}
          WHERE $1::text IS NULL OR migration = $1
          ORDER BY started_at, table_schema, table_name"
    );
    let rows = client
        .query(&sql, &[&migration])
        .await
        .map_err(|source| state_error("reading backfills", source))?;
    Ok(rows
        .iter()
        .map(|r| {
            let status: String = r.get(2);
            let chunks: i64 = r.get(25);
            let chunk_rows = |i: usize| r.get::<_, Option<i64>>(i).unwrap_or(0).max(0) as u64;
            let rows_done = r.get::<_, i64>(4).max(0) as u64 + chunk_rows(26);
            let rows_estimate = r
                .get::<_, Option<i64>>(6)
                .filter(|&e| e > 0)
                .map(|e| e as u64);
            let last_page: Option<i64> = r.get(7);
            let total_pages: Option<i64> = r.get(8);
            let rate: Option<f64> = if chunks > 0 { r.get(28) } else { r.get(9) };
            let done = status == "done";
            let int = |i: usize| -> Option<i64> {
                r.get::<_, Option<String>>(i).and_then(|v| v.parse().ok())
            };
            let walked = match (total_pages, int(19), int(20), int(21)) {
                // A parallel fill's position is in its chunks: the fraction goes by rows.
                _ if chunks > 0 => None,
                (Some(t), ..) => Some((last_page.unwrap_or(0) as f64, t as f64)),
                (None, Some(min), Some(max), last) => Some(key_position(last, min, max)),
                _ => None,
            };
            let fraction = estimate_fraction(done, rows_done, rows_estimate, walked);
            let eta_seconds = eta(done, fraction, rows_done, rows_estimate, rate);
            BackfillStatus {
                migration: r.get(0),
                table: r.get(1),
                pass: r.get(22),
                status,
                key_columns: r.get(3),
                rows_done,
                rows_updated: r.get::<_, i64>(5).max(0) as u64 + chunk_rows(27),
                rows_estimate,
                fraction,
                rate,
                eta_seconds,
                batch_size: r.get::<_, Option<i32>>(10).map(|b| b.max(0) as u32),
                batch_p50_ms: r.get(11),
                batch_p99_ms: r.get(12),
                paused_seconds: r.get(13),
                pause_reason: r.get(14),
                error: r.get(15),
                started_at: r.get(16),
                updated_at: r.get(17),
                finished_at: r.get(18),
                settings: r.get(23),
                throttle_reason: r.get(24),
            }
        })
        .collect())
}

/// Fraction done: from `walked` (units done, units in all: pages of a ctid walk, key values of
/// a value-range walk) when known, else from the rows done and the table's estimate.
pub(super) fn estimate_fraction(
    done: bool,
    rows_done: u64,
    rows_estimate: Option<u64>,
    walked: Option<(f64, f64)>,
) -> Option<f64> {
    if done {
        return Some(1.0);
    }
    match walked {
        Some((p, t)) if t > 0.0 => Some((p / t).clamp(0.0, 1.0)),
        Some(_) => Some(0.0),
        None => rows_estimate.map(|e| (rows_done as f64 / e as f64).clamp(0.0, 0.999)),
    }
}

/// A value-range walk's position as (key values done, key values in all), from the last key
/// done (`None`: none yet) and the key's bounds at start.
pub(super) fn key_position(last: Option<i64>, min: i64, max: i64) -> (f64, f64) {
    let total = (i128::from(max) - i128::from(min) + 1).max(0);
    let done = last.map_or(0, |l| (i128::from(l) - i128::from(min) + 1).clamp(0, total));
    (done as f64, total as f64)
}

pub(super) fn eta(
    done: bool,
    fraction: Option<f64>,
    rows_done: u64,
    rows_estimate: Option<u64>,
    rate: Option<f64>,
) -> Option<f64> {
    if done {
        return Some(0.0);
    }
    let rate = rate.filter(|r| *r > 0.0)?;
    let fraction = fraction?;
    // Remaining rows: from the estimate, or extrapolated from the fraction done.
    let total = match rows_estimate {
        Some(e) if fraction < 1.0 && rows_done < e => e as f64,
        _ if fraction > 0.0 => rows_done as f64 / fraction,
        _ => return None,
    };
    Some(((total - rows_done as f64).max(0.0)) / rate)
}
