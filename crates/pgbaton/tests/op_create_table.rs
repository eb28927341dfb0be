//! `create_table` through the whole lifecycle: the table is created at start under its final name
//! and used through the new version only (the old version has no view of it), dropped by
//! rollback, kept by complete. Every column and table-constraint field of the format, a failing
//! start, and the validation errors. (Names with capitals, spaces and quotes in a non-public
//! schema: `op_odd_names.rs`.)

mod common;

use common::lifecycle::*;

/// A first migration, so that the "old" version is a version schema (as in pgroll's tests).
fn owners() -> pgbaton::format::Migration {
    yaml(
        "01_owners",
        "operations:
  - create_table:
      name: owners
      columns:
        - {name: id, type: integer, pk: true}
        - {name: city, type: text}
      constraints:
        - {name: owners_id_city, type: unique, columns: [id, city]}
",
    )
}

const SEED_OWNERS: &str = "INSERT INTO owners VALUES (1, 'paris'), (2, 'rome'), (3, 'chicago')";

#[tokio::test]
async fn pgroll_create_table() {
    let migration = yaml(
        "02_create_table",
        "operations:
  - create_table:
      name: users
      columns:
        - {name: id, type: serial, pk: true}
        - {name: name, type: varchar(255), unique: true}
",
    );
    let works = vec![
        // Only the new version has a view of the table.
        Check::Rows(
            V::Base,
            "SELECT schemaname FROM pg_views WHERE viewname = 'users'",
            &["public_02_create_table"],
        ),
        Check::Ok(V::New, "INSERT INTO users (name) VALUES ('Alice')"),
        Check::Rows(V::New, "SELECT id, name FROM users", &["1|Alice"]),
        Check::Fails(
            V::New,
            "INSERT INTO users (name) VALUES ('Alice')",
            SqlState::UNIQUE_VIOLATION,
        ),
        // pgroll's default: NOT NULL unless nullable: true.
        Check::Fails(
            V::New,
            "INSERT INTO users (id) VALUES (7)",
            SqlState::NOT_NULL_VIOLATION,
        ),
        Check::Rows(
            V::Base,
            "SELECT conname FROM pg_constraint WHERE conrelid = 'users'::regclass AND contype <> 'n' ORDER BY 1",
            &["users_name_key", "users_pkey"],
        ),
    ];
    let after_complete = vec![
        // The row inserted after the second start is still there; the old version is now this
        // one, and the previous version's schema is gone.
        Check::Rows(V::Old, "SELECT id, name FROM users", &["1|Alice"]),
        Check::Ok(V::New, "INSERT INTO users (name) VALUES ('Bob')"),
        // (The failed duplicate insert after start used up id 2.)
        Check::Rows(
            V::New,
            "SELECT id, name FROM users ORDER BY id",
            &["1|Alice", "3|Bob"],
        ),
        Check::Fails(
            V::New,
            "INSERT INTO users (name) VALUES ('Bob')",
            SqlState::UNIQUE_VIOLATION,
        ),
        Check::Rows(
            V::Base,
            "SELECT schemaname FROM pg_views WHERE viewname = 'users'",
            &["public_02_create_table"],
        ),
    ];
    run(Case {
        setup: vec![owners()],
        seed: "",
        migration,
        after_start: works,
        after_rollback: vec![
            Check::Fails(V::Base, "SELECT * FROM users", SqlState::UNDEFINED_TABLE),
            Check::Rows(
                V::Base,
                "SELECT count(*) FROM pg_class WHERE relname LIKE 'users%'",
                &["0"],
            ),
        ],
        after_complete,
    })
    .await;
}

