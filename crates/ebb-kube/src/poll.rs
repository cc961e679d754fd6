//! Polling one source for one Autoscaler: credentials from Secrets, the source kinds, counter
//! rates and traffic totals kept between polls.

use crate::context::{Context, Pass};
use crate::crd::{GatewaySource, SourceSpec, SourceStatus, TrafficMetrics};
use crate::memory::{SourceMemory, TRAFFIC_COUNTERS};
use crate::observe::{self, Latest, TargetPod};
use crate::sources::{self, Credentials, PodEndpoint, SourceError, SourceValue};
use ebb_core::engine::Buckets;
use ebb_core::Time;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub(crate) async fn secret(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>, SourceError> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let s = api
        .get(name)
        .await
        .map_err(|e| SourceError::Kube(format!("secret {name}: {e}")))?;
    Ok(s.data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

pub(crate) fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).trim().to_string()
}

/// Polls the sources that are due (together), keeping each one's last good value when a poll
/// fails; returns when the next one falls due. A source whose spec changed starts afresh.
/// `slo` is the policy's request SLO, where it has one: the gateway's service-time histogram
/// is read at its latency, and the gateways' slots are checked against its.
pub(crate) async fn poll_due(
    pass: &mut Pass<'_>,
    pods: &[TargetPod],
    slo: Option<SloReading>,
) -> Duration {
    let specs = &pass.obj.spec.sources;
    let mut memories = std::mem::take(&mut pass.memory.sources);
    memories.resize_with(specs.len(), SourceMemory::default);
    let mut next_due = pass.sync;
    let mut polls = Vec::new();
    for (spec, mut mem) in specs.iter().zip(memories) {
        if mem.spec.as_ref() != Some(spec) {
            mem = SourceMemory {
                spec: Some(spec.clone()),
                ..Default::default()
            };
        }
        let interval = sources::default_poll(spec);
        let since = mem
            .last_poll
            .map(|t| Duration::from_millis(pass.now.millis_since(t).max(0).unsigned_abs()));
        let due = since.is_none_or(|s| s >= interval);
        next_due = next_due.min(if due {
            interval
        } else {
            interval.saturating_sub(since.unwrap_or_default())
        });
        let pass = &*pass;
        polls.push(async move {
            if due {
                poll_one(pass, spec, pods, &mut mem, slo).await;
            }
            mem
        });
    }
    pass.memory.sources = futures::future::join_all(polls).await;
    next_due
}

async fn poll_one(
    pass: &Pass<'_>,
    spec: &SourceSpec,
    pods: &[TargetPod],
    mem: &mut SourceMemory,
    slo: Option<SloReading>,
) {
    let t0 = Instant::now();
    let r = poll(pass, spec, pods, mem, slo).await;
    let kind = sources::kind_of(spec);
    let ok = r.is_ok();
    pass.ctx
        .metrics
        .source_polled(pass.ns, pass.name, &spec.name, kind, t0.elapsed(), ok);
    mem.last_poll = Some(pass.now);
    match r {
        Ok(v) => {
            mem.value = Some(v);
            mem.at = Some(pass.now);
            mem.error = None;
            mem.failures = 0;
        }
        // The last good value stays, with its time: the core treats it as stale after
        // staleAfterSeconds, and never scales down on a gap.
        Err(e) => {
            mem.error = Some(e.to_string());
            mem.failures = mem.failures.saturating_add(1);
        }
    }
}

/// What the sources say, as the core's observation takes it.
pub(crate) fn latest(specs: &[SourceSpec], memories: &[SourceMemory]) -> Vec<Latest> {
    specs
        .iter()
        .zip(memories)
        .map(|(s, m)| Latest {
            name: s.name.clone(),
            traffic: s.feeds_traffic(),
            value: m.usable().cloned(),
            at: m.at.unwrap_or(Time::ZERO),
        })
        .collect()
}

