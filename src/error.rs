//! The library's error type. Each message lives in one `#[error]` here or in the module that owns
//! the failure (`format`, `pg`, `cluster`, `plan`); the CLI adds context and maps to exit codes.

use std::time::Duration;

use crate::plan::PlanError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read or parsed.
    #[error(transparent)]
    Format(#[from] crate::format::FormatError),

    /// An operation does not fit the live schema (checked before any DDL runs).
    #[error("{file}{}: operations[{index}].{kind}.{}", .line.map(|l| format!(":{l}")).unwrap_or_default(), .source)]
    Invalid {
        file: String,
        line: Option<usize>,
        index: usize,
        kind: &'static str,
        source: PlanError,
    },

    /// Connection and server errors.
    #[error(transparent)]
    Pg(#[from] crate::pg::PgError),

    #[error("database error: {}", crate::pg::describe(.0))]
    Db(#[from] tokio_postgres::Error),

    #[error("the state schema {schema} does not exist: run `pgbaton init` first")]
    NotInitialized { schema: String },

    #[error(
        "the old version ({version}) still writes: its last write was at {last_write} \
         ({seconds_ago:.0} s ago), within --old-version-quiet {quiet_seconds} s; complete would \
         break it. Move every client to the new version, or use --force"
    )]
    OldVersionWriting {
        version: String,
        last_write: String,
        seconds_ago: f64,
        quiet_seconds: u64,
    },

    #[error("another migrator holds the lock for schema {schema}: pid {pid}, application \"{application}\", since {since}")]
    Locked {
        schema: String,
        pid: i32,
        application: String,
        since: String,
    },

    #[error("migration \"{active}\" is active in schema {schema}: complete or roll it back before starting \"{requested}\"")]
    AlreadyActive {
        schema: String,
        active: String,
        requested: String,
    },

    #[error("no migration is active in schema {schema}")]
    NoActiveMigration { schema: String },

    #[error("migration \"{name}\" is already completed in schema {schema}")]
    AlreadyApplied { schema: String, name: String },

    #[error("the migration history of schema {schema} does not match {dir}: {detail}")]
    HistoryMismatch {
        schema: String,
        dir: String,
        detail: String,
    },

    #[error("the active migration is \"{active}\", not \"{requested}\"")]
    NotActive { active: String, requested: String },

    #[error("step {ordinal} of {phase} (\"{title}\") failed: {message}")]
    Step {
        phase: crate::step::Phase,
        ordinal: usize,
        title: String,
        message: String,
    },

    #[error("gave up on step \"{title}\" after {attempts} lock timeouts over {elapsed:?}; blocking sessions:\n{blockers}")]
    LockDeadline {
        title: String,
        attempts: u32,
        elapsed: Duration,
        blockers: String,
    },

    #[error("unsafe plan, refusing to run it: {0}")]
    UnsafePlan(String),

    /// A backfill stopped; its checkpoint is intact, so `start` of the same file resumes it.
    #[error(transparent)]
    Backfill(#[from] crate::backfill::BackfillError),

    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),

    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),

    #[error(transparent)]
    Workload(#[from] crate::workload::WorkloadError),

    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },

    /// A start failed; `outcome` says what state it left (rolled back, or resumable).
    #[error("{cause}\n{outcome}")]
    StartFailed { cause: Box<Error>, outcome: String },

    #[error("{0}")]
    Other(String),
}
