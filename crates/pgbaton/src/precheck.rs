//! Checks of a migration file against the live database that need the server but change
//! nothing: run by `validate`, `plan` and `start` after planning and before any DDL, so what the
//! server would refuse half-way through a start (a type that does not exist, an `up` that names
//! a missing column or yields the wrong type) is reported as bad input naming the file, the line
//! and the field. Each probe runs in a transaction that is rolled back.
//!
//! An operation is probed only while the database still looks to it as it does now: the probes
//! stop at the first `sql` operation (it may create anything), and an operation on a table an
//! earlier operation of the file touched (or created) is not probed (the planner has checked it
//! against the schema as the earlier operations leave it; the server will see it at run time).
//!
//! Also the privilege check `start` runs before its first step: the role must be able to create
//! the version schema, create objects in the migrated schema and alter the tables it touches.

use std::collections::BTreeSet;

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::format::Migration;
use crate::ident::{quote_ident, Ident, QualName};
use crate::ops::Op;
use crate::plan::Plan;
use crate::plan::PlanError;
use crate::planner::PlanFailure;

/// Types that are not types but column shorthands (`CREATE TABLE` expands them).
const SERIALS: &[&str] = &[
    "serial",
    "serial2",
    "serial4",
    "serial8",
    "smallserial",
    "bigserial",
];

/// The table an operation works on, from its document (`table`, else `name` or `from`).
fn table_of(migration: &Migration, index: usize, kind: &str) -> Option<String> {
    let body = migration.raw.get("operations")?.get(index)?.get(kind)?;
    ["table", "name", "from"]
        .iter()
        .find_map(|k| body.get(k).and_then(|v| v.as_str()))
        .map(str::to_string)
}

/// One probe: `field` of operation `index`, checked by running `sql` (statements, each alone)
/// in a rolled-back transaction.
struct Probe {
    index: usize,
    field: String,
    sql: Vec<String>,
}

/// The probes of a migration (see the module documentation for which operations get them).
async fn probes(
    client: &Client,
    migration: &Migration,
    schema: &str,
    old_version: Option<&Ident>,
) -> Result<Vec<Probe>> {
    let mut out = Vec::new();
    let mut touched = BTreeSet::new();
    let path = format!("{}, pg_catalog, pg_temp", quote_ident(schema));
    for (index, op) in migration.operations.iter().enumerate() {
        if matches!(op, Op::RawSql(_)) {
            break;
        }
        let table = table_of(migration, index, op.kind());
        let fresh = table.as_ref().is_none_or(|t| touched.insert(t.clone()));
        let type_probe = |field: &str, ty: &str| -> Option<Probe> {
            let ty = ty.trim();
            if SERIALS.contains(&ty.to_ascii_lowercase().as_str()) || ty.is_empty() {
                return None;
            }
            Some(Probe {
                index,
                field: field.to_string(),
                sql: vec![format!("SELECT NULL::{ty}")],
            })
        };
        let (up, target_type) = match op {
            Op::AddColumn(o) => {
                out.extend(type_probe("column.type", o.column.type_.as_str()));
                (&o.up, Some(o.column.type_.as_str().to_string()))
            }
            Op::AlterColumn(o) => {
                if let Some(ty) = &o.type_ {
                    out.extend(type_probe("type", ty.as_str()));
                }
                let ty = match &o.type_ {
                    Some(ty) if !ty.is_empty() => Some(ty.as_str().to_string()),
                    _ => column_type(client, schema, &o.table, &o.column).await?,
                };
                (&o.up, ty)
            }
            Op::CreateTable(o) => {
                for (i, c) in o.columns.iter().enumerate() {
                    out.extend(type_probe(&format!("columns[{i}].type"), c.type_.as_str()));
                }
                continue;
            }
            _ => continue,
        };
        // A foreign key needs an equality between the column's type and the referenced one.
        let references = match op {
            Op::AddColumn(o) => o.column.references.as_ref(),
            Op::AlterColumn(o) => o.references.as_ref(),
            _ => None,
        };
        if let (Some(r), Some(ty)) = (references, &target_type) {
            let field = match op {
                Op::AddColumn(_) => "column.references",
                _ => "references",
            };
            let referenced = QualName::new(Ident::new(schema), Ident::new(r.table.as_str()));
            if relation_exists(client, schema, &r.table).await? {
                out.push(Probe {
                    index,
                    field: field.into(),
                    sql: vec![format!(
                        "EXPLAIN (COSTS OFF) SELECT 1 FROM {referenced} \
                         WHERE {} = NULL::{ty}",
                        Ident::new(r.column.as_str())
                    )],
                });
            }
        }
        let (Some(table), Some(ty)) = (table, target_type) else {
            continue;
        };
        if !fresh || up.is_empty() || SERIALS.contains(&ty.trim().to_ascii_lowercase().as_str()) {
            continue;
        }
        // The old version's names: its version schema's view, else the table itself.
        let relation = match old_version {
            Some(v) if relation_exists(client, v.as_str(), &table).await? => {
                QualName::new(v.clone(), Ident::new(table.as_str()))
            }
            _ => QualName::new(Ident::new(schema), Ident::new(table.as_str())),
        };
        if !relation_exists(client, relation.schema.as_str(), relation.name.as_str()).await? {
            continue;
        }
        out.push(Probe {
            index,
            field: "up".into(),
            sql: vec![
                format!("SET LOCAL search_path = {path}"),
                format!("CREATE TEMP TABLE _pgbaton_probe (v {ty}) ON COMMIT DROP"),
                format!(
                    "EXPLAIN (COSTS OFF) INSERT INTO pg_temp._pgbaton_probe (v) \
                     SELECT ({up}) FROM {relation}",
                    up = up.as_str()
                ),
            ],
        });
    }
    Ok(out)
}

