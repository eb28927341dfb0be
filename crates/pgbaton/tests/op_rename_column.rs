//! `rename_column` through the whole lifecycle: virtual at start (the new version sees the new
//! name, the old version the old one, both read and write the same physical column), nothing to
//! undo at rollback, physical at complete — where indexes, constraints, foreign keys and defaults
//! follow the column by themselves. Also renames chained with `add_column` in one migration, a
//! swap of two names, and the validation errors. (Odd names in another schema:
//! `op_odd_names.rs`.)

mod common;

use common::fixtures::{setup_users, USERS_COLUMNS};
use common::lifecycle::*;

/// `common::fixtures::USERS_SEED`, and what renaming `name` must carry along: a default, a unique constraint, a
/// check and a foreign key from `posts` referencing it.
const SEED: &str = concat!(
    crate::users_seed!(),
    "ALTER TABLE users ALTER COLUMN name SET DEFAULT 'anon',
         ADD CONSTRAINT users_name_key UNIQUE (name),
         ADD CONSTRAINT name_len CHECK (length(name) > 1);
     CREATE TABLE posts (id integer PRIMARY KEY,
         author text CONSTRAINT posts_author_fk REFERENCES users (name));
     INSERT INTO posts VALUES (1, 'alice');"
);

#[tokio::test]
async fn virtual_at_start_physical_at_complete() {
    let migration = yaml(
        "02_rename",
        "operations:
  - rename_column: {table: users, from: name, to: full_name}
",
    );
    let after_start = vec![
        Check::Ok(V::Base, "DELETE FROM users WHERE id >= 10"),
        Check::Rows(
            V::New,
            "SELECT id, full_name FROM users ORDER BY id",
            &["1|alice", "2|bob"],
        ),
        Check::Fails(V::New, "SELECT name FROM users", SqlState::UNDEFINED_COLUMN),
        Check::Rows(V::Old, "SELECT id, name FROM users ORDER BY id", &["1|alice", "2|bob"]),
        Check::Fails(V::Old, "SELECT full_name FROM users", SqlState::UNDEFINED_COLUMN),
        // Both versions write the same column; its default and constraints apply to both.
        Check::Ok(V::New, "INSERT INTO users (id, full_name) VALUES (10, 'carol')"),
        Check::Ok(V::Old, "INSERT INTO users (id, name) VALUES (11, 'dave')"),
        Check::Ok(V::New, "INSERT INTO users (id) VALUES (12)"),
        Check::Rows(
            V::Old,
            "SELECT id, name FROM users WHERE id >= 10 ORDER BY id",
            &["10|carol", "11|dave", "12|anon"],
        ),
        Check::Fails(V::New, "INSERT INTO users (id, full_name) VALUES (13, 'dave')", SqlState::UNIQUE_VIOLATION),
        Check::Fails(V::New, "INSERT INTO users (id, full_name) VALUES (13, 'x')", SqlState::CHECK_VIOLATION),
        Check::Ok(V::New, "UPDATE users SET full_name = 'bobby' WHERE id = 2"),
        Check::Rows(V::Old, "SELECT name FROM users WHERE id = 2", &["bobby"]),
        Check::Ok(V::Base, "UPDATE users SET name = 'bob' WHERE id = 2"),
        // Nothing physical changed: no trigger, same column.
        Check::Rows(V::Base, USERS_COLUMNS, &["id", "name", "email", "role"]),
        Check::Rows(
            V::Base,
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'users'::regclass AND NOT tgisinternal",
            &["0"],
        ),
    ];
    run(Case {
        setup: vec![setup_users()],
        seed: SEED,
        migration,
        after_start,
        after_rollback: vec![
            Check::Rows(V::Base, USERS_COLUMNS, &["id", "name", "email", "role"]),
            Check::Rows(V::Old, "SELECT name FROM users WHERE id = 10", &["carol"]),
        ],
        after_complete: vec![
            Check::Rows(V::Base, USERS_COLUMNS, &["id", "full_name", "email", "role"]),
            Check::Rows(
                V::New,
                "SELECT id, full_name FROM users ORDER BY id",
                &["1|alice", "2|bob", "10|carol", "11|dave", "12|anon"],
            ),
            // Constraints, indexes, the foreign key and the default followed the column.
            Check::Rows(
                V::Base,
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
                  WHERE conrelid IN ('users'::regclass, 'posts'::regclass) AND contype NOT IN ('p', 'n') ORDER BY 1",
                &[
                    "email_at|CHECK ((email ~~ '%@%'::text))",
                    "name_len|CHECK ((length(full_name) > 1))",
                    "posts_author_fk|FOREIGN KEY (author) REFERENCES users(full_name)",
                    "users_email_key|UNIQUE (email)",
                    "users_name_key|UNIQUE (full_name)",
                ],
            ),
            Check::Ok(V::Base, "DELETE FROM users WHERE id = 12"),
            Check::Ok(V::New, "INSERT INTO users (id) VALUES (20)"),
            Check::Fails(V::New, "INSERT INTO users (id) VALUES (21)", SqlState::UNIQUE_VIOLATION),
            Check::Rows(V::New, "SELECT full_name FROM users WHERE id = 20", &["anon"]),
        ],
    })
    .await;
}

