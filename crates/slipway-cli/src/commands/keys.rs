//! `keys`, `keys:add`, `keys:remove`: the SSH keys that authenticate `git push` over SSH.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::cli::Session;
use crate::table::{self, Table};

/// The public keys `keys:add` looks for when given no file, in order, as the Heroku CLI does.
const DEFAULT_KEYS: &[&str] = &["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"];

pub(crate) async fn list(session: &mut Session<'_>) -> anyhow::Result<()> {
    let keys = session.client()?.list_ssh_keys().await?;
    if session.global.json {
        return session.print_json(&keys);
    }
    if keys.is_empty() {
        return session.print("You have no SSH keys: add one with `slipway keys:add`\n");
    }
    let mut rows = Table::new(&["NAME", "TYPE", "FINGERPRINT", "ADDED", "LAST USED"]);
    for key in keys {
        rows.row(vec![
            key.name,
            key.algorithm,
            key.fingerprint,
            table::time(key.created_at),
            table::or_dash(key.last_used_at.map(table::time)),
        ]);
    }
    session.print(&rows.render())
}

pub(crate) async fn add(session: &mut Session<'_>, file: Option<&Path>) -> anyhow::Result<()> {
    let path = match file {
        Some(file) => file.to_owned(),
        None => default_key(&session.env.home)?,
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the public key file `{}`", path.display()))?;
    let key = session.client()?.add_ssh_key(&text, None).await?;
    if session.global.json {
        return session.print_json(&key);
    }
    session.print(&format!(
        "Added SSH key {} ({}) from {}\n",
        key.fingerprint,
        key.name,
        path.display()
    ))
}

pub(crate) async fn remove(session: &mut Session<'_>, key: &str) -> anyhow::Result<()> {
    session.client()?.remove_ssh_key(key).await?;
    if session.global.json {
        return session.print_json(&serde_json::json!({ "removed": key }));
    }
    session.print(&format!("Removed SSH key {key}\n"))
}

/// The first of [`DEFAULT_KEYS`] that exists in `~/.ssh`.
fn default_key(home: &Path) -> anyhow::Result<PathBuf> {
    let dir = home.join(".ssh");
    if let Some(found) = DEFAULT_KEYS
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
    {
        return Ok(found);
    }
    bail!(
        "no public key found in {} ({}): create one with `ssh-keygen -t ed25519`, or name the file: `slipway keys:add FILE`",
        dir.display(),
        DEFAULT_KEYS.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_key_is_the_first_that_exists() {
        let home = tempfile::tempdir().expect("temp dir");
        let error = default_key(home.path()).unwrap_err().to_string();
        assert!(error.contains("no public key found"), "{error}");
        assert!(error.contains("ssh-keygen -t ed25519"), "{error}");

        let ssh = home.path().join(".ssh");
        std::fs::create_dir_all(&ssh).expect("~/.ssh");
        std::fs::write(ssh.join("id_rsa.pub"), "ssh-rsa AAAA").expect("rsa key");
        assert_eq!(default_key(home.path()).unwrap(), ssh.join("id_rsa.pub"));
        std::fs::write(ssh.join("id_ed25519.pub"), "ssh-ed25519 AAAA").expect("ed25519 key");
        assert_eq!(
            default_key(home.path()).unwrap(),
            ssh.join("id_ed25519.pub")
        );
    }
}
