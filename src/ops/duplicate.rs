//! Column duplication: the shared machinery behind every operation that gives the new version a
//! different physical column than the old one (`alter_column`, `create_constraint`,
//! `drop_constraint`, `drop_multicolumn_constraint`). It owns the copy's whole life: the new
//! column beside the old one, the constraints and indexes carried over to it, the dual-write rule
//! and the backfill, the swap at complete, and the clean-up at rollback.
//!
//! # How an operation uses it
//!
//! ```text
//! start():    let copy = duplicate::duplicate(schema, ctx, plan, "users", "email")?;
//!             copy.set_type("text");                     // what the new version gets
//!             copy.convert(Some(&op.up), Some(&op.down));
//!             let target = copy.target().clone();        // `_pgbaton_new_email`
//!             // the op's own objects on the copy, named with `target` (guards / builds / validate /
//!             // contract), e.g. a NOT VALID check through `common::rename_columns_in_sql`.
//!             // drop_constraint of an EXCLUDE constraint: duplicate_without(.., &["excl"])
//!             // a PK / UNIQUE built on copies: copy.attach_index_constraint(&name, pk, &index)
//! complete(): nothing for the copy itself (the swap is rendered by this module).
//! rollback(): nothing for the copy itself (its column, indexes and constraints are dropped here).
//! apply():    duplicate::apply(table, "email")?;         // the column's `physical` := the copy
//! ```
//!
//! Operations never emit the copy's steps themselves: they describe the copy (type, nullability,
//! default, comment, constraints left behind, `up`/`down`), and [`Copies::render`] emits every
//! step when the plan is finished ([`PlanBuilder::finish`]). So **several changes of one column in
//! one migration are one copy and one backfill**: a second call of [`duplicate`] for a column
//! that is already duplicated (the schema model says so: its `physical` is the copy) returns the
//! same [`ColumnCopy`], and the new `up`/`down` compose with the earlier ones (`up2(up1(old))`,
//! `down1(down2(new))`). Copies of several columns of one table share one trigger and one
//! backfill pass (the [`PlanBuilder`] merges per table).
//!
//! # The steps (per table with copies)
//!
//! start
//! - expand (one catalog transaction): `ADD COLUMN <copy> <type>`, its default (tolerant of a
//!   default the new type cannot take, as pgroll: then the copy has none), its comment; for an
//!   identity column the copy's default draws from the identity's sequence.
//! - the dual-write rule `copy := up` (old writers) / `old := down` (new writers), the backfill.
//! - guards (after the trigger, so old-version writes already fill the copy): the copy's NOT NULL
//!   as `CHECK (copy IS NOT NULL) NOT VALID`, the table's CHECK constraints and outgoing foreign
//!   keys that involve the column, rewritten onto the copy, `NOT VALID`, named `_pgbaton_dup_<name>`
//!   (tolerant of a constraint the new type cannot take, as pgroll, when the type changes).
//! - builds: every index involving the column (plain, unique, primary key; expressions and
//!   predicates rewritten) built `CONCURRENTLY` as `_pgbaton_dup_<name>`.
//!
//! complete
//! - validate: each `NOT VALID` constraint of the copy (`SHARE UPDATE EXCLUSIVE`, scans, blocks
//!   nobody); foreign keys of other tables that reference the column are re-created on the copy
//!   `NOT VALID` (brief `SHARE ROW EXCLUSIVE`) and validated.
//! - contract (the table's one short ACCESS EXCLUSIVE transaction, catalog only): drop the old
//!   referencing foreign keys; move sequence ownership (`ALTER SEQUENCE .. OWNED BY`, widening an
//!   `integer` sequence to `bigint` with its column) or re-create an identity on the copy with the
//!   sequence's state; `DROP COLUMN` the old column; `SET NOT NULL` on the copy (no scan: a valid
//!   check proves it) and drop the check; rename the duplicated checks and foreign keys;
//!   `ADD CONSTRAINT .. PRIMARY KEY / UNIQUE USING INDEX` for constraint indexes, rename the other
//!   indexes; restore `REPLICA IDENTITY USING INDEX`; finally `RENAME COLUMN <copy> TO <old name>`.
//!   The rename is the last statement of the table's change stage, so later column/table renames
//!   of the contract see the old physical name again.
//!
//! rollback (runs right after the triggers are removed, before the operations' own undo steps)
//! - drop the re-created referencing foreign keys (`IF EXISTS`), `DROP COLUMN IF EXISTS <copy>`:
//!   its indexes and constraints go with it.
//!
//! # The schema model during the migration
//!
//! [`apply`] points the column's `physical` at the copy. Constraints and indexes in the model keep
//! naming the *old* physical columns: that is what exists physically until complete, and it keeps
//! [`crate::schema::Table::backfill_key`] walking the old (filled, indexed) primary key.

use std::collections::BTreeSet;

use crate::ident::{Ident, Literal, QualName, RawSql};
use crate::ops::common::{
    column_refs, find_column, find_column_mut, find_table, splice, sql_tokens, SqlToken,
};
use crate::plan::{new_column_name, PlanBuilder, PlanContext, PlanError};
use crate::schema::{Column, Constraint, ConstraintKind, Index, Schema, Table};
use crate::step::{Assignment, BackfillKey, LockLevel, Step, Work};
use crate::triggers::DualWriteRule;

/// Prefix of the temporary names of duplicated constraints and indexes.
pub const DUP_PREFIX: &str = "_pgbaton_dup_";
/// Prefix of the temporary `CHECK (copy IS NOT NULL)` constraint of a NOT NULL copy.
pub const NOT_NULL_PREFIX: &str = "_pgbaton_nn_";

/// The temporary name of a duplicated constraint or index.
pub fn dup_name(name: &str) -> Ident {
    Ident::derived(DUP_PREFIX, name)
}

/// The temporary NOT NULL check of the copy of `column` (its name in the old version).
pub fn not_null_name(column: &str) -> Ident {
    Ident::derived(NOT_NULL_PREFIX, column)
}

/// Every column copy of the migration being planned. Lives in the [`PlanBuilder`]
/// ([`PlanBuilder::copies`]); rendered into steps by [`PlanBuilder::finish`].
#[derive(Debug, Default)]
pub struct Copies {
    ctx: Option<PlanContext>,
    tables: Vec<TableCopies>,
}

/// The copies of one table.
#[derive(Debug)]
struct TableCopies {
    table: QualName,
    /// The table as the old version sees it (at the first copy of the table).
    old: Table,
    /// Foreign keys of any table of the schema, with the table that holds them (physical).
    foreign_keys: Vec<(QualName, Constraint)>,
    /// (name, physical) of every column, old and new version.
    old_scope: Vec<(Ident, Ident)>,
    new_scope: Vec<(Ident, Ident)>,
    copies: Vec<ColumnCopy>,
}

/// One column's copy: what the new version gets instead of the old column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnCopy {
    table: QualName,
    /// The old column, as the old version sees it (`physical` is the old physical name).
    source: Column,
    target: Ident,
    type_name: String,
    type_changed: bool,
    nullable: bool,
    default: Option<String>,
    /// True when the default is carried over from the old column (and may not fit a new type).
    default_inherited: bool,
    comment: Option<String>,
    up: Option<RawSql>,
    down: Option<RawSql>,
    without: BTreeSet<String>,
    /// PRIMARY KEY / UNIQUE constraints to create at complete from indexes built on the copies.
    attached: Vec<AttachedConstraint>,
}

