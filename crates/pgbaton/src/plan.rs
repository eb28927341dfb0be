//! Planning: turns a migration into a [`Plan`] — the start, complete and rollback steps — before
//! anything runs. Operations never execute SQL; they push steps into a [`PlanBuilder`] and change
//! the in-memory [`Schema`] so later operations see their effects. No I/O happens here.

use std::collections::BTreeMap;

use crate::ident::{Ident, QualName};
use crate::schema::Schema;
use serde::{Deserialize, Serialize};

use crate::step::{
    Action, Assignment, BackfillKey, BackfillPass, BackfillSpec, LockLevel, Phase, Step, Work,
    WriteWindow,
};
use crate::triggers::{DownOnlyRule, DualWriteRule, TriggerSpec};

/// What every operation implements. `validate`, `start`, `complete` and `rollback` see the schema
/// as the earlier operations of the migration left it; `apply` then changes it to what the new
/// version sees, and is the only method that changes it.
pub trait Operation {
    /// pgroll's name for the operation (`add_column`, ...).
    fn kind(&self) -> &'static str;
    /// Checks the operation against the schema; returns a [`PlanError`] naming the field.
    fn validate(&self, schema: &Schema, ctx: &PlanContext) -> Result<(), PlanError>;
    /// Contributes the start (expand) steps, the dual-write rules and backfills.
    fn start(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError>;
    /// Contributes the complete (contract) steps.
    fn complete(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError>;
    /// Contributes the steps that undo `start`; each must be idempotent (`IF EXISTS`), because
    /// rollback also cleans up after a start that failed or died part way.
    fn rollback(
        &self,
        schema: &Schema,
        ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError>;
    /// Changes the schema to the new version's view.
    fn apply(&self, schema: &mut Schema, ctx: &PlanContext) -> Result<(), PlanError>;
}

/// A question about the server that planning needs answered (planning itself does no I/O: the
/// migrator answers them with [`crate::catalog::probe`] and plans again).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Probe {
    /// Would `ADD COLUMN c <type> DEFAULT <expr>` rewrite the table (a volatile default)? Decided
    /// the way PostgreSQL decides it: whether the added column gets a "missing" fast default.
    DefaultIsVolatile { type_name: String, expr: String },
    /// Would `ALTER COLUMN TYPE <to>` of a `<from>` column rewrite the table or its indexes?
    TypeChangeRewrites { from: String, to: String },
}

/// Answers to probes.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub answers: BTreeMap<Probe, bool>,
}

/// Facts about the migration that operations need.
#[derive(Clone, Debug)]
pub struct PlanContext {
    pub migration: String,
    /// The base schema (`public`).
    pub schema: Ident,
    /// This migration's version schema (`public_02_add_email`).
    pub version_schema: Ident,
    /// The version schema of the migration before, if it still exists.
    pub previous_version_schema: Option<Ident>,
    pub server_version_num: i32,
    /// pgbaton's state schema: the dual-write triggers let only the backfill's own transactions
    /// (recorded there) skip them. `None` in plans made without one (unit tests).
    pub state_schema: Option<Ident>,
    /// Answers to probes, filled in by the migrator.
    pub facts: Facts,
    /// Probes asked during planning that `facts` could not answer. (A mutex, not a cell: a
    /// context lives across the `.await`s of a start, whose future is `Send`.)
    pub missing: MissingProbes,
}

/// The probes a plan asked that its facts could not answer (see [`PlanContext::ask`]).
#[derive(Debug, Default)]
pub struct MissingProbes(std::sync::Mutex<std::collections::BTreeSet<Probe>>);

impl Clone for MissingProbes {
    fn clone(&self) -> Self {
        let set = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        MissingProbes(std::sync::Mutex::new(set.clone()))
    }
}

impl PlanContext {
    /// The probes asked but not answered so far (see [`PlanContext::ask`]).
    pub fn missing_probes(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<Probe>> {
        // Planning panics nowhere while it holds the guard; a poisoned set is still whole.
        self.missing
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn qualify(&self, physical: &Ident) -> QualName {
        QualName::new(self.schema.clone(), physical.clone())
    }

    /// The answer to `probe`, or `conservative` (recording the probe) when it is not known yet.
    pub fn ask(&self, probe: Probe, conservative: bool) -> bool {
        match self.facts.answers.get(&probe) {
            Some(answer) => *answer,
            None => {
                self.missing_probes().insert(probe);
                conservative
            }
        }
    }

    /// Whether a column default is volatile (adding it would rewrite the table).
    pub fn default_is_volatile(&self, type_name: &str, expr: &str) -> bool {
        self.ask(
            Probe::DefaultIsVolatile {
                type_name: type_name.into(),
                expr: expr.into(),
            },
            true,
        )
    }

    /// Whether changing a column's type from `from` to `to` rewrites the table or an index.
    pub fn type_change_rewrites(&self, from: &str, to: &str) -> bool {
        self.ask(
            Probe::TypeChangeRewrites {
                from: from.into(),
                to: to.into(),
            },
            true,
        )
    }
}

/// A validation or planning error, located at a field of an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PlanError {
    /// The field path inside the operation (e.g. `column.name`), filled in further by the caller
    /// with the operation's index (`operations[2].add_column.column.name`).
    pub field: String,
    pub message: String,
}

impl PlanError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> PlanError {
        PlanError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Name of the marker column the triggers set on rows a live write touched.
pub fn marker_column() -> Ident {
    Ident::new("_pgbaton_touched")
}

/// Name of the physical column that holds a column's new shape until complete.
pub fn new_column_name(column: &str) -> Ident {
    Ident::derived("_pgbaton_new_", column)
}

/// Where a contract statement goes in its table's transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ContractOrder {
    Change,
    RenameColumn,
    /// Statements that name columns as they are called after the column renames (dropping a
    /// column that an earlier operation of the migration added or renamed).
    AfterColumnRenames,
    RenameTable,
}

/// Collects steps from the operations in stages, then orders them into a [`Plan`]:
///
/// start:    expand (op order) → open the write window of each table with a backfill → the
///           dual-write triggers of tables without one → per backfilled table: fill (one pass),
///           then its dual-write trigger (closing the window) → guards (`NOT VALID` constraints
///           that rely on the triggers) → catch-up passes (rows written during a fill; see
///           `crate::step::WriteWindow`) → concurrent builds → version schema (planner)
/// complete: validate (no blocking lock) → drop previous version schema (planner) → contract (one
///           short transaction per table: triggers off, old columns out, renames) → after
/// rollback:  drop this version schema (planner) → triggers off → undo (reverse op order)
#[derive(Debug, Default)]
pub struct PlanBuilder {
    expand: Vec<Step>,
    triggers: BTreeMap<QualName, TriggerSpec>,
    guards: Vec<Step>,
    backfills: BTreeMap<QualName, BackfillSpec>,
    builds: Vec<Step>,
    validate: Vec<Step>,
    contract: Vec<(QualName, ContractOrder, String)>,
    after_complete: Vec<Step>,
    /// Per operation: its rollback steps, each with whether it runs only when the operation's
    /// expand steps all ran (see [`PlanBuilder::undo_if_started`]).
    undo: Vec<Vec<(Step, bool)>>,
    current_undo: Vec<(Step, bool)>,
    /// Per operation: the range of `expand` it contributed.
    op_expand: Vec<std::ops::Range<usize>>,
    expand_mark: usize,
    /// Column copies (`crate::copies`), rendered into the stages by `finish`.
    copies: crate::copies::Copies,
    /// Partitioned tables: their backfills get no write window.
    partitioned: std::collections::BTreeSet<QualName>,
    /// The state schema whose backfill transactions may skip the dual-write triggers.
    state_schema: Option<Ident>,
}

impl PlanBuilder {
    pub fn new() -> PlanBuilder {
        PlanBuilder::default()
    }

