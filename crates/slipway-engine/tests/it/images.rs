use std::collections::BTreeMap;
use std::path::Path;

use slipway_engine::{ContainerEngine, DockerEngine, EngineError, ImageConfig};
use slipway_types::ContainerSpec;

use crate::support::{self, Scratch};

#[tokio::test]
async fn ping_answers() {
    let scratch = Scratch::new("ping").await;
    scratch.engine.ping().await.expect("the daemon answers");
}

#[tokio::test]
async fn a_missing_socket_is_unreachable() {
    let error = DockerEngine::connect_to("unix:///nonexistent/slipway-docker.sock")
        .await
        .expect_err("no daemon there");
    let EngineError::Unreachable(message) = error else {
        panic!("expected Unreachable, got {error:?}");
    };
    assert!(message.contains("start it"), "{message}");
}

#[tokio::test]
async fn a_refused_connection_is_unreachable() {
    // Nothing listens on port 1 of the loopback interface.
    let error = DockerEngine::connect_to("tcp://127.0.0.1:1")
        .await
        .expect_err("no daemon there");
    assert!(matches!(error, EngineError::Unreachable(_)), "{error:?}");
}

#[tokio::test]
async fn import_applies_the_image_config() {
    let scratch = Scratch::new("import").await;
    // Quotes, a backslash and a dollar sign must arrive literally, not expanded.
    let tricky = r#"a "b" $HOME \c"#;
    let config = ImageConfig {
        user: Some("1000".to_owned()),
        working_dir: Some("/work".to_owned()),
        env: BTreeMap::from([("X".to_owned(), tricky.to_owned())]),
        entrypoint: vec!["sh".to_owned(), "-c".to_owned()],
        cmd: vec![r#"id -u; pwd; echo "$X""#.to_owned()],
        labels: BTreeMap::from([("slipway.test".to_owned(), "import".to_owned())]),
    };
    let image = scratch.busybox_image(&config).await;
    let repository = image.rsplit_once(':').expect("tagged reference").0;

    assert!(scratch.engine.image_exists(&image).await.expect("inspects"));
    assert_eq!(
        scratch.engine.list_images(repository).await.expect("lists"),
        [image.as_str()]
    );

    let spec = ContainerSpec {
        name: scratch.name("run"),
        image: image.clone(),
        ..ContainerSpec::default()
    };
    let id = scratch.run(&spec).await;
    let (stdout, stderr) = support::output(&scratch.engine, &id).await;
    assert_eq!(
        stdout,
        format!("1000\n/work\n{tricky}\n"),
        "stderr: {stderr}"
    );
    assert_eq!(support::wait(&scratch.engine, &id).await, 0);
    let state = scratch.engine.inspect(&id).await.expect("inspects");
    assert_eq!(
        state.labels.get("slipway.test").map(String::as_str),
        Some("import")
    );

    scratch.engine.remove_container(&id).await.expect("removes");
    scratch
        .engine
        .remove_image(&image)
        .await
        .expect("removes the image");
    assert!(!scratch.engine.image_exists(&image).await.expect("inspects"));
    scratch
        .engine
        .remove_image(&image)
        .await
        .expect("removing a missing image is fine");
    assert!(
        scratch
            .engine
            .list_images(repository)
            .await
            .expect("lists")
            .is_empty()
    );
}

#[tokio::test]
async fn a_tagged_image_keeps_its_config_and_outlives_the_original_name() {
    let scratch = Scratch::new("tag").await;
    let config = ImageConfig {
        cmd: vec!["echo".to_owned(), "tagged".to_owned()],
        ..ImageConfig::default()
    };
    let image = scratch.busybox_image(&config).await;
    let second = format!("{}/other:2.0.0", scratch.name("repo"));
    scratch.track_image(&second);
    scratch
        .engine
        .tag_image(&image, &second)
        .await
        .expect("tags the image");
    let details = scratch
        .engine
        .inspect_image(&second)
        .await
        .expect("inspects")
        .expect("the new name exists");
    assert_eq!(details.config.cmd, config.cmd);

    scratch.engine.remove_image(&image).await.expect("removes");
    assert!(
        scratch
            .engine
            .image_exists(&second)
            .await
            .expect("inspects")
    );
    let error = scratch
        .engine
        .tag_image(&image, &format!("{second}-again"))
        .await
        .expect_err("the original name is gone");
    assert!(error.to_string().contains(&image), "{error}");
}

#[tokio::test]
async fn importing_a_missing_tarball_names_it() {
    let scratch = Scratch::new("import-missing").await;
    let reference = format!("{}/none:1", scratch.name("img"));
    scratch.track_image(&reference);
    let error = scratch
        .engine
        .import_image(
            &reference,
            Path::new("/nonexistent/rootfs.tar"),
            &ImageConfig::default(),
        )
        .await
        .expect_err("no tarball");
    assert!(matches!(&error, EngineError::Io { path, .. } if path == "/nonexistent/rootfs.tar"));
}

#[tokio::test]
async fn creating_from_a_missing_image_is_not_found() {
    let scratch = Scratch::new("no-image").await;
    let image = format!("{}/absent:1", scratch.name("img"));
    let spec = ContainerSpec {
        name: scratch.name("c"),
        image: image.clone(),
        ..ContainerSpec::default()
    };
    scratch.track_container(&spec.name);
    let error = scratch
        .engine
        .create_container(&spec)
        .await
        .expect_err("no such image");
    assert!(
        matches!(&error, EngineError::NotFound { kind: "image", name } if *name == image),
        "{error:?}"
    );
}

#[tokio::test]
async fn commit_keeps_the_filesystem_and_applies_the_config() {
    let scratch = Scratch::new("commit").await;
    let base = scratch.busybox_image(&ImageConfig::default()).await;
    let builder = ContainerSpec {
        entrypoint: vec!["sh".to_owned(), "-c".to_owned()],
        env: BTreeMap::from([("Y".to_owned(), "from the build".to_owned())]),
        ..support::command(scratch.name("build"), &base, &["echo committed > /marker"])
    };
    let build = scratch.run(&builder).await;
    assert_eq!(support::wait(&scratch.engine, &build).await, 0);

    let committed = format!("{}/app:1.0.1", scratch.name("img"));
    scratch.track_image(&committed);
    let config = ImageConfig {
        user: Some("1000".to_owned()),
        working_dir: Some("/tmp".to_owned()),
        env: BTreeMap::from([("Y".to_owned(), "from the commit".to_owned())]),
        entrypoint: Vec::new(),
        cmd: vec!["cat".to_owned(), "/marker".to_owned()],
        labels: BTreeMap::from([("slipway.release".to_owned(), "1.0.1".to_owned())]),
    };
    scratch
        .engine
        .commit(&build, &committed, &config)
        .await
        .expect("commits");

    // Had the build container's `sh -c` entrypoint leaked into the image, `cat` would be
    // the script and `/marker` its `$0`, printing nothing.
    let spec = ContainerSpec {
        name: scratch.name("default"),
        image: committed.clone(),
        ..ContainerSpec::default()
    };
    let id = scratch.run(&spec).await;
    let (stdout, stderr) = support::output(&scratch.engine, &id).await;
    assert_eq!(stdout, "committed\n", "stderr: {stderr}");
    assert_eq!(support::wait(&scratch.engine, &id).await, 0);

    let spec = ContainerSpec {
        entrypoint: vec!["sh".to_owned(), "-c".to_owned()],
        ..support::command(
            scratch.name("check"),
            &committed,
            &[r#"echo "$Y"; pwd; id -u"#],
        )
    };
    let id = scratch.run(&spec).await;
    let (stdout, stderr) = support::output(&scratch.engine, &id).await;
    assert_eq!(stdout, "from the commit\n/tmp\n1000\n", "stderr: {stderr}");
    let state = scratch.engine.inspect(&id).await.expect("inspects");
    assert_eq!(
        state.labels.get("slipway.release").map(String::as_str),
        Some("1.0.1")
    );
}

/// A tar build context of `files`.
fn context(files: &[(&str, &str)]) -> bytes::Bytes {
    let mut archive = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o644);
        header.set_size(content.len() as u64);
        archive
            .append_data(&mut header, path, content.as_bytes())
            .expect("a context entry");
    }
    bytes::Bytes::from(archive.into_inner().expect("a context archive"))
}

