//! `drop_constraint`: drops a single-column constraint (deprecated by pgroll in favour of
//! `drop_multicolumn_constraint`, and planned by the same helpers): the column is duplicated
//! without the constraint for the new version, kept in sync with `up` (the identity when empty)
//! and `down` (required), and the constraint goes with the old column at complete.
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use serde::Deserialize;

use crate::ident::RawSql;
use crate::ops::common::Names;
use crate::ops::drop_multicolumn_constraint::{
    apply_drop, complete_drop, lookup, start_drop, validate_drop,
};
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::Schema;

/// `drop_constraint`: drops constraint `name` from `table`. pgroll's schema requires `down` but
/// documents `""` as its default; it defaults to empty here and `validate` requires it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpDropConstraint {
    pub table: String,
    pub name: String,
    pub up: RawSql,
    #[serde(default)]
    pub down: RawSql,
}

impl OpDropConstraint {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "drop_constraint";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("table", &self.table);
        n.name("name", &self.name);
    }
}

impl Operation for OpDropConstraint {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        let (table, constraint, columns) = lookup(schema, &self.table, &self.name)?;
        if columns.len() > 1 {
            return Err(PlanError::new(
                "name",
                format!(
                    "constraint \"{}\" covers {} columns; drop_constraint handles single-column constraints: \
                     use drop_multicolumn_constraint",
                    self.name,
                    columns.len()
                ),
            ));
        }
        validate_drop(schema, table, constraint, &columns)?;
        if self.down.is_empty() && !table.created_here {
            return Err(PlanError::new(
                "down",
                "`down` is required: it turns a value the new version writes into one the old version's constraint accepts",
            ));
        }
        Ok(())
    }

    fn start(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let (table, constraint, columns) = lookup(schema, &self.table, &self.name)?;
        let conversions: Vec<(String, Option<RawSql>, RawSql)> = columns
            .iter()
            .map(|c| {
                let up = (!self.up.is_empty()).then(|| self.up.clone());
                (c.name.as_str().to_string(), up, self.down.clone())
            })
            .collect();
        start_drop(schema, ctx, plan, table, constraint, &conversions)
    }

    fn complete(
        &self,
        schema: &Schema,
        _ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        complete_drop(schema, plan, &self.table, &self.name)
    }

    fn rollback(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        // The copy is dropped by the duplication's undo; the constraint never changed.
        Ok(())
    }

    fn apply(&self, schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        apply_drop(schema, &self.table, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use crate::ident::Ident;
    use crate::ops::common::testing::{ctx, plan_error, plan_ops, render, schema, table};
    use crate::schema::{Constraint, ConstraintKind, Schema};

    fn posts() -> Schema {
        let mut t = table(
            "posts",
            &[
                ("id", "integer", false),
                ("title", "text", false),
                ("a", "int", true),
                ("b", "int", true),
            ],
        );
        t.constraints.push(Constraint {
            name: Ident::new("title_length"),
            kind: ConstraintKind::Check,
            columns: vec![Ident::new("title")],
            definition: "CHECK ((length(title) > 3))".into(),
            validated: true,
            references: None,
        });
        t.constraints.push(Constraint {
            name: Ident::new("a_lt_b"),
            kind: ConstraintKind::Check,
            columns: vec![Ident::new("a"), Ident::new("b")],
            definition: "CHECK ((a < b))".into(),
            validated: true,
            references: None,
        });
        schema(vec![t])
    }

    #[test]
    fn drops_a_check_through_a_copy() {
        let ops = "  - drop_constraint:
      table: posts
      name: title_length
      up: title
      down: SELECT CASE WHEN length(title) <= 3 THEN LPAD(title, 4, '-') ELSE title END
";
        let (plan, after) = plan_ops(&posts(), &ctx(150004), ops).unwrap();
        assert!(plan.lock_violations().is_empty());
        insta::assert_snapshot!("check", render(&plan));
        let t = after.table("posts").unwrap();
        assert!(t.constraint("title_length").is_none());
        assert_eq!(
            t.column("title").unwrap().physical.as_str(),
            "_pgbaton_new_title"
        );
    }

    #[test]
    fn validation_errors() {
        let s = posts();
        let c = ctx(150004);
        let e = |body: &str| plan_error(&s, &c, &format!("  - drop_constraint: {{{body}}}\n"));
        assert_eq!(
            e("table: nope, name: x, up: '', down: x"),
            "table: table \"nope\" does not exist"
        );
        assert_eq!(
            e("table: posts, name: nope, up: '', down: x"),
            "name: constraint \"nope\" does not exist on table \"posts\""
        );
        assert!(
            e("table: posts, name: title_length, up: ''").starts_with("down: `down` is required")
        );
        assert!(e("table: posts, name: a_lt_b, up: '', down: x")
            .contains("use drop_multicolumn_constraint"));
    }
}
