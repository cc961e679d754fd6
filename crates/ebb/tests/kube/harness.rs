//! The end-to-end harness: a real control plane (etcd, kube-apiserver,
//! kube-controller-manager from Debian's source package, started by
//! `scripts/kube-control-plane.sh`), `ebb controller` as a process with the ServiceAccount
//! token of `deploy/rbac.yaml`, and a stand-in kubelet: it marks the target's pods Running
//! and Ready with their own loopback IP, and serves each pod's metrics there.

#![allow(dead_code)]

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::pinned_kind;
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The control plane's facts, read from the env file the script wrote.
pub(crate) struct Plane {
    pub kubeconfig: PathBuf,
    pub server: String,
    pub controller_kubeconfig: PathBuf,
    pub dir: PathBuf,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Why the tests that use [`plane`] are ignored by a plain `cargo test`.
pub(crate) const NEEDS_PLANE: &str = "needs a Kubernetes control plane: scripts/kube-control-plane.sh start DIR, EBB_KUBE_ENV=DIR/env, then cargo test -- --include-ignored";

/// The control plane the tests were pointed at. They are `#[ignore]`d, so this runs only
/// when asked for, and then a missing plane is a failure, not a skip.
pub(crate) fn plane() -> &'static Plane {
    static PLANE: OnceLock<Plane> = OnceLock::new();
    PLANE.get_or_init(|| {
        let env = std::env::var("EBB_KUBE_ENV")
            .unwrap_or_else(|_| panic!("EBB_KUBE_ENV is not set: this test {NEEDS_PLANE}"));
        let text = std::fs::read_to_string(&env).unwrap_or_else(|e| panic!("{env}: {e}"));
        let var = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("{env} has no {name}"))
                .to_string()
        };
        let kubeconfig = PathBuf::from(var("KUBECONFIG"));
        let dir = kubeconfig
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let server = var("EBB_KUBE_SERVER");
        // Set up once, on a thread of its own: the tests' runtimes come and go.
        let (k, sv, d) = (kubeconfig.clone(), server.clone(), dir.clone());
        let controller_kubeconfig = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(setup(&k, &sv, &d))
        })
        .join()
        .expect("control plane setup");
        Plane {
            kubeconfig,
            server,
            controller_kubeconfig,
            dir,
        }
    })
}

/// The admin client.
pub(crate) async fn admin(p: &Plane) -> kube::Client {
    ebb_kube::client(Some(&p.kubeconfig))
        .await
        .expect("admin client")
}

/// Applies every document of a YAML text (server-side apply), in `namespace` when the
/// document is namespaced and names none.
pub(crate) async fn apply(client: &kube::Client, yaml: &str, namespace: Option<&str>) {
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value: serde_json::Value = serde::Deserialize::deserialize(doc).expect("yaml");
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_json::from_value(value.clone()).expect("object");
        let tm = obj.types.clone().expect("apiVersion and kind");
        let (group, version) = tm
            .api_version
            .split_once('/')
            .unwrap_or(("", &tm.api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, &tm.kind);
        let (ar, caps) = pinned_kind(client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("{gvk:?}: {e}"));
        let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
            let ns = obj
                .namespace()
                .or(namespace.map(str::to_string))
                .unwrap_or_else(|| "default".into());
            Api::namespaced_with(client.clone(), &ns, &ar)
        } else {
            Api::all_with(client.clone(), &ar)
        };
        let mut value = value;
        if caps.scope == kube::discovery::Scope::Namespaced {
            if let Some(ns) = namespace {
                value["metadata"]["namespace"] = ns.into();
            }
        }
        api.patch(
            &obj.name_any(),
            &PatchParams::apply("ebb-e2e").force(),
            &Patch::Apply(&value),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {} {}: {e}", tm.kind, obj.name_any()));
    }
}

/// Installs the CRD, the test Model CRD, deploy/'s namespace and RBAC; returns a kubeconfig
/// holding the controller ServiceAccount's token.
async fn setup(kubeconfig: &Path, server: &str, dir: &Path) -> PathBuf {
    let client = ebb_kube::client(Some(kubeconfig))
        .await
        .expect("admin client");
    apply(&client, &ebb_kube::crd::crd_yaml(), None).await;
    apply(&client, SELDON_LIKE_CRD, None).await;
    apply(
        &client,
        &SELDON_LIKE_CRD
            .replace("models", "servers")
            .replace("kind: Model", "kind: Server")
            .replace("singular: model", "singular: server"),
        None,
    )
    .await;
    for f in ["namespace.yaml", "rbac.yaml"] {
        let text = std::fs::read_to_string(repo().join("deploy").join(f)).expect("deploy file");
        apply(&client, &text, None).await;
    }
    // CRDs take a moment to be served.
    wait(Duration::from_secs(30), "the CRDs to be served", || async {
        let gvk = kube::api::GroupVersionKind::gvk("ebb.dev", "v1alpha1", "Autoscaler");
        let m = kube::api::GroupVersionKind::gvk("mlops.seldon.io", "v1alpha1", "Model");
        let s = kube::api::GroupVersionKind::gvk("mlops.seldon.io", "v1alpha1", "Server");
        pinned_kind(&client, &gvk).await.is_ok()
            && pinned_kind(&client, &m).await.is_ok()
            && pinned_kind(&client, &s).await.is_ok()
    })
    .await;
    service_account_kubeconfig(&client, server, "ebb-system", "ebb-controller", dir).await
}

