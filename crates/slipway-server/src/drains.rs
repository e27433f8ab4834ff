//! Log drains: every line of an app's log (app, router, build, platform) shipped to the app's
//! drains. The log hub offers each line to the app's drains' buffers without waiting
//! ([`Taps`]); one task per drain delivers them in order, retrying with back-off and
//! reconnecting, so a drain that is slow or down never slows the app or the router. When a
//! buffer is full the oldest lines are dropped, counted (`drains`, `/metrics`) and announced in
//! the app's log.

mod frame;
mod outbox;
mod sink;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use slipway_store::Drain;
use slipway_types::AppName;
use uuid::Uuid;

use self::outbox::Outbox;
use self::sink::Sink;
use crate::logs::{LogHub, LogLine};

pub(crate) use self::outbox::OutboxStatus;

/// Lines buffered per drain when `--drain-buffer-lines` is not set.
pub const DEFAULT_BUFFER_LINES: usize = 10_000;

/// A batch holds at most this many lines…
const BATCH_LINES: usize = 500;
/// …and about this much text.
const BATCH_BYTES: usize = 1 << 20;

/// Retries start this soon and back off to at most this long, so a receiver that comes back
/// gets lines again within seconds.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(10);

/// The process name of the platform lines about drains in the app's log.
const LOG_PROCESS: &str = "drains";

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data whole, so a panic elsewhere does not spoil it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every running drain's buffer, by app: what the log hub offers each line to.
#[derive(Default)]
pub struct Taps {
    apps: RwLock<HashMap<AppName, Vec<Arc<Outbox>>>>,
}

impl Taps {
    /// Offers a line to each of the app's drains. Never waits for a drain.
    pub fn offer(&self, app: &AppName, line: &LogLine) {
        let apps = self.apps.read().unwrap_or_else(PoisonError::into_inner);
        for outbox in apps.get(app).into_iter().flatten() {
            outbox.offer(line);
        }
    }

    /// Stops every drain of the app: for a destroyed app, whose drains the store deleted.
    pub fn forget(&self, app: &AppName) {
        let removed = self
            .apps
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(app);
        for outbox in removed.into_iter().flatten() {
            outbox.close();
        }
    }

    fn attach(&self, app: &AppName, outbox: Arc<Outbox>) {
        self.apps
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(app.clone())
            .or_default()
            .push(outbox);
    }

    fn detach(&self, app: &AppName, id: Uuid) {
        let mut apps = self.apps.write().unwrap_or_else(PoisonError::into_inner);
        let Some(outboxes) = apps.get_mut(app) else {
            return;
        };
        outboxes.retain(|outbox| {
            let keep = outbox.id != id;
            if !keep {
                outbox.close();
            }
            keep
        });
        if outboxes.is_empty() {
            apps.remove(app);
        }
    }

    fn find(&self, app: &AppName, id: Uuid) -> Option<Arc<Outbox>> {
        self.apps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(app)?
            .iter()
            .find(|outbox| outbox.id == id)
            .cloned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("drain CA bundle `{path}` is unusable: {reason}")]
    CaBundle { path: PathBuf, reason: String },
    #[error("setting up drain TLS failed: {0}")]
    Tls(String),
}

/// Starts and stops drains' delivery tasks.
pub struct Drains {
    hub: Arc<LogHub>,
    buffer_lines: usize,
    tls: Arc<rustls::ClientConfig>,
    http: reqwest::Client,
}

impl Drains {
    /// TLS (syslog+tls and HTTPS) trusts the system's roots plus `ca_bundle`.
    pub fn new(
        hub: Arc<LogHub>,
        ca_bundle: Option<&Path>,
        buffer_lines: usize,
    ) -> Result<Drains, DrainError> {
        let tls = Arc::new(tls_config(ca_bundle)?);
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(rustls::ClientConfig::clone(&tls))
            .user_agent(concat!("Slipway/", env!("CARGO_PKG_VERSION")))
            // Drains are the user's endpoints: a redirect could send the logs elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|error| DrainError::Tls(error.to_string()))?;
        Ok(Drains {
            hub,
            buffer_lines,
            tls,
            http,
        })
    }

