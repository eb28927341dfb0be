//! pgbaton's benchmark suite: every comparison side by side in one run, on a throwaway cluster.
//!
//! ```text
//! cargo bench --bench suite -- all                     # everything below, 1M and 10M rows
//! cargo bench --bench suite -- backfill --rows 1000000 # (a) + (c) + (e) at one size
//! cargo bench --bench suite -- workload                # (b)
//! cargo bench --bench suite -- lockqueue               # (d)
//! ```
//!
//! - (a) `backfill`: backfill throughput of an `alter_column` type change, of an `add_column`
//!   with `up` and of a primary-key widening (int → bigint), each against a single
//!   `UPDATE t SET c = <the same expression>` and against Reshape, on identical copies of the
//!   same table (cloned from one template database, so every contender starts from the same
//!   bytes); plus the UPDATE throughput with the dual-write trigger enabled vs disabled on the
//!   same table. (c) and (e) come from the same runs: pgbaton's time and peak RSS per table size
//!   (the `pgbaton` binary runs as a child process; its RSS comes from `wait4`), and the time of
//!   `complete`, its longest `ACCESS EXCLUSIVE` step and the workload's latency meanwhile.
//! - (b) `workload`: a closed-loop read/update workload's latency and failures during pgbaton
//!   (start + complete), during the plain `ALTER TABLE`, and during Reshape.
//! - (d) `lockqueue`: a transaction holds a conflicting lock while the migration starts: the
//!   workload's max latency, pgbaton's retries and its success once the lock is released, and
//!   its clean give-up at the deadline when it is not; the plain ALTER and Reshape beside it.
//!
//! This is a `harness = false` bench target: `cargo test --all-targets` builds it and runs it
//! without `--bench`, and then it does nothing. The heavy work runs only under `cargo bench`
//! (which passes `--bench`) or with `PGBATON_BENCH=1`.
//!
//! Reshape is found through `RESHAPE_BIN` or `PATH`; without it, its column says so.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use serde::Serialize;
use serde_json::Value as Json;
use tokio_postgres::{Client, NoTls};

use pgbaton::ident::Ident;
use pgbaton_lab::cluster::{Cluster, ClusterOptions};
use pgbaton_lab::demo::{human_us, load_users_sql};
use pgbaton_lab::workload::{
    ClientSpec, OpMix, ParamGen, QuerySpec, UsersTable, VersionPin, Workload, WorkloadConfig,
    WorkloadReport,
};

#[derive(Parser, Debug, Clone)]
#[command(name = "suite", about = "pgbaton benchmark suite")]
struct Args {
    /// Which benchmarks: backfill (a, c, e), workload (b), lockqueue (d), all
    #[arg(default_values_t = vec!["all".to_string()])]
    which: Vec<String>,
    /// Table sizes for the backfill benchmarks
    #[arg(long, value_delimiter = ',', default_values_t = vec![1_000_000u64, 10_000_000])]
    rows: Vec<u64>,
    /// Add a 100M-row size to the backfill benchmarks (about 12 GB per copy; hours)
    #[arg(long)]
    with_100m: bool,
    /// The changes the backfill benchmarks make: type, add, pk
    #[arg(long, value_delimiter = ',', default_values_t = vec!["type".to_string(), "add".to_string(), "pk".to_string()])]
    changes: Vec<String>,
    /// Table size of the workload benchmark (b)
    #[arg(long, default_value_t = 1_000_000)]
    workload_rows: u64,
    /// Table size of the lock-queue benchmark (d)
    #[arg(long, default_value_t = 200_000)]
    lockqueue_rows: u64,
    /// Workload clients (closed loop, 70% reads / 30% updates)
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Seconds of workload before each migration
    #[arg(long, default_value_t = 10.0)]
    baseline: f64,
    /// Seconds the lock-queue blocker holds its lock
    #[arg(long, default_value_t = 10.0)]
    hold: f64,
    /// pgbaton's lock timeout, in milliseconds (as `--lock-timeout`)
    #[arg(long, default_value_t = 500)]
    lock_timeout: u64,
    /// Also run the backfill with these `--backfill-batch-time` values (ms), beside the default
    #[arg(long, value_delimiter = ',', default_values_t = vec![500u64])]
    batch_time_variants: Vec<u64>,
    /// Runs of the single UPDATE and of pgbaton's backfill per size and change (best shown)
    #[arg(long, default_value_t = 2)]
    repeat: usize,
    /// Skip Reshape even when it is installed
    #[arg(long)]
    no_reshape: bool,
    /// Write every measurement as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
    /// Passed by `cargo bench`
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let heavy = argv.iter().any(|a| a == "--bench")
        || std::env::var("PGBATON_BENCH").is_ok_and(|v| v == "1");
    if !heavy {
        eprintln!(
            "pgbaton benchmark suite: nothing to do outside `cargo bench` \
             (run `cargo bench --bench suite -- all`, or set PGBATON_BENCH=1)"
        );
        return ExitCode::SUCCESS;
    }
    let args = Args::parse_from(argv);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The changes
// ---------------------------------------------------------------------------------------------

/// One schema change, written for each contender.
struct Change {
    key: &'static str,
    label: &'static str,
    /// The key column's type in the table before the change.
    id_type: &'static str,
    /// pgbaton (pgroll format).
    yaml: &'static str,
    /// Reshape.
    toml: &'static str,
    /// The single UPDATE: a column of the new type first (untimed), then the UPDATE (timed).
    update_prep: &'static str,
    update_sql: &'static str,
    /// The plain ALTER TABLE.
    naive: &'static str,
    /// After pgbaton's start: how many rows do not hold `up(old)` in the new column.
    check_sql: &'static str,
}

const CHANGES: &[Change] = &[
    Change {
        key: "type",
        label: "alter_column name text → varchar(200)",
        id_type: "bigint",
        yaml: "operations:\n  - alter_column:\n      table: users\n      column: name\n      type: varchar(200)\n      up: left(name, 200)\n      down: name\n",
        toml: "[[actions]]\ntype = \"alter_column\"\ntable = \"users\"\ncolumn = \"name\"\nup = \"LEFT(name, 200)\"\ndown = \"name\"\n\n  [actions.changes]\n  type = \"VARCHAR(200)\"\n",
        update_prep: "ALTER TABLE users ADD COLUMN name_new varchar(200)",
        update_sql: "UPDATE users SET name_new = left(name, 200)",
        naive: "ALTER TABLE users ALTER COLUMN name TYPE varchar(200)",
        check_sql: "SELECT count(*) FROM users WHERE _pgbaton_new_name IS DISTINCT FROM left(name, 200)",
    },
    Change {
        key: "add",
        label: "add_column email_domain with up",
        id_type: "bigint",
        yaml: "operations:\n  - add_column:\n      table: users\n      column:\n        name: email_domain\n        type: text\n        nullable: true\n      up: split_part(email, '@', 2)\n",
        toml: "[[actions]]\ntype = \"add_column\"\ntable = \"users\"\nup = \"split_part(email, '@', 2)\"\n\n  [actions.column]\n  name = \"email_domain\"\n  type = \"TEXT\"\n",
        update_prep: "ALTER TABLE users ADD COLUMN email_domain text",
        update_sql: "UPDATE users SET email_domain = split_part(email, '@', 2)",
        naive: "ALTER TABLE users ADD COLUMN email_domain text; UPDATE users SET email_domain = split_part(email, '@', 2)",
        check_sql: "SELECT count(*) FROM users WHERE _pgbaton_new_email_domain IS DISTINCT FROM split_part(email, '@', 2)",
    },
    Change {
        key: "pk",
        label: "alter_column id (primary key) integer → bigint",
        id_type: "integer",
        yaml: "operations:\n  - alter_column:\n      table: users\n      column: id\n      type: bigint\n      up: id\n      down: id\n",
        toml: "[[actions]]\ntype = \"alter_column\"\ntable = \"users\"\ncolumn = \"id\"\nup = \"id\"\ndown = \"id\"\n\n  [actions.changes]\n  type = \"BIGINT\"\n",
        update_prep: "ALTER TABLE users ADD COLUMN id_new bigint",
        update_sql: "UPDATE users SET id_new = id",
        naive: "ALTER TABLE users ALTER COLUMN id TYPE bigint",
        check_sql: "SELECT count(*) FROM users WHERE _pgbaton_new_id IS DISTINCT FROM id",
    },
];

fn change(key: &str) -> Result<&'static Change> {
    CHANGES
        .iter()
        .find(|c| c.key == key)
        .ok_or_else(|| anyhow!("unknown change {key:?} (type, add, pk)"))
}

