use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use slipway_engine::{ContainerEngine, EngineError, ImageConfig};
use slipway_types::ContainerSpec;

use crate::support::{self, Scratch};

#[tokio::test]
async fn env_limits_output_streams_and_a_failing_exit_code() {
    let scratch = Scratch::new("env").await;
    let image = scratch.busybox_image(&ImageConfig::default()).await;
    let memory = 64 * 1024 * 1024;
    let spec = ContainerSpec {
        env: BTreeMap::from([("GREETING".to_owned(), "hello there".to_owned())]),
        labels: BTreeMap::from([("slipway.app".to_owned(), "env".to_owned())]),
        memory_bytes: Some(memory),
        nano_cpus: Some(500_000_000),
        working_dir: Some("/tmp".to_owned()),
        user: Some("1234".to_owned()),
        ..support::shell(
            scratch.name("c"),
            &image,
            // cgroup v1 and v2 keep the memory limit in different files.
            "echo \"$GREETING\"; echo oops >&2; pwd; id -u; \
             cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null \
             || cat /sys/fs/cgroup/memory.max; exit 3",
        )
    };
    let id = scratch.run(&spec).await;

    let (stdout, stderr) = support::output(&scratch.engine, &id).await;
    assert_eq!(stdout, format!("hello there\n/tmp\n1234\n{memory}\n"));
    assert_eq!(stderr, "oops\n");
    assert_eq!(support::wait(&scratch.engine, &id).await, 3);

    let state = scratch.engine.inspect(&id).await.expect("inspects");
    assert_eq!(state.id, id);
    assert_eq!(state.name, spec.name);
    assert_eq!(state.image, image);
    assert_eq!(
        state.labels.get("slipway.app").map(String::as_str),
        Some("env")
    );
    assert!(!state.running);
    assert_eq!(state.exit_code, Some(3));
    assert!(state.started_at.is_some());
}

#[tokio::test]
async fn labels_select_listed_containers() {
    let scratch = Scratch::new("labels").await;
    let image = scratch.busybox_image(&ImageConfig::default()).await;
    let app = scratch.name("app");
    let other = scratch.name("other");
    for (name, app, process) in [
        ("web", &app, "web"),
        ("worker", &app, "worker"),
        ("stranger", &other, "web"),
    ] {
        let spec = ContainerSpec {
            labels: BTreeMap::from([
                ("slipway.app".to_owned(), app.clone()),
                ("slipway.process".to_owned(), process.to_owned()),
            ]),
            ..support::shell(scratch.name(name), &image, "true")
        };
        scratch.create(&spec).await;
    }

    let mut names: Vec<String> = scratch
        .engine
        .list_containers(&[("slipway.app", &app)])
        .await
        .expect("lists")
        .into_iter()
        .map(|state| state.name)
        .collect();
    names.sort();
    assert_eq!(names, [scratch.name("web"), scratch.name("worker")]);

    let webs = scratch
        .engine
        .list_containers(&[("slipway.app", &app), ("slipway.process", "web")])
        .await
        .expect("lists");
    assert_eq!(webs.len(), 1);
    let web = &webs[0];
    assert_eq!(web.name, scratch.name("web"));
    assert_eq!(
        web.labels.get("slipway.process").map(String::as_str),
        Some("web")
    );
    // Created, never started.
    assert!(!web.running);
    assert_eq!(web.exit_code, None);
    assert_eq!(web.started_at, None);
}

#[tokio::test]
async fn uploads_are_read_back_by_download_and_by_the_container() {
    let scratch = Scratch::new("upload").await;
    let image = scratch.busybox_image(&ImageConfig::default()).await;
    let spec = support::shell(
        scratch.name("c"),
        &image,
        "cat /data/hello.txt; stat -c %u /data/hello.txt",
    );
    let id = scratch.create(&spec).await;
    let archive = support::tar_of(&[("data/hello.txt", "hello from the host\n")], 1000);
    scratch
        .engine
        .upload(&id, "/", archive)
        .await
        .expect("uploads");

    let downloaded = scratch
        .engine
        .download(&id, "/data/hello.txt")
        .await
        .expect("downloads");
    assert_eq!(
        support::untar(&downloaded),
        BTreeMap::from([(
            PathBuf::from("hello.txt"),
            "hello from the host\n".to_owned()
        )])
    );
    let missing = scratch.engine.download(&id, "/data/missing.txt").await;
    assert!(
        matches!(&missing, Err(EngineError::NotFound { kind: "path", .. })),
        "{missing:?}"
    );

    scratch.engine.start(&id).await.expect("starts");
    let (stdout, stderr) = support::output(&scratch.engine, &id).await;
    assert_eq!(stdout, "hello from the host\n1000\n", "stderr: {stderr}");
}

#[tokio::test]
async fn stop_is_graceful_because_init_forwards_sigterm() {
    let scratch = Scratch::new("stop").await;
    let image = scratch.busybox_image(&ImageConfig::default()).await;
    let spec = support::command(scratch.name("sleeper"), &image, &["sleep", "1000"]);
    let id = scratch.run(&spec).await;
    assert!(scratch.engine.inspect(&id).await.expect("inspects").running);

    let grace = Duration::from_secs(60);
    let began = Instant::now();
    scratch.engine.stop(&id, grace).await.expect("stops");
    // Without an init to forward it, `sleep` as PID 1 ignores SIGTERM and is killed only
    // when the grace period runs out (exit code 137 instead of 143).
    assert!(
        began.elapsed() < grace / 2,
        "stop took {:?}",
        began.elapsed()
    );
    let state = scratch.engine.inspect(&id).await.expect("inspects");
    assert!(!state.running);
    assert_eq!(state.exit_code, Some(128 + 15));

    scratch
        .engine
        .stop(&id, grace)
        .await
        .expect("stopping a stopped container is fine");
    scratch.engine.remove_container(&id).await.expect("removes");
    scratch
        .engine
        .remove_container(&id)
        .await
        .expect("removing a removed container is fine");
    let gone = scratch.engine.inspect(&id).await;
    assert!(
        matches!(
            &gone,
            Err(EngineError::NotFound {
                kind: "container",
                ..
            })
        ),
        "{gone:?}"
    );
}

#[tokio::test]
async fn removing_a_running_container_stops_it() {
    let scratch = Scratch::new("remove-running").await;
    let image = scratch.busybox_image(&ImageConfig::default()).await;
    let spec = support::command(scratch.name("sleeper"), &image, &["sleep", "1000"]);
    let id = scratch.run(&spec).await;
    scratch.engine.remove_container(&id).await.expect("removes");
    assert!(
        scratch
            .engine
            .list_containers(&[])
            .await
            .expect("lists")
            .iter()
            .all(|state| state.id != id)
    );
}
