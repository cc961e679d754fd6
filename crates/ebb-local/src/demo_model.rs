//! `ebb demo-model`: a small real model behind the Open Inference Protocol V2 REST endpoints
//! that MLServer, Triton and KServe serve (`/v2/health/ready`, `/v2/models/{name}`,
//! `/v2/models/{name}/infer`). The model is a 4-16-3 multilayer perceptron over iris-like
//! features (fixed, seeded weights; softmax output). Each request holds one of `concurrency`
//! slots for at least `service_ms`, so a replica's capacity is known:
//! `concurrency / service_ms` requests per millisecond.
//!
//! With a repository (`--repository a,b,c`) one process hosts several models, each with its
//! own seeded weights, and serves the V2 model repository extension that Triton (explicit
//! model control) and MLServer expose: `POST /v2/repository/index`,
//! `POST /v2/repository/models/{name}/load` (takes `load` to complete, as reading weights
//! onto a GPU would) and `.../unload`. Ebb's multi-model runtime places models on such
//! servers with these calls.
//!
//! It also answers the gRPC health check (`grpc.health.v1.Health/Check`, over HTTP/2), so
//! that gRPC through Ebb's proxy can be tested with a real process.

use crate::grpc_health;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The demo model's settings.
#[derive(Debug, Clone)]
pub struct DemoModel {
    /// Model name in the URL.
    pub name: String,
    /// Minimum time a request holds a slot.
    pub service: Duration,
    /// Requests served at once.
    pub concurrency: usize,
    /// Models this server can load by name (empty: just `name`, always loaded).
    pub repository: Vec<String>,
    /// Models of the repository loaded at start.
    pub preload: Vec<String>,
    /// How long loading a model takes.
    pub load: Duration,
    /// How long after it starts listening the server reports ready (the time a real one
    /// spends loading its weights): until then `/v2/health/ready` and inference answer 503.
    pub startup: Duration,
}

/// Where a model of the repository is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelState {
    Unavailable,
    Loading,
    Ready,
}

impl ModelState {
    fn name(self) -> &'static str {
        match self {
            ModelState::Unavailable => "UNAVAILABLE",
            ModelState::Loading => "LOADING",
            ModelState::Ready => "READY",
        }
    }
}

struct Hosted {
    models: RwLock<BTreeMap<String, (ModelState, Arc<Mlp>)>>,
}

impl Hosted {
    fn new(cfg: &DemoModel) -> Hosted {
        let mut models = BTreeMap::new();
        if cfg.repository.is_empty() {
            models.insert(cfg.name.clone(), (ModelState::Ready, Arc::new(Mlp::demo())));
        } else {
            for name in &cfg.repository {
                let state = if cfg.preload.contains(name) {
                    ModelState::Ready
                } else {
                    ModelState::Unavailable
                };
                models.insert(name.clone(), (state, Arc::new(Mlp::for_model(name))));
            }
        }
        Hosted {
            models: RwLock::new(models),
        }
    }

    fn state(&self, name: &str) -> Option<(ModelState, Arc<Mlp>)> {
        self.models
            .read()
            .ok()
            .and_then(|m| m.get(name).map(|(s, w)| (*s, w.clone())))
    }

    fn set(&self, name: &str, state: ModelState) {
        if let Ok(mut m) = self.models.write() {
            if let Some(entry) = m.get_mut(name) {
                entry.0 = state;
            }
        }
    }
}

/// A 4-16-3 perceptron with fixed weights.
pub struct Mlp {
    w1: [[f32; 4]; 16],
    b1: [f32; 16],
    w2: [[f32; 16]; 3],
    b2: [f32; 3],
}

impl Mlp {
    /// The demo's weights (seeded, so every replica computes the same function).
    pub fn demo() -> Mlp {
        Mlp::seeded(42)
    }

    /// Weights of the repository model `name`: seeded by the name, so that every server
    /// computes the same function for it and different models differ.
    pub fn for_model(name: &str) -> Mlp {
        let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Mlp::seeded(seed)
    }

    fn seeded(seed: u64) -> Mlp {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut w1 = [[0.0; 4]; 16];
        let mut w2 = [[0.0; 16]; 3];
        for row in w1.iter_mut() {
            for w in row.iter_mut() {
                *w = rng.gen_range(-1.0..1.0);
            }
        }
        for row in w2.iter_mut() {
            for w in row.iter_mut() {
                *w = rng.gen_range(-1.0..1.0);
            }
        }
        Mlp {
            w1,
            b1: [0.1; 16],
            w2,
            b2: [0.0; 3],
        }
    }

