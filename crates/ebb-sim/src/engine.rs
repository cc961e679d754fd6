//! A model of an LLM inference engine's scheduler (vLLM's, simplified), honest enough to scale
//! on: continuous batching under a token budget per step, a KV cache of fixed capacity in
//! blocks, chunked prefill, and decode steps that slow as the batch grows. It is a model of an
//! engine, not a language model: a token is a unit of work, and nothing is generated.
//!
//! The same model serves `ebb demo-llm` (which runs its steps in real time and streams the
//! tokens) and the simulator (which runs them in simulated time), so that the two agree on
//! what a replica can do; [`EngineParams`] holds its parameters in one place.
//!
//! **One step.** The step's budget is [`EngineParams::step_tokens`] tokens (vLLM's
//! `max_num_batched_tokens`). Every running sequence past its prefill decodes one token; it
//! first needs a KV slot for it, and when a new block is needed and none is free, the
//! sequence admitted last is preempted (vLLM's recompute preemption: its blocks are freed, and
//! it waits at the head of the queue to prefill its prompt and what it had generated again).
//! What is left of the budget goes to prefill: first sequences whose prefill is under way,
//! then waiting ones, first come first served, each admitted only while fewer than
//! [`EngineParams::max_running`] run and the free blocks hold its whole prompt and its first
//! token (otherwise it waits, and so do those behind it). A prompt longer than the budget is
//! prefilled over several steps. A sequence whose prefill ends in a step emits its first token
//! at the step's end; a decoding one, its next. The step takes `step_base + prefill tokens x
//! per_prefill_token + decoding sequences x per_decode_seq` seconds.

use std::collections::VecDeque;

/// What one engine replica can do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineParams {
    /// KV-cache capacity, in blocks.
    pub kv_blocks: u32,
    /// Tokens one KV block holds.
    pub block_tokens: u32,
    /// Tokens one step processes at most (prefill chunks, plus one for each decoding sequence).
    pub step_tokens: u32,
    /// Sequences running at once at most.
    pub max_running: u32,
    /// A step's fixed time, in seconds.
    pub step_base: f64,
    /// Seconds added per prompt token prefilled in the step.
    pub per_prefill_token: f64,
    /// Seconds added per sequence decoding in the step: decode steps slow as the batch grows.
    pub per_decode_seq: f64,
}

impl Default for EngineParams {
    /// A mid-sized model on one accelerator: 32,768 tokens of KV cache in 16-token blocks, a
    /// 2,048-token step budget, 128 sequences at once, 10 ms steps plus 50 us per prompt token
    /// (20,000 prompt tokens a second) and 0.25 ms per decoding sequence (about 90 tokens a
    /// second for one stream, 2,800 for a batch of 64).
    fn default() -> EngineParams {
        EngineParams {
            kv_blocks: 2048,
            block_tokens: 16,
            step_tokens: 2048,
            max_running: 128,
            step_base: 0.010,
            per_prefill_token: 0.000_05,
            per_decode_seq: 0.000_25,
        }
    }
}

impl EngineParams {
    /// Why these parameters cannot run, if they cannot.
    pub fn problem(&self) -> Option<String> {
        let positive = |v: f64| v.is_finite() && v >= 0.0;
        if self.kv_blocks == 0 || self.block_tokens == 0 {
            return Some("the KV cache needs at least one block of at least one token".into());
        }
        if self.step_tokens == 0 || self.max_running == 0 {
            return Some("a step must take at least one token and one sequence".into());
        }
        if !(positive(self.step_base)
            && positive(self.per_prefill_token)
            && positive(self.per_decode_seq))
            || self.step_base + self.per_decode_seq <= 0.0
        {
            return Some(
                "step times must be finite, not negative, and a step must take time".into(),
            );
        }
        None
    }

    /// KV blocks that `tokens` tokens fill.
    pub fn blocks_for(&self, tokens: u32) -> u32 {
        tokens.div_ceil(self.block_tokens)
    }

    /// The longest prompt (with its first output token) the cache can ever hold.
    pub fn max_context(&self) -> u32 {
        self.kv_blocks.saturating_mul(self.block_tokens)
    }
}

