//! What the benchmarks of `ebb up` share: starting it on free ports, and reading its status.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first service's status (the benchmarks run one).
pub(crate) fn status(port: u16) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET /ebb/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let all: serde_json::Value = serde_json::from_str(text.split("\r\n\r\n").nth(1)?).ok()?;
    Some(all["services"][0].clone())
}

pub(crate) fn wait_for(
    port: u16,
    limit: Duration,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> Option<(Instant, serde_json::Value)> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(s) = status(port) {
            if cond(&s) {
                return Some((Instant::now(), s));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// `ebb up` with `config` (PORT is the service port); returns the service and admin ports.
pub(crate) fn up(config: &str) -> (Child, u16, u16, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let path = dir.path().join("bench.yaml");
    let admin = free_port();
    let text = format!(
        "admin: 127.0.0.1:{admin}\n{}",
        config.replace("PORT", &port.to_string())
    );
    std::fs::write(&path, text).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["up", path.to_str().unwrap(), "--plain"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(admin, Duration::from_secs(20), |s| {
        s["replicas"]["ready"].as_u64() >= Some(1)
    })
    .expect("ebb up started");
    (child, port, admin, dir)
}

pub(crate) fn stop(mut child: Child) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let _ = child.wait();
}
