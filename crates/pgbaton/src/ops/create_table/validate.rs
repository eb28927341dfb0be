//! `create_table`'s checks against the schema (the [`Operation::validate`] of
//! [`OpCreateTable`]): the names are free, columns and constraints are well formed and name the
//! table's columns, and a foreign key references columns a unique key covers, as PostgreSQL
//! requires.
//!
//! [`Operation::validate`]: crate::plan::Operation::validate

use std::collections::{BTreeMap, BTreeSet};

use super::{OpCreateTable, RefTable};
use crate::ops::common::{Constraint, ConstraintType, ForeignKeyAction, ForeignKeyMatchType};
use crate::plan::{PlanContext, PlanError};
use crate::schema::Schema;

/// Server version that brought `UNIQUE NULLS NOT DISTINCT` and `ON DELETE SET NULL (columns)`.
const PG15: i32 = 150000;

impl OpCreateTable {
    /// Everything [`Operation::validate`](crate::plan::Operation::validate) checks, in order.
    pub(super) fn validate_table(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
    ) -> Result<(), PlanError> {
        if schema.table(&self.name).is_some() {
            return Err(PlanError::new(
                "name",
                format!("table \"{}\" already exists", self.name),
            ));
        }
        if let Some(clash) = relation_named(schema, &self.name) {
            return Err(PlanError::new(
                "name",
                format!(
                    "relation \"{}\" already exists in schema \"{}\" ({clash})",
                    self.name,
                    schema.name.as_str()
                ),
            ));
        }
        self.validate_columns(schema)?;
        self.validate_constraint_names()?;
        let pk_from_columns = self.columns.iter().any(|c| c.pk);
        let mut pk_seen = None;
        for (i, c) in self.constraints.iter().enumerate() {
            self.validate_constraint(schema, ctx, i, c, pk_from_columns, &mut pk_seen)?;
        }
        Ok(())
    }

    /// Constraint names are unique per table: column checks and references, and the table's
    /// constraints.
    fn validate_constraint_names(&self) -> Result<(), PlanError> {
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut claim = |name: &str, field: String| -> Result<(), PlanError> {
            match names.get(name) {
                Some(first) => Err(PlanError::new(
                    field,
                    format!("constraint name \"{name}\" is used twice (also {first})"),
                )),
                None => {
                    names.insert(name.to_string(), field);
                    Ok(())
                }
            }
        };
        for (i, col) in self.columns.iter().enumerate() {
            if let Some(check) = &col.check {
                claim(&check.name, format!("columns[{i}].check.name"))?;
            }
            if let Some(r) = &col.references {
                claim(&r.name, format!("columns[{i}].references.name"))?;
            }
        }
        for (i, c) in self.constraints.iter().enumerate() {
            claim(&c.name, format!("constraints[{i}].name"))?;
        }
        Ok(())
    }

    /// Checks a foreign key's referenced table and columns: they exist, and a primary key or
    /// unique constraint (or unique index) covers exactly those columns, as PostgreSQL requires.
    fn check_referenced(
        &self,
        schema: &Schema,
        table: &str,
        columns: &[&str],
        table_field: &str,
        column_field: &dyn Fn(usize) -> String,
    ) -> Result<(), PlanError> {
        match self.resolve(schema, table, table_field)? {
            RefTable::Unknown => Ok(()),
            RefTable::Own => {
                for (j, c) in columns.iter().enumerate() {
                    if self.column_index(c).is_none() {
                        return Err(PlanError::new(
                            column_field(j),
                            format!("column \"{c}\" does not exist in table \"{table}\""),
                        ));
                    }
                }
                let wanted: BTreeSet<&str> = columns.iter().copied().collect();
                let pk: BTreeSet<&str> = self.primary_key().into_iter().collect();
                let covered = pk == wanted
                    || (wanted.len() == 1
                        && self
                            .columns
                            .iter()
                            .any(|c| c.unique && wanted.contains(c.name.as_str())))
                    || self.constraints.iter().any(|k| {
                        matches!(k.type_, ConstraintType::Unique | ConstraintType::PrimaryKey)
                            && !k.deferrable
                            && k.columns
                                .iter()
                                .map(String::as_str)
                                .collect::<BTreeSet<_>>()
                                == wanted
                    });
                if covered {
                    Ok(())
                } else {
                    Err(no_unique_key(table, columns, column_field(0)))
                }
            }
            RefTable::Existing(t) => {
                let mut physical = BTreeSet::new();
                for (j, c) in columns.iter().enumerate() {
                    match t.column(c) {
                        Some(col) => {
                            physical.insert(col.physical.clone());
                        }
                        None => {
                            return Err(PlanError::new(
                                column_field(j),
                                format!("column \"{c}\" does not exist in table \"{table}\""),
                            ))
                        }
                    }
                }
                let covered = t.indexes.iter().any(|i| {
                    i.unique
                        && i.valid
                        && i.predicate.is_none()
                        && !i.has_expressions
                        && i.columns.iter().cloned().collect::<BTreeSet<_>>() == physical
                });
                if covered {
                    Ok(())
                } else {
                    Err(no_unique_key(table, columns, column_field(0)))
                }
            }
        }
    }