/// One request in the engine.
#[derive(Debug, Clone)]
struct Seq {
    id: u64,
    /// Tokens to prefill: the prompt, plus what was generated before a preemption.
    prefill: u32,
    /// Of those, prefilled so far.
    computed: u32,
    /// Output tokens generated so far.
    generated: u32,
    /// Output tokens wanted (after a preemption, those still to come).
    max_output: u32,
    /// Output tokens emitted before its preemptions: its token indices go on from here.
    offset: u32,
    /// KV blocks held.
    blocks: u32,
}

impl Seq {
    fn decoding(&self) -> bool {
        self.computed == self.prefill
    }
}

/// What one step did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    /// How long it takes, in seconds; its tokens are out at its end.
    pub seconds: f64,
    /// Prompt tokens prefilled.
    pub prefill_tokens: u32,
    /// Sequences that decoded a token.
    pub decode_seqs: u32,
    /// The sequences that emitted a token, with the token's index (0: the first).
    pub tokens: Vec<(u64, u32)>,
    /// The sequences that emitted their last token.
    pub finished: Vec<u64>,
    /// Sequences preempted to free KV blocks.
    pub preempted: Vec<u64>,
    /// Sequences scheduled from the waiting queue at this step's start (a preempted one again
    /// when it comes back).
    pub admitted: Vec<u64>,
}

/// Why the engine refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The prompt and the output asked for cannot fit the KV cache even alone.
    #[error("{needed} tokens of context do not fit the KV cache ({capacity} tokens)")]
    TooLong {
        /// Prompt plus output tokens.
        needed: u32,
        /// The cache's capacity in tokens.
        capacity: u32,
    },
    /// Prompt and output must be at least a token each.
    #[error("a request needs at least one prompt token and one output token")]
    Empty,
}

/// What a replica does with a request: all of it, or one side of disaggregated serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Prefill and decode on the same replica.
    Whole,
    /// Prefill only: a request leaves with its KV cache at the end of its prefill step
    /// (the simulator's `Fleet::take_handoffs`); its tokens are the decode pool's to send.
    Prefill,
    /// Decode only: requests come with their prompt computed ([`Engine::submit_prefilled`]).
    Decode,
}

impl Stage {
    /// The output tokens this stage generates of the `asked`: a prefill replica only the
    /// first (as a disaggregation router asks it, `max_tokens: 1`).
    pub fn output_tokens(self, asked: u32) -> u32 {
        match self {
            Stage::Prefill => asked.min(1),
            Stage::Whole | Stage::Decode => asked,
        }
    }

    /// Queues a request of `prompt` and `output` tokens on `engine`: the part of it this
    /// stage does.
    pub fn submit(
        self,
        engine: &mut Engine,
        id: u64,
        prompt: u32,
        output: u32,
    ) -> Result<(), Rejected> {
        let output = self.output_tokens(output);
        match self {
            Stage::Whole | Stage::Prefill => engine.submit(id, prompt, output),
            Stage::Decode => engine.submit_prefilled(id, prompt, output),
        }
    }
}

/// The engine's scheduler state.
#[derive(Debug, Clone)]
pub struct Engine {
    params: EngineParams,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    free_blocks: u32,
    preemptions: u64,
}

impl Engine {
    /// An idle engine.
    pub fn new(params: EngineParams) -> Engine {
        Engine {
            params,
            waiting: VecDeque::new(),
            running: Vec::new(),
            free_blocks: params.kv_blocks,
            preemptions: 0,
        }
    }

    /// Its parameters.
    pub fn params(&self) -> &EngineParams {
        &self.params
    }

    /// Queues request `id` with `prompt` tokens, to generate `max_output` tokens.
    pub fn submit(&mut self, id: u64, prompt: u32, max_output: u32) -> Result<(), Rejected> {
        if prompt == 0 || max_output == 0 {
            return Err(Rejected::Empty);
        }
        let needed = prompt.saturating_add(max_output);
        if needed > self.params.max_context() {
            return Err(Rejected::TooLong {
                needed,
                capacity: self.params.max_context(),
            });
        }
        self.waiting.push_back(Seq {
            id,
            prefill: prompt,
            computed: 0,
            generated: 0,
            max_output,
            offset: 0,
            blocks: 0,
        });
        Ok(())
    }

