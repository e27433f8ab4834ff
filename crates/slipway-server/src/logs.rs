//! Every app's log in one place: its processes' output, the router's line per request, build
//! output and the platform's events. The last lines of each app are kept in memory for
//! `slipway logs` and on disk (`<data-dir>/logs/<app>.jsonl`) so they survive deploys and
//! server restarts; live lines fan out to followers (`slipway logs -t`).

mod files;
pub(crate) mod lines;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use slipway_engine::{ContainerEngine, EngineError, OutputChunk};
use slipway_types::AppName;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use slipway_types::api::LogSource;

use self::files::Files;
use self::lines::LineSplitter;
use crate::drains::Taps;

/// One line of an app's log. It is kept, stored and sent exactly as the API's `LogEntry`, so
/// the server and the client render it with the same code.
pub type LogLine = slipway_types::api::LogEntry;

/// Lines kept per app when `--log-lines` is not set.
pub const DEFAULT_KEEP_LINES: usize = 1500;

/// Live lines a follower may fall behind by before it skips ahead; writers never wait.
const LIVE_BUFFER: usize = 1024;

/// Which lines a reader wants: one source, and one process type (`web`, matching `web.1`,
/// `web.2`…) or one dyno (`web.1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    pub source: Option<LogSource>,
    pub process: Option<String>,
}

impl LogFilter {
    pub fn matches(&self, line: &LogLine) -> bool {
        self.source.is_none_or(|source| source == line.source)
            && self.process.as_deref().is_none_or(|wanted| {
                line.process == wanted
                    || line
                        .process
                        .strip_prefix(wanted)
                        .is_some_and(|rest| rest.starts_with('.'))
            })
    }
}

/// The log store. Share it as `Arc<LogHub>`.
pub struct LogHub {
    dir: PathBuf,
    keep_lines: usize,
    apps: Mutex<HashMap<AppName, Arc<AppLog>>>,
    /// Outputs being followed (containers by id), so following one again is a no-op.
    following: Mutex<HashSet<String>>,
    files: Files,
    /// The app's log drains, offered every line.
    taps: Taps,
    closed: CancellationToken,
}

/// One app's recent lines and its live feed.
struct AppLog {
    state: Mutex<AppLogState>,
}

struct AppLogState {
    /// `None` until first used: the file is read then, not for every app at start.
    recent: Option<VecDeque<LogLine>>,
    /// `None` once the app is destroyed, which closes its followers' feeds. Lines still coming
    /// from its last containers are dropped, and a new app of the same name gets a new
    /// `AppLog`.
    live: Option<broadcast::Sender<LogLine>>,
}

