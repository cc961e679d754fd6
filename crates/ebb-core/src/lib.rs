//! # ebb-core: Ebb's decision core
//!
//! Pure: no I/O, no async, no clock. Time and observations come in as values; a [`Decision`]
//! (desired replicas, each metric's proposal, the reasons, and the next [`State`]) comes out.
//! The Kubernetes controller, the local runtime and the simulator all decide through one
//! [`Scaler`] (a policy with the state its decisions carry, over [`decide`]), so a policy
//! behaves the same in a test, a simulation and production.
//!
//! ```
//! use ebb_core::{Observation, Policy, Scaler, Time};
//! let policy = Policy::from_yaml("maxReplicas: 10\nexternalCount: {mode: desiredReplicas}").unwrap();
//! let mut scaler = Scaler::new(policy);
//! let obs = Observation {
//!     current_replicas: 2,
//!     external_count: Some(ebb_core::Sample { value: 5.0, at: Time::from_secs(100) }),
//!     ..Default::default()
//! };
//! let d = scaler.decide(&obs, Time::from_secs(100));
//! assert_eq!(d.desired_replicas, 5);
//! scaler.applied(5, Time::from_secs(100)); // the driver reached 5
//! assert_eq!(scaler.state().scale_up_events.len(), 1);
//! ```

#![forbid(unsafe_code)]

pub mod behavior;
pub mod calculator;
pub mod conformance;
mod decide;
pub mod engine;
pub mod formula;
pub mod observation;
pub mod placement;
pub mod pod_samples;
pub mod policy;
pub mod pools;
pub mod quantity;
pub mod reason;
pub mod sanitize;
pub mod scaler;
pub mod schedule;
pub mod signals;
pub mod slo;
pub mod state;
pub mod time;
pub mod victims;

pub use decide::{decide, Decision, Proposal};
pub use observation::{
    AnsweredWithin, EngineSample, Fallback, MetricObservation, MetricValues, Observation, Pod,
    PodPhase, PodSample, Sample, ServiceTotals, SourceFallback, TrafficSample, WithinLatency,
};
pub use policy::{Hold, Policy, PolicyError};
pub use reason::{LimitReason, Reason, TokenGoal};
pub use scaler::Scaler;
pub use state::State;
pub use time::Time;
pub use victims::rank_victims;
