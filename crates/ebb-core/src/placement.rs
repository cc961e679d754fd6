//! Multi-model placement: which server replica hosts which model replicas, how many server
//! replicas there should be, and the moves that get there.
//!
//! Rules: two replicas of one model never share a server; a server is added only when no
//! existing one fits; replicas stay where they are unless a consolidation moves them; on
//! scale-down the least-loaded servers are emptied when everything on them fits elsewhere, so
//! that the server count can drop. A move loads the new copy first and unloads the old one
//! only once the new one is ready, so no model has fewer ready replicas than it had. Memory an
//! unload frees is not reused within the same plan: the copy drains first, and the driver
//! reports it as [`ServerState::leaving`] until it is gone, so a server is never over capacity
//! at any step of the moves.
//! Packing is best-fit decreasing by memory. Pure and deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A model and what its own policy wants.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDemand {
    /// Model name.
    pub name: String,
    /// Replicas wanted (from the model's own decision).
    pub replicas: u32,
    /// Memory one replica needs, MiB.
    pub memory_mib: u64,
    /// The server kind it must run on (e.g. "triton"); `None` = the default kind.
    pub server_kind: Option<String>,
}

/// A kind of server and its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerKind {
    /// Kind name.
    pub kind: String,
    /// Memory of one server replica, MiB.
    pub capacity_mib: u64,
    /// Most model replicas one server hosts (`None` = no limit).
    pub max_models: Option<u32>,
    /// Fewest server replicas.
    pub min_replicas: u32,
    /// Most server replicas.
    pub max_replicas: u32,
    /// Share of each server's memory kept free (0.0 to below 1.0).
    pub headroom: f64,
}

impl ServerKind {
    fn usable(&self) -> u64 {
        (self.capacity_mib as f64 * (1.0 - self.headroom.clamp(0.0, 0.99))).floor() as u64
    }
}

/// One server replica as it is now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerState {
    /// Its id (e.g. "mlserver-2").
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Models loaded (or loading) on it: the replicas it contributes.
    pub models: Vec<String>,
    /// Copies being unloaded after a move, waiting for their replacement to be ready: they
    /// still hold memory and count for anti-affinity, but are no longer replicas.
    pub leaving: Vec<String>,
}

/// How a plan may change what runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanOptions {
    /// Empty the least-loaded servers when their replicas fit elsewhere. Off, the plan only
    /// places, unloads and removes servers that are already empty (scale-up-only packing).
    pub consolidate: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions { consolidate: true }
    }
}

/// One step towards the target placement.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Move {
    /// Start a server replica.
    AddServer {
        /// New id.
        server: String,
        /// Kind.
        kind: String,
    },
    /// Load a model replica on a server.
    Load {
        /// Model.
        model: String,
        /// Server.
        server: String,
    },
    /// Unload a model replica from a server (after its replacement, if any, is ready).
    Unload {
        /// Model.
        model: String,
        /// Server.
        server: String,
    },
    /// Stop a server replica (it is empty by then).
    RemoveServer {
        /// Id.
        server: String,
    },
}

impl fmt::Display for Move {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Move::AddServer { server, kind } => write!(f, "add server {server} ({kind})"),
            Move::Load { model, server } => write!(f, "load {model} on {server}"),
            Move::Unload { model, server } => write!(f, "unload {model} from {server}"),
            Move::RemoveServer { server } => write!(f, "remove server {server}"),
        }
    }
}

/// The plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Target placement: server id to its models.
    pub target: BTreeMap<String, Vec<String>>,
    /// Server replicas per kind.
    pub server_replicas: BTreeMap<String, u32>,
    /// Moves, in the order to apply: servers added, loads, unloads, servers removed.
    pub moves: Vec<Move>,
    /// Model replicas that could not be placed (the "ScheduleFailed" condition).
    pub unplaced: Vec<(String, u32)>,
    /// Why the plan is what it is.
    pub reasons: Vec<String>,
}

#[derive(Clone)]
struct Server {
    id: String,
    kind: String,
    models: BTreeSet<String>,
    /// Copies on their way out (see [`ServerState::leaving`]).
    leaving: BTreeSet<String>,
    /// Memory of `models` and `leaving`.
    used: u64,
    new: bool,
}

impl Server {
    /// A server this plan adds, still empty.
    fn added(id: String, kind: &str) -> Server {
        Server {
            id,
            kind: kind.to_string(),
            models: BTreeSet::new(),
            leaving: BTreeSet::new(),
            used: 0,
            new: true,
        }
    }
}

/// Plans a placement with consolidation. `kinds` lists the server kinds (the first is the
/// default kind).
pub fn plan(models: &[ModelDemand], kinds: &[ServerKind], current: &[ServerState]) -> Plan {
    plan_with(models, kinds, current, PlanOptions::default())
}

