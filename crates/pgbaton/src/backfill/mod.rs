//! The backfill engine: batched, checkpointed, throttled filling of new columns in existing rows.
//! Owns the `backfills` (checkpoint and progress) and `controls` (operator pause and throttle)
//! tables of the state schema, and the SQL of every batch.
//!
//! # How a batch works
//!
//! One transaction per batch, in one or two round trips of simple-query strings:
//! `BEGIN; SET LOCAL ...; WITH <batch keys>, <update>, <checkpoint> SELECT ...; COMMIT; SELECT
//! <controls and replication lag>` (or `BEGIN; SET LOCAL ...; UPDATE ...` then `<checkpoint>;
//! COMMIT; <controls>`), so the checkpoint commits with the rows it describes and a killed run
//! resumes from the last committed batch, never from zero.
//!
//! - Keyset batches on [`BackfillKey::Columns`] (composite keys compare as rows): the first `n`
//!   keys after the checkpoint are read from the key's index, then one `UPDATE` covers the key
//!   range `(last, end]` — an index range scan, never a join that could turn into a full scan.
//!   The last key is stored as text (`to_jsonb(k) #>> '{}'`, so dates and times are ISO 8601
//!   whatever the session's `DateStyle`) and written back as an untyped literal, which
//!   PostgreSQL reads with the key column's own input function.
//! - A single-column integer key (`smallint`, `integer`, `bigint`, led by a btree index) is
//!   walked by value ranges instead ([`KeyWalk::Auto`]): the key's `min` and `max` are read once
//!   (the ends of its index) and stored in the checkpoint, then each batch updates
//!   `key >= lo AND key <= hi` with constant bounds, so no key is read before the update (the
//!   keyset walk reads every key, and its heap page when the visibility map is not set, a
//!   second time). The walk ends at the max read at start: a row with a larger key was
//!   inserted (or got that key) after the backfill started, and so was written either through
//!   the dual-write trigger or during the write window, where the catch-up pass finds it (see
//!   below); the same holds for a key that appears, later, in a gap or a range already walked. The same
//!   statement reads the next existing key after `hi` from the index, where the next batch
//!   starts and the checkpoint's `last_key` points (just before it): gaps cost no empty
//!   batches. The value width of a batch follows the rows target through the key's density
//!   (rows per key value, that of the last batch); where it is sparse enough that a
//!   batch would be more than [`RANGE_SLACK`] times its rows target wide, the batch reads the
//!   keys of its range to cap its upper bound at that many rows (a keyset walk's cost, only
//!   there), so a change from sparse to dense keys cannot make a giant batch. Rows counted are
//!   rows updated, as in a ctid walk; the fraction done is the key position.
//! - Without such a key, ctid page ranges (`ctid >= '(p,0)' AND ctid < '(q,0)'`, a TID range
//!   scan, PG14+) up to the page count at backfill start. Rows beyond it, or moved there later,
//!   need no fill: a row only moves when it is updated or inserted, and every such write went
//!   through the dual-write trigger or happened during the write window (catch-up). A table rewrite
//!   (`VACUUM FULL`, `CLUSTER`) renumbers every row; it is detected by `pg_relation_filenode`
//!   and the walk starts again from page 0 (a row done twice gets the same value).
//! - Where the dual-write trigger is installed (a catch-up pass, or a backfill without a write
//!   window), only rows whose marker is not true are updated: a live write has already made such
//!   a row right, and may have set a new column to something `up(old)` would not give. Under
//!   READ COMMITTED, a row changed by a concurrent write while the batch waits for its row lock
//!   is re-read and re-checked (EvalPlanQual): its marker is then set, and the batch skips it. A
//!   fill with a write window updates every row in its range: only the old version can write
//!   meanwhile, and a row it changes gets `up` of its new value (EvalPlanQual again), or, when
//!   the write comes after the batch, is found by the catch-up.
//! - Each batch runs with `jit = off` and `synchronous_commit = off` (see [`batch_settings`]
//!   for why both are safe and what they save), and a key batch with sequential scans and
//!   sorts turned off, so an unanalyzed table or an uncorrelated key cannot turn the key read
//!   into a full scan per batch.
//! - The write window ([`crate::step::WriteWindow`]): where the table has a dual-write trigger,
//!   the planner runs the fill *before* installing it, because a `BEFORE UPDATE` row trigger
//!   costs every updated row a tuple lock even when it does not fire (≈10% of a fill). Each
//!   batch records its transaction id (`backfill_xids`); after the trigger is installed, the
//!   catch-up pass ([`BackfillPass::CatchUp`], a ctid walk over the whole table) updates the
//!   rows whose `xmin` is no batch's (written meanwhile by the old version) and whose marker is
//!   not set — and is skipped outright when the window's statement-level trigger counted no
//!   write. The fill writes no marker: the column is added, catalog-only, with the trigger.
//!   Both passes have their own checkpoint row (`pass` column).
//! - A value-range or ctid batch runs its `UPDATE` as a plain statement and writes the
//!   checkpoint in a second round trip of the same transaction, with the row count from the
//!   command tag: counting in SQL (`WITH ... RETURNING`) costs ≈5% of the update.
//! - The batch does not pay for the dual-write trigger: with `SET LOCAL session_replication_role
//!   = replica` no ordinary trigger fires at all; where that is not permitted (it needs superuser
//!   or `GRANT SET ON PARAMETER`), or would skip the foreign-key checks of a column being
//!   filled, `SET LOCAL pgbaton.backfill = 'on'` makes the trigger's `WHEN` clause skip it.
//!
//! Batch size adapts toward a target duration; throttles (fixed delay, rows per second, the
//! replication lag ceiling, operator pause from the `controls` table) act between batches. A lock
//! timeout or deadlock rolls back only the batch in flight, which is retried after a jittered
//! backoff; done rows are never thrown away. Memory is flat in the table size.

