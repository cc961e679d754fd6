//! The one way a driver decides: a policy and the state its decisions carry.
//!
//! Drivers feed observations and report what they reached; the scaler owns the state
//! between decisions (quinn-proto's sans-IO `Connection` is the model). Every driver gets the
//! same meaning: a decision's own memory (recommendations, traffic history, SLO estimates) is
//! kept whether or not it was carried out, and a scale event counts against the rate
//! policies only for the replicas the driver says it actually reached.

use crate::decide::decide_from;
use crate::{Decision, Observation, Policy, State, Time};

/// A decision waiting to be carried out: the count it started from.
#[derive(Debug, Clone, Copy)]
struct Pending {
    from: u32,
}

/// A policy with the state its decisions carry.
#[derive(Debug, Clone)]
pub struct Scaler {
    policy: Policy,
    state: State,
    pending: Option<Pending>,
}

impl Scaler {
    /// A scaler with no history.
    pub fn new(policy: Policy) -> Scaler {
        Scaler::with_state(policy, State::default())
    }

    /// A scaler resuming from `state` (a restart, a new leader, a status read back).
    pub fn with_state(policy: Policy, state: State) -> Scaler {
        Scaler {
            policy,
            state,
            pending: None,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A changed policy (a spec edit): the history stays.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// An operator's hold on the count (pause), or `None` to let the policy scale again.
    pub fn hold(&mut self, hold: Option<crate::policy::Hold>) {
        self.policy.hold = hold;
    }

    /// The state to persist: everything the next decision needs.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Decides from `obs` at `now`. A decision that changes the count waits for
    /// [`applied`](Self::applied); one not carried out before the next `decide` records no
    /// scale event.
    pub fn decide(&mut self, obs: &Observation, now: Time) -> Decision {
        let d = decide_from(&self.policy, obs, std::mem::take(&mut self.state), now);
        self.state = d.state.clone();
        self.pending = (d.desired_replicas != d.current_replicas).then_some(Pending {
            from: d.current_replicas,
        });
        d
    }

    /// Raises `d`, this scaler's last decision, to at least `floor` replicas for a reason
    /// outside its own policy (the other pool's need: [`crate::pools`]), within its
    /// `maxReplicas`. An operator's hold wins; a raise shortens a scale-in's victims to the
    /// pods still to go.
    pub fn raise(&mut self, d: &mut Decision, floor: u32, reason: crate::Reason) {
        let to = floor.min(self.policy.max_replicas.max(d.desired_replicas));
        if self.policy.hold.is_some() || to <= d.desired_replicas {
            return;
        }
        d.desired_replicas = to;
        d.proposed_replicas = d.proposed_replicas.max(to);
        d.reasons.push(reason);
        let removed = d.current_replicas.saturating_sub(to) as usize;
        d.victims.truncate(removed);
        if d.victims.is_empty() {
            d.reasons
                .retain(|r| !matches!(r, crate::Reason::Victims { .. }));
        }
        self.pending = (d.desired_replicas != d.current_replicas).then_some(Pending {
            from: d.current_replicas,
        });
    }

    /// The driver reached `reached` replicas at `at` carrying out the last decision: the
    /// change from the count it started from is a scale event.
    pub fn applied(&mut self, reached: u32, at: Time) {
        if let Some(p) = self.pending.take() {
            self.state.record_scale(p.from, reached, at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;

    /// An external desired count, limited to 2 new pods a minute.
    fn policy() -> Policy {
        Policy::from_yaml(
            "maxReplicas: 10\nexternalCount: {mode: desiredReplicas}\nbehavior:\n  scaleUp: {stabilizationWindowSeconds: 0, policies: [{type: Pods, value: 2, periodSeconds: 60}]}\n",
        )
        .unwrap()
    }

    /// `current` replicas and an external count asking for `wanted`.
    fn obs(current: u32, wanted: f64, at: i64) -> Observation {
        Observation {
            current_replicas: current,
            pods: Vec::new(),
            metrics: Vec::new(),
            traffic: None,
            external_count: Some(crate::Sample {
                value: wanted,
                at: Time::from_millis(at),
            }),
            ..Observation::default()
        }
    }

    #[test]
    fn only_reached_replicas_count_against_the_rate_policy() {
        let mut s = Scaler::new(policy());
        let d = s.decide(&obs(1, 8.0, 1_000), Time::from_millis(1_000));
        assert_eq!(d.desired_replicas, 3, "at most 2 pods a minute");
        // Only one of the two new replicas started.
        s.applied(2, Time::from_millis(1_000));
        assert_eq!(s.state().scale_up_events.len(), 1);
        assert_eq!(s.state().scale_up_events[0].change, 1);
        // So one more may start within the same minute.
        let d = s.decide(&obs(2, 8.0, 2_000), Time::from_millis(2_000));
        assert_eq!(d.desired_replicas, 3);
    }

    #[test]
    fn a_decision_not_carried_out_records_no_scale_but_keeps_its_memory() {
        let mut s = Scaler::new(policy());
        let d = s.decide(&obs(1, 8.0, 1_000), Time::from_millis(1_000));
        assert!(d.desired_replicas > 1);
        assert!(!s.state().recommendations.is_empty());
        // No applied(): the next decision starts from the same count, with no event.
        let d = s.decide(&obs(1, 8.0, 2_000), Time::from_millis(2_000));
        assert!(s.state().scale_up_events.is_empty());
        assert_eq!(d.desired_replicas, 3);
        s.applied(1, Time::from_millis(2_000));
        assert!(s.state().scale_up_events.is_empty(), "nothing was reached");
    }

    fn raised(floor: u32) -> Reason {
        Reason::PoolRatio {
            pool: "decode".into(),
            own: 0,
            to: floor,
            other: 0,
            min: 1.0,
            max: f64::INFINITY,
        }
    }

    #[test]
    fn a_raise_shortens_a_scale_in_and_is_carried_out_as_the_decision_would_be() {
        let mut s = Scaler::new(policy());
        let mut d = s.decide(&obs(5, 1.0, 1_000), Time::from_millis(1_000));
        d.victims = vec!["a".into(), "b".into(), "c".into(), "d".into()];
        assert_eq!(d.desired_replicas, 1);
        // Raised to 3: two of the five go, not four.
        s.raise(&mut d, 3, raised(3));
        assert_eq!((d.desired_replicas, d.proposed_replicas), (3, 3));
        assert_eq!(d.victims, ["a", "b"]);
        assert!(d.has_reason("PoolRatio"));
        s.applied(3, Time::from_millis(1_000));
        assert_eq!(s.state().scale_down_events.len(), 1);
        assert_eq!(s.state().scale_down_events[0].change, 2);
        // Raised to the count it has: nothing to carry out, no event.
        let mut d = s.decide(&obs(3, 1.0, 2_000), Time::from_millis(2_000));
        s.raise(&mut d, 3, raised(3));
        assert_eq!(d.desired_replicas, 3);
        assert!(d.victims.is_empty() && !d.has_reason("Victims"));
        s.applied(3, Time::from_millis(2_000));
        assert_eq!(s.state().scale_down_events.len(), 1);
    }

    #[test]
    fn a_raise_stops_at_the_maximum_and_leaves_a_hold_alone() {
        let mut s = Scaler::new(policy());
        let mut d = s.decide(&obs(2, 2.0, 1_000), Time::from_millis(1_000));
        s.raise(&mut d, 50, raised(50));
        assert_eq!(d.desired_replicas, 10, "maxReplicas");
        s.hold(Some(crate::Hold::Current));
        let mut d = s.decide(&obs(2, 2.0, 2_000), Time::from_millis(2_000));
        s.raise(&mut d, 6, raised(6));
        assert_eq!(d.desired_replicas, 2, "held");
        assert!(!d.has_reason("PoolRatio"));
    }

    #[test]
    fn an_unchanged_count_keeps_the_state_at_once() {
        let mut s = Scaler::new(policy());
        let d = s.decide(&obs(2, 2.0, 1_000), Time::from_millis(1_000));
        assert_eq!(d.desired_replicas, d.current_replicas);
        assert_eq!(s.state(), &d.state);
        s.applied(5, Time::from_millis(1_000));
        assert!(
            s.state().scale_up_events.is_empty(),
            "no decision was pending"
        );
    }
}
