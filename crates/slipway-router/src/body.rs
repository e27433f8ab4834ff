//! The bodies the router relays. [`ResponseBody`] goes to clients: the app's body relayed frame
//! by frame, or a page the router wrote. It carries the request's log line, in-flight count and
//! connection activity until the body ends or the client goes away, so they cover the whole
//! response and not just its head. The app's body itself gives its upstream connection back to
//! the pool once read to the end. [`RequestBody`] goes to apps: the client's body, counted and
//! cut off at the size limit.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use metrics::Counter;

use crate::access_log::AccessLog;
use crate::server::RequestGuard;
use crate::table::InFlight;
use crate::upstream::{AppBody, UpstreamError};

pub(crate) struct ResponseBody {
    inner: Inner,
    /// Boxed: the log line is most of the body's size, and the response (with this body) is
    /// moved several times on its way to hyper's encoder; a pointer moves cheaper.
    tracker: Option<Box<Tracker>>,
    /// Marks the client connection busy until the response is sent or abandoned.
    request: Option<RequestGuard>,
}

enum Inner {
    Upstream(AppBody),
    Page(Full<Bytes>),
}

impl ResponseBody {
    pub(crate) fn upstream(body: AppBody, log: AccessLog, in_flight: Option<InFlight>) -> Self {
        Self {
            inner: Inner::Upstream(body),
            tracker: Some(Box::new(Tracker {
                log,
                bytes: 0,
                _in_flight: in_flight,
            })),
            request: None,
        }
    }

    pub(crate) fn page(content: Bytes, log: AccessLog) -> Self {
        Self {
            inner: Inner::Page(Full::new(content)),
            tracker: Some(Box::new(Tracker {
                log,
                bytes: 0,
                _in_flight: None,
            })),
            request: None,
        }
    }

    /// Keeps the connection counted as busy for as long as this body is being sent.
    pub(crate) fn hold(mut self, request: RequestGuard) -> Self {
        self.request = Some(request);
        self
    }
}

/// Writes the log line and releases the backend when dropped, whichever way the body ends.
struct Tracker {
    log: AccessLog,
    bytes: u64,
    _in_flight: Option<InFlight>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.log.emit(self.bytes);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx),
            Inner::Page(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(tracker), Some(data)) = (&mut this.tracker, frame.data_ref()) {
                    tracker.bytes += data.len() as u64;
                }
                if this.inner_is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(None | Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner_is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Upstream(body) => body.size_hint(),
            Inner::Page(body) => body.size_hint(),
        }
    }
}

impl ResponseBody {
    /// Writes the log line and releases the backend and the client connection.
    fn finish(&mut self) {
        self.tracker = None;
        self.request = None;
    }

    fn inner_is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(body) => body.is_end_stream(),
            Inner::Page(body) => body.is_end_stream(),
        }
    }
}

/// Why a client's request body could not be relayed. It comes back in the upstream client's
/// error as [`UpstreamError::RequestBody`], which is how the router tells it from an app
/// failure.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestBodyError {
    #[error("request body is larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("client stopped sending the request body")]
    Aborted(#[source] hyper::Error),
}

/// The client's body on its way to the app: relayed frame by frame, counted in
/// `slipway_router_request_bytes_total`, and failed once it exceeds `limit` bytes, for bodies
/// whose size was not announced up front.
pub(crate) struct RequestBody {
    inner: Incoming,
    limit: u64,
    received: u64,
    counter: Counter,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, limit: u64, counter: Counter) -> Self {
        Self {
            inner,
            limit,
            received: 0,
            counter,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    this.received += len;
                    this.counter.increment(len);
                    if this.received > this.limit {
                        return Poll::Ready(Some(Err(RequestBodyError::TooLarge {
                            limit: this.limit,
                        })));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(RequestBodyError::Aborted(err)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
