//! One HTTP/1.1 connection, served with the limits a public port needs: a request head must
//! arrive within the header timeout of its first byte, a body within the body timeout of its
//! head, a connection with no request in progress is closed after the idle timeout, and one
//! whose answer makes no sending progress for the send timeout (its client stopped reading)
//! is closed too.
//!
//! Why not hyper's own `header_read_timeout`: its clock starts as soon as hyper waits for a
//! head, so on a keep-alive connection the header and idle limits would be one number. Here
//! the connection's phase is tracked instead: the IO wrapper sees the first byte of a head
//! (`IDLE` → `HEAD`), the service wrapper sees the head complete (`BUSY`), and the end of the
//! response body (back to `IDLE`). A watchdog, one timer per connection that requests never
//! wake, closes the connection when the current phase has outlasted its limit. A response that is still streaming keeps its connection `Busy`, so
//! streaming responses are exempt from the idle limit, as they are from the body limit (which
//! only bounds request bodies).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::listener::Conn;

/// The per-connection clocks (from `ConnectionLimits`).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub body: Duration,
    pub idle: Duration,
    /// How long a write to the socket may make no progress: a client that sends a request
    /// and stops reading the answer would otherwise hold its connection (and a streaming
    /// response) for as long as it stays open.
    pub send: Duration,
}

const IDLE: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

/// Where a connection is in its request cycle (`IDLE`: no request in progress; `HEAD`: the
/// first byte of a request head has arrived; `BUSY`: requests are being handled or their
/// responses sent), and since when. Atomics, written on every request and read only by the
/// watchdog when its timer fires: an earlier version with a mutex and a `Notify` woke the
/// connection's task on every change and cost stale reads about 12 % (docs/performance.md).
/// The fields are updated separately, so the watchdog may see a stale pair for an instant; it
/// then re-arms rather than closing.
struct Phase {
    /// Start of the connection; `since` counts from here.
    epoch: Instant,
    kind: AtomicU8,
    /// Nanoseconds after `epoch` when `kind` last became `IDLE` or `HEAD`.
    since: AtomicU64,
    in_flight: AtomicUsize,
    /// A request body was dropped before its end: the client may still be sending it, so the
    /// connection lingers when it closes (see `linger`).
    unread: AtomicBool,
    /// 1 + nanoseconds after `epoch` when a write to the socket last found it full and has not
    /// made progress since; 0 while writes go through.
    write_blocked: AtomicU64,
}

impl Phase {
    fn new() -> Phase {
        Phase {
            epoch: Instant::now(),
            kind: AtomicU8::new(IDLE),
            since: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            unread: AtomicBool::new(false),
            write_blocked: AtomicU64::new(0),
        }
    }

