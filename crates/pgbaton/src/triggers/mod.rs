//! Dual-write triggers: while a migration is active, a write through either version keeps both
//! physical columns right. `up` runs for writers of the old version, `down` for writers of the new.
//! This module only renders SQL from a [`TriggerSpec`]; the executor runs it as a step.
//!
//! # What the trigger does
//!
//! One `BEFORE INSERT OR UPDATE ... FOR EACH ROW` trigger per table, named [`TRIGGER_NAME`], runs
//! a PL/pgSQL function named `_pgbaton_dw_<table>` in the table's schema. For each row it:
//!
//! 1. decides the writer's version: `coalesce(nullif(current_setting('pgbaton.version', true), ''),
//!    current_schema())` — the transaction's `SET LOCAL pgbaton.version` (works behind a pooler in
//!    transaction mode), else the first existing schema of the effective search path. The writer
//!    is the new version when that is the version schema or the migration name; anything else
//!    (the base schema, an older version schema) is the old version. The `search_path` string is
//!    never matched as a whole.
//! 2. keeps the other version's columns right:
//!    - old-version writer: `NEW.<new_column> := (up)`, with `up` evaluated over variables named
//!      as the old version names its columns (so `up` is written exactly as in the migration file);
//!    - new-version writer: `NEW.<old_column> := (down)` for the rules that have a `down`, over the
//!      new version's names; then the same for the [`DownOnlyRule`]s (columns the new version
//!      dropped), reading the row as the rules above left it.
//! 3. sets the marker column (`_pgbaton_touched`) to true, so the backfill skips the row and never
//!    overwrites a value a live write produced.
//!
//! Which rows get recomputed, precisely (each case is a test in `tests/triggers.rs`):
//! - INSERT: every rule of the writer's direction.
//! - UPDATE of a row no live write has touched yet (marker not true): its old columns are the
//!   truth (its new columns may not be backfilled yet). An old-version writer recomputes every new
//!   column; a new-version writer derives each new column it did not set from `up`, and computes
//!   `down` for each one it did set.
//! - UPDATE of a touched row (both sides are right): only when a column the writer's version sees
//!   changed (compared by binary image, `*<>`, so types without `=` such as `json` work), and then
//!   only the columns whose `up` (or `down`) result changed: `up(NEW)` is compared with `up(OLD)`.
//!   A no-op update, or an update of an unrelated column, never clobbers a value the other
//!   version wrote (`up(down(x))` need not be `x`).
//! - Down-only rules (a column the new version dropped): never for old-version writers. A
//!   new-version INSERT sets the column from `down`; a new-version UPDATE (touched row or not:
//!   the column was never derived from anything, so the row's own value is the truth) sets it
//!   only when `down` over the new row differs from `down` over the old row, so a constant
//!   `down` never resets a value and a `down` that reads a changed column recomputes it.
//!
//! The trigger has a `WHEN (current_setting('pgbaton.backfill', true) IS DISTINCT FROM 'on')`
//! clause, evaluated by the executor without entering PL/pgSQL: the backfill sets that setting
//! when it cannot use `session_replication_role = replica` (which skips the trigger entirely).
//! User triggers keep working; the names here start with `_pgbaton_`, a prefix users do not use.

pub mod version_writes;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::ident::{Ident, Literal, QualName, RawSql};
use crate::step::{LockLevel, Step, Work, WriteWindow};

/// The name of the dual-write trigger on every table that has one.
pub const TRIGGER_NAME: &str = "_pgbaton_dual_write";
/// Prefix of the trigger function's name (`_pgbaton_dw_<table>`, in the table's schema).
pub const FUNCTION_PREFIX: &str = "_pgbaton_dw_";
/// `SET LOCAL pgbaton.version = '<version schema or migration name>'` picks the writer's version
/// for one transaction.
pub const VERSION_SETTING: &str = "pgbaton.version";
/// Set to `on` by the backfill (when it cannot use `session_replication_role`): the trigger's
/// `WHEN` clause then skips the row without calling the function.
pub const BACKFILL_SETTING: &str = "pgbaton.backfill";

