//! The public API: `Migrator` runs init, start, complete, rollback, status, migrate, latest and
//! pull against one database and base schema. Every state-changing command holds the per-schema
//! advisory lock for its whole duration; a second migrator fails at once, naming the holder.
//!
//! Here: connecting, the lock, the journal and planning against the live schema. The commands
//! live in submodules, all on [`Migrator`]: `lifecycle` (start, complete, rollback), `status`
//! (status, wait, latest, writes per version), `controls` (pause, set, resume) and `verify`;
//! `migrate` and `pull` of a directory here, the rest of `migrate` in [`crate::one_version`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

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

mod controls;
mod lifecycle;
mod status;
mod verify;

pub use lifecycle::{RollbackOutcome, SkippedStep, StartOutcome};
pub use status::{ActiveStatus, PhaseStatus, Status};

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

    pub(crate) async fn require_active(&self) -> Result<MigrationRecord> {
        state::active(&self.client, &self.state, self.schema())
            .await?
            .ok_or_else(|| Error::NoActiveMigration {
                schema: self.schema().to_string(),
            })
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
}
