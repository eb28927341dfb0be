//! `sql`: runs the user's SQL (key `sql` in the file).
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use serde::Deserialize;

use crate::ident::RawSql;
use crate::ops::common::Names;
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::Schema;

/// `sql`: runs `up` on start (or on complete when `onComplete` is set); rollback runs `down`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpRawSql {
    pub up: RawSql,
    #[serde(default)]
    pub down: RawSql,
    /// Run `up` on complete instead of on start.
    #[serde(default, rename = "onComplete")]
    pub on_complete: bool,
}

impl OpRawSql {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "sql";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, _names: &mut Names<'a>) {
        // Raw SQL names nothing pgbaton can check.
    }
}

impl Operation for OpRawSql {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, _schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("sql: validate")
    }

    fn start(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("sql: start")
    }

    fn complete(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("sql: complete")
    }

    fn rollback(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("sql: rollback")
    }

    fn apply(&self, _schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("sql: apply")
    }
}
