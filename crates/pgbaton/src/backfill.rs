//! The backfill engine: batched, checkpointed, throttled filling of new columns in existing rows.
//! Owns the `backfills` (checkpoint and progress) and `controls` (operator pause and throttle)
//! tables of the state schema, and the SQL of every batch.
//!
//! # How a batch works
//!
//! One transaction per batch, in one or two round trips of simple-query strings:
//! `BEGIN; SET LOCAL ...; WITH <batch keys>, <update>, <checkpoint> SELECT ...; COMMIT; SELECT
//! <controls and replication lag>` (or `BEGIN; SET LOCAL ...; UPDATE ...` then `<checkpoint>;
//! COMMIT; <controls>`), so the checkpoint commits with the rows it describes and a killed run
//! resumes from the last committed batch, never from zero.
//!
//! - Keyset batches on [`BackfillKey::Columns`] (composite keys compare as rows): the first `n`
//!   keys after the checkpoint are read from the key's index, then one `UPDATE` covers the key
//!   range `(last, end]` — an index range scan, never a join that could turn into a full scan.
//!   The last key is stored as text (`to_jsonb(k) #>> '{}'`, so dates and times are ISO 8601
//!   whatever the session's `DateStyle`) and written back as an untyped literal, which
//!   PostgreSQL reads with the key column's own input function.
//! - A single-column integer key (`smallint`, `integer`, `bigint`, led by a btree index) is
//!   walked by value ranges instead ([`KeyWalk::Auto`]): the key's `min` and `max` are read once
//!   (the ends of its index) and stored in the checkpoint, then each batch updates
//!   `key >= lo AND key <= hi` with constant bounds, so no key is read before the update (the
//!   keyset walk reads every key, and its heap page when the visibility map is not set, a
//!   second time). The walk ends at the max read at start: a row with a larger key was
//!   inserted (or got that key) after the backfill started, and so was written either through
//!   the dual-write trigger or during the write window, where the catch-up pass finds it (see
//!   below); the same holds for a key that appears, later, in a gap or a range already walked. The same
//!   statement reads the next existing key after `hi` from the index, where the next batch
//!   starts and the checkpoint's `last_key` points (just before it): gaps cost no empty
//!   batches. The value width of a batch follows the rows target through the key's density
//!   (rows per key value, that of the last batch); where it is sparse enough that a
//!   batch would be more than [`RANGE_SLACK`] times its rows target wide, the batch reads the
//!   keys of its range to cap its upper bound at that many rows (a keyset walk's cost, only
//!   there), so a change from sparse to dense keys cannot make a giant batch. Rows counted are
//!   rows updated, as in a ctid walk; the fraction done is the key position.
//! - Without such a key, ctid page ranges (`ctid >= '(p,0)' AND ctid < '(q,0)'`, a TID range
//!   scan, PG14+) up to the page count at backfill start. Rows beyond it, or moved there later,
//!   need no fill: a row only moves when it is updated or inserted, and every such write went
//!   through the dual-write trigger or happened during the write window (catch-up). A table rewrite
//!   (`VACUUM FULL`, `CLUSTER`) renumbers every row; it is detected by `pg_relation_filenode`
//!   and the walk starts again from page 0 (a row done twice gets the same value).
//! - Where the dual-write trigger is installed (a catch-up pass, or a backfill without a write
//!   window), only rows whose marker is not true are updated: a live write has already made such
//!   a row right, and may have set a new column to something `up(old)` would not give. Under
//!   READ COMMITTED, a row changed by a concurrent write while the batch waits for its row lock
//!   is re-read and re-checked (EvalPlanQual): its marker is then set, and the batch skips it. A
//!   fill with a write window updates every row in its range: only the old version can write
//!   meanwhile, and a row it changes gets `up` of its new value (EvalPlanQual again), or, when
//!   the write comes after the batch, is found by the catch-up.
//! - Each batch runs with `jit = off` and `synchronous_commit = off` (see [`batch_settings`]
//!   for why both are safe and what they save), and a key batch with sequential scans and
//!   sorts turned off, so an unanalyzed table or an uncorrelated key cannot turn the key read
//!   into a full scan per batch.
//! - The write window ([`crate::step::WriteWindow`]): where the table has a dual-write trigger,
//!   the planner runs the fill *before* installing it, because a `BEFORE UPDATE` row trigger
//!   costs every updated row a tuple lock even when it does not fire (≈10% of a fill). Each
//!   batch records its transaction id (`backfill_xids`); after the trigger is installed, the
//!   catch-up pass ([`BackfillPass::CatchUp`], a ctid walk over the whole table) updates the
//!   rows whose `xmin` is no batch's (written meanwhile by the old version) and whose marker is
//!   not set — and is skipped outright when the window's statement-level trigger counted no
//!   write. The fill writes no marker: the column is added, catalog-only, with the trigger.
//!   Both passes have their own checkpoint row (`pass` column).
//! - A value-range or ctid batch runs its `UPDATE` as a plain statement and writes the
//!   checkpoint in a second round trip of the same transaction, with the row count from the
//!   command tag: counting in SQL (`WITH ... RETURNING`) costs ≈5% of the update.
//! - The batch does not pay for the dual-write trigger: with `SET LOCAL session_replication_role
//!   = replica` no ordinary trigger fires at all; where that is not permitted (it needs superuser
//!   or `GRANT SET ON PARAMETER`), or would skip the foreign-key checks of a column being
//!   filled, `SET LOCAL pgbaton.backfill = 'on'` makes the trigger's `WHEN` clause skip it.
//!
//! Batch size adapts toward a target duration; throttles (fixed delay, rows per second, the
//! replication lag ceiling, operator pause from the `controls` table) act between batches. A lock
//! timeout or deadlock rolls back only the batch in flight, which is retried after a jittered
//! backoff; done rows are never thrown away. Memory is flat in the table size.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use crate::ident::{quote_literal, Ident, Literal, QualName};
use crate::pg::describe;
use crate::step::{BackfillKey, BackfillPass, BackfillSpec};
use crate::triggers::BACKFILL_SETTING;

/// Default target duration of one batch.
pub const DEFAULT_TARGET_BATCH_TIME: Duration = Duration::from_millis(100);
/// Adaptive batch sizes stay within these bounds (rows).
pub const DEFAULT_MIN_BATCH_ROWS: u32 = 1_000;
pub const DEFAULT_MAX_BATCH_ROWS: u32 = 200_000;
/// The first batch of a run (rows), before any measurement.
pub const DEFAULT_INITIAL_BATCH_ROWS: u32 = 5_000;

/// First key of the session-level advisory lock that keeps two runs off one table: the lock is
/// `pg_advisory_lock(BACKFILL_LOCK_CLASS, <table oid>::int)` (the two-int4 key space, which does
/// not overlap the single-bigint one). `'pgbf'`.
pub const BACKFILL_LOCK_CLASS: i32 = 0x7067_6266;

/// How a batch keeps the dual-write trigger from firing on its own updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerBypass {
    /// `session_replication_role = replica` when permitted and no foreign key involves a filled
    /// column; else [`TriggerBypass::Setting`].
    Auto,
    /// `SET LOCAL session_replication_role = replica`: no ordinary trigger fires (user triggers
    /// neither, which is what a copy wants; `ENABLE ALWAYS` triggers still do). Fails without the
    /// privilege.
    ReplicationRole,
    /// `SET LOCAL pgbaton.backfill = 'on'`: the trigger's `WHEN` clause skips the row.
    Setting,
}

/// A replication lag ceiling: the backfill waits while some standby lags more than this.
///
/// Lag is read from `pg_stat_replication` on the primary, between batches:
/// - bytes: `pg_current_wal_lsn() - replay_lsn`, per standby (exact, and right when replay is
///   paused with `pg_wal_replay_pause()`, since `replay_lsn` then stands still);
/// - time: the larger of `replay_lag` and the age of the oldest WAL position this backfill
///   sampled that the standby has not replayed yet. `replay_lag` alone is not enough: it is
///   only measured when replay advances, so while replay is paused it keeps showing its last,
///   small, value.
///
/// Standbys whose `replay_lsn` is not visible (the role lacks `pg_read_all_stats`) cannot be
/// measured; they are reported in [`Progress::lag_unmeasured`] and do not block. A standby that
/// is disconnected is not in `pg_stat_replication` and does not block either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LagCeiling {
    Bytes(u64),
    Time(Duration),
}

impl FromStr for LagCeiling {
    type Err = String;

    /// `30s`, `500ms`, `2min`, `1h` (time) or `64MB`, `1GB`, `512kB`, `1048576B` (bytes; powers
    /// of 1024 as in PostgreSQL's settings).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("\"{s}\": expected a number and a unit, e.g. 30s or 64MB"))?;
        if !value.is_finite() || value < 0.0 {
            return Err(format!("\"{s}\": must be a non-negative number"));
        }
        let secs = |factor: f64| Ok(LagCeiling::Time(Duration::from_secs_f64(value * factor)));
        let bytes = |factor: f64| Ok(LagCeiling::Bytes((value * factor).round() as u64));
        match unit.trim() {
            "ms" => secs(0.001),
            "s" | "" => secs(1.0),
            "min" => secs(60.0),
            "h" => secs(3600.0),
            "B" => bytes(1.0),
            "kB" | "KB" => bytes(1024.0),
            "MB" => bytes(1024.0 * 1024.0),
            "GB" => bytes(1024.0 * 1024.0 * 1024.0),
            "TB" => bytes(1024.0 * 1024.0 * 1024.0 * 1024.0),
            other => Err(format!(
                "\"{s}\": unknown unit \"{other}\" (use ms, s, min, h, B, kB, MB, GB or TB)"
            )),
        }
    }
}

/// How a backfill runs. `Default` gives the documented defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct BackfillOptions {
    /// The duration the adaptive batch size aims at.
    pub target_batch_time: Duration,
    /// Pins the batch size (rows); no adaptation.
    pub batch_size: Option<u32>,
    /// Bounds of the adaptive batch size (rows).
    pub min_batch_size: u32,
    pub max_batch_size: u32,
    /// The size of the first batch (rows), before any measurement.
    pub initial_batch_size: u32,
    /// A pause after every batch.
    pub batch_delay: Duration,
    /// A ceiling on rows per second (the `controls` table can set a lower one at run time).
    pub max_rows_per_second: Option<f64>,
    /// Wait between batches while a standby lags more than this.
    pub max_replication_lag: Option<LagCeiling>,
    /// `lock_timeout` of each batch; a batch that times out is retried.
    pub lock_timeout: Duration,
    /// Give up after this many lock timeouts in a row (`None`: keep retrying, reporting each
    /// wait through the progress callback).
    pub max_lock_retries: Option<u32>,
    /// How often a paused backfill looks at the controls and the lag again.
    pub poll_interval: Duration,
    pub bypass: TriggerBypass,
    /// How a table with a key is walked.
    pub key_walk: KeyWalk,
}

/// How a backfill walks a table that has a key ([`BackfillKey::Columns`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyWalk {
    /// Value ranges for a single-column integer key with a btree index (no key pre-scan: see
    /// the module documentation); keyset batches for every other key.
    #[default]
    Auto,
    /// Keyset batches (the next `n` keys read from the index first) for every key.
    Keyset,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        BackfillOptions {
            target_batch_time: DEFAULT_TARGET_BATCH_TIME,
            batch_size: None,
            min_batch_size: DEFAULT_MIN_BATCH_ROWS,
            max_batch_size: DEFAULT_MAX_BATCH_ROWS,
            initial_batch_size: DEFAULT_INITIAL_BATCH_ROWS,
            batch_delay: Duration::ZERO,
            max_rows_per_second: None,
            max_replication_lag: None,
            lock_timeout: Duration::from_millis(500),
            max_lock_retries: None,
            poll_interval: Duration::from_millis(500),
            bypass: TriggerBypass::Auto,
            key_walk: KeyWalk::Auto,
        }
    }
}

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
    fn describe(&self) -> String {
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

fn write_counts(
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
        if let Some(error) = &self.error {
            write!(f, "; error: {error}")?;
        }
        Ok(())
    }
}

/// How reports name a pass after the table: nothing for the fill.
fn pass_label(pass: BackfillPass) -> &'static str {
    match pass {
        BackfillPass::Fill => "",
        BackfillPass::CatchUp => " (catch-up)",
    }
}

/// Why a backfill stopped. The checkpoint is intact in every case: a new run resumes.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("backfill of {table}: {context}: {}", describe(.source))]
    Db {
        table: String,
        context: String,
        source: tokio_postgres::Error,
    },

    #[error("backfill of {table}: the table does not exist")]
    TableNotFound { table: String },

    #[error("backfill of {table}: column {column} does not exist")]
    ColumnNotFound { table: String, column: String },

    #[error(
        "backfill of {table}: another session is backfilling this table (advisory lock held); \
         wait for it or stop it"
    )]
    Busy { table: String },

    #[error(
        "backfill of {table}: gave up after {attempts} lock timeouts in a row (last: {last}); \
         {rows_done} rows are done and kept, a new run continues from there"
    )]
    LockRetries {
        table: String,
        attempts: u32,
        last: String,
        rows_done: u64,
    },

    #[error("backfill of {table}: {reason}")]
    Unsupported { table: String, reason: String },

    #[error("backfill of {table}: unexpected reply from the server: {detail}")]
    Protocol { table: String, detail: String },

    #[error("state schema: {context}: {}", describe(.source))]
    State {
        context: String,
        source: tokio_postgres::Error,
    },
}

impl BackfillError {
    /// True when running the backfill again can succeed without changing the migration: lost
    /// connections, lock waits, cancellations, resource shortages, serialization failures. False
    /// for errors in the data or the expressions (SQLSTATE classes 22, 23, 42, ...), which a
    /// retry would only hit again.
    /// True when the server refused a row's data: a data exception (`22`: division by zero, a
    /// value too long), an integrity violation (`23`) or an error raised by a function (`P0`).
    pub fn is_data_error(&self) -> bool {
        match self {
            BackfillError::Db { source, .. } => source
                .code()
                .is_some_and(|c| matches!(&c.code()[..2], "22" | "23" | "P0")),
            _ => false,
        }
    }

