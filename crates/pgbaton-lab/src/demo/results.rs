//! What a demo run measured ([`DemoReport`], [`RunReport`]) and its text rendering.

use super::*;

/// What a demo run measured. `Display` renders it for people, `Serialize` as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct DemoReport {
    pub environment: Environment,
    pub pgbaton: RunReport,
    /// With `--compare-naive`.
    pub naive: Option<RunReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Environment {
    /// `throwaway cluster` or `existing database`.
    pub database: String,
    /// The throwaway cluster's directory (removed when the demo ends).
    pub cluster_dir: Option<String>,
    pub server_version: String,
    pub rows: u64,
    pub old_clients: usize,
    pub new_clients: usize,
    pub think_time_ms: f64,
    pub lock_timeout_ms: f64,
    pub migration: String,
    pub naive_sql: Vec<String>,
}

/// One way of changing the table (pgbaton, or the plain `ALTER TABLE`) under the workload.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// `pgbaton` or `naive ALTER TABLE`.
    pub method: String,
    /// The change finished (for pgbaton: start and complete succeeded).
    pub completed: bool,
    /// Why it did not, when it did not.
    pub error: Option<String>,
    /// Wall time of each phase, in order.
    pub timeline: Vec<PhaseTime>,
    /// The phases during which the table was being changed (the migration proper).
    pub migration_phases: Vec<String>,
    /// Seconds from the first migration phase to the end of the last.
    pub migration_s: f64,
    /// The old release's clients (from the baseline until they were retired).
    pub old: Option<WorkloadReport>,
    /// The new release's clients (from when its schema existed to the end).
    pub new: Option<WorkloadReport>,
    pub backfills: Vec<BackfillSummary>,
    /// Every step pgbaton ran, with its lock, time and attempts.
    pub steps: Vec<StepTiming>,
    /// Lock timeouts retried (executor steps and backfill batches).
    pub lock_retries: u64,
    /// The longest step that held (or waited for) `ACCESS EXCLUSIVE`, per pgbaton phase.
    pub longest_exclusive_step: Vec<StepTiming>,
    pub final_schema: Vec<ColumnInfo>,
    pub primary_key: Vec<String>,
    /// What is wrong with the final schema (empty: it is right).
    pub schema_problems: Vec<String>,
    /// Rows whose `email_domain` is not `split_part(email, '@', 2)`.
    pub derived_mismatches: i64,
    pub writes: WriteCheck,
    /// Every stretch of every phase, in seconds since the run began (the charts' time axis).
    pub phase_spans: Vec<PhaseSpan>,
    /// Lock waits, lock retries and `ACCESS EXCLUSIVE` spans on the same clock.
    pub marks: Vec<Mark>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PhaseTime {
    pub name: String,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackfillSummary {
    pub table: String,
    pub rows: u64,
    pub rows_updated: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
    pub batches: u64,
    pub batch_size: u32,
    pub batch_p50_ms: f64,
    pub batch_p99_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepTiming {
    pub phase: String,
    pub title: String,
    pub lock: String,
    pub work: String,
    pub ms: f64,
    pub attempts: u32,
    /// When it started, in seconds since the run's first phase.
    pub start_s: f64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ColumnInfo {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
}

/// The write logs checked against the final table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WriteCheck {
    /// Committed writes logged (both releases).
    pub logged: usize,
    /// Keys whose row does not hold what was committed last.
    pub lost: usize,
    /// The first few mismatches, described.
    pub examples: Vec<String>,
}

impl RunReport {
    pub(super) fn new(method: &str) -> Self {
        RunReport {
            method: method.to_owned(),
            completed: false,
            error: None,
            timeline: Vec::new(),
            migration_phases: Vec::new(),
            migration_s: 0.0,
            old: None,
            new: None,
            backfills: Vec::new(),
            steps: Vec::new(),
            lock_retries: 0,
            longest_exclusive_step: Vec::new(),
            final_schema: Vec::new(),
            primary_key: Vec::new(),
            schema_problems: Vec::new(),
            derived_mismatches: 0,
            writes: WriteCheck::default(),
            phase_spans: Vec::new(),
            marks: Vec::new(),
        }
    }

    fn workloads(&self) -> impl Iterator<Item = (&'static str, &WorkloadReport)> {
        [("old", self.old.as_ref()), ("new", self.new.as_ref())]
            .into_iter()
            .filter_map(|(v, r)| r.map(|r| (v, r)))
    }

    /// Queries completed, over both releases.
    pub fn queries(&self) -> u64 {
        self.workloads().map(|(_, r)| r.total.queries).sum()
    }

    /// Failed queries, over both releases.
    pub fn failures(&self) -> u64 {
        self.workloads().map(|(_, r)| r.total.failures).sum()
    }

    /// Failures by SQLSTATE (or class), over both releases.
    pub fn failures_by_code(&self) -> BTreeMap<String, u64> {
        let mut codes = BTreeMap::new();
        for (_, r) in self.workloads() {
            for (code, n) in &r.total.failures_by_code {
                *codes.entry(code.clone()).or_default() += n;
            }
        }
        codes
    }

    /// Every phase from the migration's start to the end of the run, per release. Latency counts
    /// in the phase in which a query *completed*: a query held up by the migration may complete
    /// just after it, so "during" never stops at the migration's last phase.
    fn migration_phase_reports(
        &self,
    ) -> impl Iterator<Item = (&'static str, &crate::workload::PhaseReport)> {
        self.workloads().flat_map(move |(v, r)| {
            r.phases
                .iter()
                .filter(|p| p.name != BASELINE)
                .map(move |p| (v, p))
        })
    }

    /// The highest latency of any query completed after the baseline, in microseconds.
    pub fn max_latency_during_migration_us(&self) -> u64 {
        self.migration_phase_reports()
            .map(|(_, p)| p.latency.max_us)
            .max()
            .unwrap_or(0)
    }

    /// The worst p99 of any release in any phase after the baseline, in microseconds.
    pub fn worst_p99_during_migration_us(&self) -> u64 {
        self.migration_phase_reports()
            .filter(|(_, p)| p.queries > 0)
            .map(|(_, p)| p.latency.p99_us)
            .max()
            .unwrap_or(0)
    }

    /// The longest interval after the baseline in which one release completed no query, ms.
    pub fn longest_stall_during_migration_ms(&self) -> f64 {
        self.migration_phase_reports()
            .map(|(_, p)| p.longest_stall_ms)
            .fold(0.0, f64::max)
    }

    /// The old release's baseline p99, in microseconds.
    pub fn baseline_p99_us(&self) -> u64 {
        self.old
            .as_ref()
            .and_then(|r| r.phase(BASELINE))
            .map_or(0, |p| p.latency.p99_us)
    }

    /// The change completed, no query failed, the schema is right and no write was lost.
    pub fn clean(&self) -> bool {
        self.completed
            && self.failures() == 0
            && self.schema_problems.is_empty()
            && self.derived_mismatches == 0
            && self.writes.lost == 0
    }
}

impl DemoReport {
    /// pgbaton's run was clean (see [`RunReport::clean`]).
    pub fn ok(&self) -> bool {
        self.pgbaton.clean()
    }

    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

/// `812µs`, `12.3ms`, `1.02s` (shared with the workload report).
pub use crate::workload::human_us;

pub(super) fn codes(codes: &BTreeMap<String, u64>) -> String {
    if codes.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = codes.iter().map(|(c, n)| format!("{c} ×{n}")).collect();
    format!(" ({})", parts.join(", "))
}

impl RunReport {
    /// Per phase and release: queries, failures, throughput, latency and the longest stall.
    fn write_phase_table(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  {:<22} {:>7} {:<7} {:>8} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "phase", "wall", "release", "queries", "failed", "ok/s", "p50", "p99", "max", "stall"
        )?;
        for t in &self.timeline {
            let mut first = true;
            for (version, report) in self.workloads() {
                let Some(p) = report.phase(&t.name) else {
                    continue;
                };
                if p.queries == 0 && p.wall_s == 0.0 {
                    continue;
                }
                let l = &p.latency;
                writeln!(
                    f,
                    "  {:<22} {:>7} {:<7} {:>8} {:>6} {:>8.0} {:>8} {:>8} {:>8} {:>8}",
                    if first { t.name.as_str() } else { "" },
                    if first {
                        format!("{:.2}s", t.seconds)
                    } else {
                        String::new()
                    },
                    version,
                    p.queries,
                    p.failures,
                    p.throughput_qps,
                    human_us(l.p50_us as f64),
                    human_us(l.p99_us as f64),
                    human_us(l.max_us as f64),
                    human_us(p.longest_stall_ms * 1e3),
                )?;
                first = false;
            }
            if first {
                writeln!(f, "  {:<22} {:>7}", t.name, format!("{:.2}s", t.seconds))?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {}",
            self.method,
            if self.completed {
                "completed".to_owned()
            } else {
                format!(
                    "FAILED: {}",
                    self.error.as_deref().unwrap_or("unknown error")
                )
            }
        )?;
        self.write_phase_table(f)?;
        writeln!(
            f,
            "  queries: {}, failed: {}{}",
            self.queries(),
            self.failures(),
            codes(&self.failures_by_code())
        )?;
        writeln!(
            f,
            "  migration: {:.2}s; from its start to the end: max latency {}, worst p99 {} (baseline p99 {}), longest stall {}",
            self.migration_s,
            human_us(self.max_latency_during_migration_us() as f64),
            human_us(self.worst_p99_during_migration_us() as f64),
            human_us(self.baseline_p99_us() as f64),
            human_us(self.longest_stall_during_migration_ms() * 1e3),
        )?;
        for b in &self.backfills {
            writeln!(
                f,
                "  backfill {}: {} rows in {:.2}s ({:.0} rows/s), {} batches of up to {} rows, batch p50 {:.0}ms p99 {:.0}ms",
                b.table,
                b.rows,
                b.seconds,
                b.rows_per_second,
                b.batches,
                b.batch_size,
                b.batch_p50_ms,
                b.batch_p99_ms
            )?;
        }
        if !self.steps.is_empty() {
            writeln!(f, "  lock retries: {}", self.lock_retries)?;
        }
        for s in &self.longest_exclusive_step {
            writeln!(
                f,
                "  longest ACCESS EXCLUSIVE step of {}: \"{}\" {:.1}ms ({} attempt(s))",
                s.phase, s.title, s.ms, s.attempts
            )?;
        }
        if self.completed {
            let cols: Vec<String> = self
                .final_schema
                .iter()
                .map(|c| {
                    format!(
                        "{} {}{}",
                        c.name,
                        c.data_type,
                        if c.nullable { "" } else { " NOT NULL" }
                    )
                })
                .collect();
            writeln!(
                f,
                "  final table: ({}), primary key ({})",
                cols.join(", "),
                self.primary_key.join(", ")
            )?;
            if self.schema_problems.is_empty() {
                writeln!(
                    f,
                    "  schema: right; email_domain wrong on {} row(s)",
                    self.derived_mismatches
                )?;
            } else {
                writeln!(f, "  schema: WRONG: {}", self.schema_problems.join("; "))?;
            }
            writeln!(
                f,
                "  writes: {} committed, {} lost",
                self.writes.logged, self.writes.lost
            )?;
            for e in &self.writes.examples {
                writeln!(f, "    {e}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.environment;
        writeln!(
            f,
            "\npgbaton demo: {} rows, {} old + {} new release clients (think time {:.0}ms), lock_timeout {:.0}ms",
            e.rows, e.old_clients, e.new_clients, e.think_time_ms, e.lock_timeout_ms
        )?;
        writeln!(f, "{} ({})", e.server_version, e.database)?;
        writeln!(
            f,
            "migration {MIGRATION_NAME}: id integer → bigint (alter_column), name → full_name \
             (rename_column), email_domain NOT NULL filled by up (add_column)\n"
        )?;
        write!(f, "{}", self.pgbaton)?;
        if let Some(naive) = &self.naive {
            writeln!(f)?;
            write!(f, "{naive}")?;
            writeln!(
                f,
                "\nside by side (\"during\": from the migration's start to the end of the run):"
            )?;
            let p = &self.pgbaton;
            let rows: Vec<(&str, String, String)> = vec![
                (
                    "completed",
                    p.completed.to_string(),
                    naive.completed.to_string(),
                ),
                (
                    "migration time",
                    format!("{:.2}s", p.migration_s),
                    format!("{:.2}s", naive.migration_s),
                ),
                (
                    "failed queries (whole run)",
                    format!("{}{}", p.failures(), codes(&p.failures_by_code())),
                    format!("{}{}", naive.failures(), codes(&naive.failures_by_code())),
                ),
                (
                    "baseline p99",
                    human_us(p.baseline_p99_us() as f64),
                    human_us(naive.baseline_p99_us() as f64),
                ),
                (
                    "worst p99 during",
                    human_us(p.worst_p99_during_migration_us() as f64),
                    human_us(naive.worst_p99_during_migration_us() as f64),
                ),
                (
                    "max latency during",
                    human_us(p.max_latency_during_migration_us() as f64),
                    human_us(naive.max_latency_during_migration_us() as f64),
                ),
                (
                    "longest stall during",
                    human_us(p.longest_stall_during_migration_ms() * 1e3),
                    human_us(naive.longest_stall_during_migration_ms() * 1e3),
                ),
                (
                    "writes lost",
                    p.writes.lost.to_string(),
                    naive.writes.lost.to_string(),
                ),
            ];
            writeln!(
                f,
                "  {:<28} {:>22} {:>22}",
                "", "pgbaton", "naive ALTER TABLE"
            )?;
            for (what, a, b) in rows {
                writeln!(f, "  {what:<28} {a:>22} {b:>22}")?;
            }
        }
        writeln!(
            f,
            "\nresult: {}",
            if self.ok() {
                "zero failed queries, schema right, no write lost"
            } else {
                "NOT clean (see above)"
            }
        )
    }
}
