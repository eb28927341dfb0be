//! One clock for the workloads and the timeline, and the observer that marks phases from the
//! migrator's events.

use super::*;

pub(super) const BASELINE: &str = "baseline";
pub(super) const START_EXPAND: &str = "start: expand";
/// The fill (the backfill of every existing row).
pub(super) const START_BACKFILL: &str = "start: backfill";
/// The dual-write trigger's install, which closes the backfill's write window.
pub(super) const START_TRIGGERS: &str = "start: trigger install";
/// The catch-up pass over the rows written during the fill.
pub(super) const START_CATCH_UP: &str = "start: catch-up";
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

    /// Time zero of the run's charts: the first mark (now, before any).
    pub(super) fn origin(&self) -> Instant {
        self.lock()
            .timeline
            .first()
            .map_or_else(Instant::now, |(_, t)| *t)
    }

    /// Seconds from the origin to `at`.
    pub(super) fn since_origin(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.origin()).as_secs_f64()
    }

    /// Every stretch of every phase, in seconds since the origin.
    pub(super) fn spans(&self, end: Instant) -> Vec<PhaseSpan> {
        let inner = self.lock();
        let Some(&(_, origin)) = inner.timeline.first() else {
            return Vec::new();
        };
        let at = |t: Instant| t.saturating_duration_since(origin).as_secs_f64();
        inner
            .timeline
            .iter()
            .enumerate()
            .map(|(i, (name, start))| PhaseSpan {
                name: name.clone(),
                start_s: at(*start),
                end_s: at(inner.timeline.get(i + 1).map_or(end, |(_, t)| *t)),
            })
            .collect()
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
    pub(super) catch_up_seen: AtomicBool,
    /// The dual-write trigger was installed after the fill (closing its write window).
    pub(super) window_closed: AtomicBool,
    /// The migrator's lock timeout: the wait before each retried lock timeout.
    pub(super) lock_timeout: Duration,
    pub(super) lock_retries: AtomicU64,
    pub(super) record: Mutex<ObservedSteps>,
}

#[derive(Default)]
pub(super) struct ObservedSteps {
    pub(super) steps: Vec<StepTiming>,
    pub(super) backfills: BTreeMap<String, crate::backfill::Progress>,
    /// Lock waits, retries and `ACCESS EXCLUSIVE` steps on the run's clock.
    pub(super) marks: Vec<Mark>,
}

impl DemoObserver {
    /// The demo phase a start step belongs to: expand, the fill, the trigger install that closes
    /// the write window, the catch-up pass, then the rest (concurrent builds, the version schema).
    fn start_phase(&self, step: &crate::step::Step) -> &'static str {
        match &step.action {
            Action::Backfill(spec) if spec.pass == crate::step::BackfillPass::CatchUp => {
                self.catch_up_seen.store(true, Ordering::Relaxed);
                START_CATCH_UP
            }
            Action::Backfill(_) => {
                self.backfill_seen.store(true, Ordering::Relaxed);
                START_BACKFILL
            }
            _ if !self.backfill_seen.load(Ordering::Relaxed) => START_EXPAND,
            _ if self.catch_up_seen.load(Ordering::Relaxed) => START_FINISH,
            // The trigger install, and the guards (NOT VALID constraints) that rely on it.
            _ if step.title.starts_with("install dual-write trigger") => {
                self.window_closed.store(true, Ordering::Relaxed);
                START_TRIGGERS
            }
            _ if self.window_closed.load(Ordering::Relaxed) => START_TRIGGERS,
            _ => START_FINISH,
        }
    }

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
                self.phases.mark(self.start_phase(step));
            }
            Event::StepFinished {
                phase,
                step,
                elapsed,
                attempts,
                ..
            } => {
                let now = self.phases.since_origin(Instant::now());
                let start_s = (now - elapsed.as_secs_f64()).max(0.0);
                let mut record = self.record();
                if step.lock == LockLevel::AccessExclusive {
                    record.marks.push(Mark {
                        kind: MarkKind::ExclusiveLock,
                        start_s,
                        end_s: now,
                        label: format!("{phase}: {}", step.title),
                    });
                }
                record.steps.push(StepTiming {
                    phase: phase.to_string(),
                    title: step.title.clone(),
                    lock: step.lock.name().to_owned(),
                    work: step.work.name().to_owned(),
                    ms: elapsed.as_secs_f64() * 1e3,
                    attempts: *attempts,
                    start_s,
                });
            }
            Event::LockRetry { step, attempt, .. } => {
                self.lock_retries.fetch_add(1, Ordering::Relaxed);
                let now = self.phases.since_origin(Instant::now());
                self.record().marks.push(Mark {
                    kind: MarkKind::LockRetry,
                    start_s: (now - self.lock_timeout.as_secs_f64()).max(0.0),
                    end_s: now,
                    label: format!("attempt {attempt} of \"{}\" timed out", step.title),
                });
            }
            Event::Backfill(p) => {
                let mut record = self.record();
                if let crate::backfill::ProgressState::LockWait { attempt, .. } = &p.state {
                    self.lock_retries.fetch_add(1, Ordering::Relaxed);
                    let now = self.phases.since_origin(Instant::now());
                    record.marks.push(Mark {
                        kind: MarkKind::LockWait,
                        start_s: now,
                        end_s: now,
                        label: format!(
                            "{}: batch attempt {attempt} waits for its locks",
                            p.label()
                        ),
                    });
                }
                record.backfills.insert(p.label(), (*p).clone());
            }
            _ => {}
        }
        self.inner.event(event);
    }
}
