//! Connection settings: where pgbaton connects and how. Resolves the connection string (flag,
//! `PGBATON_PG_URL`, `DATABASE_URL`) and libpq's `PG*` environment and `.pgpass` into a
//! [`ConnConfig`], parses both libpq string forms (URIs and `key=value`), holds the TLS settings
//! (`sslmode` and friends, built into a rustls client configuration), and renders URLs back
//! (redacted for messages; with a `search_path` for `pgbaton latest url`).
//!
//! # Resolution
//! 1. The connection string: the explicit one (the `--postgres-url` flag, else `PGBATON_PG_URL`),
//!    else `DATABASE_URL`, else none.
//! 2. Every libpq option the string does not set falls back to its libpq environment variable
//!    (`PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`, `PGPASSWORD`, `PGSSLMODE`, `PGAPPNAME`,
//!    `PGOPTIONS`, ...), exactly as libpq does for `psql "$DATABASE_URL"`. Empty variables count as
//!    unset.
//! 3. Defaults: user = the OS user, database = the user, port = 5432, host = the first of
//!    [`DEFAULT_SOCKET_DIRS`] that holds the server's socket, else `localhost`; no password found
//!    so far = a `.pgpass` match (`passfile`, `PGPASSFILE`, `~/.pgpass`, ignored when group or
//!    world readable, as libpq does); `application_name` = [`DEFAULT_APPLICATION_NAME`].
//!
//! Deviations from libpq, all deliberate: `connect_timeout` defaults to
//! [`DEFAULT_CONNECT_TIMEOUT`] rather than forever (a migration tool should not hang on a dead
//! host); verify-ca / verify-full without a root certificate file use the system trust store
//! instead of failing; options libpq has but pgbaton cannot honour (`service`, `requirepeer`,
//! `require_auth`, `sslcrl`, GSSAPI encryption, ...) are refused with an error rather than ignored,
//! because ignoring a security option silently would be worse than stopping.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::ident::quote_ident;

/// `application_name` when neither the connection string nor `PGAPPNAME` sets one.
pub const DEFAULT_APPLICATION_NAME: &str = "pgbaton";
/// PostgreSQL's default port.
pub const DEFAULT_PORT: u16 = 5432;
/// `connect_timeout` when none is set (libpq waits forever; pgbaton does not).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Unix-socket directories tried, in order, when no host is set: Debian/Ubuntu's packages, then
/// upstream's default. The first one holding `.s.PGSQL.<port>` wins, else `localhost` (TCP).
pub const DEFAULT_SOCKET_DIRS: [&str; 2] = ["/var/run/postgresql", "/tmp"];

/// Everything that can be wrong with connection settings, found before any connection attempt.
/// Messages name the option and where it came from, never a password.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid connection string in {origin}: {message}")]
    Syntax { origin: String, message: String },

    #[error("invalid value \"{value}\" for connection option \"{key}\" (from {origin}): expected {expected}")]
    InvalidValue {
        key: String,
        value: String,
        origin: String,
        expected: String,
    },

    #[error("unknown connection option \"{key}\" (from {origin})")]
    UnknownOption { key: String, origin: String },

    #[error("connection option \"{key}\" (from {origin}) is not supported by pgbaton: {why}")]
    Unsupported {
        key: String,
        origin: String,
        why: String,
    },

    #[error("could not determine the operating-system user name ({0}); set PGUSER or put the user in the connection string")]
    NoUser(String),

    #[error("could not read {what} {}: {message}", .path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        message: String,
    },

    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// Where the connection string came from (for messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Passed in by the caller (the `--postgres-url` flag).
    Explicit,
    /// The `PGBATON_PG_URL` environment variable.
    PgbatonPgUrl,
    /// The `DATABASE_URL` environment variable.
    DatabaseUrl,
    /// No connection string: libpq's `PG*` environment variables and defaults only.
    LibpqEnvironment,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConfigSource::Explicit => "the connection string",
            ConfigSource::PgbatonPgUrl => "PGBATON_PG_URL",
            ConfigSource::DatabaseUrl => "DATABASE_URL",
            ConfigSource::LibpqEnvironment => "the PG* environment",
        })
    }
}

mod build;
mod env;
mod parse;
mod pgpass;
#[cfg(test)]
mod tests;
mod tls;
mod url;

use build::build;
pub use env::Environment;
use env::SocketProbe;
use parse::{parse_conninfo, spec, Support, OPTIONS};
use pgpass::*;
pub use tls::*;
use url::PasswordRendering;
pub use url::{encode_path_segment, options_with_search_path};

/// A host to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostName {
    /// A TCP host name or IP address.
    Tcp(String),
    /// A directory holding the server's Unix socket.
    Unix(PathBuf),
}

/// One host/port pair to try (libpq's multi-host lists give several, tried in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    host: Option<HostName>,
    hostaddr: Option<IpAddr>,
    port: u16,
    /// A `.pgpass` match for this target, used when no password was given.
    passfile_password: Option<Secret>,
}

