//! How many connections the server serves, and how long a client may hold
//! one without using it (`ConnectionLimits`).
//!
//! - **Cap**: [`Limited`] wraps the make-service; the accept loop asks it
//!   for readiness before making each connection's service, and it is ready
//!   only when one of `max_connections` slots is free. So beyond the cap the
//!   server stops taking connections and further clients wait in the
//!   kernel's listen backlog until one closes. A slot is held as long as the
//!   connection and any request of it live.
//! - **TLS handshake**: must finish within `tls_handshake_timeout`
//!   (axum-server's `RustlsAcceptor`, set in `server.rs`).
//! - **Request head** (HTTP/1.1): hyper's header-read timeout, which needs
//!   a timer (`server.rs`); it runs from when the connection is ready for a
//!   request, so it also closes an idle kept-alive HTTP/1.1 connection.
//! - **Idle** (any protocol, HTTP/2 included): [`Guarded`] fails the
//!   connection's reads once no request has been in flight for
//!   `idle_timeout` (a request is in flight from its head until its response
//!   body is sent: [`Tracked`]), or when no first request has come within
//!   `tls_handshake_timeout + header_read_timeout` of the connection (a
//!   client silent after the handshake: hyper's own timer starts only once
//!   it has seen the first bytes); and fails its writes once the client has
//!   read nothing for `idle_timeout` (a full send buffer that does not drain).
//! - **Request bodies**: a minimum rate, per request (`crate::body_rate`).
//! - **Per address**: at most `max_connections_per_address` connections
//!   from one peer address (IPv6: one /64) at once; more are closed as
//!   they are accepted, so one client cannot take every slot. The
//!   operator's trusted proxies are exempt (every client comes through
//!   them).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::http::Response;
use axum_server::accept::Accept;
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::PollSemaphore;
use tower::Service;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

#[derive(Debug)]
struct Activity {
    in_flight: usize,
    idle_since: Instant,
    /// Whether any request has started on the connection.
    served: bool,
}

/// What one connection's stream and service share.
#[derive(Debug)]
struct Conn {
    activity: Mutex<Activity>,
    /// The task reading the connection, woken when it becomes idle.
    reader: AtomicWaker,
    /// Freed when the connection and its last request are gone.
    _slot: Option<OwnedSemaphorePermit>,
}

impl Conn {
    fn new(slot: Option<OwnedSemaphorePermit>) -> Conn {
        Conn {
            activity: Mutex::new(Activity {
                in_flight: 0,
                idle_since: Instant::now(),
                served: false,
            }),
            reader: AtomicWaker::new(),
            _slot: slot,
        }
    }

    fn activity(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the connection will have been idle too long (before its first
    /// request, `first_request_by` at the latest); None while a request is
    /// in flight.
    fn idle_deadline(&self, idle: Duration, first_request_by: Instant) -> Option<Instant> {
        let activity = self.activity();
        if activity.in_flight > 0 {
            return None;
        }
        let idle_until = activity.idle_since + idle;
        Some(if activity.served {
            idle_until
        } else {
            idle_until.min(first_request_by)
        })
    }
}

/// A request in flight, from its head until its response body is dropped.
struct InFlight(Arc<Conn>);

impl InFlight {
    fn start(conn: &Arc<Conn>) -> InFlight {
        let mut activity = conn.activity();
        activity.in_flight += 1;
        activity.served = true;
        drop(activity);
        InFlight(Arc::clone(conn))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let idle = {
            let mut activity = self.0.activity();
            activity.in_flight = activity.in_flight.saturating_sub(1);
            if activity.in_flight == 0 {
                activity.idle_since = Instant::now();
            }
            activity.in_flight == 0
        };
        if idle {
            // The reader arms its idle timer on its next poll.
            self.0.reader.wake();
        }
    }
}

/// The make-service, ready only while fewer than its cap of connections live.
pub struct Limited<M> {
    inner: M,
    slots: PollSemaphore,
    slot: Option<OwnedSemaphorePermit>,
}

impl<M> Limited<M> {
    pub fn new(inner: M, max_connections: usize) -> Limited<M> {
        Limited {
            inner,
            slots: PollSemaphore::new(Arc::new(Semaphore::new(max_connections.max(1)))),
            slot: None,
        }
    }
}

impl<M, T> Service<T> for Limited<M>
where
    M: Service<T>,
    M::Future: Send + 'static,
    M::Response: Send + 'static,
{
    type Response = Tracked<M::Response>;
    type Error = M::Error;
    type Future = BoxFuture<Result<Tracked<M::Response>, M::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), M::Error>> {
        if self.slot.is_none() {
            // `None` only if the semaphore were closed, which nothing does.
            self.slot = ready!(self.slots.poll_acquire(cx));
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, target: T) -> Self::Future {
        let conn = Arc::new(Conn::new(self.slot.take()));
        let made = self.inner.call(target);
        Box::pin(async move { made.await.map(|inner| Tracked { inner, conn }) })
    }
}

/// One connection's service: counts its requests in flight.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S, R, B> Service<R> for Tracked<S>
where
    S: Service<R, Response = Response<B>>,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<TrackedBody<B>>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let in_flight = InFlight::start(&self.conn);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| TrackedBody {
                inner,
                _in_flight: in_flight,
            }))
        })
    }
}

