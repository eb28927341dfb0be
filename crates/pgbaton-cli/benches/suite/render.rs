//! Rendering: one markdown table per benchmark.

use super::*;

pub(crate) fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "—".into())
}

pub(crate) fn rate(rows: u64, s: f64) -> String {
    format!("{:.0}k", rows as f64 / s / 1e3)
}

pub(crate) fn render(results: &Results) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "## Environment\n");
    for (k, v) in &results.environment {
        let _ = writeln!(w, "- {k}: {v}");
    }
    backfill_table(w, results);
    with_writes_table(w, results);
    variants_table(w, results);
    workers_table(w, results);
    trigger_table(w, results);
    scale_table(w, results);
    complete_table(w, results);
    workload_table(w, results);
    lockqueue_table(w, results);
    let failures: Vec<String> = results
        .backfill
        .iter()
        .flat_map(|r| {
            [("pgbaton", &r.pgbaton_error), ("Reshape", &r.reshape_error)]
                .into_iter()
                .filter_map(move |(who, e)| {
                    e.as_ref()
                        .map(|e| format!("- {who}, {} rows, {}: {e}", r.rows, r.change))
                })
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(w, "\n### Failures in the backfill runs\n");
        for f in failures {
            let _ = writeln!(w, "{f}");
        }
    }
    for n in &results.notes {
        let _ = writeln!(w, "\nNote: {n}");
    }
    out
}

/// (a) backfill throughput.
fn backfill_table(w: &mut String, results: &Results) {
    if !results.backfill.is_empty() {
        let _ = writeln!(
            w,
            "\n## (a) Backfill throughput vs a single UPDATE (and Reshape)\n"
        );
        let _ = writeln!(
            w,
            "| rows | change | single UPDATE, best (runs) | pgbaton backfill, best (runs) | ratio | pgbaton start, total | Reshape start | Reshape ratio | load (1/5/15 min) |"
        );
        let _ = writeln!(w, "|---:|---|---:|---:|---:|---:|---:|---:|---|");
        for r in &results.backfill {
            let label = change(&r.change).map(|c| c.label).unwrap_or("?");
            let update_s = r.update_s();
            let backfill = r.pgbaton_backfill_s();
            let _ = writeln!(
                w,
                "| {} | {} | {:.1}s = {} rows/s ({}) | {} | {} | {} | {} | {} | {} |",
                r.rows,
                label,
                update_s,
                rate(r.rows, update_s),
                runs(&r.update_runs),
                match (&r.pgbaton_error, backfill) {
                    (Some(_), Some(s)) => format!(
                        "{s:.1}s = {} rows/s ({}; failed later, see below)",
                        rate(r.rows, s),
                        runs(&r.pgbaton_backfill_runs)
                    ),
                    (Some(_), None) => "failed (see below)".into(),
                    (None, Some(s)) => format!(
                        "{s:.1}s = {} rows/s ({})",
                        rate(r.rows, s),
                        runs(&r.pgbaton_backfill_runs)
                    ),
                    (None, None) => "—".into(),
                },
                opt(backfill, |s| format!("**{:.2}×**", update_s / s)),
                opt(r.pgbaton_start_s(), |s| format!(
                    "{s:.1}s ({:.2}×)",
                    update_s / s
                )),
                match (&r.reshape_error, r.reshape_start_s) {
                    (Some(_), Some(s)) => format!("{s:.1}s (complete failed, see below)"),
                    (Some(_), None) => "failed (see below)".into(),
                    (None, Some(s)) => format!("{s:.1}s"),
                    (None, None) => "not run".into(),
                },
                opt(r.reshape_start_s, |s| format!("{:.2}×", update_s / s)),
                r.load
            );
        }
    }
}