    /// Class probabilities for one row of 4 features.
    pub fn predict(&self, x: &[f32; 4]) -> [f32; 3] {
        let mut h = [0.0f32; 16];
        for (i, hi) in h.iter_mut().enumerate() {
            let z: f32 = self.b1[i] + self.w1[i].iter().zip(x).map(|(w, v)| w * v).sum::<f32>();
            *hi = z.max(0.0);
        }
        let mut o = [0.0f32; 3];
        for (k, ok) in o.iter_mut().enumerate() {
            *ok = self.b2[k] + self.w2[k].iter().zip(&h).map(|(w, v)| w * v).sum::<f32>();
        }
        let m = o.iter().copied().fold(f32::MIN, f32::max);
        let e: Vec<f32> = o.iter().map(|v| (v - m).exp()).collect();
        let s: f32 = e.iter().sum();
        [e[0] / s, e[1] / s, e[2] / s]
    }
}

fn json_response(status: StatusCode, v: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, msg: String) -> Response<Full<Bytes>> {
    json_response(status, json!({ "error": msg }))
}

/// Runs an inference request body through the model.
pub fn infer(model: &Mlp, name: &str, body: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let input = v["inputs"].get(0).ok_or("no inputs[0]")?;
    let data: Vec<f32> = input["data"]
        .as_array()
        .ok_or("inputs[0].data must be an array")?
        .iter()
        .map(|x| {
            x.as_f64()
                .map(|f| f as f32)
                .ok_or("inputs[0].data holds a non-number")
        })
        .collect::<Result<_, _>>()?;
    if data.is_empty() || !data.len().is_multiple_of(4) {
        return Err(format!(
            "inputs[0].data must hold rows of 4 features, got {} values",
            data.len()
        ));
    }
    let rows = data.len() / 4;
    let mut out = Vec::with_capacity(rows * 3);
    for row in data.chunks_exact(4) {
        out.extend(model.predict(&[row[0], row[1], row[2], row[3]]));
    }
    Ok(json!({
        "model_name": name,
        "outputs": [{"name": "probabilities", "shape": [rows, 3], "datatype": "FP32", "data": out}]
    }))
}

/// Serves the demo model on `listener` until `stop` completes; then, as a server should on
/// SIGTERM, it stops accepting and answers the requests it has taken before it returns.
pub async fn serve(
    listener: TcpListener,
    cfg: DemoModel,
    stop: impl std::future::Future<Output = ()>,
) {
    let hosted = Arc::new(Hosted::new(&cfg));
    let ready_at = Instant::now() + cfg.startup;
    let slots = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let cfg = Arc::new(cfg);
    let ctx = ebb_proxy::server::Listener::new(
        Arc::default(),
        Arc::new(|text| tracing::warn!("demo model: {text}")),
    );
    let limits = ebb_proxy::server::ConnectionLimits {
        max_connections: 4096,
        header_timeout: std::time::Duration::from_secs(10),
        idle_timeout: std::time::Duration::from_secs(60),
    };
    let serving = ebb_proxy::server::serve(listener, limits, ctx.clone(), move |req| {
        let (hosted, slots, cfg) = (hosted.clone(), slots.clone(), cfg.clone());
        async move {
            let loaded = Instant::now() >= ready_at;
            if req.uri().path() == grpc_health::CHECK_PATH {
                return grpc_health::check(&req, loaded).map(|b| b.boxed_unsync());
            }
            let live = req.uri().path() == "/v2/health/live";
            if !loaded && !live {
                let loading = error(StatusCode::SERVICE_UNAVAILABLE, "loading weights".into());
                return loading.map(|b| b.boxed_unsync());
            }
            route(req, &hosted, &slots, &cfg)
                .await
                .map(|b| b.boxed_unsync())
        }
    });
    tokio::select! {
        _ = serving => {}
        _ = stop => {}
    }
    ctx.stop.cancel();
    ctx.connections.close();
    ctx.connections.wait().await;
}

fn not_loaded(name: &str) -> Response<Full<Bytes>> {
    error(
        StatusCode::BAD_REQUEST,
        format!("model '{name}' is not loaded on this server"),
    )
}

fn unknown(name: &str) -> Response<Full<Bytes>> {
    error(
        StatusCode::NOT_FOUND,
        format!("no model named '{name}' in this server's repository"),
    )
}

