//! `ebb gateway`: Ebb's proxy in the cluster, in front of a Service's pods.
//!
//! It learns the ready pods from a watch of the Pods its selector names (no polling; see
//! [`endpoints`]), checks it can reach each of them (`probe.rs`), routes each request to the
//! one with the fewest in flight, and holds requests while none is ready: a target scaled to
//! zero keeps its first requests until a replica is up, instead of losing them. Its
//! `/metrics` (on the admin address) carries the proxy's counters, held requests included in
//! `ebb_in_flight`, which an Autoscaler's `gateway` source reads from every gateway replica
//! and sums: the held requests are the demand that brings the target back from zero. Health
//! ejection, retries, limits and streaming are those of `ebb up`'s proxy, shared through
//! `ebb-local` and `ebb-proxy`.

mod autoscaler;
pub mod endpoints;
mod probe;

use ebb_proxy::admin::Admin;
use ebb_proxy::proxy::{Proxy, QueueLimits};
use ebb_proxy::server::{self, Listener};
use ebb_proxy::settings::{HealthSettings, ProxySettings};
use ebb_proxy::state::{Replica, ServiceState};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the gateway serves and where.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The name its metrics carry (`service="..."`): the target's, usually.
    pub name: String,
    /// The pods' namespace.
    pub namespace: String,
    /// Label selector of the pods (`app=model`).
    pub selector: String,
    /// The pods' serving port.
    pub target_port: u16,
    /// Where it takes requests.
    pub listen: SocketAddr,
    /// Where `/metrics`, `/ebb/status`, `/healthz` and `/readyz` are served.
    pub admin: SocketAddr,
    /// How many requests it holds while no pod is ready, and for how long.
    pub queue: QueueLimits,
    /// Limits, timeouts and retries of the proxy.
    pub proxy: ProxySettings,
    /// Ejection of pods whose requests keep failing.
    pub health: HealthSettings,
    /// How long a stop waits for requests in flight.
    pub drain: Duration,
    /// Where the slots a pod serves at once come from: answers to requests sent to a full
    /// pod are not counted as service times.
    pub slots: SlotsSource,
}

/// Where the gateway learns how many requests a pod serves at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotsSource {
    /// Not known: every answer is timed as service.
    Unknown,
    /// Stated on the command line.
    Fixed(u32),
    /// The named Autoscaler's `slo.slotsPerReplica` (in the gateway's namespace), followed as
    /// it changes.
    Autoscaler(String),
}

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// An address could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The pods the proxy routes to, kept equal to the ready pods the watch reports.
struct Routes {
    state: Arc<ServiceState>,
    by_name: BTreeMap<String, Routed>,
    health: HealthSettings,
    next_id: u32,
}

/// A pod in rotation, with the task that checks it can be reached (`probe.rs`), which ends
/// when the pod leaves.
struct Routed {
    replica: Arc<Replica>,
    check: tokio::task::AbortHandle,
}

impl Drop for Routed {
    fn drop(&mut self) {
        self.check.abort();
    }
}

impl Routes {
    /// Makes the routed pods those of `wanted`: new ones take requests at once (the kubelet
    /// found them ready), gone ones take no new requests and finish those they have, and those
    /// in `drained` take no new requests until the controller's drain ends.
    fn sync(&mut self, wanted: &BTreeMap<String, SocketAddr>, drained: &[String]) {
        let current = self
            .by_name
            .iter()
            .map(|(n, r)| (n.clone(), r.replica.addr))
            .collect();
        let (add, remove) = endpoints::diff(&current, wanted);
        let changed = !add.is_empty() || !remove.is_empty();
        if changed {
            self.apply(add, remove);
        }
        let mut drains_changed = false;
        for (name, r) in &self.by_name {
            let drain = drained.contains(name);
            if r.replica.spared.swap(drain, Ordering::AcqRel) != drain {
                drains_changed = true;
                self.state.event(if drain {
                    format!("pod {name} drained: the controller is about to remove it (it gets requests only if no other pod can take them)")
                } else {
                    format!("pod {name} back in rotation: its drain ended")
                });
            }
        }
        if changed || drains_changed {
            self.state.ready_changed.notify_waiters();
        }
    }

    fn apply(&mut self, add: Vec<(String, SocketAddr)>, remove: Vec<String>) {
        let Ok(mut replicas) = self.state.replicas.write() else {
            return;
        };
        for name in remove {
            if let Some(r) = self.by_name.remove(&name) {
                replicas.retain(|x| !Arc::ptr_eq(x, &r.replica));
                self.state.event(format!("pod {name} left the rotation"));
            }
        }
        for (name, addr) in add {
            self.next_id += 1;
            let r = Arc::new(Replica::at(self.next_id, addr, name.clone()));
            r.ready.store(true, Ordering::Release);
            if let Ok(mut since) = r.ready_since.lock() {
                *since = Some(Instant::now());
            }
            replicas.push(r.clone());
            let check = tokio::spawn(probe::check_pod(
                self.state.clone(),
                r.clone(),
                name.clone(),
                self.health.clone(),
            ));
            let routed = Routed {
                replica: r,
                check: check.abort_handle(),
            };
            self.by_name.insert(name.clone(), routed);
            self.state
                .event(format!("pod {name} at {addr} joined the rotation"));
        }
    }
}

