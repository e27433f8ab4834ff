//! Certificate issuance over ACME (RFC 8555) with instant-acme, the client maintained by the
//! rustls maintainers (acme2 is unmaintained). One account per server; HTTP-01 for plain names
//! and DNS-01 for wildcards. Who answers a challenge is the caller's business
//! ([`ChallengeSolver`]): the server wires the router's HTTP-01 responder and the built-in DNS
//! server. Storing certificates, renewal scheduling and back-off live in the server too.
//!
//! Every request has a timeout and every wait on the CA is bounded by a count and a deadline, so
//! a stuck CA turns into [`AcmeError::TimedOut`] instead of a renewal task that never returns.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{HeaderMap, Request, StatusCode};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, Order, OrderStatus, Problem,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use slipway_types::{DomainName, ServedCert};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;
use tokio::time::Instant;

use crate::certs::{self, CertError, CertInfo};

/// How long one HTTP exchange with the CA (headers and body) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Bounds on waiting for the CA to validate challenges and then to issue the certificate.
const POLL_DEADLINE: Duration = Duration::from_secs(180);
const POLL_ATTEMPTS: u32 = 60;
const POLL_FIRST_DELAY: Duration = Duration::from_millis(250);
const POLL_MAX_DELAY: Duration = Duration::from_secs(5);

const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";

/// Where to find the CA and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The ACME directory URL (`--acme-directory`), e.g. Let's Encrypt's or a Pebble's.
    pub directory: String,
    /// Registered as `mailto:` contact so the CA can warn about expiry or policy changes.
    pub contact_email: Option<String>,
    /// PEM root(s) trusted in addition to the system's (`--acme-ca-bundle`), for test CAs such
    /// as Pebble whose listener certificate no public root signs.
    pub ca_bundle: Option<PathBuf>,
}

/// An ACME account on one CA, ready to order certificates. Cheap to share behind an `Arc`.
pub struct AcmeClient {
    account: Account,
}

impl fmt::Debug for AcmeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeClient")
            .field("account", &self.account.id())
            .finish()
    }
}

/// One pending challenge, in the form the party answering it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Serve `key_authorization` as the body of
    /// `http://<domain>/.well-known/acme-challenge/<token>`.
    Http01 {
        token: String,
        key_authorization: String,
    },
    /// Publish a TXT record `value` at `name` (`_acme-challenge.<domain>`, no trailing dot).
    Dns01 { name: String, value: String },
}

/// Answers challenges on behalf of [`AcmeClient::issue`].
#[async_trait]
pub trait ChallengeSolver: Send + Sync {
    /// Makes the challenge answerable; the CA is told to validate only after this returns `Ok`.
    async fn present(&self, challenge: &Challenge) -> Result<(), String>;
    /// Withdraws the answer. Called for every challenge passed to `present`, whatever the
    /// outcome (also when `present` itself failed), so it must tolerate unknown challenges.
    async fn clean_up(&self, challenge: &Challenge);
}

/// A freshly issued certificate with its own new private key.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// PEM: the leaf first, then the intermediates.
    pub chain_pem: String,
    /// PEM (PKCS#8), generated for this certificate only.
    pub key_pem: String,
    pub info: CertInfo,
}

/// Keeps the private key out of logs and panic messages.
impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("chain_pem", &format_args!("{} bytes", self.chain_pem.len()))
            .field("key_pem", &format_args!("<redacted>"))
            .field("info", &self.info)
            .finish()
    }
}

