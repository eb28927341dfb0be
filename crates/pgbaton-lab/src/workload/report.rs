//! The workload's report: latency, failures and stalls per phase.

use super::*;

/// Latency percentiles in microseconds (p50–p99 from the histogram, three significant figures;
/// `max_us` exact).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us)
    }
}

/// One phase (or the whole run). A query counts in the phase in force when it completed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseReport {
    pub name: String,
    /// Wall time spent in this phase (summed over its intervals if it was marked more than once).
    pub wall_s: f64,
    /// Queries completed, successful or not.
    pub queries: u64,
    pub failures: u64,
    /// Failures by SQLSTATE, or by class: [`CONNECTION`] (a lost connection), [`CLIENT`] (a
    /// client-side error), [`ABANDONED`] (still running when the run was aborted).
    pub failures_by_code: BTreeMap<String, u64>,
    /// Successful queries per second of wall time.
    pub throughput_qps: f64,
    /// Over all completed queries, failed ones included (a lock timeout is a latency too).
    pub latency: Latency,
    /// The longest interval within this phase during which no query completed.
    pub longest_stall_ms: f64,
    /// The longest interval within this phase during which no query succeeded.
    pub longest_outage_ms: f64,
}

impl PhaseReport {
    pub(super) fn from_stats(p: &PhaseStats, histogram: &Histogram<u64>, wall: Duration) -> Self {
        let wall_s = wall.as_secs_f64();
        let ok = p.queries - p.failures;
        let quantile = |q: f64| {
            if histogram.is_empty() {
                0
            } else {
                histogram.value_at_quantile(q)
            }
        };
        PhaseReport {
            name: p.name.to_string(),
            wall_s,
            queries: p.queries,
            failures: p.failures,
            failures_by_code: p.by_code.clone(),
            throughput_qps: if wall_s > 0.0 {
                ok as f64 / wall_s
            } else {
                0.0
            },
            latency: Latency {
                p50_us: quantile(0.50),
                p90_us: quantile(0.90),
                p99_us: quantile(0.99),
                max_us: p.max_us,
                mean_us: if histogram.is_empty() {
                    0.0
                } else {
                    histogram.mean()
                },
            },
            longest_stall_ms: p.longest_stall.as_secs_f64() * 1e3,
            longest_outage_ms: p.longest_outage.as_secs_f64() * 1e3,
        }
    }

    /// Failures with this SQLSTATE (or `connection` / `client`).
    pub fn failures_with(&self, code: &str) -> u64 {
        self.failures_by_code.get(code).copied().unwrap_or(0)
    }

    pub fn longest_stall(&self) -> Duration {
        Duration::from_secs_f64(self.longest_stall_ms / 1e3)
    }
}

/// An interval without completions (a stall) or without successes (an outage).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gap {
    pub duration_ms: f64,
    /// When it began, in seconds since the clients started.
    pub started_at_s: f64,
    /// The phase in force when it began.
    pub phase: String,
    /// The phase in force when it ended.
    pub ended_in: String,
}

impl Gap {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration_ms / 1e3)
    }
}

/// The outcome of a run. `Display` renders a compact table; `Serialize` gives JSON (without the
/// write log, which is in [`WorkloadReport::writes`]).
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadReport {
    pub elapsed_s: f64,
    pub clients: usize,
    /// In the order the phases were first marked.
    pub phases: Vec<PhaseReport>,
    pub total: PhaseReport,
    /// The longest interval during which no query completed on any client.
    pub longest_stall: Option<Gap>,
    /// The longest interval during which no query succeeded on any client.
    pub longest_outage: Option<Gap>,
    /// Connections re-established after a connection was lost.
    pub reconnects: u64,
    /// Failed reconnection attempts.
    pub connect_errors: u64,
    /// Queries still running after the stop grace period: cancelled, and counted as failures of
    /// class [`ABANDONED`] with their latency so far.
    pub abandoned: u64,
    pub writes_logged: usize,
    /// Every stretch of every phase, on the series' clock (see [`WorkloadConfig::series_origin`]).
    pub timeline: Vec<PhaseSpan>,
    /// Latency and throughput per interval (see [`WorkloadConfig::series_interval`]).
    pub series: TimeSeries,
    #[serde(skip)]
    pub writes: WriteLog,
}

impl WorkloadReport {
    pub fn phase(&self, name: &str) -> Option<&PhaseReport> {
        self.phases.iter().find(|p| p.name == name)
    }

    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }
}

/// `812µs`, `12.3ms`, `1.02s`.
pub fn human_us(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0}µs")
    } else if us < 1_000_000.0 {
        format!("{:.1}ms", us / 1e3)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

impl fmt::Display for WorkloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .phases
            .iter()
            .map(|p| p.name.chars().count())
            .max()
            .unwrap_or(0)
            .max(8);
        writeln!(
            f,
            "{:<width$} {:>8} {:>9} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "phase", "wall", "queries", "failed", "ok/s", "p50", "p90", "p99", "max", "stall"
        )?;
        for p in self.phases.iter().chain(std::iter::once(&self.total)) {
            let l = &p.latency;
            writeln!(
                f,
                "{:<width$} {:>8} {:>9} {:>7} {:>9.1} {:>8} {:>8} {:>8} {:>8} {:>8}",
                p.name,
                format!("{:.2}s", p.wall_s),
                p.queries,
                p.failures,
                p.throughput_qps,
                human_us(l.p50_us as f64),
                human_us(l.p90_us as f64),
                human_us(l.p99_us as f64),
                human_us(l.max_us as f64),
                human_us(p.longest_stall_ms * 1e3),
            )?;
        }
        for (what, gap) in [
            ("longest stall", &self.longest_stall),
            ("longest outage", &self.longest_outage),
        ] {
            if let Some(g) = gap {
                write!(
                    f,
                    "{what}: {} at {:.2}s in {}",
                    human_us(g.duration_ms * 1e3),
                    g.started_at_s,
                    g.phase
                )?;
                if g.ended_in != g.phase {
                    write!(f, " (ended in {})", g.ended_in)?;
                }
                writeln!(f)?;
            }
        }
        if !self.total.failures_by_code.is_empty() {
            let codes: Vec<String> = self
                .total
                .failures_by_code
                .iter()
                .map(|(c, n)| format!("{c} ×{n}"))
                .collect();
            writeln!(f, "failures: {}", codes.join(", "))?;
        }
        write!(
            f,
            "{} clients, {} writes logged, {} reconnects, {} failed connection attempts, {} abandoned",
            self.clients, self.writes_logged, self.reconnects, self.connect_errors, self.abandoned
        )
    }
}
