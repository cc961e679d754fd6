//! Metric sources, without an adapter: the Prometheus HTTP API, the target's pods' own
//! metrics endpoints, a Redis key, and the resource metrics API. Each poll returns values or
//! an error that names the source and the reason; nothing here decides anything.

use crate::crd::{PodScrapeSource, PrometheusSource, RedisSource, SourceSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Why a poll failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// The HTTP request failed or answered an error.
    #[error("{url}: {reason}")]
    Http {
        /// What was asked.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The answer could not be read.
    #[error("{what}: {reason}")]
    Parse {
        /// What was read.
        what: String,
        /// Why it could not be.
        reason: String,
    },
    /// Redis failed.
    #[error("redis {address}: {reason}")]
    Redis {
        /// The server.
        address: String,
        /// Why.
        reason: String,
    },
    /// The Kubernetes API failed (Secrets, metrics.k8s.io).
    #[error("kubernetes: {0}")]
    Kube(String),
    /// No pod could be scraped.
    #[error("{0}")]
    NoData(String),
}

/// A target pod as the sources see it.
#[derive(Debug, Clone, PartialEq)]
pub struct PodEndpoint {
    /// Pod name.
    pub name: String,
    /// Its IP, when it has one.
    pub ip: Option<String>,
}

/// What one poll returned.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceValue {
    /// One value per pod.
    PerPod(BTreeMap<String, f64>),
    /// One value.
    Scalar(f64),
    /// Several values (an External metric's series).
    Vector(Vec<f64>),
    /// Ebb's traffic signals, summed over the pods, and each pod's in-flight count.
    Traffic {
        /// Requests in flight (or waiting).
        in_flight: f64,
        /// Counter of requests received.
        arrivals: f64,
        /// Counter of requests completed.
        completions: f64,
        /// In flight per pod, for the victim ranking.
        per_pod_in_flight: BTreeMap<String, f64>,
        /// Service-time counters, where the scraped pods export them (Ebb's gateway does).
        service: Option<ebb_core::ServiceTotals>,
        /// The answers as their clients saw them against the SLO's latency (read at a
        /// histogram bucket at or below it), where the gateway exports them.
        answered: Option<ebb_core::AnsweredWithin>,
    },
}

impl SourceValue {
    /// One number for the status: the sum of per-pod values, the scalar, the vector's sum,
    /// the traffic's in-flight count.
    pub fn headline(&self) -> f64 {
        match self {
            SourceValue::PerPod(m) => m.values().sum(),
            SourceValue::Scalar(v) => *v,
            SourceValue::Vector(v) => v.iter().sum(),
            SourceValue::Traffic { in_flight, .. } => *in_flight,
        }
    }
}

/// Credentials read from Secrets for one poll.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Credentials {
    /// Bearer token.
    pub token: Option<String>,
    /// Basic auth.
    pub basic: Option<(String, String)>,
    /// PEM CA bundle for TLS.
    pub ca_pem: Option<Vec<u8>>,
    /// Redis password.
    pub password: Option<String>,
}

/// What kind of server a source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A Prometheus query.
    Prometheus,
    /// The target's pods' own `/metrics`.
    PodScrape,
    /// A Redis key.
    Redis,
    /// `metrics.k8s.io` (CPU and memory).
    ResourceMetrics,
    /// Ebb's gateway replicas' `/metrics`.
    Gateway,
}

impl SourceKind {
    /// The kind `s` names (its one set field; none means resource metrics).
    pub fn of(s: &SourceSpec) -> SourceKind {
        if s.prometheus.is_some() {
            SourceKind::Prometheus
        } else if s.pod_scrape.is_some() {
            SourceKind::PodScrape
        } else if s.redis.is_some() {
            SourceKind::Redis
        } else if s.gateway.is_some() {
            SourceKind::Gateway
        } else {
            SourceKind::ResourceMetrics
        }
    }

