//! Running it in production, the cases `backfill_live.rs` leaves out: a parallel ctid fill
//! (no integer key) killed with -9 and resumed with another worker count; the latency budget
//! governing a parallel fill; the replication-lag series on the metrics endpoint with a real
//! standby; `pgbaton wait` after a rollback; `pgbaton set` through the binary against a running
//! `start`; the read-ahead on a large table and its flag.

#[path = "../../pgbaton/tests/common/mod.rs"]
mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::live::*;
use common::{exec, fresh_db, scalar_i64, TestDb};
use pgbaton::backfill::{self, BackfillOptions, Progress, Throttle};
use pgbaton::ident::Ident;
use tokio_postgres::Client;

/// `name text` → `varchar(100)` with `up: upper(name)`: a wrong row is easy to see.
const NAME_UPPER: &str = "operations:
  - alter_column:
      table: t
      column: name
      type: varchar(100)
      up: upper(name)
      down: lower(name)
";

/// Writes `text` as `02_change.yaml` in a directory of its own; returns (file, directory).
fn migration_file(tag: &str, text: &str) -> (String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("pgbaton-prod-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("02_change.yaml");
    std::fs::write(&file, text).expect("write");
    (file.to_str().expect("utf-8").to_string(), dir)
}

/// Rows of `t` whose new column is not `upper(name)`.
async fn wrong_rows(c: &Client) -> i64 {
    scalar_i64(
        c,
        "SELECT count(*) FROM t WHERE _pgbaton_new_name IS DISTINCT FROM upper(name)",
    )
    .await
}

/// The JSON progress reports of a `--json` run's fill.
fn fill_progress(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "backfill" && v["progress"]["pass"] == "fill")
        .map(|v| v["progress"].clone())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// (1) A parallel ctid fill, killed with -9, resumed with another worker count
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_ctid_fill_killed_9_resumes_with_another_worker_count() {
    let _alone = one_at_a_time().await;
    let db = fresh_db().await;
    let c = &db.client;
    // No key at all: the fill walks ctid pages. A hole of free pages in the middle of the
    // table: rows the fill updates that no longer fit in their page move there, into a chunk
    // another worker walks (later or at the same time); it must not update them twice.
    exec(
        c,
        "CREATE TABLE t (n int NOT NULL, name text NOT NULL, note text);
         INSERT INTO t SELECT g, 'name ' || g, repeat('x', 40) FROM generate_series(1, 80000) g;
         DELETE FROM t WHERE n BETWEEN 30001 AND 50000;",
    )
    .await;
    exec(c, "VACUUM ANALYZE t").await;
    let rows = 60_000;
    let (file, dir) = migration_file("ctid", NAME_UPPER);
    assert_eq!(common::pgbaton_run(&db.url, &["init"]).0, 0);
    let mut child = common::pgbaton_command(
        &db.url,
        &[
            "start",
            &file,
            "--backfill-workers",
            "3",
            "--backfill-batch-size",
            "500",
            "--backfill-batch-delay",
            "40",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn start");
    // Kill it once the workers have filled part of their chunks (three at once).
    let deadline = Instant::now() + Duration::from_secs(120);
    let (at_kill, busy_chunks, chunks) = loop {
        let r = c
            .query_opt(
                "SELECT coalesce(sum(rows_done), 0)::bigint, count(*) FILTER (WHERE rows_done > 0 \
                 AND status <> 'done'), count(*) FROM pgbaton.backfill_chunks",
                &[],
            )
            .await
            .unwrap();
        let (done, busy, n): (i64, i64, i64) =
            r.map_or((0, 0, 0), |r| (r.get(0), r.get(1), r.get(2)));
        if done >= rows / 4 && busy >= 3 {
            break (done, busy, n);
        }
        assert!(Instant::now() < deadline, "three workers never got going");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "start ended first"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(chunks >= 16, "{chunks} chunks");
    // The chunks are page ranges: no key columns, page bounds.
    assert_eq!(
        scalar_i64(
            c,
            "SELECT count(*) FROM pgbaton.backfills WHERE pass = 'fill' AND key_columns IS NULL"
        )
        .await,
        1
    );
    child.kill().expect("kill -9");
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(15);
    while pgbaton_sessions(c).await > 0 {
        assert!(Instant::now() < deadline, "the killed sessions linger");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let checkpointed = scalar_i64(
        c,
        "SELECT sum(rows_done)::bigint FROM pgbaton.backfill_chunks",
    )
    .await;
    assert!(checkpointed >= at_kill, "{checkpointed} < {at_kill}");
    assert!(checkpointed < rows, "it was killed part way");
    assert!(busy_chunks >= 3);
    // Exactly the rows of the committed batches have the new column; the others none yet.
    assert_eq!(
        scalar_i64(
            c,
            "SELECT count(*) FROM t WHERE _pgbaton_new_name IS NOT NULL"
        )
        .await,
        checkpointed
    );

    // The same start with two workers continues from the chunks.
    let (code, out) = common::pgbaton_run(
        &db.url,
        &["start", &file, "--backfill-workers", "2", "--json"],
    );
    assert_eq!(code, 0, "{out}");
    let progress = fill_progress(&out);
    let first = progress.first().expect("fill progress after the resume");
    assert!(
        first["rows_done"].as_i64().unwrap() >= checkpointed,
        "resumed at {}, the chunks said {checkpointed}: it restarted",
        first["rows_done"]
    );
    assert!(progress.iter().all(|p| p["settings"]["workers"] == 2));
    // Every row updated exactly once over both runs (none skipped, none moved and done again),
    // and the chunks merged into the backfill's row.
    assert_eq!(
        scalar_i64(c, "SELECT count(*) FROM pgbaton.backfill_chunks").await,
        0
    );
    assert_eq!(
        scalar_i64(
            c,
            "SELECT rows_updated FROM pgbaton.backfills WHERE pass = 'fill' AND status = 'done'"
        )
        .await,
        rows
    );
    assert_eq!(wrong_rows(c).await, 0);
    let (code, out) = common::pgbaton_run(&db.url, &["verify"]);
    assert_eq!(code, 0, "verify: {out}");
    assert!(out.contains(" 0 mismatching"), "{out}");
    let (code, out) = common::pgbaton_run(&db.url, &["complete"]);
    assert_eq!(code, 0, "complete: {out}");
    assert_eq!(
        scalar_i64(
            c,
            "SELECT count(*) FROM t WHERE name IS DISTINCT FROM upper('name ' || n)"
        )
        .await,
        0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// (2) The latency budget governs a parallel fill
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_governs_a_parallel_fill() {
    let _alone = one_at_a_time().await;
    let db = fresh_db().await;
    let c = &db.client;
    // Enough rows that the fill is still running when the recovery is measured.
    let rows = 600_000;
    let spec = table(c, "t", rows).await;
    // The application's latency as the probe sees it: a query that takes as long as the
    // `app_latency` row says (raised by the test, as a busy application would be slowed).
    exec(
        c,
        "CREATE TABLE app_latency (seconds float8 NOT NULL); INSERT INTO app_latency VALUES (0)",
    )
    .await;
    let opts = BackfillOptions {
        workers: 2,
        batch_size: Some(2_000),
        batch_delay: Duration::from_millis(20),
        max_latency_increase: Some(0.5),
        probe_query: Some("SELECT pg_sleep(seconds) FROM app_latency".into()),
        probe_interval: Duration::from_millis(20),
        budget_min_rows: 0,
        poll_interval: Duration::from_millis(100),
        ..BackfillOptions::default()
    };
    // Sessions of the probe, sampled while the fill runs: one probe for the whole run. (From
    // another database: the budget counts the sessions of the fill's database as the
    // application.)
    let probes_seen = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (seen, stop) = (probes_seen.clone(), stop_sampler.clone());
        let s = common::connect(&common::server_url("postgres")).await;
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbaton probe' \
             AND datname = '{}'",
            db.name
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = scalar_i64(&s, &sql).await;
                seen.fetch_max(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    let (handle, mut rx) = spawn_run(&db, spec, opts).await;
    // No application: nothing to protect, both workers at full speed.
    let (idle, seen) = rate_over(&mut rx, Duration::from_millis(1_200)).await;
    assert!(seen.iter().all(|p| p.settings.workers == 2));
    assert!(
        seen.iter().all(|p| p.throttle.is_none()),
        "{:?}",
        seen.iter().map(|p| &p.throttle).collect::<Vec<_>>()
    );
    let baseline = seen[0]
        .settings
        .probe_baseline_ms
        .expect("a probe baseline");
    // Two connections filling chunks.
    assert!(
        scalar_i64(
            c,
            "SELECT count(*) FROM pgbaton.backfill_chunks WHERE rows_done > 0"
        )
        .await
            >= 2
    );
    // The application runs and slows down: 30 ms per query.
    exec(c, "UPDATE app_latency SET seconds = 0.03").await;
    let app_running = Arc::new(AtomicBool::new(true));
    let app = {
        let running = app_running.clone();
        let app = db.connect().await;
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                exec(&app, "SELECT pg_sleep(seconds) FROM app_latency").await;
            }
        })
    };
    let (_, settling) = rate_over(&mut rx, Duration::from_millis(1_000)).await;
    let (busy, seen_busy) = rate_over(&mut rx, Duration::from_millis(2_000)).await;
    let slowed = |p: &Progress| matches!(p.throttle, Some(Throttle::Budget { probe_ms, .. }) if probe_ms >= 25.0);
    assert!(
        settling.iter().chain(&seen_busy).any(slowed),
        "the budget throttles"
    );
    // The total slows down, both workers alike (each report is one worker's batch).
    assert!(
        busy < idle * 0.3,
        "busy application: {busy:.0} rows/s with 2 workers, idle: {idle:.0} rows/s"
    );
    // Each of the two workers waits its share: together they take what one worker would
    // (a worker alone waits a quarter of its batch or more; each of two, 1.5 batches or more).
    for p in seen_busy.iter().filter(|p| slowed(p)) {
        let Some(Throttle::Budget { delay_ms, .. }) = p.throttle else {
            unreachable!()
        };
        let batch_ms = p.last_batch_ms.expect("a report after a batch");
        assert!(
            delay_ms >= 1.5 * batch_ms - 1e-6,
            "{delay_ms} ms after a {batch_ms} ms batch"
        );
    }
    let throttled = seen_busy.iter().filter(|p| slowed(p)).count();
    assert!(
        throttled * 10 >= seen_busy.len() * 8,
        "{throttled} of {} reports slowed",
        seen_busy.len()
    );
    assert!(seen_busy.iter().all(|p| p.settings.workers == 2));
    // `status` shows why, and what the run goes by, from the workers' chunks.
    let status = backfill::status(c, &state(), Some(MIGRATION))
        .await
        .unwrap();
    let reason = status[0].throttle_reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("latency budget"), "{reason}");
    let settings = status[0].settings.as_deref().unwrap_or_default();
    assert!(settings.contains("2 workers"), "{settings}");
    assert!(settings.contains("latency budget +50%"), "{settings}");
    // The application stops: the fill speeds up. (The slow probes leave the budget's window
    // within a second, and with nobody busy at the looks of the last second the budget lets go.)
    app_running.store(false, Ordering::Relaxed);
    app.await.unwrap();
    let recovering = Instant::now();
    let mut recovery = Vec::new();
    loop {
        let (_, p) = rx
            .recv()
            .await
            .expect("the fill still runs while it recovers");
        let free = p.throttle.is_none();
        recovery.push(p);
        if free {
            break;
        }
        assert!(
            recovering.elapsed() < Duration::from_secs(10),
            "still throttled 10 s after the application stopped: {:?}",
            recovery.last().map(|p| &p.throttle)
        );
    }
    eprintln!("back to full speed in {:?}", recovering.elapsed());
    let (again, seen_again) = rate_over(&mut rx, Duration::from_millis(1_000)).await;
    eprintln!(
        "rows/s with 2 workers: idle {idle:.0}, application slowed {busy:.0}, after {again:.0}"
    );
    // (Each worker paces itself from the shared probe: the other one's last throttled report
    // may come after the first unthrottled one.)
    assert!(again > busy * 3.0, "after: {again:.0}, busy: {busy:.0}");
    let mut all: Vec<Progress> = seen
        .into_iter()
        .chain(settling)
        .chain(seen_busy)
        .chain(recovery)
        .chain(seen_again)
        .collect();
    while let Some((_, p)) = rx.recv().await {
        all.push(p);
    }
    let outcome = handle.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    stop_sampler.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    // One probe, measured once before the workers started, shared by both.
    assert!(all
        .iter()
        .all(|p| p.settings.probe_baseline_ms.is_none_or(|b| b == baseline)));
    assert_eq!(
        probes_seen.load(Ordering::Relaxed),
        1,
        "probe sessions at once"
    );
    assert_eq!(outcome.rows_done, rows as u64);
    assert_eq!(unfilled_rows(c, "t").await, 0);
}

/// The budget goes by the probe's tail: a slowdown of 3 probes in 10 (a busy machine's run
/// queue), which leaves the median where it was, slows the fill, and shortens its batches
/// (which hold their rows' locks until they commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_sees_a_slow_tail_that_leaves_the_median_alone() {
    let _alone = one_at_a_time().await;
    let db = fresh_db().await;
    let c = &db.client;
    let rows = 1_500_000;
    let spec = table(c, "t", rows).await;
    exec(
        c,
        "CREATE TABLE app_tail (share float8 NOT NULL); INSERT INTO app_tail VALUES (0)",
    )
    .await;
    // A probe of 5 ms (a query that waits), 50 ms for a share of the probes.
    let probe =
        "SELECT pg_sleep(CASE WHEN random() < share THEN 0.05 ELSE 0.005 END) FROM app_tail";
    // Adaptive batches (100 ms), half the time spent waiting between them. A budget of +300%:
    // the fill's own effect on the 5 ms probe (a debug build beside a whole test suite: a few
    // ms) stays in the lowest quarter of the headroom, where the pace recovers at once; the
    // 50 ms tail is far over it.
    let opts = BackfillOptions {
        batch_delay: Duration::from_millis(100),
        max_latency_increase: Some(3.0),
        probe_query: Some(probe.into()),
        probe_interval: Duration::from_millis(20),
        budget_min_rows: 0,
        ..BackfillOptions::default()
    };
    // The application is there (a session running statements) from the start.
    let app_running = Arc::new(AtomicBool::new(true));
    let app = {
        let running = app_running.clone();
        let app = db.connect().await;
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                exec(&app, "SELECT pg_sleep(0.05)").await;
            }
        })
    };
    let (handle, mut rx) = spawn_run(&db, spec, opts).await;
    // An application is there at the start: the fill does not start at full speed (it waits
    // after its first batches), and earns full speed over its first batches under the budget.
    let (_, ramp) = rate_over(&mut rx, Duration::from_millis(1_500)).await;
    assert!(
        ramp.iter()
            .take(3)
            .any(|p| matches!(p.throttle, Some(Throttle::Budget { .. }))),
        "the fill did not start cautiously: {:?}",
        ramp.iter().take(3).map(|p| &p.throttle).collect::<Vec<_>>()
    );
    assert!(
        ramp.iter().any(|p| p.throttle.is_none()),
        "never back at full speed: {:?}",
        ramp.last().map(|p| &p.throttle)
    );
    let (before, idle) = rate_over(&mut rx, Duration::from_millis(1_000)).await;
    let idle_batch = idle.iter().map(|p| p.batch_size).max().unwrap_or(0);
    // 30% of the probes take 45 ms more: the median stays at the baseline, the 90th
    // percentile does not.
    exec(c, "UPDATE app_tail SET share = 0.3").await;
    let (_, settling) = rate_over(&mut rx, Duration::from_millis(1_500)).await;
    let (tail, seen) = rate_over(&mut rx, Duration::from_millis(1_500)).await;
    let slowed = |p: &Progress| matches!(p.throttle, Some(Throttle::Budget { probe_ms, .. }) if probe_ms >= 15.0);
    assert!(
        settling.iter().chain(&seen).any(slowed),
        "the budget never slowed the fill"
    );
    let n = seen.iter().filter(|p| slowed(p)).count();
    assert!(
        n * 10 >= seen.len() * 8,
        "{n} of {} reports slowed",
        seen.len()
    );
    let tail_batch = seen.last().map(|p| p.batch_size).unwrap_or(u32::MAX);
    eprintln!(
        "rows/s: before {before:.0}, with a slow tail {tail:.0}; batch rows {idle_batch} -> {tail_batch}"
    );
    assert!(
        tail_batch * 3 <= idle_batch,
        "batches of {tail_batch} rows, {idle_batch} before"
    );
    assert!(
        tail < before * 0.5,
        "tail: {tail:.0} rows/s, before: {before:.0}"
    );
    let status = backfill::status(c, &state(), Some(MIGRATION))
        .await
        .unwrap();
    let reason = status[0].throttle_reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("latency budget: probe "), "{reason}");
    assert!(reason.contains("% of their time"), "{reason}");
    app_running.store(false, Ordering::Relaxed);
    app.await.unwrap();
    exec(c, "UPDATE app_tail SET share = 0").await;
    // Let it finish unthrottled.
    let s: backfill::ControlSetting = "max-latency-increase=off".parse().unwrap();
    backfill::set_controls(c, &state(), &Ident::new("public"), &[s])
        .await
        .unwrap();
    while rx.recv().await.is_some() {}
    let outcome = handle.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.rows_done, rows as u64);
    assert_eq!(unfilled_rows(c, "t").await, 0);
}