    /// Starts delivering the app's lines to `drain`, from the next line on.
    pub fn start(&self, drain: &Drain) {
        let metric = metrics::counter!(
            "slipway_drain_dropped_total",
            "app" => drain.app.to_string(),
            "drain" => drain.token(),
        );
        // Zero is a value: the series exists before the first drop.
        metric.increment(0);
        let outbox = Arc::new(Outbox::new(drain.id, self.buffer_lines, metric));
        let sink = Sink::new(
            drain.app.clone(),
            drain.token(),
            drain.url.clone(),
            &self.tls,
            &self.http,
        );
        let delivery = Delivery {
            hub: self.hub.clone(),
            app: drain.app.clone(),
            token: drain.token(),
            shown_url: drain.url.to_string(),
            outbox: outbox.clone(),
            sink,
            dropping: false,
            seen_dropped: 0,
        };
        self.hub.taps().attach(&drain.app, outbox);
        tokio::spawn(delivery.run());
    }

    /// Stops the drain's task; lines still buffered are not sent.
    pub fn stop(&self, drain: &Drain) {
        self.hub.taps().detach(&drain.app, drain.id);
    }

    /// How the drain's delivery is going, when it is running.
    pub(crate) fn status(&self, drain: &Drain) -> Option<OutboxStatus> {
        self.hub
            .taps()
            .find(&drain.app, drain.id)
            .map(|outbox| outbox.status())
    }
}

/// One drain's delivery task.
struct Delivery {
    hub: Arc<LogHub>,
    app: AppName,
    token: String,
    shown_url: String,
    outbox: Arc<Outbox>,
    sink: Sink,
    /// Whether the app's log was told that lines are being dropped.
    dropping: bool,
    /// The drop count when last looked at.
    seen_dropped: u64,
}

impl Delivery {
    async fn run(mut self) {
        while self.outbox.ready().await {
            loop {
                let batch = self.outbox.take(BATCH_LINES, BATCH_BYTES);
                if batch.is_empty() {
                    break;
                }
                if !self.deliver(&batch).await {
                    return;
                }
            }
        }
    }

    /// Sends the batch until the receiver takes it; `false` when the drain was closed first.
    async fn deliver(&mut self, batch: &[LogLine]) -> bool {
        let id = Uuid::now_v7();
        let mut wait = FIRST_RETRY;
        let mut failures = 0u32;
        loop {
            self.note_drops();
            let sent = tokio::select! {
                () = self.outbox.closed().cancelled() => return false,
                sent = self.sink.send(batch, id) => sent,
            };
            match sent {
                Ok(()) => {
                    self.outbox.delivered(batch.len());
                    if failures > 0 {
                        tracing::info!(app = %self.app, drain = %self.token, "drain delivers again");
                    }
                    self.note_drops();
                    return true;
                }
                Err(error) => {
                    if failures == 0 {
                        tracing::warn!(app = %self.app, drain = %self.token, %error, "drain delivery failed; retrying");
                    }
                    failures += 1;
                    self.outbox.failed(error);
                    tokio::select! {
                        () = self.outbox.closed().cancelled() => return false,
                        () = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// Tells the app's log when drops start, and when they stop (the buffer is half empty
    /// again, so a buffer hovering at full does not flood the log). The notice goes through
    /// the hub to this drain too: while dropping it only adds a drop, and once the buffer has
    /// room it fits, so it never sets off another notice.
    fn note_drops(&mut self) {
        let dropped = self.outbox.dropped();
        let capacity = self.outbox.capacity();
        let new_drops = dropped > self.seen_dropped;
        self.seen_dropped = dropped;
        if !self.dropping && new_drops {
            self.dropping = true;
            self.hub.platform(
                &self.app,
                LOG_PROCESS,
                format!(
                    "Drain {} ({}) is dropping lines: its receiver is down or slow and its buffer of {capacity} lines is full",
                    self.token, self.shown_url
                ),
            );
        } else if self.dropping && self.outbox.buffered() <= capacity / 2 {
            self.dropping = false;
            self.hub.platform(
                &self.app,
                LOG_PROCESS,
                format!(
                    "Drain {} ({}) stopped dropping lines: {dropped} dropped so far",
                    self.token, self.shown_url
                ),
            );
        }
    }
}

/// TLS trusting the system's roots plus the operator's bundle, with aws-lc-rs chosen
/// explicitly (rustls refuses to guess when several crypto providers are linked in).
fn tls_config(ca_bundle: Option<&Path>) -> Result<rustls::ClientConfig, DrainError> {
    let extra_roots = match ca_bundle {
        Some(path) => read_ca_bundle(path)?,
        None => Vec::new(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider.clone())
            .map_err(|error| DrainError::Tls(error.to_string()))?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| DrainError::Tls(error.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

fn read_ca_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, DrainError> {
    let error = |reason: String| DrainError::CaBundle {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let roots = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if roots.is_empty() {
        return Err(error("it has no PEM certificate".to_owned()));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests;
