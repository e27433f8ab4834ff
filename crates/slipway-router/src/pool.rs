//! Each backend instance's upstream connections: a stack of idle HTTP/1.1 connections, the most
//! recently used on top.
//!
//! It replaces hyper-util's legacy client, which cost about 12,000 instructions per proxied
//! request (a pool key hashed and compared, a task spawned to wait for each connection to be
//! reusable, the connect time carried as a response extension) where this costs a short lock, a
//! push and a pop. Taking the most recent connection keeps the busy set small and warm; the
//! ones below it stay idle and close after [`IDLE_TIMEOUT`], so the pool shrinks after a burst.
//! A connection goes back on the stack only once its response body has been read to the end
//! (HTTP/1.1 cannot start a request before that), which the response body reports.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;

use crate::connector;
use crate::router::UpstreamBody;
use crate::workers;

/// Idle connections are closed after this, so a backend that gets no traffic is not held open
/// for long, and one that left the table closes its connections as soon as its last request
/// ends (the pool goes with it).
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
    /// One stack per worker thread (see [`workers`]), so a request takes a connection driven
    /// by its own thread, and one for any other thread.
    idle: Box<[Mutex<Vec<Conn>>]>,
}

/// One open connection: the handle requests are sent on, and what its driving task reads to
/// tell an idle connection from a busy one.
pub(crate) struct Conn {
    pub(crate) sender: SendRequest<UpstreamBody>,
    pub(crate) state: Arc<ConnState>,
}

/// How many times the connection was taken or given back: odd while a request uses it, even
/// while it waits on the stack. The driving task closes a connection whose count stayed the
/// same and even for a whole [`IDLE_TIMEOUT`].
pub(crate) struct ConnState(AtomicU64);

impl ConnState {
    /// A new connection, opened for the request about to use it.
    pub(crate) fn busy() -> Self {
        Self(AtomicU64::new(1))
    }

    pub(crate) fn moves(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn moved(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A request sent and its response head received.
pub(crate) struct Sent {
    pub(crate) response: Response<Incoming>,
    /// The connection it came on, to give back once the response body has ended.
    pub(crate) connection: Pooled,
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
    Request(hyper::Error),
    /// A connection opened for this request closed before any of the response: behind a
    /// port proxy (Docker's for published ports) that is what a backend with nothing
    /// listening looks like, since the proxy accepts every connection first.
    Unanswered(hyper::Error),
}

/// Whether a request failed because its connection closed (or was reset) before any of the
/// response came, rather than on its own body.
fn unanswered(err: &hyper::Error) -> bool {
    if err.is_incomplete_message() || err.is_canceled() || err.is_closed() {
        return true;
    }
    let mut cause = std::error::Error::source(err);
    while let Some(source) = cause {
        if let Some(io) = source.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            );
        }
        cause = source.source();
    }
    false
}

/// A connection in use by one request, which goes back on its pool's stack when
/// [`Pooled::release`]d, and closes when dropped.
pub(crate) struct Pooled {
    conn: Conn,
    pool: Pool,
}

impl Pooled {
    /// Gives the connection back for the next request. Only for a response read to its end:
    /// anything left unread would be taken for the next response.
    pub(crate) fn release(self) {
        self.pool.checkin(self.conn);
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
    /// is left. A request that an idle connection closed under before any of it was written
    /// (the backend closed it while it sat idle) goes on the next one: it never reached the
    /// backend, so this is safe whatever its method.
    pub(crate) async fn send(&self, mut req: Request<UpstreamBody>) -> Result<Sent, SendError> {
        while let Some(mut conn) = self.checkout() {
            // Given back at the end of its last body, the connection may still be finishing
            // that response; this waits the moment it takes, and fails when it closed.
            if conn.sender.ready().await.is_err() {
                continue;
            }
            match conn.sender.try_send_request(req).await {
                Ok(response) => return Ok(self.sent(response, conn, Duration::ZERO)),
                Err(mut err) => match err.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(SendError::Request(err.into_error())),
                },
            }
        }
        let started = Instant::now();
        let mut conn = connector::open(self.shared.addr, self.shared.connect_timeout).await?;
        let connect = started.elapsed();
        match conn.sender.try_send_request(req).await {
            Ok(response) => Ok(self.sent(response, conn, connect)),
            Err(err) => {
                let err = err.into_error();
                Err(if unanswered(&err) {
                    SendError::Unanswered(err)
                } else {
                    SendError::Request(err)
                })
            }
        }
    }

