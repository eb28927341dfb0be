//! A real PgBouncer (transaction mode) in front of the test server: applications of the old and
//! the new version write through it while pgbaton (on a direct connection, as it must) runs
//! start (with its backfill) and complete. Clients outnumber the pooler's server connections, so
//! old- and new-version transactions run on the same server sessions one after another; each
//! picks its version per transaction (`SET LOCAL search_path`, and `SET LOCAL pgbaton.version`
//! for the new one). And the misuse the README warns about: a session-level `SET search_path`
//! through a transaction pooler stays on the server connection and reaches another client.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::lifecycle::yaml;
use common::pgbouncer::{host_port, PgBouncer, PoolerOptions};
use pgbaton::executor::{Event, Observer};
use pgbaton::migrator::{Migrator, Settings};
use tokio_postgres::{Client, SimpleQueryMessage};

const SEED_ROWS: i64 = 20_000;

fn accounts() -> pgbaton::format::Migration {
    yaml(
        "01_accounts",
        r#"operations:
  - create_table:
      name: accounts
      columns:
        - {name: id, type: bigserial, pk: true}
        - {name: name, type: text}
        - {name: amount, type: integer}
"#,
    )
}

/// The new version keeps `amount` in cents, as a `bigint`: a column copy with a backfill, `up`
/// for old-version writes (units) and `down` for new-version ones (cents). A write taken for
/// the wrong version ends with a value off by a factor of 100.
fn cents() -> pgbaton::format::Migration {
    yaml(
        "02_cents",
        r#"operations:
  - alter_column:
      table: accounts
      column: amount
      type: bigint
      up: amount::bigint * 100
      down: (amount / 100)::integer
"#,
    )
}

async fn migrator(url: &str) -> Migrator {
    let mut settings = Settings::default();
    // Small, paced batches: the backfill lasts long enough for the writers to run beside it.
    settings.exec.backfill.batch_size = Some(500);
    settings.exec.backfill.batch_delay = Duration::from_millis(10);
    let conn = pgbaton::config::ConnConfig::parse(url).expect("url");
    Migrator::connect(conn, settings)
        .await
        .expect("connect migrator")
}

// Phases of the migration, as the writers see them when a transaction commits.
const BEFORE: u8 = 0;
const START: u8 = 1;
const BACKFILL: u8 = 2;
const BETWEEN: u8 = 3;
const COMPLETE: u8 = 4;
const AFTER: u8 = 5;
const PHASES: [&str; 6] = [
    "before", "start", "backfill", "between", "complete", "after",
];

/// Marks the backfill phase from the executor's events.
struct PhaseObserver(Arc<AtomicU8>);

