//! Opening a connection to a backend: TCP within the connect timeout and without Nagle's
//! algorithm (a request or response head must not wait for an acknowledgement).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::upstream::Connection;

pub(crate) async fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Connection> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(stream) => stream?,
        Err(_elapsed) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect timed out after {timeout:?}"),
            ));
        }
    };
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%addr, error = %err, "could not disable Nagle's algorithm upstream");
    }
    Ok(Connection::new(stream))
}
