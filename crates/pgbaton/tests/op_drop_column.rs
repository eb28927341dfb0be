//! `drop_column` through the whole lifecycle: the new version stops seeing the column at start
//! while the old version keeps reading and writing it; rollback changes nothing physical; complete
//! drops it (with its indexes and constraints); with `down`, rows the new version writes fill the
//! column for the old version. Also pgroll's combinations with `add_column` and
//! `rename_column` in one migration, a name dropped and added again, and the validation errors.
//! (Odd names in another schema: `op_odd_names.rs`.)

mod common;

use common::fixtures::{setup_users, USERS_COLUMNS, USERS_SEED};
use common::lifecycle::*;

#[tokio::test]
async fn hidden_at_start_dropped_at_complete() {
    let migration = yaml(
        "02_drop_email",
        "operations:
  - drop_column: {table: users, column: email}
",
    );
    let after_start = vec![
        Check::Ok(V::Base, "DELETE FROM users WHERE id >= 10"),
        Check::Fails(
            V::New,
            "SELECT email FROM users",
            SqlState::UNDEFINED_COLUMN,
        ),
        Check::Rows(
            V::New,
            "SELECT * FROM users ORDER BY id",
            &["1|alice|admin", "2|bob|dev"],
        ),
        // The old version still has it, constraints and all.
        Check::Rows(
            V::Old,
            "SELECT id, email FROM users ORDER BY id",
            &["1|a@x", "2|b@x"],
        ),
        Check::Fails(
            V::Old,
            "INSERT INTO users VALUES (10, 'carol', 'a@x')",
            SqlState::UNIQUE_VIOLATION,
        ),
        Check::Ok(V::Old, "INSERT INTO users VALUES (10, 'carol', 'c@x')"),
        Check::Ok(V::New, "INSERT INTO users (id, name) VALUES (11, 'dave')"),
        Check::Rows(
            V::Old,
            "SELECT id, email FROM users WHERE id >= 10 ORDER BY id",
            &["10|c@x", "11|NULL"],
        ),
        Check::Rows(V::Base, USERS_COLUMNS, &["id", "name", "email", "role"]),
    ];
    run(Case {
        setup: vec![setup_users()],
        seed: USERS_SEED,
        migration,
        after_start,
        after_rollback: vec![
            Check::Rows(V::Base, USERS_COLUMNS, &["id", "name", "email", "role"]),
            Check::Rows(V::Old, "SELECT email FROM users WHERE id = 10", &["c@x"]),
        ],
        after_complete: vec![
            Check::Rows(V::Base, USERS_COLUMNS, &["id", "name", "role"]),
            // The unique index and the check went with it; the primary key stays.
            Check::Rows(
                V::Base,
                "SELECT conname FROM pg_constraint WHERE conrelid = 'users'::regclass AND contype <> 'n' ORDER BY 1",
                &["users_pkey"],
            ),
            Check::Ok(V::New, "INSERT INTO users VALUES (20, 'x')"),
            Check::Rows(V::New, "SELECT count(*) FROM users", &["5"]),
        ],
    })
    .await;
}

const ITEMS_COLUMNS: &str = "SELECT attname FROM pg_attribute
    WHERE attrelid = 'items'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum";

