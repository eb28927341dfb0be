//! `pgbaton demo`: proves zero downtime on a real server. Starts a throwaway cluster (or uses an
//! existing database, in schemas of its own that it drops at the end), loads a `users` table,
//! runs clients of the old and the new version against it, and migrates it with pgbaton (widen
//! the key to `bigint`, rename a column, add a `NOT NULL` column filled by `up`) through start,
//! backfill and complete; with `--compare-naive` it also runs the plain `ALTER TABLE` equivalent
//! on a fresh copy under the same workload. Returns a [`DemoReport`]; the CLI renders it.
//!
//! The library never prints: progress goes to the executor [`Observer`] (the CLI's renderer
//! draws the backfill bar) and to a [`Note`] callback.
//!
//! Version routing of the clients: the old release reads and writes the table in the base
//! schema; the new release sets `search_path` to the version schema `start` creates. The two
//! releases work on disjoint key ranges (old: the lower half of the ids and inserts from
//! `rows + 1`, new: the upper half and inserts from [`NEW_INSERT_BASE`]) so that each release's
//! write log can be checked on its own against the final table.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::Client;

use crate::cluster::{Cluster, ClusterError, ClusterOptions};
use crate::workload::{
    ClientSpec, OpMix, ParamGen, QuerySpec, UsersTable, VersionPin, Workload, WorkloadConfig,
    WorkloadError, WorkloadHandle, WorkloadReport,
};
use pgbaton::config::ConnConfig;
use pgbaton::executor::{Event, ExecOptions, Observer};
use pgbaton::format::{self, FileKind, Migration};
use pgbaton::ident::{quote_literal, Ident, QualName};
use pgbaton::migrator::{Migrator, Settings};
use pgbaton::step::{Action, LockLevel, Phase};
use pgbaton::views::version_schema_name;

/// The schema the demo migrates (in the throwaway cluster, and in an existing database).
pub const DEMO_SCHEMA: &str = "pgbaton_demo";
/// The schema of the copy the plain `ALTER TABLE` runs on (`--compare-naive`).
pub const NAIVE_SCHEMA: &str = "pgbaton_demo_naive";
/// pgbaton's state schema for the demo (never the default `pgbaton`, so an existing database's
/// migration history is not touched).
pub const STATE_SCHEMA: &str = "pgbaton_demo_state";
/// The migration's name; its version schema is `pgbaton_demo_01_widen_users`.
pub const MIGRATION_NAME: &str = "01_widen_users";
/// The database the demo creates in its throwaway cluster.
pub const DEMO_DATABASE: &str = "pgbaton_demo";
/// The demo table.
pub const TABLE: &str = "users";
/// `application_name` of the migrator's sessions.
pub const APP_NAME: &str = "pgbaton-demo";
/// `application_name` of the workload's sessions.
pub const WORKLOAD_APP_NAME: &str = "pgbaton-demo-workload";
/// New-version clients insert ids from here on: above any loaded row, and inside `integer`, which
/// the old version's key column still is until complete.
pub const NEW_INSERT_BASE: i64 = 1_000_000_000;
/// The comment that marks a schema as the demo's own (only such schemas are ever dropped).
const SCHEMA_MARKER: &str = "created by pgbaton demo; dropped when the demo ends";
/// The most rows the demo loads (the new version's inserts start at [`NEW_INSERT_BASE`]).
pub const MAX_ROWS: u64 = 500_000_000;
/// The fewest rows (each version needs a key range of its own).
pub const MIN_ROWS: u64 = 100;

/// The migration the demo runs, in pgroll's format.
pub const MIGRATION_YAML: &str = "\
operations:
  - alter_column:
      table: users
      column: id
      type: bigint
      up: id
      down: id
  - rename_column:
      table: users
      from: name
      to: full_name
  - add_column:
      table: users
      column:
        name: email_domain
        type: text
        nullable: false
      up: split_part(email, '@', 2)
";

/// The statements a plain deploy would run for the same change, in one transaction.
pub const NAIVE_SQL: &[&str] = &[
    "ALTER TABLE users ALTER COLUMN id TYPE bigint",
    "ALTER TABLE users RENAME COLUMN name TO full_name",
    "ALTER TABLE users ADD COLUMN email_domain text",
    "UPDATE users SET email_domain = split_part(email, '@', 2)",
    "ALTER TABLE users ALTER COLUMN email_domain SET NOT NULL",
];

/// Why the demo could not run (a migration that fails is not an error: the report says so).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("--rows must be between {MIN_ROWS} and {MAX_ROWS}, not {0}")]
    Rows(u64),

    #[error("the demo needs at least one client of each version (--old-clients, --new-clients)")]
    NoClients,

    #[error("starting the throwaway cluster: {0}")]
    Cluster(#[from] ClusterError),

    #[error("the throwaway cluster's start was interrupted: {0}")]
    ClusterTask(String),

    #[error("connection settings: {0}")]
    Config(#[from] pgbaton::config::ConfigError),

    #[error(
        "schema {schema} already exists in this database and was not created by the demo; \
             the demo only creates and drops schemas of its own: drop or rename it first"
    )]
    SchemaInUse { schema: String },

    #[error("{context}: {}", pgbaton::pg::describe(.source))]
    Db {
        context: String,
        source: tokio_postgres::Error,
    },

    #[error(transparent)]
    Pgbaton(#[from] pgbaton::Error),

    #[error(transparent)]
    Workload(#[from] WorkloadError),

    #[error("the demo migration does not parse: {0}")]
    Migration(#[from] pgbaton::format::FormatError),
}

fn db(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> DemoError {
    let context = context.into();
    move |source| DemoError::Db { context, source }
}

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/// `pgbaton demo` on the command line. The connection (`--postgres-url`), `--json`, the lock
/// timeout and the backfill settings are the global flags.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Rows loaded into the demo table
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Clients of the old release (base table)
    #[arg(long, default_value_t = 2)]
    pub old_clients: usize,
    /// Clients of the new release (version schema), started once it exists
    #[arg(long, default_value_t = 2)]
    pub new_clients: usize,
    /// Pause between one client's queries, in milliseconds (0: as fast as possible)
    #[arg(long, default_value_t = 2)]
    pub think_time: u64,
    /// Seconds of workload before the migration starts
    #[arg(long, default_value_t = 5.0)]
    pub baseline: f64,
    /// Seconds both releases run side by side between start and complete
    #[arg(long, default_value_t = 5.0)]
    pub overlap: f64,
    /// Seconds of workload after complete
    #[arg(long, default_value_t = 5.0)]
    pub after: f64,
    /// Also run the plain ALTER TABLE equivalent on a fresh copy under the same workload
    #[arg(long)]
    pub compare_naive: bool,
}

/// Where the demo runs.
#[derive(Clone, Debug)]
pub enum DemoDatabase {
    /// A throwaway cluster, removed at the end.
    Throwaway(ClusterOptions),
    /// An existing database (a connection URL or key=value string): the demo creates its schemas
    /// there and drops them at the end.
    Existing(String),
}

/// Everything a demo run needs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub database: DemoDatabase,
    pub rows: u64,
    pub old_clients: usize,
    pub new_clients: usize,
    pub think_time: Duration,
    pub baseline: Duration,
    pub overlap: Duration,
    pub after: Duration,
    pub compare_naive: bool,
    /// Lock timeout, retries and backfill settings of the migrator.
    pub exec: ExecOptions,
    /// The client mix (each version's reads, updates and inserts).
    pub mix: OpMix,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            database: DemoDatabase::Throwaway(demo_cluster_options()),
            rows: 1_000_000,
            old_clients: 2,
            new_clients: 2,
            think_time: Duration::from_millis(2),
            baseline: Duration::from_secs(5),
            overlap: Duration::from_secs(5),
            after: Duration::from_secs(5),
            compare_naive: false,
            exec: ExecOptions::default(),
            mix: OpMix::default(),
        }
    }
}

