//! Writes per version while a migration is active, and the safe-to-complete signal.
//!
//! With the dual-write trigger, each table gets a statement-level trigger (`AFTER INSERT OR
//! UPDATE OR DELETE ... FOR EACH STATEMENT`, named [`TRIGGER_NAME`]): once per statement, never
//! per row, it decides the writer's version as the dual-write trigger does (`pgbaton.version`,
//! else the first schema of the search path; the version schema or the migration's name is the
//! new version, anything else the old) and counts the statement in a sequence of that version.
//! A second sequence holds the time of the version's last write (epoch milliseconds, written at
//! most once a second). Sequences are not transactional and take no row lock: writers never wait
//! on each other for the count, and a rolled-back statement counts too (it was a write attempt).
//!
//! The counting function runs with the writer's rights and search path (it has to see them to
//! tell the version); it calls a `SECURITY DEFINER` helper with a fixed `search_path` for the
//! sequences, so the application's roles need no privilege on them.
//!
//! What it cannot see: reads. An old release that only reads still breaks when `complete` drops
//! what it reads, and nothing here notices it. Nor does it see writes to tables without a
//! dual-write trigger, or statements that write no table the migration changes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio_postgres::Client;

use crate::ident::QualName;
use crate::triggers::version_writes::sequences;
pub use crate::triggers::version_writes::{drop_sql, install_sql, install_step, TRIGGER_NAME};

/// One version's writes, over the tables of the active migration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VersionWrites {
    /// `old` or `new`.
    pub version: String,
    /// The schema that version reads: the base schema, or the version schema.
    pub schema: String,
    /// Statements counted since the migration's triggers were installed.
    pub writes: u64,
    /// When it last wrote (to the second), if it did.
    pub last_write: Option<String>,
    /// Seconds since its last write.
    pub seconds_since_last_write: Option<f64>,
    /// Statements per second over the sampling interval (`status` samples twice).
    pub writes_per_second: Option<f64>,
}

impl std::fmt::Display for VersionWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} version ({}): {} writes",
            self.version, self.schema, self.writes
        )?;
        if let Some(r) = self.writes_per_second {
            write!(f, ", {r:.1}/s")?;
        }
        match (&self.last_write, self.seconds_since_last_write) {
            (Some(at), Some(ago)) => write!(f, ", last {at} ({ago:.0} s ago)"),
            _ => f.write_str(", none yet"),
        }
    }
}

/// The count and the last write (epoch ms) of each version of `tables`, summed and maxed:
/// (old, new). Tables without counting (not installed yet, or gone) count nothing.
pub async fn read(
    client: &Client,
    tables: &[QualName],
) -> Result<[(u64, Option<i64>); 2], tokio_postgres::Error> {
    let mut out = [(0u64, None), (0u64, None)];
    for table in tables {
        for (i, new) in [false, true].into_iter().enumerate() {
            let (count, time) = sequences(table, new);
            // `to_regclass` first: a sequence that does not exist is no error.
            let row = client
                .query_one(
                    "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
                    &[&count.to_string(), &time.to_string()],
                )
                .await?;
            if !row.get::<_, bool>(0) {
                continue;
            }
            let row = client
                .query_one(
                    &format!(
                        "SELECT CASE WHEN c.is_called THEN c.last_value ELSE 0 END, \
                         CASE WHEN t.is_called THEN t.last_value END FROM {count} AS c, {time} AS t"
                    ),
                    &[],
                )
                .await?;
            out[i].0 += row.get::<_, i64>(0).max(0) as u64;
            let last: Option<i64> = row.get(1);
            out[i].1 = out[i].1.max(last);
        }
    }
    Ok(out)
}

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `status`'s view of the writes: two readings `interval` apart.
pub async fn sample(
    client: &Client,
    tables: &[QualName],
    base_schema: &str,
    version_schema: &str,
    interval: Duration,
) -> Result<Vec<VersionWrites>, tokio_postgres::Error> {
    let first = read(client, tables).await?;
    tokio::time::sleep(interval).await;
    let second = read(client, tables).await?;
    let now = now_ms();
    let describe = |i: usize, version: &str, schema: &str| {
        let (writes, last) = second[i];
        let rate = (writes.saturating_sub(first[i].0)) as f64 / interval.as_secs_f64().max(1e-3);
        VersionWrites {
            version: version.to_string(),
            schema: schema.to_string(),
            writes,
            last_write: last.map(format_epoch_ms),
            seconds_since_last_write: last.map(|t| ((now - t) as f64 / 1000.0).max(0.0)),
            writes_per_second: Some(rate),
        }
    };
    Ok(vec![
        describe(0, "old", base_schema),
        describe(1, "new", version_schema),
    ])
}

/// `2026-12-05 10:41:07 UTC`.
pub fn format_epoch_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_milliseconds_render_as_utc() {
        assert_eq!(format_epoch_ms(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            format_epoch_ms(1_796_467_267_000),
            "2026-12-05 10:41:07 UTC"
        );
        assert_eq!(format_epoch_ms(951_782_400_000), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn names_are_derived_per_table_and_version() {
        let t = QualName::new("app", "users");
        let (c, time) = sequences(&t, false);
        assert_eq!(c.to_string(), "\"app\".\"_pgbaton_vco_users\"");
        assert_eq!(time.to_string(), "\"app\".\"_pgbaton_vto_users\"");
        let (c, _) = sequences(&t, true);
        assert_eq!(c.to_string(), "\"app\".\"_pgbaton_vcn_users\"");
    }
}
