//! Log drains: an HTTPS receiver and a syslog+tls receiver of the test's own (on 127.0.0.1,
//! with a certificate from a test CA the server is told to trust) get every line of a deploy,
//! in order; while they are down the router keeps answering, the buffered lines arrive once
//! they are back, and what did not fit is counted.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::support::{Env, eventually};

/// Lines each drain may buffer in this test: small, so the outage overflows it.
const BUFFER_LINES: usize = 300;
/// Requests sent through the router while the receivers are down: more than the buffer.
const REQUESTS_WHILE_DOWN: usize = 700;
/// How long the receivers stay down.
const OUTAGE: Duration = Duration::from_secs(30);
/// Every wait for lines gives up after this long.
const PATIENCE: Duration = Duration::from_secs(90);

/// A certificate for 127.0.0.1 from a CA of the test's own.
struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key_pem: String,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Slipway drains test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("leaf params")
            .signed_by(&key, &issuer)
            .expect("leaf certificate");
        Pki {
            ca_pem: issuer.pem(),
            chain: vec![leaf.der().clone(), issuer.der().clone()],
            key_pem: key.serialize_pem(),
        }
    }

    fn acceptor(&self) -> TlsAcceptor {
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("leaf key PEM");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(self.chain.clone(), key)
        .expect("server certificate");
        TlsAcceptor::from(Arc::new(config))
    }
}

/// What a receiver got: each message as `slipway logs` renders the line it came from.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<String>>>);

impl Received {
    fn lines(&self) -> Vec<String> {
        self.0.lock().expect("received lines").clone()
    }

    fn extend(&self, lines: impl IntoIterator<Item = String>) {
        self.0.lock().expect("received lines").extend(lines);
    }
}

#[derive(Clone, Copy)]
enum Protocol {
    Https,
    SyslogTls,
}

/// A receiver listening on a fixed port until stopped; started again on the same port.
struct Receiver {
    protocol: Protocol,
    port: u16,
    acceptor: TlsAcceptor,
    received: Received,
    /// Requests that broke the logplex contract (wrong headers or count).
    problems: Received,
    tasks: Option<JoinSet<()>>,
}

impl Receiver {
    async fn start(protocol: Protocol, acceptor: TlsAcceptor) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let mut receiver = Receiver {
            protocol,
            port: listener.local_addr().expect("receiver address").port(),
            acceptor,
            received: Received::default(),
            problems: Received::default(),
            tasks: None,
        };
        receiver.serve(listener);
        receiver
    }

    fn serve(&mut self, listener: TcpListener) {
        let mut tasks = JoinSet::new();
        let (protocol, acceptor) = (self.protocol, self.acceptor.clone());
        let (received, problems) = (self.received.clone(), self.problems.clone());
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, received, problems) =
                    (acceptor.clone(), received.clone(), problems.clone());
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    match protocol {
                        Protocol::Https => serve_https(tls, &received, &problems).await,
                        Protocol::SyslogTls => serve_syslog(tls, &received).await,
                    }
                });
            }
        });
        self.tasks = Some(tasks);
    }

    /// Closes the listener and every connection: the drain finds nobody there.
    async fn stop(&mut self) {
        if let Some(mut tasks) = self.tasks.take() {
            tasks.shutdown().await;
        }
    }

    async fn restart(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the receiver's port again");
        self.serve(listener);
    }
}

/// Reads octet-counted messages until the connection ends.
async fn serve_syslog(mut conn: impl AsyncRead + Unpin, received: &Received) {
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let lines = split_frames(&mut pending);
        received.extend(lines);
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(read) => pending.extend_from_slice(&buf[..read]),
        }
    }
}