impl Target {
    /// `None` only when `hostaddr` alone names the server.
    pub fn host(&self) -> Option<&HostName> {
        self.host.as_ref()
    }

    pub fn hostaddr(&self) -> Option<IpAddr> {
        self.hostaddr
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn is_unix_socket(&self) -> bool {
        matches!(self.host, Some(HostName::Unix(_))) && self.hostaddr.is_none()
    }
}

impl fmt::Display for Target {
    /// `db.example.com:5432`, `[::1]:5432`, `db (10.0.0.5):5432`, `socket /tmp/.s.PGSQL.5432`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.hostaddr) {
            (Some(HostName::Unix(dir)), None) => {
                write!(
                    f,
                    "socket {}",
                    dir.join(format!(".s.PGSQL.{}", self.port)).display()
                )
            }
            (Some(HostName::Unix(dir)), Some(addr)) => {
                write!(f, "{} ({}):{}", dir.display(), addr, self.port)
            }
            (Some(HostName::Tcp(h)), None) if h.contains(':') => write!(f, "[{h}]:{}", self.port),
            (Some(HostName::Tcp(h)), None) => write!(f, "{h}:{}", self.port),
            (Some(HostName::Tcp(h)), Some(addr)) => write!(f, "{h} ({addr}):{}", self.port),
            (None, Some(IpAddr::V6(a))) => write!(f, "[{a}]:{}", self.port),
            (None, Some(a)) => write!(f, "{a}:{}", self.port),
            (None, None) => write!(f, "?:{}", self.port),
        }
    }
}

/// A password; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where an option's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    ConnString,
    Env(&'static str),
}

/// Resolved connection settings: what the CLI builds and [`crate::pg::connect`] uses.
/// `Debug` and `Display` never show the password.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    source: ConfigSource,
    targets: Vec<Target>,
    user: String,
    dbname: String,
    password: Option<Secret>,
    password_origin: Option<Origin>,
    options: Option<String>,
    application_name: Option<String>,
    fallback_application_name: Option<String>,
    tls: TlsSettings,
    connect_timeout: Option<Duration>,
    keepalives: Option<bool>,
    keepalives_idle: Option<Duration>,
    keepalives_interval: Option<Duration>,
    keepalives_count: Option<u32>,
    tcp_user_timeout: Option<Duration>,
    target_session_attrs: Option<tokio_postgres::config::TargetSessionAttrs>,
    channel_binding: Option<tokio_postgres::config::ChannelBinding>,
    load_balance_random: bool,
    role: Option<String>,
    /// The libpq options set by the string or the environment, for rendering URLs back.
    given: BTreeMap<&'static str, (String, Origin)>,
}

impl fmt::Display for ConnConfig {
    /// The redacted URL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::str::FromStr for ConnConfig {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConnConfig::parse(s)
    }
}

impl ConnConfig {
    /// Resolves the settings (see the module documentation): `explicit` is the `--postgres-url`
    /// flag; `PGBATON_PG_URL`, `DATABASE_URL` and libpq's variables are read from `env`.
    pub fn resolve(explicit: Option<&str>, env: &Environment) -> Result<ConnConfig, ConfigError> {
        let explicit = explicit.filter(|s| !s.trim().is_empty());
        let (source, conninfo) = if let Some(s) = explicit {
            (ConfigSource::Explicit, Some(s))
        } else if let Some(s) = env.var("PGBATON_PG_URL") {
            (ConfigSource::PgbatonPgUrl, Some(s))
        } else if let Some(s) = env.var("DATABASE_URL") {
            (ConfigSource::DatabaseUrl, Some(s))
        } else {
            (ConfigSource::LibpqEnvironment, None)
        };
        let pairs = match conninfo {
            Some(s) => parse_conninfo(s, &source.to_string())?,
            None => Vec::new(),
        };
        build(source, pairs, env)
    }

    /// [`ConnConfig::resolve`] against the real process environment.
    pub fn from_env(explicit: Option<&str>) -> Result<ConnConfig, ConfigError> {
        ConnConfig::resolve(explicit, &Environment::from_process())
    }

    /// A connection string on its own: no `PG*` variables, no `.pgpass`; defaults for what it
    /// leaves out (the OS user, its database, port 5432, a local socket or localhost).
    pub fn parse(conninfo: &str) -> Result<ConnConfig, ConfigError> {
        let process = Environment::from_process();
        let env = Environment {
            vars: BTreeMap::new(),
            home: None,
            sockets: SocketProbe::Filesystem,
            ..process
        };
        let pairs = parse_conninfo(conninfo, &ConfigSource::Explicit.to_string())?;
        build(ConfigSource::Explicit, pairs, &env)
    }

    /// The role to `SET ROLE` to after connecting (`--role`).
    pub fn with_role(mut self, role: Option<impl Into<String>>) -> ConnConfig {
        self.role = role.map(Into::into).filter(|r: &String| !r.is_empty());
        self
    }

