//! Canary releases. With a canary policy set, an app's next code release (a push or a
//! promotion: a release whose image the app has never run) does not replace the running one at
//! once: after its release phase, it starts in its own web containers beside the current ones
//! and the router sends it a share of the requests. Every second the deployer reads the
//! router's counters for the canary's release; a failure rate or p99 over the policy's
//! thresholds takes it out of the router at once, removes its containers and fails the
//! release. A canary that holds for the policy's duration is promoted: the normal rolling
//! replacement to 100%, then its own containers go.
//!
//! Config changes and rollbacks never go out as canaries: they reuse an image the app already
//! ran, a config change is often an urgent fix, and a rollback is the way out of a bad release.
//! Any new release while a canary runs aborts the canary first. Only web containers run as a
//! canary; other process types move to the new release when it is promoted.
//!
//! The canary's state (its counters baseline, its containers) lives in this process: a server
//! that restarts during a canary aborts it (`clean_orphan_canary`): the canary containers are
//! removed and the release is failed, the current release never stopped serving.

use std::time::Duration;

use slipway_router::ReleaseCounts;
use slipway_store::{App, Release, RunningCanary};
use slipway_types::api::{ProcessInfo, ProcessState, ReleaseStatus};
use slipway_types::canary::{CanaryPolicy, RunningCanaryInfo, percent_text};
use slipway_types::{AppName, Backend, CanaryRoutes, ProcessType, labels};
use time::OffsetDateTime;
use tokio::time::Instant;
use uuid::Uuid;

use super::rollout::Proc;
use super::rollout::Side;
use super::{DeployError, Deployer, Progress};
use crate::alerts::ReleaseEvent;

/// Requests the canary must have answered before its thresholds are applied: one failure in
/// the first three requests says little. At the end of the duration whatever was seen is judged.
pub const MIN_REQUESTS: u64 = 20;
/// How often the running canaries are judged.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// The `slipway.role` of canary containers: the reconciler, which keeps `process` containers
/// in line with the current release, leaves them alone.
pub(super) const CANARY_ROLE: &str = "canary";

/// A canary serving now.
pub(super) struct Canary {
    release_id: Uuid,
    version: String,
    policy: CanaryPolicy,
    started_at: OffsetDateTime,
    started: Instant,
    /// The router's counters for the release when the canary started.
    baseline: ReleaseCounts,
    procs: Vec<Proc>,
    backends: Vec<Backend>,
    /// Decided: the canary is out of the router and waits to be finished.
    verdict: Option<Verdict>,
    /// A task is finishing it.
    finishing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Promote(String),
    /// The release failed with this reason.
    Fail(String),
}

impl Canary {
    /// What the router should do with the canary, while it still takes requests.
    pub(super) fn routes(&self) -> Option<CanaryRoutes> {
        self.verdict.is_none().then(|| CanaryRoutes {
            release: self.version.clone(),
            backends: self.backends.clone(),
            percent: self.policy.percent,
            sticky: self.policy.sticky,
        })
    }
}

/// Web containers the canary runs: its share of the web formation, at least one.
fn canary_count(web_quantity: u32, percent: u8) -> u32 {
    (web_quantity * u32::from(percent)).div_ceil(100).max(1)
}

/// What the canary served in its window, as the verdict needs it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Seen {
    requests: u64,
    errors: u64,
    /// `None` with requests: slower than the router's last latency bucket.
    p99: Option<Duration>,
}

impl From<ReleaseCounts> for Seen {
    fn from(counts: ReleaseCounts) -> Self {
        Self {
            requests: counts.requests,
            errors: counts.errors,
            p99: counts.p99(),
        }
    }
}

/// Whether what the canary served so far settles it, `elapsed` after it started.
pub(super) fn judge(policy: &CanaryPolicy, seen: &Seen, elapsed: Duration) -> Option<Verdict> {
    let held = elapsed >= Duration::from_secs(policy.duration_secs);
    if (seen.requests >= MIN_REQUESTS || (held && seen.requests > 0))
        && let Some(breach) = breach(policy, seen)
    {
        return Some(Verdict::Fail(format!("canary rolled back: {breach}")));
    }
    held.then(|| {
        Verdict::Promote(format!(
            "canary held for {} with {} requests",
            duration_text(policy.duration_secs),
            seen.requests
        ))
    })
}

