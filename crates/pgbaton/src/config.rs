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

/// The process environment as resolution sees it: variables, the OS user, the home directory and
/// which Unix sockets exist. Tests build one from a map, so they never touch the real environment
/// and stay parallel-safe.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
    os_user: Option<String>,
    os_user_error: Option<String>,
    home: Option<PathBuf>,
    sockets: SocketProbe,
}

#[derive(Debug, Clone)]
enum SocketProbe {
    /// Look at the file system.
    Filesystem,
    /// Only these socket files exist (tests).
    Fixed(std::collections::BTreeSet<PathBuf>),
}

impl Default for SocketProbe {
    fn default() -> Self {
        SocketProbe::Fixed(Default::default())
    }
}

impl Environment {
    /// The real process environment: `PG*`, `PGBATON_*` and `DATABASE_URL` variables, the OS user,
    /// `$HOME`, and the file system for socket probing.
    pub fn from_process() -> Environment {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k.starts_with("PG") || k == "DATABASE_URL")
            .collect();
        let (os_user, os_user_error) = match whoami::username() {
            Ok(u) => (Some(u), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        Environment {
            vars,
            os_user,
            os_user_error,
            home,
            sockets: SocketProbe::Filesystem,
        }
    }

    /// An environment holding only `vars`: no OS user, no home directory, no Unix sockets.
    pub fn from_vars<I, K, V>(vars: I) -> Environment
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Environment {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            ..Environment::default()
        }
    }

    pub fn with_os_user(mut self, user: impl Into<String>) -> Environment {
        self.os_user = Some(user.into());
        self.os_user_error = None;
        self
    }

    /// The variable's value, `None` when unset or empty.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn socket_exists(&self, dir: &Path, port: u16) -> bool {
        let socket = dir.join(format!(".s.PGSQL.{port}"));
        match &self.sockets {
            SocketProbe::Filesystem => {
                use std::os::unix::fs::FileTypeExt;
                std::fs::metadata(&socket)
                    .map(|m| m.file_type().is_socket())
                    .unwrap_or(false)
            }
            SocketProbe::Fixed(sockets) => sockets.contains(&socket),
        }
    }

    /// Pretend a server socket exists in `dir` for `port` (tests of the default-host probe);
    /// switches off probing the real file system.
    pub fn with_socket(mut self, dir: impl AsRef<Path>, port: u16) -> Environment {
        let socket = dir.as_ref().join(format!(".s.PGSQL.{port}"));
        match &mut self.sockets {
            SocketProbe::Fixed(sockets) => {
                sockets.insert(socket);
            }
            SocketProbe::Filesystem => {
                self.sockets = SocketProbe::Fixed([socket].into_iter().collect());
            }
        }
        self
    }
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain connections only.
    Disable,
    /// Plain first; TLS (unverified) only if the server refuses the plain connection.
    Allow,
    /// TLS (unverified) if the server offers it, else plain. libpq's default.
    #[default]
    Prefer,
    /// TLS, encrypted but not verified (verified against the root certificate when one is
    /// configured, as libpq does).
    Require,
    /// TLS, the certificate chain verified; the host name not checked.
    VerifyCa,
    /// TLS, the chain and the host name verified.
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where verify-* modes take their trust anchors from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// `sslrootcert=<file>` (or `~/.postgresql/root.crt` when it exists): PEM certificates.
    File(PathBuf),
    /// `sslrootcert=system`, or no root file at all: the operating system's trust store.
    System,
}

/// How much of the server certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Encrypt only (libpq's prefer/require without a root certificate).
    None,
    /// The chain up to a trusted root (verify-ca).
    Chain,
    /// The chain and the host name (verify-full).
    Full,
}

/// TLS versions rustls speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// The TLS half of a [`ConnConfig`].
///
/// Built on rustls 0.23 through `tokio-postgres-rustls` 0.14: that is the maintained TLS bridge for
/// tokio-postgres 0.7 (its 0.14 line targets rustls 0.23 / tokio-rustls 0.26 and implements
/// `tls-server-end-point` channel binding, so SCRAM-SHA-256-PLUS works), and rustls needs no system
/// OpenSSL. The crypto provider is `ring` (pure Rust plus a little C/asm, no cmake or NASM at build
/// time, unlike `aws-lc-rs`); it is passed explicitly, so no process-wide default provider is
/// installed behind the caller's back. Trust anchors for verify-* come from `sslrootcert`, else the
/// OS store through `rustls-native-certs` (which honours `SSL_CERT_FILE`/`SSL_CERT_DIR` and the
/// distribution's CA bundle, where cloud providers' PostgreSQL CAs are usually installed) rather
/// than `webpki-roots`' compiled-in Mozilla list, which could not be extended by an administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// `None`: no root certificate configured (verify-* then use the system store).
    pub root_certs: Option<RootCerts>,
    /// `(sslcert, sslkey)`: a client certificate to present.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Send SNI (`sslsni`, default on).
    pub sni: bool,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// `sslnegotiation=direct` (PostgreSQL 17+): TLS handshake without the SSLRequest round trip.
    pub direct: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            mode: SslMode::Prefer,
            root_certs: None,
            client_cert: None,
            sni: true,
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            direct: false,
        }
    }
}

impl TlsSettings {
    /// How the server certificate is checked in this mode.
    pub fn verification(&self) -> Verification {
        match self.mode {
            SslMode::Disable | SslMode::Allow | SslMode::Prefer => Verification::None,
            // libpq: "if a root CA file exists, sslmode=require behaves like verify-ca".
            SslMode::Require => match self.root_certs {
                Some(RootCerts::File(_)) => Verification::Chain,
                _ => Verification::None,
            },
            SslMode::VerifyCa => Verification::Chain,
            SslMode::VerifyFull => Verification::Full,
        }
    }

    /// The rustls client configuration for these settings (reads certificate files).
    pub fn rustls_config(&self) -> Result<rustls::ClientConfig, ConfigError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::PrivateKeyDer;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
        if self.min_version <= TlsVersion::Tls12 && self.max_version >= TlsVersion::Tls12 {
            versions.push(&rustls::version::TLS12);
        }
        if self.max_version >= TlsVersion::Tls13 {
            versions.push(&rustls::version::TLS13);
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| ConfigError::Tls(e.to_string()))?;

        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> =
            match self.verification() {
                Verification::None => Arc::new(verifier::NoVerification::new(provider.clone())),
                Verification::Chain | Verification::Full => {
                    let roots = Arc::new(self.root_store()?);
                    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                        roots,
                        provider.clone(),
                    )
                    .build()
                    .map_err(|e| ConfigError::Tls(e.to_string()))?;
                    if self.verification() == Verification::Full {
                        webpki
                    } else {
                        Arc::new(verifier::ChainOnly::new(webpki))
                    }
                }
            };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);

        let mut config = match &self.client_cert {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let certs = read_pem_certs(cert, "client certificate (sslcert)")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| ConfigError::File {
                    what: "client key (sslkey)",
                    path: key.clone(),
                    message: e.to_string(),
                })?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| ConfigError::Tls(format!("client certificate: {e}")))?
            }
        };
        config.enable_sni = self.sni;
        if self.direct {
            // Direct TLS requires the `postgresql` ALPN protocol (PostgreSQL 17+).
            config.alpn_protocols = vec![b"postgresql".to_vec()];
        }
        Ok(config)
    }

    fn root_store(&self) -> Result<rustls::RootCertStore, ConfigError> {
        let mut store = rustls::RootCertStore::empty();
        match &self.root_certs {
            Some(RootCerts::File(path)) => {
                let certs = read_pem_certs(path, "root certificate (sslrootcert)")?;
                let (added, _ignored) = store.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(ConfigError::File {
                        what: "root certificate (sslrootcert)",
                        path: path.clone(),
                        message: "no usable certificate in the file".into(),
                    });
                }
            }
            Some(RootCerts::System) | None => {
                let loaded = rustls_native_certs::load_native_certs();
                let (added, _ignored) = store.add_parsable_certificates(loaded.certs);
                if added == 0 {
                    let why = loaded
                        .errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>();
                    return Err(ConfigError::Tls(format!(
                        "no trusted root certificates in the system store{}; set sslrootcert",
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", why.join("; "))
                        }
                    )));
                }
            }
        }
        Ok(store)
    }
}

