//! `add_column`: adds a column to an existing table, without a table rewrite or a scan under a
//! lock that blocks the application.
//!
//! The column is created as `_pgbaton_new_<name>` (the new version's view shows it under its
//! name, the old version never sees it) and renamed at complete. How each field is applied:
//!
//! | field | start | complete |
//! |---|---|---|
//! | nullable, constant default | `ADD COLUMN ... DEFAULT` (catalog only, PG11+) | rename |
//! | volatile default (`random()`, `nextval`, serial types) | `ADD COLUMN` nullable, `SET DEFAULT`, existing rows filled in batches | rename |
//! | `nullable: false` | `CHECK (col IS NOT NULL) NOT VALID` once the trigger fills old-version rows (inline `NOT NULL` with a constant default) | `VALIDATE`, `SET NOT NULL` (no scan: the valid check proves it), drop the check |
//! | `up` | dual-write trigger for old-version writes + batched backfill of existing rows | trigger dropped |
//! | `check`, `references` | `NOT VALID` constraint | `VALIDATE` (no blocking lock) |
//! | `unique` | `CREATE UNIQUE INDEX CONCURRENTLY` after the backfill | `ADD CONSTRAINT ... UNIQUE USING INDEX` |
//! | `comment` | `COMMENT ON COLUMN` | — |
//!
//! On a table created by the same migration nothing reads or writes the table yet, so the column
//! is added with its whole definition in one statement. Rollback drops the column, which takes
//! its constraints, index, comment and owned sequence with it.

use serde::Deserialize;

// `"name"` as PostgreSQL quotes it, for messages.
use crate::ident::{quote_ident as q, Ident, Literal, QualName, RawSql};
use crate::ops::common::{
    check_sql, find_table, find_table_mut, implicit_name, no_column_on, rename_columns_in_sql,
    serial_base_type, Column, ForeignKeyMatchType, ForeignKeyReference, Names,
};
use crate::plan::{new_column_name, Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::{self, ConstraintKind, Schema, Table};
use crate::step::{Assignment, BackfillKey, LockLevel, Step, Work};
use crate::triggers::DualWriteRule;

/// `add_column`: adds `column` to `table`; `up` fills it for rows written by the old version.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpAddColumn {
    pub table: String,
    pub column: Column,
    /// SQL expression computing the new column from the old row; empty for none.
    #[serde(default)]
    pub up: RawSql,
}

impl OpAddColumn {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "add_column";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("table", &self.table);
        n.nested("column", |n| self.column.names(n));
    }
}

/// How the NOT NULL of the new column is enforced while the migration is active.
#[derive(Debug)]
enum NotNull {
    /// The column is nullable.
    No,
    /// `NOT NULL` in the column definition: a constant default fills existing rows, or the table
    /// was created by this migration and has none.
    Inline,
    /// `CHECK (col IS NOT NULL) NOT VALID` until complete.
    Check(Ident),
}

/// The foreign key of the column, resolved to physical names.
#[derive(Debug)]
struct ForeignKey {
    name: Ident,
    /// The referenced table and column.
    target: QualName,
    target_column: Ident,
    /// `REFERENCES ... (col) MATCH ... ON DELETE ... ON UPDATE ... [DEFERRABLE ...]`.
    clause: String,
}