impl Observer for PhaseObserver {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::Backfill(_) => self.0.store(BACKFILL, Ordering::SeqCst),
            Event::StepFinished { .. } | Event::StepStarted { .. } => {
                let _ =
                    self.0
                        .compare_exchange(BACKFILL, START, Ordering::SeqCst, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

#[derive(Default)]
struct Log {
    /// id → (name, the amount in cents the row must end with).
    expected: BTreeMap<i64, (String, i64)>,
    /// (version, phase) → committed transactions.
    commits: BTreeMap<(&'static str, &'static str), u64>,
    /// Server backend pids that ran each version's transactions.
    backends: BTreeMap<&'static str, BTreeSet<i32>>,
    failures: Vec<String>,
}

/// Runs one transaction as one simple-protocol query (what works through a transaction
/// pooler without prepared statements); returns the rows of its statements.
async fn transaction(client: &Client, body: &str) -> Result<Vec<Vec<String>>, String> {
    let messages = client
        .simple_query(&format!("BEGIN; {body}; COMMIT"))
        .await
        .map_err(|e| common::describe(&e))?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// One application connection through the pooler, writing as `version` until `stop`: inserts,
/// and every third transaction an update of a row it inserted before.
async fn writer(
    url: String,
    version: &'static str,
    n: i64,
    stop: Arc<AtomicBool>,
    phase: Arc<AtomicU8>,
    log: Arc<Mutex<Log>>,
) {
    let client = common::connect(&url).await;
    let mut mine: Vec<i64> = Vec::new();
    let mut k: i64 = 0;
    // Bounded in time even when the test fails before it says stop.
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while !stop.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
        k += 1;
        let amount = n * 1_000_000 + k;
        let name = format!("{version}-{n}-{k}");
        let update = k % 3 == 0 && !mine.is_empty();
        let target = mine.get((k as usize) % mine.len().max(1)).copied();
        let body = match (version, update) {
            ("old", false) => format!(
                "SET LOCAL search_path = public_01_accounts; \
                 INSERT INTO accounts (name, amount) VALUES ('{name}', {amount}) \
                 RETURNING id, pg_backend_pid()"
            ),
            ("old", true) => format!(
                "SET LOCAL search_path = public_01_accounts; \
                 UPDATE accounts SET amount = {amount} WHERE id = {} \
                 RETURNING id, pg_backend_pid()",
                target.unwrap_or(0)
            ),
            (_, false) => format!(
                "SET LOCAL search_path = public_02_cents; SET LOCAL pgbaton.version = '02_cents'; \
                 INSERT INTO accounts (name, amount) VALUES ('{name}', {}) \
                 RETURNING id, pg_backend_pid()",
                amount * 100
            ),
            (_, true) => format!(
                "SET LOCAL search_path = public_02_cents; SET LOCAL pgbaton.version = '02_cents'; \
                 UPDATE accounts SET amount = {} WHERE id = {} \
                 RETURNING id, pg_backend_pid()",
                amount * 100,
                target.unwrap_or(0)
            ),
        };
        let result = transaction(&client, &body).await;
        let at = PHASES[phase.load(Ordering::SeqCst) as usize];
        let mut log = log.lock().unwrap();
        match result {
            Ok(rows) => {
                let [row] = rows.as_slice() else {
                    log.failures
                        .push(format!("{version} writer {n}: `{body}` returned {rows:?}"));
                    continue;
                };
                let id: i64 = row[0].parse().expect("id");
                let pid: i32 = row[1].parse().expect("pid");
                if update {
                    log.expected.get_mut(&id).expect("own row").1 = amount * 100;
                } else {
                    log.expected.insert(id, (name, amount * 100));
                    mine.push(id);
                }
                *log.commits.entry((version, at)).or_default() += 1;
                log.backends.entry(version).or_default().insert(pid);
            }
            Err(e) => log
                .failures
                .push(format!("{version} writer {n} ({at}): `{body}`: {e}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn old_and_new_clients_write_through_pgbouncer_during_start_backfill_and_complete() {
    let db = common::fresh_db().await;
    let (host, port) = host_port(&db.url);
    let bouncer = PgBouncer::start(
        &host,
        port,
        &PoolerOptions {
            pool_size: 2,
            reset_always: false,
        },
    );
    let pooled = bouncer.url(&db.name);

    let (first, second) = (accounts(), cents());
    let phase = Arc::new(AtomicU8::new(BEFORE));
    let m = migrator(&db.url)
        .await
        .with_observer(Arc::new(PhaseObserver(phase.clone())));
    m.init().await.expect("init");
    m.start(&first, true).await.expect("01_accounts");
    common::exec(
        &db.client,
        &format!(
            "INSERT INTO accounts (name, amount) SELECT 'seed-' || g, g FROM generate_series(1, {SEED_ROWS}) g"
        ),
    )
    .await;

    let log = Arc::new(Mutex::new(Log::default()));
    let stop_old = Arc::new(AtomicBool::new(false));
    let stop_new = Arc::new(AtomicBool::new(false));
    let spawn = |version: &'static str, n: i64, stop: &Arc<AtomicBool>| {
        tokio::spawn(writer(
            pooled.clone(),
            version,
            n,
            stop.clone(),
            phase.clone(),
            log.clone(),
        ))
    };
    let old: Vec<_> = (1..=3).map(|n| spawn("old", n, &stop_old)).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    phase.store(START, Ordering::SeqCst);
    m.start(&second, false).await.expect("start 02_cents");
    phase.store(BETWEEN, Ordering::SeqCst);
    // The new release rolls out beside the old one.
    let new: Vec<_> = (1..=3).map(|n| spawn("new", n, &stop_new)).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The old release is gone before complete (complete drops the old version's schema).
    stop_old.store(true, Ordering::SeqCst);
    for w in old {
        w.await.expect("old writer");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    phase.store(COMPLETE, Ordering::SeqCst);
    m.complete().await.expect("complete 02_cents");
    phase.store(AFTER, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_new.store(true, Ordering::SeqCst);
    for w in new {
        w.await.expect("new writer");
    }

    let log = std::mem::take(&mut *log.lock().unwrap());
    eprintln!("commits by (version, phase): {:?}", log.commits);
    eprintln!("server backends by version: {:?}", log.backends);
    assert!(
        log.failures.is_empty(),
        "{} failed transactions through the pooler:\n{}\npgbouncer log:\n{}",
        log.failures.len(),
        log.failures.join("\n"),
        bouncer.log()
    );
    for (version, at) in [
        ("old", "start"),
        ("old", "backfill"),
        ("new", "between"),
        ("new", "complete"),
        ("new", "after"),
    ] {
        assert!(
            log.commits.get(&(version, at)).copied().unwrap_or(0) > 0,
            "no {version}-version commit during {at}: {:?}",
            log.commits
        );
    }
    // The pooler multiplexed both versions over its two server connections.
    let old_pids = &log.backends["old"];
    let new_pids = &log.backends["new"];
    assert!(
        old_pids.len() <= 2 && new_pids.len() <= 2,
        "{:?}",
        log.backends
    );
    assert!(
        old_pids.intersection(new_pids).next().is_some(),
        "old and new versions should have shared a server connection: {:?}",
        log.backends
    );

    // Every committed write is in the final table, with the value its version wrote.
    let rows = db
        .client
        .query(
            "SELECT id, name, amount FROM public.accounts WHERE name NOT LIKE 'seed-%'",
            &[],
        )
        .await
        .expect("final rows");
    let actual: BTreeMap<i64, (String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    assert_eq!(
        actual.len(),
        log.expected.len(),
        "rows written by the clients"
    );
    for (id, want) in &log.expected {
        assert_eq!(actual.get(id), Some(want), "row {id}");
    }
    // And the backfill converted every seeded row.
    assert_eq!(
        common::scalar_i64(
            &db.client,
            "SELECT count(*) FROM public.accounts WHERE name LIKE 'seed-%' \
             AND amount = substr(name, 6)::bigint * 100"
        )
        .await,
        SEED_ROWS
    );
}

/// Two clients through a pooler with one server connection: `a` (the new release) and `b` (the
/// old one, which never sets anything).
async fn two_clients(bouncer: &PgBouncer, db: &str) -> (Client, Client) {
    (
        common::connect(&bouncer.url(db)).await,
        common::connect(&bouncer.url(db)).await,
    )
}

async fn show_search_path(client: &Client) -> String {
    let rows = transaction(client, "SHOW search_path").await.expect("show");
    rows[0][0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_level_search_path_leaks_to_other_clients_through_a_transaction_pooler() {
    let db = common::fresh_db().await;
    let m = migrator(&db.url).await;
    m.init().await.expect("init");
    m.start(&accounts(), true).await.expect("01_accounts");
    m.start(&cents(), false).await.expect("start 02_cents");
    let (host, port) = host_port(&db.url);
    let bouncer = PgBouncer::start(
        &host,
        port,
        &PoolerOptions {
            pool_size: 1,
            reset_always: false,
        },
    );
    let (a, b) = two_clients(&bouncer, &db.name).await;
    let default_path = show_search_path(&b).await;
    assert_eq!(default_path, "\"$user\", public");

    // The right way: SET LOCAL ends with the transaction, so b never sees it.
    transaction(
        &a,
        "SET LOCAL search_path = public_02_cents; SET LOCAL pgbaton.version = '02_cents'",
    )
    .await
    .expect("set local");
    assert_eq!(show_search_path(&b).await, default_path);

    // The misuse: a session-level SET stays on the server connection, which the pooler hands
    // to b next. b, an old-version client that never set anything, now runs as the new
    // version without knowing it: its write of 7 (units) is taken as 7 cents.
    a.batch_execute("SET search_path = public_02_cents")
        .await
        .expect("session-level set");
    assert_eq!(show_search_path(&b).await, "public_02_cents");
    let rows = transaction(
        &b,
        "INSERT INTO accounts (name, amount) VALUES ('b', 7) RETURNING id",
    )
    .await
    .expect("insert");
    let id: i64 = rows[0][0].parse().expect("id");
    // The physical columns while the migration is active: `amount` (the old version's) and
    // its copy `_pgbaton_new_amount` (the new version's).
    let row = db
        .client
        .query_one(
            "SELECT amount, _pgbaton_new_amount FROM public.accounts WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap_or_else(|e| panic!("{}", common::describe(&e)));
    let (old_amount, new_amount): (i32, i64) = (row.get(0), row.get(1));
    // What an old-version write of 7 stores: amount 7, the new version's 700. What it got:
    assert_eq!(
        (old_amount, new_amount),
        (0, 7),
        "the leaked search_path made an old-version write count as a new-version one"
    );
    drop((a, b));

    // The same misuse behind a pooler that resets every server connection after each
    // transaction (`server_reset_query_always = 1`): nothing leaks, and the session-level
    // SET does not even last into the client's own next transaction.
    let resetting = PgBouncer::start(
        &host,
        port,
        &PoolerOptions {
            pool_size: 1,
            reset_always: true,
        },
    );
    let (a, b) = two_clients(&resetting, &db.name).await;
    a.batch_execute("SET search_path = public_02_cents")
        .await
        .expect("session-level set");
    assert_eq!(show_search_path(&b).await, default_path);
    assert_eq!(show_search_path(&a).await, default_path);
}
