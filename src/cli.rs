//! The command line: argument parsing (clap), configuration from flags and environment, and
//! rendering (human text on a terminal, `--json` for machines). The only module that prints.
//! Exit codes are a public contract, listed in [`exit`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::backfill::{BackfillOptions, Progress};
use crate::config::ConnConfig;
use crate::error::Error;
use crate::executor::{Event, ExecOptions, Observer};
use crate::migrator::{Migrator, Settings};

/// Exit codes.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A failure while running (database error, failed step).
    pub const FAILED: u8 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// Bad input: the migration file or directory is invalid, or does not fit the live schema.
    /// Nothing was changed.
    pub const INVALID: u8 = 3;
    /// Conflict with another migration or migrator (locked, already active, nothing active,
    /// history mismatch, lock deadline). Nothing was changed by this command.
    pub const CONFLICT: u8 = 4;
    /// `verify` found mismatching rows.
    pub const MISMATCH: u8 = 5;
}

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
    pub max_replication_lag: Option<crate::backfill::LagCeiling>,
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
    /// Complete the active migration: drop what the old version needed
    Complete,
    /// Roll the active migration back
    Rollback {
        /// Skip user `sql` down steps that fail, and say what was left
        #[arg(long)]
        force: bool,
    },
    /// Show the active migration, its phase and backfill progress
    Status,
    /// Apply every pending migration of a directory in order
    Migrate {
        dir: PathBuf,
        /// Complete the last one too
        #[arg(long)]
        complete: bool,
    },
    /// Print the latest version schema, migration name, or a connection URL using it
    Latest {
        #[arg(value_enum)]
        what: Latest,
    },
    /// Write the applied migrations of the database into a directory
    Pull { dir: PathBuf },
    /// Check a migration file against the live schema; changes nothing
    Validate { file: PathBuf },
    /// Print every step of start, complete and rollback with its lock and cost
    Plan { file: PathBuf },
    /// Pause the running backfill (from any machine)
    Pause,
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
    Demo(crate::demo::DemoArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Latest {
    Schema,
    Migration,
    Url,
}

impl Global {
    pub fn conn(&self) -> Result<ConnConfig, Error> {
        let conn = ConnConfig::from_env(self.postgres_url.as_deref())
            .map_err(|e| Error::Other(format!("connection settings: {e}")))?;
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
    match e {
        Error::StartFailed { cause, .. } => exit_code(cause),
        Error::Format(_) | Error::Invalid { .. } | Error::UnsafePlan(_) => exit::INVALID,
        Error::Locked { .. }
        | Error::AlreadyActive { .. }
        | Error::NoActiveMigration { .. }
        | Error::AlreadyApplied { .. }
        | Error::HistoryMismatch { .. }
        | Error::NotActive { .. }
        | Error::LockDeadline { .. }
        | Error::NotInitialized { .. } => exit::CONFLICT,
        _ => exit::FAILED,
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
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

fn load(file: &std::path::Path) -> Result<crate::format::Migration, Error> {
    Ok(crate::format::load(file)?)
}

fn print_json(value: &impl serde::Serialize) -> Result<(), Error> {
    let text = serde_json::to_string(value)
        .map_err(|e| Error::Other(format!("cannot render JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

async fn run(cli: Cli) -> Result<u8, Error> {
    let g = cli.global;
    let renderer = Arc::new(Renderer::new(g.json, g.verbose));
    // The demo brings its own server: it must run before any connection is made.
    let command = match cli.command {
        Command::Demo(args) => return run_demo(args, &g, renderer).await,
        other => other,
    };
    let migrator = Migrator::connect(g.conn()?, g.settings())
        .await?
        .with_observer(renderer.clone());
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
        | Command::Plan { file } => {
            let m = load(&file)?;
            let plan = migrator.plan(&m).await?;
            if g.json {
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
            let out = migrator.start(&m, complete).await?;
            renderer.finish_bar();
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
        Command::Complete => {
            let name = migrator.complete().await?;
            if g.json {
                print_json(&serde_json::json!({"event": "completed", "migration": name}))?;
            } else {
                println!("migration \"{name}\" completed");
            }
        }
        Command::Rollback { force } => {
            let out = migrator.rollback(force).await?;
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
        Command::Status => {
            let status = migrator.status().await?;
            if g.json {
                print_json(&status)?;
            } else {
                print!("{}", render_status(&status));
            }
        }
        Command::Migrate { dir, complete } => {
            let applied = migrator.migrate(&dir, complete).await?;
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
                if !complete {
                    println!("the last one is active: run `pgbaton complete` when the new release is out");
                }
            }
        }
        Command::Latest { what } => {
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
        Command::Resume => {
            let continued = migrator.resume().await?;
            renderer.finish_bar();
            match continued {
                Some(name) => {
                    println!("the interrupted start of \"{name}\" was continued and is done")
                }
                None => println!("backfills of schema {} resumed", g.schema),
            }
        }
        Command::Verify { batch_size, sample } => {
            let opts = crate::verify::VerifyOptions {
                batch_size,
                sample_limit: sample,
            };
            let reports = migrator.verify(&opts).await?;
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
        Command::Demo(_) => unreachable!("handled before connecting"),
    }
    Ok(exit::OK)
}

/// `pgbaton demo`: notes on stderr (JSON lines on stdout with `--json`), the report at the end.
/// Ctrl-C drops the demo, which removes its cluster (or its schemas of an existing database).
async fn run_demo(
    args: crate::demo::DemoArgs,
    g: &Global,
    renderer: Arc<Renderer>,
) -> Result<u8, Error> {
    let json = g.json;
    if let Some(path) = &args.report {
        // Before the run: a report that cannot be written should not cost a whole demo.
        crate::demo::report::check_writable(path)
            .map_err(|e| Error::Other(format!("demo: {e}")))?;
    }
    let options = args.options(g.postgres_url.clone(), g.settings().exec);
    let notes: crate::demo::NoteSink = Arc::new(move |note: &crate::demo::Note| {
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
        result = crate::demo::run(options, renderer.clone(), notes) => {
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
pub fn render_plan(name: &str, plan: &crate::step::Plan) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for phase in [
        crate::step::Phase::Start,
        crate::step::Phase::Complete,
        crate::step::Phase::Rollback,
    ] {
        let steps = plan.phase(phase);
        let _ = writeln!(out, "{phase} of {name}: {} step(s)", steps.len());
        for (i, step) in steps.iter().enumerate() {
            let _ = writeln!(out, "  {:>2}. {step}", i + 1);
        }
    }
    out
}

fn render_status(s: &crate::migrator::Status) -> String {
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
            for p in &a.phases {
                let _ = writeln!(out, "  {}: {}/{} steps done", p.phase, p.done, p.total);
                if let Some(f) = &p.failed {
                    let _ = writeln!(out, "    failed: {f}");
                }
            }
            for b in &a.backfills {
                let _ = writeln!(out, "  backfill {b}");
            }
        }
    }
    out
}

fn parse_lag(s: &str) -> Result<crate::backfill::LagCeiling, String> {
    s.parse::<crate::backfill::LagCeiling>()
        .map_err(|e| e.to_string())
}
