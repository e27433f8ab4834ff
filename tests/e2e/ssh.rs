//! Git over SSH: a key registered with `slipway keys:add`, a push to `ssh://` that builds,
//! releases and answers through the router, and everything the SSH server refuses: unknown
//! keys, apps that do not exist, apps the key's user may not use (until made a collaborator),
//! shells, other commands, paths outside the repositories, and a key once removed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use slipway_types::api::{ReleaseInfo, SshKeyInfo};

use crate::support::{Env, text};

/// Makes an ed25519 key pair at `path` (and `path.pub`) with `ssh-keygen`.
fn keygen(path: &Path, comment: &str) {
    std::fs::create_dir_all(path.parent().expect("key dir")).expect("key dir");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen must be installed (Debian package openssh-client; deploy/test.sh installs it)");
    assert!(made.status.success(), "ssh-keygen failed: {}", text(&made));
}

/// `SHA256:…` of a public key file, as OpenSSH computes it.
fn fingerprint(public_key: &Path) -> String {
    let listed = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public_key)
        .output()
        .expect("running ssh-keygen");
    assert!(listed.status.success(), "{}", text(&listed));
    String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .nth(1)
        .expect("a fingerprint in ssh-keygen -l output")
        .to_owned()
}

/// `ssh` with only `key`, this test's known-hosts file, and nothing from the user's config.
fn ssh_command(env: &Env, key: &Path) -> String {
    format!(
        "ssh -F /dev/null -i '{}' -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile='{}' -o StrictHostKeyChecking=accept-new -o ConnectTimeout=20",
        key.display(),
        env.root.path().join("known_hosts").display()
    )
}

fn ssh_url(env: &Env, app: &str) -> String {
    format!("ssh://git@127.0.0.1:{}/{app}.git", env.ssh_port)
}

/// `git push <ssh url> main` from `repo` with `key`.
fn push(env: &Env, repo: &Path, key: &Path, app: &str) -> Output {
    Command::new("git")
        .args(["push", &ssh_url(env, app), "main"])
        .current_dir(repo)
        .env("HOME", env.home())
        .env("GIT_SSH_COMMAND", ssh_command(env, key))
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .expect("running git push")
}

/// `ssh` straight to the server, with `args` after the host (a command, or none for a shell).
fn ssh(env: &Env, key: &Path, args: &[&str]) -> Output {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "{} -T -p {} git@127.0.0.1 \"$@\"",
            ssh_command(env, key),
            env.ssh_port
        ))
        .arg("ssh")
        .args(args)
        .env("HOME", env.home())
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null());
    command.output().expect("running ssh")
}

/// `git ls-remote <ssh url>` with `key`: a fetch, served by `git-upload-pack`.
fn ls_remote(env: &Env, key: &Path, app: &str) -> Output {
    Command::new("git")
        .args(["ls-remote", &ssh_url(env, app)])
        .env("HOME", env.home())
        .env("GIT_SSH_COMMAND", ssh_command(env, key))
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .output()
        .expect("running git ls-remote")
}

