//! The two ways of changing the table under the workload: pgbaton, and the plain `ALTER TABLE`.

use super::*;

pub(super) async fn run_pgbaton(
    target: &Target,
    options: &DemoOptions,
    migration: &Migration,
    renderer: Arc<dyn Observer>,
    notes: &Notes,
) -> Result<RunReport, DemoError> {
    let mut run = RunReport::new("pgbaton");
    create_table(target, DEMO_SCHEMA, options.rows, notes).await?;
    let phases = Arc::new(Phases::new());
    let observer = Arc::new(DemoObserver {
        inner: renderer,
        phases: phases.clone(),
        backfill_seen: AtomicBool::new(false),
        catch_up_seen: AtomicBool::new(false),
        window_closed: AtomicBool::new(false),
        lock_timeout: options.exec.lock_timeout,
        lock_retries: AtomicU64::new(0),
        record: Mutex::new(ObservedSteps::default()),
    });
    let migrator = connect_migrator(target, options, observer.clone()).await?;

    let half = (options.rows / 2) as i64;
    let note = format!(
        "{} old-release clients on {DEMO_SCHEMA}.{TABLE} (ids 1..{half}); baseline for {:.0}s",
        options.old_clients,
        options.baseline.as_secs_f64()
    );
    run_baseline(
        target,
        options,
        &phases,
        DEMO_SCHEMA,
        notes,
        "workload",
        note,
    )
    .await?;

    let migration_started = Instant::now();
    let mut migration_ended = None;
    let outcome = PgbatonRun {
        target,
        options,
        phases: &phases,
        notes,
    }
    .migrate(&migrator, migration, &mut run, &mut migration_ended)
    .await;
    let end = Instant::now();
    match outcome {
        Ok(()) => run.completed = true,
        Err(e) => {
            notes.say("migration", format!("failed: {e}"));
            run.error = Some(e.to_string());
        }
    }
    if run.old.is_none() {
        run.old = stop(&phases, Release::Old).await;
    }
    run.new = stop(&phases, Release::New).await;
    drop(migrator);

    migration_timing(&mut run, &phases, end, migration_started, migration_ended);
    observed(&observer, &mut run);
    if run.completed {
        notes.say(
            "verify",
            "checking the final schema and every committed write",
        );
        let logs: Vec<&WorkloadReport> = run.old.iter().chain(run.new.iter()).collect();
        let check = check_table(&target.admin, DEMO_SCHEMA, &logs).await?;
        check.apply(&mut run);
    }
    Ok(run)
}

/// A migrator on the demo's schema reporting to `observer`, with its state schema created and
/// marked as the demo's (so that a later run may drop it).
async fn connect_migrator(
    target: &Target,
    options: &DemoOptions,
    observer: Arc<DemoObserver>,
) -> Result<Migrator, DemoError> {
    let settings = Settings {
        schema: DEMO_SCHEMA.into(),
        state_schema: STATE_SCHEMA.into(),
        exec: options.exec.clone(),
    };
    let migrator = Migrator::connect(target.conn.clone(), settings)
        .await?
        .with_observer(observer);
    migrator.init().await?;
    target
        .admin
        .batch_execute(&format!(
            "COMMENT ON SCHEMA {} IS {}",
            Ident::new(STATE_SCHEMA),
            quote_literal(SCHEMA_MARKER)
        ))
        .await
        .map_err(db("marking the state schema"))?;
    Ok(migrator)
}

/// The old release's clients on `schema`, alone for the baseline; `note` says so.
async fn run_baseline(
    target: &Target,
    options: &DemoOptions,
    phases: &Phases,
    schema: &str,
    notes: &Notes,
    stage: &'static str,
    note: String,
) -> Result<(), DemoError> {
    let old = workload_config(
        target,
        options,
        old_clients(options, schema),
        options.rows as i64,
        BASELINE,
        1,
    );
    phases.mark(BASELINE);
    start_workload(phases, Release::Old, old).await?;
    notes.say(stage, note);
    tokio::time::sleep(options.baseline).await;
    Ok(())
}

