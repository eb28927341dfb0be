//! Reads `pg_catalog` into the [`Schema`] model: tables, columns, constraints, indexes, comments,
//! replica identity, grants. The only place that knows the catalog's layout.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use crate::error::Result;
use crate::ident::{Ident, QualName};
use crate::schema::{Column, Constraint, ConstraintKind, Index, Schema, Table};

/// Reads every ordinary and partitioned table of `schema`.
pub async fn read_schema(client: &Client, schema: &str) -> Result<Schema> {
    let server_version_num: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await?
        .get(0);
    let mut by_oid = read_tables(client, schema).await?;
    let oids: Vec<u32> = by_oid.keys().copied().collect();
    read_columns(client, &oids, &mut by_oid).await?;
    read_constraints(client, &oids, &mut by_oid).await?;
    read_indexes(client, &oids, &mut by_oid).await?;
    read_has_rows(client, schema, &mut by_oid).await?;

    let mut tables = BTreeMap::new();
    for mut t in by_oid.into_values() {
        t.mark_unique_columns();
        tables.insert(t.name.as_str().to_string(), t);
    }
    let usage_grantees = schema_usage_grantees(client, schema).await?;
    Ok(Schema {
        name: Ident::new(schema),
        tables,
        server_version_num,
        opaque: false,
        usage_grantees,
        dropped_tables: Vec::new(),
    })
}

/// The tables of `schema` by oid, without columns, constraints or indexes yet.
async fn read_tables(client: &Client, schema: &str) -> Result<BTreeMap<u32, Table>> {
    let rows = client
        .query(
            "SELECT c.oid, c.relname::text, c.relreplident::text, c.reltuples::bigint,
                    obj_description(c.oid, 'pg_class'),
                    (SELECT ic.relname::text FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                      WHERE i.indrelid = c.oid AND i.indisreplident),
                    coalesce((SELECT array_agg(DISTINCT CASE WHEN x.grantee = 0 THEN 'PUBLIC'
                                  ELSE quote_ident(pg_get_userbyid(x.grantee)) END || ' ' || x.privilege_type)
                              FROM aclexplode(c.relacl) x
                              WHERE x.grantee <> c.relowner), '{}'),
                    c.relkind = 'p', c.relispartition
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')
              ORDER BY c.relname",
            &[&schema],
        )
        .await?;

    let mut by_oid: BTreeMap<u32, Table> = BTreeMap::new();
    for row in &rows {
        let oid: u32 = row.get(0);
        let name: String = row.get(1);
        let mut t = Table::new(Ident::new(name));
        let ri: String = row.get(2);
        t.replica_identity = ri.chars().next().unwrap_or('d');
        t.row_estimate = row.get(3);
        t.comment = row.get(4);
        t.replica_identity_index = row.get::<_, Option<String>>(5).map(Ident::new);
        t.partitioned = row.get(7);
        t.is_partition = row.get(8);
        t.grants = row.get(6);
        by_oid.insert(oid, t);
    }
    Ok(by_oid)
}

async fn read_columns(
    client: &Client,
    oids: &[u32],
    by_oid: &mut BTreeMap<u32, Table>,
) -> Result<()> {
    let cols = client
        .query(
            "SELECT a.attrelid, a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
                    pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text,
                    col_description(a.attrelid, a.attnum)
               FROM pg_attribute a
               LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attrelid, a.attnum",
            &[&oids],
        )
        .await?;
    for row in &cols {
        let oid: u32 = row.get(0);
        let Some(t) = by_oid.get_mut(&oid) else {
            continue;
        };
        let mut c = Column::new(Ident::new(row.get::<_, String>(1)), row.get::<_, String>(2));
        c.nullable = row.get(3);
        let expr: Option<String> = row.get(4);
        let identity: String = row.get(5);
        let generated: String = row.get(6);
        c.identity = identity.chars().next();
        if generated.is_empty() {
            c.default = expr;
        } else {
            c.generated = expr;
        }
        c.comment = row.get(7);
        t.columns.push(c);
    }

    Ok(())
}

