//! The state tables this module owns (`backfills`, `backfill_xids`, `controls`) and the
//! operator controls (pause, resume, rate limit) written to them from any machine.

use serde::Serialize;
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
        // Looked up by the dual-write trigger for a batch that skips it (see below).
        format!(
            "CREATE INDEX IF NOT EXISTS backfill_xids_xid ON {s}.backfill_xids USING hash (xid)"
        ),
        // A batch that cannot use `session_replication_role` sets `pgbaton.backfill` and records
        // its transaction id here first; the dual-write trigger skips a row only when both hold,
        // so no other session can switch the dual writes off by setting `pgbaton.backfill`.
        format!(
            "CREATE OR REPLACE FUNCTION {f}() RETURNS boolean LANGUAGE sql STABLE \
             SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS \
             $_pgbaton_$SELECT EXISTS (SELECT 1 FROM {s}.backfill_xids \
             WHERE xid = pg_current_xact_id_if_assigned()::xid)$_pgbaton_$",
            f = crate::triggers::bypass_function(state_schema)
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
    .into_iter()
    .chain(production_ddl(s))
    .collect()
}

/// The state of running in production: live controls (`pgbaton set`), what each backfill runs
/// with and why it slowed, and the chunks of parallel fills.
fn production_ddl(s: &Ident) -> Vec<String> {
    vec![
        // Live controls (`pgbaton set`), and what each backfill runs with and why it slowed.
        format!(
            "ALTER TABLE {s}.controls \
             ADD COLUMN IF NOT EXISTS target_batch_time_ms double precision \
                 CHECK (target_batch_time_ms > 0), \
             ADD COLUMN IF NOT EXISTS workers integer CHECK (workers BETWEEN 1 AND {MAX_WORKERS}), \
             ADD COLUMN IF NOT EXISTS max_latency_increase double precision \
                 CHECK (max_latency_increase >= 0)"
        ),
        format!(
            "ALTER TABLE {s}.backfills ADD COLUMN IF NOT EXISTS settings text, \
             ADD COLUMN IF NOT EXISTS throttle_reason text"
        ),
        // The chunks of a parallel fill (`--backfill-workers`): each is checkpointed as a
        // backfill row is, with its own walk (see `backfill::parallel`).
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.backfill_chunks (
    migration text NOT NULL,
    table_schema text NOT NULL,
    table_name text NOT NULL,
    pass text NOT NULL,
    -- key values [chunk_lo, chunk_hi] of a value-range walk, pages [chunk_lo, chunk_hi) of a
    -- ctid walk
    chunk_lo bigint NOT NULL,
    chunk_hi bigint NOT NULL,
    last_key text[],
    last_page bigint,
    rows_done bigint NOT NULL DEFAULT 0,
    rows_updated bigint NOT NULL DEFAULT 0,
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
    updated_at timestamptz NOT NULL DEFAULT now(),
    settings text,
    throttle_reason text,
    PRIMARY KEY (migration, table_schema, table_name, pass, chunk_lo)
)"
        ),
    ]
}

/// The most connections `--backfill-workers` (or `pgbaton set backfill-workers=`) may use.
pub const MAX_WORKERS: u32 = 64;

/// A setting of the running backfills that `pgbaton set KEY=VALUE` changes from any machine,
/// through the state schema's `controls` table. Every run reads it after each batch (in the
/// batch's own round trip), so the next batch uses it. A value replaces the run's own option;
/// `default` gives the option back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControlKey {
    /// `backfill-rows-per-second`: a ceiling on rows per second (the whole table's, over every
    /// worker).
    BackfillRowsPerSecond,
    /// `backfill-batch-time`: the duration the adaptive batch size aims at (`250ms`, `1s`; a
    /// bare number is milliseconds).
    BackfillBatchTime,
    /// `backfill-workers`: connections filling the table at once.
    BackfillWorkers,
    /// `max-latency-increase`: the latency budget (`50%`, `0.5`, or `off`).
    MaxLatencyIncrease,
}

