//! `alter_column`: changes a column's type, nullability, default, comment or constraints, alone
//! or several at once, while the old and the new version of the application both run.
//!
//! The serde struct follows pgroll's `schema.json` (which has no `name`: renames are
//! `rename_column`). Three ways to do it, chosen per operation ([`Path`]):
//!
//! - **Catalog only**, when the change cannot break either version: a comment, a default, and a
//!   type change that PostgreSQL does without rewriting the table or its indexes (asked of the
//!   server: [`PlanContext::type_change_rewrites`]), e.g. `varchar(n)` → `varchar(m ≥ n)` or
//!   `varchar` → `text`. Nothing physical changes at start: the new version's view carries the new
//!   default (views take it from the schema model), and the old version keeps exactly what it had,
//!   so rollback has nothing to undo. At complete the table gets the new default, the comment
//!   (`COMMENT`, a non-blocking lock) and the type (`ALTER COLUMN TYPE`, catalog only, in the
//!   table's short contract transaction; the version schema's views that read the column are
//!   dropped and re-created around it in the same transaction, as PostgreSQL refuses to change
//!   the type of a column a view uses).
//!
//!   Why at complete and not at start: done at start, the old version would see the new type
//!   too, and rollback would have to narrow it back — a full scan (or rewrite) under ACCESS
//!   EXCLUSIVE that can even fail on values the new version wrote. Done at complete, rollback is
//!   free and the old version never sees a value it cannot hold; the price is that until complete
//!   the new version is held to the old type's limits (for a widening, the only difference).
//!   A CHECK, a foreign key, or an index other than a plain b-tree on the column sends the type
//!   change down the copy path: PostgreSQL would re-verify or rebuild those under the lock.
//! - **Copy** ([`crate::ops::duplicate`]): everything else (a rewriting type change, NOT NULL
//!   set or dropped, UNIQUE, CHECK, foreign key). The new version gets a new physical column
//!   beside the old one, kept in sync by the dual-write trigger (`up` for old writers, `down` for
//!   new ones) and backfilled; its constraints are created `NOT VALID` / `CONCURRENTLY` and
//!   validated at complete, where the old column is dropped and the copy renamed. Further
//!   changes of a copied column in the same migration change the same copy.
//! - **In place**, for a table created by this migration: no old version, no rows to protect.
//!
//! `up`/`down` follow pgroll: a type change, a CHECK and a foreign key need both; NOT NULL needs
//! `up`, dropping it needs `down`; otherwise a missing one is the identity.

use serde::Deserialize;

use crate::ident::{Ident, Literal, QualName, RawSql};
use crate::ops::common::{
    find_column, find_column_mut, find_table, find_table_mut, rename_columns_in_sql,
    CheckConstraint, ForeignKeyMatchType, ForeignKeyReference, Names, Nullable, UniqueConstraint,
};
use crate::ops::duplicate;
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::{Column, Constraint, ConstraintKind, Schema, Table};
use crate::step::{LockLevel, Step, Work};

/// `alter_column`: changes one or more properties of `column` in `table`. `up` computes the new
/// column from the old, `down` the old from the new. pgroll's schema lists `up` and `down` as
/// required but documents `""` as their default, and which changes need them is decided per
/// change (a comment needs neither): they default to empty here and `validate` decides.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpAlterColumn {
    pub table: String,
    pub column: String,
    /// New type.
    #[serde(default, rename = "type")]
    pub type_: Option<RawSql>,
    /// Set (`false`) or drop (`true`) `NOT NULL`.
    #[serde(default)]
    pub nullable: Option<bool>,
    /// New default; `null` drops the default.
    #[serde(default)]
    pub default: Nullable<RawSql>,
    /// New comment; `null` removes the comment.
    #[serde(default)]
    pub comment: Nullable<String>,
    #[serde(default)]
    pub check: Option<CheckConstraint>,
    #[serde(default)]
    pub unique: Option<UniqueConstraint>,
    #[serde(default)]
    pub references: Option<ForeignKeyReference>,
    #[serde(default)]
    pub up: RawSql,
    #[serde(default)]
    pub down: RawSql,
}

