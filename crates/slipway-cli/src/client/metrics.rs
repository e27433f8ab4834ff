//! The metrics time series: `/v1/apps/{app}/metrics`.

use reqwest::Method;
use slipway_types::metrics::AppMetrics;

use super::{Client, ClientError};

impl Client {
    /// The app's buckets over the last `since`: `30m`, `6h`, `7d`.
    pub async fn app_metrics(&self, app: &str, since: &str) -> Result<AppMetrics, ClientError> {
        let query = [("since", since.to_owned())];
        self.call_query(Method::GET, &["v1", "apps", app, "metrics"], &query)
            .await
    }
}
