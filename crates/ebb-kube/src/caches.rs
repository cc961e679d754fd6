//! The controller's view of the cluster: reflector caches of Pods, HorizontalPodAutoscalers,
//! Autoscalers, Deployments and StatefulSets, kept current by one watch each (as the HPA
//! controller's listers and kube-rs's controllers do), so that a reconcile reads memory
//! instead of asking the API server: no LIST, and no `/scale` GET for the two workload kinds
//! (a pass every 0.5-1 s, as an SLO fed by the gateway or a pod scrape makes, would otherwise
//! GET each target's `/scale` as often).

use crate::crd::Autoscaler;
use crate::selector;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use std::sync::{Arc, RwLock};

/// Reflector stores of the objects a reconcile reads.
pub struct Caches {
    pods: Store<Pod>,
    hpas: Store<HorizontalPodAutoscaler>,
    /// Deployments and StatefulSets, without their pod templates (most of their bytes, never
    /// read). Not awaited by [`Caches::ready`]: a target missing from them (a watch the RBAC
    /// does not allow, an object newer than the cache) is read through its `/scale` instead.
    deployments: Store<Deployment>,
    statefulsets: Store<StatefulSet>,
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
        let (deployments, deployment_watch) = workload_watch(client, namespace, "deployments");
        let (statefulsets, statefulset_watch) = workload_watch(client, namespace, "statefulsets");
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        let (p, h) = (pods.clone(), hpas.clone());
        let announce = async move {
            let _ = futures::join!(p.wait_until_ready(), h.wait_until_ready());
            let _ = ready_tx.send(true);
        };
        let watches = Box::pin(async move {
            futures::join!(
                pod_watch,
                hpa_watch,
                deployment_watch,
                statefulset_watch,
                announce
            );
        });
        let caches = Caches {
            pods,
            hpas,
            deployments,
            statefulsets,
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
            deployments: filled(Vec::new()),
            statefulsets: filled(Vec::new()),
            autoscalers: RwLock::new(None),
            ready,
        };
        caches.use_autoscalers(filled(autoscalers));
        caches
    }

    /// These caches holding exactly these Deployments and StatefulSets, for tests and tools.
    pub fn with_workloads(
        mut self,
        deployments: Vec<Deployment>,
        statefulsets: Vec<StatefulSet>,
    ) -> Caches {
        self.deployments = filled(deployments);
        self.statefulsets = filled(statefulsets);
        self
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
        Ok(self.pods_selected(namespace, &selector::parse(selector)?))
    }

    /// The pods of `namespace` that `selector` selects.
    pub fn pods_selected(&self, namespace: &str, selector: &Selector) -> Vec<Arc<Pod>> {
        self.pods.state_filter(|p| {
            p.metadata.namespace.as_deref() == Some(namespace) && selector.matches(p.labels())
        })
    }

    /// What the `/scale` of an `apps/v1` Deployment or StatefulSet would say (its replicas
    /// and pod selector), from the cache; `None` for other kinds, an object the cache does
    /// not hold, or one whose selector cannot be read.
    pub fn workload_scale(&self, namespace: &str, kind: &str, name: &str) -> Option<CachedScale> {
        match kind {
            "Deployment" => cached_scale(&self.deployments, namespace, name),
            "StatefulSet" => cached_scale(&self.statefulsets, namespace, name),
            _ => None,
        }
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

/// A workload's `/scale`, read from the cache.
#[derive(Debug, Clone)]
pub struct CachedScale {
    /// `spec.replicas`.
    pub replicas: u32,
    /// `spec.selector`, the pods it owns.
    pub selector: Selector,
}

/// What `/scale` would say of the object `name` in `store`.
fn cached_scale<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<CachedScale>
where
    K: Resource + Workload + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let object = store.get(&reflector::ObjectRef::new(name).within(namespace))?;
    let (replicas, selector) = object.scale_spec()?;
    Some(CachedScale {
        replicas: u32::try_from(replicas).ok()?,
        selector: Selector::try_from(selector).ok()?,
    })
}

/// A store of `K` (a Deployment or a StatefulSet) kept without its pod template and managed
/// fields, and the watch that fills it.
fn workload_watch<K>(
    client: &kube::Client,
    namespace: Option<&str>,
    what: &'static str,
) -> (Store<K>, Watches)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Workload
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = reflector::store();
    let watch = watcher(api::<K>(client, namespace), watcher::Config::default())
        .default_backoff()
        .modify(|o: &mut K| {
            o.managed_fields_mut().clear();
            o.drop_template();
        })
        .reflect(writer)
        .for_each(log_watch_error(what));
    (store, Box::pin(watch))
}

/// A workload kind the caches read `/scale` from: what its `/scale` shows, and the pod
/// template the cache need not keep.
pub(crate) trait Workload {
    /// `spec.replicas` and `spec.selector`, as its `/scale` shows them.
    fn scale_spec(&self) -> Option<(i32, LabelSelector)>;
    fn drop_template(&mut self);
}

impl Workload for Deployment {
    fn scale_spec(&self) -> Option<(i32, LabelSelector)> {
        let spec = self.spec.as_ref()?;
        Some((spec.replicas?, spec.selector.clone()))
    }

    fn drop_template(&mut self) {
        if let Some(spec) = self.spec.as_mut() {
            spec.template = Default::default();
        }
    }
}

impl Workload for StatefulSet {
    fn scale_spec(&self) -> Option<(i32, LabelSelector)> {
        let spec = self.spec.as_ref()?;
        Some((spec.replicas?, spec.selector.clone()))
    }

    fn drop_template(&mut self) {
        if let Some(spec) = self.spec.as_mut() {
            spec.template = Default::default();
            spec.volume_claim_templates = None;
        }
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