    /// Records whether a write to the socket went through. Loads first, so the common case
    /// (writes going through) costs a read of an atomic and no store.
    fn wrote<T>(&self, polled: &Poll<T>) {
        let blocked = self.write_blocked.load(Ordering::Relaxed);
        match polled {
            Poll::Pending if blocked == 0 => self.write_blocked.store(self.now() + 1, Ordering::Relaxed),
            Poll::Ready(_) if blocked != 0 => self.write_blocked.store(0, Ordering::Relaxed),
            _ => {}
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn enter(&self, kind: u8) {
        self.since.store(self.now(), Ordering::Relaxed);
        self.kind.store(kind, Ordering::Release);
    }
}

/// Why a connection was closed by a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    HeaderTimeout,
    IdleTimeout,
    /// The client stopped reading: a write made no progress for the write timeout.
    WriteStalled,
}

/// Resolves when the current phase has lasted longer than its limit. Its one timer re-arms
/// itself from what it finds when it fires, so requests never wake it: while idle it wakes at
/// least every header timeout, so a head that starts meanwhile is still cut off on time.
async fn watchdog(phase: &Phase, t: Timeouts) -> Closed {
    let mut wake = Instant::now() + t.header.min(t.idle).min(t.send);
    loop {
        tokio::time::sleep_until(wake).await;
        let now = Instant::now();
        // A stalled write counts in every phase: the last bytes of a response may still be
        // queued after the request has ended.
        let stalled_at = match phase.write_blocked.load(Ordering::Relaxed) {
            0 => None,
            b => Some(phase.epoch + Duration::from_nanos(b - 1) + t.send),
        };
        if stalled_at.is_some_and(|at| now >= at) {
            return Closed::WriteStalled;
        }
        let since = phase.epoch + Duration::from_nanos(phase.since.load(Ordering::Relaxed));
        wake = match phase.kind.load(Ordering::Acquire) {
            IDLE if now >= since + t.idle => return Closed::IdleTimeout,
            IDLE => (since + t.idle).min(now + t.header),
            HEAD if now >= since + t.header => return Closed::HeaderTimeout,
            HEAD => since + t.header,
            _ => now + t.header.min(t.send),
        };
        wake = stalled_at.map_or(wake, |at| wake.min(at));
    }
}

/// The socket, watched for the first byte of each request head.
struct Watched<I> {
    inner: I,
    phase: Arc<Phase>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(())))
            && buf.filled().len() > before
            && self.phase.kind.load(Ordering::Relaxed) == IDLE
        {
            self.phase.enter(HEAD);
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.phase.wrote(&polled);
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.phase.wrote(&polled);
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.phase.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// One request in progress; dropped when its response body ends (or the request is abandoned).
struct InFlight(Arc<Phase>);

impl InFlight {
    fn begin(phase: &Arc<Phase>) -> InFlight {
        phase.in_flight.fetch_add(1, Ordering::Relaxed);
        phase.kind.store(BUSY, Ordering::Release);
        InFlight(phase.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.0.enter(IDLE);
        }
    }
}

/// The error a request body yields once the body timeout passes; the edge answers it with 408
/// `request_timeout` (`api/forward.rs`).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(pub Duration);

/// A request body that fails with [`BodyTimedOut`] once `limit` has passed since its head.
/// The timer is made only when the body is first found still owed: most requests have no body
/// or one that has already arrived, and a timer per request cost a measurable share of a read.
struct TimedBody {
    inner: Incoming,
    started: Instant,
    deadline: Option<Pin<Box<Sleep>>>,
    limit: Duration,
    phase: Arc<Phase>,
    /// Read to its end.
    ended: bool,
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        if !self.ended && !self.inner.is_end_stream() {
            self.phase.unread.store(true, Ordering::Relaxed);
        }
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            self.ended |= frame.is_none();
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let at = self.started + self.limit;
        let deadline = self.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that holds its request's [`InFlight`] until it ends.
struct TrackedBody {
    inner: Body,
    in_flight: Option<InFlight>,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            self.in_flight = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The per-connection service: marks requests in flight, bounds their bodies, and gives
/// handlers the connection's facts as `ConnectInfo<Conn>`.
#[derive(Clone)]
struct Service {
    router: axum::Router,
    phase: Arc<Phase>,
    conn: Conn,
    body_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::begin(&self.phase);
        let limit = self.body_timeout;
        let started = Instant::now();
        let phase = self.phase.clone();
        let mut req =
            req.map(|inner| Body::new(TimedBody { inner, started, deadline: None, limit, phase, ended: false }));
        req.extensions_mut().insert(ConnectInfo(self.conn));
        let router = self.router.clone();
        Box::pin(async move {
            let resp = tower::ServiceExt::oneshot(router, req).await?;
            Ok(resp.map(|inner| Body::new(TrackedBody { inner, in_flight: Some(in_flight) })))
        })
    }
}

/// Serves one connection until the client closes it, a limit closes it (the answer says
/// which), or `drain` resolves: then the connection finishes its requests in flight and
/// closes (the server bounds how long that may take).
pub async fn serve<I>(
    io: I,
    conn: Conn,
    router: axum::Router,
    t: Timeouts,
    drain: impl Future<Output = ()>,
) -> Result<Option<Closed>, hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let phase = Arc::new(Phase::new());
    let io = Watched { inner: io, phase: phase.clone() };
    let service = Service { router, phase: phase.clone(), conn, body_timeout: t.body };
    let mut connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // This module times heads itself (see the module comment).
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(io), service);
    let watchdog = watchdog(&phase, t);
    tokio::pin!(watchdog);
    tokio::pin!(drain);
    let mut draining = false;
    loop {
        let step = {
            // Without shutdown: hyper hands the socket back when it is done (see `linger`).
            let served = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx));
            tokio::select! {
                served = served => Step::Done(served),
                why = &mut watchdog => Step::Limit(why),
                () = &mut drain, if !draining => Step::Drain,
            }
        };
        match step {
            Step::Done(served) => {
                served?;
                break;
            }
            // A trickled head, an idle connection or a client that stopped reading: nothing
            // more can be delivered, so just close.
            Step::Limit(why) => return Ok(Some(why)),
            Step::Drain => {
                draining = true;
                Pin::new(&mut connection).graceful_shutdown();
            }
        }
    }
    let mut io = connection.into_parts().io.into_inner().inner;
    if phase.unread.load(Ordering::Relaxed) {
        linger(io).await;
    } else {
        use tokio::io::AsyncWriteExt;
        // Bounded: with TLS, shutting down writes a close_notify, which a client that has
        // stopped reading could otherwise hold up for ever.
        let _ = tokio::time::timeout(LINGER, io.shutdown()).await;
    }
    Ok(None)
}