async fn read_constraints(
    client: &Client,
    oids: &[u32],
    by_oid: &mut BTreeMap<u32, Table>,
) -> Result<()> {
    let cons = client
        .query(
            "SELECT c.conrelid, c.conname::text, c.contype::text, c.convalidated, pg_get_constraintdef(c.oid),
                    coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                                FROM unnest(c.conkey) WITH ORDINALITY k(attnum, ord)
                                JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum), '{}'),
                    rn.nspname::text, rc.relname::text,
                    coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                                FROM unnest(c.confkey) WITH ORDINALITY k(attnum, ord)
                                JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum), '{}')
               FROM pg_constraint c
               LEFT JOIN pg_class rc ON rc.oid = c.confrelid
               LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
              WHERE c.conrelid = ANY($1)
              ORDER BY c.conrelid, c.conname",
            &[&oids],
        )
        .await?;
    for row in &cons {
        let oid: u32 = row.get(0);
        let Some(t) = by_oid.get_mut(&oid) else {
            continue;
        };
        let contype: String = row.get(2);
        let Some(kind) = contype
            .chars()
            .next()
            .and_then(ConstraintKind::from_contype)
        else {
            continue; // NOT NULL constraints (PG18 'n') and triggers are modelled elsewhere
        };
        let ref_schema: Option<String> = row.get(6);
        let ref_table: Option<String> = row.get(7);
        let ref_cols: Vec<String> = row.get(8);
        t.constraints.push(Constraint {
            name: Ident::new(row.get::<_, String>(1)),
            kind,
            columns: row
                .get::<_, Vec<String>>(5)
                .into_iter()
                .map(Ident::new)
                .collect(),
            definition: row.get(4),
            validated: row.get(3),
            references: match (ref_schema, ref_table) {
                (Some(s), Some(r)) => Some((
                    QualName::new(s, r),
                    ref_cols.into_iter().map(Ident::new).collect(),
                )),
                _ => None,
            },
        });
    }

    Ok(())
}

async fn read_indexes(
    client: &Client,
    oids: &[u32],
    by_oid: &mut BTreeMap<u32, Table>,
) -> Result<()> {
    let idx = client
        .query(
            "SELECT i.indrelid, ic.relname::text, i.indisunique, i.indisprimary, i.indisvalid,
                    pg_get_indexdef(i.indexrelid), pg_get_expr(i.indpred, i.indrelid), i.indexprs IS NOT NULL,
                    coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                                FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                               WHERE k.ord <= i.indnkeyatts), '{}'),
                    (SELECT c.conname::text FROM pg_constraint c
                      WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x'))
               FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
              WHERE i.indrelid = ANY($1)
              ORDER BY i.indrelid, ic.relname",
            &[&oids],
        )
        .await?;
    for row in &idx {
        let oid: u32 = row.get(0);
        let Some(t) = by_oid.get_mut(&oid) else {
            continue;
        };
        t.indexes.push(Index {
            name: Ident::new(row.get::<_, String>(1)),
            unique: row.get(2),
            primary: row.get(3),
            valid: row.get(4),
            definition: row.get(5),
            predicate: row.get(6),
            has_expressions: row.get(7),
            columns: row
                .get::<_, Vec<String>>(8)
                .into_iter()
                .map(Ident::new)
                .collect(),
            constraint: row.get::<_, Option<String>>(9).map(Ident::new),
        });
    }

    Ok(())
}

/// Whether each table holds rows: one round trip for all tables.
async fn read_has_rows(
    client: &Client,
    schema: &str,
    by_oid: &mut BTreeMap<u32, Table>,
) -> Result<()> {
    if !by_oid.is_empty() {
        let probes = by_oid
            .values()
            .map(|t| {
                format!(
                    "SELECT {}::text, EXISTS (SELECT 1 FROM {})",
                    t.physical.literal(),
                    QualName::new(schema, t.physical.clone())
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        for row in client.query(&probes, &[]).await? {
            let name: String = row.get(0);
            let has: bool = row.get(1);
            if let Some(t) = by_oid.values_mut().find(|t| t.physical.as_str() == name) {
                t.has_rows = has;
            }
        }
    }

    Ok(())
}

/// Whether a schema (namespace) exists.
pub async fn schema_exists(client: &Client, schema: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema],
        )
        .await?
        .get(0))
}

