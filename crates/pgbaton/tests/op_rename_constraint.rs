//! `rename_constraint` through the whole lifecycle: nothing changes at start (both versions keep
//! the constraint under its old name), the physical rename happens at complete.

mod common;

use common::lifecycle::*;

const SEED: &str = "CREATE TABLE people (id int PRIMARY KEY, name text, age int CONSTRAINT age_check CHECK (age > 0),
        CONSTRAINT people_name_key UNIQUE (name));
    INSERT INTO people VALUES (1, 'alice', 30);";

const CHECK_NAMES: &str =
    "SELECT conname FROM pg_constraint WHERE conrelid = 'people'::regclass AND contype = 'c' ORDER BY 1";

#[tokio::test]
async fn renames_a_check_constraint_at_complete() {
    // Example 33.
    let migration = yaml(
        "02_rename",
        "operations:\n  - rename_constraint:\n      table: people\n      from: age_check\n      to: age_positive\n",
    );
    let enforced = [
        Check::Fails(
            V::Old,
            "INSERT INTO people VALUES (2, 'bob', -1)",
            SqlState::CHECK_VIOLATION,
        ),
        Check::Fails(
            V::New,
            "INSERT INTO people VALUES (2, 'bob', -1)",
            SqlState::CHECK_VIOLATION,
        ),
        Check::Ok(V::New, "INSERT INTO people VALUES (2, 'bob', 1)"),
        Check::Rows(
            V::Old,
            "SELECT name FROM people ORDER BY id",
            &["alice", "bob"],
        ),
        Check::Ok(V::Old, "DELETE FROM people WHERE id = 2"),
    ];
    let mut after_start = vec![Check::Rows(V::Base, CHECK_NAMES, &["age_check"])];
    after_start.extend(enforced.iter().cloned());
    let mut after_complete = vec![Check::Rows(V::Base, CHECK_NAMES, &["age_positive"])];
    after_complete.extend(enforced.iter().cloned());
    run(Case {
        setup: vec![],
        seed: SEED,
        migration,
        after_start,
        after_rollback: vec![Check::Rows(V::Base, CHECK_NAMES, &["age_check"])],
        after_complete,
    })
    .await;
}

#[tokio::test]
async fn renaming_a_unique_constraint_renames_its_index_in_a_non_public_schema() {
    let env = Env::with_schema("app").await;
    env.sql(&format!("SET search_path = app; {SEED}")).await;
    let migration = yaml(
        "02_rename_u",
        "operations:\n  - rename_constraint: {table: people, from: people_name_key, to: 'People \"Name\" Unique'}\n",
    );
    let names = "SELECT c.conname || ' / ' || i.relname FROM pg_constraint c JOIN pg_class i ON i.oid = c.conindid
                  WHERE c.conrelid = 'app.people'::regclass AND c.contype = 'u'";
    run_in(
        &env,
        Case {
            setup: vec![],
            seed: "",
            migration,
            after_start: vec![
                Check::Rows(V::Base, names, &["people_name_key / people_name_key"]),
                Check::Fails(
                    V::New,
                    "INSERT INTO people VALUES (3, 'alice', 1)",
                    SqlState::UNIQUE_VIOLATION,
                ),
            ],
            after_rollback: vec![Check::Rows(
                V::Base,
                names,
                &["people_name_key / people_name_key"],
            )],
            after_complete: vec![
                Check::Rows(
                    V::Base,
                    names,
                    &["People \"Name\" Unique / People \"Name\" Unique"],
                ),
                Check::Fails(
                    V::New,
                    "INSERT INTO people VALUES (3, 'alice', 1)",
                    SqlState::UNIQUE_VIOLATION,
                ),
                Check::Fails(
                    V::Base,
                    "INSERT INTO people VALUES (3, 'alice', 1)",
                    SqlState::UNIQUE_VIOLATION,
                ),
            ],
        },
    )
    .await;
}

#[tokio::test]
async fn validation_errors() {
    let env = Env::new().await;
    env.sql(SEED).await;
    env.sql("CREATE TABLE other (id int CONSTRAINT other_pkey PRIMARY KEY)")
        .await;
    let before = dump(&env);
    let m = env.migrator().await;
    for (body, expected) in [
        ("table: nope, from: a, to: b", "operations[0].rename_constraint.table: table \"nope\" does not exist"),
        ("table: people, from: nope, to: b", "operations[0].rename_constraint.from: constraint \"nope\" does not exist on table \"people\""),
        ("table: people, from: age_check, to: people_pkey", "operations[0].rename_constraint.to: constraint \"people_pkey\" already exists on table \"people\""),
        ("table: people, from: people_name_key, to: other_pkey", "operations[0].rename_constraint.to: renaming constraint \"people_name_key\" renames its index too"),
    ] {
        let mig = yaml("02_bad", &format!("operations:\n  - rename_constraint: {{{body}}}\n"));
        let err = m.start(&mig, false).await.expect_err(body).to_string();
        assert!(err.contains(expected), "{body}: {err}");
    }
    assert_eq!(dump(&env), before);
}
