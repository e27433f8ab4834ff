//! Accepting client connections (HTTP/1.1, and HTTP/2 with prior knowledge or by ALPN over TLS)
//! and shutting down without dropping the requests in flight.

use std::convert::Infallible;
use std::error::Error;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use metrics::Gauge;
use rustls::HandshakeKind;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, watch};
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;

use crate::headers::is_upgrade_request;
use crate::router::Router;
use crate::stats;
use crate::workers::{Assignment, Workers};

/// How long a shutdown waits for requests in flight, matching how long the deployer drains a
/// container before stopping it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause after an accept error that is not about one connection (out of file descriptors), so
/// the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How the requests of one listener reached the router, as the app is told in
/// `X-Forwarded-Proto` and `X-Forwarded-Port`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inbound {
    pub(crate) https: bool,
    /// The public port of the listener, which may differ from the one bound (port mapping).
    pub(crate) port: u16,
}

type Builder = auto::Builder<TokioExecutor>;

/// Who is at the other end of one client connection, worked out once for all its requests.
pub(crate) struct Peer {
    /// The address as `X-Forwarded-For` ends with it.
    pub(crate) ip: HeaderValue,
    pub(crate) https: bool,
    /// `X-Forwarded-Port`.
    pub(crate) port: HeaderValue,
    /// The request deadline timer, kept for the connection's next request while none uses it.
    timer: Mutex<Option<Pin<Box<Sleep>>>>,
}

impl Peer {
    fn new(addr: SocketAddr, inbound: Inbound) -> Self {
        let ip = addr.ip().to_canonical().to_string();
        Self {
            ip: HeaderValue::try_from(ip).expect("an IP address is a valid header value"),
            https: inbound.https,
            port: HeaderValue::from(inbound.port),
            timer: Mutex::new(None),
        }
    }

    /// A timer that fires at `deadline`. It is the connection's own when no other request of
    /// the connection holds it (always so on HTTP/1.1, one request at a time), else a new one:
    /// moving a registered timer's deadline later is one atomic update, where a timer per
    /// request is inserted into tokio's timer wheel and removed again, under its lock.
    pub(crate) fn request_timer(&self, deadline: tokio::time::Instant) -> RequestTimer<'_> {
        let kept = self
            .timer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let sleep = match kept {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        RequestTimer {
            sleep: Some(sleep),
            home: &self.timer,
        }
    }
}

/// A request's deadline, given back to its connection when the request no longer needs it.
pub(crate) struct RequestTimer<'a> {
    sleep: Option<Pin<Box<Sleep>>>,
    home: &'a Mutex<Option<Pin<Box<Sleep>>>>,
}

impl Future for RequestTimer<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.get_mut().sleep {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl Drop for RequestTimer<'_> {
    fn drop(&mut self) {
        let mut home = self.home.lock().unwrap_or_else(PoisonError::into_inner);
        if home.is_none() {
            *home = self.sleep.take();
        }
    }
}