/// A constraint made at complete from an index an operation built on copies
/// ([`ColumnCopy::attach_index_constraint`]).
#[derive(Clone, Debug, PartialEq, Eq)]
struct AttachedConstraint {
    name: Ident,
    primary_key: bool,
    index: Ident,
}

impl ColumnCopy {
    /// The physical table.
    pub fn table(&self) -> &QualName {
        &self.table
    }

    /// The column's name in the old version.
    pub fn name(&self) -> &Ident {
        &self.source.name
    }

    /// The old physical column.
    pub fn source(&self) -> &Ident {
        &self.source.physical
    }

    /// The old column as the old version sees it.
    pub fn source_column(&self) -> &Column {
        &self.source
    }

    /// The copy's physical name (`_pgbaton_new_<name>`) until complete renames it back.
    pub fn target(&self) -> &Ident {
        &self.target
    }

    /// The copy's type (the new version's).
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    pub fn nullable(&self) -> bool {
        self.nullable
    }

    /// The new type (SQL as written in the migration).
    pub fn set_type(&mut self, type_name: &str) {
        if type_name != self.type_name {
            self.type_name = type_name.to_string();
            self.type_changed = true;
        }
    }

    /// Whether the copy is NOT NULL (`false`): enforced by a `NOT VALID` check from start,
    /// validated and turned into `NOT NULL` at complete.
    pub fn set_nullable(&mut self, nullable: bool) {
        self.nullable = nullable;
    }

    /// The copy's default (`None`: no default).
    pub fn set_default(&mut self, default: Option<&RawSql>) {
        self.default = default.map(|d| d.as_str().to_string());
        self.default_inherited = false;
    }

    /// The copy's comment (`None`: no comment).
    pub fn set_comment(&mut self, comment: Option<&str>) {
        self.comment = comment.map(str::to_string);
    }

    /// A constraint (or index) of the old column that the copy does not get (`drop_constraint`).
    pub fn without_constraint(&mut self, name: &str) {
        self.without.insert(name.to_string());
    }

    /// A `PRIMARY KEY` (`primary_key`) or `UNIQUE` constraint `name` to be created at complete
    /// with `ADD CONSTRAINT .. USING INDEX index`, from a unique index the operation built on the
    /// copies (`CONCURRENTLY`, at start). It runs in the table's contract after the copies are
    /// `NOT NULL` (so `USING INDEX` needs no scan) and before they get their names back. For a
    /// constraint over several copies, attach it to any one of them (it is created once).
    pub fn attach_index_constraint(&mut self, name: &Ident, primary_key: bool, index: &Ident) {
        let a = AttachedConstraint {
            name: name.clone(),
            primary_key,
            index: index.clone(),
        };
        if !self.attached.contains(&a) {
            self.attached.push(a);
        }
    }

    /// Whether `name` is left behind by [`ColumnCopy::without_constraint`].
    pub fn drops(&self, name: &str) -> bool {
        self.without.contains(name)
    }

    /// Adds a conversion step: `up` computes the new value from the column as the previous step
    /// left it (in the old version's names), `down` the previous value from the new one (in the
    /// new version's names). `None` (or empty) means the identity. Calls compose: after
    /// `convert(u1, d1)` and `convert(u2, d2)` the copy is `u2(u1(old))` and the old column
    /// `d1(d2(new))`; the other columns an expression names are the old version's (for `up`) or
    /// the new version's (for `down`).
    pub fn convert(&mut self, up: Option<&RawSql>, down: Option<&RawSql>) {
        let name = self.source.name.clone();
        self.up = compose(&name, self.up.take(), up);
        // `down` composes the other way round: the newest step is undone first.
        let down = down.filter(|d| !is_identity(d, &name)).cloned();
        self.down = match (self.down.take(), down) {
            (None, d) | (d, None) => d,
            (Some(earlier), Some(later)) => Some(nest(&name, &earlier, &later)),
        };
    }

    /// The `up` expression the backfill and the trigger run (the identity when none was given).
    pub fn up_sql(&self) -> RawSql {
        self.up
            .clone()
            .unwrap_or_else(|| RawSql::new(self.source.name.to_string()))
    }

    /// The `down` expression new-version writers' rows get for the old column.
    pub fn down_sql(&self) -> RawSql {
        self.down
            .clone()
            .unwrap_or_else(|| RawSql::new(self.source.name.to_string()))
    }
}

/// `outer` evaluated over the result of `inner` bound to `name`:
/// `(SELECT (outer) FROM (SELECT (inner) AS name) AS _pgbaton_prev)`. Columns `outer` names other
/// than `name` still resolve to the enclosing row (a correlated scalar sub-query), in the
/// backfill's `UPDATE` and in the trigger function alike.
fn nest(name: &Ident, outer: &RawSql, inner: &RawSql) -> RawSql {
    RawSql::new(format!(
        "(SELECT ({outer}) FROM (SELECT ({inner}) AS {name}) AS _pgbaton_prev)"
    ))
}

fn compose(name: &Ident, earlier: Option<RawSql>, later: Option<&RawSql>) -> Option<RawSql> {
    let later = later.filter(|l| !is_identity(l, name));
    match (earlier, later) {
        (e, None) => e,
        (None, Some(l)) => Some(l.clone()),
        (Some(e), Some(l)) => Some(nest(name, l, &e)),
    }
}

/// True when `expr` is empty or just names the column (`c` or `"c"`).
fn is_identity(expr: &RawSql, column: &Ident) -> bool {
    let e = expr.as_str().trim();
    e.is_empty() || e == column.to_string() || (e == column.as_str() && is_plain_ident(e))
}

fn is_plain_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
}

/// Duplicates `column` of `table` (names as the old version sees them) for the new version, or
/// returns the copy already made in this migration. The copy starts as the old column: same
/// type, nullability, default, comment, constraints and indexes; change it with the setters.
///
/// Errors: the table or column does not exist; the table was created in this migration (it has
/// no old version: change it in place); the column was added in this migration; the column is in
/// an exclusion constraint (no concurrent path exists for those); the column is generated.
pub fn duplicate<'p>(
    schema: &Schema,
    ctx: &PlanContext,
    plan: &'p mut PlanBuilder,
    table: &str,
    column: &str,
) -> Result<&'p mut ColumnCopy, PlanError> {
    duplicate_without(schema, ctx, plan, table, column, &[])
}

