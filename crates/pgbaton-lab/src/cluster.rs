//! Throwaway PostgreSQL servers for `pgbaton demo`, the benchmarks and the tests: finds the server
//! binaries, initdb's a fresh cluster in a temporary directory, runs `postgres` as a child process
//! that cannot outlive this one, streams replicas from it, and removes everything when dropped.
//! Synchronous on purpose (`std::process`), so it serves a plain `#[test]` and async code alike.
//!
//! Layout of one cluster's directory (`$TMPDIR/pgbaton-cluster-<pid>-<n>/`): `data/` (the data
//! directory), `server.log` (the server's stderr) and the unix sockets (`.s.PGSQL.<port>`).
//!
//! No server outlives its process: `postgres` is spawned from one dedicated thread that lives as
//! long as the process, with `PR_SET_PDEATHSIG` = `SIGQUIT` (immediate shutdown), so the kernel
//! stops the server when the process ends for any reason, `SIGKILL` included. Directories such a
//! death leaves behind are removed by the next [`Cluster::start`] (see [`remove_stale_dirs`]).

use std::ffi::CString;
use std::fmt::Write as _;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use pgbaton::config::encode_path_segment;
use pgbaton::ident::quote_ident;

/// Environment variable naming the directory of the PostgreSQL server binaries.
pub const BINDIR_ENV: &str = "PGBATON_PG_BINDIR";

/// Environment variable listing more server installations, `:`-separated: each entry is a bin
/// directory (with `postgres` and `initdb`) or a directory of them (`<entry>/<name>/bin`, the
/// layout `.ci/pg-majors.sh` fills). See [`installed_servers`].
pub const BINDIRS_ENV: &str = "PGBATON_PG_BINDIRS";

/// Environment variable choosing the major version (e.g. `17`) [`find_bindir`] picks among the
/// [`installed_servers`] when [`BINDIR_ENV`] is not set.
pub const MAJOR_ENV: &str = "PGBATON_PG_MAJOR";

/// Environment variable naming the directory of the client programs (`psql`, `pg_isready`,
/// `pg_basebackup`, `pg_dump`) for server directories that ship none (the npm packages carry
/// only `postgres`, `initdb` and `pg_ctl`). Unset: `pg_config --bindir`, else the highest
/// `/usr/lib/postgresql/<version>/bin` with `psql`.
pub const CLIENT_BINDIR_ENV: &str = "PGBATON_PG_CLIENT_BINDIR";

/// The superuser every throwaway cluster is initialised with (trust authentication).
pub const SUPERUSER: &str = "postgres";

