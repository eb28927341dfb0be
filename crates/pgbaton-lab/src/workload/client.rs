//! Running: the handle, the client tasks, reconnection and cancellation.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RunState {
    Running,
    Stopping,
    Abort,
}

pub(super) struct Shared {
    pg: tokio_postgres::Config,
    t0: Instant,
    recorder: Mutex<Recorder>,
    ids: AtomicI64,
    issued: AtomicU64,
    max_queries: Option<u64>,
    think_time: Duration,
    prepare: bool,
    log_writes: bool,
    reconnect_delay: Duration,
    reconnects: AtomicU64,
    connect_errors: AtomicU64,
    abandoned: AtomicU64,
}

impl Shared {
    fn recorder(&self) -> MutexGuard<'_, Recorder> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.recorder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A live snapshot, for progress display.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Progress {
    pub elapsed_s: f64,
    pub phase: String,
    pub queries: u64,
    pub failures: u64,
}

/// A running workload. Dropping it without [`WorkloadHandle::stop`] aborts the clients.
pub struct WorkloadHandle {
    shared: Arc<Shared>,
    state: watch::Sender<RunState>,
    tasks: Vec<JoinHandle<Vec<WriteEntry>>>,
    done: mpsc::Receiver<()>,
    deadline: Option<tokio::time::Instant>,
    stop_grace: Duration,
    clients: usize,
}

pub(super) struct Conn {
    client: Client,
    cancel: CancelToken,
    statements: Vec<Option<Statement>>,
}

pub(super) async fn connect(
    pg: &tokio_postgres::Config,
    spec: &ClientSpec,
) -> Result<Conn, WorkloadError> {
    let mut pg = pg.clone();
    if pg.get_application_name().is_none() {
        pg.application_name(format!("pgbaton-workload {}", spec.label));
    }
    let (client, connection) =
        pg.connect(NoTls)
            .await
            .map_err(|source| WorkloadError::Connect {
                client: spec.label.clone(),
                source,
            })?;
    let label = spec.label.clone();
    tokio::spawn(async move {
        // The client sees the same failure on its next request and reconnects.
        if let Err(e) = connection.await {
            tracing::debug!("workload client {label}: connection ended: {e}");
        }
    });
    if let VersionPin::SearchPath(schema) = &spec.pin {
        let sql = format!(
            "SET search_path TO {}, \"$user\", public",
            quote_ident(schema)
        );
        client
            .batch_execute(&sql)
            .await
            .map_err(|source| WorkloadError::Pin {
                client: spec.label.clone(),
                sql,
                source,
            })?;
    }
    Ok(Conn {
        cancel: client.cancel_token(),
        client,
        statements: vec![None; spec.mix.len()],
    })
}

impl WorkloadHandle {
    pub(super) async fn start(config: WorkloadConfig) -> Result<Self, WorkloadError> {
        if config.clients.is_empty() {
            return Err(WorkloadError::NoClients);
        }
        for spec in &config.clients {
            spec.validate()?;
        }
        let conns = futures_util::future::try_join_all(
            config.clients.iter().map(|spec| connect(&config.pg, spec)),
        )
        .await?;

        // The clock starts when every client is connected.
        let t0 = Instant::now();
        let shared = Shared {
            pg: config.pg,
            t0,
            recorder: Mutex::new(Recorder::new(t0, &config.initial_phase).with_series(
                config.series_origin.unwrap_or(t0).min(t0),
                config.series_interval,
            )),
            ids: AtomicI64::new(config.max_id),
            issued: AtomicU64::new(0),
            max_queries: config.max_queries,
            think_time: config.think_time,
            prepare: config.prepare,
            log_writes: config.log_writes,
            reconnect_delay: config.reconnect_delay,
            reconnects: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
        };
        let shared = Arc::new(shared);
        let (state, state_rx) = watch::channel(RunState::Running);
        let (done_tx, done) = mpsc::channel(1);
        let clients = config.clients.len();
        let tasks: Vec<_> = config
            .clients
            .into_iter()
            .zip(conns)
            .enumerate()
            .map(|(index, (spec, conn))| {
                let client = ClientTask::new(index, spec, shared.clone(), config.seed);
                tokio::spawn(client.run(conn, state_rx.clone(), done_tx.clone()))
            })
            .collect();
        Ok(WorkloadHandle {
            shared,
            state,
            tasks,
            done,
            deadline: config
                .duration
                .map(|d| tokio::time::Instant::from_std(t0 + d)),
            stop_grace: config.stop_grace,
            clients,
        })
    }

