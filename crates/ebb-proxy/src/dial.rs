//! Opening a TCP connection to a replica.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long data sent to a replica (a request, or a keep-alive probe) may go unacknowledged
/// before its connection is given up. A replica that is merely slow still acknowledges what
/// it is sent (its kernel does), so this only ends connections to a replica that is gone
/// without a word: a failed node or a partition drops packets, sends no reset, and would
/// otherwise leave each request on it waiting for the whole upstream timeout.
pub(crate) const UNACKNOWLEDGED_LIMIT: Duration = Duration::from_secs(5);

/// How long a connection is silent before keep-alive probes start, and how often they go:
/// they are what a waiting request's connection sends, so that the limit above applies to it.
const KEEPALIVE_AFTER: Duration = Duration::from_secs(2);
const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);

/// A TCP connection to `addr` with Nagle off (a proxy's small writes must not wait for
/// acknowledgements), given up after `timeout`. Keep-alive probes and a limit on
/// unacknowledged data ([`UNACKNOWLEDGED_LIMIT`]) notice a replica that vanished.
pub(crate) async fn dial(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting took over {:.1}s", timeout.as_secs_f64()))?
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    notice_vanishing(&stream);
    Ok(stream)
}

/// Sets keep-alive probes and, on Linux, the limit on unacknowledged data. Best effort: a
/// socket that refuses them still serves.
fn notice_vanishing(stream: &TcpStream) {
    let socket = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_AFTER)
        .with_interval(KEEPALIVE_EVERY);
    let _ = socket.set_tcp_keepalive(&keepalive);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = socket.set_tcp_user_timeout(Some(UNACKNOWLEDGED_LIMIT));
}