/// Everything needed to render one table's dual-write trigger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerSpec {
    pub table: QualName,
    /// The migration name (`pgbaton.version` may name it) and its version schema.
    pub migration: String,
    pub version_schema: Ident,
    /// The old version's columns: (name as the old version sees it, physical column).
    pub old_scope: Vec<(Ident, Ident)>,
    /// The new version's columns: (name as the new version sees it, physical column).
    pub new_scope: Vec<(Ident, Ident)>,
    pub rules: Vec<DualWriteRule>,
    /// Columns only the old version has (`drop_column` with `down`), filled for rows the new
    /// version writes. Stored plans from before this field read as none.
    #[serde(default)]
    pub down_only: Vec<DownOnlyRule>,
    /// The marker column set on every row a live write touches (see `BackfillSpec::marker`).
    pub marker: Ident,
}

/// A column only the old version sees (the new version dropped it), kept right for the old
/// version while both run: rows the new version writes get `old_column := (down)`, evaluated
/// over the new version's names. Old-version writes are left alone (they write the column
/// themselves), and nothing is backfilled (existing rows already hold their values).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownOnlyRule {
    /// The physical column the old version reads and writes.
    pub old_column: Ident,
    /// Computes `old_column` from a row written by the new version, in its names.
    pub down: RawSql,
}

/// One pair of physical columns kept in sync.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DualWriteRule {
    /// The physical column the new version writes (e.g. `_pgbaton_new_email`).
    pub new_column: Ident,
    /// `up`: computes `new_column` from a row written by the old version, in the old version's
    /// names.
    pub up: RawSql,
    /// The physical column the old version writes, when it has one (not for `add_column`).
    pub old_column: Option<Ident>,
    /// `down`: computes `old_column` from a row written by the new version, in its names.
    pub down: Option<RawSql>,
}

impl DualWriteRule {
    /// The old column and `down`, when the rule writes the old column for new-version writers.
    pub(crate) fn down_pair(&self) -> Option<(&Ident, &RawSql)> {
        match (&self.old_column, &self.down) {
            (Some(column), Some(down)) if !down.is_empty() => Some((column, down)),
            _ => None,
        }
    }
}

/// The trigger function of `spec`'s table: `"<schema>"."_pgbaton_dw_<table>"`.
pub fn function_name(spec: &TriggerSpec) -> QualName {
    table_object(&spec.table, FUNCTION_PREFIX)
}

/// `"<schema>"."<prefix><table>"`: an object pgbaton keeps beside `table`.
fn table_object(table: &QualName, prefix: &str) -> QualName {
    QualName::new(
        table.schema.clone(),
        Ident::derived(prefix, table.name.as_str()),
    )
}

/// `DROP TRIGGER IF EXISTS` and `DROP FUNCTION IF EXISTS` of a trigger and its function.
fn drop_trigger_sql(trigger: &str, table: &QualName, function: &QualName) -> Vec<String> {
    vec![
        format!("DROP TRIGGER IF EXISTS {} ON {table}", Ident::new(trigger)),
        format!("DROP FUNCTION IF EXISTS {function}()"),
    ]
}

/// The step that installs the table's marker column, trigger function and trigger, in one
/// transaction. Idempotent: running it twice leaves one trigger. With a write window, the same
/// transaction closes it (the window's trigger and function go).
pub fn install_step(spec: &TriggerSpec, closes_window: bool) -> Step {
    install_step_guarded(spec, closes_window, None)
}

/// [`install_step`], with the trigger's backfill bypass tied to the transactions the backfill
/// recorded in `state_schema` (see [`bypass_function`]): a session that only sets
/// `pgbaton.backfill` cannot switch the dual writes off.
pub fn install_step_guarded(
    spec: &TriggerSpec,
    closes_window: bool,
    state_schema: Option<&Ident>,
) -> Step {
    let table = &spec.table;
    let mut sql = vec![
        // A constant default is catalog-only (PG11+): no rewrite, existing rows read false.
        format!(
            "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {} boolean DEFAULT false",
            spec.marker
        ),
        function_sql(spec),
        format!(
            "DROP TRIGGER IF EXISTS {} ON {table}",
            Ident::new(TRIGGER_NAME)
        ),
        trigger_sql_guarded(spec, state_schema),
    ];
    if closes_window {
        sql.extend(close_window_sql(table));
    }
    Step::transaction(
        format!("install dual-write trigger on {table}"),
        Some(table.clone()),
        LockLevel::AccessExclusive,
        Work::Catalog,
        sql,
    )
}

