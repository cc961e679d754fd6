//! The memory a decision needs from earlier ones, kept by the driver as plain data.
//!
//! The controller stores it in the custom resource's status (so a restarted or newly elected
//! controller keeps honouring windows), the local runtime in a map, the simulator in a struct.

use crate::observation::TrafficSample;
use crate::time::Time;
use serde::{Deserialize, Serialize};

/// Decision state carried from one decision to the next.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Past unstabilized recommendations, oldest first (HPA's `recommendations`), less those
    /// that can no longer bound a decision (see `behavior::normalize`).
    #[serde(default)]
    pub recommendations: Vec<Recommendation>,
    /// Replica increases made by scale-ups, oldest first.
    #[serde(default)]
    pub scale_up_events: Vec<ScaleEvent>,
    /// Replica decreases made by scale-downs, oldest first.
    #[serde(default)]
    pub scale_down_events: Vec<ScaleEvent>,
    /// Recent traffic counters, oldest first, for the windowed signals.
    #[serde(default)]
    pub traffic: Vec<TrafficSample>,
    /// Panic mode, while it lasts.
    #[serde(default)]
    pub panic: Option<PanicState>,
    /// The last time the lag signal saw lag above its threshold.
    #[serde(default)]
    pub last_lag_at: Option<Time>,
    /// The last time traffic or backlog was seen (for scale to zero).
    #[serde(default)]
    pub last_active_at: Option<Time>,
    /// Whether the initial scale was reached (or there was none to reach). A new state starts
    /// without it; a state stored before the field existed reads as reached, so that an
    /// upgrade does not apply the initial scale to a running target again.
    #[serde(default = "reached")]
    pub initial_scale_reached: bool,
    /// The SLO model's estimates and recent proposals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<crate::slo::SloState>,
    /// The LLM SLO's token model state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_slo: Option<crate::slo::tokens::TokenSloState>,
}

fn reached() -> bool {
    true
}

/// One unstabilized recommendation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    /// When it was made.
    pub at: Time,
    /// What it recommended.
    pub replicas: u32,
}

/// One applied change of replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleEvent {
    /// When it was applied.
    pub at: Time,
    /// How many replicas it added or removed (always positive).
    pub change: u32,
}

/// Knative-style panic mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PanicState {
    /// When panic began.
    pub since: Time,
    /// The last time the panic window was over the threshold.
    pub last_over_threshold: Time,
    /// The highest panic-window proposal seen in this panic.
    pub max_replicas: u32,
}

impl State {
    /// Records that the driver changed replicas from `from` to `to` at `at`.
    pub fn record_scale(&mut self, from: u32, to: u32, at: Time) {
        if to > from {
            self.scale_up_events.push(ScaleEvent {
                at,
                change: to - from,
            });
        } else if to < from {
            self.scale_down_events.push(ScaleEvent {
                at,
                change: from - to,
            });
        }
    }
}
