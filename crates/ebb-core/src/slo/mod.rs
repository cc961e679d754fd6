//! SLO-driven sizing: the user states a latency and the share of requests that must meet it;
//! the core estimates the traffic and the service online, forecasts the rate over the cold
//! start, and asks the queueing model for the fewest replicas that meet the SLO.
//!
//! - [`queueing`]: predicted attainment at `n` replicas (Erlang C, Allen-Cunneen, lognormal
//!   service), and the search for the fewest replicas that meet a target;
//! - [`dispatch`]: the closer model of least-outstanding dispatch, the referee's;
//! - [`bursts`]: GI/M/c's chance of waiting for arrivals burstier than Poisson;
//! - [`forecast`]: Holt-Winters over the arrival rate;
//! - [`estimate`]: the online estimates and the memory behind "keep a replica through a dip
//!   shorter than its cold start";
//! - [`backlog`]: the service time read while requests wait in the replicas' own queues;
//! - [`plan`]: one decision's proposal and its reasons;
//! - [`reached`]: the attainment reached, from the driver's counts of answers, beside the
//!   attainment predicted;
//! - [`tokens`]: the LLM SLO (TTFT and ITL) sized from the engines' own signals.

pub mod backlog;
pub mod bursts;
pub mod dispatch;
pub mod estimate;
pub mod forecast;
pub mod hedge;
pub mod idle;
pub mod plan;
pub mod queueing;
pub mod reached;
pub mod recurrence;
pub mod tokens;
pub mod transient;

pub use crate::policy::Tuning;
pub use estimate::SloState;
pub use plan::{plan, Plan, Range};

/// How far `a` is above `b`, percent (a reason's "forecast +18%"); 0 where `b` says nothing.
pub(crate) fn percent_over(a: f64, b: f64) -> f64 {
    if b > 0.0 && a.is_finite() {
        (a / b - 1.0) * 100.0
    } else {
        0.0
    }
}