    /// A start step, run in operation order before the triggers.
    pub fn expand(&mut self, step: Step) {
        self.expand.push(step);
    }

    /// A start step that relies on the dual-write triggers being in place (e.g. a `NOT VALID`
    /// check that old-version inserts satisfy only because the trigger fills the column).
    pub fn guard(&mut self, step: Step) {
        self.guards.push(step);
    }

    /// A concurrent index build, run after the backfills (so it indexes filled columns once).
    pub fn build(&mut self, step: Step) {
        self.builds.push(step);
    }

    /// Declares that `rule` must hold for `table` while the migration is active. All rules of a
    /// table share one trigger. `old_scope`/`new_scope` are the table's columns in each version.
    pub fn dual_write(
        &mut self,
        ctx: &PlanContext,
        table: QualName,
        old_scope: Vec<(Ident, Ident)>,
        new_scope: Vec<(Ident, Ident)>,
        rule: DualWriteRule,
    ) {
        let old_scope = self.to_sources(&table, old_scope);
        let spec = self
            .triggers
            .entry(table.clone())
            .or_insert_with(|| TriggerSpec {
                table,
                migration: ctx.migration.clone(),
                version_schema: ctx.version_schema.clone(),
                old_scope: old_scope.clone(),
                new_scope: new_scope.clone(),
                rules: Vec::new(),
                down_only: Vec::new(),
                marker: marker_column(),
            });
        // A later operation's expressions may use names the first one did not pass (e.g. the
        // column an earlier operation added); names already in scope keep their first meaning.
        for pair in old_scope {
            if !spec.old_scope.iter().any(|(name, _)| name == &pair.0) {
                spec.old_scope.push(pair);
            }
        }
        // A later operation on the same table sees more columns of the new version; a name it
        // maps differently (a column now backed by a copy) replaces the earlier mapping.
        for pair in new_scope {
            match spec.new_scope.iter_mut().find(|(name, _)| *name == pair.0) {
                Some(existing) => *existing = pair,
                None => spec.new_scope.push(pair),
            }
        }
        spec.rules.push(rule);
    }

