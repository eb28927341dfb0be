//! `CREATE INDEX CONCURRENTLY` beside a running application: while the latency budget is on and
//! another client session is busy, the build runs on one process (no parallel workers), leaving
//! the application the other cores; on an idle database it keeps PostgreSQL's parallel build;
//! `ExecOptions::index_build_workers` decides either way. The parallel workers of the build are
//! watched in `pg_stat_activity` while it runs.

mod common;

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::lifecycle::*;
use pgbaton::executor::ExecOptions;
use pgbaton::migrator::{Migrator, Settings};

/// A table whose index on `name` takes a second or so to build, in a database where a parallel
/// build is possible (`maintenance_work_mem` large enough for two participants).
async fn big_table() -> Env {
    let env = Env::new().await;
    env.sql(
        "CREATE TABLE big (id bigint PRIMARY KEY, name text NOT NULL);
         INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 1500000) g;
         ANALYZE big;
         DO $$ BEGIN
           EXECUTE format('ALTER DATABASE %I SET maintenance_work_mem = %L',
                          current_database(), '256MB');
         END $$",
    )
    .await;
    env
}

/// Starts (and completes) migration `name`, a `create_index` of `index` on `big(name)`, with
/// `index_build_workers`, an application session busy throughout when `app_busy`; returns the
/// most parallel workers seen at once while it ran.
async fn build(
    env: &Env,
    (name, index): (&str, &str),
    index_build_workers: Option<u32>,
    app_busy: bool,
) -> i64 {
    let migration = yaml(
        name,
        &format!(
            "operations:
  - create_index:
      name: {index}
      table: big
      columns:
        - column: name
"
        ),
    );
    let stop = Arc::new(AtomicBool::new(false));
    // The application: one session always running a statement (a 200 ms one, so that the
    // look pgbaton takes before the build practically never falls between two of them).
    let app = if app_busy {
        let (client, stop) = (client(env).await, stop.clone());
        Some(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                client
                    .batch_execute("SELECT pg_sleep(0.2)")
                    .await
                    .expect("the application's query");
            }
        }))
    } else {
        None
    };
    let most = Arc::new(AtomicI64::new(0));
    let watcher = {
        let (client, stop, most) = (client(env).await, stop.clone(), most.clone());
        // The watcher goes by pgbaton's name, so that the look before the build does not take
        // it for an application at work.
        client
            .batch_execute("SET application_name = 'pgbaton'")
            .await
            .expect("application_name");
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n: i64 = client
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity \
                          WHERE backend_type = 'parallel worker' \
                            AND datname = current_database()",
                        &[],
                    )
                    .await
                    .expect("pg_stat_activity")
                    .get(0);
                most.fetch_max(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let conn = pgbaton::config::ConnConfig::parse(&env.db.url).expect("url");
    let settings = Settings {
        exec: ExecOptions {
            index_build_workers,
            ..ExecOptions::default()
        },
        ..env.settings()
    };
    let migrator = Migrator::connect(conn, settings).await.expect("connect");
    migrator
        .start(&migration, true)
        .await
        .unwrap_or_else(|e| panic!("create_index failed: {e}"));
    stop.store(true, Ordering::Relaxed);
    watcher.await.expect("watcher");
    if let Some(app) = app {
        app.await.expect("application");
    }
    most.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_database_gets_the_parallel_build() {
    let env = big_table().await;
    assert!(build(&env, ("02_idx", "idx_big_name"), None, false).await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_application_is_busy_the_build_runs_on_one_process() {
    let env = big_table().await;
    assert_eq!(build(&env, ("02_idx", "idx_big_name"), None, true).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_option_decides_either_way() {
    let env = big_table().await;
    // Forced serial on an idle database...
    assert_eq!(build(&env, ("02_idx", "idx_one"), Some(0), false).await, 0);
    // ...and parallel beside a busy application.
    assert!(build(&env, ("03_idx", "idx_two"), Some(2), true).await >= 1);
}
