//! The token-level comparison's report: a Markdown table for the terminal and docs, the
//! results as JSON and CSV, and the replicas over time as an SVG plot.

use super::run::LlmResult;
use crate::report::{secs, time_axis, time_chart, COLORS};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The results as a Markdown table: attainment of each SLO, latency percentiles, GPU-hours.
pub fn table(results: &[LlmResult], ttft_slo: f64, tpot_slo: f64) -> String {
    let mut out = format!(
        "| policy | TTFT <= {} | TPOT <= {} | both | TTFT p50 / p95 / p99 | TPOT p50 / p95 | token gap p99 | GPU-hours | peak replicas | failed |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        secs(ttft_slo),
        secs(tpot_slo)
    );
    let pct = |v: f64| format!("{:.2}%", v * 100.0);
    for r in results {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} / {} / {} | {} / {} | {} | {:.2} | {} | {} |",
            r.policy,
            pct(r.ttft_attainment),
            pct(r.tpot_attainment),
            pct(r.both_attainment),
            secs(r.ttft[0]),
            secs(r.ttft[1]),
            secs(r.ttft[2]),
            secs(r.tpot[0]),
            secs(r.tpot[1]),
            secs(r.itl[2]),
            r.gpu_hours,
            r.peak_replicas,
            r.failed
        );
    }
    out
}

/// Writes `results.json`, `summary.csv` and `replicas.svg` under `dir`.
pub fn write(
    dir: &Path,
    results: &[LlmResult],
    sizing: &impl serde::Serialize,
    title: &str,
) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::json!({ "sizing": sizing, "results": results });
    let path = dir.join("results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    let mut written = vec![path];
    let path = dir.join("summary.csv");
    let mut w = csv::Writer::from_path(&path).map_err(std::io::Error::other)?;
    w.write_record([
        "policy",
        "requests",
        "failed",
        "ttft_attainment",
        "tpot_attainment",
        "both_attainment",
        "ttft_p50",
        "ttft_p95",
        "ttft_p99",
        "tpot_p50",
        "tpot_p95",
        "tpot_p99",
        "gpu_hours",
        "peak_replicas",
        "scale_events",
    ])?;
    for r in results {
        let mut row = vec![
            r.policy.clone(),
            r.requests.to_string(),
            r.failed.to_string(),
        ];
        row.extend(
            [r.ttft_attainment, r.tpot_attainment, r.both_attainment]
                .into_iter()
                .chain(r.ttft)
                .chain(r.tpot)
                .chain([r.gpu_hours])
                .map(|v| v.to_string()),
        );
        row.extend([r.peak_replicas.to_string(), r.scale_events.to_string()]);
        w.write_record(&row)?;
    }
    w.flush()?;
    written.push(path);
    let path = dir.join("replicas.svg");
    std::fs::write(&path, replicas_svg(results, title))?;
    written.push(path);
    Ok(written)
}

/// Each policy's replicas over time, one line each.
pub fn replicas_svg(results: &[LlmResult], title: &str) -> String {
    let mut svg = String::new();
    (|| {
        let root = SVGBackend::with_string(&mut svg, (1000, 420)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let duration = results
            .iter()
            .map(|r| r.replicas_series.len() as f64 * r.bucket)
            .fold(1.0, f64::max);
        let (unit, label) = time_axis(duration);
        let ymax = results
            .iter()
            .flat_map(|r| r.replicas_series.iter().copied())
            .fold(1.0, f64::max)
            * 1.1;
        let Some(mut chart) =
            time_chart(&root, title, duration / unit, 0.0..ymax, label, "replicas")
        else {
            return;
        };
        for (i, r) in results.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts = r
                .replicas_series
                .iter()
                .enumerate()
                .map(|(k, v)| ((k as f64 + 0.5) * r.bucket / unit, *v));
            let _ = chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map(|s| {
                    s.label(r.policy.clone()).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 15, y)], color.stroke_width(2))
                    })
                });
        }
        let _ = chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw();
        let _ = root.present();
    })();
    svg
}