/// Name of the statement-level trigger that counts writes during a backfill's write window.
pub const WINDOW_TRIGGER_NAME: &str = "_pgbaton_write_window";
/// Prefix of the write window's function and sequence (`_pgbaton_ww_<table>`, table's schema).
pub const WINDOW_PREFIX: &str = "_pgbaton_ww_";
/// The write window of `table`'s backfill (see [`crate::step::WriteWindow`]).
pub fn write_window(table: &QualName) -> WriteWindow {
    WriteWindow {
        writes: window_object(table),
    }
}

/// The window's sequence and trigger function share this name (different catalogs).
fn window_object(table: &QualName) -> QualName {
    table_object(table, WINDOW_PREFIX)
}

/// The step that opens `table`'s write window before its backfill: the `writes` sequence, and
/// a `BEFORE INSERT OR UPDATE ... FOR EACH STATEMENT` trigger that bumps it for every statement
/// but a backfill's. The function is `SECURITY DEFINER` (the application's roles need no
/// privilege on the sequence) with a fixed `search_path`. Idempotent.
pub fn open_window_step(
    table: &QualName,
    window: &WriteWindow,
    state_schema: Option<&Ident>,
) -> Step {
    let function = window_object(table);
    let trigger = Ident::new(WINDOW_TRIGGER_NAME);
    Step::transaction(
        format!("open the backfill's write window on {table}"),
        Some(table.clone()),
        // CREATE TRIGGER (and DROP TRIGGER IF EXISTS of none): reads go on meanwhile.
        LockLevel::ShareRowExclusive,
        Work::Catalog,
        vec![
            format!("CREATE SEQUENCE IF NOT EXISTS {}", window.writes),
            format!(
                "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql \
                 SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $_pgbaton_$\n\
                 BEGIN\n  IF {counted} THEN\n    \
                 PERFORM nextval({seq}::regclass);\n  END IF;\n  RETURN NULL;\nEND\n$_pgbaton_$",
                counted = not_a_backfill_sql(state_schema),
                seq = Literal::new(window.writes.to_string()),
            ),
            format!("DROP TRIGGER IF EXISTS {trigger} ON {table}"),
            format!(
                "CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON {table} FOR EACH STATEMENT \
                 EXECUTE FUNCTION {function}()"
            ),
        ],
    )
}

/// Statements that close `table`'s write window (run with the dual-write trigger's install):
/// the counting trigger and its function go; the sequence stays for the catch-up pass.
fn close_window_sql(table: &QualName) -> Vec<String> {
    drop_trigger_sql(WINDOW_TRIGGER_NAME, table, &window_object(table))
}

/// Statements that remove everything of `table`'s write window (complete, rollback).
fn drop_window_sql(table: &QualName, window: &WriteWindow) -> Vec<String> {
    let mut sql = close_window_sql(table);
    sql.push(format!("DROP SEQUENCE IF EXISTS {}", window.writes));
    sql
}

/// Statements that remove the table's trigger and trigger function (idempotent).
pub fn drop_sql(spec: &TriggerSpec) -> Vec<String> {
    drop_trigger_sql(TRIGGER_NAME, &spec.table, &function_name(spec))
}

/// Everything pgbaton added to `spec`'s table for the migration's dual writes, removed
/// (idempotent; complete and rollback): the trigger, the marker column, the write window.
pub fn teardown_sql(spec: &TriggerSpec, window: Option<&WriteWindow>) -> Vec<String> {
    let mut sql = drop_sql(spec);
    sql.push(format!(
        "ALTER TABLE {} DROP COLUMN IF EXISTS {}",
        spec.table, spec.marker
    ));
    if let Some(window) = window {
        sql.extend(drop_window_sql(&spec.table, window));
    }
    sql.extend(version_writes::drop_sql(&spec.table));
    sql
}

/// `CREATE TRIGGER ...` for the table (after `DROP TRIGGER IF EXISTS`).
pub fn trigger_sql(spec: &TriggerSpec) -> String {
    trigger_sql_guarded(spec, None)
}

/// The function, in the state schema, that tells whether the current transaction is one of a
/// backfill's (its id is in `backfill_xids`, which only pgbaton writes). Created by the state
/// schema's DDL ([`crate::backfill::state_ddl`]).
pub fn bypass_function(state_schema: &Ident) -> QualName {
    QualName::new(state_schema.clone(), Ident::new("backfill_transaction"))
}

