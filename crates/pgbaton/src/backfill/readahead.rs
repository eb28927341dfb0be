//! Read-ahead: while a batch runs, a second session reads the rows the next two batches will
//! update, so they find their heap and index pages in shared buffers instead of waiting for them.
//!
//! A batch is one backend doing CPU work and, on a table that does not fit in memory, waiting
//! for reads: at 100M rows (8 GB, shared_buffers 1 GB) the filling backend spent 80% of its time
//! on CPU and 14% waiting in `DataFileRead`/`DataFilePrefetch`, and its rows per second were 12%
//! lower than at 10M rows, where everything is cached. A reader ahead of the batches overlaps
//! those reads with the batch in flight (see BENCHMARKS.md, session 7). It reads what the
//! batches will read: the next key ranges through the key's index (an index scan, so the heap
//! pages come too), or the next page ranges (a TID range scan). Its own cost is that read, once
//! per batch, on its own connection: time on a core that a one-connection fill leaves idle.
//!
//! It runs only where it cannot hurt: a one-connection walk by value ranges or pages (a
//! parallel fill keeps the cores busy already; a keyset batch's range is not known before it
//! runs) of a table estimated at [`BackfillOptions::read_ahead_min_rows`] rows or more, and only
//! while the fill runs at full speed — once the latency budget, a rate cap, a batch delay or a
//! pause slows it, an application needs the I/O and the reads stop. A read is best-effort:
//! read-only, a 20 ms lock timeout (it never queues behind a DDL's lock request), a 5 s statement
//! timeout, and its errors are ignored. Its session is named `pgbaton read-ahead`, which the
//! budget counts as pgbaton's own.
//!
//! [`BackfillOptions::read_ahead_min_rows`]: super::BackfillOptions::read_ahead_min_rows

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;
use tokio_postgres::Client;

use crate::config::ConnConfig;
use crate::ident::{quote_literal, QualName};

use super::runner::{Batch, Position, Runner};
use super::sql::{IntKey, KeyRange};

/// The session's `application_name`.
pub const READ_AHEAD_APPLICATION: &str = "pgbaton read-ahead";

/// How many batches' worth the reader reads ahead of the batch in flight: the next one and the
/// one after, so a read that waits for the disk longer than a batch still comes in time (each
/// read covers the second half of the previous one again, from shared buffers).
pub(super) const AHEAD_BATCHES: i64 = 2;

/// What the next batches will read, as far as the batch before can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ahead {
    /// Key values `lo..=hi` of a value-range walk.
    Keys { lo: i64, hi: i64 },
    /// Pages `from..to` of a ctid walk.
    Pages { from: i64, to: i64 },
}

impl Ahead {
    /// The [`AHEAD_BATCHES`] ranges after `range`, each as wide as it, up to the walk's end;
    /// `None` at the end, or when the batch's width is not fixed in advance (a capped range, see
    /// [`KeyRange::cap`]).
    pub(super) fn after_keys(range: &KeyRange) -> Option<Ahead> {
        if range.cap.is_some() || range.hi >= range.end {
            return None;
        }
        let width = i128::from(range.hi) - i128::from(range.lo) + 1;
        let hi =
            (i128::from(range.hi) + width * i128::from(AHEAD_BATCHES)).min(i128::from(range.end));
        Some(Ahead::Keys {
            lo: range.hi + 1,
            hi: i64::try_from(hi).unwrap_or(range.end),
        })
    }

    /// The pages of the [`AHEAD_BATCHES`] batches after `from..to`, as many each, up to `total`
    /// (the walk's end).
    pub(super) fn after_pages(from: i64, to: i64, total: i64) -> Option<Ahead> {
        if to >= total || to <= from {
            return None;
        }
        Some(Ahead::Pages {
            from: to,
            to: (to + (to - from) * AHEAD_BATCHES).min(total),
        })
    }

