//! The current repository's git remotes: where `-a` comes from when it is not given, and where
//! `git:remote` and `apps:create` point `git push`.

use std::io;
use std::path::Path;
use std::process::Output;

use anyhow::{Context, bail};
use tokio::process::Command;

/// The remote name the Heroku CLI would call `heroku`.
pub(crate) const DEFAULT_REMOTE: &str = "platform";

/// The smart-HTTP push URL of `app` on the server at `base_url`.
pub(crate) fn push_url(base_url: &str, app: &str) -> String {
    format!("{}/git/{app}.git", base_url.trim_end_matches('/'))
}

/// The app a remote URL pushes to: `<server>/git/<app>.git` over HTTP, or
/// `ssh://git@host:port/<app>.git` over SSH.
pub(crate) fn app_from_remote_url(url: &str) -> Option<&str> {
    let path = url.trim().trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let (prefix, app) = path.rsplit_once('/')?;
    let ssh = url.starts_with("ssh://") && prefix.matches('/').count() == 2;
    (!app.is_empty() && (prefix.ends_with("/git") || ssh)).then_some(app)
}

async fn git(dir: &Path, args: &[&str]) -> io::Result<Output> {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
}

/// Whether `dir` is inside a git work tree; `false` also when git is not installed, since
/// callers then have no repository to work with either.
pub(crate) async fn is_repository(dir: &Path) -> bool {
    git(dir, &["rev-parse", "--is-inside-work-tree"])
        .await
        .is_ok_and(|output| output.status.success())
}

/// The URL of remote `name`, or `None` outside a repository or when there is no such remote.
pub(crate) async fn remote_url(dir: &Path, name: &str) -> Option<String> {
    let output = git(dir, &["remote", "get-url", name]).await.ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RemoteChange {
    Added,
    Updated,
}

/// Adds remote `name` pointing at `url`, or points an existing one there.
pub(crate) async fn set_remote(dir: &Path, name: &str, url: &str) -> anyhow::Result<RemoteChange> {
    if !is_repository(dir).await {
        bail!(
            "{} is not inside a git repository: run `git init` first",
            dir.display()
        );
    }
    let (verb, change) = match remote_url(dir, name).await {
        Some(_) => ("set-url", RemoteChange::Updated),
        None => ("add", RemoteChange::Added),
    };
    let output = git(dir, &["remote", verb, name, url])
        .await
        .context("cannot run git")?;
    if !output.status.success() {
        bail!(
            "git remote {verb} {name} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_app_in_push_urls() {
        for (url, app) in [
            ("http://127.0.0.1:7070/git/myapp.git", Some("myapp")),
            ("https://paas.example.test/git/my-app.git/", Some("my-app")),
            ("https://paas.example.test/prefix/git/web1", Some("web1")),
            ("ssh://git@paas.example.test:2222/myapp.git", Some("myapp")),
            ("https://github.com/someone/myapp.git", None),
            ("ssh://git@example.test/someone/myapp.git", None),
            ("http://127.0.0.1:7070/git/.git", None),
            ("myapp", None),
        ] {
            assert_eq!(app_from_remote_url(url), app, "{url}");
        }
    }

    #[test]
    fn push_urls_round_trip() {
        let url = push_url("http://127.0.0.1:7070/", "myapp");
        assert_eq!(url, "http://127.0.0.1:7070/git/myapp.git");
        assert_eq!(app_from_remote_url(&url), Some("myapp"));
    }
}
