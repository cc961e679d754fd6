//! Keep-alive connections from one proxy thread to the replicas, driven by the request that
//! uses them.
//!
//! A pooled HTTP client runs each connection as a task of its own and hands it requests over a
//! channel: every request then wakes two tasks. Here the request's own task polls its
//! connection while it waits for the answer's head, and then the answer's body polls it while
//! the body streams to the client ([`UpstreamBody`]), so a request is read, forwarded and
//! answered by one task (as HAProxy and nginx do with one event loop per thread). Once the
//! last byte has passed, the connection goes back to the thread's pool; an answer the client
//! left early closes its connection, which tells the replica to stop. A pooled connection the
//! replica has closed is noticed on its next use: the request, not yet sent, goes out on a
//! fresh connection.

use crate::body::RequestBody;
use crate::dial::dial;
use crate::multiplexed::Multiplexed;
use crate::silence::Silence;
use crate::BoxError;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A pooled HTTP client for the calls that are not the proxy's hot path: the supervisor's
/// readiness probes, model loads, the load generator.
pub type Upstream = Client<HttpConnector, Full<Bytes>>;

/// A new upstream client that gives up connecting after `connect_timeout`.
pub fn upstream(connect_timeout: Duration) -> Upstream {
    client(connect_timeout, false)
}

/// [`upstream`] speaking HTTP/2 with prior knowledge (h2c): gRPC health probes.
pub fn upstream_h2c(connect_timeout: Duration) -> Upstream {
    client(connect_timeout, true)
}

fn client(connect_timeout: Duration, h2c: bool) -> Upstream {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(connect_timeout));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .http2_only(h2c)
        .build(connector)
}

type Conn = Connection<TokioIo<TcpStream>, RequestBody>;

/// How the proxy speaks to the replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 keep-alive connections, one exchange at a time each.
    #[default]
    Http1,
    /// HTTP/2 over cleartext with prior knowledge (h2c), as gRPC servers (Triton's and TF
    /// Serving's gRPC ports, KServe's v2 gRPC) speak it: one multiplexed connection per
    /// replica and proxy thread, trailers passed through.
    H2c,
}

/// One idle connection: the handle to send on and the connection to drive.
struct Pooled {
    sender: SendRequest<RequestBody>,
    conn: Pin<Box<Conn>>,
    /// When it last finished an exchange.
    idle_since: Instant,
}

/// Idle connections kept per replica at most.
const IDLE_PER_REPLICA: usize = 256;

/// How long an idle connection is kept by default: less than the keep-alive timeouts of the
/// servers models run in (uvicorn's and Node's 5 s), so that the proxy gives a connection up
/// before the replica closes it. A replica closing a connection just as a request goes out
/// on it makes that request fail, and a POST that may have arrived is not sent again
/// (HAProxy purges idle server connections for the same reason).
pub const DEFAULT_IDLE_LIMIT: Duration = Duration::from_secs(4);

/// Why a request got no answer.
#[derive(Debug)]
pub struct Failed {
    /// What happened.
    pub error: String,
    /// Whether the replica may have received the request.
    pub reached: bool,
    /// The request, when it was never handed to a connection: it can be sent elsewhere even
    /// with a streamed body.
    pub unsent: Option<Request<RequestBody>>,
}

impl Failed {
    /// A request its connection refused: back to be sent on another connection when that
    /// one was reused (the replica had closed it while it was idle), else the failure, with
    /// the request when it never left. (Large either way: both sides carry the request, as
    /// [`Upstreams::send`]'s error does.)
    #[allow(clippy::result_large_err)]
    fn again_or(
        mut e: hyper::client::conn::TrySendError<Request<RequestBody>>,
        reused: bool,
    ) -> Result<Request<RequestBody>, Failed> {
        match e.take_message() {
            Some(again) if reused => Ok(again),
            unsent => Err(Failed {
                error: e.into_error().to_string(),
                reached: unsent.is_none(),
                unsent,
            }),
        }
    }

    /// The request never left: it can go to another replica as it is.
    fn unsent(error: impl Into<String>, req: Request<RequestBody>) -> Failed {
        Failed {
            error: error.into(),
            reached: false,
            unsent: Some(req),
        }
    }
}

/// Idle connections by replica address, shared by a thread's requests and the bodies that
/// return connections to it.
struct Pool {
    idle: Mutex<Idle>,
    connect_timeout: Duration,
    /// Idle connections older than this are closed instead of used.
    idle_limit: Duration,
}

