//! Which buildpacks a build runs: an app's setting, `BUILDPACK_URL`, or `.buildpacks`, each a
//! built-in name or a git URL with an optional `#ref`. Git buildpacks are fetched on the host
//! with the host's `git`, so any URL the server can reach works (a `file://` bare repository
//! included), and then travel into the build container with the source.

use std::fmt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc::Sender;

use crate::upload::BUILTIN_BUILDPACKS;

/// Longest a buildpack fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// URL schemes `git` fetches a buildpack from.
const GIT_SCHEMES: &[&str] = &["https://", "http://", "git://", "ssh://", "file://"];

/// One buildpack to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Buildpack {
    /// A folder of `buildpacks/` embedded in the binary, by name.
    Builtin(String),
    /// A repository to clone: `url`, at `reference` (a branch, tag or commit) if given.
    Git {
        url: String,
        reference: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("buildpack `{spec}` {reason}")]
pub struct BuildpackError {
    pub spec: String,
    pub reason: String,
}

impl Buildpack {
    /// Parses a built-in name (`nodejs`, or `heroku/nodejs` for the one Heroku names so) or a
    /// git URL with an optional `#ref`.
    pub fn parse(spec: &str) -> Result<Buildpack, BuildpackError> {
        let error = |reason: &str| BuildpackError {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let spec = spec.trim();
        let builtin = spec.strip_prefix("heroku/").unwrap_or(spec);
        if BUILTIN_BUILDPACKS.contains(&builtin) {
            return Ok(Buildpack::Builtin(builtin.to_owned()));
        }
        if !GIT_SCHEMES.iter().any(|scheme| spec.starts_with(scheme)) {
            return Err(error(&format!(
                "is neither a built-in ({}) nor a git URL (https://, http://, git://, ssh://, file://)",
                BUILTIN_BUILDPACKS.join(", ")
            )));
        }
        if spec.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(error("contains white space"));
        }
        let (url, reference) = match spec.split_once('#') {
            Some((url, reference)) => (url, Some(reference)),
            None => (spec, None),
        };
        if GIT_SCHEMES.contains(&url) {
            return Err(error("has no repository after the scheme"));
        }
        if let Some(reference) = reference {
            // A ref is handed to git as an argument: one starting with `-` would be an option.
            if reference.is_empty() || reference.starts_with('-') || reference.contains("..") {
                return Err(error("has an invalid #ref: name a branch, tag or commit"));
            }
        }
        Ok(Buildpack::Git {
            url: url.to_owned(),
            reference: reference.map(str::to_owned),
        })
    }

    /// The name it runs under: its CACHE_DIR and the name in the build's output. A git
    /// buildpack is named after its repository (`heroku-buildpack-foo`).
    pub fn name(&self) -> String {
        match self {
            Buildpack::Builtin(name) => name.clone(),
            Buildpack::Git { url, .. } => {
                let last = url
                    .trim_end_matches('/')
                    .rsplit(['/', ':'])
                    .next()
                    .unwrap_or_default();
                let name: String = last
                    .strip_suffix(".git")
                    .unwrap_or(last)
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    .collect();
                let name = name.trim_start_matches('.');
                if name.is_empty() {
                    "buildpack".to_owned()
                } else {
                    name.to_owned()
                }
            }
        }
    }
}

impl fmt::Display for Buildpack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Buildpack::Builtin(name) => f.write_str(name),
            Buildpack::Git {
                url,
                reference: Some(reference),
            } => write!(f, "{url}#{reference}"),
            Buildpack::Git {
                url,
                reference: None,
            } => f.write_str(url),
        }
    }
}

/// The buildpacks a `.buildpacks` file lists: one a line, blank lines and `#` comments
/// skipped.
pub fn parse_list(text: &str) -> Result<Vec<Buildpack>, BuildpackError> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(Buildpack::parse)
        .collect()
}

/// Clones a git buildpack into `dest` (which must not exist) with the host's `git`, sending
/// git's messages to `output`. Shallow where the ref allows it: a branch or tag is fetched
/// alone, a commit needs the history.
pub(crate) async fn fetch(
    url: &str,
    reference: Option<&str>,
    dest: &Path,
    output: &Sender<String>,
) -> Result<(), String> {
    let shallow = {
        let mut args = vec!["clone", "--quiet", "--depth", "1"];
        if let Some(reference) = reference {
            args.extend(["--branch", reference]);
        }
        args
    };
    if git(&shallow, url, dest, output).await.is_ok() {
        return Ok(());
    }
    let Some(reference) = reference else {
        return git(&["clone", "--quiet"], url, dest, output).await;
    };
    // Not a branch or tag: clone everything and check the commit out.
    if dest.exists() {
        tokio::fs::remove_dir_all(dest)
            .await
            .map_err(|error| format!("cannot clear `{}`: {error}", dest.display()))?;
    }
    git(&["clone", "--quiet", "--no-checkout"], url, dest, output).await?;
    run_git(
        Command::new("git")
            .arg("-C")
            .arg(dest)
            .args(["checkout", "--quiet", "--detach", reference]),
        output,
    )
    .await
    .map_err(|_| format!("`{reference}` is not a branch, tag or commit of {url}"))
}

