//! The router's HTTP/1.1 client: one request at a time on a backend connection, written and read
//! inside the task of the client request that uses it.
//!
//! It replaces hyper's client connection, whose spawned connection task cost about 16,500 of the
//! router's 43,000 instructions per proxied 1 KB request: 6,500 parsing the response head, most
//! of the rest moving the request, the response and the body between the request's task and the
//! connection's (channels, `want` signals, wake-ups). Here the request's own task writes the head
//! into a buffer kept on the connection, streams the body, parses the response head with
//! `httparse` and then reads the body straight from the socket in [`AppBody::poll_frame`], so the
//! task is woken by the upstream socket itself; the router went down to about 33,000
//! instructions per request. Header values and body data are slices of the connection's read
//! buffer, never copies.

use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Response, StatusCode, Version, request, response};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::body::{RequestBody, RequestBodyError};
use crate::headers::Forwarding;
use crate::pool::Pooled;

/// Headers accepted in a response head; hyper's client allows the same number.
const MAX_HEADERS: usize = 100;

/// Bytes accepted in a response head, interim (1xx) heads counted one at a time.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Free space ensured in the read buffer before each read: one read takes a whole small
/// response, and a read that leaves space unfilled shows the socket drained (tokio then clears
/// its cached readiness, which is what the pool looks at).
const READ_SPACE: usize = 16 * 1024;

/// The most a body read asks for. A body read that fills all the space it had doubles the next
/// one's, from [`READ_SPACE`] up to this, and one that fills less than a quarter halves it, as
/// hyper's adaptive read buffer does: a 1 MB response then takes four or five reads and writes
/// to the client rather than sixty-four. The size carries over to the connection's next
/// response, which is likely the same kind.
const MAX_BODY_READ_SPACE: usize = 256 * 1024;

/// Request body chunks up to this size are copied behind their chunk-size line and written
/// with it in one system call; larger ones are written from where they are.
const COALESCE_BYTES: usize = 16 * 1024;

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("upstream connection closed before any response byte")]
    Unanswered(#[source] io::Error),
    #[error("upstream connection failed")]
    Io(#[source] io::Error),
    #[error("upstream closed the connection within the response head")]
    HeadCut,
    #[error(
        "response head is larger than {MAX_HEAD_BYTES} bytes or has more than {MAX_HEADERS} headers"
    )]
    HeadTooLarge,
    #[error("response head is malformed")]
    Malformed(#[source] httparse::Error),
    #[error("response status code {0} is invalid")]
    Status(u16),
    #[error("response header `{0}` is invalid")]
    Header(String),
    #[error("response content-length is invalid or given twice with different values")]
    ContentLength,
    #[error("response body has a malformed chunk")]
    Chunk,
    #[error("upstream closed the connection before the end of the response body")]
    BodyCut,
    #[error("request body failed")]
    RequestBody(#[source] RequestBodyError),
    #[error("request body length differs from its announced {0} bytes")]
    RequestBodyLength(u64),
}

/// An open connection to a backend, with its buffers, reused for every request it carries.
pub(crate) struct Connection {
    stream: TcpStream,
    /// Bytes read and not yet handed out; empty between exchanges.
    read: BytesMut,
    /// Free space the next body read asks for.
    body_read_space: usize,
    /// The request head (and small body chunks) being written.
    write: Vec<u8>,
}

/// A response head and how its body is delimited.
pub(crate) struct Head {
    parts: response::Parts,
    framing: Framing,
    /// Whether the connection may carry another request once this response is read.
    keep_alive: bool,
    /// Whether the hop-by-hop headers were left out of `parts` already.
    hop_by_hop_removed: bool,
}

/// How a response body ends (RFC 9112 §6.3).
#[derive(Debug, PartialEq, Eq)]
enum Framing {
    /// This many bytes left.
    Length(u64),
    Chunked(Chunked),
    /// Everything until the backend closes the connection.
    Close,
    /// 101: the connection now carries another protocol.
    Upgrade,
    /// Nothing (left) to read.
    Done,
}

/// Where a chunked body's decoder is.
#[derive(Debug, PartialEq, Eq)]
enum Chunked {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, dropped; how many bytes of them so far.
    Trailers(usize),
}

/// A connection switched to another protocol, with the bytes that came after the 101 head.
pub(crate) struct Upgraded {
    pub(crate) stream: TcpStream,
    pub(crate) read_ahead: Bytes,
}

impl Head {
    /// The response, its body read from `connection`, which goes back to its pool as soon as
    /// the body has ended: at once for a response without one.
    pub(crate) fn into_response(self, connection: Pooled) -> Response<AppBody> {
        let mut body = AppBody {
            connection: Some(connection),
            framing: self.framing,
            keep_alive: self.keep_alive,
            hop_by_hop_removed: self.hop_by_hop_removed,
            failed: None,
        };
        if body.framing == Framing::Done {
            body.finish();
        }
        Response::from_parts(self.parts, body)
    }
}

/// An app's response body, read from its connection as it is polled.
pub(crate) struct AppBody {
    /// Until the body ends or fails.
    connection: Option<Pooled>,
    framing: Framing,
    keep_alive: bool,
    hop_by_hop_removed: bool,
    /// A failure held back for one poll: hyper's server drops the output it has buffered when
    /// a body fails in the same pass, and a client must get what was relayed before it.
    failed: Option<UpstreamError>,
}

impl AppBody {
    /// Whether the response head already lacks the hop-by-hop headers (RFC 9110 §7.6.1): the
    /// parser leaves them out as it goes, which costs less than removing them from the map
    /// afterwards, unless the response switches protocols or its `Connection` header names
    /// other headers.
    pub(crate) fn hop_by_hop_removed(&self) -> bool {
        self.hop_by_hop_removed
    }

    /// The connection of a 101 response, for the tunnel.
    pub(crate) fn take_upgrade(&mut self) -> Option<Upgraded> {
        if self.framing != Framing::Upgrade {
            return None;
        }
        self.framing = Framing::Done;
        let connection = self.connection.take()?.into_connection();
        Some(Upgraded {
            stream: connection.stream,
            read_ahead: connection.read.freeze(),
        })
    }

    /// The body has ended: its connection goes back when the response allows it and nothing
    /// unasked followed the body, and closes otherwise.
    fn finish(&mut self) {
        if let Some(connection) = self.connection.take()
            && self.keep_alive
            && connection.connection().read.is_empty()
        {
            connection.release();
        }
    }

    #[cfg(test)]
    pub(crate) fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.connection
            .as_ref()
            .map(|connection| connection.connection().local_addr())
    }
}

