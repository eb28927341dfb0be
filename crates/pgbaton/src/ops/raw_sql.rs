//! `sql`: runs the user's SQL (key `sql` in the file).
//!
//! Semantics (pgroll's): `up` runs at start, in one transaction, in operation order with the
//! other start steps; `down` runs at rollback (there is nothing to undo without it). With
//! `onComplete: true`, `up` runs at complete instead, after the contract transactions, and
//! `down` is not allowed (it could never run: a completed migration is not rolled back). `up`
//! must not be empty. pgbaton cannot know what user SQL locks or how long it runs: its steps
//! declare `LockLevel::Unknown` and `Work::Unknown`, and `plan` says so.
//!
//! The schema model cannot see what the SQL changes. After a start-time `sql` operation, `apply`
//! marks the model `opaque`, which relaxes the checks of the later operations of the migration
//! that look for something missing from the model: a table that `drop_table`, `rename_table` or
//! `set_replica_identity` names, or `create_table` references, is then assumed to exist (the
//! SQL may have created it) and the server has the last word. Checks that something already
//! exists still hold. `onComplete` SQL runs after every start step, so it leaves the model
//! exact for the rest of the migration and does not mark it.
//!
//! The serde struct follows pgroll's `schema.json`; the planning semantics live in the
//! [`Operation`] impl.

use serde::Deserialize;

use crate::ident::RawSql;
use crate::ops::common::Names;
use crate::plan::{Operation, PlanBuilder, PlanContext, PlanError};
use crate::schema::Schema;
use crate::step::{Action, LockLevel, Step, Work};

/// `sql`: runs `up` on start (or on complete when `onComplete` is set); rollback runs `down`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpRawSql {
    pub up: RawSql,
    #[serde(default)]
    pub down: RawSql,
    /// Run `up` on complete instead of on start.
    #[serde(default, rename = "onComplete")]
    pub on_complete: bool,
}

impl OpRawSql {
    /// pgroll's name for the operation: its key in the file.
    pub const KIND: &'static str = "sql";

    /// The identifiers this operation names, for the early checks in [`crate::format`].
    pub(crate) fn names<'a>(&'a self, _names: &mut Names<'a>) {
        // Raw SQL names nothing pgbaton can check.
    }
}

impl OpRawSql {
    fn step(&self, title: &str, sql: &RawSql) -> Step {
        Step {
            title: title.to_string(),
            table: None,
            lock: LockLevel::Unknown,
            work: Work::Unknown,
            action: Action::UserSql(sql.clone()),
        }
    }
}

impl Operation for OpRawSql {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    fn validate(&self, _schema: &Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        if self.up.is_empty() {
            return Err(PlanError::new("up", "the SQL to run must not be empty"));
        }
        if self.on_complete && !self.down.is_empty() {
            return Err(PlanError::new(
                "down",
                "down is not allowed with onComplete: true (the SQL runs at complete, and a \
                 completed migration is never rolled back)",
            ));
        }
        Ok(())
    }

    fn start(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        if !self.on_complete {
            plan.expand(self.step("run sql (up)", &self.up));
        }
        Ok(())
    }

    fn complete(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        if self.on_complete {
            plan.after_complete(self.step("run sql (onComplete)", &self.up));
        }
        Ok(())
    }

    fn rollback(
        &self,
        _schema: &Schema,
        _ctx: &PlanContext,
        plan: &mut PlanBuilder,
    ) -> Result<(), PlanError> {
        if !self.on_complete && !self.down.is_empty() {
            plan.undo_if_started(self.step("run sql (down)", &self.down));
        }
        Ok(())
    }

    fn apply(&self, schema: &mut Schema, _ctx: &PlanContext) -> Result<(), PlanError> {
        if !self.on_complete {
            schema.opaque = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::common::testing::{ctx, plan_error, plan_ops, render, schema, table};

    fn base() -> Schema {
        schema(vec![table("users", &[("id", "integer", false)])])
    }

    #[test]
    fn up_at_start_down_at_rollback() {
        let ops = "  - sql: {up: CREATE TABLE t (id int), down: DROP TABLE t}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        insta::assert_snapshot!("up_down", render(&plan));
        assert_eq!(plan.start[0].lock, LockLevel::Unknown);
        assert_eq!(plan.start[0].work, Work::Unknown);
        assert_eq!(
            plan.start[0].action,
            Action::UserSql(RawSql::new("CREATE TABLE t (id int)"))
        );
        assert_eq!(
            plan.rollback[0].action,
            Action::UserSql(RawSql::new("DROP TABLE t"))
        );
        assert!(plan.complete.is_empty());
        assert!(after.opaque);
        // Without down, rollback has nothing to run.
        let (plan, _) = plan_ops(&base(), &ctx(150004), "  - sql: {up: SELECT 1}\n").unwrap();
        assert!(plan.rollback.is_empty());
    }

    #[test]
    fn on_complete_runs_after_the_contract() {
        let ops = "  - rename_table: {from: users, to: people}\n  - sql: {up: ALTER TABLE people ADD COLUMN b date, onComplete: true}\n";
        let (plan, after) = plan_ops(&base(), &ctx(150004), ops).unwrap();
        insta::assert_snapshot!("on_complete", render(&plan));
        assert!(plan.start.is_empty() && plan.rollback.is_empty());
        assert_eq!(plan.complete.len(), 2);
        assert_eq!(
            plan.complete[1].action,
            Action::UserSql(RawSql::new("ALTER TABLE people ADD COLUMN b date"))
        );
        assert!(!after.opaque);
    }

    #[test]
    fn validation_errors() {
        assert_eq!(
            plan_error(&base(), &ctx(150004), "  - sql: {up: ''}\n"),
            "up: the SQL to run must not be empty"
        );
        assert_eq!(
            plan_error(
                &base(),
                &ctx(150004),
                "  - sql: {up: '  ', down: SELECT 1}\n"
            ),
            "up: the SQL to run must not be empty"
        );
        assert_eq!(
            plan_error(&base(), &ctx(150004), "  - sql: {up: SELECT 1, down: SELECT 2, onComplete: true}\n"),
            "down: down is not allowed with onComplete: true (the SQL runs at complete, and a completed migration is never rolled back)"
        );
    }

    #[test]
    fn opaque_relaxes_missing_checks_only() {
        // A table the SQL creates can be used by later operations of the same migration...
        let ops = "  - sql: {up: CREATE TABLE made (id int primary key)}\n  - rename_table: {from: made, to: made2}\n  - set_replica_identity: {table: made2, identity: {type: full}}\n";
        assert!(plan_ops(&base(), &ctx(150004), ops).is_ok());
        // ...but what the model knows exists still exists.
        assert_eq!(
            plan_error(
                &base(),
                &ctx(150004),
                "  - sql: {up: SELECT 1}\n  - create_table: {name: users, columns: []}\n"
            ),
            "name: table \"users\" already exists"
        );
    }
}
