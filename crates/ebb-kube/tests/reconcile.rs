//! The reconcile logic against a mocked API server (tower-test, as kube-rs documents it): the
//! mock answers by method and path and logs every request, so that each test can say what was
//! written and what was not. Pod metrics are served over real HTTP on loopback; time is
//! injected.

use ebb_core::Time;
use ebb_kube::caches::Caches;
use ebb_kube::context::{Clock, Context};
use ebb_kube::crd::{Autoscaler, AutoscalerStatus};
use ebb_kube::metrics::ControllerMetrics;
use ebb_kube::reconcile::reconcile;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// One request the controller made: method, path (with query), body.
#[derive(Debug, Clone)]
struct Logged {
    method: Method,
    path: String,
    body: Value,
}

/// What the mock API holds.
#[derive(Clone)]
struct World {
    replicas: Arc<Mutex<i64>>,
    /// Answers to PATCH /scale, in order (then 200).
    scale_patch_answers: Arc<Mutex<Vec<u16>>>,
    /// Answers to PATCH of the Autoscaler's status, in order (then 200).
    status_patch_answers: Arc<Mutex<Vec<u16>>>,
    hpas: Value,
    autoscalers: Value,
    pod_ips: Vec<(String, String)>,
    metrics_api: Value,
}

impl World {
    fn new(replicas: i64, pods: &[(&str, &str)]) -> World {
        World {
            replicas: Arc::new(Mutex::new(replicas)),
            scale_patch_answers: Arc::new(Mutex::new(Vec::new())),
            status_patch_answers: Arc::new(Mutex::new(Vec::new())),
            hpas: json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscalerList", "metadata": {}, "items": []}),
            autoscalers: json!({"apiVersion": "ebb.dev/v1alpha1", "kind": "AutoscalerList", "metadata": {}, "items": []}),
            pod_ips: pods
                .iter()
                .map(|(n, ip)| (n.to_string(), ip.to_string()))
                .collect(),
            metrics_api: json!({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": []}),
        }
    }
}

fn response(code: u16, v: Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&v).unwrap_or_default()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn pods_list(w: &World) -> Value {
    let items: Vec<Value> = w
        .pod_ips
        .iter()
        .map(|(n, ip)| {
            json!({"metadata": {"name": n, "namespace": "ml", "labels": {"app": "model"}},
                   "spec": {"containers": [{"name": "m", "image": "x", "resources": {"requests": {"cpu": "500m"}}}]},
                   "status": {"phase": "Running", "podIP": ip, "startTime": "2026-12-01T00:00:00Z",
                              "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-01T00:00:00Z"}]}})
        })
        .collect();
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})
}

fn scale(w: &World) -> Value {
    let r = *w.replicas.lock().expect("lock");
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "model", "namespace": "ml"},
           "spec": {"replicas": r}, "status": {"replicas": r, "selector": "app=model"}})
}

fn discovery() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [
        {"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment", "verbs": ["get", "list", "patch"]},
        {"name": "deployments/scale", "singularName": "", "namespaced": true, "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}
    ]})
}

/// A client of the mock API, and the watch caches as the mock's objects fill them.
struct MockApi {
    client: kube::Client,
    caches: Arc<Caches>,
}

/// The caches a controller watching `world` would hold.
fn caches(world: &World) -> Arc<Caches> {
    Arc::new(Caches::fixed(
        items(&pods_list(world)),
        items(&world.hpas),
        items(&world.autoscalers),
    ))
}

/// The objects of a list, typed.
fn items<K: serde::de::DeserializeOwned>(list: &Value) -> Vec<K> {
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("object"))
        .collect()
}

