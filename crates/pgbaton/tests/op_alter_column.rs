//! `alter_column` through the whole lifecycle (start → checks through both versions → rollback →
//! identical schema → start → complete → checks): every sub-form and their combinations, the
//! catalog-only paths, a non-public schema, and the validation errors. Keys (a primary key with
//! referencing foreign keys, an identity key, a table without a key): `op_alter_column_keys.rs`;
//! the declared locks against `pg_locks`: `op_alter_column_locks.rs`.

mod common;

use common::lifecycle::*;

const REVIEWS: &str = "CREATE TABLE reviews (id serial PRIMARY KEY, username text NOT NULL, product text NOT NULL, rating text, review text);
    INSERT INTO reviews (username, product, rating, review) VALUES
      ('alice', 'apple', '5', 'tasty'), ('bob', 'banana', '3', NULL), ('carl', 'cherry', '4', 'ok');";

#[tokio::test]
async fn change_type_copies_the_column() {
    let migration = yaml(
        "02_change_type",
        "operations:
  - alter_column:
      table: reviews
      column: rating
      type: integer
      up: CAST(rating AS integer)
      down: CAST(rating AS text)
",
    );
    run(Case {
        setup: vec![],
        seed: REVIEWS,
        migration,
        after_start: vec![
            // The backfill converted the existing rows.
            Check::Rows(V::New, "SELECT id, rating FROM reviews WHERE id <= 3 ORDER BY id", &["1|5", "2|3", "3|4"]),
            Check::Rows(V::New, "SELECT pg_typeof(rating)::text FROM reviews LIMIT 1", &["integer"]),
            Check::Rows(V::Old, "SELECT pg_typeof(rating)::text FROM reviews LIMIT 1", &["text"]),
            // An old-version write reaches the new column through `up`...
            Check::Ok(V::Old, "DELETE FROM reviews WHERE username = 'dan'; INSERT INTO reviews (username, product, rating) VALUES ('dan', 'date', '2')"),
            Check::Rows(V::New, "SELECT rating + 1 FROM reviews WHERE username = 'dan'", &["3"]),
            // ...and a new-version write reaches the old column through `down`.
            Check::Ok(V::New, "DELETE FROM reviews WHERE username = 'eve'; INSERT INTO reviews (username, product, rating) VALUES ('eve', 'elderberry', 1)"),
            Check::Rows(V::Old, "SELECT rating FROM reviews WHERE username = 'eve'", &["1"]),
            Check::Ok(V::New, "UPDATE reviews SET rating = 7 WHERE username = 'alice'"),
            Check::Rows(V::Old, "SELECT rating FROM reviews WHERE username = 'alice'", &["7"]),
            Check::Ok(V::Old, "UPDATE reviews SET rating = '8' WHERE username = 'bob'"),
            Check::Rows(V::New, "SELECT rating FROM reviews WHERE username = 'bob'", &["8"]),
            Check::Fails(V::New, "INSERT INTO reviews (username, product, rating) VALUES ('x', 'y', 'nope')", SqlState::INVALID_TEXT_REPRESENTATION),
            // Back to the seeded values, so the second start sees the same rows.
            Check::Ok(V::New, "UPDATE reviews SET rating = 5 WHERE username = 'alice'"),
            Check::Ok(V::Old, "UPDATE reviews SET rating = '3' WHERE username = 'bob'"),
            Check::Rows(V::Old, "SELECT rating FROM reviews WHERE username IN ('alice', 'bob') ORDER BY username", &["5", "3"]),
        ],
        after_rollback: vec![
            Check::Rows(V::Old, "SELECT pg_typeof(rating)::text FROM reviews LIMIT 1", &["text"]),
            Check::Rows(V::Old, "SELECT username, rating FROM reviews ORDER BY username", &["alice|5", "bob|3", "carl|4", "dan|2", "eve|1"]),
        ],
        after_complete: vec![
            Check::Rows(V::Base, "SELECT pg_typeof(rating)::text FROM reviews LIMIT 1", &["integer"]),
            Check::Rows(V::New, "SELECT username, rating FROM reviews ORDER BY username", &["alice|5", "bob|3", "carl|4", "dan|2", "eve|1"]),
            Check::Rows(
                V::Base,
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'reviews' AND column_name LIKE '\\_pgbaton%'",
                &["0"],
            ),
            Check::Ok(V::New, "INSERT INTO reviews (username, product, rating) VALUES ('fay', 'fig', 9)"),
        ],
    })
    .await;
}

