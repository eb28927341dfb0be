//! `sql` through the whole lifecycle: `up` at start and `down` at rollback; with `onComplete`,
//! `up` at complete instead. pgroll's cases (raw SQL, onComplete, raw SQL after an onComplete
//! migration, a migration on top of raw SQL, a generated column made by raw SQL), later
//! operations of the same migration trusting what the SQL made, odd names, and the errors.

mod common;

use common::lifecycle::*;

fn people() -> pgbaton::format::Migration {
    yaml(
        "01_people",
        "operations:
  - create_table:
      name: people
      columns:
        - {name: id, type: serial, pk: true}
        - {name: name, type: text}
",
    )
}

#[tokio::test]
async fn pgroll_raw_sql() {
    let migration = yaml(
        "02_raw_sql",
        "operations:
  - sql:
      up: CREATE TABLE test_table (id serial, name text)
      down: DROP TABLE test_table
",
    );
    let exists = vec![
        Check::Ok(V::Base, "INSERT INTO test_table (name) VALUES ('alice')"),
        Check::Rows(V::Base, "SELECT id, name FROM test_table", &["1|alice"]),
        Check::Ok(V::Base, "TRUNCATE test_table RESTART IDENTITY"),
    ];
    run(Case {
        setup: vec![people()],
        seed: "",
        migration,
        after_start: exists.clone(),
        after_rollback: vec![Check::Fails(
            V::Base,
            "SELECT * FROM test_table",
            SqlState::UNDEFINED_TABLE,
        )],
        after_complete: exists,
    })
    .await;
}