/// Starts the mock API; returns its client (with the caches) and the request log.
fn mock(world: World) -> (MockApi, Arc<Mutex<Vec<Logged>>>) {
    let caches = caches(&world);
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    tokio::spawn(async move {
        let mut handle = std::pin::pin!(handle);
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().clone();
            let path = req.uri().to_string();
            let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if let Ok(mut l) = log2.lock() {
                l.push(Logged {
                    method: method.clone(),
                    path: path.clone(),
                    body: body.clone(),
                });
            }
            let p = path.split('?').next().unwrap_or("").to_string();
            let answer = match (method.clone(), p.as_str()) {
                (Method::GET, "/apis/autoscaling/v1/namespaces/ml/horizontalpodautoscalers") => {
                    response(200, world.hpas.clone())
                }
                (Method::GET, "/apis/ebb.dev/v1alpha1/namespaces/ml/autoscalers") => {
                    response(200, world.autoscalers.clone())
                }
                (Method::GET, "/apis/apps/v1") => response(200, discovery()),
                (Method::GET, "/apis/apps/v1/namespaces/ml/deployments/model/scale") => {
                    response(200, scale(&world))
                }
                (Method::PATCH, "/apis/apps/v1/namespaces/ml/deployments/model/scale") => {
                    let code = {
                        let mut a = world.scale_patch_answers.lock().expect("lock");
                        if a.is_empty() {
                            200
                        } else {
                            a.remove(0)
                        }
                    };
                    if code == 200 {
                        if let Some(r) = body["spec"]["replicas"].as_i64() {
                            *world.replicas.lock().expect("lock") = r;
                        }
                        response(200, scale(&world))
                    } else {
                        response(
                            code,
                            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "the object has been modified", "reason": "Conflict", "code": code}),
                        )
                    }
                }
                (Method::GET, "/api/v1/namespaces/ml/pods") => response(200, pods_list(&world)),
                (Method::PATCH, p) if p.starts_with("/api/v1/namespaces/ml/pods/") => {
                    response(200, json!({"metadata": {"name": p.rsplit('/').next()}}))
                }
                (Method::GET, "/apis/metrics.k8s.io/v1beta1/namespaces/ml/pods") => {
                    response(200, world.metrics_api.clone())
                }
                (Method::POST, "/apis/events.k8s.io/v1/namespaces/ml/events") => {
                    response(201, body.clone())
                }
                (
                    Method::PATCH,
                    "/apis/ebb.dev/v1alpha1/namespaces/ml/autoscalers/model/status",
                ) if !world.status_patch_answers.lock().expect("lock").is_empty() => {
                    let code = world.status_patch_answers.lock().expect("lock").remove(0);
                    response(
                        code,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "mock: status write failed", "reason": "InternalError", "code": code}),
                    )
                }
                (
                    Method::PATCH,
                    "/apis/ebb.dev/v1alpha1/namespaces/ml/autoscalers/model/status",
                ) => response(
                    200,
                    json!({"apiVersion": "ebb.dev/v1alpha1", "kind": "Autoscaler", "metadata": {"name": "model", "namespace": "ml"}, "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "model"}, "maxReplicas": 1}}),
                ),
                _ => response(
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("mock: no route for {method} {path}"), "reason": "NotFound", "code": 404}),
                ),
            };
            send.send_response(answer);
        }
    });
    let client = kube::Client::new(service, "ml");
    (MockApi { client, caches }, log)
}

/// A pod's metrics endpoint on its own loopback IP, serving `in_flight`.
fn pod_metrics(ip: &str, port: u16, in_flight: f64) {
    pod_metrics_by_scrape(ip, port, move |_| in_flight);
}

/// A pod's metrics endpoint whose in-flight gauge moves on every scrape (1.5, 2.0, 2.5, ...),
/// never enough to change a decision at 4 per replica.
fn moving_pod_metrics(ip: &str, port: u16) {
    pod_metrics_by_scrape(ip, port, |scrape| 1.5 + 0.5 * (scrape % 3) as f64);
}