    /// Queues request `id` whose prompt's KV cache was computed on another replica and handed
    /// over (the decode side of disaggregated serving): it is admitted as any request is (its
    /// blocks must fit, the batch must have room), then decodes from its first step, its
    /// first token included, at a decoding sequence's cost. Preempted, it recomputes its
    /// prompt here, as vLLM does.
    pub fn submit_prefilled(
        &mut self,
        id: u64,
        prompt: u32,
        max_output: u32,
    ) -> Result<(), Rejected> {
        self.submit(id, prompt, max_output)?;
        if let Some(s) = self.waiting.back_mut() {
            s.computed = s.prefill;
        }
        Ok(())
    }

    /// Drops request `id` wherever it is (its client left), freeing its blocks.
    pub fn abort(&mut self, id: u64) {
        self.waiting.retain(|s| s.id != id);
        if let Some(i) = self.running.iter().position(|s| s.id == id) {
            let s = self.running.remove(i);
            self.free_blocks += s.blocks;
        }
    }

    /// Requests running (admitted, holding KV blocks).
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Requests waiting to be admitted.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The share of KV blocks in use (0-1).
    pub fn kv_usage(&self) -> f64 {
        f64::from(self.params.kv_blocks - self.free_blocks) / f64::from(self.params.kv_blocks)
    }

    /// Preemptions so far.
    pub fn preemptions(&self) -> u64 {
        self.preemptions
    }

    /// Runs one step, or `None` when there is nothing to do.
    pub fn step(&mut self) -> Option<Step> {
        if self.running.is_empty() && self.waiting.is_empty() {
            return None;
        }
        let mut step = Step::default();
        let mut budget = self.params.step_tokens;
        self.decode(&mut step, &mut budget);
        self.prefill_running(&mut step, &mut budget);
        self.admit(&mut step, &mut budget);
        self.finish(&mut step);
        let p = &self.params;
        step.seconds = p.step_base
            + f64::from(step.prefill_tokens) * p.per_prefill_token
            + f64::from(step.decode_seqs) * p.per_decode_seq;
        Some(step)
    }

    /// One token for every decoding sequence that can get a KV slot for it.
    fn decode(&mut self, step: &mut Step, budget: &mut u32) {
        let mut i = 0;
        while i < self.running.len() && *budget > 0 {
            if !self.running[i].decoding() {
                i += 1;
                continue;
            }
            let need = self
                .params
                .blocks_for(self.running[i].prefill + self.running[i].generated + 1);
            while need > self.running[i].blocks && self.free_blocks == 0 {
                let last = self.running.len() - 1;
                self.preempt(last, step);
                if last == i {
                    return;
                }
            }
            let s = &mut self.running[i];
            if need > s.blocks {
                s.blocks += 1;
                self.free_blocks -= 1;
            }
            s.generated += 1;
            step.tokens.push((s.id, s.offset + s.generated - 1));
            step.decode_seqs += 1;
            *budget -= 1;
            i += 1;
        }
    }

    /// Frees the blocks of running sequence `i` and queues it first, to prefill again.
    fn preempt(&mut self, i: usize, step: &mut Step) {
        let mut s = self.running.remove(i);
        self.free_blocks += s.blocks;
        s.prefill += s.generated;
        s.max_output -= s.generated;
        s.offset += s.generated;
        s.generated = 0;
        s.computed = 0;
        s.blocks = 0;
        step.preempted.push(s.id);
        self.preemptions += 1;
        self.waiting.push_front(s);
    }

    /// Continues prefills already under way.
    fn prefill_running(&mut self, step: &mut Step, budget: &mut u32) {
        for s in &mut self.running {
            if *budget == 0 {
                break;
            }
            if !s.decoding() {
                Self::prefill_chunk(s, step, budget);
            }
        }
    }

