//! What a run reads from the catalog once: the table's size, density, columns and key.

use tokio_postgres::Client;

use crate::ident::{Ident, QualName};
use crate::step::{BackfillKey, BackfillPass, BackfillSpec};

use super::sql::IntKey;
use super::{db, BackfillError};

/// What a batch needs to know about the table, read from the catalog once per run.
#[derive(Clone, Debug)]
pub(super) struct TableInfo {
    pub(super) oid: u32,
    pub(super) relfilenode: u32,
    pub(super) reltuples: f64,
    /// `pg_relation_size / block_size` now.
    pub(super) pages: i64,
    /// Average rows per page (for sizing ctid batches).
    pub(super) density: f64,
    /// attnums of the filled columns, for the fingerprint.
    pub(super) target_attnums: Vec<i16>,
    /// A foreign key involves a filled column: its checks must run, so no replica role.
    pub(super) fk_on_targets: bool,
    /// The key is a single integer column with a btree index: it can be walked by value ranges.
    pub(super) int_key: Option<IntKey>,
}

/// Live rows of a table never analyzed, estimated from a block sample of at most ~1000 pages
/// (`TABLESAMPLE SYSTEM`): milliseconds, and much closer than the planner's width-based guess.
pub(super) async fn sample_rows(client: &Client, table: &QualName, pages: i64) -> Option<f64> {
    if pages <= 0 {
        return Some(0.0);
    }
    let percent = (100_000.0 / pages as f64).min(100.0);
    let row = client
        .query_one(
            &format!(
                "SELECT count(*)::float8 * 100 / {percent} FROM {table} TABLESAMPLE SYSTEM ({percent})"
            ),
            &[],
        )
        .await
        .ok()?;
    row.try_get(0).ok()
}

/// Reads what the run needs from the catalog, and checks the columns exist.
pub(super) async fn inspect(
    client: &Client,
    spec: &BackfillSpec,
) -> Result<TableInfo, BackfillError> {
    let table = spec.table.to_string();
    let row = client
        .query_opt(
            "SELECT c.oid, pg_relation_filenode(c.oid), c.reltuples::float8, c.relpages::bigint,
                    pg_relation_size(c.oid) / current_setting('block_size')::bigint, c.relkind
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&spec.table.schema.as_str(), &spec.table.name.as_str()],
        )
        .await
        .map_err(|source| db(&table, "reading the catalog", source))?
        .ok_or_else(|| BackfillError::TableNotFound {
            table: table.clone(),
        })?;
    let oid: u32 = row.get(0);
    let relfilenode: u32 = row.get::<_, Option<u32>>(1).unwrap_or(0);
    let reltuples: f64 = row.get(2);
    let relpages: i64 = row.get(3);
    let pages: i64 = row.get(4);
    // Never analyzed (-1): estimate from a sample.
    let reltuples = if reltuples >= 0.0 {
        reltuples
    } else {
        sample_rows(client, &spec.table, pages)
            .await
            .unwrap_or(-1.0)
    };
    let density = if reltuples > 0.0 && relpages > 0 {
        reltuples / relpages as f64
    } else if reltuples > 0.0 && pages > 0 {
        reltuples / pages as f64
    } else {
        100.0
    };
    if matches!(spec.key, BackfillKey::Ctid) && row.get::<_, i8>(5) == b'p' as i8 {
        return Err(BackfillError::Unsupported {
            table,
            reason: "a partitioned table has no ctid order of its own; backfill each partition \
                     or give the table a primary key"
                .into(),
        });
    }

    let mut wanted: Vec<&Ident> = spec.assignments.iter().map(|a| &a.target).collect();
    wanted.push(&spec.marker);
    if spec.window.is_some() && spec.pass == BackfillPass::Fill {
        // A fill with a write window runs before the marker column exists.
        wanted.retain(|c| *c != &spec.marker);
    }
    if let BackfillKey::Columns(cols) = &spec.key {
        wanted.extend(cols.iter());
    }
    for (_, physical) in &spec.scope {
        wanted.push(physical);
    }
    let names: Vec<&str> = wanted.iter().map(|i| i.as_str()).collect();
    let rows = client
        .query(
            "SELECT attname::text, attnum FROM pg_attribute
              WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attname = ANY($2)",
            &[&oid, &names],
        )
        .await
        .map_err(|source| db(&table, "reading the catalog", source))?;
    let attnum = |name: &str| -> Option<i16> {
        rows.iter()
            .find(|r| r.get::<_, String>(0) == name)
            .map(|r| r.get::<_, i16>(1))
    };
    for name in &names {
        if attnum(name).is_none() {
            return Err(BackfillError::ColumnNotFound {
                table,
                column: Ident::new(*name).to_string(),
            });
        }
    }
    let target_attnums: Vec<i16> = spec
        .assignments
        .iter()
        .map(|a| a.target.as_str())
        .chain([spec.marker.as_str()])
        .filter_map(attnum)
        .collect();
    let fk = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint
                             WHERE conrelid = $1 AND contype = 'f' AND conkey && $2::int2[])",
            &[&oid, &target_attnums],
        )
        .await
        .map_err(|source| db(&table, "reading the catalog", source))?;
    Ok(TableInfo {
        oid,
        relfilenode,
        reltuples,
        pages,
        density,
        target_attnums,
        fk_on_targets: fk.get(0),
        int_key: int_key(client, spec, oid).await?,
    })
}

/// The key of `spec` when it is a single `smallint`, `integer` or `bigint` column (not a domain)
/// that a valid, non-partial btree index leads with.
pub(super) async fn int_key(
    client: &Client,
    spec: &BackfillSpec,
    oid: u32,
) -> Result<Option<IntKey>, BackfillError> {
    let column = match &spec.key {
        BackfillKey::Columns(cols) if cols.len() == 1 => &cols[0],
        _ => return Ok(None),
    };
    let row = client
        .query_opt(
            "SELECT a.atttypid::regtype::text,
                    EXISTS (SELECT 1 FROM pg_index i
                              JOIN pg_class ic ON ic.oid = i.indexrelid
                              JOIN pg_am am ON am.oid = ic.relam
                             WHERE i.indrelid = a.attrelid AND i.indkey[0] = a.attnum
                               AND i.indisvalid AND i.indpred IS NULL AND am.amname = 'btree')
               FROM pg_attribute a
              WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&oid, &column.as_str()],
        )
        .await
        .map_err(|source| db(&spec.table.to_string(), "reading the catalog", source))?;
    Ok(row
        .filter(|r| r.get::<_, bool>(1))
        .and_then(|r| IntKey::for_type(column, &r.get::<_, String>(0))))
}
