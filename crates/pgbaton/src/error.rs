//! The library's error type. Each message lives in one `#[error]` here or in the module that owns
//! the failure (`format`, `pg`, `plan`); the CLI adds context and maps to exit codes.

use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read or parsed.
    #[error(transparent)]
    Format(#[from] crate::format::FormatError),

    /// The migration cannot be planned against the live schema (checked before any DDL runs).
    #[error(transparent)]
    Plan(#[from] crate::planner::PlanFailure),

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

    /// A backfill stopped; its checkpoint is intact, so `start` of the same file resumes it.
    #[error(transparent)]
    Backfill(#[from] crate::backfill::BackfillError),

    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),

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
