//! How a backfill runs: its options and their parsing.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    DEFAULT_INITIAL_BATCH_ROWS, DEFAULT_MAX_BATCH_ROWS, DEFAULT_MIN_BATCH_ROWS,
    DEFAULT_TARGET_BATCH_TIME,
};

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
    /// A ceiling on rows per second (`pgbaton set backfill-rows-per-second=` replaces it while
    /// the run goes on).
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
    /// The latency budget: the run slows down while its probe is more than this fraction over
    /// its baseline (`0.5`: +50%). `None`: off. Needs a connection for the probe (see
    /// [`super::run_connected`]).
    pub max_latency_increase: Option<f64>,
    /// The probe's query (default: a cheap read of the table being filled).
    pub probe_query: Option<String>,
    /// How often the probe runs.
    pub probe_interval: Duration,
    /// Tables estimated below this many rows (under a second of fill) run without a probe.
    pub budget_min_rows: u64,
    /// Connections filling the table at once (value ranges and ctid walks; a keyset walk uses
    /// one).
    pub workers: u32,
    /// A second session reads the next batch's rows while a batch runs, so the batch finds
    /// its pages in memory (one-connection value-range and ctid walks at full speed; see the
    /// `readahead` module).
    pub read_ahead: bool,
    /// Tables estimated below this many rows run without the read-ahead.
    pub read_ahead_min_rows: u64,
}

/// Tables from this many rows get the read-ahead by default: below, a fill takes seconds and
/// its table is usually in memory already.
pub const DEFAULT_READ_AHEAD_MIN_ROWS: u64 = 1_000_000;

/// The default latency budget: +50% over the probe's baseline.
pub const DEFAULT_MAX_LATENCY_INCREASE: f64 = 0.5;

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

impl BackfillOptions {
    /// The latency budget's fraction when it is on (`max_latency_increase` set and finite).
    pub fn latency_budget(&self) -> Option<f64> {
        self.max_latency_increase.filter(|b| b.is_finite())
    }
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
            max_latency_increase: Some(DEFAULT_MAX_LATENCY_INCREASE),
            probe_query: None,
            probe_interval: Duration::from_millis(50),
            budget_min_rows: 100_000,
            workers: 1,
            key_walk: KeyWalk::Auto,
            read_ahead: true,
            read_ahead_min_rows: DEFAULT_READ_AHEAD_MIN_ROWS,
        }
    }
}
