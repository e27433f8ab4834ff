//! More ways to build, pushed end to end and answered through the router: the Node.js and
//! static built-in buildpacks (with the build cache), Dockerfile builds from local images,
//! third-party classic buildpacks from local git URLs (`.buildpacks`, `export`,
//! `bin/release` config vars, kept in the server's buildpack cache between builds), a
//! Dockerfile app on a fixed EXPOSEd port with a `.dockerignore`, and a Cloud Native
//! Buildpack set with `buildpacks:set`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{AppCleanup, Env, text, unique_app};

/// Copies a fixture folder, subfolders and file modes included.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating a folder");
    for entry in std::fs::read_dir(from).expect("reading a fixture folder") {
        let entry = entry.expect("a fixture entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copying a fixture file");
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

fn commit_all(env: &Env, repo: &Path, message: &str) {
    env.git_ok(repo, &["add", "-A"]);
    env.git_ok(repo, &["commit", "-q", "-m", message]);
}

/// An app and a git repository holding the whole fixture, with the `platform` remote.
fn app_with_tree(env: &Env, prefix: &str, fixture_name: &str) -> (String, AppCleanup, PathBuf) {
    let app = unique_app(prefix);
    let cleanup = AppCleanup(app.clone());
    env.slipway_ok(&env.home(), &["apps:create", &app]);
    let repo = env.root.path().join(format!("repo-{app}"));
    copy_tree(&fixture(fixture_name), &repo);
    env.git_ok(&repo, &["init", "-q", "-b", "main"]);
    commit_all(env, &repo, "initial commit");
    env.slipway_ok(&repo, &["git:remote", "-a", &app]);
    (app, cleanup, repo)
}

/// A bare repository of a fixture buildpack, tagged `v1`, as a `file://` URL.
fn buildpack_repo(env: &Env, fixture_name: &str) -> String {
    let work = env.root.path().join(format!("work-{fixture_name}"));
    copy_tree(&fixture(fixture_name), &work);
    env.git_ok(&work, &["init", "-q", "-b", "main"]);
    commit_all(env, &work, "buildpack");
    env.git_ok(&work, &["tag", "v1"]);
    let bare = env.root.path().join(format!("{fixture_name}.git"));
    env.git_ok(
        env.root.path(),
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().expect("a UTF-8 path"),
            bare.to_str().expect("a UTF-8 path"),
        ],
    );
    format!("file://{}", bare.display())
}

fn push_fails(env: &Env, repo: &Path) -> String {
    let push = env.git(repo, &["push", "platform", "main"]);
    let output = text(&push);
    assert!(!push.status.success(), "the push should fail:\n{output}");
    output
}

fn assert_lines(output: &str, expected: &[&str]) {
    for line in expected {
        assert!(output.contains(line), "`{line}` missing from:\n{output}");
    }
}

