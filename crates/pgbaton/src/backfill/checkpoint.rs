//! The runner's checkpoint row: created or resumed at start, status while waiting, done at
//! the end.

use crate::ident::Literal;
use crate::step::BackfillKey;

use super::options::KeyWalk;
use super::runner::{Position, Runner};
use super::sql::{finite, CheckpointKey, IntKey};
use super::walk::RangeWalk;
use super::{db, rows, state_error, BackfillError};

impl Runner<'_> {
    /// The statements that create the checkpoint row (or reset one left by another spec) and
    /// read it back; `range_columns`: the state schema has a value-range walk's columns.
    fn checkpoint_sql(&self, range_columns: bool) -> String {
        let cp = self.cp();
        let key_columns = match &self.spec.key {
            BackfillKey::Columns(cols) => format!(
                "ARRAY[{}]::text[]",
                cols.iter()
                    .map(|c| Literal::new(c.as_str()).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            BackfillKey::Ctid => "NULL".to_string(),
        };
        let (total_pages, relfilenode) = match &self.spec.key {
            BackfillKey::Ctid => (
                self.info.pages.to_string(),
                self.info.relfilenode.to_string(),
            ),
            BackfillKey::Columns(_) => ("NULL".to_string(), "NULL".to_string()),
        };
        let estimate = if self.info.reltuples >= 0.0 {
            format!("{}", self.info.reltuples.round() as i64)
        } else {
            "NULL".to_string()
        };
        let (reset_bounds, bounds) = if range_columns {
            (
                ", key_min = NULL, key_max = NULL",
                "key_min::text, key_max::text",
            )
        } else {
            ("", "NULL, NULL")
        };
        let fingerprint = Literal::new(self.fingerprint());
        let fresh = format!(
            "fingerprint = {fingerprint}, key_columns = {key_columns}, last_key = NULL, \
             last_page = CASE WHEN {total_pages}::bigint IS NULL THEN NULL ELSE 0 END, \
             total_pages = {total_pages}, relfilenode = {relfilenode}, rows_done = 0, \
             rows_updated = 0, rows_estimate = {estimate}, batches = 0, batch_size = NULL, \
             rate = NULL, batch_p50_ms = NULL, batch_p99_ms = NULL, paused_seconds = 0, \
             pause_reason = NULL, status = 'running', error = NULL, started_at = now(), \
             updated_at = now(), finished_at = NULL{reset_bounds}"
        );
        format!(
            "INSERT INTO {t} (migration, table_schema, table_name, pass, fingerprint, key_columns, \
             last_page, total_pages, relfilenode, rows_estimate) VALUES ({m}, {s}, {n}, {pass}, \
             {fingerprint}, {key_columns}, CASE WHEN {total_pages}::bigint IS NULL THEN NULL ELSE 0 END, \
             {total_pages}, {relfilenode}, {estimate}) \
             ON CONFLICT (migration, table_schema, table_name, pass) DO NOTHING;\n\
             UPDATE {t} SET {fresh} WHERE {filter} AND fingerprint <> {fingerprint};\n\
             SELECT array_to_json(last_key)::text, last_page, total_pages, relfilenode, rows_done, \
             rows_updated, status, paused_seconds, batches, batch_size, {bounds} FROM {t} \
             WHERE {filter}",
            t = cp.table(),
            m = Literal::new(self.migration),
            s = Literal::new(self.spec.table.schema.as_str()),
            n = Literal::new(self.spec.table.name.as_str()),
            pass = Literal::new(self.spec.pass.as_str()),
            filter = cp.filter(),
        )
    }

    /// Creates or reads the checkpoint. Returns (resumed, already done).
    pub(super) async fn checkpoint(&mut self) -> Result<(bool, bool), BackfillError> {
        let range_key = self.range_key().cloned();
        let range_columns = range_key.is_some() && self.state_has_range_columns().await?;
        let sql = self.checkpoint_sql(range_columns);
        let messages = self
            .client
            .simple_query(&sql)
            .await
            .map_err(|source| state_error("reading the checkpoint", source))?;
        let row = rows(&messages)
            .into_iter()
            .next()
            .ok_or_else(|| self.protocol("no checkpoint row"))?;
        let last_key: Option<Vec<String>> = match row.get(0) {
            Some(json) => Some(
                serde_json::from_str::<Vec<String>>(json)
                    .map_err(|e| self.protocol(&format!("checkpoint key {json}: {e}")))?,
            ),
            None => None,
        };
        let num = |i: usize| -> Option<i64> { row.get(i).and_then(|v| v.parse().ok()) };
        self.rows_done = num(4).unwrap_or(0).max(0) as u64;
        self.rows_updated = num(5).unwrap_or(0).max(0) as u64;
        let status = row.get(6).unwrap_or("running").to_string();
        self.paused_before = row.get(7).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let batches_before = num(8).unwrap_or(0);
        if self.opts.batch_size.is_none() {
            if let Some(b) = num(9).filter(|b| *b > 0) {
                // Continue at the size the last run had settled on.
                self.batch_size = b as u32;
            }
        }
        let stored_bounds = num(10).zip(num(11));
        // Every key up to `last_key` is done, whichever walk wrote it: a keyset walk stores the
        // last key it walked, a value-range walk the last key value it covered (or just before
        // the next key it found). So a checkpoint of either resumes with either; one that is
        // not a single integer (never written for such a key) goes on as a keyset walk.
        let range_last = match (&range_key, &last_key) {
            (None, _) => None,
            (Some(_), None) => Some(None),
            (Some(_), Some(values)) => match values.as_slice() {
                [v] => v.parse::<i64>().ok().map(Some),
                _ => None,
            },
        };
        self.position = match (&self.spec.key, range_key, range_last) {
            (BackfillKey::Columns(_), Some(key), Some(last)) => {
                let (min, max) = match stored_bounds {
                    Some(bounds) => Some(bounds),
                    None => self.key_bounds(&key, range_columns).await?,
                }
                .unwrap_or((0, -1));
                let next = match last {
                    Some(l) => l.checked_add(1),
                    None => Some(min),
                };
                Position::Range(RangeWalk::new(next, min, max))
            }
            (BackfillKey::Columns(_), ..) => Position::Keyset { last: last_key },
            (BackfillKey::Ctid, ..) => Position::Ctid {
                next_page: num(1).unwrap_or(0),
                total_pages: num(2).unwrap_or(self.info.pages),
                relfilenode: num(3).map(|r| r as u32).unwrap_or(self.info.relfilenode),
            },
        };
        Ok((batches_before > 0 || self.rows_done > 0, status == "done"))
    }

    /// Whether any statement other than a backfill's wrote the table during its write window
    /// (the window's sequence was bumped). Asked by the catch-up pass, after the dual-write
    /// trigger is installed: every writer of the window has ended by then (the trigger's lock
    /// waited for them), and every one bumped the sequence before writing a row. A sequence
    /// that is gone (dropped by hand) answers yes: the scan is the safe side.
    pub(super) async fn written_during_window(&self) -> Result<bool, BackfillError> {
        let Some(window) = &self.spec.window else {
            return Ok(true);
        };
        // `pg_sequence_last_value` is NULL for a sequence never bumped (and for no sequence).
        let row = self
            .client
            .query_one(
                "SELECT to_regclass($1) IS NULL OR pg_sequence_last_value(to_regclass($1)) IS NOT NULL",
                &[&window.writes.to_string()],
            )
            .await
            .map_err(|source| db(&self.table, "reading the write window", source))?;
        Ok(row.get::<_, bool>(0))
    }

    /// The key a value-range walk goes by, when this run walks by value ranges.
    pub(super) fn range_key(&self) -> Option<&IntKey> {
        match self.opts.key_walk {
            KeyWalk::Auto => self.info.int_key.as_ref(),
            KeyWalk::Keyset => None,
        }
    }

    /// Whether the state schema's `backfills` has the columns of a value-range walk (a state
    /// schema made by an older pgbaton, not initialized again since, does not).
    pub(super) async fn state_has_range_columns(&self) -> Result<bool, BackfillError> {
        let row = self
            .client
            .query_one(
                "SELECT count(*) = 2 FROM pg_attribute
                  WHERE attrelid = to_regclass($1) AND attname IN ('key_min', 'key_max')
                    AND NOT attisdropped",
                &[&self.cp().table()],
            )
            .await
            .map_err(|source| state_error("reading the catalog", source))?;
        Ok(row.get(0))
    }

    /// The key's min and max now (from the ends of its index), or `None` for an empty table;
    /// stored in the checkpoint when it has the columns, so a resumed run ends where this one
    /// would have. Where it does not, a resumed run reads them again: as correct (every row
    /// beyond the first max was written through the dual-write trigger), a little more work.
    pub(super) async fn key_bounds(
        &self,
        key: &IntKey,
        store: bool,
    ) -> Result<Option<(i64, i64)>, BackfillError> {
        let k = &key.column;
        let sql = format!(
            "SELECT min({k})::int8, max({k})::int8 FROM {t}",
            t = self.spec.table
        );
        let row = self
            .client
            .query_one(&sql, &[])
            .await
            .map_err(|source| db(&self.table, "reading the key's bounds", source))?;
        let bounds = row
            .get::<_, Option<i64>>(0)
            .zip(row.get::<_, Option<i64>>(1));
        if let (Some((min, max)), true) = (bounds, store) {
            let sql = format!(
                "UPDATE {} SET key_min = {min}, key_max = {max} WHERE {}",
                self.cp().table(),
                self.cp().filter()
            );
            self.client
                .batch_execute(&sql)
                .await
                .map_err(|source| state_error("writing the checkpoint", source))?;
        }
        Ok(bounds)
    }

    /// After a table rewrite (see [`Runner::apply_batch`]): the new page count, and the
    /// checkpoint back at page 0.
    pub(super) async fn refresh_after_rewrite(&mut self) -> Result<(), BackfillError> {
        let (cp_table, cp_filter) = (self.cp().table(), self.cp().filter());
        let Position::Ctid {
            next_page,
            total_pages,
            relfilenode,
        } = &mut self.position
        else {
            return Ok(());
        };
        if *total_pages >= 0 {
            return Ok(());
        }
        if self.chunk.is_some() {
            // A chunk's pages mean nothing after a rewrite. The next run walks the whole table
            // again from page 0 on one connection (a row done twice gets the same value).
            let sql = format!(
                "DELETE FROM {} WHERE {}",
                self.cp().chunks_table(),
                CheckpointKey {
                    chunk: None,
                    ..self.cp()
                }
                .filter()
            );
            let _ = self.client.batch_execute(&sql).await;
            return Err(BackfillError::Unsupported {
                table: self.table.clone(),
                reason: "the table was rewritten (VACUUM FULL, CLUSTER) during a parallel fill; \
                         run it again: it walks the table again from the start"
                    .into(),
            });
        }
        let sql = format!(
            "SELECT pg_relation_size({r}) / current_setting('block_size')::bigint, pg_relation_filenode({r})",
            r = self.spec.table.regclass()
        );
        let row = self
            .client
            .query_one(&sql, &[])
            .await
            .map_err(|source| db(&self.table, "reading the table size", source))?;
        *total_pages = row.get(0);
        *relfilenode = row.get::<_, Option<u32>>(1).unwrap_or(*relfilenode);
        *next_page = 0;
        let sql = format!(
            "UPDATE {cp_table} SET last_page = 0, total_pages = {total_pages}, \
             relfilenode = {relfilenode}, updated_at = now() WHERE {cp_filter}"
        );
        self.client
            .batch_execute(&sql)
            .await
            .map_err(|source| state_error("writing the checkpoint", source))
    }

    /// Best effort: status for `pgbaton status` while not running batches.
    pub(super) async fn set_status(&self, status: &str, reason: Option<&str>) {
        let reason = reason.map_or_else(|| "NULL".into(), |r| Literal::new(r).to_string());
        let sql = format!(
            "UPDATE {} SET status = {}, pause_reason = {reason}, throttle_reason = {reason}, \
             paused_seconds = {}, updated_at = now() WHERE {}",
            self.cp().table(),
            Literal::new(status),
            finite(self.paused_before + self.paused.as_secs_f64()),
            self.cp().filter()
        );
        let _ = self.client.batch_execute(&sql).await;
    }

    pub(super) async fn mark_failed(&self, message: &str) {
        let sql = format!(
            "UPDATE {} SET status = 'failed', error = {}, updated_at = now() WHERE {}",
            self.cp().table(),
            Literal::new(message),
            self.cp().filter()
        );
        let _ = self.client.batch_execute(&sql).await;
    }

    pub(super) async fn finish(&mut self) -> Result<(), BackfillError> {
        let stats = self.stats(self.batch_size);
        let sql = format!(
            "UPDATE {} SET status = 'done', finished_at = now(), updated_at = now(), \
             rate = {}, batch_p50_ms = {}, batch_p99_ms = {}, paused_seconds = {}, \
             pause_reason = NULL, error = NULL{} WHERE {}",
            self.cp().table(),
            finite(stats.rate),
            finite(stats.p50_ms),
            finite(stats.p99_ms),
            finite(stats.paused_seconds),
            match &self.position {
                Position::Ctid { total_pages, .. } => format!(", last_page = {total_pages}"),
                Position::Keyset { .. } | Position::Range(_) => String::new(),
            },
            self.cp().filter()
        );
        self.client
            .batch_execute(&sql)
            .await
            .map_err(|source| state_error("marking the backfill done", source))?;
        Ok(())
    }
}
