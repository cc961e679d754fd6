//! The proxy's limits, timeouts, retry budget and health checking, as `ebb up` configures
//! them (`services[i].proxy` and `services[i].health`) and `ebb gateway` takes them (`--proxy`,
//! `--health`), with defaults that are safe in front of a model server: what Envoy and HAProxy
//! users expect without asking. Every error names the field it concerns.

use crate::upstream::UpstreamProtocol;
use serde::Deserialize;
use std::time::Duration;
use thiserror::Error;

/// A setting that is wrong, with the path of its field.
#[derive(Debug, Error)]
#[error("{path}: {reason}")]
pub struct FieldError {
    /// Field path, e.g. `services[0].proxy.maxBodyBytes`.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl FieldError {
    /// A problem with the field at `path`.
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// The longest duration a setting takes: a day. Anything longer is a mistake, and far
/// longer ones overflow a `Duration` or an `Instant` deadline.
pub const MAX_SECONDS: f64 = 86_400.0;

/// A duration setting in seconds (`default` when absent): positive, finite, at most a day.
pub fn secs(path: &str, v: Option<f64>, default: f64) -> Result<Duration, FieldError> {
    let v = v.unwrap_or(default);
    if !v.is_finite() || v <= 0.0 || v > MAX_SECONDS {
        return Err(FieldError::new(
            path,
            format!("must be a number of seconds in (0, {MAX_SECONDS}], got {v}"),
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

/// A period setting in milliseconds (`default` when absent), within `range`.
pub fn millis(
    path: &str,
    v: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, FieldError> {
    let v = v.unwrap_or(default);
    if !range.contains(&v) {
        return Err(FieldError::new(
            path,
            format!(
                "must be between {} and {} ms, got {v}",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(Duration::from_millis(v))
}

/// Paths never forwarded from the service port: the V2 model repository extension loads and
/// unloads models (Triton, MLServer, KServe), which no client of the service should reach.
pub const ALWAYS_DENIED: &[&str] = &["/v2/repository"];

/// A `proxy:` block as written, before [`ProxySettings::parse`] checks it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawProxy {
    max_body_bytes: Option<u64>,
    retry_body_bytes: Option<u64>,
    body_timeout_seconds: Option<f64>,
    header_timeout_seconds: Option<f64>,
    idle_timeout_seconds: Option<f64>,
    connect_timeout_seconds: Option<f64>,
    upstream_timeout_seconds: Option<f64>,
    upstream_idle_seconds: Option<f64>,
    max_connections: Option<usize>,
    #[serde(default)]
    deny_paths: Vec<String>,
    retry_budget_percent: Option<f64>,
    max_attempts: Option<u32>,
    #[serde(default)]
    retry_non_idempotent: bool,
    threads: Option<usize>,
    upstream_protocol: Option<String>,
}

/// A `health:` block as written, before [`HealthSettings::parse`] checks it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawHealth {
    probe_interval_ms: Option<u64>,
    probe_timeout_ms: Option<u64>,
    unhealthy_probes: Option<u32>,
    consecutive_failures: Option<u32>,
    base_ejection_seconds: Option<f64>,
    max_ejection_seconds: Option<f64>,
    max_ejected_percent: Option<f64>,
    restart_after_seconds: Option<f64>,
}

/// What the proxy accepts and how long it waits.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Largest request body forwarded; a larger one is answered 413 without reading it all.
    pub max_body_bytes: u64,
    /// Request bodies up to this size are held whole, so a request whose replica failed can
    /// go to another; larger ones stream through as the client sends them (Envoy's retry
    /// buffer), and are sent again only if none of their bytes had left.
    pub retry_body_bytes: u64,
    /// The longest a client may pause while sending a request body (408).
    pub body_timeout: Duration,
    /// A client must send a request's headers within this (slowloris).
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this.
    pub idle_timeout: Duration,
    /// Connecting to a replica gives up after this (the replica is then a gateway failure).
    pub connect_timeout: Duration,
    /// A replica must send an answer's head within this, or the client gets 504; an answer
    /// whose body then pauses for as long is cut (a stream may run for longer in all).
    pub upstream_timeout: Duration,
    /// A connection to a replica left idle this long is closed rather than used again: keep
    /// it below the replicas' keep-alive timeout, or a request can go out on a connection the
    /// replica is closing (and a POST that may have arrived is not sent again).
    pub upstream_idle: Duration,
    /// Client connections held at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Path prefixes answered 403 instead of forwarded (besides [`ALWAYS_DENIED`]).
    pub deny_paths: Vec<String>,
    /// Retries allowed, as a share of recent requests (a retry storm cannot form).
    pub retry_budget: f64,
    /// Tries per request at most, the first included.
    pub max_attempts: u32,
    /// Also retry POST and PATCH requests that may have reached a replica that then failed
    /// (for inference endpoints without side effects: a crashed replica's requests are sent
    /// again). Off by default: HTTP does not promise that sending them twice is harmless.
    pub retry_non_idempotent: bool,
    /// Proxy threads, each with its own event loop, listening socket and replica connections
    /// (a request never changes threads, as in HAProxy and nginx).
    pub threads: usize,
    /// How the replicas are spoken to: HTTP/1.1, or HTTP/2 with prior knowledge (`h2c`) for
    /// gRPC servers. Clients may speak either to the proxy whatever this says.
    pub upstream_protocol: UpstreamProtocol,
}

/// How replicas are checked and taken out of rotation.
#[derive(Debug, Clone)]
pub struct HealthSettings {
    /// How often every ready replica's readiness path is probed.
    pub probe_interval: Duration,
    /// A probe not answered within this failed.
    pub probe_timeout: Duration,
    /// Consecutive failed probes that take a replica out of rotation.
    pub unhealthy_probes: u32,
    /// Consecutive failed requests (5xx, reset, refused, timeout) that eject a replica.
    pub consecutive_failures: u32,
    /// The first ejection's length; each further one doubles it.
    pub base_ejection: Duration,
    /// The longest ejection.
    pub max_ejection: Duration,
    /// Passive ejection never leaves fewer than this share of the replicas routable.
    pub max_ejected_share: f64,
    /// A replica unhealthy (ejected or failing probes) for this long is restarted.
    pub restart_after: Duration,
}

fn percent(path: &str, v: Option<f64>, default: f64, max: f64) -> Result<f64, FieldError> {
    let v = v.unwrap_or(default);
    if !v.is_finite() || !(0.0..=max).contains(&v) {
        return Err(FieldError::new(
            path,
            format!("must be a percentage in [0, {max}], got {v}"),
        ));
    }
    Ok(v / 100.0)
}

/// The file descriptors this process may open (the soft limit).
fn open_file_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1024)
}

/// Each client connection may need a replica connection too, and the runtime holds some of
/// its own: half the descriptor limit, less a reserve, keeps accept from running out.
fn default_max_connections() -> usize {
    let half = open_file_limit() / 2;
    half.saturating_sub(64).clamp(16, 10_000) as usize
}

/// `http1` (the default) or `h2c`.
fn upstream_protocol(path: &str, v: Option<&str>) -> Result<UpstreamProtocol, FieldError> {
    match v {
        None | Some("http1") => Ok(UpstreamProtocol::Http1),
        Some("h2c") => Ok(UpstreamProtocol::H2c),
        Some(other) => Err(FieldError::new(
            path,
            format!("must be http1 or h2c (HTTP/2 with prior knowledge, for gRPC), got '{other}'"),
        )),
    }
}

/// One proxy thread per core unless said otherwise.
fn threads(path: &str, v: Option<usize>) -> Result<usize, FieldError> {
    let v = v.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if !(1..=256).contains(&v) {
        return Err(FieldError::new(
            path,
            format!("must be between 1 and 256, got {v}"),
        ));
    }
    Ok(v)
}

impl ProxySettings {
    /// The fields of a `proxy:` block given as YAML text (`{retryNonIdempotent: true}`), checked
    /// as `ebb up` checks them; errors name the field under `p`.
    pub fn from_yaml(p: &str, text: &str) -> Result<ProxySettings, FieldError> {
        let raw: RawProxy =
            serde_yaml::from_str(text).map_err(|e| FieldError::new(p, e.to_string()))?;
        ProxySettings::parse(p, Some(raw))
    }

    /// Validates `services[i].proxy` (`p` is its path).
    pub fn parse(p: &str, raw: Option<RawProxy>) -> Result<ProxySettings, FieldError> {
        let r = raw.unwrap_or_default();
        let max_body_bytes = r.max_body_bytes.unwrap_or(64 << 20);
        if max_body_bytes == 0 {
            return Err(FieldError::new(
                format!("{p}.maxBodyBytes"),
                "must be above 0",
            ));
        }
        let retry_body_bytes = r.retry_body_bytes.unwrap_or(1 << 20);
        if retry_body_bytes > max_body_bytes {
            return Err(FieldError::new(
                format!("{p}.retryBodyBytes"),
                format!("must be at most maxBodyBytes ({max_body_bytes}), got {retry_body_bytes}"),
            ));
        }
        let max_connections = r.max_connections.unwrap_or_else(default_max_connections);
        if max_connections == 0 {
            return Err(FieldError::new(
                format!("{p}.maxConnections"),
                "must be at least 1",
            ));
        }
        for (i, d) in r.deny_paths.iter().enumerate() {
            if !d.starts_with('/') {
                return Err(FieldError::new(
                    format!("{p}.denyPaths[{i}]"),
                    format!("'{d}' must start with /"),
                ));
            }
        }
        let max_attempts = r.max_attempts.unwrap_or(3);
        if !(1..=10).contains(&max_attempts) {
            return Err(FieldError::new(
                format!("{p}.maxAttempts"),
                format!("must be between 1 and 10, got {max_attempts}"),
            ));
        }
        Ok(ProxySettings {
            max_body_bytes,
            retry_body_bytes,
            body_timeout: secs(
                &format!("{p}.bodyTimeoutSeconds"),
                r.body_timeout_seconds,
                10.0,
            )?,
            header_timeout: secs(
                &format!("{p}.headerTimeoutSeconds"),
                r.header_timeout_seconds,
                10.0,
            )?,
            idle_timeout: secs(
                &format!("{p}.idleTimeoutSeconds"),
                r.idle_timeout_seconds,
                60.0,
            )?,
            connect_timeout: secs(
                &format!("{p}.connectTimeoutSeconds"),
                r.connect_timeout_seconds,
                2.0,
            )?,
            upstream_timeout: secs(
                &format!("{p}.upstreamTimeoutSeconds"),
                r.upstream_timeout_seconds,
                60.0,
            )?,
            upstream_idle: secs(
                &format!("{p}.upstreamIdleSeconds"),
                r.upstream_idle_seconds,
                crate::upstream::DEFAULT_IDLE_LIMIT.as_secs_f64(),
            )?,
            max_connections,
            deny_paths: r.deny_paths,
            retry_budget: percent(
                &format!("{p}.retryBudgetPercent"),
                r.retry_budget_percent,
                20.0,
                100.0,
            )?,
            max_attempts,
            retry_non_idempotent: r.retry_non_idempotent,
            threads: threads(&format!("{p}.threads"), r.threads)?,
            upstream_protocol: upstream_protocol(
                &format!("{p}.upstreamProtocol"),
                r.upstream_protocol.as_deref(),
            )?,
        })
    }

    /// Whether `path` is one the service port must not forward.
    pub fn denies(&self, path: &str) -> bool {
        let under = |prefix: &str| {
            path.strip_prefix(prefix).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/')
            })
        };
        ALWAYS_DENIED.iter().any(|d| under(d)) || self.deny_paths.iter().any(|d| under(d))
    }
}

impl HealthSettings {
    /// The fields of a `health:` block given as YAML text, checked as `ebb up` checks them.
    pub fn from_yaml(p: &str, text: &str) -> Result<HealthSettings, FieldError> {
        let raw: RawHealth =
            serde_yaml::from_str(text).map_err(|e| FieldError::new(p, e.to_string()))?;
        HealthSettings::parse(p, Some(raw))
    }

    /// Validates `services[i].health` (`p` is its path).
    pub fn parse(p: &str, raw: Option<RawHealth>) -> Result<HealthSettings, FieldError> {
        let r = raw.unwrap_or_default();
        let ms = |field: &str, v: Option<u64>, default: u64| {
            millis(&format!("{p}.{field}"), v, default, 10..=600_000)
        };
        let count = |field: &str, v: Option<u32>, default: u32| {
            let v = v.unwrap_or(default);
            if !(1..=1000).contains(&v) {
                return Err(FieldError::new(
                    format!("{p}.{field}"),
                    format!("must be between 1 and 1000, got {v}"),
                ));
            }
            Ok(v)
        };
        let base_ejection = secs(
            &format!("{p}.baseEjectionSeconds"),
            r.base_ejection_seconds,
            2.0,
        )?;
        let max_ejection = secs(
            &format!("{p}.maxEjectionSeconds"),
            r.max_ejection_seconds,
            60.0,
        )?;
        if max_ejection < base_ejection {
            return Err(FieldError::new(
                format!("{p}.maxEjectionSeconds"),
                "must be at least baseEjectionSeconds",
            ));
        }
        Ok(HealthSettings {
            probe_interval: ms("probeIntervalMs", r.probe_interval_ms, 1000)?,
            probe_timeout: ms("probeTimeoutMs", r.probe_timeout_ms, 1000)?,
            unhealthy_probes: count("unhealthyProbes", r.unhealthy_probes, 2)?,
            consecutive_failures: count("consecutiveFailures", r.consecutive_failures, 5)?,
            base_ejection,
            max_ejection,
            max_ejected_share: percent(
                &format!("{p}.maxEjectedPercent"),
                r.max_ejected_percent,
                50.0,
                100.0,
            )?,
            restart_after: secs(
                &format!("{p}.restartAfterSeconds"),
                r.restart_after_seconds,
                30.0,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_list_matches_whole_segments() {
        let mut s = ProxySettings::parse("p", None).unwrap();
        s.deny_paths.push("/admin".into());
        assert!(s.denies("/v2/repository/models/iris/unload"));
        assert!(s.denies("/v2/repository"));
        assert!(s.denies("/admin/x"));
        assert!(!s.denies("/administrator"));
        assert!(!s.denies("/v2/models/iris/infer"));
    }

    #[test]
    fn bad_values_name_the_field() {
        let raw: RawProxy = serde_yaml::from_str("maxAttempts: 0").unwrap();
        let e = ProxySettings::parse("services[0].proxy", Some(raw)).unwrap_err();
        assert_eq!(e.path, "services[0].proxy.maxAttempts");
        let raw: RawHealth = serde_yaml::from_str("maxEjectedPercent: 120").unwrap();
        let e = HealthSettings::parse("services[0].health", Some(raw)).unwrap_err();
        assert_eq!(e.path, "services[0].health.maxEjectedPercent");
        let raw: RawProxy = serde_yaml::from_str("idleTimeoutSeconds: -1").unwrap();
        let e = ProxySettings::parse("services[0].proxy", Some(raw)).unwrap_err();
        assert_eq!(e.path, "services[0].proxy.idleTimeoutSeconds");
        let e = ProxySettings::from_yaml("--proxy", "{upstreamIdleSeconds: 0}").unwrap_err();
        assert_eq!(e.path, "--proxy.upstreamIdleSeconds");
        let s = ProxySettings::from_yaml("--proxy", "{upstreamIdleSeconds: 1.5}").unwrap();
        assert_eq!(s.upstream_idle, Duration::from_millis(1500));
        let e = ProxySettings::from_yaml("--proxy", "{upstreamProtocol: h3}").unwrap_err();
        assert_eq!(e.path, "--proxy.upstreamProtocol");
        assert!(e.to_string().contains("must be http1 or h2c"), "{e}");
    }

    #[test]
    fn replicas_are_spoken_to_in_http1_unless_h2c_is_asked_for() {
        let default = ProxySettings::parse("p", None).unwrap();
        assert_eq!(default.upstream_protocol, UpstreamProtocol::Http1);
        let h2c = ProxySettings::from_yaml("p", "{upstreamProtocol: h2c}").unwrap();
        assert_eq!(h2c.upstream_protocol, UpstreamProtocol::H2c);
    }
}
