//! Opening a connection to a backend: TCP within the connect timeout and without Nagle's
//! algorithm (a response head must not wait for an acknowledgement), an HTTP/1.1 client
//! handshake, and the task that drives the connection until it closes, stays idle too long, or
//! its pool lets go of it.

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::pool::{Conn, ConnState, IDLE_TIMEOUT, SendError};

pub(crate) async fn open(addr: SocketAddr, timeout: Duration) -> Result<Conn, SendError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => return Err(SendError::Connect(err)),
        Err(_elapsed) => {
            return Err(SendError::Connect(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect timed out after {timeout:?}"),
            )));
        }
    };
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%addr, error = %err, "could not disable Nagle's algorithm upstream");
    }
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(SendError::Request)?;
    let state = Arc::new(ConnState::busy());
    tokio::spawn(drive(connection, Arc::clone(&state), addr));
    Ok(Conn { sender, state })
}

/// Runs the connection (with protocol switches, for WebSocket) until it ends. A connection left
/// on its pool's stack for a whole [`IDLE_TIMEOUT`] is closed here by dropping it, which its
/// handle on the stack sees as closed.
async fn drive(
    connection: http1::Connection<TokioIo<TcpStream>, crate::router::UpstreamBody>,
    state: Arc<ConnState>,
    addr: SocketAddr,
) {
    let mut connection = pin!(connection.with_upgrades());
    let mut seen = state.moves();
    loop {
        tokio::select! {
            biased;
            ended = connection.as_mut() => {
                if let Err(err) = ended {
                    tracing::debug!(%addr, error = %err, "upstream connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep(IDLE_TIMEOUT) => {
                let moves = state.moves();
                if moves == seen && moves.is_multiple_of(2) {
                    tracing::debug!(%addr, "closing idle upstream connection");
                    return;
                }
                seen = moves;
            }
        }
    }
}
