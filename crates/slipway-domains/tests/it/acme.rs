//! ACME issuance against a real Pebble (Debian `pebble` 2.4) on 127.0.0.1, with real HTTP-01
//! and DNS-01 validation (never `PEBBLE_VA_ALWAYS_VALID`). Missing binaries fail the tests.

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use slipway_domains::acme::{AcmeClient, AcmeConfig, AcmeError, Challenge, IssuedCert};
use slipway_domains::certs;
use slipway_types::DomainName;
use time::OffsetDateTime;

use crate::acme_support::{AcmeWorld, Event};

fn names(list: &[&str]) -> Vec<DomainName> {
    list.iter()
        .map(|name| name.parse().expect("a valid domain"))
        .collect()
}

/// Full WebPKI path validation of the issued chain up to Pebble's issuing root, for `host`.
async fn assert_chains_to_pebble_root(world: &AcmeWorld, cert: &IssuedCert, host: &str) {
    let root_pem = world
        .pebble
        .issuing_root_pem()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
    let root = CertificateDer::from_pem_slice(root_pem.as_bytes()).expect("a PEM root");
    let mut roots = RootCertStore::empty();
    roots.add(root).expect("a usable root");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .expect("a verifier");
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("a PEM chain");
    assert!(chain.len() >= 2, "no intermediate in the chain");
    let server_name = ServerName::try_from(host.to_owned()).expect("a server name");
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], UnixTime::now())
        .unwrap_or_else(|err| panic!("the chain does not verify for {host}: {err}"));
}

async fn connect(world: &AcmeWorld) -> (AcmeClient, String) {
    AcmeClient::connect(&world.config(), None)
        .await
        .unwrap_or_else(|err| panic!("{err}\npebble log:\n{}", world.pebble.log()))
}

#[tokio::test]
async fn issues_over_http_01_a_certificate_that_chains_to_pebbles_root() {
    let world = AcmeWorld::start(None).await;
    let (client, _) = connect(&world).await;
    let solver = world.solver(true);

    let cert = client
        .issue(&names(&["www.example.test"]), &solver)
        .await
        .unwrap_or_else(|err| panic!("{err}\npebble log:\n{}", world.pebble.log()));

    assert_chains_to_pebble_root(&world, &cert, "www.example.test").await;
    let info = certs::inspect(&cert.chain_pem).unwrap();
    assert_eq!(info, cert.info);
    assert_eq!(info.names, vec!["www.example.test".to_owned()]);
    assert!(
        info.issuer.starts_with("Pebble Intermediate CA"),
        "{info:?}"
    );
    let now = OffsetDateTime::now_utc();
    assert!(info.not_before <= now && now < info.not_after, "{info:?}");
    // The fresh key is the certificate's key.
    certs::check_pair(&cert.chain_pem, &cert.key_pem).unwrap();
    assert!(matches!(
        &solver.events()[..],
        [
            Event::Presented(Challenge::Http01 { .. }),
            Event::CleanedUp(Challenge::Http01 { .. })
        ]
    ));
    solver.assert_all_cleaned_up();
}

#[tokio::test]
async fn issues_a_wildcard_over_dns_01() {
    let world = AcmeWorld::start(None).await;
    let (client, _) = connect(&world).await;
    let solver = world.solver(true);

    let cert = client
        .issue(&names(&["*.apps.test"]), &solver)
        .await
        .unwrap_or_else(|err| panic!("{err}\npebble log:\n{}", world.pebble.log()));

    assert_eq!(cert.info.names, vec!["*.apps.test".to_owned()]);
    assert_chains_to_pebble_root(&world, &cert, "web.apps.test").await;
    let events = solver.events();
    let [
        Event::Presented(Challenge::Dns01 { name, value }),
        Event::CleanedUp(_),
    ] = &events[..]
    else {
        panic!("expected one dns-01 challenge: {events:?}");
    };
    assert_eq!(name, "_acme-challenge.apps.test");
    assert_eq!(value.len(), 43, "base64url SHA-256 digest: {value}");
    solver.assert_all_cleaned_up();
}

