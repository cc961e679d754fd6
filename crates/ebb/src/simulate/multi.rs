//! `ebb simulate --multi-model`: many models on shared servers, Ebb's coordinated placement
//! against packing without consolidation and one server per model.

use super::{cold_start, Prepared, SimulateArgs};
use anyhow::{bail, Context};
use ebb_core::placement::ServerKind;
use ebb_sim::multi::{
    compare_modes, default_model_policy, standard_modes, ModelMemory, MultiConfig,
};
use ebb_sim::multi_report;
use ebb_sim::report::RunInfo;
use std::process::ExitCode;

/// Parses a memory size: `80GiB`, `512MiB`, `20Gi`, `1024` (MiB). Returns MiB.
pub(super) fn parse_mib(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .with_context(|| format!("'{s}' is not a memory size (e.g. 80GiB, 512MiB)"))?;
    let factor = match unit.trim() {
        "" | "Mi" | "MiB" => 1.0,
        "Gi" | "GiB" => 1024.0,
        "Ti" | "TiB" => 1024.0 * 1024.0,
        other => bail!("'{s}': unknown unit '{other}' (MiB, GiB, TiB)"),
    };
    let mib = v * factor;
    if !mib.is_finite() || mib < 1.0 {
        bail!("'{s}' is not a memory size of at least 1 MiB");
    }
    Ok(mib.round() as u64)
}

fn model_memory(spec: &str) -> anyhow::Result<ModelMemory> {
    let parts: Vec<&str> = spec.splitn(3, ':').collect();
    Ok(match parts.as_slice() {
        ["fixed", size] => ModelMemory::Fixed(parse_mib(size)?),
        ["uniform", lo, hi] => {
            let (lo, hi) = (parse_mib(lo)?, parse_mib(hi)?);
            if lo > hi {
                bail!("--model-memory '{spec}': the low end is above the high end");
            }
            ModelMemory::Uniform(lo, hi)
        }
        ["empirical", path] | ["empirical", path, _] => {
            let path = if parts.len() == 3 {
                spec.trim_start_matches("empirical:")
            } else {
                path
            };
            let bytes = ebb_sim::trace::read_values(std::path::Path::new(path), "bytes")?;
            ModelMemory::Empirical(
                bytes
                    .into_iter()
                    .map(|b| (b / 1_048_576.0).ceil().max(1.0) as u64)
                    .collect(),
            )
        }
        _ => bail!("--model-memory '{spec}': expected fixed:SIZE, uniform:LO:HI or empirical:FILE"),
    })
}

/// Runs the multi-model comparison on what `ebb simulate` already read and built.
pub(super) fn run(args: &SimulateArgs, input: Prepared) -> anyhow::Result<ExitCode> {
    let Prepared {
        workload,
        model_names,
        cfg,
        mut notes,
        name,
        command,
        sync,
        ..
    } = input;
    if model_names.len() < 2 {
        bail!("--multi-model needs a trace that names several models (alibaba-lora's checkpoint ids, or a csv with a 'model' column); this one names {}", model_names.len());
    }
    if !(0.0..0.99).contains(&args.server_headroom) {
        bail!(
            "--server-headroom must be in [0, 0.99), got {}",
            args.server_headroom
        );
    }
    if args.max_servers == 0 {
        bail!("--max-servers must be at least 1");
    }
    let memory = model_memory(&args.model_memory)?;
    let server = ServerKind {
        kind: "server".into(),
        capacity_mib: parse_mib(&args.server_memory).context("--server-memory")?,
        max_models: args.server_max_models,
        min_replicas: 0,
        max_replicas: args.max_servers,
        headroom: args.server_headroom,
    };
    let usable = server.capacity_mib as f64 * (1.0 - server.headroom);
    let memory_mib: Vec<u64> = model_names.iter().map(|n| memory.of(n)).collect();
    if let Some((n, m)) = model_names
        .iter()
        .zip(&memory_mib)
        .find(|(_, m)| **m as f64 > usable)
    {
        bail!("model {n} needs {m} MiB, more than a server's usable {usable:.0} MiB (--server-memory, --server-headroom, --model-memory)");
    }
    let max_model_replicas = args.max_replicas.unwrap_or(50);
    let policy = match &args.policy {
        Some(p) => super::read_policy(p)?,
        None => default_model_policy(args.slots, max_model_replicas),
    };
    let multi = MultiConfig {
        run: cfg,
        server: server.clone(),
        server_start: cold_start(&args.server_start).context("--server-start")?,
        names: model_names.clone(),
        memory_mib,
        max_model_replicas,
        consolidate_after: super::parse_seconds(&args.consolidate_after)
            .context("--consolidate-after")?,
    };
    if !policy.schedules.is_empty() {
        bail!("schedules: multi-model runs do not simulate schedules yet; run the policy on one model's trace without --multi-model");
    }
    let modes = standard_modes(&policy, sync);
    notes.push(format!(
        "servers: {} MiB each, {:.0}% headroom, at most {} servers, start {}; model memory {}; model load (cold start) {}",
        server.capacity_mib,
        server.headroom * 100.0,
        server.max_replicas,
        args.server_start,
        args.model_memory,
        args.cold_start
    ));
    notes.push(format!(
        "consolidation waits until the fleet has run above the lower bound for {}",
        args.consolidate_after
    ));
    notes.push(format!(
        "per-model replicas: {} slots, queue {}, timeout {}s, service {}",
        multi.run.cluster.slots,
        multi.run.cluster.queue_per_replica,
        multi.run.cluster.timeout,
        multi.run.service
    ));
    eprintln!(
        "simulating {name} as {} models: {:.0} s, about {:.0} requests, {} modes",
        model_names.len(),
        workload.duration(),
        workload.expected_requests(),
        modes.len()
    );
    let names: Vec<String> = modes.iter().map(|m| m.name.clone()).collect();
    let (_multi, bars) = super::progress_bars(&names);
    let started = std::time::Instant::now();
    let comparison = compare_modes(&workload, &multi, &modes, &|i, f| {
        if let Some(b) = bars.get(i) {
            b.set_position((f * 1000.0) as u64);
        }
    });
    for b in &bars {
        b.finish();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let info = RunInfo {
        workload: name,
        command,
        slo: multi.run.slo,
        notes,
    };
    println!("{}", multi_report::table(&comparison));
    let files = multi_report::write(&args.report, &comparison, &info)
        .with_context(|| format!("cannot write the report to {}", args.report.display()))?;
    super::print_done(
        comparison.results.len(),
        "modes",
        elapsed,
        &args.report,
        &files,
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_mib("80GiB").ok(), Some(81_920));
        assert_eq!(parse_mib("512MiB").ok(), Some(512));
        assert_eq!(parse_mib("2Gi").ok(), Some(2048));
        assert_eq!(parse_mib("100").ok(), Some(100));
        assert!(parse_mib("80GB").is_err());
        assert!(parse_mib("lots").is_err());
        assert!(parse_mib("0").is_err());
    }
}
