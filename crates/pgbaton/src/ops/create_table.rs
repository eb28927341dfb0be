//! `create_table`: creates a table with its columns, column constraints (pk, unique, check,
//! references, generated/identity, default, comment) and table constraints (unique, check,
//! primary_key, foreign_key, exclude).
//!
//! Semantics (pgroll's): no old version uses the table, so it is created physically at start
//! under its final name, in one short transaction with its comments; its `Table` in the new
//! version's schema is `created_here` (no triggers, no backfill). Rollback drops it. Complete has
//! nothing to do — unless the name was still taken physically at start by a table this migration
//! drops or renames away (`drop_table x` then `create_table x`): then the table is created as
//! `_pgbaton_new_<name>` and renamed at complete, after the old one is gone (table renames and
//! drops run in operation order at complete). (Indexes and
//! sequences PostgreSQL names itself then keep the temporary name's prefix.)
//!
//! Columns are NOT NULL unless `nullable: true` (pgroll's default; `schema.json`). Names in the
//! file are quoted everywhere; types, defaults, checks, generation expressions, sequence options,
//! storage parameters and exclusion elements are user SQL, passed through.
//!
//! After a `sql` operation (`Schema::opaque`), a referenced table missing from the model is
//! assumed to exist under that name (the SQL may have created it): the server checks it.
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::ident::{ident_list, Ident, Literal, QualName};
use crate::ops::common::{
    check_sql, deferrable_sql, implicit_name, serial_base_type, Column, Constraint, ConstraintType,
    ForeignKeyAction, ForeignKeyMatchType, IndexParameters, Names,
};
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::{self, Schema, Table};
use crate::step::{LockLevel, Step, Work};

/// `create_table`: creates table `name` with `columns` and table `constraints`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpCreateTable {
    pub name: String,
    pub columns: Vec<Column>,
    /// Table comment (a string literal, not SQL).
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub constraints: Vec<Constraint>,
}

/// Server version that brought `UNIQUE NULLS NOT DISTINCT` and `ON DELETE SET NULL (columns)`.
const PG15: i32 = 150000;

/// A referenced table, resolved against the schema.
enum RefTable<'a> {
    /// The table this operation creates (a self-reference).
    Own,
    /// A table of the schema.
    Existing(&'a Table),
    /// Not in the model, after a `sql` operation: assumed to exist under that name.
    Unknown,
}

