//! The simulated server fleet of multi-model serving: server replicas that start, host model
//! copies (loading, then ready), and copies on their way out. A copy leaves either after a
//! move, once its replacement is ready (make-before-break), or after a scale-down, once the
//! model's draining replica has finished its requests. A server marked for removal goes when
//! nothing is left on it. The fleet only applies plans: every decision comes from
//! `ebb_core::placement`.

use ebb_core::placement::ServerState;
use std::collections::BTreeMap;

/// Why a copy is leaving, which decides when it is gone.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Leaving {
    /// Moved elsewhere: gone once the replacement is ready (at this time).
    Moved { until: f64 },
    /// Scaled down: gone once the model has no more draining replicas than such copies.
    Drained { since: f64 },
}

#[derive(Debug, Clone)]
struct Server {
    created: f64,
    ready_at: f64,
    /// Model id to the time its copy is ready.
    copies: BTreeMap<usize, f64>,
    leaving: Vec<(usize, Leaving)>,
    removing: bool,
}

/// The fleet and its cost.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    kind: String,
    servers: BTreeMap<String, Server>,
    closed_server_seconds: f64,
    /// Copies loaded (initial placement excluded).
    pub loads: u64,
    /// Copies moved from one server to another.
    pub relocations: u64,
    /// Servers started (initial ones excluded).
    pub servers_added: u64,
    /// Servers stopped.
    pub servers_removed: u64,
    retired: u64,
}

impl Fleet {
    /// An empty fleet of servers of `kind`.
    pub fn new(kind: &str) -> Fleet {
        Fleet {
            kind: kind.to_string(),
            ..Fleet::default()
        }
    }

    /// Servers that exist (starting, serving or on their way out).
    pub fn servers(&self) -> usize {
        self.servers.len()
    }

    /// When server `id` is (or was) ready; `None` when it does not exist.
    pub fn server_ready_at(&self, id: &str) -> Option<f64> {
        self.servers.get(id).map(|s| s.ready_at)
    }

    /// Copies of `model` the fleet hosts as replicas (loading or ready, not leaving).
    pub fn copies_of(&self, model: usize) -> usize {
        self.servers
            .values()
            .filter(|s| s.copies.contains_key(&model))
            .count()
    }

    /// What the planner sees: servers not marked for removal, their copies and leaving copies.
    pub fn states(&self, names: &[String]) -> Vec<ServerState> {
        let name = |m: &usize| {
            names
                .get(*m)
                .cloned()
                .unwrap_or_else(|| format!("model-{m}"))
        };
        self.servers
            .iter()
            .filter(|(_, s)| !s.removing)
            .map(|(id, s)| ServerState {
                id: id.clone(),
                kind: self.kind.clone(),
                models: s.copies.keys().map(name).collect(),
                leaving: s.leaving.iter().map(|(m, _)| name(m)).collect(),
            })
            .collect()
    }

    /// True while a move is under way or a server is still starting: consolidation waits.
    pub fn busy(&self, now: f64) -> bool {
        self.servers.values().any(|s| {
            s.ready_at > now
                || s.leaving
                    .iter()
                    .any(|(_, l)| matches!(l, Leaving::Moved { .. }))
        })
    }

    /// Starts server `id`, ready at `ready_at`. The planner may reuse the id of a server it no
    /// longer sees (marked for removal, still finishing its leaving copies): that one keeps
    /// running under a retired name.
    pub fn add_server(&mut self, id: &str, now: f64, ready_at: f64, initial: bool) {
        if !initial {
            self.servers_added += 1;
        }
        if let Some(old) = self.servers.remove(id) {
            self.retired += 1;
            self.servers
                .insert(format!("{id}~retired-{}", self.retired), old);
        }
        self.servers.insert(
            id.to_string(),
            Server {
                created: now,
                ready_at,
                copies: BTreeMap::new(),
                leaving: Vec::new(),
                removing: false,
            },
        );
    }

    /// Loads a copy of `model` on `server`, ready at `ready_at`.
    pub fn load(&mut self, model: usize, server: &str, ready_at: f64, initial: bool) {
        if let Some(s) = self.servers.get_mut(server) {
            s.copies.insert(model, ready_at);
            if !initial {
                self.loads += 1;
            }
        }
    }

    /// The copy of `model` on `server` moves away: it serves until `until`, when its
    /// replacement is ready.
    pub fn move_out(&mut self, model: usize, server: &str, until: f64) {
        if let Some(s) = self.servers.get_mut(server) {
            if s.copies.remove(&model).is_some() {
                s.leaving.push((model, Leaving::Moved { until }));
                self.relocations += 1;
            }
        }
    }

    /// The copy of `model` on `server` is scaled down: it goes once the model's draining
    /// replica is done.
    pub fn drain_out(&mut self, model: usize, server: &str, now: f64) {
        if let Some(s) = self.servers.get_mut(server) {
            if s.copies.remove(&model).is_some() {
                s.leaving.push((model, Leaving::Drained { since: now }));
            }
        }
    }

