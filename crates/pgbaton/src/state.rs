//! The state schema (default `pgbaton`): migration history with its parent chain, the stored
//! document and plan, and the step journal. The backfill checkpoint and operator controls are
//! owned by [`crate::backfill`]; `init` creates them too. All DDL here is idempotent.

use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, Result};
use crate::ident::{Ident, Literal};
use crate::plan::Plan;
use crate::step::Phase;

/// Statuses a migration goes through. "Active" means any of the first four.
pub const STARTING: &str = "starting";
pub const ACTIVE: &str = "active";
pub const COMPLETING: &str = "completing";
pub const ROLLING_BACK: &str = "rolling_back";
pub const COMPLETED: &str = "completed";
pub const ROLLED_BACK: &str = "rolled_back";
/// A file deployed as part of a one-version migration (`migrate --one-version`), while that
/// migration (its `bundle`, named after the last file) is active; it follows the bundle to
/// `completed` or `rolled_back`.
pub const BUNDLED: &str = "bundled";

/// Where a history row came from (`origin`): pgbaton itself, or `pgbaton import pgroll`.
pub const ORIGIN_PGBATON: &str = "pgbaton";
pub const ORIGIN_PGROLL: &str = "pgroll";
/// pgroll's `inferred` migrations (DDL it captured outside pgroll): kept in the history, not
/// expected as files.
pub const ORIGIN_PGROLL_INFERRED: &str = "pgroll_inferred";
pub const ORIGIN_PGROLL_BASELINE: &str = "pgroll_baseline";

/// Idempotent DDL for the state schema.
pub fn ddl(state: &Ident) -> Vec<String> {
    let mut sql = vec![
        format!("CREATE SCHEMA IF NOT EXISTS {state}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {state}.migrations (
                schema text NOT NULL,
                name text NOT NULL,
                parent text,
                version_schema text NOT NULL,
                document jsonb NOT NULL,
                plan jsonb NOT NULL,
                status text NOT NULL CHECK (status IN ('starting', 'active', 'completing', 'rolling_back',
                                                       'completed', 'rolled_back')),
                started_at timestamptz NOT NULL DEFAULT now(),
                completed_at timestamptz,
                rolled_back_at timestamptz,
                created_by jsonb NOT NULL DEFAULT '{{}}',
                PRIMARY KEY (schema, name)
            )"
        ),
        // Checksums of applied files, where each row came from, and one-version bundles (added
        // after the first release: `upgrade` adds them to an older state schema in place).
        format!(
            "ALTER TABLE {state}.migrations
                ADD COLUMN IF NOT EXISTS checksum text,
                ADD COLUMN IF NOT EXISTS origin text NOT NULL DEFAULT 'pgbaton',
                ADD COLUMN IF NOT EXISTS bundle text"
        ),
        format!("ALTER TABLE {state}.migrations DROP CONSTRAINT IF EXISTS migrations_status_check"),
        format!(
            "ALTER TABLE {state}.migrations ADD CONSTRAINT migrations_status_check
                CHECK (status IN ('starting', 'active', 'completing', 'rolling_back',
                                  'completed', 'rolled_back', 'bundled'))"
        ),
        format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS migrations_one_active ON {state}.migrations (schema)
              WHERE status IN ('starting', 'active', 'completing', 'rolling_back')"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {state}.steps (
                schema text NOT NULL,
                migration text NOT NULL,
                phase text NOT NULL CHECK (phase IN ('start', 'complete', 'rollback')),
                ordinal int NOT NULL,
                title text NOT NULL,
                status text NOT NULL CHECK (status IN ('planned', 'running', 'done', 'failed')),
                attempts int NOT NULL DEFAULT 0,
                started_at timestamptz,
                finished_at timestamptz,
                error text,
                PRIMARY KEY (schema, migration, phase, ordinal),
                FOREIGN KEY (schema, migration) REFERENCES {state}.migrations ON DELETE CASCADE
            )"
        ),
    ];
    sql.extend(crate::backfill::state_ddl(state));
    sql
}

/// Creates the state schema (idempotent).
pub async fn init(client: &Client, state: &Ident) -> Result<()> {
    let script = ddl(state).join(";\n");
    client
        .batch_execute(&format!("BEGIN;\n{script};\nCOMMIT"))
        .await?;
    Ok(())
}

