//! One clock for the workloads and the timeline, and the observer that marks phases from the
//! migrator's events.

use super::*;

pub(super) const BASELINE: &str = "baseline";
pub(super) const START_EXPAND: &str = "start: expand";
pub(super) const START_BACKFILL: &str = "start: backfill";
pub(super) const START_FINISH: &str = "start: finish";
pub(super) const BOTH: &str = "both versions";
pub(super) const COMPLETE: &str = "complete";
pub(super) const AFTER: &str = "after";
pub(super) const NAIVE_ALTER: &str = "ALTER TABLE";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Release {
    Old,
    New,
}

/// The running workloads and the phase they are in; the observer marks phases from the
/// migrator's thread of control, the demo from its own.
pub(super) struct Phases {
    inner: Mutex<PhasesInner>,
}

pub(super) struct PhasesInner {
    handles: Vec<(Release, WorkloadHandle)>,
    timeline: Vec<(String, Instant)>,
}

impl Phases {
    pub(super) fn new() -> Self {
        Phases {
            inner: Mutex::new(PhasesInner {
                handles: Vec::new(),
                timeline: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PhasesInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on, completions count in `name` (a no-op if it is already the current phase).
    pub(super) fn mark(&self, name: &str) {
        let mut inner = self.lock();
        if inner.timeline.last().is_some_and(|(n, _)| n == name) {
            return;
        }
        inner.timeline.push((name.to_owned(), Instant::now()));
        for (_, h) in &inner.handles {
            h.mark_phase(name);
        }
    }

    pub(super) fn add(&self, release: Release, handle: WorkloadHandle) {
        let mut inner = self.lock();
        if let Some((name, _)) = inner.timeline.last() {
            handle.mark_phase(name);
        }
        inner.handles.push((release, handle));
    }

    pub(super) fn take(&self, release: Release) -> Option<WorkloadHandle> {
        let mut inner = self.lock();
        let i = inner.handles.iter().position(|(r, _)| *r == release)?;
        Some(inner.handles.remove(i).1)
    }

    pub(super) fn timeline(&self, end: Instant) -> Vec<PhaseTime> {
        let inner = self.lock();
        let mut out: Vec<PhaseTime> = Vec::new();
        for (i, (name, start)) in inner.timeline.iter().enumerate() {
            let until = inner.timeline.get(i + 1).map_or(end, |(_, t)| *t);
            let secs = until.saturating_duration_since(*start).as_secs_f64();
            match out.iter_mut().find(|p| &p.name == name) {
                Some(p) => p.seconds += secs,
                None => out.push(PhaseTime {
                    name: name.clone(),
                    seconds: secs,
                }),
            }
        }
        out
    }
}

/// Stops a workload and returns its report (`None` when it never started).
pub(super) async fn stop(phases: &Phases, release: Release) -> Option<WorkloadReport> {
    match phases.take(release) {
        Some(h) => Some(h.stop().await),
        None => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The observer: marks phases, records steps, forwards to the CLI's renderer
// ---------------------------------------------------------------------------------------------

pub(super) struct DemoObserver {
    pub(super) inner: Arc<dyn Observer>,
    pub(super) phases: Arc<Phases>,
    pub(super) backfill_seen: AtomicBool,
    pub(super) lock_retries: AtomicU64,
    pub(super) record: Mutex<ObservedSteps>,
}

#[derive(Default)]
pub(super) struct ObservedSteps {
    pub(super) steps: Vec<StepTiming>,
    pub(super) backfills: BTreeMap<String, crate::backfill::Progress>,
}

impl DemoObserver {
    pub(super) fn record(&self) -> MutexGuard<'_, ObservedSteps> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Observer for DemoObserver {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::StepStarted {
                phase: Phase::Start,
                step,
                ..
            } => {
                let name = if matches!(step.action, Action::Backfill(_)) {
                    self.backfill_seen.store(true, Ordering::Relaxed);
                    START_BACKFILL
                } else if self.backfill_seen.load(Ordering::Relaxed) {
                    START_FINISH
                } else {
                    START_EXPAND
                };
                self.phases.mark(name);
            }
            Event::StepFinished {
                phase,
                step,
                elapsed,
                attempts,
                ..
            } => self.record().steps.push(StepTiming {
                phase: phase.to_string(),
                title: step.title.clone(),
                lock: step.lock.name().to_owned(),
                work: step.work.name().to_owned(),
                ms: elapsed.as_secs_f64() * 1e3,
                attempts: *attempts,
            }),
            Event::LockRetry { .. } => {
                self.lock_retries.fetch_add(1, Ordering::Relaxed);
            }
            Event::Backfill(p) => {
                if matches!(p.state, crate::backfill::ProgressState::LockWait { .. }) {
                    self.lock_retries.fetch_add(1, Ordering::Relaxed);
                }
                self.record().backfills.insert(p.label(), (*p).clone());
            }
            _ => {}
        }
        self.inner.event(event);
    }
}
