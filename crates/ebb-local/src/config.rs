//! The `ebb up` configuration: the services to run, each with its replica command, readiness
//! check, proxy address and Ebb policy. Errors name the field and why.

use ebb_core::policy::spec::PolicySpec;
use ebb_core::Policy;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use thiserror::Error;

/// A configuration problem, with the field it concerns.
#[derive(Debug, Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    /// Field path, e.g. `services[0].command`.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

fn err(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    services: Vec<RawService>,
    #[serde(default)]
    load: Option<LoadPlan>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawCommand {
    Argv(Vec<String>),
    Line(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawService {
    name: Option<String>,
    command: Option<RawCommand>,
    listen: Option<String>,
    #[serde(default)]
    readiness: Option<RawReadiness>,
    policy: Option<PolicySpec>,
    #[serde(default)]
    drain_timeout_seconds: Option<f64>,
    #[serde(default)]
    stop_grace_seconds: Option<f64>,
    #[serde(default)]
    queue: Option<RawQueue>,
    #[serde(default)]
    sync_period_ms: Option<u64>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawReadiness {
    path: Option<String>,
    timeout_seconds: Option<f64>,
    period_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawQueue {
    capacity: Option<usize>,
    timeout_seconds: Option<f64>,
}

/// A load to replay against the services once they are up (the demo uses it).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadPlan {
    /// The service to send to (its proxy address).
    pub service: String,
    /// The request path (default: the demo model's V2 infer endpoint).
    #[serde(default = "default_load_path")]
    pub path: String,
    /// Phases of constant request rate, in order.
    pub phases: Vec<LoadPhase>,
    /// Exit once the load is done and the replicas have settled back.
    #[serde(default)]
    pub exit_after: bool,
    /// Seconds to keep running after the last phase (to show the scale-down).
    #[serde(default)]
    pub settle_seconds: f64,
}

fn default_load_path() -> String {
    "/v2/models/iris/infer".into()
}

/// One phase of a load plan.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadPhase {
    /// Requests per second (open loop, Poisson).
    pub rate: f64,
    /// How long.
    pub seconds: f64,
}

/// A validated service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Name.
    pub name: String,
    /// Argument vector; `{port}` is replaced by the replica's port, `{ebb}` by this binary.
    pub command: Vec<String>,
    /// Where Ebb's proxy listens for this service.
    pub listen: SocketAddr,
    /// Readiness path (HTTP GET must answer 200).
    pub readiness_path: String,
    /// How long a replica may take to become ready before it is restarted.
    pub readiness_timeout: std::time::Duration,
    /// How often readiness is polled.
    pub readiness_period: std::time::Duration,
    /// The policy.
    pub policy: Policy,
    /// How long a scale-in waits for in-flight requests.
    pub drain_timeout: std::time::Duration,
    /// How long after SIGTERM before SIGKILL.
    pub stop_grace: std::time::Duration,
    /// Requests the proxy holds while no replica is ready.
    pub queue_capacity: usize,
    /// How long such a request waits before a 503.
    pub queue_timeout: std::time::Duration,
    /// Time between decisions.
    pub sync_period: std::time::Duration,
    /// Extra environment for replicas.
    pub env: BTreeMap<String, String>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The services.
    pub services: Vec<ServiceConfig>,
    /// An optional load to replay.
    pub load: Option<LoadPlan>,
}

fn secs(path: &str, v: Option<f64>, default: f64) -> Result<std::time::Duration, ConfigError> {
    let v = v.unwrap_or(default);
    if !v.is_finite() || v <= 0.0 {
        return Err(err(
            path,
            format!("must be a positive number of seconds, got {v}"),
        ));
    }
    Ok(std::time::Duration::from_secs_f64(v))
}

impl Config {
    /// Parses and validates a configuration document.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let de = serde_yaml::Deserializer::from_str(text);
        let raw: RawConfig = serde_path_to_error_free(de)?;
        if raw.services.is_empty() {
            return Err(err("services", "list at least one service"));
        }
        let mut services = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        let mut addrs = std::collections::BTreeSet::new();
        for (i, s) in raw.services.into_iter().enumerate() {
            let p = format!("services[{i}]");
            let name = s
                .name
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| err(format!("{p}.name"), "is required"))?;
            if !names.insert(name.clone()) {
                return Err(err(format!("{p}.name"), format!("'{name}' is used twice")));
            }
            let command = match s.command {
                None => {
                    return Err(err(
                        format!("{p}.command"),
                        "is required: the command that starts one replica, with {port}",
                    ))
                }
                Some(RawCommand::Argv(v)) => v,
                // A line starting with `sh -c` keeps its script whole; others split on spaces.
                Some(RawCommand::Line(l)) => match l.trim().strip_prefix("sh -c ") {
                    Some(script) => vec![
                        "sh".into(),
                        "-c".into(),
                        script.trim().trim_matches('"').to_string(),
                    ],
                    None => l.split_whitespace().map(str::to_string).collect(),
                },
            };
            if command.is_empty() {
                return Err(err(format!("{p}.command"), "is empty"));
            }
            if !command.iter().any(|a| a.contains("{port}")) {
                return Err(err(
                    format!("{p}.command"),
                    "must contain {port}, where the replica's port goes",
                ));
            }
            let listen_text = s
                .listen
                .ok_or_else(|| err(format!("{p}.listen"), "is required (e.g. 127.0.0.1:8080)"))?;
            let listen: SocketAddr = listen_text.parse().map_err(|_| {
                err(
                    format!("{p}.listen"),
                    format!("'{listen_text}' is not an address like 127.0.0.1:8080"),
                )
            })?;
            if !addrs.insert(listen) {
                return Err(err(
                    format!("{p}.listen"),
                    format!("{listen} is used by another service"),
                ));
            }
            let policy_spec = s.policy.ok_or_else(|| {
                err(
                    format!("{p}.policy"),
                    "is required (at least maxReplicas and a signal)",
                )
            })?;
            let policy = Policy::from_spec(&policy_spec).map_err(|e| {
                let first = e.errors.first();
                err(
                    format!(
                        "{p}.policy{}",
                        first.map(|f| format!(".{}", f.path)).unwrap_or_default()
                    ),
                    e.errors
                        .iter()
                        .map(|f| f.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
            let r = s.readiness.unwrap_or_default();
            let path = r.path.unwrap_or_else(|| "/v2/health/ready".into());
            if !path.starts_with('/') {
                return Err(err(
                    format!("{p}.readiness.path"),
                    format!("'{path}' must start with /"),
                ));
            }
            let q = s.queue.unwrap_or_default();
            services.push(ServiceConfig {
                name,
                command,
                listen,
                readiness_path: path,
                readiness_timeout: secs(
                    &format!("{p}.readiness.timeoutSeconds"),
                    r.timeout_seconds,
                    60.0,
                )?,
                readiness_period: std::time::Duration::from_millis(
                    r.period_ms.unwrap_or(100).max(10),
                ),
                policy,
                drain_timeout: secs(
                    &format!("{p}.drainTimeoutSeconds"),
                    s.drain_timeout_seconds,
                    30.0,
                )?,
                stop_grace: secs(&format!("{p}.stopGraceSeconds"), s.stop_grace_seconds, 5.0)?,
                queue_capacity: q.capacity.unwrap_or(1000),
                queue_timeout: secs(
                    &format!("{p}.queue.timeoutSeconds"),
                    q.timeout_seconds,
                    30.0,
                )?,
                sync_period: std::time::Duration::from_millis(
                    s.sync_period_ms.unwrap_or(1000).max(50),
                ),
                env: s.env,
            });
        }
        if let Some(load) = &raw.load {
            if !services.iter().any(|s| s.name == load.service) {
                return Err(err(
                    "load.service",
                    format!("no service named '{}'", load.service),
                ));
            }
            for (i, ph) in load.phases.iter().enumerate() {
                if !ph.rate.is_finite() || ph.rate < 0.0 || ph.rate > 20_000.0 {
                    return Err(err(
                        format!("load.phases[{i}].rate"),
                        format!("must be between 0 and 20000 requests/s, got {}", ph.rate),
                    ));
                }
                if !ph.seconds.is_finite() || ph.seconds <= 0.0 || ph.seconds > 3600.0 {
                    return Err(err(
                        format!("load.phases[{i}].seconds"),
                        format!("must be between 0 and 3600, got {}", ph.seconds),
                    ));
                }
            }
        }
        Ok(Config {
            services,
            load: raw.load,
        })
    }
}

/// serde_yaml with the failing field's path in the error.
fn serde_path_to_error_free<'de, T: Deserialize<'de>>(
    de: serde_yaml::Deserializer<'de>,
) -> Result<T, ConfigError> {
    T::deserialize(de).map_err(|e| {
        let msg = e.to_string();
        match msg.split_once(": ") {
            Some((path, rest)) if !path.contains(' ') => err(path, rest),
            _ => err("(document)", msg),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "services:\n- name: m\n  command: model --port {port}\n  listen: 127.0.0.1:8080\n  policy: {maxReplicas: 3, concurrency: {targetPerReplica: 2}}\n";

    #[test]
    fn valid_config() {
        let c = Config::from_yaml(OK).unwrap();
        assert_eq!(c.services[0].command, ["model", "--port", "{port}"]);
        assert_eq!(c.services[0].readiness_path, "/v2/health/ready");
    }

    #[test]
    fn errors_name_the_field() {
        let e = Config::from_yaml(
            "services:\n- name: m\n  listen: 127.0.0.1:1\n  policy: {maxReplicas: 1}\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "services[0].command");
        let e = Config::from_yaml(&OK.replace("{port}", "9000")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("services[0].command: must contain {port}"),
            "{e}"
        );
        let e = Config::from_yaml(&OK.replace("maxReplicas: 3", "maxReplicas: 0")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("services[0].policy.maxReplicas: maxReplicas: must be between 1"),
            "{e}"
        );
        let e = Config::from_yaml(&OK.replace("127.0.0.1:8080", "localhost")).unwrap_err();
        assert_eq!(e.path, "services[0].listen");
        let e = Config::from_yaml("services: []").unwrap_err();
        assert_eq!(e.path, "services");
    }
}