/// A pod's metrics endpoint on its own loopback IP, serving `in_flight(n)` at the `n`-th scrape.
fn pod_metrics_by_scrape(ip: &str, port: u16, in_flight: impl Fn(usize) -> f64 + Send + 'static) {
    let l = TcpListener::bind((ip, port)).expect("bind pod endpoint");
    std::thread::spawn(move || {
        for (scrape, s) in l.incoming().enumerate() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let body = format!(
                "ebb_in_flight {}\nebb_requests_total 10\nebb_responses_total 10\n",
                in_flight(scrape)
            );
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn autoscaler(spec_extra: &str, port: u16, status: Option<AutoscalerStatus>) -> Arc<Autoscaler> {
    let yaml = format!(
        "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {{name: model, namespace: ml, generation: 1, creationTimestamp: '2026-12-01T00:00:00Z'}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: model}}\n  minReplicas: 1\n  maxReplicas: 10\n  concurrency: {{metric: concurrency, targetPerReplica: 4, stableWindowSeconds: 10, panicWindowSeconds: 2}}\n  sources:\n  - name: traffic\n    podScrape: {{port: {port}, traffic: {{arrivals: ebb_requests_total, completions: ebb_responses_total, inFlight: [ebb_in_flight]}}}}\n{spec_extra}"
    );
    let mut a: Autoscaler = serde_yaml::from_str(&yaml).expect("autoscaler");
    a.status = status;
    Arc::new(a)
}

fn clock(at: Arc<AtomicI64>) -> Clock {
    Arc::new(move || Time::from_millis(at.load(Ordering::SeqCst)))
}

fn context(api: MockApi, at: Arc<AtomicI64>) -> Arc<Context> {
    Arc::new(Context::new(
        api.client,
        api.caches,
        "test",
        Arc::new(ControllerMetrics::new()),
        clock(at),
    ))
}

/// The requests the mock API saw with `method` on a path containing `part`, in order.
fn logged(log: &Arc<Mutex<Vec<Logged>>>, method: Method, part: &str) -> Vec<Logged> {
    log.lock()
        .expect("log")
        .iter()
        .filter(|l| l.method == method && l.path.contains(part))
        .cloned()
        .collect()
}

fn scale_patches(log: &Arc<Mutex<Vec<Logged>>>) -> Vec<Logged> {
    logged(log, Method::PATCH, "/scale")
}

fn last_status(log: &Arc<Mutex<Vec<Logged>>>) -> AutoscalerStatus {
    let l = log.lock().expect("log");
    let s = l
        .iter()
        .rev()
        .find(|l| l.path.contains("/status"))
        .expect("a status write");
    serde_json::from_value(s.body["status"].clone()).expect("status")
}

/// The condition `type_` of a status (it must be there).
fn condition<'a>(st: &'a AutoscalerStatus, type_: &str) -> &'a ebb_kube::crd::Condition {
    st.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {st:?}"))
}

/// Nothing was read from or written to the target's `/scale`.
fn assert_target_untouched(log: &Arc<Mutex<Vec<Logged>>>) {
    let l = log.lock().expect("log");
    assert!(
        l.iter().all(|r| !r.path.contains("/scale")),
        "the target was touched: {l:?}"
    );
}

fn event_reasons(log: &Arc<Mutex<Vec<Logged>>>) -> Vec<(String, String)> {
    log.lock()
        .expect("log")
        .iter()
        .filter(|l| l.path.contains("/events"))
        .map(|l| {
            (
                l.body["reason"].as_str().unwrap_or("").to_string(),
                l.body["note"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// 2026-12-01T01:00:00Z: an hour after the pods started.
const T0: i64 = 1_796_086_800_000;

#[tokio::test]
async fn scales_up_through_scale_with_an_event_and_status() {
    let ip = "127.0.2.2";
    let port = free_port(ip);
    pod_metrics(ip, port, 14.0);
    let (client, log) = mock(World::new(1, &[("model-a", ip)]));
    let at = Arc::new(AtomicI64::new(T0));
    let ctx = context(client, at);
    reconcile(autoscaler("", port, None), ctx)
        .await
        .expect("reconcile");
    let patches = scale_patches(&log);
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0].body,
        json!({"spec": {"replicas": 4}}),
        "a merge patch of /scale"
    );
    let st = last_status(&log);
    assert_eq!(
        (st.current_replicas, st.desired_replicas),
        (Some(1), Some(4))
    );
    assert!(st.decision_state.is_some());
    assert_eq!(st.current_metrics[0].value, Some(14.0));
    let ev = event_reasons(&log);
    assert!(
        ev.iter()
            .any(|(r, n)| r == "SuccessfulRescale" && n.starts_with("New size: 4; reason: ")),
        "{ev:?}"
    );
}

/// Requests that read the target's `/scale`.
fn scale_reads(log: &Arc<Mutex<Vec<Logged>>>) -> usize {
    logged(log, Method::GET, "/scale").len()
}

/// A Deployment the watch cache holds is read from it: its size and selector, with no
/// `/scale` GET (a pass every 0.5-2 s would otherwise GET it as often). Right after this
/// instance scaled it, a cache still showing another count is behind, and `/scale` is read
/// instead; 10 s later the cache is believed (someone else set that count).
#[tokio::test]
async fn a_deployment_in_the_watch_cache_is_read_without_a_scale_get() {
    let ip = "127.0.2.12";
    let port = free_port(ip);
    pod_metrics(ip, port, 14.0);
    let world = World::new(1, &[("model-a", ip)]);
    let (mut api, log) = mock(world);
    let cached: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "metadata": {"name": "model", "namespace": "ml"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "model"}},
                 "template": {"metadata": {"labels": {"app": "model"}}}}
    }))
    .expect("deployment");
    let caches = Arc::try_unwrap(api.caches).ok().expect("one owner");
    api.caches = Arc::new(caches.with_workloads(vec![cached], Vec::new()));
    let at = Arc::new(AtomicI64::new(T0));
    let ctx = context(api, at.clone());
    let a = autoscaler("", port, None);
    reconcile(a.clone(), ctx.clone()).await.expect("reconcile");
    assert_eq!(scale_reads(&log), 0, "read from the cache");
    assert_eq!(scale_patches(&log).len(), 1, "scaled 1 -> 4");
    let st = last_status(&log);
    assert_eq!(
        (st.current_replicas, st.desired_replicas),
        (Some(1), Some(4))
    );
    // A second later the cache still says 1: behind the 4 just set, so /scale is read.
    at.fetch_add(1_000, Ordering::SeqCst);
    reconcile(a.clone(), ctx.clone()).await.expect("reconcile");
    assert_eq!(scale_reads(&log), 1, "the cache is behind: /scale read");
    assert_eq!(scale_patches(&log).len(), 1, "4 is 4: no second write");
    // 10 s after the write the cache's count is believed.
    at.fetch_add(10_000, Ordering::SeqCst);
    reconcile(a, ctx).await.expect("reconcile");
    assert_eq!(scale_reads(&log), 1, "read from the cache again");
}