use std::time::Duration;

use tokio_postgres::{Client, SimpleQueryMessage, SimpleQueryRow};

use crate::config::ConnConfig;
use crate::ident::Ident;
use crate::pg::describe;
use crate::step::{BackfillKey, BackfillSpec};

/// Default target duration of one batch.
pub const DEFAULT_TARGET_BATCH_TIME: Duration = Duration::from_millis(100);
/// Adaptive batch sizes stay within these bounds (rows).
pub const DEFAULT_MIN_BATCH_ROWS: u32 = 1_000;
pub const DEFAULT_MAX_BATCH_ROWS: u32 = 200_000;
/// The first batch of a run (rows), before any measurement.
pub const DEFAULT_INITIAL_BATCH_ROWS: u32 = 5_000;

/// First key of the session-level advisory lock that keeps two runs off one table: the lock is
/// `pg_advisory_lock(BACKFILL_LOCK_CLASS, <table oid>::int)` (the two-int4 key space, which does
/// not overlap the single-bigint one). `'pgbf'`.
pub const BACKFILL_LOCK_CLASS: i32 = 0x7067_6266;

mod checkpoint;
mod controls;
mod inspect;
mod options;
mod pace;
mod parallel;
mod readahead;
mod runner;
mod sql;
mod state;
mod status;
#[cfg(test)]
mod tests;
mod walk;

use inspect::inspect;
pub use options::{
    BackfillOptions, KeyWalk, LagCeiling, TriggerBypass, DEFAULT_MAX_LATENCY_INCREASE,
    DEFAULT_READ_AHEAD_MIN_ROWS,
};
pub use pace::{application_activity, our_sessions, Activity};
pub use readahead::READ_AHEAD_APPLICATION;
use runner::Runner;
use sql::{
    batch_settings, ctid_batch_sql, keyset_batch_sql, range_batch_sql, BatchSql, CheckpointKey,
    Stats,
};
pub use state::{
    clear, controls, describe_budget, is_paused, parse_latency_increase, pause, resume,
    set_controls, set_rate_limit, state_ddl, ControlKey, ControlSetting, LiveControls, MAX_WORKERS,
};
pub use status::{
    status, BackfillOutcome, BackfillStatus, PauseReason, Progress, ProgressState, RunSettings,
    Throttle,
};
use walk::{RangeWalk, DENSITY_FLOOR};