/// Everything `add_column` does to the table, decided once so that start, complete, rollback and
/// apply agree.
#[derive(Debug)]
struct Shape {
    table: QualName,
    created_here: bool,
    /// The column's physical name until complete.
    temp: Ident,
    /// The type as written (serial types replaced by their integer type).
    type_sql: String,
    /// A serial type's sequence and the sequence's type.
    sequence: Option<(QualName, &'static str)>,
    /// The column default (for a serial type: its `nextval`).
    default: Option<String>,
    /// True when the default goes into `ADD COLUMN` (constant, or the table is new); otherwise it
    /// is set after the column exists, so existing rows are not rewritten.
    default_inline: bool,
    not_null: NotNull,
    /// The expression that fills the column for existing rows and old-version writes.
    up: Option<RawSql>,
    /// True when `up` reads the new column itself (a volatile default filling only NULLs).
    up_reads_column: bool,
    check: Option<(Ident, RawSql, bool)>,
    foreign_key: Option<ForeignKey>,
    /// The unique index built concurrently, and the constraint it becomes at complete.
    unique: Option<(Ident, Ident)>,
}

/// The table and column a foreign key of the column references, checked.
fn referenced<'s>(
    schema: &'s Schema,
    r: &ForeignKeyReference,
) -> Result<(&'s Table, &'s schema::Column), PlanError> {
    let table = find_table(schema, "column.references.table", &r.table)?;
    let column = table
        .column(&r.column)
        .ok_or_else(|| no_column_on("column.references.column", &r.column, &r.table))?;
    Ok((table, column))
}

/// The name of the unique constraint the column gets, as PostgreSQL names a column's `UNIQUE`.
fn unique_constraint_name(table: &Table, column: &str) -> Ident {
    implicit_name(table.physical.as_str(), Some(column), "key")
}

/// The name of the sequence of a serial column, as PostgreSQL names it.
fn sequence_name(table: &Table, column: &str) -> Ident {
    implicit_name(table.physical.as_str(), Some(column), "seq")
}

/// True when some relation of the schema (table or index) is called `name`.
fn relation_exists(schema: &Schema, name: &Ident) -> bool {
    schema.tables.values().any(|t| &t.physical == name) || schema.index(name.as_str()).is_some()
}

impl OpAddColumn {
    fn shape(&self, schema: &Schema, ctx: &PlanContext) -> Result<Shape, PlanError> {
        let col = &self.column;
        let table = find_table(schema, "table", &self.table)?;
        let qualified = schema.qualify(table);
        let temp = new_column_name(&col.name);
        let created_here = table.created_here;

        let serial = serial_base_type(col.type_.as_str());
        let (type_sql, sequence, default, volatile) = match serial {
            Some(base) => {
                let seq = QualName::new(schema.name.clone(), sequence_name(table, &col.name));
                let nextval = format!("nextval({}::regclass)", Literal::new(seq.to_string()));
                (base.to_string(), Some((seq, base)), Some(nextval), true)
            }
            None => {
                let default = col.default.as_ref().map(|d| d.as_str().to_string());
                // On a new (empty) table any default is cheap: no need to ask.
                let volatile = match &default {
                    Some(d) if !created_here => ctx.default_is_volatile(col.type_.as_str(), d),
                    _ => false,
                };
                (col.type_.as_str().to_string(), None, default, volatile)
            }
        };
        // Serial types are NOT NULL, whatever the file says (as in PostgreSQL).
        let nullable = col.nullable && serial.is_none();
        let default_inline = default.is_some() && (!volatile || created_here);

        let not_null = if nullable {
            NotNull::No
        } else if created_here || default_inline {
            NotNull::Inline
        } else {
            NotNull::Check(crate::ops::duplicate::not_null_name(&col.name))
        };

        // What fills existing rows and rows the old version writes: `up`, else a volatile
        // default, evaluated only where the column is still NULL so that a value the default
        // already gave (an old-version insert) is kept and a sequence is not advanced twice.
        let (up, up_reads_column) = if created_here {
            (None, false)
        } else if !self.up.is_empty() {
            (Some(self.up.clone()), false)
        } else if let (true, Some(d)) = (volatile, &default) {
            (Some(RawSql::new(format!("coalesce({temp}, ({d}))"))), true)
        } else {
            (None, false)
        };

        // User expressions name columns as the new version does; during the migration the new
        // column is `temp`, and a column renamed earlier in the migration has its old name.
        let mut renames: Vec<(String, Ident)> = table
            .columns
            .iter()
            .filter(|c| c.name != c.physical)
            .map(|c| (c.name.as_str().to_string(), c.physical.clone()))
            .collect();
        renames.push((col.name.clone(), temp.clone()));
        let check = col.check.as_ref().map(|c| {
            (
                Ident::new(c.name.as_str()),
                rename_columns_in_sql(&c.constraint, table.physical.as_str(), &renames),
                c.no_inherit,
            )
        });

        let foreign_key = match &col.references {
            None => None,
            Some(r) => {
                let (target, target_col) = referenced(schema, r)?;
                let target_name = schema.qualify(target);
                Some(ForeignKey {
                    name: Ident::new(r.name.as_str()),
                    clause: r.references_sql(&target_name, &target_col.physical),
                    target: target_name,
                    target_column: target_col.physical.clone(),
                })
            }
        };

        let unique = col.unique.then(|| {
            (
                Ident::derived(
                    "_pgbaton_uniq_",
                    &format!("{}_{}", table.physical.as_str(), col.name),
                ),
                unique_constraint_name(table, &col.name),
            )
        });

        Ok(Shape {
            table: qualified,
            created_here,
            temp,
            type_sql,
            sequence,
            default,
            default_inline,
            not_null,
            up,
            up_reads_column,
            check,
            foreign_key,
            unique,
        })
    }
}