    /// Marks `server` for removal; it goes when empty.
    pub fn remove_server(&mut self, server: &str) {
        if let Some(s) = self.servers.get_mut(server) {
            s.removing = true;
        }
    }

    /// Lets leaving copies go and removes empty servers marked for removal. `draining(m)` is
    /// the number of replicas of model `m` still finishing their requests.
    pub fn settle(&mut self, now: f64, draining: impl Fn(usize) -> usize) {
        for s in self.servers.values_mut() {
            s.leaving.retain(|(_, l)| match l {
                Leaving::Moved { until } => *until > now,
                Leaving::Drained { .. } => true,
            });
        }
        // Drained copies of each model, oldest first, beyond its draining replicas go.
        let mut drained: BTreeMap<usize, Vec<(f64, String)>> = BTreeMap::new();
        for (id, s) in &self.servers {
            for (m, l) in &s.leaving {
                if let Leaving::Drained { since } = l {
                    drained.entry(*m).or_default().push((*since, id.clone()));
                }
            }
        }
        for (m, mut list) in drained {
            let keep = draining(m);
            if list.len() <= keep {
                continue;
            }
            list.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            for (_, id) in list.iter().take(list.len() - keep) {
                if let Some(s) = self.servers.get_mut(id) {
                    if let Some(i) = s
                        .leaving
                        .iter()
                        .position(|(x, l)| *x == m && matches!(l, Leaving::Drained { .. }))
                    {
                        s.leaving.remove(i);
                    }
                }
            }
        }
        let gone: Vec<String> = self
            .servers
            .iter()
            .filter(|(_, s)| s.removing && s.copies.is_empty() && s.leaving.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(s) = self.servers.remove(&id) {
                self.closed_server_seconds += now - s.created;
                self.servers_removed += 1;
            }
        }
    }

    /// Server-seconds so far: every server from its start to its removal (or `now`).
    pub fn server_seconds(&self, now: f64) -> f64 {
        self.closed_server_seconds
            + self
                .servers
                .values()
                .map(|s| (now - s.created).max(0.0))
                .sum::<f64>()
    }

    /// Memory held on each server (copies and leaving copies), for capacity checks. Lazy: the
    /// simulator checks it every second.
    pub fn used_mib<'a>(
        &'a self,
        memory: impl Fn(usize) -> u64 + 'a,
    ) -> impl Iterator<Item = (&'a str, u64)> + 'a {
        self.servers.iter().map(move |(id, s)| {
            let used = s.copies.keys().map(|m| memory(*m)).sum::<u64>()
                + s.leaving.iter().map(|(m, _)| memory(*m)).sum::<u64>();
            (id.as_str(), used)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_copy_stays_until_its_replacement_is_ready() {
        let mut f = Fleet::new("s");
        f.add_server("s-0", 0.0, 0.0, true);
        f.add_server("s-1", 0.0, 0.0, true);
        f.load(0, "s-0", 0.0, true);
        f.load(0, "s-1", 20.0, false);
        f.move_out(0, "s-0", 20.0);
        f.remove_server("s-0");
        f.settle(10.0, |_| 0);
        assert_eq!(f.servers(), 2, "s-0 still serves the moved copy");
        assert_eq!(f.states(&[]).len(), 1, "the planner no longer sees s-0");
        f.settle(20.0, |_| 0);
        assert_eq!(f.servers(), 1);
        assert_eq!(f.server_seconds(30.0), 20.0 + 30.0);
        assert_eq!(f.relocations, 1);
    }

    #[test]
    fn a_reused_id_does_not_lose_the_server_still_draining() {
        let mut f = Fleet::new("s");
        f.add_server("s-0", 0.0, 0.0, true);
        f.load(0, "s-0", 0.0, true);
        f.drain_out(0, "s-0", 1.0);
        f.remove_server("s-0");
        f.add_server("s-0", 2.0, 30.0, false);
        assert_eq!(f.servers(), 2);
        f.settle(3.0, |_| 1);
        assert_eq!(f.servers(), 2, "the old s-0 still drains");
        f.settle(4.0, |_| 0);
        assert_eq!(f.servers(), 1);
        assert_eq!(f.server_seconds(10.0), 4.0 + 8.0);
    }

    #[test]
    fn a_drained_copy_goes_when_the_replica_has_drained() {
        let mut f = Fleet::new("s");
        f.add_server("s-0", 0.0, 0.0, true);
        f.load(3, "s-0", 0.0, true);
        f.drain_out(3, "s-0", 5.0);
        f.settle(6.0, |_| 1);
        assert_eq!(f.used_mib(|_| 100).collect::<Vec<_>>(), vec![("s-0", 100)]);
        f.settle(7.0, |_| 0);
        assert_eq!(f.used_mib(|_| 100).collect::<Vec<_>>(), vec![("s-0", 0)]);
    }
}
