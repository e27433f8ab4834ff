//! An [`HttpConnector`] that remembers how long each upstream connection took to open, so the
//! router log line can report `connect=` even though connections are pooled.

use std::error::Error;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

#[derive(Clone)]
pub(crate) struct TimedConnector {
    inner: HttpConnector,
}

impl TimedConnector {
    pub(crate) fn new(connect_timeout: Duration) -> Self {
        let mut inner = HttpConnector::new();
        inner.set_connect_timeout(Some(connect_timeout));
        inner.set_nodelay(true);
        Self { inner }
    }
}

/// Attached to every response that arrived on a connection this connector opened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectTiming {
    established: Instant,
    took: Duration,
}

impl ConnectTiming {
    /// Time spent connecting on behalf of a request sent at `sent`: zero when the request
    /// reused a connection that was already open.
    pub(crate) fn for_request_sent_at(self, sent: Instant) -> Duration {
        if self.established >= sent {
            self.took
        } else {
            Duration::ZERO
        }
    }
}

impl Service<Uri> for TimedConnector {
    type Response = TimedStream;
    type Error = Box<dyn Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<TimedStream, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let started = Instant::now();
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            let timing = ConnectTiming {
                established: Instant::now(),
                took: started.elapsed(),
            };
            Ok(TimedStream { io, timing })
        })
    }
}

pub(crate) struct TimedStream {
    io: TokioIo<TcpStream>,
    timing: ConnectTiming,
}

impl Connection for TimedStream {
    fn connected(&self) -> Connected {
        self.io.connected().extra(self.timing)
    }
}

impl Read for TimedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for TimedStream {
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

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_time_counts_only_for_the_request_that_opened_the_connection() {
        let sent = Instant::now();
        let timing = ConnectTiming {
            established: sent + Duration::from_millis(3),
            took: Duration::from_millis(3),
        };
        assert_eq!(timing.for_request_sent_at(sent), Duration::from_millis(3));
        let later = sent + Duration::from_secs(1);
        assert_eq!(timing.for_request_sent_at(later), Duration::ZERO, "reused");
    }
}
