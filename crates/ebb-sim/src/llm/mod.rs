//! Token-level simulation of LLM serving. Each request carries its prompt and output tokens
//! (the Azure LLM and Mooncake traces have them); each replica is the engine model that
//! `ebb demo-llm` runs ([`crate::engine`], its parameters in one place: [`EngineParams`]),
//! stepped in simulated time: continuous batching under a token budget, a KV cache of fixed
//! size, chunked prefill, decode steps that slow as the batch grows. The report gives time to
//! first token (TTFT), time per output token (TPOT) and the gaps between tokens, their
//! attainment against SLOs, and GPU-hours.
//!
//! Policies see the fleet through the same observation pipeline as the request-level
//! simulator ([`crate::observe`]): Ebb's `engine` block reads each replica's vLLM metrics
//! (gauges and histogram buckets, exactly as a scrape gives them); HPA reads a duty cycle (the
//! share of time the engine had work, as DCGM's `DCGM_FI_DEV_GPU_UTIL` reports it) or request
//! rates through a Prometheus adapter; KPA reads concurrency. See [`compare`].

pub mod capacity;
pub mod compare;
pub mod disagg;
pub mod fleet;
pub mod frontier;
pub mod metrics;
pub mod pools;
pub mod report;
pub mod run;
pub mod tally;

pub use fleet::{Fleet, LlmRequest};
pub use run::{run_llm_policy, LlmResult};

use crate::cluster::ColdStart;
use crate::engine::EngineParams;
use crate::workload::Workload;

/// How long a request may be held at the gateway for a first ready replica (Knative's
/// default request timeout, `revision-timeout-seconds`).
pub const HOLD_TIMEOUT_SECONDS: f64 = 300.0;

/// What every policy of a token-level comparison shares.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// What one replica can do.
    pub engine: EngineParams,
    /// Cold start of a new replica (node, image, weights).
    pub cold_start: ColdStart,
    /// Time-to-first-token SLO, seconds.
    pub ttft_slo: f64,
    /// Time-per-output-token SLO, seconds.
    pub itl_slo: f64,
    /// How long a request waits at the gateway for a first replica before it fails.
    pub hold_timeout: f64,
    /// GPUs per replica, for GPU-hours.
    pub gpus_per_replica: f64,
    /// Time-series bucket of the report, seconds.
    pub bucket: f64,
    /// Seed for cold starts.
    pub seed: u64,
}

impl EngineParams {
    /// The engine of the token-level comparison: [`EngineParams::default`]'s speeds with the KV
    /// cache of an 8B model on one 80 GB accelerator (262,144 tokens: 16,384 blocks of 16) and
    /// 256 sequences at once, so that Mooncake's longest prompts (126,195 tokens) fit.
    pub fn one_accelerator() -> EngineParams {
        EngineParams {
            kv_blocks: 16_384,
            max_running: 256,
            ..EngineParams::default()
        }
    }
}

/// Why a workload cannot be simulated token by token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokensError {
    /// A rate series has no requests, let alone tokens.
    #[error("the workload is a rate series: token-level simulation needs a request trace with prompt and output tokens (azure-llm, mooncake)")]
    RateSeries,
    /// The trace's requests carry no token counts.
    #[error("{missing} of {total} requests carry no prompt or output token count: token-level simulation needs a trace that has them (azure-llm, mooncake)")]
    NoTokens {
        /// Requests without both counts.
        missing: usize,
        /// Requests in all.
        total: usize,
    },
}

/// The workload's requests with their tokens. A request of zero output tokens asks for one
/// (the engine emits at least one); a request with no count fails the conversion.
pub fn requests(workload: &Workload) -> Result<Vec<LlmRequest>, TokensError> {
    let Workload::Requests(rs) = workload else {
        return Err(TokensError::RateSeries);
    };
    let missing = rs
        .iter()
        .filter(|r| !(r.prompt.is_finite() && r.work.is_finite()))
        .count();
    if missing > 0 {
        return Err(TokensError::NoTokens {
            missing,
            total: rs.len(),
        });
    }
    Ok(rs
        .iter()
        .map(|r| LlmRequest {
            at: r.at,
            prompt: (r.prompt.round() as u32).max(1),
            output: (r.work.round() as u32).max(1),
        })
        .collect())
}