/// (a) with the application writing.
fn with_writes_table(w: &mut String, results: &Results) {
    if results.backfill.iter().any(|r| !r.with_writes.is_empty()) {
        let _ = writeln!(
            w,
            "\n## (a) The backfill while the application writes (catch-up pass)\n"
        );
        let _ = writeln!(
            w,
            "| rows | change | latency budget | single UPDATE, best | updates during start | fill | catch-up (rows fixed) | fill + catch-up | ratio | wrong rows after | writer p50 / p99 / max before | during start |"
        );
        let _ = writeln!(
            w,
            "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let lat =
            |l: &WriterLatency| format!("{:.2} / {:.2} / {:.1} ms", l.p50_ms, l.p99_ms, l.max_ms);
        for r in &results.backfill {
            for x in &r.with_writes {
                let total = x.fill_s + x.catch_up_s;
                let _ = writeln!(
                    w,
                    "| {} | {} | {} | {:.1}s | {} | {:.1}s | {:.2}s ({}) | {:.1}s | **{:.2}×** | {} | {} | {} |",
                    r.rows,
                    r.change,
                    x.budget,
                    r.update_s(),
                    x.writes,
                    x.fill_s,
                    x.catch_up_s,
                    x.catch_up_rows,
                    total,
                    r.update_s() / total,
                    x.wrong_rows,
                    lat(&x.writer_before),
                    lat(&x.writer_during)
                );
            }
        }
    }
}

/// (a) batch-time variants.
fn variants_table(w: &mut String, results: &Results) {
    if results.backfill.iter().any(|r| !r.variant_runs.is_empty()) {
        let _ = writeln!(
            w,
            "\n## (a) The backfill with longer batches (`--backfill-batch-time`; default 100 ms)\n"
        );
        let _ = writeln!(
            w,
            "| rows | change | single UPDATE, best | default (100 ms), best | batch time | backfill, best (runs) | ratio |"
        );
        let _ = writeln!(w, "|---:|---|---:|---:|---:|---:|---:|");
        for r in &results.backfill {
            for (ms, v) in &r.variant_runs {
                let Some(b) = best(v) else { continue };
                let _ =
                    writeln!(
                    w,
                    "| {} | {} | {:.1}s | {} | {ms} ms | {b:.1}s = {} rows/s ({}) | **{:.2}×** |",
                    r.rows,
                    r.change,
                    r.update_s(),
                    opt(r.pgbaton_backfill_s(), |s| format!("{s:.1}s ({:.2}×)", r.update_s() / s)),
                    rate(r.rows, b),
                    runs(v),
                    r.update_s() / b
                );
            }
        }
    }
}

/// (a) parallel fills (`--backfill-workers`).
fn workers_table(w: &mut String, results: &Results) {
    if results.backfill.iter().any(|r| !r.workers_runs.is_empty()) {
        let _ = writeln!(
            w,
            "\n## (a) Parallel fill (`--backfill-workers N`; default 1) vs the single UPDATE\n"
        );
        let _ = writeln!(
            w,
            "| rows | change | single UPDATE, best | default settings (1 worker, budget on), best | workers | backfill, best (runs) | ratio to the UPDATE | speed-up over 1 worker |"
        );
        let _ = writeln!(w, "|---:|---|---:|---:|---:|---:|---:|---:|");
        for r in &results.backfill {
            for (n, v) in &r.workers_runs {
                let Some(b) = best(v) else { continue };
                let _ = writeln!(
                    w,
                    "| {} | {} | {:.1}s | {} | {n} | {b:.1}s = {} rows/s ({}) | **{:.2}×** | {} |",
                    r.rows,
                    r.change,
                    r.update_s(),
                    opt(r.pgbaton_backfill_s(), |s| format!(
                        "{s:.1}s ({:.2}×)",
                        r.update_s() / s
                    )),
                    rate(r.rows, b),
                    runs(v),
                    r.update_s() / b,
                    opt(r.pgbaton_backfill_s(), |s| format!("{:.2}×", s / b)),
                );
            }
        }
    }
}

/// The dual-write trigger overhead.
fn trigger_table(w: &mut String, results: &Results) {
    if !results.trigger.is_empty() {
        let _ = writeln!(
            w,
            "\n## (a) UPDATE throughput with the dual-write trigger vs without\n"
        );
        let _ = writeln!(
            w,
            "| rows | change | rows per UPDATE | without trigger (runs) | with trigger (runs) | slowdown |"
        );
        let _ = writeln!(w, "|---:|---|---:|---|---|---:|");
        for t in &results.trigger {
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
            let list = |v: &[f64]| {
                v.iter()
                    .map(|s| format!("{s:.2}s"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {:.2}× |",
                t.rows,
                t.change,
                t.rows_updated,
                list(&t.without_s),
                list(&t.with_s),
                mean(&t.with_s) / mean(&t.without_s)
            );
        }
    }
}

/// (c) the scale series.
fn scale_table(w: &mut String, results: &Results) {
    if !results.backfill.is_empty() {
        let _ = writeln!(
            w,
            "\n## (c) Scale series: time and peak RSS of the pgbaton process\n"
        );
        let _ = writeln!(
            w,
            "| rows | change | start | complete | peak RSS start | peak RSS complete | Reshape start + complete | Reshape peak RSS |"
        );
        let _ = writeln!(w, "|---:|---|---:|---:|---:|---:|---:|---:|");
        for r in &results.backfill {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.rows,
                r.change,
                opt(r.pgbaton_start_s(), |s| format!("{s:.1}s")),
                opt(r.pgbaton_complete_s, |s| format!("{s:.2}s")),
                opt(r.pgbaton_start_rss_mb, |m| format!("{m:.1} MB")),
                opt(r.pgbaton_complete_rss_mb, |m| format!("{m:.1} MB")),
                match (r.reshape_start_s, r.reshape_complete_s) {
                    (Some(a), Some(b)) => format!("{a:.1}s + {b:.1}s"),
                    (Some(a), None) => format!("{a:.1}s + —"),
                    _ => "—".into(),
                },
                opt(r.reshape_rss_mb, |m| format!("{m:.1} MB")),
            );
        }
    }
}

/// (e) complete under load.
fn complete_table(w: &mut String, results: &Results) {
    if !results.complete.is_empty() {
        let _ = writeln!(
            w,
            "\n## (e) `complete` under a closed-loop-client workload\n"
        );
        let _ = writeln!(
            w,
            "| rows | change | complete (process) | longest ACCESS EXCLUSIVE step (incl. lock wait) | ACCESS EXCLUSIVE held / waited, sampled | workload p99 / max during complete | baseline p99 / max | failed queries |"
        );
        let _ = writeln!(w, "|---:|---|---:|---:|---:|---:|---:|---:|");
        for e in &results.complete {
            let _ = writeln!(
                w,
                "| {} | {} | {:.2}s | {} | {} | {:.1}ms / {:.1}ms | {:.1}ms / {:.1}ms | {} |",
                e.rows,
                e.change,
                e.complete_s,
                e.longest_exclusive_step
                    .as_ref()
                    .map_or("—".into(), |(t, ms)| format!("{ms:.1}ms ({t})")),
                lock_cell(&e.locks),
                e.workload_p99_ms,
                e.workload_max_ms,
                e.baseline_p99_ms,
                e.baseline_max_ms,
                e.failures
            );
        }
    }
}

/// (b) the workload during the migration.
fn workload_table(w: &mut String, results: &Results) {
    if !results.workload.is_empty() {
        let _ = writeln!(
            w,
            "\n## (b) Workload during the migration (pk integer → bigint)\n"
        );
        let _ = writeln!(
            w,
            "| method | phase | wall | queries | failed | ok/s | p50 | p99 | max | longest stall |"
        );
        let _ = writeln!(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &results.workload {
            for p in &r.report.phases {
                let l = &p.latency;
                let failed = if p.failures_by_code.is_empty() {
                    p.failures.to_string()
                } else {
                    format!(
                        "{} ({})",
                        p.failures,
                        p.failures_by_code
                            .iter()
                            .map(|(c, n)| format!("{c}×{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                let _ = writeln!(
                    w,
                    "| {} | {} | {:.1}s | {} | {} | {:.0} | {} | {} | {} | {} |",
                    r.method,
                    p.name,
                    p.wall_s,
                    p.queries,
                    failed,
                    p.throughput_qps,
                    human_us(l.p50_us as f64),
                    human_us(l.p99_us as f64),
                    human_us(l.max_us as f64),
                    human_us(p.longest_stall_ms * 1e3)
                );
            }
            if let Some(e) = &r.error {
                let _ = writeln!(w, "| {} | error | {e} | | | | | | | |", r.method);
            }
        }
        workload_summary(w, results);
        workload_fill_table(w, results);
    }
}

/// (b)'s summary: each method's phases after the baseline against it.
fn workload_summary(w: &mut String, results: &Results) {
    let _ = writeln!(
        w,
        "\nSummary (\"during\": every phase after the baseline, since a query held up by the migration completes when it is let go):\n"
    );
    let _ = writeln!(
        w,
        "| method | migration | baseline p99 / max | worst p99 during (× baseline) | max during | ok/s during vs baseline | failed | ACCESS EXCLUSIVE held / waited |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &results.workload {
        let Some(base) = r.report.phase("baseline") else {
            continue;
        };
        let during: Vec<_> = r
            .report
            .phases
            .iter()
            .filter(|p| p.name != "baseline" && p.name != "after")
            .collect();
        let after_baseline: Vec<_> = r
            .report
            .phases
            .iter()
            .filter(|p| p.name != "baseline")
            .collect();
        let p99 = during.iter().map(|p| p.latency.p99_us).max().unwrap_or(0);
        let max = after_baseline
            .iter()
            .map(|p| p.latency.max_us)
            .max()
            .unwrap_or(0);
        let (ok, wall) = during.iter().fold((0.0, 0.0), |(ok, wall), p| {
            (ok + p.throughput_qps * p.wall_s, wall + p.wall_s)
        });
        let _ = writeln!(
            w,
            "| {} | {:.1}s{} | {} / {} | {} ({:.1}×) | {} | {:.0} vs {:.0} ({:+.0}%) | {} | {} |",
            r.method,
            r.migration_s,
            if r.error.is_some() { " (failed)" } else { "" },
            human_us(base.latency.p99_us as f64),
            human_us(base.latency.max_us as f64),
            human_us(p99 as f64),
            p99 as f64 / base.latency.p99_us.max(1) as f64,
            human_us(max as f64),
            ok / wall.max(1e-9),
            base.throughput_qps,
            (ok / wall.max(1e-9) / base.throughput_qps.max(1e-9) - 1.0) * 100.0,
            r.report.total.failures,
            lock_cell(&r.locks)
        );
    }
}

/// (b) pgbaton's own fill under the workload.
fn workload_fill_table(w: &mut String, results: &Results) {
    if results.workload.iter().all(|r| r.fill.is_none()) {
        return;
    }
    let _ = writeln!(
        w,
        "\npgbaton's fill during start (from its `--json` progress):\n"
    );
    let _ = writeln!(
        w,
        "| method | fill | rows/s | batches | slowed by the budget | longest budget wait | probe baseline | catch-up |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &results.workload {
        let Some(f) = &r.fill else { continue };
        let _ = writeln!(
            w,
            "| {} | {} rows in {:.1}s | {:.0} | {} | {} ({:.0}%) | {:.0} ms | {} | {} rows in {:.2}s |",
            r.method,
            f.rows,
            f.seconds,
            f.rows as f64 / f.seconds.max(1e-9),
            f.batches_reported,
            f.slowed_by_budget,
            f.slowed_by_budget as f64 * 100.0 / f.batches_reported.max(1) as f64,
            f.max_delay_ms,
            opt(f.probe_baseline_ms, |b| format!("{b:.2} ms")),
            f.catch_up_rows,
            f.catch_up_seconds
        );
    }
}

/// (d) the lock queue.
fn lockqueue_table(w: &mut String, results: &Results) {
    if !results.lockqueue.is_empty() {
        let _ = writeln!(
            w,
            "\n## (d) Lock queue: a transaction holds ACCESS SHARE on the table\n"
        );
        let _ = writeln!(
            w,
            "| method | scenario | outcome | exit | time | lock retries | table unchanged | workload p99 / max from the blocker on | ACCESS EXCLUSIVE held / longest wait | failed queries |"
        );
        let _ = writeln!(w, "|---|---|---|---:|---:|---:|---|---:|---:|---:|");
        for r in &results.lockqueue {
            let _ = writeln!(
                w,
                "| {} | {} | {} | {} | {:.1}s | {} | {} | {:.1}ms / {:.1}ms | {} | {} |",
                r.method,
                r.scenario,
                r.outcome.replace('|', "/"),
                r.exit.map_or("—".into(), |c| c.to_string()),
                r.seconds,
                r.lock_retries.map_or("—".into(), |n| n.to_string()),
                r.table_unchanged.map_or("—".into(), |b| b.to_string()),
                r.p99_ms,
                r.max_latency_ms,
                lock_cell(&r.locks),
                r.failures
            );
        }
    }
}
