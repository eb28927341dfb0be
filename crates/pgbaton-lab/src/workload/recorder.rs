//! The recorder: per-phase histograms and failures, stall tracking.

use super::*;

pub(super) struct PhaseStats {
    pub(super) name: Arc<str>,
    pub(super) histogram: Histogram<u64>,
    pub(super) max_us: u64,
    pub(super) queries: u64,
    pub(super) failures: u64,
    pub(super) by_code: BTreeMap<String, u64>,
    pub(super) longest_stall: Duration,
    pub(super) longest_outage: Duration,
}

impl PhaseStats {
    pub(super) fn new(name: Arc<str>) -> Self {
        PhaseStats {
            name,
            histogram: new_histogram(),
            max_us: 0,
            queries: 0,
            failures: 0,
            by_code: BTreeMap::new(),
            longest_stall: Duration::ZERO,
            longest_outage: Duration::ZERO,
        }
    }
}

pub(super) fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds: 1 µs to one hour at three significant figures (≈190 kB).
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("constant histogram bounds are valid")
}

/// Tracks the longest interval without an event (any completion, or a successful one).
pub(super) struct GapTracker {
    pub(super) last: Instant,
    pub(super) last_phase: usize,
    pub(super) longest: Option<GapRec>,
}

#[derive(Clone, Copy)]
pub(super) struct GapRec {
    pub(super) from: Instant,
    pub(super) len: Duration,
    pub(super) phase: usize,
    pub(super) end_phase: usize,
}

impl GapTracker {
    pub(super) fn new(t0: Instant) -> Self {
        GapTracker {
            last: t0,
            last_phase: 0,
            longest: None,
        }
    }
}

#[derive(Clone, Copy)]
pub(super) enum GapKind {
    Stall,
    Outage,
}

pub(super) struct Recorder {
    t0: Instant,
    pub(super) phases: Vec<PhaseStats>,
    /// (phase index, start) for every mark, in order.
    pub(super) timeline: Vec<(usize, Instant)>,
    pub(super) current: usize,
    pub(super) stall: GapTracker,
    pub(super) outage: GapTracker,
    pub(super) queries: u64,
    pub(super) failures: u64,
    /// Latency and throughput per interval.
    pub(super) series: SeriesRecorder,
}

impl Recorder {
    pub(super) fn new(t0: Instant, initial_phase: &str) -> Self {
        Recorder {
            t0,
            phases: vec![PhaseStats::new(Arc::from(initial_phase))],
            timeline: vec![(0, t0)],
            current: 0,
            stall: GapTracker::new(t0),
            outage: GapTracker::new(t0),
            queries: 0,
            failures: 0,
            series: SeriesRecorder::new(t0, t0, DEFAULT_SERIES_INTERVAL),
        }
    }

    /// Per-interval series from `origin` (a clock shared with other workloads), `interval`
    /// wide (zero: none).
    pub(super) fn with_series(mut self, origin: Instant, interval: Duration) -> Self {
        self.series = SeriesRecorder::new(origin, self.t0, interval);
        self
    }

    pub(super) fn mark(&mut self, name: &str, at: Instant) {
        let index = match self.phases.iter().position(|p| &*p.name == name) {
            Some(i) => i,
            None => {
                self.phases.push(PhaseStats::new(Arc::from(name)));
                self.phases.len() - 1
            }
        };
        self.timeline.push((index, at));
        self.current = index;
    }

    /// Records one completed query; returns the phase it counts in.
    pub(super) fn record(
        &mut self,
        end: Instant,
        latency: Duration,
        failure: Option<&str>,
    ) -> Arc<str> {
        self.gap(GapKind::Stall, end);
        if failure.is_none() {
            self.gap(GapKind::Outage, end);
        }
        self.series.record(end, latency, failure.is_some());
        self.tally(latency, failure)
    }

    /// Records a query still running when the run was aborted: its latency so far, as a failure
    /// of class [`ABANDONED`]; it completed nothing, so it does not end a stall.
    pub(super) fn record_abandoned(&mut self, latency: Duration) {
        self.series.record(Instant::now(), latency, true);
        self.tally(latency, Some(ABANDONED));
    }