const DIR_PREFIX: &str = "pgbaton-cluster-";
const DEBIAN_BINDIRS: &str = "/usr/lib/postgresql";
const LOG_TAIL_LINES: usize = 60;
const READY_POLL: Duration = Duration::from_millis(50);
const FAST_SHUTDOWN_GRACE: Duration = Duration::from_secs(60);
const IMMEDIATE_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no PostgreSQL server binaries (postgres, initdb) found; searched: {}. Install the server \
         (Debian: apt-get install postgresql) or set {BINDIR_ENV} to its bin directory",
        .searched.join("; ")
    )]
    BinariesNotFound { searched: Vec<String> },

    #[error("running as root, and neither the `postgres` nor the `nobody` OS user exists to run the server as (PostgreSQL refuses to run as root)")]
    NoServerUser,

    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },

    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },

    #[error("the server in {} exited during startup ({status}); server log (tail):\n{log}", .dir.display())]
    Exited {
        dir: PathBuf,
        status: String,
        log: String,
    },

    #[error("the server in {} did not accept connections on port {port} within {timeout:?}; server log (tail):\n{log}", .dir.display())]
    StartTimeout {
        dir: PathBuf,
        port: u16,
        timeout: Duration,
        log: String,
    },

    #[error("cannot start a replica of the server on port {port}: it runs with replication off (ClusterOptions::replication)")]
    ReplicationOff { port: u16 },

    #[error(
        "no PostgreSQL {major} server binaries found (set by {MAJOR_ENV}); installed: {}. \
         Fetch them (.ci/pg-majors.sh {major}) and list the cache in {BINDIRS_ENV}",
        if .installed.is_empty() { "none".to_string() } else { .installed.join(", ") }
    )]
    MajorNotFound { major: u32, installed: Vec<String> },

    #[error("{MAJOR_ENV}={value:?} is not a major version number (e.g. 17)")]
    BadMajor { value: String },

    #[error(
        "`{} --version` does not run{}: {detail}. The directory and every directory above it \
         must be readable and executable by that user",
        .program.display(),
        if *.as_server_user { " as the server's OS user (the tests run PostgreSQL unprivileged when root)" } else { "" }
    )]
    ServerNotRunnable {
        program: PathBuf,
        as_server_user: bool,
        detail: String,
    },

    #[error("no client program `{program}` in {} nor in a client directory ({}); install the PostgreSQL client (Debian: apt-get install postgresql-client) or set {CLIENT_BINDIR_ENV}", .bindir.display(), .searched)]
    ClientNotFound {
        program: String,
        bindir: PathBuf,
        searched: String,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ClusterError {
    let context = context.into();
    move |source| ClusterError::Io { context, source }
}

/// How to start a [`Cluster`]. `Default` suits tests: a free port, fsync off, replication on.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// TCP port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Directory of `postgres`, `initdb`, `psql`, ...; `None` = [`find_bindir`].
    pub bindir: Option<PathBuf>,
    /// `fsync=off` and `initdb --no-sync`: fast, not crash-safe (fine for a throwaway cluster).
    pub fsync_off: bool,
    /// `wal_level=replica` with `max_wal_senders`, so [`Cluster::start_replica`] works; when false,
    /// `wal_level=minimal` and no WAL senders.
    pub replication: bool,
    /// `max_wal_senders` when `replication` is on.
    pub max_wal_senders: u32,
    pub max_connections: u32,
    /// `shared_buffers` (e.g. `"256MB"`); `None` keeps the server default.
    pub shared_buffers: Option<String>,
    /// Extra `-c name=value` settings, applied last (they override the ones above).
    pub settings: Vec<(String, String)>,
    /// How long to wait for the server to accept connections.
    pub start_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            port: 0,
            bindir: None,
            fsync_off: true,
            replication: true,
            max_wal_senders: 10,
            max_connections: 200,
            shared_buffers: None,
            settings: Vec::new(),
            start_timeout: Duration::from_secs(60),
        }
    }
}

impl ClusterOptions {
    /// Adds an extra `-c name=value` setting.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }
}

/// The OS user the server runs as when this process is root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ServerUser {
    uid: u32,
    gid: u32,
}

/// A running throwaway PostgreSQL server (a primary or a streaming replica). Dropping it stops the
/// server (fast shutdown) and removes its directory.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    bindir: PathBuf,
    version: ServerVersion,
    run_as: Option<ServerUser>,
    options: ClusterOptions,
    /// Port of the primary this replica streams from.
    primary_port: Option<u16>,
    port: u16,
    pid: u32,
    child: Mutex<Option<Child>>,
}

impl Cluster {
    /// Initialises a fresh cluster in a new temporary directory and starts it; returns once it
    /// accepts connections.
    pub fn start(options: ClusterOptions) -> Result<Cluster, ClusterError> {
        let bindir = match &options.bindir {
            Some(dir) => dir.clone(),
            None => find_bindir()?,
        };
        let run_as = server_user()?;
        let version = server_version(&bindir, run_as)?;
        remove_stale_dirs();
        let dir = create_cluster_dir(run_as)?;
        // From here on, an early return drops `cluster`, which removes the directory.
        let mut cluster = Cluster::new(dir, bindir, version, run_as, options, None);
        cluster.initdb()?;
        cluster.launch()?;
        Ok(cluster)
    }

