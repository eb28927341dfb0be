//! The bench context: the cluster, template databases, and the commands of each contender.

use super::*;

pub(crate) struct Bench {
    pub(crate) args: Args,
    pub(crate) cluster: Cluster,
    pub(crate) work: PathBuf,
    pub(crate) pgbaton: PathBuf,
    pub(crate) reshape: Option<PathBuf>,
    pub(crate) templates: Vec<String>,
    pub(crate) results: Results,
    pub(crate) seq: u32,
}

pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub(crate) fn find_reshape() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RESHAPE_BIN") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("reshape"))
            .find(|p| p.is_file())
    })
}

pub(crate) async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Bench {
    pub(crate) fn url(&self, db: &str) -> String {
        self.cluster.url(db)
    }

    pub(crate) fn say(&self, text: impl AsRef<str>) {
        eprintln!("[bench {}] {}", loadavg(), text.as_ref());
    }

    pub(crate) async fn admin(&self) -> Result<Client> {
        connect(&self.url("postgres")).await
    }

    pub(crate) async fn exec(&self, db: &str, sql: &str) -> Result<()> {
        let c = connect(&self.url(db)).await?;
        c.batch_execute(sql)
            .await
            .with_context(|| format!("{db}: {sql}"))?;
        Ok(())
    }

    /// A template database `tmpl_<id_type>_<rows>` holding `public.users`, loaded once.
    pub(crate) async fn template(&mut self, id_type: &str, rows: u64) -> Result<String> {
        let name = format!("tmpl_{id_type}_{rows}");
        if self.templates.contains(&name) {
            return Ok(name);
        }
        self.say(format!("loading template {name} ({rows} rows)"));
        let started = Instant::now();
        self.exec("postgres", &format!("CREATE DATABASE {name}"))
            .await?;
        {
            let c = connect(&self.url(&name)).await?;
            for sql in load_users_sql(&Ident::new("public"), id_type, rows) {
                c.batch_execute(&sql)
                    .await
                    .with_context(|| format!("loading {name}"))?;
            }
        }
        self.exec("postgres", "CHECKPOINT").await?;
        self.say(format!(
            "template {name} loaded in {:.1}s",
            started.elapsed().as_secs_f64()
        ));
        self.templates.push(name.clone());
        Ok(name)
    }

    /// A fresh copy of a template (a file copy: the same bytes for every contender).
    pub(crate) async fn clone_db(&mut self, template: &str, what: &str) -> Result<String> {
        self.seq += 1;
        let name = format!("run{}_{what}", self.seq);
        self.exec(
            "postgres",
            &format!("CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY"),
        )
        .await?;
        self.exec(&name, "CHECKPOINT").await?;
        Ok(name)
    }

    pub(crate) async fn drop_db(&self, name: &str) -> Result<()> {
        self.exec(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await
    }

    pub(crate) fn write_file(&self, dir: &str, name: &str, text: &str) -> Result<PathBuf> {
        let dir = self.work.join(dir);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    }

    pub(crate) fn pgbaton_cmd(&self, db: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.pgbaton);
        cmd.arg("--postgres-url")
            .arg(self.url(db))
            .arg("--json")
            .arg("--lock-timeout")
            .arg(self.args.lock_timeout.to_string())
            .args(args);
        // The bench's own libpq settings must not leak into the child.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("PG") || k == "DATABASE_URL" {
                cmd.env_remove(k);
            }
        }
        cmd
    }

    pub(crate) async fn pgbaton(&self, db: &str, args: &[&str]) -> Result<(ChildOut, PgbatonRun)> {
        let out = run_child(
            self.pgbaton_cmd(db, args),
            Some(Duration::from_secs(3 * 3600)),
        )
        .await?;
        let parsed = PgbatonRun::parse(&out.stdout);
        Ok((out, parsed))
    }

    pub(crate) async fn reshape(
        &self,
        db: &str,
        dir: &Path,
        what: &str,
        limit: Duration,
    ) -> Result<Option<ChildOut>> {
        let Some(bin) = &self.reshape else {
            return Ok(None);
        };
        let mut cmd = Command::new(bin);
        cmd.args(["migration", what]);
        // Only `start` reads the migration files.
        if what == "start" {
            cmd.arg("--dirs").arg(dir);
        }
        cmd.arg("--url")
            .arg(self.url(db))
            .current_dir(&self.work)
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0");
        Ok(Some(run_child(cmd, Some(limit)).await?))
    }

    /// The workload of (b): the same point reads and updates on the base table, but without
    /// `id` in any result. The change turns `id` into bigint; a prepared statement whose result
    /// type changes is refused afterwards ("cached plan must not change result type", 0A000),
    /// whichever tool made the change, and no client keeps its release through such a change.
    /// Filtering on `id` is fine: the parameter stays int4, and bigint = int4 uses the index.
    pub(crate) fn pk_workload_config(&self, db: &str, rows: u64) -> Result<WorkloadConfig> {
        let mut config = WorkloadConfig::from_url(&self.url(db))?;
        config.clients = (1..=self.args.clients)
            .map(|i| {
                ClientSpec::new(format!("client-{i}"), VersionPin::Base)
                    .with(
                        70,
                        QuerySpec::read(
                            "SELECT name, email, created_at FROM users WHERE id = $1",
                            vec![ParamGen::ExistingId],
                        ),
                    )
                    .with(
                        30,
                        QuerySpec::update(
                            "UPDATE users SET name = $2, email = $3 WHERE id = $1",
                            vec![
                                ParamGen::ExistingId,
                                ParamGen::text("u-", 12),
                                ParamGen::email(),
                            ],
                        ),
                    )
            })
            .collect();
        config.max_id = rows as i64;
        config.log_writes = false;
        Ok(config)
    }

    /// The bench's closed-loop clients reading and updating `users` through `pin`.
    pub(crate) fn workload_config(
        &self,
        db: &str,
        pin: VersionPin,
        rows: u64,
    ) -> Result<WorkloadConfig> {
        let mut config = WorkloadConfig::from_url(&self.url(db))?;
        config.clients = UsersTable::new("users").clients(
            self.args.clients,
            pin,
            &OpMix {
                read: 70,
                update: 30,
                insert: 0,
                delete: 0,
            },
        );
        config.max_id = rows as i64;
        config.log_writes = false;
        Ok(config)
    }
}
