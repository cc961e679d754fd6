//! The control loop of a multi-model service. Every sync period each model's own decision
//! (an `ebb_core::Scaler` on that model's proxy counters) gives its desired replicas;
//! `ebb_core::placement::plan` turns them into a placement on the server replicas; this loop
//! applies the moves: start servers, load copies through the V2 repository API once their
//! server is ready, unload copies (a moved copy only after its replacement is ready, each
//! after its requests finish), and stop servers the plan emptied.

use crate::service::Service;
use bytes::Bytes;
use ebb_core::placement::{plan, ModelDemand, Move, ServerState};
use ebb_core::{Hold, Observation, Pod, PodPhase, Scaler, Time, TrafficSample};
use ebb_proxy::state::models::{Copy, CopyState, ModelEntry};
use ebb_proxy::state::Replica;
use http_body_util::Full;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn server_id(r: &Replica) -> String {
    format!("r{}", r.id)
}

impl Service {
    fn observe_model(&self, m: &ModelEntry, now: Time) -> Observation {
        let at = |i: Instant| self.state.core_time(i);
        let pods: Vec<Pod> = m
            .copies()
            .iter()
            .filter(|c| c.state() != CopyState::Leaving)
            .map(|c| Pod {
                name: server_id(&c.replica),
                phase: PodPhase::Running,
                ready: c.routable(),
                deleting: false,
                started_at: Some(at(c.replica.created)),
                ready_changed_at: Some(at(c.replica.created)),
                created_at: Some(at(c.replica.created)),
                requests: Default::default(),
                in_flight: Some(f64::from(c.in_flight.load(Ordering::Relaxed))),
            })
            .collect();
        let in_flight = ebb_proxy::state::take_mean_in_flight(
            &m.in_flight_samples,
            m.in_flight.load(Ordering::Relaxed) as f64,
        );
        Observation {
            current_replicas: pods.len() as u32,
            pods,
            metrics: Vec::new(),
            engine: None,
            traffic: Some(TrafficSample {
                at: now,
                in_flight,
                arrivals_total: m.arrivals.load(Ordering::Relaxed) as f64,
                completions_total: m.completions.load(Ordering::Relaxed) as f64,
                service: None,
                answered: None,
            }),
            external_count: None,
            fallbacks: Vec::new(),
            epoch_unix_ms: self.state.started_unix_ms,
        }
    }

    /// What the planner sees: server replicas not retiring, their copies, and leaving copies.
    fn placement_state(&self) -> Vec<ServerState> {
        let Some(models) = &self.state.models else {
            return Vec::new();
        };
        self.state
            .replicas()
            .iter()
            .filter(|r| !r.retiring.load(Ordering::Acquire) && !r.draining.load(Ordering::Acquire))
            .map(|r| {
                let mut s = ServerState {
                    id: server_id(r),
                    kind: self.cfg.name.clone(),
                    ..Default::default()
                };
                for (name, state) in models.on_replica(r.id) {
                    match state {
                        CopyState::Leaving => s.leaving.push(name),
                        _ => s.models.push(name),
                    }
                }
                s
            })
            .collect()
    }

