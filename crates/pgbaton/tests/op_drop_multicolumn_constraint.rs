//! `drop_multicolumn_constraint` through the whole lifecycle: every column the constraint covers
//! is duplicated without it; the new version is free of it from start, the old version stays
//! subject to it (new-version rows converted by `down`) until complete drops it.

mod common;

use common::lifecycle::*;

const TICKETS: &str = "CREATE TABLE tickets (ticket_id serial PRIMARY KEY, sellers_name varchar(255), sellers_zip int,
        CONSTRAINT check_zip_name CHECK (sellers_name = 'alice' OR sellers_zip > 0),
        CONSTRAINT unique_zip_name UNIQUE (sellers_name, sellers_zip));
    INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('alice', 0), ('bob', 5);";

const CONSTRAINTS: &str = "SELECT conname FROM pg_constraint WHERE conrelid = 'public.tickets'::regclass AND contype <> 'n' AND conname NOT LIKE '\\_pgbaton%' ORDER BY 1";

#[tokio::test]
async fn drops_a_multi_column_check() {
    // Example 48, with a `down` that makes new-version rows acceptable to the old check.
    let migration = yaml(
        "02_drop_check",
        "operations:
  - drop_multicolumn_constraint:
      table: tickets
      name: check_zip_name
      up:
        sellers_name: sellers_name
      down:
        sellers_name: sellers_name
        sellers_zip: SELECT CASE WHEN sellers_name <> 'alice' AND sellers_zip <= 0 THEN 1 ELSE sellers_zip END
",
    );
    run(Case {
        setup: vec![],
        seed: TICKETS,
        migration,
        after_start: vec![
            Check::Ok(V::New, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('carol', -4)"),
            Check::Rows(V::New, "SELECT sellers_zip FROM tickets WHERE sellers_name = 'carol'", &["-4"]),
            Check::Rows(V::Old, "SELECT sellers_zip FROM tickets WHERE sellers_name = 'carol'", &["1"]),
            Check::Fails(V::Old, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('dave', -4)", SqlState::CHECK_VIOLATION),
            // The unique constraint on the same columns stays, for both versions.
            Check::Fails(V::New, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('bob', 5)", SqlState::UNIQUE_VIOLATION),
            Check::Fails(V::Old, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('bob', 5)", SqlState::UNIQUE_VIOLATION),
            Check::Ok(V::Old, "DELETE FROM tickets WHERE ticket_id > 2"),
        ],
        after_rollback: vec![
            Check::Rows(V::Base, CONSTRAINTS, &["check_zip_name", "tickets_pkey", "unique_zip_name"]),
            Check::Fails(V::Old, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('dave', -4)", SqlState::CHECK_VIOLATION),
        ],
        after_complete: vec![
            Check::Rows(V::Base, CONSTRAINTS, &["tickets_pkey", "unique_zip_name"]),
            Check::Rows(
                V::Base,
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'unique_zip_name'",
                &["UNIQUE (sellers_name, sellers_zip)"],
            ),
            Check::Ok(V::New, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('dave', -4)"),
            Check::Fails(V::New, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('bob', 5)", SqlState::UNIQUE_VIOLATION),
        ],
    })
    .await;
}

#[tokio::test]
async fn drops_a_multi_column_unique_constraint() {
    let migration = yaml(
        "02_drop_unique",
        "operations:
  - drop_multicolumn_constraint:
      table: tickets
      name: unique_zip_name
      down:
        sellers_name: sellers_name || '-' || ticket_id
        sellers_zip: sellers_zip
",
    );
    run(Case {
        setup: vec![],
        seed: TICKETS,
        migration,
        after_start: vec![
            Check::Ok(
                V::New,
                "INSERT INTO tickets (ticket_id, sellers_name, sellers_zip) VALUES (10, 'bob', 5)",
            ),
            Check::Rows(
                V::New,
                "SELECT count(*) FROM tickets WHERE sellers_name = 'bob'",
                &["2"],
            ),
            Check::Rows(
                V::Old,
                "SELECT sellers_name FROM tickets WHERE ticket_id = 10",
                &["bob-10"],
            ),
            Check::Fails(
                V::Old,
                "INSERT INTO tickets (ticket_id, sellers_name, sellers_zip) VALUES (11, 'bob', 5)",
                SqlState::UNIQUE_VIOLATION,
            ),
            // The check on the same columns stays.
            Check::Fails(
                V::New,
                "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('carol', 0)",
                SqlState::CHECK_VIOLATION,
            ),
            Check::Ok(V::Old, "DELETE FROM tickets WHERE ticket_id > 2"),
        ],
        after_rollback: vec![Check::Rows(
            V::Base,
            CONSTRAINTS,
            &["check_zip_name", "tickets_pkey", "unique_zip_name"],
        )],
        after_complete: vec![
            Check::Rows(V::Base, CONSTRAINTS, &["check_zip_name", "tickets_pkey"]),
            Check::Rows(
                V::Base,
                "SELECT count(*) FROM pg_indexes WHERE tablename = 'tickets'",
                &["1"],
            ),
            Check::Ok(
                V::New,
                "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('bob', 5)",
            ),
            Check::Fails(
                V::New,
                "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('carol', 0)",
                SqlState::CHECK_VIOLATION,
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn validation_errors_come_before_any_ddl() {
    let env = Env::new().await;
    env.sql(TICKETS).await;
    let before = dump(&env);
    let m = env.migrator().await;
    for (body, expected) in [
        ("table: nope, name: x, down: {}", "drop_multicolumn_constraint.table: table \"nope\" does not exist"),
        ("table: tickets, name: nope, down: {}", "drop_multicolumn_constraint.name: constraint \"nope\" does not exist on table \"tickets\""),
        (
            "table: tickets, name: check_zip_name, down: {sellers_name: x}",
            "drop_multicolumn_constraint.down: `down` has no SQL for column \"sellers_zip\"",
        ),
        (
            "table: tickets, name: check_zip_name, down: {sellers_name: x, sellers_zip: x, ticket_id: x}",
            "drop_multicolumn_constraint.down.ticket_id: column \"ticket_id\" is not covered by constraint \"check_zip_name\"",
        ),
        (
            "table: tickets, name: check_zip_name, up: {ticket_id: x}, down: {sellers_name: x, sellers_zip: x}",
            "drop_multicolumn_constraint.up.ticket_id: column \"ticket_id\" is not covered by constraint \"check_zip_name\"",
        ),
    ] {
        let mig = yaml("02_bad", &format!("operations:\n  - drop_multicolumn_constraint: {{{body}}}\n"));
        let err = m.start(&mig, false).await.expect_err(body).to_string();
        assert!(err.contains(expected), "{body}: {err}");
    }
    // `down` is required by the format itself.
    let err = pgbaton::format::parse(
        "02_bad.yaml",
        "02_bad",
        "operations:\n  - drop_multicolumn_constraint: {table: tickets, name: check_zip_name}\n",
        pgbaton::format::FileKind::Yaml,
    )
    .expect_err("down is required")
    .to_string();
    assert!(err.contains("down"), "{err}");
    assert_eq!(dump(&env), before);
}

#[tokio::test]
async fn after_a_table_and_column_rename_in_the_same_migration() {
    // pgroll's "rename table, rename column, drop constraint".
    let migration = yaml(
        "02_renames",
        "operations:
  - rename_table: {from: tickets, to: orders}
  - rename_column: {table: orders, from: sellers_zip, to: zip}
  - drop_multicolumn_constraint:
      table: orders
      name: check_zip_name
      down:
        sellers_name: sellers_name
        zip: SELECT CASE WHEN sellers_name <> 'alice' AND zip <= 0 THEN 1 ELSE zip END
",
    );
    run(Case {
        setup: vec![],
        seed: TICKETS,
        migration,
        after_start: vec![
            Check::Ok(V::New, "INSERT INTO orders (sellers_name, zip) VALUES ('carol', -4)"),
            Check::Rows(V::Old, "SELECT sellers_zip FROM tickets WHERE sellers_name = 'carol'", &["1"]),
            Check::Fails(V::Old, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('dave', -4)", SqlState::CHECK_VIOLATION),
            Check::Ok(V::Old, "DELETE FROM tickets WHERE ticket_id > 2"),
        ],
        after_rollback: vec![Check::Rows(V::Base, CONSTRAINTS, &["check_zip_name", "tickets_pkey", "unique_zip_name"])],
        after_complete: vec![
            Check::Rows(
                V::Base,
                "SELECT conname FROM pg_constraint WHERE conrelid = 'public.orders'::regclass AND contype <> 'n' ORDER BY 1",
                &["tickets_pkey", "unique_zip_name"],
            ),
            Check::Ok(V::New, "INSERT INTO orders (sellers_name, zip) VALUES ('dave', -4)"),
        ],
    })
    .await;
}
