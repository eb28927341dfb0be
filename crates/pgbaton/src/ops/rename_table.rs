//! `rename_table`: renames a table.
//!
//! Semantics (pgroll's): virtual at start — the new version's view is named `to` and reads the
//! same physical table; the old version and the base schema keep the old name. Complete renames
//! the table physically in the contract's transaction of table renames and drops
//! (`PlanBuilder::contract_rename_table`), which runs after every table's own contract
//! transaction (whose statements name tables by their physical names), in operation order.
//! Rollback has nothing to undo.
//!
//! Renames chain: each complete statement renames the table from the name the renames before it
//! left it with (its virtual name when the op is planned), and may take a name an earlier
//! operation freed (`a -> tmp`, `b -> a`, `tmp -> b` swaps two tables).
//! After a `sql` operation (`Schema::opaque`), a table missing from the model is renamed
//! `IF EXISTS` at complete, and the new version has no view for it.
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use serde::Deserialize;

use crate::ident::{Ident, QualName};
use crate::ops::common::{no_table, Names};
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::Schema;

/// `rename_table`: renames table `from` to `to`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpRenameTable {
    pub from: String,
    pub to: String,
}

impl OpRenameTable {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "rename_table";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("from", &self.from);
        n.name("to", &self.to);
    }
}

impl Operation for OpRenameTable {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        if schema.table(&self.from).is_none() && !schema.opaque {
            return Err(no_table("from", &self.from));
        }
        if schema.table(&self.to).is_some() {
            return Err(PlanError::new(
                "to",
                format!("table \"{}\" already exists", self.to),
            ));
        }
        if let Some((t, _)) = schema.index(&self.to) {
            return Err(PlanError::new(
                "to",
                format!(
                    "relation \"{}\" already exists in schema \"{}\" (an index of table \"{}\")",
                    self.to,
                    schema.name.as_str(),
                    t.name.as_str()
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
        // Virtual: the new version's view carries the new name.
        Ok(())
    }

    fn complete(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let to = Ident::new(self.to.as_str());
        match schema.table(&self.from) {
            Some(table) => {
                let current = QualName::new(schema.name.clone(), table.name.clone());
                plan.contract_rename_table(
                    schema.qualify(table),
                    format!("ALTER TABLE {current} RENAME TO {to}"),
                );
            }
            None => {
                let qual = ctx.qualify(&Ident::new(self.from.as_str()));
                plan.contract_rename_table(
                    qual.clone(),
                    format!("ALTER TABLE IF EXISTS {qual} RENAME TO {to}"),
                );
            }
        }
        Ok(())
    }

    fn rollback(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        // Start changed nothing physical.
        Ok(())
    }

    fn apply(&self, schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        if let Some(mut table) = schema.tables.remove(&self.from) {
            table.name = Ident::new(self.to.as_str());
            schema.tables.insert(self.to.clone(), table);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::common::testing::{ctx, plan_error, plan_ops, render, schema, table};

    fn base() -> Schema {
        schema(vec![
            table("users", &[("id", "integer", false)]),
            table("other", &[("id", "integer", false)]),
        ])
    }

    #[test]
    fn virtual_at_start_physical_at_complete() {
        let (plan, after) = plan_ops(
            &base(),
            &ctx(150004),
            "  - rename_table: {from: users, to: Big \"Users\"}\n",
        )
        .unwrap();
        insta::assert_snapshot!("rename", render(&plan));
        assert!(plan.start.is_empty() && plan.rollback.is_empty());
        let t = after.table("Big \"Users\"").expect("renamed");
        assert_eq!(t.physical.as_str(), "users");
        assert!(after.table("users").is_none());
    }

    #[test]
    fn chained_renames_follow_each_other() {
        let ops = "  - rename_table: {from: users, to: a}\n  - rename_table: {from: a, to: users2}\n  - rename_table: {from: other, to: users}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        let sql: Vec<String> = plan.complete.iter().flat_map(|s| s.statements()).collect();
        assert_eq!(
            sql,
            vec![
                "ALTER TABLE \"public\".\"users\" RENAME TO \"a\"",
                "ALTER TABLE \"public\".\"a\" RENAME TO \"users2\"",
                "ALTER TABLE \"public\".\"other\" RENAME TO \"users\"",
            ]
        );
        assert_eq!(
            after.table("users").map(|t| t.physical.as_str()),
            Some("other")
        );
        assert_eq!(
            after.table("users2").map(|t| t.physical.as_str()),
            Some("users")
        );
        // One transaction after every table's own, in operation order.
        assert_eq!(plan.complete.len(), 1);
        assert_eq!(plan.complete[0].title, "rename and drop tables");
    }

    #[test]
    fn swaps_two_tables() {
        let ops = "  - rename_table: {from: users, to: tmp}\n  - rename_table: {from: other, to: users}\n  - rename_table: {from: tmp, to: other}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        assert_eq!(
            plan.complete[0].statements(),
            vec![
                "ALTER TABLE \"public\".\"users\" RENAME TO \"tmp\"",
                "ALTER TABLE \"public\".\"other\" RENAME TO \"users\"",
                "ALTER TABLE \"public\".\"tmp\" RENAME TO \"other\"",
            ]
        );
        assert_eq!(
            after.table("users").map(|t| t.physical.as_str()),
            Some("other")
        );
        assert_eq!(
            after.table("other").map(|t| t.physical.as_str()),
            Some("users")
        );
    }

    #[test]
    fn validation_errors() {
        assert_eq!(
            plan_error(
                &base(),
                &ctx(150004),
                "  - rename_table: {from: nope, to: x}\n"
            ),
            "from: table \"nope\" does not exist"
        );
        assert_eq!(
            plan_error(
                &base(),
                &ctx(150004),
                "  - rename_table: {from: users, to: other}\n"
            ),
            "to: table \"other\" already exists"
        );
        assert_eq!(
            plan_error(
                &base(),
                &ctx(150004),
                "  - rename_table: {from: users, to: users}\n"
            ),
            "to: table \"users\" already exists"
        );
        assert_eq!(
            plan_error(&base(), &ctx(150004), "  - rename_table: {from: users, to: other_pkey}\n"),
            "to: relation \"other_pkey\" already exists in schema \"public\" (an index of table \"other\")"
        );
        // pgroll's "create table with a name matching a name used in a previous operation".
        assert_eq!(
            plan_error(
                &base(),
                &ctx(150004),
                "  - rename_table: {from: users, to: products}\n  - create_table: {name: products, columns: []}\n"
            ),
            "name: table \"products\" already exists"
        );
    }
}