/// Brings a state schema made by an earlier pgbaton up to date (the DDL is idempotent). Does
/// nothing, and takes no lock, when it is current.
pub async fn upgrade(client: &Client, state: &Ident) -> Result<()> {
    let current: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AND EXISTS (
                 SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($2) AND attname = 'pass'
                    AND NOT attisdropped) AND EXISTS (
                 SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($3) AND attname = 'bundle'
                    AND NOT attisdropped) AND to_regclass($4) IS NOT NULL",
            &[
                &format!("{state}.backfill_xids"),
                &format!("{state}.backfills"),
                &format!("{state}.migrations"),
                // The newest table of the backfill's state (parallel fills, live controls).
                &format!("{state}.backfill_chunks"),
            ],
        )
        .await?
        .get(0);
    if !current {
        init(client, state).await?;
    }
    Ok(())
}

/// Whether the state schema exists (with its migrations table).
pub async fn is_initialized(client: &Client, state: &Ident) -> Result<bool> {
    let name = format!("{state}.migrations");
    Ok(client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await?
        .get(0))
}

pub async fn require_initialized(client: &Client, state: &Ident) -> Result<()> {
    if is_initialized(client, state).await? {
        Ok(())
    } else {
        Err(Error::NotInitialized {
            schema: state.as_str().to_string(),
        })
    }
}

/// One row of the history.
#[derive(Clone, Debug, Serialize)]
pub struct MigrationRecord {
    pub schema: String,
    pub name: String,
    pub parent: Option<String>,
    pub version_schema: String,
    pub status: String,
    pub document: serde_json::Value,
    #[serde(skip)]
    pub plan: Plan,
    pub started_at: String,
    pub completed_at: Option<String>,
    /// The checksum of the applied file's parsed content ([`crate::history::checksum`]);
    /// `None` until first seen for rows recorded before checksums existed, or imported.
    pub checksum: Option<String>,
    /// [`ORIGIN_PGBATON`], [`ORIGIN_PGROLL`], ...
    pub origin: String,
    /// For a file deployed in a one-version migration: that migration's name (its last file).
    pub bundle: Option<String>,
}

impl MigrationRecord {
    pub fn is_active(&self) -> bool {
        matches!(
            self.status.as_str(),
            STARTING | ACTIVE | COMPLETING | ROLLING_BACK
        )
    }
}

/// The columns of a [`MigrationRecord`]. Those added after the first release are read through
/// `to_jsonb(row)`, so read-only commands (`status`, `latest`, `pull`, `plan`) work on an older
/// state schema that no state-changing command has upgraded yet.
const RECORD_COLUMNS: &str = "schema, name, parent, version_schema, status, document, plan,
    to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
    to_char(completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
    to_jsonb(migrations) ->> 'checksum', coalesce(to_jsonb(migrations) ->> 'origin', 'pgbaton'),
    to_jsonb(migrations) ->> 'bundle'";

fn record(row: &tokio_postgres::Row) -> Result<MigrationRecord> {
    let plan: serde_json::Value = row.get(6);
    Ok(MigrationRecord {
        schema: row.get(0),
        name: row.get(1),
        parent: row.get(2),
        version_schema: row.get(3),
        status: row.get(4),
        document: row.get(5),
        plan: serde_json::from_value(plan)
            .map_err(|e| Error::Other(format!("stored plan of migration is unreadable: {e}")))?,
        started_at: row.get(7),
        completed_at: row.get(8),
        checksum: row.get(9),
        origin: row.get(10),
        bundle: row.get(11),
    })
}

/// The active migration of `schema`, if any.
pub async fn active(
    client: &impl GenericClient,
    state: &Ident,
    schema: &str,
) -> Result<Option<MigrationRecord>> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {RECORD_COLUMNS} FROM {state}.migrations
                  WHERE schema = $1 AND status IN ('starting', 'active', 'completing', 'rolling_back')"
            ),
            &[&schema],
        )
        .await?;
    row.as_ref().map(record).transpose()
}

/// One migration by name.
pub async fn get(
    client: &impl GenericClient,
    state: &Ident,
    schema: &str,
    name: &str,
) -> Result<Option<MigrationRecord>> {
    let row = client
        .query_opt(
            &format!(
                "SELECT {RECORD_COLUMNS} FROM {state}.migrations WHERE schema = $1 AND name = $2"
            ),
            &[&schema, &name],
        )
        .await?;
    row.as_ref().map(record).transpose()
}

