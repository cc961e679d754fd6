//! The `ebb up` configuration: the services to run, each with its replica command, readiness
//! check, proxy address and Ebb policy. Errors name the field and why.

use ebb_core::policy::spec::PolicySpec;
use ebb_core::Policy;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;

pub use ebb_proxy::settings::{HealthSettings, ProxySettings};

/// A configuration problem, with the field it concerns (the proxy's settings and the rest of
/// a service's share one error type).
pub use ebb_proxy::settings::FieldError as ConfigError;
use ebb_proxy::settings::{millis, secs};

/// The longest path a Unix socket address holds (`sun_path` less its terminating zero).
pub const MAX_SOCKET_PATH: usize = 107;

/// Where the socket goes unless the configuration says: in `$XDG_RUNTIME_DIR` (private to the
/// user by the XDG rules), else in a directory of the user's own under the temporary directory;
/// named after the admin port, so that two `ebb up`s that differ there (as they must) do not
/// meet here.
pub fn default_control_socket(admin_port: u16) -> std::path::PathBuf {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => std::path::PathBuf::from(dir).join("ebb"),
        None => {
            let uid = std::fs::metadata("/proc/self")
                .map_or(0, |m| std::os::unix::fs::MetadataExt::uid(&m));
            std::env::temp_dir().join(format!("ebb-{uid}"))
        }
    };
    dir.join(format!("up-{admin_port}.sock"))
}

fn err(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(path, reason)
}

/// Where Ebb's own endpoints (`/metrics`, `/ebb/status`) listen unless `admin` says otherwise:
/// loopback, apart from every service port (Envoy's admin port).
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    services: Vec<RawService>,
    #[serde(default)]
    load: Option<LoadPlan>,
    #[serde(default)]
    admin: Option<String>,
    #[serde(default)]
    control_socket: Option<String>,
    #[serde(default)]
    pools: Vec<RawPools>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPools {
    prefill: Option<String>,
    decode: Option<String>,
    #[serde(default)]
    ratio: Option<ebb_core::pools::RatioSpec>,
}

/// Two services that are the prefill and decode pools of one disaggregated server, decided
/// together by one `ebb_core::pools::PoolScaler` (each by its own policy, then the guard).
#[derive(Debug, Clone, PartialEq)]
pub struct PoolGroup {
    /// The prefill pool's service.
    pub prefill: String,
    /// The decode pool's service.
    pub decode: String,
    /// Decode replicas per prefill replica.
    pub ratio: ebb_core::pools::Ratio,
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
    #[serde(default)]
    models: Option<Vec<RawModel>>,
    #[serde(default)]
    server: Option<RawServer>,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    proxy: Option<ebb_proxy::settings::RawProxy>,
    #[serde(default)]
    health: Option<ebb_proxy::settings::RawHealth>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawModel {
    name: Option<String>,
    memory_mi_b: Option<u64>,
    policy: Option<PolicySpec>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawServer {
    memory_mi_b: Option<u64>,
    #[serde(default)]
    headroom: Option<f64>,
    #[serde(default)]
    min_replicas: Option<u32>,
    max_replicas: Option<u32>,
    #[serde(default)]
    max_models: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawReadiness {
    path: Option<String>,
    #[serde(default)]
    grpc: bool,
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
    /// The request body (default: the demo model's V2 request; an OpenAI completion for a
    /// language-model service).
    #[serde(default = "default_load_body")]
    pub body: String,
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

fn default_load_body() -> String {
    crate::load::V2_BODY.into()
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

/// How a replica is asked whether it is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// An HTTP/1.1 GET of this path must answer 2xx.
    HttpGet(String),
    /// The gRPC health check (`grpc.health.v1.Health/Check`, over h2c) must answer SERVING:
    /// for replicas that serve only gRPC.
    GrpcHealth,
}

impl std::fmt::Display for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Readiness::HttpGet(path) => write!(f, "{path}"),
            Readiness::GrpcHealth => write!(f, "the gRPC health check"),
        }
    }
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
    /// How a replica is asked whether it is ready.
    pub readiness: Readiness,
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
    /// Multi-model serving: the models the replicas (servers) host, each scaled by its own
    /// policy and placed by `ebb_core::placement`; `None` for a single-model service.
    pub models: Option<MultiModel>,
    /// The service port may listen beyond loopback (said explicitly, as it exposes the model).
    pub public: bool,
    /// The proxy's limits, timeouts and retries.
    pub proxy: ProxySettings,
    /// How replicas are probed and ejected.
    pub health: HealthSettings,
}

/// A multi-model service: models packed onto server replicas by memory.
#[derive(Debug, Clone)]
pub struct MultiModel {
    /// The models, each with its policy and memory.
    pub models: Vec<ModelConfig>,
    /// The server replicas' limits (kind = the service name).
    pub server: ebb_core::placement::ServerKind,
}

/// One model of a multi-model service.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// Name (the `{name}` of `/v2/models/{name}/...`).
    pub name: String,
    /// Memory one replica needs, MiB.
    pub memory_mib: u64,
    /// Its own policy.
    pub policy: Policy,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The services.
    pub services: Vec<ServiceConfig>,
    /// An optional load to replay.
    pub load: Option<LoadPlan>,
    /// Where `/metrics` and `/ebb/status` are served.
    pub admin: SocketAddr,
    /// The control socket (`ebb ctl`): a Unix socket in a directory private to the user.
    pub control_socket: std::path::PathBuf,
    /// Services paired as the prefill and decode pools of a disaggregated server.
    pub pools: Vec<PoolGroup>,
}

