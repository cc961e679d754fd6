//! The placement planner's invariants, on random workloads and on scale-down re-plans.

use ebb_core::placement::{
    lower_bound, plan, plan_with, ModelDemand, Move, Plan, PlanOptions, ServerKind, ServerState,
};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn kind(capacity: u64, headroom: f64, max: u32) -> ServerKind {
    ServerKind {
        kind: "mlserver".into(),
        capacity_mib: capacity,
        max_models: None,
        min_replicas: 1,
        max_replicas: max,
        headroom,
    }
}

fn model(name: &str, replicas: u32, memory: u64) -> ModelDemand {
    ModelDemand {
        name: name.into(),
        replicas,
        memory_mib: memory,
        server_kind: None,
    }
}

fn state(target: &BTreeMap<String, Vec<String>>) -> Vec<ServerState> {
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

/// The state right after `p` was applied: its target, with the copies it unloaded from
/// servers that remain still leaving.
fn with_leaving(p: &ebb_core::placement::Plan) -> Vec<ServerState> {
    let mut out = state(&p.target);
    for s in &mut out {
        for mv in &p.moves {
            if let Move::Unload { model, server, .. } = mv {
                if *server == s.id {
                    s.leaving.push(model.clone());
                }
            }
        }
    }
    out
}

fn models_strategy() -> impl Strategy<Value = Vec<ModelDemand>> {
    prop::collection::vec((1u32..5, 512u64..16_384), 1..60).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (r, m))| model(&format!("m{i}"), r, m))
            .collect()
    })
}