/// [`duplicate`] for a copy made without the constraints (or indexes) named in `without`, as
/// [`ColumnCopy::without_constraint`] would, but decided before the checks: a column in an
/// exclusion constraint can be duplicated when that constraint is one the copy goes without
/// (`drop_constraint` of the exclusion constraint).
pub fn duplicate_without<'p>(
    schema: &Schema,
    ctx: &PlanContext,
    plan: &'p mut PlanBuilder,
    table: &str,
    column: &str,
    without: &[&str],
) -> Result<&'p mut ColumnCopy, PlanError> {
    let t = find_table(schema, "table", table)?;
    let col = find_column(t, "column", column)?;
    let qual = schema.qualify(t);
    let copies = plan.copies();
    if copies.ctx.is_none() {
        copies.ctx = Some(ctx.clone());
    }
    let ti = match copies.tables.iter().position(|tc| tc.table == qual) {
        Some(i) => i,
        None => {
            if t.created_here {
                return Err(PlanError::new(
                    "table",
                    format!("table \"{table}\" is created by this migration: it has no old version to duplicate a column for"),
                ));
            }
            let foreign_keys = schema
                .tables
                .values()
                .flat_map(|other| {
                    let q = schema.qualify(other);
                    other
                        .constraints
                        .iter()
                        .filter(|c| c.kind == ConstraintKind::ForeignKey)
                        .map(move |c| (q.clone(), c.clone()))
                })
                .collect();
            let scope: Vec<(Ident, Ident)> = t
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.physical.clone()))
                .collect();
            copies.tables.push(TableCopies {
                table: qual.clone(),
                old: t.clone(),
                foreign_keys,
                old_scope: scope.clone(),
                new_scope: scope,
                copies: Vec::new(),
            });
            copies.tables.len() - 1
        }
    };
    let tc = &mut copies.tables[ti];
    if let Some(ci) = tc.copies.iter().position(|c| c.target == col.physical) {
        let copy = &mut tc.copies[ci];
        copy.without.extend(without.iter().map(|w| w.to_string()));
        return Ok(copy);
    }
    if is_temporary(col) {
        return Err(PlanError::new(
            "column",
            format!(
                "column \"{column}\" is added by this migration: change its add_column instead"
            ),
        ));
    }
    if col.generated.is_some() {
        return Err(PlanError::new(
            "column",
            format!("column \"{column}\" is a generated column: pgbaton cannot duplicate it"),
        ));
    }
    if let Some(x) = tc.old.constraints.iter().find(|c| {
        c.kind == ConstraintKind::Exclude
            && c.columns.contains(&col.physical)
            && !without.contains(&c.name.as_str())
    }) {
        return Err(PlanError::new(
            "column",
            format!(
                "column \"{column}\" is part of exclusion constraint \"{}\": PostgreSQL has no way to re-create it without blocking writes",
                x.name.as_str()
            ),
        ));
    }
    let target = new_column_name(col.name.as_str());
    for pair in tc.new_scope.iter_mut() {
        if pair.1 == col.physical {
            pair.1 = target.clone();
        }
    }
    tc.copies.push(ColumnCopy {
        table: qual,
        source: col.clone(),
        target,
        type_name: col.type_name.clone(),
        type_changed: false,
        nullable: col.nullable,
        default: col.default.clone(),
        default_inherited: true,
        comment: col.comment.clone(),
        up: None,
        down: None,
        without: without.iter().map(|w| w.to_string()).collect(),
        attached: Vec::new(),
    });
    let last = tc.copies.len() - 1;
    Ok(&mut tc.copies[last])
}

/// The new version's schema model: the column's `physical` becomes the copy. Call from `apply`
/// after [`duplicate`] ran in `start` (idempotent: a column already pointing at its copy stays).
pub fn apply(table: &mut Table, column: &str) -> Result<(), PlanError> {
    let col = find_column_mut(table, "column", column)?;
    col.physical = new_column_name(col.name.as_str());
    Ok(())
}

/// True when the column's physical column is a copy or a column added by this migration.
pub fn is_temporary(column: &Column) -> bool {
    column.physical == new_column_name(column.name.as_str())
}

impl Copies {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// The copy whose physical name is `target` in `table`, if one was made.
    pub fn get(&self, table: &QualName, target: &Ident) -> Option<&ColumnCopy> {
        self.tables
            .iter()
            .filter(|t| &t.table == table)
            .flat_map(|t| &t.copies)
            .find(|c| &c.target == target)
    }

    /// Every copy, in the order they were made.
    pub fn iter(&self) -> impl Iterator<Item = &ColumnCopy> {
        self.tables.iter().flat_map(|t| &t.copies)
    }

    /// Emits every copy's steps into `plan` (called by [`PlanBuilder::finish`], after every
    /// operation contributed its own steps). The rollback steps become one last "operation", so
    /// they run first among the undo steps.
    pub fn render(self, plan: &mut PlanBuilder) {
        let Some(ctx) = self.ctx else { return };
        let mut undo = Vec::new();
        for tc in &self.tables {
            undo.extend(render_table(tc, &ctx, plan));
        }
        for step in undo {
            plan.undo(step);
        }
    }
}

/// A duplicated index: the `CREATE INDEX CONCURRENTLY` of the copy, and what to do at complete.
struct DupIndex {
    original: Index,
    dup: Ident,
    sql: String,
    /// The constraint the index backs (unique or primary key), with its definition.
    constraint: Option<Constraint>,
}

/// A duplicated constraint (check or foreign key) of the table.
struct DupConstraint {
    table: QualName,
    original: Constraint,
    dup: Ident,
    /// `ALTER TABLE .. ADD CONSTRAINT dup ... NOT VALID`.
    add: String,
    /// Tolerant: created in a block that ignores "does not fit the new type" errors.
    tolerant: bool,
    /// The constraint references a copied column on its referenced side (created at complete).
    referencing: bool,
}