/// A response body; its request is in flight until it is dropped.
pub struct TrackedBody<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> http_body::Body for TrackedBody<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Connections open per peer address.
#[derive(Debug)]
struct PeerCounts {
    open: Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    max: usize,
    exempt: Vec<ipnet::IpNet>,
}

/// One connection's place in its address's count, given back when the
/// connection's stream is dropped.
#[derive(Debug)]
struct PeerSlot {
    counts: Arc<PeerCounts>,
    key: std::net::IpAddr,
}

impl PeerCounts {
    /// A place for a connection from `peer`, or None when its address has
    /// its maximum already.
    fn take(self: &Arc<Self>, peer: std::net::IpAddr) -> Option<Option<PeerSlot>> {
        if self.exempt.iter().any(|net| net.contains(&peer)) {
            return Some(None);
        }
        let key = crate::rate_limit::bucket_of(peer);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Some(PeerSlot {
            counts: Arc::clone(self),
            key,
        }))
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Wraps each accepted TCP stream in [`Guarded`] (under TLS, when the
/// server speaks it), and closes those beyond their address's maximum.
#[derive(Debug, Clone)]
pub struct GuardAcceptor {
    idle: Duration,
    first_request: Duration,
    peers: Arc<PeerCounts>,
}

impl GuardAcceptor {
    pub fn new(
        limits: &crate::config::ConnectionLimits,
        trusted_proxies: &[ipnet::IpNet],
    ) -> GuardAcceptor {
        GuardAcceptor {
            idle: limits.idle_timeout,
            // Until its first request a connection must not wait for one
            // longer than the handshake and a request head may take: hyper
            // reads the first bytes (to tell HTTP/1.1 from HTTP/2) before
            // its own header-read timeout starts.
            first_request: limits.tls_handshake_timeout + limits.header_read_timeout,
            peers: Arc::new(PeerCounts {
                open: Mutex::new(std::collections::HashMap::new()),
                max: limits.max_connections_per_address.max(1),
                exempt: trusted_proxies.to_vec(),
            }),
        }
    }
}

impl<S> Accept<TcpStream, Tracked<S>> for GuardAcceptor {
    type Stream = Guarded<TcpStream>;
    type Service = Tracked<S>;
    type Future = std::future::Ready<io::Result<(Guarded<TcpStream>, Tracked<S>)>>;

    fn accept(&self, stream: TcpStream, service: Tracked<S>) -> Self::Future {
        let peer = match stream.peer_addr() {
            Ok(peer) => self.peers.take(peer.ip()),
            Err(_) => Some(None),
        };
        let Some(peer_slot) = peer else {
            // Dropping the stream closes it; its global slot goes back
            // with the service.
            return std::future::ready(Err(io::Error::other(
                "too many connections from this address",
            )));
        };
        let mut guarded = Guarded::new(
            stream,
            Arc::clone(&service.conn),
            self.idle,
            Instant::now() + self.first_request,
        );
        guarded._peer = peer_slot;
        std::future::ready(Ok((guarded, service)))
    }
}

/// A connection's stream that fails once the connection is idle too long,
/// or its client stops reading what it is sent.
pub struct Guarded<I> {
    inner: I,
    conn: Arc<Conn>,
    idle: Duration,
    first_request_by: Instant,
    idle_timer: Pin<Box<Sleep>>,
    write_blocked_since: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
    /// The connection's place in its address's count.
    _peer: Option<PeerSlot>,
}

impl<I> Guarded<I> {
    fn new(inner: I, conn: Arc<Conn>, idle: Duration, first_request_by: Instant) -> Guarded<I> {
        let later = Instant::now() + idle;
        Guarded {
            inner,
            conn,
            idle,
            first_request_by,
            idle_timer: Box::pin(tokio::time::sleep_until(later)),
            write_blocked_since: None,
            write_timer: Box::pin(tokio::time::sleep_until(later)),
            _peer: None,
        }
    }

    /// Fails a write that has been blocked (the client reading nothing) for
    /// the idle timeout.
    fn unless_stalled<T>(
        &mut self,
        polled: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                self.write_blocked_since = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let since = *self.write_blocked_since.get_or_insert_with(Instant::now);
                if expired(&mut self.write_timer, since + self.idle, cx) {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client read nothing of the response for too long",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

/// True when `deadline` has passed; otherwise the timer wakes the task at it.
fn expired(timer: &mut Pin<Box<Sleep>>, deadline: Instant, cx: &mut Context<'_>) -> bool {
    if Instant::now() >= deadline {
        return true;
    }
    if timer.deadline() != deadline {
        timer.as_mut().reset(deadline);
    }
    timer.as_mut().poll(cx).is_ready()
}

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.conn.reader.register(cx.waker());
        if let Some(deadline) = this.conn.idle_deadline(this.idle, this.first_request_by) {
            if expired(&mut this.idle_timer, deadline, cx) {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection was idle for too long",
                )));
            }
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.unless_stalled(polled, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.unless_stalled(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.unless_stalled(polled, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