/// The condition under which a statement-level counting trigger (the write window, writes per
/// version) counts a write: it is not one of the backfill's. The setting alone is not enough
/// with a state schema: any session can set it, and a write hidden from the window or from the
/// per-version counts would let the catch-up pass or `complete` miss it; the transaction must
/// also be one the backfill recorded (as for the dual-write trigger).
pub fn not_a_backfill_sql(state_schema: Option<&Ident>) -> String {
    let setting = format!(
        "current_setting({}, true) IS DISTINCT FROM 'on'",
        Literal::new(BACKFILL_SETTING)
    );
    match state_schema {
        Some(state) => format!("({setting} OR NOT {}())", bypass_function(state)),
        None => setting,
    }
}

/// `CREATE TRIGGER ...`; with a state schema, skipping needs both the setting and a transaction
/// the backfill recorded (the function runs only when the setting is on: the backfill's own
/// batches, or a session trying to skip the trigger).
pub fn trigger_sql_guarded(spec: &TriggerSpec, state_schema: Option<&Ident>) -> String {
    let bypass = match state_schema {
        Some(state) => format!(" OR NOT {}()", bypass_function(state)),
        None => String::new(),
    };
    format!(
        "CREATE TRIGGER {} BEFORE INSERT OR UPDATE ON {} FOR EACH ROW \
         WHEN (current_setting({}, true) IS DISTINCT FROM 'on'{bypass}) EXECUTE FUNCTION {}()",
        Ident::new(TRIGGER_NAME),
        spec.table,
        Literal::new(BACKFILL_SETTING),
        function_name(spec),
    )
}

/// Names for the function's own variables that no scope name shadows.
struct Locals {
    version: Ident,
    /// The writer's search_path, restored before the function returns.
    search_path: Ident,
    untouched: Ident,
    new_row: Ident,
    old_row: Ident,
    /// Per down-only rule: `down` over the row before and after the write.
    down_only: Vec<(Ident, Ident)>,
}

impl Locals {
    fn new(spec: &TriggerSpec) -> Locals {
        let mut taken: BTreeSet<String> = spec
            .old_scope
            .iter()
            .chain(&spec.new_scope)
            .map(|(name, _)| name.as_str().to_lowercase())
            .collect();
        let mut fresh = |base: &str| {
            let mut name = base.to_string();
            while taken.contains(&name) {
                name.push('_');
            }
            taken.insert(name.clone());
            Ident::new(name)
        };
        Locals {
            version: fresh("_pgbaton_version"),
            search_path: fresh("_pgbaton_search_path"),
            untouched: fresh("_pgbaton_untouched"),
            new_row: fresh("_pgbaton_new_row"),
            old_row: fresh("_pgbaton_old_row"),
            down_only: (0..spec.down_only.len())
                .map(|i| {
                    (
                        fresh(&format!("_pgbaton_d{i}_before")),
                        fresh(&format!("_pgbaton_d{i}_after")),
                    )
                })
                .collect(),
        }
    }

    /// Per-rule variables: the result of an expression before and after the write, and whether
    /// the writer set the new column itself.
    fn rule(&self, kind: &str, index: usize) -> Ident {
        // Scope names never start with `_pgbaton_r`, so these need no uniqueness check beyond
        // the prefix (they are not user column names; new physical columns are `_pgbaton_new_`).
        Ident::new(format!("_pgbaton_r{index}_{kind}"))
    }
}

