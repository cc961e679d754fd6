//! Ebb's proxy: forwards each request to the routable replica with the fewest requests in
//! flight, counts arrivals, completions and latency (by guards, so a client that leaves
//! early leaves no count behind), holds requests while no replica is ready (the activator),
//! ejects replicas whose requests keep failing, retries only where that is safe and the
//! budget allows, and refuses what a service port should not take: oversized bodies (413),
//! bodies that stall (408), the model server's control paths (403), requests that are not
//! origin-form.
//!
//! Answers stream: a replica's body passes to the client chunk by chunk as it comes (a token
//! stream's tokens as they are generated), and the request stays in flight, on the service and
//! on its replica, until the last byte (so a drain waits for open streams). The time to the
//! first byte and the gaps between chunks are measured on the way. Request bodies up to
//! `retryBodyBytes` are held whole so that they can be retried; larger ones stream too
//! ([`crate::body`]).

use crate::body::{
    read_request, BodyLimits, CutWatch, Metered, Observer, ReadBody, Refused, RequestBody,
};
use crate::guard::{Held, HeldBy};
use crate::headers::{idempotent, strip_hop_by_hop, strip_hop_by_hop_keeping_trailers};
use crate::health::Outcome;
use crate::server::{self, ConnectionLimits, Listener};
use crate::settings::{HealthSettings, ProxySettings};
use crate::state::models::{Copy, ModelEntry, ModelTable};
use crate::state::{Replica, ServiceState};
use crate::upstream::UpstreamProtocol;
use crate::upstream::{UpstreamBody, Upstreams};
use crate::BoxError;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::http::request::Parts;
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
    /// How request bodies are read (from `settings`).
    body_limits: BodyLimits,
    health: Arc<HealthSettings>,
    queue: QueueLimits,
    /// Once cancelled, requests waiting for a first ready replica are answered 503 at once
    /// instead of held (a gateway replica that stops: another one can hold them).
    release_held: Option<tokio_util::sync::CancellationToken>,
}

/// An answer: Ebb's own, or a replica's passing through.
pub type Answer = Response<UnsyncBoxBody<Bytes, BoxError>>;