async fn relation_exists(client: &Client, schema: &str, name: &str) -> Result<bool> {
    let q = QualName::new(Ident::new(schema), Ident::new(name));
    let row = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&q.to_string()])
        .await?;
    Ok(row.get(0))
}

/// The type of a live column, as `format_type` writes it.
async fn column_type(
    client: &Client,
    schema: &str,
    table: &str,
    column: &str,
) -> Result<Option<String>> {
    let q = QualName::new(Ident::new(schema), Ident::new(table));
    let row = client
        .query_opt(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped",
            &[&q.to_string(), &column],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Whether the server's refusal is about the file (a name, a type, an expression), not about
/// the moment (a lock, a timeout, a lost connection).
fn about_the_file(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        // A missing privilege is the role's, not the file's: `start` checks those itself.
        *c != tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE
            && matches!(&c.code()[..2], "42" | "22" | "0A")
    })
}

/// Runs the probes of `migration`; the first one the server refuses becomes an
/// [`Error::Invalid`] naming the operation's line and the field.
pub async fn check(
    client: &Client,
    migration: &Migration,
    schema: &str,
    old_version: Option<&Ident>,
) -> Result<()> {
    for probe in probes(client, migration, schema, old_version).await? {
        let _ = client.batch_execute("ROLLBACK").await;
        client
            .batch_execute(
                "BEGIN READ WRITE; SET LOCAL lock_timeout = '2s'; \
                 SET LOCAL statement_timeout = '30s'",
            )
            .await?;
        let mut failed = None;
        for sql in &probe.sql {
            if let Err(e) = client.execute_typed(sql, &[]).await {
                failed = Some(e);
                break;
            }
        }
        let _ = client.batch_execute("ROLLBACK").await;
        if let Some(e) = failed.filter(about_the_file) {
            let op = &migration.operations[probe.index];
            let message = e
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_else(|| e.to_string());
            return Err(PlanFailure::Invalid {
                file: migration.file.clone(),
                line: migration.op_lines.get(probe.index).copied().flatten(),
                index: probe.index,
                kind: op.kind(),
                source: PlanError::new(probe.field, message),
            }
            .into());
        }
    }
    Ok(())
}

/// Before `start`'s first step: can the role create the version schema (`CREATE` on the
/// database), create the triggers' functions and sequences in `schema` (`CREATE` on it), and
/// alter every existing table the plan locks (a member of its owner)?
pub async fn privileges(client: &Client, schema: &str, plan: &Plan) -> Result<()> {
    let row = client
        .query_one(
            "SELECT current_user::text, has_database_privilege(current_database(), 'CREATE'), \
             has_schema_privilege($1, 'CREATE')",
            &[&schema],
        )
        .await?;
    let role: String = row.get(0);
    let mut missing = Vec::new();
    if !row.get::<_, bool>(1) {
        missing.push("CREATE on the database (to create the version schema)".to_string());
    }
    if !row.get::<_, bool>(2) {
        missing.push(format!(
            "CREATE on schema {} (for the dual-write functions and the new objects)",
            quote_ident(schema)
        ));
    }
    let tables: BTreeSet<String> = plan
        .start
        .iter()
        .chain(&plan.complete)
        .filter_map(|s| s.table.as_ref().map(|t| t.to_string()))
        .collect();
    for table in tables {
        let owned = client
            .query_opt(
                "SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_class c \
                 WHERE c.oid = to_regclass($1)",
                &[&table],
            )
            .await?;
        if let Some(r) = owned {
            if !r.get::<_, bool>(0) {
                missing.push(format!("ownership of {table} (to alter it)"));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::Privilege {
        role: quote_ident(&role),
        detail: format!("it lacks {}; nothing was changed", missing.join(", ")),
    })
}
