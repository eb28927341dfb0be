//! The executor on a real server: lock timeouts and retries, giving up with the blockers named,
//! the journal (a step done is never run twice), concurrent index builds that clean up after
//! themselves, and the lock rule.

mod common;

use std::time::{Duration, Instant};

use pgbaton::config::ConnConfig;
use pgbaton::executor::{ExecOptions, Executor, Journal, Quiet};
use pgbaton::ident::{Ident, QualName};
use pgbaton::plan::Plan;
use pgbaton::step::{Action, LockLevel, Phase, Step, Work};
use tokio_postgres::error::SqlState;

struct Ctx {
    db: common::TestDb,
    conn: ConnConfig,
    client: tokio_postgres::Client,
    journal: Journal,
}

async fn ctx() -> Ctx {
    let db = common::fresh_db().await;
    let conn = ConnConfig::parse(&db.url).expect("url");
    let client = pgbaton::pg::connect(&conn).await.expect("connect");
    let journal = Journal {
        state: Ident::new("pgbaton"),
        schema: "public".into(),
        migration: "m1".into(),
    };
    pgbaton::state::init(&client, &journal.state)
        .await
        .expect("init");
    db.client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g")
        .await
        .expect("table");
    Ctx {
        db,
        conn,
        client,
        journal,
    }
}

impl Ctx {
    async fn run(&self, opts: &ExecOptions, steps: &[Step]) -> pgbaton::Result<()> {
        let exec = Executor::new(&self.client, &self.conn, &self.journal, opts, &Quiet)
            .await
            .expect("executor");
        exec.run_phase(Phase::Start, steps).await
    }
}

fn t() -> QualName {
    QualName::new("public", "t")
}

fn add_column(name: &str) -> Step {
    Step::catalog(
        format!("add column {name}"),
        Some(t()),
        LockLevel::AccessExclusive,
        format!("ALTER TABLE {} ADD COLUMN {} int", t(), Ident::new(name)),
    )
}

fn opts(deadline: Duration) -> ExecOptions {
    ExecOptions {
        lock_timeout: Duration::from_millis(200),
        lock_retry_deadline: deadline,
        ..ExecOptions::default()
    }
}

#[tokio::test]
async fn gives_up_at_the_deadline_naming_the_blocker() {
    let c = ctx().await;
    let holder = common::connect(&c.db.url).await;
    holder
        .batch_execute("SET application_name = 'long_report'; BEGIN; SELECT count(*) FROM t")
        .await
        .expect("hold lock");
    let started = Instant::now();
    let err = c
        .run(&opts(Duration::from_secs(2)), &[add_column("x")])
        .await
        .expect_err("must give up");
    let elapsed = started.elapsed();
    let text = err.to_string();
    assert!(matches!(err, pgbaton::Error::LockDeadline { .. }), "{text}");
    assert!(
        text.contains("long_report"),
        "names the blocker's application: {text}"
    );
    assert!(
        text.contains("SELECT count(*) FROM t"),
        "shows the blocker's query: {text}"
    );
    assert!(
        text.contains("idle in transaction"),
        "shows the blocker's state: {text}"
    );
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );
    // Nothing changed, and the journal of a step that never ran has no row to mark done.
    let n: i64 = c
        .db
        .client
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'x'",
            &[],
        )
        .await
        .expect("q")
        .get(0);
    assert_eq!(n, 0);
    holder.batch_execute("ROLLBACK").await.expect("release");
}

