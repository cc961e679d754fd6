//! `ebb tune --llm`: recommend an engine policy for an LLM server (and a plain HPA policy on
//! request rate) from a token trace. Fits on the first half, token by token, and checks the
//! choices on the second: the same rule as `ebb tune`, with attainment meaning the share of
//! requests within both the TTFT and the TPOT SLO.

use super::{frontier_table, recommend, write_frontier};
use crate::simulate::llm::llm_config;
use crate::simulate::{progress_bars, Prepared, SimulateArgs};
use anyhow::bail;
use ebb_sim::llm::compare::sizing;
use ebb_sim::llm::frontier::{candidates, evaluate};
use ebb_sim::llm::{requests, LlmConfig, LlmRequest};
use ebb_sim::tune::Family;
use std::process::ExitCode;

/// The families it recommends from.
const FAMILIES: [Family; 2] = [Family::EbbEngine, Family::Hpa];

/// The requests before `half` and those after it, moved to start at zero.
fn halves(requests: &[LlmRequest], half: f64) -> (Vec<LlmRequest>, Vec<LlmRequest>) {
    let first = requests.iter().filter(|r| r.at < half).copied().collect();
    let second = requests
        .iter()
        .filter(|r| r.at >= half)
        .map(|r| LlmRequest {
            at: r.at - half,
            ..*r
        })
        .collect();
    (first, second)
}

pub(super) fn run(args: &SimulateArgs, prepared: Prepared) -> anyhow::Result<ExitCode> {
    let Prepared {
        workload,
        cfg: run_cfg,
        attainment,
        name,
        ..
    } = prepared;
    let all = requests(&workload).map_err(|e| anyhow::anyhow!("--llm: {e}"))?;
    let cfg = llm_config(args, run_cfg.bucket, run_cfg.seed)?;
    let half = workload.duration() / 2.0;
    let (first, second) = halves(&all, half);
    if first.is_empty() || second.is_empty() {
        bail!("the trace is too short to fit on one half and check on the other");
    }
    let fit = sizing(&first, &cfg, 1.0);
    let grid: Vec<_> = candidates(&fit)
        .into_iter()
        .filter(|c| FAMILIES.contains(&c.family))
        .collect();
    println!(
        "ebb tune --llm: {name}; TTFT {} and TPOT {} for {} of requests; {} settings fitted on the first half (0-{half:.0} s, one replica completes {:.2} req/s of its mix saturated), the choices checked on the second",
        ebb_core::time::fmt_seconds(cfg.ttft_slo),
        ebb_core::time::fmt_seconds(cfg.itl_slo),
        ebb_core::time::fmt_percent(attainment),
        grid.len(),
        fit.saturation_rps,
    );
    let (_multi, bars) = progress_bars(&["fitting".to_string()]);
    let points = evaluate(&first, &cfg, grid, fit.initial, &|f| {
        if let Some(b) = bars.first() {
            b.set_position((f * 1000.0) as u64);
        }
    });
    for b in &bars {
        b.finish_and_clear();
    }
    println!();
    for family in FAMILIES {
        println!("{}", frontier_table(&points, family));
    }
    let second_cfg = LlmConfig {
        seed: ebb_sim::workload::window_seed(cfg.seed, half),
        ..cfg.clone()
    };
    let second_initial = sizing(&second, &second_cfg, 1.0).initial;
    let check = |c: &ebb_sim::tune::Candidate| {
        evaluate(
            &second,
            &second_cfg,
            vec![c.clone()],
            second_initial,
            &|_| {},
        )
        .into_iter()
        .next()
    };
    // Token workloads have no peak-provisioning replay to read a ceiling from.
    let (met_all, recommended) =
        recommend(&points, &FAMILIES, attainment, &check, &|| None, false)?;
    write_frontier(
        args,
        &points,
        attainment,
        &format!("Cost against SLO misses, token by token, first half of {name}"),
        &recommended,
    )?;
    Ok(if met_all {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_half_starts_at_zero_and_nothing_is_lost() {
        let r = |at| LlmRequest {
            at,
            prompt: 10,
            output: 2,
        };
        let (a, b) = halves(&[r(0.0), r(4.9), r(5.0), r(9.0)], 5.0);
        assert_eq!(a.len(), 2);
        assert_eq!(b.iter().map(|q| q.at).collect::<Vec<_>>(), vec![0.0, 4.0]);
    }
}
