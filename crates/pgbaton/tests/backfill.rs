//! The backfill engine on a real server: fills, skips rows live writes made right, resumes from
//! its checkpoint after being interrupted (across keyset and value-range walks too), walks
//! integer keys by value ranges (sparse, gapped, at the ends of their types), composite keys
//! and tables without a key, waits while paused or while a standby lags, retries lock
//! timeouts, and never scans the whole table per batch. `verify` checks the result.

mod common;

use std::time::{Duration, Instant};

use common::backfill_fixture::*;
use common::{exec, fresh_db};
use pgbaton::backfill::{
    self, BackfillOptions, KeyWalk, LagCeiling, PauseReason, Progress, ProgressState, TriggerBypass,
};
use pgbaton::ident::{Ident, RawSql};
use pgbaton::step::BackfillKey;
use pgbaton::triggers::{self};
use tokio_postgres::error::SqlState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_200k_rows_and_skips_rows_live_writes_made_right() {
    // The bigint key is walked by value ranges by default, by keyset batches on request: both
    // must give the same table.
    for walk in [KeyWalk::Auto, KeyWalk::Keyset] {
        fills_200k(walk).await;
    }
}

async fn fills_200k(walk: KeyWalk) {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    let f = table(c, "t", 200_000, true).await;
    // Before the backfill, the new version writes its own values into 200 rows; the old version
    // updates 200 others. The backfill must leave all of them alone.
    exec(
        c,
        &format!(
            "BEGIN;
             SET LOCAL pgbaton.version = '{MIGRATION}';
             UPDATE {VERSION}.t SET u = 'mine ' || id, email = 'NEW' || id || '@X' WHERE id % 1000 = 0;
             COMMIT;
             UPDATE public.t SET name = 'old writer' WHERE id % 1000 = 500;"
        ),
    )
    .await;
    let opts = BackfillOptions {
        key_walk: walk,
        ..BackfillOptions::default()
    };
    let (result, seen) = run(c, &f.backfill, &opts).await;
    let outcome = result.unwrap_or_else(|e| panic!("{walk:?}: {e}"));
    // A keyset walk counts the rows it walked; a value-range walk the rows it updated (it
    // never reads the rows a live write made right).
    let done = match walk {
        KeyWalk::Keyset => 200_000,
        KeyWalk::Auto => 200_000 - 400,
    };
    assert_eq!(outcome.rows_done, done);
    assert_eq!(outcome.rows_updated, 200_000 - 400);
    assert!(!outcome.resumed && !outcome.already_done);
    assert_eq!(outcome.bypass, TriggerBypass::ReplicationRole);
    assert_eq!(outcome.lock_retries, 0);

    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM t WHERE u IS DISTINCT FROM upper(name)"
        )
        .await,
        200,
        "only the new version's own values differ from up()"
    );
    assert_eq!(
        count(c, "SELECT count(*) FROM t WHERE u = 'mine ' || id").await,
        200
    );
    assert_eq!(
        count(
            c,
            "SELECT count(*) FROM t WHERE email = 'new' || id || '@x'"
        )
        .await,
        200
    );
    assert_eq!(
        count(c, "SELECT count(*) FROM t WHERE u = 'OLD WRITER'").await,
        200
    );
    // Replica role: the trigger did not fire on the backfill's updates.
    assert_eq!(
        count(c, "SELECT count(*) FROM t WHERE _pgbaton_touched").await,
        400
    );

    // Progress: monotonic rows and fraction, a done event last, batch sizes that adapted.
    assert!(seen.len() >= 3, "{} events", seen.len());
    assert!(seen.windows(2).all(|w| w[0].rows_done <= w[1].rows_done));
    let fractions: Vec<f64> = seen.iter().filter_map(|p| p.fraction).collect();
    assert_eq!(fractions.len(), seen.len(), "a fraction in every event");
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{fractions:?}");
    if walk == KeyWalk::Auto {
        // The key position: exact on a dense key, whatever the row estimate says.
        let first = &seen[0];
        let expected = first.rows_done as f64 / 199_600.0;
        let fraction = first.fraction.unwrap();
        assert!((fraction - expected).abs() < 0.01, "{first:?}");
    }
    let last = seen.last().unwrap();
    assert_eq!(last.state, ProgressState::Done);
    assert_eq!(last.fraction, Some(1.0));
    assert!(last.rate > 0.0 && last.batch_p99_ms >= last.batch_p50_ms && last.batch_p50_ms > 0.0);
    assert!(seen.iter().map(|p| p.batch_size).max() > seen.first().map(|p| p.batch_size));
    let json = serde_json::to_value(last).unwrap();
    assert_eq!(json["state"], "done");
    assert_eq!(json["rows_done"], done);

    let cp = checkpoint(c, "t").await;
    assert_eq!(
        (cp.status.as_str(), cp.rows_done as u64, cp.rows_updated),
        ("done", done, 199_600)
    );
    let bounds: (Option<i64>, Option<i64>) = {
        let r = c
            .query_one("SELECT key_min, key_max FROM pgbaton.backfills", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    match walk {
        KeyWalk::Auto => assert_eq!(bounds, (Some(1), Some(200_000))),
        KeyWalk::Keyset => assert_eq!(bounds, (None, None)),
    }
    let status = backfill::status(c, &state(), Some(MIGRATION))
        .await
        .unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!(status[0].table, "public.t");
    assert_eq!(status[0].eta_seconds, Some(0.0));
    assert_eq!(status[0].fraction, Some(1.0));
    // Never analyzed: the estimate comes from a sample.
    let estimate = status[0].rows_estimate.expect("an estimate") as f64;
    assert!((estimate - 200_000.0).abs() < 20_000.0, "{estimate}");
    assert!(status[0].batch_p50_ms.is_some() && status[0].rate.is_some());
    assert!(
        status[0]
            .to_string()
            .starts_with(&format!("public.t done: {done}/~")),
        "{}",
        status[0]
    );

    // A second run finds the checkpoint done and does nothing.
    let (again, _) = run(c, &f.backfill, &opts).await;
    let again = again.unwrap();
    assert!(again.already_done && again.batches == 0);

    let report = verify_clean(c, &f).await;
    assert_eq!(report.rows_checked, 200_000);
    assert_eq!(report.rows_untouched, 199_600);
    // `u` has no down: the new version's 200 own values cannot be checked, and are not errors.
    assert_eq!(report.columns[0].unverifiable, 200);
    assert_eq!(report.columns[1].mismatches, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_from_the_checkpoint_after_being_interrupted() {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    let f = table(c, "t", 200_000, true).await;
    let opts = BackfillOptions {
        batch_size: Some(2_000),
        batch_delay: Duration::from_millis(5),
        ..BackfillOptions::default()
    };

    // 1: abort the task (its connection goes with it) part way.
    run_and_abort_after(db.connect().await, &f.backfill, opts.clone(), 40_000).await;
    let (filled, checkpointed) = filled_and_checkpointed(c, "t").await;
    assert_eq!(
        filled, checkpointed,
        "the checkpoint commits with its batch"
    );
    let cp1 = checkpoint(c, "t").await.rows_done as u64;
    assert!((40_000..200_000).contains(&cp1), "{cp1}");

    // 2: kill the backend part way: the run fails, the checkpoint stays.
    let victim = db.connect().await;
    exec(&victim, "SET application_name = 'pgbaton_backfill_victim'").await;
    let (handle, mut rx) = spawn_run(victim, f.backfill.clone(), opts.clone());
    let first = rx.recv().await.expect("a first progress event");
    assert!(
        first.rows_done >= cp1 + 2_000,
        "resumed at {} after {cp1}",
        first.rows_done
    );
    while let Some(p) = rx.recv().await {
        if p.rows_done >= cp1 + 40_000 {
            break;
        }
    }
    exec(
        c,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = 'pgbaton_backfill_victim' AND datname = '{}'",
            db.name
        ),
    )
    .await;
    let err = handle
        .await
        .unwrap()
        .expect_err("the connection was killed");
    assert!(err.contains("backfill of \"public\".\"t\""), "{err}");
    let (filled, checkpointed) = filled_and_checkpointed(c, "t").await;
    assert_eq!(filled, checkpointed);
    let cp2 = checkpoint(c, "t").await.rows_done as u64;
    assert!(cp2 >= cp1 + 40_000 && cp2 < 200_000, "{cp1} {cp2}");

    // 3: a new run finishes from there, never from zero.
    let (result, seen) = run(c, &f.backfill, &opts).await;
    let outcome = result.unwrap_or_else(|e| panic!("{e}"));
    assert!(outcome.resumed);
    assert!(seen[0].rows_done > cp2);
    assert_eq!(outcome.rows_done, 200_000, "every row counted exactly once");
    assert_eq!(
        outcome.batches,
        (200_000 - cp2) / 2_000,
        "only the rest was walked (by value ranges: no empty batch at the end)"
    );
    assert_eq!(wrong_rows(c, "t").await, 0);
    verify_clean(c, &f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_keys_with_awkward_text_values() {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    let mut f = fixture(
        "c",
        BackfillKey::Columns(vec![Ident::new("tenant"), Ident::new("slug")]),
    );
    f.trigger
        .old_scope
        .push((Ident::new("tenant"), Ident::new("tenant")));
    f.trigger
        .old_scope
        .push((Ident::new("slug"), Ident::new("slug")));
    f.trigger
        .new_scope
        .push((Ident::new("tenant"), Ident::new("tenant")));
    f.trigger
        .new_scope
        .push((Ident::new("slug"), Ident::new("slug")));
    f.backfill.scope = f.trigger.old_scope.clone();
    exec(
        c,
        "CREATE TABLE public.c (tenant int, slug text, id bigint, name text, email text NOT NULL,
                                created_at timestamptz, PRIMARY KEY (tenant, slug));
         INSERT INTO public.c
           SELECT g % 7, 'it''s ' || g || E' \\\\ \"' || chr(233), g, 'name ' || g, 'e' || g, now()
             FROM generate_series(1, 30000) g;
         ALTER TABLE public.c ADD COLUMN u text, ADD COLUMN _pgbaton_new_email text;",
    )
    .await;
    let install = triggers::install_step(&f.trigger, false)
        .statements()
        .join(";\n");
    exec(c, &format!("BEGIN;\n{install};\nCOMMIT")).await;
    let opts = BackfillOptions {
        batch_size: Some(1_000),
        ..BackfillOptions::default()
    };
    let (result, _) = run(c, &f.backfill, &opts).await;
    let outcome = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((outcome.rows_done, outcome.rows_updated), (30_000, 30_000));
    assert_eq!(outcome.batches, 31, "30 full batches and an empty one");
    assert_eq!(wrong_rows(c, "c").await, 0);
    let report = verify_clean(c, &f).await;
    assert_eq!(report.rows_checked, 30_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_a_key_is_walked_by_ctid_even_through_a_rewrite() {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    let f = table(c, "nokey", 60_000, false).await;
    // Duplicate rows: nothing identifies a row but its ctid.
    exec(c, "INSERT INTO public.nokey (id, name, email) SELECT 1, 'dup', 'dup' FROM generate_series(1, 100)").await;
    let opts = BackfillOptions {
        batch_size: Some(2_000),
        batch_delay: Duration::from_millis(10),
        ..BackfillOptions::default()
    };
    let (handle, mut rx) = spawn_run(db.connect().await, f.backfill.clone(), opts);
    while let Some(p) = rx.recv().await {
        if p.rows_done >= 20_000 {
            break;
        }
    }
    // Meanwhile: the old version writes, and VACUUM FULL renumbers every row.
    exec(
        c,
        "UPDATE public.nokey SET name = 'moved ' || id WHERE id % 100 = 0",
    )
    .await;
    exec(c, "VACUUM FULL public.nokey").await;
    let outcome = handle.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    // The rewrite was seen: the walk started again from page 0, so the rows before it were
    // updated twice. (Had it gone on at its page number in the new file, the rows VACUUM FULL
    // moved below it would have been missed, and `wrong_rows` would find them.)
    assert!(outcome.rows_updated > 60_100 - 600 + 10_000, "{outcome:?}");
    assert_eq!(wrong_rows(c, "nokey").await, 0);
    assert_eq!(
        count(c, "SELECT count(*) FROM nokey WHERE u = 'DUP'").await,
        100
    );
    let report = verify_clean(c, &f).await;
    assert_eq!(report.rows_checked, 60_100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_use_index_and_tid_range_scans() {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    let keyed = table(c, "t", 100_000, true).await;
    let nokey = table(c, "nokey", 100_000, false).await;
    let mut composite = fixture(
        "c",
        BackfillKey::Columns(vec![Ident::new("a"), Ident::new("b")]),
    );
    composite
        .backfill
        .scope
        .extend(pairs(&[("a", "a"), ("b", "b")]));
    exec(
        c,
        "CREATE TABLE public.c (a int, b text, id bigint, name text, email text, created_at timestamptz,
                                u text, _pgbaton_new_email text, _pgbaton_touched boolean DEFAULT false,
                                PRIMARY KEY (a, b));
         INSERT INTO public.c SELECT g % 10, 'b' || g, g, 'n', 'e', now() FROM generate_series(1, 100000) g;",
    )
    .await;
    // A sparse integer key (one row per 1000 key values): value-range batches that read their
    // range's keys first, to cap the rows.
    let sparse = fixture("sparse", BackfillKey::Columns(vec![Ident::new("id")]));
    exec(
        c,
        "CREATE TABLE public.sparse (id integer PRIMARY KEY, name text, email text, created_at timestamptz,
                                     u text, _pgbaton_new_email text, _pgbaton_touched boolean DEFAULT false);
         INSERT INTO public.sparse SELECT g * 1000, 'n', 'e', now() FROM generate_series(1, 100000) g;",
    )
    .await;
    for analyzed in [false, true] {
        if analyzed {
            exec(
                c,
                "ANALYZE public.t; ANALYZE public.nokey; ANALYZE public.c; ANALYZE public.sparse",
            )
            .await;
        }
        for (spec, after, walk) in [
            (&keyed.backfill, None, KeyWalk::Keyset),
            (
                &keyed.backfill,
                Some(vec!["50000".to_string()]),
                KeyWalk::Keyset,
            ),
            (&keyed.backfill, None, KeyWalk::Auto),
            (
                &keyed.backfill,
                Some(vec!["50000".to_string()]),
                KeyWalk::Auto,
            ),
            (
                &sparse.backfill,
                Some(vec!["50000000".to_string()]),
                KeyWalk::Auto,
            ),
            (
                &composite.backfill,
                Some(vec!["5".to_string(), "b50000".to_string()]),
                KeyWalk::Auto,
            ),
            (&nokey.backfill, None, KeyWalk::Auto),
        ] {
            let plan = backfill::explain_batch(
                c,
                &state(),
                MIGRATION,
                spec,
                after.as_deref(),
                10_000,
                walk,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
            let name = spec.table.name.as_str();
            let context = format!("analyzed={analyzed} {name} {walk:?} {after:?}\n{plan}");
            assert!(!plan.contains(&format!("Seq Scan on {name}")), "{context}");
            let index = format!("{name}_pkey");
            let index_lines = || plan.lines().filter(|l| l.contains(&index)).count();
            let conds = || plan.lines().filter(|l| l.contains("Index Cond"));
            match (&spec.key, walk, name) {
                (BackfillKey::Ctid, ..) => {
                    assert!(plan.contains("Tid Range Scan on nokey"), "{context}");
                    assert!(
                        plan.contains("TID Cond: ((ctid >= '(0,0)'::tid) AND (ctid <"),
                        "{context}"
                    );
                }
                (BackfillKey::Columns(_), KeyWalk::Auto, "t") => {
                    // The update is the only scan of the table's rows: an index range scan
                    // between constants (no key read before it), and the next key after the
                    // batch is one probe of the index.
                    let lo = match &after {
                        Some(a) => a[0].parse::<i64>().unwrap() + 1,
                        None => 1,
                    };
                    let update = conds()
                        .find(|l| l.contains(&format!("(id >= '{lo}'::bigint) AND (id <= '")))
                        .unwrap_or_else(|| panic!("a constant range: {context}"));
                    assert!(!update.contains('$'), "{context}");
                    assert!(
                        conds().any(
                            |l| l.contains("(id > '") && l.contains("(id <= '100000'::bigint)")
                        ),
                        "the next-key probe, bounded by the max: {context}"
                    );
                    assert_eq!(index_lines(), 2, "{context}");
                    assert!(!plan.contains("Sort"), "{context}");
                    assert_eq!(
                        plan.lines().filter(|l| l.contains("Limit")).count(),
                        1,
                        "only the min() probe: {context}"
                    );
                }
                (BackfillKey::Columns(_), KeyWalk::Auto, "sparse") => {
                    // Far wider than 4 × 10,000 key values: the keys of the range are read
                    // (at most 40,001 of them) to cap the batch, then the update is an index
                    // range scan between those two InitPlan parameters.
                    assert!(
                        conds().any(|l| l.contains("(id >= 50000001) AND (id <= ")),
                        "the capping key read: {context}"
                    );
                    assert!(
                        conds().any(|l| { l.contains("(id >= $") && l.contains("(id <= $") }),
                        "the update between parameters: {context}"
                    );
                    assert!(index_lines() >= 3, "{context}");
                }
                (BackfillKey::Columns(_), ..) => {
                    // The key read and the update both go through the key's index with a
                    // bounded condition (an index scan, or a bitmap scan of the range).
                    assert!(index_lines() >= 2, "{context}");
                    let bounded = conds()
                        .filter(|l| l.contains(">=") && l.contains("<="))
                        .count();
                    assert!(bounded >= 1, "{context}");
                    assert!(plan.contains("Limit"), "the key read: {context}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_between_batches_from_another_session() {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    let f = table(c, "t", 20_000, true).await;
    backfill::pause(c, &state(), &Ident::new("public"))
        .await
        .unwrap();
    assert!(backfill::is_paused(c, &state(), &Ident::new("public"))
        .await
        .unwrap());
    let opts = BackfillOptions {
        batch_size: Some(5_000),
        poll_interval: Duration::from_millis(50),
        ..BackfillOptions::default()
    };
    let (handle, mut rx) = spawn_run(db.connect().await, f.backfill.clone(), opts);
    let p = rx.recv().await.expect("a progress event");
    assert_eq!(p.state, ProgressState::Paused(PauseReason::Operator));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let cp = checkpoint(c, "t").await;
    assert_eq!(cp.status, "paused");
    assert_eq!(cp.rows_done, 0);
    assert!(cp.paused_seconds > 0.2, "{}", cp.paused_seconds);
    let status = backfill::status(c, &state(), None).await.unwrap();
    assert_eq!(
        status[0].pause_reason.as_deref(),
        Some("paused by operator")
    );
    assert_eq!(
        count(c, "SELECT count(*) FROM t WHERE u IS NOT NULL").await,
        0
    );

    backfill::resume(c, &state(), &Ident::new("public"))
        .await
        .unwrap();
    let outcome = handle.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        outcome.paused >= Duration::from_millis(400),
        "{:?}",
        outcome.paused
    );
    assert_eq!(outcome.rows_done, 20_000);
    let events: Vec<Progress> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert_eq!(
        events.first().map(|p| &p.state),
        Some(&ProgressState::Running)
    );
    assert_eq!(wrong_rows(c, "t").await, 0);
    let cp = checkpoint(c, "t").await;
    assert_eq!(cp.status, "done");
    assert!(cp.paused_seconds >= 0.4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_timeout_waits_and_retries_keeping_done_rows() {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    let f = table(c, "t", 20_000, true).await;
    // An application transaction holds a row lock in the middle of the table.
    let blocker = db.connect().await;
    exec(
        &blocker,
        "BEGIN; SELECT * FROM public.t WHERE id = 10000 FOR UPDATE",
    )
    .await;
    let opts = BackfillOptions {
        batch_size: Some(1_000),
        lock_timeout: Duration::from_millis(100),
        ..BackfillOptions::default()
    };
    let (handle, mut rx) = spawn_run(db.connect().await, f.backfill.clone(), opts);
    let mut waits = 0;
    while let Some(p) = rx.recv().await {
        if let ProgressState::LockWait { message, .. } = &p.state {
            assert!(
                message.contains(SqlState::LOCK_NOT_AVAILABLE.code()),
                "{message}"
            );
            assert!(
                p.rows_done >= 9_000,
                "the batches before the lock are done and kept"
            );
            waits += 1;
            if waits == 3 {
                break;
            }
        }
    }
    assert_eq!(checkpoint(c, "t").await.status, "waiting");
    exec(&blocker, "COMMIT").await;
    let outcome = handle.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert!(outcome.lock_retries >= 3);
    assert_eq!(outcome.rows_done, 20_000);
    assert_eq!(wrong_rows(c, "t").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_stops_the_run_and_keeps_the_checkpoint() {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    let mut f = table(c, "t", 30_000, true).await;
    f.backfill.assignments[0].expr = RawSql::new("upper(name) || (1 / (id - 25000))::text");
    let opts = BackfillOptions {
        batch_size: Some(5_000),
        ..BackfillOptions::default()
    };
    let (result, _) = run(c, &f.backfill, &opts).await;
    let err = result
        .expect_err("division by zero at id 25000")
        .to_string();
    assert!(
        err.contains("division by zero") && err.contains(SqlState::DIVISION_BY_ZERO.code()),
        "{err}"
    );
    let cp = checkpoint(c, "t").await;
    assert_eq!((cp.status.as_str(), cp.rows_done), ("failed", 20_000));
    assert!(cp.error.unwrap_or_default().contains("division by zero"));
    assert_eq!(
        count(c, "SELECT count(*) FROM t WHERE u IS NOT NULL").await,
        20_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_per_second_ceiling_from_options_and_controls() {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    let f = table(c, "t", 30_000, true).await;
    // The options allow 1M rows/s; the operator's control lowers it to 20k.
    backfill::set_rate_limit(c, &state(), &Ident::new("public"), Some(20_000.0))
        .await
        .unwrap();
    let opts = BackfillOptions {
        max_rows_per_second: Some(1e6),
        ..BackfillOptions::default()
    };
    let started = Instant::now();
    let (result, seen) = run(c, &f.backfill, &opts).await;
    let outcome = result.unwrap_or_else(|e| panic!("{e}"));
    let elapsed = started.elapsed();
    assert_eq!(outcome.rows_done, 30_000);
    // 30,000 rows at 20,000 rows/s: the throttle waits after every batch but the last, whose
    // size depends on how the batches adapted (a keyset walk's last batch is an empty one).
    // Unthrottled, this takes about 0.2 s.
    assert!(elapsed >= Duration::from_millis(1_000), "{elapsed:?}");
    assert!(seen.iter().all(|p| p.batch_size <= 20_000));
    backfill::set_rate_limit(c, &state(), &Ident::new("public"), None)
        .await
        .unwrap();
    assert!(!backfill::is_paused(c, &state(), &Ident::new("public"))
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_superuser_the_when_clause_skips_the_trigger() {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    let f = table(c, "t", 20_000, true).await;
    let role = format!("{}_worker", db.name);
    exec(
        c,
        &format!(
            "CREATE ROLE {role} LOGIN;
             GRANT USAGE ON SCHEMA public, pgbaton TO {role};
             GRANT SELECT, UPDATE ON public.t TO {role};
             GRANT SELECT, INSERT, UPDATE ON pgbaton.backfills, pgbaton.controls TO {role};
             GRANT INSERT ON pgbaton.backfill_xids TO {role};"
        ),
    )
    .await;
    let mut config: tokio_postgres::Config = db.url.parse().unwrap();
    config.user(&role);
    let (worker, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let (result, _) = run(&worker, &f.backfill, &BackfillOptions::default()).await;
    let outcome = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.bypass, TriggerBypass::Setting);
    assert_eq!(outcome.rows_done, 20_000);
    assert_eq!(wrong_rows(c, "t").await, 0);
    assert_eq!(
        count(c, "SELECT count(*) FROM t WHERE _pgbaton_touched").await,
        0,
        "trigger skipped"
    );
    drop(worker);
    exec(c, &format!("DROP OWNED BY {role}; DROP ROLE {role}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_key_on_a_filled_column_keeps_its_checks() {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    let f = table(c, "t", 5_000, true).await;
    exec(
        c,
        "CREATE TABLE public.codes (code text PRIMARY KEY);
         INSERT INTO public.codes SELECT upper('name ' || g) FROM generate_series(1, 4999) g;
         ALTER TABLE public.t ADD CONSTRAINT t_u_fk FOREIGN KEY (u) REFERENCES public.codes NOT VALID;",
    )
    .await;
    // Row 5000's up() has no code: the foreign key check must catch it during the backfill.
    let (result, _) = run(c, &f.backfill, &BackfillOptions::default()).await;
    let err = result
        .expect_err("row 5000 violates the foreign key")
        .to_string();
    assert!(
        err.contains(SqlState::FOREIGN_KEY_VIOLATION.code()),
        "{err}"
    );
    exec(c, "INSERT INTO public.codes VALUES ('NAME 5000')").await;
    let (result, _) = run(c, &f.backfill, &BackfillOptions::default()).await;
    let outcome = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.bypass, TriggerBypass::Setting);
    assert_eq!(wrong_rows(c, "t").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_of_an_earlier_attempt_is_not_reused() {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    let f = table(c, "t", 10_000, true).await;
    let (result, _) = run(c, &f.backfill, &BackfillOptions::default()).await;
    assert_eq!(result.unwrap().rows_done, 10_000);
    // Rolled back and started again under the same name: the new columns are new objects.
    exec(
        c,
        "DROP VIEW public_02_upper.t;
         ALTER TABLE public.t DROP COLUMN u, DROP COLUMN _pgbaton_new_email;
         ALTER TABLE public.t ADD COLUMN u text, ADD COLUMN _pgbaton_new_email text;",
    )
    .await;
    let (result, _) = run(c, &f.backfill, &BackfillOptions::default()).await;
    let outcome = result.unwrap();
    assert!(!outcome.already_done && !outcome.resumed);
    assert_eq!(outcome.rows_done, 10_000);
    assert_eq!(wrong_rows(c, "t").await, 0);
    assert_eq!(backfill::clear(c, &state(), MIGRATION).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_on_one_table_do_not_overlap() {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    let f = table(c, "t", 5_000, true).await;
    exec(
        c,
        &format!(
            "SELECT pg_advisory_lock({}, 'public.t'::regclass::oid::int)",
            backfill::BACKFILL_LOCK_CLASS
        ),
    )
    .await;
    let other = db.connect().await;
    let (result, _) = run(&other, &f.backfill, &BackfillOptions::default()).await;
    assert!(
        matches!(result, Err(backfill::BackfillError::Busy { .. })),
        "{result:?}"
    );
}

/// Old and new version writers update random rows while the backfill runs; afterwards every
/// row is consistent and no committed write was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_both_versions_lose_nothing() {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    let f = table(c, "t", 100_000, true).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for new_version in [false, true] {
        let client = db.connect().await;
        if new_version {
            // The new release runs with its version schema first in the search path.
            exec(&client, &format!("SET search_path = {VERSION}")).await;
        }
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            // id -> the email this writer committed last, as its version sees it.
            let mut log: Vec<(i64, String)> = Vec::new();
            let mut i: i64 = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                // Odd ids for the old version, even ones for the new: no id has two writers.
                let id = 2 * ((i * 7919) % 50_000) + if new_version { 2 } else { 1 };
                let (sql, email) = if new_version {
                    let email = format!("New{i}@Example.ORG");
                    ("UPDATE t SET email = $1 WHERE id = $2".to_string(), email)
                } else {
                    let email = format!("old{i}@example.org");
                    (
                        "UPDATE public.t SET email = $1 WHERE id = $2".to_string(),
                        email,
                    )
                };
                let updated = client.execute(&sql, &[&email, &id]).await.unwrap();
                assert_eq!(updated, 1);
                log.push((id, email));
            }
            (new_version, log)
        }));
    }
    let opts = BackfillOptions {
        batch_size: Some(3_000),
        ..BackfillOptions::default()
    };
    let (result, _) = run(c, &f.backfill, &opts).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let outcome = result.unwrap_or_else(|e| panic!("{e}"));
    // Rows updated: all but those a writer had made right before the backfill reached them.
    assert_eq!(outcome.rows_done, outcome.rows_updated);
    let untouched = count(
        c,
        "SELECT count(*) FROM t WHERE _pgbaton_touched IS NOT TRUE",
    )
    .await;
    assert!(
        outcome.rows_updated >= untouched as u64 && outcome.rows_updated <= 100_000,
        "{outcome:?}, {untouched} rows untouched"
    );
    let mut last: std::collections::BTreeMap<i64, (bool, String)> = Default::default();
    let mut writes = 0;
    for w in writers {
        let (new_version, log) = w.await.unwrap();
        assert!(log.len() > 20, "the writer ran during the backfill");
        writes += log.len();
        for (id, email) in log {
            // Per id, the last write of its only writer is the final value.
            last.insert(id, (new_version, email));
        }
    }
    assert!(writes > 40);
    for (id, (new_version, email)) in &last {
        let r = c
            .query_one(
                "SELECT email, _pgbaton_new_email FROM public.t WHERE id = $1",
                &[id],
            )
            .await
            .unwrap();
        let (old, new): (String, String) = (r.get(0), r.get(1));
        if *new_version {
            assert_eq!((old, new), (email.to_lowercase(), email.clone()), "id {id}");
        } else {
            assert_eq!((old, new), (email.clone(), email.to_uppercase()), "id {id}");
        }
    }
    let report = verify_clean(c, &f).await;
    assert_eq!(report.rows_checked, 100_000);
}

/// A real streaming replica with replay paused: the backfill waits while the lag is over the
/// ceiling and goes on when replay resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_while_a_paused_replica_lags() {
    use pgbaton_lab::cluster::{Cluster, ClusterOptions};
    let primary = Cluster::start(ClusterOptions::default()).expect("primary");
    let replica = primary.start_replica().expect("replica");
    let p = common::connect(&primary.url("postgres")).await;
    let r = common::connect(&replica.url("postgres")).await;
    init_state(&p).await;
    let f = table(&p, "t", 50_000, true).await;
    let f2 = table(&p, "t2", 50_000, true).await;
    // Wait until the replica has caught up with the setup, then pause its replay.
    for _ in 0..200 {
        let lag = count(
            &p,
            "SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), -1)::bigint FROM pg_stat_replication",
        )
        .await;
        if lag == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    exec(&r, "SELECT pg_wal_replay_pause()").await;
    let opts = BackfillOptions {
        batch_size: Some(5_000),
        max_replication_lag: Some(LagCeiling::Bytes(256 * 1024)),
        poll_interval: Duration::from_millis(100),
        ..BackfillOptions::default()
    };
    let (handle, mut rx) = spawn_run(
        common::connect(&primary.url("postgres")).await,
        f.backfill.clone(),
        opts,
    );
    let mut paused_at = None;
    while let Some(p) = rx.recv().await {
        if let ProgressState::Paused(PauseReason::ReplicationLag {
            lag_bytes,
            lag_seconds,
        }) = &p.state
        {
            assert!(lag_bytes.unwrap_or(0) > 256 * 1024, "{p:?}");
            assert!(lag_seconds.is_some());
            paused_at = Some(p.rows_done);
            break;
        }
        assert_eq!(p.state, ProgressState::Running);
    }
    let paused_at = paused_at.expect("the backfill paused for the lag");
    assert!(paused_at < 50_000);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        checkpoint(&p, "t").await.rows_done as u64,
        paused_at,
        "no batch while lagging"
    );
    assert_eq!(checkpoint(&p, "t").await.status, "paused");
    exec(&r, "SELECT pg_wal_replay_resume()").await;
    let outcome = handle.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.rows_done, 50_000);
    assert!(outcome.paused >= Duration::from_millis(1_000));
    assert_eq!(wrong_rows(&p, "t").await, 0);

    // A time ceiling sees the paused replay too (`replay_lag` alone keeps its last value).
    exec(&r, "SELECT pg_wal_replay_pause()").await;
    let opts = BackfillOptions {
        batch_size: Some(2_000),
        batch_delay: Duration::from_millis(20),
        max_replication_lag: Some("300ms".parse().unwrap()),
        poll_interval: Duration::from_millis(100),
        ..BackfillOptions::default()
    };
    let (handle, mut rx) = spawn_run(
        common::connect(&primary.url("postgres")).await,
        f2.backfill.clone(),
        opts,
    );
    let mut paused = false;
    while let Some(p) = rx.recv().await {
        if let ProgressState::Paused(PauseReason::ReplicationLag { lag_seconds, .. }) = &p.state {
            assert!(lag_seconds.unwrap_or(0.0) > 0.3, "{p:?}");
            paused = true;
            break;
        }
    }
    assert!(paused, "the backfill paused for the lag");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(checkpoint(&p, "t2").await.status, "paused");
    exec(&r, "SELECT pg_wal_replay_resume()").await;
    let outcome = handle.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.rows_done, 50_000);
    assert_eq!(wrong_rows(&p, "t2").await, 0);
    drop(replica);
}

/// Issue #8 (1): a batch statement holds the user's `up`, and goes through the extended
/// protocol, which refuses a second statement. The file loader already refuses such an `up`
/// (`fragment.rs`); this is the executor's own guard, with the loader bypassed: an `up` that
/// smuggles `COMMIT; DROP TABLE ...` fails the batch and runs nothing (in one simple-query
/// string, the `DROP` ran and committed). Value-range, keyset and ctid walks, and the `EXPLAIN`
/// of a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smuggled_second_statement_in_up_runs_nothing() {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    exec(c, "CREATE TABLE public.victims (id int)").await;
    let smuggled = RawSql::new("'x'); COMMIT; DROP TABLE public.victims; BEGIN; SELECT ('y'");
    for (name, primary_key, walk) in [
        ("smuggle_range", true, KeyWalk::Auto),
        ("smuggle_keyset", true, KeyWalk::Keyset),
        ("smuggle_ctid", false, KeyWalk::Auto),
    ] {
        let mut f = table(c, name, 1_000, primary_key).await;
        f.backfill.assignments[0].expr = smuggled.clone();
        let opts = BackfillOptions {
            key_walk: walk,
            ..BackfillOptions::default()
        };
        let (result, _) = run(c, &f.backfill, &opts).await;
        let err = result
            .expect_err("a batch with two statements must fail")
            .to_string();
        // A plain `UPDATE` parses as several statements, refused as such; inside a `WITH` the
        // `;` is a syntax error. Either way the server runs none of it.
        assert!(
            err.contains("cannot insert multiple commands into a prepared statement")
                || err.contains("syntax error at or near \";\""),
            "{name}: {err}"
        );
        assert_eq!(
            count(c, "SELECT count(*) FROM pg_class WHERE relname = 'victims'").await,
            1,
            "{name}: the smuggled DROP ran"
        );
        assert_eq!(
            count(
                c,
                &format!("SELECT count(*) FROM public.{name} WHERE u IS NOT NULL")
            )
            .await,
            0,
            "{name}: no row may be written"
        );
        let explained =
            backfill::explain_batch(c, &state(), MIGRATION, &f.backfill, None, 100, walk).await;
        assert!(explained.is_err(), "{name}: EXPLAIN of two statements");
        assert_eq!(
            count(c, "SELECT count(*) FROM pg_class WHERE relname = 'victims'").await,
            1,
            "{name}: the smuggled DROP ran in EXPLAIN"
        );
    }
}
