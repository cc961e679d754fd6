//! Reading real traces into a [`Workload`]. Each format is read with its real columns and
//! time format; a malformed row is an error naming the file, the line and the reason.
//!
//! | format | file | what becomes of it |
//! | --- | --- | --- |
//! | `azure-llm` | `AzureLLMInferenceTrace_*.csv` (`TIMESTAMP,ContextTokens,GeneratedTokens`) | requests; work = generated tokens |
//! | `mooncake` | `*.jsonl` (`timestamp` ms, `input_length`, `output_length`) | requests; work = output tokens |
//! | `alibaba-lora` | `lora_request_trace.csv` (`gmt_create`, ..., `exec_time_seconds`) | requests; work = measured execution seconds |
//! | `alibaba-qps` | `qps.tar.gz` (`timestamp_anon,value,container_ip,request_type`) | rate series: per-container QPS of generative requests, summed per sample time |
//! | `counts-per-second` | `workload.tbz2` / `.txt` (whitespace-separated integers) | rate series, 1 s intervals |
//! | `worldcup` | `invocation_count.csv` (`period,count`, per minute) | rate series, 60 s intervals |
//! | `alibaba-dlrm` | `disaggregated_DLRM_trace.csv` (instances with creation/deletion times) | not requests: the busiest service's replica count per minute, read as a demand proxy (see [`DLRM_UTILIZATION`]) |
//! | `csv` | any CSV with a `timestamp` (or `time`) column, optional `model` and `work` columns | requests |
//! | `rate-csv` | any CSV with `time` and `count` (or `rate`) columns, or `time` and one column of requests per second per series (Grafana's CSV export) | rate series; the series are added up |
//! | `prometheus` | a Prometheus range query's answer (`/api/v1/query_range` as `curl` saves it, `promtool query range -o json`), one or several | rate series; the series are added up (`trace::prometheus`) |
//!
//! A time given as a number is seconds, or milliseconds where it is above 10^11 (seconds that
//! large are 5,000 years away; Grafana and many exporters write Unix milliseconds).

mod prometheus;

use crate::workload::{Request, Workload};
use chrono::NaiveDateTime;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Per-replica utilization assumed of the production autoscaler in the DLRM trace.
pub const DLRM_UTILIZATION: f64 = 0.7;

/// Why a trace could not be read.
#[derive(Debug, Error)]
pub enum TraceError {
    /// The file could not be opened or read.
    #[error("{file}: {error}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error (shown in the message, not chained, so it reads once).
        error: std::io::Error,
    },
    /// A row is malformed.
    #[error("{file}:{line}: {reason}")]
    Row {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The file as a whole does not fit a known format.
    #[error("{file}: {reason}")]
    Format {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A trace format, detected from the file name and header or named by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    /// Azure LLM inference trace 2023.
    AzureLlm,
    /// Mooncake JSON lines.
    Mooncake,
    /// Alibaba GenAI LoRA request log.
    AlibabaLora,
    /// Alibaba GenAI per-container QPS (tar.gz).
    AlibabaQps,
    /// Whitespace-separated per-second counts (NASA workload, tbz2 or plain).
    CountsPerSecond,
    /// World Cup 98 per-minute counts.
    WorldCup,
    /// Alibaba DLRM instance trace (replica counts, not requests).
    AlibabaDlrm,
    /// Generic request CSV.
    Csv,
    /// Generic rate CSV.
    RateCsv,
    /// A Prometheus range query's answer (JSON).
    Prometheus,
}

impl TraceFormat {
    /// The format's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TraceFormat::AzureLlm => "azure-llm",
            TraceFormat::Mooncake => "mooncake",
            TraceFormat::AlibabaLora => "alibaba-lora",
            TraceFormat::AlibabaQps => "alibaba-qps",
            TraceFormat::CountsPerSecond => "counts-per-second",
            TraceFormat::WorldCup => "worldcup",
            TraceFormat::AlibabaDlrm => "alibaba-dlrm",
            TraceFormat::Csv => "csv",
            TraceFormat::RateCsv => "rate-csv",
            TraceFormat::Prometheus => "prometheus",
        }
    }

    /// Parses a format name.
    pub fn from_name(s: &str) -> Option<TraceFormat> {
        [
            TraceFormat::AzureLlm,
            TraceFormat::Mooncake,
            TraceFormat::AlibabaLora,
            TraceFormat::AlibabaQps,
            TraceFormat::CountsPerSecond,
            TraceFormat::WorldCup,
            TraceFormat::AlibabaDlrm,
            TraceFormat::Csv,
            TraceFormat::RateCsv,
            TraceFormat::Prometheus,
        ]
        .into_iter()
        .find(|f| f.name() == s)
    }
}

