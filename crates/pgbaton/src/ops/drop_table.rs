//! `drop_table`: drops a table (hidden from the new version at start, dropped at complete).
//!
//! Semantics (pgroll's, without its rename at start): start changes nothing physical, the old
//! version and sessions on the base schema keep using the table; the new version's schema has no
//! view for it (`apply` removes it from the model and records its physical name in
//! `Schema::dropped_tables`, so a `create_table` of the same name later in the migration creates
//! its table under a temporary name). Complete drops it in the contract's transaction of table
//! renames and drops (`PlanBuilder::contract_rename_table`: after every table's own contract
//! transaction, in operation order), by the name the renames before it left it with. Rollback
//! has nothing to undo.
//!
//! A table other tables still reference with a foreign key is refused before anything runs:
//! PostgreSQL would refuse the `DROP` at complete. After a `sql` operation (`Schema::opaque`) a
//! table missing from the model is dropped `IF EXISTS` at complete.
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use serde::Deserialize;

use crate::ident::{Ident, QualName};
use crate::ops::common::{no_table, Names};
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::Schema;

/// `drop_table`: drops table `name`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpDropTable {
    pub name: String,
}

impl OpDropTable {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "drop_table";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("name", &self.name);
    }
}

impl Operation for OpDropTable {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        let Some(table) = schema.table(&self.name) else {
            if schema.opaque {
                return Ok(());
            }
            return Err(no_table("name", &self.name));
        };
        let qual = schema.qualify(table);
        for other in schema.tables.values() {
            if other.name == table.name {
                continue;
            }
            let referencing = other.constraints.iter().find(|c| {
                c.references
                    .as_ref()
                    .is_some_and(|(referenced, _)| *referenced == qual)
            });
            if let Some(fk) = referencing {
                return Err(PlanError::new(
                    "name",
                    format!(
                        "table \"{}\" is referenced by foreign key {} of table \"{}\": drop that \
                         constraint (or that table) first",
                        self.name,
                        fk.name,
                        other.name.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn start(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        // Nothing physical: the new version's schema simply has no view for the table.
        Ok(())
    }

    fn complete(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let (group, current) = match schema.table(&self.name) {
            // Renames of the table earlier in this migration run before this statement in the
            // same transaction and leave it under its current (virtual) name.
            Some(table) => (
                schema.qualify(table),
                QualName::new(schema.name.clone(), table.name.clone()),
            ),
            None => {
                let qual = ctx.qualify(&Ident::new(self.name.as_str()));
                (qual.clone(), qual)
            }
        };
        plan.contract_rename_table(group, format!("DROP TABLE IF EXISTS {current}"));
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
        if let Some(table) = schema.tables.remove(&self.name) {
            schema.dropped_tables.push(table.physical);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::common::testing::{ctx, plan_error, plan_ops, render, schema, table};
    use crate::schema::{Constraint, ConstraintKind};

    fn base() -> Schema {
        let owners = table("Owners \"X\"", &[("id", "integer", false)]);
        let mut pets = table(
            "pets",
            &[("id", "integer", false), ("owner", "integer", true)],
        );
        pets.constraints.push(Constraint {
            name: Ident::new("pets_owner_fkey"),
            kind: ConstraintKind::ForeignKey,
            columns: vec![Ident::new("owner")],
            definition: String::new(),
            validated: true,
            references: Some((
                QualName::new("public", "Owners \"X\""),
                vec![Ident::new("id")],
            )),
        });
        schema(vec![
            owners,
            pets,
            table("plain", &[("id", "integer", false)]),
        ])
    }

    #[test]
    fn hides_at_start_and_drops_at_complete() {
        let (plan, after) =
            plan_ops(&base(), &ctx(150004), "  - drop_table: {name: pets}\n").unwrap();
        insta::assert_snapshot!("drop", render(&plan));
        assert!(plan.start.is_empty() && plan.rollback.is_empty());
        assert!(after.table("pets").is_none());
        assert_eq!(after.dropped_tables, vec![Ident::new("pets")]);
        assert!(plan.lock_violations().is_empty());
    }

    #[test]
    fn drops_by_the_name_earlier_renames_left() {
        let ops = "  - rename_table: {from: plain, to: Plain 2}\n  - drop_table: {name: Plain 2}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        assert_eq!(
            plan.complete[0].statements(),
            vec![
                "ALTER TABLE \"public\".\"plain\" RENAME TO \"Plain 2\"",
                "DROP TABLE IF EXISTS \"public\".\"Plain 2\"",
            ]
        );
        assert_eq!(after.dropped_tables, vec![Ident::new("plain")]);
        // Dropping the referencing table first frees the referenced one.
        let ops = "  - drop_table: {name: pets}\n  - drop_table: {name: Owners \"X\"}\n";
        assert!(plan_ops(&base(), &ctx(150004), ops).is_ok());
    }

    #[test]
    fn validation_errors() {
        assert_eq!(
            plan_error(&base(), &ctx(150004), "  - drop_table: {name: nope}\n"),
            "name: table \"nope\" does not exist"
        );
        assert_eq!(
            plan_error(&base(), &ctx(150004), "  - drop_table: {name: Owners \"X\"}\n"),
            "name: table \"Owners \"X\"\" is referenced by foreign key \"pets_owner_fkey\" of table \"pets\": drop that constraint (or that table) first"
        );
        assert_eq!(
            plan_error(
                &base(),
                &ctx(150004),
                "  - drop_table: {name: pets}\n  - drop_table: {name: pets}\n"
            ),
            "name: table \"pets\" does not exist"
        );
        // After a sql operation the model may not know the table: dropped IF EXISTS.
        let ops = "  - sql: {up: CREATE TABLE made (id int)}\n  - drop_table: {name: made}\n";
        let (plan, _) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        assert_eq!(
            plan.complete[0].statements(),
            vec!["DROP TABLE IF EXISTS \"public\".\"made\""]
        );
    }
}
