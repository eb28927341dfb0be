//! `drop_multicolumn_constraint`: drops a constraint (check, unique, foreign key, primary key,
//! exclusion) from the new version while the old version stays subject to it until complete.
//!
//! As in pgroll, every column the constraint covers is duplicated
//! ([`crate::ops::duplicate`]) *without* that constraint (its other constraints and indexes are
//! carried over): the new version reads and writes the copies, free of the constraint; the old
//! version keeps the original columns and the constraint. The dual-write trigger converts with
//! `up` (old → new; the identity when a column has none) and `down` (new → old, required: a
//! value the new version may now write must be made acceptable to the old constraint). At
//! complete the constraint is dropped with the old columns and the copies take their names.
//!
//! The helpers here ([`lookup`], [`start_drop`], [`apply_drop`], ...) also serve
//! `drop_constraint`, pgroll's older single-column form of the same operation.
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use serde::Deserialize;

use crate::ident::RawSql;
use crate::ops::common::{find_constraint, find_table, find_table_mut, MultiColumnSql, Names};
use crate::ops::duplicate;
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::{Column, Constraint, ConstraintKind, Schema, Table};
use crate::step::{LockLevel, Step};

/// `drop_multicolumn_constraint`: drops constraint `name` from `table`. `up` and `down` map each
/// column the constraint covers to the SQL that converts it; `up` may be omitted.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpDropMultiColumnConstraint {
    pub table: String,
    pub name: String,
    #[serde(default)]
    pub up: MultiColumnSql,
    pub down: MultiColumnSql,
}