    /// The spec's field name, as status, metrics and messages show it.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Prometheus => "prometheus",
            SourceKind::PodScrape => "podScrape",
            SourceKind::Redis => "redis",
            SourceKind::ResourceMetrics => "resourceMetrics",
            SourceKind::Gateway => "gateway",
        }
    }

    /// How often it is polled unless the source says: a Prometheus rule evaluates every
    /// 15 s by default; pods are cheap to scrape; the rest in between.
    fn default_poll_seconds(self) -> f64 {
        match self {
            SourceKind::Prometheus => 15.0,
            SourceKind::PodScrape => 2.0,
            // Requests held at zero wait on it: the decision after the first one comes within
            // a second.
            SourceKind::Gateway => 0.5,
            SourceKind::Redis | SourceKind::ResourceMetrics => 5.0,
        }
    }
}

/// The spec's field name of the kind of server `s` reads.
pub fn kind_of(s: &SourceSpec) -> &'static str {
    SourceKind::of(s).as_str()
}

/// How often a source is polled unless it says. A pod scrape that feeds the traffic signals
/// is polled every second, as Knative's autoscaler scrapes its pods: the SLO model decides on
/// each sample, and deciding every 2 s instead of every second cost Ebb 6 of its 49 first-half
/// and 3 of its 47 held-out wins against KPA in `docs/results/verdicts.sh` (spikes and on-off
/// pay more for later starts; docs/results.md).
pub fn default_poll(s: &SourceSpec) -> Duration {
    let secs = s.poll_seconds.unwrap_or_else(|| {
        let kind = SourceKind::of(s);
        if kind == SourceKind::PodScrape && s.feeds_traffic() {
            TRAFFIC_SCRAPE_SECONDS
        } else {
            kind.default_poll_seconds()
        }
    });
    Duration::from_secs_f64(secs.clamp(0.1, 3600.0))
}

/// The default poll of a pod scrape that feeds the traffic signals.
const TRAFFIC_SCRAPE_SECONDS: f64 = 1.0;

/// How long one poll may take.
pub fn timeout(s: &SourceSpec) -> Duration {
    Duration::from_secs_f64(s.timeout_seconds.unwrap_or(5.0).clamp(0.1, 3600.0))
}

/// `{{name}}` and `{{namespace}}` in a query.
pub fn render_query(query: &str, name: &str, namespace: &str) -> String {
    query
        .replace("{{name}}", name)
        .replace("{{namespace}}", namespace)
}

