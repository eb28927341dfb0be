//! Steps: what a migration does, as data. Every operation declares its steps (SQL, the lock it
//! takes, the work done under it) before anything runs; the executor runs exactly these, `plan`
//! prints exactly these, and the journal records exactly these.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ident::{Ident, QualName, RawSql};

/// Table-level lock modes, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum LockLevel {
    /// No table lock (schema-level objects, functions, the state schema).
    None,
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
    /// User SQL (`sql` operations): pgbaton cannot know what it locks.
    Unknown,
}

impl LockLevel {
    /// PostgreSQL's name for the mode.
    pub fn name(self) -> &'static str {
        match self {
            LockLevel::None => "none",
            LockLevel::AccessShare => "ACCESS SHARE",
            LockLevel::RowShare => "ROW SHARE",
            LockLevel::RowExclusive => "ROW EXCLUSIVE",
            LockLevel::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockLevel::Share => "SHARE",
            LockLevel::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockLevel::Exclusive => "EXCLUSIVE",
            LockLevel::AccessExclusive => "ACCESS EXCLUSIVE",
            LockLevel::Unknown => "unknown (user SQL)",
        }
    }

    /// True when an application's INSERT/UPDATE/DELETE would wait on this lock.
    pub fn blocks_writes(self) -> bool {
        matches!(
            self,
            LockLevel::Share
                | LockLevel::ShareRowExclusive
                | LockLevel::Exclusive
                | LockLevel::AccessExclusive
                | LockLevel::Unknown
        )
    }

    /// The `pg_locks.mode` value, for tests that trace what a step really takes.
    pub fn pg_locks_mode(self) -> Option<&'static str> {
        Some(match self {
            LockLevel::AccessShare => "AccessShareLock",
            LockLevel::RowShare => "RowShareLock",
            LockLevel::RowExclusive => "RowExclusiveLock",
            LockLevel::ShareUpdateExclusive => "ShareUpdateExclusiveLock",
            LockLevel::Share => "ShareLock",
            LockLevel::ShareRowExclusive => "ShareRowExclusiveLock",
            LockLevel::Exclusive => "ExclusiveLock",
            LockLevel::AccessExclusive => "AccessExclusiveLock",
            LockLevel::None | LockLevel::Unknown => return None,
        })
    }
}

/// The work a step does while it holds its lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Work {
    /// Catalog only: milliseconds whatever the table size.
    Catalog,
    /// Reads the whole table (e.g. `VALIDATE CONSTRAINT`).
    Scan,
    /// Rewrites the whole table.
    Rewrite,
    /// A `CONCURRENTLY` build or drop: reads the table without blocking writes.
    Concurrent,
    /// Batched updates of existing rows, each batch its own short transaction.
    Batched,
    /// User SQL: unknown.
    Unknown,
}

impl Work {
    pub fn name(self) -> &'static str {
        match self {
            Work::Catalog => "catalog only",
            Work::Scan => "scans table",
            Work::Rewrite => "rewrites table",
            Work::Concurrent => "concurrent build",
            Work::Batched => "batched backfill",
            Work::Unknown => "user SQL",
        }
    }

    /// True when the work takes time proportional to the table size.
    pub fn is_heavy(self) -> bool {
        matches!(
            self,
            Work::Scan | Work::Rewrite | Work::Concurrent | Work::Batched
        )
    }
}

/// The migration phase a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Start,
    Complete,
    Rollback,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Start => "start",
            Phase::Complete => "complete",
            Phase::Rollback => "rollback",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the executor runs a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Statements run together in one transaction that starts with `SET LOCAL lock_timeout`;
    /// retried as a unit on lock timeout or deadlock. The journal row flips to done in the same
    /// transaction, so the step runs exactly once even across a crash.
    Transaction(Vec<String>),
    /// One statement PostgreSQL refuses inside a transaction block (`... CONCURRENTLY`).
    /// Must be idempotent (`IF EXISTS` / `IF NOT EXISTS`): a crash can leave it half-journaled.
    NonTransactional(String),
    /// `CREATE [UNIQUE] INDEX CONCURRENTLY`: an INVALID index of that name left by a failed build
    /// is dropped concurrently first, a valid one is kept, then the index is built.
    CreateIndexConcurrently { index: QualName, sql: String },
    /// Batched, checkpointed, throttled filling of existing rows.
    Backfill(BackfillSpec),
    /// A user's `sql` (`up`, `down` or `onComplete`), passed through as written, in one transaction.
    UserSql(RawSql),
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// What the step does, for `plan`, progress and errors.
    pub title: String,
    /// The table whose lock matters, when there is one.
    pub table: Option<QualName>,
    /// The strongest table lock the step takes.
    pub lock: LockLevel,
    /// The work done under that lock.
    pub work: Work,
    pub action: Action,
}

