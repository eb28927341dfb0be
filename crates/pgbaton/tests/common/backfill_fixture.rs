//! The backfill tests' fixture (`backfill.rs`, `backfill_ranges.rs`): a table with a dual-write
//! trigger and a version view, the trigger and backfill specs that fill it, runs, checkpoints and
//! the checks of the result.

use std::time::{Duration, Instant};

use pgbaton::backfill::{self, BackfillOptions, BackfillOutcome, Progress};
use pgbaton::ident::{Ident, QualName, RawSql};
use pgbaton::step::{Assignment, BackfillKey, BackfillPass, BackfillSpec};
use pgbaton::triggers::{self, DualWriteRule, TriggerSpec};
use pgbaton::verify::{self, VerifyOptions};
use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::exec;

pub const MIGRATION: &str = "02_upper";
pub const VERSION: &str = "public_02_upper";

pub fn state() -> Ident {
    Ident::new("pgbaton")
}

pub async fn init_state(c: &Client) {
    let mut sql = vec![format!("CREATE SCHEMA IF NOT EXISTS {}", state())];
    sql.extend(backfill::state_ddl(&state()));
    // Twice: the DDL is idempotent.
    sql.extend(backfill::state_ddl(&state()));
    exec(c, &sql.join(";\n")).await;
}

pub fn pairs(p: &[(&str, &str)]) -> Vec<(Ident, Ident)> {
    p.iter()
        .map(|(a, b)| (Ident::new(*a), Ident::new(*b)))
        .collect()
}

/// `t(id bigint PK, name text, email text, created_at timestamptz)` with `rows` rows, and an
/// `add_column`-style new column `u := upper(name)` plus an `alter_column`-style copy
/// `_pgbaton_new_email := upper(email)` (down `lower(email)`), with their dual-write trigger and
/// the new version's view schema.
pub struct Fixture {
    pub trigger: TriggerSpec,
    pub backfill: BackfillSpec,
}

pub fn fixture(table: &str, key: BackfillKey) -> Fixture {
    let t = QualName::new("public", table);
    let old_scope = pairs(&[
        ("id", "id"),
        ("name", "name"),
        ("email", "email"),
        ("created_at", "created_at"),
    ]);
    let new_scope = pairs(&[
        ("id", "id"),
        ("name", "name"),
        ("email", "_pgbaton_new_email"),
        ("created_at", "created_at"),
        ("u", "u"),
    ]);
    Fixture {
        trigger: TriggerSpec {
            table: t.clone(),
            migration: MIGRATION.into(),
            version_schema: Ident::new(VERSION),
            old_scope: old_scope.clone(),
            new_scope,
            rules: vec![
                DualWriteRule {
                    new_column: Ident::new("u"),
                    up: RawSql::new("upper(name)"),
                    old_column: None,
                    down: None,
                },
                DualWriteRule {
                    new_column: Ident::new("_pgbaton_new_email"),
                    up: RawSql::new("upper(email)"),
                    old_column: Some(Ident::new("email")),
                    down: Some(RawSql::new("lower(email)")),
                },
            ],
            down_only: Vec::new(),
            marker: Ident::new("_pgbaton_touched"),
        },
        backfill: BackfillSpec {
            table: t,
            key,
            scope: old_scope,
            assignments: vec![
                Assignment {
                    target: Ident::new("u"),
                    expr: RawSql::new("upper(name)"),
                },
                Assignment {
                    target: Ident::new("_pgbaton_new_email"),
                    expr: RawSql::new("upper(email)"),
                },
            ],
            marker: Ident::new("_pgbaton_touched"),
            window: None,
            pass: BackfillPass::Fill,
        },
    }
}

/// Creates the table (`primary_key` false: no key at all), fills it, installs the trigger.
pub async fn table(c: &Client, name: &str, rows: i64, primary_key: bool) -> Fixture {
    let key = if primary_key {
        BackfillKey::Columns(vec![Ident::new("id")])
    } else {
        BackfillKey::Ctid
    };
    let f = fixture(name, key);
    exec(
        c,
        &format!(
            "CREATE TABLE public.{name} (id bigint {pk}, name text, email text NOT NULL, created_at timestamptz);
             INSERT INTO public.{name}
               SELECT g, 'name ' || g, 'user' || g || '@example.com', '2024-01-01'::timestamptz + g * interval '1 s'
                 FROM generate_series(1, {rows}) g;
             ALTER TABLE public.{name} ADD COLUMN u text, ADD COLUMN _pgbaton_new_email text;",
            pk = if primary_key { "PRIMARY KEY" } else { "" },
        ),
    )
    .await;
    let install = triggers::install_step(&f.trigger, false)
        .statements()
        .join(";\n");
    exec(c, &format!("BEGIN;\n{install};\nCOMMIT")).await;
    exec(
        c,
        &format!(
            "CREATE SCHEMA IF NOT EXISTS {VERSION};
             CREATE VIEW {VERSION}.{name} AS
               SELECT id, name, _pgbaton_new_email AS email, created_at, u FROM public.{name};"
        ),
    )
    .await;
    f
}

pub async fn count(c: &Client, sql: &str) -> i64 {
    super::scalar_i64(c, sql).await
}

