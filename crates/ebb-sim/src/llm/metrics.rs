//! vLLM's metrics of one simulated engine: the gauges and histograms its `/metrics` page
//! writes, with vLLM's names and bucket bounds (`vllm/v1/metrics/loggers.py`), so that a
//! policy's `engine` block reads a simulated replica exactly as it reads `ebb demo-llm` or a
//! real vLLM server.

use ebb_core::engine::Sample;
use std::collections::BTreeMap;

/// vLLM's time-to-first-token buckets (seconds).
pub const TTFT_BOUNDS: [f64; 22] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];

/// vLLM's inter-token latency buckets (seconds).
pub const ITL_BOUNDS: [f64; 19] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];

/// vLLM's end-to-end request latency buckets (seconds).
pub const E2E_BOUNDS: [f64; 21] = [
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// A Prometheus histogram's state: a count per bucket (not cumulative), the sum and the count.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketCounts {
    bounds: &'static [f64],
    /// One count per bound, then the `+Inf` bucket.
    counts: Vec<u64>,
    sum: f64,
}

impl BucketCounts {
    /// An empty histogram over `bounds` (ascending, finite).
    pub fn new(bounds: &'static [f64]) -> BucketCounts {
        BucketCounts {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    /// Counts one observation (seconds).
    pub fn observe(&mut self, value: f64) {
        let i = self.bounds.partition_point(|b| *b < value);
        self.counts[i] += 1;
        self.sum += value;
    }

    /// The series of histogram `name` as a scrape gives them: `_bucket` per bound (cumulative,
    /// `le` labelled, the last `+Inf`), `_sum` and `_count`.
    pub fn samples(&self, name: &str, labels: &BTreeMap<String, String>, out: &mut Vec<Sample>) {
        let mut cumulative = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c;
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let mut l = labels.clone();
            l.insert("le".into(), le);
            out.push((format!("{name}_bucket"), l, cumulative as f64));
        }
        out.push((format!("{name}_sum"), labels.clone(), self.sum));
        out.push((format!("{name}_count"), labels.clone(), cumulative as f64));
    }
}

/// One engine's gauges read now, and its latency histograms.
#[derive(Debug, Clone)]
pub struct EngineMetrics {
    /// From arrival at the engine to the first token.
    pub ttft: BucketCounts,
    /// Between two tokens of one request.
    pub itl: BucketCounts,
    /// From arrival at the engine to being scheduled (vLLM buckets it as request latencies).
    pub queue: BucketCounts,
    /// Prompt tokens prefilled (`vllm:prompt_tokens_total`).
    pub prompt_tokens: u64,
    /// Tokens generated (`vllm:generation_tokens_total`).
    pub generation_tokens: u64,
}

impl Default for EngineMetrics {
    fn default() -> EngineMetrics {
        EngineMetrics {
            ttft: BucketCounts::new(&TTFT_BOUNDS),
            itl: BucketCounts::new(&ITL_BOUNDS),
            queue: BucketCounts::new(&E2E_BOUNDS),
            prompt_tokens: 0,
            generation_tokens: 0,
        }
    }
}

impl EngineMetrics {
    /// The page's samples, with the scheduler's gauges (`running`, `waiting`, KV use 0-1).
    pub fn samples(&self, running: usize, waiting: usize, kv: f64) -> Vec<Sample> {
        let labels = BTreeMap::from([
            ("engine".to_string(), "0".to_string()),
            ("model_name".to_string(), "simulated".to_string()),
        ]);
        let mut out = vec![
            (
                "vllm:num_requests_running".to_string(),
                labels.clone(),
                running as f64,
            ),
            (
                "vllm:num_requests_waiting".to_string(),
                labels.clone(),
                waiting as f64,
            ),
            ("vllm:kv_cache_usage_perc".to_string(), labels.clone(), kv),
            (
                "vllm:prompt_tokens_total".to_string(),
                labels.clone(),
                self.prompt_tokens as f64,
            ),
            (
                "vllm:generation_tokens_total".to_string(),
                labels.clone(),
                self.generation_tokens as f64,
            ),
        ];
        self.ttft
            .samples("vllm:time_to_first_token_seconds", &labels, &mut out);
        self.itl
            .samples("vllm:inter_token_latency_seconds", &labels, &mut out);
        self.queue
            .samples("vllm:request_queue_time_seconds", &labels, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_core::engine::{quantile, Buckets};

    #[test]
    fn buckets_are_cumulative_and_read_back_as_a_histogram() {
        let mut h = BucketCounts::new(&TTFT_BOUNDS);
        for v in [0.05, 0.07, 0.3, 3.0, 5000.0] {
            h.observe(v);
        }
        let mut out = Vec::new();
        h.samples("ttft", &BTreeMap::new(), &mut out);
        let b = Buckets::from_samples(&out, "ttft", 1.0).expect("buckets");
        assert_eq!(b.count(), 5.0);
        assert_eq!(b.count_at(0.06), Some(1.0));
        assert_eq!(b.count_at(0.08), Some(2.0));
        assert_eq!(b.count_at(2560.0), Some(4.0));
        // The median lies in (0.25, 0.5]: the third of five observations.
        let median = quantile(0.5, &b).expect("median");
        assert!(median > 0.25 && median <= 0.5, "{median}");
    }

    #[test]
    fn a_value_on_a_bound_counts_in_that_bucket() {
        let mut h = BucketCounts::new(&ITL_BOUNDS);
        h.observe(0.1);
        let mut out = Vec::new();
        h.samples("itl", &BTreeMap::new(), &mut out);
        let b = Buckets::from_samples(&out, "itl", 1.0).expect("buckets");
        assert_eq!(b.count_at(0.075), Some(0.0));
        assert_eq!(b.count_at(0.1), Some(1.0));
    }
}
