//! `alter_column` on keys: a primary key widened under a referencing foreign key, an identity
//! primary key that keeps its identity and position, and a table without any key (filled by
//! ctid), each through the whole lifecycle. (The other sub-forms: `op_alter_column.rs`.)

mod common;

use common::lifecycle::*;

#[tokio::test]
async fn primary_key_int_to_bigint_with_a_referencing_foreign_key() {
    let migration = yaml(
        "02_widen_pk",
        "operations:
  - alter_column:
      table: people
      column: id
      type: bigint
      up: CAST(id AS bigint)
      down: SELECT CASE WHEN id < 2147483647 THEN CAST(id AS int) ELSE 0 END
",
    );
    let pk = "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'people'::regclass AND contype = 'p'";
    let fk = "SELECT conname, convalidated, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'pets'::regclass AND contype = 'f'";
    run(Case {
        setup: vec![],
        seed: "CREATE TABLE people (id serial PRIMARY KEY, name text);
               CREATE TABLE pets (id serial PRIMARY KEY, owner int REFERENCES people (id) ON DELETE CASCADE, name text);
               INSERT INTO people (name) VALUES ('alice'), ('bob');
               INSERT INTO pets (owner, name) VALUES (1, 'rex'), (2, 'tom');",
        migration,
        after_start: vec![
            Check::Rows(V::Base, pk, &["people_pkey|PRIMARY KEY (id)"]),
            Check::Rows(V::New, "SELECT pg_typeof(id)::text FROM people LIMIT 1", &["bigint"]),
            Check::Fails(V::Old, "INSERT INTO people (id, name) VALUES (31474836471, 'big')", SqlState::NUMERIC_VALUE_OUT_OF_RANGE),
            Check::Ok(V::New, "DELETE FROM people WHERE id = 31474836471; INSERT INTO people (id, name) VALUES (31474836471, 'big')"),
            Check::Rows(V::Old, "SELECT id FROM people WHERE name = 'big'", &["0"]),
            Check::Ok(V::New, "DELETE FROM people WHERE id = 31474836471"),
            // New rows draw from the serial sequence in both versions.
            Check::Ok(V::New, "DELETE FROM people WHERE name = 'carl'; INSERT INTO people (name) VALUES ('carl')"),
            Check::Rows(V::Old, "SELECT count(*) FROM people WHERE name = 'carl' AND id > 2", &["1"]),
        ],
        after_rollback: vec![Check::Rows(V::Base, pk, &["people_pkey|PRIMARY KEY (id)"]), Check::Rows(V::Base, fk, &["pets_owner_fkey|t|FOREIGN KEY (owner) REFERENCES people(id) ON DELETE CASCADE"])],
        after_complete: vec![
            Check::Rows(V::Base, pk, &["people_pkey|PRIMARY KEY (id)"]),
            Check::Rows(V::Base, "SELECT format_type(atttypid, atttypmod), attnotnull FROM pg_attribute WHERE attrelid = 'people'::regclass AND attname = 'id'", &["bigint|t"]),
            Check::Rows(V::Base, fk, &["pets_owner_fkey|t|FOREIGN KEY (owner) REFERENCES people(id) ON DELETE CASCADE"]),
            // The sequence stayed (owned by the new column) and widened with it.
            Check::Rows(V::Base, "SELECT pg_get_serial_sequence('people', 'id'), (SELECT data_type FROM information_schema.sequences WHERE sequence_name = 'people_id_seq')", &["public.people_id_seq|bigint"]),
            Check::Ok(V::New, "INSERT INTO people (name) VALUES ('dora')"),
            Check::Ok(V::New, "INSERT INTO people (id, name) VALUES (31474836472, 'huge')"),
            Check::Fails(V::New, "INSERT INTO pets (owner, name) VALUES (77, 'ghost')", SqlState::FOREIGN_KEY_VIOLATION),
            Check::Ok(V::New, "DELETE FROM people WHERE id = 1"),
            Check::Rows(V::New, "SELECT name FROM pets ORDER BY id", &["tom"]),
            Check::Rows(V::Base, "SELECT count(*) FROM pg_class WHERE relname LIKE '\\_pgbaton\\_%'", &["0"]),
        ],
    })
    .await;
}

