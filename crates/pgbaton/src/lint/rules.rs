//! What `lint` judges in each SQL statement: the lock it takes (LOCKS.md), the work it does under
//! that lock, whether it breaks the release that is still running, and the findings.

use crate::convert::Catalog;
use crate::sql::model::{Change, ColumnSpec, ConstraintKind};
use crate::step::LockLevel;

/// The work a statement does under its lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Work {
    /// Catalog only.
    Catalog,
    /// Reads every row (a validation).
    Scan,
    /// Writes every row again (a new relfilenode).
    Rewrite,
    /// Builds an index.
    Build,
    /// Changes rows (DML).
    Rows,
}

/// A hazard class, with its rule id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// `ALTER COLUMN TYPE` that rewrites the table under ACCESS EXCLUSIVE.
    TypeChangeRewrite,
    /// `CREATE INDEX` without `CONCURRENTLY` on an existing table.
    IndexNotConcurrent,
    /// A foreign key validated as it is added.
    ForeignKeyValidated,
    /// A CHECK validated as it is added.
    CheckValidated,
    /// `SET NOT NULL` scanning under ACCESS EXCLUSIVE.
    SetNotNull,
    /// A column added with a volatile default (or a stored generated column, or a serial).
    VolatileDefault,
    /// A NOT NULL column without a default added to a table with rows.
    NotNullWithoutDefault,
    /// `ADD UNIQUE` / `ADD PRIMARY KEY` building their index under ACCESS EXCLUSIVE.
    UniqueBuild,
    /// `ADD EXCLUDE`: no way to build it without blocking.
    Exclusion,
    /// A rename the running release does not know.
    RenameInUse,
    /// A drop of something the running release still uses.
    DropInUse,
    /// An `UPDATE`/`DELETE` of every row (or of every NULL: a backfill) in one transaction.
    MassUpdate,
    /// `DROP INDEX` without `CONCURRENTLY`.
    DropIndexNotConcurrent,
    /// A statement that rewrites or locks the whole table (VACUUM FULL, CLUSTER, ...).
    TableRewrite,
    /// `TRUNCATE`.
    Truncate,
    /// `ALTER DOMAIN .. ADD CONSTRAINT`: scans every column of the type.
    DomainConstraint,
    /// A `CONCURRENTLY` statement inside `BEGIN`: fails.
    ConcurrentInTransaction,
    /// (pgroll files) a volatile or stable function in `up`/`down`.
    NonImmutableUpDown,
    /// (pgroll files) a sub-select in `up`/`down`: runs once per row.
    SubselectPerRow,
    /// (pgroll files) a placeholder left by `convert`.
    Placeholder,
    /// A statement the parser refuses.
    SyntaxError,
}

impl Rule {
    pub const ALL: &'static [Rule] = &[
        Rule::TypeChangeRewrite,
        Rule::IndexNotConcurrent,
        Rule::ForeignKeyValidated,
        Rule::CheckValidated,
        Rule::SetNotNull,
        Rule::VolatileDefault,
        Rule::NotNullWithoutDefault,
        Rule::UniqueBuild,
        Rule::Exclusion,
        Rule::RenameInUse,
        Rule::DropInUse,
        Rule::MassUpdate,
        Rule::DropIndexNotConcurrent,
        Rule::TableRewrite,
        Rule::Truncate,
        Rule::DomainConstraint,
        Rule::ConcurrentInTransaction,
        Rule::NonImmutableUpDown,
        Rule::SubselectPerRow,
        Rule::Placeholder,
        Rule::SyntaxError,
    ];

    /// The rule's id, as inline comments and the config file name it.
    pub fn id(self) -> &'static str {
        match self {
            Rule::TypeChangeRewrite => "type-change-rewrite",
            Rule::IndexNotConcurrent => "index-not-concurrent",
            Rule::ForeignKeyValidated => "foreign-key-validated",
            Rule::CheckValidated => "check-validated",
            Rule::SetNotNull => "set-not-null",
            Rule::VolatileDefault => "volatile-default",
            Rule::NotNullWithoutDefault => "not-null-without-default",
            Rule::UniqueBuild => "unique-build",
            Rule::Exclusion => "exclusion-constraint",
            Rule::RenameInUse => "rename-in-use",
            Rule::DropInUse => "drop-in-use",
            Rule::MassUpdate => "mass-update",
            Rule::DropIndexNotConcurrent => "drop-index-not-concurrent",
            Rule::TableRewrite => "table-rewrite",
            Rule::Truncate => "truncate",
            Rule::DomainConstraint => "domain-constraint",
            Rule::ConcurrentInTransaction => "concurrent-in-transaction",
            Rule::NonImmutableUpDown => "non-immutable-up-down",
            Rule::SubselectPerRow => "subselect-per-row",
            Rule::Placeholder => "placeholder",
            Rule::SyntaxError => "syntax-error",
        }
    }

    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.iter().copied().find(|r| r.id() == id.trim())
    }
}