    /// Starts a streaming replica of this cluster: `pg_basebackup -R -X stream` into a new
    /// temporary directory, then a hot standby on another free port with the same options.
    pub fn start_replica(&self) -> Result<Cluster, ClusterError> {
        if !self.options.replication {
            return Err(ClusterError::ReplicationOff { port: self.port });
        }
        let dir = create_cluster_dir(self.run_as)?;
        let mut options = self.options.clone();
        options.port = 0;
        let mut replica = Cluster::new(
            dir,
            self.bindir.clone(),
            self.version.clone(),
            self.run_as,
            options,
            Some(self.port),
        );
        // A client program: the npm server packages have none, so it may come from elsewhere.
        let mut cmd = replica.server_command_at(&self.client_program("pg_basebackup")?);
        cmd.arg("--pgdata")
            .arg(&replica.data_dir)
            .args([
                "--write-recovery-conf",
                "--wal-method=stream",
                "--checkpoint=fast",
            ])
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--username",
                SUPERUSER,
            ])
            .arg("--no-password");
        if replica.options.fsync_off {
            cmd.arg("--no-sync");
        }
        run_tied(cmd)?;
        replica.launch()?;
        Ok(replica)
    }

    fn new(
        dir: PathBuf,
        bindir: PathBuf,
        version: ServerVersion,
        run_as: Option<ServerUser>,
        options: ClusterOptions,
        primary_port: Option<u16>,
    ) -> Cluster {
        Cluster {
            data_dir: dir.join("data"),
            log_path: dir.join("server.log"),
            dir,
            bindir,
            version,
            run_as,
            options,
            primary_port,
            port: 0,
            pid: 0,
            child: Mutex::new(None),
        }
    }

    /// `postgresql://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgresql://{SUPERUSER}@127.0.0.1:{}/{}",
            self.port,
            encode_path_segment(db)
        )
    }

    /// A libpq key/value connection string over the unix socket.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host={} port={} user={SUPERUSER} dbname={}",
            conninfo_value(&self.dir.to_string_lossy()),
            self.port,
            conninfo_value(db)
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the server's unix socket (also the cluster's temporary directory).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory of the server binaries (`postgres`, `initdb`).
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The server's version, from `postgres --version` (e.g. major 17, `"17.10"`).
    pub fn version(&self) -> &ServerVersion {
        &self.version
    }

    /// The path of a client program (`psql`, `pg_dump`, ...) to use with this server: the one
    /// beside the server binaries, else the one in the client directory ([`CLIENT_BINDIR_ENV`]).
    /// A client of an older major may refuse a newer server (`pg_dump`, `pg_basebackup`).
    pub fn client_program(&self, program: &str) -> Result<PathBuf, ClusterError> {
        client_program(&self.bindir, program)
    }

    /// The server's log (its stderr).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        read_tail(&self.log_path, 0, lines)
    }

    /// Process id of the postmaster.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// True for a replica made by [`Cluster::start_replica`].
    pub fn is_replica(&self) -> bool {
        self.primary_port.is_some()
    }

    /// True while the postmaster runs.
    pub fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        matches!(child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Runs `sql` with `psql` (as the superuser, over the unix socket, stopping at the first error)
    /// and returns its output: unaligned, tuples only, `|` between columns, no trailing newline.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, ClusterError> {
        let mut cmd = client_command(&self.client_program("psql")?);
        cmd.args([
            "--no-psqlrc",
            "--no-align",
            "--tuples-only",
            "--quiet",
            "--no-password",
        ])
        .args(["--set", "ON_ERROR_STOP=1", "--dbname"])
        .arg(self.conninfo(db))
        .arg("--command")
        .arg(sql);
        let output = run(cmd)?;
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        while text.ends_with('\n') {
            text.pop();
        }
        Ok(text)
    }

    /// `CREATE DATABASE name`.
    pub fn create_database(&self, name: &str) -> Result<(), ClusterError> {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {}", quote_ident(name)),
        )
        .map(drop)
    }

    /// `DROP DATABASE IF EXISTS name WITH (FORCE)`: terminates the sessions still connected.
    pub fn drop_database(&self, name: &str) -> Result<(), ClusterError> {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
        self.psql("postgres", &sql).map(drop)
    }

    /// Stops the server with a fast shutdown (escalating to immediate, then `SIGKILL`, when it
    /// does not finish in time) and waits for it to exit. Does nothing when it is not running.
    pub fn stop(&self) -> Result<(), ClusterError> {
        let mut guard = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(child) = guard.as_mut() else {
            return Ok(());
        };
        let result = shut_down(child).map_err(io_err(format!(
            "stopping the server in {}",
            self.dir.display()
        )));
        *guard = None;
        result.map(drop)
    }

    /// Stops the server and removes its directory; what `Drop` does, callable through a shared
    /// reference (e.g. on a cluster kept in a `static`, which is never dropped).
    pub fn stop_and_remove(&self) -> Result<(), ClusterError> {
        let stopped = self.stop();
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("removing {}", self.dir.display()))(e)),
        }
        stopped
    }

    fn initdb(&self) -> Result<(), ClusterError> {
        let mut cmd = self.server_command("initdb");
        cmd.arg("--pgdata").arg(&self.data_dir).args([
            "--username",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]);
        if self.options.fsync_off {
            cmd.arg("--no-sync");
        }
        run_tied(cmd).map(drop)
    }

    /// Starts `postgres` on the configured port, or on a free one (retrying when another process
    /// takes the port between the probe and the bind), and waits until it accepts connections.
    fn launch(&mut self) -> Result<(), ClusterError> {
        let attempts = if self.options.port == 0 { 3 } else { 1 };
        let mut attempt = 1;
        loop {
            let port = match self.options.port {
                0 => free_port()?,
                port => port,
            };
            let log_start = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
            self.spawn_server(port)?;
            match self.wait_ready() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let _ = self.stop();
                    let log = read_tail(&self.log_path, log_start, usize::MAX);
                    let port_taken = log.contains("Address already in use");
                    if attempt < attempts && port_taken {
                        tracing::debug!(port, "port taken before the server bound it; retrying");
                        attempt += 1;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    fn spawn_server(&mut self, port: u16) -> Result<(), ClusterError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(io_err(format!("opening {}", self.log_path.display())))?;
        let log2 = log
            .try_clone()
            .map_err(io_err("duplicating the log file handle"))?;
        let mut cmd = self.server_command("postgres");
        cmd.arg("-D")
            .arg(&self.data_dir)
            .arg("-p")
            .arg(port.to_string())
            .arg("-k")
            .arg(&self.dir);
        for (name, value) in self.server_settings(port) {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        cmd.stdout(log2).stderr(log);
        let description = describe(&cmd);
        let child = spawn_tied(cmd).map_err(io_err(format!("starting `{description}`")))?;
        self.port = port;
        self.pid = child.id();
        tracing::debug!(port, pid = self.pid, dir = %self.dir.display(), "started postgres");
        *self.child.get_mut().unwrap_or_else(PoisonError::into_inner) = Some(child);
        Ok(())
    }

    fn server_settings(&self, port: u16) -> Vec<(String, String)> {
        let o = &self.options;
        let mut s: Vec<(String, String)> = vec![
            ("listen_addresses".into(), "127.0.0.1".into()),
            ("max_connections".into(), o.max_connections.to_string()),
            ("cluster_name".into(), format!("pgbaton_{port}")),
            // Standbys report every second, so pg_stat_replication's lag columns stay fresh.
            ("wal_receiver_status_interval".into(), "1s".into()),
        ];
        if o.fsync_off {
            s.push(("fsync".into(), "off".into()));
        }
        if o.replication {
            s.push(("wal_level".into(), "replica".into()));
            s.push(("max_wal_senders".into(), o.max_wal_senders.to_string()));
        } else {
            s.push(("wal_level".into(), "minimal".into()));
            s.push(("max_wal_senders".into(), "0".into()));
        }
        if let Some(sb) = &o.shared_buffers {
            s.push(("shared_buffers".into(), sb.clone()));
        }
        if self.is_replica() {
            s.push(("hot_standby".into(), "on".into()));
        }
        s.extend(o.settings.iter().cloned());
        s
    }

    fn wait_ready(&self) -> Result<(), ClusterError> {
        let timeout = self.options.start_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            let exited = {
                let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
                match child.as_mut().map(Child::try_wait) {
                    Some(Ok(Some(status))) => Some(status.to_string()),
                    Some(Ok(None)) => None,
                    Some(Err(e)) => return Err(io_err("waiting for the server")(e)),
                    None => Some("not running".to_string()),
                }
            };
            if let Some(status) = exited {
                return Err(ClusterError::Exited {
                    dir: self.dir.clone(),
                    status,
                    log: self.log_tail(LOG_TAIL_LINES),
                });
            }
            if self.accepts_connections()? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::StartTimeout {
                    dir: self.dir.clone(),
                    port: self.port,
                    timeout,
                    log: self.log_tail(LOG_TAIL_LINES),
                });
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// `pg_isready` through this server's own unix socket: true once it accepts connections (a
    /// hot standby once it is consistent). Not over TCP, where another server that holds the port
    /// would answer for a server that is about to fail to bind it. The postmaster creates its unix
    /// socket only after binding the TCP address, so a ready socket means the port is ours.
    fn accepts_connections(&self) -> Result<bool, ClusterError> {
        let mut cmd = client_command(&self.client_program("pg_isready")?);
        cmd.arg("--quiet")
            .arg("--host")
            .arg(&self.dir)
            .args(["--port", &self.port.to_string(), "--username", SUPERUSER])
            .args(["--dbname", "postgres", "--timeout", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let status = cmd
            .status()
            .map_err(io_err(format!("running `{}`", describe(&cmd))))?;
        Ok(status.success())
    }

    /// A command for a server-side program (`initdb`, `postgres`, `pg_basebackup`): runs as the
    /// server user when this process is root, in the cluster directory, in its own process group
    /// (a terminal's Ctrl-C reaches the caller, which decides when the server stops).
    fn server_command(&self, program: &str) -> Command {
        self.server_command_at(&self.bindir.join(program))
    }

    fn server_command_at(&self, program: &Path) -> Command {
        let mut cmd = client_command(program);
        cmd.current_dir(&self.dir).process_group(0);
        if let Some(user) = self.run_as {
            cmd.uid(user.uid).gid(user.gid);
        }
        cmd
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_remove() {
            tracing::warn!(dir = %self.dir.display(), "cleaning up a throwaway cluster: {e}");
        }
    }
}

/// Finds the PostgreSQL server binaries: `$PGBATON_PG_BINDIR` (which must hold them when set),
/// else, when `$PGBATON_PG_MAJOR` is set, that major among the [`installed_servers`], else
/// `pg_config --bindir`, else the highest `/usr/lib/postgresql/<version>/bin`.
pub fn find_bindir() -> Result<PathBuf, ClusterError> {
    let mut searched = Vec::new();
    if let Some(dir) = std::env::var_os(BINDIR_ENV) {
        let dir = PathBuf::from(dir);
        if has_server_binaries(&dir) {
            return Ok(dir);
        }
        searched.push(format!(
            "{BINDIR_ENV}={} (no postgres and initdb there)",
            dir.display()
        ));
        return Err(ClusterError::BinariesNotFound { searched });
    }
    if let Some(value) = std::env::var(MAJOR_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        let major = value
            .trim()
            .parse::<u32>()
            .map_err(|_| ClusterError::BadMajor {
                value: value.clone(),
            })?;
        return find_bindir_for_major(major);
    }
    match pg_config_bindir() {
        Ok(dir) if has_server_binaries(&dir) => return Ok(dir),
        Ok(dir) => searched.push(format!(
            "`pg_config --bindir` = {} (no postgres and initdb there)",
            dir.display()
        )),
        Err(why) => searched.push(format!("`pg_config --bindir` ({why})")),
    }
    if let Some(dir) = debian_bindirs()
        .into_iter()
        .rev()
        .find(|dir| has_server_binaries(dir))
    {
        return Ok(dir);
    }
    searched.push(format!(
        "{DEBIAN_BINDIRS}/<version>/bin (none with postgres and initdb)"
    ));
    Err(ClusterError::BinariesNotFound { searched })
}

/// The server binaries of PostgreSQL `major` among the [`installed_servers`].
pub fn find_bindir_for_major(major: u32) -> Result<PathBuf, ClusterError> {
    let installed = installed_servers();
    if let Some(found) = installed.iter().find(|s| s.version.major == major) {
        return Ok(found.bindir.clone());
    }
    Err(ClusterError::MajorNotFound {
        major,
        installed: installed
            .iter()
            .map(|s| format!("{} ({})", s.version.full, s.bindir.display()))
            .collect(),
    })
}

/// A server version as `postgres --version` prints it: `postgres (PostgreSQL) 17.10`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerVersion {
    /// The major version: 14, 15, ... (for 9.6 and older, the first two parts times ten).
    pub major: u32,
    /// The version number as printed, e.g. `"17.10"` or `"18beta1"`.
    pub full: String,
}

impl ServerVersion {
    /// Parses the output of `postgres --version` (or of `SHOW server_version`).
    pub fn parse(text: &str) -> Option<ServerVersion> {
        let full = text
            .split_whitespace()
            .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?
            .to_string();
        let digits = |s: &str| -> Option<u32> {
            let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            s[..end].parse().ok()
        };
        let mut parts = full.split('.');
        let first = digits(parts.next()?)?;
        let major = if first >= 10 {
            first
        } else {
            first * 10 + parts.next().and_then(digits).unwrap_or(0)
        };
        Some(ServerVersion { major, full })
    }
}

impl std::fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgreSQL {}", self.full)
    }
}

/// One installation of the PostgreSQL server binaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    pub version: ServerVersion,
    pub bindir: PathBuf,
}