/// Plans a placement with the given options.
pub fn plan_with(
    models: &[ModelDemand],
    kinds: &[ServerKind],
    current: &[ServerState],
    options: PlanOptions,
) -> Plan {
    let mut reasons = Vec::new();
    let default_kind = kinds.first().map(|k| k.kind.clone()).unwrap_or_default();
    let kind_of = |m: &ModelDemand| {
        m.server_kind
            .clone()
            .unwrap_or_else(|| default_kind.clone())
    };
    let spec: BTreeMap<&str, &ServerKind> = kinds.iter().map(|k| (k.kind.as_str(), k)).collect();
    let demand: BTreeMap<&str, &ModelDemand> =
        models.iter().map(|m| (m.name.as_str(), m)).collect();
    let mem = |name: &str| demand.get(name).map_or(0, |m| m.memory_mib);

    // Start from what runs now, dropping models no longer wanted.
    let mut servers: Vec<Server> = current
        .iter()
        .map(|s| {
            let models: BTreeSet<String> = s
                .models
                .iter()
                .filter(|m| demand.contains_key(m.as_str()))
                .cloned()
                .collect();
            let leaving: BTreeSet<String> = s.leaving.iter().cloned().collect();
            Server {
                id: s.id.clone(),
                kind: s.kind.clone(),
                used: models.iter().chain(&leaving).map(|m| mem(m)).sum(),
                models,
                leaving,
                new: false,
            }
        })
        .collect();

    // Scale each model down where it has more replicas than wanted: unload from the
    // least-loaded servers first, which helps consolidation.
    for m in models {
        let mut hosts: Vec<usize> = (0..servers.len())
            .filter(|&i| servers[i].models.contains(&m.name))
            .collect();
        if hosts.len() as u32 > m.replicas {
            hosts.sort_by_key(|&i| (servers[i].used, servers[i].id.clone()));
            for &i in hosts.iter().take(hosts.len() - m.replicas as usize) {
                // The unloaded copy drains before it is gone, and loads run before unloads:
                // its memory is not reused in this plan (the next plan sees it as leaving).
                servers[i].models.remove(&m.name);
                servers[i].leaving.insert(m.name.clone());
            }
        }
    }

    let fits = |s: &Server, m: &ModelDemand, k: &ServerKind| {
        s.kind == k.kind
            && !s.models.contains(&m.name)
            && !s.leaving.contains(&m.name)
            && s.used + m.memory_mib <= k.usable()
            && k.max_models.is_none_or(|cap| (s.models.len() as u32) < cap)
    };

    // Place missing replicas, largest first, best fit; add a server only when none fits.
    let mut order: Vec<&ModelDemand> = models.iter().collect();
    order.sort_by(|a, b| {
        b.memory_mib
            .cmp(&a.memory_mib)
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut unplaced = Vec::new();
    let mut next_index: BTreeMap<String, usize> = BTreeMap::new();
    for m in &order {
        let kind = kind_of(m);
        let Some(k) = spec.get(kind.as_str()) else {
            reasons.push(format!(
                "model {}: no server kind '{kind}' is configured",
                m.name
            ));
            unplaced.push((m.name.clone(), m.replicas));
            continue;
        };
        let have = servers
            .iter()
            .filter(|s| s.models.contains(&m.name))
            .count() as u32;
        let mut missing = m.replicas.saturating_sub(have);
        while missing > 0 {
            let best = (0..servers.len())
                .filter(|&i| fits(&servers[i], m, k))
                .min_by_key(|&i| {
                    (
                        k.usable() - servers[i].used - m.memory_mib,
                        servers[i].id.clone(),
                    )
                });
            let i = match best {
                Some(i) => i,
                None => {
                    let count = servers.iter().filter(|s| s.kind == k.kind).count() as u32;
                    if count >= k.max_replicas || m.memory_mib > k.usable() {
                        let why = if m.memory_mib > k.usable() {
                            format!(
                                "needs {} MiB, more than a {} server's usable {} MiB",
                                m.memory_mib,
                                k.kind,
                                k.usable()
                            )
                        } else {
                            format!(
                                "no {} server has {} MiB free and maxReplicas {} is reached",
                                k.kind, m.memory_mib, k.max_replicas
                            )
                        };
                        reasons.push(format!("model {}: {missing} replica(s) not placed: {why}; existing replicas keep serving", m.name));
                        unplaced.push((m.name.clone(), missing));
                        break;
                    }
                    let id = new_id(&k.kind, &servers, &mut next_index);
                    reasons.push(format!(
                        "server {id} added: a replica of {} ({} MiB) fits on no existing {} server",
                        m.name, m.memory_mib, k.kind
                    ));
                    servers.push(Server::added(id, &k.kind));
                    servers.len() - 1
                }
            };
            servers[i].models.insert(m.name.clone());
            servers[i].used += m.memory_mib;
            missing -= 1;
        }
    }

    // Consolidate: empty the least-loaded server when all its replicas fit elsewhere. Without
    // consolidation only servers that host nothing go.
    loop {
        let mut candidates: Vec<usize> = (0..servers.len()).collect();
        candidates.sort_by_key(|&i| {
            (
                servers[i].used,
                servers[i].models.len(),
                servers[i].id.clone(),
            )
        });
        let mut emptied = false;
        for &i in &candidates {
            let k = match spec.get(servers[i].kind.as_str()) {
                Some(k) => *k,
                None => continue,
            };
            let same_kind = servers.iter().filter(|s| s.kind == k.kind).count() as u32;
            if same_kind <= k.min_replicas.max(1) {
                continue;
            }
            if !options.consolidate && !servers[i].models.is_empty() {
                continue;
            }
            let mut trial = servers.clone();
            let victims: Vec<String> = trial[i].models.iter().cloned().collect();
            let mut victims_sorted = victims.clone();
            victims_sorted.sort_by_key(|v| std::cmp::Reverse(mem(v)));
            trial[i].models.clear();
            trial[i].used = trial[i].leaving.iter().map(|m| mem(m)).sum();
            let mut ok = true;
            for v in &victims_sorted {
                let Some(m) = demand.get(v.as_str()) else {
                    continue;
                };
                let best = (0..trial.len())
                    .filter(|&j| j != i && fits(&trial[j], m, k))
                    .min_by_key(|&j| {
                        (
                            k.usable() - trial[j].used - m.memory_mib,
                            trial[j].id.clone(),
                        )
                    });
                match best {
                    Some(j) => {
                        trial[j].models.insert(v.clone());
                        trial[j].used += m.memory_mib;
                    }
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                reasons.push(if victims.is_empty() {
                    format!("server {} removed: it hosts nothing", servers[i].id)
                } else {
                    format!(
                        "server {} drained: its {} model replica(s) ({}) fit on other servers",
                        servers[i].id,
                        victims.len(),
                        victims.join(", ")
                    )
                });
                trial.remove(i);
                servers = trial;
                emptied = true;
                break;
            }
        }
        if !emptied {
            break;
        }
    }

    // Keep at least minReplicas servers of each kind.
    for k in kinds {
        while (servers.iter().filter(|s| s.kind == k.kind).count() as u32) < k.min_replicas {
            let id = new_id(&k.kind, &servers, &mut next_index);
            reasons.push(format!(
                "server {id} added: minReplicas of {} is {}",
                k.kind, k.min_replicas
            ));
            servers.push(Server::added(id, &k.kind));
        }
    }

    // Moves: add servers, load, unload, remove servers.
    let before: BTreeMap<&str, BTreeSet<&str>> = current
        .iter()
        .map(|s| (s.id.as_str(), s.models.iter().map(String::as_str).collect()))
        .collect();
    let after: BTreeMap<&str, &BTreeSet<String>> =
        servers.iter().map(|s| (s.id.as_str(), &s.models)).collect();
    let mut moves = Vec::new();
    for s in servers.iter().filter(|s| s.new) {
        moves.push(Move::AddServer {
            server: s.id.clone(),
            kind: s.kind.clone(),
        });
    }
    for s in &servers {
        let had = before.get(s.id.as_str());
        for m in &s.models {
            if !had.is_some_and(|h| h.contains(m.as_str())) {
                moves.push(Move::Load {
                    model: m.clone(),
                    server: s.id.clone(),
                });
            }
        }
    }
    for (id, had) in &before {
        for m in had {
            if !after.get(id).is_some_and(|now| now.contains(*m)) {
                moves.push(Move::Unload {
                    model: m.to_string(),
                    server: id.to_string(),
                });
            }
        }
    }
    for id in before.keys() {
        if !after.contains_key(id) {
            moves.push(Move::RemoveServer {
                server: id.to_string(),
            });
        }
    }
    let mut server_replicas = BTreeMap::new();
    for k in kinds {
        server_replicas.insert(
            k.kind.clone(),
            servers.iter().filter(|s| s.kind == k.kind).count() as u32,
        );
    }
    Plan {
        target: servers
            .into_iter()
            .map(|s| (s.id, s.models.into_iter().collect()))
            .collect(),
        server_replicas,
        moves,
        unplaced,
        reasons,
    }
}

fn new_id(kind: &str, servers: &[Server], next: &mut BTreeMap<String, usize>) -> String {
    let n = next.entry(kind.to_string()).or_insert(0);
    loop {
        let id = format!("{kind}-{n}");
        *n += 1;
        if !servers.iter().any(|s| s.id == id) {
            return id;
        }
    }
}

/// The least servers of `kind` any placement needs: total memory over usable capacity,
/// rounded up, and at least the largest model's replica count (anti-affinity).
pub fn lower_bound(models: &[ModelDemand], kind: &ServerKind, default_kind: &str) -> u32 {
    let of_kind: Vec<&ModelDemand> = models
        .iter()
        .filter(|m| m.server_kind.as_deref().unwrap_or(default_kind) == kind.kind)
        .collect();
    let total: u64 = of_kind
        .iter()
        .map(|m| m.memory_mib * u64::from(m.replicas))
        .sum();
    let by_memory = total.div_ceil(kind.usable().max(1)) as u32;
    let by_spread = of_kind.iter().map(|m| m.replicas).max().unwrap_or(0);
    by_memory.max(by_spread).max(kind.min_replicas)
}
