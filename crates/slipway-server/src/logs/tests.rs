use std::time::Duration;

use slipway_engine::{Call, FakeEngine, OutputChunk, OutputStream};
use slipway_types::ContainerSpec;

use super::*;

const PATIENCE: Duration = Duration::from_secs(10);

fn app(name: &str) -> AppName {
    name.parse().expect("app name")
}

fn hub(dir: &std::path::Path, keep: usize) -> Arc<LogHub> {
    LogHub::open(dir.join("logs"), keep).expect("opening the log hub")
}

fn texts(lines: &[LogLine]) -> Vec<&str> {
    lines.iter().map(|line| line.text.as_str()).collect()
}

fn line(source: LogSource, process: &str, text: &str) -> LogLine {
    line_now(source, process, text.to_owned())
}

fn file_lines(dir: &std::path::Path, app: &AppName) -> usize {
    std::fs::read_to_string(files::path(&dir.join("logs"), app))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

#[tokio::test]
async fn keeps_the_last_lines_in_memory_and_trims_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let logs = hub(dir.path(), 100);
    let demo = app("demo");
    for n in 0..450 {
        logs.build_line(&demo, format!("line {n}"));
    }
    let recent = logs.recent(&demo, 1000, &LogFilter::default());
    assert_eq!(recent.len(), 100);
    assert_eq!(recent[0].text, "line 350");
    assert_eq!(recent[99].text, "line 449");
    assert_eq!(
        texts(&logs.recent(&demo, 2, &LogFilter::default())),
        ["line 448", "line 449"]
    );

    logs.flush().await;
    let on_disk = file_lines(dir.path(), &demo);
    assert!((100..=200).contains(&on_disk), "{on_disk} lines on disk");
}

#[tokio::test]
async fn lines_survive_reopening_and_a_torn_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let demo = app("demo");
    {
        let logs = hub(dir.path(), 100);
        logs.build_line(&demo, "-----> Released 1.0.0");
        logs.router_line(&demo, "at=info method=GET path=\"/\"");
        logs.flush().await;
    }
    // A crash in the middle of a write.
    let path = files::path(&dir.path().join("logs"), &demo);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"at\":\"2026-");
    std::fs::write(&path, text).unwrap();

    let logs = hub(dir.path(), 100);
    let recent = logs.recent(&demo, 10, &LogFilter::default());
    assert_eq!(
        texts(&recent),
        ["-----> Released 1.0.0", "at=info method=GET path=\"/\""]
    );
    assert_eq!(recent[1].source, LogSource::Router);
    assert_eq!(recent[1].process, "router");

    logs.platform(&demo, "web.1", "State changed from starting to up");
    logs.flush().await;
    drop(logs);
    let logs = hub(dir.path(), 100);
    assert_eq!(
        texts(&logs.recent(&demo, 10, &LogFilter::default())),
        [
            "-----> Released 1.0.0",
            "at=info method=GET path=\"/\"",
            "State changed from starting to up"
        ]
    );
}

#[tokio::test]
async fn filters_by_source_and_by_process_type_or_dyno() {
    let dir = tempfile::tempdir().unwrap();
    let logs = hub(dir.path(), 100);
    let demo = app("demo");
    for (source, process, text) in [
        (LogSource::App, "web.1", "a"),
        (LogSource::App, "web.2", "b"),
        (LogSource::App, "webhook.1", "c"),
        (LogSource::App, "worker.1", "d"),
        (LogSource::Platform, "web.1", "e"),
        (LogSource::Router, "router", "f"),
    ] {
        logs.push(&demo, line(source, process, text));
    }
    let only = |source: Option<LogSource>, process: Option<&str>| {
        let filter = LogFilter {
            source,
            process: process.map(str::to_owned),
        };
        texts(&logs.recent(&demo, 100, &filter))
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(only(None, Some("web")), ["a", "b", "e"]);
    assert_eq!(only(None, Some("web.1")), ["a", "e"]);
    assert_eq!(only(Some(LogSource::App), Some("web")), ["a", "b"]);
    assert_eq!(only(Some(LogSource::Router), None), ["f"]);
    assert_eq!(only(Some(LogSource::Build), None), Vec::<String>::new());
    // `lines` counts matching lines, not all lines.
    let filter = LogFilter {
        source: Some(LogSource::App),
        process: None,
    };
    assert_eq!(texts(&logs.recent(&demo, 2, &filter)), ["c", "d"]);
    assert!(logs.recent(&app("other"), 100, &filter).is_empty());
}

#[tokio::test]
async fn subscribers_get_live_lines_and_a_slow_one_skips_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let logs = hub(dir.path(), 100);
    let demo = app("demo");
    logs.build_line(&demo, "before");
    let (recent, mut live) = logs.recent_and_subscribe(&demo, 10, &LogFilter::default());
    assert_eq!(texts(&recent), ["before"]);
    logs.build_line(&demo, "after");
    logs.build_line(&app("other"), "elsewhere");
    assert_eq!(live.recv().await.unwrap().text, "after");

    for n in 0..LIVE_BUFFER + 10 {
        logs.build_line(&demo, format!("burst {n}"));
    }
    assert!(matches!(
        live.recv().await,
        Err(broadcast::error::RecvError::Lagged(_))
    ));
    assert_eq!(live.recv().await.unwrap().text, "burst 10");
}

