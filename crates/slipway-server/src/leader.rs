//! Leadership among servers sharing one store. Every server serves the API and the router;
//! only the holder of the store's `leader` lease runs the background loops that change
//! containers, add-ons and certificates, and only it deploys: followers forward changes to it
//! (see `forward`). With SQLite there is one server and it always leads.
//!
//! The leader renews its lease every third of the lease time. It stops acting (pauses its
//! loops) when a renewal has not succeeded within two thirds of the lease time after the last
//! successful one started, so it is idle before the lease can expire and another server take
//! it: a stale leader never acts beside a new one, as long as clocks run at about the same
//! rate. Each handover raises the lease's term, and the store is fenced with it: a deploy under
//! way when its server lost the lease fails when it tries to make its release current.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::extract::Request;
use axum::response::Response;
use slipway_store::{Fence, Lease, Store};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::Platform;
use crate::forward::{self, Forwarder};
use crate::handover::Loops;

/// The lease's name in the store.
const LEASE: &str = "leader";

/// The server's id, in its data dir: a restarted server (or its successor in a handover) is
/// the same candidate and renews its own lease instead of waiting for it to expire.
const ID_FILE: &str = "server.id";

/// This server's standing, shared by the API (to forward changes on a follower) and the loops.
#[derive(Debug)]
pub struct Leadership {
    id: String,
    /// Where this server's API answers, for followers to name.
    url: String,
    ttl: Duration,
    leading: AtomicBool,
    /// The lease as last renewed, to release exactly that at shutdown.
    held: Mutex<Option<Lease>>,
    /// Given to the store, which checks it before making a release current.
    fence: Arc<Fence>,
    /// Sends changes to the leader while this server follows.
    forwarder: Forwarder,
}

impl Leadership {
    /// Reads (or creates) the server's id in `data_dir`. Servers sharing a store must have
    /// data dirs of their own: a copied data dir would make two servers one candidate.
    pub fn new(data_dir: &Path, url: String, ttl: Duration) -> anyhow::Result<Self> {
        let file = data_dir.join(ID_FILE);
        let id = match std::fs::read_to_string(&file) {
            Ok(id) => id.trim().to_owned(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let id = Uuid::now_v7().to_string();
                std::fs::write(&file, format!("{id}\n"))
                    .with_context(|| format!("writing the server id `{}`", file.display()))?;
                id
            }
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("reading the server id `{}`", file.display()));
            }
        };
        Ok(Self {
            fence: Arc::new(Fence::new(LEASE, &id)),
            forwarder: Forwarder::new(&url)
                .context("building the client that forwards to the leader")?,
            id,
            url,
            ttl,
            leading: AtomicBool::new(false),
            held: Mutex::new(None),
        })
    }

    /// For `Store::fenced_by`: a deploy this server started while leading cannot make its
    /// release current once another server leads.
    pub fn fence(&self) -> Arc<Fence> {
        self.fence.clone()
    }

    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// One attempt to take or renew the lease; true when this server holds it now. A store
    /// that does not answer within a renewal period counts as a lost renewal.
    pub async fn try_acquire(&self, store: &Store) -> bool {
        let attempt = store.acquire_lease(LEASE, &self.id, &self.url, self.ttl);
        match tokio::time::timeout(self.renew_every(), attempt).await {
            Ok(Ok(lease)) => {
                match &lease {
                    Some(lease) => self.fence.hold(lease.term),
                    None => self.fence.drop_lease(),
                }
                let holds = lease.is_some();
                *self.held.lock().unwrap_or_else(|e| e.into_inner()) = lease;
                holds
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "renewing the leader lease failed");
                false
            }
            Err(_) => {
                tracing::warn!("renewing the leader lease timed out");
                false
            }
        }
    }

    /// The API URL of the server that holds the lease, when one does.
    pub async fn leader_url(&self, store: &Store) -> Option<String> {
        match store.lease(LEASE).await {
            Ok(lease) => lease.map(|lease| lease.holder_url),
            Err(error) => {
                tracing::warn!(%error, "reading the leader lease failed");
                None
            }
        }
    }

    /// On a follower, has the leader carry out `request` and answers with the leader's answer;
    /// or refuses it (`503 not_leader`) saying why the leader cannot. A request another server
    /// forwarded is refused rather than forwarded again: it was sent here as to the leader, and
    /// passing it on could loop between servers that each believe another leads.
    pub async fn forward(&self, store: &Store, request: Request) -> Response {
        if forward::is_forwarded(request.headers()) {
            return forward::not_leader(
                "this server is a follower and does not pass on a change another server \
                 forwarded to it: retry in a few seconds",
            );
        }
        match self.leader_url(store).await {
            None => forward::not_leader(
                "this server is a follower and no server leads right now: retry in a few seconds",
            ),
            Some(url) if url == self.url => forward::not_leader(
                "the lease names this server but it is not acting as the leader yet: retry in a \
                 few seconds",
            ),
            Some(url) => self.forwarder.forward(&url, request).await,
        }
    }

    fn set(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
    }
}