/// The certificates of a PEM bundle (a cluster's CA beside an intermediate, or a system
/// bundle: all are trusted), or why there are none. `ebb simulate --prometheus-ca-file`
/// checks its file with it before asking anything.
pub fn ca_certificates(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, String> {
    let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

/// The HTTP client for one TLS configuration, built once and shared, so that polls reuse
/// connections instead of setting up a client (and TLS) every time. Timeouts are per request.
fn http_client(insecure: bool, ca: Option<&[u8]>) -> Result<reqwest::Client, SourceError> {
    type Key = (bool, Option<Vec<u8>>);
    static CLIENTS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<Key, reqwest::Client>>,
    > = std::sync::OnceLock::new();
    let key: Key = (insecure, ca.map(<[u8]>::to_vec));
    let cache = CLIENTS.get_or_init(Default::default);
    if let Some(c) = cache.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(c);
    }
    crate::install_crypto();
    let mut b = reqwest::Client::builder().tls_danger_accept_invalid_certs(insecure);
    if let Some(pem) = ca {
        let certs = ca_certificates(pem).map_err(|reason| SourceError::Parse {
            what: "ca.crt".into(),
            reason,
        })?;
        for cert in certs {
            b = b.add_root_certificate(cert);
        }
    }
    let client = b.build().map_err(|e| SourceError::Http {
        url: "(client)".into(),
        reason: e.to_string(),
    })?;
    if let Ok(mut m) = cache.lock() {
        m.insert(key, client.clone());
    }
    Ok(client)
}

/// The most a source's answer may hold (a pod's metrics page, a query's result): a pod
/// that answers without end, or a query that matches every series, fails its source rather
/// than filling the controller's memory. Kubelets and Prometheus pages run to a few MiB.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// Reads a response's body, failing as soon as it passes `limit` bytes (by its stated length
/// or as it streams in).
async fn read_bounded(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let too_big = || format!("answered more than {} MiB", limit >> 20);
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| with_causes(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// One series of a query result: its labels and value.
pub type Series = (BTreeMap<String, String>, f64);

/// Runs a PromQL instant query: each series' labels and value.
pub async fn prometheus_query(
    src: &PrometheusSource,
    query: &str,
    creds: &Credentials,
    timeout: Duration,
) -> Result<Vec<Series>, SourceError> {
    let body = prometheus_api(src, "query", &[("query", query)], creds, timeout).await?;
    parse_prometheus_data(&body["data"]).map_err(|reason| SourceError::Parse {
        what: format!("prometheus answer to {query}"),
        reason,
    })
}

/// Runs a PromQL range query from `start` to `end` (Unix seconds) at `step` seconds: the
/// answer as Prometheus wrote it (a matrix), for `ebb simulate` and `ebb tune` to read as
/// recorded traffic. Prometheus answers at most 11,000 points a series: longer ranges are
/// the caller's to split.
pub async fn prometheus_range(
    src: &PrometheusSource,
    query: &str,
    (start, end, step): (f64, f64, f64),
    creds: &Credentials,
    timeout: Duration,
) -> Result<serde_json::Value, SourceError> {
    let (start, end, step) = (start.to_string(), end.to_string(), step.to_string());
    let args = [
        ("query", query),
        ("start", &start),
        ("end", &end),
        ("step", &step),
    ];
    prometheus_api(src, "query_range", &args, creds, timeout).await
}

/// An error with the causes it wraps ("error sending request: ... Connection refused"): a
/// client's own message rarely says why.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// One call of Prometheus's HTTP API: its JSON answer where its status is `success`, else an
/// error naming the URL, the HTTP status and Prometheus's own error.
async fn prometheus_api(
    src: &PrometheusSource,
    path: &str,
    args: &[(&str, &str)],
    creds: &Credentials,
    timeout: Duration,
) -> Result<serde_json::Value, SourceError> {
    let client = http_client(src.insecure_skip_verify, creds.ca_pem.as_deref())?;
    let url = format!("{}/api/v1/{path}", src.url.trim_end_matches('/'));
    let mut req = client.get(&url).timeout(timeout).query(args);
    if let Some(t) = &creds.token {
        req = req.bearer_auth(t);
    } else if let Some((u, p)) = &creds.basic {
        req = req.basic_auth(u, Some(p));
    }
    let http = |reason: String| SourceError::Http {
        url: url.clone(),
        reason,
    };
    let resp = req.send().await.map_err(|e| http(with_causes(&e)))?;
    let status = resp.status();
    let bytes = read_bounded(resp, MAX_BODY_BYTES).await.map_err(http)?;
    let body: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| http(format!("answered {status} with no JSON: {e}")))?;
    if body["status"] != "success" {
        return Err(http(format!(
            "{status}: {} {}",
            body["errorType"].as_str().unwrap_or(""),
            body["error"].as_str().unwrap_or("query failed")
        )));
    }
    Ok(body)
}

/// Reads the `data` of an instant query: vector or scalar results.
pub fn parse_prometheus_data(data: &serde_json::Value) -> Result<Vec<Series>, String> {
    let number = |v: &serde_json::Value| -> Result<f64, String> {
        let s = v
            .get(1)
            .and_then(|x| x.as_str())
            .ok_or("a sample without a value")?;
        s.parse::<f64>()
            .map_err(|_| format!("value '{s}' is not a number"))
    };
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .ok_or("vector without result")?
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                Ok((labels, number(&r["value"])?))
            })
            .collect(),
        Some("scalar") => Ok(vec![(BTreeMap::new(), number(&data["result"])?)]),
        Some(other) => Err(format!(
            "result type {other} (use an instant query that returns a vector or a scalar)"
        )),
        None => Err("no resultType".into()),
    }
}

