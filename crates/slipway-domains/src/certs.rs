//! Pure certificate helpers: what a PEM chain says (names, issuer, validity), whether a
//! user-supplied key belongs to its certificate, when to renew, and self-signed certificates.
//! Nothing here touches the network or the store, so the server, the CLI and tests share it.

use rcgen::{CertificateParams, KeyPair, PublicKeyData};
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

/// What Slipway shows and schedules from a certificate: its leaf's names, issuer and lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// DNS names from the subject alternative names (the subject CN when there are none).
    pub names: Vec<String>,
    /// The issuer's common name, or its organisation when it has no common name.
    pub issuer: String,
    /// The serial number in lowercase hex without leading zeros, as CAs print it.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Why a certificate or key was refused. Messages name the file at fault and never quote key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate file has no PEM certificate")]
    NoCertificate,
    #[error("certificate file is not valid PEM: {0}")]
    CertificatePem(String),
    #[error("certificate file holds a certificate that cannot be parsed: {0}")]
    CertificateDer(String),
    #[error("key file is not a PEM private key (expected PKCS#8, PKCS#1 or SEC1)")]
    KeyNotPem,
    #[error("key file holds a certificate, not a private key: were the two files swapped?")]
    KeyIsCertificate,
    #[error(
        "key file holds a private key of an unsupported type (use RSA, ECDSA P-256/P-384 or Ed25519)"
    )]
    KeyUnsupported,
    #[error("the key does not belong to the certificate")]
    KeyMismatch,
    #[error("the certificate expired on {0}")]
    Expired(OffsetDateTime),
    #[error("could not generate a self-signed certificate: {0}")]
    Generate(String),
}

/// Reads the leaf (the first certificate) of a PEM chain.
pub fn inspect(chain_pem: &str) -> Result<CertInfo, CertError> {
    let leaf = leaf_der(chain_pem)?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|err| CertError::CertificateDer(err.to_string()))?;
    Ok(info_of(&cert))
}

/// For user-supplied certificates (`certs:add CRT KEY`): parses both and checks the key is the
/// certificate's key by comparing public keys, so a mismatched pair is refused at upload
/// instead of failing every TLS handshake later.
pub fn check_pair(chain_pem: &str, key_pem: &str) -> Result<CertInfo, CertError> {
    let leaf = leaf_der(chain_pem)?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|err| CertError::CertificateDer(err.to_string()))?;
    let key = private_key(key_pem)?;
    let key_pair = KeyPair::try_from(&key).map_err(|_| CertError::KeyUnsupported)?;
    if key_pair.der_bytes() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(CertError::KeyMismatch);
    }
    let info = info_of(&cert);
    if info.not_after <= OffsetDateTime::now_utc() {
        return Err(CertError::Expired(info.not_after));
    }
    Ok(info)
}

/// When to renew: two-thirds of the way from `not_before` to `not_after`, which leaves a third
/// of the lifetime (30 days for a 90-day certificate) for retries and back-off.
pub fn renewal_due(info: &CertInfo) -> OffsetDateTime {
    let lifetime = info.not_after - info.not_before;
    info.not_before + lifetime * 2 / 3
}

/// A self-signed certificate valid for a year from an hour ago (clock skew), for tests and the
/// router's default certificate for unknown SNI. Returns `(chain PEM, PKCS#8 key PEM)`.
pub fn self_signed(names: &[String]) -> Result<(String, String), CertError> {
    let generate = |err: rcgen::Error| CertError::Generate(err.to_string());
    let mut params = CertificateParams::new(names.to_vec()).map_err(generate)?;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(365);
    let key = KeyPair::generate().map_err(generate)?;
    let cert = params.self_signed(&key).map_err(generate)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn leaf_der(chain_pem: &str) -> Result<CertificateDer<'static>, CertError> {
    match CertificateDer::pem_slice_iter(chain_pem.as_bytes()).next() {
        Some(Ok(der)) => Ok(der),
        Some(Err(rustls_pki_types::pem::Error::NoItemsFound)) | None => {
            Err(CertError::NoCertificate)
        }
        Some(Err(err)) => Err(CertError::CertificatePem(err.to_string())),
    }
}

