//! `drop_multicolumn_constraint`: drops a constraint that may cover several columns.
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use serde::Deserialize;

use crate::ops::common::{MultiColumnSql, Names};
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::Schema;

/// `drop_multicolumn_constraint`: drops constraint `name` from `table`. `up` and `down` map each
/// column the constraint covers to the SQL that converts it; `up` may be omitted.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpDropMultiColumnConstraint {
    pub table: String,
    pub name: String,
    #[serde(default)]
    pub up: MultiColumnSql,
    pub down: MultiColumnSql,
}

impl OpDropMultiColumnConstraint {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "drop_multicolumn_constraint";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("table", &self.table);
        n.name("name", &self.name);
        n.keys("up", &self.up);
        n.keys("down", &self.down);
    }
}

impl Operation for OpDropMultiColumnConstraint {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, _schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("drop_multicolumn_constraint: validate")
    }

    fn start(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("drop_multicolumn_constraint: start")
    }

    fn complete(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("drop_multicolumn_constraint: complete")
    }

    fn rollback(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("drop_multicolumn_constraint: rollback")
    }

    fn apply(&self, _schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("drop_multicolumn_constraint: apply")
    }
}
