//! The engine model's flags, shared by `ebb demo-llm` (which runs it in real time) and
//! `ebb simulate --llm` (which steps it in simulated time), so that both describe a replica in
//! the same words. Each flag left out keeps the command's own default engine.

use anyhow::bail;
use clap::Args;
use ebb_sim::engine::EngineParams;

/// What one engine replica can do (each default is the command's engine's).
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct EngineArgs {
    /// Engine: KV-cache capacity, in blocks (demo-llm 2048, simulate --llm 16384).
    #[arg(long)]
    kv_blocks: Option<u32>,
    /// Engine: tokens one KV block holds (16).
    #[arg(long)]
    block_tokens: Option<u32>,
    /// Engine: tokens one step processes at most, vLLM's max_num_batched_tokens (2048).
    #[arg(long)]
    step_tokens: Option<u32>,
    /// Engine: sequences running at once at most, vLLM's max_num_seqs (demo-llm 128,
    /// simulate --llm 256).
    #[arg(long)]
    max_running: Option<u32>,
    /// Engine: a step's fixed time, in milliseconds (10).
    #[arg(long)]
    step_ms: Option<f64>,
    /// Engine: microseconds added to a step per prompt token it prefills (50).
    #[arg(long)]
    prefill_us_per_token: Option<f64>,
    /// Engine: microseconds added to a step per sequence it decodes (250).
    #[arg(long)]
    decode_us_per_seq: Option<f64>,
}

impl EngineArgs {
    /// Whether any flag was given.
    pub(crate) fn any(&self) -> bool {
        self.kv_blocks.is_some()
            || self.block_tokens.is_some()
            || self.step_tokens.is_some()
            || self.max_running.is_some()
            || self.step_ms.is_some()
            || self.prefill_us_per_token.is_some()
            || self.decode_us_per_seq.is_some()
    }

    /// `base` with the flags given applied; an engine that cannot run is an error that says why.
    pub(crate) fn params(&self, base: EngineParams) -> anyhow::Result<EngineParams> {
        let p = EngineParams {
            kv_blocks: self.kv_blocks.unwrap_or(base.kv_blocks),
            block_tokens: self.block_tokens.unwrap_or(base.block_tokens),
            step_tokens: self.step_tokens.unwrap_or(base.step_tokens),
            max_running: self.max_running.unwrap_or(base.max_running),
            step_base: self.step_ms.map_or(base.step_base, |v| v / 1e3),
            per_prefill_token: self
                .prefill_us_per_token
                .map_or(base.per_prefill_token, |v| v / 1e6),
            per_decode_seq: self
                .decode_us_per_seq
                .map_or(base.per_decode_seq, |v| v / 1e6),
        };
        if let Some(problem) = p.problem() {
            bail!("invalid engine (--kv-blocks, --block-tokens, --step-tokens, --max-running, --step-ms, --prefill-us-per-token, --decode-us-per-seq): {problem}");
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults the flags' help states are the engines' own.
    #[test]
    fn the_stated_defaults_are_the_engines() {
        let (d, a) = (EngineParams::default(), EngineParams::one_accelerator());
        assert_eq!((d.kv_blocks, a.kv_blocks), (2048, 16384));
        assert_eq!((d.max_running, a.max_running), (128, 256));
        for p in [d, a] {
            assert_eq!((p.block_tokens, p.step_tokens), (16, 2048));
            assert_eq!(
                (p.step_base, p.per_prefill_token, p.per_decode_seq),
                (0.010, 0.000_05, 0.000_25)
            );
        }
    }

    #[test]
    fn flags_left_out_keep_the_base_engine_and_given_ones_replace_it() {
        let base = EngineParams::one_accelerator();
        assert_eq!(EngineArgs::default().params(base).unwrap(), base);
        let args = EngineArgs {
            step_ms: Some(20.0),
            kv_blocks: Some(64),
            ..EngineArgs::default()
        };
        let p = args.params(base).unwrap();
        assert_eq!((p.step_base, p.kv_blocks), (0.020, 64));
        assert_eq!(p.max_running, base.max_running);
        let bad = EngineArgs {
            step_ms: Some(f64::NAN),
            ..EngineArgs::default()
        };
        assert!(bad
            .params(base)
            .unwrap_err()
            .to_string()
            .contains("--step-ms"));
    }
}
