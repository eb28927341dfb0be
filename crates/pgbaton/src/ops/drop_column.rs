//! `drop_column`: drops a column. Hidden from the new version at start (its view no longer has
//! the column; the old version keeps reading and writing it), dropped physically at complete in
//! the table's contract transaction. An optional `down` computes the column for rows the new
//! version writes, so the old version keeps seeing right values while both run: a down-only
//! rule of the table's dual-write trigger ([`crate::triggers::DownOnlyRule`]), evaluated over the
//! new version's column names. Old-version writes keep their own value; existing rows are not
//! backfilled (they already hold the old version's values).

use serde::Deserialize;

// `"name"` as PostgreSQL quotes it, for messages.
use crate::ident::{quote_ident as q, Ident, RawSql};
use crate::ops::common::{find_table, find_table_mut, no_column_on, Names};
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::{Column, ConstraintKind, Schema, Table};
use crate::triggers::DownOnlyRule;

/// `drop_column`: drops `column` from `table`; `down` fills it for rows written by the new
/// version while the old one still reads it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpDropColumn {
    pub table: String,
    pub column: String,
    #[serde(default)]
    pub down: RawSql,
}

impl OpDropColumn {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "drop_column";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("table", &self.table);
        n.name("column", &self.column);
    }

    fn find<'a>(&self, schema: &'a Schema) -> Result<(&'a Table, &'a Column), PlanError> {
        let table = find_table(schema, "table", &self.table)?;
        let column = table.column(&self.column).ok_or_else(|| self.no_column())?;
        Ok((table, column))
    }

    fn no_column(&self) -> PlanError {
        no_column_on("column", &self.column, &self.table)
    }
}

