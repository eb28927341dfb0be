//! An autovacuum worker on a table blocks every DDL step behind it, and PostgreSQL cancels it only
//! once a waiter has waited `deadlock_timeout` (1 s) — longer than pgbaton's lock timeout, so plain
//! retries could fail for minutes. The executor's watcher cancels it (non-wraparound only). This
//! test runs its own server with a 1 s autovacuum naptime and a deliberately slow autovacuum.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use pgbaton::config::ConnConfig;
use pgbaton::executor::{Event, ExecOptions, Executor, Journal, Observer};
use pgbaton::ident::{Ident, QualName};
use pgbaton::step::{LockLevel, Phase, Step};
use pgbaton_lab::cluster::{Cluster, ClusterOptions};

#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl Observer for Events {
    fn event(&self, event: &Event<'_>) {
        let text = match event {
            Event::AutovacuumCancelled { pids, .. } => format!("cancelled {pids:?}"),
            Event::LockRetry { attempt, .. } => format!("retry {attempt}"),
            _ => return,
        };
        self.0.lock().expect("events lock").push(text);
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
}

/// Starts a server where autovacuum wakes every second, and a table whose autovacuum runs
/// (very slowly) right after a mass update. Returns once a worker is vacuuming it.
async fn table_under_autovacuum() -> (Cluster, String) {
    let cluster = Cluster::start(ClusterOptions::default().setting("autovacuum_naptime", "1"))
        .expect("start cluster");
    let url = cluster.url("postgres");
    let client = connect(&url).await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text)
               WITH (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0,
                     autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1,
                     autovacuum_analyze_threshold = 2000000000);
             INSERT INTO t SELECT g, 'x' FROM generate_series(1, 50000) g;
             UPDATE t SET v = 'y';",
        )
        .await
        .expect("setup");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE backend_type = 'autovacuum worker' AND query LIKE '%public.t%'",
                &[],
            )
            .await
            .expect("poll")
            .get(0);
        if n > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no autovacuum worker started on the table within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (cluster, url)
}

fn add_column_step() -> Step {
    let table = QualName::new("public", "t");
    Step::catalog(
        "add column x",
        Some(table.clone()),
        LockLevel::AccessExclusive,
        format!("ALTER TABLE {table} ADD COLUMN x int"),
    )
}

async fn run_step(
    url: &str,
    cancel: bool,
    deadline: Duration,
) -> (pgbaton::Result<()>, Vec<String>, Duration) {
    let conn = ConnConfig::parse(url).expect("url");
    let client = pgbaton::pg::connect(&conn).await.expect("connect");
    let journal = Journal {
        state: Ident::new("pgbaton"),
        schema: "public".into(),
        migration: "m".into(),
    };
    pgbaton::state::init(&client, &journal.state)
        .await
        .expect("init");
    let opts = ExecOptions {
        lock_timeout: Duration::from_millis(300),
        lock_retry_deadline: deadline,
        cancel_autovacuum: cancel,
        ..ExecOptions::default()
    };
    let events = Events::default();
    let exec = Executor::new(&client, &conn, &journal, &opts, &events)
        .await
        .expect("executor");
    let started = Instant::now();
    let result = exec.run_phase(Phase::Start, &[add_column_step()]).await;
    let elapsed = started.elapsed();
    let events = events.0.into_inner().expect("events");
    (result, events, elapsed)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_gets_past_a_running_autovacuum() {
    let (_cluster, url) = table_under_autovacuum().await;

    // Without the watcher, the step keeps timing out behind the worker until its deadline.
    let (result, events, _) = run_step(&url, false, Duration::from_secs(3)).await;
    let err =
        result.expect_err("the step should not get its lock while autovacuum holds the table");
    assert!(
        err.to_string().contains("autovacuum"),
        "the error names the autovacuum blocker: {err}"
    );
    assert!(
        events.iter().any(|e| e.starts_with("retry")),
        "it retried: {events:?}"
    );

    // With the watcher the worker is cancelled and the step succeeds quickly.
    let (result, events, elapsed) = run_step(&url, true, Duration::from_secs(30)).await;
    result.expect("the step succeeds once the autovacuum worker is cancelled");
    assert!(
        events.iter().any(|e| e.starts_with("cancelled")),
        "an autovacuum worker was cancelled: {events:?}"
    );
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    let client = connect(&url).await;
    let has: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'x')", &[])
        .await
        .expect("check")
        .get(0);
    assert!(has, "column x was added");
}

/// The case: `complete` right after a large backfill, while the autovacuum that the
/// backfill's dead tuples trigger is running on the table, succeeds at once.
#[tokio::test(flavor = "multi_thread")]
async fn complete_right_after_a_backfill_gets_past_the_autovacuum_it_triggered() {
    use pgbaton::migrator::{Migrator, Settings};

    let cluster = Cluster::start(ClusterOptions::default().setting("autovacuum_naptime", "1"))
        .expect("start cluster");
    let url = cluster.url("postgres");
    let client = connect(&url).await;
    client
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v int)
               WITH (autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0,
                     autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1,
                     autovacuum_analyze_threshold = 2000000000);
             INSERT INTO t SELECT g, g FROM generate_series(1, 100000) g;",
        )
        .await
        .expect("setup");
    client.batch_execute("VACUUM t").await.expect("vacuum");
    let conn = ConnConfig::parse(&url).expect("url");
    let settings = Settings {
        exec: ExecOptions {
            lock_timeout: Duration::from_millis(300),
            lock_retry_deadline: Duration::from_secs(60),
            ..ExecOptions::default()
        },
        ..Settings::default()
    };
    let m = Migrator::connect(conn, settings).await.expect("migrator");
    m.init().await.expect("init");
    let mig = pgbaton::format::parse(
        "02_bigint.yaml",
        "02_bigint",
        "operations:\n  - alter_column:\n      table: t\n      column: v\n      type: bigint\n      up: v\n      down: v\n",
        pgbaton::format::FileKind::Yaml,
    )
    .expect("parse");
    m.start(&mig, false)
        .await
        .expect("start (with its backfill)");

    // The backfill left 100k dead tuples: autovacuum picks the table up within seconds.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE backend_type = 'autovacuum worker' AND query LIKE '%public.t%'",
                &[],
            )
            .await
            .expect("poll")
            .get(0);
        if n > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no autovacuum started after the backfill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    m.complete()
        .await
        .expect("complete gets past the autovacuum worker");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(10),
        "complete took {elapsed:?}"
    );
    let typ: String = client
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'v'",
            &[],
        )
        .await
        .expect("type")
        .get(0);
    assert_eq!(typ, "bigint");
}