async fn route(
    req: Request<Incoming>,
    hosted: &Hosted,
    slots: &Semaphore,
    cfg: &DemoModel,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["v2", "health", "ready"]) | (&Method::GET, ["v2", "health", "live"]) => {
            json_response(StatusCode::OK, json!({}))
        }
        (&Method::GET, ["v2"]) => json_response(
            StatusCode::OK,
            json!({"name": "ebb-demo-model", "version": env!("CARGO_PKG_VERSION"), "extensions": ["model_repository"]}),
        ),
        (&Method::POST, ["v2", "repository", "index"]) => {
            let index: Vec<Value> = hosted
                .models
                .read()
                .map(|m| {
                    m.iter()
                        .map(|(n, (s, _))| json!({"name": n, "version": "1", "state": s.name(), "reason": ""}))
                        .collect()
                })
                .unwrap_or_default();
            json_response(StatusCode::OK, Value::Array(index))
        }
        (&Method::POST, ["v2", "repository", "models", name, action @ ("load" | "unload")]) => {
            let name = name.to_string();
            let Some((state, _)) = hosted.state(&name) else {
                return unknown(&name);
            };
            if *action == "load" {
                if state != ModelState::Ready {
                    hosted.set(&name, ModelState::Loading);
                    tokio::time::sleep(cfg.load).await;
                    hosted.set(&name, ModelState::Ready);
                }
            } else {
                hosted.set(&name, ModelState::Unavailable);
            }
            json_response(StatusCode::OK, json!({}))
        }
        (&Method::GET, ["v2", "models", name])
        | (&Method::GET, ["v2", "models", name, "ready"]) => match hosted.state(name) {
            None => unknown(name),
            Some((ModelState::Ready, _)) => json_response(
                StatusCode::OK,
                json!({
                    "name": name, "platform": "ebb-demo", "versions": ["1"],
                    "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
                    "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]
                }),
            ),
            Some(_) => not_loaded(name),
        },
        (&Method::POST, ["v2", "models", name, "infer"]) => {
            let name = name.to_string();
            let model = match hosted.state(&name) {
                None => return unknown(&name),
                Some((ModelState::Ready, m)) => m,
                Some(_) => return not_loaded(&name),
            };
            let body = match crate::demo_body::read(req).await {
                Ok(body) => body,
                Err((status, message)) => return error(status, message),
            };
            let Ok(_permit) = slots.acquire().await else {
                return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into());
            };
            let start = Instant::now();
            let result = infer(&model, &name, &body);
            // Hold the slot for the configured service time, as a real model's compute would.
            if let Some(left) = cfg.service.checked_sub(start.elapsed()) {
                tokio::time::sleep(left).await;
            }
            match result {
                Ok(v) => json_response(StatusCode::OK, v),
                Err(e) => error(StatusCode::BAD_REQUEST, e),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no route for {} {path}", req.method()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The status line's code of `GET path` from the demo model at `addr`.
    async fn status_of(addr: std::net::SocketAddr, path: &str) -> u16 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        text.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    /// Serves a demo model that reports ready `startup` after it starts; its address.
    async fn started(startup: Duration) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cfg = DemoModel {
            name: "iris".into(),
            service: Duration::ZERO,
            concurrency: 1,
            repository: Vec::new(),
            preload: Vec::new(),
            load: Duration::ZERO,
            startup,
        };
        tokio::spawn(serve(listener, cfg, std::future::pending()));
        addr
    }

    #[tokio::test]
    async fn it_is_live_but_not_ready_while_loading_its_weights() {
        let loading = started(Duration::from_secs(3600)).await;
        assert_eq!(status_of(loading, "/v2/health/ready").await, 503);
        assert_eq!(status_of(loading, "/v2/models/iris").await, 503);
        assert_eq!(status_of(loading, "/v2/health/live").await, 200);
        let loaded = started(Duration::ZERO).await;
        assert_eq!(status_of(loaded, "/v2/health/ready").await, 200);
    }

    /// An inference request that states a body past the bound is answered 413 before its
    /// body is read (the client has sent only the head).
    #[tokio::test]
    async fn a_body_past_the_bound_is_answered_413() {
        let addr = started(Duration::ZERO).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            crate::demo_body::MAX_BODY + 1
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let mut answer = [0u8; 12];
        s.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 413");
        // Chunked, with no length stated: answered 413 once the bound is passed.
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head =
            "POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        s.write_all(head.as_bytes()).await.unwrap();
        let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
        for _ in 0..(2 * crate::demo_body::MAX_BODY / 0x10000) {
            if s.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
        }
        s.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 413");
    }

    #[test]
    fn infers_probabilities_per_row() {
        let m = Mlp::demo();
        let body = br#"{"inputs":[{"name":"features","shape":[2,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2,6.7,3.0,5.2,2.3]}]}"#;
        let v = infer(&m, "iris", body).unwrap();
        let data: Vec<f64> = v["outputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(data.len(), 6);
        assert!((data[0] + data[1] + data[2] - 1.0).abs() < 1e-5);
        assert_ne!(data[0..3], data[3..6], "different rows, different outputs");
        let other = infer(&Mlp::for_model("wine"), "wine", body).unwrap();
        assert_ne!(
            other["outputs"][0]["data"], v["outputs"][0]["data"],
            "models differ"
        );
        assert!(infer(&m, "iris", br#"{"inputs":[{"data":[1,2,3]}]}"#)
            .unwrap_err()
            .contains("rows of 4"));
    }
}