/// A trace read from disk.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The workload.
    pub workload: Workload,
    /// The format it was read as.
    pub format: TraceFormat,
    /// Notes for the report (what was derived and how).
    pub notes: Vec<String>,
    /// Model names by model id, for traces that name several models (empty otherwise).
    pub model_names: Vec<String>,
    /// Where the workload's time zero lies on the calendar (Unix milliseconds), for a
    /// policy's schedules, where the trace says so without doubt (a Prometheus answer's Unix
    /// times; a date-time without a zone does not).
    pub start_unix_ms: Option<i64>,
}

fn io(file: &Path) -> impl Fn(std::io::Error) -> TraceError + '_ {
    move |error| TraceError::Io {
        file: file.to_path_buf(),
        error,
    }
}

fn row(file: &Path, line: usize, reason: impl Into<String>) -> TraceError {
    TraceError::Row {
        file: file.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

/// Reads a trace, detecting its format unless one is given.
pub fn read_trace(path: &Path, format: Option<TraceFormat>) -> Result<Trace, TraceError> {
    let format = match format {
        Some(f) => f,
        None => detect(path)?,
    };
    let mut notes = Vec::new();
    let mut model_names = Vec::new();
    let mut start_unix_ms = None;
    let workload = match format {
        TraceFormat::AzureLlm => read_azure(path)?,
        TraceFormat::Mooncake => read_mooncake(path)?,
        TraceFormat::AlibabaLora => {
            let (w, names) = read_lora(path)?;
            model_names = names;
            w
        }
        TraceFormat::AlibabaQps => {
            notes.push("rate series: per-container QPS of 'Generative Requests' summed at each sample time (values are scaled in the source)".into());
            read_qps(path)?
        }
        TraceFormat::CountsPerSecond => read_counts(path)?,
        TraceFormat::WorldCup => read_worldcup(path)?,
        TraceFormat::AlibabaDlrm => {
            let (w, note) = read_dlrm(path)?;
            notes.push(note);
            w
        }
        TraceFormat::Csv => {
            let (w, names) = read_request_csv(path)?;
            model_names = names;
            w
        }
        TraceFormat::RateCsv => read_rate_csv(path)?,
        TraceFormat::Prometheus => {
            let (w, start) = prometheus::read(path)?;
            start_unix_ms = Some(start);
            w
        }
    };
    if workload.expected_requests() <= 0.0 {
        return Err(TraceError::Format {
            file: path.to_path_buf(),
            reason: "the trace holds no requests".into(),
        });
    }
    Ok(Trace {
        workload,
        format,
        notes,
        model_names,
        start_unix_ms,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn first_line(path: &Path) -> Result<String, TraceError> {
    let f = std::fs::File::open(path).map_err(io(path))?;
    let mut line = String::new();
    BufReader::new(f).read_line(&mut line).map_err(io(path))?;
    Ok(line.trim().to_string())
}

/// Detects the format from the file name, then the header.
pub fn detect(path: &Path) -> Result<TraceFormat, TraceError> {
    let name = file_name(path);
    if name.ends_with(".tar.gz") && name.starts_with("qps") {
        return Ok(TraceFormat::AlibabaQps);
    }
    if name.ends_with(".tbz2") || name.ends_with(".tar.bz2") || name == "workload.txt" {
        return Ok(TraceFormat::CountsPerSecond);
    }
    if name.ends_with(".jsonl") {
        return Ok(TraceFormat::Mooncake);
    }
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        return Err(TraceError::Format {
            file: path.to_path_buf(),
            reason: "this archive holds no request or rate series Ebb can replay (known archive: qps.tar.gz)".into(),
        });
    }
    let header = first_line(path)?;
    if name.ends_with(".json")
        || header.starts_with("{\"status\"")
        || header.starts_with("[{\"metric\"")
    {
        return Ok(TraceFormat::Prometheus);
    }
    let cols: Vec<String> = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(header.as_bytes())
        .records()
        .next()
        .and_then(Result::ok)
        .map(|r| r.iter().map(|c| c.trim().to_string()).collect())
        .unwrap_or_default();
    let has = |c: &str| cols.iter().any(|x| x.eq_ignore_ascii_case(c));
    // Grafana's CSV export: "Time", then one column per series.
    let grafana = cols.first().is_some_and(|c| c == "Time")
        && cols.len() > 1
        && !has("model")
        && !has("work");
    Ok(
        if header.starts_with("TIMESTAMP,ContextTokens,GeneratedTokens") {
            TraceFormat::AzureLlm
        } else if has("gmt_create") && has("exec_time_seconds") {
            TraceFormat::AlibabaLora
        } else if has("period") && has("count") {
            TraceFormat::WorldCup
        } else if has("instance_sn") && has("creation_time") && has("deletion_time") {
            TraceFormat::AlibabaDlrm
        } else if (has("time") || has("timestamp")) && (has("count") || has("rate")) || grafana {
            TraceFormat::RateCsv
        } else if has("timestamp") || has("time") {
            TraceFormat::Csv
        } else {
            return Err(TraceError::Format {
                file: path.to_path_buf(),
                reason: format!("unknown trace format (header '{header}'); pass --trace-format"),
            });
        },
    )
}

fn csv_reader(path: &Path) -> Result<csv::Reader<std::fs::File>, TraceError> {
    csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| TraceError::Format {
            file: path.to_path_buf(),
            reason: e.to_string(),
        })
}

fn col(headers: &csv::StringRecord, path: &Path, name: &str) -> Result<usize, TraceError> {
    headers
        .iter()
        .position(|h| h.trim().eq_ignore_ascii_case(name))
        .ok_or_else(|| TraceError::Format {
            file: path.to_path_buf(),
            reason: format!("missing column '{name}'"),
        })
}

fn parse_datetime(s: &str) -> Option<f64> {
    let s = s.trim();
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f"))
        .ok()
        .map(|t| t.and_utc().timestamp_micros() as f64 / 1e6)
}

/// Numbers of seconds above this are milliseconds (as seconds they would be 5,000 years on).
const MILLISECONDS_ABOVE: f64 = 1e11;

/// Parses a timestamp: a date-time, or a number of seconds (of milliseconds above
/// [`MILLISECONDS_ABOVE`]).
fn parse_time(s: &str) -> Option<f64> {
    parse_datetime(s).or_else(|| {
        let v = s.trim().parse::<f64>().ok().filter(|v| v.is_finite())?;
        Some(if v.abs() > MILLISECONDS_ABOVE {
            v / 1000.0
        } else {
            v
        })
    })
}

/// A CSV row with its 1-based line number.
type NumberedRecord = (usize, Result<csv::StringRecord, TraceError>);

fn records(
    path: &Path,
) -> Result<(csv::StringRecord, impl Iterator<Item = NumberedRecord> + '_), TraceError> {
    let mut r = csv_reader(path)?;
    let headers = r
        .headers()
        .map_err(|e| row(path, 1, e.to_string()))?
        .clone();
    let iter = r.into_records().enumerate().map(move |(i, rec)| {
        let line = i + 2;
        (line, rec.map_err(|e| row(path, line, e.to_string())))
    });
    Ok((headers, iter))
}

fn field<'r>(
    rec: &'r csv::StringRecord,
    idx: usize,
    path: &Path,
    line: usize,
    name: &str,
) -> Result<&'r str, TraceError> {
    rec.get(idx)
        .ok_or_else(|| row(path, line, format!("missing field '{name}'")))
}

/// A date-time field of a row, or an error naming the line.
fn datetime_field(
    rec: &csv::StringRecord,
    idx: usize,
    path: &Path,
    line: usize,
    name: &str,
) -> Result<f64, TraceError> {
    let t = field(rec, idx, path, line, name)?;
    parse_datetime(t).ok_or_else(|| {
        row(
            path,
            line,
            format!("{name} '{t}' is not a date-time like 2023-11-16 18:17:03.9799600"),
        )
    })
}

fn finish_requests(mut out: Vec<Request>) -> Workload {
    out.sort_by(|a, b| a.at.total_cmp(&b.at));
    let t0 = out.first().map_or(0.0, |q| q.at);
    for q in &mut out {
        q.at -= t0;
    }
    Workload::Requests(out)
}

/// Reads measured latencies (e.g. Alibaba's `basemodel_update_latency_anon.tar.gz`, model-load
/// times in ms) from the `value` column of a CSV, plain or inside a tar.gz, as seconds: an
/// empirical cold-start distribution.
pub fn read_latencies_ms(path: &Path) -> Result<Vec<f64>, TraceError> {
    Ok(read_values(path, "milliseconds")?
        .into_iter()
        .map(|v| v / 1000.0)
        .collect())
}

/// Reads the `value` column of a CSV, plain or inside a tar.gz: finite, non-negative numbers
/// of `unit` (named in errors). Alibaba's GenTD26 archives all have this shape.
pub fn read_values(path: &Path, unit: &str) -> Result<Vec<f64>, TraceError> {
    let name = file_name(path);
    let text = if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        let f = std::fs::File::open(path).map_err(io(path))?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
        let mut text = String::new();
        for entry in archive.entries().map_err(io(path))? {
            let mut entry = entry.map_err(io(path))?;
            let csv = entry
                .path()
                .map_err(io(path))?
                .to_string_lossy()
                .ends_with(".csv");
            if csv {
                entry.read_to_string(&mut text).map_err(io(path))?;
                break;
            }
        }
        text
    } else {
        std::fs::read_to_string(path).map_err(io(path))?
    };
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let h = r
        .headers()
        .map_err(|e| row(path, 1, e.to_string()))?
        .clone();
    let value = col(&h, path, "value")?;
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| row(path, line, e.to_string()))?;
        let v: f64 = field(&rec, value, path, line, "value")?
            .trim()
            .parse()
            .map_err(|_| row(path, line, format!("value is not a number of {unit}")))?;
        if !v.is_finite() || v < 0.0 {
            return Err(row(path, line, format!("{v} is not a number of {unit}")));
        }
        out.push(v);
    }
    if out.is_empty() {
        return Err(TraceError::Format {
            file: path.to_path_buf(),
            reason: format!("no {unit} in the 'value' column"),
        });
    }
    Ok(out)
}

