//! `drop_constraint` through the whole lifecycle: the column is duplicated without the
//! constraint, so the new version is free of it at once while the old version stays subject to
//! it (its rows converted by `down`); the constraint goes at complete. The column's other
//! properties (NOT NULL, default, other constraints, comment, sequence) stay.

mod common;

use common::lifecycle::*;

#[tokio::test]
async fn drops_a_check_constraint() {
    // Example 23.
    let migration = yaml(
        "02_drop_check",
        "operations:
  - drop_constraint:
      table: posts
      name: title_length
      up: title
      down: SELECT CASE WHEN length(title) <= 3 THEN LPAD(title, 4, '-') ELSE title END
",
    );
    let checks = "SELECT conname FROM pg_constraint WHERE conrelid = 'public.posts'::regclass AND contype = 'c' AND conname NOT LIKE '\\_pgbaton%' ORDER BY 1";
    run(Case {
        setup: vec![],
        seed: "CREATE TABLE posts (id serial PRIMARY KEY, title text NOT NULL CONSTRAINT title_length CHECK (length(title) > 3),
                   body text DEFAULT 'empty' CONSTRAINT body_short CHECK (length(body) < 100));
               COMMENT ON COLUMN posts.title IS 'the title';
               INSERT INTO posts (title) VALUES ('long title');",
        migration,
        after_start: vec![
            Check::Ok(V::New, "INSERT INTO posts (title) VALUES ('ab')"),
            Check::Rows(V::Old, "SELECT title FROM posts WHERE id > 1", &["--ab"]),
            Check::Rows(V::New, "SELECT title FROM posts ORDER BY id", &["long title", "ab"]),
            Check::Fails(V::Old, "INSERT INTO posts (title) VALUES ('xy')", SqlState::CHECK_VIOLATION),
            // What the column had besides the dropped constraint stays, in both versions.
            // (PostgreSQL checks NOT NULL before CHECKs: the old column's NOT NULL answers first.)
            Check::Fails(V::New, "INSERT INTO posts (title) VALUES (NULL)", SqlState::NOT_NULL_VIOLATION),
            Check::Fails(V::New, "INSERT INTO posts (title, body) VALUES ('abcd', repeat('x', 200))", SqlState::CHECK_VIOLATION),
            Check::Ok(V::Old, "DELETE FROM posts WHERE id > 1"),
        ],
        after_rollback: vec![
            Check::Rows(V::Base, checks, &["body_short", "title_length"]),
            Check::Fails(V::Old, "INSERT INTO posts (title) VALUES ('xy')", SqlState::CHECK_VIOLATION),
        ],
        after_complete: vec![
            Check::Rows(V::Base, checks, &["body_short"]),
            Check::Ok(V::New, "INSERT INTO posts (title) VALUES ('xy')"),
            Check::Fails(V::New, "INSERT INTO posts (title) VALUES (NULL)", SqlState::NOT_NULL_VIOLATION),
            Check::Rows(V::New, "SELECT title, body FROM posts ORDER BY id", &["long title|empty", "xy|empty"]),
            Check::Rows(V::Base, "SELECT col_description(attrelid, attnum) FROM pg_attribute WHERE attrelid = 'public.posts'::regclass AND attname = 'title'", &["the title"]),
        ],
    })
    .await;
}

#[tokio::test]
async fn drops_a_foreign_key() {
    // Example 24.
    let migration = yaml(
        "02_drop_fk",
        "operations:
  - drop_constraint:
      table: posts
      name: fk_users_id
      up: user_id
      down: SELECT CASE WHEN EXISTS (SELECT 1 FROM users WHERE users.id = user_id) THEN user_id ELSE NULL END
",
    );
    run(Case {
        setup: vec![],
        seed: "CREATE TABLE users (id int PRIMARY KEY); INSERT INTO users VALUES (1);
               CREATE TABLE posts (id serial PRIMARY KEY, user_id int CONSTRAINT fk_users_id REFERENCES users (id));
               INSERT INTO posts (user_id) VALUES (1);",
        migration,
        after_start: vec![
            Check::Ok(V::New, "INSERT INTO posts (user_id) VALUES (999)"),
            Check::Rows(V::New, "SELECT user_id FROM posts ORDER BY id", &["1", "999"]),
            Check::Rows(V::Old, "SELECT user_id FROM posts ORDER BY id", &["1", "NULL"]),
            Check::Fails(V::Old, "INSERT INTO posts (user_id) VALUES (998)", SqlState::FOREIGN_KEY_VIOLATION),
            Check::Ok(V::Old, "DELETE FROM posts WHERE id > 1"),
        ],
        after_rollback: vec![Check::Fails(V::Old, "INSERT INTO posts (user_id) VALUES (998)", SqlState::FOREIGN_KEY_VIOLATION)],
        after_complete: vec![
            Check::Rows(V::Base, "SELECT count(*) FROM pg_constraint WHERE conname = 'fk_users_id'", &["0"]),
            Check::Ok(V::New, "INSERT INTO posts (user_id) VALUES (998)"),
        ],
    })
    .await;
}

