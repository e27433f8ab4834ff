use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::Empty;
use rustls::HandshakeKind;
use slipway_router::{AccessLogSink, CertProblem, RouterConfig};
use slipway_types::CertSnapshot;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::pki::{
    TestCa, connect, get_https, get_over, http1_over, http2_over, leaf_der, presented,
    trusting_client,
};
use crate::support::{
    HOST, PATIENCE, PUBLIC_HTTPS_PORT, PUBLIC_PORT, TestRouter, Upstream, read_reply, site,
};

const H1: &[&[u8]] = &[b"http/1.1"];

/// A router serving [`HOST`] from `web` with a certificate for it from a fresh CA.
async fn secured(web: &Upstream) -> (TestRouter, TestCa) {
    let ca = TestCa::new();
    let router = TestRouter::start_with_https().await;
    router.route(vec![web.backend()]);
    let errors = router.router.update_certs(&CertSnapshot {
        certs: vec![ca.leaf(&[HOST])],
    });
    assert!(errors.is_empty(), "{errors:?}");
    (router, ca)
}

#[tokio::test]
async fn an_https_request_reaches_the_app_marked_as_https() {
    let web = Upstream::start("web.1").await;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let lines = Arc::clone(&lines);
        AccessLogSink::new(move |app, line| {
            lines.lock().expect("lines").push(format!("{app} {line}"));
        })
    };
    let ca = TestCa::new();
    let router = TestRouter::with_config(RouterConfig {
        listen_port: PUBLIC_PORT,
        https_port: Some(PUBLIC_HTTPS_PORT),
        access_log: Some(sink),
        ..RouterConfig::default()
    })
    .await;
    router.route(vec![web.backend()]);
    let errors = router.router.update_certs(&CertSnapshot {
        certs: vec![ca.leaf(&[HOST])],
    });
    assert!(errors.is_empty(), "{errors:?}");

    let (reply, _) = get_https(&ca.client(H1), router.tls_addr, HOST, "/secure?x=1").await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.dyno(), "web.1");
    assert!(
        reply.body.starts_with("GET /secure?x=1\n"),
        "{}",
        reply.body
    );
    assert_eq!(reply.echoed("x-forwarded-proto"), Some("https"));
    assert_eq!(
        reply.echoed("x-forwarded-port"),
        Some(PUBLIC_HTTPS_PORT.to_string().as_str())
    );
    assert_eq!(reply.echoed("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(reply.echoed("via"), Some("1.1 slipway"));
    let lines = lines.lock().expect("lines").clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("demo at=info method=GET path=\"/secure?x=1\" host=demo.example.com "),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(" dyno=web.1 ") && lines[0].contains(" status=200 "),
        "{}",
        lines[0]
    );
}

