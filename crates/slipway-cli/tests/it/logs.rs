//! `Client::logs` and `slipway logs` against a small Server-Sent Events endpoint.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::{Stream, StreamExt, stream};
use slipway_cli::{Client, ClientCommand, ClientError, Env, GlobalOpts, LogsQuery, run_in};
use slipway_types::api::{ErrorBody, ErrorDetail, LogEntry, LogSource};
use time::OffsetDateTime;
use tokio::sync::mpsc;

const PATIENCE: Duration = Duration::from_secs(10);

/// Serves two recent lines, then, with `tail=true`, whatever the test sends until it drops the
/// sender. Remembers the query strings it was asked.
struct LogServer {
    url: String,
    queries: Arc<Mutex<Vec<String>>>,
    live: mpsc::UnboundedSender<LogEntry>,
}

#[derive(Clone)]
struct Shared {
    queries: Arc<Mutex<Vec<String>>>,
    live: Arc<Mutex<Option<mpsc::UnboundedReceiver<LogEntry>>>>,
}

fn entry(source: LogSource, process: &str, text: &str) -> LogEntry {
    LogEntry {
        at: OffsetDateTime::from_unix_timestamp(1_795_309_323).expect("time"),
        source,
        process: process.to_owned(),
        text: text.to_owned(),
    }
}

fn recent() -> Vec<LogEntry> {
    vec![
        entry(LogSource::Build, "build", "-----> Released 1.0.0"),
        entry(LogSource::Router, "router", "at=info method=GET path=\"/\""),
    ]
}

impl LogServer {
    async fn start() -> LogServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (live, receiver) = mpsc::unbounded_channel();
        let shared = Shared {
            queries: Arc::default(),
            live: Arc::new(Mutex::new(Some(receiver))),
        };
        let queries = Arc::clone(&shared.queries);
        let router = Router::new()
            .route("/v1/apps/{app}/logs", get(logs))
            .with_state(shared);
        tokio::spawn(async move { axum::serve(listener, router).await });
        LogServer { url, queries, live }
    }

    fn client(&self) -> Client {
        Client::new(&self.url, Some("token".to_owned())).expect("client")
    }
}

async fn logs(
    State(shared): State<Shared>,
    Path(app): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Response> {
    if app != "demo" {
        let body = ErrorBody {
            error: ErrorDetail {
                code: "not_found".to_owned(),
                message: format!("app `{app}` not found"),
            },
        };
        return Err((StatusCode::NOT_FOUND, Json(body)).into_response());
    }
    let query = query.unwrap_or_default();
    shared.queries.lock().expect("lock").push(query.clone());
    let live = if query.contains("tail=true") {
        shared.live.lock().expect("lock").take()
    } else {
        None
    };
    let live = stream::iter(live)
        .flat_map(|mut receiver| stream::poll_fn(move |cx| receiver.poll_recv(cx)));
    let events = stream::iter(recent())
        .chain(live)
        .map(|line| Ok(Event::default().json_data(line).expect("json")));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_millis(50))))
}

async fn next(
    lines: &mut (impl Stream<Item = Result<LogEntry, ClientError>> + Unpin),
) -> Option<LogEntry> {
    tokio::time::timeout(PATIENCE, lines.next())
        .await
        .expect("a log line or the end in time")
        .map(|line| line.expect("a valid line"))
}

#[tokio::test]
async fn recent_lines_arrive_in_order_with_the_query_sent() {
    let server = LogServer::start().await;
    let query = LogsQuery {
        lines: Some(5),
        tail: false,
        source: Some("router".to_owned()),
        process: Some("web.1".to_owned()),
    };
    let lines = server.client().logs("demo", &query).await.expect("logs");
    let lines: Vec<LogEntry> = lines.map(|line| line.expect("line")).collect().await;
    assert_eq!(lines, recent());
    assert_eq!(
        server.queries.lock().expect("lock").as_slice(),
        ["lines=5&source=router&process=web.1"]
    );
}

#[tokio::test]
async fn following_gets_live_lines_past_keep_alives_until_the_server_ends() {
    let server = LogServer::start().await;
    let query = LogsQuery {
        tail: true,
        ..LogsQuery::default()
    };
    let lines = server.client().logs("demo", &query).await.expect("logs");
    let mut lines = std::pin::pin!(lines);
    assert_eq!(next(&mut lines).await, Some(recent()[0].clone()));
    assert_eq!(next(&mut lines).await, Some(recent()[1].clone()));
    // Keep-alive comments come every 50 ms meanwhile; they are not lines.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let live = entry(LogSource::App, "web.1", "Serving HTTP on 0.0.0.0 port 5000");
    server.live.send(live.clone()).expect("server running");
    assert_eq!(next(&mut lines).await, Some(live));
    drop(server.live);
    assert_eq!(next(&mut lines).await, None);
}

#[tokio::test]
async fn an_unknown_app_is_the_servers_error() {
    let server = LogServer::start().await;
    let err = match server.client().logs("nope", &LogsQuery::default()).await {
        Ok(_) => panic!("logs of a missing app succeeded"),
        Err(err) => err,
    };
    assert!(
        matches!(&err, ClientError::Api { status, .. } if *status == StatusCode::NOT_FOUND),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "app `nope` not found");
}

async fn command(server: &LogServer, json: bool) -> String {
    let home = tempfile::tempdir().expect("temp home");
    let env = Env {
        home: home.path().to_owned(),
        xdg_config_home: None,
        cwd: home.path().to_owned(),
    };
    let global = GlobalOpts {
        url: Some(server.url.clone()),
        token: Some("token".to_owned().into()),
        app: Some("demo".to_owned()),
        json,
    };
    let logs = ClientCommand::Logs {
        tail: false,
        num: 200,
        source: None,
        process: None,
    };
    let mut out = Vec::new();
    run_in(&env, global, logs, &mut out).await.expect("logs");
    String::from_utf8(out).expect("utf-8 output")
}

#[tokio::test]
async fn the_command_prints_heroku_style_lines_or_json_lines() {
    let server = LogServer::start().await;
    assert_eq!(
        command(&server, false).await,
        "2026-11-22T01:02:03.000000+00:00 slipway[build]: -----> Released 1.0.0\n\
         2026-11-22T01:02:03.000000+00:00 slipway[router]: at=info method=GET path=\"/\"\n"
    );
    let json = command(&server, true).await;
    let parsed: Vec<LogEntry> = json
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(parsed, recent());
    assert_eq!(server.queries.lock().expect("lock")[0], "lines=200");
}
