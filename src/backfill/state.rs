//! The state tables this module owns (`backfills`, `backfill_xids`, `controls`) and the
//! operator controls (pause, resume, rate limit) written to them from any machine.

use tokio_postgres::Client;

use crate::ident::{Ident, Literal};

use super::{state_error, BackfillError};

/// Idempotent DDL for the tables this module owns in the state schema (the schema itself is
/// created by `state::init`).
pub fn state_ddl(state_schema: &Ident) -> Vec<String> {
    let s = state_schema;
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.backfills (
    migration text NOT NULL,
    table_schema text NOT NULL,
    table_name text NOT NULL,
    -- what the checkpoint belongs to: the backfill spec and the filled columns' attnums, so
    -- a migration rolled back and started again under the same name starts from zero
    fingerprint text NOT NULL,
    key_columns text[],
    last_key text[],
    last_page bigint,
    total_pages bigint,
    relfilenode oid,
    -- a value-range walk (single-column integer key): the key's min and max when it started
    key_min bigint,
    key_max bigint,
    rows_done bigint NOT NULL DEFAULT 0,
    rows_updated bigint NOT NULL DEFAULT 0,
    rows_estimate bigint,
    batches bigint NOT NULL DEFAULT 0,
    batch_size integer,
    rate double precision,
    batch_p50_ms double precision,
    batch_p99_ms double precision,
    paused_seconds double precision NOT NULL DEFAULT 0,
    pause_reason text,
    status text NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'paused', 'waiting', 'failed', 'done')),
    error text,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- 'fill', or 'catch_up' (the rows written during a fill that ran without the trigger)
    pass text NOT NULL DEFAULT 'fill',
    PRIMARY KEY (migration, table_schema, table_name, pass)
)"
        ),
        // A state schema made before catch-up passes existed: the pass joins the key.
        format!(
            "ALTER TABLE {s}.backfills ADD COLUMN IF NOT EXISTS pass text NOT NULL DEFAULT 'fill'"
        ),
        format!(
            "DO $_pgbaton_$
BEGIN
  IF NOT EXISTS (
      SELECT 1 FROM pg_constraint c JOIN pg_attribute a
          ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
       WHERE c.conrelid = {table}::regclass AND c.contype = 'p' AND a.attname = 'pass') THEN
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I, ADD PRIMARY KEY \
                    (migration, table_schema, table_name, pass)', {table},
        (SELECT conname FROM pg_constraint WHERE conrelid = {table}::regclass AND contype = 'p'));
  END IF;
END
$_pgbaton_$",
            table = Literal::new(format!("{s}.backfills"))
        ),
        // A state schema made before value-range walks existed gets their columns. (Until it
        // does, such walks read the key's bounds again on every run: see `Runner::checkpoint`.)
        format!(
            "ALTER TABLE {s}.backfills ADD COLUMN IF NOT EXISTS key_min bigint, \
             ADD COLUMN IF NOT EXISTS key_max bigint"
        ),
        // The transaction id of every batch of a backfill with a write window (no key: `xid`
        // has no btree order; the catch-up hashes them).
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.backfill_xids (
    migration text NOT NULL,
    table_schema text NOT NULL,
    table_name text NOT NULL,
    xid xid NOT NULL
)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.controls (
    schema_name text PRIMARY KEY,
    paused boolean NOT NULL DEFAULT false,
    max_rows_per_second double precision CHECK (max_rows_per_second > 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT current_user
)"
        ),
    ]
}

/// Pauses every backfill of `schema` between batches (from any machine).
pub async fn pause(
    client: &Client,
    state_schema: &Ident,
    schema: &Ident,
) -> Result<(), BackfillError> {
    set_control(client, state_schema, schema, "paused = true", "true, NULL").await
}

/// Lets the backfills of `schema` go on.
pub async fn resume(
    client: &Client,
    state_schema: &Ident,
    schema: &Ident,
) -> Result<(), BackfillError> {
    set_control(
        client,
        state_schema,
        schema,
        "paused = false",
        "false, NULL",
    )
    .await
}

/// Sets (or with `None` clears) a rows-per-second ceiling for the backfills of `schema`.
pub async fn set_rate_limit(
    client: &Client,
    state_schema: &Ident,
    schema: &Ident,
    rows_per_second: Option<f64>,
) -> Result<(), BackfillError> {
    let value = match rows_per_second {
        Some(r) if r.is_finite() && r > 0.0 => format!("{r}"),
        _ => "NULL".to_string(),
    };
    let set = format!("max_rows_per_second = {value}");
    // Keep the pause flag as it is when inserting the row for the first time.
    set_control(
        client,
        state_schema,
        schema,
        &set,
        &format!("false, {value}"),
    )
    .await
}

pub(super) async fn set_control(
    client: &Client,
    state_schema: &Ident,
    schema: &Ident,
    set: &str,
    insert_values: &str,
) -> Result<(), BackfillError> {
    let sql = format!(
        "INSERT INTO {state_schema}.controls AS c (schema_name, paused, max_rows_per_second) \
         VALUES ({}, {insert_values}) ON CONFLICT (schema_name) DO UPDATE \
         SET {set}, updated_at = now(), updated_by = current_user",
        Literal::new(schema.as_str())
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(|source| state_error("writing controls", source))
}

/// Whether the backfills of `schema` are paused by an operator.
pub async fn is_paused(
    client: &Client,
    state_schema: &Ident,
    schema: &Ident,
) -> Result<bool, BackfillError> {
    let sql = format!("SELECT paused FROM {state_schema}.controls WHERE schema_name = $1");
    let row = client
        .query_opt(&sql, &[&schema.as_str()])
        .await
        .map_err(|source| state_error("reading controls", source))?;
    Ok(row.map(|r| r.get::<_, bool>(0)).unwrap_or(false))
}

/// Removes the checkpoints of `migration` (after a rollback, or a complete).
pub async fn clear(
    client: &Client,
    state_schema: &Ident,
    migration: &str,
) -> Result<u64, BackfillError> {
    let sql = format!("DELETE FROM {state_schema}.backfill_xids WHERE migration = $1");
    client
        .execute(&sql, &[&migration])
        .await
        .map_err(|source| state_error("clearing checkpoints", source))?;
    let sql = format!("DELETE FROM {state_schema}.backfills WHERE migration = $1");
    client
        .execute(&sql, &[&migration])
        .await
        .map_err(|source| state_error("clearing checkpoints", source))
}
