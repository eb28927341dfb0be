//! The steps of one table's copies, stage by stage (see the module documentation of
//! [`super`] for what each stage does and why).

use std::collections::BTreeSet;

use super::sql::{
    identity_default_sql, identity_swap_sql, if_constraint_exists, sequence_owner_sql,
    strip_not_valid, tolerant, validate_step, TOLERATED_CONSTRAINT, TOLERATED_DEFAULT,
};
use super::{dup_name, not_null_name, AttachedConstraint, TableCopies};
use crate::ident::{Ident, Literal, QualName};
use crate::plan::{PlanBuilder, PlanContext};
use crate::schema::{Constraint, ConstraintKind, Index};
use crate::sql::rewrite::{rewrite_foreign_key, rewrite_identifiers, rewrite_index};
use crate::step::{Assignment, BackfillKey, LockLevel, Step, Work};
use crate::triggers::DualWriteRule;

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

impl DupConstraint {
    /// The `ADD CONSTRAINT`, in its tolerant block when it is tolerant.
    fn add_sql(&self) -> String {
        if self.tolerant {
            tolerant(&self.add, TOLERATED_CONSTRAINT)
        } else {
            self.add.clone()
        }
    }
}

/// What every stage of one table's copies needs.
struct Ctx<'a> {
    tc: &'a TableCopies,
    table: &'a QualName,
    /// (old physical, copy) of every copied column.
    renames: Vec<(Ident, Ident)>,
    /// Constraints and indexes the copies go without.
    without: BTreeSet<&'a str>,
}

impl Ctx<'_> {
    fn copied(&self, column: &Ident) -> bool {
        self.renames.iter().any(|(s, _)| s == column)
    }
}

