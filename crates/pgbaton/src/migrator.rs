//! The public API: `Migrator` runs init, start, complete, rollback, status, migrate, latest and
//! pull against one database and base schema. Every state-changing command holds the per-schema
//! advisory lock for its whole duration; a second migrator fails at once, naming the holder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio_postgres::Client;

use crate::catalog;
use crate::config::ConnConfig;
use crate::error::{Error, Result};
use crate::executor::{ExecOptions, Executor, Journal, Observer, Quiet};
use crate::format::Migration;
use crate::ident::Ident;
use crate::pg;
use crate::plan::{Plan, PlanContext};
use crate::planner::{plan_migrations, PlanFailure};
use crate::state::{self, MigrationRecord};
use crate::step::Phase;
use crate::views::version_schema_name;

/// The future of a long lifecycle call ([`Migrator::start`], [`Migrator::complete`],
/// [`Migrator::rollback`], [`Migrator::migrate_with`], [`Migrator::start_one_version`]), on the
/// heap. Their state machines hold the whole executor, backfill and catalog reads (tens of
/// kilobytes), and an unoptimized build copies a child future into each caller's stack frame at
/// every `.await`: a test or a debug build of an embedding program that awaits several of them
/// in one function overflowed the 2 MiB stack of a test thread (CI, issue #9). Boxed, each
/// caller holds a pointer.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Settings that are not about the connection.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The base schema whose tables are migrated (`public`).
    pub schema: String,
    /// Where pgbaton keeps its state (`pgbaton`).
    pub state_schema: String,
    pub exec: ExecOptions,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            schema: "public".into(),
            state_schema: "pgbaton".into(),
            exec: ExecOptions::default(),
        }
    }
}

/// What `start` did.
#[derive(Clone, Debug, Serialize)]
pub struct StartOutcome {
    pub migration: String,
    pub version_schema: String,
    /// True when an interrupted start was continued from its journal.
    pub resumed: bool,
    pub completed: bool,
}

