//! The shared router state: configuration, the hot-swapped route table and certificates, the
//! in-flight counters, the upstream connection pool and the ACME challenge tokens.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{Either, Empty};
use slipway_types::{AppName, CertSnapshot, RouteSnapshot};
use tokio::sync::Semaphore;

use crate::access_log::AccessLogSink;
use crate::body::RequestBody;
use crate::challenge::Challenges;
use crate::pool::Pool;
use crate::release_stats::ReleaseCounts;
use crate::stats::{AppMetrics, Traffic, TrafficReading};
use crate::table::{Counters, RouteTable};
use crate::tls::{CertLoadError, Tls};
use crate::workers::Workers;

#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// How long an app has to start answering (response head received) before the client gets
    /// a 504. Streaming after that point is not limited.
    pub request_timeout: Duration,
    /// How long opening a connection to a backend may take before it counts as failed.
    pub connect_timeout: Duration,
    /// The public port clients connected to, told to apps as `X-Forwarded-Port`.
    pub listen_port: u16,
    /// The public HTTPS port, when [`Router::serve_tls`] runs: plain-HTTP requests for a host
    /// with a certificate are redirected there, and apps are told it as `X-Forwarded-Port` on
    /// HTTPS requests. `None` means HTTPS is not served, so nothing is redirected.
    pub https_port: Option<u16>,
    /// Also gets each request's log line, besides tracing, when the request reached a known app.
    pub access_log: Option<AccessLogSink>,
    /// The largest request head (request line and headers; HTTP/2: the decoded header list) a
    /// client may send. Larger ones get 431 and never reach an app.
    pub max_header_bytes: usize,
    /// The largest request body passed on to an app. A larger `Content-Length` gets 413 at
    /// once; a body without one (chunked, HTTP/2) is cut off at the limit, and the client gets
    /// 413 unless the app has already answered.
    pub max_body_bytes: u64,
    /// How long a client has to send a complete request head once it has started one (or once
    /// its connection is open), and to complete its TLS handshake: a client trickling headers
    /// byte by byte (slowloris) holds a connection no longer than this.
    pub header_read_timeout: Duration,
    /// How long a connection with no request in progress and nothing sent stays open for the
    /// next request (keep-alive).
    pub idle_timeout: Duration,
    /// Client connections open at once, over both listeners, TLS handshakes included. Beyond
    /// it new connections wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Keeps each app's requests, bytes and latencies as totals [`Router::traffic`] reads,
    /// besides the Prometheus series. Off only to measure what it costs.
    pub app_traffic: bool,
    /// Threads that serve client connections, each with its own single-threaded runtime, as
    /// nginx runs a worker process per core: a connection and the upstream requests it makes
    /// stay on one thread. 0 serves connections on the runtime that calls [`Router::serve`].
    /// They start with the first listener and stop when the router is dropped.
    pub worker_threads: usize,
}

/// Heroku's limits (30 s to answer, 5 s to connect) behind the standard HTTP port, 64 KiB of
/// headers, 100 MiB bodies, 10 s to send a request head, 60 s idle keep-alive and 10,000
/// connections, served by one worker thread per core.
impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            listen_port: 80,
            https_port: None,
            access_log: None,
            max_header_bytes: 64 * 1024,
            max_body_bytes: 100 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            app_traffic: true,
            worker_threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// Requests go upstream with the client's body, or with an empty one when the router keeps the
/// request to retry it on another backend.
pub(crate) type UpstreamBody = Either<RequestBody, Empty<Bytes>>;

/// Host-based reverse proxy. Share it as `Arc<Router>`: the control plane calls
/// [`Router::update`], [`Router::update_certs`], the challenge methods and
/// [`Router::in_flight`] while [`Router::serve`] and [`Router::serve_tls`] run.
pub struct Router {
    pub(crate) config: RouterConfig,
    pub(crate) table: ArcSwap<RouteTable>,
    counters: Mutex<Counters>,
    pub(crate) tls: Tls,
    pub(crate) challenges: Challenges,
    /// Series of requests for hosts no app serves, made at first use like an app's.
    unknown_host_metrics: OnceLock<Arc<AppMetrics>>,
    /// One permit per open client connection, shared by both listeners.
    pub(crate) connection_slots: Arc<Semaphore>,
    /// Started by the first listener; `None` when connections are served on the caller's
    /// runtime.
    workers: OnceLock<Option<Workers>>,
}

/// A connection pool to one backend instance.
pub(crate) type UpstreamClient = Pool;