impl Body for AppBody {
    type Data = Bytes;
    type Error = UpstreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        let this = self.get_mut();
        if let Some(err) = this.failed.take() {
            return Poll::Ready(Some(Err(err)));
        }
        let Some(connection) = this.connection.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(connection.connection_mut().poll_body(cx, &mut this.framing)) {
            Some(Ok(data)) => {
                if this.framing == Framing::Done {
                    this.finish();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Some(Err(err)) => {
                this.connection = None;
                this.failed = Some(err);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            None => {
                this.finish();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done | Framing::Upgrade)
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(remaining) => SizeHint::with_exact(remaining),
            Framing::Done | Framing::Upgrade => SizeHint::with_exact(0),
            Framing::Chunked(_) | Framing::Close => SizeHint::default(),
        }
    }
}

impl Connection {
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            read: BytesMut::with_capacity(READ_SPACE),
            body_read_space: READ_SPACE,
            write: Vec::with_capacity(1024),
        }
    }

    /// Whether a connection that waited idle can carry a request: not when the backend closed
    /// it or sent something unasked. Tokio's cached readiness answers without a system call
    /// unless the socket still looks readable since its last read.
    pub(crate) fn is_reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                reserve(&mut self.read, READ_SPACE);
                matches!(
                    self.stream.try_read_buf(&mut self.read),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock
                )
            }
        }
    }

    /// The local address, which tells connections apart in tests.
    #[cfg(test)]
    pub(crate) fn local_addr(&self) -> std::net::SocketAddr {
        self.stream.local_addr().expect("local address")
    }

    /// Writes the request (`parts` with `body`, if it has one) and reads the response head,
    /// skipping interim responses. A backend that answers before taking the whole body gets no
    /// more of it, and the connection is not reused.
    pub(crate) async fn send(
        &mut self,
        parts: &request::Parts,
        body: Option<RequestBody>,
        forwarding: Option<&Forwarding<'_>>,
    ) -> Result<Head, UpstreamError> {
        let head_request = parts.method == http::Method::HEAD;
        let length = body.as_ref().map(|body| body.size_hint().exact());
        encode_head(&mut self.write, parts, length, forwarding);
        let Some(body) = body else {
            let written = self.stream.write_all(&self.write).await;
            let head = read_head(&mut self.stream, &mut self.read, head_request).await;
            return match written {
                Ok(()) => head,
                Err(err) => answered_anyway(head, err),
            };
        };

        let (mut reader, mut writer) = self.stream.split();
        let mut write = pin!(write_body(
            &mut writer,
            &mut self.write,
            body,
            length.flatten()
        ));
        let mut read = pin!(read_head(&mut reader, &mut self.read, head_request));
        tokio::select! {
            biased;
            head = &mut read => head.map(|mut head| {
                head.keep_alive = false;
                head
            }),
            written = &mut write => match written {
                Ok(()) => read.await,
                Err(UpstreamError::Io(err)) => answered_anyway(read.await, err),
                Err(err) => Err(err),
            },
        }
    }

    /// Reads the next piece of a body delimited by `framing`; `None` once it has ended, with
    /// `framing` then [`Framing::Done`].
    fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        framing: &mut Framing,
    ) -> Poll<Option<Result<Bytes, UpstreamError>>> {
        loop {
            let decoded = match framing {
                Framing::Length(remaining) => take_length(&mut self.read, remaining),
                Framing::Chunked(state) => match decode_chunked(&mut self.read, state) {
                    Ok(decoded) => decoded,
                    Err(err) => return Poll::Ready(Some(Err(err))),
                },
                Framing::Close if self.read.is_empty() => Decoded::More,
                Framing::Close => Decoded::Data(self.read.split().freeze()),
                Framing::Upgrade | Framing::Done => return Poll::Ready(None),
            };
            match decoded {
                Decoded::Data(data) => {
                    if *framing == Framing::Length(0) {
                        *framing = Framing::Done;
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                Decoded::End => {
                    *framing = Framing::Done;
                    return Poll::Ready(None);
                }
                Decoded::More => {}
            }
            match ready!(self.poll_fill_body(cx)) {
                Ok(0) if *framing == Framing::Close => {
                    *framing = Framing::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => return Poll::Ready(Some(Err(UpstreamError::BodyCut))),
                Ok(_) => {}
                Err(err) => return Poll::Ready(Some(Err(UpstreamError::Io(err)))),
            }
        }
    }
}

impl Connection {
    /// Reads more of a body, into as much space as the last read showed the socket had.
    fn poll_fill_body(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let space = self.body_read_space;
        reserve(&mut self.read, space);
        let free = self.read.capacity() - self.read.len();
        let read = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.stream),
            cx,
            &mut self.read
        ))?;
        if read == free {
            self.body_read_space = (space * 2).min(MAX_BODY_READ_SPACE);
        } else if read < space / 4 {
            self.body_read_space = (space / 2).max(READ_SPACE);
        }
        Poll::Ready(Ok(read))
    }

    /// Lets go of a read buffer a large body grew, so an idle connection holds no more than a
    /// small response needs.
    pub(crate) fn shrink(&mut self) {
        if self.read.is_empty() && self.read.capacity() > READ_SPACE {
            self.read = BytesMut::new();
        }
    }
}

