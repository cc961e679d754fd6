//! What one replica sustains on a workload's own mix of requests, measured as a load test
//! would: the engine kept saturated (a few requests always waiting) with the workload's
//! requests in turn, completions counted over simulated time. The baselines that need a
//! per-replica number (HPA's request-rate target, everyone's first replica count) take it
//! from here rather than from a guess.

use super::LlmRequest;
use crate::engine::Stage;
use crate::engine::{Engine, EngineParams};

/// Requests kept waiting so that the engine never runs short of work.
const BACKLOG: usize = 8;
/// Completions ignored while the batch fills.
const WARMUP: u64 = 200;
/// Completions measured.
const MEASURED: u64 = 2_000;

/// Requests per second one replica completes when saturated with `mix` (in its order, round
/// and round); `None` for an empty mix.
pub fn saturation_rps(params: EngineParams, mix: &[LlmRequest]) -> Option<f64> {
    stage_saturation_rps(params, mix, Stage::Whole)
}

/// The same for one side of disaggregated serving: prefills a prefill replica completes, or
/// handed-over requests a decode replica completes.
pub fn stage_saturation_rps(params: EngineParams, mix: &[LlmRequest], stage: Stage) -> Option<f64> {
    if mix.is_empty() {
        return None;
    }
    let mut engine = Engine::new(params);
    let (mut next, mut id) = (0usize, 0u64);
    let (mut now, mut done) = (0.0f64, 0u64);
    let mut started = None;
    let mut refused_in_a_row = 0usize;
    while done < WARMUP + MEASURED {
        while engine.waiting() < BACKLOG {
            let r = mix[next % mix.len()];
            next += 1;
            id += 1;
            // A request the engine refuses is left out of the mix; a mix it refuses whole
            // has no rate.
            if stage.submit(&mut engine, id, r.prompt, r.output).is_err() {
                refused_in_a_row += 1;
                if refused_in_a_row >= mix.len() {
                    return None;
                }
            } else {
                refused_in_a_row = 0;
            }
        }
        let step = engine.step()?;
        now += step.seconds;
        done += step.finished.len() as u64;
        if started.is_none() && done >= WARMUP {
            started = Some((now, done));
        }
    }
    let (t0, d0) = started?;
    (now > t0).then(|| (done - d0) as f64 / (now - t0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Short requests: 16 prompt tokens, 8 output tokens, prefill free. The batch holds
    /// `max_running` (8) sequences; each holds its place for 8 steps (one that prefills and
    /// emits its first token, seven that decode one each), so one request finishes per step,
    /// and a step decodes 7 sequences: 10 ms + 7 x 1 ms.
    #[test]
    fn a_saturated_engine_completes_what_its_steps_allow() {
        let params = EngineParams {
            kv_blocks: 1024,
            block_tokens: 16,
            step_tokens: 4096,
            max_running: 8,
            step_base: 0.010,
            per_prefill_token: 0.0,
            per_decode_seq: 0.001,
        };
        let mix = [LlmRequest {
            at: 0.0,
            prompt: 16,
            output: 8,
        }];
        let rps = saturation_rps(params, &mix).expect("rps");
        let expected = 1.0 / 0.017;
        assert!((rps / expected - 1.0).abs() < 0.02, "{rps} vs {expected}");
    }
}
