//! Reading commits, trees and tags with `git`, including objects a push has not landed yet.

use std::path::PathBuf;

use bytes::Bytes;
use tokio::process::Command;

use crate::command::{failed, git, output, run};
use crate::refs::{check_object_id, check_ref_name, is_zero_id};
use crate::{GitError, RefUpdate};

/// Reads one repository. Inside a pre-receive hook ([`crate::Push::reader`]) it sees the
/// pushed objects, which git keeps in a quarantine directory until the hook succeeds, and the
/// tags the push is about to create; the refs themselves still hold their old values.
#[derive(Debug, Clone)]
pub struct RepoReader {
    repo: PathBuf,
    object_env: Vec<(String, String)>,
    pending: Vec<RefUpdate>,
}

impl RepoReader {
    /// Reads what `repo` holds, outside any push.
    pub fn new(repo: PathBuf) -> Self {
        Self::in_push(repo, Vec::new(), Vec::new())
    }

    pub(crate) fn in_push(
        repo: PathBuf,
        object_env: Vec<(String, String)>,
        pending: Vec<RefUpdate>,
    ) -> Self {
        Self {
            repo,
            object_env,
            pending,
        }
    }

    fn git(&self) -> Command {
        let mut command = git(Some(&self.repo));
        command.envs(self.object_env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// The tree of `commit` as a tar archive, as `git archive` makes it: submodules are left
    /// out, and `export-ignore` / `export-subst` attributes in the tree apply.
    pub async fn archive(&self, commit: &str) -> Result<Bytes, GitError> {
        let mut command = self.git();
        command.args(["archive", "--format=tar", check_object_id(commit)?]);
        run(command).await.map(Bytes::from)
    }

    /// Full messages (subject and body, trailing newlines trimmed) of the commits a deploy of
    /// `commit` brings, newest first: those in `since..commit` when `since` is a commit this
    /// repository has, else all of `commit`'s history. After a force push `since..commit` holds
    /// the commits since the merge base, which are the new ones.
    pub async fn messages(
        &self,
        since: Option<&str>,
        commit: &str,
    ) -> Result<Vec<String>, GitError> {
        let commit = check_object_id(commit)?;
        let since = match since {
            Some(since) if !is_zero_id(check_object_id(since)?) => {
                self.peel_to_commit(since).await?
            }
            _ => None,
        };
        let range = match since {
            Some(since) => format!("{since}..{commit}"),
            None => commit.to_owned(),
        };
        let mut command = self.git();
        command.args(["log", "-z", "--format=%B", &range, "--"]);
        let log = run(command).await?;
        Ok(String::from_utf8_lossy(&log)
            .split('\0')
            .map(str::trim_end)
            .filter(|message| !message.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Names of the tags (`refs/tags/*`) that point at `commit`, directly or through an
    /// annotated tag, as they will be once this push lands: existing tags the push does not
    /// touch, plus the tags it creates or moves. Sorted.
    pub async fn tags_at(&self, commit: &str) -> Result<Vec<String>, GitError> {
        let commit = check_object_id(commit)?;
        let mut command = self.git();
        command.args([
            "for-each-ref",
            "--format=%(refname)",
            &format!("--points-at={commit}"),
            "refs/tags/",
        ]);
        let existing = run(command).await?;
        let mut tags: Vec<String> = String::from_utf8_lossy(&existing)
            .lines()
            .filter(|refname| !self.pending.iter().any(|u| u.refname == *refname))
            .filter_map(|refname| refname.strip_prefix("refs/tags/"))
            .map(str::to_owned)
            .collect();
        for update in self.pending.iter().filter(|u| u.is_tag() && !u.is_delete()) {
            if self.peel_to_commit(&update.new).await?.as_deref() == Some(commit)
                && let Some(name) = update.tag_name()
            {
                tags.push(name.to_owned());
            }
        }
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    /// The abbreviated id git would show for `commit` (7 characters unless ambiguous).
    pub async fn short_sha(&self, commit: &str) -> Result<String, GitError> {
        let mut command = self.git();
        command.args(["rev-parse", "--short=7", check_object_id(commit)?]);
        let short = run(command).await?;
        Ok(String::from_utf8_lossy(&short).trim().to_owned())
    }

    /// The object `refname` points at now, if it exists. Inside a pre-receive hook this is the
    /// value before the push, which lets a queued push notice that another one landed first.
    pub async fn ref_target(&self, refname: &str) -> Result<Option<String>, GitError> {
        let mut command = self.git();
        command.args(["rev-parse", "--verify", "--quiet", check_ref_name(refname)?]);
        self.optional_id(command).await
    }

    /// The commit `object` is or (for a tag) points at; `None` when it is missing or is not
    /// a commit.
    async fn peel_to_commit(&self, object: &str) -> Result<Option<String>, GitError> {
        let mut command = self.git();
        command.args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{}^{{commit}}", check_object_id(object)?),
        ]);
        self.optional_id(command).await
    }

    /// Runs a `rev-parse --verify --quiet`, which exits 1 silently when there is no such object.
    async fn optional_id(&self, mut command: Command) -> Result<Option<String>, GitError> {
        let result = output(&mut command).await?;
        if result.status.success() {
            Ok(Some(
                String::from_utf8_lossy(&result.stdout).trim().to_owned(),
            ))
        } else if result.status.code() == Some(1) && result.stderr.is_empty() {
            Ok(None)
        } else {
            Err(failed(&command, &result))
        }
    }
}
