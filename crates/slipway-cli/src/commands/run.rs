//! `run`: a one-off process with the app's current release, attached to this terminal (its
//! stdin, stdout and stderr, and its exit status) or in the background.

use std::convert::Infallible;
use std::io::{IsTerminal, Read, Write};

use anyhow::{Context, bail};
use rustix::termios::{self, OptionalActions, Termios};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

use crate::cli::Session;
use crate::client::{Client, RunOutput, RunTerminal, RunWriter};
use crate::exit::Exit;

/// Most bytes one read of stdin passes on.
const STDIN_CHUNK: usize = 16 * 1024;

pub(crate) async fn run(
    session: &mut Session<'_>,
    command: &[String],
    detach: bool,
    no_tty: bool,
) -> anyhow::Result<()> {
    let app = session.app().await?;
    let client = session.client()?;
    if detach {
        let info = client.start_run(&app, command).await?;
        if session.global.json {
            return session.print_json(&info);
        }
        return session.print(&format!(
            "Running `{}` on {app}... up, {}\n",
            command.join(" "),
            info.dyno
        ));
    }
    attached(session, &client, &app, command, None, no_tty).await
}

/// Runs `command` attached to this terminal and exits with its status. With `addon`, it
/// runs in that Postgres add-on's image, connected to it (`pg:psql`).
pub(crate) async fn attached(
    session: &mut Session<'_>,
    client: &Client,
    app: &str,
    command: &[String],
    addon: Option<&str>,
    no_tty: bool,
) -> anyhow::Result<()> {
    let on_terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let code = if on_terminal && !no_tty {
        attach_terminal(session, client, app, command, addon).await?
    } else {
        let stdin = read_stdin();
        let mut stderr = std::io::stderr();
        attach(
            client,
            app,
            command,
            addon,
            None,
            stdin,
            None,
            session.out,
            &mut stderr,
        )
        .await?
    };
    match Exit::from_process(code) {
        None => Ok(()),
        Some(exit) => Err(exit.into()),
    }
}

/// Runs with a TTY: this terminal in raw mode, so every key (^C included) goes to the
/// process, and its size follows this one's. SIGTERM or SIGHUP end the run here, with the
/// terminal restored.
async fn attach_terminal(
    session: &mut Session<'_>,
    client: &Client,
    app: &str,
    command: &[String],
    addon: Option<&str>,
) -> anyhow::Result<i64> {
    let terminal = RunTerminal {
        term: std::env::var("TERM").ok().filter(|term| !term.is_empty()),
        size: window_size(),
    };
    let resizes = signal(SignalKind::window_change()).context("cannot watch the window size")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    let mut hang_up = signal(SignalKind::hangup()).context("cannot watch for SIGHUP")?;
    let raw = RawMode::enter()?;
    let stdin = read_stdin();
    let mut stderr = std::io::stderr();
    let attached = attach(
        client,
        app,
        command,
        addon,
        Some(terminal),
        stdin,
        Some(resizes),
        session.out,
        &mut stderr,
    );
    let code = tokio::select! {
        code = attached => code,
        _ = terminate.recv() => Ok(128 + 15),
        _ = hang_up.recv() => Ok(128 + 1),
    };
    drop(raw);
    code
}

/// Connects the process to `stdin` (chunks; the channel closing is end of file) and to
/// `stdout` and `stderr`, following `resizes` of this terminal; returns its exit code.
#[expect(clippy::too_many_arguments, reason = "each stream is its own argument")]
async fn attach(
    client: &Client,
    app: &str,
    command: &[String],
    addon: Option<&str>,
    terminal: Option<RunTerminal>,
    mut stdin: mpsc::Receiver<Vec<u8>>,
    mut resizes: Option<Signal>,
    stdout: &mut (dyn Write + Send),
    stderr: &mut (dyn Write + Send),
) -> anyhow::Result<i64> {
    let (mut writer, mut reader) = client
        .attach_run(app, command, terminal.as_ref(), addon)
        .await?;
    // A send fails only when the connection broke, which the reader reports; so sending
    // stops there and the reader decides how the run ended.
    let send = async {
        send_input(&mut writer, &mut stdin, &mut resizes).await.ok();
        std::future::pending::<Infallible>().await
    };
    let receive = async {
        while let Some(output) = reader.next().await {
            match output? {
                RunOutput::Stdout(bytes) => write(stdout, &bytes, "standard output")?,
                RunOutput::Stderr(bytes) => write(stderr, &bytes, "standard error")?,
                RunOutput::Exited(code) => return Ok(code),
                RunOutput::Failed(message) => bail!("{message}"),
            }
        }
        bail!("the server closed the connection before the process exited")
    };
    tokio::select! {
        code = receive => code,
        never = send => match never {},
    }
}

async fn send_input(
    writer: &mut RunWriter,
    stdin: &mut mpsc::Receiver<Vec<u8>>,
    resizes: &mut Option<Signal>,
) -> anyhow::Result<()> {
    let mut stdin_open = true;
    loop {
        tokio::select! {
            chunk = stdin.recv(), if stdin_open => match chunk {
                Some(bytes) => writer.stdin(bytes).await?,
                None => {
                    stdin_open = false;
                    writer.eof().await?;
                }
            },
            () = next_resize(resizes) => {
                if let Some((rows, cols)) = window_size() {
                    writer.resize(rows, cols).await?;
                }
            }
        }
    }
}