    /// Admits waiting sequences first come first served, while the cache and the batch hold
    /// them, and starts their prefill.
    fn admit(&mut self, step: &mut Step, budget: &mut u32) {
        while *budget > 0 && self.running.len() < self.params.max_running as usize {
            let Some(head) = self.waiting.front() else {
                break;
            };
            let blocks = self.params.blocks_for(head.prefill + 1);
            if blocks > self.free_blocks {
                break;
            }
            let Some(mut s) = self.waiting.pop_front() else {
                break;
            };
            s.blocks = blocks;
            self.free_blocks -= blocks;
            step.admitted.push(s.id);
            Self::prefill_chunk(&mut s, step, budget);
            self.running.push(s);
        }
    }

    /// Prefills as much of `s` as the budget allows; the first token comes when it is done.
    /// A sequence admitted with its prompt computed elsewhere decodes its first token here.
    fn prefill_chunk(s: &mut Seq, step: &mut Step, budget: &mut u32) {
        if s.decoding() && s.generated == 0 {
            step.decode_seqs += 1;
            *budget = budget.saturating_sub(1);
        }
        let chunk = (s.prefill - s.computed).min(*budget);
        s.computed += chunk;
        *budget -= chunk;
        step.prefill_tokens += chunk;
        if s.decoding() {
            s.generated += 1;
            step.tokens.push((s.id, s.offset + s.generated - 1));
        }
    }

