use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioExecutor;
use slipway_router::{Router, RouterConfig};
use slipway_types::RouteSnapshot;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tower_service::Service;

use crate::support::{
    HOST, PATIENCE, PUBLIC_PORT, TestRouter, Upstream, read_to_close, send, site, status_of,
};

#[tokio::test]
async fn a_route_update_swaps_backends_without_a_restart() {
    let old = Upstream::start("web.1").await;
    let new = Upstream::start("web.2").await;
    let router = TestRouter::start().await;

    assert_eq!(router.get(HOST, "/").await.status, StatusCode::NOT_FOUND);

    router.route(vec![old.backend()]);
    assert_eq!(router.get(HOST, "/").await.dyno(), "web.1");

    router.route(vec![new.backend()]);
    for _ in 0..3 {
        assert_eq!(router.get(HOST, "/").await.dyno(), "web.2");
    }
}

#[tokio::test]
async fn a_removed_backend_is_drained_not_cut_off() {
    let old = Upstream::start("web.1").await;
    let new = Upstream::start("web.2").await;
    let router = TestRouter::start().await;
    router.route(vec![old.backend()]);

    let slow = tokio::spawn(send(router.addr, slow_request()));
    router.wait_in_flight(old.addr, 1).await;

    router.route(vec![new.backend()]);
    assert_eq!(
        router.router.in_flight(old.addr),
        1,
        "still counted after removal"
    );
    assert_eq!(router.get(HOST, "/").await.dyno(), "web.2");

    old.release();
    let reply = slow.await.expect("slow request task");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "slow done");
    router.wait_in_flight(old.addr, 0).await;
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight() {
    let web = Upstream::start("web.1").await;
    let mut router = TestRouter::start().await;
    router.route(vec![web.backend()]);

    let slow = tokio::spawn(send(router.addr, slow_request()));
    router.wait_in_flight(web.addr, 1).await;

    router.begin_shutdown();
    let mut refused = false;
    for _ in 0..500 {
        if TcpStream::connect(router.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "the router still accepts connections after shutdown"
    );
    assert!(
        !router.task.is_finished(),
        "serve returned with a request in flight"
    );

    web.release();
    let reply = slow.await.expect("slow request task");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "slow done");
    tokio::time::timeout(PATIENCE, &mut router.task)
        .await
        .expect("serve returns once drained")
        .expect("serve task")
        .expect("serve result");
}

fn slow_request() -> Request<Empty<Bytes>> {
    Request::get("/slow")
        .header("host", HOST)
        .body(Empty::new())
        .expect("request")
}

