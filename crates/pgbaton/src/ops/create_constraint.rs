//! `create_constraint`: adds a unique, check, foreign key or primary key constraint on one or
//! more columns of an existing table, while the old version keeps writing rows it would violate.
//!
//! As in pgroll, every column the constraint covers is duplicated
//! ([`crate::ops::duplicate`]): the new version reads and writes the copies, the old version the
//! original columns; the dual-write trigger converts with the file's `up` (old → new) and `down`
//! (new → old), and existing rows are backfilled through `up`. The constraint is created on the
//! copies only, so the old version is never subject to it:
//!
//! - `check`, `foreign_key`: `ADD CONSTRAINT .. NOT VALID` after the trigger is in place (a brief
//!   lock, catalog only), `VALIDATE CONSTRAINT` at complete (`SHARE UPDATE EXCLUSIVE`, scans
//!   without blocking anyone).
//! - `unique`, `primary_key`: `CREATE UNIQUE INDEX CONCURRENTLY` on the copies after the
//!   backfill; at complete `ADD CONSTRAINT .. UNIQUE / PRIMARY KEY USING INDEX` (catalog only).
//!   A primary key's copies are NOT NULL through a validated check first, so `USING INDEX` does
//!   not scan under its lock.
//!
//! At complete the old columns are dropped and the copies take their names (the duplication
//! module's contract). A table created by the same migration has no old version and no rows: the
//! constraint is added to it directly.
//!
//! `exclude` is not a type pgroll allows here; it is accepted by the parser only to be refused
//! with the reason: PostgreSQL cannot build an exclusion constraint without blocking writes.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::ident::{ident_list, Ident, QualName, RawSql};
use crate::ops::common::{
    check_sql, find_column, find_table, find_table_mut, keyword_enum, no_column,
    rename_columns_in_sql, ForeignKeyAction, ForeignKeyMatchType, IndexParameters, MultiColumnSql,
    Names, TableForeignKeyReference,
};
use crate::ops::create_index::refuse_broken_concurrent_builds;
use crate::ops::duplicate;
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::{Constraint, ConstraintKind, Index, Schema, Table};
use crate::step::{LockLevel, Step};

/// `create_constraint`: adds constraint `name` of `type` on `columns` of `table`. `up` and `down`
/// map each column the constraint covers to the SQL that converts it (old → new, new → old).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpCreateConstraint {
    pub table: String,
    pub name: String,
    #[serde(rename = "type")]
    pub type_: CreateConstraintType,
    #[serde(default)]
    pub columns: Vec<String>,
    /// Check expression (type `check`).
    #[serde(default)]
    pub check: Option<RawSql>,
    #[serde(default)]
    pub no_inherit: bool,
    #[serde(default)]
    pub index_parameters: Option<IndexParameters>,
    #[serde(default)]
    pub references: Option<TableForeignKeyReference>,
    pub up: MultiColumnSql,
    pub down: MultiColumnSql,
}

keyword_enum! {
    /// The kind of constraint `create_constraint` adds.
    pub enum CreateConstraintType (exact) {
        Unique => "unique",
        Check => "check",
        ForeignKey => "foreign_key",
        PrimaryKey => "primary_key",
        /// Not allowed by pgroll's schema either; parsed so `validate` can say why.
        Exclude => "exclude",
    }
}

