//! The backfill's write window: the fill runs before the table's dual-write trigger exists (so
//! its batches do not pay the trigger's tuple lock), then the trigger is installed and a
//! catch-up pass fixes every row the old version wrote meanwhile. These tests write during the
//! fill and check that no write is missed, that a table nobody wrote is not scanned again, and
//! that the window's statement trigger works for a role with no privilege on pgbaton's objects.

#[path = "../../pgbaton/tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pgbaton::ident::QualName;
use pgbaton::triggers::{open_window_step, write_window};

const ROWS: i64 = 60_000;

const MIGRATION: &str = "operations:
  - alter_column:
      table: t
      column: name
      type: varchar(100)
      up: upper(name)
      down: lower(name)
";

fn run(url: &str, args: &[&str]) -> (i32, String) {
    common::pgbaton_run(url, args)
}

async fn scalar(client: &tokio_postgres::Client, sql: &str) -> i64 {
    common::scalar_i64(client, sql).await
}

/// Rows of `t` whose new column is not `up(old)` (`MIGRATION`'s `upper(name)`).
async fn wrong_rows(client: &tokio_postgres::Client) -> i64 {
    scalar(
        client,
        "SELECT count(*) FROM t WHERE _pgbaton_new_name IS DISTINCT FROM upper(name)",
    )
    .await
}

async fn setup(db: &common::TestDb, name: &str) -> String {
    let seed = format!(
        "CREATE TABLE t (id bigserial PRIMARY KEY, name text NOT NULL, note text);
         INSERT INTO t (name) SELECT 'name ' || g FROM generate_series(1, {ROWS}) g;
         ANALYZE t;"
    );
    setup_with(db, name, &seed, MIGRATION).await
}