/// A request write failed: the backend may still have answered (an error, then closed) before
/// reading the rest, so its response wins; otherwise the write error says what happened.
fn answered_anyway(
    head: Result<Head, UpstreamError>,
    written: io::Error,
) -> Result<Head, UpstreamError> {
    match head {
        Ok(mut head) => {
            head.keep_alive = false;
            Ok(head)
        }
        Err(UpstreamError::Unanswered(_)) if closed(&written) => {
            Err(UpstreamError::Unanswered(written))
        }
        Err(_) => Err(UpstreamError::Io(written)),
    }
}

/// Errors that mean the backend closed or reset the connection.
fn closed(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

/// `length`: `None` for no body, `Some(None)` for one of unknown length (sent chunked).
/// `forwarding`: the headers that tell the app about the client, in place of the client's own.
pub(crate) fn encode_head(
    buf: &mut Vec<u8>,
    parts: &request::Parts,
    length: Option<Option<u64>>,
    forwarding: Option<&Forwarding<'_>>,
) {
    buf.clear();
    buf.extend_from_slice(parts.method.as_str().as_bytes());
    buf.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", PathAndQuery::as_str);
    buf.extend_from_slice(target.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        // The router frames the body itself; a bodiless request keeps the client's length.
        if name == header::TRANSFER_ENCODING
            || (length.is_some() && name == header::CONTENT_LENGTH)
            || (forwarding.is_some() && Forwarding::replaces(name))
        {
            continue;
        }
        buf.extend_from_slice(name.as_str().as_bytes());
        buf.extend_from_slice(b": ");
        buf.extend_from_slice(value.as_bytes());
        buf.extend_from_slice(b"\r\n");
    }
    if let Some(forwarding) = forwarding {
        forwarding.write_lines(buf);
    }
    match length {
        None => {}
        Some(Some(length)) => {
            let _ = write!(buf, "content-length: {length}\r\n");
        }
        Some(None) => buf.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    buf.extend_from_slice(b"\r\n");
}

/// Writes the head in `buf`, then the body frame by frame: exactly `length` bytes when it was
/// announced, else chunked. Trailers are dropped.
async fn write_body<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    buf: &mut Vec<u8>,
    mut body: RequestBody,
    length: Option<u64>,
) -> Result<(), UpstreamError> {
    writer.write_all(buf).await.map_err(UpstreamError::Io)?;
    let mut sent = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(UpstreamError::RequestBody)?.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        match length {
            Some(length) if sent > length => return Err(UpstreamError::RequestBodyLength(length)),
            Some(_) => writer.write_all(&data).await.map_err(UpstreamError::Io)?,
            None => {
                buf.clear();
                let _ = write!(buf, "{:x}\r\n", data.len());
                if data.len() <= COALESCE_BYTES {
                    buf.extend_from_slice(&data);
                    buf.extend_from_slice(b"\r\n");
                    writer.write_all(buf).await.map_err(UpstreamError::Io)?;
                } else {
                    writer.write_all(buf).await.map_err(UpstreamError::Io)?;
                    writer.write_all(&data).await.map_err(UpstreamError::Io)?;
                    writer.write_all(b"\r\n").await.map_err(UpstreamError::Io)?;
                }
            }
        }
    }
    match length {
        Some(length) if sent != length => Err(UpstreamError::RequestBodyLength(length)),
        Some(_) => Ok(()),
        None => writer
            .write_all(b"0\r\n\r\n")
            .await
            .map_err(UpstreamError::Io),
    }
}

