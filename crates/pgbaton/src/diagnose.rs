//! Naming the row behind a failure. PostgreSQL says "division by zero" or "check constraint ...
//! is violated by some row" without saying which row; these queries find the first one (in key
//! order) after the failure, so the message can name its key. They only read, run only on the
//! error path, and give up quietly (a failure to diagnose never hides the original error).

use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::error::Error;
use crate::ident::{Ident, Literal, QualName};
use crate::step::{BackfillKey, BackfillSpec};

/// How long a diagnosis may take before it gives up.
const TIMEOUT: &str = "60s";

/// The key columns of `table` (its primary key), as a `json_build_object(...)` of `alias`'s
/// columns, and the `ORDER BY` list; ctid when it has none.
async fn key_of(client: &Client, table: &QualName) -> Option<(String, String)> {
    let rows = client
        .query(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
             WHERE i.indrelid = to_regclass($1) AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
            &[&table.to_string()],
        )
        .await
        .ok()?;
    let columns: Vec<Ident> = rows
        .iter()
        .map(|r| Ident::new(r.get::<_, String>(0)))
        .collect();
    Some(key_sql(&columns))
}

fn key_sql(columns: &[Ident]) -> (String, String) {
    if columns.is_empty() {
        return (
            "json_build_object('ctid', ctid::text)".into(),
            "ctid".into(),
        );
    }
    let pairs = columns
        .iter()
        .map(|c| format!("{}, {c}", Literal::new(c.as_str())))
        .collect::<Vec<_>>()
        .join(", ");
    let order = columns
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    (format!("json_build_object({pairs})"), order)
}

/// Runs `sql` (one read-only statement returning one text column) in a read-only transaction
/// with a timeout; the values of its rows.
async fn read(client: &Client, sql: &str) -> Option<Vec<String>> {
    let _ = client.batch_execute("ROLLBACK").await;
    client
        .batch_execute(&format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = '{TIMEOUT}'"
        ))
        .await
        .ok()?;
    let rows = client.query(sql, &[]).await;
    let _ = client.batch_execute("ROLLBACK").await;
    Some(
        rows.ok()?
            .iter()
            .filter_map(|r| r.get::<_, Option<String>>(0))
            .collect(),
    )
}

/// For a constraint failure (a check or `NOT NULL` found violated while validating it): the keys
/// of the first rows that break it, as a sentence; `None` when `e` is no such failure or the
/// rows cannot be found.
pub async fn violating_rows(client: &Client, e: &Error) -> Option<String> {
    let Error::Db(source) = e else { return None };
    let db = source.as_db_error()?;
    let table = QualName::new(db.schema()?, db.table()?);
    let filter = if *db.code() == SqlState::CHECK_VIOLATION {
        let row = client
            .query_opt(
                "SELECT pg_get_expr(c.conbin, c.conrelid) FROM pg_constraint c \
                 WHERE c.conrelid = to_regclass($1) AND c.conname = $2 AND c.contype = 'c'",
                &[&table.to_string(), &db.constraint()?],
            )
            .await
            .ok()??;
        format!("NOT ({})", row.get::<_, String>(0))
    } else if *db.code() == SqlState::NOT_NULL_VIOLATION {
        format!("{} IS NULL", Ident::new(db.column()?))
    } else {
        return None;
    };
    let (key, order) = key_of(client, &table).await?;
    let keys = read(
        client,
        &format!("SELECT {key}::text FROM {table} WHERE {filter} ORDER BY {order} LIMIT 3"),
    )
    .await?;
    if keys.is_empty() {
        return None;
    }
    Some(format!(
        "rows of {table} that break it (first {} in key order): {}",
        keys.len(),
        keys.join(", ")
    ))
}

/// For a backfill that failed on the data (an `up` that raises for some row, or a value that does
/// not fit the new column): the key of the first row, in key order, whose `up` fails, and the
/// error it raises. Evaluates the assignments row by row in one sub-transaction.
pub async fn failing_backfill_row(client: &Client, spec: &BackfillSpec) -> Option<String> {
    let table = &spec.table;
    let (key, order) = match &spec.key {
        BackfillKey::Columns(columns) => key_sql(columns),
        BackfillKey::Ctid => key_sql(&[]),
    };
    let mut declare = String::new();
    let mut targets = Vec::new();
    let mut exprs = Vec::new();
    for (i, a) in spec.assignments.iter().enumerate() {
        declare.push_str(&format!(
            "  _v{i} {}.{}.{}%TYPE;\n",
            table.schema, table.name, a.target
        ));
        targets.push(format!("_v{i}"));
        exprs.push(crate::verify::scoped(table, &spec.scope, &a.expr));
    }
    if exprs.is_empty() {
        return None;
    }
    let body = format!(
        "DECLARE\n  _r record;\n  _key text;\n{declare}BEGIN\n  \
         FOR _r IN SELECT {key}::text AS k, ctid AS c FROM {table} ORDER BY {order} LOOP\n    \
         _key := _r.k;\n    \
         SELECT {exprs} INTO {targets} FROM {table} WHERE ctid = _r.c;\n  \
         END LOOP;\n  RETURN NULL;\n\
         EXCEPTION WHEN OTHERS THEN\n  RETURN _key || ': ' || SQLERRM;\nEND",
        exprs = exprs.join(", "),
        targets = targets.join(", "),
    );
    let mut tag = "$_pgbaton_$".to_string();
    while body.contains(&tag) {
        tag.insert(1, 'x');
    }
    let _ = client.batch_execute("ROLLBACK").await;
    let create = format!(
        "CREATE OR REPLACE FUNCTION pg_temp._pgbaton_first_failing() RETURNS text \
         LANGUAGE plpgsql AS {tag}\n{body}\n{tag}"
    );
    client.execute_typed(&create, &[]).await.ok()?;
    let found = read(client, "SELECT pg_temp._pgbaton_first_failing()").await;
    let _ = client
        .batch_execute("DROP FUNCTION IF EXISTS pg_temp._pgbaton_first_failing()")
        .await;
    found?.into_iter().next()
}
