//! The schema changes, written for each contender.

use super::*;

/// One schema change, written for each contender.
pub(crate) struct Change {
    pub(crate) key: &'static str,
    pub(crate) label: &'static str,
    /// The key column's type in the table before the change.
    pub(crate) id_type: &'static str,
    /// pgbaton (pgroll format).
    pub(crate) yaml: &'static str,
    /// Reshape.
    pub(crate) toml: &'static str,
    /// The single UPDATE: a column of the new type first (untimed), then the UPDATE (timed).
    pub(crate) update_prep: &'static str,
    pub(crate) update_sql: &'static str,
    /// The plain ALTER TABLE.
    pub(crate) naive: &'static str,
    /// After pgbaton's start: how many rows do not hold `up(old)` in the new column.
    pub(crate) check_sql: &'static str,
}

pub(crate) const CHANGES: &[Change] = &[
    Change {
        key: "type",
        label: "alter_column name text → varchar(200)",
        id_type: "bigint",
        yaml: "operations:\n  - alter_column:\n      table: users\n      column: name\n      type: varchar(200)\n      up: left(name, 200)\n      down: name\n",
        toml: "[[actions]]\ntype = \"alter_column\"\ntable = \"users\"\ncolumn = \"name\"\nup = \"LEFT(name, 200)\"\ndown = \"name\"\n\n  [actions.changes]\n  type = \"VARCHAR(200)\"\n",
        update_prep: "ALTER TABLE users ADD COLUMN name_new varchar(200)",
        update_sql: "UPDATE users SET name_new = left(name, 200)",
        naive: "ALTER TABLE users ALTER COLUMN name TYPE varchar(200)",
        check_sql: "SELECT count(*) FROM users WHERE _pgbaton_new_name IS DISTINCT FROM left(name, 200)",
    },
    Change {
        key: "add",
        label: "add_column email_domain with up",
        id_type: "bigint",
        yaml: "operations:\n  - add_column:\n      table: users\n      column:\n        name: email_domain\n        type: text\n        nullable: true\n      up: split_part(email, '@', 2)\n",
        toml: "[[actions]]\ntype = \"add_column\"\ntable = \"users\"\nup = \"split_part(email, '@', 2)\"\n\n  [actions.column]\n  name = \"email_domain\"\n  type = \"TEXT\"\n",
        update_prep: "ALTER TABLE users ADD COLUMN email_domain text",
        update_sql: "UPDATE users SET email_domain = split_part(email, '@', 2)",
        naive: "ALTER TABLE users ADD COLUMN email_domain text; UPDATE users SET email_domain = split_part(email, '@', 2)",
        check_sql: "SELECT count(*) FROM users WHERE _pgbaton_new_email_domain IS DISTINCT FROM split_part(email, '@', 2)",
    },
    Change {
        key: "pk",
        label: "alter_column id (primary key) integer → bigint",
        id_type: "integer",
        yaml: "operations:\n  - alter_column:\n      table: users\n      column: id\n      type: bigint\n      up: id\n      down: id\n",
        toml: "[[actions]]\ntype = \"alter_column\"\ntable = \"users\"\ncolumn = \"id\"\nup = \"id\"\ndown = \"id\"\n\n  [actions.changes]\n  type = \"BIGINT\"\n",
        update_prep: "ALTER TABLE users ADD COLUMN id_new bigint",
        update_sql: "UPDATE users SET id_new = id",
        naive: "ALTER TABLE users ALTER COLUMN id TYPE bigint",
        check_sql: "SELECT count(*) FROM users WHERE _pgbaton_new_id IS DISTINCT FROM id",
    },
];

pub(crate) fn change(key: &str) -> Result<&'static Change> {
    CHANGES
        .iter()
        .find(|c| c.key == key)
        .ok_or_else(|| anyhow!("unknown change {key:?} (type, add, pk)"))
}

/// The lock-queue benchmark's change: catalog steps that need ACCESS EXCLUSIVE, a short backfill.
pub(crate) const LOCKQUEUE_CHANGE: &str = "add";
/// The backfill throttle of the second pgbaton run of the workload benchmark (rows/s).
pub(crate) const THROTTLE: u64 = 100_000;
/// The workload benchmark's change: the one a plain ALTER makes painful.
pub(crate) const WORKLOAD_CHANGE: &str = "pk";
