use std::time::{Duration, Instant};

use super::controls::*;
use super::options::*;
use super::sql::*;
use super::status::*;
use super::walk::*;
use crate::ident::RawSql;
use crate::ident::{Ident, QualName};
use crate::step::Assignment;
use crate::step::{BackfillKey, BackfillPass, BackfillSpec};

fn spec(key: BackfillKey, scope: Vec<(&str, &str)>) -> BackfillSpec {
    BackfillSpec {
        table: QualName::new("public", "users"),
        key,
        scope: scope
            .into_iter()
            .map(|(a, b)| (Ident::new(a), Ident::new(b)))
            .collect(),
        assignments: vec![Assignment {
            target: Ident::new("_pgbaton_new_email"),
            expr: RawSql::new("lower(email)"),
        }],
        marker: Ident::new("_pgbaton_touched"),
        window: None,
        pass: BackfillPass::Fill,
    }
}

#[test]
fn identity_scope_sets_directly() {
    let s = spec(BackfillKey::Ctid, vec![("email", "email")]);
    assert_eq!(set_list(&s), "\"_pgbaton_new_email\" = (lower(email))");
}

#[test]
fn renamed_scope_uses_a_row() {
    let s = spec(BackfillKey::Ctid, vec![("email", "mail")]);
    assert_eq!(
        set_list(&s),
        "\"_pgbaton_new_email\" = (SELECT (lower(email)) FROM (SELECT \"public\".\"users\".\"mail\" AS \"email\") AS _pgbaton_scope)"
    );
}

#[test]
fn keyset_sql_bounds_the_update_by_the_key_range() {
    let s = spec(
        BackfillKey::Columns(vec![Ident::new("a"), Ident::new("b")]),
        vec![],
    );
    let state = Ident::new("pgbaton");
    let cp = checkpoint_key(&state, &s);
    let last = vec!["1".to_string(), "it's".to_string()];
    let sql = keyset_batch_sql(
        &s,
        &[Ident::new("a"), Ident::new("b")],
        &cp,
        Some(&last),
        500,
        &Stats::default(),
    );
    let sql = batch_transaction(
        &BackfillOptions::default(),
        TriggerBypass::Setting,
        true,
        &sql,
    );
    assert!(sql.contains("SET LOCAL enable_seqscan = off;"));
    assert!(
        sql.starts_with("BEGIN ISOLATION LEVEL READ COMMITTED;\nSET LOCAL lock_timeout = '500ms';")
    );
    assert!(sql.contains("SET LOCAL pgbaton.backfill = 'on';"));
    assert!(
        sql.contains("(\"public\".\"users\".\"a\", \"public\".\"users\".\"b\") > ('1', 'it''s')")
    );
    assert!(sql.contains(
        "\"public\".\"users\".\"a\" >= (SELECT \"a\" FROM _pgbaton_start) AND \"public\".\"users\".\"a\" <= (SELECT \"a\" FROM _pgbaton_end)"
    ));
    assert!(sql.contains("<= ((SELECT \"a\" FROM _pgbaton_end), (SELECT \"b\" FROM _pgbaton_end))"));
    assert!(sql.contains("\"public\".\"users\".\"_pgbaton_touched\" IS NOT TRUE"));
    assert!(sql.contains("LIMIT 500"));
    assert!(sql.trim_end().ends_with("COMMIT;"));
}

/// The checkpoint of migration `m1`'s fill of `s`'s table.
fn checkpoint_key<'a>(state: &'a Ident, s: &'a BackfillSpec) -> CheckpointKey<'a> {
    CheckpointKey {
        state,
        migration: "m1",
        table: &s.table,
        pass: BackfillPass::Fill,
        chunk: None,
    }
}

/// The SQL of a batch as it runs: the update, then the checkpoint given `n` rows updated.
fn whole(sql: &BatchSql, n: u64) -> String {
    match sql {
        BatchSql::Single(sql) => sql.clone(),
        BatchSql::Split {
            update,
            prelude,
            checkpoint,
        } => format!(
            "{update};\n{}",
            BatchSql::finish(prelude, checkpoint.as_ref(), n)
        ),
    }
}