impl OpDropMultiColumnConstraint {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "drop_multicolumn_constraint";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("table", &self.table);
        n.name("name", &self.name);
        n.keys("up", &self.up);
        n.keys("down", &self.down);
    }

    /// `(column name, up, down)` for each column the constraint covers.
    fn conversions(&self, columns: &[&Column]) -> Vec<(String, Option<RawSql>, RawSql)> {
        columns
            .iter()
            .map(|c| {
                let name = c.name.as_str();
                (
                    name.to_string(),
                    self.up.get(name).filter(|u| !u.is_empty()).cloned(),
                    self.down.get(name).cloned().unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// The table, the constraint and the columns it covers (as the old version sees them).
pub(crate) fn lookup<'s>(
    schema: &'s Schema,
    table: &str,
    name: &str,
) -> Result<(&'s Table, &'s Constraint, Vec<&'s Column>), PlanError> {
    let t = find_table(schema, "table", table)?;
    let constraint = find_constraint(t, "name", name)?;
    let mut columns = Vec::with_capacity(constraint.columns.len());
    for physical in &constraint.columns {
        // A column duplicated earlier in this migration points at its copy already; the
        // constraint still names the original.
        let col = t
            .column_by_physical(physical.as_str())
            .or_else(|| {
                t.columns.iter().find(|c| {
                    duplicate::is_temporary(c) && c.name == *physical
                })
            })
            .ok_or_else(|| {
                PlanError::new(
                    "name",
                    format!(
                        "constraint \"{name}\" covers column \"{}\", which the new version of table \"{table}\" no longer has",
                        physical.as_str()
                    ),
                )
            })?;
        columns.push(col);
    }
    Ok((t, constraint, columns))
}

/// Checks shared by both drop operations: the constraint covers at least one column, and no
/// foreign key relies on it (PostgreSQL would refuse, and the copies could not carry that key).
pub(crate) fn validate_drop(
    schema: &Schema,
    table: &Table,
    constraint: &Constraint,
    columns: &[&Column],
) -> Result<(), PlanError> {
    if columns.is_empty() {
        return Err(PlanError::new(
            "name",
            format!(
                "constraint \"{}\" covers no column; drop it with a `sql` operation",
                constraint.name.as_str()
            ),
        ));
    }
    if matches!(
        constraint.kind,
        ConstraintKind::Unique | ConstraintKind::PrimaryKey
    ) {
        let qual = schema.qualify(table);
        for other in schema.tables.values() {
            for fk in other
                .constraints
                .iter()
                .filter(|c| c.kind == ConstraintKind::ForeignKey)
            {
                let Some((target, cols)) = &fk.references else {
                    continue;
                };
                let mut a = cols.clone();
                let mut b = constraint.columns.clone();
                a.sort();
                b.sort();
                if *target == qual && a == b {
                    return Err(PlanError::new(
                        "name",
                        format!(
                            "constraint \"{}\" is referenced by foreign key \"{}\" of table \"{}\": drop that foreign key first",
                            constraint.name.as_str(),
                            fk.name.as_str(),
                            other.name.as_str()
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The start of a drop: each covered column is duplicated without the constraint, converted
/// with `(column, up, down)`. A table created in this migration has no old version: the
/// constraint is dropped from it directly.
pub(crate) fn start_drop(
    schema: &Schema,
    ctx: &PlanContext,
    plan: &mut PlanBuilder,
    table: &Table,
    constraint: &Constraint,
    conversions: &[(String, Option<RawSql>, RawSql)],
) -> Result<(), PlanError> {
    let qual = schema.qualify(table);
    if table.created_here {
        plan.expand(Step::catalog(
            format!("drop constraint {} from new table {qual}", constraint.name),
            Some(qual.clone()),
            LockLevel::AccessExclusive,
            format!(
                "ALTER TABLE {qual} DROP CONSTRAINT IF EXISTS {}",
                constraint.name
            ),
        ));
        return Ok(());
    }
    for (column, up, down) in conversions {
        let copy =
            duplicate::duplicate(schema, ctx, plan, table.name.as_str(), column).map_err(|e| {
                if e.field == "column" {
                    PlanError::new("name", e.message)
                } else {
                    e
                }
            })?;
        copy.without_constraint(constraint.name.as_str());
        copy.convert(up.as_ref(), Some(down));
    }
    Ok(())
}

/// The complete of a drop of constraint `name` of `table`: the constraint goes first in the
/// table's contract (the old columns it covers are dropped right after by the duplication's
/// contract).
pub(crate) fn complete_drop(
    schema: &Schema,
    plan: &mut PlanBuilder,
    table: &str,
    name: &str,
) -> Result<(), PlanError> {
    let (table, constraint, _) = lookup(schema, table, name)?;
    if table.created_here {
        return Ok(());
    }
    let qual = schema.qualify(table);
    plan.contract(
        qual.clone(),
        format!(
            "ALTER TABLE {qual} DROP CONSTRAINT IF EXISTS {}",
            constraint.name
        ),
    );
    Ok(())
}

/// The new version's model: the covered columns point at their copies, the constraint and its
/// index are gone.
pub(crate) fn apply_drop(schema: &mut Schema, table: &str, name: &str) -> Result<(), PlanError> {
    let (t, _, columns) = lookup(schema, table, name)?;
    let created_here = t.created_here;
    let columns: Vec<String> = columns
        .iter()
        .map(|c| c.name.as_str().to_string())
        .collect();
    let t = find_table_mut(schema, "table", table)?;
    if !created_here {
        for c in &columns {
            duplicate::apply(t, c)?;
        }
    }
    t.constraints.retain(|c| c.name.as_str() != name);
    t.indexes
        .retain(|i| i.constraint.as_ref().is_none_or(|c| c.as_str() != name));
    t.mark_unique_columns();
    Ok(())
}

impl Operation for OpDropMultiColumnConstraint {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        let (table, constraint, columns) = lookup(schema, &self.table, &self.name)?;
        validate_drop(schema, table, constraint, &columns)?;
        if !table.created_here {
            for c in &columns {
                let name = c.name.as_str();
                match self.down.get(name) {
                    None => {
                        return Err(PlanError::new(
                            "down",
                            format!("`down` has no SQL for column \"{name}\" (every column the constraint covers needs one)"),
                        ))
                    }
                    Some(d) if d.is_empty() => {
                        return Err(PlanError::new(format!("down.{name}"), "`down` SQL is empty"))
                    }
                    Some(_) => {}
                }
            }
        }
        for (field, map) in [("down", &self.down), ("up", &self.up)] {
            if let Some(extra) = map
                .keys()
                .find(|k| !columns.iter().any(|c| c.name.as_str() == k.as_str()))
            {
                return Err(PlanError::new(
                    format!("{field}.{extra}"),
                    format!(
                        "column \"{extra}\" is not covered by constraint \"{}\"",
                        self.name
                    ),
                ));
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
        let (table, constraint, columns) = lookup(schema, &self.table, &self.name)?;
        let conversions = self.conversions(&columns);
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
        // The copies are dropped by the duplication's undo; the constraint never changed.
        Ok(())
    }

    fn apply(&self, schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        apply_drop(schema, &self.table, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::{Ident, QualName};
    use crate::ops::common::testing::{ctx, plan_error, plan_ops, render, schema, table};
    use crate::schema::Index;

    fn tickets() -> Schema {
        let mut t = table(
            "tickets",
            &[
                ("ticket_id", "integer", false),
                ("sellers_name", "varchar(255)", true),
                ("sellers_zip", "integer", true),
            ],
        );
        t.constraints.push(Constraint {
            name: Ident::new("check_zip_name"),
            kind: ConstraintKind::Check,
            columns: vec![Ident::new("sellers_name"), Ident::new("sellers_zip")],
            definition: "CHECK (((sellers_name)::text = 'alice'::text) OR (sellers_zip > 0))"
                .into(),
            validated: true,
            references: None,
        });
        t.constraints.push(Constraint {
            name: Ident::new("unique_zip_name"),
            kind: ConstraintKind::Unique,
            columns: vec![Ident::new("sellers_name"), Ident::new("sellers_zip")],
            definition: "UNIQUE (sellers_name, sellers_zip)".into(),
            validated: true,
            references: None,
        });
        t.indexes.push(Index {
            name: Ident::new("unique_zip_name"),
            columns: vec![Ident::new("sellers_name"), Ident::new("sellers_zip")],
            unique: true,
            primary: false,
            valid: true,
            has_expressions: false,
            predicate: None,
            definition: "CREATE UNIQUE INDEX unique_zip_name ON public.tickets USING btree (sellers_name, sellers_zip)".into(),
            constraint: Some(Ident::new("unique_zip_name")),
        });
        let mut refs = table(
            "refs",
            &[("id", "integer", false), ("tid", "integer", true)],
        );
        refs.constraints.push(Constraint {
            name: Ident::new("refs_tid_fkey"),
            kind: ConstraintKind::ForeignKey,
            columns: vec![Ident::new("tid")],
            definition: "FOREIGN KEY (tid) REFERENCES tickets(ticket_id)".into(),
            validated: true,
            references: Some((
                QualName::new("public", "tickets"),
                vec![Ident::new("ticket_id")],
            )),
        });
        schema(vec![t, refs])
    }

    const DROP_CHECK: &str = "  - drop_multicolumn_constraint:
      table: tickets
      name: check_zip_name
      up:
        sellers_zip: sellers_zip + 1
      down:
        sellers_name: sellers_name
        sellers_zip: SELECT CASE WHEN sellers_name <> 'alice' AND sellers_zip <= 0 THEN 123 ELSE sellers_zip END
";

    #[test]
    fn drops_a_check_through_copies_without_it() {
        let (plan, after) = plan_ops(&tickets(), &ctx(150004), DROP_CHECK).unwrap();
        assert!(plan.lock_violations().is_empty());
        insta::assert_snapshot!("check", render(&plan));
        let text = render(&plan);
        // The unique constraint is carried over to the copies; the check is not.
        assert!(text.contains("CREATE UNIQUE INDEX CONCURRENTLY \"_pgbaton_dup_unique_zip_name\""));
        assert!(!text.contains("_pgbaton_dup_check_zip_name"));
        let t = after.table("tickets").unwrap();
        assert!(t.constraint("check_zip_name").is_none());
        assert_eq!(
            t.column("sellers_name").unwrap().physical.as_str(),
            "_pgbaton_new_sellers_name"
        );
    }

    #[test]
    fn drops_a_unique_constraint_and_its_index() {
        let ops = "  - drop_multicolumn_constraint: {table: tickets, name: unique_zip_name, down: {sellers_name: sellers_name, sellers_zip: sellers_zip}}\n";
        let (plan, after) = plan_ops(&tickets(), &ctx(150004), ops).unwrap();
        let text = render(&plan);
        assert!(!text.contains("_pgbaton_dup_unique_zip_name"), "{text}");
        assert!(
            text.contains("ADD CONSTRAINT \"_pgbaton_dup_check_zip_name\""),
            "{text}"
        );
        assert!(text.contains(
            "ALTER TABLE \"public\".\"tickets\" DROP CONSTRAINT IF EXISTS \"unique_zip_name\""
        ));
        assert!(after.index("unique_zip_name").is_none());
    }

    #[test]
    fn validation_errors() {
        let s = tickets();
        let c = ctx(150004);
        let e = |body: &str| {
            plan_error(
                &s,
                &c,
                &format!("  - drop_multicolumn_constraint: {{{body}}}\n"),
            )
        };
        assert_eq!(
            e("table: nope, name: x, down: {}"),
            "table: table \"nope\" does not exist"
        );
        assert_eq!(
            e("table: tickets, name: nope, down: {}"),
            "name: constraint \"nope\" does not exist on table \"tickets\""
        );
        assert_eq!(
            e("table: tickets, name: check_zip_name, down: {sellers_name: x}"),
            "down: `down` has no SQL for column \"sellers_zip\" (every column the constraint covers needs one)"
        );
        assert_eq!(
            e("table: tickets, name: check_zip_name, down: {sellers_name: x, sellers_zip: x, ticket_id: x}"),
            "down.ticket_id: column \"ticket_id\" is not covered by constraint \"check_zip_name\""
        );
        assert_eq!(
            e("table: tickets, name: check_zip_name, up: {ticket_id: x}, down: {sellers_name: x, sellers_zip: x}"),
            "up.ticket_id: column \"ticket_id\" is not covered by constraint \"check_zip_name\""
        );
        assert_eq!(
            e("table: tickets, name: tickets_pkey, down: {ticket_id: x}"),
            "name: constraint \"tickets_pkey\" is referenced by foreign key \"refs_tid_fkey\" of table \"refs\": drop that foreign key first"
        );
        // Dropped twice in one migration.
        let twice = format!("{DROP_CHECK}{DROP_CHECK}");
        assert_eq!(
            plan_error(&s, &c, &twice),
            "name: constraint \"check_zip_name\" does not exist on table \"tickets\""
        );
    }
}
