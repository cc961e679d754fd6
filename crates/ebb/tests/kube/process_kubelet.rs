//! A stand-in kubelet that runs each pod as a real process: for every pod of its selector it
//! starts `ebb demo-model` on a loopback address of the pod's own, marks the pod Running and
//! Ready with that IP once the model answers its readiness path, and stops the process when
//! the pod goes away. (Pods on no node are deleted at once by the API server, so there is no
//! grace period to honour here.) The gateway then reaches the pods at their pod IPs.

use crate::harness::{next_pod_ip, Plane};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Runs pods of one selector as `ebb demo-model` processes until dropped.
pub(crate) struct ProcessKubelet {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

/// The port every pod's model listens on (each on its own IP).
pub(crate) const MODEL_PORT: u16 = 8080;

impl ProcessKubelet {
    pub(crate) fn start(p: &Plane, ns: &str, selector: &str) -> ProcessKubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, kubeconfig) = (stop.clone(), p.kubeconfig.clone());
        let (ns, selector) = (ns.to_string(), selector.to_string());
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(run(kubeconfig, ns, selector, s));
        });
        ProcessKubelet {
            stop,
            handle: Some(handle),
        }
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
fn ready(ip: &str) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect((ip, MODEL_PORT)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = s.write_all(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.starts_with("HTTP/1.1 200")
}

async fn run(kubeconfig: PathBuf, ns: String, selector: String, stop: Arc<AtomicBool>) {
    let client = ebb_kube::client(Some(&kubeconfig)).await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    let mut running: BTreeMap<String, (Child, String, bool)> = BTreeMap::new();
    while !stop.load(Ordering::Acquire) {
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let live: BTreeMap<String, &Pod> = list
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| (p.name_any(), p))
            .collect();
        // Pods that went away: stop their process.
        running.retain(|name, (child, _, _)| {
            let keep = live.contains_key(name);
            if !keep {
                let _ = child.kill();
                let _ = child.wait();
            }
            keep
        });
        for name in live.keys() {
            if running.contains_key(name) {
                continue;
            }
            let ip = next_pod_ip();
            let child = Command::new(env!("CARGO_BIN_EXE_ebb"))
                .args([
                    "demo-model",
                    "--host",
                    &ip,
                    "--port",
                    &MODEL_PORT.to_string(),
                ])
                .args(["--service-ms", "20", "--concurrency", "8"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start ebb demo-model");
            running.insert(name.clone(), (child, ip, false));
        }
        // Started ones whose model answers: Running and Ready at their IP.
        for (name, (_, ip, reported)) in running.iter_mut().filter(|(_, r)| !r.2) {
            if !ready(ip) {
                continue;
            }
            let now = k8s_openapi::jiff::Timestamp::now().to_string();
            let status = serde_json::json!({"status": {
                "phase": "Running", "podIP": ip, "startTime": now,
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]
            }});
            *reported = pods
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .is_ok();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (_, (mut child, _, _)) in running {
        let _ = child.kill();
        let _ = child.wait();
    }
}
