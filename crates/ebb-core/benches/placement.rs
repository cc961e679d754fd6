//! The placement planner: 1,000 models on up to 200 servers, from scratch and as a scale-down
//! re-plan (consolidation), with packing efficiency (servers used over the lower bound) on 20
//! random workloads.
//!
//! Run: `cargo bench -p ebb-core --bench placement`

use ebb_core::placement::{lower_bound, plan, ModelDemand, ServerKind, ServerState};
use std::time::Instant;

/// A small deterministic generator (xorshift), so the workloads are the same every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn workload(seed: u64) -> Vec<ModelDemand> {
    let mut r = Rng(seed * 0x9e37_79b9_7f4a_7c15 + 1);
    (0..1000)
        .map(|i| ModelDemand {
            name: format!("model-{i}"),
            replicas: r.range(1, 4) as u32,
            // 256 MiB to 12 GiB per replica, skewed small as model zoos are.
            memory_mib: 256 + r.range(0, 12_000) * r.range(0, 100) / 100,
            server_kind: None,
        })
        .collect()
}

/// Large models (2 to 40 GiB per replica): bin packing gets harder.
fn large_workload(seed: u64) -> Vec<ModelDemand> {
    let mut r = Rng(seed * 0x2545_f491_4f6c_dd1d + 7);
    (0..300)
        .map(|i| ModelDemand {
            name: format!("large-{i}"),
            replicas: r.range(1, 4) as u32,
            memory_mib: r.range(2 * 1024, 40 * 1024),
            server_kind: None,
        })
        .collect()
}

/// The fleet as a plan left it.
fn state_of(target: &std::collections::BTreeMap<String, Vec<String>>) -> Vec<ServerState> {
    target
        .iter()
        .map(|(id, m)| ServerState {
            id: id.clone(),
            kind: "mlserver".into(),
            models: m.clone(),
            ..Default::default()
        })
        .collect()
}

fn main() {
    let kind = ServerKind {
        kind: "mlserver".into(),
        capacity_mib: 80 * 1024,
        max_models: None,
        min_replicas: 1,
        max_replicas: 200,
        headroom: 0.1,
    };
    let kinds = [kind.clone()];
    let mut ratios = Vec::new();
    let mut fresh_ms = Vec::new();
    let mut replan_ms = Vec::new();
    let mut held = Vec::new();
    let mut rounds = Vec::new();
    for seed in 1..=20 {
        let models = workload(seed);
        let t = Instant::now();
        let p = plan(&models, &kinds, &[]);
        fresh_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(
            p.unplaced.is_empty(),
            "seed {seed}: {:?}",
            &p.unplaced[..p.unplaced.len().min(3)]
        );
        let lb = lower_bound(&models, &kind, "mlserver");
        ratios.push(f64::from(p.server_replicas["mlserver"]) / f64::from(lb));
        // Scale-down: every third model drops to one replica; re-plan from the placement.
        let current = state_of(&p.target);
        let scaled: Vec<ModelDemand> = models
            .iter()
            .enumerate()
            .map(|(i, m)| ModelDemand {
                replicas: if i % 3 == 0 { 1 } else { m.replicas },
                ..m.clone()
            })
            .collect();
        let t = Instant::now();
        let q = plan(&scaled, &kinds, &current);
        replan_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let lb2 = lower_bound(&scaled, &kind, "mlserver");
        held.push(f64::from(q.server_replicas["mlserver"]) / f64::from(lb2));
        // The drained copies go; re-plan until nothing moves (the consolidation settles).
        let mut settled = q;
        for round in 1..=10 {
            let next = plan(&scaled, &kinds, &state_of(&settled.target));
            if next.moves.is_empty() {
                rounds.push(round as f64);
                break;
            }
            settled = next;
        }
        ratios.push(f64::from(settled.server_replicas["mlserver"]) / f64::from(lb2));
    }
    let mut large = Vec::new();
    let mut large_ms = Vec::new();
    for seed in 1..=20 {
        let models = large_workload(seed);
        let big = ServerKind {
            max_replicas: 1000,
            ..kind.clone()
        };
        let t = Instant::now();
        let p = plan(&models, std::slice::from_ref(&big), &[]);
        large_ms.push(t.elapsed().as_secs_f64() * 1e3);
        large.push(
            f64::from(p.server_replicas["mlserver"])
                / f64::from(lower_bound(&models, &big, "mlserver")),
        );
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[0], v[v.len() / 2], v[v.len() * 9 / 10], v[v.len() - 1])
    };
    let (a, b, c, d) = stats(&mut fresh_ms);
    println!(
        "plan 1,000 models (~2,000 replicas) onto 80 GiB servers (10% headroom), 20 workloads:"
    );
    println!("  from scratch:        min {a:.1} ms, median {b:.1} ms, p90 {c:.1} ms, max {d:.1} ms (goal < 100 ms)");
    let (a, b, c, d) = stats(&mut replan_ms);
    println!(
        "  scale-down re-plan:  min {a:.1} ms, median {b:.1} ms, p90 {c:.1} ms, max {d:.1} ms"
    );
    let (a, b, c, d) = stats(&mut ratios);
    println!(
        "  packing, servers / lower bound (20 fresh plans, 20 settled scale-downs): min {a:.3}, median {b:.3}, p90 {c:.3}, max {d:.3} (goal within 5%: {})",
        if d <= 1.05 { "met" } else { "not met" }
    );
    let (a, b, _, d) = stats(&mut held);
    let (e, f, _, h) = stats(&mut rounds);
    println!(
        "  right after the scale-down plan (drained copies still hold memory): min {a:.3}, median {b:.3}, max {d:.3}; settled after {e:.0} / {f:.0} / {h:.0} re-plans (min / median / max)"
    );
    let (a, b, c, d) = stats(&mut large_ms);
    let (e, f, g, h) = stats(&mut large);
    println!("300 large models (2-40 GiB per replica), 20 workloads: plan min {a:.1} ms, median {b:.1} ms, max {d:.1} ms (p90 {c:.1})");
    println!(
        "  packing, servers / lower bound: min {e:.3}, median {f:.3}, p90 {g:.3}, max {h:.3} (goal within 5%: {})",
        if h <= 1.05 { "met" } else { "not met" }
    );
}