fn render_table(tc: &TableCopies, ctx: &PlanContext, plan: &mut PlanBuilder) -> Vec<Step> {
    let table = &tc.table;
    let renames: Vec<(Ident, Ident)> = tc
        .copies
        .iter()
        .map(|c| (c.source.physical.clone(), c.target.clone()))
        .collect();
    let any_type_change = tc.copies.iter().any(|c| c.type_changed);
    let names = tc
        .copies
        .iter()
        .map(|c| c.source.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");

    // --- start: the copies -------------------------------------------------------------------
    let mut expand = Vec::new();
    for c in &tc.copies {
        expand.push(format!(
            "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {} {}",
            c.target, c.type_name
        ));
        if c.source.identity.is_some() && c.default_inherited {
            expand.push(identity_default_sql(table, c));
        } else if let Some(default) = &c.default {
            let sql = format!(
                "ALTER TABLE {table} ALTER COLUMN {} SET DEFAULT {default}",
                c.target
            );
            if c.type_changed && c.default_inherited {
                expand.push(tolerant(&sql, TOLERATED_DEFAULT));
            } else {
                expand.push(sql);
            }
        }
        if let Some(comment) = &c.comment {
            expand.push(format!(
                "COMMENT ON COLUMN {table}.{} IS {}",
                c.target,
                Literal::new(comment)
            ));
        }
    }
    plan.expand(Step::transaction(
        format!("add copies of {names} to {table}"),
        Some(table.clone()),
        LockLevel::AccessExclusive,
        Work::Catalog,
        expand,
    ));

    let key = BackfillKey::for_table(&tc.old);
    for c in &tc.copies {
        plan.dual_write(
            ctx,
            table.clone(),
            tc.old_scope.clone(),
            tc.new_scope.clone(),
            DualWriteRule {
                new_column: c.target.clone(),
                up: c.up_sql(),
                old_column: Some(c.source.physical.clone()),
                down: Some(c.down_sql()),
            },
        );
        plan.backfill(
            table.clone(),
            key.clone(),
            tc.old_scope.clone(),
            Assignment {
                target: c.target.clone(),
                expr: c.up_sql(),
            },
        );
    }

    // Constraints of the table, and foreign keys of any table, that involve a copied column.
    let without: BTreeSet<&str> = tc
        .copies
        .iter()
        .flat_map(|c| c.without.iter().map(String::as_str))
        .collect();
    let mut dups: Vec<DupConstraint> = Vec::new();
    for con in &tc.old.constraints {
        if con.kind != ConstraintKind::Check
            || without.contains(con.name.as_str())
            || con.name.as_str().starts_with("_pgbaton_")
            || !con
                .columns
                .iter()
                .any(|c| renames.iter().any(|(s, _)| s == c))
        {
            continue;
        }
        let dup = dup_name(con.name.as_str());
        let body = rewrite_identifiers(&strip_not_valid(&con.definition), &renames);
        dups.push(DupConstraint {
            table: table.clone(),
            original: con.clone(),
            dup: dup.clone(),
            add: format!("ALTER TABLE {table} ADD CONSTRAINT {dup} {body} NOT VALID"),
            tolerant: any_type_change,
            referencing: false,
        });
    }
    for (holder, fk) in &tc.foreign_keys {
        if without.contains(fk.name.as_str()) && holder == table {
            continue;
        }
        let local = holder == table
            && fk
                .columns
                .iter()
                .any(|c| renames.iter().any(|(s, _)| s == c));
        let remote = fk.references.as_ref().is_some_and(|(rt, cols)| {
            rt == table && cols.iter().any(|c| renames.iter().any(|(s, _)| s == c))
        });
        if !local && !remote {
            continue;
        }
        let dup = dup_name(fk.name.as_str());
        let body = rewrite_foreign_key(
            &strip_not_valid(&fk.definition),
            if local { &renames } else { &[] },
            if remote { &renames } else { &[] },
        );
        dups.push(DupConstraint {
            table: holder.clone(),
            original: fk.clone(),
            dup: dup.clone(),
            add: format!("ALTER TABLE {holder} ADD CONSTRAINT {dup} {body} NOT VALID"),
            // A foreign key of the column's own is dropped when it does not fit the new type
            // (as pgroll); one that references the column must come along or complete fails.
            tolerant: any_type_change && !remote,
            referencing: remote,
        });
    }

    let mut guards = Vec::new();
    for c in tc.copies.iter().filter(|c| !c.nullable) {
        guards.push(format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID",
            not_null_name(c.source.name.as_str()),
            c.target
        ));
    }
    for d in dups.iter().filter(|d| !d.referencing) {
        guards.push(if d.tolerant {
            tolerant(&d.add, TOLERATED_CONSTRAINT)
        } else {
            d.add.clone()
        });
    }
    if !guards.is_empty() {
        let lock = LockLevel::AccessExclusive;
        plan.guard(Step::transaction(
            format!("constraints of the copies in {table} (NOT VALID)"),
            Some(table.clone()),
            lock,
            Work::Catalog,
            guards,
        ));
    }

    // Indexes involving a copied column, built concurrently on the copies.
    let mut indexes: Vec<DupIndex> = Vec::new();
    for idx in &tc.old.indexes {
        let backing = idx
            .constraint
            .as_ref()
            .and_then(|n| tc.old.constraint(n.as_str()))
            .cloned();
        // An INVALID index is the leftover of a failed concurrent build, not part of the
        // schema: it is not carried over.
        if !idx.valid
            || without.contains(idx.name.as_str())
            || idx
                .constraint
                .as_ref()
                .is_some_and(|n| without.contains(n.as_str()))
            || idx.name.as_str().starts_with("_pgbaton_")
            || backing
                .as_ref()
                .is_some_and(|c| c.kind == ConstraintKind::Exclude)
        {
            continue;
        }
        let Some(sql) = rewrite_index(&idx.definition, &renames) else {
            continue;
        };
        let dup = dup_name(idx.name.as_str());
        let unique = if idx.unique { "UNIQUE " } else { "" };
        indexes.push(DupIndex {
            original: idx.clone(),
            sql: format!("CREATE {unique}INDEX CONCURRENTLY {dup} ON {table} {sql}"),
            dup,
            constraint: backing,
        });
    }
    for d in &indexes {
        plan.build(Step::create_index_concurrently(
            format!("build index {} on the copies of {table}", d.dup),
            table.clone(),
            QualName::new(table.schema.clone(), d.dup.clone()),
            d.sql.clone(),
        ));
    }

    // --- complete -------------------------------------------------------------------------
    for c in tc.copies.iter().filter(|c| !c.nullable) {
        plan.validate(validate_step(
            table,
            &not_null_name(c.source.name.as_str()),
            false,
        ));
    }
    for d in &dups {
        if d.referencing {
            let add = if d.tolerant {
                tolerant(&d.add, TOLERATED_CONSTRAINT)
            } else {
                d.add.clone()
            };
            plan.validate(Step::catalog(
                format!(
                    "re-create foreign key {} of {} on the copy (NOT VALID)",
                    d.original.name, d.table
                ),
                Some(d.table.clone()),
                LockLevel::ShareRowExclusive,
                add,
            ));
        }
        plan.validate(validate_step(&d.table, &d.dup, d.tolerant));
    }

    let mut contract = Vec::new();
    // Foreign keys elsewhere that reference an old column go first: they hold on to its index.
    for d in dups.iter().filter(|d| d.referencing) {
        contract.push(format!(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
            d.table, d.original.name
        ));
    }
    for c in &tc.copies {
        match c.source.identity {
            Some(kind) => contract.push(identity_swap_sql(table, c, kind)),
            None => {
                // A `serial` column owns its sequence: moved, or it would go with the column.
                if c.source
                    .default
                    .as_deref()
                    .is_some_and(|d| d.contains("nextval("))
                {
                    contract.push(sequence_owner_sql(table, c));
                }
                contract.push(format!(
                    "ALTER TABLE {table} DROP COLUMN {}",
                    c.source.physical
                ));
            }
        }
        if !c.nullable {
            contract.push(format!(
                "ALTER TABLE {table} ALTER COLUMN {} SET NOT NULL",
                c.target
            ));
            contract.push(format!(
                "ALTER TABLE {table} DROP CONSTRAINT {}",
                not_null_name(c.source.name.as_str())
            ));
        }
    }
    for d in &dups {
        let sql = format!(
            "ALTER TABLE {} RENAME CONSTRAINT {} TO {}",
            d.table, d.dup, d.original.name
        );
        contract.push(if d.tolerant {
            if_constraint_exists(&d.table, &d.dup, &sql)
        } else {
            sql
        });
    }
    for d in &indexes {
        match &d.constraint {
            Some(con) => {
                let kind = if con.kind == ConstraintKind::PrimaryKey {
                    "PRIMARY KEY"
                } else {
                    "UNIQUE"
                };
                let mut sql = format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {} {kind} USING INDEX {}",
                    con.name, d.dup
                );
                let def = con.definition.to_ascii_uppercase();
                if def.contains("INITIALLY DEFERRED") {
                    sql.push_str(" DEFERRABLE INITIALLY DEFERRED");
                } else if def.contains("DEFERRABLE") && !def.contains("NOT DEFERRABLE") {
                    sql.push_str(" DEFERRABLE");
                }
                contract.push(sql);
            }
            None => contract.push(format!(
                "ALTER INDEX {} RENAME TO {}",
                QualName::new(table.schema.clone(), d.dup.clone()),
                d.original.name
            )),
        }
    }
    let mut attached: Vec<&AttachedConstraint> = Vec::new();
    for a in tc.copies.iter().flat_map(|c| &c.attached) {
        if !attached.iter().any(|b| b.name == a.name) {
            attached.push(a);
        }
    }
    for a in attached {
        let kind = if a.primary_key {
            "PRIMARY KEY"
        } else {
            "UNIQUE"
        };
        contract.push(format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} {kind} USING INDEX {}",
            a.name, a.index
        ));
    }
    if tc.old.replica_identity == 'i' {
        if let Some(ri) = &tc.old.replica_identity_index {
            if indexes.iter().any(|d| &d.original.name == ri) {
                contract.push(format!(
                    "ALTER TABLE {table} REPLICA IDENTITY USING INDEX {ri}"
                ));
            }
        }
    }
    for c in &tc.copies {
        contract.push(format!(
            "ALTER TABLE {table} RENAME COLUMN {} TO {}",
            c.target, c.source.physical
        ));
    }
    for sql in contract {
        plan.contract(table.clone(), sql);
    }
    if let Some(sql) = crate::ops::not_null_names::rename_temporary_not_null_constraints(ctx, table)
    {
        plan.contract_after_column_renames(table.clone(), sql);
    }

    // --- rollback -------------------------------------------------------------------------
    let mut undo = Vec::new();
    for d in dups.iter().filter(|d| d.referencing) {
        undo.push(format!(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
            d.table, d.dup
        ));
    }
    for c in &tc.copies {
        undo.push(format!(
            "ALTER TABLE {table} DROP COLUMN IF EXISTS {}",
            c.target
        ));
    }
    vec![Step::transaction(
        format!("drop the copies of {names} from {table}"),
        Some(table.clone()),
        LockLevel::AccessExclusive,
        Work::Catalog,
        undo,
    )]
}