impl OpAlterColumn {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "alter_column";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, n: &mut Names<'a>) {
        n.name("table", &self.table);
        n.name("column", &self.column);
        if let Some(check) = &self.check {
            n.nested("check", |n| n.name("name", &check.name));
        }
        if let Some(unique) = &self.unique {
            n.nested("unique", |n| n.name("name", &unique.name));
        }
        if let Some(r) = &self.references {
            n.nested("references", |n| r.names(n));
        }
    }
}

/// How an `alter_column` is carried out (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Catalog-only statements at complete; nothing physical at start.
    Catalog,
    /// A copy of the column for the new version.
    Copy,
    /// Direct `ALTER TABLE`s on a table created by this migration.
    InPlace,
}

impl OpAlterColumn {
    /// True when the operation asks for at least one change.
    fn changes_anything(&self) -> bool {
        self.type_.is_some()
            || self.nullable.is_some()
            || self.default.is_present()
            || self.comment.is_present()
            || self.check.is_some()
            || self.unique.is_some()
            || self.references.is_some()
    }

    fn lookup<'s>(&self, schema: &'s Schema) -> Result<(&'s Table, &'s Column), PlanError> {
        let table = find_table(schema, "table", &self.table)?;
        Ok((table, find_column(table, "column", &self.column)?))
    }

    /// The path this operation takes on `schema` (the same answer in every phase).
    pub fn path(&self, schema: &Schema, ctx: &PlanContext) -> Result<Path, PlanError> {
        let (table, column) = self.lookup(schema)?;
        if table.created_here {
            return Ok(Path::InPlace);
        }
        if duplicate::is_temporary(column)
            || self.nullable.is_some()
            || self.check.is_some()
            || self.unique.is_some()
            || self.references.is_some()
        {
            return Ok(Path::Copy);
        }
        if let Some(to) = &self.type_ {
            // A foreign key of another table pinning the column needs re-pointing: the copy.
            if is_referenced(schema, table, column)
                || !type_change_in_place_ok(table, column, to.as_str(), ctx)
            {
                return Ok(Path::Copy);
            }
        }
        Ok(Path::Catalog)
    }

    fn required(&self, field: &str, value: &RawSql, why: &str) -> Result<(), PlanError> {
        if value.is_empty() {
            return Err(PlanError::new(
                field,
                format!("\"{field}\" is required {why}"),
            ));
        }
        Ok(())
    }

    /// The referenced table and column (physical), checked.
    fn referenced<'s>(
        &self,
        schema: &'s Schema,
        r: &ForeignKeyReference,
    ) -> Result<(&'s Table, &'s Column), PlanError> {
        let t = schema.table(&r.table).ok_or_else(|| {
            PlanError::new(
                "references.table",
                format!("referenced table \"{}\" does not exist", r.table),
            )
        })?;
        let c = t.column(&r.column).ok_or_else(|| {
            PlanError::new(
                "references.column",
                format!(
                    "referenced column \"{}\" does not exist in table \"{}\"",
                    r.column, r.table
                ),
            )
        })?;
        Ok((t, c))
    }

    /// `FOREIGN KEY (<column>) REFERENCES ...` for `column` (a physical name).
    fn foreign_key_sql(
        &self,
        schema: &Schema,
        r: &ForeignKeyReference,
        column: &Ident,
    ) -> Result<String, PlanError> {
        let (rt, rc) = self.referenced(schema, r)?;
        let mut sql = format!(
            "FOREIGN KEY ({column}) REFERENCES {} ({})",
            schema.qualify(rt),
            rc.physical
        );
        if r.match_type != ForeignKeyMatchType::Simple {
            sql.push_str(&format!(" MATCH {}", r.match_type));
        }
        sql.push_str(&format!(
            " ON DELETE {} ON UPDATE {}",
            r.on_delete, r.on_update
        ));
        if r.deferrable {
            sql.push_str(" DEFERRABLE");
            if r.initially_deferred {
                sql.push_str(" INITIALLY DEFERRED");
            }
        }
        Ok(sql)
    }

    /// `SET DEFAULT` / `DROP DEFAULT` of `column` (physical) when the operation changes the default.
    fn default_sql(&self, table: &QualName, column: &Ident) -> Option<String> {
        match &self.default {
            Nullable::Value(d) => Some(format!(
                "ALTER TABLE {table} ALTER COLUMN {column} SET DEFAULT {d}"
            )),
            Nullable::Null => Some(format!(
                "ALTER TABLE {table} ALTER COLUMN {column} DROP DEFAULT"
            )),
            Nullable::Absent => None,
        }
    }

    /// `COMMENT ON COLUMN` of `column` (physical) when the operation changes the comment.
    fn comment_sql(&self, table: &QualName, column: &Ident) -> Option<String> {
        let comment = match &self.comment {
            Nullable::Value(text) => Literal::new(text).to_string(),
            Nullable::Null => "NULL".to_string(),
            Nullable::Absent => return None,
        };
        Some(format!("COMMENT ON COLUMN {table}.{column} IS {comment}"))
    }

    /// The check expression as written, with the column's references pointing at `physical` (a
    /// column of `table`, physical name).
    fn check_expr(&self, expr: &RawSql, table: &Ident, physical: &Ident) -> RawSql {
        rename_columns_in_sql(
            expr,
            table.as_str(),
            &[(self.column.clone(), physical.clone())],
        )
    }

    fn check_sql(check: &CheckConstraint, expr: &RawSql) -> String {
        format!(
            "CHECK ({expr}){}",
            if check.no_inherit { " NO INHERIT" } else { "" }
        )
    }
}

