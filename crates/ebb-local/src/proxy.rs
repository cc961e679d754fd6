//! Ebb's proxy: forwards each request to the ready replica with the fewest requests in flight,
//! counts arrivals, completions and latency, holds requests while no replica is ready (the
//! activator), and serves `/metrics` and `/ebb/status`.

use crate::models::{Copy, ModelEntry, ModelTable};
use crate::state::ServiceState;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// The HTTP client the proxy forwards with (pooled keep-alive connections).
pub type Upstream = Client<HttpConnector, Full<Bytes>>;

/// A new upstream client.
pub fn upstream() -> Upstream {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// Limits of the activator queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Requests held at most.
    pub capacity: usize,
    /// How long one waits.
    pub timeout: Duration,
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

/// Serves the proxy on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, state: Arc<ServiceState>, limits: QueueLimits) {
    let client = upstream();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                let client = client.clone();
                async move { Ok::<_, hyper::Error>(handle(req, &state, &client, limits).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    state: &ServiceState,
    client: &Upstream,
    limits: QueueLimits,
) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/metrics" => return text(StatusCode::OK, state.metrics_text()),
        "/ebb/status" => {
            let mut r = text(StatusCode::OK, state.status_json().to_string());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            return r;
        }
        _ => {}
    }
    let start = Instant::now();
    state.arrivals.fetch_add(1, Ordering::Relaxed);
    state.in_flight.fetch_add(1, Ordering::Relaxed);
    let response = forward(req, state, client, limits).await;
    state.in_flight.fetch_sub(1, Ordering::Relaxed);
    state.completions.fetch_add(1, Ordering::Relaxed);
    state.record_latency(start.elapsed().as_micros() as u64);
    response
}

async fn forward(
    req: Request<Incoming>,
    state: &ServiceState,
    client: &Upstream,
    limits: QueueLimits,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    // Inference requests are small: buffer the body so that a request can be retried on
    // another replica when its replica died before answering.
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            state.errors.fetch_add(1, Ordering::Relaxed);
            return text(
                StatusCode::BAD_REQUEST,
                format!("ebb: could not read the request body: {e}\n"),
            );
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    // A multi-model service routes by the model the path names.
    let model = match &state.models {
        None => None,
        Some(table) => match ModelTable::model_of_path(parts.uri.path()) {
            None => None,
            Some(name) => match table.models.get(name) {
                Some(m) => Some(m.clone()),
                None => {
                    state.errors.fetch_add(1, Ordering::Relaxed);
                    let known: Vec<&str> = table.models.keys().map(String::as_str).collect();
                    return text(
                        StatusCode::NOT_FOUND,
                        format!(
                            "ebb: {} hosts no model named '{name}' (models: {})\n",
                            state.name,
                            known.join(", ")
                        ),
                    );
                }
            },
        },
    };
    if let Some(m) = &model {
        m.arrivals.fetch_add(1, Ordering::Relaxed);
        m.in_flight.fetch_add(1, Ordering::Relaxed);
    }
    let response = forward_to(parts, body, &path, model.as_deref(), state, client, limits).await;
    if let Some(m) = &model {
        m.in_flight.fetch_sub(1, Ordering::Relaxed);
        m.completions.fetch_add(1, Ordering::Relaxed);
    }
    response
}

async fn forward_to(
    parts: hyper::http::request::Parts,
    body: Bytes,
    path: &str,
    model: Option<&ModelEntry>,
    state: &ServiceState,
    client: &Upstream,
    limits: QueueLimits,
) -> Response<Full<Bytes>> {
    let deadline = Instant::now() + limits.timeout;
    for attempt in 0..3 {
        let picked = wait_for_replica(state, model, limits, deadline).await;
        let Some((replica, copy)) = picked else {
            state.errors.fetch_add(1, Ordering::Relaxed);
            let (starting, _, _) = state.counts();
            let what = model.map_or(state.name.clone(), |m| format!("model {}", m.cfg.name));
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "ebb: no ready replica of {what} within {:.1}s ({starting} servers starting); try again\n",
                    limits.timeout.as_secs_f64()
                ),
            );
        };
        let mut up = Request::builder()
            .method(parts.method.clone())
            .uri(format!("http://127.0.0.1:{}{}", replica.port, path));
        for (k, v) in parts.headers.iter() {
            if k != hyper::header::HOST {
                up = up.header(k, v);
            }
        }
        let Ok(up) = up.body(Full::new(body.clone())) else {
            state.errors.fetch_add(1, Ordering::Relaxed);
            return text(StatusCode::BAD_REQUEST, "ebb: malformed request\n".into());
        };
        replica.in_flight.fetch_add(1, Ordering::AcqRel);
        replica.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = &copy {
            c.in_flight.fetch_add(1, Ordering::AcqRel);
        }
        let sent = Instant::now();
        let result = async {
            let resp = client.request(up).await?;
            let (p, b) = resp.into_parts();
            let bytes = b.collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(Response::from_parts(
                p,
                Full::new(bytes),
            ))
        }
        .await;
        replica.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Some(c) = &copy {
            c.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        match result {
            Ok(r) => {
                state.record_service(sent.elapsed());
                return r;
            }
            Err(e) => {
                // The replica went away (crash, or stopped under us): take it out of routing
                // until the supervisor says otherwise, and try another one.
                replica.ready.store(false, Ordering::Release);
                if attempt == 2 || Instant::now() >= deadline {
                    state.errors.fetch_add(1, Ordering::Relaxed);
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!("ebb: replica {} failed: {e}\n", replica.id),
                    );
                }
            }
        }
    }
    text(StatusCode::BAD_GATEWAY, "ebb: no replica answered\n".into())
}

/// A replica to send to, and the model's copy on it for a multi-model request.
type Picked = (Arc<crate::state::Replica>, Option<Arc<Copy>>);

fn pick(state: &ServiceState, model: Option<&ModelEntry>) -> Option<Picked> {
    match model {
        Some(m) => m.pick().map(|c| (c.replica.clone(), Some(c))),
        None => state.pick().map(|r| (r, None)),
    }
}

async fn wait_for_replica(
    state: &ServiceState,
    model: Option<&ModelEntry>,
    limits: QueueLimits,
    deadline: Instant,
) -> Option<Picked> {
    if let Some(r) = pick(state, model) {
        return Some(r);
    }
    if state.waiting.load(Ordering::Relaxed) as usize >= limits.capacity {
        return None;
    }
    state.waiting.fetch_add(1, Ordering::Relaxed);
    let found = loop {
        let notified = state.ready_changed.notified();
        if let Some(r) = pick(state, model) {
            break Some(r);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break None;
        }
        // Wake on a readiness change, or re-check a little later in any case.
        let _ = tokio::time::timeout(left.min(Duration::from_millis(50)), notified).await;
    };
    state.waiting.fetch_sub(1, Ordering::Relaxed);
    found
}
