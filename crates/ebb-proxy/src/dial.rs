//! Opening a TCP connection to a replica.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// A TCP connection to `addr` with Nagle off (a proxy's small writes must not wait for
/// acknowledgements), given up after `timeout`.
pub(crate) async fn dial(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connecting took over {:.1}s", timeout.as_secs_f64()))?
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