    /// Declares that `rule` must hold for `table` while the migration is active: rows the new
    /// version writes get `rule.old_column` (a column only the old version sees) from
    /// `rule.down`, over `new_scope` (the table's columns in the new version). Shares the
    /// table's trigger with [`PlanBuilder::dual_write`]; no backfill (existing rows keep their
    /// values).
    pub fn dual_write_down(
        &mut self,
        ctx: &PlanContext,
        table: QualName,
        new_scope: Vec<(Ident, Ident)>,
        rule: DownOnlyRule,
    ) {
        let spec = self
            .triggers
            .entry(table.clone())
            .or_insert_with(|| TriggerSpec {
                table,
                migration: ctx.migration.clone(),
                version_schema: ctx.version_schema.clone(),
                old_scope: Vec::new(),
                new_scope: new_scope.clone(),
                rules: Vec::new(),
                down_only: Vec::new(),
                marker: marker_column(),
            });
        // As in `dual_write`: a name mapped differently by a later operation (a column now
        // backed by a copy) takes the new mapping.
        for pair in new_scope {
            match spec.new_scope.iter_mut().find(|(name, _)| *name == pair.0) {
                Some(existing) => *existing = pair,
                None => spec.new_scope.push(pair),
            }
        }
        spec.down_only.push(rule);
    }

    /// Declares that existing rows of `table` need `assignment`; all assignments of a table are
    /// filled in one pass. `scope` maps the names `up` uses to physical columns.
    pub fn backfill(
        &mut self,
        table: QualName,
        key: BackfillKey,
        scope: Vec<(Ident, Ident)>,
        assignment: Assignment,
    ) {
        let scope = self.to_sources(&table, scope);
        let spec = self
            .backfills
            .entry(table.clone())
            .or_insert_with(|| BackfillSpec {
                table,
                key,
                scope: scope.clone(),
                assignments: Vec::new(),
                marker: marker_column(),
                window: None,
                pass: BackfillPass::Fill,
            });
        for pair in scope {
            if !spec.scope.iter().any(|(name, _)| name == &pair.0) {
                spec.scope.push(pair);
            }
        }
        spec.assignments.push(assignment);
    }

