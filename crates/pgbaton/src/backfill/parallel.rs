//! Parallel fill (`--backfill-workers N`): what is left of a value-range or ctid walk is split
//! into chunks (key values or pages), each with its own checkpoint row in `backfill_chunks`,
//! written in the same transaction as each of its batches. Each worker is a connection of its
//! own that takes the next chunk nobody holds (a session advisory lock on the chunk, which a
//! killed worker's session gives back), and fills it batch by batch as a one-worker run fills
//! a table: same batch SQL, same write-window and catch-up semantics (each batch records its
//! transaction id; the catch-up pass after the fill is unchanged and runs on one connection).
//!
//! The chunks are made once, by the first run that uses more than one worker; every later run
//! — after a kill, with the same number of workers or another, or with one — continues from
//! them, so no row is walked twice and none is skipped. When the last chunk is done, their
//! counts go into the backfill's own row and the chunks are deleted, in one transaction.
//!
//! The rows-per-second ceiling and the latency budget govern the total: each worker takes its
//! share of the ceiling, and all of them wait on the one probe (started before the workers),
//! each worker waiting its share of the budget's pace (see [`super::pace::worker_delay`]),
//! which it keeps from one chunk to the next. `pgbaton set backfill-workers`
//! takes effect while the fill runs: a worker over the new count stops after its batch (its
//! chunk stays for the others), and new ones start within a poll interval.
//!
//! A keyset walk (a key that is not a single integer column) has no ranges to split: it runs
//! on one connection whatever the count, and says so in its settings.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio_postgres::Client;

use crate::ident::Literal;
use crate::step::BackfillPass;

use super::controls::controls_sql;
use super::runner::{Position, Runner};
use super::status::Progress;
use super::walk::RangeWalk;
use super::{db, rows, state_error, BackfillError};

/// First key of a chunk's advisory lock (`'pgbc'`); the second is a hash of the chunk.
pub(super) const CHUNK_LOCK_CLASS: i32 = 0x7067_6263;
/// Chunks made per worker (at least [`MIN_CHUNKS`]): enough that a run with more workers later
/// still has chunks to share out, few enough that their rows stay small.
const CHUNKS_PER_WORKER: i64 = 4;
const MIN_CHUNKS: i64 = 16;

/// One chunk: `[lo, hi]` key values (value ranges) or `[lo, hi)` pages (ctid), and where its
/// walk stands.
#[derive(Clone, Debug)]
pub(super) struct Chunk {
    pub(super) lo: i64,
    pub(super) hi: i64,
    last_key: Option<i64>,
    last_page: Option<i64>,
}

/// What the workers of one run share.
#[derive(Debug)]
pub(super) struct Shared {
    /// Workers wanted (the option, or `pgbaton set backfill-workers`).
    desired: AtomicU32,
    /// Workers running.
    active: AtomicU32,
    /// Rows walked and updated by every worker, on top of the backfill's own row.
    rows_done: AtomicU64,
    rows_updated: AtomicU64,
}

impl Shared {
    pub(super) fn desired(&self) -> u32 {
        self.desired.load(Ordering::Relaxed).max(1)
    }

    /// Workers filling now (at least one: the caller), at most the ones wanted: what a
    /// worker's share of the rate cap and of the budget's pace is taken of.
    pub(super) fn running(&self) -> u32 {
        self.active.load(Ordering::Relaxed).clamp(1, self.desired())
    }

    pub(super) fn set_desired(&self, n: u32) {
        self.desired.store(n.max(1), Ordering::Relaxed);
    }

    /// Takes one worker off when more run than wanted; true for the caller to stop.
    pub(super) fn try_retire(&self) -> bool {
        let desired = self.desired();
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                (a > desired).then(|| a - 1)
            })
            .is_ok()
    }
}

/// A worker's place in its run.
#[derive(Clone, Debug)]
pub(super) struct WorkerCtx {
    pub(super) shared: Arc<Shared>,
    /// Rows this worker's chunk runner had reported, to add only what is new.
    reported: (u64, u64),
}

impl<'a> Runner<'a> {
    /// Whether this run fills in chunks: a fill walked by value ranges or ctid, with more than
    /// one worker wanted or chunks left by an earlier run.
    pub(super) async fn chunked(&self) -> Result<bool, BackfillError> {
        if !self.can_split() {
            return Ok(false);
        }
        Ok(self.settings().workers > 1 || self.chunk_count().await? > 0)
    }

    /// A fill walked by value ranges or ctid, with a connection config to open workers.
    pub(super) fn can_split(&self) -> bool {
        self.spec.pass == BackfillPass::Fill
            && self.conn.is_some()
            && matches!(self.position, Position::Range(_) | Position::Ctid { .. })
    }

