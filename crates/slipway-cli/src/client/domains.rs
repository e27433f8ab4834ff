//! Custom domains and certificates: `/v1/apps/{app}/domains…` and `/v1/apps/{app}/certs…`.

use reqwest::Method;
use slipway_types::api::{AddCert, AddDomain, CertInfo, CertsAuto, CertsView, DomainInfo};

use super::{Client, ClientError, DEFAULT_TIMEOUT};

impl Client {
    pub async fn list_domains(&self, app: &str) -> Result<Vec<DomainInfo>, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "domains"])
            .await
    }

    pub async fn get_domain(&self, app: &str, hostname: &str) -> Result<DomainInfo, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "domains", hostname])
            .await
    }

    pub async fn add_domain(&self, app: &str, hostname: &str) -> Result<DomainInfo, ClientError> {
        let body = AddDomain {
            hostname: hostname.to_owned(),
        };
        self.call_with(
            Method::POST,
            &["v1", "apps", app, "domains"],
            &body,
            DEFAULT_TIMEOUT,
        )
        .await
    }

    pub async fn remove_domain(&self, app: &str, hostname: &str) -> Result<(), ClientError> {
        self.send(
            Method::DELETE,
            &["v1", "apps", app, "domains", hostname],
            None::<&()>,
            DEFAULT_TIMEOUT,
        )
        .await?;
        Ok(())
    }

    pub async fn list_certs(&self, app: &str) -> Result<CertsView, ClientError> {
        self.call(Method::GET, &["v1", "apps", app, "certs"]).await
    }

    pub async fn set_certs_auto(&self, app: &str, enabled: bool) -> Result<CertsAuto, ClientError> {
        self.call_with(
            Method::PUT,
            &["v1", "apps", app, "certs", "auto"],
            &CertsAuto { enabled },
            DEFAULT_TIMEOUT,
        )
        .await
    }

    /// Uploads a certificate chain and its key; answers with the domains it now serves.
    pub async fn add_cert(
        &self,
        app: &str,
        chain_pem: String,
        key_pem: String,
    ) -> Result<Vec<CertInfo>, ClientError> {
        self.call_with(
            Method::POST,
            &["v1", "apps", app, "certs"],
            &AddCert { chain_pem, key_pem },
            DEFAULT_TIMEOUT,
        )
        .await
    }
}