#[tokio::test]
async fn pgroll_raw_sql_on_complete() {
    // The pgroll example 32_sql_on_complete.
    let migration = yaml(
        "02_sql_on_complete",
        "operations:
  - sql:
      up: ALTER TABLE people ADD COLUMN birth_date timestamp
      onComplete: true
",
    );
    let absent = vec![
        Check::Fails(
            V::Base,
            "SELECT birth_date FROM people",
            SqlState::UNDEFINED_COLUMN,
        ),
        Check::Ok(
            V::Old,
            "INSERT INTO people (name) VALUES ('x'); DELETE FROM people",
        ),
        Check::Ok(
            V::New,
            "INSERT INTO people (name) VALUES ('x'); DELETE FROM people",
        ),
    ];
    run(Case {
        setup: vec![people()],
        seed: "",
        migration,
        after_start: absent.clone(),
        after_rollback: absent,
        after_complete: vec![
            Check::Ok(
                V::Base,
                "INSERT INTO people (name, birth_date) VALUES ('a', '2000-01-01')",
            ),
            Check::Rows(
                V::Base,
                "SELECT name, birth_date FROM people",
                &["a|2000-01-01 00:00:00"],
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn raw_sql_after_an_on_complete_migration_and_a_migration_on_top() {
    let on_complete = yaml(
        "02_on_complete",
        "operations:
  - sql:
      up: CREATE TABLE made (id int PRIMARY KEY, name text)
      onComplete: true
",
    );
    // A migration of pgbaton's own operations on the table the SQL made.
    let migration = yaml(
        "03_on_top",
        "operations:
  - rename_table: {from: made, to: made2}
  - sql:
      up: INSERT INTO made (id, name) VALUES (1, 'one')
      down: DELETE FROM made WHERE id = 1
",
    );
    let after_start = vec![
        Check::Rows(V::New, "SELECT id, name FROM made2", &["1|one"]),
        Check::Rows(V::Old, "SELECT count(*) FROM made", &["1"]),
    ];
    run(Case {
        setup: vec![people(), on_complete],
        seed: "",
        migration,
        after_start,
        after_rollback: vec![Check::Rows(V::Base, "SELECT count(*) FROM made", &["0"])],
        after_complete: vec![
            Check::Rows(V::New, "SELECT id, name FROM made2", &["1|one"]),
            Check::Fails(V::Base, "SELECT * FROM made", SqlState::UNDEFINED_TABLE),
        ],
    })
    .await;
}

#[tokio::test]
async fn raw_sql_table_with_a_generated_column() {
    // pgroll: "raw SQL migration can create table with a generated column".
    let migration = yaml(
        "02_generated",
        r#"operations:
  - sql:
      up: CREATE TABLE "Odd ""T""" (id int PRIMARY KEY, name text, loud text GENERATED ALWAYS AS (upper(name)) STORED)
      down: DROP TABLE "Odd ""T"""
"#,
    );
    let works = vec![
        Check::Ok(
            V::Base,
            r#"INSERT INTO "Odd ""T""" (id, name) VALUES (1, 'alice')"#,
        ),
        Check::Rows(V::Base, r#"SELECT loud FROM "Odd ""T""""#, &["ALICE"]),
        Check::Ok(V::Base, r#"DELETE FROM "Odd ""T""""#),
    ];
    run(Case {
        setup: vec![people()],
        seed: "",
        migration,
        after_start: works.clone(),
        after_rollback: vec![Check::Fails(
            V::Base,
            r#"SELECT * FROM "Odd ""T""""#,
            SqlState::UNDEFINED_TABLE,
        )],
        after_complete: works,
    })
    .await;
}

#[tokio::test]
async fn later_operations_trust_what_the_sql_made() {
    // After a start-time `sql`, a table missing from the model is assumed to exist.
    let migration = yaml(
        "02_sql_then_ops",
        "operations:
  - sql:
      up: CREATE TABLE made (id int PRIMARY KEY)
      down: DROP TABLE IF EXISTS made
  - set_replica_identity: {table: made, identity: {type: full}}
  - rename_table: {from: made, to: made2}
",
    );
    run(Case {
        setup: vec![people()],
        seed: "",
        migration,
        after_start: vec![Check::Rows(
            V::Base,
            "SELECT relreplident FROM pg_class WHERE relname = 'made' AND relkind = 'r'",
            &["f"],
        )],
        after_rollback: vec![Check::Fails(
            V::Base,
            "SELECT * FROM made",
            SqlState::UNDEFINED_TABLE,
        )],
        after_complete: vec![
            Check::Fails(V::Base, "SELECT * FROM made", SqlState::UNDEFINED_TABLE),
            Check::Rows(
                V::Base,
                "SELECT relreplident FROM pg_class WHERE relname = 'made2'",
                &["f"],
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn in_another_schema() {
    // The SQL runs with the migrator's search path; a file for a non-public schema names it.
    let env = Env::with_schema("S \"2\"").await;
    let migration = yaml(
        "02_sql",
        r#"operations:
  - sql:
      up: CREATE TABLE "S ""2""".t (id int); COMMENT ON TABLE "S ""2""".t IS 'it''s here'
      down: DROP TABLE "S ""2""".t
"#,
    );
    let present = vec![Check::Rows(
        V::Base,
        "SELECT obj_description('t'::regclass, 'pg_class')",
        &["it's here"],
    )];
    run_in(
        &env,
        Case {
            setup: vec![],
            seed: "",
            migration,
            after_start: present.clone(),
            after_rollback: vec![Check::Fails(
                V::Base,
                "SELECT * FROM t",
                SqlState::UNDEFINED_TABLE,
            )],
            after_complete: present,
        },
    )
    .await;
}

#[tokio::test]
async fn validation_errors_come_before_any_ddl() {
    let env = common::lifecycle::setup(vec![people()], "").await;
    let before = dump(&env);
    let m = env.migrator().await;
    let cases: &[(&str, &str)] = &[
        (
            "{up: ''}",
            "operations[0].sql.up: the SQL to run must not be empty",
        ),
        (
            "{up: ' ', down: DROP TABLE people}",
            "operations[0].sql.up: the SQL to run must not be empty",
        ),
        (
            "{up: CREATE TABLE x (id int), down: DROP TABLE x, onComplete: true}",
            "operations[0].sql.down: down is not allowed with onComplete: true",
        ),
    ];
    for (body, expected) in cases {
        let mig = yaml("02_bad", &format!("operations:\n  - sql: {body}\n"));
        let err = m.start(&mig, false).await.expect_err(body).to_string();
        assert!(err.contains(expected), "{body}: got {err}");
    }
    assert_eq!(dump(&env), before);
    assert!(m.status().await.expect("status").active.is_none());
}

#[tokio::test]
async fn a_failing_up_is_rolled_back() {
    let env = common::lifecycle::setup(vec![people()], "").await;
    let before = dump(&env);
    let m = env.migrator().await;
    // The table the first statement made goes with the failed transaction; no down is needed.
    let mig = yaml(
        "02_fails",
        "operations:
  - sql:
      up: CREATE TABLE x (id int); SELECT 1 / 0
",
    );
    let err = m
        .start(&mig, false)
        .await
        .expect_err("division by zero")
        .to_string();
    assert!(
        err.contains("division by zero") && err.contains("rolled back"),
        "{err}"
    );
    assert_eq!(dump(&env), before);
    assert!(m.status().await.expect("status").active.is_none());
}