/// Whether a type change of `column` can be done in place, catalog only, at complete: the
/// server says neither the table nor a b-tree index would be rewritten, and nothing on the column
/// would be re-verified or rebuilt under the lock (CHECK constraints are re-checked with a scan,
/// foreign keys may be, expression / partial / non-b-tree indexes are rebuilt).
fn type_change_in_place_ok(table: &Table, column: &Column, to: &str, ctx: &PlanContext) -> bool {
    if column.identity.is_some() || column.generated.is_some() {
        return false;
    }
    let p = &column.physical;
    if table.constraints.iter().any(|c| {
        c.columns.contains(p)
            && matches!(
                c.kind,
                ConstraintKind::Check | ConstraintKind::ForeignKey | ConstraintKind::Exclude
            )
    }) {
        return false;
    }
    // Foreign keys of other tables pointing at the column: see `is_referenced`.
    for idx in &table.indexes {
        let involved =
            idx.columns.contains(p) || crate::sql::rewrite::index_involves(&idx.definition, p);
        if involved && (idx.has_expressions || !duplicate::is_plain_btree_index(&idx.definition)) {
            return false;
        }
    }
    !ctx.type_change_rewrites(&column.type_name, to)
}

/// True when a foreign key of any table references `column` of `table`.
fn is_referenced(schema: &Schema, table: &Table, column: &Column) -> bool {
    let q = schema.qualify(table);
    schema.tables.values().any(|t| {
        t.constraints.iter().any(|c| {
            c.references
                .as_ref()
                .is_some_and(|(rt, cols)| *rt == q && cols.contains(&column.physical))
        })
    })
}