/// A kubeconfig (written in `dir`) holding the token of the ServiceAccount `ns/name`, from
/// the token Secret the token controller creates for it (on 1.20): a client with exactly
/// the permissions its RBAC grants.
pub(crate) async fn service_account_kubeconfig(
    client: &kube::Client,
    server: &str,
    ns: &str,
    name: &str,
    dir: &Path,
) -> PathBuf {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let start = Instant::now();
    let token = loop {
        let list = secrets
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let found = list.into_iter().find_map(|s| {
            let is_sa = s.type_.as_deref() == Some("kubernetes.io/service-account-token")
                && s.annotations()
                    .get("kubernetes.io/service-account.name")
                    .map(String::as_str)
                    == Some(name);
            is_sa
                .then(|| {
                    s.data
                        .as_ref()
                        .and_then(|d| d.get("token"))
                        .map(|t| String::from_utf8_lossy(&t.0).to_string())
                })
                .flatten()
        });
        if let Some(t) = found {
            break t;
        }
        if start.elapsed() > Duration::from_secs(30) {
            panic!("no token Secret for ServiceAccount {ns}/{name} after 30s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let path = dir.join(format!("{ns}-{name}.kubeconfig"));
    std::fs::write(
        &path,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: '{server}', insecure-skip-tls-verify: true}}\nusers:\n- name: {name}\n  user: {{token: '{token}'}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: {name}}}\ncurrent-context: c\n"),
    )
    .expect("write kubeconfig");
    path
}

/// A CRD shaped like Seldon Core 2's `Model`, with a scale subresource.
pub(crate) const SELDON_LIKE_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: models.mlops.seldon.io}
spec:
  group: mlops.seldon.io
  names: {kind: Model, plural: models, singular: model}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas, labelSelectorPath: .status.selector}
"#;

/// Polls `cond` every 100 ms until it holds; panics after `limit`.
pub(crate) async fn wait<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh namespace for one test.
pub(crate) async fn namespace(client: &kube::Client, name: &str) -> String {
    let ns = format!("{name}-{}", std::process::id() % 100_000);
    apply(
        client,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"),
        None,
    )
    .await;
    // Pods can be created once the namespace's default ServiceAccount has its token.
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), &ns);
    wait(
        Duration::from_secs(30),
        "the default ServiceAccount's token",
        || async {
            sas.get("default")
                .await
                .ok()
                .is_some_and(|sa| sa.secrets.is_some_and(|s| !s.is_empty()))
        },
    )
    .await;
    ns
}

/// `ebb controller` with the ServiceAccount's token.
pub(crate) struct Controller {
    child: Child,
    pub metrics: String,
}

impl Controller {
    pub(crate) fn start(p: &Plane, args: &[&str]) -> Controller {
        let port = free_port();
        let metrics = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_ebb"))
            .args(["controller", "--kubeconfig"])
            .arg(&p.controller_kubeconfig)
            .args(["--metrics-addr", &metrics])
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("EBB_TEST_CONTROLLER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            // EBB_TEST_CONTROLLER_LOG=FILTER (e.g. `debug`) shows the controller's log at that
            // level (with --nocapture).
            .stderr(if std::env::var_os("EBB_TEST_CONTROLLER_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::piped()
            })
            .spawn()
            .expect("start ebb controller");
        Controller { child, metrics }
    }

    /// The controller's /metrics text.
    pub(crate) fn scrape(&self) -> String {
        http_get(&self.metrics, "/metrics").unwrap_or_default()
    }

    /// Waits until it has made `more` decisions for Autoscaler `name` beyond those made so
    /// far, so that a check that something did *not* happen rests on passes made, not on time
    /// slept.
    pub(crate) async fn decisions_pass(&self, ns: &str, name: &str, more: f64) {
        let key =
            format!("ebb_controller_decisions_total{{namespace=\"{ns}\",autoscaler=\"{name}\"}}");
        let made = || metric(&self.scrape(), &key).unwrap_or(0.0);
        let start = made();
        let what = format!("{more} more decisions for {name}");
        wait(Duration::from_secs(30), &what, || async {
            made() >= start + more
        })
        .await;
    }

    /// Stops it gracefully (SIGTERM, as a rolling update does) and waits for it to exit.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.child.wait().expect("wait")
    }

