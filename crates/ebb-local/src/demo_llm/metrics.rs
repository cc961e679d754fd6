//! The engine's metrics under vLLM's names, labels and histogram buckets (vLLM's
//! `vllm/v1/metrics/loggers.py`, kept with the simulator's engines in `ebb_sim::llm::metrics`),
//! so that what scales on a vLLM server scales on this one.

use ebb_proxy::histogram::Histogram;
use ebb_sim::llm::metrics::{E2E_BOUNDS, ITL_BOUNDS, TTFT_BOUNDS};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// From arrival to being scheduled.
    pub queue_time: Histogram,
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
            queue_time: Histogram::with_bounds(&E2E_BOUNDS),
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
            (
                "vllm:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.",
                &self.queue_time,
            ),
        ];
        for (name, help, h) in histograms {
            out.push_str(&h.exposition(name, help, &labels, true));
        }
        out
    }
}
