//! Real `git push` over HTTP through `Repos::http_backend`, the hook and `HookListener`.

use std::process::Stdio;

use axum::body::Body;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Request, StatusCode};
use slipway_git::{RefUpdate, RepoReader};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::{DEADLINE, TestServer, WorkRepo, ZERO, noise, stderr, untar};

pub async fn accepted_push_streams_lines_and_lands() {
    let server = TestServer::start().await;
    let app = server.create_app("hello").await;
    let work = WorkRepo::init(&server).await;
    let head = work
        .commit(
            &[
                ("app.py", b"print('hi')\n"),
                ("Procfile", b"web: python app.py\n"),
            ],
            "feat: first\n\nwith a body",
        )
        .await;

    let url = server.url(&app);
    let (pushed, ()) = tokio::join!(work.git(&["push", &url, "main"]), async {
        let mut push = server.accept().await;
        assert_eq!(push.app, app);
        assert_eq!(
            push.updates,
            [RefUpdate {
                old: ZERO.to_owned(),
                new: head.clone(),
                refname: "refs/heads/main".to_owned(),
            }]
        );
        assert_eq!(
            push.repo,
            server.repos.path(&app).canonicalize().expect("repo path")
        );

        // Inside the hook the commit is only in the quarantine, and the ref not updated yet.
        let reader = push.reader();
        assert_eq!(
            reader.ref_target("refs/heads/main").await.expect("ref"),
            None
        );
        let files = untar(&reader.archive(&head).await.expect("archive"));
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["Procfile", "app.py"],
            "archive files"
        );
        assert_eq!(files["app.py"], b"print('hi')\n");
        assert_eq!(
            reader.messages(None, &head).await.expect("messages"),
            ["feat: first\n\nwith a body"]
        );
        assert_eq!(reader.short_sha(&head).await.expect("short sha"), head[..7]);
        assert!(reader.tags_at(&head).await.expect("tags").is_empty());
        assert!(
            RepoReader::new(push.repo.clone())
                .archive(&head)
                .await
                .is_err(),
            "without the quarantine environment the pushed commit is invisible"
        );

        push.say("-----> Python app detected").await.expect("say");
        push.say("       Installing requirements")
            .await
            .expect("say");
        push.finish(true).await;
    });

    let stderr = stderr(&pushed);
    assert!(pushed.status.success(), "push failed: {stderr}");
    assert!(
        stderr.contains("remote: -----> Python app detected"),
        "{stderr}"
    );
    assert!(
        stderr.contains("remote:        Installing requirements"),
        "{stderr}"
    );
    assert_eq!(server.main_of(&app).await, Some(head));
}

/// The build runs inside the push, so its lines must reach the pusher as they are said, not
/// when the hook ends: the hook side waits to see its first line at the pusher before finishing.
pub async fn lines_reach_the_pusher_while_the_hook_runs() {
    let server = TestServer::start().await;
    let app = server.create_app("streamed").await;
    let work = WorkRepo::init(&server).await;
    work.commit(&[("a.txt", b"1")], "one").await;

    let mut pusher = work.spawn_git(&["push", &server.url(&app), "main"]);
    let mut pusher_sees = BufReader::new(pusher.stderr.take().expect("stderr is piped")).lines();
    let mut push = server.accept().await;
    push.say("-----> building").await.expect("say");
    let seen = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = pusher_sees.next_line().await.expect("pusher stderr") {
            if line.contains("remote: -----> building") {
                return true;
            }
        }
        false
    })
    .await
    .expect("the line reaches the pusher while the hook still runs");
    assert!(seen, "the pusher never saw the line");
    push.finish(true).await;
    let status = tokio::time::timeout(DEADLINE, pusher.wait())
        .await
        .expect("push ends in time")
        .expect("push status");
    assert!(status.success());
}

pub async fn refused_push_leaves_the_ref_and_drops_the_objects() {
    let server = TestServer::start().await;
    let app = server.create_app("refused").await;
    let work = WorkRepo::init(&server).await;
    let head = work
        .commit(&[("index.html", b"<h1>hi</h1>")], "first")
        .await;

    let url = server.url(&app);
    let (pushed, ()) = tokio::join!(work.git(&["push", &url, "main"]), async {
        let mut push = server.accept().await;
        push.say("-----> build failed").await.expect("say");
        push.finish(false).await;
    });

    let stderr = stderr(&pushed);
    assert!(!pushed.status.success(), "push should fail: {stderr}");
    assert!(stderr.contains("remote: -----> build failed"), "{stderr}");
    assert!(stderr.contains("pre-receive hook declined"), "{stderr}");
    assert_eq!(server.main_of(&app).await, None);
    let lookup = server.bare_git(&app, &["cat-file", "-e", &head]).await;
    assert!(
        !lookup.status.success(),
        "the refused commit must not reach the repository"
    );
}