/// Serve the certificate for exactly the names it was issued for.
impl From<IssuedCert> for ServedCert {
    fn from(cert: IssuedCert) -> Self {
        ServedCert {
            hosts: cert
                .info
                .names
                .iter()
                .filter_map(|name| name.parse().ok())
                .collect(),
            chain_pem: cert.chain_pem,
            key_pem: cert.key_pem,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error(
        "acme directory `{url}` is unreachable: {reason} (check --acme-directory and, for a test CA, --acme-ca-bundle)"
    )]
    DirectoryUnreachable { url: String, reason: String },
    #[error("acme ca bundle `{path}` is unusable: {reason} (check --acme-ca-bundle)")]
    CaBundle { path: PathBuf, reason: String },
    #[error("stored acme account credentials are unreadable: {0}")]
    Credentials(String),
    #[error("the acme ca rate limited this request: {detail}{}", retry_hint(*.retry_after))]
    RateLimited {
        detail: String,
        retry_after: Option<Duration>,
    },
    #[error("validation of `{domain}` failed: {detail}")]
    ValidationFailed { domain: String, detail: String },
    #[error("could not present the {kind} challenge for `{domain}`: {reason}")]
    PresentFailed {
        domain: String,
        kind: &'static str,
        reason: String,
    },
    #[error("the acme ca offered no {kind} challenge for `{domain}`")]
    NoChallenge { domain: String, kind: &'static str },
    #[error("timed out after {}s waiting for {what}", waited.as_secs())]
    TimedOut { what: String, waited: Duration },
    #[error("a certificate order needs at least one domain")]
    NoDomains,
    #[error("the acme ca returned an unusable certificate: {0}")]
    Certificate(#[from] CertError),
    #[error("acme request failed: {0}")]
    Other(String),
}

fn retry_hint(retry_after: Option<Duration>) -> String {
    retry_after.map_or_else(String::new, |wait| {
        format!(" (retry in {}s)", wait.as_secs())
    })
}

impl AcmeError {
    /// How long the CA asked us to wait before trying again, when it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl AcmeClient {
    /// Loads the account from `credentials` (JSON from an earlier call) or registers a new one;
    /// returns the credentials JSON to persist (the caller seals it: it holds the account key).
    /// Credentials made for another directory are replaced by a new registration, so switching
    /// `--acme-directory` (staging to production) just works.
    pub async fn connect(
        config: &AcmeConfig,
        credentials: Option<&str>,
    ) -> Result<(AcmeClient, String), AcmeError> {
        let http = AcmeHttp(https_client(config.ca_bundle.as_deref())?);
        let unreachable = |err| directory_error(&config.directory, err);
        if let Some(json) = credentials {
            let stored = parse_credentials(json)?;
            if stored.directory == config.directory {
                let account = Account::builder_with_http(Box::new(http))
                    .from_credentials(stored.credentials)
                    .await
                    .map_err(unreachable)?;
                return Ok((AcmeClient { account }, json.to_owned()));
            }
            tracing::info!(
                old = %stored.directory,
                new = %config.directory,
                "acme directory changed, registering a new account"
            );
        }
        let contact = config
            .contact_email
            .as_ref()
            .map(|email| format!("mailto:{email}"));
        let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
        let new_account = NewAccount {
            contact: &contacts,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let (account, credentials) = Account::builder_with_http(Box::new(http))
            .create(&new_account, config.directory.clone(), None)
            .await
            .map_err(unreachable)?;
        let json = serde_json::to_string(&credentials)
            .map_err(|err| AcmeError::Other(format!("could not serialise the account: {err}")))?;
        tracing::info!(account = %account.id(), directory = %config.directory, "registered acme account");
        Ok((AcmeClient { account }, json))
    }

    /// The account URL at the CA; stable across [`AcmeClient::connect`] with saved credentials.
    pub fn account_id(&self) -> &str {
        self.account.id()
    }

    /// Orders one certificate for `names`: HTTP-01 for plain names, DNS-01 for wildcards
    /// (`*.apps.test` validates at `_acme-challenge.apps.test`). A fresh key per certificate.
    /// Every poll is bounded (count + deadline). Challenges are cleaned up on every path that
    /// returns (a dropped future cannot run async clean-up).
    pub async fn issue(
        &self,
        names: &[DomainName],
        solver: &dyn ChallengeSolver,
    ) -> Result<IssuedCert, AcmeError> {
        if names.is_empty() {
            return Err(AcmeError::NoDomains);
        }
        let listed = names
            .iter()
            .map(DomainName::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let identifiers: Vec<Identifier> = names
            .iter()
            .map(|name| Identifier::Dns(name.as_str().to_owned()))
            .collect();
        let mut order = self
            .account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(from_acme)?;

        let mut presented = Vec::new();
        let validated = validate(&mut order, solver, &mut presented, &listed).await;
        for challenge in &presented {
            solver.clean_up(challenge).await;
        }
        validated?;

        let key_pem = order.finalize().await.map_err(from_acme)?;
        let mut poll = Poll::new(format!("the certificate for {listed}"));
        let chain_pem = loop {
            match order.certificate().await.map_err(from_acme)? {
                Some(chain) => break chain,
                None => poll.wait().await?,
            }
        };
        let info = certs::inspect(&chain_pem)?;
        tracing::info!(names = %listed, serial = %info.serial, not_after = %info.not_after, "certificate issued");
        Ok(IssuedCert {
            chain_pem,
            key_pem,
            info,
        })
    }
}

/// Presents a challenge for every pending authorization, then waits until the CA has decided.
async fn validate(
    order: &mut Order,
    solver: &dyn ChallengeSolver,
    presented: &mut Vec<Challenge>,
    listed: &str,
) -> Result<(), AcmeError> {
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(from_acme)?;
        let identifier = authorization.identifier();
        let domain = identifier.to_string();
        let wildcard = identifier.wildcard;
        let Identifier::Dns(base) = identifier.identifier.clone() else {
            return Err(AcmeError::Other(format!(
                "the acme ca returned a non-DNS identifier `{domain}`"
            )));
        };
        match authorization.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            status => {
                return Err(AcmeError::Other(format!(
                    "the authorization for `{domain}` is {status:?}"
                )));
            }
        }
        let (kind, name) = if wildcard {
            (ChallengeType::Dns01, "dns-01")
        } else {
            (ChallengeType::Http01, "http-01")
        };
        let Some(mut handle) = authorization.challenge(kind) else {
            return Err(AcmeError::NoChallenge { domain, kind: name });
        };
        let key_authorization = handle.key_authorization();
        let challenge = if wildcard {
            Challenge::Dns01 {
                name: format!("_acme-challenge.{base}"),
                value: key_authorization.dns_value(),
            }
        } else {
            Challenge::Http01 {
                token: handle.token.clone(),
                key_authorization: key_authorization.as_str().to_owned(),
            }
        };
        presented.push(challenge.clone());
        solver
            .present(&challenge)
            .await
            .map_err(|reason| AcmeError::PresentFailed {
                domain: domain.clone(),
                kind: name,
                reason,
            })?;
        handle.set_ready().await.map_err(|err| match err {
            instant_acme::Error::Api(problem)
                if problem.r#type.as_deref() != Some(RATE_LIMITED) =>
            {
                AcmeError::ValidationFailed {
                    domain,
                    detail: problem_detail(&problem),
                }
            }
            other => from_acme(other),
        })?;
    }

    let mut poll = Poll::new(format!("validation of {listed}"));
    loop {
        poll.wait().await?;
        let state = order.refresh().await.map_err(from_acme)?;
        match state.status {
            OrderStatus::Ready | OrderStatus::Valid | OrderStatus::Processing => return Ok(()),
            OrderStatus::Pending => {}
            OrderStatus::Invalid => return Err(validation_failure(order, listed).await),
        }
    }
}

/// Names the authorization that failed and passes on the CA's explanation.
async fn validation_failure(order: &mut Order, listed: &str) -> AcmeError {
    let order_error = order.state().error.as_ref().map(problem_detail);
    let mut authorizations = order.authorizations();
    while let Some(Ok(authorization)) = authorizations.next().await {
        if authorization.status == AuthorizationStatus::Invalid {
            let detail = authorization
                .challenges
                .iter()
                .find_map(|challenge| challenge.error.as_ref())
                .map(problem_detail)
                .or_else(|| order_error.clone())
                .unwrap_or_else(|| "the acme ca gave no detail".to_owned());
            return AcmeError::ValidationFailed {
                domain: authorization.identifier().to_string(),
                detail,
            };
        }
    }
    AcmeError::ValidationFailed {
        domain: listed.to_owned(),
        detail: order_error.unwrap_or_else(|| "the acme ca marked the order invalid".to_owned()),
    }
}

fn problem_detail(problem: &Problem) -> String {
    match (&problem.detail, &problem.r#type) {
        (Some(detail), _) => detail.clone(),
        (None, Some(kind)) => kind.clone(),
        (None, None) => "the acme ca gave no detail".to_owned(),
    }
}

/// A bounded wait: at most [`POLL_ATTEMPTS`] sleeps, growing from [`POLL_FIRST_DELAY`] to
/// [`POLL_MAX_DELAY`], never past [`POLL_DEADLINE`].
struct Poll {
    what: String,
    started: Instant,
    attempts: u32,
    delay: Duration,
}

impl Poll {
    fn new(what: String) -> Self {
        Self {
            what,
            started: Instant::now(),
            attempts: 0,
            delay: POLL_FIRST_DELAY,
        }
    }

    async fn wait(&mut self) -> Result<(), AcmeError> {
        let waited = self.started.elapsed();
        if self.attempts >= POLL_ATTEMPTS || waited + self.delay > POLL_DEADLINE {
            return Err(AcmeError::TimedOut {
                what: self.what.clone(),
                waited,
            });
        }
        self.attempts += 1;
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 3 / 2).min(POLL_MAX_DELAY);
        Ok(())
    }
}

struct StoredCredentials {
    directory: String,
    credentials: AccountCredentials,
}

/// Parse errors only report a position: the JSON holds the account's private key.
fn parse_credentials(json: &str) -> Result<StoredCredentials, AcmeError> {
    let unreadable = |err: serde_json::Error| {
        AcmeError::Credentials(format!(
            "not account credentials JSON (line {}, column {})",
            err.line(),
            err.column()
        ))
    };
    let value: serde_json::Value = serde_json::from_str(json).map_err(unreadable)?;
    let directory = value
        .get("directory")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| AcmeError::Credentials("no directory URL in the credentials".to_owned()))?
        .to_owned();
    let credentials = serde_json::from_value(value).map_err(unreadable)?;
    Ok(StoredCredentials {
        directory,
        credentials,
    })
}

fn directory_error(url: &str, err: instant_acme::Error) -> AcmeError {
    match from_acme(err) {
        AcmeError::Other(reason) => AcmeError::DirectoryUnreachable {
            url: url.to_owned(),
            reason,
        },
        other => other,
    }
}

fn from_acme(err: instant_acme::Error) -> AcmeError {
    match err {
        instant_acme::Error::Other(inner) => match inner.downcast::<RateLimited>() {
            Ok(limited) => AcmeError::RateLimited {
                detail: limited.detail,
                retry_after: limited.retry_after,
            },
            Err(inner) => AcmeError::Other(error_chain(inner.as_ref())),
        },
        instant_acme::Error::Api(problem) if problem.r#type.as_deref() == Some(RATE_LIMITED) => {
            AcmeError::RateLimited {
                detail: problem_detail(&problem),
                retry_after: None,
            }
        }
        instant_acme::Error::Api(problem) => AcmeError::Other(problem_detail(&problem)),
        other => AcmeError::Other(error_chain(&other)),
    }
}