/// `CREATE OR REPLACE FUNCTION ...`: the trigger function (see the module documentation).
pub fn function_sql(spec: &TriggerSpec) -> String {
    let l = Locals::new(spec);
    let table = &spec.table;
    let n = &l.new_row;
    let o = &l.old_row;
    let marker = &spec.marker;
    let mut body = String::new();

    // Declarations. `use_column` gives `up`/`down` the scoping of the backfill's SQL, where a
    // column of a table inside a sub-query wins over an outer name.
    body.push_str("#variable_conflict use_column\nDECLARE\n");
    let _ = writeln!(
        body,
        "  {} text := coalesce(nullif(current_setting({}, true), ''), current_schema());",
        l.version,
        Literal::new(VERSION_SETTING)
    );
    let _ = writeln!(
        body,
        "  {} text := current_setting('search_path');",
        l.search_path
    );
    let _ = writeln!(body, "  {} boolean;", l.untouched);
    let _ = writeln!(body, "  {n} ALIAS FOR new;");
    let _ = writeln!(body, "  {o} ALIAS FOR old;");
    for (i, rule) in spec.rules.iter().enumerate() {
        let _ = writeln!(
            body,
            "  {} {}%TYPE;",
            l.rule("up_before", i),
            column_type(table, &rule.new_column)
        );
        let _ = writeln!(
            body,
            "  {} {}%TYPE;",
            l.rule("up_after", i),
            column_type(table, &rule.new_column)
        );
        let _ = writeln!(body, "  {} boolean;", l.rule("set", i));
        if let Some((old_column, _)) = rule.down_pair() {
            let _ = writeln!(
                body,
                "  {} {}%TYPE;",
                l.rule("down_before", i),
                column_type(table, old_column)
            );
            let _ = writeln!(
                body,
                "  {} {}%TYPE;",
                l.rule("down_after", i),
                column_type(table, old_column)
            );
        }
    }
    for (rule, (before, after)) in spec.down_only.iter().zip(&l.down_only) {
        let ty = column_type(table, &rule.old_column);
        let _ = writeln!(body, "  {before} {ty}%TYPE;");
        let _ = writeln!(body, "  {after} {ty}%TYPE;");
    }
    body.push_str("BEGIN\n");
    // `up`/`down` resolve names as when the migration was planned, whatever the writer's
    // search_path (the writer's version was read from it above); restored before returning.
    let _ = writeln!(
        body,
        "  PERFORM pg_catalog.set_config('search_path', {}, true);",
        Literal::new(fixed_search_path(spec))
    );
    let _ = writeln!(
        body,
        "  IF TG_OP = 'INSERT' THEN\n    {u} := true;\n  ELSE\n    {u} := {o}.{marker} IS NOT TRUE;\n  END IF;",
        u = l.untouched
    );

    let mut names = vec![Literal::new(spec.version_schema.as_str())];
    if spec.migration != spec.version_schema.as_str() {
        names.push(Literal::new(spec.migration.as_str()));
    }
    let is_new = names
        .iter()
        .map(|name| format!("{} = {name}", l.version))
        .collect::<Vec<_>>()
        .join(" OR ");
    let _ = writeln!(body, "  IF {is_new} THEN");
    new_writer(&mut body, spec, &l);
    new_writer_down_only(&mut body, spec, &l);
    body.push_str("  ELSE\n");
    old_writer(&mut body, spec, &l);
    body.push_str("  END IF;\n");
    let _ = writeln!(
        body,
        "  {n}.{marker} := true;\n  PERFORM pg_catalog.set_config('search_path', {}, true);\n  RETURN {n};\nEND",
        l.search_path
    );

    let function = function_name(spec);
    let tag = dollar_tag(&body);
    format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS {tag}\n{body}{tag}"
    )
}

/// The search_path `up` and `down` run with in the trigger: the migrated table's schema (where
/// the migration's names resolve, as for the backfill and for `sql` operations), then
/// `pg_catalog`, then `pg_temp` last (so no temporary object can shadow a name).
pub fn fixed_search_path(spec: &TriggerSpec) -> String {
    format!(
        "{}, pg_catalog, pg_temp",
        crate::ident::quote_ident(spec.table.schema.as_str())
    )
}

/// A writer of the old version: `NEW.<new_column> := (up)`.
fn old_writer(body: &mut String, spec: &TriggerSpec, l: &Locals) {
    let (n, o) = (&l.new_row, &l.old_row);
    if spec.rules.is_empty() {
        return;
    }
    // A row no live write touched (or a new row): every new column is computed.
    let _ = writeln!(body, "    IF {} THEN", l.untouched);
    scoped(body, 6, spec, &spec.old_scope, n, |body, pad| {
        for rule in &spec.rules {
            let _ = writeln!(body, "{pad}{n}.{} := ({});", rule.new_column, rule.up);
        }
    });
    // A touched row: only the columns whose `up` changed because of this write.
    let _ = writeln!(body, "    ELSIF {} THEN", changed(&spec.old_scope, n, o));
    scoped(body, 6, spec, &spec.old_scope, o, |body, pad| {
        for (i, rule) in spec.rules.iter().enumerate() {
            let _ = writeln!(body, "{pad}{} := ({});", l.rule("up_before", i), rule.up);
        }
    });
    scoped(body, 6, spec, &spec.old_scope, n, |body, pad| {
        for (i, rule) in spec.rules.iter().enumerate() {
            let (before, after) = (l.rule("up_before", i), l.rule("up_after", i));
            let _ = writeln!(body, "{pad}{after} := ({});", rule.up);
            let _ = writeln!(
                body,
                "{pad}IF ROW({after})::record *<> ROW({before})::record THEN\n{pad}  {n}.{} := {after};\n{pad}END IF;",
                rule.new_column
            );
        }
    });
    body.push_str("    END IF;\n");
}