/// `VALIDATE CONSTRAINT` (a scan under `SHARE UPDATE EXCLUSIVE`, blocking no one). `tolerant`:
/// nothing when the constraint is gone (a tolerated constraint that did not fit the new type).
pub(crate) fn validate_step(table: &QualName, constraint: &Ident, tolerant: bool) -> Step {
    let sql = format!("ALTER TABLE {table} VALIDATE CONSTRAINT {constraint}");
    Step::transaction(
        format!("validate {constraint} on {table}"),
        Some(table.clone()),
        LockLevel::ShareUpdateExclusive,
        Work::Scan,
        vec![if tolerant {
            if_constraint_exists(table, constraint, &sql)
        } else {
            sql
        }],
    )
}

/// SQLSTATEs meaning "this default does not fit the new type": datatype_mismatch,
/// undefined_function, cannot_coerce, invalid_text_representation.
const TOLERATED_DEFAULT: &[&str] = &["42804", "42883", "42846", "22P02"];
/// SQLSTATEs meaning "this constraint does not fit the new type": datatype_mismatch,
/// undefined_function, cannot_coerce.
const TOLERATED_CONSTRAINT: &[&str] = &["42804", "42883", "42846"];

/// `sql` in a block that skips it when it fails with one of `states` (pgroll drops defaults and
/// constraints that do not fit a column's new type).
fn tolerant(sql: &str, states: &[&str]) -> String {
    let conds = states
        .iter()
        .map(|s| format!("SQLSTATE '{s}'"))
        .collect::<Vec<_>>()
        .join(" OR ");
    do_block(&format!(
        "BEGIN\n  EXECUTE {};\nEXCEPTION WHEN {conds} THEN\n  NULL;\nEND",
        Literal::new(sql)
    ))
}

/// `sql`, run only when `constraint` exists on `table`.
fn if_constraint_exists(table: &QualName, constraint: &Ident, sql: &str) -> String {
    do_block(&format!(
        "BEGIN\n  IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {} AND conname = {}) THEN\n    EXECUTE {};\n  END IF;\nEND",
        table.regclass(),
        constraint.literal(),
        Literal::new(sql)
    ))
}

/// `DO $tag$ body $tag$` with a tag that does not occur in the body.
pub(crate) fn do_block(body: &str) -> String {
    let mut tag = "$_pgbaton_$".to_string();
    let mut i = 0u32;
    while body.contains(&tag) {
        i += 1;
        tag = format!("$_pgbaton_{i}$");
    }
    format!("DO {tag}\n{body}\n{tag}")
}

/// The copy of an identity column draws its default from the identity's sequence until complete.
fn identity_default_sql(table: &QualName, c: &ColumnCopy) -> String {
    do_block(&format!(
        "BEGIN\n  EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT nextval(%L::regclass)', {}, {}, pg_get_serial_sequence({}, {}));\nEND",
        Literal::new(table.to_string()),
        c.target.literal(),
        Literal::new(table.to_string()),
        c.source.physical.literal()
    ))
}

/// Moves the ownership of a sequence owned by the old column (`serial`) to the copy, so dropping
/// the old column keeps it; an `integer`/`smallint` sequence becomes `bigint` with a `bigint`
/// copy. Catalog only.
fn sequence_owner_sql(table: &QualName, c: &ColumnCopy) -> String {
    let t = Literal::new(table.to_string());
    do_block(&format!(
        "DECLARE\n  seq text := pg_get_serial_sequence({t}, {src});\nBEGIN\n  IF seq IS NULL THEN\n    RETURN;\n  END IF;\n  EXECUTE format('ALTER SEQUENCE %s OWNED BY %s.%I', seq, {t}, {dst});\n  IF (SELECT atttypid FROM pg_attribute WHERE attrelid = {rc} AND attname = {dst}) = 'bigint'::regtype\n     AND (SELECT seqtypid FROM pg_sequence WHERE seqrelid = seq::regclass) <> 'bigint'::regtype THEN\n    EXECUTE format('ALTER SEQUENCE %s AS bigint', seq);\n  END IF;\nEND",
        src = c.source.physical.literal(),
        dst = c.target.literal(),
        rc = table.regclass(),
    ))
}

/// For an identity column: drops the old column and makes the copy the identity, with the old
/// sequence's name, options and position (a maximum that was the old type's limit becomes the
/// new type's). Catalog only.
fn identity_swap_sql(table: &QualName, c: &ColumnCopy, kind: char) -> String {
    let t = Literal::new(table.to_string());
    let generated = if kind == 'a' { "ALWAYS" } else { "BY DEFAULT" };
    do_block(&format!(
        "DECLARE
  seq regclass := pg_get_serial_sequence({t}, {src})::regclass;
  s pg_sequence%ROWTYPE;
  seqname text;
  last_value bigint;
  called boolean;
  maxclause text;
  typemax bigint;
BEGIN
  SELECT * INTO s FROM pg_sequence WHERE seqrelid = seq;
  SELECT quote_ident(n.nspname) || '.' || quote_ident(k.relname) INTO seqname
    FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace WHERE k.oid = seq;
  EXECUTE format('SELECT last_value, is_called FROM %s', seqname) INTO last_value, called;
  typemax := CASE s.seqtypid WHEN 'smallint'::regtype THEN 32767 WHEN 'integer'::regtype THEN 2147483647
                             ELSE 9223372036854775807 END;
  IF s.seqmax = typemax THEN
    maxclause := 'NO MAXVALUE';
  ELSE
    maxclause := 'MAXVALUE ' || s.seqmax;
  END IF;
  ALTER TABLE {table} ALTER COLUMN {dst} DROP DEFAULT;
  ALTER TABLE {table} DROP COLUMN {srci};
  ALTER TABLE {table} ALTER COLUMN {dst} SET NOT NULL;
  EXECUTE format('ALTER TABLE %s ALTER COLUMN %I ADD GENERATED {generated} AS IDENTITY (SEQUENCE NAME %s INCREMENT BY %s MINVALUE %s %s START WITH %s CACHE %s %s)',
                 {t}, {dstl}, seqname, s.seqincrement, s.seqmin, maxclause, s.seqstart, s.seqcache,
                 CASE WHEN s.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END);
  PERFORM setval(seqname::regclass, last_value, called);
END",
        src = c.source.physical.literal(),
        dst = c.target,
        dstl = c.target.literal(),
        srci = c.source.physical,
    ))
}

