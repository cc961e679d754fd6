//! Bodies that pass through the proxy as they come.
//!
//! **Requests.** A body is read until it ends or passes `retry_bytes`. One that ends is held
//! whole, so that a request whose replica failed can go to another. A larger one streams: what
//! was read goes first, then the rest as the client sends it, within `max_bytes` (413 when a
//! declared length is over it; the exchange is cut when a streamed one passes it) and with at
//! most `read_timeout` between two chunks (a client that sends its headers and then trickles
//! its body is not held for ever).
//!
//! **Answers.** [`Metered`] passes a replica's answer on frame by frame, with no buffering, and
//! tells an [`Observer`] when the first byte went out (time to first byte: a token stream's
//! first token), the gap before each later chunk (inter-chunk latency), and how the answer
//! ended: its last byte, a break on the replica's side, or a client that left. Whatever the
//! caller counts for the request (in flight on the service, on the replica) lives in the
//! observer and so lasts until the last byte.

use crate::silence::Silence;
use crate::BoxError;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How much of a request body the proxy reads, holds and waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// A body larger than this is refused (413).
    pub max_bytes: u64,
    /// A body up to this size is held whole and may be retried; a larger one streams.
    pub retry_bytes: u64,
    /// The longest wait for the client's next chunk.
    pub read_timeout: Duration,
}

/// Why a request body was not forwarded, or was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Over [`BodyLimits::max_bytes`] (413).
    TooLarge,
    /// No chunk within [`BodyLimits::read_timeout`] (408).
    TimedOut,
    /// The client's body broke off (400).
    Broken,
}

impl Refused {
    fn code(self) -> u8 {
        match self {
            Refused::TooLarge => 1,
            Refused::TimedOut => 2,
            Refused::Broken => 3,
        }
    }

    fn from_code(code: u8) -> Option<Refused> {
        match code {
            1 => Some(Refused::TooLarge),
            2 => Some(Refused::TimedOut),
            3 => Some(Refused::Broken),
            _ => None,
        }
    }
}

/// A request body as read: whole, or a head read so far and the rest still with the client.
#[derive(Debug)]
pub enum ReadBody {
    /// Every byte; may be sent any number of times.
    Whole(Bytes),
    /// Larger than the retry buffer: it can be sent once.
    Streamed(Streamed),
}

