//! Deploy notifications and alerts. The deployer and the reconciler report releases and crashes
//! through a [`Notifier`], which never waits; one worker turns those reports, the time series'
//! closed buckets and a periodic look at certificates into alert transitions (`rules.rs`),
//! platform lines in the app's log, and signed webhook deliveries (`webhooks.rs`).

mod rules;
pub mod webhooks;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use slipway_store::App;
use slipway_types::AppName;
use slipway_types::alerts::{AlertRule, EventKind, FiringAlert, Threshold};
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::Platform;
use crate::timeseries::AppPoint;
use rules::{Crashes, Observation, RuleState, Transition};
use webhooks::{AlertFacts, Deliveries, Event, ReleaseFacts, Retries};

/// Reports waiting for the worker; beyond this they are dropped (and counted).
const NOTICE_BACKLOG: usize = 1024;
/// How often crash loops are looked at again (they recover as time passes, not on an event).
const TICK: Duration = Duration::from_secs(30);
/// How often certificates are looked at: they expire in days.
const CERT_EVERY: time::Duration = time::Duration::minutes(10);

/// What happened to a release, as webhooks name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseEvent {
    Succeeded,
    Failed,
    RolledBack,
}

impl ReleaseEvent {
    fn name(self) -> &'static str {
        match self {
            ReleaseEvent::Succeeded => "release.succeeded",
            ReleaseEvent::Failed => "release.failed",
            ReleaseEvent::RolledBack => "release.rolled_back",
        }
    }
}

/// A report to the alerts worker.
#[derive(Debug, Clone)]
pub enum Notice {
    Release {
        app: AppName,
        event: ReleaseEvent,
        version: String,
        description: String,
        reason: Option<String>,
    },
    /// The reconciler found a process exited and started it again.
    Crashed { app: AppName },
}

/// Where reports go. Sending never waits, so a slow webhook never holds up a deploy.
#[derive(Clone)]
pub struct Notifier {
    sender: mpsc::Sender<Notice>,
}

impl Notifier {
    /// A notifier and the receiving end the worker ([`run`]) reads.
    pub fn new() -> (Notifier, mpsc::Receiver<Notice>) {
        let (sender, receiver) = mpsc::channel(NOTICE_BACKLOG);
        (Notifier { sender }, receiver)
    }

    pub fn send(&self, notice: Notice) {
        if let Err(mpsc::error::TrySendError::Full(notice)) = self.sender.try_send(notice) {
            metrics::counter!("slipway_notices_dropped_total").increment(1);
            tracing::warn!(?notice, "the alerts worker is behind: notice dropped");
        }
    }
}

/// The alerts worker: runs until `shutdown`.
pub async fn run(
    platform: Arc<Platform>,
    mut notices: mpsc::Receiver<Notice>,
    shutdown: CancellationToken,
) {
    let mut points = Some(platform.series.subscribe());
    let deliveries =
        Deliveries::start(platform.store.clone(), Retries::default(), shutdown.clone());
    let mut worker = Worker {
        platform,
        deliveries,
        states: HashMap::new(),
        crashes: HashMap::new(),
        certs_checked: None,
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            notice = notices.recv() => match notice {
                Some(notice) => worker.notice(notice).await,
                None => return,
            },
            point = next_point(&mut points) => match point {
                Ok(point) => worker.point(&point).await,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "the alerts worker fell behind the time series");
                }
                Err(broadcast::error::RecvError::Closed) => points = None,
            },
            _ = tick.tick() => worker.tick().await,
        }
    }
}

/// The next closed bucket; pending for ever once the time series has closed.
async fn next_point(
    points: &mut Option<broadcast::Receiver<Arc<AppPoint>>>,
) -> Result<Arc<AppPoint>, broadcast::error::RecvError> {
    match points {
        Some(points) => points.recv().await,
        None => std::future::pending().await,
    }
}

