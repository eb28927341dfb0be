//! `pgbaton import pgroll`: takes over a schema that pgroll migrated. Reads pgroll's state table
//! (`<pgroll schema>.migrations`, created by `pgroll init`: one row per migration with `schema`,
//! `name`, the `migration` document as pgroll stores it, `parent`, `done`, `migration_type` —
//! `pgroll`, `inferred` or `baseline` — and timestamps) and records its completed history as
//! pgbaton's, so `pgbaton migrate DIR` continues with the first file pgroll never applied and
//! `pull` writes the whole history.
//!
//! - Everything happens in one transaction holding a SHARE lock on pgroll's table (pgroll cannot
//!   start a migration meanwhile) and pgbaton's migration lock; a refusal changes nothing.
//! - Refused while pgroll has a migration in progress (`done = false`), when pgroll's history
//!   is not one linear chain, or when pgbaton's history of the schema is not a prefix of
//!   pgroll's (or pgroll's of pgbaton's: then there is nothing left to import).
//! - Each imported row keeps pgroll's name, parent, timestamps and document (with its `name`
//!   added, as `pull` writes it); its version schema is `<schema>_<version_schema or name>`, as
//!   pgroll names it, so pgroll's latest version schema is pgbaton's previous version: it keeps
//!   working for the running release until pgbaton's first `complete` drops it. Inferred rows
//!   (DDL pgroll captured outside a migration) keep the version schema before them (they made
//!   none) and are not expected as files. The checksum is left empty: the file's is recorded
//!   on first sight (`crate::history`), after checking that its operations agree with pgroll's.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::ident::Ident;
use crate::migrator::Migrator;
use crate::state;
use crate::views::version_schema_name;

/// What `import pgroll` did.
#[derive(Clone, Debug, Serialize)]
pub struct ImportOutcome {
    pub schema: String,
    pub pgroll_schema: String,
    /// Migrations recorded now (oldest first).
    pub imported: Vec<String>,
    /// pgroll migrations pgbaton already had.
    pub already: usize,
    /// Of the imported, those pgroll inferred from DDL run outside it.
    pub inferred: Vec<String>,
    /// The version schema of the last imported migration, if it exists: the running release's,
    /// dropped by pgbaton's first `complete`.
    pub version_schema: Option<String>,
    /// pgroll's event triggers that are still installed (they record DDL, pgbaton's included,
    /// as inferred pgroll migrations).
    pub pgroll_event_triggers: Vec<String>,
}

/// One row of pgroll's `migrations` table.
#[derive(Clone, Debug)]
struct PgrollRow {
    name: String,
    migration: serde_json::Value,
    parent: Option<String>,
    done: bool,
    migration_type: String,
    created_at: String,
    updated_at: String,
}

impl Migrator {
    /// Imports pgroll's completed history of this schema from `pgroll_schema` (see the module).
    pub async fn import_pgroll(&self, pgroll_schema: &str) -> Result<ImportOutcome> {
        let client = self.client();
        let pg_schema = Ident::new(pgroll_schema);
        let table = format!("{pg_schema}.migrations");
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await?
            .get(0);
        if !exists {
            return Err(Error::PgrollNotFound {
                pgroll_schema: pgroll_schema.to_string(),
            });
        }
        self.locked(async {
            client.batch_execute("BEGIN").await?;
            let result = self.import_in_transaction(&pg_schema, &table).await;
            match result {
                Ok(outcome) => {
                    client.batch_execute("COMMIT").await?;
                    Ok(outcome)
                }
                Err(e) => {
                    let _ = client.batch_execute("ROLLBACK").await;
                    Err(e)
                }
            }
        })
        .await
    }