/// Watches the pods and keeps the routes current until the process ends; `synced` turns
/// true once the first list has been applied.
async fn follow_pods(
    client: kube::Client,
    cfg: GatewayConfig,
    state: Arc<ServiceState>,
    synced: Arc<AtomicBool>,
) {
    let (store, writer): (Store<Pod>, _) = reflector::store();
    let api: Api<Pod> = Api::namespaced(client, &cfg.namespace);
    let mut routes = Routes {
        state,
        by_name: BTreeMap::new(),
        health: cfg.health.clone(),
        next_id: 0,
    };
    let clock = crate::context::system_clock();
    let mut events = std::pin::pin!(
        watcher(api, watcher::Config::default().labels(&cfg.selector))
            .default_backoff()
            .reflect(writer)
    );
    // The store is complete from the first list's end (and again after each re-list). A tick
    // ends drains whose time has passed even when no pod changes.
    let mut listed = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let event = tokio::select! {
            e = events.next() => match e { Some(e) => Some(e), None => break },
            _ = tick.tick() => None,
        };
        match event {
            Some(Err(e)) => {
                tracing::warn!("pod watch: {e}");
                continue;
            }
            Some(Ok(watcher::Event::Init | watcher::Event::InitApply(_))) => {
                listed = false;
                continue;
            }
            Some(Ok(watcher::Event::InitDone)) => listed = true,
            _ if !listed => continue,
            _ => {}
        }
        let pods = store.state();
        let all = pods.iter().map(|p| p.as_ref());
        let drained = endpoints::drained(pods.iter().map(|p| p.as_ref()), clock().as_millis());
        routes.sync(&endpoints::wanted(all, cfg.target_port), &drained);
        synced.store(true, Ordering::Release);
    }
}

fn bind(what: &'static str, addr: SocketAddr) -> Result<tokio::net::TcpListener, GatewayError> {
    server::bind(addr).map_err(|source| GatewayError::Bind { what, addr, source })
}

/// Runs the gateway until `shutdown` completes; then stops taking connections, answers the
/// requests already taken (up to `drain`) and returns.
pub async fn run(
    client: kube::Client,
    cfg: GatewayConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), GatewayError> {
    let listener = server::bind_shared(cfg.listen, cfg.proxy.threads).map_err(|source| {
        GatewayError::Bind {
            what: "requests",
            addr: cfg.listen,
            source,
        }
    })?;
    let admin_listener = bind("admin", cfg.admin)?;
    let mut state = ServiceState::new(&cfg.name, Instant::now());
    if let SlotsSource::Fixed(slots) = cfg.slots {
        state = state.with_slots_per_replica(slots);
    }
    let state = Arc::new(state);
    let synced = Arc::new(AtomicBool::new(false));
    let slots_watch = match &cfg.slots {
        SlotsSource::Autoscaler(name) => Some(tokio::spawn(autoscaler::follow(
            client.clone(),
            cfg.namespace.clone(),
            name.clone(),
            state.clone(),
        ))),
        _ => None,
    };
    let watch = tokio::spawn(follow_pods(
        client,
        cfg.clone(),
        state.clone(),
        synced.clone(),
    ));
    let admin = tokio::spawn(
        Admin::new(vec![state.clone()])
            .with_readiness(synced)
            .serve(admin_listener),
    );
    let ctx = Listener::new(
        state.counters.clone(),
        Arc::new(|text| tracing::warn!("gateway listener: {text}")),
    );
    // Held requests are answered 503 when this replica stops: another replica holds them.
    let threads = ebb_proxy::proxy::serve_on_threads("gateway", listener, &ctx, || {
        Proxy::with(
            state.clone(),
            cfg.proxy.clone(),
            cfg.health.clone(),
            cfg.queue,
            Some(ctx.stop.clone()),
        )
    })
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .map_err(|source| GatewayError::Bind {
        what: "a proxy thread",
        addr: cfg.listen,
        source,
    })?;
    tracing::info!(
        listen = %cfg.listen, admin = %cfg.admin, namespace = %cfg.namespace, selector = %cfg.selector,
        "gateway serving pods on port {}", cfg.target_port
    );
    shutdown.await;
    ctx.stop.cancel();
    ctx.connections.close();
    if tokio::time::timeout(cfg.drain, ctx.connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connections still open after {:?}",
            ctx.connections.len(),
            cfg.drain
        );
    }
    drop(threads);
    watch.abort();
    slots_watch.inspect(tokio::task::JoinHandle::abort);
    admin.abort();
    Ok(())
}