async fn git(args: &[&str], url: &str, dest: &Path, output: &Sender<String>) -> Result<(), String> {
    run_git(
        Command::new("git").args(args).arg("--").arg(url).arg(dest),
        output,
    )
    .await
}

/// Runs git without a terminal prompt, its messages indented into `output`.
async fn run_git(command: &mut Command, output: &Sender<String>) -> Result<(), String> {
    command
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|error| format!("cannot run git: {error}"))?;
    let stderr = child.stderr.take();
    let relay = async {
        if let Some(stderr) = stderr {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                output.send(format!("       {line}")).await.ok();
            }
        }
        child.wait().await
    };
    match tokio::time::timeout(FETCH_TIMEOUT, relay).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("git exited with {status}")),
        Ok(Err(error)) => Err(format!("waiting for git: {error}")),
        Err(_) => Err(format!(
            "git did not finish within {} s",
            FETCH_TIMEOUT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(url: &str, reference: Option<&str>) -> Buildpack {
        Buildpack::Git {
            url: url.to_owned(),
            reference: reference.map(str::to_owned),
        }
    }

    #[test]
    fn urls_with_and_without_a_ref() {
        assert_eq!(
            Buildpack::parse("https://github.com/heroku/heroku-buildpack-ruby.git#v250").unwrap(),
            git(
                "https://github.com/heroku/heroku-buildpack-ruby.git",
                Some("v250")
            )
        );
        assert_eq!(
            Buildpack::parse("file:///srv/buildpacks/hello.git").unwrap(),
            git("file:///srv/buildpacks/hello.git", None)
        );
        assert_eq!(
            Buildpack::parse("ssh://git@example.com/bp.git#main").unwrap(),
            git("ssh://git@example.com/bp.git", Some("main"))
        );
        let spec = "https://example.com/a/b.git#0123abc";
        assert_eq!(Buildpack::parse(spec).unwrap().to_string(), spec);
    }

    #[test]
    fn builtins_by_name_or_heroku_name() {
        for (spec, name) in [
            ("nodejs", "nodejs"),
            ("heroku/python", "python"),
            ("static", "static"),
            ("procfile", "procfile"),
        ] {
            assert_eq!(
                Buildpack::parse(spec).unwrap(),
                Buildpack::Builtin(name.to_owned())
            );
        }
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, reason) in [
            ("../etc", "neither a built-in"),
            ("ruby", "neither a built-in"),
            ("ftp://example.com/bp", "neither a built-in"),
            ("https://", "no repository"),
            ("https://example.com/bp.git#", "invalid #ref"),
            ("https://example.com/bp.git#--upload-pack=x", "invalid #ref"),
            ("https://example.com/bp.git#a..b", "invalid #ref"),
            ("https://example.com/b p.git", "white space"),
        ] {
            let error = Buildpack::parse(spec).unwrap_err();
            assert!(error.to_string().contains(reason), "{spec}: {error}");
            assert!(error.to_string().contains(&format!("`{spec}`")), "{error}");
        }
    }

    #[test]
    fn git_buildpacks_are_named_after_their_repository() {
        for (spec, name) in [
            (
                "https://github.com/heroku/heroku-buildpack-ruby.git#v1",
                "heroku-buildpack-ruby",
            ),
            ("file:///tmp/x/hello-bp/", "hello-bp"),
            ("ssh://git@example.com:2222/team/bp", "bp"),
            ("https://example.com/.git", "buildpack"),
        ] {
            assert_eq!(Buildpack::parse(spec).unwrap().name(), name, "{spec}");
        }
    }

    #[test]
    fn dot_buildpacks_skips_comments_and_blank_lines() {
        let list = parse_list("# first\nhttps://example.com/a.git#v2\n\n  nodejs  \r\n").unwrap();
        assert_eq!(
            list,
            [
                git("https://example.com/a.git", Some("v2")),
                Buildpack::Builtin("nodejs".to_owned())
            ]
        );
        let error = parse_list("nodejs\nnot-a-buildpack\n").unwrap_err();
        assert_eq!(error.spec, "not-a-buildpack");
    }
}
