//! `ebb tune`: recommend policies from the user's own traffic. Fits on the first half of the
//! trace, checks on the second, prints the recommended Ebb SLO policy and a plain HPA policy,
//! the cost/attainment frontier of each, and writes the frontier as a plot.

use crate::simulate::{prepare, progress_bars, Prepared, SimulateArgs};
use anyhow::{bail, Context};
use clap::Args;
use ebb_sim::compare::initial_replicas;
use ebb_sim::tune::{
    choose, evaluate, frontier_svg, hpa_candidates, slo_candidates, slo_frontier_candidates,
    Family, Point, Promise, PromiseBasis, Standing, Stretches,
};
use ebb_sim::{RunConfig, Workload};
use std::process::ExitCode;

mod document;
mod llm;

#[derive(Args, Debug)]
pub(crate) struct TuneArgs {
    /// The trace, the cluster and the SLO, as `ebb simulate` takes them (`--policy` and
    /// `--baselines` are not used: tune searches the policies itself).
    #[command(flatten)]
    sim: SimulateArgs,
    /// Instead of recommending: sweep every family's own knob (Ebb's SLO policy, Ebb's rate
    /// policy, HPA, KPA) over the whole trace and compare the frontiers with KPA's defaults.
    #[arg(long)]
    frontier: bool,
}

fn halves(workload: &Workload) -> (Workload, Workload, f64) {
    let half = workload.duration() / 2.0;
    (
        workload.clone().window(0.0, Some(half)),
        workload.clone().window(half, Some(half)),
        half,
    )
}

fn frontier_table(points: &[Point], family: Family) -> String {
    let mut out = format!(
        "| {} setting | SLO attainment (first half) | replica-s (first half) |\n|---|---:|---:|\n",
        family.name()
    );
    for p in points.iter().filter(|p| p.candidate.family == family) {
        out.push_str(&format!(
            "| {} | {:.3}% | {:.0} |\n",
            p.candidate.knob,
            p.attainment * 100.0,
            p.replica_seconds
        ));
    }
    out
}

/// maxReplicas as `ebb simulate` gives them: `--max-replicas` for everyone when given; else
/// 1000 for Ebb's policies and four times the expected peak's need for the baselines.
fn max_replicas(args: &SimulateArgs, workload: &Workload, cfg: &ebb_sim::RunConfig) -> (u32, u32) {
    match args.max_replicas {
        Some(m) => (m, m),
        None => (1000, ebb_sim::compare::default_max_replicas(workload, cfg)),
    }
}

/// `--frontier`: every family's knob over the whole trace, against KPA's defaults.
fn frontiers(
    args: &SimulateArgs,
    workload: &Workload,
    cfg: &ebb_sim::RunConfig,
    attainment: f64,
    name: &str,
) -> anyhow::Result<ExitCode> {
    let (ebb_max, baseline_max) = max_replicas(args, workload, cfg);
    let mut candidates = slo_frontier_candidates(cfg, attainment, ebb_max);
    candidates.extend(hpa_candidates(cfg, baseline_max));
    candidates.extend(ebb_sim::tune::target_candidates(cfg, baseline_max));
    let (_multi, bars) = progress_bars(&["frontiers".to_string()]);
    let points = evaluate(
        workload,
        cfg,
        &candidates,
        initial_replicas(workload, cfg),
        &|f| {
            if let Some(b) = bars.first() {
                b.set_position((f * 1000.0) as u64);
            }
        },
    );
    for b in &bars {
        b.finish_and_clear();
    }
    let reference = points
        .iter()
        .find(|p| p.candidate.family == Family::Kpa && p.candidate.knob.ends_with(" 70%"))
        .context("KPA's default point is missing")?;
    println!(
        "KPA's defaults (target utilization 70%): {:.3}% at {:.0} replica-s\n",
        reference.attainment * 100.0,
        reference.replica_seconds
    );
    println!("| family | replica-s at KPA's default attainment | attainment at KPA's default replica-s |");
    println!("|---|---:|---:|");
    for family in [Family::EbbSlo, Family::EbbRps, Family::Hpa, Family::Kpa] {
        let reading = ebb_sim::tune::against(&points, family, reference);
        let bound = reading
            .bound_note()
            .map_or(String::new(), |note| format!("; {note}"));
        println!(
            "| {} | {} | {} |",
            family.name(),
            reading.cost.map_or("not reached".into(), |c| format!(
                "{c:.0} ({:.2}x{bound})",
                c / reference.replica_seconds
            )),
            reading
                .attainment
                .map_or("costs more at every setting".into(), |a| format!(
                    "{:.3}%",
                    a * 100.0
                )),
        );
    }
    println!();
    for family in [Family::EbbSlo, Family::EbbRps, Family::Hpa, Family::Kpa] {
        println!(
            "{}",
            frontier_table(&points, family).replace(" (first half)", "")
        );
    }
    write_frontier(
        args,
        &points,
        attainment,
        &format!("Frontiers: {name}"),
        &[],
    )?;
    Ok(ExitCode::SUCCESS)
}