    async fn repository_call(
        &self,
        replica: &Replica,
        model: &str,
        action: &str,
    ) -> Result<(), String> {
        let req = hyper::Request::post(format!(
            "http://127.0.0.1:{}/v2/repository/models/{model}/{action}",
            replica.port()
        ))
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(120), self.client.request(req)).await {
            Ok(Ok(r)) if r.status().is_success() => Ok(()),
            Ok(Ok(r)) => Err(format!("answered {}", r.status())),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out after 120s".into()),
        }
    }

    /// Loads a copy once its server is ready; on failure the copy is dropped (the next plan
    /// places it again).
    async fn load_copy(self: Arc<Self>, model: Arc<ModelEntry>, copy: Arc<Copy>) {
        let deadline = Instant::now() + self.cfg.readiness_timeout * 2;
        while !copy.replica.ready.load(Ordering::Acquire) {
            if Instant::now() > deadline || self.stopping.load(Ordering::Acquire) {
                model.remove(&copy);
                self.event(format!(
                    "{}: server r{} never became ready; will place it again",
                    model.name, copy.replica.id
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        match self
            .repository_call(&copy.replica, &model.name, "load")
            .await
        {
            Ok(()) => {
                copy.set(CopyState::Ready);
                self.state.ready_changed.notify_waiters();
                self.event(format!("{} loaded on r{}", model.name, copy.replica.id));
            }
            Err(e) => {
                model.remove(&copy);
                self.event(format!(
                    "{}: load on r{} failed: {e}",
                    model.name, copy.replica.id
                ));
            }
        }
    }

    /// Unloads a copy: after `replacement` (if any) is ready, stop routing to it, let its
    /// requests finish (up to the drain timeout), then unload.
    async fn unload_copy(
        self: Arc<Self>,
        model: Arc<ModelEntry>,
        copy: Arc<Copy>,
        replacement: Option<Arc<Copy>>,
    ) {
        if let Some(new) = replacement {
            let deadline = Instant::now() + self.cfg.readiness_timeout * 2;
            while new.state() != CopyState::Ready && Instant::now() < deadline {
                if !model.copies().iter().any(|c| Arc::ptr_eq(c, &new)) {
                    break; // the replacement failed: keep serving until the next plan
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if new.state() != CopyState::Ready {
                self.event(format!(
                    "{}: move from r{} cancelled, its replacement is not ready",
                    model.name, copy.replica.id
                ));
                return;
            }
        }
        copy.set(CopyState::Leaving);
        let deadline = Instant::now() + self.cfg.drain_timeout;
        while copy.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Err(e) = self
            .repository_call(&copy.replica, &model.name, "unload")
            .await
        {
            self.event(format!(
                "{}: unload on r{} failed: {e}",
                model.name, copy.replica.id
            ));
        }
        model.remove(&copy);
    }

    /// Stops a server the plan emptied, once its last copy is gone.
    async fn retire_server(self: Arc<Self>, replica: Arc<Replica>) {
        replica.retiring.store(true, Ordering::Release);
        let Some(models) = self.state.models.clone() else {
            return;
        };
        while !models.on_replica(replica.id).is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.event(format!(
            "server r{} emptied by the placement: stopping it",
            replica.id
        ));
        self.drain_and_stop(replica).await;
    }

    /// The multi-model control loop, until stopped.
    pub(crate) async fn control_models(self: Arc<Self>) {
        let (Some(cfg), Some(models)) = (self.cfg.models.clone(), self.state.models.clone()) else {
            return;
        };
        let mut scalers: BTreeMap<String, Scaler> = cfg
            .models
            .iter()
            .map(|m| (m.name.clone(), Scaler::new(m.policy.clone())))
            .collect();
        let mut tick = tokio::time::interval(self.cfg.sync_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let kinds = [cfg.server.clone()];
        loop {
            tick.tick().await;
            if self.stopping.load(Ordering::Acquire) {
                break;
            }
            let now = self.state.core_now();
            // An operator's pause holds every model's copies where they are: the models go on
            // deciding (and say what they would do), and the placement is left as it is.
            let hold = self.state.hold().map(|_| Hold::Current);
            // Each model decides on its own traffic.
            let mut demands = Vec::new();
            let mut decisions = BTreeMap::new();
            for (name, m) in &models.models {
                let obs = self.observe_model(m, now);
                let Some(scaler) = scalers.get_mut(name) else {
                    continue;
                };
                scaler.hold(hold);
                let d = scaler.decide(&obs, now);
                // A model with no copy is brought to its policy's floor, as the single-model
                // loop starts minReplicas replicas: from zero the core would read "scaled to
                // zero by someone else" and pause.
                let floor = if obs.current_replicas == 0 && hold.is_none() {
                    scaler.policy().min_replicas
                } else {
                    0
                };
                demands.push(ModelDemand {
                    name: name.clone(),
                    replicas: d.desired_replicas.max(floor),
                    memory_mib: m.memory_mib,
                    server_kind: None,
                });
                decisions.insert(name.clone(), d);
            }
            let current = self.placement_state();
            let p = plan(&demands, &kinds, &current);
            for (name, d) in decisions {
                if d.desired_replicas == d.current_replicas {
                    continue;
                }
                self.state.note_scale(&d, Some(&name));
                // Replicas the placement could not fit were not reached.
                let unplaced = p
                    .unplaced
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(0, |(_, k)| *k);
                if let Some(scaler) = scalers.get_mut(&name) {
                    scaler.applied(d.desired_replicas.saturating_sub(unplaced), now);
                }
            }
            if p.moves.is_empty() || hold.is_some() {
                continue;
            }
            for r in &p.reasons {
                self.event(format!("placement: {r}"));
            }
            self.apply(&p.moves, &models);
        }
    }

    fn apply(self: &Arc<Self>, moves: &[Move], models: &ebb_proxy::state::models::ModelTable) {
        let mut servers: BTreeMap<String, Arc<Replica>> = self
            .state
            .replicas()
            .into_iter()
            .map(|r| (server_id(&r), r))
            .collect();
        // New copies by (model, server), for the unloads they replace.
        let mut loaded: BTreeMap<(String, String), Arc<Copy>> = BTreeMap::new();
        for mv in moves {
            match mv {
                Move::AddServer { server, .. } => match self.add_replica() {
                    Ok(r) => {
                        self.event(format!(
                            "server r{} started for the placement ({server})",
                            r.id
                        ));
                        servers.insert(server.clone(), r);
                    }
                    Err(e) => self.event(format!("could not start a server: {e}")),
                },
                Move::Load { model, server, .. } => {
                    let (Some(m), Some(r)) = (models.models.get(model), servers.get(server)) else {
                        continue;
                    };
                    let copy = Copy::loading(r.clone());
                    if let Ok(mut c) = m.copies.write() {
                        c.push(copy.clone());
                    }
                    loaded.insert((model.clone(), server.clone()), copy.clone());
                    tokio::spawn(self.clone().load_copy(m.clone(), copy));
                }
                Move::Unload {
                    model,
                    server,
                    replaced_by,
                } => {
                    let (Some(m), Some(r)) = (models.models.get(model), servers.get(server)) else {
                        continue;
                    };
                    let Some(copy) = m
                        .copies()
                        .into_iter()
                        .find(|c| Arc::ptr_eq(&c.replica, r) && c.state() != CopyState::Leaving)
                    else {
                        continue;
                    };
                    // The planner pairs a move's unload with the load that replaces it.
                    let replacement = replaced_by
                        .as_ref()
                        .and_then(|new| loaded.get(&(model.clone(), new.clone())).cloned());
                    if replacement.is_none() {
                        copy.set(CopyState::Leaving);
                    }
                    tokio::spawn(self.clone().unload_copy(m.clone(), copy, replacement));
                }
                Move::RemoveServer { server } => {
                    if let Some(r) = servers.get(server) {
                        tokio::spawn(self.clone().retire_server(r.clone()));
                    }
                }
            }
        }
    }
}