/// A client reusing a keep-alive connection after the router began stopping still gets its
/// answer, with `Connection: close`, instead of a connection closed under its request, however
/// long the connection had been idle (within its idle timeout).
#[tokio::test]
async fn a_request_on_a_kept_alive_connection_during_shutdown_is_answered_then_closed() {
    let web = Upstream::start("web.1").await;
    let mut router = TestRouter::start().await;
    router.route(vec![web.backend()]);

    let mut stream = TcpStream::connect(router.addr).await.expect("connect");
    let request = format!("GET /again HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut first = [0; 12];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut first))
        .await
        .expect("first answer in time")
        .expect("read");
    assert_eq!(&first, b"HTTP/1.1 200");
    router.wait_in_flight(web.addr, 0).await;

    router.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write again");
    let rest = read_to_close(&mut stream).await;
    let second = &rest[rest.find("HTTP/1.1 ").expect("a second response")..];
    assert_eq!(status_of(second), 200, "{second}");
    assert!(second.contains("\r\nconnection: close\r\n"), "{second}");
    tokio::time::timeout(PATIENCE, &mut router.task)
        .await
        .expect("serve returns once drained")
        .expect("serve task")
        .expect("serve result");
}

/// A restart as `slipway server` does it: a successor serves the same listening socket and the
/// old router shuts down while clients keep sending, on keep-alive connections, on a new
/// connection per request and over HTTP/2. No request fails, and the old router finishes its
/// drain by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_on_the_same_socket_takes_over_without_losing_a_request() {
    let web = Upstream::start("web.1").await;
    let routes = RouteSnapshot {
        sites: vec![site("demo", &[HOST], vec![web.backend()])],
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("addr");
    let successor_listener = listener.try_clone().expect("duplicate the socket");
    let config = RouterConfig {
        listen_port: PUBLIC_PORT,
        ..RouterConfig::default()
    };
    let old = Router::new(config.clone());
    old.update(&routes);
    let (stop_old, old_stopped) = oneshot::channel::<()>();
    let old_task = tokio::spawn(Arc::clone(&old).serve(
        TcpListener::from_std(listener).expect("listener"),
        async move {
            let _ = old_stopped.await;
        },
    ));

    let running = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let http2 = i % 3 == 2;
            let mut builder = Client::builder(TokioExecutor::new());
            // A request the client replays by itself would hide a connection closed under it.
            builder.retry_canceled_requests(false);
            match i % 3 {
                0 => {}
                1 => {
                    builder.pool_max_idle_per_host(0);
                }
                _ => {
                    builder.http2_only(true);
                }
            }
            let client = builder.build(HttpConnector::new_with_resolver(Loopback));
            let running = Arc::clone(&running);
            tokio::spawn(async move {
                let (mut sent, mut failures) = (0, Vec::new());
                let url = format!("http://{HOST}:{}/", addr.port());
                let get = || {
                    let req = Request::get(&url)
                        .body(Empty::<Bytes>::new())
                        .expect("request");
                    tokio::time::timeout(PATIENCE, client.request(req))
                };
                while running.load(Ordering::Relaxed) {
                    sent += 1;
                    let mut outcome = get().await;
                    // hyper's HTTP/2 client fails a request it was about to start when GOAWAY
                    // arrives, or that was still queued for a connection that GOAWAY then
                    // closed, where a browser starts it again on a new connection, as RFC 9113
                    // §6.8 allows for a request the server never processed: do the same.
                    if matches!(&outcome, Ok(Err(err)) if refused_by_goaway(err) || (http2 && never_sent(err))) {
                        outcome = get().await;
                    }
                    match outcome {
                        Ok(Ok(response)) if response.status() == StatusCode::OK => {
                            if let Err(err) = response.into_body().collect().await {
                                failures.push(format!("body: {err}"));
                            }
                        }
                        Ok(Ok(response)) => failures.push(format!("{}", response.status())),
                        Ok(Err(err)) => failures.push(format!("request: {err:?}")),
                        Err(_) => failures.push("no answer in time".to_owned()),
                    }
                }
                (sent, failures)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let successor = Router::new(config);
    successor.update(&routes);
    let (stop_successor, successor_stopped) = oneshot::channel::<()>();
    let successor_task = tokio::spawn(Arc::clone(&successor).serve(
        TcpListener::from_std(successor_listener).expect("listener"),
        async move {
            let _ = successor_stopped.await;
        },
    ));
    let _ = stop_old.send(());
    tokio::time::timeout(PATIENCE, old_task)
        .await
        .expect("the old router drains while clients keep sending")
        .expect("serve task")
        .expect("serve result");
    assert_eq!(old.open_connections(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let serving = successor.open_connections();
    running.store(false, Ordering::Relaxed);

    let (mut sent, mut failures) = (0, Vec::new());
    for client in clients {
        let (client_sent, client_failures) = client.await.expect("client task");
        sent += client_sent;
        failures.extend(client_failures);
    }
    assert!(sent > 100, "the clients barely ran: {sent} requests");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(serving > 0, "the successor served nobody");
    let _ = stop_successor.send(());
    tokio::time::timeout(PATIENCE, successor_task)
        .await
        .expect("the successor drains once its clients are gone")
        .expect("serve task")
        .expect("serve result");
}

/// Resolves every name to 127.0.0.1 (the port comes from the URL), so a client's URL can carry
/// the app's host.
#[derive(Clone)]
struct Loopback;

impl Service<Name> for Loopback {
    type Response = std::iter::Once<SocketAddr>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Name) -> Self::Future {
        std::future::ready(Ok(std::iter::once(SocketAddr::from(([127, 0, 0, 1], 0)))))
    }
}

/// hyper's client gave the request up before sending any of it: its connection closed while
/// the request waited for it. Only retried on HTTP/2, where the server closes a connection after
/// GOAWAY; an HTTP/1.1 connection closed under a waiting request is what the test looks for.
fn never_sent(err: &hyper_util::client::legacy::Error) -> bool {
    std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<hyper::Error>())
        .is_some_and(hyper::Error::is_canceled)
}

/// GOAWAY without an error: the server is shutting down and processed nothing of the request.
fn refused_by_goaway(err: &hyper_util::client::legacy::Error) -> bool {
    let text = format!("{err:?}");
    text.contains("GoAway(") && text.contains("NO_ERROR")
}
