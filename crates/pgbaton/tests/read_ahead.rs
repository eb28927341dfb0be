//! The read-ahead session: a one-connection fill at full speed asks it, before each batch, to
//! read what the next batch will read (value-range and ctid walks alike), every row still ends
//! right, the session is gone when the fill ends, and it stays out of the way where it is not
//! wanted: turned off, a table under the threshold, a fill slowed by a rate cap, a parallel
//! fill.

mod common;

use std::time::Duration;

use common::live::*;
use common::{fresh_db, scalar_i64, TestDb};
use pgbaton::backfill::{BackfillOptions, BackfillOutcome, READ_AHEAD_APPLICATION};
use pgbaton::step::{BackfillKey, BackfillSpec};

const ROWS: i64 = 60_000;
const BATCH: u32 = 2_000;

/// Fills a fresh `t` of [`ROWS`] rows in [`BATCH`]-row batches with `opts`, `key` replacing
/// the spec's (its id key) when given; returns the outcome and the batches it ran, after
/// checking every row is right and the read-ahead's session is gone.
async fn fill(opts: BackfillOptions, key: Option<BackfillKey>) -> (BackfillOutcome, TestDb) {
    let db = fresh_db().await;
    let c = &db.client;
    let mut spec: BackfillSpec = table(c, "t", ROWS).await;
    if let Some(key) = key {
        spec.key = key;
    }
    let opts = BackfillOptions {
        batch_size: Some(BATCH),
        read_ahead_min_rows: 0,
        ..opts
    };
    let (handle, _rx) = spawn_run(&db, spec, opts).await;
    let outcome = handle
        .await
        .expect("the fill task")
        .unwrap_or_else(|e| panic!("the fill: {e}"));
    assert_eq!(unfilled_rows(c, "t").await, 0, "every row filled");
    let wrong = scalar_i64(
        c,
        "SELECT count(*) FROM public.t WHERE u IS DISTINCT FROM upper(name)",
    )
    .await;
    assert_eq!(wrong, 0, "every row right");
    // The reader's session ends with the run.
    let mut left = -1;
    for _ in 0..50 {
        left = scalar_i64(
            c,
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{READ_AHEAD_APPLICATION}'"
            ),
        )
        .await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "the read-ahead session outlived the fill");
    (outcome, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_speed_fill_reads_the_next_batch_ahead_by_values_and_by_pages() {
    let _alone = one_at_a_time().await;
    for key in [None, Some(BackfillKey::Ctid)] {
        let (outcome, _db) = fill(BackfillOptions::default(), key.clone()).await;
        let batches = (ROWS as u64).div_ceil(u64::from(BATCH));
        assert!(
            outcome.batches >= batches,
            "{key:?}: {} batches",
            outcome.batches
        );
        // One read asked for before each batch but the last (a read asked for while the one
        // before still runs replaces it, so a few may be skipped; none here runs long).
        assert!(
            outcome.read_ahead_reads >= batches / 2 && outcome.read_ahead_reads < outcome.batches,
            "{key:?}: {} reads for {} batches",
            outcome.read_ahead_reads,
            outcome.batches
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_ahead_when_off_small_slowed_or_parallel() {
    let _alone = one_at_a_time().await;
    let cases = [
        (
            "off",
            BackfillOptions {
                read_ahead: false,
                ..BackfillOptions::default()
            },
        ),
        (
            "slowed by a rate cap",
            BackfillOptions {
                max_rows_per_second: Some(40_000.0),
                ..BackfillOptions::default()
            },
        ),
        (
            "two workers",
            BackfillOptions {
                workers: 2,
                ..BackfillOptions::default()
            },
        ),
    ];
    for (what, opts) in cases {
        let (outcome, _db) = fill(opts, None).await;
        // A capped fill waits after its first batch: at most the read before the second.
        let most = u64::from(what == "slowed by a rate cap");
        assert!(
            outcome.read_ahead_reads <= most,
            "{what}: {} reads",
            outcome.read_ahead_reads
        );
    }
    // Under the threshold (the table's estimate is 60k rows).
    let db = fresh_db().await;
    let c = &db.client;
    let spec = table(c, "t", ROWS).await;
    let opts = BackfillOptions {
        batch_size: Some(BATCH),
        read_ahead_min_rows: 1_000_000,
        ..BackfillOptions::default()
    };
    let (handle, _rx) = spawn_run(&db, spec, opts).await;
    let outcome = handle
        .await
        .expect("the fill task")
        .unwrap_or_else(|e| panic!("the fill: {e}"));
    assert_eq!(outcome.read_ahead_reads, 0, "a table under the threshold");
    assert_eq!(unfilled_rows(c, "t").await, 0);
}