/// A follower's router keeps up with what the leader changes: routes to its containers,
/// maintenance mode, rate limits, custom domains and their certificates.
async fn follow(platform: &Platform) -> anyhow::Result<()> {
    platform.deployer.follow_routes().await?;
    platform
        .deployer
        .set_rate_limits(platform.store.rate_limits().await?);
    platform.certs.sync(platform).await
}

/// Campaigns for the lease until `shutdown`: starts the loops on becoming the leader, pauses
/// them on losing the lease, and on a follower refreshes the router from the leader's
/// containers. At shutdown the lease is released so a follower takes over at once.
pub(crate) async fn campaign(
    platform: Arc<Platform>,
    loops: Arc<Loops>,
    shutdown: CancellationToken,
) {
    let leadership = &platform.leadership;
    let renew = leadership.renew_every();
    // Deadline for acting, from the start of the last successful renewal.
    let mut acting_until = Instant::now();
    loop {
        let started = Instant::now();
        if leadership.try_acquire(&platform.store).await {
            acting_until = started + leadership.ttl - renew;
            if !leadership.is_leader() {
                tracing::info!(id = %leadership.id, "this server is now the leader");
                leadership.set(true);
                loops.resume().await;
            }
        } else if leadership.is_leader() && Instant::now() >= acting_until {
            tracing::warn!(id = %leadership.id, "lost the leader lease: stopping the loops");
            leadership.set(false);
            loops.pause().await;
        }
        if !leadership.is_leader()
            && let Err(error) = follow(&platform).await
        {
            tracing::warn!(error = %format!("{error:#}"), "refreshing the router from the leader's work failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(renew) => {}
        }
    }
    if leadership.is_leader() {
        leadership.set(false);
        loops.stop().await;
        let held = leadership
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(lease) = held
            && let Err(error) = platform.store.release_lease(&lease).await
        {
            tracing::warn!(%error, "releasing the leader lease failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_server_leads_and_a_restart_keeps_its_lease() {
        let store = Store::open_in_memory().await.unwrap();
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ttl = Duration::from_secs(60);
        let first = Leadership::new(one.path(), "http://a:7070".into(), ttl).unwrap();
        let second = Leadership::new(two.path(), "http://b:7070".into(), ttl).unwrap();
        assert!(first.try_acquire(&store).await);
        assert!(!second.try_acquire(&store).await, "the lease is held");
        assert_eq!(
            second.leader_url(&store).await.as_deref(),
            Some("http://a:7070")
        );

        let restarted = Leadership::new(one.path(), "http://a:7070".into(), ttl).unwrap();
        assert_eq!(restarted.id, first.id, "the id is kept in the data dir");
        assert!(
            restarted.try_acquire(&store).await,
            "a restart renews its own lease"
        );
    }
}
