//! The engine's metrics under vLLM's names, labels and histogram buckets (vLLM's
//! `vllm/v1/metrics/loggers.py`), so that what scales on a vLLM server scales on this one.

use ebb_proxy::histogram::Histogram;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// vLLM's time-to-first-token buckets (seconds).
const TTFT_BOUNDS: [f64; 22] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];

/// vLLM's inter-token latency buckets (seconds).
const ITL_BOUNDS: [f64; 19] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];

/// vLLM's end-to-end request latency buckets (seconds).
const E2E_BOUNDS: [f64; 21] = [
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// What the engine counted and timed.
#[derive(Debug)]
pub struct Metrics {
    /// Prompt tokens prefilled.
    pub prompt_tokens: AtomicU64,
    /// Output tokens generated.
    pub generation_tokens: AtomicU64,
    /// Requests that got every token.
    pub successes: AtomicU64,
    /// Sequences preempted for KV blocks.
    pub preemptions: AtomicU64,
    /// From arrival to the first token.
    pub time_to_first_token: Histogram,
    /// Between two tokens of one request.
    pub inter_token: Histogram,
    /// The same observations under the name vLLM used before 0.11.
    pub time_per_output_token: Histogram,
    /// From arrival to the last token.
    pub e2e_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            prompt_tokens: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            successes: AtomicU64::new(0),
            preemptions: AtomicU64::new(0),
            time_to_first_token: Histogram::with_bounds(&TTFT_BOUNDS),
            inter_token: Histogram::with_bounds(&ITL_BOUNDS),
            time_per_output_token: Histogram::with_bounds(&ITL_BOUNDS),
            e2e_latency: Histogram::with_bounds(&E2E_BOUNDS),
        }
    }
}

impl Metrics {
    /// The Prometheus text page, with the scheduler's gauges read now.
    pub fn exposition(&self, model: &str, running: usize, waiting: usize, kv: f64) -> String {
        let labels = format!("model_name=\"{model}\",engine=\"0\"");
        let mut out = String::new();
        let mut one = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{{labels}}} {value}"
            );
        };
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
        one(
            "vllm:num_requests_running",
            "gauge",
            "Number of requests in model execution batches.",
            running.to_string(),
        );
        one(
            "vllm:num_requests_waiting",
            "gauge",
            "Number of requests waiting to be processed.",
            waiting.to_string(),
        );
        one(
            "vllm:kv_cache_usage_perc",
            "gauge",
            "KV-cache usage. 1 means 100 percent usage.",
            kv.to_string(),
        );
        one(
            "vllm:gpu_cache_usage_perc",
            "gauge",
            "GPU KV-cache usage. 1 means 100 percent usage (the name before vLLM 0.10).",
            kv.to_string(),
        );
        one(
            "vllm:num_preemptions_total",
            "counter",
            "Cumulative number of preemption from the engine.",
            n(&self.preemptions),
        );
        one(
            "vllm:prompt_tokens_total",
            "counter",
            "Number of prefill tokens processed.",
            n(&self.prompt_tokens),
        );
        one(
            "vllm:generation_tokens_total",
            "counter",
            "Number of generation tokens processed.",
            n(&self.generation_tokens),
        );
        let _ = writeln!(
            out,
            "# HELP vllm:request_success_total Count of successfully processed requests.\n# TYPE vllm:request_success_total counter\nvllm:request_success_total{{{labels},finished_reason=\"length\"}} {}",
            n(&self.successes)
        );
        let histograms = [
            (
                "vllm:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.",
                &self.time_to_first_token,
            ),
            (
                "vllm:inter_token_latency_seconds",
                "Histogram of inter-token latency in seconds.",
                &self.inter_token,
            ),
            (
                "vllm:time_per_output_token_seconds",
                "Histogram of time per output token in seconds (the name before vLLM 0.11).",
                &self.time_per_output_token,
            ),
            (
                "vllm:e2e_request_latency_seconds",
                "Histogram of e2e request latency in seconds.",
                &self.e2e_latency,
            ),
        ];
        for (name, help, h) in histograms {
            out.push_str(&h.exposition(name, help, &labels, true));
        }
        out
    }
}
