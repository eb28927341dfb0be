//! Server helpers: connecting (TLS per `sslmode`, `SET ROLE`), describing and classifying server
//! errors by SQLSTATE, listing the sessions that block a backend (and cancelling the autovacuum
//! workers among them, never anything else), the per-schema migration advisory lock, and
//! running a statement that holds user text ([`query_text`], [`execute_one`]).

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rand::Rng;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, Row, SimpleQueryRow, Socket};

use crate::config::{ConfigError, ConnConfig, SslMode, Target, TlsSettings};
use crate::ident::Ident;

/// Connection failures. Messages name the host, port, database and user, never the password.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error("{}", connect_message(.dbname, .user, .attempts))]
    Connect {
        dbname: String,
        user: String,
        attempts: Vec<ConnectAttempt>,
    },

    #[error("connected to {target}, but SET ROLE {role} failed: {message}")]
    SetRole {
        target: String,
        role: String,
        message: String,
        sqlstate: Option<String>,
    },
}

impl From<ConfigError> for crate::Error {
    fn from(e: ConfigError) -> Self {
        crate::Error::Pg(PgError::Config(e))
    }
}

impl PgError {
    /// The SQLSTATE the server sent, when a single one explains the failure (`28P01` wrong
    /// password, `3D000` no such database, ...).
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            PgError::Connect { attempts, .. } => {
                attempts.iter().rev().find_map(|a| a.sqlstate.as_deref())
            }
            PgError::SetRole { sqlstate, .. } => sqlstate.as_deref(),
            PgError::Config(_) => None,
        }
    }
}

/// One failed connection attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectAttempt {
    /// The host and port (or socket) tried, as [`Target`] displays it, plus `(TLS)` for the TLS
    /// retry of `sslmode=allow`.
    pub target: String,
    pub message: String,
    pub sqlstate: Option<String>,
}

fn connect_message(dbname: &str, user: &str, attempts: &[ConnectAttempt]) -> String {
    let head = format!("could not connect to database \"{dbname}\" as user \"{user}\"");
    match attempts {
        [] => format!("{head}: no host to try"),
        [one] => format!("{head} at {}: {}", one.target, one.message),
        many => {
            let lines: Vec<String> = many
                .iter()
                .map(|a| format!("  {}: {}", a.target, a.message))
                .collect();
            format!("{head}:\n{}", lines.join("\n"))
        }
    }
}

/// Connects to the first target that accepts (libpq's multi-host order, or shuffled with
/// `load_balance_hosts=random`), with TLS per `sslmode`, spawns the connection task on the
/// current tokio runtime, and runs `SET ROLE` when a role is configured.
pub async fn connect(cfg: &ConnConfig) -> Result<Client, PgError> {
    let tls = if needs_tls(cfg) {
        Some(tls_connector(cfg.tls())?)
    } else {
        None
    };
    let mut attempts = Vec::new();
    for target in cfg.targets_in_connect_order() {
        let mut pg = cfg.tokio_config(target);
        let mut result = connect_with(&pg, tls.as_ref()).await;
        if let Err(e) = &result {
            // sslmode=allow: plain first; if the server refuses it, try again with TLS.
            if cfg.ssl_mode() == SslMode::Allow
                && !target.is_unix_socket()
                && e.as_db_error().is_some()
            {
                attempts.push(attempt(target, "", e));
                pg.ssl_mode(tokio_postgres::config::SslMode::Require);
                result = connect_with(&pg, tls.as_ref()).await;
                if let Err(e) = &result {
                    attempts.push(attempt(target, " (TLS)", e));
                    continue;
                }
            }
        }
        match result {
            Ok(client) => {
                if let Some(role) = cfg.role() {
                    let sql = format!("SET ROLE {}", Ident::new(role));
                    if let Err(e) = client.batch_execute(&sql).await {
                        return Err(PgError::SetRole {
                            target: target.to_string(),
                            role: Ident::new(role).to_string(),
                            message: describe(&e),
                            sqlstate: sqlstate(&e),
                        });
                    }
                }
                return Ok(client);
            }
            Err(e) => attempts.push(attempt(target, "", &e)),
        }
    }
    Err(PgError::Connect {
        dbname: cfg.dbname().to_string(),
        user: cfg.user().to_string(),
        attempts,
    })
}

