//! The backfill's value-range walk on a real server: sparse and gapped integer keys of every
//! width (up to the ends of their types), checkpoints that a keyset walk and a value-range walk
//! resume from each other, and a state schema of an earlier pgbaton without the bounds columns.

mod common;

use std::time::Duration;

use common::backfill_fixture::*;
use common::{exec, fresh_db};
use pgbaton::backfill::{self, BackfillOptions, KeyWalk, Progress, ProgressState};

/// Integer keys of every width with their extreme values, wide gaps, sparse and dense
/// stretches next to each other: every row is filled, no batch is empty, none is giant, and
/// the walk ends at the max it read at start although rows are inserted past it (and into a
/// gap) meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_ranges_over_sparse_and_gapped_keys_of_every_integer_width() {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    let cases = [
        (
            "big",
            "bigint",
            // The ends of bigint; 20,000 dense keys; 5,000 keys 10^6 apart; 30,000 dense keys.
            "SELECT '-9223372036854775808'::int8
             UNION ALL SELECT g FROM generate_series(-1000000000000000, -1000000000000000 + 19999) g
             UNION ALL SELECT 1000000000000 + g::int8 * 1000000 FROM generate_series(1, 5000) g
             UNION ALL SELECT 5000000000000 + g FROM generate_series(1, 30000) g
             UNION ALL SELECT '9223372036854775807'::int8",
            55_002i64,
            (Some(i64::MIN), Some(i64::MAX)),
        ),
        (
            "mid",
            "integer",
            // The bottom of integer, then every 7th value around zero.
            "SELECT -2147483648 UNION ALL SELECT g * 7 FROM generate_series(-20000, 20000) g",
            40_002,
            (Some(-2_147_483_648), Some(140_000)),
        ),
        (
            "small",
            "smallint",
            // Every 3rd smallint, both ends included.
            "SELECT g FROM generate_series(-32768, 32767, 3) g",
            21_846,
            (Some(-32_768), Some(32_767)),
        ),
    ];
    let opts = BackfillOptions {
        min_batch_size: 100,
        max_batch_size: 2_000,
        initial_batch_size: 1_000,
        batch_delay: Duration::from_millis(5),
        ..BackfillOptions::default()
    };
    for (name, key_type, values, rows, bounds) in cases {
        let f = table_with_keys(c, name, key_type, values).await;
        assert_eq!(
            count(c, &format!("SELECT count(*) FROM {name}")).await,
            rows
        );
        let (handle, mut rx) = spawn_run(db.connect().await, f.backfill.clone(), opts.clone());
        let mut seen = Vec::new();
        while let Some(p) = rx.recv().await {
            if seen.is_empty() && name == "mid" {
                // The old version inserts past the max and into a gap, while the walk runs.
                exec(
                    c,
                    "INSERT INTO public.mid (id, name, email)
                       SELECT g, 'late ' || g, 'late' || g || '@example.com'
                         FROM generate_series(200000, 200999) g;
                     INSERT INTO public.mid (id, name, email) VALUES (5, 'gap', 'gap@example.com');",
                )
                .await;
            }
            seen.push(p);
        }
        let outcome = handle
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let context = format!("{name}: {outcome:?}");
        // The late rows were written through the trigger: marked, right, never walked.
        assert_eq!(outcome.rows_done, rows as u64, "{context}");
        assert_eq!(outcome.rows_updated, rows as u64, "{context}");
        assert_eq!(wrong_rows(c, name).await, 0, "{context}");
        assert_eq!(key_bounds(c, name).await, bounds, "{context}");
        let running: Vec<&Progress> = seen
            .iter()
            .filter(|p| p.state == ProgressState::Running)
            .collect();
        assert_eq!(running.len() as u64, outcome.batches, "{context}");
        let mut before = 0;
        let mut oversized = 0;
        for p in &running {
            let batch = p.rows_done - before;
            // Each batch starts at an existing key: never empty. And never more rows than
            // RANGE_SLACK (4) times the largest target.
            assert!(
                (1..=8_000).contains(&batch),
                "{context}: a batch of {batch} rows"
            );
            oversized += u32::from(batch > 4_000);
            before = p.rows_done;
        }
        // Over 2× the largest target only right where the keys turn dense (the first batch
        // there learns the density).
        assert!(oversized <= 3, "{context}: {oversized} oversized batches");
        // At most the batches of the smallest target, plus a few where the density changes.
        assert!(
            outcome.batches <= rows as u64 / 100 + 40,
            "{context}: {} batches",
            outcome.batches
        );
        let fractions: Vec<f64> = seen.iter().filter_map(|p| p.fraction).collect();
        assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "{context}");
        assert_eq!(fractions.last(), Some(&1.0));
        let report = verify_clean(c, &f).await;
        let late = if name == "mid" { 1_001 } else { 0 };
        assert_eq!(report.rows_checked, rows as u64 + late, "{context}");
    }
}