    /// Later completions count in phase `name` (phases marked twice accumulate).
    pub fn mark_phase(&self, name: impl AsRef<str>) {
        self.shared.recorder().mark(name.as_ref(), Instant::now());
    }

    pub fn progress(&self) -> Progress {
        let r = self.shared.recorder();
        Progress {
            elapsed_s: self.shared.t0.elapsed().as_secs_f64(),
            phase: r.phases[r.current].name.to_string(),
            queries: r.queries,
            failures: r.failures,
        }
    }

    /// Waits for the configured duration or query limit (without either, until every client
    /// has ended, which never happens: use [`WorkloadHandle::stop`]), then stops.
    pub async fn wait(mut self) -> WorkloadReport {
        match self.deadline {
            Some(deadline) => {
                tokio::select! {
                    _ = wait_all(&mut self.done) => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
            None => wait_all(&mut self.done).await,
        }
        self.finish().await
    }

    /// Stops the clients: no new queries; in-flight ones get [`WorkloadConfig::stop_grace`] to
    /// finish, then are cancelled and counted as failures of class [`ABANDONED`].
    pub async fn stop(self) -> WorkloadReport {
        self.finish().await
    }

    async fn finish(mut self) -> WorkloadReport {
        self.state.send_replace(RunState::Stopping);
        if tokio::time::timeout(self.stop_grace, wait_all(&mut self.done))
            .await
            .is_err()
        {
            self.state.send_replace(RunState::Abort);
        }
        let mut entries = Vec::new();
        for task in std::mem::take(&mut self.tasks) {
            match task.await {
                Ok(writes) => entries.extend(writes),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => tracing::warn!("workload client task ended abnormally: {e}"),
            }
        }
        let end = Instant::now();
        entries.sort_by_key(|e| e.committed_at);
        let extras = ReportExtras {
            clients: self.clients,
            reconnects: self.shared.reconnects.load(Ordering::Relaxed),
            connect_errors: self.shared.connect_errors.load(Ordering::Relaxed),
            abandoned: self.shared.abandoned.load(Ordering::Relaxed),
            writes: WriteLog { entries },
        };
        self.shared.recorder().report(end, extras)
    }
}

impl Drop for WorkloadHandle {
    fn drop(&mut self) {
        self.state.send_replace(RunState::Abort);
    }
}

/// Until the run state satisfies `f` (or the handle is gone). The guard `wait_for` returns is
/// dropped here, so it never lives across an await.
pub(super) async fn until(state: &mut watch::Receiver<RunState>, f: impl Fn(RunState) -> bool) {
    // An error means the handle is gone, which ends the wait too.
    let _ = state.wait_for(|s| f(*s)).await.map(drop);
}

/// Until every client task has dropped its `done` sender.
pub(super) async fn wait_all(done: &mut mpsc::Receiver<()>) {
    while done.recv().await.is_some() {}
}

pub(super) struct ClientTask {
    spec: ClientSpec,
    label: Arc<str>,
    version: Arc<str>,
    /// Cumulative weights, for picking a query.
    cumulative: Vec<u64>,
    /// `BEGIN; SET LOCAL ...` for [`VersionPin::SetLocal`] (the pin never changes).
    begin: Option<String>,
    shared: Arc<Shared>,
    rng: StdRng,
}

/// A failed query: the error, and whether its write may nonetheless have committed.
pub(super) struct OpFailure {
    error: tokio_postgres::Error,
    in_doubt: bool,
}

pub(super) fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || std::error::Error::source(e)
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
}

/// The failure class: the SQLSTATE, else `connection` or `client`.
pub(super) fn classify(e: &tokio_postgres::Error, client: &Client) -> String {
    match e.code() {
        Some(code) => code.code().to_owned(),
        None if client.is_closed() || is_connection_error(e) => CONNECTION.to_owned(),
        None => CLIENT.to_owned(),
    }
}

/// Whether the session is gone: closed, or ended by the server (class 08, 57P01..57P03).
pub(super) fn session_lost(e: &tokio_postgres::Error, client: &Client) -> bool {
    client.is_closed()
        || is_connection_error(e)
        || e.code().is_some_and(|c| {
            c.code().starts_with("08") || matches!(c.code(), "57P01" | "57P02" | "57P03")
        })
}

impl ClientTask {
    fn new(index: usize, spec: ClientSpec, shared: Arc<Shared>, seed: u64) -> Self {
        let mut total = 0u64;
        let cumulative = spec
            .mix
            .iter()
            .map(|q| {
                total += u64::from(q.weight);
                total
            })
            .collect();
        let stream = (index as u64)
            .wrapping_add(1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let begin = match &spec.pin {
            VersionPin::SetLocal(version) => Some(format!(
                "BEGIN; SET LOCAL {VERSION_SETTING} = {}",
                quote_literal(version)
            )),
            VersionPin::SearchPath(_) | VersionPin::Base => None,
        };
        ClientTask {
            label: Arc::from(spec.label.as_str()),
            version: Arc::from(spec.pin.label()),
            cumulative,
            begin,
            rng: StdRng::seed_from_u64(seed ^ stream),
            spec,
            shared,
        }
    }

    fn pick(&mut self) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0);
        let r = self.rng.random_range(0..total.max(1));
        self.cumulative
            .partition_point(|&c| c <= r)
            .min(self.cumulative.len().saturating_sub(1))
    }