/// The lock-queue benchmark's change: catalog steps that need ACCESS EXCLUSIVE, a short backfill.
const LOCKQUEUE_CHANGE: &str = "add";
/// The backfill throttle of the second pgbaton run of the workload benchmark (rows/s).
const THROTTLE: u64 = 100_000;
/// The workload benchmark's change: the one a plain ALTER makes painful.
const WORKLOAD_CHANGE: &str = "pk";

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

#[derive(Serialize, Default)]
struct Results {
    environment: BTreeMap<String, String>,
    backfill: Vec<BackfillResult>,
    trigger: Vec<TriggerResult>,
    complete: Vec<CompleteResult>,
    workload: Vec<WorkloadResult>,
    lockqueue: Vec<LockQueueResult>,
    notes: Vec<String>,
}

#[derive(Serialize, Clone)]
struct BackfillResult {
    rows: u64,
    change: String,
    /// Seconds of each run (the tables show the best).
    update_runs: Vec<f64>,
    pgbaton_backfill_runs: Vec<f64>,
    pgbaton_start_runs: Vec<f64>,
    /// `--backfill-batch-time <ms>` -> seconds of each backfill.
    variant_runs: BTreeMap<u64, Vec<f64>>,
    pgbaton_start_rss_mb: Option<f64>,
    pgbaton_complete_s: Option<f64>,
    pgbaton_complete_rss_mb: Option<f64>,
    pgbaton_error: Option<String>,
    reshape_start_s: Option<f64>,
    reshape_complete_s: Option<f64>,
    reshape_rss_mb: Option<f64>,
    reshape_error: Option<String>,
    /// One more `pgbaton start` while the application writes (the catch-up pass has work).
    with_writes: Option<WithWrites>,
    load: String,
}

/// `pgbaton start` while an old-version client updates random rows at a steady pace: the fill
/// runs without the dual-write trigger, so the catch-up pass has the rows it wrote to fix.
#[derive(Serialize, Clone)]
struct WithWrites {
    /// Updates the client committed while `start` ran.
    writes: u64,
    fill_s: f64,
    catch_up_s: f64,
    /// Rows the catch-up pass updated.
    catch_up_rows: u64,
    /// Rows whose new column is not `up(old)` after start (must be 0).
    wrong_rows: i64,
}

#[derive(Serialize, Clone)]
struct TriggerResult {
    rows: u64,
    change: String,
    rows_updated: u64,
    without_s: Vec<f64>,
    with_s: Vec<f64>,
}

#[derive(Serialize, Clone)]
struct CompleteResult {
    rows: u64,
    change: String,
    complete_s: f64,
    longest_exclusive_step: Option<(String, f64)>,
    exclusive_steps: Vec<(String, f64)>,
    /// Sampled from pg_locks while complete ran.
    locks: Option<LockStats>,
    workload_max_ms: f64,
    workload_p99_ms: f64,
    baseline_p99_ms: f64,
    baseline_max_ms: f64,
    failures: u64,
}

#[derive(Serialize, Clone)]
struct WorkloadResult {
    method: String,
    rows: u64,
    migration_s: f64,
    error: Option<String>,
    /// ACCESS EXCLUSIVE on the table, sampled from the migration's start to the end.
    locks: Option<LockStats>,
    report: WorkloadReport,
}

#[derive(Serialize, Clone)]
struct LockQueueResult {
    method: String,
    scenario: String,
    outcome: String,
    exit: Option<i32>,
    seconds: f64,
    lock_retries: Option<u64>,
    table_unchanged: Option<bool>,
    max_latency_ms: f64,
    p99_ms: f64,
    /// ACCESS EXCLUSIVE on the table, sampled while the migration ran.
    locks: Option<LockStats>,
    failures: u64,
    report: WorkloadReport,
}

// ---------------------------------------------------------------------------------------------
// Lock sampling
// ---------------------------------------------------------------------------------------------