#[test]
fn a_write_window_changes_what_each_pass_updates() {
    let mut s = spec(BackfillKey::Ctid, vec![]);
    s.window = Some(crate::triggers::write_window(&s.table));
    let state = Ident::new("pgbaton");
    let cp = checkpoint_key(&state, &s);
    // The fill: every row but those its own batches moved ahead of it, no marker (it does
    // not exist yet), its xid recorded.
    let fill = whole(&ctid_batch_sql(&s, &cp, 0, 10, &Stats::default()), 3);
    assert!(!fill.contains("_pgbaton_touched"), "{fill}");
    assert!(fill.contains("AND NOT EXISTS (SELECT 1 FROM \"pgbaton\".backfill_xids"));
    // Once: a batch that recorded it at its BEGIN (the `pgbaton.backfill` bypass) adds no
    // second row.
    assert!(
        fill.contains(
            "INSERT INTO \"pgbaton\".backfill_xids (migration, table_schema, table_name, xid) \
         SELECT 'm1', 'public', 'users', pg_current_xact_id()::xid \
         WHERE NOT EXISTS (SELECT 1 FROM \"pgbaton\".backfill_xids AS _pgbaton_r \
         WHERE _pgbaton_r.xid = pg_current_xact_id()::xid AND _pgbaton_r.migration = 'm1' \
         AND _pgbaton_r.table_schema = 'public' AND _pgbaton_r.table_name = 'users');"
        ),
        "{fill}"
    );
    // The catch-up: rows no batch wrote last and no live write marked.
    let s = BackfillSpec {
        pass: BackfillPass::CatchUp,
        ..s.clone()
    };
    let cp = CheckpointKey {
        pass: BackfillPass::CatchUp,
        ..checkpoint_key(&state, &s)
    };
    let catch_up = whole(&ctid_batch_sql(&s, &cp, 0, 10, &Stats::default()), 3);
    assert!(
        catch_up.contains(
            "\"public\".\"users\".\"_pgbaton_touched\" IS NOT TRUE AND NOT EXISTS (SELECT 1 FROM \
         \"pgbaton\".backfill_xids AS _pgbaton_x WHERE _pgbaton_x.migration = 'm1' AND \
         _pgbaton_x.table_schema = 'public' AND _pgbaton_x.table_name = 'users' AND \
         _pgbaton_x.xid = \"public\".\"users\".xmin)"
        ),
        "{catch_up}"
    );
    assert!(catch_up.contains("pass = 'catch_up'"));
    // A keyset batch records its xid in a CTE of its one statement.
    let keyset = keyset_batch_sql(&s, &[Ident::new("id")], &cp, None, 10, &Stats::default());
    assert!(
        keyset.starts_with("WITH _pgbaton_xid AS (\n  INSERT INTO"),
        "{keyset}"
    );
}

#[test]
fn ctid_sql_is_a_tid_range() {
    let s = spec(BackfillKey::Ctid, vec![]);
    let state = Ident::new("pgbaton");
    let cp = checkpoint_key(&state, &s);
    let sql = whole(&ctid_batch_sql(&s, &cp, 10, 20, &Stats::default()), 7);
    assert!(
        !sql.contains("RETURNING 1\n), _pgbaton_cp"),
        "a plain update: {sql}"
    );
    assert!(sql.contains("rows_done = rows_done + 7, rows_updated = rows_updated + 7"));
    let sql = batch_transaction(
        &BackfillOptions::default(),
        TriggerBypass::Auto,
        false,
        &sql,
    );
    assert!(!sql.contains("enable_seqscan"));
    assert!(sql.contains("ctid >= '(10,0)'::tid AND \"public\".\"users\".ctid < '(20,0)'::tid"));
    assert!(sql.contains("SET LOCAL session_replication_role = replica;"));
    assert!(sql.contains("last_page = 20"));
}

