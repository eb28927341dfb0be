//! The statements of the copies' steps that are more than one line: DO blocks that tolerate a
//! definition the new type cannot take, move a sequence or an identity to the copy.

use super::ColumnCopy;
use crate::ident::{Ident, Literal, QualName};
use crate::step::{LockLevel, Step, Work};

/// `VALIDATE CONSTRAINT` (a scan under `SHARE UPDATE EXCLUSIVE`, blocking no one). `tolerant`:
/// nothing when the constraint is gone (a tolerated constraint that did not fit the new type).
pub(crate) fn validate_step(table: &QualName, constraint: &Ident, tolerant: bool) -> Step {
    let sql = format!("ALTER TABLE {table} VALIDATE CONSTRAINT {constraint}");
    Step::transaction(
        format!("validate {constraint} on {table}"),
        Some(table.clone()),
        LockLevel::ShareUpdateExclusive,
        Work::Scan,
        vec![if tolerant {
            if_constraint_exists(table, constraint, &sql)
        } else {
            sql
        }],
    )
}

/// SQLSTATEs meaning "this default does not fit the new type": datatype_mismatch,
/// undefined_function, cannot_coerce, invalid_text_representation.
pub(super) const TOLERATED_DEFAULT: &[&str] = &["42804", "42883", "42846", "22P02"];
/// SQLSTATEs meaning "this constraint does not fit the new type": datatype_mismatch,
/// undefined_function, cannot_coerce.
pub(super) const TOLERATED_CONSTRAINT: &[&str] = &["42804", "42883", "42846"];

/// `sql` in a block that skips it when it fails with one of `states` (pgroll drops defaults and
/// constraints that do not fit a column's new type).
pub(super) fn tolerant(sql: &str, states: &[&str]) -> String {
    let conds = states
        .iter()
        .map(|s| format!("SQLSTATE '{s}'"))
        .collect::<Vec<_>>()
        .join(" OR ");
    do_block(&format!(
        "BEGIN\n  EXECUTE {};\nEXCEPTION WHEN {conds} THEN\n  NULL;\nEND",
        Literal::new(sql)
    ))
}

/// `sql`, run only when `constraint` exists on `table`.
pub(super) fn if_constraint_exists(table: &QualName, constraint: &Ident, sql: &str) -> String {
    do_block(&format!(
        "BEGIN\n  IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = {} AND conname = {}) THEN\n    EXECUTE {};\n  END IF;\nEND",
        table.regclass(),
        constraint.literal(),
        Literal::new(sql)
    ))
}

/// `DO $tag$ body $tag$` with a tag that does not occur in the body.
pub(crate) fn do_block(body: &str) -> String {
    let mut tag = "$_pgbaton_$".to_string();
    let mut i = 0u32;
    while body.contains(&tag) {
        i += 1;
        tag = format!("$_pgbaton_{i}$");
    }
    format!("DO {tag}\n{body}\n{tag}")
}

/// The copy of an identity column draws its default from the identity's sequence until complete.
pub(super) fn identity_default_sql(table: &QualName, c: &ColumnCopy) -> String {
    do_block(&format!(
        "BEGIN\n  EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT nextval(%L::regclass)', {}, {}, pg_get_serial_sequence({}, {}));\nEND",
        Literal::new(table.to_string()),
        c.target.literal(),
        Literal::new(table.to_string()),
        c.source.physical.literal()
    ))
}

/// Moves the ownership of a sequence owned by the old column (`serial`) to the copy, so dropping
/// the old column keeps it; an `integer`/`smallint` sequence becomes `bigint` with a `bigint`
/// copy. Catalog only.
pub(super) fn sequence_owner_sql(table: &QualName, c: &ColumnCopy) -> String {
    let t = Literal::new(table.to_string());
    do_block(&format!(
        "DECLARE\n  seq text := pg_get_serial_sequence({t}, {src});\nBEGIN\n  IF seq IS NULL THEN\n    RETURN;\n  END IF;\n  EXECUTE format('ALTER SEQUENCE %s OWNED BY %s.%I', seq, {t}, {dst});\n  IF (SELECT atttypid FROM pg_attribute WHERE attrelid = {rc} AND attname = {dst}) = 'bigint'::regtype\n     AND (SELECT seqtypid FROM pg_sequence WHERE seqrelid = seq::regclass) <> 'bigint'::regtype THEN\n    EXECUTE format('ALTER SEQUENCE %s AS bigint', seq);\n  END IF;\nEND",
        src = c.source.physical.literal(),
        dst = c.target.literal(),
        rc = table.regclass(),
    ))
}

/// For an identity column: drops the old column and makes the copy the identity, with the old
/// sequence's name, options and position (a maximum that was the old type's limit becomes the
/// new type's). Catalog only.
pub(super) fn identity_swap_sql(table: &QualName, c: &ColumnCopy, kind: char) -> String {
    let t = Literal::new(table.to_string());
    let generated = if kind == 'a' { "ALWAYS" } else { "BY DEFAULT" };
    do_block(&format!(
        "DECLARE
  seq regclass := pg_get_serial_sequence({t}, {src})::regclass;
  s pg_sequence%ROWTYPE;
  seqname text;
  last_value bigint;
  called boolean;
  maxclause text;
  typemax bigint;
BEGIN
  SELECT * INTO s FROM pg_sequence WHERE seqrelid = seq;
  SELECT quote_ident(n.nspname) || '.' || quote_ident(k.relname) INTO seqname
    FROM pg_class k JOIN pg_namespace n ON n.oid = k.relnamespace WHERE k.oid = seq;
  EXECUTE format('SELECT last_value, is_called FROM %s', seqname) INTO last_value, called;
  typemax := CASE s.seqtypid WHEN 'smallint'::regtype THEN 32767 WHEN 'integer'::regtype THEN 2147483647
                             ELSE 9223372036854775807 END;
  IF s.seqmax = typemax THEN
    maxclause := 'NO MAXVALUE';
  ELSE
    maxclause := 'MAXVALUE ' || s.seqmax;
  END IF;
  ALTER TABLE {table} ALTER COLUMN {dst} DROP DEFAULT;
  ALTER TABLE {table} DROP COLUMN {srci};
  ALTER TABLE {table} ALTER COLUMN {dst} SET NOT NULL;
  EXECUTE format('ALTER TABLE %s ALTER COLUMN %I ADD GENERATED {generated} AS IDENTITY (SEQUENCE NAME %s INCREMENT BY %s MINVALUE %s %s START WITH %s CACHE %s %s)',
                 {t}, {dstl}, seqname, s.seqincrement, s.seqmin, maxclause, s.seqstart, s.seqcache,
                 CASE WHEN s.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END);
  PERFORM setval(seqname::regclass, last_value, called);
END",
        src = c.source.physical.literal(),
        dst = c.target,
        dstl = c.target.literal(),
        srci = c.source.physical,
    ))
}

/// `pg_get_constraintdef` appends ` NOT VALID` to an unvalidated constraint.
pub(super) fn strip_not_valid(def: &str) -> String {
    def.strip_suffix(" NOT VALID").unwrap_or(def).to_string()
}