fn text(status: StatusCode, body: String) -> Answer {
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

/// A request counted in the service's arrivals and in-flight count; when it drops, it is
/// counted as completed whatever happened (a client that left is also counted as cancelled).
struct Accounted {
    state: Arc<ServiceState>,
    arrived: Instant,
    answered: bool,
    _in_flight: HeldBy<ServiceState>,
}

impl Accounted {
    fn begin(state: &Arc<ServiceState>) -> Accounted {
        state.arrivals.fetch_add(1, Ordering::Relaxed);
        state.retry_budget.deposit();
        Accounted {
            state: state.clone(),
            arrived: Instant::now(),
            answered: false,
            _in_flight: HeldBy::new(state.clone(), |s| &s.in_flight),
        }
    }

    /// Ebb's own answer: complete when handed over (a 5xx of its own is a failure).
    fn answer_now(mut self, r: Answer) -> Answer {
        self.answered(self.arrived.elapsed(), r.status().is_server_error());
        r
    }

    /// The answer's last byte went out after `took`; `failed` where it was a server error
    /// or was cut off.
    fn answered(&mut self, took: Duration, failed: bool) {
        self.answered = true;
        self.state.record_latency(took.as_micros() as u64);
        self.state.answers.answered(took, failed);
    }
}

impl Drop for Accounted {
    fn drop(&mut self) {
        self.state.completions.fetch_add(1, Ordering::Relaxed);
        if !self.answered {
            self.state.answers.abandoned(self.arrived.elapsed());
            self.state
                .counters
                .cancelled
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A multi-model request counted in its model's counters until it drops.
struct ModelAccounted {
    _in_flight: HeldBy<ModelEntry>,
    model: Arc<ModelEntry>,
}

impl ModelAccounted {
    fn begin(model: Arc<ModelEntry>) -> ModelAccounted {
        model.arrivals.fetch_add(1, Ordering::Relaxed);
        ModelAccounted {
            _in_flight: HeldBy::new(model.clone(), |m| &m.in_flight),
            model,
        }
    }
}

impl Drop for ModelAccounted {
    fn drop(&mut self) {
        self.model.completions.fetch_add(1, Ordering::Relaxed);
    }
}

/// A request's counts on the replica (and the model's copy) it was sent to.
struct OnReplica {
    replica: Arc<Replica>,
    _in_flight: HeldBy<Replica>,
    /// Dropped after `_in_flight`: the slot is free by then.
    _freed: SlotFreed,
    _copy_in_flight: Option<HeldBy<Copy>>,
    /// Whether the replica had a free slot when the request was sent: if not, the request
    /// waits in the replica's own queue, and its time there is no service time.
    found_free_slot: bool,
}

impl OnReplica {
    fn begin(
        state: &Arc<ServiceState>,
        replica: &Arc<Replica>,
        copy: Option<&Arc<Copy>>,
    ) -> OnReplica {
        replica.requests.fetch_add(1, Ordering::Relaxed);
        let (in_flight, before) = HeldBy::counting(replica.clone(), |r| &r.in_flight);
        OnReplica {
            replica: replica.clone(),
            _in_flight: in_flight,
            _freed: SlotFreed(state.clone()),
            _copy_in_flight: copy.map(|c| HeldBy::new(c.clone(), |c| &c.in_flight)),
            found_free_slot: state.slot_was_free(before),
        }
    }
}

/// Wakes the requests held in the activator queue when a request leaves its replica (see
/// [`ServiceState::pick_with_room`]).
struct SlotFreed(Arc<ServiceState>);

impl Drop for SlotFreed {
    fn drop(&mut self) {
        if self.0.waiting.load(Ordering::Acquire) > 0 {
            self.0.slot_freed.notify_one();
        }
    }
}

/// A replica's answer on its way to the client: every count of the request lives here until
/// the last byte has gone.
struct Exchange {
    request: Accounted,
    _model: Option<ModelAccounted>,
    on: OnReplica,
    sent: Instant,
    /// Not a 5xx: its duration is a service time the SLO model may learn from (where the
    /// replica had a free slot for it).
    served: bool,
    health: Arc<HealthSettings>,
}

impl Observer for Exchange {
    fn first_byte(&mut self, wait: Duration) {
        self.request.state.first_byte.observe(wait);
    }

    fn gap(&mut self, gap: Duration) {
        self.request.state.chunk_gaps.observe(gap);
    }

    fn finished(&mut self, total: Duration) {
        self.request.answered(total, !self.served);
        if self.served && self.on.found_free_slot {
            self.request.state.record_service(self.sent.elapsed());
        }
    }

    fn broke(&mut self, why: &str, total: Duration) {
        let state = &self.request.state;
        state
            .counters
            .answers_broken
            .fetch_add(1, Ordering::Relaxed);
        state.report_outcome(&self.on.replica, Outcome::GatewayFailure, &self.health);
        tracing::debug!(replica = self.on.replica.id, "answer broke off: {why}");
        self.request.answered(total, true);
    }

    fn abandoned(&mut self) {}
}

/// A replica to send to, and the model's copy on it for a multi-model request.
type Picked = (Arc<Replica>, Option<Arc<Copy>>);

/// How waiting for a replica ended.
enum Wait {
    Got(Picked),
    QueueFull,
    TimedOut,
    /// The proxy is stopping and releases what it holds (the gateway's choice).
    Released,
}

/// A replica's answer head, with the counts its body must keep.
struct Relayed {
    head: Response<UpstreamBody>,
    on: OnReplica,
    sent: Instant,
}

/// How sending to one replica ended.
enum Sent {
    /// The replica answered (any status).
    Answered(Relayed),
    /// No answer; `reached` says whether the request may have reached the replica, and
    /// `unsent` gives the request back if it never left.
    Failed {
        error: String,
        reached: bool,
        unsent: Option<Request<RequestBody>>,
    },
    /// No answer within the upstream timeout.
    TimedOut,
}

/// The request body as the retry loop holds it: bytes to send again, or a stream to send once.
enum Outgoing {
    Whole(Bytes),
    Streamed(Option<Box<crate::body::Streamed>>, CutWatch),
}

impl Outgoing {
    fn from(body: ReadBody) -> Outgoing {
        match body {
            ReadBody::Whole(b) => Outgoing::Whole(b),
            ReadBody::Streamed(s) => {
                let watch = s.cut_watch();
                Outgoing::Streamed(Some(Box::new(s)), watch)
            }
        }
    }

    /// The body for the next try, if there is one to send.
    fn next(&mut self) -> Option<RequestBody> {
        match self {
            Outgoing::Whole(b) => Some(RequestBody::whole(b.clone())),
            Outgoing::Streamed(s, _) => s.take().map(RequestBody::Streamed),
        }
    }

    /// Why a streamed body was cut, when that is what failed the exchange.
    fn cut(&self) -> Option<Refused> {
        match self {
            Outgoing::Whole(_) => None,
            Outgoing::Streamed(_, watch) => watch.why(),
        }
    }
}

/// The request to send upstream, its body aside.
fn request_to(parts: &Parts, body: RequestBody) -> Request<RequestBody> {
    let mut up = Request::new(body);
    *up.method_mut() = parts.method.clone();
    if let Some(pq) = parts.uri.path_and_query() {
        *up.uri_mut() = hyper::Uri::from(pq.clone());
    }
    *up.headers_mut() = parts.headers.clone();
    up
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

impl Proxy {
    /// A proxy over `state`'s replicas with these settings; once `release_held` is cancelled, it answers the requests it holds
    /// for want of a ready replica with 503 instead of holding them.
    pub fn with(
        state: Arc<ServiceState>,
        settings: ProxySettings,
        health: HealthSettings,
        queue: QueueLimits,
        release_held: Option<tokio_util::sync::CancellationToken>,
    ) -> Arc<Proxy> {
        Arc::new(Proxy {
            state,
            upstreams: Upstreams::new(settings.connect_timeout, settings.upstream_protocol)
                .with_idle_limit(settings.upstream_idle),
            body_limits: BodyLimits {
                max_bytes: settings.max_body_bytes,
                retry_bytes: settings.retry_body_bytes,
                read_timeout: settings.body_timeout,
            },
            settings,
            health: Arc::new(health),
            queue,
            release_held,
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

    async fn handle(&self, req: Request<Incoming>) -> Answer {
        if let Some(refused) = self.refuse_target(&req) {
            return refused;
        }
        let request = Accounted::begin(&self.state);
        let (mut parts, body) = req.into_parts();
        let declared = declared_length(&parts.headers);
        let body = match read_request(body, declared, self.body_limits).await {
            Ok(b) => b,
            Err(why) => return request.answer_now(self.refused(why)),
        };
        match self.settings.upstream_protocol {
            UpstreamProtocol::Http1 => strip_hop_by_hop(&mut parts.headers),
            UpstreamProtocol::H2c => strip_hop_by_hop_keeping_trailers(&mut parts.headers),
        }
        parts.headers.remove(hyper::header::HOST);
        let model = match &self.state.models {
            None => None,
            Some(table) => match self.model_of(table, parts.uri.path()) {
                Ok(m) => m,
                Err(r) => return request.answer_now(*r),
            },
        };
        let model_count = model.clone().map(ModelAccounted::begin);
        match self.forward_to(&parts, body, model.as_deref()).await {
            Ok(relayed) => self.relay(request, model_count, relayed),
            Err(r) => request.answer_now(r),
        }
    }

    /// Ebb's answer to a request it does not forward at all: not origin-form, or a denied
    /// path.
    fn refuse_target(&self, req: &Request<Incoming>) -> Option<Answer> {
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
                return Some(r);
            }
            return Some(text(
                StatusCode::BAD_REQUEST,
                "ebb: only requests for a path (origin-form) are forwarded\n".into(),
            ));
        }
        if self.settings.denies(path) {
            counters.denied.fetch_add(1, Ordering::Relaxed);
            return Some(text(
                StatusCode::FORBIDDEN,
                format!("ebb: {path} is not served on the service port\n"),
            ));
        }
        None
    }

    /// The answer for a request body that was refused or cut.
    fn refused(&self, why: Refused) -> Answer {
        let counters = &self.state.counters;
        match why {
            Refused::TooLarge => {
                counters.too_large.fetch_add(1, Ordering::Relaxed);
                text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "ebb: request bodies are limited to {} bytes\n",
                        self.settings.max_body_bytes
                    ),
                )
            }
            Refused::TimedOut => {
                counters.body_timeouts.fetch_add(1, Ordering::Relaxed);
                text(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "ebb: the request body paused for over {:.1}s\n",
                        self.settings.body_timeout.as_secs_f64()
                    ),
                )
            }
            Refused::Broken => text(
                StatusCode::BAD_REQUEST,
                "ebb: could not read the request body\n".into(),
            ),
        }
    }

    /// Passes a replica's answer on as it streams, with the request's counts held until its
    /// last byte.
    fn relay(&self, request: Accounted, model: Option<ModelAccounted>, r: Relayed) -> Answer {
        let arrived = request.arrived;
        let (parts, body) = r.head.into_parts();
        let exchange = Exchange {
            request,
            _model: model,
            on: r.on,
            sent: r.sent,
            served: !parts.status.is_server_error(),
            health: self.health.clone(),
        };
        Response::from_parts(parts, Metered::new(body, arrived, exchange).boxed_unsync())
    }

    /// The model a multi-model request names, or the 404 that lists the hosted ones.
    fn model_of(
        &self,
        table: &ModelTable,
        path: &str,
    ) -> Result<Option<Arc<ModelEntry>>, Box<Answer>> {
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

    /// Sends the request to a replica, and to others while retrying is safe, until one
    /// answers; or Ebb's own answer when none does.
    async fn forward_to(
        &self,
        parts: &Parts,
        body: ReadBody,
        model: Option<&ModelEntry>,
    ) -> Result<Relayed, Answer> {
        let deadline = Instant::now() + self.queue.timeout;
        let mut body = Outgoing::from(body);
        let mut unsent: Option<Request<RequestBody>> = None;
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
                Wait::QueueFull => return Err(self.unavailable(model, true)),
                Wait::Released => {
                    let mut r = self.failed(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "this proxy is stopping and no replica is ready; try again (another proxy replica will take it)",
                    );
                    r.headers_mut()
                        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
                    return Err(r);
                }
                Wait::TimedOut if tried.is_empty() => return Err(self.unavailable(model, false)),
                Wait::TimedOut => {
                    return Err(self.failed(StatusCode::BAD_GATEWAY, "no other replica to retry on"))
                }
            };
            let Some(req) = unsent
                .take()
                .or_else(|| body.next().map(|b| request_to(parts, b)))
            else {
                return Err(self.failed(
                    StatusCode::BAD_GATEWAY,
                    "the request's streamed body was already sent once and cannot be sent again",
                ));
            };
            match self.send(req, &replica, copy.as_ref()).await {
                Sent::Answered(relayed) => {
                    self.answered(&replica, relayed.head.status());
                    return Ok(relayed);
                }
                Sent::TimedOut => return Err(self.timed_out(&replica)),
                Sent::Failed {
                    error,
                    reached,
                    unsent: back,
                } => {
                    if let Some(why) = body.cut() {
                        return Err(self.refused(why));
                    }
                    tracing::debug!(replica = replica.id, reached, "request failed: {error}");
                    self.state
                        .counters
                        .gateway_failures
                        .fetch_add(1, Ordering::Relaxed);
                    self.state
                        .report_outcome(&replica, Outcome::GatewayFailure, &self.health);
                    tried.push(replica.id);
                    unsent = back;
                    let resendable = unsent.is_some() || matches!(body, Outgoing::Whole(_));
                    if resendable && self.may_retry(&parts.method, reached, tried.len(), deadline) {
                        continue;
                    }
                    return Err(self.failed(
                        StatusCode::BAD_GATEWAY,
                        &format!("replica {} failed: {error}", replica.id),
                    ));
                }
            }
        }
    }

    /// Counts a replica's answer (a 5xx counts against it).
    fn answered(&self, replica: &Replica, status: StatusCode) {
        let outcome = if status.is_server_error() {
            self.state
                .counters
                .upstream_errors
                .fetch_add(1, Ordering::Relaxed);
            Outcome::ServerError
        } else {
            Outcome::Success
        };
        self.state.report_outcome(replica, outcome, &self.health);
    }

    /// The 504 for a replica that did not answer in time (counted against it).
    fn timed_out(&self, replica: &Replica) -> Answer {
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

    /// Sends once to `replica` and waits for the answer's head; the request is counted on the
    /// replica (and its copy) from now until the answer's last byte.
    async fn send(
        &self,
        mut up: Request<RequestBody>,
        replica: &Arc<Replica>,
        copy: Option<&Arc<Copy>>,
    ) -> Sent {
        up.headers_mut()
            .insert(hyper::header::HOST, replica.host.clone());
        let on = OnReplica::begin(&self.state, replica, copy);
        let sent = Instant::now();
        let addr = replica.addr;
        let silence = self.settings.upstream_timeout;
        let exchange = self.upstreams.send(addr, up, silence);
        match tokio::time::timeout(silence, exchange).await {
            Ok(Ok(r)) => {
                let (mut p, b) = r.into_parts();
                strip_hop_by_hop(&mut p.headers);
                // Answered to the client in its own protocol, whatever the replica spoke.
                p.version = hyper::Version::HTTP_11;
                Sent::Answered(Relayed {
                    head: Response::from_parts(p, b),
                    on,
                    sent,
                })
            }
            Ok(Err(f)) => Sent::Failed {
                error: f.error,
                reached: f.reached,
                unsent: f.unsent,
            },
            Err(_) => Sent::TimedOut,
        }
    }

    /// Ebb's own error answer (counted as a proxy error).
    fn failed(&self, status: StatusCode, why: &str) -> Answer {
        self.state.errors.fetch_add(1, Ordering::Relaxed);
        text(status, format!("ebb: {why}\n"))
    }

    /// The 503 for a request no replica could take: the queue was full, or the wait ran out.
    fn unavailable(&self, model: Option<&ModelEntry>, queue_full: bool) -> Answer {
        let (starting, _, _) = self.state.counts();
        let what = model.map_or(self.state.name.clone(), |m| format!("model {}", m.name));
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
    /// queue (released however the wait ends). While requests are held, a new one joins them
    /// rather than overtake them, and each goes on to a replica with a free slot where the
    /// slots are known ([`ServiceState::pick_with_room`]).
    async fn wait_for_replica(&self, model: Option<&ModelEntry>, deadline: Instant) -> Wait {
        let state = &self.state;
        if model.is_some() || state.waiting.load(Ordering::Acquire) == 0 {
            if let Some(r) = pick(state, model, &[]) {
                return Wait::Got(r);
            }
        }
        let _place = Held::new(&state.waiting);
        if state.waiting.load(Ordering::Acquire) as usize > self.queue.capacity {
            return Wait::QueueFull;
        }
        let held_pick = || match model {
            Some(_) => pick(state, model, &[]),
            None => state.pick_with_room().map(|r| (r, None)),
        };
        loop {
            let ready = state.ready_changed.notified();
            let freed = state.slot_freed.notified();
            if let Some(r) = held_pick() {
                return Wait::Got(r);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Wait::TimedOut;
            }
            if self.release_held.as_ref().is_some_and(|t| t.is_cancelled()) {
                return Wait::Released;
            }
            // Wake on a readiness change or a freed slot, or re-check a little later anyway.
            let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), async {
                tokio::select! {
                    _ = ready => {}
                    _ = freed => {}
                }
            })
            .await;
        }
    }
}

/// Serves `sockets` (one port, shared with `SO_REUSEPORT`) on a thread each, with its own
/// single-threaded event loop and its own proxy from `make` (so its own replica connections):
/// a request is read, forwarded and answered on one thread, without cross-thread wake-ups, as
/// in HAProxy and nginx. A thread ends once `ctx.stop` has come and its connections are
/// closed; one that cannot start its event loop says so through `ctx.report`. One result per
/// socket: the thread, or why it could not be spawned.
pub fn serve_on_threads(
    name: &str,
    sockets: Vec<std::net::TcpListener>,
    ctx: &Listener,
    make: impl Fn() -> Arc<Proxy>,
) -> Vec<std::io::Result<std::thread::JoinHandle<()>>> {
    sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| {
            let (proxy, ctx) = (make(), ctx.clone());
            std::thread::Builder::new()
                .name(format!("ebb-proxy-{name}-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            return (ctx.report)(format!("proxy thread {i} could not start: {e}"))
                        }
                    };
                    rt.block_on(async move {
                        match TcpListener::from_std(socket) {
                            Ok(listener) => proxy.serve(listener, ctx.clone()).await,
                            Err(e) => (ctx.report)(format!("proxy thread {i}: {e}")),
                        }
                        ctx.connections.wait().await;
                    });
                })
        })
        .collect()
}

fn pick(state: &ServiceState, model: Option<&ModelEntry>, avoid: &[u32]) -> Option<Picked> {
    match model {
        Some(m) => m.pick(avoid).map(|c| (c.replica.clone(), Some(c))),
        None => state.pick(avoid).map(|r| (r, None)),
    }
}