    /// The read, as one simple-query string with its transaction (no user text in it: the
    /// table and key are quoted identifiers, the bounds numbers).
    pub(super) fn sql(&self, table: &QualName, key: Option<&IntKey>) -> Option<String> {
        let select = match (self, key) {
            (Ahead::Keys { lo, hi }, Some(key)) => format!(
                "SELECT count(*) FROM {table} WHERE {table}.{k} >= {lo} AND {table}.{k} <= {hi}",
                k = key.column,
                lo = quote_literal(&lo.to_string()),
                hi = quote_literal(&hi.to_string()),
            ),
            (Ahead::Keys { .. }, None) => return None,
            (Ahead::Pages { from, to }, _) => format!(
                "SELECT count(*) FROM {table} WHERE {table}.ctid >= '({from},0)'::tid \
                 AND {table}.ctid < '({to},0)'::tid"
            ),
        };
        // An index scan, not an index-only one: the point is to bring the heap pages in.
        Some(format!(
            "BEGIN READ ONLY;\nSET LOCAL lock_timeout = '20ms';\nSET LOCAL statement_timeout = '5s';\n\
             SET LOCAL jit = off;\nSET LOCAL enable_seqscan = off;\nSET LOCAL enable_bitmapscan = off;\n\
             SET LOCAL enable_indexonlyscan = off;\n{select};\nCOMMIT"
        ))
    }
}

