//! Custom domains and certificates at run time: the built-in DNS server's records, DNS checks
//! of pending domains, ACME orders and renewals with back-off, and what the router serves.
//!
//! One loop does the DNS side every few seconds (cheap, and it must notice a record soon);
//! a second one orders certificates, so a slow ACME server never delays DNS checks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use slipway_domains::acme::{AcmeClient, AcmeConfig, AcmeError, Challenge, ChallengeSolver};
use slipway_domains::certs::{CertInfo, renewal_due};
use slipway_domains::check::{DnsCheck, DnsChecker};
use slipway_domains::dns::DnsServer;
use slipway_router::Router;
use slipway_store::{CertFacts, CertPair, Certificate, Domain, IssuedCert, Store};
use slipway_types::api::{CertSource, CertStatus, DnsStatus};
use slipway_types::{AppName, CertSnapshot, DomainName, ServedCert};
use time::OffsetDateTime;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::app::Platform;
use crate::config::AcmeSettings;

/// How often pending domains are checked and DNS records refreshed.
const DNS_EVERY: Duration = Duration::from_secs(5);
/// How often verified domains are checked again: a domain moved away loses its status.
const RECHECK_VERIFIED_EVERY: time::Duration = time::Duration::minutes(10);
/// How often the ordering loop looks for due work when nothing wakes it.
const ORDER_EVERY: Duration = Duration::from_secs(30);
/// The shortest pause between two passes of the ordering loop.
const MIN_ORDER_PAUSE: Duration = Duration::from_secs(1);
/// First retry after a failed order; doubles per failure up to `MAX_BACKOFF`.
const FIRST_BACKOFF: time::Duration = time::Duration::seconds(30);
const MAX_BACKOFF: time::Duration = time::Duration::hours(6);

pub struct Certs {
    store: Store,
    router: Arc<Router>,
    dns: Option<DnsServer>,
    checker: DnsChecker,
    acme: Option<AcmeSettings>,
    /// Connected on first use and kept: one account per server.
    client: Mutex<Option<Arc<AcmeClient>>>,
    apps_domain: String,
    public_ip: std::net::IpAddr,
    /// Woken when a domain or certificate changes, so work starts at once.
    wake_dns: Notify,
    wake_orders: Notify,
}

impl Certs {
    pub fn new(
        store: Store,
        router: Arc<Router>,
        dns: Option<DnsServer>,
        checker: DnsChecker,
        config: &crate::config::ServerConfig,
    ) -> Certs {
        Certs {
            store,
            router,
            dns,
            checker,
            acme: config.acme.clone(),
            client: Mutex::new(None),
            apps_domain: config.apps_domain.clone(),
            public_ip: config.public_ip,
            wake_dns: Notify::new(),
            wake_orders: Notify::new(),
        }
    }

    /// The record a custom domain of `app` needs.
    pub fn dns_target(&self, app: &AppName) -> String {
        format!("{app}.{}", self.apps_domain)
    }

    /// The platform's wildcard certificate name, when it can be ordered: DNS-01 needs the
    /// built-in DNS server to be authoritative for the apps domain.
    pub fn wildcard_name(&self) -> Option<String> {
        let wildcard: DomainName = format!("*.{}", self.apps_domain).parse().ok()?;
        let dns = self.dns.as_ref()?;
        (self.acme.is_some() && dns.is_authoritative_for(&wildcard)).then(|| wildcard.to_string())
    }

    /// Whether a wildcard custom domain can get a certificate: only through DNS-01 in a zone
    /// delegated to the built-in DNS server.
    pub fn can_validate_wildcard(&self, domain: &DomainName) -> bool {
        self.dns
            .as_ref()
            .is_some_and(|dns| dns.is_authoritative_for(domain))
    }

    /// A domain or certificate changed: refresh routes, DNS and the router's certificates now.
    pub fn changed(&self) {
        self.wake_dns.notify_one();
        self.wake_orders.notify_one();
    }