/// A writer of the new version: `NEW.<old_column> := (down)`.
fn new_writer(body: &mut String, spec: &TriggerSpec, l: &Locals) {
    let (n, o) = (&l.new_row, &l.old_row);
    let downs: Vec<(usize, &Ident, &RawSql)> = spec
        .rules
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.down_pair().map(|(c, d)| (i, c, d)))
        .collect();
    if spec.rules.is_empty() {
        return;
    }
    // INSERT: the new version wrote every column it sees.
    body.push_str("    IF TG_OP = 'INSERT' THEN\n");
    if downs.is_empty() {
        body.push_str("      NULL;\n");
    }
    scoped_if(
        body,
        6,
        spec,
        &spec.new_scope,
        n,
        !downs.is_empty(),
        |body, pad| {
            for (_, column, down) in &downs {
                let _ = writeln!(body, "{pad}{n}.{column} := ({down});");
            }
        },
    );
    // UPDATE of an untouched row: the old columns are the truth. New columns the writer did
    // not set are derived from them (they may not be backfilled yet); for the ones it set, the
    // old column follows through `down`.
    let _ = writeln!(body, "    ELSIF {} THEN", l.untouched);
    for (i, rule) in spec.rules.iter().enumerate() {
        let _ = writeln!(
            body,
            "      {} := ROW({n}.{c})::record *<> ROW({o}.{c})::record;",
            l.rule("set", i),
            c = rule.new_column
        );
    }
    scoped(body, 6, spec, &spec.old_scope, n, |body, pad| {
        for (i, rule) in spec.rules.iter().enumerate() {
            let _ = writeln!(
                body,
                "{pad}IF NOT {} THEN\n{pad}  {n}.{} := ({});\n{pad}END IF;",
                l.rule("set", i),
                rule.new_column,
                rule.up
            );
        }
    });
    scoped_if(
        body,
        6,
        spec,
        &spec.new_scope,
        n,
        !downs.is_empty(),
        |body, pad| {
            for (i, column, down) in &downs {
                let _ = writeln!(
                    body,
                    "{pad}IF {} THEN\n{pad}  {n}.{column} := ({down});\n{pad}END IF;",
                    l.rule("set", *i)
                );
            }
        },
    );
    // UPDATE of a touched row: only the old columns whose `down` changed because of this write.
    if !downs.is_empty() {
        let _ = writeln!(body, "    ELSIF {} THEN", changed(&spec.new_scope, n, o));
        scoped(body, 6, spec, &spec.new_scope, o, |body, pad| {
            for (i, _, down) in &downs {
                let _ = writeln!(body, "{pad}{} := ({down});", l.rule("down_before", *i));
            }
        });
        scoped(body, 6, spec, &spec.new_scope, n, |body, pad| {
            for (i, column, down) in &downs {
                let (before, after) = (l.rule("down_before", *i), l.rule("down_after", *i));
                let _ = writeln!(body, "{pad}{after} := ({down});");
                let _ = writeln!(
                    body,
                    "{pad}IF ROW({after})::record *<> ROW({before})::record THEN\n{pad}  {n}.{column} := {after};\n{pad}END IF;"
                );
            }
        });
    }
    body.push_str("    END IF;\n");
}

