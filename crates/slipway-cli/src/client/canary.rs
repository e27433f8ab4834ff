//! Canary releases and rate limits: `/v1/apps/{app}/canary…`, `/v1/apps/{app}/ratelimit`.

use reqwest::Method;
use slipway_types::RateLimit;
use slipway_types::canary::{CanaryPolicy, CanaryView, RateLimitView};

use super::{CONFIG_TIMEOUT, Client, ClientError, DEFAULT_TIMEOUT};

impl Client {
    pub async fn canary(&self, app: &str) -> Result<CanaryView, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "canary"]).await
    }

    pub async fn set_canary(
        &self,
        app: &str,
        policy: &CanaryPolicy,
    ) -> Result<CanaryView, ClientError> {
        self.call_with(
            Method::PUT,
            &["v1", "apps", app, "canary"],
            policy,
            DEFAULT_TIMEOUT,
        )
        .await
    }

    pub async fn clear_canary(&self, app: &str) -> Result<CanaryView, ClientError> {
        self.call(Method::DELETE, &["v1", "apps", app, "canary"])
            .await
    }

    /// `action` is `promote` or `abort`; a promotion waits for the rolling replacement.
    pub async fn settle_canary(&self, app: &str, action: &str) -> Result<CanaryView, ClientError> {
        self.call_with(
            Method::POST,
            &["v1", "apps", app, "canary", action],
            &(),
            CONFIG_TIMEOUT,
        )
        .await
    }

    pub async fn rate_limit(&self, app: &str) -> Result<RateLimitView, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "ratelimit"])
            .await
    }

    pub async fn set_rate_limit(
        &self,
        app: &str,
        limit: &RateLimit,
    ) -> Result<RateLimitView, ClientError> {
        self.call_with(
            Method::PUT,
            &["v1", "apps", app, "ratelimit"],
            limit,
            DEFAULT_TIMEOUT,
        )
        .await
    }

    pub async fn clear_rate_limit(&self, app: &str) -> Result<RateLimitView, ClientError> {
        self.call(Method::DELETE, &["v1", "apps", app, "ratelimit"])
            .await
    }
}
