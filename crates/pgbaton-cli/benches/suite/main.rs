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
//!   bytes); pgbaton with its default settings (latency budget on, one worker), with longer
//!   batches (`--batch-time-variants`) and with more workers (`--workers-variants`, a parallel
//!   fill); plus the UPDATE throughput with the dual-write trigger enabled vs disabled on the
//!   same table, and `start` beside a light old-version writer (with the budget and without,
//!   the writer's own latency timed). (c) and (e) come from the same runs: pgbaton's time and peak RSS per table size
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
    WorkloadHandle, WorkloadReport,
};

mod backfill;
mod bench;
mod changes;
mod child;
mod html;
mod lockqueue;
mod locks;
mod render;
mod results;
mod workload;

use bench::*;
use changes::*;
use child::*;
use locks::*;
use render::*;
use results::*;

#[derive(Parser, Debug, Clone)]
#[command(name = "suite", about = "pgbaton benchmark suite")]
struct Args {
    /// Which benchmarks: backfill (a, c, e), workload (b), lockqueue (d), all
    #[arg(default_values_t = vec!["all".to_string()])]
    which: Vec<String>,
    /// Table sizes for the backfill benchmarks
    #[arg(long, value_delimiter = ',', default_values_t = vec![1_000_000u64, 10_000_000])]
    rows: Vec<u64>,
    /// Add a 100M-row size to the backfill benchmarks (about 12 GB per copy): only the single
    /// UPDATE and pgbaton with default settings (and its `complete`), of `--changes-100m`
    #[arg(long)]
    with_100m: bool,
    /// The changes the 100M-row size makes (with `--with-100m`)
    #[arg(long, value_delimiter = ',', default_values_t = vec!["type".to_string()])]
    changes_100m: Vec<String>,
    /// The changes the backfill benchmarks make: type, add, pk
    #[arg(long, value_delimiter = ',', default_values_t = vec!["type".to_string(), "add".to_string(), "pk".to_string()])]
    changes: Vec<String>,
    /// Table size of the workload benchmark (b)
    #[arg(long, default_value_t = 1_000_000)]
    workload_rows: u64,
    /// The contenders of the workload benchmark (b): any of pgbaton, pgbaton-capped (a fixed
    /// rows-per-second cap), naive, reshape (when installed)
    #[arg(long, value_delimiter = ',', default_values_t = vec!["pgbaton".to_string(), "pgbaton-capped".to_string(), "naive".to_string(), "reshape".to_string()])]
    workload_methods: Vec<String>,
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
    /// Also run the backfill with these `--backfill-workers` counts, beside the default (one)
    #[arg(long, value_delimiter = ',', default_values_t = vec![2u32])]
    workers_variants: Vec<u32>,
    /// Runs of the single UPDATE and of pgbaton's backfill per size and change (best shown)
    #[arg(long, default_value_t = 2)]
    repeat: usize,
    /// Skip Reshape even when it is installed
    #[arg(long)]
    no_reshape: bool,
    /// Write every measurement as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the workload (b) and lock-queue (d) runs as one HTML page with charts to this file
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
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
    bench.results.environment = environment(&bench).await?;

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
    write_results(&bench.results, &args)?;
    let _ = std::fs::remove_dir_all(&bench.work);
    Ok(())
}

/// The run's environment: the server, its settings, the machine and the suite's options.
async fn environment(bench: &Bench) -> Result<BTreeMap<String, String>> {
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
        format!("{}ms", bench.args.lock_timeout),
    );
    env.insert(
        "workload".into(),
        format!(
            "{} closed-loop clients, 70% point reads / 30% point updates, prepared statements",
            bench.args.clients
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
    Ok(env)
}

/// The results as text on stdout, and as HTML and JSON when asked.
fn write_results(results: &Results, args: &Args) -> Result<()> {
    let text = render(results);
    println!("{text}");
    if let Some(path) = &args.report {
        std::fs::write(path, html::report_html(results, &text)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("HTML report written to {}", path.display());
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(results)?)?;
        eprintln!("results written to {}", path.display());
    }
    Ok(())
}
