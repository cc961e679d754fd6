//! Ebb's proxy: forwards each request to the routable replica with the fewest requests in
//! flight, counts arrivals, completions and latency (by guards, so a client that leaves
//! early leaves no count behind), holds requests while no replica is ready (the activator),
//! ejects replicas whose requests keep failing, retries only where that is safe and the
//! budget allows, and refuses what a service port should not take: oversized bodies (413),
//! the model server's control paths (403), requests that are not origin-form.

use crate::config::proxy::{HealthSettings, ProxySettings};
use crate::config::ServiceConfig;
use crate::guard::Held;
use crate::health::Outcome;
use crate::server::{self, ConnectionLimits, Listener};
use crate::state::models::{Copy, ModelEntry, ModelTable};
use crate::state::{Replica, ServiceState};
use crate::upstream::Upstreams;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Limits of the activator queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Requests held at most.
    pub capacity: usize,
    /// How long one waits.
    pub timeout: Duration,
}

/// One service's proxy.
pub struct Proxy {
    /// The counters and replicas it shares with the supervisor and the control loop.
    pub state: Arc<ServiceState>,
    upstreams: Upstreams,
    settings: ProxySettings,
    health: HealthSettings,
    queue: QueueLimits,
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

/// Headers that belong to one connection, not to the request (RFC 9110 section 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, those the `Connection` header names included.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names is cheaper than nine removals.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(&k.as_str())) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
}

/// Safe to send twice (RFC 9110 section 9.2.2).
fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// A request counted in the service's arrivals and in-flight count; when it drops, it is
/// counted as completed whatever happened (a client that left is also counted as cancelled).
struct Accounted<'a> {
    state: &'a ServiceState,
    start: Instant,
    answered: bool,
    _in_flight: Held<'a>,
}

impl<'a> Accounted<'a> {
    fn begin(state: &'a ServiceState) -> Accounted<'a> {
        state.arrivals.fetch_add(1, Ordering::Relaxed);
        state.retry_budget.deposit();
        Accounted {
            state,
            start: Instant::now(),
            answered: false,
            _in_flight: Held::new(&state.in_flight),
        }
    }

    fn answer(mut self, r: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
        self.answered = true;
        self.state
            .record_latency(self.start.elapsed().as_micros() as u64);
        r
    }
}

impl Drop for Accounted<'_> {
    fn drop(&mut self) {
        self.state.completions.fetch_add(1, Ordering::Relaxed);
        if !self.answered {
            self.state
                .counters
                .cancelled
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A multi-model request counted in its model's counters until it drops.
struct ModelAccounted<'a> {
    model: &'a ModelEntry,
    _in_flight: Held<'a>,
}

impl<'a> ModelAccounted<'a> {
    fn begin(model: &'a ModelEntry) -> ModelAccounted<'a> {
        model.arrivals.fetch_add(1, Ordering::Relaxed);
        ModelAccounted {
            model,
            _in_flight: Held::new(&model.in_flight),
        }
    }
}

impl Drop for ModelAccounted<'_> {
    fn drop(&mut self) {
        self.model.completions.fetch_add(1, Ordering::Relaxed);
    }
}

/// A replica to send to, and the model's copy on it for a multi-model request.
type Picked = (Arc<Replica>, Option<Arc<Copy>>);

/// How waiting for a replica ended.
enum Wait {
    Got(Picked),
    QueueFull,
    TimedOut,
}

/// How sending to one replica ended.
enum Sent {
    /// The replica answered (any status).
    Answered(Response<Full<Bytes>>),
    /// No answer; `reached` says whether the request may have reached the replica.
    Failed { error: String, reached: bool },
    /// No answer within the upstream timeout.
    TimedOut,
}

impl Proxy {
    /// The proxy of the service `cfg` describes.
    pub fn new(state: Arc<ServiceState>, cfg: &ServiceConfig) -> Arc<Proxy> {
        Arc::new(Proxy {
            state,
            upstreams: Upstreams::new(cfg.proxy.connect_timeout),
            settings: cfg.proxy.clone(),
            health: cfg.health.clone(),
            queue: QueueLimits {
                capacity: cfg.queue_capacity,
                timeout: cfg.queue_timeout,
            },
        })
    }

    /// The connection limits of its listener.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.settings.max_connections,
            header_timeout: self.settings.header_timeout,
            idle_timeout: self.settings.idle_timeout,
        }
    }