/// A GET through the router that does not follow redirects: status, headers, body.
async fn get(env: &Env, app: &str, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let host = format!("{app}.localhost");
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&host, ([127, 0, 0, 1], env.http_port).into())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    let response = client
        .get(format!("http://{host}:{}{path}", env.http_port))
        .send()
        .await
        .expect("request through the router");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn node_and_static_apps_build_with_the_builtin_buildpacks() {
    let env = Env::new();
    let server = env.start_server();
    env.login();

    // Node.js: npm ci from the lockfile, the build script with devDependencies, then pruned.
    let (app, _cleanup, repo) = app_with_tree(&env, "node", "node-app");
    let output = env.push_ok(&repo);
    assert_lines(
        &output,
        &[
            "-----> Node.js app detected",
            "engines.node asks for >=18",
            "-----> Installing dependencies with npm ci (package-lock.json)",
            "-----> Running npm run build",
            "-----> Pruning devDependencies",
            "Default types for buildpack -> web",
            "-----> Released 1.0.0",
        ],
    );
    let (status, _, body) = get(&env, &app, "/").await;
    assert_eq!(status, 200, "{body}\n{}", server.log_text());
    assert_eq!(
        body,
        "hello from node 1.0.0: 172800000 ms from own ms, built with devDependencies, devDependencies pruned, NODE_ENV production\n"
    );

    // A one-line change rebuilds from the cached node_modules.
    let server_js = repo.join("server.js");
    let code = std::fs::read_to_string(&server_js).expect("server.js");
    std::fs::write(
        &server_js,
        code.replace(r#"const greeting = "hello";"#, r#"const greeting = "hi";"#),
    )
    .expect("writing server.js");
    commit_all(&env, &repo, "fix: say hi");
    let output = env.push_ok(&repo);
    assert_lines(
        &output,
        &[
            "-----> Restoring node_modules from the build cache",
            "-----> Released 1.0.1",
        ],
    );
    assert!(!output.contains("npm ci"), "{output}");
    let (_, _, body) = get(&env, &app, "/").await;
    assert!(body.starts_with("hi from node 1.0.1: "), "{body}");

    // builds:cache:purge drops the cache volume.
    let purged = env.slipway_ok(&repo, &["builds:cache:purge"]);
    assert!(purged.contains("Purged the build cache"), "{purged}");
    let volume = Command::new("docker")
        .args(["volume", "inspect", &format!("slipway-cache-{app}")])
        .output()
        .expect("docker volume inspect");
    assert!(!volume.status.success(), "the cache volume is still there");

    // A static site with a static.json: root, clean URLs, a single-page fallback, headers,
    // redirects and an error page.
    let (site, _site_cleanup, site_repo) = app_with_tree(&env, "static", "static-site");
    let output = env.push_ok(&site_repo);
    assert_lines(
        &output,
        &[
            "-----> Static site app detected",
            "-----> Serving public with the platform's static server",
            "-----> Released 1.0.0",
        ],
    );
    let (status, headers, body) = get(&env, &site, "/").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("static index"), "{body}");
    assert_eq!(headers["x-served-by"], "slipway-static");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let (status, _, body) = get(&env, &site, "/about").await;
    assert_eq!(
        (status, body.contains("static about")),
        (200, true),
        "{body}"
    );
    let (status, _, body) = get(&env, &site, "/app/settings/profile").await;
    assert_eq!(
        (status, body.contains("static index")),
        (200, true),
        "{body}"
    );
    let (status, headers, _) = get(&env, &site, "/old").await;
    assert_eq!(status, 301);
    assert_eq!(headers["location"], "/about");
    let (status, _, body) = get(&env, &site, "/nowhere").await;
    assert_eq!(
        (status, body.contains("static not found")),
        (404, true),
        "{body}"
    );
    let (status, _, _) = get(&env, &site, "/../static.json").await;
    assert_ne!(
        status, 200,
        "static.json outside the root must not be served"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dockerfile_apps_build_from_local_images_only() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let (app, _cleanup, repo) = app_with_tree(&env, "docker", "dockerfile-app");

    let output = env.push_ok(&repo);
    assert_lines(
        &output,
        &[
            "-----> Dockerfile app detected",
            "RUN mkdir -p /srv/web",
            "Default types for Dockerfile -> web",
            "-----> Released 1.0.0",
        ],
    );
    let (status, _, body) = get(&env, &app, "/").await;
    assert_eq!(status, 200, "{body}\n{}", server.log_text());
    assert_eq!(body, "built by the Dockerfile, release 1.0.0 as 1000\n");

    // A FROM that needs a registry fails before anything is built; 1.0.0 keeps serving.
    std::fs::write(
        repo.join("Dockerfile"),
        "FROM python:3.13-slim\nCOPY server.py /srv/server.py\nCMD [\"python3\", \"/srv/server.py\"]\n",
    )
    .expect("writing the Dockerfile");
    commit_all(&env, &repo, "feat: official python image");
    let output = push_fails(&env, &repo);
    assert!(
        output.contains("Dockerfile line 1: FROM `python:3.13-slim` is not an image on this machine, and Slipway pulls from no registry"),
        "{output}"
    );
    let (_, _, body) = get(&env, &app, "/").await;
    assert_eq!(body, "built by the Dockerfile, release 1.0.0 as 1000\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dockerfile_app_on_a_fixed_port_is_served_there_without_its_ignored_files() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let (app, _cleanup, repo) = app_with_tree(&env, "port", "dockerfile-port-app");

    // The server listens on 8080 whatever $PORT says; app.json's health check has no port,
    // so it goes to 8080 too.
    let output = env.push_ok(&repo);
    assert_lines(
        &output,
        &[
            "-----> Leaving out 2 files .dockerignore lists",
            "The image EXPOSEs ports 8080, 9090: the web process gets the first, PORT=8080, and only it is routed",
            "-----> Released 1.0.0",
        ],
    );
    let (status, _, body) = get(&env, &app, "/").await;
    assert_eq!(status, 200, "{body}\n{}", server.log_text());
    assert_eq!(body, "fixed port 8080, PORT=8080, files: server.py\n");

    // A config change is a new release of the same image: it keeps the port.
    env.slipway_ok(&repo, &["config:set", "GREETING=hi"]);
    let (status, _, body) = get(&env, &app, "/").await;
    assert_eq!(status, 200, "{body}\n{}", server.log_text());
    assert_eq!(body, "fixed port 8080, PORT=8080, files: server.py\n");
}

/// The bare mirror the server keeps of a git buildpack, found by the repository's name.
fn buildpack_mirror(env: &Env, name: &str) -> PathBuf {
    let cache = env.data_dir().join("cache").join("buildpacks");
    let mirrors: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap_or_else(|e| panic!("reading {}: {e}", cache.display()))
        .map(|entry| entry.expect("a cache entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|file| file.starts_with(&format!("{name}-")))
        })
        .collect();
    assert_eq!(mirrors.len(), 1, "one mirror of {name} in {mirrors:?}");
    mirrors[0].clone()
}

fn inode(path: &Path) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).expect("the mirror's metadata"))
}

