//! `create_constraint`: adds a (multi-column) constraint to an existing table.
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use serde::Deserialize;

use crate::ident::RawSql;
use crate::ops::common::{
    keyword_enum, IndexParameters, MultiColumnSql, Names, TableForeignKeyReference,
};
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::Schema;

/// `create_constraint`: adds constraint `name` of `type` on `columns` of `table`. `up` and `down`
/// map each column the constraint covers to the SQL that converts it (old → new, new → old).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpCreateConstraint {
    pub table: String,
    pub name: String,
    #[serde(rename = "type")]
    pub type_: CreateConstraintType,
    #[serde(default)]
    pub columns: Vec<String>,
    /// Check expression (type `check`).
    #[serde(default)]
    pub check: Option<RawSql>,
    #[serde(default)]
    pub no_inherit: bool,
    #[serde(default)]
    pub index_parameters: Option<IndexParameters>,
    #[serde(default)]
    pub references: Option<TableForeignKeyReference>,
    pub up: MultiColumnSql,
    pub down: MultiColumnSql,
}

keyword_enum! {
    /// The kind of constraint `create_constraint` adds.
    pub enum CreateConstraintType (exact) {
        Unique => "unique",
        Check => "check",
        ForeignKey => "foreign_key",
        PrimaryKey => "primary_key",
    }
}

impl OpCreateConstraint {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "create_constraint";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("table", &self.table);
        n.name("name", &self.name);
        n.list("columns", &self.columns);
        if let Some(p) = &self.index_parameters {
            n.nested("index_parameters", |n| p.names(n));
        }
        if let Some(r) = &self.references {
            n.nested("references", |n| r.names(n));
        }
        n.keys("up", &self.up);
        n.keys("down", &self.down);
    }
}

impl Operation for OpCreateConstraint {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, _schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("create_constraint: validate")
    }

    fn start(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("create_constraint: start")
    }

    fn complete(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("create_constraint: complete")
    }

    fn rollback(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("create_constraint: rollback")
    }

    fn apply(&self, _schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("create_constraint: apply")
    }
}
