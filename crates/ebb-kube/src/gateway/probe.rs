//! The gateway's own check of each pod it routes to. The kubelet's readiness says whether a
//! pod can serve; it cannot say whether this gateway can reach it (a failed node's pods stay
//! Ready in the API until the node controller notices, 40 s or more), and it never ends an
//! ejection. So every pod in rotation is checked as HAProxy's `check` does: a TCP connect to
//! its serving port every `probeIntervalMs`. `unhealthyProbes` failures in a row take it out
//! of rotation, and a passing check puts it back, an ejected pod once its ejection is over
//! (without this an ejected pod would never come back).

use ebb_proxy::health::ProbeChange;
use ebb_proxy::settings::HealthSettings;
use ebb_proxy::state::{Replica, ServiceState};
use std::net::SocketAddr;
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
        match state.apply_probe(&replica, passed, Instant::now(), &health) {
            ProbeChange::None => {}
            ProbeChange::FailedProbes(n) => {
                state.event(format!(
                    "pod {name} at {} unreachable {n} times in a row; out of rotation",
                    replica.addr
                ));
            }
            change @ (ProbeChange::Returned | ProbeChange::Recovered) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn settings() -> HealthSettings {
        HealthSettings::from_yaml(
            "--health",
            "{probeIntervalMs: 20, probeTimeoutMs: 100, baseEjectionSeconds: 0.2}",
        )
        .unwrap()
    }

    async fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(5), "{what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn an_ejected_pod_comes_back_once_its_ejection_is_over_and_it_can_be_reached() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let state = Arc::new(ServiceState::new("m", Instant::now()));
        let replica = Arc::new(Replica::at(1, listener.local_addr().unwrap(), "p".into()));
        replica.ready.store(true, Ordering::Release);
        let health = settings();
        replica.health.eject(Instant::now(), &health);
        let check = tokio::spawn(check_pod(
            state.clone(),
            replica.clone(),
            "p".into(),
            health,
        ));
        wait_until("back from its ejection", || !replica.health.is_ejected()).await;
        assert!(replica.routable());
        let events = state.events.lock().unwrap().clone();
        assert!(
            events.iter().any(|e| e.contains("ejection over")),
            "{events:?}"
        );
        // Unreachable now: out of rotation after two failed checks.
        drop(listener);
        wait_until("out of rotation", || !replica.ready.load(Ordering::Acquire)).await;
        assert!(!replica.routable());
        check.abort();
    }
}
