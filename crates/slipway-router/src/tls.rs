//! Certificates by server name: the set the control plane last handed over, parsed once into
//! rustls keys and swapped atomically, plus a self-signed fallback so a client that names an
//! unknown host (or none) still completes the handshake and gets the router's 404 page.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use slipway_types::{CertSnapshot, DomainName, ServedCert};

/// The name in the fallback certificate. `.invalid` is reserved (RFC 2606), so no client can
/// mistake it for a real site.
const DEFAULT_CERT_NAME: &str = "slipway.invalid";

/// A certificate from a [`CertSnapshot`] that the router could not load. The other certificates
/// of the snapshot still load; clients asking for these hosts get the default certificate.
#[derive(Debug, thiserror::Error)]
#[error("certificate for {} not loaded: {problem}", HostList(.hosts))]
pub struct CertLoadError {
    pub hosts: Vec<DomainName>,
    pub problem: CertProblem,
}

/// What was wrong with a certificate. None of these carries key material.
#[derive(Debug, thiserror::Error)]
pub enum CertProblem {
    #[error("it names no host")]
    NoHosts,
    #[error("the chain PEM holds no certificate")]
    NoCertificate,
    #[error("the chain PEM is malformed")]
    MalformedChain(#[source] pem::Error),
    /// The PEM parser's message is left out on purpose: it can quote the key's own lines.
    #[error("the key PEM holds no readable private key")]
    UnreadableKey,
    #[error("the key or certificate was rejected")]
    Rejected(#[source] rustls::Error),
}

/// `a.example.com, *.example.com` for error messages.
struct HostList<'a>(&'a [DomainName]);

impl fmt::Display for HostList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, host) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{host}`")?;
        }
        Ok(())
    }
}

/// The loaded certificates, keyed by exact name and by the parent of a wildcard
/// (`*.example.com` is stored under `example.com`).
#[derive(Default)]
pub(crate) struct CertTable {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl CertTable {
    /// Loads every certificate it can; a host named by two certificates gets the later one.
    fn build(
        snapshot: &CertSnapshot,
        provider: &CryptoProvider,
    ) -> (CertTable, Vec<CertLoadError>) {
        let mut table = CertTable::default();
        let mut errors = Vec::new();
        for served in &snapshot.certs {
            let key = match load(served, provider) {
                Ok(key) => Arc::new(key),
                Err(problem) => {
                    errors.push(CertLoadError {
                        hosts: served.hosts.clone(),
                        problem,
                    });
                    continue;
                }
            };
            for host in &served.hosts {
                let (map, name) = match host.as_str().strip_prefix("*.") {
                    Some(parent) => (&mut table.wildcard, parent),
                    None => (&mut table.exact, host.as_str()),
                };
                map.insert(name.to_owned(), Arc::clone(&key));
            }
        }
        (table, errors)
    }

    /// The certificate for `host` (lowercase, no port, no trailing dot): an exact name first,
    /// then a wildcard one label up, as TLS clients match names (RFC 6125 §6.4.3).
    pub(crate) fn find(&self, host: &str) -> Option<&Arc<CertifiedKey>> {
        self.exact.get(host).or_else(|| {
            let (first, parent) = host.split_once('.')?;
            if first.is_empty() {
                return None;
            }
            self.wildcard.get(parent)
        })
    }

    fn len(&self) -> usize {
        self.exact.len() + self.wildcard.len()
    }
}

fn load(served: &ServedCert, provider: &CryptoProvider) -> Result<CertifiedKey, CertProblem> {
    if served.hosts.is_empty() {
        return Err(CertProblem::NoHosts);
    }
    let chain = CertificateDer::pem_slice_iter(served.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(CertProblem::MalformedChain)?;
    if chain.is_empty() {
        return Err(CertProblem::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(served.key_pem.as_bytes())
        .map_err(|_| CertProblem::UnreadableKey)?;
    CertifiedKey::from_der(chain, key, provider).map_err(CertProblem::Rejected)
}

/// Picks the certificate for each handshake from the table current at that moment.
pub(crate) struct SniResolver {
    pub(crate) table: ArcSwap<CertTable>,
    default: Arc<CertifiedKey>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("certificates", &self.table.load().len())
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.load();
        let found = hello.server_name().and_then(|name| {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            table.find(&name).cloned()
        });
        Some(found.unwrap_or_else(|| Arc::clone(&self.default)))
    }
}

/// The router's TLS side: the resolver it updates and the server configuration built on it.
pub(crate) struct Tls {
    pub(crate) resolver: Arc<SniResolver>,
    pub(crate) config: Arc<ServerConfig>,
    provider: Arc<CryptoProvider>,
}

impl Tls {
    /// aws-lc-rs is named explicitly rather than taken from the process default, which is
    /// ambiguous (and panics) when another crate in the binary enables a second provider.
    pub(crate) fn new() -> Tls {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let resolver = Arc::new(SniResolver {
            table: ArcSwap::from_pointee(CertTable::default()),
            default: Arc::new(default_cert(&provider)),
        });
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("the aws-lc-rs provider supports the default TLS versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Stateless resumption tickets (keys drawn at start, rotated every 6 hours), as nginx
        // issues by default: rustls otherwise keeps sessions in a 256-entry memory cache, so
        // beyond the 256 most recent clients a returning visitor pays a full handshake.
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
            .expect("aws-lc-rs draws the ticket keys from the system's random source");
        Tls {
            resolver,
            config: Arc::new(config),
            provider,
        }
    }

    pub(crate) fn update(&self, snapshot: &CertSnapshot) -> Vec<CertLoadError> {
        let (table, errors) = CertTable::build(snapshot, &self.provider);
        tracing::info!(
            names = table.len(),
            failed = errors.len(),
            "router certificates updated"
        );
        self.resolver.table.store(Arc::new(table));
        errors
    }
}

/// A fresh self-signed P-256 certificate, made at start so no key ships with the binary.
fn default_cert(provider: &CryptoProvider) -> CertifiedKey {
    let generated = rcgen::generate_simple_self_signed(vec![DEFAULT_CERT_NAME.to_owned()])
        .expect("generating a key pair and self-signing with aws-lc-rs does not fail");
    let key = PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
    CertifiedKey::from_der(vec![generated.cert.der().clone()], key.into(), provider)
        .expect("rustls accepts the key rcgen just generated")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_for(names: &[&str]) -> ServedCert {
        let generated = rcgen::generate_simple_self_signed(
            names
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
        )
        .expect("test certificate");
        ServedCert {
            hosts: names
                .iter()
                .map(|name| name.parse().expect("domain"))
                .collect(),
            chain_pem: generated.cert.pem(),
            key_pem: generated.signing_key.serialize_pem(),
        }
    }

    fn leaf(key: &CertifiedKey) -> &[u8] {
        key.cert[0].as_ref()
    }

    #[test]
    fn exact_beats_wildcard_and_wildcards_cover_one_label() {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let wildcard = cert_for(&["*.apps.test"]);
        let exact = cert_for(&["www.apps.test"]);
        let (table, errors) = CertTable::build(
            &CertSnapshot {
                certs: vec![wildcard, exact],
            },
            &provider,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let www = table.find("www.apps.test").expect("exact");
        let web = table.find("web.apps.test").expect("wildcard");
        assert_ne!(leaf(www), leaf(web));
        assert!(table.find("apps.test").is_none());
        assert!(table.find("a.b.apps.test").is_none());
        assert!(table.find(".apps.test").is_none());
    }

    #[test]
    fn a_broken_certificate_is_reported_without_its_key() {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let good = cert_for(&["good.example.test"]);
        let mut unreadable = cert_for(&["bad.example.test"]);
        unreadable.key_pem =
            "-----BEGIN PRIVATE KEY-----\nSECRET!\n-----END PRIVATE KEY-----\n".to_owned();
        let mut not_a_key = cert_for(&["junk.example.test"]);
        not_a_key.key_pem =
            "-----BEGIN PRIVATE KEY-----\nSECRETSECRET\n-----END PRIVATE KEY-----\n".to_owned();
        let mut mismatched = cert_for(&["other.example.test"]);
        mismatched.key_pem = cert_for(&["x.example.test"]).key_pem;
        let (table, errors) = CertTable::build(
            &CertSnapshot {
                certs: vec![unreadable, good, not_a_key, mismatched],
            },
            &provider,
        );
        assert!(table.find("good.example.test").is_some());
        for host in [
            "bad.example.test",
            "junk.example.test",
            "other.example.test",
        ] {
            assert!(table.find(host).is_none(), "{host}");
        }
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "certificate for `bad.example.test` not loaded: the key PEM holds no readable private key",
                "certificate for `junk.example.test` not loaded: the key or certificate was rejected",
                "certificate for `other.example.test` not loaded: the key or certificate was rejected",
            ]
        );
        for err in &errors {
            let mut shown = format!("{err:?}");
            let mut cause = std::error::Error::source(err);
            while let Some(inner) = cause {
                shown.push_str(&inner.to_string());
                cause = inner.source();
            }
            assert!(!shown.contains("SECRET"), "{shown}");
        }
    }
}
