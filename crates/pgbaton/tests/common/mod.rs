//! The integration-test harness (`mod common;` in each test file): one throwaway server per test
//! binary (or the server of `PGBATON_TEST_URL`), a fresh database per test so tests run in
//! parallel, and helpers: `connect`, `exec`, `schema_dump`.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod backfill_fixture;
pub mod catalog;
pub mod cli;
pub mod fixtures;
pub mod lifecycle;
pub mod live;
pub mod pgbouncer;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use pgbaton_lab::cluster::{find_bindir, Cluster, ClusterOptions};
use tokio_postgres::{Client, NoTls};

/// When set, tests use this server (a `postgresql://` URL with superuser rights; its database
/// part is replaced) instead of starting one.
pub const TEST_URL_ENV: &str = "PGBATON_TEST_URL";

enum Server {
    Local(Box<Cluster>),
    External { url: String },
}

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        if let Some(url) = std::env::var(TEST_URL_ENV).ok().filter(|u| !u.is_empty()) {
            return Server::External { url };
        }
        let cluster = Cluster::start(ClusterOptions::default())
            .unwrap_or_else(|e| panic!("starting the test server: {e}"));
        // A static is never dropped: stop the server and remove its directory at exit. (If the
        // process is killed instead, the server dies with it and a later start sweeps the dir.)
        // SAFETY: registers a plain function that only touches the initialised static.
        unsafe { libc::atexit(stop_server_at_exit) };
        Server::Local(Box::new(cluster))
    })
}

extern "C" fn stop_server_at_exit() {
    if let Some(Server::Local(cluster)) = SERVER.get() {
        let _ = cluster.stop_and_remove();
    }
}

/// The throwaway server of this test binary; `None` when tests run against `PGBATON_TEST_URL`.
pub fn cluster() -> Option<&'static Cluster> {
    match server() {
        Server::Local(cluster) => Some(cluster.as_ref()),
        Server::External { .. } => None,
    }
}

/// The test server's URL for database `db` (a plain name: letters, digits, `_`).
pub fn server_url(db: &str) -> String {
    match server() {
        Server::Local(cluster) => cluster.url(db),
        Server::External { url } => with_database(url, db),
    }
}

/// `url` with its database replaced by `db`, keeping any `?parameters`.
fn with_database(url: &str, db: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((main, query)) => (main, Some(query)),
        None => (url, None),
    };
    let authority = main.find("://").map_or(0, |i| i + 3);
    let path = main[authority..]
        .find('/')
        .map_or(main.len(), |i| authority + i);
    let mut out = format!("{}/{db}", &main[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Connects with tokio-postgres (NoTls) and drives the connection on the current runtime.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {}", describe(&e)));
    tokio::spawn(async move {
        // Ends when the client is dropped or the server goes away; tests see errors on the client.
        let _ = connection.await;
    });
    client
}

/// A database of its own for one test: its name, URL and a connected client. Dropping it drops
/// the database in the background.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub client: Client,
    _guard: DropDatabase,
}

impl TestDb {
    /// Another connection to the same database.
    pub async fn connect(&self) -> Client {
        connect(&self.url).await
    }
}

/// A database of its own, without a client (for tests without a runtime).
pub struct SyncDb {
    pub name: String,
    pub url: String,
    _guard: DropDatabase,
}

/// Creates a uniquely named empty database and connects to it.
pub async fn fresh_db() -> TestDb {
    let name = create_database().await;
    let url = server_url(&name);
    let client = connect(&url).await;
    TestDb {
        _guard: DropDatabase(name.clone()),
        name,
        url,
        client,
    }
}

/// [`fresh_db`] for synchronous tests (also callable from inside a runtime).
pub fn fresh_db_sync() -> SyncDb {
    let name = block_on_thread(create_database());
    SyncDb {
        url: server_url(&name),
        _guard: DropDatabase(name.clone()),
        name,
    }
}

static DB_SEQ: AtomicU64 = AtomicU64::new(0);

async fn create_database() -> String {
    let admin = connect(&server_url("postgres")).await;
    loop {
        let name = format!(
            "pgbaton_t{}_{}",
            std::process::id(),
            DB_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        match admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
        {
            Ok(()) => return name,
            // Left over on a shared server by an earlier run with the same pid.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {
                continue
            }
            Err(e) => panic!("CREATE DATABASE {name}: {}", describe(&e)),
        }
    }
}

/// Drops its database when dropped, on a thread of its own (`WITH (FORCE)` ends the sessions
/// still open). Best effort: when the process exits first, the throwaway server goes anyway.
struct DropDatabase(String);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.0);
        let admin_url = server_url("postgres");
        std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok((client, connection)) = tokio_postgres::connect(&admin_url, NoTls).await {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        });
    }
}

/// Runs a future to completion on a new thread with its own runtime, so it works both from plain
/// tests and from inside another runtime.
pub fn block_on_thread<F>(future: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("building a runtime: {e}"))
            .block_on(future)
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Runs `sql` (one or more statements); panics with the server's full message on error.
pub async fn exec(client: &Client, sql: &str) {
    if let Err(e) = client.batch_execute(sql).await {
        panic!("{}\n-- while running:\n{sql}", describe(&e));
    }
}

