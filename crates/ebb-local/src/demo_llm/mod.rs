//! `ebb demo-llm`: a small OpenAI-compatible server (`/v1/completions`,
//! `/v1/chat/completions`, streamed or whole) in front of the engine model of
//! [`ebb_sim::engine`]: continuous batching under a token budget per step, a KV cache of fixed
//! size (requests wait while it is full), prefill time proportional to prompt tokens and decode
//! steps that slow as the batch grows. It exports vLLM's metric names on `/metrics`, answers
//! `/health` and `/v1/models` as vLLM does, and so stands in for a vLLM replica in `ebb up` and
//! in tests. It models an engine; it is not a language model, and it needs no accelerator.

pub mod driver;
pub mod metrics;
pub mod openai;

use bytes::Bytes;
use driver::{Driver, Refusal};
use ebb_sim::engine::EngineParams;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use openai::{Answer, Api, Ask, Events};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The demo engine's settings.
#[derive(Debug, Clone)]
pub struct DemoLlm {
    /// The model name it serves (and checks requests' `model` against).
    pub model: String,
    /// What the engine can do.
    pub engine: EngineParams,
    /// Requests waiting at most; more get 503.
    pub max_waiting: usize,
    /// What it does with a request: all of it, or one side of disaggregated serving (a
    /// prefill replica answers with the first token; a decode replica takes the prompt as
    /// computed elsewhere and decodes from its first step).
    pub stage: ebb_sim::engine::Stage,
}

type Reply = Response<UnsyncBoxBody<Bytes, Infallible>>;

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Reply {
    let mut r = Response::new(Full::new(body).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    r
}

fn json_reply(status: StatusCode, v: &Value) -> Reply {
    reply(status, "application/json", Bytes::from(v.to_string()))
}

/// An error in vLLM's shape.
fn error(status: StatusCode, message: &str) -> Reply {
    let kind = match status {
        StatusCode::NOT_FOUND => "NotFoundError",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailableError",
        _ => "BadRequestError",
    };
    json_reply(
        status,
        &json!({"object": "error", "message": message, "type": kind, "param": null, "code": status.as_u16()}),
    )
}

/// Serves on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, cfg: DemoLlm) {
    let driver = Arc::new(Driver::new(cfg.engine, cfg.max_waiting, cfg.stage));
    let cfg = Arc::new(cfg);
    let engine = driver.clone();
    tokio::spawn(async move { engine.run().await });
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (driver, cfg) = (driver.clone(), cfg.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (driver, cfg) = (driver.clone(), cfg.clone());
                async move { Ok::<_, Infallible>(route(req, &driver, &cfg).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn route(req: Request<Incoming>, driver: &Driver, cfg: &DemoLlm) -> Reply {
    let api = match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => return reply(StatusCode::OK, "text/plain", Bytes::new()),
        (&Method::GET, "/metrics") => {
            let (running, waiting, kv) = driver.load();
            let text = driver.metrics.exposition(&cfg.model, running, waiting, kv);
            return reply(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                Bytes::from(text),
            );
        }
        (&Method::GET, "/v1/models") => {
            let model = json!({"id": cfg.model, "object": "model", "owned_by": "ebb", "max_model_len": cfg.engine.max_context()});
            return json_reply(StatusCode::OK, &json!({"object": "list", "data": [model]}));
        }
        (&Method::POST, "/v1/completions") => Api::Completions,
        (&Method::POST, "/v1/chat/completions") => Api::Chat,
        (_, path) => return error(StatusCode::NOT_FOUND, &format!("no route {path}")),
    };
    let body = match crate::demo_body::read(req).await {
        Ok(body) => body,
        Err((status, message)) => return error(status, &message),
    };
    let ask = match openai::parse(api, &body, &cfg.model) {
        Ok(a) => a,
        Err(e) if e.contains("does not exist") => return error(StatusCode::NOT_FOUND, &e),
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    complete(api, ask, driver, cfg).await
}

/// Runs one request through the engine and answers it, streamed or whole.
async fn complete(api: Api, mut ask: Ask, driver: &Driver, cfg: &DemoLlm) -> Reply {
    // A prefill replica answers with the first token, whatever was asked, and says so in the
    // usage.
    ask.max_tokens = cfg.stage.output_tokens(ask.max_tokens);
    let (id, mut tokens) = match driver.submit(ask.prompt_tokens, ask.max_tokens) {
        Ok(t) => t,
        Err(e @ Refusal::Busy(_)) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let answer = Answer::new(api, id, &cfg.model);
    if ask.stream {
        let mut r = Response::new(Events::new(answer, tokens).boxed_unsync());
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        return r;
    }
    let mut text = String::new();
    while let Some(index) = tokens.recv().await {
        text.push_str(openai::token_text(index));
    }
    json_reply(StatusCode::OK, &answer.whole(&text, &ask))
}