    async fn import_in_transaction(&self, pg_schema: &Ident, table: &str) -> Result<ImportOutcome> {
        let client = self.client();
        let schema = self.schema();
        let st = self.state_ident();
        // pgbaton's state schema, created or brought up to date in this transaction: a refusal
        // leaves no trace of it.
        client.batch_execute(&state::ddl(st).join(";\n")).await?;
        let rows = self.lock_and_read(table).await?;
        if let Some(active) = rows.iter().find(|r| !r.done) {
            return Err(Error::PgrollActive {
                schema: schema.to_string(),
                name: active.name.clone(),
            });
        }
        let chain = linear_chain(schema, rows)?;
        if let Some(active) = state::active(client, st, schema).await? {
            return Err(Error::AlreadyActive {
                schema: schema.to_string(),
                active: active.name,
                requested: "import pgroll".into(),
            });
        }
        let ours = state::history(client, st, schema).await?;
        let ours: Vec<&state::MigrationRecord> = ours
            .iter()
            .filter(|m| m.status == state::COMPLETED)
            .collect();
        let common = agreeing_prefix(schema, &ours, &chain)?;
        let mut outcome = ImportOutcome {
            schema: schema.to_string(),
            pgroll_schema: pg_schema.as_str().to_string(),
            imported: Vec::new(),
            already: common,
            inferred: Vec::new(),
            version_schema: None,
            pgroll_event_triggers: pgroll_event_triggers(client, pg_schema).await?,
        };
        let empty_plan = serde_json::to_value(crate::plan::Plan::default())
            .map_err(|e| Error::Other(format!("cannot serialize plan: {e}")))?;
        // The version schema in force before each row: an inferred row keeps it.
        let mut current_version: Option<String> = ours.last().map(|m| m.version_schema.clone());
        for row in chain.iter().take(common) {
            current_version = Some(pgroll_version_schema(
                schema,
                row,
                current_version.as_deref(),
            ));
        }
        for row in chain.iter().skip(common) {
            let version_schema = pgroll_version_schema(schema, row, current_version.as_deref());
            let origin = self
                .record_imported(pg_schema, row, &version_schema, &empty_plan)
                .await?;
            if origin == state::ORIGIN_PGROLL_INFERRED {
                outcome.inferred.push(row.name.clone());
            }
            outcome.imported.push(row.name.clone());
            current_version = Some(version_schema);
        }
        if let Some(vs) = current_version {
            if crate::catalog::schema_exists(client, &vs).await? {
                outcome.version_schema = Some(vs);
            }
        }
        Ok(outcome)
    }

    /// Locks pgroll's table against new migrations (SHARE, within the lock timeout) and reads
    /// this schema's rows, oldest first.
    async fn lock_and_read(&self, table: &str) -> Result<Vec<PgrollRow>> {
        let client = self.client();
        let lock_timeout = self.settings().exec.lock_timeout.as_millis().max(1);
        client
            .batch_execute(&format!(
                "SET LOCAL lock_timeout = '{lock_timeout}ms'; LOCK TABLE {table} IN SHARE MODE"
            ))
            .await?;
        // `migration_type` came with a later pgroll; older state tables lack it.
        let has_type: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1)
                                  AND attname = 'migration_type' AND NOT attisdropped)",
                &[&table],
            )
            .await?
            .get(0);
        let type_column = if has_type {
            "coalesce(migration_type, 'pgroll')::text"
        } else {
            "'pgroll'::text"
        };
        let rows = client
            .query(
                &format!(
                    "SELECT name, migration, parent, done, {type_column},
                            to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                            to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')
                       FROM {table} WHERE schema = $1 ORDER BY created_at, name"
                ),
                &[&self.schema()],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| PgrollRow {
                name: r.get(0),
                migration: r.get(1),
                parent: r.get(2),
                done: r.get(3),
                migration_type: r.get(4),
                created_at: r.get(5),
                updated_at: r.get(6),
            })
            .collect())
    }

    /// Records one of pgroll's completed migrations as pgbaton's; returns its origin.
    async fn record_imported(
        &self,
        pg_schema: &Ident,
        row: &PgrollRow,
        version_schema: &str,
        empty_plan: &serde_json::Value,
    ) -> Result<&'static str> {
        let st = self.state_ident();
        let origin = match row.migration_type.as_str() {
            "inferred" => state::ORIGIN_PGROLL_INFERRED,
            "baseline" => state::ORIGIN_PGROLL_BASELINE,
            _ => state::ORIGIN_PGROLL,
        };
        let mut document = row.migration.clone();
        if let Some(map) = document.as_object_mut() {
            map.insert("name".into(), serde_json::Value::String(row.name.clone()));
        }
        self.client()
            .execute(
                &format!(
                    "INSERT INTO {st}.migrations (schema, name, parent, version_schema, document, plan, status,
                                                  started_at, completed_at, origin, created_by)
                     VALUES ($1, $2, $3, $4, $5, $6, 'completed', $7::text::timestamptz, $8::text::timestamptz, $9,
                             jsonb_build_object('imported_from', 'pgroll', 'pgroll_schema', $10::text,
                                                'migration_type', $11::text, 'user', current_user,
                                                'pgbaton', $12::text))"
                ),
                &[
                    &self.schema(),
                    &row.name,
                    &row.parent,
                    &version_schema,
                    &document,
                    empty_plan,
                    &row.created_at,
                    &row.updated_at,
                    &origin,
                    &pg_schema.as_str(),
                    &row.migration_type,
                    &env!("CARGO_PKG_VERSION"),
                ],
            )
            .await?;
        Ok(origin)
    }
}

