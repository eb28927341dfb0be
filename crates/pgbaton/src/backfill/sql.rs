//! The SQL of a batch (pure): set lists, filters, keyset / ctid / value-range statements, the
//! transaction settings and the checkpoint columns.

use std::fmt::Write as _;

use crate::ident::{quote_literal, Ident, Literal, QualName};
use crate::step::{BackfillKey, BackfillPass, BackfillSpec};
use crate::triggers::BACKFILL_SETTING;

use super::options::{BackfillOptions, TriggerBypass};

/// The `SET` list of the batch update. With an identity scope the expressions run directly;
/// otherwise each is evaluated over a one-row sub-query exposing the names it uses.
pub(super) fn set_list(spec: &BackfillSpec) -> String {
    spec.assignments
        .iter()
        .map(|a| {
            format!(
                "{} = {}",
                a.target,
                crate::verify::scoped(&spec.table, &spec.scope, &a.expr)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The filter a batch adds to its range. Without a write window: the rows no live write touched
/// (marker not set). A fill with a write window: every row (no trigger can have touched one, and
/// the marker column does not exist yet). A catch-up pass: the rows no live write touched since
/// the trigger was installed and that no batch of this backfill wrote last (their `xmin` is not
/// one of the batches' transaction ids): the old version wrote them during the fill.
///
/// A ctid fill with a write window also skips the rows its own earlier batches wrote: an update
/// that does not fit in its page moves the row, possibly to a page the walk has not reached yet.
pub(super) fn pending(spec: &BackfillSpec, cp: &CheckpointKey<'_>) -> String {
    let t = &spec.table;
    let not_ours = || {
        format!(
            "NOT EXISTS (SELECT 1 FROM {} AS _pgbaton_x WHERE {} AND _pgbaton_x.xid = {t}.xmin)",
            cp.xids_table(),
            cp.table_filter("_pgbaton_x"),
        )
    };
    match (spec.pass, &spec.window, &spec.key) {
        (_, None, _) => format!("{t}.{} IS NOT TRUE", spec.marker),
        (BackfillPass::Fill, Some(_), BackfillKey::Ctid) => not_ours(),
        (BackfillPass::Fill, Some(_), BackfillKey::Columns(_)) => "true".to_string(),
        (BackfillPass::CatchUp, Some(_), _) => {
            format!("{t}.{} IS NOT TRUE AND {}", spec.marker, not_ours())
        }
    }
}

/// The statement a batch of a backfill with a write window runs in its transaction: its
/// transaction id goes into `backfill_xids` (see [`pending`]), unless it is there already (a
/// batch that bypasses the dual-write trigger with the `pgbaton.backfill` setting records it
/// first, at its `BEGIN`).
pub(super) fn record_xid_sql(spec: &BackfillSpec, cp: &CheckpointKey<'_>) -> Option<String> {
    spec.window.as_ref().map(|_| {
        let (migration, schema, name) = (
            Literal::new(cp.migration),
            Literal::new(cp.table.schema.as_str()),
            Literal::new(cp.table.name.as_str()),
        );
        let xids = cp.xids_table();
        format!(
            "INSERT INTO {xids} (migration, table_schema, table_name, xid) \
             SELECT {migration}, {schema}, {name}, pg_current_xact_id()::xid \
              WHERE NOT EXISTS (SELECT 1 FROM {xids} AS _pgbaton_r \
                                 WHERE _pgbaton_r.xid = pg_current_xact_id()::xid \
                                   AND _pgbaton_r.migration = {migration} \
                                   AND _pgbaton_r.table_schema = {schema} \
                                   AND _pgbaton_r.table_name = {name})"
        )
    })
}

/// A batch's SQL, without its transaction control.
pub(super) enum BatchSql {
    /// One statement: the update and the checkpoint together, in a `WITH` (keyset walks, capped
    /// value ranges). Returns the batch's result row.
    Single(String),
    /// The update alone, then — a second round trip in the same transaction — the statements
    /// that write the checkpoint, given the rows the update changed (from its command tag), and
    /// return the batch's result row. A plain `UPDATE` costs ≈5% less than the same update
    /// inside `WITH ... RETURNING` (measured on PG15), which counting its rows in SQL needs.
    Split {
        update: String,
        /// Runs first in the second round trip (recording the batch's transaction id).
        prelude: Option<String>,
        checkpoint: Box<dyn Fn(u64) -> String + Send + Sync>,
    },
}

impl BatchSql {
    /// The statements that read the table, for `EXPLAIN`.
    pub(super) fn explained(&self) -> Vec<String> {
        match self {
            BatchSql::Single(sql) => vec![sql.clone()],
            BatchSql::Split {
                update, checkpoint, ..
            } => vec![update.clone(), checkpoint(0)],
        }
    }

    /// The second round trip's statements, given the rows updated.
    pub(super) fn finish(
        prelude: &Option<String>,
        checkpoint: &(dyn Fn(u64) -> String + Send + Sync),
        n: u64,
    ) -> String {
        match prelude {
            Some(sql) => format!("{sql};\n{}", checkpoint(n)),
            None => checkpoint(n),
        }
    }
}

/// `BEGIN` and the `SET LOCAL`s of a batch transaction.
pub(super) fn batch_begin(
    opts: &BackfillOptions,
    bypass: TriggerBypass,
    index_walk: bool,
) -> String {
    let mut s = String::from("BEGIN ISOLATION LEVEL READ COMMITTED;\n");
    s.push_str(&batch_settings(opts, bypass, index_walk));
    s
}

/// A batch statement in its transaction: `BEGIN`, the `SET LOCAL`s, the statement, `COMMIT`.
#[cfg(test)]
pub(super) fn batch_transaction(
    opts: &BackfillOptions,
    bypass: TriggerBypass,
    index_walk: bool,
    statement: &str,
) -> String {
    let mut s = batch_begin(opts, bypass, index_walk);
    let _ = write!(s, "{statement};\nCOMMIT;\n");
    s
}

/// `SET LOCAL` lines that start every batch transaction.
///
/// A key batch (keyset or value range) also turns off sequential scans and sorts for its
/// statement; a value range's bounds are constants the planner could otherwise price at a
/// large share of the table (a wide batch, stale statistics). Without
/// statistics on the key (a table never analyzed) or with an uncorrelated key (a uuid), the
/// planner prices an ordered index scan as random I/O and may read the next keys with a full
/// scan and a sort, per batch, which is quadratic in the table size. Turned off, they are only
/// used where nothing else can do the job (e.g. inside a user's `up` sub-query on a table
/// without an index): the settings change plan choices, never results.
///
/// JIT is off for every batch: a batch is planned and run once, and compiling it costs more
/// than it saves (hundreds of milliseconds once the disabled paths push the estimated cost over
/// `jit_above_cost`, measured on PG15).
pub(super) fn batch_settings(
    opts: &BackfillOptions,
    bypass: TriggerBypass,
    index_walk: bool,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "SET LOCAL lock_timeout = '{}ms';",
        opts.lock_timeout.as_millis().max(1)
    );
    s.push_str("SET LOCAL statement_timeout = 0;\nSET LOCAL jit = off;\n");
    // The commit does not wait for its WAL to reach disk. Safe here: a crash can only lose the
    // last batches whole, together with their checkpoint (they are in one transaction), and a
    // later run redoes them; any later commit that waits for disk also carries them (WAL is
    // sequential), so no live write can depend on a lost batch.
    s.push_str("SET LOCAL synchronous_commit = off;\n");
    match bypass {
        TriggerBypass::ReplicationRole | TriggerBypass::Auto => {
            s.push_str("SET LOCAL session_replication_role = replica;\n")
        }
        TriggerBypass::Setting => {
            let _ = writeln!(s, "SET LOCAL {BACKFILL_SETTING} = 'on';");
        }
    }
    if index_walk {
        s.push_str("SET LOCAL enable_seqscan = off;\nSET LOCAL enable_sort = off;\n");
    }
    s
}

/// Checkpoint columns written with every batch: the run's statistics so far.
#[derive(Clone, Debug, Default)]
pub(super) struct Stats {
    pub(super) batch_size: u32,
    pub(super) rate: f64,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) paused_seconds: f64,
    /// [`super::status::RunSettings`] and [`super::status::Throttle`] as text.
    pub(super) settings: String,
    pub(super) throttle: Option<String>,
}

impl Stats {
    pub(super) fn set_sql(&self) -> String {
        format!(
            "batches = batches + 1, batch_size = {}, rate = {}, batch_p50_ms = {}, \
             batch_p99_ms = {}, paused_seconds = {}, status = 'running', pause_reason = NULL, \
             error = NULL, updated_at = clock_timestamp(), settings = {}, throttle_reason = {}",
            self.batch_size,
            finite(self.rate),
            finite(self.p50_ms),
            finite(self.p99_ms),
            finite(self.paused_seconds),
            Literal::new(&self.settings),
            self.throttle
                .as_deref()
                .map_or_else(|| "NULL".to_string(), |t| Literal::new(t).to_string())
        )
    }
}

pub(super) fn finite(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "0".to_string()
    }
}

/// Identifies the checkpoint row.
pub(super) struct CheckpointKey<'a> {
    pub(super) state: &'a Ident,
    pub(super) migration: &'a str,
    pub(super) table: &'a QualName,
    pub(super) pass: BackfillPass,
    /// A chunk of a parallel fill (its start): the checkpoint is the chunk's row.
    pub(super) chunk: Option<i64>,
}

