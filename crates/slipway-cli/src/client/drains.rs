//! Log drains: `/v1/apps/{app}/drains…`.

use reqwest::Method;
use slipway_types::drains::{AddDrain, DrainInfo};

use super::{Client, ClientError, DEFAULT_TIMEOUT};

impl Client {
    pub async fn list_drains(&self, app: &str) -> Result<Vec<DrainInfo>, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "drains"]).await
    }

    pub async fn add_drain(&self, app: &str, url: &str) -> Result<DrainInfo, ClientError> {
        let body = AddDrain {
            url: url.to_owned(),
        };
        self.call_with(
            Method::POST,
            &["v1", "apps", app, "drains"],
            &body,
            DEFAULT_TIMEOUT,
        )
        .await
    }

    /// By id (`d.<uuid>`): a URL never goes into a request path.
    pub async fn remove_drain(&self, app: &str, id: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &["v1", "apps", app, "drains", id],
            None::<&()>,
            DEFAULT_TIMEOUT,
        )
        .await?;
        Ok(())
    }
}