/// The fallbacks of the sources that failed at least their threshold of polls in a row, each
/// with the metrics and signals it feeds (a traffic scrape feeds the traffic signals the
/// policy has; any other source the policy metric of its name, or the external count).
pub(crate) fn fallbacks(
    specs: &[SourceSpec],
    memories: &[SourceMemory],
    policy: &ebb_core::Policy,
) -> Vec<ebb_core::SourceFallback> {
    specs
        .iter()
        .zip(memories)
        .filter_map(|(s, m)| {
            // Failures reset on a good poll: past the threshold, the last poll failed.
            let action = s.fallback.as_ref()?.active(m.failures)?;
            let traffic = s.feeds_traffic();
            let metrics = if traffic {
                let mut fed = Vec::new();
                if let Some(c) = &policy.concurrency {
                    fed.push(c.metric.as_str().to_string());
                }
                if policy.inference_lag.is_some() {
                    fed.push("inferenceLag".into());
                }
                if policy.slo.is_some() {
                    fed.push("slo".into());
                }
                fed
            } else {
                vec![s.name.clone()]
            };
            Some(ebb_core::SourceFallback {
                source: s.name.clone(),
                failures: m.failures,
                metrics,
                action,
            })
        })
        .collect()
}

/// What the sources say, as the status shows it.
pub(crate) fn source_statuses(
    specs: &[SourceSpec],
    memories: &[SourceMemory],
) -> Vec<SourceStatus> {
    specs
        .iter()
        .zip(memories)
        .map(|(s, m)| SourceStatus {
            name: s.name.clone(),
            source: sources::kind_of(s).into(),
            value: m.usable().map(|v| v.headline()),
            error: m.error.clone(),
            last_success: m.at.map(crate::status::rfc3339),
        })
        .collect()
}

/// Polls one source.
pub(crate) async fn poll(
    pass: &Pass<'_>,
    spec: &SourceSpec,
    pods: &[TargetPod],
    memory: &mut SourceMemory,
    slo: Option<SloReading>,
) -> Result<SourceValue, SourceError> {
    let (ctx, ns, now) = (pass.ctx, pass.ns, pass.now);
    let target = &pass.obj.spec.scale_target_ref.name;
    let timeout = sources::timeout(spec);
    if let Some(p) = &spec.prometheus {
        let mut creds = Credentials::default();
        if let Some(r) = &p.auth_secret_ref {
            let data = secret(ctx, ns, &r.name).await?;
            creds.token = data.get("token").map(|v| text(v));
            if let (Some(u), Some(pw)) = (data.get("username"), data.get("password")) {
                creds.basic = Some((text(u), text(pw)));
            }
            creds.ca_pem = data.get("ca.crt").cloned();
        }
        let q = sources::render_query(&p.query, target, ns);
        let series =
            tokio::time::timeout(timeout, sources::prometheus_query(p, &q, &creds, timeout))
                .await
                .map_err(|_| SourceError::Http {
                    url: p.url.clone(),
                    reason: format!("timed out after {:.1}s", timeout.as_secs_f64()),
                })??;
        return sources::prometheus_value(series);
    }
    if let Some(r) = &spec.redis {
        let mut creds = Credentials::default();
        if let Some(s) = &r.password_secret_ref {
            let data = secret(ctx, ns, &s.name).await?;
            creds.password = Some(text(data.get(&s.key).ok_or_else(|| {
                SourceError::Kube(format!("secret {} has no key {}", s.name, s.key))
            })?));
        }
        return sources::redis_value(r, &creds, timeout)
            .await
            .map(SourceValue::Scalar);
    }
    if let Some(rm) = &spec.resource_metrics {
        return resource_metrics(ctx, ns, pods, &rm.resource, timeout).await;
    }
    if let Some(g) = &spec.gateway {
        return gateway(ctx, ns, g, memory, timeout, slo).await;
    }
    let Some(ps) = &spec.pod_scrape else {
        return Err(SourceError::NoData("no source kind given".into()));
    };
    let endpoints: Vec<PodEndpoint> = pods
        .iter()
        .filter(|p| !p.deleting)
        .map(|p| PodEndpoint {
            name: p.name.clone(),
            ip: p.ip.clone(),
        })
        .collect();
    if endpoints.is_empty() {
        return Err(SourceError::NoData(
            "the target has no pods to scrape".into(),
        ));
    }
    let ok = scraped(sources::scrape_pods(ps, &endpoints, timeout).await, "pod")?;
    if let Some(t) = &ps.traffic {
        return Ok(traffic_value(&ok, t, None, CountedAt::default(), memory));
    }
    let metric = ps.metric.clone().unwrap_or_default();
    let mut values = BTreeMap::new();
    for (pod, s) in &ok {
        if let Some(v) = sources::metric_sum(s, &metric) {
            values.insert(pod.clone(), v);
        }
    }
    if values.is_empty() {
        return Err(SourceError::NoData(format!("no pod exposes {metric}")));
    }
    match ps.aggregate.as_deref().unwrap_or("perPod") {
        "sum" => Ok(SourceValue::Scalar(values.values().sum())),
        "average" => Ok(SourceValue::Scalar(
            values.values().sum::<f64>() / values.len() as f64,
        )),
        "rate" => {
            let now_counters: BTreeMap<String, (f64, Time)> =
                values.iter().map(|(p, v)| (p.clone(), (*v, now))).collect();
            let r = observe::rates(&memory.counters, &now_counters);
            memory.counters = now_counters;
            if r.is_empty() {
                Err(SourceError::NoData(format!(
                    "first scrape of {metric}: a rate needs two"
                )))
            } else {
                Ok(SourceValue::PerPod(r))
            }
        }
        _ => Ok(SourceValue::PerPod(values)),
    }
}

