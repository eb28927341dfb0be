//! The client workload that proves zero downtime: N concurrent clients, each pinned to a schema
//! version, read and write while a migration runs; the report gives latency, failures (by SQLSTATE)
//! and the longest stall per phase, and the write log lets a test check that every committed write
//! survived. Shared by `pgbaton demo`, the benchmarks and the tests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pgbaton::workload::WorkloadError> {
//! use std::time::Duration;
//! use pgbaton::workload::{UsersTable, VersionPin, Workload, WorkloadConfig};
//!
//! let users = UsersTable::new("users");
//! let mut config = WorkloadConfig::from_url("host=/tmp port=5432 user=postgres dbname=app")?;
//! config.max_id = 10_000; // the rows seeded with `users.create_sql(10_000)`
//! config.clients = users.clients(4, VersionPin::Base, &Default::default());
//! let handle = Workload::start(config).await?;
//! tokio::time::sleep(Duration::from_secs(1)).await;
//! handle.mark_phase("migration");
//! // ... run the migration ...
//! let report = handle.stop().await;
//! eprintln!("{report}");
//! # Ok(()) }
//! ```
//!
//! Memory: the latency histograms are fixed-size (one per phase); the write log holds one entry
//! per committed write, which suits tests and demos; turn it off (`log_writes = false`) for long
//! benchmarks.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use rand::distr::{Alphanumeric, Distribution};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::{CancelToken, Client, NoTls, Statement};

use pgbaton::ident::{quote_ident, quote_literal, Ident, RawSql};
use pgbaton::triggers::VERSION_SETTING;

/// The highest latency the histograms resolve (one hour); longer values are clamped to it, and
/// the exact maximum is tracked separately.
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;
/// The longest pause between reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// How long an aborted client waits for its cancel request to reach the server.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(2);

/// The failure class of a query still running when the stop grace period ran out.
pub const ABANDONED: &str = "abandoned";
/// The failure class of a lost connection (no SQLSTATE).
pub const CONNECTION: &str = "connection";
/// The failure class of a client-side error (e.g. a value that does not fit its parameter).
pub const CLIENT: &str = "client";

/// Why a workload could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("invalid connection string: {0}")]
    Url(#[source] tokio_postgres::Error),

    #[error("the workload has no clients")]
    NoClients,

    #[error("workload client \"{client}\": {reason}")]
    InvalidSpec { client: String, reason: String },

    #[error("workload client \"{client}\" could not connect: {}", pgbaton::pg::describe(.source))]
    Connect {
        client: String,
        source: tokio_postgres::Error,
    },

    #[error("workload client \"{client}\" could not pin its session ({sql}): {}", pgbaton::pg::describe(.source))]
    Pin {
        client: String,
        sql: String,
        source: tokio_postgres::Error,
    },

    #[error("the workload has neither a duration nor a query limit, so it would never end: use start() and stop()")]
    Unbounded,
}

mod client;
mod recorder;
mod report;
mod series;
mod spec;
mod values;
mod writelog;