    pub fn is_transient(&self) -> bool {
        let source = match self {
            BackfillError::Db { source, .. } | BackfillError::State { source, .. } => source,
            BackfillError::Busy { .. } | BackfillError::LockRetries { .. } => return true,
            _ => return false,
        };
        match source.code() {
            // No SQLSTATE: the connection broke.
            None => true,
            Some(code) => {
                let class = &code.code()[..2];
                // 08 connection, 40 rollback (serialization, deadlock), 53 resources,
                // 55 lock not available, 57 operator intervention (cancel, shutdown), 58 system.
                matches!(class, "08" | "40" | "53" | "55" | "57" | "58")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// State schema
// ---------------------------------------------------------------------------------------------

/// Idempotent DDL for the tables this module owns in the state schema (the schema itself is
/// created by `state::init`).
pub fn state_ddl(state_schema: &Ident) -> Vec<String> {
    let s = state_schema;
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.backfills (
    migration text NOT NULL,
    table_schema text NOT NULL,
    table_name text NOT NULL,
    -- what the checkpoint belongs to: the backfill spec and the filled columns' attnums, so
    -- a migration rolled back and started again under the same name starts from zero
    fingerprint text NOT NULL,
    key_columns text[],
    last_key text[],
    last_page bigint,
    total_pages bigint,
    relfilenode oid,
    -- a value-range walk (single-column integer key): the key's min and max when it started
    key_min bigint,
    key_max bigint,
    rows_done bigint NOT NULL DEFAULT 0,
    rows_updated bigint NOT NULL DEFAULT 0,
    rows_estimate bigint,
    batches bigint NOT NULL DEFAULT 0,
    batch_size integer,
    rate double precision,
    batch_p50_ms double precision,
    batch_p99_ms double precision,
    paused_seconds double precision NOT NULL DEFAULT 0,
    pause_reason text,
    status text NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'paused', 'waiting', 'failed', 'done')),
    error text,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- 'fill', or 'catch_up' (the rows written during a fill that ran without the trigger)
    pass text NOT NULL DEFAULT 'fill',
    PRIMARY KEY (migration, table_schema, table_name, pass)
)"
        ),
        // A state schema made before catch-up passes existed: the pass joins the key.
        format!(
            "ALTER TABLE {s}.backfills ADD COLUMN IF NOT EXISTS pass text NOT NULL DEFAULT 'fill'"
        ),
        format!(
            "DO $_pgbaton_$
BEGIN
  IF NOT EXISTS (
      SELECT 1 FROM pg_constraint c JOIN pg_attribute a
          ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
       WHERE c.conrelid = {table}::regclass AND c.contype = 'p' AND a.attname = 'pass') THEN
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I, ADD PRIMARY KEY \
                    (migration, table_schema, table_name, pass)', {table},
        (SELECT conname FROM pg_constraint WHERE conrelid = {table}::regclass AND contype = 'p'));
  END IF;
END
$_pgbaton_$",
            table = Literal::new(format!("{s}.backfills"))
        ),
        // A state schema made before value-range walks existed gets their columns. (Until it
        // does, such walks read the key's bounds again on every run: see `Runner::checkpoint`.)
        format!(
            "ALTER TABLE {s}.backfills ADD COLUMN IF NOT EXISTS key_min bigint, \
             ADD COLUMN IF NOT EXISTS key_max bigint"
        ),
        // The transaction id of every batch of a backfill with a write window (no key: `xid`
        // has no btree order; the catch-up hashes them).
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.backfill_xids (
    migration text NOT NULL,
    table_schema text NOT NULL,
    table_name text NOT NULL,
    xid xid NOT NULL
)"
        ),
        // Looked up by the dual-write trigger for a batch that skips it (see below).
        format!(
            "CREATE INDEX IF NOT EXISTS backfill_xids_xid ON {s}.backfill_xids USING hash (xid)"
        ),
        // A batch that cannot use `session_replication_role` sets `pgbaton.backfill` and records
        // its transaction id here first; the dual-write trigger skips a row only when both hold,
        // so no other session can switch the dual writes off by setting `pgbaton.backfill`.
        format!(
            "CREATE OR REPLACE FUNCTION {f}() RETURNS boolean LANGUAGE sql STABLE \
             SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS \
             $_pgbaton_$SELECT EXISTS (SELECT 1 FROM {s}.backfill_xids \
             WHERE xid = pg_current_xact_id_if_assigned()::xid)$_pgbaton_$",
            f = crate::triggers::bypass_function(state_schema)
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.controls (
    schema_name text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false,
    max_rows_per_second double precision CHECK (max_rows_per_second > 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT current_user
)"
        ),
    ]
}

/// Pauses every backfill of `schema` between batches (from any machine).
pub async fn pause(
    client: &Client,
    state_schema: &Ident,
    schema: &Ident,
) -> Result<(), BackfillError> {
    set_control(client, state_schema, schema, "paused = true", "true, NULL").await
}

/// Lets the backfills of `schema` go on.
pub async fn resume(
    client: &Client,
    state_schema: &Ident,
    schema: &Ident,
) -> Result<(), BackfillError> {
    set_control(
        client,
        state_schema,
        schema,
        "paused = false",
        "false, NULL",
    )
    .await
}

/// Sets (or with `None` clears) a rows-per-second ceiling for the backfills of `schema`.
pub async fn set_rate_limit(
    client: &Client,
    state_schema: &Ident,
    schema: &Ident,
    rows_per_second: Option<f64>,
) -> Result<(), BackfillError> {
    let value = match rows_per_second {
        Some(r) if r.is_finite() && r > 0.0 => format!("{r}"),
        _ => "NULL".to_string(),
    };
    let set = format!("max_rows_per_second = {value}");
    // Keep the pause flag as it is when inserting the row for the first time.
    set_control(
        client,
        state_schema,
        schema,
        &set,
        &format!("false, {value}"),
    )
    .await
}

async fn set_control(
    client: &Client,
    state_schema: &Ident,
    schema: &Ident,
    set: &str,
    insert_values: &str,
) -> Result<(), BackfillError> {
    let sql = format!(
        "INSERT INTO {state_schema}.controls AS c (schema_name, paused, max_rows_per_second) \
         VALUES ({}, {insert_values}) ON CONFLICT (schema_name) DO UPDATE \
         SET {set}, updated_at = now(), updated_by = current_user",
        Literal::new(schema.as_str())
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(|source| state_error("writing controls", source))
}

/// Whether the backfills of `schema` are paused by an operator.
pub async fn is_paused(
    client: &Client,
    state_schema: &Ident,
    schema: &Ident,
) -> Result<bool, BackfillError> {
    let sql = format!("SELECT paused FROM {state_schema}.controls WHERE schema_name = $1");
    let row = client
        .query_opt(&sql, &[&schema.as_str()])
        .await
        .map_err(|source| state_error("reading controls", source))?;
    Ok(row.map(|r| r.get::<_, bool>(0)).unwrap_or(false))
}

/// Removes the checkpoints of `migration` (after a rollback, or a complete).
pub async fn clear(
    client: &Client,
    state_schema: &Ident,
    migration: &str,
) -> Result<u64, BackfillError> {
    let sql = format!("DELETE FROM {state_schema}.backfill_xids WHERE migration = $1");
    client
        .execute(&sql, &[&migration])
        .await
        .map_err(|source| state_error("clearing checkpoints", source))?;
    let sql = format!("DELETE FROM {state_schema}.backfills WHERE migration = $1");
    client
        .execute(&sql, &[&migration])
        .await
        .map_err(|source| state_error("clearing checkpoints", source))
}

/// The backfills of `migration` (every migration when `None`), as `pgbaton status` shows them.
pub async fn status(
    client: &Client,
    state_schema: &Ident,
    migration: Option<&str>,
) -> Result<Vec<BackfillStatus>, BackfillError> {
    let sql = format!(
        "SELECT migration, format('%I.%I', table_schema, table_name), status, key_columns,
                rows_done, rows_updated, rows_estimate, last_page, total_pages, rate, batch_size,
                batch_p50_ms, batch_p99_ms, paused_seconds, pause_reason, error,
                started_at::text, updated_at::text, finished_at::text,
                -- through jsonb: a state schema made before these columns existed has none
                to_jsonb(b) ->> 'key_min', to_jsonb(b) ->> 'key_max', last_key[1],
                coalesce(to_jsonb(b) ->> 'pass', 'fill')
           FROM {state_schema}.backfills AS b
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
            let rows_done = r.get::<_, i64>(4).max(0) as u64;
            let rows_estimate = r
                .get::<_, Option<i64>>(6)
                .filter(|&e| e > 0)
                .map(|e| e as u64);
            let last_page: Option<i64> = r.get(7);
            let total_pages: Option<i64> = r.get(8);
            let rate: Option<f64> = r.get(9);
            let done = status == "done";
            let int = |i: usize| -> Option<i64> {
                r.get::<_, Option<String>>(i).and_then(|v| v.parse().ok())
            };
            let walked = match (total_pages, int(19), int(20), int(21)) {
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
                rows_updated: r.get::<_, i64>(5).max(0) as u64,
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
            }
        })
        .collect())
}

