//! `rename_column`: renames a column. Virtual at start (the new version's view exposes the new
//! name, nothing physical changes, so the old version keeps working), physical at complete in
//! the table's contract transaction. Constraints, indexes, foreign keys and the column's default
//! follow the rename in PostgreSQL by themselves (they refer to the column by number).

use serde::Deserialize;

// `"name"` as PostgreSQL quotes it, for messages.
use crate::ident::{quote_ident as q, Ident};
use crate::ops::common::{find_table, find_table_mut, no_column_on, Names};
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::{Schema, Table};

/// `rename_column`: renames column `from` of `table` to `to`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpRenameColumn {
    pub table: String,
    pub from: String,
    pub to: String,
}

impl OpRenameColumn {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "rename_column";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("table", &self.table);
        n.name("from", &self.from);
        n.name("to", &self.to);
    }

    fn table<'a>(&self, schema: &'a Schema) -> Result<&'a Table, PlanError> {
        find_table(schema, "table", &self.table)
    }
}

impl Operation for OpRenameColumn {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        let table = self.table(schema)?;
        if table.column(&self.from).is_none() {
            return Err(no_column_on("from", &self.from, &self.table));
        }
        if table.column(&self.to).is_some() {
            return Err(PlanError::new(
                "to",
                format!(
                    "column {} already exists in table {}",
                    q(&self.to),
                    q(&self.table)
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
        // Nothing physical: `apply` renames the column in the new version's view.
        Ok(())
    }

    fn complete(
        &self,
        schema: &Schema,
        _ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let table = self.table(schema)?;
        let t = schema.qualify(table);
        // The source is the name the column has when this statement runs: the contract renames
        // in operation order, and every earlier operation that gave the column another physical
        // name (an add_column's temporary column, an earlier rename) has renamed it to `from`
        // by then.
        plan.contract_rename_column(
            t.clone(),
            format!(
                "ALTER TABLE {t} RENAME COLUMN {} TO {}",
                Ident::new(self.from.as_str()),
                Ident::new(self.to.as_str())
            ),
        );
        Ok(())
    }

    fn rollback(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        // Start changed nothing physical; dropping the version schema undoes the rename.
        Ok(())
    }

    fn apply(&self, schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        let table = find_table_mut(schema, "table", &self.table)?;
        let column = table
            .column_mut(&self.from)
            .ok_or_else(|| no_column_on("from", &self.from, &self.table))?;
        column.name = Ident::new(self.to.as_str());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::common::testing::{
        ctx, plan_error, plan_ops, render, schema, statements, table,
    };

    fn base() -> Schema {
        schema(vec![table(
            "users",
            &[("id", "integer", false), ("name", "text", true)],
        )])
    }

    #[test]
    fn virtual_at_start_physical_at_complete() {
        let ops = "  - rename_column: {table: users, from: name, to: Full \"Name\"}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        insta::assert_snapshot!("rename", render(&plan));
        assert!(plan.start.is_empty() && plan.rollback.is_empty());
        assert_eq!(
            statements(&plan.complete),
            vec![
                "ALTER TABLE \"public\".\"users\" RENAME COLUMN \"name\" TO \"Full \"\"Name\"\"\""
            ]
        );
        let users = after.table("users").expect("users");
        let col = users.column("Full \"Name\"").expect("renamed");
        assert_eq!(col.physical.as_str(), "name");
        assert!(users.column("name").is_none());
    }

    #[test]
    fn renames_chain_in_operation_order() {
        // A column added and renamed twice in one migration: each rename starts from the name
        // the previous one gave it.
        let ops = "  - add_column:\n      table: users\n      column: {name: a, type: int, nullable: true}\n  - rename_column: {table: users, from: a, to: b}\n  - rename_column: {table: users, from: b, to: c}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        assert_eq!(
            statements(&plan.complete),
            vec![
                "ALTER TABLE \"public\".\"users\" RENAME COLUMN \"_pgbaton_new_a\" TO \"a\"",
                "ALTER TABLE \"public\".\"users\" RENAME COLUMN \"a\" TO \"b\"",
                "ALTER TABLE \"public\".\"users\" RENAME COLUMN \"b\" TO \"c\"",
            ]
        );
        let col = after.table("users").and_then(|t| t.column("c")).expect("c");
        assert_eq!(col.physical.as_str(), "_pgbaton_new_a");
    }

    #[test]
    fn swapping_two_names() {
        let ops = "  - rename_column: {table: users, from: name, to: tmp}\n  - rename_column: {table: users, from: id, to: name}\n  - rename_column: {table: users, from: tmp, to: id}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        assert_eq!(statements(&plan.complete).len(), 3);
        let users = after.table("users").expect("users");
        assert_eq!(
            users.column("id").map(|c| c.physical.as_str()),
            Some("name")
        );
        assert_eq!(
            users.column("name").map(|c| c.physical.as_str()),
            Some("id")
        );
    }

    #[test]
    fn validation_errors_name_the_field() {
        let c = ctx(150004);
        let err = |ops: &str| plan_error(&base(), &c, ops);
        assert_eq!(
            err("  - rename_column: {table: nope, from: name, to: x}\n"),
            "table: table \"nope\" does not exist"
        );
        assert_eq!(
            err("  - rename_column: {table: users, from: nope, to: x}\n"),
            "from: column \"nope\" does not exist on table \"users\""
        );
        assert_eq!(
            err("  - rename_column: {table: users, from: name, to: id}\n"),
            "to: column \"id\" already exists in table \"users\""
        );
        assert_eq!(
            err("  - rename_column: {table: users, from: name, to: name}\n"),
            "to: column \"name\" already exists in table \"users\""
        );
        // The old name is free once renamed away, the new one taken.
        assert_eq!(
            err("  - rename_column: {table: users, from: name, to: x}\n  - rename_column: {table: users, from: name, to: y}\n"),
            "from: column \"name\" does not exist on table \"users\""
        );
    }
}
