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

    /// Applied files changed or disappeared (`migrate`, `start`); nothing was run. The flags
    /// `--accept-divergent` / `--accept-missing` accept them deliberately.
    #[error("the migration history of schema {schema} does not match {dir}:\n  {}\nnothing was run; pass {flags} to accept this deliberately",
            .findings.join("\n  "))]
    Divergent {
        schema: String,
        dir: String,
        findings: Vec<String>,
        flags: String,
    },

    /// `migrate --expect-one` found another number of pending files.
    #[error("--expect-one: {dir} has {} pending migration(s){}, not exactly one; nothing was run",
            .pending.len(),
            if .pending.is_empty() { String::new() } else { format!(" ({})", .pending.join(", ")) })]
    ExpectOne { dir: String, pending: Vec<String> },

    /// `migrate --dry-run --one-version` with nothing to plan.
    #[error("no migration of {dir} is pending: nothing to plan")]
    NothingPending { dir: String },

    /// `import pgroll`: no pgroll state where asked.
    #[error("no pgroll state in schema {pgroll_schema} (table {pgroll_schema}.migrations does not exist); pass --pgroll-schema if pgroll was initialised with another --pgroll-schema")]
    PgrollNotFound { pgroll_schema: String },

    /// `import pgroll`: pgroll has a migration in progress; nothing was imported.
    #[error("pgroll has migration \"{name}\" in progress on schema {schema}: complete it (`pgroll complete`) or roll it back (`pgroll rollback`) with pgroll first; nothing was imported")]
    PgrollActive { schema: String, name: String },

    /// `import pgroll`: the two histories disagree; nothing was imported.
    #[error("pgroll's history of schema {schema} and pgbaton's disagree: {detail}; nothing was imported")]
    PgrollHistoryDisagrees { schema: String, detail: String },

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

    /// `wait`: the newest migration of the schema was rolled back, so it will never be ready or
    /// completed.
    #[error(
        "migration \"{name}\" of schema {schema} was rolled back{at}: it will not be {waited_for}; \
         start it again (or the next one) before waiting"
    )]
    RolledBack {
        schema: String,
        name: String,
        /// ` at 2024-01-01T00:00:00Z`, or empty when unknown.
        at: String,
        /// `ready` or `completed`.
        waited_for: &'static str,
    },

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

/// The exit codes of the `pgbaton` command, one per class of [`Error`]; the library owns the
/// classification so that every variant is mapped here, exhaustively.
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

impl Error {
    /// The command's exit code for this error ([`exit`]). No catch-all arm: a new variant must
    /// say which class it is.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::StartFailed { cause, .. }
            | Error::CompleteFailed { cause, .. }
            | Error::FailingRow { cause, .. } => cause.exit_code(),
            Error::Format(_) | Error::Plan(_) => exit::INVALID,
            // A connection string or option that cannot be read: the command line (or environment).
            Error::Pg(crate::pg::PgError::Config(_)) => exit::USAGE,
            Error::Locked { .. }
            | Error::AlreadyActive { .. }
            | Error::NoActiveMigration { .. }
            | Error::AlreadyApplied { .. }
            | Error::HistoryMismatch { .. }
            | Error::NotActive { .. }
            | Error::Divergent { .. }
            | Error::ExpectOne { .. }
            | Error::NothingPending { .. }
            | Error::PgrollNotFound { .. }
            | Error::PgrollActive { .. }
            | Error::PgrollHistoryDisagrees { .. }
            | Error::LockDeadline { .. }
            | Error::NotInitialized { .. }
            | Error::ChangedWhileActive { .. }
            | Error::VersionSchemaExists { .. }
            | Error::RollingBack { .. }
            | Error::Completing { .. }
            | Error::NothingToPause { .. }
            | Error::RolledBack { .. }
            | Error::Privilege { .. }
            | Error::OldVersionWriting { .. } => exit::CONFLICT,
            Error::Pg(crate::pg::PgError::Connect { .. } | crate::pg::PgError::SetRole { .. })
            | Error::Db(_)
            | Error::Step { .. }
            | Error::Backfill(_)
            | Error::Verify(_)
            | Error::Io { .. }
            | Error::Other(_) => exit::FAILED,
        }
    }
}
