//! `ebb up`: binds each service's proxy, starts its replicas and control loop, shows a live
//! view, replays the configured load if any, and on Ctrl-C (or when the load is done) drains
//! and stops every replica before it prints a summary.

use crate::config::Config;
use crate::service::Service;
use ebb_proxy::admin::Admin;
use ebb_proxy::proxy::{Proxy, QueueLimits};
use ebb_proxy::server::Listener;
use ebb_proxy::state::ServiceState;
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why the runtime could not start.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// A proxy address could not be bound.
    #[error("services[{index}].listen: cannot listen on {addr}: {error}")]
    Bind {
        /// Service index.
        index: usize,
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The control socket could not be bound.
    #[error(
        "controlSocket: cannot listen on {path}: {error} (set controlSocket: to another path)"
    )]
    ControlBind {
        /// The socket's path.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The admin address could not be bound.
    #[error("admin: cannot listen on {addr}: {error} (set admin: to another loopback address)")]
    AdminBind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

/// How `ebb up` shows itself.
#[derive(Debug, Clone, Copy)]
pub struct ViewOptions {
    /// Redraw a live view in place (a terminal); otherwise print a line per second.
    pub live: bool,
    /// Print nothing while running (tests).
    pub quiet: bool,
}

impl ViewOptions {
    /// Live when standard output is a terminal.
    pub fn detect() -> ViewOptions {
        ViewOptions {
            live: std::io::stdout().is_terminal(),
            quiet: false,
        }
    }
}

/// One service's summary at exit.
#[derive(Debug, Clone)]
pub struct ServiceSummary {
    /// Name.
    pub name: String,
    /// Requests received.
    pub requests: u64,
    /// Requests Ebb answered with an error itself.
    pub proxy_errors: u64,
    /// Answers with a 5xx status from the replicas.
    pub upstream_errors: u64,
    /// Requests whose client left before the answer.
    pub cancelled: u64,
    /// Latency p50 and p99 through the proxy, seconds.
    pub p50: f64,
    /// p99.
    pub p99: f64,
    /// Scale events.
    pub scale_events: u64,
    /// Most replicas at once.
    pub max_replicas: u32,
    /// Replica-seconds.
    pub replica_seconds: f64,
    /// Supervisor events.
    pub events: Vec<String>,
    /// The SLO's attainment as reached, where the policy has an SLO: the answers as clients
    /// saw them against its latency.
    pub reached: Option<ebb_core::AnsweredWithin>,
}

/// What a run produced.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Per service.
    pub services: Vec<ServiceSummary>,
    /// The configured load's report, if one ran.
    pub load: Option<crate::load::LoadReport>,
    /// Why the configured load did not run, if it did not.
    pub load_error: Option<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "Summary")?;
        for s in &self.services {
            writeln!(
                f,
                "  {}: {} requests, {} answered by Ebb with an error, {} 5xx from replicas, {} cancelled by the client, latency p50 {:.1} ms, p99 {:.1} ms; {} scale events, up to {} replicas, {:.0} replica-seconds",
                s.name,
                s.requests,
                s.proxy_errors,
                s.upstream_errors,
                s.cancelled,
                s.p50 * 1e3,
                s.p99 * 1e3,
                s.scale_events,
                s.max_replicas,
                s.replica_seconds
            )?;
            if let Some(r) = s.reached.filter(|r| r.requests > 0.0) {
                writeln!(
                    f,
                    "    SLO reached: {:.2}% of {} requests ended within {} ms (failures and clients gone after it count as misses)",
                    100.0 * r.within / r.requests,
                    r.requests,
                    r.latency_seconds * 1e3
                )?;
            }
            for e in &s.events {
                writeln!(f, "    {e}")?;
            }
        }
        if let Some(l) = &self.load {
            writeln!(f, "  load: {}", l.summary())?;
        }
        if let Some(e) = &self.load_error {
            writeln!(f, "  load: did not run: {e}")?;
        }
        Ok(())
    }
}

