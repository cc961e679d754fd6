//! Reports: a table for the terminal, CSV files, and an HTML page with SVG plots (load and
//! replicas over time, latency over time, cost against SLO attainment).

use crate::compare::Comparison;
use crate::record::PolicyResult;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::CoordTranslate;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// Facts about the run shown with the results.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// What was replayed.
    pub workload: String,
    /// The exact command.
    pub command: String,
    /// Latency SLO, seconds.
    pub slo: f64,
    /// Notes (trace derivations, cluster model).
    pub notes: Vec<String>,
}

/// A duration as the report prints it.
pub(crate) fn secs(s: f64) -> String {
    if s >= 10.0 {
        format!("{s:.1}s")
    } else if s >= 1.0 {
        format!("{s:.2}s")
    } else {
        format!("{:.0}ms", s * 1000.0)
    }
}

/// An axis tick as a reader takes it in at a glance: "2.5M", "15k", "600", "0.5" (plotters
/// prints every tick with a decimal, "2000000.0").
pub(crate) fn axis_number(v: f64) -> String {
    let magnitude = v.abs();
    let (scaled, suffix) = if magnitude >= 1e6 {
        (v / 1e6, "M")
    } else if magnitude >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    // Ticks are round numbers: three decimals are plenty.
    format!("{}{suffix}", ebb_core::time::fmt_short(scaled))
}

/// The comparison as a Markdown table (readable in a terminal too).
pub fn table(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", HEADERS.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(HEADERS.len() - 1));
    let oracle = oracle_seconds(c);
    for r in &c.results {
        let row = cells(r, oracle, c.clairvoyant_replica_seconds);
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

/// The table's columns.
const HEADERS: [&str; 16] = [
    "policy",
    "requests",
    "SLO attainment",
    "p50",
    "p95",
    "p99",
    "max",
    "timeouts",
    "drops",
    "replica-s",
    "GPU-h",
    "vs oracle",
    "vs clairvoyant",
    "scale events",
    "reversed within 2 s",
    "time to capacity (mean / max)",
];

/// The oracle's replica-seconds as simulated (or its schedule's, when it was not run).
fn oracle_seconds(c: &Comparison) -> f64 {
    c.results
        .iter()
        .find(|r| r.policy == "oracle")
        .map_or(c.oracle_replica_seconds, |r| r.replica_seconds)
}

/// One policy's row of the table, as text cells.
fn cells(r: &PolicyResult, oracle: f64, clairvoyant: f64) -> Vec<String> {
    let relative = |floor: f64| {
        if floor > 0.0 {
            format!("{:.2}x", r.replica_seconds / floor)
        } else {
            "-".into()
        }
    };
    vec![
        r.policy.clone(),
        r.requests.to_string(),
        format!("{:.3}%", r.slo_attainment * 100.0),
        secs(r.p50),
        secs(r.p95),
        secs(r.p99),
        secs(r.max),
        r.timeouts.to_string(),
        r.drops.to_string(),
        format!("{:.0}", r.replica_seconds),
        format!("{:.2}", r.gpu_hours),
        relative(oracle),
        relative(clairvoyant),
        r.scale_events.to_string(),
        r.reversed_scale_events.to_string(),
        format!(
            "{} / {}",
            secs(r.time_to_capacity_mean),
            secs(r.time_to_capacity_max)
        ),
    ]
}

/// Writes `summary.csv`, one `timeseries-POLICY.csv` and `scale-log-POLICY.txt` (each
/// replica change with the decision's reasons) per policy, three SVG plots and
/// `report.html` into `dir`.
pub fn write(
    dir: &Path,
    c: &Comparison,
    info: &RunInfo,
) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut summary =
        csv::Writer::from_path(dir.join("summary.csv")).map_err(std::io::Error::other)?;
    for r in &c.results {
        summary.serialize(r).map_err(std::io::Error::other)?;
    }
    summary.flush()?;
    written.push(dir.join("summary.csv"));
    for r in &c.results {
        let path = dir.join(format!("timeseries-{}.csv", r.policy));
        let mut w = csv::Writer::from_path(&path).map_err(std::io::Error::other)?;
        for b in &r.buckets {
            w.serialize(b).map_err(std::io::Error::other)?;
        }
        w.flush()?;
        written.push(path);
        if !r.scale_log.is_empty() {
            let path = dir.join(format!("scale-log-{}.txt", r.policy));
            let lines: String = r
                .scale_log
                .iter()
                .map(|(t, from, to, why)| format!("{t:.1}s {from} -> {to}: {why}\n"))
                .collect();
            std::fs::write(&path, lines)?;
            written.push(path);
        }
    }
    let plots = [
        ("replicas.svg", replicas_plot(c)),
        ("latency.svg", latency_plot(c, info.slo)),
        ("cost-slo.svg", cost_plot(c)),
    ];
    for (name, svg) in &plots {
        std::fs::write(dir.join(name), svg)?;
        written.push(dir.join(name));
    }
    let html = page(
        c,
        info,
        &plots.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>(),
    );
    std::fs::write(dir.join("report.html"), html)?;
    written.push(dir.join("report.html"));
    Ok(written)
}

/// Escapes text for HTML.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn page(c: &Comparison, info: &RunInfo, svgs: &[&str]) -> String {
    let oracle = oracle_seconds(c);
    let rows: String = c
        .results
        .iter()
        .map(|r| {
            let tds: String = cells(r, oracle, c.clairvoyant_replica_seconds)
                .iter()
                .map(|v| format!("<td>{}</td>", escape(v)))
                .collect();
            format!("<tr>{tds}</tr>")
        })
        .collect();
    let header: String = HEADERS.iter().map(|h| format!("<th>{h}</th>")).collect();
    let notes: String = info
        .notes
        .iter()
        .map(|n| format!("<li>{}</li>", escape(n)))
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Ebb simulation: {title}</title>
<style>
{PAGE_STYLE}
</style></head><body>
<h1>Ebb simulation: {title}</h1>
<p>Command: <code>{command}</code></p>
<p>Latency SLO {slo}. Requests that time out or are dropped count against the SLO.</p>
<ul>{notes}</ul>
<table><tr>{header}</tr>
{rows}</table>
<figure>{p0}<figcaption>Load (as replicas needed at 70% of slots, grey) and the replicas each policy ran.</figcaption></figure>
<figure>{p1}<figcaption>p99 latency per interval, with the SLO.</figcaption></figure>
<figure>{p2}<figcaption>Cost (replica-seconds relative to the oracle) against the share of requests missing the SLO: lower left is better.</figcaption></figure>
</body></html>
"#,
        title = escape(&info.workload),
        command = escape(&info.command),
        slo = secs(info.slo),
        p0 = svgs.first().copied().unwrap_or(""),
        p1 = svgs.get(1).copied().unwrap_or(""),
        p2 = svgs.get(2).copied().unwrap_or(""),
    )
}

