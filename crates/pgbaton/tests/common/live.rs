//! Helpers of the tests that run a backfill live (`backfill_live.rs`, `production.rs`): the
//! state schema, a small table with its fill spec, a backfill run in a task with its progress on
//! a channel and its rate over a window, the rows it left wrong, pgbaton's sessions, and scraping
//! the metrics endpoint.

use std::time::{Duration, Instant};

use pgbaton::backfill::{self, BackfillOptions, BackfillOutcome, Progress};
use pgbaton::config::ConnConfig;
use pgbaton::ident::{Ident, QualName, RawSql};
use pgbaton::step::{Assignment, BackfillKey, BackfillPass, BackfillSpec};
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::{exec, scalar_i64, TestDb};

pub const MIGRATION: &str = "02_upper";

/// Taken by every test of a file that runs fills and measures their pace: those tests run one
/// at a time. Two fills at once on a 2-core machine slow each other's probes, and the budget
/// then (rightly) slows both; a test measuring the budget must be alone with its application.
/// (Tests of one file share one process; `cargo test` runs the files one after another.)
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ALONE.lock().await
}

pub fn state() -> Ident {
    Ident::new("pgbaton")
}

/// `public.<name>(id bigint PK, name text, u text, _pgbaton_touched boolean)` with `rows` rows,
/// the state schema, and the spec filling `u := upper(name)`.
pub async fn table(c: &Client, name: &str, rows: i64) -> BackfillSpec {
    let mut sql = vec![format!("CREATE SCHEMA IF NOT EXISTS {}", state())];
    sql.extend(backfill::state_ddl(&state()));
    sql.push(format!(
        "CREATE TABLE public.{name} (id bigint PRIMARY KEY, name text, u text, _pgbaton_touched boolean);
         INSERT INTO public.{name} SELECT g, 'name ' || g FROM generate_series(1, {rows}) g;
         ANALYZE public.{name}"
    ));
    exec(c, &sql.join(";\n")).await;
    BackfillSpec {
        table: QualName::new("public", name),
        key: BackfillKey::Columns(vec![Ident::new("id")]),
        scope: vec![
            (Ident::new("id"), Ident::new("id")),
            (Ident::new("name"), Ident::new("name")),
        ],
        assignments: vec![Assignment {
            target: Ident::new("u"),
            expr: RawSql::new("upper(name)"),
        }],
        marker: Ident::new("_pgbaton_touched"),
        window: None,
        pass: BackfillPass::Fill,
    }
}

/// Runs a backfill with a connection config (probe, workers) on its own connection in a task.
pub async fn spawn_run(
    db: &TestDb,
    spec: BackfillSpec,
    opts: BackfillOptions,
) -> (
    tokio::task::JoinHandle<Result<BackfillOutcome, String>>,
    mpsc::UnboundedReceiver<(Instant, Progress)>,
) {
    let client = db.connect().await;
    let conn = ConnConfig::parse(&db.url).expect("the test URL parses");
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = tokio::spawn(async move {
        let mut on_progress = |p: &Progress| {
            let _ = tx.send((Instant::now(), p.clone()));
        };
        backfill::run_connected(
            &client,
            Some(&conn),
            &state(),
            MIGRATION,
            &spec,
            &opts,
            &mut on_progress,
        )
        .await
        .map_err(|e| e.to_string())
    });
    (handle, rx)
}

/// `GET /metrics` from `port` (plain HTTP/1.1 on loopback); the body, or `None` while nothing
/// listens yet.
pub async fn scrape(port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    out.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// The value of the first sample of `name` whose labels contain `labels`.
pub fn sample(body: &str, name: &str, labels: &str) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#') && l.contains(labels))
        .find(|l| l[name.len()..].starts_with(['{', ' ']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// pgbaton's sessions (the CLI's, its probe's and its read-ahead's) on the current database.
pub async fn pgbaton_sessions(c: &Client) -> i64 {
    super::scalar_i64(
        c,
        "SELECT count(*) FROM pg_stat_activity \
         WHERE application_name IN ('pgbaton', 'pgbaton probe', 'pgbaton read-ahead') \
         AND datname = current_database()",
    )
    .await
}

/// Rows per second over a window of progress reports from [`spawn_run`], and the reports.
pub async fn rate_over(
    rx: &mut mpsc::UnboundedReceiver<(Instant, Progress)>,
    window: Duration,
) -> (f64, Vec<Progress>) {
    let (t0, first) = rx.recv().await.expect("progress");
    let mut last = (t0, first.rows_done);
    let mut seen = vec![first];
    while t0.elapsed() < window {
        let Some((t, p)) = rx.recv().await else { break };
        last = (t, p.rows_done);
        seen.push(p);
    }
    let rows = last.1.saturating_sub(seen[0].rows_done);
    (rows as f64 / (last.0 - t0).as_secs_f64().max(1e-3), seen)
}

/// Rows of `public.<table>` (made by [`table`]) whose `u` is not `upper(name)`.
pub async fn unfilled_rows(c: &Client, table: &str) -> i64 {
    scalar_i64(
        c,
        &format!("SELECT count(*) FROM public.{table} WHERE u IS DISTINCT FROM upper(name)"),
    )
    .await
}
