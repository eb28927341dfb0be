//! The run: one batch after another, with throttles, pauses and lock retries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

use std::fmt::Write as _;

use crate::ident::{Ident, Literal};
use crate::pg::{describe, TextRow};
use crate::step::{BackfillKey, BackfillPass, BackfillSpec};

use super::controls::{controls_sql, Controls, LagClock};
use super::inspect::TableInfo;
use super::options::{BackfillOptions, LagCeiling, TriggerBypass};
use super::pace::{default_probe_sql, wants_probe, Budget, Probe};
use super::parallel::WorkerCtx;
use super::readahead::ReadAhead;
use super::sql::{
    batch_begin, ctid_batch_sql, keyset_batch_sql, range_batch_sql, BatchSql, CheckpointKey,
    KeyRange, Stats,
};
use super::status::{
    estimate_fraction, eta, BackfillOutcome, PauseReason, Progress, ProgressState, RunSettings,
    Throttle,
};
use super::walk::{adapt, adapt_to_rows, RangeWalk};
use super::{backoff, db, protocol, rows, state_error, BackfillError};
use crate::config::ConnConfig;

/// Where the walk stands (from the checkpoint).
#[derive(Clone, Debug)]
pub(super) enum Position {
    Keyset {
        last: Option<Vec<String>>,
    },
    Ctid {
        next_page: i64,
        total_pages: i64,
        relfilenode: u32,
    },
    Range(RangeWalk),
}

/// What the batch in flight covers.
#[derive(Clone, Copy, Debug)]
pub(super) enum Batch {
    Keyset,
    Ctid { to: i64 },
    Range(KeyRange),
}

pub(super) struct Runner<'a> {
    pub(super) client: &'a Client,
    pub(super) state: &'a Ident,
    pub(super) migration: &'a str,
    pub(super) spec: &'a BackfillSpec,
    pub(super) opts: &'a BackfillOptions,
    pub(super) info: TableInfo,
    pub(super) table: String,
    pub(super) bypass: TriggerBypass,
    pub(super) histogram: Histogram<u64>,
    pub(super) started: Instant,
    pub(super) paused: Duration,
    pub(super) paused_before: f64,
    pub(super) rows_done: u64,
    pub(super) rows_updated: u64,
    pub(super) rows_this_run: u64,
    pub(super) batches: u64,
    pub(super) batch_size: u32,
    pub(super) lock_retries: u32,
    pub(super) lag_clock: LagClock,
    pub(super) lag_unmeasured: u32,
    pub(super) position: Position,
    /// Opens the probe's connection (and the workers'); `None`: one connection, no budget.
    pub(super) conn: Option<&'a ConnConfig>,
    /// The controls as last read.
    pub(super) live: Controls,
    /// Why the run waited after its last batch.
    pub(super) throttle: Option<Throttle>,
    pub(super) probe: Option<Arc<Probe>>,
    /// The chunk this runner fills (its start), when it is a worker of a parallel fill.
    pub(super) chunk: Option<i64>,
    pub(super) worker: Option<WorkerCtx>,
    pub(super) probe_error: Option<String>,
    pub(super) budget: Budget,
    /// When the budget last looked at the probe.
    pub(super) budget_checked: Instant,
    /// The read-ahead's session, once the run wanted one ([`super::readahead`]).
    pub(super) reader: Option<ReadAhead>,
    /// Its connection failed: the run goes on without it.
    pub(super) read_ahead_failed: bool,
    /// The reader was asked to read for the batch in flight.
    pub(super) reading: bool,
    /// Reads of a reader already stopped.
    pub(super) reads_before: u64,
}

