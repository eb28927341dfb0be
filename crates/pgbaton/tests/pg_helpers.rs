//! `pgbaton::pg` and `pgbaton::config` against a real server: connecting over TCP and Unix
//! sockets, TLS in every `sslmode`, `SET ROLE`, `search_path` URLs, blockers, autovacuum
//! cancellation and the migration advisory lock.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{exec, fresh_db, server_url, TestDb};
use futures_util::FutureExt;
use pgbaton::config::{ConnConfig, SslMode};
use pgbaton::ident::{quote_ident, quote_literal};
use pgbaton::pg::{self, AutovacuumKind, Blocker, BlockerList, PgError};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

fn cfg(url: &str) -> ConnConfig {
    ConnConfig::parse(url).unwrap_or_else(|e| panic!("parsing {url}: {e}"))
}

async fn connect(cfg: &ConnConfig) -> Client {
    pg::connect(cfg)
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", cfg.redacted()))
}

async fn one<T>(client: &Client, sql: &str) -> T
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    match client.query_one(sql, &[]).await {
        Ok(row) => row.get(0),
        Err(e) => panic!("{sql}: {}", pg::describe(&e)),
    }
}

async fn backend_pid(client: &Client) -> i32 {
    one(client, "SELECT pg_backend_pid()").await
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `limit`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server's Unix socket directory and port, as the server reports them.
async fn socket_of(client: &Client) -> (String, u16) {
    let dirs: String = one(client, "SELECT current_setting('unix_socket_directories')").await;
    let dir = dirs.split(',').map(str::trim).find(|d| d.starts_with('/'));
    let dir = dir
        .unwrap_or_else(|| panic!("the test server has no unix socket ({dirs:?})"))
        .to_string();
    let port: String = one(client, "SELECT current_setting('port')").await;
    (
        dir,
        port.parse().unwrap_or_else(|e| panic!("port {port}: {e}")),
    )
}

#[tokio::test]
async fn connects_over_tcp_with_defaults() {
    let db = fresh_db().await;
    let cfg = cfg(&db.url);
    let client = connect(&cfg).await;
    assert_eq!(
        one::<String>(&client, "SELECT current_database()::text").await,
        db.name
    );
    assert_eq!(
        one::<String>(&client, "SELECT current_setting('application_name')").await,
        "pgbaton"
    );
    assert!(
        one::<bool>(&client, "SELECT inet_server_addr() IS NOT NULL").await,
        "expected TCP"
    );
    let v = pg::server_version_num(&client)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let expected: String = one(&client, "SHOW server_version_num").await;
    assert_eq!(v.to_string(), expected);
    assert!(v >= 140000, "{v}");
}

#[tokio::test]
async fn connects_over_the_unix_socket_in_both_string_forms() {
    let db = fresh_db().await;
    let (dir, port) = socket_of(&db.client).await;
    let url = format!(
        "postgresql://postgres@/{}?host={dir}&port={port}&application_name=via_socket",
        db.name
    );
    let kv = format!("host={dir} port={port} user=postgres dbname={}", db.name);
    for conn in [url, kv] {
        let cfg = cfg(&conn);
        assert!(cfg.targets()[0].is_unix_socket(), "{conn}");
        let client = connect(&cfg).await;
        assert!(
            one::<bool>(&client, "SELECT inet_server_addr() IS NULL").await,
            "expected a socket: {conn}"
        );
        assert_eq!(
            one::<String>(&client, "SELECT current_database()::text").await,
            db.name
        );
    }
    // sslmode=require does not apply to sockets (PostgreSQL offers no TLS there; libpq skips it)
    let client = connect(&cfg(&format!(
        "host={dir} port={port} user=postgres dbname={} sslmode=require",
        db.name
    )))
    .await;
    assert!(one::<bool>(&client, "SELECT inet_server_addr() IS NULL").await);
}

#[tokio::test]
async fn url_with_search_path_selects_the_schema() {
    let db = fresh_db().await;
    exec(
        &db.client,
        "CREATE SCHEMA \"My Schema\"; CREATE SCHEMA plain_v1;",
    )
    .await;
    let base = cfg(&db.url);
    for schema in ["My Schema", "plain_v1"] {
        let url = base.url_with_search_path(schema);
        let client = connect(&cfg(&url)).await;
        assert_eq!(
            one::<String>(&client, "SELECT current_schema()::text").await,
            schema,
            "{url}"
        );
        // tokio-postgres itself (what a Rust application would use) reads the same URL
        let (plain, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        tokio::spawn(conn);
        assert_eq!(
            one::<String>(&plain, "SELECT current_schema()::text").await,
            schema,
            "{url}"
        );
    }
}

#[tokio::test]
async fn set_role_quotes_and_reports_failures() {
    let db = fresh_db().await;
    let role = format!("Weird \"role\" {}", db.name);
    exec(
        &db.client,
        &format!("CREATE ROLE {} NOLOGIN", quote_ident(&role)),
    )
    .await;
    let client = connect(&cfg(&db.url).with_role(Some(role.clone()))).await;
    assert_eq!(
        one::<String>(&client, "SELECT current_user::text").await,
        role
    );
    drop(client);

    let missing = format!("no_such_role_{}", db.name);
    let err = match pg::connect(&cfg(&db.url).with_role(Some(missing.clone()))).await {
        Ok(_) => panic!("SET ROLE to a missing role must fail"),
        Err(e) => e,
    };
    assert!(matches!(err, PgError::SetRole { .. }), "{err:?}");
    assert_eq!(
        err.sqlstate(),
        Some(SqlState::INVALID_PARAMETER_VALUE.code())
    );
    let msg = err.to_string();
    let target = cfg(&db.url).targets()[0].to_string();
    assert!(msg.contains(&missing) && msg.contains(&target), "{msg}");
    exec(&db.client, &format!("DROP ROLE {}", quote_ident(&role))).await;
}

#[tokio::test]
async fn connection_errors_name_the_target_and_keep_the_sqlstate() {
    let db = fresh_db().await;
    // nothing listens on port 1
    let err = match pg::connect(&cfg(
        "postgresql://alice:secret@127.0.0.1:1/somedb?connect_timeout=5",
    ))
    .await
    {
        Ok(_) => panic!("port 1 must refuse"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("database \"somedb\" as user \"alice\" at 127.0.0.1:1"),
        "{err}"
    );
    assert!(err.contains("Connection refused"), "{err}");
    assert!(!err.contains("secret"), "{err}");
    // a database that does not exist: the server's SQLSTATE survives
    let url = server_url(&format!("{}_missing", db.name));
    let err = match pg::connect(&cfg(&url)).await {
        Ok(_) => panic!("a missing database must fail"),
        Err(e) => e,
    };
    assert_eq!(
        err.sqlstate(),
        Some(SqlState::INVALID_CATALOG_NAME.code()),
        "{err}"
    );
    // several hosts: each attempt is listed, and the one that works wins
    let (_, port) = socket_of(&db.client).await;
    let multi = format!(
        "postgresql://postgres@127.0.0.1:1,127.0.0.1:{port}/{}",
        db.name
    );
    let client = connect(&cfg(&multi)).await;
    assert_eq!(
        one::<String>(&client, "SELECT current_database()::text").await,
        db.name
    );
}

#[tokio::test]
async fn error_classification_on_real_errors() {
    let db = fresh_db().await;
    exec(&db.client, "CREATE TABLE t (id int)").await;
    let holder = db.connect().await;
    exec(&holder, "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE;").await;
    let waiter = connect(&cfg(&db.url)).await;
    let e = match waiter
        .batch_execute("BEGIN; SET LOCAL lock_timeout = '50ms'; LOCK TABLE t")
        .await
    {
        Ok(()) => panic!("the lock must time out"),
        Err(e) => e,
    };
    exec(&waiter, "ROLLBACK").await;
    assert!(
        pg::is_lock_timeout(&e) && pg::is_retryable_lock_error(&e),
        "{}",
        pg::describe(&e)
    );
    assert!(!pg::is_deadlock(&e) && !pg::is_query_canceled(&e));
    assert_eq!(
        pg::sqlstate(&e).as_deref(),
        Some(SqlState::LOCK_NOT_AVAILABLE.code())
    );
    assert!(
        pg::describe(&e).starts_with(&format!("ERROR {}: ", SqlState::LOCK_NOT_AVAILABLE.code())),
        "{}",
        pg::describe(&e)
    );
    exec(&holder, "ROLLBACK").await;

    let e = match waiter
        .batch_execute("SET statement_timeout = '10ms'; SELECT pg_sleep(1)")
        .await
    {
        Ok(()) => panic!("the statement must time out"),
        Err(e) => e,
    };
    assert!(pg::is_query_canceled(&e) && !pg::is_retryable_lock_error(&e));
    exec(&waiter, "RESET statement_timeout").await;

    // DETAIL and HINT are part of the description
    let e = match waiter
        .batch_execute("DO $$ BEGIN RAISE EXCEPTION 'boom' USING DETAIL = 'the detail', HINT = 'the hint', ERRCODE = '40001'; END $$")
        .await
    {
        Ok(()) => panic!("RAISE must fail"),
        Err(e) => e,
    };
    assert!(pg::is_serialization_failure(&e));
    let d = pg::describe(&e);
    assert!(
        d.starts_with("ERROR 40001: boom\nDETAIL: the detail\nHINT: the hint\nCONTEXT: "),
        "{d}"
    );
}

async fn blockers_until(
    monitor: &Client,
    pid: i32,
    what: &str,
    ok: impl Fn(&[Blocker]) -> bool,
) -> Vec<Blocker> {
    let ok = &ok;
    wait_for(what, Duration::from_secs(30), move || async move {
        let b = pg::blockers_of(monitor, pid)
            .await
            .unwrap_or_else(|e| panic!("blockers_of: {e}"));
        ok(&b).then_some(b)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blockers_lists_the_lock_holder_and_the_queue() {
    let db = fresh_db().await;
    exec(
        &db.client,
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1);",
    )
    .await;
    let base = cfg(&db.url);
    let a = connect(&base.clone().with_application_name("holder-a")).await;
    let a_pid = backend_pid(&a).await;
    exec(&a, "BEGIN").await;
    exec(&a, "SELECT count(*) FROM t").await; // ACCESS SHARE, then idle in transaction

    let b = connect(&base.clone().with_application_name("ddl-b")).await;
    let b_pid = backend_pid(&b).await;
    let b_task = tokio::spawn(async move {
        b.batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
            .await
            .map(|()| b)
    });
    let monitor = connect(&base).await;
    let blockers = blockers_until(&monitor, b_pid, "B to be blocked", |b| !b.is_empty()).await;
    assert_eq!(blockers.len(), 1, "{}", BlockerList(&blockers));
    let blocker = &blockers[0];
    assert_eq!(blocker.pid, a_pid);
    assert_eq!(blocker.application_name, "holder-a");
    assert_eq!(blocker.usename.as_deref(), Some("postgres"));
    assert_eq!(blocker.state.as_deref(), Some("idle in transaction"));
    assert_eq!(blocker.backend_type.as_deref(), Some("client backend"));
    assert_eq!(blocker.query, "SELECT count(*) FROM t");
    assert!(blocker.xact_age.is_some() && blocker.xact_start.is_some());
    assert!(!blocker.is_autovacuum());
    let line = BlockerList(&blockers).to_string();
    assert!(
        line.starts_with(&format!(
            "  pid {a_pid} (application \"holder-a\", user postgres) idle in transaction for "
        )),
        "{line}"
    );

    // The lock queue: a plain reader C now waits behind B's pending ACCESS EXCLUSIVE request.
    let c = connect(&base.clone().with_application_name("reader-c")).await;
    let c_pid = backend_pid(&c).await;
    let c_task =
        tokio::spawn(async move { c.query_one("SELECT count(*) FROM t", &[]).await.map(|_| ()) });
    let queue = blockers_until(&monitor, c_pid, "C to queue behind B", |b| {
        b.iter().any(|x| x.pid == b_pid)
    })
    .await;
    let via_b = queue
        .iter()
        .find(|x| x.pid == b_pid)
        .map(|x| x.to_string())
        .unwrap_or_default();
    assert!(
        via_b.contains("(application \"ddl-b\"") && via_b.contains("waiting on Lock:relation"),
        "{via_b}"
    );

    // Never cancels a client session.
    let cancelled = pg::cancel_autovacuum_blockers(&monitor, b_pid)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(cancelled.is_empty());
    assert_eq!(one::<i32>(&a, "SELECT 1").await, 1, "A must be untouched");

    exec(&a, "COMMIT").await;
    let b = tokio::time::timeout(Duration::from_secs(10), b_task)
        .await
        .unwrap_or_else(|_| panic!("B still blocked after A committed"))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("B: {}", pg::describe(&e)));
    assert!(pg::blockers_of(&monitor, c_pid)
        .await
        .unwrap_or_default()
        .iter()
        .any(|x| x.pid == b_pid));
    exec(&b, "COMMIT").await;
    tokio::time::timeout(Duration::from_secs(10), c_task)
        .await
        .unwrap_or_else(|_| panic!("C still blocked"))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("C: {}", pg::describe(&e)));
}

#[tokio::test]
async fn migration_lock_holder_is_reported() {
    let db = fresh_db().await;
    let base = cfg(&db.url);
    let a = connect(&base).await;
    let a_pid = backend_pid(&a).await;
    let b = connect(&base.clone().with_application_name("other-migrator")).await;
    let b_pid = backend_pid(&b).await;
    let ok = |r: pgbaton::Result<bool>| r.unwrap_or_else(|e| panic!("{e}"));

    assert!(pg::lock_holder(&b, "public")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .is_none());
    assert!(ok(pg::try_migration_lock(&a, "public").await));
    assert!(!ok(pg::try_migration_lock(&b, "public").await));
    let holder = pg::lock_holder(&b, "public")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let holder = holder.unwrap_or_else(|| panic!("the holder must be found"));
    assert_eq!(holder.pid, a_pid);
    assert_eq!(holder.application_name, "pgbaton");
    assert_eq!(holder.usename.as_deref(), Some("postgres"));
    assert!(!holder.since.is_empty());
    // the key in pg_locks is split as documented
    let key = pg::migration_lock_key("public");
    let (classid, objid): (i64, i64) = {
        let row = b
            .query_one(
                "SELECT classid::int8, objid::int8 FROM pg_locks WHERE locktype = 'advisory' AND pid = $1",
                &[&a_pid],
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (row.get(0), row.get(1))
    };
    assert_eq!(((classid << 32) | objid), key);

    // another schema is another lock
    assert!(ok(pg::try_migration_lock(&b, "other_schema").await));
    assert_eq!(
        pg::lock_holder(&a, "other_schema")
            .await
            .ok()
            .flatten()
            .map(|h| h.pid),
        Some(b_pid)
    );

    // another database is another lock
    let db2 = fresh_db().await;
    let c = connect(&cfg(&db2.url)).await;
    assert!(ok(pg::try_migration_lock(&c, "public").await));
    assert!(ok(pg::unlock_migration_lock(&c, "public").await));

    assert!(ok(pg::unlock_migration_lock(&a, "public").await));
    assert!(!ok(pg::unlock_migration_lock(&a, "public").await));
    assert!(pg::lock_holder(&b, "public")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .is_none());
    assert!(ok(pg::try_migration_lock(&b, "public").await));
    assert_eq!(
        pg::lock_holder(&a, "public")
            .await
            .ok()
            .flatten()
            .map(|h| h.pid),
        Some(b_pid)
    );

    // closing the session releases it
    drop(b);
    let a_ref = &a;
    wait_for(
        "the lock to go with its session",
        Duration::from_secs(10),
        move || async move {
            pg::lock_holder(a_ref, "public")
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(ok(pg::try_migration_lock(&a, "public").await));
}

/// Server-side settings changed by a test and put back afterwards, even when it panics.
async fn with_server_settings<F, Fut>(admin: &Client, set: &str, reset: &str, body: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    exec(admin, set).await;
    exec(admin, "SELECT pg_reload_conf()").await;
    let outcome = std::panic::AssertUnwindSafe(body()).catch_unwind().await;
    exec(admin, reset).await;
    exec(admin, "SELECT pg_reload_conf()").await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_an_ordinary_autovacuum_blocker() {
    let db = fresh_db().await;
    let admin = common::connect(&server_url("postgres")).await;
    // A slow autovacuum on t: about ten pages a second, so it is still running when we look.
    exec(
        &db.client,
        "CREATE TABLE t (id int, pad text) WITH (autovacuum_vacuum_threshold = 0, \
             autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100, \
             autovacuum_vacuum_cost_limit = 1, autovacuum_analyze_threshold = 2000000000); \
         INSERT INTO t SELECT i, repeat('x', 100) FROM generate_series(1, 50000) i; \
         DELETE FROM t WHERE id % 2 = 0;",
    )
    .await;
    let url = db.url.clone();
    with_server_settings(
        &admin,
        "ALTER SYSTEM SET autovacuum_naptime = '1s'",
        "ALTER SYSTEM RESET autovacuum_naptime",
        || async move {
            let monitor = connect(&cfg(&url)).await;
            let m = &monitor;
            let worker: i32 = wait_for(
                "an autovacuum worker on t",
                Duration::from_secs(60),
                move || async move {
                    let row = m
                    .query_opt(
                        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' \
                         AND datname = current_database() AND query LIKE 'autovacuum: VACUUM %t'",
                        &[],
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                    row.map(|r| r.get(0))
                },
            )
            .await;

            let ddl = connect(&cfg(&url).with_application_name("ddl")).await;
            let ddl_pid = backend_pid(&ddl).await;
            // Keep PostgreSQL from cancelling the worker itself (it does so after deadlock_timeout).
            exec(&ddl, "SET deadlock_timeout = '10min'").await;
            let ddl_task = tokio::spawn(async move {
                ddl.batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
                    .await
                    .map(|()| ddl)
            });
            let blockers =
                blockers_until(&monitor, ddl_pid, "the DDL to wait for autovacuum", |b| {
                    !b.is_empty()
                })
                .await;
            let av = blockers
                .iter()
                .find(|b| b.pid == worker)
                .unwrap_or_else(|| {
                    panic!(
                        "worker {worker} not among the blockers:\n{}",
                        BlockerList(&blockers)
                    )
                });
            assert_eq!(av.autovacuum, Some(AutovacuumKind::Regular), "{av}");
            assert!(av.query.starts_with("autovacuum: VACUUM "), "{av}");
            assert!(av.to_string().contains("(autovacuum worker)"), "{av}");

            let cancelled = pg::cancel_autovacuum_blockers(&monitor, ddl_pid)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(cancelled, vec![worker]);
            let ddl = tokio::time::timeout(Duration::from_secs(15), ddl_task)
                .await
                .unwrap_or_else(|_| panic!("the DDL is still blocked after the cancel"))
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|e| panic!("DDL: {}", pg::describe(&e)));
            exec(&ddl, "COMMIT").await;
        },
    )
    .await;
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// Writes `content` to `path` on the server host, as the server's OS user, byte for byte
/// (mode 0644: `lo_export` sets its own umask).
async fn write_server_file(admin: &Client, path: &str, content: &[u8]) {
    let row = admin
        .query_one("SELECT lo_from_bytea(0, $1)", &[&content])
        .await
        .unwrap_or_else(|e| panic!("{}", pg::describe(&e)));
    let oid: u32 = row.get(0);
    exec(
        admin,
        &format!(
            "SELECT lo_export({oid}, {}); SELECT lo_unlink({oid});",
            quote_literal(path)
        ),
    )
    .await;
}

async fn ssl_in_use(client: &Client) -> bool {
    one(
        client,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await
}

async fn tls_case(db: &TestDb, port: u16, host: &str, extra: &str) -> Result<Client, PgError> {
    let conn = format!(
        "host={host} port={port} user=postgres dbname={} connect_timeout=10 {extra}",
        db.name
    );
    pg::connect(&cfg(&conn)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_in_every_sslmode() {
    let db = fresh_db().await;
    let admin = common::connect(&server_url("postgres")).await;
    let data_dir: String = one(&admin, "SELECT current_setting('data_directory')").await;
    let hba_file: String = one(&admin, "SELECT current_setting('hba_file')").await;
    let hba: String = one(&admin, "SELECT pg_read_file(current_setting('hba_file'))").await;
    let cert = format!("{data_dir}/pgbaton_test_server.crt");
    let key = format!("{data_dir}/pgbaton_test_server.key");
    let read = |name: &str| std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    write_server_file(&admin, &cert, &read("server.crt")).await;
    write_server_file(&admin, &key, &read("server.key")).await;
    // lo_export leaves files world-readable, which the server refuses for a key. The data
    // directory is on this machine (the throwaway cluster's always is), so fix the mode here.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod 0600 {key}: {e}"));
    }
    // A role that may only connect with TLS, for sslmode=allow.
    let tls_only = format!("tls_only_{}", db.name);
    exec(&admin, &format!("CREATE ROLE {tls_only} LOGIN")).await;
    let new_hba = format!("hostnossl all {tls_only} all reject\n{hba}");
    write_server_file(&admin, &hba_file, new_hba.as_bytes()).await;

    let (_, port) = socket_of(&db.client).await;
    let ca = fixture("ca.crt").display().to_string();
    let other_ca = fixture("other-ca.crt").display().to_string();
    // ALTER SYSTEM refuses to run in a transaction block, so one statement per call.
    let set = [
        format!("ALTER SYSTEM SET ssl_cert_file = {}", quote_literal(&cert)),
        format!("ALTER SYSTEM SET ssl_key_file = {}", quote_literal(&key)),
        "ALTER SYSTEM SET ssl = on".to_string(),
    ];
    let reset = [
        "ALTER SYSTEM RESET ssl",
        "ALTER SYSTEM RESET ssl_cert_file",
        "ALTER SYSTEM RESET ssl_key_file",
    ];
    let tls_only_ref = tls_only.as_str();
    for sql in &set {
        exec(&admin, sql).await;
    }
    exec(&admin, "SELECT pg_reload_conf()").await;
    let outcome = std::panic::AssertUnwindSafe(async {
        let db = &db;
        wait_for(
            "the server to offer TLS",
            Duration::from_secs(20),
            move || async move {
                tls_case(db, port, "127.0.0.1", "sslmode=require")
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;

        for (mode, tls) in [
            ("disable", false),
            ("allow", false),
            ("prefer", true),
            ("require", true),
        ] {
            let client = tls_case(db, port, "127.0.0.1", &format!("sslmode={mode}"))
                .await
                .unwrap_or_else(|e| panic!("sslmode={mode}: {e}"));
            assert_eq!(ssl_in_use(&client).await, tls, "sslmode={mode}");
        }
        // verify-full: the certificate names localhost only
        let client = tls_case(
            db,
            port,
            "localhost",
            &format!("sslmode=verify-full sslrootcert={ca}"),
        )
        .await
        .unwrap_or_else(|e| panic!("verify-full to localhost: {e}"));
        assert!(ssl_in_use(&client).await);
        let err = tls_case(
            db,
            port,
            "127.0.0.1",
            &format!("sslmode=verify-full sslrootcert={ca}"),
        )
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_else(|| {
            panic!("verify-full to 127.0.0.1 must fail: the certificate names localhost")
        });
        assert!(err.contains("not valid for name"), "{err}");
        // verify-ca: the chain, not the name
        let client = tls_case(
            db,
            port,
            "127.0.0.1",
            &format!("sslmode=verify-ca sslrootcert={ca}"),
        )
        .await
        .unwrap_or_else(|e| panic!("verify-ca to 127.0.0.1: {e}"));
        assert!(ssl_in_use(&client).await);
        for mode in ["verify-ca", "require"] {
            let err = tls_case(
                db,
                port,
                "localhost",
                &format!("sslmode={mode} sslrootcert={other_ca}"),
            )
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("sslmode={mode} against an unrelated CA must fail"));
            assert!(err.contains("invalid peer certificate"), "{mode}: {err}");
        }
        // allow: plain first, TLS when the server refuses plain
        let only = |mode: &str| format!("sslmode={mode} user={tls_only_ref}");
        let err = match tls_case(db, port, "127.0.0.1", &only("disable")).await {
            Ok(_) => panic!("hostnossl reject must refuse a plain connection"),
            Err(e) => e,
        };
        assert_eq!(
            err.sqlstate(),
            Some(SqlState::INVALID_AUTHORIZATION_SPECIFICATION.code()),
            "{err}"
        );
        let client = tls_case(db, port, "127.0.0.1", &only("allow"))
            .await
            .unwrap_or_else(|e| panic!("sslmode=allow for a TLS-only role: {e}"));
        assert!(ssl_in_use(&client).await);
        assert_eq!(
            cfg(&format!("host=h {}", only("allow"))).ssl_mode(),
            SslMode::Allow
        );
    })
    .catch_unwind()
    .await;
    for sql in reset {
        exec(&admin, sql).await;
    }
    write_server_file(&admin, &hba_file, hba.as_bytes()).await;
    exec(&admin, "SELECT pg_reload_conf()").await;
    exec(&admin, &format!("DROP ROLE {tls_only}")).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