#[tokio::test]
async fn every_column_field() {
    let migration = yaml(
        "02_columns",
        r#"operations:
  - create_table:
      name: items
      comment: things we sell
      columns:
        - {name: id, type: bigint, generated: {identity: {sequence_options: START 10 INCREMENT 5}}}
        - {name: code, type: int, pk: true, generated: {identity: {user_specified_values: BY DEFAULT}}}
        - {name: shop, type: text, pk: true, default: "'main'"}
        - {name: name, type: varchar(50), unique: true, comment: "the item's name", check: {name: name_not_empty, constraint: length(name) > 0}}
        - {name: loud, type: text, nullable: true, generated: {expression: upper(name)}}
        - {name: price, type: "numeric(10,2)", default: '1.50', check: {name: price_positive, constraint: CHECK (price > 0), no_inherit: true}}
        - {name: note, type: text, nullable: true}
        - {name: created, type: timestamptz, default: now()}
"#,
    );
    let after_start = vec![
        Check::Rows(
            V::Base,
            "SELECT schemaname FROM pg_views WHERE viewname = 'items'",
            &["public_02_columns"],
        ),
        Check::Ok(V::New, "INSERT INTO items (name) VALUES ('apple'), ('pear')"),
        Check::Rows(
            V::New,
            "SELECT id, code, shop, name, loud, price, note, created IS NOT NULL FROM items ORDER BY id",
            &["10|1|main|apple|APPLE|1.50|NULL|t", "15|2|main|pear|PEAR|1.50|NULL|t"],
        ),
        // BY DEFAULT takes a value; ALWAYS and generated columns refuse one.
        Check::Ok(V::New, "INSERT INTO items (code, name) VALUES (100, 'fig')"),
        Check::Fails(V::New, "INSERT INTO items (id, name) VALUES (1, 'kiwi')", SqlState::GENERATED_ALWAYS),
        Check::Fails(V::New, "INSERT INTO items (loud, name) VALUES ('X', 'kiwi')", SqlState::GENERATED_ALWAYS),
        Check::Fails(V::New, "INSERT INTO items (name) VALUES ('apple')", SqlState::UNIQUE_VIOLATION),
        Check::Fails(V::New, "INSERT INTO items (name) VALUES ('')", SqlState::CHECK_VIOLATION),
        Check::Fails(V::New, "INSERT INTO items (name, price) VALUES ('plum', 0)", SqlState::CHECK_VIOLATION),
        Check::Fails(V::New, "INSERT INTO items (name, shop) VALUES ('plum', NULL)", SqlState::NOT_NULL_VIOLATION),
        Check::Fails(V::New, "INSERT INTO items (name, created) VALUES ('plum', NULL)", SqlState::NOT_NULL_VIOLATION),
        Check::Ok(V::New, "INSERT INTO items (name, note) VALUES ('plum', NULL)"),
        Check::Rows(
            V::Base,
            "SELECT obj_description('items'::regclass, 'pg_class'), col_description('items'::regclass, 4)",
            &["things we sell|the item's name"],
        ),
        Check::Rows(
            V::Base,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'price_positive'",
            &["CHECK ((price > (0)::numeric)) NO INHERIT"],
        ),
        Check::Rows(
            V::Base,
            "SELECT attname, attidentity, attgenerated, attnotnull FROM pg_attribute
              WHERE attrelid = 'items'::regclass AND attnum > 0 ORDER BY attnum",
            &[
                "id|a||t",
                "code|d||t",
                "shop|||t",
                "name|||t",
                "loud||s|f",
                "price|||t",
                "note|||f",
                "created|||t",
            ],
        ),
        Check::Rows(
            V::Base,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'items'::regclass AND contype = 'p'",
            &["PRIMARY KEY (code, shop)"],
        ),
    ];
    let after_complete = vec![
        Check::Ok(V::New, "INSERT INTO items (name) VALUES ('grape')"),
        Check::Rows(V::New, "SELECT count(*) FROM items", &["5"]),
        Check::Rows(
            V::Old,
            "SELECT loud FROM items WHERE name = 'grape'",
            &["GRAPE"],
        ),
    ];
    run(Case {
        setup: vec![owners()],
        seed: "",
        migration,
        after_start,
        after_rollback: vec![Check::Fails(
            V::Base,
            "SELECT * FROM items",
            SqlState::UNDEFINED_TABLE,
        )],
        after_complete,
    })
    .await;
}

