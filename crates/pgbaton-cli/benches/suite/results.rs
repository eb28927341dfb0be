//! The measurements, as JSON and for the tables.

use super::*;

#[derive(Serialize, Default)]
pub(crate) struct Results {
    pub(crate) environment: BTreeMap<String, String>,
    pub(crate) backfill: Vec<BackfillResult>,
    pub(crate) trigger: Vec<TriggerResult>,
    pub(crate) complete: Vec<CompleteResult>,
    pub(crate) workload: Vec<WorkloadResult>,
    pub(crate) lockqueue: Vec<LockQueueResult>,
    pub(crate) notes: Vec<String>,
}

#[derive(Serialize, Clone)]
pub(crate) struct BackfillResult {
    pub(crate) rows: u64,
    pub(crate) change: String,
    /// Seconds of each run (the tables show the best).
    pub(crate) update_runs: Vec<f64>,
    pub(crate) pgbaton_backfill_runs: Vec<f64>,
    pub(crate) pgbaton_start_runs: Vec<f64>,
    /// `--backfill-batch-time <ms>` -> seconds of each backfill.
    pub(crate) variant_runs: BTreeMap<u64, Vec<f64>>,
    /// `--backfill-workers <n>` -> seconds of each backfill.
    pub(crate) workers_runs: BTreeMap<u32, Vec<f64>>,
    pub(crate) pgbaton_start_rss_mb: Option<f64>,
    pub(crate) pgbaton_complete_s: Option<f64>,
    pub(crate) pgbaton_complete_rss_mb: Option<f64>,
    pub(crate) pgbaton_error: Option<String>,
    pub(crate) reshape_start_s: Option<f64>,
    pub(crate) reshape_complete_s: Option<f64>,
    pub(crate) reshape_rss_mb: Option<f64>,
    pub(crate) reshape_error: Option<String>,
    /// One more `pgbaton start` while the application writes (the catch-up pass has work).
    /// With the default budget, then with `--max-latency-increase off`.
    pub(crate) with_writes: Vec<WithWrites>,
    pub(crate) load: String,
}

/// `pgbaton start` while an old-version client updates random rows at a steady pace: the fill
/// runs without the dual-write trigger, so the catch-up pass has the rows it wrote to fix.
#[derive(Serialize, Clone)]
pub(crate) struct WithWrites {
    /// The latency budget `start` ran with (`+50%`, the default, or `off`).
    pub(crate) budget: String,
    /// Updates the client committed while `start` ran.
    pub(crate) writes: u64,
    /// The writer's own latency (one single-row UPDATE), in the 3 s before `start` and during it.
    pub(crate) writer_before: WriterLatency,
    pub(crate) writer_during: WriterLatency,
    pub(crate) fill_s: f64,
    pub(crate) catch_up_s: f64,
    /// Rows the catch-up pass updated.
    pub(crate) catch_up_rows: u64,
    /// Rows whose new column is not `up(old)` after start (must be 0).
    pub(crate) wrong_rows: i64,
}

/// Percentiles of the old-version writer's UPDATEs, in milliseconds.
#[derive(Serialize, Clone, Default)]
pub(crate) struct WriterLatency {
    pub(crate) n: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

impl WriterLatency {
    pub(crate) fn of(mut ms: Vec<f64>) -> Self {
        if ms.is_empty() {
            return WriterLatency::default();
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
        WriterLatency {
            n: ms.len(),
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: ms[ms.len() - 1],
        }
    }
}

#[derive(Serialize, Clone)]
pub(crate) struct TriggerResult {
    pub(crate) rows: u64,
    pub(crate) change: String,
    pub(crate) rows_updated: u64,
    pub(crate) without_s: Vec<f64>,
    pub(crate) with_s: Vec<f64>,
}

#[derive(Serialize, Clone)]
pub(crate) struct CompleteResult {
    pub(crate) rows: u64,
    pub(crate) change: String,
    pub(crate) complete_s: f64,
    pub(crate) longest_exclusive_step: Option<(String, f64)>,
    pub(crate) exclusive_steps: Vec<(String, f64)>,
    /// Sampled from pg_locks while complete ran.
    pub(crate) locks: Option<LockStats>,
    pub(crate) workload_max_ms: f64,
    pub(crate) workload_p99_ms: f64,
    pub(crate) baseline_p99_ms: f64,
    pub(crate) baseline_max_ms: f64,
    pub(crate) failures: u64,
}

#[derive(Serialize, Clone)]
pub(crate) struct WorkloadResult {
    pub(crate) method: String,
    pub(crate) rows: u64,
    pub(crate) migration_s: f64,
    pub(crate) error: Option<String>,
    /// ACCESS EXCLUSIVE on the table, sampled from the migration's start to the end.
    pub(crate) locks: Option<LockStats>,
    pub(crate) report: WorkloadReport,
    /// pgbaton's fill during start: its own rate and how often the latency budget slowed it.
    pub(crate) fill: Option<FillStats>,
    /// ACCESS EXCLUSIVE sightings on the workload's clock (the HTML report's lock lane).
    #[serde(skip)]
    pub(crate) marks: Vec<pgbaton_lab::workload::Mark>,
}

/// What pgbaton's `--json` output says of its fill (the `fill` pass, catch-up left out).
#[derive(Serialize, Clone, Debug, Default)]
pub(crate) struct FillStats {
    pub(crate) rows: u64,
    /// The fill step's wall time.
    pub(crate) seconds: f64,
    /// Progress reports after a batch, and how many of them the budget had slowed.
    pub(crate) batches_reported: u64,
    pub(crate) slowed_by_budget: u64,
    /// The longest wait the budget put after a batch (ms).
    pub(crate) max_delay_ms: f64,
    pub(crate) probe_baseline_ms: Option<f64>,
    /// The catch-up pass: rows fixed and seconds.
    pub(crate) catch_up_rows: u64,
    pub(crate) catch_up_seconds: f64,
}

#[derive(Serialize, Clone)]
pub(crate) struct LockQueueResult {
    pub(crate) method: String,
    pub(crate) scenario: String,
    pub(crate) outcome: String,
    pub(crate) exit: Option<i32>,
    pub(crate) seconds: f64,
    pub(crate) lock_retries: Option<u64>,
    pub(crate) table_unchanged: Option<bool>,
    pub(crate) max_latency_ms: f64,
    pub(crate) p99_ms: f64,
    /// ACCESS EXCLUSIVE on the table, sampled while the migration ran.
    pub(crate) locks: Option<LockStats>,
    pub(crate) failures: u64,
    pub(crate) report: WorkloadReport,
    /// ACCESS EXCLUSIVE sightings on the workload's clock (the HTML report's lock lane).
    #[serde(skip)]
    pub(crate) marks: Vec<pgbaton_lab::workload::Mark>,
}