#[tokio::test]
async fn identity_primary_key_keeps_its_identity_and_position() {
    let migration = yaml(
        "02_widen_identity",
        "operations:
  - alter_column:
      table: orders
      column: id
      type: bigint
      up: CAST(id AS bigint)
      down: CAST(id AS int)
",
    );
    run(Case {
        setup: vec![],
        seed: "CREATE TABLE orders (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, item text);
               INSERT INTO orders (item) VALUES ('a'), ('b'), ('c');",
        migration,
        after_start: vec![
            Check::Ok(V::New, "DELETE FROM orders WHERE item = 'new'; INSERT INTO orders (item) VALUES ('new')"),
            Check::Ok(V::Old, "DELETE FROM orders WHERE item = 'old'; INSERT INTO orders (item) VALUES ('old')"),
            Check::Rows(V::New, "SELECT count(DISTINCT id) FROM orders", &["5"]),
            Check::Rows(V::Old, "SELECT count(*) FROM orders o JOIN orders p ON o.id = p.id", &["5"]),
        ],
        after_rollback: vec![Check::Rows(V::Base, "SELECT attidentity FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'id'", &["a"])],
        after_complete: vec![
            Check::Rows(V::Base, "SELECT attidentity, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'id'", &["a|bigint"]),
            Check::Rows(V::Base, "SELECT pg_get_serial_sequence('orders', 'id')", &["public.orders_id_seq"]),
            // The identity continues after the highest value handed out.
            Check::Ok(V::New, "INSERT INTO orders (item) VALUES ('after')"),
            Check::Rows(V::New, "SELECT (SELECT id FROM orders WHERE item = 'after') > (SELECT max(id) FROM orders WHERE item <> 'after')", &["t"]),
            Check::Fails(V::New, "INSERT INTO orders (id, item) VALUES (1000, 'x')", SqlState::GENERATED_ALWAYS),
            Check::Rows(V::Base, "SELECT conname FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype <> 'n'", &["orders_pkey"]),
        ],
    })
    .await;
}

#[tokio::test]
async fn a_table_without_any_key_is_backfilled_by_ctid() {
    let migration = yaml(
        "02_keyless",
        "operations:
  - alter_column:
      table: logs
      column: level
      type: integer
      up: CASE level WHEN 'info' THEN 1 WHEN 'warn' THEN 2 ELSE 3 END
      down: CASE level WHEN 1 THEN 'info' WHEN 2 THEN 'warn' ELSE 'error' END
",
    );
    let env = Env::new().await;
    env.sql(
        "CREATE TABLE logs (msg text, level text);
         INSERT INTO logs SELECT 'm' || g, (ARRAY['info', 'warn', 'error'])[1 + g % 3] FROM generate_series(1, 5000) g;",
    )
    .await;
    let plan = env.migrator().await.plan(&migration).await.expect("plan");
    let key = plan.start.iter().find_map(|s| match &s.action {
        pgbaton::step::Action::Backfill(spec) => Some(spec.key.clone()),
        _ => None,
    });
    assert_eq!(key, Some(pgbaton::step::BackfillKey::Ctid));
    run_in(
        &env,
        Case {
            setup: vec![],
            seed: "",
            migration,
            after_start: vec![
                Check::Rows(V::New, "SELECT level, count(*) FROM logs WHERE msg <> 'new' AND msg <> 'old' GROUP BY level ORDER BY level", &["1|1666", "2|1667", "3|1667"]),
                Check::Ok(V::Old, "DELETE FROM logs WHERE msg = 'old'; INSERT INTO logs VALUES ('old', 'warn')"),
                Check::Rows(V::New, "SELECT level FROM logs WHERE msg = 'old'", &["2"]),
                Check::Ok(V::New, "DELETE FROM logs WHERE msg = 'new'; INSERT INTO logs VALUES ('new', 1)"),
                Check::Rows(V::Old, "SELECT level FROM logs WHERE msg = 'new'", &["info"]),
            ],
            after_rollback: vec![],
            after_complete: vec![
                Check::Rows(V::New, "SELECT level, count(*) FROM logs GROUP BY level ORDER BY level", &["1|1667", "2|1668", "3|1667"]),
            ],
        },
    )
    .await;
}