/// How many of pgroll's migrations pgbaton already has: its completed history (`ours`) must be
/// a prefix of pgroll's chain, or pgroll's of it.
fn agreeing_prefix(
    schema: &str,
    ours: &[&state::MigrationRecord],
    chain: &[PgrollRow],
) -> Result<usize> {
    let common = ours.len().min(chain.len());
    for i in 0..common {
        if ours[i].name != chain[i].name {
            return Err(Error::PgrollHistoryDisagrees {
                schema: schema.to_string(),
                detail: format!(
                    "migration #{} is \"{}\" in pgroll but \"{}\" in pgbaton",
                    i + 1,
                    chain[i].name,
                    ours[i].name
                ),
            });
        }
    }
    Ok(common)
}

/// pgroll's event triggers still installed: functions of its schema.
async fn pgroll_event_triggers(
    client: &tokio_postgres::Client,
    pg_schema: &Ident,
) -> Result<Vec<String>> {
    Ok(client
        .query(
            "SELECT evtname::text FROM pg_event_trigger e JOIN pg_proc p ON p.oid = e.evtfoid
              WHERE p.pronamespace = to_regnamespace($1) ORDER BY 1",
            &[&pg_schema.as_str()],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The version schema pgroll made for `row`: `<schema>_<version_schema or name>`; an inferred
/// row made none, so the one before it stays in force.
fn pgroll_version_schema(schema: &str, row: &PgrollRow, before: Option<&str>) -> String {
    if row.migration_type == "inferred" {
        if let Some(before) = before {
            return before.to_string();
        }
    }
    let version = row
        .migration
        .get("version_schema")
        .and_then(|v| v.as_str())
        .filter(|v| !v.is_empty() && row.migration_type != "inferred")
        .unwrap_or(&row.name);
    version_schema_name(schema, version).as_str().to_string()
}

/// Orders pgroll's rows along the parent chain from the root; refuses a history that is not
/// one chain (pgroll keeps it linear with unique indexes, but the table is only data).
fn linear_chain(schema: &str, mut rows: Vec<PgrollRow>) -> Result<Vec<PgrollRow>> {
    let mut chain = Vec::with_capacity(rows.len());
    let mut parent: Option<String> = None;
    while let Some(pos) = rows.iter().position(|r| r.parent == parent) {
        let row = rows.remove(pos);
        if rows.iter().any(|r| r.parent == parent) {
            return Err(Error::PgrollHistoryDisagrees {
                schema: schema.to_string(),
                detail: format!(
                    "pgroll's history forks after {}",
                    parent.as_deref().unwrap_or("its start")
                ),
            });
        }
        parent = Some(row.name.clone());
        chain.push(row);
    }
    if let Some(stray) = rows.first() {
        return Err(Error::PgrollHistoryDisagrees {
            schema: schema.to_string(),
            detail: format!(
                "pgroll's migration \"{}\" (parent \"{}\") is not on the chain from its first migration",
                stray.name,
                stray.parent.as_deref().unwrap_or("")
            ),
        });
    }
    Ok(chain)
}
