//! The HTML report: one self-contained page (no network requests: the charts are inline SVG drawn
//! by `plotters`, the styles and a small self-check script are inline, and a Content Security
//! Policy forbids loading anything) that shows, per 100 ms, the latency (p50, p99, max) and the
//! throughput of each client group over the run, the phases as coloured bands, failed queries,
//! lock waits, lock retries and `ACCESS EXCLUSIVE` spans; several runs (pgbaton, the plain
//! `ALTER TABLE`) side by side on the same axes; the text report under the charts.
//!
//! [`Page`] is generic (the benchmarks build their own); [`DemoReport::html`] builds the demo's.

use std::fmt::Write as _;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::*;
use crate::workload::TimeSeries;

/// Why the report could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("drawing the charts: {0}")]
    Draw(String),

    #[error("writing the report to {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn draw_err<E: std::fmt::Debug>(e: E) -> ReportError {
    ReportError::Draw(format!("{e:?}"))
}

/// One client group's series (e.g. the old release's clients).
pub struct Group<'a> {
    pub label: String,
    pub series: &'a TimeSeries,
}

/// One run: its charts, phase bands and marks.
pub struct Panel<'a> {
    pub title: String,
    /// One line under the title (the outcome, in words).
    pub summary: String,
    pub spans: &'a [PhaseSpan],
    pub marks: &'a [Mark],
    pub groups: Vec<Group<'a>>,
}

/// A whole page.
pub struct Page<'a> {
    pub title: String,
    /// Paragraphs under the title (plain text, escaped).
    pub intro: Vec<String>,
    pub panels: Vec<Panel<'a>>,
    /// The text report, shown under the charts as it is printed.
    pub text: String,
}

/// Width and height of one panel's SVG, in pixels (it scales with the page).
const WIDTH: u32 = 760;
const LATENCY_H: u32 = 330;
const THROUGHPUT_H: u32 = 210;
const LANE_H: u32 = 120;
/// The lowest latency drawn (log scale), in milliseconds.
const LATENCY_FLOOR_MS: f64 = 0.05;

/// Line colours of the client groups, in order (old release, new release, ...).
const GROUP_COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(230, 110, 0),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];
const FAILURE: RGBColor = RGBColor(214, 39, 40);
const EXCLUSIVE: RGBColor = RGBColor(60, 60, 60);
const RETRY: RGBColor = RGBColor(255, 127, 14);

/// The band colour of a phase (the same name gets the same colour in every panel).
fn phase_color(name: &str) -> RGBColor {
    match name {
        "baseline" => RGBColor(236, 236, 236),
        "start: expand" => RGBColor(255, 244, 200),
        "start: backfill" => RGBColor(214, 240, 206),
        "start: trigger install" => RGBColor(255, 214, 214),
        "start: catch-up" => RGBColor(204, 236, 236),
        "start: finish" => RGBColor(232, 222, 244),
        "both versions" => RGBColor(214, 230, 247),
        "complete" => RGBColor(255, 214, 214),
        "after" => RGBColor(226, 232, 240),
        "ALTER TABLE" => RGBColor(255, 190, 190),
        other => {
            let h = other
                .bytes()
                .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            let pale = |v: u32| 200 + (v % 50) as u8;
            RGBColor(pale(h), pale(h >> 8), pale(h >> 16))
        }
    }
}

