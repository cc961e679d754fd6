//! Helpers for the `ebb up` end-to-end tests: real processes on loopback.
#![allow(dead_code)]

pub(crate) mod faulty;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn ebb() -> &'static str {
    env!("CARGO_BIN_EXE_ebb")
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn config(dir: &Path, port: u16, policy: &str, extra: &str) -> PathBuf {
    config_of_model(dir, port, (20, 2), policy, extra)
}

/// [`config`] with the demo model taking `service_ms` a request, `concurrency` at once.
pub(crate) fn config_of_model(
    dir: &Path,
    port: u16,
    (service_ms, concurrency): (u32, u32),
    policy: &str,
    extra: &str,
) -> PathBuf {
    let admin = free_port();
    let text = format!(
        r#"admin: 127.0.0.1:{admin}
services:
- name: iris
  command: ["{{ebb}}", demo-model, --port, "{{port}}", --service-ms, "{service_ms}", --concurrency, "{concurrency}"]
  listen: 127.0.0.1:{port}
  syncPeriodMs: 250
  drainTimeoutSeconds: 10
  stopGraceSeconds: 2
{extra}  policy:
{policy}
"#
    );
    let p = dir.join(format!("ebb-{port}.yaml"));
    std::fs::write(&p, text).unwrap();
    p
}

pub(crate) struct Up {
    pub child: Child,
    /// The service port.
    pub port: u16,
    /// The admin port (`/ebb/status`, `/metrics`).
    pub admin: u16,
    /// The service's name (its status is `/ebb/status/{name}`).
    pub name: String,
}

/// The admin port and first service name a config file names.
fn admin_of(cfg: &Path) -> (u16, String) {
    let text = std::fs::read_to_string(cfg).unwrap();
    let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let admin = v["admin"]
        .as_str()
        .expect("test configs name their admin address");
    let port = admin.rsplit(':').next().unwrap().parse().unwrap();
    (port, v["services"][0]["name"].as_str().unwrap().to_string())
}

impl Up {
    /// `ebb up` running, without waiting for anything.
    pub(crate) fn spawn(cfg: &Path, port: u16) -> Up {
        Up::spawn_with(cfg, port, |_| {})
    }

    /// `ebb up` running, with `adjust` applied to its command first (limits, environment).
    pub(crate) fn spawn_with(cfg: &Path, port: u16, adjust: impl FnOnce(&mut Command)) -> Up {
        let (admin, name) = admin_of(cfg);
        let mut cmd = Command::new(ebb());
        cmd.args(["up", cfg.to_str().unwrap(), "--plain"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        adjust(&mut cmd);
        let child = cmd.spawn().unwrap();
        Up {
            child,
            port,
            admin,
            name,
        }
    }

    /// `ebb up` running, once a first replica is ready.
    pub(crate) fn start(cfg: &Path, port: u16) -> Up {
        let up = Up::spawn(cfg, port);
        up.wait_until(Duration::from_secs(20), |s| {
            s["replicas"]["ready"].as_u64() >= Some(1)
        });
        up
    }

    /// `ebb up` with exactly `n` replicas, once all of them are ready.
    pub(crate) fn fixed(dir: &Path, n: u32) -> Up {
        let port = free_port();
        let policy = format!(
            "    minReplicas: {n}\n    maxReplicas: {n}\n    concurrency: {{targetPerReplica: 10}}"
        );
        let up = Up::start(&config(dir, port, &policy, ""), port);
        up.wait_until(Duration::from_secs(20), |s| {
            s["replicas"]["ready"].as_u64() == Some(u64::from(n))
        });
        up
    }

    pub(crate) fn status(&self) -> Option<serde_json::Value> {
        self.status_of(&self.name)
    }

    /// The status of the service `name`.
    pub(crate) fn status_of(&self, name: &str) -> Option<serde_json::Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            s,
            "GET /ebb/status/{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        serde_json::from_str(text.split("\r\n\r\n").nth(1)?).ok()
    }

    pub(crate) fn wait_until(
        &self,
        limit: Duration,
        cond: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            if let Some(s) = self.status() {
                if cond(&s) {
                    return s;
                }
                if start.elapsed() > limit {
                    panic!("condition not met within {limit:?}; status: {s:#}");
                }
            } else if start.elapsed() > limit {
                panic!("no status within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The value of the sample `series` (the whole text before the value) on the admin
    /// port's `/metrics`.
    pub(crate) fn metric(&self, series: &str) -> f64 {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
    }

    pub(crate) fn pids(&self) -> Vec<i32> {
        self.status().unwrap()["replicas"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["pid"].as_i64().unwrap() as i32)
            .filter(|p| *p > 0)
            .collect()
    }

    /// Ctrl-C, and the process's output once it has exited.
    pub(crate) fn interrupt(mut self) -> Output {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "ebb up did not exit after Ctrl-C"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_end(&mut stdout);
        }
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_end(&mut stderr);
        }
        Output {
            status: self.child.wait().unwrap(),
            stdout,
            stderr,
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

pub(crate) fn load(port: u16, pattern: &str) -> String {
    load_model(port, "iris", pattern)
}

pub(crate) fn load_model(port: u16, model: &str, pattern: &str) -> String {
    let o = Command::new(ebb())
        .args([
            "load",
            "--target",
            &format!("http://127.0.0.1:{port}/v2/models/{model}/infer"),
            "--pattern",
            pattern,
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn alive(pid: i32) -> bool {
    unsafe { libc::kill(pid, 0) == 0 }
}

/// A POST to the proxy: (status, body).
pub(crate) fn post(port: u16, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        status,
        text.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    )
}