#[tokio::test]
async fn build_image_runs_the_dockerfile_against_a_local_base_and_streams_its_output() {
    use futures_util::StreamExt;
    let scratch = Scratch::new("build").await;
    let base = scratch.busybox_image(&ImageConfig::default()).await;
    let reference = format!("{}/built:1", scratch.name("img"));
    scratch.track_image(&reference);
    let dockerfile = format!(
        "FROM {base}\nARG GREETING\nCOPY hello.txt /srv/hello.txt\nRUN echo built-by-$GREETING\nWORKDIR /srv\nEXPOSE 8080\nENV A=b\nCMD [\"cat\", \"hello.txt\"]\n"
    );
    let build = slipway_engine::ImageBuild {
        reference: reference.clone(),
        context: context(&[("Dockerfile", &dockerfile), ("hello.txt", "hi\n")]),
        dockerfile: "Dockerfile".to_owned(),
        build_args: BTreeMap::from([("GREETING".to_owned(), "arg".to_owned())]),
        labels: BTreeMap::from([("slipway.test".to_owned(), "build".to_owned())]),
        memory_bytes: Some(256 * 1024 * 1024),
        nano_cpus: Some(1_000_000_000),
    };
    let mut output = String::new();
    let mut stream = scratch.engine.build_image(build);
    while let Some(item) = stream.next().await {
        output.push_str(&item.unwrap_or_else(|error| panic!("{error}\n{output}")));
    }
    assert!(output.contains(": RUN echo built-by-$GREETING"), "{output}");
    assert!(output.contains("built-by-arg"), "{output}");

    let details = scratch
        .engine
        .inspect_image(&reference)
        .await
        .expect("inspects")
        .expect("the built image exists");
    assert_eq!(details.exposed_ports, ["8080/tcp"]);
    assert_eq!(details.config.working_dir.as_deref(), Some("/srv"));
    assert_eq!(details.config.cmd, ["cat", "hello.txt"]);
    assert_eq!(details.config.env["A"], "b");
    assert_eq!(details.config.labels["slipway.test"], "build");
    assert!(
        scratch
            .engine
            .inspect_image("slipway-it-no-such/image:1")
            .await
            .expect("inspects")
            .is_none()
    );

    let failing = slipway_engine::ImageBuild {
        reference: format!("{}/broken:1", scratch.name("img")),
        context: context(&[("Dockerfile", &format!("FROM {base}\nRUN exit 3\n"))]),
        dockerfile: "Dockerfile".to_owned(),
        ..Default::default()
    };
    scratch.track_image(&failing.reference);
    let items: Vec<_> = scratch.engine.build_image(failing).collect().await;
    let error = items
        .into_iter()
        .find_map(Result::err)
        .expect("a failing RUN fails the build");
    assert!(
        error.to_string().contains("returned a non-zero code: 3"),
        "{error}"
    );
}
