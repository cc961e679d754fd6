//! LLM engine presets: which of an engine's own metrics say how loaded a replica is, so that a
//! policy names a target (`kvCacheUtilization: 0.8`, `waitingPerReplica: 2`, a TTFT
//! percentile) rather than a query. The drivers scrape each replica's `/metrics`, and
//! [`EngineReader`] turns the samples into the observations the policy's engine metrics read:
//! gauges per pod, and latency percentiles from histogram buckets over a window (as
//! Prometheus' `histogram_quantile` over `rate()` does), never from an average.

mod histogram;
mod preset;
mod reader;

pub use histogram::{quantile, Buckets};
pub use preset::{EngineKind, Reading, Signal};
pub use reader::{EngineReader, EngineReading, MIN_PERCENTILE_COUNT};

use std::collections::BTreeMap;

/// A validated `engine` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Engine {
    /// Which engine, and so which metric names.
    pub kind: EngineKind,
    /// Port of the replicas' metrics (the controller scrapes pods there; `ebb up` scrapes its
    /// replicas on their own port).
    pub port: u16,
    /// Path of the metrics (default `/metrics`).
    pub path: String,
    /// The targets, each also a metric of the policy.
    pub targets: Vec<EngineTarget>,
    /// Window of the latency percentiles, milliseconds.
    pub window_ms: i64,
    /// The quantiles the `slo` block's TTFT and ITL goals read: when set, the reader also
    /// gives the token model its [`EngineSample`](crate::observation::EngineSample).
    pub token_quantiles: Option<TokenQuantiles>,
}

/// The TTFT and ITL quantiles an LLM SLO needs (0.99 for p99).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenQuantiles {
    /// Of time to first token.
    pub ttft: Option<f64>,
    /// Of the time between tokens.
    pub itl: Option<f64>,
}

/// One target on an engine signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineTarget {
    /// The signal.
    pub signal: Signal,
    /// For a latency: the quantile (0.95 for p95) that must stay below `value` seconds.
    pub quantile: Option<f64>,
    /// The target: per replica for a gauge, seconds for a latency.
    pub value: f64,
}

/// One sample of a scrape: metric name, labels, value (the exposition format's line).
pub type Sample = (String, BTreeMap<String, String>, f64);