/// Fraction done: from `walked` (units done, units in all: pages of a ctid walk, key values of
/// a value-range walk) when known, else from the rows done and the table's estimate.
fn estimate_fraction(
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
fn key_position(last: Option<i64>, min: i64, max: i64) -> (f64, f64) {
    let total = (i128::from(max) - i128::from(min) + 1).max(0);
    let done = last.map_or(0, |l| (i128::from(l) - i128::from(min) + 1).clamp(0, total));
    (done as f64, total as f64)
}

fn eta(
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

// ---------------------------------------------------------------------------------------------
// SQL of a batch (pure)
// ---------------------------------------------------------------------------------------------

/// What a batch needs to know about the table, read from the catalog once per run.
#[derive(Clone, Debug)]
struct TableInfo {
    oid: u32,
    relfilenode: u32,
    reltuples: f64,
    /// `pg_relation_size / block_size` now.
    pages: i64,
    /// Average rows per page (for sizing ctid batches).
    density: f64,
    /// attnums of the filled columns, for the fingerprint.
    target_attnums: Vec<i16>,
    /// A foreign key involves a filled column: its checks must run, so no replica role.
    fk_on_targets: bool,
    /// The key is a single integer column with a btree index: it can be walked by value ranges.
    int_key: Option<IntKey>,
}

/// The `SET` list of the batch update. With an identity scope the expressions run directly;
/// otherwise each is evaluated over a one-row sub-query exposing the names it uses.
fn set_list(spec: &BackfillSpec) -> String {
    spec.assignments
        .iter()
        .map(|a| {
            format!(
                "{} = {}",
                a.target,
                crate::verify::scoped(&spec.table, &spec.scope, &a.expr)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The filter a batch adds to its range. Without a write window: the rows no live write touched
/// (marker not set). A fill with a write window: every row (no trigger can have touched one, and
/// the marker column does not exist yet). A catch-up pass: the rows no live write touched since
/// the trigger was installed and that no batch of this backfill wrote last (their `xmin` is not
/// one of the batches' transaction ids): the old version wrote them during the fill.
///
/// A ctid fill with a write window also skips the rows its own earlier batches wrote: an update
/// that does not fit in its page moves the row, possibly to a page the walk has not reached yet.
fn pending(spec: &BackfillSpec, cp: &CheckpointKey<'_>) -> String {
    let t = &spec.table;
    let not_ours = || {
        format!(
            "NOT EXISTS (SELECT 1 FROM {} AS _pgbaton_x WHERE {} AND _pgbaton_x.xid = {t}.xmin)",
            cp.xids_table(),
            cp.table_filter("_pgbaton_x"),
        )
    };
    match (spec.pass, &spec.window, &spec.key) {
        (_, None, _) => format!("{t}.{} IS NOT TRUE", spec.marker),
        (BackfillPass::Fill, Some(_), BackfillKey::Ctid) => not_ours(),
        (BackfillPass::Fill, Some(_), BackfillKey::Columns(_)) => "true".to_string(),
        (BackfillPass::CatchUp, Some(_), _) => {
            format!("{t}.{} IS NOT TRUE AND {}", spec.marker, not_ours())
        }
    }
}

/// The statement a batch of a backfill with a write window runs in its transaction: its
/// transaction id goes into `backfill_xids` (see [`pending`]).
fn record_xid_sql(spec: &BackfillSpec, cp: &CheckpointKey<'_>) -> Option<String> {
    spec.window.as_ref().map(|_| {
        format!(
            "INSERT INTO {} (migration, table_schema, table_name, xid) VALUES ({}, {}, {}, \
             pg_current_xact_id()::xid)",
            cp.xids_table(),
            Literal::new(cp.migration),
            Literal::new(cp.table.schema.as_str()),
            Literal::new(cp.table.name.as_str()),
        )
    })
}

/// A batch's SQL, without its transaction control.
enum BatchSql {
    /// One statement: the update and the checkpoint together, in a `WITH` (keyset walks, capped
    /// value ranges). Returns the batch's result row.
    Single(String),
    /// The update alone, then — a second round trip in the same transaction — the statements
    /// that write the checkpoint, given the rows the update changed (from its command tag), and
    /// return the batch's result row. A plain `UPDATE` costs ≈5% less than the same update
    /// inside `WITH ... RETURNING` (measured on PG15), which counting its rows in SQL needs.
    Split {
        update: String,
        /// Runs first in the second round trip (recording the batch's transaction id).
        prelude: Option<String>,
        checkpoint: Box<dyn Fn(u64) -> String + Send + Sync>,
    },
}

impl BatchSql {
    /// The statements that read the table, for `EXPLAIN`.
    fn explained(&self) -> Vec<String> {
        match self {
            BatchSql::Single(sql) => vec![sql.clone()],
            BatchSql::Split {
                update, checkpoint, ..
            } => vec![update.clone(), checkpoint(0)],
        }
    }

    /// The second round trip's statements, given the rows updated.
    fn finish(
        prelude: &Option<String>,
        checkpoint: &(dyn Fn(u64) -> String + Send + Sync),
        n: u64,
    ) -> String {
        match prelude {
            Some(sql) => format!("{sql};\n{}", checkpoint(n)),
            None => checkpoint(n),
        }
    }
}

/// `BEGIN` and the `SET LOCAL`s of a batch transaction.
fn batch_begin(opts: &BackfillOptions, bypass: TriggerBypass, index_walk: bool) -> String {
    let mut s = String::from("BEGIN ISOLATION LEVEL READ COMMITTED;\n");
    s.push_str(&batch_settings(opts, bypass, index_walk));
    s
}

/// A batch statement in its transaction: `BEGIN`, the `SET LOCAL`s, the statement, `COMMIT`.
#[cfg(test)]
fn batch_transaction(
    opts: &BackfillOptions,
    bypass: TriggerBypass,
    index_walk: bool,
    statement: &str,
) -> String {
    let mut s = batch_begin(opts, bypass, index_walk);
    let _ = write!(s, "{statement};\nCOMMIT;\n");
    s
}

/// `SET LOCAL` lines that start every batch transaction.
///
/// A key batch (keyset or value range) also turns off sequential scans and sorts for its
/// statement; a value range's bounds are constants the planner could otherwise price at a
/// large share of the table (a wide batch, stale statistics). Without
/// statistics on the key (a table never analyzed) or with an uncorrelated key (a uuid), the
/// planner prices an ordered index scan as random I/O and may read the next keys with a full
/// scan and a sort, per batch, which is quadratic in the table size. Turned off, they are only
/// used where nothing else can do the job (e.g. inside a user's `up` sub-query on a table
/// without an index): the settings change plan choices, never results.
///
/// JIT is off for every batch: a batch is planned and run once, and compiling it costs more
/// than it saves (hundreds of milliseconds once the disabled paths push the estimated cost over
/// `jit_above_cost`, measured on PG15).
fn batch_settings(opts: &BackfillOptions, bypass: TriggerBypass, index_walk: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "SET LOCAL lock_timeout = '{}ms';",
        opts.lock_timeout.as_millis().max(1)
    );
    s.push_str("SET LOCAL statement_timeout = 0;\nSET LOCAL jit = off;\n");
    // The commit does not wait for its WAL to reach disk. Safe here: a crash can only lose the
    // last batches whole, together with their checkpoint (they are in one transaction), and a
    // later run redoes them; any later commit that waits for disk also carries them (WAL is
    // sequential), so no live write can depend on a lost batch.
    s.push_str("SET LOCAL synchronous_commit = off;\n");
    match bypass {
        TriggerBypass::ReplicationRole | TriggerBypass::Auto => {
            s.push_str("SET LOCAL session_replication_role = replica;\n")
        }
        TriggerBypass::Setting => {
            let _ = writeln!(s, "SET LOCAL {BACKFILL_SETTING} = 'on';");
        }
    }
    if index_walk {
        s.push_str("SET LOCAL enable_seqscan = off;\nSET LOCAL enable_sort = off;\n");
    }
    s
}

/// Checkpoint columns written with every batch: the run's statistics so far.
#[derive(Clone, Debug, Default)]
struct Stats {
    batch_size: u32,
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    paused_seconds: f64,
}

impl Stats {
    fn set_sql(&self) -> String {
        format!(
            "batches = batches + 1, batch_size = {}, rate = {}, batch_p50_ms = {}, \
             batch_p99_ms = {}, paused_seconds = {}, status = 'running', pause_reason = NULL, \
             error = NULL, updated_at = clock_timestamp()",
            self.batch_size,
            finite(self.rate),
            finite(self.p50_ms),
            finite(self.p99_ms),
            finite(self.paused_seconds)
        )
    }
}

fn finite(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "0".to_string()
    }
}

/// Identifies the checkpoint row.
struct CheckpointKey<'a> {
    state: &'a Ident,
    migration: &'a str,
    table: &'a QualName,
    pass: BackfillPass,
}

impl CheckpointKey<'_> {
    fn table(&self) -> String {
        format!("{}.backfills", self.state)
    }

    /// The transaction ids of the batches of the backfills (see [`pending`]).
    fn xids_table(&self) -> String {
        format!("{}.backfill_xids", self.state)
    }

    /// Rows of `alias` (a `backfills` or `backfill_xids` row) that belong to this table.
    fn table_filter(&self, alias: &str) -> String {
        format!(
            "{alias}.migration = {} AND {alias}.table_schema = {} AND {alias}.table_name = {}",
            Literal::new(self.migration),
            Literal::new(self.table.schema.as_str()),
            Literal::new(self.table.name.as_str()),
        )
    }

    fn filter(&self) -> String {
        format!(
            "migration = {} AND table_schema = {} AND table_name = {} AND pass = {}",
            Literal::new(self.migration),
            Literal::new(self.table.schema.as_str()),
            Literal::new(self.table.name.as_str()),
            Literal::new(self.pass.as_str())
        )
    }
}

/// A keyset batch: the first `limit` keys after `last`, then one update over the key range of
/// exactly those keys, then the checkpoint. Returns a row: (walked, updated, checkpoint rows, end
/// key columns as text...).
///
/// The update's range is bounded on both sides by the batch's own first and last keys (InitPlan
/// parameters, unknown when the statement is planned): two-sided bounds on one column get the
/// planner's small default range selectivity, so it picks the key's index whatever the
/// statistics say; a one-sided bound (`key <= $end`) would be estimated at a third of the table
/// and planned as a sequential scan. For a composite key the first column is bounded on its own
/// too, for the same reason (row comparisons are estimated as one-sided).
fn keyset_batch_sql(
    spec: &BackfillSpec,
    key: &[Ident],
    cp: &CheckpointKey<'_>,
    last: Option<&[String]>,
    limit: u32,
    stats: &Stats,
) -> String {
    let t = &spec.table;
    let qualified = key.iter().map(|k| format!("{t}.{k}")).collect::<Vec<_>>();
    let row = |cols: &[String]| {
        if cols.len() == 1 {
            cols[0].clone()
        } else {
            format!("({})", cols.join(", "))
        }
    };
    let lower = last.map(|values| {
        let literals = values.iter().map(|v| quote_literal(v)).collect::<Vec<_>>();
        format!(" WHERE {} > {}", row(&qualified), row(&literals))
    });
    let plain = key.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    let order = |dir: &str| {
        plain
            .iter()
            .map(|k| format!("{k} {dir}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let from = |cte: &str| {
        plain
            .iter()
            .map(|k| format!("(SELECT {k} FROM {cte})"))
            .collect::<Vec<_>>()
    };
    let (start, end) = (from("_pgbaton_start"), from("_pgbaton_end"));
    let mut range = format!(
        "{first} >= {s0} AND {first} <= {e0}",
        first = qualified[0],
        s0 = start[0],
        e0 = end[0]
    );
    if key.len() > 1 {
        let _ = write!(
            range,
            " AND {r} >= {s} AND {r} <= {e}",
            r = row(&qualified),
            s = row(&start),
            e = row(&end)
        );
    }
    let end_text = plain
        .iter()
        .map(|k| format!("to_jsonb({k}) #>> '{{}}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let xid_cte = record_xid_sql(spec, cp)
        .map(|sql| format!("_pgbaton_xid AS (\n  {sql}\n), "))
        .unwrap_or_default();
    format!(
        "WITH {xid_cte}_pgbaton_batch AS (\n  SELECT {cols} FROM {t}{where_lower} ORDER BY {cols} LIMIT {limit}\n), \
         _pgbaton_start AS (\n  SELECT {plain_cols} FROM _pgbaton_batch ORDER BY {asc} LIMIT 1\n), \
         _pgbaton_end AS (\n  SELECT {plain_cols}, (SELECT count(*) FROM _pgbaton_batch) AS _pgbaton_n \
         FROM _pgbaton_batch ORDER BY {desc} LIMIT 1\n), \
         _pgbaton_done AS (\n  UPDATE {t} SET {set}\n  WHERE {range} AND {pending}\n  RETURNING 1\n), \
         _pgbaton_cp AS (\n  UPDATE {cp_table} SET last_key = coalesce((SELECT ARRAY[{end_text}] FROM _pgbaton_end), last_key), \
         rows_done = rows_done + coalesce((SELECT _pgbaton_n FROM _pgbaton_end), 0), \
         rows_updated = rows_updated + (SELECT count(*) FROM _pgbaton_done), {stats}\n  WHERE {filter}\n  RETURNING 1\n)\n\
         SELECT coalesce((SELECT _pgbaton_n FROM _pgbaton_end), 0), (SELECT count(*) FROM _pgbaton_done), \
         (SELECT count(*) FROM _pgbaton_cp){end_cols}",
        cols = qualified.join(", "),
        where_lower = lower.unwrap_or_default(),
        plain_cols = plain.join(", "),
        asc = order("ASC"),
        desc = order("DESC"),
        set = set_list(spec),
        pending = pending(spec, cp),
        cp_table = cp.table(),
        stats = stats.set_sql(),
        filter = cp.filter(),
        end_cols = plain
            .iter()
            .map(|k| format!(", (SELECT to_jsonb({k}) #>> '{{}}' FROM _pgbaton_end)"))
            .collect::<String>(),
    )
}

/// A ctid batch: pages `[from, to)`. Its result row: (updated, checkpoint rows, relfilenode).
fn ctid_batch_sql(
    spec: &BackfillSpec,
    cp: &CheckpointKey<'_>,
    from: i64,
    to: i64,
    stats: &Stats,
) -> BatchSql {
    let t = &spec.table;
    let update = format!(
        "UPDATE {t} SET {set}\nWHERE {t}.ctid >= '({from},0)'::tid AND {t}.ctid < '({to},0)'::tid \
         AND {pending}",
        set = set_list(spec),
        pending = pending(spec, cp),
    );
    let (cp_table, stats, filter, regclass) =
        (cp.table(), stats.set_sql(), cp.filter(), t.regclass());
    BatchSql::Split {
        update,
        prelude: record_xid_sql(spec, cp),
        checkpoint: Box::new(move |n| {
            format!(
                "WITH _pgbaton_cp AS (\n  UPDATE {cp_table} SET last_page = {to}, \
                 rows_done = rows_done + {n}, rows_updated = rows_updated + {n}, {stats}\n  \
                 WHERE {filter}\n  RETURNING 1\n)\n\
                 SELECT {n}, (SELECT count(*) FROM _pgbaton_cp), pg_relation_filenode({regclass})"
            )
        }),
    }
}

/// A single-column integer key with a btree index: the walk can go by value ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
struct IntKey {
    column: Ident,
    /// `smallint`, `integer` or `bigint`.
    type_name: &'static str,
}

impl IntKey {
    fn for_type(column: &Ident, regtype: &str) -> Option<IntKey> {
        let type_name = match regtype {
            "smallint" => "smallint",
            "integer" => "integer",
            "bigint" => "bigint",
            _ => return None,
        };
        Some(IntKey {
            column: column.clone(),
            type_name,
        })
    }
}

/// The bounds of one value-range batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KeyRange {
    /// First key value of the batch (an existing key, or the first not yet done).
    lo: i64,
    /// Last key value of the batch, when it is fixed in advance.
    hi: i64,
    /// At most this many rows: the statement itself moves `hi` down to just before the
    /// `(cap + 1)`-th key at or after `lo`, when there is one in `[lo, hi]`.
    cap: Option<u64>,
    /// The key's max at start: the walk ends there.
    end: i64,
}

/// A value-range batch on a single-column integer key: one `UPDATE` of the keys in
/// `[lo, hi]`, the next existing key after `hi` (up to the end) read from the index, and the
/// checkpoint: `last_key` = just before that next key (or the end), so a gap in the keys is
/// skipped by the next batch and by a resumed run. Returns a row: (updated, checkpoint rows,
/// next key or NULL, the batch's `hi`).
///
/// Without a `cap` both bounds are constants: no key is read before the update (the keyset
/// walk's pre-scan, which reads every key, and its heap page when the visibility map is not
/// set, a second time). With a `cap` (a sparse stretch, where the value width of a batch is
/// many times the rows it should hold) the `(cap + 1)`-th key of the range is read first, and
/// both bounds become InitPlan parameters (see [`keyset_batch_sql`] for why that keeps the
/// index).
fn range_batch_sql(
    spec: &BackfillSpec,
    key: &IntKey,
    cp: &CheckpointKey<'_>,
    range: KeyRange,
    stats: &Stats,
) -> BatchSql {
    let t = &spec.table;
    let k = &key.column;
    let ty = key.type_name;
    let (lo, hi, end) = (
        quote_literal(&range.lo.to_string()),
        quote_literal(&range.hi.to_string()),
        quote_literal(&range.end.to_string()),
    );
    let (bounds_cte, lower, upper) = match range.cap {
        None => (String::new(), lo, hi.clone()),
        Some(cap) => (
            format!(
                "_pgbaton_range AS (\n  SELECT {lo}::{ty} AS _pgbaton_lo, coalesce((SELECT {t}.{k} FROM {t} \
                 WHERE {t}.{k} >= {lo} AND {t}.{k} <= {hi} ORDER BY {t}.{k} OFFSET {cap} LIMIT 1) - 1, \
                 {hi})::{ty} AS _pgbaton_hi\n), "
            ),
            "(SELECT _pgbaton_lo FROM _pgbaton_range)".to_string(),
            "(SELECT _pgbaton_hi FROM _pgbaton_range)".to_string(),
        ),
    };
    let set = set_list(spec);
    let pending = pending(spec, cp);
    let xid = record_xid_sql(spec, cp);
    let (cp_table, stats, filter) = (cp.table(), stats.set_sql(), cp.filter());
    let next_end = end.clone();
    let next = move |upper: &str| {
        let end = &next_end;
        format!(
            "_pgbaton_next AS (\n  SELECT min({t}.{k}) AS _pgbaton_key FROM {t} WHERE {t}.{k} > {upper} \
             AND {t}.{k} <= {end}\n)"
        )
    };
    // The checkpoint: the key before the next existing one (or the walk's end), then the
    // result row (updated, checkpoint rows, next key, upper bound).
    let checkpoint = move |upper: &str, n: &str| {
        format!(
            "_pgbaton_cp AS (\n  UPDATE {cp_table} SET last_key = ARRAY[coalesce((SELECT _pgbaton_key - 1 \
             FROM _pgbaton_next), {end})::text], rows_done = rows_done + {n}, \
             rows_updated = rows_updated + {n}, {stats}\n  WHERE {filter}\n  RETURNING 1\n)\n\
             SELECT {n}, (SELECT count(*) FROM _pgbaton_cp), \
             (SELECT _pgbaton_key FROM _pgbaton_next)::text, ({upper})::text"
        )
    };
    if range.cap.is_some() {
        // The capped bound is computed in the statement: one statement, counted in SQL.
        let xid_cte = xid
            .map(|sql| format!("_pgbaton_xid AS (\n  {sql}\n), "))
            .unwrap_or_default();
        return BatchSql::Single(format!(
            "WITH {xid_cte}{bounds_cte}_pgbaton_done AS (\n  UPDATE {t} SET {set}\n  WHERE {t}.{k} >= {lower} \
             AND {t}.{k} <= {upper} AND {pending}\n  RETURNING 1\n), {next}, {cp}",
            next = next(&upper),
            cp = checkpoint(&upper, "(SELECT count(*) FROM _pgbaton_done)"),
        ));
    }
    let update = format!(
        "UPDATE {t} SET {set}\nWHERE {t}.{k} >= {lower} AND {t}.{k} <= {upper} AND {pending}"
    );
    let next = next(&upper);
    BatchSql::Split {
        update,
        prelude: xid,
        checkpoint: Box::new(move |n| {
            format!("WITH {next}, {}", checkpoint(&upper, &n.to_string()))
        }),
    }
}

/// The query run after each batch (same round trip) and while paused: the operator controls
/// and, when a ceiling is set, the replication positions.
fn controls_sql(state: &Ident, schema: &Ident, lag: bool) -> String {
    let lag_cols = if lag {
        ", pg_current_wal_lsn()::text, \
         (SELECT min(replay_lsn)::text FROM pg_stat_replication WHERE replay_lsn IS NOT NULL), \
         (SELECT max(extract(epoch FROM replay_lag))::float8::text FROM pg_stat_replication), \
         (SELECT count(*) FROM pg_stat_replication WHERE replay_lsn IS NULL AND state <> 'backup')"
    } else {
        ""
    };
    format!(
        "SELECT coalesce(c.paused, false), c.max_rows_per_second{lag_cols} \
         FROM (SELECT 1) AS _pgbaton_one LEFT JOIN {state}.controls AS c ON c.schema_name = {}",
        Literal::new(schema.as_str())
    )
}

/// Parses `16/B374D848`.
fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// The next adaptive batch size: toward `target / elapsed` times the current one, at most 1.5×
/// up or 2× down per batch.
fn adapt(current: u32, elapsed: Duration, target: Duration, lo: u32, hi: u32) -> u32 {
    let elapsed = elapsed.as_secs_f64().max(1e-4);
    let ratio = (target.as_secs_f64() / elapsed).clamp(0.5, 1.5);
    let next = (current as f64 * ratio).round();
    (next.max(lo as f64).min(hi as f64)) as u32
}

/// The next rows target of a value-range walk, whose batches hold `rows` rows where `current`
/// was aimed at: toward the rows that take `target` at this batch's rate, at most 1.5× up or
/// 2× down per batch. A batch that held much fewer rows than aimed at (a sparse stretch) says
/// little about the rate (its fixed costs dominate): it only lowers the target, and only when
/// it was too slow even so.
fn adapt_to_rows(
    current: u32,
    rows: u64,
    elapsed: Duration,
    target: Duration,
    lo: u32,
    hi: u32,
) -> u32 {
    let representative = rows.saturating_mul(2) >= u64::from(current);
    if !representative && elapsed <= target {
        return current.clamp(lo, hi);
    }
    let elapsed = elapsed.as_secs_f64().max(1e-4);
    let ideal = rows as f64 * target.as_secs_f64() / elapsed;
    let next = ideal
        .clamp(current as f64 * 0.5, current as f64 * 1.5)
        .round();
    (next.max(lo as f64).min(hi as f64)) as u32
}

/// A value-range batch may hold up to this many times its rows target before its upper bound
/// is capped by reading the keys (see [`RangeWalk::next_batch`]).
const RANGE_SLACK: u64 = 4;

/// The least density a value-range walk assumes: a batch is at most 10^12 times its rows
/// target wide. (Wider gaps cost no empty batches either: each batch starts at the next key.)
const DENSITY_FLOOR: f64 = 1e-12;

/// Where a value-range walk stands, and what it has learned of the key's density.
#[derive(Clone, Debug)]
struct RangeWalk {
    /// The first key value not done yet; `None` when the walk is over.
    next: Option<i64>,
    /// The key's min and max at start (the max is where the walk ends).
    min: i64,
    max: i64,
    /// Rows per key value where the walk is (at most 1 for a unique key): that of the last
    /// batch. The most recent batch is the best guess for the next one: it comes right before
    /// it, and a wrong guess costs little either way (too low: a capped batch; too high: a
    /// small batch, after which the guess is right).
    density: f64,
}

impl RangeWalk {
    fn new(next: Option<i64>, min: i64, max: i64) -> RangeWalk {
        RangeWalk {
            next: next.filter(|n| *n <= max),
            min,
            max,
            // The most a unique key can have: the first batch is never wider than its target.
            density: 1.0,
        }
    }

    /// The next batch for a target of `rows` rows, or `None` when the walk is over. Its value
    /// width is `rows / density`. Where that is more than [`RANGE_SLACK`] × `rows` (a sparse
    /// stretch, where a change to dense keys would put up to `width` rows in one batch), the
    /// batch is capped at that many rows by reading the keys of its range first; elsewhere it
    /// holds at most `width` ≤ `RANGE_SLACK` × `rows` rows (a unique key), and no key is read.
    fn next_batch(&self, rows: u32) -> Option<KeyRange> {
        let lo = self.next?;
        let rows = u64::from(rows.max(1));
        let width = (rows as f64 / self.density).ceil().max(1.0);
        let slack = (rows * RANGE_SLACK) as f64;
        // (A float-to-int cast saturates.)
        let hi = (i128::from(lo) + width as i128 - 1).min(i128::from(self.max));
        let width = (hi - i128::from(lo) + 1) as f64;
        // `hi` is within [lo, max], so within the key type.
        let hi = i64::try_from(hi).unwrap_or(self.max);
        Some(KeyRange {
            lo,
            hi,
            cap: (width > slack).then_some(rows * RANGE_SLACK),
            end: self.max,
        })
    }

    /// Takes a batch's result: `updated` rows in `[lo, hi]`, `next_key` the first key after
    /// `hi` (up to the end) or `None`.
    fn advance(&mut self, lo: i64, hi: i64, updated: u64, next_key: Option<i64>) {
        let width = (i128::from(hi) - i128::from(lo) + 1).max(1) as f64;
        self.density = if updated > 0 {
            updated as f64 / width
        } else {
            // Every row of the range was marked already (or gone): four times wider next.
            self.density / 4.0
        }
        .clamp(DENSITY_FLOOR, 1.0);
        self.next = next_key.filter(|k| *k > hi && *k <= self.max);
    }

    /// (key values done, key values in all), for the fraction done.
    fn position(&self) -> (f64, f64) {
        let last = match self.next {
            Some(n) => n.checked_sub(1),
            None => Some(self.max),
        };
        key_position(last, self.min, self.max)
    }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/// Fills `spec`'s columns in every existing row of its table that no live write has touched,
/// batch by batch, checkpointing each batch in `state_schema.backfills`. Resumes from the
/// checkpoint of an earlier run of the same migration and spec. `on_progress` is called after
/// every batch and on every pause, lock wait and at the end.
///
/// `client` must be a direct session (not behind a transaction-mode pooler): it holds a
/// session-level advisory lock on the table for the run.
pub async fn run(
    client: &Client,
    state_schema: &Ident,
    migration: &str,
    spec: &BackfillSpec,
    opts: &BackfillOptions,
    on_progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<BackfillOutcome, BackfillError> {
    let table = spec.table.to_string();
    let info = inspect(client, spec).await?;
    // The oid's bits as an int4 key (wrapping is fine: it only has to be the same every time).
    let lock_key = info.oid as i32;
    let locked = client
        .query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&BACKFILL_LOCK_CLASS, &lock_key],
        )
        .await
        .map_err(|source| db(&table, "taking the backfill lock", source))?;
    if !locked.get::<_, bool>(0) {
        return Err(BackfillError::Busy { table });
    }
    let result = Runner::new(client, state_schema, migration, spec, opts, info)
        .run(on_progress)
        .await;
    // Best effort: a dead connection has released it already.
    let _ = client
        .query_one(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&BACKFILL_LOCK_CLASS, &lock_key],
        )
        .await;
    result
}

/// `EXPLAIN` of the batch statement a run would execute next for `spec` (after `after`, the last
/// key of the previous batch, for a key walk; from page 0 for a ctid walk), with `limit` rows,
/// walking a key as `key_walk` says. A value-range batch is as wide as `limit` rows at the
/// key's average density (row estimate over the key's span), so a sparse key shows the capped
/// batch. Nothing is changed. For `pgbaton plan --explain` and the tests that check no batch
/// scans the whole table. Needs the state schema (the statement updates the checkpoint table).
pub async fn explain_batch(
    client: &Client,
    state_schema: &Ident,
    migration: &str,
    spec: &BackfillSpec,
    after: Option<&[String]>,
    limit: u32,
    key_walk: KeyWalk,
) -> Result<String, BackfillError> {
    let table = spec.table.to_string();
    let info = inspect(client, spec).await?;
    let cp = CheckpointKey {
        state: state_schema,
        migration,
        table: &spec.table,
        pass: spec.pass,
    };
    let int_key = info.int_key.as_ref().filter(|_| key_walk == KeyWalk::Auto);
    let statement = match (&spec.key, int_key) {
        (BackfillKey::Columns(_), Some(key)) => {
            // The key's bounds now, and its average density from the row estimate: the
            // batch a run makes once it has measured that density.
            let k = &key.column;
            let row = client
                .query_one(
                    &format!("SELECT min({k})::int8, max({k})::int8 FROM {}", spec.table),
                    &[],
                )
                .await
                .map_err(|source| db(&table, "reading the key's bounds", source))?;
            let (min, max) = (
                row.get::<_, Option<i64>>(0).unwrap_or(1),
                row.get::<_, Option<i64>>(1).unwrap_or(1),
            );
            let lo = match after {
                Some([last]) => last
                    .parse::<i64>()
                    .ok()
                    .and_then(|l| l.checked_add(1))
                    .unwrap_or(min),
                _ => min,
            };
            let mut walk = RangeWalk::new(Some(lo), min, max.max(lo));
            let span = (i128::from(max) - i128::from(min) + 1).max(1) as f64;
            walk.density = (info.reltuples.max(1.0) / span).clamp(DENSITY_FLOOR, 1.0);
            let range = walk
                .next_batch(limit.max(1))
                .ok_or_else(|| protocol(&table, "no batch to explain"))?;
            range_batch_sql(spec, key, &cp, range, &Stats::default())
        }
        (BackfillKey::Columns(key), None) => BatchSql::Single(keyset_batch_sql(
            spec,
            key,
            &cp,
            after,
            limit.max(1),
            &Stats::default(),
        )),
        (BackfillKey::Ctid, _) => {
            let pages = ((f64::from(limit.max(1)) / info.density).ceil() as i64).max(1);
            ctid_batch_sql(spec, &cp, 0, pages, &Stats::default())
        }
    };
    // With the batch's own planner settings, rolled back.
    let settings = batch_settings(
        &BackfillOptions::default(),
        TriggerBypass::Setting,
        matches!(spec.key, BackfillKey::Columns(_)),
    );
    let explains = statement
        .explained()
        .iter()
        .map(|sql| format!("EXPLAIN (COSTS OFF) {sql};\n"))
        .collect::<String>();
    let sql = format!("BEGIN;\n{settings}{explains}ROLLBACK");
    match client.simple_query(&sql).await {
        Ok(messages) => Ok(rows(&messages)
            .iter()
            .filter_map(|r| r.get(0))
            .collect::<Vec<_>>()
            .join("\n")),
        Err(source) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(db(&table, "explaining a batch", source))
        }
    }
}

fn protocol(table: &str, detail: &str) -> BackfillError {
    BackfillError::Protocol {
        table: table.to_string(),
        detail: detail.to_string(),
    }
}

fn db(table: &str, context: &str, source: tokio_postgres::Error) -> BackfillError {
    BackfillError::Db {
        table: table.to_string(),
        context: context.to_string(),
        source,
    }
}

fn state_error(context: &str, source: tokio_postgres::Error) -> BackfillError {
    BackfillError::State {
        context: context.to_string(),
        source,
    }
}

/// Live rows of a table never analyzed, estimated from a block sample of at most ~1000 pages
/// (`TABLESAMPLE SYSTEM`): milliseconds, and much closer than the planner's width-based guess.
async fn sample_rows(client: &Client, table: &QualName, pages: i64) -> Option<f64> {
    if pages <= 0 {
        return Some(0.0);
    }
    let percent = (100_000.0 / pages as f64).min(100.0);
    let row = client
        .query_one(
            &format!(
                "SELECT count(*)::float8 * 100 / {percent} FROM {table} TABLESAMPLE SYSTEM ({percent})"
            ),
            &[],
        )
        .await
        .ok()?;
    row.try_get(0).ok()
}

/// Reads what the run needs from the catalog, and checks the columns exist.
async fn inspect(client: &Client, spec: &BackfillSpec) -> Result<TableInfo, BackfillError> {
    let table = spec.table.to_string();
    let row = client
        .query_opt(
            "SELECT c.oid, pg_relation_filenode(c.oid), c.reltuples::float8, c.relpages::bigint,
                    pg_relation_size(c.oid) / current_setting('block_size')::bigint, c.relkind
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&spec.table.schema.as_str(), &spec.table.name.as_str()],
        )
        .await
        .map_err(|source| db(&table, "reading the catalog", source))?
        .ok_or_else(|| BackfillError::TableNotFound {
            table: table.clone(),
        })?;
    let oid: u32 = row.get(0);
    let relfilenode: u32 = row.get::<_, Option<u32>>(1).unwrap_or(0);
    let reltuples: f64 = row.get(2);
    let relpages: i64 = row.get(3);
    let pages: i64 = row.get(4);
    // Never analyzed (-1): estimate from a sample.
    let reltuples = if reltuples >= 0.0 {
        reltuples
    } else {
        sample_rows(client, &spec.table, pages)
            .await
            .unwrap_or(-1.0)
    };
    let density = if reltuples > 0.0 && relpages > 0 {
        reltuples / relpages as f64
    } else if reltuples > 0.0 && pages > 0 {
        reltuples / pages as f64
    } else {
        100.0
    };
    if matches!(spec.key, BackfillKey::Ctid) && row.get::<_, i8>(5) == b'p' as i8 {
        return Err(BackfillError::Unsupported {
            table,
            reason: "a partitioned table has no ctid order of its own; backfill each partition \
                     or give the table a primary key"
                .into(),
        });
    }

    let mut wanted: Vec<&Ident> = spec.assignments.iter().map(|a| &a.target).collect();
    wanted.push(&spec.marker);
    if spec.window.is_some() && spec.pass == BackfillPass::Fill {
        // A fill with a write window runs before the marker column exists.
        wanted.retain(|c| *c != &spec.marker);
    }
    if let BackfillKey::Columns(cols) = &spec.key {
        wanted.extend(cols.iter());
    }
    for (_, physical) in &spec.scope {
        wanted.push(physical);
    }
    let names: Vec<&str> = wanted.iter().map(|i| i.as_str()).collect();
    let rows = client
        .query(
            "SELECT attname::text, attnum FROM pg_attribute
              WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attname = ANY($2)",
            &[&oid, &names],
        )
        .await
        .map_err(|source| db(&table, "reading the catalog", source))?;
    let attnum = |name: &str| -> Option<i16> {
        rows.iter()
            .find(|r| r.get::<_, String>(0) == name)
            .map(|r| r.get::<_, i16>(1))
    };
    for name in &names {
        if attnum(name).is_none() {
            return Err(BackfillError::ColumnNotFound {
                table,
                column: Ident::new(*name).to_string(),
            });
        }
    }
    let target_attnums: Vec<i16> = spec
        .assignments
        .iter()
        .map(|a| a.target.as_str())
        .chain([spec.marker.as_str()])
        .filter_map(attnum)
        .collect();
    let fk = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint
                             WHERE conrelid = $1 AND contype = 'f' AND conkey && $2::int2[])",
            &[&oid, &target_attnums],
        )
        .await
        .map_err(|source| db(&table, "reading the catalog", source))?;
    Ok(TableInfo {
        oid,
        relfilenode,
        reltuples,
        pages,
        density,
        target_attnums,
        fk_on_targets: fk.get(0),
        int_key: int_key(client, spec, oid).await?,
    })
}

