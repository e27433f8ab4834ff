//! One-off processes: `POST /v1/apps/{app}/runs` starts one in the background, and the
//! WebSocket of `GET /v1/apps/{app}/runs/attach` runs one attached (frames in
//! `slipway_types::api::AttachRun`).

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderValue, USER_AGENT};
use slipway_types::api::{CreateRun, RUN_STDERR, RUN_STDOUT, RunControl, RunEvent, RunInfo};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{CONNECT_TIMEOUT, Client, ClientError, DEFAULT_TIMEOUT, refusal};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The terminal an attached run gets, when the client has one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunTerminal {
    /// The client's `TERM`.
    pub term: Option<String>,
    /// Rows and columns.
    pub size: Option<(u16, u16)>,
}

/// What an attached run sends, in order: output, then how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutput {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The process ended with this exit code.
    Exited(i64),
    /// The server could not run the process; the message is for the user.
    Failed(String),
}

/// The sending half of an attached run: the process's stdin and terminal.
pub struct RunWriter {
    sink: SplitSink<Socket, Message>,
    path: String,
    url: String,
}

/// The receiving half of an attached run.
pub struct RunReader {
    stream: SplitStream<Socket>,
    path: String,
    url: String,
}

impl Client {
    /// Starts `command` in the background with the app's current release; the server removes
    /// the process once it exits.
    pub async fn start_run(&self, app: &str, command: &[String]) -> Result<RunInfo, ClientError> {
        let body = CreateRun {
            command: command.to_vec(),
        };
        self.call_with(
            Method::POST,
            &["v1", "apps", app, "runs"],
            &body,
            DEFAULT_TIMEOUT,
        )
        .await
    }

    /// Starts `command` with the app's current release, attached: what the writer sends is its
    /// stdin, what the reader receives its output. With a terminal, the process gets a TTY.
    /// With `addon`, it runs in that Postgres add-on's image, connected to it (`pg:psql`).
    pub async fn attach_run(
        &self,
        app: &str,
        command: &[String],
        terminal: Option<&RunTerminal>,
        addon: Option<&str>,
    ) -> Result<(RunWriter, RunReader), ClientError> {
        let mut url = self.url(&["v1", "apps", app, "runs", "attach"]);
        let path = url.path().to_owned();
        let command = serde_json::to_string(command).map_err(|error| ClientError::Protocol {
            path: path.clone(),
            reason: format!("cannot encode the command: {error}"),
        })?;
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("command", &command);
            if let Some(addon) = addon {
                pairs.append_pair("addon", addon);
            }
            if let Some(terminal) = terminal {
                pairs.append_pair("tty", "true");
                if let Some(term) = &terminal.term {
                    pairs.append_pair("term", term);
                }
                if let Some((rows, cols)) = terminal.size {
                    pairs.append_pair("rows", &rows.to_string());
                    pairs.append_pair("cols", &cols.to_string());
                }
            }
        }
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .map_err(|()| ClientError::InvalidUrl {
                url: self.display_url.clone(),
                reason: "it cannot carry a WebSocket".to_owned(),
            })?;
        let failed = |source: tungstenite::Error| ClientError::WebSocket {
            url: self.display_url.clone(),
            path: path.clone(),
            reason: source.to_string(),
        };
        let mut request = url.as_str().into_client_request().map_err(failed)?;
        let headers = request.headers_mut();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("slipway-cli/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(token) = &self.token {
            let bearer =
                HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
                    ClientError::Protocol {
                        path: path.clone(),
                        reason: "the token cannot be sent in a header".to_owned(),
                    }
                })?;
            headers.insert(AUTHORIZATION, bearer);
        }
        // tungstenite's TLS takes the process's crypto provider; installing it fails only
        // when one is installed already, which is as good.
        rustls::crypto::aws_lc_rs::default_provider()
            .install_default()
            .ok();
        let connect = tokio_tungstenite::connect_async_with_config(request, None, true);
        let (socket, _) = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(connected)) => connected,
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status();
                let body = response.body().as_deref().unwrap_or_default();
                return Err(refusal(status, Method::GET, path, body));
            }
            Ok(Err(error)) => return Err(failed(error)),
            Err(_) => {
                return Err(ClientError::Timeout {
                    url: self.display_url.clone(),
                    method: Method::GET,
                    path,
                    seconds: CONNECT_TIMEOUT.as_secs(),
                });
            }
        };
        let (sink, stream) = socket.split();
        let url = self.display_url.clone();
        Ok((
            RunWriter {
                sink,
                path: path.clone(),
                url: url.clone(),
            },
            RunReader { stream, path, url },
        ))
    }
}

impl RunWriter {
    pub async fn stdin(&mut self, bytes: Vec<u8>) -> Result<(), ClientError> {
        self.send(Message::Binary(bytes.into())).await
    }

    /// The client's stdin ended.
    pub async fn eof(&mut self) -> Result<(), ClientError> {
        self.control(&RunControl::Eof {}).await
    }

    /// The client's terminal changed size.
    pub async fn resize(&mut self, rows: u16, cols: u16) -> Result<(), ClientError> {
        self.control(&RunControl::Resize { rows, cols }).await
    }

    async fn control(&mut self, control: &RunControl) -> Result<(), ClientError> {
        let json = serde_json::to_string(control).map_err(|error| ClientError::Protocol {
            path: self.path.clone(),
            reason: format!("cannot encode {control:?}: {error}"),
        })?;
        self.send(Message::Text(json.into())).await
    }

    async fn send(&mut self, message: Message) -> Result<(), ClientError> {
        self.sink
            .send(message)
            .await
            .map_err(|source| ClientError::WebSocket {
                url: self.url.clone(),
                path: self.path.clone(),
                reason: source.to_string(),
            })
    }
}

impl RunReader {
    /// The next piece of output or the end of the run; `None` once the server has closed
    /// the connection.
    pub async fn next(&mut self) -> Option<Result<RunOutput, ClientError>> {
        loop {
            let message = match self.stream.next().await? {
                Ok(message) => message,
                Err(source) => {
                    return Some(Err(ClientError::WebSocket {
                        url: self.url.clone(),
                        path: self.path.clone(),
                        reason: source.to_string(),
                    }));
                }
            };
            match message {
                Message::Binary(frame) => return Some(self.output(&frame)),
                Message::Text(text) => return Some(self.event(&text)),
                Message::Close(_) => return None,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }

    fn output(&self, frame: &[u8]) -> Result<RunOutput, ClientError> {
        match frame.split_first() {
            Some((&RUN_STDOUT, bytes)) => Ok(RunOutput::Stdout(bytes.to_vec())),
            Some((&RUN_STDERR, bytes)) => Ok(RunOutput::Stderr(bytes.to_vec())),
            Some((tag, _)) => Err(self.unexpected(format!("output frame with stream tag {tag}"))),
            None => Err(self.unexpected("empty output frame".to_owned())),
        }
    }

    fn event(&self, text: &str) -> Result<RunOutput, ClientError> {
        match serde_json::from_str(text) {
            Ok(RunEvent::Exited { code }) => Ok(RunOutput::Exited(code)),
            Ok(RunEvent::Failed { message }) => Ok(RunOutput::Failed(message)),
            Err(error) => Err(self.unexpected(format!("text frame `{text}`: {error}"))),
        }
    }

    fn unexpected(&self, reason: String) -> ClientError {
        ClientError::Protocol {
            path: self.path.clone(),
            reason,
        }
    }
}