/// `ALTER COLUMN TYPE` in place, with the version schema's views that read the column dropped
/// and re-created around it (PostgreSQL refuses to change the type of a column a view uses).
/// The views keep their options, column defaults, grants and comments. Catalog only.
fn type_in_place_sql(
    table: &QualName,
    column: &Ident,
    to: &RawSql,
    version_schema: &Ident,
) -> String {
    let body = format!(
        "DECLARE
  v record;
  d record;
  g record;
  stmt text;
  recreate text[] := '{{}}';
BEGIN
  FOR v IN
    SELECT DISTINCT k.oid, k.relname, n.nspname, pg_get_viewdef(k.oid) AS def, k.reloptions,
           obj_description(k.oid, 'pg_class') AS comment
      FROM pg_depend dep
      JOIN pg_rewrite r ON r.oid = dep.objid
      JOIN pg_class k ON k.oid = r.ev_class
      JOIN pg_namespace n ON n.oid = k.relnamespace
     WHERE dep.classid = 'pg_rewrite'::regclass
       AND dep.refclassid = 'pg_class'::regclass
       AND dep.refobjid = {rc}
       AND dep.refobjsubid = (SELECT attnum FROM pg_attribute WHERE attrelid = {rc} AND attname = {col})
       AND k.oid <> {rc}
       AND n.nspname = {vs}
  LOOP
    recreate := recreate || format('CREATE VIEW %I.%I%s AS %s', v.nspname, v.relname,
      CASE WHEN v.reloptions IS NULL THEN '' ELSE ' WITH (' || array_to_string(v.reloptions, ', ') || ')' END,
      rtrim(v.def, ';'));
    FOR d IN
      SELECT a.attname, pg_get_expr(ad.adbin, ad.adrelid) AS expr
        FROM pg_attrdef ad JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
       WHERE ad.adrelid = v.oid
    LOOP
      recreate := recreate || format('ALTER VIEW %I.%I ALTER COLUMN %I SET DEFAULT %s',
        v.nspname, v.relname, d.attname, d.expr);
    END LOOP;
    FOR g IN
      SELECT CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END AS role,
             x.privilege_type
        FROM pg_class k2, aclexplode(k2.relacl) x
       WHERE k2.oid = v.oid AND x.grantee <> k2.relowner
    LOOP
      recreate := recreate || format('GRANT %s ON %I.%I TO %s', g.privilege_type, v.nspname, v.relname, g.role);
    END LOOP;
    IF v.comment IS NOT NULL THEN
      recreate := recreate || format('COMMENT ON VIEW %I.%I IS %L', v.nspname, v.relname, v.comment);
    END IF;
    EXECUTE format('DROP VIEW %I.%I', v.nspname, v.relname);
  END LOOP;
  ALTER TABLE {table} ALTER COLUMN {column} TYPE {to};
  FOREACH stmt IN ARRAY recreate LOOP
    EXECUTE stmt;
  END LOOP;
END",
        rc = table.regclass(),
        col = column.literal(),
        vs = version_schema.literal(),
    );
    duplicate::do_block(&body)
}

impl OpAlterColumn {
    /// `nullable` changes something, and has the `up`/`down` it needs.
    fn validate_nullable(&self, table: &Table, column: &Column) -> Result<(), PlanError> {
        match self.nullable {
            Some(false) => {
                if !column.nullable {
                    return Err(PlanError::new(
                        "nullable",
                        format!(
                            "column \"{}\" of table \"{}\" is already NOT NULL",
                            self.column, self.table
                        ),
                    ));
                }
                if !table.created_here {
                    self.required(
                        "up",
                        &self.up,
                        "to set NOT NULL (it fills the rows holding NULL)",
                    )?;
                }
            }
            Some(true) => {
                if column.nullable {
                    return Err(PlanError::new(
                        "nullable",
                        format!(
                            "column \"{}\" of table \"{}\" is already nullable",
                            self.column, self.table
                        ),
                    ));
                }
                if table
                    .primary_key()
                    .is_some_and(|pk| pk.columns.contains(&column.physical))
                {
                    return Err(PlanError::new(
                        "nullable",
                        format!("column \"{}\" is part of the primary key of \"{}\": it cannot be nullable", self.column, self.table),
                    ));
                }
                if column.identity.is_some() {
                    return Err(PlanError::new(
                        "nullable",
                        format!(
                            "column \"{}\" is an identity column: it cannot be nullable",
                            self.column
                        ),
                    ));
                }
                if !table.created_here {
                    self.required(
                        "down",
                        &self.down,
                        "to drop NOT NULL (it maps NULLs for the old version)",
                    )?;
                }
            }
            None => {}
        }
        Ok(())
    }

