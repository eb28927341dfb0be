//! `pgbaton verify`: the dual-write health check. During an active migration, reads a table batch
//! by batch (keyset on its key, else ctid page ranges) and checks that the physical columns the
//! dual-write trigger keeps in sync agree; reports the mismatch count and a sample of keys.
//!
//! # What is checkable
//!
//! For each rule (`new_column` ← `up(old scope)`, and `old_column` ← `down(new scope)` when there
//! is a `down`), `IS DISTINCT FROM` semantics, with `up`/`down` cast to the column's type as the
//! trigger's assignment does:
//!
//! - a row no live write has touched (marker not true) was filled by the backfill from its old
//!   columns, so `new_column` must equal `up(old)`, strictly;
//! - a touched row was last written by one of the two versions, and the boolean marker does not
//!   say which: an old-version write leaves `new = up(old)`, a new-version write leaves
//!   `old = down(new)`. The row is right when either holds. For a rule without `down`
//!   (`add_column ... up`) the new version may store anything in the new column, so a touched
//!   row that does not satisfy `new = up(old)` is counted as unverifiable, not as a mismatch.
//!   (The trigger also leaves a column alone when the write did not change its `up`/`down`
//!   result; such a value satisfied one of the relations when it was written.)
//!
//! Down-only rules (`drop_column` with `down`: [`crate::triggers::DownOnlyRule`]) are not
//! checked, because no row-level relation holds for them: a row the old version wrote keeps its
//! own value (not `down(new)`), an untouched row keeps the value it had before the migration, and
//! a row the new version updated keeps its value when the write did not change `down`'s result
//! (a constant `down` is applied on insert only). The marker does not say which version wrote
//! a row, so none of these can be told from a row whose `down` the trigger skipped by mistake.
//! A table whose trigger has only down-only rules is not read at all (an empty report).
//!
//! Rows are read in short read-only statements, one per batch, so no long snapshot holds back
//! vacuum. Each row is read as one tuple version, and the trigger writes both sides in the same
//! tuple, so concurrent writers cause no false reports. Run it after the backfill is done: rows
//! it has not reached yet are reported as mismatches (their new columns are still empty).
//! A ctid walk covers the pages that exist when it starts; rows an update moves beyond them
//! were written by the trigger.

use std::fmt;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::pg::TextRow;

use crate::ident::{quote_literal, Ident, QualName, RawSql};
use crate::step::BackfillKey;
use crate::triggers::TriggerSpec;

/// How `verify` reads the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyOptions {
    /// Rows per batch (keyset), or rows' worth of pages (ctid).
    pub batch_size: u32,
    /// How many mismatching keys to report.
    pub sample_limit: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            batch_size: 10_000,
            sample_limit: 20,
        }
    }
}

/// The result for one table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub table: String,
    /// Rows read.
    pub rows_checked: u64,
    /// Rows no live write had touched (checked strictly against `up`).
    pub rows_untouched: u64,
    /// Rows with at least one mismatching column.
    pub mismatched_rows: u64,
    pub columns: Vec<ColumnReport>,
    /// Up to `sample_limit` mismatching rows, in key order.
    pub samples: Vec<Mismatch>,
    /// True when the table's types forced comparing text renderings (a type without `=`).
    pub compared_as_text: bool,
}

impl VerifyReport {
    /// True when no row mismatches.
    pub fn is_clean(&self) -> bool {
        self.mismatched_rows == 0
    }
}

/// Per rule (per new column).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ColumnReport {
    pub new_column: String,
    pub old_column: Option<String>,
    pub mismatches: u64,
    /// Touched rows of a rule without `down` whose new column differs from `up(old)`: written by
    /// the new version, not checkable.
    pub unverifiable: u64,
}