/// The longest period setting: an hour.
const MAX_PERIOD_MS: u64 = 3_600_000;

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
            if !listen.ip().is_loopback() && !s.public {
                return Err(err(
                    format!("{p}.listen"),
                    format!("{listen} is reachable beyond this machine; say public: true to serve the model there"),
                ));
            }
            if !addrs.insert(listen) {
                return Err(err(
                    format!("{p}.listen"),
                    format!("{listen} is used by another service"),
                ));
            }
            let models = match s.models {
                None => {
                    if s.server.is_some() {
                        return Err(err(
                            format!("{p}.server"),
                            "only a service with models has a server block",
                        ));
                    }
                    None
                }
                Some(raw) => Some(multi_model(&p, &name, raw, s.server)?),
            };
            let policy = match (&models, s.policy) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        format!("{p}.policy"),
                        "a service with models has no policy of its own: each model has one, and the servers follow the placement",
                    ))
                }
                (Some(m), None) => server_policy(&m.server),
                (None, None) => {
                    return Err(err(
                        format!("{p}.policy"),
                        "is required (at least maxReplicas and a signal)",
                    ))
                }
                (None, Some(spec)) => parse_policy(&format!("{p}.policy"), &spec)?,
            };
            let r = s.readiness.unwrap_or_default();
            let readiness = match (r.path, r.grpc) {
                (Some(_), true) => {
                    return Err(err(
                        format!("{p}.readiness"),
                        "give path or grpc: true, not both",
                    ))
                }
                (None, true) => Readiness::GrpcHealth,
                (path, false) => {
                    let path = path.unwrap_or_else(|| "/v2/health/ready".into());
                    if !path.starts_with('/') {
                        return Err(err(
                            format!("{p}.readiness.path"),
                            format!("'{path}' must start with /"),
                        ));
                    }
                    Readiness::HttpGet(path)
                }
            };
            let q = s.queue.unwrap_or_default();
            let sync_default_ms = default_sync_period_ms(&policy);
            services.push(ServiceConfig {
                name,
                command,
                listen,
                readiness,
                readiness_timeout: secs(
                    &format!("{p}.readiness.timeoutSeconds"),
                    r.timeout_seconds,
                    60.0,
                )?,
                readiness_period: millis(
                    &format!("{p}.readiness.periodMs"),
                    r.period_ms,
                    100,
                    10..=MAX_PERIOD_MS,
                )?,
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
                sync_period: millis(
                    &format!("{p}.syncPeriodMs"),
                    s.sync_period_ms,
                    sync_default_ms,
                    50..=MAX_PERIOD_MS,
                )?,
                env: s.env,
                models,
                public: s.public,
                proxy: ProxySettings::parse(&format!("{p}.proxy"), s.proxy)?,
                health: HealthSettings::parse(&format!("{p}.health"), s.health)?,
            });
        }
        if let Some(load) = &raw.load {
            if !services.iter().any(|s| s.name == load.service) {
                return Err(err(
                    "load.service",
                    format!("no service named '{}'", load.service),
                ));
            }
            if !load.path.starts_with('/') {
                return Err(err(
                    "load.path",
                    format!("'{}' must start with /", load.path),
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
            let total: f64 = load.phases.iter().map(|ph| ph.rate * ph.seconds).sum();
            if total > crate::load::MAX_REQUESTS as f64 {
                return Err(err(
                    "load.phases",
                    format!(
                        "about {total:.0} requests in all; the load generator sends at most {}",
                        crate::load::MAX_REQUESTS
                    ),
                ));
            }
        }
        let admin_text = raw.admin.unwrap_or_else(|| DEFAULT_ADMIN.to_string());
        let admin: SocketAddr = admin_text.parse().map_err(|_| {
            err(
                "admin",
                format!("'{admin_text}' is not an address like {DEFAULT_ADMIN}"),
            )
        })?;
        if services
            .iter()
            .any(|s| s.listen == admin && admin.port() != 0)
        {
            return Err(err(
                "admin",
                format!("{admin} is a service's listen address"),
            ));
        }
        if !admin.ip().is_loopback() {
            return Err(err(
                "admin",
                format!("{admin} is not loopback: the admin endpoints show replicas' ports and processes, so they stay on this machine"),
            ));
        }
        let control_socket = raw.control_socket.map_or_else(
            || default_control_socket(admin.port()),
            std::path::PathBuf::from,
        );
        if control_socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(err(
                "controlSocket",
                format!(
                    "'{}' is longer than the {} bytes a Unix socket path holds",
                    control_socket.display(),
                    MAX_SOCKET_PATH
                ),
            ));
        }
        let pools = pool_groups(raw.pools, &services)?;
        Ok(Config {
            services,
            load: raw.load,
            admin,
            control_socket,
            pools,
        })
    }

    /// The pool group a service belongs to, if any.
    pub fn pool_of(&self, service: &str) -> Option<&PoolGroup> {
        self.pools
            .iter()
            .find(|g| g.prefill == service || g.decode == service)
    }
}