/// A database error with its detail, hint and position, for panic messages.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let Some(db) = e.as_db_error() else {
        return e.to_string();
    };
    let mut text = format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    for (label, value) in [
        ("detail", db.detail()),
        ("hint", db.hint()),
        ("where", db.where_()),
    ] {
        if let Some(value) = value {
            text.push_str(&format!("\n{label}: {value}"));
        }
    }
    if let Some(position) = db.position() {
        text.push_str(&format!("\nposition: {position:?}"));
    }
    text
}

/// The directory of the server binaries: the test server's, else the one `find_bindir` finds.
pub fn bindir() -> std::path::PathBuf {
    match cluster() {
        Some(cluster) => cluster.bindir().to_path_buf(),
        None => find_bindir().unwrap_or_else(|e| panic!("{e}")),
    }
}

/// The path of a client program (`pg_dump`, `psql`, ...) for the test server: beside its server
/// binaries, else from the client directory (see `pgbaton_lab::cluster::CLIENT_BINDIR_ENV`).
pub fn client_program(name: &str) -> std::path::PathBuf {
    match cluster() {
        Some(cluster) => cluster
            .client_program(name)
            .unwrap_or_else(|e| panic!("{e}")),
        None => bindir().join(name),
    }
}

/// The schema `schema` of the database at `url`, for "schema identical before/after" checks:
/// its [`catalog::snapshot`] on every server, and, when the `pg_dump` at hand can dump this
/// server (its major is not older), also `pg_dump --schema-only --schema=<schema>` without
/// comments, blank lines and `\restrict` keys (which vary between runs). The schema must exist.
pub fn schema_dump(url: &str, schema: &str) -> String {
    let owned_url = url.to_string();
    let owned_schema = schema.to_string();
    let (snapshot, server_major) = block_on_thread(async move {
        let client = connect(&owned_url).await;
        catalog::snapshot(&client, &owned_schema).await
    });
    let pg_dump = client_program("pg_dump");
    let dump_major = Command::new(&pg_dump)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            pgbaton_lab::cluster::ServerVersion::parse(&String::from_utf8_lossy(&out.stdout))
        })
        .map(|v| v.major);
    match dump_major {
        Some(major) if major >= server_major => format!(
            "{}\n==== catalog snapshot ====\n{snapshot}",
            pg_dump_schema(&pg_dump, url, schema)
        ),
        _ => snapshot,
    }
}

/// `pg_dump --schema-only --schema=<schema>` of the database at `url`, without comments, blank
/// lines and `\restrict` keys.
fn pg_dump_schema(pg_dump: &std::path::Path, url: &str, schema: &str) -> String {
    // Double quotes make pg_dump take the name literally (no case folding, no `*`/`?` patterns).
    let pattern = format!("\"{}\"", schema.replace('"', "\"\""));
    let mut cmd = Command::new(pg_dump);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    let output = cmd
        .args(["--schema-only", "--no-password"])
        .arg(format!("--schema={pattern}"))
        .arg(format!("--dbname={url}"))
        .output()
        .unwrap_or_else(|e| panic!("running pg_dump: {e}"));
    assert!(
        output.status.success(),
        "pg_dump of schema {schema} in {url} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| {
            let line = line.trim();
            !(line.is_empty()
                || line.starts_with("--")
                || line.starts_with("\\restrict")
                || line.starts_with("\\unrestrict"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The `pgbaton` binary of this build, pointed at `url` (`PGBATON_PG_URL`), with `args`. Only the
/// `pgbaton-cli` crate's tests have the binary (cargo names it in `CARGO_BIN_EXE_pgbaton`).
pub fn pgbaton_command(url: &str, args: &[&str]) -> Command {
    let Some(bin) = option_env!("CARGO_BIN_EXE_pgbaton") else {
        panic!("the pgbaton binary is only built for the pgbaton-cli crate's tests")
    };
    let mut c = Command::new(bin);
    c.args(args)
        .env("PGBATON_PG_URL", url)
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::null());
    c
}

/// Runs [`pgbaton_command`] to the end: (exit code, stdout and stderr).
pub fn pgbaton_run(url: &str, args: &[&str]) -> (i32, String) {
    let out = pgbaton_command(url, args).output().expect("run pgbaton");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The test server's major version (e.g. 17), for the few checks whose outcome depends on it.
pub async fn server_major() -> u32 {
    let client = connect(&server_url("postgres")).await;
    let num: String = client
        .query_one("SHOW server_version_num", &[])
        .await
        .unwrap_or_else(|e| panic!("{}", describe(&e)))
        .get(0);
    num.parse::<u32>().expect("server_version_num") / 10000
}

/// The single `bigint` value `sql` returns (a count, mostly); panics naming the statement.
pub async fn scalar_i64(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get(0)
}

/// Waits until no `pgbaton` session is left in the current database: the server ends a killed
/// migrator's session within a second (`client_connection_check_interval`). Panics after 15 s.
pub async fn wait_for_killed_pgbaton(client: &Client) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while scalar_i64(
        client,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbaton' \
         AND datname = current_database()",
    )
    .await
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the killed migrator's session lingers"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Asserts that `err` is a database error with SQLSTATE `expected` (by name:
/// `assert_sqlstate(&err, &SqlState::UNIQUE_VIOLATION)`); the panic shows the server's full
/// message.
pub fn assert_sqlstate(err: &tokio_postgres::Error, expected: &tokio_postgres::error::SqlState) {
    assert_eq!(
        err.code(),
        Some(expected),
        "expected SQLSTATE {}, got: {}",
        expected.code(),
        describe(err)
    );
}