#[tokio::test]
async fn down_fills_the_dropped_column_for_new_version_writes() {
    // pgroll example 09 (`down: "0"`) and a `down` that reads a column the new version keeps.
    let setup = yaml(
        "01_items",
        "operations:
  - create_table:
      name: items
      columns:
        - {name: id, type: integer, pk: true}
        - {name: sku, type: text}
        - {name: label, type: text, nullable: true}
        - {name: price, type: \"decimal(10,2)\", nullable: true}
",
    );
    let migration = yaml(
        "02_drop_two",
        "operations:
  - drop_column: {table: items, column: label, down: \"'item ' || sku\"}
  - drop_column: {table: items, column: price, down: \"0\"}
",
    );
    let after_start = vec![
        // The checks run after both starts: undo what the first round wrote (as the old
        // version, which the trigger leaves alone).
        Check::Ok(V::Base, "DELETE FROM items WHERE id >= 10"),
        Check::Ok(
            V::Base,
            "UPDATE items SET sku = 'a1', label = 'Apple', price = 1.50 WHERE id = 1",
        ),
        Check::Rows(
            V::Base,
            ITEMS_COLUMNS,
            &["id", "sku", "label", "price", "_pgbaton_touched"],
        ),
        Check::Fails(
            V::New,
            "SELECT label FROM items",
            SqlState::UNDEFINED_COLUMN,
        ),
        Check::Rows(V::New, "SELECT * FROM items ORDER BY id", &["1|a1", "2|b2"]),
        // A new-version insert: both dropped columns come from `down`.
        Check::Ok(V::New, "INSERT INTO items (id, sku) VALUES (10, 'c3')"),
        Check::Rows(
            V::Old,
            "SELECT id, sku, label, price FROM items WHERE id = 10",
            &["10|c3|item c3|0.00"],
        ),
        // A new-version update that changes what `down` reads recomputes that column only:
        // the constant `down` never resets the price the row had.
        Check::Ok(V::New, "UPDATE items SET sku = 'a9' WHERE id = 1"),
        Check::Rows(
            V::Old,
            "SELECT id, sku, label, price FROM items WHERE id = 1",
            &["1|a9|item a9|1.50"],
        ),
        // An update that changes nothing `down` reads leaves both alone.
        Check::Ok(V::New, "UPDATE items SET sku = sku WHERE id = 2"),
        Check::Rows(
            V::Old,
            "SELECT id, sku, label, price FROM items WHERE id = 2",
            &["2|b2|Banana|0.25"],
        ),
        // Old-version writes keep their own values.
        Check::Ok(
            V::Old,
            "INSERT INTO items (id, sku, label, price) VALUES (11, 'd4', 'Durian', 9.99)",
        ),
        Check::Ok(
            V::Old,
            "UPDATE items SET label = 'Cherry', price = 3, sku = 'c4' WHERE id = 10",
        ),
        Check::Ok(V::Old, "INSERT INTO items (id, sku) VALUES (12, 'e5')"),
        Check::Rows(
            V::Old,
            "SELECT id, sku, label, price FROM items WHERE id >= 10 ORDER BY id",
            &["10|c4|Cherry|3.00", "11|d4|Durian|9.99", "12|e5|NULL|NULL"],
        ),
        // `SET LOCAL pgbaton.version` marks a transaction on the base schema as the new version.
        Check::Ok(
            V::Base,
            "BEGIN; SET LOCAL pgbaton.version = '02_drop_two';
             UPDATE items SET sku = 'd5' WHERE id = 11; COMMIT",
        ),
        Check::Rows(
            V::Old,
            "SELECT id, sku, label, price FROM items WHERE id = 11",
            &["11|d5|item d5|9.99"],
        ),
        Check::Rows(
            V::New,
            "SELECT * FROM items ORDER BY id",
            &["1|a9", "2|b2", "10|c4", "11|d5", "12|e5"],
        ),
    ];
    run(Case {
        setup: vec![setup],
        seed: "INSERT INTO items VALUES (1, 'a1', 'Apple', 1.50), (2, 'b2', 'Banana', 0.25)",
        migration,
        after_start,
        after_rollback: vec![
            Check::Rows(V::Base, ITEMS_COLUMNS, &["id", "sku", "label", "price"]),
            Check::Rows(
                V::Base,
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass AND NOT tgisinternal",
                &["0"],
            ),
            // What the new version wrote stays; nothing fills the columns any more.
            Check::Rows(
                V::Old,
                "SELECT id, sku, label, price FROM items ORDER BY id",
                &[
                    "1|a9|item a9|1.50",
                    "2|b2|Banana|0.25",
                    "10|c4|Cherry|3.00",
                    "11|d5|item d5|9.99",
                    "12|e5|NULL|NULL",
                ],
            ),
            Check::Ok(V::Old, "INSERT INTO items (id, sku) VALUES (13, 'f6')"),
            Check::Rows(
                V::Old,
                "SELECT label, price FROM items WHERE id = 13",
                &["NULL|NULL"],
            ),
        ],
        after_complete: vec![
            Check::Rows(V::Base, ITEMS_COLUMNS, &["id", "sku"]),
            Check::Rows(
                V::Base,
                "SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND proname = '_pgbaton_dw_items'",
                &["0"],
            ),
            Check::Ok(V::New, "INSERT INTO items VALUES (20, 'g7')"),
            Check::Rows(
                V::New,
                "SELECT * FROM items WHERE id IN (1, 20) ORDER BY id",
                &["1|a9", "20|g7"],
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn add_column_then_drop_it() {
    // pgroll's "add column, drop column": the column exists physically under its temporary
    // name until complete; the new version never sees it.
    let migration = yaml(
        "02_multi",
        "operations:
  - add_column:
      table: users
      up: \"'foo'\"
      column: {name: description, type: varchar(255), nullable: true}
  - drop_column: {table: users, column: description}
",
    );
    let after_start = vec![
        Check::Ok(V::Base, "DELETE FROM users WHERE id >= 10"),
        Check::Rows(
            V::Base,
            USERS_COLUMNS,
            &[
                "id",
                "name",
                "email",
                "role",
                "_pgbaton_new_description",
                "_pgbaton_touched",
            ],
        ),
        Check::Fails(
            V::New,
            "INSERT INTO users (id, name, description) VALUES (10, 'x', 'y')",
            SqlState::UNDEFINED_COLUMN,
        ),
        Check::Ok(V::New, "INSERT INTO users (id, name) VALUES (10, 'x')"),
        Check::Rows(
            V::New,
            "SELECT * FROM users ORDER BY id",
            &["1|alice|a@x|admin", "2|bob|b@x|dev", "10|x|NULL|NULL"],
        ),
    ];
    run(Case {
        setup: vec![setup_users()],
        seed: USERS_SEED,
        migration,
        after_start,
        after_rollback: vec![Check::Rows(
            V::Base,
            USERS_COLUMNS,
            &["id", "name", "email", "role"],
        )],
        after_complete: vec![
            Check::Rows(V::Base, USERS_COLUMNS, &["id", "name", "email", "role"]),
            Check::Fails(
                V::New,
                "SELECT description FROM users",
                SqlState::UNDEFINED_COLUMN,
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn rename_column_then_drop_it() {
    let migration = yaml(
        "02_multi",
        "operations:
  - rename_column: {table: users, from: name, to: item_name}
  - drop_column: {table: users, column: item_name}
",
    );
    let after_start = vec![
        Check::Ok(V::Base, "DELETE FROM users WHERE id >= 10"),
        Check::Fails(
            V::New,
            "INSERT INTO users (id, item_name) VALUES (10, 'x')",
            SqlState::UNDEFINED_COLUMN,
        ),
        Check::Fails(
            V::New,
            "INSERT INTO users (id, name) VALUES (10, 'x')",
            SqlState::UNDEFINED_COLUMN,
        ),
        Check::Ok(V::Old, "INSERT INTO users (id, name) VALUES (10, 'x')"),
    ];
    run(Case {
        setup: vec![setup_users()],
        seed: USERS_SEED,
        migration,
        after_start,
        after_rollback: vec![Check::Ok(
            V::Old,
            "INSERT INTO users (id, name) VALUES (11, 'y')",
        )],
        after_complete: vec![
            Check::Rows(V::Base, USERS_COLUMNS, &["id", "email", "role"]),
            Check::Rows(V::New, "SELECT * FROM users WHERE id = 1", &["1|a@x|admin"]),
        ],
    })
    .await;
}

#[tokio::test]
async fn a_dropped_name_is_added_again() {
    // The old column is dropped before the new one takes its name.
    let migration = yaml(
        "02_retype",
        "operations:
  - drop_column: {table: users, column: name}
  - add_column:
      table: users
      up: length(name)
      column: {name: name, type: integer, nullable: true}
",
    );
    let after_start = vec![
        Check::Ok(V::Base, "DELETE FROM users WHERE id >= 10"),
        Check::Rows(
            V::New,
            "SELECT id, name FROM users ORDER BY id",
            &["1|5", "2|3"],
        ),
        Check::Rows(
            V::Old,
            "SELECT id, name FROM users ORDER BY id",
            &["1|alice", "2|bob"],
        ),
        Check::Ok(V::Old, "INSERT INTO users (id, name) VALUES (10, 'carol')"),
        Check::Rows(V::New, "SELECT name FROM users WHERE id = 10", &["5"]),
    ];
    run(Case {
        setup: vec![setup_users()],
        seed: USERS_SEED,
        migration,
        after_start,
        after_rollback: vec![Check::Rows(
            V::Base,
            USERS_COLUMNS,
            &["id", "name", "email", "role"],
        )],
        after_complete: vec![
            Check::Rows(V::Base, USERS_COLUMNS, &["id", "email", "role", "name"]),
            Check::Rows(
                V::Base,
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                  WHERE attrelid = 'users'::regclass AND attname = 'name'",
                &["integer"],
            ),
            Check::Rows(
                V::New,
                "SELECT id, name FROM users ORDER BY id",
                &["1|5", "2|3", "10|5"],
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn validation_errors_come_before_any_ddl() {
    let invites = yaml(
        "01_invites",
        "operations:
  - create_table:
      name: invites
      columns:
        - {name: email, type: text, references: {name: invites_email_fk, table: users, column: email}}
",
    );
    let env = setup(vec![setup_users(), invites], USERS_SEED).await;
    let before = dump(&env);
    let m = env.migrator().await;
    let p = "operations[0].drop_column.";
    let cases: &[(&str, &str)] = &[
        (
            "table: nope, column: name",
            "table: table \"nope\" does not exist",
        ),
        (
            "table: users, column: nope",
            "column: column \"nope\" does not exist on table \"users\"",
        ),
        (
            "table: orders, column: id",
            "column: column \"id\" is part of the primary key of table \"orders\"",
        ),
        (
            "table: users, column: email",
            "column: column \"email\" of table \"users\" is referenced by foreign key \
             \"invites_email_fk\" of table \"invites\": drop that constraint first",
        ),
    ];
    for (body, expected) in cases {
        let mig = yaml(
            "02_bad",
            &format!("operations:\n  - drop_column: {{{body}}}\n"),
        );
        let err = m.start(&mig, false).await.expect_err(body).to_string();
        assert!(err.contains(&format!("{p}{expected}")), "{body}: got {err}");
    }
    assert_eq!(dump(&env), before);
    assert!(m.status().await.expect("status").active.is_none());
}