/// Why a backfill stopped. The checkpoint is intact in every case: a new run resumes.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("backfill of {table}: {context}: {}", describe(.source))]
    Db {
        table: String,
        context: String,
        source: tokio_postgres::Error,
    },

    #[error("backfill of {table}: the table does not exist")]
    TableNotFound { table: String },

    #[error("backfill of {table}: column {column} does not exist")]
    ColumnNotFound { table: String, column: String },

    #[error(
        "backfill of {table}: another session is backfilling this table (advisory lock held); \
         wait for it or stop it"
    )]
    Busy { table: String },

    #[error(
        "backfill of {table}: gave up after {attempts} lock timeouts in a row (last: {last}); \
         {rows_done} rows are done and kept, a new run continues from there"
    )]
    LockRetries {
        table: String,
        attempts: u32,
        last: String,
        rows_done: u64,
    },

    #[error("backfill of {table}: {reason}")]
    Unsupported { table: String, reason: String },

    #[error("backfill of {table}: a worker's connection: {detail}")]
    Worker { table: String, detail: String },

    #[error("backfill of {table}: unexpected reply from the server: {detail}")]
    Protocol { table: String, detail: String },

    #[error("state schema: {context}: {}", describe(.source))]
    State {
        context: String,
        source: tokio_postgres::Error,
    },
}

impl BackfillError {
    /// True when the server refused a row's data: a data exception (`22`: division by zero, a
    /// value too long), an integrity violation (`23`) or an error raised by a function (`P0`).
    pub fn is_data_error(&self) -> bool {
        match self {
            BackfillError::Db { source, .. } => source
                .code()
                .is_some_and(|c| matches!(&c.code()[..2], "22" | "23" | "P0")),
            _ => false,
        }
    }