impl Router {
    /// A router with an empty route table and no certificates: every host gets 404 until the
    /// first update, and every TLS client gets a self-signed certificate generated here.
    pub fn new(config: RouterConfig) -> Arc<Router> {
        let mut counters = Counters::default();
        counters.traffic = Traffic::new(config.app_traffic);
        Arc::new(Router {
            connection_slots: Arc::new(Semaphore::new(
                config.max_connections.min(Semaphore::MAX_PERMITS),
            )),
            config,
            table: ArcSwap::from_pointee(RouteTable::default()),
            counters: Mutex::new(counters),
            tls: Tls::new(),
            challenges: Challenges::default(),
            unknown_host_metrics: OnceLock::new(),
            workers: OnceLock::new(),
        })
    }

    /// The worker threads, started at the first call. Should they fail to start, connections
    /// are served on the caller's runtime instead.
    pub(crate) fn workers(&self) -> Option<&Workers> {
        self.workers
            .get_or_init(|| match self.config.worker_threads {
                0 => None,
                count => match Workers::start(count) {
                    Ok(workers) => Some(workers),
                    Err(err) => {
                        tracing::error!(
                            error = %err,
                            "could not start the router's worker threads, serving on the caller's runtime"
                        );
                        None
                    }
                },
            })
            .as_ref()
    }

    pub(crate) fn unknown_host_metrics(&self) -> &Arc<AppMetrics> {
        self.unknown_host_metrics.get_or_init(|| {
            let traffic = self
                .counters
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .traffic
                .unknown_hosts();
            Arc::new(AppMetrics::new("", traffic))
        })
    }

    /// Every routed app's request totals since it was first routed, and those of requests
    /// for unknown hosts: the server takes differences between readings. Empty when
    /// [`RouterConfig::app_traffic`] is off.
    pub fn traffic(&self) -> TrafficReading {
        self.counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .traffic
            .reading()
    }

    /// Replaces the served certificates atomically: the next handshake picks from the new set,
    /// connections already open keep the certificate they were given. A certificate that does
    /// not load is left out and returned as an error; the others are served regardless, so one
    /// bad renewal cannot take every site's HTTPS down. Hosts that lose their certificate stop
    /// being redirected to HTTPS.
    pub fn update_certs(&self, snapshot: &CertSnapshot) -> Vec<CertLoadError> {
        self.tls.update(snapshot)
    }

    /// Answers `GET /.well-known/acme-challenge/<token>` on plain HTTP with
    /// `key_authorization`, for any host, until [`Router::remove_challenge`].
    pub fn set_challenge(&self, token: &str, key_authorization: &str) {
        self.challenges
            .set(token.to_owned(), key_authorization.to_owned());
    }

    /// Stops answering `token`: it gets 404 from then on.
    pub fn remove_challenge(&self, token: &str) {
        self.challenges.remove(token);
    }

    /// Replaces the whole route table atomically: a request sees either the old table or the
    /// new one, never a mix. Backends present in both keep their in-flight counts, so balancing
    /// and draining are not reset by an unrelated change.
    pub fn update(&self, snapshot: &RouteSnapshot) {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        let connect_timeout = self.config.connect_timeout;
        // One idle stack per worker, and one for the caller's runtime.
        let stacks = self.config.worker_threads + 1;
        let new_client = move |addr| Pool::new(addr, connect_timeout, stacks);
        let table = RouteTable::build(snapshot, &mut counters, &new_client);
        self.table.store(Arc::new(table));
    }

    /// Client connections open now over both listeners, TLS handshakes included: what
    /// [`RouterConfig::max_connections`] is counted against.
    pub fn open_connections(&self) -> usize {
        self.config
            .max_connections
            .min(Semaphore::MAX_PERMITS)
            .saturating_sub(self.connection_slots.available_permits())
    }

    /// Requests currently in flight to `addr`, including those started before it was removed
    /// from the table: the deployer waits for this to reach zero before stopping a container.
    /// An upgraded connection (WebSocket) counts until it closes.
    pub fn in_flight(&self, addr: SocketAddr) -> usize {
        self.counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .in_flight(addr)
    }

    /// What `release` of `app` has served since the app's routes first carried a canary: the
    /// deployer subtracts a reading taken when the canary started to judge it. Zeros when the
    /// app runs no canary.
    pub fn release_counts(&self, app: &AppName, release: &str) -> ReleaseCounts {
        self.counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release_counts(app, release)
    }
}