/// Every installed server, one per major (lowest major first), found in this order, the first
/// of a major winning: `$PGBATON_PG_BINDIR`, the entries of `$PGBATON_PG_BINDIRS`, `pg_config
/// --bindir`, `/usr/lib/postgresql/<version>/bin`. Directories whose `postgres --version` does
/// not run are left out.
pub fn installed_servers() -> Vec<Installation> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os(BINDIR_ENV) {
        candidates.push(PathBuf::from(dir));
    }
    if let Some(list) = std::env::var_os(BINDIRS_ENV) {
        for entry in std::env::split_paths(&list).filter(|e| !e.as_os_str().is_empty()) {
            if has_server_binaries(&entry) {
                candidates.push(entry);
                continue;
            }
            let mut children: Vec<PathBuf> = fs::read_dir(&entry)
                .into_iter()
                .flatten()
                .flatten()
                .map(|child| child.path().join("bin"))
                .collect();
            children.sort();
            candidates.extend(children);
        }
    }
    if let Ok(dir) = pg_config_bindir() {
        candidates.push(dir);
    }
    candidates.extend(debian_bindirs());
    let mut found: Vec<Installation> = Vec::new();
    for bindir in candidates {
        if !has_server_binaries(&bindir) {
            continue;
        }
        let Ok(version) = server_version(&bindir, None) else {
            continue;
        };
        if found.iter().all(|f| f.version.major != version.major) {
            found.push(Installation { version, bindir });
        }
    }
    found.sort_by_key(|f| f.version.major);
    found
}