fn read_azure(path: &Path) -> Result<Workload, TraceError> {
    let (h, recs) = records(path)?;
    let (ts, context, gen) = (
        col(&h, path, "TIMESTAMP")?,
        col(&h, path, "ContextTokens")?,
        col(&h, path, "GeneratedTokens")?,
    );
    let tokens = |rec: &csv::StringRecord, i, line, name| -> Result<f32, TraceError> {
        let v = field(rec, i, path, line, name)?;
        v.trim()
            .parse::<f32>()
            .ok()
            .filter(|t| t.is_finite() && *t >= 0.0)
            .ok_or_else(|| {
                row(
                    path,
                    line,
                    format!("{name} '{v}' is not a number of tokens"),
                )
            })
    };
    let mut out = Vec::new();
    for (line, rec) in recs {
        let rec = rec?;
        let at = datetime_field(&rec, ts, path, line, "TIMESTAMP")?;
        out.push(Request {
            at,
            work: tokens(&rec, gen, line, "GeneratedTokens")?,
            prompt: tokens(&rec, context, line, "ContextTokens")?,
            model: 0,
        });
    }
    Ok(finish_requests(out))
}

fn read_mooncake(path: &Path) -> Result<Workload, TraceError> {
    #[derive(serde::Deserialize)]
    struct Line {
        timestamp: f64,
        #[serde(default)]
        output_length: Option<f64>,
        #[serde(default)]
        input_length: Option<f64>,
    }
    let f = std::fs::File::open(path).map_err(io(path))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line_no = i + 1;
        let text = line.map_err(io(path))?;
        if text.trim().is_empty() {
            continue;
        }
        let l: Line = serde_json::from_str(&text).map_err(|e| row(path, line_no, e.to_string()))?;
        if !l.timestamp.is_finite() || l.timestamp < 0.0 {
            return Err(row(
                path,
                line_no,
                format!("timestamp {} is not a time in ms", l.timestamp),
            ));
        }
        out.push(Request {
            at: l.timestamp / 1000.0,
            work: l.output_length.map_or(f32::NAN, |v| v as f32),
            prompt: l.input_length.map_or(f32::NAN, |v| v as f32),
            model: 0,
        });
    }
    Ok(finish_requests(out))
}

