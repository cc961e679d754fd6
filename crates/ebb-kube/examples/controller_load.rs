//! The controller under load, on a real control plane (run by `bench/controller-load.sh`, which
//! starts the control plane and Prometheus and sets the environment below).
//!
//! N Autoscalers (500 by default), each over a Deployment of 1-10 pods (Pending: there is no
//! scheduler) and each with its own Prometheus source, one series of a loopback exporter that
//! this program serves and moves. It measures, with `ebb controller` as a separate process:
//! - API requests per second by verb and resource, from the API server's own
//!   `apiserver_request_total`, in a window without the controller (the control plane's own
//!   traffic) and in a steady window with it, where no signal moves;
//! - status writes and `/scale` writes per changed decision, while every series moves once;
//! - reconcile latency p50/p99 (the controller's `reconcile_duration_seconds`);
//! - time from a metric change to the `/scale` write, p50/p99, both from the exporter's change
//!   and from the Prometheus scrape that first saw it (the controller's own share);
//! - the controller's CPU and RSS (from /proc).
//!
//! Environment: `KUBECONFIG` (admin), `EBB_BIN` (the `ebb` binary), `EBB_TEST_PROMETHEUS_URL`,
//! `EBB_TEST_EXPORTER_PORT` (the port Prometheus scrapes), optional `EBB_LOAD_N`,
//! `EBB_LOAD_STEADY_SECONDS`.

use ebb_kube::exposition::{self, Sample};
use ebb_kube::sources;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

type Values = Arc<Mutex<Vec<f64>>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

const NS: &str = "ebb-load";
/// Each replica is worth this much of the moved series (`averageValue`).
const PER_REPLICA: f64 = 10.0;

fn env(name: &str) -> Result<String, BoxError> {
    std::env::var(name)
        .map_err(|_| format!("{name} is not set (run bench/controller-load.sh)").into())
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn progress(msg: &str) {
    eprintln!("[controller-load {:>7.1}s] {msg}", elapsed());
}

fn elapsed() -> f64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Serves `ebb_bench_load{target="tN"}` for every N.
async fn exporter(port: u16, values: Values) -> Result<(), BoxError> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let values = values.clone();
            async move {
                let v = values.lock().map(|v| v.clone()).unwrap_or_default();
                let mut out = String::from("# TYPE ebb_bench_load gauge\n");
                for (i, x) in v.iter().enumerate() {
                    out.push_str(&format!("ebb_bench_load{{target=\"t{i}\"}} {x}\n"));
                }
                out
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

fn deployment(name: &str, replicas: u32) -> Result<Deployment, BoxError> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "model", "image": "registry.invalid/model:1"}]}}}
    }))?)
}

fn autoscaler(name: &str, prometheus: &str) -> Result<ebb_kube::crd::Autoscaler, BoxError> {
    let yaml = format!(
        "apiVersion: ebb.dev/v1alpha1\nkind: Autoscaler\nmetadata: {{name: {name}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}\n  minReplicas: 1\n  maxReplicas: 30\n  metrics:\n  - type: External\n    external: {{metric: {{name: load}}, target: {{type: AverageValue, averageValue: '{PER_REPLICA}'}}}}\n  sources:\n  - name: load\n    pollSeconds: 1\n    prometheus: {{url: '{prometheus}', query: 'ebb_bench_load{{target=\"{{{{name}}}}\"}}'}}\n"
    );
    Ok(serde_yaml::from_str(&yaml)?)
}

/// The next size of a target: enough more that the usage ratio leaves HPA's 10% tolerance
/// (from r to r + 1 + r/5: a ratio of at least 1.25).
fn grown(r: u32) -> u32 {
    r + 1 + r.div_ceil(5)
}

/// The value that makes the policy want `replicas`.
fn value_for(replicas: u32) -> f64 {
    f64::from(replicas) * PER_REPLICA - PER_REPLICA / 2.0
}

