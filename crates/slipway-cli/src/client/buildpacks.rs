//! How an app builds: `/v1/apps/{app}/buildpacks` and `/v1/apps/{app}/builds/cache`.

use reqwest::Method;
use slipway_types::api::Buildpacks;

use super::{Client, ClientError, DEFAULT_TIMEOUT};

impl Client {
    pub async fn get_buildpacks(&self, app: &str) -> Result<Buildpacks, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "buildpacks"])
            .await
    }

    /// Replaces the app's buildpacks; the server checks each and answers with the list as
    /// stored.
    pub async fn set_buildpacks(
        &self,
        app: &str,
        buildpacks: &[String],
    ) -> Result<Buildpacks, ClientError> {
        let body = Buildpacks {
            buildpacks: buildpacks.to_vec(),
        };
        self.call_with(
            Method::PUT,
            &["v1", "apps", app, "buildpacks"],
            &body,
            DEFAULT_TIMEOUT,
        )
        .await
    }

    pub async fn clear_buildpacks(&self, app: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &["v1", "apps", app, "buildpacks"],
            None::<&()>,
            DEFAULT_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    /// Empties the app's build cache once no build of it is running.
    pub async fn purge_build_cache(&self, app: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &["v1", "apps", app, "builds", "cache"],
            None::<&()>,
            super::CONFIG_TIMEOUT,
        )
        .await?;
        Ok(())
    }
}
