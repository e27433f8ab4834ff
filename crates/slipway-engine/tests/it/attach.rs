use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use slipway_engine::{Attached, ContainerEngine, ImageConfig, OutputChunk, OutputStream};
use slipway_types::ContainerSpec;
use tokio::io::AsyncWriteExt;

use crate::support::{self, Scratch};

/// How long a test waits for attached output.
const DEADLINE: Duration = Duration::from_secs(60);

/// The next chunk of output, failing the test if none comes in time.
async fn next_chunk(attached: &mut Attached) -> Option<OutputChunk> {
    tokio::time::timeout(DEADLINE, attached.output.next())
        .await
        .expect("output within the deadline")
        .map(|chunk| chunk.expect("output chunk"))
}

/// Stdout and stderr until the attached output ends.
async fn rest(attached: &mut Attached) -> (String, String) {
    let (mut stdout, mut stderr) = (BytesMut::new(), BytesMut::new());
    while let Some(chunk) = next_chunk(attached).await {
        match chunk.stream {
            OutputStream::Stdout => stdout.extend_from_slice(&chunk.bytes),
            OutputStream::Stderr => stderr.extend_from_slice(&chunk.bytes),
        }
    }
    (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn interactive(spec: ContainerSpec, tty: bool) -> ContainerSpec {
    ContainerSpec {
        tty,
        stdin_open: true,
        ..spec
    }
}

#[tokio::test]
async fn cat_echoes_what_is_written_and_exits_when_input_closes() {
    let scratch = Scratch::new("attach-cat").await;
    let image = scratch.busybox_image(&ImageConfig::default()).await;
    let spec = interactive(
        support::command(scratch.name("cat"), &image, &["cat"]),
        false,
    );
    let id = scratch.create(&spec).await;
    let mut attached = scratch.engine.attach(&id).await.expect("attaches");
    scratch.engine.start(&id).await.expect("starts");

    attached
        .input
        .write_all(b"hello\n")
        .await
        .expect("writes stdin");
    attached.input.flush().await.expect("flushes stdin");
    let chunk = next_chunk(&mut attached).await.expect("cat echoes");
    assert_eq!(chunk.stream, OutputStream::Stdout);
    assert_eq!(chunk.bytes, "hello\n");

    attached.input.shutdown().await.expect("closes stdin");
    assert_eq!(rest(&mut attached).await, (String::new(), String::new()));
    assert_eq!(support::wait(&scratch.engine, &id).await, 0);
}

#[tokio::test]
async fn output_keeps_stdout_and_stderr_apart_and_wait_has_the_exit_code() {
    let scratch = Scratch::new("attach-exit").await;
    let image = scratch.busybox_image(&ImageConfig::default()).await;
    let spec = interactive(
        support::shell(
            scratch.name("exit"),
            &image,
            "echo out; echo err >&2; exit 7",
        ),
        false,
    );
    let id = scratch.create(&spec).await;
    let mut attached = scratch.engine.attach(&id).await.expect("attaches");
    scratch.engine.start(&id).await.expect("starts");

    assert_eq!(
        rest(&mut attached).await,
        ("out\n".to_owned(), "err\n".to_owned())
    );
    assert_eq!(support::wait(&scratch.engine, &id).await, 7);
}

#[tokio::test]
async fn a_tty_echoes_input_takes_its_size_and_merges_output() {
    let scratch = Scratch::new("attach-tty").await;
    let image = scratch.busybox_image(&ImageConfig::default()).await;
    let spec = interactive(
        support::shell(
            scratch.name("tty"),
            &image,
            "read line; echo \"got $line\" >&2; stty size; tty -s && echo on-a-tty",
        ),
        true,
    );
    let id = scratch.create(&spec).await;
    let mut attached = scratch.engine.attach(&id).await.expect("attaches");
    scratch.engine.start(&id).await.expect("starts");
    scratch
        .engine
        .resize_tty(&id, 30, 100)
        .await
        .expect("resizes the terminal");

    attached
        .input
        .write_all(b"hi\n")
        .await
        .expect("writes stdin");
    attached.input.flush().await.expect("flushes stdin");
    let (stdout, stderr) = rest(&mut attached).await;
    // The terminal echoes the input and ends lines with CR LF; stderr is the same stream.
    assert_eq!(stdout, "hi\r\ngot hi\r\n30 100\r\non-a-tty\r\n");
    assert_eq!(stderr, "");
    assert_eq!(support::wait(&scratch.engine, &id).await, 0);
}