    fn validate_columns(&self, schema: &Schema) -> Result<(), PlanError> {
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, col) in self.columns.iter().enumerate() {
            let f = |field: &str| format!("columns[{i}].{field}");
            if let Some(j) = seen.insert(col.name.as_str(), i) {
                return Err(PlanError::new(
                    f("name"),
                    format!("duplicate column \"{}\" (also columns[{j}])", col.name),
                ));
            }
            if col.type_.is_empty() {
                return Err(PlanError::new(
                    f("type"),
                    "the column type must not be empty",
                ));
            }
            if col.pk && col.nullable {
                return Err(PlanError::new(
                    f("nullable"),
                    format!(
                        "column \"{}\" is part of the primary key and cannot be nullable",
                        col.name
                    ),
                ));
            }
            if let Some(generated) = &col.generated {
                match (
                    generated.expression.is_empty(),
                    generated.identity.is_some(),
                ) {
                    (false, true) => {
                        return Err(PlanError::new(
                            f("generated"),
                            "set either expression or identity, not both",
                        ))
                    }
                    (true, false) => {
                        return Err(PlanError::new(
                            f("generated"),
                            "a generated column needs an expression or an identity",
                        ))
                    }
                    _ => {}
                }
                if col.default.is_some() {
                    return Err(PlanError::new(
                        f("default"),
                        format!(
                            "column \"{}\" is generated and cannot also have a default",
                            col.name
                        ),
                    ));
                }
            }
            if let Some(check) = &col.check {
                if check.constraint.is_empty() {
                    return Err(PlanError::new(
                        f("check.constraint"),
                        "the check expression must not be empty",
                    ));
                }
            }
            if let Some(r) = &col.references {
                if r.match_type == ForeignKeyMatchType::Partial {
                    return Err(PlanError::new(
                        f("references.match_type"),
                        "MATCH PARTIAL is not implemented by PostgreSQL",
                    ));
                }
                if r.initially_deferred && !r.deferrable {
                    return Err(PlanError::new(
                        f("references.initially_deferred"),
                        "initially_deferred needs deferrable: true",
                    ));
                }
                self.check_referenced(
                    schema,
                    &r.table,
                    &[r.column.as_str()],
                    &f("references.table"),
                    &|_| f("references.column"),
                )?;
            }
        }
        Ok(())
    }

    fn validate_constraint(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        i: usize,
        c: &Constraint,
        pk_from_columns: bool,
        pk_seen: &mut Option<usize>,
    ) -> Result<(), PlanError> {
        let f = |field: &str| format!("constraints[{i}].{field}");
        let index_backed = matches!(
            c.type_,
            ConstraintType::Unique | ConstraintType::PrimaryKey | ConstraintType::Exclude
        );
        self.validate_constraint_fields(i, c, index_backed)?;
        self.validate_constraint_columns(i, c)?;
        match c.type_ {
            ConstraintType::Unique => {
                if c.nulls_not_distinct && ctx.server_version_num < PG15 {
                    return Err(PlanError::new(
                        f("nulls_not_distinct"),
                        "NULLS NOT DISTINCT needs PostgreSQL 15 or later",
                    ));
                }
            }
            ConstraintType::Check => {
                if c.check.is_empty() {
                    return Err(PlanError::new(
                        f("check"),
                        "a check constraint needs a check expression",
                    ));
                }
            }
            ConstraintType::PrimaryKey => {
                if pk_from_columns {
                    return Err(PlanError::new(
                        f("type"),
                        format!(
                            "the primary key of table \"{}\" is already set by `pk: true` on its columns",
                            self.name
                        ),
                    ));
                }
                if let Some(first) = pk_seen.replace(i) {
                    return Err(PlanError::new(
                        f("type"),
                        format!("a second primary key (the first is constraints[{first}])"),
                    ));
                }
            }
            ConstraintType::ForeignKey => {
                self.validate_foreign_key(schema, ctx, i, c)?;
            }
            ConstraintType::Exclude => {
                let Some(x) = &c.exclude else {
                    return Err(PlanError::new(
                        f("exclude"),
                        "an exclude constraint needs exclude.elements",
                    ));
                };
                if x.elements.is_empty() {
                    return Err(PlanError::new(
                        f("exclude.elements"),
                        "an exclude constraint needs elements (e.g. `room WITH =, during WITH &&`)",
                    ));
                }
            }
        }
        // An index-backed constraint's index is a relation of the schema: its name must be free.
        if index_backed {
            if let Some(clash) = relation_named(schema, &c.name) {
                return Err(PlanError::new(
                    f("name"),
                    format!(
                        "relation \"{}\" already exists in schema \"{}\" ({clash})",
                        c.name,
                        schema.name.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Fields that apply to some kinds of constraint only.
    fn validate_constraint_fields(
        &self,
        i: usize,
        c: &Constraint,
        index_backed: bool,
    ) -> Result<(), PlanError> {
        let f = |field: &str| format!("constraints[{i}].{field}");
        let kind = c.type_.as_str();
        let not_for = |field: &str| {
            PlanError::new(
                f(field),
                format!("does not apply to a {kind} constraint (\"{}\")", c.name),
            )
        };
        if c.type_ != ConstraintType::Check && !c.check.is_empty() {
            return Err(not_for("check"));
        }
        if c.type_ != ConstraintType::Check && c.no_inherit {
            return Err(not_for("no_inherit"));
        }
        if c.type_ != ConstraintType::Unique && c.nulls_not_distinct {
            return Err(not_for("nulls_not_distinct"));
        }
        if c.type_ != ConstraintType::ForeignKey && c.references.is_some() {
            return Err(not_for("references"));
        }
        if c.type_ != ConstraintType::Exclude && c.exclude.is_some() {
            return Err(not_for("exclude"));
        }
        if !index_backed && c.index_parameters.as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(not_for("index_parameters"));
        }
        if c.type_ == ConstraintType::Check && (c.deferrable || c.initially_deferred) {
            return Err(PlanError::new(
                f(if c.deferrable {
                    "deferrable"
                } else {
                    "initially_deferred"
                }),
                format!("check constraint \"{}\" cannot be deferrable", c.name),
            ));
        }
        if c.initially_deferred && !c.deferrable {
            return Err(PlanError::new(
                f("initially_deferred"),
                "initially_deferred needs deferrable: true",
            ));
        }
        if c.type_ == ConstraintType::Exclude && !c.columns.is_empty() {
            return Err(PlanError::new(
                f("columns"),
                "an exclude constraint names its columns in exclude.elements, not in columns",
            ));
        }
        Ok(())
    }

    /// The constraint's columns (and included columns) are the table's, each once.
    fn validate_constraint_columns(&self, i: usize, c: &Constraint) -> Result<(), PlanError> {
        let f = |field: &str| format!("constraints[{i}].{field}");
        let kind = c.type_.as_str();
        let needs_columns = matches!(
            c.type_,
            ConstraintType::Unique | ConstraintType::PrimaryKey | ConstraintType::ForeignKey
        );
        if needs_columns && c.columns.is_empty() {
            return Err(PlanError::new(
                f("columns"),
                format!("a {kind} constraint needs at least one column"),
            ));
        }
        let mut listed = BTreeSet::new();
        for (j, name) in c.columns.iter().enumerate() {
            let Some(k) = self.column_index(name) else {
                return Err(PlanError::new(
                    f(&format!("columns[{j}]")),
                    format!(
                        "column \"{name}\" is not a column of table \"{}\"",
                        self.name
                    ),
                ));
            };
            if !listed.insert(name.as_str()) {
                return Err(PlanError::new(
                    f(&format!("columns[{j}]")),
                    format!("column \"{name}\" is listed twice"),
                ));
            }
            if c.type_ == ConstraintType::PrimaryKey && self.columns[k].nullable {
                return Err(PlanError::new(
                    f(&format!("columns[{j}]")),
                    format!("column \"{name}\" is nullable and cannot be part of the primary key"),
                ));
            }
        }
        if let Some(params) = &c.index_parameters {
            for (j, name) in params.include_columns.iter().enumerate() {
                if self.column_index(name).is_none() {
                    return Err(PlanError::new(
                        f(&format!("index_parameters.include_columns[{j}]")),
                        format!(
                            "column \"{name}\" is not a column of table \"{}\"",
                            self.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A foreign key's `references`: as many columns, a supported match type and actions, a
    /// unique target.
    fn validate_foreign_key(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        i: usize,
        c: &Constraint,
    ) -> Result<(), PlanError> {
        let f = |field: &str| format!("constraints[{i}].{field}");
        let Some(r) = &c.references else {
            return Err(PlanError::new(
                f("references"),
                "a foreign_key constraint needs references",
            ));
        };
        if r.columns.len() != c.columns.len() {
            return Err(PlanError::new(
                f("references.columns"),
                format!(
                    "{} referencing column(s) but {} referenced column(s)",
                    c.columns.len(),
                    r.columns.len()
                ),
            ));
        }
        if r.match_type == ForeignKeyMatchType::Partial {
            return Err(PlanError::new(
                f("references.match_type"),
                "MATCH PARTIAL is not implemented by PostgreSQL",
            ));
        }
        if !r.on_delete_set_columns.is_empty() {
            if !matches!(
                r.on_delete,
                ForeignKeyAction::SetNull | ForeignKeyAction::SetDefault
            ) {
                return Err(PlanError::new(
                    f("references.on_delete_set_columns"),
                    "only applies with on_delete SET NULL or SET DEFAULT",
                ));
            }
            if ctx.server_version_num < PG15 {
                return Err(PlanError::new(
                    f("references.on_delete_set_columns"),
                    "column lists in ON DELETE SET NULL/SET DEFAULT need PostgreSQL 15 or later",
                ));
            }
            for (j, name) in r.on_delete_set_columns.iter().enumerate() {
                if !c.columns.contains(name) {
                    return Err(PlanError::new(
                        f(&format!("references.on_delete_set_columns[{j}]")),
                        format!("column \"{name}\" is not one of the constraint's columns"),
                    ));
                }
            }
        }
        let cols: Vec<&str> = r.columns.iter().map(String::as_str).collect();
        self.check_referenced(schema, &r.table, &cols, &f("references.table"), &|j| {
            f(&format!("references.columns[{j}]"))
        })?;
        Ok(())
    }
}

fn no_unique_key(table: &str, columns: &[&str], field: String) -> PlanError {
    let cols = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    PlanError::new(
        field,
        format!(
            "no primary key or unique constraint of table \"{table}\" covers exactly ({cols}); \
             a foreign key must reference one"
        ),
    )
}

/// What already has the relation name `name` in the schema (a table, or an index of a table).
fn relation_named(schema: &Schema, name: &str) -> Option<String> {
    for t in schema.tables.values() {
        if t.physical.as_str() == name || t.name.as_str() == name {
            return Some(format!("table \"{}\"", t.name.as_str()));
        }
        if t.indexes.iter().any(|i| i.name.as_str() == name) {
            return Some(format!("an index of table \"{}\"", t.name.as_str()));
        }
    }
    None
}