    /// Removes the sequences that have all their tokens, freeing their blocks.
    fn finish(&mut self, step: &mut Step) {
        let free = &mut self.free_blocks;
        self.running.retain(|s| {
            let done = s.decoding() && s.generated >= s.max_output;
            if done {
                *free += s.blocks;
                step.finished.push(s.id);
            }
            !done
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> EngineParams {
        EngineParams {
            kv_blocks: 64,
            block_tokens: 16,
            step_tokens: 512,
            max_running: 8,
            step_base: 0.010,
            per_prefill_token: 0.000_1,
            per_decode_seq: 0.001,
        }
    }

    /// Steps until idle: (time of each request's first token, its finish time, token count).
    fn run(e: &mut Engine) -> Vec<(u64, f64, f64, u32)> {
        let mut now = 0.0;
        let mut out: Vec<(u64, f64, f64, u32)> = Vec::new();
        while let Some(s) = e.step() {
            now += s.seconds;
            for &(id, index) in &s.tokens {
                match out.iter_mut().find(|o| o.0 == id) {
                    Some(o) => o.3 += 1,
                    None => out.push((id, now, 0.0, index + 1)),
                }
            }
            for id in &s.finished {
                if let Some(o) = out.iter_mut().find(|o| o.0 == *id) {
                    o.2 = now;
                }
            }
        }
        out
    }

    #[test]
    fn one_request_takes_a_prefill_step_then_a_decode_step_a_token() {
        let mut e = Engine::new(params());
        e.submit(1, 100, 5).unwrap();
        let out = run(&mut e);
        let (_, first, done, tokens) = out[0];
        assert_eq!(tokens, 5);
        // Prefill of 100 tokens: 10 ms + 10 ms; four decode steps of one sequence: 11 ms each.
        assert!((first - 0.020).abs() < 1e-9, "{first}");
        assert!((done - (0.020 + 4.0 * 0.011)).abs() < 1e-9, "{done}");
        assert_eq!(e.kv_usage(), 0.0);
    }

    #[test]
    fn a_handed_over_prompt_decodes_from_its_first_step() {
        let mut e = Engine::new(params());
        e.submit_prefilled(1, 100, 5).unwrap();
        let out = run(&mut e);
        let (_, first, done, tokens) = out[0];
        assert_eq!(tokens, 5);
        // No prefill: five decode steps of one sequence, 11 ms each; its blocks are held.
        assert!((first - 0.011).abs() < 1e-9, "{first}");
        assert!((done - 5.0 * 0.011).abs() < 1e-9, "{done}");
        assert_eq!(e.kv_usage(), 0.0);
    }

    #[test]
    fn a_batch_matches_the_closed_form() {
        // n identical requests at once, all fitting: one step prefills them all, then each of
        // the remaining m - 1 tokens takes a decode step of the whole batch.
        let (n, prompt, m) = (6u32, 50u32, 20u32);
        let mut e = Engine::new(params());
        for id in 0..n {
            e.submit(u64::from(id), prompt, m).unwrap();
        }
        let out = run(&mut e);
        let p = params();
        let prefill = p.step_base + f64::from(n * prompt) * p.per_prefill_token;
        let decode = p.step_base + f64::from(n) * p.per_decode_seq;
        for (_, first, done, tokens) in out {
            assert_eq!(tokens, m);
            assert!((first - prefill).abs() < 1e-9);
            assert!((done - (prefill + f64::from(m - 1) * decode)).abs() < 1e-9);
        }
    }

    #[test]
    fn decode_steps_slow_as_the_batch_grows() {
        let mut alone = Engine::new(params());
        alone.submit(1, 10, 3).unwrap();
        let mut crowd = Engine::new(params());
        for id in 0..8 {
            crowd.submit(id, 10, 3).unwrap();
        }
        let (_, a_first, a_done, _) = run(&mut alone)[0];
        let (_, c_first, c_done, _) = run(&mut crowd)[0];
        assert!(c_done - c_first > a_done - a_first);
    }

    #[test]
    fn a_long_prompt_is_prefilled_over_several_steps() {
        let mut e = Engine::new(params());
        e.submit(1, 1000, 1).unwrap();
        let first = e.step().unwrap();
        assert_eq!(first.prefill_tokens, 512);
        assert!(first.tokens.is_empty());
        let second = e.step().unwrap();
        assert_eq!(second.prefill_tokens, 488);
        assert_eq!(second.tokens, vec![(1, 0)]);
        assert_eq!(second.finished, vec![1]);
    }

    #[test]
    fn requests_wait_while_the_kv_cache_is_full_and_run_once_it_frees() {
        // 64 blocks of 16: two 500-token prompts take 32 blocks each; a third waits.
        let mut e = Engine::new(params());
        for id in 0..3 {
            e.submit(id, 495, 2).unwrap();
        }
        let first = e.step().unwrap();
        assert_eq!(
            first.prefill_tokens, 512,
            "the second prompt starts in the budget left"
        );
        assert_eq!(e.running(), 2);
        assert_eq!(e.waiting(), 1, "the cache holds two");
        assert!(e.kv_usage() > 0.95, "62 of 64 blocks");
        let out = run(&mut e);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|o| o.3 == 2));
        assert_eq!(e.kv_usage(), 0.0);
    }

    #[test]
    fn a_full_cache_preempts_the_last_admitted_and_every_token_still_comes_once() {
        let mut p = params();
        p.kv_blocks = 8; // 128 tokens
        let mut e = Engine::new(p);
        e.submit(1, 48, 60).unwrap();
        e.submit(2, 48, 60).unwrap();
        let out = run(&mut e);
        assert!(e.preemptions() > 0, "both cannot grow to 108 tokens in 128");
        for (id, _, _, tokens) in out {
            assert_eq!(tokens, 60, "request {id}");
        }
    }

    #[test]
    fn an_aborted_request_frees_its_blocks() {
        let mut e = Engine::new(params());
        e.submit(1, 100, 50).unwrap();
        e.submit(2, 100, 50).unwrap();
        e.step().unwrap();
        assert!(e.kv_usage() > 0.0);
        e.abort(1);
        e.abort(2);
        assert_eq!(e.kv_usage(), 0.0);
        assert!(e.step().is_none());
    }

    #[test]
    fn impossible_requests_are_refused() {
        let mut e = Engine::new(params());
        assert_eq!(e.submit(1, 0, 5), Err(Rejected::Empty));
        assert!(matches!(
            e.submit(1, 1000, 100),
            Err(Rejected::TooLong {
                needed: 1100,
                capacity: 1024
            })
        ));
        assert!(params().problem().is_none());
        assert!(EngineParams {
            kv_blocks: 0,
            ..params()
        }
        .problem()
        .is_some());
    }
}