/// The idle connections, and when those past the limit were last swept out.
struct Idle {
    by_addr: HashMap<SocketAddr, Vec<Pooled>>,
    swept: Instant,
}

impl Pool {
    fn take(&self, addr: SocketAddr) -> Option<Pooled> {
        let now = Instant::now();
        let mut idle = self.idle.lock().ok()?;
        self.sweep(&mut idle, now);
        let list = idle.by_addr.get_mut(&addr)?;
        while let Some(p) = list.pop() {
            if self.usable(&p, now) {
                return Some(p);
            }
        }
        None
    }

    fn put(&self, addr: SocketAddr, mut p: Pooled) {
        let now = Instant::now();
        if let Ok(mut idle) = self.idle.lock() {
            self.sweep(&mut idle, now);
            let list = idle.by_addr.entry(addr).or_default();
            if list.len() < IDLE_PER_REPLICA {
                p.idle_since = now;
                list.push(p);
            }
        }
    }

    /// Whether `p` may carry a request at `now`: open, and idle for less than the limit.
    fn usable(&self, p: &Pooled, now: Instant) -> bool {
        !p.sender.is_closed() && now.saturating_duration_since(p.idle_since) < self.idle_limit
    }

    /// Closes the connections idle past the limit, once per limit: those of replicas no
    /// request goes to any more (gone pods) would otherwise stay open for the process's life.
    fn sweep(&self, idle: &mut Idle, now: Instant) {
        if now.saturating_duration_since(idle.swept) < self.idle_limit {
            return;
        }
        idle.swept = now;
        for list in idle.by_addr.values_mut() {
            list.retain(|p| self.usable(p, now));
        }
        idle.by_addr.retain(|_, list| !list.is_empty());
    }

    /// Returns `c` to the pool once its exchange is over, if the replica keeps it open. One
    /// more poll lets the connection finish the exchange and become ready again.
    fn release(&self, addr: SocketAddr, mut c: Pooled, cx: &mut Context<'_>) {
        let finished = c.conn.as_mut().poll(cx).is_ready();
        if !finished && !c.sender.is_closed() {
            self.put(addr, c);
        }
    }
}

/// One proxy thread's connections to the replicas, by address.
pub struct Upstreams {
    pool: Arc<Pool>,
    protocol: UpstreamProtocol,
    /// The HTTP/2 connection to each replica (h2c), shared by the requests in flight on it.
    multiplexed: Multiplexed,
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
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// The replica closed the connection during the exchange.
fn closed() -> Failed {
    Failed {
        error: "the replica closed the connection before answering".into(),
        reached: true,
        unsent: None,
    }
}

impl Upstreams {
    /// No connections yet; new ones speak `protocol` and give up connecting after
    /// `connect_timeout`.
    pub fn new(connect_timeout: Duration, protocol: UpstreamProtocol) -> Upstreams {
        Upstreams {
            pool: Arc::new(Pool {
                idle: Mutex::new(Idle {
                    by_addr: HashMap::new(),
                    swept: Instant::now(),
                }),
                connect_timeout,
                idle_limit: DEFAULT_IDLE_LIMIT,
            }),
            protocol,
            multiplexed: Multiplexed::new(connect_timeout),
        }
    }

    /// Closes HTTP/1.1 connections idle for `limit` instead of using them (set it below the
    /// replicas' keep-alive timeout; [`DEFAULT_IDLE_LIMIT`] otherwise).
    pub fn with_idle_limit(mut self, limit: Duration) -> Upstreams {
        if let Some(pool) = Arc::get_mut(&mut self.pool) {
            pool.idle_limit = limit;
        }
        self
    }

    /// The idle HTTP/1.1 connections kept now, to all replicas.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.pool
            .idle
            .lock()
            .map_or(0, |i| i.by_addr.values().map(Vec::len).sum())
    }

    async fn connect(&self, addr: SocketAddr) -> Result<Pooled, String> {
        let stream = dial(addr, self.pool.connect_timeout).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        Ok(Pooled {
            sender,
            conn: Box::pin(conn),
            idle_since: Instant::now(),
        })
    }

    /// Sends `req` to the replica at `addr` and returns the answer once its head has come;
    /// the body streams as the caller reads it, and fails after `silence` without a byte.
    pub async fn send(
        &self,
        addr: SocketAddr,
        req: Request<RequestBody>,
        silence: Duration,
    ) -> Result<Response<UpstreamBody>, Failed> {
        match self.protocol {
            UpstreamProtocol::Http1 => self.send_http1(addr, req, silence).await,
            UpstreamProtocol::H2c => self.send_h2c(addr, req, silence).await,
        }
    }