/// The throwaway cluster's settings: fast and not crash-safe (fsync off), no replication.
pub fn demo_cluster_options() -> ClusterOptions {
    ClusterOptions {
        fsync_off: true,
        replication: false,
        shared_buffers: Some("256MB".into()),
        ..ClusterOptions::default()
    }
    .setting("max_wal_size", "4GB")
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO)
}

impl DemoArgs {
    /// The options for a run: `postgres_url` selects an existing database, else a throwaway
    /// cluster; `exec` carries the global lock and backfill settings.
    pub fn options(&self, postgres_url: Option<String>, exec: ExecOptions) -> DemoOptions {
        DemoOptions {
            database: match postgres_url.filter(|u| !u.trim().is_empty()) {
                Some(url) => DemoDatabase::Existing(url),
                None => DemoDatabase::Throwaway(demo_cluster_options()),
            },
            rows: self.rows,
            old_clients: self.old_clients,
            new_clients: self.new_clients,
            think_time: Duration::from_millis(self.think_time),
            baseline: seconds(self.baseline),
            overlap: seconds(self.overlap),
            after: seconds(self.after),
            compare_naive: self.compare_naive,
            exec,
            mix: OpMix::default(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Notes (progress of the demo itself)
// ---------------------------------------------------------------------------------------------

/// A line of the demo's own progress, for people (`Display`) or machines (`Serialize`).
#[derive(Clone, Debug, Serialize)]
pub struct Note {
    /// `setup`, `workload`, `migration`, `naive`, `verify`, `cleanup`.
    pub stage: &'static str,
    pub message: String,
    /// Seconds since the demo began.
    pub at_s: f64,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:>6.1}s] {}", self.at_s, self.message)
    }
}

/// Receives [`Note`]s.
pub type NoteSink = Arc<dyn Fn(&Note) + Send + Sync>;

struct Notes {
    sink: NoteSink,
    t0: Instant,
}

impl Notes {
    fn say(&self, stage: &'static str, message: impl Into<String>) {
        (self.sink)(&Note {
            stage,
            message: message.into(),
            at_s: self.t0.elapsed().as_secs_f64(),
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

/// What a demo run measured. `Display` renders it for people, `Serialize` as JSON.
#[derive(Clone, Debug, Serialize)]
pub struct DemoReport {
    pub environment: Environment,
    pub pgbaton: RunReport,
    /// With `--compare-naive`.
    pub naive: Option<RunReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Environment {
    /// `throwaway cluster` or `existing database`.
    pub database: String,
    /// The throwaway cluster's directory (removed when the demo ends).
    pub cluster_dir: Option<String>,
    pub server_version: String,
    pub rows: u64,
    pub old_clients: usize,
    pub new_clients: usize,
    pub think_time_ms: f64,
    pub lock_timeout_ms: f64,
    pub migration: String,
    pub naive_sql: Vec<String>,
}

/// One way of changing the table (pgbaton, or the plain `ALTER TABLE`) under the workload.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// `pgbaton` or `naive ALTER TABLE`.
    pub method: String,
    /// The change finished (for pgbaton: start and complete succeeded).
    pub completed: bool,
    /// Why it did not, when it did not.
    pub error: Option<String>,
    /// Wall time of each phase, in order.
    pub timeline: Vec<PhaseTime>,
    /// The phases during which the table was being changed (the migration proper).
    pub migration_phases: Vec<String>,
    /// Seconds from the first migration phase to the end of the last.
    pub migration_s: f64,
    /// The old release's clients (from the baseline until they were retired).
    pub old: Option<WorkloadReport>,
    /// The new release's clients (from when its schema existed to the end).
    pub new: Option<WorkloadReport>,
    pub backfills: Vec<BackfillSummary>,
    /// Every step pgbaton ran, with its lock, time and attempts.
    pub steps: Vec<StepTiming>,
    /// Lock timeouts retried (executor steps and backfill batches).
    pub lock_retries: u64,
    /// The longest step that held (or waited for) `ACCESS EXCLUSIVE`, per pgbaton phase.
    pub longest_exclusive_step: Vec<StepTiming>,
    pub final_schema: Vec<ColumnInfo>,
    pub primary_key: Vec<String>,
    /// What is wrong with the final schema (empty: it is right).
    pub schema_problems: Vec<String>,
    /// Rows whose `email_domain` is not `split_part(email, '@', 2)`.
    pub derived_mismatches: i64,
    pub writes: WriteCheck,
}

#[derive(Clone, Debug, Serialize)]
pub struct PhaseTime {
    pub name: String,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BackfillSummary {
    pub table: String,
    pub rows: u64,
    pub rows_updated: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
    pub batches: u64,
    pub batch_size: u32,
    pub batch_p50_ms: f64,
    pub batch_p99_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct StepTiming {
    pub phase: String,
    pub title: String,
    pub lock: String,
    pub work: String,
    pub ms: f64,
    pub attempts: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ColumnInfo {
    pub name: String,
    pub data_type: String,
    pub nullable: bool,
}

/// The write logs checked against the final table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WriteCheck {
    /// Committed writes logged (both releases).
    pub logged: usize,
    /// Keys whose row does not hold what was committed last.
    pub lost: usize,
    /// The first few mismatches, described.
    pub examples: Vec<String>,
}

impl RunReport {
    fn new(method: &str) -> Self {
        RunReport {
            method: method.to_owned(),
            completed: false,
            error: None,
            timeline: Vec::new(),
            migration_phases: Vec::new(),
            migration_s: 0.0,
            old: None,
            new: None,
            backfills: Vec::new(),
            steps: Vec::new(),
            lock_retries: 0,
            longest_exclusive_step: Vec::new(),
            final_schema: Vec::new(),
            primary_key: Vec::new(),
            schema_problems: Vec::new(),
            derived_mismatches: 0,
            writes: WriteCheck::default(),
        }
    }

    fn workloads(&self) -> impl Iterator<Item = (&'static str, &WorkloadReport)> {
        [("old", self.old.as_ref()), ("new", self.new.as_ref())]
            .into_iter()
            .filter_map(|(v, r)| r.map(|r| (v, r)))
    }

    /// Queries completed, over both releases.
    pub fn queries(&self) -> u64 {
        self.workloads().map(|(_, r)| r.total.queries).sum()
    }

    /// Failed queries, over both releases.
    pub fn failures(&self) -> u64 {
        self.workloads().map(|(_, r)| r.total.failures).sum()
    }

    /// Failures by SQLSTATE (or class), over both releases.
    pub fn failures_by_code(&self) -> BTreeMap<String, u64> {
        let mut codes = BTreeMap::new();
        for (_, r) in self.workloads() {
            for (code, n) in &r.total.failures_by_code {
                *codes.entry(code.clone()).or_default() += n;
            }
        }
        codes
    }

    /// Every phase from the migration's start to the end of the run, per release. Latency counts
    /// in the phase in which a query *completed*: a query held up by the migration may complete
    /// just after it, so "during" never stops at the migration's last phase.
    fn migration_phase_reports(
        &self,
    ) -> impl Iterator<Item = (&'static str, &crate::workload::PhaseReport)> {
        self.workloads().flat_map(move |(v, r)| {
            r.phases
                .iter()
                .filter(|p| p.name != BASELINE)
                .map(move |p| (v, p))
        })
    }

    /// The highest latency of any query completed after the baseline, in microseconds.
    pub fn max_latency_during_migration_us(&self) -> u64 {
        self.migration_phase_reports()
            .map(|(_, p)| p.latency.max_us)
            .max()
            .unwrap_or(0)
    }

    /// The worst p99 of any release in any phase after the baseline, in microseconds.
    pub fn worst_p99_during_migration_us(&self) -> u64 {
        self.migration_phase_reports()
            .filter(|(_, p)| p.queries > 0)
            .map(|(_, p)| p.latency.p99_us)
            .max()
            .unwrap_or(0)
    }

    /// The longest interval after the baseline in which one release completed no query, ms.
    pub fn longest_stall_during_migration_ms(&self) -> f64 {
        self.migration_phase_reports()
            .map(|(_, p)| p.longest_stall_ms)
            .fold(0.0, f64::max)
    }

    /// The old release's baseline p99, in microseconds.
    pub fn baseline_p99_us(&self) -> u64 {
        self.old
            .as_ref()
            .and_then(|r| r.phase(BASELINE))
            .map_or(0, |p| p.latency.p99_us)
    }

    /// The change completed, no query failed, the schema is right and no write was lost.
    pub fn clean(&self) -> bool {
        self.completed
            && self.failures() == 0
            && self.schema_problems.is_empty()
            && self.derived_mismatches == 0
            && self.writes.lost == 0
    }
}

impl DemoReport {
    /// pgbaton's run was clean (see [`RunReport::clean`]).
    pub fn ok(&self) -> bool {
        self.pgbaton.clean()
    }

    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }
}

// ---------------------------------------------------------------------------------------------
// Phases: one clock for the workloads and the timeline
// ---------------------------------------------------------------------------------------------

const BASELINE: &str = "baseline";
const START_EXPAND: &str = "start: expand";
const START_BACKFILL: &str = "start: backfill";
const START_FINISH: &str = "start: finish";
const BOTH: &str = "both versions";
const COMPLETE: &str = "complete";
const AFTER: &str = "after";
const NAIVE_ALTER: &str = "ALTER TABLE";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Release {
    Old,
    New,
}

/// The running workloads and the phase they are in; the observer marks phases from the
/// migrator's thread of control, the demo from its own.
struct Phases {
    inner: Mutex<PhasesInner>,
}

struct PhasesInner {
    handles: Vec<(Release, WorkloadHandle)>,
    timeline: Vec<(String, Instant)>,
}

impl Phases {
    fn new() -> Self {
        Phases {
            inner: Mutex::new(PhasesInner {
                handles: Vec::new(),
                timeline: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PhasesInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on, completions count in `name` (a no-op if it is already the current phase).
    fn mark(&self, name: &str) {
        let mut inner = self.lock();
        if inner.timeline.last().is_some_and(|(n, _)| n == name) {
            return;
        }
        inner.timeline.push((name.to_owned(), Instant::now()));
        for (_, h) in &inner.handles {
            h.mark_phase(name);
        }
    }

    fn add(&self, release: Release, handle: WorkloadHandle) {
        let mut inner = self.lock();
        if let Some((name, _)) = inner.timeline.last() {
            handle.mark_phase(name);
        }
        inner.handles.push((release, handle));
    }

    fn take(&self, release: Release) -> Option<WorkloadHandle> {
        let mut inner = self.lock();
        let i = inner.handles.iter().position(|(r, _)| *r == release)?;
        Some(inner.handles.remove(i).1)
    }

    fn timeline(&self, end: Instant) -> Vec<PhaseTime> {
        let inner = self.lock();
        let mut out: Vec<PhaseTime> = Vec::new();
        for (i, (name, start)) in inner.timeline.iter().enumerate() {
            let until = inner.timeline.get(i + 1).map_or(end, |(_, t)| *t);
            let secs = until.saturating_duration_since(*start).as_secs_f64();
            match out.iter_mut().find(|p| &p.name == name) {
                Some(p) => p.seconds += secs,
                None => out.push(PhaseTime {
                    name: name.clone(),
                    seconds: secs,
                }),
            }
        }
        out
    }
}

/// Stops a workload and returns its report (`None` when it never started).
async fn stop(phases: &Phases, release: Release) -> Option<WorkloadReport> {
    match phases.take(release) {
        Some(h) => Some(h.stop().await),
        None => None,
    }
}

// ---------------------------------------------------------------------------------------------
// The observer: marks phases, records steps, forwards to the CLI's renderer
// ---------------------------------------------------------------------------------------------

struct DemoObserver {
    inner: Arc<dyn Observer>,
    phases: Arc<Phases>,
    backfill_seen: AtomicBool,
    lock_retries: AtomicU64,
    record: Mutex<ObservedSteps>,
}

#[derive(Default)]
struct ObservedSteps {
    steps: Vec<StepTiming>,
    backfills: BTreeMap<String, pgbaton::backfill::Progress>,
}

impl DemoObserver {
    fn record(&self) -> MutexGuard<'_, ObservedSteps> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Observer for DemoObserver {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::StepStarted {
                phase: Phase::Start,
                step,
                ..
            } => {
                let name = if matches!(step.action, Action::Backfill(_)) {
                    self.backfill_seen.store(true, Ordering::Relaxed);
                    START_BACKFILL
                } else if self.backfill_seen.load(Ordering::Relaxed) {
                    START_FINISH
                } else {
                    START_EXPAND
                };
                self.phases.mark(name);
            }
            Event::StepFinished {
                phase,
                step,
                elapsed,
                attempts,
                ..
            } => self.record().steps.push(StepTiming {
                phase: phase.to_string(),
                title: step.title.clone(),
                lock: step.lock.name().to_owned(),
                work: step.work.name().to_owned(),
                ms: elapsed.as_secs_f64() * 1e3,
                attempts: *attempts,
            }),
            Event::LockRetry { .. } => {
                self.lock_retries.fetch_add(1, Ordering::Relaxed);
            }
            Event::Backfill(p) => {
                if matches!(p.state, pgbaton::backfill::ProgressState::LockWait { .. }) {
                    self.lock_retries.fetch_add(1, Ordering::Relaxed);
                }
                self.record().backfills.insert(p.label(), (*p).clone());
            }
            _ => {}
        }
        self.inner.event(event);
    }
}

// ---------------------------------------------------------------------------------------------
// Where the demo runs
// ---------------------------------------------------------------------------------------------

/// The database the demo uses; dropping it removes what the demo created (the throwaway cluster,
/// or the demo's schemas in an existing database).
struct Target {
    conn: ConnConfig,
    /// The workload's connection settings (the first host of `conn`).
    workload_pg: tokio_postgres::Config,
    admin: Client,
    label: String,
    /// Drops the demo's schemas of an existing database (runs on drop).
    cleanup: Option<SchemaCleanup>,
    /// Dropped last: stops the server and removes its directory.
    cluster: Option<Cluster>,
}

impl Target {
    async fn open(options: &DemoOptions, notes: &Notes) -> Result<Target, DemoError> {
        match &options.database {
            DemoDatabase::Throwaway(cluster_options) => {
                notes.say("setup", "starting a throwaway PostgreSQL cluster");
                let cluster_options = cluster_options.clone();
                let cluster = tokio::task::spawn_blocking(move || Cluster::start(cluster_options))
                    .await
                    .map_err(|e| DemoError::ClusterTask(e.to_string()))??;
                cluster.create_database(DEMO_DATABASE)?;
                notes.say(
                    "setup",
                    format!(
                        "cluster up on port {} ({}); it is removed when the demo ends",
                        cluster.port(),
                        cluster.socket_dir().display()
                    ),
                );
                let conn = ConnConfig::parse(&cluster.url(DEMO_DATABASE))?;
                let mut target = Target::connect(conn, "throwaway cluster").await?;
                target.cluster = Some(cluster);
                Ok(target)
            }
            DemoDatabase::Existing(url) => {
                let conn = ConnConfig::parse(url)?;
                let mut target = Target::connect(conn, "existing database").await?;
                target.claim_schemas().await?;
                target.cleanup = Some(SchemaCleanup {
                    conn: target.conn.clone(),
                });
                Ok(target)
            }
        }
    }

    async fn connect(conn: ConnConfig, label: &str) -> Result<Target, DemoError> {
        let conn = conn.with_application_name(APP_NAME);
        let admin = pgbaton::pg::connect(&conn)
            .await
            .map_err(pgbaton::Error::from)?;
        let mut workload_pg = match conn.targets_in_connect_order().first() {
            Some(target) => conn.tokio_config(target),
            None => {
                return Err(DemoError::Pgbaton(pgbaton::Error::Other(
                    "the connection settings name no host".into(),
                )))
            }
        };
        workload_pg.application_name(WORKLOAD_APP_NAME);
        Ok(Target {
            conn,
            workload_pg,
            admin,
            label: label.to_owned(),
            cleanup: None,
            cluster: None,
        })
    }

    /// In an existing database: refuse schemas the demo did not create; drop leftovers of an
    /// earlier demo that was killed.
    async fn claim_schemas(&self) -> Result<(), DemoError> {
        let mut leftovers = false;
        for schema in demo_schemas() {
            let row = self
                .admin
                .query_opt(
                    "SELECT coalesce(obj_description(oid, 'pg_namespace'), '') FROM pg_namespace WHERE nspname = $1",
                    &[&schema.as_str()],
                )
                .await
                .map_err(db("looking for the demo's schemas"))?;
            let Some(row) = row else { continue };
            let comment: String = row.get(0);
            let ours = comment == SCHEMA_MARKER
                || (comment.contains(MIGRATION_NAME) && comment.contains(DEMO_SCHEMA));
            if !ours {
                return Err(DemoError::SchemaInUse {
                    schema: schema.as_str().to_owned(),
                });
            }
            leftovers = true;
        }
        if leftovers {
            drop_demo_schemas(&self.admin).await?;
        }
        Ok(())
    }

    async fn server_version(&self) -> String {
        match self.admin.query_one("SELECT version()", &[]).await {
            Ok(row) => row.get(0),
            Err(e) => format!("unknown ({})", pgbaton::pg::describe(&e)),
        }
    }
}

/// Every schema the demo may create, each dropped at the end.
fn demo_schemas() -> Vec<Ident> {
    vec![
        version_schema_name(DEMO_SCHEMA, MIGRATION_NAME),
        Ident::new(DEMO_SCHEMA),
        Ident::new(NAIVE_SCHEMA),
        Ident::new(STATE_SCHEMA),
    ]
}

async fn drop_demo_schemas(client: &Client) -> Result<(), DemoError> {
    // Sessions of a demo that was interrupted may still hold locks on the tables.
    client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND application_name IN ($1, $2)",
            &[&APP_NAME, &WORKLOAD_APP_NAME],
        )
        .await
        .map_err(db("ending the demo's sessions"))?;
    for schema in demo_schemas() {
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
            .map_err(db(format!("dropping schema {schema}")))?;
    }
    Ok(())
}

/// Drops the demo's schemas of an existing database when dropped: at the end, on an error, and
/// when the demo future is cancelled (Ctrl-C). Runs on a thread of its own with its own runtime,
/// because `Drop` cannot await.
struct SchemaCleanup {
    conn: ConnConfig,
}

impl Drop for SchemaCleanup {
    fn drop(&mut self) {
        let conn = self.conn.clone();
        let worker = std::thread::Builder::new()
            .name("pgbaton-demo-cleanup".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::warn!("demo cleanup: cannot start a runtime: {e}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    match pgbaton::pg::connect(&conn).await {
                        Ok(client) => {
                            if let Err(e) = drop_demo_schemas(&client).await {
                                tracing::warn!("demo cleanup: {e}");
                            }
                        }
                        Err(e) => tracing::warn!("demo cleanup: cannot connect: {e}"),
                    }
                });
            });
        match worker {
            Ok(handle) => {
                let _ = handle.join();
            }
            Err(e) => tracing::warn!("demo cleanup: cannot start a thread: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The table and the clients
// ---------------------------------------------------------------------------------------------

/// SQL that creates `schema.users (id <id_type> PRIMARY KEY, name, email, created_at)` and loads
/// `rows` rows with ids `1..=rows` (the primary key is added after the load, which is faster).
/// Shared with the benchmarks.
pub fn load_users_sql(schema: &Ident, id_type: &str, rows: u64) -> Vec<String> {
    let t = QualName::new(schema.clone(), Ident::new(TABLE));
    vec![
        format!(
            "CREATE TABLE {t} (id {id_type} NOT NULL, name text NOT NULL, email text NOT NULL, \
             created_at timestamptz NOT NULL DEFAULT now())"
        ),
        format!(
            "INSERT INTO {t} (id, name, email, created_at) \
             SELECT g, 'user ' || g, 'user' || g || '@example' || (g % 7) || '.com', \
                    timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' \
             FROM generate_series(1, {rows}) AS g"
        ),
        format!(
            "ALTER TABLE {t} ADD CONSTRAINT {} PRIMARY KEY (id)",
            Ident::new(format!("{TABLE}_pkey"))
        ),
        format!("VACUUM (ANALYZE) {t}"),
    ]
}

async fn create_table(
    target: &Target,
    schema: &str,
    rows: u64,
    notes: &Notes,
) -> Result<(), DemoError> {
    let schema_ident = Ident::new(schema);
    notes.say(
        "setup",
        format!("creating {schema}.{TABLE} and loading {rows} rows"),
    );
    let started = Instant::now();
    target
        .admin
        .batch_execute(&format!(
            "CREATE SCHEMA {schema_ident}; COMMENT ON SCHEMA {schema_ident} IS {}",
            quote_literal(SCHEMA_MARKER)
        ))
        .await
        .map_err(db(format!("creating schema {schema}")))?;
    for sql in load_users_sql(&schema_ident, "integer", rows) {
        target
            .admin
            .batch_execute(&sql)
            .await
            .map_err(db(format!("loading {schema}.{TABLE}")))?;
    }
    // Start the measured part with a clean buffer pool; not allowed to every role, so optional.
    if let Err(e) = target.admin.batch_execute("CHECKPOINT").await {
        tracing::debug!("demo: CHECKPOINT: {}", pgbaton::pg::describe(&e));
    }
    notes.say(
        "setup",
        format!(
            "loaded {rows} rows in {:.1}s",
            started.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// Replaces "any existing id" parameters by ids of `[low, high]`.
fn restrict_ids(mut spec: ClientSpec, low: i64, high: i64) -> ClientSpec {
    for q in &mut spec.mix {
        for p in &mut q.query.params {
            if *p == ParamGen::ExistingId {
                *p = ParamGen::Int { low, high };
            }
        }
    }
    spec
}

/// The old release: the base table in `schema`, the lower half of the ids.
fn old_clients(options: &DemoOptions, schema: &str) -> Vec<ClientSpec> {
    let half = (options.rows / 2) as i64;
    UsersTable::new(TABLE)
        .in_schema(schema)
        .clients(options.old_clients, VersionPin::Base, &options.mix)
        .into_iter()
        .enumerate()
        .map(|(i, mut spec)| {
            spec.label = format!("old-{}", i + 1);
            restrict_ids(spec, 1, half.max(1))
        })
        .collect()
}

/// The new release: `search_path` = `schema` (the version schema, or the naive copy after its
/// ALTER), the new names, the upper half of the ids; inserts from [`NEW_INSERT_BASE`].
fn new_clients(options: &DemoOptions, schema: &str) -> Vec<ClientSpec> {
    let low = (options.rows / 2) as i64 + 1;
    let high = (options.rows as i64).max(low);
    let existing = || ParamGen::Int { low, high };
    let mix = options.mix;
    (1..=options.new_clients)
        .map(|i| {
            let mut spec = ClientSpec::new(
                format!("new-{i}"),
                VersionPin::SearchPath(schema.to_owned()),
            );
            if mix.read > 0 {
                spec = spec.with(
                    mix.read,
                    QuerySpec::read(
                        "SELECT id, full_name, email, email_domain, created_at FROM users WHERE id = $1",
                        vec![existing()],
                    ),
                );
            }
            if mix.update > 0 {
                spec = spec.with(
                    mix.update,
                    QuerySpec::update(
                        "UPDATE users SET full_name = $2, email = $3, \
                         email_domain = split_part($3::text, '@', 2) WHERE id = $1",
                        vec![existing(), ParamGen::text("n-", 12), ParamGen::email()],
                    )
                    .logged(1, Some(2)),
                );
            }
            if mix.insert > 0 {
                spec = spec.with(
                    mix.insert,
                    QuerySpec::insert(
                        "INSERT INTO users (id, full_name, email, email_domain, created_at) \
                         VALUES ($1, $2, $3, split_part($3::text, '@', 2), now())",
                        vec![ParamGen::FreshId, ParamGen::text("ni-", 12), ParamGen::email()],
                    )
                    .logged(1, Some(2)),
                );
            }
            spec
        })
        .collect()
}

fn workload_config(
    target: &Target,
    options: &DemoOptions,
    clients: Vec<ClientSpec>,
    max_id: i64,
    phase: &str,
    seed: u64,
) -> WorkloadConfig {
    let mut config = WorkloadConfig::new(target.workload_pg.clone());
    config.clients = clients;
    config.max_id = max_id;
    config.think_time = options.think_time;
    config.initial_phase = phase.to_owned();
    config.seed = seed;
    config
}

async fn start_workload(
    phases: &Phases,
    release: Release,
    config: WorkloadConfig,
) -> Result<(), DemoError> {
    let handle = Workload::start(config).await?;
    phases.add(release, handle);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Checks after a run
// ---------------------------------------------------------------------------------------------

async fn final_schema(
    client: &Client,
    schema: &str,
) -> Result<(Vec<ColumnInfo>, Vec<String>), DemoError> {
    let rows = client
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull \
             FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&QualName::new(schema, TABLE).to_string()],
        )
        .await
        .map_err(db("reading the final schema"))?;
    let columns = rows
        .iter()
        .map(|r| ColumnInfo {
            name: r.get(0),
            data_type: r.get(1),
            nullable: r.get(2),
        })
        .collect();
    let pk = client
        .query(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY a.attnum",
            &[&QualName::new(schema, TABLE).to_string()],
        )
        .await
        .map_err(db("reading the primary key"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok((columns, pk))
}

/// What the migrated table must look like, whichever way it was changed.
fn schema_problems(columns: &[ColumnInfo], pk: &[String]) -> Vec<String> {
    let expected = [
        ("id", "bigint", false),
        ("full_name", "text", false),
        ("email", "text", false),
        ("created_at", "timestamp with time zone", false),
        ("email_domain", "text", false),
    ];
    let mut problems = Vec::new();
    for (name, data_type, nullable) in expected {
        match columns.iter().find(|c| c.name == name) {
            None => problems.push(format!("column {name} is missing")),
            Some(c) if c.data_type != data_type => {
                problems.push(format!("column {name} is {}, not {data_type}", c.data_type))
            }
            Some(c) if c.nullable != nullable => problems.push(format!(
                "column {name} is {}",
                if c.nullable { "nullable" } else { "NOT NULL" }
            )),
            Some(_) => {}
        }
    }
    for c in columns {
        if !expected.iter().any(|(n, _, _)| *n == c.name) {
            problems.push(format!("unexpected column {} ({})", c.name, c.data_type));
        }
    }
    if pk != ["id"] {
        problems.push(format!("the primary key is ({}), not (id)", pk.join(", ")));
    }
    problems
}

/// What [`check_table`] found.
struct TableCheck {
    columns: Vec<ColumnInfo>,
    primary_key: Vec<String>,
    problems: Vec<String>,
    derived_mismatches: i64,
    writes: WriteCheck,
}

impl TableCheck {
    fn apply(self, run: &mut RunReport) {
        run.final_schema = self.columns;
        run.primary_key = self.primary_key;
        run.schema_problems = self.problems;
        run.derived_mismatches = self.derived_mismatches;
        run.writes = self.writes;
    }
}

/// Checks the migrated table: its shape, no trigger left, `email_domain` right on every row, and
/// every committed write of `logs` present.
async fn check_table(
    client: &Client,
    schema: &str,
    logs: &[&WorkloadReport],
) -> Result<TableCheck, DemoError> {
    let table = QualName::new(schema, TABLE);
    let (columns, primary_key) = final_schema(client, schema).await?;
    let mut problems = schema_problems(&columns, &primary_key);
    let triggers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass($1) AND NOT tgisinternal",
            &[&table.to_string()],
        )
        .await
        .map_err(db("counting triggers"))?
        .get(0);
    if triggers > 0 {
        problems.push(format!("{triggers} trigger(s) left on the table"));
    }
    let mut check = TableCheck {
        columns,
        primary_key,
        problems,
        derived_mismatches: 0,
        writes: WriteCheck::default(),
    };
    if !check.problems.is_empty() {
        return Ok(check);
    }
    check.derived_mismatches = client
        .query_one(
            &format!(
                "SELECT count(*) FROM {table} \
                 WHERE email_domain IS DISTINCT FROM split_part(email, '@', 2)"
            ),
            &[],
        )
        .await
        .map_err(db("checking email_domain"))?
        .get(0);
    let sql = format!("SELECT id, full_name FROM {table}");
    for report in logs {
        check.writes.logged += report.writes.len();
        let mismatches = report
            .writes
            .verify_table(client, &sql)
            .await
            .map_err(db("checking the write log"))?;
        check.writes.lost += mismatches.len();
        let room = 5usize.saturating_sub(check.writes.examples.len());
        check
            .writes
            .examples
            .extend(mismatches.iter().take(room).map(|m| m.to_string()));
    }
    Ok(check)
}

// ---------------------------------------------------------------------------------------------
// The runs
// ---------------------------------------------------------------------------------------------

/// The demo migration, parsed.
pub fn migration() -> Result<Migration, DemoError> {
    Ok(format::parse(
        "demo migration",
        MIGRATION_NAME,
        MIGRATION_YAML,
        FileKind::Yaml,
    )?)
}

/// Runs the demo: loads the table, runs the workload, migrates with pgbaton (and, with
/// `compare_naive`, with a plain `ALTER TABLE` on a copy), checks the result and cleans up.
/// `observer` receives the migrator's events (steps, retries, backfill progress); `notes` the
/// demo's own progress. Dropping the future (Ctrl-C) also cleans up.
pub async fn run(
    options: DemoOptions,
    observer: Arc<dyn Observer>,
    notes: NoteSink,
) -> Result<DemoReport, DemoError> {
    if !(MIN_ROWS..=MAX_ROWS).contains(&options.rows) {
        return Err(DemoError::Rows(options.rows));
    }
    if options.old_clients == 0 || options.new_clients == 0 {
        return Err(DemoError::NoClients);
    }
    let migration = migration()?;
    let notes = Notes {
        sink: notes,
        t0: Instant::now(),
    };
    let target = Target::open(&options, &notes).await?;
    let environment = Environment {
        database: target.label.clone(),
        cluster_dir: target
            .cluster
            .as_ref()
            .map(|c| c.socket_dir().display().to_string()),
        server_version: target.server_version().await,
        rows: options.rows,
        old_clients: options.old_clients,
        new_clients: options.new_clients,
        think_time_ms: options.think_time.as_secs_f64() * 1e3,
        lock_timeout_ms: options.exec.lock_timeout.as_secs_f64() * 1e3,
        migration: MIGRATION_YAML.to_owned(),
        naive_sql: NAIVE_SQL.iter().map(|s| (*s).to_owned()).collect(),
    };
    let pgbaton = run_pgbaton(&target, &options, &migration, observer, &notes).await?;
    let naive = if options.compare_naive {
        Some(run_naive(&target, &options, &notes).await?)
    } else {
        None
    };
    notes.say(
        "cleanup",
        match &target.cluster {
            Some(_) => "stopping and removing the throwaway cluster",
            None => "dropping the demo's schemas",
        },
    );
    drop(target);
    Ok(DemoReport {
        environment,
        pgbaton,
        naive,
    })
}

async fn run_pgbaton(
    target: &Target,
    options: &DemoOptions,
    migration: &Migration,
    renderer: Arc<dyn Observer>,
    notes: &Notes,
) -> Result<RunReport, DemoError> {
    let mut run = RunReport::new("pgbaton");
    create_table(target, DEMO_SCHEMA, options.rows, notes).await?;
    let version_schema = version_schema_name(DEMO_SCHEMA, MIGRATION_NAME);
    let phases = Arc::new(Phases::new());
    let observer = Arc::new(DemoObserver {
        inner: renderer,
        phases: phases.clone(),
        backfill_seen: AtomicBool::new(false),
        lock_retries: AtomicU64::new(0),
        record: Mutex::new(ObservedSteps::default()),
    });
    let settings = Settings {
        schema: DEMO_SCHEMA.into(),
        state_schema: STATE_SCHEMA.into(),
        exec: options.exec.clone(),
    };
    let migrator = Migrator::connect(target.conn.clone(), settings)
        .await?
        .with_observer(observer.clone());
    migrator.init().await?;
    target
        .admin
        .batch_execute(&format!(
            "COMMENT ON SCHEMA {} IS {}",
            Ident::new(STATE_SCHEMA),
            quote_literal(SCHEMA_MARKER)
        ))
        .await
        .map_err(db("marking the state schema"))?;

    let half = (options.rows / 2) as i64;
    let old = workload_config(
        target,
        options,
        old_clients(options, DEMO_SCHEMA),
        options.rows as i64,
        BASELINE,
        1,
    );
    phases.mark(BASELINE);
    start_workload(&phases, Release::Old, old).await?;
    notes.say(
        "workload",
        format!(
            "{} old-release clients on {DEMO_SCHEMA}.{TABLE} (ids 1..{half}); baseline for {:.0}s",
            options.old_clients,
            options.baseline.as_secs_f64()
        ),
    );
    tokio::time::sleep(options.baseline).await;

    let migration_started = Instant::now();
    let mut migration_ended = None;
    phases.mark(START_EXPAND);
    notes.say(
        "migration",
        format!("pgbaton start {MIGRATION_NAME}: expand, dual-write triggers, backfill"),
    );
    let outcome = async {
        migrator.start(migration, false).await?;
        phases.mark(BOTH);
        notes.say(
            "migration",
            format!("started: the new version is ready in schema {version_schema}"),
        );
        let new = workload_config(
            target,
            options,
            new_clients(options, version_schema.as_str()),
            NEW_INSERT_BASE,
            BOTH,
            2,
        );
        start_workload(&phases, Release::New, new).await?;
        notes.say(
            "workload",
            format!(
                "{} new-release clients on {version_schema} (ids {}..{}); both releases run for {:.0}s",
                options.new_clients,
                half + 1,
                options.rows,
                options.overlap.as_secs_f64()
            ),
        );
        tokio::time::sleep(options.overlap).await;
        run.old = stop(&phases, Release::Old).await;
        notes.say(
            "workload",
            "old release retired; pgbaton complete: contract",
        );
        phases.mark(COMPLETE);
        migrator.complete().await?;
        migration_ended = Some(Instant::now());
        phases.mark(AFTER);
        notes.say(
            "migration",
            format!(
                "completed; the new release runs on for {:.0}s",
                options.after.as_secs_f64()
            ),
        );
        tokio::time::sleep(options.after).await;
        Ok::<(), DemoError>(())
    }
    .await;
    let end = Instant::now();
    match outcome {
        Ok(()) => run.completed = true,
        Err(e) => {
            notes.say("migration", format!("failed: {e}"));
            run.error = Some(e.to_string());
        }
    }
    if run.old.is_none() {
        run.old = stop(&phases, Release::Old).await;
    }
    run.new = stop(&phases, Release::New).await;
    drop(migrator);

    run.timeline = phases.timeline(end);
    run.migration_phases = [START_EXPAND, START_BACKFILL, START_FINISH, COMPLETE]
        .iter()
        .filter(|p| run.timeline.iter().any(|t| t.name == **p))
        .map(|p| (*p).to_owned())
        .collect();
    // The migration's own time: start and complete (not the overlap between them); when it never
    // ended, everything from its start to the end of the run.
    run.migration_s = if migration_ended.is_none() {
        end.saturating_duration_since(migration_started)
            .as_secs_f64()
    } else {
        run.timeline
            .iter()
            .filter(|t| run.migration_phases.contains(&t.name))
            .map(|t| t.seconds)
            .sum()
    };
    run.lock_retries = observer.lock_retries.load(Ordering::Relaxed);
    {
        let record = observer.record();
        run.steps = record.steps.clone();
        run.backfills = record
            .backfills
            .values()
            .map(|p| BackfillSummary {
                table: p.label(),
                rows: p.rows_done,
                rows_updated: p.rows_updated,
                seconds: p.elapsed_seconds,
                rows_per_second: if p.elapsed_seconds > 0.0 {
                    p.rows_done as f64 / p.elapsed_seconds
                } else {
                    0.0
                },
                batches: p.batches,
                batch_size: p.batch_size,
                batch_p50_ms: p.batch_p50_ms,
                batch_p99_ms: p.batch_p99_ms,
            })
            .collect();
    }
    for phase in ["start", "complete"] {
        if let Some(step) = run
            .steps
            .iter()
            .filter(|s| s.phase == phase && s.lock == LockLevel::AccessExclusive.name())
            .max_by(|a, b| a.ms.total_cmp(&b.ms))
        {
            run.longest_exclusive_step.push(step.clone());
        }
    }
    if run.completed {
        notes.say(
            "verify",
            "checking the final schema and every committed write",
        );
        let logs: Vec<&WorkloadReport> = run.old.iter().chain(run.new.iter()).collect();
        let check = check_table(&target.admin, DEMO_SCHEMA, &logs).await?;
        check.apply(&mut run);
    }
    Ok(run)
}

async fn run_naive(
    target: &Target,
    options: &DemoOptions,
    notes: &Notes,
) -> Result<RunReport, DemoError> {
    let mut run = RunReport::new("naive ALTER TABLE");
    create_table(target, NAIVE_SCHEMA, options.rows, notes).await?;
    let phases = Phases::new();
    let old = workload_config(
        target,
        options,
        old_clients(options, NAIVE_SCHEMA),
        options.rows as i64,
        BASELINE,
        1,
    );
    phases.mark(BASELINE);
    start_workload(&phases, Release::Old, old).await?;
    notes.say(
        "naive",
        format!(
            "{} old-release clients on {NAIVE_SCHEMA}.{TABLE}; baseline for {:.0}s",
            options.old_clients,
            options.baseline.as_secs_f64()
        ),
    );
    tokio::time::sleep(options.baseline).await;

    phases.mark(NAIVE_ALTER);
    notes.say(
        "naive",
        "the plain ALTER TABLE equivalent, in one transaction",
    );
    let mut script = format!(
        "BEGIN; SET LOCAL search_path TO {}; ",
        Ident::new(NAIVE_SCHEMA)
    );
    for sql in NAIVE_SQL {
        script.push_str(sql);
        script.push_str("; ");
    }
    script.push_str("COMMIT");
    let altered = target.admin.batch_execute(&script).await;
    // A plain deploy switches the application at the same moment.
    run.old = stop(&phases, Release::Old).await;
    match altered {
        Ok(()) => {
            run.completed = true;
            phases.mark(AFTER);
            let new = workload_config(
                target,
                options,
                new_clients(options, NAIVE_SCHEMA),
                NEW_INSERT_BASE,
                AFTER,
                2,
            );
            start_workload(&phases, Release::New, new).await?;
            notes.say(
                "naive",
                format!(
                    "altered; the new release runs for {:.0}s",
                    options.after.as_secs_f64()
                ),
            );
            tokio::time::sleep(options.after).await;
        }
        Err(e) => {
            let _ = target.admin.batch_execute("ROLLBACK").await;
            run.error = Some(pgbaton::pg::describe(&e));
        }
    }
    let end = Instant::now();
    run.new = stop(&phases, Release::New).await;
    run.timeline = phases.timeline(end);
    run.migration_phases = vec![NAIVE_ALTER.to_owned()];
    run.migration_s = run
        .timeline
        .iter()
        .filter(|t| t.name == NAIVE_ALTER)
        .map(|t| t.seconds)
        .sum();
    if run.completed {
        let logs: Vec<&WorkloadReport> = run.old.iter().chain(run.new.iter()).collect();
        let check = check_table(&target.admin, NAIVE_SCHEMA, &logs).await?;
        check.apply(&mut run);
    }
    Ok(run)
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

/// `812µs`, `12.3ms`, `1.02s` (shared with the workload report).
pub use crate::workload::human_us;

fn codes(codes: &BTreeMap<String, u64>) -> String {
    if codes.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = codes.iter().map(|(c, n)| format!("{c} ×{n}")).collect();
    format!(" ({})", parts.join(", "))
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {}",
            self.method,
            if self.completed {
                "completed".to_owned()
            } else {
                format!(
                    "FAILED: {}",
                    self.error.as_deref().unwrap_or("unknown error")
                )
            }
        )?;
        writeln!(
            f,
            "  {:<16} {:>7} {:<7} {:>8} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "phase", "wall", "release", "queries", "failed", "ok/s", "p50", "p99", "max", "stall"
        )?;
        for t in &self.timeline {
            let mut first = true;
            for (version, report) in self.workloads() {
                let Some(p) = report.phase(&t.name) else {
                    continue;
                };
                if p.queries == 0 && p.wall_s == 0.0 {
                    continue;
                }
                let l = &p.latency;
                writeln!(
                    f,
                    "  {:<16} {:>7} {:<7} {:>8} {:>6} {:>8.0} {:>8} {:>8} {:>8} {:>8}",
                    if first { t.name.as_str() } else { "" },
                    if first {
                        format!("{:.2}s", t.seconds)
                    } else {
                        String::new()
                    },
                    version,
                    p.queries,
                    p.failures,
                    p.throughput_qps,
                    human_us(l.p50_us as f64),
                    human_us(l.p99_us as f64),
                    human_us(l.max_us as f64),
                    human_us(p.longest_stall_ms * 1e3),
                )?;
                first = false;
            }
            if first {
                writeln!(f, "  {:<16} {:>7}", t.name, format!("{:.2}s", t.seconds))?;
            }
        }
        writeln!(
            f,
            "  queries: {}, failed: {}{}",
            self.queries(),
            self.failures(),
            codes(&self.failures_by_code())
        )?;
        writeln!(
            f,
            "  migration: {:.2}s; from its start to the end: max latency {}, worst p99 {} (baseline p99 {}), longest stall {}",
            self.migration_s,
            human_us(self.max_latency_during_migration_us() as f64),
            human_us(self.worst_p99_during_migration_us() as f64),
            human_us(self.baseline_p99_us() as f64),
            human_us(self.longest_stall_during_migration_ms() * 1e3),
        )?;
        for b in &self.backfills {
            writeln!(
                f,
                "  backfill {}: {} rows in {:.2}s ({:.0} rows/s), {} batches of up to {} rows, batch p50 {:.0}ms p99 {:.0}ms",
                b.table,
                b.rows,
                b.seconds,
                b.rows_per_second,
                b.batches,
                b.batch_size,
                b.batch_p50_ms,
                b.batch_p99_ms
            )?;
        }
        if !self.steps.is_empty() {
            writeln!(f, "  lock retries: {}", self.lock_retries)?;
        }
        for s in &self.longest_exclusive_step {
            writeln!(
                f,
                "  longest ACCESS EXCLUSIVE step of {}: \"{}\" {:.1}ms ({} attempt(s))",
                s.phase, s.title, s.ms, s.attempts
            )?;
        }
        if self.completed {
            let cols: Vec<String> = self
                .final_schema
                .iter()
                .map(|c| {
                    format!(
                        "{} {}{}",
                        c.name,
                        c.data_type,
                        if c.nullable { "" } else { " NOT NULL" }
                    )
                })
                .collect();
            writeln!(
                f,
                "  final table: ({}), primary key ({})",
                cols.join(", "),
                self.primary_key.join(", ")
            )?;
            if self.schema_problems.is_empty() {
                writeln!(
                    f,
                    "  schema: right; email_domain wrong on {} row(s)",
                    self.derived_mismatches
                )?;
            } else {
                writeln!(f, "  schema: WRONG: {}", self.schema_problems.join("; "))?;
            }
            writeln!(
                f,
                "  writes: {} committed, {} lost",
                self.writes.logged, self.writes.lost
            )?;
            for e in &self.writes.examples {
                writeln!(f, "    {e}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.environment;
        writeln!(
            f,
            "\npgbaton demo: {} rows, {} old + {} new release clients (think time {:.0}ms), lock_timeout {:.0}ms",
            e.rows, e.old_clients, e.new_clients, e.think_time_ms, e.lock_timeout_ms
        )?;
        writeln!(f, "{} ({})", e.server_version, e.database)?;
        writeln!(
            f,
            "migration {MIGRATION_NAME}: id integer → bigint (alter_column), name → full_name \
             (rename_column), email_domain NOT NULL filled by up (add_column)\n"
        )?;
        write!(f, "{}", self.pgbaton)?;
        if let Some(naive) = &self.naive {
            writeln!(f)?;
            write!(f, "{naive}")?;
            writeln!(
                f,
                "\nside by side (\"during\": from the migration's start to the end of the run):"
            )?;
            let p = &self.pgbaton;
            let rows: Vec<(&str, String, String)> = vec![
                (
                    "completed",
                    p.completed.to_string(),
                    naive.completed.to_string(),
                ),
                (
                    "migration time",
                    format!("{:.2}s", p.migration_s),
                    format!("{:.2}s", naive.migration_s),
                ),
                (
                    "failed queries (whole run)",
                    format!("{}{}", p.failures(), codes(&p.failures_by_code())),
                    format!("{}{}", naive.failures(), codes(&naive.failures_by_code())),
                ),
                (
                    "baseline p99",
                    human_us(p.baseline_p99_us() as f64),
                    human_us(naive.baseline_p99_us() as f64),
                ),
                (
                    "worst p99 during",
                    human_us(p.worst_p99_during_migration_us() as f64),
                    human_us(naive.worst_p99_during_migration_us() as f64),
                ),
                (
                    "max latency during",
                    human_us(p.max_latency_during_migration_us() as f64),
                    human_us(naive.max_latency_during_migration_us() as f64),
                ),
                (
                    "longest stall during",
                    human_us(p.longest_stall_during_migration_ms() * 1e3),
                    human_us(naive.longest_stall_during_migration_ms() * 1e3),
                ),
                (
                    "writes lost",
                    p.writes.lost.to_string(),
                    naive.writes.lost.to_string(),
                ),
            ];
            writeln!(
                f,
                "  {:<28} {:>22} {:>22}",
                "", "pgbaton", "naive ALTER TABLE"
            )?;
            for (what, a, b) in rows {
                writeln!(f, "  {what:<28} {a:>22} {b:>22}")?;
            }
        }
        writeln!(
            f,
            "\nresult: {}",
            if self.ok() {
                "zero failed queries, schema right, no write lost"
            } else {
                "NOT clean (see above)"
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_migration_parses() {
        let m = migration().expect("the demo migration parses");
        assert_eq!(m.name, MIGRATION_NAME);
        assert_eq!(m.operations.len(), 3);
        assert_eq!(
            m.operations.iter().map(|o| o.kind()).collect::<Vec<_>>(),
            vec!["alter_column", "rename_column", "add_column"]
        );
    }

    #[test]
    fn schema_check_names_every_difference() {
        let col = |n: &str, t: &str, nullable: bool| ColumnInfo {
            name: n.into(),
            data_type: t.into(),
            nullable,
        };
        let right = vec![
            col("id", "bigint", false),
            col("full_name", "text", false),
            col("email", "text", false),
            col("created_at", "timestamp with time zone", false),
            col("email_domain", "text", false),
        ];
        assert!(schema_problems(&right, &["id".into()]).is_empty());
        let mut wrong = right.clone();
        wrong[0].data_type = "integer".into();
        wrong[4].nullable = true;
        wrong.push(col("_pgbaton_new_id", "bigint", true));
        let problems = schema_problems(&wrong, &["_pgbaton_new_id".into()]);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("integer"));
    }

    #[test]
    fn releases_use_disjoint_keys() {
        let options = DemoOptions {
            rows: 1000,
            ..DemoOptions::default()
        };
        let ranges = |specs: Vec<ClientSpec>| -> Vec<(i64, i64)> {
            specs
                .iter()
                .flat_map(|s| s.mix.iter())
                .flat_map(|q| q.query.params.iter())
                .filter_map(|p| match p {
                    ParamGen::Int { low, high } => Some((*low, *high)),
                    _ => None,
                })
                .collect()
        };
        let old = ranges(old_clients(&options, DEMO_SCHEMA));
        let new = ranges(new_clients(&options, "v"));
        assert!(!old.is_empty() && !new.is_empty());
        assert!(old.iter().all(|&(l, h)| l == 1 && h == 500));
        assert!(new.iter().all(|&(l, h)| l == 501 && h == 1000));
        for spec in old_clients(&options, DEMO_SCHEMA) {
            assert!(spec
                .mix
                .iter()
                .all(|q| !q.query.params.contains(&ParamGen::ExistingId)));
        }
    }

    #[test]
    fn load_sql_quotes_the_schema() {
        let sql = load_users_sql(&Ident::new("My Schema"), "bigint", 10);
        assert!(sql[0].starts_with("CREATE TABLE \"My Schema\".\"users\" (id bigint"));
        assert!(sql[1].contains("generate_series(1, 10)"));
    }
}
