//! `ebb simulate --llm`: token-level simulation of LLM serving. Each replica is the engine
//! model of `ebb demo-llm`; Ebb's engine-aware policy runs beside HPA on duty cycle, HPA on
//! request rate and KPA on concurrency.

use super::{cold_start, parse_seconds, print_done, progress_bars, Prepared, SimulateArgs};
use anyhow::{bail, Context};
use ebb_sim::engine::EngineParams;
use ebb_sim::llm::compare::Sizing;
use ebb_sim::llm::compare::{compare, policies, sizing};
use ebb_sim::llm::frontier::sweep;
use ebb_sim::llm::pools::{compare_pools, pool_policies, pool_sizing};
use ebb_sim::llm::LlmRequest;
use ebb_sim::llm::{report, requests, LlmConfig, HOLD_TIMEOUT_SECONDS};
use ebb_sim::tune::{against, frontier_svg, Family, Point};
use ebb_sim::Start;
use std::fmt::Write as _;
use std::process::ExitCode;

/// Share of the requests whose mix sizes the baselines (what a user measured beforehand).
const FIT_SHARE: f64 = 0.5;

/// The token-level run's settings from the flags (`bucket`: the report's time-series bucket).
/// `seed` is the run's, drawn for its window (`RunConfig::seed`).
pub(crate) fn llm_config(args: &SimulateArgs, bucket: f64, seed: u64) -> anyhow::Result<LlmConfig> {
    let ttft = parse_seconds(&args.ttft).map_err(|e| anyhow::anyhow!("--ttft: {e}"))?;
    let tpot = parse_seconds(&args.tpot).map_err(|e| anyhow::anyhow!("--tpot: {e}"))?;
    for (flag, v) in [("--ttft", ttft), ("--tpot", tpot)] {
        if !(v > 0.0 && v <= 3600.0) {
            bail!("{flag} must be above 0 and at most 1h");
        }
    }
    Ok(LlmConfig {
        engine: args.engine.params(EngineParams::one_accelerator())?,
        cold_start: cold_start(&args.cold_start)?,
        ttft_slo: ttft,
        itl_slo: tpot,
        hold_timeout: HOLD_TIMEOUT_SECONDS,
        gpus_per_replica: args.gpus_per_replica,
        bucket,
        seed,
    })
}

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
    let cfg = llm_config(args, run_cfg.bucket, run_cfg.seed)?;
    if args.pools {
        return pools(args, &requests, &cfg, notes, &name);
    }
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
    let start = run_cfg.cluster.start;
    let starts_with = match start {
        Start::AtZero => String::new(),
        Start::Warm => format!("every policy starts with {} ready, ", size.initial),
    };
    notes.push(format!(
        "engine: {} KV blocks of {} tokens, {} sequences at once, {}-token steps; one replica completes {:.2} req/s of the first half's mix saturated; {starts_with}maxReplicas {}",
        cfg.engine.kv_blocks, cfg.engine.block_tokens, cfg.engine.max_running, cfg.engine.step_tokens,
        size.saturation_rps, size.max_replicas
    ));
    if args.llm_frontier {
        return frontier(args, &requests, &cfg, &size, &name);
    }
    let scalers = policies(&size, &cfg, ebb, start);
    if start == Start::AtZero {
        // Read from the scalers themselves: a --policy that may scale to zero starts at zero.
        let firsts: Vec<String> = scalers
            .iter()
            .map(|s| format!("{} {}", s.name(), s.initial_replicas()))
            .collect();
        notes.push(format!(
            "from zero, each policy starts with (ready, nothing learnt): {}",
            firsts.join(", ")
        ));
    }
    let names: Vec<String> = scalers.iter().map(|s| s.name().to_string()).collect();
    let heading = format!(
        "simulating {name} token by token: {:.0} s, {} requests, {} policies",
        workload.duration(),
        requests.len(),
        names.len()
    );
    let started = std::time::Instant::now();
    let results = with_bars(&heading, &names, &notes, |progress| {
        compare(&requests, &cfg, scalers, progress)
    });
    println!("{}", report::table(&results, cfg.ttft_slo, cfg.itl_slo));
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

