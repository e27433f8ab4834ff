//! One-off processes: `POST /v1/apps/{app}/runs` starts one in the background, and
//! `GET /v1/apps/{app}/runs/attach` runs one over a WebSocket (see `api::AttachRun` for the
//! frames).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use slipway_engine::OutputStream;
use slipway_store::App;
use slipway_types::api::{
    AttachRun, CreateRun, RUN_STDERR, RUN_STDOUT, RunControl, RunEvent, RunInfo,
};
use tokio::sync::mpsc;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::runs::{self, FromClient, Launch, RunRequest, Terminal, ToClient};

/// Output frames waiting for a slow client before the process is held back.
const OUTPUT_FRAMES: usize = 64;

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<CreateRun>,
) -> ApiResult<(StatusCode, Json<RunInfo>)> {
    let app = state.app_for(&caller, &name).await?;
    let request = run_request(&state, &app, body.command, None).await?;
    let info = state
        .runs
        .start_detached(&request)
        .await
        .map_err(ApiError::internal)?;
    let detail = format!("{}: {}", info.dyno, runs::command_line(&request.command));
    state
        .audit(&caller, "runs.create", app.name.as_str(), Some(&detail))
        .await;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Everything is checked before the upgrade, so a refusal is an ordinary API error.
pub async fn attach(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    query: Result<Query<AttachRun>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let app = state.app_for(&caller, &name).await?;
    let Query(query) = query.map_err(|rejection| {
        ApiError::bad_request(format!("invalid query: {}", rejection.body_text()))
    })?;
    let command: Vec<String> = serde_json::from_str(&query.command).map_err(|error| {
        ApiError::bad_request(format!(
            "query parameter `command` must be a JSON array of strings: {error}"
        ))
    })?;
    let tty = query.tty.then(|| Terminal {
        term: query.term,
        size: query.rows.zip(query.cols),
    });
    let request = match &query.addon {
        Some(addon) => {
            crate::controllers::addons::psql_request(&state, &app, addon, command, tty).await?
        }
        None => run_request(&state, &app, command, tty).await?,
    };
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::bad_request(format!(
            "attaching to a run needs a WebSocket connection: {}",
            rejection.body_text()
        ))
    })?;
    let detail = runs::command_line(&request.command);
    state
        .audit(&caller, "runs.create", app.name.as_str(), Some(&detail))
        .await;
    Ok(upgrade.on_upgrade(move |socket| session(state, request, socket)))
}

/// The run, with the app's current release.
async fn run_request(
    state: &AppState,
    app: &App,
    command: Vec<String>,
    tty: Option<Terminal>,
) -> ApiResult<RunRequest> {
    runs::check_command(&command).map_err(ApiError::bad_request)?;
    let release = state.store.current_release(app.id).await?.ok_or_else(|| {
        ApiError::conflict(format!("app `{}` has no release yet: push first", app.name))
    })?;
    Ok(RunRequest {
        app: app.name.clone(),
        release: release.version.to_string(),
        image: release.image,
        config: release
            .config
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_owned()))
            .collect(),
        command,
        tty,
        launch: Launch::Release,
    })
}

async fn session(state: AppState, request: RunRequest, socket: WebSocket) {
    let (mut sink, stream) = socket.split();
    let from_client = stream
        .scan((), |(), message| std::future::ready(client_frame(message)))
        .filter_map(std::future::ready);
    let (to_client, mut events) = mpsc::channel(OUTPUT_FRAMES);
    let run = async move { state.runs.attached(&request, from_client, to_client).await };
    let forward = async move {
        while let Some(event) = events.recv().await {
            sink.send(server_frame(event)).await.ok()?;
        }
        Some(sink)
    };
    let (outcome, sink) = tokio::join!(run, forward);
    let Some(mut sink) = sink else { return };
    if let Err(error) = outcome {
        tracing::error!(%error, "an attached run failed");
        let failed = RunEvent::Failed {
            message: "the one-off process failed: see the server log".into(),
        };
        sink.send(event_frame(&failed)).await.ok();
    }
    sink.close().await.ok();
}

/// `None` ends the client's frames (it closed or the connection broke); `Some(None)` is a
/// frame without meaning for the run.
fn client_frame(message: Result<Message, axum::Error>) -> Option<Option<FromClient>> {
    match message {
        Ok(Message::Binary(bytes)) => Some(Some(FromClient::Stdin(bytes.to_vec()))),
        Ok(Message::Text(text)) => match serde_json::from_str(&text) {
            Ok(RunControl::Resize { rows, cols }) => Some(Some(FromClient::Resize { rows, cols })),
            Ok(RunControl::Eof {}) => Some(Some(FromClient::Eof)),
            Err(error) => {
                tracing::debug!(%error, "ignoring an unknown control frame of an attached run");
                Some(None)
            }
        },
        Ok(Message::Ping(_) | Message::Pong(_)) => Some(None),
        Ok(Message::Close(_)) | Err(_) => None,
    }
}

fn server_frame(event: ToClient) -> Message {
    match event {
        ToClient::Output(chunk) => {
            let tag = match chunk.stream {
                OutputStream::Stdout => RUN_STDOUT,
                OutputStream::Stderr => RUN_STDERR,
            };
            let mut frame = Vec::with_capacity(1 + chunk.bytes.len());
            frame.push(tag);
            frame.extend_from_slice(&chunk.bytes);
            Message::Binary(frame.into())
        }
        ToClient::Exited(code) => event_frame(&RunEvent::Exited { code }),
    }
}

fn event_frame(event: &RunEvent) -> Message {
    let json = serde_json::to_string(event).unwrap_or_else(|error| {
        tracing::error!(%error, "encoding a run event failed");
        String::from("{}")
    });
    Message::Text(json.into())
}

#[cfg(test)]
mod tests {
    use slipway_engine::OutputChunk;

    use super::*;

    #[test]
    fn output_frames_carry_their_stream_and_the_exit_is_json() {
        let frame = server_frame(ToClient::Output(OutputChunk {
            stream: OutputStream::Stderr,
            bytes: "err\n".into(),
        }));
        assert_eq!(frame, Message::Binary(b"\x02err\n".to_vec().into()));
        assert_eq!(
            server_frame(ToClient::Exited(3)),
            Message::Text(r#"{"exited":{"code":3}}"#.into())
        );
    }

    #[test]
    fn client_frames_are_stdin_or_control_and_close_ends_them() {
        let binary = Ok(Message::Binary(b"hi".to_vec().into()));
        assert_eq!(
            client_frame(binary),
            Some(Some(FromClient::Stdin(b"hi".to_vec())))
        );
        let resize = Ok(Message::Text(r#"{"resize":{"rows":5,"cols":7}}"#.into()));
        assert_eq!(
            client_frame(resize),
            Some(Some(FromClient::Resize { rows: 5, cols: 7 }))
        );
        let eof = Ok(Message::Text(r#"{"eof":{}}"#.into()));
        assert_eq!(client_frame(eof), Some(Some(FromClient::Eof)));
        let unknown = Ok(Message::Text(r#"{"signal":"INT"}"#.into()));
        assert_eq!(client_frame(unknown), Some(None));
        assert_eq!(client_frame(Ok(Message::Close(None))), None);
    }
}
