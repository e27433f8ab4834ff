//! `domains`, `domains:add`, `domains:remove`, `domains:wait`, and the certificate commands
//! `certs`, `certs:auto:enable`, `certs:auto:disable`, `certs:add`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use slipway_types::api::{CertStatus, DnsStatus, DomainInfo};

use crate::cli::Session;
use crate::table::{self, Table};

/// How often `domains:wait` asks the server.
const WAIT_POLL: Duration = Duration::from_secs(2);

pub(crate) async fn list(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let domains = session.client()?.list_domains(&app).await?;
    if session.global.json {
        return session.print_json(&domains);
    }
    if domains.is_empty() {
        return session.print(&format!(
            "{app} has no custom domains: add one with `slipway domains:add www.example.com`\n"
        ));
    }
    let mut rows = Table::new(&["DOMAIN", "DNS", "EXPECTED RECORD", "FOUND", "CERT"]);
    for domain in domains {
        rows.row(vec![
            domain.hostname,
            domain.dns_status.as_str().to_owned(),
            domain.dns_expected,
            table::or_dash(domain.dns_found),
            table::or_dash(domain.cert_status.map(|s| s.as_str().to_owned())),
        ]);
    }
    session.print(&rows.render())
}

pub(crate) async fn add(session: &mut Session<'_>, hostname: &str) -> anyhow::Result<()> {
    let app = session.app().await?;
    let domain = session.client()?.add_domain(&app, hostname).await?;
    if session.global.json {
        return session.print_json(&domain);
    }
    let dns = match domain.dns_status {
        DnsStatus::Verified => format!(
            "DNS already points here ({})",
            domain.dns_found.as_deref().unwrap_or("verified")
        ),
        DnsStatus::Pending => format!(
            "DNS does not point here yet (found {}): add this record at your DNS provider: {}",
            domain.dns_found.as_deref().unwrap_or("nothing"),
            domain.dns_expected
        ),
    };
    session.print(&format!(
        "Added {} to {app}\n{dns}\nCheck the status with `slipway domains`, or wait with `slipway domains:wait {}`\n",
        domain.hostname, domain.hostname
    ))
}

pub(crate) async fn remove(session: &mut Session<'_>, hostname: &str) -> anyhow::Result<()> {
    let app = session.app().await?;
    session.client()?.remove_domain(&app, hostname).await?;
    if session.global.json {
        return session.print_json(&serde_json::json!({ "removed": hostname }));
    }
    session.print(&format!("Removed {hostname} from {app}\n"))
}

/// Waits until the domain's DNS points at the platform and, when a certificate is on its
/// way, until it is issued.
pub(crate) async fn wait(
    session: &mut Session<'_>,
    hostname: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let app = session.app().await?;
    let client = session.client()?;
    let deadline = Instant::now() + timeout;
    let max_polls = timeout.as_secs() / WAIT_POLL.as_secs() + 2;
    let mut last = None;
    for _ in 0..max_polls {
        let domain = client.get_domain(&app, hostname).await?;
        if is_ready(&domain) {
            if session.global.json {
                return session.print_json(&domain);
            }
            let cert = match domain.cert_status {
                Some(CertStatus::Issued) => ", certificate issued",
                _ => "",
            };
            return session.print(&format!(
                "{} is ready: DNS verified{cert}\n",
                domain.hostname
            ));
        }
        last = Some(domain);
        if Instant::now() + WAIT_POLL > deadline {
            break;
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
    let detail = match &last {
        Some(domain) if domain.dns_status == DnsStatus::Pending => format!(
            "its DNS does not point at the platform yet (expected {}, found {})",
            domain.dns_expected,
            domain.dns_found.as_deref().unwrap_or("nothing yet")
        ),
        Some(_) => {
            let certs = client.list_certs(&app).await?;
            let error = certs
                .certs
                .iter()
                .find(|cert| cert.domain == hostname)
                .and_then(|cert| cert.last_error.clone());
            match error {
                Some(error) => format!("its certificate is not issued yet: {error}"),
                None => "its certificate is not issued yet".to_owned(),
            }
        }
        None => "no answer".to_owned(),
    };
    bail!(
        "{hostname} was not ready after {} s: {detail}",
        timeout.as_secs()
    )
}

fn is_ready(domain: &DomainInfo) -> bool {
    domain.dns_status == DnsStatus::Verified
        && matches!(domain.cert_status, None | Some(CertStatus::Issued))
}

pub(crate) async fn certs(session: &mut Session<'_>) -> anyhow::Result<()> {
    let app = session.app().await?;
    let view = session.client()?.list_certs(&app).await?;
    if session.global.json {
        return session.print_json(&view);
    }
    let mut out = format!(
        "Automatic certificates: {}\n",
        if view.auto { "on" } else { "off" }
    );
    if view.certs.is_empty() {
        out.push_str(&format!("{app} has no certificates yet\n"));
        return session.print(&out);
    }
    let mut rows = Table::new(&[
        "DOMAIN",
        "SOURCE",
        "STATUS",
        "ISSUER",
        "EXPIRES",
        "LAST ERROR",
    ]);
    for cert in view.certs {
        rows.row(vec![
            cert.domain,
            cert.source.as_str().to_owned(),
            cert.status.as_str().to_owned(),
            table::or_dash(cert.issuer),
            table::or_dash(cert.not_after.map(table::time)),
            table::or_dash(cert.last_error),
        ]);
    }
    out.push_str(&rows.render());
    session.print(&out)
}

pub(crate) async fn auto(session: &mut Session<'_>, enabled: bool) -> anyhow::Result<()> {
    let app = session.app().await?;
    let set = session.client()?.set_certs_auto(&app, enabled).await?;
    if session.global.json {
        return session.print_json(&set);
    }
    session.print(&if enabled {
        format!("Automatic certificates are on for {app}: Slipway orders one for each custom domain once its DNS points here\n")
    } else {
        format!("Automatic certificates are off for {app}: certificates already issued serve until they expire and are not renewed\n")
    })
}

pub(crate) async fn add_cert(
    session: &mut Session<'_>,
    chain: &Path,
    key: &Path,
) -> anyhow::Result<()> {
    let app = session.app().await?;
    let chain_pem = std::fs::read_to_string(chain)
        .with_context(|| format!("reading the certificate file `{}`", chain.display()))?;
    let key_pem = std::fs::read_to_string(key)
        .with_context(|| format!("reading the key file `{}`", key.display()))?;
    let added = session.client()?.add_cert(&app, chain_pem, key_pem).await?;
    if session.global.json {
        return session.print_json(&added);
    }
    let names: Vec<&str> = added.iter().map(|cert| cert.domain.as_str()).collect();
    let expires = added
        .first()
        .and_then(|cert| cert.not_after)
        .map(table::time)
        .unwrap_or_default();
    session.print(&format!(
        "Certificate added to {app} for {} (expires {expires})\n",
        names.join(", ")
    ))
}