/// The rustls connector for `settings`, built once per process for the same settings, so a
/// workload opening many connections reads certificate files and the system store once.
fn tls_connector(
    settings: &TlsSettings,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, ConfigError> {
    type Cached = Option<(TlsSettings, tokio_postgres_rustls::MakeRustlsConnect)>;
    static CACHE: Mutex<Cached> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((cached, connector)) = cache.as_ref() {
        if cached == settings {
            return Ok(connector.clone());
        }
    }
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new(settings.rustls_config()?);
    *cache = Some((settings.clone(), connector.clone()));
    Ok(connector)
}

fn needs_tls(cfg: &ConnConfig) -> bool {
    cfg.ssl_mode() != SslMode::Disable && cfg.targets().iter().any(|t| !t.is_unix_socket())
}

fn attempt(target: &Target, suffix: &str, e: &tokio_postgres::Error) -> ConnectAttempt {
    ConnectAttempt {
        target: format!("{target}{suffix}"),
        message: describe(e),
        sqlstate: sqlstate(e),
    }
}

async fn connect_with(
    pg: &tokio_postgres::Config,
    tls: Option<&tokio_postgres_rustls::MakeRustlsConnect>,
) -> Result<Client, tokio_postgres::Error> {
    match tls {
        Some(tls) if pg.get_ssl_mode() != tokio_postgres::config::SslMode::Disable => {
            spawn_connection(pg, tls.clone()).await
        }
        _ => spawn_connection(pg, NoTls).await,
    }
}

async fn spawn_connection<T>(
    pg: &tokio_postgres::Config,
    tls: T,
) -> Result<Client, tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket> + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, connection) = pg.connect(tls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("connection closed with an error: {}", describe(&e));
        }
    });
    Ok(client)
}

// ---------------------------------------------------------------------------------------------
// Errors

/// A server error as `SQLSTATE message`, with DETAIL, HINT and CONTEXT lines when the server sent
/// them; other errors (I/O, TLS, protocol) as tokio-postgres words them, with their cause.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        // tokio-postgres' Display names only the kind ("error connecting to server"); the
        // reason ("Connection refused", the certificate problem) is in the source chain.
        let mut out = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            out.push_str(": ");
            out.push_str(&cause.to_string());
            source = cause.source();
        }
        return out;
    };
    let mut out = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    if let Some(detail) = db.detail() {
        out.push_str("\nDETAIL: ");
        out.push_str(detail);
    }
    if let Some(hint) = db.hint() {
        out.push_str("\nHINT: ");
        out.push_str(hint);
    }
    if let Some(context) = db.where_() {
        out.push_str("\nCONTEXT: ");
        out.push_str(context);
    }
    out
}

/// The five-character SQLSTATE of a server error.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

fn has_code(e: &tokio_postgres::Error, code: &SqlState) -> bool {
    e.code() == Some(code)
}

/// `55P03 lock_not_available`: `lock_timeout` expired or `NOWAIT` failed.
pub fn is_lock_timeout(e: &tokio_postgres::Error) -> bool {
    has_code(e, &SqlState::LOCK_NOT_AVAILABLE)
}

/// `40P01 deadlock_detected`.
pub fn is_deadlock(e: &tokio_postgres::Error) -> bool {
    has_code(e, &SqlState::T_R_DEADLOCK_DETECTED)
}

/// The wait before retry `attempt` (0-based): `base` doubled per attempt up to `cap`, then a
/// uniformly random point in its upper three quarters (so retrying sessions spread out).
pub fn jittered_backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    let ms = exp.min(cap).as_millis().max(1) as u64;
    Duration::from_millis(rand::rng().random_range(ms / 4..=ms))
}

/// A lock timeout or a deadlock: the transaction can be retried from the start.
pub fn is_retryable_lock_error(e: &tokio_postgres::Error) -> bool {
    is_lock_timeout(e) || is_deadlock(e)
}