#[test]
fn range_sql_has_constant_bounds_and_no_key_read() {
    let s = spec(BackfillKey::Columns(vec![Ident::new("id")]), vec![]);
    let state = Ident::new("pgbaton");
    let cp = checkpoint_key(&state, &s);
    let key = IntKey::for_type(&Ident::new("id"), "bigint").unwrap();
    let range = KeyRange {
        lo: -5,
        hi: 9_994,
        cap: None,
        end: 1_000_000,
    };
    let sql = whole(
        &range_batch_sql(&s, &key, &cp, range, &Stats::default()),
        42,
    );
    assert!(sql.starts_with("UPDATE "), "a plain update: {sql}");
    assert!(sql.contains("SELECT 42, (SELECT count(*) FROM _pgbaton_cp)"));
    let t = "\"public\".\"users\"";
    assert!(sql.contains(&format!(
        "WHERE {t}.\"id\" >= '-5' AND {t}.\"id\" <= '9994' AND {t}.\"_pgbaton_touched\" IS NOT TRUE"
    )));
    assert!(!sql.contains("ORDER BY") && !sql.contains("LIMIT"), "{sql}");
    assert!(sql.contains(&format!(
        "SELECT min({t}.\"id\") AS _pgbaton_key FROM {t} WHERE {t}.\"id\" > '9994' AND {t}.\"id\" <= '1000000'"
    )));
    assert!(sql.contains(
        "last_key = ARRAY[coalesce((SELECT _pgbaton_key - 1 FROM _pgbaton_next), '1000000')::text]"
    ));

    let capped = KeyRange {
        cap: Some(400),
        ..range
    };
    let sql = whole(
        &range_batch_sql(&s, &key, &cp, capped, &Stats::default()),
        0,
    );
    assert!(sql.starts_with("WITH _pgbaton_range AS ("), "{sql}");
    assert!(sql.contains("ORDER BY \"public\".\"users\".\"id\" OFFSET 400 LIMIT 1) - 1, '9994')::bigint AS _pgbaton_hi"));
    assert!(sql.contains(&format!(
        "{t}.\"id\" >= (SELECT _pgbaton_lo FROM _pgbaton_range) AND {t}.\"id\" <= (SELECT _pgbaton_hi FROM _pgbaton_range)"
    )));
    assert!(IntKey::for_type(&Ident::new("id"), "numeric").is_none());
}

#[test]
fn range_walk_widens_over_sparse_keys_and_caps_what_it_cannot_see() {
    let mut w = RangeWalk::new(Some(1), 1, 10_000_000);
    // Unmeasured: one key value per row, never wider than the target.
    assert_eq!(
        w.next_batch(1_000),
        Some(KeyRange {
            lo: 1,
            hi: 1_000,
            cap: None,
            end: 10_000_000
        })
    );
    // Dense keys: the width stays the target.
    w.advance(1, 1_000, 1_000, Some(1_001));
    assert_eq!(
        w.next_batch(1_000).map(|r| (r.lo, r.hi)),
        Some((1_001, 2_000))
    );
    // Every 4th key: four times wider, within the slack, no key read.
    w.advance(1_001, 2_000, 250, Some(2_010));
    let r = w.next_batch(1_000).unwrap();
    assert_eq!((r.lo, r.hi, r.cap), (2_010, 6_009, None));
    // Every 1000th: a thousand times wider, past RANGE_SLACK × the target: capped at that
    // many rows, by reading the keys.
    w.advance(2_010, 6_009, 4, Some(7_000));
    let r = w.next_batch(1_000).unwrap();
    assert_eq!((r.lo, r.hi, r.cap), (7_000, 1_006_999, Some(4_000)));
    // Dense again right there: the cap held the batch to 4,000 rows, whose density is
    // that of the next batch at once.
    w.advance(7_000, 10_999, 4_000, Some(11_000));
    let r = w.next_batch(1_000).unwrap();
    assert_eq!((r.lo, r.hi, r.cap), (11_000, 11_999, None));
    // A batch with no rows at all (all marked): four times wider next, not the whole
    // table.
    let mut e = RangeWalk::new(Some(1), 1, 1_000_000);
    e.advance(1, 1_000, 1_000, Some(1_001));
    e.advance(1_001, 2_000, 0, Some(2_001));
    let r = e.next_batch(1_000).unwrap();
    assert_eq!((r.lo, r.hi, r.cap), (2_001, 6_000, None));
    e.advance(2_001, 6_000, 0, Some(6_001));
    assert_eq!(e.next_batch(1_000).unwrap().cap, Some(4_000));
    // The next key after a gap is where the next batch starts; none left: over.
    e.advance(2_001, 3_000, 1_000, Some(900_000));
    assert_eq!(e.next_batch(1_000).unwrap().lo, 900_000);
    e.advance(900_000, 901_000, 1_000, None);
    assert_eq!(e.next_batch(1_000), None);
    // The walk ends at the max at start, whatever the next key says.
    let mut m = RangeWalk::new(Some(1), 1, 1_500);
    assert_eq!(m.next_batch(1_000).map(|r| r.hi), Some(1_000));
    m.advance(1, 1_000, 1_000, Some(1_001));
    assert_eq!(m.next_batch(1_000).map(|r| r.hi), Some(1_500));
    m.advance(1_001, 1_500, 500, Some(1_501));
    assert_eq!(m.next_batch(1_000), None);
    assert_eq!(m.position(), (1_500.0, 1_500.0));
}