/// Roles (quoted) holding USAGE on a schema, other than its owner: they get USAGE on the
/// version schemas too.
pub async fn schema_usage_grantees(client: &Client, schema: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "SELECT DISTINCT CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(x.grantee)) END
               FROM pg_namespace n, aclexplode(n.nspacl) x
              WHERE n.nspname = $1 AND x.privilege_type = 'USAGE' AND x.grantee <> n.nspowner
              ORDER BY 1",
            &[&schema],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Answers planning probes by asking PostgreSQL itself, in a transaction that is rolled back:
/// nothing is left behind. A probe whose SQL fails (e.g. an unknown type) is answered with the
/// conservative `true`; the real error surfaces when the step runs, or in validation.
pub async fn probe(
    client: &Client,
    probes: &[crate::plan::Probe],
) -> Result<Vec<(crate::plan::Probe, bool)>> {
    use crate::plan::Probe;
    let mut answers = Vec::new();
    for p in probes {
        client.batch_execute("BEGIN").await?;
        let answer = match p {
            Probe::DefaultIsVolatile { type_name, expr } => {
                // One statement per execution (the extended protocol): the user's type and
                // default never run as a script.
                let statements = [
                    "CREATE TEMP TABLE _pgbaton_probe (k int) ON COMMIT DROP".to_string(),
                    "INSERT INTO _pgbaton_probe VALUES (1)".to_string(),
                    format!("ALTER TABLE _pgbaton_probe ADD COLUMN c {type_name} DEFAULT {expr}"),
                ];
                let mut run = Ok(0);
                for sql in &statements {
                    run = client.execute_typed(sql, &[]).await;
                    if run.is_err() {
                        break;
                    }
                }
                match run {
                    Ok(_) => {
                        let row = client
                            .query_one(
                                "SELECT atthasmissing FROM pg_attribute
                                  WHERE attrelid = 'pg_temp._pgbaton_probe'::regclass AND attname = 'c'",
                                &[],
                            )
                            .await?;
                        !row.get::<_, bool>(0)
                    }
                    Err(_) => true,
                }
            }
            Probe::TypeChangeRewrites { from, to } => {
                let setup = format!("CREATE TEMP TABLE _pgbaton_probe (c {from}) ON COMMIT DROP");
                match client.execute_typed(&setup, &[]).await {
                    Ok(_) => {
                        // An index too, when the type has a default btree opclass, so an index
                        // rebuild counts as a rewrite.
                        let _ = client.batch_execute("SAVEPOINT idx").await;
                        if client
                            .batch_execute("CREATE INDEX ON _pgbaton_probe (c)")
                            .await
                            .is_err()
                        {
                            client.batch_execute("ROLLBACK TO SAVEPOINT idx").await?;
                        }
                        let files = "SELECT array_agg(relfilenode::bigint ORDER BY oid) FROM pg_class
                                      WHERE oid = 'pg_temp._pgbaton_probe'::regclass
                                         OR oid IN (SELECT indexrelid FROM pg_index
                                                     WHERE indrelid = 'pg_temp._pgbaton_probe'::regclass)";
                        let before: Vec<i64> = client.query_one(files, &[]).await?.get(0);
                        match client
                            .execute_typed(
                                &format!("ALTER TABLE _pgbaton_probe ALTER COLUMN c TYPE {to}"),
                                &[],
                            )
                            .await
                        {
                            Ok(_) => {
                                let after: Vec<i64> = client.query_one(files, &[]).await?.get(0);
                                before != after
                            }
                            Err(_) => true,
                        }
                    }
                    Err(_) => true,
                }
            }
        };
        client.batch_execute("ROLLBACK").await?;
        answers.push((p.clone(), answer));
    }
    Ok(answers)
}
