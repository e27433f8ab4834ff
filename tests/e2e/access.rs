//! Users, tokens, roles and the audit log against the real server: a role × route matrix over
//! every route the server documents, token refusals, password logins and their limits,
//! collaborators, and git pushes with a read-only token.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Env, fixture_repo, text, unique_app};

/// A JSON call to the API: (status, body as JSON or `null`).
async fn call(
    env: &Env,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    send(env, method, path, token, body, false, false).await
}

async fn send(
    env: &Env,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    dry_run: bool,
    page: bool,
) -> (StatusCode, Value) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let mut request = client.request(method, format!("{}{path}", env.api_url()));
    match token {
        // Dashboard pages sign in by the session cookie, which holds an API token.
        Some(token) if page => {
            request = request.header("cookie", format!("slipway_session={token}"));
        }
        Some(token) => request = request.bearer_auth(token),
        None => {}
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    if dry_run {
        request = request.header("x-slipway-dry-run", "authorize");
    }
    let response = request.send().await.expect("API request");
    let status = response.status();
    let bytes = response.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// Creates a member with a password (as the admin) and signs them in.
async fn member(env: &Env, admin: &str, email: &str) -> String {
    let (status, body) = call(
        env,
        Method::POST,
        "/v1/admin/users",
        Some(admin),
        Some(json!({ "email": email, "password": "a long enough passphrase" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    login(env, email, "a long enough passphrase").await
}

async fn login(env: &Env, email: &str, password: &str) -> String {
    let (status, body) = call(
        env,
        Method::POST,
        "/v1/login",
        None,
        Some(json!({ "email": email, "password": password })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"].as_str().expect("a token").to_owned()
}

/// What each role gets for a route, from its documented rule: the dry-run answers `204` when
/// the call would be allowed. Dashboard pages (`kind` "page", or "form" for their POSTs) send
/// the anonymous to sign in (`303`; a form answers `401` with the sign-in page, keeping what
/// was typed) and say `403` for an app that is not the caller's, where the API says `404`.
fn expected(access: &str, scope: &str, role: &str, kind: &str) -> u16 {
    let allowed = 204;
    let reads = scope == "read";
    let page = kind != "api";
    match (access, role) {
        ("public", _) => allowed,
        (_, "anonymous") if kind == "page" => 303,
        (_, "anonymous") => 401,
        ("admin", "admin") => allowed,
        ("admin", _) => 403,
        (_, "reader") if !reads => 403,
        ("user", _) => allowed,
        (_, "stranger") if page => 403,
        (_, "stranger") => 404,
        ("app_owner", "collaborator") => 403,
        ("app" | "app_owner", _) => allowed,
        (other, _) => panic!("route with unknown access rule `{other}`"),
    }
}

/// A value for each path parameter; the dry run stops before anything looks them up.
fn fill(path: &str, app: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{app}" => app.to_owned(),
            "{version}" => "1.0.0".to_owned(),
            "{hostname}" => "www.example.test".to_owned(),
            "{email}" => "nobody@example.test".to_owned(),
            s if s.starts_with('{') => "0190a0a0-0000-7000-8000-000000000000".to_owned(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_each_role_as_its_rule_says() {
    let env = Env::new();
    let server = env.start_server();
    let admin = std::fs::read_to_string(env.data_dir().join("admin.token"))
        .expect("admin.token")
        .trim()
        .to_owned();
    let owner = member(&env, &admin, "owner@example.test").await;
    let collaborator = member(&env, &admin, "collab@example.test").await;
    let stranger = member(&env, &admin, "stranger@example.test").await;
    let app = unique_app("authz");
    let _cleanup = crate::support::AppCleanup(app.clone());
    let (status, body) = call(
        &env,
        Method::POST,
        "/v1/apps",
        Some(&owner),
        Some(json!({ "name": app })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = call(
        &env,
        Method::POST,
        &format!("/v1/apps/{app}/collaborators"),
        Some(&owner),
        Some(json!({ "email": "collab@example.test" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, reader) = call(
        &env,
        Method::POST,
        "/v1/tokens",
        Some(&owner),
        Some(json!({ "scope": "read" })),
    )
    .await;
    let reader = reader["token"].as_str().expect("a read token").to_owned();

    let (status, document) = call(&env, Method::GET, "/v1/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.1.0");
    let roles: [(&str, Option<&str>); 6] = [
        ("anonymous", None),
        ("stranger", Some(&stranger)),
        ("collaborator", Some(&collaborator)),
        ("owner", Some(&owner)),
        ("reader", Some(&reader)),
        ("admin", Some(&admin)),
    ];
    let mut checked = 0;
    let mut wrong = Vec::new();
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            let access = operation["x-slipway-access"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no access rule"));
            let scope = operation["x-slipway-scope"].as_str().expect("a scope");
            if access == "git" {
                continue;
            }
            let page = operation["x-slipway-page"] == true;
            let method: Method = method.to_uppercase().parse().expect("a method");
            let url = fill(path, &app);
            for (role, token) in roles {
                let (status, body) =
                    send(&env, method.clone(), &url, token, None, true, page).await;
                let kind = match (page, &method) {
                    (false, _) => "api",
                    (true, &Method::GET) => "page",
                    (true, _) => "form",
                };
                let want = expected(access, scope, role, kind);
                if status.as_u16() != want {
                    wrong.push(format!(
                        "{method} {path} as {role}: {status} {body}, expected {want}"
                    ));
                }
                checked += 1;
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        checked >= 6 * 40,
        "only {checked} checks: routes missing from the document?"
    );

    // Dry runs changed nothing: the app is still there and the collaborator still listed.
    let (status, people) = call(
        &env,
        Method::GET,
        &format!("/v1/apps/{app}/collaborators"),
        Some(&collaborator),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(people.as_array().map(Vec::len), Some(2), "{people}");

    // Refusals come with codes that say what is wrong.
    let (status, body) = call(&env, Method::GET, "/v1/apps", None, None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "token_missing")
    );
    let (status, body) = call(&env, Method::GET, "/v1/apps", Some("not.a.jwt"), None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "token_invalid")
    );
    let forged = format!("{}x", &owner[..owner.len() - 1]);
    let (status, body) = call(&env, Method::GET, "/v1/apps", Some(&forged), None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "token_invalid"),
        "{body}"
    );
    let (status, body) = call(
        &env,
        Method::DELETE,
        &format!("/v1/apps/{app}"),
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "insufficient_scope")
    );
    let (status, body) = call(
        &env,
        Method::DELETE,
        &format!("/v1/apps/{app}"),
        Some(&collaborator),
        None,
    )
    .await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "owner_only"));
    let (status, body) = call(
        &env,
        Method::GET,
        &format!("/v1/apps/{app}"),
        Some(&stranger),
        None,
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "app_not_found")
    );
    let (status, body) = call(&env, Method::GET, "/v1/admin/users", Some(&owner), None).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "admin_only"));
    let (status, body) = call(
        &env,
        Method::POST,
        "/v1/tokens",
        Some(&owner),
        Some(json!({"scope": "admin"})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a member cannot mint an admin token: {body}"
    );

    // Every refused change and every change is in the audit log, with its outcome.
    let (status, events) = call(
        &env,
        Method::GET,
        &format!("/v1/admin/audit?app={app}&limit=1000"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let events = events.as_array().expect("events").clone();
    let has = |action: &str, outcome: &str| {
        events
            .iter()
            .any(|event| event["action"] == action && event["outcome"] == outcome)
    };
    assert!(has("apps.create", "ok"), "{events:?}");
    assert!(has("access.add", "ok"), "{events:?}");
    assert!(has("DELETE /v1/apps/{app}", "denied"), "{events:?}");
    let (_, by_user) = call(
        &env,
        Method::GET,
        "/v1/admin/audit?user=owner@example.test",
        Some(&admin),
        None,
    )
    .await;
    assert!(
        by_user
            .as_array()
            .is_some_and(|events| events.iter().all(|e| e["actor"] == "owner@example.test"))
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_expire_and_revoke_at_once_and_logins_are_limited() {
    let env = Env::new();
    let server = env.start_server();
    let admin = std::fs::read_to_string(env.data_dir().join("admin.token"))
        .expect("admin.token")
        .trim()
        .to_owned();
    let user = member(&env, &admin, "dev@example.test").await;
    let (status, short) = call(
        &env,
        Method::POST,
        "/v1/tokens",
        Some(&user),
        Some(json!({"scope": "write", "expires_in": "1m"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{short}");
    let short_token = short["token"].as_str().expect("a token").to_owned();
    let started = Instant::now();
    let (status, _) = call(&env, Method::GET, "/v1/whoami", Some(&short_token), None).await;
    assert_eq!(status, StatusCode::OK);

    // Revocation takes effect on the next request.
    let (_, issued) = call(
        &env,
        Method::POST,
        "/v1/tokens",
        Some(&user),
        Some(json!({"scope": "read"})),
    )
    .await;
    let doomed = issued["token"].as_str().expect("a token").to_owned();
    let id = issued["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        call(&env, Method::GET, "/v1/whoami", Some(&doomed), None)
            .await
            .0,
        StatusCode::OK
    );
    let (status, _) = call(
        &env,
        Method::DELETE,
        &format!("/v1/tokens/{id}"),
        Some(&user),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(&env, Method::GET, "/v1/whoami", Some(&doomed), None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "token_revoked")
    );
    let (status, _) = call(
        &env,
        Method::DELETE,
        &format!("/v1/tokens/{id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another user's token is not yours to revoke"
    );

    // Users: weak passwords, duplicates and the last admin are refused.
    let weak = call(
        &env,
        Method::POST,
        "/v1/admin/users",
        Some(&admin),
        Some(json!({"email": "weak@example.test", "password": "short"})),
    )
    .await;
    assert_eq!(weak.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", weak.1);
    assert!(
        weak.1["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("at least 12")
    );
    let twice = call(
        &env,
        Method::POST,
        "/v1/admin/users",
        Some(&admin),
        Some(json!({"email": "DEV@example.test"})),
    )
    .await;
    assert_eq!(twice.0, StatusCode::CONFLICT, "{}", twice.1);
    let last = call(
        &env,
        Method::DELETE,
        "/v1/admin/users/admin",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(last.0, StatusCode::CONFLICT, "{}", last.1);
    assert!(
        last.1["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("last admin")
    );
    let generated = call(
        &env,
        Method::POST,
        "/v1/admin/users",
        Some(&admin),
        Some(json!({"email": "new@example.test"})),
    )
    .await;
    let password = generated.1["password"]
        .as_str()
        .expect("a generated password")
        .to_owned();
    login(&env, "new@example.test", &password).await;

    // Wrong passwords are refused alike for unknown accounts, and attempts are limited.
    let wrong = call(
        &env,
        Method::POST,
        "/v1/login",
        None,
        Some(json!({"email": "dev@example.test", "password": "not the passphrase"})),
    )
    .await;
    assert_eq!(
        (wrong.0, code(&wrong.1)),
        (StatusCode::UNAUTHORIZED, "login_failed")
    );
    let unknown = call(
        &env,
        Method::POST,
        "/v1/login",
        None,
        Some(json!({"email": "ghost@example.test", "password": "not the passphrase"})),
    )
    .await;
    assert_eq!(unknown.1, wrong.1);
    let mut limited = false;
    for _ in 0..15 {
        let attempt = call(
            &env,
            Method::POST,
            "/v1/login",
            None,
            Some(json!({"email": "dev@example.test", "password": "guess guess guess"})),
        )
        .await;
        if attempt.0 == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(code(&attempt.1), "rate_limited");
            limited = true;
            break;
        }
    }
    assert!(limited, "login attempts were never limited");
    let (_, events) = call(
        &env,
        Method::GET,
        "/v1/admin/audit?user=dev@example.test&limit=200",
        Some(&admin),
        None,
    )
    .await;
    let logins: Vec<&Value> = events
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["action"] == "login")
        .collect();
    assert!(logins.iter().any(|e| e["outcome"] == "ok"));
    assert!(logins.iter().any(|e| e["outcome"] == "denied"));

    // The CLI signs in with a password and out again, revoking its token on the server.
    let home = env.home();
    let login_out = std::process::Command::new(crate::support::slipway_bin())
        .args([
            "login",
            "--url",
            &env.api_url(),
            "--email",
            "new@example.test",
            "--password-stdin",
        ])
        .env("HOME", &home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(format!("{password}\n").as_bytes())?;
            child.wait_with_output()
        })
        .expect("slipway login");
    assert!(login_out.status.success(), "{}", text(&login_out));
    assert!(
        env.slipway_ok(&home, &["whoami"])
            .contains("new@example.test")
    );
    let stored = std::fs::read_to_string(home.join(".netrc")).expect("netrc written");
    let cli_token = stored
        .split_whitespace()
        .last()
        .expect("a token")
        .to_owned();
    env.slipway_ok(&home, &["logout"]);
    let (status, body) = call(&env, Method::GET, "/v1/whoami", Some(&cli_token), None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "token_revoked")
    );

    // Git: a read-only token may fetch but not push.
    let app = unique_app("readonly");
    let _cleanup = crate::support::AppCleanup(app.clone());
    call(
        &env,
        Method::POST,
        "/v1/apps",
        Some(&user),
        Some(json!({"name": app})),
    )
    .await;
    let (_, read) = call(
        &env,
        Method::POST,
        "/v1/tokens",
        Some(&user),
        Some(json!({"scope": "read"})),
    )
    .await;
    let read = read["token"].as_str().expect("a token");
    let repo = env.root.path().join("readonly-repo");
    fixture_repo(&env, "static-server", &repo);
    let remote = format!("http://git:{read}@127.0.0.1:{}/git/{app}.git", env.api_port);
    let push = env.git(&repo, &["push", &remote, "main"]);
    assert!(!push.status.success());
    assert!(
        text(&push).contains("pushing needs a `write` token"),
        "{}",
        text(&push)
    );

    // The one-minute token expires.
    let wait = Duration::from_secs(62).saturating_sub(started.elapsed());
    tokio::time::sleep(wait).await;
    let (status, body) = call(&env, Method::GET, "/v1/whoami", Some(&short_token), None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "token_expired")
    );
    server.stop();
}