#[test]
fn range_walk_at_the_ends_of_bigint() {
    let mut w = RangeWalk::new(Some(i64::MIN), i64::MIN, i64::MAX);
    let r = w.next_batch(200_000).unwrap();
    assert_eq!((r.lo, r.hi), (i64::MIN, i64::MIN + 199_999));
    // Two rows in the whole span: the density bottoms out, the width saturates at the end.
    w.advance(r.lo, r.hi, 1, Some(i64::MAX));
    w.advance(i64::MAX, i64::MAX, 1, None);
    assert_eq!(w.next_batch(200_000), None);
    let mut w = RangeWalk::new(Some(i64::MAX - 10), i64::MIN, i64::MAX);
    w.density = DENSITY_FLOOR;
    let r = w.next_batch(200_000).unwrap();
    assert_eq!((r.lo, r.hi), (i64::MAX - 10, i64::MAX));
    assert_eq!(r.cap, None, "11 key values cannot hold more than 11 rows");
    // The density has a floor (1e-12): a batch is at most 10^12 × its rows wide. Gaps
    // wider than that cost no empty batches either: each batch starts at the next key.
    let mut r = RangeWalk::new(Some(i64::MIN), i64::MIN, i64::MAX);
    r.density = DENSITY_FLOOR;
    let b = r.next_batch(10).unwrap();
    assert_eq!(
        (b.lo, b.hi, b.cap),
        (i64::MIN, i64::MIN + 10_000_000_000_000 - 1, Some(40))
    );
    // Resuming past the end, or from a checkpoint at the max: nothing left.
    assert_eq!(RangeWalk::new(Some(11), 1, 10).next_batch(10), None);
    assert_eq!(
        RangeWalk::new(i64::MAX.checked_add(1), 1, i64::MAX).next_batch(10),
        None
    );
}

#[test]
fn range_rows_target_adapts_to_the_rows_a_batch_held() {
    let t = Duration::from_millis(100);
    let ms = Duration::from_millis;
    // A full batch at half the target time: 1.5× (the step limit).
    assert_eq!(
        adapt_to_rows(10_000, 10_000, ms(50), t, 1_000, 200_000),
        15_000
    );
    // 4× the rows in 4× the time: the rate is right, the target stays.
    assert_eq!(
        adapt_to_rows(10_000, 40_000, ms(400), t, 1_000, 200_000),
        10_000
    );
    // Too slow: halved at most.
    assert_eq!(
        adapt_to_rows(10_000, 10_000, ms(1_000), t, 1_000, 200_000),
        5_000
    );
    // A sparse batch that was fast says nothing about the rate: the target stays.
    assert_eq!(adapt_to_rows(10_000, 10, ms(2), t, 1_000, 200_000), 10_000);
    // A sparse batch that was slow anyway lowers it.
    assert_eq!(adapt_to_rows(10_000, 10, ms(300), t, 1_000, 200_000), 5_000);
    assert_eq!(adapt_to_rows(1_500, 10, ms(300), t, 1_000, 200_000), 1_000);
}

#[test]
fn batch_size_adapts_smoothly() {
    let t = Duration::from_millis(100);
    assert_eq!(
        adapt(10_000, Duration::from_millis(50), t, 1_000, 200_000),
        15_000
    );
    assert_eq!(
        adapt(10_000, Duration::from_millis(400), t, 1_000, 200_000),
        5_000
    );
    assert_eq!(
        adapt(10_000, Duration::from_millis(100), t, 1_000, 200_000),
        10_000
    );
    assert_eq!(
        adapt(190_000, Duration::from_millis(1), t, 1_000, 200_000),
        200_000
    );
    assert_eq!(
        adapt(1_000, Duration::from_secs(5), t, 1_000, 200_000),
        1_000
    );
}

