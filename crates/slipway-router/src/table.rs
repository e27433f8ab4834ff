//! The route table built from a [`RouteSnapshot`]: hostname → site, each site with its backends
//! and their in-flight counters.
//!
//! Each backend instance (address and container id) has an [`Upstream`]: its in-flight counter
//! and its own connection pool, shared between successive tables. A backend that survives a
//! route update keeps counting the requests it is already serving, a backend that was removed
//! can still be watched until its last request finishes (draining), and once nothing refers to
//! it its pool is dropped, so a new container that reuses the address starts with fresh
//! connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use http::uri::Authority;
use slipway_types::{AppName, Backend, RouteSnapshot};

use crate::router::UpstreamClient;
use crate::stats::AppMetrics;

/// How long a backend that refused or timed out a connection is passed over. Until the control
/// plane's health check removes it, this keeps every other request from paying for a failed
/// connect (up to the connect timeout when the container is unreachable).
const CONNECT_FAILURE_PENALTY: Duration = Duration::from_secs(5);

#[derive(Default)]
pub(crate) struct RouteTable {
    sites: HashMap<String, Arc<Site>>,
}

impl RouteTable {
    /// Builds the table for `snapshot`, reusing the counters of backends already known.
    pub(crate) fn build(
        snapshot: &RouteSnapshot,
        counters: &mut Counters,
        new_client: &dyn Fn() -> UpstreamClient,
    ) -> Self {
        let mut sites = HashMap::new();
        for routes in &snapshot.sites {
            let site = Arc::new(Site {
                app: routes.app.clone(),
                backends: routes
                    .backends
                    .iter()
                    .map(|backend| Slot {
                        authority: Authority::try_from(backend.addr.to_string())
                            .expect("a socket address is a valid authority"),
                        backend: backend.clone(),
                        upstream: counters.upstream(backend, new_client),
                        avoid_until: AtomicU64::new(0),
                    })
                    .collect(),
                next: AtomicUsize::new(0),
                created: Instant::now(),
                maintenance: routes.maintenance,
                metrics: OnceLock::new(),
            });
            for host in &routes.hosts {
                let host = host.trim_end_matches('.').to_ascii_lowercase();
                if let Some(previous) = sites.insert(host.clone(), Arc::clone(&site)) {
                    tracing::warn!(
                        %host,
                        replaced = %previous.app,
                        app = %site.app,
                        "host is routed to two apps; the later one wins"
                    );
                }
            }
        }
        counters.prune();
        Self { sites }
    }

    /// `host` must already be lowercase and without a port.
    pub(crate) fn site(&self, host: &str) -> Option<&Arc<Site>> {
        self.sites.get(host)
    }
}

/// One app's backends plus the round-robin cursor used to break ties between them.
pub(crate) struct Site {
    pub(crate) app: AppName,
    backends: Vec<Slot>,
    next: AtomicUsize,
    /// The origin of the millisecond clock in [`Slot::avoid_until`].
    created: Instant,
    /// Requests get the maintenance page; the backends are left alone.
    pub(crate) maintenance: bool,
    /// Made at the first request rather than with the table, so the handles come from the
    /// recorder the binary installed by then.
    metrics: OnceLock<Arc<AppMetrics>>,
}

struct Slot {
    backend: Backend,
    /// `addr` as the authority of upstream request URIs, made once rather than per request.
    authority: Authority,
    upstream: Arc<Upstream>,
    /// Milliseconds after [`Site::created`] until which this backend is passed over.
    avoid_until: AtomicU64,
}

/// One backend instance's shared state: its requests in flight and its connection pool.
pub(crate) struct Upstream {
    in_flight: AtomicUsize,
    client: UpstreamClient,
}

impl Site {
    pub(crate) fn backend_count(&self) -> usize {
        self.backends.len()
    }

    pub(crate) fn metrics(&self) -> &Arc<AppMetrics> {
        self.metrics
            .get_or_init(|| Arc::new(AppMetrics::new(self.app.as_str())))
    }

