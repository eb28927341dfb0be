//! The executor: runs a phase's steps in order, each journaled before and after it runs. Every
//! transaction starts with `SET LOCAL lock_timeout` (pooler-safe); a lock timeout or deadlock
//! retries the whole transaction with jittered exponential backoff until `lock_retry_deadline`,
//! then fails naming the blocking sessions. While a step waits, a second connection watches what
//! blocks it and cancels a (non-wraparound) autovacuum worker, as PostgreSQL itself would only
//! after `deadlock_timeout`. `CONCURRENTLY` statements run outside any transaction.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::backfill::{BackfillOptions, Progress};
use crate::config::ConnConfig;
use crate::error::{Error, Result};
use crate::ident::{Ident, Literal};
use crate::pg::{self, Blocker};
use crate::state;
use crate::step::{Action, Phase, Step};

/// When the watcher first looks at what blocks a running step, and how often after that.
const WATCH_FIRST: Duration = Duration::from_millis(30);
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// What the executor reports while it runs; the CLI renders it, the library never prints.
#[derive(Debug)]
pub enum Event<'a> {
    StepStarted {
        phase: Phase,
        ordinal: usize,
        total: usize,
        step: &'a Step,
    },
    StepSkipped {
        phase: Phase,
        ordinal: usize,
        total: usize,
        step: &'a Step,
    },
    StepFinished {
        phase: Phase,
        ordinal: usize,
        step: &'a Step,
        elapsed: Duration,
        attempts: u32,
    },
    LockRetry {
        step: &'a Step,
        attempt: u32,
        backoff: Duration,
        blockers: &'a [Blocker],
    },
    AutovacuumCancelled {
        step: &'a Step,
        pids: &'a [i32],
    },
    Backfill(&'a Progress),
}

/// Receives executor events.
pub trait Observer: Send + Sync {
    fn event(&self, event: &Event<'_>);
}

/// An observer that ignores everything.
pub struct Quiet;

impl Observer for Quiet {
    fn event(&self, _event: &Event<'_>) {}
}

/// Executor settings.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// `SET LOCAL lock_timeout` of every transaction that takes a table lock.
    pub lock_timeout: Duration,
    /// How long to keep retrying one step on lock timeouts before giving up.
    pub lock_retry_deadline: Duration,
    /// First backoff between retries (doubles, capped, with full jitter).
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// Cancel non-wraparound autovacuum workers that block a step.
    pub cancel_autovacuum: bool,
    /// `max_parallel_maintenance_workers` of a `CREATE INDEX CONCURRENTLY`. `None` (the
    /// default): 0 — the build in one process — while the backfill's latency budget is on and
    /// another client session is busy, so the build leaves the application the other cores;
    /// PostgreSQL's own setting otherwise (an idle database gets the parallel build).
    pub index_build_workers: Option<u32>,
    pub backfill: BackfillOptions,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            lock_timeout: Duration::from_millis(500),
            lock_retry_deadline: Duration::from_secs(300),
            retry_base: Duration::from_millis(50),
            retry_cap: Duration::from_secs(5),
            cancel_autovacuum: true,
            index_build_workers: None,
            backfill: BackfillOptions::default(),
        }
    }
}

/// Where the journal rows of the running migration live.
#[derive(Clone, Debug)]
pub struct Journal {
    pub state: Ident,
    pub schema: String,
    pub migration: String,
}

/// Runs steps of one phase of one migration.
pub struct Executor<'a> {
    client: &'a Client,
    conn: &'a ConnConfig,
    journal: &'a Journal,
    opts: &'a ExecOptions,
    observer: &'a dyn Observer,
    /// `pg_backend_pid()` of `client`, for the watcher.
    backend_pid: i32,
    /// The watcher's connection, opened the first time a step has to wait.
    watcher: tokio::sync::OnceCell<Option<Client>>,
}

