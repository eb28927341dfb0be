//! `add_column` through the whole lifecycle: the column is created under a temporary name, the
//! new version sees it under its own, the old version never does; existing rows and old-version
//! writes are filled from `up` (or a volatile default); NOT NULL, check and foreign key stay
//! `NOT VALID` until complete, the unique index is built concurrently; rollback restores the
//! schema exactly; complete leaves the column with its name and constraints and nothing else.
//!
//! The after-start checks run twice (after the first and the second start), so each list begins
//! by undoing what the previous run wrote.

mod common;

use common::fixtures::{setup_users, USERS_SEED};
use common::lifecycle::*;

/// The physical columns of `users`, in order, with NOT NULL.
const USERS_COLUMNS: &str = "SELECT attname, attnotnull FROM pg_attribute
    WHERE attrelid = 'users'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum";
// `contype <> 'n'`: PostgreSQL 18 lists NOT NULL constraints too (their names are checked by the
// lifecycle harness: no `_pgbaton` name survives complete).
const USERS_CONSTRAINTS: &str = "SELECT conname, convalidated FROM pg_constraint
    WHERE conrelid = 'users'::regclass AND contype <> 'n' ORDER BY conname";
const USERS_TRIGGERS: &str =
    "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'users'::regclass AND NOT tgisinternal";

