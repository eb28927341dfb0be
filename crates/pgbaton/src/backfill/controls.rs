//! Operator controls and replication lag, read between batches.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio_postgres::SimpleQueryRow;

use crate::ident::{Ident, Literal};

/// The query run after each batch (same round trip) and while paused: the operator controls
/// and, when a ceiling is set, the replication positions.
pub(super) fn controls_sql(state: &Ident, schema: &Ident, lag: bool) -> String {
    let lag_cols = if lag {
        ", pg_current_wal_lsn()::text, \
         (SELECT min(replay_lsn)::text FROM pg_stat_replication WHERE replay_lsn IS NOT NULL), \
         (SELECT max(extract(epoch FROM replay_lag))::float8::text FROM pg_stat_replication), \
         (SELECT count(*) FROM pg_stat_replication WHERE replay_lsn IS NULL AND state <> 'backup')"
    } else {
        ""
    };
    format!(
        "SELECT coalesce(c.paused, false), c.max_rows_per_second, c.target_batch_time_ms, \
         c.workers, c.max_latency_increase{lag_cols} \
         FROM (SELECT 1) AS _pgbaton_one LEFT JOIN {state}.controls AS c ON c.schema_name = {}",
        Literal::new(schema.as_str())
    )
}

/// Parses `16/B374D848`.
pub(super) fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// Operator controls and replication positions, read between batches.
#[derive(Clone, Debug, Default)]
pub(super) struct Controls {
    pub(super) paused: bool,
    pub(super) max_rows_per_second: Option<f64>,
    /// `pgbaton set backfill-batch-time=...`: replaces the run's own target.
    pub(super) target_batch_time: Option<Duration>,
    /// `pgbaton set backfill-workers=...`.
    pub(super) workers: Option<u32>,
    /// `pgbaton set max-latency-increase=...` (a fraction; infinite: off).
    pub(super) max_latency_increase: Option<f64>,
    pub(super) current_lsn: Option<u64>,
    pub(super) min_replay_lsn: Option<u64>,
    pub(super) replay_lag_seconds: Option<f64>,
    pub(super) unmeasured: u32,
}

impl Controls {
    pub(super) fn parse(row: &SimpleQueryRow, lag: bool) -> Controls {
        let mut c = Controls {
            paused: row.get(0) == Some("t"),
            max_rows_per_second: row
                .get(1)
                .and_then(|v| v.parse().ok())
                .filter(|v: &f64| *v > 0.0),
            target_batch_time: row
                .get(2)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|ms| ms.is_finite() && *ms > 0.0)
                .map(|ms| Duration::from_secs_f64(ms / 1000.0)),
            workers: row
                .get(3)
                .and_then(|v| v.parse().ok())
                .filter(|w: &u32| *w > 0),
            max_latency_increase: row
                .get(4)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| *v >= 0.0),
            ..Controls::default()
        };
        if lag {
            c.current_lsn = row.get(5).and_then(parse_lsn);
            c.min_replay_lsn = row.get(6).and_then(parse_lsn);
            c.replay_lag_seconds = row.get(7).and_then(|v| v.parse().ok());
            c.unmeasured = row.get(8).and_then(|v| v.parse().ok()).unwrap_or(0);
        }
        c
    }
}

/// WAL positions this backfill saw, with when, to tell how old the oldest position a standby
/// has not replayed is. Bounded: old samples are thinned out, never unbounded growth.
#[derive(Debug, Default)]
pub(super) struct LagClock {
    pub(super) samples: VecDeque<(Instant, u64)>,
}

pub(super) const LAG_SAMPLES_MAX: usize = 4096;

impl LagClock {
    /// Records `current` and returns the age of the oldest sample the standby has not replayed.
    pub(super) fn observe(&mut self, now: Instant, current: u64, replayed: u64) -> Duration {
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
