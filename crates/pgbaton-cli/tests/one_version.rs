//! `migrate --one-version`: three pending files (a column added with `up`, a type changed, a
//! column renamed) deployed as ONE migration — one version schema named after the last file,
//! one backfill of the table, one complete, one rollback — while the old release keeps its
//! version schema until complete. Also `--expect-one`, a bad second file refused before any
//! DDL, and kill -9 in the middle of the combined backfill, resumed by running `migrate` again.

#[path = "../../pgbaton/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::lifecycle::Env;
use common::{scalar_i64, schema_dump};
use pgbaton::history::Accept;
use pgbaton::one_version::MigrateOptions;
use pgbaton_lab::workload::{OpMix, UsersTable, VersionPin, Workload, WorkloadConfig};

/// A directory removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let path = std::env::temp_dir().join(format!(
            "pgbaton-onev-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        Dir(path)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).expect("write migration");
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn s(&self) -> &str {
        self.0.to_str().expect("utf-8 path")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const CREATE_USERS: &str = "operations:
  - create_table:
      name: users
      columns:
        - name: id
          type: bigint
          pk: true
        - name: name
          type: text
        - name: email
          type: text
        - name: created_at
          type: timestamptz
          default: now()
";

const ADD_NICKNAME: &str = "operations:
  - add_column:
      table: users
      up: \"'nick ' || name\"
      column:
        name: nickname
        type: text
        nullable: true
";

const WIDEN_EMAIL: &str = "operations:
  - alter_column:
      table: users
      column: email
      type: varchar(320)
      up: email
      down: email
";

const RENAME_NAME: &str = "operations:
  - rename_column:
      table: users
      from: name
      to: full_name
";

const OLD: &str = "public_00_create_users";
const NEW: &str = "public_03_rename_name";

fn one_version(complete: bool) -> MigrateOptions {
    MigrateOptions {
        complete,
        one_version: true,
        expect_one: false,
        accept: Accept::default(),
    }
}

/// The version schemas of `public` that exist, sorted.
async fn version_schemas(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'public\\_%' ORDER BY 1",
            &[],
        )
        .await
        .expect("schemas")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// (name, status, version_schema, bundle) of every history row, by name.
async fn history(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT name || ' ' || status || ' ' || version_schema || ' ' || coalesce(bundle, '-')
               FROM pgbaton.migrations ORDER BY name",
            &[],
        )
        .await
        .expect("history")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn query_in(client: &tokio_postgres::Client, version: &str, sql: &str) -> Vec<String> {
    client
        .batch_execute(&format!("SET search_path TO {version}"))
        .await
        .expect("search_path");
    let rows = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql} as {version}: {}", common::describe(&e)));
    client
        .batch_execute("RESET search_path")
        .await
        .expect("reset");
    rows.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_files_as_one_version_rollback_restores_exactly_then_complete() {
    let env = Env::new().await;
    let c = &env.db.client;
    let dir = Dir::new("three");
    dir.write("00_create_users.yaml", CREATE_USERS);
    let m = env.migrator().await;
    assert_eq!(
        m.migrate(dir.path(), true).await.expect("00"),
        ["00_create_users"]
    );
    common::exec(
        c,
        "INSERT INTO public.users (id, name, email) SELECT g, 'user ' || g, 'u' || g || '@example.com' FROM generate_series(1, 3000) g",
    )
    .await;
    let before = schema_dump(&env.db.url, "public");
    let before_old = schema_dump(&env.db.url, OLD);

    dir.write("01_add_nickname.yaml", ADD_NICKNAME);
    dir.write("02_widen_email.yaml", WIDEN_EMAIL);
    dir.write("03_rename_name.yaml", RENAME_NAME);
    let applied = m
        .migrate_with(dir.path(), &one_version(false))
        .await
        .expect("one version");
    assert_eq!(
        applied,
        ["01_add_nickname", "02_widen_email", "03_rename_name"]
    );

    // One version schema, named after the last file; the old one is still there.
    assert_eq!(version_schemas(c).await, [OLD, NEW]);
    assert_eq!(
        history(c).await,
        [
            format!("00_create_users completed {OLD} -"),
            format!("01_add_nickname bundled {NEW} 03_rename_name"),
            format!("02_widen_email bundled {NEW} 03_rename_name"),
            format!("03_rename_name active {NEW} -"),
        ]
    );
    // One migration's journal, with one backfill of the table (all three files' columns).
    assert_eq!(
        scalar_i64(c, "SELECT count(DISTINCT migration) FROM pgbaton.steps WHERE migration <> '00_create_users'").await,
        1
    );
    assert_eq!(
        scalar_i64(c, "SELECT count(*) FROM pgbaton.steps WHERE migration = '03_rename_name' AND phase = 'start' AND title LIKE 'backfill %'").await,
        1
    );
    let status = m.status().await.expect("status");
    let active = status.active.as_ref().expect("active");
    assert_eq!(active.name, "03_rename_name");
    assert_eq!(active.bundled, ["01_add_nickname", "02_widen_email"]);
    assert_eq!(active.version_schema, NEW);

    // The old release: its schema, its names, its writes.
    assert_eq!(
        query_in(c, OLD, "INSERT INTO users (id, name, email) VALUES (5001, 'old writer', 'ow@example.com'); SELECT name, email FROM users WHERE id = 5001").await,
        ["old writer|ow@example.com"]
    );
    assert_eq!(
        query_in(c, OLD, "UPDATE users SET name = 'renamed by old' WHERE id = 7; SELECT name FROM users WHERE id = 7").await,
        ["renamed by old"]
    );
    // The new release sees all three files at once.
    assert_eq!(
        query_in(
            c,
            NEW,
            "SELECT full_name, nickname, email FROM users WHERE id IN (1, 7, 5001) ORDER BY id"
        )
        .await,
        [
            "user 1|nick user 1|u1@example.com",
            "renamed by old|nick renamed by old|u7@example.com",
            "old writer|nick old writer|ow@example.com",
        ]
    );
    assert_eq!(
        scalar_i64(c, &format!("SELECT count(*) FROM {NEW}.users WHERE nickname IS DISTINCT FROM 'nick ' || full_name")).await,
        0,
        "every existing row backfilled"
    );
    let email_type: String = c
        .query_one(
            &format!("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = '{NEW}.users'::regclass AND attname = 'email'"),
            &[],
        )
        .await
        .expect("type")
        .get(0);
    assert_eq!(email_type, "character varying(320)");
    assert_eq!(
        query_in(c, NEW, "INSERT INTO users (id, full_name, email, nickname) VALUES (5002, 'new writer', 'nw@example.com', 'nw'); SELECT full_name, nickname FROM users WHERE id = 5002").await,
        ["new writer|nw"]
    );
    assert_eq!(
        query_in(c, OLD, "SELECT name, email FROM users WHERE id = 5002").await,
        ["new writer|nw@example.com"],
        "the old release sees the new release's writes"
    );

    // Another migrate cannot start meanwhile; a plain `start` of a bundled file neither.
    let err = m.migrate(dir.path(), false).await.expect_err("active");
    assert!(err.to_string().contains("03_rename_name"), "{err}");

    // One rollback undoes all three: the schema is exactly as before, the old release works.
    let out = m.rollback(false).await.expect("rollback");
    assert_eq!(out.migration, "03_rename_name");
    assert_eq!(
        before,
        schema_dump(&env.db.url, "public"),
        "rollback restores the exact schema"
    );
    assert_eq!(before_old, schema_dump(&env.db.url, OLD));
    assert_eq!(version_schemas(c).await, [OLD]);
    assert_eq!(
        history(c).await,
        [
            format!("00_create_users completed {OLD} -"),
            format!("01_add_nickname rolled_back {NEW} 03_rename_name"),
            format!("02_widen_email rolled_back {NEW} 03_rename_name"),
            format!("03_rename_name rolled_back {NEW} -"),
        ]
    );
    assert_eq!(
        query_in(c, OLD, "SELECT name FROM users WHERE id = 5002").await,
        ["new writer"]
    );

    // Again, completing this time: one complete contracts all three and retires the old schema.
    let applied = m
        .migrate_with(dir.path(), &one_version(true))
        .await
        .expect("one version again, completed");
    assert_eq!(applied.len(), 3);
    assert_eq!(version_schemas(c).await, [NEW]);
    assert_eq!(
        query_in(
            c,
            "public",
            "SELECT full_name, nickname, email FROM users WHERE id = 5001"
        )
        .await,
        ["old writer|nick old writer|ow@example.com"]
    );
    let base_type: String = c
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'public.users'::regclass AND attname = 'email'",
            &[],
        )
        .await
        .expect("type")
        .get(0);
    assert_eq!(base_type, "character varying(320)");
    assert_eq!(
        scalar_i64(
            c,
            "SELECT count(*) FROM pgbaton.migrations WHERE status = 'completed'"
        )
        .await,
        4
    );
    assert_eq!(
        m.latest().await.expect("latest"),
        Some(("03_rename_name".into(), NEW.into()))
    );
    assert_eq!(
        pgbaton::one_version::latest_local(dir.path(), "public").expect("local"),
        Some(("03_rename_name".into(), NEW.into())),
        "latest --local agrees with the database"
    );
    assert!(m
        .migrate(dir.path(), false)
        .await
        .expect("nothing")
        .is_empty());

    // The history has every file: pull writes all four.
    let pulled = Dir::new("pull");
    let written = m.pull(pulled.path()).await.expect("pull");
    assert_eq!(written.len(), 4);
    assert!(pulled.path().join("02_widen_email.json").exists());
    // The next migration retires the one-version schema as usual.
    dir.write(
        "04_drop_nickname.yaml",
        "operations:\n  - drop_column:\n      table: users\n      column: nickname\n",
    );
    assert_eq!(
        m.migrate(dir.path(), true).await.expect("04"),
        ["04_drop_nickname"]
    );
    assert_eq!(version_schemas(c).await, ["public_04_drop_nickname"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn expect_one_and_a_bad_second_file_change_nothing() {
    let env = Env::new().await;
    let c = &env.db.client;
    let dir = Dir::new("expect");
    dir.write("00_create_users.yaml", CREATE_USERS);
    let m = env.migrator().await;
    m.migrate(dir.path(), true).await.expect("00");
    let before = schema_dump(&env.db.url, "public");
    let rows_before = history(c).await;

    dir.write("01_add_nickname.yaml", ADD_NICKNAME);
    dir.write("02_widen_email.yaml", WIDEN_EMAIL);
    let expect_one = MigrateOptions {
        expect_one: true,
        ..Default::default()
    };
    let err = m
        .migrate_with(dir.path(), &expect_one)
        .await
        .expect_err("two pending");
    let text = err.to_string();
    assert!(
        text.contains("2 pending")
            && text.contains("01_add_nickname")
            && text.contains("02_widen_email"),
        "{text}"
    );
    assert_eq!(err.exit_code(), pgbaton::error::exit::CONFLICT);
    assert_eq!(before, schema_dump(&env.db.url, "public"));
    assert_eq!(rows_before, history(c).await);

    // The second file names a column that does not exist: refused before any DDL, naming it.
    dir.write(
        "02_widen_email.yaml",
        &WIDEN_EMAIL.replace("column: email", "column: mail"),
    );
    let err = m
        .migrate_with(dir.path(), &one_version(false))
        .await
        .expect_err("bad second file");
    assert!(err.to_string().contains("02_widen_email.yaml"), "{err}");
    assert_eq!(before, schema_dump(&env.db.url, "public"));
    assert_eq!(rows_before, history(c).await, "nothing recorded");
    assert_eq!(version_schemas(c).await, [OLD]);

    // Exactly one pending: --expect-one runs it.
    std::fs::remove_file(dir.path().join("02_widen_email.yaml")).expect("rm");
    assert_eq!(
        m.migrate_with(dir.path(), &expect_one)
            .await
            .expect("one pending"),
        ["01_add_nickname"]
    );
    // And with none pending it refuses too (a deploy that expected a migration).
    m.complete().await.expect("complete");
    let err = m
        .migrate_with(dir.path(), &expect_one)
        .await
        .expect_err("none");
    assert!(err.to_string().contains("0 pending"), "{err}");
}

const ROWS: i64 = 60_000;

/// The CLI under load: old-release clients write through the old version schema the whole time;
/// `migrate --one-version` is killed (-9) in the middle of the combined backfill and run again,
/// which continues from the checkpoint; new-release clients write through the one new version
/// schema; complete; no committed write is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_version_under_load_kill_9_mid_backfill_and_resume() {
    let db = common::fresh_db().await;
    let c = &db.client;
    let dir = Dir::new("load");
    dir.write("00_create_users.yaml", CREATE_USERS);
    assert_eq!(common::pgbaton_run(&db.url, &["init"]).0, 0);
    let (code, out) = common::pgbaton_run(&db.url, &["migrate", dir.s(), "--complete"]);
    assert_eq!(code, 0, "{out}");
    common::exec(
        c,
        &format!("INSERT INTO public.users (id, name, email) SELECT g, 'user ' || g, 'user' || g || '@example.com' FROM generate_series(1, {ROWS}) g"),
    )
    .await;
    for (name, text) in [
        ("01_add_nickname.yaml", ADD_NICKNAME),
        ("02_widen_email.yaml", WIDEN_EMAIL),
        ("03_rename_name.yaml", RENAME_NAME),
    ] {
        dir.write(name, text);
    }
    let (code, local) = common::pgbaton_run(&db.url, &["latest", "schema", "--local", dir.s()]);
    assert_eq!(code, 0, "{local}");
    assert_eq!(local.trim(), NEW);

    // The old release, pinned to its version schema, writes throughout.
    let users = UsersTable::new("users");
    let mix = OpMix {
        read: 40,
        update: 45,
        insert: 15,
        delete: 0,
    };
    let mut config = WorkloadConfig::from_url(&db.url).expect("url");
    config.clients = users.clients(3, VersionPin::SearchPath(OLD.into()), &mix);
    config.max_id = ROWS;
    config.log_writes = true;
    config.prepare = false;
    config.think_time = Duration::from_millis(2);
    config.initial_phase = "before".into();
    let old = Workload::start(config).await.expect("old workload");
    tokio::time::sleep(Duration::from_millis(300)).await;

    old.mark_phase("start");
    let mut child = common::pgbaton_command(
        &db.url,
        &[
            "migrate",
            dir.s(),
            "--one-version",
            "--backfill-batch-size",
            "1000",
            "--backfill-batch-delay",
            "20",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn migrate");
    let deadline = Instant::now() + Duration::from_secs(120);
    let at_kill = loop {
        let done = scalar_i64(
            c,
            "SELECT coalesce(max(rows_done), 0)::bigint FROM pgbaton.backfills",
        )
        .await;
        if done >= ROWS / 4 {
            break done;
        }
        assert!(
            Instant::now() < deadline,
            "the backfill never got a quarter through"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "migrate ended before it was killed"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    };
    child.kill().expect("kill -9");
    let _ = child.wait();
    old.mark_phase("killed");
    common::wait_for_killed_pgbaton(c).await;
    let checkpoint = scalar_i64(c, "SELECT max(rows_done)::bigint FROM pgbaton.backfills").await;
    assert!(checkpoint >= at_kill);
    let (code, status) = common::pgbaton_run(&db.url, &["status"]);
    assert_eq!(code, 0, "{status}");
    assert!(status.contains("03_rename_name (starting)"), "{status}");
    assert!(
        status.contains("one version with: 01_add_nickname, 02_widen_email"),
        "{status}"
    );

    // The same command again continues the one migration from its checkpoint.
    old.mark_phase("resume");
    let (code, out) =
        common::pgbaton_run(&db.url, &["migrate", dir.s(), "--one-version", "--json"]);
    assert_eq!(code, 0, "{out}");
    let first_progress = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "backfill")
        .expect("backfill progress events");
    let resumed_at = first_progress["progress"]["rows_done"]
        .as_i64()
        .expect("rows_done");
    assert!(
        resumed_at >= checkpoint,
        "resumed at {resumed_at}, the checkpoint said {checkpoint}: it restarted"
    );
    assert_eq!(version_schemas(c).await, [OLD, NEW]);

    // The new release writes through the one new version schema, alongside the old one.
    old.mark_phase("both versions");
    let mut config = WorkloadConfig::from_url(&db.url).expect("url");
    let renamed = UsersTable::new("users").with_name_column("full_name");
    // Updates only: fresh ids come from each workload's own counter, so only one of them inserts.
    let update_only = OpMix {
        read: 40,
        update: 60,
        insert: 0,
        delete: 0,
    };
    config.clients = renamed.clients(3, VersionPin::SearchPath(NEW.into()), &update_only);
    config.max_id = ROWS;
    config.log_writes = true;
    config.prepare = false;
    config.think_time = Duration::from_millis(2);
    config.seed = 99;
    config.initial_phase = "both versions".into();
    let new = Workload::start(config).await.expect("new workload");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, out) = common::pgbaton_run(&db.url, &["verify"]);
    assert_eq!(code, 0, "verify: {out}");
    assert!(out.contains(" 0 mismatching"), "{out}");
    assert_eq!(
        scalar_i64(
            c,
            &format!("SELECT count(*) FROM {NEW}.users WHERE nickname IS NULL")
        )
        .await,
        0,
        "every row got its nickname (backfill, or the trigger for old-release writes)"
    );
    // The old release is gone before complete, as in a rollout.
    let old_report = old.stop().await;
    // It stopped a moment ago, inside the 60 s safe-to-complete window: complete knowingly.
    let (code, out) = common::pgbaton_run(&db.url, &["complete", "--force"]);
    assert_eq!(code, 0, "complete: {out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new_report = new.stop().await;
    eprintln!("old release:\n{old_report}\nnew release:\n{new_report}");

    // The old release never failed while its schema existed (it was stopped before complete).
    assert_eq!(old_report.total.failures, 0, "{old_report}");
    assert!(old_report.writes_logged > 500, "{old_report}");
    // The new release's clients see their statements' result types change at complete (the
    // email column's type changes under them): at most that race per client and kind.
    let raced = new_report
        .total
        .failures_with(tokio_postgres::error::SqlState::FEATURE_NOT_SUPPORTED.code());
    assert!(raced <= 12, "{new_report}");
    assert_eq!(new_report.total.failures, raced, "{new_report}");
    assert!(new_report.writes_logged > 200, "{new_report}");
    // Every committed write of both releases is in the final table. (A row both releases
    // wrote is checked by neither log: each knows only its own writes.)
    let keys = |r: &pgbaton_lab::workload::WorkloadReport| -> std::collections::HashSet<i64> {
        r.writes.entries().iter().map(|w| w.key).collect()
    };
    let (old_keys, new_keys) = (keys(&old_report), keys(&new_report));
    for (label, report, other) in [
        ("old", &old_report, &new_keys),
        ("new", &new_report, &old_keys),
    ] {
        let mismatches = report
            .writes
            .verify_table(c, "SELECT id, full_name FROM public.users")
            .await
            .expect("read back");
        let lost: Vec<_> = mismatches
            .iter()
            .filter(|m| !other.contains(&m.key))
            .collect();
        assert!(lost.is_empty(), "{label}-release writes lost: {lost:#?}");
    }
    assert!(old_keys.difference(&new_keys).count() > 300);
    assert!(new_keys.difference(&old_keys).count() > 100);
    assert_eq!(version_schemas(c).await, [NEW]);
    let (code, db_latest) = common::pgbaton_run(&db.url, &["latest", "schema"]);
    assert_eq!(code, 0);
    assert_eq!(
        db_latest.trim(),
        local.trim(),
        "latest --local equals the database's answer"
    );
}

/// `latest --local` reads the directory only: no database is needed (the URL points nowhere).
#[test]
fn latest_local_needs_no_database() {
    let dir = Dir::new("local");
    dir.write("00_create_users.yaml", CREATE_USERS);
    dir.write("01_add_nickname.yaml", ADD_NICKNAME);
    dir.write(
        "02_widen_email.yaml",
        &format!("version_schema: v2\n{WIDEN_EMAIL}"),
    );
    let nowhere = "postgresql://nobody@127.0.0.1:1/nothing";
    let (code, out) = common::pgbaton_run(nowhere, &["latest", "schema", "--local", dir.s()]);
    assert_eq!((code, out.trim()), (0, "public_v2"), "{out}");
    let (code, out) = common::pgbaton_run(nowhere, &["latest", "migration", "--local", dir.s()]);
    assert_eq!((code, out.trim()), (0, "02_widen_email"), "{out}");
    let (code, out) = common::pgbaton_run(
        nowhere,
        &["--schema", "app", "latest", "url", "--local", dir.s()],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.trim()
            .starts_with("postgresql://nobody@127.0.0.1:1/nothing")
            && out.contains("search_path%3Dapp_v2"),
        "{out}"
    );
    let empty = Dir::new("empty");
    let (code, out) = common::pgbaton_run(nowhere, &["latest", "schema", "--local", empty.s()]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("has no migration file"), "{out}");
}

/// Killed in the middle of the combined backfill, then rolled back: exactly the schema before,
/// the old release's version schema intact, all three files recorded as rolled back.
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_backfill_then_rollback_restores_exactly() {
    let db = common::fresh_db().await;
    let c = &db.client;
    let dir = Dir::new("killrb");
    dir.write("00_create_users.yaml", CREATE_USERS);
    assert_eq!(common::pgbaton_run(&db.url, &["init"]).0, 0);
    let (code, out) = common::pgbaton_run(&db.url, &["migrate", dir.s(), "--complete"]);
    assert_eq!(code, 0, "{out}");
    common::exec(
        c,
        "INSERT INTO public.users (id, name, email) SELECT g, 'user ' || g, 'u' || g || '@example.com' FROM generate_series(1, 40000) g",
    )
    .await;
    let before = schema_dump(&db.url, "public");
    let before_old = schema_dump(&db.url, OLD);
    for (name, text) in [
        ("01_add_nickname.yaml", ADD_NICKNAME),
        ("02_widen_email.yaml", WIDEN_EMAIL),
        ("03_rename_name.yaml", RENAME_NAME),
    ] {
        dir.write(name, text);
    }
    let mut child = common::pgbaton_command(
        &db.url,
        &[
            "migrate",
            dir.s(),
            "--one-version",
            "--backfill-batch-size",
            "500",
            "--backfill-batch-delay",
            "20",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn migrate");
    let deadline = Instant::now() + Duration::from_secs(60);
    while scalar_i64(
        c,
        "SELECT coalesce(max(rows_done), 0)::bigint FROM pgbaton.backfills",
    )
    .await
        < 5000
    {
        assert!(Instant::now() < deadline, "the backfill never started");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "migrate ended early"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    common::wait_for_killed_pgbaton(c).await;
    let (code, out) = common::pgbaton_run(&db.url, &["rollback"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("03_rename_name"), "{out}");
    assert_eq!(
        before,
        schema_dump(&db.url, "public"),
        "rollback after kill -9 restores the exact schema"
    );
    assert_eq!(before_old, schema_dump(&db.url, OLD));
    assert_eq!(version_schemas(c).await, [OLD]);
    assert_eq!(
        scalar_i64(
            c,
            "SELECT count(*) FROM pgbaton.migrations WHERE status = 'rolled_back'"
        )
        .await,
        3
    );
    assert_eq!(
        scalar_i64(c, "SELECT count(*) FROM pgbaton.backfills").await,
        0
    );
    // And the deploy can be run again from scratch.
    let (code, out) = common::pgbaton_run(
        &db.url,
        &["migrate", dir.s(), "--one-version", "--complete"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(version_schemas(c).await, [NEW]);
}
