//! Issue #8, items 3, 4, 7 and 8: a `complete` that changed nothing leaves the migration active
//! (rollback allowed), failures name the row behind them, `pause` with nothing running is
//! refused, and state conflicts and bad connection strings get their documented exit codes.

#[path = "../../pgbaton/tests/common/mod.rs"]
mod common;

use common::cli::Cli;

const USERS: &str = "CREATE TABLE users (id int PRIMARY KEY, n int);
     INSERT INTO users SELECT g, g FROM generate_series(1, 5000) g;";

/// `up` itself yields NULL for one row, into a column the new version makes NOT NULL: complete's
/// validation fails (exit 1) naming the row; nothing changed, so the migration stays active and
/// `rollback` works, leaving the schema as before.
#[tokio::test]
async fn a_complete_that_fails_validation_leaves_the_migration_active() {
    let cli = Cli::new("nullup").await;
    cli.sql(USERS).await;
    let before = common::schema_dump(&cli.db.url, "public");
    let path = cli.file(
        "01_not_null.yaml",
        "operations:\n  - alter_column:\n      table: users\n      column: n\n      nullable: false\n      up: CASE WHEN id = 4242 THEN NULL ELSE coalesce(n, 1) END\n      down: n\n",
    );
    cli.expect(&["start", &path], 0);
    let out = cli.expect(&["complete"], 1);
    assert!(
        out.contains("\"id\" : 4242"),
        "the failing row is not named:\n{out}"
    );
    assert!(
        out.contains("still active") && out.contains("pgbaton rollback"),
        "no way out is given:\n{out}"
    );
    let status = cli.expect(&["status"], 0);
    assert!(
        status.contains("01_not_null (active)"),
        "status after a failed complete:\n{status}"
    );
    cli.expect(&["rollback"], 0);
    assert_eq!(common::schema_dump(&cli.db.url, "public"), before);
}

/// A complete that gives up on its lock deadline (exit 4) ran no contract step either: the
/// migration stays active, and it can be rolled back (or completed once the blocker is gone).
#[tokio::test]
async fn a_complete_that_gives_up_on_its_locks_leaves_the_migration_active() {
    let cli = Cli::new("lockcomplete").await;
    cli.sql(USERS).await;
    let path = cli.file(
        "01_add.yaml",
        "operations:\n  - add_column:\n      table: users\n      column:\n        name: m\n        type: int\n        nullable: true\n      up: n * 2\n",
    );
    cli.expect(&["start", &path], 0);
    let blocker = cli.db.connect().await;
    common::exec(&blocker, "BEGIN; SELECT count(*) FROM users").await;
    let out = cli.expect(
        &[
            "complete",
            "--lock-timeout",
            "100",
            "--lock-retry-deadline",
            "2",
        ],
        4,
    );
    assert!(out.contains("still active"), "{out}");
    common::exec(&blocker, "ROLLBACK").await;
    let status = cli.expect(&["status"], 0);
    assert!(status.contains("01_add (active)"), "{status}");
    cli.expect(&["complete"], 0);
    assert_eq!(
        cli.count("SELECT count(*) FROM users WHERE m = n * 2")
            .await,
        5000
    );
}

/// A backfill that fails on one row's data names that row's key and the error.
#[tokio::test]
async fn a_failing_backfill_names_the_row() {
    let cli = Cli::new("divzero").await;
    cli.sql(USERS).await;
    let before = common::schema_dump(&cli.db.url, "public");
    let path = cli.file(
        "01_ratio.yaml",
        "operations:\n  - add_column:\n      table: users\n      column:\n        name: ratio\n        type: int\n        nullable: true\n      up: 100 / (id - 3777)\n",
    );
    let out = cli.expect(&["start", &path], 1);
    assert!(
        out.contains("first failing row: {\"id\" : 3777}: division by zero"),
        "the failing row is not named:\n{out}"
    );
    assert_eq!(common::schema_dump(&cli.db.url, "public"), before);
}

