//! Entry points for the fuzz targets in `fuzz/`, built only with the `fuzzing` feature. They
//! reach the router's private request-path code and check its invariants, panicking when one
//! breaks, which is what the fuzzer looks for.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Uri, Version};
use slipway_types::{RouteSnapshot, SiteRoutes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::headers::{self, Forwarding};
use crate::router::{Router, RouterConfig};
use crate::table::{Counters, RouteTable};
use crate::upstream;

/// Looks up the host of a request made of `uri` and a `Host` header in a table of `hosts`.
/// Invariants: the host looked up is lowercase, non-empty, without a trailing dot, and it is
/// found exactly when one of the configured hosts normalizes to it.
pub fn route(hosts: &[String], uri: &[u8], host_header: &[u8]) {
    let Ok(uri) = Uri::try_from(uri) else { return };
    let mut req = Request::new(());
    *req.uri_mut() = uri;
    if let Ok(host) = HeaderValue::from_bytes(host_header) {
        req.headers_mut().insert(header::HOST, host);
    }
    let snapshot = RouteSnapshot {
        sites: vec![SiteRoutes {
            app: "fuzz".parse().expect("valid app name"),
            hosts: hosts.to_vec(),
            backends: Vec::new(),
            maintenance: false,
            canary: None,
            rate_limit: None,
        }],
    };
    let table = RouteTable::build(&snapshot, &mut Counters::default(), &|_| {
        unreachable!("a site without backends needs no client")
    });
    let Ok(target) = headers::target(&req) else {
        return;
    };
    let host = &target.host;
    assert!(!host.is_empty());
    assert_eq!(*host, host.to_ascii_lowercase());
    assert!(!host.ends_with('.'), "{host}");
    let configured = hosts
        .iter()
        .any(|configured| configured.trim_end_matches('.').to_ascii_lowercase() == *host);
    assert_eq!(table.site(host).is_some(), configured, "{host}");
}

/// Rewrites request headers built from `raw` as the router does before forwarding. Invariants:
/// no hop-by-hop header survives (but the protocol switch of an upgrade), every other header
/// keeps all its values, and each forwarding header is present once with the router's value.
pub fn rewrite(raw: &[(Vec<u8>, Vec<u8>)], upgrade: bool, http2: bool) {
    let mut headers = HeaderMap::new();
    for (name, value) in raw {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    let request_id = headers::request_id(&headers);
    assert!(headers::is_valid_request_id(request_id.as_bytes()));
    let client = HeaderValue::from_static("192.0.2.1");
    let forwarded_for = headers::forwarded_for(&headers, &client);
    assert!(forwarded_for.as_bytes().ends_with(b"192.0.2.1"));

    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    let switch = upgrade && headers.contains_key(header::UPGRADE);
    let before = headers.clone();
    headers::strip_hop_by_hop(&mut headers, upgrade);
    for name in headers.keys() {
        let kept_for_switch = switch && (name == header::CONNECTION || name == header::UPGRADE);
        assert!(
            kept_for_switch || !headers::is_hop_by_hop(name) && !named.contains(name),
            "{name} survived"
        );
    }
    for name in before.keys() {
        if !headers::is_hop_by_hop(name) && !named.contains(name) {
            assert!(
                before.get_all(name).iter().eq(headers.get_all(name).iter()),
                "{name} changed"
            );
        }
    }

    let authority = HeaderValue::from_static("demo.example.com:8080");
    let port = HeaderValue::from_static("8080");
    let forwarding = Forwarding {
        authority: &authority,
        forwarded_for: &forwarded_for,
        https: false,
        port: &port,
        request_id: &request_id,
        received_at: SystemTime::now(),
        version: if http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        },
    };
    let mut request = Request::new(());
    *request.headers_mut() = headers.clone();
    let (parts, ()) = request.into_parts();
    let mut head = Vec::new();
    upstream::encode_head(&mut head, &parts, None, Some(&forwarding));
    let mut fields = vec![httparse::EMPTY_HEADER; headers.len() + 8];
    let mut parsed = httparse::Request::new(&mut fields);
    assert!(
        matches!(parsed.parse(&head), Ok(httparse::Status::Complete(len)) if len == head.len()),
        "the request head does not parse"
    );
    let sent = |name: &str| -> Vec<&[u8]> {
        parsed
            .headers
            .iter()
            .filter(|field| field.name.eq_ignore_ascii_case(name))
            .map(|field| field.value.trim_ascii())
            .collect()
    };
    for (name, expected) in [
        ("host", &authority),
        ("x-forwarded-for", &forwarded_for),
        ("x-forwarded-port", &port),
        ("x-request-id", &request_id),
    ] {
        assert_eq!(sent(name), [expected.as_bytes()], "{name}");
    }
    assert_eq!(sent("x-forwarded-proto"), [b"http"]);
    assert_eq!(sent("x-request-start").len(), 1);
    let via = sent("via");
    assert!(via.last().expect("via").ends_with(b" slipway"));
    for name in headers.keys() {
        if !Forwarding::replaces(name) && name != header::VIA && name != header::TRANSFER_ENCODING {
            let kept: Vec<&[u8]> = headers
                .get_all(name)
                .iter()
                .map(|value| value.as_bytes().trim_ascii())
                .collect();
            assert_eq!(sent(name.as_str()), kept, "{name} changed on the way");
        }
    }
}

/// Serves `input` as the bytes of one plain-HTTP client connection, through the whole request
/// path (hyper's parser, routing, error pages, the log line), and reads the answer. The router
/// knows `demo.example.com` (no backends: 503) and `down.example.com` (maintenance); nothing is
/// sent anywhere. Invariants: no panic, and the connection ends. Returns what the client got.
pub fn serve(input: &[u8]) -> Vec<u8> {
    static RUNTIME: OnceLock<(tokio::runtime::Runtime, Arc<Router>)> = OnceLock::new();
    let (runtime, router) = RUNTIME.get_or_init(|| {
        // Paused time jumps ahead whenever everything waits, so the idle and header deadlines
        // that end each connection cost no real time.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        let router = Router::new(RouterConfig {
            header_read_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(100),
            ..RouterConfig::default()
        });
        let site = |app: &str, host: &str, maintenance| SiteRoutes {
            app: app.parse().expect("valid app name"),
            hosts: vec![host.to_owned()],
            backends: Vec::new(),
            maintenance,
            canary: None,
            rate_limit: None,
        };
        router.update(&RouteSnapshot {
            sites: vec![
                site("demo", "demo.example.com", false),
                site("down", "down.example.com", true),
            ],
        });
        (runtime, router)
    });
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let served = tokio::spawn(Arc::clone(router).serve_stream(server, PEER));
        // The router may stop reading early (a head too large, a bad request) and close.
        let _ = client.write_all(input).await;
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer))
            .await
            .expect("the router answers and closes in time")
            .expect("read from the duplex");
        served.await.expect("the connection task does not panic");
        answer
    })
}

const PEER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
    40000,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_points_accept_ordinary_input() {
        route(
            &["Demo.Example.com.".to_owned()],
            b"/",
            b"demo.example.com:8080",
        );
        rewrite(
            &[
                (b"connection".to_vec(), b"upgrade, x-a".to_vec()),
                (b"upgrade".to_vec(), b"websocket".to_vec()),
                (b"x-a".to_vec(), b"1".to_vec()),
                (b"x-forwarded-for".to_vec(), b"10.0.0.1".to_vec()),
            ],
            true,
            false,
        );
        let answer = serve(b"GET / HTTP/1.1\r\nHost: demo.example.com\r\n\r\n");
        assert!(answer.starts_with(b"HTTP/1.1 503 "), "{answer:?}");
        let answer = serve(b"GET / HTTP/1.1\r\nHost: down.example.com\r\n\r\n");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.contains("retry-after: 60"), "{text}");
    }
}
