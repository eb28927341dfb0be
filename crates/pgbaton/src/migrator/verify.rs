//! `verify`: the active migration's dual-written columns against their expressions.

use super::Migrator;
use crate::error::Result;
use crate::state;

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