impl CheckpointKey<'_> {
    pub(super) fn table(&self) -> String {
        match self.chunk {
            Some(_) => self.chunks_table(),
            None => format!("{}.backfills", self.state),
        }
    }

    /// The chunks of the parallel fills (see [`super::parallel`]).
    pub(super) fn chunks_table(&self) -> String {
        format!("{}.backfill_chunks", self.state)
    }

    /// The transaction ids of the batches of the backfills (see [`pending`]).
    pub(super) fn xids_table(&self) -> String {
        format!("{}.backfill_xids", self.state)
    }

    /// Rows of `alias` (a `backfills` or `backfill_xids` row) that belong to this table.
    pub(super) fn table_filter(&self, alias: &str) -> String {
        format!(
            "{alias}.migration = {} AND {alias}.table_schema = {} AND {alias}.table_name = {}",
            Literal::new(self.migration),
            Literal::new(self.table.schema.as_str()),
            Literal::new(self.table.name.as_str()),
        )
    }

    pub(super) fn filter(&self) -> String {
        let chunk = self
            .chunk
            .map(|lo| format!(" AND chunk_lo = {lo}"))
            .unwrap_or_default();
        format!(
            "migration = {} AND table_schema = {} AND table_name = {} AND pass = {}{chunk}",
            Literal::new(self.migration),
            Literal::new(self.table.schema.as_str()),
            Literal::new(self.table.name.as_str()),
            Literal::new(self.pass.as_str())
        )
    }
}