struct Running {
    service: Arc<Service>,
    /// The service port's connections, stopped first on shutdown.
    listener: Listener,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// A listener context reporting into `state`'s counters and events.
fn listener_for(state: &Arc<ServiceState>) -> Listener {
    let events = state.clone();
    Listener::new(
        state.counters.clone(),
        Arc::new(move |text| events.event(text)),
    )
}

/// Where a client on this machine reaches `addr` (a wildcard address means loopback).
fn local_target(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    }
}

/// Runs `config` until `stop` resolves (or the configured load finishes with `exitAfter`).
pub async fn run(
    config: Config,
    view: ViewOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Summary, RuntimeError> {
    let started = Instant::now();
    let mut listeners = Vec::new();
    for (index, s) in config.services.iter().enumerate() {
        let l = ebb_proxy::server::bind_shared(s.listen, s.proxy.threads).map_err(|error| {
            RuntimeError::Bind {
                index,
                addr: s.listen,
                error,
            }
        })?;
        listeners.push(l);
    }
    let admin_listener =
        ebb_proxy::server::bind(config.admin).map_err(|error| RuntimeError::AdminBind {
            addr: config.admin,
            error,
        })?;
    // Bound before any replica starts: a socket in use stops `ebb up` with nothing to undo.
    let control = crate::control::bind(&config.control_socket)
        .await
        .map_err(|error| RuntimeError::ControlBind {
            path: config.control_socket.clone(),
            error,
        })?;
    let mut bound = Vec::new();
    let mut running = Vec::new();
    for (cfg, listener) in config.services.iter().cloned().zip(listeners) {
        let addr = listener
            .first()
            .and_then(|l| l.local_addr().ok())
            .unwrap_or(cfg.listen);
        bound.push((cfg.name.clone(), addr));
        if !view.quiet {
            println!("  {}: serving on http://{addr}", cfg.name);
            if cfg.public {
                println!("  {}: listening beyond loopback (public: true)", cfg.name);
            }
        }
        let mut state =
            ServiceState::new(&cfg.name, started).with_retry_budget(cfg.proxy.retry_budget);
        if let Some(m) = &cfg.models {
            state = state.with_models(m.models.iter().map(|m| (m.name.as_str(), m.memory_mib)));
        }
        if let Some(slo) = &cfg.policy.slo {
            state = state
                .with_slo_latency(slo.latency_seconds)
                .with_slots_per_replica(slo.slots_per_replica);
        }
        let state = Arc::new(state);
        let listener_ctx = listener_for(&state);
        let queue = QueueLimits {
            capacity: cfg.queue_capacity,
            timeout: cfg.queue_timeout,
        };
        let threads =
            ebb_proxy::proxy::serve_on_threads(&cfg.name, listener, &listener_ctx, || {
                Proxy::with(
                    state.clone(),
                    cfg.proxy.clone(),
                    cfg.health.clone(),
                    queue,
                    None,
                )
            });
        for (i, t) in threads.into_iter().enumerate() {
            if let Err(e) = t {
                state.event(format!("proxy thread {i} could not start: {e}"));
            }
        }
        let pooled = config.pool_of(&cfg.name).is_some();
        let service = Service::new(cfg, state.clone());
        let mut tasks = vec![tokio::spawn(service.clone().sample_in_flight())];
        // A pool's decisions come from its group's loop, started below.
        if !pooled {
            tasks.push(tokio::spawn(service.clone().control()));
        }
        running.push(Running {
            service,
            listener: listener_ctx,
            tasks,
        });
    }
    for group in &config.pools {
        let find = |name: &str| running.iter().position(|r| r.service.cfg.name == name);
        if let (Some(p), Some(d)) = (find(&group.prefill), find(&group.decode)) {
            let (prefill, decode) = (running[p].service.clone(), running[d].service.clone());
            let task = tokio::spawn(crate::pools_control::control(
                prefill,
                decode,
                group.clone(),
            ));
            running[p].tasks.push(task);
        }
    }
    let admin_addr = admin_listener.local_addr().unwrap_or(config.admin);
    if !view.quiet {
        println!("  admin: http://{admin_addr} (/metrics, /ebb/status)");
    }
    if !view.quiet {
        println!(
            "  control: ebb ctl --socket {} pause SERVICE [REPLICAS] | resume SERVICE | status",
            config.control_socket.display()
        );
    }
    let controlled = running
        .iter()
        .map(|r| crate::control::Controlled {
            state: r.service.state.clone(),
            max_replicas: r.service.cfg.policy.max_replicas,
        })
        .collect();
    let control_task = tokio::spawn(crate::control::serve(control, controlled));
    let admin = Admin::new(running.iter().map(|r| r.service.state.clone()).collect());
    let admin_task = tokio::spawn(admin.serve(admin_listener));

    let (load_done_tx, mut load_done) = tokio::sync::oneshot::channel();
    let mut load_exit = false;
    if let Some(plan) = config.load.clone() {
        load_exit = plan.exit_after;
        let target = bound
            .iter()
            .find(|(name, _)| *name == plan.service)
            .map(|(_, addr)| local_target(*addr));
        let (model_path, body) = (plan.path.clone(), plan.body.clone());
        tokio::spawn(async move {
            let Some(target) = target else { return };
            // Give the first replicas a moment, as a client would find them.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let rates = crate::load::phases_to_rates(
                &plan
                    .phases
                    .iter()
                    .map(|p| (p.rate, p.seconds))
                    .collect::<Vec<_>>(),
            );
            let report = crate::load::run(target, &model_path, &body, &rates, 7)
                .await
                .map_err(|e| e.to_string());
            tokio::time::sleep(Duration::from_secs_f64(plan.settle_seconds.max(0.0))).await;
            let _ = load_done_tx.send(report);
        });
    } else {
        drop(load_done_tx);
    }

    let mut load_report = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_arrivals: Vec<u64> = vec![0; running.len()];
    let mut drawn_lines = 0usize;
    let mut printed: Vec<String> = Vec::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            r = &mut load_done, if load_exit => {
                load_report = r.ok();
                break;
            }
            _ = tick.tick() => {
                if view.quiet {
                    continue;
                }
                let lines = render(&running, &mut last_arrivals, started);
                let mut out = std::io::stdout().lock();
                if view.live {
                    if drawn_lines > 0 {
                        let _ = write!(out, "\x1b[{drawn_lines}A\x1b[J");
                    }
                    drawn_lines = lines.len();
                    // One screen row per line, or moving back up would not cover wrapped rows.
                    let width = terminal_width();
                    for l in &lines {
                        let cut: String = l.chars().take(width.saturating_sub(1)).collect();
                        let _ = writeln!(out, "{cut}");
                    }
                } else {
                    // One status line a second, and each new decision or event once.
                    for l in lines.iter().filter(|l| l.starts_with('[') || !printed.contains(*l)) {
                        let _ = writeln!(out, "{l}");
                    }
                    printed = lines;
                }
                let _ = out.flush();
            }
        }
    }
    if !view.quiet {
        println!("stopping: answering accepted requests, then draining and stopping replicas...");
    }
    shutdown(&running).await;
    admin_task.abort();
    control_task.abort();
    let _ = std::fs::remove_file(&config.control_socket);
    if load_report.is_none() {
        load_report = load_done.try_recv().ok();
    }
    let (load_report, load_error) = match load_report {
        Some(Ok(r)) => (Some(r), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let services = running
        .iter()
        .map(|r| {
            let s = &r.service.state;
            let (p50, p99) = s
                .total_latency
                .lock()
                .map(|h| {
                    if h.is_empty() {
                        (0.0, 0.0)
                    } else {
                        (
                            h.value_at_quantile(0.5) as f64 / 1e6,
                            h.value_at_quantile(0.99) as f64 / 1e6,
                        )
                    }
                })
                .unwrap_or((0.0, 0.0));
            let (replica_seconds, max_replicas) = r.service.cost();
            ServiceSummary {
                name: s.name.clone(),
                requests: s.arrivals.load(Ordering::Relaxed),
                proxy_errors: s.errors.load(Ordering::Relaxed),
                upstream_errors: s.counters.upstream_errors.load(Ordering::Relaxed),
                cancelled: s.counters.cancelled.load(Ordering::Relaxed),
                p50,
                p99,
                scale_events: s.scale_events.load(Ordering::Relaxed),
                max_replicas,
                replica_seconds,
                reached: s.answers.totals(),
                events: s
                    .events
                    .lock()
                    .map(|q| q.iter().cloned().collect())
                    .unwrap_or_default(),
            }
        })
        .collect();
    Ok(Summary {
        services,
        load: load_report,
        load_error,
    })
}

/// Stops in the order that loses nothing: no more decisions; no more connections, and every
/// request already accepted answered (the replicas still serve them); then every replica of
/// every service drained and stopped at once.
async fn shutdown(running: &[Running]) {
    for r in running {
        r.service.stopping.store(true, Ordering::Release);
        r.listener.stop.cancel();
        r.listener.connections.close();
    }
    for r in running {
        let limit = r.service.cfg.drain_timeout + r.service.cfg.queue_timeout;
        if tokio::time::timeout(limit, r.listener.connections.wait())
            .await
            .is_err()
        {
            r.service.state.event(format!(
                "{} connections still open {:.0}s after the stop; closing them",
                r.listener.connections.len(),
                limit.as_secs_f64()
            ));
        }
    }
    let mut stops = tokio::task::JoinSet::new();
    for r in running {
        let service = r.service.clone();
        stops.spawn(async move { service.stop_replicas().await });
    }
    while stops.join_next().await.is_some() {}
    for r in running {
        for t in &r.tasks {
            t.abort();
        }
    }
}

/// The terminal's width in columns (80 when unknown).
fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ only writes into the winsize struct we pass.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        usize::from(ws.ws_col)
    } else {
        80
    }
}

