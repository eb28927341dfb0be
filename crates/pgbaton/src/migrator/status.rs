//! What the state schema says: `status`, waiting for a migration, the latest version, and
//! the writes each version makes.

use std::time::Duration;

use serde::Serialize;

use super::Migrator;
use crate::error::{Error, Result};
use crate::ident::Ident;
use crate::state::{self, MigrationRecord};
use crate::step::Phase;

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

impl Migrator {
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
            status.active = Some(self.active_status(active, &history).await?);
        }
        Ok(status)
    }

    /// The active migration's part of the status: its journal, backfills, controls and writes.
    async fn active_status(
        &self,
        active: &MigrationRecord,
        history: &[MigrationRecord],
    ) -> Result<ActiveStatus> {
        let schema = self.schema();
        let phases = self.phases_of(&active.name).await?;
        let backfills =
            crate::backfill::status(&self.client, &self.state, Some(&active.name)).await?;
        let controls =
            crate::backfill::controls(&self.client, &self.state, &Ident::new(schema)).await?;
        let versions = self.writes_of(active, None).await?;
        Ok(ActiveStatus {
            name: active.name.clone(),
            status: active.status.clone(),
            version_schema: active.version_schema.clone(),
            started_at: active.started_at.clone(),
            phases,
            backfills,
            bundled: history
                .iter()
                .filter(|m| {
                    m.status == state::BUNDLED && m.bundle.as_deref() == Some(active.name.as_str())
                })
                .map(|m| m.name.clone())
                .collect(),
            controls,
            versions,
        })
    }

    /// The journal of migration `name` per phase: steps done, total, the failed one.
    async fn phases_of(&self, name: &str) -> Result<Vec<PhaseStatus>> {
        // The whole journal in one query, then per phase (in ordinal order).
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT phase, status, error, title FROM {}.steps \
                     WHERE schema = $1 AND migration = $2 ORDER BY ordinal",
                    self.state
                ),
                &[&self.schema(), &name],
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
        Ok(phases)
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

    pub(super) async fn writes_of(
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
}
