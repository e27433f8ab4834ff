//! Webhooks and alert rules: `/v1/apps/{app}/webhooks…` and `/v1/apps/{app}/alerts…`.

use reqwest::Method;
use slipway_types::alerts::{AlertRuleInfo, CreateWebhook, CreatedWebhook, SetAlert, WebhookInfo};

use super::{Client, ClientError, DEFAULT_TIMEOUT};

impl Client {
    pub async fn list_webhooks(&self, app: &str) -> Result<Vec<WebhookInfo>, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "webhooks"])
            .await
    }

    /// Adds a webhook; the answer holds its signing secret, shown this once.
    pub async fn add_webhook(
        &self,
        app: &str,
        url: &str,
        events: Vec<String>,
    ) -> Result<CreatedWebhook, ClientError> {
        let body = CreateWebhook {
            url: url.to_owned(),
            events,
        };
        self.call_with(
            Method::POST,
            &["v1", "apps", app, "webhooks"],
            &body,
            DEFAULT_TIMEOUT,
        )
        .await
    }

    pub async fn remove_webhook(&self, app: &str, id: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &["v1", "apps", app, "webhooks", id],
            None::<&()>,
            DEFAULT_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    pub async fn list_alerts(&self, app: &str) -> Result<Vec<AlertRuleInfo>, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "alerts"]).await
    }

    pub async fn set_alert(
        &self,
        app: &str,
        rule: &str,
        threshold: &str,
    ) -> Result<AlertRuleInfo, ClientError> {
        self.call_with(
            Method::PUT,
            &["v1", "apps", app, "alerts", rule],
            &SetAlert {
                threshold: threshold.to_owned(),
            },
            DEFAULT_TIMEOUT,
        )
        .await
    }

    /// Turns a rule off, defaults included.
    pub async fn remove_alert(&self, app: &str, rule: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &["v1", "apps", app, "alerts", rule],
            None::<&()>,
            DEFAULT_TIMEOUT,
        )
        .await?;
        Ok(())
    }
}