/// The first threshold `seen` is over, as a reason: `5xx 7.2% > 1%`, `p99 1000 ms > 500 ms`.
fn breach(policy: &CanaryPolicy, seen: &Seen) -> Option<String> {
    if seen.errors * 10_000 > u64::from(policy.max_error_basis_points) * seen.requests {
        // Tenths of a percent, rounded down: `7.2%`.
        let tenths = seen.errors * 1_000 / seen.requests;
        return Some(format!(
            "5xx {}.{}% > {}",
            tenths / 10,
            tenths % 10,
            percent_text(policy.max_error_basis_points)
        ));
    }
    let max = policy.max_p99_ms?;
    match seen.p99 {
        Some(p99) if p99 > Duration::from_millis(max.into()) => {
            Some(format!("p99 {} ms > {max} ms", p99.as_millis()))
        }
        None if seen.requests > 0 => Some(format!("p99 over 10000 ms > {max} ms")),
        _ => None,
    }
}

/// `10m`, `90s`, `1h`.
pub fn duration_text(secs: u64) -> String {
    match secs {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The policy in a few words, for the release's status and the app's log.
fn describe(policy: &CanaryPolicy) -> String {
    let mut text = format!(
        "canary at {}% for {}, rolled back above {} 5xx",
        policy.percent,
        duration_text(policy.duration_secs),
        percent_text(policy.max_error_basis_points)
    );
    if let Some(max) = policy.max_p99_ms {
        text.push_str(&format!(" or p99 {max} ms"));
    }
    if policy.sticky {
        text.push_str(", sticky");
    }
    text
}

impl Deployer {
    /// The policy `release` goes out under, if it goes out as a canary: a policy is set, the
    /// app already serves a release with web processes, and the release's image is one the app
    /// never ran (a push or a promotion, not a config change or a rollback).
    pub(super) async fn canary_policy_for(
        &self,
        app: &App,
        release: &Release,
    ) -> Result<Option<CanaryPolicy>, DeployError> {
        let Some(policy) = self.store.canary_policy(app.id).await? else {
            return Ok(None);
        };
        if self.store.current_release(app.id).await?.is_none()
            || !release.processes.contains_key(&ProcessType::web())
        {
            return Ok(None);
        }
        let formation = self.store.formation(app.id).await?;
        if !formation
            .iter()
            .any(|e| e.process.is_web() && e.quantity > 0)
        {
            return Ok(None);
        }
        let releases = self.store.releases(app.id).await?;
        let new_image = !releases
            .iter()
            .any(|r| r.id != release.id && r.image == release.image);
        Ok(new_image.then_some(policy))
    }

    /// Starts `release` as a canary beside the current release. The caller holds the app lock
    /// and has run the release phase. On failure nothing of the canary is left.
    pub(super) async fn start_canary(
        &self,
        app: &App,
        release: &Release,
        policy: CanaryPolicy,
        progress: &Progress,
    ) -> Result<(), String> {
        let web = ProcessType::web();
        if !release.processes.contains_key(&web) {
            return Err("the release has no web process".to_owned());
        }
        let formation = self
            .store
            .formation(app.id)
            .await
            .map_err(|e| e.to_string())?;
        let entry = formation
            .into_iter()
            .find(|e| e.process == web)
            .ok_or("the app has no web formation")?;
        let version = release.version.to_string();
        let count = canary_count(entry.quantity, policy.percent);
        progress
            .say(format!(
                "-----> Starting canary {version}: {count} web container(s), {}",
                describe(&policy)
            ))
            .await;
        let mut procs: Vec<Proc> = Vec::new();
        for index in 1..=count {
            match self
                .start_process(app, release, &entry, index, Side::Canary, progress)
                .await
            {
                Ok(proc) => procs.push(proc),
                Err(reason) => {
                    for proc in &procs {
                        self.discard(app, proc).await;
                    }
                    return Err(reason);
                }
            }
        }
        let started_at = OffsetDateTime::now_utc();
        let recorded = async {
            self.store.end_canary(app.id).await?;
            self.store
                .start_canary(&RunningCanary {
                    app_id: app.id,
                    release_id: release.id,
                    policy,
                    started_at,
                })
                .await?;
            self.store
                .set_release_status(release.id, ReleaseStatus::Pending, Some(&describe(&policy)))
                .await
        };
        if let Err(error) = recorded.await {
            for proc in &procs {
                self.discard(app, proc).await;
            }
            self.store.end_canary(app.id).await.ok();
            return Err(error.to_string());
        }
        let backends = procs
            .iter()
            .filter_map(|proc| {
                Some(Backend {
                    addr: proc.addr?,
                    id: proc.id.clone(),
                    dyno: format!("canary.{}", proc.dyno()),
                    release: version.clone(),
                })
            })
            .collect();
        let canary = Canary {
            release_id: release.id,
            version: version.clone(),
            policy,
            started_at,
            started: Instant::now(),
            baseline: self.router.release_counts(&app.name, &version),
            procs,
            backends,
            verdict: None,
            finishing: false,
        };
        self.canaries_mut().insert(app.name.clone(), canary);
        self.update_sites(|_| {});
        tracing::info!(app = %app.name, %version, percent = policy.percent, "canary started");
        self.event(
            &app.name,
            "release",
            format!("Canary {version} started: {}", describe(&policy)),
        );
        progress
            .say(format!(
                "-----> Canary {version} is serving {}% of requests; promoted after {} unless it fails",
                policy.percent,
                duration_text(policy.duration_secs)
            ))
            .await;
        Ok(())
    }

    fn canaries_mut(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<AppName, Canary>> {
        self.canaries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Judges every running canary against the router's counters. A canary found failing
    /// leaves the router here and now; the apps returned have a verdict and need
    /// [`Deployer::finish_canary`], which takes the app lock.
    pub fn watch_canaries(&self) -> Vec<AppName> {
        let mut decided = Vec::new();
        let mut reroute = false;
        {
            let mut canaries = self.canaries_mut();
            for (app, canary) in canaries.iter_mut() {
                if canary.finishing {
                    continue;
                }
                if canary.verdict.is_none() {
                    let seen = Seen::from(
                        self.router
                            .release_counts(app, &canary.version)
                            .since(&canary.baseline),
                    );
                    canary.verdict = judge(&canary.policy, &seen, canary.started.elapsed());
                    if let Some(verdict) = &canary.verdict {
                        reroute = true;
                        let (Verdict::Promote(reason) | Verdict::Fail(reason)) = verdict;
                        tracing::info!(app = %app, version = %canary.version, requests = seen.requests, errors = seen.errors, %reason, "canary decided");
                        if matches!(verdict, Verdict::Fail(_)) {
                            self.event(
                                app,
                                "release",
                                format!(
                                    "Canary {} breached after {} requests ({} failed): {reason}; removed from the router",
                                    canary.version, seen.requests, seen.errors
                                ),
                            );
                        }
                    }
                }
                if canary.verdict.is_some() {
                    canary.finishing = true;
                    decided.push(app.clone());
                }
            }
        }
        if reroute {
            self.update_sites(|_| {});
        }
        decided
    }

    /// Promotes a canary by hand now, without waiting for its duration.
    pub async fn promote_canary(&self, app: &App, by: &str) -> Result<(), DeployError> {
        self.decide(app, Verdict::Promote(format!("promoted by {by}")))?;
        self.finish_canary(&app.name).await
    }

    /// Stops a canary by hand: its containers go, its release is failed.
    pub async fn abort_canary(&self, app: &App, by: &str) -> Result<(), DeployError> {
        self.decide(app, Verdict::Fail(format!("canary aborted by {by}")))?;
        self.update_sites(|_| {});
        self.finish_canary(&app.name).await
    }

    fn decide(&self, app: &App, verdict: Verdict) -> Result<(), DeployError> {
        let mut canaries = self.canaries_mut();
        let canary = canaries
            .get_mut(&app.name)
            .filter(|canary| !canary.finishing)
            .ok_or_else(|| DeployError::Failed(format!("app `{}` runs no canary", app.name)))?;
        canary.verdict.get_or_insert(verdict);
        canary.finishing = true;
        Ok(())
    }

    /// Carries out the verdict of a decided canary under the app lock.
    pub async fn finish_canary(&self, app: &AppName) -> Result<(), DeployError> {
        let _guard = self.lock(app).await;
        let Some(current) = self.store.app(app).await? else {
            self.canaries_mut().remove(app);
            return Ok(());
        };
        self.finish_canary_locked(&current, None).await
    }

    /// Ends the app's canary, if one runs, with its verdict (or `otherwise` when it has none
    /// yet). The caller holds the app lock.
    pub(super) async fn finish_canary_locked(
        &self,
        app: &App,
        otherwise: Option<Verdict>,
    ) -> Result<(), DeployError> {
        let Some(verdict) = ({
            let mut canaries = self.canaries_mut();
            canaries.get_mut(&app.name).and_then(|canary| {
                canary.finishing = true;
                canary.verdict.clone().or(otherwise)
            })
        }) else {
            return Ok(());
        };
        let release_id = self.canary_release_id(&app.name).unwrap_or_else(Uuid::nil);
        let Some(release) = self.store.release_by_id(release_id).await? else {
            self.drop_canary(app).await;
            return Ok(());
        };
        match verdict {
            Verdict::Promote(reason) => {
                self.event(
                    &app.name,
                    "release",
                    format!("Promoting canary {}: {reason}", release.version),
                );
                match self.roll(app, &release, None, &Progress::none()).await {
                    Ok(rolled) => {
                        self.drop_canary(app).await;
                        self.store.end_canary(app.id).await?;
                        self.go_live(app, &release, rolled).await?;
                    }
                    Err(reason) => {
                        self.fail_canary(
                            app,
                            &release,
                            format!("canary promotion failed: {reason}"),
                        )
                        .await?;
                    }
                }
            }
            Verdict::Fail(reason) => self.fail_canary(app, &release, reason).await?,
        }
        Ok(())
    }

    /// The release the app runs as a canary now. The store keeps it `pending`; the API shows
    /// it as `canary`.
    pub fn canary_release_id(&self, app: &AppName) -> Option<Uuid> {
        self.canaries_mut().get(app).map(|canary| canary.release_id)
    }

    async fn fail_canary(
        &self,
        app: &App,
        release: &Release,
        reason: String,
    ) -> Result<(), DeployError> {
        self.drop_canary(app).await;
        self.store.end_canary(app.id).await?;
        self.store
            .set_release_status(release.id, ReleaseStatus::Failed, Some(&reason))
            .await?;
        tracing::warn!(app = %app.name, version = %release.version, %reason, "canary failed");
        self.event(
            &app.name,
            "release",
            format!(
                "Release {} failed: {reason}; canary containers removed",
                release.version
            ),
        );
        self.notify_release(app, release, ReleaseEvent::Failed, Some(reason));
        Ok(())
    }

    /// Takes the canary out of the router, waits for its requests, removes its containers.
    async fn drop_canary(&self, app: &App) {
        let Some(canary) = self.canaries_mut().remove(&app.name) else {
            return;
        };
        self.update_sites(|_| {});
        for proc in &canary.procs {
            self.discard(app, proc).await;
        }
    }

    /// After a server restart, a canary this process does not know is aborted: its
    /// containers go and its release is failed. The caller holds the app lock.
    pub(super) async fn clean_orphan_canary(&self, app: &App) -> Result<(), DeployError> {
        if self.canaries_mut().contains_key(&app.name) {
            return Ok(());
        }
        let containers = self
            .app_containers(&app.name, Some(CANARY_ROLE))
            .await
            .map_err(|e| DeployError::Failed(e.to_string()))?;
        for container in containers {
            tracing::info!(app = %app.name, container = %container.name, "removing the container of an interrupted canary");
            self.engine.remove_container(&container.id).await.ok();
        }
        if let Some(canary) = self.store.running_canary(app.id).await? {
            let reason = "canary aborted: the server restarted";
            self.store.end_canary(app.id).await?;
            self.store
                .set_release_status(canary.release_id, ReleaseStatus::Failed, Some(reason))
                .await?;
            self.event(&app.name, "release", reason);
        }
        Ok(())
    }

    /// The canary containers, for `ps`.
    pub(super) async fn canary_processes(&self, app: &AppName) -> Vec<ProcessInfo> {
        let containers = self
            .app_containers(app, Some(CANARY_ROLE))
            .await
            .unwrap_or_default();
        containers
            .iter()
            .filter_map(|c| {
                Some(ProcessInfo {
                    dyno: format!(
                        "{}.{}",
                        c.labels.get(labels::PROCESS)?,
                        c.labels.get(labels::INDEX)?
                    ),
                    release: c.labels.get(labels::RELEASE).cloned().unwrap_or_default(),
                    state: if c.running {
                        ProcessState::Up
                    } else {
                        ProcessState::Crashed
                    },
                    started_at: c.started_at.clone(),
                    exit_code: c.exit_code,
                    restarts: 0,
                    canary: true,
                })
            })
            .collect()
    }

    /// The running canary with what the router has seen of it.
    pub fn canary_info(&self, app: &AppName) -> Option<RunningCanaryInfo> {
        let canaries = self.canaries_mut();
        let canary = canaries.get(app)?;
        let seen = self
            .router
            .release_counts(app, &canary.version)
            .since(&canary.baseline);
        let duration =
            time::Duration::seconds(i64::try_from(canary.policy.duration_secs).unwrap_or(i64::MAX));
        Some(RunningCanaryInfo {
            release: canary.version.clone(),
            policy: canary.policy,
            started_at: canary.started_at,
            promote_at: canary.started_at + duration,
            requests: seen.requests,
            errors: seen.errors,
            p99_ms: seen
                .p99()
                .map(|p99| u64::try_from(p99.as_millis()).unwrap_or(u64::MAX)),
            min_requests: MIN_REQUESTS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: CanaryPolicy = CanaryPolicy {
        percent: 20,
        duration_secs: 60,
        max_error_basis_points: 100,
        max_p99_ms: None,
        sticky: false,
    };

    fn counts(requests: u64, errors: u64) -> Seen {
        Seen {
            requests,
            errors,
            p99: Some(Duration::from_millis(20)),
        }
    }

    #[test]
    fn a_failing_canary_is_rolled_back_once_it_has_enough_requests() {
        let early = counts(MIN_REQUESTS - 1, 10);
        assert_eq!(judge(&POLICY, &early, Duration::from_secs(5)), None);
        let failing = counts(40, 3);
        assert_eq!(
            judge(&POLICY, &failing, Duration::from_secs(5)),
            Some(Verdict::Fail(
                "canary rolled back: 5xx 7.5% > 1%".to_owned()
            ))
        );
    }

    #[test]
    fn a_healthy_canary_is_promoted_when_its_time_is_up() {
        let healthy = counts(1_000, 10);
        assert_eq!(judge(&POLICY, &healthy, Duration::from_secs(30)), None);
        assert!(matches!(
            judge(&POLICY, &healthy, Duration::from_secs(60)),
            Some(Verdict::Promote(_))
        ));
        let few_but_bad = counts(4, 1);
        assert!(matches!(
            judge(&POLICY, &few_but_bad, Duration::from_secs(60)),
            Some(Verdict::Fail(_))
        ));
    }

    #[test]
    fn a_slow_canary_is_rolled_back_when_a_p99_limit_is_set() {
        let slow = Seen {
            p99: Some(Duration::from_millis(1_000)),
            ..counts(100, 0)
        };
        assert_eq!(judge(&POLICY, &slow, Duration::from_secs(5)), None);
        let limited = CanaryPolicy {
            max_p99_ms: Some(500),
            ..POLICY
        };
        assert_eq!(
            judge(&limited, &slow, Duration::from_secs(5)),
            Some(Verdict::Fail(
                "canary rolled back: p99 1000 ms > 500 ms".to_owned()
            ))
        );
    }

    #[test]
    fn canaries_run_their_share_of_web_containers() {
        assert_eq!(canary_count(1, 10), 1);
        assert_eq!(canary_count(4, 20), 1);
        assert_eq!(canary_count(10, 25), 3);
    }

    #[test]
    fn policies_read_in_a_few_words() {
        let policy = CanaryPolicy {
            max_p99_ms: Some(500),
            sticky: true,
            ..POLICY
        };
        assert_eq!(
            describe(&policy),
            "canary at 20% for 1m, rolled back above 1% 5xx or p99 500 ms, sticky"
        );
        assert_eq!(duration_text(600), "10m");
        assert_eq!(duration_text(90), "90s");
    }
}
