use reqwest::StatusCode;
use slipway_cli::{Client, ClientError};
use slipway_types::api::{BuildStatus, ConfigPatch};

use crate::fake::{self, FakeServer};

fn client(server: &FakeServer) -> Client {
    Client::new(&server.url, Some(fake::TOKEN.to_owned())).expect("client")
}

#[track_caller]
fn api_error(err: ClientError) -> (StatusCode, String, String) {
    match err {
        ClientError::Api {
            status,
            code,
            message,
        } => (status, code, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn sends_the_bearer_token_and_decodes_answers() {
    let server = FakeServer::start().await;
    let client = client(&server);
    assert_eq!(client.healthz().await.unwrap(), "ok");
    let me = client.whoami().await.unwrap();
    assert_eq!((me.email.as_str(), me.role.as_str()), ("admin", "admin"));

    let created = client.create_app("myapp").await.unwrap();
    assert_eq!(created.name, "myapp");
    assert_eq!(created.git_url, format!("{}/git/myapp.git", server.url));
    assert_eq!(created.current_release, None);
    let listed = client.list_apps().await.unwrap();
    assert_eq!(listed, vec![created.clone()]);
    assert_eq!(client.get_app("myapp").await.unwrap(), created);
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_refused_with_the_servers_message() {
    let server = FakeServer::start().await;
    for token in [None, Some("wrong".to_owned())] {
        let client = Client::new(&server.url, token).unwrap();
        let (status, code, message) = api_error(client.whoami().await.unwrap_err());
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(code, "unauthorized");
        assert_eq!(message, "missing or invalid API token");
    }
}

#[tokio::test]
async fn error_bodies_become_api_errors_that_print_the_message() {
    let server = FakeServer::start().await;
    let client = client(&server);
    let err = client.get_app("nope").await.unwrap_err();
    assert_eq!(err.to_string(), "app `nope` not found");
    assert_eq!(api_error(err).0, StatusCode::NOT_FOUND);

    let (status, code, message) = api_error(client.create_app("Bad_Name").await.unwrap_err());
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(code, "invalid");
    assert!(
        message.starts_with("app name `Bad_Name` is invalid"),
        "{message}"
    );

    client.create_app("myapp").await.unwrap();
    let (status, _, _) = api_error(client.create_app("myapp").await.unwrap_err());
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_failure_without_an_error_body_says_what_came_back() {
    let server = FakeServer::start().await;
    let err = client(&server)
        .get_app(fake::PROXIED_APP)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::UnexpectedStatus { status, .. } if status == StatusCode::BAD_GATEWAY),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "the server answered 502 Bad Gateway to GET /v1/apps/{}: <html>Bad Gateway</html>",
            fake::PROXIED_APP
        )
    );
}

#[tokio::test]
async fn config_patches_set_and_unset_and_report_the_release() {
    let server = FakeServer::start().await;
    let client = client(&server);
    client.create_app("myapp").await.unwrap();

    let patch = ConfigPatch::from([
        ("A".to_owned(), Some("1".to_owned())),
        ("B".to_owned(), Some("x=y".to_owned())),
    ]);
    let changed = client.patch_config("myapp", &patch).await.unwrap();
    assert_eq!(changed.release.as_deref(), Some("1.0.0"));
    assert_eq!(changed.config["B"], "x=y");

    let unset = ConfigPatch::from([("A".to_owned(), None)]);
    let changed = client.patch_config("myapp", &unset).await.unwrap();
    assert_eq!(changed.release.as_deref(), Some("1.0.1"));
    let config = client.get_config("myapp").await.unwrap();
    assert_eq!(config.keys().collect::<Vec<_>>(), ["B"]);

    let unchanged = client.patch_config("myapp", &unset).await.unwrap();
    assert_eq!(unchanged.release, None);

    let releases = client.list_releases("myapp").await.unwrap();
    let versions: Vec<_> = releases
        .iter()
        .map(|r| (r.version.as_str(), r.current))
        .collect();
    assert_eq!(versions, [("1.0.1", true), ("1.0.0", false)]);
    assert_eq!(
        client.get_release("myapp", "1.0.0").await.unwrap(),
        releases[1]
    );
}

#[tokio::test]
async fn builds_and_their_output() {
    let server = FakeServer::start().await;
    let client = client(&server);
    client.create_app("myapp").await.unwrap();
    let builds = client.list_builds("myapp").await.unwrap();
    assert_eq!(builds.len(), 1);
    assert_eq!(builds[0].id, fake::BUILD_ID);
    let latest = client.build_output("myapp", "latest").await.unwrap();
    assert_eq!(latest.status, BuildStatus::Succeeded);
    assert_eq!(latest.output, fake::BUILD_LOG);
    let by_id = client
        .build_output("myapp", &fake::BUILD_ID.to_string())
        .await
        .unwrap();
    assert_eq!(by_id, latest);
}

#[tokio::test]
async fn destroying_answers_no_content() {
    let server = FakeServer::start().await;
    let client = client(&server);
    client.create_app("myapp").await.unwrap();
    client.destroy_app("myapp").await.unwrap();
    assert_eq!(
        api_error(client.destroy_app("myapp").await.unwrap_err()).0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_server_that_is_not_running_is_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);

    let err = Client::new(&format!("{url}/"), Some(fake::TOKEN.to_owned()))
        .unwrap()
        .whoami()
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("cannot reach the slipway server at {url}: is `slipway server` running?")
    );
}
