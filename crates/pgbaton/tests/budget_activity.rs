//! What the latency budget's probe sees of the application on a real server
//! (`backfill::application_activity`): whether another session is busy, and how long an
//! application statement has been waiting for a row lock a pgbaton session holds — the cost of
//! a batch's row locks, which the probe's own cheap read never sees.

mod common;

use std::time::{Duration, Instant};

use common::{exec, fresh_db};
use pgbaton::backfill::{self, Activity, BACKFILL_LOCK_CLASS};
use tokio_postgres::Client;

/// Polls `application_activity` until `pred` holds (or panics after 10 s).
async fn until(looker: &Client, ours: &[i32], pred: impl Fn(&Activity) -> bool) -> Activity {
    let started = Instant::now();
    loop {
        let seen = backfill::application_activity(looker, ours).await;
        if pred(&seen) {
            return seen;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never saw it; last: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A fresh database with a table `t` of ten rows, and the session that looks at the others.
async fn table_t() -> (common::TestDb, Client) {
    let db = fresh_db().await;
    exec(
        &db.client,
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL);
         INSERT INTO t SELECT g, 0 FROM generate_series(1, 10) g",
    )
    .await;
    let looker = db.connect().await;
    (db, looker)
}

/// An application session's `UPDATE` of row 3, in the background; `Ok` once it ran.
fn update_row_3(app: Client) -> tokio::task::JoinHandle<Result<(), tokio_postgres::Error>> {
    tokio::spawn(async move {
        app.execute("UPDATE t SET v = 2 WHERE id = 3", &[])
            .await
            .map(|_| ())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_sees_an_application_waiting_for_a_batchs_row_lock() {
    let (db, looker) = table_t().await;
    // Only idle sessions besides the looker: nobody to protect, nothing waits.
    let seen = backfill::application_activity(&looker, &[]).await;
    assert_eq!(
        seen,
        Activity {
            busy: false,
            lock_wait_ms: 0.0
        }
    );

    // A pgbaton session (known by its name) holds the row locks of a batch in flight...
    let batch = db.connect().await;
    exec(
        &batch,
        "SET application_name = 'pgbaton'; BEGIN; UPDATE t SET v = 1 WHERE id <= 5",
    )
    .await;
    // ...which alone is not an application at work.
    let seen = backfill::application_activity(&looker, &[]).await;
    assert!(!seen.busy, "{seen:?}");
    // An application's update of one of those rows waits for it: busy, and the wait grows.
    let waiter = update_row_3(db.connect().await);
    let first = until(&looker, &[], |s| s.lock_wait_ms > 0.0).await;
    assert!(first.busy, "{first:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = backfill::application_activity(&looker, &[]).await;
    assert!(
        later.lock_wait_ms >= first.lock_wait_ms + 250.0,
        "{first:?} then {later:?}"
    );
    // The batch commits: the update runs, nothing waits any more.
    exec(&batch, "COMMIT").await;
    waiter
        .await
        .expect("task")
        .expect("the application's update");
    let after = until(&looker, &[], |s| s.lock_wait_ms == 0.0).await;
    assert!(!after.busy, "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_counts_only_when_a_pgbaton_session_holds_the_lock() {
    let (db, looker) = table_t().await;
    // A library caller's batch session under another name, holding the backfill's advisory
    // lock (as every backfill run does): pgbaton's all the same, found through pg_locks.
    let batch = db.connect().await;
    batch
        .execute(
            "SELECT pg_advisory_lock($1::int4, 4242)",
            &[&BACKFILL_LOCK_CLASS],
        )
        .await
        .expect("advisory lock");
    exec(
        &batch,
        "SET application_name = 'my-deployer'; BEGIN; UPDATE t SET v = 1 WHERE id <= 5",
    )
    .await;
    let ours = backfill::our_sessions(&looker).await;
    let batch_pid: i32 = batch
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    assert_eq!(ours, vec![batch_pid]);
    let waiter = update_row_3(db.connect().await);
    let seen = until(&looker, &ours, |s| s.lock_wait_ms > 0.0).await;
    assert!(seen.busy, "{seen:?}");
    // Without knowing the batch session is pgbaton's, it is an application session: busy, but
    // a wait between two application sessions is the application's own, not the fill's.
    let unknown = backfill::application_activity(&looker, &[]).await;
    assert_eq!(unknown.lock_wait_ms, 0.0, "{unknown:?}");
    assert!(unknown.busy, "{unknown:?}");
    exec(&batch, "COMMIT").await;
    waiter
        .await
        .expect("task")
        .expect("the application's update");
    until(&looker, &ours, |s| s.lock_wait_ms == 0.0).await;
}