/// The run's timeline and the migration's phases in it, and the migration's own time: start
/// and complete (not the overlap between them); when it never ended, everything from its
/// start to the end of the run.
fn migration_timing(
    run: &mut RunReport,
    phases: &Phases,
    end: Instant,
    migration_started: Instant,
    migration_ended: Option<Instant>,
) {
    run.timeline = phases.timeline(end);
    run.phase_spans = phases.spans(end);
    run.migration_phases = [
        START_EXPAND,
        START_BACKFILL,
        START_TRIGGERS,
        START_CATCH_UP,
        START_FINISH,
        COMPLETE,
    ]
    .iter()
    .filter(|p| run.timeline.iter().any(|t| t.name == **p))
    .map(|p| (*p).to_owned())
    .collect();
    run.migration_s = if migration_ended.is_none() {
        end.saturating_duration_since(migration_started)
            .as_secs_f64()
    } else {
        run.timeline
            .iter()
            .filter(|t| run.migration_phases.contains(&t.name))
            .map(|t| t.seconds)
            .sum()
    };
}

/// What pgbaton's run needs between the baseline and the end.
struct PgbatonRun<'a> {
    target: &'a Target,
    options: &'a DemoOptions,
    phases: &'a Phases,
    notes: &'a Notes,
}

impl PgbatonRun<'_> {
    /// Start (the new release's clients join once its schema exists), both releases side by
    /// side, the old one retired, complete, and the new one alone. `migration_ended` is set when
    /// complete returns.
    async fn migrate(
        &self,
        migrator: &Migrator,
        migration: &Migration,
        run: &mut RunReport,
        migration_ended: &mut Option<Instant>,
    ) -> Result<(), DemoError> {
        let (options, phases, notes) = (self.options, self.phases, self.notes);
        let version_schema = version_schema_name(DEMO_SCHEMA, MIGRATION_NAME);
        let half = (options.rows / 2) as i64;
        phases.mark(START_EXPAND);
        notes.say(
            "migration",
            format!("pgbaton start {MIGRATION_NAME}: expand, dual-write triggers, backfill"),
        );
        migrator.start(migration, false).await?;
        phases.mark(BOTH);
        notes.say(
            "migration",
            format!("started: the new version is ready in schema {version_schema}"),
        );
        let new = workload_config(
            self.target,
            options,
            new_clients(options, version_schema.as_str()),
            NEW_INSERT_BASE,
            BOTH,
            2,
        );
        start_workload(phases, Release::New, new).await?;
        notes.say(
            "workload",
            format!(
                "{} new-release clients on {version_schema} (ids {}..{}); both releases run for {:.0}s",
                options.new_clients,
                half + 1,
                options.rows,
                options.overlap.as_secs_f64()
            ),
        );
        tokio::time::sleep(options.overlap).await;
        run.old = stop(phases, Release::Old).await;
        notes.say(
            "workload",
            "old release retired; pgbaton complete: contract",
        );
        phases.mark(COMPLETE);
        migrator.complete().await?;
        *migration_ended = Some(Instant::now());
        phases.mark(AFTER);
        notes.say(
            "migration",
            format!(
                "completed; the new release runs on for {:.0}s",
                options.after.as_secs_f64()
            ),
        );
        tokio::time::sleep(options.after).await;
        Ok(())
    }
}

/// Copies what the observer saw into the run: steps, backfills, retries and marks.
fn observed(observer: &DemoObserver, run: &mut RunReport) {
    run.lock_retries = observer.lock_retries.load(Ordering::Relaxed);
    {
        let record = observer.record();
        run.steps = record.steps.clone();
        run.marks = record.marks.clone();
        run.backfills = record
            .backfills
            .values()
            .map(|p| BackfillSummary {
                table: p.label(),
                rows: p.rows_done,
                rows_updated: p.rows_updated,
                seconds: p.elapsed_seconds,
                rows_per_second: if p.elapsed_seconds > 0.0 {
                    p.rows_done as f64 / p.elapsed_seconds
                } else {
                    0.0
                },
                batches: p.batches,
                batch_size: p.batch_size,
                batch_p50_ms: p.batch_p50_ms,
                batch_p99_ms: p.batch_p99_ms,
            })
            .collect();
    }
    for phase in ["start", "complete"] {
        if let Some(step) = run
            .steps
            .iter()
            .filter(|s| s.phase == phase && s.lock == LockLevel::AccessExclusive.name())
            .max_by(|a, b| a.ms.total_cmp(&b.ms))
        {
            run.longest_exclusive_step.push(step.clone());
        }
    }
}