#[tokio::test]
async fn no_write_when_the_desired_count_is_the_current_one() {
    let ip = "127.0.2.3";
    let port = free_port(ip);
    pod_metrics(ip, port, 6.0);
    let (client, log) = mock(World::new(
        2,
        &[("model-a", ip), ("model-b", "127.0.2.250")],
    ));
    let ctx = context(client, Arc::new(AtomicI64::new(T0)));
    reconcile(autoscaler("", port, None), ctx)
        .await
        .expect("reconcile");
    assert!(
        scale_patches(&log).is_empty(),
        "6 in flight at 4 per replica is 2: no write"
    );
    let st = last_status(&log);
    assert_eq!(st.desired_replicas, Some(2));
    let able = condition(&st, "AbleToScale");
    assert_eq!(
        (able.status.as_str(), able.reason.as_str()),
        ("True", "ReadyForNewScale")
    );
}

#[tokio::test]
async fn a_conflict_is_retried_with_backoff() {
    let ip = "127.0.2.4";
    let port = free_port(ip);
    pod_metrics(ip, port, 14.0);
    let world = World::new(1, &[("model-a", ip)]);
    *world.scale_patch_answers.lock().expect("lock") = vec![409, 500];
    let (client, log) = mock(world.clone());
    let ctx = context(client, Arc::new(AtomicI64::new(T0)));
    reconcile(autoscaler("", port, None), ctx)
        .await
        .expect("reconcile");
    assert_eq!(scale_patches(&log).len(), 3, "409, then 500, then success");
    assert_eq!(*world.replicas.lock().expect("lock"), 4);
    assert!(event_reasons(&log)
        .iter()
        .any(|(r, _)| r == "SuccessfulRescale"));
}