/// Finds the first private key section. Parse errors are not passed on: they could quote a
/// line of the key file.
fn private_key(key_pem: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    let mut saw_certificate = false;
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(key_pem.as_bytes()) {
        let (kind, der) = section.map_err(|_| CertError::KeyNotPem)?;
        let key = match kind {
            SectionKind::PrivateKey => PrivateKeyDer::Pkcs8(der.into()),
            SectionKind::RsaPrivateKey => PrivateKeyDer::Pkcs1(der.into()),
            SectionKind::EcPrivateKey => PrivateKeyDer::Sec1(der.into()),
            SectionKind::Certificate => {
                saw_certificate = true;
                continue;
            }
            _ => continue,
        };
        return Ok(key);
    }
    Err(if saw_certificate {
        CertError::KeyIsCertificate
    } else {
        CertError::KeyNotPem
    })
}

fn info_of(cert: &X509Certificate<'_>) -> CertInfo {
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some((*dns).to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_owned),
        );
    }
    let issuer = cert.issuer();
    let issuer = issuer
        .iter_common_name()
        .chain(issuer.iter_organization())
        .find_map(|attr| attr.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    CertInfo {
        names,
        issuer,
        serial: cert.tbs_certificate.serial.to_str_radix(16),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn self_signed_certificates_inspect_to_their_names_and_lifetime() {
        let wanted = names(&["www.example.test", "*.apps.test"]);
        let (chain, key) = self_signed(&wanted).unwrap();
        let info = inspect(&chain).unwrap();
        assert_eq!(info.names, wanted);
        assert_eq!(info.issuer, "rcgen self signed cert");
        assert!(!info.serial.is_empty());
        assert!(info.serial.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            info.not_after - info.not_before,
            Duration::days(365) + Duration::hours(1)
        );
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn renewal_is_due_two_thirds_into_the_lifetime() {
        let not_before = OffsetDateTime::UNIX_EPOCH;
        let info = CertInfo {
            names: names(&["www.example.test"]),
            issuer: "ca".into(),
            serial: "1".into(),
            not_before,
            not_after: not_before + Duration::days(90),
        };
        assert_eq!(renewal_due(&info), not_before + Duration::days(60));
    }

    #[test]
    fn a_matching_pair_is_accepted() {
        let (chain, key) = self_signed(&names(&["www.example.test"])).unwrap();
        let info = check_pair(&chain, &key).unwrap();
        assert_eq!(info.names, names(&["www.example.test"]));
    }

    #[test]
    fn a_key_from_another_certificate_is_refused() {
        let (chain, _) = self_signed(&names(&["www.example.test"])).unwrap();
        let (_, other_key) = self_signed(&names(&["www.example.test"])).unwrap();
        let err = check_pair(&chain, &other_key).unwrap_err();
        assert!(matches!(err, CertError::KeyMismatch), "{err}");
        assert_eq!(
            err.to_string(),
            "the key does not belong to the certificate"
        );
    }

    #[test]
    fn garbage_says_which_file_is_wrong() {
        let (chain, key) = self_signed(&names(&["www.example.test"])).unwrap();

        let err = check_pair("not a certificate", &key).unwrap_err();
        assert_eq!(err.to_string(), "certificate file has no PEM certificate");
        assert!(matches!(inspect(""), Err(CertError::NoCertificate)));

        let err = check_pair(&chain, "not a key").unwrap_err();
        assert!(matches!(err, CertError::KeyNotPem), "{err}");

        let err = check_pair(&chain, &chain).unwrap_err();
        assert!(matches!(err, CertError::KeyIsCertificate), "{err}");

        let err = check_pair(&key, &key).unwrap_err();
        assert!(matches!(err, CertError::NoCertificate), "{err}");

        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = inspect(broken).unwrap_err();
        assert!(matches!(err, CertError::CertificateDer(_)), "{err}");
    }

    #[test]
    fn errors_never_quote_the_key() {
        let (chain, key) = self_signed(&names(&["www.example.test"])).unwrap();
        let body: String = key
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let truncated = format!("{}\n", &key[..key.len() / 2]);
        for key_pem in [truncated, body.clone()] {
            let err = check_pair(&chain, &key_pem).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(&body[10..40]), "{shown}");
        }
    }

    #[test]
    fn expired_certificates_are_refused() {
        let mut params = CertificateParams::new(names(&["old.example.test"])).unwrap();
        params.not_before = OffsetDateTime::now_utc() - Duration::days(100);
        params.not_after = OffsetDateTime::now_utc() - Duration::days(10);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let err = check_pair(&cert.pem(), &key.serialize_pem()).unwrap_err();
        assert!(matches!(err, CertError::Expired(_)), "{err}");
    }
}