/// The thresholds in force for an app: its own over the defaults; rules that are off are
/// left out.
pub fn thresholds(set: &BTreeMap<AlertRule, Option<Threshold>>) -> BTreeMap<AlertRule, Threshold> {
    AlertRule::ALL
        .into_iter()
        .filter_map(|rule| {
            let threshold = match set.get(&rule) {
                Some(custom) => *custom,
                None => rule.default_threshold(),
            };
            Some((rule, threshold?))
        })
        .collect()
}

struct Worker {
    platform: Arc<Platform>,
    deliveries: Deliveries,
    states: HashMap<(Uuid, AlertRule), RuleState>,
    crashes: HashMap<Uuid, Crashes>,
    certs_checked: Option<OffsetDateTime>,
}

impl Worker {
    async fn app(&self, name: &AppName) -> Option<App> {
        match self.platform.store.app(name).await {
            Ok(app) => app,
            Err(error) => {
                tracing::warn!(app = %name, %error, "reading the app for alerts failed");
                None
            }
        }
    }

    async fn notice(&mut self, notice: Notice) {
        match notice {
            Notice::Release {
                app,
                event,
                version,
                description,
                reason,
            } => {
                let Some(app) = self.app(&app).await else {
                    return;
                };
                let event = Event {
                    kind: EventKind::Release,
                    name: event.name(),
                    at: OffsetDateTime::now_utc(),
                    release: Some(ReleaseFacts {
                        version,
                        description,
                        reason,
                    }),
                    alert: None,
                };
                self.deliveries.send(&app, &event).await;
            }
            Notice::Crashed { app } => {
                let Some(app) = self.app(&app).await else {
                    return;
                };
                let now = OffsetDateTime::now_utc();
                self.crashes.entry(app.id).or_default().record(now);
                self.crash_loop(&app, now).await;
            }
        }
    }

    /// A closed bucket: the rules on the time series.
    async fn point(&mut self, point: &AppPoint) {
        let Some(app) = self.app(&point.app).await else {
            return;
        };
        let Some(thresholds) = self.thresholds(&app).await else {
            return;
        };
        let bucket = point.point.at.unix_timestamp() / i64::from(point.point.width_secs.max(1));
        for rule in [
            AlertRule::ErrorRate,
            AlertRule::P99Latency,
            AlertRule::Memory,
        ] {
            let Some(threshold) = thresholds.get(&rule) else {
                continue;
            };
            if let Some(observation) = rules::observe_point(rule, *threshold, &point.point) {
                self.apply(&app, rule, *threshold, bucket, observation)
                    .await;
            }
        }
    }

    async fn tick(&mut self) {
        let apps = match self.platform.store.apps().await {
            Ok(apps) => apps,
            Err(error) => {
                tracing::warn!(%error, "listing apps for alerts failed");
                return;
            }
        };
        let now = OffsetDateTime::now_utc();
        for app in &apps {
            self.crash_loop(app, now).await;
        }
        self.crashes.retain(|_, crashes| !crashes.is_empty());
        // Deleted apps are forgotten.
        self.states
            .retain(|(app_id, _), _| apps.iter().any(|app| app.id == *app_id));
        if self
            .certs_checked
            .is_none_or(|checked| now - checked >= CERT_EVERY)
        {
            self.certs_checked = Some(now);
            self.cert_expiry(&apps, now).await;
        }
    }

    async fn crash_loop(&mut self, app: &App, now: OffsetDateTime) {
        let Some(thresholds) = self.thresholds(app).await else {
            return;
        };
        let Some(threshold) = thresholds.get(&AlertRule::CrashLoop) else {
            return;
        };
        let crashes = self.crashes.entry(app.id).or_default();
        crashes.forget_before(now - time::Duration::days(1));
        if let Some(observation) = crashes.observe(*threshold, now) {
            let bucket = now.unix_timestamp() / 60;
            self.apply(app, AlertRule::CrashLoop, *threshold, bucket, observation)
                .await;
        }
    }