/// The scrapes that worked, or an error naming why each failed when none did (`what` names
/// the pods: "pod", "gateway pod").
fn scraped(
    scrapes: Vec<(String, Result<sources::Scrape, SourceError>)>,
    what: &str,
) -> Result<Vec<(String, sources::Scrape)>, SourceError> {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for (pod, r) in scrapes {
        match r {
            Ok(s) => ok.push((pod, s)),
            Err(e) => errors.push(format!("{pod}: {e}")),
        }
    }
    if ok.is_empty() {
        return Err(SourceError::NoData(format!(
            "no {what} could be scraped ({})",
            errors.join("; ")
        )));
    }
    Ok(ok)
}

/// The service-time counters Ebb's proxy exports (`ebb up` and the gateway).
const SERVICE_COUNTERS: [&str; 3] = [
    "ebb_service_seconds_count",
    "ebb_service_seconds_sum",
    "ebb_service_squared_seconds_total",
];

/// The traffic signals from scrapes of the pods that count requests (the target's own, or the
/// gateway's), summed, with service-wide counters that only grow. `service` names the
/// service-time counters to read, where the pods export them; `at` gives the histogram
/// buckets to count service times and answers as within the SLO at (see [`bucket_at`]).
fn traffic_value(
    ok: &[(String, sources::Scrape)],
    t: &TrafficMetrics,
    service: Option<&[&str; 3]>,
    at: CountedAt,
    memory: &mut SourceMemory,
) -> SourceValue {
    let mut in_flight = 0.0;
    let mut per_pod = BTreeMap::new();
    let mut counters = BTreeMap::new();
    let read = |s: &sources::Scrape, m: Option<&str>| {
        m.and_then(|m| sources::metric_sum(s, m)).unwrap_or(0.0)
    };
    let mut service_seen = false;
    for (pod, s) in ok {
        let f: f64 = t
            .in_flight
            .iter()
            .filter_map(|m| sources::metric_sum(s, m))
            .sum();
        in_flight += f;
        per_pod.insert(pod.clone(), f);
        let mut c = [0.0; TRAFFIC_COUNTERS];
        c[0] = read(s, t.arrivals.as_deref());
        c[1] = read(s, t.completions.as_deref());
        for (i, name) in service.into_iter().flatten().enumerate() {
            let v = sources::metric_sum(s, name);
            service_seen |= v.is_some();
            c[2 + i] = v.unwrap_or(0.0);
        }
        if let Some(le) = at.service {
            c[5] = buckets(s, SERVICE_HISTOGRAM)
                .and_then(|b| b.count_at(le))
                .unwrap_or(0.0);
        }
        if let Some(le) = at.answers {
            [c[6], c[7]] = answers_counted(s, le);
        }
        counters.insert(pod.clone(), c);
    }
    // Pod counters restart with the pod: the service-wide totals must only grow, so add
    // each pod's growth since the last scrape to the running totals.
    let mut totals = match &memory.value {
        Some(SourceValue::Traffic {
            arrivals,
            completions,
            service,
            answered,
            ..
        }) => {
            let s = service.unwrap_or_default();
            let a = answered.unwrap_or_default();
            [
                *arrivals,
                *completions,
                s.requests,
                s.seconds,
                s.squared_seconds,
                s.within.map_or(0.0, |w| w.requests),
                a.requests,
                a.within,
            ]
        }
        _ => [0.0; TRAFFIC_COUNTERS],
    };
    for (pod, now) in &counters {
        let grown = match memory.traffic_counters.get(pod) {
            Some(last) if now.iter().zip(last).all(|(n, l)| n >= l) => {
                std::array::from_fn(|i| now[i] - last[i])
            }
            // Restarted since (a counter went back): all it counted is new.
            Some(_) => *now,
            None if memory.value.is_none() => *now,
            // A pod first seen after the first scrape: its past was counted by nobody, but
            // its counts so far came before this window.
            None => [0.0; TRAFFIC_COUNTERS],
        };
        for (total, g) in totals.iter_mut().zip(grown) {
            *total += g;
        }
    }
    memory.traffic_counters = counters;
    SourceValue::Traffic {
        in_flight,
        arrivals: totals[0],
        completions: totals[1],
        per_pod_in_flight: per_pod,
        service: service_seen.then_some(ebb_core::ServiceTotals {
            requests: totals[2],
            seconds: totals[3],
            squared_seconds: totals[4],
            within: at.service.map(|latency_seconds| ebb_core::WithinLatency {
                latency_seconds,
                requests: totals[5],
            }),
        }),
        answered: at.answers.map(|latency_seconds| ebb_core::AnsweredWithin {
            latency_seconds,
            requests: totals[6],
            within: totals[7],
        }),
    }
}

