//! Ebb's own endpoints, on their own listener (loopback by default), apart from every
//! service port: `/metrics` (Prometheus text, all services), `/ebb/status` (JSON, all
//! services) and `/ebb/status/{service}` (one service), `/healthz`, and `/readyz` where the
//! driver says when it is ready (the gateway, once it knows the pods). Read-only: other
//! methods get 405.

use crate::state::ServiceState;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

/// The services the admin listener reports on.
#[derive(Clone)]
pub struct Admin {
    services: Arc<Vec<Arc<ServiceState>>>,
    ready: Option<Arc<std::sync::atomic::AtomicBool>>,
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    r
}

impl Admin {
    /// Reports on `services`.
    pub fn new(services: Vec<Arc<ServiceState>>) -> Admin {
        Admin {
            services: Arc::new(services),
            ready: None,
        }
    }

    /// Also answers `/readyz`: 200 once `ready` is true, 503 until then.
    pub fn with_readiness(mut self, ready: Arc<std::sync::atomic::AtomicBool>) -> Admin {
        self.ready = Some(ready);
        self
    }

    /// Serves these endpoints on `listener` until the task is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) {
        let ctx = crate::server::Listener::new(
            Arc::default(),
            Arc::new(|text| tracing::warn!("admin listener: {text}")),
        );
        let limits = crate::server::ConnectionLimits {
            max_connections: 64,
            header_timeout: std::time::Duration::from_secs(5),
            idle_timeout: std::time::Duration::from_secs(30),
        };
        crate::server::serve(listener, limits, ctx, move |req| {
            let admin = self.clone();
            async move { admin.handle(req).await }
        })
        .await;
    }

    /// Answers one admin request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut r = reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "ebb: the admin endpoints are read-only\n".into(),
            );
            r.headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let path = req.uri().path();
        match path {
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                crate::state::exposition(self.services.iter().flat_map(|s| s.metric_families())),
            ),
            "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            "/readyz" if self.ready.is_some() => {
                let ready = self
                    .ready
                    .as_ref()
                    .is_some_and(|r| r.load(std::sync::atomic::Ordering::Acquire));
                if ready {
                    reply(StatusCode::OK, "text/plain", "ok\n".into())
                } else {
                    reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready yet\n".into())
                }
            }
            "/ebb/status" => {
                let all: Vec<serde_json::Value> =
                    self.services.iter().map(|s| s.status_json()).collect();
                reply(
                    StatusCode::OK,
                    "application/json",
                    serde_json::json!({ "services": all }).to_string(),
                )
            }
            _ => match path
                .strip_prefix("/ebb/status/")
                .and_then(|name| self.services.iter().find(|s| s.name == name))
            {
                Some(s) => reply(
                    StatusCode::OK,
                    "application/json",
                    s.status_json().to_string(),
                ),
                None => reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    format!(
                        "ebb: no such admin path; try /metrics, /ebb/status or /ebb/status/{{{}}}\n",
                        self.services
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join("|")
                    ),
                ),
            },
        }
    }
}
