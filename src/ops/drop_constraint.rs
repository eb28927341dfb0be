//! `drop_constraint`: drops a single-column constraint (deprecated by pgroll in favour of
//! `drop_multicolumn_constraint`).
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use serde::Deserialize;

use crate::ident::RawSql;
use crate::ops::common::Names;
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::Schema;

/// `drop_constraint`: drops constraint `name` from `table`. pgroll's schema requires `down` but
/// documents `""` as its default; it defaults to empty here and `validate` requires it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpDropConstraint {
    pub table: String,
    pub name: String,
    pub up: RawSql,
    #[serde(default)]
    pub down: RawSql,
}

impl OpDropConstraint {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "drop_constraint";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("table", &self.table);
        n.name("name", &self.name);
    }
}

impl Operation for OpDropConstraint {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, _schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("drop_constraint: validate")
    }

    fn start(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("drop_constraint: start")
    }

    fn complete(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("drop_constraint: complete")
    }

    fn rollback(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("drop_constraint: rollback")
    }

    fn apply(&self, _schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("drop_constraint: apply")
    }
}
