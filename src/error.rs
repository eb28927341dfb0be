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

    /// The file of the active migration changed since it was started.
    #[error("migration \"{name}\" is active but {file} differs from the document it was started with; roll it back first to start the changed file")]
    ChangedWhileActive { name: String, file: String },

    /// The version schema's name is taken by a schema pgbaton did not create.
    #[error("schema {version_schema} already exists; pgbaton creates it as the version schema of \"{migration}\": drop or rename it, or set version_schema in the file")]
    VersionSchemaExists {
        version_schema: String,
        migration: String,
    },

    /// The active migration is being rolled back; only `rollback` may go on.
    #[error(
        "migration \"{name}\" is being rolled back: run `pgbaton rollback` to finish that first"
    )]
    RollingBack { name: String },

    /// The active migration is part way through complete; only `complete` may go on.
    #[error("migration \"{name}\" is part way through complete ({done} contract step(s) done, old columns may already be gone): run `pgbaton complete` to finish it; it cannot be rolled back")]
    Completing { name: String, done: usize },

    /// `pause` with no backfill to pause.
    #[error("no migration is being started in schema {schema}: there is no backfill to pause")]
    NothingToPause { schema: String },

    /// The connecting role lacks a privilege the migration needs (checked before any DDL).
    #[error("{role} cannot run this migration: {detail}")]
    Privilege { role: String, detail: String },

    /// A failure caused by one row's data, with that row named (see [`crate::diagnose`]).
    #[error("{cause}\nfirst failing row: {row}")]
    FailingRow { cause: Box<Error>, row: String },

    /// A complete that failed before any contract step ran: the migration is still active.
    #[error("{cause}\n{outcome}")]
    CompleteFailed { cause: Box<Error>, outcome: String },

    #[error("{0}")]
    Other(String),
}
