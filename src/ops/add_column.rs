//! `add_column`: adds a column to an existing table.
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use serde::Deserialize;

use crate::ident::RawSql;
use crate::ops::common::{Column, Names};
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::Schema;

/// `add_column`: adds `column` to `table`; `up` fills it for rows written by the old version.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpAddColumn {
    pub table: String,
    pub column: Column,
    /// SQL expression computing the new column from the old row; empty for none.
    #[serde(default)]
    pub up: RawSql,
}

impl OpAddColumn {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "add_column";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("table", &self.table);
        n.nested("column", |n| self.column.names(n));
    }
}

impl Operation for OpAddColumn {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, _schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("add_column: validate")
    }

    fn start(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("add_column: start")
    }

    fn complete(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("add_column: complete")
    }

    fn rollback(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("add_column: rollback")
    }

    fn apply(&self, _schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("add_column: apply")
    }
}