impl Router {
    /// Serves plain HTTP on `listener` until `shutdown` resolves, then stops accepting and
    /// drains: no connection is closed while its client may be sending on it. HTTP/2
    /// connections get GOAWAY and finish their streams; HTTP/1.x connections answer their next
    /// request with `Connection: close`, or close at their usual idle or header deadline.
    /// Returns when every connection is done, or after 30 s, dropping whatever is left.
    /// Upgraded connections (WebSocket) are not waited for.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let inbound = Inbound {
            https: false,
            port: self.config.listen_port,
        };
        self.accept_loop(listener, shutdown, inbound, None).await
    }

    /// Serves HTTPS on `listener` like [`Router::serve`] serves HTTP, with the certificates of
    /// the last [`Router::update_certs`] chosen by SNI and HTTP/2 or HTTP/1.1 chosen by ALPN.
    /// Each handshake runs beside the accept loop and is given up after the header read
    /// timeout; a shutdown lets handshakes in progress finish and answers one request on them.
    pub async fn serve_tls(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        let inbound = Inbound {
            https: true,
            port: match self.config.https_port {
                Some(port) => port,
                None => listener.local_addr()?.port(),
            },
        };
        let acceptor = TlsAcceptor::from(Arc::clone(&self.tls.config));
        self.accept_loop(listener, shutdown, inbound, Some(acceptor))
            .await
    }

    /// Accepts on every worker (or on this runtime without workers) until `shutdown`, then
    /// waits for each to drain.
    async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
        inbound: Inbound,
        tls: Option<TlsAcceptor>,
    ) -> io::Result<()> {
        tracing::info!(addr = %listener.local_addr()?, https = inbound.https, "router listening");
        let (stopping_tx, stopping) = watch::channel(false);
        let acceptor = Arc::new(Acceptor {
            builder: Arc::new(self.connection_builder()),
            router: Arc::clone(&self),
            stopping,
            inbound,
            tls,
        });
        let mut accepting = JoinSet::new();
        match self.workers() {
            None => {
                accepting.spawn(Arc::clone(&acceptor).run(listener));
            }
            // Every worker's event loop watches the same listening socket, as nginx's workers
            // share theirs: a connection is accepted by whichever is free first.
            Some(workers) => {
                let listener = listener.into_std()?;
                for worker in workers.handles() {
                    let listener = listener.try_clone()?;
                    let acceptor = Arc::clone(&acceptor);
                    accepting.spawn_on(
                        async move {
                            match TcpListener::from_std(listener) {
                                Ok(listener) => acceptor.run(listener).await,
                                Err(err) => {
                                    tracing::error!(error = %err, "a worker could not watch the listening socket");
                                }
                            }
                        },
                        worker,
                    );
                }
            }
        }
        shutdown.await;
        let _ = stopping_tx.send(true);
        while accepting.join_next().await.is_some() {}
        Ok(())
    }

    /// Serves one client connection given as a byte stream, as the accept loop would a plain
    /// HTTP one, for the fuzz targets.
    #[cfg(feature = "fuzzing")]
    pub(crate) async fn serve_stream<I>(self: Arc<Self>, io: I, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let permit = Arc::clone(&self.connection_slots)
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        let (_stop, stopping) = watch::channel(false);
        let connection = Connection {
            builder: Arc::new(self.connection_builder()),
            stopping,
            peer,
            inbound: Inbound {
                https: false,
                port: self.config.listen_port,
            },
            slot: Arc::new(Slot::new(permit, false)),
            router: self,
        };
        connection.serve(io, false).await;
    }

    /// HTTP/1.1 and HTTP/2 with the configured header limit. hyper's own header read timeout
    /// is off: it would also close idle keep-alive connections, which [`Activity`] tells apart.
    fn connection_builder(&self) -> Builder {
        let max_header_bytes = self.config.max_header_bytes;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(max_header_bytes.max(MIN_HTTP1_BUFFER));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX));
        builder
    }
}

/// hyper's smallest allowed HTTP/1.1 read buffer, which is also the smallest header limit.
const MIN_HTTP1_BUFFER: usize = 8192;

/// A client connection's place under [`RouterConfig::max_connections`](crate::RouterConfig)
/// and in the open-connections gauge, given back when the connection's task ends, or when the
/// tunnel it became (WebSocket) closes.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    gauge: Gauge,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, https: bool) -> Self {
        let gauge = stats::open_connections(https);
        gauge.increment(1);
        Self {
            _permit: permit,
            gauge,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gauge.decrement(1);
    }
}

/// What every accept loop of one listener shares.
struct Acceptor {
    router: Arc<Router>,
    builder: Arc<Builder>,
    /// Turns true when the shutdown begins.
    stopping: watch::Receiver<bool>,
    inbound: Inbound,
    tls: Option<TlsAcceptor>,
}

impl Acceptor {
    /// Accepts connections until the shutdown, then drains the ones it started.
    async fn run(self: Arc<Self>, listener: TcpListener) {
        let router = &self.router;
        let workers = router.workers();
        let mut stopping = self.stopping.clone();
        let mut connections = JoinSet::new();
        loop {
            let (stream, peer) = tokio::select! {
                () = stopped(&mut stopping) => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        accept_failed(err).await;
                        continue;
                    }
                },
            };
            // Below the cap a connection accepted is always served, even if the shutdown has
            // just begun. At the cap, it waits here and the next ones in the listen backlog.
            let slot = match Arc::clone(&router.connection_slots).try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => tokio::select! {
                    () = stopped(&mut stopping) => break,
                    slot = Arc::clone(&router.connection_slots).acquire_owned() => {
                        slot.expect("the connection semaphore is never closed")
                    }
                },
            };
            while connections.try_join_next().is_some() {}
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(%peer, error = %err, "could not disable Nagle's algorithm");
            }
            let connection = Connection {
                router: Arc::clone(router),
                builder: Arc::clone(&self.builder),
                stopping: self.stopping.clone(),
                peer,
                inbound: self.inbound,
                slot: Arc::new(Slot::new(slot, self.inbound.https)),
            };
            let tls = self.tls.clone();
            match workers.map(Workers::assign) {
                None => {
                    connections.spawn(connection.start(stream, tls));
                }
                Some(Assignment::Here(assigned)) => {
                    connections.spawn(async move {
                        let _assigned = assigned;
                        connection.start(stream, tls).await;
                    });
                }
                // The stream moves to the other worker's own event loop.
                Some(Assignment::There(worker, assigned)) => match stream.into_std() {
                    Ok(stream) => {
                        connections.spawn_on(
                            async move {
                                let _assigned = assigned;
                                match TcpStream::from_std(stream) {
                                    Ok(stream) => connection.start(stream, tls).await,
                                    Err(err) => {
                                        tracing::debug!(%peer, error = %err, "could not move a connection to a worker");
                                    }
                                }
                            },
                            worker,
                        );
                    }
                    Err(err) => {
                        tracing::debug!(%peer, error = %err, "could not move a connection to a worker");
                    }
                },
            }
        }
        drop(listener);
        tracing::info!(
            connections = connections.len(),
            https = self.inbound.https,
            "router stopped accepting, draining"
        );
        let drained = async { while connections.join_next().await.is_some() {} };
        if tokio::time::timeout(DRAIN_TIMEOUT, drained).await.is_err() {
            tracing::warn!(
                connections = connections.len(),
                "router drain timed out, closing the remaining connections"
            );
        }
    }
}