#[tokio::test]
async fn a_failing_source_never_scales_down_and_is_reported() {
    // Nothing listens on the pods' port.
    let port = free_port("127.0.2.5");
    let (client, log) = mock(World::new(5, &[("model-a", "127.0.2.5")]));
    let ctx = context(client, Arc::new(AtomicI64::new(T0)));
    reconcile(autoscaler("", port, None), ctx)
        .await
        .expect("reconcile");
    assert!(scale_patches(&log).is_empty());
    let st = last_status(&log);
    let active = condition(&st, "ScalingActive");
    assert_eq!(
        (active.status.as_str(), active.reason.as_str()),
        ("False", "FailedGetMetrics")
    );
    assert!(
        active.message.contains("source traffic (podScrape) failed"),
        "{}",
        active.message
    );
    assert!(st.current_metrics[0].error.is_some());
    assert!(event_reasons(&log)
        .iter()
        .any(|(r, n)| r == "FailedGetSource" && n.contains("source traffic")));
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_nothing_is_read_or_scaled() {
    let (client, log) = mock(World::new(3, &[]));
    let ctx = context(client, Arc::new(AtomicI64::new(T0)));
    let a = autoscaler(
        "  behavior: {scaleDown: {policies: [{type: Pods, value: 1, periodSeconds: 0}]}}\n",
        9,
        None,
    );
    reconcile(a, ctx).await.expect("reconcile");
    assert_target_untouched(&log);
    let st = last_status(&log);
    let active = condition(&st, "ScalingActive");
    assert_eq!(active.reason, "InvalidSpec");
    assert!(
        active
            .message
            .contains("spec.behavior.scaleDown.policies[0].periodSeconds"),
        "{}",
        active.message
    );
}

#[tokio::test]
async fn an_hpa_on_the_target_is_refused() {
    let mut world = World::new(3, &[]);
    world.hpas = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscalerList", "metadata": {}, "items": [
        {"metadata": {"name": "legacy", "namespace": "ml"}, "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "model"}, "maxReplicas": 5}}
    ]});
    let (client, log) = mock(world);
    let ctx = context(client, Arc::new(AtomicI64::new(T0)));
    reconcile(autoscaler("", 9, None), ctx)
        .await
        .expect("reconcile");
    assert_target_untouched(&log);
    let st = last_status(&log);
    let able = condition(&st, "AbleToScale");
    assert_eq!(
        (able.status.as_str(), able.reason.as_str()),
        ("False", "ConflictingAutoscaler")
    );
    assert!(able.message.contains("HorizontalPodAutoscaler legacy"));
}

