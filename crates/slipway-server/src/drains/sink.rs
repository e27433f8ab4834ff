//! Where a drain's lines go: a syslog receiver over TCP or TLS, or an HTTPS endpoint. A sink
//! sends one batch at a time and says whether the receiver took it; the delivery loop retries.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use slipway_types::AppName;
use slipway_types::drains::{DrainKind, DrainUrl};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use uuid::Uuid;

use super::frame::{self, Layout};
use crate::logs::LogLine;

/// Connecting, sending a batch or getting an answer takes at most this long; a receiver that
/// hangs counts as down.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a batch was not delivered, in words fit for `drains` (never the URL's secrets).
pub(super) type SendError = String;

pub(super) enum Sink {
    Syslog(SyslogSink),
    Https(HttpsSink),
}

impl Sink {
    pub(super) fn new(
        app: AppName,
        token: String,
        url: DrainUrl,
        tls: &Arc<rustls::ClientConfig>,
        http: &reqwest::Client,
    ) -> Sink {
        match url.kind() {
            DrainKind::Https => Sink::Https(HttpsSink {
                app,
                token,
                url,
                client: http.clone(),
            }),
            DrainKind::SyslogTls | DrainKind::Syslog => Sink::Syslog(SyslogSink {
                app,
                tls: (url.kind() == DrainKind::SyslogTls).then(|| tls.clone()),
                url,
                conn: None,
            }),
        }
    }

    /// Sends `lines` as one batch; the same batch is sent again after a failure.
    pub(super) async fn send(&mut self, lines: &[LogLine], batch: Uuid) -> Result<(), SendError> {
        match self {
            Sink::Syslog(sink) => sink.send(lines).await,
            Sink::Https(sink) => sink.send(lines, batch).await,
        }
    }
}

/// A syslog connection: TCP, or TLS over it.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(tcp) => tcp,
            Conn::Tls(tls) => tls.get_ref().0,
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(tcp) => {
                tcp.write_all(bytes).await?;
                tcp.flush().await
            }
            Conn::Tls(tls) => {
                tls.write_all(bytes).await?;
                tls.flush().await
            }
        }
    }

    /// Whether the receiver may still be reading. Syslog receivers never write, so anything
    /// to read (end of stream, a TLS alert, data) means the connection is over, and a batch
    /// written to it would be lost. Asks the socket itself, not the runtime's readiness
    /// cache, which may not have seen the receiver hang up yet.
    fn still_open(&self) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            rustix::net::recv(
                self.tcp(),
                &mut byte,
                rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
            ),
            Err(rustix::io::Errno::AGAIN)
        )
    }
}

pub(super) struct SyslogSink {
    app: AppName,
    url: DrainUrl,
    /// `Some` for `syslog+tls://`.
    tls: Option<Arc<rustls::ClientConfig>>,
    conn: Option<Conn>,
}

impl SyslogSink {
    async fn send(&mut self, lines: &[LogLine]) -> Result<(), SendError> {
        let frames = frame::frames(&self.app, lines, Layout::Rfc5424);
        let mut conn = match self.conn.take().filter(Conn::still_open) {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        match tokio::time::timeout(IO_TIMEOUT, conn.write_all(&frames)).await {
            Ok(Ok(())) => {
                self.conn = Some(conn);
                Ok(())
            }
            Ok(Err(error)) => Err(format!("writing to {}: {error}", self.url)),
            Err(_) => Err(format!(
                "writing to {} took over {}s",
                self.url,
                IO_TIMEOUT.as_secs()
            )),
        }
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let connect = async {
            let tcp = TcpStream::connect((self.url.host(), self.url.port()))
                .await
                .map_err(|error| format!("connecting to {}: {error}", self.url))?;
            // Lines go out as they come; waiting to fill packets only delays them.
            let _ = tcp.set_nodelay(true);
            let Some(tls) = &self.tls else {
                return Ok(Conn::Plain(tcp));
            };
            let name = ServerName::try_from(self.url.host().to_owned())
                .map_err(|error| format!("{}: {error}", self.url))?;
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|error| format!("TLS with {}: {error}", self.url))?;
            Ok(Conn::Tls(Box::new(stream)))
        };
        tokio::time::timeout(IO_TIMEOUT, connect)
            .await
            .map_err(|_| {
                format!(
                    "connecting to {} took over {}s",
                    self.url,
                    IO_TIMEOUT.as_secs()
                )
            })?
    }
}

pub(super) struct HttpsSink {
    app: AppName,
    token: String,
    url: DrainUrl,
    client: reqwest::Client,
}

impl HttpsSink {
    async fn send(&mut self, lines: &[LogLine], batch: Uuid) -> Result<(), SendError> {
        let body = frame::frames(&self.app, lines, Layout::Logplex);
        let mut request = self
            .client
            .post(self.url.endpoint())
            .timeout(IO_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/logplex-1")
            .header("Logplex-Msg-Count", lines.len())
            // The same id on a retry, so a receiver can drop a batch it already has.
            .header("Logplex-Frame-Id", batch.to_string())
            .header("Logplex-Drain-Token", &self.token)
            .body(body);
        if let Some((user, password)) = self.url.credentials() {
            request = request.basic_auth(user, password);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("{} answered {}", self.url, response.status())),
            // Without the URL: reqwest's message would show the query.
            Err(error) => Err(format!(
                "posting to {}: {}",
                self.url,
                describe(&error.without_url())
            )),
        }
    }
}

/// An error with its causes, which say what actually failed (refused, certificate…).
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}
