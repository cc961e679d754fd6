//! Keep-alive connections from one proxy thread to the replicas, driven by the request that
//! uses them.
//!
//! A pooled HTTP client runs each connection as a task of its own and hands it requests over a
//! channel: every request then wakes two tasks. Here the request's own task polls its
//! connection while it waits for the answer, and puts the connection back in the thread's pool
//! afterwards, so a request is read, forwarded and answered by one task (as HAProxy and nginx
//! do with one event loop per thread). A pooled connection the replica has closed is noticed
//! on its next use: the request, not yet sent, goes out on a fresh connection.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;
use tokio::net::TcpStream;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A pooled HTTP client for the calls that are not the proxy's hot path: the supervisor's
/// readiness probes, model loads, the load generator.
pub type Upstream = Client<HttpConnector, Full<Bytes>>;

/// A new upstream client that gives up connecting after `connect_timeout`.
pub fn upstream(connect_timeout: Duration) -> Upstream {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

type Conn = Connection<TokioIo<TcpStream>, Full<Bytes>>;

/// One idle connection: the handle to send on and the connection to drive.
struct Pooled {
    sender: SendRequest<Full<Bytes>>,
    conn: Pin<Box<Conn>>,
}

/// Idle connections kept per replica at most.
const IDLE_PER_REPLICA: usize = 256;

/// Why a request got no answer.
#[derive(Debug)]
pub struct Failed {
    /// What happened.
    pub error: String,
    /// Whether the replica may have received the request.
    pub reached: bool,
}

/// One proxy thread's connections to the replicas, by port.
pub struct Upstreams {
    idle: Mutex<HashMap<u16, Vec<Pooled>>>,
    connect_timeout: Duration,
}

/// Awaits `work` while driving `conn` (which `work` depends on). `None` when the connection
/// ended first and `work` could not finish without it; `alive` then turns false.
async fn driving<F: Future>(
    conn: &mut Pin<Box<Conn>>,
    alive: &mut bool,
    work: F,
) -> Option<F::Output> {
    tokio::pin!(work);
    if !*alive {
        return ready_now(work.as_mut()).await;
    }
    tokio::select! {
        biased;
        out = &mut work => Some(out),
        _ = conn.as_mut() => {
            *alive = false;
            // What the connection delivered before it ended, if that finished the work.
            ready_now(work.as_mut()).await
        }
    }
}

/// `f`'s output if it is ready without waiting.
async fn ready_now<F: Future>(mut f: Pin<&mut F>) -> Option<F::Output> {
    std::future::poll_fn(|cx| match f.as_mut().poll(cx) {
        std::task::Poll::Ready(out) => std::task::Poll::Ready(Some(out)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

/// The replica closed the connection during the exchange.
fn closed() -> Failed {
    Failed {
        error: "the replica closed the connection before answering".into(),
        reached: true,
    }
}

impl Upstreams {
    /// No connections yet; new ones give up connecting after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Upstreams {
        Upstreams {
            idle: Mutex::new(HashMap::new()),
            connect_timeout,
        }
    }

    fn take(&self, port: u16) -> Option<Pooled> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(&port)?;
        while let Some(p) = list.pop() {
            if !p.sender.is_closed() {
                return Some(p);
            }
        }
        None
    }

    fn put(&self, port: u16, p: Pooled) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(port).or_default();
            if list.len() < IDLE_PER_REPLICA {
                list.push(p);
            }
        }
    }

    async fn connect(&self, port: u16) -> Result<Pooled, Failed> {
        let refused = |error: String| Failed {
            error,
            reached: false,
        };
        let stream = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        .map_err(|_| {
            refused(format!(
                "connecting took over {:.1}s",
                self.connect_timeout.as_secs_f64()
            ))
        })?
        .map_err(|e| refused(format!("cannot connect: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| refused(format!("handshake: {e}")))?;
        Ok(Pooled {
            sender,
            conn: Box::pin(conn),
        })
    }

    /// Sends `req` to the replica on `port` and reads the whole answer.
    pub async fn send(
        &self,
        port: u16,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<Full<Bytes>>, Failed> {
        loop {
            let (mut c, reused) = match self.take(port) {
                Some(c) => (c, true),
                None => (self.connect(port).await?, false),
            };
            let mut alive = true;
            if !matches!(
                driving(&mut c.conn, &mut alive, c.sender.ready()).await,
                Some(Ok(()))
            ) {
                if reused {
                    continue;
                }
                return Err(Failed {
                    error: "the connection closed before the request was sent".into(),
                    reached: false,
                });
            }
            let sent = c.sender.try_send_request(req);
            let head = match driving(&mut c.conn, &mut alive, sent).await {
                None => return Err(closed()),
                Some(Ok(head)) => head,
                Some(Err(mut e)) => match e.take_message() {
                    // Not sent: a pooled connection the replica had closed. Use another.
                    Some(again) if reused => {
                        req = again;
                        continue;
                    }
                    unsent => {
                        return Err(Failed {
                            error: e.into_error().to_string(),
                            reached: unsent.is_none(),
                        })
                    }
                },
            };
            let (parts, body) = head.into_parts();
            let body = driving(&mut c.conn, &mut alive, body.collect())
                .await
                .ok_or_else(closed)?
                .map_err(|e| Failed {
                    error: format!("the answer broke off: {e}"),
                    reached: true,
                })?;
            // One more poll lets the connection finish the exchange and become ready again.
            if alive {
                let finished = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(c.conn.as_mut().poll(cx).is_ready())
                })
                .await;
                if !finished && !c.sender.is_closed() {
                    self.put(port, c);
                }
            }
            return Ok(Response::from_parts(parts, Full::new(body.to_bytes())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers each connection's first request, then closes it without saying
    /// so (as a replica whose keep-alive timeout passed).
    async fn one_shot_server() -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                });
            }
        });
        port
    }

    fn get() -> Request<Full<Bytes>> {
        Request::get("/x").body(Full::new(Bytes::new())).unwrap()
    }

    #[tokio::test]
    async fn a_pooled_connection_the_replica_closed_is_replaced_without_failing() {
        let port = one_shot_server().await;
        let up = Upstreams::new(Duration::from_secs(1));
        for _ in 0..3 {
            let r = up.send(port, get()).await.unwrap();
            assert_eq!(r.status(), 200);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_refused_connection_never_reached_the_replica() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = Upstreams::new(Duration::from_secs(1))
            .send(port, get())
            .await
            .unwrap_err();
        assert!(!e.reached, "{e:?}");
    }
}
