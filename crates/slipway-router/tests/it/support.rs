//! Upstreams, a router under test, and clients.

use std::convert::Infallible;
use std::error::Error;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Channel, Empty, Full};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use slipway_router::{Router, RouterConfig};
use slipway_types::{Backend, RouteSnapshot, SiteRoutes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

/// Every wait in these tests gives up after this long and fails the test.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub const HOST: &str = "demo.example.com";

/// The port the router claims clients connected to, distinct from its real port on purpose.
pub const PUBLIC_PORT: u16 = 8080;

/// The HTTPS port the router claims, likewise distinct from the one it binds.
pub const PUBLIC_HTTPS_PORT: u16 = 8443;

type UpstreamBody = BoxBody<Bytes, Infallible>;

/// What `/gigabyte` sends: 1 GiB made of one static chunk, so the upstream allocates nothing.
pub const GIGABYTE: usize = 1 << 30;
static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

/// A tiny app process. Every response carries `x-dyno`; paths:
/// - `/slow` and the second half of `/stream` wait for [`Upstream::release`];
/// - `/sleep` never answers in time;
/// - `/upload` reports the first body chunk as soon as it arrives, then echoes the whole body;
/// - `/ws` switches to an echo protocol, `/websocket` to a WebSocket echo;
/// - `/gigabyte` streams 1 GiB;
/// - anything else echoes the request line and headers as `name: value` lines.
pub struct Upstream {
    pub addr: SocketAddr,
    pub dyno: String,
    gate: Arc<Semaphore>,
    first_chunks: Mutex<mpsc::UnboundedReceiver<Bytes>>,
}

struct UpstreamState {
    dyno: String,
    gate: Arc<Semaphore>,
    first_chunks: mpsc::UnboundedSender<Bytes>,
}

impl Upstream {
    pub async fn start(dyno: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let gate = Arc::new(Semaphore::new(0));
        let (first_chunks_tx, first_chunks) = mpsc::unbounded_channel();
        let state = Arc::new(UpstreamState {
            dyno: dyno.to_owned(),
            gate: Arc::clone(&gate),
            first_chunks: first_chunks_tx,
        });
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = service_fn(move |req| upstream_service(req, Arc::clone(&state)));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Upstream {
            addr,
            dyno: dyno.to_owned(),
            gate,
            first_chunks: Mutex::new(first_chunks),
        }
    }

    /// Lets one waiting `/slow` request or `/stream` response finish.
    pub fn release(&self) {
        self.gate.add_permits(1);
    }

    /// The first chunk of the next `/upload` body, as soon as the upstream has it.
    pub async fn first_upload_chunk(&self) -> Bytes {
        let mut chunks = self.first_chunks.lock().await;
        tokio::time::timeout(PATIENCE, chunks.recv())
            .await
            .expect("upload chunk in time")
            .expect("upstream running")
    }

    pub fn backend(&self) -> Backend {
        Backend {
            addr: self.addr,
            id: format!("upstream-{}", self.addr),
            dyno: self.dyno.clone(),
            release: "v1.0.0".to_owned(),
        }
    }
}

async fn upstream_service(
    mut req: Request<Incoming>,
    state: Arc<UpstreamState>,
) -> Result<Response<UpstreamBody>, Infallible> {
    let body = match req.uri().path() {
        "/slow" => {
            wait(&state.gate).await;
            full("slow done")
        }
        "/sleep" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            full("too late")
        }
        "/stream" => {
            let (mut tx, body) = Channel::<Bytes>::new(1);
            let gate = Arc::clone(&state.gate);
            tokio::spawn(async move {
                let _ = tx.send_data(Bytes::from_static(b"first\n")).await;
                wait(&gate).await;
                let _ = tx.send_data(Bytes::from_static(b"last\n")).await;
            });
            body.boxed()
        }
        "/upload" => {
            let mut received = Vec::new();
            let mut first = true;
            while let Some(frame) = req.body_mut().frame().await {
                if let Ok(data) = frame.expect("upload frame").into_data() {
                    if first && !data.is_empty() {
                        first = false;
                        let _ = state.first_chunks.send(data.clone());
                    }
                    received.extend_from_slice(&data);
                }
            }
            Full::new(Bytes::from(received)).boxed()
        }
        "/gigabyte" => {
            let (mut tx, body) = Channel::<Bytes>::new(2);
            tokio::spawn(async move {
                for _ in 0..GIGABYTE / CHUNK.len() {
                    if tx.send_data(Bytes::from_static(&CHUNK)).await.is_err() {
                        return;
                    }
                }
            });
            let response = Response::builder()
                .header("content-length", GIGABYTE)
                .body(body.boxed())
                .expect("response");
            return Ok(response);
        }
        "/websocket" => {
            let key = req
                .headers()
                .get("sec-websocket-key")
                .expect("websocket key")
                .as_bytes();
            let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key);
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = upgrade.await else { return };
                let mut socket =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                while let Some(Ok(message)) = socket.next().await {
                    if (message.is_text() || message.is_binary())
                        && socket.send(message).await.is_err()
                    {
                        return;
                    }
                }
            });
            let response = Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-accept", accept)
                .body(Empty::new().boxed())
                .expect("101 response");
            return Ok(response);
        }
        "/ws" => {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = upgrade.await else { return };
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0; 1024];
                while let Ok(n @ 1..) = io.read(&mut buf).await {
                    if io.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
            let response = Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "echo")
                .header("x-dyno", &state.dyno)
                .body(Empty::new().boxed())
                .expect("101 response");
            return Ok(response);
        }
        _ => {
            let mut text = format!("{} {}\n", req.method(), req.uri());
            for (name, value) in req.headers() {
                text.push_str(&format!(
                    "{name}: {}\n",
                    value.to_str().expect("ascii header")
                ));
            }
            full(&text)
        }
    };
    let response = Response::builder()
        .header("x-dyno", &state.dyno)
        .header("connection", "x-upstream-hop")
        .header("x-upstream-hop", "1")
        .body(body)
        .expect("response");
    Ok(response)
}

