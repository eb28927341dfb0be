//! `rename_constraint`: renames a constraint. As in pgroll, nothing happens at start (constraints
//! are not part of a version's view) and the physical `ALTER TABLE ... RENAME CONSTRAINT` runs at
//! complete, in the table's short contract transaction; rollback has nothing to undo. Renaming a
//! unique, primary key or exclusion constraint renames its index too (PostgreSQL does that), so
//! the new name must also be free among the schema's indexes.
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use serde::Deserialize;

use crate::ident::Ident;
use crate::ops::common::{find_constraint, find_table, find_table_mut, Names};
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::{ConstraintKind, Schema, Table};

/// `rename_constraint`: renames constraint `from` of `table` to `to`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpRenameConstraint {
    pub table: String,
    pub from: String,
    pub to: String,
}

impl OpRenameConstraint {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "rename_constraint";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("table", &self.table);
        n.name("from", &self.from);
        n.name("to", &self.to);
    }

    fn table<'s>(&self, schema: &'s Schema) -> Result<&'s Table, PlanError> {
        find_table(schema, "table", &self.table)
    }
}

/// Constraint kinds PostgreSQL implements with an index of the constraint's name.
fn has_index(kind: ConstraintKind) -> bool {
    matches!(
        kind,
        ConstraintKind::Unique | ConstraintKind::PrimaryKey | ConstraintKind::Exclude
    )
}

impl Operation for OpRenameConstraint {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        let table = self.table(schema)?;
        let constraint = find_constraint(table, "from", &self.from)?;
        if table.constraint(&self.to).is_some() {
            return Err(PlanError::new(
                "to",
                format!(
                    "constraint \"{}\" already exists on table \"{}\"",
                    self.to, self.table
                ),
            ));
        }
        if has_index(constraint.kind) {
            if let Some((owner, _)) = schema.index(&self.to) {
                return Err(PlanError::new(
                    "to",
                    format!(
                        "renaming constraint \"{}\" renames its index too, and index \"{}\" already exists (on table \"{}\")",
                        self.from,
                        self.to,
                        owner.name.as_str()
                    ),
                ));
            }
            if schema.table(&self.to).is_some() {
                return Err(PlanError::new(
                    "to",
                    format!(
                        "renaming constraint \"{}\" renames its index too, and \"{}\" is the name of a table",
                        self.from, self.to
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
        // Constraints are not visible through a version's views: nothing to do until complete.
        Ok(())
    }

    fn complete(
        &self,
        schema: &Schema,
        _ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let table = self.table(schema)?;
        let qualified = schema.qualify(table);
        plan.contract(
            qualified.clone(),
            format!(
                "ALTER TABLE {qualified} RENAME CONSTRAINT {} TO {}",
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
        // Nothing happened at start.
        Ok(())
    }

    fn apply(&self, schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        let table = find_table_mut(schema, "table", &self.table)?;
        let to = Ident::new(self.to.as_str());
        let indexed = match table
            .constraints
            .iter_mut()
            .find(|c| c.name.as_str() == self.from)
        {
            Some(c) => {
                c.name = to.clone();
                has_index(c.kind)
            }
            None => false,
        };
        for i in table.indexes.iter_mut() {
            if i.constraint
                .as_ref()
                .is_some_and(|c| c.as_str() == self.from)
            {
                i.constraint = Some(to.clone());
                if indexed {
                    i.name = to.clone();
                }
            }
        }
        if table
            .replica_identity_index
            .as_ref()
            .is_some_and(|i| i.as_str() == self.from)
            && indexed
        {
            table.replica_identity_index = Some(to);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::common::testing::{ctx, plan_error, plan_ops, render, schema, table};
    use crate::schema::Constraint;

    fn people() -> Schema {
        let mut t = table(
            "people",
            &[("id", "integer", false), ("age", "integer", true)],
        );
        t.constraints.push(Constraint {
            name: Ident::new("age_check"),
            kind: ConstraintKind::Check,
            columns: vec![Ident::new("age")],
            definition: "CHECK ((age > 0))".into(),
            validated: true,
            references: None,
        });
        schema(vec![t, table("other", &[("id", "integer", false)])])
    }

    #[test]
    fn renames_at_complete() {
        let (plan, after) = plan_ops(
            &people(),
            &ctx(150004),
            "  - rename_constraint: {table: people, from: age_check, to: 'Age \"Positive\"'}\n",
        )
        .unwrap();
        insta::assert_snapshot!("rename", render(&plan));
        assert!(plan.start.is_empty() && plan.rollback.is_empty());
        let t = after.table("people").unwrap();
        assert!(t.constraint("Age \"Positive\"").is_some() && t.constraint("age_check").is_none());
    }

    #[test]
    fn renaming_a_primary_key_renames_its_index() {
        let (_, after) = plan_ops(
            &people(),
            &ctx(150004),
            "  - rename_constraint: {table: people, from: people_pkey, to: people_pk}\n",
        )
        .unwrap();
        let (t, i) = after.index("people_pk").unwrap();
        assert_eq!(t.name.as_str(), "people");
        assert_eq!(i.constraint.as_ref().map(|c| c.as_str()), Some("people_pk"));
        assert!(after.index("people_pkey").is_none());
    }

    #[test]
    fn validation_errors() {
        let s = people();
        let c = ctx(150004);
        assert_eq!(
            plan_error(
                &s,
                &c,
                "  - rename_constraint: {table: nope, from: a, to: b}\n"
            ),
            "table: table \"nope\" does not exist"
        );
        assert_eq!(
            plan_error(
                &s,
                &c,
                "  - rename_constraint: {table: people, from: nope, to: b}\n"
            ),
            "from: constraint \"nope\" does not exist on table \"people\""
        );
        assert_eq!(
            plan_error(
                &s,
                &c,
                "  - rename_constraint: {table: people, from: age_check, to: people_pkey}\n"
            ),
            "to: constraint \"people_pkey\" already exists on table \"people\""
        );
        let err = plan_error(
            &s,
            &c,
            "  - rename_constraint: {table: people, from: people_pkey, to: other_pkey}\n",
        );
        assert!(
            err.starts_with("to: renaming constraint \"people_pkey\" renames its index too"),
            "{err}"
        );
        // A check constraint has no index: the name of another table's index is fine.
        assert!(plan_ops(
            &s,
            &c,
            "  - rename_constraint: {table: people, from: age_check, to: other_pkey}\n"
        )
        .is_ok());
        // Renamed twice in one migration: the second sees the first.
        assert_eq!(
            plan_error(
                &s,
                &c,
                "  - rename_constraint: {table: people, from: age_check, to: a}\n  - rename_constraint: {table: people, from: age_check, to: b}\n"
            ),
            "from: constraint \"age_check\" does not exist on table \"people\""
        );
    }
}