#[tokio::test]
async fn not_null_with_up_on_a_table_with_rows() {
    let migration = yaml(
        "02_code",
        "operations:
  - add_column:
      table: users
      up: upper(name)
      column:
        name: code
        type: text
        comment: the user's code
",
    );
    let after_start = vec![
        Check::Ok(
            V::Base,
            "DELETE FROM users WHERE id >= 10; UPDATE users SET name = 'alice' WHERE id = 1",
        ),
        // Existing rows were filled from `up`.
        Check::Rows(
            V::New,
            "SELECT id, name, code FROM users ORDER BY id",
            &["1|alice|ALICE", "2|bob|BOB"],
        ),
        // The old version does not see the column...
        Check::Fails(V::Old, "SELECT code FROM users", SqlState::UNDEFINED_COLUMN),
        Check::Rows(
            V::Old,
            "SELECT id, name FROM users ORDER BY id",
            &["1|alice", "2|bob"],
        ),
        // ...and its inserts and updates get it from the trigger.
        Check::Ok(V::Old, "INSERT INTO users (id, name) VALUES (10, 'carol')"),
        Check::Rows(V::New, "SELECT code FROM users WHERE id = 10", &["CAROL"]),
        Check::Ok(V::Old, "UPDATE users SET name = 'alicia' WHERE id = 1"),
        Check::Rows(V::New, "SELECT code FROM users WHERE id = 1", &["ALICIA"]),
        // The new version writes the column itself, and must: NOT NULL (a NOT VALID check).
        Check::Ok(
            V::New,
            "INSERT INTO users (id, name, code) VALUES (11, 'dave', 'D')",
        ),
        Check::Rows(V::Old, "SELECT name FROM users WHERE id = 11", &["dave"]),
        Check::Fails(
            V::New,
            "INSERT INTO users (id, name) VALUES (12, 'eve')",
            SqlState::CHECK_VIOLATION,
        ),
        // Physically: a temporary column, a NOT VALID check, the dual-write trigger.
        Check::Rows(
            V::Base,
            USERS_COLUMNS,
            &[
                "id|t",
                "name|f",
                "email|f",
                "role|f",
                "_pgbaton_new_code|f",
                "_pgbaton_touched|f",
            ],
        ),
        Check::Rows(
            V::Base,
            USERS_CONSTRAINTS,
            &[
                "_pgbaton_nn_code|f",
                "email_at|t",
                "users_email_key|t",
                "users_pkey|t",
            ],
        ),
        // The dual-write trigger, and the statement-level one counting writes per version.
        Check::Rows(V::Base, USERS_TRIGGERS, &["2"]),
        Check::Rows(
            V::Base,
            "SELECT col_description(attrelid, attnum) FROM pg_attribute
              WHERE attrelid = 'users'::regclass AND attname = '_pgbaton_new_code'",
            &["the user's code"],
        ),
    ];
    run(Case {
        setup: vec![setup_users()],
        seed: USERS_SEED,
        migration,
        after_start,
        after_rollback: vec![
            Check::Rows(
                V::Base,
                USERS_COLUMNS,
                &["id|t", "name|f", "email|f", "role|f"],
            ),
            Check::Rows(V::Base, USERS_TRIGGERS, &["0"]),
            Check::Rows(
                V::Old,
                "SELECT id, name FROM users ORDER BY id",
                &["1|alicia", "2|bob", "10|carol", "11|dave"],
            ),
        ],
        after_complete: vec![
            Check::Rows(
                V::New,
                "SELECT id, name, code FROM users ORDER BY id",
                &[
                    "1|alicia|ALICIA",
                    "2|bob|BOB",
                    "10|carol|CAROL",
                    "11|dave|D",
                ],
            ),
            // The right name, NOT NULL, no leftover check, trigger or marker.
            Check::Rows(
                V::Base,
                USERS_COLUMNS,
                &["id|t", "name|f", "email|f", "role|f", "code|t"],
            ),
            Check::Rows(
                V::Base,
                USERS_CONSTRAINTS,
                &["email_at|t", "users_email_key|t", "users_pkey|t"],
            ),
            Check::Rows(V::Base, USERS_TRIGGERS, &["0"]),
            Check::Rows(
                V::Base,
                "SELECT count(*) FROM pg_proc WHERE proname LIKE '_pgbaton%'",
                &["0"],
            ),
            Check::Rows(
                V::Base,
                "SELECT col_description(attrelid, attnum) FROM pg_attribute
                  WHERE attrelid = 'users'::regclass AND attname = 'code'",
                &["the user's code"],
            ),
            Check::Fails(
                V::New,
                "INSERT INTO users (id, name) VALUES (20, 'x')",
                SqlState::NOT_NULL_VIOLATION,
            ),
            Check::Ok(
                V::New,
                "INSERT INTO users (id, name, code) VALUES (20, 'x', 'X')",
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn nullable_with_constant_default_is_catalog_only() {
    let migration = yaml(
        "02_age",
        "operations:
  - add_column:
      table: users
      column: {name: age, type: integer, nullable: true, default: \"18\"}
",
    );
    let after_start = vec![
        Check::Ok(V::Base, "DELETE FROM users WHERE id >= 10"),
        // A fast default: existing rows read it without a rewrite (atthasmissing).
        Check::Rows(V::New, "SELECT id, age FROM users ORDER BY id", &["1|18", "2|18"]),
        Check::Rows(
            V::Base,
            "SELECT atthasmissing FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = '_pgbaton_new_age'",
            &["t"],
        ),
        // Nothing to fill: no trigger.
        Check::Rows(V::Base, USERS_TRIGGERS, &["0"]),
        Check::Ok(V::Old, "INSERT INTO users (id, name) VALUES (10, 'carol')"),
        Check::Ok(V::New, "INSERT INTO users (id, name) VALUES (11, 'dave')"),
        Check::Ok(V::New, "INSERT INTO users (id, name, age) VALUES (12, 'eve', NULL)"),
        Check::Rows(
            V::New,
            "SELECT id, age FROM users WHERE id >= 10 ORDER BY id",
            &["10|18", "11|18", "12|NULL"],
        ),
    ];
    run(Case {
        setup: vec![setup_users()],
        seed: USERS_SEED,
        migration,
        after_start,
        after_rollback: vec![Check::Rows(V::Base, USERS_COLUMNS, &["id|t", "name|f", "email|f", "role|f"])],
        after_complete: vec![
            Check::Rows(V::Base, USERS_COLUMNS, &["id|t", "name|f", "email|f", "role|f", "age|f"]),
            Check::Rows(
                V::Base,
                "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'users'::regclass",
                &["18"],
            ),
            Check::Rows(
                V::New,
                "SELECT id, age FROM users ORDER BY id",
                &["1|18", "2|18", "10|18", "11|18", "12|NULL"],
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn not_null_with_constant_default_is_enforced_at_once() {
    let migration = yaml(
        "02_age",
        "operations:
  - add_column:
      table: users
      column: {name: age, type: integer, default: \"0\"}
",
    );
    let after_start = vec![
        Check::Ok(V::Base, "DELETE FROM users WHERE id >= 10"),
        Check::Ok(V::Old, "INSERT INTO users (id, name) VALUES (10, 'carol')"),
        Check::Ok(
            V::New,
            "INSERT INTO users (id, name, age) VALUES (11, 'dave', 21)",
        ),
        Check::Fails(
            V::New,
            "INSERT INTO users (id, name, age) VALUES (12, 'eve', NULL)",
            SqlState::NOT_NULL_VIOLATION,
        ),
        Check::Rows(
            V::New,
            "SELECT id, age FROM users ORDER BY id",
            &["1|0", "2|0", "10|0", "11|21"],
        ),
        Check::Rows(
            V::Base,
            USERS_COLUMNS,
            &["id|t", "name|f", "email|f", "role|f", "_pgbaton_new_age|t"],
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
            &["id|t", "name|f", "email|f", "role|f"],
        )],
        after_complete: vec![
            Check::Rows(
                V::Base,
                USERS_COLUMNS,
                &["id|t", "name|f", "email|f", "role|f", "age|t"],
            ),
            Check::Rows(
                V::Base,
                USERS_CONSTRAINTS,
                &["email_at|t", "users_email_key|t", "users_pkey|t"],
            ),
            Check::Ok(V::New, "INSERT INTO users (id, name) VALUES (20, 'x')"),
            Check::Rows(V::New, "SELECT age FROM users WHERE id = 20", &["0"]),
        ],
    })
    .await;
}

/// [`USERS_SEED`] and a volatile function, as in pgroll's tests.
const SEED_ALWAYS_TEN: &str = concat!(
    "CREATE FUNCTION always_ten() RETURNS integer LANGUAGE plpgsql VOLATILE
         AS $$ BEGIN RETURN 10; END $$;\n",
    crate::users_seed!()
);

#[tokio::test]
async fn volatile_default_fills_existing_rows_without_a_rewrite() {
    let migration = yaml(
        "02_score",
        "operations:
  - add_column:
      table: users
      column: {name: score, type: integer, nullable: true, default: always_ten()}
",
    );
    let after_start = vec![
        Check::Ok(V::Base, "DELETE FROM users WHERE id >= 10"),
        Check::Rows(
            V::New,
            "SELECT id, score FROM users ORDER BY id",
            &["1|10", "2|10"],
        ),
        // Added without a default (no rewrite), the default set afterwards.
        Check::Rows(
            V::Base,
            "SELECT atthasmissing, pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a
               JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attrelid = 'users'::regclass AND a.attname = '_pgbaton_new_score'",
            &["f|always_ten()"],
        ),
        Check::Ok(V::Old, "INSERT INTO users (id, name) VALUES (10, 'carol')"),
        Check::Ok(V::New, "INSERT INTO users (id, name) VALUES (11, 'dave')"),
        Check::Ok(
            V::New,
            "INSERT INTO users (id, name, score) VALUES (12, 'eve', NULL)",
        ),
        Check::Ok(
            V::New,
            "INSERT INTO users (id, name, score) VALUES (13, 'fay', 3)",
        ),
        // An old-version update keeps the value the default gave.
        Check::Ok(V::Old, "UPDATE users SET name = 'carla' WHERE id = 10"),
        Check::Rows(
            V::New,
            "SELECT id, score FROM users WHERE id >= 10 ORDER BY id",
            &["10|10", "11|10", "12|NULL", "13|3"],
        ),
    ];
    run(Case {
        setup: vec![setup_users()],
        seed: SEED_ALWAYS_TEN,
        migration,
        after_start,
        after_rollback: vec![Check::Rows(
            V::Base,
            USERS_COLUMNS,
            &["id|t", "name|f", "email|f", "role|f"],
        )],
        after_complete: vec![
            Check::Rows(
                V::Base,
                USERS_COLUMNS,
                &["id|t", "name|f", "email|f", "role|f", "score|f"],
            ),
            Check::Ok(V::New, "INSERT INTO users (id, name) VALUES (20, 'x')"),
            Check::Rows(
                V::New,
                "SELECT id, score FROM users ORDER BY id",
                &["1|10", "2|10", "10|10", "11|10", "12|NULL", "13|3", "20|10"],
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn not_null_volatile_default_with_up() {
    // pgroll's form: `up` equal to the default. The column becomes NOT NULL at complete.
    let migration = yaml(
        "02_score",
        "operations:
  - add_column:
      table: users
      up: always_ten()
      column: {name: score, type: integer, default: always_ten()}
",
    );
    let after_start = vec![
        Check::Ok(V::Base, "DELETE FROM users WHERE id >= 10"),
        Check::Ok(V::Old, "INSERT INTO users (id, name) VALUES (10, 'carol')"),
        Check::Ok(
            V::New,
            "INSERT INTO users (id, name, score) VALUES (11, 'dave', 21)",
        ),
        Check::Fails(
            V::New,
            "INSERT INTO users (id, name, score) VALUES (12, 'eve', NULL)",
            SqlState::CHECK_VIOLATION,
        ),
        Check::Rows(
            V::New,
            "SELECT id, score FROM users ORDER BY id",
            &["1|10", "2|10", "10|10", "11|21"],
        ),
    ];
    run(Case {
        setup: vec![setup_users()],
        seed: SEED_ALWAYS_TEN,
        migration,
        after_start,
        after_rollback: vec![Check::Rows(
            V::Base,
            USERS_COLUMNS,
            &["id|t", "name|f", "email|f", "role|f"],
        )],
        after_complete: vec![
            Check::Rows(
                V::Base,
                USERS_COLUMNS,
                &["id|t", "name|f", "email|f", "role|f", "score|t"],
            ),
            Check::Rows(
                V::Base,
                USERS_CONSTRAINTS,
                &["email_at|t", "users_email_key|t", "users_pkey|t"],
            ),
            Check::Fails(
                V::New,
                "INSERT INTO users (id, name, score) VALUES (20, 'x', NULL)",
                SqlState::NOT_NULL_VIOLATION,
            ),
            Check::Ok(V::New, "INSERT INTO users (id, name) VALUES (21, 'y')"),
            Check::Rows(V::New, "SELECT score FROM users WHERE id = 21", &["10"]),
        ],
    })
    .await;
}

#[tokio::test]
async fn serial_column_on_a_table_with_rows() {
    let migration = yaml(
        "02_counter",
        "operations:
  - add_column:
      table: users
      column: {name: counter, type: bigserial}
",
    );
    let after_start = vec![
        Check::Ok(V::Base, "DELETE FROM users WHERE id >= 10"),
        // Every row got its own number, existing ones from the backfill.
        Check::Rows(
            V::New,
            "SELECT count(DISTINCT counter), count(*) FILTER (WHERE counter IS NULL) FROM users",
            &["2|0"],
        ),
        Check::Ok(V::Old, "INSERT INTO users (id, name) VALUES (10, 'carol')"),
        Check::Ok(V::New, "INSERT INTO users (id, name) VALUES (11, 'dave')"),
        Check::Rows(
            V::New,
            "SELECT count(DISTINCT counter), count(*) FILTER (WHERE counter IS NULL) FROM users",
            &["4|0"],
        ),
        // One sequence value per insert (the trigger keeps what the default gave).
        Check::Rows(
            V::New,
            "SELECT (SELECT counter FROM users WHERE id = 11) - (SELECT counter FROM users WHERE id = 10)",
            &["1"],
        ),
        Check::Rows(
            V::Base,
            "SELECT pg_get_serial_sequence('users', '_pgbaton_new_counter')",
            &["public.users_counter_seq"],
        ),
    ];
    run(Case {
        setup: vec![setup_users()],
        seed: USERS_SEED,
        migration,
        after_start,
        after_rollback: vec![
            Check::Rows(V::Base, USERS_COLUMNS, &["id|t", "name|f", "email|f", "role|f"]),
            Check::Rows(
                V::Base,
                "SELECT count(*) FROM pg_class WHERE relname = 'users_counter_seq'",
                &["0"],
            ),
        ],
        after_complete: vec![
            Check::Rows(V::Base, USERS_COLUMNS, &["id|t", "name|f", "email|f", "role|f", "counter|t"]),
            Check::Rows(
                V::Base,
                "SELECT pg_get_serial_sequence('users', 'counter')",
                &["public.users_counter_seq"],
            ),
            Check::Rows(
                V::Base,
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'counter'",
                &["bigint"],
            ),
            Check::Ok(V::New, "INSERT INTO users (id, name) VALUES (20, 'x')"),
            Check::Rows(
                V::New,
                "SELECT count(DISTINCT counter) FROM users",
                &["5"],
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn unique_check_and_foreign_key() {
    let migration = yaml(
        "02_team",
        "operations:
  - add_column:
      table: users
      up: id
      column:
        name: team_id
        type: integer
        nullable: true
        unique: true
        check: {name: team_positive, constraint: team_id > 0}
        references: {name: team_fk, table: teams, column: id, on_delete: SET NULL}
",
    );
    let after_start =
        vec![
        Check::Ok(V::Base, "DELETE FROM users WHERE id >= 3"),
        Check::Rows(
            V::New,
            "SELECT id, team_id FROM users ORDER BY id",
            &["1|1", "2|2"],
        ),
        // Old-version insert: `up` gives team 3.
        Check::Ok(V::Old, "INSERT INTO users (id, name) VALUES (3, 'carol')"),
        Check::Rows(V::New, "SELECT team_id FROM users WHERE id = 3", &["3"]),
        // Every constraint holds for new writes already.
        Check::Fails(
            V::New,
            "INSERT INTO users (id, name, team_id) VALUES (12, 'x', 99)",
            SqlState::FOREIGN_KEY_VIOLATION,
        ),
        Check::Fails(
            V::New,
            "INSERT INTO users (id, name, team_id) VALUES (12, 'x', 1)",
            SqlState::UNIQUE_VIOLATION,
        ),
        Check::Fails(
            V::New,
            "INSERT INTO users (id, name, team_id) VALUES (12, 'x', -1)",
            SqlState::CHECK_VIOLATION,
        ),
        Check::Fails(
            V::Old,
            "INSERT INTO users (id, name) VALUES (99, 'x')",
            SqlState::FOREIGN_KEY_VIOLATION,
        ),
        Check::Ok(
            V::New,
            "INSERT INTO users (id, name, team_id) VALUES (12, 'x', NULL)",
        ),
        Check::Rows(
            V::Base,
            USERS_CONSTRAINTS,
            &["email_at|t", "team_fk|f", "team_positive|f", "users_email_key|t", "users_pkey|t"],
        ),
        Check::Rows(
            V::Base,
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = 'users'::regclass ORDER BY 1",
            &["_pgbaton_uniq_users_team_id|t", "users_email_key|t", "users_pkey|t"],
        ),
        // Rows kept past rollback are filled again by the second start: keep only valid ones.
        Check::Ok(V::Base, "DELETE FROM users WHERE id >= 12"),
    ];
    run(Case {
        setup: vec![setup_users()],
        seed: USERS_SEED,
        migration,
        after_start,
        after_rollback: vec![
            Check::Rows(V::Base, USERS_COLUMNS, &["id|t", "name|f", "email|f", "role|f"]),
            Check::Rows(V::Base, USERS_CONSTRAINTS, &["email_at|t", "users_email_key|t", "users_pkey|t"]),
        ],
        after_complete: vec![
            Check::Rows(
                V::Base,
                USERS_CONSTRAINTS,
                &["email_at|t", "team_fk|t", "team_positive|t", "users_email_key|t", "users_pkey|t", "users_team_id_key|t"],
            ),
            Check::Rows(
                V::Base,
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'users'::regclass
                  AND conname IN ('team_fk', 'team_positive', 'users_team_id_key') ORDER BY conname",
                &[
                    "FOREIGN KEY (team_id) REFERENCES teams(id) ON DELETE SET NULL",
                    "CHECK ((team_id > 0))",
                    "UNIQUE (team_id)",
                ],
            ),
            Check::Fails(
                V::New,
                "INSERT INTO users (id, name, team_id) VALUES (20, 'x', 1)",
                SqlState::UNIQUE_VIOLATION,
            ),
            Check::Ok(V::Base, "DELETE FROM teams WHERE id = 1"),
            Check::Rows(V::New, "SELECT team_id FROM users WHERE id = 1", &["NULL"]),
        ],
    })
    .await;
}

#[tokio::test]
async fn several_columns_of_one_table_in_one_migration() {
    // pgroll's example 03: three columns, one trigger and one backfill pass for the two `up`s.
    let migration = yaml(
        "02_products",
        "operations:
  - add_column:
      table: users
      up: UPPER(name)
      column: {name: description, type: varchar(255), nullable: true}
  - add_column:
      table: users
      column: {name: stock, type: int, nullable: false, default: \"100\"}
  - add_column:
      table: users
      up: name || '-category'
      column: {name: category, type: varchar(255), nullable: false}
",
    );
    let after_start = vec![
        Check::Ok(V::Base, "DELETE FROM users WHERE id >= 10"),
        Check::Rows(
            V::New,
            "SELECT id, description, stock, category FROM users ORDER BY id",
            &["1|ALICE|100|alice-category", "2|BOB|100|bob-category"],
        ),
        Check::Ok(V::Old, "INSERT INTO users (id, name) VALUES (10, 'carol')"),
        Check::Rows(
            V::New,
            "SELECT description, stock, category FROM users WHERE id = 10",
            &["CAROL|100|carol-category"],
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
            &["id|t", "name|f", "email|f", "role|f"],
        )],
        after_complete: vec![Check::Rows(
            V::Base,
            USERS_COLUMNS,
            &[
                "id|t",
                "name|f",
                "email|f",
                "role|f",
                "description|f",
                "stock|t",
                "category|t",
            ],
        )],
    })
    .await;
}

#[tokio::test]
async fn on_a_table_created_in_the_same_migration() {
    let migration = yaml(
        "02_items",
        "operations:
  - create_table:
      name: items
      columns: [{name: id, type: integer, pk: true}]
  - add_column:
      table: items
      column:
        name: sku
        type: text
        unique: true
        check: {name: sku_not_empty, constraint: sku <> ''}
",
    );
    let after_start = vec![
        Check::Ok(V::Base, "DELETE FROM items"),
        Check::Ok(V::New, "INSERT INTO items VALUES (1, 'a')"),
        Check::Fails(V::New, "INSERT INTO items (id) VALUES (2)", SqlState::NOT_NULL_VIOLATION),
        Check::Fails(V::New, "INSERT INTO items VALUES (2, 'a')", SqlState::UNIQUE_VIOLATION),
        Check::Fails(V::New, "INSERT INTO items VALUES (2, '')", SqlState::CHECK_VIOLATION),
        Check::Rows(V::New, "SELECT id, sku FROM items", &["1|a"]),
        // No trigger on a table nothing else uses; constraints valid at once.
        Check::Rows(
            V::Base,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass AND NOT tgisinternal",
            &["0"],
        ),
        Check::Rows(
            V::Base,
            "SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 'items'::regclass AND contype <> 'n' ORDER BY 1",
            &["items_pkey|t", "items_sku_key|t", "sku_not_empty|t"],
        ),
    ];
    run(Case {
        setup: vec![setup_users()],
        seed: USERS_SEED,
        migration,
        after_start,
        after_rollback: vec![Check::Fails(V::Base, "SELECT * FROM items", SqlState::UNDEFINED_TABLE)],
        after_complete: vec![Check::Rows(
            V::Base,
            "SELECT attname, attnotnull FROM pg_attribute WHERE attrelid = 'items'::regclass AND attnum > 0 ORDER BY attnum",
            &["id|t", "sku|t"],
        )],
    })
    .await;
}

#[tokio::test]
async fn validation_errors_come_before_any_ddl() {
    let env = setup(vec![setup_users()], USERS_SEED).await;
    let before = dump(&env);
    let m = env.migrator().await;
    let p = "operations[0].add_column.";
    let cases: &[(&str, &str)] = &[
        (
            "table: nope, column: {name: a, type: int, nullable: true}",
            "table: table \"nope\" does not exist",
        ),
        (
            "table: users, column: {name: name, type: int, nullable: true}",
            "column.name: column \"name\" already exists in table \"users\"",
        ),
        (
            "table: users, column: {name: a, type: int}",
            "up: column \"a\" is NOT NULL without a default: \"up\" is required to fill it for \
             existing rows and for rows the old version writes",
        ),
        (
            "table: users, up: '1', column: {name: a, type: int, pk: true}",
            "column.pk: adding primary key columns is not supported",
        ),
        (
            "table: users, column: {name: a, type: int, nullable: true, generated: {expression: id * 2}}",
            "column.generated: adding generated columns to existing tables is not supported",
        ),
        (
            "table: users, column: {name: a, type: int, nullable: true, check: {name: users_pkey, constraint: a > 0}}",
            "column.check.name: constraint \"users_pkey\" already exists on table \"users\"",
        ),
        (
            "table: users, column: {name: a, type: int, nullable: true, references: {name: f, table: nope, column: id}}",
            "column.references.table: table \"nope\" does not exist",
        ),
        (
            "table: users, column: {name: a, type: int, nullable: true, references: {name: f, table: teams, column: nope}}",
            "column.references.column: column \"nope\" does not exist on table \"teams\"",
        ),
        (
            "table: teams, column: {name: a, type: text, nullable: true, references: {name: f, table: users, column: name}}",
            "column.references.column: column \"name\" of table \"users\" is not a primary key or unique",
        ),
        (
            "table: users, column: {name: a, type: serial, default: '1'}",
            "column.default: column \"a\" has type serial and a default",
        ),
    ];
    for (body, expected) in cases {
        let mig = yaml(
            "02_bad",
            &format!("operations:\n  - add_column: {{{body}}}\n"),
        );
        let err = m.start(&mig, false).await.expect_err(body).to_string();
        assert!(err.contains(&format!("{p}{expected}")), "{body}: got {err}");
    }
    assert_eq!(dump(&env), before);
    assert!(m.status().await.expect("status").active.is_none());
}

#[tokio::test]
async fn a_failing_start_leaves_nothing_behind() {
    // Valid for the planner; PostgreSQL refuses the expression when it fills the rows.
    let env = setup(vec![setup_users()], USERS_SEED).await;
    let before = dump(&env);
    let m = env.migrator().await;
    let bad = yaml(
        "02_bad",
        "operations:
  - add_column:
      table: users
      up: 1 / (id - id)
      column: {name: a, type: int}
",
    );
    let err = m
        .start(&bad, false)
        .await
        .expect_err("division by zero")
        .to_string();
    assert!(err.contains("division by zero"), "{err}");
    assert_eq!(dump(&env), before);
    assert!(m.status().await.expect("status").active.is_none());
}

#[tokio::test]
async fn up_on_a_table_without_any_key_and_no_previous_version() {
    // pgroll's "add column with up sql and no pk": the backfill walks ctid ranges. No migration
    // before this one: the old version is the base schema itself.
    let migration = yaml(
        "01_len",
        "operations:
  - add_column:
      table: logs
      up: length(msg)
      column: {name: len, type: integer}
",
    );
    let after_start = vec![
        Check::Ok(V::Base, "DELETE FROM logs WHERE msg LIKE 'new%'"),
        Check::Rows(
            V::New,
            "SELECT msg, len FROM logs ORDER BY msg",
            &["a|1", "bb|2", "ccc|3"],
        ),
        Check::Ok(V::Old, "INSERT INTO logs VALUES ('new one')"),
        Check::Rows(V::New, "SELECT len FROM logs WHERE msg = 'new one'", &["7"]),
        Check::Ok(V::New, "INSERT INTO logs VALUES ('new two', 0)"),
        Check::Rows(
            V::Old,
            "SELECT msg FROM logs WHERE msg LIKE 'new%' ORDER BY 1",
            &["new one", "new two"],
        ),
    ];
    run(Case {
        setup: vec![],
        seed: "CREATE TABLE logs (msg text); INSERT INTO logs VALUES ('a'), ('bb'), ('ccc')",
        migration,
        after_start,
        after_rollback: vec![Check::Rows(
            V::Base,
            "SELECT * FROM logs ORDER BY 1",
            &["a", "bb", "ccc", "new one", "new two"],
        )],
        after_complete: vec![Check::Rows(
            V::New,
            "SELECT msg, len FROM logs ORDER BY msg",
            &["a|1", "bb|2", "ccc|3", "new one|7", "new two|0"],
        )],
    })
    .await;
}
