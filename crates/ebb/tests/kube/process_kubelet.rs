//! A stand-in kubelet for one fake node that runs each pod as a real process: it binds the
//! pods of its selector to the node, starts `ebb demo-model` (or `ebb demo-llm`) for each in a
//! network namespace of the pod's own ([`PodNetwork`]), and marks the pod Running and Ready
//! with the namespace's IP once the model answers its readiness path there. A pod being
//! deleted gets what a kubelet gives it: SIGTERM, its grace period to finish its requests,
//! then the pod object is removed and its namespace with it. kube-controller-manager's
//! endpoint controllers list the pods in Endpoints and EndpointSlices as in a cluster, and the
//! gateway reaches them at their pod IPs.

use crate::harness::{mark_ready, pods_matching, Plane};
use crate::pod_network::{PodHost, PodNetwork};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What each pod runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Program {
    /// `ebb demo-model`: 50 ms a request, 8 at once.
    Model,
    /// The same, ready only 2 s after it starts (a server loading its weights): a cold start
    /// the API's whole-second timestamps can measure.
    SlowModel,
    /// `ebb demo-llm` with 8 KV blocks and 20 ms steps: a 100-word prompt fills the cache, so
    /// requests wait in the engine.
    Llm,
}

impl Program {
    fn args(self, ip: &str) -> Vec<String> {
        let port = MODEL_PORT.to_string();
        let args: &[&str] = match self {
            Program::Model | Program::SlowModel => &[
                "demo-model",
                "--host",
                ip,
                "--port",
                &port,
                "--service-ms",
                "50",
                "--concurrency",
                "8",
                "--startup-ms",
                if self == Program::SlowModel {
                    "2000"
                } else {
                    "0"
                },
            ],
            Program::Llm => &[
                "demo-llm",
                "--host",
                ip,
                "--port",
                &port,
                "--kv-blocks",
                "8",
                "--step-ms",
                "20",
            ],
        };
        args.iter().map(|a| a.to_string()).collect()
    }

    fn readiness_path(self) -> &'static str {
        match self {
            Program::Model | Program::SlowModel => "/v2/health/ready",
            Program::Llm => "/health",
        }
    }
}

/// Runs pods of one selector as `ebb demo-model` processes until dropped.
pub(crate) struct ProcessKubelet {
    network: Arc<PodNetwork>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

/// The port every pod's model listens on (each on its own IP).
pub(crate) const MODEL_PORT: u16 = 8080;

/// The fake node the pods are bound to.
const NODE: &str = "ebb-e2e-node";

impl ProcessKubelet {
    pub(crate) fn start(p: &Plane, ns: &str, selector: &str) -> ProcessKubelet {
        ProcessKubelet::running(p, ns, selector, Program::Model)
    }

    /// Runs each pod as `program`.
    pub(crate) fn running(p: &Plane, ns: &str, selector: &str, program: Program) -> ProcessKubelet {
        let network = Arc::new(PodNetwork::create().unwrap_or_else(|e| {
            panic!("the stand-in kubelet needs network namespaces (root and iproute2): {e}")
        }));
        let net = network.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (s, kubeconfig) = (stop.clone(), p.kubeconfig.clone());
        let (ns, selector) = (ns.to_string(), selector.to_string());
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(run(kubeconfig, ns, selector, program, &net, s));
        });
        ProcessKubelet {
            network,
            stop,
            handle: Some(handle),
        }
    }

    /// Cuts the pod at `ip` off the network, as a failed node ([`PodNetwork::cut`]).
    pub(crate) fn cut_off(&self, ip: &str) -> bool {
        self.network.cut(ip)
    }

    /// Joins the pod at `ip` to the network again.
    pub(crate) fn rejoin(&self, ip: &str) -> bool {
        self.network.rejoin(ip)
    }
}

impl Drop for ProcessKubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Whether the model at `ip` answers its readiness path.
fn ready(ip: &str, path: &str) -> bool {
    let Ok(addr) = format!("{ip}:{MODEL_PORT}").parse() else {
        return false;
    };
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.starts_with("HTTP/1.1 200")
}

/// One pod's process as the kubelet keeps it.
struct Running {
    child: Child,
    host: PodHost,
    reported: bool,
    /// When SIGTERM was sent, once the pod is being deleted.
    terminating: Option<Instant>,
}

/// Binds `name` to the fake node, so that its deletion is graceful (a pod on no node is
/// deleted at once).
async fn bind(pods: &Api<Pod>, name: &str) -> bool {
    let binding = serde_json::json!({
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}
    });
    pods.create_subresource::<_, serde_json::Value>(
        "binding",
        name,
        &PostParams::default(),
        &binding,
    )
    .await
    .is_ok()
}

async fn run(
    kubeconfig: PathBuf,
    ns: String,
    selector: String,
    program: Program,
    network: &PodNetwork,
    stop: Arc<AtomicBool>,
) {
    let client = ebb_kube::client(Some(&kubeconfig)).await.expect("client");
    let node: Node =
        serde_json::from_value(serde_json::json!({"metadata": {"name": NODE}})).unwrap();
    let _ = Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await;
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    while !stop.load(Ordering::Acquire) {
        let list = pods_matching(&pods, &selector).await;
        let by_name: BTreeMap<String, &Pod> = list.iter().map(|p| (p.name_any(), p)).collect();
        for (name, pod) in &by_name {
            let deleting = pod.metadata.deletion_timestamp.is_some();
            if deleting || running.contains_key(name) {
                continue;
            }
            if pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_none()
                && !bind(&pods, name).await
            {
                continue;
            }
            let host = match network.add_pod() {
                Ok(host) => host,
                Err(e) => panic!("pod {name}'s network: {e}"),
            };
            let child = network
                .command(&host, env!("CARGO_BIN_EXE_ebb"))
                .args(program.args(&host.ip))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the pod's program");
            running.insert(
                name.clone(),
                Running {
                    child,
                    host,
                    reported: false,
                    terminating: None,
                },
            );
        }
        for (name, r) in running.iter_mut() {
            let pod = by_name.get(name);
            let deleting = pod.is_none_or(|p| p.metadata.deletion_timestamp.is_some());
            if deleting && r.terminating.is_none() {
                unsafe {
                    libc::kill(r.child.id() as i32, libc::SIGTERM);
                }
                r.terminating = Some(Instant::now());
            }
            if !deleting && !r.reported && ready(&r.host.ip, program.readiness_path()) {
                r.reported = mark_ready(&pods, name, &r.host.ip).await;
            }
        }
        // Terminated processes (or those past a 30 s grace): the pod object goes.
        let mut gone = Vec::new();
        for (name, r) in running.iter_mut() {
            let Some(since) = r.terminating else { continue };
            let exited = matches!(r.child.try_wait(), Ok(Some(_)));
            if exited || since.elapsed() > Duration::from_secs(30) {
                let _ = r.child.kill();
                let _ = r.child.wait();
                network.remove_pod(&r.host);
                let _ = pods
                    .delete(name, &DeleteParams::default().grace_period(0))
                    .await;
                gone.push(name.clone());
            }
        }
        for name in gone {
            running.remove(&name);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (_, mut r) in running {
        let _ = r.child.kill();
        let _ = r.child.wait();
        network.remove_pod(&r.host);
    }
}
