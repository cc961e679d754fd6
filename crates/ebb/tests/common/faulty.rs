//! `ebb up` in front of `ebb fault-replica` processes, told how to misbehave through control
//! files (see its module docs).

use super::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A service of `n` fault replicas; `proxy` and `health` are extra flow-map fields.
pub(crate) fn faulty(
    dir: &Path,
    n: u32,
    proxy: &str,
    health: &str,
    extra: &str,
) -> (PathBuf, u16, PathBuf) {
    let port = free_port();
    let admin = free_port();
    let control = dir.join("control");
    std::fs::create_dir_all(&control).unwrap();
    let text = format!(
        r#"admin: 127.0.0.1:{admin}
services:
- name: faulty
  command: ["{{ebb}}", fault-replica, --port, "{{port}}", --control, "{control}"]
  listen: 127.0.0.1:{port}
  readiness: {{path: /ready, periodMs: 50}}
  syncPeriodMs: 250
  drainTimeoutSeconds: 5
  stopGraceSeconds: 1
  health: {{probeIntervalMs: 200, probeTimeoutMs: 300, baseEjectionSeconds: 1{health}}}
  proxy: {{upstreamTimeoutSeconds: 2{proxy}}}
{extra}  policy: {{minReplicas: {n}, maxReplicas: {n}, concurrency: {{targetPerReplica: 1000}}}}
"#,
        control = control.display()
    );
    let cfg = dir.join("faulty.yaml");
    std::fs::write(&cfg, text).unwrap();
    (cfg, port, control)
}

/// `ebb up` with `n` fault replicas, all ready.
pub(crate) fn start(dir: &Path, n: u32, proxy: &str, health: &str) -> (Up, PathBuf) {
    let (cfg, port, control) = faulty(dir, n, proxy, health, "");
    let up = Up::start(&cfg, port);
    up.wait_until(Duration::from_secs(20), |s| {
        s["replicas"]["ready"] == u64::from(n)
    });
    (up, control)
}

pub(crate) fn set_mode(control: &Path, who: &str, mode: &str) {
    std::fs::write(control.join(who), mode).unwrap();
}

/// Sends `raw` and reads one response: (status, body), or None if the connection closed or
/// timed out without one.
pub(crate) fn exchange(port: u16, raw: &str, limit: Duration) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(limit)).ok()?;
    s.write_all(raw.as_bytes()).ok()?;
    let mut text = Vec::new();
    let _ = s.read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        text.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    ))
}

pub(crate) fn proxy_counter(s: &serde_json::Value, name: &str) -> u64 {
    s["proxy"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name}: {s:#}"))
}

/// The in-flight and waiting counts all come back to zero.
pub(crate) fn counters_settle(up: &Up) {
    up.wait_until(Duration::from_secs(3), |s| {
        s["inFlight"] == 0
            && s["waiting"] == 0
            && s["replicas"]["list"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["inFlight"] == 0)
    });
}

/// The peak resident memory of process `pid`, in MiB.
pub(crate) fn peak_rss_mib(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = text
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}