/// One mismatching row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// The key values as text (the ctid for a table without a key).
    pub key: Vec<String>,
    /// The new columns that mismatch.
    pub columns: Vec<String>,
    /// Whether a live write had touched the row.
    pub touched: bool,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} rows checked ({} untouched), {} mismatching",
            self.table, self.rows_checked, self.rows_untouched, self.mismatched_rows
        )?;
        for c in &self.columns {
            write!(f, "\n  {}: {} mismatches", c.new_column, c.mismatches)?;
            if c.unverifiable > 0 {
                write!(
                    f,
                    ", {} written by the new version (not checkable)",
                    c.unverifiable
                )?;
            }
        }
        for m in &self.samples {
            write!(
                f,
                "\n  key ({}): {}{}",
                m.key.join(", "),
                m.columns.join(", "),
                if m.touched {
                    " (touched by a live write)"
                } else {
                    ""
                }
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("verify {table}: {context}: {}", crate::pg::describe(.source))]
    Db {
        table: String,
        context: String,
        source: tokio_postgres::Error,
    },

    #[error("verify {table}: the table or column {column} does not exist")]
    NotFound { table: String, column: String },

    #[error("verify {table}: unexpected reply from the server: {detail}")]
    Protocol { table: String, detail: String },
}

/// Checks every row of `spec.table` (see the module documentation). `key` is the key the
/// backfill walks (`BackfillSpec::key`).
pub async fn verify(
    client: &Client,
    spec: &TriggerSpec,
    key: &BackfillKey,
    opts: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    let table = spec.table.to_string();
    if spec.rules.is_empty() {
        // Only down-only rules (see the module documentation): nothing is checkable.
        return Ok(VerifyReport {
            table,
            ..VerifyReport::default()
        });
    }
    let types = column_types(client, spec).await?;
    match run(client, spec, key, opts, &types, false).await {
        Err(VerifyError::Db { source, .. })
            if source.code() == Some(&SqlState::UNDEFINED_FUNCTION) =>
        {
            // A type without `=` (json, point, ...): compare the text renderings instead.
            run(client, spec, key, opts, &types, true).await
        }
        other => other,
    }
    .map(|mut report| {
        report.table = table;
        report
    })
}

/// `format_type` of each rule's columns, for casting `up`/`down` as the trigger's assignment
/// does. The text is PostgreSQL's own rendering of a type name (quoted where needed).
struct RuleTypes {
    new: Vec<String>,
    old: Vec<Option<String>>,
}

async fn column_types(client: &Client, spec: &TriggerSpec) -> Result<RuleTypes, VerifyError> {
    let mut new = Vec::new();
    let mut old = Vec::new();
    for rule in &spec.rules {
        new.push(column_type(client, &spec.table, &rule.new_column).await?);
        old.push(match rule.down_pair() {
            Some((c, _)) => Some(column_type(client, &spec.table, c).await?),
            None => None,
        });
    }
    Ok(RuleTypes { new, old })
}

async fn column_type(
    client: &Client,
    table: &QualName,
    column: &Ident,
) -> Result<String, VerifyError> {
    let row = client
        .query_opt(
            "SELECT format_type(a.atttypid, a.atttypmod)
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3
                AND a.attnum > 0 AND NOT a.attisdropped",
            &[
                &table.schema.as_str(),
                &table.name.as_str(),
                &column.as_str(),
            ],
        )
        .await
        .map_err(|source| VerifyError::Db {
            table: table.to_string(),
            context: "reading the catalog".into(),
            source,
        })?;
    row.map(|r| r.get(0)).ok_or_else(|| VerifyError::NotFound {
        table: table.to_string(),
        column: column.to_string(),
    })
}