/// Every PEM certificate in the file at `path`; `what` names the setting in the error.
fn read_pem_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ConfigError::File {
            what,
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

mod verifier {
    //! The two verifiers rustls does not ship: none (libpq's `require`) and chain-only (`verify-ca`).
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::WebPkiServerVerifier;
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};

    /// Accepts any certificate, but still checks the handshake signatures, so the session is
    /// encrypted to whoever holds the presented certificate's key (libpq's `require`).
    #[derive(Debug)]
    pub struct NoVerification(Arc<CryptoProvider>);

    impl NoVerification {
        pub fn new(provider: Arc<CryptoProvider>) -> Self {
            NoVerification(provider)
        }
    }

    impl ServerCertVerifier for NoVerification {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    /// WebPKI verification minus the host-name check (`verify-ca`). rustls checks the chain
    /// (and revocation) before the name, so a name error means the chain was valid.
    #[derive(Debug)]
    pub struct ChainOnly(Arc<WebPkiServerVerifier>);

    impl ChainOnly {
        pub fn new(inner: Arc<WebPkiServerVerifier>) -> Self {
            ChainOnly(inner)
        }
    }

    impl ServerCertVerifier for ChainOnly {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp_response: &[u8],
            now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            match self.0.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
}

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

    fn render_url(&self, password: PasswordRendering, options: Option<String>) -> String {
        let mut url = String::from("postgresql://");
        url.push_str(&encode(&self.user, USERINFO));
        let pw = match (password, &self.password, self.password_origin) {
            (PasswordRendering::Redacted, Some(_), Some(Origin::ConnString)) => {
                Some("********".to_string())
            }
            (PasswordRendering::FromString, Some(p), Some(Origin::ConnString)) => {
                Some(encode(&p.0, USERINFO))
            }
            _ => None,
        };
        if let Some(pw) = pw {
            url.push(':');
            url.push_str(&pw);
        }
        url.push('@');

        let mut query: Vec<(&str, String)> = Vec::new();
        // TCP hosts (without hostaddr) go in the authority; otherwise everything goes in the
        // query string (`?host=/dir&port=5432`), the only place libpq takes socket paths and
        // hostaddr.
        let authority = self
            .targets
            .iter()
            .all(|t| matches!(t.host, Some(HostName::Tcp(_))) && t.hostaddr.is_none());
        if authority {
            let hosts = self
                .targets
                .iter()
                .map(|t| {
                    let h = match &t.host {
                        Some(HostName::Tcp(h)) => h.as_str(),
                        _ => "",
                    };
                    if h.contains(':') {
                        format!("[{h}]:{}", t.port)
                    } else {
                        format!("{}:{}", encode(h, HOST), t.port)
                    }
                })
                .collect::<Vec<_>>();
            url.push_str(&hosts.join(","));
        } else {
            let hosts: Vec<String> = self
                .targets
                .iter()
                .map(|t| match &t.host {
                    Some(HostName::Tcp(h)) => h.clone(),
                    Some(HostName::Unix(d)) => d.display().to_string(),
                    None => String::new(),
                })
                .collect();
            if hosts.iter().any(|h| !h.is_empty()) {
                query.push(("host", hosts.join(",")));
            }
            let addrs: Vec<String> = self
                .targets
                .iter()
                .map(|t| t.hostaddr.map(|a| a.to_string()).unwrap_or_default())
                .collect();
            if addrs.iter().any(|a| !a.is_empty()) {
                query.push(("hostaddr", addrs.join(",")));
            }
            let ports: Vec<String> = self.targets.iter().map(|t| t.port.to_string()).collect();
            let same = ports.windows(2).all(|w| w[0] == w[1]);
            query.push((
                "port",
                if same {
                    ports.first().cloned().unwrap_or_default()
                } else {
                    ports.join(",")
                },
            ));
        }
        url.push('/');
        url.push_str(&encode(&self.dbname, PATH));

        for spec in OPTIONS {
            if matches!(
                spec.key,
                "host"
                    | "hostaddr"
                    | "port"
                    | "user"
                    | "password"
                    | "dbname"
                    | "options"
                    | "passfile"
            ) || spec.support != Support::Yes
            {
                continue;
            }
            if let Some((value, _)) = self.given.get(spec.key) {
                query.push((spec.key, value.clone()));
            }
        }
        if let Some(o) = options.filter(|o| !o.is_empty()) {
            query.push(("options", o));
        }
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(k);
            url.push('=');
            url.push_str(&encode(v, QUERY_VALUE));
        }
        url
    }
}

#[derive(Clone, Copy)]
enum PasswordRendering {
    Redacted,
    FromString,
}

// Percent-encoding sets: everything but RFC 3986 unreserved characters, plus a few that libpq
// and tokio-postgres read literally where they are (`/` and `,` in query values keep socket
// paths and host lists readable).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
const USERINFO: &AsciiSet = UNRESERVED;
const HOST: &AsciiSet = UNRESERVED;
const PATH: &AsciiSet = UNRESERVED;
const QUERY_VALUE: &AsciiSet = &UNRESERVED.remove(b'/').remove(b',');

fn encode(s: &str, set: &'static AsciiSet) -> String {
    utf8_percent_encode(s, set).to_string()
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for a URL path segment).
pub fn encode_path_segment(s: &str) -> String {
    encode(s, PATH)
}

/// `options` with every `search_path` setting removed and `-c search_path=<schema>` appended.
/// Tokens follow the server's options syntax: whitespace separates, a backslash escapes.
pub fn options_with_search_path(options: Option<&str>, schema: &str) -> String {
    let tokens = options.map(split_server_options).unwrap_or_default();
    let mut kept: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        if t == "-c" && tokens.get(i + 1).is_some_and(|n| sets_search_path(n)) {
            i += 2;
            continue;
        }
        if let Some(rest) = t.strip_prefix("-c").or_else(|| t.strip_prefix("--")) {
            if !rest.is_empty() && sets_search_path(rest) {
                i += 1;
                continue;
            }
        }
        kept.push(t.clone());
        i += 1;
    }
    kept.push("-c".into());
    kept.push(format!("search_path={}", search_path_element(schema)));
    kept.iter()
        .map(|t| escape_server_option(t))
        .collect::<Vec<_>>()
        .join(" ")
}

fn sets_search_path(setting: &str) -> bool {
    let name = setting.split('=').next().unwrap_or_default();
    name.trim().to_ascii_lowercase().replace('-', "_") == "search_path"
}

/// A schema name as written in `search_path`: bare when it is a plain lower-case name (the server
/// would read it back unchanged), otherwise double-quoted.
fn search_path_element(schema: &str) -> String {
    let plain = schema
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        schema.to_string()
    } else {
        quote_ident(schema)
    }
}

fn split_server_options(options: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut in_token = false;
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                cur.push(n);
            }
            in_token = true;
        } else if c.is_whitespace() {
            if in_token {
                tokens.push(std::mem::take(&mut cur));
                in_token = false;
            }
        } else {
            cur.push(c);
            in_token = true;
        }
    }
    if in_token {
        tokens.push(cur);
    }
    tokens
}

