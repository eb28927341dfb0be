//! Tests of the throwaway-server machinery (`pgbaton_lab::cluster`) and of the test harness itself.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgbaton_lab::cluster::{remove_stale_dirs, Cluster, ClusterError, ClusterOptions};

use common::{connect, exec, fresh_db, fresh_db_sync, schema_dump};

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` with `what`.
async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn process_alive(pid: u32) -> bool {
    // A zombie is dead: read the state from /proc rather than trusting kill(pid, 0).
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
                != Some('Z')
        }
        Err(_) => false,
    }
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).is_ok()
}

async fn show(client: &tokio_postgres::Client, setting: &str) -> String {
    client
        .query_one(&format!("SHOW {setting}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_apply_and_drop_removes_everything() {
    let options = ClusterOptions {
        replication: false,
        max_connections: 42,
        shared_buffers: Some("24MB".into()),
        ..ClusterOptions::default()
    }
    .setting("work_mem", "7MB");
    let cluster = Cluster::start(options).unwrap();
    let dir = cluster.socket_dir().to_path_buf();
    let (pid, port) = (cluster.pid(), cluster.port());
    assert!(cluster.is_running());
    assert!(cluster.data_dir().join("PG_VERSION").is_file());
    assert!(cluster.log_path().is_file());
    assert!(cluster.bindir().join("postgres").is_file());
    assert!(
        dir.join(format!(".s.PGSQL.{port}")).exists(),
        "no unix socket in {}",
        dir.display()
    );
    assert_eq!(
        cluster.url("postgres"),
        format!("postgresql://postgres@127.0.0.1:{port}/postgres")
    );
    if unsafe { libc::geteuid() } == 0 {
        let owner = std::fs::metadata(cluster.data_dir()).unwrap().uid();
        assert_ne!(
            owner, 0,
            "the data directory must belong to the unprivileged server user"
        );
    }

    let client = connect(&cluster.url("postgres")).await;
    assert_eq!(show(&client, "max_connections").await, "42");
    assert_eq!(show(&client, "shared_buffers").await, "24MB");
    assert_eq!(show(&client, "work_mem").await, "7MB");
    assert_eq!(show(&client, "fsync").await, "off");
    assert_eq!(show(&client, "wal_level").await, "minimal");
    assert_eq!(show(&client, "autovacuum").await, "on");
    assert_eq!(show(&client, "server_encoding").await, "UTF8");
    assert_eq!(show(&client, "lc_collate").await, "C");
    assert_eq!(show(&client, "listen_addresses").await, "127.0.0.1");
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "postgres");

    // A name that needs quoting in SQL and percent-encoding in the URL.
    cluster.create_database("Odd db/ü").unwrap();
    let odd = connect(&cluster.url("Odd db/ü")).await;
    let name: String = odd
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "Odd db/ü");
    assert_eq!(
        cluster.psql("Odd db/ü", "SELECT 1 + 1, 'x'").unwrap(),
        "2|x"
    );
    let err = cluster
        .psql("postgres", "SELECT no_such_column")
        .unwrap_err();
    assert!(err.to_string().contains("no_such_column"), "{err}");
    drop(odd);

    assert!(matches!(
        cluster.start_replica(),
        Err(ClusterError::ReplicationOff { .. })
    ));

    drop(client);
    drop(cluster);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(!process_alive(pid), "postmaster {pid} still runs");
    assert!(!port_open(port), "port {port} still accepts connections");
}

#[test]
fn stop_is_idempotent_and_a_taken_port_is_reported() {
    let cluster = Cluster::start(ClusterOptions::default()).unwrap();
    // A second server on the same port fails, and the error carries the server log.
    let err = Cluster::start(ClusterOptions {
        port: cluster.port(),
        ..ClusterOptions::default()
    })
    .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ClusterError::Exited { .. }), "{message}");
    assert!(message.contains("could not"), "{message}");

    cluster.stop().unwrap();
    assert!(!cluster.is_running());
    assert!(!port_open(cluster.port()));
    cluster.stop().unwrap();
    assert!(
        cluster.data_dir().exists(),
        "stop keeps the directory; drop removes it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_streams_and_replay_pause_grows_lag() {
    let primary = Cluster::start(ClusterOptions::default()).unwrap();
    let replica = primary.start_replica().unwrap();
    assert!(replica.is_replica() && !primary.is_replica());
    assert_ne!(replica.port(), primary.port());
    assert_ne!(replica.data_dir(), primary.data_dir());

    let p = connect(&primary.url("postgres")).await;
    let r = connect(&replica.url("postgres")).await;
    let in_recovery: bool = r
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery);
    assert_eq!(show(&r, "hot_standby").await, "on");

    exec(
        &p,
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'one')",
    )
    .await;
    let v: String = eventually(Duration::from_secs(30), "row 1 on the replica", || async {
        r.query_opt("SELECT v FROM t WHERE id = 1", &[])
            .await
            .ok()
            .flatten()
            .map(|row| row.get(0))
    })
    .await;
    assert_eq!(v, "one");

    // The primary sees the standby streaming.
    let lag_sql = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8, \
                   extract(epoch FROM replay_lag)::float8 FROM pg_stat_replication";
    let (diff_before, _): (f64, Option<f64>) =
        eventually(Duration::from_secs(30), "the standby", || async {
            let row = p.query_opt(lag_sql, &[]).await.unwrap()?;
            Some((row.get::<_, Option<f64>>(0)?, row.get(1)))
        })
        .await;

    exec(&r, "SELECT pg_wal_replay_pause()").await;
    eventually(Duration::from_secs(30), "replay to pause", || async {
        let state: String = r
            .query_one("SELECT pg_get_wal_replay_pause_state()", &[])
            .await
            .unwrap()
            .get(0);
        (state == "paused").then_some(())
    })
    .await;

    exec(
        &p,
        "INSERT INTO t SELECT g, 'x' FROM generate_series(2, 20000) g",
    )
    .await;
    let (diff, lag) = eventually(
        Duration::from_secs(30),
        "the replay lag to grow",
        || async {
            let row = p.query_opt(lag_sql, &[]).await.unwrap()?;
            let diff: f64 = row.get::<_, Option<f64>>(0)?;
            let lag: f64 = row.get::<_, Option<f64>>(1)?;
            (diff > diff_before + 100_000.0 && lag > 0.0).then_some((diff, lag))
        },
    )
    .await;
    eprintln!("paused: lsn diff {diff_before} -> {diff} bytes, replay_lag {lag} s");
    let count: i64 = r
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1, "a paused standby must not replay");
    // The lag keeps growing while replay stays paused.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later: f64 = eventually(Duration::from_secs(30), "a later lag reading", || async {
        let row = p.query_opt(lag_sql, &[]).await.unwrap()?;
        row.get::<_, Option<f64>>(1).filter(|l| *l > lag)
    })
    .await;
    eprintln!("paused longer: replay_lag {later} s");

    exec(&r, "SELECT pg_wal_replay_resume()").await;
    eventually(
        Duration::from_secs(30),
        "the standby to catch up",
        || async {
            let n: i64 = r
                .query_one("SELECT count(*) FROM t", &[])
                .await
                .unwrap()
                .get(0);
            let row = p.query_opt(lag_sql, &[]).await.unwrap()?;
            let diff: f64 = row.get::<_, Option<f64>>(0)?;
            (n == 20000 && diff == 0.0).then_some(())
        },
    )
    .await;

    let replica_dir = replica.socket_dir().to_path_buf();
    let replica_pid = replica.pid();
    drop(r);
    drop(replica);
    assert!(!replica_dir.exists());
    assert!(!process_alive(replica_pid));
    // The primary is unaffected.
    let n: i64 = p
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 20000);
}

#[tokio::test]
async fn harness_gives_each_test_its_own_database() {
    let (a, b) = tokio::join!(fresh_db(), fresh_db());
    assert_ne!(a.name, b.name);
    let current: String = a
        .client
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, a.name);

    let empty = schema_dump(&a.url, "public");
    exec(
        &a.client,
        "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL)",
    )
    .await;
    let dumped = schema_dump(&a.url, "public");
    assert_ne!(dumped, empty);
    assert!(dumped.contains("CREATE TABLE public.items"), "{dumped}");
    assert!(!dumped
        .lines()
        .any(|l| l.starts_with("--") || l.trim().is_empty() || l.starts_with("\\restrict")));
    assert_eq!(
        schema_dump(&a.url, "public"),
        dumped,
        "dumps of one schema must be identical"
    );
    assert_eq!(
        schema_dump(&b.url, "public"),
        empty,
        "databases are separate"
    );

    exec(
        &b.client,
        "CREATE SCHEMA \"Mixed\"; CREATE TABLE \"Mixed\".t (x int)",
    )
    .await;
    assert!(schema_dump(&b.url, "Mixed").contains("CREATE TABLE \"Mixed\".t"));

    let second = b.connect().await;
    let n: i64 = second
        .query_one("SELECT count(*) FROM \"Mixed\".t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[test]
fn harness_works_without_a_runtime() {
    let db = fresh_db_sync();
    let url = db.url.clone();
    common::block_on_thread(async move {
        let client = connect(&url).await;
        exec(&client, "CREATE TABLE t (x int)").await;
    });
    assert!(schema_dump(&db.url, "public").contains("CREATE TABLE public.t"));
}

const CHILD_ENV: &str = "PGBATON_CLUSTER_TEST_CHILD";

/// Kills (SIGKILL) a process that started a server and checks that the server dies with it and
/// that its directory is swept afterwards. The test binary re-runs itself as that process.
#[test]
fn server_dies_with_its_process() {
    if std::env::var_os(CHILD_ENV).is_some() {
        let cluster = Cluster::start(ClusterOptions::default()).unwrap();
        println!(
            "READY {} {} {}",
            cluster.pid(),
            cluster.port(),
            cluster.socket_dir().display()
        );
        loop {
            std::thread::sleep(Duration::from_secs(60));
        }
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "server_dies_with_its_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        // libtest may print "test <name> ... " on the same line before the test's own output.
        .find_map(|line| line.split_once("READY ").map(|(_, rest)| rest.to_string()));
    let Some(ready) = ready else {
        let status = child.wait().unwrap();
        panic!("the child exited ({status}) without starting a server");
    };
    let mut fields = ready.split(' ');
    let pid: u32 = fields.next().unwrap().parse().unwrap();
    let port: u16 = fields.next().unwrap().parse().unwrap();
    let dir = std::path::PathBuf::from(fields.next().unwrap());
    assert!(
        process_alive(pid) && port_open(port),
        "the child's server is not up"
    );

    child.kill().unwrap(); // SIGKILL: no destructor, no atexit runs
    child.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    while process_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "postmaster {pid} outlived its process"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!port_open(port));
    // Backends exit with the postmaster; the directory stays until a sweep removes it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while dir.exists() {
        remove_stale_dirs();
        assert!(Instant::now() < deadline, "{} was not swept", dir.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}
