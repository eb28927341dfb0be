//! `drop_index` through the whole lifecycle: the index stays for both versions during the
//! migration and is dropped concurrently at complete; a constraint's index is refused.

mod common;

use common::lifecycle::*;

const SEED: &str = "CREATE TABLE fruits (id serial PRIMARY KEY, name text, size int);
    CREATE INDEX \"Idx Fruits Name\" ON fruits (name);
    CREATE UNIQUE INDEX idx_size ON fruits (size);
    INSERT INTO fruits (name, size) VALUES ('apple', 1), ('banana', 2);";

const NAME_INDEX: &str = "SELECT count(*) FROM pg_indexes WHERE indexname = 'Idx Fruits Name'";

#[tokio::test]
async fn drops_the_index_at_complete() {
    // Example 11, with a mixed-case name.
    let migration = yaml(
        "02_drop",
        "operations:\n  - drop_index:\n      name: Idx Fruits Name\n",
    );
    let during = vec![
        Check::Rows(V::Base, NAME_INDEX, &["1"]),
        Check::Ok(V::Old, "INSERT INTO fruits (name, size) VALUES ('old', 3)"),
        Check::Ok(V::New, "INSERT INTO fruits (name, size) VALUES ('new', 4)"),
        Check::Rows(
            V::New,
            "SELECT name FROM fruits WHERE id > 2 ORDER BY id",
            &["old", "new"],
        ),
        Check::Rows(
            V::Old,
            "SELECT name FROM fruits WHERE id > 2 ORDER BY id",
            &["old", "new"],
        ),
        Check::Ok(V::Old, "DELETE FROM fruits WHERE id > 2"),
    ];
    run(Case {
        setup: vec![],
        seed: SEED,
        migration,
        after_start: during,
        after_rollback: vec![Check::Rows(V::Base, NAME_INDEX, &["1"])],
        after_complete: vec![
            Check::Rows(V::Base, NAME_INDEX, &["0"]),
            Check::Rows(
                V::Base,
                "SELECT count(*) FROM pg_indexes WHERE tablename = 'fruits'",
                &["2"],
            ),
            Check::Ok(
                V::New,
                "INSERT INTO fruits (name, size) VALUES ('after', 5)",
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn a_unique_index_keeps_constraining_until_complete() {
    let env = Env::with_schema("Odd Schema").await;
    env.sql(
        "CREATE TABLE \"Odd Schema\".t (id int PRIMARY KEY, \"U\"\"v\" int);
         CREATE UNIQUE INDEX \"u\"\"idx\" ON \"Odd Schema\".t (\"U\"\"v\");
         INSERT INTO \"Odd Schema\".t VALUES (1, 1);",
    )
    .await;
    let migration = yaml(
        "02_drop_u",
        "operations:\n  - drop_index: {name: 'u\"idx'}\n",
    );
    run_in(
        &env,
        Case {
            setup: vec![],
            seed: "",
            migration,
            after_start: vec![
                Check::Fails(
                    V::Old,
                    "INSERT INTO t VALUES (2, 1)",
                    SqlState::UNIQUE_VIOLATION,
                ),
                Check::Fails(
                    V::New,
                    "INSERT INTO t VALUES (2, 1)",
                    SqlState::UNIQUE_VIOLATION,
                ),
            ],
            after_rollback: vec![Check::Fails(
                V::Old,
                "INSERT INTO t VALUES (2, 1)",
                SqlState::UNIQUE_VIOLATION,
            )],
            after_complete: vec![
                Check::Ok(V::New, "INSERT INTO t VALUES (2, 1)"),
                Check::Rows(
                    V::New,
                    "SELECT count(*) FROM t WHERE \"U\"\"v\" = 1",
                    &["2"],
                ),
                Check::Rows(
                    V::Base,
                    "SELECT count(*) FROM pg_indexes WHERE schemaname = 'Odd Schema'",
                    &["1"],
                ),
            ],
        },
    )
    .await;
}

#[tokio::test]
async fn refuses_a_constraint_index_and_a_missing_one() {
    let env = Env::new().await;
    env.sql(SEED).await;
    env.sql("ALTER TABLE fruits ADD CONSTRAINT fruits_name_key UNIQUE (name)")
        .await;
    let before = dump(&env);
    let m = env.migrator().await;
    for (name, expected) in [
        ("fruits_pkey", "operations[0].drop_index.name: index \"fruits_pkey\" backs constraint \"fruits_pkey\" of table \"fruits\""),
        ("fruits_name_key", "operations[0].drop_index.name: index \"fruits_name_key\" backs constraint \"fruits_name_key\""),
        ("nope", "operations[0].drop_index.name: index \"nope\" does not exist in schema \"public\""),
    ] {
        let mig = yaml("02_bad", &format!("operations:\n  - drop_index: {{name: {name}}}\n"));
        let err = m.start(&mig, false).await.expect_err(name).to_string();
        assert!(err.contains(expected), "{name}: {err}");
    }
    assert_eq!(dump(&env), before);
}
