//! What `Repos::http_backend` serves besides pushes: nothing.

use axum::body::Body;
use http::{Method, Request, StatusCode};

use crate::support::{TestServer, WorkRepo, stderr};

pub async fn clone_fetch_and_ls_remote_are_refused() {
    let server = TestServer::start().await;
    let app = server.create_app("private").await;
    let work = WorkRepo::init(&server).await;
    let url = server.url(&app);
    work.commit(&[("a.txt", b"1")], "one").await;
    let (pushed, ()) = tokio::join!(work.git(&["push", &url, "main"]), async {
        server.accept().await.finish(true).await;
    });
    assert!(pushed.status.success(), "{}", stderr(&pushed));

    let clone_dir = server.dir.path().join("clone");
    let clone_dir = clone_dir.to_str().expect("utf-8 temp path");
    for args in [
        vec!["clone", &url, clone_dir],
        vec!["fetch", &url, "main"],
        vec!["ls-remote", &url],
    ] {
        let output = work.git(&args).await;
        let stderr = stderr(&output);
        assert!(
            !output.status.success(),
            "git {args:?} should fail: {stderr}"
        );
        assert!(stderr.contains("403"), "git {args:?}: {stderr}");
    }
}

pub async fn upload_pack_and_dumb_requests_get_403() {
    let server = TestServer::start().await;
    let app = server.create_app("private").await;
    for (method, uri) in [
        (
            Method::GET,
            "/git/private.git/info/refs?service=git-upload-pack",
        ),
        (Method::POST, "/git/private.git/git-upload-pack"),
        (Method::GET, "/git/private.git/info/refs"),
        (Method::GET, "/git/private.git/HEAD"),
    ] {
        let rest = uri
            .trim_start_matches("/git/private.git/")
            .split('?')
            .next()
            .unwrap_or_default();
        let request = Request::builder()
            .method(&method)
            .uri(uri)
            .body(Body::empty())
            .expect("request");
        let response = server
            .repos
            .http_backend(&app, rest, "tester", request)
            .await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {uri}");
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        assert_eq!(body, "this remote only accepts pushes\n", "{method} {uri}");
    }
}

pub async fn receive_pack_advertisement_is_served() {
    let server = TestServer::start().await;
    let app = server.create_app("served").await;
    let request = Request::builder()
        .uri("/git/served.git/info/refs?service=git-receive-pack")
        .body(Body::empty())
        .expect("request");
    let response = server
        .repos
        .http_backend(&app, "info/refs", "tester", request)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[http::header::CONTENT_TYPE],
        "application/x-git-receive-pack-advertisement"
    );
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .expect("body");
    assert!(
        body.starts_with(b"001f# service=git-receive-pack\n0000"),
        "{body:?}"
    );
}
