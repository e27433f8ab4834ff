//! The body the router sends to clients: the app's body relayed frame by frame, or a page the
//! router wrote. It carries the request's log line and in-flight count until the body ends or
//! the client goes away, so both cover the whole response and not just its head.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::access_log::AccessLog;
use crate::table::InFlight;

pub(crate) struct ResponseBody {
    inner: Inner,
    tracker: Option<Tracker>,
}

enum Inner {
    Upstream(Incoming),
    Page(Full<Bytes>),
}

impl ResponseBody {
    pub(crate) fn upstream(body: Incoming, log: AccessLog, in_flight: Option<InFlight>) -> Self {
        Self {
            inner: Inner::Upstream(body),
            tracker: Some(Tracker {
                log,
                bytes: 0,
                _in_flight: in_flight,
            }),
        }
    }

    pub(crate) fn page(content: Bytes, log: AccessLog) -> Self {
        Self {
            inner: Inner::Page(Full::new(content)),
            tracker: Some(Tracker {
                log,
                bytes: 0,
                _in_flight: None,
            }),
        }
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
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
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
                    this.tracker = None;
                }
            }
            Poll::Ready(None | Some(Err(_))) => this.tracker = None,
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
    fn inner_is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Upstream(body) => body.is_end_stream(),
            Inner::Page(body) => body.is_end_stream(),
        }
    }
}
