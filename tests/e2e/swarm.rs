//! `slipway server --runtime swarm` on this machine's single-node swarm: a push runs as a
//! service, scaling spreads traffic over its tasks, rolling releases drop no request, a
//! failing health check rolls back by itself, add-ons are services pinned to their volume's
//! node, and `admin:nodes` lists and drains the node.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use slipway_types::api::{ReleaseInfo, ReleaseStatus};
use slipway_types::nodes::{NodeAvailability, NodeRole, NodeView};

use crate::support::{AppCleanup, Env, Load, eventually, fixture_repo, text, unique_app};

/// The tests here share the one node: draining it in one would starve the others' tasks.
pub(crate) static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Fails loudly unless the engine is a swarm manager.
pub(crate) fn require_swarm() -> String {
    let out = docker(&[
        "info",
        "--format",
        "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}} {{.Swarm.NodeID}}",
    ]);
    let info = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let mut parts = info.split(' ');
    assert!(
        parts.next() == Some("active") && parts.next() == Some("true"),
        "the Docker engine is not a swarm manager (`{info}`): run `docker swarm init --advertise-addr 127.0.0.1` (deploy/test.sh does)"
    );
    parts.next().expect("the node id").to_owned()
}

pub(crate) fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("running docker")
}

fn docker_lines(args: &[&str]) -> Vec<String> {
    String::from_utf8_lossy(&docker(args).stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Names of the services this app has.
pub(crate) fn services(app: &str) -> Vec<String> {
    let mut names = docker_lines(&[
        "service",
        "ls",
        "--filter",
        &format!("label=slipway.app={app}"),
        "--format",
        "{{.Name}}",
    ]);
    names.sort();
    names
}

/// Tasks of a service Swarm keeps running and that run now.
fn running_tasks(service: &str) -> usize {
    docker_lines(&[
        "service",
        "ps",
        service,
        "--filter",
        "desired-state=running",
        "--format",
        "{{.CurrentState}}",
    ])
    .iter()
    .filter(|state| state.starts_with("Running"))
    .count()
}

/// Ids of the tasks Swarm keeps running for a service.
fn running_task_ids(service: &str) -> Vec<String> {
    docker_lines(&[
        "service",
        "ps",
        service,
        "--filter",
        "desired-state=running",
        "--format",
        "{{.ID}}",
    ])
}

/// Removes the app's services and add-on volumes when the test ends, pass or fail. Made
/// before the server starts, so it is dropped after the server stopped (a running server
/// would deploy a removed service again) and before `AppCleanup` removes the network.
pub(crate) struct ServicesCleanup(pub(crate) String);

impl Drop for ServicesCleanup {
    fn drop(&mut self) {
        let label = format!("label=slipway.app={}", self.0);
        for service in services(&self.0) {
            docker(&["service", "rm", &service]);
        }
        for _ in 0..120 {
            let left = docker_lines(&["ps", "-aq", "--filter", &label]);
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        for volume in docker_lines(&["volume", "ls", "-q", "--filter", &label]) {
            docker(&["volume", "rm", "-f", &volume]);
        }
    }
}

/// Sets the node active again when the test ends, pass or fail: a drained node would starve
/// every other swarm test on this machine.
struct ActiveAgain(String);

impl Drop for ActiveAgain {
    fn drop(&mut self) {
        let restored = docker(&["node", "update", "--availability", "active", &self.0]);
        if !restored.status.success() {
            eprintln!(
                "could not set node {} active again: {}",
                self.0,
                text(&restored)
            );
        }
    }
}

/// A fresh app name with its cleanup guards, to be made before the server starts (see
/// `ServicesCleanup`).
fn swarm_app(prefix: &str) -> (String, AppCleanup, ServicesCleanup) {
    let app = unique_app(prefix);
    (app.clone(), AppCleanup(app.clone()), ServicesCleanup(app))
}

/// Creates the app and a repository of the release-app fixture pushing to it.
fn app_repo(env: &Env, app: &str) -> std::path::PathBuf {
    env.slipway_ok(&env.home(), &["apps:create", app]);
    let repo = env.root.path().join(format!("repo-{app}"));
    fixture_repo(env, "release-app", &repo);
    env.slipway_ok(&repo, &["git:remote", "-a", app]);
    repo
}

fn releases(env: &Env, repo: &Path) -> Vec<ReleaseInfo> {
    serde_json::from_str(&env.slipway_ok(repo, &["releases", "--json"])).expect("releases JSON")
}

fn nodes(env: &Env) -> Vec<NodeView> {
    serde_json::from_str(&env.slipway_ok(&env.home(), &["admin:nodes", "--json"]))
        .expect("admin:nodes JSON")
}

/// Bodies look like `<BODY> <version> web.<slot>`.
fn from_some_release(body: &str) -> bool {
    let parts: Vec<&str> = body.split_whitespace().collect();
    parts.len() == 3 && parts[1].starts_with("1.") && parts[2].starts_with("web.")
}

/// Replaces `from` (which must be there) in a file of the repository.
fn edit(repo: &Path, file: &str, from: &str, to: &str) {
    let path = repo.join(file);
    let before = std::fs::read_to_string(&path).expect("reading a fixture file");
    assert!(before.contains(from), "`{from}` not in {file}");
    std::fs::write(&path, before.replacen(from, to, 1)).expect("writing a fixture file");
}

/// Added to the release-app fixture: `GET /redis` sends `AUTH` and `PING` to the Redis at
/// `REDIS_URL` and answers the replies, with nothing but the standard library.
const REDIS_PING: &str = r#"def redis_ping():
    import socket
    import urllib.parse

    url = urllib.parse.urlsplit(os.environ["REDIS_URL"])
    password = urllib.parse.unquote(url.password)
    with socket.create_connection((url.hostname, url.port), timeout=5) as conn:
        conn.sendall("AUTH {} {}\r\nPING\r\n".format(url.username, password).encode())
        reply = b""
        while reply.count(b"\r\n") < 2:
            chunk = conn.recv(64)
            if not chunk:
                break
            reply += chunk
    return " ".join(reply.decode().split())


class Handler"#;

/// GET `path` through the router; the answer must be a 200.
async fn get(env: &Env, app: &str, path: &str) -> String {
    let host = format!("{app}.localhost");
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve(&host, ([127, 0, 0, 1], env.http_port).into())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client");
    let response = client
        .get(format!("http://{host}:{}{path}", env.http_port))
        .send()
        .await
        .expect("request through the router");
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Destroys the app through the API and waits (bounded) until its services are gone.
async fn destroy(env: &Env, repo: &Path, app: &str) {
    env.slipway_ok(repo, &["apps:destroy", "--confirm", app]);
    let gone = eventually(Duration::from_secs(60), async || services(app).is_empty()).await;
    assert!(
        gone,
        "services left after apps:destroy: {:?}",
        services(app)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn swarm_pushes_scale_and_roll_without_dropping_requests() {
    let _swarm = ONE_AT_A_TIME.lock().await;
    require_swarm();
    let env = Env::new();
    let (app, _cleanup, _services) = swarm_app("swarm");
    let server = env.start_server_with(&["--runtime", "swarm"]);
    env.login();
    let repo = app_repo(&env, &app);

    let first = env.push_ok(&repo);
    assert!(first.contains("release phase ran for 1.0.0"), "{first}");
    assert_eq!(env.get_app(&app).await.1, "hello 1.0.0 web.1\n");
    let web = format!("slipway-{app}-web");
    assert_eq!(
        services(&app),
        std::slice::from_ref(&web),
        "one service per type"
    );
    assert_eq!(running_tasks(&web), 1);

    // Three tasks, each taking requests.
    env.slipway_ok(&repo, &["ps:scale", "web=3"]);
    assert_eq!(running_tasks(&web), 3);
    let mut dynos = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let body = env.get_app(&app).await.1;
        dynos.insert(
            body.split_whitespace()
                .last()
                .unwrap_or_default()
                .to_owned(),
        );
        if dynos.len() == 3 {
            break;
        }
    }
    assert_eq!(
        dynos.into_iter().collect::<Vec<_>>(),
        ["web.1", "web.2", "web.3"]
    );

    // A rolling release of three tasks, then one whose health check fails and rolls back,
    // all under load.
    let load = Load::start(&env, &app, 6, Duration::from_secs(600), from_some_release);
    env.git_ok(
        &repo,
        &["commit", "-q", "--allow-empty", "-m", "feat: second push"],
    );
    env.push_ok(&repo);
    assert!(
        env.get_app(&app).await.1.starts_with("hello 1.1.0 web."),
        "the new release serves"
    );

    edit(
        &repo,
        "server.py",
        "    def do_GET(self):\n",
        "    def do_GET(self):\n        if self.path == \"/boom\":\n            self.send_error(500)\n            return\n",
    );
    edit(
        &repo,
        "app.json",
        "\"path\": \"/health\"",
        "\"path\": \"/boom\"",
    );
    env.git_ok(
        &repo,
        &["commit", "-q", "-am", "fix: check a path that fails"],
    );
    let push = env.git(&repo, &["push", "platform", "main"]);
    assert!(!push.status.success(), "{}", text(&push));
    let listed = releases(&env, &repo);
    assert_eq!(listed[0].version, "1.1.1");
    assert_eq!(listed[0].status, ReleaseStatus::Failed, "{listed:?}");
    assert!(listed[1].current, "{listed:?}");
    // The old release serves on every task once Swarm has rolled back.
    for _ in 0..20 {
        let body = env.get_app(&app).await.1;
        assert!(body.starts_with("hello 1.1.0 web."), "{body}");
    }
    let report = load.stop().await;
    report.assert_none_failed("swarm rolling release and rollback", || server.log_text());
    assert_eq!(running_tasks(&web), 3);

    destroy(&env, &repo, &app).await;
    server.stop();
}

/// How many `ps:restart`s run under load in `swarm_restarts_drop_no_request`.
const RESTARTS: usize = 5;

#[tokio::test(flavor = "multi_thread")]
async fn swarm_restarts_drop_no_request() {
    let _swarm = ONE_AT_A_TIME.lock().await;
    require_swarm();
    let env = Env::new();
    let (app, _cleanup, _services) = swarm_app("swrst");
    let server = env.start_server_with(&["--runtime", "swarm"]);
    env.login();
    let repo = app_repo(&env, &app);
    env.push_ok(&repo);
    env.slipway_ok(&repo, &["ps:scale", "web=3"]);
    let web = format!("slipway-{app}-web");
    assert_eq!(running_tasks(&web), 3);

    // Every restart replaces all three tasks, one at a time, while clients keep asking.
    let load = Load::start(&env, &app, 6, Duration::from_secs(600), from_some_release);
    for _ in 0..RESTARTS {
        let before = running_task_ids(&web);
        env.slipway_ok(&repo, &["ps:restart", "web"]);
        let after = running_task_ids(&web);
        assert!(
            before.iter().all(|id| !after.contains(id)),
            "a task survived the restart: {before:?} then {after:?}"
        );
    }
    let report = load.stop().await;
    report.assert_none_failed(&format!("swarm ps:restart x{RESTARTS}"), || {
        server.log_text()
    });
    assert_eq!(running_tasks(&web), 3);

    destroy(&env, &repo, &app).await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn swarm_nodes_drain_and_addons_are_pinned_services() {
    let _swarm = ONE_AT_A_TIME.lock().await;
    let node_id = require_swarm();
    let env = Env::new();
    let (app, _cleanup, _services) = swarm_app("swnode");
    let server = env.start_server_with(&["--runtime", "swarm"]);
    env.login();
    let repo = app_repo(&env, &app);
    edit(&repo, "server.py", "class Handler", REDIS_PING);
    edit(
        &repo,
        "server.py",
        "        if self.path == \"/health\":",
        "        if self.path == \"/redis\":\n            body = redis_ping()\n        elif self.path == \"/health\":",
    );
    env.git_ok(&repo, &["commit", "-q", "-am", "feat: ping redis"]);
    env.push_ok(&repo);
    let web = format!("slipway-{app}-web");

    // This node: the leading manager, with the app's web task on it.
    let listed = nodes(&env);
    let node = listed
        .iter()
        .find(|node| node.id == node_id)
        .unwrap_or_else(|| panic!("node {node_id} not in {listed:?}"))
        .clone();
    assert_eq!(node.role, NodeRole::Manager);
    assert!(node.leader);
    assert_eq!(node.state, "ready");
    assert_eq!(node.availability, NodeAvailability::Active);
    assert_eq!(node.tasks, 1, "{node:?}");
    let table = env.slipway_ok(&env.home(), &["admin:nodes"]);
    assert!(
        table.contains(&node_id[..12]) && table.contains("manager (leader)"),
        "{table}"
    );

    // Unknown nodes are named.
    let unknown = env.slipway(&env.home(), &["admin:nodes:drain", "no-such-node"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown).contains("no node `no-such-node` in the swarm"),
        "{}",
        text(&unknown)
    );

    // Draining the only node: its tasks leave; activating brings them back.
    let _active = ActiveAgain(node_id.clone());
    let drained = env.slipway_ok(&env.home(), &["admin:nodes:drain", &node.hostname]);
    assert!(drained.contains("admin:nodes:activate"), "{drained}");
    let emptied = eventually(Duration::from_secs(90), async || {
        nodes(&env)
            .iter()
            .any(|n| n.id == node_id && n.availability == NodeAvailability::Drain && n.tasks == 0)
    })
    .await;
    assert!(
        emptied,
        "tasks stayed on the drained node: {:?}",
        nodes(&env)
    );
    assert_eq!(running_tasks(&web), 0);
    env.slipway_ok(&env.home(), &["admin:nodes:activate", &node_id]);
    let back = eventually(Duration::from_secs(90), async || {
        running_tasks(&web) == 1 && env.get_app(&app).await.0 == 200
    })
    .await;
    assert!(
        back,
        "the tasks did not come back: {:?}\n{}",
        nodes(&env),
        server.log_text()
    );
    let audit = env.slipway_ok(&env.home(), &["admin:audit", "-n", "20"]);
    assert!(
        audit.contains("admin.nodes.drain") && audit.contains("admin.nodes.activate"),
        "{audit}"
    );

    // A Redis add-on: a service on the app's network, pinned to the node holding its volume.
    let created = env.slipway_ok(&repo, &["addons:create", "redis"]);
    assert!(created.contains("redis-1 as REDIS_URL"), "{created}");
    let redis = format!("slipway-{app}-addon-redis-1");
    let config = env.slipway_ok(&repo, &["config"]);
    assert!(
        config.contains("REDIS_URL=redis://default:") && config.contains(&redis),
        "{config}"
    );
    assert!(services(&app).contains(&redis), "{:?}", services(&app));
    let constraints = docker_lines(&[
        "service",
        "inspect",
        "--format",
        "{{json .Spec.TaskTemplate.Placement.Constraints}}",
        &redis,
    ]);
    assert!(
        constraints
            .concat()
            .contains(&format!("node.id=={node_id}")),
        "{constraints:?}"
    );
    // The app reaches it by name over the overlay network, with the URL it was given.
    assert_eq!(get(&env, &app, "/redis").await, "+OK +PONG\n");
    let counted = eventually(Duration::from_secs(60), async || {
        running_tasks(&redis) == 1 && nodes(&env).iter().any(|n| n.id == node_id && n.tasks == 2)
    })
    .await;
    assert!(
        counted,
        "not the web and redis tasks on the node: {:?}\n{}",
        nodes(&env),
        server.log_text()
    );

    destroy(&env, &repo, &app).await;
    server.stop();
}

/// Rolling updates have no canary: the policy is refused when it is set, not at the next push.
#[tokio::test(flavor = "multi_thread")]
async fn swarm_refuses_a_canary_policy_when_it_is_set() {
    require_swarm();
    let env = Env::new();
    let (app, _cleanup, _services) = swarm_app("swcanary");
    let server = env.start_server_with(&["--runtime", "swarm"]);
    env.login();
    env.slipway_ok(&env.home(), &["apps:create", &app]);
    let canary = env.slipway(
        &env.home(),
        &["releases:canary", "-a", &app, "--percent", "20"],
    );
    assert!(!canary.status.success(), "{}", text(&canary));
    assert_eq!(
        text(&canary).trim(),
        "error: canary releases need --runtime docker",
        "one line"
    );
    let status = env.slipway_ok(&env.home(), &["releases:canary:status", "-a", &app]);
    assert!(!status.contains("20%"), "no policy was stored: {status}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_exist_only_with_the_swarm_runtime() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    for args in [
        &["admin:nodes"][..],
        &["admin:nodes:drain", "any"],
        &["admin:nodes:activate", "any"],
    ] {
        let refused = env.slipway(&env.home(), args);
        assert!(!refused.status.success(), "{args:?}: {}", text(&refused));
        assert!(
            text(&refused).contains("nodes exist only with --runtime swarm"),
            "{args:?}: {}",
            text(&refused)
        );
    }
    server.stop();
}