fn escape_server_option(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    for c in token.chars() {
        if c == '\\' || c.is_whitespace() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The libpq options pgbaton knows.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Support {
    /// Honoured.
    Yes,
    /// Accepted and without effect (obsolete, or only meaningful for GSSAPI, which is not used).
    Ignored,
    /// Refused with this reason when set.
    No(&'static str),
}

struct OptionSpec {
    key: &'static str,
    env: Option<&'static str>,
    support: Support,
}

const fn opt(key: &'static str, env: Option<&'static str>, support: Support) -> OptionSpec {
    OptionSpec { key, env, support }
}

/// libpq's connection options (PostgreSQL 17), in the order URLs are rendered.
const OPTIONS: &[OptionSpec] = &[
    opt("host", Some("PGHOST"), Support::Yes),
    opt("hostaddr", Some("PGHOSTADDR"), Support::Yes),
    opt("port", Some("PGPORT"), Support::Yes),
    opt("user", Some("PGUSER"), Support::Yes),
    opt("password", Some("PGPASSWORD"), Support::Yes),
    opt("passfile", Some("PGPASSFILE"), Support::Yes),
    opt("dbname", Some("PGDATABASE"), Support::Yes),
    opt("sslmode", Some("PGSSLMODE"), Support::Yes),
    opt("sslnegotiation", Some("PGSSLNEGOTIATION"), Support::Yes),
    opt("sslrootcert", Some("PGSSLROOTCERT"), Support::Yes),
    opt("sslcert", Some("PGSSLCERT"), Support::Yes),
    opt("sslkey", Some("PGSSLKEY"), Support::Yes),
    opt("sslsni", Some("PGSSLSNI"), Support::Yes),
    opt("ssl_min_protocol_version", Some("PGSSLMINPROTOCOLVERSION"), Support::Yes),
    opt("ssl_max_protocol_version", Some("PGSSLMAXPROTOCOLVERSION"), Support::Yes),
    opt("sslcertmode", Some("PGSSLCERTMODE"), Support::Yes),
    opt("sslpassword", None, Support::Yes),
    opt("requiressl", Some("PGREQUIRESSL"), Support::Yes),
    opt("application_name", Some("PGAPPNAME"), Support::Yes),
    opt("fallback_application_name", None, Support::Yes),
    opt("connect_timeout", Some("PGCONNECT_TIMEOUT"), Support::Yes),
    opt("client_encoding", Some("PGCLIENTENCODING"), Support::Yes),
    opt("keepalives", None, Support::Yes),
    opt("keepalives_idle", None, Support::Yes),
    opt("keepalives_interval", None, Support::Yes),
    opt("keepalives_count", None, Support::Yes),
    opt("tcp_user_timeout", None, Support::Yes),
    opt("target_session_attrs", Some("PGTARGETSESSIONATTRS"), Support::Yes),
    opt("channel_binding", Some("PGCHANNELBINDING"), Support::Yes),
    opt("load_balance_hosts", Some("PGLOADBALANCEHOSTS"), Support::Yes),
    opt("gssencmode", Some("PGGSSENCMODE"), Support::Yes),
    opt("options", Some("PGOPTIONS"), Support::Yes),
    opt("sslcompression", Some("PGSSLCOMPRESSION"), Support::Ignored),
    opt("krbsrvname", Some("PGKRBSRVNAME"), Support::Ignored),
    opt("gsslib", Some("PGGSSLIB"), Support::Ignored),
    opt("gssdelegation", Some("PGGSSDELEGATION"), Support::Ignored),
    opt("service", Some("PGSERVICE"), Support::No("service files (pg_service.conf) are not read; put the settings in the connection string")),
    opt("requirepeer", Some("PGREQUIREPEER"), Support::No("peer-user checks on Unix sockets are not implemented")),
    opt("require_auth", Some("PGREQUIREAUTH"), Support::No("restricting authentication methods is not implemented")),
    opt("sslcrl", Some("PGSSLCRL"), Support::No("certificate revocation lists are not implemented")),
    opt("sslcrldir", Some("PGSSLCRLDIR"), Support::No("certificate revocation lists are not implemented")),
    opt("replication", None, Support::No("replication connections are not used")),
];

fn spec(key: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|s| s.key == key)
}

// ---------------------------------------------------------------------------------------------
// Parsing libpq connection strings.

/// Parses a libpq connection string, URI (`postgres://`, `postgresql://`) or `key=value` form,
/// into (key, value) pairs in order (later ones win). Keys are checked against libpq's list.
fn parse_conninfo(s: &str, origin: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let s = s.trim();
    let pairs = if let Some(rest) = s
        .strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
    {
        parse_uri(rest, origin)?
    } else if s.contains('=') {
        parse_keyword_value(s, origin)?
    } else {
        return Err(ConfigError::Syntax {
            origin: origin.into(),
            message: "expected a postgres:// or postgresql:// URL or key=value pairs".into(),
        });
    };
    for (k, _) in &pairs {
        if spec(k).is_none() {
            return Err(ConfigError::UnknownOption {
                key: k.clone(),
                origin: origin.into(),
            });
        }
    }
    Ok(pairs)
}

fn syntax(origin: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Syntax {
        origin: origin.into(),
        message: message.into(),
    }
}

/// libpq's `conninfo_uri_parse_options`, including its multi-host authority
/// (`host1:5432,[::1]:5433`) and query parameters (`?host=/dir&sslmode=require`, `ssl=true`).
fn parse_uri(rest: &str, origin: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut p = rest;

    // userinfo: everything before an '@' that comes before any '/' (as libpq scans it).
    if let Some(i) = p.find(['@', '/']) {
        if p.as_bytes()[i] == b'@' {
            let userinfo = &p[..i];
            p = &p[i + 1..];
            let (user, password) = match userinfo.split_once(':') {
                Some((u, pw)) => (u, Some(pw)),
                None => (userinfo, None),
            };
            let user = percent_decode(user, origin)?;
            if !user.is_empty() {
                pairs.push(("user".into(), user));
            }
            if let Some(pw) = password {
                pairs.push(("password".into(), percent_decode(pw, origin)?));
            }
        }
    }

    // hosts and ports
    let mut hosts: Vec<String> = Vec::new();
    let mut ports: Vec<String> = Vec::new();
    loop {
        let (host, after) = if let Some(inner) = p.strip_prefix('[') {
            let end = inner
                .find(']')
                .ok_or_else(|| syntax(origin, "missing \"]\" after an IPv6 host address"))?;
            if end == 0 {
                return Err(syntax(origin, "empty IPv6 host address"));
            }
            let after = &inner[end + 1..];
            if !after.is_empty() && !after.starts_with([':', '/', '?', ',']) {
                return Err(syntax(
                    origin,
                    "unexpected character after an IPv6 host address",
                ));
            }
            (inner[..end].to_string(), after)
        } else {
            let end = p.find([':', '/', '?', ',']).unwrap_or(p.len());
            (percent_decode(&p[..end], origin)?, &p[end..])
        };
        p = after;
        hosts.push(host);
        if let Some(after) = p.strip_prefix(':') {
            let end = after.find(['/', '?', ',']).unwrap_or(after.len());
            ports.push(percent_decode(&after[..end], origin)?);
            p = &after[end..];
        } else {
            ports.push(String::new());
        }
        match p.strip_prefix(',') {
            Some(after) => p = after,
            None => break,
        }
    }
    if hosts.iter().any(|h| !h.is_empty()) {
        pairs.push(("host".into(), hosts.join(",")));
    }
    if ports.iter().any(|p| !p.is_empty()) {
        pairs.push(("port".into(), ports.join(",")));
    }

    // database
    if let Some(after) = p.strip_prefix('/') {
        let end = after.find('?').unwrap_or(after.len());
        let db = percent_decode(&after[..end], origin)?;
        if !db.is_empty() {
            pairs.push(("dbname".into(), db));
        }
        p = &after[end..];
    }

    // query parameters
    if let Some(query) = p.strip_prefix('?') {
        for param in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = param.split_once('=').ok_or_else(|| {
                syntax(
                    origin,
                    format!("missing key/value separator \"=\" in URI query parameter \"{param}\""),
                )
            })?;
            if v.contains('=') {
                return Err(syntax(
                    origin,
                    format!("extra key/value separator \"=\" in URI query parameter \"{k}\""),
                ));
            }
            let k = percent_decode(k, origin)?;
            let v = percent_decode(v, origin)?;
            if k == "ssl" {
                if v == "true" {
                    pairs.push(("sslmode".into(), "require".into()));
                    continue;
                }
                return Err(syntax(
                    origin,
                    format!("invalid value \"{v}\" for URI parameter \"ssl\" (only \"true\")"),
                ));
            }
            pairs.push((k, v));
        }
    } else if !p.is_empty() {
        return Err(syntax(
            origin,
            format!("unexpected \"{p}\" after the host list"),
        ));
    }
    Ok(pairs)
}

/// Strict percent-decoding as libpq does it: `%` must be followed by two hex digits, `%00` is
/// refused; the result must be UTF-8.
fn percent_decode(s: &str, origin: &str) -> Result<String, ConfigError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let value = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    syntax(
                        origin,
                        "invalid percent-encoded token (expected % and two hex digits)",
                    )
                })?;
            if value == 0 {
                return Err(syntax(
                    origin,
                    "forbidden value %00 in percent-encoded value",
                ));
            }
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| syntax(origin, "percent-decoded value is not valid UTF-8"))
}

