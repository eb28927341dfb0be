//! The command line: the top-level parser (clap), the global options (flags and environment)
//! and the dispatch to one module of [`crate::commands`] per command. Exit codes are a public
//! contract, listed in [`pgbaton::error::exit`].

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use pgbaton::backfill::BackfillOptions;
use pgbaton::config::ConnConfig;
use pgbaton::error::{exit, Error};
use pgbaton::executor::ExecOptions;
use pgbaton::migrator::Settings;

use crate::commands::common::Context;
use crate::commands::{
    controls, demo, import, init, lifecycle, lint, migrate, plan, status, verify,
};
use crate::output::report_error;

#[derive(Parser, Debug)]
#[command(
    name = "pgbaton",
    version,
    about = "Zero-downtime PostgreSQL schema migrations (expand/contract)"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// PostgreSQL connection URL or key=value string [default: DATABASE_URL, then libpq PG* variables]
    #[arg(long, global = true, env = "PGBATON_PG_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,
    /// The schema whose tables are migrated
    #[arg(long, global = true, env = "PGBATON_SCHEMA", default_value = "public")]
    pub schema: String,
    /// Where pgbaton keeps its state
    #[arg(
        long,
        global = true,
        env = "PGBATON_STATE_SCHEMA",
        default_value = "pgbaton"
    )]
    pub state_schema: String,
    /// Lock timeout of each DDL transaction, in milliseconds
    #[arg(
        long,
        global = true,
        env = "PGBATON_LOCK_TIMEOUT",
        default_value_t = 500
    )]
    pub lock_timeout: u64,
    /// Give up on a step after retrying lock timeouts for this many seconds
    #[arg(
        long,
        global = true,
        env = "PGBATON_LOCK_RETRY_DEADLINE",
        default_value_t = 300
    )]
    pub lock_retry_deadline: u64,
    /// SET ROLE to this role after connecting
    #[arg(long, global = true, env = "PGBATON_ROLE")]
    pub role: Option<String>,
    /// Fixed backfill batch size in rows (default: adapt toward --backfill-batch-time)
    #[arg(long, global = true, env = "PGBATON_BACKFILL_BATCH_SIZE")]
    pub backfill_batch_size: Option<u32>,
    /// Target duration of one backfill batch, in milliseconds
    #[arg(
        long,
        global = true,
        env = "PGBATON_BACKFILL_BATCH_TIME",
        default_value_t = 100
    )]
    pub backfill_batch_time: u64,
    /// Pause between backfill batches, in milliseconds
    #[arg(
        long,
        global = true,
        env = "PGBATON_BACKFILL_BATCH_DELAY",
        default_value_t = 0
    )]
    pub backfill_batch_delay: u64,
    /// Cap on backfilled rows per second
    #[arg(long, global = true, env = "PGBATON_BACKFILL_ROWS_PER_SECOND")]
    pub backfill_rows_per_second: Option<u64>,
    /// Pause the backfill while a streaming replica lags more than this (e.g. `10s`, `64MB`)
    #[arg(long, global = true, env = "PGBATON_MAX_REPLICATION_LAG", value_parser = parse_lag)]
    pub max_replication_lag: Option<pgbaton::backfill::LagCeiling>,
    /// Connections filling each table at once (split by key values or pages; resumable with
    /// another count)
    #[arg(
        long,
        global = true,
        env = "PGBATON_BACKFILL_WORKERS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(pgbaton::backfill::MAX_WORKERS))
    )]
    pub backfill_workers: u32,
    /// Latency budget of the backfill: slow down while a probe query is more than this over its
    /// baseline (`50%`, `0.5`, or `off`)
    #[arg(
        long,
        global = true,
        env = "PGBATON_MAX_LATENCY_INCREASE",
        default_value = "50%",
        value_parser = parse_budget
    )]
    pub max_latency_increase: f64,
    /// Parallel workers of each `CREATE INDEX CONCURRENTLY` (max_parallel_maintenance_workers)
    /// [default: 0 while the latency budget is on and another session is busy, else
    /// PostgreSQL's setting]
    #[arg(long, global = true, env = "PGBATON_INDEX_BUILD_WORKERS",
          value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub index_build_workers: Option<u32>,
    /// No read-ahead session: by default, while a one-connection fill of a table of 1M rows or
    /// more runs at full speed, a second session reads the next batch's rows during each batch
    #[arg(long, global = true, env = "PGBATON_NO_BACKFILL_READ_AHEAD")]
    pub no_backfill_read_ahead: bool,
    /// The latency budget's probe, run on its own read-only connection [default: a cheap
    /// read of the table being filled]
    #[arg(long, global = true, env = "PGBATON_PROBE_QUERY")]
    pub probe_query: Option<String>,
    /// Serve Prometheus metrics on this address while the command runs (e.g. 127.0.0.1:9187)
    #[arg(long, global = true, env = "PGBATON_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Run this command for each event (started, backfill_done, throttled, paused, resumed,
    /// ready, completed, rolled_back, failed) with the event as JSON on stdin; repeatable
    #[arg(long, global = true, env = "PGBATON_HOOK")]
    pub hook: Vec<String>,
    /// Machine-readable output: JSON (one object per line for progress)
    #[arg(long, global = true, env = "PGBATON_JSON")]
    pub json: bool,
    /// More detail on stderr (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the state schema (idempotent)
    Init,
    /// Start a migration: expand, dual writes, backfill, new version schema
    Start(lifecycle::StartArgs),
    /// Complete the active migration: drop what the old version needed. Refused (exit 4) while
    /// the old version has written within --old-version-quiet
    Complete(lifecycle::CompleteArgs),
    /// Roll the active migration back
    Rollback(lifecycle::RollbackArgs),
    /// Show the active migration, its phase and backfill progress
    Status(status::StatusArgs),
    /// Block until the newest migration is ready (its new version exists) or completed
    Wait(status::WaitArgs),
    /// Apply every pending migration of a directory in order
    Migrate(migrate::MigrateArgs),
    /// Print the latest version schema, migration name, or a connection URL using it
    Latest(status::LatestArgs),
    /// Take over the migration history of another tool
    Import(import::ImportArgs),
    /// Write the applied migrations of the database into a directory
    Pull(migrate::PullArgs),
    /// Check a migration file against the live schema; changes nothing
    Validate(plan::ValidateArgs),
    /// Print every step of start, complete and rollback with its lock and cost
    Plan(plan::PlanArgs),
    /// Judge SQL (or pgroll-format) migrations without a database: locks, rewrites, what breaks
    /// the running release, and the pgbaton operation that does each change safely.
    /// Exit 0 when clean, 1 on a finding
    Lint(lint::LintArgs),
    /// Turn a SQL migration into a pgroll-format migration (YAML, or JSON with --json); notes on
    /// what was dropped, merged or left to write go to stderr and into the file as comments
    Convert(lint::ConvertArgs),
    /// Pause the running backfill (from any machine)
    Pause,
    /// Change the running backfills' settings from any machine, from their next batch:
    /// backfill-rows-per-second=N, backfill-batch-time=250ms, backfill-workers=N,
    /// max-latency-increase=50% (or off); VALUE `default` gives back the run's own option
    Set(controls::SetArgs),
    /// Resume a paused backfill, or continue an interrupted start
    Resume,
    /// Check that the active migration's dual-written columns agree with their up/down
    /// expressions; exits 5 on any mismatch
    Verify(verify::VerifyArgs),
    /// Show zero downtime: a throwaway cluster, a busy table, a live migration, a report
    ///
    /// Starts a throwaway cluster from the installed PostgreSQL binaries (removed at the end and
    /// on Ctrl-C), loads a `users` table, runs clients of the old and the new release against it
    /// and migrates it with pgbaton: id integer → bigint, name → full_name, a NOT NULL column
    /// filled by `up`. With --postgres-url (or PGBATON_PG_URL; DATABASE_URL and PG* are not
    /// used) it runs in that database instead, in schemas of its own (pgbaton_demo*) that it
    /// drops at the end. --schema and --state-schema do not apply; the lock and backfill flags do.
    Demo(pgbaton_lab::demo::DemoArgs),
}

