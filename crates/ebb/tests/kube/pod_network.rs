//! Pod networking for the stand-in kubelet, as a CNI plugin gives it: each pod gets a network
//! namespace of its own, joined by a veth pair to a bridge in this machine's namespace, with an
//! address from 198.18.0.0/15 (RFC 2544's range for test networks) that nothing else uses.
//! Loopback addresses will not do: the API server refuses them in Endpoints and EndpointSlices,
//! so the endpoint controllers could not list the pods.
//!
//! One [`PodNetwork`] claims one /24 (198.18.K.0/24, bridge `ebbpodK` holding 198.18.K.1) by
//! creating its bridge: the kernel's "exists" answer is the lock between concurrent tests and
//! test runs. The bridge's only route is the connected one: nothing is forwarded or routed off
//! the machine. Dropping the network (also while a test panics) removes its namespaces and its
//! bridge; a network whose test process was killed is reclaimed by the next run that finds it
//! (the bridge's alias names the owner's PID).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// The pods' address range, one /24 per network: 198.18.K.0/24.
const PREFIX: &str = "198.18";

/// How many networks may exist at once (third octets 0..).
const NETWORKS: u32 = 200;

/// Runs `ip` with `args`; the error says which command failed and what it printed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e} (iproute2 is needed)", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// What `ip` prints for `args` ("" when it fails).
fn ip_output(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The alias that marks a bridge as this process's.
fn owner_alias(pid: u32) -> String {
    format!("ebb-test-pid-{pid}")
}

/// Whether bridge `bridge` belongs to a test process that no longer runs.
fn abandoned(bridge: &str) -> bool {
    let text = ip_output(&["-o", "link", "show", "dev", bridge]);
    let Some(pid) = text
        .split_whitespace()
        .skip_while(|w| *w != "alias")
        .nth(1)
        .and_then(|a| a.strip_prefix("ebb-test-pid-"))
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return false;
    };
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The namespaces of network `index` that exist now.
fn namespaces_of(index: u32) -> Vec<String> {
    let prefix = format!("ebbpod{index}-");
    ip_output(&["netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// The host ends of network `index`'s veth pairs that exist now.
fn links_of(index: u32) -> Vec<String> {
    let prefix = format!("ebv{index}-");
    ip_output(&["-o", "link", "show", "type", "veth"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name))
        .filter(|n| n.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// One pod's place on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodHost {
    /// Its network namespace (`ip netns exec` runs the pod's program there).
    pub netns: String,
    /// Its IP, the pod's `status.podIP`.
    pub ip: String,
    /// The veth end on the bridge.
    veth: String,
}

/// Removes a pod's veth pair, then its namespace. The pair is deleted first and by name: a
/// namespace's own teardown is deferred by the kernel, and a pair left to it would still hold
/// its names when the next network reuses them.
fn remove(netns: &str, veth: &str) {
    let _ = ip(&["link", "delete", veth]);
    let _ = ip(&["netns", "delete", netns]);
}

/// A bridge with the pods' namespaces on it, removed when dropped.
pub(crate) struct PodNetwork {
    index: u32,
    bridge: String,
    next_host: AtomicU32,
    /// The pods on the network, to remove on drop.
    pods: Mutex<Vec<PodHost>>,
}

impl PodNetwork {
    /// Claims a free /24 and its bridge. Fails (with the command that failed) where network
    /// namespaces cannot be made: they need root (or CAP_NET_ADMIN) and iproute2.
    pub(crate) fn create() -> Result<PodNetwork, String> {
        let mut last = String::new();
        for index in 0..NETWORKS {
            let bridge = format!("ebbpod{index}");
            // A dead owner's namespaces and bridge; its veth pairs go once the bridge is
            // claimed, below.
            if abandoned(&bridge) {
                for ns in namespaces_of(index) {
                    let _ = ip(&["netns", "delete", &ns]);
                }
                let _ = ip(&["link", "delete", &bridge]);
            }
            match ip(&["link", "add", "name", &bridge, "type", "bridge"]) {
                Ok(()) => {}
                Err(e) if e.contains("exists") => continue,
                Err(e) => {
                    last = e;
                    break;
                }
            }
            // The bridge is ours: pairs a previous owner left behind would clash by name.
            for stale in links_of(index) {
                let _ = ip(&["link", "delete", &stale]);
            }
            let net = PodNetwork {
                index,
                bridge: bridge.clone(),
                next_host: AtomicU32::new(2),
                pods: Mutex::new(Vec::new()),
            };
            let alias = owner_alias(std::process::id());
            ip(&["link", "set", "dev", &bridge, "alias", &alias])?;
            let gateway = format!("{PREFIX}.{index}.1/24");
            ip(&["addr", "add", &gateway, "dev", &bridge])?;
            ip(&["link", "set", "dev", &bridge, "up"])?;
            return Ok(net);
        }
        Err(format!("no pod network could be made: {last}"))
    }

    /// A namespace for one more pod, on the bridge, with its address up.
    pub(crate) fn add_pod(&self) -> Result<PodHost, String> {
        let host = self.next_host.fetch_add(1, Ordering::Relaxed);
        if host > 254 {
            return Err(format!("network {} has no address left", self.index));
        }
        let netns = format!("ebbpod{}-{host}", self.index);
        // Both ends named apart from every other pod's: two pods being set up at once must
        // not ask for the same name (a peer named `eth0` can clash with the host's own).
        let veth = format!("ebv{}-{host}", self.index);
        let inside = format!("ebp{}-{host}", self.index);
        let addr = format!("{PREFIX}.{}.{host}", self.index);
        ip(&["netns", "add", &netns])?;
        let pod = PodHost {
            netns: netns.clone(),
            ip: addr.clone(),
            veth: veth.clone(),
        };
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pod.clone());
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", &inside, "netns", &netns,
        ])?;
        ip(&["link", "set", "dev", &veth, "master", &self.bridge])?;
        ip(&["link", "set", "dev", &veth, "up"])?;
        let in_ns = |args: &[&str]| {
            let mut all = vec!["-n", netns.as_str()];
            all.extend_from_slice(args);
            ip(&all)
        };
        in_ns(&["link", "set", "dev", "lo", "up"])?;
        in_ns(&["addr", "add", &format!("{addr}/24"), "dev", &inside])?;
        in_ns(&["link", "set", "dev", &inside, "up"])?;
        Ok(pod)
    }

    /// `program` to be started inside `host`'s namespace. `ip netns exec` execs it, so the
    /// child's PID is the program's own and signals reach it.
    pub(crate) fn command(&self, host: &PodHost, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &host.netns, program]);
        c
    }

    /// Removes `host`'s namespace (its veth pair goes with it), once its program has exited.
    pub(crate) fn remove_pod(&self, host: &PodHost) {
        remove(&host.netns, &host.veth);
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| p != host);
    }

    /// Cuts the pod at `ip` off the network without a word, as a failed node or a partition
    /// does: its veth goes down, so packets to it are dropped (no reset, no FIN) while its
    /// process and its pod object stay as they were. False if no pod has that IP.
    pub(crate) fn cut(&self, ip: &str) -> bool {
        self.set_link(ip, "down")
    }

    /// Joins the pod at `ip` to the network again after a [`cut`](Self::cut).
    pub(crate) fn rejoin(&self, ip: &str) -> bool {
        self.set_link(ip, "up")
    }

    fn set_link(&self, ip: &str, state: &str) -> bool {
        let pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.iter()
            .find(|p| p.ip == ip)
            .is_some_and(|p| self::ip(&["link", "set", "dev", &p.veth, state]).is_ok())
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        let pods = std::mem::take(&mut *self.pods.lock().unwrap_or_else(|e| e.into_inner()));
        for pod in pods {
            remove(&pod.netns, &pod.veth);
        }
        let _ = ip(&["link", "delete", &self.bridge]);
    }
}