#[tokio::test]
async fn the_status_carries_the_stabilization_window_across_a_restart() {
    // A first controller scales to 4 on a spike.
    let ip = "127.0.2.6";
    let port = free_port(ip);
    pod_metrics(ip, port, 14.0);
    let (client, log) = mock(World::new(1, &[("model-a", ip)]));
    let at = Arc::new(AtomicI64::new(T0));
    reconcile(
        autoscaler(
            "  behavior: {scaleDown: {stabilizationWindowSeconds: 300}}\n",
            port,
            None,
        ),
        context(client, at.clone()),
    )
    .await
    .expect("first reconcile");
    let written = last_status(&log);
    assert_eq!(written.desired_replicas, Some(4));

    // The load is gone; a new controller (restarted, or a new leader) reads the status.
    let quiet_ip = "127.0.2.7";
    let quiet = free_port(quiet_ip);
    pod_metrics(quiet_ip, quiet, 0.0);
    let pods = [
        ("model-a", quiet_ip),
        ("model-b", quiet_ip),
        ("model-c", quiet_ip),
        ("model-d", quiet_ip),
    ];
    let spec = "  behavior: {scaleDown: {stabilizationWindowSeconds: 300}}\n  sources: []\n";
    let _ = spec;
    let later = Arc::new(AtomicI64::new(T0 + 60_000));
    let (client, log2) = mock(World::new(4, &pods));
    let a = autoscaler(
        "  behavior: {scaleDown: {stabilizationWindowSeconds: 300}}\n",
        quiet,
        Some(written.clone()),
    );
    reconcile(a, context(client, later.clone()))
        .await
        .expect("after restart");
    assert!(
        scale_patches(&log2).is_empty(),
        "the 300 s window recorded before the restart holds 4"
    );
    let st = last_status(&log2);
    assert_eq!(st.desired_replicas, Some(4));
    assert!(
        st.reasons
            .iter()
            .any(|r| r.contains("stabilization window")),
        "{:?}",
        st.reasons
    );

    // Control: without the carried state the same inputs scale down at once.
    let (client, log3) = mock(World::new(4, &pods));
    let a = autoscaler(
        "  behavior: {scaleDown: {stabilizationWindowSeconds: 300}}\n",
        quiet,
        None,
    );
    reconcile(a, context(client, later)).await.expect("fresh");
    assert_eq!(
        scale_patches(&log3).len(),
        1,
        "a fresh state has no window to honour"
    );
}

#[tokio::test]
async fn resource_metrics_feed_cpu_utilization() {
    let mut world = World::new(2, &[("model-a", "127.0.2.8"), ("model-b", "127.0.2.9")]);
    world.metrics_api = json!({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": [
        {"metadata": {"name": "model-a"}, "containers": [{"name": "m", "usage": {"cpu": "900m", "memory": "100Mi"}}]},
        {"metadata": {"name": "model-b"}, "containers": [{"name": "m", "usage": {"cpu": "1100m", "memory": "100Mi"}}]}
    ]});
    let (client, log) = mock(world);
    let yaml = "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {name: model, namespace: ml}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: model}\n  minReplicas: 1\n  maxReplicas: 10\n  metrics:\n  - type: Resource\n    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}\n  sources:\n  - name: cpu\n    resourceMetrics: {resource: cpu}\n";
    let a: Autoscaler = serde_yaml::from_str(yaml).expect("autoscaler");
    reconcile(Arc::new(a), context(client, Arc::new(AtomicI64::new(T0))))
        .await
        .expect("reconcile");
    // 2 cores used of 1 requested (2 x 500m) at a 50% target proposes 200% / 50% x 2 = 8;
    // HPA's default scale-up policy (max(4 pods, 100%) per 15 s) allows 6 from 2.
    let patches = scale_patches(&log);
    assert_eq!(
        patches.last().map(|p| p.body["spec"]["replicas"].clone()),
        Some(json!(6))
    );
    let st = last_status(&log);
    assert!(
        st.reasons
            .iter()
            .any(|r| r.contains("metric cpu proposed 8 (current 200%, target 50% utilization)")),
        "{:?}",
        st.reasons
    );
    let limited = condition(&st, "ScalingLimited");
    assert_eq!(
        (limited.status.as_str(), limited.reason.as_str()),
        ("True", "ScaleUpLimit")
    );
}

