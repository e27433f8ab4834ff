//! Is a new container healthy? For `web`: it accepts connections on `$PORT` within 60 s, then
//! passes the release's app.json startup checks, or by default is still running 2 s later.
//! For other types: the app.json checks, or by default still running after 10 s.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use slipway_engine::ContainerState;
use slipway_types::{HealthCheck, ProcessType};
use tokio::time::Instant;

use super::Deployer;

/// A web process must accept TCP connections on `$PORT` within this long.
const WEB_BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// Other processes must still be running after this long.
const WORKER_SETTLE: Duration = Duration::from_secs(10);
/// A web process must still be running this long after it first accepted a connection:
/// servers like gunicorn bind `$PORT` before their workers load the app, and exit if it fails
/// to load.
const WEB_SETTLE: Duration = Duration::from_secs(2);

/// What a health check looks at.
pub(super) struct Target<'a> {
    pub id: &'a str,
    pub process: &'a ProcessType,
    pub dyno: &'a str,
    pub network: &'a str,
    /// The app's hostname, sent as `Host` in HTTP checks.
    pub host: &'a str,
    /// Where a web process listens (`$PORT`) and checks without a port connect.
    pub port: u16,
}

impl Deployer {
    /// Waits for a new container to be healthy; for web, returns the address to route to.
    pub(super) async fn wait_healthy(
        &self,
        target: &Target<'_>,
        checks: &[&HealthCheck],
    ) -> Result<Option<SocketAddr>, String> {
        let addr = if target.process.is_web() {
            Some(self.wait_listening(target).await?)
        } else {
            None
        };
        if checks.is_empty() {
            let settle = if addr.is_some() {
                WEB_SETTLE
            } else {
                WORKER_SETTLE
            };
            tokio::time::sleep(settle).await;
            self.ensure_running(target).await?;
        }
        for check in checks {
            self.run_check(target, addr, check).await?;
        }
        Ok(addr)
    }

    async fn wait_listening(&self, target: &Target<'_>) -> Result<SocketAddr, String> {
        let deadline = Instant::now() + WEB_BOOT_TIMEOUT;
        loop {
            let state = self.ensure_running(target).await?;
            if let Some(ip) = state.addresses.get(target.network) {
                let addr = SocketAddr::new(*ip, target.port);
                let connect = tokio::time::timeout(
                    Duration::from_secs(1),
                    tokio::net::TcpStream::connect(addr),
                );
                if matches!(connect.await, Ok(Ok(_))) {
                    return Ok(addr);
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not listen on $PORT ({}) within {} s: bind your web process to 0.0.0.0:$PORT",
                    target.dyno,
                    target.port,
                    WEB_BOOT_TIMEOUT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The container's state, or why it is no longer running.
    async fn ensure_running(&self, target: &Target<'_>) -> Result<ContainerState, String> {
        let state = self
            .engine
            .inspect(target.id)
            .await
            .map_err(|e| e.to_string())?;
        if state.running {
            Ok(state)
        } else {
            Err(self.exited_reason(target.dyno, &state).await)
        }
    }

    /// Dokku's semantics: wait `initialDelay`, then up to `attempts` tries `wait` apart.
    async fn run_check(
        &self,
        target: &Target<'_>,
        addr: Option<SocketAddr>,
        check: &HealthCheck,
    ) -> Result<(), String> {
        let label = check
            .name
            .clone()
            .or_else(|| check.path.clone())
            .unwrap_or_else(|| "uptime".to_owned());
        tokio::time::sleep(Duration::from_secs(check.initial_delay)).await;
        let mut last = String::new();
        for attempt in 1..=check.attempts {
            self.ensure_running(target).await?;
            match self.check_once(target, addr, check).await {
                Ok(()) => return Ok(()),
                Err(why) => last = why,
            }
            if attempt < check.attempts {
                tokio::time::sleep(Duration::from_secs(check.wait)).await;
            }
        }
        Err(format!(
            "{} failed its health check `{label}` {} times: {last}",
            target.dyno, check.attempts
        ))
    }

    async fn check_once(
        &self,
        target: &Target<'_>,
        addr: Option<SocketAddr>,
        check: &HealthCheck,
    ) -> Result<(), String> {
        if let Some(seconds) = check.uptime {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            return self.ensure_running(target).await.map(|_| ());
        }
        let Some(path) = &check.path else {
            return Ok(());
        };
        let ip = match addr {
            Some(addr) => addr.ip(),
            None => *self
                .ensure_running(target)
                .await?
                .addresses
                .get(target.network)
                .ok_or("the container has no address")?,
        };
        let port = check.port.unwrap_or(target.port);
        let url = format!("http://{}{path}", SocketAddr::new(ip, port));
        let response = self
            .http
            .get(&url)
            .header(http::header::HOST, target.host)
            .timeout(Duration::from_secs(check.timeout))
            .send()
            .await
            .map_err(|e| format!("GET {path}: {}", without_url(&e)))?;
        let status = response.status();
        if !(status.is_success() || status.is_redirection()) {
            return Err(format!("GET {path} answered {status}"));
        }
        if let Some(content) = &check.content {
            let body = response
                .text()
                .await
                .map_err(|e| format!("GET {path}: {}", without_url(&e)))?;
            if !body.contains(content.as_str()) {
                return Err(format!("GET {path} did not contain `{content}`"));
            }
        }
        Ok(())
    }

    /// Says why a container stopped, with the last lines it printed.
    pub(super) async fn exited_reason(&self, dyno: &str, state: &ContainerState) -> String {
        let mut output = Vec::new();
        let mut stream = self.engine.output(&state.id, None);
        let collect = async {
            while let Some(Ok(chunk)) = stream.next().await {
                output.extend_from_slice(&chunk.bytes);
            }
        };
        tokio::time::timeout(Duration::from_secs(3), collect)
            .await
            .ok();
        let text = String::from_utf8_lossy(&output);
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        let code = state
            .exit_code
            .map_or_else(|| "?".to_owned(), |c| c.to_string());
        let mut reason = format!("{dyno} exited with status {code} while starting");
        if !tail.is_empty() {
            reason.push_str(": ");
            reason.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join(" | "));
        }
        reason
    }
}

/// reqwest's message without the URL (the container address means nothing to the user).
fn without_url(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection refused".to_owned()
    } else if error.is_body() || error.is_decode() {
        "the answer's body could not be read".to_owned()
    } else {
        "the request failed".to_owned()
    }
}