/// The reader: a connection and a task that runs the latest read asked for (a read asked for
/// while another runs replaces any still waiting). Dropping it stops the task.
pub(super) struct ReadAhead {
    next: watch::Sender<Option<String>>,
    reads: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ReadAhead {
    pub(super) async fn start(conn: &ConnConfig) -> Result<ReadAhead, String> {
        let client = crate::pg::connect(conn)
            .await
            .map_err(|e| format!("the read-ahead's connection: {e}"))?;
        client
            .batch_execute(&format!(
                "SET application_name = {}",
                quote_literal(READ_AHEAD_APPLICATION)
            ))
            .await
            .map_err(|e| format!("setting up the read-ahead: {}", crate::pg::describe(&e)))?;
        let (next, rx) = watch::channel(None);
        let reads = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(read_loop(client, rx, reads.clone()));
        Ok(ReadAhead { next, reads, task })
    }

    /// Asks for `sql` to be read (see [`Ahead::sql`]).
    pub(super) fn read(&self, sql: String) {
        let _ = self.next.send(Some(sql));
    }

    /// Reads done so far.
    pub(super) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

impl Runner<'_> {
    /// Before `batch` runs: asks the reader for what the batch after it will read, starting
    /// the reader first when the run wants one (see the module documentation).
    pub(super) async fn read_ahead(&mut self, batch: Batch) {
        let full_speed = self.throttle.is_none()
            && !self.budget.governing
            && self.opts.batch_delay.is_zero()
            && !self.live.paused;
        let wanted = self.opts.read_ahead
            && full_speed
            && self.chunk.is_none()
            && self.worker.is_none()
            && self.info.reltuples >= self.opts.read_ahead_min_rows as f64;
        self.reading = false;
        if !wanted || self.read_ahead_failed {
            return;
        }
        let ahead = match (batch, &self.position) {
            (Batch::Range(range), _) => Ahead::after_keys(&range),
            (
                Batch::Ctid { to },
                Position::Ctid {
                    next_page,
                    total_pages,
                    ..
                },
            ) => Ahead::after_pages(*next_page, to, *total_pages),
            _ => None,
        };
        let Some(sql) = ahead.and_then(|a| a.sql(&self.spec.table, self.range_key())) else {
            return;
        };
        if self.reader.is_none() {
            let Some(conn) = self.conn else {
                return;
            };
            match ReadAhead::start(conn).await {
                Ok(reader) => self.reader = Some(reader),
                Err(e) => {
                    tracing::warn!("backfill of {}: no read-ahead: {e}", self.table);
                    self.read_ahead_failed = true;
                    return;
                }
            }
        }
        if let Some(reader) = &self.reader {
            reader.read(sql);
            self.reading = true;
        }
    }

    /// Closes the reader's connection (the run keeps its count of reads).
    pub(super) fn stop_read_ahead(&mut self) {
        if let Some(reader) = self.reader.take() {
            self.reads_before += reader.reads();
        }
        self.reading = false;
    }

    /// Reads the reader has done so far in this run.
    pub(super) fn read_ahead_reads(&self) -> u64 {
        self.reads_before + self.reader.as_ref().map_or(0, ReadAhead::reads)
    }
}

async fn read_loop(
    client: Client,
    mut next: watch::Receiver<Option<String>>,
    reads: Arc<AtomicU64>,
) {
    while next.changed().await.is_ok() {
        let Some(sql) = next.borrow_and_update().clone() else {
            continue;
        };
        match client.batch_execute(&sql).await {
            Ok(()) => {
                reads.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::debug!("read-ahead: {}", crate::pg::describe(&e));
                if client.is_closed() {
                    return;
                }
                let _ = client.batch_execute("ROLLBACK").await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::Ident;

    fn range(lo: i64, hi: i64, end: i64, cap: Option<u64>) -> KeyRange {
        KeyRange { lo, hi, cap, end }
    }

    #[test]
    fn the_key_range_ahead_is_two_batches_wide_and_stops_at_the_end() {
        assert_eq!(
            Ahead::after_keys(&range(1, 30_000, 100_000, None)),
            Some(Ahead::Keys {
                lo: 30_001,
                hi: 90_000
            })
        );
        assert_eq!(
            Ahead::after_keys(&range(60_001, 90_000, 100_000, None)),
            Some(Ahead::Keys {
                lo: 90_001,
                hi: 100_000
            })
        );
        assert_eq!(
            Ahead::after_keys(&range(90_001, 100_000, 100_000, None)),
            None
        );
        // A capped batch's upper bound is decided by the statement: nothing to read ahead.
        assert_eq!(
            Ahead::after_keys(&range(1, 1_000_000, 2_000_000, Some(40))),
            None
        );
        // At the top of the key type.
        assert_eq!(
            Ahead::after_keys(&range(i64::MAX - 9, i64::MAX - 5, i64::MAX, None)),
            Some(Ahead::Keys {
                lo: i64::MAX - 4,
                hi: i64::MAX
            })
        );
    }

    #[test]
    fn the_page_range_ahead_is_two_batches_long_and_stops_at_the_end() {
        assert_eq!(
            Ahead::after_pages(0, 310, 1000),
            Some(Ahead::Pages { from: 310, to: 930 })
        );
        assert_eq!(
            Ahead::after_pages(620, 930, 1000),
            Some(Ahead::Pages {
                from: 930,
                to: 1000
            })
        );
        assert_eq!(Ahead::after_pages(930, 1000, 1000), None);
    }

    #[test]
    fn reads_quote_the_table_and_take_no_lock_queue() {
        let table = QualName::new(Ident::new("my schema"), Ident::new("Users\"x"));
        let key = IntKey {
            column: Ident::new("Id"),
            type_name: "bigint",
        };
        let keys = Ahead::Keys { lo: -5, hi: 7 }
            .sql(&table, Some(&key))
            .expect("a key read");
        assert!(keys.contains(
            "SELECT count(*) FROM \"my schema\".\"Users\"\"x\" WHERE \"my schema\".\"Users\"\"x\".\"Id\" >= '-5' \
             AND \"my schema\".\"Users\"\"x\".\"Id\" <= '7'"
        ));
        assert!(keys.starts_with("BEGIN READ ONLY;\nSET LOCAL lock_timeout = '20ms';"));
        assert!(keys.contains("SET LOCAL enable_indexonlyscan = off;"));
        assert!(keys.ends_with(";\nCOMMIT"));
        let pages = Ahead::Pages { from: 3, to: 9 }
            .sql(&table, None)
            .expect("a page read");
        assert!(pages
            .contains("ctid >= '(3,0)'::tid AND \"my schema\".\"Users\"\"x\".ctid < '(9,0)'::tid"));
        assert_eq!(Ahead::Keys { lo: 1, hi: 2 }.sql(&table, None), None);
    }
}
