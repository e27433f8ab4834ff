//! The caller's SSH keys: `/v1/keys…`.

use reqwest::Method;
use slipway_types::api::{AddSshKey, SshKeyInfo};

use super::{Client, ClientError, DEFAULT_TIMEOUT};

impl Client {
    pub async fn list_ssh_keys(&self) -> Result<Vec<SshKeyInfo>, ClientError> {
        self.call(Method::GET, &["v1", "keys"]).await
    }

    /// `public_key` is one line of a `.pub` file, sent as is: the server says what is wrong
    /// with it.
    pub async fn add_ssh_key(
        &self,
        public_key: &str,
        name: Option<&str>,
    ) -> Result<SshKeyInfo, ClientError> {
        let body = AddSshKey {
            public_key: public_key.to_owned(),
            name: name.map(str::to_owned),
        };
        self.call_with(Method::POST, &["v1", "keys"], &body, DEFAULT_TIMEOUT)
            .await
    }

    /// `key` is a fingerprint (`SHA256:…`) or a key id.
    pub async fn remove_ssh_key(&self, key: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &["v1", "keys", key],
            None::<&()>,
            DEFAULT_TIMEOUT,
        )
        .await?;
        Ok(())
    }
}
