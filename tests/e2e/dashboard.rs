//! The web dashboard in a real headless Chromium driven over WebDriver (`chromedriver` from
//! Debian's `chromium-driver`): sign in, create an app, set config and see its release, scale,
//! roll back, watch a log line arrive live, keep a form across an expired session, refusals,
//! admin pages, sign out. Every page visited is saved as a screenshot under
//! `target/dashboard-screenshots/`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{AppCleanup, Env, app_containers, eventually, fixture_repo, unique_app};

const PASSWORD: &str = "a long enough passphrase";
/// How long a page may take to show what a test waits for (a deploy included).
const PAGE_WAIT: Duration = Duration::from_secs(120);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free port")
        .port()
}

/// Headless Chromium behind its own `chromedriver`, stopped on drop.
struct Browser {
    client: Client,
    driver: Child,
    base: String,
    shots: PathBuf,
}

impl Browser {
    async fn start(base: String) -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is missing: install Debian `chromium chromium-driver` (deploy/test.sh does)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on port {port} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-proxy-server", "--window-size=1280,1000"]
            }
        });
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(
                capabilities
                    .as_object()
                    .expect("capabilities object")
                    .clone(),
            )
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("starting a Chromium session (is the Debian `chromium` package installed?)");
        let shots =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots");
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Self {
            client,
            driver,
            base,
            shots,
        }
    }

    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("opening {path}: {e}"));
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("saving screenshot");
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("field {css}: {e}"));
        field.clear().await.expect("clearing a field");
        field.send_keys(text).await.expect("typing");
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("element {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// The text of the first element matching `css`, or empty when there is none (yet).
    async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits (bounded) until the element's text contains `needle`; panics with the page if not.
    async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let text = self.text(css).await;
            if text.contains(needle) {
                return text;
            }
            if Instant::now() >= deadline {
                let url = self.client.current_url().await.map(|u| u.to_string());
                let page = self.client.source().await.unwrap_or_default();
                panic!("{css} never contained {needle:?} (url {url:?}); page:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn session_cookie(&self) -> String {
        self.client
            .get_named_cookie("slipway_session")
            .await
            .expect("the session cookie")
            .value()
            .to_owned()
    }

    async fn sign_in(&self, email: &str) {
        self.fill("#email", email).await;
        self.fill("#password", PASSWORD).await;
        self.click("form[action='/login'] button[type=submit]")
            .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.driver.kill().ok();
        self.driver.wait().ok();
    }
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(env: &Env) -> Self {
        Self {
            base: env.api_url(),
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("API request");
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    /// A member with a password, and an API token of theirs for git pushes.
    async fn member(&self, admin: &str, email: &str) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/v1/admin/users",
                admin,
                Some(json!({ "email": email, "password": PASSWORD })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let response = self
            .http
            .post(format!("{}/v1/login", self.base))
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await
            .expect("login");
        let body: Value = response.json().await.expect("a token");
        body["token"].as_str().expect("a token").to_owned()
    }

    async fn config(&self, token: &str, app: &str) -> Value {
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/v1/apps/{app}/config"),
                token,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_runs_an_app_in_a_real_browser() {
    let env = Env::new();
    // Short metrics buckets, so the overview graphs the test's requests soon.
    let server = env.start_server_with(&["--metrics-bucket", "2s"]);
    let admin = std::fs::read_to_string(env.data_dir().join("admin.token"))
        .expect("admin.token")
        .trim()
        .to_owned();
    let api = Api::new(&env);
    let dev = api.member(&admin, "dev@example.test").await;
    let other = api.member(&admin, "other@example.test").await;
    let browser = Browser::start(env.api_url()).await;

    // Not signed in: any page leads to the sign-in form, and back after.
    browser.goto("/").await;
    assert_eq!(browser.path().await, "/login?next=/");
    browser.shot("01-sign-in").await;
    browser.fill("#email", "dev@example.test").await;
    browser.fill("#password", "not the passphrase").await;
    browser
        .click("form[action='/login'] button[type=submit]")
        .await;
    browser
        .wait_text("#login-error", "wrong email or password")
        .await;
    browser.sign_in("dev@example.test").await;
    browser.wait_text("h1", "Apps").await;
    assert_eq!(browser.path().await, "/");
    assert!(
        browser.text("header nav").await.contains("Apps")
            && !browser.text("header nav").await.contains("Admin"),
        "a member is offered no admin pages"
    );

    // Create an app, push it, and see it on the overview and the list.
    let app = unique_app("dash");
    let _cleanup = AppCleanup(app.clone());
    browser.fill("#app-name", &app).await;
    browser
        .click("form[action='/apps'] button[type=submit]")
        .await;
    browser.wait_text("h1.app-name", &app).await;
    assert_eq!(browser.path().await, format!("/apps/{app}"));
    let repo = env.root.path().join("dash-repo");
    fixture_repo(&env, "static-server", &repo);
    let remote = format!("http://git:{dev}@127.0.0.1:{}/git/{app}.git", env.api_port);
    env.git_ok(&repo, &["remote", "add", "platform", &remote]);
    env.push_ok(&repo);
    browser.goto(&format!("/apps/{app}")).await;
    browser.wait_text("#current-release", "1.0.0").await;
    browser.wait_text("#last-deploy", "succeeded").await;
    browser.shot("02-overview").await;
    // Its requests show on the overview's graphs, with the release as a dashed line.
    for _ in 0..20 {
        env.get_app(&app).await;
    }
    let graphed = eventually(Duration::from_secs(30), async || {
        browser.goto(&format!("/apps/{app}")).await;
        let page = browser.client.source().await.unwrap_or_default();
        page.contains(r#"<svg id="graph-requests""#)
            && !page.contains(r#"<svg id="graph-requests" data-max="1""#)
            && page.contains(r#"class="deploy-marker""#)
    })
    .await;
    assert!(
        graphed,
        "no traffic or release on the graphs: {}",
        browser.client.source().await.unwrap_or_default()
    );
    browser
        .client
        .execute(
            "document.getElementById('graphs').scrollIntoView()",
            Vec::new(),
        )
        .await
        .expect("scrolling to the graphs");
    browser.shot("02-overview-graphs").await;
    browser.goto("/").await;
    let row = browser.wait_text("#apps", &app).await;
    assert!(row.contains("1.0.0") && row.contains("web=1"), "{row}");
    assert!(row.contains("running"), "{row}");
    browser.shot("03-apps").await;

    // Config: a save cuts a release and says which; a bad key is refused inline, nothing saved.
    browser.goto(&format!("/apps/{app}/config")).await;
    browser.fill("#config-key", "GREETING").await;
    browser
        .fill("#config-value", "hello from the dashboard")
        .await;
    browser.click("#config-add button[type=submit]").await;
    browser
        .wait_text("#notice", "Set GREETING: release 1.0.1 is live")
        .await;
    assert!(browser.text("#config").await.contains("GREETING"));
    assert!(
        !browser
            .text("#config")
            .await
            .contains("hello from the dashboard"),
        "values are hidden until revealed"
    );
    browser.click("tr[data-key='GREETING'] summary").await;
    let revealed = browser
        .client
        .find(Locator::Css("#value-GREETING"))
        .await
        .expect("the revealed value")
        .prop("value")
        .await
        .expect("its value");
    assert_eq!(revealed.as_deref(), Some("hello from the dashboard"));
    browser.shot("04-config").await;
    browser.fill("#config-key", "not a key!").await;
    browser.fill("#config-value", "kept as typed").await;
    browser.click("#config-add button[type=submit]").await;
    browser.wait_text("#form-error", "not a key!").await;
    let kept = browser
        .client
        .find(Locator::Css("#config-value"))
        .await
        .expect("the value field")
        .prop("value")
        .await
        .expect("its value");
    assert_eq!(kept.as_deref(), Some("kept as typed"));
    browser.shot("05-config-refused").await;
    let config = api.config(&dev, &app).await;
    assert_eq!(
        config.as_object().map(|c| c.len()),
        Some(1),
        "the bad key was not saved: {config}"
    );

    // A form without its CSRF token is refused, and changes nothing.
    let session = browser.session_cookie().await;
    let forged = api
        .http
        .post(format!("{}/apps/{app}/config", env.api_url()))
        .header("cookie", format!("slipway_session={session}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("key=FORGED&value=x")
        .send()
        .await
        .expect("forged form");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(api.config(&dev, &app).await.get("FORGED").is_none());

    // Scaling: web to 2 shows two processes; beyond the cap is refused inline.
    browser.goto(&format!("/apps/{app}/scaling")).await;
    browser.fill("#quantity-web", "2").await;
    browser.click("#scale-web button[type=submit]").await;
    browser.wait_text("#notice", "Scaled web to 2").await;
    let processes = browser.text("#processes").await;
    assert_eq!(
        processes.matches("web.").count(),
        2,
        "two web processes shown: {processes}"
    );
    assert_eq!(app_containers(&app).len(), 2);
    browser.shot("06-scaling").await;
    browser.fill("#quantity-web", "101").await;
    browser.click("#scale-web button[type=submit]").await;
    browser.wait_text("#form-error", "at most 100").await;
    assert_eq!(app_containers(&app).len(), 2, "nothing was scaled");

    // Roll back to 1.0.0 with one click and a confirmation.
    browser.goto(&format!("/apps/{app}/releases")).await;
    browser.shot("07-releases").await;
    browser
        .click("tr[data-version='1.0.0'] button.rollback")
        .await;
    browser
        .client
        .accept_alert()
        .await
        .expect("a confirmation before rolling back");
    browser
        .wait_text("#notice", "Rolled back to 1.0.0: release 1.0.2 is live")
        .await;
    let (_, releases) = api
        .call(
            reqwest::Method::GET,
            &format!("/v1/apps/{app}/releases"),
            &dev,
            None,
        )
        .await;
    assert_eq!(releases[0]["version"], "1.0.2");
    assert_eq!(releases[0]["description"], "Rollback to 1.0.0");
    browser.shot("08-rolled-back").await;

    // Logs: a request through the router appears on the page while it is open.
    browser.goto(&format!("/apps/{app}/logs")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while browser
        .client
        .find(Locator::Css("#log-lines"))
        .await
        .expect("the log")
        .attr("data-live")
        .await
        .expect("an attribute")
        .is_none()
    {
        assert!(Instant::now() < deadline, "the live log never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let marker = format!("/live-{}", unique_app("line"));
    let host = format!("{app}.localhost");
    reqwest::Client::builder()
        .no_proxy()
        .resolve(&host, ([127, 0, 0, 1], env.http_port).into())
        .build()
        .expect("router client")
        .get(format!("http://{host}:{}{marker}", env.http_port))
        .send()
        .await
        .expect("a request through the router");
    browser.wait_text("#log-lines", &marker).await;
    browser.shot("09-logs-live").await;
    browser.goto(&format!("/apps/{app}/builds")).await;
    browser.wait_text("#builds", "succeeded").await;
    browser.shot("10-builds").await;
    browser.goto(&format!("/apps/{app}/domains")).await;
    browser.wait_text("h1.app-name", &app).await;
    browser.shot("11-domains").await;
    browser.goto(&format!("/apps/{app}/addons")).await;
    browser.wait_text("h1.app-name", &app).await;
    browser.shot("12-addons").await;

    // The session expires mid-edit: sign in again and the change is offered, not lost.
    browser.goto(&format!("/apps/{app}/config")).await;
    let session = browser.session_cookie().await;
    let (status, _) = api
        .call(reqwest::Method::POST, "/v1/logout", &session, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    browser.fill("#config-key", "RESUMED").await;
    browser.fill("#config-value", "after sign-in").await;
    browser.click("#config-add button[type=submit]").await;
    browser
        .wait_text("#login-error", "session has expired")
        .await;
    browser.shot("13-session-expired").await;
    browser.sign_in("dev@example.test").await;
    browser.wait_text("dl.fields", "after sign-in").await;
    browser.shot("14-resume").await;
    browser.click("#resume-submit").await;
    browser
        .wait_text("#notice", "Set RESUMED: release 1.0.3 is live")
        .await;
    assert_eq!(
        api.config(&dev, &app).await["RESUMED"],
        "after sign-in",
        "the kept change was saved"
    );

    // Another member's app and the admin pages are refused with a page that says so.
    let theirs = unique_app("theirs");
    let _their_cleanup = AppCleanup(theirs.clone());
    let (status, body) = api
        .call(
            reqwest::Method::POST,
            "/v1/apps",
            &other,
            Some(json!({ "name": theirs })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    browser.goto(&format!("/apps/{theirs}/config")).await;
    browser.wait_text("h1", "403").await;
    assert!(!browser.text("main").await.contains("GREETING"));
    browser.shot("15-not-yours").await;
    browser.goto("/admin").await;
    browser.wait_text("h1", "403").await;
    let page = api
        .http
        .get(format!("{}/apps/{theirs}", env.api_url()))
        .header(
            "cookie",
            format!("slipway_session={}", browser.session_cookie().await),
        )
        .send()
        .await
        .expect("page request");
    assert_eq!(page.status(), StatusCode::FORBIDDEN);

    // Sign out: the session's token is revoked and pages lead to the sign-in form again.
    let session = browser.session_cookie().await;
    browser.goto("/").await;
    browser.click("form.signout button").await;
    browser.wait_text("h1", "Sign in").await;
    let (status, _) = api
        .call(reqwest::Method::GET, "/v1/whoami", &session, None)
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "signing out revoked the token"
    );
    browser.goto(&format!("/apps/{app}")).await;
    assert_eq!(browser.path().await, format!("/login?next=/apps/{app}"));

    // An admin sees the admin pages (the session cookie is an API token, here the admin's).
    browser
        .client
        .execute(
            "document.cookie = 'slipway_session=' + arguments[0] + '; path=/';",
            vec![json!(admin)],
        )
        .await
        .expect("setting the admin session");
    for (path, name, needle) in [
        ("/admin", "16-admin-status", "Docker"),
        ("/admin/users", "17-admin-users", "dev@example.test"),
        ("/admin/apps", "18-admin-apps", theirs.as_str()),
        ("/admin/audit", "19-admin-audit", "config.update"),
    ] {
        browser.goto(path).await;
        browser.wait_text("main", needle).await;
        browser.shot(name).await;
    }
    browser.goto("/").await;
    let apps = browser.wait_text("#apps", &app).await;
    assert!(apps.contains(&theirs), "an admin sees every app: {apps}");

    browser.client.clone().close().await.ok();
    server.stop();
}