/// The LoRA log's requests; each request's model is its base checkpoint
/// (`checkpoint_model_version_id`), so the trace also serves as a multi-model workload.
fn read_lora(path: &Path) -> Result<(Workload, Vec<String>), TraceError> {
    let (h, recs) = records(path)?;
    let (ts, exec) = (
        col(&h, path, "gmt_create")?,
        col(&h, path, "exec_time_seconds")?,
    );
    let checkpoint = col(&h, path, "checkpoint_model_version_id").ok();
    let mut models = ModelIds::default();
    let mut out = Vec::new();
    for (line, rec) in recs {
        let rec = rec?;
        let at = datetime_field(&rec, ts, path, line, "gmt_create")?;
        let e = rec.get(exec).unwrap_or("").trim();
        let work = if e.is_empty() {
            f32::NAN
        } else {
            e.parse().map_err(|_| {
                row(
                    path,
                    line,
                    format!("exec_time_seconds '{e}' is not a number"),
                )
            })?
        };
        let model = models.id(checkpoint.and_then(|i| rec.get(i)).unwrap_or(""));
        out.push(Request {
            at,
            work,
            prompt: f32::NAN,
            model,
        });
    }
    Ok((finish_requests(out), models.names))
}

/// Model names in order of first appearance, each with its id.
#[derive(Default)]
struct ModelIds {
    ids: BTreeMap<String, u32>,
    names: Vec<String>,
}