async fn wait(gate: &Semaphore) {
    gate.acquire().await.expect("gate open").forget();
}

fn full(text: &str) -> UpstreamBody {
    Full::new(Bytes::from(text.to_owned())).boxed()
}

/// An address nothing listens on: bound once, then released.
pub async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

pub fn dead_backend(addr: SocketAddr) -> Backend {
    Backend {
        addr,
        id: format!("dead-{addr}"),
        dyno: "web.9".to_owned(),
        release: "v1.0.0".to_owned(),
    }
}

pub fn site(app: &str, hosts: &[&str], backends: Vec<Backend>) -> SiteRoutes {
    SiteRoutes {
        app: app.parse().expect("app name"),
        hosts: hosts.iter().map(|host| (*host).to_owned()).collect(),
        backends,
        maintenance: false,
        canary: None,
        rate_limit: None,
    }
}

/// A router serving HTTP and HTTPS on 127.0.0.1:0 until [`TestRouter::begin_shutdown`].
pub struct TestRouter {
    pub router: Arc<Router>,
    pub addr: SocketAddr,
    pub tls_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    pub task: JoinHandle<io::Result<()>>,
    pub tls_task: JoinHandle<io::Result<()>>,
}

impl TestRouter {
    pub async fn start() -> TestRouter {
        Self::with_config(RouterConfig {
            listen_port: PUBLIC_PORT,
            ..RouterConfig::default()
        })
        .await
    }

    /// Like [`TestRouter::start`], redirecting hosts with a certificate to HTTPS.
    pub async fn start_with_https() -> TestRouter {
        Self::with_config(RouterConfig {
            listen_port: PUBLIC_PORT,
            https_port: Some(PUBLIC_HTTPS_PORT),
            ..RouterConfig::default()
        })
        .await
    }

