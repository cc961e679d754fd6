//! Accepting and keeping client connections, for the service port and the admin port: a
//! bound on open connections (more wait in the kernel's backlog), back-off when accept fails
//! (out of file descriptors: logged once, open connections keep being served), a header read
//! timeout (slowloris), an idle timeout for keep-alive connections, and a graceful stop that
//! answers every request already accepted.

use crate::counters::ProxyCounters;
use crate::guard::{Held, HeldBy};
use crate::BoxError;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connection limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at most.
    pub max_connections: usize,
    /// A request's headers must arrive within this.
    pub header_timeout: Duration,
    /// A connection with no request in progress and no bytes moving is closed after this.
    pub idle_timeout: Duration,
}

/// What a listener needs besides its handler: its counters, where to report, and the
/// signal to stop.
#[derive(Clone)]
pub struct Listener {
    /// Connection counters.
    pub counters: Arc<ProxyCounters>,
    /// Cancelled to stop accepting and close connections once their requests are answered.
    pub stop: CancellationToken,
    /// Tracks open connections, so a stop can wait for them.
    pub connections: TaskTracker,
    /// Reports a listener problem (kept as an event).
    pub report: Arc<dyn Fn(String) + Send + Sync>,
    /// When a failing accept was last reported, by any of the listener's threads.
    pub reported: Arc<std::sync::Mutex<Option<Instant>>>,
}

/// Connections the kernel queues before Ebb accepts them (std's default of 128 makes clients
/// wait for SYN retries in a burst, or while Ebb is out of descriptors).
const BACKLOG: u32 = 1024;

/// Binds `addr` for serving, with address reuse and a backlog for bursts.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    socket(addr, false)?.listen(BACKLOG)
}

fn socket(addr: std::net::SocketAddr, shared: bool) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if shared {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    Ok(socket)
}

/// Binds `addr` `n` times on one port (`SO_REUSEPORT`: the kernel spreads new connections
/// over the sockets), one for each proxy thread. A port of 0 is resolved by the first bind.
pub fn bind_shared(
    addr: std::net::SocketAddr,
    n: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let first = socket(addr, true)?.listen(BACKLOG)?;
    let bound = first.local_addr()?;
    let mut all = vec![first.into_std()?];
    for _ in 1..n {
        all.push(socket(bound, true)?.listen(BACKLOG)?.into_std()?);
    }
    Ok(all)
}

impl Listener {
    /// A listener counting into `counters` and reporting its problems to `report`, not
    /// stopped yet.
    pub fn new(
        counters: Arc<ProxyCounters>,
        report: Arc<dyn Fn(String) + Send + Sync>,
    ) -> Listener {
        Listener {
            counters,
            stop: CancellationToken::new(),
            connections: TaskTracker::new(),
            report,
            reported: Arc::default(),
        }
    }
}

/// Serves `listener` with `handler` until `ctx.stop` is cancelled; then stops accepting
/// (the socket closes) and returns. Open connections finish on their own tasks.
pub async fn serve<H, F, B>(
    listener: TcpListener,
    limits: ConnectionLimits,
    ctx: Listener,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // A failing accept is reported when a run of failures starts, at most once a minute
    // for the whole listener.
    let mut failing = false;
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = ctx.stop.cancelled() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = ctx.stop.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                failing = false;
                stream
            }
            Err(e) => {
                ProxyCounters::bump(&ctx.counters.accept_errors);
                let report = !failing
                    && ctx.reported.lock().is_ok_and(|mut last| {
                        let quiet = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
                        if quiet {
                            *last = Some(Instant::now());
                        }
                        quiet
                    });
                if report {
                    let text = format!(
                        "accept failed ({e}); backing off, open connections keep being served"
                    );
                    tracing::warn!("{text}");
                    (ctx.report)(text);
                }
                failing = true;
                // Out of descriptors, the next accept fails at once: wait instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (ctx2, handler) = (ctx.clone(), handler.clone());
        ctx.connections.spawn(async move {
            let _permit = permit;
            connection(stream, limits, ctx2, handler).await;
        });
    }
}

