//! The controls of a schema's running backfills, from any machine: pause, set, resume.

use super::Migrator;
use crate::error::{Error, Result};
use crate::ident::Ident;
use crate::state;

impl Migrator {
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
