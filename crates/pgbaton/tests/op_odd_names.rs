//! Every operation with odd identifiers — capitals, spaces, single and double quotes in the schema,
//! table, column, constraint and index names — in a non-public schema, through the whole
//! lifecycle and both versions' views. One table, one case per operation kind ([`Op::KINDS`]):
//! a new operation fails this test until it has its case here. Nothing may land in `public`.

mod common;

use std::collections::BTreeSet;

use columns::*;
use common::lifecycle::*;
use constraints::*;
use pgbaton::ops::Op;
use tables::*;

#[path = "odd_names/columns.rs"]
mod columns;
#[path = "odd_names/constraints.rs"]
mod constraints;
#[path = "odd_names/tables.rs"]
mod tables;

/// One operation's case: the schema it runs in (created by [`Env::with_schema`], the migrator's
/// schema) and the lifecycle run there.
struct OddCase {
    schema: &'static str,
    case: Case,
}

/// Builds one operation's case.
type MakeCase = fn() -> OddCase;

/// The cases, keyed by the operation kind each one's migration consists of.
const CASES: &[(&str, MakeCase)] = &[
    ("add_column", add_column),
    ("alter_column", alter_column),
    ("create_constraint", create_constraint),
    ("create_index", create_index),
    ("create_table", create_table),
    ("drop_column", drop_column),
    ("drop_constraint", drop_constraint),
    ("drop_index", drop_index),
    ("drop_multicolumn_constraint", drop_multicolumn_constraint),
    ("drop_table", drop_table),
    ("sql", raw_sql),
    ("rename_column", rename_column),
    ("rename_constraint", rename_constraint),
    ("rename_table", rename_table),
    ("set_replica_identity", set_replica_identity),
];

#[tokio::test]
async fn every_operation_with_odd_names_in_another_schema() {
    let covered: BTreeSet<&str> = CASES.iter().map(|(kind, _)| *kind).collect();
    let kinds: BTreeSet<&str> = Op::KINDS.iter().copied().collect();
    assert_eq!(covered, kinds, "one odd-names case per operation kind");
    assert_eq!(CASES.len(), kinds.len(), "one case per kind, no repeats");

    // Each case has a database of its own: run them side by side, then report every failure.
    let mut tasks = Vec::new();
    for &(kind, make) in CASES {
        let OddCase { schema, case } = make();
        assert!(
            !case.migration.operations.is_empty()
                && case.migration.operations.iter().all(|op| op.kind() == kind),
            "the {kind} case must migrate with {kind} operations only"
        );
        let task = tokio::spawn(async move {
            let env = Env::with_schema(schema).await;
            run_in(&env, case).await;
            let public = common::scalar_i64(
                &env.db.client,
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname = 'public'",
            )
            .await;
            assert_eq!(public, 0, "nothing is created in public");
        });
        tasks.push((kind, task));
    }
    let mut failed = Vec::new();
    for (kind, task) in tasks {
        if let Err(e) = task.await {
            let why = match e.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(no message)".to_string()),
                Err(e) => e.to_string(),
            };
            failed.push(format!("{kind}: {why}"));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} operations failed with odd names:\n{}",
        failed.len(),
        CASES.len(),
        failed.join("\n")
    );
}