#[tokio::test]
async fn foreign_keys() {
    let migration = yaml(
        "02_pets",
        r#"operations:
  - create_table:
      name: pets
      columns:
        - {name: id, type: int, pk: true}
        - {name: owner_id, type: int, nullable: true, references: {name: fk_owner, table: owners, column: id, on_delete: CASCADE, on_update: CASCADE}}
        - {name: city, type: text, default: "'chicago'"}
        - {name: home_id, type: int, nullable: true, default: '3'}
        - {name: parent, type: int, nullable: true, references: {name: fk_parent, table: pets, column: id, on_delete: SET NULL, match_type: FULL, deferrable: true, initially_deferred: true}}
      constraints:
        - name: fk_home
          type: foreign_key
          columns: [home_id, city]
          deferrable: true
          references:
            table: owners
            columns: [id, city]
            on_delete: SET DEFAULT
            on_delete_set_columns: [home_id, city]
            on_update: RESTRICT
            match_type: SIMPLE
"#,
    );
    let major = common::server_major().await;
    if major < 15 {
        // Column lists in ON DELETE SET DEFAULT came with PostgreSQL 15: a clear error naming
        // the field, before any DDL.
        refused_on_this_server(
            vec![owners()],
            migration,
            &[
                "02_pets.yaml",
                "on_delete_set_columns",
                "PostgreSQL 15 or later",
            ],
        )
        .await;
        return;
    }
    // PostgreSQL 18 reports a RESTRICT violation as restrict_violation, before as
    // foreign_key_violation.
    let restrict_violation = if major >= 18 {
        SqlState::RESTRICT_VIOLATION
    } else {
        SqlState::FOREIGN_KEY_VIOLATION
    };
    let after_start = vec![
        Check::Ok(
            V::New,
            "INSERT INTO pets (id, owner_id, home_id, city) VALUES (1, 1, 1, 'paris'); INSERT INTO pets (id, owner_id) VALUES (2, 2)",
        ),
        Check::Fails(V::New, "INSERT INTO pets (id, owner_id) VALUES (3, 99)", SqlState::FOREIGN_KEY_VIOLATION),
        Check::Fails(V::New, "INSERT INTO pets (id, home_id, city) VALUES (3, 1, 'rome')", SqlState::FOREIGN_KEY_VIOLATION),
        // The self-reference is deferred to commit.
        Check::Ok(
            V::New,
            "BEGIN; INSERT INTO pets (id, parent) VALUES (4, 5); INSERT INTO pets (id) VALUES (5); COMMIT",
        ),
        Check::Fails(V::New, "INSERT INTO pets (id, parent) VALUES (6, 99)", SqlState::FOREIGN_KEY_VIOLATION),
        // ON DELETE SET DEFAULT (home_id, city) on owner 1, CASCADE on owner 2; both versions
        // write the referenced table.
        Check::Ok(V::Old, "UPDATE owners SET id = 20 WHERE id = 2"),
        Check::Rows(V::New, "SELECT owner_id FROM pets WHERE id = 2", &["20"]),
        Check::Ok(V::Base, "UPDATE pets SET owner_id = NULL WHERE id = 1"),
        Check::Ok(V::Old, "DELETE FROM owners WHERE id = 1"),
        Check::Ok(V::Old, "DELETE FROM owners WHERE id = 20"),
        Check::Rows(
            V::New,
            "SELECT id, owner_id, home_id, city FROM pets ORDER BY id",
            &["1|NULL|3|chicago", "4|NULL|3|chicago", "5|NULL|3|chicago"],
        ),
        // Referenced rows are protected by RESTRICT on update.
        Check::Fails(
            V::Old,
            "UPDATE owners SET city = 'x' WHERE id = 3",
            restrict_violation,
        ),
        Check::Rows(
            V::Base,
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
              WHERE conrelid = 'pets'::regclass AND contype = 'f' ORDER BY 1",
            &[
                "fk_home|FOREIGN KEY (home_id, city) REFERENCES owners(id, city) ON UPDATE RESTRICT ON DELETE SET DEFAULT (home_id, city) DEFERRABLE",
                "fk_owner|FOREIGN KEY (owner_id) REFERENCES owners(id) ON UPDATE CASCADE ON DELETE CASCADE",
                "fk_parent|FOREIGN KEY (parent) REFERENCES pets(id) MATCH FULL ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED",
            ],
        ),
        // Restore the owners the checks changed (the second start runs these again).
        Check::Ok(V::Base, "TRUNCATE pets"),
        Check::Ok(
            V::Base,
            "DELETE FROM owners; INSERT INTO owners VALUES (1, 'paris'), (2, 'rome'), (3, 'chicago')",
        ),
    ];
    let after_complete = vec![
        Check::Ok(V::New, "INSERT INTO pets (id, owner_id) VALUES (1, 1)"),
        Check::Ok(V::New, "DELETE FROM owners WHERE id = 1"),
        Check::Rows(V::New, "SELECT count(*) FROM pets", &["0"]),
    ];
    run(Case {
        setup: vec![owners()],
        seed: SEED_OWNERS,
        migration,
        after_start,
        after_rollback: vec![
            Check::Fails(V::Base, "SELECT * FROM pets", SqlState::UNDEFINED_TABLE),
            // Nothing is left on the referenced table.
            Check::Rows(
                V::Base,
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'owners'::regclass",
                &["0"],
            ),
        ],
        after_complete,
    })
    .await;
}