#[tokio::test]
async fn saved_credentials_reconnect_to_the_same_account() {
    let world = AcmeWorld::start(None).await;
    let (first, credentials) = connect(&world).await;
    assert!(credentials.contains(&world.pebble.directory_url()));

    let (second, returned) = AcmeClient::connect(&world.config(), Some(&credentials))
        .await
        .unwrap();
    assert_eq!(second.account_id(), first.account_id());
    assert_eq!(returned, credentials, "no new registration");

    let cert = second
        .issue(&names(&["again.example.test"]), &world.solver(true))
        .await
        .unwrap_or_else(|err| panic!("{err}\npebble log:\n{}", world.pebble.log()));
    assert_eq!(cert.info.names, vec!["again.example.test".to_owned()]);
}

#[tokio::test]
async fn credentials_for_another_directory_register_a_new_account() {
    let world = AcmeWorld::start(None).await;
    let other = AcmeWorld::start(None).await;
    let (_, credentials) = connect(&other).await;

    let (client, fresh) = AcmeClient::connect(&world.config(), Some(&credentials))
        .await
        .unwrap();
    assert_ne!(fresh, credentials);
    assert!(fresh.contains(&world.pebble.directory_url()));
    assert!(
        client
            .account_id()
            .starts_with(&world.pebble.directory_url().replace("/dir", ""))
    );
}

#[tokio::test]
async fn a_wrong_key_authorization_fails_validation_naming_the_domain() {
    let world = AcmeWorld::start(None).await;
    let (client, _) = connect(&world).await;
    let solver = world.solver(false);

    let err = client
        .issue(&names(&["wrong.example.test"]), &solver)
        .await
        .unwrap_err();

    let AcmeError::ValidationFailed { domain, detail } = &err else {
        panic!("expected a validation failure, got {err:?}");
    };
    assert_eq!(domain, "wrong.example.test");
    assert!(!detail.is_empty());
    let message = err.to_string();
    assert!(
        message.starts_with("validation of `wrong.example.test` failed: "),
        "{message}"
    );
    assert_eq!(err.retry_after(), None);
    solver.assert_all_cleaned_up();
}

#[tokio::test]
async fn a_wrong_dns_01_record_fails_validation_naming_the_wildcard() {
    let world = AcmeWorld::start(None).await;
    let (client, _) = connect(&world).await;
    let solver = world.solver(false);

    let err = client
        .issue(&names(&["*.apps.test"]), &solver)
        .await
        .unwrap_err();

    assert!(
        matches!(&err, AcmeError::ValidationFailed { domain, .. } if domain == "*.apps.test"),
        "{err:?}"
    );
    solver.assert_all_cleaned_up();
}

#[tokio::test]
async fn a_directory_that_is_down_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let directory = format!("https://127.0.0.1:{port}/dir");
    let config = AcmeConfig {
        directory: directory.clone(),
        contact_email: None,
        ca_bundle: None,
    };

    let err = AcmeClient::connect(&config, None).await.unwrap_err();

    assert!(
        matches!(&err, AcmeError::DirectoryUnreachable { url, .. } if *url == directory),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&directory), "{message}");
    assert!(message.contains("--acme-directory"), "{message}");
    assert!(message.contains("onnection refused"), "{message}");
}

#[tokio::test]
async fn an_untrusted_directory_certificate_is_a_clear_error() {
    let world = AcmeWorld::start(None).await;
    let config = AcmeConfig {
        ca_bundle: None,
        ..world.config()
    };

    let err = AcmeClient::connect(&config, None).await.unwrap_err();

    let message = err.to_string();
    assert!(
        matches!(err, AcmeError::DirectoryUnreachable { .. }),
        "{message}"
    );
    assert!(message.contains("certificate"), "{message}");
    assert!(message.contains("--acme-ca-bundle"), "{message}");
}

#[tokio::test]
async fn short_validity_yields_a_certificate_of_that_lifetime() {
    let world = AcmeWorld::start(Some(Duration::from_secs(60))).await;
    let (client, _) = connect(&world).await;

    let cert = client
        .issue(&names(&["short.example.test"]), &world.solver(true))
        .await
        .unwrap_or_else(|err| panic!("{err}\npebble log:\n{}", world.pebble.log()));

    let info = &cert.info;
    let lifetime = info.not_after - info.not_before;
    assert!(
        (time::Duration::seconds(58)..=time::Duration::seconds(61)).contains(&lifetime),
        "lifetime {lifetime} from {info:?}"
    );
    let due = certs::renewal_due(info) - info.not_before;
    assert!(
        (time::Duration::seconds(38)..=time::Duration::seconds(41)).contains(&due),
        "renewal due {due} after not_before"
    );
}