/// Rows whose new columns are not what `up` gives.
pub async fn wrong_rows(c: &Client, table: &str) -> i64 {
    count(
        c,
        &format!(
            "SELECT count(*) FROM public.{table}
              WHERE u IS DISTINCT FROM upper(name) OR _pgbaton_new_email IS DISTINCT FROM upper(email)"
        ),
    )
    .await
}

pub async fn run(
    c: &Client,
    spec: &BackfillSpec,
    opts: &BackfillOptions,
) -> (
    Result<BackfillOutcome, backfill::BackfillError>,
    Vec<Progress>,
) {
    let mut seen = Vec::new();
    let mut on_progress = |p: &Progress| seen.push(p.clone());
    let result = backfill::run(c, &state(), MIGRATION, spec, opts, &mut on_progress).await;
    (result, seen)
}

/// Runs a backfill on its own connection in a task; progress goes to the channel.
pub fn spawn_run(
    client: Client,
    spec: BackfillSpec,
    opts: BackfillOptions,
) -> (
    tokio::task::JoinHandle<Result<BackfillOutcome, String>>,
    mpsc::UnboundedReceiver<Progress>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = tokio::spawn(async move {
        let mut on_progress = |p: &Progress| {
            let _ = tx.send(p.clone());
        };
        backfill::run(&client, &state(), MIGRATION, &spec, &opts, &mut on_progress)
            .await
            .map_err(|e| e.to_string())
    });
    (handle, rx)
}

/// Runs the backfill of `spec` on `client` in a task and aborts the task (its connection goes
/// with it) once a progress report says at least `rows` rows are done.
pub async fn run_and_abort_after(
    client: Client,
    spec: &BackfillSpec,
    opts: BackfillOptions,
    rows: u64,
) {
    let (handle, mut rx) = spawn_run(client, spec.clone(), opts);
    while let Some(p) = rx.recv().await {
        if p.rows_done >= rows {
            break;
        }
    }
    handle.abort();
    assert!(handle.await.is_err(), "aborted");
}

pub struct Checkpoint {
    pub status: String,
    pub rows_done: i64,
    pub rows_updated: i64,
    pub paused_seconds: f64,
    pub error: Option<String>,
}

pub async fn checkpoint(c: &Client, table: &str) -> Checkpoint {
    let r = c
        .query_one(
            "SELECT status, rows_done, rows_updated, paused_seconds, error FROM pgbaton.backfills
              WHERE migration = $1 AND table_schema = 'public' AND table_name = $2",
            &[&MIGRATION, &table],
        )
        .await
        .unwrap_or_else(|e| panic!("checkpoint: {}", super::describe(&e)));
    Checkpoint {
        status: r.get(0),
        rows_done: r.get(1),
        rows_updated: r.get(2),
        paused_seconds: r.get(3),
        error: r.get(4),
    }
}

/// In one snapshot: the rows filled so far and the checkpoint's count of rows updated. They are
/// equal in every snapshot because the checkpoint commits with its batch.
pub async fn filled_and_checkpointed(c: &Client, table: &str) -> (i64, i64) {
    let r = c
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM public.{table} WHERE u IS NOT NULL AND NOT _pgbaton_touched),
                        (SELECT rows_updated FROM pgbaton.backfills WHERE migration = $1 AND table_name = $2)"
            ),
            &[&MIGRATION, &table],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

pub async fn verify_clean(c: &Client, f: &Fixture) -> verify::VerifyReport {
    let report = verify::verify(c, &f.trigger, &f.backfill.key, &VerifyOptions::default())
        .await
        .unwrap_or_else(|e| panic!("verify: {e}"));
    assert!(report.is_clean(), "{report}");
    report
}

/// Like [`table`], with an `id` of `key_type` (primary key) holding the values `values` (a
/// query of one column).
pub async fn table_with_keys(c: &Client, name: &str, key_type: &str, values: &str) -> Fixture {
    let f = fixture(name, BackfillKey::Columns(vec![Ident::new("id")]));
    exec(
        c,
        &format!(
            "CREATE TABLE public.{name} (id {key_type} PRIMARY KEY, name text, email text NOT NULL, created_at timestamptz);
             INSERT INTO public.{name}
               SELECT v, 'name ' || v, 'user' || v || '@example.com', '2024-01-01'::timestamptz
                 FROM ({values}) AS s(v);
             ALTER TABLE public.{name} ADD COLUMN u text, ADD COLUMN _pgbaton_new_email text;"
        ),
    )
    .await;
    let install = triggers::install_step(&f.trigger, false)
        .statements()
        .join(";\n");
    exec(c, &format!("BEGIN;\n{install};\nCOMMIT")).await;
    f
}

/// Waits until the session of an aborted run is gone (the server notices the closed connection
/// after the batch in flight, which may still commit): its checkpoint is final then, and its
/// advisory lock released.
pub async fn backfill_lock_released(c: &Client) {
    let sql = format!(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2
            AND classid = {}::oid AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        backfill::BACKFILL_LOCK_CLASS
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while count(c, &sql).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the aborted run's session lingers"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn key_bounds(c: &Client, table: &str) -> (Option<i64>, Option<i64>) {
    let r = c
        .query_one(
            "SELECT key_min, key_max FROM pgbaton.backfills WHERE migration = $1 AND table_name = $2",
            &[&MIGRATION, &table],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}