/// A writer of the new version, for the columns it dropped: `NEW.<old_column> := (down)` on
/// INSERT; on UPDATE only when `down`'s result changed because of this write.
fn new_writer_down_only(body: &mut String, spec: &TriggerSpec, l: &Locals) {
    if spec.down_only.is_empty() {
        return;
    }
    let (n, o) = (&l.new_row, &l.old_row);
    body.push_str("    IF TG_OP = 'INSERT' THEN\n");
    scoped(body, 6, spec, &spec.new_scope, n, |body, pad| {
        for rule in &spec.down_only {
            let _ = writeln!(body, "{pad}{n}.{} := ({});", rule.old_column, rule.down);
        }
    });
    body.push_str("    ELSE\n");
    scoped(body, 6, spec, &spec.new_scope, o, |body, pad| {
        for (rule, (before, _)) in spec.down_only.iter().zip(&l.down_only) {
            let _ = writeln!(body, "{pad}{before} := ({});", rule.down);
        }
    });
    scoped(body, 6, spec, &spec.new_scope, n, |body, pad| {
        for (rule, (before, after)) in spec.down_only.iter().zip(&l.down_only) {
            let _ = writeln!(body, "{pad}{after} := ({});", rule.down);
            let _ = writeln!(
                body,
                "{pad}IF ROW({after})::record *<> ROW({before})::record THEN\n{pad}  {n}.{} := {after};\n{pad}END IF;",
                rule.old_column
            );
        }
    });
    body.push_str("    END IF;\n");
}

