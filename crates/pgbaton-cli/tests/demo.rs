//! `pgbaton demo` end to end, through its library function: a throwaway cluster, a busy table,
//! the demo migration under clients of both releases, and the report's promises — no failed
//! query through start, backfill and complete, the migration completed, the final schema right,
//! every committed write present, and nothing left behind (the cluster, or the demo's schemas of
//! an existing database).

#[path = "../../pgbaton/tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use pgbaton::executor::Quiet;
use pgbaton_lab::demo::{self, DemoDatabase, DemoError, DemoOptions, DemoReport, Note, RunReport};

use common::{exec, fresh_db};

const ROWS: u64 = 20_000;

fn options(database: DemoDatabase, compare_naive: bool) -> DemoOptions {
    DemoOptions {
        database,
        rows: ROWS,
        baseline: Duration::from_millis(1500),
        overlap: Duration::from_millis(1500),
        after: Duration::from_millis(1500),
        compare_naive,
        ..DemoOptions::default()
    }
}

async fn run_demo(options: DemoOptions) -> Result<DemoReport, DemoError> {
    let notes: demo::NoteSink = Arc::new(|note: &Note| eprintln!("{note}"));
    demo::run(options, Arc::new(Quiet), notes).await
}

/// What every clean pgbaton run must show.
fn assert_clean_pgbaton_run(p: &RunReport) {
    assert!(
        p.completed,
        "the migration did not complete: {:?}\n{p}",
        p.error
    );
    assert_eq!(
        p.failures(),
        0,
        "failed queries: {:?}\n{p}",
        p.failures_by_code()
    );
    assert!(p.schema_problems.is_empty(), "{:?}", p.schema_problems);
    assert_eq!(p.derived_mismatches, 0, "rows with a wrong email_domain");
    assert_eq!(p.primary_key, vec!["id".to_string()]);
    let columns: Vec<(&str, &str, bool)> = p
        .final_schema
        .iter()
        .map(|c| (c.name.as_str(), c.data_type.as_str(), c.nullable))
        .collect();
    for expected in [
        ("id", "bigint", false),
        ("full_name", "text", false),
        ("email", "text", false),
        ("email_domain", "text", false),
    ] {
        assert!(
            columns.contains(&expected),
            "{expected:?} not in {columns:?}"
        );
    }
    assert_eq!(columns.len(), 5, "{columns:?}");

    // Both releases ran and wrote, and every committed write is in the table.
    let old = p.old.as_ref().expect("the old release ran");
    let new = p.new.as_ref().expect("the new release ran");
    assert!(old.writes_logged > 0 && new.writes_logged > 0, "{p}");
    assert_eq!(p.writes.logged, old.writes_logged + new.writes_logged);
    assert_eq!(p.writes.lost, 0, "lost writes: {:?}", p.writes.examples);

    // The old release ran from the baseline through start; the new one from its schema's
    // creation through complete to the end; each phase really had traffic.
    for (report, phase) in [
        (old, "baseline"),
        (old, "both versions"),
        (new, "both versions"),
        (new, "after"),
    ] {
        let ph = report
            .phase(phase)
            .unwrap_or_else(|| panic!("no phase {phase}:\n{p}"));
        assert!(ph.queries > 0, "no queries in {phase}:\n{p}");
        assert_eq!(ph.failures, 0, "{phase}:\n{p}");
    }
    assert!(
        old.phase("start: backfill").is_some(),
        "the old release ran during the backfill:\n{p}"
    );
    assert!(
        new.phase("complete").is_some(),
        "the new release ran during complete:\n{p}"
    );
    assert!(
        old.phase("complete").is_none(),
        "the old release was retired before complete"
    );
    let timeline: Vec<&str> = p.timeline.iter().map(|t| t.name.as_str()).collect();
    for phase in [
        "baseline",
        "start: expand",
        "start: backfill",
        "both versions",
        "complete",
        "after",
    ] {
        assert!(timeline.contains(&phase), "{phase} not in {timeline:?}");
    }

    // The backfill walked every loaded row (and the rows the old release inserted meanwhile).
    let backfill = p.backfills.first().expect("a backfill ran");
    assert!(backfill.rows >= ROWS, "{backfill:?}");
    assert!(backfill.rows_per_second > 0.0);
    assert!(p.steps.iter().any(|s| s.phase == "complete"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_on_a_throwaway_cluster_loses_nothing_and_cleans_up() {
    let report = run_demo(options(
        DemoDatabase::Throwaway(demo::demo_cluster_options()),
        true,
    ))
    .await
    .expect("the demo runs");
    eprintln!("{report}");
    assert_clean_pgbaton_run(&report.pgbaton);
    assert!(report.ok());

    // The plain ALTER ran on its copy under the same workload, and ended in the same schema.
    let naive = report.naive.as_ref().expect("--compare-naive ran");
    assert!(naive.completed, "{naive}");
    assert!(
        naive.schema_problems.is_empty(),
        "{:?}",
        naive.schema_problems
    );
    assert_eq!(naive.writes.lost, 0, "{:?}", naive.writes.examples);
    assert!(naive
        .old
        .as_ref()
        .is_some_and(|r| r.phase("baseline").is_some_and(|p| p.queries > 0)));
    assert!(naive
        .new
        .as_ref()
        .is_some_and(|r| r.phase("after").is_some_and(|p| p.queries > 0)));

    // The JSON report carries the same numbers.
    let json: serde_json::Value =
        serde_json::from_str(&report.to_json().expect("json")).expect("valid JSON");
    assert_eq!(json["pgbaton"]["completed"], true);
    assert_eq!(json["pgbaton"]["writes"]["lost"], 0);
    assert_eq!(json["environment"]["rows"], ROWS);
    assert!(json["naive"]["timeline"].is_array());

    // The cluster is gone.
    let dir = report
        .environment
        .cluster_dir
        .as_deref()
        .expect("a throwaway cluster has a directory");
    assert!(
        !std::path::Path::new(dir).exists(),
        "the cluster directory {dir} was left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_on_an_existing_database_drops_only_its_own_schemas() {
    let db = fresh_db().await;
    exec(
        &db.client,
        "CREATE SCHEMA app; CREATE TABLE app.keep (x int); INSERT INTO app.keep VALUES (1)",
    )
    .await;
    let report = run_demo(options(DemoDatabase::Existing(db.url.clone()), false))
        .await
        .expect("the demo runs");
    eprintln!("{report}");
    assert_clean_pgbaton_run(&report.pgbaton);
    assert!(report.naive.is_none());
    assert_eq!(report.environment.database, "existing database");

    let schemas: Vec<String> = db
        .client
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'pgbaton%' ORDER BY 1",
            &[],
        )
        .await
        .expect("list schemas")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(schemas.is_empty(), "left behind: {schemas:?}");
    let kept: i64 = db
        .client
        .query_one("SELECT count(*) FROM app.keep", &[])
        .await
        .expect("the user's table is untouched")
        .get(0);
    assert_eq!(kept, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_refuses_a_schema_it_did_not_create() {
    let db = fresh_db().await;
    exec(
        &db.client,
        &format!(
            "CREATE SCHEMA {0}; CREATE TABLE {0}.mine (x int)",
            demo::DEMO_SCHEMA
        ),
    )
    .await;
    let err = run_demo(options(DemoDatabase::Existing(db.url.clone()), false))
        .await
        .expect_err("the demo must not take over a schema it did not create");
    assert!(
        matches!(&err, DemoError::SchemaInUse { schema } if schema == demo::DEMO_SCHEMA),
        "{err}"
    );
    let still_there: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'mine'",
            &[&demo::DEMO_SCHEMA],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(still_there, 1);
}

#[tokio::test]
async fn demo_rejects_bad_options_before_starting_anything() {
    let mut o = options(DemoDatabase::Throwaway(demo::demo_cluster_options()), false);
    o.rows = 10;
    assert!(matches!(run_demo(o).await, Err(DemoError::Rows(10))));
    let mut o = options(DemoDatabase::Throwaway(demo::demo_cluster_options()), false);
    o.new_clients = 0;
    assert!(matches!(run_demo(o).await, Err(DemoError::NoClients)));
}