/// The policies' colours, in order.
pub(crate) const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

fn color_of(i: usize, r: &PolicyResult) -> RGBColor {
    if r.policy == "oracle" {
        RGBColor(0, 0, 0)
    } else {
        COLORS[i % COLORS.len()]
    }
}

/// Time axis in the unit that reads best.
pub(crate) fn time_axis(duration: f64) -> (f64, &'static str) {
    if duration > 3.0 * 86400.0 {
        (86400.0, "days")
    } else if duration > 3.0 * 3600.0 {
        (3600.0, "hours")
    } else if duration > 180.0 {
        (60.0, "minutes")
    } else {
        (1.0, "seconds")
    }
}

/// Draws one line per policy (the oracle first, underneath) and the legend.
fn policy_lines<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    c: &Comparison,
    unit: f64,
    width: u32,
    value: impl Fn(&crate::record::Bucket) -> Option<f64>,
) where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate<From = (f64, f64)>,
{
    for (i, r) in drawing_order(c) {
        let color = color_of(i, r);
        let pts: Vec<(f64, f64)> = r
            .buckets
            .iter()
            .filter_map(|b| value(b).map(|v| (b.t / unit, v)))
            .collect();
        let _ = chart
            .draw_series(LineSeries::new(pts, color.stroke_width(width)))
            .map(|s| {
                s.label(r.policy.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2))
                })
            });
    }
    draw_legend(chart);
}

/// The legend every time plot of the reports uses.
pub(crate) fn draw_legend<'a, DB, CT>(chart: &mut ChartContext<'a, DB, CT>)
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate<From = (f64, f64)>,
{
    let _ = chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw();
}

/// The reports' page style.
pub(crate) const PAGE_STYLE: &str = "body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
code { background: #f4f4f4; padding: 0.1rem 0.3rem; }
figure { margin: 1.5rem 0; }";

/// The oracle first, so that the policies' lines are drawn over it.
fn drawing_order(c: &Comparison) -> Vec<(usize, &PolicyResult)> {
    let mut v: Vec<(usize, &PolicyResult)> = c.results.iter().enumerate().collect();
    v.sort_by_key(|(_, r)| r.policy != "oracle");
    v
}

/// A time-series chart as every report draws one: `caption`, time on x up to `x_max` (in the
/// unit `x_desc` names), `y` on y, labelled mesh. `None` when plotters cannot lay it out.
pub(crate) fn time_chart<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    x_max: f64,
    y: std::ops::Range<f64>,
    x_desc: &str,
    y_desc: &str,
) -> Option<ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..x_max, y)
        .ok()?;
    let _ = chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|v| axis_number(*v))
        .y_label_formatter(&|v| axis_number(*v))
        .draw();
    Some(chart)
}

/// A grey reference area under the lines (the load as replicas needed, the lower bound on
/// servers), with its legend entry.
pub(crate) fn reference_area<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    points: Vec<(f64, f64)>,
    label: impl Into<String>,
) {
    let _ = chart
        .draw_series(AreaSeries::new(
            points,
            0.0,
            RGBColor(220, 220, 220).mix(0.8),
        ))
        .map(|s| {
            s.label(label).legend(|(x, y)| {
                Rectangle::new(
                    [(x, y - 5), (x + 15, y + 5)],
                    RGBColor(200, 200, 200).filled(),
                )
            })
        });
}