/// What a setting that missed the target promises, and why: its worst quarter less the chance
/// in that quarter's count, or, lower, what the quarters' spread predicts for a half.
fn promise_text(promise: &Promise) -> String {
    let why = match promise.basis {
        PromiseBasis::Spread => format!(
            "the 97.5% prediction bound for a half from its quarters' spread (two standard \
             errors of the worst quarter's count below it would be {:.3}%)",
            promise.worst_promise * 100.0
        ),
        PromiseBasis::WorstStretch => "two standard errors of that count below".to_string(),
    };
    format!(
        ", and held at least {:.3}% in each quarter of it ({} requests in the worst): it \
         promises {:.3}%, {why}",
        promise.worst.share * 100.0,
        promise.worst.requests,
        promise.share * 100.0
    )
}

/// For each family, the cheapest setting that met `attainment` on the first half (`points`)
/// by more than chance ([`Point::meets_beyond_chance`]) with quarters steady enough to promise
/// it ([`Point::steady_at`]), printed as the policy to paste, with its result on the second
/// half (`check` replays it there). Where none was that steady, the cheapest that met it,
/// promising its quarters' prediction bound for a half. Where none met it, the closest one,
/// promising the lower of what it held in the worst quarter of the first half less the chance
/// in that quarter's count, and that prediction bound ([`Point::stretches`],
/// [`ebb_sim::tune::Stretches::promise`]). Returns whether every choice kept its promise on
/// the second half (the SLO, or that floor). Where one did not, `ceiling` (the second half's
/// attainment under peak provisioning, where it can be had) says whether any setting could
/// have. Where Ebb's settings ran with no bound (`ebb_unbounded`: no `--max-replicas`), its
/// policy is printed with twice the most replicas it asked for in either half as `maxReplicas`.
/// Returns the settings it printed too, for the plot to mark.
fn recommend(
    points: &[Point],
    families: &[Family],
    attainment: f64,
    check: &(dyn Fn(&ebb_sim::tune::Candidate) -> Option<Point> + Sync),
    peak: &dyn Fn() -> Option<f64>,
    ebb_unbounded: bool,
) -> anyhow::Result<(bool, Vec<Point>)> {
    // Run once, and only where a promise was broken.
    let peak_once = std::cell::OnceCell::new();
    let ceiling = || *peak_once.get_or_init(peak);
    let mut met_all = true;
    let mut recommended = Vec::new();
    for &family in families {
        let Some((chosen, standing)) = choose(points, family, attainment) else {
            continue;
        };
        let Some(checked) = check(&chosen.candidate) else {
            continue;
        };
        recommended.push(chosen.clone());
        let title = match family {
            Family::Hpa => "Recommended HPA policy (metric rps: the pods' request rate, e.g. through a Prometheus adapter)",
            _ => "Recommended Ebb policy",
        };
        println!("## {title}: {}", chosen.candidate.knob);
        let promise = say_standing(points, family, chosen, standing, attainment);
        let mut policy = chosen.candidate.policy.clone();
        let most = chosen.peak_replicas.max(checked.peak_replicas);
        let bounded_here = ebb_unbounded && family == Family::EbbSlo;
        if bounded_here {
            policy.max_replicas = most.saturating_mul(2).max(policy.min_replicas).max(1);
        }
        println!("```yaml");
        print!("{}", document::policy_yaml(family, &policy)?);
        println!("```");
        if bounded_here {
            println!(
                "maxReplicas is twice the most replicas it asked for in either half ({most}): the replays had no bound, so this one changes nothing they did. Lower it to what your budget allows (or pass --max-replicas to tune within it)."
            );
        }
        let kept = promise.is_none_or(|p| checked.attainment >= p);
        met_all &= kept;
        println!(
            "first half: {:.3}% at {:.0} replica-s; second half (not used to choose): {:.3}% at {:.0} replica-s: {}\n",
            chosen.attainment * 100.0,
            chosen.replica_seconds,
            checked.attainment * 100.0,
            checked.replica_seconds,
            match (checked.attainment >= attainment, standing, promise) {
                (true, _, _) => "meets the SLO".to_string(),
                (false, Standing::Meets, _) => "MISSES the SLO on unseen traffic".to_string(),
                (false, _, None) => "below the SLO, as on the first half".to_string(),
                (false, Standing::MetUnsteadily(_), Some(_)) if kept => {
                    "below the SLO, and keeps its promise".to_string()
                }
                (false, _, Some(_)) if kept => {
                    "below the SLO, as on the first half, and keeps its promise".to_string()
                }
                (false, _, Some(p)) => {
                    format!("BELOW its promise ({:.3}%) on unseen traffic", p * 100.0)
                }
            }
        );
        if !kept {
            // Kept is only false where there was a promise.
            if let (Some(p), Some(c)) = (promise, ceiling()) {
                println!("{}\n", ceiling_text(p, c));
            }
        }
    }
    Ok((met_all, recommended))
}