#[test]
fn lag_ceilings_parse() {
    assert_eq!(
        "30s".parse::<LagCeiling>(),
        Ok(LagCeiling::Time(Duration::from_secs(30)))
    );
    assert_eq!(
        "500ms".parse::<LagCeiling>(),
        Ok(LagCeiling::Time(Duration::from_millis(500)))
    );
    assert_eq!(
        "64MB".parse::<LagCeiling>(),
        Ok(LagCeiling::Bytes(64 << 20))
    );
    assert_eq!("1kB".parse::<LagCeiling>(), Ok(LagCeiling::Bytes(1024)));
    assert!("fast".parse::<LagCeiling>().is_err());
    assert!("3 parsecs".parse::<LagCeiling>().is_err());
}

#[test]
fn lsns_parse() {
    assert_eq!(parse_lsn("0/16B3748"), Some(0x16B3748));
    assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374D848));
    assert_eq!(parse_lsn("junk"), None);
}

#[test]
fn lag_clock_ages_the_oldest_unreplayed_position() {
    let mut clock = LagClock::default();
    let t0 = Instant::now();
    assert_eq!(clock.observe(t0, 100, 100), Duration::ZERO);
    assert_eq!(
        clock.observe(t0 + Duration::from_secs(1), 200, 100),
        Duration::ZERO
    );
    // Replay stands still at 100: the position 200 was seen 1 s ago... and ages.
    assert_eq!(
        clock.observe(t0 + Duration::from_secs(3), 300, 100),
        Duration::from_secs(2)
    );
    // Replay reaches 250: the oldest unreplayed is 300, seen at t0+3.
    assert_eq!(
        clock.observe(t0 + Duration::from_secs(4), 300, 250),
        Duration::from_secs(1)
    );
    // Caught up.
    assert_eq!(
        clock.observe(t0 + Duration::from_secs(5), 300, 300),
        Duration::ZERO
    );
    for i in 0..10_000u64 {
        clock.observe(t0 + Duration::from_millis(6000 + i), 400 + i, 300);
    }
    assert!(clock.samples.len() <= LAG_SAMPLES_MAX);
}

#[test]
fn fraction_and_eta() {
    assert_eq!(estimate_fraction(false, 50, Some(100), None), Some(0.5));
    assert_eq!(estimate_fraction(false, 500, Some(100), None), Some(0.999));
    assert_eq!(
        estimate_fraction(false, 0, None, Some((25.0, 100.0))),
        Some(0.25)
    );
    assert_eq!(
        estimate_fraction(false, 0, None, Some((0.0, -1.0))),
        Some(0.0)
    );
    assert_eq!(estimate_fraction(true, 0, None, None), Some(1.0));
    // Key values: 1..=100 with 25 done; none done; an empty span.
    assert_eq!(key_position(Some(25), 1, 100), (25.0, 100.0));
    assert_eq!(key_position(None, -50, 49), (0.0, 100.0));
    assert_eq!(
        key_position(Some(i64::MAX), i64::MIN, i64::MAX).1,
        2f64.powi(64)
    );
    assert_eq!(key_position(Some(5), 10, 9), (0.0, 0.0));
    assert_eq!(eta(false, Some(0.5), 50, Some(100), Some(10.0)), Some(5.0));
    assert_eq!(eta(false, Some(0.5), 50, None, Some(10.0)), Some(5.0));
    assert_eq!(eta(false, None, 50, None, Some(10.0)), None);
}