/// Returns once the shutdown has begun (or the router that would signal it is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stopping| *stopping).await;
}

/// One accepted client connection. It is waited for by a shutdown from the moment it is
/// accepted, so a connection that finishes its handshake during the drain is still served.
struct Connection {
    router: Arc<Router>,
    builder: Arc<Builder>,
    stopping: watch::Receiver<bool>,
    peer: SocketAddr,
    inbound: Inbound,
    slot: Arc<Slot>,
}

impl Connection {
    async fn start(self, stream: TcpStream, tls: Option<TlsAcceptor>) {
        match tls {
            None => self.serve(stream, false).await,
            Some(acceptor) => self.handshake(acceptor, stream).await,
        }
    }

    /// The handshake is finished even when a shutdown starts meanwhile: the client is about to
    /// send a request on it, and dropping it would fail that request. A client that stays silent
    /// is let go after the header read timeout, as on plain HTTP.
    async fn handshake(self, acceptor: TlsAcceptor, stream: TcpStream) {
        let peer = self.peer;
        let timeout = self.router.config.header_read_timeout;
        let tls = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(err)) => {
                stats::count_handshake("failed");
                tracing::debug!(%peer, error = %err, "TLS handshake failed");
                return;
            }
            Err(_) => {
                stats::count_handshake("timed_out");
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        let session = tls.get_ref().1;
        stats::count_handshake(match session.handshake_kind() {
            Some(HandshakeKind::Resumed) => "resumed",
            _ => "full",
        });
        let http2 = session.alpn_protocol() == Some(b"h2");
        self.serve(tls, http2).await;
    }

    /// Serves requests until the client closes, the connection stays idle or half-sent too
    /// long, or the router shuts down. `http2` is set when ALPN already chose HTTP/2.
    ///
    /// A shutdown never closes a connection under a client that may be sending on it. An
    /// HTTP/2 client gets GOAWAY, which says which streams will still be answered, so it sends
    /// nothing more and reconnects. HTTP/1.x has no such message: its connection stays open,
    /// and its next response (the one in progress, if any) says `Connection: close`, after which
    /// hyper closes it; a connection that stays idle is closed only by its usual idle or header
    /// deadline, or by the drain timeout, as it would have been without the shutdown.
    async fn serve<I>(self, io: I, http2: bool)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            router,
            builder,
            mut stopping,
            peer,
            inbound,
            slot,
        } = self;
        let activity = Arc::new(Activity::new(http2));
        let io = TokioIo::new(Watched {
            io,
            activity: Arc::clone(&activity),
        });
        let limits = Limits {
            header_read: router.config.header_read_timeout,
            idle: router.config.idle_timeout,
        };
        let client = Arc::new(Peer::new(peer, inbound));
        let service = service_fn({
            let activity = Arc::clone(&activity);
            let stopping = stopping.clone();
            move |mut req: Request<Incoming>| {
                let router = Arc::clone(&router);
                let client = Arc::clone(&client);
                let request = RequestGuard::start(&activity);
                if is_upgrade_request(&req) {
                    req.extensions_mut().insert(Arc::clone(&slot));
                }
                let http1 = req.version() < Version::HTTP_2;
                if !http1 {
                    activity.saw_http2();
                }
                let stopping = stopping.clone();
                async move {
                    let mut response = router.handle(req, &client).await;
                    // A 101 must keep its `Connection: upgrade`; the tunnel ends by itself.
                    if http1
                        && *stopping.borrow()
                        && response.status() != StatusCode::SWITCHING_PROTOCOLS
                    {
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("close"));
                    }
                    Ok::<_, Infallible>(response.map(|body| body.hold(request)))
                }
            }
        });
        let mut connection = pin!(builder.serve_connection_with_upgrades(io, service));
        let mut draining = false;
        let expired = loop {
            if draining && activity.http2.load(Ordering::Relaxed) {
                break None;
            }
            tokio::select! {
                served = connection.as_mut() => {
                    connection_ended(peer, served);
                    return;
                }
                _ = stopping.wait_for(|stopping| *stopping), if !draining => draining = true,
                () = activity.http2_started.notified(), if draining => {}
                reason = activity.expired(limits) => break Some(reason),
            }
        };
        connection.as_mut().graceful_shutdown();
        let served = match expired {
            // GOAWAY is sent: the streams in progress may take their time, bounded by the drain.
            None => connection.await,
            Some(reason) => {
                stats::count_closed(reason);
                tracing::debug!(%peer, reason, "closing client connection");
                match tokio::time::timeout(limits.header_read, connection).await {
                    Ok(served) => served,
                    Err(_) => return,
                }
            }
        };
        connection_ended(peer, served);
    }
}