    async fn chunk_count(&self) -> Result<i64, BackfillError> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {}",
            self.cp().chunks_table(),
            self.cp().filter()
        );
        let row = self
            .client
            .query_one(&sql, &[])
            .await
            .map_err(|source| state_error("reading the chunks", source))?;
        Ok(row.get(0))
    }

    /// Splits what is left of the walk into chunks, unless an earlier run did.
    async fn ensure_chunks(&self) -> Result<(), BackfillError> {
        if self.chunk_count().await? > 0 {
            return Ok(());
        }
        let (from, to) = match &self.position {
            // Key values `[from, to]`.
            Position::Range(walk) => match walk.next {
                Some(next) => (i128::from(next), i128::from(walk.max) + 1),
                None => return Ok(()),
            },
            // Pages `[from, to)`.
            Position::Ctid {
                next_page,
                total_pages,
                ..
            } => (i128::from(*next_page), i128::from(*total_pages)),
            Position::Keyset { .. } => return Ok(()),
        };
        if to <= from {
            return Ok(());
        }
        let count =
            i128::from((i64::from(self.settings().workers) * CHUNKS_PER_WORKER).max(MIN_CHUNKS));
        let width = ((to - from + count - 1) / count).max(1);
        let ends_inclusive = matches!(self.position, Position::Range(_));
        let mut values = Vec::new();
        let mut lo = from;
        while lo < to {
            let end = (lo + width).min(to);
            // `i128` bounds within the key's (or the page count's) `i64` range by construction.
            let hi = if ends_inclusive { end - 1 } else { end };
            values.push(format!("({lo}, {hi})"));
            lo = end;
        }
        let cp = self.cp();
        let sql = format!(
            "INSERT INTO {} (migration, table_schema, table_name, pass, chunk_lo, chunk_hi) \
             SELECT {}, {}, {}, {}, v.lo, v.hi FROM (VALUES {}) AS v(lo, hi) \
             ON CONFLICT DO NOTHING",
            cp.chunks_table(),
            Literal::new(self.migration),
            Literal::new(self.spec.table.schema.as_str()),
            Literal::new(self.spec.table.name.as_str()),
            Literal::new(self.spec.pass.as_str()),
            values.join(", ")
        );
        self.client
            .batch_execute(&sql)
            .await
            .map_err(|source| state_error("writing the chunks", source))
    }

    /// Fills the table with the workers; returns when every chunk is done (their counts then
    /// in the backfill's row, the chunks gone) or on the first error.
    pub(super) async fn run_chunked(
        &mut self,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<(), BackfillError> {
        self.ensure_chunks().await?;
        // What earlier runs did in the chunks counts as done.
        let sql = format!(
            "SELECT coalesce(sum(rows_done), 0)::int8, coalesce(sum(rows_updated), 0)::int8 \
             FROM {} WHERE {}",
            self.cp().chunks_table(),
            self.cp().filter()
        );
        let before = self
            .client
            .query_one(&sql, &[])
            .await
            .map_err(|source| state_error("reading the chunks", source))?;
        let (done, updated): (i64, i64) = (before.get(0), before.get(1));
        let shared = Arc::new(Shared {
            desired: AtomicU32::new(self.settings().workers),
            active: AtomicU32::new(0),
            rows_done: AtomicU64::new(self.rows_done + done.max(0) as u64),
            rows_updated: AtomicU64::new(self.rows_updated + updated.max(0) as u64),
        });
        let sink = Mutex::new(on_progress);
        let lag = self.opts.max_replication_lag.is_some();
        let controls_query = controls_sql(self.state, &self.spec.table.schema, lag);
        // The one probe of the run, started here before any worker fills (so its baseline is
        // the application's alone) and shared by every worker: a worker without it would
        // start a probe of its own for each chunk, its baseline measured while the others fill.
        self.live = self.read_controls(&controls_query, lag).await?;
        self.start_probe().await;
        let this: &Runner<'a> = self;
        let mut running = FuturesUnordered::new();
        loop {
            let left = this.chunks_left().await?;
            while shared.active.load(Ordering::Acquire) < shared.desired()
                && (running.len() as i64) < left
            {
                shared.active.fetch_add(1, Ordering::AcqRel);
                running.push(this.worker(shared.clone(), &sink));
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                Some(result) = running.next() => {
                    shared.active.fetch_sub(1, Ordering::AcqRel);
                    if !result? && running.is_empty() {
                        // Chunks left but none free (a killed run's session still holds one
                        // until the server notices): look again in a while.
                        tokio::time::sleep(this.opts.poll_interval).await;
                    }
                }
                _ = tokio::time::sleep(this.opts.poll_interval) => {
                    let controls = this.read_controls(&controls_query, lag).await?;
                    shared.set_desired(controls.workers.unwrap_or(this.opts.workers));
                }
            }
        }
        drop(running);
        // The run's last report goes by the controls as they are now, like the workers' last.
        self.live = self.read_controls(&controls_query, lag).await?;
        self.merge_chunks().await
    }

    /// Chunks not done yet.
    async fn chunks_left(&self) -> Result<i64, BackfillError> {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {} AND status <> 'done'",
            self.cp().chunks_table(),
            self.cp().filter()
        );
        let row = self
            .client
            .query_one(&sql, &[])
            .await
            .map_err(|source| state_error("reading the chunks", source))?;
        Ok(row.get(0))
    }

    /// One worker: its own connection, chunk after chunk until none is left or it is retired.
    /// Returns whether it took any chunk.
    async fn worker(
        &self,
        shared: Arc<Shared>,
        sink: &Mutex<&mut (dyn FnMut(&Progress) + Send)>,
    ) -> Result<bool, BackfillError> {
        let Some(conn) = self.conn else {
            return Ok(false);
        };
        let client = crate::pg::connect(conn)
            .await
            .map_err(|e| BackfillError::Worker {
                table: self.table.clone(),
                detail: e.to_string(),
            })?;
        // Like the migrator's own session: a killed pgbaton's workers end within a second.
        let _ = client
            .batch_execute("SET client_connection_check_interval = '1s'")
            .await;
        let mut ctx = WorkerCtx {
            shared,
            reported: (0, 0),
        };
        let mut claimed = false;
        // The batch size this worker's last chunk adapted to, and the latency budget's pace:
        // the next chunk starts there (a budget starting over at full speed with each chunk
        // would let a busy application down every few batches).
        let mut batch_size = self.batch_size;
        let mut budget = (self.budget.clone(), std::time::Instant::now());
        while let Some(chunk) = self.claim(&client).await? {
            claimed = true;
            let mut runner = self.chunk_runner(&client, &chunk, ctx.clone());
            runner.batch_size = batch_size;
            (runner.budget, runner.budget_checked) = budget.clone();
            let mut report = |p: &Progress| {
                let mut p = p.clone();
                let (done, updated) = ctx.add(p.rows_done, p.rows_updated);
                p.rows_done = done;
                p.rows_updated = updated;
                p.fraction = None;
                if let Ok(mut f) = sink.lock() {
                    (*f)(&p);
                }
            };
            let result = runner.batches(&mut report).await;
            batch_size = runner.batch_size;
            budget = (runner.budget.clone(), runner.budget_checked);
            let finished = result.is_ok() && runner.walk_over();
            if finished {
                let sql = format!(
                    "UPDATE {} SET status = 'done', updated_at = now() WHERE {}",
                    runner.cp().chunks_table(),
                    runner.cp().filter()
                );
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(|source| state_error("marking a chunk done", source))?;
            }
            let _ = client
                .query_one(
                    "SELECT pg_advisory_unlock($1, $2)",
                    &[&CHUNK_LOCK_CLASS, &chunk_lock_key(&runner, chunk.lo)],
                )
                .await;
            result?;
            ctx.reported = (0, 0);
            if !finished {
                // Retired (fewer workers wanted): the chunk stays for the others.
                return Ok(true);
            }
        }
        Ok(claimed)
    }

    /// The next chunk no worker holds, locked for this session; `None` when none is left.
    async fn claim(&self, client: &Client) -> Result<Option<Chunk>, BackfillError> {
        let cp = self.cp();
        let sql = format!(
            "SELECT chunk_lo, chunk_hi FROM {} WHERE {} AND status <> 'done' ORDER BY chunk_lo",
            cp.chunks_table(),
            cp.filter()
        );
        let candidates = client
            .query(&sql, &[])
            .await
            .map_err(|source| state_error("reading the chunks", source))?;
        for row in candidates {
            let (lo, hi): (i64, i64) = (row.get(0), row.get(1));
            let key = chunk_lock_key(self, lo);
            let locked: bool = client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2)",
                    &[&CHUNK_LOCK_CLASS, &key],
                )
                .await
                .map_err(|source| db(&self.table, "taking a chunk", source))?
                .get(0);
            if !locked {
                continue;
            }
            // Read again under the lock: another worker may have finished it meanwhile.
            let sql = format!(
                "SELECT status, last_key[1], last_page FROM {} WHERE {} AND chunk_lo = {lo}",
                cp.chunks_table(),
                cp.filter()
            );
            let messages = client
                .simple_query(&sql)
                .await
                .map_err(|source| state_error("reading a chunk", source))?;
            let current = rows(&messages);
            match current.first() {
                Some(r) if r.get(0) != Some("done") => {
                    return Ok(Some(Chunk {
                        lo,
                        hi,
                        last_key: r.get(1).and_then(|v| v.parse().ok()),
                        last_page: r.get(2).and_then(|v| v.parse().ok()),
                    }));
                }
                _ => {
                    let _ = client
                        .query_one(
                            "SELECT pg_advisory_unlock($1, $2)",
                            &[&CHUNK_LOCK_CLASS, &key],
                        )
                        .await;
                }
            }
        }
        Ok(None)
    }

    /// A runner for one chunk on a worker's connection: the walk of the chunk alone, its
    /// checkpoint in the chunk's row.
    fn chunk_runner<'b>(&'b self, client: &'b Client, chunk: &Chunk, ctx: WorkerCtx) -> Runner<'b> {
        let mut runner = Runner::new(
            client,
            self.state,
            self.migration,
            self.spec,
            self.opts,
            self.info.clone(),
        );
        runner.bypass = self.bypass;
        runner.batch_size = self.batch_size;
        runner.probe = self.probe.clone();
        runner.probe_error = self.probe_error.clone();
        runner.chunk = Some(chunk.lo);
        runner.worker = Some(ctx);
        runner.position = match &self.position {
            Position::Range(_) => {
                let next = match chunk.last_key {
                    Some(last) => last.checked_add(1),
                    None => Some(chunk.lo),
                };
                Position::Range(RangeWalk::new(next, chunk.lo, chunk.hi))
            }
            Position::Ctid { relfilenode, .. } => Position::Ctid {
                next_page: chunk.last_page.unwrap_or(chunk.lo),
                total_pages: chunk.hi,
                relfilenode: *relfilenode,
            },
            Position::Keyset { .. } => self.position.clone(),
        };
        runner
    }

    /// Every chunk is done: their counts go into the backfill's row, which then points at the
    /// walk's end, and the chunks go — in one transaction, so a kill leaves either.
    async fn merge_chunks(&mut self) -> Result<(), BackfillError> {
        let cp = self.cp();
        let end = match &self.position {
            Position::Range(walk) => format!("last_key = ARRAY[{}::text], ", walk.max),
            Position::Ctid { total_pages, .. } => format!("last_page = {total_pages}, "),
            Position::Keyset { .. } => String::new(),
        };
        let chunks = format!(
            "FROM {} AS k WHERE {}",
            cp.chunks_table(),
            cp.table_filter("k")
        );
        let sql = format!(
            "BEGIN;\n\
             UPDATE {t} SET {end}rows_done = rows_done + coalesce((SELECT sum(k.rows_done) {chunks} \
             AND k.pass = {pass}), 0), rows_updated = rows_updated + coalesce((SELECT \
             sum(k.rows_updated) {chunks} AND k.pass = {pass}), 0), batches = batches + \
             coalesce((SELECT sum(k.batches) {chunks} AND k.pass = {pass}), 0), updated_at = now() \
             WHERE {filter};\n\
             DELETE FROM {ct} WHERE {filter};\n\
             COMMIT;\n\
             SELECT rows_done, rows_updated FROM {t} WHERE {filter}",
            t = cp.table(),
            ct = cp.chunks_table(),
            pass = Literal::new(self.spec.pass.as_str()),
            filter = cp.filter(),
        );
        let messages = match self.client.simple_query(&sql).await {
            Ok(m) => m,
            Err(source) => {
                let _ = self.client.batch_execute("ROLLBACK").await;
                return Err(state_error("merging the chunks", source));
            }
        };
        let merged = rows(&messages);
        let row = merged
            .first()
            .ok_or_else(|| self.protocol("no checkpoint row"))?;
        let num = |i: usize| -> u64 { row.get(i).and_then(|v| v.parse().ok()).unwrap_or(0) };
        self.rows_this_run += num(0).saturating_sub(self.rows_done);
        self.rows_done = num(0);
        self.rows_updated = num(1);
        match &mut self.position {
            Position::Range(walk) => walk.next = None,
            Position::Ctid {
                next_page,
                total_pages,
                ..
            } => *next_page = *total_pages,
            Position::Keyset { .. } => {}
        }
        Ok(())
    }
}

impl WorkerCtx {
    /// Takes a chunk runner's counts (of its chunk so far); returns the run's totals.
    fn add(&mut self, done: u64, updated: u64) -> (u64, u64) {
        let new_done = done.saturating_sub(self.reported.0);
        let new_updated = updated.saturating_sub(self.reported.1);
        self.reported = (done, updated);
        (
            self.shared.rows_done.fetch_add(new_done, Ordering::AcqRel) + new_done,
            self.shared
                .rows_updated
                .fetch_add(new_updated, Ordering::AcqRel)
                + new_updated,
        )
    }
}

/// The second key of a chunk's advisory lock: the chunk's table, pass and start, hashed.
fn chunk_lock_key(runner: &Runner<'_>, lo: i64) -> i32 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (
        runner.migration,
        runner.info.oid,
        runner.spec.pass.as_str(),
        lo,
    )
        .hash(&mut h);
    h.finish() as i32
}