/// `40001 serialization_failure`.
pub fn is_serialization_failure(e: &tokio_postgres::Error) -> bool {
    has_code(e, &SqlState::T_R_SERIALIZATION_FAILURE)
}

/// `57014 query_canceled`: `statement_timeout`, or a cancel request.
pub fn is_query_canceled(e: &tokio_postgres::Error) -> bool {
    has_code(e, &SqlState::QUERY_CANCELED)
}

// ---------------------------------------------------------------------------------------------
// Server facts

/// `server_version_num`, e.g. 150018 for 15.18.
pub async fn server_version_num(client: &Client) -> crate::Result<i32> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await?;
    Ok(row.get(0))
}

// ---------------------------------------------------------------------------------------------
// Blockers

/// What kind of autovacuum worker a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutovacuumKind {
    /// An ordinary autovacuum: cancelling it is harmless (it runs again later).
    Regular,
    /// A vacuum `(to prevent wraparound)`: it must not be cancelled (PostgreSQL does not either).
    Wraparound,
    /// An autovacuum worker whose query text we may not read (`<insufficient privilege>`):
    /// treated as not cancellable.
    Unknown,
}

/// Classifies a `pg_stat_activity` row: `None` for anything that is not an autovacuum worker.
/// An autovacuum worker's `query` reads `autovacuum: VACUUM public.t`, `autovacuum: VACUUM
/// ANALYZE public.t (to prevent wraparound)`, `autovacuum: ANALYZE public.t`, ...
pub fn classify_autovacuum(backend_type: Option<&str>, query: &str) -> Option<AutovacuumKind> {
    if backend_type != Some("autovacuum worker") {
        return None;
    }
    let q = query.trim();
    Some(if !q.starts_with("autovacuum:") {
        AutovacuumKind::Unknown
    } else if q.ends_with("(to prevent wraparound)") {
        AutovacuumKind::Wraparound
    } else {
        AutovacuumKind::Regular
    })
}

/// Longest query text kept in a [`Blocker`], in characters.
pub const BLOCKER_QUERY_CHARS: usize = 200;

/// A session that blocks another one (`pg_blocking_pids`), from `pg_stat_activity`.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocker {
    pub pid: i32,
    pub application_name: String,
    pub usename: Option<String>,
    /// `active`, `idle in transaction`, ...
    pub state: Option<String>,
    /// `client backend`, `autovacuum worker`, ...
    pub backend_type: Option<String>,
    /// `xact_start` as the server prints it.
    pub xact_start: Option<String>,
    pub query_start: Option<String>,
    /// How long its transaction has been open.
    pub xact_age: Option<Duration>,
    /// How long it has been in its current state.
    pub state_age: Option<Duration>,
    /// `wait_event_type:wait_event`, when it is itself waiting.
    pub wait_event: Option<String>,
    /// The current (or, when idle, the last) query, whitespace collapsed, at most
    /// [`BLOCKER_QUERY_CHARS`] characters.
    pub query: String,
    /// `Some` for autovacuum workers.
    pub autovacuum: Option<AutovacuumKind>,
}

impl Blocker {
    pub fn is_autovacuum(&self) -> bool {
        self.autovacuum.is_some()
    }

    pub fn is_wraparound_autovacuum(&self) -> bool {
        self.autovacuum == Some(AutovacuumKind::Wraparound)
    }
}