/// Answers logplex POSTs (HTTP/1.1, keep-alive) with 204.
async fn serve_https(
    mut conn: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    received: &Received,
    problems: &Received,
) {
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Some(head_end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(read) => pending.extend_from_slice(&buf[..read]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
        let header = |name: &str| {
            head.lines()
                .find_map(|line| line.strip_prefix(&format!("{name}: ")))
                .map(str::to_owned)
        };
        let length: usize = header("content-length")
            .and_then(|len| len.parse().ok())
            .unwrap_or(0);
        while pending.len() < head_end + 4 + length {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(read) => pending.extend_from_slice(&buf[..read]),
            }
        }
        let mut body: Vec<u8> = pending[head_end + 4..head_end + 4 + length].to_vec();
        pending.drain(..head_end + 4 + length);
        let lines = split_frames(&mut body);
        let count = header("logplex-msg-count").and_then(|n| n.parse::<usize>().ok());
        // `user:s3cret` in Basic authentication.
        let authorized = header("authorization").as_deref() == Some("basic dxnlcjpzm2nyzxq=");
        if !head.starts_with("post /logs?token=t0k3n ")
            || header("content-type").as_deref() != Some("application/logplex-1")
            || count != Some(lines.len())
            || !authorized
            || header("logplex-drain-token").is_none_or(|t| !t.starts_with("d."))
            || header("logplex-frame-id").is_none()
            || !body.is_empty()
        {
            problems.extend([head.clone()]);
        }
        received.extend(lines);
        let reply = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
        if conn.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// Takes the whole octet-counted syslog messages off the front of `pending` and renders each
/// as `slipway logs` shows the line: `TIMESTAMP APP-NAME[PROCID]: MSG`. RFC 5424 messages have
/// a `-` STRUCTURED-DATA before MSG; logplex ones do not.
fn split_frames(pending: &mut Vec<u8>) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let Some(space) = pending.iter().position(|b| *b == b' ') else {
            return lines;
        };
        let len: usize = std::str::from_utf8(&pending[..space])
            .ok()
            .and_then(|len| len.parse().ok())
            .expect("an octet count before each message");
        if pending.len() < space + 1 + len {
            return lines;
        }
        let message = String::from_utf8_lossy(&pending[space + 1..space + 1 + len]).into_owned();
        pending.drain(..space + 1 + len);
        let fields: Vec<&str> = message.splitn(7, ' ').collect();
        let [_pri, at, _host, name, procid, _msgid, rest] = fields[..] else {
            panic!("not a syslog message: {message}");
        };
        let text = rest.strip_prefix("- ").unwrap_or(rest);
        lines.push(format!("{at} {name}[{procid}]: {text}"));
    }
}

/// The drains as `slipway drains --json` lists them.
fn drains(env: &Env, app: &str) -> Vec<Value> {
    let json = env.slipway_ok(&env.home(), &["drains", "-a", app, "--json"]);
    serde_json::from_str::<Value>(&json)
        .expect("drains JSON")
        .as_array()
        .expect("a list of drains")
        .clone()
}

fn drain_field(drains: &[Value], id: &str, field: &str) -> Value {
    drains
        .iter()
        .find(|drain| drain["id"] == id)
        .unwrap_or_else(|| panic!("drain {id} is listed"))[field]
        .clone()
}

/// The app's log from its line announcing drain `id` on, as `slipway logs` prints it.
fn log_since_drain_added(env: &Env, app: &str, id: &str) -> Vec<String> {
    let log = env.slipway_ok(&env.home(), &["logs", "-a", app, "-n", "10000"]);
    let lines: Vec<String> = log.lines().map(str::to_owned).collect();
    let start = lines
        .iter()
        .position(|line| line.contains(&format!("Add drain {id} ")))
        .unwrap_or_else(|| panic!("the app's log announces drain {id}:\n{log}"));
    lines[start..].to_vec()
}