/// `apiserver_request_total` summed by (verb, resource/subresource).
async fn api_requests(client: &kube::Client) -> Result<BTreeMap<(String, String), f64>, BoxError> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await?;
    let mut out = BTreeMap::new();
    for (name, labels, value) in exposition::parse(&text)? {
        if name != "apiserver_request_total" {
            continue;
        }
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let mut resource = label("resource");
        let sub = label("subresource");
        if !sub.is_empty() {
            resource = format!("{resource}/{sub}");
        }
        *out.entry((label("verb"), resource)).or_insert(0.0) += value;
    }
    Ok(out)
}

fn delta(
    after: &BTreeMap<(String, String), f64>,
    before: &BTreeMap<(String, String), f64>,
) -> BTreeMap<(String, String), f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

/// The controller's own metrics, parsed.
async fn controller_metrics(addr: &str) -> Result<Vec<Sample>, BoxError> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await?
        .text()
        .await?;
    Ok(exposition::parse(&text)?)
}

/// A counter of the controller's, summed over its labels.
fn counter(samples: &[Sample], name: &str) -> f64 {
    sources::metric_sum(samples, name).unwrap_or(0.0)
}

/// The reconcile-duration histogram's cumulative buckets (bound in microseconds), summed over
/// Autoscalers.
fn reconcile_buckets(samples: &[Sample]) -> BTreeMap<u64, f64> {
    let mut out = BTreeMap::new();
    for (name, labels, value) in samples {
        if name != "ebb_controller_reconcile_duration_seconds_bucket" {
            continue;
        }
        let Some(le) = labels.get("le") else { continue };
        let bound = if le == "+Inf" {
            u64::MAX
        } else {
            (le.parse::<f64>().unwrap_or(0.0) * 1e6) as u64
        };
        *out.entry(bound).or_insert(0.0) += value;
    }
    out
}

/// The bucket bound (ms) under which `q` of the observations in `after - before` fall.
fn bucket_quantile(after: &BTreeMap<u64, f64>, before: &BTreeMap<u64, f64>, q: f64) -> String {
    let d: Vec<(u64, f64)> = after
        .iter()
        .map(|(b, v)| (*b, v - before.get(b).copied().unwrap_or(0.0)))
        .collect();
    let total = d.last().map_or(0.0, |x| x.1);
    match d.iter().find(|(_, c)| *c >= q * total) {
        Some((u64::MAX, _)) => "over the last bucket".into(),
        Some((b, _)) => format!("≤ {} ms", *b as f64 / 1000.0),
        None => "n/a".into(),
    }
}

