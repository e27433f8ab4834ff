//! `GET /v1/apps/{app}/logs`: log lines as Server-Sent Events, read as they arrive.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::{self, Stream, StreamExt};
use reqwest::Method;
use slipway_types::api::LogEntry;

use super::sse::{SseEvent, SseParser};
use super::{CONNECT_TIMEOUT, Client, ClientError, DEFAULT_TIMEOUT, refusal};

/// The server sends a keep-alive comment every 15 s while no line comes; silence for this long
/// means the connection is dead.
const FOLLOW_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Which lines `Client::logs` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogsQuery {
    /// How many recent lines (the server's default is 100, its limit 10 000).
    pub lines: Option<usize>,
    /// Keep the stream open and receive new lines as they are written.
    pub tail: bool,
    /// `app`, `router`, `build` or `platform`.
    pub source: Option<String>,
    /// A process type (`web`) or one dyno (`web.1`).
    pub process: Option<String>,
}

impl Client {
    /// The app's recent log lines, oldest first, then (with `tail`) new ones until the server
    /// ends the stream. A followed stream has no overall timeout, only one for silence.
    pub async fn logs(
        &self,
        app: &str,
        query: &LogsQuery,
    ) -> Result<impl Stream<Item = Result<LogEntry, ClientError>> + use<>, ClientError> {
        let mut url = self.url(&["v1", "apps", app, "logs"]);
        {
            let mut pairs = url.query_pairs_mut();
            if let Some(lines) = query.lines {
                pairs.append_pair("lines", &lines.to_string());
            }
            if query.tail {
                pairs.append_pair("tail", "true");
            }
            if let Some(source) = &query.source {
                pairs.append_pair("source", source);
            }
            if let Some(process) = &query.process {
                pairs.append_pair("process", process);
            }
        }
        let path = url.path().to_owned();
        let (http, timeout) = if query.tail {
            let follower = reqwest::Client::builder()
                .user_agent(concat!("slipway-cli/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(FOLLOW_IDLE_TIMEOUT)
                .build()
                .map_err(ClientError::Setup)?;
            (follower, FOLLOW_IDLE_TIMEOUT)
        } else {
            (self.http.clone(), DEFAULT_TIMEOUT)
        };
        let mut request = http.get(url);
        if !query.tail {
            request = request.timeout(DEFAULT_TIMEOUT);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let failed = |source| self.transport_error(&Method::GET, &path, timeout, source);
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        if !status.is_success() {
            let bytes = response.bytes().await.map_err(failed)?;
            return Err(refusal(status, Method::GET, path, &bytes));
        }
        let reading = Reading {
            client: self.clone(),
            path,
            timeout,
            chunks: Box::pin(response.bytes_stream()),
            parser: SseParser::default(),
            events: VecDeque::new(),
            ended: false,
        };
        Ok(stream::unfold(reading, Reading::next))
    }
}

/// A log stream being read: bytes in, `LogEntry`s out.
struct Reading<S> {
    client: Client,
    path: String,
    timeout: Duration,
    chunks: Pin<Box<S>>,
    parser: SseParser,
    events: VecDeque<SseEvent>,
    ended: bool,
}

impl<S, B> Reading<S>
where
    S: Stream<Item = reqwest::Result<B>>,
    B: AsRef<[u8]>,
{
    async fn next(mut self) -> Option<(Result<LogEntry, ClientError>, Self)> {
        loop {
            if let Some(event) = self.events.pop_front() {
                if event.name != "message" {
                    continue;
                }
                let entry =
                    serde_json::from_str(&event.data).map_err(|source| ClientError::Decode {
                        method: Method::GET,
                        path: self.path.clone(),
                        source,
                    });
                return Some((entry, self));
            }
            if self.ended {
                return None;
            }
            match self.chunks.next().await {
                Some(Ok(chunk)) => self.events.extend(self.parser.feed(chunk.as_ref())),
                Some(Err(source)) => {
                    self.ended = true;
                    let error =
                        self.client
                            .transport_error(&Method::GET, &self.path, self.timeout, source);
                    return Some((Err(error), self));
                }
                None => self.ended = true,
            }
        }
    }
}