/// Turns a query's series into the value a metric needs: per pod when the series carry a
/// `pod` label, otherwise one value (one series) or several.
pub fn prometheus_value(
    series: Vec<(BTreeMap<String, String>, f64)>,
) -> Result<SourceValue, SourceError> {
    if series.is_empty() {
        return Err(SourceError::NoData("the query returned no series".into()));
    }
    if series.iter().all(|(l, _)| l.contains_key("pod")) {
        let mut m = BTreeMap::new();
        for (l, v) in series {
            *m.entry(l["pod"].clone()).or_insert(0.0) += v;
        }
        return Ok(SourceValue::PerPod(m));
    }
    if series.len() == 1 {
        return Ok(SourceValue::Scalar(series[0].1));
    }
    Ok(SourceValue::Vector(
        series.into_iter().map(|(_, v)| v).collect(),
    ))
}

/// One scrape of one pod: each sample's metric name, labels and value.
pub type Scrape = Vec<(String, BTreeMap<String, String>, f64)>;

/// Reads Prometheus text exposition.
pub fn parse_exposition(text: &str) -> Result<Scrape, String> {
    crate::exposition::parse(text)
}

/// The metric names a pod scrape reads (its `metric`, its `traffic` counters and gauges);
/// `None` when it names none (the gateway's scrape, which reads Ebb's own short page whole;
/// an engine's scrape names its engine's through [`scrape_pods_keeping`]).
fn names_read(src: &PodScrapeSource) -> Option<BTreeSet<String>> {
    let traffic = src.traffic.iter().flat_map(|t| {
        t.arrivals
            .iter()
            .chain(&t.completions)
            .chain(&t.in_flight)
            .cloned()
    });
    let names: BTreeSet<String> = src.metric.iter().cloned().chain(traffic).collect();
    (!names.is_empty()).then_some(names)
}

/// The sum of `metric` over its series in a scrape; `None` when it is absent.
pub fn metric_sum(scrape: &[crate::exposition::Sample], metric: &str) -> Option<f64> {
    let mut found = false;
    let mut sum = 0.0;
    for (name, _, v) in scrape {
        if name == metric {
            found = true;
            sum += v;
        }
    }
    found.then_some(sum)
}

/// Scrapes every replica of the gateway `g` names (pods of its selector, not being deleted,
/// with an IP) on its admin port, concurrently: each replica's scrape or error. An error when
/// no replica can be found.
pub async fn scrape_gateways(
    caches: &crate::caches::Caches,
    ns: &str,
    g: &crate::crd::GatewaySource,
    timeout: Duration,
) -> Result<Vec<(String, Result<Scrape, SourceError>)>, SourceError> {
    let pods = caches
        .pods(ns, &g.selector)
        .map_err(|e| SourceError::NoData(format!("gateway selector: {e}")))?;
    let endpoints: Vec<PodEndpoint> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| PodEndpoint {
            name: kube::ResourceExt::name_any(p.as_ref()),
            ip: p.status.as_ref().and_then(|s| s.pod_ip.clone()),
        })
        .filter(|p| p.ip.is_some())
        .collect();
    if endpoints.is_empty() {
        return Err(SourceError::NoData(format!(
            "no gateway pod with an IP matches {}",
            g.selector
        )));
    }
    let admin = PodScrapeSource {
        port: g.port(),
        path: None,
        scheme: None,
        metric: None,
        aggregate: None,
        traffic: None,
    };
    Ok(scrape_pods(&admin, &endpoints, timeout).await)
}

/// Scrapes every pod that has an IP, concurrently: each pod's scrape or error, holding the
/// metrics the source names (every metric where it names none).
pub async fn scrape_pods(
    src: &PodScrapeSource,
    pods: &[PodEndpoint],
    timeout: Duration,
) -> Vec<(String, Result<Scrape, SourceError>)> {
    scrape_pods_keeping(src, pods, timeout, names_read(src).as_ref()).await
}

