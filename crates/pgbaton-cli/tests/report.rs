//! `pgbaton demo --report`: a real demo run (pgbaton and the plain `ALTER TABLE` on a throwaway
//! cluster) rendered to one self-contained HTML page, opened in a real headless Chromium:
//! a screenshot is taken and checked for the charts' colours, the DOM shows both charts laid out,
//! and the browser logs no console message (script errors, blocked requests) at all.
//!
//! Chromium: `$PGBATON_CHROMIUM`, else `chromium` or `chromium-browser` on `PATH` (`.ci/run`
//! installs Debian's `chromium`). Without it the test fails: it is part of the suite.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgbaton::executor::Quiet;
use pgbaton_lab::demo::{self, DemoDatabase, DemoOptions, DemoReport, Note};
use pgbaton_lab::workload::{TimeSeries, WorkloadReport};

const ROWS: u64 = 20_000;

async fn demo_run() -> DemoReport {
    let options = DemoOptions {
        database: DemoDatabase::Throwaway(demo::demo_cluster_options()),
        rows: ROWS,
        baseline: Duration::from_millis(1500),
        overlap: Duration::from_millis(1500),
        after: Duration::from_millis(1500),
        compare_naive: true,
        ..DemoOptions::default()
    };
    let notes: demo::NoteSink = Arc::new(|note: &Note| eprintln!("{note}"));
    demo::run(options, Arc::new(Quiet), notes)
        .await
        .expect("the demo runs")
}

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("PGBATON_CHROMIUM").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "no chromium found (set PGBATON_CHROMIUM, or install Debian's `chromium`, as .ci/run does)"
    );
}

/// Runs headless Chromium on `page` with `extra` flags and a fresh profile; returns (stdout,
/// stderr). Killed after two minutes.
fn run_chromium(dir: &Path, page: &Path, extra: &[String]) -> (String, String) {
    let profile = dir.join(format!("profile-{}", extra.len()));
    let _ = std::fs::remove_dir_all(&profile);
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(format!("file://{}", page.display()))
    .stdin(Stdio::null());
    let out_path = dir.join("chromium.stdout");
    let err_path = dir.join("chromium.stderr");
    cmd.stdout(std::fs::File::create(&out_path).expect("stdout file"));
    cmd.stderr(std::fs::File::create(&err_path).expect("stderr file"));
    let mut child = cmd.spawn().expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match child.try_wait().expect("wait for chromium") {
            Some(status) => {
                assert!(status.success(), "chromium exited with {status}");
                break;
            }
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within two minutes");
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    (
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default(),
    )
}

/// Chromium logs every console message (console.*, uncaught errors, blocked loads) to stderr
/// with `--enable-logging=stderr` as `...:CONSOLE...`.
fn console_messages(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(":CONSOLE")).collect()
}

/// The value of `name="..."` on the dumped DOM's `<html>` element.
fn html_attribute<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let start = dom.find("<html")?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let key = format!("{name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(&tag[at..at + tag[at..].find('"')?])
}

/// Every interval from the first bucket to the last, each counted once: the buckets add up to
/// the workload's totals.
fn assert_series_consistent(what: &str, report: &WorkloadReport) {
    let s: &TimeSeries = &report.series;
    assert!(
        (s.interval_s - 0.1).abs() < 1e-9,
        "{what}: {}",
        s.interval_s
    );
    assert!(!s.buckets.is_empty(), "{what}: no buckets");
    for pair in s.buckets.windows(2) {
        let step = pair[1].t_s - pair[0].t_s;
        assert!(
            (step - s.interval_s).abs() < 1e-6,
            "{what}: a gap in the series"
        );
    }
    let queries: u64 = s.buckets.iter().map(|b| b.queries).sum();
    let failures: u64 = s.buckets.iter().map(|b| b.failures).sum();
    assert_eq!(queries, report.total.queries, "{what}: queries per bucket");
    assert_eq!(
        failures, report.total.failures,
        "{what}: failures per bucket"
    );
    let max = s.buckets.iter().map(|b| b.max_us).max().unwrap_or(0);
    assert_eq!(
        max, report.total.latency.max_us,
        "{what}: the slowest query"
    );
    // The series covers the workload's whole life, on the run's clock.
    let covered = s.end_s() - s.buckets[0].t_s;
    assert!(
        covered + 0.11 >= report.elapsed_s,
        "{what}: {covered}s of series for {}s of workload",
        report.elapsed_s
    );
}