impl Shape {
    /// `ALTER TABLE ... ADD COLUMN ...` and the statements that go with it in one transaction.
    fn add_column_sql(&self, comment: Option<&str>) -> Vec<String> {
        let t = &self.table;
        let c = &self.temp;
        let mut sql = Vec::new();
        if let Some((seq, seq_type)) = &self.sequence {
            sql.push(format!("CREATE SEQUENCE {seq} AS {seq_type}"));
        }
        let mut def = format!("ALTER TABLE {t} ADD COLUMN {c} {}", self.type_sql);
        if let (true, Some(d)) = (self.default_inline, &self.default) {
            def.push_str(&format!(" DEFAULT ({d})"));
        }
        if matches!(self.not_null, NotNull::Inline) {
            def.push_str(" NOT NULL");
        }
        sql.push(def);
        if let (false, Some(d)) = (self.default_inline, &self.default) {
            sql.push(format!(
                "ALTER TABLE {t} ALTER COLUMN {c} SET DEFAULT ({d})"
            ));
        }
        if let Some((seq, _)) = &self.sequence {
            sql.push(format!("ALTER SEQUENCE {seq} OWNED BY {t}.{c}"));
        }
        if let Some(text) = comment {
            sql.push(format!(
                "COMMENT ON COLUMN {t}.{c} IS {}",
                Literal::new(text)
            ));
        }
        sql
    }

    /// The column's constraints; `NOT VALID` unless the table is new (and empty).
    fn constraint_sql(&self) -> Vec<String> {
        let t = &self.table;
        let c = &self.temp;
        let not_valid = if self.created_here { "" } else { " NOT VALID" };
        let mut sql = Vec::new();
        if let NotNull::Check(name) = &self.not_null {
            sql.push(format!(
                "ALTER TABLE {t} ADD CONSTRAINT {name} CHECK ({c} IS NOT NULL) NOT VALID"
            ));
        }
        if let Some((name, expr, no_inherit)) = &self.check {
            sql.push(format!(
                "ALTER TABLE {t} ADD CONSTRAINT {name} {}{not_valid}",
                check_sql(expr, *no_inherit)
            ));
        }
        if let Some(fk) = &self.foreign_key {
            sql.push(format!(
                "ALTER TABLE {t} ADD CONSTRAINT {} FOREIGN KEY ({c}) {}{not_valid}",
                fk.name, fk.clause
            ));
        }
        sql
    }
}