    async fn run(
        mut self,
        conn: Conn,
        mut state: watch::Receiver<RunState>,
        _done: mpsc::Sender<()>,
    ) -> Vec<WriteEntry> {
        let mut writes = Vec::new();
        let mut conn = Some(conn);
        loop {
            if *state.borrow() != RunState::Running {
                break;
            }
            let Some(c) = conn.as_mut() else {
                conn = self.reconnect(&mut state).await;
                if conn.is_none() {
                    break;
                }
                continue;
            };
            if let Some(max) = self.shared.max_queries {
                if self.shared.issued.fetch_add(1, Ordering::Relaxed) >= max {
                    break;
                }
            }
            let qi = self.pick();
            let query = &self.spec.mix[qi].query;
            let params: Vec<Value> = query
                .params
                .iter()
                .map(|g| g.generate(&mut self.rng, &self.shared.ids))
                .collect();
            let sent = Instant::now();
            let outcome = tokio::select! {
                r = execute(c, qi, query, &params, self.begin.as_deref(), self.shared.prepare) => r,
                _ = until(&mut state, |s| s == RunState::Abort) => {
                    self.abandon(&c.cancel, sent).await;
                    break;
                }
            };
            let end = Instant::now();
            let (phase, logged) = match &outcome {
                Ok(rows) => (
                    self.shared.recorder().record(end, end - sent, None),
                    *rows > 0,
                ),
                Err(f) => {
                    let code = classify(&f.error, &c.client);
                    if f.error.code().is_none() {
                        tracing::debug!("workload client {}: {}", self.label, f.error);
                    }
                    (
                        self.shared.recorder().record(end, end - sent, Some(&code)),
                        f.in_doubt,
                    )
                }
            };
            if logged && self.shared.log_writes {
                if let Some(entry) =
                    self.log_entry(query, &params, phase, sent, end, outcome.is_err())
                {
                    writes.push(entry);
                }
            }
            if let Err(f) = &outcome {
                if session_lost(&f.error, &c.client) {
                    conn = None;
                    continue;
                }
            }
            self.think(&mut state).await;
        }
        writes
    }

    /// The run was aborted while a query was in flight: cancel it on the server (so it stops
    /// waiting for a lock, say) and count it.
    async fn abandon(&self, cancel: &CancelToken, sent: Instant) {
        let latency = sent.elapsed();
        match tokio::time::timeout(CANCEL_TIMEOUT, cancel.cancel_query(NoTls)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!("workload client {}: cancel: {e}", self.label),
            Err(_) => tracing::debug!("workload client {}: cancel timed out", self.label),
        }
        self.shared.abandoned.fetch_add(1, Ordering::Relaxed);
        self.shared.recorder().record_abandoned(latency);
    }