impl Global {
    pub fn conn(&self) -> Result<ConnConfig, Error> {
        let conn = ConnConfig::from_env(self.postgres_url.as_deref()).map_err(Error::from)?;
        Ok(conn.with_role(self.role.clone()))
    }

    pub fn settings(&self) -> Settings {
        Settings {
            schema: self.schema.clone(),
            state_schema: self.state_schema.clone(),
            exec: ExecOptions {
                lock_timeout: Duration::from_millis(self.lock_timeout),
                lock_retry_deadline: Duration::from_secs(self.lock_retry_deadline),
                index_build_workers: self.index_build_workers,
                backfill: BackfillOptions {
                    batch_size: self.backfill_batch_size,
                    target_batch_time: Duration::from_millis(self.backfill_batch_time),
                    batch_delay: Duration::from_millis(self.backfill_batch_delay),
                    max_rows_per_second: self.backfill_rows_per_second.map(|r| r as f64),
                    max_replication_lag: self.max_replication_lag,
                    lock_timeout: Duration::from_millis(self.lock_timeout),
                    max_latency_increase: Some(self.max_latency_increase).filter(|b| b.is_finite()),
                    probe_query: self.probe_query.clone(),
                    workers: self.backfill_workers,
                    read_ahead: !self.no_backfill_read_ahead,
                    ..BackfillOptions::default()
                },
                ..ExecOptions::default()
            },
        }
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; everything else is a bad command line.
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_tracing(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let json = cli.global.json;
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => ExitCode::from(report_error(&e, json)),
    }
}

/// Logs on stderr: `PGBATON_LOG`, else by `-v`.
fn init_tracing(verbose: u8) {
    let filter = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PGBATON_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs the command; tells the hooks when it fails.
async fn run(cli: Cli) -> Result<u8, Error> {
    let hooks = (!cli.global.hook.is_empty())
        .then(|| Arc::new(pgbaton::hooks::Hooks::new(cli.global.hook.clone())));
    let result = match Context::new(cli.global, hooks.clone()) {
        Ok(ctx) => dispatch(cli.command, &ctx).await,
        Err(e) => Err(e),
    };
    if let Some(h) = &hooks {
        if let Err(e) = &result {
            h.emit(
                "failed",
                serde_json::json!({"error": e.to_string(), "exit_code": e.exit_code()}),
            );
        }
        h.flush();
    }
    result
}

/// One line per command. `demo`, `lint`, `convert` and `latest --local` connect to no database.
async fn dispatch(command: Command, ctx: &Context) -> Result<u8, Error> {
    match command {
        Command::Init => init::run(ctx).await,
        Command::Start(args) => lifecycle::start(args, ctx).await,
        Command::Complete(args) => lifecycle::complete(args, ctx).await,
        Command::Rollback(args) => lifecycle::rollback(args, ctx).await,
        Command::Status(args) => status::status(args, ctx).await,
        Command::Wait(args) => status::wait(args, ctx).await,
        Command::Migrate(args) => migrate::migrate(args, ctx).await,
        Command::Latest(args) => status::latest(args, ctx).await,
        Command::Import(args) => import::run(args, ctx).await,
        Command::Pull(args) => migrate::pull(args, ctx).await,
        Command::Validate(args) => plan::validate(args, ctx).await,
        Command::Plan(args) => plan::plan(args, ctx).await,
        Command::Lint(args) => Ok(lint::run_lint(&args)),
        Command::Convert(args) => Ok(lint::run_convert(&args, ctx.g.json)),
        Command::Pause => controls::pause(ctx).await,
        Command::Set(args) => controls::set(args, ctx).await,
        Command::Resume => controls::resume(ctx).await,
        Command::Verify(args) => verify::run(args, ctx).await,
        Command::Demo(args) => demo::run(args, ctx).await,
    }
}

fn parse_budget(s: &str) -> Result<f64, String> {
    pgbaton::backfill::parse_latency_increase(s)
}

fn parse_lag(s: &str) -> Result<pgbaton::backfill::LagCeiling, String> {
    s.parse::<pgbaton::backfill::LagCeiling>()
        .map_err(|e| e.to_string())
}