enum Step {
    Done(Result<(), hyper::Error>),
    Limit(Closed),
    Drain,
}

/// How long, and how many bytes, a closing connection reads and drops what its client still
/// sends.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 8 << 20;

/// Closes a connection hyper is done with while a request body was left unread: shuts the
/// write side, then reads and drops what the client is still sending, for a bounded time. Closing a socket with unread data in it makes
/// the kernel answer with a reset, and a client still sending a body that was answered early
/// (a 413, or a 401 before the body) then loses the answer with its connection; the dialect
/// bad-input test saw exactly that now and then. nginx's lingering close does the same.
async fn linger<I: AsyncRead + AsyncWrite + Unpin>(mut io: I) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + LINGER;
    if !matches!(tokio::time::timeout_at(deadline, io.shutdown()).await, Ok(Ok(()))) {
        return;
    }
    let mut buf = vec![0u8; 16 << 10];
    let mut dropped = 0;
    while dropped < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => dropped += n,
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn conn() -> Conn {
        Conn { remote: SocketAddr::from(([127, 0, 0, 1], 9)), peer_cert: false }
    }

    #[tokio::test]
    async fn a_streaming_response_is_not_cut_by_the_idle_timeout() {
        // Chunks every 100 ms for about a second, against an idle limit of 150 ms: only a
        // connection with no request in progress is idle.
        let router = axum::Router::new().route(
            "/stream",
            axum::routing::get(|| async {
                let chunks = futures::stream::unfold(0u32, |i| async move {
                    if i == 10 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((Ok::<_, Infallible>(Bytes::from(format!("chunk{i};"))), i + 1))
                });
                Body::from_stream(chunks)
            }),
        );
        let t = Timeouts {
            header: Duration::from_secs(5),
            body: Duration::from_secs(5),
            idle: Duration::from_millis(150),
            send: Duration::from_secs(5),
        };
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let served = tokio::spawn(serve(server, conn(), router, t, std::future::pending()));
        client.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&got).contains("chunk9;") {
                let n = client.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed mid-stream: {}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
            }
        })
        .await;
        assert!(read.is_ok(), "the stream did not finish: {}", String::from_utf8_lossy(&got));
        // Once the response is over the connection is idle, and the idle limit closes it.
        let closed = tokio::time::timeout(Duration::from_secs(10), served).await.expect("closed by the idle limit");
        assert_eq!(closed.unwrap().unwrap(), Some(Closed::IdleTimeout));
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_closed_after_the_send_timeout() {
        // 64 MiB against a 64 KiB pipe that is never read: the writes stall for good.
        let router = axum::Router::new().route("/big", axum::routing::get(|| async { vec![b'x'; 64 << 20] }));
        let t = Timeouts {
            header: Duration::from_secs(30),
            body: Duration::from_secs(30),
            idle: Duration::from_secs(30),
            send: Duration::from_millis(300),
        };
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let served = tokio::spawn(serve(server, conn(), router, t, std::future::pending()));
        client.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(10), served).await.expect("closed by the send limit");
        assert_eq!(closed.unwrap().unwrap(), Some(Closed::WriteStalled));
        drop(client);
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        // 4 MiB read 64 KiB every 20 ms (about 1.3 s in all) against a 300 ms send limit:
        // each write waits at most one read, so the response completes.
        let router = axum::Router::new().route("/big", axum::routing::get(|| async { vec![b'x'; 4 << 20] }));
        let t = Timeouts {
            header: Duration::from_secs(30),
            body: Duration::from_secs(30),
            idle: Duration::from_secs(30),
            send: Duration::from_millis(300),
        };
        let (mut client, server) = tokio::io::duplex(1 << 16);
        tokio::spawn(serve(server, conn(), router, t, std::future::pending()));
        client.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        let read = tokio::time::timeout(Duration::from_secs(20), async {
            while total < 4 << 20 {
                let n = client.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed after {total} bytes");
                total += n;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(read.is_ok(), "stalled after {total} bytes");
    }
}