impl OpCreateConstraint {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "create_constraint";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("table", &self.table);
        n.name("name", &self.name);
        n.list("columns", &self.columns);
        if let Some(p) = &self.index_parameters {
            n.nested("index_parameters", |n| p.names(n));
        }
        if let Some(r) = &self.references {
            n.nested("references", |n| r.names(n));
        }
        n.keys("up", &self.up);
        n.keys("down", &self.down);
    }

    fn table<'s>(&self, schema: &'s Schema) -> Result<&'s Table, PlanError> {
        find_table(schema, "table", &self.table)
    }

    fn ident(&self) -> Ident {
        Ident::new(self.name.as_str())
    }

    fn uses_index(&self) -> bool {
        matches!(
            self.type_,
            CreateConstraintType::Unique | CreateConstraintType::PrimaryKey
        )
    }

    fn constraint_kind(&self) -> ConstraintKind {
        match self.type_ {
            CreateConstraintType::Unique => ConstraintKind::Unique,
            CreateConstraintType::Check => ConstraintKind::Check,
            CreateConstraintType::ForeignKey => ConstraintKind::ForeignKey,
            CreateConstraintType::PrimaryKey => ConstraintKind::PrimaryKey,
            CreateConstraintType::Exclude => ConstraintKind::Exclude,
        }
    }

    /// The physical column each column of the table has in the new version, given the physical
    /// names of the constrained columns (their copies, or the columns themselves in a new table).
    fn new_physical(&self, table: &Table, constrained: &[Ident]) -> Vec<(String, Ident)> {
        table
            .columns
            .iter()
            .map(|c| {
                let physical = self
                    .columns
                    .iter()
                    .position(|n| n == c.name.as_str())
                    .map_or_else(|| c.physical.clone(), |i| constrained[i].clone());
                (c.name.as_str().to_string(), physical)
            })
            .collect()
    }

    /// The constraint's definition over `scope` (column name → physical column of the new version):
    /// `UNIQUE (..)`, `CHECK (..)`, `FOREIGN KEY (..) REFERENCES ..`, `PRIMARY KEY (..)`.
    fn definition(&self, schema: &Schema, scope: &[(String, Ident)]) -> Result<String, PlanError> {
        let physical = |name: &str| -> Result<Ident, PlanError> {
            scope
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, p)| p.clone())
                .ok_or_else(|| no_column("columns", name, &self.table))
        };
        let columns = self
            .columns
            .iter()
            .map(|c| physical(c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(match self.type_ {
            CreateConstraintType::Unique | CreateConstraintType::PrimaryKey => {
                let kind = if self.type_ == CreateConstraintType::Unique {
                    "UNIQUE"
                } else {
                    "PRIMARY KEY"
                };
                let params = match &self.index_parameters {
                    Some(p) => {
                        let include = p
                            .include_columns
                            .iter()
                            .map(|c| physical(c))
                            .collect::<Result<Vec<_>, _>>()?;
                        p.sql(&include)
                    }
                    None => String::new(),
                };
                format!("{kind} ({}){params}", ident_list(&columns))
            }
            CreateConstraintType::Check => {
                let expr = self.check.clone().unwrap_or_default();
                let table = self.table(schema)?;
                check_sql(
                    &rename_columns_in_sql(&expr, table.physical.as_str(), scope),
                    self.no_inherit,
                )
            }
            CreateConstraintType::ForeignKey => {
                let Some(r) = &self.references else {
                    return Err(PlanError::new(
                        "references",
                        "a foreign key needs references",
                    ));
                };
                let (target, target_columns) = referenced(schema, r)?;
                let set = r
                    .on_delete_set_columns
                    .iter()
                    .map(|c| physical(c))
                    .collect::<Result<Vec<_>, _>>()?;
                format!(
                    "FOREIGN KEY ({}) {}",
                    ident_list(&columns),
                    r.references_sql(&target, &target_columns, &set)
                )
            }
            CreateConstraintType::Exclude => {
                return Err(PlanError::new(
                    "type",
                    "exclusion constraints are not supported",
                ))
            }
        })
    }

    /// `CREATE UNIQUE INDEX CONCURRENTLY` for a unique or primary key constraint on `columns`.
    fn index_sql(&self, qual: &QualName, scope: &[(String, Ident)], columns: &[Ident]) -> String {
        let mut sql = format!(
            "CREATE UNIQUE INDEX CONCURRENTLY {} ON {qual} ({})",
            self.ident(),
            ident_list(columns)
        );
        if let Some(p) = &self.index_parameters {
            let include: Vec<Ident> = p
                .include_columns
                .iter()
                .filter_map(|c| scope.iter().find(|(n, _)| n == c).map(|(_, p)| p.clone()))
                .collect();
            if !include.is_empty() {
                sql.push_str(&format!(" INCLUDE ({})", ident_list(&include)));
            }
            if !p.storage_parameters.is_empty() {
                sql.push_str(&format!(" WITH ({})", p.storage_parameters));
            }
            if !p.tablespace.is_empty() {
                sql.push_str(&format!(
                    " TABLESPACE {}",
                    Ident::new(p.tablespace.as_str())
                ));
            }
        }
        sql
    }
}