#[test]
fn live_settings_parse() {
    use super::state::{ControlKey, ControlSetting};
    let s: ControlSetting = "backfill-rows-per-second=50000".parse().unwrap();
    assert_eq!(s.key, ControlKey::BackfillRowsPerSecond);
    assert_eq!(s.value, Some(50_000.0));
    let s: ControlSetting = "backfill-batch-time=250ms".parse().unwrap();
    assert_eq!(s.value, Some(250.0));
    let s: ControlSetting = "backfill-batch-time=2s".parse().unwrap();
    assert_eq!(s.value, Some(2_000.0));
    let s: ControlSetting = "backfill-batch-time=80".parse().unwrap();
    assert_eq!(s.value, Some(80.0));
    let s: ControlSetting = "backfill-workers=4".parse().unwrap();
    assert_eq!(s.value, Some(4.0));
    let s: ControlSetting = "max-latency-increase=20%".parse().unwrap();
    assert_eq!(s.value, Some(0.2));
    let s: ControlSetting = "max-latency-increase=off".parse().unwrap();
    assert_eq!(s.value, Some(f64::INFINITY));
    let s: ControlSetting = "backfill-rows-per-second=default".parse().unwrap();
    assert_eq!(s.value, None);
    for bad in [
        "backfill-rows-per-second",
        "backfill-rows-per-second=-5",
        "backfill-rows-per-second=lots",
        "backfill-workers=0",
        "backfill-workers=65",
        "backfill-workers=1.5",
        "backfill-batch-time=10GB",
        "max-latency-increase=-1%",
        "rows=5",
    ] {
        assert!(bad.parse::<ControlSetting>().is_err(), "{bad}");
    }
}

#[test]
fn the_budget_backs_off_fast_holds_near_the_limit_and_recovers_slowly() {
    use super::pace::{Budget, MAX_DELAY_FACTOR, RECOVERY};
    let mut b = Budget::default();
    let batch = Duration::from_millis(100);
    // Baseline 1 ms, +50%: the limit is 1.5 ms, the pace recovers below 1.25 ms.
    // Under the limit: full speed.
    assert_eq!(
        b.after_batch(1.2, 1.0, 0.5, batch, 1),
        (Duration::ZERO, None)
    );
    // Over: a quarter of the batch, then doubling, up to the cap.
    let (wait, why) = b.after_batch(5.0, 1.0, 0.5, batch, 1);
    assert_eq!(wait, Duration::from_millis(25));
    assert!(matches!(why, Some(Throttle::Budget { limit_ms, .. }) if limit_ms == 1.5));
    assert_eq!(
        b.after_batch(5.0, 1.0, 0.5, batch, 1).0,
        Duration::from_millis(50)
    );
    for _ in 0..20 {
        b.after_batch(5.0, 1.0, 0.5, batch, 1);
    }
    assert_eq!(b.factor, MAX_DELAY_FACTOR);
    // Under the limit but in its upper half: the pace holds.
    for _ in 0..10 {
        let (wait, why) = b.after_batch(1.4, 1.0, 0.5, batch, 1);
        assert_eq!(wait, batch.mul_f64(MAX_DELAY_FACTOR));
        assert!(why.is_some());
    }
    // In the lower half of the headroom: the wait shrinks by a fifth per batch, not by half.
    assert_eq!(
        b.after_batch(1.2, 1.0, 0.5, batch, 1).0,
        batch.mul_f64(MAX_DELAY_FACTOR * RECOVERY)
    );
    let mut batches = 1;
    while b.after_batch(1.2, 1.0, 0.5, batch, 1).1.is_some() {
        batches += 1;
        assert!(batches < 100, "never recovered");
    }
    // From the longest wait to full speed: 27 batches under the budget (20 × 0.8^27 < 0.05).
    assert_eq!(batches + 1, 27);
    assert_eq!(b.factor, 0.0);
    // Back near the baseline (its lowest quarter): the wait halves each batch.
    for _ in 0..30 {
        b.after_batch(5.0, 1.0, 0.5, batch, 1);
    }
    assert_eq!(
        b.after_batch(1.1, 1.0, 0.5, batch, 1).0,
        batch.mul_f64(MAX_DELAY_FACTOR / 2.0)
    );
    let mut batches = 1;
    while b.after_batch(1.0, 1.0, 0.5, batch, 1).1.is_some() {
        batches += 1;
    }
    // 20 / 2^9 < 0.05: nine batches in all.
    assert_eq!(batches + 1, 9);
    // A tiny baseline gets the noise floor: 0.1 ms + 50% would be 0.15 ms.
    assert_eq!(
        b.after_batch(0.3, 0.1, 0.5, batch, 1),
        (Duration::ZERO, None)
    );
    assert!(b.after_batch(0.4, 0.1, 0.5, batch, 1).1.is_some());
}