/// One hazard of one statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub rule: Rule,
    /// Why it is dangerous.
    pub message: String,
    pub lock: LockLevel,
    pub work: Work,
    pub breaks_release: bool,
    /// The pgbaton operation(s) doing the same change safely, as YAML to paste.
    pub fix: Option<String>,
}

impl serde::Serialize for Finding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("rule", self.rule.id())?;
        m.serialize_entry("message", &self.message)?;
        m.serialize_entry("lock", self.lock.name())?;
        m.serialize_entry("work", &self.work)?;
        m.serialize_entry("breaks_running_release", &self.breaks_release)?;
        m.serialize_entry("fix", &self.fix)?;
        m.end()
    }
}

/// What lint knows around a statement.
pub struct Context<'a> {
    pub catalog: &'a Catalog,
    pub pg_version: u32,
    pub in_transaction: bool,
    /// `(table, column)` pairs with a validated `CHECK (col IS NOT NULL)` seen in the file.
    pub not_null_checks: &'a [(String, String)],
}

/// Functions whose value changes per call: a default using one is evaluated per row, so
/// `ADD COLUMN .. DEFAULT f()` rewrites the table.
pub const VOLATILE: &[&str] = &[
    "random",
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "setseed",
    "txid_current",
    "random_normal",
    "uuidv7",
    "uuidv4",
];

/// Functions that are not immutable but constant within a statement (`now()`): fine as a
/// default, not in an `up`/`down` (batches and the trigger see different values).
pub const STABLE: &[&str] = &[
    "now",
    "statement_timestamp",
    "transaction_timestamp",
    "current_setting",
    "to_char",
    "age",
];

fn finding(rule: Rule, lock: LockLevel, work: Work, message: String) -> Finding {
    Finding {
        rule,
        message,
        lock,
        work,
        breaks_release: matches!(rule, Rule::RenameInUse | Rule::DropInUse | Rule::Truncate),
        fix: None,
    }
}

/// The volatile function `expr` calls, if any.
fn volatile(expr: &str) -> Option<String> {
    let e = crate::sql::parse_expr(expr).ok()?;
    crate::sql::function_calls(&e.json())
        .into_iter()
        .filter_map(|(name, _)| name.last().cloned())
        .find(|n| VOLATILE.contains(&n.as_str()))
}

fn is_serial(type_: &str) -> bool {
    crate::ops::common::serial_base_type(type_).is_some()
}