impl<'a> Runner<'a> {
    pub(super) fn new(
        client: &'a Client,
        state: &'a Ident,
        migration: &'a str,
        spec: &'a BackfillSpec,
        opts: &'a BackfillOptions,
        info: TableInfo,
    ) -> Runner<'a> {
        let bypass = match opts.bypass {
            TriggerBypass::Auto if info.fk_on_targets => TriggerBypass::Setting,
            other => other,
        };
        let position = match spec.key {
            BackfillKey::Columns(_) => Position::Keyset { last: None },
            BackfillKey::Ctid => Position::Ctid {
                next_page: 0,
                total_pages: info.pages,
                relfilenode: info.relfilenode,
            },
        };
        Runner {
            client,
            state,
            migration,
            spec,
            opts,
            table: spec.table.to_string(),
            info,
            bypass,
            // 1 µs .. 1 h, 3 significant digits: a few tens of kB whatever the table size.
            histogram: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("constant histogram bounds are valid"),
            started: Instant::now(),
            paused: Duration::ZERO,
            paused_before: 0.0,
            rows_done: 0,
            rows_updated: 0,
            rows_this_run: 0,
            batches: 0,
            batch_size: opts.batch_size.unwrap_or(opts.initial_batch_size).max(1),
            lock_retries: 0,
            lag_clock: LagClock::default(),
            lag_unmeasured: 0,
            position,
            conn: None,
            live: Controls::default(),
            throttle: None,
            probe: None,
            chunk: None,
            worker: None,
            probe_error: None,
            budget: Budget::default(),
            budget_checked: Instant::now(),
            reader: None,
            read_ahead_failed: false,
            reading: false,
            reads_before: 0,
        }
    }

    pub(super) fn cp(&self) -> CheckpointKey<'_> {
        CheckpointKey {
            state: self.state,
            migration: self.migration,
            table: &self.spec.table,
            pass: self.spec.pass,
            chunk: self.chunk,
        }
    }

    pub(super) fn fingerprint(&self) -> String {
        let spec = serde_json::to_string(self.spec).unwrap_or_default();
        format!("{spec} attnums={:?}", self.info.target_attnums)
    }

    pub(super) fn protocol(&self, detail: &str) -> BackfillError {
        BackfillError::Protocol {
            table: self.table.clone(),
            detail: detail.to_string(),
        }
    }

    pub(super) async fn run(
        mut self,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<BackfillOutcome, BackfillError> {
        let (resumed, already_done) = self.checkpoint().await?;
        if already_done {
            let progress = self.progress(ProgressState::Done, 0);
            on_progress(&progress);
            return Ok(self.outcome(resumed, true));
        }
        if self.spec.pass == BackfillPass::CatchUp && !self.written_during_window().await? {
            // Nobody wrote the table while the fill ran without the trigger: nothing to catch up.
            self.position = Position::Ctid {
                next_page: 0,
                total_pages: 0,
                relfilenode: self.info.relfilenode,
            };
            self.finish().await?;
            let progress = self.progress(ProgressState::Done, 0);
            on_progress(&progress);
            return Ok(self.outcome(resumed, false));
        }
        if self.chunked().await? {
            self.run_chunked(on_progress).await?;
        } else {
            self.batches(on_progress).await?;
            // The one-connection walk is over or goes on in chunks, which read no pages ahead:
            // its reader's connection closes here.
            self.stop_read_ahead();
            // `pgbaton set backfill-workers=N` during a one-connection fill: the rest in chunks.
            if !self.walk_over() && self.chunked().await? {
                self.run_chunked(on_progress).await?;
            }
        }
        self.finish().await?;
        let progress = self.progress(ProgressState::Done, self.batch_size);
        on_progress(&progress);
        Ok(self.outcome(resumed, false))
    }

    /// Batches until the walk is over (or, for a worker, until it is retired).
    pub(super) async fn batches(
        &mut self,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<(), BackfillError> {
        let lag = self.opts.max_replication_lag.is_some();
        let controls_query = controls_sql(self.state, &self.spec.table.schema, lag);
        let mut controls = self.read_controls(&controls_query, lag).await?;
        let mut consecutive_lock_failures = 0u32;
        loop {
            controls = self
                .wait_while_paused(controls, &controls_query, lag, on_progress)
                .await?;
            self.live = controls.clone();
            self.start_probe().await;
            self.refresh_after_rewrite().await?;
            let limit = self.effective_batch_size(&controls);
            let stats = self.stats(limit);
            let Some((statement, batch)) = self.batch_statement(limit, &stats) else {
                break;
            };
            self.read_ahead(batch).await;
            let index_walk = !matches!(batch, Batch::Ctid { .. });
            let mut begin = batch_begin(self.opts, self.bypass, index_walk);
            if self.bypass == TriggerBypass::Setting {
                // The trigger lets this transaction skip it only once its id is recorded.
                let _ = writeln!(
                    begin,
                    "INSERT INTO {}.backfill_xids (migration, table_schema, table_name, xid) \
                     VALUES ({}, {}, {}, pg_current_xact_id()::xid);",
                    self.state,
                    Literal::new(self.migration),
                    Literal::new(self.spec.table.schema.as_str()),
                    Literal::new(self.spec.table.name.as_str()),
                );
            }
            let batch_start = Instant::now();
            let reply = match self.execute(&begin, &statement, &controls_query).await {
                Ok(reply) => reply,
                Err(e) => {
                    self.on_batch_error(e, &mut consecutive_lock_failures, limit, on_progress)
                        .await?;
                    continue;
                }
            };
            let elapsed = batch_start.elapsed();
            consecutive_lock_failures = 0;
            if self.bypass == TriggerBypass::Auto {
                self.bypass = TriggerBypass::ReplicationRole;
            }
            let (typed, messages) = reply;
            let result = rows(&messages);
            let (batch_row, controls_row) = match (typed, result.as_slice()) {
                (Some(batch), [controls]) => (batch, *controls),
                (None, [batch, controls]) => (TextRow::from(*batch), *controls),
                (typed, simple) => {
                    let n = simple.len() + usize::from(typed.is_some());
                    return Err(self.protocol(&format!("{n} result rows")));
                }
            };
            controls = Controls::parse(controls_row, lag);
            self.live = controls.clone();
            let walked = self.apply_batch(&batch_row, batch)?;
            self.batches += 1;
            self.rows_this_run += walked;
            let _ = self.histogram.record((elapsed.as_micros() as u64).max(1));
            if self.opts.batch_size.is_none() {
                let (lo, hi) = self.bounds(&controls);
                let target = self.paced_batch_time();
                self.batch_size = match batch {
                    // The rows of a value range are known only afterwards.
                    Batch::Range(_) => adapt_to_rows(limit, walked, elapsed, target, lo, hi),
                    Batch::Keyset | Batch::Ctid { .. } => adapt(limit, elapsed, target, lo, hi),
                };
            }
            let finished = self.is_finished(walked);
            let wait = if finished {
                Duration::ZERO
            } else {
                self.pace(walked, elapsed)
            };
            let mut progress = self.progress(ProgressState::Running, limit);
            progress.last_batch_ms = Some(elapsed.as_secs_f64() * 1000.0);
            on_progress(&progress);
            if finished {
                break;
            }
            tokio::time::sleep(wait).await;
            if self.worker.as_ref().is_some_and(|w| w.shared.try_retire()) {
                // A worker of a parallel fill, fewer wanted now: its chunk stays for the others.
                return Ok(());
            }
            if self.chunk.is_none() && self.settings().workers > 1 && self.can_split() {
                // More workers wanted for a one-connection fill: `run` splits the rest.
                return Ok(());
            }
            if !self.opts.batch_delay.is_zero() {
                tokio::time::sleep(self.opts.batch_delay).await;
            }
        }
        Ok(())
    }

    /// Whether the walk has reached its end.
    pub(super) fn walk_over(&self) -> bool {
        match &self.position {
            Position::Keyset { .. } => false,
            Position::Range(walk) => walk.next.is_none(),
            Position::Ctid {
                next_page,
                total_pages,
                ..
            } => *total_pages >= 0 && next_page >= total_pages,
        }
    }

    /// A batch failed (its transaction is rolled back here). `Ok` when it is to be retried:
    /// without the replica role where that is not permitted, or after a backoff on a lock
    /// timeout, deadlock or serialization failure. Any other error fails the run.
    async fn on_batch_error(
        &mut self,
        e: tokio_postgres::Error,
        consecutive: &mut u32,
        limit: u32,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<(), BackfillError> {
        let _ = self.client.batch_execute("ROLLBACK").await;
        let code = e.code().cloned();
        if code == Some(SqlState::INSUFFICIENT_PRIVILEGE)
            && self.bypass == TriggerBypass::Auto
            && e.as_db_error()
                .is_some_and(|d| d.message().contains("session_replication_role"))
        {
            // Not a superuser: let the trigger's WHEN clause skip instead.
            self.bypass = TriggerBypass::Setting;
            return Ok(());
        }
        if crate::pg::is_retryable_lock_error(&e) || crate::pg::is_serialization_failure(&e) {
            *consecutive += 1;
            self.lock_retries += 1;
            let message = describe(&e);
            if self
                .opts
                .max_lock_retries
                .is_some_and(|max| *consecutive > max)
            {
                self.mark_failed(&message).await;
                return Err(BackfillError::LockRetries {
                    table: self.table.clone(),
                    attempts: *consecutive,
                    last: message,
                    rows_done: self.rows_done,
                });
            }
            // Smaller batches hold fewer row locks and meet fewer of the app's.
            if self.opts.batch_size.is_none() {
                self.batch_size = (self.batch_size / 2).max(self.opts.min_batch_size.max(1));
            }
            let backoff = backoff(*consecutive);
            let progress = self.progress(
                ProgressState::LockWait {
                    attempt: *consecutive,
                    backoff_ms: backoff.as_millis() as u64,
                    message,
                },
                limit,
            );
            on_progress(&progress);
            self.set_status("waiting", Some("lock timeout, retrying"))
                .await;
            tokio::time::sleep(backoff).await;
            return Ok(());
        }
        let error = db(&self.table, "running a batch", e);
        self.mark_failed(&error.to_string()).await;
        Err(error)
    }

    /// The next batch's statement (without its transaction) and what it covers, or `None` when
    /// the walk is over. `limit` is the rows target.
    pub(super) fn batch_statement(&self, limit: u32, stats: &Stats) -> Option<(BatchSql, Batch)> {
        let cp = self.cp();
        match (&self.position, &self.spec.key) {
            (Position::Keyset { last }, BackfillKey::Columns(key)) => Some((
                BatchSql::Single(keyset_batch_sql(
                    self.spec,
                    key,
                    &cp,
                    last.as_deref(),
                    limit,
                    stats,
                )),
                Batch::Keyset,
            )),
            (Position::Range(walk), _) => {
                let key = self.range_key()?;
                let range = walk.next_batch(limit)?;
                Some((
                    range_batch_sql(self.spec, key, &cp, range, stats),
                    Batch::Range(range),
                ))
            }
            (
                Position::Ctid {
                    next_page,
                    total_pages,
                    ..
                },
                _,
            ) => {
                if next_page >= total_pages {
                    return None;
                }
                let pages = ((limit as f64 / self.info.density).ceil() as i64).max(1);
                let to = (next_page + pages).min(*total_pages);
                Some((
                    ctid_batch_sql(self.spec, &cp, *next_page, to, stats),
                    Batch::Ctid { to },
                ))
            }
            // A keyset position with a ctid spec cannot happen: the position follows the key.
            (Position::Keyset { .. }, BackfillKey::Ctid) => None,
        }
    }

    /// Runs one batch transaction (`begin` holds `BEGIN` and its settings) and the controls
    /// query after it. The statement that holds the user's `up` goes alone through the extended
    /// protocol (which refuses a second statement); `begin`, the checkpoint and `COMMIT` hold
    /// none and go as simple queries. A `Single` batch is one round trip (the three requests
    /// pipelined), a `Split` one two. Returns the batch's result row when the extended protocol
    /// gave it (`Single`), and the simple-query messages (the batch row of a `Split`, then the
    /// controls row). An error leaves the transaction to the caller's `ROLLBACK`.
    pub(super) async fn execute(
        &self,
        begin: &str,
        statement: &BatchSql,
        controls: &str,
    ) -> Result<(Option<TextRow>, Vec<SimpleQueryMessage>), tokio_postgres::Error> {
        match statement {
            BatchSql::Single(sql) => {
                // Pipelined: a failed batch aborts the transaction, and the `COMMIT` behind it
                // then ends it as a rollback.
                // `join!`, not `try_join!`: every reply is awaited, and the first error in
                // the order of the requests is the one reported (after a failed `begin` the
                // batch only says that the transaction is aborted).
                let finish = format!("COMMIT;\n{controls};");
                let (began, rows, messages) = tokio::join!(
                    self.client.batch_execute(begin),
                    crate::pg::query_text(self.client, sql),
                    self.client.simple_query(&finish),
                );
                began?;
                let rows = rows?;
                Ok((rows.into_iter().next(), messages?))
            }
            BatchSql::Split {
                update,
                prelude,
                checkpoint,
            } => {
                let (began, updated) = tokio::join!(
                    self.client.batch_execute(begin),
                    crate::pg::execute_one(self.client, update),
                );
                began?;
                let updated = updated?;
                let messages = self
                    .client
                    .simple_query(&format!(
                        "{};\nCOMMIT;\n{controls};",
                        BatchSql::finish(prelude, checkpoint.as_ref(), updated)
                    ))
                    .await?;
                Ok((None, messages))
            }
        }
    }

    /// Takes a batch's result into the position and counters; returns the rows walked.
    pub(super) fn apply_batch(
        &mut self,
        row: &TextRow,
        batch: Batch,
    ) -> Result<u64, BackfillError> {
        let num = |i: usize| -> Option<u64> { row.get(i).and_then(|v| v.parse().ok()) };
        match &mut self.position {
            Position::Range(walk) => {
                let updated = num(0).ok_or_else(|| protocol(&self.table, "batch row count"))?;
                if num(1) != Some(1) {
                    return Err(protocol(&self.table, "the checkpoint row is gone"));
                }
                let key = |i: usize| -> Result<Option<i64>, BackfillError> {
                    row.get(i)
                        .map(|v| {
                            v.parse::<i64>()
                                .map_err(|_| protocol(&self.table, &format!("key value {v:?}")))
                        })
                        .transpose()
                };
                let next_key = key(2)?;
                let hi = key(3)?.ok_or_else(|| protocol(&self.table, "no batch bound"))?;
                let Batch::Range(range) = batch else {
                    return Err(protocol(&self.table, "a value range without its batch"));
                };
                walk.advance(range.lo, hi, updated, next_key);
                self.rows_done += updated;
                self.rows_updated += updated;
                Ok(updated)
            }
            Position::Keyset { last } => {
                let walked = num(0).ok_or_else(|| protocol(&self.table, "batch row count"))?;
                let updated = num(1).unwrap_or(0);
                if num(2) != Some(1) {
                    return Err(protocol(&self.table, "the checkpoint row is gone"));
                }
                if walked > 0 {
                    let key_len = match &self.spec.key {
                        BackfillKey::Columns(k) => k.len(),
                        BackfillKey::Ctid => 0,
                    };
                    let mut values = Vec::with_capacity(key_len);
                    for i in 0..key_len {
                        values.push(
                            row.get(3 + i)
                                .ok_or_else(|| protocol(&self.table, "a NULL key value"))?
                                .to_string(),
                        );
                    }
                    *last = Some(values);
                }
                self.rows_done += walked;
                self.rows_updated += updated;
                Ok(walked)
            }
            Position::Ctid {
                next_page,
                total_pages,
                relfilenode,
            } => {
                let updated = num(0).ok_or_else(|| protocol(&self.table, "batch row count"))?;
                if num(1) != Some(1) {
                    return Err(protocol(&self.table, "the checkpoint row is gone"));
                }
                let now_filenode = row
                    .get(2)
                    .and_then(|v| v.parse::<u32>().ok())
                    .unwrap_or(*relfilenode);
                if let Batch::Ctid { to } = batch {
                    *next_page = to;
                }
                self.rows_done += updated;
                self.rows_updated += updated;
                if now_filenode != *relfilenode {
                    // The table was rewritten: every ctid changed. Walk it again from the start
                    // (up to its new size), on the next batch.
                    *relfilenode = now_filenode;
                    *next_page = 0;
                    *total_pages = -1;
                }
                Ok(updated)
            }
        }
    }

    pub(super) fn is_finished(&self, walked: u64) -> bool {
        match &self.position {
            Position::Keyset { .. } => walked == 0,
            Position::Range(walk) => walk.next.is_none(),
            Position::Ctid {
                next_page,
                total_pages,
                ..
            } => *total_pages >= 0 && next_page >= total_pages,
        }
    }

    /// Rows for the next batch, within the bounds the throttle allows.
    pub(super) fn effective_batch_size(&self, controls: &Controls) -> u32 {
        match self.opts.batch_size {
            Some(pinned) => pinned.max(1),
            None => {
                let (lo, hi) = self.bounds(controls);
                self.batch_size.clamp(lo, hi)
            }
        }
    }

    /// The rows-per-second ceiling: the live control when set, else the option.
    pub(super) fn rate_limit(&self, controls: &Controls) -> Option<f64> {
        controls
            .max_rows_per_second
            .or(self.opts.max_rows_per_second)
            .filter(|r| *r > 0.0)
    }

    /// The batch duration aimed at: the live control when set, else the option.
    pub(super) fn target_batch_time(&self) -> Duration {
        self.live
            .target_batch_time
            .unwrap_or(self.opts.target_batch_time)
    }

    /// The batch duration the batch size adapts to: the target, shortened while the latency
    /// budget is over (see [`Budget::batch_scale`]).
    pub(super) fn paced_batch_time(&self) -> Duration {
        self.target_batch_time().mul_f64(self.budget.batch_scale)
    }

    /// The latency budget: the live control when set (infinite: off), else the option.
    pub(super) fn budget_fraction(&self) -> Option<f64> {
        self.live
            .max_latency_increase
            .or(self.opts.max_latency_increase)
            .filter(|b| b.is_finite())
    }

    /// What the run goes by now.
    pub(super) fn settings(&self) -> RunSettings {
        RunSettings {
            rows_per_second: self.rate_limit(&self.live),
            batch_time_ms: self.target_batch_time().as_secs_f64() * 1000.0,
            workers: self.live.workers.unwrap_or(self.opts.workers).max(1),
            max_latency_increase: self.budget_fraction(),
            probe_baseline_ms: self.probe.as_ref().map(|p| p.baseline_ms),
            probe_error: self
                .probe_error
                .clone()
                .or_else(|| self.probe.as_ref().and_then(|p| p.error())),
            read_ahead: self.reading,
        }
    }

    /// Starts the budget's probe, once, when the budget is on and the table is large enough
    /// (before the first batch, so the baseline is the application's alone; or when a live
    /// control turns the budget on, measured then).
    pub(super) async fn start_probe(&mut self) {
        if self.probe.is_some() || self.probe_error.is_some() || self.budget_fraction().is_none() {
            return;
        }
        let wanted = BackfillOptions {
            max_latency_increase: self.budget_fraction(),
            ..self.opts.clone()
        };
        if !wants_probe(&wanted, self.info.reltuples) {
            return;
        }
        let Some(conn) = self.conn else {
            self.probe_error = Some("no connection for a probe (library call without one)".into());
            return;
        };
        let sql = self
            .opts
            .probe_query
            .clone()
            .unwrap_or_else(|| default_probe_sql(self.spec));
        match Probe::start(conn, sql, self.opts.probe_interval).await {
            Ok(probe) => {
                if probe.application_at_start {
                    self.budget = Budget::cautious();
                }
                self.probe = Some(Arc::new(probe));
            }
            Err(e) => {
                tracing::warn!("backfill of {}: latency budget off: {e}", self.table);
                self.probe_error = Some(e);
            }
        }
        self.budget_checked = Instant::now();
    }

    /// The wait before the next batch, after one that walked `rows` in `elapsed`: the longer
    /// of the rows-per-second ceiling's and the latency budget's; records why in `throttle`.
    pub(super) fn pace(&mut self, rows: u64, elapsed: Duration) -> Duration {
        let mut wait = Duration::ZERO;
        self.throttle = None;
        if let Some(rps) = self.rate_limit(&self.live) {
            // A worker of a parallel fill takes its share of the ceiling.
            let share = self.worker.as_ref().map_or(1, |w| w.shared.running());
            let min = Duration::from_secs_f64(rows as f64 * f64::from(share) / rps);
            if min > elapsed {
                wait = min - elapsed;
                self.throttle = Some(Throttle::RateCap {
                    rows_per_second: rps,
                });
            }
        }
        let (Some(fraction), Some(probe)) = (self.budget_fraction(), &self.probe) else {
            self.budget = Budget::default();
            return wait;
        };
        let workers = self.worker.as_ref().map_or(1, |w| w.shared.running());
        let since = std::mem::replace(&mut self.budget_checked, Instant::now());
        if !probe.application_active(since) {
            // Nobody to protect: full speed.
            self.budget = Budget::default();
            return wait;
        }
        if !self.budget.governing {
            // An application appeared: start over cautiously rather than at full speed.
            self.budget = Budget::cautious();
        }
        if let Some(probe_ms) = probe.latency_ms(since) {
            let (delay, mut why) =
                self.budget
                    .after_batch(probe_ms, probe.baseline_ms, fraction, elapsed, workers);
            if let Some(Throttle::Budget { lock_wait_ms, .. }) = &mut why {
                *lock_wait_ms = probe.lock_wait_ms(since);
            }
            if delay > wait {
                wait = delay;
                self.throttle = why;
            }
        }
        wait
    }

    /// Adaptive bounds; a rows-per-second ceiling caps a batch at one second's worth.
    pub(super) fn bounds(&self, controls: &Controls) -> (u32, u32) {
        let mut hi = self.opts.max_batch_size.max(1);
        if let Some(rps) = self.rate_limit(controls) {
            hi = hi.min((rps.ceil() as u32).max(1));
        }
        (self.opts.min_batch_size.max(1).min(hi), hi)
    }

    pub(super) async fn read_controls(
        &self,
        sql: &str,
        lag: bool,
    ) -> Result<Controls, BackfillError> {
        let messages = self
            .client
            .simple_query(sql)
            .await
            .map_err(|source| state_error("reading controls", source))?;
        let rows = rows(&messages);
        let row = rows
            .first()
            .ok_or_else(|| self.protocol("no controls row"))?;
        Ok(Controls::parse(row, lag))
    }

    /// Why the backfill must wait now, if it must.
    pub(super) fn pause_reason(&mut self, controls: &Controls) -> Option<PauseReason> {
        self.lag_unmeasured = controls.unmeasured;
        if controls.paused {
            return Some(PauseReason::Operator);
        }
        let ceiling = self.opts.max_replication_lag?;
        let (current, replayed) = (controls.current_lsn?, controls.min_replay_lsn?);
        let lag_bytes = current.saturating_sub(replayed);
        let age = self.lag_clock.observe(Instant::now(), current, replayed);
        let lag_seconds = age
            .as_secs_f64()
            .max(controls.replay_lag_seconds.unwrap_or(0.0));
        let over = match ceiling {
            LagCeiling::Bytes(max) => lag_bytes > max,
            LagCeiling::Time(max) => lag_seconds > max.as_secs_f64(),
        };
        over.then_some(PauseReason::ReplicationLag {
            lag_bytes: Some(lag_bytes),
            lag_seconds: Some(lag_seconds),
        })
    }

    pub(super) async fn wait_while_paused(
        &mut self,
        mut controls: Controls,
        sql: &str,
        lag: bool,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<Controls, BackfillError> {
        let mut last_reason: Option<PauseReason> = None;
        while let Some(reason) = self.pause_reason(&controls) {
            let since = Instant::now();
            let changed = last_reason.as_ref().map(std::mem::discriminant)
                != Some(std::mem::discriminant(&reason));
            self.throttle = Some(match reason {
                PauseReason::Operator => Throttle::Paused,
                PauseReason::ReplicationLag { .. } => Throttle::Lag,
            });
            let progress = self.progress(ProgressState::Paused(reason.clone()), self.batch_size);
            if changed {
                on_progress(&progress);
            }
            self.set_status("paused", Some(&reason.describe())).await;
            last_reason = Some(reason);
            tokio::time::sleep(self.opts.poll_interval).await;
            self.paused += since.elapsed();
            controls = self.read_controls(sql, lag).await?;
        }
        if last_reason.is_some() {
            self.throttle = None;
            let progress = self.progress(ProgressState::Running, self.batch_size);
            on_progress(&progress);
        }
        Ok(controls)
    }

    pub(super) fn stats(&self, batch_size: u32) -> Stats {
        Stats {
            batch_size,
            rate: self.rate(),
            p50_ms: self.quantile_ms(0.5),
            p99_ms: self.quantile_ms(0.99),
            paused_seconds: self.paused_before + self.paused.as_secs_f64(),
            settings: self.settings().to_string(),
            throttle: self.throttle.as_ref().map(|t| t.to_string()),
        }
    }

    pub(super) fn rate(&self) -> f64 {
        let active = self
            .started
            .elapsed()
            .saturating_sub(self.paused)
            .as_secs_f64();
        if active > 0.0 {
            self.rows_this_run as f64 / active
        } else {
            0.0
        }
    }

    pub(super) fn quantile_ms(&self, q: f64) -> f64 {
        if self.histogram.is_empty() {
            0.0
        } else {
            self.histogram.value_at_quantile(q) as f64 / 1000.0
        }
    }

    pub(super) fn progress(&self, state: ProgressState, batch_size: u32) -> Progress {
        let done = state == ProgressState::Done;
        let rows_estimate = (self.info.reltuples > 0.0).then(|| self.info.reltuples.round() as u64);
        let walked = match &self.position {
            Position::Ctid {
                next_page,
                total_pages,
                ..
            } => Some((*next_page as f64, *total_pages as f64)),
            Position::Range(walk) => Some(walk.position()),
            Position::Keyset { .. } => None,
        };
        let fraction = estimate_fraction(done, self.rows_done, rows_estimate, walked);
        let rate = self.rate();
        Progress {
            table: self.table.clone(),
            pass: self.spec.pass,
            state,
            rows_done: self.rows_done,
            rows_updated: self.rows_updated,
            rows_estimate,
            fraction,
            rate,
            eta_seconds: eta(done, fraction, self.rows_done, rows_estimate, Some(rate)),
            batch_size,
            batches: self.batches,
            batch_p50_ms: self.quantile_ms(0.5),
            batch_p99_ms: self.quantile_ms(0.99),
            paused_seconds: self.paused_before + self.paused.as_secs_f64(),
            elapsed_seconds: self.started.elapsed().as_secs_f64(),
            lag_unmeasured: self.lag_unmeasured,
            settings: self.settings(),
            throttle: self.throttle.clone(),
            last_batch_ms: None,
        }
    }

    pub(super) fn outcome(&self, resumed: bool, already_done: bool) -> BackfillOutcome {
        BackfillOutcome {
            rows_done: self.rows_done,
            rows_updated: self.rows_updated,
            batches: self.batches,
            elapsed: self.started.elapsed(),
            paused: self.paused,
            resumed,
            already_done,
            bypass: self.bypass,
            lock_retries: self.lock_retries,
            batch_p50_ms: self.quantile_ms(0.5),
            batch_p99_ms: self.quantile_ms(0.99),
            read_ahead_reads: self.read_ahead_reads(),
        }
    }
}
