use slipway_store::seal::Sealer;
use slipway_store::{CertFacts, CertPair, IssuedCert, Store, StoreError};
use slipway_types::DomainName;
use slipway_types::api::{CertSource, CertStatus, DnsStatus};
use time::{Duration, OffsetDateTime};

use crate::{Backend, app, on_both, store_on};

fn domain(s: &str) -> DomainName {
    s.parse().expect("a valid domain")
}

fn facts() -> CertFacts {
    let not_before = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("a valid time");
    CertFacts {
        issuer: "Pebble Intermediate CA".into(),
        serial: "0a1b".into(),
        not_before,
        not_after: not_before + Duration::days(90),
    }
}

fn pair(tag: &str) -> CertPair {
    CertPair {
        chain_pem: format!("-----BEGIN CERTIFICATE-----{tag}"),
        key_pem: format!("-----BEGIN PRIVATE KEY-----secret-{tag}"),
    }
}

async fn a_domain_belongs_to_one_app_and_its_removal_takes_its_certificate(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let web = app(&store, "web").await;
    let other = app(&store, "other").await;
    let www = domain("www.example.test");
    let added = store.add_domain(web.id, &www).await.unwrap();
    assert_eq!(added.app, web.name);
    assert_eq!(added.dns_status, DnsStatus::Pending);

    let taken = store.add_domain(other.id, &www).await.unwrap_err();
    assert!(matches!(taken, StoreError::Conflict(_)), "{taken:?}");
    assert!(taken.to_string().contains("app `web`"), "{taken}");

    store
        .set_dns_status(&www, DnsStatus::Verified, "CNAME web.apps.test")
        .await
        .unwrap();
    assert!(
        store
            .want_certificate(www.as_str(), Some(web.id))
            .await
            .unwrap()
    );
    assert!(
        !store
            .want_certificate(www.as_str(), Some(web.id))
            .await
            .unwrap(),
        "wanted twice is one row"
    );
    let listed = store.domains(Some(web.id)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].dns_status, DnsStatus::Verified);
    assert_eq!(listed[0].dns_found.as_deref(), Some("CNAME web.apps.test"));
    assert!(store.domains(Some(other.id)).await.unwrap().is_empty());

    let not_there = store.remove_domain(other.id, &www).await.unwrap_err();
    assert!(
        matches!(not_there, StoreError::NotFound(_)),
        "{not_there:?}"
    );
    store.remove_domain(web.id, &www).await.unwrap();
    assert!(store.domains(None).await.unwrap().is_empty());
    assert!(store.certificate(www.as_str()).await.unwrap().is_none());
    store.add_domain(other.id, &www).await.unwrap();
}

async fn a_failed_renewal_keeps_the_issued_chain_and_counts_failures(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let web = app(&store, "web").await;
    store
        .want_certificate("www.example.test", Some(web.id))
        .await
        .unwrap();
    let pending = store
        .certificate("www.example.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pending.status, CertStatus::Pending);
    assert!(pending.pair.is_none());

    let renew_at = facts().not_before + Duration::days(60);
    store
        .save_certificate(IssuedCert {
            name: "www.example.test",
            app_id: Some(web.id),
            source: CertSource::Acme,
            pair: &pair("one"),
            facts: &facts(),
            renew_at: Some(renew_at),
        })
        .await
        .unwrap();
    let retry_at = renew_at + Duration::minutes(1);
    for _ in 0..2 {
        store
            .certificate_failed("www.example.test", "acme server unreachable", retry_at)
            .await
            .unwrap();
    }
    let failed = store
        .certificate("www.example.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, CertStatus::Failed);
    assert_eq!(failed.failures, 2);
    assert_eq!(failed.pair, Some(pair("one")));
    assert_eq!(failed.facts, Some(facts()));
    assert_eq!(failed.next_attempt_at, Some(retry_at));
    assert_eq!(
        failed.last_error.as_deref(),
        Some("acme server unreachable")
    );

    store
        .save_certificate(IssuedCert {
            name: "www.example.test",
            app_id: Some(web.id),
            source: CertSource::Acme,
            pair: &pair("two"),
            facts: &facts(),
            renew_at: Some(renew_at),
        })
        .await
        .unwrap();
    let renewed = store
        .certificate("www.example.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (renewed.status, renewed.failures, renewed.last_error),
        (CertStatus::Issued, 0, None)
    );
    assert_eq!(renewed.pair, Some(pair("two")));
    store.delete_app(web.id).await.unwrap();
    assert!(store.certificates().await.unwrap().is_empty());
}

async fn keys_and_acme_credentials_are_sealed_at_rest(backend: Backend) {
    let (store, dir) = store_on(backend).await;
    let store: Store = store.sealing_with(Sealer::from_master_key(&[7; 32], b"test"));
    store
        .save_certificate(IssuedCert {
            name: "*.apps.test",
            app_id: None,
            source: CertSource::Acme,
            pair: &pair("wild"),
            facts: &facts(),
            renew_at: None,
        })
        .await
        .unwrap();
    store
        .save_acme_credentials(
            "https://127.0.0.1:14000/dir",
            "{\"key\":\"account-secret\"}",
        )
        .await
        .unwrap();

    let mut conn = dir.raw().await;
    let (key,): (String,) = sqlx::query_as("SELECT key_sealed FROM certificates")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let (account,): (String,) = sqlx::query_as("SELECT credentials FROM acme_accounts")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!key.contains("secret-wild"), "{key}");
    assert!(!account.contains("account-secret"), "{account}");

    let read = store.certificate("*.apps.test").await.unwrap().unwrap();
    assert_eq!(read.pair, Some(pair("wild")));
    assert_eq!(
        store
            .acme_credentials("https://127.0.0.1:14000/dir")
            .await
            .unwrap()
            .as_deref(),
        Some("{\"key\":\"account-secret\"}")
    );
    let other_key = Store::open(dir.url())
        .await
        .unwrap()
        .sealing_with(Sealer::from_master_key(&[8; 32], b"test"));
    assert!(other_key.certificate("*.apps.test").await.is_err());
    assert_eq!(dir.count("SELECT COUNT(*) FROM certificates").await, 1);
}

async fn certs_auto_is_on_by_default_and_switches(backend: Backend) {
    let (store, _dir) = store_on(backend).await;
    let web = app(&store, "web").await;
    assert!(store.certs_auto(web.id).await.unwrap());
    store.set_certs_auto(web.id, false).await.unwrap();
    assert!(!store.certs_auto(web.id).await.unwrap());
    store.delete_app(web.id).await.unwrap();
    assert!(matches!(
        store.set_certs_auto(web.id, true).await,
        Err(StoreError::NotFound(_))
    ));
}

on_both!(
    a_domain_belongs_to_one_app_and_its_removal_takes_its_certificate,
    a_failed_renewal_keeps_the_issued_chain_and_counts_failures,
    keys_and_acme_credentials_are_sealed_at_rest,
    certs_auto_is_on_by_default_and_switches,
);
