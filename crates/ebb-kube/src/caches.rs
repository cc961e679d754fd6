//! The controller's view of the cluster: reflector caches of Pods, HorizontalPodAutoscalers and
//! Autoscalers, kept current by one watch each (as the HPA controller's listers and kube-rs's
//! controllers do), so that a reconcile reads memory instead of LISTing the API server.

use crate::crd::Autoscaler;
use crate::selector;
use futures::StreamExt;
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::core::SelectorExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use std::sync::{Arc, RwLock};

/// Reflector stores of the objects a reconcile reads.
pub struct Caches {
    pods: Store<Pod>,
    hpas: Store<HorizontalPodAutoscaler>,
    /// The Autoscalers' store belongs to the controller's own watch, which is rebuilt at every
    /// leadership term; it is handed over here when the term starts.
    autoscalers: RwLock<Option<Store<Autoscaler>>>,
    /// True once every watch has delivered its first LIST. One task waits on the stores and
    /// sets it, because a store's own `wait_until_ready` wakes only one of several tasks
    /// waiting at once (kube-runtime 5's `DelayedInit` keeps one waker).
    ready: tokio::sync::watch::Receiver<bool>,
}

/// The watches that keep [`Caches`] current; run them for as long as the controller runs.
pub type Watches = futures::future::BoxFuture<'static, ()>;

impl Caches {
    /// Caches of Pods and HPAs in `namespace` (all namespaces when `None`), and the future that
    /// keeps them current. Pods are stored without their managed fields, which the controller
    /// never reads and which are most of a pod's bytes.
    pub fn watch(client: &kube::Client, namespace: Option<&str>) -> (Caches, Watches) {
        let (pods, pods_writer) = reflector::store();
        let (hpas, hpas_writer) = reflector::store();
        let pod_watch = watcher(api::<Pod>(client, namespace), watcher::Config::default())
            .default_backoff()
            .modify(|p: &mut Pod| p.managed_fields_mut().clear())
            .reflect(pods_writer)
            .for_each(log_watch_error("pods"));
        let hpa_watch = watcher(
            api::<HorizontalPodAutoscaler>(client, namespace),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(hpas_writer)
        .for_each(log_watch_error("horizontalpodautoscalers"));
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let (p, h) = (pods.clone(), hpas.clone());
        let announce = async move {
            let _ = futures::join!(p.wait_until_ready(), h.wait_until_ready());
            let _ = ready_tx.send(true);
        };
        let watches = Box::pin(async move {
            futures::join!(pod_watch, hpa_watch, announce);
        });
        let caches = Caches {
            pods,
            hpas,
            autoscalers: RwLock::new(None),
            ready,
        };
        (caches, watches)
    }

    /// Caches holding exactly these objects, for tests and tools.
    pub fn fixed(
        pods: Vec<Pod>,
        hpas: Vec<HorizontalPodAutoscaler>,
        autoscalers: Vec<Autoscaler>,
    ) -> Caches {
        let (_, ready) = tokio::sync::watch::channel(true);
        let caches = Caches {
            pods: filled(pods),
            hpas: filled(hpas),
            autoscalers: RwLock::new(None),
            ready,
        };
        caches.use_autoscalers(filled(autoscalers));
        caches
    }

    /// Hands over the store of the Autoscalers watch that drives this leadership term.
    pub fn use_autoscalers(&self, store: Store<Autoscaler>) {
        if let Ok(mut s) = self.autoscalers.write() {
            *s = Some(store);
        }
    }

    /// Waits until the first LIST of the Pod and HPA watches has arrived (at once after
    /// that), so that no reconcile decides on, or checks for conflicts in, an empty cache. (The
    /// Autoscalers' own store is ready before the controller runs its first reconcile.)
    pub async fn ready(&self) {
        let mut ready = self.ready.clone();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// The pods of `namespace` that `selector` (string form) selects.
    pub fn pods(
        &self,
        namespace: &str,
        selector: &str,
    ) -> Result<Vec<Arc<Pod>>, selector::SelectorError> {
        let selector = selector::parse(selector)?;
        Ok(self.pods.state_filter(|p| {
            p.metadata.namespace.as_deref() == Some(namespace) && selector.matches(p.labels())
        }))
    }

    /// The HPAs of `namespace`.
    pub fn hpas(&self, namespace: &str) -> Vec<Arc<HorizontalPodAutoscaler>> {
        in_namespace(&self.hpas, namespace)
    }

    /// The Autoscalers of `namespace` (none before a term has handed its store over).
    pub fn autoscalers(&self, namespace: &str) -> Vec<Arc<Autoscaler>> {
        self.autoscalers
            .read()
            .ok()
            .and_then(|s| s.as_ref().map(|s| in_namespace(s, namespace)))
            .unwrap_or_default()
    }
}

/// Logs a watch's errors (it retries them itself, with backoff): a cache that cannot fill
/// holds every reconcile, and this says why.
fn log_watch_error<K>(
    what: &'static str,
) -> impl FnMut(Result<K, watcher::Error>) -> futures::future::Ready<()> {
    move |event| {
        if let Err(e) = event {
            tracing::warn!(watch = what, error = %e, "watch failed; retrying");
        }
        futures::future::ready(())
    }
}

/// An API of `K` in `namespace`, or in all namespaces.
pub(crate) fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn in_namespace<K>(store: &Store<K>, namespace: &str) -> Vec<Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.state_filter(|o| o.meta().namespace.as_deref() == Some(namespace))
}

fn filled<K>(objects: Vec<K>) -> Store<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    store
}