impl Step {
    /// A catalog-only change in its own short transaction.
    pub fn catalog(
        title: impl Into<String>,
        table: Option<QualName>,
        lock: LockLevel,
        sql: impl Into<String>,
    ) -> Step {
        Step {
            title: title.into(),
            table,
            lock,
            work: Work::Catalog,
            action: Action::Transaction(vec![sql.into()]),
        }
    }

    /// A step of several statements in one transaction.
    pub fn transaction(
        title: impl Into<String>,
        table: Option<QualName>,
        lock: LockLevel,
        work: Work,
        sql: Vec<String>,
    ) -> Step {
        Step {
            title: title.into(),
            table,
            lock,
            work,
            action: Action::Transaction(sql),
        }
    }

    /// A statement outside any transaction (`CONCURRENTLY`).
    pub fn concurrent(
        title: impl Into<String>,
        table: Option<QualName>,
        lock: LockLevel,
        sql: impl Into<String>,
    ) -> Step {
        Step {
            title: title.into(),
            table,
            lock,
            work: Work::Concurrent,
            action: Action::NonTransactional(sql.into()),
        }
    }

    /// A `CREATE [UNIQUE] INDEX CONCURRENTLY` of `index` on `table`, outside any transaction.
    pub fn create_index_concurrently(
        title: String,
        table: QualName,
        index: QualName,
        sql: String,
    ) -> Step {
        Step {
            title,
            table: Some(table),
            lock: LockLevel::ShareUpdateExclusive,
            work: Work::Concurrent,
            action: Action::CreateIndexConcurrently { index, sql },
        }
    }

    /// The SQL the step runs, for display (a backfill renders a description of its batches).
    pub fn statements(&self) -> Vec<String> {
        match &self.action {
            Action::Transaction(sql) => sql.clone(),
            Action::NonTransactional(sql) => vec![sql.clone()],
            Action::CreateIndexConcurrently { sql, .. } => vec![sql.clone()],
            Action::Backfill(spec) => vec![spec.describe()],
            Action::UserSql(sql) => vec![sql.to_string()],
        }
    }

    /// The one rule of LOCKS.md: nothing scans, rewrites or builds while holding a lock that
    /// blocks the application. Returns a reason when this step breaks it.
    pub fn lock_violation(&self) -> Option<String> {
        if self.lock.blocks_writes() && self.lock != LockLevel::Unknown && self.work.is_heavy() {
            return Some(format!(
                "step \"{}\" would {} under {}",
                self.title,
                self.work.name(),
                self.lock.name()
            ));
        }
        None
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}  [lock: {}; {}",
            self.title,
            self.lock.name(),
            self.work.name()
        )?;
        if let Some(t) = &self.table {
            write!(f, "; on {t}")?;
        }
        match self.action {
            Action::NonTransactional(_) | Action::CreateIndexConcurrently { .. } => {
                f.write_str("; outside a transaction")?
            }
            _ => {}
        }
        f.write_str("]")?;
        for sql in self.statements() {
            for line in sql.lines() {
                write!(f, "\n      {line}")?;
            }
        }
        Ok(())
    }
}

/// Which key the backfill walks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillKey {
    /// Keyset pagination on the primary key (or a unique NOT NULL key), physical column names.
    Columns(Vec<Ident>),
    /// ctid page ranges (TID range scans), for tables without such a key.
    Ctid,
}

impl BackfillKey {
    /// The key a backfill of `table` walks: its [`crate::schema::Table::backfill_key`], else
    /// ctid ranges.
    pub fn for_table(table: &crate::schema::Table) -> BackfillKey {
        match table.backfill_key() {
            Some(columns) => BackfillKey::Columns(columns),
            None => BackfillKey::Ctid,
        }
    }
}

/// One column the backfill fills: `target := expr`, where `expr` is the user's `up` expression
/// written in the old version's column names (see [`BackfillSpec::scope`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub target: Ident,
    pub expr: RawSql,
}

