//! The lifecycle of a migration: start (expand), complete (contract), rollback.

use std::time::Duration;

use serde::Serialize;

use super::{BoxFuture, Migrator};
use crate::catalog;
use crate::error::{Error, Result};
use crate::format::Migration;
use crate::state::{self, MigrationRecord};
use crate::step::Phase;

/// What `start` did.
#[derive(Clone, Debug, Serialize)]
pub struct StartOutcome {
    pub migration: String,
    pub version_schema: String,
    /// True when an interrupted start was continued from its journal.
    pub resumed: bool,
    pub completed: bool,
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

impl Migrator {
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
                None => self.record_new(migration).await?,
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

    /// Plans a migration no start has seen yet and records it (as starting), unless it was
    /// applied already, its version schema exists or the role lacks a privilege it needs.
    async fn record_new(&self, migration: &Migration) -> Result<MigrationRecord> {
        let schema = self.schema();
        if let Some(done) = state::get(&self.client, &self.state, schema, &migration.name).await? {
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
            .ok_or_else(|| Error::Other("the migration row vanished after insert".into()))
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
}