fn render(running: &[Running], last: &mut [u64], started: Instant) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, r) in running.iter().enumerate() {
        let s = &r.service.state;
        let (starting, ready, draining) = s.counts();
        let arrivals = s.arrivals.load(Ordering::Relaxed);
        let rate = arrivals.saturating_sub(last[i]);
        last[i] = arrivals;
        let p99 = s.recent_p99() * 1e3;
        let unhealthy = s.unhealthy();
        let bar = "#".repeat(ready as usize)
            + &"+".repeat(starting as usize)
            + &"!".repeat(unhealthy as usize)
            + &"-".repeat(draining as usize);
        let out_of_rotation = if unhealthy > 0 {
            format!(", {unhealthy} out of rotation")
        } else {
            String::new()
        };
        lines.push(format!(
            "[{:>6.1}s] {:<10} replicas {:<12} {ready} ready, {starting} starting{out_of_rotation}, {draining} draining | {rate:>5}/s | in flight {:>3} | p99 {p99:>7.1} ms | errors {} (5xx from replicas {})",
            started.elapsed().as_secs_f64(),
            s.name,
            bar,
            s.in_flight.load(Ordering::Relaxed),
            s.errors.load(Ordering::Relaxed),
            s.counters.upstream_errors.load(Ordering::Relaxed)
        ));
        if let Some(d) = s.decisions.lock().ok().and_then(|q| q.back().cloned()) {
            lines.push(format!(
                "           last decision at {:.1}s: {} -> {}: {}",
                d.at, d.current, d.desired, d.reasons
            ));
        }
        if let Some(e) = s.events.lock().ok().and_then(|q| q.back().cloned()) {
            lines.push(format!("           {e}"));
        }
    }
    lines
}