#[tokio::test]
async fn drops_a_unique_constraint() {
    // Example 27.
    let migration = yaml(
        "02_drop_unique",
        "operations:
  - drop_constraint:
      table: reviews
      name: reviews_review_unique
      up: review
      down: review || '-' || (random()*1000000)::integer
",
    );
    run(Case {
        setup: vec![],
        seed: "CREATE TABLE reviews (id int PRIMARY KEY, review text CONSTRAINT reviews_review_unique UNIQUE);
               INSERT INTO reviews VALUES (1, 'good'), (2, 'bad');",
        migration,
        after_start: vec![
            Check::Ok(V::New, "INSERT INTO reviews VALUES (3, 'good')"),
            Check::Rows(V::New, "SELECT count(*) FROM reviews WHERE review = 'good'", &["2"]),
            Check::Rows(V::Old, "SELECT review LIKE 'good-%' FROM reviews WHERE id = 3", &["t"]),
            Check::Fails(V::Old, "INSERT INTO reviews VALUES (4, 'bad')", SqlState::UNIQUE_VIOLATION),
            Check::Ok(V::Old, "DELETE FROM reviews WHERE id > 2"),
        ],
        after_rollback: vec![Check::Fails(V::Old, "INSERT INTO reviews VALUES (4, 'bad')", SqlState::UNIQUE_VIOLATION)],
        after_complete: vec![
            Check::Rows(V::Base, "SELECT count(*) FROM pg_constraint WHERE conname = 'reviews_review_unique'", &["0"]),
            Check::Rows(V::Base, "SELECT indexname FROM pg_indexes WHERE tablename = 'reviews'", &["reviews_pkey"]),
            Check::Ok(V::New, "INSERT INTO reviews VALUES (4, 'bad')"),
        ],
    })
    .await;
}

#[tokio::test]
async fn drops_a_unique_constraint_of_a_serial_column() {
    // The column's sequence must survive the swap and keep feeding the default.
    let migration = yaml(
        "02_drop_unique_serial",
        "operations:
  - drop_constraint:
      table: reviews
      name: reviews_review_unique
      up: review
      down: review + 1000
",
    );
    run(Case {
        setup: vec![],
        seed: "CREATE TABLE reviews (id int PRIMARY KEY, review serial CONSTRAINT reviews_review_unique UNIQUE);
               INSERT INTO reviews (id) VALUES (1), (2);",
        migration,
        after_start: vec![
            Check::Ok(V::New, "INSERT INTO reviews (id, review) VALUES (3, 1)"),
            Check::Rows(V::New, "SELECT count(*) FROM reviews WHERE review = 1", &["2"]),
            Check::Rows(V::Old, "SELECT review FROM reviews ORDER BY id", &["1", "2", "1001"]),
            Check::Fails(V::Old, "INSERT INTO reviews (id, review) VALUES (4, 2)", SqlState::UNIQUE_VIOLATION),
            Check::Ok(V::Old, "DELETE FROM reviews WHERE id > 2"),
        ],
        after_rollback: vec![Check::Rows(
            V::Base,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'reviews_review_unique'",
            &["1"],
        )],
        after_complete: vec![
            Check::Rows(V::Base, "SELECT count(*) FROM pg_indexes WHERE tablename = 'reviews'", &["1"]),
            Check::Ok(V::New, "INSERT INTO reviews (id, review) VALUES (5, 1)"),
            Check::Ok(V::New, "INSERT INTO reviews (id) VALUES (6)"),
            // (Failed inserts above consumed sequence values too: only "fed by the sequence" is certain.)
            Check::Rows(V::New, "SELECT review > 2 FROM reviews WHERE id = 6", &["t"]),
            Check::Rows(
                V::Base,
                "SELECT pg_get_serial_sequence('public.reviews', 'review')",
                &["public.reviews_review_seq"],
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn validation_errors_come_before_any_ddl() {
    let env = Env::new().await;
    env.sql(
        "CREATE TABLE posts (id int PRIMARY KEY, a int, b int, title text CONSTRAINT title_length CHECK (length(title) > 3),
             CONSTRAINT a_lt_b CHECK (a < b), CONSTRAINT a_key UNIQUE (a));
         CREATE TABLE refs (id int PRIMARY KEY, a int REFERENCES posts (a));",
    )
    .await;
    let before = dump(&env);
    let m = env.migrator().await;
    for (body, expected) in [
        ("table: nope, name: x, up: '', down: x", "drop_constraint.table: table \"nope\" does not exist"),
        ("table: posts, name: nope, up: '', down: x", "drop_constraint.name: constraint \"nope\" does not exist on table \"posts\""),
        ("table: posts, name: title_length, up: ''", "drop_constraint.down: `down` is required"),
        ("table: posts, name: a_lt_b, up: '', down: x", "use drop_multicolumn_constraint"),
        ("table: posts, name: a_key, up: '', down: x", "drop_constraint.name: constraint \"a_key\" is referenced by foreign key \"refs_a_fkey\" of table \"refs\""),
    ] {
        let mig = yaml("02_bad", &format!("operations:\n  - drop_constraint: {{{body}}}\n"));
        let err = m.start(&mig, false).await.expect_err(body).to_string();
        assert!(err.contains(expected), "{body}: {err}");
    }
    assert_eq!(dump(&env), before);
}
