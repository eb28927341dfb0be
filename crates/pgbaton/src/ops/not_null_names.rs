//! PostgreSQL 18 keeps NOT NULL constraints in `pg_constraint`, named when they are made after
//! the column as it is called *then*: `SET NOT NULL` on a copy `_pgbaton_new_email` (or a copy
//! created `NOT NULL`, or one that becomes an identity or part of a primary key) leaves
//! `users__pgbaton_new_email_not_null` behind once the copy is renamed to `email`. After the
//! contract's column renames, each NOT NULL constraint of the table whose name still carries
//! pgbaton's prefix is renamed to what PostgreSQL would have chosen for the column as it is
//! called now (`<table>_<column>_not_null`, shortened to 63 bytes the way the server shortens
//! it, `not_null1`, `not_null2`, ... when the name is taken in the schema). Catalog only.
//! Servers before 18 have no such constraints: nothing is planned for them.

use crate::ident::{Literal, QualName};
use crate::ops::duplicate::do_block;
use crate::plan::PlanContext;

/// The first server version with NOT NULL constraints in `pg_constraint`.
const PG18: i32 = 180000;

/// The rename of `table`'s NOT NULL constraints that still carry a temporary name, for the
/// contract after the column renames; `None` before PostgreSQL 18.
pub fn rename_temporary_not_null_constraints(
    ctx: &PlanContext,
    table: &QualName,
) -> Option<String> {
    if ctx.server_version_num < PG18 {
        return None;
    }
    Some(do_block(&format!(
        "DECLARE
  r record;
  label text;
  n1 text;
  n2 text;
  want text;
  pass int;
BEGIN
  FOR r IN
    SELECT k.conname, k.connamespace, c.relname, a.attname
    FROM pg_constraint k
    JOIN pg_class c ON c.oid = k.conrelid
    JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
    WHERE k.conrelid = {regclass} AND k.contype = 'n' AND strpos(k.conname, '_pgbaton_') > 0
  LOOP
    pass := 0;
    LOOP
      label := 'not_null' || CASE WHEN pass = 0 THEN '' ELSE pass::text END;
      n1 := r.relname;
      n2 := r.attname;
      WHILE octet_length(n1) + octet_length(n2) + octet_length(label) + 2 > 63 LOOP
        IF octet_length(n1) > octet_length(n2) THEN
          n1 := left(n1, -1);
        ELSE
          n2 := left(n2, -1);
        END IF;
      END LOOP;
      want := n1 || '_' || n2 || '_' || label;
      EXIT WHEN NOT EXISTS (
        SELECT 1 FROM pg_constraint WHERE conname = want AND connamespace = r.connamespace);
      pass := pass + 1;
    END LOOP;
    EXECUTE format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', {table}, r.conname, want);
  END LOOP;
END",
        regclass = table.regclass(),
        table = Literal::new(table.to_string()),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::common::testing::ctx;

    #[test]
    fn only_from_postgresql_18_on() {
        let table = QualName::new("public", "users");
        assert_eq!(
            rename_temporary_not_null_constraints(&ctx(170000), &table),
            None
        );
        let sql =
            rename_temporary_not_null_constraints(&ctx(180004), &table).expect("planned on 18");
        assert!(sql.starts_with("DO $_pgbaton_$"), "{sql}");
        assert!(
            sql.contains("k.conrelid = '\"public\".\"users\"'::regclass"),
            "{sql}"
        );
        assert!(
            sql.contains("%I TO %I', '\"public\".\"users\"', r.conname, want)"),
            "{sql}"
        );
    }
}
