//! The lifecycle itself, end to end through the migrator: init, the journal, version schemas,
//! concurrent migrators, and the errors that must come before any DDL runs.

mod common;

use common::lifecycle::*;

#[tokio::test]
async fn init_is_idempotent_and_status_reports_nothing_active() {
    let env = Env::new().await;
    let m = env.migrator().await;
    m.init().await.expect("second init");
    let status = m.status().await.expect("status");
    assert!(status.initialized);
    assert!(status.active.is_none());
    assert_eq!(status.completed_count, 0);
}

#[tokio::test]
async fn a_table_created_by_sql_gets_a_view_in_the_new_version() {
    let env = Env::new().await;
    let m = env.migrator().await;
    let mig = yaml(
        "01_sql_table",
        "operations:\n  - sql:\n      up: CREATE TABLE widgets (id int PRIMARY KEY, label text DEFAULT 'none')\n      down: DROP TABLE widgets\n",
    );
    m.start(&mig, false).await.expect("start");
    env.check(
        &mig,
        &[
            Check::Ok(V::New, "INSERT INTO widgets (id) VALUES (1)"),
            Check::Rows(V::New, "SELECT id, label FROM widgets", &["1|none"]),
            Check::Rows(
                V::Base,
                "SELECT count(*) FROM pg_views WHERE schemaname = 'public_01_sql_table' AND viewname = 'widgets'",
                &["1"],
            ),
        ],
        "after start",
    )
    .await;
    m.rollback(false).await.expect("rollback");
    env.check(
        &mig,
        &[Check::Rows(
            V::Base,
            "SELECT count(*) FROM pg_class WHERE relname = 'widgets'",
            &["0"],
        )],
        "after rollback",
    )
    .await;
}

#[tokio::test]
async fn a_failed_start_rolls_back_without_running_downs_of_ups_that_never_ran() {
    let env = Env::new().await;
    let m = env.migrator().await;
    let before = common::schema_dump(&env.db.url, "public");
    let mig = yaml(
        "01_fails",
        "operations:
  - sql:
      up: CREATE TABLE a (id int)
      down: DROP TABLE a
  - sql:
      up: SELECT 1/0
      down: DROP TABLE b_never_created
",
    );
    let err = m.start(&mig, false).await.expect_err("division by zero");
    let text = err.to_string();
    assert!(text.contains(SqlState::DIVISION_BY_ZERO.code()), "{text}");
    assert!(text.contains("rolled back"), "{text}");
    assert_eq!(before, common::schema_dump(&env.db.url, "public"));
    assert!(m.status().await.expect("status").active.is_none());
}

/// The demo's migration: three operations on one table, one of which copies the key column. The
/// `up` of a later operation reads the old version's values even for a column an earlier
/// operation moved onto a copy, and both versions read and write throughout.
#[tokio::test]
async fn widen_key_rename_and_add_not_null_in_one_migration() {
    run(Case {
        setup: vec![],
        seed: "CREATE TABLE users (id int PRIMARY KEY, name text, email text);
               INSERT INTO users SELECT g, 'n' || g, 'u' || g || '@ex' || (g % 3) || '.com' FROM generate_series(1, 3000) g;",
        migration: yaml(
            "02_widen",
            "operations:
  - alter_column:
      table: users
      column: id
      type: bigint
      up: id
      down: id
  - rename_column:
      table: users
      from: name
      to: full_name
  - add_column:
      table: users
      column:
        name: email_domain
        type: text
        nullable: false
      up: split_part(email, '@', 2)
",
        ),
        after_start: vec![
            Check::Rows(V::New, "SELECT id, full_name, email_domain FROM users WHERE id IN (1, 2) ORDER BY id", &["1|n1|ex1.com", "2|n2|ex2.com"]),
            Check::Ok(V::New, "INSERT INTO users (id, full_name, email, email_domain) VALUES (4000, 'big', 'b@big.com', 'given')"),
            Check::Rows(V::Old, "SELECT name FROM users WHERE email = 'b@big.com'", &["big"]),
            Check::Ok(V::Old, "INSERT INTO users (id, name, email) VALUES (5001, 'old', 'o@old.com')"),
            Check::Rows(V::New, "SELECT id, full_name, email_domain FROM users WHERE id = 5001", &["5001|old|old.com"]),
            Check::Ok(V::Old, "UPDATE users SET email = 'u1@changed.org' WHERE id = 1"),
            Check::Rows(V::New, "SELECT email_domain FROM users WHERE id = 1", &["changed.org"]),
            Check::Fails(V::New, "INSERT INTO users (id, full_name, email) VALUES (7, 'x', 'x@y')", SqlState::CHECK_VIOLATION),
            Check::Rows(V::New, "SELECT count(*) FROM users WHERE email_domain IS NULL", &["0"]),
        ],
        after_rollback: vec![
            Check::Rows(V::Base, "SELECT count(*), max(id) FROM users", &["3002|5001"]),
            // The start checks run again after the second start.
            Check::Ok(V::Base, "DELETE FROM users WHERE id IN (4000, 5001)"),
            Check::Ok(V::Base, "UPDATE users SET email = 'u1@ex1.com' WHERE id = 1"),
        ],
        after_complete: vec![
            Check::Rows(V::Base, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'id'", &["bigint"]),
            Check::Rows(V::Base, "SELECT count(*) FROM users WHERE email_domain IS NULL", &["0"]),
            Check::Rows(V::New, "SELECT full_name, email_domain FROM users WHERE id = 4000", &["big|given"]),
            Check::Ok(V::New, "INSERT INTO users (id, full_name, email, email_domain) VALUES (3000000001, 'n', 'e', 'd')"),
        ],
    })
    .await;
}