fn replicas_plot(c: &Comparison) -> String {
    let mut svg = String::new();
    (|| {
        let root = SVGBackend::with_string(&mut svg, (1000, 420)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let duration = c.results.first().map_or(1.0, |r| r.duration);
        let (unit, label) = time_axis(duration);
        let ymax = c
            .results
            .iter()
            .flat_map(|r| r.buckets.iter().map(|b| b.replicas.max(b.needed)))
            .fold(1.0, f64::max)
            * 1.1;
        let Some(mut chart) = time_chart(
            &root,
            "Replicas over time",
            duration / unit,
            0.0..ymax,
            label,
            "replicas",
        ) else {
            return;
        };
        if let Some(first) = c.results.first() {
            let needed = first
                .buckets
                .iter()
                .map(|b| (b.t / unit, b.needed))
                .collect();
            reference_area(&mut chart, needed, "needed (load)");
        }
        policy_lines(&mut chart, c, unit, 2, |b| Some(b.replicas));
        let _ = root.present();
    })();
    svg
}

fn ymin_latency(c: &Comparison) -> f64 {
    c.results
        .iter()
        .flat_map(|r| r.buckets.iter().map(|b| b.p99))
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min)
        .clamp(1e-4, 1.0)
}

fn latency_plot(c: &Comparison, slo: f64) -> String {
    let mut svg = String::new();
    (|| {
        let root = SVGBackend::with_string(&mut svg, (1000, 380)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let duration = c.results.first().map_or(1.0, |r| r.duration);
        let (unit, label) = time_axis(duration);
        let ymax = c
            .results
            .iter()
            .flat_map(|r| r.buckets.iter().map(|b| b.p99))
            .fold(slo * 2.0, f64::max)
            * 1.2;
        let chart = ChartBuilder::on(&root)
            .caption("p99 latency over time (log scale)", ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(
                0.0..duration / unit,
                ((ymin_latency(c) * 0.5)..ymax).log_scale(),
            );
        let Ok(mut chart) = chart else { return };
        let _ = chart
            .configure_mesh()
            .x_desc(label)
            .y_desc("p99 latency")
            .y_label_formatter(&|v| secs(*v))
            .draw();
        let _ = chart
            .draw_series(LineSeries::new(
                vec![(0.0, slo), (duration / unit, slo)],
                BLACK.stroke_width(1),
            ))
            .map(|s| {
                s.label("SLO")
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK))
            });
        policy_lines(&mut chart, c, unit, 1, |b| (b.p99 > 0.0).then_some(b.p99));
        let _ = root.present();
    })();
    svg
}

fn cost_plot(c: &Comparison) -> String {
    let mut svg = String::new();
    (|| {
        let root = SVGBackend::with_string(&mut svg, (760, 440)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let oracle = oracle_seconds(c).max(1e-9);
        let xs: Vec<f64> = c
            .results
            .iter()
            .map(|r| r.replica_seconds / oracle)
            .collect();
        // Share of requests missing the SLO, on a log axis: 0.1% and 1% are far apart there.
        let floor = 0.001;
        let ys: Vec<f64> = c
            .results
            .iter()
            .map(|r| ((1.0 - r.slo_attainment) * 100.0).max(floor))
            .collect();
        let xmax = xs.iter().copied().fold(1.0, f64::max) * 1.2;
        let ymax = ys.iter().copied().fold(1.0, f64::max) * 3.0;
        let chart = ChartBuilder::on(&root)
            .caption(
                "Cost against SLO misses (lower left is better)",
                ("sans-serif", 20),
            )
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..xmax, (floor..ymax).log_scale());
        let Ok(mut chart) = chart else { return };
        let _ = chart
            .configure_mesh()
            .x_desc("replica-seconds relative to the oracle")
            .y_desc("requests missing the SLO (%)")
            .draw();
        for (i, r) in c.results.iter().enumerate() {
            let color = color_of(i, r);
            let p = (xs[i], ys[i]);
            let _ = chart.draw_series(std::iter::once(Circle::new(p, 6, color.filled())));
            // Stagger labels so that points close together stay readable.
            let dy = if i % 2 == 0 { 1.35 } else { 1.0 / 1.35 };
            let _ = chart.draw_series(std::iter::once(Text::new(
                r.policy.clone(),
                (p.0 + xmax * 0.015, p.1 * dy),
                ("sans-serif", 15).into_font().color(&color),
            )));
        }
        let _ = root.present();
    })();
    svg
}

#[cfg(test)]
mod tests {
    use super::axis_number;

    #[test]
    fn axis_ticks_read_at_a_glance() {
        assert_eq!(axis_number(2_000_000.0), "2M");
        assert_eq!(axis_number(2_500_000.0), "2.5M");
        assert_eq!(axis_number(14_000.0), "14k");
        assert_eq!(axis_number(600.0), "600");
        assert_eq!(axis_number(0.5), "0.5");
        assert_eq!(axis_number(0.010_000_000_000_000_002), "0.01");
        assert_eq!(axis_number(0.0), "0");
    }
}
