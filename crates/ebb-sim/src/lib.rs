//! # ebb-sim: Ebb's simulator
//!
//! Replays a traffic trace (or a synthetic pattern) against a simulated cluster and measures
//! SLO attainment and cost for Ebb and for faithful baselines. Deterministic: the same inputs
//! and seed give byte-identical results. Every decision comes from `ebb_core::decide`, the code
//! production runs.

#![forbid(unsafe_code)]

pub mod autoscaler;
pub mod cluster;
pub mod compare;
pub mod engine;
pub mod fleet;
pub mod llm;
pub mod multi;
pub mod multi_report;
pub mod observe;
pub mod oracle;
pub mod parallel;
pub mod record;
pub mod report;
pub mod run;
pub mod service;
pub mod synthetic;
pub mod trace;
pub mod tune;
pub mod workload;

pub use cluster::{ClusterConfig, ColdStart, Start};
pub use record::PolicyResult;
pub use run::{run_policy, RunConfig};
pub use service::ServiceTime;
pub use workload::Workload;