impl ModelIds {
    fn id(&mut self, name: &str) -> u32 {
        let name = name.trim();
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(name.to_string(), id);
        self.names.push(name.to_string());
        id
    }
}

/// The sampling interval of a rate series: the shortest positive gap between its sorted
/// sample `times` (seconds), 1 s for a single sample.
fn shortest_gap(times: &[f64]) -> f64 {
    let gap = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|g| *g > 0.0)
        .fold(f64::INFINITY, f64::min);
    if gap.is_finite() {
        gap
    } else {
        1.0
    }
}

/// Turns (time, requests per second) samples into a rate series on a regular grid.
fn to_rate_series(mut samples: Vec<(f64, f64)>, interval: f64) -> Workload {
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let t0 = samples.first().map_or(0.0, |s| s.0);
    let mut rates: Vec<f64> = Vec::new();
    let mut counts: Vec<u32> = Vec::new();
    for (t, r) in samples {
        let i = ((t - t0) / interval).round() as usize;
        if rates.len() <= i {
            rates.resize(i + 1, 0.0);
            counts.resize(i + 1, 0);
        }
        rates[i] += r;
        counts[i] += 1;
    }
    Workload::Rate { interval, rates }
}

fn read_qps(path: &Path) -> Result<Workload, TraceError> {
    let f = std::fs::File::open(path).map_err(io(path))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut text = String::new();
    for entry in archive.entries().map_err(io(path))? {
        let mut entry = entry.map_err(io(path))?;
        let name = entry
            .path()
            .map_err(io(path))?
            .to_string_lossy()
            .into_owned();
        if name.ends_with("qps.csv") {
            entry.read_to_string(&mut text).map_err(io(path))?;
            break;
        }
    }
    if text.is_empty() {
        return Err(TraceError::Format {
            file: path.to_path_buf(),
            reason: "no qps.csv inside the archive".into(),
        });
    }
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let h = r
        .headers()
        .map_err(|e| row(path, 1, e.to_string()))?
        .clone();
    let (ts, val, kind) = (
        col(&h, path, "timestamp_anon")?,
        col(&h, path, "value")?,
        col(&h, path, "request_type")?,
    );
    let mut by_time: BTreeMap<i64, f64> = BTreeMap::new();
    for (i, rec) in r.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| row(path, line, e.to_string()))?;
        if rec.get(kind).map(str::trim) != Some("Generative Requests") {
            continue;
        }
        let t: f64 = field(&rec, ts, path, line, "timestamp_anon")?
            .trim()
            .parse()
            .map_err(|_| row(path, line, "timestamp_anon is not a number"))?;
        let v: f64 = field(&rec, val, path, line, "value")?
            .trim()
            .parse()
            .map_err(|_| row(path, line, "value is not a number"))?;
        if !v.is_finite() || v < 0.0 {
            return Err(row(path, line, format!("value {v} is not a request rate")));
        }
        *by_time.entry(t.round() as i64).or_default() += v;
    }
    let times: Vec<i64> = by_time.keys().copied().collect();
    let mut gaps: Vec<i64> = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|g| *g > 0)
        .collect();
    gaps.sort_unstable();
    let interval = gaps.get(gaps.len() / 2).copied().unwrap_or(60) as f64;
    Ok(to_rate_series(
        by_time.into_iter().map(|(t, v)| (t as f64, v)).collect(),
        interval,
    ))
}