#[tokio::test]
async fn an_older_autoscaler_on_the_target_wins() {
    let mut world = World::new(3, &[]);
    world.autoscalers = json!({"apiVersion": "ebb.dev/v1alpha1", "kind": "AutoscalerList", "metadata": {}, "items": [
        {"apiVersion": "ebb.dev/v1alpha1", "kind": "Autoscaler",
         "metadata": {"name": "first", "namespace": "ml", "creationTimestamp": "2026-11-30T00:00:00Z"},
         "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "model"}, "maxReplicas": 4}}
    ]});
    let (client, log) = mock(world);
    reconcile(
        autoscaler("", 9, None),
        context(client, Arc::new(AtomicI64::new(T0))),
    )
    .await
    .expect("reconcile");
    assert_target_untouched(&log);
    let st = last_status(&log);
    let able = condition(&st, "AbleToScale");
    assert_eq!(
        (able.status.as_str(), able.reason.as_str()),
        ("False", "ConflictingAutoscaler")
    );
    assert!(
        able.message
            .contains("Autoscaler first already scales Deployment model"),
        "{}",
        able.message
    );
}

const WINDOW: &str = "  behavior: {scaleDown: {stabilizationWindowSeconds: 300}}\n";

#[tokio::test]
async fn a_failed_status_write_does_not_forget_the_scale() {
    // A spike scales 1 to 4; the status write after it fails.
    let ip = "127.0.2.10";
    let port = free_port(ip);
    pod_metrics(ip, port, 14.0);
    let world = World::new(1, &[("model-a", ip)]);
    world.status_patch_answers.lock().expect("lock").push(500);
    let (client, log) = mock(world);
    let at = Arc::new(AtomicI64::new(T0));
    let ctx = context(client, at.clone());
    let first = reconcile(autoscaler(WINDOW, port, None), ctx.clone()).await;
    assert!(first.is_err(), "the status write failed");
    assert_eq!(scale_patches(&log).len(), 1, "the scale itself happened");

    // A minute later the load is gone. The stabilization window recorded with the scale
    // still holds 4, although no status carries it.
    let quiet = free_port(ip);
    pod_metrics(ip, quiet, 0.0);
    at.store(T0 + 60_000, Ordering::SeqCst);
    reconcile(autoscaler(WINDOW, quiet, None), ctx)
        .await
        .expect("second reconcile");
    assert_eq!(
        scale_patches(&log).len(),
        1,
        "no scale-down inside the window"
    );
}

#[tokio::test]
async fn a_new_leader_trusts_the_status_over_its_old_memory() {
    // This instance led once and scaled 1 to 4 on a spike (its memory: a 300 s window at 4).
    let ip = "127.0.2.12";
    let (spike, quiet) = (free_port(ip), free_port(ip));
    pod_metrics(ip, spike, 14.0);
    pod_metrics(ip, quiet, 0.0);
    let world = World::new(1, &[("model-a", ip)]);
    let (client, log) = mock(world.clone());
    let at = Arc::new(AtomicI64::new(T0));
    let ctx = context(client, at.clone());
    reconcile(autoscaler(WINDOW, spike, None), ctx.clone())
        .await
        .expect("first term");
    assert_eq!(scale_patches(&log).len(), 1);

    // Another leader then ran while the load was gone; the status it wrote holds its own
    // state, with no window at 4 (say the spec's window was shortened meanwhile). This
    // instance leads again: the status, not its old memory, decides.
    let other = AutoscalerStatus {
        desired_replicas: Some(4),
        current_replicas: Some(4),
        decision_state: Some(ebb_core::State::default()),
        ..Default::default()
    };
    at.store(T0 + 100_000, Ordering::SeqCst);
    ctx.forget_decisions();
    reconcile(autoscaler(WINDOW, quiet, Some(other)), ctx)
        .await
        .expect("second term");
    let patches = scale_patches(&log);
    assert_eq!(
        patches.len(),
        2,
        "the old window in this instance's memory would hold 4"
    );
    assert_eq!(patches[1].body, json!({"spec": {"replicas": 1}}));
}

#[test]
fn deleted_autoscalers_are_forgotten() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let ip = "127.0.2.14";
        let port = free_port(ip);
        pod_metrics(ip, port, 14.0);
        let (client, _) = mock(World::new(1, &[("model-a", ip)]));
        let ctx = context(client, Arc::new(AtomicI64::new(T0)));
        reconcile(autoscaler("", port, None), ctx.clone())
            .await
            .expect("reconcile");
        assert_eq!(ctx.remembered(), 1);
        let mut alive = std::collections::HashSet::new();
        alive.insert(ebb_kube::context::autoscaler_key("ml", "model"));
        ctx.retain_autoscalers(&alive);
        assert_eq!(ctx.remembered(), 1);
        ctx.retain_autoscalers(&Default::default());
        assert_eq!(ctx.remembered(), 0);
    });
}

