//! `~/.config/slipway/config.toml`: the server URL and token stored by `slipway login`.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::files;
use crate::token::Token;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LoginFile {
    pub(crate) url: String,
    pub(crate) token: Token,
}

impl LoginFile {
    /// `None` when nobody has logged in yet.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Option<LoginFile>> {
        let Some(text) = files::read_optional(path)? else {
            return Ok(None);
        };
        let login = toml::from_str(&text).with_context(|| {
            format!(
                "login file {} is not valid: run `slipway login` again",
                path.display()
            )
        })?;
        Ok(Some(login))
    }

    pub(crate) fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = toml::to_string(self).context("cannot encode the login file")?;
        files::write_private(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".config/slipway/config.toml");
        assert_eq!(LoginFile::load(&path).unwrap(), None);

        let login = LoginFile {
            url: "http://127.0.0.1:7070".to_owned(),
            token: Token::from("tok-1".to_owned()),
        };
        login.save(&path).unwrap();
        assert_eq!(files::mode(&path), 0o600);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "url = \"http://127.0.0.1:7070\"\ntoken = \"tok-1\"\n"
        );
        assert_eq!(LoginFile::load(&path).unwrap(), Some(login));
    }

    #[test]
    fn a_broken_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "url = 3").unwrap();
        let err = LoginFile::load(&path).unwrap_err();
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }
}
