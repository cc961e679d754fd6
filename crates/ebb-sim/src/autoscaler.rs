//! The policies a simulation compares. Ebb, HPA and Knative's KPA all run through
//! `ebb_core::decide` (HPA's algorithm is part of the core and passes Kubernetes' own test
//! cases; the KPA baseline is the core's concurrency mode set to Knative's defaults, checked
//! against Knative's own autoscaler test vectors in `ebb-core/tests/kpa.rs`, which name the
//! two places Ebb differs on purpose),
//! each behind the observation pipeline its real deployment has. Fixed peak provisioning and
//! the oracle need no decisions.

use crate::observe::{core_time, Observed, Pipeline};
use ebb_core::{Policy, Scaler};

/// What an autoscaler asks the cluster for.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Desired replicas.
    pub desired: u32,
    /// Replica ids to remove first on scale-in.
    pub victims: Vec<u32>,
    /// The decision's reasons, for the log.
    pub reasons: String,
}

impl Command {
    /// What a core decision asks of the fleet; `None` when it keeps the count.
    pub fn from_decision(d: &ebb_core::Decision) -> Option<Command> {
        (d.desired_replicas != d.current_replicas).then(|| Command {
            desired: d.desired_replicas,
            victims: d.victims.iter().filter_map(|v| v.parse().ok()).collect(),
            reasons: d.summary(),
        })
    }
}

/// A policy under simulation.
pub trait Autoscaler: Send {
    /// Name in reports.
    fn name(&self) -> &str;
    /// Seconds between scrapes (0: never scrapes).
    fn scrape_interval(&self) -> f64;
    /// Seconds between decisions.
    fn sync_period(&self) -> f64;
    /// Takes a scrape.
    fn scrape(&mut self, fleet: &dyn Observed, now: f64);
    /// Decides; `None` leaves the replicas as they are.
    fn decide(&mut self, fleet: &dyn Observed, now: f64) -> Option<Command>;
    /// Tells the autoscaler the command was applied and the count it reached.
    fn applied(&mut self, _from: u32, _to: u32, _now: f64) {}
    /// Replicas at time zero, ready.
    fn initial_replicas(&self) -> u32;
    /// A cold start to use instead of the cluster's (the oracle's instant capacity).
    fn cold_start_override(&self) -> Option<f64> {
        None
    }
}

/// A policy run by the decision core behind an observation pipeline.
pub struct CorePolicy {
    name: String,
    scaler: Scaler,
    pipeline: Pipeline,
    sync_period: f64,
    initial: u32,
}

impl CorePolicy {
    /// A core-driven autoscaler.
    pub fn new(
        name: impl Into<String>,
        policy: Policy,
        pipeline: Pipeline,
        sync_period: f64,
        initial: u32,
    ) -> CorePolicy {
        let pipeline = if policy.engine.is_some() {
            pipeline.reading_engines()
        } else {
            pipeline
        };
        CorePolicy {
            name: name.into(),
            scaler: Scaler::new(policy),
            pipeline,
            sync_period,
            initial,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        self.scaler.policy()
    }
}

impl Autoscaler for CorePolicy {
    fn name(&self) -> &str {
        &self.name
    }
    fn scrape_interval(&self) -> f64 {
        self.pipeline.scrape_interval
    }
    fn sync_period(&self) -> f64 {
        self.sync_period
    }
    fn scrape(&mut self, fleet: &dyn Observed, now: f64) {
        self.pipeline.scrape(fleet, now);
    }
    fn decide(&mut self, fleet: &dyn Observed, now: f64) -> Option<Command> {
        let obs = self.pipeline.observe(self.scaler.policy(), fleet, now);
        Command::from_decision(&self.scaler.decide(&obs, core_time(now)))
    }
    fn applied(&mut self, _from: u32, to: u32, now: f64) {
        self.scaler.applied(to, core_time(now));
    }
    fn initial_replicas(&self) -> u32 {
        self.initial
    }
}

/// A fixed replica schedule: fixed peak provisioning (constant) or the oracle (per second).
pub struct Schedule {
    name: String,
    per_second: Vec<u32>,
    instant: bool,
}

impl Schedule {
    /// Fixed provisioning at `replicas`.
    pub fn fixed(name: impl Into<String>, replicas: u32) -> Schedule {
        Schedule {
            name: name.into(),
            per_second: vec![replicas],
            instant: false,
        }
    }

    /// The oracle's schedule: replicas wanted in each second, with instant capacity.
    pub fn oracle(name: impl Into<String>, per_second: Vec<u32>) -> Schedule {
        Schedule {
            name: name.into(),
            per_second,
            instant: true,
        }
    }

    fn at(&self, now: f64) -> u32 {
        let i = (now.max(0.0) as usize).min(self.per_second.len().saturating_sub(1));
        self.per_second.get(i).copied().unwrap_or(0)
    }
}

impl Autoscaler for Schedule {
    fn name(&self) -> &str {
        &self.name
    }
    fn scrape_interval(&self) -> f64 {
        0.0
    }
    fn sync_period(&self) -> f64 {
        if self.per_second.len() > 1 {
            1.0
        } else {
            f64::INFINITY
        }
    }
    fn scrape(&mut self, _fleet: &dyn Observed, _now: f64) {}
    fn decide(&mut self, fleet: &dyn Observed, now: f64) -> Option<Command> {
        let desired = self.at(now);
        (desired != fleet.current_replicas()).then(|| Command {
            desired,
            victims: Vec::new(),
            reasons: "schedule".into(),
        })
    }
    fn initial_replicas(&self) -> u32 {
        self.at(0.0)
    }
    fn cold_start_override(&self) -> Option<f64> {
        self.instant.then_some(0.0)
    }
}
