use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use slipway_cli::{ClientCommand, Env, GlobalOpts, run_in};
use tempfile::TempDir;

use crate::fake::{self, FakeServer};

/// A temporary home, and a git repository to run commands in.
struct Sandbox {
    _home: TempDir,
    _repo: TempDir,
    env: Env,
}

impl Sandbox {
    fn new() -> Sandbox {
        let home = tempfile::tempdir().expect("temp home");
        let repo = tempfile::tempdir().expect("temp repository");
        git(repo.path(), &["init", "--quiet"]);
        let env = Env {
            home: home.path().to_owned(),
            xdg_config_home: None,
            cwd: repo.path().to_owned(),
        };
        Sandbox {
            _home: home,
            _repo: repo,
            env,
        }
    }

    /// Runs one command and returns what it printed.
    async fn run(&self, global: GlobalOpts, command: ClientCommand) -> anyhow::Result<String> {
        let mut out = Vec::new();
        run_in(&self.env, global, command, &mut out).await?;
        Ok(String::from_utf8(out).expect("utf-8 output"))
    }

    /// Runs one command with the stored login and the app from the git remote.
    async fn ok(&self, command: ClientCommand) -> String {
        self.run(GlobalOpts::default(), command)
            .await
            .unwrap_or_else(|err| panic!("command failed: {err:#}"))
    }
}

/// Needs the `git` binary; panics (the test fails) when it is missing.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git must be installed to run these tests");
    assert!(output.status.success(), "git {args:?} failed: {output:?}");
    String::from_utf8(output.stdout)
        .expect("utf-8 git output")
        .trim()
        .to_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("file exists")
        .permissions()
        .mode()
        & 0o777
}

fn with_url_and_token(server: &FakeServer, token: &str) -> GlobalOpts {
    GlobalOpts {
        url: Some(server.url.clone()),
        token: Some(token.to_owned().into()),
        ..GlobalOpts::default()
    }
}

#[tokio::test]
async fn login_then_work_on_an_app_inferred_from_the_git_remote() {
    let server = FakeServer::start().await;
    let sandbox = Sandbox::new();

    let printed = sandbox
        .run(with_url_and_token(&server, fake::TOKEN), login())
        .await
        .unwrap();
    assert_eq!(printed, format!("Logged in to {} as admin\n", server.url));
    let login_file = sandbox.env.home.join(".config/slipway/config.toml");
    assert_eq!(mode(&login_file), 0o600);
    let netrc = sandbox.env.home.join(".netrc");
    assert_eq!(mode(&netrc), 0o600);
    assert_eq!(
        std::fs::read_to_string(&netrc).unwrap(),
        format!("machine 127.0.0.1 login slipway password {}\n", fake::TOKEN)
    );

    assert_eq!(sandbox.ok(ClientCommand::Whoami).await, "admin\n");
    let printed = sandbox
        .ok(ClientCommand::AppsCreate {
            name: "myapp".to_owned(),
        })
        .await;
    let push_url = format!("{}/git/myapp.git", server.url);
    assert_eq!(
        printed,
        format!(
            "Creating myapp... done\nhttp://myapp.localhost | {push_url}\nGit remote platform added\n"
        )
    );
    assert_eq!(
        git(&sandbox.env.cwd, &["remote", "get-url", "platform"]),
        push_url
    );

    let printed = sandbox
        .ok(ClientCommand::ConfigSet {
            vars: vec!["B=x=y".to_owned(), "A=1".to_owned()],
        })
        .await;
    assert_eq!(
        printed,
        "Setting B, A and restarting myapp... done, v1.0.0\n"
    );
    assert_eq!(sandbox.ok(ClientCommand::Config).await, "A=1\nB=x=y\n");
    assert_eq!(
        sandbox
            .ok(ClientCommand::ConfigGet {
                key: "B".to_owned()
            })
            .await,
        "x=y\n"
    );
    let printed = sandbox
        .ok(ClientCommand::ConfigUnset {
            keys: vec!["A".to_owned()],
        })
        .await;
    assert_eq!(
        printed,
        "Unsetting A and restarting myapp... done, v1.0.1\n"
    );

    let releases = sandbox.ok(ClientCommand::Releases).await;
    let lines: Vec<&str> = releases.lines().collect();
    assert_eq!(lines.len(), 3, "{releases}");
    assert!(
        lines[1].starts_with("*  v1.0.1   succeeded  Config change  admin"),
        "{releases}"
    );
    assert!(lines[2].starts_with("   v1.0.0"), "{releases}");

    assert_eq!(
        sandbox
            .ok(ClientCommand::BuildsOutput {
                id: "latest".to_owned()
            })
            .await,
        fake::BUILD_LOG
    );

    let info = sandbox.ok(ClientCommand::AppsInfo).await;
    assert!(
        info.starts_with("=== myapp\nWeb URL:  http://myapp.localhost\n"),
        "{info}"
    );
    assert!(info.contains("Release:  v1.0.1\n"), "{info}");

    let err = sandbox
        .run(
            GlobalOpts::default(),
            ClientCommand::AppsDestroy {
                confirm: Some("other".to_owned()),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "--confirm `other` does not match app `myapp`: pass --confirm myapp to destroy it"
    );
    let printed = sandbox
        .ok(ClientCommand::AppsDestroy {
            confirm: Some("myapp".to_owned()),
        })
        .await;
    assert_eq!(
        printed,
        "Destroying myapp (including its add-ons)... done\n"
    );

    assert_eq!(
        sandbox.ok(ClientCommand::Logout).await,
        format!("Logged out of {}\n", server.url)
    );
    assert!(!login_file.exists());
    assert_eq!(std::fs::read_to_string(&netrc).unwrap(), "");
    assert_eq!(sandbox.ok(ClientCommand::Logout).await, "Not logged in\n");
}

#[tokio::test]
async fn a_rejected_token_is_not_stored() {
    let server = FakeServer::start().await;
    let sandbox = Sandbox::new();
    let err = sandbox
        .run(with_url_and_token(&server, "wrong"), login())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "missing or invalid API token");
    assert!(!sandbox.env.home.join(".config").exists());
    assert!(!sandbox.env.home.join(".netrc").exists());
}