    /// Serves the service port until `ctx.stop` is cancelled.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, ctx: Listener) {
        let limits = self.connection_limits();
        server::serve(listener, limits, ctx, move |req| {
            let me = self.clone();
            async move { me.handle(req).await }
        })
        .await;
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let counters = &self.state.counters;
        let path = req.uri().path();
        if !path.starts_with('/') {
            counters.not_forwarded.fetch_add(1, Ordering::Relaxed);
            if req.method() == Method::OPTIONS && path == "*" {
                let mut r = text(StatusCode::NO_CONTENT, String::new());
                r.headers_mut().insert(
                    hyper::header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS"),
                );
                return r;
            }
            return text(
                StatusCode::BAD_REQUEST,
                "ebb: only requests for a path (origin-form) are forwarded\n".into(),
            );
        }
        if self.settings.denies(path) {
            counters.denied.fetch_add(1, Ordering::Relaxed);
            return text(
                StatusCode::FORBIDDEN,
                format!("ebb: {path} is not served on the service port\n"),
            );
        }
        let request = Accounted::begin(&self.state);
        let response = self.forward(req).await;
        request.answer(response)
    }

    async fn forward(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (mut parts, body) = req.into_parts();
        let body = match self.read_body(&parts.headers, body).await {
            Ok(b) => b,
            Err(r) => return *r,
        };
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(hyper::header::HOST);
        let model = match &self.state.models {
            None => None,
            Some(table) => match self.model_of(table, parts.uri.path()) {
                Ok(m) => m,
                Err(r) => return *r,
            },
        };
        let _model_count = model.as_deref().map(ModelAccounted::begin);
        self.forward_to(&parts, body, model.as_deref()).await
    }

    /// The whole body, or the answer for one over the limit or unreadable.
    async fn read_body(
        &self,
        headers: &HeaderMap,
        body: Incoming,
    ) -> Result<Bytes, Box<Response<Full<Bytes>>>> {
        let limit = self.settings.max_body_bytes;
        let too_large = || {
            self.state
                .counters
                .too_large
                .fetch_add(1, Ordering::Relaxed);
            text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("ebb: request bodies are limited to {limit} bytes\n"),
            )
        };
        let declared = headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(Box::new(too_large()));
        }
        match Limited::new(body, limit as usize).collect().await {
            Ok(b) => Ok(b.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Box::new(too_large())),
            Err(e) => Err(Box::new(text(
                StatusCode::BAD_REQUEST,
                format!("ebb: could not read the request body: {e}\n"),
            ))),
        }
    }

    /// The model a multi-model request names, or the 404 that lists the hosted ones.
    fn model_of(
        &self,
        table: &ModelTable,
        path: &str,
    ) -> Result<Option<Arc<ModelEntry>>, Box<Response<Full<Bytes>>>> {
        let Some(name) = ModelTable::model_of_path(path) else {
            return Ok(None);
        };
        match table.models.get(name) {
            Some(m) => Ok(Some(m.clone())),
            None => {
                self.state.errors.fetch_add(1, Ordering::Relaxed);
                let known: Vec<&str> = table.models.keys().map(String::as_str).collect();
                Err(Box::new(text(
                    StatusCode::NOT_FOUND,
                    format!(
                        "ebb: {} hosts no model named '{name}' (models: {})\n",
                        self.state.name,
                        known.join(", ")
                    ),
                )))
            }
        }
    }

    async fn forward_to(
        &self,
        parts: &hyper::http::request::Parts,
        body: Bytes,
        model: Option<&ModelEntry>,
    ) -> Response<Full<Bytes>> {
        let deadline = Instant::now() + self.queue.timeout;
        let mut tried: Vec<u32> = Vec::new();
        loop {
            let wait = if tried.is_empty() {
                self.wait_for_replica(model, deadline).await
            } else {
                // A retry goes to another replica that is there now, or not at all.
                pick(&self.state, model, &tried).map_or(Wait::TimedOut, Wait::Got)
            };
            let (replica, copy) = match wait {
                Wait::Got(p) => p,
                Wait::QueueFull => return self.unavailable(model, true),
                Wait::TimedOut if tried.is_empty() => return self.unavailable(model, false),
                Wait::TimedOut => {
                    return self.failed(StatusCode::BAD_GATEWAY, "no other replica to retry on")
                }
            };
            match self
                .send(parts, body.clone(), &replica, copy.as_deref())
                .await
            {
                Sent::Answered(r) => return self.answered(&replica, r),
                Sent::TimedOut => return self.timed_out(&replica),
                Sent::Failed { error, reached } => {
                    self.state
                        .counters
                        .gateway_failures
                        .fetch_add(1, Ordering::Relaxed);
                    self.state
                        .report_outcome(&replica, Outcome::GatewayFailure, &self.health);
                    tried.push(replica.id);
                    if self.may_retry(&parts.method, reached, tried.len(), deadline) {
                        continue;
                    }
                    return self.failed(
                        StatusCode::BAD_GATEWAY,
                        &format!("replica {} failed: {error}", replica.id),
                    );
                }
            }
        }
    }

    /// Counts a replica's answer (a 5xx counts against it) and passes it on.
    fn answered(&self, replica: &Replica, r: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
        let outcome = if r.status().is_server_error() {
            self.state
                .counters
                .upstream_errors
                .fetch_add(1, Ordering::Relaxed);
            Outcome::ServerError
        } else {
            Outcome::Success
        };
        self.state.report_outcome(replica, outcome, &self.health);
        r
    }

    /// The 504 for a replica that did not answer in time (counted against it).
    fn timed_out(&self, replica: &Replica) -> Response<Full<Bytes>> {
        self.state
            .counters
            .upstream_timeouts
            .fetch_add(1, Ordering::Relaxed);
        self.state
            .report_outcome(replica, Outcome::GatewayFailure, &self.health);
        self.failed(
            StatusCode::GATEWAY_TIMEOUT,
            &format!(
                "replica {} did not answer within {:.1}s",
                replica.id,
                self.settings.upstream_timeout.as_secs_f64()
            ),
        )
    }

    /// Whether a request that failed on `tries` replicas goes to another: only if it never
    /// reached the replica or sending it twice is harmless, tries and time are left, and the
    /// retry budget has one.
    fn may_retry(&self, method: &Method, reached: bool, tries: usize, deadline: Instant) -> bool {
        let safe = !reached || idempotent(method) || self.settings.retry_non_idempotent;
        if !safe || tries as u32 >= self.settings.max_attempts || Instant::now() >= deadline {
            return false;
        }
        if self.state.retry_budget.try_spend() {
            self.state.counters.retries.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            self.state
                .counters
                .retries_refused
                .fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Sends once to `replica`, counted in its in-flight count (and its copy's) until done.
    async fn send(
        &self,
        parts: &hyper::http::request::Parts,
        body: Bytes,
        replica: &Replica,
        copy: Option<&Copy>,
    ) -> Sent {
        let mut up = Request::new(Full::new(body));
        *up.method_mut() = parts.method.clone();
        if let Some(pq) = parts.uri.path_and_query() {
            *up.uri_mut() = hyper::Uri::from(pq.clone());
        }
        *up.headers_mut() = parts.headers.clone();
        up.headers_mut()
            .insert(hyper::header::HOST, replica.host.clone());
        let _replica_count = Held::new(&replica.in_flight);
        let _copy_count = copy.map(|c| Held::new(&c.in_flight));
        replica.requests.fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        let exchange = async {
            match self.upstreams.send(replica.port, up).await {
                Ok(r) => {
                    let (mut p, b) = r.into_parts();
                    strip_hop_by_hop(&mut p.headers);
                    Sent::Answered(Response::from_parts(p, b))
                }
                Err(f) => Sent::Failed {
                    error: f.error,
                    reached: f.reached,
                },
            }
        };
        match tokio::time::timeout(self.settings.upstream_timeout, exchange).await {
            Ok(Sent::Answered(r)) => {
                if !r.status().is_server_error() {
                    self.state.record_service(sent.elapsed());
                }
                Sent::Answered(r)
            }
            Ok(other) => other,
            Err(_) => Sent::TimedOut,
        }
    }

    /// Ebb's own error answer (counted as a proxy error).
    fn failed(&self, status: StatusCode, why: &str) -> Response<Full<Bytes>> {
        self.state.errors.fetch_add(1, Ordering::Relaxed);
        text(status, format!("ebb: {why}\n"))
    }

    /// The 503 for a request no replica could take: the queue was full, or the wait ran out.
    fn unavailable(&self, model: Option<&ModelEntry>, queue_full: bool) -> Response<Full<Bytes>> {
        let (starting, _, _) = self.state.counts();
        let what = model.map_or(self.state.name.clone(), |m| format!("model {}", m.cfg.name));
        let why = if queue_full {
            format!(
                "no ready replica of {what}, and {} requests are already waiting for one ({starting} servers starting); try again",
                self.queue.capacity
            )
        } else {
            format!(
                "no ready replica of {what} within {:.1}s ({starting} servers starting); try again",
                self.queue.timeout.as_secs_f64()
            )
        };
        self.failed(StatusCode::SERVICE_UNAVAILABLE, &why)
    }

    /// A replica now, or once one becomes ready before `deadline`, holding a place in the
    /// queue (released however the wait ends).
    async fn wait_for_replica(&self, model: Option<&ModelEntry>, deadline: Instant) -> Wait {
        if let Some(r) = pick(&self.state, model, &[]) {
            return Wait::Got(r);
        }
        let state = &self.state;
        let _place = Held::new(&state.waiting);
        if state.waiting.load(Ordering::Acquire) as usize > self.queue.capacity {
            return Wait::QueueFull;
        }
        loop {
            let notified = state.ready_changed.notified();
            if let Some(r) = pick(state, model, &[]) {
                return Wait::Got(r);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Wait::TimedOut;
            }
            // Wake on a readiness change, or re-check a little later in any case.
            let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), notified).await;
        }
    }
}

fn pick(state: &ServiceState, model: Option<&ModelEntry>, avoid: &[u32]) -> Option<Picked> {
    match model {
        Some(m) => m.pick(avoid).map(|c| (c.replica.clone(), Some(c))),
        None => state.pick(avoid).map(|r| (r, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_do_not_cross() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-trace"));
        h.insert("x-trace", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn only_idempotent_methods_are_retried_after_sending() {
        assert!(idempotent(&Method::GET));
        assert!(idempotent(&Method::PUT));
        assert!(!idempotent(&Method::POST));
        assert!(!idempotent(&Method::PATCH));
    }
}