impl fmt::Display for Blocker {
    /// `pid 4242 (application "psql", user alice) idle in transaction for 12.0s, transaction open
    /// 20.1s: LOCK TABLE t`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        let who = match self.autovacuum {
            Some(AutovacuumKind::Wraparound) => {
                "autovacuum worker, to prevent wraparound".to_string()
            }
            Some(_) => "autovacuum worker".to_string(),
            None => {
                let mut parts = Vec::new();
                if !self.application_name.is_empty() {
                    parts.push(format!("application \"{}\"", self.application_name));
                }
                if let Some(u) = &self.usename {
                    parts.push(format!("user {u}"));
                }
                if let Some(bt) = self
                    .backend_type
                    .as_deref()
                    .filter(|b| *b != "client backend")
                {
                    parts.push(bt.to_string());
                }
                parts.join(", ")
            }
        };
        if !who.is_empty() {
            write!(f, " ({who})")?;
        }
        if let Some(state) = &self.state {
            write!(f, " {state}")?;
            if let Some(age) = self.state_age {
                write!(f, " for {}", human_duration(age))?;
            }
        }
        if let Some(age) = self.xact_age {
            write!(f, ", transaction open {}", human_duration(age))?;
        }
        if let (Some(w), Some("active")) = (&self.wait_event, self.state.as_deref()) {
            write!(f, ", waiting on {w}")?;
        }
        if !self.query.is_empty() {
            write!(f, ": {}", self.query)?;
        }
        Ok(())
    }
}

/// A list of blockers, one per line (for error messages).
pub struct BlockerList<'a>(pub &'a [Blocker]);

impl fmt::Display for BlockerList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("  (none any more: the blocking sessions have finished)");
        }
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  {b}")?;
        }
        Ok(())
    }
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    } else {
        format!("{}h{:02}m", d.as_secs() / 3600, (d.as_secs() % 3600) / 60)
    }
}

fn one_line(query: &str, max_chars: usize) -> String {
    let collapsed = query.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= max_chars {
        collapsed
    } else {
        let mut s: String = collapsed.chars().take(max_chars).collect();
        s.push('…');
        s
    }
}

fn seconds(v: Option<f64>) -> Option<Duration> {
    v.filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The sessions blocking backend `pid` (`pg_blocking_pids`), oldest transaction first.
pub async fn blockers_of(client: &Client, pid: i32) -> crate::Result<Vec<Blocker>> {
    let rows = client
        .query(
            "SELECT a.pid, coalesce(a.application_name, ''), a.usename::text, a.state, a.backend_type, \
                    a.xact_start::text, a.query_start::text, \
                    extract(epoch FROM clock_timestamp() - a.xact_start)::float8, \
                    extract(epoch FROM clock_timestamp() - a.state_change)::float8, \
                    a.wait_event_type || ':' || a.wait_event, \
                    left(coalesce(a.query, ''), 4000) \
             FROM pg_stat_activity a \
             WHERE a.pid = ANY (pg_blocking_pids($1)) \
             ORDER BY a.xact_start NULLS LAST, a.pid",
            &[&pid],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let backend_type: Option<String> = r.get(4);
            let raw_query: String = r.get(10);
            Blocker {
                pid: r.get(0),
                application_name: r.get(1),
                usename: r.get(2),
                state: r.get(3),
                autovacuum: classify_autovacuum(backend_type.as_deref(), &raw_query),
                backend_type,
                xact_start: r.get(5),
                query_start: r.get(6),
                xact_age: seconds(r.get(7)),
                state_age: seconds(r.get(8)),
                wait_event: r.get(9),
                query: one_line(&raw_query, BLOCKER_QUERY_CHARS),
            }
        })
        .collect())
}

/// Cancels (`pg_cancel_backend`) the blockers of `pid` that are ordinary autovacuum workers —
/// what PostgreSQL itself does once a lock waiter passes `deadlock_timeout` — and nothing else:
/// not client sessions, not wraparound vacuums, not workers whose query we cannot read. Each
/// worker is re-checked in the same statement that cancels it, so a pid reused in the meantime
/// by another process is not touched. Returns the pids cancelled. A worker we lack the privilege
/// to signal (before PostgreSQL 18 only superusers may) is skipped with a warning.
pub async fn cancel_autovacuum_blockers(client: &Client, pid: i32) -> crate::Result<Vec<i32>> {
    let blockers = blockers_of(client, pid).await?;
    cancel_autovacuum_workers(client, pid, &blockers).await
}