#[tokio::test]
async fn login_without_a_token_asks_for_one() {
    let sandbox = Sandbox::new();
    let err = sandbox
        .run(GlobalOpts::default(), login())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "pass --token, or --email with --password-stdin and the password on standard input"
    );
}

#[tokio::test]
async fn commands_explain_what_is_missing() {
    let server = FakeServer::start().await;
    let sandbox = Sandbox::new();

    let global = GlobalOpts {
        url: Some(server.url.clone()),
        ..GlobalOpts::default()
    };
    let err = sandbox.run(global, ClientCommand::Apps).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("not logged in to {}", server.url)),
        "{err}"
    );

    let err = sandbox
        .run(
            with_url_and_token(&server, fake::TOKEN),
            ClientCommand::Config,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("no app given: pass -a APP"),
        "{err}"
    );

    let err = sandbox
        .run(
            with_url_and_token(&server, fake::TOKEN),
            ClientCommand::ConfigSet {
                vars: vec!["DEBUG".to_owned()],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "`DEBUG` has no value: use DEBUG=VALUE");
}

#[tokio::test]
async fn git_remote_points_a_named_remote_at_the_app() {
    let server = FakeServer::start().await;
    let sandbox = Sandbox::new();
    let mut global = with_url_and_token(&server, fake::TOKEN);
    global.app = Some("myapp".to_owned());
    slipway_cli::Client::new(&server.url, Some(fake::TOKEN.to_owned()))
        .unwrap()
        .create_app("myapp")
        .await
        .unwrap();
    git(
        &sandbox.env.cwd,
        &["remote", "add", "prod", "https://example.test/old.git"],
    );

    let printed = sandbox
        .run(
            global.clone(),
            ClientCommand::GitRemote {
                remote: "prod".to_owned(),
            },
        )
        .await
        .unwrap();
    let push_url = format!("{}/git/myapp.git", server.url);
    assert_eq!(printed, format!("set git remote prod to {push_url}\n"));
    assert_eq!(
        git(&sandbox.env.cwd, &["remote", "get-url", "prod"]),
        push_url
    );

    global.app = Some("absent".to_owned());
    let err = sandbox
        .run(
            global,
            ClientCommand::GitRemote {
                remote: "platform".to_owned(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "app `absent` not found");
}

/// `login` with a token, no password.
fn login() -> ClientCommand {
    ClientCommand::Login {
        email: None,
        password_stdin: false,
        password: None,
    }
}
