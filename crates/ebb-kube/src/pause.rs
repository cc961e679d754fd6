//! An operator's pause, read from the Autoscaler's annotations (KEDA's spelling, under Ebb's
//! prefix): `ebb.dev/paused: "true"` holds the count the target has; `ebb.dev/paused-replicas:
//! "N"` sets N and holds it (and wins when both are set). The policy goes on deciding, and the
//! status and `/metrics` go on saying what it would do.

use crate::context::Pass;
use crate::crd::AutoscalerStatus;
use crate::status::set_condition;
use ebb_core::Hold;
use kube::runtime::events::EventType;
use std::collections::BTreeMap;

/// Holds the target's current count while `"true"`.
pub const PAUSED: &str = "ebb.dev/paused";
/// Sets this count and holds it.
pub const PAUSED_REPLICAS: &str = "ebb.dev/paused-replicas";

/// What the annotations ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    /// The hold to give the core, if any.
    pub hold: Option<Hold>,
    /// A value that could not be read. The count is then held where it is, since the
    /// operator meant to pause and a wrong value must not let scaling go on.
    pub problem: Option<String>,
}

/// Reads the pause annotations.
pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Pause {
    if let Some(text) = annotations.get(PAUSED_REPLICAS) {
        return match text.trim().parse::<u32>() {
            Ok(n) => Pause {
                hold: Some(Hold::Replicas(n)),
                problem: None,
            },
            Err(_) => Pause {
                hold: Some(Hold::Current),
                problem: Some(format!(
                    "annotation {PAUSED_REPLICAS}: '{text}' is not a whole number of replicas (0 or more); holding the current count"
                )),
            },
        };
    }
    match annotations.get(PAUSED).map(|t| t.trim().to_ascii_lowercase()) {
        None => Pause {
            hold: None,
            problem: None,
        },
        Some(t) if t == "true" => Pause {
            hold: Some(Hold::Current),
            problem: None,
        },
        Some(t) if t == "false" => Pause {
            hold: None,
            problem: None,
        },
        Some(t) => Pause {
            hold: Some(Hold::Current),
            problem: Some(format!(
                "annotation {PAUSED}: '{t}' is neither \"true\" nor \"false\"; holding the current count"
            )),
        },
    }
}

/// The `Paused` condition while the annotations hold the count (and `False` once they no
/// longer do), with a Warning Event when an annotation's value could not be read. `held`
/// says what is held and what the policy or plan would set.
pub(crate) async fn report(
    pass: &Pass<'_>,
    status: &mut AutoscalerStatus,
    pause: &Pause,
    held: Option<String>,
) {
    let was_paused = status.conditions.iter().any(|c| c.type_ == "Paused");
    let (reason, message) = match (&pause.hold, &pause.problem) {
        (None, _) if !was_paused => return,
        (None, _) => ("NotPaused", "no pause annotation".to_string()),
        (Some(_), Some(problem)) => ("InvalidPauseAnnotation", problem.clone()),
        (Some(_), None) => (
            "PausedByAnnotation",
            held.unwrap_or_else(|| "paused".into()),
        ),
    };
    let new = !status
        .conditions
        .iter()
        .any(|c| c.type_ == "Paused" && c.message == message);
    set_condition(
        &mut status.conditions,
        "Paused",
        pause.hold.is_some(),
        reason,
        message.clone(),
        pass.now,
    );
    if new && pause.problem.is_some() {
        pass.event(EventType::Warning, reason, message).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Pause {
        from_annotations(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn annotations_become_holds() {
        assert_eq!(read(&[]).hold, None);
        assert_eq!(read(&[(PAUSED, "false")]).hold, None);
        assert_eq!(read(&[(PAUSED, "true")]).hold, Some(Hold::Current));
        assert_eq!(read(&[(PAUSED, " True ")]).hold, Some(Hold::Current));
        assert_eq!(
            read(&[(PAUSED, "false"), (PAUSED_REPLICAS, "3")]).hold,
            Some(Hold::Replicas(3)),
            "paused-replicas wins"
        );
    }

    #[test]
    fn a_wrong_value_holds_and_says_why() {
        for pairs in [
            [(PAUSED, "yes")],
            [(PAUSED_REPLICAS, "-1")],
            [(PAUSED_REPLICAS, "two")],
        ] {
            let p = read(&pairs);
            assert_eq!(p.hold, Some(Hold::Current), "{pairs:?}");
            let problem = p.problem.expect("a problem");
            assert!(
                problem.starts_with(&format!("annotation {}", pairs[0].0)),
                "{problem}"
            );
        }
    }
}
