//! One service: its replicas as child processes (started, checked for readiness, restarted
//! with backoff after a crash, drained and stopped on scale-in) and the control loop that
//! feeds the proxy's counters to an `ebb_core::Scaler` and applies its decisions, reporting
//! the replicas it actually started or stopped.

use crate::config::{Readiness, ServiceConfig};
use crate::grpc_health;
use bytes::Bytes;
use ebb_core::{Observation, Pod, PodPhase, Scaler, Time, TrafficSample};
use ebb_proxy::counters::ProxyCounters;
use ebb_proxy::health::ProbeChange;
use ebb_proxy::state::{Replica, ServiceState};
use ebb_proxy::upstream::{upstream, upstream_h2c, Upstream};
use http_body_util::{BodyExt, Full};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// A running service.
pub struct Service {
    /// Its configuration.
    pub cfg: ServiceConfig,
    /// State shared with the proxy.
    pub state: Arc<ServiceState>,
    ebb_exe: PathBuf,
    next_id: AtomicU32,
    stops: Mutex<Vec<(u32, watch::Sender<bool>)>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pub(crate) client: Upstream,
    /// HTTP/2 client for gRPC readiness probes.
    h2c_client: Upstream,
    pub(crate) stopping: AtomicBool,
    replica_seconds_ms: AtomicU64,
    max_replicas_seen: AtomicU32,
}

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn signal_group(pid: u32, sig: i32) {
    if pid > 0 {
        // The replica runs in its own process group: signal the whole group, so that a
        // wrapper script's children go too.
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        unsafe {
            libc::kill(-(pid as i32), sig);
        }
    }
}