    /// Kills it (SIGKILL, as a crash or a lost node) and returns what it logged.
    pub(crate) fn stop(mut self) -> String {
        let _ = self.child.kill();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = self.child.wait();
        err
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// A tiny HTTP GET over loopback.
pub(crate) fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text.split("\r\n\r\n").nth(1)?.to_string())
}

/// The value of a metric line (first match) in an exposition.
pub(crate) fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

static NEXT_IP: AtomicU32 = AtomicU32::new(0);

/// Plays the kubelet's part for pod `name`: Running and Ready at `ip`. False if the API
/// refused (the pod went away, say).
/// The pods `selector` matches, none when the list fails (a stand-in kubelet or a wait asks
/// again).
pub(crate) async fn pods_matching(pods: &Api<Pod>, selector: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

pub(crate) async fn mark_ready(pods: &Api<Pod>, name: &str, ip: &str) -> bool {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = serde_json::json!({"status": {
        "phase": "Running", "podIP": ip, "startTime": now,
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .is_ok()
}

/// A loopback address no other pod of this test run has (127.0.10.2 on): a pod's IP.
pub(crate) fn next_pod_ip() -> String {
    let n = NEXT_IP.fetch_add(1, Ordering::Relaxed) + 2;
    format!("127.0.{}.{}", 10 + n / 250, n % 250 + 2)
}

/// The stand-in kubelet of one selector: marks pods Running and Ready with their own
/// loopback IP, and serves each pod's metrics (in flight = `load` shared by the ready pods;
/// `gauge` as is) on that IP.
pub(crate) struct Kubelet {
    stop: Arc<AtomicBool>,
    /// Requests in flight over the whole target.
    pub load: Arc<Mutex<f64>>,
    /// A gauge each pod exposes as `model_gpu_utilization`.
    pub gauge: Arc<Mutex<f64>>,
    pub port: u16,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Kubelet {
    pub(crate) fn start(p: &Plane, ns: &str, selector: &str) -> Kubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let load = Arc::new(Mutex::new(0.0));
        let gauge = Arc::new(Mutex::new(0.0));
        let port = free_port();
        let (s, l, g) = (stop.clone(), load.clone(), gauge.clone());
        let kubeconfig = p.kubeconfig.clone();
        let (ns, selector) = (ns.to_string(), selector.to_string());
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(kubelet_loop(kubeconfig, ns, selector, port, s, l, g));
        });
        Kubelet {
            stop,
            load,
            gauge,
            port,
            handle: Some(handle),
        }
    }

    pub(crate) fn set_load(&self, v: f64) {
        if let Ok(mut l) = self.load.lock() {
            *l = v;
        }
    }

    pub(crate) fn set_gauge(&self, v: f64) {
        if let Ok(mut g) = self.gauge.lock() {
            *g = v;
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn kubelet_loop(
    kubeconfig: PathBuf,
    ns: String,
    selector: String,
    port: u16,
    stop: Arc<AtomicBool>,
    load: Arc<Mutex<f64>>,
    gauge: Arc<Mutex<f64>>,
) {
    let client = ebb_kube::client(Some(&kubeconfig)).await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let mut ips: BTreeMap<String, String> = BTreeMap::new();
    let ready_count = Arc::new(AtomicU32::new(1));
    let mut servers: Vec<Arc<AtomicBool>> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        let list = pods_matching(&pods, &selector).await;
        let live: Vec<&Pod> = list
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        ready_count.store(live.len().max(1) as u32, Ordering::Release);
        for pod in live {
            let name = pod.name_any();
            if ips.contains_key(&name) {
                continue;
            }
            let ip = next_pod_ip();
            // Serve the pod's metrics on its IP.
            let Ok(listener) = TcpListener::bind((ip.as_str(), port)) else {
                continue;
            };
            let alive = Arc::new(AtomicBool::new(true));
            servers.push(alive.clone());
            let (l, g, rc, st) = (
                load.clone(),
                gauge.clone(),
                ready_count.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || serve_metrics(listener, l, g, rc, st));
            if mark_ready(&pods, &name, &ip).await {
                ips.insert(name, ip);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = PostParams::default();
}

fn serve_metrics(
    listener: TcpListener,
    load: Arc<Mutex<f64>>,
    gauge: Arc<Mutex<f64>>,
    ready: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
) {
    let _ = listener.set_nonblocking(true);
    let mut served = 0u64;
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((mut s, _)) => {
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let n = f64::from(ready.load(Ordering::Acquire).max(1));
                let in_flight = load.lock().map(|l| *l).unwrap_or(0.0) / n;
                let g = gauge.lock().map(|g| *g).unwrap_or(0.0);
                served += 1;
                let body = format!("# TYPE ebb_in_flight gauge\nebb_in_flight {in_flight}\n# TYPE ebb_requests_total counter\nebb_requests_total {served}\nebb_responses_total {served}\n# TYPE model_gpu_utilization gauge\nmodel_gpu_utilization {g}\n");
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}
