//! The gateway's own check of each pod it routes to. The kubelet's readiness says whether a
//! pod can serve; it cannot say whether this gateway can reach it (a failed node's pods stay
//! Ready in the API until the node controller notices, 40 s or more), and it never ends an
//! ejection. So every pod in rotation is checked as HAProxy's `check` does: a TCP connect to
//! its serving port every `probeIntervalMs`. `unhealthyProbes` failures in a row take it out
//! of rotation, and a passing check puts it back, an ejected pod once its ejection is over
//! (without this an ejected pod would never come back).

use ebb_local::config::proxy::HealthSettings;
use ebb_local::health::ProbeChange;
use ebb_local::state::{Replica, ServiceState};
use ebb_proxy::counters::ProxyCounters;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Checks `replica` (pod `name`) until the task is aborted, when the pod leaves rotation.
pub(crate) async fn check_pod(
    state: Arc<ServiceState>,
    replica: Arc<Replica>,
    name: String,
    health: HealthSettings,
) {
    let mut tick = tokio::time::interval(health.probe_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let passed = reachable(replica.addr, health.probe_timeout).await;
        match replica.health.probe(passed, Instant::now(), &health) {
            ProbeChange::None => {}
            ProbeChange::FailedProbes(n) => {
                replica.ready.store(false, Ordering::Release);
                ProxyCounters::bump(&state.counters.probe_failures);
                state.event(format!(
                    "pod {name} at {} unreachable {n} times in a row; out of rotation",
                    replica.addr
                ));
            }
            change @ (ProbeChange::Returned | ProbeChange::Recovered) => {
                replica.ready.store(true, Ordering::Release);
                ProxyCounters::bump(&state.counters.returns);
                state.ready_changed.notify_waiters();
                state.event(format!(
                    "pod {name} back in rotation ({})",
                    if change == ProbeChange::Returned {
                        "ejection over, reachable"
                    } else {
                        "reachable again"
                    }
                ));
            }
        }
    }
}

/// Whether a TCP connection to `addr` opens within `timeout`.
async fn reachable(addr: SocketAddr, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}
