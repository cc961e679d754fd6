//! HPA behaviors: stabilization windows and rate policies, exact to `horizontal.go`
//! (`stabilizeRecommendationWithBehaviors` and `convertDesiredReplicasWithBehaviorRate`).

use crate::policy::{Behavior, ScalingPolicyKind, ScalingRules, SelectPolicy};
use crate::reason::{LimitReason, Reason};
use crate::state::{Recommendation, ScaleEvent, State};
use crate::time::Time;

/// What normalization needs besides the state.
#[derive(Debug, Clone, Copy)]
pub struct NormalizeInput<'a> {
    /// The policy's behavior.
    pub behavior: &'a Behavior,
    /// minReplicas.
    pub min_replicas: u32,
    /// maxReplicas.
    pub max_replicas: u32,
    /// The target's current replicas.
    pub current_replicas: u32,
    /// The recommendation before normalization.
    pub recommendation: u32,
    /// Now.
    pub now: Time,
}

/// The outcome of normalization.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// After the stabilization windows.
    pub stabilized: u32,
    /// After rate policies and min/max: the desired replicas.
    pub desired: u32,
    /// HPA's `ScalingLimited` reason.
    pub limit: LimitReason,
    /// Human-readable reasons for any change from the recommendation.
    pub reasons: Vec<Reason>,
    /// The recommendation history to carry forward.
    pub recommendations: Vec<Recommendation>,
}

/// Applies stabilization then rate limits. `history` supplies the past recommendations and
/// scale events; the returned [`Normalized::recommendations`] is the history to keep next
/// (pruned to what the windows can see and can still bound a decision, with this
/// recommendation added).
pub fn normalize(input: &NormalizeInput<'_>, history: &State) -> Normalized {
    normalize_with(input, history, history.recommendations.clone())
}

/// [`normalize`] on a decision's own state: its recommendations are pruned in place rather
/// than copied (the history is the largest part of the state).
pub fn normalize_owned(input: &NormalizeInput<'_>, state: &mut State) -> Normalized {
    let recommendations = std::mem::take(&mut state.recommendations);
    normalize_with(input, state, recommendations)
}

fn normalize_with(
    input: &NormalizeInput<'_>,
    state: &State,
    recommendations: Vec<Recommendation>,
) -> Normalized {
    let mut reasons = Vec::new();
    let (stabilized, recommendations) = stabilize(input, recommendations);
    if stabilized != input.recommendation {
        let reason = if input.recommendation >= input.current_replicas {
            Reason::ScaleUpStabilized {
                window_ms: i64::from(input.behavior.scale_up.stabilization_window_seconds) * 1000,
                replicas: stabilized,
            }
        } else {
            Reason::ScaleDownStabilized {
                window_ms: i64::from(input.behavior.scale_down.stabilization_window_seconds) * 1000,
                replicas: stabilized,
            }
        };
        reasons.push(reason);
    }
    let (desired, limit) = rate_limit(input, stabilized, state, &mut reasons);
    Normalized {
        stabilized,
        desired,
        limit,
        reasons,
        recommendations,
    }
}

/// The stabilization step alone: the stabilized count and the history to keep.
fn stabilize(
    input: &NormalizeInput<'_>,
    mut history: Vec<Recommendation>,
) -> (u32, Vec<Recommendation>) {
    let up_window_ms = i64::from(input.behavior.scale_up.stabilization_window_seconds) * 1000;
    let down_window_ms = i64::from(input.behavior.scale_down.stabilization_window_seconds) * 1000;
    let up_cutoff = input.now.minus_millis(up_window_ms);
    let down_cutoff = input.now.minus_millis(down_window_ms);

    let mut up_recommendation = input.recommendation;
    let mut down_recommendation = input.recommendation;
    let oldest_cutoff = up_cutoff.min(down_cutoff);
    for rec in &history {
        if rec.at > up_cutoff {
            up_recommendation = up_recommendation.min(rec.replicas);
        }
        if rec.at > down_cutoff {
            down_recommendation = down_recommendation.max(rec.replicas);
        }
    }
    let mut stabilized = input.current_replicas;
    if stabilized < up_recommendation {
        stabilized = up_recommendation;
    }
    if stabilized > down_recommendation {
        stabilized = down_recommendation;
    }

    history.retain(|rec| rec.at > oldest_cutoff);
    history.push(Recommendation {
        at: input.now,
        replicas: input.recommendation,
    });
    drop_dominated(&mut history);
    (stabilized, history)
}

/// Drops the recommendations that can never bound a decision again, whatever the windows
/// become: one with a later recommendation at or above it (which outlives it in every window
/// a maximum is taken over) and a later one at or below it (likewise for a minimum).
///
/// Both windows end at the decision, so the stabilized count is the same as with the whole
/// history; the history shrinks from one entry a decision to a few (it is copied every
/// decision and written to the controller's status). A history whose times go backwards is
/// kept whole.
fn drop_dominated(history: &mut Vec<Recommendation>) {
    if !history.windows(2).all(|w| w[0].at <= w[1].at) {
        return;
    }
    let mut later: Option<(u32, u32)> = None;
    let mut keep = vec![true; history.len()];
    for (i, rec) in history.iter().enumerate().rev() {
        let r = rec.replicas;
        keep[i] = match later {
            Some((low, high)) => !(low <= r && r <= high),
            None => true,
        };
        later = Some(later.map_or((r, r), |(low, high)| (low.min(r), high.max(r))));
    }
    let mut flags = keep.into_iter();
    history.retain(|_| flags.next().unwrap_or(true));
}