/// A keyset batch: the first `limit` keys after `last`, then one update over the key range of
/// exactly those keys, then the checkpoint. Returns a row: (walked, updated, checkpoint rows, end
/// key columns as text...).
///
/// The update's range is bounded on both sides by the batch's own first and last keys (InitPlan
/// parameters, unknown when the statement is planned): two-sided bounds on one column get the
/// planner's small default range selectivity, so it picks the key's index whatever the
/// statistics say; a one-sided bound (`key <= $end`) would be estimated at a third of the table
/// and planned as a sequential scan. For a composite key the first column is bounded on its own
/// too, for the same reason (row comparisons are estimated as one-sided).
pub(super) fn keyset_batch_sql(
    spec: &BackfillSpec,
    key: &[Ident],
    cp: &CheckpointKey<'_>,
    last: Option<&[String]>,
    limit: u32,
    stats: &Stats,
) -> String {
    let t = &spec.table;
    let qualified = key.iter().map(|k| format!("{t}.{k}")).collect::<Vec<_>>();
    let row = |cols: &[String]| {
        if cols.len() == 1 {
            cols[0].clone()
        } else {
            format!("({})", cols.join(", "))
        }
    };
    let lower = last.map(|values| {
        let literals = values.iter().map(|v| quote_literal(v)).collect::<Vec<_>>();
        format!(" WHERE {} > {}", row(&qualified), row(&literals))
    });
    let plain = key.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    let order = |dir: &str| {
        plain
            .iter()
            .map(|k| format!("{k} {dir}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let from = |cte: &str| {
        plain
            .iter()
            .map(|k| format!("(SELECT {k} FROM {cte})"))
            .collect::<Vec<_>>()
    };
    let (start, end) = (from("_pgbaton_start"), from("_pgbaton_end"));
    let mut range = format!(
        "{first} >= {s0} AND {first} <= {e0}",
        first = qualified[0],
        s0 = start[0],
        e0 = end[0]
    );
    if key.len() > 1 {
        let _ = write!(
            range,
            " AND {r} >= {s} AND {r} <= {e}",
            r = row(&qualified),
            s = row(&start),
            e = row(&end)
        );
    }
    let end_text = plain
        .iter()
        .map(|k| format!("to_jsonb({k}) #>> '{{}}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let xid_cte = record_xid_sql(spec, cp)
        .map(|sql| format!("_pgbaton_xid AS (\n  {sql}\n), "))
        .unwrap_or_default();
    format!(
        "WITH {xid_cte}_pgbaton_batch AS (\n  SELECT {cols} FROM {t}{where_lower} ORDER BY {cols} LIMIT {limit}\n), \
         _pgbaton_start AS (\n  SELECT {plain_cols} FROM _pgbaton_batch ORDER BY {asc} LIMIT 1\n), \
         _pgbaton_end AS (\n  SELECT {plain_cols}, (SELECT count(*) FROM _pgbaton_batch) AS _pgbaton_n \
         FROM _pgbaton_batch ORDER BY {desc} LIMIT 1\n), \
         _pgbaton_done AS (\n  UPDATE {t} SET {set}\n  WHERE {range} AND {pending}\n  RETURNING 1\n), \
         _pgbaton_cp AS (\n  UPDATE {cp_table} SET last_key = coalesce((SELECT ARRAY[{end_text}] FROM _pgbaton_end), last_key), \
         rows_done = rows_done + coalesce((SELECT _pgbaton_n FROM _pgbaton_end), 0), \
         rows_updated = rows_updated + (SELECT count(*) FROM _pgbaton_done), {stats}\n  WHERE {filter}\n  RETURNING 1\n)\n\
         SELECT coalesce((SELECT _pgbaton_n FROM _pgbaton_end), 0), (SELECT count(*) FROM _pgbaton_done), \
         (SELECT count(*) FROM _pgbaton_cp){end_cols}",
        cols = qualified.join(", "),
        where_lower = lower.unwrap_or_default(),
        plain_cols = plain.join(", "),
        asc = order("ASC"),
        desc = order("DESC"),
        set = set_list(spec),
        pending = pending(spec, cp),
        cp_table = cp.table(),
        stats = stats.set_sql(),
        filter = cp.filter(),
        end_cols = plain
            .iter()
            .map(|k| format!(", (SELECT to_jsonb({k}) #>> '{{}}' FROM _pgbaton_end)"))
            .collect::<String>(),
    )
}

/// A ctid batch: pages `[from, to)`. Its result row: (updated, checkpoint rows, relfilenode).
pub(super) fn ctid_batch_sql(
    spec: &BackfillSpec,
    cp: &CheckpointKey<'_>,
    from: i64,
    to: i64,
    stats: &Stats,
) -> BatchSql {
    let t = &spec.table;
    let update = format!(
        "UPDATE {t} SET {set}\nWHERE {t}.ctid >= '({from},0)'::tid AND {t}.ctid < '({to},0)'::tid \
         AND {pending}",
        set = set_list(spec),
        pending = pending(spec, cp),
    );
    let (cp_table, stats, filter, regclass) =
        (cp.table(), stats.set_sql(), cp.filter(), t.regclass());
    BatchSql::Split {
        update,
        prelude: record_xid_sql(spec, cp),
        checkpoint: Box::new(move |n| {
            format!(
                "WITH _pgbaton_cp AS (\n  UPDATE {cp_table} SET last_page = {to}, \
                 rows_done = rows_done + {n}, rows_updated = rows_updated + {n}, {stats}\n  \
                 WHERE {filter}\n  RETURNING 1\n)\n\
                 SELECT {n}, (SELECT count(*) FROM _pgbaton_cp), pg_relation_filenode({regclass})"
            )
        }),
    }
}

/// A single-column integer key with a btree index: the walk can go by value ranges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct IntKey {
    pub(super) column: Ident,
    /// `smallint`, `integer` or `bigint`.
    pub(super) type_name: &'static str,
}

impl IntKey {
    pub(super) fn for_type(column: &Ident, regtype: &str) -> Option<IntKey> {
        let type_name = match regtype {
            "smallint" => "smallint",
            "integer" => "integer",
            "bigint" => "bigint",
            _ => return None,
        };
        Some(IntKey {
            column: column.clone(),
            type_name,
        })
    }
}

/// The bounds of one value-range batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct KeyRange {
    /// First key value of the batch (an existing key, or the first not yet done).
    pub(super) lo: i64,
    /// Last key value of the batch, when it is fixed in advance.
    pub(super) hi: i64,
    /// At most this many rows: the statement itself moves `hi` down to just before the
    /// `(cap + 1)`-th key at or after `lo`, when there is one in `[lo, hi]`.
    pub(super) cap: Option<u64>,
    /// The key's max at start: the walk ends there.
    pub(super) end: i64,
}

/// A value-range batch on a single-column integer key: one `UPDATE` of the keys in
/// `[lo, hi]`, the next existing key after `hi` (up to the end) read from the index, and the
/// checkpoint: `last_key` = just before that next key (or the end), so a gap in the keys is
/// skipped by the next batch and by a resumed run. Returns a row: (updated, checkpoint rows,
/// next key or NULL, the batch's `hi`).
///
/// Without a `cap` both bounds are constants: no key is read before the update (the keyset
/// walk's pre-scan, which reads every key, and its heap page when the visibility map is not
/// set, a second time). With a `cap` (a sparse stretch, where the value width of a batch is
/// many times the rows it should hold) the `(cap + 1)`-th key of the range is read first, and
/// both bounds become InitPlan parameters (see [`keyset_batch_sql`] for why that keeps the
/// index).
pub(super) fn range_batch_sql(
    spec: &BackfillSpec,
    key: &IntKey,
    cp: &CheckpointKey<'_>,
    range: KeyRange,
    stats: &Stats,
) -> BatchSql {
    let t = &spec.table;
    let k = &key.column;
    let ty = key.type_name;
    let (lo, hi, end) = (
        quote_literal(&range.lo.to_string()),
        quote_literal(&range.hi.to_string()),
        quote_literal(&range.end.to_string()),
    );
    let (bounds_cte, lower, upper) = match range.cap {
        None => (String::new(), lo, hi.clone()),
        Some(cap) => (
            format!(
                "_pgbaton_range AS (\n  SELECT {lo}::{ty} AS _pgbaton_lo, coalesce((SELECT {t}.{k} FROM {t} \
                 WHERE {t}.{k} >= {lo} AND {t}.{k} <= {hi} ORDER BY {t}.{k} OFFSET {cap} LIMIT 1) - 1, \
                 {hi})::{ty} AS _pgbaton_hi\n), "
            ),
            "(SELECT _pgbaton_lo FROM _pgbaton_range)".to_string(),
            "(SELECT _pgbaton_hi FROM _pgbaton_range)".to_string(),
        ),
    };
    let set = set_list(spec);
    let pending = pending(spec, cp);
    let xid = record_xid_sql(spec, cp);
    let (cp_table, stats, filter) = (cp.table(), stats.set_sql(), cp.filter());
    let next_end = end.clone();
    let next = move |upper: &str| {
        let end = &next_end;
        format!(
            "_pgbaton_next AS (\n  SELECT min({t}.{k}) AS _pgbaton_key FROM {t} WHERE {t}.{k} > {upper} \
             AND {t}.{k} <= {end}\n)"
        )
    };
    // The checkpoint: the key before the next existing one (or the walk's end), then the
    // result row (updated, checkpoint rows, next key, upper bound).
    let checkpoint = move |upper: &str, n: &str| {
        format!(
            "_pgbaton_cp AS (\n  UPDATE {cp_table} SET last_key = ARRAY[coalesce((SELECT _pgbaton_key - 1 \
             FROM _pgbaton_next), {end})::text], rows_done = rows_done + {n}, \
             rows_updated = rows_updated + {n}, {stats}\n  WHERE {filter}\n  RETURNING 1\n)\n\
             SELECT {n}, (SELECT count(*) FROM _pgbaton_cp), \
             (SELECT _pgbaton_key FROM _pgbaton_next)::text, ({upper})::text"
        )
    };
    if range.cap.is_some() {
        // The capped bound is computed in the statement: one statement, counted in SQL.
        let xid_cte = xid
            .map(|sql| format!("_pgbaton_xid AS (\n  {sql}\n), "))
            .unwrap_or_default();
        return BatchSql::Single(format!(
            "WITH {xid_cte}{bounds_cte}_pgbaton_done AS (\n  UPDATE {t} SET {set}\n  WHERE {t}.{k} >= {lower} \
             AND {t}.{k} <= {upper} AND {pending}\n  RETURNING 1\n), {next}, {cp}",
            next = next(&upper),
            cp = checkpoint(&upper, "(SELECT count(*) FROM _pgbaton_done)"),
        ));
    }
    let update = format!(
        "UPDATE {t} SET {set}\nWHERE {t}.{k} >= {lower} AND {t}.{k} <= {upper} AND {pending}"
    );
    let next = next(&upper);
    BatchSql::Split {
        update,
        prelude: xid,
        checkpoint: Box::new(move |n| {
            format!("WITH {next}, {}", checkpoint(&upper, &n.to_string()))
        }),
    }
}