/// Seeds the database, writes `migration` to a file of its own, runs `init`; returns the file.
async fn setup_with(db: &common::TestDb, name: &str, seed: &str, migration: &str) -> String {
    common::exec(&db.client, seed).await;
    let dir = std::env::temp_dir().join(format!("pgbaton-ww-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("02_change.yaml");
    std::fs::write(&file, migration).expect("write");
    assert_eq!(run(&db.url, &["init"]).0, 0);
    file.to_str().expect("utf-8").to_string()
}

/// (status, batches, rows_updated) of the catch-up pass of table `t`.
async fn catch_up(client: &tokio_postgres::Client) -> (String, i64, i64) {
    let row = client
        .query_one(
            "SELECT status, batches, rows_updated FROM pgbaton.backfills
              WHERE table_name = 't' AND pass = 'catch_up'",
            &[],
        )
        .await
        .expect("catch-up checkpoint");
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn old_version_writes_during_the_fill_are_caught_up() {
    let db = common::fresh_db().await;
    let file = setup(&db, "writes").await;

    // An old-version writer (the base schema) that updates existing rows, done or not yet, and
    // inserts new ones, for as long as `start` runs. The fill is throttled so it lasts ~2 s.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes) = (stop.clone(), writes.clone());
        let client = db.connect().await;
        tokio::spawn(async move {
            let mut n: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = (n * 7_919) % ROWS + 1;
                client
                    .execute(
                        "UPDATE t SET name = 'written ' || $1::text WHERE id = $2",
                        &[&n.to_string(), &id],
                    )
                    .await
                    .expect("old-version update");
                client
                    .execute(
                        "INSERT INTO t (name) VALUES ('inserted ' || $1::text)",
                        &[&n.to_string()],
                    )
                    .await
                    .expect("old-version insert");
                writes.fetch_add(2, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let url = db.url.clone();
    let start = tokio::task::spawn_blocking(move || {
        run(
            &url,
            &[
                "start",
                &file,
                "--backfill-batch-size",
                "1000",
                "--backfill-rows-per-second",
                "30000",
            ],
        )
    })
    .await
    .expect("join");
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    assert_eq!(start.0, 0, "{}", start.1);
    assert!(writes.load(Ordering::Relaxed) > 100, "the writer ran");

    let c = &db.client;
    // Every row, whoever wrote it and when, holds up(old) in the new column.
    assert_eq!(wrong_rows(c).await, 0);
    let (status, batches, updated) = catch_up(c).await;
    assert_eq!(status, "done");
    assert!(batches > 0, "the catch-up scanned the table");
    assert!(
        updated > 0,
        "writes during the fill were caught up ({updated} rows)"
    );
    // The window's trigger is gone; the dual-write trigger is in place.
    assert_eq!(
        scalar(
            c,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 't'::regclass AND NOT tgisinternal \
             AND tgname = '_pgbaton_write_window'"
        )
        .await,
        0
    );
    let (code, out) = run(&db.url, &["verify"]);
    assert_eq!(code, 0, "{out}");
    // The old version wrote a moment ago: `complete` would wait for it to be quiet.
    let (code, out) = run(&db.url, &["complete", "--force"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        scalar(
            c,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass \
             AND attname LIKE '_pgbaton%' AND NOT attisdropped"
        )
        .await,
        0,
        "the marker column is gone"
    );
    assert_eq!(
        scalar(
            c,
            "SELECT count(*) FROM pg_class WHERE relname LIKE '_pgbaton%'"
        )
        .await,
        0,
        "the window's sequence is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_nobody_wrote_during_the_fill_is_not_scanned_again() {
    let db = common::fresh_db().await;
    let file = setup(&db, "quiet").await;
    let (code, out) = run(&db.url, &["start", &file]);
    assert_eq!(code, 0, "{out}");
    let (status, batches, updated) = catch_up(&db.client).await;
    assert_eq!((status.as_str(), batches, updated), ("done", 0, 0));
    assert_eq!(wrong_rows(&db.client).await, 0);
    // `status` names the pass.
    let (code, out) = run(&db.url, &["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(catch-up)"), "{out}");
    // Rollback leaves nothing of the window behind.
    let (code, out) = run(&db.url, &["rollback"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        scalar(
            &db.client,
            "SELECT count(*) FROM pg_class WHERE relname LIKE '_pgbaton%'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &db.client,
            "SELECT count(*) FROM pg_proc WHERE proname LIKE '_pgbaton%'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_counts_writes_of_a_role_without_privileges_and_skips_backfills() {
    let db = common::fresh_db().await;
    let c = &db.client;
    let role = format!("ww_app_{}", db.name.replace('-', "_"));
    common::exec(
        c,
        &format!(
            "CREATE TABLE public.w (id int PRIMARY KEY, v text);
             INSERT INTO public.w VALUES (1, 'a');
             CREATE ROLE {role} LOGIN;
             GRANT USAGE ON SCHEMA public TO {role};
             GRANT SELECT, INSERT, UPDATE ON public.w TO {role};"
        ),
    )
    .await;
    let table = QualName::new("public", "w");
    let window = write_window(&table);
    let step = open_window_step(&table, &window, None);
    for sql in step.statements() {
        common::exec(c, &sql).await;
    }
    let bumped = "SELECT coalesce(pg_sequence_last_value('public._pgbaton_ww_w'::regclass), 0)";
    assert_eq!(scalar(c, bumped).await, 0);

    // A backfill's statement (pgbaton.backfill = on) is not counted.
    common::exec(
        c,
        "BEGIN; SET LOCAL pgbaton.backfill = 'on'; UPDATE public.w SET v = 'b'; COMMIT;",
    )
    .await;
    assert_eq!(scalar(c, bumped).await, 0);

    // The application's role writes: counted, though it has no privilege on the sequence.
    let mut config: tokio_postgres::Config = db.url.parse().expect("url");
    config.user(&role);
    let (app, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect as the app role");
    tokio::spawn(connection);
    app.execute("UPDATE public.w SET v = 'c' WHERE id = 1", &[])
        .await
        .expect("app update");
    assert_eq!(scalar(c, bumped).await, 1);
    app.execute("INSERT INTO public.w VALUES (2, 'd')", &[])
        .await
        .expect("app insert");
    assert_eq!(scalar(c, bumped).await, 2);
    drop(app);
    common::exec(
        c,
        &format!("DROP TABLE public.w CASCADE; DROP OWNED BY {role}; DROP ROLE {role};"),
    )
    .await;
}

/// Issue #8 (5): `SET pgbaton.backfill = 'on'` is open to any session. With a state schema, the
/// write window counts a write unless its transaction is one the backfill recorded: a session
/// that only sets the flag is still counted (it would otherwise skip the catch-up pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_counts_a_session_that_only_sets_the_backfill_flag() {
    let db = common::fresh_db().await;
    let c = &db.client;
    common::exec(
        c,
        "CREATE TABLE public.w (id int PRIMARY KEY, v text); INSERT INTO public.w VALUES (1, 'a');",
    )
    .await;
    assert_eq!(run(&db.url, &["init"]).0, 0);
    let table = QualName::new("public", "w");
    let window = write_window(&table);
    let state = pgbaton::ident::Ident::new("pgbaton");
    for sql in open_window_step(&table, &window, Some(&state)).statements() {
        common::exec(c, &sql).await;
    }
    let bumped = "SELECT coalesce(pg_sequence_last_value('public._pgbaton_ww_w'::regclass), 0)";

    // The flag alone: counted.
    common::exec(
        c,
        "BEGIN; SET LOCAL pgbaton.backfill = 'on'; UPDATE public.w SET v = 'b'; COMMIT;",
    )
    .await;
    assert_eq!(scalar(c, bumped).await, 1);

    // The flag in a transaction the backfill recorded: not counted.
    common::exec(
        c,
        "BEGIN; SET LOCAL pgbaton.backfill = 'on';
         INSERT INTO pgbaton.backfill_xids (migration, table_schema, table_name, xid)
           VALUES ('m', 'public', 'w', pg_current_xact_id()::xid);
         UPDATE public.w SET v = 'c'; COMMIT;",
    )
    .await;
    assert_eq!(scalar(c, bumped).await, 1);

    // A plain write: counted.
    common::exec(c, "UPDATE public.w SET v = 'd'").await;
    assert_eq!(scalar(c, bumped).await, 2);
}

/// Issue #8 (5), the safe-to-complete signal: an old-version write made with the backfill flag
/// set is still counted, so `complete` refuses while the old version writes that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_sees_old_version_writes_made_with_the_backfill_flag() {
    let db = common::fresh_db().await;
    let file = setup_with(
        &db,
        "flagged",
        "CREATE TABLE t (id bigserial PRIMARY KEY, name text NOT NULL);
         INSERT INTO t (name) SELECT 'n' || g FROM generate_series(1, 100) g;",
        MIGRATION,
    )
    .await;
    let (code, out) = run(&db.url, &["start", &file]);
    assert_eq!(code, 0, "{out}");
    common::exec(
        &db.client,
        "BEGIN; SET LOCAL pgbaton.backfill = 'on'; UPDATE t SET name = 'hidden' WHERE id = 1; COMMIT;",
    )
    .await;
    let (code, out) = run(&db.url, &["complete", "--old-version-quiet", "600"]);
    assert_eq!(code, 4, "complete must refuse: {out}");
    assert!(
        out.contains("the old version (public) still writes"),
        "{out}"
    );
    // The dual-write trigger did not skip the write either.
    assert_eq!(wrong_rows(&db.client).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_whose_up_breaks_a_constraint_fails_complete_and_can_be_fixed_in_place() {
    let db = common::fresh_db().await;
    let file = setup_with(
        &db,
        "violation",
        "CREATE TABLE t (id bigserial PRIMARY KEY, note text);
         INSERT INTO t (note) SELECT CASE WHEN g = 777 THEN NULL ELSE 'n' || g END
           FROM generate_series(1, 5000) g;",
        "operations:
  - add_column:
      table: t
      up: upper(note)
      column:
        name: code
        type: text
        nullable: false
",
    )
    .await;
    // The constraint comes after the fill (an old-version insert during the fill leaves the
    // column empty), so the row whose up() is NULL does not stop start...
    let (code, out) = run(&db.url, &["start", &file]);
    assert_eq!(code, 0, "{out}");
    // ...but complete validates before it changes anything, and names the constraint.
    let (code, out) = run(&db.url, &["complete"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("_pgbaton_nn_code"), "{out}");
    let status: String = db
        .client
        .query_one("SELECT status FROM pgbaton.migrations", &[])
        .await
        .expect("migration row")
        .get(0);
    assert_ne!(status, "completed");
    assert_eq!(
        scalar(
            &db.client,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass \
             AND attname = '_pgbaton_new_code' AND NOT attisdropped"
        )
        .await,
        1,
        "nothing was contracted"
    );
    // The old version fixes the row; the trigger recomputes the new column; complete goes on.
    common::exec(&db.client, "UPDATE t SET note = 'fixed' WHERE id = 777").await;
    // That fix is an old-version write a moment ago: complete knowingly.
    let (code, out) = run(&db.url, &["complete", "--force"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        scalar(
            &db.client,
            "SELECT count(*) FROM t WHERE code IS DISTINCT FROM upper(note)"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            &db.client,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'code' \
             AND attnotnull"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_table_is_backfilled_with_the_trigger_already_in_place() {
    let db = common::fresh_db().await;
    let file = setup_with(
        &db,
        "partitioned",
        "CREATE TABLE t (id bigint NOT NULL, name text NOT NULL, PRIMARY KEY (id))
           PARTITION BY RANGE (id);
         CREATE TABLE t_1 PARTITION OF t FOR VALUES FROM (1) TO (10001);
         CREATE TABLE t_2 PARTITION OF t FOR VALUES FROM (10001) TO (20001);
         INSERT INTO t SELECT g, 'name ' || g FROM generate_series(1, 20000) g;",
        MIGRATION,
    )
    .await;
    let (code, out) = run(&db.url, &["start", &file]);
    assert_eq!(code, 0, "{out}");
    let c = &db.client;
    assert_eq!(wrong_rows(c).await, 0);
    // No write window: no sequence, no catch-up pass.
    assert_eq!(
        scalar(
            c,
            "SELECT count(*) FROM pg_class WHERE relname LIKE '_pgbaton_ww_%'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(
            c,
            "SELECT count(*) FROM pgbaton.backfills WHERE pass = 'catch_up'"
        )
        .await,
        0
    );
    // A write to a partition goes through the dual-write trigger.
    common::exec(c, "UPDATE t_2 SET name = 'late' WHERE id = 15000").await;
    assert_eq!(
        scalar(
            c,
            "SELECT count(*) FROM t WHERE id = 15000 AND _pgbaton_new_name = 'LATE'"
        )
        .await,
        1
    );
    let (code, out) = run(&db.url, &["complete"]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_schema_of_an_earlier_pgbaton_is_brought_up_to_date() {
    let db = common::fresh_db().await;
    let file = setup(&db, "upgrade").await;
    // The state schema as pgbaton made it before catch-up passes existed.
    common::exec(
        &db.client,
        "DROP TABLE pgbaton.backfill_xids;
         ALTER TABLE pgbaton.backfills DROP CONSTRAINT backfills_pkey, DROP COLUMN pass,
           ADD PRIMARY KEY (migration, table_schema, table_name);",
    )
    .await;
    let (code, out) = run(&db.url, &["start", &file]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        scalar(
            &db.client,
            "SELECT count(*) FROM pgbaton.backfills WHERE table_name = 't'"
        )
        .await,
        2,
        "a fill and a catch-up row"
    );
    assert_eq!(
        scalar(
            &db.client,
            "SELECT array_length(conkey, 1)::int8 FROM pg_constraint \
             WHERE conrelid = 'pgbaton.backfills'::regclass AND contype = 'p'"
        )
        .await,
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_the_catch_up_then_the_same_start_finishes_it() {
    let db = common::fresh_db().await;
    let file = setup_with(
        &db,
        "killed",
        "CREATE TABLE t (id bigserial PRIMARY KEY, name text NOT NULL, note text);
         INSERT INTO t (name) SELECT 'name ' || g FROM generate_series(1, 20000) g;
         ANALYZE t;",
        MIGRATION,
    )
    .await;
    // An old-version writer for the whole test: during the fill (so the catch-up has work), and
    // through the trigger afterwards.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let client = db.connect().await;
        tokio::spawn(async move {
            let mut n: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = (n * 7_919) % 20_000 + 1;
                client
                    .execute(
                        "UPDATE t SET name = 'w' || $1::text WHERE id = $2",
                        &[&n.to_string(), &id],
                    )
                    .await
                    .expect("old-version update");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    // Small, slow batches: the catch-up is still running when it is killed.
    let mut child = common::pgbaton_command(
        &db.url,
        &[
            "start",
            &file,
            "--backfill-batch-size",
            "500",
            "--backfill-batch-delay",
            "40",
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("spawn start");
    let c = &db.client;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let batches = scalar(
            c,
            "SELECT coalesce(max(batches), 0) FROM pgbaton.backfills \
             WHERE pass = 'catch_up' AND status = 'running'",
        )
        .await;
        if batches >= 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the catch-up never got going"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "start ended before it was killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    common::wait_for_killed_pgbaton(c).await;
    let fill_batches = "SELECT batches FROM pgbaton.backfills WHERE pass = 'fill'";
    let catch_up_batches = "SELECT batches FROM pgbaton.backfills WHERE pass = 'catch_up'";
    let (fill_at_kill, catch_up_at_kill) = (
        scalar(c, fill_batches).await,
        scalar(c, catch_up_batches).await,
    );
    assert!(catch_up_at_kill >= 3);

    // The same start goes on from the catch-up's checkpoint; the fill is not run again.
    let (code, out) = run(&db.url, &["start", &file]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        scalar(c, fill_batches).await,
        fill_at_kill,
        "the fill ran again"
    );
    assert!(scalar(c, catch_up_batches).await > catch_up_at_kill);
    assert_eq!(
        scalar(
            c,
            "SELECT count(*) FROM pgbaton.backfills WHERE status <> 'done'"
        )
        .await,
        0
    );
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    assert_eq!(wrong_rows(c).await, 0);
    let (code, out) = run(&db.url, &["verify"]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ctid_fill_does_not_update_a_row_it_moved_forward() {
    let db = common::fresh_db().await;
    // A keyless table whose full first pages have free pages after them: an updated row that
    // does not fit in its page moves there, ahead of the walk.
    let file = setup_with(
        &db,
        "ctid",
        "CREATE TABLE t (n int NOT NULL, name text NOT NULL, note text);
         INSERT INTO t SELECT g, 'name ' || g FROM generate_series(1, 20000) g;
         DELETE FROM t WHERE n BETWEEN 5001 AND 19000;",
        MIGRATION,
    )
    .await;
    db.client.batch_execute("VACUUM t").await.expect("vacuum");
    // Batches of a few pages: the rows of the first ones land in pages later batches walk.
    let (code, out) = run(&db.url, &["start", &file, "--backfill-batch-size", "500"]);
    assert_eq!(code, 0, "{out}");
    let c = &db.client;
    assert_eq!(
        scalar(
            c,
            "SELECT rows_updated FROM pgbaton.backfills WHERE pass = 'fill'"
        )
        .await,
        6_000,
        "every row once"
    );
    assert_eq!(wrong_rows(c).await, 0);
}