#[test]
fn with_an_application_there_the_fill_starts_at_half_speed() {
    use super::pace::Budget;
    let batch = Duration::from_millis(100);
    let mut b = Budget::cautious();
    assert!(b.governing);
    assert_eq!((b.factor, b.batch_scale), (1.0, 0.5));
    // Under the budget from the start (the probe in the lower half of the headroom, the fill
    // felt): full speed after a dozen or so batches, not at once.
    let mut governed = 0;
    while b.after_batch(1.2, 1.0, 0.5, batch, 1).1.is_some() {
        governed += 1;
        assert!(governed < 100, "never recovered");
    }
    assert_eq!(governed, 13);
    assert_eq!((b.factor, b.batch_scale), (0.0, 1.0));
    // The fill not felt at all: five batches.
    let mut b = Budget::cautious();
    let mut governed = 0;
    while b.after_batch(1.0, 1.0, 0.5, batch, 1).1.is_some() {
        governed += 1;
    }
    assert_eq!(governed, 4);
    assert!(!Budget::default().governing);
}

#[test]
fn the_budget_governs_the_total_of_the_workers() {
    use super::pace::{worker_delay, Budget};
    let batch = Duration::from_millis(100);
    // Under the budget: full speed, whatever the workers.
    assert_eq!(worker_delay(batch, 0.0, 4), Duration::ZERO);
    // One worker waits `factor` batches; each of n waits `(1 + factor) × n − 1`, so n workers
    // take what one would: a duty cycle of 1 / (1 + factor) in all.
    for (factor, n) in [(0.25, 1), (0.25, 2), (1.0, 2), (20.0, 2), (3.0, 4)] {
        let wait = worker_delay(batch, factor, n).as_secs_f64();
        let duty = 0.1 / (0.1 + wait);
        assert!(
            (duty * f64::from(n) - 1.0 / (1.0 + factor)).abs() < 1e-9,
            "factor {factor}, {n} workers: duty {duty}"
        );
    }
    let mut b = Budget::default();
    let (wait, why) = b.after_batch(5.0, 1.0, 0.5, batch, 2);
    assert_eq!(wait, Duration::from_millis(150));
    assert!(
        matches!(why, Some(Throttle::Budget { delay_ms, .. }) if (delay_ms - 150.0).abs() < 1e-6)
    );
}

#[test]
fn the_budget_goes_by_the_probes_tail_over_the_last_second() {
    use super::pace::{quantile, window_latency, MIN_WINDOW_SAMPLES, QUANTILE, WINDOW};
    use std::collections::VecDeque;
    assert_eq!(quantile(&mut [], 0.9), None);
    assert_eq!(quantile(&mut [3.0], 0.9), Some(3.0));
    let mut ten: Vec<f64> = (1..=10).map(f64::from).collect();
    assert_eq!(quantile(&mut ten, 0.9), Some(9.0));
    assert_eq!(quantile(&mut ten, 0.5), Some(5.0));
    let now = Instant::now() + Duration::from_secs(10);
    // 20 probes over the last second: 0.5 ms, but 3 of them 4 ms (a fill taking the CPU). The
    // median says nothing changed; the budget's quantile sees the tail.
    let mut done: VecDeque<(Instant, f64, bool)> = (0..20)
        .map(|i| {
            let ms = if i % 7 == 3 { 4.0 } else { 0.5 };
            (now - Duration::from_millis(975 - i * 50), ms, true)
        })
        .collect();
    let mut all: Vec<f64> = done.iter().map(|d| d.1).collect();
    assert_eq!(quantile(&mut all, 0.5), Some(0.5));
    assert_eq!(QUANTILE, 0.9);
    assert_eq!(window_latency(&done, now, now), Some(4.0));
    // Older probes are out of the window, unless the budget last looked before them.
    for ms in [500, 600, 700] {
        done.push_front((now - WINDOW - Duration::from_millis(ms), 100.0, true));
    }
    assert_eq!(window_latency(&done, now, now), Some(4.0));
    assert_eq!(
        window_latency(&done, now, now - WINDOW - Duration::from_secs(1)),
        Some(100.0)
    );
    // Too few probes in the window: the last few, whenever they finished.
    let old: VecDeque<(Instant, f64, bool)> = (0..MIN_WINDOW_SAMPLES as u64)
        .map(|i| (now - Duration::from_secs(30 - i), 2.0, true))
        .collect();
    assert_eq!(window_latency(&old, now, now), Some(2.0));
    assert_eq!(window_latency(&VecDeque::new(), now, now), None);
}

