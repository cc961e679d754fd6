//! From raw observations to the calculator's inputs: unusable values (NaN, infinite,
//! negative) and stale samples are dropped here, so that they count as missing and can never
//! read as zero load.

use crate::calculator::{MetricInput, PodMetric};
use crate::observation::{is_fresh, is_usable, MetricObservation, MetricValues};
use crate::pod_samples::PodSamples;
use crate::time::Time;

/// Converts a value in the metric's unit to HPA's milli-units.
pub fn to_milli(value: f64) -> i64 {
    let m = (value * 1000.0).round();
    if m >= i64::MAX as f64 {
        i64::MAX
    } else {
        m as i64
    }
}

/// The usable input for one metric, or why there is none.
pub fn metric_input(
    obs: Option<&MetricObservation>,
    now: Time,
    stale_after_ms: i64,
) -> Result<MetricInput<'_>, String> {
    let Some(obs) = obs else {
        return Err("no samples observed".into());
    };
    let fresh = |at: Time| is_fresh(at, now, stale_after_ms);
    match &obs.values {
        MetricValues::PerPod { samples } => {
            if samples.is_empty() {
                return Err("no pod samples observed".into());
            }
            let usable: PodSamples = samples
                .iter()
                .filter(|s| is_usable(s.value) && fresh(s.at))
                .map(|s| {
                    (
                        s.pod.as_str(),
                        PodMetric {
                            milli: to_milli(s.value),
                            at: s.at,
                            window_ms: s.window_ms.max(0),
                        },
                    )
                })
                .collect();
            if usable.is_empty() {
                return Err(format!(
                    "all {} pod samples unusable (NaN, negative or stale)",
                    samples.len()
                ));
            }
            Ok(MetricInput::PerPod(usable))
        }
        MetricValues::Object { value, at } => {
            if !is_usable(*value) {
                Err(format!("object value {value} is not usable"))
            } else if !fresh(*at) {
                Err("object value is stale".into())
            } else {
                Ok(MetricInput::Object(to_milli(*value)))
            }
        }
        MetricValues::External { values, at } => {
            if values.is_empty() {
                Err("no external series matched".into())
            } else if let Some(bad) = values.iter().find(|v| !is_usable(**v)) {
                Err(format!("external value {bad} is not usable"))
            } else if !fresh(*at) {
                Err("external values are stale".into())
            } else {
                Ok(MetricInput::External(
                    values.iter().map(|v| to_milli(*v)).collect(),
                ))
            }
        }
    }
}