/// Emits the steps of one table's copies into `plan`; returns the rollback steps.
pub(super) fn render_table(
    tc: &TableCopies,
    ctx: &PlanContext,
    plan: &mut PlanBuilder,
) -> Vec<Step> {
    let c = Ctx {
        tc,
        table: &tc.table,
        renames: tc
            .copies
            .iter()
            .map(|c| (c.source.physical.clone(), c.target.clone()))
            .collect(),
        without: tc
            .copies
            .iter()
            .flat_map(|c| c.without.iter().map(String::as_str))
            .collect(),
    };
    let names = tc
        .copies
        .iter()
        .map(|c| c.source.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    expand(&c, ctx, plan, &names);
    let dups = dup_constraints(&c);
    guards(&c, &dups, plan);
    let indexes = dup_indexes(&c);
    for d in &indexes {
        plan.build(Step::create_index_concurrently(
            format!("build index {} on the copies of {}", d.dup, c.table),
            c.table.clone(),
            QualName::new(c.table.schema.clone(), d.dup.clone()),
            d.sql.clone(),
        ));
    }
    validate(&c, &dups, plan);
    let mut contract = contract_columns(&c, &dups);
    contract.extend(contract_objects(&c, &dups, &indexes));
    for sql in contract {
        plan.contract(c.table.clone(), sql);
    }
    // PostgreSQL 18 names NOT NULL constraints after the column: the copies' get the names the
    // server would give the final columns.
    if let Some(sql) =
        crate::ops::not_null_names::rename_temporary_not_null_constraints(ctx, c.table)
    {
        plan.contract_after_column_renames(c.table.clone(), sql);
    }
    vec![rollback(&c, &dups, &names)]
}

/// start: the copies themselves (one catalog transaction), the dual-write rules and backfill.
fn expand(c: &Ctx<'_>, ctx: &PlanContext, plan: &mut PlanBuilder, names: &str) {
    let (tc, table) = (c.tc, c.table);
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
}

/// The table's CHECK constraints, and the foreign keys of any table, that involve a copied
/// column, rewritten onto the copies.
fn dup_constraints(c: &Ctx<'_>) -> Vec<DupConstraint> {
    let (tc, table) = (c.tc, c.table);
    let any_type_change = tc.copies.iter().any(|c| c.type_changed);
    let mut dups: Vec<DupConstraint> = Vec::new();
    for con in &tc.old.constraints {
        if con.kind != ConstraintKind::Check
            || c.without.contains(con.name.as_str())
            || con.name.as_str().starts_with("_pgbaton_")
            || !con.columns.iter().any(|col| c.copied(col))
        {
            continue;
        }
        let dup = dup_name(con.name.as_str());
        let body = rewrite_identifiers(&strip_not_valid(&con.definition), &c.renames);
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
        if c.without.contains(fk.name.as_str()) && holder == table {
            continue;
        }
        let local = holder == table && fk.columns.iter().any(|col| c.copied(col));
        let remote = fk
            .references
            .as_ref()
            .is_some_and(|(rt, cols)| rt == table && cols.iter().any(|col| c.copied(col)));
        if !local && !remote {
            continue;
        }
        let dup = dup_name(fk.name.as_str());
        let body = rewrite_foreign_key(
            &strip_not_valid(&fk.definition),
            if local { &c.renames } else { &[] },
            if remote { &c.renames } else { &[] },
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
    dups
}

/// start, after the trigger: the copies' NOT NULL checks and duplicated constraints, NOT VALID.
fn guards(c: &Ctx<'_>, dups: &[DupConstraint], plan: &mut PlanBuilder) {
    let table = c.table;
    let mut guards = Vec::new();
    for c in c.tc.copies.iter().filter(|c| !c.nullable) {
        guards.push(format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID",
            not_null_name(c.source.name.as_str()),
            c.target
        ));
    }
    guards.extend(
        dups.iter()
            .filter(|d| !d.referencing)
            .map(DupConstraint::add_sql),
    );
    if !guards.is_empty() {
        plan.guard(Step::transaction(
            format!("constraints of the copies in {table} (NOT VALID)"),
            Some(table.clone()),
            LockLevel::AccessExclusive,
            Work::Catalog,
            guards,
        ));
    }
}

/// Indexes involving a copied column, to build concurrently on the copies.
fn dup_indexes(c: &Ctx<'_>) -> Vec<DupIndex> {
    let (tc, table) = (c.tc, c.table);
    let mut indexes = Vec::new();
    for idx in &tc.old.indexes {
        let backing = idx
            .constraint
            .as_ref()
            .and_then(|n| tc.old.constraint(n.as_str()))
            .cloned();
        // An INVALID index is the leftover of a failed concurrent build, not part of the
        // schema: it is not carried over.
        if !idx.valid
            || c.without.contains(idx.name.as_str())
            || idx
                .constraint
                .as_ref()
                .is_some_and(|n| c.without.contains(n.as_str()))
            || idx.name.as_str().starts_with("_pgbaton_")
            || backing
                .as_ref()
                .is_some_and(|b| b.kind == ConstraintKind::Exclude)
        {
            continue;
        }
        let Some(sql) = rewrite_index(&idx.definition, &c.renames) else {
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
    indexes
}

/// complete, before the contract: validate the NOT NULL checks and duplicated constraints;
/// re-create the foreign keys that reference a copied column on the copy first.
fn validate(c: &Ctx<'_>, dups: &[DupConstraint], plan: &mut PlanBuilder) {
    let table = c.table;
    for c in c.tc.copies.iter().filter(|c| !c.nullable) {
        plan.validate(validate_step(
            table,
            &not_null_name(c.source.name.as_str()),
            false,
        ));
    }
    for d in dups {
        if d.referencing {
            plan.validate(Step::catalog(
                format!(
                    "re-create foreign key {} of {} on the copy (NOT VALID)",
                    d.original.name, d.table
                ),
                Some(d.table.clone()),
                LockLevel::ShareRowExclusive,
                d.add_sql(),
            ));
        }
        plan.validate(validate_step(&d.table, &d.dup, d.tolerant));
    }
}

/// contract, first part: the foreign keys elsewhere that hold on to an old column's index, the
/// old columns (with their sequence or identity moved to the copies), the copies' NOT NULL.
fn contract_columns(c: &Ctx<'_>, dups: &[DupConstraint]) -> Vec<String> {
    let table = c.table;
    let mut contract = Vec::new();
    for d in dups.iter().filter(|d| d.referencing) {
        contract.push(format!(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
            d.table, d.original.name
        ));
    }
    for c in &c.tc.copies {
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
    contract
}

/// contract, second part: the duplicated constraints and indexes get their names back (or
/// become the constraints they back), the replica identity, and last the copies' names.
fn contract_objects(c: &Ctx<'_>, dups: &[DupConstraint], indexes: &[DupIndex]) -> Vec<String> {
    let (tc, table) = (c.tc, c.table);
    let mut contract = Vec::new();
    for d in dups {
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
    for d in indexes {
        contract.push(match &d.constraint {
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
                sql
            }
            None => format!(
                "ALTER INDEX {} RENAME TO {}",
                QualName::new(table.schema.clone(), d.dup.clone()),
                d.original.name
            ),
        });
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
    contract
}

/// rollback: the re-created referencing foreign keys, then the copies (their indexes and
/// constraints go with them).
fn rollback(c: &Ctx<'_>, dups: &[DupConstraint], names: &str) -> Step {
    let table = c.table;
    let mut undo = Vec::new();
    for d in dups.iter().filter(|d| d.referencing) {
        undo.push(format!(
            "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
            d.table, d.dup
        ));
    }
    for c in &c.tc.copies {
        undo.push(format!(
            "ALTER TABLE {table} DROP COLUMN IF EXISTS {}",
            c.target
        ));
    }
    Step::transaction(
        format!("drop the copies of {names} from {table}"),
        Some(table.clone()),
        LockLevel::AccessExclusive,
        Work::Catalog,
        undo,
    )
}