/// `pg_get_constraintdef` appends ` NOT VALID` to an unvalidated constraint.
fn strip_not_valid(def: &str) -> String {
    def.strip_suffix(" NOT VALID").unwrap_or(def).to_string()
}

// --- identifier rewriting (on the tokens of `common`) ------------------------------------------

/// `(from, to)` renames as the `(name, physical)` pairs [`column_refs`] takes.
fn by_name(renames: &[(Ident, Ident)]) -> Vec<(&str, &Ident)> {
    renames
        .iter()
        .map(|(from, to)| (from.as_str(), to))
        .collect()
}

/// Rewrites column references in an SQL expression (a check, a predicate): each identifier that
/// names a column in `renames` (`from` physical name → `to`) is replaced by the quoted `to`.
/// String literals, quoted text, function names, qualified names and type names are left alone
/// ([`column_refs`]).
pub fn rewrite_identifiers(sql: &str, renames: &[(Ident, Ident)]) -> String {
    let tokens = sql_tokens(sql);
    let refs = column_refs(&tokens, 0..tokens.len(), None, &by_name(renames));
    splice(&tokens, 0, &refs)
}

/// The part of a `pg_get_indexdef` from `USING` on, with copied columns renamed; `None` when the
/// index does not involve any of them. Storage parameters (`WITH (...)`) are kept as they are.
fn rewrite_index(def: &str, renames: &[(Ident, Ident)]) -> Option<String> {
    let tokens = sql_tokens(def);
    let using = tokens.iter().position(|t| t.is_keyword("USING"))?;
    // Skip the access method.
    let method = (using + 1..tokens.len()).find(|&i| !tokens[i].is_space())?;
    // Ranges to rewrite: everything after the method except a top-level `WITH ( ... )`.
    let mut depth = 0i32;
    let mut in_with = false;
    let mut ranges = Vec::new();
    let mut from = method + 1;
    for (i, token) in tokens.iter().enumerate().skip(method + 1) {
        match token {
            SqlToken::Other("(") => depth += 1,
            SqlToken::Other(")") => {
                depth -= 1;
                if depth == 0 && in_with {
                    in_with = false;
                    from = i + 1;
                }
            }
            t if depth == 0 && t.is_keyword("WITH") => {
                ranges.push(from..i);
                in_with = true;
            }
            _ => {}
        }
    }
    if !in_with {
        ranges.push(from..tokens.len());
    }
    let renames = by_name(renames);
    let refs: Vec<_> = ranges
        .into_iter()
        .flat_map(|r| column_refs(&tokens, r, None, &renames))
        .collect();
    if refs.is_empty() {
        return None;
    }
    Some(splice(&tokens, using, &refs))
}

/// True when a `pg_get_indexdef` is a plain b-tree over columns: each key is one column name,
/// optionally `ASC`/`DESC` and `NULLS FIRST`/`LAST` — no expression, operator class, collation or
/// predicate. (Such an index survives a type change that needs no rewrite; others are rebuilt.)
pub fn is_plain_btree_index(def: &str) -> bool {
    let sig: Vec<SqlToken<'_>> = sql_tokens(def)
        .into_iter()
        .filter(|t| !t.is_space())
        .collect();
    let Some(using) = sig.iter().position(|t| t.is_keyword("USING")) else {
        return false;
    };
    if !sig
        .get(using + 1)
        .is_some_and(|t| t.text().eq_ignore_ascii_case("btree"))
        || sig.get(using + 2).map(SqlToken::text) != Some("(")
    {
        return false;
    }
    let mut i = using + 3;
    loop {
        // One key: a column name...
        match sig.get(i) {
            Some(SqlToken::Ident { .. }) => i += 1,
            _ => return false,
        }
        // ...then optional ordering words.
        while let Some(t @ SqlToken::Ident { .. }) = sig.get(i) {
            if ["ASC", "DESC", "NULLS", "FIRST", "LAST"]
                .iter()
                .any(|w| t.is_keyword(w))
            {
                i += 1;
            } else {
                return false;
            }
        }
        match sig.get(i).map(SqlToken::text) {
            Some(",") => i += 1,
            Some(")") => {
                i += 1;
                break;
            }
            _ => return false,
        }
    }
    // Only INCLUDE (...) may follow (no WITH, WHERE or TABLESPACE matters for a type change,
    // but a WHERE predicate makes PostgreSQL rebuild the index).
    !sig[i..].iter().any(|t| t.is_keyword("WHERE"))
}

/// Rewrites a `FOREIGN KEY (..) REFERENCES t(..) ...` definition: `local` renames apply to the
/// first column list, `remote` to the referenced one.
fn rewrite_foreign_key(def: &str, local: &[(Ident, Ident)], remote: &[(Ident, Ident)]) -> String {
    let tokens = sql_tokens(def);
    let groups = paren_groups(&tokens);
    let mut refs = Vec::new();
    if let Some(first) = groups.first() {
        refs.extend(column_refs(&tokens, first.clone(), None, &by_name(local)));
    }
    if let Some(r) = tokens.iter().position(|t| t.is_keyword("REFERENCES")) {
        if let Some(g) = groups.iter().find(|g| g.start > r) {
            refs.extend(column_refs(&tokens, g.clone(), None, &by_name(remote)));
        }
    }
    splice(&tokens, 0, &refs)
}