/// Reads `body` as far as `limits` let it be held (see the module's doc). `declared` is the
/// request's `Content-Length`, refused at once when over the limit.
pub async fn read_request(
    mut body: Incoming,
    declared: Option<u64>,
    limits: BodyLimits,
) -> Result<ReadBody, Refused> {
    if declared.is_some_and(|n| n > limits.max_bytes) {
        return Err(Refused::TooLarge);
    }
    let mut chunks: VecDeque<Bytes> = VecDeque::new();
    let mut read = 0u64;
    while !body.is_end_stream() {
        if read > limits.retry_bytes {
            return Ok(ReadBody::Streamed(Streamed::new(
                chunks, read, body, limits,
            )));
        }
        let frame = match tokio::time::timeout(limits.read_timeout, body.frame()).await {
            Err(_) => return Err(Refused::TimedOut),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(Refused::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        // Request trailers are rare and nothing Ebb serves reads them: they are not passed on.
        if let Ok(data) = frame.into_data() {
            read += data.len() as u64;
            if read > limits.max_bytes {
                return Err(Refused::TooLarge);
            }
            if !data.is_empty() {
                chunks.push_back(data);
            }
        }
    }
    Ok(ReadBody::Whole(concat(chunks)))
}

fn concat(mut chunks: VecDeque<Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop_front().unwrap_or_default(),
        _ => {
            let mut all = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for c in chunks {
                all.extend_from_slice(&c);
            }
            all.freeze()
        }
    }
}

/// A request body larger than the retry buffer: the chunks read so far, then the rest as it
/// comes, within the size limit and the read timeout.
#[derive(Debug)]
pub struct Streamed {
    head: VecDeque<Bytes>,
    rest: Incoming,
    read: u64,
    max_bytes: u64,
    pause: Silence,
    cut: Arc<AtomicU8>,
}

impl Streamed {
    fn new(head: VecDeque<Bytes>, read: u64, rest: Incoming, limits: BodyLimits) -> Streamed {
        Streamed {
            head,
            rest,
            read,
            max_bytes: limits.max_bytes,
            pause: Silence::new(limits.read_timeout),
            cut: Arc::default(),
        }
    }

    /// Tells, after the exchange failed, whether it failed because this body was cut (too
    /// large, too slow, broken), so that the client gets that answer rather than a 502.
    pub fn cut_watch(&self) -> CutWatch {
        CutWatch(self.cut.clone())
    }

    fn cut(&mut self, why: Refused) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.cut.store(why.code(), Ordering::Release);
        let text = match why {
            Refused::TooLarge => "the request body passed the size limit",
            Refused::TimedOut => "the client stopped sending its request body",
            Refused::Broken => "the client's request body broke off",
        };
        Poll::Ready(Some(Err(text.into())))
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(chunk) = self.head.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match Pin::new(&mut self.rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.pause.heard();
                if let Some(data) = frame.data_ref() {
                    self.read += data.len() as u64;
                    if self.read > self.max_bytes {
                        return self.cut(Refused::TooLarge);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => self.cut(Refused::Broken),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending if self.pause.expired(cx) => self.cut(Refused::TimedOut),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Says whether a [`Streamed`] body was cut, and why, once it has been given away.
#[derive(Debug, Clone)]
pub struct CutWatch(Arc<AtomicU8>);

impl CutWatch {
    /// Why the body was cut, if it was.
    pub fn why(&self) -> Option<Refused> {
        Refused::from_code(self.0.load(Ordering::Acquire))
    }
}

/// A body of frames known in advance (data, then perhaps trailers): an answer Ebb writes
/// itself with trailers, which `Full` cannot carry.
#[derive(Debug, Default)]
pub struct Frames(pub VecDeque<Frame<Bytes>>);

impl Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

/// The body of a request the proxy sends to a replica.
#[derive(Debug)]
pub enum RequestBody {
    /// Held whole (taken when sent).
    Whole(Option<Bytes>),
    /// Streamed from the client.
    Streamed(Box<Streamed>),
}

impl RequestBody {
    /// A body of these bytes.
    pub fn whole(bytes: Bytes) -> RequestBody {
        RequestBody::Whole(Some(bytes))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RequestBody::Whole(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            RequestBody::Streamed(s) => s.poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Whole(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            RequestBody::Streamed(s) => s.head.is_empty() && s.rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            RequestBody::Streamed(s) => {
                let head: u64 = s.head.iter().map(|b| b.len() as u64).sum();
                let rest = s.rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(head + rest.lower());
                if let Some(upper) = rest.upper() {
                    hint.set_upper(head + upper);
                }
                hint
            }
        }
    }
}

/// What a streamed answer tells as it passes through. Each method is called at most once,
/// but [`Observer::gap`], and exactly one of the three endings is called, the last.
pub trait Observer: Send + Unpin + 'static {
    /// The first byte of the body went out, `wait` after the request arrived.
    fn first_byte(&mut self, wait: Duration) {
        let _ = wait;
    }
    /// A chunk went out `gap` after the one before.
    fn gap(&mut self, gap: Duration) {
        let _ = gap;
    }
    /// The last byte went out, `total` after the request arrived.
    fn finished(&mut self, total: Duration);
    /// The answer broke off on the replica's side (it failed or fell silent), `total` after
    /// the request arrived.
    fn broke(&mut self, why: &str, total: Duration);
    /// The client left before the last byte.
    fn abandoned(&mut self);
}

/// An answer passed on as it comes, measured for its [`Observer`].
pub struct Metered<B, O: Observer> {
    body: B,
    observer: Option<O>,
    arrived: Instant,
    last_chunk: Option<Instant>,
    /// Empty from the start (204, HEAD): a server never polls it, so it ends when dropped.
    empty: bool,
}

impl<B: Body, O: Observer> Metered<B, O> {
    /// Passes `body` on for a request that arrived at `arrived`, telling `observer`.
    pub fn new(body: B, arrived: Instant, observer: O) -> Metered<B, O> {
        Metered {
            empty: body.is_end_stream(),
            body,
            observer: Some(observer),
            arrived,
            last_chunk: None,
        }
    }
}

impl<B, O: Observer> Metered<B, O> {
    fn chunk(&mut self) {
        let now = Instant::now();
        if let Some(o) = self.observer.as_mut() {
            match self.last_chunk {
                None => o.first_byte(now - self.arrived),
                Some(before) => o.gap(now - before),
            }
        }
        self.last_chunk = Some(now);
    }

    fn end(&mut self, how: impl FnOnce(&mut O, Duration)) {
        if let Some(mut o) = self.observer.take() {
            how(&mut o, self.arrived.elapsed());
        }
    }
}

impl<B, O> Body for Metered<B, O>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
    O: Observer,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if frame.data_ref().is_some_and(|d| !d.is_empty()) {
                    this.chunk();
                }
                if this.body.is_end_stream() {
                    this.end(|o, total| o.finished(total));
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let why = e.to_string();
                this.end(|o, total| o.broke(&why, total));
            }
            Poll::Ready(None) => this.end(|o, total| o.finished(total)),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B, O: Observer> Drop for Metered<B, O> {
    fn drop(&mut self) {
        if self.empty {
            self.end(|o, total| o.finished(total));
        } else {
            self.end(|o, _| o.abandoned());
        }
    }
}
