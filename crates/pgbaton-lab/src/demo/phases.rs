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
    pub(super) backfills: BTreeMap<String, pgbaton::backfill::Progress>,
    /// Lock waits, retries and `ACCESS EXCLUSIVE` steps on the run's clock.
    pub(super) marks: Vec<Mark>,
}

impl DemoObserver {
    /// The demo phase a start step belongs to: expand, the fill, the trigger install that closes
    /// the write window, the catch-up pass, then the rest (concurrent builds, the version schema).
    fn start_phase(&self, step: &pgbaton::step::Step) -> &'static str {
        match &step.action {
            Action::Backfill(spec) if spec.pass == pgbaton::step::BackfillPass::CatchUp => {
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
                if let pgbaton::backfill::ProgressState::LockWait { attempt, .. } = &p.state {
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

#[cfg(test)]
mod tests {
    use super::*;
    use pgbaton::backfill::{Progress, ProgressState};
    use pgbaton::executor::Quiet;
    use pgbaton::step::{BackfillKey, BackfillPass, BackfillSpec, Step, Work};

    fn backfill(pass: BackfillPass) -> Step {
        Step {
            title: format!("backfill ({})", pass.as_str()),
            table: None,
            lock: LockLevel::RowExclusive,
            work: Work::Batched,
            action: Action::Backfill(BackfillSpec {
                table: QualName::new("s", "users"),
                key: BackfillKey::Ctid,
                scope: Vec::new(),
                assignments: Vec::new(),
                marker: Ident::new("m"),
                window: None,
                pass,
            }),
        }
    }

    fn catalog(title: &str, lock: LockLevel) -> Step {
        Step::transaction(title, None, lock, Work::Catalog, vec!["SELECT 1".into()])
    }

    fn observer(phases: Arc<Phases>) -> DemoObserver {
        DemoObserver {
            inner: Arc::new(Quiet),
            phases,
            backfill_seen: AtomicBool::new(false),
            catch_up_seen: AtomicBool::new(false),
            window_closed: AtomicBool::new(false),
            lock_timeout: Duration::from_millis(500),
            lock_retries: AtomicU64::new(0),
            record: Mutex::new(ObservedSteps::default()),
        }
    }

    fn started(o: &DemoObserver, step: &Step) {
        o.event(&Event::StepStarted {
            phase: Phase::Start,
            ordinal: 0,
            total: 1,
            step,
        });
    }

    #[test]
    fn start_steps_map_to_the_demo_phases_in_order() {
        let phases = Arc::new(Phases::new());
        phases.mark(BASELINE);
        let o = observer(phases.clone());
        let steps = [
            catalog("add copies of id", LockLevel::AccessExclusive),
            catalog("open the write window", LockLevel::ShareRowExclusive),
            backfill(BackfillPass::Fill),
            catalog(
                "install dual-write trigger on \"s\".\"users\"",
                LockLevel::AccessExclusive,
            ),
            catalog("guard: NOT VALID check", LockLevel::ShareRowExclusive),
            backfill(BackfillPass::CatchUp),
            catalog("create version schema", LockLevel::AccessShare),
        ];
        for step in &steps {
            started(&o, step);
        }
        let names: Vec<String> = phases
            .spans(Instant::now())
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names,
            vec![
                BASELINE,
                START_EXPAND,
                START_BACKFILL,
                START_TRIGGERS,
                START_CATCH_UP,
                START_FINISH
            ]
        );
    }

    #[test]
    fn without_a_write_window_the_steps_after_the_backfill_are_the_finish() {
        let phases = Arc::new(Phases::new());
        phases.mark(BASELINE);
        let o = observer(phases.clone());
        for step in [
            catalog(
                "install dual-write trigger on \"s\".\"users\"",
                LockLevel::AccessExclusive,
            ),
            backfill(BackfillPass::Fill),
            catalog("create version schema", LockLevel::AccessShare),
        ] {
            started(&o, &step);
        }
        let names: Vec<String> = phases
            .spans(Instant::now())
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names,
            vec![BASELINE, START_EXPAND, START_BACKFILL, START_FINISH]
        );
    }

    #[test]
    fn lock_events_become_marks_on_the_run_clock() {
        let phases = Arc::new(Phases::new());
        phases.mark(BASELINE);
        let o = observer(phases.clone());
        std::thread::sleep(Duration::from_millis(700));
        let step = catalog("contract \"s\".\"users\"", LockLevel::AccessExclusive);
        o.event(&Event::LockRetry {
            step: &step,
            attempt: 1,
            backoff: Duration::from_millis(10),
            blockers: &[],
        });
        o.event(&Event::StepFinished {
            phase: Phase::Complete,
            ordinal: 0,
            step: &step,
            elapsed: Duration::from_millis(600),
            attempts: 2,
        });
        let progress = Progress {
            table: "\"s\".\"users\"".into(),
            pass: BackfillPass::Fill,
            state: ProgressState::LockWait {
                attempt: 3,
                backoff_ms: 20,
                message: "lock timeout".into(),
            },
            rows_done: 0,
            rows_updated: 0,
            rows_estimate: None,
            fraction: None,
            rate: 0.0,
            eta_seconds: None,
            batch_size: 1000,
            batches: 0,
            batch_p50_ms: 0.0,
            batch_p99_ms: 0.0,
            paused_seconds: 0.0,
            elapsed_seconds: 0.0,
            lag_unmeasured: 0,
            settings: pgbaton::backfill::RunSettings {
                rows_per_second: None,
                batch_time_ms: 100.0,
                workers: 1,
                max_latency_increase: None,
                probe_baseline_ms: None,
                probe_error: None,
                read_ahead: false,
            },
            throttle: None,
            last_batch_ms: None,
        };
        o.event(&Event::Backfill(&progress));
        assert_eq!(o.lock_retries.load(Ordering::Relaxed), 2);
        let record = o.record();
        let kinds: Vec<MarkKind> = record.marks.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            vec![
                MarkKind::LockRetry,
                MarkKind::ExclusiveLock,
                MarkKind::LockWait
            ]
        );
        let retry = &record.marks[0];
        // The wait that timed out: lock_timeout long, ending when the retry was reported.
        assert!(
            (retry.end_s - retry.start_s - 0.5).abs() < 1e-6,
            "{retry:?}"
        );
        assert!(retry.end_s >= 0.7 && retry.end_s < 5.0, "{retry:?}");
        let held = &record.marks[1];
        assert!((held.end_s - held.start_s - 0.6).abs() < 0.01, "{held:?}");
        assert!(
            held.label.starts_with("complete: contract"),
            "{}",
            held.label
        );
        assert!((record.steps[0].start_s - held.start_s).abs() < 1e-9);
        assert!(record.marks[2].label.contains("attempt 3"));
    }
}
