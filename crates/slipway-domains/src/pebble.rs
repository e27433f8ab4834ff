//! A launcher for Let's Encrypt's Pebble test CA (the Debian `pebble` 2.4 binary), for this
//! crate's tests and the end-to-end tests. Each [`Pebble`] gets free ports on 127.0.0.1, its own
//! listener certificate and a temp dir, so tests run in parallel.
//!
//! Environment given to Pebble, so runs are fast and deterministic while validation stays real:
//! `PEBBLE_VA_NOSLEEP=1` (no random validation delays), `PEBBLE_WFE_NONCEREJECT=0` (no
//! artificial bad-nonce errors), `PEBBLE_AUTHZREUSE=0` (every order validates afresh), and
//! `PEBBLE_VA_ALWAYS_VALID` removed. Certificate lifetime is the config key
//! `certificateValidityPeriod` (seconds; Pebble's default is about five years).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use instant_acme::{BodyWrapper, HttpClient};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::acme::{HttpsClient, https_client};

const PEBBLE: &str = "/usr/bin/pebble";
const READY_DEADLINE: Duration = Duration::from_secs(20);
const READY_ATTEMPTS: u32 = 200;
const READY_DELAY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct PebbleOptions {
    /// The port Pebble's validator connects to for HTTP-01 (`httpPort`): the router's HTTP port,
    /// or a test's own responder.
    pub http_port: u16,
    /// The DNS server Pebble resolves names and DNS-01 TXT records through (`-dnsserver`).
    pub dns_server: SocketAddr,
    /// Lifetime of issued certificates (whole seconds); `None` keeps Pebble's default.
    pub cert_validity: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum PebbleError {
    #[error("pebble is not installed at {PEBBLE} (apt-get install pebble)")]
    NotInstalled,
    #[error("could not prepare pebble's files in {path}: {reason}")]
    Files { path: PathBuf, reason: String },
    #[error("could not start {PEBBLE}: {0}")]
    Spawn(std::io::Error),
    #[error("pebble exited before serving its directory ({status}); its log:\n{log}")]
    Exited { status: String, log: String },
    #[error("pebble's directory {url} did not answer within {}s; its log:\n{log}", READY_DEADLINE.as_secs())]
    NotReady { url: String, log: String },
    #[error("pebble's management api {url} failed: {reason}")]
    Management { url: String, reason: String },
}

/// A running Pebble. Dropping it kills the process and removes its files.
#[derive(Debug)]
pub struct Pebble {
    _child: Child,
    dir: TempDir,
    listen: SocketAddr,
    management: SocketAddr,
    listener_ca: PathBuf,
    client: HttpsClient,
}

impl Pebble {
    /// Starts Pebble on free 127.0.0.1 ports with its own listener certificate and waits (count
    /// and deadline bounded) until its directory answers over HTTPS.
    pub async fn start(options: PebbleOptions) -> Result<Pebble, PebbleError> {
        if !Path::new(PEBBLE).is_file() {
            return Err(PebbleError::NotInstalled);
        }
        let dir = tempfile::tempdir().map_err(|err| PebbleError::Files {
            path: std::env::temp_dir(),
            reason: err.to_string(),
        })?;
        let files_error = |reason: String| PebbleError::Files {
            path: dir.path().to_owned(),
            reason,
        };
        let (listen, management, tls) = (free_port()?, free_port()?, free_port()?);

        let listener = listener_certificate().map_err(|err| files_error(err.to_string()))?;
        let listener_ca = dir.path().join("listener-ca.pem");
        let cert = dir.path().join("listener.pem");
        let key = dir.path().join("listener-key.pem");
        let config_path = dir.path().join("pebble-config.json");
        let mut pebble = serde_json::json!({
            "listenAddress": listen.to_string(),
            "managementListenAddress": management.to_string(),
            "certificate": cert,
            "privateKey": key,
            "httpPort": options.http_port,
            "tlsPort": tls.port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        });
        if let Some(validity) = options.cert_validity {
            pebble["certificateValidityPeriod"] = validity.as_secs().into();
        }
        let config = serde_json::json!({ "pebble": pebble }).to_string();
        for (path, contents) in [
            (&listener_ca, &listener.ca_pem),
            (&cert, &listener.cert_pem),
            (&key, &listener.key_pem),
            (&config_path, &config),
        ] {
            std::fs::write(path, contents).map_err(|err| files_error(err.to_string()))?;
        }
        let log_path = dir.path().join("pebble.log");
        let log = std::fs::File::create(&log_path).map_err(|err| files_error(err.to_string()))?;
        let log_err = log
            .try_clone()
            .map_err(|err| files_error(err.to_string()))?;

        let mut child = Command::new(PEBBLE)
            .arg("-config")
            .arg(&config_path)
            .arg("-dnsserver")
            .arg(options.dns_server.to_string())
            .current_dir(dir.path())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .env_remove("PEBBLE_VA_ALWAYS_VALID")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true)
            .spawn()
            .map_err(PebbleError::Spawn)?;

        let client =
            https_client(Some(&listener_ca)).map_err(|err| files_error(err.to_string()))?;
        let url = format!("https://{listen}/dir");
        let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let started = Instant::now();
        for _ in 0..READY_ATTEMPTS {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(PebbleError::Exited {
                    status: status.to_string(),
                    log: read_log(),
                });
            }
            if get(&client, &url).await.is_ok() {
                tracing::debug!(%url, "pebble is up");
                return Ok(Pebble {
                    _child: child,
                    dir,
                    listen,
                    management,
                    listener_ca,
                    client,
                });
            }
            if started.elapsed() > READY_DEADLINE {
                break;
            }
            tokio::time::sleep(READY_DELAY).await;
        }
        Err(PebbleError::NotReady {
            url,
            log: read_log(),
        })
    }

    pub fn directory_url(&self) -> String {
        format!("https://{}/dir", self.listen)
    }

    /// PEM of the CA that signed Pebble's HTTPS listener: pass it as `AcmeConfig.ca_bundle` /
    /// `--acme-ca-bundle`.
    pub fn listener_ca_path(&self) -> &Path {
        &self.listener_ca
    }

    /// Pebble's log so far (stdout and stderr), for failing tests to print.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// The root Pebble issues under (regenerated at every start), from its management API, to
    /// verify issued chains against.
    pub async fn issuing_root_pem(&self) -> Result<String, PebbleError> {
        let url = format!("https://{}/roots/0", self.management);
        get(&self.client, &url)
            .await
            .map_err(|reason| PebbleError::Management { url, reason })
    }
}

async fn get(client: &HttpsClient, url: &str) -> Result<String, String> {
    let request = http::Request::get(url)
        .body(BodyWrapper::default())
        .map_err(|err| err.to_string())?;
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        HttpClient::request(client, request),
    )
    .await
    .map_err(|_| "no answer within 10s".to_owned())?
    .map_err(|err| err.to_string())?;
    let status = response.parts.status;
    let mut body = response.body;
    let body = body.into_bytes().await.map_err(|err| err.to_string())?;
    if !status.is_success() {
        return Err(format!("status {status}"));
    }
    String::from_utf8(body.to_vec()).map_err(|err| err.to_string())
}

/// A port that was free a moment ago; Pebble binds it right after.
fn free_port() -> Result<SocketAddr, PebbleError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map_err(|err| PebbleError::Files {
            path: PathBuf::from("127.0.0.1:0"),
            reason: format!("no free port: {err}"),
        })
}

struct ListenerCertificate {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

/// Debian ships no test certificate for Pebble's listener: make a CA and a leaf for
/// `localhost` and `127.0.0.1`, so the ACME client trusts a real CA rather than a leaf.
fn listener_certificate() -> Result<ListenerCertificate, rcgen::Error> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Slipway test Pebble listener CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(ListenerCertificate {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