pub use client::*;
use recorder::*;
pub use report::*;
pub use series::*;
pub use spec::*;
pub use values::*;
pub use writelog::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        key: i64,
        value: Option<&str>,
        sent_ms: u64,
        acked_ms: u64,
        in_doubt: bool,
    ) -> WriteEntry {
        WriteEntry {
            client: Arc::from("c"),
            version: Arc::from("v"),
            phase: Arc::from("p"),
            kind: if value.is_some() {
                QueryKind::Update
            } else {
                QueryKind::Delete
            },
            key,
            written: value.map_or(Written::Deleted, |v| Written::Value(Value::from(v))),
            sent_at: Duration::from_millis(sent_ms),
            committed_at: Duration::from_millis(acked_ms),
            in_doubt,
        }
    }

    #[test]
    fn last_value_is_the_last_acknowledged_unless_flights_overlap() {
        let log = WriteLog {
            entries: vec![
                entry(1, Some("a"), 0, 1, false),
                entry(1, Some("b"), 2, 3, false),
                // Two overlapping flights on key 2: either may have committed last.
                entry(2, Some("x"), 0, 5, false),
                entry(2, Some("y"), 4, 6, false),
                // Key 3: deleted last.
                entry(3, Some("z"), 0, 1, false),
                entry(3, None, 2, 3, false),
                // Key 4: only an in-doubt write: anything goes.
                entry(4, Some("q"), 0, 1, true),
                // Key 5: a committed write, then an in-doubt one sent after it.
                entry(5, Some("m"), 0, 1, false),
                entry(5, Some("n"), 2, 3, true),
            ],
        };
        let expected = log.last_value_per_key();
        let text = |s: &str| Value::from(s);
        assert!(expected[&1].accepts(Some(&text("b"))));
        assert!(!expected[&1].accepts(Some(&text("a"))));
        assert!(!expected[&1].accepts(None));
        assert_eq!(
            expected[&1].last().map(|e| e.written.clone()),
            Some(Written::Value(text("b")))
        );
        assert!(expected[&2].accepts(Some(&text("x"))) && expected[&2].accepts(Some(&text("y"))));
        assert!(!expected[&2].accepts(Some(&text("w"))));
        assert!(expected[&3].accepts(None) && !expected[&3].accepts(Some(&text("z"))));
        assert!(expected[&4].prior_possible && expected[&4].accepts(Some(&text("anything"))));
        assert!(expected[&5].accepts(Some(&text("m"))) && expected[&5].accepts(Some(&text("n"))));
        assert!(!expected[&5].accepts(None));

        let rows: BTreeMap<i64, Value> = [(1, text("a")), (2, text("y")), (5, text("n"))]
            .into_iter()
            .collect();
        let mismatches = log.verify(&rows);
        assert_eq!(
            mismatches.iter().map(|m| m.key).collect::<Vec<_>>(),
            vec![1]
        );
        assert_eq!(mismatches[0].actual, Some(text("a")));
        assert!(mismatches[0]
            .to_string()
            .starts_with("key 1: the table has 'a', expected 'b'"));
    }

    #[test]
    fn gaps_are_split_across_phases() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut r = Recorder::new(t0, "before");
        r.record(ms(10), Duration::from_millis(1), None);
        r.mark("lock", ms(20));
        r.mark("after", ms(500));
        r.record(ms(900), Duration::from_millis(880), None);
        r.record(ms(910), Duration::from_millis(2), Some("42P01"));
        let report = r.report(
            ms(1000),
            ReportExtras {
                clients: 1,
                reconnects: 0,
                connect_errors: 0,
                abandoned: 0,
                writes: WriteLog::default(),
            },
        );
        let stall = report.longest_stall.clone().expect("a stall");
        assert_eq!(stall.duration_ms, 890.0);
        assert_eq!(
            (stall.phase.as_str(), stall.ended_in.as_str()),
            ("before", "after")
        );
        assert_eq!(
            report.phase("before").map(|p| p.longest_stall_ms),
            Some(10.0)
        );
        assert_eq!(
            report.phase("lock").map(|p| p.longest_stall_ms),
            Some(480.0)
        );
        assert_eq!(
            report.phase("after").map(|p| p.longest_stall_ms),
            Some(400.0)
        );
        assert_eq!(report.phase("lock").map(|p| p.queries), Some(0));
        let after = report.phase("after").expect("phase after");
        assert_eq!(
            (after.queries, after.failures, after.failures_with("42P01")),
            (2, 1, 1)
        );
        assert!((after.wall_s - 0.5).abs() < 1e-9);
        assert_eq!(after.latency.max_us, 880_000);
        // The outage runs from the last success (900 ms) to the end: 100 ms, in "after".
        assert_eq!(
            report.longest_outage.as_ref().map(|g| g.duration_ms),
            Some(890.0)
        );
        assert_eq!(report.total.queries, 3);
        let shown = report.to_string();
        assert!(
            shown.contains("longest stall: 890.0ms at 0.01s in before (ended in after)"),
            "{shown}"
        );
        assert!(shown.contains("failures: 42P01 ×1"), "{shown}");
        let json: serde_json::Value =
            serde_json::from_str(&report.to_json().expect("json")).expect("valid json");
        assert_eq!(json["total"]["failures_by_code"]["42P01"], 1);
    }

    #[test]
    fn specs_are_validated() {
        let bad = ClientSpec::new("c", VersionPin::Base).with(
            1,
            QuerySpec::update(
                "UPDATE t SET v = $2 WHERE id = $1",
                vec![ParamGen::ExistingId],
            )
            .logged(1, Some(2)),
        );
        assert!(matches!(
            bad.validate(),
            Err(WorkloadError::InvalidSpec { .. })
        ));
        let text_key = ClientSpec::new("c", VersionPin::Base).with(
            1,
            QuerySpec::delete("DELETE FROM t WHERE id = $1", vec![ParamGen::text("", 3)])
                .logged(1, None),
        );
        assert!(text_key.validate().is_err());
        assert!(ClientSpec::new("c", VersionPin::Base).validate().is_err());
        let users = UsersTable::new("users");
        for spec in users.clients(
            2,
            VersionPin::SetLocal("v2".into()),
            &OpMix {
                delete: 5,
                ..OpMix::default()
            },
        ) {
            spec.validate().expect("the demo mix is valid");
            assert_eq!(spec.mix.len(), 4);
        }
    }

    #[test]
    fn generators_draw_from_the_shared_id_space() {
        let ids = AtomicI64::new(10);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let Value::Int(v) = ParamGen::ExistingId.generate(&mut rng, &ids) else {
                panic!("an int")
            };
            assert!((1..=10).contains(&v));
        }
        assert_eq!(ParamGen::FreshId.generate(&mut rng, &ids), Value::Int(11));
        assert_eq!(ParamGen::FreshId.generate(&mut rng, &ids), Value::Int(12));
        let Value::Text(email) = ParamGen::email().generate(&mut rng, &ids) else {
            panic!("text")
        };
        assert!(email.ends_with("@example.com") && email.len() == 22);
    }

    #[test]
    fn demo_sql_quotes_names() {
        let users = UsersTable::new("Users")
            .in_schema("app")
            .with_name_column("full name");
        let q = users.queries(&OpMix {
            read: 1,
            update: 0,
            insert: 0,
            delete: 0,
        });
        assert_eq!(
            q[0].query.sql.as_str(),
            "SELECT \"id\", \"full name\", \"email\", \"created_at\" FROM \"app\".\"Users\" WHERE \"id\" = $1"
        );
    }

    #[test]
    fn series_has_every_interval_and_its_percentiles() {
        let origin = Instant::now();
        let ms = |n: u64| origin + Duration::from_millis(n);
        // The workload starts 250 ms after the origin (a second workload on a shared clock).
        let mut s = SeriesRecorder::new(origin, ms(250), Duration::from_millis(100));
        for i in 1..=100u64 {
            // 100 completions in [300, 400): latencies 1..=100 ms.
            s.record(ms(300 + i / 2), Duration::from_millis(i), i == 100);
        }
        // Nothing completes in [400, 700) (a lock), then one slow query and a late straggler
        // that completed in the previous interval but was recorded after it.
        s.record(ms(720), Duration::from_millis(420), false);
        s.record(ms(810), Duration::from_millis(3), false);
        s.record(ms(790), Duration::from_millis(2), false);
        let series = s.finish(ms(950));
        let starts: Vec<u64> = series
            .buckets
            .iter()
            .map(|b| (b.t_s * 1000.0).round() as u64)
            .collect();
        assert_eq!(starts, vec![200, 300, 400, 500, 600, 700, 800, 900]);
        let b = &series.buckets[1];
        assert_eq!((b.queries, b.failures), (100, 1));
        assert_eq!((b.p50_us, b.p99_us, b.max_us), (50_000, 99_000, 100_000));
        assert!((b.ok_per_s - 990.0).abs() < 1e-6);
        for empty in &series.buckets[2..5] {
            assert_eq!((empty.queries, empty.max_us, empty.ok_per_s), (0, 0, 0.0));
        }
        assert_eq!(
            series.buckets[5].queries, 2,
            "720 ms and the straggler at 790 ms"
        );
        assert_eq!(series.buckets[5].max_us, 420_000);
        assert_eq!(series.buckets[6].queries, 1);
        assert_eq!(series.buckets[7].queries, 0, "the run ends at 950 ms");
        // [200, 300) had no completion; the run started at 250 ms and ended at 950 ms: the
        // rate of a cut interval is over the part the clients ran.
        assert_eq!(series.buckets[0].ok_per_s, 0.0);
        assert!((series.buckets[6].ok_per_s - 10.0).abs() < 1e-6);
        assert_eq!(series.max_us(), 420_000);
        assert!((series.end_s() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn series_rate_of_a_cut_interval_is_over_the_time_the_clients_ran() {
        let origin = Instant::now();
        let ms = |n: u64| origin + Duration::from_millis(n);
        let mut s = SeriesRecorder::new(origin, ms(175), Duration::from_millis(100));
        for at in [180, 190, 199, 220, 910] {
            s.record(ms(at), Duration::from_millis(1), false);
        }
        let series = s.finish(ms(925));
        let first = &series.buckets[0];
        assert_eq!((first.queries, (first.t_s * 1000.0).round()), (3, 100.0));
        assert!((first.ok_per_s - 3.0 / 0.025).abs() < 1e-6, "{first:?}");
        assert!((series.buckets[1].ok_per_s - 10.0).abs() < 1e-6);
        let last = series.buckets.last().expect("buckets");
        assert!((last.ok_per_s - 1.0 / 0.025).abs() < 1e-6, "{last:?}");
    }

    #[test]
    fn series_memory_is_bounded() {
        let origin = Instant::now();
        let mut s = SeriesRecorder::new(origin, origin, Duration::from_millis(100));
        for i in 0..10_000u64 {
            s.record(
                origin + Duration::from_millis(i),
                Duration::from_micros(500),
                false,
            );
            assert!(s.open.len() <= 2);
        }
        let series = s.finish(origin + Duration::from_millis(10_000));
        assert_eq!(series.buckets.len(), 101);
        assert!(series.buckets[..100].iter().all(|b| b.queries == 100));
        assert!(series.buckets[..100]
            .iter()
            .all(|b| (b.ok_per_s - 1000.0).abs() < 1e-6));
    }

    #[test]
    fn workload_report_carries_series_and_phase_spans() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut r = Recorder::new(t0, "before");
        r.record(ms(10), Duration::from_millis(1), None);
        r.mark("lock", ms(120));
        r.record(ms(330), Duration::from_millis(200), Some("55P03"));
        r.mark("before", ms(400));
        let report = r.report(
            ms(450),
            ReportExtras {
                clients: 1,
                reconnects: 0,
                connect_errors: 0,
                abandoned: 0,
                writes: WriteLog::default(),
            },
        );
        let spans: Vec<(&str, u64, u64)> = report
            .timeline
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    (s.start_s * 1000.0).round() as u64,
                    (s.end_s * 1000.0).round() as u64,
                )
            })
            .collect();
        assert_eq!(
            spans,
            vec![("before", 0, 120), ("lock", 120, 400), ("before", 400, 450)]
        );
        assert_eq!(report.series.buckets.len(), 5);
        assert_eq!(report.series.buckets[3].failures, 1);
        assert_eq!(report.series.buckets[3].max_us, 200_000);
    }
}
