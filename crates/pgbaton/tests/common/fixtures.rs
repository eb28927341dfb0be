//! Shared fixtures of the operation tests: one first version (`01_users`) and its rows, so that
//! every test that needs "an application with users" starts from the same schema. A test that
//! needs more (a default, another constraint, a referencing table) adds it in its own seed and
//! says so there.

#![allow(dead_code)]

use pgbaton::format::Migration;

use super::lifecycle::yaml;

/// The first version, `01_users`:
/// - `users (id integer PRIMARY KEY, name text, email text UNIQUE CHECK email_at, role text)`,
///   `email_at` being `email LIKE '%@%'`;
/// - `teams (id integer PRIMARY KEY)`;
/// - `orders (id integer PRIMARY KEY, user_id integer REFERENCES users (id))`, the foreign key
///   named `orders_user_fk`.
pub fn setup_users() -> Migration {
    yaml(
        "01_users",
        "operations:
  - create_table:
      name: users
      columns:
        - {name: id, type: integer, pk: true}
        - {name: name, type: text, nullable: true}
        - {name: email, type: text, nullable: true, unique: true, check: {name: email_at, constraint: \"email LIKE '%@%'\"}}
        - {name: role, type: text, nullable: true}
  - create_table:
      name: teams
      columns:
        - {name: id, type: integer, pk: true}
  - create_table:
      name: orders
      columns:
        - {name: id, type: integer, pk: true}
        - {name: user_id, type: integer, nullable: true, references: {name: orders_user_fk, table: users, column: id}}
",
    )
}

/// The rows of [`setup_users`], as a literal so that a test can `concat!` its own seed to it.
#[macro_export]
macro_rules! users_seed {
    () => {
        "INSERT INTO users (id, name, email, role) VALUES (1, 'alice', 'a@x', 'admin'), (2, 'bob', 'b@x', 'dev');
         INSERT INTO teams VALUES (1), (2), (3);"
    };
}

/// The rows of [`setup_users`]: users 1 `alice` (`a@x`, `admin`) and 2 `bob` (`b@x`, `dev`);
/// teams 1, 2 and 3; no orders.
pub const USERS_SEED: &str = users_seed!();

/// The physical columns of `users`, in order.
pub const USERS_COLUMNS: &str = "SELECT attname FROM pg_attribute
    WHERE attrelid = 'users'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum";