/// The histogram bounds at which a gateway's counts stand for the SLO (see [`bucket_at`]):
/// its service times', and its answers' as clients saw them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CountedAt {
    /// The service-time histogram's bound.
    pub(crate) service: Option<f64>,
    /// The answers' histogram's bound (and the abandoned requests').
    pub(crate) answers: Option<f64>,
}

/// The service-time histogram the gateway exports.
const SERVICE_HISTOGRAM: &str = "ebb_service_seconds";
/// The gateway's histogram of answers that did not fail, from arrival to last byte.
const ANSWERED_HISTOGRAM: &str = "ebb_answered_seconds";
/// The gateway's histogram of how long clients waited before they went away unanswered.
const ABANDONED_HISTOGRAM: &str = "ebb_abandoned_seconds";
/// The gateway's count of answers that failed.
const ANSWERS_FAILED: &str = "ebb_answers_failed_total";

fn buckets(scrape: &sources::Scrape, histogram: &str) -> Option<Buckets> {
    Buckets::from_samples(scrape, histogram, 1.0)
}

/// The bound of the gateway's `histogram` in `scrape` to count within an SLO of `latency`
/// seconds at: the highest bound at or below it, so that the count never flatters the
/// service, and no lower than half of it (below that the count says little about the tail at
/// the SLO). The core fits the service times' shape to the share within that bound, and
/// reports the answers within it as the attainment reached.
fn bucket_at(scrape: &sources::Scrape, histogram: &str, latency: f64) -> Option<f64> {
    let (bound, _) =
        buckets(scrape, histogram)?.at_or_below(latency * (1.0 + 1e-9), latency / 2.0)?;
    Some(bound)
}

/// A gateway pod's answers as clients saw them, counted at the bound `le`: those that ended
/// (answered, failed, or abandoned after `le`) and those answered within `le`.
fn answers_counted(scrape: &sources::Scrape, le: f64) -> [f64; 2] {
    let count = |histogram: &str| {
        buckets(scrape, histogram)
            .map_or((0.0, 0.0), |b| (b.count(), b.count_at(le).unwrap_or(0.0)))
    };
    let (good, within) = count(ANSWERED_HISTOGRAM);
    let (abandoned, abandoned_early) = count(ABANDONED_HISTOGRAM);
    let failed = sources::metric_sum(scrape, ANSWERS_FAILED).unwrap_or(0.0);
    [
        good + failed + (abandoned - abandoned_early).max(0.0),
        within,
    ]
}

/// What the controller reads of a policy's request SLO while it polls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SloReading {
    /// The SLO's latency, seconds: the gateway's histogram is read at it.
    pub(crate) latency: f64,
    /// `slo.slotsPerReplica`: what the gateways should count a full pod at.
    pub(crate) slots: u32,
}

/// The gateway's count of a full pod, exported as a gauge.
const GATEWAY_SLOTS: &str = "ebb_slots_per_replica";