pub async fn dropped_push_is_refused() {
    let server = TestServer::start().await;
    let app = server.create_app("dropped").await;
    let work = WorkRepo::init(&server).await;
    work.commit(&[("index.html", b"hi")], "first").await;

    let url = server.url(&app);
    let (pushed, ()) = tokio::join!(work.git(&["push", &url, "main"]), async {
        drop(server.accept().await);
    });

    let stderr = stderr(&pushed);
    assert!(!pushed.status.success(), "push should fail: {stderr}");
    assert!(
        stderr.contains("remote: -----> the slipway server stopped before finishing this push"),
        "{stderr}"
    );
    assert_eq!(server.main_of(&app).await, None);
}

pub async fn second_push_reads_new_messages_and_pushed_tags() {
    let server = TestServer::start().await;
    let app = server.create_app("tagged").await;
    let work = WorkRepo::init(&server).await;
    let url = server.url(&app);
    let first = work.commit(&[("a.txt", b"1")], "feat: first").await;
    let (pushed, ()) = tokio::join!(work.git(&["push", &url, "main"]), async {
        server.accept().await.finish(true).await;
    });
    assert!(pushed.status.success(), "{}", stderr(&pushed));

    work.commit(&[("a.txt", b"2")], "fix: second").await;
    let third = work
        .commit(
            &[("a.txt", b"3")],
            "feat!: third\n\nBREAKING CHANGE: new api",
        )
        .await;
    work.git_ok(&["tag", "-a", "v2.0.0", "-m", "release 2"])
        .await;
    work.git_ok(&["tag", "latest"]).await;
    let (pushed, ()) = tokio::join!(
        work.git(&["push", &url, "main", "v2.0.0", "latest"]),
        async {
            let push = server.accept().await;
            let mut refnames: Vec<_> = push.updates.iter().map(|u| u.refname.as_str()).collect();
            refnames.sort_unstable();
            assert_eq!(
                refnames,
                ["refs/heads/main", "refs/tags/latest", "refs/tags/v2.0.0"]
            );
            let main = push
                .updates
                .iter()
                .find(|u| u.is_deploy_branch())
                .expect("main is pushed");
            assert_eq!((main.old.as_str(), main.new.as_str()), (&*first, &*third));
            let v2 = push
                .updates
                .iter()
                .find(|u| u.tag_name() == Some("v2.0.0"))
                .expect("v2.0.0 is pushed");
            assert_ne!(v2.new, third, "an annotated tag is its own object");

            let reader = push.reader();
            assert_eq!(
                reader
                    .messages(Some(&main.old), &main.new)
                    .await
                    .expect("messages"),
                ["feat!: third\n\nBREAKING CHANGE: new api", "fix: second"]
            );
            assert_eq!(
                reader.tags_at(&third).await.expect("tags"),
                ["latest", "v2.0.0"]
            );
            assert!(reader.tags_at(&first).await.expect("tags").is_empty());
            push.finish(true).await;
        }
    );
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert_eq!(
        server
            .repos
            .reader(&app)
            .tags_at(&third)
            .await
            .expect("tags"),
        ["latest", "v2.0.0"]
    );

    // Moving a tag: the pending update wins over the tag the repository still has.
    work.git_ok(&["tag", "--force", "latest", &first]).await;
    let (pushed, ()) = tokio::join!(
        work.git(&["push", "--force", &url, "refs/tags/latest"]),
        async {
            let push = server.accept().await;
            let reader = push.reader();
            assert_eq!(reader.tags_at(&third).await.expect("tags"), ["v2.0.0"]);
            assert_eq!(reader.tags_at(&first).await.expect("tags"), ["latest"]);
            push.finish(true).await;
        }
    );
    assert!(pushed.status.success(), "{}", stderr(&pushed));
}

pub async fn force_push_reads_messages_since_the_merge_base() {
    let server = TestServer::start().await;
    let app = server.create_app("forced").await;
    let work = WorkRepo::init(&server).await;
    let url = server.url(&app);
    work.commit(&[("a.txt", b"1")], "one").await;
    let two = work.commit(&[("a.txt", b"2")], "two").await;
    let (pushed, ()) = tokio::join!(work.git(&["push", &url, "main"]), async {
        let push = server.accept().await;
        assert_eq!(
            push.reader().messages(None, &two).await.expect("messages"),
            ["two", "one"]
        );
        push.finish(true).await;
    });
    assert!(pushed.status.success(), "{}", stderr(&pushed));

    work.git_ok(&["reset", "--quiet", "--hard", "HEAD~1"]).await;
    let three = work.commit(&[("a.txt", b"3")], "three").await;
    let (pushed, ()) = tokio::join!(work.git(&["push", "--force", &url, "main"]), async {
        let push = server.accept().await;
        assert_eq!(push.updates[0].old, two);
        let reader = push.reader();
        assert_eq!(
            reader.messages(Some(&two), &three).await.expect("messages"),
            ["three"]
        );
        let unknown = "1234567890123456789012345678901234567890";
        assert_eq!(
            reader
                .messages(Some(unknown), &three)
                .await
                .expect("messages"),
            ["three", "one"],
            "an unknown `since` means the whole history"
        );
        assert_eq!(
            reader.messages(Some(ZERO), &three).await.expect("messages"),
            ["three", "one"]
        );
        push.finish(true).await;
    });
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    assert_eq!(server.main_of(&app).await, Some(three));
}