fn example(name: &str) -> pgbaton::format::Migration {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pgroll/examples")
        .join(name);
    pgbaton::format::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Leaked SQL text for checks (which hold `&'static str`).
fn sql(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

const NO_COPY: &str = "SELECT count(*) FROM pg_attribute WHERE attrelid = 'reviews'::regclass AND attname LIKE '\\_pgbaton\\_%' AND NOT attisdropped";
const NO_LEFTOVERS: &str = "SELECT count(*) FROM pg_constraint WHERE conrelid = 'reviews'::regclass AND conname LIKE '\\_pgbaton\\_%'";

fn nullable(table: &str, column: &str) -> &'static str {
    sql(format!(
        "SELECT is_nullable FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '{table}' AND column_name = '{column}'"
    ))
}

#[tokio::test]
async fn set_not_null_fills_nulls_with_up() {
    let migration = yaml(
        "02_set_not_null",
        "operations:
  - alter_column:
      table: reviews
      column: review
      nullable: false
      up: SELECT CASE WHEN review IS NULL THEN product || ' is good' ELSE review END
      down: review
",
    );
    run(Case {
        setup: vec![],
        seed: REVIEWS,
        migration,
        after_start: vec![
            Check::Rows(V::New, "SELECT review FROM reviews WHERE username = 'bob'", &["banana is good"]),
            Check::Rows(V::Old, "SELECT review FROM reviews WHERE username = 'bob'", &["NULL"]),
            Check::Ok(V::Old, "DELETE FROM reviews WHERE username = 'dan'; INSERT INTO reviews (username, product) VALUES ('dan', 'date')"),
            Check::Rows(V::New, "SELECT review FROM reviews WHERE username = 'dan'", &["date is good"]),
            Check::Rows(V::Old, "SELECT review FROM reviews WHERE username = 'dan'", &["NULL"]),
            Check::Fails(V::New, "INSERT INTO reviews (username, product) VALUES ('eve', 'elderberry')", SqlState::CHECK_VIOLATION),
            Check::Fails(V::New, "UPDATE reviews SET review = NULL WHERE username = 'carl'", SqlState::CHECK_VIOLATION),
            Check::Ok(V::New, "DELETE FROM reviews WHERE username = 'eve'; INSERT INTO reviews (username, product, review) VALUES ('eve', 'elderberry', 'sour')"),
            Check::Rows(V::Old, "SELECT review FROM reviews WHERE username = 'eve'", &["sour"]),
            Check::Rows(V::Base, nullable("reviews", "review"), &["YES"]),
        ],
        after_rollback: vec![
            Check::Rows(V::Old, "SELECT review FROM reviews WHERE username = 'bob'", &["NULL"]),
            Check::Rows(V::Base, nullable("reviews", "review"), &["YES"]),
            Check::Rows(V::Base, NO_COPY, &["0"]),
        ],
        after_complete: vec![
            Check::Rows(V::Base, nullable("reviews", "review"), &["NO"]),
            Check::Rows(
                V::New,
                "SELECT username, review FROM reviews ORDER BY username",
                &["alice|tasty", "bob|banana is good", "carl|ok", "dan|date is good", "eve|sour"],
            ),
            Check::Fails(V::New, "INSERT INTO reviews (username, product) VALUES ('fay', 'fig')", SqlState::NOT_NULL_VIOLATION),
            Check::Rows(V::Base, NO_LEFTOVERS, &["0"]),
            Check::Rows(V::Base, NO_COPY, &["0"]),
        ],
    })
    .await;
}

#[tokio::test]
async fn drop_not_null_on_an_indexed_column_maps_nulls_down() {
    let migration = yaml(
        "02_drop_not_null",
        "operations:
  - alter_column:
      table: fruits
      column: name
      nullable: true
      up: name
      down: SELECT CASE WHEN name IS NULL THEN 'unknown fruit' ELSE name END
",
    );
    let indexdef = "SELECT indexdef FROM pg_indexes WHERE indexname = 'fruits_name_idx'";
    run(Case {
        setup: vec![],
        seed: "CREATE TABLE fruits (id serial PRIMARY KEY, name text NOT NULL);
               CREATE INDEX fruits_name_idx ON fruits (name);
               INSERT INTO fruits (name) VALUES ('apple'), ('banana');",
        migration,
        after_start: vec![
            Check::Ok(
                V::New,
                "DELETE FROM fruits WHERE id = 10; INSERT INTO fruits (id, name) VALUES (10, NULL)",
            ),
            Check::Rows(
                V::Old,
                "SELECT name FROM fruits WHERE id = 10",
                &["unknown fruit"],
            ),
            Check::Rows(V::New, "SELECT name FROM fruits WHERE id = 10", &["NULL"]),
            Check::Fails(
                V::Old,
                "INSERT INTO fruits (id, name) VALUES (11, NULL)",
                SqlState::NOT_NULL_VIOLATION,
            ),
            Check::Rows(
                V::Base,
                indexdef,
                &["CREATE INDEX fruits_name_idx ON public.fruits USING btree (name)"],
            ),
        ],
        after_rollback: vec![
            Check::Rows(V::Base, nullable("fruits", "name"), &["NO"]),
            Check::Rows(
                V::Old,
                "SELECT name FROM fruits WHERE id = 10",
                &["unknown fruit"],
            ),
        ],
        after_complete: vec![
            Check::Rows(V::Base, nullable("fruits", "name"), &["YES"]),
            Check::Rows(
                V::New,
                "SELECT id, name FROM fruits ORDER BY id",
                &["1|apple", "2|banana", "10|NULL"],
            ),
            Check::Ok(V::New, "INSERT INTO fruits (id, name) VALUES (12, NULL)"),
            // The index on the column came along (built on the copy, renamed back).
            Check::Rows(
                V::Base,
                indexdef,
                &["CREATE INDEX fruits_name_idx ON public.fruits USING btree (name)"],
            ),
            Check::Rows(
                V::Base,
                "SELECT count(*) FROM pg_class WHERE relname LIKE '\\_pgbaton\\_%'",
                &["0"],
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn unique_is_built_concurrently_on_the_copy() {
    let migration = yaml(
        "02_set_unique",
        "operations:
  - alter_column:
      table: reviews
      column: review
      unique:
        name: reviews_review_unique
      up: review || '-' || id
      down: review
",
    );
    run(Case {
        setup: vec![],
        seed: REVIEWS,
        migration,
        after_start: vec![
            Check::Rows(V::New, "SELECT review FROM reviews WHERE id <= 3 ORDER BY id", &["tasty-1", "NULL", "ok-3"]),
            Check::Rows(V::Base, "SELECT indisvalid, indisunique FROM pg_index WHERE indexrelid = 'reviews_review_unique'::regclass", &["t|t"]),
            Check::Fails(V::New, "INSERT INTO reviews (username, product, review) VALUES ('x', 'y', 'tasty-1')", SqlState::UNIQUE_VIOLATION),
            // The old version can write a duplicate: `up` makes it unique for the new one.
            Check::Ok(V::Old, "DELETE FROM reviews WHERE username = 'dan'; INSERT INTO reviews (id, username, product, review) VALUES (20, 'dan', 'date', 'tasty')"),
            Check::Rows(V::New, "SELECT review FROM reviews WHERE username = 'dan'", &["tasty-20"]),
        ],
        after_rollback: vec![
            Check::Rows(V::Base, "SELECT count(*) FROM pg_class WHERE relname = 'reviews_review_unique'", &["0"]),
            Check::Ok(V::Old, "INSERT INTO reviews (id, username, product, review) VALUES (21, 'x', 'y', 'tasty'); DELETE FROM reviews WHERE id = 21"),
        ],
        after_complete: vec![
            Check::Rows(V::Base, "SELECT contype FROM pg_constraint WHERE conname = 'reviews_review_unique'", &["u"]),
            Check::Fails(V::New, "INSERT INTO reviews (username, product, review) VALUES ('x', 'y', 'ok-3')", SqlState::UNIQUE_VIOLATION),
            Check::Rows(V::New, "SELECT review FROM reviews WHERE username = 'dan'", &["tasty-20"]),
        ],
    })
    .await;
}

const POSTS: &str = "CREATE TABLE users (id serial PRIMARY KEY, name text);
    CREATE TABLE posts (id serial PRIMARY KEY, title varchar(255) NOT NULL, user_id integer);
    INSERT INTO users (name) VALUES ('alice'), ('bob');
    INSERT INTO posts (title, user_id) VALUES ('a', 1), ('hello', 2), ('orphan', 99);";

#[tokio::test]
async fn check_constraint_not_valid_then_validated() {
    let migration = yaml(
        "02_add_check",
        "operations:
  - alter_column:
      table: posts
      column: title
      check:
        name: title_length
        constraint: length(title) > 3
      up: SELECT CASE WHEN length(title) <= 3 THEN LPAD(title, 4, '-') ELSE title END
      down: title
",
    );
    let validated = "SELECT convalidated FROM pg_constraint WHERE conname = 'title_length'";
    run(Case {
        setup: vec![],
        seed: POSTS,
        migration,
        after_start: vec![
            Check::Rows(V::New, "SELECT title FROM posts WHERE id = 1", &["---a"]),
            Check::Rows(V::Old, "SELECT title FROM posts WHERE id = 1", &["a"]),
            Check::Rows(V::Base, validated, &["f"]),
            Check::Fails(V::New, "INSERT INTO posts (title) VALUES ('ab')", SqlState::CHECK_VIOLATION),
            Check::Ok(V::Old, "DELETE FROM posts WHERE id = 50; INSERT INTO posts (id, title) VALUES (50, 'ab')"),
            Check::Rows(V::New, "SELECT title FROM posts WHERE id = 50", &["--ab"]),
        ],
        after_rollback: vec![
            Check::Rows(V::Base, validated, &[]),
            Check::Ok(V::Old, "INSERT INTO posts (id, title) VALUES (51, 'x'); DELETE FROM posts WHERE id = 51"),
        ],
        after_complete: vec![
            Check::Rows(V::Base, validated, &["t"]),
            Check::Rows(
                V::Base,
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'title_length'",
                &["CHECK ((length((title)::text) > 3))"],
            ),
            Check::Fails(V::New, "INSERT INTO posts (title) VALUES ('ab')", SqlState::CHECK_VIOLATION),
            Check::Rows(V::New, "SELECT id, title FROM posts ORDER BY id", &["1|---a", "2|hello", "3|orphan", "50|--ab"]),
        ],
    })
    .await;
}

#[tokio::test]
async fn foreign_key_on_the_copy() {
    let migration = yaml(
        "02_add_fk",
        "operations:
  - alter_column:
      table: posts
      column: user_id
      references:
        name: fk_users_id
        table: users
        column: id
        on_delete: CASCADE
      up: SELECT CASE WHEN EXISTS (SELECT 1 FROM users WHERE users.id = user_id) THEN user_id ELSE NULL END
      down: user_id
",
    );
    let fk = "SELECT convalidated, pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'fk_users_id'";
    run(Case {
        setup: vec![],
        seed: POSTS,
        migration,
        after_start: vec![
            Check::Rows(V::New, "SELECT id, user_id FROM posts WHERE id <= 3 ORDER BY id", &["1|1", "2|2", "3|NULL"]),
            Check::Rows(V::Old, "SELECT user_id FROM posts WHERE id = 3", &["99"]),
            Check::Fails(V::New, "INSERT INTO posts (title, user_id) VALUES ('new', 42)", SqlState::FOREIGN_KEY_VIOLATION),
            Check::Ok(V::Old, "DELETE FROM posts WHERE id = 60; INSERT INTO posts (id, title, user_id) VALUES (60, 'old', 42)"),
            Check::Rows(V::New, "SELECT user_id FROM posts WHERE id = 60", &["NULL"]),
            Check::Rows(V::Base, fk, &["f|FOREIGN KEY (_pgbaton_new_user_id) REFERENCES users(id) ON DELETE CASCADE NOT VALID"]),
        ],
        after_rollback: vec![Check::Rows(V::Base, fk, &[])],
        after_complete: vec![
            Check::Rows(V::Base, fk, &["t|FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE"]),
            Check::Fails(V::New, "INSERT INTO posts (title, user_id) VALUES ('new', 42)", SqlState::FOREIGN_KEY_VIOLATION),
            Check::Ok(V::New, "DELETE FROM users WHERE id = 2"),
            Check::Rows(V::New, "SELECT id, user_id FROM posts ORDER BY id", &["1|1", "3|NULL", "60|NULL"]),
        ],
    })
    .await;
}

#[tokio::test]
async fn default_is_catalog_only_and_the_new_view_carries_it() {
    let migration = yaml(
        "02_set_default",
        "operations:
  - alter_column:
      table: items
      column: name
      default: '''new default'''
  - alter_column:
      table: tickets
      column: ticket_type
      default: null
      up: ticket_type
      down: ticket_type
",
    );
    let default_of = |t: &str, c: &str| {
        sql(format!(
            "SELECT coalesce(column_default, 'none') FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '{t}' AND column_name = '{c}'"
        ))
    };
    run(Case {
        setup: vec![],
        seed: "CREATE TABLE items (id serial PRIMARY KEY, name varchar(255) DEFAULT 'unnamed');
               CREATE TABLE tickets (id serial PRIMARY KEY, ticket_type varchar(255) DEFAULT 'paper');",
        migration,
        after_start: vec![
            Check::Rows(V::Base, "SELECT count(*) FROM pg_attribute WHERE attrelid IN ('items'::regclass, 'tickets'::regclass) AND attname LIKE '\\_pgbaton%'", &["0"]),
            Check::Rows(V::Base, "SELECT count(*) FROM pg_trigger WHERE tgrelid IN ('items'::regclass, 'tickets'::regclass)", &["0"]),
            Check::Ok(V::New, "DELETE FROM items; INSERT INTO items (id) VALUES (1)"),
            Check::Ok(V::Old, "INSERT INTO items (id) VALUES (2)"),
            Check::Rows(V::New, "SELECT id, name FROM items ORDER BY id", &["1|new default", "2|unnamed"]),
            Check::Ok(V::New, "DELETE FROM tickets; INSERT INTO tickets (id) VALUES (1)"),
            Check::Ok(V::Old, "INSERT INTO tickets (id) VALUES (2)"),
            Check::Rows(V::Old, "SELECT id, ticket_type FROM tickets ORDER BY id", &["1|NULL", "2|paper"]),
            Check::Rows(V::Base, default_of("items", "name"), &["'unnamed'::character varying"]),
        ],
        after_rollback: vec![
            Check::Rows(V::Base, default_of("items", "name"), &["'unnamed'::character varying"]),
            Check::Rows(V::Base, default_of("tickets", "ticket_type"), &["'paper'::character varying"]),
        ],
        after_complete: vec![
            Check::Rows(V::Base, default_of("items", "name"), &["'new default'::character varying"]),
            Check::Rows(V::Base, default_of("tickets", "ticket_type"), &["none"]),
            Check::Ok(V::New, "INSERT INTO items (id) VALUES (3); INSERT INTO tickets (id) VALUES (3)"),
            Check::Rows(V::New, "SELECT name FROM items WHERE id = 3", &["new default"]),
            Check::Rows(V::New, "SELECT ticket_type FROM tickets WHERE id = 3", &["NULL"]),
        ],
    })
    .await;
}

#[tokio::test]
async fn comment_is_catalog_only() {
    let migration = yaml(
        "02_comment",
        "operations:
  - alter_column:
      table: events
      column: name
      comment: the full name of the event
  - alter_column:
      table: events
      column: place
      comment: null
      up: place
      down: place
",
    );
    let comments = "SELECT coalesce(col_description('events'::regclass, 2), 'none'), coalesce(col_description('events'::regclass, 3), 'none')";
    run(Case {
        setup: vec![],
        seed: "CREATE TABLE events (id serial PRIMARY KEY, name text, place text);
               COMMENT ON COLUMN events.name IS 'the name';
               COMMENT ON COLUMN events.place IS 'where';",
        migration,
        after_start: vec![
            Check::Rows(V::Base, comments, &["the name|where"]),
            Check::Rows(V::Base, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'events'::regclass AND attname LIKE '\\_pgbaton%'", &["0"]),
        ],
        after_rollback: vec![Check::Rows(V::Base, comments, &["the name|where"])],
        after_complete: vec![Check::Rows(V::Base, comments, &["the full name of the event|none"])],
    })
    .await;
}

#[tokio::test]
async fn varchar_widening_is_catalog_only_at_complete() {
    let migration = yaml(
        "02_widen",
        "operations:
  - alter_column:
      table: users
      column: email
      type: varchar(200)
      default: '''nobody@example.com'''
      comment: where to write
      up: email
      down: email
  - alter_column:
      table: users
      column: bio
      type: text
      up: bio
      down: bio
",
    );
    let same_files = "SELECT pg_relation_filenode('public.users') = t AND pg_relation_filenode('public.users_email_idx') = i FROM probe.files";
    let long = "x".repeat(150);
    run(Case {
        setup: vec![],
        seed: "CREATE TABLE users (id serial PRIMARY KEY, email varchar(100) NOT NULL, bio varchar(20));
               CREATE INDEX users_email_idx ON users (email);
               INSERT INTO users (email, bio) SELECT 'u' || g || '@example.com', 'bio' FROM generate_series(1, 1000) g;
               CREATE SCHEMA probe;
               CREATE TABLE probe.files AS SELECT pg_relation_filenode('public.users') AS t, pg_relation_filenode('public.users_email_idx') AS i;",
        migration,
        after_start: vec![
            // No copy, no trigger: nothing physical until complete.
            Check::Rows(V::Base, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname LIKE '\\_pgbaton%' AND NOT attisdropped", &["0"]),
            Check::Rows(V::Base, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'users'::regclass", &["0"]),
            Check::Rows(V::Base, same_files, &["t"]),
            Check::Ok(V::New, "DELETE FROM users WHERE id = 5000; INSERT INTO users (id) VALUES (5000)"),
            Check::Rows(V::Old, "SELECT email FROM users WHERE id = 5000", &["nobody@example.com"]),
            // Until complete the new version is held to the old length.
            Check::Fails(V::New, sql(format!("INSERT INTO users (id, email) VALUES (5001, '{long}')")), SqlState::STRING_DATA_RIGHT_TRUNCATION),
        ],
        after_rollback: vec![
            Check::Rows(V::Base, same_files, &["t"]),
            Check::Rows(V::Base, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname IN ('email', 'bio') ORDER BY attnum", &["character varying(100)", "character varying(20)"]),
        ],
        after_complete: vec![
            // Changed in place: the table and its index were not rewritten.
            Check::Rows(V::Base, same_files, &["t"]),
            Check::Rows(V::Base, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname IN ('email', 'bio') ORDER BY attnum", &["character varying(200)", "text"]),
            Check::Rows(V::Base, "SELECT col_description('users'::regclass, 2)", &["where to write"]),
            // The new version's view follows the new type (re-created around the change).
            Check::Ok(V::New, sql(format!("INSERT INTO users (id, email, bio) VALUES (5001, '{long}', '{long}')"))),
            Check::Ok(V::New, "INSERT INTO users (id) VALUES (5002)"),
            Check::Rows(V::New, "SELECT email FROM users WHERE id = 5002", &["nobody@example.com"]),
            Check::Rows(V::New, "SELECT count(*) FROM users", &["1003"]),
        ],
    })
    .await;
}

#[tokio::test]
async fn a_type_change_with_a_check_on_the_column_takes_the_copy_path() {
    // PostgreSQL re-verifies a CHECK on the column (a scan under ACCESS EXCLUSIVE) even when the
    // type change needs no rewrite: the copy path validates it without blocking instead.
    let migration = yaml(
        "02_widen_checked",
        "operations:
  - alter_column:
      table: users
      column: email
      type: varchar(200)
      up: email
      down: email
",
    );
    run(Case {
        setup: vec![],
        seed: "CREATE TABLE users (id serial PRIMARY KEY, email varchar(100) CHECK (email LIKE '%@%'));
               INSERT INTO users (email) VALUES ('a@b');",
        migration,
        after_start: vec![
            Check::Rows(V::Base, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = '_pgbaton_new_email'", &["1"]),
            Check::Fails(V::New, "INSERT INTO users (email) VALUES ('nope')", SqlState::CHECK_VIOLATION),
        ],
        after_rollback: vec![],
        after_complete: vec![
            Check::Rows(V::Base, "SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 'users'::regclass AND contype = 'c'", &["users_email_check|t"]),
            Check::Fails(V::New, "INSERT INTO users (email) VALUES ('nope')", SqlState::CHECK_VIOLATION),
            Check::Rows(V::Base, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'email'", &["character varying(200)"]),
        ],
    })
    .await;
}

#[tokio::test]
async fn example_35_several_changes_at_once() {
    // Example 35 as written, except `down`: the file's `down: event_name` names no column, so
    // the new version could not write; with `down: name` both versions can.
    let migration = yaml(
        "35_alter_column_multiple",
        "operations:
  - alter_column:
      table: events
      column: name
      type: text
      default: '''unknown event'''
      nullable: false
      comment: the full name of the event
      unique:
        name: events_event_name_unique
      check:
        name: event_name_length
        constraint: length(name) > 3
      up: SELECT CASE WHEN name IS NULL OR LENGTH(name) <= 3 THEN 'placeholder' ELSE name END
      down: name
",
    );
    let shape = "SELECT format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid), col_description(a.attrelid, a.attnum)
                   FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                  WHERE a.attrelid = 'events'::regclass AND a.attname = 'name'";
    let constraints = "SELECT conname, contype, convalidated FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype <> 'n' ORDER BY conname";
    run(Case {
        setup: vec![example("34_create_events_table.yaml")],
        seed: "INSERT INTO events (name) VALUES ('launch party'), ('ab')",
        migration,
        after_start: vec![
            Check::Rows(
                V::New,
                "SELECT id, name FROM events WHERE id <= 3 ORDER BY id",
                &["1|launch party", "2|placeholder"],
            ),
            Check::Rows(
                V::Old,
                "SELECT id, name FROM events WHERE id <= 3 ORDER BY id",
                &["1|launch party", "2|ab"],
            ),
            Check::Fails(
                V::New,
                "INSERT INTO events (name) VALUES ('abc')",
                SqlState::CHECK_VIOLATION,
            ),
            Check::Fails(
                V::New,
                "INSERT INTO events (name) VALUES (NULL)",
                SqlState::CHECK_VIOLATION,
            ),
            Check::Fails(
                V::New,
                "INSERT INTO events (name) VALUES ('launch party')",
                SqlState::UNIQUE_VIOLATION,
            ),
            Check::Ok(
                V::New,
                "DELETE FROM events WHERE id = 10; INSERT INTO events (id) VALUES (10)",
            ),
            Check::Rows(
                V::Old,
                "SELECT name FROM events WHERE id = 10",
                &["unknown event"],
            ),
            Check::Ok(
                V::Old,
                "DELETE FROM events WHERE id = 11; INSERT INTO events (id) VALUES (11)",
            ),
            Check::Rows(
                V::New,
                "SELECT name FROM events WHERE id = 11",
                &["<placeholder>"],
            ),
        ],
        after_rollback: vec![Check::Rows(
            V::Base,
            shape,
            &["character varying(255)|f|'<placeholder>'::character varying|the name of the event"],
        )],
        after_complete: vec![
            Check::Rows(
                V::Base,
                shape,
                &["text|t|'unknown event'::text|the full name of the event"],
            ),
            Check::Rows(
                V::Base,
                constraints,
                &[
                    "event_name_length|c|t",
                    "events_event_name_unique|u|t",
                    "events_pkey|p|t",
                ],
            ),
            Check::Rows(
                V::New,
                "SELECT id, name FROM events ORDER BY id",
                &[
                    "1|launch party",
                    "2|placeholder",
                    "10|unknown event",
                    "11|<placeholder>",
                ],
            ),
            Check::Fails(
                V::New,
                "INSERT INTO events (name) VALUES ('abc')",
                SqlState::CHECK_VIOLATION,
            ),
            Check::Ok(
                V::New,
                "INSERT INTO events (id, name) VALUES (12, 'after complete')",
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn example_35_file_unchanged() {
    // The file as pgroll ships it: its `down` names no column, so only the old version writes.
    let env = Env::new().await;
    env.apply(&[example("34_create_events_table.yaml")]).await;
    env.sql("INSERT INTO events (name) VALUES ('launch party'), ('ab')")
        .await;
    let before = dump(&env);
    let m = env.migrator().await;
    let mig = example("35_alter_column_multiple.yaml");
    m.start(&mig, false)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    m.rollback(false)
        .await
        .unwrap_or_else(|e| panic!("rollback: {e}"));
    assert_eq!(dump(&env), before);
    m.start(&mig, false)
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    env.sql("INSERT INTO events (name) VALUES ('old writer')")
        .await;
    m.complete()
        .await
        .unwrap_or_else(|e| panic!("complete: {e}"));
    let rows = client(&env)
        .await
        .query("SELECT name FROM events ORDER BY id", &[])
        .await
        .expect("select");
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, ["launch party", "placeholder", "old writer"]);
}

#[tokio::test]
async fn two_alters_of_one_column_are_one_copy() {
    // pgroll's "alter a column multiple times": the second `up` sees what the first produced.
    let migration = yaml(
        "02_twice",
        "operations:
  - alter_column:
      table: people
      column: name
      up: INITCAP(name)
      down: name
      check:
        name: name_capitalized
        constraint: name ~ '^[A-Z].*'
  - alter_column:
      table: people
      column: name
      up: SELECT CASE WHEN name IS NULL THEN 'Jane' ELSE name END
      down: name
      nullable: false
",
    );
    run(Case {
        setup: vec![],
        seed: "CREATE TABLE people (id serial PRIMARY KEY, name varchar(255));
               INSERT INTO people (id, name) VALUES (1, 'alice'), (2, NULL);",
        migration,
        after_start: vec![
            Check::Rows(V::Base, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'people'::regclass AND attname LIKE '\\_pgbaton\\_new%'", &["1"]),
            Check::Rows(V::New, "SELECT id, name FROM people WHERE id <= 2 ORDER BY id", &["1|Alice", "2|Jane"]),
            Check::Ok(V::Old, "DELETE FROM people WHERE id IN (3, 4); INSERT INTO people (id, name) VALUES (3, 'carl'), (4, NULL)"),
            Check::Rows(V::New, "SELECT id, name FROM people WHERE id IN (3, 4) ORDER BY id", &["3|Carl", "4|Jane"]),
            Check::Fails(V::New, "INSERT INTO people (id, name) VALUES (5, 'bob')", SqlState::CHECK_VIOLATION),
            Check::Fails(V::New, "INSERT INTO people (id) VALUES (6)", SqlState::CHECK_VIOLATION),
        ],
        after_rollback: vec![Check::Rows(V::Old, "SELECT name FROM people WHERE id = 1", &["alice"])],
        after_complete: vec![
            Check::Rows(V::New, "SELECT id, name FROM people ORDER BY id", &["1|Alice", "2|Jane", "3|Carl", "4|Jane"]),
            Check::Rows(V::Base, nullable("people", "name"), &["NO"]),
            Check::Rows(V::Base, "SELECT convalidated FROM pg_constraint WHERE conname = 'name_capitalized'", &["t"]),
        ],
    })
    .await;
}

#[tokio::test]
async fn several_columns_of_one_table_share_one_trigger_and_backfill() {
    let migration = yaml(
        "02_two_columns",
        "operations:
  - alter_column:
      table: reviews
      column: rating
      type: integer
      up: CAST(rating AS integer)
      down: CAST(rating AS text)
  - alter_column:
      table: reviews
      column: review
      nullable: false
      up: coalesce(review, 'none')
      down: review
",
    );
    let env = Env::new().await;
    env.sql(REVIEWS).await;
    let m = env.migrator().await;
    let plan = m.plan(&migration).await.expect("plan");
    let backfills = plan
        .start
        .iter()
        .filter(|s| matches!(&s.action, pgbaton::step::Action::Backfill(b) if b.pass.is_fill()))
        .count();
    assert_eq!(backfills, 1, "one backfill pass for the table");
    let triggers = plan
        .start
        .iter()
        .filter(|s| s.title.starts_with("install dual-write trigger"))
        .count();
    assert_eq!(triggers, 1);
    run_in(
        &env,
        Case {
            setup: vec![],
            seed: "",
            migration,
            after_start: vec![
                Check::Rows(V::New, "SELECT rating, review FROM reviews WHERE username = 'bob'", &["3|none"]),
                Check::Ok(V::Old, "DELETE FROM reviews WHERE username = 'dan'; INSERT INTO reviews (username, product, rating) VALUES ('dan', 'date', '2')"),
                Check::Rows(V::New, "SELECT rating * 10, review FROM reviews WHERE username = 'dan'", &["20|none"]),
            ],
            after_rollback: vec![],
            after_complete: vec![
                Check::Rows(V::New, "SELECT username, rating, review FROM reviews ORDER BY username", &["alice|5|tasty", "bob|3|none", "carl|4|ok", "dan|2|none"]),
                Check::Rows(V::Base, nullable("reviews", "review"), &["NO"]),
            ],
        },
    )
    .await;
}

#[tokio::test]
async fn works_in_a_non_public_schema() {
    let env = Env::with_schema("app").await;
    let migration = yaml(
        "02_app",
        "operations:
  - alter_column:
      table: accounts
      column: id
      type: bigint
      up: id
      down: CAST(id AS int)
  - alter_column:
      table: accounts
      column: email
      type: varchar(200)
      nullable: false
      up: coalesce(email, 'none')
      down: email
",
    );
    run_in(
        &env,
        Case {
            setup: vec![],
            seed: "CREATE TABLE app.accounts (id serial PRIMARY KEY, email varchar(100) UNIQUE);
                   CREATE TABLE app.logins (id serial PRIMARY KEY, account int REFERENCES app.accounts (id));
                   INSERT INTO app.accounts (email) VALUES ('a@x'), (NULL);
                   INSERT INTO app.logins (account) VALUES (1), (2);",
            migration,
            after_start: vec![
                Check::Rows(V::New, "SELECT id, email FROM accounts ORDER BY id", &["1|a@x", "2|none"]),
                Check::Fails(V::New, "INSERT INTO accounts (email) VALUES ('a@x')", SqlState::UNIQUE_VIOLATION),
            ],
            after_rollback: vec![],
            after_complete: vec![
                Check::Rows(V::Base, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'app.accounts'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum", &["bigint", "character varying(200)"]),
                Check::Rows(V::Base, "SELECT conname, convalidated FROM pg_constraint WHERE connamespace = 'app'::regnamespace AND contype <> 'n' ORDER BY conname", &["accounts_email_key|t", "accounts_pkey|t", "logins_account_fkey|t", "logins_pkey|t"]),
                Check::Fails(V::New, "INSERT INTO logins (account) VALUES (99)", SqlState::FOREIGN_KEY_VIOLATION),
                Check::Fails(V::New, "INSERT INTO accounts (email) VALUES ('a@x')", SqlState::UNIQUE_VIOLATION),
                Check::Ok(V::New, "INSERT INTO accounts (email) VALUES ('b@x')"),
            ],
        },
    )
    .await;
}

#[tokio::test]
async fn validation_errors_come_before_any_ddl() {
    let env = Env::new().await;
    env.sql(POSTS).await;
    env.sql("ALTER TABLE posts ADD CONSTRAINT posts_title_check CHECK (title <> '')")
        .await;
    let before = dump(&env);
    let m = env.migrator().await;
    let cases = [
        ("table: nope, column: x, comment: c", "alter_column.table: table \"nope\" does not exist"),
        ("table: posts, column: nope, comment: c", "alter_column.column: column \"nope\" does not exist in table \"posts\""),
        ("table: posts, column: title, up: title, down: title", "makes no changes"),
        ("table: posts, column: title, type: text, down: title", "alter_column.up: \"up\" is required"),
        ("table: posts, column: title, type: text, up: title", "alter_column.down: \"down\" is required"),
        ("table: posts, column: title, nullable: false, up: title", "is already NOT NULL"),
        ("table: posts, column: user_id, nullable: true, down: user_id", "is already nullable"),
        ("table: posts, column: user_id, nullable: false", "alter_column.up: \"up\" is required"),
        ("table: posts, column: title, nullable: true, up: title", "alter_column.down: \"down\" is required"),
        ("table: posts, column: id, nullable: true, up: id, down: id", "part of the primary key"),
        ("table: posts, column: title, unique: {name: posts_pkey}", "\"posts_pkey\" already exists"),
        ("table: posts, column: title, check: {name: posts_title_check, constraint: 'true'}, up: title, down: title", "constraint \"posts_title_check\" already exists"),
        ("table: posts, column: title, check: {name: c1, constraint: 'true'}, down: title", "alter_column.up: \"up\" is required"),
        ("table: posts, column: user_id, references: {name: fk, table: nope, column: id}, up: user_id, down: user_id", "referenced table \"nope\" does not exist"),
        ("table: posts, column: user_id, references: {name: fk, table: users, column: name}, up: user_id, down: user_id", "has no unique constraint"),
    ];
    for (body, expected) in cases {
        let mig = yaml(
            "02_bad",
            &format!("operations:\n  - alter_column: {{{body}}}\n"),
        );
        let err = m.start(&mig, false).await.expect_err(body).to_string();
        assert!(err.contains(expected), "{body}: got {err}");
    }
    assert_eq!(dump(&env), before);
    assert!(m.status().await.expect("status").active.is_none());
}

#[tokio::test]
async fn renames_before_and_after_in_the_same_migration() {
    let migration = yaml(
        "02_rename_and_alter",
        "operations:
  - rename_column:
      table: reviews
      from: rating
      to: score
  - alter_column:
      table: reviews
      column: score
      type: integer
      up: CAST(rating AS integer)
      down: CAST(score AS text)
  - alter_column:
      table: reviews
      column: review
      nullable: false
      up: coalesce(review, 'none')
      down: review
  - rename_column:
      table: reviews
      from: review
      to: body
",
    );
    run(Case {
        setup: vec![],
        seed: REVIEWS,
        migration,
        after_start: vec![
            Check::Rows(V::New, "SELECT score, body FROM reviews WHERE username = 'bob'", &["3|none"]),
            Check::Ok(V::New, "DELETE FROM reviews WHERE username = 'eve'; INSERT INTO reviews (username, product, score, body) VALUES ('eve', 'elderberry', 1, 'sweet')"),
            Check::Rows(V::Old, "SELECT rating, review FROM reviews WHERE username = 'eve'", &["1|sweet"]),
        ],
        after_rollback: vec![],
        after_complete: vec![
            Check::Rows(
                V::Base,
                "SELECT attname || ':' || format_type(atttypid, atttypmod) || ':' || attnotnull FROM pg_attribute WHERE attrelid = 'reviews'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attname",
                &["body:text:true", "id:integer:true", "product:text:true", "score:integer:false", "username:text:true"],
            ),
            Check::Rows(V::New, "SELECT username, score, body FROM reviews ORDER BY username", &["alice|5|tasty", "bob|3|none", "carl|4|ok", "eve|1|sweet"]),
        ],
    })
    .await;
}