impl<'a> Executor<'a> {
    /// `client` runs the steps; `conn` opens the watcher's second connection when a step waits.
    pub async fn new(
        client: &'a Client,
        conn: &'a ConnConfig,
        journal: &'a Journal,
        opts: &'a ExecOptions,
        observer: &'a dyn Observer,
    ) -> Result<Executor<'a>> {
        let backend_pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        Ok(Executor {
            client,
            conn,
            journal,
            opts,
            observer,
            backend_pid,
            watcher: tokio::sync::OnceCell::new(),
        })
    }

    /// Runs a phase of a stored plan: like [`Executor::run_phase`], and in the rollback phase a
    /// step listed in `plan.rollback_requires` is skipped (journaled as done) when the start
    /// steps it depends on never ran.
    pub async fn run_plan(&self, plan: &crate::plan::Plan, phase: Phase) -> Result<()> {
        let mut skip = std::collections::BTreeSet::new();
        if phase == Phase::Rollback && !plan.rollback_requires.is_empty() {
            let started = state::step_statuses(
                self.client,
                &self.journal.state,
                &self.journal.schema,
                &self.journal.migration,
                Phase::Start,
            )
            .await?;
            for (ordinal, requires) in &plan.rollback_requires {
                if requires
                    .iter()
                    .any(|r| started.get(*r).map(String::as_str) != Some("done"))
                {
                    skip.insert(*ordinal);
                }
            }
        }
        self.run_steps(phase, plan.phase(phase), &skip).await
    }

    /// Runs every step of `phase` not yet journaled as done, in order.
    pub async fn run_phase(&self, phase: Phase, steps: &[Step]) -> Result<()> {
        self.run_steps(phase, steps, &Default::default()).await
    }

    async fn run_steps(
        &self,
        phase: Phase,
        steps: &[Step],
        skip: &std::collections::BTreeSet<usize>,
    ) -> Result<()> {
        let statuses = state::step_statuses(
            self.client,
            &self.journal.state,
            &self.journal.schema,
            &self.journal.migration,
            phase,
        )
        .await?;
        let total = steps.len();
        for (ordinal, step) in steps.iter().enumerate() {
            if statuses.get(ordinal).map(String::as_str) == Some("done") {
                self.observer.event(&Event::StepSkipped {
                    phase,
                    ordinal,
                    total,
                    step,
                });
                continue;
            }
            if skip.contains(&ordinal) {
                // What this step undoes never ran.
                self.client
                    .batch_execute(&self.mark(phase, ordinal, "done"))
                    .await?;
                self.observer.event(&Event::StepSkipped {
                    phase,
                    ordinal,
                    total,
                    step,
                });
                continue;
            }
            self.observer.event(&Event::StepStarted {
                phase,
                ordinal,
                total,
                step,
            });
            let started = Instant::now();
            match self.run_step(phase, ordinal, step).await {
                Ok(attempts) => self.observer.event(&Event::StepFinished {
                    phase,
                    ordinal,
                    step,
                    elapsed: started.elapsed(),
                    attempts,
                }),
                Err(e) => {
                    let mut message = e.to_string();
                    // The connection may be in an aborted transaction; the journal write must not
                    // hide the original error.
                    let _ = self.client.batch_execute("ROLLBACK").await;
                    // "violated by some row": name the rows.
                    if let Some(rows) = crate::diagnose::violating_rows(self.client, &e).await {
                        message = format!("{message}\n{rows}");
                    }
                    let _ = state::fail_step(
                        self.client,
                        &self.journal.state,
                        &self.journal.schema,
                        &self.journal.migration,
                        phase,
                        ordinal,
                        &message,
                    )
                    .await;
                    return Err(match e {
                        // These carry their own context; a backfill error must stay recognisable: the
                        // migrator keeps its checkpoint instead of rolling back.
                        Error::LockDeadline { .. } | Error::Backfill(_) => e,
                        _ => Error::Step {
                            phase,
                            ordinal,
                            title: step.title.clone(),
                            message,
                        },
                    });
                }
            }
        }
        Ok(())
    }

    fn mark(&self, phase: Phase, ordinal: usize, status: &str) -> String {
        state::mark_step_sql(
            &self.journal.state,
            &self.journal.schema,
            &self.journal.migration,
            phase,
            ordinal,
            status,
        )
    }

    /// Runs one step; returns the number of attempts it took.
    async fn run_step(&self, phase: Phase, ordinal: usize, step: &Step) -> Result<u32> {
        match &step.action {
            Action::Transaction(sql) => {
                self.run_transaction(phase, ordinal, step, sql, Statements::EachAlone)
                    .await
            }
            Action::UserSql(sql) => {
                // User SQL sees the migrated schema, as pgroll runs it.
                let search_path = format!(
                    "SET LOCAL search_path = {}",
                    crate::ident::quote_ident(&self.journal.schema)
                );
                let sql = [search_path, sql.as_str().to_string()];
                self.run_transaction(phase, ordinal, step, &sql, Statements::UserScript)
                    .await
            }
            Action::NonTransactional(sql) => {
                self.journaled(phase, ordinal, self.run_outside_transaction(step, sql))
                    .await
            }
            Action::CreateIndexConcurrently { index, sql } => {
                self.journaled(phase, ordinal, self.create_index(step, index, sql))
                    .await
            }
            Action::Backfill(spec) => self.journaled(phase, ordinal, self.backfill(spec)).await,
        }
    }

    /// Runs `work` (a step outside a transaction), journaled as running before and done after.
    async fn journaled(
        &self,
        phase: Phase,
        ordinal: usize,
        work: impl std::future::Future<Output = Result<u32>>,
    ) -> Result<u32> {
        self.client
            .batch_execute(&self.mark(phase, ordinal, "running"))
            .await?;
        let attempts = work.await?;
        self.client
            .batch_execute(&self.mark(phase, ordinal, "done"))
            .await?;
        Ok(attempts)
    }

    /// `CREATE INDEX CONCURRENTLY`, unless a valid index of that name exists (a re-run); an
    /// INVALID one left by a failed or interrupted build is dropped and built again.
    async fn create_index(
        &self,
        step: &Step,
        index: &crate::ident::QualName,
        sql: &str,
    ) -> Result<u32> {
        let row = self
            .client
            .query_opt(
                "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)",
                &[&index.to_string()],
            )
            .await?;
        match row.map(|r| r.get::<_, bool>(0)) {
            Some(true) => Ok(0),
            Some(false) => {
                let dropped = self
                    .run_outside_transaction(step, &drop_index_sql(index))
                    .await?;
                Ok(dropped + self.build_index(step, index, sql).await?)
            }
            None => self.build_index(step, index, sql).await,
        }
    }

    /// A backfill step: one run of the engine (it retries its own batches).
    async fn backfill(&self, spec: &crate::step::BackfillSpec) -> Result<u32> {
        let observer = self.observer;
        let mut on_progress = |p: &Progress| observer.event(&Event::Backfill(p));
        let result = crate::backfill::run_connected(
            self.client,
            Some(self.conn),
            &self.journal.state,
            &self.journal.migration,
            spec,
            &self.opts.backfill,
            &mut on_progress,
        )
        .await;
        match result {
            Ok(_) => Ok(1),
            // An error in the data (an `up` that raises, a value that does not fit): name the
            // first row that causes it.
            Err(e) if e.is_data_error() => {
                let row = crate::diagnose::failing_backfill_row(self.client, spec).await;
                let cause = Error::Backfill(e);
                Err(match row {
                    Some(row) => Error::FailingRow {
                        cause: Box::new(cause),
                        row,
                    },
                    None => cause,
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `CREATE INDEX CONCURRENTLY`; a failed build leaves an INVALID index, dropped before the
    /// error is returned so a re-run starts clean.
    async fn build_index(
        &self,
        step: &Step,
        index: &crate::ident::QualName,
        sql: &str,
    ) -> Result<u32> {
        let workers = self.index_build_workers().await;
        if let Some(n) = workers {
            self.client
                .batch_execute(&format!("SET max_parallel_maintenance_workers = {n}"))
                .await?;
        }
        let result = self.run_outside_transaction(step, sql).await;
        if workers.is_some() {
            let _ = self
                .client
                .batch_execute("RESET max_parallel_maintenance_workers")
                .await;
        }
        match result {
            Ok(n) => Ok(n),
            Err(e) => {
                let _ = self.client.batch_execute(&drop_index_sql(index)).await;
                Err(e)
            }
        }
    }

    /// The `max_parallel_maintenance_workers` of an index build (see
    /// [`ExecOptions::index_build_workers`]); `None`: PostgreSQL's own.
    async fn index_build_workers(&self) -> Option<u32> {
        if self.opts.index_build_workers.is_some() {
            return self.opts.index_build_workers;
        }
        self.opts.backfill.latency_budget()?;
        let ours = crate::backfill::our_sessions(self.client).await;
        let seen = crate::backfill::application_activity(self.client, &ours).await;
        seen.busy.then_some(0)
    }

    /// A statement outside a transaction: no lock timeout (it waits for older transactions by
    /// design and blocks nobody), retried on deadlock.
    async fn run_outside_transaction(&self, step: &Step, sql: &str) -> Result<u32> {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            // Separate round trips: several statements in one simple query form an implicit
            // transaction block, where CONCURRENTLY is refused.
            self.client.batch_execute("SET lock_timeout = 0").await?;
            // The extended protocol: one statement, never a script.
            let statement = async { self.client.execute_typed(sql, &[]).await.map(|_| ()) };
            let (result, _) = self.watch(step, statement).await;
            let _ = self.client.batch_execute("RESET lock_timeout").await;
            match result {
                Ok(()) => return Ok(attempt),
                Err(e)
                    if pg::is_deadlock(&e) && started.elapsed() < self.opts.lock_retry_deadline =>
                {
                    let backoff = self.backoff(attempt, started);
                    self.observer.event(&Event::LockRetry {
                        step,
                        attempt,
                        backoff,
                        blockers: &[],
                    });
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One transaction: lock timeout, the statements, the journal flip; retried as a unit.
    ///
    /// Each generated statement runs on its own through the extended protocol, which refuses a
    /// string of two statements: a user fragment inside one (a `type`, a `default`, a `check`)
    /// can never run as a statement of its own, whatever it contains. Only a `sql` operation's
    /// own script (the last statement of a [`Statements::UserScript`]) runs as a script.
    async fn run_transaction(
        &self,
        phase: Phase,
        ordinal: usize,
        step: &Step,
        sql: &[String],
        statements: Statements,
    ) -> Result<u32> {
        let begin = format!(
            "BEGIN;\nSET LOCAL lock_timeout = {};\nSET LOCAL statement_timeout = 0",
            Literal::new(format!("{}ms", self.opts.lock_timeout.as_millis().max(1)))
        );
        let commit = format!("{};\nCOMMIT", self.mark(phase, ordinal, "done"));
        let run = || async {
            self.client.batch_execute(&begin).await?;
            for (i, s) in sql.iter().enumerate() {
                let s = s.trim_end().trim_end_matches(';');
                if statements == Statements::UserScript && i + 1 == sql.len() {
                    self.client.batch_execute(s).await?;
                } else {
                    self.client.execute_typed(s, &[]).await?;
                }
            }
            self.client.batch_execute(&commit).await
        };

        let started = Instant::now();
        let mut attempt = 0u32;
        let mut last_blockers: Vec<Blocker> = Vec::new();
        loop {
            attempt += 1;
            let (result, blockers) = self.watch(step, run()).await;
            match result {
                Ok(()) => return Ok(attempt),
                Err(e) => {
                    let _ = self.client.batch_execute("ROLLBACK").await;
                    if !pg::is_retryable_lock_error(&e) {
                        return Err(e.into());
                    }
                    if !blockers.is_empty() {
                        last_blockers = blockers;
                    }
                    if started.elapsed() >= self.opts.lock_retry_deadline {
                        return Err(Error::LockDeadline {
                            title: step.title.clone(),
                            attempts: attempt,
                            elapsed: started.elapsed(),
                            blockers: pg::BlockerList(&last_blockers).to_string(),
                        });
                    }
                    let backoff = self.backoff(attempt, started);
                    self.observer.event(&Event::LockRetry {
                        step,
                        attempt,
                        backoff,
                        blockers: &last_blockers,
                    });
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// Full-jitter exponential backoff, never sleeping past the retry deadline (the last
    /// attempt then runs right at it).
    fn backoff(&self, attempt: u32, started: Instant) -> Duration {
        let jittered =
            crate::pg::jittered_backoff(self.opts.retry_base, self.opts.retry_cap, attempt);
        let left = self
            .opts
            .lock_retry_deadline
            .saturating_sub(started.elapsed());
        jittered.min(left)
    }

    /// Runs `fut` while a second connection watches what blocks this session, cancelling
    /// non-wraparound autovacuum workers in the way.
    /// Returns the step's result and the sessions last seen blocking it.
    async fn watch<F>(
        &self,
        step: &Step,
        fut: F,
    ) -> (std::result::Result<(), tokio_postgres::Error>, Vec<Blocker>)
    where
        F: std::future::Future<Output = std::result::Result<(), tokio_postgres::Error>>,
    {
        tokio::pin!(fut);
        // Most steps finish at once: only look when the step is still running.
        tokio::select! {
            r = &mut fut => return (r, Vec::new()),
            _ = tokio::time::sleep(WATCH_FIRST) => {}
        }
        let pid = self.backend_pid;
        // The main connection is busy with the step: watch from a second one, kept for the
        // executor's life (a failed connect is not retried: the step runs unwatched).
        let watcher = self
            .watcher
            .get_or_init(|| async { pg::connect(self.conn).await.ok() })
            .await;
        let Some(watcher) = watcher else {
            return (fut.await, Vec::new());
        };
        let mut seen: Vec<Blocker> = Vec::new();
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                r = &mut fut => return (r, seen),
                _ = tokio::time::sleep(wait) => {
                    wait = WATCH_INTERVAL;
                    let Ok(blockers) = pg::blockers_of(watcher, pid).await else {
                        continue;
                    };
                    if self.opts.cancel_autovacuum && blockers.iter().any(|b| b.autovacuum.is_some()) {
                        if let Ok(pids) = pg::cancel_autovacuum_workers(watcher, pid, &blockers).await {
                            if !pids.is_empty() {
                                self.observer.event(&Event::AutovacuumCancelled { step, pids: &pids });
                            }
                        }
                    }
                    if !blockers.is_empty() {
                        seen = blockers;
                    }
                }
            }
        }
    }
}

/// How the statements of a transaction step run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Statements {
    /// Each one alone, through the extended protocol (one statement per execution).
    EachAlone,
    /// The same, except the last, a user's `sql` script, which runs as written.
    UserScript,
}

/// Drops an index (an INVALID one left by a failed concurrent build) without blocking writes.
fn drop_index_sql(index: &crate::ident::QualName) -> String {
    format!("DROP INDEX CONCURRENTLY IF EXISTS {index}")
}
