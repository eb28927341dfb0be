//! `create_index`: builds an index concurrently.
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use serde::Deserialize;

use crate::ident::RawSql;
use crate::ops::common::{keyword_enum, IndexField, Names};
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::Schema;

/// `create_index`: builds index `name` on `columns` of `table`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpCreateIndex {
    pub name: String,
    pub table: String,
    pub columns: Vec<IndexField>,
    /// `WHERE` predicate of a partial index; empty for none.
    #[serde(default)]
    pub predicate: RawSql,
    #[serde(default)]
    pub method: IndexMethod,
    /// Storage parameters (`fillfactor = 70`); empty for none.
    #[serde(default)]
    pub storage_parameters: RawSql,
    #[serde(default)]
    pub unique: bool,
}

keyword_enum! {
    /// Index access method.
    #[derive(Default)]
    pub enum IndexMethod (ci) {
        #[default]
        Btree => "btree",
        Hash => "hash",
        Gist => "gist",
        Spgist => "spgist",
        Gin => "gin",
        Brin => "brin",
    }
}

impl OpCreateIndex {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "create_index";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("name", &self.name);
        n.name("table", &self.table);
        for (i, field) in self.columns.iter().enumerate() {
            n.element("columns", i, |n| n.name("column", &field.column));
        }
    }
}

impl Operation for OpCreateIndex {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, _schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("create_index: validate")
    }

    fn start(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("create_index: start")
    }

    fn complete(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("create_index: complete")
    }

    fn rollback(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        todo!("create_index: rollback")
    }

    fn apply(&self, _schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        todo!("create_index: apply")
    }
}
