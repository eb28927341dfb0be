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
    ClientSpec, Mark, MarkKind, OpMix, ParamGen, PhaseSpan, QuerySpec, UsersTable, VersionPin,
    Workload, WorkloadConfig, WorkloadError, WorkloadHandle, WorkloadReport,
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

mod checks;
mod phases;
pub mod report;
mod results;
mod runs;
mod setup;
mod target;

use checks::*;
use phases::*;
pub use results::*;
use runs::*;
pub use setup::*;
use target::*;

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
    /// Also write the report as one self-contained HTML page with charts (latency and
    /// throughput per 100 ms, the phases, lock waits) to this file
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<std::path::PathBuf>,
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
