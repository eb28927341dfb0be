//! `migrate` with its options: the history check against the directory (checksums,
//! [`crate::history`]), `--expect-one`, and `--one-version` — every pending file started
//! together as ONE migration: one expand, one backfill per table, one version schema named
//! after the last file, one `complete` contracting them all, one `rollback` undoing them all.
//!
//! A one-version migration is recorded as one row per file: the last file's row carries the
//! combined plan and goes through the usual statuses (its name is the migration's name); the
//! other files' rows are `bundled` with it (`bundle` = its name), share its version schema, and
//! follow it to `completed` or `rolled_back` ([`crate::state::set_status`]). So the history —
//! `pull`, the next `migrate`, checksums — has every file, and the previous version's schema
//! is only dropped by its `complete`.

use std::path::Path;

use serde::Serialize;

use crate::catalog;
use crate::error::{Error, Result};
use crate::format::Migration;
use crate::history::{self, Accept, Finding};
use crate::migrator::{BoxFuture, Migrator};
use crate::plan::{Plan, PlanContext};
use crate::state;
use crate::views::version_schema_name;

/// Options of `migrate`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MigrateOptions {
    /// Complete the last migration too.
    pub complete: bool,
    /// Start every pending file together as one migration.
    pub one_version: bool,
    /// Refuse unless exactly one file is pending.
    pub expect_one: bool,
    /// Accept divergent / missing applied files deliberately.
    pub accept: Accept,
}

/// What `status --dir` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DirCheck {
    pub dir: String,
    /// Applied files that changed or disappeared.
    pub findings: Vec<Finding>,
    /// When the order of the history and the files disagree (`migrate` refuses to run).
    pub order: Option<String>,
    /// Files not applied yet.
    pub pending: Vec<String>,
}