    /// `unique` and `check` name free constraints and have the `up`/`down` they need.
    fn validate_unique_and_check(&self, schema: &Schema, table: &Table) -> Result<(), PlanError> {
        let name_taken =
            |name: &str| table.constraint(name).is_some() || schema.index(name).is_some();
        if let Some(u) = &self.unique {
            if u.name.is_empty() {
                return Err(PlanError::new("unique.name", "\"name\" is required"));
            }
            if name_taken(&u.name) {
                return Err(PlanError::new(
                    "unique.name",
                    format!("constraint or index \"{}\" already exists", u.name),
                ));
            }
        }
        if let Some(c) = &self.check {
            if c.name.is_empty() {
                return Err(PlanError::new("check.name", "\"name\" is required"));
            }
            if c.constraint.is_empty() {
                return Err(PlanError::new(
                    "check.constraint",
                    "\"constraint\" is required",
                ));
            }
            if table.constraint(&c.name).is_some() {
                return Err(PlanError::new(
                    "check.name",
                    format!(
                        "constraint \"{}\" already exists in table \"{}\"",
                        c.name, self.table
                    ),
                ));
            }
            if !table.created_here {
                self.required("up", &self.up, "to add a check constraint")?;
                self.required("down", &self.down, "to add a check constraint")?;
            }
        }
        Ok(())
    }

    /// `references` names a free constraint and a unique column no other change is moving.
    fn validate_references(
        &self,
        schema: &Schema,
        table: &Table,
        r: &ForeignKeyReference,
    ) -> Result<(), PlanError> {
        if r.name.is_empty() {
            return Err(PlanError::new("references.name", "\"name\" is required"));
        }
        if table.constraint(&r.name).is_some() {
            return Err(PlanError::new(
                "references.name",
                format!(
                    "constraint \"{}\" already exists in table \"{}\"",
                    r.name, self.table
                ),
            ));
        }
        let (rt, rc) = self.referenced(schema, r)?;
        let single_pk = rt
            .primary_key()
            .is_some_and(|pk| pk.columns == [rc.physical.clone()]);
        if !rc.unique && !single_pk && !schema.opaque {
            return Err(PlanError::new(
                "references.column",
                format!(
                    "column \"{}\" of table \"{}\" has no unique constraint or primary key: a foreign key cannot reference it",
                    r.column, r.table
                ),
            ));
        }
        if duplicate::is_temporary(rc) && !rt.created_here {
            return Err(PlanError::new(
                "references.column",
                format!(
                    "column \"{}\" of table \"{}\" is changed by this migration: reference it in a later migration",
                    r.column, r.table
                ),
            ));
        }
        if r.match_type == ForeignKeyMatchType::Partial {
            return Err(PlanError::new(
                "references.match_type",
                "MATCH PARTIAL is not implemented by PostgreSQL",
            ));
        }
        if !table.created_here {
            self.required("up", &self.up, "to add a foreign key")?;
            self.required("down", &self.down, "to add a foreign key")?;
        }
        Ok(())
    }
}