    /// Overrides `application_name`.
    pub fn with_application_name(mut self, name: impl Into<String>) -> ConnConfig {
        let name = name.into();
        self.given
            .insert("application_name", (name.clone(), Origin::ConnString));
        self.application_name = Some(name);
        self
    }

    pub fn source(&self) -> ConfigSource {
        self.source
    }

    /// The hosts to try, in order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// The effective `application_name` (the configured one, else `pgbaton`).
    pub fn application_name(&self) -> &str {
        self.application_name
            .as_deref()
            .or(self.fallback_application_name.as_deref())
            .unwrap_or(DEFAULT_APPLICATION_NAME)
    }

    pub fn role(&self) -> Option<&str> {
        self.role.as_deref()
    }

    /// The server `options` (`-c name=value ...`), if any.
    pub fn options(&self) -> Option<&str> {
        self.options.as_deref()
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.tls.mode
    }

    pub fn tls(&self) -> &TlsSettings {
        &self.tls
    }

    pub fn connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// True when a password was given (string, `PGPASSWORD`) or found in `.pgpass`.
    pub fn has_password(&self) -> bool {
        self.password.is_some() || self.targets.iter().any(|t| t.passfile_password.is_some())
    }

    /// The targets in the order to try them (shuffled for `load_balance_hosts=random`).
    pub fn targets_in_connect_order(&self) -> Vec<&Target> {
        let mut targets: Vec<&Target> = self.targets.iter().collect();
        if self.load_balance_random {
            use rand::seq::SliceRandom;
            targets.shuffle(&mut rand::rng());
        }
        targets
    }

    /// The tokio-postgres configuration for one target. TLS mode mapping: disable and allow start
    /// plain (the caller retries allow with TLS), prefer is prefer, the rest require TLS; Unix
    /// sockets never use TLS (PostgreSQL does not offer it there; libpq skips it too).
    pub fn tokio_config(&self, target: &Target) -> tokio_postgres::Config {
        use tokio_postgres::config::{SslMode as PgSsl, SslNegotiation};

        let mut c = tokio_postgres::Config::new();
        c.user(&self.user);
        c.dbname(&self.dbname);
        if let Some(p) = self.password.as_ref().or(target.passfile_password.as_ref()) {
            c.password(p.0.as_bytes());
        }
        if let Some(o) = &self.options {
            c.options(o);
        }
        c.application_name(self.application_name());
        match &target.host {
            Some(HostName::Tcp(h)) => {
                c.host(h);
            }
            Some(HostName::Unix(dir)) => {
                c.host_path(dir);
            }
            None => {
                // tokio-postgres only hands a host name to TLS when `host` is set: use the
                // address itself (libpq does the same when only hostaddr is given).
                if let Some(addr) = target.hostaddr {
                    c.host(addr.to_string());
                }
            }
        }
        if let (Some(_), Some(addr)) = (&target.host, target.hostaddr) {
            c.hostaddr(addr);
        }
        c.port(target.port);
        let ssl = if target.is_unix_socket() {
            PgSsl::Disable
        } else {
            match self.tls.mode {
                SslMode::Disable | SslMode::Allow => PgSsl::Disable,
                SslMode::Prefer => PgSsl::Prefer,
                SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSsl::Require,
            }
        };
        c.ssl_mode(ssl);
        if self.tls.direct {
            c.ssl_negotiation(SslNegotiation::Direct);
        }
        if let Some(t) = self.connect_timeout {
            c.connect_timeout(t);
        }
        if let Some(k) = self.keepalives {
            c.keepalives(k);
        }
        if let Some(d) = self.keepalives_idle {
            c.keepalives_idle(d);
        }
        if let Some(d) = self.keepalives_interval {
            c.keepalives_interval(d);
        }
        if let Some(n) = self.keepalives_count {
            c.keepalives_retries(n);
        }
        if let Some(d) = self.tcp_user_timeout {
            c.tcp_user_timeout(d);
        }
        if let Some(t) = self.target_session_attrs {
            c.target_session_attrs(t);
        }
        if let Some(b) = self.channel_binding {
            c.channel_binding(b);
        }
        c
    }

    /// The connection as a URL with the password (if any) hidden, for messages.
    pub fn redacted(&self) -> String {
        self.render_url(PasswordRendering::Redacted, self.options.clone())
    }

    /// The connection URL, with the password only when it was part of the connection string
    /// itself (never one from `PGPASSWORD` or `.pgpass`).
    pub fn url(&self) -> String {
        self.render_url(PasswordRendering::FromString, self.options.clone())
    }

    /// [`ConnConfig::url`] with `options=-c search_path=<schema>`, replacing any `search_path` the
    /// options already set and keeping the other options: the URL an application uses to see one
    /// version of the schema (`pgbaton latest url`). The schema is quoted as an identifier when it
    /// needs to be and escaped for the server's options parser; the whole is percent-encoded.
    pub fn url_with_search_path(&self, schema: &str) -> String {
        let options = options_with_search_path(self.options.as_deref(), schema);
        self.render_url(PasswordRendering::FromString, Some(options))
    }
}
