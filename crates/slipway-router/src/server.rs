//! Accepting client connections (HTTP/1.1, and HTTP/2 with prior knowledge or by ALPN over TLS)
//! and shutting down without dropping the requests in flight.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::rt::{Read, Write};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::HandshakeKind;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::router::Router;

/// How long a shutdown waits for requests in flight, matching how long the deployer drains a
/// container before stopping it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause after an accept error that is not about one connection (out of file descriptors), so
/// the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a client has to complete the TLS handshake, so one that connects and stays silent
/// gives its socket back instead of holding it forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the requests of one listener reached the router, as the app is told in
/// `X-Forwarded-Proto` and `X-Forwarded-Port`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inbound {
    pub(crate) https: bool,
    /// The public port of the listener, which may differ from the one bound (port mapping).
    pub(crate) port: u16,
}

type Builder = auto::Builder<TokioExecutor>;

impl Router {
    /// Serves plain HTTP on `listener` until `shutdown` resolves, then stops accepting, lets
    /// every open connection finish its current request (idle keep-alive connections close at
    /// once) and returns when they are done or after 30 s, dropping whatever is left.
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
    /// Each handshake runs beside the accept loop and is given up after 10 s; a shutdown drops
    /// handshakes still in progress, since no request has been made on them yet.
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

    async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
        inbound: Inbound,
        tls: Option<TlsAcceptor>,
    ) -> io::Result<()> {
        tracing::info!(addr = %listener.local_addr()?, https = inbound.https, "router listening");
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new());
        builder.http2().timer(TokioTimer::new());
        let builder = Arc::new(builder);
        let graceful = GracefulShutdown::new();
        let (stopping_tx, stopping) = watch::channel(false);
        let mut connections = JoinSet::new();
        let mut shutdown = pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        accept_failed(err).await;
                        continue;
                    }
                },
            };
            while connections.try_join_next().is_some() {}
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(%peer, error = %err, "could not disable Nagle's algorithm");
            }
            let connection = Connection {
                router: Arc::clone(&self),
                builder: Arc::clone(&builder),
                watcher: graceful.watcher(),
                peer,
                inbound,
            };
            match &tls {
                None => connections.spawn(connection.serve(TokioIo::new(stream))),
                Some(acceptor) => connections.spawn(connection.handshake(
                    acceptor.clone(),
                    stream,
                    stopping.clone(),
                )),
            };
        }
        drop(listener);
        let _ = stopping_tx.send(true);
        tracing::info!(
            connections = graceful.count(),
            https = inbound.https,
            "router stopped accepting, draining"
        );
        if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                connections = connections.len(),
                "router drain timed out, closing the remaining connections"
            );
        }
        Ok(())
    }
}

/// One accepted client connection. Its watcher makes a shutdown wait for it from the moment it
/// is accepted, so a connection that finishes its handshake during the drain is still served.
struct Connection {
    router: Arc<Router>,
    builder: Arc<Builder>,
    watcher: Watcher,
    peer: SocketAddr,
    inbound: Inbound,
}

impl Connection {
    async fn handshake(
        self,
        acceptor: TlsAcceptor,
        stream: TcpStream,
        mut stopping: watch::Receiver<bool>,
    ) {
        let peer = self.peer;
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => outcome,
            _ = stopping.wait_for(|stopping| *stopping) => return,
        };
        let tls = match outcome {
            Ok(Ok(tls)) => tls,
            Ok(Err(err)) => {
                count_handshake("failed");
                tracing::debug!(%peer, error = %err, "TLS handshake failed");
                return;
            }
            Err(_) => {
                count_handshake("timed_out");
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        count_handshake(match tls.get_ref().1.handshake_kind() {
            Some(HandshakeKind::Resumed) => "resumed",
            _ => "full",
        });
        self.serve(TokioIo::new(tls)).await;
    }

    async fn serve<I>(self, io: I)
    where
        I: Read + Write + Unpin + Send + 'static,
    {
        let Connection {
            router,
            builder,
            watcher,
            peer,
            inbound,
        } = self;
        let service = service_fn(move |req| {
            let router = Arc::clone(&router);
            async move { Ok::<_, Infallible>(router.handle(req, peer, inbound).await) }
        });
        let connection = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        if let Err(err) = watcher.watch(connection).await {
            tracing::debug!(%peer, error = %err, "client connection ended with an error");
        }
    }
}

/// `slipway_router_tls_handshakes_total` by outcome: `full`, `resumed`, `failed`, `timed_out`.
fn count_handshake(outcome: &'static str) {
    metrics::counter!("slipway_router_tls_handshakes_total", "outcome" => outcome).increment(1);
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
