//! The HTML report of the workload (b) and lock-queue (d) benchmarks (`--report FILE.html`): one
//! panel per run, drawn by `pgbaton_lab::demo::report` on shared axes.

use super::*;

use pgbaton_lab::demo::report::{Group, Page, Panel};

fn workload_panel(r: &WorkloadResult) -> Panel<'_> {
    Panel {
        title: format!("(b) {}", r.method),
        summary: format!(
            "{} rows; migration {:.2}s{}; {} queries, {} failed; max latency {}",
            r.rows,
            r.migration_s,
            r.error
                .as_deref()
                .map(|e| format!(", FAILED: {e}"))
                .unwrap_or_default(),
            r.report.total.queries,
            r.report.total.failures,
            human_us(r.report.total.latency.max_us as f64),
        ),
        spans: &r.report.timeline,
        marks: &r.marks,
        groups: vec![Group {
            label: format!("{} clients", r.report.clients),
            series: &r.report.series,
        }],
    }
}

fn lockqueue_panel(r: &LockQueueResult) -> Panel<'_> {
    Panel {
        title: format!("(d) {}: {}", r.method, r.scenario),
        summary: format!(
            "{} in {:.1}s{}; {} failed queries; workload max latency {:.1}ms, p99 {:.1}ms",
            r.outcome,
            r.seconds,
            r.lock_retries
                .map(|n| format!(", {n} lock retries"))
                .unwrap_or_default(),
            r.failures,
            r.max_latency_ms,
            r.p99_ms
        ),
        spans: &r.report.timeline,
        marks: &r.marks,
        groups: vec![Group {
            label: format!("{} clients", r.report.clients),
            series: &r.report.series,
        }],
    }
}

/// The page of the workload and lock-queue runs, with the suite's tables under the charts.
pub(crate) fn report_html(results: &Results, text: &str) -> Result<String> {
    let mut panels: Vec<Panel<'_>> = results.workload.iter().map(workload_panel).collect();
    panels.extend(results.lockqueue.iter().map(lockqueue_panel));
    let env: Vec<String> = results
        .environment
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let page = Page {
        title: "pgbaton benchmarks: the workload during each migration".into(),
        intro: vec![
            "(b): a closed-loop read/update workload during pgbaton (start + complete), the plain \
             ALTER TABLE and Reshape. (d): a transaction holds a conflicting lock while the \
             migration starts. Each point is one 100 ms interval of completed queries; the \
             panels share their axes; the lock lane shows ACCESS EXCLUSIVE held or awaited on \
             the table, sampled from pg_locks."
                .into(),
            env.join("; "),
        ],
        panels,
        text: text.to_owned(),
    };
    Ok(page.html()?)
}