impl Operation for OpDropColumn {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        let (table, column) = self.find(schema)?;
        let here = schema.qualify(table);
        if table
            .primary_key()
            .is_some_and(|pk| pk.columns.contains(&column.physical))
        {
            return Err(PlanError::new(
                "column",
                format!(
                    "column {} is part of the primary key of table {}: dropping it would drop the \
                     primary key",
                    q(&self.column),
                    q(&self.table)
                ),
            ));
        }
        // DROP COLUMN (without CASCADE) fails when a foreign key of another constraint depends
        // on the column's unique key: say so now rather than at complete.
        for other in schema.tables.values() {
            for c in &other.constraints {
                let Some((target, target_columns)) = &c.references else {
                    continue;
                };
                let own = other.physical == table.physical && c.columns.contains(&column.physical);
                if c.kind == ConstraintKind::ForeignKey
                    && target == &here
                    && target_columns.contains(&column.physical)
                    && !own
                {
                    return Err(PlanError::new(
                        "column",
                        format!(
                            "column {} of table {} is referenced by foreign key {} of table {}: \
                             drop that constraint first",
                            q(&self.column),
                            q(&self.table),
                            q(c.name.as_str()),
                            q(other.name.as_str())
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn start(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let (table, column) = self.find(schema)?;
        // Nothing physical: `apply` hides the column from the new version. With `down`, rows
        // the new version writes get the column from the dual-write trigger. A table created
        // by this migration has no old version to serve.
        if self.down.is_empty() || table.created_here {
            return Ok(());
        }
        let t = schema.qualify(table);
        // The column the old version reads: a column an earlier `alter_column` of this
        // migration copied is still the copy's source for it; one an earlier `add_column`
        // added is not seen by the old version at all.
        let old_column = match plan.copies().get(&t, &column.physical) {
            Some(copy) => copy.source().clone(),
            None if crate::ops::duplicate::is_temporary(column) => return Ok(()),
            None => column.physical.clone(),
        };
        let new_scope: Vec<(Ident, Ident)> = table
            .columns
            .iter()
            .filter(|c| c.name != column.name)
            .map(|c| (c.name.clone(), c.physical.clone()))
            .collect();
        plan.dual_write_down(
            ctx,
            t,
            new_scope,
            DownOnlyRule {
                old_column,
                down: self.down.clone(),
            },
        );
        Ok(())
    }

    fn complete(
        &self,
        schema: &Schema,
        _ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let (table, column) = self.find(schema)?;
        let t = schema.qualify(table);
        // Catalog only; drops the indexes and constraints on the column with it.
        if column.physical == column.name {
            // Before the contract's renames, under the name it has now (another operation may
            // add a column of this name and rename its copy to it).
            plan.contract(
                t.clone(),
                format!("ALTER TABLE {t} DROP COLUMN IF EXISTS {}", column.physical),
            );
        } else {
            // An earlier operation of this migration added or renamed the column: it takes its
            // name in the contract's renames, so it is dropped after them, by that name.
            plan.contract_after_column_renames(
                t.clone(),
                format!("ALTER TABLE {t} DROP COLUMN IF EXISTS {}", column.name),
            );
        }
        Ok(())
    }

    fn rollback(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        // Start changed nothing physical; the planner removes the dual-write trigger (and its
        // marker column) that `down` needs.
        Ok(())
    }

    fn apply(&self, schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        let table = find_table_mut(schema, "table", &self.table)?;
        let Some(index) = table
            .columns
            .iter()
            .position(|c| c.name.as_str() == self.column)
        else {
            return Err(self.no_column());
        };
        let column = table.columns.remove(index);
        table.dropped_columns.push(column);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::{Ident, QualName};
    use crate::ops::common::testing::{
        ctx, plan_error, plan_ops, render, schema, statements, table,
    };
    use crate::schema::Constraint;
    use crate::step::{LockLevel, Work};

    /// `users` (pk `id`, `name`, `Odd "Col"`) and `orders` whose `user_id` references users.id.
    fn base() -> Schema {
        let mut orders = table(
            "orders",
            &[("id", "integer", false), ("user_id", "integer", true)],
        );
        orders.constraints.push(Constraint {
            name: Ident::new("orders_user_fk"),
            kind: ConstraintKind::ForeignKey,
            columns: vec![Ident::new("user_id")],
            definition: String::new(),
            validated: true,
            references: Some((QualName::new("public", "users"), vec![Ident::new("id")])),
        });
        let mut users = table(
            "users",
            &[
                ("id", "integer", false),
                ("name", "text", true),
                ("Odd \"Col\"", "text", true),
            ],
        );
        users.columns[1].unique = true;
        schema(vec![users, orders])
    }

    #[test]
    fn hidden_at_start_dropped_at_complete() {
        let ops = "  - drop_column: {table: users, column: Odd \"Col\"}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        insta::assert_snapshot!("drop", render(&plan));
        assert!(plan.start.is_empty());
        assert!(plan.rollback.is_empty());
        assert_eq!(
            statements(&plan.complete),
            vec!["ALTER TABLE \"public\".\"users\" DROP COLUMN IF EXISTS \"Odd \"\"Col\"\"\""]
        );
        assert_eq!(plan.complete[0].lock, LockLevel::AccessExclusive);
        assert_eq!(plan.complete[0].work, Work::Catalog);
        let users = after.table("users").expect("users");
        assert!(users.column("Odd \"Col\"").is_none());
        assert_eq!(users.columns.len(), 2);
    }

    #[test]
    fn a_column_added_or_renamed_earlier_is_dropped_after_the_renames() {
        let ops = "  - rename_column: {table: users, from: name, to: item_name}\n  - drop_column: {table: users, column: item_name}\n  - add_column:\n      table: users\n      column: {name: extra, type: text, nullable: true}\n  - drop_column: {table: users, column: extra}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        assert_eq!(
            statements(&plan.complete),
            vec![
                "ALTER TABLE \"public\".\"users\" RENAME COLUMN \"name\" TO \"item_name\"",
                "ALTER TABLE \"public\".\"users\" RENAME COLUMN \"_pgbaton_new_extra\" TO \"extra\"",
                "ALTER TABLE \"public\".\"users\" DROP COLUMN IF EXISTS \"item_name\"",
                "ALTER TABLE \"public\".\"users\" DROP COLUMN IF EXISTS \"extra\"",
            ]
        );
        let users = after.table("users").expect("users");
        assert!(users.column("item_name").is_none() && users.column("extra").is_none());
    }

    #[test]
    fn a_dropped_name_can_be_added_again() {
        // The old column goes before the contract's renames give the new one its name.
        let ops = "  - drop_column: {table: users, column: name}\n  - add_column:\n      table: users\n      column: {name: name, type: int, nullable: true}\n";
        let (plan, _) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        assert_eq!(
            statements(&plan.complete),
            vec![
                "ALTER TABLE \"public\".\"users\" DROP COLUMN IF EXISTS \"name\"",
                "ALTER TABLE \"public\".\"users\" RENAME COLUMN \"_pgbaton_new_name\" TO \"name\"",
            ]
        );
    }

    #[test]
    fn validation_errors_name_the_field() {
        let c = ctx(150004);
        let err = |ops: &str| plan_error(&base(), &c, ops);
        assert_eq!(
            err("  - drop_column: {table: nope, column: name}\n"),
            "table: table \"nope\" does not exist"
        );
        assert_eq!(
            err("  - drop_column: {table: users, column: nope}\n"),
            "column: column \"nope\" does not exist on table \"users\""
        );
        assert_eq!(
            err("  - drop_column: {table: orders, column: id}\n"),
            "column: column \"id\" is part of the primary key of table \"orders\": dropping it \
             would drop the primary key"
        );
        // Twice in one migration: the second sees the first.
        assert_eq!(
            err("  - drop_column: {table: users, column: name}\n  - drop_column: {table: users, column: name}\n"),
            "column: column \"name\" does not exist on table \"users\""
        );
        // A foreign key of another table depends on the column's unique key.
        let mut s = base();
        if let Some(users) = s.table_mut("users") {
            users.constraints.clear();
        }
        if let Some(orders) = s.table_mut("orders") {
            orders.constraints[1].references =
                Some((QualName::new("public", "users"), vec![Ident::new("name")]));
        }
        assert_eq!(
            plan_error(&s, &c, "  - drop_column: {table: users, column: name}\n"),
            "column: column \"name\" of table \"users\" is referenced by foreign key \
             \"orders_user_fk\" of table \"orders\": drop that constraint first"
        );
        // The referencing column itself can go (its foreign key goes with it).
        assert!(plan_ops(
            &base(),
            &c,
            "  - drop_column: {table: orders, column: user_id}\n"
        )
        .is_ok());
    }

    #[test]
    fn down_fills_the_column_for_new_version_writes() {
        let ops = "  - drop_column: {table: users, column: name, down: \"upper(\\\"Odd \\\"\\\"Col\\\"\\\"\\\")\"}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        insta::assert_snapshot!("drop_with_down", render(&plan));
        // Two steps at start: the trigger and the counting of writes per version, nothing else
        // (no backfill, no DDL).
        assert_eq!(plan.start.len(), 2);
        assert_eq!(
            (plan.start[1].lock, plan.start[1].work),
            (LockLevel::ShareRowExclusive, Work::Catalog)
        );
        let install = &plan.start[0];
        assert_eq!(
            (install.lock, install.work),
            (LockLevel::AccessExclusive, Work::Catalog)
        );
        let sql = install.statements().join("\n");
        // Over the new version's names (`name` is not one of them), into the physical column.
        assert!(sql.contains(
            "\"Odd \"\"Col\"\"\" \"public\".\"users\".\"Odd \"\"Col\"\"\"%TYPE := \"_pgbaton_new_row\".\"Odd \"\"Col\"\"\";"
        ));
        assert!(sql.contains("\"_pgbaton_new_row\".\"name\" := (upper(\"Odd \"\"Col\"\"\"));"));
        assert!(!sql.contains("\"name\" \"public\".\"users\".\"name\"%TYPE"));
        // Complete drops the trigger, the marker, the counting of writes per version and the
        // column in one transaction.
        assert_eq!(
            statements(&plan.complete),
            vec![
                "DROP TRIGGER IF EXISTS \"_pgbaton_dual_write\" ON \"public\".\"users\"",
                "DROP FUNCTION IF EXISTS \"public\".\"_pgbaton_dw_users\"()",
                "ALTER TABLE \"public\".\"users\" DROP COLUMN IF EXISTS \"_pgbaton_touched\"",
                "DROP TRIGGER IF EXISTS \"_pgbaton_version_writes\" ON \"public\".\"users\"",
                "DROP FUNCTION IF EXISTS \"public\".\"_pgbaton_vw_users\"()",
                "DROP FUNCTION IF EXISTS \"public\".\"_pgbaton_vwc_users\"(boolean)",
                "DROP SEQUENCE IF EXISTS \"public\".\"_pgbaton_vco_users\", \"public\".\"_pgbaton_vto_users\"",
                "DROP SEQUENCE IF EXISTS \"public\".\"_pgbaton_vcn_users\", \"public\".\"_pgbaton_vtn_users\"",
                "ALTER TABLE \"public\".\"users\" DROP COLUMN IF EXISTS \"name\"",
            ]
        );
        assert_eq!(plan.complete.len(), 1);
        // Rollback removes the trigger, the marker and the counting (idempotent).
        assert_eq!(
            statements(&plan.rollback),
            vec![
                "DROP TRIGGER IF EXISTS \"_pgbaton_dual_write\" ON \"public\".\"users\"",
                "DROP FUNCTION IF EXISTS \"public\".\"_pgbaton_dw_users\"()",
                "ALTER TABLE \"public\".\"users\" DROP COLUMN IF EXISTS \"_pgbaton_touched\"",
                "DROP TRIGGER IF EXISTS \"_pgbaton_version_writes\" ON \"public\".\"users\"",
                "DROP FUNCTION IF EXISTS \"public\".\"_pgbaton_vw_users\"()",
                "DROP FUNCTION IF EXISTS \"public\".\"_pgbaton_vwc_users\"(boolean)",
                "DROP SEQUENCE IF EXISTS \"public\".\"_pgbaton_vco_users\", \"public\".\"_pgbaton_vto_users\"",
                "DROP SEQUENCE IF EXISTS \"public\".\"_pgbaton_vcn_users\", \"public\".\"_pgbaton_vtn_users\"",
            ]
        );
        assert!(after
            .table("users")
            .expect("users")
            .column("name")
            .is_none());
    }

    #[test]
    fn down_needs_no_trigger_where_no_old_version_reads_the_column() {
        // A table created by this migration.
        let ops = "  - create_table:\n      name: fresh\n      columns:\n        - {name: id, type: int, pk: true}\n        - {name: x, type: int, nullable: true}\n  - drop_column: {table: fresh, column: x, down: \"0\"}\n";
        let (plan, _) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        assert!(plan
            .start
            .iter()
            .all(|s| !s.title.starts_with("install dual-write trigger")));
        // A column an earlier operation added: the old version never had it.
        let ops = "  - add_column:\n      table: users\n      column: {name: extra, type: int, nullable: true}\n  - drop_column: {table: users, column: extra, down: \"0\"}\n";
        let (plan, _) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        assert!(plan
            .start
            .iter()
            .all(|s| !s.title.starts_with("install dual-write trigger")));
    }
}
