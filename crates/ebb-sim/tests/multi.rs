//! Multi-model runs: the fleet never exceeds a server's memory, every request is accounted
//! for, runs are deterministic, packing beats one server per model, and consolidation frees
//! servers that scale-downs leave half empty.

use ebb_core::placement::ServerKind;
use ebb_core::Policy;
use ebb_sim::multi::{
    compare_modes, standard_modes, MultiComparison, MultiConfig, MultiResult, Placement,
};
use ebb_sim::workload::{Request, Workload};
use ebb_sim::{ClusterConfig, ColdStart, RunConfig, ServiceTime};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

const MODELS: usize = 12;
const HOURS: f64 = 3.0;

/// Each model's rate follows its own phase-shifted curve (one period per hour), never zero:
/// scale-downs leave servers partly empty.
fn workload() -> Workload {
    let mut rng = Pcg64Mcg::seed_from_u64(11);
    let duration = HOURS * 3600.0;
    let mut out = Vec::new();
    for m in 0..MODELS {
        let base = 1.0 + m as f64 * 0.5;
        let phase = m as f64 / MODELS as f64 * std::f64::consts::TAU;
        let peak = base * 2.0;
        // Thinning of a Poisson process at the peak rate.
        let mut t = 0.0;
        loop {
            t += -(1.0 - rng.gen::<f64>()).ln() / peak;
            if t >= duration {
                break;
            }
            let rate = base * (1.0 + 0.95 * (t / 3600.0 * std::f64::consts::TAU + phase).sin());
            if rng.gen::<f64>() < rate / peak {
                out.push(Request {
                    at: t,
                    work: f32::NAN,
                    prompt: f32::NAN,
                    model: m as u32,
                });
            }
        }
    }
    out.sort_by(|a, b| a.at.total_cmp(&b.at));
    Workload::Requests(out)
}

fn config() -> MultiConfig {
    MultiConfig {
        run: RunConfig {
            cluster: ClusterConfig {
                slots: 2,
                queue_per_replica: 32,
                activator_queue: 1000,
                timeout: 30.0,
                cold_start: ColdStart::Fixed(5.0),
                max_replicas: None,
                start: ebb_sim::Start::Warm,
            },
            service: ServiceTime::Exponential { mean: 0.5 },
            slo: 2.0,
            bucket: 60.0,
            seed: 3,
            gpus_per_replica: 1.0,
        },
        server: ServerKind {
            kind: "server".into(),
            capacity_mib: 40_960,
            max_models: None,
            min_replicas: 0,
            max_replicas: 200,
            headroom: 0.1,
        },
        server_start: ColdStart::Fixed(20.0),
        names: (0..MODELS).map(|m| format!("model-{m}")).collect(),
        memory_mib: (0..MODELS)
            .map(|m| 4_096 + (m as u64 % 4) * 3_072)
            .collect(),
        max_model_replicas: 20,
        consolidate_after: 60.0,
    }
}

fn policy() -> Policy {
    let yaml = r#"
minReplicas: 1
maxReplicas: 20
concurrency: {metric: concurrency, targetPerReplica: 1.4, stableWindowSeconds: 60, panicWindowSeconds: 6}
behavior:
  scaleDown: {stabilizationWindowSeconds: 60, policies: [{type: Percent, value: 50, periodSeconds: 10}]}
"#;
    Policy::from_yaml(yaml).expect("test policy is valid")
}

fn run() -> MultiComparison {
    compare_modes(
        &workload(),
        &config(),
        &standard_modes(&policy(), 1.0),
        &|_, _| {},
    )
}

fn mode<'a>(c: &'a MultiComparison, name: &str) -> &'a MultiResult {
    c.results
        .iter()
        .find(|r| r.mode == name)
        .unwrap_or_else(|| panic!("mode {name} missing"))
}

fn shared() -> &'static MultiComparison {
    static RUN: std::sync::OnceLock<MultiComparison> = std::sync::OnceLock::new();
    RUN.get_or_init(run)
}

#[test]
fn multi_model_comparison_holds_its_invariants() {
    let c = shared();
    println!("{}", ebb_sim::multi_report::table(c));
    assert_eq!(c.results.len(), 4);
    assert_eq!(c.models, MODELS);
    for r in &c.results {
        assert_eq!(
            r.over_capacity_seconds, 0,
            "{}: a server over capacity",
            r.mode
        );
        let done = r.all.served + r.all.timeouts + r.all.drops;
        assert_eq!(done, r.all.requests, "{}: requests lost", r.mode);
        let per_model: u64 = r.models.iter().map(|m| m.result.requests).sum();
        assert_eq!(per_model, r.all.requests, "{}", r.mode);
        assert!(
            r.packing_mean >= 0.999,
            "{}: below the lower bound: {}",
            r.mode,
            r.packing_mean
        );
        assert!(
            r.packing_overall >= 0.999,
            "{}: {}",
            r.mode,
            r.packing_overall
        );
    }
    let ebb = mode(c, "ebb");
    let pack = mode(c, "ebb-pack-only");
    let one = mode(c, "ebb-1to1");
    assert_eq!(pack.moves_per_hour, 0.0, "pack-only never moves a copy");
    assert!(
        ebb.moves_per_hour > 0.0,
        "the coordinated mode consolidated"
    );
    assert!(
        ebb.server_seconds < pack.server_seconds,
        "consolidation frees servers: {} vs {}",
        ebb.server_seconds,
        pack.server_seconds
    );
    assert!(pack.server_seconds < one.server_seconds);
    assert!(ebb.packing_mean < pack.packing_mean);
    assert_eq!(one.placement, Placement::OnePerModel);
    // The same policy serves about as well however copies are placed.
    for r in [ebb, pack, one] {
        assert!(
            r.all.slo_attainment > 0.95,
            "{}: {}",
            r.mode,
            r.all.slo_attainment
        );
    }
    // The planner's reasons say why servers were added and drained.
    assert!(ebb.plan_reasons.iter().any(|(_, r)| r.contains("added")));
    assert!(ebb.plan_reasons.iter().any(|(_, r)| r.contains("drained")));
}

#[test]
fn multi_model_runs_are_deterministic() {
    let a = ebb_sim::multi_report::table(shared());
    let b = ebb_sim::multi_report::table(&run());
    assert_eq!(a, b);
}