/// `(expr)` over `scope`: direct when the scope is the identity, else over a one-row sub-query
/// exposing the scope's names. Also the backfill's `SET` expressions.
pub(crate) fn scoped(table: &QualName, scope: &[(Ident, Ident)], expr: &RawSql) -> String {
    if scope.iter().all(|(name, physical)| name == physical) {
        format!("({expr})")
    } else {
        let row = scope
            .iter()
            .map(|(name, physical)| format!("{table}.{physical} AS {name}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("(SELECT ({expr}) FROM (SELECT {row}) AS _pgbaton_scope)")
    }
}

fn same(a: &str, b: &str, as_text: bool) -> String {
    if as_text {
        format!("({a})::text IS NOT DISTINCT FROM ({b})::text")
    } else {
        format!("({a}) IS NOT DISTINCT FROM ({b})")
    }
}

/// Per-row expressions: `_pgbaton_bad_<i>` and `_pgbaton_unv_<i>` for each rule.
fn row_checks(spec: &TriggerSpec, types: &RuleTypes, as_text: bool) -> String {
    let t = &spec.table;
    let touched = format!("{t}.{} IS TRUE", spec.marker);
    let mut out = String::new();
    for (i, rule) in spec.rules.iter().enumerate() {
        let expected_new = format!(
            "CAST({} AS {})",
            scoped(t, &spec.old_scope, &rule.up),
            types.new[i]
        );
        let up_ok = same(&format!("{t}.{}", rule.new_column), &expected_new, as_text);
        let (bad, unverifiable) = match (rule.down_pair(), &types.old[i]) {
            (Some((old, down)), Some(old_type)) => {
                let expected_old =
                    format!("CAST({} AS {old_type})", scoped(t, &spec.new_scope, down));
                let down_ok = same(&format!("{t}.{old}"), &expected_old, as_text);
                (
                    format!("NOT ({up_ok}) AND (NOT ({touched}) OR NOT ({down_ok}))"),
                    "false".to_string(),
                )
            }
            _ => (
                format!("NOT ({up_ok}) AND NOT ({touched})"),
                format!("NOT ({up_ok}) AND ({touched})"),
            ),
        };
        let _ = write!(
            out,
            ", coalesce({bad}, true) AS _pgbaton_bad_{i}, coalesce({unverifiable}, false) AS _pgbaton_unv_{i}"
        );
    }
    let _ = write!(out, ", {touched} AS _pgbaton_touched_row");
    out
}

/// The aggregate over one batch: counts, per-rule counts, samples, and (keyset) the last key.
fn batch_sql(
    spec: &TriggerSpec,
    types: &RuleTypes,
    as_text: bool,
    source: &str,
    key_exprs: &[String],
    tail: &str,
    sample_limit: usize,
) -> String {
    // `verify` returns before this for a table without rules.
    let n = spec.rules.len();
    let any_bad = (0..n)
        .map(|i| format!("_pgbaton_bad_{i}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let key_json = format!(
        "jsonb_build_array({})",
        (0..key_exprs.len())
            .map(|i| format!("to_jsonb(_pgbaton_k{i}) #>> '{{}}'"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let bad_columns = format!(
        "jsonb_build_array({})",
        (0..n)
            .map(|i| format!("CASE WHEN _pgbaton_bad_{i} THEN {i} END"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let keys = key_exprs
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{k} AS _pgbaton_k{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let key_order = (0..key_exprs.len())
        .map(|i| format!("_pgbaton_k{i}"))
        .collect::<Vec<_>>();
    let mut sql = format!(
        "WITH _pgbaton_rows AS (SELECT {keys}{checks} FROM {source}{tail})\n\
         SELECT count(*), count(*) FILTER (WHERE NOT _pgbaton_touched_row)",
        checks = row_checks(spec, types, as_text),
    );
    for i in 0..n {
        let _ = write!(
            sql,
            ", count(*) FILTER (WHERE _pgbaton_bad_{i}), count(*) FILTER (WHERE _pgbaton_unv_{i})"
        );
    }
    let _ = write!(
        sql,
        ", count(*) FILTER (WHERE {any_bad}), \
         (array_agg(jsonb_build_object('key', {key_json}, 'columns', {bad_columns}, 'touched', _pgbaton_touched_row)::text \
         ORDER BY {ko}) FILTER (WHERE {any_bad}))[1:{sample_limit}]::text, \
         (array_agg({key_json}::text ORDER BY {ko_desc}))[1] \
         FROM _pgbaton_rows",
        ko = key_order.join(", "),
        ko_desc = key_order.iter().map(|k| format!("{k} DESC")).collect::<Vec<_>>().join(", "),
    );
    sql
}

async fn run(
    client: &Client,
    spec: &TriggerSpec,
    key: &BackfillKey,
    opts: &VerifyOptions,
    types: &RuleTypes,
    as_text: bool,
) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport {
        columns: spec
            .rules
            .iter()
            .map(|r| ColumnReport {
                new_column: r.new_column.as_str().to_string(),
                old_column: r.old_column.as_ref().map(|c| c.as_str().to_string()),
                ..ColumnReport::default()
            })
            .collect(),
        compared_as_text: as_text,
        table: spec.table.to_string(),
        ..VerifyReport::default()
    };
    match key {
        BackfillKey::Columns(cols) => {
            walk_keyset(client, spec, cols, opts, types, as_text, &mut report).await?
        }
        BackfillKey::Ctid => walk_ctid(client, spec, opts, types, as_text, &mut report).await?,
    }
    Ok(report)
}

/// A database error of `table` while doing `context`.
fn db_error(table: &str, context: &str) -> impl FnOnce(tokio_postgres::Error) -> VerifyError {
    let table = table.to_string();
    let context = context.to_string();
    move |source| VerifyError::Db {
        table,
        context,
        source,
    }
}

/// Reads the table in key order, `batch_size` rows at a time.
async fn walk_keyset(
    client: &Client,
    spec: &TriggerSpec,
    cols: &[Ident],
    opts: &VerifyOptions,
    types: &RuleTypes,
    as_text: bool,
    report: &mut VerifyReport,
) -> Result<(), VerifyError> {
    let t = &spec.table;
    let table = t.to_string();
    let limit = opts.batch_size.max(1);
    let qualified: Vec<String> = cols.iter().map(|c| format!("{t}.{c}")).collect();
    let row = format!("({})", qualified.join(", "));
    let mut last: Option<Vec<String>> = None;
    loop {
        let lower = last
            .as_ref()
            .map(|values| {
                format!(
                    " WHERE {row} > ({})",
                    values
                        .iter()
                        .map(|v| quote_literal(v))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
            .unwrap_or_default();
        let source = format!("{t}{lower}");
        let tail = format!(" ORDER BY {} LIMIT {limit}", qualified.join(", "));
        let sql = batch_sql(
            spec,
            types,
            as_text,
            &source,
            &qualified,
            &tail,
            opts.sample_limit,
        );
        // The statement holds the `up`: alone, through the extended protocol.
        let rows = crate::pg::query_text(client, &sql)
            .await
            .map_err(db_error(&table, "reading a batch"))?;
        let row = rows
            .first()
            .ok_or_else(|| protocol(&table, "no batch row"))?;
        let read = absorb(report, row, spec.rules.len(), opts.sample_limit)?;
        if read == 0 {
            break;
        }
        let last_key = row
            .get(4 + 2 * spec.rules.len())
            .ok_or_else(|| protocol(&table, "no last key"))?;
        last = Some(
            serde_json::from_str::<Vec<String>>(last_key)
                .map_err(|e| protocol(&table, &format!("last key {last_key}: {e}")))?,
        );
        if read < u64::from(limit) {
            break;
        }
    }
    Ok(())
}

/// Reads the table by ranges of pages, about `batch_size` rows' worth each.
async fn walk_ctid(
    client: &Client,
    spec: &TriggerSpec,
    opts: &VerifyOptions,
    types: &RuleTypes,
    as_text: bool,
    report: &mut VerifyReport,
) -> Result<(), VerifyError> {
    let t = &spec.table;
    let table = t.to_string();
    let limit = opts.batch_size.max(1);
    let size = client
        .query_one(
            &format!(
                "SELECT pg_relation_size({r}) / current_setting('block_size')::bigint, \
                 greatest(c.reltuples / nullif(c.relpages, 0), 1)::float8 \
                 FROM pg_class c WHERE c.oid = {r}",
                r = t.regclass()
            ),
            &[],
        )
        .await
        .map_err(db_error(&table, "reading the table size"))?;
    let pages: i64 = size.get(0);
    let density: f64 = size.get::<_, Option<f64>>(1).unwrap_or(100.0);
    let step = ((f64::from(limit) / density).ceil() as i64).max(1);
    let ctid = vec![format!("{t}.ctid")];
    let mut from = 0i64;
    while from < pages {
        let to = (from + step).min(pages);
        let source =
            format!("{t} WHERE {t}.ctid >= '({from},0)'::tid AND {t}.ctid < '({to},0)'::tid");
        let sql = batch_sql(spec, types, as_text, &source, &ctid, "", opts.sample_limit);
        // The statement holds the `up`: alone, through the extended protocol.
        let rows = crate::pg::query_text(client, &sql)
            .await
            .map_err(db_error(&table, "reading a batch"))?;
        let row = rows
            .first()
            .ok_or_else(|| protocol(&table, "no batch row"))?;
        absorb(report, row, spec.rules.len(), opts.sample_limit)?;
        from = to;
    }
    Ok(())
}

/// Adds one batch's aggregate row to the report; returns the rows read.
fn absorb(
    report: &mut VerifyReport,
    row: &TextRow,
    rules: usize,
    sample_limit: usize,
) -> Result<u64, VerifyError> {
    let table = report.table.clone();
    let num = |i: usize| -> Result<u64, VerifyError> {
        row.get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| protocol(&table, &format!("column {i} is not a count")))
    };
    let read = num(0)?;
    report.rows_checked += read;
    report.rows_untouched += num(1)?;
    for i in 0..rules {
        report.columns[i].mismatches += num(2 + 2 * i)?;
        report.columns[i].unverifiable += num(3 + 2 * i)?;
    }
    report.mismatched_rows += num(2 + 2 * rules)?;
    if let Some(samples) = row.get(3 + 2 * rules) {
        for text in parse_text_array(samples) {
            if report.samples.len() >= sample_limit {
                break;
            }
            #[derive(Deserialize)]
            struct Sample {
                key: Vec<String>,
                columns: Vec<Option<usize>>,
                touched: bool,
            }
            let sample: Sample = serde_json::from_str(&text)
                .map_err(|e| protocol(&table, &format!("sample {text}: {e}")))?;
            report.samples.push(Mismatch {
                key: sample.key,
                columns: sample
                    .columns
                    .into_iter()
                    .flatten()
                    .filter_map(|i| report.columns.get(i).map(|c| c.new_column.clone()))
                    .collect(),
                touched: sample.touched,
            });
        }
    }
    Ok(read)
}

/// Parses a PostgreSQL text array literal of (quoted) strings, `{"a","b"}`.
fn parse_text_array(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let inner = s.trim().trim_start_matches('{').trim_end_matches('}');
    let mut chars = inner.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ',' | ' ' => {
                chars.next();
            }
            '"' => {
                chars.next();
                let mut item = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(e) = chars.next() {
                                item.push(e);
                            }
                        }
                        '"' => break,
                        c => item.push(c),
                    }
                }
                out.push(item);
            }
            _ => {
                let mut item = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    item.push(c);
                    chars.next();
                }
                if item != "NULL" {
                    out.push(item);
                }
            }
        }
    }
    out
}

fn protocol(table: &str, detail: &str) -> VerifyError {
    VerifyError::Protocol {
        table: table.to_string(),
        detail: detail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_arrays_parse() {
        assert_eq!(
            parse_text_array(r#"{"{\"key\": [\"1\"]}","{\"key\": [\"2\"]}"}"#),
            vec![
                r#"{"key": ["1"]}"#.to_string(),
                r#"{"key": ["2"]}"#.to_string()
            ]
        );
        assert_eq!(parse_text_array("{}"), Vec::<String>::new());
        assert_eq!(
            parse_text_array("{a,b}"),
            vec!["a".to_string(), "b".to_string()]
        );
    }

    #[test]
    fn renamed_scope_evaluates_over_a_row() {
        let t = QualName::new("public", "t");
        let scope = vec![(Ident::new("email"), Ident::new("_pgbaton_new_email"))];
        assert_eq!(
            scoped(&t, &scope, &RawSql::new("lower(email)")),
            "(SELECT (lower(email)) FROM (SELECT \"public\".\"t\".\"_pgbaton_new_email\" AS \"email\") AS _pgbaton_scope)"
        );
        let identity = vec![(Ident::new("email"), Ident::new("email"))];
        assert_eq!(
            scoped(&t, &identity, &RawSql::new("lower(email)")),
            "(lower(email))"
        );
    }
}
