//! Each engine's metric names for the signals a policy can target. Names were checked against
//! each engine's documentation: vLLM's `loggers.py` (V1 names, with the pre-0.10 KV-cache
//! gauge and TPOT histogram as fallbacks; `vllm:request_queue_time_seconds`), SGLang's
//! production-metrics page (`sglang:queue_time_seconds`), TGI's metrics reference
//! (`tgi_request_queue_duration`), and Triton's TensorRT-LLM backend (`nv_trt_llm_*`) with Triton's own
//! first-response histogram.

use super::Sample;
use serde::Serialize;
use std::fmt;

/// An inference engine whose metrics Ebb knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// vLLM (`vllm serve`).
    Vllm,
    /// SGLang (`--enable-metrics`).
    Sglang,
    /// Hugging Face Text Generation Inference.
    Tgi,
    /// Triton Inference Server with the TensorRT-LLM backend.
    Triton,
}

/// What a policy can target on an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Signal {
    /// Share of the KV cache in use, 0 to 1, per replica.
    KvCacheUtilization,
    /// Requests waiting for the engine (not yet scheduled), per replica.
    Waiting,
    /// Requests being generated, per replica.
    Running,
    /// Time to first token, seconds (a histogram).
    Ttft,
    /// Time between output tokens, seconds (a histogram).
    Itl,
    /// Time a request waited for the engine before it was scheduled, seconds (a histogram).
    QueueTime,
    /// Prompt and generated tokens processed, a counter (its rate is the engine's work).
    Tokens,
}

/// How a signal is read from one replica's scrape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reading {
    /// The first of these gauges the replica exports (newer names first), summed over its
    /// series.
    Gauge(&'static [&'static str]),
    /// A gauge's series whose label has a value.
    LabeledGauge {
        /// Metric name.
        name: &'static str,
        /// Label name.
        label: &'static str,
        /// Label value.
        value: &'static str,
    },
    /// One labeled series over another of the same metric (used over max blocks).
    LabeledRatio {
        /// Metric name.
        name: &'static str,
        /// Label name.
        label: &'static str,
        /// Label value of the numerator.
        numerator: &'static str,
        /// Label value of the denominator.
        denominator: &'static str,
    },
    /// The sum of these counters (those the replica exports; at least one).
    Counters(&'static [&'static str]),
    /// The first of these histograms the replica exports, its bounds in seconds times `scale`.
    Histogram {
        /// Histogram names without `_bucket`, newer first.
        names: &'static [&'static str],
        /// Multiplier from the histogram's unit to seconds.
        scale: f64,
    },
}

impl Signal {
    /// Every signal.
    pub const ALL: [Signal; 7] = [
        Signal::KvCacheUtilization,
        Signal::Waiting,
        Signal::Running,
        Signal::Ttft,
        Signal::Itl,
        Signal::QueueTime,
        Signal::Tokens,
    ];
}

impl Reading {
    /// The sample names this reading looks up: a histogram's `_bucket`, `_count` and `_sum`
    /// series, every name where several are tried in turn.
    pub fn sample_names(&self) -> Vec<String> {
        let owned = |names: &[&str]| names.iter().map(|n| (*n).to_string()).collect();
        match self {
            Reading::Gauge(names) | Reading::Counters(names) => owned(names),
            Reading::LabeledGauge { name, .. } | Reading::LabeledRatio { name, .. } => {
                vec![(*name).to_string()]
            }
            Reading::Histogram { names, .. } => names
                .iter()
                .flat_map(|n| ["_bucket", "_count", "_sum"].map(|suffix| format!("{n}{suffix}")))
                .collect(),
        }
    }
}

impl EngineKind {
    /// Every sample name any signal of this engine reads: all that a scrape of its replicas
    /// needs to keep (a vLLM page holds a hundred other series, most of them histogram
    /// buckets).
    pub fn sample_names(self) -> std::collections::BTreeSet<String> {
        Signal::ALL
            .into_iter()
            .filter_map(|signal| self.reading(signal))
            .flat_map(|reading| reading.sample_names())
            .collect()
    }

    /// Every engine, for messages.
    pub const ALL: [EngineKind; 4] = [
        EngineKind::Vllm,
        EngineKind::Sglang,
        EngineKind::Tgi,
        EngineKind::Triton,
    ];