/// `ROW(n.a, ...)::record *<> ROW(o.a, ...)::record`: did the write change a column of `scope`?
/// Binary-image comparison: works for every type (also those without `=`), and a difference
/// it sees that `=` would not (`1.0` vs `1.00`) only costs a recomputation.
fn changed(scope: &[(Ident, Ident)], n: &Ident, o: &Ident) -> String {
    let mut physical: Vec<&Ident> = Vec::new();
    for (_, p) in scope {
        if !physical.contains(&p) {
            physical.push(p);
        }
    }
    if physical.is_empty() {
        return "false".to_string();
    }
    let list = |row: &Ident| {
        physical
            .iter()
            .map(|p| format!("{row}.{p}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("ROW({})::record *<> ROW({})::record", list(n), list(o))
}

/// `schema.table.column`, for `%TYPE`.
fn column_type(table: &QualName, column: &Ident) -> String {
    format!("{}.{}.{}", table.schema, table.name, column)
}

/// A nested block that declares one variable per scope name, initialised from `row`'s physical
/// column, so that user expressions read exactly as written in the migration file.
fn scoped(
    body: &mut String,
    indent: usize,
    spec: &TriggerSpec,
    scope: &[(Ident, Ident)],
    row: &Ident,
    inner: impl FnOnce(&mut String, &str),
) {
    scoped_if(body, indent, spec, scope, row, true, inner)
}

fn scoped_if(
    body: &mut String,
    indent: usize,
    spec: &TriggerSpec,
    scope: &[(Ident, Ident)],
    row: &Ident,
    enabled: bool,
    inner: impl FnOnce(&mut String, &str),
) {
    if !enabled {
        return;
    }
    let pad = " ".repeat(indent);
    if scope.is_empty() {
        let _ = writeln!(body, "{pad}BEGIN");
    } else {
        let _ = writeln!(body, "{pad}DECLARE");
        for (name, physical) in scope {
            let _ = writeln!(
                body,
                "{pad}  {name} {}%TYPE := {row}.{physical};",
                column_type(&spec.table, physical)
            );
        }
        let _ = writeln!(body, "{pad}BEGIN");
    }
    inner(body, &format!("{pad}  "));
    let _ = writeln!(body, "{pad}END;");
}

/// A dollar-quote tag that does not occur in `body` (user expressions are inside it).
fn dollar_tag(body: &str) -> String {
    let mut tag = "$_pgbaton_$".to_string();
    let mut i = 0u32;
    while body.contains(&tag) {
        i += 1;
        tag = format!("$_pgbaton_{i}$");
    }
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TriggerSpec {
        TriggerSpec {
            table: QualName::new("public", "users"),
            migration: "02_widen".into(),
            version_schema: Ident::new("public_02_widen"),
            old_scope: vec![
                (Ident::new("id"), Ident::new("id")),
                (Ident::new("email"), Ident::new("email")),
            ],
            new_scope: vec![
                (Ident::new("id"), Ident::new("id")),
                (Ident::new("email"), Ident::new("_pgbaton_new_email")),
            ],
            rules: vec![DualWriteRule {
                new_column: Ident::new("_pgbaton_new_email"),
                up: RawSql::new("lower(email)"),
                old_column: Some(Ident::new("email")),
                down: Some(RawSql::new("email")),
            }],
            down_only: Vec::new(),
            marker: Ident::new("_pgbaton_touched"),
        }
    }

    #[test]
    fn install_is_one_catalog_transaction() {
        let step = install_step(&spec(), false);
        assert_eq!(step.lock, LockLevel::AccessExclusive);
        assert_eq!(step.work, Work::Catalog);
        let sql = step.statements();
        assert_eq!(sql.len(), 4);
        assert!(
            sql[0].contains("ADD COLUMN IF NOT EXISTS \"_pgbaton_touched\" boolean DEFAULT false")
        );
        assert!(sql[1].starts_with(
            "CREATE OR REPLACE FUNCTION \"public\".\"_pgbaton_dw_users\"() RETURNS trigger"
        ));
        assert!(sql[2].starts_with("DROP TRIGGER IF EXISTS \"_pgbaton_dual_write\""));
        assert!(sql[3]
            .contains("WHEN (current_setting('pgbaton.backfill', true) IS DISTINCT FROM 'on')"));
    }

    #[test]
    fn direction_never_matches_the_search_path() {
        let sql = function_sql(&spec());
        // The search_path is only saved, fixed and restored (see `fixed_search_path`); the
        // writer's version is never decided from it.
        for line in sql.lines().filter(|l| l.contains("search_path")) {
            assert!(!line.contains("_pgbaton_version"), "{line}");
            assert!(
                line.contains("set_config('search_path'")
                    || line.contains(":= current_setting('search_path')"),
                "{line}"
            );
        }
        assert!(sql.contains(
            "\"_pgbaton_version\" = 'public_02_widen' OR \"_pgbaton_version\" = '02_widen'"
        ));
        assert!(sql.contains("\"email\" \"public\".\"users\".\"_pgbaton_new_email\"%TYPE := \"_pgbaton_new_row\".\"_pgbaton_new_email\";"));
    }

    #[test]
    fn locals_avoid_user_names() {
        let mut s = spec();
        s.old_scope.push((
            Ident::new("_pgbaton_version"),
            Ident::new("_pgbaton_version"),
        ));
        s.old_scope.push((Ident::new("new"), Ident::new("new")));
        let sql = function_sql(&s);
        assert!(sql.contains("\"_pgbaton_version_\" text :="));
        assert!(sql.contains("\"new\" \"public\".\"users\".\"new\"%TYPE"));
    }

    #[test]
    fn down_only_rules_run_for_new_version_writers_only() {
        let mut s = spec();
        s.rules.clear();
        s.old_scope.push((Ident::new("price"), Ident::new("price")));
        s.new_scope.push((
            Ident::new("_pgbaton_d0_before"),
            Ident::new("_pgbaton_d0_before"),
        ));
        s.down_only.push(DownOnlyRule {
            old_column: Ident::new("price"),
            down: RawSql::new("0"),
        });
        let sql = function_sql(&s);
        // The user's column of that name keeps it; the local takes another.
        assert!(sql.contains("\"_pgbaton_d0_before_\" \"public\".\"users\".\"price\"%TYPE;"));
        assert!(sql.contains("\"_pgbaton_d0_after\" \"public\".\"users\".\"price\"%TYPE;"));
        assert!(sql.contains("\"_pgbaton_new_row\".\"price\" := (0);"));
        assert!(sql.contains(
            "IF ROW(\"_pgbaton_d0_after\")::record *<> ROW(\"_pgbaton_d0_before_\")::record THEN"
        ));
        // Only in the new-version branch: nothing between ELSE and the end of the IF.
        let old_branch = sql.split("  ELSE\n").last().expect("an old-version branch");
        assert!(old_branch.starts_with("  END IF;\n"), "{old_branch}");
    }

    #[test]
    fn dollar_tag_avoids_the_body() {
        let mut s = spec();
        s.rules[0].up = RawSql::new("'$_pgbaton_$' || email");
        let sql = function_sql(&s);
        assert!(sql.contains("AS $_pgbaton_1$\n"));
        assert!(sql.ends_with("$_pgbaton_1$"));
    }

    #[test]
    fn drop_is_idempotent() {
        assert_eq!(
            drop_sql(&spec()),
            vec![
                "DROP TRIGGER IF EXISTS \"_pgbaton_dual_write\" ON \"public\".\"users\""
                    .to_string(),
                "DROP FUNCTION IF EXISTS \"public\".\"_pgbaton_dw_users\"()".to_string(),
            ]
        );
    }
}