/// Who held or waited for `ACCESS EXCLUSIVE` on the table, from `pg_locks` sampled in a tight
/// loop (about one query per millisecond). A lock shorter than the sampling interval may go
/// unseen; a seen one is measured from its first to its last sample (a lower bound, short by at
/// most one interval).
#[derive(Serialize, Clone, Debug, Default)]
struct LockStats {
    samples: u64,
    interval_ms: f64,
    longest_held_ms: f64,
    longest_wait_ms: f64,
    /// Client sessions seen holding it.
    holders: u64,
}

struct LockSampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<LockStats>>,
}

/// pid -> (first seen, last seen).
type Sightings = std::collections::HashMap<i32, (Instant, Instant)>;

/// Ends the sightings of pids not in `seen`, keeping the longest.
fn close_sightings(map: &mut Sightings, seen: &[i32], longest: &mut f64) {
    map.retain(|pid, (first, last)| {
        if seen.contains(pid) {
            return true;
        }
        *longest = longest.max(secs(*last - *first) * 1e3);
        false
    });
}

impl LockSampler {
    async fn start(url: &str, table: &str) -> Result<LockSampler> {
        let client = connect(url).await?;
        let oid: u32 = client
            .query_one("SELECT to_regclass($1)::oid", &[&table])
            .await?
            .try_get(0)
            .with_context(|| format!("no table {table}"))?;
        let stmt = client
            .prepare(
                "SELECT l.pid, l.granted FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'relation' AND l.relation = $1 \
                   AND l.mode = 'AccessExclusiveLock' AND a.backend_type = 'client backend'",
            )
            .await?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut stats = LockStats::default();
            let mut held = Sightings::new();
            let mut waiting = Sightings::new();
            let started = Instant::now();
            while matches!(
                stopped.try_recv(),
                Err(tokio::sync::oneshot::error::TryRecvError::Empty)
            ) {
                let rows = client.query(&stmt, &[&oid]).await?;
                let now = Instant::now();
                let (mut h, mut w) = (Vec::new(), Vec::new());
                for row in rows {
                    let pid: i32 = row.get(0);
                    let granted: bool = row.get(1);
                    if granted {
                        if !held.contains_key(&pid) {
                            stats.holders += 1;
                        }
                        held.entry(pid).or_insert((now, now)).1 = now;
                        h.push(pid);
                    } else {
                        waiting.entry(pid).or_insert((now, now)).1 = now;
                        w.push(pid);
                    }
                }
                close_sightings(&mut held, &h, &mut stats.longest_held_ms);
                close_sightings(&mut waiting, &w, &mut stats.longest_wait_ms);
                stats.samples += 1;
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            close_sightings(&mut held, &[], &mut stats.longest_held_ms);
            close_sightings(&mut waiting, &[], &mut stats.longest_wait_ms);
            stats.interval_ms = secs(started.elapsed()) * 1e3 / stats.samples.max(1) as f64;
            Ok(stats)
        });
        Ok(LockSampler { stop, task })
    }

    async fn stop(self) -> Result<LockStats> {
        let _ = self.stop.send(());
        self.task.await.context("lock sampler task")?
    }
}

