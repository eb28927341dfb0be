//! The backfill run in production: live controls (`pgbaton set`) taking effect within one
//! batch, and the latency budget slowing the fill while the application's latency is up and
//! letting it go again after.

#[path = "../../pgbaton/tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::live::*;
use common::{exec, fresh_db, TestDb};
use pgbaton::backfill::{self, BackfillOptions, ControlSetting, Progress, Throttle};
use pgbaton::ident::{Ident, QualName};
use tokio_postgres::Client;

async fn set(c: &Client, setting: &str) {
    let s: ControlSetting = setting.parse().unwrap_or_else(|e| panic!("{e}"));
    backfill::set_controls(c, &state(), &Ident::new("public"), &[s])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn committed_batches(c: &Client) -> i64 {
    common::scalar_i64(c, "SELECT batches FROM pgbaton.backfills").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_set_takes_effect_within_one_batch() {
    let _alone = one_at_a_time().await;
    let db = fresh_db().await;
    let c = &db.client;
    let spec = table(c, "t", 40_000).await;
    // 1000-row batches at 4000 rows/s: 10 s for the table.
    let opts = BackfillOptions {
        batch_size: Some(1_000),
        max_rows_per_second: Some(4_000.0),
        ..BackfillOptions::default()
    };
    let started = Instant::now();
    let (handle, mut rx) = spawn_run(&db, spec, opts).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let (_, p) = rx.recv().await.expect("progress");
        seen.push(p);
    }
    assert!(seen
        .iter()
        .all(|p| p.settings.rows_per_second == Some(4_000.0)));
    assert!(
        matches!(seen[1].throttle, Some(Throttle::RateCap { rows_per_second }) if rows_per_second == 4_000.0),
        "{:?}",
        seen[1].throttle
    );
    set(c, "backfill-rows-per-second=1000000").await;
    set(c, "backfill-batch-time=40ms").await;
    let set_at = Instant::now();
    let done_when_set = committed_batches(c).await as u64;
    let mut first_new: Option<Progress> = None;
    while let Some((_, p)) = rx.recv().await {
        if first_new.is_none() && p.settings.rows_per_second == Some(1e6) {
            first_new = Some(p.clone());
        }
        seen.push(p);
    }
    let outcome = handle.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    let first_new = first_new.expect("a report with the new setting");
    // The batch that commits after the setting reads it (the controls are read after each
    // batch's COMMIT, in its round trip).
    assert!(
        first_new.batches <= done_when_set + 1,
        "first batch with the new cap: {}, batches committed when it was set: {done_when_set}",
        first_new.batches
    );
    assert_eq!(first_new.settings.batch_time_ms, 40.0);
    assert!(first_new.throttle.is_none(), "{:?}", first_new.throttle);
    assert_eq!(outcome.rows_done, 40_000);
    // The ~35 batches left would take ~9 s at the old cap.
    let after = set_at.elapsed();
    assert!(after < Duration::from_secs(4), "{after:?} after the set");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(unfilled_rows(c, "t").await, 0);
    // `pgbaton status` shows the controls and what the run went by.
    let controls = backfill::controls(c, &state(), &Ident::new("public"))
        .await
        .unwrap()
        .expect("controls row");
    assert_eq!(controls.max_rows_per_second, Some(1e6));
    assert_eq!(controls.target_batch_time_ms, Some(40.0));
    assert!(controls
        .to_string()
        .contains("backfill-rows-per-second=1000000"));
    let status = backfill::status(c, &state(), Some(MIGRATION))
        .await
        .unwrap();
    let settings = status[0].settings.as_deref().unwrap_or_default();
    assert!(settings.contains("rows/s cap 1000000"), "{settings}");
    assert!(settings.contains("batch time 40 ms"), "{settings}");
    // `default` gives the run's own option back.
    set(c, "backfill-rows-per-second=default").await;
    let controls = backfill::controls(c, &state(), &Ident::new("public"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(controls.max_rows_per_second, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_slows_the_fill_while_the_application_is_slow_and_speeds_up_when_it_stops() {
    let _alone = one_at_a_time().await;
    let db = fresh_db().await;
    let c = &db.client;
    let spec = table(c, "t", 1_000_000).await;
    // The application's latency, as the probe sees it: a query that takes as long as the
    // `app_latency` row says (the test raises it, as a busy application would be slowed).
    exec(
        c,
        "CREATE TABLE app_latency (seconds float8 NOT NULL); INSERT INTO app_latency VALUES (0)",
    )
    .await;
    let opts = BackfillOptions {
        batch_size: Some(2_000),
        max_latency_increase: Some(0.5),
        probe_query: Some("SELECT pg_sleep(seconds) FROM app_latency".into()),
        probe_interval: Duration::from_millis(20),
        budget_min_rows: 0,
        ..BackfillOptions::default()
    };
    let (handle, mut rx) = spawn_run(&db, spec, opts).await;
    // No application at all: nothing to protect, the fill runs at full speed (even though it
    // slows the probe itself a little on a small machine).
    let (idle, seen) = rate_over(&mut rx, Duration::from_millis(1_500)).await;
    assert!(seen[0].settings.probe_baseline_ms.is_some());
    assert!(
        seen.iter().all(|p| p.throttle.is_none()),
        "{:?}",
        seen.iter().map(|p| &p.throttle).collect::<Vec<_>>()
    );
    let slow = |p: &Progress| matches!(p.throttle, Some(Throttle::Budget { probe_ms, .. }) if probe_ms >= 25.0);
    // The application runs, and slows down: 30 ms per query.
    exec(c, "UPDATE app_latency SET seconds = 0.03").await;
    let app_running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let app = {
        let running = app_running.clone();
        let app = db.connect().await;
        tokio::spawn(async move {
            while running.load(std::sync::atomic::Ordering::Relaxed) {
                exec(&app, "SELECT pg_sleep(seconds) FROM app_latency").await;
            }
        })
    };
    let (_, settling) = rate_over(&mut rx, Duration::from_millis(1_000)).await;
    let (busy, seen) = rate_over(&mut rx, Duration::from_millis(2_000)).await;
    assert!(
        settling.iter().chain(&seen).any(slow),
        "the budget throttles"
    );
    let status = backfill::status(c, &state(), Some(MIGRATION))
        .await
        .unwrap();
    let reason = status[0].throttle_reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("latency budget"), "{reason}");
    assert!(
        busy < idle * 0.3,
        "busy application: {busy:.0} rows/s, before: {idle:.0} rows/s"
    );
    // The application stops: the fill speeds up (the slow probes leave the budget's window
    // within a second, and with nobody busy at the looks of the last second it lets go).
    app_running.store(false, std::sync::atomic::Ordering::Relaxed);
    app.await.unwrap();
    let _ = rate_over(&mut rx, Duration::from_millis(1_500)).await;
    let (again, seen) = rate_over(&mut rx, Duration::from_millis(1_000)).await;
    eprintln!("rows/s: before {idle:.0}, application slowed {busy:.0}, after {again:.0}");
    assert!(
        seen.iter().all(|p| p.throttle.is_none()),
        "{:?}",
        seen.iter().map(|p| &p.throttle).collect::<Vec<_>>()
    );
    assert!(
        again > busy * 3.0,
        "after: {again:.0} rows/s, busy: {busy:.0}, before: {idle:.0}"
    );
    // Let it finish unthrottled.
    set(c, "max-latency-increase=off").await;
    while rx.recv().await.is_some() {}
    let outcome = handle.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.rows_done, 1_000_000);
    assert_eq!(unfilled_rows(c, "t").await, 0);
}

const USERS: i64 = 200_000;

const NAME_VARCHAR: &str = "operations:
  - alter_column:
      table: users
      column: name
      type: varchar(200)
      up: name
      down: name
";

/// Sessions of the killed migrator still in the server (its own, its workers', its probe's).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_workers_killed_9_then_resumed_with_two() {
    let _alone = one_at_a_time().await;
    use pgbaton_lab::workload::{OpMix, UsersTable, VersionPin, Workload, WorkloadConfig};
    let db = fresh_db().await;
    let c = &db.client;
    let users = UsersTable::new("users");
    exec(c, &users.create_sql(USERS)).await;
    let dir = std::env::temp_dir().join(format!("pgbaton-workers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("02_name_varchar.yaml");
    std::fs::write(&file, NAME_VARCHAR).expect("write");
    let file = file.to_str().expect("utf-8").to_string();
    assert_eq!(common::pgbaton_run(&db.url, &["init"]).0, 0);

    // Old-version writers during the fill: their writes are what the catch-up pass finds.
    let mut config = WorkloadConfig::from_url(&db.url).expect("url");
    let mix = OpMix {
        read: 50,
        update: 40,
        insert: 10,
        delete: 0,
    };
    config.clients = users.clients(2, VersionPin::Base, &mix);
    config.max_id = USERS;
    config.log_writes = true;
    config.prepare = false;
    config.think_time = Duration::from_millis(5);
    let load = Workload::start(config).await.expect("workload");

    let mut child = common::pgbaton_command(
        &db.url,
        &[
            "start",
            &file,
            "--backfill-workers",
            "4",
            "--backfill-batch-size",
            "1000",
            "--backfill-batch-delay",
            "40",
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("spawn start");
    // Kill it once all four workers have filled part of their chunks.
    let deadline = Instant::now() + Duration::from_secs(120);
    let (at_kill, busy_chunks) = loop {
        let r = c
            .query_opt(
                "SELECT coalesce(sum(rows_done), 0)::bigint, count(*) FILTER (WHERE rows_done > 0 \
                 AND status <> 'done') FROM pgbaton.backfill_chunks",
                &[],
            )
            .await
            .unwrap();
        let (done, busy): (i64, i64) = r.map_or((0, 0), |r| (r.get(0), r.get(1)));
        if done >= USERS / 4 && busy >= 4 {
            break (done, busy);
        }
        assert!(Instant::now() < deadline, "four workers never got going");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "start ended first"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    assert!(
        pgbaton_sessions(c).await >= 5,
        "the migrator and its four workers"
    );
    child.kill().expect("kill -9");
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(15);
    while pgbaton_sessions(c).await > 0 {
        assert!(Instant::now() < deadline, "the killed sessions linger");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let checkpointed = common::scalar_i64(
        c,
        "SELECT sum(rows_done)::bigint FROM pgbaton.backfill_chunks",
    )
    .await;
    assert!(checkpointed >= at_kill, "{checkpointed} < {at_kill}");
    assert!(busy_chunks >= 4);

    // The same start, with two workers, continues from the chunks.
    let (code, out) = common::pgbaton_run(
        &db.url,
        &["start", &file, "--backfill-workers", "2", "--json"],
    );
    assert_eq!(code, 0, "{out}");
    let progress: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "backfill" && v["progress"]["pass"] == "fill")
        .map(|v| v["progress"].clone())
        .collect();
    let first = progress.first().expect("fill progress after the resume");
    assert!(
        first["rows_done"].as_i64().unwrap() >= checkpointed,
        "resumed at {}, the chunks said {checkpointed}: it restarted",
        first["rows_done"]
    );
    assert!(progress.iter().all(|p| p["settings"]["workers"] == 2));
    // Every row walked exactly once over both runs; the chunks merged into the backfill's row.
    assert_eq!(
        common::scalar_i64(c, "SELECT count(*) FROM pgbaton.backfill_chunks").await,
        0
    );
    // (The rows the workload inserted before the walk read the key's max are in the walk.)
    let walked = common::scalar_i64(
        c,
        "SELECT count(*) FROM users WHERE id <= (SELECT key_max FROM pgbaton.backfills \
         WHERE pass = 'fill')",
    )
    .await;
    assert!(walked >= USERS);
    assert_eq!(
        common::scalar_i64(
            c,
            "SELECT rows_done FROM pgbaton.backfills WHERE pass = 'fill' AND status = 'done'"
        )
        .await,
        walked
    );
    let (code, out) = common::pgbaton_run(&db.url, &["verify"]);
    assert_eq!(code, 0, "verify: {out}");
    assert!(out.contains(" 0 mismatching"), "{out}");
    let report = load.stop().await;
    assert_eq!(report.total.failures, 0, "{report}");
    let lost = report
        .writes
        .verify_table(c, &users.verify_sql())
        .await
        .expect("read back");
    assert!(lost.is_empty(), "lost or wrong writes: {lost:#?}");
    // The old-version clients wrote a moment ago: complete refuses without --force.
    let (code, out) = common::pgbaton_run(&db.url, &["complete"]);
    assert_eq!(code, 4, "complete: {out}");
    let (code, out) = common::pgbaton_run(&db.url, &["complete", "--force"]);
    assert_eq!(code, 0, "complete: {out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes `UPDATE users SET name = name WHERE id = 1` every 50 ms through `search_path` until
/// `stop` is set; returns the statements run.
fn writer(
    url: String,
    search_path: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let c = common::connect(&url).await;
        exec(&c, &format!("SET search_path = {search_path}")).await;
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            exec(&c, "UPDATE users SET name = name WHERE id = 1").await;
            n += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        n
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_refuses_while_the_old_version_writes_and_succeeds_after() {
    let _alone = one_at_a_time().await;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let db = fresh_db().await;
    let c = &db.client;
    let users = pgbaton_lab::workload::UsersTable::new("users");
    exec(c, &users.create_sql(1_000)).await;
    let dir = std::env::temp_dir().join(format!("pgbaton-quiet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("02_name_varchar.yaml");
    std::fs::write(&file, NAME_VARCHAR).expect("write");
    let file = file.to_str().expect("utf-8").to_string();
    assert_eq!(common::pgbaton_run(&db.url, &["init"]).0, 0);
    let (code, out) = common::pgbaton_run(&db.url, &["start", &file]);
    assert_eq!(code, 0, "{out}");

    let stop_old = Arc::new(AtomicBool::new(false));
    let stop_new = Arc::new(AtomicBool::new(false));
    let old = writer(db.url.clone(), "public", stop_old.clone());
    let new = writer(
        db.url.clone(),
        "public_02_name_varchar, public",
        stop_new.clone(),
    );
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (code, out) = common::pgbaton_run(&db.url, &["complete", "--old-version-quiet", "5"]);
    assert_eq!(code, 4, "{out}");
    assert!(
        out.contains("the old version (public) still writes: its last write was at"),
        "{out}"
    );
    let (code, out) = common::pgbaton_run(&db.url, &["status"]);
    assert_eq!(code, 0, "{out}");
    let line = |version: &str| {
        out.lines()
            .find(|l| l.contains(&format!("writes: {version} version")))
            .unwrap_or_else(|| panic!("no {version} line: {out}"))
            .to_string()
    };
    let (old_line, new_line) = (line("old"), line("new"));
    assert!(
        old_line.contains("(public)") && old_line.contains("s ago"),
        "{old_line}"
    );
    assert!(new_line.contains("(public_02_name_varchar)"), "{new_line}");
    // Each writer ran ~20 statements a second: the status saw them, per version.
    let rate = |l: &str| -> f64 {
        l.split(", ")
            .find_map(|p| p.strip_suffix("/s")?.parse().ok())
            .unwrap_or_else(|| panic!("no rate in {l}"))
    };
    assert!(rate(&old_line) > 5.0, "{old_line}");
    assert!(rate(&new_line) > 5.0, "{new_line}");

    // The old release is gone; the new one goes on writing.
    stop_old.store(true, Ordering::Relaxed);
    let old_writes = old.await.unwrap();
    let counted = pgbaton::version_writes::read(c, &[QualName::new("public", "users")])
        .await
        .unwrap();
    assert_eq!(
        counted[0].0, old_writes,
        "one count per old-version statement"
    );
    let quiet_since = Instant::now();
    // Refused until it has been quiet for 2 s.
    let (code, out) = common::pgbaton_run(&db.url, &["complete", "--old-version-quiet", "2"]);
    assert_eq!(code, 4, "{out}");
    tokio::time::sleep(Duration::from_millis(2_200).saturating_sub(quiet_since.elapsed())).await;
    let (code, out) = common::pgbaton_run(&db.url, &["complete", "--old-version-quiet", "2"]);
    assert_eq!(code, 0, "{out}");
    stop_new.store(true, Ordering::Relaxed);
    let new_writes = new.await.unwrap();
    assert!(new_writes > 20);
    // The counting went with the migration.
    assert_eq!(
        common::scalar_i64(
            c,
            "SELECT count(*) FROM pg_class WHERE relname LIKE '\\_pgbaton\\_v%' \
             UNION ALL SELECT count(*) FROM pg_trigger WHERE tgname = '_pgbaton_version_writes' \
             ORDER BY 1 DESC LIMIT 1"
        )
        .await,
        0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 30k-row `users` table and the name → varchar migration file; returns the file's path.
async fn users_and_migration(db: &TestDb, tag: &str) -> (String, std::path::PathBuf) {
    let users = pgbaton_lab::workload::UsersTable::new("users");
    exec(&db.client, &users.create_sql(30_000)).await;
    let dir = std::env::temp_dir().join(format!("pgbaton-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("02_name_varchar.yaml");
    std::fs::write(&file, NAME_VARCHAR).expect("write");
    assert_eq!(common::pgbaton_run(&db.url, &["init"]).0, 0);
    (file.to_str().expect("utf-8").to_string(), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_serves_the_documented_series() {
    let _alone = one_at_a_time().await;
    let db = fresh_db().await;
    let (file, dir) = users_and_migration(&db, "metrics").await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = common::pgbaton_command(
        &db.url,
        &[
            "start",
            &file,
            "--metrics-listen",
            &listen,
            "--backfill-batch-size",
            "1000",
            "--backfill-batch-delay",
            "100",
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("spawn start");
    // Scrape while the fill runs (30 batches, 100 ms apart).
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        if let Some(body) = scrape(port).await {
            if sample(&body, "pgbaton_backfill_rows_done", "pass=\"fill\"").is_some_and(|v| v > 0.0)
                && sample(&body, "pgbaton_backfill_batch_seconds_count", "").is_some()
            {
                break body;
            }
        }
        assert!(Instant::now() < deadline, "no backfill series while it ran");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "start ended first"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(sample(&body, "pgbaton_phase", "phase=\"start\""), Some(1.0));
    assert_eq!(
        sample(&body, "pgbaton_phase", "phase=\"complete\""),
        Some(0.0)
    );
    let table = "table=\"\\\"public\\\".\\\"users\\\"\"";
    assert!(
        sample(&body, "pgbaton_backfill_rows_estimate", table).is_some(),
        "{body}"
    );
    assert!(sample(&body, "pgbaton_backfill_rows_per_second", table).is_some());
    assert_eq!(sample(&body, "pgbaton_backfill_workers", table), Some(1.0));
    assert!(sample(&body, "pgbaton_backfill_batch_size", table).is_some());
    assert!(sample(&body, "pgbaton_backfill_throttled", "reason=\"rate_cap\"").is_some());
    assert!(
        body.contains("# HELP pgbaton_backfill_rows_done "),
        "{body}"
    );
    let status = child.wait().expect("start");
    assert!(status.success());
    // Every series is documented in the README.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    for (name, ..) in pgbaton::metrics::SERIES {
        assert!(
            readme.contains(&format!("`{name}`")),
            "{name} is not in the README"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_receive_every_event_in_order_and_wait_blocks_until_ready() {
    let _alone = one_at_a_time().await;
    let db = fresh_db().await;
    let c = &db.client;
    let (file, dir) = users_and_migration(&db, "hooks").await;
    let events = dir.join("events.jsonl");
    let hook = format!("cat >> '{}'", events.display());
    // `wait ready` from another machine, before the start.
    let waiter = common::pgbaton_command(&db.url, &["wait", "ready", "--timeout", "120"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn wait");
    let mut child = common::pgbaton_command(
        &db.url,
        &[
            "start",
            &file,
            "--hook",
            &hook,
            "--backfill-batch-size",
            "1000",
            "--backfill-rows-per-second",
            "10000",
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("spawn start");
    // Pause it part way, then resume.
    let deadline = Instant::now() + Duration::from_secs(60);
    while common::scalar_i64(
        c,
        "SELECT coalesce(max(rows_done), 0)::bigint FROM pgbaton.backfills",
    )
    .await
        < 5_000
    {
        assert!(Instant::now() < deadline, "the fill never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(common::pgbaton_run(&db.url, &["pause"]).0, 0);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(common::pgbaton_run(&db.url, &["resume"]).0, 0);
    assert!(child.wait().expect("start").success());
    let out = waiter.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("is ready; version schema: public_02_name_varchar"));
    // Not completed yet: `wait completed` times out.
    let (code, _) = common::pgbaton_run(&db.url, &["wait", "completed", "--timeout", "1"]);
    assert_eq!(code, 1);
    let (code, out) = common::pgbaton_run(&db.url, &["complete", "--force", "--hook", &hook]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        common::pgbaton_run(&db.url, &["wait", "completed", "--timeout", "5"]).0,
        0
    );
    // A file that does not parse: `failed`, with its exit code.
    let bad = dir.join("03_bad.yaml");
    std::fs::write(&bad, "operations: [{nope: {}}]\n").expect("write");
    let (code, _) =
        common::pgbaton_run(&db.url, &["start", bad.to_str().unwrap(), "--hook", &hook]);
    assert_eq!(code, 3);

    let lines = std::fs::read_to_string(&events).expect("events");
    let names: Vec<String> = lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("one JSON object a line");
            v["event"].as_str().expect("event").to_string()
        })
        .collect();
    let position = |name: &str| {
        names
            .iter()
            .position(|n| n == name)
            .unwrap_or_else(|| panic!("no {name} in {names:?}"))
    };
    assert_eq!(names[0], "started", "{names:?}");
    assert!(position("throttled") < position("paused"), "{names:?}");
    assert!(position("paused") < position("resumed"), "{names:?}");
    assert!(position("resumed") < position("backfill_done"), "{names:?}");
    assert!(position("backfill_done") < position("ready"), "{names:?}");
    assert!(position("ready") < position("completed"), "{names:?}");
    assert_eq!(
        names.last().map(String::as_str),
        Some("failed"),
        "{names:?}"
    );
    let failed: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert_eq!(failed["exit_code"], 3);
    let ready: serde_json::Value =
        serde_json::from_str(lines.lines().nth(position("ready")).unwrap()).unwrap();
    assert_eq!(ready["version_schema"], "public_02_name_varchar");
    let paused: serde_json::Value =
        serde_json::from_str(lines.lines().nth(position("paused")).unwrap()).unwrap();
    assert_eq!(paused["reason"]["reason"], "operator");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_set_of_workers_splits_a_running_fill() {
    let _alone = one_at_a_time().await;
    let db = fresh_db().await;
    let c = &db.client;
    let spec = table(c, "t", 60_000).await;
    let opts = BackfillOptions {
        batch_size: Some(1_000),
        batch_delay: Duration::from_millis(30),
        ..BackfillOptions::default()
    };
    let (handle, mut rx) = spawn_run(&db, spec, opts).await;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(rx.recv().await.expect("progress").1);
    }
    assert!(seen.iter().all(|p| p.settings.workers == 1));
    set(c, "backfill-workers=3").await;
    // The rest of the walk goes into chunks, filled by three connections.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let chunks = common::scalar_i64(c, "SELECT count(*) FROM pgbaton.backfill_chunks").await;
        let workers = common::scalar_i64(
            c,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 \
             AND classid = 1885823587::oid",
        )
        .await;
        if chunks > 0 && workers == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "chunks {chunks}, workers {workers}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while let Some((_, p)) = rx.recv().await {
        seen.push(p);
    }
    let outcome = handle.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert!(seen.iter().any(|p| p.settings.workers == 3));
    assert_eq!(outcome.rows_done, 60_000);
    assert_eq!(
        common::scalar_i64(c, "SELECT rows_done FROM pgbaton.backfills").await,
        60_000
    );
    assert_eq!(
        common::scalar_i64(c, "SELECT count(*) FROM pgbaton.backfill_chunks").await,
        0
    );
    assert_eq!(unfilled_rows(c, "t").await, 0);
}