#[tokio::test]
async fn forget_deletes_the_log_and_ends_followers() {
    let dir = tempfile::tempdir().unwrap();
    let logs = hub(dir.path(), 100);
    let demo = app("demo");
    logs.build_line(&demo, "old app");
    logs.flush().await;
    assert_eq!(file_lines(dir.path(), &demo), 1);
    let (_, mut live) = logs.recent_and_subscribe(&demo, 0, &LogFilter::default());
    // A container still being followed does not keep the feed open.
    let engine = Arc::new(FakeEngine::new());
    let id = start(&engine, "demo-web-1").await;
    logs.follow_container(engine.clone(), demo.clone(), "web.1".to_owned(), id, None);

    logs.forget(&demo);
    let closed = tokio::time::timeout(PATIENCE, live.recv()).await;
    assert!(
        matches!(closed, Ok(Err(broadcast::error::RecvError::Closed))),
        "{closed:?}"
    );
    assert!(logs.recent(&demo, 10, &LogFilter::default()).is_empty());
    logs.build_line(&demo, "new app");
    logs.flush().await;
    assert_eq!(file_lines(dir.path(), &demo), 1);
    drop(logs);
    let logs = hub(dir.path(), 100);
    assert_eq!(
        texts(&logs.recent(&demo, 10, &LogFilter::default())),
        ["new app"]
    );
}

fn chunk(stream: OutputStream, text: &'static str) -> OutputChunk {
    OutputChunk {
        stream,
        bytes: text.as_bytes().into(),
    }
}

async fn start(engine: &FakeEngine, name: &str) -> String {
    engine.add_image("slipway/demo:1.0.0");
    let spec = ContainerSpec {
        name: name.to_owned(),
        image: "slipway/demo:1.0.0".to_owned(),
        ..ContainerSpec::default()
    };
    slipway_engine::run(engine, &spec).await.expect("starting")
}

async fn next_line(live: &mut broadcast::Receiver<LogLine>) -> LogLine {
    tokio::time::timeout(PATIENCE, live.recv())
        .await
        .expect("a log line in time")
        .expect("the feed is open")
}

#[tokio::test]
async fn follows_container_output_as_app_lines() {
    let dir = tempfile::tempdir().unwrap();
    let logs = hub(dir.path(), 100);
    let demo = app("demo");
    let engine = Arc::new(FakeEngine::new());
    engine.script_output(
        "demo-web-1",
        vec![
            chunk(OutputStream::Stdout, "Serving on "),
            chunk(OutputStream::Stderr, "warn"),
            chunk(OutputStream::Stdout, "port 5000\r\nGET / 200\n"),
            chunk(OutputStream::Stderr, "ing: debug on\nno newline"),
            chunk(OutputStream::Stdout, "bye"),
        ],
        0,
    );
    let (_, mut live) = logs.recent_and_subscribe(&demo, 0, &LogFilter::default());
    let id = start(&engine, "demo-web-1").await;
    logs.follow_container(engine.clone(), demo.clone(), "web.1".to_owned(), id, None);

    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(next_line(&mut live).await);
    }
    let mut done = texts(&seen);
    // What is left when the output ends comes out in no particular stream order.
    done[3..].sort_unstable();
    assert_eq!(
        done,
        [
            "Serving on port 5000",
            "GET / 200",
            "warning: debug on",
            "bye",
            "no newline"
        ]
    );
    assert!(
        seen.iter()
            .all(|line| line.source == LogSource::App && line.process == "web.1")
    );
    assert!(
        seen[0]
            .render()
            .contains(" app[web.1]: Serving on port 5000")
    );
}

#[tokio::test]
async fn following_a_followed_container_again_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let logs = hub(dir.path(), 100);
    let demo = app("demo");
    let engine = Arc::new(FakeEngine::new());
    let id = start(&engine, "demo-web-1").await;
    let outputs = |engine: &FakeEngine| {
        engine
            .calls()
            .into_iter()
            .filter(|call| matches!(call, Call::Output { .. }))
            .count()
    };
    let follow = || {
        logs.follow_container(
            engine.clone(),
            demo.clone(),
            "web.1".to_owned(),
            id.clone(),
            Some(0),
        );
    };
    follow();
    follow();
    wait_until(|| outputs(&engine) == 1).await;
    assert_eq!(outputs(&engine), 1);

    // Once its output has ended, the container can be followed again (a restart).
    engine
        .stop(&id, Duration::ZERO)
        .await
        .expect("stopping the container");
    wait_until(|| lock(&logs.following).is_empty()).await;
    follow();
    wait_until(|| outputs(&engine) == 2).await;
}

#[tokio::test]
async fn a_destroyed_apps_containers_do_not_write_to_a_new_apps_log() {
    let dir = tempfile::tempdir().unwrap();
    let logs = hub(dir.path(), 100);
    let demo = app("demo");
    let engine = Arc::new(FakeEngine::new());
    engine.script_output(
        "demo-web-1",
        vec![chunk(OutputStream::Stdout, "from the old app\n")],
        0,
    );
    let id = start(&engine, "demo-web-1").await;
    logs.follow_container(engine.clone(), demo.clone(), "web.1".to_owned(), id, None);
    // The follower has not run yet on this single-threaded runtime.
    logs.forget(&demo);
    logs.build_line(&demo, "from the new app");
    wait_until(|| lock(&logs.following).is_empty()).await;
    assert_eq!(
        texts(&logs.recent(&demo, 10, &LogFilter::default())),
        ["from the new app"]
    );
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not met within 10 s");
}