/// `--llm-frontier`: every family's knob over its grid, the frontiers as a table, each read
/// at the duty-cycle policy's default point (the seeds' set-up), and `frontier.svg`.
fn frontier(
    args: &SimulateArgs,
    requests: &[LlmRequest],
    cfg: &LlmConfig,
    size: &Sizing,
    name: &str,
) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let bar = indicatif::ProgressBar::new(1000);
    let points = sweep(requests, cfg, size, &|f| {
        bar.set_position((f * 1000.0) as u64)
    });
    bar.finish_and_clear();
    let gpu_hours = |p: &Point| p.replica_seconds * cfg.gpus_per_replica / 3600.0;
    let mut out =
        String::from("| family | knob | within both SLOs | GPU-hours |\n|---|---|---:|---:|\n");
    for p in &points {
        let _ = writeln!(
            out,
            "| {} | {} | {:.2}% | {:.2} |",
            p.candidate.family.name(),
            p.candidate.knob,
            p.attainment * 100.0,
            gpu_hours(p)
        );
    }
    println!("{out}");
    let reference = points
        .iter()
        .find(|p| p.candidate.family == Family::HpaDutyCycle)
        .context("the sweep has no duty-cycle point")?;
    println!(
        "Read at HPA on duty cycle's default ({:.2}% within both SLOs, {:.2} GPU-hours):\n",
        reference.attainment * 100.0,
        gpu_hours(reference)
    );
    println!(
        "| family | GPU-hours at that attainment | attainment at that cost |\n|---|---:|---:|"
    );
    for family in [
        Family::EbbEngine,
        Family::HpaDutyCycle,
        Family::Hpa,
        Family::Kpa,
    ] {
        let reading = against(&points, family, reference);
        let bound = reading
            .bound_note()
            .map_or(String::new(), |note| format!(" ({note})"));
        println!(
            "| {} | {} | {} |",
            family.name(),
            reading.cost.map_or("not reached".into(), |c| format!(
                "{:.2}{bound}",
                c * cfg.gpus_per_replica / 3600.0
            )),
            reading
                .attainment
                .map_or("not reached".into(), |a| format!("{:.2}%", a * 100.0)),
        );
    }
    std::fs::create_dir_all(&args.report)
        .with_context(|| format!("cannot write the report to {}", args.report.display()))?;
    let svg = args.report.join("frontier.svg");
    let title = format!("Frontiers, token by token: {name}");
    std::fs::write(
        &svg,
        frontier_svg(&points, reference.attainment, &title, &[]),
    )
    .with_context(|| format!("cannot write {}", svg.display()))?;
    print_done(
        points.len(),
        "settings token by token",
        started.elapsed().as_secs_f64(),
        &args.report,
        &[svg],
    );
    Ok(ExitCode::SUCCESS)
}

/// `--pools`: the disaggregated comparison, Ebb's pools policy beside one HPA or KPA per pool.
fn pools(
    args: &SimulateArgs,
    requests: &[LlmRequest],
    cfg: &LlmConfig,
    mut notes: Vec<String>,
    name: &str,
) -> anyhow::Result<ExitCode> {
    let per_token = args.kv_transfer_us * 1e-6;
    if !(per_token.is_finite() && (0.0..=1.0).contains(&per_token)) {
        bail!("--kv-transfer-us must be between 0 and 1,000,000 microseconds a token");
    }
    let ebb = args
        .policy
        .as_deref()
        .map(super::read_pools_file)
        .transpose()?;
    let size = pool_sizing(requests, cfg);
    notes.push(format!(
        "pools: a prefill replica completes {:.2} prefills/s of the first half's mix saturated, a decode replica {:.2} req/s (decode per prefill at equal load: {:.2}); KV handover {} us a prompt token; maxReplicas {} prefill, {} decode",
        size.prefill.saturation_rps,
        size.decode.saturation_rps,
        size.capacity_ratio,
        args.kv_transfer_us,
        size.prefill.max_replicas,
        size.decode.max_replicas
    ));
    let scalers = pool_policies(&size, ebb);
    let names: Vec<String> = scalers.iter().map(|s| s.name().to_string()).collect();
    let heading = format!(
        "simulating {name} token by token on prefill and decode pools: {} requests, {} policies",
        requests.len(),
        names.len()
    );
    let started = std::time::Instant::now();
    let results = with_bars(&heading, &names, &notes, |progress| {
        compare_pools(requests, cfg, per_token, scalers, progress)
    });
    let whole: Vec<_> = results.iter().map(|r| r.result.clone()).collect();
    println!("{}", report::table(&whole, cfg.ttft_slo, cfg.itl_slo));
    println!("| policy | prefill GPU-hours | decode GPU-hours |\n|---|---:|---:|");
    let hours = |s: f64| s * cfg.gpus_per_replica / 3600.0;
    for r in &results {
        println!(
            "| {} | {:.2} | {:.2} |",
            r.result.policy,
            hours(r.prefill_replica_seconds),
            hours(r.decode_replica_seconds)
        );
    }
    let title = format!("Replicas over time (both pools): {name}");
    let files = report::write(&args.report, &whole, &size, &title)
        .with_context(|| format!("cannot write the report to {}", args.report.display()))?;
    print_done(
        results.len(),
        "pools policies token by token",
        started.elapsed().as_secs_f64(),
        &args.report,
        &files,
    );
    Ok(ExitCode::SUCCESS)
}

/// Says what runs (`heading`, then each note), runs it with one progress bar per policy of
/// `names` (`run` reports `(policy index, fraction done)`), and finishes the bars.
fn with_bars<T>(
    heading: &str,
    names: &[String],
    notes: &[String],
    run: impl FnOnce(&(dyn Fn(usize, f64) + Sync)) -> T,
) -> T {
    eprintln!("{heading}");
    for n in notes {
        eprintln!("  {n}");
    }
    let (_multi, bars) = progress_bars(names);
    let out = run(&|i, f| {
        if let Some(b) = bars.get(i) {
            b.set_position((f * 1000.0) as u64);
        }
    });
    for b in &bars {
        b.finish();
    }
    out
}
