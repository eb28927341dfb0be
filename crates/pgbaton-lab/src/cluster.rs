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
//!
//! Here: a cluster's lifecycle (initdb, start, replicas, stop). Around it: `binaries` (where the
//! server and client programs are), `user` (the OS user the server runs as), `dirs` (the
//! temporary directories) and `process` (running the programs, tied to this process).

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use pgbaton::config::encode_path_segment;
use pgbaton::ident::quote_ident;

mod binaries;
mod dirs;
mod process;
mod user;

pub use binaries::{
    find_bindir, find_bindir_for_major, installed_servers, Installation, ServerVersion,
    BINDIRS_ENV, BINDIR_ENV, CLIENT_BINDIR_ENV, MAJOR_ENV,
};
pub use dirs::remove_stale_dirs;
pub use process::spawn_tied_child;
pub use user::server_os_user;

use binaries::{client_program, server_version};
use dirs::create_cluster_dir;
use process::{client_command, describe, run, run_tied, shut_down, spawn_tied};
use user::{server_user, ServerUser};

/// The superuser every throwaway cluster is initialised with (trust authentication).
pub const SUPERUSER: &str = "postgres";
const LOG_TAIL_LINES: usize = 60;
const READY_POLL: Duration = Duration::from_millis(50);

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

fn free_port() -> Result<u16, ClusterError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io_err("finding a free TCP port"))?;
    let port = listener
        .local_addr()
        .map_err(io_err("finding a free TCP port"))?
        .port();
    Ok(port)
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