/// Completed migrations of `schema`, oldest first, following the parent chain.
pub async fn history(
    client: &impl GenericClient,
    state: &Ident,
    schema: &str,
) -> Result<Vec<MigrationRecord>> {
    let rows = client
        .query(
            &format!(
                "SELECT {RECORD_COLUMNS} FROM {state}.migrations
                  WHERE schema = $1 AND status IN ('completed', 'starting', 'active', 'completing', 'rolling_back', 'bundled')
                  ORDER BY started_at, name"
            ),
            &[&schema],
        )
        .await?;
    let all: Vec<MigrationRecord> = rows.iter().map(record).collect::<Result<_>>()?;
    // Order by the parent chain (robust to equal timestamps).
    let mut ordered = Vec::with_capacity(all.len());
    let mut parent: Option<String> = None;
    let mut rest = all;
    while let Some(pos) = rest.iter().position(|m| m.parent == parent) {
        let m = rest.remove(pos);
        parent = Some(m.name.clone());
        ordered.push(m);
    }
    ordered.extend(rest);
    Ok(ordered)
}

/// The migration of `schema` rolled back after `parent` (the last completed migration, `None`:
/// none) and not started again: the newest such one, by name and when it was rolled back (UTC,
/// ISO 8601). A rolled-back migration records the last completed one as its parent, so it is
/// newer than every migration in [`history`] when that history ends with its parent completed.
pub async fn rolled_back_after(
    client: &impl GenericClient,
    state: &Ident,
    schema: &str,
    parent: Option<&str>,
) -> Result<Option<(String, Option<String>)>> {
    let row = client
        .query_opt(
            &format!(
                "SELECT name, to_char(rolled_back_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                   FROM {state}.migrations
                  WHERE schema = $1 AND status = 'rolled_back' AND parent IS NOT DISTINCT FROM $2
                    AND to_jsonb(migrations) ->> 'bundle' IS NULL
                  ORDER BY rolled_back_at DESC NULLS LAST, started_at DESC, name DESC
                  LIMIT 1"
            ),
            &[&schema, &parent],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// The last completed migration of `schema`.
pub async fn latest_completed(
    client: &impl GenericClient,
    state: &Ident,
    schema: &str,
) -> Result<Option<MigrationRecord>> {
    Ok(history(client, state, schema)
        .await?
        .into_iter()
        .rev()
        .find(|m| m.status == COMPLETED))
}

/// A migration about to be recorded by [`insert_migration`].
#[derive(Clone, Copy, Debug)]
pub struct NewMigration<'a> {
    pub schema: &'a str,
    pub name: &'a str,
    /// The last completed migration of the schema.
    pub parent: Option<&'a str>,
    pub version_schema: &'a str,
    /// The migration file's document, as stored for `pull` and history checks.
    pub document: &'a serde_json::Value,
    pub plan: &'a Plan,
}

/// Records a new migration (or a retry of a rolled-back one) with its plan and journal rows.
pub async fn insert_migration(
    client: &impl GenericClient,
    state: &Ident,
    m: NewMigration<'_>,
) -> Result<()> {
    let plan_json = serde_json::to_value(m.plan)
        .map_err(|e| Error::Other(format!("cannot serialize plan: {e}")))?;
    client
        .execute(
            &format!(
                "DELETE FROM {state}.migrations WHERE schema = $1 AND name = $2 AND status = 'rolled_back'"
            ),
            &[&m.schema, &m.name],
        )
        .await?;
    client
        .execute(
            &format!(
                "INSERT INTO {state}.migrations (schema, name, parent, version_schema, document, plan, status, checksum, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, 'starting', $7,
                         jsonb_build_object('user', current_user, 'application_name', current_setting('application_name'),
                                            'client_addr', inet_client_addr()::text, 'pgbaton', {}))",
                Literal::new(env!("CARGO_PKG_VERSION"))
            ),
            &[
                &m.schema,
                &m.name,
                &m.parent,
                &m.version_schema,
                m.document,
                &plan_json,
                &crate::history::checksum(m.document),
            ],
        )
        .await?;
    for phase in [Phase::Start, Phase::Complete, Phase::Rollback] {
        for (i, step) in m.plan.phase(phase).iter().enumerate() {
            client
                .execute(
                    &format!(
                        "INSERT INTO {state}.steps (schema, migration, phase, ordinal, title, status)
                         VALUES ($1, $2, $3, $4, $5, 'planned')"
                    ),
                    &[&m.schema, &m.name, &phase.as_str(), &(i as i32), &step.title],
                )
                .await?;
        }
    }
    Ok(())
}

