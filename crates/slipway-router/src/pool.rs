//! Each backend instance's upstream connections: a stack of idle HTTP/1.1 connections, the most
//! recently used on top.
//!
//! It replaces hyper-util's legacy client, which cost about 12,000 instructions per proxied
//! request (a pool key hashed and compared, a task spawned to wait for each connection to be
//! reusable, the connect time carried as a response extension) where this costs a short lock, a
//! push and a pop. Taking the most recent connection keeps the busy set small and warm; the
//! ones below it stay idle, and those idle for [`IDLE_TIMEOUT`] are closed the next time the
//! stack is used, so the pool shrinks after a burst. A connection goes back on the stack only
//! once its response body has been read to the end (HTTP/1.1 cannot start a request before
//! that), which the response body does itself. No task watches an idle connection: a checkout
//! passes over one whose socket turned readable meanwhile (the backend closed it, or sent
//! something unasked).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::Either;
use hyper::body::Body as _;
use tokio::time::Instant;

use crate::connector;
use crate::headers::Forwarding;
use crate::proxy::is_idempotent;
use crate::router::UpstreamBody;
use crate::upstream::{AppBody, Connection, UpstreamError};
use crate::workers;

/// Idle connections are closed after this, so a backend that gets little traffic is not held
/// open for long, and one that left the table closes its connections as soon as its last
/// request ends (the pool goes with it).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle connections kept per backend instance; beyond it a connection closes when its response
/// ends. nginx's `keepalive` is usually 16–64 per upstream: this covers more concurrency than
/// that without letting a one-off burst keep thousands of sockets.
const MAX_IDLE: usize = 256;

/// A backend instance's connections. Cloning shares them.
#[derive(Clone)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    addr: SocketAddr,
    connect_timeout: Duration,
    /// One stack per worker thread (see [`workers`]), so a request takes a connection whose
    /// socket is registered with its own thread's reactor, and one for any other thread. The
    /// oldest idle connection is at the bottom.
    idle: Box<[Mutex<Vec<Idle>>]>,
}

struct Idle {
    connection: Connection,
    since: Instant,
}

/// A request sent and its response head received.
pub(crate) struct Sent {
    /// Its body holds the connection, and gives it back once read to the end.
    pub(crate) response: Response<AppBody>,
    /// Time spent opening a connection for this request; zero when an idle one was reused.
    pub(crate) connect: Duration,
}

/// Why a request got no response head.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be opened: the request never reached the backend.
    Connect(io::Error),
    /// The connection failed while the request was sent or its response awaited, or the
    /// request's own body failed.
    Request(UpstreamError),
    /// A connection opened for this request closed before any of the response: behind a
    /// port proxy (Docker's for published ports) that is what a backend with nothing
    /// listening looks like, since the proxy accepts every connection first.
    Unanswered(UpstreamError),
}

/// A connection in use by one request, which goes back on its pool's stack when
/// [`Pooled::release`]d, and closes when dropped.
pub(crate) struct Pooled {
    connection: Connection,
    pool: Pool,
}

impl Pooled {
    /// Gives the connection back for the next request. Only for a response read to its end:
    /// anything left unread would be taken for the next response.
    pub(crate) fn release(mut self) {
        self.connection.shrink();
        self.pool.checkin(self.connection);
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.connection
    }

    pub(crate) fn connection_mut(&mut self) -> &mut Connection {
        &mut self.connection
    }

    /// The connection, never to go back to the pool (a protocol switch took it).
    pub(crate) fn into_connection(self) -> Connection {
        self.connection
    }
}

