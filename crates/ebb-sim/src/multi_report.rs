//! Reports of a multi-model comparison: a table for the terminal, CSV files (per mode, per
//! model, the fleet over time), and an HTML page with SVG plots of servers over time and
//! packing efficiency over time.

use crate::multi::{MultiComparison, MultiResult};
use crate::report::{
    draw_legend, escape, reference_area, secs, time_axis, time_chart, RunInfo, COLORS, PAGE_STYLE,
};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Models with fewer requests are not judged on their own SLO attainment (too few to tell).
pub const MIN_MODEL_REQUESTS: u64 = 20;
/// Per-model attainment a model must reach to count as meeting its SLO.
pub const MODEL_TARGET: f64 = 0.99;

const HEADERS: [&str; 13] = [
    "mode",
    "requests",
    "SLO attainment",
    "models at >= 99%",
    "worst model",
    "p99",
    "server-h",
    "vs ebb",
    "peak servers",
    "packing (mean / p95 / overall)",
    "vs fresh pack",
    "moves/h",
    "loads/h",
];

fn cells(r: &MultiResult, base: f64) -> Vec<String> {
    let (met, judged) = r.models_meeting(MODEL_TARGET, MIN_MODEL_REQUESTS);
    let worst = r
        .worst_model(MIN_MODEL_REQUESTS)
        .map_or("-".to_string(), |m| {
            format!("{:.2}% ({})", m.result.slo_attainment * 100.0, m.model)
        });
    vec![
        r.mode.clone(),
        r.all.requests.to_string(),
        format!("{:.3}%", r.all.slo_attainment * 100.0),
        format!("{met} / {judged}"),
        worst,
        secs(r.all.p99),
        format!("{:.1}", r.server_seconds / 3600.0),
        if base > 0.0 {
            format!("{:.2}x", r.server_seconds / base)
        } else {
            "-".into()
        },
        r.peak_servers.to_string(),
        format!(
            "{:.3} / {:.3} / {:.3}",
            r.packing_mean, r.packing_p95, r.packing_overall
        ),
        format!("{:.3}", r.vs_fresh_pack),
        format!("{:.1}", r.moves_per_hour),
        format!("{:.1}", r.loads_per_hour),
    ]
}

/// The comparison as a Markdown table.
pub fn table(c: &MultiComparison) -> String {
    let base = c.results.first().map_or(0.0, |r| r.server_seconds);
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", HEADERS.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(HEADERS.len() - 1));
    for r in &c.results {
        let _ = writeln!(out, "| {} |", cells(r, base).join(" | "));
    }
    out
}

#[derive(serde::Serialize)]
struct ModeRow<'a> {
    mode: &'a str,
    requests: u64,
    slo_attainment: f64,
    p99: f64,
    server_seconds: f64,
    peak_servers: u32,
    packing_mean: f64,
    packing_p95: f64,
    packing_overall: f64,
    vs_fresh_pack: f64,
    moves_per_hour: f64,
    loads_per_hour: f64,
    servers_added: u64,
    servers_removed: u64,
    unplaced_replica_seconds: f64,
    over_capacity_seconds: u64,
    model_replica_seconds: f64,
}

#[derive(serde::Serialize)]
struct ModelRow<'a> {
    mode: &'a str,
    model: &'a str,
    memory_mib: u64,
    requests: u64,
    slo_attainment: f64,
    p50: f64,
    p99: f64,
    timeouts: u64,
    replica_seconds: f64,
    scale_events: u64,
}

fn csv_err(e: csv::Error) -> std::io::Error {
    std::io::Error::other(e)
}

/// Writes `multi-summary.csv`, `multi-models.csv`, one `fleet-MODE.csv` per mode, two SVG
/// plots and `report.html` into `dir`.
pub fn write(dir: &Path, c: &MultiComparison, info: &RunInfo) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let path = dir.join("multi-summary.csv");
    let mut w = csv::Writer::from_path(&path).map_err(csv_err)?;
    for r in &c.results {
        w.serialize(ModeRow {
            mode: &r.mode,
            requests: r.all.requests,
            slo_attainment: r.all.slo_attainment,
            p99: r.all.p99,
            server_seconds: r.server_seconds,
            peak_servers: r.peak_servers,
            packing_mean: r.packing_mean,
            packing_p95: r.packing_p95,
            packing_overall: r.packing_overall,
            vs_fresh_pack: r.vs_fresh_pack,
            moves_per_hour: r.moves_per_hour,
            loads_per_hour: r.loads_per_hour,
            servers_added: r.servers_added,
            servers_removed: r.servers_removed,
            unplaced_replica_seconds: r.unplaced_replica_seconds,
            over_capacity_seconds: r.over_capacity_seconds,
            model_replica_seconds: r.all.replica_seconds,
        })
        .map_err(csv_err)?;
    }
    w.flush()?;
    written.push(path);
    let path = dir.join("multi-models.csv");
    let mut w = csv::Writer::from_path(&path).map_err(csv_err)?;
    for r in &c.results {
        for m in &r.models {
            w.serialize(ModelRow {
                mode: &r.mode,
                model: &m.model,
                memory_mib: m.memory_mib,
                requests: m.result.requests,
                slo_attainment: m.result.slo_attainment,
                p50: m.result.p50,
                p99: m.result.p99,
                timeouts: m.result.timeouts,
                replica_seconds: m.result.replica_seconds,
                scale_events: m.result.scale_events,
            })
            .map_err(csv_err)?;
        }
    }
    w.flush()?;
    written.push(path);
    for r in &c.results {
        let path = dir.join(format!("fleet-{}.csv", r.mode));
        let mut w = csv::Writer::from_path(&path).map_err(csv_err)?;
        for b in &r.fleet {
            w.serialize(b).map_err(csv_err)?;
        }
        w.flush()?;
        written.push(path);
    }
    let plots = [
        ("servers.svg", servers_plot(c)),
        ("packing.svg", packing_plot(c)),
    ];
    for (name, svg) in &plots {
        std::fs::write(dir.join(name), svg)?;
        written.push(dir.join(name));
    }
    std::fs::write(
        dir.join("report.html"),
        page(c, info, &plots[0].1, &plots[1].1),
    )?;
    written.push(dir.join("report.html"));
    Ok(written)
}