/// Which gateway pods count service times with slots other than the policy's `slots` (or
/// with none, timing every answer), said for an Event: their service times then include
/// waits in full pods' queues, or leave out answers from pods with a slot free.
fn slots_disagreement(ok: &[(String, sources::Scrape)], slots: u32) -> Option<String> {
    let off: Vec<String> = ok
        .iter()
        .filter_map(|(pod, s)| match sources::metric_sum(s, GATEWAY_SLOTS) {
            Some(v) if v == f64::from(slots) => None,
            Some(v) => Some(format!("{pod} counts {v}")),
            None => Some(format!("{pod} counts none")),
        })
        .collect();
    (!off.is_empty()).then(|| {
        format!(
            "gateway pods time service with other slots than slo.slotsPerReplica {slots} ({}): run them with --autoscaler NAME to follow the Autoscaler",
            off.join(", ")
        )
    })
}

/// The gateway's replicas, scraped and summed: what they received, answered and hold. Each
/// target pod's in-flight count is the sum of what every gateway replica has sent it.
async fn gateway(
    ctx: &Context,
    ns: &str,
    g: &GatewaySource,
    memory: &mut SourceMemory,
    timeout: Duration,
    slo: Option<SloReading>,
) -> Result<SourceValue, SourceError> {
    let scrapes = sources::scrape_gateways(&ctx.caches, ns, g, timeout).await?;
    let ok = scraped(scrapes, "gateway pod")?;
    let disagreement = slo.and_then(|slo| slots_disagreement(&ok, slo.slots));
    memory.warning = disagreement
        .clone()
        .filter(|d| memory.unconfirmed_warning.as_ref() == Some(d));
    memory.unconfirmed_warning = disagreement;
    let at_bound = |histogram: &str| {
        slo.and_then(|slo| {
            ok.iter()
                .find_map(|(_, s)| bucket_at(s, histogram, slo.latency))
        })
    };
    let at = CountedAt {
        service: at_bound(SERVICE_HISTOGRAM),
        answers: at_bound(ANSWERED_HISTOGRAM),
    };
    let names = TrafficMetrics {
        arrivals: Some("ebb_requests_total".into()),
        completions: Some("ebb_responses_total".into()),
        in_flight: vec!["ebb_in_flight".into()],
    };
    let mut value = traffic_value(&ok, &names, Some(&SERVICE_COUNTERS), at, memory);
    if let SourceValue::Traffic {
        per_pod_in_flight, ..
    } = &mut value
    {
        *per_pod_in_flight = BTreeMap::new();
        for (_, samples) in &ok {
            for (name, labels, v) in samples {
                if name == "ebb_replica_in_flight" {
                    if let Some(pod) = labels.get("replica") {
                        *per_pod_in_flight.entry(pod.clone()).or_default() += v;
                    }
                }
            }
        }
    }
    Ok(value)
}

