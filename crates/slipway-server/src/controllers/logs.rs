//! `GET /v1/apps/{app}/logs?lines=N&tail=true&source=app&process=web`: the app's last lines,
//! then with `tail=true` its live ones until the client goes away, as Server-Sent Events whose
//! data is a JSON `LogEntry`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use slipway_types::ProcessType;
use time::OffsetDateTime;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::logs::{LogFilter, LogHub, LogLine, LogSource};

const DEFAULT_LINES: usize = 100;
const MAX_LINES: usize = 10_000;
/// Comments sent while no line comes, so proxies and clients can tell an idle follow from a
/// dead connection.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The query as sent: every field is checked by hand so a bad one is a JSON 400 naming it.
#[derive(Debug, Default, Deserialize)]
pub struct LogsQuery {
    lines: Option<String>,
    tail: Option<String>,
    source: Option<String>,
    process: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
struct LogsRequest {
    lines: usize,
    tail: bool,
    filter: LogFilter,
}

impl LogsQuery {
    fn validate(self) -> ApiResult<LogsRequest> {
        let lines = match self.lines.as_deref() {
            None => DEFAULT_LINES,
            Some(text) => text
                .parse()
                .ok()
                .filter(|lines| *lines <= MAX_LINES)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "lines `{text}` must be a number from 0 to {MAX_LINES}"
                    ))
                })?,
        };
        let tail = match self.tail.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "tail `{other}` must be true or false"
                )));
            }
        };
        let source = self
            .source
            .map(|source| {
                LogSource::parse(&source).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "source `{source}` must be one of app, router, build, platform"
                    ))
                })
            })
            .transpose()?;
        if let Some(process) = &self.process
            && !is_process_or_dyno(process)
        {
            return Err(ApiError::bad_request(format!(
                "process `{process}` must be a process type like `web` or a dyno like `web.1`"
            )));
        }
        Ok(LogsRequest {
            lines,
            tail,
            filter: LogFilter {
                source,
                process: self.process,
            },
        })
    }
}

/// `web`, `web.1`, or one of the platform's own process names (`router`, `build`, `release`).
fn is_process_or_dyno(text: &str) -> bool {
    let (process, number) = match text.split_once('.') {
        Some((process, number)) => (process, Some(number)),
        None => (text, None),
    };
    process.parse::<ProcessType>().is_ok()
        && number
            .is_none_or(|n| !n.is_empty() && n.len() <= 6 && n.bytes().all(|b| b.is_ascii_digit()))
}

pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let app = state.app_for(&caller, &name).await?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(format!("invalid query: {}", rejection.body_text()))
    })?;
    let request = query.validate()?;
    let (recent, live) = if request.tail {
        let (recent, receiver) =
            state
                .logs
                .recent_and_subscribe(&app.name, request.lines, &request.filter);
        let live = follow(state.logs.clone(), receiver, request.filter);
        (recent, Some(live))
    } else {
        (
            state.logs.recent(&app.name, request.lines, &request.filter),
            None,
        )
    };
    let lines = stream::iter(recent).chain(stream::iter(live).flatten());
    let events = lines.map(|line| Ok(event(&line)));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// Live lines that match, until the app is forgotten or the server shuts down. A follower too
/// slow to keep up is told how many lines it missed, as Heroku's L10 error does.
fn follow(
    hub: Arc<LogHub>,
    receiver: broadcast::Receiver<LogLine>,
    filter: LogFilter,
) -> impl Stream<Item = LogLine> {
    stream::unfold(
        (hub, receiver, filter),
        |(hub, mut receiver, filter)| async move {
            loop {
                let received = tokio::select! {
                    () = hub.closed() => return None,
                    received = receiver.recv() => received,
                };
                let line = match received {
                    Ok(line) if filter.matches(&line) => line,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => LogLine {
                        at: OffsetDateTime::now_utc(),
                        source: LogSource::Platform,
                        process: "logs".to_owned(),
                        text: format!(
                            "Error L10 (output buffer overflow): {missed} lines were dropped because this client fell behind"
                        ),
                    },
                    Err(RecvError::Closed) => return None,
                };
                return Some((line, (hub, receiver, filter)));
            }
        },
    )
}

fn event(line: &LogLine) -> Event {
    Event::default().json_data(line).unwrap_or_else(|error| {
        tracing::error!(%error, "encoding a log line failed");
        Event::default().comment("a log line could not be encoded")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> LogsQuery {
        let mut query = LogsQuery::default();
        for (key, value) in pairs {
            let value = Some((*value).to_owned());
            match *key {
                "lines" => query.lines = value,
                "tail" => query.tail = value,
                "source" => query.source = value,
                "process" => query.process = value,
                _ => panic!("unknown key {key}"),
            }
        }
        query
    }

    /// The 400 answer's message.
    async fn refusal(pairs: &[(&str, &str)]) -> String {
        let response = axum::response::IntoResponse::into_response(
            query(pairs).validate().expect_err("refused"),
        );
        assert_eq!(response.status(), axum::http::StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("error body");
        let body: slipway_types::api::ErrorBody =
            serde_json::from_slice(&body).expect("an API error body");
        body.error.message
    }

    #[test]
    fn defaults_are_the_last_hundred_lines_without_following() {
        assert_eq!(
            query(&[]).validate().unwrap(),
            LogsRequest {
                lines: 100,
                tail: false,
                filter: LogFilter::default(),
            }
        );
        let request = query(&[
            ("lines", "10000"),
            ("tail", "true"),
            ("source", "router"),
            ("process", "web.12"),
        ])
        .validate()
        .unwrap();
        assert_eq!(request.lines, 10_000);
        assert!(request.tail);
        assert_eq!(request.filter.source, Some(LogSource::Router));
        assert_eq!(request.filter.process.as_deref(), Some("web.12"));
    }

    #[tokio::test]
    async fn bad_values_are_refused_naming_them() {
        for (key, value) in [
            ("lines", "10001"),
            ("lines", "-1"),
            ("lines", "many"),
            ("tail", "yes"),
            ("source", "heroku"),
            ("process", "Web"),
            ("process", "web."),
            ("process", "web.1.2"),
            ("process", "web.x"),
        ] {
            let message = refusal(&[(key, value)]).await;
            assert!(
                message.starts_with(&format!("{key} `{value}` must be")),
                "{message}"
            );
        }
    }
}