/// The `pools` list: each names two single-model services of this file, each service in one
/// group at most.
fn pool_groups(
    raw: Vec<RawPools>,
    services: &[ServiceConfig],
) -> Result<Vec<PoolGroup>, ConfigError> {
    let mut grouped = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (i, g) in raw.into_iter().enumerate() {
        let p = format!("pools[{i}]");
        let mut name = |role: &str, value: Option<String>| -> Result<String, ConfigError> {
            let path = format!("{p}.{role}");
            let name = value.ok_or_else(|| err(&path, "is required: a service's name"))?;
            let service = services
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| err(&path, format!("no service named '{name}'")))?;
            if service.models.is_some() {
                return Err(err(
                    &path,
                    format!("'{name}' hosts several models: a pool is a single-model service"),
                ));
            }
            if !grouped.insert(name.clone()) {
                return Err(err(&path, format!("'{name}' is already a pool")));
            }
            Ok(name)
        };
        let prefill = name("prefill", g.prefill)?;
        let decode = name("decode", g.decode)?;
        let ratio = ebb_core::pools::Ratio::from_spec(g.ratio.as_ref(), &format!("{p}.ratio"))
            .map_err(|e| match e.into_iter().next() {
                Some(f) => err(f.path, f.reason),
                None => err(format!("{p}.ratio"), "is not a ratio"),
            })?;
        out.push(PoolGroup {
            prefill,
            decode,
            ratio,
        });
    }
    Ok(out)
}