/// hyper's errors say "client error (Connect)" and keep the useful part in their sources.
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// A 429 from the CA, caught before instant-acme drops the `Retry-After` header.
#[derive(Debug)]
struct RateLimited {
    detail: String,
    retry_after: Option<Duration>,
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl StdError for RateLimited {}

#[derive(Debug, thiserror::Error)]
#[error("no response within {}s", REQUEST_TIMEOUT.as_secs())]
struct RequestTimedOut;

pub(crate) type HttpsClient = Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>;

/// An HTTPS client trusting the system roots plus `ca_bundle`, with aws-lc-rs chosen explicitly
/// (rustls refuses to guess when several crypto providers are linked in).
pub(crate) fn https_client(ca_bundle: Option<&Path>) -> Result<HttpsClient, AcmeError> {
    let extra_roots = match ca_bundle {
        Some(path) => read_ca_bundle(path)?,
        None => Vec::new(),
    };
    let bundle_error = |reason: String| AcmeError::CaBundle {
        path: ca_bundle.map(Path::to_path_buf).unwrap_or_default(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider.clone())
            .map_err(|err| bundle_error(err.to_string()))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| AcmeError::Other(format!("tls set-up failed: {err}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

fn read_ca_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, AcmeError> {
    let error = |reason: String| AcmeError::CaBundle {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|err| error(err.to_string()))?;
    let roots = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| error(err.to_string()))?;
    if roots.is_empty() {
        return Err(error("it has no PEM certificate".to_owned()));
    }
    Ok(roots)
}

/// instant-acme's transport: bounds every exchange by [`REQUEST_TIMEOUT`] and turns a 429 into
/// [`RateLimited`] with the `Retry-After` the CA sent.
struct AcmeHttp(HttpsClient);

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.0.request(req);
        Box::pin(async move {
            let exchange = async {
                let response = response
                    .await
                    .map_err(|err| instant_acme::Error::Other(Box::new(err)))?;
                let mut response = BytesResponse::from(response);
                let body = response
                    .body
                    .into_bytes()
                    .await
                    .map_err(instant_acme::Error::Other)?;
                Ok::<_, instant_acme::Error>((response.parts, body))
            };
            let (parts, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
                .await
                .map_err(|_| instant_acme::Error::Other(Box::new(RequestTimedOut)))??;
            if parts.status == StatusCode::TOO_MANY_REQUESTS {
                let detail = serde_json::from_slice::<Problem>(&body)
                    .map(|problem| problem_detail(&problem))
                    .unwrap_or_else(|_| "too many requests".to_owned());
                return Err(instant_acme::Error::Other(Box::new(RateLimited {
                    detail,
                    retry_after: retry_after(&parts.headers, OffsetDateTime::now_utc()),
                })));
            }
            Ok(BytesResponse {
                parts,
                body: Box::new(body),
            })
        })
    }
}

/// `Retry-After` is either delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
fn retry_after(headers: &HeaderMap, now: OffsetDateTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = OffsetDateTime::parse(value, &Rfc2822).ok()?;
    Some((at - now).try_into().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = OffsetDateTime::from_unix_timestamp(1_795_176_000).unwrap(); // Fri, 20 Nov 2026 12:00 UTC
        assert_eq!(
            retry_after(&headers("120"), now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(&headers("Fri, 20 Nov 2026 12:30:00 GMT"), now),
            Some(Duration::from_secs(1800))
        );
        assert_eq!(
            retry_after(&headers("Fri, 20 Nov 2026 11:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn rate_limits_carry_retry_after_into_the_message() {
        let err = AcmeError::RateLimited {
            detail: "too many certificates".into(),
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
        assert_eq!(
            err.to_string(),
            "the acme ca rate limited this request: too many certificates (retry in 3600s)"
        );
        let limited = instant_acme::Error::Other(Box::new(RateLimited {
            detail: "slow down".into(),
            retry_after: Some(Duration::from_secs(5)),
        }));
        assert_eq!(
            from_acme(limited).retry_after(),
            Some(Duration::from_secs(5))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn polling_gives_up_after_its_deadline() {
        let mut poll = Poll::new("validation of www.example.test".into());
        let mut waits = 0;
        let err = loop {
            match poll.wait().await {
                Ok(()) => waits += 1,
                Err(err) => break err,
            }
        };
        assert!(waits <= POLL_ATTEMPTS);
        assert!(poll.started.elapsed() <= POLL_DEADLINE);
        assert!(
            matches!(&err, AcmeError::TimedOut { what, .. } if what == "validation of www.example.test"),
            "{err}"
        );
        assert!(err.to_string().starts_with("timed out after "), "{err}");
    }

    #[test]
    fn credentials_errors_do_not_quote_the_json() {
        let secret = r#"{"id":"x","key_pkcs8":"SECRETKEYMATERIAL","directory":"#;
        let err = parse_credentials(secret).err().unwrap();
        assert!(!err.to_string().contains("SECRET"), "{err}");
        let err = parse_credentials(r#"{"id":"x","key_pkcs8":"SECRETKEYMATERIAL"}"#)
            .err()
            .unwrap();
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }

    #[test]
    fn issued_certificates_never_show_their_key() {
        let (chain_pem, key_pem) = certs::self_signed(&["www.example.test".to_owned()]).unwrap();
        let info = certs::inspect(&chain_pem).unwrap();
        let issued = IssuedCert {
            chain_pem,
            key_pem: key_pem.clone(),
            info,
        };
        let shown = format!("{issued:?}");
        assert!(!shown.contains(&key_pem[40..80]), "{shown}");
        let served = ServedCert::from(issued);
        assert_eq!(served.hosts, vec!["www.example.test".parse().unwrap()]);
    }
}