impl ControlKey {
    pub const ALL: [ControlKey; 4] = [
        ControlKey::BackfillRowsPerSecond,
        ControlKey::BackfillBatchTime,
        ControlKey::BackfillWorkers,
        ControlKey::MaxLatencyIncrease,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ControlKey::BackfillRowsPerSecond => "backfill-rows-per-second",
            ControlKey::BackfillBatchTime => "backfill-batch-time",
            ControlKey::BackfillWorkers => "backfill-workers",
            ControlKey::MaxLatencyIncrease => "max-latency-increase",
        }
    }

    fn column(self) -> &'static str {
        match self {
            ControlKey::BackfillRowsPerSecond => "max_rows_per_second",
            ControlKey::BackfillBatchTime => "target_batch_time_ms",
            ControlKey::BackfillWorkers => "workers",
            ControlKey::MaxLatencyIncrease => "max_latency_increase",
        }
    }

    /// The stored value of `text` (`None`: `default`).
    fn parse_value(self, text: &str) -> Result<Option<f64>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("default") {
            return Ok(None);
        }
        let number = |s: &str| -> Result<f64, String> {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| format!("{}={text}: expected a positive number", self.name()))
        };
        match self {
            ControlKey::BackfillRowsPerSecond => number(text).map(Some),
            ControlKey::BackfillBatchTime => {
                let ms = if text.chars().all(|c| c.is_ascii_digit() || c == '.') {
                    text.parse::<f64>().ok()
                } else {
                    match text.parse::<super::LagCeiling>() {
                        Ok(super::LagCeiling::Time(d)) => Some(d.as_secs_f64() * 1000.0),
                        _ => None,
                    }
                };
                ms.filter(|ms| ms.is_finite() && *ms > 0.0)
                    .map(Some)
                    .ok_or_else(|| {
                        format!(
                            "{}={text}: expected a duration such as 250ms or 1s",
                            self.name()
                        )
                    })
            }
            ControlKey::BackfillWorkers => match text.parse::<u32>() {
                Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(Some(f64::from(n))),
                _ => Err(format!(
                    "{}={text}: expected a whole number from 1 to {MAX_WORKERS}",
                    self.name()
                )),
            },
            ControlKey::MaxLatencyIncrease => parse_latency_increase(text)
                .map(Some)
                .map_err(|e| format!("{}={text}: {e}", self.name())),
        }
    }
}

/// `50%` or `0.5` (a fraction of the baseline), or `off` (infinite).
pub fn parse_latency_increase(text: &str) -> Result<f64, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") {
        return Ok(f64::INFINITY);
    }
    let (number, scale) = match text.strip_suffix('%') {
        Some(n) => (n, 0.01),
        None => (text, 1.0),
    };
    number
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(|v| v * scale)
        .ok_or_else(|| "expected a percentage such as 50%, a fraction such as 0.5, or off".into())
}

/// One `KEY=VALUE` of `pgbaton set`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ControlSetting {
    pub key: ControlKey,
    /// The stored value (rows/s, milliseconds, workers, fraction); `None`: back to the run's
    /// own option.
    pub value: Option<f64>,
}

impl std::str::FromStr for ControlSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| format!("\"{s}\": expected KEY=VALUE"))?;
        let key = ControlKey::ALL
            .into_iter()
            .find(|k| k.name() == key.trim())
            .ok_or_else(|| {
                format!(
                    "unknown setting \"{}\" (one of: {})",
                    key.trim(),
                    ControlKey::ALL.map(|k| k.name()).join(", ")
                )
            })?;
        Ok(ControlSetting {
            key,
            value: key.parse_value(value)?,
        })
    }
}