/// Token ranges inside each top-level parenthesised group.
fn paren_groups(tokens: &[SqlToken<'_>]) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let mut depth = 0;
    let mut open = 0;
    for (i, token) in tokens.iter().enumerate() {
        match token {
            SqlToken::Other("(") => {
                if depth == 0 {
                    open = i + 1;
                }
                depth += 1;
            }
            SqlToken::Other(")") => {
                depth -= 1;
                if depth == 0 {
                    groups.push(open..i);
                }
            }
            _ => {}
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Facts;
    use crate::schema::{Constraint, Index};
    use crate::step::Action;

    fn ctx() -> PlanContext {
        PlanContext {
            migration: "02_change".into(),
            schema: Ident::new("public"),
            version_schema: Ident::new("public_02_change"),
            previous_version_schema: None,
            server_version_num: 150000,
            facts: Facts::default(),
            missing: Default::default(),
        }
    }

    fn users() -> Schema {
        let mut t = Table::new(Ident::new("users"));
        let mut id = Column::new(Ident::new("id"), "integer");
        id.nullable = false;
        id.default = Some("nextval('users_id_seq'::regclass)".into());
        let mut email = Column::new(Ident::new("email"), "character varying(100)");
        email.comment = Some("the mail".into());
        t.columns = vec![id, email];
        t.has_rows = true;
        t.constraints = vec![
            Constraint {
                name: Ident::new("users_pkey"),
                kind: ConstraintKind::PrimaryKey,
                columns: vec![Ident::new("id")],
                definition: "PRIMARY KEY (id)".into(),
                validated: true,
                references: None,
            },
            Constraint {
                name: Ident::new("email_len"),
                kind: ConstraintKind::Check,
                columns: vec![Ident::new("email")],
                definition: "CHECK ((length((email)::text) > 3))".into(),
                validated: true,
                references: None,
            },
        ];
        t.indexes = vec![
            Index {
                name: Ident::new("users_pkey"),
                columns: vec![Ident::new("id")],
                unique: true,
                primary: true,
                valid: true,
                has_expressions: false,
                predicate: None,
                definition: "CREATE UNIQUE INDEX users_pkey ON public.users USING btree (id)".into(),
                constraint: Some(Ident::new("users_pkey")),
            },
            Index {
                name: Ident::new("users_lower_email"),
                columns: vec![],
                unique: false,
                primary: false,
                valid: true,
                has_expressions: true,
                predicate: Some("(email IS NOT NULL)".into()),
                definition: "CREATE INDEX users_lower_email ON public.users USING btree (lower((email)::text)) WITH (fillfactor='70') WHERE (email IS NOT NULL)".into(),
                constraint: None,
            },
        ];
        let mut posts = Table::new(Ident::new("posts"));
        posts.columns = vec![
            Column::new(Ident::new("id"), "integer"),
            Column::new(Ident::new("user_id"), "integer"),
        ];
        posts.constraints = vec![Constraint {
            name: Ident::new("posts_user_fk"),
            kind: ConstraintKind::ForeignKey,
            columns: vec![Ident::new("user_id")],
            definition: "FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE".into(),
            validated: true,
            references: Some((QualName::new("public", "users"), vec![Ident::new("id")])),
        }];
        let mut s = Schema {
            name: Ident::new("public"),
            server_version_num: 150000,
            ..Default::default()
        };
        s.tables.insert("users".into(), t);
        s.tables.insert("posts".into(), posts);
        s
    }

    #[test]
    fn rewrites_only_column_references() {
        let r = vec![(Ident::new("email"), Ident::new("_pgbaton_new_email"))];
        assert_eq!(
            rewrite_identifiers("CHECK ((length((email)::text) > 3 AND email <> 'email' AND \"email\" IS NOT NULL))", &r),
            "CHECK ((length((\"_pgbaton_new_email\")::text) > 3 AND \"_pgbaton_new_email\" <> 'email' AND \"_pgbaton_new_email\" IS NOT NULL))"
        );
        // A function named like the column, a qualified name, a type and a different case of a
        // quoted name are not the column.
        assert_eq!(
            rewrite_identifiers("email(x) + s.email + 1::email + \"Email\"", &r),
            "email(x) + s.email + 1::email + \"Email\""
        );
        // Unquoted names fold to lower case.
        assert_eq!(rewrite_identifiers("EMAIL", &r), "\"_pgbaton_new_email\"");
        assert_eq!(
            rewrite_identifiers("$$email$$ || E'\\'email'", &r),
            "$$email$$ || E'\\'email'"
        );
    }

    #[test]
    fn type_names_and_other_literals_are_not_columns() {
        let r = vec![(Ident::new("email"), Ident::new("_pgbaton_new_email"))];
        assert_eq!(
            rewrite_identifiers(
                "CAST(email AS email) || U&\"email\" || N'email' || X'0e'",
                &r
            ),
            "CAST(\"_pgbaton_new_email\" AS email) || U&\"email\" || N'email' || X'0e'"
        );
    }

    #[test]
    fn rewrites_index_definitions() {
        let r = vec![(Ident::new("email"), Ident::new("_pgbaton_new_email"))];
        let def = "CREATE INDEX users_lower_email ON public.users USING btree (lower((email)::text)) WITH (fillfactor='70') WHERE (email IS NOT NULL)";
        assert_eq!(
            rewrite_index(def, &r).as_deref(),
            Some("USING btree (lower((\"_pgbaton_new_email\")::text)) WITH (fillfactor='70') WHERE (\"_pgbaton_new_email\" IS NOT NULL)")
        );
        // An index on a table named like the column, not involving the column.
        assert_eq!(
            rewrite_index("CREATE INDEX i ON public.email USING btree (id)", &r),
            None
        );
    }

    #[test]
    fn recognises_plain_btree_indexes() {
        assert!(is_plain_btree_index(
            "CREATE INDEX i ON public.t USING btree (email)"
        ));
        assert!(is_plain_btree_index(
            "CREATE UNIQUE INDEX i ON public.t USING btree (a DESC NULLS LAST, \"B\") INCLUDE (c)"
        ));
        assert!(!is_plain_btree_index(
            "CREATE INDEX i ON public.t USING btree (email varchar_pattern_ops)"
        ));
        assert!(!is_plain_btree_index(
            "CREATE INDEX i ON public.t USING btree (email COLLATE \"C\")"
        ));
        assert!(!is_plain_btree_index(
            "CREATE INDEX i ON public.t USING btree (lower(email))"
        ));
        assert!(!is_plain_btree_index(
            "CREATE INDEX i ON public.t USING btree (email) WHERE (email IS NOT NULL)"
        ));
        assert!(!is_plain_btree_index(
            "CREATE INDEX i ON public.t USING hash (email)"
        ));
    }

    #[test]
    fn rewrites_foreign_keys_per_side() {
        let r = vec![(Ident::new("id"), Ident::new("_pgbaton_new_id"))];
        assert_eq!(
            rewrite_foreign_key(
                "FOREIGN KEY (id) REFERENCES users(id) ON DELETE CASCADE",
                &[],
                &r
            ),
            "FOREIGN KEY (id) REFERENCES users(\"_pgbaton_new_id\") ON DELETE CASCADE"
        );
        assert_eq!(
            rewrite_foreign_key("FOREIGN KEY (id) REFERENCES users(id)", &r, &[]),
            "FOREIGN KEY (\"_pgbaton_new_id\") REFERENCES users(id)"
        );
    }

    #[test]
    fn composes_conversions() {
        let s = users();
        let mut plan = PlanBuilder::new();
        let copy = duplicate(&s, &ctx(), &mut plan, "users", "email").expect("copy");
        copy.convert(
            Some(&RawSql::new("INITCAP(email)")),
            Some(&RawSql::new("email")),
        );
        copy.convert(
            Some(&RawSql::new(
                "SELECT CASE WHEN email IS NULL THEN 'x' ELSE email END",
            )),
            Some(&RawSql::new("lower(email)")),
        );
        assert_eq!(
            copy.up_sql().as_str(),
            "(SELECT (SELECT CASE WHEN email IS NULL THEN 'x' ELSE email END) FROM (SELECT (INITCAP(email)) AS \"email\") AS _pgbaton_prev)"
        );
        assert_eq!(copy.down_sql().as_str(), "lower(email)");
        copy.convert(None, Some(&RawSql::new("upper(email)")));
        assert_eq!(
            copy.down_sql().as_str(),
            "(SELECT (lower(email)) FROM (SELECT (upper(email)) AS \"email\") AS _pgbaton_prev)"
        );
    }

    #[test]
    fn second_duplicate_of_a_column_is_the_same_copy() {
        let mut s = users();
        let mut plan = PlanBuilder::new();
        duplicate(&s, &ctx(), &mut plan, "users", "email")
            .expect("copy")
            .set_type("text");
        apply(s.table_mut("users").expect("users"), "email").expect("apply");
        let again = duplicate(&s, &ctx(), &mut plan, "users", "email").expect("again");
        assert_eq!(again.type_name(), "text");
        again.set_nullable(false);
        assert_eq!(plan.copies().iter().count(), 1);
    }

    #[test]
    fn refuses_columns_added_here_and_new_tables() {
        let mut s = users();
        s.table_mut("users").expect("users").columns.push({
            let mut c = Column::new(Ident::new("age"), "int");
            c.physical = new_column_name("age");
            c
        });
        let mut plan = PlanBuilder::new();
        let e = duplicate(&s, &ctx(), &mut plan, "users", "age").expect_err("added column");
        assert!(e.message.contains("added by this migration"), "{e}");
        s.table_mut("posts").expect("posts").created_here = true;
        let e = duplicate(&s, &ctx(), &mut plan, "posts", "user_id").expect_err("new table");
        assert!(e.message.contains("created by this migration"), "{e}");
    }

    #[test]
    fn primary_key_copy_plan() {
        let s = users();
        let mut plan = PlanBuilder::new();
        let copy = duplicate(&s, &ctx(), &mut plan, "users", "id").expect("copy");
        copy.set_type("bigint");
        copy.convert(
            Some(&RawSql::new("CAST(id AS bigint)")),
            Some(&RawSql::new("CAST(id AS int)")),
        );
        plan.end_operation();
        let p = plan.finish(vec![], vec![], vec![]);
        assert!(p.lock_violations().is_empty(), "{:?}", p.lock_violations());
        let start: Vec<String> = p.start.iter().flat_map(|s| s.statements()).collect();
        let all = start.join("\n");
        assert!(all.contains(
            "ALTER TABLE \"public\".\"users\" ADD COLUMN IF NOT EXISTS \"_pgbaton_new_id\" bigint"
        ));
        assert!(all.contains(
            "ADD CONSTRAINT \"_pgbaton_nn_id\" CHECK (\"_pgbaton_new_id\" IS NOT NULL) NOT VALID"
        ));
        assert!(all.contains("CREATE UNIQUE INDEX CONCURRENTLY \"_pgbaton_dup_users_pkey\" ON \"public\".\"users\" USING btree (\"_pgbaton_new_id\")"));
        let complete: Vec<String> = p.complete.iter().flat_map(|s| s.statements()).collect();
        let all = complete.join("\n");
        assert!(all.contains("ALTER TABLE \"public\".\"posts\" ADD CONSTRAINT \"_pgbaton_dup_posts_user_fk\" FOREIGN KEY (user_id) REFERENCES users(\"_pgbaton_new_id\") ON DELETE CASCADE NOT VALID"), "{all}");
        let contract = p
            .complete
            .iter()
            .find(|s| s.title.starts_with("contract"))
            .expect("contract");
        let sql = contract.statements();
        let pos = |needle: &str| {
            sql.iter()
                .position(|s| s.contains(needle))
                .unwrap_or_else(|| panic!("{needle} not in {sql:#?}"))
        };
        assert!(pos("DROP CONSTRAINT IF EXISTS \"posts_user_fk\"") < pos("DROP COLUMN \"id\""));
        assert!(pos("DROP COLUMN \"id\"") < pos("SET NOT NULL"));
        assert!(pos("SET NOT NULL") < pos("PRIMARY KEY USING INDEX \"_pgbaton_dup_users_pkey\""));
        assert!(
            pos("RENAME CONSTRAINT \"_pgbaton_dup_posts_user_fk\" TO \"posts_user_fk\"")
                < pos("RENAME COLUMN \"_pgbaton_new_id\" TO \"id\"")
        );
        assert!(pos("OWNED BY") < pos("DROP COLUMN \"id\""));
        assert_eq!(contract.lock, LockLevel::AccessExclusive);
        assert_eq!(contract.work, Work::Catalog);
        let rollback: Vec<String> = p.rollback.iter().flat_map(|s| s.statements()).collect();
        assert!(rollback
            .iter()
            .any(|s| s
                == "ALTER TABLE \"public\".\"users\" DROP COLUMN IF EXISTS \"_pgbaton_new_id\""));
        let bf = p
            .start
            .iter()
            .find(|s| matches!(s.action, Action::Backfill(_)))
            .expect("backfill");
        match &bf.action {
            Action::Backfill(spec) => {
                assert_eq!(spec.key, BackfillKey::Columns(vec![Ident::new("id")]));
                assert_eq!(spec.assignments.len(), 1);
            }
            _ => unreachable!(),
        }
    }

    #[test]
    fn requests_of_the_constraint_operations() {
        let mut s = users();
        let t = s.table_mut("users").expect("users");
        t.constraints.push(Constraint {
            name: Ident::new("no_overlap"),
            kind: ConstraintKind::Exclude,
            columns: vec![Ident::new("email")],
            definition: "EXCLUDE USING gist (email WITH =)".into(),
            validated: true,
            references: None,
        });
        // An INVALID leftover index is not carried over.
        t.indexes.push(Index {
            name: Ident::new("leftover"),
            columns: vec![Ident::new("email")],
            unique: false,
            primary: false,
            valid: false,
            has_expressions: false,
            predicate: None,
            definition: "CREATE INDEX leftover ON public.users USING btree (email)".into(),
            constraint: None,
        });
        let mut plan = PlanBuilder::new();
        let e = duplicate(&s, &ctx(), &mut plan, "users", "email").expect_err("exclusion");
        assert!(
            e.message.contains("exclusion constraint \"no_overlap\""),
            "{e}"
        );
        let copy = duplicate_without(&s, &ctx(), &mut plan, "users", "email", &["no_overlap"])
            .expect("dropping the exclusion constraint");
        assert!(copy.drops("no_overlap"));
        copy.set_nullable(false);
        let pk = Ident::new("users_email_pk");
        copy.attach_index_constraint(&pk, true, &pk);
        copy.attach_index_constraint(&pk, true, &pk);
        plan.end_operation();
        let p = plan.finish(vec![], vec![], vec![]);
        let all: Vec<String> = p
            .start
            .iter()
            .chain(&p.complete)
            .flat_map(|s| s.statements())
            .collect();
        assert!(!all.iter().any(|s| s.contains("leftover")), "{all:#?}");
        let contract = p
            .complete
            .iter()
            .find(|s| s.title.starts_with("contract"))
            .expect("contract")
            .statements();
        let pos = |needle: &str| {
            contract
                .iter()
                .position(|s| s.contains(needle))
                .unwrap_or_else(|| panic!("{needle}: {contract:#?}"))
        };
        assert!(
            pos("SET NOT NULL")
                < pos(
                    "ADD CONSTRAINT \"users_email_pk\" PRIMARY KEY USING INDEX \"users_email_pk\""
                )
        );
        assert!(pos("PRIMARY KEY USING INDEX") < pos("RENAME COLUMN"));
        assert_eq!(
            contract
                .iter()
                .filter(|s| s.contains("users_email_pk"))
                .count(),
            1
        );
    }

    #[test]
    fn type_change_makes_inherited_objects_tolerant() {
        let s = users();
        let mut plan = PlanBuilder::new();
        let copy = duplicate(&s, &ctx(), &mut plan, "users", "email").expect("copy");
        copy.set_type("integer");
        plan.end_operation();
        let p = plan.finish(vec![], vec![], vec![]);
        let start = p
            .start
            .iter()
            .flat_map(|s| s.statements())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(start.contains("EXCEPTION WHEN SQLSTATE '42804'"), "{start}");
        assert!(start.contains(
            "COMMENT ON COLUMN \"public\".\"users\".\"_pgbaton_new_email\" IS 'the mail'"
        ));
        assert!(start.contains("CREATE INDEX CONCURRENTLY \"_pgbaton_dup_users_lower_email\""));
    }
}