    async fn cert_expiry(&mut self, apps: &[App], now: OffsetDateTime) {
        let certs = match self.platform.store.certificates().await {
            Ok(certs) => certs,
            Err(error) => {
                tracing::warn!(%error, "listing certificates for alerts failed");
                return;
            }
        };
        let bucket = now.unix_timestamp() / CERT_EVERY.whole_seconds();
        for app in apps {
            let Some(thresholds) = self.thresholds(app).await else {
                continue;
            };
            let Some(threshold) = thresholds.get(&AlertRule::CertExpiry) else {
                continue;
            };
            let owned = certs
                .iter()
                .filter(|cert| cert.app_id == Some(app.id))
                .filter_map(|cert| Some((cert.name.as_str(), cert.facts.as_ref()?.not_after)));
            if let Some(observation) = rules::observe_certs(*threshold, owned, now) {
                self.apply(app, AlertRule::CertExpiry, *threshold, bucket, observation)
                    .await;
            }
        }
    }

    async fn thresholds(&self, app: &App) -> Option<BTreeMap<AlertRule, Threshold>> {
        match self.platform.store.alert_thresholds(app.id).await {
            Ok(set) => Some(thresholds(&set)),
            Err(error) => {
                tracing::warn!(app = %app.name, %error, "reading alert thresholds failed");
                None
            }
        }
    }

    /// Applies an observation: fires or recovers the alert at most once, in the store first
    /// (which keeps it once across restarts), then in the log and to the webhooks.
    async fn apply(
        &mut self,
        app: &App,
        rule: AlertRule,
        threshold: Threshold,
        bucket: i64,
        observation: Observation,
    ) {
        let store = &self.platform.store;
        let firing = match store.firing_alerts(app.id).await {
            Ok(firing) => firing.iter().any(|alert| alert.rule == rule),
            Err(error) => {
                tracing::warn!(app = %app.name, %error, "reading firing alerts failed");
                return;
            }
        };
        let state = self.states.entry((app.id, rule)).or_default();
        let Some(transition) = state.observe(firing, bucket, observation.breached) else {
            return;
        };
        let now = OffsetDateTime::now_utc();
        let changed = match transition {
            Transition::Fire => {
                let alert = FiringAlert {
                    rule,
                    value: observation.value.clone(),
                    message: observation.message.clone(),
                    since: now,
                };
                store.fire_alert(app.id, &alert).await
            }
            Transition::Recover => store.resolve_alert(app.id, rule).await,
        };
        match changed {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(app = %app.name, %rule, %error, "recording an alert failed");
                return;
            }
        }
        let (name, word) = match transition {
            Transition::Fire => ("alert.firing", "firing"),
            Transition::Recover => ("alert.resolved", "resolved"),
        };
        tracing::info!(app = %app.name, %rule, value = %observation.value, "alert {word}");
        metrics::counter!("slipway_alerts_total", "rule" => rule.as_str(), "transition" => word)
            .increment(1);
        self.platform.logs.platform(
            &app.name,
            "alerts",
            format!("Alert {rule} {word}: {}", observation.message),
        );
        let event = Event {
            kind: EventKind::Alert,
            name,
            at: now,
            release: None,
            alert: Some(AlertFacts {
                rule,
                threshold: threshold.to_string(),
                value: observation.value,
                message: observation.message,
            }),
        };
        self.deliveries.send(app, &event).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_until_an_app_sets_or_turns_off_a_rule() {
        let defaults = thresholds(&BTreeMap::new());
        assert_eq!(
            defaults.keys().copied().collect::<Vec<_>>(),
            [
                AlertRule::Memory,
                AlertRule::CrashLoop,
                AlertRule::CertExpiry
            ]
        );
        let set = BTreeMap::from([
            (AlertRule::ErrorRate, Some(Threshold::Percent(5.0))),
            (AlertRule::CrashLoop, None),
        ]);
        let custom = thresholds(&set);
        assert_eq!(custom[&AlertRule::ErrorRate], Threshold::Percent(5.0));
        assert!(!custom.contains_key(&AlertRule::CrashLoop));
        assert_eq!(custom[&AlertRule::CertExpiry], Threshold::Days(14));
    }
}