/// The findings of one change, and its lock and work.
pub fn judge(change: &Change, cx: &Context<'_>) -> (LockLevel, Work, Vec<Finding>) {
    use LockLevel as L;
    let new = |t: &str| cx.catalog.created_here(t);
    let ael = L::AccessExclusive;
    let mut out = Vec::new();
    let (lock, work) = match change {
        Change::AddColumn { table, column } => add_column(table, column, cx, &mut out),
        Change::AlterType { .. } | Change::SetNotNull { .. } => column_change(change, cx, &mut out),
        Change::AddConstraint { .. } => add_constraint(change, cx, &mut out),
        Change::CreateIndex { .. } | Change::DropIndex { .. } => index_change(change, cx, &mut out),
        Change::RenameColumn { table, .. } | Change::DropColumn { table, .. } if !new(table) => {
            breaking(change, &mut out)
        }
        Change::RenameTable { from: table, .. } | Change::DropTable { table } if !new(table) => {
            breaking(change, &mut out)
        }
        Change::Update { .. }
        | Change::Delete { .. }
        | Change::Truncate { .. }
        | Change::Rewrite { .. }
        | Change::DomainConstraint { .. } => data_change(change, cx, &mut out),
        Change::ValidateConstraint { .. } => (L::ShareUpdateExclusive, Work::Scan),
        Change::Insert { .. } => (L::RowExclusive, Work::Rows),
        Change::Default { .. } | Change::DropNotNull { .. } | Change::DropConstraint { .. } => {
            (ael, Work::Catalog)
        }
        Change::CreateTable { .. } => (L::None, Work::Catalog),
        Change::RenameColumn { .. }
        | Change::RenameTable { .. }
        | Change::RenameConstraint { .. }
        | Change::DropColumn { .. }
        | Change::DropTable { .. } => (ael, Work::Catalog),
        Change::Other { table: Some(_), .. } => (ael, Work::Catalog),
        Change::Begin | Change::Commit | Change::Set(_) | Change::Other { .. } => {
            (L::None, Work::Catalog)
        }
    };
    (lock, work, out)
}

/// `ALTER COLUMN TYPE` and `SET NOT NULL`.
fn column_change(change: &Change, cx: &Context<'_>, out: &mut Vec<Finding>) -> (LockLevel, Work) {
    use LockLevel as L;
    let new = |t: &str| cx.catalog.created_here(t);
    let ael = L::AccessExclusive;
    match change {
        Change::AlterType {
            table,
            column,
            type_,
            ..
        } => {
            let free = cx
                .catalog
                .column(table, column)
                .is_some_and(|c| binary_coercible(&c.type_, type_));
            if !new(table) && !free {
                out.push(finding(Rule::TypeChangeRewrite, ael, Work::Rewrite, format!(
                    "changing the type of {table}.{column} to {type_} rewrites the table and rebuilds its indexes under ACCESS EXCLUSIVE: no reads or writes until it is done, and the running release may not handle the new type"
                )));
            }
            (
                ael,
                if free || new(table) {
                    Work::Catalog
                } else {
                    Work::Rewrite
                },
            )
        }
        Change::SetNotNull { table, column } => {
            let proven = cx.pg_version >= 12
                && cx
                    .not_null_checks
                    .iter()
                    .any(|(t, c)| t == table && c == column);
            if !new(table) && !proven {
                out.push(finding(Rule::SetNotNull, ael, Work::Scan, format!(
                    "SET NOT NULL on {table}.{column} scans the whole table under ACCESS EXCLUSIVE (no reads or writes meanwhile), and fails if the running release writes a NULL"
                )));
            }
            (
                ael,
                if proven || new(table) {
                    Work::Catalog
                } else {
                    Work::Scan
                },
            )
        }
        _ => (L::None, Work::Catalog),
    }
}