#[tokio::test]
async fn add_column_then_rename_it_twice() {
    let migration = yaml(
        "02_multi",
        "operations:
  - add_column:
      table: users
      up: upper(role)
      column: {name: level, type: text, nullable: true}
  - rename_column: {table: users, from: level, to: grade}
  - rename_column: {table: users, from: grade, to: Rank \"R\"}
",
    );
    let after_start = vec![
        Check::Ok(V::Base, "DELETE FROM users WHERE id >= 10"),
        Check::Rows(
            V::New,
            r#"SELECT id, "Rank ""R""" FROM users ORDER BY id"#,
            &["1|ADMIN", "2|DEV"],
        ),
        Check::Fails(
            V::New,
            "SELECT level FROM users",
            SqlState::UNDEFINED_COLUMN,
        ),
        Check::Fails(
            V::New,
            "SELECT grade FROM users",
            SqlState::UNDEFINED_COLUMN,
        ),
        Check::Ok(
            V::Old,
            "INSERT INTO users (id, name, role) VALUES (10, 'carol', 'ops')",
        ),
        Check::Rows(
            V::New,
            r#"SELECT "Rank ""R""" FROM users WHERE id = 10"#,
            &["OPS"],
        ),
    ];
    run(Case {
        setup: vec![setup_users()],
        seed: SEED,
        migration,
        after_start,
        after_rollback: vec![Check::Rows(
            V::Base,
            USERS_COLUMNS,
            &["id", "name", "email", "role"],
        )],
        after_complete: vec![Check::Rows(
            V::Base,
            USERS_COLUMNS,
            &["id", "name", "email", "role", "Rank \"R\""],
        )],
    })
    .await;
}

#[tokio::test]
async fn swap_two_names() {
    let migration = yaml(
        "02_swap",
        "operations:
  - rename_column: {table: users, from: name, to: tmp}
  - rename_column: {table: users, from: role, to: name}
  - rename_column: {table: users, from: tmp, to: role}
",
    );
    let after_start = vec![
        Check::Rows(
            V::New,
            "SELECT name, role FROM users WHERE id = 1",
            &["admin|alice"],
        ),
        Check::Rows(
            V::Old,
            "SELECT name, role FROM users WHERE id = 1",
            &["alice|admin"],
        ),
    ];
    run(Case {
        setup: vec![setup_users()],
        seed: SEED,
        migration,
        after_start,
        after_rollback: vec![Check::Rows(
            V::Old,
            "SELECT name, role FROM users WHERE id = 1",
            &["alice|admin"],
        )],
        after_complete: vec![
            Check::Rows(V::Base, USERS_COLUMNS, &["id", "role", "email", "name"]),
            Check::Rows(
                V::Base,
                "SELECT name, role FROM users WHERE id = 1",
                &["admin|alice"],
            ),
        ],
    })
    .await;
}

#[tokio::test]
async fn validation_errors_come_before_any_ddl() {
    let env = setup(vec![setup_users()], SEED).await;
    let before = dump(&env);
    let m = env.migrator().await;
    let p = "operations[0].rename_column.";
    let cases: &[(&str, &str)] = &[
        (
            "table: nope, from: name, to: x",
            "table: table \"nope\" does not exist",
        ),
        (
            "table: users, from: nope, to: x",
            "from: column \"nope\" does not exist on table \"users\"",
        ),
        (
            "table: users, from: name, to: role",
            "to: column \"role\" already exists in table \"users\"",
        ),
    ];
    for (body, expected) in cases {
        let mig = yaml(
            "02_bad",
            &format!("operations:\n  - rename_column: {{{body}}}\n"),
        );
        let err = m.start(&mig, false).await.expect_err(body).to_string();
        assert!(err.contains(&format!("{p}{expected}")), "{body}: got {err}");
    }
    assert_eq!(dump(&env), before);
    assert!(m.status().await.expect("status").active.is_none());
}
