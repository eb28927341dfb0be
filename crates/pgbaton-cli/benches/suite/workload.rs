//! (b): workload latency during pgbaton (default settings: the latency budget on; and with a
//! fixed rows-per-second cap), the plain ALTER and Reshape.

use super::*;

impl Bench {
    pub(crate) async fn workload(&mut self) -> Result<()> {
        let rows = self.args.workload_rows;
        let c = change(WORKLOAD_CHANGE)?;
        let template = self.template(c.id_type, rows).await?;
        let throttled = format!("pgbaton, --backfill-rows-per-second {THROTTLE}");
        let wanted = |m: &str| self.args.workload_methods.iter().any(|w| w == m);
        let mut methods = Vec::new();
        for (key, method) in [
            ("pgbaton", "pgbaton"),
            ("pgbaton-capped", throttled.as_str()),
            ("naive", "naive ALTER TABLE"),
        ] {
            if wanted(key) {
                methods.push(method);
            }
        }
        if self.reshape.is_some() && wanted("reshape") {
            methods.push("reshape");
        }
        for method in methods {
            let db = self.clone_db(&template, "workload").await?;
            if method.starts_with("pgbaton") {
                let (init, _) = self.pgbaton(&db, &["init"]).await?;
                if !init.ok() {
                    bail!("pgbaton init: {}", init.failure());
                }
            }
            let yaml = self.write_file("workload_pgbaton", "01_pk.yaml", c.yaml)?;
            self.write_file("workload_reshape", "1_pk.toml", c.toml)?;
            let reshape_dir = self.work.join("workload_reshape");
            self.exec(&db, "CHECKPOINT").await?;
            let mut config = self.pk_workload_config(&db, rows)?;
            let origin = Instant::now();
            config.series_origin = Some(origin);
            let handle = Workload::start(config).await?;
            self.say(format!(
                "workload ({method}): baseline {}s",
                self.args.baseline
            ));
            tokio::time::sleep(Duration::from_secs_f64(self.args.baseline)).await;
            let sampler = LockSampler::start(&self.url(&db), "public.users").await?;
            let started = Instant::now();
            let (error, fill) = self
                .workload_migration(&db, method, c, &yaml, &reshape_dir, &handle)
                .await?;
            let migration_s = secs(started.elapsed());
            handle.mark_phase("after");
            tokio::time::sleep(Duration::from_secs(5)).await;
            let locks = sampler.stop().await?;
            let report = handle.stop().await;
            self.say(format!(
                "workload ({method}): migration {migration_s:.2}s, fill {fill:?}\n{report}"
            ));
            self.results.workload.push(WorkloadResult {
                method: method.into(),
                rows,
                migration_s,
                error,
                marks: locks.marks(origin),
                locks: Some(locks),
                report,
                fill,
            });
            self.drop_db(&db).await?;
        }
        Ok(())
    }

    /// Runs the migration `method` names against `db` while the workload runs; returns its
    /// error, if it failed, and pgbaton's fill statistics.
    async fn workload_migration(
        &self,
        db: &str,
        method: &str,
        c: &Change,
        yaml: &Path,
        reshape_dir: &Path,
        handle: &WorkloadHandle,
    ) -> Result<(Option<String>, Option<FillStats>)> {
        let mut error = None;
        let mut fill = None;
        match method {
            m if m.starts_with("pgbaton") => {
                handle.mark_phase("start");
                let yaml = yaml.to_string_lossy().into_owned();
                let throttle = THROTTLE.to_string();
                let mut args = vec!["start", yaml.as_str()];
                if m != "pgbaton" {
                    args = vec!["--backfill-rows-per-second", &throttle, "start", &yaml];
                }
                let (out, parsed) = self.pgbaton(db, &args).await?;
                fill = parsed.fill_stats();
                if out.ok() {
                    handle.mark_phase("complete");
                    // `--force`: the old release's clients write throughout (that is the
                    // benchmark), which `complete` otherwise refuses (exit 4).
                    let (out, parsed) = self.pgbaton(db, &["complete", "--force"]).await?;
                    if !out.ok() {
                        error = Some(parsed.error.unwrap_or_else(|| out.failure()));
                    }
                } else {
                    error = Some(parsed.error.unwrap_or_else(|| out.failure()));
                }
            }
            "reshape" => {
                handle.mark_phase("start");
                let limit = Duration::from_secs(3600);
                match self.reshape(db, reshape_dir, "start", limit).await? {
                    Some(out) if out.ok() => {
                        handle.mark_phase("complete");
                        if let Some(out) = self.reshape(db, reshape_dir, "complete", limit).await? {
                            if !out.ok() {
                                error = Some(out.failure());
                            }
                        }
                    }
                    Some(out) => error = Some(out.failure()),
                    None => error = Some("reshape not found".into()),
                }
            }
            _ => {
                handle.mark_phase("ALTER TABLE");
                let client = connect(&self.url(db)).await?;
                if let Err(e) = client.batch_execute(c.naive).await {
                    error = Some(pgbaton::pg::describe(&e));
                }
            }
        }
        Ok((error, fill))
    }
}