/// The referenced table (physical, qualified) and the physical names of its referenced columns.
fn referenced(
    schema: &Schema,
    r: &TableForeignKeyReference,
) -> Result<(QualName, Vec<Ident>), PlanError> {
    let t = find_table(schema, "references.table", &r.table)?;
    let mut cols = Vec::with_capacity(r.columns.len());
    for (i, c) in r.columns.iter().enumerate() {
        let col = find_column(t, &format!("references.columns[{i}]"), c)?;
        cols.push(col.physical.clone());
    }
    Ok((schema.qualify(t), cols))
}

impl OpCreateConstraint {
    /// The constraint's name is free (and so is the index name a unique or primary key takes).
    fn validate_name(&self, schema: &Schema, table: &Table) -> Result<(), PlanError> {
        if table.constraint(&self.name).is_some() {
            return Err(PlanError::new(
                "name",
                format!(
                    "constraint \"{}\" already exists on table \"{}\"",
                    self.name, self.table
                ),
            ));
        }
        if self.uses_index() {
            // An INVALID index of this name on this table is the leftover of a failed build of
            // this constraint: the build drops and rebuilds it.
            let leftover = |owner: &Table, index: &Index| {
                !index.valid && index.constraint.is_none() && owner.physical == table.physical
            };
            if let Some((owner, _)) = schema.index(&self.name).filter(|(o, i)| !leftover(o, i)) {
                return Err(PlanError::new(
                    "name",
                    format!(
                        "a {} constraint gets an index of its name, and index \"{}\" already exists (on table \"{}\")",
                        self.type_,
                        self.name,
                        owner.name.as_str()
                    ),
                ));
            }
            if schema.table(&self.name).is_some() {
                return Err(PlanError::new(
                    "name",
                    format!(
                        "a {} constraint gets an index of its name, and \"{}\" is a table",
                        self.type_, self.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The columns exist, once each, each with its `up` and `down` on an existing table.
    fn validate_columns(&self, table: &Table) -> Result<(), PlanError> {
        if self.columns.is_empty() {
            return Err(PlanError::new(
                "columns",
                format!("a {} constraint needs at least one column", self.type_),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, c) in self.columns.iter().enumerate() {
            if !seen.insert(c.as_str()) {
                return Err(PlanError::new(
                    format!("columns[{i}]"),
                    format!("column \"{c}\" is listed twice"),
                ));
            }
            let col = find_column(table, &format!("columns[{i}]"), c)?;
            if !table.created_here {
                if !self.up.contains_key(c) {
                    return Err(PlanError::new(
                        "up",
                        format!("`up` has no SQL for column \"{c}\" (every constrained column needs one)"),
                    ));
                }
                if !self.down.contains_key(c) {
                    return Err(PlanError::new(
                        "down",
                        format!("`down` has no SQL for column \"{c}\" (every constrained column needs one)"),
                    ));
                }
                if col.generated.is_some() {
                    return Err(PlanError::new(
                        format!("columns[{i}]"),
                        format!("column \"{c}\" is a generated column: its values cannot be converted by `up`/`down`"),
                    ));
                }
            }
        }
        for (field, map) in [("up", &self.up), ("down", &self.down)] {
            if let Some(extra) = map.keys().find(|k| !self.columns.contains(k)) {
                return Err(PlanError::new(
                    format!("{field}.{extra}"),
                    format!("column \"{extra}\" is not one of the constraint's columns"),
                ));
            }
        }
        Ok(())
    }

    /// `check`, `no_inherit` and `index_parameters` fit the constraint's type.
    fn validate_kind_fields(&self, table: &Table) -> Result<(), PlanError> {
        let is_check = self.type_ == CreateConstraintType::Check;
        match (&self.check, is_check) {
            (None, true) => {
                return Err(PlanError::new(
                    "check",
                    "a check constraint needs its expression",
                ))
            }
            (Some(c), true) if c.is_empty() => {
                return Err(PlanError::new(
                    "check",
                    "a check constraint needs its expression",
                ))
            }
            (Some(_), false) => {
                return Err(PlanError::new(
                    "check",
                    format!("`check` applies to check constraints, not {}", self.type_),
                ))
            }
            _ => {}
        }
        if self.no_inherit && !is_check {
            return Err(PlanError::new(
                "no_inherit",
                format!(
                    "`no_inherit` applies to check constraints, not {}",
                    self.type_
                ),
            ));
        }
        if self.index_parameters.is_some() && !self.uses_index() {
            return Err(PlanError::new(
                "index_parameters",
                format!(
                    "`index_parameters` apply to unique and primary key constraints, not {}",
                    self.type_
                ),
            ));
        }
        if let Some(p) = &self.index_parameters {
            for (i, c) in p.include_columns.iter().enumerate() {
                find_column(table, &format!("index_parameters.include_columns[{i}]"), c)?;
            }
        }
        Ok(())
    }

    /// `references` is there exactly for a foreign key, and names a unique target.
    fn validate_references(&self, schema: &Schema, ctx: &PlanContext) -> Result<(), PlanError> {
        let is_fk = self.type_ == CreateConstraintType::ForeignKey;
        match (&self.references, is_fk) {
            (None, true) => {
                return Err(PlanError::new(
                    "references",
                    "a foreign key needs `references`",
                ))
            }
            (Some(_), false) => {
                return Err(PlanError::new(
                    "references",
                    format!("`references` applies to foreign keys, not {}", self.type_),
                ))
            }
            (Some(r), true) => {
                let (_, target_columns) = referenced(schema, r)?;
                if let Some(target) = schema.table(&r.table) {
                    let mut wanted = target_columns.clone();
                    wanted.sort();
                    let unique = target.indexes.iter().any(|i| {
                        let mut cols = i.columns.clone();
                        cols.sort();
                        i.unique
                            && i.valid
                            && i.predicate.is_none()
                            && !i.has_expressions
                            && cols == wanted
                    });
                    if !unique && !schema.opaque {
                        return Err(PlanError::new(
                            "references.columns",
                            format!(
                                "table \"{}\" has no primary key, unique constraint or unique index on ({}), which a foreign key needs",
                                r.table,
                                r.columns.join(", ")
                            ),
                        ));
                    }
                }
                if r.columns.len() != self.columns.len() {
                    return Err(PlanError::new(
                        "references.columns",
                        format!(
                            "the foreign key has {} column(s) and references {}",
                            self.columns.len(),
                            r.columns.len()
                        ),
                    ));
                }
                if r.match_type == ForeignKeyMatchType::Partial {
                    return Err(PlanError::new(
                        "references.match_type",
                        "PostgreSQL does not implement MATCH PARTIAL",
                    ));
                }
                if !r.on_delete_set_columns.is_empty() {
                    if !matches!(
                        r.on_delete,
                        ForeignKeyAction::SetNull | ForeignKeyAction::SetDefault
                    ) {
                        return Err(PlanError::new(
                            "references.on_delete_set_columns",
                            "column lists apply to ON DELETE SET NULL and SET DEFAULT only",
                        ));
                    }
                    if ctx.server_version_num < 150000 {
                        return Err(PlanError::new(
                            "references.on_delete_set_columns",
                            "ON DELETE SET NULL/SET DEFAULT with a column list needs PostgreSQL 15 or later",
                        ));
                    }
                    for (i, c) in r.on_delete_set_columns.iter().enumerate() {
                        if !self.columns.contains(c) {
                            return Err(PlanError::new(
                                format!("references.on_delete_set_columns[{i}]"),
                                format!("column \"{c}\" is not one of the foreign key's columns"),
                            ));
                        }
                    }
                }
            }
            (None, false) => {}
        }
        Ok(())
    }
}

impl Operation for OpCreateConstraint {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, schema: &Schema, ctx: &PlanContext) -> Result<(), PlanError> {
        if self.type_ == CreateConstraintType::Exclude {
            return Err(PlanError::new(
                "type",
                "an exclusion constraint cannot be added without blocking writes (PostgreSQL has no \
                 concurrent way to build one), and pgroll's create_constraint does not allow it; \
                 add it with a `sql` operation if the table can be locked for the index build",
            ));
        }
        let table = self.table(schema)?;
        self.validate_name(schema, table)?;
        self.validate_columns(table)?;
        self.validate_kind_fields(table)?;
        self.validate_references(schema, ctx)?;
        if self.type_ == CreateConstraintType::PrimaryKey {
            if let Some(pk) = table.primary_key() {
                return Err(PlanError::new(
                    "type",
                    format!(
                        "table \"{}\" already has a primary key (\"{}\")",
                        self.table,
                        pk.name.as_str()
                    ),
                ));
            }
        }
        if self.uses_index() && !table.created_here {
            refuse_broken_concurrent_builds(ctx, "type")?;
        }
        Ok(())
    }

    fn start(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let table = self.table(schema)?;
        let qual = schema.qualify(table);
        let name = self.ident();

        if table.created_here {
            // No old version, no rows: the constraint goes straight onto the new table.
            let scope = self.new_physical(table, &self.physical_in_place(table));
            let lock = match self.type_ {
                CreateConstraintType::ForeignKey => LockLevel::ShareRowExclusive,
                _ => LockLevel::AccessExclusive,
            };
            plan.expand(Step::catalog(
                format!("add {} constraint {name} to new table {qual}", self.type_),
                Some(qual.clone()),
                lock,
                format!(
                    "ALTER TABLE {qual} ADD CONSTRAINT {name} {}",
                    self.definition(schema, &scope)?
                ),
            ));
            return Ok(());
        }

        let mut targets = Vec::with_capacity(self.columns.len());
        for c in &self.columns {
            let copy = duplicate::duplicate(schema, ctx, plan, &self.table, c)
                .map_err(|e| locate(e, c))?;
            copy.convert(self.up.get(c), self.down.get(c));
            if self.uses_index() {
                // An INVALID leftover of this constraint's index is rebuilt, never carried over.
                copy.without_constraint(&self.name);
            }
            if self.type_ == CreateConstraintType::PrimaryKey {
                copy.set_nullable(false);
            }
            targets.push(copy.target().clone());
        }
        let scope = self.new_physical(table, &targets);
        match self.type_ {
            CreateConstraintType::Unique | CreateConstraintType::PrimaryKey => {
                plan.build(Step::create_index_concurrently(
                    format!("build unique index {name} on the copies in {qual}"),
                    qual.clone(),
                    QualName::new(qual.schema.clone(), name.clone()),
                    self.index_sql(&qual, &scope, &targets),
                ));
            }
            CreateConstraintType::Check | CreateConstraintType::ForeignKey => {
                let lock = if self.type_ == CreateConstraintType::ForeignKey {
                    LockLevel::ShareRowExclusive
                } else {
                    LockLevel::AccessExclusive
                };
                plan.guard(Step::catalog(
                    format!(
                        "add {} constraint {name} on the copies in {qual} (NOT VALID)",
                        self.type_
                    ),
                    Some(qual.clone()),
                    lock,
                    format!(
                        "ALTER TABLE {qual} ADD CONSTRAINT {name} {} NOT VALID",
                        self.definition(schema, &scope)?
                    ),
                ));
            }
            CreateConstraintType::Exclude => {}
        }
        Ok(())
    }

    fn complete(
        &self,
        schema: &Schema,
        _ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let table = self.table(schema)?;
        if table.created_here {
            return Ok(());
        }
        let qual = schema.qualify(table);
        let name = self.ident();
        match self.type_ {
            CreateConstraintType::Check | CreateConstraintType::ForeignKey => {
                plan.validate(duplicate::validate_step(&qual, &name, false));
            }
            CreateConstraintType::Unique => {
                plan.contract(
                    qual.clone(),
                    format!("ALTER TABLE {qual} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}"),
                );
            }
            CreateConstraintType::PrimaryKey => {
                // After the copies' contract (their NOT NULL is set from the validated checks,
                // then they are renamed): `USING INDEX` then finds NOT NULL columns and does not
                // scan. The column-rename stage is the first that runs after it; the statement
                // names no column, so the renames around it do not matter.
                plan.contract_rename_column(
                    qual.clone(),
                    format!(
                        "ALTER TABLE {qual} ADD CONSTRAINT {name} PRIMARY KEY USING INDEX {name}"
                    ),
                );
            }
            CreateConstraintType::Exclude => {}
        }
        Ok(())
    }

    fn rollback(
        &self,
        schema: &Schema,
        _ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let table = self.table(schema)?;
        let qual = schema.qualify(table);
        let name = self.ident();
        // The copies (and with them what was built on them) are dropped by the duplication's own
        // undo; these steps also clean up after a start that died before that was planned, and
        // undo the direct path of a new table.
        if self.uses_index() && !table.created_here {
            plan.undo(Step::concurrent(
                format!("drop index {name}"),
                Some(qual.clone()),
                LockLevel::ShareUpdateExclusive,
                format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS {}",
                    QualName::new(qual.schema.clone(), name.clone())
                ),
            ));
        } else {
            let lock = if self.type_ == CreateConstraintType::ForeignKey {
                LockLevel::ShareRowExclusive
            } else {
                LockLevel::AccessExclusive
            };
            plan.undo(Step::catalog(
                format!("drop constraint {name} from {qual}"),
                Some(qual.clone()),
                lock,
                format!("ALTER TABLE IF EXISTS {qual} DROP CONSTRAINT IF EXISTS {name}"),
            ));
        }
        Ok(())
    }

    fn apply(&self, schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        let table = self.table(schema)?;
        let created_here = table.created_here;
        let physical: Vec<Ident> = if created_here {
            self.physical_in_place(table)
        } else {
            self.columns
                .iter()
                .map(|c| crate::plan::new_column_name(c))
                .collect()
        };
        let scope = self.new_physical(table, &physical);
        let definition = self.definition(schema, &scope)?;
        let references = match &self.references {
            Some(r) => Some(referenced(schema, r)?),
            None => None,
        };
        let qual = schema.qualify(table);
        let table = find_table_mut(schema, "table", &self.table)?;
        if !created_here {
            for c in &self.columns {
                duplicate::apply(table, c)?;
            }
        }
        table.constraints.push(Constraint {
            name: self.ident(),
            kind: self.constraint_kind(),
            columns: physical.clone(),
            definition,
            validated: true,
            references,
        });
        if self.uses_index() {
            let primary = self.type_ == CreateConstraintType::PrimaryKey;
            table.indexes.retain(|i| i.name.as_str() != self.name);
            table.indexes.push(Index {
                name: self.ident(),
                columns: physical.clone(),
                unique: true,
                primary,
                valid: true,
                has_expressions: false,
                predicate: None,
                definition: format!(
                    "CREATE UNIQUE INDEX {} ON {} USING btree ({})",
                    self.ident(),
                    qual,
                    ident_list(&physical)
                ),
                constraint: Some(self.ident()),
            });
            for c in table
                .columns
                .iter_mut()
                .filter(|c| physical.contains(&c.physical))
            {
                if primary {
                    c.nullable = false;
                }
                if physical.len() == 1 {
                    c.unique = true;
                }
            }
        }
        Ok(())
    }
}

impl OpCreateConstraint {
    /// The constrained columns' physical names when the constraint goes onto them directly.
    fn physical_in_place(&self, table: &Table) -> Vec<Ident> {
        self.columns
            .iter()
            .map(|c| {
                table
                    .column(c)
                    .map_or_else(|| Ident::new(c.as_str()), |col| col.physical.clone())
            })
            .collect()
    }
}

/// A duplication error about `column` of this operation, at the operation's `columns` field.
fn locate(e: PlanError, column: &str) -> PlanError {
    if e.field == "column" || e.field == "table" {
        PlanError::new("columns", format!("{} ({column})", e.message))
    } else {
        e
    }
}

#[cfg(test)]
mod tests;