fn hex(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// `&`, `<`, `>`, `"` and `'` escaped for HTML text and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The axes every panel shares, so that runs compare at a glance.
#[derive(Clone, Copy, Debug)]
struct Axes {
    x_max_s: f64,
    latency_max_ms: f64,
    throughput_max: f64,
}

impl Axes {
    fn of(panels: &[Panel<'_>]) -> Axes {
        let mut x_max_s: f64 = 1.0;
        let mut latency_max_ms = 1.0;
        let mut throughput_max: f64 = 1.0;
        for p in panels {
            for s in p.spans {
                x_max_s = x_max_s.max(s.end_s);
            }
            for m in p.marks {
                x_max_s = x_max_s.max(m.end_s);
            }
            for g in &p.groups {
                x_max_s = x_max_s.max(g.series.end_s());
                latency_max_ms = f64::max(latency_max_ms, g.series.max_us() as f64 / 1e3);
                for b in &g.series.buckets {
                    throughput_max = throughput_max.max(b.ok_per_s);
                    throughput_max = throughput_max.max(b.failures as f64 / g.series.interval_s);
                }
            }
        }
        Axes {
            x_max_s,
            latency_max_ms: latency_max_ms * 2.0,
            throughput_max: throughput_max * 1.1,
        }
    }

    /// The narrowest band drawn, so that a phase of a few milliseconds stays visible.
    fn min_width_s(&self) -> f64 {
        self.x_max_s / 500.0
    }
}

fn seconds_label(v: &f64) -> String {
    if v.fract().abs() < 1e-9 {
        format!("{v:.0}s")
    } else {
        format!("{v:.1}s")
    }
}

fn ms_label(v: &f64) -> String {
    if *v >= 1000.0 {
        format!("{:.0}s", v / 1000.0)
    } else if *v >= 1.0 {
        format!("{v:.0}ms")
    } else {
        format!("{v}ms")
    }
}

/// The contiguous runs of buckets that had completions, as (t, value) lines; an interval
/// without completions breaks the line (a log scale has no zero).
fn segments(
    series: &TimeSeries,
    value: impl Fn(&crate::workload::Bucket) -> u64,
) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current = Vec::new();
    for b in &series.buckets {
        if b.queries == 0 {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        let ms = (value(b) as f64 / 1e3).max(LATENCY_FLOOR_MS);
        current.push((b.t_s + series.interval_s / 2.0, ms));
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn draw_bands<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    spans: &[PhaseSpan],
    axes: &Axes,
    y: (f64, f64),
    labels: bool,
) -> Result<(), ReportError> {
    chart
        .draw_series(spans.iter().map(|s| {
            let end = s.end_s.max(s.start_s + axes.min_width_s());
            Rectangle::new(
                [(s.start_s, y.0), (end, y.1)],
                phase_color(&s.name).mix(0.85).filled(),
            )
        }))
        .map_err(draw_err)?;
    if labels {
        // A label where its band is wide enough (≈6.5 px per character).
        let px_per_s = f64::from(WIDTH - 80) / axes.x_max_s;
        let style = TextStyle::from(("sans-serif", 14).into_font())
            .color(&RGBColor(70, 70, 70))
            .pos(Pos::new(HPos::Left, VPos::Top));
        chart
            .draw_series(
                spans
                    .iter()
                    .filter(|s| {
                        let name = short_phase(&s.name);
                        (s.end_s - s.start_s) * px_per_s > name.len() as f64 * 6.5 + 6.0
                    })
                    .map(|s| {
                        Text::new(
                            short_phase(&s.name).to_owned(),
                            (s.start_s + 3.0 / px_per_s, y.1),
                            style.clone(),
                        )
                    }),
            )
            .map_err(draw_err)?;
    }
    Ok(())
}

/// A phase's name without the `start: ` prefix (bands are narrow).
fn short_phase(name: &str) -> &str {
    name.strip_prefix("start: ").unwrap_or(name)
}

fn draw_latency(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    panel: &Panel<'_>,
    axes: &Axes,
) -> Result<(), ReportError> {
    let hi = axes.latency_max_ms;
    let mut chart = ChartBuilder::on(area)
        .margin_top(8)
        .margin_right(16)
        .x_label_area_size(28)
        .y_label_area_size(62)
        .build_cartesian_2d(0.0..axes.x_max_s, (LATENCY_FLOOR_MS..hi).log_scale())
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(240, 240, 240))
        .y_desc("latency per 100 ms (log)")
        .y_label_formatter(&ms_label)
        .x_label_formatter(&seconds_label)
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(draw_err)?;
    draw_bands(&mut chart, panel.spans, axes, (LATENCY_FLOOR_MS, hi), true)?;
    for (i, g) in panel.groups.iter().enumerate() {
        let color = GROUP_COLORS[i % GROUP_COLORS.len()];
        for seg in segments(g.series, |b| b.p50_us) {
            chart
                .draw_series(LineSeries::new(seg, color.mix(0.45).stroke_width(1)))
                .map_err(draw_err)?;
        }
        for seg in segments(g.series, |b| b.p99_us) {
            if seg.len() == 1 {
                // One interval between two without completions: a line of one point is not
                // drawn, so a marker.
                chart
                    .draw_series(
                        seg.into_iter()
                            .map(|p| Cross::new(p, 4, color.stroke_width(2))),
                    )
                    .map_err(draw_err)?;
                continue;
            }
            chart
                .draw_series(LineSeries::new(seg, color.stroke_width(2)))
                .map_err(draw_err)?;
        }
        chart
            .draw_series(
                segments(g.series, |b| b.max_us)
                    .into_iter()
                    .flatten()
                    .map(|p| Circle::new(p, 3, color.mix(0.55).filled())),
            )
            .map_err(draw_err)?;
        // Failed queries: a red triangle at the top of the chart, over their interval.
        chart
            .draw_series(g.series.buckets.iter().filter(|b| b.failures > 0).map(|b| {
                TriangleMarker::new(
                    (b.t_s + g.series.interval_s / 2.0, hi / 1.6),
                    5,
                    FAILURE.filled(),
                )
            }))
            .map_err(draw_err)?;
    }
    Ok(())
}

fn draw_throughput(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    panel: &Panel<'_>,
    axes: &Axes,
) -> Result<(), ReportError> {
    let hi = axes.throughput_max;
    let mut chart = ChartBuilder::on(area)
        .margin_top(4)
        .margin_right(16)
        .x_label_area_size(28)
        .y_label_area_size(62)
        .build_cartesian_2d(0.0..axes.x_max_s, 0.0..hi)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(240, 240, 240))
        .y_desc("queries/s (ok; failed in red)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_label_formatter(&seconds_label)
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(draw_err)?;
    draw_bands(&mut chart, panel.spans, axes, (0.0, hi), false)?;
    for (i, g) in panel.groups.iter().enumerate() {
        let color = GROUP_COLORS[i % GROUP_COLORS.len()];
        let w = g.series.interval_s;
        // Throughput is zero in an interval without completions: the line drops to the axis.
        chart
            .draw_series(LineSeries::new(
                g.series
                    .buckets
                    .iter()
                    .map(|b| (b.t_s + w / 2.0, b.ok_per_s)),
                color.stroke_width(2),
            ))
            .map_err(draw_err)?;
        chart
            .draw_series(g.series.buckets.iter().filter(|b| b.failures > 0).map(|b| {
                Rectangle::new(
                    [(b.t_s, 0.0), (b.t_s + w, b.failures as f64 / w)],
                    FAILURE.filled(),
                )
            }))
            .map_err(draw_err)?;
    }
    Ok(())
}

/// The bottom lane: `ACCESS EXCLUSIVE` spans, lock retries and waits, failed queries.
fn draw_lane(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    panel: &Panel<'_>,
    axes: &Axes,
) -> Result<(), ReportError> {
    let mut chart = ChartBuilder::on(area)
        .margin_top(4)
        .margin_right(16)
        .x_label_area_size(30)
        .y_label_area_size(62)
        .build_cartesian_2d(0.0..axes.x_max_s, 0.0..3.0)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_x_mesh()
        .y_labels(0)
        .x_desc("seconds since the run began")
        .x_label_formatter(&seconds_label)
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(draw_err)?;
    draw_bands(&mut chart, panel.spans, axes, (0.0, 3.0), false)?;
    let min_w = axes.min_width_s();
    // Row 2: ACCESS EXCLUSIVE held or waited for.
    chart
        .draw_series(
            panel
                .marks
                .iter()
                .filter(|m| m.kind == MarkKind::ExclusiveLock)
                .map(|m| {
                    let end = m.end_s.max(m.start_s + min_w);
                    Rectangle::new([(m.start_s, 2.2), (end, 2.8)], EXCLUSIVE.filled())
                }),
        )
        .map_err(draw_err)?;
    // Row 1: lock timeouts retried (their wait) and backfill lock waits.
    chart
        .draw_series(
            panel
                .marks
                .iter()
                .filter(|m| m.kind == MarkKind::LockRetry)
                .map(|m| {
                    let end = m.end_s.max(m.start_s + min_w);
                    Rectangle::new([(m.start_s, 1.2), (end, 1.8)], RETRY.filled())
                }),
        )
        .map_err(draw_err)?;
    chart
        .draw_series(
            panel
                .marks
                .iter()
                .filter(|m| m.kind == MarkKind::LockWait)
                .map(|m| TriangleMarker::new((m.start_s, 1.5), 5, RETRY.filled())),
        )
        .map_err(draw_err)?;
    // Row 0: intervals in which a query failed.
    for g in &panel.groups {
        let w = g.series.interval_s;
        chart
            .draw_series(g.series.buckets.iter().filter(|b| b.failures > 0).map(|b| {
                Rectangle::new(
                    [(b.t_s, 0.2), (b.t_s + w.max(min_w), 0.8)],
                    FAILURE.filled(),
                )
            }))
            .map_err(draw_err)?;
    }
    let style = TextStyle::from(("sans-serif", 11).into_font())
        .color(&RGBColor(70, 70, 70))
        .pos(Pos::new(HPos::Right, VPos::Center));
    // Row names in the label area, left of the axis.
    for (row, name) in [(2.5, "excl. lock"), (1.5, "lock retry"), (0.5, "failed")] {
        let (x, y) = chart.backend_coord(&(0.0, row));
        area.draw(&Text::new(
            name,
            (x - 4 - area_left(area), y - area_top(area)),
            style.clone(),
        ))
        .map_err(draw_err)?;
    }
    Ok(())
}

fn area_left(area: &DrawingArea<SVGBackend<'_>, Shift>) -> i32 {
    area.get_base_pixel().0
}

fn area_top(area: &DrawingArea<SVGBackend<'_>, Shift>) -> i32 {
    area.get_base_pixel().1
}

/// One panel's SVG.
fn panel_svg(panel: &Panel<'_>, axes: &Axes) -> Result<String, ReportError> {
    let mut svg = String::new();
    {
        let height = LATENCY_H + THROUGHPUT_H + LANE_H;
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (latency, rest) = root.split_vertically(LATENCY_H);
        let (throughput, lane) = rest.split_vertically(THROUGHPUT_H);
        draw_latency(&latency, panel, axes)?;
        draw_throughput(&throughput, panel, axes)?;
        draw_lane(&lane, panel, axes)?;
        root.present().map_err(draw_err)?;
    }
    // Scale with the page: keep the viewBox, let CSS set the size.
    let height = LATENCY_H + THROUGHPUT_H + LANE_H;
    Ok(svg.replacen(
        &format!("width=\"{WIDTH}\" height=\"{height}\""),
        "class=\"chart\"",
        1,
    ))
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#222;background:#fafafa}\
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:4px 0}\
.intro{max-width:1100px;line-height:1.45}\
.panels{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:18px;margin:16px 0}\
.panel{background:#fff;border:1px solid #ddd;border-radius:6px;padding:12px}\
.summary{margin:2px 0 8px;color:#444}\
svg.chart{width:100%;height:auto;display:block}\
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;margin:8px 0 0}\
.legend span.sw{display:inline-block;width:12px;height:12px;border:1px solid #999;vertical-align:-2px;margin-right:4px}\
.legend span.ln{display:inline-block;width:18px;height:3px;vertical-align:3px;margin-right:4px}\
table.phases{border-collapse:collapse;font-size:12px;margin-top:8px}\
table.phases td{padding:1px 8px 1px 0}\
details{margin-top:6px;font-size:12px}\
pre{background:#fff;border:1px solid #ddd;padding:12px;overflow-x:auto;font-size:12px;line-height:1.35}";

/// Records script errors and failed loads into the page, and counts the charts drawn, so that a
/// headless browser's `--dump-dom` shows both (`data-errors`, `data-charts-drawn`).
const SELF_CHECK: &str = "\
(function(){var d=document.documentElement,errors=[];\
function note(t){errors.push(t);d.setAttribute('data-errors',String(errors.length));d.setAttribute('data-error-text',errors.join(' | '));}\
window.addEventListener('error',function(e){note(String(e.message||(e.target&&(e.target.src||e.target.href))||'error'));},true);\
window.addEventListener('securitypolicyviolation',function(e){note('blocked '+e.blockedURI);});\
window.addEventListener('load',function(){var n=0;\
document.querySelectorAll('svg.chart').forEach(function(s){var b=s.getBoundingClientRect();\
if(b.width>200&&b.height>200&&s.querySelectorAll('polyline').length>0)n++;});\
d.setAttribute('data-charts-drawn',String(n));if(!d.hasAttribute('data-errors'))d.setAttribute('data-errors','0');});})();";

fn legend(panel: &Panel<'_>) -> String {
    let mut out = String::from("<div class=\"legend\">");
    for (i, g) in panel.groups.iter().enumerate() {
        let c = hex(GROUP_COLORS[i % GROUP_COLORS.len()]);
        let _ = write!(
            out,
            "<span><span class=\"ln\" style=\"background:{c}\"></span>{}: p99 (bold), p50 (pale), max (dots), ok/s</span>",
            escape(&g.label)
        );
    }
    let _ = write!(
        out,
        "<span><span class=\"sw\" style=\"background:{}\"></span>failed queries</span>\
         <span><span class=\"sw\" style=\"background:{}\"></span>ACCESS EXCLUSIVE held or awaited</span>\
         <span><span class=\"sw\" style=\"background:{}\"></span>lock timeout retried / backfill lock wait</span>",
        hex(FAILURE),
        hex(EXCLUSIVE),
        hex(RETRY)
    );
    let mut seen = Vec::new();
    for s in panel.spans {
        if !seen.contains(&s.name.as_str()) {
            seen.push(&s.name);
            let _ = write!(
                out,
                "<span><span class=\"sw\" style=\"background:{}\"></span>{}</span>",
                hex(phase_color(&s.name)),
                escape(&s.name)
            );
        }
    }
    out.push_str("</div>");
    out
}

fn phase_table(panel: &Panel<'_>) -> String {
    let mut out =
        String::from("<details><summary>phases and lock events</summary><table class=\"phases\">");
    for s in panel.spans {
        let _ = write!(
            out,
            "<tr><td><span class=\"sw\" style=\"display:inline-block;width:10px;height:10px;background:{}\"></span></td>\
             <td>{}</td><td>{:.3}s – {:.3}s</td><td>{}</td></tr>",
            hex(phase_color(&s.name)),
            escape(&s.name),
            s.start_s,
            s.end_s,
            human_us((s.end_s - s.start_s) * 1e6)
        );
    }
    for m in panel.marks {
        let _ = write!(
            out,
            "<tr><td></td><td>{}</td><td>{:.3}s – {:.3}s</td><td>{}</td></tr>",
            escape(m.kind.label()),
            m.start_s,
            m.end_s,
            escape(&m.label)
        );
    }
    out.push_str("</table></details>");
    out
}

impl Page<'_> {
    /// The page as one HTML document.
    pub fn html(&self) -> Result<String, ReportError> {
        let axes = Axes::of(&self.panels);
        let mut out = String::with_capacity(256 * 1024);
        let _ = write!(
            out,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{}</title><style>{STYLE}</style><script>{SELF_CHECK}</script></head><body>\
             <h1>{}</h1>",
            escape(&self.title),
            escape(&self.title)
        );
        for p in &self.intro {
            let _ = write!(out, "<p class=\"intro\">{}</p>", escape(p));
        }
        out.push_str("<div class=\"panels\">");
        for panel in &self.panels {
            let _ = write!(
                out,
                "<section class=\"panel\"><h2>{}</h2><p class=\"summary\">{}</p>",
                escape(&panel.title),
                escape(&panel.summary)
            );
            out.push_str(&panel_svg(panel, &axes)?);
            out.push_str(&legend(panel));
            out.push_str(&phase_table(panel));
            out.push_str("</section>");
        }
        out.push_str("</div>");
        let _ = write!(out, "<h2>The numbers</h2><pre>{}</pre>", escape(&self.text));
        out.push_str("</body></html>\n");
        Ok(out)
    }
}

/// Whether `path` can take the report: its directory exists and it is not a directory itself
/// (checked before a run, so that a typo does not cost the run).
pub fn check_writable(path: &Path) -> Result<(), ReportError> {
    let io = |source: std::io::Error| ReportError::Io {
        path: path.display().to_string(),
        source,
    };
    if path.is_dir() {
        return Err(io(std::io::Error::other("it is a directory")));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(io(std::io::Error::other(format!(
            "no directory {}",
            dir.display()
        ))));
    }
    Ok(())
}

/// Writes `html` to `path`.
pub fn write(path: &Path, html: &str) -> Result<(), ReportError> {
    std::fs::write(path, html).map_err(|source| ReportError::Io {
        path: path.display().to_string(),
        source,
    })
}

impl RunReport {
    /// One sentence on what the run's clients felt.
    fn summary(&self) -> String {
        let outcome = if self.completed {
            "completed".to_owned()
        } else {
            format!(
                "FAILED: {}",
                self.error.as_deref().unwrap_or("unknown error")
            )
        };
        format!(
            "{outcome} — {} queries, {} failed; migration {:.2}s; during it: worst p99 {}, max {}, longest stall {} (baseline p99 {})",
            self.queries(),
            self.failures(),
            self.migration_s,
            human_us(self.worst_p99_during_migration_us() as f64),
            human_us(self.max_latency_during_migration_us() as f64),
            human_us(self.longest_stall_during_migration_ms() * 1e3),
            human_us(self.baseline_p99_us() as f64),
        )
    }

    /// The run's panel: the old and the new release's clients.
    pub fn panel(&self) -> Panel<'_> {
        let groups = [
            ("old release", self.old.as_ref()),
            ("new release", self.new.as_ref()),
        ]
        .into_iter()
        .filter_map(|(label, r)| {
            r.map(|r| Group {
                label: label.to_owned(),
                series: &r.series,
            })
        })
        .collect();
        Panel {
            title: self.method.clone(),
            summary: self.summary(),
            spans: &self.phase_spans,
            marks: &self.marks,
            groups,
        }
    }
}

impl DemoReport {
    /// The demo's page: pgbaton's run (and the plain `ALTER TABLE` beside it), the text report
    /// under the charts.
    pub fn html(&self) -> Result<String, ReportError> {
        let e = &self.environment;
        let mut panels = vec![self.pgbaton.panel()];
        panels.extend(self.naive.as_ref().map(RunReport::panel));
        let page = Page {
            title: format!(
                "pgbaton demo: {} under load{}",
                MIGRATION_NAME,
                if self.naive.is_some() {
                    ", beside a plain ALTER TABLE"
                } else {
                    ""
                }
            ),
            intro: vec![
                format!(
                    "{} rows; {} old-release clients on the base table, {} new-release clients on the new version's schema (think time {:.0} ms); lock_timeout {:.0} ms. {} ({}).",
                    e.rows, e.old_clients, e.new_clients, e.think_time_ms, e.lock_timeout_ms, e.server_version, e.database
                ),
                "The migration: id integer → bigint (alter_column), name → full_name (rename_column), email_domain NOT NULL filled by up (add_column). \
                 Each point is one 100 ms interval of completed queries: a query held behind a lock shows as a gap followed by its whole latency. \
                 The panels share their axes."
                    .to_owned(),
                format!(
                    "Result: {}",
                    if self.ok() {
                        "zero failed queries, schema right, no write lost"
                    } else {
                        "NOT clean (see the numbers below)"
                    }
                ),
            ],
            panels,
            text: self.to_string(),
        };
        page.html()
    }

    /// Writes [`DemoReport::html`] to `path`.
    pub fn write_html(&self, path: &Path) -> Result<(), ReportError> {
        write(path, &self.html()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::Bucket;

    fn series(latencies_ms: &[u64]) -> TimeSeries {
        TimeSeries {
            interval_s: 0.1,
            buckets: latencies_ms
                .iter()
                .enumerate()
                .map(|(i, &ms)| Bucket {
                    t_s: i as f64 * 0.1,
                    queries: u64::from(ms > 0),
                    failures: u64::from(ms > 100),
                    ok_per_s: if ms > 0 && ms <= 100 { 10.0 } else { 0.0 },
                    p50_us: ms * 1000,
                    p99_us: ms * 1000,
                    max_us: ms * 1000,
                })
                .collect(),
        }
    }

    #[test]
    fn a_page_escapes_its_text_and_loads_nothing() {
        let old = series(&[1, 2, 0, 0, 400, 3, 1]);
        let spans = vec![
            PhaseSpan {
                name: "baseline".into(),
                start_s: 0.0,
                end_s: 0.2,
            },
            PhaseSpan {
                name: "<script>alert(1)</script>".into(),
                start_s: 0.2,
                end_s: 0.7,
            },
        ];
        let marks = vec![Mark {
            kind: MarkKind::ExclusiveLock,
            start_s: 0.2,
            end_s: 0.5,
            label: "\"evil\" & <b>".into(),
        }];
        let page = Page {
            title: "t <i>".into(),
            intro: vec!["a & b".into()],
            panels: vec![Panel {
                title: "run".into(),
                summary: "s".into(),
                spans: &spans,
                marks: &marks,
                groups: vec![Group {
                    label: "old release".into(),
                    series: &old,
                }],
            }],
            text: "x < y".into(),
        };
        let html = page.html().expect("renders");
        assert!(!html.contains("<script>alert"), "unescaped phase name");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&quot;evil&quot; &amp; &lt;b&gt;"));
        assert!(html.contains("<pre>x &lt; y</pre>"));
        assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"));
        assert_eq!(html.matches("<svg class=\"chart\"").count(), 1);
        // p99 and p50 lines of the two stretches with completions (the empty intervals break
        // the line), the single-interval stretch as a marker, a failure triangle.
        assert!(html.matches("<polyline").count() >= 4, "{html}");
        assert!(!html.contains("src=") && !html.contains("href="));
    }

    #[test]
    fn segments_break_at_empty_intervals() {
        let s = series(&[1, 2, 0, 5, 0, 0, 7, 8]);
        let segs = segments(&s, |b| b.p99_us);
        let lens: Vec<usize> = segs.iter().map(Vec::len).collect();
        assert_eq!(lens, vec![2, 1, 2]);
        assert!(
            (segs[0][0].0 - 0.05).abs() < 1e-9,
            "points sit mid-interval"
        );
        assert!((segs[2][1].1 - 8.0).abs() < 1e-9, "in milliseconds");
    }
}
