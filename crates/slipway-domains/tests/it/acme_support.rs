//! A real ACME world on 127.0.0.1 for the issuance tests: Pebble, `pebble-challtestsrv` as the
//! DNS server Pebble resolves through (A answers 127.0.0.1; TXT records set over its management
//! API), and a tiny HTTP-01 responder on the port Pebble's validator connects to.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use slipway_domains::acme::{AcmeConfig, Challenge, ChallengeSolver};
use slipway_domains::pebble::{Pebble, PebbleOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";
const IO_TIMEOUT: Duration = Duration::from_secs(5);

pub struct AcmeWorld {
    pub pebble: Pebble,
    dns: ChallTestSrv,
    answers: Answers,
    responder: JoinHandle<()>,
}

impl Drop for AcmeWorld {
    fn drop(&mut self) {
        self.responder.abort();
    }
}

type Answers = Arc<Mutex<HashMap<String, String>>>;

impl AcmeWorld {
    pub async fn start(cert_validity: Option<Duration>) -> AcmeWorld {
        let dns = ChallTestSrv::start().await;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the http-01 responder");
        let http_port = listener.local_addr().expect("responder address").port();
        let answers = Answers::default();
        let responder = tokio::spawn(serve_http_01(listener, answers.clone()));
        let pebble = Pebble::start(PebbleOptions {
            http_port,
            dns_server: dns.dns,
            cert_validity,
        })
        .await
        .unwrap_or_else(|err| panic!("{err}"));
        AcmeWorld {
            pebble,
            dns,
            answers,
            responder,
        }
    }

    pub fn config(&self) -> AcmeConfig {
        AcmeConfig {
            directory: self.pebble.directory_url(),
            contact_email: Some("ops@example.test".into()),
            ca_bundle: Some(self.pebble.listener_ca_path().to_owned()),
        }
    }

    /// A solver that answers challenges honestly, or with a wrong key authorization.
    pub fn solver(&self, honest: bool) -> TestSolver {
        TestSolver {
            answers: self.answers.clone(),
            management: self.dns.management,
            honest,
            events: Mutex::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Presented(Challenge),
    CleanedUp(Challenge),
}

pub struct TestSolver {
    answers: Answers,
    management: SocketAddr,
    honest: bool,
    events: Mutex<Vec<Event>>,
}

impl TestSolver {
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("solver state lock").clone()
    }

    /// Every presented challenge was cleaned up, after it was presented.
    pub fn assert_all_cleaned_up(&self) {
        let events = self.events();
        for (at, event) in events.iter().enumerate() {
            if let Event::Presented(challenge) = event {
                assert!(
                    events[at..].contains(&Event::CleanedUp(challenge.clone())),
                    "{challenge:?} was not cleaned up: {events:?}"
                );
            }
        }
        let left = self.answers.lock().expect("solver state lock").len();
        assert_eq!(left, 0, "http-01 answers left behind");
    }
}

#[async_trait]
impl ChallengeSolver for TestSolver {
    async fn present(&self, challenge: &Challenge) -> Result<(), String> {
        self.events
            .lock()
            .expect("solver state lock")
            .push(Event::Presented(challenge.clone()));
        match challenge {
            Challenge::Http01 {
                token,
                key_authorization,
            } => {
                let answer = if self.honest {
                    key_authorization.clone()
                } else {
                    format!("{token}.not-this-account")
                };
                self.answers
                    .lock()
                    .expect("solver state lock")
                    .insert(token.clone(), answer);
                Ok(())
            }
            Challenge::Dns01 { name, value } => {
                let value = if self.honest {
                    value.clone()
                } else {
                    "wrong".into()
                };
                let body = serde_json::json!({ "host": format!("{name}."), "value": value });
                post(self.management, "/set-txt", &body.to_string()).await
            }
        }
    }

    async fn clean_up(&self, challenge: &Challenge) {
        match challenge {
            Challenge::Http01 { token, .. } => {
                self.answers
                    .lock()
                    .expect("solver state lock")
                    .remove(token);
            }
            Challenge::Dns01 { name, .. } => {
                let body = serde_json::json!({ "host": format!("{name}.") });
                post(self.management, "/clear-txt", &body.to_string())
                    .await
                    .unwrap_or_else(|err| panic!("{err}"));
            }
        }
        self.events
            .lock()
            .expect("solver state lock")
            .push(Event::CleanedUp(challenge.clone()));
    }
}

/// Answers `GET /.well-known/acme-challenge/{token}` from `answers`, one request per connection.
async fn serve_http_01(listener: TcpListener, answers: Answers) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let answers = answers.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(IO_TIMEOUT, answer(stream, answers)).await;
        });
    }
}

async fn answer(mut stream: TcpStream, answers: Answers) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let request = String::from_utf8_lossy(&request);
    let path = request.split_whitespace().nth(1).unwrap_or_default();
    let body = path
        .strip_prefix("/.well-known/acme-challenge/")
        .and_then(|token| {
            answers
                .lock()
                .expect("solver state lock")
                .get(token)
                .cloned()
        });
    let response = match body {
        Some(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// A JSON POST to pebble-challtestsrv's plain-HTTP management API.
/// `post_once`, tried up to three times: under load the management server now and then closes
/// a connection without answering.
async fn post(management: SocketAddr, path: &str, body: &str) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..3 {
        match post_once(management, path, body).await {
            Ok(()) => return Ok(()),
            Err(error) => last = error,
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    Err(last)
}

async fn post_once(management: SocketAddr, path: &str, body: &str) -> Result<(), String> {
    let exchange = async {
        let mut stream = TcpStream::connect(management).await?;
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {management}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(IO_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{path}: no answer"))?
        .map_err(|err| format!("{path}: {err}"))?;
    if response.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!("{path}: {response}"))
    }
}

/// `pebble-challtestsrv` as a DNS server only: A queries answer 127.0.0.1, AAAA nothing, so
/// Pebble's validator reaches the responder on 127.0.0.1.
struct ChallTestSrv {
    _child: Child,
    dns: SocketAddr,
    management: SocketAddr,
}

impl ChallTestSrv {
    async fn start() -> ChallTestSrv {
        assert!(
            std::path::Path::new(CHALLTESTSRV).is_file(),
            "{CHALLTESTSRV} is missing: apt-get install pebble-challtestsrv"
        );
        let dns = free_port();
        let management = free_port();
        let child = Command::new(CHALLTESTSRV)
            .args(["-dns01", &dns.to_string()])
            .args(["-management", &management.to_string()])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn pebble-challtestsrv");
        for _ in 0..100 {
            if TcpStream::connect(management).await.is_ok() && TcpStream::connect(dns).await.is_ok()
            {
                return ChallTestSrv {
                    _child: child,
                    dns,
                    management,
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pebble-challtestsrv did not listen on {dns} and {management} within 5s");
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
}