/// libpq's `conninfo_parse`: `key = value` pairs separated by whitespace; values may be
/// single-quoted; a backslash escapes the next character.
fn parse_keyword_value(s: &str, origin: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(syntax(origin, format!("missing \"=\" after \"{key}\"")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(syntax(origin, "unterminated quoted string")),
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(syntax(origin, "unterminated quoted string")),
                    },
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

// ---------------------------------------------------------------------------------------------
// From options to a ConnConfig.

fn build(
    source: ConfigSource,
    pairs: Vec<(String, String)>,
    env: &Environment,
) -> Result<ConnConfig, ConfigError> {
    let source_name = source.to_string();
    // The string's options (last one wins), then the environment for what it leaves unset.
    let mut given: BTreeMap<&'static str, (String, Origin)> = BTreeMap::new();
    for (k, v) in pairs {
        if let Some(spec) = spec(&k) {
            given.insert(spec.key, (v, Origin::ConnString));
        }
    }
    for spec in OPTIONS {
        if let (false, Some(var)) = (given.contains_key(spec.key), spec.env) {
            if let Some(v) = env.var(var) {
                given.insert(spec.key, (v.to_string(), Origin::Env(var)));
            }
        }
    }
    // libpq treats an empty value as unset.
    given.retain(|_, (v, _)| !v.is_empty());

    let origin_of = |o: Origin| match o {
        Origin::ConnString => source_name.clone(),
        Origin::Env(var) => var.to_string(),
    };
    let get = |key: &str| given.get(key).map(|(v, o)| (v.as_str(), origin_of(*o)));
    let invalid =
        |key: &str, value: &str, origin: String, expected: &str| ConfigError::InvalidValue {
            key: key.into(),
            value: value.into(),
            origin,
            expected: expected.into(),
        };

    for spec in OPTIONS {
        if let (Support::No(why), Some((_, origin))) = (spec.support, get(spec.key)) {
            return Err(ConfigError::Unsupported {
                key: spec.key.into(),
                origin,
                why: why.into(),
            });
        }
    }

    // user, database
    let user = match get("user") {
        Some((u, _)) => u.to_string(),
        None => env.os_user.clone().ok_or_else(|| {
            ConfigError::NoUser(
                env.os_user_error
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
            )
        })?,
    };
    let dbname = get("dbname")
        .map(|(d, _)| d.to_string())
        .unwrap_or_else(|| user.clone());

    // hosts, hostaddrs, ports
    let host_list: Option<Vec<&str>> = get("host").map(|(h, _)| h.split(',').collect());
    let addr_list: Option<(Vec<&str>, String)> =
        get("hostaddr").map(|(a, o)| (a.split(',').collect(), o));
    let n = host_list
        .as_ref()
        .map(Vec::len)
        .or(addr_list.as_ref().map(|(a, _)| a.len()))
        .unwrap_or(1);
    if let (Some(hosts), Some((addrs, origin))) = (&host_list, &addr_list) {
        if hosts.len() != addrs.len() {
            return Err(ConfigError::InvalidValue {
                key: "hostaddr".into(),
                value: addrs.join(","),
                origin: origin.clone(),
                expected: format!("{} addresses, one per host", hosts.len()),
            });
        }
    }
    let ports: Vec<u16> = match get("port") {
        None => vec![DEFAULT_PORT],
        Some((p, origin)) => {
            let list = p
                .split(',')
                .map(|s| {
                    let s = s.trim();
                    if s.is_empty() {
                        Ok(DEFAULT_PORT)
                    } else {
                        s.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                            invalid("port", s, origin.clone(), "a port number (1-65535)")
                        })
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            if list.len() != 1 && list.len() != n {
                return Err(invalid(
                    "port",
                    p,
                    origin,
                    &format!("one port, or {n} (one per host)"),
                ));
            }
            list
        }
    };
    let mut targets = Vec::with_capacity(n);
    for i in 0..n {
        let port = ports
            .get(i)
            .or(ports.first())
            .copied()
            .unwrap_or(DEFAULT_PORT);
        let hostaddr = match &addr_list {
            Some((addrs, origin)) => match addrs.get(i).map(|a| a.trim()).filter(|a| !a.is_empty())
            {
                Some(a) => Some(a.parse::<IpAddr>().map_err(|_| {
                    invalid(
                        "hostaddr",
                        a,
                        origin.clone(),
                        "a numeric IPv4 or IPv6 address",
                    )
                })?),
                None => None,
            },
            None => None,
        };
        let host = match host_list.as_ref().and_then(|h| h.get(i)).map(|h| h.trim()) {
            Some(h) if h.starts_with('/') => Some(HostName::Unix(PathBuf::from(h))),
            Some(h) if !h.is_empty() => Some(HostName::Tcp(h.to_string())),
            _ if hostaddr.is_some() => None,
            _ => Some(default_host(env, port)),
        };
        targets.push(Target {
            host,
            hostaddr,
            port,
            passfile_password: None,
        });
    }

    // password, then .pgpass for each target
    let (password, password_origin) = match given.get("password") {
        Some((p, o)) => (Some(Secret(p.clone())), Some(*o)),
        None => (None, None),
    };
    if password.is_none() {
        let passfile = get("passfile")
            .map(|(p, _)| PathBuf::from(p))
            .or_else(|| env.home.as_ref().map(|h| h.join(".pgpass")));
        if let Some(path) = passfile {
            if let Some(entries) = read_passfile(&path) {
                for t in &mut targets {
                    let host = pgpass_host(t);
                    t.passfile_password = entries
                        .iter()
                        .find(|e| e.matches(&host, t.port, &dbname, &user))
                        .map(|e| Secret(e.password.clone()));
                }
            }
        }
    }

    // TLS
    let mut tls = TlsSettings::default();
    let root_system = get("sslrootcert").is_some_and(|(r, _)| r == "system");
    tls.mode = match get("sslmode") {
        Some((m, origin)) => SslMode::parse(m).ok_or_else(|| {
            invalid(
                "sslmode",
                m,
                origin,
                "disable, allow, prefer, require, verify-ca or verify-full",
            )
        })?,
        None => match get("requiressl") {
            Some(("1", _)) => SslMode::Require,
            Some(("0", _)) | None if root_system => SslMode::VerifyFull,
            Some(("0", _)) | None => SslMode::Prefer,
            Some((v, origin)) => return Err(invalid("requiressl", v, origin, "0 or 1")),
        },
    };
    if root_system && tls.mode != SslMode::VerifyFull {
        let origin = get("sslmode")
            .map(|(_, o)| o)
            .unwrap_or_else(|| source_name.clone());
        return Err(invalid(
            "sslmode",
            tls.mode.as_str(),
            origin,
            "verify-full with sslrootcert=system (weaker modes would ignore the system roots)",
        ));
    }
    tls.root_certs = match get("sslrootcert") {
        Some(("system", _)) => Some(RootCerts::System),
        Some((path, _)) => Some(RootCerts::File(PathBuf::from(path))),
        None => env
            .home
            .as_ref()
            .map(|h| h.join(".postgresql/root.crt"))
            .filter(|p| p.is_file())
            .map(RootCerts::File),
    };
    let cert_mode = match get("sslcertmode") {
        None | Some(("allow", _)) => true,
        Some(("disable", _)) => false,
        Some(("require", origin)) => {
            return Err(ConfigError::Unsupported {
                key: "sslcertmode".into(),
                origin,
                why: "requiring the server to ask for a client certificate is not implemented"
                    .into(),
            })
        }
        Some((v, origin)) => return Err(invalid("sslcertmode", v, origin, "disable or allow")),
    };
    if let Some((pw, origin)) = get("sslpassword") {
        if !pw.is_empty() {
            return Err(ConfigError::Unsupported {
                key: "sslpassword".into(),
                origin,
                why: "encrypted client keys are not supported; decrypt the key file".into(),
            });
        }
    }
    let default_cert = env
        .home
        .as_ref()
        .map(|h| h.join(".postgresql/postgresql.crt"));
    let default_key = env
        .home
        .as_ref()
        .map(|h| h.join(".postgresql/postgresql.key"));
    let cert = get("sslcert")
        .map(|(c, _)| PathBuf::from(c))
        .or_else(|| default_cert.filter(|p| p.is_file()));
    if let (Some(cert), true) = (cert, cert_mode) {
        let key = get("sslkey").map(|(k, _)| PathBuf::from(k)).or(default_key);
        match key {
            Some(key) => tls.client_cert = Some((cert, key)),
            None => {
                return Err(ConfigError::File {
                    what: "client key (sslkey)",
                    path: PathBuf::from("~/.postgresql/postgresql.key"),
                    message: "sslcert is set but no sslkey, and there is no home directory".into(),
                })
            }
        }
    }
    if let Some((v, origin)) = get("sslsni") {
        tls.sni = match v {
            "1" => true,
            "0" => false,
            _ => return Err(invalid("sslsni", v, origin, "0 or 1")),
        };
    }
    let tls_version = |key: &str| -> Result<Option<(TlsVersion, bool)>, ConfigError> {
        // (version, whether the value asked for something older than rustls speaks)
        Ok(match get(key) {
            None => None,
            Some((v, origin)) => Some(match v.to_ascii_lowercase().as_str() {
                "tlsv1" | "tlsv1.1" => (TlsVersion::Tls12, true),
                "tlsv1.2" => (TlsVersion::Tls12, false),
                "tlsv1.3" => (TlsVersion::Tls13, false),
                _ => {
                    return Err(invalid(
                        key,
                        v,
                        origin,
                        "TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3",
                    ))
                }
            }),
        })
    };
    if let Some((v, _)) = tls_version("ssl_min_protocol_version")? {
        tls.min_version = v;
    }
    if let Some((v, older)) = tls_version("ssl_max_protocol_version")? {
        if older {
            let (value, origin) = get("ssl_max_protocol_version").unwrap_or_default();
            return Err(ConfigError::Unsupported {
                key: "ssl_max_protocol_version".into(),
                origin,
                why: format!("{value} is obsolete; rustls speaks TLSv1.2 and TLSv1.3"),
            });
        }
        tls.max_version = v;
    }
    if tls.min_version > tls.max_version {
        let (value, origin) = get("ssl_min_protocol_version").unwrap_or_default();
        return Err(invalid(
            "ssl_min_protocol_version",
            value,
            origin,
            "at most ssl_max_protocol_version",
        ));
    }
    tls.direct = match get("sslnegotiation") {
        None | Some(("postgres", _)) => false,
        Some(("direct", origin)) => {
            if matches!(
                tls.mode,
                SslMode::Disable | SslMode::Allow | SslMode::Prefer
            ) {
                return Err(invalid(
                    "sslmode",
                    tls.mode.as_str(),
                    origin,
                    "require, verify-ca or verify-full with sslnegotiation=direct",
                ));
            }
            true
        }
        Some((v, origin)) => {
            return Err(invalid("sslnegotiation", v, origin, "postgres or direct"))
        }
    };

    // GSSAPI: never used, so "prefer" falls through to the next method as libpq would.
    if let Some((v, origin)) = get("gssencmode") {
        match v {
            "disable" | "prefer" => {}
            "require" => {
                return Err(ConfigError::Unsupported {
                    key: "gssencmode".into(),
                    origin,
                    why: "GSSAPI encryption is not implemented".into(),
                })
            }
            _ => {
                return Err(invalid(
                    "gssencmode",
                    v,
                    origin,
                    "disable, prefer or require",
                ))
            }
        }
    }
    if let Some((v, origin)) = get("client_encoding") {
        let norm = v.to_ascii_lowercase().replace(['-', '_'], "");
        if !matches!(norm.as_str(), "utf8" | "unicode" | "auto") {
            return Err(ConfigError::Unsupported {
                key: "client_encoding".into(),
                origin,
                why: format!("the client always uses UTF8, not {v}"),
            });
        }
    }

    // timeouts and keepalives
    let int = |key: &str| -> Result<Option<i64>, ConfigError> {
        match get(key) {
            None => Ok(None),
            Some((v, origin)) => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| invalid(key, v, origin, "an integer")),
        }
    };
    let secs = |n: i64| Duration::from_secs(n.max(0).unsigned_abs());
    let connect_timeout = match int("connect_timeout")? {
        None => Some(DEFAULT_CONNECT_TIMEOUT),
        Some(n) if n <= 0 => None,
        Some(1) => Some(Duration::from_secs(2)), // libpq's minimum
        Some(n) => Some(secs(n)),
    };
    let keepalives = int("keepalives")?.map(|n| n != 0);
    let keepalives_idle = int("keepalives_idle")?.filter(|n| *n > 0).map(secs);
    let keepalives_interval = int("keepalives_interval")?.filter(|n| *n > 0).map(secs);
    let keepalives_count = match int("keepalives_count")? {
        Some(n) if n > 0 => Some(u32::try_from(n).unwrap_or(u32::MAX)),
        _ => None,
    };
    // libpq's tcp_user_timeout is in milliseconds.
    let tcp_user_timeout = int("tcp_user_timeout")?
        .filter(|n| *n > 0)
        .map(|n| Duration::from_millis(n.unsigned_abs()));

    let target_session_attrs = match get("target_session_attrs") {
        None => None,
        Some((v, origin)) => {
            use tokio_postgres::config::TargetSessionAttrs as T;
            Some(match v {
                "any" => T::Any,
                "read-write" => T::ReadWrite,
                "read-only" => T::ReadOnly,
                "primary" | "standby" | "prefer-standby" => {
                    return Err(ConfigError::Unsupported {
                        key: "target_session_attrs".into(),
                        origin,
                        why: format!(
                            "\"{v}\" is not implemented (any, read-write and read-only are)"
                        ),
                    })
                }
                _ => {
                    return Err(invalid(
                        "target_session_attrs",
                        v,
                        origin,
                        "any, read-write, read-only, primary, standby or prefer-standby",
                    ))
                }
            })
        }
    };
    let channel_binding = match get("channel_binding") {
        None => None,
        Some((v, origin)) => {
            use tokio_postgres::config::ChannelBinding as C;
            Some(match v {
                "disable" => C::Disable,
                "prefer" => C::Prefer,
                "require" => C::Require,
                _ => {
                    return Err(invalid(
                        "channel_binding",
                        v,
                        origin,
                        "disable, prefer or require",
                    ))
                }
            })
        }
    };
    let load_balance_random = match get("load_balance_hosts") {
        None | Some(("disable", _)) => false,
        Some(("random", _)) => true,
        Some((v, origin)) => {
            return Err(invalid(
                "load_balance_hosts",
                v,
                origin,
                "disable or random",
            ))
        }
    };

    let text = |key: &str| get(key).map(|(v, _)| v.to_string());
    let options = text("options");
    let application_name = text("application_name");
    let fallback_application_name = text("fallback_application_name");
    // Secrets live only in `password`, whose Debug hides them.
    given.remove("password");
    given.remove("sslpassword");
    Ok(ConnConfig {
        source,
        targets,
        user,
        dbname,
        password,
        password_origin,
        options,
        application_name,
        fallback_application_name,
        tls,
        connect_timeout,
        keepalives,
        keepalives_idle,
        keepalives_interval,
        keepalives_count,
        tcp_user_timeout,
        target_session_attrs,
        channel_binding,
        load_balance_random,
        role: None,
        given,
    })
}

/// No host given: the first default socket directory holding the server's socket, else localhost.
fn default_host(env: &Environment, port: u16) -> HostName {
    DEFAULT_SOCKET_DIRS
        .iter()
        .map(Path::new)
        .find(|dir| env.socket_exists(dir, port))
        .map(|dir| HostName::Unix(dir.to_path_buf()))
        .unwrap_or_else(|| HostName::Tcp("localhost".into()))
}

// ---------------------------------------------------------------------------------------------
// .pgpass

struct PassEntry {
    host: String,
    port: String,
    database: String,
    user: String,
    password: String,
}

impl PassEntry {
    fn matches(&self, host: &str, port: u16, database: &str, user: &str) -> bool {
        let m = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        m(&self.host, host)
            && m(&self.port, &port.to_string())
            && m(&self.database, database)
            && m(&self.user, user)
    }
}

/// The host name `.pgpass` lines are matched against (libpq: `localhost` for the default socket
/// directory, else the host as given, else hostaddr).
fn pgpass_host(t: &Target) -> String {
    match (&t.host, t.hostaddr) {
        (Some(HostName::Unix(dir)), _)
            if DEFAULT_SOCKET_DIRS.iter().any(|d| Path::new(d) == dir) =>
        {
            "localhost".into()
        }
        (Some(HostName::Unix(dir)), _) => dir.display().to_string(),
        (Some(HostName::Tcp(h)), _) => h.clone(),
        (None, Some(a)) => a.to_string(),
        (None, None) => "localhost".into(),
    }
}

/// The entries of a password file; `None` when it is missing, unreadable or (like libpq, on Unix)
/// readable by group or others.
fn read_passfile(path: &Path) -> Option<Vec<PassEntry>> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file {} has group or world access; permissions should be u=rw (0600) or less; ignoring it",
            path.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    Some(parse_passfile(&text))
}

fn parse_passfile(text: &str) -> Vec<PassEntry> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Fields split on unescaped ':'; '\' escapes ':' and '\'. The password is the rest.
        let mut fields: Vec<String> = Vec::with_capacity(5);
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        fields.push(cur);
        // A line with fewer than five fields is skipped, as libpq does.
        if let Ok([host, port, database, user, password]) = <[String; 5]>::try_from(fields) {
            entries.push(PassEntry {
                host,
                port,
                database,
                user,
                password,
            });
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Environment {
        Environment::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .with_os_user("osuser")
    }

    fn resolve(explicit: Option<&str>, vars: &[(&str, &str)]) -> ConnConfig {
        match ConnConfig::resolve(explicit, &env(vars)) {
            Ok(c) => c,
            Err(e) => panic!("resolve failed: {e}"),
        }
    }

    fn resolve_err(explicit: Option<&str>, vars: &[(&str, &str)]) -> String {
        match ConnConfig::resolve(explicit, &env(vars)) {
            Ok(c) => panic!("expected an error, got {c}"),
            Err(e) => e.to_string(),
        }
    }

    fn tcp(t: &Target) -> (&str, u16) {
        match t.host() {
            Some(HostName::Tcp(h)) => (h.as_str(), t.port()),
            other => panic!("expected a TCP host, got {other:?}"),
        }
    }

    #[test]
    fn defaults_without_anything() {
        let c = resolve(None, &[]);
        assert_eq!(c.source(), ConfigSource::LibpqEnvironment);
        assert_eq!(c.user(), "osuser");
        assert_eq!(c.dbname(), "osuser");
        assert_eq!(c.targets().len(), 1);
        assert_eq!(tcp(&c.targets()[0]), ("localhost", 5432));
        assert_eq!(c.application_name(), "pgbaton");
        assert_eq!(c.ssl_mode(), SslMode::Prefer);
        assert_eq!(c.connect_timeout(), Some(DEFAULT_CONNECT_TIMEOUT));
        assert!(!c.has_password());
        assert_eq!(c.redacted(), "postgresql://osuser@localhost:5432/osuser");
    }

    #[test]
    fn default_host_prefers_an_existing_socket() {
        let e = env(&[("PGPORT", "5999")]).with_socket("/tmp", 5999);
        let c = ConnConfig::resolve(None, &e).unwrap();
        assert_eq!(c.targets()[0].host(), Some(&HostName::Unix("/tmp".into())));
        assert!(c.targets()[0].is_unix_socket());
        // the socket for another port does not count
        let e = env(&[]).with_socket("/tmp", 5999);
        let c = ConnConfig::resolve(None, &e).unwrap();
        assert_eq!(tcp(&c.targets()[0]), ("localhost", 5432));
        // the Debian directory wins over /tmp
        let e = env(&[])
            .with_socket("/tmp", 5432)
            .with_socket("/var/run/postgresql", 5432);
        let c = ConnConfig::resolve(None, &e).unwrap();
        assert_eq!(
            c.targets()[0].host(),
            Some(&HostName::Unix("/var/run/postgresql".into()))
        );
    }

    #[test]
    fn precedence_explicit_then_pgbaton_then_database_url_then_pg_env() {
        let all = [
            ("PGBATON_PG_URL", "postgres://a@pgbaton-host/a"),
            ("DATABASE_URL", "postgres://b@database-url-host/b"),
            ("PGHOST", "pghost"),
            ("PGUSER", "pguser"),
        ];
        let c = resolve(Some("postgres://x@explicit-host/x"), &all);
        assert_eq!(c.source(), ConfigSource::Explicit);
        assert_eq!(tcp(&c.targets()[0]).0, "explicit-host");
        assert_eq!(c.user(), "x");

        let c = resolve(None, &all);
        assert_eq!(c.source(), ConfigSource::PgbatonPgUrl);
        assert_eq!(tcp(&c.targets()[0]).0, "pgbaton-host");

        let c = resolve(None, &all[1..]);
        assert_eq!(c.source(), ConfigSource::DatabaseUrl);
        assert_eq!(
            (tcp(&c.targets()[0]).0, c.user(), c.dbname()),
            ("database-url-host", "b", "b")
        );

        let c = resolve(None, &all[2..]);
        assert_eq!(c.source(), ConfigSource::LibpqEnvironment);
        assert_eq!(
            (tcp(&c.targets()[0]).0, c.user(), c.dbname()),
            ("pghost", "pguser", "pguser")
        );

        // an empty explicit string or variable counts as unset
        let c = resolve(
            Some("  "),
            &[("PGBATON_PG_URL", ""), ("DATABASE_URL", "postgres://h2/d")],
        );
        assert_eq!(c.source(), ConfigSource::DatabaseUrl);
    }

    #[test]
    fn pg_env_fills_what_the_string_leaves_out() {
        let vars = [
            ("PGHOST", "envhost"),
            ("PGPORT", "6000"),
            ("PGUSER", "envuser"),
            ("PGDATABASE", "envdb"),
            ("PGPASSWORD", "envsecret"),
            ("PGSSLMODE", "require"),
            ("PGAPPNAME", "envapp"),
            ("PGOPTIONS", "-c statement_timeout=0"),
        ];
        let c = resolve(Some("postgresql://urluser@urlhost/urldb"), &vars);
        // the URL names no port, so PGPORT applies (libpq stores no port for such a URL)
        assert_eq!(tcp(&c.targets()[0]), ("urlhost", 6000));
        assert_eq!((c.user(), c.dbname()), ("urluser", "urldb"));
        assert!(c.has_password());
        assert_eq!(c.ssl_mode(), SslMode::Require);
        assert_eq!(c.application_name(), "envapp");
        assert_eq!(c.options(), Some("-c statement_timeout=0"));
        // a password from the environment is never written into URLs
        assert!(!c.url().contains("envsecret"));
        assert!(!c.redacted().contains("envsecret"));

        let c = resolve(None, &vars);
        assert_eq!(tcp(&c.targets()[0]), ("envhost", 6000));
        assert_eq!((c.user(), c.dbname()), ("envuser", "envdb"));
        let tc = c.tokio_config(&c.targets()[0]);
        assert_eq!(tc.get_password(), Some(&b"envsecret"[..]));
        assert_eq!(tc.get_application_name(), Some("envapp"));
        assert_eq!(tc.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
    }

    #[test]
    fn uri_forms() {
        let c = resolve(Some("postgres://u:p%40ss@db.example.com:6543/my%20db?sslmode=verify-full&application_name=app"), &[]);
        assert_eq!(tcp(&c.targets()[0]), ("db.example.com", 6543));
        assert_eq!(
            (c.user(), c.dbname(), c.application_name()),
            ("u", "my db", "app")
        );
        assert_eq!(c.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(
            c.tokio_config(&c.targets()[0]).get_password(),
            Some(&b"p@ss"[..])
        );

        // unix socket directory in the query string; no host in the authority
        let c = resolve(
            Some("postgresql://user@/db?host=/var/run/postgresql&port=5433"),
            &[],
        );
        assert_eq!(c.targets().len(), 1);
        assert_eq!(
            c.targets()[0].host(),
            Some(&HostName::Unix("/var/run/postgresql".into()))
        );
        assert_eq!(c.targets()[0].port(), 5433);
        // ... and percent-encoded in the authority
        let c = resolve(Some("postgresql://user@%2Ftmp%2Fsock:5434/db"), &[]);
        assert_eq!(
            c.targets()[0].host(),
            Some(&HostName::Unix("/tmp/sock".into()))
        );
        assert_eq!(c.targets()[0].port(), 5434);

        // multiple hosts, IPv6, per-host ports
        let c = resolve(Some("postgres://h1:5001,[::1]:5002,h3/db"), &[]);
        let got: Vec<String> = c.targets().iter().map(|t| t.to_string()).collect();
        assert_eq!(got, ["h1:5001", "[::1]:5002", "h3:5432"]);

        // options with -c search_path
        let c = resolve(
            Some("postgres://h/db?options=-c%20search_path%3Dmy_schema"),
            &[],
        );
        assert_eq!(c.options(), Some("-c search_path=my_schema"));

        // JDBC-style ssl=true
        assert_eq!(
            resolve(Some("postgres://h/db?ssl=true"), &[]).ssl_mode(),
            SslMode::Require
        );

        // no host at all: PGHOST, then the default
        let c = resolve(Some("postgresql:///db"), &[("PGHOST", "/run/pg")]);
        assert_eq!(
            c.targets()[0].host(),
            Some(&HostName::Unix("/run/pg".into()))
        );
    }

    #[test]
    fn tokio_postgres_parses_the_socket_url_form_too() {
        // The form `pgbaton latest url` prints for sockets must work for tokio-postgres apps.
        let c: tokio_postgres::Config = "postgresql://user@/db?host=/var/run/postgresql&port=5432"
            .parse()
            .unwrap();
        assert_eq!(
            c.get_hosts(),
            [tokio_postgres::config::Host::Unix(
                "/var/run/postgresql".into()
            )]
        );
        assert_eq!(c.get_ports(), [5432]);
        assert_eq!(c.get_dbname(), Some("db"));
    }

    #[test]
    fn keyword_value_forms() {
        let c = resolve(
            Some(
                r"host=h1,h2 port = 7000 user=alice dbname='my db' password='it\'s' options='-c search_path=a\,b' sslmode=disable",
            ),
            &[],
        );
        let got: Vec<String> = c.targets().iter().map(|t| t.to_string()).collect();
        assert_eq!(got, ["h1:7000", "h2:7000"]);
        assert_eq!((c.user(), c.dbname()), ("alice", "my db"));
        assert_eq!(
            c.tokio_config(&c.targets()[0]).get_password(),
            Some(&b"it's"[..])
        );
        assert_eq!(c.options(), Some("-c search_path=a,b"));
        assert_eq!(c.ssl_mode(), SslMode::Disable);

        let c = resolve(Some("host=/tmp port=5433 dbname=x"), &[]);
        assert!(c.targets()[0].is_unix_socket());
        assert_eq!(
            c.tokio_config(&c.targets()[0]).get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );

        assert!(
            resolve_err(Some("host"), &[]).contains("expected a postgres:// or postgresql:// URL")
        );
        assert!(resolve_err(Some("host=x dbname"), &[]).contains("missing \"=\" after \"dbname\""));
        assert!(resolve_err(Some("host='x"), &[]).contains("unterminated"));
    }

    #[test]
    fn hostaddr_and_port_lists_must_match() {
        let c = resolve(Some("host=a,b hostaddr=10.0.0.1,10.0.0.2 port=1,2"), &[]);
        assert_eq!(c.targets()[1].to_string(), "b (10.0.0.2):2");
        let c = resolve(Some("hostaddr=127.0.0.1 port=5620 sslmode=require"), &[]);
        assert_eq!(c.targets()[0].host(), None);
        // tokio-postgres gets the address as host name, so TLS has a name to work with
        let tc = c.tokio_config(&c.targets()[0]);
        assert_eq!(
            tc.get_hosts(),
            [tokio_postgres::config::Host::Tcp("127.0.0.1".into())]
        );
        assert!(resolve_err(Some("host=a,b hostaddr=10.0.0.1"), &[])
            .contains("2 addresses, one per host"));
        assert!(resolve_err(Some("host=a,b,c port=1,2"), &[]).contains("one port, or 3"));
        assert!(resolve_err(Some("host=a port=70000"), &[]).contains("port number"));
        assert!(resolve_err(Some("hostaddr=not-an-ip"), &[]).contains("numeric IPv4 or IPv6"));
    }

    #[test]
    fn every_sslmode() {
        for (mode, want, tokio_mode, verification) in [
            ("disable", SslMode::Disable, "Disable", Verification::None),
            ("allow", SslMode::Allow, "Disable", Verification::None),
            ("prefer", SslMode::Prefer, "Prefer", Verification::None),
            ("require", SslMode::Require, "Require", Verification::None),
            (
                "verify-ca",
                SslMode::VerifyCa,
                "Require",
                Verification::Chain,
            ),
            (
                "verify-full",
                SslMode::VerifyFull,
                "Require",
                Verification::Full,
            ),
        ] {
            let c = resolve(Some(&format!("postgres://h/db?sslmode={mode}")), &[]);
            assert_eq!(c.ssl_mode(), want);
            assert_eq!(c.tls().verification(), verification, "{mode}");
            let tc = c.tokio_config(&c.targets()[0]);
            assert_eq!(format!("{:?}", tc.get_ssl_mode()), tokio_mode, "{mode}");
            // a client configuration can be built for every mode that verifies nothing
            if verification == Verification::None {
                assert!(c.tls().rustls_config().is_ok());
            }
            assert_eq!(
                c.url(),
                format!("postgresql://osuser@h:5432/db?sslmode={mode}")
            );
        }
        assert!(resolve_err(Some("sslmode=verify"), &[]).contains("verify-ca or verify-full"));
        // require with a root certificate behaves like verify-ca (libpq)
        let c = resolve(
            Some("host=h sslmode=require sslrootcert=/nonexistent/root.crt"),
            &[],
        );
        assert_eq!(c.tls().verification(), Verification::Chain);
        let err = match c.tls().rustls_config() {
            Ok(_) => panic!("a missing root certificate file must fail"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("/nonexistent/root.crt"), "{err}");
        // sslrootcert=system implies verify-full and refuses weaker modes
        assert_eq!(
            resolve(Some("host=h sslrootcert=system"), &[]).ssl_mode(),
            SslMode::VerifyFull
        );
        assert!(
            resolve_err(Some("host=h sslrootcert=system sslmode=require"), &[])
                .contains("verify-full")
        );
        assert!(resolve_err(Some("host=h sslnegotiation=direct"), &[])
            .contains("sslnegotiation=direct"));
        let c = resolve(Some("host=h sslnegotiation=direct sslmode=require"), &[]);
        assert!(c.tls().direct);
        assert_eq!(
            c.tls().rustls_config().map(|r| r.alpn_protocols).ok(),
            Some(vec![b"postgresql".to_vec()])
        );
    }

    #[test]
    fn unknown_and_unsupported_options_are_errors() {
        let e = resolve_err(Some("postgres://h/db?sslmdoe=require"), &[]);
        assert!(e.contains("unknown connection option \"sslmdoe\""), "{e}");
        let e = resolve_err(None, &[("PGSERVICE", "prod")]);
        assert!(
            e.contains("\"service\" (from PGSERVICE) is not supported"),
            "{e}"
        );
        let e = resolve_err(Some("host=h requirepeer=postgres"), &[]);
        assert!(e.contains("requirepeer"), "{e}");
        assert!(resolve_err(Some("host=h client_encoding=LATIN1"), &[]).contains("UTF8"));
        // accepted no-ops
        let c = resolve(
            Some("host=h gssencmode=prefer sslcompression=1 client_encoding=UTF8"),
            &[],
        );
        assert_eq!(tcp(&c.targets()[0]).0, "h");
    }

    #[test]
    fn application_name_and_role() {
        let c = resolve(Some("postgres://h/db"), &[]);
        assert_eq!(c.application_name(), DEFAULT_APPLICATION_NAME);
        let c = resolve(Some("postgres://h/db?fallback_application_name=fb"), &[]);
        assert_eq!(c.application_name(), "fb");
        let c = resolve(
            Some("postgres://h/db?fallback_application_name=fb"),
            &[("PGAPPNAME", "env")],
        );
        assert_eq!(c.application_name(), "env");
        let c = resolve(
            Some("postgres://h/db?application_name=mine"),
            &[("PGAPPNAME", "env")],
        );
        assert_eq!(c.application_name(), "mine");
        let c = c.with_role(Some("migrator"));
        assert_eq!(c.role(), Some("migrator"));
        assert_eq!(c.with_role(None::<String>).role(), None);
    }

    #[test]
    fn timeouts_and_keepalives() {
        let c = resolve(
            Some("host=h connect_timeout=1 tcp_user_timeout=1500 keepalives=0 keepalives_count=3"),
            &[],
        );
        assert_eq!(c.connect_timeout(), Some(Duration::from_secs(2)));
        let tc = c.tokio_config(&c.targets()[0]);
        assert_eq!(
            tc.get_tcp_user_timeout(),
            Some(&Duration::from_millis(1500))
        );
        assert!(!tc.get_keepalives());
        assert_eq!(tc.get_keepalives_retries(), Some(3));
        assert_eq!(
            resolve(Some("host=h connect_timeout=0"), &[]).connect_timeout(),
            None
        );
        assert!(resolve_err(Some("host=h connect_timeout=soon"), &[]).contains("an integer"));
    }

    #[test]
    fn redaction() {
        let c = resolve(Some("postgres://alice:s3cret@h:5433/db"), &[]);
        let r = c.redacted();
        assert_eq!(r, "postgresql://alice:********@h:5433/db");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(!c.to_string().contains("s3cret"));
        // the password typed into the string is part of the app's URL
        assert_eq!(c.url(), "postgresql://alice:s3cret@h:5433/db");
    }

    #[test]
    fn url_with_search_path_encodes() {
        let c = resolve(
            Some("postgres://alice:p%2Fw%40d@db.example.com/app?sslmode=require"),
            &[],
        );
        assert_eq!(
            c.url_with_search_path("public_07_widen_ids"),
            "postgresql://alice:p%2Fw%40d@db.example.com:5432/app?sslmode=require&options=-c%20search_path%3Dpublic_07_widen_ids"
        );
        // names that need quoting: double quotes, escaped space for the options parser
        let url = c.url_with_search_path("My Schema");
        assert!(
            url.ends_with("options=-c%20search_path%3D%22My%5C%20Schema%22"),
            "{url}"
        );

        // existing options are kept, an existing search_path is replaced
        let c = resolve(
            Some("postgres://h/db?options=-c%20statement_timeout%3D0%20-c%20search_path%3Dold%20--search-path%3Dold2"),
            &[],
        );
        let url = c.url_with_search_path("new");
        assert!(
            url.ends_with("options=-c%20statement_timeout%3D0%20-c%20search_path%3Dnew"),
            "{url}"
        );

        // socket form, and the URL parses back to the same settings
        let c = resolve(
            Some("postgresql://u@/db?host=/var/run/postgresql&port=5433"),
            &[],
        );
        let url = c.url_with_search_path("s");
        assert_eq!(
            url,
            "postgresql://u@/db?host=/var/run/postgresql&port=5433&options=-c%20search_path%3Ds"
        );
        let back = resolve(Some(&url), &[]);
        assert_eq!(back.targets(), c.targets());
        assert_eq!(back.options(), Some("-c search_path=s"));
        let tc: tokio_postgres::Config = url.parse().unwrap();
        assert_eq!(tc.get_options(), Some("-c search_path=s"));
    }

    #[test]
    fn options_search_path_edge_cases() {
        assert_eq!(options_with_search_path(None, "a"), "-c search_path=a");
        assert_eq!(
            options_with_search_path(Some("-csearch_path=x -c work_mem=1MB"), "a"),
            "-c work_mem=1MB -c search_path=a"
        );
        assert_eq!(
            options_with_search_path(Some(r"-c application_name=a\ b"), "UP"),
            r#"-c application_name=a\ b -c search_path="UP""#
        );
        assert_eq!(
            options_with_search_path(None, "we\"ird"),
            r#"-c search_path="we""ird""#
        );
        assert_eq!(options_with_search_path(None, "a$1"), "-c search_path=a$1");
        assert_eq!(
            options_with_search_path(None, "1a"),
            r#"-c search_path="1a""#
        );
    }

    #[test]
    fn passfile() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("pgbaton-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pgpass");
        std::fs::write(
            &path,
            "# comment\nother:*:*:*:nope\nh:5432:db:alice:first\n*:*:*:bob:pa\\:ss\\\\word\nlocalhost:*:*:carol:sock\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let p = path.display().to_string();
        let pw = |c: &ConnConfig| {
            c.tokio_config(&c.targets()[0])
                .get_password()
                .map(|p| p.to_vec())
        };

        let c = resolve(Some("postgres://alice@h/db"), &[("PGPASSFILE", &p)]);
        assert_eq!(pw(&c), Some(b"first".to_vec()));
        assert!(c.has_password());
        assert!(!c.url().contains("first"));
        let c = resolve(Some(&format!("postgres://bob@x/y?passfile={p}")), &[]);
        assert_eq!(pw(&c), Some(b"pa:ss\\word".to_vec()));
        // an explicit password wins
        let c = resolve(Some("postgres://alice:given@h/db"), &[("PGPASSFILE", &p)]);
        assert_eq!(pw(&c), Some(b"given".to_vec()));
        // the default socket directory matches "localhost"
        let c = resolve(
            Some("host=/var/run/postgresql user=carol"),
            &[("PGPASSFILE", &p)],
        );
        assert_eq!(pw(&c), Some(b"sock".to_vec()));
        // no match
        let c = resolve(Some("postgres://dave@h/db"), &[("PGPASSFILE", &p)]);
        assert_eq!(pw(&c), None);
        // group/world readable: ignored, as libpq does
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = resolve(Some("postgres://alice@h/db"), &[("PGPASSFILE", &p)]);
        assert_eq!(pw(&c), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn uri_syntax_errors() {
        assert!(resolve_err(Some("postgres://h/db?sslmode"), &[])
            .contains("missing key/value separator"));
        assert!(
            resolve_err(Some("postgres://h/db?a=b=c"), &[]).contains("extra key/value separator")
        );
        assert!(resolve_err(Some("postgres://h/d%zzb"), &[]).contains("percent-encoded"));
        assert!(resolve_err(Some("postgres://h/d%00b"), &[]).contains("%00"));
        assert!(resolve_err(Some("postgres://[::1/db"), &[]).contains("\"]\""));
        let e = resolve_err(None, &[("DATABASE_URL", "postgres://h/db?bogus=1")]);
        assert!(e.contains("(from DATABASE_URL)"), "{e}");
    }

    #[test]
    fn no_os_user_is_a_clear_error() {
        let e = Environment::from_vars([("PGHOST", "h")]);
        let err = ConnConfig::resolve(None, &e)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("set PGUSER"), "{err}");
        let c = ConnConfig::resolve(Some("postgres://u@h/db"), &e).unwrap();
        assert_eq!(c.user(), "u");
    }
}