    /// `up` expressions compute from the values the old version wrote: a name that an earlier
    /// operation of the migration moved onto a column copy (`alter_column`) still reads the
    /// copy's source column, which holds the old version's value (the copy is filled from it by
    /// the same trigger and backfill, so it cannot be read in the same pass).
    fn to_sources(&self, table: &QualName, scope: Vec<(Ident, Ident)>) -> Vec<(Ident, Ident)> {
        scope
            .into_iter()
            .map(|(name, physical)| match self.copies.get(table, &physical) {
                Some(copy) => (name, copy.source().clone()),
                None => (name, physical),
            })
            .collect()
    }

    /// A complete step that does not block the application (VALIDATE, concurrent drops).
    pub fn validate(&mut self, step: Step) {
        self.validate.push(step);
    }

    /// A catalog-only statement of the contract; all of a table's contract statements run in one
    /// short ACCESS EXCLUSIVE transaction: drops and other changes first (in operation order),
    /// then column renames, then the table rename, so every statement can name the table and its
    /// columns by their physical names as they were before complete.
    pub fn contract(&mut self, table: QualName, sql: impl Into<String>) {
        self.contract
            .push((table, ContractOrder::Change, sql.into()));
    }

    /// A column rename of the contract (runs after the table's other contract statements).
    pub fn contract_rename_column(&mut self, table: QualName, sql: impl Into<String>) {
        self.contract
            .push((table, ContractOrder::RenameColumn, sql.into()));
    }

    /// A contract statement that runs after the column renames (before the table rename), so it
    /// names columns by the names they have once renamed.
    pub fn contract_after_column_renames(&mut self, table: QualName, sql: impl Into<String>) {
        self.contract
            .push((table, ContractOrder::AfterColumnRenames, sql.into()));
    }

    /// A table rename (or drop) of the contract. All of them run in one short transaction, in
    /// operation order, after every table's own contract transaction: each statement names the
    /// table as the renames before it left it, and may take a name an earlier one freed.
    pub fn contract_rename_table(&mut self, table: QualName, sql: impl Into<String>) {
        self.contract
            .push((table, ContractOrder::RenameTable, sql.into()));
    }

    /// A complete step that runs after the contract transactions (e.g. `onComplete` SQL).
    pub fn after_complete(&mut self, step: Step) {
        self.after_complete.push(step);
    }

    /// A rollback step of the current operation. Operations are undone in reverse order; the
    /// steps of one operation run in the order given.
    pub fn undo(&mut self, step: Step) {
        self.current_undo.push((step, false));
    }

    /// A rollback step that runs only when every expand step of the current operation ran: the
    /// `down` of a user's `sql`, which would fail (or do harm) after an `up` that never ran, as
    /// when a start fails before reaching it. Skipped steps are journaled as done.
    pub fn undo_if_started(&mut self, step: Step) {
        self.current_undo.push((step, true));
    }

    /// Marks the end of one operation's contributions (called by the planner).
    pub fn end_operation(&mut self) {
        let steps = std::mem::take(&mut self.current_undo);
        self.undo.push(steps);
        self.op_expand.push(self.expand_mark..self.expand.len());
        self.expand_mark = self.expand.len();
    }

    /// Declares which tables are partitioned (by physical name): their backfills run with the
    /// dual-write trigger already installed, without a write window.
    /// The state schema whose backfill transactions may skip the dual-write triggers.
    pub fn set_state_schema(&mut self, state_schema: Option<Ident>) {
        self.state_schema = state_schema;
    }

    pub fn set_partitioned(&mut self, tables: impl IntoIterator<Item = QualName>) {
        self.partitioned = tables.into_iter().collect();
    }

    /// The column copies of this migration (see [`crate::copies`]).
    pub fn copies(&mut self) -> &mut crate::copies::Copies {
        &mut self.copies
    }

