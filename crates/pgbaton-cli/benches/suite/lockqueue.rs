//! (d): the lock queue.

use super::*;

/// Columns and triggers of `public.users`, to tell whether a failed start left anything behind.
pub(crate) async fn table_shape(client: &Client) -> Result<String> {
    let row = client
        .query_one(
            "SELECT (SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute \
                     WHERE attrelid = 'public.users'::regclass AND attnum > 0 AND NOT attisdropped), \
                    (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.users'::regclass AND NOT tgisinternal)",
            &[],
        )
        .await?;
    let cols: String = row.get(0);
    let triggers: i64 = row.get(1);
    Ok(format!("{cols}; {triggers} triggers"))
}

impl Bench {
    pub(crate) async fn lockqueue(&mut self) -> Result<()> {
        let rows = self.args.lockqueue_rows;
        let c = change(LOCKQUEUE_CHANGE)?;
        let template = self.template(c.id_type, rows).await?;
        let mut methods = vec!["pgbaton", "naive ALTER TABLE"];
        if self.reshape.is_some() {
            methods.push("reshape");
        }
        for released in [true, false] {
            for method in &methods {
                if !released && *method == "naive ALTER TABLE" {
                    // It would wait forever: nothing to measure but a stall as long as we wait.
                    continue;
                }
                self.lockqueue_one(&template, rows, c, method, released)
                    .await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn lockqueue_one(
        &mut self,
        template: &str,
        rows: u64,
        c: &Change,
        method: &str,
        released: bool,
    ) -> Result<()> {
        let (db, yaml, reshape_dir) = self.lockqueue_db(template, c, method).await?;
        let admin = connect(&self.url(&db)).await?;
        let shape_before = table_shape(&admin).await?;
        let mut config = self.workload_config(&db, VersionPin::Base, rows)?;
        let origin = Instant::now();
        config.series_origin = Some(origin);
        let handle = Arc::new(Workload::start(config).await?);
        tokio::time::sleep(Duration::from_secs(3)).await;

        let blocker = self.lock_holder(&db).await?;
        handle.mark_phase("blocked");
        let scenario = if released {
            format!("lock held {}s, then released", self.args.hold)
        } else {
            "lock never released (deadline 10s)".to_owned()
        };
        self.say(format!("lock queue ({method}): {scenario}"));
        let hold = Duration::from_secs_f64(self.args.hold);
        let release = release_blocker(released, hold, handle.clone(), &blocker);
        let sampler = LockSampler::start(&self.url(&db), "public.users").await?;
        let started = Instant::now();
        let contender = Contender {
            db: &db,
            c,
            method,
            released,
            yaml: &yaml,
            reshape_dir: &reshape_dir,
        };
        let (exit, lock_retries, outcome) = self.lockqueue_contender(&contender, release).await?;
        let seconds = secs(started.elapsed());
        let locks = sampler.stop().await?;
        handle.mark_phase("after");
        let _ = blocker.batch_execute("COMMIT").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let handle =
            Arc::try_unwrap(handle).map_err(|_| anyhow!("the workload handle is still shared"))?;
        let report = handle.stop().await;
        self.say(format!("lock queue ({method}) workload:\n{report}"));
        let table_unchanged = if released {
            None
        } else {
            Some(table_shape(&admin).await? == shape_before)
        };
        let (max_latency_ms, p99_ms) = latency_after_baseline(&report);
        self.say(format!(
            "lock queue ({method}, {scenario}): {outcome} in {seconds:.1}s, workload max {max_latency_ms:.1}ms"
        ));
        self.results.lockqueue.push(LockQueueResult {
            method: method.into(),
            scenario,
            outcome,
            exit,
            seconds,
            lock_retries,
            table_unchanged,
            max_latency_ms,
            p99_ms,
            marks: locks.marks(origin),
            locks: Some(locks),
            failures: report.total.failures,
            report,
        });
        drop(admin);
        drop(blocker);
        self.drop_db(&db).await?;
        Ok(())
    }

    /// A copy of the template with the change's files written, and pgbaton's state schema when
    /// pgbaton contends: the database, the pgbaton file and the Reshape directory.
    async fn lockqueue_db(
        &mut self,
        template: &str,
        c: &Change,
        method: &str,
    ) -> Result<(String, PathBuf, PathBuf)> {
        let db = self.clone_db(template, "lockqueue").await?;
        let yaml = self.write_file("lockqueue_pgbaton", "01_add.yaml", c.yaml)?;
        self.write_file("lockqueue_reshape", "1_add.toml", c.toml)?;
        let reshape_dir = self.work.join("lockqueue_reshape");
        if method == "pgbaton" {
            let (init, _) = self.pgbaton(&db, &["init"]).await?;
            if !init.ok() {
                bail!("pgbaton init: {}", init.failure());
            }
        }
        Ok((db, yaml, reshape_dir))
    }

    /// The blocker: an open transaction that has read the table (ACCESS SHARE), as a long
    /// report query or an idle-in-transaction session leaves it.
    async fn lock_holder(&self, db: &str) -> Result<Client> {
        let blocker = connect(&format!("{}?application_name=bench-blocker", self.url(db))).await?;
        blocker
            .batch_execute("BEGIN; SELECT count(*) FROM users WHERE id < 10")
            .await?;
        Ok(blocker)
    }
}

/// Commits the blocker's transaction after `hold` when the scenario releases the lock; else
/// nothing.
async fn release_blocker(
    released: bool,
    hold: Duration,
    handle: Arc<WorkloadHandle>,
    blocker: &Client,
) -> Result<()> {
    if released {
        tokio::time::sleep(hold).await;
        handle.mark_phase("released");
        blocker.batch_execute("COMMIT").await?;
    }
    Ok(())
}

/// The workload's worst latency and worst p99 after the baseline, in milliseconds.
fn latency_after_baseline(report: &WorkloadReport) -> (f64, f64) {
    let during: Vec<_> = report
        .phases
        .iter()
        // A query held up by the lock completes when it is released, or just after.
        .filter(|p| p.name != "baseline")
        .collect();
    let max_latency_ms = during.iter().map(|p| p.latency.max_us).max().unwrap_or(0) as f64 / 1e3;
    let p99_ms = during.iter().map(|p| p.latency.p99_us).max().unwrap_or(0) as f64 / 1e3;
    (max_latency_ms, p99_ms)
}

/// One contender of the lock-queue benchmark.
pub(crate) struct Contender<'a> {
    pub(crate) db: &'a str,
    pub(crate) c: &'a Change,
    pub(crate) method: &'a str,
    pub(crate) released: bool,
    pub(crate) yaml: &'a Path,
    pub(crate) reshape_dir: &'a Path,
}

impl Bench {
    /// Runs the contender's start while `release` lets the blocker go (or not): its exit code,
    /// lock retries (pgbaton) and outcome in words.
    pub(crate) async fn lockqueue_contender(
        &self,
        contender: &Contender<'_>,
        release: impl std::future::Future<Output = Result<()>>,
    ) -> Result<(Option<i32>, Option<u64>, String)> {
        let Contender {
            db,
            c,
            method,
            released,
            yaml,
            reshape_dir,
        } = *contender;
        Ok(match method {
            "pgbaton" => {
                let deadline = if released { "120" } else { "10" };
                let yaml = yaml.to_string_lossy().into_owned();
                let cmd =
                    self.pgbaton_cmd(db, &["--lock-retry-deadline", deadline, "start", &yaml]);
                let (out, _) =
                    tokio::try_join!(run_child(cmd, Some(Duration::from_secs(600))), release)?;
                let parsed = PgbatonRun::parse(&out.stdout);
                let outcome = if out.ok() {
                    "succeeded".to_owned()
                } else {
                    format!(
                        "gave up: {}",
                        parsed
                            .error
                            .clone()
                            .unwrap_or_else(|| out.failure())
                            .lines()
                            .next()
                            .unwrap_or_default()
                    )
                };
                (out.code, Some(parsed.lock_retries), outcome)
            }
            "reshape" => {
                let Some(bin) = self.reshape.clone() else {
                    bail!("reshape vanished")
                };
                let mut cmd = Command::new(bin);
                cmd.args(["migration", "start", "--dirs"])
                    .arg(reshape_dir)
                    .arg("--url")
                    .arg(self.url(db))
                    .env("RUST_BACKTRACE", "0")
                    .env("RUST_LIB_BACKTRACE", "0");
                let (out, _) =
                    tokio::try_join!(run_child(cmd, Some(Duration::from_secs(120))), release)?;
                let outcome = if out.ok() {
                    "succeeded".to_owned()
                } else if out.code.is_none() {
                    "still retrying after 120s: killed".to_owned()
                } else {
                    format!("gave up: {}", out.failure())
                };
                (out.code, None, outcome)
            }
            _ => {
                let client = connect(&self.url(db)).await?;
                let alter = async {
                    client
                        .batch_execute(c.naive)
                        .await
                        .map_err(|e| anyhow!(pgbaton::pg::describe(&e)))
                };
                let (r, _) = tokio::join!(alter, release);
                (
                    None,
                    None,
                    match r {
                        Ok(()) => "succeeded after the blocker".to_owned(),
                        Err(e) => format!("failed: {e}"),
                    },
                )
            }
        })
    }
}
