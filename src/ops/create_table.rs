//! `create_table`: creates a table.
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use serde::Deserialize;

use crate::ops::common::{Column, Constraint, Names};
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::Schema;

/// `create_table`: creates table `name` with `columns` and table `constraints`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpCreateTable {
    pub name: String,
    pub columns: Vec<Column>,
    /// Table comment (a string literal, not SQL).
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub constraints: Vec<Constraint>,
}

impl OpCreateTable {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "create_table";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("name", &self.name);
        for (i, column) in self.columns.iter().enumerate() {
            n.element("columns", i, |n| column.names(n));
        }
        for (i, constraint) in self.constraints.iter().enumerate() {
            n.element("constraints", i, |n| constraint.names(n));
        }
    }
}

impl Operation for OpCreateTable {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, _schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("create_table: validate")
    }

    fn start(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("create_table: start")
    }

    fn complete(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("create_table: complete")
    }

    fn rollback(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("create_table: rollback")
    }

    fn apply(&self, _schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("create_table: apply")
    }
}