    /// Orders the collected steps; `version_steps` create this version's schema,
    /// `drop_previous` drops the previous version's, `drop_version` drops this one's.
    pub fn finish(
        mut self,
        version_steps: Vec<Step>,
        drop_previous: Vec<Step>,
        drop_version: Vec<Step>,
    ) -> Plan {
        let copies = std::mem::take(&mut self.copies);
        copies.render(&mut self);
        let windows = self.open_windows();
        let start = self.start_steps(&windows, version_steps);
        let complete = self.complete_steps(&windows, drop_previous);
        let (rollback, rollback_requires) = self.rollback_steps(&windows, drop_version);
        Plan {
            start,
            complete,
            rollback,
            rollback_requires,
            triggers: self.triggers.into_values().collect(),
        }
    }

    /// A table with a backfill and a trigger gets a write window: its fill runs before its
    /// dual-write trigger exists, then a catch-up pass (see `crate::step::WriteWindow`).
    fn open_windows(&mut self) -> BTreeMap<QualName, WriteWindow> {
        let mut windows = BTreeMap::new();
        for spec in self.backfills.values_mut() {
            if self.triggers.contains_key(&spec.table) && !self.partitioned.contains(&spec.table) {
                let window = crate::triggers::write_window(&spec.table);
                windows.insert(spec.table.clone(), window.clone());
                spec.window = Some(window);
            }
        }
        windows
    }

    /// expand → windows opened → per table: fill, then its trigger (closing the window) →
    /// guards → catch-up passes → concurrent builds → version schema.
    fn start_steps(
        &mut self,
        windows: &BTreeMap<QualName, WriteWindow>,
        version_steps: Vec<Step>,
    ) -> Vec<Step> {
        let backfills = std::mem::take(&mut self.backfills);
        let mut start = std::mem::take(&mut self.expand);
        for spec in backfills.values() {
            if let Some(window) = &spec.window {
                start.push(crate::triggers::open_window_step(&spec.table, window));
            }
        }
        for spec in self.triggers.values() {
            if !windows.contains_key(&spec.table) {
                start.push(crate::triggers::install_step_guarded(
                    spec,
                    false,
                    self.state_schema.as_ref(),
                ));
                start.push(crate::triggers::version_writes::install_step(spec));
            }
        }
        let backfill_step = |title: String, spec: BackfillSpec| Step {
            title,
            table: Some(spec.table.clone()),
            lock: LockLevel::RowExclusive,
            work: Work::Batched,
            action: Action::Backfill(spec),
        };
        let mut catch_ups = Vec::new();
        for spec in backfills.into_values() {
            let table = spec.table.clone();
            if spec.window.is_some() {
                let catch_up = BackfillSpec {
                    key: BackfillKey::Ctid,
                    pass: BackfillPass::CatchUp,
                    ..spec.clone()
                };
                catch_ups.push(backfill_step(
                    format!("catch up on writes to {table} during its backfill"),
                    catch_up,
                ));
                start.push(backfill_step(format!("backfill {table}"), spec));
                // A window is only opened on a table with a trigger.
                if let Some(trigger) = self.triggers.get(&table) {
                    start.push(crate::triggers::install_step_guarded(
                        trigger,
                        true,
                        self.state_schema.as_ref(),
                    ));
                    start.push(crate::triggers::version_writes::install_step(trigger));
                }
            } else {
                start.push(backfill_step(format!("backfill {table}"), spec));
            }
        }
        start.append(&mut self.guards);
        start.extend(catch_ups);
        start.append(&mut self.builds);
        start.extend(version_steps);
        start
    }