/// Milliseconds between decisions unless `syncPeriodMs` says. The proxy's counters cost
/// nothing to read, so decisions come four times a second: at one a second, the first second
/// of a step arrives before any decision sees it (the SLO example reached 97.7% of its 99%
/// within 200 ms at 1000 ms, 99.1% at 250 ms, for fewer replica-seconds). A policy that reads
/// an engine scrapes every replica's `/metrics` at each decision, so it keeps one a second.
fn default_sync_period_ms(policy: &Policy) -> u64 {
    if policy.engine.is_some() {
        1000
    } else {
        250
    }
}

/// The service's policy, validated; one problem is named by its full path, several by the
/// policy's path and then each one's path within it.
fn parse_policy(path: &str, spec: &PolicySpec) -> Result<Policy, ConfigError> {
    Policy::from_spec(spec).map_err(|e| match e.errors.as_slice() {
        [one] if !one.path.is_empty() => err(format!("{path}.{}", one.path), one.reason.clone()),
        many => err(
            path,
            many.iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    })
}

/// The bounds of a multi-model service's servers as a policy, for the banner and summary.
fn server_policy(server: &ebb_core::placement::ServerKind) -> Policy {
    let yaml = format!(
        "minReplicas: {}\nmaxReplicas: {}\nconcurrency: {{targetPerReplica: 1}}\n",
        server.min_replicas.max(1),
        server.max_replicas.max(1)
    );
    Policy::from_yaml(&yaml).unwrap_or_else(|e| panic!("server bounds are valid: {e}"))
}

fn multi_model(
    p: &str,
    service: &str,
    raw: Vec<RawModel>,
    server: Option<RawServer>,
) -> Result<MultiModel, ConfigError> {
    if raw.is_empty() {
        return Err(err(format!("{p}.models"), "list at least one model"));
    }
    let server = server.ok_or_else(|| {
        err(
            format!("{p}.server"),
            "is required with models: memoryMiB and maxReplicas of a server replica",
        )
    })?;
    let capacity = server.memory_mi_b.filter(|m| *m > 0).ok_or_else(|| {
        err(
            format!("{p}.server.memoryMiB"),
            "is required and must be above 0",
        )
    })?;
    let headroom = server.headroom.unwrap_or(0.0);
    if !(0.0..0.99).contains(&headroom) {
        return Err(err(
            format!("{p}.server.headroom"),
            format!("must be in [0, 0.99), got {headroom}"),
        ));
    }
    let max_replicas = server.max_replicas.filter(|m| *m > 0).ok_or_else(|| {
        err(
            format!("{p}.server.maxReplicas"),
            "is required and must be at least 1",
        )
    })?;
    let min_replicas = server.min_replicas.unwrap_or(1);
    if min_replicas > max_replicas {
        return Err(err(
            format!("{p}.server.minReplicas"),
            format!("must be at most maxReplicas ({max_replicas}), got {min_replicas}"),
        ));
    }
    let kind = ebb_core::placement::ServerKind {
        kind: service.to_string(),
        capacity_mib: capacity,
        max_models: server.max_models,
        min_replicas,
        max_replicas,
        headroom,
    };
    let usable = ebb_core::placement::usable_mib(capacity, headroom);
    let mut names = std::collections::BTreeSet::new();
    let mut models = Vec::new();
    for (j, m) in raw.into_iter().enumerate() {
        let mp = format!("{p}.models[{j}]");
        let name = m
            .name
            .filter(|n| !n.trim().is_empty() && !n.contains('/'))
            .ok_or_else(|| err(format!("{mp}.name"), "is required (no '/')"))?;
        if !names.insert(name.clone()) {
            return Err(err(format!("{mp}.name"), format!("'{name}' is used twice")));
        }
        let memory = m
            .memory_mi_b
            .filter(|v| *v > 0)
            .ok_or_else(|| err(format!("{mp}.memoryMiB"), "is required and must be above 0"))?;
        if memory > usable {
            return Err(err(
                format!("{mp}.memoryMiB"),
                format!("{memory} MiB does not fit a server's usable {usable} MiB"),
            ));
        }
        let spec = m
            .policy
            .ok_or_else(|| err(format!("{mp}.policy"), "is required"))?;
        models.push(ModelConfig {
            name,
            memory_mib: memory,
            policy: parse_policy(&format!("{mp}.policy"), &spec)?,
        });
    }
    Ok(MultiModel {
        models,
        server: kind,
    })
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
    use std::time::Duration;

    const OK: &str = "services:\n- name: m\n  command: model --port {port}\n  listen: 127.0.0.1:8080\n  policy: {maxReplicas: 3, concurrency: {targetPerReplica: 2}}\n";

    #[test]
    fn valid_config() {
        let c = Config::from_yaml(OK).unwrap();
        assert_eq!(c.services[0].command, ["model", "--port", "{port}"]);
        assert_eq!(
            c.services[0].readiness,
            Readiness::HttpGet("/v2/health/ready".into())
        );
    }

    #[test]
    fn decisions_come_four_times_a_second_unless_an_engine_is_scraped() {
        let period = |yaml: &str| Config::from_yaml(yaml).unwrap().services[0].sync_period;
        assert_eq!(period(OK), Duration::from_millis(250));
        let engine = OK.replace(
            "concurrency: {targetPerReplica: 2}",
            "engine: {kind: vllm, waitingPerReplica: 4}",
        );
        assert_eq!(period(&engine), Duration::from_secs(1));
        let stated = format!("{OK}  syncPeriodMs: 100\n");
        assert_eq!(period(&stated), Duration::from_millis(100));
    }

    #[test]
    fn readiness_is_a_path_or_the_grpc_health_check_not_both() {
        let service = |readiness: &str| {
            format!("services:\n- name: m\n  command: [server, \"{{port}}\"]\n  listen: 127.0.0.1:9\n  readiness: {readiness}\n  policy: {{maxReplicas: 1, concurrency: {{targetPerReplica: 1}}}}\n")
        };
        let c = Config::from_yaml(&service("{grpc: true}")).unwrap();
        assert_eq!(c.services[0].readiness, Readiness::GrpcHealth);
        assert_eq!(c.services[0].readiness.to_string(), "the gRPC health check");
        let e = Config::from_yaml(&service("{grpc: true, path: /ready}")).unwrap_err();
        assert_eq!(e.path, "services[0].readiness");
        assert!(e.to_string().contains("not both"), "{e}");
    }

    const MULTI: &str = "services:\n- name: pool\n  command: srv --port {port}\n  listen: 127.0.0.1:8081\n  server: {memoryMiB: 8192, maxReplicas: 3}\n  models:\n  - {name: iris, memoryMiB: 3000, policy: {maxReplicas: 2, concurrency: {targetPerReplica: 2}}}\n  - {name: wine, memoryMiB: 3000, policy: {maxReplicas: 2, concurrency: {targetPerReplica: 2}}}\n";

    #[test]
    fn pools_pair_two_services_and_name_their_fields() {
        let service = |name: &str, port: u16| {
            format!("- name: {name}\n  command: [server, \"{{port}}\"]\n  listen: 127.0.0.1:{port}\n  policy: {{maxReplicas: 4, concurrency: {{targetPerReplica: 1}}}}\n")
        };
        let with = |pools: &str| {
            format!(
                "services:\n{}{}pools:\n{pools}",
                service("p", 9001),
                service("d", 9002)
            )
        };
        let c = Config::from_yaml(&with(
            "- {prefill: p, decode: d, ratio: {min: 1, max: 4}}\n",
        ))
        .unwrap();
        assert_eq!(c.pools[0].ratio.min, 1.0);
        assert_eq!(c.pool_of("d").map(|g| g.prefill.as_str()), Some("p"));
        assert_eq!(c.pool_of("x"), None);
        for (pools, field, why) in [
            (
                "- {prefill: p, decode: x}\n",
                "pools[0].decode",
                "no service named 'x'",
            ),
            (
                "- {prefill: p, decode: p}\n",
                "pools[0].decode",
                "already a pool",
            ),
            ("- {decode: d}\n", "pools[0].prefill", "is required"),
            (
                "- {prefill: p, decode: d, ratio: {min: 0}}\n",
                "pools[0].ratio.min",
                "must be a positive number",
            ),
            (
                "- {prefill: p, decode: d, ratio: {min: 3, max: 2}}\n",
                "pools[0].ratio",
                "min (3) is above max (2)",
            ),
        ] {
            let e = Config::from_yaml(&with(pools)).unwrap_err().to_string();
            assert!(e.starts_with(field) && e.contains(why), "{pools}: {e}");
        }
    }

    #[test]
    fn multi_model_service() {
        let c = Config::from_yaml(MULTI).unwrap();
        let m = c.services[0].models.as_ref().unwrap();
        assert_eq!(m.models.len(), 2);
        assert_eq!(m.server.capacity_mib, 8192);
        assert_eq!(m.server.kind, "pool");
        let e =
            Config::from_yaml(&MULTI.replace("memoryMiB: 3000, policy", "memoryMiB: 9000, policy"))
                .unwrap_err();
        assert_eq!(e.path, "services[0].models[0].memoryMiB");
        assert!(e.reason.contains("does not fit"), "{e}");
        let e =
            Config::from_yaml(&MULTI.replace("  server: {memoryMiB: 8192, maxReplicas: 3}\n", ""))
                .unwrap_err();
        assert_eq!(e.path, "services[0].server");
        let e = Config::from_yaml(&MULTI.replace("name: wine", "name: iris")).unwrap_err();
        assert_eq!(e.path, "services[0].models[1].name");
        let e = Config::from_yaml(
            &MULTI.replace("maxReplicas: 2, concurrency", "maxReplicas: 0, concurrency"),
        )
        .unwrap_err();
        assert!(e.path.starts_with("services[0].models[0].policy"), "{e}");
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
                .starts_with("services[0].policy.maxReplicas: must be between 1"),
            "{e}"
        );
        let e = Config::from_yaml(&OK.replace("127.0.0.1:8080", "localhost")).unwrap_err();
        assert_eq!(e.path, "services[0].listen");
        let e = Config::from_yaml("services: []").unwrap_err();
        assert_eq!(e.path, "services");
        let e = Config::from_yaml(&OK.replace("127.0.0.1:8080", "0.0.0.0:8080")).unwrap_err();
        assert_eq!(e.path, "services[0].listen");
        assert!(e.reason.contains("public: true"), "{e}");
        let public = OK.replace("127.0.0.1:8080", "0.0.0.0:8080") + "  public: true\n";
        assert!(Config::from_yaml(&public).unwrap().services[0].public);
        let e = Config::from_yaml(&(OK.to_string() + "admin: 0.0.0.0:9901\n")).unwrap_err();
        assert_eq!(e.path, "admin");
        let e = Config::from_yaml(
            &(OK.to_string() + "load: {service: m, phases: [{rate: 20000, seconds: 3600}]}\n"),
        )
        .unwrap_err();
        assert_eq!(e.path, "load.phases");
        for field in [
            "drainTimeoutSeconds: 1e300",
            "stopGraceSeconds: 1e19",
            "readiness: {timeoutSeconds: 1e300}",
            "queue: {timeoutSeconds: 1e19}",
        ] {
            let e = Config::from_yaml(&format!("{OK}  {field}\n")).unwrap_err();
            assert!(e.reason.contains("in (0, 86400]"), "{field}: {e}");
        }
        let e =
            Config::from_yaml(&format!("{OK}  syncPeriodMs: 18446744073709551615\n")).unwrap_err();
        assert_eq!(e.path, "services[0].syncPeriodMs");
        let e = Config::from_yaml(&(OK.to_string() + "  proxy: {maxBodyBytes: 0}\n")).unwrap_err();
        assert_eq!(e.path, "services[0].proxy.maxBodyBytes");
        let e = Config::from_yaml(
            &(OK.to_string() + "  proxy: {maxBodyBytes: 1000, retryBodyBytes: 2000}\n"),
        )
        .unwrap_err();
        assert_eq!(e.path, "services[0].proxy.retryBodyBytes");
        assert!(e.reason.contains("at most maxBodyBytes (1000)"), "{e}");
        let e = Config::from_yaml(&(OK.to_string() + "  proxy: {bodyTimeoutSeconds: 0}\n"))
            .unwrap_err();
        assert_eq!(e.path, "services[0].proxy.bodyTimeoutSeconds");
    }
}