/// `postgres --version` of `bindir`, run as `run_as` when given (so a directory the server
/// user cannot read fails here, with a message that says so, rather than in `initdb`).
fn server_version(
    bindir: &Path,
    run_as: Option<ServerUser>,
) -> Result<ServerVersion, ClusterError> {
    let program = bindir.join("postgres");
    let mut cmd = client_command(&program);
    cmd.arg("--version");
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid).current_dir("/");
    }
    let not_runnable = |detail: String| ClusterError::ServerNotRunnable {
        program: program.clone(),
        as_server_user: run_as.is_some(),
        detail,
    };
    let output = cmd.output().map_err(|e| not_runnable(e.to_string()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let mut detail = format!("{}", output.status);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !stderr.trim().is_empty() {
            detail.push_str(&format!(", {}", stderr.trim()));
        }
        return Err(not_runnable(detail));
    }
    ServerVersion::parse(&text).ok_or_else(|| not_runnable(format!("unexpected output {text:?}")))
}

/// `pg_config --bindir`, or why not.
fn pg_config_bindir() -> Result<PathBuf, String> {
    match Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {
            Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        }
        Ok(out) => Err(out.status.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// `/usr/lib/postgresql/<version>/bin`, lowest version first.
fn debian_bindirs() -> Vec<PathBuf> {
    let mut versions: Vec<(Vec<u64>, PathBuf)> = fs::read_dir(DEBIAN_BINDIRS)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(|p| p.parse::<u64>().ok())
                .collect::<Option<Vec<_>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// `program` beside the server binaries in `bindir`, else in the [`client_bindir`].
fn client_program(bindir: &Path, program: &str) -> Result<PathBuf, ClusterError> {
    let beside = bindir.join(program);
    if is_executable(&beside) {
        return Ok(beside);
    }
    let (client_dir, searched) = client_bindir();
    match client_dir {
        Some(dir) if is_executable(&dir.join(program)) => Ok(dir.join(program)),
        _ => Err(ClusterError::ClientNotFound {
            program: program.to_string(),
            bindir: bindir.to_path_buf(),
            searched: searched.clone(),
        }),
    }
}

/// The directory of the client programs for server directories without them: `(the directory,
/// where it was looked for)`. Found once per process.
fn client_bindir() -> &'static (Option<PathBuf>, String) {
    static CLIENT_BINDIR: OnceLock<(Option<PathBuf>, String)> = OnceLock::new();
    CLIENT_BINDIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os(CLIENT_BINDIR_ENV) {
            let dir = PathBuf::from(dir);
            let searched = format!("{CLIENT_BINDIR_ENV}={}", dir.display());
            return (Some(dir), searched);
        }
        let has_psql = |dir: &PathBuf| is_executable(&dir.join("psql"));
        let found = pg_config_bindir()
            .ok()
            .filter(has_psql)
            .or_else(|| debian_bindirs().into_iter().rev().find(has_psql));
        let searched = format!(
            "{CLIENT_BINDIR_ENV} unset; `pg_config --bindir`; {DEBIAN_BINDIRS}/<version>/bin"
        );
        (found, searched)
    })
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn has_server_binaries(dir: &Path) -> bool {
    ["postgres", "initdb"]
        .iter()
        .all(|name| is_executable(&dir.join(name)))
}

/// Removes the directories of throwaway clusters whose process is gone (killed before it could
/// clean up) and whose server no longer runs. Only directories owned by this user (or by the
/// server user, when root) are touched. Returns the directories removed.
pub fn remove_stale_dirs() -> Vec<PathBuf> {
    let base = std::env::temp_dir();
    let Ok(entries) = fs::read_dir(&base) else {
        return Vec::new();
    };
    let own_uid = unsafe { libc::geteuid() };
    let server_uid = server_user().ok().flatten().map(|u| u.uid);
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| {
                rest.split('-')
                    .next()
                    .and_then(|pid| pid.parse::<i32>().ok())
            })
        else {
            continue;
        };
        if owner as u32 == std::process::id() || process_alive(owner) {
            continue;
        }
        // symlink_metadata: never follow a link planted in a shared temp directory.
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() || (meta.uid() != own_uid && Some(meta.uid()) != server_uid) {
            continue;
        }
        if server_answers(&path) || postmaster_alive(&path.join("data")) {
            continue;
        }
        match fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::debug!(dir = %path.display(), "removed a stale cluster directory");
                removed.push(path);
            }
            Err(e) => {
                tracing::debug!(dir = %path.display(), "could not remove a stale cluster directory: {e}")
            }
        }
    }
    removed
}

