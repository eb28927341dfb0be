//! `alter_column`: changes a column's type, nullability, default, comment or constraints.
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use serde::Deserialize;

use crate::ident::RawSql;
use crate::ops::common::{CheckConstraint, ForeignKeyReference, Names, Nullable, UniqueConstraint};
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::Schema;

/// `alter_column`: changes one or more properties of `column` in `table`. `up` computes the new
/// column from the old, `down` the old from the new. pgroll's schema lists `up` and `down` as
/// required but documents `""` as their default, and which changes need them is decided per
/// change (a comment needs neither): they default to empty here and `validate` decides.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpAlterColumn {
    pub table: String,
    pub column: String,
    /// New type.
    #[serde(default, rename = "type")]
    pub type_: Option<RawSql>,
    /// Set (`false`) or drop (`true`) `NOT NULL`.
    #[serde(default)]
    pub nullable: Option<bool>,
    /// New default; `null` drops the default.
    #[serde(default)]
    pub default: Nullable<RawSql>,
    /// New comment; `null` removes the comment.
    #[serde(default)]
    pub comment: Nullable<String>,
    #[serde(default)]
    pub check: Option<CheckConstraint>,
    #[serde(default)]
    pub unique: Option<UniqueConstraint>,
    #[serde(default)]
    pub references: Option<ForeignKeyReference>,
    #[serde(default)]
    pub up: RawSql,
    #[serde(default)]
    pub down: RawSql,
}

impl OpAlterColumn {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "alter_column";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("table", &self.table);
        n.name("column", &self.column);
        if let Some(check) = &self.check {
            n.nested("check", |n| n.name("name", &check.name));
        }
        if let Some(unique) = &self.unique {
            n.nested("unique", |n| n.name("name", &unique.name));
        }
        if let Some(r) = &self.references {
            n.nested("references", |n| r.names(n));
        }
    }
}

impl Operation for OpAlterColumn {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, _schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("alter_column: validate")
    }

    fn start(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("alter_column: start")
    }

    fn complete(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("alter_column: complete")
    }

    fn rollback(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("alter_column: rollback")
    }

    fn apply(&self, _schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("alter_column: apply")
    }
}
