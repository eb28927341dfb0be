//! `drop_table` through the whole lifecycle: hidden from the new version at start (the old
//! version and the base schema keep using the table), nothing to undo at rollback, dropped at
//! complete. pgroll's multi-operation cases (create/rename/drop, drop then create of the same
//! name) and the errors. (Odd names in a non-public schema: `op_odd_names.rs`.)

mod common;

use common::lifecycle::*;

fn users() -> pgbaton::format::Migration {
    yaml(
        "01_create_table",
        "operations:
  - create_table:
      name: users
      columns:
        - {name: id, type: serial, pk: true}
        - {name: name, type: varchar(255), unique: true}
",
    )
}

#[tokio::test]
async fn pgroll_drop_table() {
    let migration = yaml(
        "02_drop_table",
        "operations:\n  - drop_table: {name: users}\n",
    );
    let old_works = vec![
        Check::Ok(V::Old, "INSERT INTO users (name) VALUES ('old')"),
        Check::Rows(
            V::Old,
            "SELECT name FROM users ORDER BY id",
            &["alice", "old"],
        ),
        Check::Ok(V::Old, "DELETE FROM users WHERE name = 'old'"),
    ];
    let mut after_start = vec![
        // The new version has no view of the table; the old one still has.
        Check::Rows(
            V::Base,
            "SELECT schemaname FROM pg_views WHERE viewname = 'users'",
            &["public_01_create_table"],
        ),
        Check::Fails(
            V::Base,
            "SELECT * FROM public_02_drop_table.users",
            SqlState::UNDEFINED_TABLE,
        ),
    ];
    after_start.extend(old_works.clone());
    run(Case {
        setup: vec![users()],
        seed: "INSERT INTO users (name) VALUES ('alice')",
        migration,
        after_start,
        after_rollback: old_works,
        after_complete: vec![
            Check::Fails(V::Base, "SELECT * FROM users", SqlState::UNDEFINED_TABLE),
            Check::Rows(
                V::Base,
                "SELECT count(*) FROM pg_class WHERE relname LIKE 'users%'",
                &["0"],
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn create_then_drop_in_one_migration() {
    let migration = yaml(
        "02_multi_operation",
        "operations:
  - create_table:
      name: items
      columns:
        - {name: id, type: serial, pk: true}
        - {name: name, type: varchar(255)}
  - rename_table: {from: items, to: products}
  - drop_table: {name: products}
",
    );
    let gone = vec![
        Check::Rows(
            V::Base,
            "SELECT count(*) FROM pg_views WHERE viewname IN ('items', 'products')",
            &["0"],
        ),
        Check::Fails(V::New, "SELECT * FROM products", SqlState::UNDEFINED_TABLE),
    ];
    let mut after_start = gone.clone();
    // The table exists physically until complete.
    after_start.push(Check::Rows(
        V::Base,
        "SELECT count(*) FROM pg_tables WHERE tablename = 'items'",
        &["1"],
    ));
    let mut after = gone;
    after.push(Check::Fails(
        V::Base,
        "SELECT * FROM items",
        SqlState::UNDEFINED_TABLE,
    ));
    run(Case {
        setup: vec![users()],
        seed: "",
        migration,
        after_start,
        after_rollback: after.clone(),
        after_complete: after,
    })
    .await;
}

#[tokio::test]
async fn create_drop_create_in_one_migration() {
    let migration = yaml(
        "02_multi_operation",
        "operations:
  - create_table:
      name: items
      columns:
        - {name: id, type: serial, pk: true}
        - {name: name, type: varchar(255)}
  - drop_table: {name: items}
  - create_table:
      name: items
      columns:
        - {name: id, type: serial, pk: true}
        - {name: name, type: varchar(255)}
        - {name: description, type: varchar(255)}
",
    );
    let works = vec![
        Check::Ok(
            V::New,
            "INSERT INTO items (name, description) VALUES ('apples', 'amazing')",
        ),
        Check::Rows(
            V::New,
            "SELECT name, description FROM items",
            &["apples|amazing"],
        ),
        Check::Ok(V::New, "DELETE FROM items"),
    ];
    run(Case {
        setup: vec![users()],
        seed: "",
        migration,
        after_start: works,
        after_rollback: vec![Check::Rows(
            V::Base,
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%items'",
            &["0"],
        )],
        after_complete: vec![
            Check::Ok(
                V::New,
                "INSERT INTO items (name, description) VALUES ('bananas', 'brilliant')",
            ),
            Check::Rows(
                V::Base,
                "SELECT name, description FROM items",
                &["bananas|brilliant"],
            ),
            Check::Rows(
                V::Base,
                "SELECT tablename FROM pg_tables WHERE tablename LIKE '%items'",
                &["items"],
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn drop_then_create_the_same_name() {
    let setup = yaml(
        "01_create_table",
        "operations:
  - create_table:
      name: items
      columns:
        - {name: id, type: serial, pk: true}
        - {name: name, type: varchar(255)}
",
    );
    let migration = yaml(
        "02_multi_operation",
        "operations:
  - drop_table: {name: items}
  - create_table:
      name: items
      columns:
        - {name: id, type: serial, pk: true}
        - {name: name, type: varchar(255)}
        - {name: description, type: varchar(255)}
",
    );
    let old_table_works = vec![
        Check::Ok(V::Old, "INSERT INTO items (name) VALUES ('old')"),
        Check::Fails(
            V::Old,
            "INSERT INTO items (name, description) VALUES ('x', 'y')",
            SqlState::UNDEFINED_COLUMN,
        ),
        Check::Rows(
            V::Old,
            "SELECT name FROM items ORDER BY id",
            &["seeded", "old"],
        ),
        Check::Ok(V::Old, "DELETE FROM items WHERE name = 'old'"),
    ];
    let mut after_start = old_table_works.clone();
    after_start.extend([
        // Both versions write their own table.
        Check::Ok(
            V::New,
            "INSERT INTO items (name, description) VALUES ('apples', 'amazing')",
        ),
        Check::Rows(
            V::New,
            "SELECT name, description FROM items",
            &["apples|amazing"],
        ),
        Check::Ok(V::New, "DELETE FROM items"),
    ]);
    run(Case {
        setup: vec![setup],
        seed: "INSERT INTO items (name) VALUES ('seeded')",
        migration,
        after_start,
        after_rollback: {
            let mut c = old_table_works;
            c.push(Check::Rows(
                V::Base,
                "SELECT tablename FROM pg_tables WHERE tablename LIKE '%items'",
                &["items"],
            ));
            c
        },
        after_complete: vec![
            Check::Ok(
                V::New,
                "INSERT INTO items (name, description) VALUES ('bananas', 'brilliant')",
            ),
            // The new table took the name; the old one and its rows are gone.
            Check::Rows(
                V::Base,
                "SELECT name, description FROM items",
                &["bananas|brilliant"],
            ),
            Check::Rows(
                V::Base,
                "SELECT tablename FROM pg_tables WHERE tablename LIKE '%items'",
                &["items"],
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn validation_errors_come_before_any_ddl() {
    let setup = yaml(
        "01_setup",
        "operations:
  - create_table:
      name: owners
      columns:
        - {name: id, type: int, pk: true}
  - create_table:
      name: pets
      columns:
        - {name: id, type: int, pk: true}
        - {name: owner, type: int, references: {name: pets_owner, table: owners, column: id}}
",
    );
    let env = common::lifecycle::setup(vec![setup], "").await;
    let before = dump(&env);
    let m = env.migrator().await;
    let p = "operations[0].drop_table.";
    let cases: &[(&str, &str)] = &[
        (
            "  - drop_table: {name: nope}\n",
            "name: table \"nope\" does not exist",
        ),
        (
            "  - drop_table: {name: owners}\n",
            "name: table \"owners\" is referenced by foreign key \"pets_owner\" of table \"pets\"",
        ),
    ];
    for (ops, expected) in cases {
        let mig = yaml("02_bad", &format!("operations:\n{ops}"));
        let err = m.start(&mig, false).await.expect_err(ops).to_string();
        assert!(err.contains(&format!("{p}{expected}")), "{ops}: got {err}");
    }
    let twice = yaml(
        "02_twice",
        "operations:\n  - drop_table: {name: pets}\n  - drop_table: {name: pets}\n",
    );
    let err = m.start(&twice, false).await.expect_err("twice").to_string();
    assert!(
        err.contains("operations[1].drop_table.name: table \"pets\" does not exist"),
        "{err}"
    );
    assert_eq!(dump(&env), before);
    assert!(m.status().await.expect("status").active.is_none());
    // Dropping the referencing table first is fine.
    let both = yaml(
        "02_both",
        "operations:\n  - drop_table: {name: pets}\n  - drop_table: {name: owners}\n",
    );
    m.start(&both, true).await.expect("drop both");
    let left: i64 = env
        .db
        .client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(left, 0);
}