#[test]
fn an_application_seen_once_in_the_last_second_is_there() {
    use super::pace::application_seen;
    use std::collections::VecDeque;
    let now = Instant::now() + Duration::from_secs(10);
    // 20 looks over the last second (one every 50 ms); the application of quick statements,
    // idle between them, caught at one of them, 800 ms ago.
    let done: VecDeque<(Instant, f64, bool)> = (0..20u64)
        .map(|i| (now - Duration::from_millis(975 - i * 50), 0.5, i == 3))
        .collect();
    let last_second = now - Duration::from_secs(1);
    assert!(application_seen(&done, last_second));
    // The looks since the last batch alone (the last 100 ms) would have missed it.
    assert!(!application_seen(&done, now - Duration::from_millis(100)));
    // Nobody at any look of the second: nobody to protect.
    let idle: VecDeque<(Instant, f64, bool)> =
        done.iter().map(|&(t, ms, _)| (t, ms, false)).collect();
    assert!(!application_seen(&idle, last_second));
    // Fewer than three looks since: the last three decide.
    let few: VecDeque<(Instant, f64, bool)> = (0..5u64)
        .map(|i| (now - Duration::from_secs(30 - i), 0.5, i == 3))
        .collect();
    assert!(application_seen(&few, last_second));
    assert!(!application_seen(&VecDeque::new(), last_second));
}

#[test]
fn over_the_budget_the_batches_get_shorter_and_back_under_it_longer() {
    use super::pace::{Budget, MIN_BATCH_SCALE, REGROWTH};
    let mut b = Budget::default();
    let batch = Duration::from_millis(100);
    assert_eq!(b.batch_scale, 1.0);
    let (_, why) = b.after_batch(5.0, 1.0, 0.5, batch, 1);
    assert_eq!(b.batch_scale, 0.5);
    assert!(
        matches!(why, Some(Throttle::Budget { batch_time_scale, .. }) if batch_time_scale == 0.5)
    );
    assert!(why
        .unwrap()
        .to_string()
        .ends_with(", batches at 50% of their time"));
    for _ in 0..10 {
        b.after_batch(5.0, 1.0, 0.5, batch, 1);
    }
    assert_eq!(b.batch_scale, MIN_BATCH_SCALE);
    // In the upper half of the headroom: they stay short.
    b.after_batch(1.4, 1.0, 0.5, batch, 1);
    assert_eq!(b.batch_scale, MIN_BATCH_SCALE);
    // Well under the budget: a quarter longer each batch (twice as long near the baseline),
    // up to the target.
    b.after_batch(1.2, 1.0, 0.5, batch, 1);
    assert_eq!(b.batch_scale, MIN_BATCH_SCALE * REGROWTH);
    b.after_batch(1.0, 1.0, 0.5, batch, 1);
    assert_eq!(b.batch_scale, MIN_BATCH_SCALE * REGROWTH * 2.0);
    for _ in 0..30 {
        b.after_batch(1.0, 1.0, 0.5, batch, 1);
    }
    assert_eq!(b.batch_scale, 1.0);
    assert_eq!(b.factor, 0.0);
}

#[test]
fn why_the_budget_slowed_the_fill_names_a_row_lock_wait() {
    let mut throttle = Throttle::Budget {
        probe_ms: 41.5,
        baseline_ms: 0.71,
        limit_ms: 1.07,
        delay_ms: 35.0,
        batch_time_scale: 0.5,
        lock_wait_ms: 0.0,
    };
    assert_eq!(
        throttle.to_string(),
        "latency budget: probe 41.50 ms over 1.07 ms (baseline 0.71 ms), waiting 35 ms per \
         batch, batches at 50% of their time"
    );
    if let Throttle::Budget { lock_wait_ms, .. } = &mut throttle {
        *lock_wait_ms = 41.5;
    }
    assert_eq!(
        throttle.to_string(),
        "latency budget: probe 41.50 ms over 1.07 ms (baseline 0.71 ms; an application \
         statement waited 42 ms for a batch's row lock), waiting 35 ms per batch, batches at 50% \
         of their time"
    );
}