fn read_counts(path: &Path) -> Result<Workload, TraceError> {
    let name = file_name(path);
    let mut text = String::new();
    let f = std::fs::File::open(path).map_err(io(path))?;
    if name.ends_with(".tbz2") || name.ends_with(".tar.bz2") {
        let mut archive = tar::Archive::new(bzip2::read::BzDecoder::new(f));
        for entry in archive.entries().map_err(io(path))? {
            let mut entry = entry.map_err(io(path))?;
            if entry.header().entry_type().is_file() {
                entry.read_to_string(&mut text).map_err(io(path))?;
                break;
            }
        }
    } else {
        BufReader::new(f)
            .read_to_string(&mut text)
            .map_err(io(path))?;
    }
    let mut rates = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for tok in line.split_whitespace() {
            let v: f64 = tok
                .parse()
                .map_err(|_| row(path, i + 1, format!("'{tok}' is not a request count")))?;
            if !v.is_finite() || v < 0.0 {
                return Err(row(path, i + 1, format!("{v} is not a request count")));
            }
            rates.push(v);
        }
    }
    Ok(Workload::Rate {
        interval: 1.0,
        rates,
    })
}

fn read_worldcup(path: &Path) -> Result<Workload, TraceError> {
    let (h, recs) = records(path)?;
    let (p, c) = (col(&h, path, "period")?, col(&h, path, "count")?);
    let mut samples = Vec::new();
    for (line, rec) in recs {
        let rec = rec?;
        let at = datetime_field(&rec, p, path, line, "period")?;
        let n: f64 = field(&rec, c, path, line, "count")?
            .trim()
            .parse()
            .map_err(|_| row(path, line, "count is not a number"))?;
        if !n.is_finite() || n < 0.0 {
            return Err(row(path, line, format!("count {n} is not a request count")));
        }
        samples.push((at, n / 60.0));
    }
    Ok(to_rate_series(samples, 60.0))
}

fn read_dlrm(path: &Path) -> Result<(Workload, String), TraceError> {
    let (h, recs) = records(path)?;
    let (app, created, deleted) = (
        col(&h, path, "app_name")?,
        col(&h, path, "creation_time")?,
        col(&h, path, "deletion_time")?,
    );
    // Instances per app: (created, deleted); empty times lie outside the trace.
    let mut lives: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut end = 0.0f64;
    for (line, rec) in recs {
        let rec = rec?;
        let num = |idx: usize, name: &str| -> Result<Option<f64>, TraceError> {
            let s = rec.get(idx).unwrap_or("").trim();
            if s.is_empty() {
                return Ok(None);
            }
            s.parse::<f64>().map(Some).map_err(|_| {
                row(
                    path,
                    line,
                    format!("{name} '{s}' is not a number of seconds"),
                )
            })
        };
        let c = num(created, "creation_time")?;
        let d = num(deleted, "deletion_time")?;
        end = end.max(c.unwrap_or(0.0)).max(d.unwrap_or(0.0));
        lives
            .entry(field(&rec, app, path, line, "app_name")?.to_string())
            .or_default()
            .push((c.unwrap_or(f64::NEG_INFINITY), d.unwrap_or(f64::INFINITY)));
    }
    let (name, instances) = lives
        .into_iter()
        .max_by_key(|(_, v)| v.len())
        .ok_or_else(|| TraceError::Format {
            file: path.to_path_buf(),
            reason: "no instances".into(),
        })?;
    let minutes = (end / 60.0).ceil().max(1.0) as usize;
    let mut replicas = vec![0.0f64; minutes];
    for (c, d) in &instances {
        for (m, r) in replicas.iter_mut().enumerate() {
            let t = m as f64 * 60.0 + 30.0;
            if *c <= t && t < *d {
                *r += 1.0;
            }
        }
    }
    let note = format!(
        "not a request trace: replica count per minute of {name} ({} instances), the busiest service, read as demand = replicas x per-replica capacity x {DLRM_UTILIZATION} (the production autoscaler's output as a load proxy; the rate column is in replicas until scaled by --dlrm-capacity)",
        instances.len()
    );
    Ok((
        Workload::Rate {
            interval: 60.0,
            rates: replicas,
        },
        note,
    ))
}