/// What a backfill does; the backfill engine decides batch sizes and throttling at run time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillSpec {
    pub table: QualName,
    pub key: BackfillKey,
    /// The names `up` expressions may use, mapped to physical columns: (name, physical column).
    /// When every pair is the identity the expressions run directly in the UPDATE.
    pub scope: Vec<(Ident, Ident)>,
    pub assignments: Vec<Assignment>,
    /// Boolean column the dual-write triggers set on every row a live write touches; the
    /// backfill skips those rows, so it never overwrites a value the application wrote.
    pub marker: Ident,
    /// The write window: set when the backfill runs before the table's dual-write trigger is
    /// installed (see [`WriteWindow`]). `None`: the trigger is in place before the backfill
    /// (plans stored by an earlier pgbaton, tests of the engine alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WriteWindow>,
    /// Which pass this is: the fill of every existing row, or the catch-up after it.
    #[serde(default, skip_serializing_if = "BackfillPass::is_fill")]
    pub pass: BackfillPass,
}

/// The backfill's trigger-less write window.
///
/// A `BEFORE UPDATE` row trigger costs every updated row a tuple lock (and its WAL record)
/// before PostgreSQL even looks at whether the trigger is enabled, so a backfill that runs with
/// the dual-write trigger installed pays for it even though the trigger never fires for it
/// (≈10% of its time, measured). So the fill runs first, without the dual-write trigger (and
/// without the marker column, which it would otherwise write into every row); then the trigger
/// is installed (its lock waits for every writer in flight, so every later write goes through
/// it), and a catch-up pass fixes the rows the old version wrote meanwhile:
///
/// - every batch records its transaction id in the state schema (`backfill_xids`): a row whose
///   `xmin` is none of them, and whose marker is not set, was written since by someone else
///   without the trigger (an update, or an insert);
/// - a `BEFORE INSERT OR UPDATE ... FOR EACH STATEMENT` trigger on the table (no per-row
///   cost) bumps the `writes` sequence for every statement that is not a backfill's, so a
///   table nobody wrote during the fill needs no catch-up scan at all.
///
/// Only the old version can write during the window: the new version's schema is created
/// after every backfill. The new version's `NOT VALID` constraints (guards) are added after
/// the trigger too: an old-version insert during the window leaves the new columns empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteWindow {
    /// Sequence bumped by every statement that wrote the table during the window.
    pub writes: QualName,
}

/// The two passes of a backfill with a [`WriteWindow`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillPass {
    /// Every row that existed when the backfill started.
    #[default]
    Fill,
    /// After the dual-write trigger is installed: the rows written during the fill (a ctid walk
    /// over the whole table, skipped when the `writes` sequence was never bumped).
    CatchUp,
}

impl BackfillPass {
    pub fn is_fill(&self) -> bool {
        *self == BackfillPass::Fill
    }

    /// The pass's name in the state schema and in reports.
    pub fn as_str(&self) -> &'static str {
        match self {
            BackfillPass::Fill => "fill",
            BackfillPass::CatchUp => "catch_up",
        }
    }
}

impl BackfillSpec {
    pub fn describe(&self) -> String {
        let sets = self
            .assignments
            .iter()
            .map(|a| format!("{} = {}", a.target, a.expr))
            .collect::<Vec<_>>()
            .join(", ");
        if self.pass == BackfillPass::CatchUp {
            return format!(
                "UPDATE {} SET {sets} WHERE NOT {} AND xmin is no backfill batch's -- ctid \
                 page-range batches over the rows written during the fill, only if the table was \
                 written meanwhile",
                self.table, self.marker
            );
        }
        let filter = if self.window.is_some() {
            String::new()
        } else {
            format!(" WHERE NOT {}", self.marker)
        };
        let key = match &self.key {
            // Which walk a single column gets depends on its type and index (run time).
            BackfillKey::Columns(cols) if cols.len() == 1 => format!(
                "batches on ({}): value ranges for an integer key, else keyset",
                cols[0]
            ),
            BackfillKey::Columns(cols) => format!(
                "keyset batches on ({})",
                cols.iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            BackfillKey::Ctid => "ctid page-range batches".to_string(),
        };
        format!(
            "UPDATE {} SET {sets}{filter} -- {key}, adaptive batch size, checkpointed",
            self.table
        )
    }
}