fn lock_cell(l: &Option<LockStats>) -> String {
    match l {
        Some(l) => format!(
            "{:.1}ms / {:.1}ms (sampled every {:.1}ms)",
            l.longest_held_ms, l.longest_wait_ms, l.interval_ms
        ),
        None => "—".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

struct ChildOut {
    wall: Duration,
    /// Peak resident set size (`ru_maxrss` from `wait4`), in kB.
    max_rss_kb: u64,
    /// Exit code; `None` when killed by a signal.
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn best(runs: &[f64]) -> Option<f64> {
    runs.iter().copied().reduce(f64::min)
}

impl BackfillResult {
    fn update_s(&self) -> f64 {
        best(&self.update_runs).unwrap_or(f64::NAN)
    }
    fn pgbaton_backfill_s(&self) -> Option<f64> {
        best(&self.pgbaton_backfill_runs)
    }
    fn pgbaton_start_s(&self) -> Option<f64> {
        best(&self.pgbaton_start_runs)
    }
}

fn runs(v: &[f64]) -> String {
    v.iter()
        .map(|s| format!("{s:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ChildOut {
    fn ok(&self) -> bool {
        self.code == Some(0)
    }

    fn rss_mb(&self) -> f64 {
        self.max_rss_kb as f64 / 1024.0
    }

    fn failure(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        // An error chain ("Error: ...", "Caused by: ... ERROR: ...") says more than a tail.
        let mut picked: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.contains("Error") || l.contains("ERROR") || l.starts_with("error"))
            .take(3)
            .collect();
        if picked.is_empty() {
            picked = lines.iter().rev().take(3).rev().copied().collect();
        }
        format!("exit {:?}: {}", self.code, picked.join(" / ")).replace('|', "/")
    }
}

/// Runs `cmd` to completion (killing it after `limit`), with its own peak RSS.
fn run_child_blocking(mut cmd: Command, limit: Option<Duration>) -> Result<ChildOut> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout.take().context("child stdout")?;
    let mut err = child.stderr.take().context("child stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let killer = limit.map(|limit| {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            if rx.recv_timeout(limit).is_err() {
                // SAFETY: plain syscall on our unreaped child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        (tx, handle)
    });
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data filled by the kernel; `pid` is our child, reaped here once.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    if let Some((tx, handle)) = killer {
        let _ = tx.send(());
        let _ = handle.join();
    }
    if rc < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    // The child is reaped: std must not wait for it again.
    std::mem::forget(child);
    let code = if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else {
        None
    };
    Ok(ChildOut {
        wall,
        max_rss_kb: usage.ru_maxrss.max(0) as u64,
        code,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

async fn run_child(cmd: Command, limit: Option<Duration>) -> Result<ChildOut> {
    tokio::task::spawn_blocking(move || run_child_blocking(cmd, limit))
        .await
        .context("child runner task")?
}

/// What `pgbaton --json start|complete` reported.
#[derive(Default, Debug)]
struct PgbatonRun {
    /// (phase, title, lock, work, elapsed ms, attempts), in order.
    steps: Vec<(String, String, String, String, f64, u64)>,
    lock_retries: u64,
    /// (rows, seconds) of the last backfill progress per table.
    backfill: BTreeMap<String, (u64, f64)>,
    error: Option<String>,
}

impl PgbatonRun {
    fn parse(stdout: &str) -> PgbatonRun {
        let mut run = PgbatonRun::default();
        let mut started: BTreeMap<(String, u64), (String, String)> = BTreeMap::new();
        for line in stdout.lines() {
            let Ok(v) = serde_json::from_str::<Json>(line) else {
                continue;
            };
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            match v["event"].as_str() {
                Some("step_started") => {
                    started.insert(
                        (s("phase"), v["step"].as_u64().unwrap_or(0)),
                        (s("lock"), s("work")),
                    );
                }
                Some("step_finished") => {
                    let (lock, work) = started
                        .get(&(s("phase"), v["step"].as_u64().unwrap_or(0)))
                        .cloned()
                        .unwrap_or_default();
                    run.steps.push((
                        s("phase"),
                        s("title"),
                        lock,
                        work,
                        v["elapsed_ms"].as_f64().unwrap_or(0.0),
                        v["attempts"].as_u64().unwrap_or(1),
                    ));
                }
                Some("lock_retry") => run.lock_retries += 1,
                Some("backfill") => {
                    let p = &v["progress"];
                    if p["state"].as_str() == Some("lock_wait") {
                        run.lock_retries += 1;
                    }
                    run.backfill.insert(
                        p["table"].as_str().unwrap_or_default().to_owned(),
                        (
                            p["rows_done"].as_u64().unwrap_or(0),
                            p["elapsed_seconds"].as_f64().unwrap_or(0.0),
                        ),
                    );
                }
                Some("error") => run.error = Some(s("error")),
                _ => {}
            }
        }
        run
    }

    /// Seconds spent in backfill steps.
    fn backfill_s(&self) -> Option<f64> {
        let ms: Vec<f64> = self
            .steps
            .iter()
            .filter(|s| s.3 == "batched backfill")
            .map(|s| s.4)
            .collect();
        (!ms.is_empty()).then(|| ms.iter().sum::<f64>() / 1e3)
    }

    fn exclusive_steps(&self) -> Vec<(String, f64)> {
        self.steps
            .iter()
            .filter(|s| s.2 == "ACCESS EXCLUSIVE")
            .map(|s| (s.1.clone(), s.4))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The bench context
// ---------------------------------------------------------------------------------------------

struct Bench {
    args: Args,
    cluster: Cluster,
    work: PathBuf,
    pgbaton: PathBuf,
    reshape: Option<PathBuf>,
    templates: Vec<String>,
    results: Results,
    seq: u32,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn find_reshape() -> Option<PathBuf> {
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

async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Bench {
    fn url(&self, db: &str) -> String {
        self.cluster.url(db)
    }

    fn say(&self, text: impl AsRef<str>) {
        eprintln!("[bench {}] {}", loadavg(), text.as_ref());
    }

    async fn admin(&self) -> Result<Client> {
        connect(&self.url("postgres")).await
    }

    async fn exec(&self, db: &str, sql: &str) -> Result<()> {
        let c = connect(&self.url(db)).await?;
        c.batch_execute(sql)
            .await
            .with_context(|| format!("{db}: {sql}"))?;
        Ok(())
    }

    /// A template database `tmpl_<id_type>_<rows>` holding `public.users`, loaded once.
    async fn template(&mut self, id_type: &str, rows: u64) -> Result<String> {
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
    async fn clone_db(&mut self, template: &str, what: &str) -> Result<String> {
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

    async fn drop_db(&self, name: &str) -> Result<()> {
        self.exec(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await
    }

    fn write_file(&self, dir: &str, name: &str, text: &str) -> Result<PathBuf> {
        let dir = self.work.join(dir);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    }

    fn pgbaton_cmd(&self, db: &str, args: &[&str]) -> Command {
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

    async fn pgbaton(&self, db: &str, args: &[&str]) -> Result<(ChildOut, PgbatonRun)> {
        let out = run_child(
            self.pgbaton_cmd(db, args),
            Some(Duration::from_secs(3 * 3600)),
        )
        .await?;
        let parsed = PgbatonRun::parse(&out.stdout);
        Ok((out, parsed))
    }

    async fn reshape(
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
    fn pk_workload_config(&self, db: &str, rows: u64) -> Result<WorkloadConfig> {
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
    fn workload_config(&self, db: &str, pin: VersionPin, rows: u64) -> Result<WorkloadConfig> {
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

// ---------------------------------------------------------------------------------------------
// (a), (c), (e): backfill throughput, trigger overhead, time and RSS, complete
// ---------------------------------------------------------------------------------------------

impl Bench {
    async fn backfill(&mut self) -> Result<()> {
        let mut sizes = self.args.rows.clone();
        if self.args.with_100m {
            sizes.push(100_000_000);
        }
        let changes: Vec<&Change> = self
            .args
            .changes
            .iter()
            .map(|k| change(k))
            .collect::<Result<_>>()?;
        for &rows in &sizes {
            for c in &changes {
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

    async fn backfill_one(&mut self, rows: u64, c: &Change) -> Result<()> {
        let template = self.template(c.id_type, rows).await?;
        let load_before = loadavg();
        let mut result = BackfillResult {
            rows,
            change: c.key.into(),
            update_runs: Vec::new(),
            pgbaton_backfill_runs: Vec::new(),
            pgbaton_start_runs: Vec::new(),
            variant_runs: BTreeMap::new(),
            pgbaton_start_rss_mb: None,
            pgbaton_complete_s: None,
            pgbaton_complete_rss_mb: None,
            pgbaton_error: None,
            reshape_start_s: None,
            reshape_complete_s: None,
            reshape_rss_mb: None,
            reshape_error: None,
            with_writes: None,
            load: String::new(),
        };
        // Each contender runs `repeat` times on fresh copies, alternating which goes first, so
        // that the load other users put on the machine hits both alike; the tables show the
        // best run of each.
        let repeat = self.args.repeat.max(1);
        for round in 0..repeat {
            let last = round + 1 == repeat;
            for update_first in [round % 2 == 0, round % 2 == 1] {
                if update_first {
                    let s = self.single_update(&template, rows, c).await?;
                    result.update_runs.push(s);
                } else if result.pgbaton_error.is_none() {
                    self.pgbaton_backfill(&template, rows, c, last, &mut result)
                        .await?;
                    for &ms in &self.args.batch_time_variants.clone() {
                        if let Some(b) = self.pgbaton_variant(&template, rows, c, ms).await? {
                            result.variant_runs.entry(ms).or_default().push(b);
                        }
                    }
                }
            }
        }

        if result.pgbaton_error.is_none() {
            result.with_writes = self.pgbaton_with_writes(&template, rows, c).await?;
        }

        // Reshape.
        if self.reshape.is_some() {
            let db = self.clone_db(&template, "reshape").await?;
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
        }
        result.load = format!("{load_before} → {}", loadavg());
        self.results.backfill.push(result);
        Ok(())
    }

    /// The physical limit: one UPDATE of the whole table, on a fresh copy. Returns seconds.
    async fn single_update(&mut self, template: &str, rows: u64, c: &Change) -> Result<f64> {
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
    async fn pgbaton_copy(
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
    async fn pgbaton_backfill(
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
                self.trigger_overhead(&db, rows, c).await?;
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
    async fn pgbaton_with_writes(
        &mut self,
        template: &str,
        rows: u64,
        c: &Change,
    ) -> Result<Option<WithWrites>> {
        let (db, file) = self.pgbaton_copy(template, c, "writes").await?;
        self.say(format!(
            "{rows} rows, {}: pgbaton start with an old-version writer",
            c.key
        ));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let client = connect(&self.url(&db)).await?;
            let stop = stop.clone();
            let max = rows as i64;
            tokio::spawn(async move {
                let mut writes = 0u64;
                let mut n: i64 = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    // A fixed stride over the ids: rows already filled and rows not yet.
                    let id = (n * 7_919) % max + 1;
                    if client
                        .execute(
                            "UPDATE users SET name = name || '.', email = email || '.' WHERE id = $1::int8",
                            &[&id],
                        )
                        .await
                        .is_ok()
                    {
                        writes += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                writes
            })
        };
        let started = self.pgbaton(&db, &["start", &file]).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let writes = writer.await?;
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
             ({catch_up_rows} rows), wrong rows {wrong_rows}"
        ));
        Ok(Some(WithWrites {
            writes,
            fill_s,
            catch_up_s,
            catch_up_rows: catch_up_rows.max(0) as u64,
            wrong_rows,
        }))
    }

    /// `pgbaton --backfill-batch-time <ms> start` on a fresh copy: the backfill's seconds.
    async fn pgbaton_variant(
        &mut self,
        template: &str,
        rows: u64,
        c: &Change,
        batch_time_ms: u64,
    ) -> Result<Option<f64>> {
        let (db, file) = self.pgbaton_copy(template, c, "variant").await?;
        let ms = batch_time_ms.to_string();
        self.say(format!(
            "{rows} rows, {}: pgbaton start --backfill-batch-time {ms}",
            c.key
        ));
        let (start, parsed) = self
            .pgbaton(&db, &["--backfill-batch-time", &ms, "start", &file])
            .await?;
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
    async fn trigger_overhead(&mut self, db: &str, rows: u64, c: &Change) -> Result<()> {
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
    async fn complete_under_load(
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
        let (out, parsed) = self.pgbaton(db, &["complete"]).await?;
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

// ---------------------------------------------------------------------------------------------
// (b): workload latency during pgbaton, the plain ALTER and Reshape
// ---------------------------------------------------------------------------------------------

impl Bench {
    async fn workload(&mut self) -> Result<()> {
        let rows = self.args.workload_rows;
        let c = change(WORKLOAD_CHANGE)?;
        let template = self.template(c.id_type, rows).await?;
        let throttled = format!("pgbaton, --backfill-rows-per-second {THROTTLE}");
        let mut methods = vec!["pgbaton", throttled.as_str(), "naive ALTER TABLE"];
        if self.reshape.is_some() {
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
            let handle = Workload::start(self.pk_workload_config(&db, rows)?).await?;
            self.say(format!(
                "workload ({method}): baseline {}s",
                self.args.baseline
            ));
            tokio::time::sleep(Duration::from_secs_f64(self.args.baseline)).await;
            let sampler = LockSampler::start(&self.url(&db), "public.users").await?;
            let started = Instant::now();
            let mut error = None;
            match method {
                m if m.starts_with("pgbaton") => {
                    handle.mark_phase("start");
                    let yaml = yaml.to_string_lossy().into_owned();
                    let throttle = THROTTLE.to_string();
                    let mut args = vec!["start", yaml.as_str()];
                    if m != "pgbaton" {
                        args = vec!["--backfill-rows-per-second", &throttle, "start", &yaml];
                    }
                    let (out, parsed) = self.pgbaton(&db, &args).await?;
                    if out.ok() {
                        handle.mark_phase("complete");
                        let (out, parsed) = self.pgbaton(&db, &["complete"]).await?;
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
                    match self.reshape(&db, &reshape_dir, "start", limit).await? {
                        Some(out) if out.ok() => {
                            handle.mark_phase("complete");
                            if let Some(out) =
                                self.reshape(&db, &reshape_dir, "complete", limit).await?
                            {
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
                    let client = connect(&self.url(&db)).await?;
                    if let Err(e) = client.batch_execute(c.naive).await {
                        error = Some(pgbaton::pg::describe(&e));
                    }
                }
            }
            let migration_s = secs(started.elapsed());
            handle.mark_phase("after");
            tokio::time::sleep(Duration::from_secs(5)).await;
            let locks = sampler.stop().await?;
            let report = handle.stop().await;
            self.say(format!(
                "workload ({method}): migration {migration_s:.2}s\n{report}"
            ));
            self.results.workload.push(WorkloadResult {
                method: method.into(),
                rows,
                migration_s,
                error,
                locks: Some(locks),
                report,
            });
            self.drop_db(&db).await?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// (d): the lock queue
// ---------------------------------------------------------------------------------------------

/// Columns and triggers of `public.users`, to tell whether a failed start left anything behind.
async fn table_shape(client: &Client) -> Result<String> {
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
    async fn lockqueue(&mut self) -> Result<()> {
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

    async fn lockqueue_one(
        &mut self,
        template: &str,
        rows: u64,
        c: &Change,
        method: &str,
        released: bool,
    ) -> Result<()> {
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
        let admin = connect(&self.url(&db)).await?;
        let shape_before = table_shape(&admin).await?;
        let config = self.workload_config(&db, VersionPin::Base, rows)?;
        let handle = Arc::new(Workload::start(config).await?);
        tokio::time::sleep(Duration::from_secs(3)).await;

        // The blocker: an open transaction that has read the table (ACCESS SHARE), as a long
        // report query or an idle-in-transaction session leaves it.
        let blocker = connect(&format!("{}?application_name=bench-blocker", self.url(&db))).await?;
        blocker
            .batch_execute("BEGIN; SELECT count(*) FROM users WHERE id < 10")
            .await?;
        handle.mark_phase("blocked");
        let scenario = if released {
            format!("lock held {}s, then released", self.args.hold)
        } else {
            "lock never released (deadline 10s)".to_owned()
        };
        self.say(format!("lock queue ({method}): {scenario}"));
        let hold = Duration::from_secs_f64(self.args.hold);
        let release = {
            let handle = handle.clone();
            let blocker_ref = &blocker;
            async move {
                if released {
                    tokio::time::sleep(hold).await;
                    handle.mark_phase("released");
                    blocker_ref.batch_execute("COMMIT").await?;
                }
                Ok::<(), anyhow::Error>(())
            }
        };
        let sampler = LockSampler::start(&self.url(&db), "public.users").await?;
        let started = Instant::now();
        let (exit, lock_retries, outcome) = match method {
            "pgbaton" => {
                let deadline = if released { "120" } else { "10" };
                let yaml = yaml.to_string_lossy().into_owned();
                let cmd =
                    self.pgbaton_cmd(&db, &["--lock-retry-deadline", deadline, "start", &yaml]);
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
                    .arg(&reshape_dir)
                    .arg("--url")
                    .arg(self.url(&db))
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
                let client = connect(&self.url(&db)).await?;
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
        };
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
        let during: Vec<_> = report
            .phases
            .iter()
            // A query held up by the lock completes when it is released, or just after.
            .filter(|p| p.name != "baseline")
            .collect();
        let max_latency_ms =
            during.iter().map(|p| p.latency.max_us).max().unwrap_or(0) as f64 / 1e3;
        let p99_ms = during.iter().map(|p| p.latency.p99_us).max().unwrap_or(0) as f64 / 1e3;
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
            locks: Some(locks),
            failures: report.total.failures,
            report,
        });
        drop(admin);
        drop(blocker);
        self.drop_db(&db).await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering: one markdown table per benchmark
// ---------------------------------------------------------------------------------------------

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "—".into())
}

fn rate(rows: u64, s: f64) -> String {
    format!("{:.0}k", rows as f64 / s / 1e3)
}

fn render(results: &Results) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "## Environment\n");
    for (k, v) in &results.environment {
        let _ = writeln!(w, "- {k}: {v}");
    }
    if !results.backfill.is_empty() {
        let _ = writeln!(
            w,
            "\n## (a) Backfill throughput vs a single UPDATE (and Reshape)\n"
        );
        let _ = writeln!(
            w,
            "| rows | change | single UPDATE, best (runs) | pgbaton backfill, best (runs) | ratio | pgbaton start, total | Reshape start | Reshape ratio | load (1/5/15 min) |"
        );
        let _ = writeln!(w, "|---:|---|---:|---:|---:|---:|---:|---:|---|");
        for r in &results.backfill {
            let label = change(&r.change).map(|c| c.label).unwrap_or("?");
            let update_s = r.update_s();
            let backfill = r.pgbaton_backfill_s();
            let _ = writeln!(
                w,
                "| {} | {} | {:.1}s = {} rows/s ({}) | {} | {} | {} | {} | {} | {} |",
                r.rows,
                label,
                update_s,
                rate(r.rows, update_s),
                runs(&r.update_runs),
                match (&r.pgbaton_error, backfill) {
                    (Some(_), Some(s)) => format!(
                        "{s:.1}s = {} rows/s ({}; failed later, see below)",
                        rate(r.rows, s),
                        runs(&r.pgbaton_backfill_runs)
                    ),
                    (Some(_), None) => "failed (see below)".into(),
                    (None, Some(s)) => format!(
                        "{s:.1}s = {} rows/s ({})",
                        rate(r.rows, s),
                        runs(&r.pgbaton_backfill_runs)
                    ),
                    (None, None) => "—".into(),
                },
                opt(backfill, |s| format!("**{:.2}×**", update_s / s)),
                opt(r.pgbaton_start_s(), |s| format!(
                    "{s:.1}s ({:.2}×)",
                    update_s / s
                )),
                match (&r.reshape_error, r.reshape_start_s) {
                    (Some(_), Some(s)) => format!("{s:.1}s (complete failed, see below)"),
                    (Some(_), None) => "failed (see below)".into(),
                    (None, Some(s)) => format!("{s:.1}s"),
                    (None, None) => "not run".into(),
                },
                opt(r.reshape_start_s, |s| format!("{:.2}×", update_s / s)),
                r.load
            );
        }
    }
    if results.backfill.iter().any(|r| r.with_writes.is_some()) {
        let _ = writeln!(
            w,
            "\n## (a) The backfill while the application writes (catch-up pass)\n"
        );
        let _ = writeln!(
            w,
            "| rows | change | single UPDATE, best | updates during start | fill | catch-up (rows fixed) | fill + catch-up | ratio | wrong rows after |"
        );
        let _ = writeln!(w, "|---:|---|---:|---:|---:|---:|---:|---:|---:|");
        for r in &results.backfill {
            let Some(x) = &r.with_writes else { continue };
            let total = x.fill_s + x.catch_up_s;
            let _ = writeln!(
                w,
                "| {} | {} | {:.1}s | {} | {:.1}s | {:.2}s ({}) | {:.1}s | **{:.2}×** | {} |",
                r.rows,
                r.change,
                r.update_s(),
                x.writes,
                x.fill_s,
                x.catch_up_s,
                x.catch_up_rows,
                total,
                r.update_s() / total,
                x.wrong_rows
            );
        }
    }
    if results.backfill.iter().any(|r| !r.variant_runs.is_empty()) {
        let _ = writeln!(
            w,
            "\n## (a) The backfill with longer batches (`--backfill-batch-time`; default 100 ms)\n"
        );
        let _ = writeln!(
            w,
            "| rows | change | single UPDATE, best | default (100 ms), best | batch time | backfill, best (runs) | ratio |"
        );
        let _ = writeln!(w, "|---:|---|---:|---:|---:|---:|---:|");
        for r in &results.backfill {
            for (ms, v) in &r.variant_runs {
                let Some(b) = best(v) else { continue };
                let _ =
                    writeln!(
                    w,
                    "| {} | {} | {:.1}s | {} | {ms} ms | {b:.1}s = {} rows/s ({}) | **{:.2}×** |",
                    r.rows,
                    r.change,
                    r.update_s(),
                    opt(r.pgbaton_backfill_s(), |s| format!("{s:.1}s ({:.2}×)", r.update_s() / s)),
                    rate(r.rows, b),
                    runs(v),
                    r.update_s() / b
                );
            }
        }
    }
    if !results.trigger.is_empty() {
        let _ = writeln!(
            w,
            "\n## (a) UPDATE throughput with the dual-write trigger vs without\n"
        );
        let _ = writeln!(
            w,
            "| rows | change | rows per UPDATE | without trigger (runs) | with trigger (runs) | slowdown |"
        );
        let _ = writeln!(w, "|---:|---|---:|---|---|---:|");
        for t in &results.trigger {
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
            let list = |v: &[f64]| {
                v.iter()
                    .map(|s| format!("{s:.2}s"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {:.2}× |",
                t.rows,
                t.change,
                t.rows_updated,
                list(&t.without_s),
                list(&t.with_s),
                mean(&t.with_s) / mean(&t.without_s)
            );
        }
    }
    if !results.backfill.is_empty() {
        let _ = writeln!(
            w,
            "\n## (c) Scale series: time and peak RSS of the pgbaton process\n"
        );
        let _ = writeln!(
            w,
            "| rows | change | start | complete | peak RSS start | peak RSS complete | Reshape start + complete | Reshape peak RSS |"
        );
        let _ = writeln!(w, "|---:|---|---:|---:|---:|---:|---:|---:|");
        for r in &results.backfill {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.rows,
                r.change,
                opt(r.pgbaton_start_s(), |s| format!("{s:.1}s")),
                opt(r.pgbaton_complete_s, |s| format!("{s:.2}s")),
                opt(r.pgbaton_start_rss_mb, |m| format!("{m:.1} MB")),
                opt(r.pgbaton_complete_rss_mb, |m| format!("{m:.1} MB")),
                match (r.reshape_start_s, r.reshape_complete_s) {
                    (Some(a), Some(b)) => format!("{a:.1}s + {b:.1}s"),
                    (Some(a), None) => format!("{a:.1}s + —"),
                    _ => "—".into(),
                },
                opt(r.reshape_rss_mb, |m| format!("{m:.1} MB")),
            );
        }
    }
    if !results.complete.is_empty() {
        let _ = writeln!(
            w,
            "\n## (e) `complete` under a closed-loop-client workload\n"
        );
        let _ = writeln!(
            w,
            "| rows | change | complete (process) | longest ACCESS EXCLUSIVE step (incl. lock wait) | ACCESS EXCLUSIVE held / waited, sampled | workload p99 / max during complete | baseline p99 / max | failed queries |"
        );
        let _ = writeln!(w, "|---:|---|---:|---:|---:|---:|---:|---:|");
        for e in &results.complete {
            let _ = writeln!(
                w,
                "| {} | {} | {:.2}s | {} | {} | {:.1}ms / {:.1}ms | {:.1}ms / {:.1}ms | {} |",
                e.rows,
                e.change,
                e.complete_s,
                e.longest_exclusive_step
                    .as_ref()
                    .map_or("—".into(), |(t, ms)| format!("{ms:.1}ms ({t})")),
                lock_cell(&e.locks),
                e.workload_p99_ms,
                e.workload_max_ms,
                e.baseline_p99_ms,
                e.baseline_max_ms,
                e.failures
            );
        }
    }
    if !results.workload.is_empty() {
        let _ = writeln!(
            w,
            "\n## (b) Workload during the migration (pk integer → bigint)\n"
        );
        let _ = writeln!(
            w,
            "| method | phase | wall | queries | failed | ok/s | p50 | p99 | max | longest stall |"
        );
        let _ = writeln!(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &results.workload {
            for p in &r.report.phases {
                let l = &p.latency;
                let failed = if p.failures_by_code.is_empty() {
                    p.failures.to_string()
                } else {
                    format!(
                        "{} ({})",
                        p.failures,
                        p.failures_by_code
                            .iter()
                            .map(|(c, n)| format!("{c}×{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                let _ = writeln!(
                    w,
                    "| {} | {} | {:.1}s | {} | {} | {:.0} | {} | {} | {} | {} |",
                    r.method,
                    p.name,
                    p.wall_s,
                    p.queries,
                    failed,
                    p.throughput_qps,
                    human_us(l.p50_us as f64),
                    human_us(l.p99_us as f64),
                    human_us(l.max_us as f64),
                    human_us(p.longest_stall_ms * 1e3)
                );
            }
            if let Some(e) = &r.error {
                let _ = writeln!(w, "| {} | error | {e} | | | | | | | |", r.method);
            }
        }
        let _ = writeln!(
            w,
            "\nSummary (\"during\": every phase after the baseline, since a query held up by the migration completes when it is let go):\n"
        );
        let _ = writeln!(
            w,
            "| method | migration | baseline p99 / max | worst p99 during (× baseline) | max during | ok/s during vs baseline | failed | ACCESS EXCLUSIVE held / waited |"
        );
        let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for r in &results.workload {
            let Some(base) = r.report.phase("baseline") else {
                continue;
            };
            let during: Vec<_> = r
                .report
                .phases
                .iter()
                .filter(|p| p.name != "baseline" && p.name != "after")
                .collect();
            let after_baseline: Vec<_> = r
                .report
                .phases
                .iter()
                .filter(|p| p.name != "baseline")
                .collect();
            let p99 = during.iter().map(|p| p.latency.p99_us).max().unwrap_or(0);
            let max = after_baseline
                .iter()
                .map(|p| p.latency.max_us)
                .max()
                .unwrap_or(0);
            let (ok, wall) = during.iter().fold((0.0, 0.0), |(ok, wall), p| {
                (ok + p.throughput_qps * p.wall_s, wall + p.wall_s)
            });
            let _ = writeln!(
                w,
                "| {} | {:.1}s{} | {} / {} | {} ({:.1}×) | {} | {:.0} vs {:.0} ({:+.0}%) | {} | {} |",
                r.method,
                r.migration_s,
                if r.error.is_some() { " (failed)" } else { "" },
                human_us(base.latency.p99_us as f64),
                human_us(base.latency.max_us as f64),
                human_us(p99 as f64),
                p99 as f64 / base.latency.p99_us.max(1) as f64,
                human_us(max as f64),
                ok / wall.max(1e-9),
                base.throughput_qps,
                (ok / wall.max(1e-9) / base.throughput_qps.max(1e-9) - 1.0) * 100.0,
                r.report.total.failures,
                lock_cell(&r.locks)
            );
        }
    }
    if !results.lockqueue.is_empty() {
        let _ = writeln!(
            w,
            "\n## (d) Lock queue: a transaction holds ACCESS SHARE on the table\n"
        );
        let _ = writeln!(
            w,
            "| method | scenario | outcome | exit | time | lock retries | table unchanged | workload p99 / max from the blocker on | ACCESS EXCLUSIVE held / longest wait | failed queries |"
        );
        let _ = writeln!(w, "|---|---|---|---:|---:|---:|---|---:|---:|---:|");
        for r in &results.lockqueue {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {:.1}s | {} | {} | {:.1}ms / {:.1}ms | {} | {} |",
                r.method,
                r.scenario,
                r.outcome.replace('|', "/"),
                r.exit.map_or("—".into(), |c| c.to_string()),
                r.seconds,
                r.lock_retries.map_or("—".into(), |n| n.to_string()),
                r.table_unchanged.map_or("—".into(), |b| b.to_string()),
                r.p99_ms,
                r.max_latency_ms,
                lock_cell(&r.locks),
                r.failures
            );
        }
    }
    let failures: Vec<String> = results
        .backfill
        .iter()
        .flat_map(|r| {
            [("pgbaton", &r.pgbaton_error), ("Reshape", &r.reshape_error)]
                .into_iter()
                .filter_map(move |(who, e)| {
                    e.as_ref()
                        .map(|e| format!("- {who}, {} rows, {}: {e}", r.rows, r.change))
                })
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(w, "\n### Failures in the backfill runs\n");
        for f in failures {
            let _ = writeln!(w, "{f}");
        }
    }
    for n in &results.notes {
        let _ = writeln!(w, "\nNote: {n}");
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

/// The benchmark cluster: crash-safe settings (fsync on), sized for 10M-row tables.
fn bench_cluster_options() -> ClusterOptions {
    ClusterOptions {
        fsync_off: false,
        replication: true,
        shared_buffers: Some("1GB".into()),
        max_connections: 100,
        ..ClusterOptions::default()
    }
    .setting("max_wal_size", "8GB")
    .setting("checkpoint_timeout", "30min")
    .setting("maintenance_work_mem", "256MB")
}

async fn run(args: Args) -> Result<()> {
    let which: Vec<&str> = args.which.iter().map(String::as_str).collect();
    let all = which.contains(&"all");
    let want = |w: &str| all || which.contains(&w);
    for w in &which {
        if !["all", "backfill", "workload", "lockqueue"].contains(w) {
            bail!("unknown benchmark {w:?}: backfill, workload, lockqueue or all");
        }
    }
    let reshape = if args.no_reshape {
        None
    } else {
        find_reshape()
    };
    let options = bench_cluster_options();
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(options))
        .await
        .context("cluster task")??;
    let work = std::env::temp_dir().join(format!("pgbaton-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let mut bench = Bench {
        args: args.clone(),
        cluster,
        work,
        pgbaton: PathBuf::from(env!("CARGO_BIN_EXE_pgbaton")),
        reshape,
        templates: Vec::new(),
        results: Results::default(),
        seq: 0,
    };
    let admin = bench.admin().await?;
    let version: String = admin.query_one("SELECT version()", &[]).await?.get(0);
    let mut env = BTreeMap::new();
    env.insert("server".into(), version);
    let settings = [
        "shared_buffers",
        "fsync",
        "synchronous_commit",
        "wal_level",
        "max_wal_size",
        "checkpoint_timeout",
        "maintenance_work_mem",
        "work_mem",
        "autovacuum",
    ];
    for row in admin
        .query(
            "SELECT name, current_setting(name) FROM unnest($1::text[]) AS name",
            &[&&settings[..]],
        )
        .await?
    {
        let (setting, v): (String, String) = (row.get(0), row.get(1));
        env.insert(format!("setting {setting}"), v);
    }
    drop(admin);
    env.insert(
        "cpus".into(),
        std::thread::available_parallelism().map_or("?".into(), |n| n.to_string()),
    );
    env.insert("load at start (1/5/15 min)".into(), loadavg());
    env.insert(
        "pgbaton lock_timeout".into(),
        format!("{}ms", args.lock_timeout),
    );
    env.insert(
        "workload".into(),
        format!(
            "{} closed-loop clients, 70% point reads / 30% point updates, prepared statements",
            args.clients
        ),
    );
    env.insert(
        "reshape".into(),
        match &bench.reshape {
            Some(p) => {
                let v = Command::new(p)
                    .arg("--version")
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                    .unwrap_or_else(|e| format!("? ({e})"));
                format!("{v} ({})", p.display())
            }
            None => {
                "not found (set RESHAPE_BIN or put reshape on PATH): its columns are skipped".into()
            }
        },
    );
    bench.results.environment = env;

    let started = Instant::now();
    if want("backfill") {
        bench.backfill().await?;
    }
    if want("workload") {
        bench.workload().await?;
    }
    if want("lockqueue") {
        bench.lockqueue().await?;
    }
    bench
        .results
        .environment
        .insert("load at end (1/5/15 min)".into(), loadavg());
    bench.results.environment.insert(
        "suite wall time".into(),
        format!("{:.0}s", started.elapsed().as_secs_f64()),
    );
    println!("{}", render(&bench.results));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&bench.results)?)?;
        eprintln!("results written to {}", path.display());
    }
    let _ = std::fs::remove_dir_all(&bench.work);
    Ok(())
}