#[tokio::test]
async fn table_constraints() {
    let migration = yaml(
        "02_bookings",
        r#"operations:
  - create_table:
      name: bookings
      columns:
        - {name: id, type: int}
        - {name: room, type: int}
        - {name: during, type: tsrange}
        - {name: guest, type: text, nullable: true}
        - {name: tag, type: text, nullable: true}
      constraints:
        - {name: bookings_pk, type: primary_key, columns: [id, room], index_parameters: {include_columns: [guest], storage_parameters: fillfactor=70, tablespace: pg_default}}
        - {name: one_guest_tag, type: unique, columns: [guest, tag], nulls_not_distinct: true, deferrable: true, initially_deferred: true}
        - {name: valid_range, type: check, check: NOT isempty(during), no_inherit: true}
        - name: no_overlap
          type: exclude
          exclude: {index_method: gist, elements: "room WITH =, during WITH &&", predicate: guest IS NOT NULL}
          index_parameters: {storage_parameters: fillfactor=80}
"#,
    );
    if common::server_major().await < 15 {
        refused_on_this_server(
            vec![owners()],
            migration,
            &[
                "02_bookings.yaml",
                "nulls_not_distinct",
                "PostgreSQL 15 or later",
            ],
        )
        .await;
        return;
    }
    let after_start = vec![
        Check::Ok(
            V::New,
            "INSERT INTO bookings VALUES (1, 1, '[2024-01-01,2024-01-05)', 'ann', NULL)",
        ),
        Check::Fails(
            V::New,
            "INSERT INTO bookings VALUES (2, 1, '[2024-01-03,2024-01-04)', 'bob', NULL)",
            SqlState::EXCLUSION_VIOLATION,
        ),
        // Outside the predicate, overlaps are fine.
        Check::Ok(
            V::New,
            "INSERT INTO bookings VALUES (3, 1, '[2024-01-03,2024-01-04)', NULL, NULL)",
        ),
        Check::Fails(
            V::New,
            "INSERT INTO bookings VALUES (1, 1, '[2025-01-01,2025-01-02)', NULL, NULL)",
            SqlState::UNIQUE_VIOLATION,
        ),
        // NULLS NOT DISTINCT, deferred to commit.
        Check::Fails(
            V::New,
            "INSERT INTO bookings VALUES (4, 2, '[2024-01-01,2024-01-05)', 'ann', NULL)",
            SqlState::UNIQUE_VIOLATION,
        ),
        Check::Ok(
            V::New,
            "BEGIN; INSERT INTO bookings VALUES (4, 2, '[2024-01-01,2024-01-05)', 'ann', NULL);
             UPDATE bookings SET tag = 'x' WHERE id = 4; COMMIT",
        ),
        Check::Fails(V::New, "INSERT INTO bookings VALUES (5, 3, 'empty', NULL, NULL)", SqlState::CHECK_VIOLATION),
        Check::Rows(
            V::Base,
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
              WHERE conrelid = 'bookings'::regclass AND contype <> 'n' ORDER BY 1",
            &[
                "bookings_pk|PRIMARY KEY (id, room) INCLUDE (guest)",
                "no_overlap|EXCLUDE USING gist (room WITH =, during WITH &&) WITH (fillfactor='80') WHERE ((guest IS NOT NULL))",
                "one_guest_tag|UNIQUE NULLS NOT DISTINCT (guest, tag) DEFERRABLE INITIALLY DEFERRED",
                "valid_range|CHECK ((NOT isempty(during))) NO INHERIT",
            ],
        ),
        Check::Rows(
            V::Base,
            "SELECT reloptions FROM pg_class WHERE relname = 'bookings_pk'",
            &["{fillfactor=70}"],
        ),
        Check::Ok(V::Base, "TRUNCATE bookings"),
    ];
    run(Case {
        setup: vec![owners()],
        seed: "CREATE EXTENSION btree_gist",
        migration,
        after_start,
        after_rollback: vec![Check::Fails(
            V::Base,
            "SELECT * FROM bookings",
            SqlState::UNDEFINED_TABLE,
        )],
        after_complete: vec![
            Check::Ok(
                V::New,
                "INSERT INTO bookings VALUES (1, 1, '[2024-01-01,2024-01-05)', 'ann', NULL)",
            ),
            Check::Fails(
                V::New,
                "INSERT INTO bookings VALUES (2, 1, '[2024-01-03,2024-01-04)', 'bob', NULL)",
                SqlState::EXCLUSION_VIOLATION,
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn several_tables_in_one_migration() {
    // Tables created in one migration reference each other; later operations see earlier ones.
    let migration = yaml(
        "02_many",
        "operations:
  - create_table:
      name: a
      columns:
        - {name: id, type: int, pk: true}
  - create_table:
      name: b
      columns:
        - {name: id, type: int, pk: true}
        - {name: a_id, type: int, references: {name: b_a, table: a, column: id}}
  - set_replica_identity: {table: b, identity: {type: full}}
",
    );
    let after_start = vec![
        Check::Ok(
            V::New,
            "INSERT INTO a VALUES (1); INSERT INTO b VALUES (1, 1)",
        ),
        Check::Fails(
            V::New,
            "INSERT INTO b VALUES (2, 2)",
            SqlState::FOREIGN_KEY_VIOLATION,
        ),
        Check::Rows(
            V::Base,
            "SELECT relreplident FROM pg_class WHERE relname = 'b' AND relkind = 'r'",
            &["f"],
        ),
        Check::Ok(V::Base, "TRUNCATE a, b"),
    ];
    run(Case {
        setup: vec![owners()],
        seed: "",
        migration,
        after_start: after_start.clone(),
        after_rollback: vec![
            Check::Fails(V::Base, "SELECT * FROM a", SqlState::UNDEFINED_TABLE),
            Check::Fails(V::Base, "SELECT * FROM b", SqlState::UNDEFINED_TABLE),
        ],
        after_complete: after_start,
    })
    .await;
}

#[tokio::test]
async fn a_failing_start_is_rolled_back() {
    let env = setup(vec![owners()], SEED_OWNERS).await;
    let before = dump(&env);
    let m = env.migrator().await;
    // Valid for the planner and its pre-checks (a type that does not exist is now refused
    // before any DDL: tests/hostile.rs); PostgreSQL refuses the check when the table is made.
    let bad = yaml(
        "02_bad",
        "operations:
  - create_table:
      name: good
      columns: [{name: id, type: int}]
  - create_table:
      name: bad
      columns: [{name: id, type: int, check: {name: bad_id, constraint: \"id > 'abc'\"}}]
",
    );
    let err = m
        .start(&bad, false)
        .await
        .expect_err("bad check")
        .to_string();
    assert!(err.contains("rolled back"), "{err}");
    assert_eq!(dump(&env), before);
    assert!(m.status().await.expect("status").active.is_none());
}

#[tokio::test]
async fn validation_errors_come_before_any_ddl() {
    let env = setup(vec![owners()], SEED_OWNERS).await;
    let before = dump(&env);
    let m = env.migrator().await;
    let p = "operations[0].create_table.";
    let cases: &[(&str, &str)] = &[
        ("name: owners, columns: [{name: id, type: int}]", "name: table \"owners\" already exists"),
        (
            "name: t, columns: [{name: id, type: int}, {name: id, type: text}]",
            "columns[1].name: duplicate column \"id\" (also columns[0])",
        ),
        (
            "name: t, columns: [{name: id, type: int, pk: true, nullable: true}]",
            "columns[0].nullable: column \"id\" is part of the primary key and cannot be nullable",
        ),
        (
            "name: t, columns: [{name: o, type: int, references: {name: f, table: nope, column: id}}]",
            "columns[0].references.table: referenced table \"nope\" does not exist",
        ),
        (
            "name: t, columns: [{name: o, type: int, references: {name: f, table: owners, column: nope}}]",
            "columns[0].references.column: column \"nope\" does not exist in table \"owners\"",
        ),
        (
            "name: t, columns: [{name: o, type: text, references: {name: f, table: owners, column: city}}]",
            "columns[0].references.column: no primary key or unique constraint of table \"owners\" covers exactly (\"city\")",
        ),
        (
            "name: t, columns: [{name: id, type: int, pk: true}], constraints: [{name: p, type: primary_key, columns: [id]}]",
            "constraints[0].type: the primary key of table \"t\" is already set by `pk: true` on its columns",
        ),
        (
            "name: t, columns: [{name: id, type: int}], constraints: [{name: u, type: unique}]",
            "constraints[0].columns: a unique constraint needs at least one column",
        ),
        (
            "name: t, columns: [{name: id, type: int}], constraints: [{name: c, type: check}]",
            "constraints[0].check: a check constraint needs a check expression",
        ),
        (
            "name: t, columns: [{name: id, type: int}], constraints: [{name: c, type: check, check: id > 0, deferrable: true}]",
            "constraints[0].deferrable: check constraint \"c\" cannot be deferrable",
        ),
        (
            "name: t, columns: [{name: id, type: int}], constraints: [{name: f, type: foreign_key, columns: [id], references: {table: owners, columns: [id], on_delete_set_columns: [id]}}]",
            "constraints[0].references.on_delete_set_columns: only applies with on_delete SET NULL or SET DEFAULT",
        ),
        (
            "name: t, columns: [{name: id, type: int}], constraints: [{name: f, type: foreign_key, columns: [id], references: {table: owners, columns: [id, city]}}]",
            "constraints[0].references.columns: 1 referencing column(s) but 2 referenced column(s)",
        ),
        (
            "name: t, columns: [{name: id, type: int}], constraints: [{name: owners_pkey, type: unique, columns: [id]}]",
            "constraints[0].name: relation \"owners_pkey\" already exists in schema \"public\" (an index of table \"owners\")",
        ),
        (
            "name: t, columns: [{name: id, type: int}], constraints: [{name: x, type: exclude, exclude: {index_method: gist}}]",
            "constraints[0].exclude.elements: an exclude constraint needs elements",
        ),
    ];
    for (body, expected) in cases {
        let mig = yaml(
            "02_bad",
            &format!("operations:\n  - create_table: {{{body}}}\n"),
        );
        let err = m.start(&mig, false).await.expect_err(body).to_string();
        assert!(err.contains(&format!("{p}{expected}")), "{body}: got {err}");
    }
    assert_eq!(dump(&env), before);
    assert!(m.status().await.expect("status").active.is_none());
}

/// Runs each statement of `step` in a transaction that is rolled back, and returns the strongest
/// lock `pg_locks` shows on the step's declared table.
async fn traced_lock(env: &Env, step: &pgbaton::step::Step) -> Option<String> {
    let client = common::connect(&env.db.url).await;
    let table = step.table.as_ref().expect("a table").to_string();
    let mut script = String::from("BEGIN;\n");
    for sql in step.statements() {
        script.push_str(&sql);
        script.push_str(";\n");
    }
    client.batch_execute(&script).await.expect("step runs");
    let modes: Vec<String> = client
        .query(
            "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND relation = to_regclass($1)",
            &[&table],
        )
        .await
        .expect("pg_locks")
        .iter()
        .map(|r| r.get(0))
        .collect();
    client.batch_execute("ROLLBACK").await.expect("rollback");
    [
        pgbaton::step::LockLevel::AccessExclusive,
        pgbaton::step::LockLevel::ShareRowExclusive,
        pgbaton::step::LockLevel::ShareUpdateExclusive,
        pgbaton::step::LockLevel::RowExclusive,
        pgbaton::step::LockLevel::AccessShare,
    ]
    .into_iter()
    .filter_map(|l| l.pg_locks_mode())
    .find(|m| modes.iter().any(|x| x == m))
    .map(str::to_string)
}

#[tokio::test]
async fn declared_locks_match_pg_locks() {
    let env = setup(vec![owners()], SEED_OWNERS).await;
    let m = env.migrator().await;
    let with_fk = yaml(
        "02_fk",
        "operations:
  - create_table:
      name: pets
      columns:
        - {name: id, type: int, pk: true}
        - {name: owner, type: int, references: {name: fk, table: owners, column: id}}
",
    );
    let plan = m.plan(&with_fk).await.expect("plan");
    let create = &plan.start[0];
    assert_eq!(create.lock, pgbaton::step::LockLevel::ShareRowExclusive);
    assert_eq!(
        traced_lock(&env, create).await.as_deref(),
        create.lock.pg_locks_mode()
    );
    // Dropping it again (rollback) takes ACCESS EXCLUSIVE on the referenced table.
    env.sql(&create.statements().join(";\n")).await;
    let drop = plan
        .rollback
        .iter()
        .find(|s| s.title.starts_with("drop table"))
        .expect("drop step");
    assert_eq!(
        drop.table.as_ref().map(|t| t.to_string()).as_deref(),
        Some("\"public\".\"owners\"")
    );
    assert_eq!(
        traced_lock(&env, drop).await.as_deref(),
        drop.lock.pg_locks_mode()
    );
}
