//! A throwaway PgBouncer in front of the test server: its own temporary directory, config and
//! loopback port, run as the servers' OS user when root (PgBouncer refuses root too), tied to
//! the test process like the servers, stopped and removed when dropped.

use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pgbaton_lab::cluster::{server_os_user, spawn_tied_child};

/// Environment variable naming the `pgbouncer` binary (else `$PATH`, then `/usr/sbin`).
pub const PGBOUNCER_ENV: &str = "PGBATON_PGBOUNCER";

/// How the pooler is set up.
#[derive(Clone, Debug)]
pub struct PoolerOptions {
    /// Server connections per (database, user): fewer than the clients, so clients share them.
    pub pool_size: u32,
    /// `server_reset_query_always = 1` (`DISCARD ALL` after every transaction, also in
    /// transaction mode).
    pub reset_always: bool,
}

pub struct PgBouncer {
    dir: PathBuf,
    port: u16,
    child: Child,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os(PGBOUNCER_ENV) {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("pgbouncer"))
        .find(|path| {
            fs::metadata(path)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        });
    on_path.unwrap_or_else(|| {
        panic!(
            "no pgbouncer binary: install it (Debian: apt-get install pgbouncer; .ci/run does) \
             or set {PGBOUNCER_ENV}"
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl PgBouncer {
    /// Starts PgBouncer in transaction mode on a free loopback port, forwarding every database
    /// to the server at `host:port` (trust authentication, user `postgres`), and waits until it
    /// accepts connections.
    pub fn start(host: &str, port: u16, options: &PoolerOptions) -> PgBouncer {
        let run_as = server_os_user().unwrap_or_else(|e| panic!("{e}"));
        let dir = std::env::temp_dir().join(format!(
            "pgbaton-pgbouncer-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let listen_port = free_port();
        let config = format!(
            "[databases]\n\
             * = host={host} port={port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {listen_port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {auth}\n\
             pool_mode = transaction\n\
             default_pool_size = {pool}\n\
             min_pool_size = 0\n\
             reserve_pool_size = 0\n\
             max_client_conn = 200\n\
             server_reset_query = DISCARD ALL\n\
             server_reset_query_always = {reset}\n\
             ignore_startup_parameters = extra_float_digits\n\
             admin_users = postgres\n",
            auth = dir.join("userlist.txt").display(),
            pool = options.pool_size,
            reset = u8::from(options.reset_always),
        );
        write_file(&dir.join("pgbouncer.ini"), &config);
        write_file(&dir.join("userlist.txt"), "\"postgres\" \"\"\n");
        let log = fs::File::create(dir.join("pgbouncer.log")).expect("log file");
        if let Some((uid, gid)) = run_as {
            for path in [
                dir.clone(),
                dir.join("pgbouncer.ini"),
                dir.join("userlist.txt"),
                dir.join("pgbouncer.log"),
            ] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
            }
        }
        let mut cmd = Command::new(binary());
        cmd.arg(dir.join("pgbouncer.ini"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .process_group(0);
        if let Some((uid, gid)) = run_as {
            cmd.uid(uid).gid(gid);
        }
        let child = spawn_tied_child(cmd).unwrap_or_else(|e| panic!("starting pgbouncer: {e}"));
        let mut bouncer = PgBouncer {
            dir,
            port: listen_port,
            child,
        };
        bouncer.wait_ready();
        bouncer
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("pgbouncer exited ({status}):\n{}", self.log());
            }
            if std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not listen on port {} within 20 s:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A connection string to database `db` through the pooler.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn write_file(path: &Path, text: &str) {
    let mut file =
        fs::File::create(path).unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    file.write_all(text.as_bytes())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// The host and port of a `postgresql://` URL (the test server's).
pub fn host_port(url: &str) -> (String, u16) {
    let config: tokio_postgres::Config = url.parse().expect("a connection URL");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        other => panic!("the test server must be reachable over TCP for PgBouncer, got {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    (host, port)
}