impl OpCreateTable {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "create_table";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("name", &self.name);
        for (i, column) in self.columns.iter().enumerate() {
            n.element("columns", i, |n| column.names(n));
        }
        for (i, constraint) in self.constraints.iter().enumerate() {
            n.element("constraints", i, |n| constraint.names(n));
        }
    }

    /// The physical name: the table's name, unless a table this migration drops or renames away
    /// still holds it until complete; then a temporary name, renamed at complete.
    fn physical_name(&self, schema: &Schema) -> Ident {
        let taken = |name: &str| {
            schema.dropped_tables.iter().any(|d| d.as_str() == name)
                || schema
                    .tables
                    .values()
                    .any(|t| t.physical.as_str() == name || t.name.as_str() == name)
        };
        if !taken(&self.name) {
            return Ident::new(self.name.as_str());
        }
        let mut n = 1;
        loop {
            let prefix = if n == 1 {
                "_pgbaton_new_".to_string()
            } else {
                format!("_pgbaton_new{n}_")
            };
            let candidate = Ident::derived(&prefix, &self.name);
            if !taken(candidate.as_str()) {
                return candidate;
            }
            n += 1;
        }
    }

    fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// Names of the primary key columns, from `pk: true` or a `primary_key` constraint.
    fn primary_key(&self) -> Vec<&str> {
        let from_columns: Vec<&str> = self
            .columns
            .iter()
            .filter(|c| c.pk)
            .map(|c| c.name.as_str())
            .collect();
        if !from_columns.is_empty() {
            return from_columns;
        }
        self.constraints
            .iter()
            .find(|c| c.type_ == ConstraintType::PrimaryKey)
            .map(|c| c.columns.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    fn resolve<'a>(
        &self,
        schema: &'a Schema,
        table: &str,
        field: &str,
    ) -> Result<RefTable<'a>, PlanError> {
        if table == self.name {
            return Ok(RefTable::Own);
        }
        match schema.table(table) {
            Some(t) => Ok(RefTable::Existing(t)),
            None if schema.opaque => Ok(RefTable::Unknown),
            None => Err(PlanError::new(
                field,
                format!("referenced table \"{table}\" does not exist"),
            )),
        }
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

    /// `REFERENCES` target: the physical table and columns.
    fn referenced(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        table: &str,
        columns: &[String],
    ) -> (QualName, Vec<Ident>) {
        match self.resolve(schema, table, "") {
            Ok(RefTable::Existing(t)) => (
                schema.qualify(t),
                columns
                    .iter()
                    .map(|c| {
                        t.column(c)
                            .map_or_else(|| Ident::new(c.as_str()), |col| col.physical.clone())
                    })
                    .collect(),
            ),
            Ok(RefTable::Own) => (
                ctx.qualify(&self.physical_name(schema)),
                columns.iter().map(Ident::from).collect(),
            ),
            Ok(RefTable::Unknown) | Err(_) => (
                ctx.qualify(&Ident::new(table)),
                columns.iter().map(Ident::from).collect(),
            ),
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

    /// One column's definition, with its inline constraints.
    fn column_sql(&self, schema: &Schema, ctx: &PlanContext, col: &Column) -> String {
        let identity = col.generated.as_ref().is_some_and(|g| g.is_identity());
        let mut sql =
            col.definition_sql(&Ident::new(col.name.as_str()), !col.nullable && !identity);
        if col.unique {
            sql.push_str(" UNIQUE");
        }
        if let Some(r) = &col.references {
            let (table, columns) =
                self.referenced(schema, ctx, &r.table, std::slice::from_ref(&r.column));
            if let Some(column) = columns.first() {
                sql.push_str(&format!(
                    " CONSTRAINT {} {}",
                    Ident::new(r.name.as_str()),
                    r.references_sql(&table, column)
                ));
            }
        }
        if let Some(check) = &col.check {
            sql.push_str(&format!(
                " CONSTRAINT {} {}",
                Ident::new(check.name.as_str()),
                check_sql(&check.constraint, check.no_inherit)
            ));
        }
        sql
    }

    /// One table constraint (without the `CONSTRAINT <name>` prefix).
    fn constraint_body(&self, schema: &Schema, ctx: &PlanContext, c: &Constraint) -> String {
        let cols: Vec<Ident> = c.columns.iter().map(Ident::from).collect();
        let params = |p: &Option<IndexParameters>| {
            p.as_ref().map_or_else(String::new, |p| {
                let include: Vec<Ident> = p.include_columns.iter().map(Ident::from).collect();
                p.sql(&include)
            })
        };
        let deferrable = deferrable_sql(c.deferrable, c.initially_deferred);
        match c.type_ {
            ConstraintType::Unique => format!(
                "UNIQUE{} ({}){}{deferrable}",
                if c.nulls_not_distinct {
                    " NULLS NOT DISTINCT"
                } else {
                    ""
                },
                ident_list(&cols),
                params(&c.index_parameters)
            ),
            ConstraintType::Check => check_sql(&c.check, c.no_inherit),
            ConstraintType::PrimaryKey => format!(
                "PRIMARY KEY ({}){}{deferrable}",
                ident_list(&cols),
                params(&c.index_parameters)
            ),
            ConstraintType::ForeignKey => match &c.references {
                Some(r) => {
                    let (table, ref_cols) = self.referenced(schema, ctx, &r.table, &r.columns);
                    let set: Vec<Ident> = r.on_delete_set_columns.iter().map(Ident::from).collect();
                    format!(
                        "FOREIGN KEY ({}) {}{deferrable}",
                        ident_list(&cols),
                        r.references_sql(&table, &ref_cols, &set)
                    )
                }
                // Rejected by validate.
                None => format!("FOREIGN KEY ({})", ident_list(&cols)),
            },
            ConstraintType::Exclude => {
                let x = c.exclude.clone().unwrap_or_default();
                let using = if x.index_method.is_empty() {
                    String::new()
                } else {
                    format!(" USING {}", Ident::new(x.index_method.as_str()))
                };
                let predicate = if x.predicate.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE ({})", x.predicate)
                };
                format!(
                    "EXCLUDE{using} ({}){}{predicate}{deferrable}",
                    x.elements,
                    params(&c.index_parameters)
                )
            }
        }
    }

    /// The existing table a foreign key of this table references, if any: creating (and
    /// dropping) the table takes a lock on it.
    fn first_referenced_existing(&self, schema: &Schema) -> Option<QualName> {
        let tables = self
            .columns
            .iter()
            .filter_map(|c| c.references.as_ref().map(|r| r.table.as_str()))
            .chain(
                self.constraints
                    .iter()
                    .filter_map(|c| c.references.as_ref().map(|r| r.table.as_str())),
            );
        for table in tables {
            if table == self.name {
                continue;
            }
            return Some(match schema.table(table) {
                Some(t) => schema.qualify(t),
                None => QualName::new(schema.name.clone(), table),
            });
        }
        None
    }

    /// The table as the new version sees it.
    fn model(&self, schema: &Schema, ctx: &PlanContext) -> Table {
        let physical = self.physical_name(schema);
        let qual = ctx.qualify(&physical);
        let mut t = Table::new(Ident::new(self.name.as_str()));
        t.physical = physical.clone();
        t.comment = self.comment.clone();
        t.created_here = true;
        let pk = self.primary_key();
        for col in &self.columns {
            let generated = col.generated.as_ref();
            let identity = generated.and_then(|g| g.identity.as_ref().filter(|_| g.is_identity()));
            let mut c = schema::Column::new(Ident::new(col.name.as_str()), model_type(col));
            c.nullable = col.nullable && identity.is_none() && !pk.contains(&col.name.as_str());
            c.default = col.default.as_ref().map(|d| d.as_str().trim().to_string());
            c.identity = identity.map(|i| match i.user_specified_values {
                crate::ops::common::IdentityUserSpecifiedValues::Always => 'a',
                crate::ops::common::IdentityUserSpecifiedValues::ByDefault => 'd',
            });
            c.generated = generated
                .filter(|g| !g.expression.is_empty())
                .map(|g| g.expression.as_str().to_string());
            c.comment = col.comment.clone();
            t.columns.push(c);
        }

        self.model_column_constraints(schema, ctx, &qual, &physical, &mut t);
        self.model_table_constraints(schema, ctx, &qual, &mut t);
        // As the catalog reader marks them: covered alone by a unique index without predicate.
        t.mark_unique_columns();
        t
    }

    /// Constraints declared on columns: `pk`, `unique`, `check`, `references`.
    fn model_column_constraints(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        qual: &QualName,
        physical: &Ident,
        t: &mut Table,
    ) {
        let pk = self.primary_key();
        if self.columns.iter().any(|c| c.pk) {
            let cols: Vec<Ident> = pk.iter().map(|c| Ident::new(*c)).collect();
            let name = implicit_name(physical.as_str(), None, "pkey");
            t.indexes.push(model_index(
                &name,
                &cols,
                true,
                true,
                btree_def(qual, &name, true, &cols),
            ));
            t.constraints.push(model_constraint(
                name,
                schema::ConstraintKind::PrimaryKey,
                cols.clone(),
                format!("PRIMARY KEY ({})", ident_list(&cols)),
            ));
        }
        for col in &self.columns {
            let cols = vec![Ident::new(col.name.as_str())];
            if col.unique {
                let name = implicit_name(physical.as_str(), Some(&col.name), "key");
                t.indexes.push(model_index(
                    &name,
                    &cols,
                    true,
                    false,
                    btree_def(qual, &name, true, &cols),
                ));
                t.constraints.push(model_constraint(
                    name,
                    schema::ConstraintKind::Unique,
                    cols.clone(),
                    format!("UNIQUE ({})", ident_list(&cols)),
                ));
            }
            if let Some(check) = &col.check {
                t.constraints.push(model_constraint(
                    Ident::new(check.name.as_str()),
                    schema::ConstraintKind::Check,
                    cols.clone(),
                    check_sql(&check.constraint, check.no_inherit),
                ));
            }
            if let Some(r) = &col.references {
                let (table, ref_cols) =
                    self.referenced(schema, ctx, &r.table, std::slice::from_ref(&r.column));
                let definition = format!(
                    "FOREIGN KEY ({}) {}",
                    ident_list(&cols),
                    ref_cols
                        .first()
                        .map_or_else(String::new, |rc| r.references_sql(&table, rc))
                );
                let mut k = model_constraint(
                    Ident::new(r.name.as_str()),
                    schema::ConstraintKind::ForeignKey,
                    cols.clone(),
                    definition,
                );
                k.references = Some((table, ref_cols));
                t.constraints.push(k);
            }
        }
    }

    /// The table's `constraints`.
    fn model_table_constraints(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        qual: &QualName,
        t: &mut Table,
    ) {
        for c in &self.constraints {
            let name = Ident::new(c.name.as_str());
            let cols: Vec<Ident> = c.columns.iter().map(Ident::from).collect();
            let body = self.constraint_body(schema, ctx, c);
            match c.type_ {
                ConstraintType::Unique | ConstraintType::PrimaryKey => {
                    let primary = c.type_ == ConstraintType::PrimaryKey;
                    t.indexes.push(model_index(
                        &name,
                        &cols,
                        true,
                        primary,
                        btree_def(qual, &name, true, &cols),
                    ));
                    let kind = if primary {
                        schema::ConstraintKind::PrimaryKey
                    } else {
                        schema::ConstraintKind::Unique
                    };
                    t.constraints.push(model_constraint(name, kind, cols, body));
                }
                ConstraintType::Check => {
                    t.constraints.push(model_constraint(
                        name,
                        schema::ConstraintKind::Check,
                        cols,
                        body,
                    ));
                }
                ConstraintType::ForeignKey => {
                    let mut k =
                        model_constraint(name, schema::ConstraintKind::ForeignKey, cols, body);
                    k.references = c
                        .references
                        .as_ref()
                        .map(|r| self.referenced(schema, ctx, &r.table, &r.columns));
                    t.constraints.push(k);
                }
                ConstraintType::Exclude => {
                    let predicate = c
                        .exclude
                        .as_ref()
                        .filter(|x| !x.predicate.is_empty())
                        .map(|x| x.predicate.as_str().to_string());
                    t.indexes.push(schema::Index {
                        name: name.clone(),
                        // The elements are user SQL: which columns they use is not modelled.
                        columns: Vec::new(),
                        unique: false,
                        primary: false,
                        valid: true,
                        has_expressions: true,
                        predicate,
                        definition: format!("ALTER TABLE {qual} ADD CONSTRAINT {name} {body}"),
                        constraint: Some(name.clone()),
                    });
                    t.constraints.push(model_constraint(
                        name,
                        schema::ConstraintKind::Exclude,
                        cols,
                        body,
                    ));
                }
            }
        }
    }
}

/// The model of an index that backs a constraint of the new table.
fn model_index(
    name: &Ident,
    cols: &[Ident],
    unique: bool,
    primary: bool,
    definition: String,
) -> schema::Index {
    schema::Index {
        name: name.clone(),
        columns: cols.to_vec(),
        unique,
        primary,
        valid: true,
        has_expressions: false,
        predicate: None,
        definition,
        constraint: Some(name.clone()),
    }
}

/// The definition `pg_get_indexdef` gives a plain btree index.
fn btree_def(qual: &QualName, name: &Ident, unique: bool, cols: &[Ident]) -> String {
    format!(
        "CREATE {}INDEX {name} ON {qual} USING btree ({})",
        if unique { "UNIQUE " } else { "" },
        ident_list(cols)
    )
}

fn model_constraint(
    name: Ident,
    kind: schema::ConstraintKind,
    columns: Vec<Ident>,
    definition: String,
) -> schema::Constraint {
    schema::Constraint {
        name,
        kind,
        columns,
        definition,
        validated: true,
        references: None,
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

/// The type as the model records it: the serial pseudo-types are their integer types (the
/// sequence default PostgreSQL adds is not modelled; the base table's default applies through
/// the views).
fn model_type(col: &Column) -> String {
    let written = col.type_.as_str().trim();
    serial_base_type(written).map_or_else(|| written.to_string(), str::to_string)
}

impl Operation for OpCreateTable {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, schema: &Schema, ctx: &PlanContext) -> Result<(), PlanError> {
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

        // Constraint names are unique per table.
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

        let pk_from_columns = self.columns.iter().any(|c| c.pk);
        let mut pk_seen = None;
        for (i, c) in self.constraints.iter().enumerate() {
            self.validate_constraint(schema, ctx, i, c, pk_from_columns, &mut pk_seen)?;
        }
        Ok(())
    }

    fn start(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let physical = self.physical_name(schema);
        let qual = ctx.qualify(&physical);
        let mut defs: Vec<String> = self
            .columns
            .iter()
            .map(|c| self.column_sql(schema, ctx, c))
            .collect();
        let pk: Vec<Ident> = self
            .columns
            .iter()
            .filter(|c| c.pk)
            .map(|c| Ident::new(c.name.as_str()))
            .collect();
        if !pk.is_empty() {
            defs.push(format!("PRIMARY KEY ({})", ident_list(&pk)));
        }
        for c in &self.constraints {
            defs.push(format!(
                "CONSTRAINT {} {}",
                Ident::new(c.name.as_str()),
                self.constraint_body(schema, ctx, c)
            ));
        }
        let mut sql = vec![if defs.is_empty() {
            format!("CREATE TABLE {qual} ()")
        } else {
            format!("CREATE TABLE {qual} (\n  {}\n)", defs.join(",\n  "))
        }];
        for col in &self.columns {
            if let Some(comment) = &col.comment {
                sql.push(format!(
                    "COMMENT ON COLUMN {qual}.{} IS {}",
                    Ident::new(col.name.as_str()),
                    Literal::new(comment.as_str())
                ));
            }
        }
        if let Some(comment) = &self.comment {
            sql.push(format!(
                "COMMENT ON TABLE {qual} IS {}",
                Literal::new(comment.as_str())
            ));
        }
        // Nobody sees the new table yet; a foreign key locks the referenced table against
        // writes (SHARE ROW EXCLUSIVE) for the moment the catalog changes.
        let (table, lock) = match self.first_referenced_existing(schema) {
            Some(referenced) => (referenced, LockLevel::ShareRowExclusive),
            None => (qual.clone(), LockLevel::AccessExclusive),
        };
        plan.expand(Step::transaction(
            format!("create table {qual}"),
            Some(table),
            lock,
            Work::Catalog,
            sql,
        ));
        Ok(())
    }

    fn complete(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let physical = self.physical_name(schema);
        if physical.as_str() != self.name {
            let qual = ctx.qualify(&physical);
            plan.contract_rename_table(
                qual.clone(),
                format!(
                    "ALTER TABLE {qual} RENAME TO {}",
                    Ident::new(self.name.as_str())
                ),
            );
        }
        Ok(())
    }

    fn rollback(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let qual = ctx.qualify(&self.physical_name(schema));
        // Dropping a table with a foreign key takes ACCESS EXCLUSIVE on the referenced table.
        let table = self
            .first_referenced_existing(schema)
            .unwrap_or_else(|| qual.clone());
        plan.undo(Step::catalog(
            format!("drop table {qual}"),
            Some(table),
            LockLevel::AccessExclusive,
            format!("DROP TABLE IF EXISTS {qual}"),
        ));
        Ok(())
    }

    fn apply(&self, schema: &mut Schema, ctx: &PlanContext) -> Result<(), PlanError> {
        let table = self.model(schema, ctx);
        schema.tables.insert(self.name.clone(), table);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::common::testing::{ctx, plan_error, plan_ops, render, schema, table};
    use crate::schema::ConstraintKind;
    use crate::step::Action;

    /// `owners` (pk `id`, and a unique index on `(id, city)`) and `Weird "T"`.
    fn base() -> Schema {
        let mut owners = table(
            "owners",
            &[
                ("id", "integer", false),
                ("city", "text", false),
                ("note", "text", true),
            ],
        );
        owners.indexes.push(schema::Index {
            name: Ident::new("owners_id_city"),
            columns: vec![Ident::new("id"), Ident::new("city")],
            unique: true,
            primary: false,
            valid: true,
            has_expressions: false,
            predicate: None,
            definition: String::new(),
            constraint: None,
        });
        let weird = table("Weird \"T\"", &[("Key Col", "bigint", false)]);
        schema(vec![owners, weird])
    }

    const EVERY_FIELD: &str = r#"  - create_table:
      name: Pets "Big"
      comment: it's a table
      columns:
        - {name: id, type: bigint, generated: {identity: {user_specified_values: BY DEFAULT, sequence_options: START 10 INCREMENT 5}}}
        - {name: Owner Id, type: integer, nullable: true, references: {name: fk owner, table: owners, column: id, on_delete: CASCADE, on_update: SET NULL, match_type: FULL, deferrable: true, initially_deferred: true}}
        - {name: city, type: text, default: "'chicago'", comment: "where it's from"}
        - {name: Name, type: varchar(100), unique: true, check: {name: name not empty, constraint: length("Name") > 0, no_inherit: true}}
        - {name: loud, type: text, nullable: true, generated: {expression: upper("Name")}}
        - {name: during, type: tsrange, nullable: true}
        - {name: parent, type: bigint, nullable: true, references: {name: parent fk, table: Pets "Big", column: id}}
        - {name: other, type: bigint, nullable: true}
      constraints:
        - {name: Pets pk, type: primary_key, columns: [id], index_parameters: {include_columns: [city], storage_parameters: fillfactor=90}}
        - {name: uq city name, type: unique, columns: [city, Name], nulls_not_distinct: true, deferrable: true}
        - {name: chk, type: check, check: "city <> ''", no_inherit: true}
        - {name: fk owner city, type: foreign_key, columns: [Owner Id, city], references: {table: owners, columns: [id, city], on_delete: SET DEFAULT, on_delete_set_columns: [city], on_update: RESTRICT, match_type: SIMPLE}}
        - {name: fk weird, type: foreign_key, columns: [other], references: {table: Weird "T", columns: [Key Col]}}
        - {name: no overlap, type: exclude, exclude: {index_method: gist, elements: during WITH &&, predicate: during IS NOT NULL}, deferrable: true, initially_deferred: true}
"#;

    #[test]
    fn every_field() {
        let (plan, after) = plan_ops(&base(), &ctx(150004), EVERY_FIELD).unwrap();
        insta::assert_snapshot!("every_field", render(&plan));
        assert!(plan.lock_violations().is_empty());
        // A foreign key to an existing table locks it against writes, briefly.
        assert_eq!(plan.start[0].lock, LockLevel::ShareRowExclusive);
        assert_eq!(plan.start[0].table, Some(QualName::new("public", "owners")));
        assert!(plan.complete.is_empty());

        let t = after
            .table("Pets \"Big\"")
            .expect("the new table is in the new version");
        assert!(t.created_here);
        assert_eq!(t.physical.as_str(), "Pets \"Big\"");
        assert_eq!(t.comment.as_deref(), Some("it's a table"));
        let col = |n: &str| t.column(n).expect(n);
        // NOT NULL unless nullable: true; identity and pk columns are NOT NULL.
        assert!(!col("id").nullable && col("id").identity == Some('d'));
        assert!(col("Owner Id").nullable && !col("city").nullable && !col("Name").nullable);
        assert_eq!(col("city").default.as_deref(), Some("'chicago'"));
        assert_eq!(col("city").comment.as_deref(), Some("where it's from"));
        assert_eq!(col("loud").generated.as_deref(), Some("upper(\"Name\")"));
        assert!(col("Name").unique && col("id").unique && !col("city").unique);
        let pk = t.primary_key().expect("pk");
        assert_eq!(pk.name.as_str(), "Pets pk");
        assert_eq!(pk.columns, vec![Ident::new("id")]);
        let kinds: Vec<(&str, ConstraintKind)> = t
            .constraints
            .iter()
            .map(|c| (c.name.as_str(), c.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("fk owner", ConstraintKind::ForeignKey),
                ("Pets \"Big\"_Name_key", ConstraintKind::Unique),
                ("name not empty", ConstraintKind::Check),
                ("parent fk", ConstraintKind::ForeignKey),
                ("Pets pk", ConstraintKind::PrimaryKey),
                ("uq city name", ConstraintKind::Unique),
                ("chk", ConstraintKind::Check),
                ("fk owner city", ConstraintKind::ForeignKey),
                ("fk weird", ConstraintKind::ForeignKey),
                ("no overlap", ConstraintKind::Exclude),
            ]
        );
        let fk = t.constraint("fk weird").expect("fk");
        assert_eq!(
            fk.references,
            Some((
                QualName::new("public", "Weird \"T\""),
                vec![Ident::new("Key Col")]
            ))
        );
        let indexes: Vec<&str> = t.indexes.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            indexes,
            vec![
                "Pets \"Big\"_Name_key",
                "Pets pk",
                "uq city name",
                "no overlap"
            ]
        );
        // The backfill key of later operations: the primary key.
        assert_eq!(t.backfill_key(), Some(vec![Ident::new("id")]));
    }

    #[test]
    fn pgroll_defaults() {
        let ops = "  - create_table:\n      name: users\n      columns:\n        - {name: id, type: serial, pk: true}\n        - {name: rand, type: varchar(255), pk: true}\n        - {name: name, type: varchar(255), unique: true}\n        - {name: bio, type: text, nullable: true}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        insta::assert_snapshot!("pgroll_defaults", render(&plan));
        assert_eq!(plan.start[0].lock, LockLevel::AccessExclusive);
        assert_eq!(plan.start[0].table, Some(QualName::new("public", "users")));
        let t = after.table("users").expect("users");
        assert_eq!(
            t.column("id").map(|c| c.type_name.as_str()),
            Some("integer")
        );
        assert_eq!(t.primary_key().map(|p| p.name.as_str()), Some("users_pkey"));
        assert_eq!(
            t.primary_key().map(|p| p.columns.clone()),
            Some(vec![Ident::new("id"), Ident::new("rand")])
        );
        assert!(t.column("name").is_some_and(|c| c.unique && !c.nullable));
        assert!(t.column("bio").is_some_and(|c| c.nullable));
        assert!(t
            .indexes
            .iter()
            .any(|i| i.name.as_str() == "users_name_key"));
    }

    #[test]
    fn takes_a_temporary_name_while_the_old_table_exists() {
        // pgroll's "drop table, create table" in one migration: the dropped table keeps its name
        // until complete, so the new one is created aside and renamed after the drop.
        let ops = "  - drop_table: {name: owners}\n  - create_table:\n      name: owners\n      columns:\n        - {name: id, type: integer, pk: true}\n  - rename_table: {from: owners, to: Owners 2}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        insta::assert_snapshot!("drop_create_rename", render(&plan));
        let t = after.table("Owners 2").expect("renamed");
        assert_eq!(t.physical.as_str(), "_pgbaton_new_owners");
        assert!(after.table("owners").is_none());
        // Complete: the old table goes first, then the new one takes the name and the rename.
        let sql: Vec<String> = plan.complete.iter().flat_map(|s| s.statements()).collect();
        assert_eq!(
            sql,
            vec![
                "DROP TABLE IF EXISTS \"public\".\"owners\"",
                "ALTER TABLE \"public\".\"_pgbaton_new_owners\" RENAME TO \"owners\"",
                "ALTER TABLE \"public\".\"owners\" RENAME TO \"Owners 2\"",
            ]
        );
        // Rollback drops the new table under the name it was created with.
        assert!(matches!(&plan.rollback[0].action, Action::Transaction(sql)
            if sql == &["DROP TABLE IF EXISTS \"public\".\"_pgbaton_new_owners\"".to_string()]));
    }

    #[test]
    fn later_operations_see_the_table() {
        let ops = "  - create_table:\n      name: a\n      columns:\n        - {name: id, type: integer, pk: true}\n  - create_table:\n      name: b\n      columns:\n        - {name: a_id, type: integer, references: {name: fk_a, table: a, column: id}}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        assert!(after.table("a").is_some() && after.table("b").is_some());
        assert!(plan.start[1].statements()[0]
            .contains("CONSTRAINT \"fk_a\" REFERENCES \"public\".\"a\" (\"id\")"));
        // Undone in reverse order: b (which references a) first.
        let titles: Vec<&str> = plan.rollback.iter().map(|s| s.title.as_str()).collect();
        assert_eq!(
            titles,
            vec!["drop table \"public\".\"b\"", "drop table \"public\".\"a\""]
        );
        // A second create_table of the same name is refused.
        let err = plan_error(
            &after,
            &ctx(150004),
            "  - create_table:\n      name: a\n      columns: []\n",
        );
        assert_eq!(err, "name: table \"a\" already exists");
    }

    fn err(columns: &str, constraints: &str) -> String {
        let mut ops = format!("  - create_table:\n      name: t\n      columns:\n{columns}");
        if !constraints.is_empty() {
            ops.push_str(&format!("      constraints:\n{constraints}"));
        }
        plan_error(&base(), &ctx(150004), &ops)
    }

    #[test]
    fn validation_errors() {
        let id = "        - {name: id, type: integer}\n";
        let cases: Vec<(String, &str)> = vec![
            (
                plan_error(&base(), &ctx(150004), "  - create_table:\n      name: owners\n      columns: []\n"),
                "name: table \"owners\" already exists",
            ),
            (
                plan_error(&base(), &ctx(150004), "  - create_table:\n      name: owners_pkey\n      columns: []\n"),
                "name: relation \"owners_pkey\" already exists in schema \"public\" (an index of table \"owners\")",
            ),
            (
                err(&format!("{id}        - {{name: x, type: int}}\n        - {{name: id, type: text}}\n"), ""),
                "columns[2].name: duplicate column \"id\" (also columns[0])",
            ),
            (err("        - {name: id, type: ''}\n", ""), "columns[0].type: the column type must not be empty"),
            (
                err("        - {name: id, type: int, pk: true, nullable: true}\n", ""),
                "columns[0].nullable: column \"id\" is part of the primary key and cannot be nullable",
            ),
            (
                err("        - {name: id, type: int, generated: {expression: '1', identity: {}}}\n", ""),
                "columns[0].generated: set either expression or identity, not both",
            ),
            (
                err("        - {name: id, type: int, generated: {}}\n", ""),
                "columns[0].generated: a generated column needs an expression or an identity",
            ),
            (
                err("        - {name: id, type: int, default: '1', generated: {identity: {}}}\n", ""),
                "columns[0].default: column \"id\" is generated and cannot also have a default",
            ),
            (
                err("        - {name: id, type: int, check: {name: c, constraint: ''}}\n", ""),
                "columns[0].check.constraint: the check expression must not be empty",
            ),
            (
                err("        - {name: o, type: int, references: {name: f, table: nope, column: id}}\n", ""),
                "columns[0].references.table: referenced table \"nope\" does not exist",
            ),
            (
                err("        - {name: o, type: int, references: {name: f, table: owners, column: nope}}\n", ""),
                "columns[0].references.column: column \"nope\" does not exist in table \"owners\"",
            ),
            (
                err("        - {name: o, type: text, references: {name: f, table: owners, column: city}}\n", ""),
                "columns[0].references.column: no primary key or unique constraint of table \"owners\" covers exactly (\"city\"); a foreign key must reference one",
            ),
            (
                err("        - {name: o, type: int, references: {name: f, table: t, column: o}}\n", ""),
                "columns[0].references.column: no primary key or unique constraint of table \"t\" covers exactly (\"o\"); a foreign key must reference one",
            ),
            (
                err("        - {name: o, type: int, references: {name: f, table: owners, column: id, match_type: PARTIAL}}\n", ""),
                "columns[0].references.match_type: MATCH PARTIAL is not implemented by PostgreSQL",
            ),
            (
                err("        - {name: o, type: int, references: {name: f, table: owners, column: id, initially_deferred: true}}\n", ""),
                "columns[0].references.initially_deferred: initially_deferred needs deferrable: true",
            ),
            (
                err("        - {name: a, type: int, check: {name: c, constraint: a > 0}}\n        - {name: b, type: int, check: {name: c, constraint: b > 0}}\n", ""),
                "columns[1].check.name: constraint name \"c\" is used twice (also columns[0].check.name)",
            ),
            (
                err(id, "        - {name: u, type: unique}\n"),
                "constraints[0].columns: a unique constraint needs at least one column",
            ),
            (
                err(id, "        - {name: u, type: unique, columns: [nope]}\n"),
                "constraints[0].columns[0]: column \"nope\" is not a column of table \"t\"",
            ),
            (
                err(id, "        - {name: u, type: unique, columns: [id, id]}\n"),
                "constraints[0].columns[1]: column \"id\" is listed twice",
            ),
            (
                err(id, "        - {name: u, type: unique, columns: [id], check: id > 0}\n"),
                "constraints[0].check: does not apply to a unique constraint (\"u\")",
            ),
            (
                err(id, "        - {name: c, type: check}\n"),
                "constraints[0].check: a check constraint needs a check expression",
            ),
            (
                err(id, "        - {name: c, type: check, check: id > 0, deferrable: true}\n"),
                "constraints[0].deferrable: check constraint \"c\" cannot be deferrable",
            ),
            (
                err(id, "        - {name: c, type: check, check: id > 0, index_parameters: {tablespace: x}}\n"),
                "constraints[0].index_parameters: does not apply to a check constraint (\"c\")",
            ),
            (
                err(id, "        - {name: c, type: check, check: id > 0, nulls_not_distinct: true}\n"),
                "constraints[0].nulls_not_distinct: does not apply to a check constraint (\"c\")",
            ),
            (
                err("        - {name: id, type: int, pk: true}\n", "        - {name: p, type: primary_key, columns: [id]}\n"),
                "constraints[0].type: the primary key of table \"t\" is already set by `pk: true` on its columns",
            ),
            (
                err(id, "        - {name: p, type: primary_key, columns: [id]}\n        - {name: q, type: primary_key, columns: [id]}\n"),
                "constraints[1].type: a second primary key (the first is constraints[0])",
            ),
            (
                err("        - {name: id, type: int, nullable: true}\n", "        - {name: p, type: primary_key, columns: [id]}\n"),
                "constraints[0].columns[0]: column \"id\" is nullable and cannot be part of the primary key",
            ),
            (
                err(id, "        - {name: p, type: primary_key, columns: [id], index_parameters: {include_columns: [x]}}\n"),
                "constraints[0].index_parameters.include_columns[0]: column \"x\" is not a column of table \"t\"",
            ),
            (
                err(id, "        - {name: f, type: foreign_key, columns: [id]}\n"),
                "constraints[0].references: a foreign_key constraint needs references",
            ),
            (
                err(id, "        - {name: f, type: foreign_key, columns: [id], references: {table: owners, columns: [id, city]}}\n"),
                "constraints[0].references.columns: 1 referencing column(s) but 2 referenced column(s)",
            ),
            (
                err(id, "        - {name: f, type: foreign_key, columns: [id], references: {table: owners, columns: [nope]}}\n"),
                "constraints[0].references.columns[0]: column \"nope\" does not exist in table \"owners\"",
            ),
            (
                err(id, "        - {name: f, type: foreign_key, columns: [id], references: {table: gone, columns: [id]}}\n"),
                "constraints[0].references.table: referenced table \"gone\" does not exist",
            ),
            (
                err(id, "        - {name: f, type: foreign_key, columns: [id], references: {table: owners, columns: [id], on_delete_set_columns: [id]}}\n"),
                "constraints[0].references.on_delete_set_columns: only applies with on_delete SET NULL or SET DEFAULT",
            ),
            (
                err(&format!("{id}        - {{name: b, type: int}}\n"), "        - {name: f, type: foreign_key, columns: [id], references: {table: owners, columns: [id], on_delete: SET NULL, on_delete_set_columns: [b]}}\n"),
                "constraints[0].references.on_delete_set_columns[0]: column \"b\" is not one of the constraint's columns",
            ),
            (
                err(id, "        - {name: x, type: exclude}\n"),
                "constraints[0].exclude: an exclude constraint needs exclude.elements",
            ),
            (
                err(id, "        - {name: x, type: exclude, exclude: {index_method: gist}}\n"),
                "constraints[0].exclude.elements: an exclude constraint needs elements (e.g. `room WITH =, during WITH &&`)",
            ),
            (
                err(id, "        - {name: x, type: exclude, columns: [id], exclude: {elements: id WITH =}}\n"),
                "constraints[0].columns: an exclude constraint names its columns in exclude.elements, not in columns",
            ),
            (
                err(id, "        - {name: owners_pkey, type: unique, columns: [id]}\n"),
                "constraints[0].name: relation \"owners_pkey\" already exists in schema \"public\" (an index of table \"owners\")",
            ),
            (
                err(id, "        - {name: x, type: check, check: id > 0}\n        - {name: x, type: unique, columns: [id]}\n"),
                "constraints[1].name: constraint name \"x\" is used twice (also constraints[0].name)",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
        // PostgreSQL 14 has no NULLS NOT DISTINCT nor ON DELETE SET NULL (columns).
        let ops = "  - create_table:\n      name: t\n      columns:\n        - {name: id, type: integer}\n      constraints:\n        - {name: u, type: unique, columns: [id], nulls_not_distinct: true}\n";
        assert_eq!(
            plan_error(&base(), &ctx(140010), ops),
            "constraints[0].nulls_not_distinct: NULLS NOT DISTINCT needs PostgreSQL 15 or later"
        );
        assert!(plan_ops(&base(), &ctx(150004), ops).is_ok());
    }

    #[test]
    fn opaque_schema_trusts_unknown_references() {
        let mut s = base();
        s.opaque = true;
        let ops = "  - create_table:\n      name: t\n      columns:\n        - {name: u, type: int, references: {name: f, table: made by sql, column: id}}\n";
        let (plan, _) = plan_ops(&s, &ctx(150004), ops).unwrap();
        assert!(plan.start[0].statements()[0]
            .contains("REFERENCES \"public\".\"made by sql\" (\"id\")"));
    }
}