/// Replays `moves` from `current`: every load before the unloads it makes way for, so each
/// model's replica count at every step is at least min(before, wanted).
fn check_moves(
    current: &[ServerState],
    moves: &[Move],
    models: &[ModelDemand],
) -> Result<(), String> {
    let mut count: BTreeMap<String, u32> = BTreeMap::new();
    for s in current {
        for m in &s.models {
            *count.entry(m.clone()).or_default() += 1;
        }
    }
    let floor: BTreeMap<String, u32> = models
        .iter()
        .map(|m| {
            (
                m.name.clone(),
                m.replicas.min(count.get(&m.name).copied().unwrap_or(0)),
            )
        })
        .collect();
    for mv in moves {
        match mv {
            Move::Load { model, .. } => *count.entry(model.clone()).or_default() += 1,
            Move::Unload { model, .. } => {
                let c = count.entry(model.clone()).or_default();
                *c -= 1;
                if let Some(f) = floor.get(model) {
                    if *c < *f {
                        return Err(format!(
                            "{model} dropped to {c} replicas, below {f}, at {mv}"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A fresh plan for `models`, then the plan from it once each model's replicas become
/// `change` (the first plan, the second).
fn replan(models: &[ModelDemand], change: &[u32], options: PlanOptions) -> (Plan, Plan) {
    let k = kind(81_920, 0.1, 10_000);
    let first = plan(models, std::slice::from_ref(&k), &[]);
    let current = state(&first.target);
    let wanted: Vec<ModelDemand> = models
        .iter()
        .zip(change)
        .map(|(m, c)| ModelDemand {
            replicas: *c,
            ..m.clone()
        })
        .collect();
    let p = plan_with(&wanted, std::slice::from_ref(&k), &current, options);
    (first, p)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn invariants_hold_from_empty_and_on_scale_down(
        models in models_strategy(),
        shrink in prop::collection::vec(0u32..5, 60),
        headroom in 0.0f64..0.2,
    ) {
        let k = kind(81_920, headroom, 10_000);
        let first = plan(&models, std::slice::from_ref(&k), &[]);
        let scaled: Vec<ModelDemand> = models.iter().zip(&shrink).map(|(m, s)| ModelDemand { replicas: m.replicas.min(*s), ..m.clone() }).collect();
        let current = state(&first.target);
        let second = plan(&scaled, std::slice::from_ref(&k), &current);
        for (p, ms) in [(&first, &models), (&second, &scaled)] {
            prop_assert!(p.unplaced.is_empty(), "{:?}", p.unplaced);
            let mem: BTreeMap<&str, u64> = ms.iter().map(|m| (m.name.as_str(), m.memory_mib)).collect();
            let mut replicas: BTreeMap<&str, u32> = BTreeMap::new();
            for (id, hosted) in &p.target {
                let used: u64 = hosted.iter().map(|m| mem[m.as_str()]).sum();
                prop_assert!(used as f64 <= 81_920.0 * (1.0 - headroom), "{id} over capacity: {used}");
                let mut seen = std::collections::BTreeSet::new();
                for m in hosted {
                    prop_assert!(seen.insert(m), "two replicas of {m} on {id}");
                    *replicas.entry(m.as_str()).or_default() += 1;
                }
            }
            for m in ms.iter() {
                prop_assert_eq!(replicas.get(m.name.as_str()).copied().unwrap_or(0), m.replicas, "model {}", m.name);
            }
            prop_assert!(p.server_replicas["mlserver"] >= lower_bound(ms, &k, "mlserver"));
        }
        prop_assert!(check_moves(&current, &second.moves, &scaled).is_ok(), "{:?}", check_moves(&current, &second.moves, &scaled));
        // Re-planning while the unloaded copies still drain moves nothing.
        let draining = with_leaving(&second);
        let again = plan(&scaled, std::slice::from_ref(&k), &draining);
        prop_assert!(again.moves.is_empty(), "{:?}", again.moves);
        // Once they are gone, consolidation may go further, and settles within a few rounds.
        let mut placed = second.clone();
        let mut settled = false;
        for _ in 0..6 {
            let next = plan(&scaled, std::slice::from_ref(&k), &state(&placed.target));
            if next.moves.is_empty() {
                settled = true;
                break;
            }
            prop_assert!(next.server_replicas["mlserver"] <= placed.server_replicas["mlserver"]);
            placed = next;
        }
        prop_assert!(settled, "no fixed point after 6 re-plans");
    }
}

/// Memory held on each server at the worst step of the moves: the target's copies, copies
/// already leaving, and copies this plan unloads (they drain after the loads ran).
fn held_at_worst(
    current: &[ServerState],
    p: &ebb_core::placement::Plan,
    mem: &BTreeMap<&str, u64>,
) -> BTreeMap<String, u64> {
    let mut held: BTreeMap<String, u64> = BTreeMap::new();
    for (id, hosted) in &p.target {
        *held.entry(id.clone()).or_default() += hosted.iter().map(|m| mem[m.as_str()]).sum::<u64>();
    }
    for s in current {
        *held.entry(s.id.clone()).or_default() +=
            s.leaving.iter().map(|m| mem[m.as_str()]).sum::<u64>();
    }
    for mv in &p.moves {
        if let Move::Unload { model, server, .. } = mv {
            *held.entry(server.clone()).or_default() += mem[model.as_str()];
        }
    }
    held
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Copies on their way out keep their memory and their anti-affinity, and memory that a
    /// plan's own unloads free is not handed to its loads: no server is ever over capacity,
    /// whatever order the driver finishes the moves in.
    #[test]
    fn leaving_copies_and_unloads_hold_memory(
        models in models_strategy(),
        leave in prop::collection::vec(any::<bool>(), 400),
        change in prop::collection::vec(0u32..6, 60),
        headroom in 0.0f64..0.2,
        consolidate in any::<bool>(),
    ) {
        let k = kind(81_920, headroom, 10_000);
        let usable = (81_920.0 * (1.0 - headroom)).floor() as u64;
        let first = plan(&models, std::slice::from_ref(&k), &[]);
        // Some copies are moving out (their replacement not ready yet).
        let mut flags = leave.iter().cycle();
        let current: Vec<ServerState> = first.target.iter().map(|(id, hosted)| {
            let (going, staying): (Vec<String>, Vec<String>) =
                hosted.iter().cloned().partition(|_| *flags.next().unwrap_or(&false));
            ServerState { id: id.clone(), kind: "mlserver".into(), models: staying, leaving: going }
        }).collect();
        let wanted: Vec<ModelDemand> = models.iter().zip(&change)
            .map(|(m, c)| ModelDemand { replicas: *c, ..m.clone() }).collect();
        let p = plan_with(&wanted, std::slice::from_ref(&k), &current, PlanOptions { consolidate });
        let mem: BTreeMap<&str, u64> = wanted.iter().map(|m| (m.name.as_str(), m.memory_mib)).collect();
        for (id, used) in held_at_worst(&current, &p, &mem) {
            prop_assert!(used <= usable, "{id} holds {used} MiB of {usable} at some step");
        }
        for s in &current {
            if let Some(hosted) = p.target.get(&s.id) {
                for m in &s.leaving {
                    prop_assert!(!hosted.contains(m), "{m} placed on {} where a copy is leaving", s.id);
                }
            }
        }
    }

    /// Make-before-break is the planner's: a load that replaces a copy names it, the unload
    /// of that copy names the load back, the pair is of one model, and a model never both
    /// gains a copy and loses one without the two being paired.
    #[test]
    fn moves_are_paired_both_ways(
        models in models_strategy(),
        change in prop::collection::vec(0u32..6, 60),
    ) {
        let (_, p) = replan(&models, &change, PlanOptions { consolidate: true });
        for mv in &p.moves {
            match mv {
                Move::Load { model, server, replaces: Some(old) } => {
                    let back = Move::Unload { model: model.clone(), server: old.clone(), replaced_by: Some(server.clone()) };
                    prop_assert!(p.moves.contains(&back), "{mv} has no paired unload");
                }
                Move::Unload { model, server, replaced_by: Some(new) } => {
                    let back = Move::Load { model: model.clone(), server: new.clone(), replaces: Some(server.clone()) };
                    prop_assert!(p.moves.contains(&back), "{mv} has no paired load");
                }
                _ => {}
            }
        }
        let unpaired = |want_load: bool| -> std::collections::BTreeSet<&str> {
            p.moves.iter().filter_map(|mv| match mv {
                Move::Load { model, replaces: None, .. } if want_load => Some(model.as_str()),
                Move::Unload { model, replaced_by: None, .. } if !want_load => Some(model.as_str()),
                _ => None,
            }).collect()
        };
        let (gained, lost) = (unpaired(true), unpaired(false));
        prop_assert!(gained.is_disjoint(&lost), "unpaired on both sides: {:?}", gained.intersection(&lost).collect::<Vec<_>>());
    }

    /// Without consolidation a plan never relocates: a model is only loaded when it gains
    /// replicas and only unloaded when it loses them, and a server still hosting replicas is
    /// never removed.
    #[test]
    fn without_consolidation_nothing_moves(
        models in models_strategy(),
        change in prop::collection::vec(0u32..6, 60),
    ) {
        let (first, p) = replan(&models, &change, PlanOptions { consolidate: false });
        let mut loads: BTreeMap<&str, u32> = BTreeMap::new();
        let mut unloads: BTreeMap<&str, u32> = BTreeMap::new();
        for mv in &p.moves {
            match mv {
                Move::Load { model, .. } => *loads.entry(model.as_str()).or_default() += 1,
                Move::Unload { model, .. } => *unloads.entry(model.as_str()).or_default() += 1,
                Move::RemoveServer { server } => {
                    let still: Vec<&String> = first.target[server].iter()
                        .filter(|m| !p.moves.iter().any(|mv| matches!(mv, Move::Unload { model, server: s, .. } if model == *m && s == server)))
                        .collect();
                    prop_assert!(still.is_empty(), "{server} removed while hosting {still:?}");
                }
                Move::AddServer { .. } => {}
            }
        }
        for (m, n) in &loads {
            prop_assert!(!unloads.contains_key(m), "{m} loaded {n} and unloaded: a relocation");
        }
    }
}

#[test]
fn a_server_is_added_only_when_nothing_fits() {
    let k = kind(10_000, 0.0, 10);
    let current = vec![ServerState {
        id: "mlserver-0".into(),
        kind: "mlserver".into(),
        models: vec!["a".into()],
        ..Default::default()
    }];
    let p = plan(
        &[model("a", 1, 6_000), model("b", 1, 3_000)],
        std::slice::from_ref(&k),
        &current,
    );
    assert_eq!(
        p.moves,
        vec![Move::Load {
            model: "b".into(),
            server: "mlserver-0".into(),
            replaces: None,
        }]
    );
    let p = plan(
        &[model("a", 1, 6_000), model("b", 1, 5_000)],
        std::slice::from_ref(&k),
        &current,
    );
    assert_eq!(p.server_replicas["mlserver"], 2);
    assert!(p.reasons.iter().any(|r| r.starts_with("server mlserver-1 added: a replica of b (5000 MiB) fits on no existing mlserver server")), "{:?}", p.reasons);
}

#[test]
fn scale_down_consolidates_the_least_loaded_server() {
    let k = kind(10_000, 0.0, 10);
    let current = vec![
        ServerState {
            id: "mlserver-0".into(),
            kind: "mlserver".into(),
            models: vec!["a".into(), "b".into()],
            ..Default::default()
        },
        ServerState {
            id: "mlserver-1".into(),
            kind: "mlserver".into(),
            models: vec!["c".into()],
            ..Default::default()
        },
    ];
    // b shrank to zero. Its memory is held while it drains, so c (3000) does not move into
    // it; a (4000) moves next to c instead, and mlserver-0 goes once b has drained.
    let p = plan(
        &[
            model("a", 1, 4_000),
            model("b", 0, 4_000),
            model("c", 1, 3_000),
        ],
        std::slice::from_ref(&k),
        &current,
    );
    assert_eq!(p.server_replicas["mlserver"], 1);
    assert_eq!(
        p.moves,
        vec![
            // a moves, make-before-break: the planner pairs the load with the unload.
            Move::Load {
                model: "a".into(),
                server: "mlserver-1".into(),
                replaces: Some("mlserver-0".into()),
            },
            Move::Unload {
                model: "a".into(),
                server: "mlserver-0".into(),
                replaced_by: Some("mlserver-1".into()),
            },
            // b scales in: drained and unloaded now.
            Move::Unload {
                model: "b".into(),
                server: "mlserver-0".into(),
                replaced_by: None,
            },
            Move::RemoveServer {
                server: "mlserver-0".into()
            },
        ]
    );
    assert!(
        p.reasons
            .iter()
            .any(|r| r.starts_with("server mlserver-0 drained")),
        "{:?}",
        p.reasons
    );
}

#[test]
fn at_max_servers_unplaced_replicas_are_reported_and_existing_ones_kept() {
    let k = kind(10_000, 0.0, 1);
    let current = vec![ServerState {
        id: "mlserver-0".into(),
        kind: "mlserver".into(),
        models: vec!["a".into()],
        ..Default::default()
    }];
    let p = plan(&[model("a", 2, 6_000)], std::slice::from_ref(&k), &current);
    assert_eq!(p.unplaced, vec![("a".to_string(), 1)]);
    assert!(p.moves.is_empty());
    assert!(
        p.reasons[0].contains("maxReplicas 1 is reached; existing replicas keep serving"),
        "{:?}",
        p.reasons
    );
}