fn read_request_csv(path: &Path) -> Result<(Workload, Vec<String>), TraceError> {
    let (h, recs) = records(path)?;
    let ts = col(&h, path, "timestamp").or_else(|_| col(&h, path, "time"))?;
    let work = col(&h, path, "work").ok();
    let model = col(&h, path, "model").ok();
    let mut models = ModelIds::default();
    let mut out = Vec::new();
    for (line, rec) in recs {
        let rec = rec?;
        let t = field(&rec, ts, path, line, "timestamp")?;
        let at = parse_time(t).ok_or_else(|| {
            row(
                path,
                line,
                format!("timestamp '{t}' is neither seconds nor a date-time"),
            )
        })?;
        let w = match work.and_then(|i| rec.get(i)).map(str::trim) {
            None | Some("") => f32::NAN,
            Some(s) => s
                .parse()
                .map_err(|_| row(path, line, format!("work '{s}' is not a number")))?,
        };
        let m = match model.and_then(|i| rec.get(i)) {
            None => 0,
            Some(s) => models.id(s),
        };
        out.push(Request {
            at,
            work: w,
            prompt: f32::NAN,
            model: m,
        });
    }
    Ok((finish_requests(out), models.names))
}

/// The columns a rate CSV's rates come from: `count` (requests per sample interval) or
/// `rate` (per second), else every column but the time's, each a series in requests per
/// second (Grafana's export: one column per series), added up.
enum RateColumns {
    Count(usize),
    Rates(Vec<usize>),
}

fn rate_columns(
    h: &csv::StringRecord,
    path: &Path,
    time: usize,
) -> Result<RateColumns, TraceError> {
    if let Ok(c) = col(h, path, "count") {
        return Ok(RateColumns::Count(c));
    }
    if let Ok(c) = col(h, path, "rate") {
        return Ok(RateColumns::Rates(vec![c]));
    }
    let series: Vec<usize> = (0..h.len()).filter(|&i| i != time).collect();
    if series.is_empty() {
        return Err(TraceError::Format {
            file: path.to_path_buf(),
            reason:
                "missing column 'count' or 'rate' (or a column of requests per second per series)"
                    .into(),
        });
    }
    Ok(RateColumns::Rates(series))
}

/// A cell of a rate CSV: a finite, non-negative number, or nothing (a series without a
/// sample at that time, in a joined export).
fn rate_cell(
    rec: &csv::StringRecord,
    i: usize,
    path: &Path,
    line: usize,
    name: &str,
) -> Result<Option<f64>, TraceError> {
    let text = rec.get(i).unwrap_or("").trim();
    if text.is_empty() {
        return Ok(None);
    }
    let v: f64 = text
        .parse()
        .map_err(|_| row(path, line, format!("{name} '{text}' is not a number")))?;
    if !v.is_finite() || v < 0.0 {
        return Err(row(
            path,
            line,
            format!("{v} is not a request count or rate"),
        ));
    }
    Ok(Some(v))
}

fn read_rate_csv(path: &Path) -> Result<Workload, TraceError> {
    let (h, recs) = records(path)?;
    let ts = col(&h, path, "time").or_else(|_| col(&h, path, "timestamp"))?;
    let columns = rate_columns(&h, path, ts)?;
    let mut samples = Vec::new();
    for (line, rec) in recs {
        let rec = rec?;
        let t = field(&rec, ts, path, line, "time")?;
        let at = parse_time(t).ok_or_else(|| {
            row(
                path,
                line,
                format!("time '{t}' is neither seconds nor a date-time"),
            )
        })?;
        let value = match &columns {
            RateColumns::Count(c) => Some(
                rate_cell(&rec, *c, path, line, "count")?
                    .ok_or_else(|| row(path, line, "count is empty"))?,
            ),
            RateColumns::Rates(cs) => {
                let mut sum = None;
                for &c in cs {
                    let name = h.get(c).unwrap_or("rate");
                    if let Some(v) = rate_cell(&rec, c, path, line, name)? {
                        sum = Some(sum.unwrap_or(0.0) + v);
                    }
                }
                sum
            }
        };
        if let Some(v) = value {
            samples.push((at, v));
        }
    }
    let mut times: Vec<f64> = samples.iter().map(|s| s.0).collect();
    times.sort_by(f64::total_cmp);
    let interval = shortest_gap(&times);
    let per_interval = matches!(columns, RateColumns::Count(_));
    let samples = samples
        .into_iter()
        .map(|(t, v)| (t, if per_interval { v / interval } else { v }))
        .collect();
    Ok(to_rate_series(samples, interval))
}