#[tokio::test]
async fn retries_until_the_blocker_goes_and_never_queues_the_application() {
    let c = ctx().await;
    let holder = common::connect(&c.db.url).await;
    holder
        .batch_execute("BEGIN; SELECT count(*) FROM t")
        .await
        .expect("hold lock");
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        holder.batch_execute("ROLLBACK").await.expect("release");
        holder
    });
    // While the step is retrying, readers are never stuck behind it for longer than the lock
    // timeout: measure a reader's worst latency during the wait.
    let reader = common::connect(&c.db.url).await;
    let probe = tokio::spawn(async move {
        let mut worst = Duration::ZERO;
        let until = Instant::now() + Duration::from_millis(1400);
        while Instant::now() < until {
            let t0 = Instant::now();
            reader
                .query_one("SELECT count(*) FROM t", &[])
                .await
                .expect("read");
            worst = worst.max(t0.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        worst
    });
    c.run(&opts(Duration::from_secs(30)), &[add_column("x")])
        .await
        .expect("succeeds after release");
    let worst = probe.await.expect("probe");
    assert!(
        worst < Duration::from_millis(200 + 150),
        "a reader waited {worst:?} behind the queued ALTER"
    );
    release.await.expect("released");
}

#[tokio::test]
async fn a_step_journaled_done_is_not_run_again() {
    let c = ctx().await;
    let plan = Plan {
        start: vec![add_column("a"), add_column("b")],
        ..Plan::default()
    };
    pgbaton::state::insert_migration(
        &c.client,
        &c.journal.state,
        pgbaton::state::NewMigration {
            schema: "public",
            name: "m1",
            parent: None,
            version_schema: "public_m1",
            document: &serde_json::json!({"operations": []}),
            plan: &plan,
        },
    )
    .await
    .expect("journal");
    c.run(&opts(Duration::from_secs(5)), &plan.start)
        .await
        .expect("first run");
    // A second run would fail on "column already exists" if it ran anything again.
    c.run(&opts(Duration::from_secs(5)), &plan.start)
        .await
        .expect("second run skips done steps");
    let statuses =
        pgbaton::state::step_statuses(&c.client, &c.journal.state, "public", "m1", Phase::Start)
            .await
            .expect("statuses");
    assert_eq!(statuses, vec!["done", "done"]);
}

#[tokio::test]
async fn a_failed_step_is_journaled_with_its_error() {
    let c = ctx().await;
    let plan = Plan {
        start: vec![add_column("a"), add_column("a")],
        ..Plan::default()
    };
    pgbaton::state::insert_migration(
        &c.client,
        &c.journal.state,
        pgbaton::state::NewMigration {
            schema: "public",
            name: "m1",
            parent: None,
            version_schema: "public_m1",
            document: &serde_json::json!({}),
            plan: &plan,
        },
    )
    .await
    .expect("journal");
    let err = c
        .run(&opts(Duration::from_secs(5)), &plan.start)
        .await
        .expect_err("duplicate column");
    assert!(
        err.to_string().contains(SqlState::DUPLICATE_COLUMN.code()),
        "{err}"
    );
    let row = c
        .client
        .query_one(
            "SELECT status, error FROM pgbaton.steps WHERE migration = 'm1' AND phase = 'start' AND ordinal = 1",
            &[],
        )
        .await
        .expect("row");
    assert_eq!(row.get::<_, String>(0), "failed");
    assert!(row
        .get::<_, Option<String>>(1)
        .unwrap_or_default()
        .contains("already exists"));
}

#[tokio::test]
async fn an_invalid_leftover_index_is_dropped_and_rebuilt() {
    let c = ctx().await;
    // A unique build that fails on duplicates leaves an INVALID index behind.
    c.db.client
        .batch_execute("UPDATE t SET v = 'dup' WHERE id IN (1, 2)")
        .await
        .expect("dups");
    let index = QualName::new("public", "t_v_key");
    let sql = format!(
        "CREATE UNIQUE INDEX CONCURRENTLY {} ON {} (v)",
        index.name,
        t()
    );
    let build = Step {
        title: "build unique index".into(),
        table: Some(t()),
        lock: LockLevel::ShareUpdateExclusive,
        work: Work::Concurrent,
        action: Action::CreateIndexConcurrently {
            index: index.clone(),
            sql: sql.clone(),
        },
    };
    let err = c
        .run(&opts(Duration::from_secs(5)), std::slice::from_ref(&build))
        .await
        .expect_err("duplicates");
    assert!(
        err.to_string().contains(SqlState::UNIQUE_VIOLATION.code()),
        "{err}"
    );
    let leftovers: i64 =
        c.db.client
            .query_one(
                "SELECT count(*) FROM pg_class WHERE relname = 't_v_key'",
                &[],
            )
            .await
            .expect("q")
            .get(0);
    assert_eq!(leftovers, 0, "the failed build's invalid index is dropped");
    // An invalid index left by a build that was killed: made by hand here.
    c.db.client
        .batch_execute(&sql)
        .await
        .expect_err("fails again, leaving the index");
    let valid: bool =
        c.db.client
            .query_one(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.t_v_key'::regclass",
                &[],
            )
            .await
            .expect("q")
            .get(0);
    assert!(!valid);
    c.db.client
        .batch_execute("UPDATE t SET v = 'v2' WHERE id = 2")
        .await
        .expect("fix dups");
    c.run(&opts(Duration::from_secs(5)), &[build])
        .await
        .expect("rebuilt");
    let valid: bool =
        c.db.client
            .query_one(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.t_v_key'::regclass",
                &[],
            )
            .await
            .expect("q")
            .get(0);
    assert!(valid);
}

#[test]
fn the_lock_rule_refuses_a_scan_under_a_blocking_lock() {
    let bad = Step {
        title: "validate under AEL".into(),
        table: Some(t()),
        lock: LockLevel::AccessExclusive,
        work: Work::Scan,
        action: Action::Transaction(vec!["ALTER TABLE t VALIDATE CONSTRAINT c".into()]),
    };
    let plan = Plan {
        complete: vec![bad],
        ..Plan::default()
    };
    let v = plan.lock_violations();
    assert_eq!(v.len(), 1);
    assert!(v[0].contains("scans table under ACCESS EXCLUSIVE"), "{v:?}");
}