impl Service {
    /// A service with no replicas yet.
    pub fn new(cfg: ServiceConfig, state: Arc<ServiceState>) -> Arc<Service> {
        Arc::new(Service {
            client: upstream(cfg.proxy.connect_timeout),
            h2c_client: upstream_h2c(cfg.proxy.connect_timeout),
            cfg,
            state,
            ebb_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("ebb")),
            next_id: AtomicU32::new(0),
            stops: Mutex::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            replica_seconds_ms: AtomicU64::new(0),
            max_replicas_seen: AtomicU32::new(0),
        })
    }

    pub(crate) fn event(&self, text: String) {
        self.state.event(text);
    }

    fn command(&self, port: u16) -> Command {
        let args: Vec<String> = self
            .cfg
            .command
            .iter()
            .map(|a| {
                a.replace("{port}", &port.to_string())
                    .replace("{ebb}", &self.ebb_exe.to_string_lossy())
            })
            .collect();
        let mut cmd = Command::new(&args[0]);
        cmd.args(&args[1..])
            .envs(&self.cfg.env)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        // If Ebb itself dies without its shutdown (SIGKILL, a crash), the kernel kills the
        // replica too, so that no orphan keeps serving.
        // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Starts one more replica.
    pub fn add_replica(self: &Arc<Self>) -> std::io::Result<Arc<Replica>> {
        let port = free_port()?;
        let replica = Arc::new(Replica::new(
            self.next_id.fetch_add(1, Ordering::Relaxed),
            port,
        ));
        if let Ok(mut r) = self.state.replicas.write() {
            r.push(replica.clone());
        }
        let (tx, rx) = watch::channel(false);
        if let Ok(mut s) = self.stops.lock() {
            s.push((replica.id, tx));
        }
        let me = self.clone();
        let supervised = replica.clone();
        let task = tokio::spawn(async move { me.supervise(supervised, rx).await });
        if let Ok(mut t) = self.tasks.lock() {
            t.push(task);
        }
        Ok(replica)
    }

    async fn ready_check(&self, port: u16) -> bool {
        let probe = async {
            match &self.cfg.readiness {
                Readiness::HttpGet(path) => self.http_ready(port, path).await,
                Readiness::GrpcHealth => self.grpc_ready(port).await,
            }
        };
        tokio::time::timeout(self.cfg.health.probe_timeout, probe)
            .await
            .unwrap_or(false)
    }

    async fn http_ready(&self, port: u16, path: &str) -> bool {
        let Ok(req) = hyper::Request::get(format!("http://127.0.0.1:{port}{path}"))
            .body(Full::new(Bytes::new()))
        else {
            return false;
        };
        matches!(self.client.request(req).await, Ok(r) if r.status().is_success())
    }

    /// The gRPC health check over h2c, for the server as a whole (an empty service name).
    async fn grpc_ready(&self, port: u16) -> bool {
        let Ok(req) = hyper::Request::post(format!(
            "http://127.0.0.1:{port}{}",
            grpc_health::CHECK_PATH
        ))
        .header(hyper::header::CONTENT_TYPE, "application/grpc")
        .header(hyper::header::TE, "trailers")
        .body(Full::new(grpc_health::framed(&[]))) else {
            return false;
        };
        let Ok(answer) = self.h2c_client.request(req).await else {
            return false;
        };
        let (parts, body) = answer.into_parts();
        // A health answer is a few bytes; a replica that streams more fails the probe rather
        // than filling Ebb's memory within the probe's timeout.
        let Ok(body) = http_body_util::Limited::new(body, 64 << 10).collect().await else {
            return false;
        };
        let trailers = body.trailers().cloned();
        grpc_health::serving(&parts.headers, &body.to_bytes(), trailers.as_ref())
    }

    /// Watches a ready replica until its process exits, a stop comes, or it stays unhealthy
    /// long enough to be restarted (then returns `Watched::Unhealthy`). Probes its readiness
    /// every probe interval: failing probes take it out of rotation, a passing one puts it
    /// back (an ejected replica once its ejection time is over).
    async fn watch(
        &self,
        replica: &Replica,
        child: &mut Child,
        stop: &mut watch::Receiver<bool>,
    ) -> Watched {
        let health = &self.cfg.health;
        let mut probe = tokio::time::interval(health.probe_interval);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        probe.tick().await;
        loop {
            tokio::select! {
                status = child.wait() => return Watched::Exited(status.ok()),
                _ = stop.changed() => return Watched::Stopped,
                _ = probe.tick() => {}
            }
            let passed = self.ready_check(replica.port()).await;
            let now = Instant::now();
            match self.state.apply_probe(replica, passed, now, health) {
                ProbeChange::None => {}
                ProbeChange::FailedProbes(n) => {
                    self.event(format!(
                        "replica {} failed {n} readiness probes in a row at {}; out of rotation",
                        replica.id, self.cfg.readiness
                    ));
                }
                change @ (ProbeChange::Returned | ProbeChange::Recovered) => {
                    self.event(format!(
                        "replica {} back in rotation ({})",
                        replica.id,
                        if change == ProbeChange::Returned {
                            "ejection over, probe passed"
                        } else {
                            "readiness probe passed again"
                        }
                    ));
                }
            }
            if let Some(d) = replica.health.unhealthy_for(now) {
                if d >= health.restart_after {
                    return Watched::Unhealthy(d);
                }
            }
        }
    }

    /// Runs one replica until told to stop: start, wait for readiness, watch for exit,
    /// restart with backoff.
    async fn supervise(self: Arc<Self>, replica: Arc<Replica>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(500);
        loop {
            if *stop.borrow() {
                break;
            }
            let mut child: Child = match self.command(replica.port()).spawn() {
                Ok(c) => c,
                Err(e) => {
                    self.event(format!(
                        "replica {} could not start '{}': {e}; retrying in {:.1}s",
                        replica.id,
                        self.cfg.command[0],
                        backoff.as_secs_f64()
                    ));
                    if wait_or_stop(&mut stop, backoff).await {
                        break;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            let pid = child.id().unwrap_or(0);
            replica.pid.store(pid, Ordering::Relaxed);
            // Readiness: poll until ready, the process exits, the timeout passes, or a stop.
            let started = Instant::now();
            let mut exited = None;
            let ready = loop {
                if self.ready_check(replica.port()).await {
                    break true;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    break false;
                }
                if started.elapsed() >= self.cfg.readiness_timeout || *stop.borrow() {
                    break false;
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.cfg.readiness_period) => {}
                    _ = stop.changed() => {}
                }
            };
            let mut unhealthy = None;
            if ready {
                replica.health.reset();
                replica.ready.store(true, Ordering::Release);
                if let Ok(mut r) = replica.ready_since.lock() {
                    *r = Some(Instant::now());
                }
                self.state.ready_changed.notify_waiters();
                backoff = Duration::from_millis(500);
                match self.watch(&replica, &mut child, &mut stop).await {
                    Watched::Exited(status) => exited = status,
                    Watched::Stopped => {}
                    Watched::Unhealthy(d) => unhealthy = Some(d),
                }
            }
            replica.ready.store(false, Ordering::Release);
            if *stop.borrow() {
                self.terminate(&mut child, pid).await;
                break;
            }
            if let Some(d) = unhealthy {
                ProxyCounters::bump(&self.state.counters.unhealthy_restarts);
                self.event(format!(
                    "replica {} (pid {pid}) unhealthy for {:.0}s; restarting it",
                    replica.id,
                    d.as_secs_f64()
                ));
                self.terminate(&mut child, pid).await;
                replica.health.reset();
                replica.restarts.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match exited {
                Some(status) => self.event(format!(
                    "replica {} (pid {pid}) exited with {status}; restarting in {:.1}s",
                    replica.id,
                    backoff.as_secs_f64()
                )),
                None => {
                    self.event(format!(
                        "replica {} not ready after {:.0}s at {}; restarting in {:.1}s",
                        replica.id,
                        self.cfg.readiness_timeout.as_secs_f64(),
                        self.cfg.readiness,
                        backoff.as_secs_f64()
                    ));
                    self.terminate(&mut child, pid).await;
                }
            }
            replica.restarts.fetch_add(1, Ordering::Relaxed);
            if wait_or_stop(&mut stop, backoff).await {
                break;
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
        replica.pid.store(0, Ordering::Relaxed);
        if let Ok(mut r) = self.state.replicas.write() {
            r.retain(|x| x.id != replica.id);
        }
    }

    /// SIGTERM, a grace period, then SIGKILL; reaps the child.
    async fn terminate(&self, child: &mut Child, pid: u32) {
        signal_group(pid, libc::SIGTERM);
        if tokio::time::timeout(self.cfg.stop_grace, child.wait())
            .await
            .is_err()
        {
            signal_group(pid, libc::SIGKILL);
            let _ = child.wait().await;
        }
        // Anything the replica left in its group goes too.
        signal_group(pid, libc::SIGKILL);
    }

    /// Drains a replica (no new requests, wait for the in-flight ones up to the drain
    /// timeout) and stops it.
    pub async fn drain_and_stop(&self, replica: Arc<Replica>) {
        replica.draining.store(true, Ordering::Release);
        let deadline = Instant::now() + self.cfg.drain_timeout;
        while replica.in_flight.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = replica.in_flight.load(Ordering::Acquire);
        if left > 0 {
            self.event(format!(
                "replica {} still had {left} requests after the {:.0}s drain timeout",
                replica.id,
                self.cfg.drain_timeout.as_secs_f64()
            ));
        }
        let tx = self.stops.lock().ok().and_then(|mut s| {
            let i = s.iter().position(|(id, _)| *id == replica.id)?;
            Some(s.remove(i).1)
        });
        if let Some(tx) = tx {
            let _ = tx.send(true);
        }
        // Wait until the supervisor has removed it.
        while self.state.replicas().iter().any(|r| r.id == replica.id) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Samples in-flight requests (for the average the concurrency signal reads).
    pub async fn sample_in_flight(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tick.tick().await;
            let v = self.state.in_flight.load(Ordering::Relaxed) as f64;
            if let Ok(mut s) = self.state.in_flight_samples.lock() {
                s.0 += v;
                s.1 += 1;
            }
            if let Some(models) = &self.state.models {
                for m in models.models.values() {
                    let v = m.in_flight.load(Ordering::Relaxed) as f64;
                    if let Ok(mut s) = m.in_flight_samples.lock() {
                        s.0 += v;
                        s.1 += 1;
                    }
                }
            }
            // The retry budget's steady allowance: a few retries a second even at low traffic.
            self.state.retry_budget.refill(3.0, 0.05);
            let n = self.state.replicas.read().map(|r| r.len()).unwrap_or(0) as u32;
            self.replica_seconds_ms
                .fetch_add(u64::from(n) * 50, Ordering::Relaxed);
            self.max_replicas_seen.fetch_max(n, Ordering::Relaxed);
        }
    }

    /// Replica-seconds so far and the most replicas seen.
    pub fn cost(&self) -> (f64, u32) {
        (
            self.replica_seconds_ms.load(Ordering::Relaxed) as f64 / 1000.0,
            self.max_replicas_seen.load(Ordering::Relaxed),
        )
    }

    fn observe(&self, now: Time) -> Observation {
        let replicas = self.state.replicas();
        let pods: Vec<Pod> = replicas
            .iter()
            .filter(|r| !r.draining.load(Ordering::Acquire))
            .map(|r| {
                // An ejected or unhealthy replica serves nothing: the core sees it unready,
                // so it can start another and pick this one first on a scale-in.
                let ready = r.routable();
                let at = |i: Instant| self.state.core_time(i);
                Pod {
                    name: r.id.to_string(),
                    phase: PodPhase::Running,
                    ready,
                    deleting: false,
                    started_at: Some(at(r.created)),
                    ready_changed_at: Some(
                        r.ready_since
                            .lock()
                            .ok()
                            .and_then(|x| *x)
                            .map_or(at(r.created), at),
                    ),
                    created_at: Some(at(r.created)),
                    requests: Default::default(),
                    in_flight: Some(f64::from(r.in_flight.load(Ordering::Relaxed))),
                }
            })
            .collect();
        let in_flight = ebb_proxy::state::take_mean_in_flight(
            &self.state.in_flight_samples,
            self.state.in_flight.load(Ordering::Relaxed) as f64,
        );
        Observation {
            current_replicas: pods.len() as u32,
            pods,
            metrics: Vec::new(),
            traffic: Some(TrafficSample {
                at: now,
                in_flight,
                arrivals_total: self.state.arrivals.load(Ordering::Relaxed) as f64,
                completions_total: self.state.completions.load(Ordering::Relaxed) as f64,
                // Each replica's time on a request (its own internal queue included, which
                // errs towards more replicas; Ebb's queue excluded).
                service: Some(self.state.service_totals()),
                answered: self.state.answers.totals(),
            }),
            external_count: None,
            engine: None,
            fallbacks: Vec::new(),
            epoch_unix_ms: self.state.started_unix_ms,
        }
    }

    /// The engine's signals, scraped from every ready replica's metrics on its own port, with
    /// half a sync period (at most 2 s) to answer.
    async fn observe_engine(
        &self,
        engine: &ebb_core::policy::Engine,
        reader: &mut ebb_core::engine::EngineReader,
        now: Time,
    ) -> ebb_core::engine::EngineReading {
        let all = self.state.replicas();
        let live = || all.iter().filter(|r| !r.draining.load(Ordering::Acquire));
        let serving: Vec<(String, u16)> = live()
            .filter(|r| r.routable())
            .map(|r| (r.id.to_string(), r.port()))
            .collect();
        let starting = live().any(|r| !r.ready.load(Ordering::Acquire));
        let timeout = (self.cfg.sync_period / 2).min(Duration::from_secs(2));
        let replicas = (serving.as_slice(), starting);
        crate::engine_scrape::observe(&self.client, engine, reader, replicas, timeout, now).await
    }

    /// The control loop: observe, decide, apply, every sync period, until stopped.
    pub async fn control(self: Arc<Self>) {
        if self.cfg.models.is_some() {
            return self.control_models().await;
        }
        self.start_initial();
        let mut scaler = Scaler::new(self.cfg.policy.clone());
        let mut engine_reader = ebb_core::engine::EngineReader::default();
        let mut tick = tokio::time::interval(self.cfg.sync_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.is_stopping() {
                break;
            }
            let now = self.state.core_now();
            let obs = self.observe_all(&mut engine_reader, now).await;
            scaler.hold(self.state.hold());
            let d = scaler.decide(&obs, now);
            if let Some(reached) = self.apply_decision(&d) {
                // What was reached, not what was wanted, counts against the rate policies.
                scaler.applied(reached, now);
            }
        }
    }

    /// Starts the policy's `minReplicas`.
    pub(crate) fn start_initial(self: &Arc<Self>) {
        for _ in 0..self.cfg.policy.min_replicas {
            if let Err(e) = self.add_replica() {
                self.event(format!("could not start a replica: {e}"));
            }
        }
    }

    /// Whether the service is shutting down.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The proxy's counters and, with an `engine` block, the engines' signals.
    pub(crate) async fn observe_all(
        &self,
        engine_reader: &mut ebb_core::engine::EngineReader,
        now: Time,
    ) -> Observation {
        let mut obs = self.observe(now);
        if let Some(engine) = &self.cfg.policy.engine {
            self.observe_engine(engine, engine_reader, now)
                .await
                .add_to(&mut obs);
        }
        obs
    }

    /// Carries out a decision: starts replicas, or drains its victims. Returns the count
    /// reached when the decision changed it.
    pub(crate) fn apply_decision(self: &Arc<Self>, d: &ebb_core::Decision) -> Option<u32> {
        self.state.note_proposal(d.proposed_replicas);
        if d.desired_replicas == d.current_replicas {
            return None;
        }
        self.state.note_scale(d, None);
        let reached = if d.desired_replicas > d.current_replicas {
            let started = (d.current_replicas..d.desired_replicas)
                .filter(|_| match self.add_replica() {
                    Ok(_) => true,
                    Err(e) => {
                        self.event(format!("could not start a replica: {e}"));
                        false
                    }
                })
                .count() as u32;
            d.current_replicas + started
        } else {
            let replicas = self.state.replicas();
            let mut stopping = 0;
            for victim in &d.victims {
                if let Some(r) = replicas
                    .iter()
                    .find(|r| r.id.to_string() == *victim && !r.draining.load(Ordering::Acquire))
                {
                    let (me, r) = (self.clone(), r.clone());
                    tokio::spawn(async move { me.drain_and_stop(r).await });
                    stopping += 1;
                }
            }
            d.current_replicas.saturating_sub(stopping)
        };
        Some(reached)
    }

    /// Drains and stops every replica at once (their grace periods run side by side), and
    /// waits for their supervisors. The caller has stopped the control loop and the proxy.
    pub async fn stop_replicas(self: &Arc<Self>) {
        let mut drains = tokio::task::JoinSet::new();
        for r in self.state.replicas() {
            let me = self.clone();
            drains.spawn(async move { me.drain_and_stop(r).await });
        }
        while drains.join_next().await.is_some() {}
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// How watching a ready replica ended.
enum Watched {
    /// Its process exited.
    Exited(Option<std::process::ExitStatus>),
    /// It was told to stop.
    Stopped,
    /// It stayed unhealthy this long.
    Unhealthy(Duration),
}

/// Sleeps for `d` unless a stop arrives first; true when stopped.
async fn wait_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}