impl OpAddColumn {
    /// The column's `check`, `references` and `unique` name free constraints; a foreign key
    /// references a unique column.
    fn validate_constraints(&self, schema: &Schema, table: &Table) -> Result<(), PlanError> {
        let col = &self.column;
        if let Some(check) = &col.check {
            if check.constraint.is_empty() {
                return Err(PlanError::new(
                    "column.check.constraint",
                    "the check constraint has no expression",
                ));
            }
            if table.constraint(&check.name).is_some() {
                return Err(PlanError::new(
                    "column.check.name",
                    format!(
                        "constraint {} already exists on table {}",
                        q(&check.name),
                        q(&self.table)
                    ),
                ));
            }
        }
        if let Some(r) = &col.references {
            if table.constraint(&r.name).is_some()
                || col.check.as_ref().is_some_and(|c| c.name == r.name)
            {
                return Err(PlanError::new(
                    "column.references.name",
                    format!(
                        "constraint {} already exists on table {}",
                        q(&r.name),
                        q(&self.table)
                    ),
                ));
            }
            if r.match_type == ForeignKeyMatchType::Partial {
                return Err(PlanError::new(
                    "column.references.match_type",
                    "MATCH PARTIAL is not implemented by PostgreSQL",
                ));
            }
            let (target, target_col) = referenced(schema, r)?;
            if !is_unique_key(target, &target_col.physical) {
                return Err(PlanError::new(
                    "column.references.column",
                    format!(
                        "column {} of table {} is not a primary key or unique: a foreign key must \
                         reference one",
                        q(&r.column),
                        q(&r.table)
                    ),
                ));
            }
        }
        if col.unique {
            let name = unique_constraint_name(table, &col.name);
            if table.constraint(name.as_str()).is_some() || relation_exists(schema, &name) {
                return Err(PlanError::new(
                    "column.unique",
                    format!(
                        "the unique constraint of column {} would be named {name}, which already \
                         exists",
                        q(&col.name)
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Operation for OpAddColumn {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, schema: &Schema, ctx: &PlanContext) -> Result<(), PlanError> {
        let col = &self.column;
        let table = find_table(schema, "table", &self.table)?;
        if col.type_.is_empty() {
            return Err(PlanError::new(
                "column.type",
                format!("column {} has no type", q(&col.name)),
            ));
        }
        if table.column(&col.name).is_some() {
            return Err(PlanError::new(
                "column.name",
                format!(
                    "column {} already exists in table {}",
                    q(&col.name),
                    q(&self.table)
                ),
            ));
        }
        let temp = new_column_name(&col.name);
        if table.column_by_physical(temp.as_str()).is_some() {
            return Err(PlanError::new(
                "column.name",
                format!(
                    "table {} already has a column {temp} (left by another migration?)",
                    q(&self.table)
                ),
            ));
        }
        if col.pk {
            return Err(PlanError::new(
                "column.pk",
                "adding primary key columns is not supported: add the column, then create the \
                 primary key with create_constraint",
            ));
        }
        if col.generated.is_some() {
            return Err(PlanError::new(
                "column.generated",
                "adding generated columns to existing tables is not supported (PostgreSQL \
                 computes them for every row under an ACCESS EXCLUSIVE lock)",
            ));
        }
        let serial = serial_base_type(col.type_.as_str()).is_some();
        if serial && col.default.is_some() {
            return Err(PlanError::new(
                "column.default",
                format!(
                    "column {} has type {} and a default: a serial type is its own default",
                    q(&col.name),
                    col.type_
                ),
            ));
        }
        if !col.nullable
            && col.default.is_none()
            && self.up.is_empty()
            && !serial
            && !table.created_here
        {
            return Err(PlanError::new(
                "up",
                format!(
                    "column {} is NOT NULL without a default: \"up\" is required to fill it for \
                     existing rows and for rows the old version writes",
                    q(&col.name)
                ),
            ));
        }
        self.validate_constraints(schema, table)?;
        // Planning checks the rest (it resolves every name again).
        self.shape(schema, ctx).map(|_| ())
    }

    fn start(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let s = self.shape(schema, ctx)?;
        let table = find_table(schema, "table", &self.table)?;
        let col = &self.column;
        let t = &s.table;

        let mut expand = s.add_column_sql(col.comment.as_deref());
        if s.created_here {
            // Nothing reads or writes the new table yet: the whole definition at once.
            expand.extend(s.constraint_sql());
            if let Some((_, constraint)) = &s.unique {
                expand.push(format!(
                    "ALTER TABLE {t} ADD CONSTRAINT {constraint} UNIQUE ({})",
                    s.temp
                ));
            }
        }
        plan.expand(Step::transaction(
            format!("add column {} to {t} as {}", q(&col.name), s.temp),
            Some(t.clone()),
            LockLevel::AccessExclusive,
            Work::Catalog,
            expand,
        ));
        if s.created_here {
            return Ok(());
        }

        if let Some(up) = &s.up {
            // `up` sees the table as the operations before this one left it (as in pgroll),
            // plus the columns they dropped, which exist until complete.
            let mut old_scope: Vec<(Ident, Ident)> = table
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.physical.clone()))
                .collect();
            let mut new_scope = old_scope.clone();
            new_scope.push((Ident::new(col.name.as_str()), s.temp.clone()));
            for c in &table.dropped_columns {
                if !old_scope.iter().any(|(name, _)| name == &c.name) {
                    old_scope.push((c.name.clone(), c.physical.clone()));
                }
            }
            if s.up_reads_column {
                old_scope.push((s.temp.clone(), s.temp.clone()));
            }
            plan.dual_write(
                ctx,
                t.clone(),
                old_scope.clone(),
                new_scope,
                DualWriteRule {
                    new_column: s.temp.clone(),
                    up: up.clone(),
                    old_column: None,
                    down: None,
                },
            );
            // Also on a table that looked empty: rows the old version inserts between reading
            // the catalog and installing the trigger would otherwise stay NULL.
            let key = BackfillKey::for_table(table);
            plan.backfill(
                t.clone(),
                key,
                old_scope,
                Assignment {
                    target: s.temp.clone(),
                    expr: up.clone(),
                },
            );
        }

        let constraints = s.constraint_sql();
        if !constraints.is_empty() {
            let lock = if s.foreign_key.is_some() && constraints.len() == 1 {
                LockLevel::ShareRowExclusive
            } else {
                LockLevel::AccessExclusive
            };
            plan.guard(Step::transaction(
                format!(
                    "add NOT VALID constraints of column {} on {t}",
                    q(&col.name)
                ),
                Some(t.clone()),
                lock,
                Work::Catalog,
                constraints,
            ));
        }

        if let Some((index, _)) = &s.unique {
            let index_name = QualName::new(t.schema.clone(), index.clone());
            plan.build(Step::create_index_concurrently(
                format!("build unique index {index} on {t}"),
                t.clone(),
                index_name,
                format!(
                    "CREATE UNIQUE INDEX CONCURRENTLY {index} ON {t} ({})",
                    s.temp
                ),
            ));
        }
        Ok(())
    }

    fn complete(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let s = self.shape(schema, ctx)?;
        let t = &s.table;
        let c = &s.temp;
        if !s.created_here {
            let mut to_validate = Vec::new();
            if let NotNull::Check(name) = &s.not_null {
                to_validate.push(name);
            }
            if let Some((name, _, _)) = &s.check {
                to_validate.push(name);
            }
            if let Some(fk) = &s.foreign_key {
                to_validate.push(&fk.name);
            }
            for name in to_validate {
                plan.validate(Step::transaction(
                    format!("validate constraint {name} on {t}"),
                    Some(t.clone()),
                    LockLevel::ShareUpdateExclusive,
                    Work::Scan,
                    vec![format!("ALTER TABLE {t} VALIDATE CONSTRAINT {name}")],
                ));
            }
            if let NotNull::Check(name) = &s.not_null {
                // No scan on PG12+: the validated check proves there is no NULL.
                plan.contract(
                    t.clone(),
                    format!("ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL"),
                );
                plan.contract(t.clone(), format!("ALTER TABLE {t} DROP CONSTRAINT {name}"));
            }
            if let Some((index, constraint)) = &s.unique {
                plan.contract(
                    t.clone(),
                    format!(
                        "ALTER TABLE {t} ADD CONSTRAINT {constraint} UNIQUE USING INDEX {index}"
                    ),
                );
            }
        }
        plan.contract_rename_column(
            t.clone(),
            format!(
                "ALTER TABLE {t} RENAME COLUMN {c} TO {}",
                Ident::new(self.column.name.as_str())
            ),
        );
        if let Some(sql) = crate::ops::not_null_names::rename_temporary_not_null_constraints(ctx, t)
        {
            plan.contract_after_column_renames(t.clone(), sql);
        }
        Ok(())
    }

    fn rollback(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let s = self.shape(schema, ctx)?;
        let t = &s.table;
        // Takes the column's constraints, index, comment and owned sequence with it. `IF EXISTS`
        // twice: rollback also cleans up after a start that died before or after this step, and
        // a table created by this migration may not exist at all.
        plan.undo(Step::catalog(
            format!("drop column {} from {t}", s.temp),
            Some(t.clone()),
            LockLevel::AccessExclusive,
            format!("ALTER TABLE IF EXISTS {t} DROP COLUMN IF EXISTS {}", s.temp),
        ));
        Ok(())
    }

    fn apply(&self, schema: &mut Schema, ctx: &PlanContext) -> Result<(), PlanError> {
        let s = self.shape(schema, ctx)?;
        let col = &self.column;
        let table = find_table_mut(schema, "table", &self.table)?;
        let mut column = schema::Column::new(Ident::new(col.name.as_str()), s.type_sql.clone());
        column.physical = s.temp.clone();
        column.nullable = matches!(s.not_null, NotNull::No);
        column.default = s.default.clone();
        column.comment = col.comment.clone();
        column.unique = col.unique;
        table.columns.push(column);
        if let Some((name, expr, no_inherit)) = &s.check {
            table.constraints.push(schema::Constraint {
                name: name.clone(),
                kind: ConstraintKind::Check,
                columns: vec![s.temp.clone()],
                definition: check_sql(expr, *no_inherit),
                validated: s.created_here,
                references: None,
            });
        }
        if let Some(fk) = &s.foreign_key {
            table.constraints.push(schema::Constraint {
                name: fk.name.clone(),
                kind: ConstraintKind::ForeignKey,
                columns: vec![s.temp.clone()],
                definition: format!("FOREIGN KEY ({}) {}", s.temp, fk.clause),
                validated: s.created_here,
                references: Some((fk.target.clone(), vec![fk.target_column.clone()])),
            });
        }
        if let Some((index, constraint)) = &s.unique {
            if s.created_here {
                table.constraints.push(schema::Constraint {
                    name: constraint.clone(),
                    kind: ConstraintKind::Unique,
                    columns: vec![s.temp.clone()],
                    definition: format!("UNIQUE ({})", s.temp),
                    validated: true,
                    references: None,
                });
            }
            let name = if s.created_here { constraint } else { index };
            table.indexes.push(schema::Index {
                name: name.clone(),
                columns: vec![s.temp.clone()],
                unique: true,
                primary: false,
                // Built after the backfills: not usable as a backfill key by this migration.
                valid: s.created_here,
                has_expressions: false,
                predicate: None,
                definition: format!("CREATE UNIQUE INDEX {name} ON {} ({})", s.table, s.temp),
                constraint: s.created_here.then(|| constraint.clone()),
            });
        }
        Ok(())
    }
}

/// True when `column` (physical) alone is the table's primary key or has a unique constraint or
/// a plain unique index: what a foreign key must reference.
fn is_unique_key(table: &Table, column: &Ident) -> bool {
    let alone = |cols: &[Ident]| cols.len() == 1 && &cols[0] == column;
    table
        .column_by_physical(column.as_str())
        .is_some_and(|c| c.unique)
        || table.constraints.iter().any(|c| {
            matches!(c.kind, ConstraintKind::PrimaryKey | ConstraintKind::Unique)
                && alone(&c.columns)
        })
        || table
            .indexes
            .iter()
            .any(|i| i.unique && i.predicate.is_none() && !i.has_expressions && alone(&i.columns))
}

#[cfg(test)]
mod tests;