/// The state of a schema's migrations, for `pgbaton status`.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub schema: String,
    pub state_schema: String,
    pub initialized: bool,
    /// The last completed migration.
    pub latest: Option<String>,
    pub latest_version_schema: Option<String>,
    pub active: Option<ActiveStatus>,
    pub completed_count: usize,
    /// An operator pause (`pgbaton pause`) holds the schema's backfills.
    pub backfills_paused: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ActiveStatus {
    pub name: String,
    pub status: String,
    pub version_schema: String,
    pub started_at: String,
    /// Journal: (phase, steps done, steps total, failed step error if any).
    pub phases: Vec<PhaseStatus>,
    pub backfills: Vec<crate::backfill::BackfillStatus>,
    /// For a one-version migration (`migrate --one-version`): the files it deploys before its
    /// own (the last), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bundled: Vec<String>,
    /// The live controls of the schema's backfills (`pgbaton pause`, `pgbaton set`).
    pub controls: Option<crate::backfill::LiveControls>,
    /// Writes per version since the dual-write triggers were installed (one reading: no rate;
    /// see [`Migrator::version_writes`]).
    pub versions: Vec<crate::version_writes::VersionWrites>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PhaseStatus {
    pub phase: String,
    pub done: usize,
    pub total: usize,
    pub failed: Option<String>,
}

/// The migrator: one connection, one base schema.
pub struct Migrator {
    client: Client,
    conn: ConnConfig,
    settings: Settings,
    state: Ident,
    observer: Arc<dyn Observer>,
    server_version_num: i32,
}

impl Migrator {
    pub async fn connect(conn: ConnConfig, settings: Settings) -> Result<Migrator> {
        let client = pg::connect(&conn).await?;
        // If this process dies mid-statement, let the server notice within a second and end the
        // session (releasing its locks) instead of finishing a long statement for nobody.
        // PostgreSQL 14+; best effort (an older server or a pooler may refuse it).
        let _ = client
            .batch_execute("SET client_connection_check_interval = '1s'")
            .await;
        // On a schema taken over from pgroll (`import pgroll`) whose event triggers are still
        // installed, this flag (the one pgroll sets for its own sessions) keeps them from
        // recording pgbaton's DDL as "inferred" pgroll migrations. A custom setting: any server.
        let _ = client
            .batch_execute("SET pgroll.no_inferred_migrations = 'TRUE'")
            .await;
        let row = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await?;
        Ok(Migrator {
            client,
            conn,
            state: Ident::new(settings.state_schema.clone()),
            settings,
            observer: Arc::new(Quiet),
            server_version_num: row.get(0),
        })
    }

    /// Sends executor events (steps, retries, backfill progress) to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Migrator {
        self.observer = observer;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn conn(&self) -> &ConnConfig {
        &self.conn
    }

    pub(crate) fn schema(&self) -> &str {
        &self.settings.schema
    }

    pub(crate) fn state_ident(&self) -> &Ident {
        &self.state
    }

    /// Runs `f` holding the per-schema advisory lock; releases it on every path.
    pub(crate) async fn locked<T>(
        &self,
        f: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let key = format!("{}.{}", self.settings.state_schema, self.schema());
        if !pg::try_migration_lock(&self.client, &key).await? {
            let holder = pg::lock_holder(&self.client, &key).await?;
            return Err(match holder {
                Some(h) => Error::Locked {
                    schema: self.schema().to_string(),
                    pid: h.pid,
                    application: h.application_name,
                    since: h.since,
                },
                None => Error::Locked {
                    schema: self.schema().to_string(),
                    pid: 0,
                    application: "unknown (lock released while looking)".into(),
                    since: "-".into(),
                },
            });
        }
        let result = f.await;
        // Make sure no aborted transaction hides the unlock.
        let _ = self.client.batch_execute("ROLLBACK").await;
        let unlocked = pg::unlock_migration_lock(&self.client, &key).await;
        match (result, unlocked) {
            (Ok(v), Ok(_)) => Ok(v),
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
        }
    }

    /// Creates the state schema (idempotent).
    pub async fn init(&self) -> Result<()> {
        self.locked(state::init(&self.client, &self.state)).await
    }

    fn journal(&self, name: &str) -> Journal {
        Journal {
            state: self.state.clone(),
            schema: self.schema().to_string(),
            migration: name.to_string(),
        }
    }

    async fn run_phase(&self, name: &str, phase: Phase, plan: &Plan) -> Result<()> {
        if phase == Phase::Rollback && !self.start_touched_anything(name).await? {
            // Nothing of the start ran (e.g. its first step never got its lock): there is
            // nothing to undo, and the undo steps would wait for the same locks again.
            return Ok(());
        }
        let journal = self.journal(name);
        let exec = Executor::new(
            &self.client,
            &self.conn,
            &journal,
            &self.settings.exec,
            self.observer.as_ref(),
        )
        .await?;
        exec.run_plan(plan, phase).await
    }

    /// Whether any complete step of `name` ran (or may have run: `running` after a crash).
    async fn complete_touched_anything(&self, name: &str) -> Result<bool> {
        let statuses = state::step_statuses(
            &self.client,
            &self.state,
            self.schema(),
            name,
            Phase::Complete,
        )
        .await?;
        Ok(statuses.iter().any(|s| s != "planned" && s != "failed"))
    }

    /// How many steps of `phase` are journaled as done.
    async fn steps_done(&self, name: &str, phase: Phase) -> Result<usize> {
        let statuses =
            state::step_statuses(&self.client, &self.state, self.schema(), name, phase).await?;
        Ok(statuses.iter().filter(|s| *s == "done").count())
    }

    /// Whether any start step of `name` ran (or may have run: `running` after a crash).
    async fn start_touched_anything(&self, name: &str) -> Result<bool> {
        let statuses =
            state::step_statuses(&self.client, &self.state, self.schema(), name, Phase::Start)
                .await?;
        Ok(statuses.iter().any(|s| s != "planned" && s != "failed"))
    }

    /// Plans a migration against the live schema without changing anything. Also checks that
    /// no other migration is active and that the version schema name is free.
    pub async fn plan(&self, migration: &Migration) -> Result<Plan> {
        Ok(self.prepare(migration).await?.0)
    }

    /// Validates a migration against the live schema; changes nothing.
    pub async fn validate(&self, migration: &Migration) -> Result<Plan> {
        self.plan(migration).await
    }

    async fn prepare(&self, migration: &Migration) -> Result<(Plan, PlanContext, Option<String>)> {
        let schema = self.schema();
        let initialized = state::is_initialized(&self.client, &self.state).await?;
        let parent = if initialized {
            state::latest_completed(&self.client, &self.state, schema).await?
        } else {
            None
        };
        let previous = parent.as_ref().map(|p| p.version_schema.as_str());
        let (plan, ctx) = self.plan_files(&[migration], previous).await?;
        // What only the server can tell about the file (types, `up` against the old version),
        // before any DDL.
        crate::precheck::check(
            &self.client,
            migration,
            schema,
            ctx.previous_version_schema.as_ref(),
        )
        .await?;
        Ok((plan, ctx, parent.map(|p| p.name)))
    }

    /// Plans `files` (one, or several as one version) against the live schema: the version schema
    /// named after the last file, the previous version's schema if it still exists, and the server's
    /// answers to the probes planning asks (one more planning pass when it asked any).
    pub(crate) async fn plan_files(
        &self,
        files: &[&Migration],
        previous_version_schema: Option<&str>,
    ) -> Result<(Plan, PlanContext)> {
        let Some(last) = files.last() else {
            return Err(Error::Other("no migration to plan".into()));
        };
        let schema = self.schema();
        let version = last
            .version_schema
            .clone()
            .unwrap_or_else(|| last.name.clone());
        let version_schema = version_schema_name(schema, &version);
        if !version_schema.fits() {
            return Err(PlanFailure::Invalid {
                file: last.file.clone(),
                line: None,
                index: 0,
                kind: "version_schema",
                source: crate::plan::PlanError::new(
                    "version_schema",
                    format!("version schema name {version_schema} is longer than 63 bytes; set a shorter version_schema"),
                ),
            }
            .into());
        }
        let mut previous = None;
        if let Some(p) = previous_version_schema {
            if catalog::schema_exists(&self.client, p).await? {
                previous = Some(Ident::new(p));
            }
        }
        let mut ctx = PlanContext {
            migration: last.name.clone(),
            schema: Ident::new(schema),
            version_schema,
            previous_version_schema: previous,
            server_version_num: self.server_version_num,
            state_schema: Some(self.state.clone()),
            facts: Default::default(),
            missing: Default::default(),
        };
        let live = catalog::read_schema(&self.client, schema).await?;
        let (mut plan, _) = plan_migrations(files, live.clone(), &ctx)?;
        // Planning asks the server questions it cannot answer alone (is this default volatile,
        // does this type change rewrite): answer them, then plan again with the answers.
        let missing: Vec<_> = std::mem::take(&mut *ctx.missing_probes())
            .into_iter()
            .collect();
        if !missing.is_empty() {
            for (probe, answer) in catalog::probe(&self.client, &missing).await? {
                ctx.facts.answers.insert(probe, answer);
            }
            plan = plan_migrations(files, live, &ctx)?.0;
        }
        Ok((plan, ctx))
    }

    /// Starts a migration: expand, dual-write triggers, backfill, new version schema. Continues an
    /// interrupted start of the same migration from its journal. With `complete`, completes it too.
    pub fn start<'a>(
        &'a self,
        migration: &'a Migration,
        complete: bool,
    ) -> BoxFuture<'a, Result<StartOutcome>> {
        Box::pin(self.start_unboxed(migration, complete))
    }

    async fn start_unboxed(&self, migration: &Migration, complete: bool) -> Result<StartOutcome> {
        self.locked(async {
            state::require_initialized(&self.client, &self.state).await?;
            state::upgrade(&self.client, &self.state).await?;
            let schema = self.schema();
            let mut resumed = false;
            let record = match state::active(&self.client, &self.state, schema).await? {
                Some(active) if active.name == migration.name => {
                    if active.document != migration.raw {
                        return Err(Error::ChangedWhileActive {
                            name: active.name,
                            file: migration.file.clone(),
                        });
                    }
                    resumed = true;
                    active
                }
                Some(active) => {
                    return Err(Error::AlreadyActive {
                        schema: schema.to_string(),
                        active: active.name,
                        requested: migration.name.clone(),
                    })
                }
                None => {
                    if let Some(done) =
                        state::get(&self.client, &self.state, schema, &migration.name).await?
                    {
                        if done.status == state::COMPLETED {
                            crate::history::refuse_changed(schema, &done, migration)?;
                            return Err(Error::AlreadyApplied {
                                schema: schema.to_string(),
                                name: done.name,
                            });
                        }
                    }
                    let (plan, ctx, parent) = self.prepare(migration).await?;
                    if catalog::schema_exists(&self.client, ctx.version_schema.as_str()).await? {
                        return Err(Error::VersionSchemaExists {
                            version_schema: ctx.version_schema.to_string(),
                            migration: migration.name.clone(),
                        });
                    }
                    crate::precheck::privileges(&self.client, schema, &plan).await?;
                    crate::backfill::clear(&self.client, &self.state, &migration.name).await?;
                    state::insert_migration(
                        &self.client,
                        &self.state,
                        state::NewMigration {
                            schema,
                            name: &migration.name,
                            parent: parent.as_deref(),
                            version_schema: ctx.version_schema.as_str(),
                            document: &migration.raw,
                            plan: &plan,
                        },
                    )
                    .await?;
                    state::get(&self.client, &self.state, schema, &migration.name)
                        .await?
                        .ok_or_else(|| {
                            Error::Other("the migration row vanished after insert".into())
                        })?
                }
            };
            match record.status.as_str() {
                state::STARTING => self.finish_start(&record).await?,
                state::ACTIVE => {}
                state::COMPLETING => {
                    return Err(Error::Completing {
                        done: self.steps_done(&record.name, Phase::Complete).await?,
                        name: record.name,
                    })
                }
                _ => return Err(Error::RollingBack { name: record.name }),
            }
            if complete {
                self.finish_complete(&record).await?;
            }
            Ok(StartOutcome {
                migration: record.name.clone(),
                version_schema: record.version_schema.clone(),
                resumed,
                completed: complete,
            })
        })
        .await
    }

    /// Runs (the rest of) the start phase. A failure in a DDL step rolls back automatically, so
    /// the schema is as before; a failure in a backfill keeps the rows already done and leaves
    /// the migration resumable (`pgbaton start FILE` again) or roll-back-able.
    pub(crate) async fn finish_start(&self, record: &MigrationRecord) -> Result<()> {
        let schema = self.schema();
        match self
            .run_phase(&record.name, Phase::Start, &record.plan)
            .await
        {
            Ok(()) => {
                state::set_status(
                    &self.client,
                    &self.state,
                    schema,
                    &record.name,
                    state::ACTIVE,
                )
                .await
            }
            Err(e) => {
                if matches!(&e, Error::Backfill(b) if b.is_transient()) {
                    return Err(Error::StartFailed {
                        cause: Box::new(e),
                        outcome: "the backfill checkpoint is kept: run `pgbaton start` with the same file (or \
                                  `pgbaton resume`) to continue where it stopped, or `pgbaton rollback` to undo"
                            .into(),
                    });
                }
                state::set_status(
                    &self.client,
                    &self.state,
                    schema,
                    &record.name,
                    state::ROLLING_BACK,
                )
                .await?;
                match self
                    .run_phase(&record.name, Phase::Rollback, &record.plan)
                    .await
                {
                    Ok(()) => {
                        state::set_status(
                            &self.client,
                            &self.state,
                            schema,
                            &record.name,
                            state::ROLLED_BACK,
                        )
                        .await?;
                        Err(Error::StartFailed {
                            cause: Box::new(e),
                            outcome: "start failed and was rolled back: the schema is as before".into(),
                        })
                    }
                    Err(r) => Err(Error::StartFailed {
                        cause: Box::new(e),
                        outcome: format!(
                            "start failed, and the automatic rollback failed too: {r}\n\
                             fix the cause and run `pgbaton rollback` (or `pgbaton rollback --force`)"
                        ),
                    }),
                }
            }
        }
    }

    pub(crate) async fn finish_complete(&self, record: &MigrationRecord) -> Result<()> {
        let schema = self.schema();
        state::set_status(
            &self.client,
            &self.state,
            schema,
            &record.name,
            state::COMPLETING,
        )
        .await?;
        if let Err(e) = self
            .run_phase(&record.name, Phase::Complete, &record.plan)
            .await
        {
            if self.complete_touched_anything(&record.name).await? {
                return Err(e);
            }
            // Nothing of the contract ran: the migration is exactly as it was before `complete`.
            state::set_status(
                &self.client,
                &self.state,
                schema,
                &record.name,
                state::ACTIVE,
            )
            .await?;
            return Err(Error::CompleteFailed {
                cause: Box::new(e),
                outcome: format!(
                    "complete changed nothing: migration \"{}\" is still active, both versions work. \
                     Fix the cause (for a row named above: update it through the old version so that \
                     its `up` gives a valid value, or change it) and run `pgbaton complete` again, \
                     or `pgbaton rollback`",
                    record.name
                ),
            });
        }
        crate::backfill::clear(&self.client, &self.state, &record.name).await?;
        state::set_status(
            &self.client,
            &self.state,
            schema,
            &record.name,
            state::COMPLETED,
        )
        .await
    }

    /// Completes the active migration (finishing an interrupted start first).
    pub fn complete<'a>(&'a self) -> BoxFuture<'a, Result<String>> {
        Box::pin(self.complete_unboxed())
    }

    async fn complete_unboxed(&self) -> Result<String> {
        self.locked(async {
            state::require_initialized(&self.client, &self.state).await?;
            state::upgrade(&self.client, &self.state).await?;
            let record = self.require_active().await?;
            match record.status.as_str() {
                state::STARTING => self.finish_start(&record).await?,
                state::ROLLING_BACK => return Err(Error::RollingBack { name: record.name }),
                _ => {}
            }
            self.finish_complete(&record).await?;
            Ok(record.name)
        })
        .await
    }

    /// [`Migrator::complete`], refused with [`Error::OldVersionWriting`] (exit code 4) while the
    /// old version has written any table of the migration within `quiet` (see
    /// [`crate::version_writes`]; reads are not seen). A complete already under way is not
    /// checked: the old version's columns may be gone.
    pub async fn complete_when_quiet(&self, quiet: Duration) -> Result<String> {
        state::require_initialized(&self.client, &self.state).await?;
        let record = self.require_active().await?;
        if record.status == state::ACTIVE {
            let versions = self.writes_of(&record, None).await?;
            if let Some(old) = versions.iter().find(|v| v.version == "old") {
                if let (Some(at), Some(ago)) = (&old.last_write, old.seconds_since_last_write) {
                    if ago < quiet.as_secs_f64() {
                        return Err(Error::OldVersionWriting {
                            version: old.schema.clone(),
                            last_write: at.clone(),
                            seconds_ago: ago,
                            quiet_seconds: quiet.as_secs(),
                        });
                    }
                }
            }
        }
        self.complete().await
    }

    /// Writes per version of the active migration; with `sample`, read twice that far apart
    /// for a rate.
    pub async fn version_writes(
        &self,
        sample: Option<Duration>,
    ) -> Result<Vec<crate::version_writes::VersionWrites>> {
        state::require_initialized(&self.client, &self.state).await?;
        let record = self.require_active().await?;
        self.writes_of(&record, sample).await
    }

    async fn writes_of(
        &self,
        record: &MigrationRecord,
        sample: Option<Duration>,
    ) -> Result<Vec<crate::version_writes::VersionWrites>> {
        let tables: Vec<_> = record
            .plan
            .triggers
            .iter()
            .map(|t| t.table.clone())
            .collect();
        let sample = sample.unwrap_or(Duration::ZERO);
        let mut versions = crate::version_writes::sample(
            &self.client,
            &tables,
            self.schema(),
            &record.version_schema,
            sample,
        )
        .await?;
        if sample.is_zero() {
            for v in &mut versions {
                v.writes_per_second = None;
            }
        }
        Ok(versions)
    }

    pub(crate) async fn require_active(&self) -> Result<MigrationRecord> {
        state::active(&self.client, &self.state, self.schema())
            .await?
            .ok_or_else(|| Error::NoActiveMigration {
                schema: self.schema().to_string(),
            })
    }

    /// Rolls the active migration back. With `force`, a failing user `sql` step (a raw `down`)
    /// is skipped instead of stopping the rollback; the returned list names what was skipped,
    /// which the caller must undo by hand.
    pub fn rollback<'a>(&'a self, force: bool) -> BoxFuture<'a, Result<RollbackOutcome>> {
        Box::pin(self.rollback_unboxed(force))
    }

    async fn rollback_unboxed(&self, force: bool) -> Result<RollbackOutcome> {
        self.locked(async {
            state::require_initialized(&self.client, &self.state).await?;
            state::upgrade(&self.client, &self.state).await?;
            let record = self.require_active().await?;
            // A complete that ran no contract step (killed before its first one) left nothing
            // to finish: rolling back is as safe as before it began.
            if record.status == state::COMPLETING
                && self.complete_touched_anything(&record.name).await?
            {
                return Err(Error::Completing {
                    done: self.steps_done(&record.name, Phase::Complete).await?,
                    name: record.name,
                });
            }
            let schema = self.schema();
            state::set_status(
                &self.client,
                &self.state,
                schema,
                &record.name,
                state::ROLLING_BACK,
            )
            .await?;
            let mut skipped = Vec::new();
            loop {
                match self
                    .run_phase(&record.name, Phase::Rollback, &record.plan)
                    .await
                {
                    Ok(()) => break,
                    Err(Error::Step {
                        phase: Phase::Rollback,
                        ordinal,
                        title,
                        message,
                    }) if force
                        && matches!(
                            record.plan.rollback.get(ordinal).map(|s| &s.action),
                            Some(crate::step::Action::UserSql(_))
                        ) =>
                    {
                        self.client
                            .batch_execute(&state::mark_step_sql(
                                &self.state,
                                schema,
                                &record.name,
                                Phase::Rollback,
                                ordinal,
                                "done",
                            ))
                            .await?;
                        skipped.push(SkippedStep {
                            title,
                            sql: record.plan.rollback[ordinal].statements().join("\n"),
                            error: message,
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            crate::backfill::clear(&self.client, &self.state, &record.name).await?;
            state::set_status(
                &self.client,
                &self.state,
                schema,
                &record.name,
                state::ROLLED_BACK,
            )
            .await?;
            Ok(RollbackOutcome {
                migration: record.name,
                skipped,
            })
        })
        .await
    }

    /// The state of the schema's migrations.
    pub async fn status(&self) -> Result<Status> {
        let schema = self.schema();
        let initialized = state::is_initialized(&self.client, &self.state).await?;
        let mut status = Status {
            schema: schema.to_string(),
            state_schema: self.settings.state_schema.clone(),
            initialized,
            latest: None,
            latest_version_schema: None,
            active: None,
            completed_count: 0,
            backfills_paused: false,
        };
        if !initialized {
            return Ok(status);
        }
        status.backfills_paused = self.backfills_paused().await.unwrap_or(false);
        let history = state::history(&self.client, &self.state, schema).await?;
        status.completed_count = history
            .iter()
            .filter(|m| m.status == state::COMPLETED)
            .count();
        if let Some(last) = history.iter().rev().find(|m| m.status == state::COMPLETED) {
            status.latest = Some(last.name.clone());
            status.latest_version_schema = Some(last.version_schema.clone());
        }
        if let Some(active) = history.iter().find(|m| m.is_active()) {
            // The whole journal in one query, then per phase (in ordinal order).
            let rows = self
                .client
                .query(
                    &format!(
                        "SELECT phase, status, error, title FROM {}.steps \
                         WHERE schema = $1 AND migration = $2 ORDER BY ordinal",
                        self.state
                    ),
                    &[&schema, &active.name],
                )
                .await?;
            let mut phases = Vec::new();
            for phase in [Phase::Start, Phase::Complete, Phase::Rollback] {
                let rows: Vec<_> = rows
                    .iter()
                    .filter(|r| r.get::<_, String>(0) == phase.as_str())
                    .collect();
                let done = rows
                    .iter()
                    .filter(|r| r.get::<_, String>(1) == "done")
                    .count();
                let failed = rows
                    .iter()
                    .find(|r| r.get::<_, String>(1) == "failed")
                    .map(|r| {
                        format!(
                            "{}: {}",
                            r.get::<_, String>(3),
                            r.get::<_, Option<String>>(2).unwrap_or_default()
                        )
                    });
                phases.push(PhaseStatus {
                    phase: phase.as_str().into(),
                    done,
                    total: rows.len(),
                    failed,
                });
            }
            let backfills =
                crate::backfill::status(&self.client, &self.state, Some(&active.name)).await?;
            let controls =
                crate::backfill::controls(&self.client, &self.state, &Ident::new(schema)).await?;
            let versions = self.writes_of(active, None).await?;
            status.active = Some(ActiveStatus {
                name: active.name.clone(),
                status: active.status.clone(),
                version_schema: active.version_schema.clone(),
                started_at: active.started_at.clone(),
                phases,
                backfills,
                bundled: history
                    .iter()
                    .filter(|m| {
                        m.status == state::BUNDLED
                            && m.bundle.as_deref() == Some(active.name.as_str())
                    })
                    .map(|m| m.name.clone())
                    .collect(),
                controls,
                versions,
            });
        }
        Ok(status)
    }

    /// Waits until the newest migration of this schema is ready (its start finished: the new
    /// version schema exists) or, with `completed`, completed; polls the state schema every
    /// `poll`. Returns its name and version schema. No migration at all, or one still starting
    /// or completing, is waited for, up to `timeout` (then [`Error::Other`], exit 1). When the
    /// newest migration is rolled back — before the wait or while it waits — it will never get
    /// there: [`Error::RolledBack`] (exit 4) at once, never the migration completed before it.
    pub async fn wait_for(
        &self,
        completed: bool,
        timeout: Option<Duration>,
        poll: Duration,
    ) -> Result<(String, String)> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let waited_for = if completed { "completed" } else { "ready" };
        loop {
            if state::is_initialized(&self.client, &self.state).await? {
                let history = state::history(&self.client, &self.state, self.schema()).await?;
                let newest = history.last();
                // A rolled-back migration is not in the history; it is the newest when it came
                // after the last migration there (that one completed: its parent).
                let after_completed = match newest {
                    None => Some(None),
                    Some(m) if m.status == state::COMPLETED => Some(Some(m.name.as_str())),
                    Some(_) => None,
                };
                if let Some(parent) = after_completed {
                    if let Some((name, at)) =
                        state::rolled_back_after(&self.client, &self.state, self.schema(), parent)
                            .await?
                    {
                        return Err(Error::RolledBack {
                            schema: self.schema().to_string(),
                            name,
                            at: at.map(|t| format!(" at {t}")).unwrap_or_default(),
                            waited_for,
                        });
                    }
                }
                if let Some(newest) = newest {
                    let reached = match newest.status.as_str() {
                        state::COMPLETED => true,
                        state::ACTIVE => !completed,
                        _ => false,
                    };
                    if reached {
                        return Ok((newest.name.clone(), newest.version_schema.clone()));
                    }
                }
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Err(Error::Other(format!(
                    "timed out waiting for the migration of schema {} to be {waited_for}",
                    self.schema(),
                )));
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// The newest migration (active or completed) and its version schema.
    pub async fn latest(&self) -> Result<Option<(String, String)>> {
        state::require_initialized(&self.client, &self.state).await?;
        let history = state::history(&self.client, &self.state, self.schema()).await?;
        Ok(history
            .last()
            .map(|m| (m.name.clone(), m.version_schema.clone())))
    }

    /// The last completed migration and its version schema.
    pub async fn latest_completed(&self) -> Result<Option<(String, String)>> {
        state::require_initialized(&self.client, &self.state).await?;
        Ok(
            state::latest_completed(&self.client, &self.state, self.schema())
                .await?
                .map(|m| (m.name, m.version_schema)),
        )
    }

    /// The connection URL that puts the latest version schema first in `search_path`.
    pub async fn latest_url(&self) -> Result<Option<String>> {
        Ok(self
            .latest()
            .await?
            .map(|(_, vs)| self.conn.url_with_search_path(&vs)))
    }

    /// Applies every pending migration of `dir` in lexical order: all but the last are started
    /// and completed; the last is left active unless `complete`. Refuses when the recorded
    /// history does not match the directory. Returns the names applied.
    pub async fn migrate(&self, dir: &Path, complete: bool) -> Result<Vec<String>> {
        let options = crate::one_version::MigrateOptions {
            complete,
            ..Default::default()
        };
        self.migrate_with(dir, &options).await
    }

    /// Writes the documents of the schema's migration history into `dir` as `<name>.json`.
    pub async fn pull(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        state::require_initialized(&self.client, &self.state).await?;
        let history = state::history(&self.client, &self.state, self.schema()).await?;
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            context: format!("cannot create {}", dir.display()),
            source,
        })?;
        let mut written = Vec::new();
        for m in history {
            let path = dir.join(format!("{}.json", m.name));
            let text = serde_json::to_string_pretty(&m.document)
                .map_err(|e| Error::Other(format!("cannot render {}: {e}", m.name)))?;
            std::fs::write(&path, text + "\n").map_err(|source| Error::Io {
                context: format!("cannot write {}", path.display()),
                source,
            })?;
            written.push(path);
        }
        Ok(written)
    }

    /// Changes settings of this schema's running backfills (from any machine): they take
    /// effect from each run's next batch.
    pub async fn set_controls(&self, settings: &[crate::backfill::ControlSetting]) -> Result<()> {
        state::require_initialized(&self.client, &self.state).await?;
        state::upgrade(&self.client, &self.state).await?;
        crate::backfill::set_controls(
            &self.client,
            &self.state,
            &Ident::new(self.schema()),
            settings,
        )
        .await
        .map_err(Error::from)
    }

    /// Whether an operator pause holds this schema's backfills.
    pub async fn backfills_paused(&self) -> Result<bool> {
        if !state::is_initialized(&self.client, &self.state).await? {
            return Ok(false);
        }
        crate::backfill::is_paused(&self.client, &self.state, &Ident::new(self.schema()))
            .await
            .map_err(Error::from)
    }

    /// Pauses the running backfill of this schema (from any machine). Refused when no start is
    /// under way: a pause left behind would hold the next start without a word.
    pub async fn pause(&self) -> Result<()> {
        state::require_initialized(&self.client, &self.state).await?;
        match state::active(&self.client, &self.state, self.schema()).await? {
            Some(active) if active.status == state::STARTING => {}
            _ => {
                return Err(Error::NothingToPause {
                    schema: self.schema().to_string(),
                })
            }
        }
        crate::backfill::pause(&self.client, &self.state, &Ident::new(self.schema()))
            .await
            .map_err(Error::from)
    }

    /// Lifts an operator pause, and continues an interrupted start (e.g. after the process running
    /// the backfill was killed) from its journal and backfill checkpoint. Returns the migration
    /// whose start was continued, if any.
    pub async fn resume(&self) -> Result<Option<String>> {
        state::require_initialized(&self.client, &self.state).await?;
        crate::backfill::resume(&self.client, &self.state, &Ident::new(self.schema())).await?;
        let Some(active) = state::active(&self.client, &self.state, self.schema()).await? else {
            return Ok(None);
        };
        if active.status != state::STARTING {
            return Ok(None);
        }
        // Another process may still be running that start (and was only paused): the advisory
        // lock tells, and then lifting the pause was all there was to do.
        let result = self
            .locked(async {
                let record = self.require_active().await?;
                if record.status == state::STARTING {
                    self.finish_start(&record).await?;
                    Ok(Some(record.name))
                } else {
                    Ok(None)
                }
            })
            .await;
        match result {
            Err(Error::Locked { .. }) => Ok(None),
            other => other,
        }
    }
}

impl Migrator {
    /// Checks, batch by batch, that the active migration's dual-written columns agree with their
    /// `up` (and `down`) expressions: one report per table with a dual-write trigger.
    pub async fn verify(
        &self,
        opts: &crate::verify::VerifyOptions,
    ) -> Result<Vec<crate::verify::VerifyReport>> {
        state::require_initialized(&self.client, &self.state).await?;
        let active = self.require_active().await?;
        let mut reports = Vec::new();
        for spec in &active.plan.triggers {
            // Walk the table the way its backfill did (keyset or ctid).
            let key = active
                .plan
                .start
                .iter()
                .find_map(|s| match &s.action {
                    crate::step::Action::Backfill(b) if b.table == spec.table => {
                        Some(b.key.clone())
                    }
                    _ => None,
                })
                .unwrap_or(crate::step::BackfillKey::Ctid);
            reports.push(crate::verify::verify(&self.client, spec, &key, opts).await?);
        }
        Ok(reports)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RollbackOutcome {
    pub migration: String,
    /// Steps skipped by `--force`: the caller must undo these by hand.
    pub skipped: Vec<SkippedStep>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SkippedStep {
    pub title: String,
    pub sql: String,
    pub error: String,
}
