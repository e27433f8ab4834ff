//! The certificates the control plane hands the router. Like the route snapshot, the router
//! serves whatever set it was last given and never reads the store.

use std::fmt;

use crate::domain::DomainName;

/// One certificate and its private key, served for every host it names.
#[derive(Clone, PartialEq, Eq)]
pub struct ServedCert {
    /// The names to serve it for (wildcards allowed), normally the certificate's own names.
    pub hosts: Vec<DomainName>,
    /// PEM: the leaf first, then its intermediates.
    pub chain_pem: String,
    /// PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: String,
}

/// Keeps private keys out of logs and panic messages.
impl fmt::Debug for ServedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServedCert")
            .field("hosts", &self.hosts)
            .field("chain_pem", &format_args!("{} bytes", self.chain_pem.len()))
            .field("key_pem", &format_args!("<redacted>"))
            .finish()
    }
}

/// Every certificate the router serves. An exact host match wins over a wildcard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertSnapshot {
    pub certs: Vec<ServedCert>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_key() {
        let cert = ServedCert {
            hosts: vec!["www.example.test".parse().unwrap()],
            chain_pem: "CHAIN".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----SECRET".into(),
        };
        let shown = format!("{cert:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("www.example.test"));
    }
}