/// True when a server still listens on a unix socket in `dir`.
fn server_answers(dir: &Path) -> bool {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with(".s.PGSQL.")
                && !name.ends_with(".lock")
                && UnixStream::connect(entry.path()).is_ok()
        })
}

fn postmaster_alive(data_dir: &Path) -> bool {
    fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()
        .and_then(|text| {
            text.lines()
                .next()
                .and_then(|l| l.trim().parse::<i32>().ok())
        })
        .is_some_and(process_alive)
}

/// True when `pid` names a live (not zombie) process.
fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    // A zombie (exited, not yet reaped by its new parent) is dead for our purposes.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                != Some('Z')
        }
        Err(_) => true,
    }
}

/// The OS user `(uid, gid)` that throwaway servers run as: `None` when this process is not root
/// (they run as this user), else the `postgres` user, or `nobody`. For companions of the server
/// that refuse root too (PgBouncer).
pub fn server_os_user() -> Result<Option<(u32, u32)>, ClusterError> {
    Ok(server_user()?.map(|u| (u.uid, u.gid)))
}

/// Spawns `cmd` as a child that the kernel stops when this process ends (`SIGQUIT` through
/// `PR_SET_PDEATHSIG`, armed from a thread that lives as long as the process), as the servers
/// are: for helper daemons of a test (PgBouncer) that must not outlive it.
pub fn spawn_tied_child(cmd: Command) -> io::Result<Child> {
    spawn_tied(cmd)
}