    fn log_entry(
        &self,
        query: &QuerySpec,
        params: &[Value],
        phase: Arc<str>,
        sent: Instant,
        end: Instant,
        in_doubt: bool,
    ) -> Option<WriteEntry> {
        let key = params.get(query.key_param?.checked_sub(1)?)?.as_int()?;
        let written = match query.value_param {
            Some(v) => Written::Value(params.get(v.checked_sub(1)?)?.clone()),
            None => Written::Deleted,
        };
        Some(WriteEntry {
            client: self.label.clone(),
            version: self.version.clone(),
            phase,
            kind: query.kind,
            key,
            written,
            sent_at: sent.saturating_duration_since(self.shared.t0),
            committed_at: end.saturating_duration_since(self.shared.t0),
            in_doubt,
        })
    }

    async fn think(&mut self, state: &mut watch::Receiver<RunState>) {
        let think = self.shared.think_time;
        if think.is_zero() {
            return;
        }
        let pause = think.mul_f64(self.rng.random_range(0.5..1.5));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = until(state, |s| s != RunState::Running) => {}
        }
    }

    async fn reconnect(&mut self, state: &mut watch::Receiver<RunState>) -> Option<Conn> {
        let mut delay = self.shared.reconnect_delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = until(state, |s| s != RunState::Running) => return None,
            }
            match connect(&self.shared.pg, &self.spec).await {
                Ok(conn) => {
                    self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    return Some(conn);
                }
                Err(e) => {
                    tracing::debug!("{e}");
                    self.shared.connect_errors.fetch_add(1, Ordering::Relaxed);
                    delay = (delay * 2).min(MAX_RECONNECT_DELAY);
                }
            }
        }
    }
}

/// Runs one query, in a transaction opened by `begin` (the `SET LOCAL` of
/// [`VersionPin::SetLocal`]) when given; returns the rows affected (or returned).
pub(super) async fn execute(
    conn: &mut Conn,
    qi: usize,
    query: &QuerySpec,
    params: &[Value],
    begin: Option<&str>,
    prepare: bool,
) -> Result<u64, OpFailure> {
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
    let definite = |error| OpFailure {
        error,
        in_doubt: false,
    };
    let statement = if prepare {
        match &conn.statements[qi] {
            Some(s) => Some(s.clone()),
            None => {
                let s = conn
                    .client
                    .prepare(query.sql.as_str())
                    .await
                    .map_err(definite)?;
                conn.statements[qi] = Some(s.clone());
                Some(s)
            }
        }
    } else {
        None
    };
    let result = match begin {
        Some(begin) => {
            let body = async {
                conn.client.batch_execute(begin).await?;
                run_statement(&conn.client, statement.as_ref(), query, &refs).await
            };
            match body.await {
                Ok(rows) => conn
                    .client
                    .batch_execute("COMMIT")
                    .await
                    .map(|()| rows)
                    .map_err(maybe_in_doubt),
                Err(error) => {
                    if !conn.client.is_closed() {
                        if let Err(e) = conn.client.batch_execute("ROLLBACK").await {
                            tracing::debug!("workload: rollback after a failed query: {e}");
                        }
                    }
                    Err(definite(error))
                }
            }
        }
        None => run_statement(&conn.client, statement.as_ref(), query, &refs)
            .await
            .map_err(maybe_in_doubt),
    };
    if result.is_err() {
        // The statement may be what failed (a dropped or changed relation): prepare it afresh.
        conn.statements[qi] = None;
    }
    result
}

/// Executes the query: its prepared statement when there is one, its SQL text otherwise.
pub(super) async fn run_statement(
    client: &Client,
    statement: Option<&Statement>,
    query: &QuerySpec,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    match statement {
        Some(s) => client.execute(s, params).await,
        None => client.execute(query.sql.as_str(), params).await,
    }
}

/// A failure of the statement that would commit: a connection lost without a server error
/// leaves it unknown whether the write committed.
pub(super) fn maybe_in_doubt(error: tokio_postgres::Error) -> OpFailure {
    let in_doubt = error.code().is_none() && is_connection_error(&error);
    OpFailure { error, in_doubt }
}
