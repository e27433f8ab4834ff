//! Pipelines: a release built once in staging is promoted, image and all, to production, which
//! keeps its own config and version history; refusals say what is wrong in one line.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use slipway_types::api::{ReleaseInfo, ReleaseStatus};
use slipway_types::pipeline::PipelineInfo;

use crate::support::{AppCleanup, Env, text, unique_app};

fn releases(env: &Env, app: &str) -> Vec<ReleaseInfo> {
    serde_json::from_str(&env.slipway_ok(&env.home(), &["releases", "-a", app, "--json"]))
        .expect("releases JSON")
}

/// The id Docker gives an image reference.
fn image_id(reference: &str) -> String {
    let output = Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Id}}", reference])
        .output()
        .expect("docker image inspect");
    assert!(
        output.status.success(),
        "no image `{reference}`: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// An app with no repository, removed with its containers and images at the end.
fn bare_app(env: &Env, prefix: &str) -> (String, AppCleanup) {
    let app = unique_app(prefix);
    let cleanup = AppCleanup(app.clone());
    env.slipway_ok(&env.home(), &["apps:create", &app]);
    (app, cleanup)
}

/// The CLI must fail with exactly one line that contains `expected`.
fn refused(env: &Env, dir: &Path, args: &[&str], expected: &str) {
    let output = env.slipway(dir, args);
    let said = text(&output);
    assert!(
        !output.status.success(),
        "slipway {args:?} succeeded: {said}"
    );
    assert!(
        said.contains(expected),
        "slipway {args:?}: `{expected}` missing from {said}"
    );
    let lines: Vec<&str> = said
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.ends_with("... failed"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "slipway {args:?} said more than one line: {said}"
    );
}

/// A JSON call to the API as `token`: (status, body).
async fn api(
    env: &Env,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let response = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("http client")
        .request(method, format!("{}{path}", env.api_url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("API request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A dashboard page as the admin: GET, or POST of a form with nothing but its CSRF token.
async fn page(env: &Env, path: &str, csrf: Option<&str>) -> String {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(600))
        .build()
        .expect("http client");
    let url = format!("{}{path}", env.api_url());
    let request = match csrf {
        Some(token) => client.post(url).header("x-csrf-token", token),
        None => client.get(url),
    };
    let response = request
        .header("cookie", format!("slipway_session={}", admin_token(env)))
        .send()
        .await
        .expect("dashboard request");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.text().await.expect("a page")
}

fn admin_token(env: &Env) -> String {
    std::fs::read_to_string(env.data_dir().join("admin.token"))
        .expect("admin.token")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn promotion_runs_the_staging_image_with_production_config_and_versions() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let home = env.home();
    let (staging, _staging_cleanup, repo) = env.app_with_repo("pstg", "release-app");
    let (production, _production_cleanup) = bare_app(&env, "pprd");
    let pipeline = unique_app("shop");
    env.slipway_ok(&home, &["pipelines:create", &pipeline]);
    env.slipway_ok(
        &home,
        &[
            "pipelines:add",
            &staging,
            "--pipeline",
            &pipeline,
            "--stage",
            "staging",
        ],
    );
    env.slipway_ok(
        &home,
        &[
            "pipelines:add",
            "-a",
            &production,
            "-p",
            &pipeline,
            "-s",
            "production",
        ],
    );
    env.slipway_ok(&repo, &["config:set", "BODY=staging"]);
    env.slipway_ok(&home, &["config:set", "-a", &production, "BODY=production"]);
    env.push_ok(&repo);
    assert_eq!(env.get_app(&staging).await.1, "staging 1.0.0 web.1\n");

    let promoted = env.slipway_ok(&repo, &["pipelines:promote"]);
    assert!(
        promoted.contains(&format!("Promoting {staging} to production... done")),
        "{promoted}"
    );
    assert!(
        promoted.contains(&format!("Promoted from {staging} 1.0.0")),
        "{promoted}"
    );
    assert_eq!(env.get_app(&production).await.1, "production 1.0.0 web.1\n");
    assert_eq!(env.get_app(&staging).await.1, "staging 1.0.0 web.1\n");
    let first = &releases(&env, &production)[0];
    assert_eq!(first.version, "1.0.0");
    assert_eq!(first.image, format!("slipway/{production}:1.0.0"));
    assert_eq!(first.description, format!("Promoted from {staging} 1.0.0"));
    assert_eq!(first.status, ReleaseStatus::Succeeded);
    let staged = &releases(&env, &staging)[0];
    assert_eq!(first.commit, staged.commit);
    assert_eq!(
        image_id(&first.image),
        image_id(&staged.image),
        "promotion rebuilt the image"
    );

    // A feature on staging, a config change on production: the promotion bumps production's
    // own history by the commits it has not run yet, and keeps production's config.
    env.git_ok(
        &repo,
        &["commit", "-q", "--allow-empty", "-m", "feat: checkout"],
    );
    env.push_ok(&repo);
    env.slipway_ok(&home, &["config:set", "-a", &production, "BODY=live"]);
    let promoted = env.slipway_ok(&repo, &["pipelines:promote", "--to", &production]);
    assert!(promoted.contains("v1.1.0"), "{promoted}");
    let listed = releases(&env, &production);
    assert_eq!(
        listed
            .iter()
            .map(|r| r.version.as_str())
            .collect::<Vec<_>>(),
        ["1.1.0", "1.0.1", "1.0.0"]
    );
    assert_eq!(
        listed[0].description,
        format!("Promoted from {staging} 1.1.0")
    );
    assert!(listed[0].current);
    assert_eq!(env.get_app(&production).await.1, "live 1.1.0 web.1\n");
    assert_eq!(
        env.slipway_ok(&home, &["config:get", "-a", &production, "BODY"])
            .trim(),
        "live"
    );
    assert_eq!(
        image_id(&listed[0].image),
        image_id(&releases(&env, &staging)[0].image)
    );

    // The dashboard shows each app's pipeline and stage, and promotes from staging.
    let staging_page = page(&env, &format!("/apps/{staging}"), None).await;
    assert!(
        staging_page.contains(&format!("{pipeline} (staging)"))
            && staging_page.contains("Promote to production"),
        "{staging_page}"
    );
    let production_page = page(&env, &format!("/apps/{production}"), None).await;
    assert!(
        production_page.contains(&format!("{pipeline} (production)"))
            && !production_page.contains("Promote to production"),
        "{production_page}"
    );
    let csrf = staging_page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token on the overview");
    let promoted = page(&env, &format!("/apps/{staging}/promote"), Some(csrf)).await;
    assert!(
        promoted.contains(&format!(
            "Promoted {staging} 1.1.0: {production} runs 1.1.1"
        )),
        "{promoted}"
    );
    assert_eq!(env.get_app(&production).await.1, "live 1.1.1 web.1\n");

    // The release phase runs in production, with production's config: the config change
    // fails its release but stays, and so does the promotion after it.
    let failed = env.slipway(&home, &["config:set", "-a", &production, "RELEASE_FAIL=1"]);
    assert!(!failed.status.success(), "{}", text(&failed));
    let serving = "1.1.1".to_owned();
    refused(
        &env,
        &repo,
        &["pipelines:promote"],
        "release command exited with status 1",
    );
    assert_eq!(releases(&env, &production)[0].status, ReleaseStatus::Failed);
    assert_eq!(
        env.get_app(&production).await.1,
        format!("live {serving} web.1\n")
    );

    let info: PipelineInfo =
        serde_json::from_str(&env.slipway_ok(&home, &["pipelines:info", &pipeline, "--json"]))
            .expect("pipeline JSON");
    assert_eq!(info.apps.len(), 2);
    assert_eq!(info.apps[0].app, staging);
    assert_eq!(
        info.apps[1].current_release.as_deref(),
        Some(serving.as_str())
    );

    // Production owns its name for the image: destroying staging leaves it running and able
    // to restart.
    env.slipway_ok(
        &home,
        &["apps:destroy", "-a", &staging, "--confirm", &staging],
    );
    env.slipway_ok(&home, &["ps:restart", "-a", &production]);
    assert_eq!(
        env.get_app(&production).await.1,
        format!("live {serving} web.1\n")
    );
    let info: PipelineInfo =
        serde_json::from_str(&env.slipway_ok(&home, &["pipelines:info", &pipeline, "--json"]))
            .expect("pipeline JSON");
    assert_eq!(info.apps.len(), 1);
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn promotions_and_memberships_are_refused_with_one_clear_line() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let home = env.home();
    let admin = admin_token(&env);
    let (staging, _staging_cleanup, repo) = env.app_with_repo("rstg", "release-app");
    let (production, _production_cleanup) = bare_app(&env, "rprd");
    let pipeline = unique_app("line");

    refused(
        &env,
        &home,
        &[
            "pipelines:add",
            &staging,
            "--pipeline",
            "no-such-pipeline",
            "--stage",
            "staging",
        ],
        "pipeline `no-such-pipeline` not found",
    );
    refused(
        &env,
        &home,
        &["pipelines:create", "Bad_Name"],
        "pipeline name `Bad_Name` is invalid",
    );
    env.slipway_ok(&home, &["pipelines:create", &pipeline]);
    refused(
        &env,
        &home,
        &["pipelines:create", &pipeline],
        "already exists",
    );
    refused(
        &env,
        &home,
        &[
            "pipelines:add",
            &staging,
            "--pipeline",
            &pipeline,
            "--stage",
            "review",
        ],
        "stage `review` is unknown: use staging or production",
    );
    env.slipway_ok(
        &home,
        &["pipelines:add", &staging, "-p", &pipeline, "-s", "staging"],
    );
    refused(
        &env,
        &home,
        &[
            "pipelines:add",
            &staging,
            "-p",
            &pipeline,
            "-s",
            "production",
        ],
        &format!("app `{staging}` is already in pipeline `{pipeline}` as a staging app"),
    );
    refused(
        &env,
        &repo,
        &["pipelines:promote"],
        &format!("pipeline `{pipeline}` has no production app"),
    );
    env.slipway_ok(
        &home,
        &[
            "pipelines:add",
            &production,
            "-p",
            &pipeline,
            "-s",
            "production",
        ],
    );
    refused(
        &env,
        &repo,
        &["pipelines:promote"],
        &format!("app `{staging}` has no release to promote: push to it first"),
    );
    refused(
        &env,
        &home,
        &["pipelines:promote", "-a", &production],
        &format!("app `{production}` is a production app of pipeline `{pipeline}`"),
    );
    refused(
        &env,
        &repo,
        &["pipelines:promote", "--to", &staging],
        &format!("app `{staging}` is not a production app of pipeline `{pipeline}`"),
    );

    // The status codes behind those lines are 4xx.
    let post = reqwest::Method::POST;
    for (path, body, status) in [
        (
            "/v1/pipelines/no-such-pipeline/apps".to_owned(),
            json!({"app": staging, "stage": "staging"}),
            404,
        ),
        (
            format!("/v1/pipelines/{pipeline}/apps"),
            json!({"app": staging, "stage": "review"}),
            422,
        ),
        (
            format!("/v1/pipelines/{pipeline}/apps"),
            json!({"app": staging, "stage": "staging"}),
            409,
        ),
        (format!("/v1/apps/{production}/promote"), json!({}), 409),
        (
            format!("/v1/apps/{staging}/promote"),
            json!({"to": [staging]}),
            422,
        ),
    ] {
        let (got, answer) = api(&env, &admin, post.clone(), &path, body).await;
        assert_eq!(got, status, "POST {path}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty() && !message.contains('\n'),
            "POST {path}: {answer}"
        );
    }

    // A staging release that failed is not promoted, and says why.
    env.push_ok(&repo);
    let failed = env.slipway(&repo, &["config:set", "RELEASE_FAIL=1"]);
    assert!(!failed.status.success(), "{}", text(&failed));
    refused(
        &env,
        &repo,
        &["pipelines:promote"],
        &format!("release 1.0.1 of `{staging}` failed (release phase failed"),
    );
    assert!(releases(&env, &production).is_empty());

    // Promoting needs access to both apps: a member with their own staging app may not
    // release to the admin's production app.
    let (status, body) = api(
        &env,
        &admin,
        post.clone(),
        "/v1/admin/users",
        json!({"email": "dev@example.test", "password": "a long enough passphrase"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_, login) = api(
        &env,
        "",
        post.clone(),
        "/v1/login",
        json!({"email": "dev@example.test", "password": "a long enough passphrase"}),
    )
    .await;
    let member = login["token"].as_str().expect("a token").to_owned();
    let theirs = unique_app("mine");
    let _theirs_cleanup = AppCleanup(theirs.clone());
    let (status, body) = api(
        &env,
        &member,
        post.clone(),
        "/v1/apps",
        json!({"name": theirs}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let split = unique_app("split");
    let (status, body) = api(
        &env,
        &member,
        post.clone(),
        "/v1/pipelines",
        json!({"name": split}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let members = format!("/v1/pipelines/{split}/apps");
    let (status, body) = api(
        &env,
        &member,
        post.clone(),
        &members,
        json!({"app": theirs, "stage": "staging"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    env.slipway_ok(&home, &["pipelines:remove", "-a", &production]);
    let (status, body) = api(
        &env,
        &admin,
        post.clone(),
        &members,
        json!({"app": production, "stage": "production"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api(
        &env,
        &member,
        post.clone(),
        &format!("/v1/apps/{theirs}/promote"),
        json!({}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["error"]["message"],
        format!(
            "you may not release to app `{production}`: promoting from `{theirs}` needs access to both apps"
        )
    );
    // Nor may they put the admin's app in a pipeline, or see or destroy the admin's pipeline.
    let (status, _) = api(
        &env,
        &member,
        post.clone(),
        &members,
        json!({"app": staging, "stage": "production"}),
    )
    .await;
    assert_eq!(status, 404);
    let admins = format!("/v1/pipelines/{pipeline}");
    let (status, _) = api(&env, &member, reqwest::Method::DELETE, &admins, json!({})).await;
    assert_eq!(status, 404);
    let (status, body) = api(&env, &admin, reqwest::Method::DELETE, &admins, json!({})).await;
    assert_eq!(status, 204, "{body}");
    let info = env.slipway_ok(&home, &["pipelines"]);
    assert!(info.contains(&split) && !info.contains(&pipeline), "{info}");
    server.stop();
}