    /// [`Upstreams::send`] over the replica's HTTP/2 connection. A request its connection
    /// refused before sending (the replica had closed it) goes out on a new one.
    async fn send_h2c(
        &self,
        addr: SocketAddr,
        mut req: Request<RequestBody>,
        silence: Duration,
    ) -> Result<Response<UpstreamBody>, Failed> {
        *req.version_mut() = hyper::Version::HTTP_2;
        if req.uri().authority().is_none() {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            if let Ok(uri) = format!("http://{addr}{path}").parse() {
                *req.uri_mut() = uri;
            }
        }
        loop {
            let (mut sender, reused) = match self.multiplexed.get(addr).await {
                Ok(s) => s,
                Err(error) => return Err(Failed::unsent(error, req)),
            };
            if sender.ready().await.is_err() {
                self.multiplexed.forget(addr).await;
                if reused {
                    continue;
                }
                return Err(Failed::unsent(
                    "the HTTP/2 connection closed before the request was sent",
                    req,
                ));
            }
            match sender.try_send_request(req).await {
                Ok(head) => {
                    let (parts, body) = head.into_parts();
                    let body = UpstreamBody {
                        body,
                        conn: None,
                        alive: false,
                        home: (self.pool.clone(), addr),
                        pause: Silence::new(silence),
                    };
                    return Ok(Response::from_parts(parts, body));
                }
                Err(e) => {
                    self.multiplexed.forget(addr).await;
                    req = Failed::again_or(e, reused)?;
                }
            }
        }
    }

    /// [`Upstreams::send`] over a pooled HTTP/1.1 connection.
    async fn send_http1(
        &self,
        addr: SocketAddr,
        mut req: Request<RequestBody>,
        silence: Duration,
    ) -> Result<Response<UpstreamBody>, Failed> {
        loop {
            let (mut c, reused) = match self.pool.take(addr) {
                Some(c) => (c, true),
                None => match self.connect(addr).await {
                    Ok(c) => (c, false),
                    Err(error) => return Err(Failed::unsent(error, req)),
                },
            };
            let mut alive = true;
            if !matches!(
                driving(&mut c.conn, &mut alive, c.sender.ready()).await,
                Some(Ok(()))
            ) {
                if reused {
                    continue;
                }
                return Err(Failed::unsent(
                    "the connection closed before the request was sent",
                    req,
                ));
            }
            let sent = c.sender.try_send_request(req);
            let head = match driving(&mut c.conn, &mut alive, sent).await {
                None => return Err(closed()),
                Some(Ok(head)) => head,
                Some(Err(e)) => {
                    req = Failed::again_or(e, reused)?;
                    continue;
                }
            };
            let (parts, body) = head.into_parts();
            let mut body = UpstreamBody {
                body,
                conn: Some(c),
                alive,
                home: (self.pool.clone(), addr),
                pause: Silence::new(silence),
            };
            if body.body.is_end_stream() {
                // Nothing will poll an empty body: hand the connection back now.
                std::future::poll_fn(|cx| {
                    body.give_back(cx);
                    Poll::Ready(())
                })
                .await;
            }
            return Ok(Response::from_parts(parts, body));
        }
    }
}

/// A replica's answer body, read as the client takes it. Reading it drives the connection it
/// comes on; the connection goes back to the pool after the last byte, and closes if the
/// body is dropped before.
pub struct UpstreamBody {
    body: Incoming,
    conn: Option<Pooled>,
    alive: bool,
    home: (Arc<Pool>, SocketAddr),
    pause: Silence,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("replica", &self.home.1)
            .field("alive", &self.alive)
            .finish_non_exhaustive()
    }
}