/// Reads until a final response head is complete; 1xx heads other than 101 are skipped.
async fn read_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Head, UpstreamError> {
    let mut received = false;
    loop {
        if !buf.is_empty() {
            received = true;
            match parse_head(buf, head_request)? {
                Parsed::Final(head) => return Ok(head),
                Parsed::Interim => continue,
                Parsed::Partial => {}
            }
        }
        match std::future::poll_fn(|cx| poll_fill(reader, buf, READ_SPACE, cx)).await {
            Ok(0) if received => return Err(UpstreamError::HeadCut),
            Ok(0) => {
                return Err(UpstreamError::Unanswered(
                    io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            Ok(_) => {}
            Err(err) if !received && closed(&err) => return Err(UpstreamError::Unanswered(err)),
            Err(err) => return Err(UpstreamError::Io(err)),
        }
    }
}

/// Makes `space` bytes free in `buf` when less than a quarter of that is (growing it, or
/// reclaiming what earlier reads handed out).
fn reserve(buf: &mut BytesMut, space: usize) {
    if buf.capacity() - buf.len() < space / 4 {
        buf.reserve(space);
    }
}

/// Reads into `buf`, with at least a quarter of `space` free.
fn poll_fill<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    space: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    reserve(buf, space);
    tokio_util::io::poll_read_buf(Pin::new(reader), cx, buf)
}

enum Parsed {
    Final(Head),
    /// A 1xx head, consumed.
    Interim,
    Partial,
}

/// Where a header's name and value lie in the head.
#[derive(Clone, Copy, Default)]
struct Span {
    name: (u32, u32),
    value: (u32, u32),
}

/// Parses the response head at the start of `buf`; a complete one is split off `buf`, its header
/// values kept as slices of it.
fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Parsed, UpstreamError> {
    let mut slots = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
    let mut spans = [Span::default(); MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut slots,
    );
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(UpstreamError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(UpstreamError::HeadTooLarge),
        Err(err) => return Err(UpstreamError::Malformed(err)),
    };
    if len > MAX_HEAD_BYTES {
        return Err(UpstreamError::HeadTooLarge);
    }
    let code = response.code.unwrap_or_default();
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    if (100..200).contains(&code) && code != 101 {
        buf.advance(len);
        return Ok(Parsed::Interim);
    }
    let status = StatusCode::from_u16(code).map_err(|_| UpstreamError::Status(code))?;
    let start = buf.as_ptr() as usize;
    let offset = |slice: &[u8]| {
        let from = slice.as_ptr() as usize - start;
        // Within a head of at most MAX_HEAD_BYTES, which fits.
        (from as u32, (from + slice.len()) as u32)
    };
    let count = response.headers.len();
    for (span, header) in spans.iter_mut().zip(response.headers.iter()) {
        *span = Span {
            name: offset(header.name.as_bytes()),
            value: offset(header.value),
        };
    }

    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    let mut framing = Framer::default();
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    for span in &spans[..count] {
        let name = &head[span.name.0 as usize..span.name.1 as usize];
        let invalid = || UpstreamError::Header(String::from_utf8_lossy(name).into_owned());
        let name = HeaderName::from_bytes(name).map_err(|_| invalid())?;
        let value = head.slice(span.value.0 as usize..span.value.1 as usize);
        let value = HeaderValue::from_maybe_shared(value).map_err(|_| invalid())?;
        let names_others = framing.see(&name, &value)?;
        if !switching && !names_others && is_hop_by_hop(name.as_str()) {
            continue;
        }
        headers.append(name, value);
    }
    let hop_by_hop_removed = !switching && !framing.names_others;
    let (framing, keep_alive) = framing.decide(status, version, head_request, &mut headers);
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Parsed::Final(Head {
        parts,
        framing,
        keep_alive,
        hop_by_hop_removed,
    }))
}

/// The headers that belong to one connection, as `headers::strip_hop_by_hop` has them: the
/// `Connection` header and those it names are dealt with by the caller.
fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    ) || name.starts_with("proxy-")
}

/// What a response head's headers say about its body and connection.
#[derive(Default)]
struct Framer {
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked_last: bool,
    close: bool,
    keep_alive: bool,
    /// A `Connection` header names headers other than the hop-by-hop ones.
    names_others: bool,
}

impl Framer {
    /// Takes in one header; true for a `Connection` header that names other headers, which
    /// must then stay for `headers::strip_hop_by_hop` to remove them.
    fn see(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<bool, UpstreamError> {
        if name == header::CONTENT_LENGTH {
            for item in value.as_bytes().split(|&b| b == b',') {
                let length = parse_length(item.trim_ascii()).ok_or(UpstreamError::ContentLength)?;
                if self.content_length.is_some_and(|seen| seen != length) {
                    return Err(UpstreamError::ContentLength);
                }
                self.content_length = Some(length);
            }
        } else if name == header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
            self.chunked_last = value
                .as_bytes()
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == header::CONNECTION {
            let mut names_others = false;
            for token in value.as_bytes().split(|&b| b == b',') {
                let token = token.trim_ascii();
                let close = token.eq_ignore_ascii_case(b"close");
                let keep_alive = token.eq_ignore_ascii_case(b"keep-alive");
                self.close |= close;
                self.keep_alive |= keep_alive;
                names_others |= !(close
                    || keep_alive
                    || token.is_empty()
                    || token.eq_ignore_ascii_case(b"upgrade"));
            }
            self.names_others |= names_others;
            return Ok(names_others);
        }
        Ok(false)
    }

    /// RFC 9112 §6.3. A chunked body that also names a length is read as chunked with the
    /// length removed (§6.3 item 3), and its connection is not reused: such a response may be
    /// an attempt at smuggling, and nothing after it is trusted.
    fn decide(
        self,
        status: StatusCode,
        version: Version,
        head_request: bool,
        headers: &mut HeaderMap,
    ) -> (Framing, bool) {
        let mut keep_alive = !self.close && (version == Version::HTTP_11 || self.keep_alive);
        let framing = if status == StatusCode::SWITCHING_PROTOCOLS {
            Framing::Upgrade
        } else if head_request
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Framing::Done
        } else if self.transfer_encoding {
            if self.chunked_last {
                if self.content_length.is_some() {
                    headers.remove(header::CONTENT_LENGTH);
                    keep_alive = false;
                }
                Framing::Chunked(Chunked::Size)
            } else {
                keep_alive = false;
                Framing::Close
            }
        } else {
            match self.content_length {
                Some(0) => Framing::Done,
                Some(length) => Framing::Length(length),
                None => {
                    keep_alive = false;
                    Framing::Close
                }
            }
        };
        (framing, keep_alive)
    }
}

