//! `create_index` through the whole lifecycle: the index is built concurrently at start and used
//! by both versions, dropped by rollback, kept by complete; every field of the operation; odd
//! names; a non-public schema; an INVALID leftover rebuilt; a failing build rolled back; errors.

mod common;

use common::lifecycle::*;

const FRUITS: &str = "CREATE TABLE fruits (id bigserial PRIMARY KEY, name text NOT NULL, size int);
    INSERT INTO fruits (name, size) VALUES ('apple', 3), ('banana', 5), ('cherry', 1);";

fn indexdef(name: &'static str) -> &'static str {
    // Leaked once per call site: checks hold `&'static str`.
    Box::leak(
        format!("SELECT indexdef FROM pg_indexes WHERE indexname = '{name}'").into_boxed_str(),
    )
}

fn valid(name: &'static str) -> &'static str {
    Box::leak(
        format!("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = '{name}'")
            .into_boxed_str(),
    )
}

#[tokio::test]
async fn creates_an_index_both_versions_use() {
    let migration = yaml(
        "02_idx",
        "operations:
  - create_index:
      name: idx_fruits_name
      table: fruits
      columns:
        - column: name
",
    );
    let present = Check::Rows(
        V::Base,
        indexdef("idx_fruits_name"),
        &["CREATE INDEX idx_fruits_name ON public.fruits USING btree (name)"],
    );
    let both_work = vec![
        present.clone(),
        Check::Rows(V::Base, valid("idx_fruits_name"), &["t"]),
        Check::Ok(V::Old, "INSERT INTO fruits (name) VALUES ('old')"),
        Check::Ok(V::New, "INSERT INTO fruits (name) VALUES ('new')"),
        Check::Rows(
            V::Old,
            "SELECT count(*) FROM fruits WHERE name IN ('old', 'new')",
            &["2"],
        ),
        Check::Rows(
            V::New,
            "SELECT count(*) FROM fruits WHERE name IN ('old', 'new')",
            &["2"],
        ),
        Check::Ok(V::Old, "DELETE FROM fruits WHERE name IN ('old', 'new')"),
    ];
    run(Case {
        setup: vec![],
        seed: FRUITS,
        migration,
        after_start: both_work.clone(),
        after_rollback: vec![
            Check::Rows(V::Base, indexdef("idx_fruits_name"), &[]),
            Check::Rows(
                V::Old,
                "SELECT name FROM fruits ORDER BY id",
                &["apple", "banana", "cherry"],
            ),
        ],
        after_complete: vec![
            present,
            Check::Ok(V::New, "INSERT INTO fruits (name) VALUES ('after')"),
            Check::Rows(
                V::New,
                "SELECT name FROM fruits ORDER BY id DESC LIMIT 1",
                &["after"],
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn a_unique_index_constrains_both_versions() {
    // Example 42.
    let migration = yaml(
        "02_unique",
        "operations:
  - create_index:
      name: idx_fruits_unique_name
      table: fruits
      columns:
        - column: name
      unique: true
",
    );
    let checks = vec![
        Check::Rows(
            V::Base,
            indexdef("idx_fruits_unique_name"),
            &["CREATE UNIQUE INDEX idx_fruits_unique_name ON public.fruits USING btree (name)"],
        ),
        Check::Fails(
            V::Old,
            "INSERT INTO fruits (name) VALUES ('apple')",
            SqlState::UNIQUE_VIOLATION,
        ),
        Check::Fails(
            V::New,
            "INSERT INTO fruits (name) VALUES ('apple')",
            SqlState::UNIQUE_VIOLATION,
        ),
        Check::Ok(V::New, "INSERT INTO fruits (name) VALUES ('date')"),
        Check::Fails(
            V::Old,
            "INSERT INTO fruits (name) VALUES ('date')",
            SqlState::UNIQUE_VIOLATION,
        ),
        Check::Ok(V::Old, "DELETE FROM fruits WHERE name = 'date'"),
    ];
    run(Case {
        setup: vec![],
        seed: FRUITS,
        migration,
        after_start: checks.clone(),
        after_rollback: vec![
            Check::Ok(V::Old, "INSERT INTO fruits (name) VALUES ('apple')"),
            Check::Ok(V::Old, "DELETE FROM fruits WHERE id > 3"),
        ],
        after_complete: checks,
    })
    .await;
}

#[tokio::test]
async fn partial_hash_and_opclass_indexes() {
    // Examples 37, 38 and 54 in one migration.
    let migration = yaml(
        "02_kinds",
        "operations:
  - create_index:
      name: idx_fruits_id_gt_10
      table: fruits
      columns:
        - column: \"id\"
      predicate: id > 10
  - create_index:
      name: idx_fruits_name
      table: fruits
      columns:
        - column: \"name\"
      method: hash
      storage_parameters: fillfactor = 70
  - create_index:
      name: idx_fruits_custom_opclass
      table: fruits
      columns:
        - column: \"id\"
          opclass:
            name: int8_ops
",
    );
    let present = vec![
        Check::Rows(
            V::Base,
            indexdef("idx_fruits_id_gt_10"),
            &["CREATE INDEX idx_fruits_id_gt_10 ON public.fruits USING btree (id) WHERE (id > 10)"],
        ),
        Check::Rows(
            V::Base,
            indexdef("idx_fruits_name"),
            &["CREATE INDEX idx_fruits_name ON public.fruits USING hash (name) WITH (fillfactor='70')"],
        ),
        // int8_ops is bigint's default class, which pg_get_indexdef leaves out.
        Check::Rows(
            V::Base,
            "SELECT o.opcname FROM pg_index i JOIN pg_opclass o ON o.oid = i.indclass[0]
              WHERE i.indexrelid = 'public.idx_fruits_custom_opclass'::regclass",
            &["int8_ops"],
        ),
        Check::Ok(V::New, "INSERT INTO fruits (name) VALUES ('x')"),
        Check::Ok(V::Old, "DELETE FROM fruits WHERE name = 'x'"),
    ];
    run(Case {
        setup: vec![],
        seed: FRUITS,
        migration,
        after_start: present.clone(),
        after_rollback: vec![Check::Rows(
            V::Base,
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'fruits'",
            &["1"],
        )],
        after_complete: present,
    })
    .await;
}

#[tokio::test]
async fn every_element_setting_and_odd_names() {
    let migration = yaml(
        "02_odd",
        r#"operations:
  - create_index:
      name: 'Idx "Odd" Name'
      table: 'Fru"its'
      unique: true
      columns:
        - column: 'Na"me'
          collate: '"C"'
          opclass:
            name: pg_catalog.text_pattern_ops
          sort: DESC
          nulls: FIRST
        - column: 'Si ze'
          sort: ASC
          nulls: LAST
      predicate: '"Si ze" > 0'
      storage_parameters: fillfactor = 80
"#,
    );
    let present = vec![
        Check::Rows(
            V::Base,
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'Idx \"Odd\" Name'",
            &["CREATE UNIQUE INDEX \"Idx \"\"Odd\"\" Name\" ON public.\"Fru\"\"its\" USING btree (\"Na\"\"me\" COLLATE \"C\" text_pattern_ops DESC, \"Si ze\") WITH (fillfactor='80') WHERE (\"Si ze\" > 0)"],
        ),
        Check::Fails(V::New, "INSERT INTO \"Fru\"\"its\" (\"Na\"\"me\", \"Si ze\") VALUES ('a', 1)", SqlState::UNIQUE_VIOLATION),
        // Outside the predicate, duplicates are fine.
        Check::Ok(V::Old, "INSERT INTO \"Fru\"\"its\" (\"Na\"\"me\", \"Si ze\") VALUES ('a', 0)"),
        Check::Ok(V::Old, "DELETE FROM \"Fru\"\"its\" WHERE \"Si ze\" = 0"),
    ];
    run(Case {
        setup: vec![],
        seed: "CREATE TABLE \"Fru\"\"its\" (\"I d\" serial PRIMARY KEY, \"Na\"\"me\" text, \"Si ze\" int);
               INSERT INTO \"Fru\"\"its\" (\"Na\"\"me\", \"Si ze\") VALUES ('a', 1), ('b', 2);",
        migration,
        after_start: present.clone(),
        after_rollback: vec![Check::Ok(
            V::Old,
            "INSERT INTO \"Fru\"\"its\" (\"Na\"\"me\", \"Si ze\") VALUES ('a', 1); DELETE FROM \"Fru\"\"its\" WHERE \"I d\" > 2",
        )],
        after_complete: present,
    })
    .await;
}

#[tokio::test]
async fn older_column_forms_in_a_non_public_schema() {
    let env = Env::with_schema("app").await;
    env.sql(
        "CREATE TABLE app.fruits (id serial PRIMARY KEY, name text, size int);
             INSERT INTO app.fruits (name, size) VALUES ('a', 1);",
    )
    .await;
    let migration = yaml(
        "02_forms",
        "operations:
  - create_index:
      name: idx_map
      table: fruits
      columns:
        size: {sort: DESC}
        name: {}
  - create_index:
      name: idx_list
      table: fruits
      columns: [name, size]
",
    );
    let present = vec![
        Check::Rows(
            V::Base,
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'app' AND indexname LIKE 'idx_%' ORDER BY 1",
            &[
                "CREATE INDEX idx_list ON app.fruits USING btree (name, size)",
                "CREATE INDEX idx_map ON app.fruits USING btree (size DESC, name)",
            ],
        ),
        Check::Rows(V::Base, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'", &["0"]),
        Check::Ok(V::New, "INSERT INTO fruits (name, size) VALUES ('b', 2)"),
        Check::Rows(V::Old, "SELECT name FROM fruits ORDER BY id", &["a", "b"]),
        Check::Ok(V::Old, "DELETE FROM fruits WHERE name = 'b'"),
    ];
    run_in(
        &env,
        Case {
            setup: vec![],
            seed: "",
            migration,
            after_start: present.clone(),
            after_rollback: vec![Check::Rows(
                V::Base,
                "SELECT count(*) FROM pg_indexes WHERE schemaname = 'app'",
                &["1"],
            )],
            after_complete: present,
        },
    )
    .await;
}

#[tokio::test]
async fn an_invalid_leftover_is_dropped_and_rebuilt() {
    let env = Env::new().await;
    env.sql(FRUITS).await;
    env.sql("INSERT INTO fruits (name) VALUES ('apple')").await;
    // A failed CREATE UNIQUE INDEX CONCURRENTLY leaves an INVALID index behind.
    let failed = env
        .db
        .client
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY idx_fruits_name ON fruits (name)")
        .await;
    common::assert_sqlstate(
        &failed.expect_err("the duplicate 'apple' must make the build fail"),
        &SqlState::UNIQUE_VIOLATION,
    );
    let migration = yaml(
        "02_rebuild",
        "operations:
  - create_index:
      name: idx_fruits_name
      table: fruits
      columns: [{column: name}, {column: size}]
",
    );
    env.check(
        &migration,
        &[Check::Rows(V::Base, valid("idx_fruits_name"), &["f"])],
        "before start",
    )
    .await;
    let m = env.migrator().await;
    m.start(&migration, false)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let rebuilt = [
        Check::Rows(V::Base, valid("idx_fruits_name"), &["t"]),
        Check::Rows(
            V::Base,
            indexdef("idx_fruits_name"),
            &["CREATE INDEX idx_fruits_name ON public.fruits USING btree (name, size)"],
        ),
    ];
    env.check(&migration, &rebuilt, "after start").await;
    m.complete()
        .await
        .unwrap_or_else(|e| panic!("complete: {e}"));
    env.check(&migration, &rebuilt, "after complete").await;
}

#[tokio::test]
async fn a_failing_unique_build_rolls_back_cleanly() {
    let env = Env::new().await;
    env.sql(FRUITS).await;
    env.sql("INSERT INTO fruits (name) VALUES ('apple')").await;
    let before = dump(&env);
    let migration = yaml(
        "02_dupes",
        "operations:
  - create_index: {name: idx_u, table: fruits, unique: true, columns: [{column: name}]}
",
    );
    let m = env.migrator().await;
    let err = m
        .start(&migration, false)
        .await
        .expect_err("duplicates must fail the build");
    assert!(err.to_string().contains("rolled back"), "{err}");
    assert_eq!(
        dump(&env),
        before,
        "a failed start leaves the schema as it was"
    );
    env.check(
        &migration,
        &[Check::Rows(V::Base, indexdef("idx_u"), &[])],
        "after failed start",
    )
    .await;
}

#[tokio::test]
async fn validation_errors_come_before_any_ddl() {
    let env = Env::new().await;
    env.sql(FRUITS).await;
    env.sql("CREATE INDEX idx_existing ON fruits (size)").await;
    let before = dump(&env);
    let m = env.migrator().await;
    let cases = [
        ("table: nope, columns: [{column: id}]", "operations[0].create_index.table: table \"nope\" does not exist"),
        (
            "table: fruits, columns: [{column: id}, {column: nope}]",
            "operations[0].create_index.columns[1].column: column \"nope\" does not exist in table \"fruits\"",
        ),
        ("table: fruits, columns: []", "operations[0].create_index.columns: an index needs at least one column"),
        (
            "table: fruits, columns: [{column: name, collate: 'C; DROP TABLE fruits'}]",
            "operations[0].create_index.columns[0].collate:",
        ),
        ("table: fruits, unique: true, method: brin, columns: [{column: id}]", "operations[0].create_index.unique:"),
    ];
    for (body, expected) in cases {
        let mig = yaml(
            "02_bad",
            &format!("operations:\n  - create_index: {{name: idx_new, {body}}}\n"),
        );
        let err = m.start(&mig, false).await.expect_err(body).to_string();
        assert!(err.contains(expected), "{body}: got {err}");
    }
    let dup = yaml(
        "02_dup",
        "operations:\n  - create_index: {name: idx_existing, table: fruits, columns: [{column: name}]}\n",
    );
    let err = m
        .start(&dup, false)
        .await
        .expect_err("duplicate name")
        .to_string();
    assert!(
        err.contains("create_index.name: index \"idx_existing\" already exists"),
        "{err}"
    );
    assert_eq!(dump(&env), before);
    assert!(m.status().await.expect("status").active.is_none());
}

#[tokio::test]
async fn after_a_table_and_column_rename_in_the_same_migration() {
    // pgroll's "rename table, rename column, create index".
    let migration = yaml(
        "02_renames",
        "operations:
  - rename_table: {from: fruits, to: produce}
  - rename_column: {table: produce, from: name, to: product_name}
  - create_index:
      name: idx_produce_name
      table: produce
      columns: [{column: product_name}]
      predicate: product_name <> 'x' AND size IS NOT NULL
",
    );
    run(Case {
        setup: vec![],
        seed: FRUITS,
        migration,
        after_start: vec![
            Check::Rows(
                V::Base,
                indexdef("idx_produce_name"),
                &["CREATE INDEX idx_produce_name ON public.fruits USING btree (name) WHERE ((name <> 'x'::text) AND (size IS NOT NULL))"],
            ),
            Check::Ok(V::New, "INSERT INTO produce (product_name) VALUES ('kiwi')"),
            Check::Rows(V::Old, "SELECT count(*) FROM fruits WHERE name = 'kiwi'", &["1"]),
            Check::Ok(V::Old, "DELETE FROM fruits WHERE name = 'kiwi'"),
        ],
        after_rollback: vec![Check::Rows(V::Base, indexdef("idx_produce_name"), &[])],
        after_complete: vec![Check::Rows(
            V::Base,
            indexdef("idx_produce_name"),
            &["CREATE INDEX idx_produce_name ON public.produce USING btree (product_name) WHERE ((product_name <> 'x'::text) AND (size IS NOT NULL))"],
        )],
    })
    .await;
}

#[tokio::test]
async fn on_a_column_added_in_the_same_migration() {
    // pgroll's "create index on newly created column", with a predicate on it.
    let migration = yaml(
        "02_add_and_index",
        "operations:
  - add_column:
      table: fruits
      column: {name: price, type: numeric, nullable: true}
  - create_index:
      name: idx_fruits_price
      table: fruits
      columns: [{column: price, sort: DESC}]
      predicate: price > 0
",
    );
    run(Case {
        setup: vec![],
        seed: FRUITS,
        migration,
        after_start: vec![
            Check::Rows(
                V::Base,
                indexdef("idx_fruits_price"),
                &["CREATE INDEX idx_fruits_price ON public.fruits USING btree (_pgbaton_new_price DESC) WHERE (_pgbaton_new_price > (0)::numeric)"],
            ),
            Check::Ok(V::New, "INSERT INTO fruits (name, price) VALUES ('kiwi', 2.5)"),
            Check::Rows(V::New, "SELECT price FROM fruits WHERE price > 0", &["2.5"]),
            Check::Ok(V::Old, "DELETE FROM fruits WHERE name = 'kiwi'"),
        ],
        after_rollback: vec![Check::Rows(V::Base, indexdef("idx_fruits_price"), &[])],
        after_complete: vec![Check::Rows(
            V::Base,
            indexdef("idx_fruits_price"),
            &["CREATE INDEX idx_fruits_price ON public.fruits USING btree (price DESC) WHERE (price > (0)::numeric)"],
        )],
    })
    .await;
}
