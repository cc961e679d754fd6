//! The recommendation as users paste it: Ebb's policy document with only the fields that
//! differ from what Ebb fills in, or an HPA manifest holding only what `autoscaling/v2` has.

use anyhow::Context;
use ebb_core::policy::spec::PolicySpec;
use ebb_core::Policy;
use ebb_sim::tune::Family;
use serde_json::Value;

/// The document for `policy`. Ebb's omits every field whose removal leaves the same policy
/// (a default Ebb fills in), so that what is printed is what was chosen.
pub(super) fn policy_yaml(family: Family, policy: &Policy) -> anyhow::Result<String> {
    if matches!(family, Family::EbbSlo | Family::EbbEngine) {
        // Back through the spec, so that fields come in the order the README documents them.
        let spec: PolicySpec = serde_json::from_value(minimal_document(policy)?)
            .context("cannot read the policy back")?;
        return serde_yaml::to_string(&spec).context("cannot print the policy");
    }
    hpa_manifest(policy)
}

/// `policy` as an `autoscaling/v2` HorizontalPodAutoscaler: Ebb's own fields left out.
fn hpa_manifest(policy: &Policy) -> anyhow::Result<String> {
    let mut spec = policy.to_spec();
    spec.stale_after_seconds = None;
    spec.readiness = None;
    if let Some(b) = spec.behavior.as_mut() {
        for rules in [b.scale_up.as_mut(), b.scale_down.as_mut()]
            .into_iter()
            .flatten()
        {
            rules.tolerance = None;
        }
    }
    let hpa = serde_json::json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "my-model"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "my-model"},
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            "metrics": spec.metrics,
            "behavior": spec.behavior,
        }
    });
    serde_yaml::to_string(&hpa).context("cannot print the HPA")
}

/// Fields printed even at their defaults: the bounds and what the SLO asks for, which a
/// reader of the recommendation looks for first.
const ALWAYS_SHOWN: [&str; 5] = [
    "/minReplicas",
    "/maxReplicas",
    "/slo/latency",
    "/slo/attainment",
    "/slo/percentile",
];

/// `policy`'s document less every field (at any depth of its mappings, but for
/// [`ALWAYS_SHOWN`]) whose removal leaves a document that validates to the same policy.
fn minimal_document(policy: &Policy) -> anyhow::Result<Value> {
    let mut document =
        serde_json::to_value(policy.to_spec()).context("cannot write the policy out")?;
    let wanted = parse(&document).context("the policy does not read back as itself")?;
    prune(&mut document, "", &|d: &Value| {
        parse(d).as_ref() == Some(&wanted)
    });
    Ok(document)
}

fn parse(document: &Value) -> Option<Policy> {
    let spec: PolicySpec = serde_json::from_value(document.clone()).ok()?;
    Policy::from_spec(&spec).ok()
}

/// Removes, one at a time, the keys of the mapping at `pointer` (a JSON pointer) that `same`
/// says can go, and looks inside those that cannot.
fn prune(document: &mut Value, pointer: &str, same: &dyn Fn(&Value) -> bool) {
    let keys: Vec<String> = match document.pointer(pointer) {
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        _ => return,
    };
    for key in keys {
        let escaped = key.replace('~', "~0").replace('/', "~1");
        let at = format!("{pointer}/{escaped}");
        if ALWAYS_SHOWN.contains(&at.as_str()) {
            continue;
        }
        let mut without = document.clone();
        if let Some(Value::Object(map)) = without.pointer_mut(pointer) {
            map.remove(&key);
        }
        if same(&without) {
            *document = without;
        } else {
            prune(document, &at, same);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ebb's built-in SLO policy, as `ebb simulate` builds it, prints as the few fields it
    /// sets, and reads back as the policy its whole document reads as.
    #[test]
    fn the_slo_policy_prints_only_what_differs_from_the_defaults() {
        let policy = ebb_sim::compare::default_ebb_policy(0.5, 0.999, 4, 40);
        let yaml = policy_yaml(Family::EbbSlo, &policy).unwrap();
        assert!(!yaml.contains("readiness"), "{yaml}");
        assert!(!yaml.contains("tolerance"), "{yaml}");
        assert!(yaml.contains("maxReplicas: 40"), "{yaml}");
        assert!(yaml.contains("attainment: 99.9%"), "{yaml}");
        let written = Policy::from_spec(&policy.to_spec()).unwrap();
        assert_eq!(Policy::from_yaml(&yaml).unwrap(), written, "{yaml}");
    }

    /// A field set to other than its default stays, however deep.
    #[test]
    fn a_chosen_scale_down_window_stays() {
        let text = "maxReplicas: 10\nslo: {latency: 500ms, attainment: 99%}\nbehavior:\n  scaleDown:\n    stabilizationWindowSeconds: 300\n";
        let policy = Policy::from_yaml(text).unwrap();
        let yaml = policy_yaml(Family::EbbSlo, &policy).unwrap();
        assert!(yaml.contains("stabilizationWindowSeconds: 300"), "{yaml}");
        assert!(!yaml.contains("scaleUp"), "{yaml}");
        assert_eq!(Policy::from_yaml(&yaml).unwrap(), policy, "{yaml}");
    }
}