// ---------------------------------------------------------------------------------------------
// (3) Replication lag on the metrics endpoint, with a real standby
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_serves_the_replication_lag_of_a_paused_standby() {
    let _alone = one_at_a_time().await;
    use pgbaton_lab::cluster::{Cluster, ClusterOptions};
    // A primary of its own (the harness's server is shared by the other tests, whose WAL would
    // be the standby's lag too) and a streaming standby.
    let primary = Cluster::start(ClusterOptions::default()).expect("primary");
    let replica = primary.start_replica().expect("replica");
    let url = primary.url("postgres");
    let p = common::connect(&url).await;
    let r = common::connect(&replica.url("postgres")).await;
    exec(
        &p,
        "CREATE TABLE t (id bigint PRIMARY KEY, name text NOT NULL, note text);
         INSERT INTO t SELECT g, 'name ' || g, repeat('x', 40) FROM generate_series(1, 30000) g;
         ANALYZE t;",
    )
    .await;
    let (file, dir) = migration_file("lag", NAME_UPPER);
    assert_eq!(common::pgbaton_run(&url, &["init"]).0, 0);
    // The standby has replayed everything so far; then its replay stops.
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar_i64(
        &p,
        "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), -1)::bigint \
         FROM pg_stat_replication",
    )
    .await
        != 0
    {
        assert!(Instant::now() < deadline, "the standby never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    exec(&r, "SELECT pg_wal_replay_pause()").await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = common::pgbaton_command(
        &url,
        &[
            "start",
            &file,
            "--max-replication-lag",
            "64kB",
            "--metrics-listen",
            &listen,
            "--backfill-batch-size",
            "2000",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn start");
    // The fill runs until the standby lags more than 64 kB, then waits: the scrape shows the
    // lag and why it waits.
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        if let Some(body) = scrape(port).await {
            if sample(&body, "pgbaton_backfill_throttled", "reason=\"lag\"") == Some(1.0)
                && sample(&body, "pgbaton_replication_lag_bytes", "").is_some()
            {
                break body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the fill never waited for the standby"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "start ended first"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let table = "table=\"\\\"public\\\".\\\"t\\\"\"";
    let lag_bytes = sample(&body, "pgbaton_replication_lag_bytes", table).expect("lag bytes");
    assert!(lag_bytes > 64.0 * 1024.0, "{lag_bytes}");
    let lag_seconds = sample(&body, "pgbaton_replication_lag_seconds", table).expect("lag seconds");
    assert!(lag_seconds >= 0.0, "{lag_seconds}");
    assert!(
        body.contains("# HELP pgbaton_replication_lag_bytes "),
        "{body}"
    );
    assert!(
        body.contains("# HELP pgbaton_replication_lag_seconds "),
        "{body}"
    );
    assert_eq!(
        sample(&body, "pgbaton_backfill_throttled", "reason=\"budget\""),
        Some(0.0)
    );
    // Documented under these names.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    for name in [
        "pgbaton_replication_lag_bytes",
        "pgbaton_replication_lag_seconds",
    ] {
        assert!(readme.contains(&format!("| `{name}` | gauge |")), "{name}");
    }
    // No batch while it lags; `status` says why.
    let done = scalar_i64(
        &p,
        "SELECT rows_done FROM pgbaton.backfills WHERE pass = 'fill'",
    )
    .await;
    assert!(done < 30_000, "{done}");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        scalar_i64(
            &p,
            "SELECT rows_done FROM pgbaton.backfills WHERE pass = 'fill'"
        )
        .await,
        done
    );
    let (code, out) = common::pgbaton_run(&url, &["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("paused") && out.contains("replication lag"),
        "{out}"
    );
    // Replay goes on: so does the fill, to the end.
    exec(&r, "SELECT pg_wal_replay_resume()").await;
    let status = child.wait().expect("start");
    assert!(status.success());
    assert_eq!(wrong_rows(&p).await, 0);
    drop((p, r));
    drop(replica);
    drop(primary);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// (4) `pgbaton wait` after a rollback
// ---------------------------------------------------------------------------------------------

/// `t(id, name)` with a few rows and `pgbaton init`.
async fn small_table(db: &TestDb) {
    exec(
        &db.client,
        "CREATE TABLE t (id bigint PRIMARY KEY, name text NOT NULL);
         INSERT INTO t SELECT g, 'name ' || g FROM generate_series(1, 1000) g;",
    )
    .await;
    assert_eq!(common::pgbaton_run(&db.url, &["init"]).0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ends_with_exit_4_when_the_migration_was_rolled_back() {
    let _alone = one_at_a_time().await;
    let db = fresh_db().await;
    small_table(&db).await;
    let (first, dir) = migration_file("wait", NAME_UPPER);
    // A waiter for `completed`, blocked while the migration is active.
    let (code, out) = common::pgbaton_run(&db.url, &["start", &first]);
    assert_eq!(code, 0, "{out}");
    let waiter = common::pgbaton_command(&db.url, &["wait", "completed", "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wait");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (code, out) = common::pgbaton_run(&db.url, &["rollback"]);
    assert_eq!(code, 0, "{out}");
    let rolled_back = Instant::now();
    let out = waiter.wait_with_output().expect("wait");
    let waited = rolled_back.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(4), "{text}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert!(
        text.contains("migration \"02_change\" of schema public was rolled back at ")
            && text.contains("it will not be completed"),
        "{text}"
    );
    // After the rollback: both end at once, exit 4, with or without a timeout.
    for args in [
        &["wait", "ready"][..],
        &["wait", "completed"],
        &["wait", "ready", "--timeout", "30"],
    ] {
        let started = Instant::now();
        let (code, out) = common::pgbaton_run(&db.url, args);
        assert_eq!(code, 4, "{args:?}: {out}");
        assert!(out.contains("was rolled back"), "{out}");
        assert!(started.elapsed() < Duration::from_secs(5), "{args:?}");
    }
    // Started again and completed: `wait` sees that one.
    let (code, out) = common::pgbaton_run(&db.url, &["start", &first]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = common::pgbaton_run(&db.url, &["wait", "ready", "--timeout", "5"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = common::pgbaton_run(&db.url, &["complete"]);
    assert_eq!(code, 0, "{out}");
    // The next migration, rolled back: `wait` must not answer with the completed one before it.
    let next = dir.join("03_note.yaml");
    std::fs::write(
        &next,
        "operations:\n  - add_column:\n      table: t\n      column: {name: note, type: text, nullable: true}\n",
    )
    .expect("write");
    let next = next.to_str().unwrap();
    let (code, out) = common::pgbaton_run(&db.url, &["start", next]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = common::pgbaton_run(&db.url, &["wait", "ready", "--timeout", "5"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"03_note\" is ready"), "{out}");
    let (code, out) = common::pgbaton_run(&db.url, &["rollback"]);
    assert_eq!(code, 0, "{out}");
    for what in ["ready", "completed"] {
        let (code, out) = common::pgbaton_run(&db.url, &["wait", what, "--timeout", "30"]);
        assert_eq!(code, 4, "wait {what}: {out}");
        assert!(out.contains("\"03_note\""), "{out}");
        assert!(!out.contains("02_change"), "{out}");
    }
    // A start that fails on its own (and is rolled back): the same.
    let bad = dir.join("04_bad.yaml");
    std::fs::write(
        &bad,
        "operations:\n  - alter_column:\n      table: t\n      column: name\n      type: int\n      up: name::int\n      down: name::text\n",
    )
    .expect("write");
    let (code, out) = common::pgbaton_run(&db.url, &["start", bad.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}");
    let (code, out) = common::pgbaton_run(&db.url, &["wait", "ready", "--timeout", "30"]);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("\"04_bad\""), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// (5) `pgbaton set` through the binary, against a running `start`
// ---------------------------------------------------------------------------------------------

/// Batches the fill has committed (its own row, or its chunks').
async fn batches_committed(c: &Client) -> i64 {
    scalar_i64(
        c,
        "SELECT ((SELECT coalesce(sum(batches), 0) FROM pgbaton.backfills WHERE pass = 'fill') \
              + (SELECT coalesce(sum(batches), 0) FROM pgbaton.backfill_chunks))::bigint",
    )
    .await
}

/// `pgbaton status`, which must succeed.
fn status_text(url: &str) -> String {
    let (code, out) = common::pgbaton_run(url, &["status"]);
    assert_eq!(code, 0, "{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_through_the_binary_takes_effect_within_one_batch_and_shows_in_status() {
    let _alone = one_at_a_time().await;
    let db = fresh_db().await;
    let c = &db.client;
    exec(
        c,
        "CREATE TABLE t (id bigint PRIMARY KEY, name text NOT NULL);
         INSERT INTO t SELECT g, 'name ' || g FROM generate_series(1, 95000) g;
         ANALYZE t;",
    )
    .await;
    let (file, dir) = migration_file("set", NAME_UPPER);
    assert_eq!(common::pgbaton_run(&db.url, &["init"]).0, 0);
    // 1000-row batches at 4000 rows/s: 24 s for the table unless the settings change. (Under
    // 100 000 rows: no probe, so nothing but the rate cap slows it.)
    let child = common::pgbaton_command(
        &db.url,
        &[
            "start",
            &file,
            "--json",
            "--backfill-batch-size",
            "1000",
            "--backfill-rows-per-second",
            "4000",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn start");
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while batches_committed(c).await < 3 {
        assert!(Instant::now() < deadline, "the fill never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = status_text(&db.url);
    assert!(
        before.contains("rows/s cap 4000, batch time 100 ms, 1 worker"),
        "{before}"
    );
    assert!(before.contains("slowed: rate cap 4000 rows/s"), "{before}");

    // Every key at once: the rate (almost 4× the option), the batch time, the budget.
    let (code, out) = common::pgbaton_run(
        &db.url,
        &[
            "set",
            "backfill-rows-per-second=15000",
            "backfill-batch-time=40ms",
            "max-latency-increase=20%",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let done_when_set = batches_committed(c).await;
    // The next batch goes by them: `status` shows them within a batch or two.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let s = status_text(&db.url);
        if s.contains("rows/s cap 15000") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed the new cap: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        after.contains("rows/s cap 15000, batch time 40 ms, 1 worker, latency budget +20%"),
        "{after}"
    );
    assert!(after.contains("slowed: rate cap 15000 rows/s"), "{after}");
    assert!(
        after.contains("controls: backfill-rows-per-second=15000, backfill-batch-time=40ms, max-latency-increase=20%"),
        "{after}"
    );
    // The new rate: 15 batches a second (4 at the old cap).
    let b0 = batches_committed(c).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let in_a_second = batches_committed(c).await - b0;
    assert!(in_a_second >= 8, "{in_a_second} batches in a second");

    // Two workers for what is left: the fill splits into chunks after its batch in flight.
    let (code, out) = common::pgbaton_run(&db.url, &["set", "backfill-workers=2"]);
    assert_eq!(code, 0, "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let workers = scalar_i64(
            c,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 \
             AND classid = 1885823587::oid",
        )
        .await;
        let s = status_text(&db.url);
        if workers == 2 && s.contains("2 workers") {
            assert!(s.contains("backfill-workers=2"), "{s}");
            break;
        }
        assert!(Instant::now() < deadline, "workers {workers}: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The rest at full speed, and the budget back to the option (`default`).
    let (code, out) = common::pgbaton_run(
        &db.url,
        &[
            "set",
            "backfill-rows-per-second=1000000",
            "max-latency-increase=default",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let out = child.wait_with_output().expect("start");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let progress = fill_progress(&text);
    let first_new = progress
        .iter()
        .find(|p| p["settings"]["rows_per_second"] == 15000.0)
        .expect("a report with the new cap");
    assert!(
        first_new["batches"].as_i64().unwrap() <= done_when_set + 1,
        "first batch with the new cap: {}, batches committed when it was set: {done_when_set}",
        first_new["batches"]
    );
    assert_eq!(first_new["settings"]["batch_time_ms"], 40.0);
    assert_eq!(first_new["settings"]["max_latency_increase"], 0.2);
    assert_eq!(first_new["throttle"]["reason"], "rate_cap", "{first_new}");
    assert!(
        progress.iter().any(|p| p["settings"]["workers"] == 2),
        "no report with two workers"
    );
    let last = progress.last().expect("progress");
    assert_eq!(last["settings"]["rows_per_second"], 1e6, "{last}");
    assert_eq!(last["settings"]["max_latency_increase"], 0.5, "{last}");
    // 95 batches at the option's cap alone would take 24 s.
    assert!(
        started.elapsed() < Duration::from_secs(18),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        scalar_i64(
            c,
            "SELECT rows_done FROM pgbaton.backfills WHERE pass = 'fill' AND status = 'done'"
        )
        .await,
        95_000
    );
    assert_eq!(wrong_rows(c).await, 0);
    let (code, out) = common::pgbaton_run(&db.url, &["verify"]);
    assert_eq!(code, 0, "verify: {out}");
    assert!(out.contains(" 0 mismatching"), "{out}");
    // The controls stay for the migration's later backfills; `default` took the budget out.
    let s = status_text(&db.url);
    assert!(
        s.contains("controls: backfill-rows-per-second=1000000, backfill-batch-time=40ms, backfill-workers=2 (set by "),
        "{s}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// (8) The read-ahead through the binary: on by default on a table of 1M rows and more, off with
//     its flag
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_ahead_runs_on_a_large_table_and_its_flag_turns_it_off() {
    let _alone = one_at_a_time().await;
    for off in [false, true] {
        let db = fresh_db().await;
        let c = &db.client;
        // Just over the default threshold (1M rows, by the table's estimate).
        exec(
            c,
            "CREATE TABLE t (n bigint PRIMARY KEY, name text NOT NULL);
             INSERT INTO t SELECT g, 'name ' || g FROM generate_series(1, 1050000) g",
        )
        .await;
        exec(c, "VACUUM ANALYZE t").await;
        let (file, dir) = migration_file(if off { "ra-off" } else { "ra-on" }, NAME_UPPER);
        assert_eq!(common::pgbaton_run(&db.url, &["init"]).0, 0);
        let mut args = vec!["start", file.as_str(), "--json"];
        if off {
            args.push("--no-backfill-read-ahead");
        }
        let (code, out) = common::pgbaton_run(&db.url, &args);
        assert_eq!(code, 0, "{out}");
        let progress = fill_progress(&out);
        let reading = progress
            .iter()
            .filter(|p| p["settings"]["read_ahead"] == true)
            .count();
        if off {
            assert_eq!(reading, 0, "read-ahead with --no-backfill-read-ahead");
        } else {
            // Every batch but the last asks for a read: the run went at full speed throughout
            // (no application on this database). The reports after the last batch say off.
            assert!(
                reading + 3 >= progress.len() && reading > 0,
                "{reading} of {} reports with the read-ahead on",
                progress.len()
            );
        }
        assert_eq!(wrong_rows(c).await, 0);
        assert_eq!(pgbaton_sessions(c).await, 0, "a session outlived start");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
