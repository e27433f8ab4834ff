//! Custom domains, the certificates served for them (and for the platform's wildcard), and the
//! ACME account. Private keys and the account's credentials are kept sealed.

use std::fmt;

use slipway_types::api::{CertSource, CertStatus, DnsStatus};
use slipway_types::{AppName, DomainName};
use sqlx::any::AnyRow;
use sqlx::error::ErrorKind;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Store;
use crate::apps::AppFlag;
use crate::codec::{Cols, micros, now};
use crate::error::{Result, StoreError, violation};
use crate::seal::{open_text, seal_text};

macro_rules! domain_columns {
    () => {
        "d.hostname, d.app_id, a.name AS app_name, d.dns_status, d.dns_found, d.checked_at, d.created_at"
    };
}

macro_rules! cert_columns {
    () => {
        "name, app_id, source, status, chain_pem, key_sealed, issuer, serial, not_before, \
         not_after, last_error, failures, next_attempt_at, updated_at"
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub hostname: DomainName,
    pub app_id: Uuid,
    pub app: AppName,
    pub dns_status: DnsStatus,
    pub dns_found: Option<String>,
    pub checked_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

/// A certificate's facts as read from the certificate itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub issuer: String,
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// A certificate chain with its key, opened.
#[derive(Clone, PartialEq, Eq)]
pub struct CertPair {
    pub chain_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for CertPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertPair")
            .field("chain_pem", &format_args!("{} bytes", self.chain_pem.len()))
            .field("key_pem", &format_args!("<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// A custom domain, or `*.<apps-domain>` for the platform's wildcard.
    pub name: String,
    /// `None` for the platform's wildcard.
    pub app_id: Option<Uuid>,
    pub source: CertSource,
    pub status: CertStatus,
    /// The chain and key being served, when one was ever issued or uploaded.
    pub pair: Option<CertPair>,
    pub facts: Option<CertFacts>,
    pub last_error: Option<String>,
    pub failures: u32,
    pub next_attempt_at: Option<OffsetDateTime>,
    pub updated_at: OffsetDateTime,
}

/// What a certificate row becomes after an issuance or an upload.
pub struct IssuedCert<'a> {
    pub name: &'a str,
    pub app_id: Option<Uuid>,
    pub source: CertSource,
    pub pair: &'a CertPair,
    pub facts: &'a CertFacts,
    /// When to renew; `None` for uploaded certificates, which Slipway does not renew.
    pub renew_at: Option<OffsetDateTime>,
}

impl Store {
    /// Conflict, naming the app, when any app already has the domain; NotFound when the app
    /// is gone.
    pub async fn add_domain(&self, app_id: Uuid, hostname: &DomainName) -> Result<Domain> {
        let created_at = now();
        let inserted = sqlx::query(
            "INSERT INTO domains (hostname, app_id, dns_status, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(hostname.as_str())
        .bind(app_id.to_string())
        .bind(DnsStatus::Pending.as_str())
        .bind(micros(created_at))
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => self.domain(hostname).await?.ok_or_else(|| {
                StoreError::NotFound(format!("domain `{hostname}` vanished while being added"))
            }),
            Err(err) => Err(match violation(&err) {
                Some(ErrorKind::UniqueViolation) => {
                    let owner = self.domain(hostname).await?.map(|d| d.app);
                    StoreError::Conflict(match owner {
                        Some(owner) => format!(
                            "domain `{hostname}` is already used by app `{owner}`: remove it there first"
                        ),
                        None => format!("domain `{hostname}` is already used by another app"),
                    })
                }
                Some(ErrorKind::ForeignKeyViolation) => {
                    StoreError::NotFound(format!("app `{app_id}` not found"))
                }
                _ => err.into(),
            }),
        }
    }

    pub async fn domain(&self, hostname: &DomainName) -> Result<Option<Domain>> {
        sqlx::query(concat!(
            "SELECT ",
            domain_columns!(),
            " FROM domains d JOIN apps a ON a.id = d.app_id WHERE d.hostname = $1"
        ))
        .bind(hostname.as_str())
        .fetch_optional(&self.pool)
        .await?
        .map(|row| domain_from_row(&row))
        .transpose()
    }

    /// The app's domains by name, or every app's when `app_id` is `None`.
    pub async fn domains(&self, app_id: Option<Uuid>) -> Result<Vec<Domain>> {
        sqlx::query(concat!(
            "SELECT ",
            domain_columns!(),
            " FROM domains d JOIN apps a ON a.id = d.app_id \
             WHERE $1 IS NULL OR d.app_id = $1 ORDER BY d.hostname"
        ))
        .bind(app_id.map(|id| id.hyphenated().to_string()))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(domain_from_row)
        .collect()
    }

    /// Removes the domain of that app and its certificate. NotFound when the app has no such
    /// domain.
    pub async fn remove_domain(&self, app_id: Uuid, hostname: &DomainName) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM domains WHERE hostname = $1 AND app_id = $2")
            .bind(hostname.as_str())
            .bind(app_id.to_string())
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "domain `{hostname}` is not attached to this app"
            )));
        }
        sqlx::query("DELETE FROM certificates WHERE name = $1 AND app_id = $2")
            .bind(hostname.as_str())
            .bind(app_id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a DNS check. A domain removed meanwhile is left alone.
    pub async fn set_dns_status(
        &self,
        hostname: &DomainName,
        status: DnsStatus,
        found: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE domains SET dns_status = $1, dns_found = $2, checked_at = $3 WHERE hostname = $4",
        )
        .bind(status.as_str())
        .bind(found)
        .bind(micros(now()))
        .bind(hostname.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn certificate(&self, name: &str) -> Result<Option<Certificate>> {
        sqlx::query(concat!(
            "SELECT ",
            cert_columns!(),
            " FROM certificates WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| self.cert_from_row(&row))
        .transpose()
    }

    /// Every certificate, by name.
    pub async fn certificates(&self) -> Result<Vec<Certificate>> {
        sqlx::query(concat!(
            "SELECT ",
            cert_columns!(),
            " FROM certificates ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| self.cert_from_row(row))
        .collect()
    }

    /// A certificate is wanted for `name` and none was issued yet: a `pending` row, unless
    /// one exists. True when the row is new, so the caller knows to order it now.
    pub async fn want_certificate(&self, name: &str, app_id: Option<Uuid>) -> Result<bool> {
        let wanted = sqlx::query(
            "INSERT INTO certificates (name, app_id, source, status, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(app_id.map(|id| id.hyphenated().to_string()))
        .bind(CertSource::Acme.as_str())
        .bind(CertStatus::Pending.as_str())
        .bind(micros(now()))
        .execute(&self.pool)
        .await?;
        Ok(wanted.rows_affected() == 1)
    }

    /// Stores a certificate that was just issued or uploaded, clearing any failure.
    pub async fn save_certificate(&self, cert: IssuedCert<'_>) -> Result<()> {
        let key_sealed = seal_text(self.sealer(), &key_owner(cert.name), &cert.pair.key_pem)?;
        let saved = sqlx::query(concat!(
            "INSERT INTO certificates (",
            cert_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, 0, $11, $12) \
             ON CONFLICT (name) DO UPDATE SET app_id = excluded.app_id, source = excluded.source, \
             status = excluded.status, chain_pem = excluded.chain_pem, \
             key_sealed = excluded.key_sealed, issuer = excluded.issuer, serial = excluded.serial, \
             not_before = excluded.not_before, not_after = excluded.not_after, last_error = NULL, \
             failures = 0, next_attempt_at = excluded.next_attempt_at, \
             updated_at = excluded.updated_at"
        ))
        .bind(cert.name)
        .bind(cert.app_id.map(|id| id.hyphenated().to_string()))
        .bind(cert.source.as_str())
        .bind(CertStatus::Issued.as_str())
        .bind(&cert.pair.chain_pem)
        .bind(key_sealed)
        .bind(&cert.facts.issuer)
        .bind(&cert.facts.serial)
        .bind(micros(cert.facts.not_before))
        .bind(micros(cert.facts.not_after))
        .bind(cert.renew_at.map(micros))
        .bind(micros(now()))
        .execute(&self.pool)
        .await;
        match saved {
            Ok(_) => Ok(()),
            Err(err) if violation(&err) == Some(ErrorKind::ForeignKeyViolation) => Err(
                StoreError::NotFound(format!("the app of certificate `{}` is gone", cert.name)),
            ),
            Err(err) => Err(err.into()),
        }
    }

    /// Records a failed order: the chain issued before (if any) keeps being served. A row
    /// removed meanwhile (its domain was removed) is left gone.
    pub async fn certificate_failed(
        &self,
        name: &str,
        error: &str,
        retry_at: OffsetDateTime,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE certificates SET status = $1, last_error = $2, failures = failures + 1, \
             next_attempt_at = $3, updated_at = $4 WHERE name = $5",
        )
        .bind(CertStatus::Failed.as_str())
        .bind(error)
        .bind(micros(retry_at))
        .bind(micros(now()))
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether Slipway orders certificates for the app's custom domains. NotFound when the
    /// app is gone.
    pub async fn certs_auto(&self, app_id: Uuid) -> Result<bool> {
        self.app_flag(app_id, AppFlag::CertsAuto).await
    }

    pub async fn set_certs_auto(&self, app_id: Uuid, enabled: bool) -> Result<()> {
        self.set_app_flag(app_id, AppFlag::CertsAuto, enabled).await
    }

    /// The ACME account registered with `directory`, opened.
    pub async fn acme_credentials(&self, directory: &str) -> Result<Option<String>> {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT credentials FROM acme_accounts WHERE directory = $1")
                .bind(directory)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(sealed,)| open_text(self.sealer(), &account_owner(directory), &sealed))
            .transpose()
    }

    pub async fn save_acme_credentials(&self, directory: &str, credentials: &str) -> Result<()> {
        let sealed = seal_text(self.sealer(), &account_owner(directory), credentials)?;
        sqlx::query(
            "INSERT INTO acme_accounts (directory, credentials, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (directory) DO UPDATE SET credentials = excluded.credentials",
        )
        .bind(directory)
        .bind(sealed)
        .bind(micros(now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn cert_from_row(&self, row: &AnyRow) -> Result<Certificate> {
        let cols = Cols::new("certificates", row);
        let name = cols.text("name")?;
        let pair = match (cols.opt_text("chain_pem")?, cols.opt_text("key_sealed")?) {
            (Some(chain_pem), Some(sealed)) => Some(CertPair {
                chain_pem,
                key_pem: open_text(self.sealer(), &key_owner(&name), &sealed)?,
            }),
            _ => None,
        };
        let facts = match (
            cols.opt_text("issuer")?,
            cols.opt_text("serial")?,
            cols.opt_time("not_before")?,
            cols.opt_time("not_after")?,
        ) {
            (Some(issuer), Some(serial), Some(not_before), Some(not_after)) => Some(CertFacts {
                issuer,
                serial,
                not_before,
                not_after,
            }),
            _ => None,
        };
        Ok(Certificate {
            app_id: cols.opt_parse("app_id", |s| Uuid::parse_str(s).ok())?,
            source: cols.parse("source", CertSource::parse)?,
            status: cols.parse("status", CertStatus::parse)?,
            pair,
            facts,
            last_error: cols.opt_text("last_error")?,
            failures: cols.parse_int("failures", |n| u32::try_from(n).ok())?,
            next_attempt_at: cols.opt_time("next_attempt_at")?,
            updated_at: cols.time("updated_at")?,
            name,
        })
    }
}

fn key_owner(name: &str) -> String {
    format!("certificate key {name}")
}

fn account_owner(directory: &str) -> String {
    format!("acme account {directory}")
}

fn domain_from_row(row: &AnyRow) -> Result<Domain> {
    let cols = Cols::new("domains", row);
    Ok(Domain {
        hostname: cols.parse("hostname", |s| s.parse().ok())?,
        app_id: cols.uuid("app_id")?,
        app: cols.parse("app_name", |s| s.parse().ok())?,
        dns_status: cols.parse("dns_status", DnsStatus::parse)?,
        dns_found: cols.opt_text("dns_found")?,
        checked_at: cols.opt_time("checked_at")?,
        created_at: cols.time("created_at")?,
    })
}