/// Writes live settings for the backfills of `schema` (from any machine); running backfills
/// use them from their next batch.
pub async fn set_controls(
    client: &Client,
    state_schema: &Ident,
    schema: &Ident,
    settings: &[ControlSetting],
) -> Result<(), BackfillError> {
    if settings.is_empty() {
        return Ok(());
    }
    let columns = settings.iter().map(|s| s.key.column()).collect::<Vec<_>>();
    let values = settings
        .iter()
        .map(|s| match s.value {
            Some(v) if v.is_infinite() => "'Infinity'::float8".to_string(),
            Some(v) => format!("{v}"),
            None => "NULL".to_string(),
        })
        .collect::<Vec<_>>();
    let sql = format!(
        "INSERT INTO {state_schema}.controls AS c (schema_name, {}) VALUES ({}, {}) \
         ON CONFLICT (schema_name) DO UPDATE SET {}, updated_at = now(), updated_by = current_user",
        columns.join(", "),
        Literal::new(schema.as_str()),
        values.join(", "),
        columns
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(|source| state_error("writing controls", source))
}

/// The operator controls of a schema, as `pgbaton status` shows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LiveControls {
    pub paused: bool,
    pub max_rows_per_second: Option<f64>,
    pub target_batch_time_ms: Option<f64>,
    pub workers: Option<u32>,
    /// A fraction of the baseline; `None` when not set here (infinite, shown as `off`, is
    /// rendered as `null` in JSON).
    pub max_latency_increase: Option<f64>,
    pub updated_at: Option<String>,
    pub updated_by: Option<String>,
}

impl std::fmt::Display for LiveControls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if self.paused {
            parts.push("paused".to_string());
        }
        if let Some(r) = self.max_rows_per_second {
            parts.push(format!("backfill-rows-per-second={r}"));
        }
        if let Some(ms) = self.target_batch_time_ms {
            parts.push(format!("backfill-batch-time={ms}ms"));
        }
        if let Some(w) = self.workers {
            parts.push(format!("backfill-workers={w}"));
        }
        if let Some(b) = self.max_latency_increase {
            parts.push(format!("max-latency-increase={}", describe_budget(b)));
        }
        if parts.is_empty() {
            parts.push("none".to_string());
        }
        write!(f, "{}", parts.join(", "))?;
        if let (Some(at), Some(by)) = (&self.updated_at, &self.updated_by) {
            write!(f, " (set by {by} at {at})")?;
        }
        Ok(())
    }
}

/// `50%`, or `off` for an infinite budget.
pub fn describe_budget(fraction: f64) -> String {
    if fraction.is_finite() {
        format!("{:.0}%", fraction * 100.0)
    } else {
        "off".to_string()
    }
}

/// The controls of `schema` (`None`: never set).
pub async fn controls(
    client: &Client,
    state_schema: &Ident,
    schema: &Ident,
) -> Result<Option<LiveControls>, BackfillError> {
    // Through jsonb: a state schema made before the live settings existed has no such columns.
    let sql = format!(
        "SELECT paused, max_rows_per_second, (to_jsonb(c) ->> 'target_batch_time_ms')::float8, \
                (to_jsonb(c) ->> 'workers')::int, (to_jsonb(c) ->> 'max_latency_increase')::float8, \
                updated_at::text, updated_by \
           FROM {state_schema}.controls AS c WHERE schema_name = $1"
    );
    let row = client
        .query_opt(&sql, &[&schema.as_str()])
        .await
        .map_err(|source| state_error("reading controls", source))?;
    Ok(row.map(|r| LiveControls {
        paused: r.get(0),
        max_rows_per_second: r.get(1),
        target_batch_time_ms: r.get(2),
        workers: r.get::<_, Option<i32>>(3).map(|w| w.max(1) as u32),
        max_latency_increase: r.get(4),
        updated_at: r.get(5),
        updated_by: r.get(6),
    }))
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
    // A state schema made before parallel fills has no chunks.
    let sql = format!(
        "DO $_pgbaton_$ BEGIN IF to_regclass({}) IS NOT NULL THEN \
         DELETE FROM {state_schema}.backfill_chunks WHERE migration = {}; END IF; END $_pgbaton_$",
        Literal::new(format!("{state_schema}.backfill_chunks")),
        Literal::new(migration)
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(|source| state_error("clearing checkpoints", source))?;
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