/// The key of `spec` when it is a single `smallint`, `integer` or `bigint` column (not a domain)
/// that a valid, non-partial btree index leads with.
async fn int_key(
    client: &Client,
    spec: &BackfillSpec,
    oid: u32,
) -> Result<Option<IntKey>, BackfillError> {
    let column = match &spec.key {
        BackfillKey::Columns(cols) if cols.len() == 1 => &cols[0],
        _ => return Ok(None),
    };
    let row = client
        .query_opt(
            "SELECT a.atttypid::regtype::text,
                    EXISTS (SELECT 1 FROM pg_index i
                              JOIN pg_class ic ON ic.oid = i.indexrelid
                              JOIN pg_am am ON am.oid = ic.relam
                             WHERE i.indrelid = a.attrelid AND i.indkey[0] = a.attnum
                               AND i.indisvalid AND i.indpred IS NULL AND am.amname = 'btree')
               FROM pg_attribute a
              WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&oid, &column.as_str()],
        )
        .await
        .map_err(|source| db(&spec.table.to_string(), "reading the catalog", source))?;
    Ok(row
        .filter(|r| r.get::<_, bool>(1))
        .and_then(|r| IntKey::for_type(column, &r.get::<_, String>(0))))
}

/// Where the walk stands (from the checkpoint).
#[derive(Clone, Debug)]
enum Position {
    Keyset {
        last: Option<Vec<String>>,
    },
    Ctid {
        next_page: i64,
        total_pages: i64,
        relfilenode: u32,
    },
    Range(RangeWalk),
}

