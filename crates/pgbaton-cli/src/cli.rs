//! The command line: argument parsing (clap), configuration from flags and environment, and
//! rendering (human text on a terminal, `--json` for machines). The only module that prints.
//! Exit codes are a public contract, listed in [`exit`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use pgbaton::backfill::{BackfillOptions, Progress};
use pgbaton::config::ConnConfig;
use pgbaton::error::Error;
use pgbaton::executor::{Event, ExecOptions, Observer};
use pgbaton::ident::Ident;
use pgbaton::migrator::{Migrator, Settings};

pub use pgbaton::error::exit;

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
    Start {
        file: PathBuf,
        /// Complete it right after starting
        #[arg(long)]
        complete: bool,
        /// Print the steps it would run (as `plan` does) and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Complete the active migration: drop what the old version needed. Refused (exit 4) while
    /// the old version has written within --old-version-quiet
    Complete {
        /// Complete even though the old version wrote recently
        #[arg(long)]
        force: bool,
        /// How long the old version must not have written, in seconds
        #[arg(long, env = "PGBATON_OLD_VERSION_QUIET", default_value_t = 60)]
        old_version_quiet: u64,
    },
    /// Roll the active migration back
    Rollback {
        /// Skip user `sql` down steps that fail, and say what was left
        #[arg(long)]
        force: bool,
    },
    /// Show the active migration, its phase and backfill progress
    Status {
        /// Also check the applied history against this directory: warn about applied files
        /// that changed ("divergent") or disappeared ("missing"), list the pending ones
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Block until the newest migration is ready (its new version exists) or completed
    Wait {
        #[arg(value_enum)]
        what: WaitFor,
        /// Give up after this many seconds (exit 1)
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Apply every pending migration of a directory in order
    Migrate {
        dir: PathBuf,
        /// Complete the last one too
        #[arg(long)]
        complete: bool,
        /// Start every pending file together as ONE migration: one version schema (named after
        /// the last file), one backfill per table, one `complete`, one `rollback`; the old
        /// release keeps its schema until that complete
        #[arg(long)]
        one_version: bool,
        /// Refuse (changing nothing) unless exactly one file is pending
        #[arg(long)]
        expect_one: bool,
        /// Accept applied files whose content changed since they were applied (their new
        /// checksum is recorded)
        #[arg(long)]
        accept_divergent: bool,
        /// Accept applied migrations that have no file in the directory
        #[arg(long)]
        accept_missing: bool,
        /// Print what would run (the combined plan with --one-version) and change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the latest version schema, migration name, or a connection URL using it
    Latest {
        #[arg(value_enum)]
        what: Latest,
        /// Answer from the newest file of this directory, without a database: what a release
        /// built from it should pin (the version `migrate DIR` gives it)
        #[arg(long, value_name = "DIR")]
        local: Option<PathBuf>,
    },
    /// Take over the migration history of another tool
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Write the applied migrations of the database into a directory
    Pull { dir: PathBuf },
    /// Check a migration file against the live schema; changes nothing
    Validate { file: PathBuf },
    /// Print every step of start, complete and rollback with its lock and cost
    Plan {
        file: PathBuf,
        /// Output: text, markdown (a pull request comment) or json (same as --json)
        #[arg(long, value_enum, default_value = "text")]
        format: crate::lint_cli::PlanFormat,
    },
    /// Judge SQL (or pgroll-format) migrations without a database: locks, rewrites, what breaks
    /// the running release, and the pgbaton operation that does each change safely.
    /// Exit 0 when clean, 1 on a finding
    Lint(crate::lint_cli::LintArgs),
    /// Turn a SQL migration into a pgroll-format migration (YAML, or JSON with --json); notes on
    /// what was dropped, merged or left to write go to stderr and into the file as comments
    Convert(crate::lint_cli::ConvertArgs),
    /// Pause the running backfill (from any machine)
    Pause,
    /// Change the running backfills' settings from any machine, from their next batch:
    /// backfill-rows-per-second=N, backfill-batch-time=250ms, backfill-workers=N,
    /// max-latency-increase=50% (or off); VALUE `default` gives back the run's own option
    Set {
        #[arg(required = true, value_name = "KEY=VALUE")]
        settings: Vec<pgbaton::backfill::ControlSetting>,
    },
    /// Resume a paused backfill, or continue an interrupted start
    Resume,
    /// Check that the active migration's dual-written columns agree with their up/down
    /// expressions; exits 5 on any mismatch
    Verify {
        /// Rows per batch
        #[arg(long, default_value_t = 10_000)]
        batch_size: u32,
        /// How many mismatching keys to show per table
        #[arg(long, default_value_t = 20)]
        sample: usize,
    },
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

#[derive(Subcommand, Debug)]
pub enum ImportFrom {
    /// Record pgroll's completed history of the schema as pgbaton's, so `migrate DIR`
    /// continues with the first file pgroll never applied. Refused, changing nothing, while
    /// pgroll has a migration in progress or when the histories disagree
    Pgroll {
        /// The schema pgroll keeps its state in (`pgroll --pgroll-schema`)
        #[arg(long, default_value = "pgroll")]
        pgroll_schema: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitFor {
    Ready,
    Completed,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Latest {
    Schema,
    Migration,
    Url,
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
                    ..BackfillOptions::default()
                },
                ..ExecOptions::default()
            },
        }
    }
}

/// Renders executor events: lines on stderr for people (a progress bar for backfills on a
/// terminal), JSON lines on stdout with `--json`.
pub struct Renderer {
    json: bool,
    verbose: u8,
    bar: Mutex<Option<indicatif::ProgressBar>>,
    tty: bool,
}

impl Renderer {
    pub fn new(json: bool, verbose: u8) -> Renderer {
        Renderer {
            json,
            verbose,
            bar: Mutex::new(None),
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn finish_bar(&self) {
        if let Ok(mut bar) = self.bar.lock() {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
        }
    }

    fn line(&self, text: &str) {
        match self
            .bar
            .lock()
            .ok()
            .as_ref()
            .and_then(|b| b.as_ref().cloned())
        {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
}

impl Observer for Renderer {
    fn event(&self, event: &Event<'_>) {
        if self.json {
            let value = match event {
                Event::StepStarted {
                    phase,
                    ordinal,
                    total,
                    step,
                } => serde_json::json!({
                    "event": "step_started", "phase": phase, "step": ordinal + 1, "of": total,
                    "title": step.title, "lock": step.lock.name(), "work": step.work.name()}),
                Event::StepSkipped {
                    phase,
                    ordinal,
                    total,
                    step,
                } => serde_json::json!({
                    "event": "step_skipped", "phase": phase, "step": ordinal + 1, "of": total,
                    "title": step.title, "reason": "already done (journal)"}),
                Event::StepFinished {
                    phase,
                    ordinal,
                    step,
                    elapsed,
                    attempts,
                } => serde_json::json!({
                    "event": "step_finished", "phase": phase, "step": ordinal + 1, "title": step.title,
                    "elapsed_ms": elapsed.as_secs_f64() * 1000.0, "attempts": attempts}),
                Event::LockRetry {
                    step,
                    attempt,
                    backoff,
                    blockers,
                } => serde_json::json!({
                    "event": "lock_retry", "title": step.title, "attempt": attempt,
                    "backoff_ms": backoff.as_millis() as u64,
                    "blockers": blockers.iter().map(|b| b.to_string()).collect::<Vec<_>>()}),
                Event::AutovacuumCancelled { step, pids } => serde_json::json!({
                    "event": "autovacuum_cancelled", "title": step.title, "pids": pids}),
                Event::Backfill(p) => serde_json::json!({"event": "backfill", "progress": p}),
            };
            println!("{value}");
            return;
        }
        match event {
            Event::StepStarted { phase, ordinal, total, step } => {
                if self.verbose > 0 {
                    self.line(&format!("{phase} [{}/{total}] {} ...", ordinal + 1, step.title));
                }
            }
            Event::StepSkipped { phase, ordinal, total, step } => {
                self.line(&format!("{phase} [{}/{total}] {} (already done)", ordinal + 1, step.title))
            }
            Event::StepFinished { phase, ordinal, step, elapsed, attempts } => {
                self.finish_bar();
                let retries = if *attempts > 1 { format!(", {attempts} attempts") } else { String::new() };
                self.line(&format!(
                    "{phase} [{}] {} ({}{retries})",
                    ordinal + 1,
                    step.title,
                    human_duration(*elapsed)
                ));
            }
            Event::LockRetry { step, attempt, backoff, blockers } => {
                let who = blockers.iter().map(|b| b.to_string()).collect::<Vec<_>>().join("; ");
                self.line(&format!(
                    "  lock not available for \"{}\" (attempt {attempt}), retrying in {}{}",
                    step.title,
                    human_duration(*backoff),
                    if who.is_empty() { String::new() } else { format!("; held by {who}") }
                ));
            }
            Event::AutovacuumCancelled { step, pids } => self.line(&format!(
                "  cancelled autovacuum worker(s) {pids:?} blocking \"{}\" (PostgreSQL would after deadlock_timeout)",
                step.title
            )),
            Event::Backfill(p) => self.backfill(p),
        }
    }
}

impl Renderer {
    fn backfill(&self, p: &Progress) {
        if !self.tty {
            if self.verbose > 0 {
                eprintln!("  {p}");
            }
            return;
        }
        let Ok(mut guard) = self.bar.lock() else {
            return;
        };
        let total = p.rows_estimate.unwrap_or(0).max(p.rows_done);
        let bar = guard.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "  backfill {msg} [{bar:30}] {human_pos}/{human_len} rows  {per_sec}  ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(p.label());
            bar
        });
        bar.set_length(total);
        bar.set_position(p.rows_done);
    }
}

fn human_duration(d: Duration) -> String {
    if d.as_secs() >= 60 {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else if d.as_millis() >= 1000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The exit code for an error.
pub fn exit_code(e: &Error) -> u8 {
    e.exit_code()
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
    let filter = match cli.global.verbose {
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
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"event": "error", "error": e.to_string(), "exit_code": exit_code(&e)})
                );
            }
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

fn load(file: &std::path::Path) -> Result<pgbaton::format::Migration, Error> {
    Ok(pgbaton::format::load(file)?)
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string(value)
        .map_err(|e| Error::Other(format!("cannot render JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

async fn run(cli: Cli) -> Result<u8, Error> {
    let hooks = (!cli.global.hook.is_empty())
        .then(|| Arc::new(pgbaton::hooks::Hooks::new(cli.global.hook.clone())));
    let result = run_command(cli, hooks.clone()).await;
    if let Some(h) = &hooks {
        if let Err(e) = &result {
            h.emit(
                "failed",
                serde_json::json!({"error": e.to_string(), "exit_code": exit_code(e)}),
            );
        }
        h.flush();
    }
    result
}

/// Sends executor events to several observers, in order.
struct Tee(Vec<Arc<dyn Observer>>);

impl Observer for Tee {
    fn event(&self, event: &Event<'_>) {
        for o in &self.0 {
            o.event(event);
        }
    }
}

/// Serves the metrics on `addr`, and keeps the writes per version up to date (every 2 s, on a
/// connection of its own) while the command runs.
fn start_metrics(addr: std::net::SocketAddr, g: &Global) -> Result<(), Error> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| Error::Other(format!("--metrics-listen {addr}: {e}")))?;
    pgbaton::metrics::describe();
    let conn = g.conn()?;
    let (state, schema) = (Ident::new(g.state_schema.clone()), g.schema.clone());
    tokio::spawn(async move {
        let Ok(client) = pgbaton::pg::connect(&conn).await else {
            return;
        };
        loop {
            if let Ok(Some(active)) = pgbaton::state::active(&client, &state, &schema).await {
                let tables: Vec<_> = active
                    .plan
                    .triggers
                    .iter()
                    .map(|t| t.table.clone())
                    .collect();
                if let Ok([old, new]) = pgbaton::version_writes::read(&client, &tables).await {
                    pgbaton::metrics::record_version_writes(old, new);
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
    Ok(())
}

async fn run_command(cli: Cli, hooks: Option<Arc<pgbaton::hooks::Hooks>>) -> Result<u8, Error> {
    let g = cli.global;
    let renderer = Arc::new(Renderer::new(g.json, g.verbose));
    let mut observers: Vec<Arc<dyn Observer>> = vec![renderer.clone()];
    if let Some(addr) = g.metrics_listen {
        start_metrics(addr, &g)?;
        observers.push(Arc::new(pgbaton::metrics::MetricsObserver::default()));
    }
    if let Some(h) = &hooks {
        observers.push(h.clone());
    }
    let emit = |event: &str, fields: serde_json::Value| {
        if let Some(h) = &hooks {
            h.emit(event, fields);
        }
    };
    // The demo brings its own server: it must run before any connection is made.
    let command = match cli.command {
        Command::Demo(args) => return run_demo(args, &g, renderer).await,
        Command::Latest {
            what,
            local: Some(dir),
        } => return latest_local(&g, what, &dir),
        // No database for these.
        Command::Lint(args) => return Ok(crate::lint_cli::run_lint(&args)),
        Command::Convert(args) => return Ok(crate::lint_cli::run_convert(&args, g.json)),
        other => other,
    };
    let plan_format = match &command {
        Command::Plan { format, .. } => *format,
        _ => crate::lint_cli::PlanFormat::Text,
    };
    let migrator = Migrator::connect(g.conn()?, g.settings())
        .await?
        .with_observer(Arc::new(Tee(observers)));
    match command {
        Command::Init => {
            migrator.init().await?;
            if g.json {
                print_json(
                    &serde_json::json!({"event": "initialized", "state_schema": g.state_schema}),
                )?;
            } else {
                println!("initialized: state schema \"{}\" is ready", g.state_schema);
            }
        }
        Command::Start {
            file,
            dry_run: true,
            ..
        }
        | Command::Plan { file, .. } => {
            let m = load(&file)?;
            let plan = migrator.plan(&m).await?;
            if plan_format == crate::lint_cli::PlanFormat::Markdown {
                print!("{}", crate::lint_cli::render_plan_markdown(&m.name, &plan));
            } else if g.json || plan_format == crate::lint_cli::PlanFormat::Json {
                print_json(&plan)?;
            } else {
                print!("{}", render_plan(&m.name, &plan));
            }
        }
        Command::Start {
            file,
            complete,
            dry_run: false,
        } => {
            let m = load(&file)?;
            if migrator.backfills_paused().await.unwrap_or(false) {
                eprintln!(
                    "note: backfills of schema {} are paused (`pgbaton pause`): this start waits \
                     before its first batch until `pgbaton resume`",
                    g.schema
                );
            }
            let out = migrator.start(&m, complete).await?;
            renderer.finish_bar();
            let fields = serde_json::json!({"migration": out.migration, "version_schema": out.version_schema});
            emit("ready", fields.clone());
            if out.completed {
                emit("completed", fields);
            }
            if g.json {
                print_json(&out)?;
            } else if out.completed {
                println!(
                    "migration \"{}\" started and completed; version schema: {}",
                    out.migration, out.version_schema
                );
            } else {
                println!(
                    "migration \"{}\" {}; the new version is ready in schema {}\n\
                     point the new release at it (search_path = {}), then run `pgbaton complete`, or `pgbaton rollback`",
                    out.migration,
                    if out.resumed { "resumed and started" } else { "started" },
                    out.version_schema,
                    out.version_schema
                );
            }
        }
        Command::Complete {
            force,
            old_version_quiet,
        } => {
            let name = if force {
                migrator.complete().await?
            } else {
                migrator
                    .complete_when_quiet(Duration::from_secs(old_version_quiet))
                    .await?
            };
            emit("completed", serde_json::json!({"migration": name}));
            if g.json {
                print_json(&serde_json::json!({"event": "completed", "migration": name}))?;
            } else {
                println!("migration \"{name}\" completed");
            }
        }
        Command::Rollback { force } => {
            let out = migrator.rollback(force).await?;
            emit(
                "rolled_back",
                serde_json::json!({"migration": out.migration}),
            );
            if g.json {
                print_json(&out)?;
            } else {
                println!("migration \"{}\" rolled back", out.migration);
                for s in &out.skipped {
                    println!(
                        "  SKIPPED (--force) \"{}\": it failed with: {}\n  undo by hand what it would have undone:\n    {}",
                        s.title,
                        s.error,
                        s.sql.replace('\n', "\n    ")
                    );
                }
            }
        }
        Command::Status { dir: None } => {
            let mut status = migrator.status().await?;
            if let Some(active) = &mut status.active {
                // Two readings a second apart, for each version's writes per second.
                active.versions = migrator
                    .version_writes(Some(Duration::from_secs(1)))
                    .await?;
            }
            if g.json {
                print_json(&status)?;
            } else {
                print!("{}", render_status(&status));
            }
        }
        Command::Status { dir: Some(dir) } => {
            let status = migrator.status().await?;
            let check = migrator.check_dir(&dir).await?;
            if g.json {
                print_json(&serde_json::json!({"status": status, "directory": check}))?;
            } else {
                print!("{}", render_status(&status));
                print!("{}", render_dir_check(&check));
            }
        }
        Command::Migrate {
            dir,
            one_version,
            dry_run: true,
            ..
        } => {
            if one_version {
                let (name, plan) = migrator.plan_one_version(&dir).await?;
                if g.json {
                    print_json(&plan)?;
                } else {
                    print!("{}", render_plan(&name, &plan));
                }
            } else {
                let check = migrator.check_dir(&dir).await?;
                if g.json {
                    print_json(&check)?;
                } else {
                    print!("{}", render_dir_check(&check));
                }
            }
        }
        Command::Migrate {
            dir,
            complete,
            one_version,
            expect_one,
            accept_divergent,
            accept_missing,
            dry_run: false,
        } => {
            let options = pgbaton::one_version::MigrateOptions {
                complete,
                one_version,
                expect_one,
                accept: pgbaton::history::Accept {
                    divergent: accept_divergent,
                    missing: accept_missing,
                },
            };
            let applied = migrator.migrate_with(&dir, &options).await?;
            if let Some(last) = applied.last() {
                let fields = serde_json::json!({"migration": last});
                emit("ready", fields.clone());
                if complete {
                    emit("completed", fields);
                }
            }
            if g.json {
                print_json(
                    &serde_json::json!({"event": "migrated", "applied": applied, "completed_last": complete}),
                )?;
            } else if applied.is_empty() {
                println!(
                    "nothing to migrate: the database is up to date with {}",
                    dir.display()
                );
            } else {
                println!(
                    "applied {} migration(s): {}",
                    applied.len(),
                    applied.join(", ")
                );
                if !complete && one_version && applied.len() > 1 {
                    println!("they are active as one version: run `pgbaton complete` when the new release is out");
                } else if !complete {
                    println!("the last one is active: run `pgbaton complete` when the new release is out");
                }
            }
        }
        Command::Import {
            from: ImportFrom::Pgroll { pgroll_schema },
        } => {
            let out = migrator.import_pgroll(&pgroll_schema).await?;
            if g.json {
                print_json(&out)?;
            } else {
                print!("{}", render_import(&out));
            }
        }
        Command::Wait { what, timeout } => {
            let completed = what == WaitFor::Completed;
            let (name, vs) = migrator
                .wait_for(
                    completed,
                    timeout.map(Duration::from_secs),
                    Duration::from_millis(500),
                )
                .await?;
            if g.json {
                print_json(
                    &serde_json::json!({"event": if completed { "completed" } else { "ready" }, "migration": name, "version_schema": vs}),
                )?;
            } else {
                println!(
                    "migration \"{name}\" is {}; version schema: {vs}",
                    if completed { "completed" } else { "ready" }
                );
            }
        }
        Command::Latest { what, .. } => {
            let Some((name, vs)) = migrator.latest().await? else {
                return Err(Error::Other(format!(
                    "no migration has been applied to schema {}",
                    g.schema
                )));
            };
            let text = match what {
                Latest::Schema => vs,
                Latest::Migration => name,
                Latest::Url => migrator.conn().url_with_search_path(&vs),
            };
            println!("{text}");
        }
        Command::Pull { dir } => {
            let written = migrator.pull(&dir).await?;
            if g.json {
                print_json(&written)?;
            } else {
                for p in written {
                    println!("{}", p.display());
                }
            }
        }
        Command::Validate { file } => {
            let m = load(&file)?;
            let plan = migrator.validate(&m).await?;
            if g.json {
                print_json(
                    &serde_json::json!({"event": "valid", "migration": m.name, "steps": plan.start.len() + plan.complete.len()}),
                )?;
            } else {
                println!(
                    "{}: valid ({} operations)",
                    file.display(),
                    m.operations.len()
                );
            }
        }
        Command::Pause => {
            migrator.pause().await?;
            println!(
                "backfill of schema {} paused (between batches); `pgbaton resume` continues",
                g.schema
            );
        }
        Command::Set { settings } => {
            migrator.set_controls(&settings).await?;
            if g.json {
                print_json(&serde_json::json!({"event": "set", "settings": settings}))?;
            } else {
                let text = settings
                    .iter()
                    .map(|s| {
                        format!(
                            "{}={}",
                            s.key.name(),
                            match s.value {
                                Some(v)
                                    if s.key
                                        == pgbaton::backfill::ControlKey::MaxLatencyIncrease =>
                                {
                                    pgbaton::backfill::describe_budget(v)
                                }
                                Some(v) => format!("{v}"),
                                None => "default".into(),
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                println!(
                    "backfills of schema {}: {text} (from their next batch)",
                    g.schema
                );
            }
        }
        Command::Resume => {
            let continued = migrator.resume().await?;
            renderer.finish_bar();
            match continued {
                Some(name) => {
                    emit("ready", serde_json::json!({"migration": name}));
                    println!("the interrupted start of \"{name}\" was continued and is done")
                }
                None => println!("backfills of schema {} resumed", g.schema),
            }
        }
        Command::Verify { batch_size, sample } => {
            let opts = pgbaton::verify::VerifyOptions {
                batch_size,
                sample_limit: sample,
            };
            let reports = migrator.verify(&opts).await?;
            for r in &reports {
                pgbaton::metrics::record_verify(&r.table, r.mismatched_rows);
            }
            if g.json {
                print_json(&reports)?;
            } else if reports.is_empty() {
                println!("the active migration keeps no columns in sync: nothing to verify");
            } else {
                for r in &reports {
                    println!("{r}");
                }
            }
            if reports.iter().any(|r| !r.is_clean()) {
                return Ok(exit::MISMATCH);
            }
        }
        Command::Demo(_) | Command::Lint(_) | Command::Convert(_) => {
            unreachable!("handled before connecting")
        }
    }
    Ok(exit::OK)
}

/// `pgbaton demo`: notes on stderr (JSON lines on stdout with `--json`), the report at the end.
/// Ctrl-C drops the demo, which removes its cluster (or its schemas of an existing database).
async fn run_demo(
    args: pgbaton_lab::demo::DemoArgs,
    g: &Global,
    renderer: Arc<Renderer>,
) -> Result<u8, Error> {
    let json = g.json;
    if let Some(path) = &args.report {
        // Before the run: a report that cannot be written should not cost a whole demo.
        pgbaton_lab::demo::report::check_writable(path)
            .map_err(|e| Error::Other(format!("demo: {e}")))?;
    }
    let options = args.options(g.postgres_url.clone(), g.settings().exec);
    let notes: pgbaton_lab::demo::NoteSink = Arc::new(move |note: &pgbaton_lab::demo::Note| {
        if json {
            println!("{}", serde_json::json!({"event": "demo", "note": note}));
        } else {
            eprintln!("{note}");
        }
    });
    let report = tokio::select! {
        biased;
        _ = tokio::signal::ctrl_c() => {
            return Err(Error::Other(
                "interrupted: the demo's cluster (or its schemas) were removed".into(),
            ));
        }
        result = pgbaton_lab::demo::run(options, renderer.clone(), notes) => {
            result.map_err(|e| Error::Other(format!("demo: {e}")))?
        }
    };
    renderer.finish_bar();
    if json {
        print_json(&report)?;
    } else {
        print!("{report}");
    }
    if let Some(path) = &args.report {
        report
            .write_html(path)
            .map_err(|e| Error::Other(format!("demo: {e}")))?;
        if !json {
            println!("HTML report: {}", path.display());
        }
    }
    Ok(if report.ok() { exit::OK } else { exit::FAILED })
}

/// `pgbaton plan` output.
pub fn render_plan(name: &str, plan: &pgbaton::plan::Plan) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for phase in [
        pgbaton::step::Phase::Start,
        pgbaton::step::Phase::Complete,
        pgbaton::step::Phase::Rollback,
    ] {
        let steps = plan.phase(phase);
        let _ = writeln!(out, "{phase} of {name}: {} step(s)", steps.len());
        for (i, step) in steps.iter().enumerate() {
            let _ = writeln!(out, "  {:>2}. {step}", i + 1);
        }
    }
    out
}

fn render_status(s: &pgbaton::migrator::Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if !s.initialized {
        let _ = writeln!(
            out,
            "not initialized: run `pgbaton init` (state schema \"{}\")",
            s.state_schema
        );
        return out;
    }
    let _ = writeln!(out, "schema: {}", s.schema);
    if s.backfills_paused {
        let _ = writeln!(
            out,
            "backfills: paused by `pgbaton pause` (`pgbaton resume` lets them go on)"
        );
    }
    let _ = writeln!(
        out,
        "latest completed: {} ({} completed)",
        s.latest.as_deref().unwrap_or("none"),
        s.completed_count
    );
    match &s.active {
        None => {
            let _ = writeln!(out, "active migration: none");
        }
        Some(a) => {
            let _ = writeln!(
                out,
                "active migration: {} ({}) since {}",
                a.name, a.status, a.started_at
            );
            let _ = writeln!(out, "  version schema: {}", a.version_schema);
            if !a.bundled.is_empty() {
                let _ = writeln!(
                    out,
                    "  one version with: {} (and {})",
                    a.bundled.join(", "),
                    a.name
                );
            }
            for p in &a.phases {
                let _ = writeln!(out, "  {}: {}/{} steps done", p.phase, p.done, p.total);
                if let Some(f) = &p.failed {
                    let _ = writeln!(out, "    failed: {f}");
                }
            }
            for b in &a.backfills {
                let _ = writeln!(out, "  backfill {b}");
            }
            if let Some(c) = &a.controls {
                let _ = writeln!(out, "  controls: {c}");
            }
            for v in &a.versions {
                let _ = writeln!(out, "  writes: {v}");
            }
        }
    }
    out
}

/// `latest ... --local DIR`: from the directory alone.
fn latest_local(g: &Global, what: Latest, dir: &std::path::Path) -> Result<u8, Error> {
    let Some((name, vs)) = pgbaton::one_version::latest_local(dir, &g.schema)? else {
        return Err(Error::Other(format!(
            "{} has no migration file",
            dir.display()
        )));
    };
    let text = match what {
        Latest::Schema => vs,
        Latest::Migration => name,
        Latest::Url => g.conn()?.url_with_search_path(&vs),
    };
    println!("{text}");
    Ok(exit::OK)
}

fn render_dir_check(c: &pgbaton::one_version::DirCheck) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for f in &c.findings {
        let _ = writeln!(out, "warning: {f}");
    }
    if let Some(order) = &c.order {
        let _ = writeln!(
            out,
            "warning: the history does not match {}: {order}",
            c.dir
        );
    }
    if c.pending.is_empty() {
        let _ = writeln!(out, "pending in {}: none", c.dir);
    } else {
        let _ = writeln!(out, "pending in {}: {}", c.dir, c.pending.join(", "));
    }
    out
}

fn render_import(o: &pgbaton::pgroll_import::ImportOutcome) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if o.imported.is_empty() {
        let _ = writeln!(
            out,
            "nothing to import: pgbaton already has pgroll's {} migration(s) of schema {}",
            o.already, o.schema
        );
    } else {
        let _ = writeln!(
            out,
            "imported {} migration(s) of schema {} from pgroll ({}): {}",
            o.imported.len(),
            o.schema,
            o.pgroll_schema,
            o.imported.join(", ")
        );
    }
    if !o.inferred.is_empty() {
        let _ = writeln!(
            out,
            "  {} inferred by pgroll from DDL run outside it (kept in the history, not expected as files)",
            o.inferred.join(", ")
        );
    }
    if let Some(vs) = &o.version_schema {
        let _ = writeln!(
            out,
            "  the running release's version schema {vs} keeps working until pgbaton's first `complete`"
        );
    }
    if !o.pgroll_event_triggers.is_empty() {
        let _ = writeln!(
            out,
            "  note: pgroll's event triggers ({}) are still installed and will record pgbaton's DDL as \
             inferred pgroll migrations; drop them once you no longer run pgroll",
            o.pgroll_event_triggers.join(", ")
        );
    }
    out
}

fn parse_budget(s: &str) -> Result<f64, String> {
    pgbaton::backfill::parse_latency_increase(s)
}

fn parse_lag(s: &str) -> Result<pgbaton::backfill::LagCeiling, String> {
    s.parse::<pgbaton::backfill::LagCeiling>()
        .map_err(|e| e.to_string())
}