fn connection_ended(peer: SocketAddr, served: Result<(), Box<dyn Error + Send + Sync>>) {
    if let Err(err) = served {
        tracing::debug!(%peer, error = %err, "client connection ended with an error");
    }
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    header_read: Duration,
    idle: Duration,
}

/// What a connection is doing, as far as its timeouts care: how many requests it has open, and
/// since when it has been idle or sending the head of its next request.
struct Activity {
    /// Tokio's clock, so tests that pause time also pause these deadlines.
    started: tokio::time::Instant,
    open: AtomicUsize,
    /// Milliseconds after `started` when the last open request finished.
    idle_since: AtomicU64,
    /// Milliseconds after `started` when bytes arrived while no request was open, which is a
    /// request head on its way; [`NOT_STARTED`] otherwise. A new connection starts there, so
    /// one that never sends anything is held no longer than a slow head.
    head_since: AtomicU64,
    /// The connection speaks HTTP/2 (ALPN said so, or a request came as HTTP/2), so a shutdown
    /// can end it with GOAWAY.
    http2: AtomicBool,
    /// Wakes a draining connection whose first HTTP/2 request arrives after the shutdown began
    /// (prior knowledge on plain HTTP), so it gets its GOAWAY.
    http2_started: Notify,
}

const NOT_STARTED: u64 = u64::MAX;

impl Activity {
    fn new(http2: bool) -> Self {
        Self {
            started: tokio::time::Instant::now(),
            open: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            http2: AtomicBool::new(http2),
            http2_started: Notify::new(),
        }
    }

    fn saw_http2(&self) {
        if !self.http2.load(Ordering::Relaxed) {
            self.http2.store(true, Ordering::Relaxed);
            self.http2_started.notify_one();
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn received(&self) {
        if self.open.load(Ordering::Relaxed) == 0
            && self.head_since.load(Ordering::Relaxed) == NOT_STARTED
        {
            self.head_since.store(self.now(), Ordering::Relaxed);
        }
    }

    /// When the connection must close unless something happens, and why; `None` while a
    /// request is open.
    fn deadline(&self, limits: Limits) -> Option<(u64, &'static str)> {
        if self.open.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let head_since = self.head_since.load(Ordering::Relaxed);
        Some(if head_since == NOT_STARTED {
            let idle_since = self.idle_since.load(Ordering::Relaxed);
            (idle_since.saturating_add(millis(limits.idle)), "idle")
        } else {
            (
                head_since.saturating_add(millis(limits.header_read)),
                "header_timeout",
            )
        })
    }

    /// Resolves when the connection has been idle, or sending a head, for too long. It sleeps
    /// at most a header timeout at a time, so a head that starts during a long idle wait still
    /// gets its own, shorter deadline.
    async fn expired(&self, limits: Limits) -> &'static str {
        let step = millis(limits.header_read.min(limits.idle)).max(1);
        loop {
            let now = self.now();
            let wake = match self.deadline(limits) {
                Some((at, reason)) if at <= now => return reason,
                Some((at, _)) => at.min(now.saturating_add(step)),
                None => now.saturating_add(step),
            };
            tokio::time::sleep(Duration::from_millis(wake - now)).await;
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// One request on a connection, from the moment its head has arrived until its response has
/// been sent or abandoned; the connection is not idle meanwhile.
pub(crate) struct RequestGuard(Arc<Activity>);

impl RequestGuard {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.open.fetch_add(1, Ordering::Relaxed);
        activity.head_since.store(NOT_STARTED, Ordering::Relaxed);
        Self(Arc::clone(activity))
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now(), Ordering::Relaxed);
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The client's byte stream, noting in [`Activity`] when bytes arrive.
struct Watched<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.received();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

async fn accept_failed(err: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    ) {
        tracing::debug!(error = %err, "a connection failed before it was accepted");
        return;
    }
    tracing::error!(error = %err, "accepting connections failed, retrying");
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}
