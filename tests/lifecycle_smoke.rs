//! The lifecycle itself, end to end through the migrator: init, the journal, version schemas,
//! concurrent migrators, and the errors that must come before any DDL runs.

mod common;

use common::lifecycle::*;

#[tokio::test]
async fn init_is_idempotent_and_status_reports_nothing_active() {
    let env = Env::new().await;
    let m = env.migrator().await;
    m.init().await.expect("second init");
    let status = m.status().await.expect("status");
    assert!(status.initialized);
    assert!(status.active.is_none());
    assert_eq!(status.completed_count, 0);
}

#[tokio::test]
async fn a_table_created_by_sql_gets_a_view_in_the_new_version() {
    let env = Env::new().await;
    let m = env.migrator().await;
    let mig = yaml(
        "01_sql_table",
        "operations:\n  - sql:\n      up: CREATE TABLE widgets (id int PRIMARY KEY, label text DEFAULT 'none')\n      down: DROP TABLE widgets\n",
    );
    m.start(&mig, false).await.expect("start");
    env.check(
        &mig,
        &[
            Check::Ok(V::New, "INSERT INTO widgets (id) VALUES (1)"),
            Check::Rows(V::New, "SELECT id, label FROM widgets", &["1|none"]),
            Check::Rows(
                V::Base,
                "SELECT count(*) FROM pg_views WHERE schemaname = 'public_01_sql_table' AND viewname = 'widgets'",
                &["1"],
            ),
        ],
        "after start",
    )
    .await;
    m.rollback(false).await.expect("rollback");
    env.check(
        &mig,
        &[Check::Rows(
            V::Base,
            "SELECT count(*) FROM pg_class WHERE relname = 'widgets'",
            &["0"],
        )],
        "after rollback",
    )
    .await;
}

#[tokio::test]
async fn a_failed_start_rolls_back_without_running_downs_of_ups_that_never_ran() {
    let env = Env::new().await;
    let m = env.migrator().await;
    let before = common::schema_dump(&env.db.url, "public");
    let mig = yaml(
        "01_fails",
        "operations:
  - sql:
      up: CREATE TABLE a (id int)
      down: DROP TABLE a
  - sql:
      up: SELECT 1/0
      down: DROP TABLE b_never_created
",
    );
    let err = m.start(&mig, false).await.expect_err("division by zero");
    let text = err.to_string();
    assert!(text.contains("22012"), "{text}");
    assert!(text.contains("rolled back"), "{text}");
    assert_eq!(before, common::schema_dump(&env.db.url, "public"));
    assert!(m.status().await.expect("status").active.is_none());
}