/// A JSON API call that must answer `expected`; returns the body.
async fn api(
    env: &Env,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Value,
    expected: u16,
) -> Value {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
        .request(method.clone(), format!("{}{path}", env.api_url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("API request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(status, expected, "{method} {path}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Creates a member user (as the admin) and returns a token of theirs.
async fn member(env: &Env, email: &str) -> String {
    let admin = std::fs::read_to_string(env.data_dir().join("admin.token")).expect("admin.token");
    let password = "a long enough passphrase";
    let user = json!({ "email": email, "password": password });
    api(
        env,
        reqwest::Method::POST,
        "/v1/admin/users",
        admin.trim(),
        user,
        201,
    )
    .await;
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
        .post(format!("{}/v1/login", env.api_url()))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("login request");
    let body: Value = response.json().await.expect("login answer");
    body["token"].as_str().expect("a token").to_owned()
}

fn keys(env: &Env) -> Vec<SshKeyInfo> {
    let json = env.slipway_ok(&env.home(), &["keys", "--json"]);
    serde_json::from_str(&json).expect("keys JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn push_over_ssh_with_a_registered_key() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("ssh", "static-server");

    // `keys:add` without a file takes ~/.ssh/id_ed25519.pub.
    let key: PathBuf = env.home().join(".ssh").join("id_ed25519");
    keygen(&key, "dev@laptop");
    let expected = fingerprint(&key.with_extension("pub"));
    let added = env.slipway_ok(&env.home(), &["keys:add"]);
    assert!(added.contains(&expected), "{added}");
    let listed = keys(&env);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].fingerprint, expected);
    assert_eq!(listed[0].algorithm, "ssh-ed25519");
    assert_eq!(listed[0].name, "dev@laptop");
    assert_eq!(listed[0].last_used_at, None);
    assert!(env.slipway_ok(&env.home(), &["keys"]).contains(&expected));

    // Garbage, private keys and duplicates are refused in one line.
    let garbage = env.root.path().join("garbage.pub");
    std::fs::write(&garbage, "ssh-ed25519 not-base64 x@y\n").expect("garbage key");
    let refused = env.slipway(&env.home(), &["keys:add", garbage.to_str().expect("path")]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("is not an OpenSSH public key"),
        "{}",
        text(&refused)
    );
    let refused = env.slipway(&env.home(), &["keys:add", key.to_str().expect("path")]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("this is a private key"),
        "{}",
        text(&refused)
    );
    let pub_path = key.with_extension("pub");
    let refused = env.slipway(&env.home(), &["keys:add", pub_path.to_str().expect("path")]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("already registered"),
        "{}",
        text(&refused)
    );

    // The push builds and releases, with the build streamed back as `remote:` lines.
    let pushed = push(&env, &repo, &key, &app);
    let output = text(&pushed);
    assert!(
        pushed.status.success(),
        "push over SSH failed:\n{output}\n{}",
        server.log_text()
    );
    assert!(output.contains("remote: -----> Building"), "{output}");
    assert!(output.contains("remote: -----> Released 1.0.0"), "{output}");
    let (status, body) = env.get_app(&app).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("index.txt"), "{body}");
    let json = env.slipway_ok(&repo, &["releases", "-a", &app, "--json"]);
    let releases: Vec<ReleaseInfo> = serde_json::from_str(&json).expect("releases JSON");
    assert_eq!(
        releases[0].created_by, "admin",
        "the hook names the key's user as the pusher"
    );
    assert!(keys(&env)[0].last_used_at.is_some());

    // A key nobody registered is refused before anything runs.
    let stranger = env.root.path().join("stranger").join("id_ed25519");
    keygen(&stranger, "stranger@elsewhere");
    let refused = push(&env, &repo, &stranger, &app);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("Permission denied (publickey)"),
        "{}",
        text(&refused)
    );

    // An app that does not exist (or that the user may not use) is not found.
    let refused = push(&env, &repo, &key, "no-such-app");
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("slipway: app `no-such-app` not found"),
        "{}",
        text(&refused)
    );

    // Another user's key reaches only the apps that user may use, as over HTTP.
    let bea = member(&env, "bea@example.test").await;
    let bea_key = env.root.path().join("bea").join("id_ed25519");
    keygen(&bea_key, "bea@desk");
    let bea_pub = std::fs::read_to_string(bea_key.with_extension("pub")).expect("bea's key");
    let body = json!({ "public_key": bea_pub });
    api(&env, reqwest::Method::POST, "/v1/keys", &bea, body, 201).await;
    // One key, one user: the admin cannot register bea's key too.
    let refused = env.slipway(
        &env.home(),
        &[
            "keys:add",
            bea_key.with_extension("pub").to_str().expect("path"),
        ],
    );
    assert!(
        text(&refused).contains("already registered"),
        "{}",
        text(&refused)
    );
    for refused in [
        push(&env, &repo, &bea_key, &app),
        ls_remote(&env, &bea_key, &app),
    ] {
        assert!(!refused.status.success());
        assert!(
            text(&refused).contains(&format!("slipway: app `{app}` not found")),
            "{}",
            text(&refused)
        );
    }
    let collaborator = json!({ "email": "bea@example.test" });
    let admin = std::fs::read_to_string(env.data_dir().join("admin.token")).expect("admin.token");
    let path = format!("/v1/apps/{app}/collaborators");
    api(
        &env,
        reqwest::Method::POST,
        &path,
        admin.trim(),
        collaborator,
        201,
    )
    .await;
    let fetched = ls_remote(&env, &bea_key, &app);
    assert!(fetched.status.success(), "{}", text(&fetched));
    assert!(
        text(&fetched).contains("refs/heads/main"),
        "{}",
        text(&fetched)
    );

    // No shell, no other command, no path outside the repositories: one line saying what works.
    for args in [
        &[][..],
        &["ls", "/"][..],
        &["git-receive-pack '../../etc/passwd.git'"][..],
        &["git-upload-archive '/x.git'"][..],
    ] {
        let refused = ssh(&env, &key, args);
        assert!(!refused.status.success(), "{args:?}");
        let said = text(&refused);
        assert!(
            said.contains("slipway: this SSH server only serves git")
                || said.contains("is not an app repository"),
            "{args:?}: {said}"
        );
    }

    // Once removed, the key no longer pushes.
    let removed = env.slipway_ok(&env.home(), &["keys:remove", &expected]);
    assert!(removed.contains(&expected), "{removed}");
    assert_eq!(keys(&env), vec![]);
    std::fs::write(repo.join("index.txt"), "version two\n").expect("change");
    env.git_ok(&repo, &["commit", "-q", "-am", "fix: version two"]);
    let refused = push(&env, &repo, &key, &app);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("Permission denied (publickey)"),
        "{}",
        text(&refused)
    );
    let refused = env.slipway(&env.home(), &["keys:remove", &expected]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("you have no SSH key"),
        "{}",
        text(&refused)
    );
    server.stop();
}
