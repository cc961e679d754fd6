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
    /// The memory a server of this kind offers to model copies, MiB (see [`usable_mib`]).
    pub fn usable(&self) -> u64 {
        usable_mib(self.capacity_mib, self.headroom)
    }
}

/// The one capacity rule: of a server's `capacity_mib`, the share `headroom` (clamped to
/// [0, 0.99]) stays free for the runtime's own use and fragmentation; the rest, rounded down,
/// holds model copies. The planner packs by it, and configuration checks (the CRD, `ebb up`)
/// refuse a model that exceeds it, so a model accepted is one the planner can place.
pub fn usable_mib(capacity_mib: u64, headroom: f64) -> u64 {
    (capacity_mib as f64 * (1.0 - headroom.clamp(0.0, 0.99))).floor() as u64
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
        /// The server whose copy of the model this one replaces (a move, make-before-break):
        /// that copy keeps serving until this one is ready, then is unloaded.
        replaces: Option<String>,
    },
    /// Unload a model replica from a server.
    Unload {
        /// Model.
        model: String,
        /// Server.
        server: String,
        /// The server whose new copy replaces this one: unload only once that copy is ready
        /// (make-before-break). `None`: drain and unload now (the model scales in).
        replaced_by: Option<String>,
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
            Move::Load {
                model,
                server,
                replaces: None,
            } => write!(f, "load {model} on {server}"),
            Move::Load {
                model,
                server,
                replaces: Some(old),
            } => write!(f, "load {model} on {server}, replacing its copy on {old}"),
            Move::Unload {
                model,
                server,
                replaced_by: None,
            } => write!(f, "unload {model} from {server}"),
            Move::Unload {
                model,
                server,
                replaced_by: Some(new),
            } => write!(
                f,
                "unload {model} from {server} once its copy on {new} is ready"
            ),
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

/// Plans a placement with the given options: start from what runs (models no longer wanted
/// dropped), shrink models that have too many copies, place the missing copies, consolidate,
/// keep each kind's minimum, then emit the moves.
pub fn plan_with(
    models: &[ModelDemand],
    kinds: &[ServerKind],
    current: &[ServerState],
    options: PlanOptions,
) -> Plan {
    let mut planner = Planner::new(models, kinds, current);
    planner.shrink(models);
    planner.place(models);
    planner.consolidate(options);
    planner.keep_minimum(kinds);
    planner.emit(kinds, current)
}

/// The plan being built: the servers as they will be, and what was said and left unplaced.
struct Planner<'a> {
    default_kind: String,
    spec: BTreeMap<&'a str, &'a ServerKind>,
    demand: BTreeMap<&'a str, &'a ModelDemand>,
    servers: Vec<Server>,
    reasons: Vec<String>,
    unplaced: Vec<(String, u32)>,
    next_index: BTreeMap<String, usize>,
}

/// Whether a copy of `m` fits on `s`, a server of kind `k`.
fn fits(s: &Server, m: &ModelDemand, k: &ServerKind) -> bool {
    s.kind == k.kind
        && !s.models.contains(&m.name)
        && !s.leaving.contains(&m.name)
        && s.used + m.memory_mib <= k.usable()
        && k.max_models.is_none_or(|cap| (s.models.len() as u32) < cap)
}

/// The server among `servers` (but `except`) where `m` fits most tightly (best fit).
fn best_fit(
    servers: &[Server],
    m: &ModelDemand,
    k: &ServerKind,
    except: Option<usize>,
) -> Option<usize> {
    (0..servers.len())
        .filter(|&i| Some(i) != except && fits(&servers[i], m, k))
        .min_by_key(|&i| {
            (
                k.usable() - servers[i].used - m.memory_mib,
                servers[i].id.clone(),
            )
        })
}

