//! Repository set-up and the hook listener's socket.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use slipway_git::{GitError, HookListener, Repos};
use slipway_types::AppName;

async fn git_config(repo: &Path, key: &str) -> String {
    let output = tokio::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["config", "--get", key])
        .output()
        .await
        .expect("run git");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub async fn ensure_creates_a_bare_repo_with_the_hook() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("repos");
    let app: AppName = "web-app".parse().expect("app name");
    let repos = Repos::new(
        root.clone(),
        "/opt/it's here/slipway".into(),
        dir.path().join("hook.sock"),
    );

    let path = repos.ensure(&app).await.expect("ensure");
    assert_eq!(path, root.join("web-app.git"));
    assert_eq!(repos.path(&app), path);
    assert_eq!(git_config(&path, "core.bare").await, "true");
    assert_eq!(git_config(&path, "receive.denyDeletes").await, "true");
    assert_eq!(
        git_config(&path, "receive.denyNonFastForwards").await,
        "false"
    );
    assert_eq!(git_config(&path, "http.uploadpack").await, "false");
    assert_eq!(
        git_config(&path, "core.hooksPath").await,
        path.join("hooks").display().to_string()
    );
    let head = std::fs::read_to_string(path.join("HEAD")).expect("HEAD");
    assert_eq!(head, "ref: refs/heads/main\n");
    let hook = path.join("hooks/pre-receive");
    assert_eq!(
        std::fs::read(&hook).expect("hook"),
        b"#!/bin/sh\nexec '/opt/it'\\''s here/slipway' git-hook pre-receive\n"
    );
    let mode = std::fs::metadata(&hook)
        .expect("hook metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o100, 0o100, "the hook is executable");

    // Again, with the binary moved: the repository stays, the hook follows the binary.
    let moved = Repos::new(
        root,
        "/usr/bin/slipway".into(),
        dir.path().join("hook.sock"),
    );
    assert_eq!(moved.ensure(&app).await.expect("ensure again"), path);
    assert_eq!(
        std::fs::read(&hook).expect("hook"),
        b"#!/bin/sh\nexec '/usr/bin/slipway' git-hook pre-receive\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(path.join("hooks"))
        .expect("hooks dir")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers, ["pre-receive"], "no temporary hook files remain");
}

pub async fn hook_script_runs_an_exe_whose_path_needs_quoting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let exe_dir = dir.path().join("it's $HOME");
    std::fs::create_dir(&exe_dir).expect("exe dir");
    let exe = exe_dir.join("slip way");
    std::fs::write(&exe, "#!/bin/sh\necho \"ran with: $*\"\n").expect("fake exe");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let repos = Repos::new(dir.path().join("repos"), exe, dir.path().join("hook.sock"));
    let app: AppName = "quoted".parse().expect("app name");
    let path = repos.ensure(&app).await.expect("ensure");

    // Executing a file this process has just written fails with "text file busy" while a
    // child forked meanwhile by a parallel test still holds the write descriptor until it execs
    // (rust-lang/rust#114554): retry for a bounded while.
    let mut attempts = 0;
    let output = loop {
        attempts += 1;
        let run = tokio::process::Command::new(path.join("hooks/pre-receive"))
            .stdin(Stdio::null())
            .output()
            .await;
        let busy = match &run {
            Err(error) => error.kind() == std::io::ErrorKind::ExecutableFileBusy,
            Ok(output) => String::from_utf8_lossy(&output.stderr).contains("Text file busy"),
        };
        if !busy || attempts == 50 {
            break run.expect("run the hook");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "ran with: git-hook pre-receive\n"
    );
}

pub async fn remove_deletes_the_repo() {
    let dir = tempfile::tempdir().expect("temp dir");
    let repos = Repos::new(
        dir.path().join("repos"),
        "/usr/bin/slipway".into(),
        dir.path().join("hook.sock"),
    );
    let app: AppName = "doomed".parse().expect("app name");
    let path = repos.ensure(&app).await.expect("ensure");
    assert!(path.join("HEAD").exists());
    repos.remove(&app).await.expect("remove");
    assert!(!path.exists());
    repos
        .remove(&app)
        .await
        .expect("removing a missing repo is fine");
}

pub async fn hook_listener_replaces_a_stale_socket_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hook.sock");

    let live = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    assert!(matches!(
        HookListener::bind(&path),
        Err(GitError::SocketInUse(p)) if p == path
    ));
    drop(live);

    // The socket file is still there, but nobody serves it.
    assert!(path.exists());
    let _listener = HookListener::bind(&path).expect("bind over a stale socket");
    let mode = std::fs::metadata(&path)
        .expect("socket metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