impl Pool {
    /// `stacks`: one per worker thread, plus one.
    pub(crate) fn new(addr: SocketAddr, connect_timeout: Duration, stacks: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                addr,
                connect_timeout,
                idle: (0..stacks.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
            }),
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) on an idle connection, or a new one when none
    /// is left. An idempotent request without a body whose reused connection closed before any
    /// of the response goes once more on a new connection: the backend most likely closed the
    /// idle connection as the request went out, and never saw it. Other methods are not sent
    /// twice (as nginx does not): the backend may have acted on the request before closing.
    /// `forwarding`: the headers telling the app about the client, written in place of the
    /// client's own (`None` sends the headers as they are).
    pub(crate) async fn send(
        &self,
        req: Request<UpstreamBody>,
        forwarding: Option<&Forwarding<'_>>,
    ) -> Result<Sent, SendError> {
        let (parts, body) = req.into_parts();
        let mut body = match body {
            Either::Left(body) if !body.is_end_stream() => Some(body),
            Either::Left(_) | Either::Right(_) => None,
        };
        if let Some(connection) = self.checkout() {
            let replayable = body.is_none() && is_idempotent(&parts.method);
            let mut pooled = self.pooled(connection);
            match pooled
                .connection
                .send(&parts, body.take(), forwarding)
                .await
            {
                Ok(head) => {
                    return Ok(Sent {
                        response: head.into_response(pooled),
                        connect: Duration::ZERO,
                    });
                }
                Err(UpstreamError::Unanswered(err)) if replayable => {
                    tracing::debug!(
                        addr = %self.shared.addr,
                        error = %err,
                        "reused upstream connection closed; retrying on a new one"
                    );
                }
                Err(err) => return Err(SendError::Request(err)),
            }
        }
        let started = std::time::Instant::now();
        let connection = connector::open(self.shared.addr, self.shared.connect_timeout)
            .await
            .map_err(SendError::Connect)?;
        let connect = started.elapsed();
        let mut pooled = self.pooled(connection);
        match pooled.connection.send(&parts, body, forwarding).await {
            Ok(head) => Ok(Sent {
                response: head.into_response(pooled),
                connect,
            }),
            Err(err @ UpstreamError::Unanswered(_)) => Err(SendError::Unanswered(err)),
            Err(err) => Err(SendError::Request(err)),
        }
    }

    fn pooled(&self, connection: Connection) -> Pooled {
        Pooled {
            connection,
            pool: self.clone(),
        }
    }

    /// The most recently used connection still open, after closing those idle too long.
    fn checkout(&self) -> Option<Connection> {
        let now = Instant::now();
        let mut idle = self.lock();
        expire(&mut idle, now);
        while let Some(Idle { mut connection, .. }) = idle.pop() {
            if connection.is_reusable() {
                return Some(connection);
            }
        }
        None
    }

    fn checkin(&self, connection: Connection) {
        let now = Instant::now();
        let mut idle = self.lock();
        expire(&mut idle, now);
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                connection,
                since: now,
            });
        }
    }

    /// This thread's stack.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        let idle = &self.shared.idle;
        idle[workers::current() % idle.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Idle connections on the stack, closed ones included until a checkout passes them.
    #[cfg(test)]
    pub(crate) fn idle_count(&self) -> usize {
        self.lock().len()
    }
}

