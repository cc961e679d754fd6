//! `ebb simulate --llm`: token-level simulation of LLM serving. Each replica is the engine
//! model of `ebb demo-llm`; Ebb's engine-aware policy runs beside HPA on duty cycle, HPA on
//! request rate and KPA on concurrency.

use super::{cold_start, parse_seconds, print_done, progress_bars, Prepared, SimulateArgs};
use anyhow::{bail, Context};
use ebb_sim::engine::EngineParams;
use ebb_sim::llm::compare::{compare, policies, sizing};
use ebb_sim::llm::{report, requests, LlmConfig, HOLD_TIMEOUT_SECONDS};
use std::process::ExitCode;

/// Share of the requests whose mix sizes the baselines (what a user measured beforehand).
const FIT_SHARE: f64 = 0.5;

/// Runs the token-level comparison on what `ebb simulate` already read.
pub(super) fn run(args: &SimulateArgs, input: Prepared) -> anyhow::Result<ExitCode> {
    let Prepared {
        workload,
        mut notes,
        name,
        cfg: run_cfg,
        ..
    } = input;
    let requests = requests(&workload).map_err(|e| anyhow::anyhow!("--llm: {e}"))?;
    let ttft = parse_seconds(&args.ttft).map_err(|e| anyhow::anyhow!("--ttft: {e}"))?;
    let tpot = parse_seconds(&args.tpot).map_err(|e| anyhow::anyhow!("--tpot: {e}"))?;
    for (flag, v) in [("--ttft", ttft), ("--tpot", tpot)] {
        if !(v > 0.0 && v <= 3600.0) {
            bail!("{flag} must be above 0 and at most 1h");
        }
    }
    let engine = EngineParams {
        kv_blocks: args.kv_blocks,
        max_running: args.max_running,
        ..EngineParams::one_accelerator()
    };
    if let Some(problem) = engine.problem() {
        bail!("--kv-blocks/--max-running: {problem}");
    }
    let cfg = LlmConfig {
        engine,
        cold_start: cold_start(&args.cold_start)?,
        ttft_slo: ttft,
        itl_slo: tpot,
        hold_timeout: HOLD_TIMEOUT_SECONDS,
        gpus_per_replica: args.gpus_per_replica,
        bucket: run_cfg.bucket,
        seed: args.seed,
    };
    let ebb = match &args.policy {
        Some(path) => {
            let p = super::read_policy_file(path)?;
            if p.engine.is_none() {
                bail!("--llm: policy {} has no engine block; the token-level simulation scales on engine signals (or leave --policy out for the built-in one)", path.display());
            }
            Some(p)
        }
        None => None,
    };
    let size = sizing(&requests, &cfg, FIT_SHARE);
    notes.push(format!(
        "engine: {} KV blocks of {} tokens, {} sequences at once, {}-token steps; one replica completes {:.2} req/s of the first half's mix saturated; every policy starts with {} ready, maxReplicas {}",
        engine.kv_blocks, engine.block_tokens, engine.max_running, engine.step_tokens,
        size.saturation_rps, size.initial, size.max_replicas
    ));
    let scalers = policies(&cfg, &size, ebb);
    let names: Vec<String> = scalers.iter().map(|s| s.name().to_string()).collect();
    eprintln!(
        "simulating {name} token by token: {:.0} s, {} requests, {} policies",
        workload.duration(),
        requests.len(),
        names.len()
    );
    for n in &notes {
        eprintln!("  {n}");
    }
    let started = std::time::Instant::now();
    let (_multi, bars) = progress_bars(&names);
    let results = compare(&requests, &cfg, scalers, &|i, f| {
        if let Some(b) = bars.get(i) {
            b.set_position((f * 1000.0) as u64);
        }
    });
    for b in &bars {
        b.finish();
    }
    println!("{}", report::table(&results, ttft, tpot));
    let title = format!("Replicas over time: {name}");
    let files = report::write(&args.report, &results, &size, &title)
        .with_context(|| format!("cannot write the report to {}", args.report.display()))?;
    print_done(
        results.len(),
        "policies token by token",
        started.elapsed().as_secs_f64(),
        &args.report,
        &files,
    );
    Ok(ExitCode::SUCCESS)
}
