//! `create_constraint` through the whole lifecycle: the constrained columns are duplicated, the
//! constraint lives on the copies only (the new version is subject to it, the old version is not,
//! its rows carried over by `up`), validated / attached at complete.

mod common;

use common::lifecycle::*;

const TICKETS: &str = "CREATE TABLE tickets (ticket_id serial PRIMARY KEY, sellers_name varchar(255), sellers_zip int);
    INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('alice', 0), ('bob', 0), ('carol', 7);";

const CHECK_45: &str = "operations:
  - create_constraint:
      type: check
      table: tickets
      name: check_zip_name
      columns:
        - sellers_name
        - sellers_zip
      check: sellers_name = 'alice' OR sellers_zip > 0
      up:
        sellers_name: sellers_name
        sellers_zip: SELECT CASE WHEN sellers_name != 'alice' AND sellers_zip <= 0 THEN 123 WHEN sellers_name != 'alice' THEN sellers_zip ELSE sellers_zip END
      down:
        sellers_name: sellers_name
        sellers_zip: sellers_zip
";

const CONSTRAINTS: &str =
    "SELECT conname || ' ' || contype::text || ' ' || convalidated FROM pg_constraint WHERE conrelid = 'public.tickets'::regclass AND contype <> 'n' ORDER BY 1";