/// What the batch in flight covers.
#[derive(Clone, Copy, Debug)]
enum Batch {
    Keyset,
    Ctid { to: i64 },
    Range(KeyRange),
}

/// Operator controls and replication positions, read between batches.
#[derive(Clone, Debug, Default)]
struct Controls {
    paused: bool,
    max_rows_per_second: Option<f64>,
    current_lsn: Option<u64>,
    min_replay_lsn: Option<u64>,
    replay_lag_seconds: Option<f64>,
    unmeasured: u32,
}

impl Controls {
    fn parse(row: &SimpleQueryRow, lag: bool) -> Controls {
        let mut c = Controls {
            paused: row.get(0) == Some("t"),
            max_rows_per_second: row
                .get(1)
                .and_then(|v| v.parse().ok())
                .filter(|v: &f64| *v > 0.0),
            ..Controls::default()
        };
        if lag {
            c.current_lsn = row.get(2).and_then(parse_lsn);
            c.min_replay_lsn = row.get(3).and_then(parse_lsn);
            c.replay_lag_seconds = row.get(4).and_then(|v| v.parse().ok());
            c.unmeasured = row.get(5).and_then(|v| v.parse().ok()).unwrap_or(0);
        }
        c
    }
}

/// WAL positions this backfill saw, with when, to tell how old the oldest position a standby
/// has not replayed is. Bounded: old samples are thinned out, never unbounded growth.
#[derive(Debug, Default)]
struct LagClock {
    samples: VecDeque<(Instant, u64)>,
}

const LAG_SAMPLES_MAX: usize = 4096;

impl LagClock {
    /// Records `current` and returns the age of the oldest sample the standby has not replayed.
    fn observe(&mut self, now: Instant, current: u64, replayed: u64) -> Duration {
        if self.samples.back().is_none_or(|(_, lsn)| *lsn < current) {
            self.samples.push_back((now, current));
        }
        while self
            .samples
            .front()
            .is_some_and(|(_, lsn)| *lsn <= replayed)
        {
            self.samples.pop_front();
        }
        if self.samples.len() > LAG_SAMPLES_MAX {
            // Keep the oldest (it defines the lag) and every other one after it.
            let mut kept = VecDeque::with_capacity(LAG_SAMPLES_MAX / 2 + 1);
            for (i, s) in self.samples.iter().enumerate() {
                if i == 0 || i % 2 == 0 {
                    kept.push_back(*s);
                }
            }
            self.samples = kept;
        }
        match self.samples.front() {
            Some((t, _)) if current > replayed => now.saturating_duration_since(*t),
            _ => Duration::ZERO,
        }
    }
}

struct Runner<'a> {
    client: &'a Client,
    state: &'a Ident,
    migration: &'a str,
    spec: &'a BackfillSpec,
    opts: &'a BackfillOptions,
    info: TableInfo,
    table: String,
    bypass: TriggerBypass,
    histogram: Histogram<u64>,
    started: Instant,
    paused: Duration,
    paused_before: f64,
    rows_done: u64,
    rows_updated: u64,
    rows_this_run: u64,
    batches: u64,
    batch_size: u32,
    lock_retries: u32,
    lag_clock: LagClock,
    lag_unmeasured: u32,
    position: Position,
}

