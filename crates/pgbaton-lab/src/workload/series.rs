//! Latency and throughput over time: one [`Bucket`] per fixed interval (100 ms by default) of
//! completions, and the phases as [`PhaseSpan`]s on the same clock. What the HTML report of
//! `pgbaton demo --report` and of the benchmarks draws.
//!
//! Memory stays bounded on long runs: a bucket keeps its raw latencies only while it is one of
//! the two newest, then is reduced to its percentiles.

use super::*;

/// The default width of one bucket.
pub const DEFAULT_SERIES_INTERVAL: Duration = Duration::from_millis(100);

/// Completions in one interval. A query counts in the interval in which it *completed*, with its
/// whole latency: a query held 3 s behind a lock shows as an empty stretch (no completions)
/// followed by one 3 s point.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bucket {
    /// Start of the interval, in seconds since the series' origin.
    pub t_s: f64,
    /// Queries completed, successful or not.
    pub queries: u64,
    pub failures: u64,
    /// Successful queries per second over the interval.
    pub ok_per_s: f64,
    /// Latency percentiles of the queries completed in the interval (0 when none completed).
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// One stretch of a phase, in seconds since the series' origin.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PhaseSpan {
    pub name: String,
    pub start_s: f64,
    pub end_s: f64,
}

/// The per-interval series of one workload.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TimeSeries {
    /// Width of one bucket, in seconds.
    pub interval_s: f64,
    /// Every interval from the workload's start to its stop, empty ones included.
    pub buckets: Vec<Bucket>,
}

impl TimeSeries {
    /// The highest latency of any bucket, in microseconds.
    pub fn max_us(&self) -> u64 {
        self.buckets.iter().map(|b| b.max_us).max().unwrap_or(0)
    }

    /// The end of the last bucket, in seconds since the origin.
    pub fn end_s(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.t_s + self.interval_s)
    }
}

pub(super) struct OpenBucket {
    index: u64,
    queries: u64,
    failures: u64,
    latencies_us: Vec<u64>,
}

/// Builds a [`TimeSeries`] from completions.
pub(super) struct SeriesRecorder {
    origin: Instant,
    interval: Duration,
    /// The first interval (the workload's start).
    first: u64,
    /// The workload's start, in seconds since the origin.
    start_s: f64,
    /// At most two, oldest first.
    pub(super) open: Vec<OpenBucket>,
    closed: Vec<Bucket>,
}

impl SeriesRecorder {
    /// `interval` zero: record nothing.
    pub(super) fn new(origin: Instant, start: Instant, interval: Duration) -> Self {
        let mut r = SeriesRecorder {
            origin,
            interval,
            first: 0,
            start_s: start.saturating_duration_since(origin).as_secs_f64(),
            open: Vec::new(),
            closed: Vec::new(),
        };
        r.first = r.index(start);
        r
    }