#[tokio::test]
async fn check_constraint_binds_the_new_version_only() {
    // Example 45.
    let after_start = vec![
        // Existing rows: backfilled through `up` for the new version, untouched for the old.
        Check::Rows(V::New, "SELECT sellers_name, sellers_zip FROM tickets ORDER BY ticket_id", &["alice|0", "bob|123", "carol|7"]),
        Check::Rows(V::Old, "SELECT sellers_name, sellers_zip FROM tickets ORDER BY ticket_id", &["alice|0", "bob|0", "carol|7"]),
        // The new version is subject to the check...
        Check::Fails(V::New, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('dave', 0)", SqlState::CHECK_VIOLATION),
        Check::Fails(V::New, "UPDATE tickets SET sellers_zip = -1 WHERE sellers_name = 'carol'", SqlState::CHECK_VIOLATION),
        // ...the old version is not, and `up` carries its value over.
        Check::Ok(V::Old, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('erin', -5)"),
        Check::Rows(V::New, "SELECT sellers_zip FROM tickets WHERE sellers_name = 'erin'", &["123"]),
        Check::Rows(V::Old, "SELECT sellers_zip FROM tickets WHERE sellers_name = 'erin'", &["-5"]),
        Check::Ok(V::Old, "UPDATE tickets SET sellers_zip = -2 WHERE sellers_name = 'carol'"),
        Check::Rows(V::New, "SELECT sellers_zip FROM tickets WHERE sellers_name = 'carol'", &["123"]),
        // A valid write through the new version reaches the old one through `down`.
        Check::Ok(V::New, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('alice', -3)"),
        Check::Rows(V::Old, "SELECT count(*) FROM tickets WHERE sellers_name = 'alice' AND sellers_zip = -3", &["1"]),
        Check::Rows(V::Base, CONSTRAINTS, &["check_zip_name c false", "tickets_pkey p true"]),
        // Leave the rows as they were, for the second start.
        Check::Ok(V::Old, "DELETE FROM tickets WHERE ticket_id > 3; UPDATE tickets SET sellers_zip = 7 WHERE sellers_name = 'carol'"),
    ];
    run(Case {
        setup: vec![],
        seed: TICKETS,
        migration: yaml("02_check", CHECK_45),
        after_start,
        after_rollback: vec![
            Check::Rows(V::Base, CONSTRAINTS, &["tickets_pkey p true"]),
            Check::Rows(V::Base, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.tickets'::regclass AND attname LIKE '\\_pgbaton%' AND NOT attisdropped", &["0"]),
            Check::Ok(V::Old, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('x', -1); DELETE FROM tickets WHERE sellers_name = 'x'"),
        ],
        after_complete: vec![
            Check::Rows(V::Base, CONSTRAINTS, &["check_zip_name c true", "tickets_pkey p true"]),
            Check::Rows(V::New, "SELECT sellers_name, sellers_zip FROM tickets ORDER BY ticket_id", &["alice|0", "bob|123", "carol|7"]),
            Check::Fails(V::New, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('dave', 0)", SqlState::CHECK_VIOLATION),
            Check::Fails(V::Base, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('dave', 0)", SqlState::CHECK_VIOLATION),
            Check::Rows(
                V::Base,
                "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = 'public.tickets'::regclass AND attnum > 0 AND NOT attisdropped",
                &["ticket_id,sellers_name,sellers_zip"],
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn unique_constraint_on_two_columns() {
    // Example 44, with index parameters.
    let migration = yaml(
        "02_unique",
        "operations:
  - create_constraint:
      type: unique
      table: tickets
      name: unique_zip_name
      columns: [sellers_name, sellers_zip]
      index_parameters:
        storage_parameters: fillfactor = 90
        include_columns: [ticket_id]
      up:
        sellers_name: sellers_name
        sellers_zip: sellers_zip
      down:
        sellers_name: sellers_name
        sellers_zip: sellers_zip
",
    );
    let unique = vec![
        Check::Fails(
            V::New,
            "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('bob', 0)",
            SqlState::UNIQUE_VIOLATION,
        ),
        Check::Ok(
            V::New,
            "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('bob', 1)",
        ),
        Check::Rows(
            V::Old,
            "SELECT count(*) FROM tickets WHERE sellers_name = 'bob'",
            &["2"],
        ),
        Check::Ok(V::Old, "DELETE FROM tickets WHERE ticket_id > 3"),
    ];
    let mut after_start = unique.clone();
    after_start.push(Check::Rows(
        V::Base,
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'unique_zip_name'",
        &["CREATE UNIQUE INDEX unique_zip_name ON public.tickets USING btree (_pgbaton_new_sellers_name, _pgbaton_new_sellers_zip) INCLUDE (ticket_id) WITH (fillfactor='90')"],
    ));
    let mut after_complete = unique;
    after_complete.push(Check::Rows(
        V::Base,
        "SELECT pg_get_constraintdef(c.oid) || ' / ' || pg_get_indexdef(c.conindid) FROM pg_constraint c WHERE c.conname = 'unique_zip_name'",
        &["UNIQUE (sellers_name, sellers_zip) INCLUDE (ticket_id) / CREATE UNIQUE INDEX unique_zip_name ON public.tickets USING btree (sellers_name, sellers_zip) INCLUDE (ticket_id) WITH (fillfactor='90')"],
    ));
    run(Case {
        setup: vec![],
        seed: TICKETS,
        migration,
        after_start,
        after_rollback: vec![
            Check::Rows(V::Base, "SELECT count(*) FROM pg_indexes WHERE tablename = 'tickets'", &["1"]),
            Check::Ok(V::Old, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('bob', 0); DELETE FROM tickets WHERE ticket_id > 3"),
        ],
        after_complete,
    })
    .await;
}

#[tokio::test]
async fn foreign_key_binds_the_new_version_only() {
    // Example 47, with an `up` that sends unknown sellers to NULL (MATCH SIMPLE lets NULL pass).
    let migration = yaml(
        "02_fk",
        "operations:
  - create_constraint:
      type: foreign_key
      table: tickets
      name: fk_sellers
      columns: [sellers_name, sellers_zip]
      references:
        table: sellers
        columns: [name, zip]
        on_delete: CASCADE
      up:
        sellers_name: sellers_name
        sellers_zip: SELECT CASE WHEN EXISTS (SELECT 1 FROM sellers s WHERE s.name = sellers_name AND s.zip = sellers_zip) THEN sellers_zip END
      down:
        sellers_name: sellers_name
        sellers_zip: sellers_zip
",
    );
    run(Case {
        setup: vec![],
        seed: "CREATE TABLE sellers (name varchar(255), zip int, UNIQUE (name, zip));
               INSERT INTO sellers VALUES ('alice', 0), ('bob', 0);
               CREATE TABLE tickets (ticket_id serial PRIMARY KEY, sellers_name varchar(255), sellers_zip int);
               INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('alice', 0), ('zed', 9);",
        migration,
        after_start: vec![
            Check::Rows(V::New, "SELECT sellers_name, sellers_zip FROM tickets ORDER BY ticket_id", &["alice|0", "zed|NULL"]),
            Check::Fails(V::New, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('nobody', 1)", SqlState::FOREIGN_KEY_VIOLATION),
            Check::Ok(V::Old, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('nobody', 1)"),
            Check::Rows(V::New, "SELECT sellers_zip FROM tickets WHERE sellers_name = 'nobody'", &["NULL"]),
            Check::Ok(V::New, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('bob', 0)"),
            Check::Rows(V::Old, "SELECT count(*) FROM tickets WHERE sellers_name = 'bob' AND sellers_zip = 0", &["1"]),
            Check::Rows(V::Base, "SELECT convalidated FROM pg_constraint WHERE conname = 'fk_sellers'", &["f"]),
            Check::Ok(V::Old, "DELETE FROM tickets WHERE ticket_id > 2"),
        ],
        after_rollback: vec![
            Check::Rows(V::Base, "SELECT count(*) FROM pg_constraint WHERE conname = 'fk_sellers'", &["0"]),
            Check::Rows(V::Old, "SELECT sellers_name, sellers_zip FROM tickets ORDER BY ticket_id", &["alice|0", "zed|9"]),
        ],
        after_complete: vec![
            Check::Rows(
                V::Base,
                "SELECT pg_get_constraintdef(oid) || ' ' || convalidated FROM pg_constraint WHERE conname = 'fk_sellers'",
                &["FOREIGN KEY (sellers_name, sellers_zip) REFERENCES sellers(name, zip) ON DELETE CASCADE true"],
            ),
            Check::Rows(V::New, "SELECT sellers_name, sellers_zip FROM tickets ORDER BY ticket_id", &["alice|0", "zed|NULL"]),
            Check::Fails(V::New, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('nobody', 1)", SqlState::FOREIGN_KEY_VIOLATION),
            Check::Ok(V::New, "DELETE FROM sellers WHERE name = 'alice'"),
            Check::Rows(V::New, "SELECT count(*) FROM tickets WHERE sellers_name = 'alice'", &["0"]),
        ],
    })
    .await;
}

#[tokio::test]
async fn primary_key_on_a_table_without_one() {
    let migration = yaml(
        "02_pk",
        "operations:
  - create_constraint:
      name: tasks_pkey
      table: tasks
      columns: [id]
      type: primary_key
      up:
        id: id
      down:
        id: id
",
    );
    let pk = vec![
        Check::Fails(
            V::New,
            "INSERT INTO tasks (id, title) VALUES (1, 'dup')",
            SqlState::UNIQUE_VIOLATION,
        ),
        Check::Fails(
            V::New,
            "INSERT INTO tasks (id, title) VALUES (NULL, 'null')",
            SqlState::CHECK_VIOLATION,
        ),
        Check::Ok(V::New, "INSERT INTO tasks (id, title) VALUES (3, 'c')"),
        Check::Rows(
            V::Old,
            "SELECT id, title FROM tasks ORDER BY id",
            &["1|a", "2|b", "3|c"],
        ),
        Check::Ok(V::Old, "DELETE FROM tasks WHERE id = 3"),
    ];
    let mut after_complete = pk.clone();
    after_complete[1] = Check::Fails(
        V::New,
        "INSERT INTO tasks (id, title) VALUES (NULL, 'null')",
        SqlState::NOT_NULL_VIOLATION,
    );
    after_complete.push(Check::Rows(
        V::Base,
        "SELECT c.conname || ' ' || pg_get_constraintdef(c.oid) || ' ' || a.attnotnull FROM pg_constraint c
           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attname = 'id' WHERE c.conrelid = 'public.tasks'::regclass AND c.contype <> 'n'",
        &["tasks_pkey PRIMARY KEY (id) true"],
    ));
    run(Case {
        setup: vec![],
        seed:
            "CREATE TABLE tasks (id int, title text); INSERT INTO tasks VALUES (1, 'a'), (2, 'b');",
        migration,
        after_start: pk,
        after_rollback: vec![
            Check::Rows(
                V::Base,
                "SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.tasks'::regclass AND contype <> 'n'",
                &["0"],
            ),
            Check::Ok(
                V::Old,
                "INSERT INTO tasks VALUES (NULL, 'x'); DELETE FROM tasks WHERE id IS NULL",
            ),
        ],
        after_complete,
    })
    .await;
}

#[tokio::test]
async fn primary_key_on_a_table_created_in_the_same_migration() {
    // Example 55.
    let migration = yaml(
        "02_tasks",
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/pgroll/examples/55_add_primary_key_constraint_to_table.yaml"
        ))
        .unwrap_or_else(|e| panic!("example 55: {e}")),
    );
    run(Case {
        setup: vec![],
        seed: "",
        migration,
        after_start: vec![
            Check::Ok(V::New, "INSERT INTO tasks (title, description, deadline) VALUES ('a', 'd', '10:00+00')"),
            Check::Fails(V::New, "INSERT INTO tasks (id, title, description, deadline) VALUES (1, 'b', 'd', '10:00+00')", SqlState::UNIQUE_VIOLATION),
            Check::Ok(V::New, "DELETE FROM tasks"),
        ],
        after_rollback: vec![Check::Rows(V::Base, "SELECT count(*) FROM pg_class WHERE relname = 'tasks'", &["0"])],
        after_complete: vec![Check::Rows(
            V::Base,
            "SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'public.tasks'::regclass AND contype = 'p'",
            &["tasks_pkey PRIMARY KEY (id)"],
        )],
    })
    .await;
}

#[tokio::test]
async fn an_invalid_leftover_of_the_index_is_rebuilt_on_the_copies() {
    let env = Env::new().await;
    env.sql(TICKETS).await;
    env.sql("INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('bob', 0)")
        .await;
    let failed = env
        .db
        .client
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY unique_zip_name ON tickets (sellers_name, sellers_zip)")
        .await;
    common::assert_sqlstate(
        &failed.expect_err("the duplicate ('bob', 0) must make the build fail"),
        &SqlState::UNIQUE_VIOLATION,
    );
    env.sql("DELETE FROM tickets WHERE ticket_id = 4").await;
    let migration = yaml(
        "02_unique_again",
        "operations:
  - create_constraint:
      type: unique
      table: tickets
      name: unique_zip_name
      columns: [sellers_name, sellers_zip]
      up: {sellers_name: sellers_name, sellers_zip: sellers_zip}
      down: {sellers_name: sellers_name, sellers_zip: sellers_zip}
",
    );
    let m = env.migrator().await;
    m.start(&migration, false)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    env.check(
        &migration,
        &[Check::Rows(
            V::Base,
            "SELECT i.indisvalid::text || ' ' || pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indexrelid = 'public.unique_zip_name'::regclass",
            &["true CREATE UNIQUE INDEX unique_zip_name ON public.tickets USING btree (_pgbaton_new_sellers_name, _pgbaton_new_sellers_zip)"],
        )],
        "after start",
    )
    .await;
    m.complete()
        .await
        .unwrap_or_else(|e| panic!("complete: {e}"));
    env.check(
        &migration,
        &[
            Check::Rows(
                V::Base,
                "SELECT count(*) FROM pg_indexes WHERE tablename = 'tickets'",
                &["2"],
            ),
            Check::Fails(
                V::New,
                "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('bob', 0)",
                SqlState::UNIQUE_VIOLATION,
            ),
        ],
        "after complete",
    )
    .await;
}

#[tokio::test]
async fn a_unique_constraint_on_duplicate_data_rolls_back() {
    let env = Env::new().await;
    env.sql(TICKETS).await;
    env.sql("INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('bob', 0)")
        .await;
    let before = dump(&env);
    let migration = yaml(
        "02_dupes",
        "operations:
  - create_constraint: {type: unique, table: tickets, name: u, columns: [sellers_name, sellers_zip], up: {sellers_name: sellers_name, sellers_zip: sellers_zip}, down: {sellers_name: sellers_name, sellers_zip: sellers_zip}}
",
    );
    let m = env.migrator().await;
    let err = m
        .start(&migration, false)
        .await
        .expect_err("duplicates must fail the build")
        .to_string();
    assert!(err.contains("rolled back"), "{err}");
    assert_eq!(
        dump(&env),
        before,
        "a failed start leaves the schema as it was"
    );
}

#[tokio::test]
async fn validation_errors_come_before_any_ddl() {
    let env = Env::new().await;
    env.sql(TICKETS).await;
    env.sql("CREATE TABLE sellers (name text, zip int)").await;
    let before = dump(&env);
    let m = env.migrator().await;
    let cols =
        "columns: [sellers_zip], up: {sellers_zip: sellers_zip}, down: {sellers_zip: sellers_zip}";
    let cases = [
        (format!("type: check, table: nope, name: c, check: 'true', {cols}"), "create_constraint.table: table \"nope\" does not exist"),
        (format!("type: check, table: tickets, name: tickets_pkey, check: 'true', {cols}"), "create_constraint.name: constraint \"tickets_pkey\" already exists"),
        (format!("type: check, table: tickets, name: c, {cols}"), "create_constraint.check: a check constraint needs its expression"),
        ("type: check, table: tickets, name: c, check: 'true', columns: [nope], up: {nope: x}, down: {nope: x}".into(), "create_constraint.columns[0]: column \"nope\" does not exist"),
        ("type: unique, table: tickets, name: c, columns: [sellers_zip], up: {sellers_zip: x}, down: {}".into(), "create_constraint.down: `down` has no SQL for column \"sellers_zip\""),
        (format!("type: foreign_key, table: tickets, name: c, {cols}"), "create_constraint.references: a foreign key needs `references`"),
        (format!("type: foreign_key, table: tickets, name: c, references: {{table: nope, columns: [a]}}, {cols}"), "create_constraint.references.table: table \"nope\" does not exist"),
        (format!("type: foreign_key, table: tickets, name: c, references: {{table: sellers, columns: [a]}}, {cols}"), "create_constraint.references.columns[0]: column \"a\" does not exist in table \"sellers\""),
        (format!("type: primary_key, table: tickets, name: c, {cols}"), "create_constraint.type: table \"tickets\" already has a primary key"),
        (format!("type: exclude, table: tickets, name: c, {cols}"), "create_constraint.type: an exclusion constraint cannot be added without blocking writes"),
    ];
    for (body, expected) in cases {
        let mig = yaml(
            "02_bad",
            &format!("operations:\n  - create_constraint: {{{body}}}\n"),
        );
        let err = m.start(&mig, false).await.expect_err(&body).to_string();
        assert!(err.contains(expected), "{body}: got {err}");
    }
    assert_eq!(dump(&env), before);
    assert!(m.status().await.expect("status").active.is_none());
}

#[tokio::test]
async fn after_a_table_and_column_rename_in_the_same_migration() {
    // pgroll's "rename table, rename column, create check constraint".
    let migration = yaml(
        "02_renames",
        "operations:
  - rename_table: {from: tickets, to: orders}
  - rename_column: {table: orders, from: sellers_zip, to: zip}
  - create_constraint:
      type: check
      table: orders
      name: zip_positive
      columns: [zip]
      check: zip > 0
      up: {zip: SELECT CASE WHEN zip > 0 THEN zip ELSE 1 END}
      down: {zip: zip}
",
    );
    run(Case {
        setup: vec![],
        seed: TICKETS,
        migration,
        after_start: vec![
            Check::Rows(V::New, "SELECT zip FROM orders ORDER BY ticket_id", &["1", "1", "7"]),
            Check::Fails(V::New, "INSERT INTO orders (sellers_name, zip) VALUES ('x', 0)", SqlState::CHECK_VIOLATION),
            Check::Ok(V::Old, "INSERT INTO tickets (sellers_name, sellers_zip) VALUES ('x', 0)"),
            Check::Rows(V::New, "SELECT zip FROM orders WHERE sellers_name = 'x'", &["1"]),
            Check::Ok(V::Old, "DELETE FROM tickets WHERE sellers_name = 'x'"),
        ],
        after_rollback: vec![Check::Rows(V::Old, "SELECT sellers_zip FROM tickets ORDER BY ticket_id", &["0", "0", "7"])],
        after_complete: vec![
            Check::Rows(
                V::Base,
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'zip_positive' AND conrelid = 'public.orders'::regclass",
                &["CHECK ((zip > 0))"],
            ),
            Check::Rows(V::New, "SELECT zip FROM orders ORDER BY ticket_id", &["1", "1", "7"]),
        ],
    })
    .await;
}

#[tokio::test]
async fn unique_constraint_on_a_serial_column() {
    // pgroll's "create unique constraint on serial column": the sequence follows the copy.
    let migration = yaml(
        "02_unique_serial",
        "operations:
  - create_constraint:
      type: unique
      table: items
      name: items_n_key
      columns: [n]
      up: {n: n}
      down: {n: n}
",
    );
    run(Case {
        setup: vec![],
        seed: "CREATE TABLE items (id int PRIMARY KEY, n serial); INSERT INTO items (id) VALUES (1), (2);",
        migration,
        after_start: vec![
            Check::Ok(V::New, "INSERT INTO items (id) VALUES (3)"),
            Check::Fails(V::New, "INSERT INTO items (id, n) VALUES (4, 1)", SqlState::UNIQUE_VIOLATION),
            Check::Rows(V::Old, "SELECT count(*) FROM items WHERE n IS NOT NULL", &["3"]),
            Check::Ok(V::Old, "DELETE FROM items WHERE id > 2"),
        ],
        after_rollback: vec![Check::Rows(
            V::Base,
            "SELECT pg_get_serial_sequence('public.items', 'n')",
            &["public.items_n_seq"],
        )],
        after_complete: vec![
            Check::Rows(
                V::Base,
                "SELECT pg_get_serial_sequence('public.items', 'n') || ' ' || pg_get_constraintdef(c.oid)
                   FROM pg_constraint c WHERE c.conname = 'items_n_key'",
                &["public.items_n_seq UNIQUE (n)"],
            ),
            Check::Ok(V::New, "INSERT INTO items (id) VALUES (5)"),
            Check::Fails(V::New, "INSERT INTO items (id, n) VALUES (6, 1)", SqlState::UNIQUE_VIOLATION),
        ],
    })
    .await;
}