/// The next SIGWINCH; never without a terminal.
async fn next_resize(resizes: &mut Option<Signal>) {
    match resizes {
        Some(signal) => {
            if signal.recv().await.is_none() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

fn write(out: &mut (dyn Write + Send), bytes: &[u8], what: &str) -> anyhow::Result<()> {
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write to {what}"))
}

/// Stdin read on a thread of its own, so a read that never returns (a terminal nobody types
/// in) does not keep the program from exiting; the channel closes at end of file.
fn read_stdin() -> mpsc::Receiver<Vec<u8>> {
    let (chunks, receiver) = mpsc::channel(4);
    let reader = move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = vec![0; STDIN_CHUNK];
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) => return,
                Ok(n) => {
                    if chunks.blocking_send(buffer[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    };
    // Without a thread there is no stdin to pass on, which reads as an empty one.
    std::thread::Builder::new()
        .name("stdin".to_owned())
        .spawn(reader)
        .ok();
    receiver
}

/// Rows and columns of this terminal.
fn window_size() -> Option<(u16, u16)> {
    let size = termios::tcgetwinsize(std::io::stdout()).ok()?;
    (size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
}

/// This terminal in raw mode while a run is attached to it. Dropping it restores the
/// settings, so every way out of the run (an error, a panic, a signal) gives the terminal
/// back as it was.
struct RawMode {
    original: Termios,
}

impl RawMode {
    fn enter() -> anyhow::Result<Self> {
        let stdin = std::io::stdin();
        let original = termios::tcgetattr(&stdin).context("cannot read the terminal's settings")?;
        let mut raw = original.clone();
        raw.make_raw();
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw)
            .context("cannot switch the terminal to raw mode")?;
        Ok(Self { original })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.original).ok();
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
    use axum::extract::{Path, Query};
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::{Json, Router};
    use slipway_types::api::{AttachRun, ErrorBody, ErrorDetail, RunControl, RunEvent};

    use super::*;

    const TOKEN: &str = "run-token";

    /// A server whose runs print to both streams, echo their stdin until end of file, and
    /// exit with the number of words in their command; app `empty` has no release.
    async fn server() -> String {
        let router = Router::new().route("/v1/apps/{app}/runs/attach", get(attach_handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        url
    }

    async fn attach_handler(
        Path(app): Path<String>,
        Query(query): Query<AttachRun>,
        headers: HeaderMap,
        upgrade: WebSocketUpgrade,
    ) -> Response {
        let bearer = format!("Bearer {TOKEN}");
        assert_eq!(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
            Some(bearer.as_str())
        );
        if app == "empty" {
            let body = ErrorBody {
                error: ErrorDetail {
                    code: "conflict".into(),
                    message: "app `empty` has no release yet: push first".into(),
                },
            };
            return (StatusCode::CONFLICT, Json(body)).into_response();
        }
        let command: Vec<String> = serde_json::from_str(&query.command).expect("command");
        upgrade.on_upgrade(move |socket| echo(socket, command.len()))
    }

    async fn echo(mut socket: WebSocket, words: usize) {
        socket
            .send(Message::Binary(b"\x01out\n".to_vec().into()))
            .await
            .ok();
        socket
            .send(Message::Binary(b"\x02err\n".to_vec().into()))
            .await
            .ok();
        while let Some(Ok(message)) = socket.recv().await {
            match message {
                Message::Binary(bytes) => {
                    let mut frame = vec![1];
                    frame.extend_from_slice(&bytes);
                    socket.send(Message::Binary(frame.into())).await.ok();
                }
                Message::Text(text)
                    if serde_json::from_str::<RunControl>(&text).ok()
                        == Some(RunControl::Eof {}) =>
                {
                    break;
                }
                _ => {}
            }
        }
        let exited = RunEvent::Exited {
            code: i64::try_from(words).expect("few words"),
        };
        let json = serde_json::to_string(&exited).expect("json");
        socket.send(Message::Text(json.into())).await.ok();
        socket.send(Message::Close(None)).await.ok();
    }

    fn words(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| (*word).to_owned()).collect()
    }

    #[tokio::test]
    async fn output_reaches_stdout_and_stderr_stdin_reaches_the_process_and_its_code_returns() {
        let client = Client::new(&server().await, Some(TOKEN.into())).expect("client");
        let (chunks, stdin) = mpsc::channel(4);
        chunks.send(b"hello\n".to_vec()).await.expect("queues");
        drop(chunks);
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());

        let code = attach(
            &client,
            "hello",
            &words(&["sh", "-c", "cat"]),
            None,
            None,
            stdin,
            None,
            &mut stdout,
            &mut stderr,
        )
        .await
        .expect("runs");

        assert_eq!(code, 3);
        assert_eq!(String::from_utf8_lossy(&stdout), "out\nhello\n");
        assert_eq!(String::from_utf8_lossy(&stderr), "err\n");
    }

    #[tokio::test]
    async fn a_refused_run_says_why() {
        let client = Client::new(&server().await, Some(TOKEN.into())).expect("client");
        let (_chunks, stdin) = mpsc::channel(1);
        let error = attach(
            &client,
            "empty",
            &words(&["true"]),
            None,
            None,
            stdin,
            None,
            &mut Vec::new(),
            &mut Vec::new(),
        )
        .await
        .expect_err("refused");
        assert_eq!(
            error.to_string(),
            "app `empty` has no release yet: push first"
        );
    }
}