    pub(super) fn tally(&mut self, latency: Duration, failure: Option<&str>) -> Arc<str> {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let phase = &mut self.phases[self.current];
        phase
            .histogram
            .saturating_record(us.clamp(1, HISTOGRAM_MAX_US));
        phase.max_us = phase.max_us.max(us);
        phase.queries += 1;
        self.queries += 1;
        if let Some(code) = failure {
            phase.failures += 1;
            self.failures += 1;
            match phase.by_code.get_mut(code) {
                Some(n) => *n += 1,
                None => {
                    phase.by_code.insert(code.to_owned(), 1);
                }
            }
        }
        phase.name.clone()
    }

    /// Closes the interval since the tracker's last event at `end`.
    pub(super) fn gap(&mut self, kind: GapKind, end: Instant) {
        let current = self.current;
        let tracker = match kind {
            GapKind::Stall => &mut self.stall,
            GapKind::Outage => &mut self.outage,
        };
        if end <= tracker.last {
            return;
        }
        let (from, len) = (tracker.last, end - tracker.last);
        if tracker.longest.is_none_or(|g| len > g.len) {
            tracker.longest = Some(GapRec {
                from,
                len,
                phase: tracker.last_phase,
                end_phase: current,
            });
        }
        tracker.last = end;
        tracker.last_phase = current;
        // Per phase: the part of the gap inside each of the phase's intervals.
        let mut next_start: Option<Instant> = None;
        for &(index, start) in self.timeline.iter().rev() {
            let interval_end = next_start.unwrap_or(end);
            next_start = Some(start);
            if interval_end <= from {
                break;
            }
            let overlap = interval_end
                .min(end)
                .saturating_duration_since(start.max(from));
            let stats = &mut self.phases[index];
            let slot = match kind {
                GapKind::Stall => &mut stats.longest_stall,
                GapKind::Outage => &mut stats.longest_outage,
            };
            *slot = (*slot).max(overlap);
        }
    }

    pub(super) fn report(&mut self, end: Instant, extra: ReportExtras) -> WorkloadReport {
        self.gap(GapKind::Stall, end);
        self.gap(GapKind::Outage, end);
        let mut walls = vec![Duration::ZERO; self.phases.len()];
        for (i, &(index, start)) in self.timeline.iter().enumerate() {
            let until = self.timeline.get(i + 1).map_or(end, |&(_, next)| next);
            walls[index] += until.saturating_duration_since(start);
        }
        let phases: Vec<PhaseReport> = self
            .phases
            .iter()
            .zip(&walls)
            .map(|(p, wall)| PhaseReport::from_stats(p, &p.histogram, *wall))
            .collect();

        let mut histogram = new_histogram();
        let mut total = PhaseStats::new(Arc::from("total"));
        for p in &self.phases {
            if let Err(e) = histogram.add(&p.histogram) {
                tracing::warn!("workload: merging latency histograms: {e:?}");
            }
            total.max_us = total.max_us.max(p.max_us);
            total.queries += p.queries;
            total.failures += p.failures;
            for (code, n) in &p.by_code {
                *total.by_code.entry(code.clone()).or_default() += n;
            }
        }
        let gap = |g: &Option<GapRec>| {
            g.map(|g| Gap {
                duration_ms: g.len.as_secs_f64() * 1e3,
                started_at_s: g.from.saturating_duration_since(self.t0).as_secs_f64(),
                phase: self.phases[g.phase].name.to_string(),
                ended_in: self.phases[g.end_phase].name.to_string(),
            })
        };
        let longest_stall = gap(&self.stall.longest);
        let longest_outage = gap(&self.outage.longest);
        total.longest_stall = self.stall.longest.map_or(Duration::ZERO, |g| g.len);
        total.longest_outage = self.outage.longest.map_or(Duration::ZERO, |g| g.len);
        let elapsed = end.saturating_duration_since(self.t0);
        let names: Vec<Arc<str>> = self.phases.iter().map(|p| p.name.clone()).collect();
        let timeline = self.series.spans(&self.timeline, &names, end);
        let series = self.series.finish(end);
        WorkloadReport {
            elapsed_s: elapsed.as_secs_f64(),
            clients: extra.clients,
            total: PhaseReport::from_stats(&total, &histogram, elapsed),
            phases,
            longest_stall,
            longest_outage,
            reconnects: extra.reconnects,
            connect_errors: extra.connect_errors,
            abandoned: extra.abandoned,
            writes_logged: extra.writes.entries.len(),
            writes: extra.writes,
            timeline,
            series,
        }
    }
}

pub(super) struct ReportExtras {
    pub(super) clients: usize,
    pub(super) reconnects: u64,
    pub(super) connect_errors: u64,
    pub(super) abandoned: u64,
    pub(super) writes: WriteLog,
}
