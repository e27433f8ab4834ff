//! Accepting client connections (HTTP/1.1, and HTTP/2 with prior knowledge) and shutting down
//! without dropping the requests in flight.

use std::convert::Infallible;
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::router::Router;

/// How long a shutdown waits for requests in flight, matching how long the deployer drains a
/// container before stopping it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause after an accept error that is not about one connection (out of file descriptors), so
/// the loop does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
        tracing::info!(addr = %listener.local_addr()?, "router listening");
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new());
        builder.http2().timer(TokioTimer::new());
        let graceful = GracefulShutdown::new();
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
            let router = Arc::clone(&self);
            let service = service_fn(move |req| {
                let router = Arc::clone(&router);
                async move { Ok::<_, Infallible>(router.handle(req, peer).await) }
            });
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let connection = graceful.watch(connection);
            connections.spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(%peer, error = %err, "client connection ended with an error");
                }
            });
        }
        drop(listener);
        tracing::info!(
            connections = graceful.count(),
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