/// Sets a migration's status (and the matching timestamp).
pub async fn set_status(
    client: &impl GenericClient,
    state: &Ident,
    schema: &str,
    name: &str,
    status: &str,
) -> Result<()> {
    let stamp = match status {
        COMPLETED => ", completed_at = now()",
        ROLLED_BACK => ", rolled_back_at = now()",
        _ => "",
    };
    client
        .execute(
            &format!(
                "UPDATE {state}.migrations SET status = $3{stamp} WHERE schema = $1 AND name = $2"
            ),
            &[&schema, &name, &status],
        )
        .await?;
    if matches!(status, COMPLETED | ROLLED_BACK) {
        // The files deployed with it in one version follow it.
        client
            .execute(
                &format!(
                    "UPDATE {state}.migrations SET status = $3{stamp}
                      WHERE schema = $1 AND bundle = $2 AND status = 'bundled'"
                ),
                &[&schema, &name, &status],
            )
            .await?;
    }
    Ok(())
}

/// Records `checksum` as the checksum of applied migration `name` (first sight of a file
/// applied before checksums existed, or a change accepted deliberately).
pub async fn set_checksum(
    client: &impl GenericClient,
    state: &Ident,
    schema: &str,
    name: &str,
    checksum: &str,
) -> Result<()> {
    client
        .execute(
            &format!("UPDATE {state}.migrations SET checksum = $3 WHERE schema = $1 AND name = $2"),
            &[&schema, &name, &checksum],
        )
        .await?;
    Ok(())
}

/// Replaces an imported migration's stored document with the file's (first sight), keeping
/// the imported one in `created_by.imported_document`.
pub async fn adopt_document(
    client: &impl GenericClient,
    state: &Ident,
    schema: &str,
    name: &str,
    document: &serde_json::Value,
) -> Result<()> {
    client
        .execute(
            &format!(
                "UPDATE {state}.migrations
                    SET created_by = created_by || jsonb_build_object('imported_document', document),
                        document = $3
                  WHERE schema = $1 AND name = $2"
            ),
            &[&schema, &name, document],
        )
        .await?;
    Ok(())
}

/// Journal status of every step of a phase, by ordinal.
pub async fn step_statuses(
    client: &impl GenericClient,
    state: &Ident,
    schema: &str,
    name: &str,
    phase: Phase,
) -> Result<Vec<String>> {
    let rows = client
        .query(
            &format!(
                "SELECT status FROM {state}.steps WHERE schema = $1 AND migration = $2 AND phase = $3 ORDER BY ordinal"
            ),
            &[&schema, &name, &phase.as_str()],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// SQL that marks a journal step; used inside the step's own transaction where possible.
pub fn mark_step_sql(
    state: &Ident,
    schema: &str,
    name: &str,
    phase: Phase,
    ordinal: usize,
    status: &str,
) -> String {
    let stamp = match status {
        "running" => "started_at = now(), attempts = attempts + 1, error = NULL",
        _ => "finished_at = now()",
    };
    format!(
        "UPDATE {state}.steps SET status = {}, {stamp} WHERE schema = {} AND migration = {} AND phase = {} AND ordinal = {ordinal}",
        Literal::new(status),
        Literal::new(schema),
        Literal::new(name),
        Literal::new(phase.as_str()),
    )
}

/// Records a step's failure.
pub async fn fail_step(
    client: &impl GenericClient,
    state: &Ident,
    schema: &str,
    name: &str,
    phase: Phase,
    ordinal: usize,
    error: &str,
) -> Result<()> {
    client
        .execute(
            &format!(
                "UPDATE {state}.steps SET status = 'failed', finished_at = now(), error = $5
                  WHERE schema = $1 AND migration = $2 AND phase = $3 AND ordinal = $4"
            ),
            &[&schema, &name, &phase.as_str(), &(ordinal as i32), &error],
        )
        .await?;
    Ok(())
}