/// Serves one connection until the client closes it, it times out, or the stop comes.
///
/// Both timeouts are kept here rather than by hyper, whose header read timeout also closes a
/// keep-alive connection that is merely idle: a connection is *idle* when no request is in
/// progress and no bytes moved for the idle timeout (closed gracefully), and *reading
/// headers* when bytes of a request came but the request has not started for the header
/// timeout (closed at once: a slowloris client). Time is counted in watchdog ticks, so the
/// request path reads no clock.
async fn connection<H, F, B>(stream: TcpStream, limits: ConnectionLimits, ctx: Listener, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Unpin + Send + 'static,
    B::Error: Into<BoxError>,
{
    let counters = &*ctx.counters;
    ProxyCounters::bump(&counters.connections_total);
    let _open = Held::new(&counters.connections_open);
    let clock = Arc::new(ConnectionClock::default());
    let io = Activity {
        inner: stream,
        clock: clock.clone(),
        read_any: false,
    };
    let in_service = clock.clone();
    let service = hyper::service::service_fn(move |req| {
        let (handler, clock) = (handler.clone(), in_service.clone());
        async move {
            // Busy until the answer's last byte has gone, not only its head: a stream that
            // pauses is not an idle connection.
            let busy = HeldBy::new(clock.clone(), |c| &c.active);
            clock.head_since.store(0, Ordering::Release);
            let answer = handler(req).await;
            Ok::<_, std::convert::Infallible>(answer.map(|body| Busy { body, _busy: busy }))
        }
    });
    // HTTP/1.1, and HTTP/2 for clients that open with its preface (h2c with prior knowledge,
    // as gRPC clients and `curl --http2-prior-knowledge` do).
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    builder
        .http2()
        .max_concurrent_streams(HTTP2_MAX_STREAMS)
        .max_header_list_size(HTTP2_MAX_HEADER_BYTES);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let shortest = limits.idle_timeout.min(limits.header_timeout);
    let tick = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let ticks = |d: Duration| (d.as_secs_f64() / tick.as_secs_f64()).ceil() as u64;
    let (idle_ticks, header_ticks) = (ticks(limits.idle_timeout), ticks(limits.header_timeout));
    let mut watchdog = tokio::time::interval(tick);
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = ctx.stop.cancelled();
    tokio::pin!(stop);
    let mut closing = false;
    let mut quiet = Quiet::default();
    loop {
        tokio::select! {
            biased;
            _ = conn.as_mut() => break,
            _ = &mut stop, if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = watchdog.tick() => match clock.tick(&mut quiet, idle_ticks, header_ticks) {
                Verdict::Keep => {}
                Verdict::Idle if !closing => {
                    ProxyCounters::bump(&counters.idle_closed);
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                Verdict::Idle => {}
                Verdict::SlowHeaders => {
                    ProxyCounters::bump(&counters.header_timeouts);
                    break;
                }
            }
        }
    }
}

/// Requests one HTTP/2 connection may have open at once (each holds a permit of nothing: the
/// connection limit counts connections, so this bounds what one connection can ask).
const HTTP2_MAX_STREAMS: u32 = 256;
/// The most header bytes an HTTP/2 request may carry (decoded).
const HTTP2_MAX_HEADER_BYTES: u32 = 64 << 10;

/// The start of the client connection preface of HTTP/2 (RFC 9113, section 3.4).
const HTTP2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

/// Whether a connection's bytes move and whether a request is being read or served, in
/// watchdog ticks.
#[derive(Default)]
struct ConnectionClock {
    /// Ticks so far.
    now: AtomicU64,
    /// Bumped whenever bytes are read or written.
    io: AtomicU64,
    /// Tick (plus one) when the first bytes of a not yet started request came (0: none).
    head_since: AtomicU64,
    /// Requests being served.
    active: AtomicU32,
    /// Whether the client opened with HTTP/2's preface. Its frames (pings, window updates,
    /// settings) come between requests and are no request's head, so the header timeout
    /// (a slow HTTP/1 head) does not apply; the idle timeout does, with a graceful GOAWAY.
    http2: AtomicBool,
}

/// What only the watchdog keeps: `io` at its last tick, and ticks since it last changed.
#[derive(Default)]
struct Quiet {
    seen_io: u64,
    ticks: u64,
}

/// What the connection's timeouts say.
enum Verdict {
    Keep,
    Idle,
    SlowHeaders,
}

impl ConnectionClock {
    /// One watchdog tick: what to do with the connection.
    fn tick(&self, quiet: &mut Quiet, idle_ticks: u64, header_ticks: u64) -> Verdict {
        let now = self.now.fetch_add(1, Ordering::AcqRel) + 1;
        let io = self.io.load(Ordering::Acquire);
        let busy = self.active.load(Ordering::Acquire) > 0;
        if quiet.seen_io != io || busy {
            *quiet = Quiet {
                seen_io: io,
                ticks: 0,
            };
        } else {
            quiet.ticks += 1;
        }
        if busy {
            return Verdict::Keep;
        }
        let head = self.head_since.load(Ordering::Acquire);
        if head != 0 {
            return if now + 1 - head >= header_ticks {
                Verdict::SlowHeaders
            } else {
                Verdict::Keep
            };
        }
        if quiet.ticks >= idle_ticks {
            Verdict::Idle
        } else {
            Verdict::Keep
        }
    }

    fn read(&self) {
        self.io.fetch_add(1, Ordering::Relaxed);
        if self.http2.load(Ordering::Acquire) {
            return;
        }
        if self.active.load(Ordering::Acquire) == 0 && self.head_since.load(Ordering::Relaxed) == 0
        {
            let now = self.now.load(Ordering::Relaxed) + 1;
            let _ = self
                .head_since
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.io.fetch_add(1, Ordering::Relaxed);
    }
}

/// A stream that tells its connection's clock when bytes move.
struct Activity {
    inner: TcpStream,
    clock: Arc<ConnectionClock>,
    /// Whether any byte was read yet.
    read_any: bool,
}

/// Whether a connection's first bytes are HTTP/2's preface (or its start, when they came
/// short of it; no HTTP/1 method begins with `PRI`).
fn opens_http2(first: &[u8]) -> bool {
    first.len() >= 3
        && (first.starts_with(HTTP2_PREFACE_START) || HTTP2_PREFACE_START.starts_with(first))
}

impl AsyncRead for Activity {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            if !self.read_any {
                self.read_any = true;
                let first = &buf.filled()[before..];
                self.clock
                    .http2
                    .store(opens_http2(first), Ordering::Release);
            }
            self.clock.read();
        }
        r
    }
}

impl AsyncWrite for Activity {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.wrote();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.wrote();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// An answer body that keeps its connection counted busy until it is done.
struct Busy<B> {
    body: B,
    _busy: HeldBy<ConnectionClock>,
}

impl<B: Body + Unpin> Body for Busy<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