/// Whether any setting could have kept a promise of `promise` on the second half, where peak
/// provisioning (no request waits for a slot) reaches `ceiling`.
fn ceiling_text(promise: f64, ceiling: f64) -> String {
    let verdict = if ceiling < promise {
        "no setting could have kept it: the second half's service times alone miss more than the first half's did, which a promise read from the first half cannot see"
    } else {
        "a setting could have: the shortfall is the scaling's"
    };
    format!(
        "Peak provisioning (a fixed fleet for the busiest second: no request waits for a slot) reaches {:.3}% on the second half: {verdict}.",
        ceiling * 100.0
    )
}

/// Says how `chosen` stood on the first half and returns what it promises: the SLO where it
/// met it with steady quarters, else the share its quarters allow.
fn say_standing(
    points: &[Point],
    family: Family,
    chosen: &Point,
    standing: Standing,
    attainment: f64,
) -> Option<f64> {
    let slo = ebb_core::time::fmt_percent(attainment);
    match standing {
        Standing::Meets => {
            println!(
                "It met {slo} on the first half by more than chance: {:.3}% of {} requests, less \
                 two standard errors of that count{}.",
                chosen.attainment * 100.0,
                chosen.requests,
                chosen.prediction_bound().map_or(String::new(), |b| format!(
                    ", and its quarters are steady enough for a half like them to meet it too \
                     (their 97.5% prediction bound for a half: {:.3}%)",
                    b * 100.0
                ))
            );
            Some(attainment)
        }
        Standing::MetUnsteadily(bound) => {
            println!(
                "It met {slo} on the first half by more than chance ({:.3}% of {} requests), \
                 but its quarters vary ({}): their 97.5% prediction bound for a half is \
                 {:.3}%, which it promises. No {} setting met {slo} with quarters steady \
                 enough to promise it.",
                chosen.attainment * 100.0,
                chosen.requests,
                quarter_shares(chosen),
                bound * 100.0,
                family.name()
            );
            Some(bound)
        }
        Standing::Closest => {
            let promise = chosen.stretches.as_ref().and_then(Stretches::promise);
            println!(
                "No {} setting met {slo} on the first half by more than chance; this one came \
                 closest ({:.3}%){}.",
                family.name(),
                chosen.attainment * 100.0,
                promise.as_ref().map_or(String::new(), promise_text)
            );
            if let Some(cheaper) = ebb_sim::tune::cheapest_as_close(points, family, chosen) {
                println!(
                    "As close within chance (two standard errors of its count), for {:.2}x the \
                     replica-seconds: {} ({:.3}%).",
                    cheaper.replica_seconds / chosen.replica_seconds,
                    cheaper.candidate.knob,
                    cheaper.attainment * 100.0
                );
            }
            promise.map(|p| p.share)
        }
    }
}

