//! Tests of the client workload (`pgbaton_lab::workload`) against a real server: counts, stalls under
//! a held lock, failures by SQLSTATE, reconnection, the write log and version pinning.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use pgbaton_lab::workload::{
    ClientSpec, OpMix, ParamGen, QueryKind, QuerySpec, UsersTable, Value, VersionPin, Workload,
    WorkloadConfig, Written, ABANDONED, CONNECTION,
};

use common::{exec, fresh_db, TestDb};
use tokio_postgres::error::SqlState;

const ROWS: i64 = 1_000;

/// A fresh database holding the demo table `users` with ids `1..=ROWS`.
async fn users_db() -> TestDb {
    let db = fresh_db().await;
    exec(&db.client, &UsersTable::new("users").create_sql(ROWS)).await;
    db
}

fn config(db: &TestDb) -> WorkloadConfig {
    WorkloadConfig::from_url(&db.url).expect("the test URL parses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_run_counts_queries_without_failures() {
    let db = users_db().await;
    let mut config = Workload::users_mix(config(&db).pg, 4, VersionPin::Base, ROWS);
    config.duration = Some(Duration::from_secs(2));
    let report = Workload::run(config).await.expect("the workload runs");
    eprintln!("{report}");

    assert_eq!(report.clients, 4);
    assert!(report.total.queries > 0, "{report}");
    assert_eq!(report.total.failures, 0, "{report}");
    assert!(report.total.failures_by_code.is_empty(), "{report}");
    assert_eq!(report.phases.len(), 1);
    let baseline = report.phase("baseline").expect("the initial phase");
    assert_eq!(baseline.queries, report.total.queries);
    assert!(
        (1.9..3.0).contains(&baseline.wall_s),
        "wall {}",
        baseline.wall_s
    );
    assert!(baseline.throughput_qps > 0.0);
    let l = &baseline.latency;
    assert!(
        0 < l.p50_us && l.p50_us <= l.p90_us && l.p90_us <= l.p99_us && l.p99_us <= l.max_us,
        "{l:?}"
    );
    assert_eq!((report.reconnects, report.abandoned), (0, 0));
    assert!(
        report
            .longest_stall
            .as_ref()
            .expect("a stall is always measured")
            .duration()
            < Duration::from_millis(500),
        "{report}"
    );

    // Every committed write is in the table.
    assert!(report.writes_logged > 0 && report.writes_logged == report.writes.len());
    let kinds: Vec<QueryKind> = report.writes.entries().iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&QueryKind::Update) && kinds.contains(&QueryKind::Insert));
    let mismatches = report
        .writes
        .verify_table(&db.client, &UsersTable::new("users").verify_sql())
        .await
        .expect("reading the table back");
    assert!(mismatches.is_empty(), "{mismatches:#?}");

    // The JSON form carries the same numbers.
    let json: serde_json::Value =
        serde_json::from_str(&report.to_json().expect("serializes")).expect("valid JSON");
    assert_eq!(json["total"]["queries"], report.total.queries);
    assert_eq!(json["phases"][0]["name"], "baseline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_shows_as_a_stall_and_a_max_latency() {
    let db = users_db().await;
    let config = Workload::users_mix(config(&db).pg, 4, VersionPin::Base, ROWS);
    let handle = Workload::start(config).await.expect("the workload starts");
    tokio::time::sleep(Duration::from_millis(300)).await;

    handle.mark_phase("lock");
    // Let queries complete inside the phase before the lock is taken.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let progress = handle.progress();
    assert_eq!(progress.phase, "lock");
    assert!(
        progress.queries > 0 && progress.failures == 0,
        "{progress:?}"
    );
    let locker = db.connect().await;
    exec(&locker, "BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    exec(&locker, "COMMIT").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.mark_phase("after");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = handle.stop().await;
    eprintln!("{report}");

    let names: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["baseline", "lock", "after"]);
    assert_eq!(report.total.failures, 0, "{report}");
    let stall = report.longest_stall.as_ref().expect("a stall");
    assert!(stall.duration() >= Duration::from_secs(1), "{report}");
    assert_eq!(
        (stall.phase.as_str(), stall.ended_in.as_str()),
        ("lock", "lock"),
        "{report}"
    );
    let lock = report.phase("lock").expect("phase lock");
    assert!(lock.longest_stall() >= Duration::from_secs(1), "{report}");
    assert!(lock.latency.max() >= Duration::from_millis(900), "{report}");
    assert_eq!(report.total.latency.max_us, lock.latency.max_us);
    for quiet in ["baseline", "after"] {
        let p = report.phase(quiet).expect("phase");
        assert!(p.queries > 0, "{report}");
        assert!(p.longest_stall() < Duration::from_millis(500), "{report}");
        assert!(p.latency.max() < Duration::from_millis(500), "{report}");
    }
    // Nothing failed, so the longest outage is the stall.
    assert_eq!(report.longest_outage.as_ref(), Some(stall));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_table_counts_failures_by_sqlstate() {
    let db = users_db().await;
    let mut config = Workload::users_mix(config(&db).pg, 3, VersionPin::Base, ROWS);
    // A client in SET LOCAL transactions must roll each failed one back (else: 25P02).
    config.clients.extend(UsersTable::new("users").clients(
        1,
        VersionPin::SetLocal("v1".into()),
        &OpMix::default(),
    ));
    let handle = Workload::start(config).await.expect("the workload starts");
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.mark_phase("dropped");
    exec(&db.client, "DROP TABLE users").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = handle.stop().await;
    eprintln!("{report}");

    let baseline = report.phase("baseline").expect("baseline");
    assert!(baseline.queries > 0 && baseline.failures == 0, "{report}");
    let dropped = report.phase("dropped").expect("dropped");
    let undefined_table = dropped.failures_with(SqlState::UNDEFINED_TABLE.code());
    assert!(undefined_table > 0, "{report}");
    // Queries that completed before the DROP was granted may count in the phase; all failures
    // are 42P01, none is a lost connection.
    assert_eq!(dropped.failures, undefined_table, "{report}");
    assert_eq!(
        report.total.failures_with(SqlState::UNDEFINED_TABLE.code()),
        undefined_table
    );
    assert_eq!(report.total.failures_by_code.len(), 1, "{report}");
    assert_eq!(report.reconnects, 0);
    // Failing fast is no stall, but it is an outage.
    let outage = report.longest_outage.as_ref().expect("an outage");
    assert!(outage.duration() >= Duration::from_millis(400), "{report}");
    let failures_line = format!("failures: {} ×", SqlState::UNDEFINED_TABLE.code());
    assert!(report.to_string().contains(&failures_line), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_cancels_queries_still_blocked_after_the_grace_period() {
    let db = users_db().await;
    let mut config = Workload::users_mix(config(&db).pg, 4, VersionPin::Base, ROWS);
    config.stop_grace = Duration::from_millis(200);
    let handle = Workload::start(config).await.expect("the workload starts");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let locker = db.connect().await;
    exec(&locker, "BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = std::time::Instant::now();
    let report = handle.stop().await;
    eprintln!("{report}");
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(3), "stop took {took:?}");

    // Every client was blocked: each query is abandoned, a failure with its latency so far.
    assert_eq!(report.abandoned, 4, "{report}");
    assert_eq!(report.total.failures, 4, "{report}");
    assert_eq!(report.total.failures_with(ABANDONED), 4, "{report}");
    assert!(
        report.total.latency.max() >= Duration::from_millis(450),
        "{report}"
    );
    // The stall runs to the end of the run.
    let stall = report.longest_stall.as_ref().expect("a stall");
    assert!(stall.duration() >= Duration::from_millis(450), "{report}");
    assert!(
        (stall.started_at_s + stall.duration_ms / 1e3 - report.elapsed_s).abs() < 1e-6,
        "{report}"
    );

    // The cancelled queries no longer wait on the lock, and the sessions go away.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left: i64 = db
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND application_name LIKE 'pgbaton-workload %'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} workload sessions remain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    exec(&locker, "COMMIT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reconnect_after_their_sessions_are_terminated() {
    let db = users_db().await;
    let mut config = Workload::users_mix(config(&db).pg, 3, VersionPin::Base, ROWS);
    config.reconnect_delay = Duration::from_millis(20);
    let handle = Workload::start(config).await.expect("the workload starts");
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.mark_phase("terminated");
    let terminated = db
        .client
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name LIKE 'pgbaton-workload %'",
            &[],
        )
        .await
        .expect("terminating the workload's sessions");
    assert_eq!(terminated.len(), 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    handle.mark_phase("after");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = handle.stop().await;
    eprintln!("{report}");

    assert_eq!(report.reconnects, 3, "{report}");
    let t = report.phase("terminated").expect("phase");
    let lost = t.failures_with(SqlState::ADMIN_SHUTDOWN.code()) + t.failures_with(CONNECTION);
    assert!(lost >= 1, "{report}");
    assert_eq!(t.failures, lost, "{report}");
    let after = report.phase("after").expect("phase");
    assert!(after.queries > 0 && after.failures == 0, "{report}");
    let mismatches = report
        .writes
        .verify_table(&db.client, &UsersTable::new("users").verify_sql())
        .await
        .expect("reading the table back");
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_log_matches_the_table_across_versions() {
    let db = users_db().await;
    // Version v2 renames `name` to `full_name`, through a view (updatable, as pgbaton's are).
    exec(
        &db.client,
        "CREATE SCHEMA v2; \
         CREATE VIEW v2.users AS SELECT id, name AS full_name, email, created_at FROM public.users",
    )
    .await;
    let old = UsersTable::new("users");
    let new = UsersTable::new("users").with_name_column("full_name");
    let mix = OpMix {
        read: 40,
        update: 30,
        insert: 15,
        delete: 15,
    };
    let mut config = config(&db);
    config.max_id = ROWS;
    config.max_queries = Some(3_000);
    config.clients = old.clients(2, VersionPin::Base, &mix);
    config
        .clients
        .extend(new.clients(2, VersionPin::SearchPath("v2".into()), &mix));
    config
        .clients
        .extend(old.clone().in_schema("public").clients(
            1,
            VersionPin::SetLocal("v1".into()),
            &mix,
        ));
    let report = Workload::run(config).await.expect("the workload runs");
    eprintln!("{report}");

    assert_eq!(report.total.queries, 3_000, "{report}");
    assert_eq!(report.total.failures, 0, "{report}");
    let log = &report.writes;
    for version in ["base", "v2", "v1"] {
        for kind in [QueryKind::Update, QueryKind::Insert, QueryKind::Delete] {
            assert!(
                log.entries()
                    .iter()
                    .any(|e| &*e.version == version && e.kind == kind),
                "no logged {kind} from version {version}"
            );
        }
    }
    assert!(log.entries().iter().all(|e| !e.in_doubt));
    assert!(log
        .entries()
        .windows(2)
        .all(|w| w[0].committed_at <= w[1].committed_at));

    let mismatches = log
        .verify_table(&db.client, &old.verify_sql())
        .await
        .expect("reading the table back");
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    // Read through the new version, the same check holds.
    let through_v2 = log
        .verify_table(&db.client, "SELECT id, full_name FROM v2.users")
        .await
        .expect("reading the view back");
    assert!(through_v2.is_empty(), "{through_v2:#?}");

    // The check has teeth: a lost update, a resurrected row and a vanished row are all caught.
    let expected = log.last_value_per_key();
    let updated = expected
        .iter()
        .find(|(_, e)| matches!(e.last().map(|l| &l.written), Some(Written::Value(_))))
        .map(|(k, _)| *k)
        .expect("a key whose last write stored a value");
    let deleted = expected
        .iter()
        .find(|(_, e)| matches!(e.last().map(|l| &l.written), Some(Written::Deleted)))
        .map(|(k, _)| *k)
        .expect("a key whose last write deleted it");
    exec(
        &db.client,
        &format!(
            "UPDATE users SET name = 'lost update' WHERE id = {updated}; \
             INSERT INTO users (id, name, email) VALUES ({deleted}, 'back', 'b@example.com')"
        ),
    )
    .await;
    let mismatches = log
        .verify_table(&db.client, &old.verify_sql())
        .await
        .expect("reading the table back");
    let keys: Vec<i64> = mismatches.iter().map(|m| m.key).collect();
    let mut want = vec![updated, deleted];
    want.sort_unstable();
    assert_eq!(keys, want, "{mismatches:#?}");
    let lost = mismatches
        .iter()
        .find(|m| m.key == updated)
        .expect("listed");
    assert_eq!(lost.actual, Some(Value::from("lost update")));
    assert!(
        lost.to_string().contains("the table has 'lost update'"),
        "{lost}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_local_pins_pgbaton_version_per_transaction() {
    let db = fresh_db().await;
    exec(
        &db.client,
        "CREATE TABLE probe (id bigint PRIMARY KEY, tag text NOT NULL, version text)",
    )
    .await;
    let probe = |tag: &str| {
        QuerySpec::insert(
            "INSERT INTO probe (id, tag, version) \
             VALUES ($1, $2, current_setting('pgbaton.version', true))",
            vec![ParamGen::FreshId, ParamGen::Const(Value::from(tag))],
        )
        .logged(1, Some(2))
    };
    let odd = "it's a \\ version";
    let mut config = config(&db);
    config.max_queries = Some(600);
    config.clients = vec![
        ClientSpec::new("pinned", VersionPin::SetLocal("v2".into())).with(1, probe("v2")),
        ClientSpec::new("odd", VersionPin::SetLocal(odd.into())).with(1, probe("odd")),
        ClientSpec::new("base", VersionPin::Base).with(1, probe("base")),
    ];
    let report = Workload::run(config).await.expect("the workload runs");
    eprintln!("{report}");
    assert_eq!(report.total.failures, 0, "{report}");
    assert_eq!(report.writes.len(), 600);

    let rows = db
        .client
        .query(
            "SELECT tag, version, count(*) FROM probe GROUP BY 1, 2 ORDER BY 1",
            &[],
        )
        .await
        .expect("reading the probe");
    let seen: BTreeMap<String, (Option<String>, i64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let versions: Vec<(&str, Option<&str>)> = seen
        .iter()
        .map(|(tag, (version, _))| (tag.as_str(), version.as_deref()))
        .collect();
    // One version per client: set in every transaction of a pinned client, never in the base one.
    assert_eq!(
        versions,
        [("base", None), ("odd", Some(odd)), ("v2", Some("v2"))]
    );
    assert!(seen.values().all(|(_, n)| *n > 0));
    assert_eq!(seen.values().map(|(_, n)| n).sum::<i64>(), 600);

    // The write log names each client's version.
    for entry in report.writes.entries() {
        let tag = match &entry.written {
            Written::Value(Value::Text(t)) => t.as_str(),
            other => panic!("unexpected logged value {other:?}"),
        };
        let want = match tag {
            "odd" => odd,
            t => t,
        };
        assert_eq!(&*entry.version, want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configurations_are_refused_before_connecting() {
    let db = fresh_db().await;
    let mut unbounded = Workload::users_mix(config(&db).pg, 1, VersionPin::Base, ROWS);
    assert!(matches!(
        Workload::run(unbounded.clone()).await,
        Err(pgbaton_lab::workload::WorkloadError::Unbounded)
    ));
    unbounded.clients.clear();
    assert!(matches!(
        Workload::start(unbounded).await,
        Err(pgbaton_lab::workload::WorkloadError::NoClients)
    ));
    // A pin to a schema that does not exist fails at start, naming the client.
    let mut missing = Workload::users_mix(
        config(&db).pg,
        1,
        VersionPin::SearchPath("no such schema".into()),
        ROWS,
    );
    missing.duration = Some(Duration::from_millis(100));
    // SET search_path accepts a missing schema; the table is then not found: 42P01 per query.
    let report = Workload::run(missing).await.expect("runs");
    assert!(
        report.total.failures_with(SqlState::UNDEFINED_TABLE.code()) > 0,
        "{report}"
    );
    assert_eq!(report.total.failures, report.total.queries, "{report}");
    // An unreachable server fails at start.
    let nowhere =
        WorkloadConfig::from_url("postgresql://postgres@127.0.0.1:1/postgres").expect("parses");
    let refused = Workload::users_mix(nowhere.pg, 1, VersionPin::Base, ROWS);
    let err = Workload::start(refused)
        .await
        .err()
        .expect("cannot connect");
    assert!(err.to_string().contains("base-1"), "{err}");
}