#[tokio::test]
async fn alpn_negotiates_http2() {
    let web = Upstream::start("web.1").await;
    let (router, ca) = secured(&web).await;

    let stream = connect(&ca.client(&[b"h2", b"http/1.1"]), router.tls_addr, HOST).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut sender = http2_over(stream).await;
    let req = Request::get(format!("https://{HOST}/h2"))
        .version(Version::HTTP_2)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = tokio::time::timeout(PATIENCE, sender.send_request(req))
        .await
        .expect("response in time")
        .expect("response");
    assert_eq!(response.version(), Version::HTTP_2);
    let reply = read_reply(response).await;

    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.echoed("via"), Some("2 slipway"));
    assert_eq!(reply.echoed("x-forwarded-proto"), Some("https"));

    let plain = connect(&ca.client(H1), router.tls_addr, HOST).await;
    assert_eq!(plain.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn a_certificate_swap_needs_no_restart_and_spares_open_connections() {
    let web = Upstream::start("web.1").await;
    let ca = TestCa::new();
    let router = TestRouter::start_with_https().await;
    router.route(vec![web.backend()]);
    let first = ca.leaf(&[HOST]);
    let second = ca.leaf(&[HOST]);
    assert!(
        router
            .router
            .update_certs(&CertSnapshot {
                certs: vec![first.clone()]
            })
            .is_empty()
    );
    let client = ca.client(H1);

    let open = connect(&client, router.tls_addr, HOST).await;
    assert_eq!(presented(&open), leaf_der(&first));
    let mut open = http1_over(open).await;
    assert_eq!(get_over(&mut open, HOST, "/").await.status, StatusCode::OK);

    assert!(
        router
            .router
            .update_certs(&CertSnapshot {
                certs: vec![second.clone()]
            })
            .is_empty()
    );

    let (reply, cert) = get_https(&client, router.tls_addr, HOST, "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        cert,
        leaf_der(&second),
        "a new handshake gets the new certificate"
    );
    assert_ne!(leaf_der(&first), leaf_der(&second));
    assert_eq!(
        get_over(&mut open, HOST, "/again").await.status,
        StatusCode::OK,
        "the connection opened before the swap still works"
    );
}

#[tokio::test]
async fn an_unknown_or_missing_server_name_gets_the_default_certificate_and_a_404() {
    let web = Upstream::start("web.1").await;
    let (router, ca) = secured(&web).await;
    let served = leaf_der(&ca.leaf(&[HOST]));
    let client = trusting_client();

    let (unknown, unknown_cert) =
        get_https(&client, router.tls_addr, "unknown.example.test", "/").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(
        unknown.body.contains("unknown.example.test"),
        "{}",
        unknown.body
    );

    let no_sni = connect(&client, router.tls_addr, "127.0.0.1").await;
    let no_sni_cert = presented(&no_sni);
    let mut sender = http1_over(no_sni).await;
    assert_eq!(
        get_over(&mut sender, "other.example.test", "/")
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    assert_eq!(unknown_cert, no_sni_cert, "one default certificate");
    assert_ne!(unknown_cert, served);
    let (_, host_cert) = get_https(&client, router.tls_addr, HOST, "/").await;
    assert_ne!(
        unknown_cert, host_cert,
        "a known host gets its own certificate"
    );
}

#[tokio::test]
async fn wildcards_cover_one_label_and_an_exact_name_wins() {
    let web = Upstream::start("web.1").await;
    let ca = TestCa::new();
    let router = TestRouter::start_with_https().await;
    router.router.update(&slipway_types::RouteSnapshot {
        sites: vec![site(
            "demo",
            &["web.apps.test", "www.apps.test", "a.b.apps.test"],
            vec![web.backend()],
        )],
    });
    let wildcard = ca.leaf(&["*.apps.test"]);
    let exact = ca.leaf(&["www.apps.test"]);
    let errors = router.router.update_certs(&CertSnapshot {
        certs: vec![wildcard.clone(), exact.clone()],
    });
    assert!(errors.is_empty(), "{errors:?}");
    let client = ca.client(H1);

    let (reply, cert) = get_https(&client, router.tls_addr, "web.apps.test", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(cert, leaf_der(&wildcard));

    let (reply, cert) = get_https(&client, router.tls_addr, "www.apps.test", "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(cert, leaf_der(&exact));

    let stream = connect(&trusting_client(), router.tls_addr, "a.b.apps.test").await;
    let deep = presented(&stream);
    assert_ne!(
        deep,
        leaf_der(&wildcard),
        "a wildcard covers one label only"
    );
    assert_ne!(deep, leaf_der(&exact));
}

#[tokio::test]
async fn plain_http_is_redirected_only_for_hosts_with_a_certificate() {
    let web = Upstream::start("web.1").await;
    let (router, _ca) = secured(&web).await;
    router.router.update(&slipway_types::RouteSnapshot {
        sites: vec![
            site("demo", &[HOST], vec![web.backend()]),
            site("plain", &["plain.example.com"], vec![web.backend()]),
        ],
    });

    let redirected = router
        .get(&format!("{HOST}:{PUBLIC_PORT}"), "/path/x?q=1&r=2")
        .await;
    assert_eq!(redirected.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        redirected.header("location"),
        format!("https://{HOST}:{PUBLIC_HTTPS_PORT}/path/x?q=1&r=2")
    );
    assert!(redirected.headers.contains_key("x-request-id"));

    let proxied = router.get("plain.example.com", "/").await;
    assert_eq!(proxied.status, StatusCode::OK);
    assert_eq!(proxied.echoed("x-forwarded-proto"), Some("http"));
}

#[tokio::test]
async fn the_redirect_leaves_out_port_443_and_needs_https_to_be_served() {
    let web = Upstream::start("web.1").await;
    let ca = TestCa::new();
    for (https_port, expected) in [(Some(443), Some(format!("https://{HOST}/"))), (None, None)] {
        let router = TestRouter::with_config(RouterConfig {
            https_port,
            ..RouterConfig::default()
        })
        .await;
        router.route(vec![web.backend()]);
        assert!(
            router
                .router
                .update_certs(&CertSnapshot {
                    certs: vec![ca.leaf(&[HOST])]
                })
                .is_empty()
        );
        let reply = router.get(HOST, "/").await;
        match expected {
            Some(location) => {
                assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
                assert_eq!(reply.header("location"), location);
            }
            None => assert_eq!(reply.status, StatusCode::OK, "no HTTPS, no redirect"),
        }
    }
}

#[tokio::test]
async fn a_challenge_is_answered_for_any_host_until_removed() {
    let web = Upstream::start("web.1").await;
    let (router, _ca) = secured(&web).await;
    let path = "/.well-known/acme-challenge/tok-123_ABC";
    router
        .router
        .set_challenge("tok-123_ABC", "tok-123_ABC.thumbprint");

    for host in [HOST, "not-routed.example.net", "127.0.0.1"] {
        let reply = router.get(host, path).await;
        assert_eq!(reply.status, StatusCode::OK, "{host}: {reply:?}");
        assert_eq!(reply.body, "tok-123_ABC.thumbprint");
        assert_eq!(reply.header("content-type"), "text/plain; charset=utf-8");
    }

    let unknown = router.get(HOST, "/.well-known/acme-challenge/other").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.headers.get("x-dyno"), None, "not passed to the app");

    router.router.remove_challenge("tok-123_ABC");
    assert_eq!(router.get(HOST, path).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_broken_certificate_is_reported_and_the_others_still_serve() {
    let web = Upstream::start("web.1").await;
    let ca = TestCa::new();
    let router = TestRouter::start_with_https().await;
    router.router.update(&slipway_types::RouteSnapshot {
        sites: vec![site(
            "demo",
            &[HOST, "broken.example.com"],
            vec![web.backend()],
        )],
    });
    let good = ca.leaf(&[HOST]);
    let mut broken = ca.leaf(&["broken.example.com"]);
    let broken_leaf = leaf_der(&broken);
    broken.chain_pem =
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_owned();

    let errors = router.router.update_certs(&CertSnapshot {
        certs: vec![broken.clone(), good.clone()],
    });

    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].hosts, broken.hosts);
    assert!(matches!(errors[0].problem, CertProblem::MalformedChain(_)));
    assert!(
        errors[0].to_string().contains("`broken.example.com`"),
        "{}",
        errors[0]
    );
    let (reply, cert) = get_https(&ca.client(H1), router.tls_addr, HOST, "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(cert, leaf_der(&good));
    let fallback = connect(&trusting_client(), router.tls_addr, "broken.example.com").await;
    assert_ne!(presented(&fallback), broken_leaf);
    let plain = router.get("broken.example.com", "/").await;
    assert_eq!(
        plain.status,
        StatusCode::OK,
        "no certificate loaded, no redirect"
    );
}

#[tokio::test]
async fn a_silent_client_neither_blocks_others_nor_keeps_its_socket() {
    let web = Upstream::start("web.1").await;
    let (router, ca) = secured(&web).await;

    let mut silent = TcpStream::connect(router.tls_addr).await.expect("connect");
    let mut half = TcpStream::connect(router.tls_addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut half, &[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .expect("start of a ClientHello");

    let (reply, _) = get_https(&ca.client(H1), router.tls_addr, HOST, "/").await;
    assert_eq!(reply.status, StatusCode::OK);

    for stream in [&mut silent, &mut half] {
        let mut buf = [0; 64];
        let closed = tokio::time::timeout(PATIENCE + Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the router closes a connection that does not finish its handshake");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    }
}

/// A shutdown closes nothing a client may be using: a request in progress is finished, a
/// handshake that had not started yet is completed and its request answered with `Connection:
/// close`, an idle HTTP/2 connection gets GOAWAY; only a client that says nothing is let go, at
/// the header read timeout.
#[tokio::test]
async fn shutdown_finishes_https_requests_and_handshakes_in_progress() {
    let web = Upstream::start("web.1").await;
    let ca = TestCa::new();
    let router = TestRouter::with_config(RouterConfig {
        listen_port: PUBLIC_PORT,
        https_port: Some(PUBLIC_HTTPS_PORT),
        header_read_timeout: Duration::from_secs(1),
        ..RouterConfig::default()
    })
    .await;
    router.route(vec![web.backend()]);
    let errors = router.router.update_certs(&CertSnapshot {
        certs: vec![ca.leaf(&[HOST])],
    });
    assert!(errors.is_empty(), "{errors:?}");
    let _silent = TcpStream::connect(router.tls_addr).await.expect("connect");
    let late = TcpStream::connect(router.tls_addr).await.expect("connect");
    let h2 = connect(&ca.client(&[b"h2"]), router.tls_addr, HOST).await;
    let h2 = http2_over(h2).await;
    let stream = connect(&ca.client(H1), router.tls_addr, HOST).await;
    let mut sender = http1_over(stream).await;
    let slow = tokio::spawn(async move { get_over(&mut sender, HOST, "/slow").await });
    router.wait_in_flight(web.addr, 1).await;
    router.wait_connections(4).await;

    router.begin_shutdown();
    let name = rustls_pki_types::ServerName::try_from(HOST).expect("server name");
    let late = tokio::time::timeout(PATIENCE, ca.client(H1).connect(name, late))
        .await
        .expect("handshake in time")
        .expect("the handshake started before the shutdown completes");
    let reply = get_over(&mut http1_over(late).await, HOST, "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("connection"), "close");
    for _ in 0..100 {
        if h2.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h2.is_closed(), "the idle HTTP/2 connection got no GOAWAY");
    assert!(
        !router.tls_task.is_finished(),
        "serve_tls returned with a request in flight"
    );

    web.release();
    let reply = slow.await.expect("slow request task");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "slow done");
    tokio::time::timeout(Duration::from_secs(5), router.tls_task)
        .await
        .expect("serve_tls returns once drained and the silent client timed out")
        .expect("serve_tls task")
        .expect("serve_tls result");
}

/// Sessions are resumed from stateless tickets, not from a bounded server-side cache: a
/// client comes back after 300 others (rustls' default cache holds 256 sessions) and still
/// skips the full handshake.
#[tokio::test]
async fn a_returning_client_resumes_its_session_after_many_others() {
    let web = Upstream::start("web.1").await;
    let (router, ca) = secured(&web).await;
    let visit = async |connector: &tokio_rustls::TlsConnector| {
        let stream = connect(connector, router.tls_addr, HOST).await;
        let kind = stream.get_ref().1.handshake_kind();
        let mut sender = http1_over(stream).await;
        // The tickets arrive after the handshake; reading a response reads them too.
        assert_eq!(
            get_over(&mut sender, HOST, "/").await.status,
            StatusCode::OK
        );
        kind
    };
    let returning = ca.resuming_client();
    assert_eq!(visit(&returning).await, Some(HandshakeKind::Full));
    for _ in 0..300 {
        visit(&ca.resuming_client()).await;
    }
    assert_eq!(visit(&returning).await, Some(HandshakeKind::Resumed));
}