/// Closes the connections at the bottom of `idle` that have waited for [`IDLE_TIMEOUT`].
fn expire(idle: &mut Vec<Idle>, now: Instant) {
    let expired = |entry: &Idle| now.duration_since(entry.since) >= IDLE_TIMEOUT;
    if idle.first().is_some_and(expired) {
        let count = idle.partition_point(expired);
        idle.drain(..count);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http::header;
    use http_body_util::{BodyExt, Either, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A backend that answers every request head with `ok` and counts the connections it
    /// accepted and those that its client closed; with `close_after_one`, it closes each
    /// connection after its first response without saying so, as a backend with a short
    /// keep-alive timeout does.
    async fn backend(close_after_one: bool) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (counter, closes) = (Arc::clone(&accepted), Arc::clone(&closed));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let closes = Arc::clone(&closes);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0; 1024];
                    while let Ok(read @ 1..) = stream.read(&mut buf).await {
                        head.extend_from_slice(&buf[..read]);
                        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            head.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() || close_after_one {
                                return;
                            }
                        }
                    }
                    closes.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (addr, accepted, closed)
    }

    fn get() -> Request<UpstreamBody> {
        Request::builder()
            .uri("/")
            .header(header::HOST, "demo.example.com")
            .body(Either::Right(Empty::<Bytes>::new()))
            .expect("request")
    }

    /// Sends a request and reads the whole body, which gives the connection back.
    async fn round_trip(pool: &Pool) -> Duration {
        let sent = pool.send(get(), None).await.expect("response");
        let body = sent
            .response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(body, "ok");
        sent.connect
    }

    #[tokio::test]
    async fn a_released_connection_is_reused() {
        let (addr, accepted, _) = backend(false).await;
        let pool = Pool::new(addr, Duration::from_secs(1), 1);
        for _ in 0..5 {
            round_trip(&pool).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn connections_in_use_are_not_shared_and_the_newest_idle_one_goes_first() {
        let (addr, accepted, _) = backend(false).await;
        let pool = Pool::new(addr, Duration::from_secs(1), 1);
        let first = pool.send(get(), None).await.expect("first");
        let second = pool.send(get(), None).await.expect("second");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "one connection per request"
        );
        assert!(first.connect > Duration::ZERO && second.connect > Duration::ZERO);

        let newest = second.response.body().local_addr().expect("connection");
        for sent in [first, second] {
            sent.response.into_body().collect().await.expect("body");
        }
        let reused = pool.send(get(), None).await.expect("third");
        assert_eq!(
            reused.connect,
            Duration::ZERO,
            "an idle connection was reused"
        );
        assert_eq!(reused.response.body().local_addr(), Some(newest), "LIFO");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_dropped_connection_is_not_reused() {
        let (addr, accepted, _) = backend(false).await;
        let pool = Pool::new(addr, Duration::from_secs(1), 1);
        let sent = pool.send(get(), None).await.expect("response");
        drop(sent);
        round_trip(&pool).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_is_replaced_without_failing_the_request() {
        let (addr, accepted, _) = backend(true).await;
        let pool = Pool::new(addr, Duration::from_secs(1), 1);
        for _ in 0..3 {
            round_trip(&pool).await;
            // Let the reactor see the close, as it would while the connection sits idle.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    /// The close arrives while the request is on its way: the request goes again on a new
    /// connection, since it has no body.
    #[tokio::test]
    async fn a_request_on_a_connection_closed_under_it_is_sent_again() {
        let (addr, accepted, _) = backend(true).await;
        let pool = Pool::new(addr, Duration::from_secs(1), 1);
        for _ in 0..3 {
            round_trip(&pool).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let pool = Pool::new(addr, Duration::from_secs(1), 1);
        match pool.send(get(), None).await {
            Err(SendError::Connect(err)) => {
                assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
            }
            Err(SendError::Request(err) | SendError::Unanswered(err)) => {
                panic!("expected a connect error, got {err}")
            }
            Ok(_) => panic!("nothing listens there"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_older_than_the_timeout_is_closed_not_handed_out() {
        let (addr, accepted, closed) = backend(false).await;
        let pool = Pool::new(addr, Duration::from_secs(1), 1);
        round_trip(&pool).await;
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        round_trip(&pool).await;
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        round_trip(&pool).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "used within the timeout: kept"
        );

        tokio::time::sleep(IDLE_TIMEOUT).await;
        assert!(pool.checkout().is_none(), "too old to hand out");
        assert_eq!(pool.idle_count(), 0);
        for _ in 0..100 {
            if closed.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(closed.load(Ordering::SeqCst), 1, "closed");
        assert!(round_trip(&pool).await > Duration::ZERO, "a new connection");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    /// Older connections at the bottom of the stack are closed when a newer one comes back.
    #[tokio::test(start_paused = true)]
    async fn expired_connections_below_a_fresh_one_are_closed_at_checkin() {
        let (addr, accepted, _) = backend(false).await;
        let pool = Pool::new(addr, Duration::from_secs(1), 1);
        let old = pool.send(get(), None).await.expect("old");
        let new = pool.send(get(), None).await.expect("new");
        old.response.into_body().collect().await.expect("body");
        tokio::time::sleep(IDLE_TIMEOUT).await;
        new.response.into_body().collect().await.expect("body");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(pool.idle_count(), 1, "the old one was closed");
    }
}