    fn sent(&self, response: Response<Incoming>, conn: Conn, connect: Duration) -> Sent {
        Sent {
            response,
            connection: Pooled {
                conn,
                pool: self.clone(),
            },
            connect,
        }
    }

    /// The most recently used open connection, marked busy.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.lock();
        while let Some(conn) = idle.pop() {
            if !conn.sender.is_closed() {
                drop(idle);
                conn.state.moved();
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        conn.state.moved();
        let mut idle = self.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// This thread's stack.
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        let idle = &self.shared.idle;
        idle[workers::current() % idle.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Idle connections on the stack, closed ones included until a checkout passes them.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use bytes::Bytes;
    use http::header;
    use http_body_util::{BodyExt, Either, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A backend that answers every request head with `ok` and counts the connections it
    /// accepted; with `close_after_one`, it closes each connection after its first response
    /// without saying so, as a backend with a short keep-alive timeout does.
    async fn backend(close_after_one: bool) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
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
                });
            }
        });
        (addr, accepted)
    }

    fn get() -> Request<UpstreamBody> {
        Request::builder()
            .uri("/")
            .header(header::HOST, "demo.example.com")
            .body(Either::Right(Empty::<Bytes>::new()))
            .expect("request")
    }

    /// Sends a request, reads the whole body and gives the connection back.
    async fn round_trip(pool: &Pool) -> Duration {
        let sent = pool.send(get()).await.expect("response");
        let body = sent
            .response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(body, "ok");
        sent.connection.release();
        sent.connect
    }

    #[tokio::test]
    async fn a_released_connection_is_reused() {
        let (addr, accepted) = backend(false).await;
        let pool = Pool::new(addr, Duration::from_secs(1), 1);
        for _ in 0..5 {
            round_trip(&pool).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn connections_in_use_are_not_shared_and_the_newest_idle_one_goes_first() {
        let (addr, accepted) = backend(false).await;
        let pool = Pool::new(addr, Duration::from_secs(1), 1);
        let first = pool.send(get()).await.expect("first");
        let second = pool.send(get()).await.expect("second");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "one connection per request"
        );
        assert!(first.connect > Duration::ZERO && second.connect > Duration::ZERO);

        let newest = Arc::as_ptr(&second.connection.conn.state);
        for sent in [first, second] {
            sent.response.into_body().collect().await.expect("body");
            sent.connection.release();
        }
        let reused = pool.send(get()).await.expect("third");
        assert_eq!(
            reused.connect,
            Duration::ZERO,
            "an idle connection was reused"
        );
        assert_eq!(Arc::as_ptr(&reused.connection.conn.state), newest, "LIFO");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_dropped_connection_is_not_reused() {
        let (addr, accepted) = backend(false).await;
        let pool = Pool::new(addr, Duration::from_secs(1), 1);
        let sent = pool.send(get()).await.expect("response");
        drop(sent);
        round_trip(&pool).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_is_replaced_without_failing_the_request() {
        let (addr, accepted) = backend(true).await;
        let pool = Pool::new(addr, Duration::from_secs(1), 1);
        for _ in 0..3 {
            round_trip(&pool).await;
            // Let the connection task see the close, as an idle connection would over time.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let pool = Pool::new(addr, Duration::from_secs(1), 1);
        match pool.send(get()).await {
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
    async fn an_idle_connection_closes_after_the_idle_timeout() {
        let (addr, accepted) = backend(false).await;
        let pool = Pool::new(addr, Duration::from_secs(1), 1);
        round_trip(&pool).await;
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        round_trip(&pool).await;
        tokio::time::sleep(IDLE_TIMEOUT / 2).await;
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "used within the timeout: kept"
        );

        tokio::time::sleep(IDLE_TIMEOUT * 2).await;
        assert!(pool.checkout().is_none(), "closed while idle");
        assert!(round_trip(&pool).await > Duration::ZERO, "a new connection");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }
}