/// Replicas changed by events within `period_seconds` before `now` (strictly after the cutoff).
fn change_in_period(events: &[ScaleEvent], period_seconds: u32, now: Time) -> i64 {
    let cutoff = now.minus_millis(i64::from(period_seconds) * 1000);
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| i64::from(e.change))
        .sum()
}

fn period_start_replicas(current: u32, period_seconds: u32, state: &State, now: Time) -> i64 {
    i64::from(current) - change_in_period(&state.scale_up_events, period_seconds, now)
        + change_in_period(&state.scale_down_events, period_seconds, now)
}

/// `calculateScaleUpLimitWithScalingRules`.
pub fn scale_up_limit(current: u32, rules: &ScalingRules, state: &State, now: Time) -> i64 {
    let (mut result, pick): (i64, fn(i64, i64) -> i64) = match rules.select_policy {
        SelectPolicy::Disabled => return i64::from(current),
        SelectPolicy::Min => (i64::from(i32::MAX), i64::min),
        SelectPolicy::Max => (i64::from(i32::MIN), i64::max),
    };
    for p in &rules.policies {
        let start = period_start_replicas(current, p.period_seconds, state, now);
        let proposed = match p.kind {
            ScalingPolicyKind::Pods => start + i64::from(p.value),
            ScalingPolicyKind::Percent => {
                (start as f64 * (1.0 + f64::from(p.value) / 100.0)).ceil() as i64
            }
        };
        result = pick(result, proposed);
    }
    result
}

/// `calculateScaleDownLimitWithBehaviors`.
pub fn scale_down_limit(current: u32, rules: &ScalingRules, state: &State, now: Time) -> i64 {
    let (mut result, pick): (i64, fn(i64, i64) -> i64) = match rules.select_policy {
        SelectPolicy::Disabled => return i64::from(current),
        SelectPolicy::Min => (i64::from(i32::MIN), i64::max),
        SelectPolicy::Max => (i64::from(i32::MAX), i64::min),
    };
    for p in &rules.policies {
        let start = period_start_replicas(current, p.period_seconds, state, now);
        let proposed = match p.kind {
            ScalingPolicyKind::Pods => start - i64::from(p.value),
            // Go's int32() conversion truncates toward zero.
            ScalingPolicyKind::Percent => {
                (start as f64 * (1.0 - f64::from(p.value) / 100.0)).trunc() as i64
            }
        };
        result = pick(result, proposed);
    }
    result
}

/// The rules as a limit's reason names them ("Pods 4/15s, Percent 100%/15s"), written into
/// one string: a scale-up held by its limit says this every decision.
fn describe(rules: &ScalingRules) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(24 * rules.policies.len() + 24);
    for (i, policy) in rules.policies.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = write!(text, "{policy}");
    }
    text.push_str(match rules.select_policy {
        SelectPolicy::Max => "",
        SelectPolicy::Min => " (selectPolicy Min)",
        SelectPolicy::Disabled => " (selectPolicy Disabled)",
    });
    text
}

fn rate_limit(
    input: &NormalizeInput<'_>,
    desired: u32,
    state: &State,
    reasons: &mut Vec<Reason>,
) -> (u32, LimitReason) {
    let current = input.current_replicas;
    let within = (desired, LimitReason::DesiredWithinRange);
    if desired > current {
        let rules = &input.behavior.scale_up;
        let limit = scale_up_limit(current, rules, state, input.now).max(i64::from(current));
        let max = i64::from(input.max_replicas);
        let (allowed, limit_reason) = if max > limit {
            (limit, LimitReason::ScaleUpLimit)
        } else {
            (max, LimitReason::TooManyReplicas)
        };
        if i64::from(desired) > allowed {
            let allowed = allowed as u32;
            reasons.push(match limit_reason {
                LimitReason::TooManyReplicas => Reason::TooManyReplicas {
                    max: input.max_replicas,
                },
                _ if rules.select_policy == SelectPolicy::Disabled => Reason::ScaleUpDisabled,
                _ => Reason::ScaleUpLimit {
                    policies: describe(rules),
                    limit: allowed,
                },
            });
            return (allowed, limit_reason);
        }
        within
    } else if desired < current {
        let rules = &input.behavior.scale_down;
        let limit = scale_down_limit(current, rules, state, input.now).min(i64::from(current));
        let min = i64::from(input.min_replicas);
        let (allowed, limit_reason) = if min < limit {
            (limit, LimitReason::ScaleDownLimit)
        } else {
            (min, LimitReason::TooFewReplicas)
        };
        if i64::from(desired) < allowed {
            let allowed = allowed as u32;
            reasons.push(match limit_reason {
                LimitReason::TooFewReplicas => Reason::TooFewReplicas {
                    min: input.min_replicas,
                    through_scale_to_zero: false,
                },
                _ if rules.select_policy == SelectPolicy::Disabled => Reason::ScaleDownDisabled,
                _ => Reason::ScaleDownLimit {
                    policies: describe(rules),
                    limit: allowed,
                },
            });
            return (allowed, limit_reason);
        }
        within
    } else {
        within
    }
}

/// Drops scale events no policy period can still see.
pub(crate) fn prune_events(behavior: &Behavior, state: &mut State, now: Time) {
    let longest = behavior
        .scale_up
        .longest_period_seconds()
        .max(behavior.scale_down.longest_period_seconds());
    let cutoff = now.minus_millis(i64::from(longest) * 1000);
    state.scale_up_events.retain(|e| e.at > cutoff);
    state.scale_down_events.retain(|e| e.at > cutoff);
}
