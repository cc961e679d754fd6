//! What the proxy and the multi-model control loop share about a multi-model service: each
//! model's counters (the observations its own decision reads) and its copies, i.e. which server
//! replicas have it loaded.

use super::Replica;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Where a copy of a model is in its life on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyState {
    /// Waiting for its server to be ready, or the load call to return.
    Loading = 0,
    /// Loaded: receives traffic.
    Ready = 1,
    /// Being unloaded: no new traffic, finishing its requests.
    Leaving = 2,
}

/// One model loaded (or loading) on one server replica.
#[derive(Debug)]
pub struct Copy {
    /// The server replica.
    pub replica: Arc<Replica>,
    state: AtomicU8,
    /// Requests of this model forwarded to this server and not yet answered.
    pub in_flight: AtomicU32,
}

impl Copy {
    /// A copy starting to load.
    pub fn loading(replica: Arc<Replica>) -> Arc<Copy> {
        Arc::new(Copy {
            replica,
            state: AtomicU8::new(CopyState::Loading as u8),
            in_flight: AtomicU32::new(0),
        })
    }

    /// Its state.
    pub fn state(&self) -> CopyState {
        match self.state.load(Ordering::Acquire) {
            0 => CopyState::Loading,
            1 => CopyState::Ready,
            _ => CopyState::Leaving,
        }
    }

    /// Moves it to `s`.
    pub fn set(&self, s: CopyState) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// Receives traffic: loaded, and its server ready and not draining.
    pub fn routable(&self) -> bool {
        self.state() == CopyState::Ready && self.replica.routable()
    }
}

/// One model of the service.
#[derive(Debug)]
pub struct ModelEntry {
    /// Its name (the `{name}` of `/v2/models/{name}/...`).
    pub name: String,
    /// Memory one replica of it needs, MiB.
    pub memory_mib: u64,
    /// Requests received.
    pub arrivals: AtomicU64,
    /// Requests answered.
    pub completions: AtomicU64,
    /// Requests inside the proxy now.
    pub in_flight: AtomicU64,
    /// Sum of in-flight samples since the control loop last read them, and their count.
    pub in_flight_samples: Mutex<(f64, u32)>,
    /// Its copies.
    pub copies: RwLock<Vec<Arc<Copy>>>,
}

impl ModelEntry {
    /// A snapshot of its copies.
    pub fn copies(&self) -> Vec<Arc<Copy>> {
        self.copies.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// The routable copy with the fewest requests in flight.
    pub fn pick(&self, avoid: &[u32]) -> Option<Arc<Copy>> {
        let copies = self.copies.read().ok()?;
        copies
            .iter()
            .filter(|c| c.routable() && !avoid.contains(&c.replica.id))
            .min_by_key(|c| {
                (
                    c.in_flight.load(Ordering::Relaxed),
                    c.replica.in_flight.load(Ordering::Relaxed),
                    c.replica.id,
                )
            })
            .cloned()
    }

    /// Removes `copy`.
    pub fn remove(&self, copy: &Arc<Copy>) {
        if let Ok(mut c) = self.copies.write() {
            c.retain(|x| !Arc::ptr_eq(x, copy));
        }
    }
}

/// The models of a multi-model service, by name.
#[derive(Debug)]
pub struct ModelTable {
    /// Models by name.
    pub models: BTreeMap<String, Arc<ModelEntry>>,
}

impl ModelTable {
    /// A table with no copies yet of `models`: each one's name and the memory (MiB) one
    /// replica of it needs.
    pub fn new<'a>(models: impl IntoIterator<Item = (&'a str, u64)>) -> ModelTable {
        ModelTable {
            models: models
                .into_iter()
                .map(|(name, memory_mib)| {
                    (
                        name.to_string(),
                        Arc::new(ModelEntry {
                            name: name.to_string(),
                            memory_mib,
                            arrivals: AtomicU64::new(0),
                            completions: AtomicU64::new(0),
                            in_flight: AtomicU64::new(0),
                            in_flight_samples: Mutex::new((0.0, 0)),
                            copies: RwLock::new(Vec::new()),
                        }),
                    )
                })
                .collect(),
        }
    }

    /// The model a request path names (`/v2/models/{name}/...`).
    pub fn model_of_path(path: &str) -> Option<&str> {
        let rest = path.strip_prefix("/v2/models/")?;
        let name = rest.split('/').next()?;
        (!name.is_empty()).then_some(name)
    }

    /// Copies hosted on server replica `id`: (model, state).
    pub fn on_replica(&self, id: u32) -> Vec<(String, CopyState)> {
        let mut out = Vec::new();
        for (name, m) in &self.models {
            for c in m.copies() {
                if c.replica.id == id {
                    out.push((name.clone(), c.state()));
                }
            }
        }
        out
    }

    /// The status page's view of the models.
    pub fn status_json(&self) -> serde_json::Value {
        let models: Vec<serde_json::Value> = self
            .models
            .iter()
            .map(|(name, m)| {
                let copies: Vec<serde_json::Value> = m
                    .copies()
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "replica": c.replica.id,
                            "state": format!("{:?}", c.state()).to_lowercase(),
                            "inFlight": c.in_flight.load(Ordering::Relaxed),
                        })
                    })
                    .collect();
                serde_json::json!({
                    "name": name,
                    "memoryMiB": m.memory_mib,
                    "requests": m.arrivals.load(Ordering::Relaxed),
                    "inFlight": m.in_flight.load(Ordering::Relaxed),
                    "ready": m.copies().iter().filter(|c| c.routable()).count(),
                    "copies": copies,
                })
            })
            .collect();
        serde_json::Value::Array(models)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_from_v2_paths() {
        assert_eq!(
            ModelTable::model_of_path("/v2/models/iris/infer"),
            Some("iris")
        );
        assert_eq!(ModelTable::model_of_path("/v2/models/wine"), Some("wine"));
        assert_eq!(ModelTable::model_of_path("/v2/models/"), None);
        assert_eq!(ModelTable::model_of_path("/v2/health/ready"), None);
    }
}