fn duration_of(c: &MultiComparison) -> f64 {
    c.results.first().map_or(1.0, |r| r.all.duration.max(1.0))
}

fn mode_lines<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    c: &MultiComparison,
    unit: f64,
    value: impl Fn(&crate::multi::FleetBucket) -> Option<f64>,
) {
    for (i, r) in c.results.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = r
            .fleet
            .iter()
            .filter_map(|b| value(b).map(|v| (b.t / unit, v)))
            .collect();
        let _ = chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map(|s| {
                s.label(r.mode.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2))
                })
            });
    }
}

fn servers_plot(c: &MultiComparison) -> String {
    let mut svg = String::new();
    (|| {
        let root = SVGBackend::with_string(&mut svg, (1000, 440)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let duration = duration_of(c);
        let (unit, label) = time_axis(duration);
        let ymax = c
            .results
            .iter()
            .flat_map(|r| r.fleet.iter().map(|b| b.servers))
            .fold(1.0, f64::max)
            * 1.1;
        let Some(mut chart) = time_chart(
            &root,
            "Server replicas over time",
            duration / unit,
            0.0..ymax,
            label,
            "servers",
        ) else {
            return;
        };
        if let Some(first) = c.results.first() {
            let lb = first
                .fleet
                .iter()
                .map(|b| (b.t / unit, b.lower_bound))
                .collect();
            reference_area(&mut chart, lb, format!("lower bound ({})", first.mode));
        }
        mode_lines(&mut chart, c, unit, |b| Some(b.servers));
        draw_legend(&mut chart);
        let _ = root.present();
    })();
    svg
}

fn packing_plot(c: &MultiComparison) -> String {
    let mut svg = String::new();
    (|| {
        let root = SVGBackend::with_string(&mut svg, (1000, 440)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let duration = duration_of(c);
        let (unit, label) = time_axis(duration);
        let ratio = |b: &crate::multi::FleetBucket| {
            (b.lower_bound > 0.0).then(|| b.servers / b.lower_bound)
        };
        let ymax = c
            .results
            .iter()
            .flat_map(|r| r.fleet.iter().filter_map(ratio))
            .fold(1.5, f64::max)
            .min(20.0)
            * 1.1;
        let Some(mut chart) = time_chart(
            &root,
            "Packing efficiency: servers over the memory lower bound (1 = perfect)",
            duration / unit,
            0.9..ymax,
            label,
            "servers / lower bound",
        ) else {
            return;
        };
        mode_lines(&mut chart, c, unit, ratio);
        draw_legend(&mut chart);
        let _ = root.present();
    })();
    svg
}

fn page(c: &MultiComparison, info: &RunInfo, servers: &str, packing: &str) -> String {
    let base = c.results.first().map_or(0.0, |r| r.server_seconds);
    let header: String = HEADERS.iter().map(|h| format!("<th>{h}</th>")).collect();
    let rows: String = c
        .results
        .iter()
        .map(|r| {
            let tds: String = cells(r, base)
                .iter()
                .map(|v| format!("<td>{}</td>", escape(v)))
                .collect();
            format!("<tr>{tds}</tr>")
        })
        .collect();
    let notes: String = info
        .notes
        .iter()
        .map(|n| format!("<li>{}</li>", escape(n)))
        .collect();
    let reasons: String = c
        .results
        .first()
        .map(|r| {
            r.plan_reasons
                .iter()
                .take(30)
                .map(|(t, why)| format!("<li>{}: {}</li>", secs(*t), escape(why)))
                .collect()
        })
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Ebb multi-model simulation: {title}</title>
<style>
{PAGE_STYLE}
</style></head><body>
<h1>Ebb multi-model simulation: {title}</h1>
<p>Command: <code>{command}</code></p>
<p>{models} models on servers of {cap} MiB ({headroom:.0}% headroom). Latency SLO {slo}.</p>
<ul>{notes}</ul>
<table><tr>{header}</tr>
{rows}</table>
<figure>{servers}<figcaption>Server replicas of each mode; grey: the lower bound for Ebb's hosted model replicas (memory over usable capacity, rounded up).</figcaption></figure>
<figure>{packing}<figcaption>Servers over the lower bound for what each mode hosts.</figcaption></figure>
<h2>The planner's first reasons (Ebb)</h2>
<ul>{reasons}</ul>
</body></html>
"#,
        title = escape(&info.workload),
        command = escape(&info.command),
        models = c.models,
        cap = c.server.capacity_mib,
        headroom = c.server.headroom * 100.0,
        slo = secs(info.slo),
    )
}