    /// Routes, DNS records and certificates as the store has them. Called at start and after
    /// every change.
    pub async fn sync(&self, platform: &Platform) -> anyhow::Result<()> {
        let domains = self.store.domains(None).await?;
        let mut hosts: BTreeMap<AppName, Vec<String>> = BTreeMap::new();
        for domain in &domains {
            hosts
                .entry(domain.app.clone())
                .or_default()
                .push(domain.hostname.to_string());
        }
        platform.deployer.set_custom_hosts(hosts);
        if let Some(dns) = &self.dns {
            let apps: Vec<AppName> = self
                .store
                .apps()
                .await?
                .into_iter()
                .map(|app| app.name)
                .collect();
            dns.set_apps(&apps).await;
            let custom: Vec<(DomainName, AppName)> = domains
                .iter()
                .map(|d| (d.hostname.clone(), d.app.clone()))
                .collect();
            dns.set_custom_domains(&custom).await;
        }
        self.serve_certificates().await
    }

    /// Hands the router every certificate that has a chain and has not expired.
    async fn serve_certificates(&self) -> anyhow::Result<()> {
        let now = OffsetDateTime::now_utc();
        let mut served = Vec::new();
        for cert in self.store.certificates().await? {
            let (Some(pair), Some(facts)) = (&cert.pair, &cert.facts) else {
                continue;
            };
            metrics::gauge!("slipway_certificate_expiry_days", "domain" => cert.name.clone())
                .set((facts.not_after - now).as_seconds_f64() / 86_400.0);
            if facts.not_after <= now {
                continue;
            }
            let Ok(host) = cert.name.parse::<DomainName>() else {
                continue;
            };
            served.push(ServedCert {
                hosts: vec![host],
                chain_pem: pair.chain_pem.clone(),
                key_pem: pair.key_pem.clone(),
            });
        }
        for problem in self.router.update_certs(&CertSnapshot { certs: served }) {
            tracing::error!(%problem, "the router refused a stored certificate");
        }
        Ok(())
    }

    /// Checks the DNS of pending domains (and of verified ones now and then) and wants a
    /// certificate for each verified domain of an app with automatic certificates.
    async fn check_domains(&self) -> anyhow::Result<bool> {
        let now = OffsetDateTime::now_utc();
        let mut changed = false;
        for domain in self.store.domains(None).await? {
            let due = domain.dns_status == DnsStatus::Pending
                || domain
                    .checked_at
                    .is_none_or(|at| now - at >= RECHECK_VERIFIED_EVERY);
            let status = if due {
                let status = self.check(&domain).await?;
                changed |= status != domain.dns_status;
                status
            } else {
                domain.dns_status
            };
            if status == DnsStatus::Verified {
                changed |= self.want_certificate(&domain).await?;
            }
        }
        if let Some(wildcard) = self.wildcard_name() {
            changed |= self.store.want_certificate(&wildcard, None).await?;
        }
        Ok(changed)
    }

    /// Wants a certificate for a domain whose DNS points here, when its app takes automatic
    /// certificates. True when it was not wanted before: the ordering loop has work.
    pub async fn want_certificate(&self, domain: &Domain) -> anyhow::Result<bool> {
        if self.acme.is_none() || !self.store.certs_auto(domain.app_id).await? {
            return Ok(false);
        }
        Ok(self
            .store
            .want_certificate(domain.hostname.as_str(), Some(domain.app_id))
            .await?)
    }

    /// Checks one domain's DNS now and records the result.
    pub async fn check(&self, domain: &Domain) -> anyhow::Result<DnsStatus> {
        let target = self.dns_target(&domain.app);
        let (status, found) = match self
            .checker
            .check(&domain.hostname, &target, self.public_ip)
            .await
        {
            DnsCheck::Verified { record } => (DnsStatus::Verified, record),
            DnsCheck::Pending { found } => (DnsStatus::Pending, found),
        };
        if status != domain.dns_status {
            tracing::info!(domain = %domain.hostname, app = %domain.app, dns = status.as_str(), %found, "domain DNS status changed");
        }
        self.store
            .set_dns_status(&domain.hostname, status, &found)
            .await?;
        Ok(status)
    }