/// A `Content-Length` value: digits only, as RFC 9110 §8.6 has it.
fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// What the read buffer gave of a body.
#[derive(Debug, PartialEq, Eq)]
enum Decoded {
    Data(Bytes),
    /// Nothing buffered: read more.
    More,
    End,
}

/// The buffered part of a body with `remaining` bytes left.
fn take_length(buf: &mut BytesMut, remaining: &mut u64) -> Decoded {
    if buf.is_empty() {
        return Decoded::More;
    }
    let take = usize::try_from(*remaining).map_or(buf.len(), |left| left.min(buf.len()));
    *remaining -= take as u64;
    Decoded::Data(buf.split_to(take).freeze())
}

/// Decodes what `buf` holds of a chunked body. Chunk extensions and trailers are dropped.
fn decode_chunked(buf: &mut BytesMut, state: &mut Chunked) -> Result<Decoded, UpstreamError> {
    loop {
        match state {
            Chunked::Size => match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((used, size))) => {
                    buf.advance(used);
                    *state = if size == 0 {
                        Chunked::Trailers(0)
                    } else {
                        Chunked::Data(size)
                    };
                }
                Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                    return Err(UpstreamError::Chunk);
                }
                Ok(httparse::Status::Partial) => return Ok(Decoded::More),
                Err(_) => return Err(UpstreamError::Chunk),
            },
            Chunked::Data(remaining) => {
                let data = take_length(buf, remaining);
                if *remaining == 0 {
                    *state = Chunked::DataEnd;
                }
                return Ok(data);
            }
            Chunked::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Decoded::More);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(UpstreamError::Chunk);
                }
                buf.advance(2);
                *state = Chunked::Size;
            }
            Chunked::Trailers(seen) => {
                let Some(end) = buf.iter().position(|&b| b == b'\n') else {
                    if *seen + buf.len() > MAX_HEAD_BYTES {
                        return Err(UpstreamError::Chunk);
                    }
                    return Ok(Decoded::More);
                };
                let last = buf[..end].trim_ascii().is_empty();
                *seen += end + 1;
                buf.advance(end + 1);
                if last {
                    return Ok(Decoded::End);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use http::{Method, Request};
    use http_body_util::{Either, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::pool::{Pool, SendError};

    /// A backend that answers each request head on a connection with the next of `replies`
    /// (cycling), each written as the given pieces with a pause between them so that they
    /// arrive in separate reads; with `close_after`, it closes the connection after that many
    /// replies. Counts the connections it accepted.
    async fn scripted(
        replies: &[&[&[u8]]],
        close_after: Option<usize>,
    ) -> (SocketAddr, Arc<AtomicUsize>) {
        let replies: Arc<Vec<Vec<Vec<u8>>>> = Arc::new(
            replies
                .iter()
                .map(|pieces| pieces.iter().map(|piece| piece.to_vec()).collect())
                .collect(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                stream.set_nodelay(true).expect("nodelay");
                let replies = Arc::clone(&replies);
                tokio::spawn(async move {
                    let mut received = Vec::new();
                    let mut buf = [0; 4096];
                    let mut answered = 0;
                    while let Ok(read @ 1..) = stream.read(&mut buf).await {
                        received.extend_from_slice(&buf[..read]);
                        while let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
                            received.drain(..end + 4);
                            for (i, piece) in replies[answered % replies.len()].iter().enumerate() {
                                if i > 0 {
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                                if stream.write_all(piece).await.is_err() {
                                    return;
                                }
                            }
                            answered += 1;
                            if close_after == Some(answered) {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn request(method: Method) -> Request<crate::router::UpstreamBody> {
        Request::builder()
            .method(method)
            .uri("/")
            .header(header::HOST, "demo.example.com")
            .body(Either::Right(Empty::<Bytes>::new()))
            .expect("request")
    }

    async fn fetch(pool: &Pool, method: Method) -> Response<AppBody> {
        send_ok(pool, request(method)).await
    }

    /// Sends `req` and returns its response, the head received.
    async fn send_ok(pool: &Pool, req: Request<crate::router::UpstreamBody>) -> Response<AppBody> {
        match pool.send(req, None).await {
            Ok(sent) => sent.response,
            Err(SendError::Connect(err)) => panic!("connect: {err}"),
            Err(SendError::Request(err) | SendError::Unanswered(err)) => panic!("send: {err}"),
        }
    }

    async fn fetch_err(pool: &Pool) -> UpstreamError {
        match pool.send(request(Method::GET), None).await {
            Ok(_) => panic!("expected an error"),
            Err(SendError::Connect(err)) => panic!("connect: {err}"),
            Err(SendError::Request(err) | SendError::Unanswered(err)) => err,
        }
    }

    async fn read_all(response: Response<AppBody>) -> Result<Bytes, UpstreamError> {
        Ok(response.into_body().collect().await?.to_bytes())
    }

    fn pool(addr: SocketAddr) -> Pool {
        Pool::new(addr, Duration::from_secs(1), 1)
    }

    const OK: &[&[u8]] = &[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"];

    #[tokio::test]
    async fn a_chunked_body_split_across_reads_is_decoded_and_its_connection_reused() {
        const CHUNKED: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel",
            b"lo\r\n6;ext=1\r\n world\r",
            b"\n0\r\nx-trailer: dropped\r\n",
            b"\r\n",
        ];
        let (addr, accepted) = scripted(&[CHUNKED, OK], None).await;
        let pool = pool(addr);
        let response = fetch(&pool, Method::GET).await;
        assert_eq!(response.body().size_hint().exact(), None);
        assert_eq!(read_all(response).await.expect("body"), "hello world");
        let response = fetch(&pool, Method::GET).await;
        assert_eq!(read_all(response).await.expect("body"), "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "reused");
    }

    #[tokio::test]
    async fn a_content_length_body_is_read_exactly_and_its_size_announced() {
        const SPLIT: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-app: demo\r\n\r\nhe",
            b"llo",
        ];
        let (addr, accepted) = scripted(&[SPLIT, OK], None).await;
        let pool = pool(addr);
        let response = fetch(&pool, Method::GET).await;
        assert_eq!(response.headers()["x-app"], "demo");
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "5");
        assert_eq!(response.body().size_hint().exact(), Some(5));
        assert!(!response.body().is_end_stream());
        assert_eq!(read_all(response).await.expect("body"), "hello");
        assert_eq!(
            read_all(fetch(&pool, Method::GET).await)
                .await
                .expect("body"),
            "ok"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "reused");
    }

    #[tokio::test]
    async fn a_body_without_length_runs_to_the_close_and_its_connection_is_not_reused() {
        const UNTIL_CLOSE: &[&[u8]] = &[b"HTTP/1.1 200 OK\r\n\r\nabc", b"def"];
        let (addr, accepted) = scripted(&[UNTIL_CLOSE], Some(1)).await;
        let pool = pool(addr);
        for _ in 0..2 {
            let response = fetch(&pool, Method::GET).await;
            assert_eq!(read_all(response).await.expect("body"), "abcdef");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_large_body_is_read_in_growing_pieces() {
        const SIZE: usize = 1024 * 1024;
        let mut reply = format!("HTTP/1.1 200 OK\r\ncontent-length: {SIZE}\r\n\r\n").into_bytes();
        reply.resize(reply.len() + SIZE, b'b');
        let (addr, _) = scripted(&[&[&reply]], None).await;
        let pool = pool(addr);
        let mut body = fetch(&pool, Method::GET).await.into_body();
        // Let the socket's receive buffer fill, so each read can take all the space it has.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (mut total, mut largest) = (0, 0);
        while let Some(frame) = body.frame().await {
            let data = frame.expect("frame").into_data().expect("data");
            total += data.len();
            largest = largest.max(data.len());
        }
        assert_eq!(total, SIZE);
        assert!(
            largest >= 4 * READ_SPACE,
            "reads grew only to {largest} bytes"
        );
    }

    #[tokio::test]
    async fn head_204_and_304_responses_have_no_body() {
        const EMPTY: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n",
        ];
        // Each reply whole, one per request.
        const REPLIES: &[&[&[u8]]] = &[&[EMPTY[0]], &[EMPTY[1]], &[EMPTY[2]], OK];
        let (addr, accepted) = scripted(REPLIES, None).await;
        let pool = pool(addr);
        for (method, status) in [
            (Method::HEAD, StatusCode::OK),
            (Method::GET, StatusCode::NO_CONTENT),
            (Method::GET, StatusCode::NOT_MODIFIED),
        ] {
            let response = fetch(&pool, method).await;
            assert_eq!(response.status(), status);
            assert!(response.body().is_end_stream(), "{status}");
            assert_eq!(read_all(response).await.expect("body"), "");
        }
        assert_eq!(
            read_all(fetch(&pool, Method::GET).await)
                .await
                .expect("body"),
            "ok",
            "nothing was taken for a body"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "reused");
    }

    #[tokio::test]
    async fn interim_responses_are_skipped() {
        const INTERIM: &[&[u8]] = &[
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        ];
        let (addr, _) = scripted(&[INTERIM], None).await;
        let response = fetch(&pool(addr), Method::GET).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get(header::LINK).is_none());
        assert_eq!(read_all(response).await.expect("body"), "ok");
    }

    #[tokio::test]
    async fn differing_or_invalid_content_lengths_are_refused() {
        const TWO: &[&[u8]] =
            &[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok"];
        const LIST: &[&[u8]] = &[b"HTTP/1.1 200 OK\r\ncontent-length: 2, 3\r\n\r\nok"];
        const SIGNED: &[&[u8]] = &[b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok"];
        for reply in [TWO, LIST, SIGNED] {
            let (addr, _) = scripted(&[reply], None).await;
            let err = fetch_err(&pool(addr)).await;
            assert!(matches!(err, UpstreamError::ContentLength), "{err}");
        }
        const SAME: &[&[u8]] =
            &[b"HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\ncontent-length: 2\r\n\r\nok"];
        let (addr, _) = scripted(&[SAME], None).await;
        let response = fetch(&pool(addr), Method::GET).await;
        assert_eq!(read_all(response).await.expect("body"), "ok");
    }

    #[tokio::test]
    async fn an_oversized_head_is_refused() {
        let long = format!(
            "HTTP/1.1 200 OK\r\nx-long: {}\r\ncontent-length: 0\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}content-length: 0\r\n\r\n",
            "x-many: 1\r\n".repeat(MAX_HEADERS)
        );
        for reply in [long, many] {
            let (addr, _) = scripted(&[&[reply.as_bytes()]], None).await;
            let err = fetch_err(&pool(addr)).await;
            assert!(matches!(err, UpstreamError::HeadTooLarge), "{err}");
        }
    }

    #[tokio::test]
    async fn a_connection_the_response_closes_is_not_reused() {
        const CLOSE: &[&[u8]] =
            &[b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"];
        const OLD: &[&[u8]] = &[b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok"];
        const OLD_KEPT: &[&[u8]] =
            &[b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok"];
        for (reply, connections) in [(CLOSE, 2), (OLD, 2), (OLD_KEPT, 1)] {
            // The backend keeps the connection open: only the response says not to reuse it.
            let (addr, accepted) = scripted(&[reply], None).await;
            let pool = pool(addr);
            for _ in 0..2 {
                let response = fetch(&pool, Method::GET).await;
                assert_eq!(read_all(response).await.expect("body"), "ok");
            }
            assert_eq!(accepted.load(Ordering::SeqCst), connections);
        }
    }

    #[tokio::test]
    async fn chunked_with_a_content_length_is_read_chunked_without_the_length_and_not_reused() {
        const BOTH: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ];
        let (addr, accepted) = scripted(&[BOTH], None).await;
        let pool = pool(addr);
        for _ in 0..2 {
            let response = fetch(&pool, Method::GET).await;
            assert!(response.headers().get(header::CONTENT_LENGTH).is_none());
            assert_eq!(read_all(response).await.expect("body"), "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_transfer_coding_other_than_chunked_runs_to_the_close() {
        const GZIP: &[&[u8]] =
            &[b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n2\r\nok\r\n0\r\n\r\n"];
        let (addr, _) = scripted(&[GZIP], Some(1)).await;
        let response = fetch(&pool(addr), Method::GET).await;
        assert_eq!(
            read_all(response).await.expect("body"),
            "2\r\nok\r\n0\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error() {
        const SHORT: &[&[u8]] = &[b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"];
        let (addr, _) = scripted(&[SHORT], Some(1)).await;
        let response = fetch(&pool(addr), Method::GET).await;
        let err = read_all(response).await.expect_err("cut short");
        assert!(matches!(err, UpstreamError::BodyCut), "{err}");
    }

    #[tokio::test]
    async fn a_new_connection_closed_without_a_response_is_unanswered() {
        let (addr, _) = scripted(&[&[]], Some(1)).await;
        match pool(addr).send(request(Method::GET), None).await {
            Err(SendError::Unanswered(UpstreamError::Unanswered(_))) => {}
            Err(SendError::Request(err)) => panic!("expected unanswered, got {err}"),
            other => panic!("expected unanswered, got {:?}", other.err()),
        }
        const HALF: &[&[u8]] = &[b"HTTP/1.1 200 OK\r\ncontent-"];
        let (addr, _) = scripted(&[HALF], Some(1)).await;
        let err = fetch_err(&pool(addr)).await;
        assert!(matches!(err, UpstreamError::HeadCut), "{err}");
    }

    #[tokio::test]
    async fn a_switched_connection_keeps_the_bytes_after_the_head() {
        const SWITCH: &[&[u8]] = &[
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\nhi",
        ];
        let (addr, _) = scripted(&[SWITCH], None).await;
        let mut response = fetch(&pool(addr), Method::GET).await;
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert!(response.body().is_end_stream());
        let upgraded = response.body_mut().take_upgrade().expect("upgraded");
        assert_eq!(upgraded.read_ahead, "hi");
    }

    #[tokio::test]
    async fn hop_by_hop_headers_are_left_out_unless_connection_names_others() {
        const PLAIN: &[&[u8]] = &[b"HTTP/1.1 200 OK\r\nconnection: keep-alive, upgrade\r\n\
            keep-alive: timeout=5\r\nproxy-authenticate: basic\r\nupgrade: h2c\r\n\
            x-app: demo\r\ncontent-length: 2\r\n\r\nok"];
        let (addr, _) = scripted(&[PLAIN], None).await;
        let response = fetch(&pool(addr), Method::GET).await;
        assert!(response.body().hop_by_hop_removed());
        let names: Vec<&str> = response.headers().keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-app", "content-length"]);

        const NAMING: &[&[u8]] = &[b"HTTP/1.1 200 OK\r\nx-secret: 1\r\n\
            connection: keep-alive, x-secret\r\ncontent-length: 2\r\n\r\nok"];
        let (addr, _) = scripted(&[NAMING], None).await;
        let response = fetch(&pool(addr), Method::GET).await;
        assert!(!response.body().hop_by_hop_removed(), "left to the proxy");
        assert_eq!(
            response.headers()[header::CONNECTION],
            "keep-alive, x-secret"
        );
        assert_eq!(response.headers()["x-secret"], "1");
    }

    /// A client's request body as the router's server hands it over: `body` sent by a hyper
    /// client to a hyper server, whose request body comes back wrapped with `limit`.
    async fn request_body<B>(body: B, limit: u64) -> RequestBody
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let tx = std::sync::Mutex::new(Some(tx));
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                if let Some(tx) = tx.lock().expect("lock").take() {
                    let _ = tx.send(req.into_body());
                }
                std::future::pending::<Result<Response<Empty<Bytes>>, std::convert::Infallible>>()
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(connection);
        tokio::spawn(async move {
            let req = Request::post("/")
                .header(header::HOST, "demo.example.com")
                .body(body)
                .expect("request");
            let _ = sender.send_request(req).await;
        });
        let incoming = rx.await.expect("request received");
        RequestBody::new(incoming, limit, metrics::Counter::noop())
    }

    /// A backend that reads a request until `end` has arrived, answers `ok` and hands over what
    /// it read; with `early`, it answers as soon as the head is in, reads no more, and keeps
    /// the connection open.
    async fn recording(
        end: &'static [u8],
        early: bool,
    ) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut received = Vec::new();
                    let mut buf = [0; 4096];
                    let end = if early { &b"\r\n\r\n"[..] } else { end };
                    while !received.windows(end.len()).any(|w| w == end) {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => received.extend_from_slice(&buf[..read]),
                        }
                    }
                    let _ = stream.write_all(OK[0]).await;
                    let _ = tx.send(received);
                    if early {
                        std::future::pending::<()>().await;
                    }
                });
            }
        });
        (addr, rx)
    }

    fn post(body: RequestBody) -> Request<crate::router::UpstreamBody> {
        Request::post("/upload")
            .header(header::HOST, "demo.example.com")
            .body(Either::Left(body))
            .expect("request")
    }

    #[tokio::test]
    async fn a_body_of_known_length_goes_with_its_length_and_one_of_unknown_length_chunked() {
        let (addr, mut received) = recording(b"hello", false).await;
        let pool = pool(addr);
        let body = request_body(http_body_util::Full::new(Bytes::from_static(b"hello")), 100).await;
        let response = send_ok(&pool, post(body)).await;
        assert_eq!(read_all(response).await.expect("body"), "ok");
        let head = String::from_utf8(received.recv().await.expect("request")).expect("text");
        assert!(head.starts_with("POST /upload HTTP/1.1\r\n"), "{head}");
        assert!(
            head.ends_with("\r\ncontent-length: 5\r\n\r\nhello"),
            "{head}"
        );

        let (addr, mut received) = recording(b"0\r\n\r\n", false).await;
        let pool = self::pool(addr);
        let (mut sender, body) = http_body_util::channel::Channel::<Bytes>::new(2);
        tokio::spawn(async move {
            for part in ["hel", "lo"] {
                sender
                    .send_data(Bytes::from_static(part.as_bytes()))
                    .await
                    .expect("part");
            }
        });
        let body = request_body(body, 100).await;
        let response = send_ok(&pool, post(body)).await;
        assert_eq!(read_all(response).await.expect("body"), "ok");
        let head = String::from_utf8(received.recv().await.expect("request")).expect("text");
        assert!(
            head.contains("\r\ntransfer-encoding: chunked\r\n\r\n"),
            "{head}"
        );
        let (_, body) = head.split_once("\r\n\r\n").expect("body");
        assert!(
            matches!(
                body,
                "3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n" | "5\r\nhello\r\n0\r\n\r\n"
            ),
            "{body:?}"
        );
    }

    #[tokio::test]
    async fn a_response_before_the_whole_body_is_relayed_and_its_connection_not_reused() {
        let (addr, _received) = recording(b"", true).await;
        let pool = pool(addr);
        let (mut sender, body) = http_body_util::channel::Channel::<Bytes>::new(1);
        sender
            .send_data(Bytes::from_static(b"start"))
            .await
            .expect("first part");
        let body = request_body(body, 100).await;
        let response = send_ok(&pool, post(body)).await;
        assert_eq!(read_all(response).await.expect("body"), "ok");
        assert_eq!(pool.idle_count(), 0, "the request was not finished on it");
        drop(sender);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_fails_the_request() {
        let (addr, _received) = recording(b"never", false).await;
        let body = request_body(
            http_body_util::Full::new(Bytes::from_static(b"too long")),
            3,
        )
        .await;
        let err = match pool(addr).send(post(body), None).await {
            Err(SendError::Request(err)) => err,
            Err(SendError::Connect(err)) => panic!("connect: {err}"),
            Err(SendError::Unanswered(err)) => panic!("unanswered: {err}"),
            Ok(_) => panic!("expected an error"),
        };
        assert!(
            matches!(
                err,
                UpstreamError::RequestBody(RequestBodyError::TooLarge { limit: 3 })
            ),
            "{err}"
        );
    }

    #[test]
    fn content_length_digits() {
        assert_eq!(parse_length(b"0"), Some(0));
        assert_eq!(parse_length(b"18446744073709551615"), None, "20 digits");
        assert_eq!(
            parse_length(b"9999999999999999999"),
            Some(9_999_999_999_999_999_999)
        );
        for invalid in [&b""[..], b"-1", b"+1", b"1 2", b"0x10"] {
            assert_eq!(parse_length(invalid), None);
        }
    }

    #[test]
    fn the_request_head_frames_the_body_itself() {
        let (parts, ()) = Request::post("http://ignored/upload?x=1")
            .header(header::HOST, "demo.example.com")
            .header(header::CONTENT_LENGTH, "99")
            .header(header::TRANSFER_ENCODING, "chunked")
            .body(())
            .expect("request")
            .into_parts();
        let mut buf = Vec::new();
        encode_head(&mut buf, &parts, Some(Some(5)), None);
        assert_eq!(
            buf,
            b"POST /upload?x=1 HTTP/1.1\r\nhost: demo.example.com\r\ncontent-length: 5\r\n\r\n"
        );
        encode_head(&mut buf, &parts, Some(None), None);
        assert_eq!(
            buf,
            b"POST /upload?x=1 HTTP/1.1\r\nhost: demo.example.com\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        encode_head(&mut buf, &parts, None, None);
        assert_eq!(
            buf,
            b"POST /upload?x=1 HTTP/1.1\r\nhost: demo.example.com\r\ncontent-length: 99\r\n\r\n"
        );
    }
}