pub(crate) async fn resource_metrics(
    ctx: &Context,
    ns: &str,
    pods: &[TargetPod],
    resource: &str,
    timeout: Duration,
) -> Result<SourceValue, SourceError> {
    let req = http::Request::get(format!("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods"))
        .body(Vec::new())
        .map_err(|e| SourceError::Kube(e.to_string()))?;
    let list: serde_json::Value = tokio::time::timeout(timeout, ctx.client.request(req))
        .await
        .map_err(|_| SourceError::Kube("metrics.k8s.io timed out".into()))?
        .map_err(|e| {
            SourceError::Kube(format!(
                "metrics.k8s.io: {e} (is metrics-server installed?)"
            ))
        })?;
    let wanted: std::collections::BTreeSet<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    let mut out = BTreeMap::new();
    for item in list["items"].as_array().into_iter().flatten() {
        let name = item["metadata"]["name"].as_str().unwrap_or("");
        if !wanted.contains(name) {
            continue;
        }
        let milli: i64 = item["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                c["usage"][resource]
                    .as_str()
                    .and_then(sources::quantity_milli)
            })
            .sum();
        // Cores for cpu, bytes for memory: the core's units for resource metrics.
        out.insert(name.to_string(), milli as f64 / 1000.0);
    }
    if out.is_empty() {
        return Err(SourceError::NoData(format!(
            "metrics.k8s.io has no {resource} usage for the target's pods"
        )));
    }
    Ok(SourceValue::PerPod(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(samples: &[(&str, f64)]) -> sources::Scrape {
        samples
            .iter()
            .map(|(name, v)| (name.to_string(), BTreeMap::new(), *v))
            .collect()
    }

    fn gateway_pod(requests: f64, service_count: f64, service_sum: f64) -> sources::Scrape {
        scrape(&[
            ("ebb_requests_total", requests),
            ("ebb_responses_total", requests),
            ("ebb_in_flight", 1.0),
            ("ebb_service_seconds_count", service_count),
            ("ebb_service_seconds_sum", service_sum),
            ("ebb_service_squared_seconds_total", service_sum * 0.1),
        ])
    }

    fn names() -> TrafficMetrics {
        TrafficMetrics {
            arrivals: Some("ebb_requests_total".into()),
            completions: Some("ebb_responses_total".into()),
            in_flight: vec!["ebb_in_flight".into()],
        }
    }

    /// The traffic and service-time counters of gateway pods, with nothing counted at an SLO.
    fn gateway_counters(
        ok: &[(String, sources::Scrape)],
        memory: &mut SourceMemory,
    ) -> SourceValue {
        traffic_value(
            ok,
            &names(),
            Some(&SERVICE_COUNTERS),
            CountedAt::default(),
            memory,
        )
    }

    /// The gateway replicas' service-time counters are summed into totals that only grow,
    /// through a replica's restart, as the request counters are.
    #[test]
    fn gateway_service_counters_sum_and_survive_a_restart() {
        let mut memory = SourceMemory::default();
        let mut poll = |pods: &[(&str, sources::Scrape)]| {
            let ok: Vec<(String, sources::Scrape)> = pods
                .iter()
                .map(|(n, s)| (n.to_string(), s.clone()))
                .collect();
            let v = gateway_counters(&ok, &mut memory);
            memory.value = Some(v.clone());
            v
        };
        let service = |v: &SourceValue| match v {
            SourceValue::Traffic { service, .. } => *service,
            _ => None,
        };
        let first = poll(&[
            ("a", gateway_pod(10.0, 10.0, 1.0)),
            ("b", gateway_pod(20.0, 20.0, 2.0)),
        ]);
        let s = service(&first).expect("service counters");
        assert_eq!((s.requests, s.seconds), (30.0, 3.0));
        assert!((s.squared_seconds - 0.3).abs() < 1e-12);
        // b restarts: its counters start again from zero; the totals keep growing.
        let second = poll(&[
            ("a", gateway_pod(15.0, 15.0, 1.5)),
            ("b", gateway_pod(4.0, 4.0, 0.4)),
        ]);
        let s = service(&second).expect("service counters");
        assert_eq!(s.requests, 30.0 + 5.0 + 4.0);
        assert!((s.seconds - (3.0 + 0.5 + 0.4)).abs() < 1e-12);
        let SourceValue::Traffic { arrivals, .. } = second else {
            panic!("traffic")
        };
        assert_eq!(arrivals, 39.0);
    }

    /// Pods that export no service-time counters (a model server's own) give none, so the
    /// SLO model falls back to Little's law rather than reading zeros as measurements.
    #[test]
    fn no_service_counters_no_service_totals() {
        let mut memory = SourceMemory::default();
        let ok = vec![(
            "a".to_string(),
            scrape(&[("ebb_requests_total", 5.0), ("ebb_in_flight", 1.0)]),
        )];
        let v = gateway_counters(&ok, &mut memory);
        assert!(matches!(v, SourceValue::Traffic { service: None, .. }));
        let v = traffic_value(&ok, &names(), None, CountedAt::default(), &mut memory);
        assert!(matches!(v, SourceValue::Traffic { service: None, .. }));
    }

    fn bucket(le: &str, v: f64) -> (String, BTreeMap<String, String>, f64) {
        let labels = BTreeMap::from([
            ("service".to_string(), "m".to_string()),
            ("le".to_string(), le.to_string()),
        ]);
        (format!("{SERVICE_HISTOGRAM}_bucket"), labels, v)
    }

    /// Gateway pods whose slot gauge differs from the policy's, or is missing, are named;
    /// those that agree are not.
    #[test]
    fn gateways_counting_other_slots_than_the_policys_are_named() {
        let with = |slots: Option<f64>| {
            let mut pod = gateway_pod(10.0, 10.0, 1.0);
            pod.extend(slots.map(|v| (GATEWAY_SLOTS.to_string(), BTreeMap::new(), v)));
            pod
        };
        let agree = vec![
            ("a".to_string(), with(Some(8.0))),
            ("b".to_string(), with(Some(8.0))),
        ];
        assert_eq!(slots_disagreement(&agree, 8), None);
        let off = vec![
            ("a".to_string(), with(Some(8.0))),
            ("b".to_string(), with(Some(4.0))),
            ("c".to_string(), with(None)),
        ];
        let w = slots_disagreement(&off, 8).expect("b and c disagree");
        assert!(
            w.contains("b counts 4") && w.contains("c counts none") && !w.contains("a counts"),
            "{w}"
        );
        assert!(
            w.contains("slo.slotsPerReplica 8") && w.contains("--autoscaler"),
            "{w}"
        );
    }

    /// The SLO's share is counted at the highest bucket bound at or below its latency, not
    /// above (which would flatter the service) nor far below (which says little of the tail).
    #[test]
    fn service_times_within_the_slo_are_read_from_the_highest_bucket_at_or_below_it() {
        let mut pod = gateway_pod(100.0, 100.0, 12.0);
        pod.extend([
            bucket("0.25", 90.0),
            bucket("0.5", 98.0),
            bucket("1", 100.0),
            bucket("+Inf", 100.0),
        ]);
        assert_eq!(bucket_at(&pod, SERVICE_HISTOGRAM, 0.5), Some(0.5));
        assert_eq!(bucket_at(&pod, SERVICE_HISTOGRAM, 0.7), Some(0.5));
        assert_eq!(bucket_at(&pod, SERVICE_HISTOGRAM, 0.3), Some(0.25));
        assert_eq!(
            bucket_at(&pod, SERVICE_HISTOGRAM, 0.2),
            None,
            "0.1 s and below: none"
        );
        assert_eq!(
            bucket_at(&pod, SERVICE_HISTOGRAM, 3.0),
            None,
            "1 s is under half of 3 s"
        );

        let mut memory = SourceMemory::default();
        let ok = vec![("a".to_string(), pod.clone()), ("b".to_string(), pod)];
        let v = traffic_value(
            &ok,
            &names(),
            Some(&SERVICE_COUNTERS),
            CountedAt {
                service: Some(0.5),
                answers: None,
            },
            &mut memory,
        );
        let SourceValue::Traffic {
            service, answered, ..
        } = v
        else {
            panic!("traffic")
        };
        let within = service
            .and_then(|s| s.within)
            .expect("a count within the SLO");
        assert_eq!((within.latency_seconds, within.requests), (0.5, 196.0));
        assert_eq!(
            answered, None,
            "no answers counted where none were asked for"
        );
    }

    /// The answers as clients saw them, read at the bound at or below the SLO: those that
    /// ended are the good answers, the failed ones and those abandoned after the bound (not
    /// those abandoned sooner); those within are the good answers within the bound. Summed
    /// over the gateway pods, and carried on across a pod's restart like every counter.
    #[test]
    fn answers_are_read_as_clients_saw_them_at_the_bound_below_the_slo() {
        let series = |name: &str, le: &str, v: f64| {
            let labels = BTreeMap::from([
                ("service".to_string(), "m".to_string()),
                ("le".to_string(), le.to_string()),
            ]);
            (format!("{name}_bucket"), labels, v)
        };
        let pod = |good: [f64; 3], abandoned: [f64; 3], failed: f64| {
            let mut p = gateway_pod(100.0, 100.0, 12.0);
            for (le, (g, a)) in ["0.25", "0.5", "+Inf"]
                .iter()
                .zip(good.iter().zip(abandoned))
            {
                p.push(series(ANSWERED_HISTOGRAM, le, *g));
                p.push(series(ABANDONED_HISTOGRAM, le, a));
            }
            p.push((ANSWERS_FAILED.to_string(), BTreeMap::new(), failed));
            p
        };
        // 90 good answers (80 within 0.5 s), 3 failed, 5 abandoned of which 2 after 0.5 s.
        let a = pod([60.0, 80.0, 90.0], [1.0, 3.0, 5.0], 3.0);
        assert_eq!(bucket_at(&a, ANSWERED_HISTOGRAM, 0.7), Some(0.5));
        assert_eq!(answers_counted(&a, 0.5), [95.0, 80.0]);
        let mut memory = SourceMemory::default();
        let at = CountedAt {
            service: None,
            answers: Some(0.5),
        };
        let ok = vec![("a".to_string(), a.clone()), ("b".to_string(), a)];
        let v = traffic_value(&ok, &names(), Some(&SERVICE_COUNTERS), at, &mut memory);
        let SourceValue::Traffic { answered, .. } = v else {
            panic!("traffic")
        };
        let answered = answered.expect("answers counted");
        assert_eq!(
            (answered.latency_seconds, answered.requests, answered.within),
            (0.5, 190.0, 160.0)
        );
    }
}