/// `None` when not root; else the `postgres` OS user, or `nobody`.
fn server_user() -> Result<Option<ServerUser>, ClusterError> {
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    ["postgres", "nobody"]
        .iter()
        .find_map(|name| lookup_user(name))
        .map(Some)
        .ok_or(ClusterError::NoServerUser)
}

fn lookup_user(name: &str) -> Option<ServerUser> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain old data; getpwnam_r fills it and points its strings into `buf`,
    // which outlives the call; only the numeric ids are read afterwards.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    Some(ServerUser {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    })
}

static DIR_SEQ: AtomicU64 = AtomicU64::new(0);

/// A new, private directory `$TMPDIR/pgbaton-cluster-<pid>-<n>`, owned by the server user.
fn create_cluster_dir(run_as: Option<ServerUser>) -> Result<PathBuf, ClusterError> {
    let base = std::env::temp_dir();
    loop {
        let n = DIR_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!("{DIR_PREFIX}{}-{n}", std::process::id()));
        match DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {
                if let Some(user) = run_as {
                    if let Err(e) = std::os::unix::fs::chown(&path, Some(user.uid), Some(user.gid))
                    {
                        let _ = fs::remove_dir(&path);
                        return Err(io_err(format!(
                            "handing {} to the server user",
                            path.display()
                        ))(e));
                    }
                }
                return Ok(path);
            }
            // Left by an earlier process with the same pid whose directory is still in use.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(format!("creating {}", path.display()))(e)),
        }
    }
}

fn free_port() -> Result<u16, ClusterError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_err("finding a free TCP port"))?;
    let port = listener
        .local_addr()
        .map_err(io_err("finding a free TCP port"))?
        .port();
    Ok(port)
}

/// A command for `program`, with stdin closed and the caller's libpq environment (`PGHOST`,
/// `PGDATA`, `PGOPTIONS`, ...) removed, so only the explicit arguments count.
fn client_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let _ = write!(text, " {}", arg.to_string_lossy());
    }
    text
}

/// Runs a client program to completion; an error carries its output.
fn run(mut cmd: Command) -> Result<Output, ClusterError> {
    let description = describe(&cmd);
    let output = cmd
        .output()
        .map_err(io_err(format!("running `{description}`")))?;
    check(description, output)
}