impl UpstreamBody {
    fn give_back(&mut self, cx: &mut Context<'_>) {
        if let Some(c) = self.conn.take() {
            if self.alive {
                self.home.0.release(self.home.1, c, cx);
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(c) = this.conn.as_mut() {
            if this.alive && c.conn.as_mut().poll(cx).is_ready() {
                this.alive = false;
            }
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.pause.heard();
                if this.body.is_end_stream() {
                    this.give_back(cx);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.conn = None;
                Poll::Ready(Some(Err(format!("the answer broke off: {e}").into())))
            }
            Poll::Ready(None) => {
                this.give_back(cx);
                Poll::Ready(None)
            }
            Poll::Pending if this.pause.expired(cx) => {
                this.conn = None;
                let text = format!(
                    "the replica sent nothing for {:.1}s in the middle of its answer",
                    this.pause.limit().as_secs_f64()
                );
                Poll::Ready(Some(Err(text.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers each connection's first request, then closes it without saying
    /// so (as a replica whose keep-alive timeout passed).
    async fn one_shot_server() -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
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
        addr
    }

    /// A keep-alive server that answers every request with three chunks, `gap` apart, and
    /// counts the connections it accepted and those that closed before the last chunk.
    async fn chunked_server(gap: Duration) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (accepted, cut) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (a, c) = (accepted.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                        let head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                        if s.write_all(head).await.is_err() {
                            return;
                        }
                        for part in ["a", "b", "c"] {
                            let chunk = format!("1\r\n{part}\r\n");
                            if s.write_all(chunk.as_bytes()).await.is_err() {
                                c.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            tokio::time::sleep(gap).await;
                        }
                        if s.write_all(b"0\r\n\r\n").await.is_err() {
                            c.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted, cut)
    }

    /// An HTTP/2-only server (h2c) that answers "ok" with a `grpc-status` trailer, counts the
    /// connections it accepted, and closes each after `per_connection` requests.
    async fn h2c_server(per_connection: usize) -> (SocketAddr, Arc<AtomicUsize>) {
        use std::convert::Infallible;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let served = Arc::new(AtomicUsize::new(0));
                let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
                let done = Arc::new(Mutex::new(Some(done_tx)));
                let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                    let (served, done) = (served.clone(), done.clone());
                    async move {
                        if served.fetch_add(1, Ordering::SeqCst) + 1 >= per_connection {
                            if let Some(tx) = done.lock().unwrap().take() {
                                let _ = tx.send(());
                            }
                        }
                        let mut trailers = hyper::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        let frames = crate::body::Frames(
                            [
                                Frame::data(Bytes::from_static(b"ok")),
                                Frame::trailers(trailers),
                            ]
                            .into(),
                        );
                        Ok::<_, Infallible>(Response::new(frames))
                    }
                });
                tokio::spawn(async move {
                    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = done_rx => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn get() -> Request<RequestBody> {
        Request::get("/x")
            .body(RequestBody::whole(Bytes::new()))
            .unwrap()
    }

    const SILENCE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_pooled_connection_the_replica_closed_is_replaced_without_failing() {
        let addr = one_shot_server().await;
        let up = Upstreams::new(Duration::from_secs(1), UpstreamProtocol::Http1);
        for _ in 0..3 {
            let r = up.send(addr, get(), SILENCE).await.unwrap();
            assert_eq!(r.status(), 200);
            let body = r.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a GET to `addr` through `up` and reads the whole answer.
    async fn exchange(up: &Upstreams, addr: SocketAddr) {
        let r = up.send(addr, get(), SILENCE).await.unwrap();
        assert_eq!(r.status(), 200);
        r.into_body().collect().await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_idle_past_the_limit_is_closed_instead_of_used() {
        let (addr, accepted, _) = chunked_server(Duration::from_millis(1)).await;
        let limit = Duration::from_millis(150);
        let up =
            Upstreams::new(Duration::from_secs(1), UpstreamProtocol::Http1).with_idle_limit(limit);
        exchange(&up, addr).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        exchange(&up, addr).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "reused within the limit"
        );
        assert_eq!(up.idle_count(), 1);
        tokio::time::sleep(limit + Duration::from_millis(50)).await;
        exchange(&up, addr).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "a new connection past the limit"
        );
        // A replica no request goes to any more: its connections are swept out by the others'.
        let (other, _, _) = chunked_server(Duration::from_millis(1)).await;
        tokio::time::sleep(limit + Duration::from_millis(50)).await;
        exchange(&up, other).await;
        assert_eq!(up.idle_count(), 1, "only the connection just used is kept");
    }

    #[tokio::test]
    async fn a_refused_connection_never_reached_the_replica_and_gives_the_request_back() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let e = Upstreams::new(Duration::from_secs(1), UpstreamProtocol::Http1)
            .send(addr, get(), SILENCE)
            .await
            .unwrap_err();
        assert!(!e.reached, "{e:?}");
        assert!(e.unsent.is_some());
    }

    #[tokio::test]
    async fn chunks_arrive_as_sent_and_the_connection_is_reused_after_the_last() {
        let gap = Duration::from_millis(150);
        let (addr, accepted, _) = chunked_server(gap).await;
        let up = Upstreams::new(Duration::from_secs(1), UpstreamProtocol::Http1);
        for _ in 0..2 {
            let start = std::time::Instant::now();
            let mut body = up.send(addr, get(), SILENCE).await.unwrap().into_body();
            let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
            assert_eq!(&first[..], b"a");
            assert!(start.elapsed() < gap, "the first chunk waited for the rest");
            let rest = body.collect().await.unwrap().to_bytes();
            assert_eq!(&rest[..], b"bc");
            assert!(start.elapsed() >= gap * 2);
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "the connection was not reused"
        );
    }

    #[tokio::test]
    async fn an_answer_dropped_midway_closes_its_connection() {
        let (addr, accepted, cut) = chunked_server(Duration::from_millis(100)).await;
        let up = Upstreams::new(Duration::from_secs(1), UpstreamProtocol::Http1);
        let mut body = up.send(addr, get(), SILENCE).await.unwrap().into_body();
        let _ = body.frame().await;
        drop(body);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(cut.load(Ordering::SeqCst), 1, "the replica was not told");
        let r = up.send(addr, get(), SILENCE).await.unwrap();
        let _ = r.into_body().collect().await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn h2c_requests_share_one_connection_and_carry_trailers() {
        let (addr, accepted) = h2c_server(usize::MAX).await;
        let up = Arc::new(Upstreams::new(
            Duration::from_secs(1),
            UpstreamProtocol::H2c,
        ));
        let calls = (0..10).map(|_| {
            let up = up.clone();
            tokio::spawn(async move {
                let r = up.send(addr, get(), SILENCE).await.unwrap();
                assert_eq!(r.version(), hyper::Version::HTTP_2);
                r.into_body().collect().await.unwrap()
            })
        });
        for call in calls {
            let body = call.await.unwrap();
            assert_eq!(body.trailers().unwrap()["grpc-status"], "0");
            assert_eq!(&body.to_bytes()[..], b"ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "not multiplexed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_first_burst_to_an_h2c_replica_opens_one_connection() {
        let (addr, accepted) = h2c_server(usize::MAX).await;
        let up = Arc::new(Upstreams::new(
            Duration::from_secs(1),
            UpstreamProtocol::H2c,
        ));
        let start = Arc::new(tokio::sync::Barrier::new(32));
        let calls: Vec<_> = (0..32)
            .map(|_| {
                let (up, start) = (up.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    let r = up.send(addr, get(), SILENCE).await.unwrap();
                    r.into_body().collect().await.unwrap().to_bytes()
                })
            })
            .collect();
        for call in calls {
            assert_eq!(&call.await.unwrap()[..], b"ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_h2c_connection_the_replica_closed_is_replaced_without_failing() {
        let (addr, accepted) = h2c_server(1).await;
        let up = Upstreams::new(Duration::from_secs(1), UpstreamProtocol::H2c);
        for _ in 0..3 {
            let r = up.send(addr, get(), SILENCE).await.unwrap();
            let body = r.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    /// A peer that completes the HTTP/2 handshake and then never answers anything, pings
    /// included (a replica whose node vanished without a reset).
    async fn h2c_black_hole() -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    // Empty SETTINGS, then an ACK of the client's.
                    let _ = s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
                    let _ = s.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).await;
                    let mut buf = [0u8; 4096];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
        });
        addr
    }

    #[tokio::test(start_paused = true)]
    async fn an_h2c_connection_whose_pings_go_unanswered_is_given_up() {
        let addr = h2c_black_hole().await;
        let up = Upstreams::new(Duration::from_secs(1), UpstreamProtocol::H2c);
        let answer = tokio::time::timeout(Duration::from_secs(600), up.send(addr, get(), SILENCE))
            .await
            .expect("the request hung with the connection");
        let e = answer.unwrap_err();
        assert!(e.reached, "{e:?}");
        assert!(
            !up.multiplexed.holds_open(addr).await,
            "the dead connection is still offered"
        );
    }

    #[tokio::test]
    async fn a_replica_silent_mid_answer_breaks_the_body() {
        let (addr, _, _) = chunked_server(Duration::from_secs(3)).await;
        let up = Upstreams::new(Duration::from_secs(1), UpstreamProtocol::Http1);
        let body = up
            .send(addr, get(), Duration::from_millis(200))
            .await
            .unwrap()
            .into_body();
        let e = body.collect().await.unwrap_err();
        assert!(e.to_string().contains("sent nothing"), "{e}");
    }
}