/// The quarters' shares, in order ("99.990%, 99.950%, ...").
fn quarter_shares(point: &Point) -> String {
    point.stretches.as_ref().map_or(String::new(), |s| {
        s.0.iter()
            .map(|q| format!("{:.3}%", q.share * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Writes the frontier plot into the report folder and says where.
fn write_frontier(
    args: &SimulateArgs,
    points: &[Point],
    attainment: f64,
    title: &str,
    recommended: &[Point],
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.report)
        .with_context(|| format!("cannot create {}", args.report.display()))?;
    let path = args.report.join("frontier.svg");
    std::fs::write(&path, frontier_svg(points, attainment, title, recommended))
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("frontier plot: {}", path.display());
    Ok(())
}

pub(crate) fn run(args: TuneArgs) -> anyhow::Result<ExitCode> {
    let frontier = args.frontier;
    let args = args.sim;
    if args.policy.is_some() {
        bail!("--policy: ebb tune searches the policy itself; leave it out");
    }
    if args.multi_model {
        bail!("--multi-model: ebb tune recommends single-model policies");
    }
    if args.pools {
        bail!("--pools: ebb tune recommends policies for one pool; compare pools policies with `ebb simulate --llm --pools --policy FILE`");
    }
    if args.start_at_zero {
        bail!("--start-at-zero: ebb tune replays each half from the replicas its first minute needs; compare starts from zero with `ebb simulate --start-at-zero`");
    }
    let prepared = prepare(&args)?;
    if args.llm {
        if frontier {
            bail!("--frontier with --llm: run `ebb simulate --llm --llm-frontier` for the token-level frontiers");
        }
        return llm::run(&args, prepared);
    }
    let Prepared {
        workload,
        cfg,
        attainment,
        name,
        ..
    } = prepared;
    if frontier {
        return frontiers(&args, &workload, &cfg, attainment, &name);
    }
    let (first, second, half) = halves(&workload);
    if first.expected_requests() < 1.0 || second.expected_requests() < 1.0 {
        bail!("the trace is too short to fit on one half and check on the other");
    }
    let (ebb_max, baseline_max) = max_replicas(&args, &workload, &cfg);
    let initial = initial_replicas(&first, &cfg);
    let mut candidates = slo_candidates(&cfg, attainment, ebb_max);
    candidates.extend(hpa_candidates(&cfg, baseline_max));
    println!(
        "ebb tune: {name}; SLO {} at {}; {} settings fitted on the first half (0-{half:.0} s), the choices checked on the second",
        ebb_core::time::fmt_seconds(cfg.slo),
        ebb_core::time::fmt_percent(attainment),
        candidates.len()
    );
    let (_multi, bars) = progress_bars(&["fitting".to_string()]);
    let points = evaluate(&first, &cfg, &candidates, initial, &|f| {
        if let Some(b) = bars.first() {
            b.set_position((f * 1000.0) as u64);
        }
    });
    for b in &bars {
        b.finish_and_clear();
    }
    println!();
    for family in [Family::EbbSlo, Family::Hpa] {
        println!("{}", frontier_table(&points, family));
    }

    // The second half draws its own arrivals and service times, not a replay of the first's.
    let second_cfg = RunConfig {
        seed: ebb_sim::workload::window_seed(cfg.seed, half),
        ..cfg.clone()
    };
    let second_initial = initial_replicas(&second, &second_cfg);
    let check = |c: &ebb_sim::tune::Candidate| {
        evaluate(
            &second,
            &second_cfg,
            std::slice::from_ref(c),
            second_initial,
            &|_| {},
        )
        .into_iter()
        .next()
    };
    let peak = || Some(ebb_sim::compare::peak_attainment(&second, &second_cfg));
    let (met_all, recommended) = recommend(
        &points,
        &[Family::EbbSlo, Family::Hpa],
        attainment,
        &check,
        &peak,
        args.max_replicas.is_none(),
    )?;
    write_frontier(
        &args,
        &points,
        attainment,
        &format!("Cost against SLO misses, first half of {name}"),
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
    use super::ceiling_text;

    /// A broken promise is put down to the service times only where even peak provisioning
    /// falls below it on the second half.
    #[test]
    fn a_broken_promise_is_blamed_on_the_service_only_below_peaks_ceiling() {
        let service = ceiling_text(0.99424, 0.99366);
        assert!(service.contains("99.366%") && service.contains("no setting could have"));
        let scaling = ceiling_text(0.999, 0.99935);
        assert!(
            scaling.contains("the shortfall is the scaling's"),
            "{scaling}"
        );
    }
}