/// [`cancel_autovacuum_blockers`] over `blockers`, the blockers of `pid` just read by the caller
/// (each candidate is re-checked as it is cancelled).
pub async fn cancel_autovacuum_workers(
    client: &Client,
    pid: i32,
    blockers: &[Blocker],
) -> crate::Result<Vec<i32>> {
    let candidates = blockers
        .iter()
        .filter(|b| b.autovacuum == Some(AutovacuumKind::Regular))
        .map(|b| b.pid);
    let mut cancelled = Vec::new();
    for worker in candidates {
        let result = client
            .query_opt(
                "SELECT pg_cancel_backend(a.pid) \
                 FROM pg_stat_activity a \
                 WHERE a.pid = $1 \
                   AND a.pid = ANY (pg_blocking_pids($2)) \
                   AND a.backend_type = 'autovacuum worker' \
                   AND a.query LIKE 'autovacuum:%' \
                   AND a.query NOT LIKE '%(to prevent wraparound)'",
                &[&worker, &pid],
            )
            .await;
        match result {
            Ok(Some(row)) => {
                if row.get::<_, bool>(0) {
                    cancelled.push(worker);
                }
            }
            Ok(None) => {} // finished, or no longer a blocker
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                tracing::warn!(
                    "autovacuum worker {worker} blocks pid {pid}, but this role may not cancel it: {}",
                    describe(&e)
                );
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(cancelled)
}

// ---------------------------------------------------------------------------------------------
// The migration advisory lock

/// The advisory-lock key for migrations of `schema`: FNV-1a (64-bit) over the bytes of
/// `"pgbaton:migrations:" + schema`, as a signed 64-bit integer. Stable across versions and
/// platforms (it is part of how two pgbaton processes agree, so it must never change); advisory
/// locks are per database already, so the key is per (database, schema). In `pg_locks` the key
/// appears as `classid` = its high 32 bits, `objid` = its low 32 bits, `objsubid` = 1.
pub fn migration_lock_key(schema: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in b"pgbaton:migrations:".iter().chain(schema.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

/// `(classid, objid)` as `pg_locks` shows a bigint advisory key.
fn lock_key_parts(key: i64) -> (i64, i64) {
    let k = key as u64;
    (i64::from((k >> 32) as u32), i64::from(k as u32))
}

/// Takes the session-level migration lock for `schema` without waiting: `true` when taken.
/// Session-level, so it survives transactions and is released by [`unlock_migration_lock`] or
/// by closing the connection (it does not work through a transaction-mode pooler).
pub async fn try_migration_lock(client: &Client, schema: &str) -> crate::Result<bool> {
    let row = client
        .query_one(
            "SELECT pg_try_advisory_lock($1)",
            &[&migration_lock_key(schema)],
        )
        .await?;
    Ok(row.get(0))
}

/// Releases the lock taken by [`try_migration_lock`]; `false` when this session did not hold it.
pub async fn unlock_migration_lock(client: &Client, schema: &str) -> crate::Result<bool> {
    let row = client
        .query_one(
            "SELECT pg_advisory_unlock($1)",
            &[&migration_lock_key(schema)],
        )
        .await?;
    Ok(row.get(0))
}

/// The session that holds the migration lock for `schema` in this database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: i32,
    pub application_name: String,
    pub usename: Option<String>,
    pub client_addr: Option<String>,
    /// When that session connected (`backend_start`, as the server prints it): a session-level
    /// lock has been held at most that long.
    pub since: String,
    pub state: Option<String>,
}

/// Who holds the migration lock for `schema` in the current database, if anyone.
pub async fn lock_holder(client: &Client, schema: &str) -> crate::Result<Option<Holder>> {
    let (classid, objid) = lock_key_parts(migration_lock_key(schema));
    let row = client
        .query_opt(
            "SELECT a.pid, coalesce(a.application_name, ''), a.usename::text, a.client_addr::text, \
                    coalesce(a.backend_start::text, ''), a.state \
             FROM pg_locks l \
             JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND l.classid::int8 = $1 AND l.objid::int8 = $2 AND l.objsubid = 1 \
             LIMIT 1",
            &[&classid, &objid],
        )
        .await?;
    Ok(row.map(|r| Holder {
        pid: r.get(0),
        application_name: r.get(1),
        usename: r.get(2),
        client_addr: r.get(3),
        since: r.get(4),
        state: r.get(5),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autovacuum_classification() {
        let av = Some("autovacuum worker");
        assert_eq!(
            classify_autovacuum(av, "autovacuum: VACUUM public.t"),
            Some(AutovacuumKind::Regular)
        );
        assert_eq!(
            classify_autovacuum(av, "autovacuum: VACUUM ANALYZE public.t"),
            Some(AutovacuumKind::Regular)
        );
        assert_eq!(
            classify_autovacuum(av, "autovacuum: ANALYZE public.t"),
            Some(AutovacuumKind::Regular)
        );
        assert_eq!(
            classify_autovacuum(av, "autovacuum: VACUUM public.t (to prevent wraparound)"),
            Some(AutovacuumKind::Wraparound)
        );
        assert_eq!(
            classify_autovacuum(
                av,
                "autovacuum: VACUUM ANALYZE pg_catalog.pg_class (to prevent wraparound)"
            ),
            Some(AutovacuumKind::Wraparound)
        );
        assert_eq!(
            classify_autovacuum(av, "<insufficient privilege>"),
            Some(AutovacuumKind::Unknown)
        );
        assert_eq!(
            classify_autovacuum(Some("client backend"), "autovacuum: VACUUM public.t"),
            None
        );
        assert_eq!(
            classify_autovacuum(None, "autovacuum: VACUUM public.t"),
            None
        );
    }

    #[test]
    fn lock_key_is_stable_and_splits() {
        // Pinned: changing the key would let two pgbaton versions migrate the same schema at once.
        assert_eq!(migration_lock_key("pgbaton"), migration_lock_key("pgbaton"));
        assert_ne!(
            migration_lock_key("pgbaton"),
            migration_lock_key("pgbaton2")
        );
        let expected = {
            let mut h: u64 = 0xcbf29ce484222325;
            for b in "pgbaton:migrations:public".bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x100000001b3);
            }
            h as i64
        };
        assert_eq!(migration_lock_key("public"), expected);
        let (hi, lo) = lock_key_parts(-1);
        assert_eq!((hi, lo), (0xffff_ffff, 0xffff_ffff));
        let (hi, lo) = lock_key_parts(0x0000_0001_0000_0002);
        assert_eq!((hi, lo), (1, 2));
    }

    #[test]
    fn blocker_lines() {
        let b = Blocker {
            pid: 42,
            application_name: "psql".into(),
            usename: Some("alice".into()),
            state: Some("idle in transaction".into()),
            backend_type: Some("client backend".into()),
            xact_start: None,
            query_start: None,
            xact_age: Some(Duration::from_millis(20_100)),
            state_age: Some(Duration::from_secs(12)),
            wait_event: Some("Client:ClientRead".into()),
            query: one_line(
                "LOCK TABLE t\n   IN ACCESS EXCLUSIVE MODE",
                BLOCKER_QUERY_CHARS,
            ),
            autovacuum: None,
        };
        assert_eq!(
            b.to_string(),
            "pid 42 (application \"psql\", user alice) idle in transaction for 12.0s, transaction open 20.1s: LOCK TABLE t IN ACCESS EXCLUSIVE MODE"
        );
        let av = Blocker {
            pid: 7,
            application_name: String::new(),
            usename: None,
            state: Some("active".into()),
            backend_type: Some("autovacuum worker".into()),
            xact_age: Some(Duration::from_secs(125)),
            state_age: Some(Duration::from_secs(125)),
            wait_event: Some("Timeout:VacuumDelay".into()),
            query: "autovacuum: VACUUM public.t (to prevent wraparound)".into(),
            autovacuum: Some(AutovacuumKind::Wraparound),
            ..b.clone()
        };
        assert_eq!(
            av.to_string(),
            "pid 7 (autovacuum worker, to prevent wraparound) active for 2m05s, transaction open 2m05s, waiting on Timeout:VacuumDelay: autovacuum: VACUUM public.t (to prevent wraparound)"
        );
        let list = BlockerList(&[b, av]).to_string();
        assert_eq!(list.lines().count(), 2);
        assert!(list.lines().all(|l| l.starts_with("  pid ")));
        assert!(BlockerList(&[]).to_string().contains("none any more"));
    }

    #[test]
    fn long_queries_are_cut() {
        let q = "SELECT ".to_string() + &"x, ".repeat(200);
        let cut = one_line(&q, BLOCKER_QUERY_CHARS);
        assert_eq!(cut.chars().count(), BLOCKER_QUERY_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(one_line("é".repeat(300).as_str(), 10), "é".repeat(10) + "…");
    }

    #[test]
    fn connect_messages() {
        let one = vec![ConnectAttempt {
            target: "db:5432".into(),
            message: "error connecting to server: Connection refused (os error 111)".into(),
            sqlstate: None,
        }];
        assert_eq!(
            connect_message("app", "alice", &one),
            "could not connect to database \"app\" as user \"alice\" at db:5432: error connecting to server: Connection refused (os error 111)"
        );
        let two = vec![
            one[0].clone(),
            ConnectAttempt {
                target: "db2:5432".into(),
                message: "FATAL 28P01: password authentication failed".into(),
                sqlstate: Some("28P01".into()),
            },
        ];
        let m = connect_message("app", "alice", &two);
        assert!(m.ends_with(":\n  db:5432: error connecting to server: Connection refused (os error 111)\n  db2:5432: FATAL 28P01: password authentication failed"), "{m}");
        let e = PgError::Connect {
            dbname: "app".into(),
            user: "alice".into(),
            attempts: two,
        };
        assert_eq!(e.sqlstate(), Some("28P01"));
    }
}

/// A result row's values as text (what the simple query protocol returns), from either protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TextRow(Vec<Option<String>>);

impl TextRow {
    /// Column `i`, `None` for NULL or past the end.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.0.get(i).and_then(|v| v.as_deref())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values of a row of the extended protocol. Integers and text are read as such; any
    /// other column type is an error (the statements pgbaton reads this way return counts,
    /// keys as text and JSON as text).
    pub fn from_row(row: &Row) -> Result<TextRow, tokio_postgres::Error> {
        let mut values = Vec::with_capacity(row.len());
        for (i, column) in row.columns().iter().enumerate() {
            let value = match *column.type_() {
                Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(|v| v.to_string()),
                Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map(|v| v.to_string()),
                Type::INT2 => row.try_get::<_, Option<i16>>(i)?.map(|v| v.to_string()),
                Type::OID => row.try_get::<_, Option<u32>>(i)?.map(|v| v.to_string()),
                Type::BOOL => row
                    .try_get::<_, Option<bool>>(i)?
                    .map(|v| if v { "t" } else { "f" }.to_string()),
                // Text types; anything else fails here with the column's type named.
                _ => row.try_get::<_, Option<String>>(i)?,
            };
            values.push(value);
        }
        Ok(TextRow(values))
    }
}

impl From<&SimpleQueryRow> for TextRow {
    fn from(row: &SimpleQueryRow) -> TextRow {
        TextRow(
            (0..row.len())
                .map(|i| row.get(i).map(str::to_string))
                .collect(),
        )
    }
}

/// Runs `sql`, one statement that holds user text (an `up`, a probe query), through the
/// extended protocol — which refuses a second statement, whatever the text holds — in one
/// round trip (an unnamed statement: no prepare, fine behind a transaction pooler), and
/// returns its rows as text.
pub async fn query_text(client: &Client, sql: &str) -> Result<Vec<TextRow>, tokio_postgres::Error> {
    client
        .query_typed(sql, &[])
        .await?
        .iter()
        .map(TextRow::from_row)
        .collect()
}

/// [`query_text`] for a statement without rows: returns the rows it changed.
pub async fn execute_one(client: &Client, sql: &str) -> Result<u64, tokio_postgres::Error> {
    client.execute_typed(sql, &[]).await
}
