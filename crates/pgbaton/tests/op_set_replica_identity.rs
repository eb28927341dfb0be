//! `set_replica_identity` through the whole lifecycle: set at start (FULL, NOTHING, DEFAULT,
//! USING INDEX), restored to the identity the table had before by rollback (pgroll's rollback
//! does nothing; the `pg_dump` comparison of the harness proves the restore), kept by complete.
//! The errors. (Odd names in a non-public schema: `op_odd_names.rs`.)

mod common;

use common::lifecycle::*;

fn fruits() -> pgbaton::format::Migration {
    yaml(
        "01_create_table",
        "operations:
  - create_table:
      name: fruits
      columns:
        - {name: id, type: serial, pk: true}
        - {name: name, type: text, unique: true}
        - {name: note, type: text, nullable: true}
",
    )
}

fn identity(code: &'static str) -> Check {
    Check::Rows(
        V::Base,
        "SELECT relreplident FROM pg_class WHERE relname = 'fruits' AND relkind = 'r'",
        Box::leak(Box::new([code])),
    )
}

fn replident_index(name: &'static str) -> Check {
    Check::Rows(
        V::Base,
        "SELECT coalesce((SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                           WHERE i.indrelid = 'fruits'::regclass AND i.indisreplident), '-')",
        Box::leak(Box::new([name])),
    )
}

/// Both versions keep writing the table.
fn writes() -> Vec<Check> {
    vec![
        Check::Ok(V::Old, "INSERT INTO fruits (name) VALUES ('old')"),
        Check::Ok(V::New, "UPDATE fruits SET note = 'n' WHERE name = 'old'"),
        Check::Ok(V::New, "DELETE FROM fruits WHERE name = 'old'"),
    ]
}

async fn case(
    ty: &str,
    index: Option<&str>,
    seed: &'static str,
    before: (&'static str, &'static str),
    after: (&'static str, &'static str),
) {
    let index = index.map(|i| format!(", index: {i}")).unwrap_or_default();
    let migration = yaml(
        "02_set_replica_identity",
        &format!(
            "operations:\n  - set_replica_identity: {{table: fruits, identity: {{type: {ty}{index}}}}}\n"
        ),
    );
    let mut set = vec![identity(after.0), replident_index(after.1)];
    set.extend(writes());
    run(Case {
        setup: vec![fruits()],
        seed,
        migration,
        after_start: set.clone(),
        after_rollback: vec![identity(before.0), replident_index(before.1)],
        after_complete: set,
    })
    .await;
}

#[tokio::test]
async fn full() {
    case("full", None, "", ("d", "-"), ("f", "-")).await;
}

#[tokio::test]
async fn nothing_restores_full() {
    case(
        "NOTHING",
        None,
        "ALTER TABLE fruits REPLICA IDENTITY FULL",
        ("f", "-"),
        ("n", "-"),
    )
    .await;
}

#[tokio::test]
async fn default_restores_the_index() {
    case(
        "default",
        None,
        "ALTER TABLE fruits REPLICA IDENTITY USING INDEX fruits_name_key",
        ("i", "fruits_name_key"),
        ("d", "-"),
    )
    .await;
}

#[tokio::test]
async fn using_index() {
    // pgroll's example 29: the primary key's index.
    case(
        "index",
        Some("fruits_pkey"),
        "",
        ("d", "-"),
        ("i", "fruits_pkey"),
    )
    .await;
}

#[tokio::test]
async fn index_to_another_index() {
    case(
        "INDEX",
        Some("fruits_name_key"),
        "ALTER TABLE fruits REPLICA IDENTITY USING INDEX fruits_pkey",
        ("i", "fruits_pkey"),
        ("i", "fruits_name_key"),
    )
    .await;
}

#[tokio::test]
async fn validation_errors_come_before_any_ddl() {
    let env =
        common::lifecycle::setup(vec![fruits()], "CREATE INDEX fruits_note ON fruits (note)").await;
    let before = dump(&env);
    let m = env.migrator().await;
    let p = "operations[0].set_replica_identity.";
    let cases: &[(&str, &str)] = &[
        ("{table: nope, identity: {type: full}}", "table: table \"nope\" does not exist"),
        (
            "{table: fruits, identity: {type: index, index: nope}}",
            "identity.index: index \"nope\" does not exist on table \"fruits\"",
        ),
        (
            "{table: fruits, identity: {type: index}}",
            "identity.index: type index needs the name of the index to use",
        ),
        (
            "{table: fruits, identity: {type: index, index: fruits_note}}",
            "identity.index: index \"fruits_note\" cannot be the replica identity of table \"fruits\": it is not unique",
        ),
        (
            "{table: fruits, identity: {type: full, index: fruits_pkey}}",
            "identity.index: only type index takes an index",
        ),
    ];
    for (body, expected) in cases {
        let mig = yaml(
            "02_bad",
            &format!("operations:\n  - set_replica_identity: {body}\n"),
        );
        let err = m.start(&mig, false).await.expect_err(body).to_string();
        assert!(err.contains(&format!("{p}{expected}")), "{body}: got {err}");
    }
    // An unknown type is refused when the file is read.
    let err = pgbaton::format::parse(
        "02_bad.yaml",
        "02_bad",
        "operations:\n  - set_replica_identity: {table: fruits, identity: {type: partial}}\n",
        pgbaton::format::FileKind::Yaml,
    )
    .expect_err("unknown type")
    .to_string();
    assert!(
        err.contains("identity.type") && err.contains("partial"),
        "{err}"
    );
    assert_eq!(dump(&env), before);
    assert!(m.status().await.expect("status").active.is_none());
}

#[tokio::test]
async fn an_index_created_in_the_same_migration() {
    let migration = yaml(
        "02_index_and_identity",
        "operations:
  - create_index: {name: fruits_id_name, table: fruits, unique: true, columns: [{column: id}, {column: name}]}
  - set_replica_identity: {table: fruits, identity: {type: index, index: fruits_id_name}}
",
    );
    let mut set = vec![identity("i"), replident_index("fruits_id_name")];
    set.extend(writes());
    run(Case {
        setup: vec![fruits()],
        seed: "INSERT INTO fruits (name) VALUES ('apple')",
        migration,
        after_start: set.clone(),
        after_rollback: vec![identity("d"), replident_index("-")],
        after_complete: set,
    })
    .await;
}