/// A checkpoint is "every key up to `last_key` is done" in both walks: a keyset walk's
/// checkpoint (as written before value ranges existed) resumes as a value-range walk, and the
/// other way round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyset_and_value_range_checkpoints_resume_each_other() {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    for (name, first, then) in [
        ("ks", KeyWalk::Keyset, KeyWalk::Auto),
        ("vr", KeyWalk::Auto, KeyWalk::Keyset),
    ] {
        let f = table(c, name, 60_000, true).await;
        let opts = |walk| BackfillOptions {
            key_walk: walk,
            batch_size: Some(2_000),
            batch_delay: Duration::from_millis(5),
            ..BackfillOptions::default()
        };
        run_and_abort_after(db.connect().await, &f.backfill, opts(first), 10_000).await;
        backfill_lock_released(c).await;
        let cp1 = checkpoint(c, name).await.rows_done;
        assert!((10_000..60_000).contains(&cp1), "{cp1}");
        let last: Vec<String> = c
            .query_one(
                "SELECT last_key FROM pgbaton.backfills WHERE table_name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(last, vec![cp1.to_string()], "{name}: dense keys 1..");
        if first == KeyWalk::Auto {
            // `status` from another session: the key position, exact on a dense key.
            let status = backfill::status(c, &state(), None).await.unwrap();
            let row = status.iter().find(|s| s.table == format!("public.{name}"));
            let fraction = row.and_then(|s| s.fraction).expect("a fraction");
            assert!(
                (fraction - cp1 as f64 / 60_000.0).abs() < 1e-9,
                "{fraction} at {cp1}"
            );
        }

        let (result, seen) = run(c, &f.backfill, &opts(then)).await;
        let outcome = result.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(outcome.resumed);
        assert_eq!(
            seen[0].rows_done as i64,
            cp1 + 2_000,
            "{name}: from the checkpoint"
        );
        assert_eq!(outcome.rows_done, 60_000, "{name}: every row counted once");
        let empty_last = u64::from(then == KeyWalk::Keyset);
        assert_eq!(
            outcome.batches,
            (60_000 - cp1 as u64) / 2_000 + empty_last,
            "{name}: only the rest"
        );
        assert_eq!(wrong_rows(c, name).await, 0);
        // A value-range walk that found no bounds in the checkpoint read and stored them
        // (the keyset walk after one leaves them).
        assert_eq!(key_bounds(c, name).await, (Some(1), Some(60_000)), "{name}");
        verify_clean(c, &f).await;
    }
}

/// A state schema made before value-range walks (no `key_min` / `key_max`): the walk reads the
/// key's bounds on every run instead, resumes right, and `status` still works; initializing
/// again adds the columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_schema_without_the_bounds_columns() {
    let db = fresh_db().await;
    let c = &db.client;
    init_state(c).await;
    exec(
        c,
        "ALTER TABLE pgbaton.backfills DROP COLUMN key_min, DROP COLUMN key_max",
    )
    .await;
    let f = table(c, "t", 40_000, true).await;
    let opts = BackfillOptions {
        batch_size: Some(2_000),
        batch_delay: Duration::from_millis(5),
        ..BackfillOptions::default()
    };
    run_and_abort_after(db.connect().await, &f.backfill, opts.clone(), 10_000).await;
    backfill_lock_released(c).await;
    let cp1 = checkpoint(c, "t").await.rows_done;
    let status = backfill::status(c, &state(), None).await.unwrap();
    let fraction = status[0]
        .fraction
        .expect("a fraction from the row estimate");
    assert!(fraction > 0.0 && fraction < 1.0, "{}", status[0]);

    let (result, seen) = run(c, &f.backfill, &opts).await;
    let outcome = result.unwrap_or_else(|e| panic!("{e}"));
    assert!(outcome.resumed);
    assert_eq!(seen[0].rows_done as i64, cp1 + 2_000);
    assert_eq!(outcome.rows_done, 40_000);
    assert_eq!(wrong_rows(c, "t").await, 0);
    assert_eq!(
        backfill::status(c, &state(), None).await.unwrap()[0].fraction,
        Some(1.0)
    );

    init_state(c).await;
    assert_eq!(
        key_bounds(c, "t").await,
        (None, None),
        "the columns are back"
    );
}
