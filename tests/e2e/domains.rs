//! Custom domains, certificates and the built-in DNS server, against real Pebble (Let's
//! Encrypt's test CA), real DNS queries with `dig`, and HTTPS checked by curl with Pebble's
//! root. Everything listens on 127.0.0.1.

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use slipway_domains::pebble::{Pebble, PebbleOptions};

use crate::support::{Env, Server, eventually, text};

/// A free port for both UDP and TCP (the DNS server binds both on one port).
fn free_dns_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("a UDP port");
        let port = udp.local_addr().expect("its address").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

/// `dig` answers for `name` and `kind`, one record per line (`+short`), or the status line.
fn dig(port: u16, name: &str, kind: &str) -> String {
    let output = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=2"])
        .args([name, kind])
        .output()
        .expect("dig (Debian bind9-dnsutils) must be installed");
    assert!(output.status.success(), "dig failed: {}", text(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn dig_short(port: u16, name: &str, kind: &str) -> String {
    let output = Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+short",
            "+time=2",
            "+tries=2",
        ])
        .args([name, kind])
        .output()
        .expect("dig (Debian bind9-dnsutils) must be installed");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `curl` through the router's HTTPS port, resolving `host` to 127.0.0.1 and trusting only
/// `root`: (HTTP status, body), or the curl error as the body with status 0.
fn curl_https(env: &Env, host: &str, root: &Path) -> (u16, String) {
    curl(&[
        "--resolve",
        &format!("{host}:{}:127.0.0.1", env.https_port),
        "--cacert",
        &root.display().to_string(),
        &format!("https://{host}:{}/", env.https_port),
    ])
}

/// `curl` over plain HTTP without following redirects: (status, `Location`).
fn curl_http(env: &Env, host: &str, path: &str) -> (u16, String) {
    curl(&[
        "--resolve",
        &format!("{host}:{}:127.0.0.1", env.http_port),
        "-w",
        "%{redirect_url}",
        "-o",
        "/dev/null",
        &format!("http://{host}:{}{path}", env.http_port),
    ])
}

fn curl(args: &[&str]) -> (u16, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let status_file = dir.path().join("status");
    let output = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "10"])
        .args(["--write-out", "", "-D"])
        .arg(&status_file)
        .args(args)
        .output()
        .expect("curl (Debian curl) must be installed");
    if !output.status.success() {
        return (0, text(&output));
    }
    let headers = std::fs::read_to_string(&status_file).unwrap_or_default();
    let status = headers
        .lines()
        .rev()
        .find(|line| line.starts_with("HTTP/"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The serial of the certificate the router serves for `host`, read by openssl.
fn served_serial(env: &Env, host: &str) -> String {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{} -servername {host} </dev/null 2>/dev/null | openssl x509 -noout -serial",
        env.https_port
    );
    let output = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("openssl must be installed");
    text(&output).trim().to_owned()
}

struct Acme {
    pebble: Pebble,
    root: tempfile::NamedTempFile,
}

/// Pebble pointed at the router's HTTP port and Slipway's DNS server, with certificates that
/// live `validity`.
async fn pebble(env: &Env, dns_port: u16, validity: Duration) -> Acme {
    let pebble = Pebble::start(PebbleOptions {
        http_port: env.http_port,
        dns_server: ([127, 0, 0, 1], dns_port).into(),
        cert_validity: Some(validity),
    })
    .await
    .expect("pebble starts (Debian package `pebble`)");
    let root_pem = pebble
        .issuing_root_pem()
        .await
        .expect("pebble's issuing root");
    let root = tempfile::NamedTempFile::new().expect("root file");
    std::fs::write(root.path(), root_pem).expect("writing pebble's root");
    Acme { pebble, root }
}

fn start(env: &Env, dns_port: u16, acme: &Acme) -> Server {
    let dns = format!("127.0.0.1:{dns_port}");
    let directory = acme.pebble.directory_url();
    let ca = acme.pebble.listener_ca_path().display().to_string();
    env.start_server_with(&[
        "--apps-domain",
        "apps.test",
        "--public-ip",
        "127.0.0.1",
        "--dns-listen",
        &dns,
        "--dns-zones",
        "example.test",
        "--dns-resolver",
        &dns,
        "--acme-directory",
        &directory,
        "--acme-ca-bundle",
        &ca,
        "--acme-email",
        "ops@example.test",
    ])
}

/// A custom domain verifies through DNS, gets a Pebble certificate over HTTP-01 and serves
/// HTTPS; plain HTTP redirects; the wildcard for the apps domain comes over DNS-01 and a new
/// app is served over HTTPS at once; a short-lived certificate is renewed and the new one is
/// served without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn domains_get_certificates_that_renew_and_dns_follows_apps() {
    let env = Env::new();
    let dns_port = free_dns_port();
    let acme = pebble(&env, dns_port, Duration::from_secs(60)).await;
    let server = start(&env, dns_port, &acme);
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("dom", "static-server");
    env.push_ok(&repo);

    // The built-in DNS answers the app and the apex with the public IP, with SOA and NS.
    assert_eq!(
        dig_short(dns_port, &format!("{app}.apps.test"), "A"),
        "127.0.0.1"
    );
    assert_eq!(dig_short(dns_port, "apps.test", "A"), "127.0.0.1");
    assert!(dig(dns_port, "apps.test", "SOA").contains("status: NOERROR"));
    assert!(!dig_short(dns_port, "apps.test", "NS").is_empty());
    assert!(dig(dns_port, "nope.apps.test", "A").contains("status: NXDOMAIN"));

    let added = env.slipway_ok(&repo, &["domains:add", "www.example.test"]);
    assert!(added.contains(&format!("CNAME {app}.apps.test")), "{added}");
    assert!(added.contains("DNS already points here"), "{added}");
    assert!(
        dig_short(dns_port, "www.example.test", "A").contains(&format!("{app}.apps.test.")),
        "the delegated zone answers the custom domain with a CNAME to the app"
    );
    let waited = env.slipway(
        &repo,
        &["domains:wait", "www.example.test", "--timeout", "120"],
    );
    assert!(
        waited.status.success(),
        "{}\n{}\n{}",
        text(&waited),
        server.log_text(),
        acme.pebble.log()
    );
    let certs = env.slipway_ok(&repo, &["certs"]);
    assert!(certs.contains("www.example.test"), "{certs}");
    assert!(certs.contains("issued"), "{certs}");
    assert!(certs.to_lowercase().contains("pebble"), "{certs}");

    let (status, body) = curl_https(&env, "www.example.test", acme.root.path());
    assert_eq!(status, 200, "{body}\n{}", server.log_text());
    assert!(body.contains("index.txt"), "{body}");
    let (status, location) = curl_http(&env, "www.example.test", "/a?b=1");
    assert_eq!(status, 308, "{location}");
    assert_eq!(
        location,
        format!("https://www.example.test:{}/a?b=1", env.https_port)
    );
    let days = env
        .metric(
            "slipway_certificate_expiry_days",
            &[("domain", "www.example.test")],
        )
        .await
        .expect("days to expiry in /metrics");
    assert!(days > 0.0 && days < 1.0, "a 60 s certificate: {days} days");

    // The wildcard for the apps domain, over DNS-01: a new app answers over HTTPS at once.
    let wildcard_issued = eventually(Duration::from_secs(90), async || {
        env.slipway_ok(&repo, &["certs"])
            .lines()
            .any(|line| line.starts_with("*.apps.test") && line.contains("issued"))
    })
    .await;
    assert!(
        wildcard_issued,
        "{}\n{}",
        env.slipway_ok(&repo, &["certs"]),
        server.log_text()
    );
    let second = crate::support::unique_app("dom2");
    let _second_cleanup = crate::support::AppCleanup(second.clone());
    env.slipway_ok(&env.home(), &["apps:create", &second]);
    let host = format!("{second}.apps.test");
    let answered = eventually(Duration::from_secs(15), async || {
        dig_short(dns_port, &host, "A") == "127.0.0.1"
    })
    .await;
    assert!(answered, "the new app is in DNS");
    let (status, body) = curl_https(&env, &host, acme.root.path());
    assert_eq!(
        status, 503,
        "a valid wildcard certificate, no release yet: {body}"
    );
    env.slipway_ok(
        &env.home(),
        &["apps:destroy", "-a", &second, "--confirm", &second],
    );
    let gone = eventually(Duration::from_secs(15), async || {
        dig(dns_port, &host, "A").contains("status: NXDOMAIN")
    })
    .await;
    assert!(gone, "a destroyed app leaves DNS");

    // Renewal at two-thirds of a 60 s lifetime: a new serial, same server process.
    let first = served_serial(&env, "www.example.test");
    assert!(first.starts_with("serial="), "{first}");
    let renewed = eventually(Duration::from_secs(90), async || {
        let now = served_serial(&env, "www.example.test");
        now.starts_with("serial=") && now != first
    })
    .await;
    assert!(renewed, "still serving {first}\n{}", server.log_text());
    let (status, _) = curl_https(&env, "www.example.test", acme.root.path());
    assert_eq!(status, 200);

    // The CA goes away: the next renewal fails, `certs` says why and when it retries, and the
    // certificate issued before keeps serving until it expires.
    let serving = served_serial(&env, "www.example.test");
    let Acme { pebble, root } = acme;
    drop(pebble);
    let failed = eventually(Duration::from_secs(60), async || {
        let certs = env.slipway_ok(&repo, &["certs", "--json"]);
        let view: serde_json::Value = serde_json::from_str(&certs).expect("certs json");
        view["certs"].as_array().is_some_and(|certs| {
            certs.iter().any(|cert| {
                cert["domain"] == "www.example.test"
                    && cert["status"] == "failed"
                    && cert["last_error"].is_string()
                    && cert["next_attempt_at"].is_string()
            })
        })
    })
    .await;
    assert!(failed, "{}", env.slipway_ok(&repo, &["certs"]));
    assert_eq!(served_serial(&env, "www.example.test"), serving);
    let (status, body) = curl_https(&env, "www.example.test", root.path());
    assert_eq!(status, 200, "the old certificate still serves: {body}");

    env.slipway_ok(&repo, &["domains:remove", "www.example.test"]);
    let listed = env.slipway_ok(&repo, &["domains"]);
    assert!(!listed.contains("www.example.test"), "{listed}");
    let (status, _) = curl_http(&env, "www.example.test", "/");
    assert_eq!(status, 404, "a removed domain no longer routes");
    server.stop();
}

/// Bad domains and certificates are refused with a clear message; an ACME server that is
/// down shows in `certs` with the error and a retry time, and nothing else breaks.
#[tokio::test(flavor = "multi_thread")]
async fn bad_domains_certificates_and_a_dead_acme_server_are_reported() {
    let env = Env::new();
    let dns_port = free_dns_port();
    let dns = format!("127.0.0.1:{dns_port}");
    let dead = format!("https://127.0.0.1:{}/dir", free_dns_port());
    let server = env.start_server_with(&[
        "--apps-domain",
        "apps.test",
        "--public-ip",
        "127.0.0.1",
        "--dns-listen",
        &dns,
        "--dns-zones",
        "example.test",
        "--dns-resolver",
        &dns,
        "--acme-directory",
        &dead,
    ]);
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("baddom", "static-server");
    let (other, _other_cleanup, other_repo) = env.app_with_repo("otherdom", "static-server");

    for (bad, says) in [
        ("not a host", "is invalid"),
        ("-bad.example.test", "is invalid"),
        ("localhost", "is invalid"),
        ("web.apps.test", "under the apps domain"),
        ("*.elsewhere.test", "DNS-01"),
    ] {
        let out = env.slipway(&repo, &["domains:add", "--", bad]);
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(text(&out).contains(says), "{bad}: {}", text(&out));
    }
    env.slipway_ok(&repo, &["domains:add", "shop.example.test"]);
    // A domain whose DNS is elsewhere stays pending, saying what was found and what is needed.
    let outside = env.slipway_ok(&repo, &["domains:add", "www.outside.test"]);
    assert!(outside.contains("DNS does not point here yet"), "{outside}");
    assert!(
        outside.contains(&format!("CNAME {app}.apps.test")),
        "{outside}"
    );
    let listed = env.slipway_ok(&repo, &["domains"]);
    let row = listed
        .lines()
        .find(|line| line.starts_with("www.outside.test"))
        .unwrap_or_default();
    assert!(
        row.contains("pending") && row.contains("refused"),
        "{listed}"
    );
    let taken = env.slipway(&other_repo, &["domains:add", "SHOP.example.test."]);
    assert!(!taken.status.success());
    assert!(
        text(&taken).contains(&format!("already used by app `{app}`")),
        "{}",
        text(&taken)
    );
    let removed_elsewhere = env.slipway(&other_repo, &["domains:remove", "shop.example.test"]);
    assert!(!removed_elsewhere.status.success());
    assert!(text(&removed_elsewhere).contains(&format!("not attached to app `{other}`")));

    // A certificate and a key that do not belong together, and a certificate for no domain
    // of the app.
    let dir = tempfile::tempdir().expect("temp dir");
    let (chain, _) =
        slipway_domains::certs::self_signed(&["shop.example.test".into()]).expect("a cert");
    let (_, other_key) =
        slipway_domains::certs::self_signed(&["shop.example.test".into()]).expect("a key");
    let (stranger_chain, stranger_key) =
        slipway_domains::certs::self_signed(&["stranger.test".into()]).expect("a cert");
    for (name, content) in [
        ("chain.pem", &chain),
        ("other.key", &other_key),
        ("stranger.pem", &stranger_chain),
        ("stranger.key", &stranger_key),
    ] {
        std::fs::write(dir.path().join(name), content).expect("writing a pem");
    }
    let path = |name: &str| dir.path().join(name).display().to_string();
    let mismatch = env.slipway(
        &repo,
        &["certs:add", &path("chain.pem"), &path("other.key")],
    );
    assert!(!mismatch.status.success());
    assert!(
        text(&mismatch).contains("the key does not belong to the certificate"),
        "{}",
        text(&mismatch)
    );
    let swapped = env.slipway(
        &repo,
        &["certs:add", &path("other.key"), &path("chain.pem")],
    );
    assert!(!swapped.status.success());
    let stranger = env.slipway(
        &repo,
        &["certs:add", &path("stranger.pem"), &path("stranger.key")],
    );
    assert!(
        text(&stranger).contains("covers none of app"),
        "{}",
        text(&stranger)
    );

    // The ACME server is down: the failure and the next attempt show, and the domain still
    // routes over HTTP.
    let failed = eventually(Duration::from_secs(60), async || {
        let certs = env.slipway_ok(&repo, &["certs", "--json"]);
        let view: serde_json::Value = serde_json::from_str(&certs).expect("certs json");
        view["certs"].as_array().is_some_and(|certs| {
            certs.iter().any(|cert| {
                cert["domain"] == "shop.example.test"
                    && cert["status"] == "failed"
                    && cert["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("127.0.0.1"))
                    && cert["next_attempt_at"].is_string()
            })
        })
    })
    .await;
    assert!(
        failed,
        "{}\n{}",
        env.slipway_ok(&repo, &["certs"]),
        server.log_text()
    );
    env.slipway_ok(&repo, &["certs:auto:disable"]);
    assert!(
        env.slipway_ok(&repo, &["certs"])
            .contains("Automatic certificates: off")
    );
    assert!(!server.log_text().contains("BEGIN PRIVATE KEY"));
    server.stop();
}