    /// Picks the backend with the fewest outstanding requests, never `skip`, and a recently
    /// failed one only when every other is too. Equal loads are taken in turn: the scan starts
    /// one slot further on each call and only a strictly better slot displaces the first one.
    pub(crate) fn pick(&self, skip: Option<SocketAddr>) -> Option<Picked<'_>> {
        let count = self.backends.len();
        if count == 0 {
            return None;
        }
        let now = self.millis_since_created();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % count;
        let mut best: Option<(&Slot, (bool, usize))> = None;
        for offset in 0..count {
            let slot = &self.backends[(start + offset) % count];
            if Some(slot.backend.addr) == skip {
                continue;
            }
            let avoided = slot.avoid_until.load(Ordering::Relaxed) > now;
            let rank = (avoided, slot.upstream.in_flight.load(Ordering::Relaxed));
            if best.is_none_or(|(_, best_rank)| rank < best_rank) {
                best = Some((slot, rank));
            }
        }
        best.map(|(slot, _)| Picked {
            backend: &slot.backend,
            authority: &slot.authority,
            in_flight: InFlight::start(&slot.upstream, self.metrics()),
            client: slot.upstream.client.clone(),
        })
    }

    /// Passes `addr` over for a while after a connection to it failed.
    pub(crate) fn connect_failed(&self, addr: SocketAddr) {
        let until = self
            .millis_since_created()
            .saturating_add(u64::try_from(CONNECT_FAILURE_PENALTY.as_millis()).unwrap_or(u64::MAX));
        for slot in self
            .backends
            .iter()
            .filter(|slot| slot.backend.addr == addr)
        {
            slot.avoid_until.store(until, Ordering::Relaxed);
        }
    }

    fn millis_since_created(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// The backend chosen for a request.
pub(crate) struct Picked<'a> {
    pub(crate) backend: &'a Backend,
    pub(crate) authority: &'a Authority,
    /// Counts the new request until it is dropped.
    pub(crate) in_flight: InFlight,
    /// The backend's own connection pool.
    pub(crate) client: UpstreamClient,
}

/// Counts one request against a backend, and in the app's active-requests gauge, for as long
/// as it lives.
pub(crate) struct InFlight {
    upstream: Arc<Upstream>,
    metrics: Arc<AppMetrics>,
}

impl InFlight {
    fn start(upstream: &Arc<Upstream>, metrics: &Arc<AppMetrics>) -> Self {
        upstream.in_flight.fetch_add(1, Ordering::Relaxed);
        metrics.active.increment(1);
        Self {
            upstream: Arc::clone(upstream),
            metrics: Arc::clone(metrics),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.upstream.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.metrics.active.decrement(1);
    }
}

/// Every counter still referenced by a table or by a request in flight. Weak references let a
/// counter disappear on its own once neither needs it.
#[derive(Default)]
pub(crate) struct Counters {
    by_backend: HashMap<(SocketAddr, String), Weak<Upstream>>,
}

impl Counters {
    fn upstream(
        &mut self,
        backend: &Backend,
        new_client: &dyn Fn() -> UpstreamClient,
    ) -> Arc<Upstream> {
        let key = (backend.addr, backend.id.clone());
        if let Some(upstream) = self.by_backend.get(&key).and_then(Weak::upgrade) {
            return upstream;
        }
        let upstream = Arc::new(Upstream {
            in_flight: AtomicUsize::new(0),
            client: new_client(),
        });
        self.by_backend.insert(key, Arc::downgrade(&upstream));
        upstream
    }

    fn prune(&mut self) {
        self.by_backend
            .retain(|_, upstream| upstream.strong_count() > 0);
    }

