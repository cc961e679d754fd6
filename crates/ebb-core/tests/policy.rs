//! Policy parsing and validation: defaults, and errors that name the field and the reason.

use ebb_core::policy::{SelectPolicy, Target};
use ebb_core::Policy;

fn errors(yaml: &str) -> Vec<String> {
    match Policy::from_yaml(yaml) {
        Ok(p) => panic!("expected an error, got {p:?}"),
        Err(e) => e.errors.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn hpa_defaults_are_filled_in() {
    let p = Policy::from_yaml("maxReplicas: 10").unwrap();
    assert_eq!(p.min_replicas, 1);
    assert_eq!(p.metrics.len(), 1, "HPA's default metric: CPU at 80%");
    assert_eq!(p.metrics[0].target, Target::Utilization(80));
    assert_eq!(p.behavior.scale_down.stabilization_window_seconds, 300);
    assert_eq!(p.behavior.scale_up.policies.len(), 2);
    assert_eq!(p.behavior.scale_up.select_policy, SelectPolicy::Max);
    assert_eq!(p.tolerance.scale_up, 0.1);
}

#[test]
fn a_pasted_hpa_spec_parses() {
    let p = Policy::from_yaml(
        r#"
minReplicas: 2
maxReplicas: 30
metrics:
- type: Resource
  resource: {name: cpu, target: {type: Utilization, averageUtilization: 60}}
- type: Object
  object:
    describedObject: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: main-route}
    metric: {name: requests-per-second}
    target: {type: Value, value: 10k}
- type: External
  external:
    metric: {name: queue_messages_ready, selector: {matchLabels: {queue: worker_tasks}}}
    target: {type: AverageValue, averageValue: 30}
behavior:
  scaleDown:
    stabilizationWindowSeconds: 60
    policies: [{type: Percent, value: 10, periodSeconds: 60}]
  scaleUp:
    tolerance: 0.05
"#,
    )
    .unwrap();
    assert_eq!(p.metrics.len(), 3);
    assert_eq!(p.metrics[1].name, "requests-per-second");
    assert_eq!(p.tolerance.scale_up, 0.05);
    assert_eq!(p.tolerance.scale_down, 0.1);
    assert_eq!(p.behavior.scale_up.stabilization_window_seconds, 0);
}

#[test]
fn max_below_min_is_named() {
    assert_eq!(
        errors("minReplicas: 5\nmaxReplicas: 2"),
        ["maxReplicas: must be at least minReplicas (5), got 2"]
    );
}

#[test]
fn missing_max_is_named() {
    assert_eq!(errors("minReplicas: 1"), ["maxReplicas: is required"]);
}

#[test]
fn unknown_metric_type_is_named() {
    let e = errors("maxReplicas: 3\nmetrics: [{type: Gpu}]");
    assert!(
        e[0].starts_with("metrics[0].type: unknown metric type 'Gpu'"),
        "{e:?}"
    );
}

#[test]
fn negative_target_is_named() {
    let e = errors(
        "maxReplicas: 3\nmetrics: [{type: Pods, pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: -5}}}]",
    );
    assert_eq!(
        e,
        ["metrics[0].pods.target.averageValue: must be greater than 0, got -5"]
    );
}

#[test]
fn negative_window_is_named() {
    let e = errors("maxReplicas: 3\nbehavior: {scaleDown: {stabilizationWindowSeconds: -1}}");
    assert_eq!(
        e,
        ["behavior.scaleDown.stabilizationWindowSeconds: must be between 0 and 3600, got -1"]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = errors(
        r#"
maxReplicas: 0
behavior:
  scaleUp:
    selectPolicy: Fastest
    policies: [{type: Pods, value: 0, periodSeconds: 4000}]
concurrency: {targetPerReplica: 0, panicWindowSeconds: 90}
"#,
    );
    assert_eq!(
        e,
        [
            "maxReplicas: must be between 1 and 2147483647, got 0",
            "behavior.scaleUp.selectPolicy: must be Max, Min or Disabled, got 'Fastest'",
            "behavior.scaleUp.policies[0].value: must be between 1 and 2147483647, got 0",
            "behavior.scaleUp.policies[0].periodSeconds: must be between 1 and 1800, got 4000",
            "concurrency.targetPerReplica: must be a positive number, got 0",
            "concurrency.panicWindowSeconds: must not exceed stableWindowSeconds (60), got 90",
        ]
    );
}

#[test]
fn wrong_target_type_for_metric_is_named() {
    let e = errors(
        "maxReplicas: 3\nmetrics: [{type: Pods, pods: {metric: {name: rps}, target: {type: Utilization, averageUtilization: 50}}}]",
    );
    assert_eq!(e, ["metrics[0].pods.target.type: 'Utilization' is not allowed here (allowed: AverageValue)"]);
}

#[test]
fn unknown_fields_and_bad_types_name_their_path() {
    let e = errors("maxReplicas: 3\nbehavior: {scaleUp: {stabilisationWindowSeconds: 10}}");
    assert!(
        e[0].starts_with("behavior.scaleUp.stabilisationWindowSeconds: unknown field `stabilisationWindowSeconds`, expected one of"),
        "{e:?}"
    );
    let e = errors("maxReplicas: many");
    assert!(e[0].starts_with("maxReplicas: invalid type"), "{e:?}");
    let e = errors(
        "maxReplicas: 3\nmetrics: [{type: Pods, pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: 5x}}}]",
    );
    assert!(
        e[0].starts_with("metrics[0].pods.target.averageValue: unknown suffix"),
        "{e:?}"
    );
}

#[test]
fn min_zero_needs_scale_to_zero() {
    let e = errors("minReplicas: 0\nmaxReplicas: 3\nconcurrency: {targetPerReplica: 5}");
    assert!(
        e[0].starts_with("minReplicas: 0 needs a scaleToZero block"),
        "{e:?}"
    );
    let e = errors("maxReplicas: 3\nscaleToZero: {idleSeconds: 60}");
    assert!(
        e[0].starts_with("scaleToZero: needs a traffic signal"),
        "{e:?}"
    );
}

#[test]
fn initial_and_activation_replicas_are_bounded_and_named() {
    let e = errors(
        "minReplicas: 0\nmaxReplicas: 3\ninitialReplicas: 0\nconcurrency: {targetPerReplica: 5}\nscaleToZero: {activationReplicas: 4}",
    );
    assert_eq!(
        e,
        [
            "initialReplicas: must be between 1 and 3, got 0",
            "scaleToZero.activationReplicas: must be between 1 and 3, got 4",
        ]
    );
    let p = Policy::from_yaml(
        "minReplicas: 0\nmaxReplicas: 8\ninitialReplicas: 2\nconcurrency: {targetPerReplica: 5}\nscaleToZero: {activationReplicas: 3}",
    )
    .unwrap();
    assert_eq!(p.initial_replicas, Some(2));
    assert_eq!(p.scale_to_zero.as_ref().unwrap().activation_replicas, 3);
    let text = serde_yaml::to_string(&p.to_spec()).unwrap();
    assert_eq!(Policy::from_yaml(&text).unwrap(), p, "{text}");
}

#[test]
fn duplicate_metric_names_are_rejected() {
    let m =
        "{type: Pods, pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: 5}}}";
    let e = errors(&format!("maxReplicas: 3\nmetrics: [{m}, {m}]"));
    assert_eq!(
        e,
        ["metrics[1]: duplicate metric 'rps': each metric needs its own name"]
    );
}

#[test]
fn normalized_form_round_trips() {
    let p = Policy::from_yaml(
        "maxReplicas: 8\nconcurrency: {targetPerReplica: 4}\nscaleToZero: {idleSeconds: 120}\nminReplicas: 0\n",
    )
    .unwrap();
    let text = serde_yaml::to_string(&p.to_spec()).unwrap();
    let again = Policy::from_yaml(&text).unwrap();
    assert_eq!(p, again, "normalized form:\n{text}");
}

#[test]
fn shipped_example_policies_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if text.lines().any(|l| l.starts_with("pools:")) {
            ebb_core::pools::PoolsPolicy::from_yaml(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        } else {
            Policy::from_yaml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        n += 1;
    }
    assert!(n >= 4, "expected the seed examples in {}", dir.display());
}

#[test]
fn slo_block_fills_defaults_and_unlimits_behaviors() {
    let p = Policy::from_yaml("maxReplicas: 20\nslo: {latency: 500ms}").unwrap();
    let slo = p.slo.as_ref().unwrap();
    assert_eq!(slo.latency_seconds, 0.5);
    assert!((slo.attainment - 0.999).abs() < 1e-12);
    assert_eq!(slo.slots_per_replica, 1);
    assert_eq!(slo.cold_start_seconds, None);
    // No utilization target and no HPA default CPU metric: the SLO sizes the replicas.
    assert!(p.metrics.is_empty());
    assert_eq!(p.behavior, ebb_core::policy::Behavior::slo_default());
    // The percentile spelling means the same.
    let q = Policy::from_yaml("maxReplicas: 20\nslo: {latency: 0.5, percentile: p99.9}").unwrap();
    assert_eq!(p, q);
}

#[test]
fn slo_mistakes_are_named() {
    let e = errors("maxReplicas: 20\nslo: {attainment: 100%, slotsPerReplica: 0, coldStartSeconds: -1, seasonSeconds: 5}");
    assert!(
        e.iter().any(|e| e.starts_with("slo.latency: is required")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("slo.attainment: must be above 0% and below 100%")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|e| e.starts_with("slo.slotsPerReplica")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|e| e.starts_with("slo.coldStartSeconds")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|e| e.starts_with("slo.seasonSeconds")),
        "{e:?}"
    );
    let e = errors("maxReplicas: 20\nslo: {latency: fast, attainment: 99%, percentile: p99}");
    assert!(
        e.iter()
            .any(|e| e.starts_with("slo.latency: 'fast' is not a duration")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("slo.percentile: give attainment or percentile")),
        "{e:?}"
    );
    // Both given, each still checked: every problem named at once.
    let e = errors("maxReplicas: 20\nslo: {latency: 1s, attainment: 120%, percentile: p9x}");
    assert_eq!(
        e,
        [
            "slo.percentile: give attainment or percentile, not both",
            "slo.attainment: must be above 0% and below 100%, got 120%",
            "slo.percentile: must be a percentage like 99.9%, got '9x'",
        ],
        "{e:?}"
    );
    let e = errors("maxReplicas: 20\nslo: {latency: 2h}");
    assert!(
        e.iter()
            .any(|e| e.starts_with("slo.latency: must be above 0 and at most 1h")),
        "{e:?}"
    );
}

#[test]
fn slo_normalized_form_round_trips() {
    let p = Policy::from_yaml(
        "maxReplicas: 20\nslo: {latency: 1.5s, attainment: 99.5%, slotsPerReplica: 8, coldStartSeconds: 45, seasonSeconds: 604800}",
    )
    .unwrap();
    let text = serde_yaml::to_string(&p.to_spec()).unwrap();
    assert!(
        text.contains("latency: 1.5s") && text.contains("attainment: 99.5%"),
        "{text}"
    );
    assert_eq!(
        p,
        Policy::from_yaml(&text).unwrap(),
        "normalized form:\n{text}"
    );
}

#[test]
fn schedule_mistakes_are_named() {
    let e = errors(
        r#"
maxReplicas: 10
minReplicas: 2
metrics: [{type: Pods, pods: {metric: {name: rps}, target: {type: AverageValue, averageValue: "10"}}}]
schedules:
- {name: peak, days: [Mon-Fri], from: "8:00", to: "18:60", timezone: Europe/Berln, minReplicas: 12}
- {name: peak, start: "0 8 * * MON-FRI", end: "61 18 * * *", maxReplicas: 1}
- {name: both, start: "0 8 * * *", from: "08:00", minReplicas: 3}
- {name: days, days: [Mon, Funday], from: "08:00", to: "09:00", minReplicas: 3, maxReplicas: 2, prewarmSeconds: -1}
- {from: "08:00", to: "08:00"}
"#,
    );
    assert_eq!(
        e,
        [
            "schedules[0].timezone: 'Europe/Berln' is not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC)",
            "schedules[0].to: must be a time HH:MM (00:00 to 24:00), got '18:60'",
            "schedules[0].minReplicas: must be between 1 and 10, got 12",
            "schedules[1].name: duplicate window 'peak'",
            "schedules[1].end: '61 18 * * *' is not a cron expression: Component error: Number out of bounds.",
            "schedules[1].maxReplicas: must be between 2 and 10, got 1",
            "schedules[2]: give either start and end (cron) or days, from and to, not both",
            "schedules[3].days[1]: 'Funday' is not a day or range of days (Mon, Tue, ... Sun, or e.g. Mon-Fri)",
            "schedules[3].maxReplicas: must be at least the window's minReplicas (3), got 2",
            "schedules[3].prewarmSeconds: must be between 0 and 86400, got -1",
            "schedules[4].name: is required",
            "schedules[4].to: must differ from `from` (for a whole day use from 00:00 to 24:00)",
            "schedules[4]: needs minReplicas (a floor), maxReplicas (a ceiling) or both",
        ]
    );
}

#[test]
fn schedules_round_trip_and_read_single_digit_hours() {
    let p = Policy::from_yaml(
        "maxReplicas: 8\nconcurrency: {targetPerReplica: 4}\nschedules:\n- {name: peak, days: [Mon-Fri, sunday], from: '8:00', to: '24:00', timezone: Asia/Tokyo, minReplicas: 3, prewarmSeconds: 90}\n- {name: cap, start: '@daily', end: '0 6 * * *', maxReplicas: 4}\n",
    )
    .unwrap();
    assert_eq!(p.schedules.len(), 2);
    assert_eq!(
        p.schedules[0].describe,
        "Mon-Fri,sunday 8:00-24:00 Asia/Tokyo"
    );
    assert_eq!(p.schedules[0].prewarm_ms, Some(90_000));
    let text = serde_yaml::to_string(&p.to_spec()).unwrap();
    assert_eq!(
        p,
        Policy::from_yaml(&text).unwrap(),
        "normalized form:\n{text}"
    );
}

const FORMULA_METRICS: &str = r#"
maxReplicas: 10
metrics:
- {type: Pods, pods: {metric: {name: waiting}, target: {type: AverageValue, averageValue: "2"}}}
- {type: External, external: {metric: {name: rps}, target: {type: Value, value: "30"}}}
"#;

#[test]
fn formula_mistakes_are_named_with_their_position() {
    let bad = |block: &str| errors(&format!("{FORMULA_METRICS}formula: {block}\n"));
    assert_eq!(
        bad(r#"{expression: "max(waiting / 2.0, rps / 30.0", target: {type: AverageValue, averageValue: "1"}}"#),
        ["formula.expression: syntax error at line 1, column 30: Syntax error: missing ')' at '<EOF>'"]
    );
    assert_eq!(
        bad(r#"{expression: "waiting + queue", target: {type: Value, value: "4"}}"#),
        ["formula.expression: 'queue' is not a metric of this policy (metrics: waiting, rps)"]
    );
    assert_eq!(
        bad(r#"{expression: "waiting / 2", target: {type: Value, value: "4"}}"#),
        ["formula.expression: Unsupported binary operator 'div': Float(1.0), Int(2) (CEL does not mix whole numbers and decimals, and the inputs are decimals: write 2.0, not 2)"]
    );
    assert_eq!(
        bad(
            r#"{name: rps, expression: "waiting", target: {type: Utilization, averageUtilization: 50}}"#
        ),
        [
            "formula.name: 'rps' is a metric's name already: the composite needs its own",
            "formula.target.type: 'Utilization' is not allowed here (allowed: Value, AverageValue)",
        ]
    );
    assert_eq!(
        bad("{name: load}"),
        [
            "formula.target: is required",
            "formula.expression: is required"
        ]
    );
}

#[test]
fn formula_round_trips() {
    let p = Policy::from_yaml(&format!(
        "{FORMULA_METRICS}formula: {{name: load, expression: \"max(waiting / 2.0, rps / 30.0)\", target: {{type: AverageValue, averageValue: \"1\"}}}}\n"
    ))
    .unwrap();
    let f = p.formula.as_ref().unwrap();
    assert_eq!(f.formula.inputs, ["rps", "waiting"]);
    let text = serde_yaml::to_string(&p.to_spec()).unwrap();
    assert_eq!(
        p,
        Policy::from_yaml(&text).unwrap(),
        "normalized form:\n{text}"
    );
}

#[test]
fn an_engine_block_becomes_hpa_metrics_and_round_trips() {
    let p = Policy::from_yaml(
        "maxReplicas: 8\nengine: {kind: vllm, kvCacheUtilization: 80%, waitingPerReplica: 2, ttft: {percentile: p95, below: 500ms}, queueTime: {percentile: p90, below: 200ms}}",
    )
    .unwrap();
    let e = p.engine.as_ref().unwrap();
    assert_eq!(
        (e.port, e.path.as_str(), e.window_ms),
        (8000, "/metrics", 60_000)
    );
    let metrics: Vec<String> = p
        .metrics
        .iter()
        .map(|m| format!("{} {} {}", m.name, m.source.type_name(), m.target))
        .collect();
    assert_eq!(
        metrics,
        [
            "engine.kvCacheUtilization Pods 0.8 per pod",
            "engine.waiting Pods 2 per pod",
            "engine.ttft External 0.5",
            "engine.queueTime External 0.2",
        ]
    );
    let text = serde_yaml::to_string(&p.to_spec()).unwrap();
    assert_eq!(Policy::from_yaml(&text).unwrap(), p, "{text}");
}

#[test]
fn an_llm_slo_reads_the_engine_block_and_round_trips() {
    let p = Policy::from_yaml(
        "maxReplicas: 20
engine: {kind: vllm}
slo:
  ttft: {latency: 2s, percentile: p95}
  itl: {latency: 60ms}
  coldStartSeconds: 90",
    )
    .unwrap();
    let t = p.token_slo.as_ref().expect("token goals");
    assert_eq!(
        (
            t.ttft.map(|g| (g.seconds, g.attainment)),
            t.itl.map(|g| (g.seconds, g.attainment))
        ),
        (Some((2.0, 0.95)), Some((0.06, 0.99)))
    );
    assert_eq!(t.cold_start_seconds, Some(90.0));
    assert!(p.slo.is_none(), "no request latency goal");
    assert!(p.metrics.is_empty(), "no engine target, and no CPU default");
    let quantiles = p.engine.as_ref().and_then(|e| e.token_quantiles);
    assert_eq!(
        quantiles.map(|q| (q.ttft, q.itl)),
        Some((Some(0.95), Some(0.99)))
    );
    let text = serde_yaml::to_string(&p.to_spec()).unwrap();
    assert_eq!(Policy::from_yaml(&text).unwrap(), p, "{text}");
    // Beside a request latency goal, both are kept.
    let both = Policy::from_yaml(
        "maxReplicas: 20\nengine: {kind: vllm}\nslo: {latency: 30s, itl: {latency: 60ms}}",
    )
    .unwrap();
    assert!(both.slo.is_some() && both.token_slo.is_some());
    let text = serde_yaml::to_string(&both.to_spec()).unwrap();
    assert_eq!(Policy::from_yaml(&text).unwrap(), both, "{text}");
}

#[test]
fn llm_slo_mistakes_name_their_field() {
    assert_eq!(
        errors("maxReplicas: 3\nslo: {ttft: {latency: 2s}}"),
        ["slo.ttft: needs the engine block (engine.kind: vllm, sglang, tgi or triton): its metrics are what the goal reads"]
    );
    assert_eq!(
        errors(
            "maxReplicas: 3\nengine: {kind: vllm}\nslo: {ttft: {attainment: 100%}, itl: {latency: -1, percentile: p9x}, attainment: 99%}"
        ),
        [
            "slo.ttft.latency: is required (e.g. 2s)",
            "slo.ttft.attainment: must be above 0% and below 100%, got 100%",
            "slo.itl.latency: must be above 0 and at most 1h, got -1s",
            "slo.itl.percentile: must be a percentage like 99.9%, got '9x'",
            "slo.attainment: belongs to a request latency goal (slo.latency); ttft and itl carry their own attainment",
        ]
    );
    assert_eq!(
        errors("maxReplicas: 3\nengine: {kind: triton}\nslo: {itl: {latency: 50ms}}"),
        [
            "slo.itl: triton exports no metric for time between tokens",
            "engine.kind: triton exports no metric for prompt and generated tokens",
        ]
    );
    assert_eq!(
        errors("maxReplicas: 3\nslo: {attainment: 99%}"),
        ["slo.latency: is required (e.g. 500ms), or ttft / itl for LLM serving"]
    );
}

#[test]
fn engine_mistakes_name_their_field() {
    let e = errors(
        "maxReplicas: 3\nengine: {kind: vlm, kvCacheUtilization: 1.5, ttft: {percentile: p100}}",
    );
    assert_eq!(
        e,
        [
            "engine.kind: must be vllm, sglang, tgi or triton, got 'vlm'",
            "engine.kvCacheUtilization: must be a share above 0 and at most 1 (0.8) or a percentage (80%), got 1.5",
            "engine.ttft.percentile: must be above 0% and below 100%, got 100%",
            "engine.ttft.below: is required (e.g. 500ms)",
        ]
    );
    assert_eq!(
        errors("maxReplicas: 3\nengine: {kind: triton, itl: {below: 20ms}}"),
        ["engine.itl: triton exports no metric for it"]
    );
    assert_eq!(
        errors("maxReplicas: 3\nengine: {kind: sglang}"),
        ["engine: needs a target: kvCacheUtilization, waitingPerReplica, runningPerReplica, ttft, itl or queueTime (or slo.ttft / slo.itl)"]
    );
    let m = "{type: Pods, pods: {metric: {name: engine.waiting}, target: {type: AverageValue, averageValue: 5}}}";
    assert_eq!(
        errors(&format!("maxReplicas: 3\nmetrics: [{m}]")),
        ["metrics[0]: the name 'engine.waiting' is kept for the engine block's metrics"]
    );
}

#[test]
fn idle_seconds_never_leaves_zero_to_the_slo() {
    let slo = "minReplicas: 0\nmaxReplicas: 9\nslo: {latency: 500ms, attainment: 99.9%}\n";
    let p = Policy::from_yaml(&format!("{slo}scaleToZero: {{idleSeconds: never}}")).unwrap();
    assert_eq!(p.scale_to_zero.as_ref().and_then(|z| z.idle_ms), None);
    // It survives the round trip through the normalized document.
    let again = Policy::from_yaml(&serde_yaml::to_string(&p.to_spec()).unwrap()).unwrap();
    assert_eq!(again.scale_to_zero, p.scale_to_zero);
    let p = Policy::from_yaml(&format!("{slo}scaleToZero: {{idleSeconds: 90}}")).unwrap();
    assert_eq!(p.scale_to_zero.and_then(|z| z.idle_ms), Some(90_000));
    assert_eq!(
        errors(&format!("{slo}scaleToZero: {{idleSeconds: soon}}")),
        ["scaleToZero.idleSeconds: must be a positive number of seconds or `never`, got 'soon'"]
    );
    let e = errors("minReplicas: 0\nmaxReplicas: 9\nconcurrency: {targetPerReplica: 4}\nscaleToZero: {idleSeconds: never}");
    assert_eq!(
        e,
        ["scaleToZero.idleSeconds: `never` needs an slo block: only the SLO goes to zero other than after an idle time"]
    );
}

/// A percentage a user writes is the share they mean, to the last bit: `99.9 / 100.0` in
/// binary is 0.9990000000000001, a target no share of 0.999 quite meets.
#[test]
fn percentages_are_the_shares_they_spell() {
    for (written, share) in [
        ("99.9%", 0.999),
        ("99.99", 0.9999),
        ("95%", 0.95),
        ("99.5%", 0.995),
    ] {
        let p = Policy::from_yaml(&format!(
            "maxReplicas: 20\nslo: {{latency: 500ms, attainment: '{written}'}}"
        ))
        .unwrap();
        assert_eq!(p.slo.as_ref().unwrap().attainment, share, "{written}");
    }
    let q = Policy::from_yaml("maxReplicas: 20\nslo: {latency: 0.5, percentile: p99.9}").unwrap();
    assert_eq!(q.slo.as_ref().unwrap().attainment, 0.999);
    assert_eq!(ebb_core::policy::share_of_percent(70.0), 0.7);
}
