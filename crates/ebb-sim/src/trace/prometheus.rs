//! A Prometheus range query's answer as a rate series, so that `ebb tune` and `ebb simulate`
//! take the traffic a user already records: what `curl .../api/v1/query_range` saves (the
//! HTTP API's envelope), what `promtool query range -o json` prints (the bare matrix), or
//! several of either one after another (a loop of day-long queries appended to one file, as
//! Prometheus answers at most 11,000 points a series).
//!
//! The query should give requests per second (`sum(rate(http_requests_total[1m]))`). Every
//! series is added up at each sample time (per-pod series make the service's rate); a series
//! answered twice at one time (the shared end of two appended queries) counts once. A `NaN`
//! sample (a rate over a gap in scraping) is left out.

use super::TraceError;
use crate::workload::Workload;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::Path;

/// One answer: the API's envelope, or `promtool`'s bare matrix.
#[derive(Deserialize)]
#[serde(untagged)]
enum Answer {
    Envelope(Envelope),
    Matrix(Vec<Series>),
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// `[unix seconds, "value"]` pairs, as Prometheus writes them.
    values: Vec<(f64, String)>,
}

fn format_error(path: &Path, reason: impl Into<String>) -> TraceError {
    TraceError::Format {
        file: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The series of one answer, or why it holds none a replay can use.
fn series_of(path: &Path, answer: Answer) -> Result<Vec<Series>, TraceError> {
    let envelope = match answer {
        Answer::Matrix(series) => return Ok(series),
        Answer::Envelope(e) => e,
    };
    if envelope.status != "success" {
        return Err(format_error(
            path,
            format!(
                "Prometheus answered {} ({}): {}",
                envelope.status,
                envelope.error_type.as_deref().unwrap_or("no error type"),
                envelope.error.as_deref().unwrap_or("no message")
            ),
        ));
    }
    let data = envelope
        .data
        .ok_or_else(|| format_error(path, "the answer has no 'data'"))?;
    if data.result_type != "matrix" {
        return Err(format_error(
            path,
            format!(
                "the answer is a {}, not a range query's matrix: save /api/v1/query_range, not /api/v1/query",
                data.result_type
            ),
        ));
    }
    serde_json::from_value(data.result)
        .map_err(|e| format_error(path, format!("the matrix does not read: {e}")))
}

/// The sample's rate, where it has one: `NaN` is a gap; anything else that is not a finite,
/// non-negative number is not a request rate.
fn rate_of(path: &Path, at: f64, value: &str) -> Result<Option<f64>, TraceError> {
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| format_error(path, format!("the value '{value}' at {at} is not a number")))?;
    if v.is_nan() {
        return Ok(None);
    }
    if !v.is_finite() || v < 0.0 {
        return Err(format_error(
            path,
            format!("the value {v} at {at} is not a request rate (requests per second)"),
        ));
    }
    Ok(Some(v))
}

/// Reads every answer in the file into one rate series, with its first sample's Unix time in
/// milliseconds.
pub(super) fn read(path: &Path) -> Result<(Workload, i64), TraceError> {
    let f = std::fs::File::open(path).map_err(super::io(path))?;
    let answers = serde_json::Deserializer::from_reader(BufReader::new(f)).into_iter::<Answer>();
    // Rates by (series, millisecond): an answer appended after another that ends where it
    // begins repeats that sample. A series is numbered by its labels as first seen.
    let mut series_ids: BTreeMap<BTreeMap<String, String>, usize> = BTreeMap::new();
    let mut by_series: BTreeMap<(usize, i64), f64> = BTreeMap::new();
    let mut answered = 0usize;
    for answer in answers {
        let answer = answer.map_err(|e| {
            let reason = format!("not a Prometheus range query's answer: {e}");
            super::row(path, e.line().max(1), reason)
        })?;
        answered += 1;
        for series in series_of(path, answer)? {
            let next = series_ids.len();
            let id = *series_ids.entry(series.metric).or_insert(next);
            for (at, value) in &series.values {
                if let Some(rate) = rate_of(path, *at, value)? {
                    by_series.insert((id, (at * 1000.0).round() as i64), rate);
                }
            }
        }
    }
    if answered == 0 {
        return Err(format_error(path, "the file holds no answer"));
    }
    let mut by_time: BTreeMap<i64, f64> = BTreeMap::new();
    for ((_, ms), rate) in by_series {
        *by_time.entry(ms).or_default() += rate;
    }
    if by_time.is_empty() {
        return Err(format_error(
            path,
            "the answer holds no samples (the query matched no series over that range)",
        ));
    }
    let first = by_time.keys().next().copied().unwrap_or(0);
    let samples: Vec<(f64, f64)> = by_time
        .into_iter()
        .map(|(ms, rate)| (ms as f64 / 1000.0, rate))
        .collect();
    let times: Vec<f64> = samples.iter().map(|s| s.0).collect();
    let step = super::shortest_gap(&times);
    Ok((super::to_rate_series(samples, step), first))
}