impl Migrator {
    /// Applies every pending migration of `dir` (lexical order) after checking the history
    /// against it: refuses, naming the file, when an applied file changed ("divergent") or
    /// disappeared ("missing") unless `options.accept` says otherwise, and when the order
    /// differs. Without `one_version`, all but the last pending file are started and completed
    /// in turn; the last is left active unless `complete`. With `one_version`, they are started
    /// as one migration (left active unless `complete`); run again after an interruption, it
    /// continues that migration. Returns the names of the files applied.
    pub fn migrate_with<'a>(
        &'a self,
        dir: &'a Path,
        options: &'a MigrateOptions,
    ) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(self.migrate_with_unboxed(dir, options))
    }

    async fn migrate_with_unboxed(
        &self,
        dir: &Path,
        options: &MigrateOptions,
    ) -> Result<Vec<String>> {
        let files = crate::format::load_dir(dir)?;
        state::require_initialized(self.client(), self.state_ident()).await?;
        Box::pin(self.locked(async {
            state::upgrade(self.client(), self.state_ident()).await?;
            let schema = self.schema();
            let history = state::history(self.client(), self.state_ident(), schema).await?;
            let reconciled =
                history::reconcile(&history, &files).map_err(|m| Error::HistoryMismatch {
                    schema: schema.to_string(),
                    dir: dir.display().to_string(),
                    detail: m.0,
                })?;
            let refused = reconciled.refused(options.accept);
            if !refused.is_empty() {
                return Err(Error::Divergent {
                    schema: schema.to_string(),
                    dir: dir.display().to_string(),
                    findings: refused.iter().map(|f| f.to_string()).collect(),
                    flags: flags_for(&refused),
                });
            }
            for (name, sum) in reconciled.to_record(options.accept) {
                state::set_checksum(self.client(), self.state_ident(), schema, &name, &sum).await?;
            }
            for (name, document) in &reconciled.adopt {
                state::adopt_document(self.client(), self.state_ident(), schema, name, document)
                    .await?;
            }
            let pending: Vec<&Migration> = reconciled.pending.iter().map(|&i| &files[i]).collect();
            if let Some(active) = history.iter().find(|m| m.is_active()) {
                // The active migration's files count as applied; continuing it is only right
                // when nothing comes after them.
                if options.one_version && pending.is_empty() {
                    return Box::pin(self.continue_active(active, options.complete, &history))
                        .await;
                }
                return Err(Error::AlreadyActive {
                    schema: schema.to_string(),
                    active: active.name.clone(),
                    requested: format!("the migrations of {}", dir.display()),
                });
            }
            if options.expect_one && pending.len() != 1 {
                return Err(Error::ExpectOne {
                    dir: dir.display().to_string(),
                    pending: pending.iter().map(|m| m.name.clone()).collect(),
                });
            }
            if pending.is_empty() {
                return Ok(Vec::new());
            }
            if options.one_version {
                self.start_one_version(&pending, options.complete).await?;
                return Ok(pending.iter().map(|m| m.name.clone()).collect());
            }
            let mut applied = Vec::new();
            for (i, m) in pending.iter().enumerate() {
                let last = i + 1 == pending.len();
                self.start(m, !last || options.complete).await?;
                applied.push(m.name.clone());
            }
            Ok(applied)
        }))
        .await
    }

    /// Continues the active migration (an interrupted one-version start, say): finishes its
    /// start from the journal, and completes it with `complete`.
    async fn continue_active(
        &self,
        active: &state::MigrationRecord,
        complete: bool,
        history: &[state::MigrationRecord],
    ) -> Result<Vec<String>> {
        match active.status.as_str() {
            state::STARTING => Box::pin(self.finish_start(active)).await?,
            state::ACTIVE => {}
            other => {
                return Err(Error::AlreadyActive {
                    schema: self.schema().to_string(),
                    active: format!("{} ({other})", active.name),
                    requested: "continuing it: run `pgbaton complete` or `pgbaton rollback`".into(),
                })
            }
        }
        if complete {
            self.finish_complete(active).await?;
        }
        let mut names: Vec<String> = history
            .iter()
            .filter(|m| {
                m.bundle.as_deref() == Some(active.name.as_str()) && m.status == state::BUNDLED
            })
            .map(|m| m.name.clone())
            .collect();
        names.push(active.name.clone());
        Ok(names)
    }

    /// Starts `files` (pending, in order, at least one) as one migration named after the last
    /// file, with its version schema; completes it too with `complete`.
    pub fn start_one_version<'a>(
        &'a self,
        files: &'a [&'a Migration],
        complete: bool,
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(self.start_one_version_unboxed(files, complete))
    }

    async fn start_one_version_unboxed(&self, files: &[&Migration], complete: bool) -> Result<()> {
        let Some((last, members)) = files.split_last() else {
            return Ok(());
        };
        if members.is_empty() {
            self.start(last, complete).await?;
            return Ok(());
        }
        self.locked(async {
            state::require_initialized(self.client(), self.state_ident()).await?;
            state::upgrade(self.client(), self.state_ident()).await?;
            let schema = self.schema();
            if let Some(active) = state::active(self.client(), self.state_ident(), schema).await? {
                return Err(Error::AlreadyActive {
                    schema: schema.to_string(),
                    active: active.name,
                    requested: last.name.clone(),
                });
            }
            for m in files {
                if let Some(done) = state::get(self.client(), self.state_ident(), schema, &m.name).await? {
                    if done.status == state::COMPLETED {
                        return Err(Error::AlreadyApplied {
                            schema: schema.to_string(),
                            name: done.name,
                        });
                    }
                }
            }
            let (plan, ctx, parent) = self.prepare_one_version(files).await?;
            if catalog::schema_exists(self.client(), ctx.version_schema.as_str()).await? {
                return Err(Error::HistoryMismatch {
                    schema: schema.to_string(),
                    dir: last.file.clone(),
                    detail: format!(
                        "schema {} already exists; pgbaton creates it as the version schema of \"{}\": \
                         drop or rename it, or set version_schema in the file",
                        ctx.version_schema, last.name
                    ),
                });
            }
            crate::backfill::clear(self.client(), self.state_ident(), &last.name).await?;
            self.record_one_version(files, &plan, &ctx, parent).await?;
            let record = state::get(self.client(), self.state_ident(), schema, &last.name)
                .await?
                .ok_or_else(|| Error::NoActiveMigration {
                    schema: schema.to_string(),
                })?;
            Box::pin(self.finish_start(&record)).await?;
            if complete {
                Box::pin(self.finish_complete(&record)).await?;
            }
            Ok(())
        })
        .await
    }

    /// Records the files of a one-version migration in one transaction: the first ones
    /// `bundled`, the last one `starting` with the combined plan and its journal.
    async fn record_one_version(
        &self,
        files: &[&Migration],
        plan: &Plan,
        ctx: &PlanContext,
        parent: Option<String>,
    ) -> Result<()> {
        let Some((last, members)) = files.split_last() else {
            return Ok(());
        };
        let client = self.client();
        let st = self.state_ident();
        let schema = self.schema();
        let empty_plan = serde_json::to_value(Plan::default())
            .map_err(|e| Error::Other(format!("cannot serialize plan: {e}")))?;
        client.batch_execute("BEGIN").await?;
        let result = async {
            let mut parent = parent;
            for m in members {
                client
                    .execute(
                        &format!(
                            "DELETE FROM {st}.migrations WHERE schema = $1 AND name = $2 AND status = 'rolled_back'"
                        ),
                        &[&schema, &m.name],
                    )
                    .await?;
                client
                    .execute(
                        &format!(
                            "INSERT INTO {st}.migrations (schema, name, parent, version_schema, document, plan,
                                                          status, checksum, bundle, created_by)
                             VALUES ($1, $2, $3, $4, $5, $6, 'bundled', $7, $8,
                                     jsonb_build_object('user', current_user,
                                                        'application_name', current_setting('application_name'),
                                                        'client_addr', inet_client_addr()::text,
                                                        'pgbaton', $9::text))"
                        ),
                        &[
                            &schema,
                            &m.name,
                            &parent,
                            &ctx.version_schema.as_str(),
                            &m.raw,
                            &empty_plan,
                            &history::checksum(&m.raw),
                            &last.name,
                            &env!("CARGO_PKG_VERSION"),
                        ],
                    )
                    .await?;
                parent = Some(m.name.clone());
            }
            state::insert_migration(
                client,
                st,
                state::NewMigration {
                    schema,
                    name: &last.name,
                    parent: parent.as_deref(),
                    version_schema: ctx.version_schema.as_str(),
                    document: &last.raw,
                    plan,
                },
            )
            .await
        }
        .await;
        match result {
            Ok(()) => {
                client.batch_execute("COMMIT").await?;
                Ok(())
            }
            Err(e) => {
                let _ = client.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    }

    /// Plans `files` as one migration against the live schema (as `prepare` does for one).
    async fn prepare_one_version(
        &self,
        files: &[&Migration],
    ) -> Result<(Plan, PlanContext, Option<String>)> {
        let parent =
            state::latest_completed(self.client(), self.state_ident(), self.schema()).await?;
        let previous = parent.as_ref().map(|p| p.version_schema.as_str());
        let (plan, ctx) = self.plan_files(files, previous).await?;
        Ok((plan, ctx, parent.map(|p| p.name)))
    }

    /// Plans the pending files of `dir` as one migration (`plan --one-version`); changes nothing.
    pub async fn plan_one_version(&self, dir: &Path) -> Result<(String, Plan)> {
        let files = crate::format::load_dir(dir)?;
        let history = if state::is_initialized(self.client(), self.state_ident()).await? {
            state::history(self.client(), self.state_ident(), self.schema()).await?
        } else {
            Vec::new()
        };
        let reconciled =
            history::reconcile(&history, &files).map_err(|m| Error::HistoryMismatch {
                schema: self.schema().to_string(),
                dir: dir.display().to_string(),
                detail: m.0,
            })?;
        let pending: Vec<&Migration> = reconciled.pending.iter().map(|&i| &files[i]).collect();
        let Some(last) = pending.last() else {
            return Err(Error::NothingPending {
                dir: dir.display().to_string(),
            });
        };
        let (plan, _, _) = self.prepare_one_version(&pending).await?;
        Ok((last.name.clone(), plan))
    }

    /// Checks the history against `dir` without changing anything (`status --dir`).
    pub async fn check_dir(&self, dir: &Path) -> Result<DirCheck> {
        let files = crate::format::load_dir(dir)?;
        let mut check = DirCheck {
            dir: dir.display().to_string(),
            ..Default::default()
        };
        if !state::is_initialized(self.client(), self.state_ident()).await? {
            check.pending = files.iter().map(|m| m.name.clone()).collect();
            return Ok(check);
        }
        let history = state::history(self.client(), self.state_ident(), self.schema()).await?;
        match history::reconcile(&history, &files) {
            Ok(r) => {
                check.pending = r.pending.iter().map(|&i| files[i].name.clone()).collect();
                check.findings = r.findings;
            }
            Err(m) => check.order = Some(m.0),
        }
        Ok(check)
    }
}

fn flags_for(refused: &[&Finding]) -> String {
    let mut flags = Vec::new();
    if refused
        .iter()
        .any(|f| matches!(f, Finding::Divergent { .. }))
    {
        flags.push("--accept-divergent");
    }
    if refused.iter().any(|f| matches!(f, Finding::Missing { .. })) {
        flags.push("--accept-missing");
    }
    flags.join(" ")
}

/// The version schema and migration name the newest file of `dir` gets: what `latest
/// schema|migration --local DIR` answers without a database (a release built from `dir` pins
/// this version schema). Errors when `dir` has no migration file.
pub fn latest_local(dir: &Path, schema: &str) -> Result<Option<(String, String)>> {
    let files = crate::format::load_dir(dir)?;
    Ok(files.last().map(|m| {
        let version = m.version_schema.clone().unwrap_or_else(|| m.name.clone());
        (
            m.name.clone(),
            version_schema_name(schema, &version).as_str().to_string(),
        )
    }))
}