/// Writes of the Autoscaler's status.
fn status_writes(log: &Arc<Mutex<Vec<Logged>>>) -> usize {
    logged(log, Method::PATCH, "/status").len()
}

/// Steady signals: the status is written while it tells something new, then never again; and
/// no pass LISTs pods, HPAs or Autoscalers (they come from the watch caches).
#[tokio::test]
async fn steady_signals_write_no_status_and_nothing_is_listed() {
    let ip = "127.0.2.9";
    let port = free_port(ip);
    pod_metrics(ip, port, 2.0);
    let (client, log) = mock(World::new(1, &[("model-a", ip)]));
    let at = Arc::new(AtomicI64::new(T0));
    let ctx = context(client, at.clone());
    let mut writes = Vec::new();
    for _ in 0..5 {
        reconcile(autoscaler("", port, None), ctx.clone())
            .await
            .expect("reconcile");
        writes.push(status_writes(&log));
        // Every source falls due again.
        at.fetch_add(5000, Ordering::SeqCst);
    }
    assert!(writes[0] == 1, "the first pass writes: {writes:?}");
    let bodies: Vec<Value> = logged(&log, Method::PATCH, "/status")
        .into_iter()
        .map(|l| l.body)
        .collect();
    assert_eq!(
        writes[2], writes[4],
        "steady passes write nothing: {writes:?}; the writes: {bodies:#?}"
    );
    assert!(scale_patches(&log).is_empty(), "one replica is enough");
    let lists: Vec<String> = log
        .lock()
        .expect("log")
        .iter()
        .filter(|l| l.method == Method::GET)
        .filter(|l| {
            ["/pods", "/horizontalpodautoscalers", "/autoscalers"]
                .iter()
                .any(|r| l.path.split('?').next().unwrap_or("").ends_with(r))
        })
        .map(|l| l.path.clone())
        .collect();
    assert!(lists.is_empty(), "LISTs made: {lists:?}");
}

/// Signals whose numbers move on every poll while the decision stays: the status is written
/// with its first meaning, then with the numbers only every NUMBERS_REFRESH_SECONDS (15 s), not
/// on every pass.
#[tokio::test]
async fn moving_numbers_alone_write_the_status_at_most_every_refresh() {
    let ip = "127.0.2.10";
    let port = free_port(ip);
    moving_pod_metrics(ip, port);
    let (client, log) = mock(World::new(1, &[("model-a", ip)]));
    let at = Arc::new(AtomicI64::new(T0));
    let ctx = context(client, at.clone());
    let mut writes = Vec::new();
    for _ in 0..40 {
        reconcile(autoscaler("", port, None), ctx.clone())
            .await
            .expect("reconcile");
        writes.push(status_writes(&log));
        // One second a pass: the 2 s pod scrape falls due every other pass.
        at.fetch_add(1000, Ordering::SeqCst);
    }
    assert!(scale_patches(&log).is_empty(), "one replica is enough");
    // The first passes settle the meaning (the first value, then the target's size); over the
    // next 35 s the moving values alone are written twice or three times, where every
    // other pass would have written them before.
    let later = writes[39] - writes[4];
    assert!((2..=3).contains(&later), "{writes:?}");
}
