//! The command line as a contract: the real binary, its exit codes and messages, bad input caught
//! before any DDL (database untouched), concurrent migrators, and recovery after `kill -9`.

#[path = "../../pgbaton/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;

struct Db {
    db: common::TestDb,
    dir: tempdir::Dir,
}

mod tempdir {
    use std::path::{Path, PathBuf};

    /// A directory removed on drop.
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let path = std::env::temp_dir().join(format!(
                "pgbaton-cli-{tag}-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            ));
            std::fs::create_dir_all(&path).expect("temp dir");
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Db {
    async fn new(tag: &str) -> Db {
        Db {
            db: common::fresh_db().await,
            dir: tempdir::Dir::new(tag),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pgbaton"));
        c.args(args)
            .env("PGBATON_PG_URL", &self.db.url)
            .env_remove("DATABASE_URL")
            .env_remove("PGBATON_SCHEMA")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run pgbaton")
    }

    /// Runs and asserts the exit code; returns stdout + stderr.
    fn expect(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "pgbaton {args:?} exited {:?}:\n{text}",
            out.status.code()
        );
        text
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("dir");
        }
        std::fs::write(&p, text).expect("write migration");
        p
    }

    fn dump(&self) -> String {
        common::schema_dump(&self.db.url, "public")
    }

    async fn scalar(&self, sql: &str) -> String {
        let rows = self
            .db
            .client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some(r.get(0).unwrap_or("NULL").to_string())
                }
                _ => None,
            })
            .unwrap_or_default()
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

const CREATE_ITEMS: &str = "operations:
  - create_table:
      name: items
      columns:
        - name: id
          type: serial
          pk: true
        - name: name
          type: text
          nullable: true
";

#[tokio::test]
async fn bad_input_is_refused_before_any_ddl() {
    let db = Db::new("bad").await;
    db.expect(&["init"], 0);
    db.db
        .client
        .batch_execute(
            "CREATE TABLE users (id int PRIMARY KEY, name text); INSERT INTO users VALUES (1, 'a')",
        )
        .await
        .expect("seed");
    let before = db.dump();

    let cases: &[(&str, &str, &[&str])] = &[
        ("01_malformed.yaml", "operations:\n  - create_table: {name: x\n", &["01_malformed.yaml:2:", "YAML"]),
        ("02_unknown_op.yaml", "operations:\n  - make_table:\n      name: x\n", &["02_unknown_op.yaml:2", "make_table"]),
        (
            "03_unknown_field.yaml",
            "operations:\n  - add_column:\n      table: users\n      column:\n        name: age\n        type: int\n        nullabel: true\n",
            &["03_unknown_field.yaml:7", "nullabel"],
        ),
        ("04_bad.json", "{\"operations\": [}", &["04_bad.json:1"]),
        (
            "05_missing_table.yaml",
            "operations:\n  - add_column:\n      table: nope\n      column:\n        name: age\n        type: int\n        nullable: true\n",
            &["05_missing_table.yaml:2", "nope"],
        ),
        (
            "06_duplicate_column.yaml",
            "operations:\n  - add_column:\n      table: users\n      column:\n        name: name\n        type: text\n        nullable: true\n",
            &["06_duplicate_column.yaml:2", "name"],
        ),
        (
            "07_long_name.yaml",
            &format!("operations:\n  - add_column:\n      table: users\n      column:\n        name: {}\n        type: int\n        nullable: true\n", "c".repeat(64)),
            &["07_long_name.yaml:5", "63"],
        ),
        (
            "08_not_null_without_up.yaml",
            "operations:\n  - add_column:\n      table: users\n      column:\n        name: age\n        type: int\n        nullable: false\n",
            &["08_not_null_without_up.yaml:2", "age"],
        ),
    ];
    for (name, text, needles) in cases {
        let path = db.file(name, text);
        let out = db.expect(&["start", s(&path)], 3);
        for n in *needles {
            assert!(
                out.contains(n),
                "{name}: the error should mention {n:?}:\n{out}"
            );
        }
        let out = db.expect(&["validate", s(&path)], 3);
        assert!(out.contains(name), "{out}");
    }
    assert_eq!(before, db.dump(), "the schema is untouched");
    assert_eq!(
        db.scalar("SELECT count(*) FROM pgbaton.migrations").await,
        "0",
        "no migration recorded"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'public\\_%'")
            .await,
        "0"
    );
}

#[tokio::test]
async fn lifecycle_commands_and_their_conflicts() {
    let db = Db::new("life").await;
    let out = db.expect(&["complete"], 4);
    assert!(out.contains("pgbaton init"), "{out}");
    db.expect(&["init"], 0);
    db.expect(&["complete"], 4);
    let out = db.expect(&["rollback"], 4);
    assert!(out.contains("no migration is active"), "{out}");

    let first = db.file("m/01_items.yaml", CREATE_ITEMS);
    let second = db.file(
        "m/02_more.yaml",
        "operations:\n  - add_column:\n      table: items\n      column:\n        name: price\n        type: int\n        nullable: true\n",
    );
    let plan = db.expect(&["plan", s(&first)], 0);
    assert!(plan.contains("start of 01_items"), "{plan}");
    assert!(plan.contains("CREATE TABLE"), "{plan}");
    assert!(plan.contains("lock:"), "{plan}");

    db.expect(&["start", s(&first)], 0);
    let out = db.expect(&["start", s(&second)], 4);
    assert!(out.contains("01_items") && out.contains("active"), "{out}");
    let status = db.expect(&["status", "--json"], 0);
    let v: serde_json::Value =
        serde_json::from_str(status.lines().next().unwrap_or_default()).expect("json");
    assert_eq!(v["active"]["name"], "01_items");
    assert_eq!(
        db.expect(&["latest", "schema"], 0).trim(),
        "public_01_items"
    );
    let url = db.expect(&["latest", "url"], 0);
    assert!(
        url.contains("search_path") && url.contains("public_01_items"),
        "{url}"
    );

    db.expect(&["complete"], 0);
    db.expect(&["start", s(&second)], 0);
    db.expect(&["rollback"], 0);
    // migrate applies what is pending (02 again) and completes it.
    let out = db.expect(&["migrate", s(&db.dir.path().join("m")), "--complete"], 0);
    assert!(out.contains("02_more"), "{out}");
    assert_eq!(db.expect(&["latest", "migration"], 0).trim(), "02_more");

    // A directory that disagrees with the history is refused.
    std::fs::remove_file(&first).expect("rm");
    let out = db.expect(&["migrate", s(&db.dir.path().join("m"))], 4);
    assert!(out.contains("01_items"), "{out}");

    // pull writes the history back out.
    let pulled = db.dir.path().join("pulled");
    db.expect(&["pull", s(&pulled)], 0);
    assert!(pulled.join("01_items.json").exists() && pulled.join("02_more.json").exists());
}

#[tokio::test]
async fn a_second_migrator_fails_at_once_naming_the_holder() {
    let db = Db::new("lock").await;
    db.expect(&["init"], 0);
    let file = db.file("01_items.yaml", CREATE_ITEMS);
    // Another migrator holds the lock (as `pgbaton` would during a long backfill).
    let holder = common::connect(&db.db.url).await;
    holder
        .batch_execute("SET application_name = 'other-migrator'")
        .await
        .expect("set");
    assert!(pgbaton::pg::try_migration_lock(&holder, "pgbaton.public")
        .await
        .expect("lock"));
    let t0 = Instant::now();
    let out = db.expect(&["start", s(&file)], 4);
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(
        out.contains("other-migrator"),
        "names the holder's application: {out}"
    );
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    assert!(
        out.contains(&pid.to_string()),
        "names the holder's pid: {out}"
    );
    drop(holder);
    tokio::time::sleep(Duration::from_millis(200)).await;
    db.expect(&["start", s(&file), "--complete"], 0);
}

/// A migration whose second step takes a while, so the process can be killed in the middle.
const SLOW: &str = "operations:
  - create_table:
      name: slow
      columns:
        - name: id
          type: int
          pk: true
  - sql:
      up: SELECT pg_sleep(30)
      down: SELECT 1
";

async fn wait_for_sessions_gone(db: &Db) {
    common::wait_for_killed_pgbaton(&db.db.client).await;
}

async fn wait_for_step(db: &Db, ordinal: i32, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = db
            .scalar(&format!(
                "SELECT coalesce((SELECT s.status FROM pgbaton.steps s JOIN pgbaton.migrations m
                                    ON m.schema = s.schema AND m.name = s.migration
                                 WHERE m.status = 'starting' AND s.phase = 'start' AND s.ordinal = {ordinal}), 'none')"
            ))
            .await;
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "step {ordinal} never reached {status} (is {got})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_kill_9_rollback_restores_and_start_continues() {
    let db = Db::new("kill").await;
    db.expect(&["init"], 0);
    let before = db.dump();
    let file = db.file("01_slow.yaml", SLOW);

    // Kill during the slow step, then roll back: the schema is exactly as before.
    let mut child = db
        .cmd(&["start", s(&file)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for_step(&db, 0, "done").await;
    child.kill().expect("kill -9");
    let _ = child.wait();
    // The server notices the dead client (pgbaton sets client_connection_check_interval) and
    // ends its session, with its advisory lock and open transaction.
    wait_for_sessions_gone(&db).await;
    let out = db.expect(&["status"], 0);
    assert!(out.contains("01_slow") && out.contains("starting"), "{out}");
    db.expect(&["rollback"], 0);
    assert_eq!(
        before,
        db.dump(),
        "rollback after kill -9 restores the schema"
    );

    // Kill again, then run the same start: it continues, skipping the step already done (if it
    // ran CREATE TABLE again it would fail).
    let fast = db.file(
        "02_fast.yaml",
        &SLOW
            .replace("pg_sleep(30)", "pg_sleep(0)")
            .replace("slow", "quick"),
    );
    let mut child = db
        .cmd(&["start", s(&file)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for_step(&db, 0, "done").await;
    child.kill().expect("kill -9");
    let _ = child.wait();
    wait_for_sessions_gone(&db).await;
    let out = db.expect(&["start", s(&fast)], 4);
    assert!(
        out.contains("01_slow"),
        "another file cannot start meanwhile: {out}"
    );
    // Continue it, with the slow step made fast by cancelling its statement from the outside.
    let url = db.db.url.clone();
    let canceller = tokio::spawn(async move {
        let c = common::connect(&url).await;
        for _ in 0..400 {
            let n: i64 = c
                .query_one(
                    "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND application_name = 'pgbaton' AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .map(|r| r.get(0))
                .unwrap_or(0);
            if n > 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    });
    let out = db.run(&["start", s(&file)]);
    assert!(
        canceller.await.expect("canceller"),
        "the slow step ran again"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The cancelled user SQL fails the start, which rolls back automatically; the point here is
    // that it continued at step 2 (no "already exists" error from step 1).
    assert!(
        !text.contains("already exists"),
        "step 1 ran twice:\n{text}"
    );
    assert!(
        text.contains(SqlState::QUERY_CANCELED.code()) || text.contains("canceling statement"),
        "{text}"
    );
    assert_eq!(
        before,
        db.dump(),
        "the failed continuation rolled back cleanly"
    );
}

#[tokio::test]
async fn rollback_force_skips_a_failing_down_and_says_what_it_left() {
    let db = Db::new("force").await;
    db.expect(&["init"], 0);
    let file = db.file(
        "01_bad_down.yaml",
        "operations:\n  - sql:\n      up: CREATE TABLE t_force (id int)\n      down: DROP TABLE does_not_exist\n",
    );
    db.expect(&["start", s(&file)], 0);
    let out = db.expect(&["rollback"], 1);
    assert!(out.contains("does_not_exist"), "{out}");
    let out = db.expect(&["status"], 0);
    assert!(out.contains("rolling_back"), "stuck until forced: {out}");
    let out = db.expect(&["rollback", "--force"], 0);
    assert!(
        out.contains("SKIPPED") && out.contains("DROP TABLE does_not_exist"),
        "{out}"
    );
    let out = db.expect(&["status"], 0);
    assert!(out.contains("active migration: none"), "{out}");
}

#[tokio::test]
async fn verify_reports_mismatching_rows_and_exits_5() {
    let db = Db::new("verify").await;
    db.expect(&["init"], 0);
    db.db
        .client
        .batch_execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance text);
             INSERT INTO accounts SELECT g, (g * 10)::text FROM generate_series(1, 5000) g;",
        )
        .await
        .expect("seed");
    let file = db.file(
        "01_numeric.yaml",
        "operations:
  - alter_column:
      table: accounts
      column: balance
      type: numeric
      up: balance::numeric
      down: balance::text
",
    );
    db.expect(&["start", s(&file)], 0);
    let out = db.expect(&["verify"], 0);
    assert!(
        out.contains("5000 rows checked") && out.contains("0 mismatching"),
        "{out}"
    );
    // A write that bypasses the trigger (as a bug or a manual fix might) is caught.
    db.db
        .client
        .batch_execute(
            "BEGIN; SET LOCAL session_replication_role = replica;
             UPDATE accounts SET _pgbaton_new_balance = 1 WHERE id = 42; COMMIT;",
        )
        .await
        .expect("corrupt");
    let out = db.expect(&["verify"], 5);
    assert!(out.contains("1 mismatching") && out.contains("42"), "{out}");
    let json = db.expect(&["verify", "--json"], 5);
    let v: serde_json::Value =
        serde_json::from_str(json.lines().next().unwrap_or_default()).expect("json");
    assert_eq!(v[0]["mismatched_rows"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn giving_up_on_a_lock_leaves_nothing_and_does_not_wait_twice() {
    let db = Db::new("giveup").await;
    db.expect(&["init"], 0);
    db.db
        .client
        .batch_execute("CREATE TABLE items (id int PRIMARY KEY)")
        .await
        .expect("table");
    let before = db.dump();
    let file = db.file(
        "01_add.yaml",
        "operations:\n  - add_column:\n      table: items\n      column:\n        name: note\n        type: text\n        nullable: true\n",
    );
    let holder = common::connect(&db.db.url).await;
    holder
        .batch_execute("SET application_name = 'nightly_report'; BEGIN; SELECT count(*) FROM items")
        .await
        .expect("hold");
    let t0 = Instant::now();
    let out = db.expect(
        &[
            "start",
            s(&file),
            "--lock-timeout",
            "200",
            "--lock-retry-deadline",
            "2",
        ],
        4,
    );
    let elapsed = t0.elapsed();
    assert!(out.contains("nightly_report"), "names the blocker: {out}");
    assert!(
        elapsed < Duration::from_secs(5),
        "gave up after the deadline, not twice it: {elapsed:?}"
    );
    holder.batch_execute("ROLLBACK").await.expect("release");
    assert_eq!(before, db.dump());
    let out = db.expect(&["status"], 0);
    assert!(out.contains("active migration: none"), "{out}");
    db.expect(&["start", s(&file), "--complete"], 0);
}