    fn index(&self, at: Instant) -> u64 {
        if self.interval.is_zero() {
            return 0;
        }
        let since = at.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since / self.interval.as_nanos()).unwrap_or(u64::MAX)
    }

    pub(super) fn record(&mut self, end: Instant, latency: Duration, failed: bool) {
        if self.interval.is_zero() {
            return;
        }
        let index = self.index(end).max(self.first);
        // Completions arrive in order up to the recorder's lock: an older one goes to the
        // oldest open bucket (or the newest if it is older than every open one).
        let fresh = OpenBucket {
            index,
            queries: 0,
            failures: 0,
            latencies_us: Vec::new(),
        };
        let slot = match self.open.iter().position(|b| b.index >= index) {
            Some(i) if self.open[i].index == index => i,
            // Older than every open bucket (a completion that waited for the lock): the oldest.
            Some(0) => 0,
            Some(i) => {
                self.open.insert(i, fresh);
                i
            }
            None => {
                self.open.push(fresh);
                self.open.len() - 1
            }
        };
        let b = &mut self.open[slot];
        b.queries += 1;
        b.failures += u64::from(failed);
        b.latencies_us
            .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        while self.open.len() > 2 {
            let old = self.open.remove(0);
            self.close(old);
        }
    }

    fn close(&mut self, mut b: OpenBucket) {
        let interval_s = self.interval.as_secs_f64();
        // Empty intervals between the last closed bucket and this one.
        let next = self
            .closed
            .last()
            .map_or(self.first, |c| (c.t_s / interval_s).round() as u64 + 1);
        for index in next..b.index {
            self.closed.push(self.empty(index));
        }
        b.latencies_us.sort_unstable();
        let pick = |q: f64| -> u64 {
            if b.latencies_us.is_empty() {
                return 0;
            }
            // Nearest rank.
            let rank = ((q * b.latencies_us.len() as f64).ceil() as usize).max(1);
            b.latencies_us[rank.min(b.latencies_us.len()) - 1]
        };
        self.closed.push(Bucket {
            t_s: b.index as f64 * interval_s,
            queries: b.queries,
            failures: b.failures,
            ok_per_s: (b.queries - b.failures) as f64 / interval_s,
            p50_us: pick(0.50),
            p99_us: pick(0.99),
            max_us: b.latencies_us.last().copied().unwrap_or(0),
        });
    }

    fn empty(&self, index: u64) -> Bucket {
        Bucket {
            t_s: index as f64 * self.interval.as_secs_f64(),
            queries: 0,
            failures: 0,
            ok_per_s: 0.0,
            p50_us: 0,
            p99_us: 0,
            max_us: 0,
        }
    }

    /// The series up to `end` (the workload's stop).
    pub(super) fn finish(&mut self, end: Instant) -> TimeSeries {
        if self.interval.is_zero() {
            return TimeSeries::default();
        }
        for b in std::mem::take(&mut self.open) {
            self.close(b);
        }
        let last = self.index(end);
        let interval_s = self.interval.as_secs_f64();
        let next = self
            .closed
            .last()
            .map_or(self.first, |c| (c.t_s / interval_s).round() as u64 + 1);
        for index in next..=last {
            self.closed.push(self.empty(index));
        }
        // The first and the last interval are cut by the workload's start and stop: their rate
        // is over the part the clients ran.
        let end_s = end.saturating_duration_since(self.origin).as_secs_f64();
        for b in self.closed.iter_mut() {
            let ran = (b.t_s + interval_s).min(end_s) - b.t_s.max(self.start_s);
            if ran < interval_s && ran > interval_s / 1000.0 {
                b.ok_per_s = (b.queries - b.failures) as f64 / ran;
            }
        }
        TimeSeries {
            interval_s,
            buckets: std::mem::take(&mut self.closed),
        }
    }

    /// Phase spans on the series' clock from a recorder's timeline.
    pub(super) fn spans(
        &self,
        timeline: &[(usize, Instant)],
        names: &[Arc<str>],
        end: Instant,
    ) -> Vec<PhaseSpan> {
        let at = |t: Instant| t.saturating_duration_since(self.origin).as_secs_f64();
        timeline
            .iter()
            .enumerate()
            .map(|(i, &(index, start))| PhaseSpan {
                name: names[index].to_string(),
                start_s: at(start),
                end_s: at(timeline.get(i + 1).map_or(end, |&(_, next)| next)),
            })
            .filter(|s| s.end_s > s.start_s)
            .collect()
    }
}

/// What a [`Mark`] on the time axis shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkKind {
    /// A step that waited for or held `ACCESS EXCLUSIVE` (writers queue behind it).
    ExclusiveLock,
    /// A lock timeout that was retried (the span: the wait that timed out).
    LockRetry,
    /// A backfill batch that could not get its locks in time and waits to retry.
    LockWait,
}

impl MarkKind {
    pub fn label(self) -> &'static str {
        match self {
            MarkKind::ExclusiveLock => "ACCESS EXCLUSIVE lock",
            MarkKind::LockRetry => "lock timeout, retried",
            MarkKind::LockWait => "backfill lock wait",
        }
    }
}

/// An event or a span on the series' clock, in seconds since its origin.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Mark {
    pub kind: MarkKind,
    pub start_s: f64,
    pub end_s: f64,
    pub label: String,
}