async fn get(client: &reqwest::Client, env: &Env, app: &str, path: &str) -> u16 {
    client
        .get(format!("http://{app}.localhost:{}{path}", env.http_port))
        .send()
        .await
        .map(|response| response.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn drains_get_every_line_in_order_and_count_what_an_outage_drops() {
    let env = Env::new();
    let pki = Pki::new();
    let ca = env.root.path().join("drains-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).expect("writing the test CA");
    let buffer = BUFFER_LINES.to_string();
    let server = env.start_server_with(&[
        "--drain-ca-bundle",
        ca.to_str().expect("utf-8 path"),
        "--drain-buffer-lines",
        &buffer,
    ]);
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("drains", "static-server");

    let mut https = Receiver::start(Protocol::Https, pki.acceptor()).await;
    let mut syslog = Receiver::start(Protocol::SyslogTls, pki.acceptor()).await;
    let https_url = format!(
        "https://user:s3cret@127.0.0.1:{}/logs?token=t0k3n",
        https.port
    );
    let syslog_url = format!("syslog+tls://127.0.0.1:{}", syslog.port);
    for url in [&https_url, &syslog_url] {
        let added = env.slipway_ok(&repo, &["drains:add", url]);
        assert!(added.contains("Added drain"), "{added}");
        assert!(
            !added.contains("s3cret") && !added.contains("t0k3n"),
            "{added}"
        );
    }
    let bad = env.slipway(&repo, &["drains:add", "ftp://user:pw@127.0.0.1/"]);
    assert!(!bad.status.success());
    let bad = crate::support::text(&bad);
    assert!(
        bad.contains("must start with") && !bad.contains("pw@"),
        "{bad}"
    );

    let listing = env.slipway_ok(&repo, &["drains"]);
    assert!(
        listing.contains(&format!("https://user:…@127.0.0.1:{}/logs?…", https.port)),
        "{listing}"
    );
    assert!(
        listing.contains(&syslog_url) && !listing.contains("s3cret"),
        "{listing}"
    );
    let listed = drains(&env, &app);
    let id_of = |kind: &str| {
        listed
            .iter()
            .find(|drain| drain["kind"] == kind)
            .and_then(|drain| drain["id"].as_str())
            .expect("both drains are listed")
            .to_owned()
    };
    let (https_id, syslog_id) = (id_of("https"), id_of("syslog_tls"));

    // A whole deploy: build output, release and process lines, then router lines.
    env.push_ok(&repo);
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve(
            &format!("{app}.localhost"),
            ([127, 0, 0, 1], env.http_port).into(),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    assert!(
        eventually(Duration::from_secs(60), async || {
            get(&client, &env, &app, "/").await == 200
        })
        .await,
        "the app answers after the deploy:\n{}",
        server.log_text()
    );
    for (receiver, id) in [(&https, &https_id), (&syslog, &syslog_id)] {
        let expected = log_since_drain_added(&env, &app, id);
        let arrived = eventually(PATIENCE, async || {
            receiver.received.lines().len() >= expected.len()
        })
        .await;
        let got = receiver.received.lines();
        assert!(
            arrived,
            "drain {id} got {} of {} lines:\n{}",
            got.len(),
            expected.len(),
            got.join("\n")
        );
        assert_eq!(got[..expected.len()], expected[..], "drain {id}");
        assert!(
            expected.iter().any(|line| line.contains("slipway[build]")),
            "the deploy's build output is among the lines"
        );
    }
    assert!(
        https.problems.lines().is_empty(),
        "{:?}",
        https.problems.lines()
    );

    // The receivers go down for OUTAGE; the router keeps answering meanwhile.
    let outage_start = std::time::Instant::now();
    https.stop().await;
    syslog.stop().await;
    let (https_before, syslog_before) =
        (https.received.lines().len(), syslog.received.lines().len());
    for n in 0..REQUESTS_WHILE_DOWN {
        let status = get(&client, &env, &app, &format!("/?outage={n}")).await;
        assert_eq!(status, 200, "request {n} while the drains are down");
    }
    assert!(
        eventually(PATIENCE, async || {
            let listed = drains(&env, &app);
            [&https_id, &syslog_id].iter().all(|id| {
                drain_field(&listed, id, "dropped").as_u64() > Some(0)
                    && !drain_field(&listed, id, "last_error").is_null()
            })
        })
        .await,
        "both drains count drops and say why delivery fails: {:?}",
        drains(&env, &app)
    );
    let dropped_metric = env
        .metric(
            "slipway_drain_dropped_total",
            &[("app", &app), ("drain", &https_id)],
        )
        .await;
    assert!(dropped_metric > Some(0.0), "{dropped_metric:?}");
    let log = env.slipway_ok(&repo, &["logs", "-n", "10000", "--source", "platform"]);
    assert!(
        log.contains(&format!("Drain {https_id} ")) && log.contains("is dropping lines"),
        "{log}"
    );
    tokio::time::sleep(OUTAGE.saturating_sub(outage_start.elapsed())).await;

    // Back: what the buffers kept arrives, in order, the last request's line included.
    https.restart().await;
    syslog.restart().await;
    let last = format!("path=\"/?outage={}\"", REQUESTS_WHILE_DOWN - 1);
    for (receiver, id, before) in [
        (&https, &https_id, https_before),
        (&syslog, &syslog_id, syslog_before),
    ] {
        // Each request has a router line and a line of the app's own output; the buffer keeps
        // the newest BUFFER_LINES of them, and a batch was in flight when the outage began.
        let arrived = eventually(PATIENCE, async || {
            let lines = receiver.received.lines();
            lines[before..].iter().any(|line| line.contains(&last))
                && lines.len() - before >= BUFFER_LINES
        })
        .await;
        assert!(
            arrived,
            "drain {id}'s buffered lines never all arrived: {} did",
            receiver.received.lines().len() - before
        );
        let outage_lines: Vec<usize> = receiver.received.lines()[before..]
            .iter()
            .filter_map(|line| {
                let rest = line.split("path=\"/?outage=").nth(1)?;
                rest.split('"').next()?.parse().ok()
            })
            .collect();
        assert!(
            outage_lines.windows(2).all(|w| w[0] < w[1]),
            "drain {id} got the outage's lines out of order: {outage_lines:?}"
        );
        let dropped = drain_field(&drains(&env, &app), id, "dropped")
            .as_u64()
            .expect("a drop count");
        assert!(
            outage_lines.len() as u64 + dropped >= REQUESTS_WHILE_DOWN as u64,
            "drain {id}: {} arrived and {dropped} were dropped of {REQUESTS_WHILE_DOWN}",
            outage_lines.len()
        );
    }
    assert!(
        https.problems.lines().is_empty(),
        "{:?}",
        https.problems.lines()
    );

    env.slipway_ok(&repo, &["drains:remove", &https_id]);
    env.slipway_ok(&repo, &["drains:remove", &syslog_url]);
    assert!(drains(&env, &app).is_empty());
    https.stop().await;
    syslog.stop().await;
    server.stop();
}