/// `ADD CONSTRAINT`.
fn add_constraint(change: &Change, cx: &Context<'_>, out: &mut Vec<Finding>) -> (LockLevel, Work) {
    use LockLevel as L;
    let new = |t: &str| cx.catalog.created_here(t);
    let ael = L::AccessExclusive;
    match change {
        Change::AddConstraint { table, constraint } => {
            let t = table.as_str();
            match &constraint.kind {
                ConstraintKind::ForeignKey { table: rt, .. } => {
                    if !constraint.not_valid && !new(t) {
                        out.push(finding(Rule::ForeignKeyValidated, L::ShareRowExclusive, Work::Scan, format!(
                            "adding a foreign key to {t} without NOT VALID scans the table while holding SHARE ROW EXCLUSIVE on {t} and {rt}: writes to both wait"
                        )));
                    }
                    (
                        L::ShareRowExclusive,
                        if constraint.not_valid {
                            Work::Catalog
                        } else {
                            Work::Scan
                        },
                    )
                }
                ConstraintKind::Check(_) => {
                    if !constraint.not_valid && !new(t) {
                        out.push(finding(Rule::CheckValidated, ael, Work::Scan, format!(
                            "adding a CHECK to {t} without NOT VALID scans the whole table under ACCESS EXCLUSIVE: no reads or writes until it is done"
                        )));
                    }
                    (
                        ael,
                        if constraint.not_valid {
                            Work::Catalog
                        } else {
                            Work::Scan
                        },
                    )
                }
                ConstraintKind::Unique {
                    using_index: None, ..
                }
                | ConstraintKind::PrimaryKey {
                    using_index: None, ..
                } => {
                    if !new(t) {
                        out.push(finding(Rule::UniqueBuild, ael, Work::Build, format!(
                            "adding a UNIQUE or PRIMARY KEY constraint to {t} builds its index under ACCESS EXCLUSIVE: no reads or writes until it is built"
                        )));
                    }
                    (ael, Work::Build)
                }
                ConstraintKind::Exclude => {
                    if !new(t) {
                        out.push(finding(Rule::Exclusion, ael, Work::Build, format!(
                            "an EXCLUDE constraint on {t} builds its index under ACCESS EXCLUSIVE, and PostgreSQL has no concurrent way to add one"
                        )));
                    }
                    (ael, Work::Build)
                }
                _ => (ael, Work::Catalog),
            }
        }
        _ => (L::None, Work::Catalog),
    }
}

/// `CREATE INDEX` and `DROP INDEX`.
fn index_change(change: &Change, cx: &Context<'_>, out: &mut Vec<Finding>) -> (LockLevel, Work) {
    use LockLevel as L;
    let new = |t: &str| cx.catalog.created_here(t);
    let ael = L::AccessExclusive;
    match change {
        Change::CreateIndex {
            table,
            concurrently,
            ..
        } => {
            if *concurrently {
                if cx.in_transaction {
                    out.push(finding(Rule::ConcurrentInTransaction, L::ShareUpdateExclusive, Work::Build,
                        "CREATE INDEX CONCURRENTLY cannot run inside a transaction block: the migration fails here".into()));
                }
                (L::ShareUpdateExclusive, Work::Build)
            } else {
                if !new(table) {
                    out.push(finding(Rule::IndexNotConcurrent, L::Share, Work::Build, format!(
                        "CREATE INDEX without CONCURRENTLY holds SHARE on {table} for the whole build: every INSERT, UPDATE and DELETE waits"
                    )));
                }
                (L::Share, Work::Build)
            }
        }
        Change::DropIndex { name, concurrently } => {
            if *concurrently {
                if cx.in_transaction {
                    out.push(finding(Rule::ConcurrentInTransaction, ael, Work::Catalog,
                        "DROP INDEX CONCURRENTLY cannot run inside a transaction block: the migration fails here".into()));
                }
                (L::ShareUpdateExclusive, Work::Catalog)
            } else {
                out.push(finding(Rule::DropIndexNotConcurrent, ael, Work::Catalog, format!(
                    "DROP INDEX {name} without CONCURRENTLY takes ACCESS EXCLUSIVE on its table: it waits behind every running query and everything queues behind it"
                )));
                (ael, Work::Catalog)
            }
        }
        _ => (L::None, Work::Catalog),
    }
}

/// Renames and drops of what the running release uses (on tables it knows).
fn breaking(change: &Change, out: &mut Vec<Finding>) -> (LockLevel, Work) {
    use LockLevel as L;
    let ael = L::AccessExclusive;
    match change {
        Change::RenameColumn { table, from, to } => {
            out.push(finding(Rule::RenameInUse, ael, Work::Catalog, format!(
                "renaming {table}.{from} to {to} breaks the release that is still running: its queries name {from}"
            )));
            (ael, Work::Catalog)
        }
        Change::RenameTable { from, to } => {
            out.push(finding(Rule::RenameInUse, ael, Work::Catalog, format!(
                "renaming table {from} to {to} breaks the release that is still running: its queries name {from}"
            )));
            (ael, Work::Catalog)
        }
        Change::DropColumn { table, column } => {
            out.push(finding(Rule::DropInUse, ael, Work::Catalog, format!(
                "dropping {table}.{column} breaks the release that is still running if it reads or writes the column (and the data is gone)"
            )));
            (ael, Work::Catalog)
        }
        Change::DropTable { table } => {
            out.push(finding(Rule::DropInUse, ael, Work::Catalog, format!(
                "dropping table {table} breaks the release that is still running if it uses the table (and the data is gone)"
            )));
            (ael, Work::Catalog)
        }
        _ => (L::None, Work::Catalog),
    }
}