    /// The engine spelled as in a policy.
    pub fn parse(name: &str) -> Option<EngineKind> {
        EngineKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The name a policy spells.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Vllm => "vllm",
            EngineKind::Sglang => "sglang",
            EngineKind::Tgi => "tgi",
            EngineKind::Triton => "triton",
        }
    }

    /// The port its metrics are served on by default (vLLM's and SGLang's API port, TGI's
    /// container port, Triton's metrics port).
    pub fn default_port(self) -> u16 {
        match self {
            EngineKind::Vllm => 8000,
            EngineKind::Sglang => 30000,
            EngineKind::Tgi => 80,
            EngineKind::Triton => 8002,
        }
    }

    /// How `signal` is read from this engine, `None` where it exports nothing for it.
    pub fn reading(self, signal: Signal) -> Option<Reading> {
        use EngineKind::*;
        use Signal::*;
        let r = match (self, signal) {
            (Vllm, KvCacheUtilization) => {
                Reading::Gauge(&["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"])
            }
            (Vllm, Waiting) => Reading::Gauge(&["vllm:num_requests_waiting"]),
            (Vllm, Running) => Reading::Gauge(&["vllm:num_requests_running"]),
            (Vllm, Ttft) => Reading::Histogram {
                names: &["vllm:time_to_first_token_seconds"],
                scale: 1.0,
            },
            (Vllm, Itl) => Reading::Histogram {
                names: &[
                    "vllm:inter_token_latency_seconds",
                    "vllm:time_per_output_token_seconds",
                ],
                scale: 1.0,
            },
            (Vllm, QueueTime) => Reading::Histogram {
                names: &["vllm:request_queue_time_seconds"],
                scale: 1.0,
            },
            (Vllm, Tokens) => {
                Reading::Counters(&["vllm:prompt_tokens_total", "vllm:generation_tokens_total"])
            }
            (Sglang, Tokens) => Reading::Counters(&[
                "sglang:prompt_tokens_total",
                "sglang:generation_tokens_total",
            ]),
            // The token-count histograms' sums.
            (Tgi, Tokens) => Reading::Counters(&[
                "tgi_request_input_length_sum",
                "tgi_request_generated_tokens_sum",
            ]),
            (Sglang, KvCacheUtilization) => Reading::Gauge(&["sglang:token_usage"]),
            (Sglang, Waiting) => Reading::Gauge(&["sglang:num_queue_reqs"]),
            (Sglang, Running) => Reading::Gauge(&["sglang:num_running_reqs"]),
            (Sglang, Ttft) => Reading::Histogram {
                names: &["sglang:time_to_first_token_seconds"],
                scale: 1.0,
            },
            (Sglang, QueueTime) => Reading::Histogram {
                names: &["sglang:queue_time_seconds"],
                scale: 1.0,
            },
            (Sglang, Itl) => Reading::Histogram {
                names: &[
                    "sglang:inter_token_latency_seconds",
                    "sglang:time_per_output_token_seconds",
                ],
                scale: 1.0,
            },
            // TGI exports no KV-cache use and no time to first token.
            (Tgi, KvCacheUtilization | Ttft) => return None,
            (Tgi, Waiting) => Reading::Gauge(&["tgi_queue_size"]),
            (Tgi, Running) => Reading::Gauge(&["tgi_batch_current_size"]),
            (Tgi, Itl) => Reading::Histogram {
                names: &["tgi_request_mean_time_per_token_duration"],
                scale: 1.0,
            },
            (Tgi, QueueTime) => Reading::Histogram {
                names: &["tgi_request_queue_duration"],
                scale: 1.0,
            },
            (Triton, KvCacheUtilization) => Reading::LabeledRatio {
                name: "nv_trt_llm_kv_cache_block_metrics",
                label: "kv_cache_block_type",
                numerator: "used",
                denominator: "max",
            },
            (Triton, Waiting) => Reading::LabeledGauge {
                name: "nv_trt_llm_request_metrics",
                label: "request_type",
                value: "waiting",
            },
            (Triton, Running) => Reading::LabeledGauge {
                name: "nv_trt_llm_request_metrics",
                label: "request_type",
                value: "scheduled",
            },
            (Triton, Ttft) => Reading::Histogram {
                names: &["nv_inference_first_response_histogram_ms"],
                scale: 0.001,
            },
            // Triton exports no inter-token histogram, its queue time only as a counter, and
            // no token counts.
            (Triton, Itl | QueueTime | Tokens) => return None,
        };
        Some(r)
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Signal {
    /// The name of the policy metric that carries this signal (observations use it).
    pub fn metric_name(self) -> &'static str {
        match self {
            Signal::KvCacheUtilization => "engine.kvCacheUtilization",
            Signal::Waiting => "engine.waiting",
            Signal::Running => "engine.running",
            Signal::Ttft => "engine.ttft",
            Signal::Itl => "engine.itl",
            Signal::QueueTime => "engine.queueTime",
            Signal::Tokens => "engine.tokens",
        }
    }
}

/// Sum of the series of `name` whose labels satisfy `keep`; `None` when none is there.
fn sum_where(
    samples: &[Sample],
    name: &str,
    keep: impl Fn(&std::collections::BTreeMap<String, String>) -> bool,
) -> Option<f64> {
    let mut found = None;
    for (n, labels, v) in samples {
        if n == name && keep(labels) && v.is_finite() {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Sum of the series of `name` whose `label` is `value`.
fn sum_labeled(samples: &[Sample], name: &str, label: &str, value: &str) -> Option<f64> {
    sum_where(samples, name, |l| l.get(label).is_some_and(|v| v == value))
}

impl Reading {
    /// A gauge reading's value in one replica's scrape; `None` for a histogram, or when the
    /// replica exports none of its series.
    pub fn gauge(&self, samples: &[Sample]) -> Option<f64> {
        match *self {
            Reading::Gauge(names) => names
                .iter()
                .find_map(|name| sum_where(samples, name, |_| true)),
            Reading::LabeledGauge { name, label, value } => {
                sum_labeled(samples, name, label, value)
            }
            Reading::LabeledRatio {
                name,
                label,
                numerator,
                denominator,
            } => {
                let n = sum_labeled(samples, name, label, numerator)?;
                let d = sum_labeled(samples, name, label, denominator)?;
                (d > 0.0).then(|| n / d)
            }
            Reading::Counters(names) => {
                let found: Vec<f64> = names
                    .iter()
                    .filter_map(|name| sum_where(samples, name, |_| true))
                    .collect();
                (!found.is_empty()).then(|| found.iter().sum())
            }
            Reading::Histogram { .. } => None,
        }
    }
}