pub(super) async fn run_naive(
    target: &Target,
    options: &DemoOptions,
    notes: &Notes,
) -> Result<RunReport, DemoError> {
    let mut run = RunReport::new("naive ALTER TABLE");
    create_table(target, NAIVE_SCHEMA, options.rows, notes).await?;
    let phases = Phases::new();
    let note = format!(
        "{} old-release clients on {NAIVE_SCHEMA}.{TABLE}; baseline for {:.0}s",
        options.old_clients,
        options.baseline.as_secs_f64()
    );
    run_baseline(target, options, &phases, NAIVE_SCHEMA, notes, "naive", note).await?;

    phases.mark(NAIVE_ALTER);
    notes.say(
        "naive",
        "the plain ALTER TABLE equivalent, in one transaction",
    );
    let altered = target.admin.batch_execute(&naive_script()).await;
    // A plain deploy switches the application at the same moment.
    run.old = stop(&phases, Release::Old).await;
    match altered {
        Ok(()) => {
            run.completed = true;
            phases.mark(AFTER);
            let new = workload_config(
                target,
                options,
                new_clients(options, NAIVE_SCHEMA),
                NEW_INSERT_BASE,
                AFTER,
                2,
            );
            start_workload(&phases, Release::New, new).await?;
            notes.say(
                "naive",
                format!(
                    "altered; the new release runs for {:.0}s",
                    options.after.as_secs_f64()
                ),
            );
            tokio::time::sleep(options.after).await;
        }
        Err(e) => {
            let _ = target.admin.batch_execute("ROLLBACK").await;
            run.error = Some(pgbaton::pg::describe(&e));
        }
    }
    let end = Instant::now();
    run.new = stop(&phases, Release::New).await;
    naive_timing(&mut run, &phases, end);
    if run.completed {
        let logs: Vec<&WorkloadReport> = run.old.iter().chain(run.new.iter()).collect();
        let check = check_table(&target.admin, NAIVE_SCHEMA, &logs).await?;
        check.apply(&mut run);
    }
    Ok(run)
}

/// The naive change: every statement in one transaction.
fn naive_script() -> String {
    let mut script = format!(
        "BEGIN; SET LOCAL search_path TO {}; ",
        Ident::new(NAIVE_SCHEMA)
    );
    for sql in NAIVE_SQL {
        script.push_str(sql);
        script.push_str("; ");
    }
    script.push_str("COMMIT");
    script
}

/// The naive run's timeline; its migration is the one transaction.
fn naive_timing(run: &mut RunReport, phases: &Phases, end: Instant) {
    run.timeline = phases.timeline(end);
    run.phase_spans = phases.spans(end);
    // The plain ALTER holds ACCESS EXCLUSIVE (or queues for it) from its first statement to
    // its commit: every query of the table waits behind it.
    run.marks = run
        .phase_spans
        .iter()
        .filter(|s| s.name == NAIVE_ALTER)
        .map(|s| Mark {
            kind: MarkKind::ExclusiveLock,
            start_s: s.start_s,
            end_s: s.end_s,
            label: format!("{NAIVE_ALTER} (one transaction)"),
        })
        .collect();
    run.migration_phases = vec![NAIVE_ALTER.to_owned()];
    run.migration_s = run
        .timeline
        .iter()
        .filter(|t| t.name == NAIVE_ALTER)
        .map(|t| t.seconds)
        .sum();
}