/// Pixels of the PNG at `path` close to `rgb` (within 12 per channel), and its size.
fn count_pixels(path: &Path, rgbs: &[(u8, u8, u8)]) -> (Vec<usize>, (u32, u32)) {
    let decoder = png::Decoder::new(std::fs::File::open(path).expect("open the screenshot"));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("decode the screenshot");
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    let near = |a: u8, b: u8| a.abs_diff(b) <= 12;
    let mut counts = vec![0; rgbs.len()];
    for px in buf[..info.buffer_size()].chunks_exact(channels) {
        for (i, &(r, g, b)) in rgbs.iter().enumerate() {
            if near(px[0], r) && near(px[1], g) && near(px[2], b) {
                counts[i] += 1;
            }
        }
    }
    (counts, (info.width, info.height))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_report_renders_in_headless_chromium() {
    let report = demo_run().await;
    eprintln!("{report}");
    assert!(report.ok(), "the demo run was not clean:\n{report}");
    let naive = report.naive.as_ref().expect("--compare-naive ran");

    // The data behind the charts: per-interval series that add up to the totals, on the run's
    // clock, and the phases as bands in order.
    for (what, run) in [("pgbaton", &report.pgbaton), ("naive", naive)] {
        for (release, w) in [("old", &run.old), ("new", &run.new)] {
            let w = w.as_ref().expect("both releases ran");
            assert_series_consistent(&format!("{what} {release}"), w);
        }
        let spans = &run.phase_spans;
        assert!(spans.first().is_some_and(|s| s.start_s == 0.0), "{spans:?}");
        for pair in spans.windows(2) {
            assert_eq!(pair[0].end_s, pair[1].start_s, "{spans:?}");
        }
    }
    let names: Vec<&str> = report
        .pgbaton
        .phase_spans
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let position = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("no phase {name} in {names:?}"))
    };
    let order = [
        "baseline",
        "start: expand",
        "start: backfill",
        "start: trigger install",
        "start: catch-up",
        "both versions",
        "complete",
        "after",
    ];
    for pair in order.windows(2) {
        assert!(
            position(pair[0]) < position(pair[1]),
            "{} before {}: {names:?}",
            pair[0],
            pair[1]
        );
    }
    // The new release starts in "both versions": its series begins there, not at zero.
    let both = &report.pgbaton.phase_spans[position("both versions")];
    let new_first = report.pgbaton.new.as_ref().expect("new").series.buckets[0].t_s;
    assert!(
        (new_first - both.start_s).abs() < 0.25,
        "new release's series starts at {new_first}s, both versions at {}s",
        both.start_s
    );
    // Lock marks: pgbaton's ACCESS EXCLUSIVE steps, and the plain ALTER's one long span.
    use pgbaton_lab::workload::MarkKind;
    assert!(report
        .pgbaton
        .marks
        .iter()
        .any(|m| m.kind == MarkKind::ExclusiveLock && m.label.starts_with("complete")));
    let alter: Vec<_> = naive
        .marks
        .iter()
        .filter(|m| m.kind == MarkKind::ExclusiveLock)
        .collect();
    assert_eq!(alter.len(), 1, "{:?}", naive.marks);

    // The page: self-contained, both panels, the phases, the text report under the charts.
    let html = report.html().expect("the report renders");
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 2);
    for forbidden in [
        "src=", "href=", "url(", "@import", "<link", "<img", "<iframe",
    ] {
        assert!(
            !html.contains(forbidden),
            "the page must load nothing: {forbidden}"
        );
    }
    for phase in order.iter().chain(["ALTER TABLE"].iter()) {
        assert!(
            html.contains(&format!(">{phase}<")),
            "{phase} not in the legend"
        );
    }
    let pre = html.find("<pre>").expect("the text report");
    assert!(
        pre > html.rfind("</svg>").expect("charts"),
        "the numbers go under the charts"
    );
    assert!(html[pre..].contains("side by side"));
    assert!(html[pre..].contains("writes: "));

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-test");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let page = dir.join("demo.html");
    report.write_html(&page).expect("write the report");

    // The DOM after load: no error recorded by the page's self-check, both charts laid out.
    let (dom, stderr) = run_chromium(&dir, &page, &["--dump-dom".to_owned()]);
    assert_eq!(
        html_attribute(&dom, "data-errors"),
        Some("0"),
        "errors: {:?}",
        html_attribute(&dom, "data-error-text")
    );
    assert_eq!(html_attribute(&dom, "data-charts-drawn"), Some("2"));
    assert_eq!(console_messages(&stderr), Vec::<&str>::new());

    // A screenshot: the size asked for, and the charts' colours on it.
    let shot = dir.join("demo.png");
    let (_, stderr) = run_chromium(
        &dir,
        &page,
        &[
            "--window-size=1400,1100".to_owned(),
            format!("--screenshot={}", shot.display()),
        ],
    );
    assert_eq!(console_messages(&stderr), Vec::<&str>::new());
    eprintln!("screenshot: {}", shot.display());
    let colours = [
        (31, 119, 180),  // the old release's lines
        (230, 110, 0),   // the new release's lines
        (214, 230, 247), // the "both versions" band
        (255, 190, 190), // the plain ALTER's band
    ];
    let (counts, size) = count_pixels(&shot, &colours);
    assert_eq!(size, (1400, 1100));
    for (colour, n) in colours.iter().zip(&counts) {
        assert!(*n > 200, "colour {colour:?}: {n} pixels in the screenshot");
    }
}

/// The CLI writes the page with `--report`, and refuses a path it cannot write before running.
#[test]
fn cli_demo_writes_the_report_and_checks_the_path_first() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-cli");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");

    let missing = dir.join("no such dir").join("demo.html");
    let started = Instant::now();
    // The demo's own throwaway cluster, whatever the environment names.
    let pgbaton = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pgbaton"));
        c.env_remove("PGBATON_PG_URL")
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null());
        c
    };
    let out = pgbaton()
        .args(["demo", "--report"])
        .arg(&missing)
        .output()
        .expect("run pgbaton");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no such dir"), "{stderr}");
    assert!(
        !stderr.contains("starting a throwaway"),
        "checked before the run: {stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let page = dir.join("demo.html");
    let out = pgbaton()
        .args([
            "demo",
            "--rows",
            "2000",
            "--baseline",
            "0.5",
            "--overlap",
            "0.5",
            "--after",
            "0.5",
            "--report",
        ])
        .arg(&page)
        .output()
        .expect("run pgbaton");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("HTML report: {}", page.display())));
    let html = std::fs::read_to_string(&page).expect("the report was written");
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 1);
    assert!(html.contains("<h2>pgbaton</h2>"));
    assert!(!html.contains("naive ALTER TABLE</h2>"));
}