/// [`scrape_pods`], holding the samples named in `names` (all of them with `None`).
pub async fn scrape_pods_keeping(
    src: &PodScrapeSource,
    pods: &[PodEndpoint],
    timeout: Duration,
    names: Option<&BTreeSet<String>>,
) -> Vec<(String, Result<Scrape, SourceError>)> {
    let client = match http_client(true, None) {
        Ok(c) => c,
        Err(e) => {
            return pods
                .iter()
                .map(|p| (p.name.clone(), Err(e.clone())))
                .collect()
        }
    };
    let path = src.path.clone().unwrap_or_else(|| "/metrics".into());
    let scheme = src.scheme.clone().unwrap_or_else(|| "http".into());
    let polls = pods.iter().map(|p| {
        let client = client.clone();
        let url =
            p.ip.as_ref()
                .map(|ip| format!("{scheme}://{ip}:{}{path}", src.port));
        let name = p.name.clone();
        async move {
            let Some(url) = url else {
                return (
                    name.clone(),
                    Err(SourceError::NoData(format!("pod {name} has no IP yet"))),
                );
            };
            let r = async {
                let resp = client
                    .get(&url)
                    .timeout(timeout)
                    .send()
                    .await
                    .map_err(|e| SourceError::Http {
                        url: url.clone(),
                        reason: e.to_string(),
                    })?;
                if !resp.status().is_success() {
                    return Err(SourceError::Http {
                        url: url.clone(),
                        reason: format!("answered {}", resp.status()),
                    });
                }
                let bytes = read_bounded(resp, MAX_BODY_BYTES).await.map_err(|reason| {
                    SourceError::Http {
                        url: url.clone(),
                        reason,
                    }
                })?;
                let text = String::from_utf8_lossy(&bytes);
                let read = |name: &str| names.is_none_or(|n| n.contains(name));
                crate::exposition::parse_where(&text, read).map_err(|reason| SourceError::Parse {
                    what: url.clone(),
                    reason,
                })
            }
            .await;
            (name, r)
        }
    });
    futures::future::join_all(polls).await
}

/// Reads a Redis value as a number.
pub async fn redis_value(
    src: &RedisSource,
    creds: &Credentials,
    timeout: Duration,
) -> Result<f64, SourceError> {
    let err = |reason: String| SourceError::Redis {
        address: src.address.clone(),
        reason,
    };
    let mut url = reqwest::Url::parse(&src.address)
        .map_err(|e| err(format!("bad address (want redis://host:6379/0): {e}")))?;
    if let Some(p) = &creds.password {
        url.set_password(Some(p))
            .map_err(|_| err("cannot put a password in this address".into()))?;
    }
    let client = redis::Client::open(url.as_str()).map_err(|e| err(e.to_string()))?;
    let work = async {
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| err(e.to_string()))?;
        let kind = src.kind.as_deref().unwrap_or("string");
        let value: Option<String> = match kind {
            "listLength" => {
                let n: i64 = redis::cmd("LLEN")
                    .arg(&src.key)
                    .query_async(&mut con)
                    .await
                    .map_err(|e| err(e.to_string()))?;
                Some(n.to_string())
            }
            "hashField" => redis::cmd("HGET")
                .arg(&src.key)
                .arg(src.field.as_deref().unwrap_or(""))
                .query_async(&mut con)
                .await
                .map_err(|e| err(e.to_string()))?,
            _ => redis::cmd("GET")
                .arg(&src.key)
                .query_async(&mut con)
                .await
                .map_err(|e| err(e.to_string()))?,
        };
        let text = value.ok_or_else(|| err(format!("key {} is not set", src.key)))?;
        text.trim()
            .parse::<f64>()
            .map_err(|_| err(format!("key {} holds '{text}', not a number", src.key)))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| err(format!("timed out after {:.1}s", timeout.as_secs_f64())))?
}