impl Operation for OpAlterColumn {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        let (table, column) = self.lookup(schema)?;
        if !self.changes_anything() {
            return Err(PlanError::new(
                "",
                format!(
                    "alter_column of \"{}\".\"{}\" makes no changes: give at least one of type, nullable, default, comment, unique, check, references",
                    self.table, self.column
                ),
            ));
        }
        if let Some(t) = &self.type_ {
            if t.is_empty() {
                return Err(PlanError::new("type", "\"type\" must not be empty"));
            }
            self.required("up", &self.up, "to change the type")?;
            self.required("down", &self.down, "to change the type")?;
        }
        self.validate_nullable(table, column)?;
        self.validate_unique_and_check(schema, table)?;
        if let Some(r) = &self.references {
            self.validate_references(schema, table, r)?;
        }
        if self.type_.is_some() && column.generated.is_some() {
            return Err(PlanError::new(
                "type",
                format!(
                    "column \"{}\" is a generated column: change its expression instead",
                    self.column
                ),
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
        let (table, column) = self.lookup(schema)?;
        let qual = schema.qualify(table);
        match self.path(schema, ctx)? {
            // Nothing physical changes until complete.
            Path::Catalog => Ok(()),
            Path::Copy => self.start_copy(schema, ctx, plan),
            Path::InPlace => {
                let c = &column.physical;
                let mut sql = Vec::new();
                if let Some(t) = &self.type_ {
                    sql.push(format!(
                        "ALTER TABLE {qual} ALTER COLUMN {c} TYPE {t} USING {c}::{t}"
                    ));
                }
                match self.nullable {
                    Some(false) => {
                        sql.push(format!("ALTER TABLE {qual} ALTER COLUMN {c} SET NOT NULL"))
                    }
                    Some(true) => {
                        sql.push(format!("ALTER TABLE {qual} ALTER COLUMN {c} DROP NOT NULL"))
                    }
                    None => {}
                }
                sql.extend(self.default_sql(&qual, c));
                if let Some(u) = &self.unique {
                    sql.push(format!(
                        "ALTER TABLE {qual} ADD CONSTRAINT {} UNIQUE ({c})",
                        Ident::new(&u.name)
                    ));
                }
                if let Some(ch) = &self.check {
                    let expr = self.check_expr(&ch.constraint, &qual.name, c);
                    sql.push(format!(
                        "ALTER TABLE {qual} ADD CONSTRAINT {} {}",
                        Ident::new(&ch.name),
                        Self::check_sql(ch, &expr)
                    ));
                }
                let lock = LockLevel::AccessExclusive;
                if let Some(r) = &self.references {
                    sql.push(format!(
                        "ALTER TABLE {qual} ADD CONSTRAINT {} {}",
                        Ident::new(&r.name),
                        self.foreign_key_sql(schema, r, c)?
                    ));
                }
                sql.extend(self.comment_sql(&qual, c));
                plan.expand(Step::transaction(
                    format!("alter column {} of new table {qual}", self.column),
                    Some(qual),
                    lock,
                    Work::Catalog,
                    sql,
                ));
                Ok(())
            }
        }
    }

    fn complete(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let (table, column) = self.lookup(schema)?;
        let qual = schema.qualify(table);
        match self.path(schema, ctx)? {
            Path::InPlace => Ok(()),
            Path::Catalog => {
                let c = &column.physical;
                if let Some(t) = &self.type_ {
                    plan.contract(
                        qual.clone(),
                        type_in_place_sql(&qual, c, t, &ctx.version_schema),
                    );
                }
                if let Some(sql) = self.default_sql(&qual, c) {
                    plan.contract(qual.clone(), sql);
                }
                if let Some(sql) = self.comment_sql(&qual, c) {
                    plan.validate(Step::catalog(
                        format!("comment on column {} of {qual}", self.column),
                        Some(qual.clone()),
                        LockLevel::ShareUpdateExclusive,
                        sql,
                    ));
                }
                Ok(())
            }
            Path::Copy => {
                // UNIQUE: attached to the copy in `start_copy` (made at complete by `duplicate`).
                if let Some(ch) = &self.check {
                    plan.validate(duplicate::validate_step(
                        &qual,
                        &Ident::new(&ch.name),
                        false,
                    ));
                }
                if let Some(r) = &self.references {
                    plan.validate(duplicate::validate_step(&qual, &Ident::new(&r.name), false));
                }
                Ok(())
            }
        }
    }

    fn rollback(
        &self,
        schema: &Schema,
        _ctx: &PlanContext,
        _plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        // Catalog path: nothing changed at start. Copy path: the copy, and every object this
        // operation put on it, go with `DROP COLUMN` (emitted once by `duplicate`). In place:
        // the table itself goes with its create_table.
        self.lookup(schema)?;
        Ok(())
    }

    fn apply(&self, schema: &mut Schema, ctx: &PlanContext) -> Result<(), PlanError> {
        let path = self.path(schema, ctx)?;
        let table_name = self.table.clone();
        let table = find_table_mut(schema, "table", &table_name)?;
        if path == Path::Copy {
            duplicate::apply(table, &self.column)?;
        }
        let table_physical = table.physical.clone();
        let column = find_column_mut(table, "column", &self.column)?;
        let had_default = column.default.is_some();
        if let Some(t) = &self.type_ {
            column.type_name = t.as_str().to_string();
            // A default carried over to a copy of another type may not survive (it is dropped
            // when it does not fit, as in pgroll); the view then falls back to the table's.
            if path == Path::Copy && self.default.is_absent() {
                column.default = None;
            }
        }
        if let Some(n) = self.nullable {
            column.nullable = n;
        }
        match &self.default {
            Nullable::Value(d) => column.default = Some(d.as_str().to_string()),
            // Until complete the table keeps its default: on the catalog path the new version's
            // view overrides it with an explicit NULL default.
            Nullable::Null if path == Path::Catalog && had_default => {
                column.default = Some("NULL".to_string())
            }
            Nullable::Null => column.default = None,
            Nullable::Absent => {}
        }
        if self.comment.is_present() {
            column.comment = self.comment.value().cloned();
        }
        if self.unique.is_some() {
            column.unique = true;
        }
        let physical = column.physical.clone();
        if let Some(u) = &self.unique {
            table.constraints.push(Constraint {
                name: Ident::new(&u.name),
                kind: ConstraintKind::Unique,
                columns: vec![physical.clone()],
                definition: format!("UNIQUE ({physical})"),
                validated: true,
                references: None,
            });
        }
        if let Some(ch) = &self.check {
            let expr = self.check_expr(&ch.constraint, &table_physical, &physical);
            table.constraints.push(Constraint {
                name: Ident::new(&ch.name),
                kind: ConstraintKind::Check,
                columns: vec![physical.clone()],
                definition: Self::check_sql(ch, &expr),
                validated: path == Path::InPlace,
                references: None,
            });
        }
        if let Some(r) = &self.references {
            let target = schema.table(&r.table).and_then(|t| {
                t.column(&r.column)
                    .map(|c| (schema.qualify(t), c.physical.clone()))
            });
            let definition = format!(
                "FOREIGN KEY ({physical}) REFERENCES {}({})",
                r.table, r.column
            );
            if let Some(table) = schema.table_mut(&table_name) {
                table.constraints.push(Constraint {
                    name: Ident::new(&r.name),
                    kind: ConstraintKind::ForeignKey,
                    columns: vec![physical.clone()],
                    definition,
                    validated: path == Path::InPlace,
                    references: target.map(|(q, c)| (q, vec![c])),
                });
            }
        }
        Ok(())
    }
}

impl OpAlterColumn {
    /// The copy path's start: the copy (through `duplicate`), then this operation's own
    /// constraints on it.
    fn start_copy(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        let (table, _) = self.lookup(schema)?;
        let qual = schema.qualify(table);
        let fk = match &self.references {
            Some(r) => Some((r, self.referenced(schema, r)?)),
            None => None,
        };
        let copy = duplicate::duplicate(schema, ctx, plan, &self.table, &self.column)?;
        if let Some(t) = &self.type_ {
            copy.set_type(t.as_str());
        }
        if let Some(n) = self.nullable {
            copy.set_nullable(n);
        }
        if self.default.is_present() {
            copy.set_default(self.default.value());
        }
        if self.comment.is_present() {
            copy.set_comment(self.comment.value().map(String::as_str));
        }
        copy.convert(Some(&self.up), Some(&self.down));
        if let Some(u) = &self.unique {
            let name = Ident::new(&u.name);
            copy.attach_index_constraint(&name, false, &name);
        }
        let target = copy.target().clone();

        if let Some(u) = &self.unique {
            let name = Ident::new(&u.name);
            plan.build(Step::create_index_concurrently(
                format!("build unique index {name} on the copy of {}", self.column),
                qual.clone(),
                QualName::new(qual.schema.clone(), name.clone()),
                format!("CREATE UNIQUE INDEX CONCURRENTLY {name} ON {qual} ({target})"),
            ));
        }
        if let Some(ch) = &self.check {
            let expr = self.check_expr(&ch.constraint, &qual.name, &target);
            plan.guard(Step::catalog(
                format!(
                    "add check {} on the copy of {} (NOT VALID)",
                    ch.name, self.column
                ),
                Some(qual.clone()),
                LockLevel::AccessExclusive,
                format!(
                    "ALTER TABLE {qual} ADD CONSTRAINT {} {} NOT VALID",
                    Ident::new(&ch.name),
                    Self::check_sql(ch, &expr)
                ),
            ));
        }
        if let Some((r, _)) = fk {
            plan.guard(Step::catalog(
                format!(
                    "add foreign key {} on the copy of {} (NOT VALID)",
                    r.name, self.column
                ),
                Some(qual.clone()),
                LockLevel::ShareRowExclusive,
                format!(
                    "ALTER TABLE {qual} ADD CONSTRAINT {} {} NOT VALID",
                    Ident::new(&r.name),
                    self.foreign_key_sql(schema, r, &target)?
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