/// `pause` with nothing running is a conflict (exit 4) and leaves no flag behind; a pause left
/// by an earlier version is shown by `status` and announced by `start`.
#[tokio::test]
async fn pause_with_nothing_running_is_refused() {
    let cli = Cli::new("pause").await;
    cli.sql(USERS).await;
    let out = cli.expect(&["pause"], 4);
    assert!(out.contains("no backfill to pause"), "{out}");
    assert_eq!(
        cli.count("SELECT count(*) FROM pgbaton.controls WHERE paused")
            .await,
        0
    );
    // A flag set some other way (an older pgbaton, a pause whose start then ended).
    cli.sql("INSERT INTO pgbaton.controls (schema_name, paused) VALUES ('public', true)")
        .await;
    let status = cli.expect(&["status"], 0);
    assert!(status.contains("paused by `pgbaton pause`"), "{status}");
    // A start then says why it waits (stderr is not a terminal here).
    let path = cli.file(
        "01_add.yaml",
        "operations:\n  - add_column:\n      table: users\n      column:\n        name: m\n        type: int\n        nullable: true\n      up: n * 2\n",
    );
    let mut child = cli
        .command(&["start", &path])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn pgbaton");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(
        child.try_wait().expect("poll").is_none(),
        "a paused start returned"
    );
    child.kill().expect("kill");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("paused") && stderr.contains("pgbaton resume"),
        "{stderr}"
    );
    common::wait_for_killed_pgbaton(&cli.db.client).await;
    cli.expect(&["resume"], 0);
    let status = cli.expect(&["status"], 0);
    assert!(!status.contains("paused by"), "{status}");
}

/// Exit codes (item 8 and issue #9's "errors with a home"): a changed file under the active
/// migration's name, a taken version schema, completing or rolling back are conflicts (4); an
/// unparseable connection URL is a bad command line (2).
#[tokio::test]
async fn state_conflicts_exit_4_and_a_bad_url_exits_2() {
    let cli = Cli::new("codes").await;
    cli.sql(USERS).await;
    let add = "operations:\n  - add_column:\n      table: users\n      column:\n        name: m\n        type: int\n        nullable: true\n      up: n * 2\n";
    let path = cli.file("01_add.yaml", add);
    cli.expect(&["start", &path], 0);
    cli.file("01_add.yaml", &add.replace("n * 2", "n * 3"));
    let out = cli.expect(&["start", &path], 4);
    assert!(out.contains("differs from the document"), "{out}");
    cli.expect(&["rollback"], 0);

    // The version schema's name is taken.
    cli.sql("CREATE SCHEMA public_01_add").await;
    let out = cli.expect(&["start", &path], 4);
    assert!(out.contains("already exists"), "{out}");
    cli.sql("DROP SCHEMA public_01_add").await;

    // Part way through a rollback / a complete (as a crash would leave them).
    cli.expect(&["start", &path], 0);
    cli.sql("UPDATE pgbaton.migrations SET status = 'rolling_back' WHERE name = '01_add'")
        .await;
    let out = cli.expect(&["complete"], 4);
    assert!(out.contains("being rolled back"), "{out}");
    cli.sql(
        "UPDATE pgbaton.migrations SET status = 'completing' WHERE name = '01_add';
         UPDATE pgbaton.steps SET status = 'done' WHERE migration = '01_add' AND phase = 'complete' AND ordinal = 0",
    )
    .await;
    let out = cli.expect(&["rollback"], 4);
    assert!(out.contains("part way through complete"), "{out}");
    cli.sql(
        "UPDATE pgbaton.steps SET status = 'planned' WHERE migration = '01_add' AND phase = 'complete'",
    )
    .await;
    cli.expect(&["complete"], 0);

    let out = cli
        .command(&["status"])
        .env("PGBATON_PG_URL", "postgresql://[::1:5432/x")
        .output()
        .expect("run pgbaton");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