/// Parses a Kubernetes quantity of CPU (cores) or memory (bytes) as milli-units, as the
/// core's resource metrics are kept.
pub fn quantity_milli(q: &str) -> Option<i64> {
    ebb_core::quantity::parse_milli(q).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_vectors_with_pod_labels_are_per_pod() {
        let data = serde_json::json!({"resultType": "vector", "result": [
            {"metric": {"pod": "m-1"}, "value": [1.0, "3"]},
            {"metric": {"pod": "m-2"}, "value": [1.0, "5.5"]}
        ]});
        let series = parse_prometheus_data(&data).unwrap();
        let v = prometheus_value(series).unwrap();
        assert_eq!(
            v,
            SourceValue::PerPod(BTreeMap::from([("m-1".into(), 3.0), ("m-2".into(), 5.5)]))
        );
        let data = serde_json::json!({"resultType": "scalar", "result": [1.0, "42"]});
        assert_eq!(
            prometheus_value(parse_prometheus_data(&data).unwrap()).unwrap(),
            SourceValue::Scalar(42.0)
        );
        let data = serde_json::json!({"resultType": "matrix", "result": []});
        assert!(parse_prometheus_data(&data)
            .unwrap_err()
            .contains("instant query"));
        assert!(prometheus_value(Vec::new()).is_err());
    }

    #[test]
    fn expositions_are_read_and_summed() {
        let text = "# HELP ebb_in_flight x\n# TYPE ebb_in_flight gauge\nebb_in_flight{service=\"a\"} 3\nebb_in_flight{service=\"b\"} 2\n# TYPE ebb_requests_total counter\nebb_requests_total{service=\"a\"} 100\nvllm:num_requests_running{model=\"x\"} 4\n";
        let s = parse_exposition(text).unwrap();
        assert_eq!(metric_sum(&s, "ebb_in_flight"), Some(5.0));
        assert_eq!(metric_sum(&s, "ebb_requests_total"), Some(100.0));
        assert_eq!(metric_sum(&s, "vllm:num_requests_running"), Some(4.0));
        assert_eq!(metric_sum(&s, "absent"), None);
    }

    #[test]
    fn vllm_style_names_parse() {
        let s = parse_exposition("# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"m\"} 3\nvllm:num_requests_waiting{model_name=\"m\"} 2\n");
        assert_eq!(
            s.as_ref()
                .ok()
                .and_then(|s| metric_sum(s, "vllm:num_requests_running")),
            Some(3.0),
            "{s:?}"
        );
    }

    #[test]
    fn queries_get_the_target() {
        assert_eq!(
            render_query(
                "sum(rate(x{namespace=\"{{namespace}}\",model=\"{{name}}\"}[1m]))",
                "iris",
                "prod"
            ),
            "sum(rate(x{namespace=\"prod\",model=\"iris\"}[1m]))"
        );
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn the_kind_sets_the_default_poll() {
        let mut s = SourceSpec::default();
        assert_eq!(SourceKind::of(&s), SourceKind::ResourceMetrics);
        assert_eq!(default_poll(&s), Duration::from_secs(5));
        s.prometheus = Some(Default::default());
        assert_eq!(kind_of(&s), "prometheus");
        assert_eq!(default_poll(&s), Duration::from_secs(15));
        s.poll_seconds = Some(1.0);
        assert_eq!(default_poll(&s), Duration::from_secs(1));
        // Pods: every 2 s for a metric, every second for the traffic signals.
        let mut s = SourceSpec {
            pod_scrape: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(default_poll(&s), Duration::from_secs(2));
        s.pod_scrape.as_mut().unwrap().traffic = Some(Default::default());
        assert_eq!(default_poll(&s), Duration::from_secs(1));
        s.poll_seconds = Some(5.0);
        assert_eq!(default_poll(&s), Duration::from_secs(5));
    }
}