/// utime + stime (seconds) and VmRSS, VmHWM (MiB) of a process.
fn proc_usage(pid: u32) -> (f64, f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (cpu, kib("VmRSS:"), kib("VmHWM:"))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The time (Unix seconds) of the first scrape that saw each series at `value`, after `since`.
async fn first_seen(
    prometheus: &str,
    values: &[f64],
    since: f64,
) -> Result<Vec<Option<f64>>, BoxError> {
    let url = format!("{prometheus}/api/v1/query");
    let now = now_s();
    let window = format!("ebb_bench_load[{}s]", (now - since).ceil() as u64 + 5);
    let body: serde_json::Value = reqwest::Client::new()
        .get(&url)
        .query(&[("query", window.as_str()), ("time", &format!("{now}"))])
        .send()
        .await?
        .json()
        .await?;
    let mut out = vec![None; values.len()];
    for series in body["data"]["result"].as_array().into_iter().flatten() {
        let Some(i) = series["metric"]["target"]
            .as_str()
            .and_then(|t| t[1..].parse::<usize>().ok())
        else {
            continue;
        };
        let Some(want) = values.get(i) else { continue };
        out[i] = series["values"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|s| {
                let t = s[0].as_f64()?;
                let v: f64 = s[1].as_str()?.parse().ok()?;
                (t >= since && (v - want).abs() < 1e-9).then_some(t)
            });
    }
    Ok(out)
}

struct Phase {
    name: &'static str,
    /// Seconds over which the changes are spread (0: all at once).
    spread: f64,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    ebb_kube::install_crypto();
    let n: usize = std::env::var("EBB_LOAD_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let steady: u64 = std::env::var("EBB_LOAD_STEADY_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let kubeconfig = env("KUBECONFIG")?;
    let ebb = env("EBB_BIN")?;
    let prometheus = env("EBB_TEST_PROMETHEUS_URL")?;
    let port: u16 = env("EBB_TEST_EXPORTER_PORT")?.parse()?;
    let client = ebb_kube::client(Some(std::path::Path::new(&kubeconfig))).await?;

    let mut replicas: Vec<u32> = (0..n).map(|i| 1 + (i % 10) as u32).collect();
    let values: Values = Arc::new(Mutex::new(replicas.iter().map(|r| value_for(*r)).collect()));
    tokio::spawn(exporter(port, values.clone()));

    progress("installing the CRD");
    install_crd(&client).await?;
    progress(&format!(
        "creating namespace {NS}, {n} Deployments and {n} Autoscalers"
    ));
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns_obj: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NS}}))?;
    let _ = nss.create(&PostParams::default(), &ns_obj).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let autoscalers: Api<ebb_kube::crd::Autoscaler> = Api::namespaced(client.clone(), NS);
    futures::stream::iter(0..n)
        .map(|i| {
            let (d, a) = (deployments.clone(), autoscalers.clone());
            let (r, prom) = (replicas[i], prometheus.clone());
            async move {
                let name = format!("t{i}");
                d.create(&PostParams::default(), &deployment(&name, r)?)
                    .await?;
                a.create(&PostParams::default(), &autoscaler(&name, &prom)?)
                    .await?;
                Ok::<_, BoxError>(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;

    progress("waiting for Prometheus to hold every series");
    let count_url = format!("{prometheus}/api/v1/query");
    loop {
        let body: serde_json::Value = reqwest::Client::new()
            .get(&count_url)
            .query(&[("query", "count(ebb_bench_load)")])
            .send()
            .await?
            .json()
            .await?;
        let c = body["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        if c >= n {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), NS);
    let want_pods: u32 = replicas.iter().sum();
    progress(&format!(
        "waiting for the {want_pods} pods the ReplicaSets create (Pending: no scheduler)"
    ));
    let t = Instant::now();
    while pods.list_metadata(&Default::default()).await?.items.len() < want_pods as usize
        && t.elapsed() < Duration::from_secs(300)
    {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    progress(&format!(
        "baseline: {steady} s of the control plane without the controller"
    ));
    let a0 = api_requests(&client).await?;
    tokio::time::sleep(Duration::from_secs(steady)).await;
    let baseline = delta(&api_requests(&client).await?, &a0);

    let metrics_addr = format!("127.0.0.1:{}", free_port()?);
    progress(&format!(
        "starting ebb controller (metrics on {metrics_addr})"
    ));
    let mut child = std::process::Command::new(&ebb)
        .args([
            "controller",
            "--kubeconfig",
            &kubeconfig,
            "--metrics-addr",
            &metrics_addr,
            "--namespace",
            NS,
            "--no-leader-election",
        ])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id();
    let started = Instant::now();

    progress("warming up: until every Autoscaler has a status, then 10 s");
    loop {
        let list = autoscalers.list(&Default::default()).await?;
        let done = list
            .items
            .iter()
            .filter(|a| {
                a.status
                    .as_ref()
                    .is_some_and(|s| s.desired_replicas.is_some())
            })
            .count();
        if done >= n {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err(format!("only {done} of {n} Autoscalers have a status after 300 s").into());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let first_status = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(10)).await;

    progress(&format!(
        "steady: {steady} s with the controller, no signal moving"
    ));
    let (a1, m1, p1) = (
        api_requests(&client).await?,
        controller_metrics(&metrics_addr).await?,
        proc_usage(pid),
    );
    tokio::time::sleep(Duration::from_secs(steady)).await;
    let (a2, m2, p2) = (
        api_requests(&client).await?,
        controller_metrics(&metrics_addr).await?,
        proc_usage(pid),
    );
    let steady_api = delta(&a2, &a1);

    // Every /scale write the watch sees: (time, deployment index, replicas).
    let writes: Arc<Mutex<Vec<(f64, usize, i32)>>> = Arc::new(Mutex::new(Vec::new()));
    let w = writes.clone();
    let watch = watcher(deployments.clone(), watcher::Config::default())
        .applied_objects()
        .try_for_each(move |d: Deployment| {
            let w = w.clone();
            async move {
                let i = d.name_any()[1..].parse::<usize>().unwrap_or(usize::MAX);
                let r = d.spec.and_then(|s| s.replicas).unwrap_or(0);
                if let Ok(mut w) = w.lock() {
                    w.push((now_s(), i, r));
                }
                Ok(())
            }
        });
    let watch = tokio::spawn(watch);
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut rows = Vec::new();
    for phase in [
        Phase {
            name: "spread over 10 s",
            spread: 10.0,
        },
        Phase {
            name: "all at once",
            spread: 0.0,
        },
    ] {
        // Past the default scale-up period (15 s) of the last change, so that HPA's rate
        // policy does not split this change in two.
        tokio::time::sleep(Duration::from_secs(20)).await;
        progress(&format!("moving every series once ({})", phase.name));
        let a3 = api_requests(&client).await?;
        let since = now_s();
        let mut changed_at = vec![0.0; n];
        let order: Vec<usize> = {
            let mut o: Vec<usize> = (0..n).collect();
            // A fixed shuffle (multiplicative hash), so that runs compare.
            o.sort_by_key(|i| (i * 7919) % n);
            o
        };
        for (k, &i) in order.iter().enumerate() {
            let at = phase.spread * k as f64 / n as f64;
            let wait = since + at - now_s();
            if wait > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            }
            replicas[i] = grown(replicas[i]);
            if let Ok(mut v) = values.lock() {
                v[i] = value_for(replicas[i]);
            }
            changed_at[i] = now_s();
        }
        // Until every Deployment shows its new size (or 60 s).
        let deadline = Instant::now() + Duration::from_secs(60);
        let seen = loop {
            let seen: HashMap<usize, f64> = writes
                .lock()
                .map(|w| {
                    let mut m = HashMap::new();
                    for (t, i, r) in w.iter() {
                        if *i < n && *t >= since && *r as u32 == replicas[*i] {
                            m.entry(*i).or_insert(*t);
                        }
                    }
                    m
                })
                .unwrap_or_default();
            if seen.len() >= n || Instant::now() > deadline {
                break seen;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        let a4 = api_requests(&client).await?;
        let api = delta(&a4, &a3);
        let scraped = first_seen(
            &prometheus,
            &values.lock().map(|v| v.clone()).unwrap_or_default(),
            since,
        )
        .await?;
        let mut from_change: Vec<f64> = seen.iter().map(|(i, t)| t - changed_at[*i]).collect();
        let mut from_scrape: Vec<f64> = seen
            .iter()
            .filter_map(|(i, t)| scraped[*i].map(|s| t - s))
            .collect();
        from_change.sort_by(f64::total_cmp);
        from_scrape.sort_by(f64::total_cmp);
        let get = |m: &BTreeMap<(String, String), f64>, verb: &str, res: &str| {
            m.get(&(verb.to_string(), res.to_string()))
                .copied()
                .unwrap_or(0.0)
        };
        rows.push(format!(
            "| {} | {}/{n} | {:.2} | {:.2} | {:.2} s / {:.2} s | {:.2} s / {:.2} s |",
            phase.name,
            seen.len(),
            get(&api, "PATCH", "autoscalers/status") / seen.len().max(1) as f64,
            get(&api, "PATCH", "deployments/scale") / seen.len().max(1) as f64,
            percentile(&from_change, 0.5),
            percentile(&from_change, 0.99),
            percentile(&from_scrape, 0.5),
            percentile(&from_scrape, 0.99),
        ));
    }
    watch.abort();
    let (_, rss_end, hwm) = proc_usage(pid);
    let m_end = controller_metrics(&metrics_addr).await?;
    let _ = child.kill();
    let _ = child.wait();

    // The report.
    let window = steady as f64;
    let mut verbs: Vec<String> = Vec::new();
    let keys: std::collections::BTreeSet<_> =
        baseline.keys().chain(steady_api.keys()).cloned().collect();
    for k in keys {
        let (b, s) = (
            baseline.get(&k).copied().unwrap_or(0.0),
            steady_api.get(&k).copied().unwrap_or(0.0),
        );
        if (b + s) / window >= 0.05 {
            verbs.push(format!(
                "| {} | {} | {:.2} | {:.2} |",
                k.0,
                k.1,
                b / window,
                s / window
            ));
        }
    }
    let sum = |m: &BTreeMap<(String, String), f64>| m.values().sum::<f64>() / window;
    let reconciles = counter(&m2, "ebb_controller_reconciles_total")
        - counter(&m1, "ebb_controller_reconciles_total");
    let status_steady = counter(&m2, "ebb_controller_status_writes_total")
        - counter(&m1, "ebb_controller_status_writes_total");
    let skipped = counter(&m2, "ebb_controller_status_writes_skipped_total")
        - counter(&m1, "ebb_controller_status_writes_skipped_total");
    let (b1, b2) = (reconcile_buckets(&m1), reconcile_buckets(&m2));
    println!("### {n} Autoscalers, each with a Prometheus source polled every second\n");
    println!("Every Autoscaler had a status {first_status:.1} s after the controller started.\n");
    println!("**Steady ({steady} s, no signal moving).** {:.0} reconciles/s; status writes: {status_steady:.0} ({skipped:.0} left out as telling nothing new); reconcile latency p50 {}, p99 {} (histogram buckets); controller CPU {:.1}% of a core; RSS {:.0} MiB.\n",
        reconciles / window,
        bucket_quantile(&b2, &b1, 0.5),
        bucket_quantile(&b2, &b1, 0.99),
        100.0 * (p2.0 - p1.0) / window,
        p2.1,
    );
    println!("API requests per second by verb and resource (`apiserver_request_total`), the control plane alone and with the controller:\n");
    println!(
        "| verb | resource | without the controller | with it (steady) |\n|---|---|---:|---:|"
    );
    for v in &verbs {
        println!("{v}");
    }
    println!(
        "| all | | {:.2} | {:.2} |\n",
        sum(&baseline),
        sum(&steady_api)
    );
    println!("**Every series moved once**, so that each Autoscaler's decision changes once (from r to r + 1 + r/5 replicas):\n");
    println!("| changes | /scale writes seen | status writes per changed decision | /scale writes per changed decision | metric change to /scale write p50 / p99 (from the exporter) | p50 / p99 (from the Prometheus scrape that saw it) |\n|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!("{r}");
    }
    println!(
        "\nController at the end: RSS {rss_end:.0} MiB, peak {hwm:.0} MiB; {:.0} decisions in all.",
        counter(&m_end, "ebb_controller_decisions_total")
    );

    progress(&format!("deleting namespace {NS}"));
    let _ = nss.delete(NS, &DeleteParams::default()).await;
    Ok(())
}

/// Installs the Autoscaler CRD (as `ebb controller crd` prints it) and waits until it serves.
async fn install_crd(client: &kube::Client) -> Result<(), BoxError> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crd: CustomResourceDefinition = serde_yaml::from_str(&ebb_kube::crd::crd_yaml())?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    match api.create(&PostParams::default(), &crd).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    let autoscalers: Api<ebb_kube::crd::Autoscaler> = Api::namespaced(client.clone(), "default");
    for _ in 0..100 {
        if autoscalers.list(&Default::default()).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err("the Autoscaler CRD was not served within 20 s".into())
}

fn free_port() -> Result<u16, BoxError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