impl<'a> Runner<'a> {
    fn new(
        client: &'a Client,
        state: &'a Ident,
        migration: &'a str,
        spec: &'a BackfillSpec,
        opts: &'a BackfillOptions,
        info: TableInfo,
    ) -> Runner<'a> {
        let bypass = match opts.bypass {
            TriggerBypass::Auto if info.fk_on_targets => TriggerBypass::Setting,
            other => other,
        };
        let position = match spec.key {
            BackfillKey::Columns(_) => Position::Keyset { last: None },
            BackfillKey::Ctid => Position::Ctid {
                next_page: 0,
                total_pages: info.pages,
                relfilenode: info.relfilenode,
            },
        };
        Runner {
            client,
            state,
            migration,
            spec,
            opts,
            table: spec.table.to_string(),
            info,
            bypass,
            // 1 µs .. 1 h, 3 significant digits: a few tens of kB whatever the table size.
            histogram: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("constant histogram bounds are valid"),
            started: Instant::now(),
            paused: Duration::ZERO,
            paused_before: 0.0,
            rows_done: 0,
            rows_updated: 0,
            rows_this_run: 0,
            batches: 0,
            batch_size: opts.batch_size.unwrap_or(opts.initial_batch_size).max(1),
            lock_retries: 0,
            lag_clock: LagClock::default(),
            lag_unmeasured: 0,
            position,
        }
    }

    fn cp(&self) -> CheckpointKey<'_> {
        CheckpointKey {
            state: self.state,
            migration: self.migration,
            table: &self.spec.table,
            pass: self.spec.pass,
        }
    }

    fn fingerprint(&self) -> String {
        let spec = serde_json::to_string(self.spec).unwrap_or_default();
        format!("{spec} attnums={:?}", self.info.target_attnums)
    }

    /// Creates or reads the checkpoint. Returns (resumed, already done).
    async fn checkpoint(&mut self) -> Result<(bool, bool), BackfillError> {
        let cp = self.cp();
        let key_columns = match &self.spec.key {
            BackfillKey::Columns(cols) => format!(
                "ARRAY[{}]::text[]",
                cols.iter()
                    .map(|c| Literal::new(c.as_str()).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            BackfillKey::Ctid => "NULL".to_string(),
        };
        let (total_pages, relfilenode) = match &self.spec.key {
            BackfillKey::Ctid => (
                self.info.pages.to_string(),
                self.info.relfilenode.to_string(),
            ),
            BackfillKey::Columns(_) => ("NULL".to_string(), "NULL".to_string()),
        };
        let estimate = if self.info.reltuples >= 0.0 {
            format!("{}", self.info.reltuples.round() as i64)
        } else {
            "NULL".to_string()
        };
        let range_key = self.range_key().cloned();
        let range_columns = range_key.is_some() && self.state_has_range_columns().await?;
        let (reset_bounds, bounds) = if range_columns {
            (
                ", key_min = NULL, key_max = NULL",
                "key_min::text, key_max::text",
            )
        } else {
            ("", "NULL, NULL")
        };
        let fingerprint = Literal::new(self.fingerprint());
        let fresh = format!(
            "fingerprint = {fingerprint}, key_columns = {key_columns}, last_key = NULL, \
             last_page = CASE WHEN {total_pages}::bigint IS NULL THEN NULL ELSE 0 END, \
             total_pages = {total_pages}, relfilenode = {relfilenode}, rows_done = 0, \
             rows_updated = 0, rows_estimate = {estimate}, batches = 0, batch_size = NULL, \
             rate = NULL, batch_p50_ms = NULL, batch_p99_ms = NULL, paused_seconds = 0, \
             pause_reason = NULL, status = 'running', error = NULL, started_at = now(), \
             updated_at = now(), finished_at = NULL{reset_bounds}"
        );
        let sql = format!(
            "INSERT INTO {t} (migration, table_schema, table_name, pass, fingerprint, key_columns, \
             last_page, total_pages, relfilenode, rows_estimate) VALUES ({m}, {s}, {n}, {pass}, \
             {fingerprint}, {key_columns}, CASE WHEN {total_pages}::bigint IS NULL THEN NULL ELSE 0 END, \
             {total_pages}, {relfilenode}, {estimate}) \
             ON CONFLICT (migration, table_schema, table_name, pass) DO NOTHING;\n\
             UPDATE {t} SET {fresh} WHERE {filter} AND fingerprint <> {fingerprint};\n\
             SELECT array_to_json(last_key)::text, last_page, total_pages, relfilenode, rows_done, \
             rows_updated, status, paused_seconds, batches, batch_size, {bounds} FROM {t} \
             WHERE {filter}",
            t = cp.table(),
            m = Literal::new(self.migration),
            s = Literal::new(self.spec.table.schema.as_str()),
            n = Literal::new(self.spec.table.name.as_str()),
            pass = Literal::new(self.spec.pass.as_str()),
            filter = cp.filter(),
        );
        let messages = self
            .client
            .simple_query(&sql)
            .await
            .map_err(|source| state_error("reading the checkpoint", source))?;
        let row = rows(&messages)
            .into_iter()
            .next()
            .ok_or_else(|| self.protocol("no checkpoint row"))?;
        let last_key: Option<Vec<String>> = match row.get(0) {
            Some(json) => Some(
                serde_json::from_str::<Vec<String>>(json)
                    .map_err(|e| self.protocol(&format!("checkpoint key {json}: {e}")))?,
            ),
            None => None,
        };
        let num = |i: usize| -> Option<i64> { row.get(i).and_then(|v| v.parse().ok()) };
        self.rows_done = num(4).unwrap_or(0).max(0) as u64;
        self.rows_updated = num(5).unwrap_or(0).max(0) as u64;
        let status = row.get(6).unwrap_or("running").to_string();
        self.paused_before = row.get(7).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let batches_before = num(8).unwrap_or(0);
        if self.opts.batch_size.is_none() {
            if let Some(b) = num(9).filter(|b| *b > 0) {
                // Continue at the size the last run had settled on.
                self.batch_size = b as u32;
            }
        }
        let stored_bounds = num(10).zip(num(11));
        // Every key up to `last_key` is done, whichever walk wrote it: a keyset walk stores the
        // last key it walked, a value-range walk the last key value it covered (or just before
        // the next key it found). So a checkpoint of either resumes with either; one that is
        // not a single integer (never written for such a key) goes on as a keyset walk.
        let range_last = match (&range_key, &last_key) {
            (None, _) => None,
            (Some(_), None) => Some(None),
            (Some(_), Some(values)) => match values.as_slice() {
                [v] => v.parse::<i64>().ok().map(Some),
                _ => None,
            },
        };
        self.position = match (&self.spec.key, range_key, range_last) {
            (BackfillKey::Columns(_), Some(key), Some(last)) => {
                let (min, max) = match stored_bounds {
                    Some(bounds) => Some(bounds),
                    None => self.key_bounds(&key, range_columns).await?,
                }
                .unwrap_or((0, -1));
                let next = match last {
                    Some(l) => l.checked_add(1),
                    None => Some(min),
                };
                Position::Range(RangeWalk::new(next, min, max))
            }
            (BackfillKey::Columns(_), ..) => Position::Keyset { last: last_key },
            (BackfillKey::Ctid, ..) => Position::Ctid {
                next_page: num(1).unwrap_or(0),
                total_pages: num(2).unwrap_or(self.info.pages),
                relfilenode: num(3).map(|r| r as u32).unwrap_or(self.info.relfilenode),
            },
        };
        Ok((batches_before > 0 || self.rows_done > 0, status == "done"))
    }

    /// Whether any statement other than a backfill's wrote the table during its write window
    /// (the window's sequence was bumped). Asked by the catch-up pass, after the dual-write
    /// trigger is installed: every writer of the window has ended by then (the trigger's lock
    /// waited for them), and every one bumped the sequence before writing a row. A sequence
    /// that is gone (dropped by hand) answers yes: the scan is the safe side.
    async fn written_during_window(&self) -> Result<bool, BackfillError> {
        let Some(window) = &self.spec.window else {
            return Ok(true);
        };
        // `pg_sequence_last_value` is NULL for a sequence never bumped (and for no sequence).
        let row = self
            .client
            .query_one(
                "SELECT to_regclass($1) IS NULL OR pg_sequence_last_value(to_regclass($1)) IS NOT NULL",
                &[&window.writes.to_string()],
            )
            .await
            .map_err(|source| db(&self.table, "reading the write window", source))?;
        Ok(row.get::<_, bool>(0))
    }

    /// The key a value-range walk goes by, when this run walks by value ranges.
    fn range_key(&self) -> Option<&IntKey> {
        match self.opts.key_walk {
            KeyWalk::Auto => self.info.int_key.as_ref(),
            KeyWalk::Keyset => None,
        }
    }

    /// Whether the state schema's `backfills` has the columns of a value-range walk (a state
    /// schema made by an older pgbaton, not initialized again since, does not).
    async fn state_has_range_columns(&self) -> Result<bool, BackfillError> {
        let row = self
            .client
            .query_one(
                "SELECT count(*) = 2 FROM pg_attribute
                  WHERE attrelid = to_regclass($1) AND attname IN ('key_min', 'key_max')
                    AND NOT attisdropped",
                &[&self.cp().table()],
            )
            .await
            .map_err(|source| state_error("reading the catalog", source))?;
        Ok(row.get(0))
    }

    /// The key's min and max now (from the ends of its index), or `None` for an empty table;
    /// stored in the checkpoint when it has the columns, so a resumed run ends where this one
    /// would have. Where it does not, a resumed run reads them again: as correct (every row
    /// beyond the first max was written through the dual-write trigger), a little more work.
    async fn key_bounds(
        &self,
        key: &IntKey,
        store: bool,
    ) -> Result<Option<(i64, i64)>, BackfillError> {
        let k = &key.column;
        let sql = format!(
            "SELECT min({k})::int8, max({k})::int8 FROM {t}",
            t = self.spec.table
        );
        let row = self
            .client
            .query_one(&sql, &[])
            .await
            .map_err(|source| db(&self.table, "reading the key's bounds", source))?;
        let bounds = row
            .get::<_, Option<i64>>(0)
            .zip(row.get::<_, Option<i64>>(1));
        if let (Some((min, max)), true) = (bounds, store) {
            let sql = format!(
                "UPDATE {} SET key_min = {min}, key_max = {max} WHERE {}",
                self.cp().table(),
                self.cp().filter()
            );
            self.client
                .batch_execute(&sql)
                .await
                .map_err(|source| state_error("writing the checkpoint", source))?;
        }
        Ok(bounds)
    }

    fn protocol(&self, detail: &str) -> BackfillError {
        BackfillError::Protocol {
            table: self.table.clone(),
            detail: detail.to_string(),
        }
    }

    async fn run(
        mut self,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<BackfillOutcome, BackfillError> {
        let (resumed, already_done) = self.checkpoint().await?;
        if already_done {
            let progress = self.progress(ProgressState::Done, 0);
            on_progress(&progress);
            return Ok(self.outcome(resumed, true));
        }
        if self.spec.pass == BackfillPass::CatchUp && !self.written_during_window().await? {
            // Nobody wrote the table while the fill ran without the trigger: nothing to catch up.
            self.position = Position::Ctid {
                next_page: 0,
                total_pages: 0,
                relfilenode: self.info.relfilenode,
            };
            self.finish().await?;
            let progress = self.progress(ProgressState::Done, 0);
            on_progress(&progress);
            return Ok(self.outcome(resumed, false));
        }
        let lag = self.opts.max_replication_lag.is_some();
        let controls_query = controls_sql(self.state, &self.spec.table.schema, lag);
        let mut controls = self.read_controls(&controls_query, lag).await?;
        let mut consecutive_lock_failures = 0u32;
        loop {
            controls = self
                .wait_while_paused(controls, &controls_query, lag, on_progress)
                .await?;
            self.refresh_after_rewrite().await?;
            let limit = self.effective_batch_size(&controls);
            let stats = self.stats(limit);
            let Some((statement, batch)) = self.batch_statement(limit, &stats) else {
                break;
            };
            let index_walk = !matches!(batch, Batch::Ctid { .. });
            let mut begin = batch_begin(self.opts, self.bypass, index_walk);
            if self.bypass == TriggerBypass::Setting {
                // The trigger lets this transaction skip it only once its id is recorded.
                let _ = writeln!(
                    begin,
                    "INSERT INTO {}.backfill_xids (migration, table_schema, table_name, xid) \
                     VALUES ({}, {}, {}, pg_current_xact_id()::xid);",
                    self.state,
                    Literal::new(self.migration),
                    Literal::new(self.spec.table.schema.as_str()),
                    Literal::new(self.spec.table.name.as_str()),
                );
            }
            let batch_start = Instant::now();
            let messages = match self.execute(&begin, &statement, &controls_query).await {
                Ok(messages) => messages,
                Err(e) => {
                    let _ = self.client.batch_execute("ROLLBACK").await;
                    let code = e.code().cloned();
                    if code == Some(SqlState::INSUFFICIENT_PRIVILEGE)
                        && self.bypass == TriggerBypass::Auto
                        && e.as_db_error()
                            .is_some_and(|d| d.message().contains("session_replication_role"))
                    {
                        // Not a superuser: let the trigger's WHEN clause skip instead.
                        self.bypass = TriggerBypass::Setting;
                        continue;
                    }
                    if crate::pg::is_retryable_lock_error(&e)
                        || crate::pg::is_serialization_failure(&e)
                    {
                        consecutive_lock_failures += 1;
                        self.lock_retries += 1;
                        let message = describe(&e);
                        if self
                            .opts
                            .max_lock_retries
                            .is_some_and(|max| consecutive_lock_failures > max)
                        {
                            self.mark_failed(&message).await;
                            return Err(BackfillError::LockRetries {
                                table: self.table.clone(),
                                attempts: consecutive_lock_failures,
                                last: message,
                                rows_done: self.rows_done,
                            });
                        }
                        // Smaller batches hold fewer row locks and meet fewer of the app's.
                        if self.opts.batch_size.is_none() {
                            self.batch_size =
                                (self.batch_size / 2).max(self.opts.min_batch_size.max(1));
                        }
                        let backoff = backoff(consecutive_lock_failures);
                        let progress = self.progress(
                            ProgressState::LockWait {
                                attempt: consecutive_lock_failures,
                                backoff_ms: backoff.as_millis() as u64,
                                message,
                            },
                            limit,
                        );
                        on_progress(&progress);
                        self.set_status("waiting", Some("lock timeout, retrying"))
                            .await;
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                    let error = db(&self.table, "running a batch", e);
                    self.mark_failed(&error.to_string()).await;
                    return Err(error);
                }
            };
            let elapsed = batch_start.elapsed();
            consecutive_lock_failures = 0;
            if self.bypass == TriggerBypass::Auto {
                self.bypass = TriggerBypass::ReplicationRole;
            }
            let result = rows(&messages);
            let (batch_row, controls_row) = match result.as_slice() {
                [batch, controls] => (*batch, *controls),
                _ => return Err(self.protocol(&format!("{} result rows", result.len()))),
            };
            controls = Controls::parse(controls_row, lag);
            let walked = self.apply_batch(batch_row, batch)?;
            self.batches += 1;
            self.rows_this_run += walked;
            let _ = self.histogram.record((elapsed.as_micros() as u64).max(1));
            if self.opts.batch_size.is_none() {
                let (lo, hi) = self.bounds(&controls);
                let target = self.opts.target_batch_time;
                self.batch_size = match batch {
                    // The rows of a value range are known only afterwards.
                    Batch::Range(_) => adapt_to_rows(limit, walked, elapsed, target, lo, hi),
                    Batch::Keyset | Batch::Ctid { .. } => adapt(limit, elapsed, target, lo, hi),
                };
            }
            let finished = self.is_finished(walked);
            let progress = self.progress(ProgressState::Running, limit);
            on_progress(&progress);
            if finished {
                break;
            }
            self.throttle(walked, elapsed, &controls).await;
            if !self.opts.batch_delay.is_zero() {
                tokio::time::sleep(self.opts.batch_delay).await;
            }
        }
        self.finish().await?;
        let progress = self.progress(ProgressState::Done, self.batch_size);
        on_progress(&progress);
        Ok(self.outcome(resumed, false))
    }

    /// After a table rewrite (see [`Runner::apply_batch`]): the new page count, and the
    /// checkpoint back at page 0.
    async fn refresh_after_rewrite(&mut self) -> Result<(), BackfillError> {
        let (cp_table, cp_filter) = (self.cp().table(), self.cp().filter());
        let Position::Ctid {
            next_page,
            total_pages,
            relfilenode,
        } = &mut self.position
        else {
            return Ok(());
        };
        if *total_pages >= 0 {
            return Ok(());
        }
        let sql = format!(
            "SELECT pg_relation_size({r}) / current_setting('block_size')::bigint, pg_relation_filenode({r})",
            r = self.spec.table.regclass()
        );
        let row = self
            .client
            .query_one(&sql, &[])
            .await
            .map_err(|source| db(&self.table, "reading the table size", source))?;
        *total_pages = row.get(0);
        *relfilenode = row.get::<_, Option<u32>>(1).unwrap_or(*relfilenode);
        *next_page = 0;
        let sql = format!(
            "UPDATE {cp_table} SET last_page = 0, total_pages = {total_pages}, \
             relfilenode = {relfilenode}, updated_at = now() WHERE {cp_filter}"
        );
        self.client
            .batch_execute(&sql)
            .await
            .map_err(|source| state_error("writing the checkpoint", source))
    }

    /// The next batch's statement (without its transaction) and what it covers, or `None` when
    /// the walk is over. `limit` is the rows target.
    fn batch_statement(&self, limit: u32, stats: &Stats) -> Option<(BatchSql, Batch)> {
        let cp = self.cp();
        match (&self.position, &self.spec.key) {
            (Position::Keyset { last }, BackfillKey::Columns(key)) => Some((
                BatchSql::Single(keyset_batch_sql(
                    self.spec,
                    key,
                    &cp,
                    last.as_deref(),
                    limit,
                    stats,
                )),
                Batch::Keyset,
            )),
            (Position::Range(walk), _) => {
                let key = self.range_key()?;
                let range = walk.next_batch(limit)?;
                Some((
                    range_batch_sql(self.spec, key, &cp, range, stats),
                    Batch::Range(range),
                ))
            }
            (
                Position::Ctid {
                    next_page,
                    total_pages,
                    ..
                },
                _,
            ) => {
                if next_page >= total_pages {
                    return None;
                }
                let pages = ((limit as f64 / self.info.density).ceil() as i64).max(1);
                let to = (next_page + pages).min(*total_pages);
                Some((
                    ctid_batch_sql(self.spec, &cp, *next_page, to, stats),
                    Batch::Ctid { to },
                ))
            }
            // A keyset position with a ctid spec cannot happen: the position follows the key.
            (Position::Keyset { .. }, BackfillKey::Ctid) => None,
        }
    }

    /// Runs one batch transaction (`begin` holds `BEGIN` and its settings) and the controls
    /// query after it; returns the messages of the round trip that ends with the batch's result
    /// row and the controls. An error leaves the transaction to the caller's `ROLLBACK`.
    async fn execute(
        &self,
        begin: &str,
        statement: &BatchSql,
        controls: &str,
    ) -> Result<Vec<SimpleQueryMessage>, tokio_postgres::Error> {
        match statement {
            BatchSql::Single(sql) => {
                self.client
                    .simple_query(&format!("{begin}{sql};\nCOMMIT;\n{controls};"))
                    .await
            }
            BatchSql::Split {
                update,
                prelude,
                checkpoint,
            } => {
                let first = self
                    .client
                    .simple_query(&format!("{begin}{update};"))
                    .await?;
                let updated = first
                    .iter()
                    .rev()
                    .find_map(|m| match m {
                        SimpleQueryMessage::CommandComplete(n) => Some(*n),
                        _ => None,
                    })
                    .unwrap_or(0);
                self.client
                    .simple_query(&format!(
                        "{};\nCOMMIT;\n{controls};",
                        BatchSql::finish(prelude, checkpoint.as_ref(), updated)
                    ))
                    .await
            }
        }
    }

    /// Takes a batch's result into the position and counters; returns the rows walked.
    fn apply_batch(&mut self, row: &SimpleQueryRow, batch: Batch) -> Result<u64, BackfillError> {
        let num = |i: usize| -> Option<u64> { row.get(i).and_then(|v| v.parse().ok()) };
        match &mut self.position {
            Position::Range(walk) => {
                let updated = num(0).ok_or_else(|| protocol(&self.table, "batch row count"))?;
                if num(1) != Some(1) {
                    return Err(protocol(&self.table, "the checkpoint row is gone"));
                }
                let key = |i: usize| -> Result<Option<i64>, BackfillError> {
                    row.get(i)
                        .map(|v| {
                            v.parse::<i64>()
                                .map_err(|_| protocol(&self.table, &format!("key value {v:?}")))
                        })
                        .transpose()
                };
                let next_key = key(2)?;
                let hi = key(3)?.ok_or_else(|| protocol(&self.table, "no batch bound"))?;
                let Batch::Range(range) = batch else {
                    return Err(protocol(&self.table, "a value range without its batch"));
                };
                walk.advance(range.lo, hi, updated, next_key);
                self.rows_done += updated;
                self.rows_updated += updated;
                Ok(updated)
            }
            Position::Keyset { last } => {
                let walked = num(0).ok_or_else(|| protocol(&self.table, "batch row count"))?;
                let updated = num(1).unwrap_or(0);
                if num(2) != Some(1) {
                    return Err(protocol(&self.table, "the checkpoint row is gone"));
                }
                if walked > 0 {
                    let key_len = match &self.spec.key {
                        BackfillKey::Columns(k) => k.len(),
                        BackfillKey::Ctid => 0,
                    };
                    let mut values = Vec::with_capacity(key_len);
                    for i in 0..key_len {
                        values.push(
                            row.get(3 + i)
                                .ok_or_else(|| protocol(&self.table, "a NULL key value"))?
                                .to_string(),
                        );
                    }
                    *last = Some(values);
                }
                self.rows_done += walked;
                self.rows_updated += updated;
                Ok(walked)
            }
            Position::Ctid {
                next_page,
                total_pages,
                relfilenode,
            } => {
                let updated = num(0).ok_or_else(|| protocol(&self.table, "batch row count"))?;
                if num(1) != Some(1) {
                    return Err(protocol(&self.table, "the checkpoint row is gone"));
                }
                let now_filenode = row
                    .get(2)
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(*relfilenode);
                if let Batch::Ctid { to } = batch {
                    *next_page = to;
                }
                self.rows_done += updated;
                self.rows_updated += updated;
                if now_filenode != *relfilenode {
                    // The table was rewritten: every ctid changed. Walk it again from the start
                    // (up to its new size), on the next batch.
                    *relfilenode = now_filenode;
                    *next_page = 0;
                    *total_pages = -1;
                }
                Ok(updated)
            }
        }
    }

    fn is_finished(&self, walked: u64) -> bool {
        match &self.position {
            Position::Keyset { .. } => walked == 0,
            Position::Range(walk) => walk.next.is_none(),
            Position::Ctid {
                next_page,
                total_pages,
                ..
            } => *total_pages >= 0 && next_page >= total_pages,
        }
    }

    /// Rows for the next batch, within the bounds the throttle allows.
    fn effective_batch_size(&self, controls: &Controls) -> u32 {
        match self.opts.batch_size {
            Some(pinned) => pinned.max(1),
            None => {
                let (lo, hi) = self.bounds(controls);
                self.batch_size.clamp(lo, hi)
            }
        }
    }

    fn rate_limit(&self, controls: &Controls) -> Option<f64> {
        match (self.opts.max_rows_per_second, controls.max_rows_per_second) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
        .filter(|r| *r > 0.0)
    }

    /// Adaptive bounds; a rows-per-second ceiling caps a batch at one second's worth.
    fn bounds(&self, controls: &Controls) -> (u32, u32) {
        let mut hi = self.opts.max_batch_size.max(1);
        if let Some(rps) = self.rate_limit(controls) {
            hi = hi.min((rps.ceil() as u32).max(1));
        }
        (self.opts.min_batch_size.max(1).min(hi), hi)
    }

    async fn throttle(&self, rows: u64, elapsed: Duration, controls: &Controls) {
        if let Some(rps) = self.rate_limit(controls) {
            let min = Duration::from_secs_f64(rows as f64 / rps);
            if min > elapsed {
                tokio::time::sleep(min - elapsed).await;
            }
        }
    }

    async fn read_controls(&self, sql: &str, lag: bool) -> Result<Controls, BackfillError> {
        let messages = self
            .client
            .simple_query(sql)
            .await
            .map_err(|source| state_error("reading controls", source))?;
        let rows = rows(&messages);
        let row = rows
            .first()
            .ok_or_else(|| self.protocol("no controls row"))?;
        Ok(Controls::parse(row, lag))
    }

    /// Why the backfill must wait now, if it must.
    fn pause_reason(&mut self, controls: &Controls) -> Option<PauseReason> {
        self.lag_unmeasured = controls.unmeasured;
        if controls.paused {
            return Some(PauseReason::Operator);
        }
        let ceiling = self.opts.max_replication_lag?;
        let (current, replayed) = (controls.current_lsn?, controls.min_replay_lsn?);
        let lag_bytes = current.saturating_sub(replayed);
        let age = self.lag_clock.observe(Instant::now(), current, replayed);
        let lag_seconds = age
            .as_secs_f64()
            .max(controls.replay_lag_seconds.unwrap_or(0.0));
        let over = match ceiling {
            LagCeiling::Bytes(max) => lag_bytes > max,
            LagCeiling::Time(max) => lag_seconds > max.as_secs_f64(),
        };
        over.then_some(PauseReason::ReplicationLag {
            lag_bytes: Some(lag_bytes),
            lag_seconds: Some(lag_seconds),
        })
    }

    async fn wait_while_paused(
        &mut self,
        mut controls: Controls,
        sql: &str,
        lag: bool,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<Controls, BackfillError> {
        let mut last_reason: Option<PauseReason> = None;
        while let Some(reason) = self.pause_reason(&controls) {
            let since = Instant::now();
            let changed = last_reason.as_ref().map(std::mem::discriminant)
                != Some(std::mem::discriminant(&reason));
            let progress = self.progress(ProgressState::Paused(reason.clone()), self.batch_size);
            if changed {
                on_progress(&progress);
            }
            self.set_status("paused", Some(&reason.describe())).await;
            last_reason = Some(reason);
            tokio::time::sleep(self.opts.poll_interval).await;
            self.paused += since.elapsed();
            controls = self.read_controls(sql, lag).await?;
        }
        if last_reason.is_some() {
            let progress = self.progress(ProgressState::Running, self.batch_size);
            on_progress(&progress);
        }
        Ok(controls)
    }

    /// Best effort: status for `pgbaton status` while not running batches.
    async fn set_status(&self, status: &str, reason: Option<&str>) {
        let sql = format!(
            "UPDATE {} SET status = {}, pause_reason = {}, paused_seconds = {}, updated_at = now() WHERE {}",
            self.cp().table(),
            Literal::new(status),
            reason.map(|r| Literal::new(r).to_string()).unwrap_or_else(|| "NULL".into()),
            finite(self.paused_before + self.paused.as_secs_f64()),
            self.cp().filter()
        );
        let _ = self.client.batch_execute(&sql).await;
    }

    async fn mark_failed(&self, message: &str) {
        let sql = format!(
            "UPDATE {} SET status = 'failed', error = {}, updated_at = now() WHERE {}",
            self.cp().table(),
            Literal::new(message),
            self.cp().filter()
        );
        let _ = self.client.batch_execute(&sql).await;
    }

    async fn finish(&mut self) -> Result<(), BackfillError> {
        let stats = self.stats(self.batch_size);
        let sql = format!(
            "UPDATE {} SET status = 'done', finished_at = now(), updated_at = now(), \
             rate = {}, batch_p50_ms = {}, batch_p99_ms = {}, paused_seconds = {}, \
             pause_reason = NULL, error = NULL{} WHERE {}",
            self.cp().table(),
            finite(stats.rate),
            finite(stats.p50_ms),
            finite(stats.p99_ms),
            finite(stats.paused_seconds),
            match &self.position {
                Position::Ctid { total_pages, .. } => format!(", last_page = {total_pages}"),
                Position::Keyset { .. } | Position::Range(_) => String::new(),
            },
            self.cp().filter()
        );
        self.client
            .batch_execute(&sql)
            .await
            .map_err(|source| state_error("marking the backfill done", source))?;
        Ok(())
    }

    fn stats(&self, batch_size: u32) -> Stats {
        Stats {
            batch_size,
            rate: self.rate(),
            p50_ms: self.quantile_ms(0.5),
            p99_ms: self.quantile_ms(0.99),
            paused_seconds: self.paused_before + self.paused.as_secs_f64(),
        }
    }

    fn rate(&self) -> f64 {
        let active = self
            .started
            .elapsed()
            .saturating_sub(self.paused)
            .as_secs_f64();
        if active > 0.0 {
            self.rows_this_run as f64 / active
        } else {
            0.0
        }
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        if self.histogram.is_empty() {
            0.0
        } else {
            self.histogram.value_at_quantile(q) as f64 / 1000.0
        }
    }

    fn progress(&self, state: ProgressState, batch_size: u32) -> Progress {
        let done = state == ProgressState::Done;
        let rows_estimate = (self.info.reltuples > 0.0).then(|| self.info.reltuples.round() as u64);
        let walked = match &self.position {
            Position::Ctid {
                next_page,
                total_pages,
                ..
            } => Some((*next_page as f64, *total_pages as f64)),
            Position::Range(walk) => Some(walk.position()),
            Position::Keyset { .. } => None,
        };
        let fraction = estimate_fraction(done, self.rows_done, rows_estimate, walked);
        let rate = self.rate();
        Progress {
            table: self.table.clone(),
            pass: self.spec.pass,
            state,
            rows_done: self.rows_done,
            rows_updated: self.rows_updated,
            rows_estimate,
            fraction,
            rate,
            eta_seconds: eta(done, fraction, self.rows_done, rows_estimate, Some(rate)),
            batch_size,
            batches: self.batches,
            batch_p50_ms: self.quantile_ms(0.5),
            batch_p99_ms: self.quantile_ms(0.99),
            paused_seconds: self.paused_before + self.paused.as_secs_f64(),
            elapsed_seconds: self.started.elapsed().as_secs_f64(),
            lag_unmeasured: self.lag_unmeasured,
        }
    }

    fn outcome(&self, resumed: bool, already_done: bool) -> BackfillOutcome {
        BackfillOutcome {
            rows_done: self.rows_done,
            rows_updated: self.rows_updated,
            batches: self.batches,
            elapsed: self.started.elapsed(),
            paused: self.paused,
            resumed,
            already_done,
            bypass: self.bypass,
            lock_retries: self.lock_retries,
            batch_p50_ms: self.quantile_ms(0.5),
            batch_p99_ms: self.quantile_ms(0.99),
        }
    }
}

/// Exponential backoff with full jitter: up to 50 ms × 2^attempt, at most 5 s.
fn backoff(attempt: u32) -> Duration {
    crate::pg::jittered_backoff(Duration::from_millis(50), Duration::from_secs(5), attempt)
}

/// The data rows of a simple-query reply, in order.
fn rows(messages: &[SimpleQueryMessage]) -> Vec<&SimpleQueryRow> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::RawSql;
    use crate::step::Assignment;

    fn spec(key: BackfillKey, scope: Vec<(&str, &str)>) -> BackfillSpec {
        BackfillSpec {
            table: QualName::new("public", "users"),
            key,
            scope: scope
                .into_iter()
                .map(|(a, b)| (Ident::new(a), Ident::new(b)))
                .collect(),
            assignments: vec![Assignment {
                target: Ident::new("_pgbaton_new_email"),
                expr: RawSql::new("lower(email)"),
            }],
            marker: Ident::new("_pgbaton_touched"),
            window: None,
            pass: BackfillPass::Fill,
        }
    }

    #[test]
    fn identity_scope_sets_directly() {
        let s = spec(BackfillKey::Ctid, vec![("email", "email")]);
        assert_eq!(set_list(&s), "\"_pgbaton_new_email\" = (lower(email))");
    }

    #[test]
    fn renamed_scope_uses_a_row() {
        let s = spec(BackfillKey::Ctid, vec![("email", "mail")]);
        assert_eq!(
            set_list(&s),
            "\"_pgbaton_new_email\" = (SELECT (lower(email)) FROM (SELECT \"public\".\"users\".\"mail\" AS \"email\") AS _pgbaton_scope)"
        );
    }

    #[test]
    fn keyset_sql_bounds_the_update_by_the_key_range() {
        let s = spec(
            BackfillKey::Columns(vec![Ident::new("a"), Ident::new("b")]),
            vec![],
        );
        let state = Ident::new("pgbaton");
        let cp = checkpoint_key(&state, &s);
        let last = vec!["1".to_string(), "it's".to_string()];
        let sql = keyset_batch_sql(
            &s,
            &[Ident::new("a"), Ident::new("b")],
            &cp,
            Some(&last),
            500,
            &Stats::default(),
        );
        let sql = batch_transaction(
            &BackfillOptions::default(),
            TriggerBypass::Setting,
            true,
            &sql,
        );
        assert!(sql.contains("SET LOCAL enable_seqscan = off;"));
        assert!(sql.starts_with(
            "BEGIN ISOLATION LEVEL READ COMMITTED;\nSET LOCAL lock_timeout = '500ms';"
        ));
        assert!(sql.contains("SET LOCAL pgbaton.backfill = 'on';"));
        assert!(sql
            .contains("(\"public\".\"users\".\"a\", \"public\".\"users\".\"b\") > ('1', 'it''s')"));
        assert!(sql.contains(
            "\"public\".\"users\".\"a\" >= (SELECT \"a\" FROM _pgbaton_start) AND \"public\".\"users\".\"a\" <= (SELECT \"a\" FROM _pgbaton_end)"
        ));
        assert!(
            sql.contains("<= ((SELECT \"a\" FROM _pgbaton_end), (SELECT \"b\" FROM _pgbaton_end))")
        );
        assert!(sql.contains("\"public\".\"users\".\"_pgbaton_touched\" IS NOT TRUE"));
        assert!(sql.contains("LIMIT 500"));
        assert!(sql.trim_end().ends_with("COMMIT;"));
    }

    /// The checkpoint of migration `m1`'s fill of `s`'s table.
    fn checkpoint_key<'a>(state: &'a Ident, s: &'a BackfillSpec) -> CheckpointKey<'a> {
        CheckpointKey {
            state,
            migration: "m1",
            table: &s.table,
            pass: BackfillPass::Fill,
        }
    }

    /// The SQL of a batch as it runs: the update, then the checkpoint given `n` rows updated.
    fn whole(sql: &BatchSql, n: u64) -> String {
        match sql {
            BatchSql::Single(sql) => sql.clone(),
            BatchSql::Split {
                update,
                prelude,
                checkpoint,
            } => format!(
                "{update};\n{}",
                BatchSql::finish(prelude, checkpoint.as_ref(), n)
            ),
        }
    }

    #[test]
    fn a_write_window_changes_what_each_pass_updates() {
        let mut s = spec(BackfillKey::Ctid, vec![]);
        s.window = Some(crate::triggers::write_window(&s.table));
        let state = Ident::new("pgbaton");
        let cp = checkpoint_key(&state, &s);
        // The fill: every row but those its own batches moved ahead of it, no marker (it does
        // not exist yet), its xid recorded.
        let fill = whole(&ctid_batch_sql(&s, &cp, 0, 10, &Stats::default()), 3);
        assert!(!fill.contains("_pgbaton_touched"), "{fill}");
        assert!(fill.contains("AND NOT EXISTS (SELECT 1 FROM \"pgbaton\".backfill_xids"));
        assert!(fill.contains(
            "INSERT INTO \"pgbaton\".backfill_xids (migration, table_schema, table_name, xid) \
             VALUES ('m1', 'public', 'users', pg_current_xact_id()::xid);"
        ));
        // The catch-up: rows no batch wrote last and no live write marked.
        let s = BackfillSpec {
            pass: BackfillPass::CatchUp,
            ..s.clone()
        };
        let cp = CheckpointKey {
            pass: BackfillPass::CatchUp,
            ..checkpoint_key(&state, &s)
        };
        let catch_up = whole(&ctid_batch_sql(&s, &cp, 0, 10, &Stats::default()), 3);
        assert!(catch_up.contains(
            "\"public\".\"users\".\"_pgbaton_touched\" IS NOT TRUE AND NOT EXISTS (SELECT 1 FROM \
             \"pgbaton\".backfill_xids AS _pgbaton_x WHERE _pgbaton_x.migration = 'm1' AND \
             _pgbaton_x.table_schema = 'public' AND _pgbaton_x.table_name = 'users' AND \
             _pgbaton_x.xid = \"public\".\"users\".xmin)"
        ), "{catch_up}");
        assert!(catch_up.contains("pass = 'catch_up'"));
        // A keyset batch records its xid in a CTE of its one statement.
        let keyset = keyset_batch_sql(&s, &[Ident::new("id")], &cp, None, 10, &Stats::default());
        assert!(
            keyset.starts_with("WITH _pgbaton_xid AS (\n  INSERT INTO"),
            "{keyset}"
        );
    }

    #[test]
    fn ctid_sql_is_a_tid_range() {
        let s = spec(BackfillKey::Ctid, vec![]);
        let state = Ident::new("pgbaton");
        let cp = checkpoint_key(&state, &s);
        let sql = whole(&ctid_batch_sql(&s, &cp, 10, 20, &Stats::default()), 7);
        assert!(
            !sql.contains("RETURNING 1\n), _pgbaton_cp"),
            "a plain update: {sql}"
        );
        assert!(sql.contains("rows_done = rows_done + 7, rows_updated = rows_updated + 7"));
        let sql = batch_transaction(
            &BackfillOptions::default(),
            TriggerBypass::Auto,
            false,
            &sql,
        );
        assert!(!sql.contains("enable_seqscan"));
        assert!(sql.contains("ctid >= '(10,0)'::tid AND \"public\".\"users\".ctid < '(20,0)'::tid"));
        assert!(sql.contains("SET LOCAL session_replication_role = replica;"));
        assert!(sql.contains("last_page = 20"));
    }

    #[test]
    fn range_sql_has_constant_bounds_and_no_key_read() {
        let s = spec(BackfillKey::Columns(vec![Ident::new("id")]), vec![]);
        let state = Ident::new("pgbaton");
        let cp = checkpoint_key(&state, &s);
        let key = IntKey::for_type(&Ident::new("id"), "bigint").unwrap();
        let range = KeyRange {
            lo: -5,
            hi: 9_994,
            cap: None,
            end: 1_000_000,
        };
        let sql = whole(
            &range_batch_sql(&s, &key, &cp, range, &Stats::default()),
            42,
        );
        assert!(sql.starts_with("UPDATE "), "a plain update: {sql}");
        assert!(sql.contains("SELECT 42, (SELECT count(*) FROM _pgbaton_cp)"));
        let t = "\"public\".\"users\"";
        assert!(sql.contains(&format!(
            "WHERE {t}.\"id\" >= '-5' AND {t}.\"id\" <= '9994' AND {t}.\"_pgbaton_touched\" IS NOT TRUE"
        )));
        assert!(!sql.contains("ORDER BY") && !sql.contains("LIMIT"), "{sql}");
        assert!(sql.contains(&format!(
            "SELECT min({t}.\"id\") AS _pgbaton_key FROM {t} WHERE {t}.\"id\" > '9994' AND {t}.\"id\" <= '1000000'"
        )));
        assert!(sql.contains(
            "last_key = ARRAY[coalesce((SELECT _pgbaton_key - 1 FROM _pgbaton_next), '1000000')::text]"
        ));

        let capped = KeyRange {
            cap: Some(400),
            ..range
        };
        let sql = whole(
            &range_batch_sql(&s, &key, &cp, capped, &Stats::default()),
            0,
        );
        assert!(sql.starts_with("WITH _pgbaton_range AS ("), "{sql}");
        assert!(sql.contains("ORDER BY \"public\".\"users\".\"id\" OFFSET 400 LIMIT 1) - 1, '9994')::bigint AS _pgbaton_hi"));
        assert!(sql.contains(&format!(
            "{t}.\"id\" >= (SELECT _pgbaton_lo FROM _pgbaton_range) AND {t}.\"id\" <= (SELECT _pgbaton_hi FROM _pgbaton_range)"
        )));
        assert!(IntKey::for_type(&Ident::new("id"), "numeric").is_none());
    }

    #[test]
    fn range_walk_widens_over_sparse_keys_and_caps_what_it_cannot_see() {
        let mut w = RangeWalk::new(Some(1), 1, 10_000_000);
        // Unmeasured: one key value per row, never wider than the target.
        assert_eq!(
            w.next_batch(1_000),
            Some(KeyRange {
                lo: 1,
                hi: 1_000,
                cap: None,
                end: 10_000_000
            })
        );
        // Dense keys: the width stays the target.
        w.advance(1, 1_000, 1_000, Some(1_001));
        assert_eq!(
            w.next_batch(1_000).map(|r| (r.lo, r.hi)),
            Some((1_001, 2_000))
        );
        // Every 4th key: four times wider, within the slack, no key read.
        w.advance(1_001, 2_000, 250, Some(2_010));
        let r = w.next_batch(1_000).unwrap();
        assert_eq!((r.lo, r.hi, r.cap), (2_010, 6_009, None));
        // Every 1000th: a thousand times wider, past RANGE_SLACK × the target: capped at that
        // many rows, by reading the keys.
        w.advance(2_010, 6_009, 4, Some(7_000));
        let r = w.next_batch(1_000).unwrap();
        assert_eq!((r.lo, r.hi, r.cap), (7_000, 1_006_999, Some(4_000)));
        // Dense again right there: the cap held the batch to 4,000 rows, whose density is
        // that of the next batch at once.
        w.advance(7_000, 10_999, 4_000, Some(11_000));
        let r = w.next_batch(1_000).unwrap();
        assert_eq!((r.lo, r.hi, r.cap), (11_000, 11_999, None));
        // A batch with no rows at all (all marked): four times wider next, not the whole
        // table.
        let mut e = RangeWalk::new(Some(1), 1, 1_000_000);
        e.advance(1, 1_000, 1_000, Some(1_001));
        e.advance(1_001, 2_000, 0, Some(2_001));
        let r = e.next_batch(1_000).unwrap();
        assert_eq!((r.lo, r.hi, r.cap), (2_001, 6_000, None));
        e.advance(2_001, 6_000, 0, Some(6_001));
        assert_eq!(e.next_batch(1_000).unwrap().cap, Some(4_000));
        // The next key after a gap is where the next batch starts; none left: over.
        e.advance(2_001, 3_000, 1_000, Some(900_000));
        assert_eq!(e.next_batch(1_000).unwrap().lo, 900_000);
        e.advance(900_000, 901_000, 1_000, None);
        assert_eq!(e.next_batch(1_000), None);
        // The walk ends at the max at start, whatever the next key says.
        let mut m = RangeWalk::new(Some(1), 1, 1_500);
        assert_eq!(m.next_batch(1_000).map(|r| r.hi), Some(1_000));
        m.advance(1, 1_000, 1_000, Some(1_001));
        assert_eq!(m.next_batch(1_000).map(|r| r.hi), Some(1_500));
        m.advance(1_001, 1_500, 500, Some(1_501));
        assert_eq!(m.next_batch(1_000), None);
        assert_eq!(m.position(), (1_500.0, 1_500.0));
    }

    #[test]
    fn range_walk_at_the_ends_of_bigint() {
        let mut w = RangeWalk::new(Some(i64::MIN), i64::MIN, i64::MAX);
        let r = w.next_batch(200_000).unwrap();
        assert_eq!((r.lo, r.hi), (i64::MIN, i64::MIN + 199_999));
        // Two rows in the whole span: the density bottoms out, the width saturates at the end.
        w.advance(r.lo, r.hi, 1, Some(i64::MAX));
        w.advance(i64::MAX, i64::MAX, 1, None);
        assert_eq!(w.next_batch(200_000), None);
        let mut w = RangeWalk::new(Some(i64::MAX - 10), i64::MIN, i64::MAX);
        w.density = DENSITY_FLOOR;
        let r = w.next_batch(200_000).unwrap();
        assert_eq!((r.lo, r.hi), (i64::MAX - 10, i64::MAX));
        assert_eq!(r.cap, None, "11 key values cannot hold more than 11 rows");
        // The density has a floor (1e-12): a batch is at most 10^12 × its rows wide. Gaps
        // wider than that cost no empty batches either: each batch starts at the next key.
        let mut r = RangeWalk::new(Some(i64::MIN), i64::MIN, i64::MAX);
        r.density = DENSITY_FLOOR;
        let b = r.next_batch(10).unwrap();
        assert_eq!(
            (b.lo, b.hi, b.cap),
            (i64::MIN, i64::MIN + 10_000_000_000_000 - 1, Some(40))
        );
        // Resuming past the end, or from a checkpoint at the max: nothing left.
        assert_eq!(RangeWalk::new(Some(11), 1, 10).next_batch(10), None);
        assert_eq!(
            RangeWalk::new(i64::MAX.checked_add(1), 1, i64::MAX).next_batch(10),
            None
        );
    }

    #[test]
    fn range_rows_target_adapts_to_the_rows_a_batch_held() {
        let t = Duration::from_millis(100);
        let ms = Duration::from_millis;
        // A full batch at half the target time: 1.5× (the step limit).
        assert_eq!(
            adapt_to_rows(10_000, 10_000, ms(50), t, 1_000, 200_000),
            15_000
        );
        // 4× the rows in 4× the time: the rate is right, the target stays.
        assert_eq!(
            adapt_to_rows(10_000, 40_000, ms(400), t, 1_000, 200_000),
            10_000
        );
        // Too slow: halved at most.
        assert_eq!(
            adapt_to_rows(10_000, 10_000, ms(1_000), t, 1_000, 200_000),
            5_000
        );
        // A sparse batch that was fast says nothing about the rate: the target stays.
        assert_eq!(adapt_to_rows(10_000, 10, ms(2), t, 1_000, 200_000), 10_000);
        // A sparse batch that was slow anyway lowers it.
        assert_eq!(adapt_to_rows(10_000, 10, ms(300), t, 1_000, 200_000), 5_000);
        assert_eq!(adapt_to_rows(1_500, 10, ms(300), t, 1_000, 200_000), 1_000);
    }

    #[test]
    fn batch_size_adapts_smoothly() {
        let t = Duration::from_millis(100);
        assert_eq!(
            adapt(10_000, Duration::from_millis(50), t, 1_000, 200_000),
            15_000
        );
        assert_eq!(
            adapt(10_000, Duration::from_millis(400), t, 1_000, 200_000),
            5_000
        );
        assert_eq!(
            adapt(10_000, Duration::from_millis(100), t, 1_000, 200_000),
            10_000
        );
        assert_eq!(
            adapt(190_000, Duration::from_millis(1), t, 1_000, 200_000),
            200_000
        );
        assert_eq!(
            adapt(1_000, Duration::from_secs(5), t, 1_000, 200_000),
            1_000
        );
    }

    #[test]
    fn lag_ceilings_parse() {
        assert_eq!(
            "30s".parse::<LagCeiling>(),
            Ok(LagCeiling::Time(Duration::from_secs(30)))
        );
        assert_eq!(
            "500ms".parse::<LagCeiling>(),
            Ok(LagCeiling::Time(Duration::from_millis(500)))
        );
        assert_eq!(
            "64MB".parse::<LagCeiling>(),
            Ok(LagCeiling::Bytes(64 << 20))
        );
        assert_eq!("1kB".parse::<LagCeiling>(), Ok(LagCeiling::Bytes(1024)));
        assert!("fast".parse::<LagCeiling>().is_err());
        assert!("3 parsecs".parse::<LagCeiling>().is_err());
    }

    #[test]
    fn lsns_parse() {
        assert_eq!(parse_lsn("0/16B3748"), Some(0x16B3748));
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
        assert_eq!(parse_lsn("junk"), None);
    }

    #[test]
    fn lag_clock_ages_the_oldest_unreplayed_position() {
        let mut clock = LagClock::default();
        let t0 = Instant::now();
        assert_eq!(clock.observe(t0, 100, 100), Duration::ZERO);
        assert_eq!(
            clock.observe(t0 + Duration::from_secs(1), 200, 100),
            Duration::ZERO
        );
        // Replay stands still at 100: the position 200 was seen 1 s ago... and ages.
        assert_eq!(
            clock.observe(t0 + Duration::from_secs(3), 300, 100),
            Duration::from_secs(2)
        );
        // Replay reaches 250: the oldest unreplayed is 300, seen at t0+3.
        assert_eq!(
            clock.observe(t0 + Duration::from_secs(4), 300, 250),
            Duration::from_secs(1)
        );
        // Caught up.
        assert_eq!(
            clock.observe(t0 + Duration::from_secs(5), 300, 300),
            Duration::ZERO
        );
        for i in 0..10_000u64 {
            clock.observe(t0 + Duration::from_millis(6000 + i), 400 + i, 300);
        }
        assert!(clock.samples.len() <= LAG_SAMPLES_MAX);
    }

    #[test]
    fn fraction_and_eta() {
        assert_eq!(estimate_fraction(false, 50, Some(100), None), Some(0.5));
        assert_eq!(estimate_fraction(false, 500, Some(100), None), Some(0.999));
        assert_eq!(
            estimate_fraction(false, 0, None, Some((25.0, 100.0))),
            Some(0.25)
        );
        assert_eq!(
            estimate_fraction(false, 0, None, Some((0.0, -1.0))),
            Some(0.0)
        );
        assert_eq!(estimate_fraction(true, 0, None, None), Some(1.0));
        // Key values: 1..=100 with 25 done; none done; an empty span.
        assert_eq!(key_position(Some(25), 1, 100), (25.0, 100.0));
        assert_eq!(key_position(None, -50, 49), (0.0, 100.0));
        assert_eq!(
            key_position(Some(i64::MAX), i64::MIN, i64::MAX).1,
            2f64.powi(64)
        );
        assert_eq!(key_position(Some(5), 10, 9), (0.0, 0.0));
        assert_eq!(eta(false, Some(0.5), 50, Some(100), Some(10.0)), Some(5.0));
        assert_eq!(eta(false, Some(0.5), 50, None, Some(10.0)), Some(5.0));
        assert_eq!(eta(false, None, 50, None, Some(10.0)), None);
    }
}
