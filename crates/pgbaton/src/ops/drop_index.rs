//! `drop_index`: drops an index with `DROP INDEX CONCURRENTLY` at complete (never blocking the
//! application); start and rollback have nothing to do, as in pgroll: the old version keeps the
//! index until the migration completes. An index that backs a constraint is refused (PostgreSQL
//! cannot drop it on its own; `drop_constraint` / `drop_multicolumn_constraint` drop both).
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use serde::Deserialize;

use crate::ident::{Ident, QualName};
use crate::ops::common::Names;
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::{Index, Schema, Table};
use crate::step::{LockLevel, Step};

/// `drop_index`: drops index `name`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpDropIndex {
    pub name: String,
}

impl OpDropIndex {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "drop_index";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("name", &self.name);
    }

    fn find<'s>(&self, schema: &'s Schema) -> Result<(&'s Table, &'s Index), PlanError> {
        schema.index(&self.name).ok_or_else(|| {
            PlanError::new(
                "name",
                format!(
                    "index \"{}\" does not exist in schema \"{}\"",
                    self.name,
                    schema.name.as_str()
                ),
            )
        })
    }
}

impl Operation for OpDropIndex {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        let (table, index) = self.find(schema)?;
        if let Some(constraint) = &index.constraint {
            let how = if index.primary {
                "drop_multicolumn_constraint (or drop_constraint)"
            } else {
                "drop_constraint or drop_multicolumn_constraint"
            };
            return Err(PlanError::new(
                "name",
                format!(
                    "index \"{}\" backs constraint \"{}\" of table \"{}\" and cannot be dropped on its own; \
                     drop the constraint with {how}",
                    self.name,
                    constraint.as_str(),
                    table.name.as_str()
                ),
            ));
        }
        Ok(())
    }

    fn start(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        // The index stays until complete: the old version may rely on it.
        Ok(())
    }

    fn complete(
        &self,
        schema: &Schema,
        _ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let (table, _) = self.find(schema)?;
        let index = QualName::new(schema.name.clone(), Ident::new(self.name.as_str()));
        plan.validate(Step::concurrent(
            format!("drop index {index}"),
            Some(schema.qualify(table)),
            LockLevel::ShareUpdateExclusive,
            format!("DROP INDEX CONCURRENTLY IF EXISTS {index}"),
        ));
        Ok(())
    }

    fn rollback(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        // Nothing happened at start.
        Ok(())
    }

    fn apply(&self, schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        let (table, _) = self.find(schema)?;
        let key = table.name.as_str().to_string();
        if let Some(table) = schema.table_mut(&key) {
            table.indexes.retain(|i| i.name.as_str() != self.name);
            // A column is unique only through a unique index that is left.
            table.mark_unique_columns();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::common::testing::{ctx, plan_error, plan_ops, render, schema, table};
    use crate::step::Action;

    fn fruits() -> Schema {
        let mut t = table(
            "fruits",
            &[("id", "integer", false), ("name", "text", false)],
        );
        t.columns[1].unique = true;
        t.indexes.push(Index {
            name: Ident::new("Idx Name"),
            columns: vec![Ident::new("name")],
            unique: true,
            primary: false,
            valid: true,
            has_expressions: false,
            predicate: None,
            definition: String::new(),
            constraint: None,
        });
        schema(vec![t])
    }

    #[test]
    fn drops_concurrently_at_complete() {
        let (plan, after) = plan_ops(
            &fruits(),
            &ctx(150004),
            "  - drop_index: {name: Idx Name}\n",
        )
        .unwrap();
        insta::assert_snapshot!("drop", render(&plan));
        assert!(plan.start.is_empty() && plan.rollback.is_empty());
        assert!(
            matches!(&plan.complete[0].action, Action::NonTransactional(sql)
            if sql == "DROP INDEX CONCURRENTLY IF EXISTS \"public\".\"Idx Name\"")
        );
        assert!(plan.lock_violations().is_empty());
        assert!(after.index("Idx Name").is_none());
        assert!(
            !after
                .table("fruits")
                .unwrap()
                .column("name")
                .unwrap()
                .unique
        );
    }

    #[test]
    fn drops_an_index_created_in_the_same_migration() {
        let ops = "  - create_index: {name: i2, table: fruits, columns: [{column: id}]}\n  - drop_index: {name: i2}\n";
        let (plan, _) = plan_ops(&fruits(), &ctx(150004), ops).unwrap();
        assert_eq!(plan.start.len(), 1);
        assert_eq!(plan.complete.len(), 1);
    }

    #[test]
    fn validation_errors() {
        let s = fruits();
        let c = ctx(150004);
        assert_eq!(
            plan_error(&s, &c, "  - drop_index: {name: nope}\n"),
            "name: index \"nope\" does not exist in schema \"public\""
        );
        let err = plan_error(&s, &c, "  - drop_index: {name: fruits_pkey}\n");
        assert!(
            err.starts_with("name: index \"fruits_pkey\" backs constraint \"fruits_pkey\""),
            "{err}"
        );
        // Dropped twice in one migration: the second does not find it.
        assert_eq!(
            plan_error(
                &s,
                &c,
                "  - drop_index: {name: Idx Name}\n  - drop_index: {name: Idx Name}\n"
            ),
            "name: index \"Idx Name\" does not exist in schema \"public\""
        );
    }
}