    /// Requests in flight to every backend instance at `addr`.
    pub(crate) fn in_flight(&self, addr: SocketAddr) -> usize {
        self.by_backend
            .iter()
            .filter(|((backend_addr, _), _)| *backend_addr == addr)
            .filter_map(|(_, upstream)| upstream.upgrade())
            .map(|upstream| upstream.in_flight.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use slipway_types::SiteRoutes;

    use super::*;

    fn backend(port: u16, dyno: &str) -> Backend {
        Backend {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            id: format!("container-{port}"),
            dyno: dyno.to_owned(),
            release: "v1.0.0".to_owned(),
        }
    }

    fn new_client() -> UpstreamClient {
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(
            crate::connector::TimedConnector::new(Duration::from_secs(1)),
        )
    }

    fn snapshot(backends: Vec<Backend>) -> RouteSnapshot {
        RouteSnapshot {
            sites: vec![SiteRoutes {
                app: "demo".parse().expect("valid app name"),
                hosts: vec!["demo.example.com".to_owned()],
                backends,
                maintenance: false,
            }],
        }
    }

    #[test]
    fn equal_loads_are_taken_in_turn() {
        let mut counters = Counters::default();
        let table = RouteTable::build(
            &snapshot(vec![backend(1, "web.1"), backend(2, "web.2")]),
            &mut counters,
            &new_client,
        );
        let site = table.site("demo.example.com").expect("site");
        let dynos: Vec<String> = (0..4)
            .map(|_| site.pick(None).expect("backend").backend.dyno.clone())
            .collect();
        assert_eq!(dynos, ["web.1", "web.2", "web.1", "web.2"]);
    }

    #[test]
    fn busy_backend_is_avoided_and_skip_is_honoured() {
        let mut counters = Counters::default();
        let table = RouteTable::build(
            &snapshot(vec![backend(1, "web.1"), backend(2, "web.2")]),
            &mut counters,
            &new_client,
        );
        let site = table.site("demo.example.com").expect("site");
        let held = site.pick(None).expect("backend");
        let first = held.backend.dyno.clone();
        for _ in 0..3 {
            let other = site.pick(None).expect("backend");
            assert_ne!(other.backend.dyno, first);
        }
        let busy = backend(if first == "web.1" { 1 } else { 2 }, &first).addr;
        let other = site.pick(Some(busy)).expect("backend");
        assert_ne!(other.backend.addr, busy);
    }

    #[test]
    fn a_backend_that_failed_to_connect_is_passed_over() {
        let mut counters = Counters::default();
        let table = RouteTable::build(
            &snapshot(vec![backend(1, "web.1"), backend(2, "web.2")]),
            &mut counters,
            &new_client,
        );
        let site = table.site("demo.example.com").expect("site");
        site.connect_failed(backend(1, "web.1").addr);
        for _ in 0..4 {
            assert_eq!(site.pick(None).expect("backend").backend.dyno, "web.2");
        }

        site.connect_failed(backend(2, "web.2").addr);
        assert!(site.pick(None).is_some(), "all failed: still try one");
        let only = site.pick(Some(backend(1, "web.1").addr)).expect("backend");
        assert_eq!(only.backend.dyno, "web.2");
    }

    #[test]
    fn counters_survive_updates_and_outlive_removed_backends() {
        let mut counters = Counters::default();
        let old = RouteTable::build(
            &snapshot(vec![backend(1, "web.1")]),
            &mut counters,
            &new_client,
        );
        let site = old.site("demo.example.com").expect("site");
        let held = site.pick(None).expect("backend").in_flight;
        let addr = backend(1, "web.1").addr;

        let same = RouteTable::build(
            &snapshot(vec![backend(1, "web.1")]),
            &mut counters,
            &new_client,
        );
        drop(old);
        assert_eq!(counters.in_flight(addr), 1);

        drop(same);
        let _empty = RouteTable::build(&snapshot(vec![]), &mut counters, &new_client);
        assert_eq!(counters.in_flight(addr), 1, "removed backend still drains");
        drop(held);
        assert_eq!(counters.in_flight(addr), 0);
    }
}