pub async fn deleting_main_is_refused_after_the_hook() {
    let server = TestServer::start().await;
    let app = server.create_app("keeper").await;
    let work = WorkRepo::init(&server).await;
    let url = server.url(&app);
    let head = work.commit(&[("a.txt", b"1")], "one").await;
    let (pushed, ()) = tokio::join!(work.git(&["push", &url, "main"]), async {
        server.accept().await.finish(true).await;
    });
    assert!(pushed.status.success(), "{}", stderr(&pushed));

    let (deleted, ()) = tokio::join!(work.git(&["push", &url, ":main"]), async {
        let push = server.accept().await;
        assert!(push.updates[0].is_delete() && push.updates[0].is_deploy_branch());
        push.finish(true).await;
    });
    let stderr = stderr(&deleted);
    assert!(
        !deleted.status.success(),
        "deleting main should fail: {stderr}"
    );
    assert!(stderr.contains("deletion prohibited"), "{stderr}");
    assert_eq!(server.main_of(&app).await, Some(head));
}

pub async fn unreachable_server_refuses_the_push() {
    let server = TestServer::without_hook_listener().await;
    let app = server.create_app("lonely").await;
    let work = WorkRepo::init(&server).await;
    work.commit(&[("a.txt", b"1")], "one").await;

    let pushed = work.git(&["push", &server.url(&app), "main"]).await;
    let stderr = stderr(&pushed);
    assert!(!pushed.status.success(), "push should fail: {stderr}");
    assert!(
        stderr.contains(
            "remote: -----> the slipway server is not reachable: push again once it is running"
        ),
        "{stderr}"
    );
    assert_eq!(server.main_of(&app).await, None);
}

/// git itself gzips only fetch requests, but other clients gzip pushes too: send a push
/// request by hand, gzipped, straight to `http_backend`.
pub async fn gzipped_push_body_is_inflated() {
    let server = TestServer::start().await;
    let app = server.create_app("gzipped").await;
    let work = WorkRepo::init(&server).await;
    let head = work.commit(&[("a.txt", b"zipped")], "zipped").await;

    let pack = work
        .git_with_input(&["pack-objects", "--stdout", "--revs"], format!("{head}\n"))
        .await;
    let command = format!("{ZERO} {head} refs/heads/main\0report-status\n");
    let mut body = format!("{:04x}{command}0000", command.len() + 4).into_bytes();
    body.extend(pack);
    let gzipped = gzip(&body).await;
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/git/{app}.git/git-receive-pack"))
        .header(CONTENT_TYPE, "application/x-git-receive-pack-request")
        .header(CONTENT_ENCODING, "gzip")
        .header(CONTENT_LENGTH, gzipped.len())
        .body(Body::from(gzipped))
        .expect("request");

    let (report, ()) = tokio::join!(
        async {
            let response = server
                .repos
                .http_backend(&app, "git-receive-pack", "tester", request)
                .await;
            assert_eq!(response.status(), StatusCode::OK);
            axum::body::to_bytes(response.into_body(), 64 * 1024)
                .await
                .expect("report")
        },
        async {
            let push = server.accept().await;
            assert_eq!(push.updates[0].new, head);
            let files = untar(&push.reader().archive(&head).await.expect("archive"));
            assert_eq!(files["a.txt"], b"zipped");
            push.finish(true).await;
        }
    );
    let report = String::from_utf8_lossy(&report);
    assert!(report.contains("unpack ok"), "{report}");
    assert!(report.contains("ok refs/heads/main"), "{report}");
    assert_eq!(server.main_of(&app).await, Some(head));
}

async fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = tokio::process::Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gzip");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let data = data.to_vec();
    let writer = tokio::spawn(async move { stdin.write_all(&data).await });
    let output = child.wait_with_output().await.expect("gzip output");
    writer.await.expect("writer").expect("write to gzip");
    assert!(output.status.success());
    output.stdout
}

/// Past `http.postBuffer` git streams the pack with chunked encoding and no length.
pub async fn large_chunked_push_lands() {
    let server = TestServer::start().await;
    let app = server.create_app("large").await;
    let work = WorkRepo::init(&server).await;
    let data = noise(4 * 1024 * 1024, 42);
    let head = work.commit(&[("data.bin", &data)], "large").await;

    let url = server.url(&app);
    let (pushed, ()) = tokio::join!(work.git(&["push", &url, "main"]), async {
        let mut push = server.accept().await;
        let files = untar(&push.reader().archive(&head).await.expect("archive"));
        assert!(files["data.bin"] == data, "archived file differs");
        push.say("-----> received").await.expect("say");
        push.finish(true).await;
    });
    let stderr = stderr(&pushed);
    assert!(pushed.status.success(), "{stderr}");
    assert!(stderr.contains("remote: -----> received"), "{stderr}");
    assert_eq!(server.main_of(&app).await, Some(head));
    assert!(
        server.seen().iter().any(|r| r.method == "POST"
            && r.rest == "git-receive-pack"
            && r.content_length.is_none()),
        "git sent no chunked body: {:?}",
        server.seen()
    );
}