    /// Orders every certificate that is due: new, failed and past its back-off, or at its
    /// renewal time. Returns how long the loop may sleep before the next one is due.
    async fn order_due(&self) -> anyhow::Result<Duration> {
        let Some(settings) = &self.acme else {
            return Ok(ORDER_EVERY);
        };
        let now = OffsetDateTime::now_utc();
        for cert in self.store.certificates().await? {
            if !self.is_due(&cert, now).await? {
                continue;
            }
            if let Err(failure) = self.order(settings, &cert).await {
                self.record_failure(&cert, &failure).await?;
            }
        }
        let now = OffsetDateTime::now_utc();
        let next = self
            .store
            .certificates()
            .await?
            .iter()
            .filter(|cert| cert.source == CertSource::Acme)
            .filter_map(|cert| cert.next_attempt_at)
            .map(|at| Duration::try_from(at - now).unwrap_or(Duration::ZERO))
            .min()
            .unwrap_or(ORDER_EVERY);
        Ok(next.clamp(MIN_ORDER_PAUSE, ORDER_EVERY))
    }

    async fn is_due(&self, cert: &Certificate, now: OffsetDateTime) -> anyhow::Result<bool> {
        if cert.source != CertSource::Acme {
            return Ok(false);
        }
        if let Some(app_id) = cert.app_id
            && !self.store.certs_auto(app_id).await?
        {
            return Ok(false);
        }
        Ok(match cert.status {
            CertStatus::Pending => cert.next_attempt_at.is_none_or(|at| at <= now),
            CertStatus::Issued | CertStatus::Failed => {
                cert.next_attempt_at.is_some_and(|at| at <= now)
            }
        })
    }

    async fn order(&self, settings: &AcmeSettings, cert: &Certificate) -> Result<(), OrderFailure> {
        let name: DomainName = cert
            .name
            .parse()
            .map_err(|e: slipway_types::DomainError| OrderFailure::from(e.to_string()))?;
        let client = self.client(settings).await?;
        tracing::info!(domain = %name, renewal = cert.pair.is_some(), "ordering a certificate");
        let solver = Solver {
            router: self.router.clone(),
            dns: self.dns.clone(),
        };
        let issued = client.issue(std::slice::from_ref(&name), &solver).await?;
        let facts = facts_of(&issued.info);
        self.store
            .save_certificate(IssuedCert {
                name: &cert.name,
                app_id: cert.app_id,
                source: CertSource::Acme,
                pair: &CertPair {
                    chain_pem: issued.chain_pem.clone(),
                    key_pem: issued.key_pem.clone(),
                },
                facts: &facts,
                renew_at: Some(renewal_due(&issued.info)),
            })
            .await
            .map_err(|e| OrderFailure::from(e.to_string()))?;
        tracing::info!(domain = %name, serial = %facts.serial, expires = %facts.not_after, "certificate issued");
        Ok(())
    }

    /// Schedules the retry after the back-off, or later when the CA asked for more (a rate
    /// limit's `Retry-After`).
    async fn record_failure(
        &self,
        cert: &Certificate,
        failure: &OrderFailure,
    ) -> anyhow::Result<()> {
        let asked = failure
            .retry_after
            .and_then(|wait| time::Duration::try_from(wait).ok())
            .unwrap_or(time::Duration::ZERO);
        let backoff = backoff(cert.failures).max(asked);
        let retry_at = OffsetDateTime::now_utc() + backoff;
        let error = &failure.message;
        tracing::warn!(domain = %cert.name, %error, retry_in = %backoff, failures = cert.failures + 1, "ordering a certificate failed");
        metrics::counter!("slipway_certificate_failures_total", "domain" => cert.name.clone())
            .increment(1);
        self.store
            .certificate_failed(&cert.name, error, retry_at)
            .await?;
        Ok(())
    }

    async fn client(&self, settings: &AcmeSettings) -> Result<Arc<AcmeClient>, AcmeError> {
        let mut client = self.client.lock().await;
        if let Some(client) = client.as_ref() {
            return Ok(client.clone());
        }
        let stored = self
            .store
            .acme_credentials(&settings.directory)
            .await
            .map_err(|e| AcmeError::Other(e.to_string()))?;
        let config = AcmeConfig {
            directory: settings.directory.clone(),
            contact_email: settings.email.clone(),
            ca_bundle: settings.ca_bundle.clone(),
        };
        let (connected, credentials) = AcmeClient::connect(&config, stored.as_deref()).await?;
        if stored.is_none() {
            self.store
                .save_acme_credentials(&settings.directory, &credentials)
                .await
                .map_err(|e| AcmeError::Other(e.to_string()))?;
            tracing::info!(directory = %settings.directory, "registered an ACME account");
        }
        let connected = Arc::new(connected);
        *client = Some(connected.clone());
        Ok(connected)
    }
}