    /// True when running the backfill again can succeed without changing the migration: lost
    /// connections, lock waits, cancellations, resource shortages, serialization failures. False
    /// for errors in the data or the expressions (SQLSTATE classes 22, 23, 42, ...), which a
    /// retry would only hit again.
    pub fn is_transient(&self) -> bool {
        let source = match self {
            BackfillError::Db { source, .. } | BackfillError::State { source, .. } => source,
            BackfillError::Busy { .. }
            | BackfillError::LockRetries { .. }
            | BackfillError::Worker { .. } => return true,
            _ => return false,
        };
        match source.code() {
            // No SQLSTATE: the connection broke.
            None => true,
            Some(code) => {
                let class = &code.code()[..2];
                // 08 connection, 40 rollback (serialization, deadlock), 53 resources,
                // 55 lock not available, 57 operator intervention (cancel, shutdown), 58 system.
                matches!(class, "08" | "40" | "53" | "55" | "57" | "58")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

/// Fills `spec`'s columns in every existing row of its table that no live write has touched,
/// batch by batch, checkpointing each batch in `state_schema.backfills`. Resumes from the
/// checkpoint of an earlier run of the same migration and spec. `on_progress` is called after
/// every batch and on every pause, lock wait and at the end.
///
/// `client` must be a direct session (not behind a transaction-mode pooler): it holds a
/// session-level advisory lock on the table for the run.
pub async fn run(
    client: &Client,
    state_schema: &Ident,
    migration: &str,
    spec: &BackfillSpec,
    opts: &BackfillOptions,
    on_progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<BackfillOutcome, BackfillError> {
    run_connected(
        client,
        None,
        state_schema,
        migration,
        spec,
        opts,
        on_progress,
    )
    .await
}

/// [`run`], with `conn` to open the latency budget's probe connection (see
/// [`BackfillOptions::max_latency_increase`]) and the workers' connections. Without it the run
/// has one connection and no budget (its status says so when a budget was asked for).
pub async fn run_connected(
    client: &Client,
    conn: Option<&ConnConfig>,
    state_schema: &Ident,
    migration: &str,
    spec: &BackfillSpec,
    opts: &BackfillOptions,
    on_progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<BackfillOutcome, BackfillError> {
    let table = spec.table.to_string();
    let info = inspect(client, spec).await?;
    // The oid's bits as an int4 key (wrapping is fine: it only has to be the same every time).
    let lock_key = info.oid as i32;
    let locked = client
        .query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&BACKFILL_LOCK_CLASS, &lock_key],
        )
        .await
        .map_err(|source| db(&table, "taking the backfill lock", source))?;
    if !locked.get::<_, bool>(0) {
        return Err(BackfillError::Busy { table });
    }
    let mut runner = Runner::new(client, state_schema, migration, spec, opts, info);
    runner.conn = conn;
    let result = runner.run(on_progress).await;
    // Best effort: a dead connection has released it already.
    let _ = client
        .query_one(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&BACKFILL_LOCK_CLASS, &lock_key],
        )
        .await;
    result
}

/// `EXPLAIN` of the batch statement a run would execute next for `spec` (after `after`, the last
/// key of the previous batch, for a key walk; from page 0 for a ctid walk), with `limit` rows,
/// walking a key as `key_walk` says. A value-range batch is as wide as `limit` rows at the
/// key's average density (row estimate over the key's span), so a sparse key shows the capped
/// batch. Nothing is changed. For `pgbaton plan --explain` and the tests that check no batch
/// scans the whole table. Needs the state schema (the statement updates the checkpoint table).
pub async fn explain_batch(
    client: &Client,
    state_schema: &Ident,
    migration: &str,
    spec: &BackfillSpec,
    after: Option<&[String]>,
    limit: u32,
    key_walk: KeyWalk,
) -> Result<String, BackfillError> {
    let table = spec.table.to_string();
    let info = inspect(client, spec).await?;
    let cp = CheckpointKey {
        state: state_schema,
        migration,
        table: &spec.table,
        pass: spec.pass,
        chunk: None,
    };
    let int_key = info.int_key.as_ref().filter(|_| key_walk == KeyWalk::Auto);
    let statement = match (&spec.key, int_key) {
        (BackfillKey::Columns(_), Some(key)) => {
            // The key's bounds now, and its average density from the row estimate: the
            // batch a run makes once it has measured that density.
            let k = &key.column;
            let row = client
                .query_one(
                    &format!("SELECT min({k})::int8, max({k})::int8 FROM {}", spec.table),
                    &[],
                )
                .await
                .map_err(|source| db(&table, "reading the key's bounds", source))?;
            let (min, max) = (
                row.get::<_, Option<i64>>(0).unwrap_or(1),
                row.get::<_, Option<i64>>(1).unwrap_or(1),
            );
            let lo = match after {
                Some([last]) => last
                    .parse::<i64>()
                    .ok()
                    .and_then(|l| l.checked_add(1))
                    .unwrap_or(min),
                _ => min,
            };
            let mut walk = RangeWalk::new(Some(lo), min, max.max(lo));
            let span = (i128::from(max) - i128::from(min) + 1).max(1) as f64;
            walk.density = (info.reltuples.max(1.0) / span).clamp(DENSITY_FLOOR, 1.0);
            let range = walk
                .next_batch(limit.max(1))
                .ok_or_else(|| protocol(&table, "no batch to explain"))?;
            range_batch_sql(spec, key, &cp, range, &Stats::default())
        }
        (BackfillKey::Columns(key), None) => BatchSql::Single(keyset_batch_sql(
            spec,
            key,
            &cp,
            after,
            limit.max(1),
            &Stats::default(),
        )),
        (BackfillKey::Ctid, _) => {
            let pages = ((f64::from(limit.max(1)) / info.density).ceil() as i64).max(1);
            ctid_batch_sql(spec, &cp, 0, pages, &Stats::default())
        }
    };
    // With the batch's own planner settings, rolled back.
    let settings = batch_settings(
        &BackfillOptions::default(),
        TriggerBypass::Setting,
        matches!(spec.key, BackfillKey::Columns(_)),
    );
    // Each statement holds the user's `up`: alone, through the extended protocol.
    let explained = async {
        client.batch_execute(&format!("BEGIN;\n{settings}")).await?;
        let mut lines = Vec::new();
        for sql in statement.explained() {
            for row in crate::pg::query_text(client, &format!("EXPLAIN (COSTS OFF) {sql}")).await? {
                lines.extend(row.get(0).map(str::to_string));
            }
        }
        Ok(lines.join("\n"))
    }
    .await;
    let _ = client.batch_execute("ROLLBACK").await;
    explained.map_err(|source| db(&table, "explaining a batch", source))
}

fn protocol(table: &str, detail: &str) -> BackfillError {
    BackfillError::Protocol {
        table: table.to_string(),
        detail: detail.to_string(),
    }
}

fn db(table: &str, context: &str, source: tokio_postgres::Error) -> BackfillError {
    BackfillError::Db {
        table: table.to_string(),
        context: context.to_string(),
        source,
    }
}

fn state_error(context: &str, source: tokio_postgres::Error) -> BackfillError {
    BackfillError::State {
        context: context.to_string(),
        source,
    }
}

/// Exponential backoff with full jitter: up to 50 ms × 2^attempt, at most 5 s.
fn backoff(attempt: u32) -> Duration {
    crate::pg::jittered_backoff(Duration::from_millis(50), Duration::from_secs(5), attempt)
}

/// The data rows of a simple-query reply, in order.
fn rows(messages: &[SimpleQueryMessage]) -> Vec<&SimpleQueryRow> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect()
}
