//! (a), (c), (e): backfill throughput, trigger overhead, time and RSS, complete.

use super::*;

/// Sizes from this up run the lean series (see `--with-100m`).
const LEAN_ROWS: u64 = 100_000_000;

fn lean(rows: u64) -> bool {
    rows >= LEAN_ROWS
}

impl Bench {
    pub(crate) async fn backfill(&mut self) -> Result<()> {
        let mut sizes = self.args.rows.clone();
        if self.args.with_100m {
            sizes.push(100_000_000);
        }
        let parse =
            |keys: &[String]| -> Result<Vec<&Change>> { keys.iter().map(|k| change(k)).collect() };
        let changes = parse(&self.args.changes)?;
        let changes_100m = parse(&self.args.changes_100m)?;
        for &rows in &sizes {
            let changes = if lean(rows) { &changes_100m } else { &changes };
            for c in changes {
                self.backfill_one(rows, c).await?;
            }
            // Templates of this size are no longer needed.
            for id_type in ["bigint", "integer"] {
                let name = format!("tmpl_{id_type}_{rows}");
                if self.templates.contains(&name) {
                    self.drop_db(&name).await?;
                    self.templates.retain(|t| *t != name);
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn backfill_one(&mut self, rows: u64, c: &Change) -> Result<()> {
        let template = self.template(c.id_type, rows).await?;
        let load_before = loadavg();
        let mut result = BackfillResult {
            rows,
            change: c.key.into(),
            update_runs: Vec::new(),
            pgbaton_backfill_runs: Vec::new(),
            pgbaton_start_runs: Vec::new(),
            variant_runs: BTreeMap::new(),
            workers_runs: BTreeMap::new(),
            pgbaton_start_rss_mb: None,
            pgbaton_complete_s: None,
            pgbaton_complete_rss_mb: None,
            pgbaton_error: None,
            reshape_start_s: None,
            reshape_complete_s: None,
            reshape_rss_mb: None,
            reshape_error: None,
            with_writes: Vec::new(),
            load: String::new(),
        };
        // Each contender runs `repeat` times on fresh copies, alternating which goes first, so
        // that the load other users put on the machine hits both alike; the tables show the
        // best run of each.
        // The 100M-row series: one run of the single UPDATE and one of pgbaton with default
        // settings, nothing else (each run rewrites about 12 GB).
        let lean = lean(rows);
        let repeat = if lean { 1 } else { self.args.repeat.max(1) };
        for round in 0..repeat {
            let last = round + 1 == repeat;
            for update_first in [round % 2 == 0, round % 2 == 1] {
                if update_first {
                    let s = self.single_update(&template, rows, c).await?;
                    result.update_runs.push(s);
                } else if result.pgbaton_error.is_none() {
                    self.pgbaton_backfill(&template, rows, c, last, &mut result)
                        .await?;
                    if lean {
                        continue;
                    }
                    for &ms in &self.args.batch_time_variants.clone() {
                        let ms_text = ms.to_string();
                        let args = ["--backfill-batch-time", ms_text.as_str()];
                        if let Some(b) = self.pgbaton_variant(&template, rows, c, &args).await? {
                            result.variant_runs.entry(ms).or_default().push(b);
                        }
                    }
                    for &n in &self.args.workers_variants.clone() {
                        let n_text = n.to_string();
                        let args = ["--backfill-workers", n_text.as_str()];
                        if let Some(b) = self.pgbaton_variant(&template, rows, c, &args).await? {
                            result.workers_runs.entry(n).or_default().push(b);
                        }
                    }
                }
            }
        }

        if result.pgbaton_error.is_none() && !lean {
            // The light writer is an application the budget protects: its own latency with the
            // budget and without says what that protection buys.
            for budget_off in [false, true] {
                if let Some(w) = self
                    .pgbaton_with_writes(&template, rows, c, budget_off)
                    .await?
                {
                    result.with_writes.push(w);
                }
            }
        }

        if self.reshape.is_some() && !lean {
            self.reshape_backfill(&template, rows, c, &mut result)
                .await?;
        }
        result.load = format!("{load_before} → {}", loadavg());
        self.results.backfill.push(result);
        Ok(())
    }

    /// Reshape's start and complete of the change, on a fresh copy.
    async fn reshape_backfill(
        &mut self,
        template: &str,
        rows: u64,
        c: &Change,
        result: &mut BackfillResult,
    ) -> Result<()> {
        let db = self.clone_db(template, "reshape").await?;
        self.write_file(
            &format!("reshape_{}", c.key),
            &format!("1_{}.toml", c.key),
            c.toml,
        )?;
        let dir = self.work.join(format!("reshape_{}", c.key));
        self.say(format!("{rows} rows, {}: reshape migration start", c.key));
        let limit = Duration::from_secs(3 * 3600);
        if let Some(out) = self.reshape(&db, &dir, "start", limit).await? {
            if out.ok() {
                result.reshape_start_s = Some(secs(out.wall));
                result.reshape_rss_mb = Some(out.rss_mb());
                self.say(format!("reshape start: {:.2}s", secs(out.wall)));
                if let Some(done) = self.reshape(&db, &dir, "complete", limit).await? {
                    if done.ok() {
                        result.reshape_complete_s = Some(secs(done.wall));
                        result.reshape_rss_mb =
                            Some(result.reshape_rss_mb.unwrap_or(0.0).max(done.rss_mb()));
                    } else {
                        result.reshape_error = Some(format!("complete: {}", done.failure()));
                    }
                }
            } else {
                self.say(format!("reshape start FAILED: {}", out.failure()));
                result.reshape_error = Some(format!("start: {}", out.failure()));
            }
        }
        self.drop_db(&db).await?;
        Ok(())
    }

    /// The physical limit: one UPDATE of the whole table, on a fresh copy. Returns seconds.
    pub(crate) async fn single_update(
        &mut self,
        template: &str,
        rows: u64,
        c: &Change,
    ) -> Result<f64> {
        let db = self.clone_db(template, "update").await?;
        let client = connect(&self.url(&db)).await?;
        client.batch_execute(c.update_prep).await?;
        client.batch_execute("CHECKPOINT").await?;
        self.say(format!("{rows} rows, {}: single UPDATE", c.key));
        let started = Instant::now();
        client.batch_execute(c.update_sql).await?;
        let update_s = secs(started.elapsed());
        drop(client);
        self.drop_db(&db).await?;
        self.say(format!(
            "single UPDATE: {update_s:.2}s ({:.0} rows/s)",
            rows as f64 / update_s
        ));
        Ok(update_s)
    }

    /// A fresh copy of `template` with pgbaton initialized and a `CHECKPOINT` taken, and the
    /// change's migration file: (database, file).
    pub(crate) async fn pgbaton_copy(
        &mut self,
        template: &str,
        c: &Change,
        label: &str,
    ) -> Result<(String, String)> {
        let db = self.clone_db(template, label).await?;
        let file = self.write_file(
            &format!("pgbaton_{}", c.key),
            &format!("01_{}.yaml", c.key),
            c.yaml,
        )?;
        let file = file.to_string_lossy().into_owned();
        let (init, _) = self.pgbaton(&db, &["init"]).await?;
        if !init.ok() {
            bail!("pgbaton init failed: {}", init.failure());
        }
        self.exec(&db, "CHECKPOINT").await?;
        Ok((db, file))
    }

    /// `pgbaton start` on a fresh copy; on the `last` round also the trigger overhead and
    /// `complete` under load.
    pub(crate) async fn pgbaton_backfill(
        &mut self,
        template: &str,
        rows: u64,
        c: &Change,
        last: bool,
        result: &mut BackfillResult,
    ) -> Result<()> {
        let (db, file) = self.pgbaton_copy(template, c, "pgbaton").await?;
        self.say(format!("{rows} rows, {}: pgbaton start", c.key));
        let (start, parsed) = self.pgbaton(&db, &["start", &file]).await?;
        if start.ok() {
            result.pgbaton_start_runs.push(secs(start.wall));
            result.pgbaton_start_rss_mb = Some(
                result
                    .pgbaton_start_rss_mb
                    .unwrap_or(0.0)
                    .max(start.rss_mb()),
            );
            if let Some(b) = parsed.backfill_s() {
                result.pgbaton_backfill_runs.push(b);
            }
            self.say(format!(
                "pgbaton start: {:.2}s (backfill {:.2}s), peak RSS {:.1} MB",
                secs(start.wall),
                parsed.backfill_s().unwrap_or(0.0),
                start.rss_mb()
            ));
            if last {
                if !lean(rows) {
                    self.trigger_overhead(&db, rows, c).await?;
                }
                self.complete_under_load(&db, rows, c, result).await?;
            }
        } else {
            let why = parsed.error.clone().unwrap_or_else(|| start.failure());
            self.say(format!("pgbaton start FAILED: {why}"));
            result.pgbaton_error = Some(why);
        }
        self.drop_db(&db).await
    }

    /// `pgbaton start` on a fresh copy while one old-version client updates rows one statement
    /// at a time with a 1 ms pause (a few hundred writes/s on the base table): the fill's and the
    /// catch-up's seconds, and a check that every row holds `up(old)` afterwards.
    pub(crate) async fn pgbaton_with_writes(
        &mut self,
        template: &str,
        rows: u64,
        c: &Change,
        budget_off: bool,
    ) -> Result<Option<WithWrites>> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let (db, file) = self.pgbaton_copy(template, c, "writes").await?;
        let budget = if budget_off { "off" } else { "+50%" };
        self.say(format!(
            "{rows} rows, {}: pgbaton start with an old-version writer (latency budget {budget})",
            c.key
        ));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let during = std::sync::Arc::new(AtomicBool::new(false));
        let writer = {
            let client = connect(&self.url(&db)).await?;
            let (stop, during) = (stop.clone(), during.clone());
            let max = rows as i64;
            tokio::spawn(async move {
                let mut writes = 0u64;
                let (mut before_ms, mut during_ms) = (Vec::new(), Vec::new());
                let mut n: i64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    // A fixed stride over the ids: rows already filled and rows not yet.
                    let id = (n * 7_919) % max + 1;
                    let sent = Instant::now();
                    let ok = client
                        .execute(
                            "UPDATE users SET name = name || '.', email = email || '.' WHERE id = $1::int8",
                            &[&id],
                        )
                        .await
                        .is_ok();
                    let ms = sent.elapsed().as_secs_f64() * 1e3;
                    if during.load(Ordering::Relaxed) {
                        during_ms.push(ms);
                        writes += u64::from(ok);
                    } else {
                        before_ms.push(ms);
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                (writes, before_ms, during_ms)
            })
        };
        // The writer alone first: its baseline.
        tokio::time::sleep(Duration::from_secs(3)).await;
        during.store(true, Ordering::Relaxed);
        let mut args = Vec::new();
        if budget_off {
            args.extend(["--max-latency-increase", "off"]);
        }
        args.extend(["start", file.as_str()]);
        let started = self.pgbaton(&db, &args).await;
        stop.store(true, Ordering::Relaxed);
        let (writes, before_ms, during_ms) = writer.await?;
        let (writer_before, writer_during) =
            (WriterLatency::of(before_ms), WriterLatency::of(during_ms));
        let (start, parsed) = started?;
        if !start.ok() {
            self.say(format!("FAILED: {}", start.failure()));
            self.drop_db(&db).await?;
            return Ok(None);
        }
        let seconds = |prefix: &str| {
            parsed
                .steps
                .iter()
                .filter(|s| s.1.starts_with(prefix))
                .map(|s| s.4 / 1e3)
                .sum::<f64>()
        };
        let (fill_s, catch_up_s) = (seconds("backfill "), seconds("catch up on "));
        let client = connect(&self.url(&db)).await?;
        let catch_up_rows: i64 = client
            .query_one(
                "SELECT coalesce(sum(rows_updated), 0)::int8 FROM pgbaton.backfills WHERE pass = 'catch_up'",
                &[],
            )
            .await?
            .get(0);
        let wrong_rows: i64 = client.query_one(c.check_sql, &[]).await?.get(0);
        drop(client);
        self.drop_db(&db).await?;
        self.say(format!(
            "{writes} writes during start; fill {fill_s:.2}s, catch-up {catch_up_s:.2}s \
             ({catch_up_rows} rows), wrong rows {wrong_rows}; the writer's p50/p99/max \
             {:.2}/{:.2}/{:.1} ms before, {:.2}/{:.2}/{:.1} ms during",
            writer_before.p50_ms,
            writer_before.p99_ms,
            writer_before.max_ms,
            writer_during.p50_ms,
            writer_during.p99_ms,
            writer_during.max_ms
        ));
        Ok(Some(WithWrites {
            budget: budget.to_string(),
            writes,
            writer_before,
            writer_during,
            fill_s,
            catch_up_s,
            catch_up_rows: catch_up_rows.max(0) as u64,
            wrong_rows,
        }))
    }

    /// `pgbaton <options> start` on a fresh copy (e.g. `--backfill-batch-time 500`,
    /// `--backfill-workers 2`): the backfill's seconds.
    pub(crate) async fn pgbaton_variant(
        &mut self,
        template: &str,
        rows: u64,
        c: &Change,
        options: &[&str],
    ) -> Result<Option<f64>> {
        let (db, file) = self.pgbaton_copy(template, c, "variant").await?;
        self.say(format!(
            "{rows} rows, {}: pgbaton start {}",
            c.key,
            options.join(" ")
        ));
        let mut args = options.to_vec();
        args.extend(["start", file.as_str()]);
        let (start, parsed) = self.pgbaton(&db, &args).await?;
        self.drop_db(&db).await?;
        if !start.ok() {
            self.say(format!("FAILED: {}", start.failure()));
            return Ok(None);
        }
        self.say(format!(
            "backfill {:.2}s",
            parsed.backfill_s().unwrap_or(0.0)
        ));
        Ok(parsed.backfill_s())
    }

    /// UPDATE of `rows / 10` rows with the dual-write trigger disabled vs enabled, on the same
    /// table (mid-migration), alternating off, on, on, off over fresh key ranges.
    pub(crate) async fn trigger_overhead(&mut self, db: &str, rows: u64, c: &Change) -> Result<()> {
        let client = connect(&self.url(db)).await?;
        let k = (rows / 10).max(1);
        let trigger = "_pgbaton_dual_write";
        let mut result = TriggerResult {
            rows,
            change: c.key.into(),
            rows_updated: k,
            without_s: Vec::new(),
            with_s: Vec::new(),
        };
        for (i, enabled) in [false, true, true, false].into_iter().enumerate() {
            let toggle = if enabled { "ENABLE" } else { "DISABLE" };
            client
                .batch_execute(&format!("ALTER TABLE users {toggle} TRIGGER {trigger}"))
                .await?;
            let (low, high) = (i as u64 * k + 1, (i as u64 + 1) * k);
            let started = Instant::now();
            client
                .batch_execute(&format!(
                    "UPDATE users SET name = name || '.', email = email || '.' WHERE id BETWEEN {low} AND {high}"
                ))
                .await?;
            let s = secs(started.elapsed());
            if enabled {
                result.with_s.push(s);
            } else {
                result.without_s.push(s);
            }
        }
        client
            .batch_execute(&format!("ALTER TABLE users ENABLE TRIGGER {trigger}"))
            .await?;
        self.say(format!(
            "trigger overhead: UPDATE of {k} rows without {:?} / with {:?}",
            result.without_s, result.with_s
        ));
        self.results.trigger.push(result);
        Ok(())
    }

    /// `pgbaton complete` while the workload runs on the table.
    pub(crate) async fn complete_under_load(
        &mut self,
        db: &str,
        rows: u64,
        c: &Change,
        result: &mut BackfillResult,
    ) -> Result<()> {
        // The new release's clients (by complete, the old release is retired): the version
        // schema's view keeps the new column types through complete, so their prepared
        // statements stay valid.
        let version_schema = format!("public_01_{}", c.key);
        let config = self.workload_config(db, VersionPin::SearchPath(version_schema), rows)?;
        let handle = Workload::start(config).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        handle.mark_phase("complete");
        self.say(format!(
            "{rows} rows, {}: pgbaton complete under load",
            c.key
        ));
        let sampler = LockSampler::start(&self.url(db), "public.users").await?;
        // `--force`: the trigger-overhead UPDATEs above ran on the base table a moment ago,
        // which `complete` counts as the old version still writing (#12's safe-to-complete
        // check, exit 4); the old release is retired here by construction.
        let (out, parsed) = self.pgbaton(db, &["complete", "--force"]).await?;
        let locks = sampler.stop().await?;
        handle.mark_phase("after");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let report = handle.stop().await;
        if !out.ok() {
            let why = parsed.error.clone().unwrap_or_else(|| out.failure());
            self.say(format!("pgbaton complete FAILED: {why}"));
            result.pgbaton_error = Some(format!("complete: {why}"));
            return Ok(());
        }
        result.pgbaton_complete_s = Some(secs(out.wall));
        result.pgbaton_complete_rss_mb = Some(out.rss_mb());
        let exclusive = parsed.exclusive_steps();
        let longest = exclusive.iter().max_by(|a, b| a.1.total_cmp(&b.1)).cloned();
        let phase = report.phase("complete");
        let baseline = report.phase("baseline");
        let ms = |us: u64| us as f64 / 1e3;
        let entry = CompleteResult {
            rows,
            change: c.key.into(),
            complete_s: secs(out.wall),
            longest_exclusive_step: longest,
            exclusive_steps: exclusive,
            locks: Some(locks),
            workload_max_ms: phase.map_or(0.0, |p| ms(p.latency.max_us)),
            workload_p99_ms: phase.map_or(0.0, |p| ms(p.latency.p99_us)),
            baseline_p99_ms: baseline.map_or(0.0, |p| ms(p.latency.p99_us)),
            baseline_max_ms: baseline.map_or(0.0, |p| ms(p.latency.max_us)),
            failures: report.total.failures,
        };
        self.say(format!(
            "pgbaton complete: {:.3}s, longest ACCESS EXCLUSIVE step {:?}, workload max {:.1}ms",
            entry.complete_s, entry.longest_exclusive_step, entry.workload_max_ms
        ));
        self.results.complete.push(entry);
        Ok(())
    }
}