/// Row changes and whole-table statements.
fn data_change(change: &Change, cx: &Context<'_>, out: &mut Vec<Finding>) -> (LockLevel, Work) {
    use LockLevel as L;
    let new = |t: &str| cx.catalog.created_here(t);
    let ael = L::AccessExclusive;
    match change {
        Change::Update { table, filter, .. } | Change::Delete { table, filter } => {
            let whole = filter.as_deref().is_none_or(|f| f.contains(" IS NULL"));
            if !new(table) && whole {
                let verb = if matches!(change, Change::Update { .. }) {
                    "UPDATE"
                } else {
                    "DELETE"
                };
                out.push(finding(Rule::MassUpdate, L::RowExclusive, Work::Rows, format!(
                    "{verb} of {} rows of {table} in one transaction: every row it touches stays locked until it commits, and it bloats the table",
                    if filter.is_some() { "all matching" } else { "all" }
                )));
            }
            (L::RowExclusive, Work::Rows)
        }
        Change::Truncate { tables } => {
            let existing: Vec<&String> = tables.iter().filter(|t| !new(t)).collect();
            if !existing.is_empty() {
                out.push(finding(Rule::Truncate, ael, Work::Catalog, format!(
                    "TRUNCATE {} takes ACCESS EXCLUSIVE and deletes every row the running release uses",
                    existing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
            (ael, Work::Catalog)
        }
        Change::Rewrite { table, what } => {
            if table.as_deref().is_none_or(|t| !new(t)) {
                out.push(finding(Rule::TableRewrite, ael, Work::Rewrite, format!(
                    "{what} holds ACCESS EXCLUSIVE on {} while it works through the whole table: no reads or writes meanwhile",
                    table.as_deref().unwrap_or("the table")
                )));
            }
            (ael, Work::Rewrite)
        }
        Change::DomainConstraint { domain } => {
            out.push(finding(Rule::DomainConstraint, L::Share, Work::Scan, format!(
                "ALTER DOMAIN {domain} ADD CONSTRAINT scans every column of that type in every table, blocking writes to them (add it NOT VALID, then VALIDATE)"
            )));
            (L::Share, Work::Scan)
        }
        _ => (L::None, Work::Catalog),
    }
}

fn add_column(
    table: &str,
    c: &ColumnSpec,
    cx: &Context<'_>,
    out: &mut Vec<Finding>,
) -> (LockLevel, Work) {
    let ael = LockLevel::AccessExclusive;
    if cx.catalog.created_here(table) {
        return (ael, Work::Catalog);
    }
    let rewrite = if let Some(v) = c.default.as_deref().and_then(volatile) {
        Some(format!("its default calls {v}(), which is volatile"))
    } else if is_serial(&c.type_) {
        Some(format!("{} draws a nextval() per row", c.type_))
    } else if c.generated.is_some() {
        Some("a stored generated column is computed for every row".to_string())
    } else if c.identity {
        Some("an identity column draws a value per row".to_string())
    } else if c.default.is_some() && cx.pg_version < 11 {
        Some("before PostgreSQL 11 every default is written into every row".to_string())
    } else {
        None
    };
    if let Some(why) = rewrite {
        out.push(finding(
            Rule::VolatileDefault,
            ael,
            Work::Rewrite,
            format!(
                "adding {table}.{} rewrites the whole table under ACCESS EXCLUSIVE: {why}",
                c.name
            ),
        ));
        return (ael, Work::Rewrite);
    }
    if c.not_null && c.default.is_none() && !c.primary_key {
        out.push(finding(Rule::NotNullWithoutDefault, ael, Work::Scan, format!(
            "adding {table}.{} NOT NULL without a default fails on a table with rows, and the running release's INSERTs do not set it",
            c.name
        )));
    }
    if c.references.is_some() {
        out.push(finding(
            Rule::ForeignKeyValidated,
            LockLevel::ShareRowExclusive,
            Work::Scan,
            format!(
                "the REFERENCES of {table}.{} is validated as it is added, holding SHARE ROW EXCLUSIVE on both tables",
                c.name
            ),
        ));
    }
    if c.unique || c.primary_key {
        out.push(finding(
            Rule::UniqueBuild,
            ael,
            Work::Build,
            format!(
                "the UNIQUE/PRIMARY KEY of {table}.{} builds an index under ACCESS EXCLUSIVE",
                c.name
            ),
        ));
    }
    if c.check.is_some() {
        out.push(finding(
            Rule::CheckValidated,
            ael,
            Work::Scan,
            format!(
                "the CHECK of {table}.{} is validated under ACCESS EXCLUSIVE as it is added",
                c.name
            ),
        ));
    }
    (ael, Work::Catalog)
}

/// True when a change from type `from` to `to` needs no rewrite (PostgreSQL's binary-coercible
/// casts with a typmod that does not shrink), as far as the spelled types tell.
pub fn binary_coercible(from: &str, to: &str) -> bool {
    let norm = |t: &str| -> (String, Option<Vec<u32>>) {
        let t = t.trim().to_ascii_lowercase();
        let (base, mods) = match t.find('(') {
            Some(i) => (
                t[..i].trim().to_string(),
                Some(
                    t[i + 1..t.rfind(')').unwrap_or(t.len())]
                        .split(',')
                        .filter_map(|m| m.trim().parse().ok())
                        .collect(),
                ),
            ),
            None => (t.clone(), None),
        };
        let base = match base.as_str() {
            "character varying" | "varchar" | "pg_catalog.varchar" => "varchar",
            "text" | "pg_catalog.text" => "text",
            "numeric" | "decimal" | "pg_catalog.numeric" => "numeric",
            "pg_catalog.timestamp" | "timestamp" | "timestamp without time zone" => "timestamp",
            "pg_catalog.timestamptz" | "timestamptz" | "timestamp with time zone" => "timestamptz",
            other => return (other.to_string(), mods),
        };
        (base.to_string(), mods)
    };
    let ((fb, fm), (tb, tm)) = (norm(from), norm(to));
    let wider = |fm: Option<Vec<u32>>, tm: Option<Vec<u32>>| match (fm, tm) {
        (_, None) => true,
        (Some(f), Some(t)) => t.first() >= f.first(),
        (None, Some(_)) => false,
    };
    match (fb.as_str(), tb.as_str()) {
        ("varchar", "text") => true,
        ("varchar", "varchar") | ("timestamp", "timestamp") | ("timestamptz", "timestamptz") => {
            wider(fm, tm)
        }
        ("text", "varchar") => tm.is_none(),
        ("numeric", "numeric") => {
            let scale = |m: &Option<Vec<u32>>| m.as_ref().and_then(|m| m.get(1).copied());
            (tm.is_none() || scale(&fm).unwrap_or(0) == scale(&tm).unwrap_or(0)) && wider(fm, tm)
        }
        (a, b) => a == b && fm == tm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_coercible_types() {
        assert!(binary_coercible("varchar(50)", "varchar(100)"));
        assert!(binary_coercible("character varying(50)", "text"));
        assert!(binary_coercible("numeric(10,2)", "numeric(12,2)"));
        assert!(!binary_coercible("varchar(100)", "varchar(50)"));
        assert!(!binary_coercible("int", "bigint"));
        assert!(!binary_coercible("numeric(10,2)", "numeric(12,3)"));
        assert!(!binary_coercible("text", "varchar(10)"));
    }
}
