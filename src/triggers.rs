//! Dual-write triggers: while a migration is active, a write through either version keeps both
//! physical columns right. `up` runs for writers of the old version, `down` for writers of the new.
//! This module only renders SQL from a [`TriggerSpec`]; the executor runs it as a step.

use serde::{Deserialize, Serialize};

use crate::ident::{Ident, QualName, RawSql};

/// Everything needed to render one table's dual-write trigger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerSpec {
    pub table: QualName,
    /// The migration name (`pgbaton.version` may name it) and its version schema.
    pub migration: String,
    pub version_schema: Ident,
    /// The old version's columns: (name as the old version sees it, physical column).
    pub old_scope: Vec<(Ident, Ident)>,
    /// The new version's columns: (name as the new version sees it, physical column).
    pub new_scope: Vec<(Ident, Ident)>,
    pub rules: Vec<DualWriteRule>,
    /// The marker column set on every row a live write touches (see `BackfillSpec::marker`).
    pub marker: Ident,
}

/// One pair of physical columns kept in sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DualWriteRule {
    /// The physical column the new version writes (e.g. `_pgbaton_new_email`).
    pub new_column: Ident,
    /// `up`: computes `new_column` from a row written by the old version, in the old version's
    /// names.
    pub up: RawSql,
    /// The physical column the old version writes, when it has one (not for `add_column`).
    pub old_column: Option<Ident>,
    /// `down`: computes `old_column` from a row written by the new version, in its names.
    pub down: Option<RawSql>,
}

/// The step that installs the table's marker column, trigger function and trigger, in one
/// transaction.
pub fn install_step(spec: &TriggerSpec) -> crate::step::Step {
    let _ = spec;
    todo!("triggers::install_step")
}

/// Statements that remove the table's trigger and trigger function (idempotent).
pub fn drop_sql(spec: &TriggerSpec) -> Vec<String> {
    let _ = spec;
    todo!("triggers::drop_sql")
}