impl AppLog {
    fn new(recent: Option<VecDeque<LogLine>>) -> Arc<AppLog> {
        Arc::new(AppLog {
            state: Mutex::new(AppLogState {
                recent,
                live: Some(broadcast::channel(LIVE_BUFFER).0),
            }),
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data whole, so a panic elsewhere does not spoil it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LogHub {
    /// Opens (creating) the log folder and starts the thread that writes it. Each app's file
    /// holds between `keep_lines` and twice that many lines.
    pub fn open(dir: PathBuf, keep_lines: usize) -> std::io::Result<Arc<LogHub>> {
        std::fs::create_dir_all(&dir)?;
        let files = Files::start(dir.clone(), keep_lines)?;
        Ok(Arc::new(LogHub {
            dir,
            keep_lines,
            apps: Mutex::default(),
            following: Mutex::default(),
            files,
            taps: Taps::default(),
            closed: CancellationToken::new(),
        }))
    }

    /// Adds a line to the app's log, its file and its followers. Never waits for the disk.
    pub fn push(&self, app: &AppName, line: LogLine) {
        self.with_recent(app, |recent, live| self.add(app, recent, live, line));
    }

    /// `push`, unless `log` is no longer the app's log: a follower of a destroyed app's
    /// container must not start a log for a new app of the same name.
    fn push_to(&self, app: &AppName, log: &AppLog, line: LogLine) -> bool {
        let mut state = lock(&log.state);
        let AppLogState { recent, live } = &mut *state;
        let Some(live) = live else {
            return false;
        };
        let recent = self.loaded(app, recent);
        self.add(app, recent, live, line);
        true
    }

    fn add(
        &self,
        app: &AppName,
        recent: &mut VecDeque<LogLine>,
        live: &broadcast::Sender<LogLine>,
        line: LogLine,
    ) {
        recent.push_back(line.clone());
        while recent.len() > self.keep_lines {
            recent.pop_front();
        }
        self.taps.offer(app, &line);
        // No followers is not an error.
        let _ = live.send(line.clone());
        // Sent while the state is locked, so the file has the app's lines in memory order.
        self.files.append(app, line);
    }

    /// A platform event about `process`: a dyno (`web.1`), or `release` or `api`.
    pub fn platform(&self, app: &AppName, process: &str, text: impl Into<String>) {
        self.push(app, line_now(LogSource::Platform, process, text.into()));
    }

    /// A line of build output, as the pusher saw it.
    pub fn build_line(&self, app: &AppName, text: impl Into<String>) {
        self.push(app, line_now(LogSource::Build, "build", text.into()));
    }

    /// The router's line for one request.
    pub fn router_line(&self, app: &AppName, text: impl Into<String>) {
        self.push(app, line_now(LogSource::Router, "router", text.into()));
    }

    /// The last `lines` lines matching `filter`, oldest first.
    pub fn recent(&self, app: &AppName, lines: usize, filter: &LogFilter) -> Vec<LogLine> {
        self.with_recent(app, |recent, _| last_matching(recent, lines, filter))
    }

    /// The last `lines` lines matching `filter`, and every line pushed from then on: each line
    /// is in exactly one of the two. A follower that falls behind by more than a buffer's worth
    /// gets `Lagged` and skips ahead; writers never wait for it. The feed closes when the app
    /// is forgotten.
    pub fn recent_and_subscribe(
        &self,
        app: &AppName,
        lines: usize,
        filter: &LogFilter,
    ) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        self.with_recent(app, |recent, live| {
            (last_matching(recent, lines, filter), live.subscribe())
        })
    }

    /// Follows a container's stdout and stderr into the app's log as `app[<dyno>]` lines until
    /// its output ends (the container stopped or was removed). `since` (unix seconds) skips
    /// what it printed before, so following a container again after a server restart does not
    /// repeat lines. Following a container that is already followed does nothing.
    pub fn follow_container(
        self: &Arc<Self>,
        engine: Arc<dyn ContainerEngine>,
        app: AppName,
        dyno: String,
        container_id: String,
        since: Option<i64>,
    ) {
        let id = container_id.clone();
        self.follow_output(app, dyno, container_id, move || engine.output(&id, since));
    }

    /// Sends what `open` returns into the app's log as `app[<dyno>]` lines until it ends:
    /// output that is not one local container's, like a Swarm service's. `key` names the
    /// output; following a key that is already followed does nothing (and does not call
    /// `open`). Returns the follower, which ends with the output, unless it was followed.
    pub fn follow_output(
        self: &Arc<Self>,
        app: AppName,
        dyno: String,
        key: String,
        open: impl FnOnce() -> BoxStream<'static, Result<OutputChunk, EngineError>> + Send + 'static,
    ) -> Option<JoinHandle<()>> {
        if !lock(&self.following).insert(key.clone()) {
            return None;
        }
        let following = Following {
            hub: Arc::clone(self),
            key,
        };
        // The log as it is now: if the app is destroyed meanwhile, its lines go nowhere.
        let log = self.app_log(&app);
        Some(tokio::spawn(async move {
            let hub = &following.hub;
            let push = |text| hub.push_to(&app, &log, line_now(LogSource::App, &dyno, text));
            let mut output = open();
            let mut splitter = LineSplitter::default();
            while let Some(chunk) = output.next().await {
                match chunk {
                    Ok(chunk) => {
                        if !splitter
                            .feed(chunk.stream, &chunk.bytes)
                            .into_iter()
                            .all(push)
                        {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::debug!(%app, %dyno, %error, "following output stopped");
                        break;
                    }
                }
            }
            splitter.finish().into_iter().all(push);
        }))
    }

    /// Deletes the app's log, in memory and on disk, and closes its followers' feeds: for a
    /// destroyed app, so a new app of the same name starts with an empty log.
    pub fn forget(&self, app: &AppName) {
        // An empty, already loaded entry rather than none: loading the file again could read
        // it before the writer thread has deleted it. Everything happens under the map's lock
        // so the file is deleted after the old log's last line and before the new one's first.
        let mut apps = lock(&self.apps);
        if let Some(old) = apps.insert(app.clone(), AppLog::new(Some(VecDeque::new()))) {
            lock(&old.state).live = None;
        }
        self.files.forget(app);
        self.taps.forget(app);
        drop(apps);
    }

    /// The app's log drains: `drains` attaches them here.
    pub fn taps(&self) -> &Taps {
        &self.taps
    }

    /// Waits until every line pushed so far is written to disk.
    pub async fn flush(&self) {
        self.files.flush().await;
    }

    /// Ends every follower's stream, so a server shutting down does not wait for clients that
    /// follow logs forever. Lines are still kept.
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Resolves once `close` was called.
    pub async fn closed(&self) {
        self.closed.cancelled().await;
    }

    fn app_log(&self, app: &AppName) -> Arc<AppLog> {
        Arc::clone(
            lock(&self.apps)
                .entry(app.clone())
                .or_insert_with(|| AppLog::new(None)),
        )
    }

    /// Runs `f` on the app's recent lines, reading them from disk on first use.
    fn with_recent<R>(
        &self,
        app: &AppName,
        f: impl FnOnce(&mut VecDeque<LogLine>, &broadcast::Sender<LogLine>) -> R,
    ) -> R {
        loop {
            let log = self.app_log(app);
            let mut state = lock(&log.state);
            let AppLogState { recent, live } = &mut *state;
            // Forgotten between the lookup and the lock: the map has the new log now.
            if let Some(live) = live {
                return f(self.loaded(app, recent), live);
            }
        }
    }

    fn loaded<'a>(
        &self,
        app: &AppName,
        recent: &'a mut Option<VecDeque<LogLine>>,
    ) -> &'a mut VecDeque<LogLine> {
        recent.get_or_insert_with(|| {
            files::load(&files::path(&self.dir, app), self.keep_lines).unwrap_or_else(|error| {
                tracing::warn!(%app, %error, "reading the app's log file failed; starting it empty");
                VecDeque::new()
            })
        })
    }
}

/// Marks an output (a container's, by its id) as no longer followed when its follower ends,
/// however it ends.
struct Following {
    hub: Arc<LogHub>,
    key: String,
}

impl Drop for Following {
    fn drop(&mut self) {
        lock(&self.hub.following).remove(&self.key);
    }
}

fn line_now(source: LogSource, process: &str, text: String) -> LogLine {
    LogLine {
        at: OffsetDateTime::now_utc(),
        source,
        process: process.to_owned(),
        text,
    }
}

fn last_matching(recent: &VecDeque<LogLine>, lines: usize, filter: &LogFilter) -> Vec<LogLine> {
    let mut found: Vec<LogLine> = recent
        .iter()
        .rev()
        .filter(|line| filter.matches(line))
        .take(lines)
        .cloned()
        .collect();
    found.reverse();
    found
}

#[cfg(test)]
mod tests;