/// Why an order failed, and how long the CA asked us to wait, if it did.
struct OrderFailure {
    message: String,
    retry_after: Option<Duration>,
}

impl From<String> for OrderFailure {
    fn from(message: String) -> Self {
        Self {
            message,
            retry_after: None,
        }
    }
}

impl From<AcmeError> for OrderFailure {
    fn from(error: AcmeError) -> Self {
        Self {
            retry_after: error.retry_after(),
            message: error.to_string(),
        }
    }
}

/// 30 s, 1 min, 2 min… up to 6 h.
fn backoff(failures: u32) -> time::Duration {
    let factor = 2_i32.saturating_pow(failures.min(16));
    (FIRST_BACKOFF * factor).min(MAX_BACKOFF)
}

fn facts_of(info: &CertInfo) -> CertFacts {
    CertFacts {
        issuer: info.issuer.clone(),
        serial: info.serial.clone(),
        not_before: info.not_before,
        not_after: info.not_after,
    }
}

/// Answers HTTP-01 through the router and DNS-01 through the built-in DNS server.
struct Solver {
    router: Arc<Router>,
    dns: Option<DnsServer>,
}

#[async_trait]
impl ChallengeSolver for Solver {
    async fn present(&self, challenge: &Challenge) -> Result<(), String> {
        match challenge {
            Challenge::Http01 {
                token,
                key_authorization,
            } => {
                self.router.set_challenge(token, key_authorization);
                Ok(())
            }
            Challenge::Dns01 { name, value } => match &self.dns {
                Some(dns) => {
                    dns.add_txt(name, value).await;
                    Ok(())
                }
                None => Err(format!(
                    "`{name}` needs a DNS-01 challenge and the built-in DNS server is off: set --dns-listen"
                )),
            },
        }
    }

    async fn clean_up(&self, challenge: &Challenge) {
        match challenge {
            Challenge::Http01 { token, .. } => self.router.remove_challenge(token),
            Challenge::Dns01 { name, value } => {
                if let Some(dns) = &self.dns {
                    dns.remove_txt(name, value).await;
                }
            }
        }
    }
}

/// The DNS loop: records, checks, routes. Runs until `shutdown`.
pub async fn run_dns(platform: Arc<Platform>, shutdown: CancellationToken) {
    let certs = &platform.certs;
    loop {
        match certs.check_domains().await {
            Ok(true) => {
                certs.wake_orders.notify_one();
                if let Err(error) = certs.sync(&platform).await {
                    tracing::warn!(%error, "syncing domains failed");
                }
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "checking domains failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(DNS_EVERY) => {}
            () = certs.wake_dns.notified() => {
                if let Err(error) = certs.sync(&platform).await {
                    tracing::warn!(%error, "syncing domains failed");
                }
            }
        }
    }
}

/// The ordering loop. Runs until `shutdown`; an order in flight is abandoned with it.
pub async fn run_orders(platform: Arc<Platform>, shutdown: CancellationToken) {
    let certs = &platform.certs;
    loop {
        let pause = tokio::select! {
            () = shutdown.cancelled() => return,
            result = certs.order_due() => match result {
                Ok(pause) => {
                    if let Err(error) = certs.serve_certificates().await {
                        tracing::warn!(%error, "serving certificates failed");
                    }
                    pause
                }
                Err(error) => {
                    tracing::warn!(%error, "ordering certificates failed");
                    ORDER_EVERY
                }
            },
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
            () = certs.wake_orders.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_thirty_seconds_up_to_six_hours() {
        assert_eq!(backoff(0), time::Duration::seconds(30));
        assert_eq!(backoff(1), time::Duration::minutes(1));
        assert_eq!(backoff(3), time::Duration::minutes(4));
        assert_eq!(backoff(20), time::Duration::hours(6));
        assert_eq!(backoff(u32::MAX), time::Duration::hours(6));
    }
}
