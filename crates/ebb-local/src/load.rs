//! An open-loop load generator: requests are sent on a Poisson schedule whatever the
//! responses do (a closed loop would slow down with the server and hide overload). Bounded in
//! count and time, and only to loopback addresses.

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use rand::SeedableRng;
use rand_distr::{Distribution, Exp};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The example V2 inference request (two iris-like rows).
pub const V2_BODY: &str = r#"{"inputs":[{"name":"features","shape":[2,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2,6.7,3.0,5.2,2.3]}]}"#;

/// What a load run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Requests sent.
    pub sent: u64,
    /// Answered 200.
    pub ok: u64,
    /// Answered otherwise, or failed.
    pub errors: u64,
    /// Errors by status (0 = connection error), for the summary.
    pub by_status: Vec<(u16, u64)>,
    /// Wall seconds.
    pub seconds: f64,
    /// Latency percentiles of OK requests, seconds: p50, p90, p99, max.
    pub latency: [f64; 4],
}

impl LoadReport {
    /// A one-paragraph summary.
    pub fn summary(&self) -> String {
        let errs: Vec<String> = self
            .by_status
            .iter()
            .map(|(s, n)| {
                if *s == 0 {
                    format!("{n} connection errors")
                } else {
                    format!("{n} x {s}")
                }
            })
            .collect();
        format!(
            "{} requests in {:.1}s ({:.1}/s achieved): {} ok, {} errors{}; latency p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            self.sent,
            self.seconds,
            self.sent as f64 / self.seconds.max(1e-9),
            self.ok,
            self.errors,
            if errs.is_empty() { String::new() } else { format!(" ({})", errs.join(", ")) },
            self.latency[0] * 1e3,
            self.latency[1] * 1e3,
            self.latency[2] * 1e3,
            self.latency[3] * 1e3
        )
    }
}

/// Why a load run was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Loopback, or the benchmarking range of test namespaces, only.
    #[error("{0} is not a loopback address (nor in 198.18.0.0/15, the test networks' range): the load generator only targets this machine")]
    NotLoopback(SocketAddr),
    /// Too much.
    #[error("{0} requests exceed the bound of {1}")]
    TooMany(u64, u64),
}

/// Whether `ip` is one the load may go to: loopback, or RFC 2544's benchmarking range
/// (198.18.0.0/15), which the tests and benchmarks give to network namespaces they make on
/// this machine and which no network routes.
fn on_this_machine(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            v4.is_loopback() || v4.octets()[0] == 198 && v4.octets()[1] & 0xfe == 18
        }
        std::net::IpAddr::V6(v6) => v6.is_loopback(),
    }
}

/// The most requests one run may send.
pub const MAX_REQUESTS: u64 = 2_000_000;

/// Sends `POST url_path` to `target` at `rates[i]` requests per second during second `i`.
pub async fn run(
    target: SocketAddr,
    path: &str,
    body: &str,
    rates: &[f64],
    seed: u64,
) -> Result<LoadReport, LoadError> {
    if !on_this_machine(target.ip()) {
        return Err(LoadError::NotLoopback(target));
    }
    let expected: f64 = rates.iter().sum();
    if expected > MAX_REQUESTS as f64 {
        return Err(LoadError::TooMany(expected as u64, MAX_REQUESTS));
    }
    let client = ebb_proxy::upstream::upstream(Duration::from_secs(5));
    let hist = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
            .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!())),
    ));
    let ok = Arc::new(AtomicU64::new(0));
    let statuses = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, u64>::new()));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let body = Bytes::from(body.to_string());
    let url = format!("http://{target}{path}");
    let mut handles = Vec::new();
    let mut sent = 0u64;
    let mut t = 0.0f64;
    for (second, &rate) in rates.iter().enumerate() {
        let end = (second + 1) as f64;
        if rate <= 0.0 || !rate.is_finite() {
            t = end;
            continue;
        }
        let exp =
            Exp::new(rate).unwrap_or_else(|_| Exp::new(1.0).unwrap_or_else(|_| unreachable!()));
        loop {
            let next = t + exp.sample(&mut rng);
            if next >= end {
                t = end;
                break;
            }
            t = next;
            let due = start + Duration::from_secs_f64(t);
            tokio::time::sleep_until(due.into()).await;
            sent += 1;
            let req = hyper::Request::post(&url)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()));
            let (client, hist, ok, statuses) =
                (client.clone(), hist.clone(), ok.clone(), statuses.clone());
            handles.push(tokio::spawn(async move {
                let begun = Instant::now();
                let status = match req {
                    Ok(req) => {
                        match tokio::time::timeout(Duration::from_secs(60), client.request(req))
                            .await
                        {
                            Ok(Ok(resp)) => {
                                let s = resp.status().as_u16();
                                let _ = resp.into_body().collect().await;
                                s
                            }
                            _ => 0,
                        }
                    }
                    Err(_) => 0,
                };
                if status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut h) = hist.lock() {
                        let _ = h.record((begun.elapsed().as_micros() as u64).max(1));
                    }
                } else if let Ok(mut m) = statuses.lock() {
                    *m.entry(status).or_default() += 1;
                }
            }));
        }
    }
    for h in handles {
        let _ = h.await;
    }
    let h = hist
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()));
    let q = |x: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(x) as f64 / 1e6
        }
    };
    let ok = ok.load(Ordering::Relaxed);
    Ok(LoadReport {
        sent,
        ok,
        errors: sent - ok,
        by_status: statuses
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default(),
        seconds: start.elapsed().as_secs_f64(),
        latency: [
            q(0.5),
            q(0.9),
            q(0.99),
            if h.is_empty() {
                0.0
            } else {
                h.max() as f64 / 1e6
            },
        ],
    })
}

/// Rates for a list of (rate, seconds) phases, one entry per second.
pub fn phases_to_rates(phases: &[(f64, f64)]) -> Vec<f64> {
    let mut out = Vec::new();
    for &(rate, seconds) in phases {
        out.extend(std::iter::repeat_n(rate, seconds.round() as usize));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::on_this_machine;

    #[test]
    fn load_goes_to_loopback_and_the_test_networks_only() {
        for ok in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "198.18.0.2",
            "198.19.255.254",
        ] {
            assert!(on_this_machine(ok.parse().unwrap()), "{ok}");
        }
        for refused in ["198.17.255.255", "198.20.0.1", "10.0.0.1", "8.8.8.8", "::2"] {
            assert!(!on_this_machine(refused.parse().unwrap()), "{refused}");
        }
    }
}
