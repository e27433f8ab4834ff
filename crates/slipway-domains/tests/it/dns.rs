//! The built-in DNS server queried for real with `dig` (bind9-dnsutils) and with `DnsChecker`,
//! over UDP and TCP on 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use slipway_domains::check::{DnsCheck, DnsChecker};
use slipway_domains::dns::{DnsConfig, DnsError, DnsServer};
use slipway_types::{AppName, DomainName};
use tokio_util::sync::CancellationToken;

const LOCAL_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A server on 127.0.0.1:0, stopped when dropped.
struct TestDns {
    server: DnsServer,
    shutdown: CancellationToken,
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestDns {
    async fn start(apps_domain: &str, extra_zones: &[&str], public_ip: IpAddr) -> TestDns {
        let shutdown = CancellationToken::new();
        let config = DnsConfig {
            apps_domain: apps_domain.to_owned(),
            extra_zones: extra_zones.iter().map(|zone| (*zone).to_owned()).collect(),
            public_ip,
        };
        let server = DnsServer::start(local(0), config, shutdown.clone())
            .await
            .expect("DNS server starts on 127.0.0.1:0");
        TestDns { server, shutdown }
    }

    async fn dig(&self, name: &str, record_type: &str) -> Reply {
        dig(self.server.local_addr(), name, record_type, &[]).await
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::new(LOCAL_V4, port)
}

fn app(name: &str) -> AppName {
    name.parse().expect("valid app name")
}

fn domain(name: &str) -> DomainName {
    name.parse().expect("valid domain name")
}

#[derive(Debug)]
struct Reply {
    status: String,
    flags: Vec<String>,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rr {
    name: String,
    ttl: u32,
    record_type: String,
    data: String,
}

impl Reply {
    /// The data of the answer records of one type, sorted.
    fn data(&self, record_type: &str) -> Vec<String> {
        let mut data: Vec<String> = self
            .answer
            .iter()
            .filter(|rr| rr.record_type == record_type)
            .map(|rr| rr.data.clone())
            .collect();
        data.sort();
        data
    }

    fn assert_authoritative(&self) {
        assert!(self.flags.iter().any(|flag| flag == "aa"), "{self:?}");
    }

    /// NXDOMAIN or NODATA: no answer, the zone's SOA in authority.
    fn assert_negative(&self, status: &str, zone: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(self.answer.is_empty(), "{self:?}");
        assert!(
            self.authority
                .iter()
                .any(|rr| rr.record_type == "SOA" && rr.name == format!("{zone}.")),
            "no SOA of {zone} in authority: {self:?}"
        );
    }
}

/// Runs the real `dig` against `server`. A machine without dig fails the test.
async fn dig(server: SocketAddr, name: &str, record_type: &str, extra: &[&str]) -> Reply {
    let output = tokio::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string()])
        .args(["+time=2", "+tries=2", "+norecurse", "+nocookie"])
        .args(extra)
        .args([name, record_type])
        .output()
        .await
        .expect("`dig` must be installed (Debian package bind9-dnsutils)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "dig failed: {text}");
    parse_dig(&text)
}

fn parse_dig(text: &str) -> Reply {
    let status = text
        .lines()
        .find_map(|line| line.split("status: ").nth(1))
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no status in dig output:\n{text}"))
        .to_owned();
    let flags = text
        .lines()
        .find_map(|line| line.strip_prefix(";; flags: "))
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let section = |title: &str| -> Vec<Rr> {
        text.lines()
            .skip_while(|line| !line.starts_with(&format!(";; {title} SECTION:")))
            .skip(1)
            .take_while(|line| !line.trim().is_empty())
            .map(|line| {
                let mut fields = line.split_whitespace();
                let mut next = || fields.next().unwrap_or_default().to_owned();
                let (name, ttl, _class, record_type) = (next(), next(), next(), next());
                let data = fields.collect::<Vec<_>>().join(" ");
                Rr {
                    name,
                    ttl: ttl
                        .parse()
                        .unwrap_or_else(|_| panic!("bad TTL in {line:?}")),
                    record_type,
                    data,
                }
            })
            .collect()
    };
    Reply {
        status,
        flags,
        answer: section("ANSWER"),
        authority: section("AUTHORITY"),
    }
}

#[tokio::test]
async fn apps_zone_serves_apps_apex_soa_and_ns_over_udp() {
    let dns = TestDns::start("apps.test", &[], LOCAL_V4).await;
    dns.server.set_apps(&[app("web"), app("api")]).await;

    let web = dns.dig("web.apps.test", "A").await;
    assert_eq!(web.status, "NOERROR");
    web.assert_authoritative();
    assert_eq!(web.data("A"), ["127.0.0.1"]);
    assert_eq!(web.answer[0].ttl, 60);
    assert_eq!(dns.dig("API.apps.test", "A").await.data("A"), ["127.0.0.1"]);
    assert_eq!(dns.dig("apps.test", "A").await.data("A"), ["127.0.0.1"]);

    let soa = dns.dig("apps.test", "SOA").await;
    soa.assert_authoritative();
    let soa_data = soa.data("SOA");
    assert_eq!(soa_data.len(), 1);
    assert!(
        soa_data[0].starts_with("ns1.apps.test. hostmaster.apps.test. "),
        "{soa:?}"
    );

    assert_eq!(
        dns.dig("apps.test", "NS").await.data("NS"),
        ["ns1.apps.test."]
    );
    assert_eq!(dns.dig("ns1.apps.test", "A").await.data("A"), ["127.0.0.1"]);

    // The name exists with an A record only: NOERROR without answers.
    dns.dig("web.apps.test", "AAAA")
        .await
        .assert_negative("NOERROR", "apps.test");
}

#[tokio::test]
async fn a_v6_public_ip_is_served_as_aaaa() {
    let dns = TestDns::start("apps.test", &[], "::1".parse().unwrap()).await;
    dns.server.set_apps(&[app("web")]).await;

    let aaaa = dns.dig("web.apps.test", "AAAA").await;
    assert_eq!(aaaa.status, "NOERROR");
    assert_eq!(aaaa.data("AAAA"), ["::1"]);
    assert_eq!(dns.dig("apps.test", "AAAA").await.data("AAAA"), ["::1"]);
    dns.dig("web.apps.test", "A")
        .await
        .assert_negative("NOERROR", "apps.test");
}

#[tokio::test]
async fn unknown_names_are_nxdomain_and_foreign_names_refused() {
    let dns = TestDns::start("apps.test", &["example.com"], LOCAL_V4).await;

    let missing = dns.dig("missing.apps.test", "A").await;
    missing.assert_negative("NXDOMAIN", "apps.test");
    missing.assert_authoritative();
    // The SOA minimum caps negative caching, so a new app resolves within seconds.
    assert!(missing.authority.iter().all(|rr| rr.ttl <= 3600));
    dns.dig("nothing.example.com", "A")
        .await
        .assert_negative("NXDOMAIN", "example.com");

    for name in ["example.org", "www.example.org", "test", "com"] {
        let refused = dns.dig(name, "A").await;
        assert_eq!(refused.status, "REFUSED", "{name}: {refused:?}");
        assert!(refused.answer.is_empty());
    }
}

#[tokio::test]
async fn answers_over_tcp_too() {
    let dns = TestDns::start("apps.test", &[], LOCAL_V4).await;
    dns.server.set_apps(&[app("web")]).await;
    let addr = dns.server.local_addr();

    let reply = dig(addr, "web.apps.test", "A", &["+tcp"]).await;
    assert_eq!(reply.status, "NOERROR");
    assert_eq!(reply.data("A"), ["127.0.0.1"]);
    dig(addr, "gone.apps.test", "A", &["+tcp"])
        .await
        .assert_negative("NXDOMAIN", "apps.test");
}

#[tokio::test]
async fn records_follow_the_app_set_and_txt_values_at_run_time() {
    let dns = TestDns::start("apps.test", &[], LOCAL_V4).await;
    dns.dig("web.apps.test", "A")
        .await
        .assert_negative("NXDOMAIN", "apps.test");

    dns.server.set_apps(&[app("web")]).await;
    assert_eq!(dns.dig("web.apps.test", "A").await.data("A"), ["127.0.0.1"]);

    dns.server.set_apps(&[app("other")]).await;
    dns.dig("web.apps.test", "A")
        .await
        .assert_negative("NXDOMAIN", "apps.test");
    assert_eq!(
        dns.dig("other.apps.test", "A").await.data("A"),
        ["127.0.0.1"]
    );

    // A wildcard and its apex validate at the same name at once.
    let challenge = "_acme-challenge.apps.test";
    dns.server.add_txt(challenge, "token-for-wildcard").await;
    dns.server
        .add_txt("_ACME-challenge.apps.test.", "token-for-apex")
        .await;
    let both = dns.dig(challenge, "TXT").await;
    assert_eq!(
        both.data("TXT"),
        ["\"token-for-apex\"", "\"token-for-wildcard\""]
    );
    assert!(both.answer.iter().all(|rr| rr.ttl <= 10), "{both:?}");

    dns.server.remove_txt(challenge, "token-for-wildcard").await;
    assert_eq!(
        dns.dig(challenge, "TXT").await.data("TXT"),
        ["\"token-for-apex\""]
    );
    dns.server.remove_txt(challenge, "token-for-apex").await;
    dns.dig(challenge, "TXT")
        .await
        .assert_negative("NXDOMAIN", "apps.test");

    // Outside every zone: ignored, still refused.
    dns.server.add_txt("_acme-challenge.example.org", "x").await;
    assert_eq!(
        dns.dig("_acme-challenge.example.org", "TXT").await.status,
        "REFUSED"
    );
}

#[tokio::test]
async fn custom_domains_in_extra_zones_are_cnames_to_the_app() {
    let dns = TestDns::start("apps.test", &["example.com", "shop.example.net"], LOCAL_V4).await;
    dns.server.set_apps(&[app("web"), app("store")]).await;
    dns.server
        .set_custom_domains(&[
            (domain("www.example.com"), app("web")),
            (domain("example.com"), app("web")),
            (domain("*.shop.example.net"), app("store")),
            (domain("www.elsewhere.org"), app("web")),
        ])
        .await;

    assert_eq!(
        dns.dig("www.example.com", "CNAME").await.data("CNAME"),
        ["web.apps.test."]
    );
    // An A query gets the CNAME and, as the server is authoritative for the target too, the
    // target's address: stub resolvers (Pebble's validator) need no second query.
    let www = dns.dig("www.example.com", "A").await;
    assert_eq!(www.status, "NOERROR");
    assert_eq!(www.data("CNAME"), ["web.apps.test."]);
    assert_eq!(www.data("A"), ["127.0.0.1"]);
    assert_eq!(
        dns.dig("any.shop.example.net", "CNAME").await.data("CNAME"),
        ["store.apps.test."]
    );
    // No CNAME may sit at a zone apex: the apex answers with the address.
    assert_eq!(dns.dig("example.com", "A").await.data("A"), ["127.0.0.1"]);
    assert_eq!(
        dns.dig("example.com", "NS").await.data("NS"),
        ["ns1.apps.test."]
    );
    assert_eq!(dns.dig("www.elsewhere.org", "A").await.status, "REFUSED");

    dns.server
        .add_txt("_acme-challenge.www.example.com", "dns-01-token")
        .await;
    assert_eq!(
        dns.dig("_acme-challenge.www.example.com", "TXT")
            .await
            .data("TXT"),
        ["\"dns-01-token\""]
    );

    dns.server.set_custom_domains(&[]).await;
    dns.dig("any.shop.example.net", "CNAME")
        .await
        .assert_negative("NXDOMAIN", "shop.example.net");
    // The TXT record below it keeps www.example.com an empty non-terminal: NODATA.
    dns.dig("www.example.com", "CNAME")
        .await
        .assert_negative("NOERROR", "example.com");
    dns.server
        .remove_txt("_acme-challenge.www.example.com", "dns-01-token")
        .await;
    dns.dig("www.example.com", "CNAME")
        .await
        .assert_negative("NXDOMAIN", "example.com");

    assert!(dns.server.is_authoritative_for(&domain("www.example.com")));
    assert!(
        dns.server
            .is_authoritative_for(&domain("*.shop.example.net"))
    );
    assert!(dns.server.is_authoritative_for(&domain("web.apps.test")));
    assert!(!dns.server.is_authoritative_for(&domain("example.net")));
    assert!(
        !dns.server
            .is_authoritative_for(&domain("www.notexample.com"))
    );
}

#[tokio::test]
async fn the_default_one_label_apps_domain_works() {
    let dns = TestDns::start("localhost", &[], LOCAL_V4).await;
    dns.server.set_apps(&[app("web")]).await;
    assert_eq!(dns.dig("web.localhost", "A").await.data("A"), ["127.0.0.1"]);
    assert_eq!(
        dns.dig("localhost", "NS").await.data("NS"),
        ["ns1.localhost."]
    );
    assert!(dns.server.is_authoritative_for(&domain("web.localhost")));
}

#[tokio::test]
async fn bad_config_and_busy_addresses_fail_start_naming_them() {
    let config = |apps_domain: &str, extra: &[&str]| DnsConfig {
        apps_domain: apps_domain.to_owned(),
        extra_zones: extra.iter().map(|zone| (*zone).to_owned()).collect(),
        public_ip: LOCAL_V4,
    };
    let start = |config| DnsServer::start(local(0), config, CancellationToken::new());

    let error = start(config("apps_test", &[])).await.err().unwrap();
    assert!(matches!(error, DnsError::InvalidZone(ref zone) if zone == "apps_test"));
    assert!(error.to_string().contains("`apps_test`"), "{error}");
    let error = start(config("apps.test", &["ok.test", "*.bad.test"]))
        .await
        .err()
        .unwrap();
    assert!(error.to_string().contains("`*.bad.test`"), "{error}");
    let error = start(config("apps.test", &["Apps.Test."]))
        .await
        .err()
        .unwrap();
    assert!(matches!(error, DnsError::DuplicateZone(_)), "{error}");

    let dns = TestDns::start("apps.test", &[], LOCAL_V4).await;
    let busy = dns.server.local_addr();
    let error = DnsServer::start(busy, config("apps.test", &[]), CancellationToken::new())
        .await
        .err()
        .unwrap();
    let message = error.to_string();
    assert!(message.contains(&busy.to_string()), "{message}");
    assert!(message.contains("--dns-listen"), "{message}");
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let dns = TestDns::start("apps.test", &[], LOCAL_V4).await;
    let addr = dns.server.local_addr();
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    dns.shutdown.cancel();
    let mut closed = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        closed,
        "DNS server still accepts TCP on {addr} after shutdown"
    );
}

#[tokio::test]
async fn checker_verifies_cnames_and_addresses_against_the_server() {
    let dns = TestDns::start("apps.test", &["example.com"], LOCAL_V4).await;
    dns.server.set_apps(&[app("web")]).await;
    dns.server
        .set_custom_domains(&[
            (domain("www.example.com"), app("web")),
            (domain("*.example.com"), app("web")),
            (domain("old.example.com"), app("gone")),
        ])
        .await;
    let checker = DnsChecker::with_nameserver(dns.server.local_addr());
    let check = |name: &str, target: &str, ip: IpAddr| {
        let name = domain(name);
        let target = target.to_owned();
        let checker = checker.clone();
        async move { checker.check(&name, &target, ip).await }
    };

    assert_eq!(
        check("www.example.com", "web.apps.test", LOCAL_V4).await,
        DnsCheck::Verified {
            record: "CNAME web.apps.test".to_owned()
        }
    );
    assert_eq!(
        check("*.example.com", "web.apps.test", LOCAL_V4).await,
        DnsCheck::Verified {
            record: "CNAME web.apps.test".to_owned()
        }
    );
    assert_eq!(
        check("web.apps.test", "web.apps.test", LOCAL_V4).await,
        DnsCheck::Verified {
            record: "A 127.0.0.1".to_owned()
        }
    );

    assert_eq!(
        check(
            "web.apps.test",
            "web.apps.test",
            "10.1.2.3".parse().unwrap()
        )
        .await,
        DnsCheck::Pending {
            found: "A 127.0.0.1 (expected 10.1.2.3)".to_owned()
        }
    );
    // A CNAME elsewhere still counts when it lands on the public ip only.
    assert_eq!(
        check("www.example.com", "api.apps.test", LOCAL_V4).await,
        DnsCheck::Verified {
            record: "CNAME web.apps.test → A 127.0.0.1".to_owned()
        }
    );
    assert_eq!(
        check("old.example.com", "web.apps.test", LOCAL_V4).await,
        DnsCheck::Pending {
            found: "CNAME gone.apps.test (expected web.apps.test)".to_owned()
        }
    );
    assert_eq!(
        check("missing.apps.test", "missing.apps.test", LOCAL_V4).await,
        DnsCheck::Pending {
            found: "no record".to_owned()
        }
    );
    assert_eq!(
        check("www.example.org", "web.apps.test", LOCAL_V4).await,
        DnsCheck::Pending {
            found: "lookup failed: query refused".to_owned()
        }
    );

    // Changed records are seen by the next check: nothing is cached across checks.
    dns.server.set_apps(&[]).await;
    assert_eq!(
        check("web.apps.test", "web.apps.test", LOCAL_V4).await,
        DnsCheck::Pending {
            found: "no record".to_owned()
        }
    );
    dns.server.set_apps(&[app("web")]).await;
    assert!(matches!(
        check("web.apps.test", "web.apps.test", LOCAL_V4).await,
        DnsCheck::Verified { .. }
    ));
}