    /// Validation first (long, blocks nobody; the old version still works meanwhile), then the
    /// old version's schema goes, then the short contract transactions.
    fn complete_steps(
        &mut self,
        windows: &BTreeMap<QualName, WriteWindow>,
        drop_previous: Vec<Step>,
    ) -> Vec<Step> {
        let mut complete = std::mem::take(&mut self.validate);
        complete.extend(drop_previous);
        // Group contract statements per table, first-mention order: the dual-write trigger and
        // the marker column go first, then the operations' statements in ContractOrder.
        let mut order: Vec<QualName> = Vec::new();
        let mut per_table: BTreeMap<QualName, Vec<String>> = BTreeMap::new();
        for spec in self.triggers.values() {
            order.push(spec.table.clone());
            per_table
                .entry(spec.table.clone())
                .or_default()
                .extend(crate::triggers::teardown_sql(
                    spec,
                    windows.get(&spec.table),
                ));
        }
        let mut contract = std::mem::take(&mut self.contract);
        // Stable: operation order within a kind.
        contract.sort_by_key(|(_, order, _)| *order);
        // Table renames and drops of the whole migration: one transaction, in operation order,
        // after every per-table one (a rename may take a name another table frees).
        let mut table_names: Vec<(QualName, String)> = Vec::new();
        for (table, kind, sql) in contract {
            if kind == ContractOrder::RenameTable {
                table_names.push((table, sql));
                continue;
            }
            if !order.contains(&table) {
                order.push(table.clone());
            }
            per_table.entry(table).or_default().push(sql);
        }
        for table in order {
            if let Some(sql) = per_table.remove(&table) {
                complete.push(Step::transaction(
                    format!("contract {table}"),
                    Some(table),
                    LockLevel::AccessExclusive,
                    Work::Catalog,
                    sql,
                ));
            }
        }
        if let Some((first, _)) = table_names.first() {
            let first = first.clone();
            complete.push(Step::transaction(
                "rename and drop tables",
                Some(first),
                LockLevel::AccessExclusive,
                Work::Catalog,
                table_names.into_iter().map(|(_, sql)| sql).collect(),
            ));
        }
        complete.append(&mut self.after_complete);
        complete
    }

    /// This version's schema dropped → triggers off → each operation's undo, in reverse order;
    /// with, per conditional undo step, the start steps that must have run for it to run.
    fn rollback_steps(
        &mut self,
        windows: &BTreeMap<QualName, WriteWindow>,
        drop_version: Vec<Step>,
    ) -> (Vec<Step>, BTreeMap<usize, Vec<usize>>) {
        let mut rollback = drop_version;
        for spec in self.triggers.values() {
            let sql = crate::triggers::teardown_sql(spec, windows.get(&spec.table));
            rollback.push(Step::transaction(
                format!("remove dual-write trigger from {}", spec.table),
                Some(spec.table.clone()),
                LockLevel::AccessExclusive,
                Work::Catalog,
                sql,
            ));
        }
        let mut undo = std::mem::take(&mut self.undo);
        let mut op_expand = std::mem::take(&mut self.op_expand);
        if !self.current_undo.is_empty() {
            undo.push(std::mem::take(&mut self.current_undo));
            op_expand.push(self.expand_mark..self.expand_mark);
        }
        // `expand` steps come first in `start`, so their index is their ordinal.
        let mut rollback_requires = BTreeMap::new();
        for (steps, ran) in undo.into_iter().zip(op_expand).rev() {
            for (step, conditional) in steps {
                if conditional && !ran.is_empty() {
                    rollback_requires.insert(rollback.len(), ran.clone().collect());
                }
                rollback.push(step);
            }
        }
        (rollback, rollback_requires)
    }
}

/// The three step lists of a migration, computed together before anything runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub start: Vec<Step>,
    pub complete: Vec<Step>,
    pub rollback: Vec<Step>,
    /// Rollback steps that run only if these start steps ran (by ordinal): a user's `down` is
    /// not run for an `up` that never ran.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub rollback_requires: std::collections::BTreeMap<usize, Vec<usize>>,
    /// The dual-write triggers the start steps install, as data: `verify` checks their rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<TriggerSpec>,
}

impl Plan {
    pub fn phase(&self, phase: Phase) -> &[Step] {
        match phase {
            Phase::Start => &self.start,
            Phase::Complete => &self.complete,
            Phase::Rollback => &self.rollback,
        }
    }

    /// Every step, in every phase, that breaks the lock rule.
    pub fn lock_violations(&self) -> Vec<String> {
        [&self.start, &self.complete, &self.rollback]
            .into_iter()
            .flatten()
            .filter_map(Step::lock_violation)
            .collect()
    }
}