#[tokio::test(flavor = "multi_thread")]
async fn third_party_classic_and_cloud_native_buildpacks_from_git_urls() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let first = buildpack_repo(&env, "buildpack-first");
    let second = buildpack_repo(&env, "buildpack-second");
    let cnb = buildpack_repo(&env, "cnb-buildpack");

    // Two classic buildpacks from `.buildpacks`: the first's `export` reaches the second,
    // the last one's bin/release supplies the process and config var defaults.
    let (app, _cleanup, repo) = app_with_tree(&env, "multi", "multi-buildpack-app");
    std::fs::write(
        repo.join(".buildpacks"),
        format!("# two third-party buildpacks\n{first}\n{second}#v1\n"),
    )
    .expect("writing .buildpacks");
    commit_all(&env, &repo, "use two buildpacks");
    env.slipway_ok(&repo, &["config:set", "OVERRIDDEN=from config"]);
    let output = env.push_ok(&repo);
    assert_lines(
        &output,
        &[
            &format!("-----> Fetching buildpack {first}"),
            "       Cloning into the buildpack cache",
            &format!("-----> Fetching buildpack {second}#v1"),
            "-----> First app detected",
            "-----> Second buildpack compiling (FIRST_SAYS=hello from the first buildpack)",
            "Default types for buildpack -> web",
            "-----> Released 1.0.0",
        ],
    );
    let (status, _, body) = get(&env, &app, "/").await;
    assert_eq!(status, 200, "{body}\n{}", server.log_text());
    assert_eq!(
        body,
        "hello from the first buildpack | sourced at start | from bin/release | from config\n"
    );

    // A Cloud Native Buildpack set with buildpacks:set: its launch layer and launch.toml
    // process reach the image, its build-only layer does not, its cached layer is reused.
    let (cnb_app, _cnb_cleanup, cnb_repo) = app_with_tree(&env, "cnb", "cnb-app");
    let bad = env.slipway(&cnb_repo, &["buildpacks:set", "ruby"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("buildpack `ruby` is neither a built-in"),
        "{}",
        text(&bad)
    );
    let set = env.slipway_ok(&cnb_repo, &["buildpacks:set", &cnb]);
    assert!(set.contains(&format!("1. {cnb}")), "{set}");
    let listed = env.slipway_ok(&cnb_repo, &["buildpacks", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("buildpacks JSON");
    assert_eq!(listed["buildpacks"][0], cnb.as_str());

    let output = env.push_ok(&cnb_repo);
    assert_lines(
        &output,
        &[
            "-----> Greeter CNB app detected",
            "-----> Building the greeter layer",
            "-----> Released 1.0.0",
        ],
    );
    let (status, _, body) = get(&env, &cnb_app, "/").await;
    assert_eq!(status, 200, "{body}\n{}", server.log_text());
    assert_eq!(
        body,
        "hello from a Cloud Native Buildpack (greeted by the layer, GREETER_MODE=launch) | build layer gone\n"
    );
    // The second build updates the server's mirror of the buildpack instead of cloning it.
    let mirror = buildpack_mirror(&env, "cnb-buildpack");
    let mirror_inode = inode(&mirror);
    std::fs::write(cnb_repo.join("greeting.txt"), "hello again\n").expect("writing greeting");
    commit_all(&env, &cnb_repo, "fix: greet again");
    let output = env.push_ok(&cnb_repo);
    assert_lines(
        &output,
        &[
            "       Updating the cached clone with git fetch",
            "-----> Reusing the cached greeter layer",
            "-----> Released 1.0.1",
        ],
    );
    assert!(
        !output.contains("Cloning into the buildpack cache"),
        "{output}"
    );
    assert_eq!(inode(&mirror), mirror_inode, "the mirror was cloned again");
    let (_, _, body) = get(&env, &cnb_app, "/").await;
    assert!(
        body.starts_with("hello again (greeted by the layer"),
        "{body}"
    );

    let cleared = env.slipway_ok(&cnb_repo, &["buildpacks:clear"]);
    assert!(cleared.contains("Cleared the buildpacks"), "{cleared}");
    let listed = env.slipway_ok(&cnb_repo, &["buildpacks"]);
    assert!(listed.contains("has no buildpacks set"), "{listed}");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_cloud_native_buildpacks_share_a_build_plan() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let tool = buildpack_repo(&env, "cnb-tool-buildpack");
    let web = buildpack_repo(&env, "cnb-web-buildpack");
    let (app, _cleanup, repo) = app_with_tree(&env, "plan", "cnb-multi-app");

    // The second requires `shout` (loud), which only the first provides: alone it has no
    // plan, and nothing is released.
    env.slipway_ok(&repo, &["buildpacks:set", &web]);
    let output = push_fails(&env, &repo);
    assert!(
        output.contains("the Cloud Native Buildpacks have no build plan: cnb-web-buildpack requires `shout` and no buildpack before it provides it"),
        "{output}"
    );

    // Together: the first gets the second's requirement in its plan and installs a build
    // layer the second uses; the layer is not in the image.
    env.slipway_ok(&repo, &["buildpacks:set", &tool, &web]);
    let output = env.push_ok(&repo);
    assert_lines(
        &output,
        &[
            "-----> Build plan: cnb-tool-buildpack provides `shout` for cnb-web-buildpack",
            "-----> Shouting tool CNB app detected",
            "-----> Installing shout (style loud)",
            "-----> Shouted greeting CNB app detected",
            "-----> Shouting the greeting",
            "-----> Released 1.0.0",
        ],
    );
    let (status, _, body) = get(&env, &app, "/").await;
    assert_eq!(status, 200, "{body}\n{}", server.log_text());
    assert_eq!(body, "HELLO FROM TWO BUILDPACKS! | build tool gone\n");
}
