//! `rename_table` through the whole lifecycle: virtual at start (the new version's view has the
//! new name over the same physical table, the old version keeps the old name, both read and write
//! the same rows), nothing to undo at rollback, physical at complete. Chained renames, a rename
//! combined with a drop, and errors. (Odd names in a non-public schema: `op_odd_names.rs`.)

mod common;

use common::lifecycle::*;

fn test_table() -> pgbaton::format::Migration {
    yaml(
        "01_create_table",
        "operations:
  - create_table:
      name: test_table
      columns:
        - {name: id, type: serial, pk: true}
        - {name: name, type: varchar(255), nullable: true}
",
    )
}

#[tokio::test]
async fn pgroll_rename_table() {
    let migration = yaml(
        "02_rename_table",
        "operations:\n  - rename_table: {from: test_table, to: renamed_table}\n",
    );
    let after_start = vec![
        // Both versions write and read the same rows, each under its own name.
        Check::Ok(V::Old, "INSERT INTO test_table (name) VALUES ('old')"),
        Check::Ok(V::New, "INSERT INTO renamed_table (name) VALUES ('new')"),
        Check::Rows(
            V::Old,
            "SELECT name FROM test_table ORDER BY id",
            &["seed", "old", "new"],
        ),
        Check::Rows(
            V::New,
            "SELECT name FROM renamed_table ORDER BY id",
            &["seed", "old", "new"],
        ),
        Check::Fails(
            V::New,
            "SELECT * FROM public_02_rename_table.test_table",
            SqlState::UNDEFINED_TABLE,
        ),
        Check::Fails(
            V::Base,
            "SELECT * FROM renamed_table",
            SqlState::UNDEFINED_TABLE,
        ),
        Check::Ok(V::Old, "DELETE FROM test_table WHERE name <> 'seed'"),
    ];
    run(Case {
        setup: vec![test_table()],
        seed: "INSERT INTO test_table (name) VALUES ('seed')",
        migration,
        after_start,
        after_rollback: vec![
            Check::Fails(
                V::Base,
                "SELECT * FROM renamed_table",
                SqlState::UNDEFINED_TABLE,
            ),
            Check::Rows(V::Old, "SELECT name FROM test_table", &["seed"]),
        ],
        after_complete: vec![
            Check::Fails(
                V::Base,
                "SELECT * FROM test_table",
                SqlState::UNDEFINED_TABLE,
            ),
            Check::Rows(V::Base, "SELECT name FROM renamed_table", &["seed"]),
            Check::Ok(V::New, "INSERT INTO renamed_table (name) VALUES ('after')"),
            Check::Rows(V::New, "SELECT count(*) FROM renamed_table", &["2"]),
            // The serial's sequence still feeds the renamed table.
            Check::Rows(
                V::New,
                "SELECT id FROM renamed_table WHERE name = 'after'",
                &["6"],
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn chained_renames_and_a_drop() {
    let setup = yaml(
        "01_setup",
        "operations:
  - create_table:
      name: a
      columns: [{name: id, type: int, pk: true}]
  - create_table:
      name: b
      columns: [{name: id, type: int, pk: true}]
",
    );
    // a -> tmp -> c; b is dropped and a new b takes its name.
    let migration = yaml(
        "02_chain",
        "operations:
  - rename_table: {from: a, to: tmp}
  - rename_table: {from: tmp, to: c}
  - drop_table: {name: b}
  - rename_table: {from: c, to: b}
",
    );
    let after_start = vec![
        Check::Ok(V::Old, "INSERT INTO a VALUES (1); INSERT INTO b VALUES (2)"),
        Check::Rows(V::New, "SELECT id FROM b", &["1"]),
        Check::Rows(
            V::Base,
            "SELECT viewname FROM pg_views WHERE schemaname = 'public_02_chain'",
            &["b"],
        ),
        Check::Ok(V::Base, "DELETE FROM a; DELETE FROM b"),
    ];
    run(Case {
        setup: vec![setup],
        seed: "",
        migration,
        after_start,
        after_rollback: vec![Check::Ok(V::Old, "SELECT * FROM a, b")],
        after_complete: vec![
            Check::Rows(
                V::Base,
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                &["b"],
            ),
            Check::Rows(
                V::Base,
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                  WHERE i.indrelid = 'b'::regclass",
                &["a_pkey"],
            ),
            Check::Ok(V::New, "INSERT INTO b VALUES (5)"),
        ],
    })
    .await;
}

#[tokio::test]
async fn swap_two_tables() {
    let setup = yaml(
        "01_setup",
        "operations:
  - create_table:
      name: a
      columns: [{name: a_col, type: int, nullable: true}]
  - create_table:
      name: b
      columns: [{name: b_col, type: int, nullable: true}]
",
    );
    let migration = yaml(
        "02_swap",
        "operations:
  - rename_table: {from: a, to: tmp}
  - rename_table: {from: b, to: a}
  - rename_table: {from: tmp, to: b}
",
    );
    let after_start = vec![
        Check::Ok(V::Old, "INSERT INTO a VALUES (1)"),
        Check::Rows(V::New, "SELECT a_col FROM b", &["1"]),
        Check::Ok(V::New, "INSERT INTO a VALUES (2)"),
        Check::Rows(V::Old, "SELECT b_col FROM b", &["2"]),
        Check::Ok(V::Base, "DELETE FROM a; DELETE FROM b"),
    ];
    run(Case {
        setup: vec![setup],
        seed: "",
        migration,
        after_start,
        after_rollback: vec![Check::Ok(
            V::Old,
            "SELECT a_col FROM a; SELECT b_col FROM b",
        )],
        after_complete: vec![
            Check::Ok(V::Base, "SELECT a_col FROM b; SELECT b_col FROM a"),
            Check::Ok(
                V::New,
                "INSERT INTO a (b_col) VALUES (1); INSERT INTO b (a_col) VALUES (2)",
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
      name: items
      columns: [{name: id, type: int, pk: true}]
  - create_table:
      name: other
      columns: [{name: id, type: int, pk: true}]
",
    );
    let env = common::lifecycle::setup(vec![setup], "").await;
    let before = dump(&env);
    let m = env.migrator().await;
    let cases: &[(&str, &str)] = &[
        (
            "  - rename_table: {from: nope, to: x}\n",
            "operations[0].rename_table.from: table \"nope\" does not exist",
        ),
        (
            "  - rename_table: {from: items, to: other}\n",
            "operations[0].rename_table.to: table \"other\" already exists",
        ),
        (
            "  - rename_table: {from: items, to: other_pkey}\n",
            "operations[0].rename_table.to: relation \"other_pkey\" already exists in schema \"public\"",
        ),
        // pgroll: "create table with a name matching a name used in a previous operation".
        (
            "  - rename_table: {from: items, to: products}\n  - create_table: {name: products, columns: [{name: id, type: int}]}\n",
            "operations[1].create_table.name: table \"products\" already exists",
        ),
        (
            "  - rename_table: {from: items, to: products}\n  - rename_table: {from: items, to: x}\n",
            "operations[1].rename_table.from: table \"items\" does not exist",
        ),
    ];
    for (ops, expected) in cases {
        let mig = yaml("02_bad", &format!("operations:\n{ops}"));
        let err = m.start(&mig, false).await.expect_err(ops).to_string();
        assert!(err.contains(expected), "{ops}: got {err}");
    }
    assert_eq!(dump(&env), before);
    assert!(m.status().await.expect("status").active.is_none());
}