    pub async fn with_config(config: RouterConfig) -> TestRouter {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind router");
        let addr = listener.local_addr().expect("router addr");
        let tls_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind router");
        let tls_addr = tls_listener.local_addr().expect("router addr");
        let router = Router::new(config);
        let (shutdown, stop) = watch::channel(false);
        let stopped = |mut stop: watch::Receiver<bool>| async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        let task = tokio::spawn(Arc::clone(&router).serve(listener, stopped(stop.clone())));
        let tls_task = tokio::spawn(Arc::clone(&router).serve_tls(tls_listener, stopped(stop)));
        TestRouter {
            router,
            addr,
            tls_addr,
            shutdown,
            task,
            tls_task,
        }
    }

    /// Routes [`HOST`] (app `demo`) to `backends`, replacing every other route.
    pub fn route(&self, backends: Vec<Backend>) {
        self.router.update(&RouteSnapshot {
            sites: vec![site("demo", &[HOST], backends)],
        });
    }

    /// Stops both listeners.
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Waits until `addr` has `expected` requests in flight.
    pub async fn wait_in_flight(&self, addr: SocketAddr, expected: usize) {
        for _ in 0..500 {
            if self.router.in_flight(addr) == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "{addr} has {} requests in flight, expected {expected}",
            self.router.in_flight(addr)
        );
    }

    /// Waits until the router has `expected` client connections open.
    pub async fn wait_connections(&self, expected: usize) {
        for _ in 0..500 {
            if self.router.open_connections() == expected {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "router has {} connections open, expected {expected}",
            self.router.open_connections()
        );
    }

    /// Checks that nothing is left behind: no request in flight to `addr`, no open connection.
    pub async fn wait_quiet(&self, addr: SocketAddr) {
        self.wait_in_flight(addr, 0).await;
        self.wait_connections(0).await;
    }

    pub async fn get(&self, host: &str, path: &str) -> Reply {
        let req = Request::get(path)
            .header("host", host)
            .body(Empty::<Bytes>::new())
            .expect("request");
        send(self.addr, req).await
    }
}

/// A response read to the end.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("response has no {name}: {self:?}"))
            .to_str()
            .expect("ascii header")
    }

    pub fn dyno(&self) -> &str {
        self.header("x-dyno")
    }

    /// The value of a request header as the upstream echoed it.
    pub fn echoed(&self, name: &str) -> Option<&str> {
        self.body.lines().find_map(|line| {
            let (key, value) = line.split_once(": ")?;
            (key == name).then_some(value)
        })
    }
}

/// Sends one request over a fresh HTTP/1.1 connection and reads the response head.
pub async fn send_streaming<B>(addr: SocketAddr, req: Request<B>) -> Response<Incoming>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.expect("connect to router");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    tokio::time::timeout(PATIENCE, sender.send_request(req))
        .await
        .expect("response in time")
        .expect("response")
}

pub async fn send<B>(addr: SocketAddr, req: Request<B>) -> Reply
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn Error + Send + Sync>>,
{
    read_reply(send_streaming(addr, req).await).await
}

/// Sends one GET over HTTP/2 with prior knowledge; the host travels in `:authority`.
pub async fn get_h2(addr: SocketAddr, url: &str) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("connect to router");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let req = Request::get(url)
        .version(http::Version::HTTP_2)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let response = tokio::time::timeout(PATIENCE, sender.send_request(req))
        .await
        .expect("response in time")
        .expect("response");
    read_reply(response).await
}

pub async fn read_reply(response: Response<Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(PATIENCE, body.collect())
        .await
        .expect("body in time")
        .expect("body")
        .to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).expect("utf-8 body"),
    }
}

/// Writes `request` on a new connection and returns everything the router sends back until it
/// closes the connection (requests should say `Connection: close` unless the router will).
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect to router");
    stream.write_all(request).await.expect("write request");
    read_to_close(&mut stream).await
}

/// Reads until the peer closes (or resets) the connection, within [`PATIENCE`].
pub async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buf = [0; 8192];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "connection still open after {PATIENCE:?}; got {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// The status code of the first response in raw HTTP/1.x output.
pub fn status_of(raw: &str) -> u16 {
    raw.strip_prefix("HTTP/1.1 ")
        .or_else(|| raw.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.x response: {raw:?}"))
}