impl<'a> Planner<'a> {
    /// Starts from what runs now, dropping models no longer wanted.
    fn new(
        models: &'a [ModelDemand],
        kinds: &'a [ServerKind],
        current: &[ServerState],
    ) -> Planner<'a> {
        let demand: BTreeMap<&str, &ModelDemand> =
            models.iter().map(|m| (m.name.as_str(), m)).collect();
        let mem = |name: &str| demand.get(name).map_or(0, |m| m.memory_mib);
        let servers = current
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
        Planner {
            default_kind: kinds.first().map(|k| k.kind.clone()).unwrap_or_default(),
            spec: kinds.iter().map(|k| (k.kind.as_str(), k)).collect(),
            demand,
            servers,
            reasons: Vec::new(),
            unplaced: Vec::new(),
            next_index: BTreeMap::new(),
        }
    }

    fn memory_of(&self, model: &str) -> u64 {
        self.demand.get(model).map_or(0, |m| m.memory_mib)
    }

    /// Scales each model down where it has more copies than wanted: unloads from the
    /// least-loaded servers first, which helps consolidation.
    fn shrink(&mut self, models: &[ModelDemand]) {
        let servers = &mut self.servers;
        for m in models {
            let mut hosts: Vec<usize> = (0..servers.len())
                .filter(|&i| servers[i].models.contains(&m.name))
                .collect();
            if hosts.len() as u32 > m.replicas {
                hosts.sort_by_key(|&i| (servers[i].used, servers[i].id.clone()));
                for &i in hosts.iter().take(hosts.len() - m.replicas as usize) {
                    // The unloaded copy drains before it is gone, and loads run before
                    // unloads: its memory is not reused in this plan (the next plan sees it
                    // as leaving).
                    servers[i].models.remove(&m.name);
                    servers[i].leaving.insert(m.name.clone());
                }
            }
        }
    }

    /// Places missing copies, largest model first, best fit; adds a server only when none
    /// fits.
    fn place(&mut self, models: &'a [ModelDemand]) {
        let mut order: Vec<&ModelDemand> = models.iter().collect();
        order.sort_by(|a, b| {
            b.memory_mib
                .cmp(&a.memory_mib)
                .then_with(|| a.name.cmp(&b.name))
        });
        for m in order {
            let kind = m
                .server_kind
                .clone()
                .unwrap_or_else(|| self.default_kind.clone());
            let Some(k) = self.spec.get(kind.as_str()).copied() else {
                self.reasons.push(format!(
                    "model {}: no server kind '{kind}' is configured",
                    m.name
                ));
                self.unplaced.push((m.name.clone(), m.replicas));
                continue;
            };
            let have = self
                .servers
                .iter()
                .filter(|s| s.models.contains(&m.name))
                .count() as u32;
            for missing in (1..=m.replicas.saturating_sub(have)).rev() {
                let Some(i) =
                    best_fit(&self.servers, m, k, None).or_else(|| self.add_for(m, k, missing))
                else {
                    break;
                };
                self.servers[i].models.insert(m.name.clone());
                self.servers[i].used += m.memory_mib;
            }
        }
    }

    /// A new server for a copy of `m` that fits nowhere, or `None` (said, and counted as
    /// unplaced with the `missing` copies left) when `k` allows no more or `m` is too big.
    fn add_for(&mut self, m: &ModelDemand, k: &ServerKind, missing: u32) -> Option<usize> {
        let count = self.servers.iter().filter(|s| s.kind == k.kind).count() as u32;
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
            self.reasons.push(format!(
                "model {}: {missing} replica(s) not placed: {why}; existing replicas keep serving",
                m.name
            ));
            self.unplaced.push((m.name.clone(), missing));
            return None;
        }
        let id = new_id(&k.kind, &self.servers, &mut self.next_index);
        self.reasons.push(format!(
            "server {id} added: a replica of {} ({} MiB) fits on no existing {} server",
            m.name, m.memory_mib, k.kind
        ));
        self.servers.push(Server::added(id, &k.kind));
        Some(self.servers.len() - 1)
    }

    /// Empties the least-loaded server while all its copies fit elsewhere. Without
    /// consolidation only servers that host nothing go.
    fn consolidate(&mut self, options: PlanOptions) {
        while let Some((i, trial)) = self.one_to_empty(options) {
            let victims: Vec<String> = self.servers[i].models.iter().cloned().collect();
            self.reasons.push(if victims.is_empty() {
                format!("server {} removed: it hosts nothing", self.servers[i].id)
            } else {
                format!(
                    "server {} drained: its {} model replica(s) ({}) fit on other servers",
                    self.servers[i].id,
                    victims.len(),
                    victims.join(", ")
                )
            });
            self.servers = trial;
        }
    }

    /// The first server (least loaded first) that can be emptied, with the servers as they
    /// would be without it.
    fn one_to_empty(&self, options: PlanOptions) -> Option<(usize, Vec<Server>)> {
        let servers = &self.servers;
        let mut candidates: Vec<usize> = (0..servers.len()).collect();
        candidates.sort_by_key(|&i| {
            (
                servers[i].used,
                servers[i].models.len(),
                servers[i].id.clone(),
            )
        });
        candidates.into_iter().find_map(|i| {
            let k = *self.spec.get(servers[i].kind.as_str())?;
            let same_kind = servers.iter().filter(|s| s.kind == k.kind).count() as u32;
            if same_kind <= k.min_replicas.max(1)
                || (!options.consolidate && !servers[i].models.is_empty())
            {
                return None;
            }
            let mut trial = servers.clone();
            let mut victims: Vec<String> = trial[i].models.iter().cloned().collect();
            victims.sort_by_key(|v| std::cmp::Reverse(self.memory_of(v)));
            trial[i].models.clear();
            trial[i].used = trial[i].leaving.iter().map(|m| self.memory_of(m)).sum();
            for v in &victims {
                let Some(m) = self.demand.get(v.as_str()) else {
                    continue;
                };
                let j = best_fit(&trial, m, k, Some(i))?;
                trial[j].models.insert(v.clone());
                trial[j].used += m.memory_mib;
            }
            trial.remove(i);
            Some((i, trial))
        })
    }

    /// Keeps at least minReplicas servers of each kind.
    fn keep_minimum(&mut self, kinds: &[ServerKind]) {
        for k in kinds {
            while (self.servers.iter().filter(|s| s.kind == k.kind).count() as u32) < k.min_replicas
            {
                let id = new_id(&k.kind, &self.servers, &mut self.next_index);
                self.reasons.push(format!(
                    "server {id} added: minReplicas of {} is {}",
                    k.kind, k.min_replicas
                ));
                self.servers.push(Server::added(id, &k.kind));
            }
        }
    }

    /// The plan: the target placement and the moves from `current` to it, in the order to
    /// apply (servers added, loads, unloads, servers removed).
    fn emit(self, kinds: &[ServerKind], current: &[ServerState]) -> Plan {
        let servers = self.servers;
        let before: BTreeMap<&str, BTreeSet<&str>> = current
            .iter()
            .map(|s| (s.id.as_str(), s.models.iter().map(String::as_str).collect()))
            .collect();
        let after: BTreeMap<&str, &BTreeSet<String>> =
            servers.iter().map(|s| (s.id.as_str(), &s.models)).collect();
        let mut moves: Vec<Move> = servers
            .iter()
            .filter(|s| s.new)
            .map(|s| Move::AddServer {
                server: s.id.clone(),
                kind: s.kind.clone(),
            })
            .collect();
        let mut loads: Vec<(String, String)> = Vec::new();
        for s in &servers {
            let had = before.get(s.id.as_str());
            for m in s
                .models
                .iter()
                .filter(|m| !had.is_some_and(|h| h.contains(m.as_str())))
            {
                loads.push((m.clone(), s.id.clone()));
            }
        }
        let mut unloads: Vec<(String, String)> = Vec::new();
        for (id, had) in &before {
            for m in had
                .iter()
                .filter(|m| !after.get(id).is_some_and(|now| now.contains(**m)))
            {
                unloads.push((m.to_string(), id.to_string()));
            }
        }
        let pairs = make_before_break(&loads, &unloads);
        for (model, server) in loads {
            let replaces = pairs.get(&(model.clone(), server.clone())).cloned();
            moves.push(Move::Load {
                model,
                server,
                replaces,
            });
        }
        let replaced_by: BTreeMap<(&str, &str), &str> = pairs
            .iter()
            .map(|((m, new), old)| ((m.as_str(), old.as_str()), new.as_str()))
            .collect();
        for (model, server) in &unloads {
            let by = replaced_by
                .get(&(model.as_str(), server.as_str()))
                .map(|s| s.to_string());
            moves.push(Move::Unload {
                model: model.clone(),
                server: server.clone(),
                replaced_by: by,
            });
        }
        for id in before.keys().filter(|id| !after.contains_key(*id)) {
            moves.push(Move::RemoveServer {
                server: id.to_string(),
            });
        }
        let server_replicas = kinds
            .iter()
            .map(|k| {
                (
                    k.kind.clone(),
                    servers.iter().filter(|s| s.kind == k.kind).count() as u32,
                )
            })
            .collect();
        Plan {
            target: servers
                .into_iter()
                .map(|s| (s.id, s.models.into_iter().collect()))
                .collect(),
            server_replicas,
            moves,
            unplaced: self.unplaced,
            reasons: self.reasons,
        }
    }
}

/// Pairs each model's loads with its unloads, in order: the n-th new copy of a model replaces
/// its n-th removed copy. Returns (model, new server) -> old server.
fn make_before_break(
    loads: &[(String, String)],
    unloads: &[(String, String)],
) -> BTreeMap<(String, String), String> {
    let mut leaving: BTreeMap<&str, std::collections::VecDeque<&str>> = BTreeMap::new();
    for (m, server) in unloads {
        leaving
            .entry(m.as_str())
            .or_default()
            .push_back(server.as_str());
    }
    loads
        .iter()
        .filter_map(|(m, new)| {
            let old = leaving.get_mut(m.as_str())?.pop_front()?;
            Some(((m.clone(), new.clone()), old.to_string()))
        })
        .collect()
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
