//! The HTTP/2 connections (h2c) from one proxy thread to the replicas: one per replica,
//! shared by every request in flight to it, each driven by a task of its own (many requests
//! share it, so no one request can drive it).

use crate::body::RequestBody;
use crate::dial::dial;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a connection to a replica is pinged, and how long an answer may take before the
/// connection is given up. Pings find a connection whose replica vanished without a reset (a
/// node lost, a network cut): every request to the replica shares it, so it must not linger.
const PING_INTERVAL: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// One replica's connection, behind a lock held while it is being opened: the first
/// requests to a replica wait for one connection rather than each opening their own.
type Slot = Arc<tokio::sync::Mutex<Option<SendRequest<RequestBody>>>>;

/// The connections by replica address.
pub(crate) struct Multiplexed {
    slots: Mutex<HashMap<SocketAddr, Slot>>,
    connect_timeout: Duration,
}

impl Multiplexed {
    /// None yet; new ones give up connecting after `connect_timeout`.
    pub(crate) fn new(connect_timeout: Duration) -> Multiplexed {
        Multiplexed {
            slots: Mutex::new(HashMap::new()),
            connect_timeout,
        }
    }

    fn slot(&self, addr: SocketAddr) -> Slot {
        match self.slots.lock() {
            Ok(mut slots) => slots.entry(addr).or_default().clone(),
            Err(_) => Slot::default(),
        }
    }

    /// The replica's open connection (and `true`), or a new one (and `false`).
    pub(crate) async fn get(
        &self,
        addr: SocketAddr,
    ) -> Result<(SendRequest<RequestBody>, bool), String> {
        let slot = self.slot(addr);
        let mut held = slot.lock().await;
        if let Some(open) = held.as_ref().filter(|s| !s.is_closed()) {
            return Ok((open.clone(), true));
        }
        let stream = dial(addr, self.connect_timeout).await?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(replica = %addr, "HTTP/2 connection ended: {e}");
            }
        });
        *held = Some(sender.clone());
        Ok((sender, false))
    }

    /// Drops the replica's connection, so the next request opens a new one.
    pub(crate) async fn forget(&self, addr: SocketAddr) {
        *self.slot(addr).lock().await = None;
    }

    /// Whether an open connection to `addr` would be handed out.
    #[cfg(test)]
    pub(crate) async fn holds_open(&self, addr: SocketAddr) -> bool {
        self.slot(addr)
            .lock()
            .await
            .as_ref()
            .is_some_and(|s| !s.is_closed())
    }
}