/// Runs a server-side program to completion as a child tied to this process (see [`spawn_tied`]).
fn run_tied(mut cmd: Command) -> Result<Output, ClusterError> {
    let description = describe(&cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = spawn_tied(cmd).map_err(io_err(format!("running `{description}`")))?;
    let output = child
        .wait_with_output()
        .map_err(io_err(format!("running `{description}`")))?;
    check(description, output)
}

fn check(command: String, output: Output) -> Result<Output, ClusterError> {
    if output.status.success() {
        return Ok(output);
    }
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    Err(ClusterError::Command {
        command,
        status: output.status.to_string(),
        output: text.trim_end().to_string(),
    })
}

struct SpawnRequest {
    command: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

static SPAWNER: Mutex<Option<mpsc::Sender<SpawnRequest>>> = Mutex::new(None);

/// Spawns `cmd` so that the kernel signals it when this process ends: `PR_SET_PDEATHSIG` fires
/// when the *thread* that forked the child exits, so every such child is forked by one thread
/// that lives as long as the process. The signal is `SIGQUIT`, which makes a postmaster shut
/// down immediately and take its backends with it, and kills other programs.
fn spawn_tied(mut cmd: Command) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe syscalls.
    // It runs after std has switched uid/gid, which clears the death signal, so it is set here.
    unsafe {
        cmd.pre_exec(move || {
            #[cfg(target_os = "linux")]
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGQUIT as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the death signal was armed.
            if libc::getppid() != parent {
                return Err(io::Error::other("the parent process exited during spawn"));
            }
            Ok(())
        });
    }
    let (reply, answer) = mpsc::channel();
    {
        let mut spawner = SPAWNER.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = match spawner.as_ref() {
            Some(sender) => sender.clone(),
            None => {
                let (sender, requests) = mpsc::channel::<SpawnRequest>();
                std::thread::Builder::new()
                    .name("pgbaton-cluster-spawner".into())
                    .spawn(move || {
                        // The sender lives in a static, so this loop ends only with the process.
                        for mut request in requests {
                            let _ = request.reply.send(request.command.spawn());
                        }
                    })?;
                *spawner = Some(sender.clone());
                sender
            }
        };
        sender
            .send(SpawnRequest {
                command: cmd,
                reply,
            })
            .map_err(|_| io::Error::other("the cluster spawner thread is gone"))?;
    }
    answer
        .recv()
        .map_err(|_| io::Error::other("the cluster spawner thread is gone"))?
}

/// Fast shutdown (`SIGINT`), then immediate (`SIGQUIT`), then `SIGKILL`, each after a grace period.
fn shut_down(child: &mut Child) -> io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    let pid = child.id() as libc::pid_t;
    for (signal, grace) in [
        (libc::SIGINT, FAST_SHUTDOWN_GRACE),
        (libc::SIGQUIT, IMMEDIATE_SHUTDOWN_GRACE),
    ] {
        // SAFETY: plain syscall; `pid` is our unreaped child, so it cannot have been reused.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        tracing::warn!(
            pid,
            signal,
            "the server did not stop within {grace:?}; escalating"
        );
    }
    child.kill()?;
    child.wait()
}

/// The last `lines` lines of `path` from byte `from` on; empty when unreadable.
fn read_tail(path: &Path, from: u64, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(path) {
        if file.seek(SeekFrom::Start(from)).is_ok() {
            let mut bytes = Vec::new();
            if file.read_to_end(&mut bytes).is_ok() {
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A libpq conninfo value: single-quoted, with `\` and `'` escaped.
fn conninfo_value(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encodes_database_names() {
        assert_eq!(encode_path_segment("app_db-1.x~"), "app_db-1.x~");
        assert_eq!(encode_path_segment("a b/c?é"), "a%20b%2Fc%3F%C3%A9");
    }

    #[test]
    fn conninfo_values_are_quoted() {
        assert_eq!(conninfo_value(r"it's a\b"), r"'it\'s a\\b'");
    }

    #[test]
    fn tail_keeps_last_lines() {
        let dir = std::env::temp_dir().join(format!("pgbaton-tail-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        fs::write(&path, "one\ntwo\nthree\n").unwrap();
        assert_eq!(read_tail(&path, 0, 2), "two\nthree");
        assert_eq!(read_tail(&path, 4, usize::MAX), "two\nthree");
        assert_eq!(read_tail(&dir.join("missing"), 0, 2), "");
        fs::remove_dir_all(&dir).unwrap();
    }
}
