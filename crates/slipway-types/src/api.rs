//! JSON bodies of the REST API (`/v1`), shared by the server and the client.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// `POST /v1/apps`. The name is a plain string so the server can say what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateApp {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    pub name: String,
    pub web_url: String,
    pub git_url: String,
    /// Version of the release currently serving, if any.
    pub current_release: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseStatus {
    /// Cut, not yet live.
    Pending,
    Succeeded,
    Failed,
    RolledBack,
    /// Serving a share of the requests beside the current release, watched before it is
    /// promoted or rolled back.
    Canary,
}

impl ReleaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseStatus::Pending => "pending",
            ReleaseStatus::Succeeded => "succeeded",
            ReleaseStatus::Failed => "failed",
            ReleaseStatus::RolledBack => "rolled_back",
            ReleaseStatus::Canary => "canary",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Succeeded,
            Self::Failed,
            Self::RolledBack,
            Self::Canary,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

impl fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str().replace('_', " "))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub version: String,
    pub description: String,
    pub commit: Option<String>,
    pub image: String,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub status: ReleaseStatus,
    pub status_reason: Option<String>,
    /// Whether this release is the one serving now.
    pub current: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildStatus {
    Pending,
    Succeeded,
    Failed,
}

impl BuildStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Pending => "pending",
            BuildStatus::Succeeded => "succeeded",
            BuildStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

impl fmt::Display for BuildStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    pub id: Uuid,
    pub status: BuildStatus,
    pub commit: String,
    /// The release the build produced, when it succeeded.
    pub release: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildOutput {
    pub id: Uuid,
    pub status: BuildStatus,
    pub output: String,
}

/// `PATCH /v1/apps/{app}/config`: a string sets a key, `null` unsets it (Heroku's format).
pub type ConfigPatch = BTreeMap<String, Option<String>>;

/// Answer to a config change: the whole config after it, and the release it cut (none when
/// nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChanged {
    pub config: BTreeMap<String, String>,
    pub release: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    pub email: String,
    pub role: String,
}

/// Who wrote a log line: the app's own processes, or one part of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    /// A process's stdout or stderr.
    App,
    /// One line per request through the router.
    Router,
    /// Build output, as the pusher saw it.
    Build,
    /// Releases and process lifecycle: started, healthy, stopped, rolled back.
    Platform,
}

impl LogSource {
    pub const ALL: [LogSource; 4] = [Self::App, Self::Router, Self::Build, Self::Platform];

    pub fn as_str(self) -> &'static str {
        match self {
            LogSource::App => "app",
            LogSource::Router => "router",
            LogSource::Build => "build",
            LogSource::Platform => "platform",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|source| source.as_str() == s)
    }
}

impl fmt::Display for LogSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of an app's log: an event of `GET /v1/apps/{app}/logs` (Server-Sent Events), and
/// a line of the server's log file for the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub source: LogSource,
    /// The dyno (`web.1`) for app lines and process events; `router`, `build`, `release` or
    /// `api` for the platform's own lines.
    pub process: String,
    pub text: String,
}

impl LogEntry {
    /// Heroku's log format, so tools that read `heroku logs` read this too:
    /// `2026-11-22T00:00:00.123456+00:00 app[web.1]: text` for app lines and
    /// `… slipway[router]: at=info …` for the platform's.
    pub fn render(&self) -> String {
        use fmt::Write as _;

        let at = self.at.to_offset(time::UtcOffset::UTC);
        let owner = match self.source {
            LogSource::App => "app",
            LogSource::Router | LogSource::Build | LogSource::Platform => "slipway",
        };
        let mut line = String::with_capacity(48 + self.process.len() + self.text.len());
        let _ = write!(
            line,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+00:00 {owner}[{}]: {}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second(),
            at.microsecond(),
            self.process,
            self.text,
        );
        line
    }
}

/// One process type's desired scale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormationInfo {
    pub process: String,
    pub quantity: u32,
    /// Memory limit per container, like `512M`.
    pub size: String,
    /// The command from the current release, if it has this type.
    pub command: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessState {
    Up,
    /// Exited; the platform restarts it with back-off.
    Crashed,
}

/// One running (or crashed) process container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// `web.1`
    pub dyno: String,
    pub release: String,
    pub state: ProcessState,
    /// RFC 3339 start of the current run, as the engine reports it.
    pub started_at: Option<String>,
    pub exit_code: Option<i64>,
    /// Crash restarts of this slot since it last ran steadily.
    pub restarts: u32,
    /// A canary container: the next release, serving a share of the requests.
    #[serde(default)]
    pub canary: bool,
}

/// `GET /v1/apps/{app}/formation`: the desired scale and what runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormationView {
    pub formation: Vec<FormationInfo>,
    pub processes: Vec<ProcessInfo>,
}

/// One change of `PATCH /v1/apps/{app}/formation`; scaling never cuts a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormationUpdate {
    pub process: String,
    #[serde(default)]
    pub quantity: Option<u32>,
    /// Memory like `512M` or `1G`.
    #[serde(default)]
    pub size: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormationPatch {
    pub updates: Vec<FormationUpdate>,
}

/// `POST /v1/apps/{app}/formation/restart`: every process, or one type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartRequest {
    #[serde(default)]
    pub process: Option<String>,
}

/// `POST /v1/apps/{app}/releases/rollback`: to a version, or the release before the current.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackRequest {
    #[serde(default)]
    pub version: Option<String>,
}

/// A memory size as people write it: `512M`, `1G`.
pub fn format_memory(bytes: i64) -> String {
    if bytes % (1 << 30) == 0 {
        format!("{}G", bytes >> 30)
    } else if bytes % (1 << 20) == 0 {
        format!("{}M", bytes >> 20)
    } else {
        bytes.to_string()
    }
}

/// `POST /v1/apps/{app}/runs`: a one-off process in the background. `command` is the program
/// and its arguments; one word alone is a shell command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRun {
    pub command: Vec<String>,
}

/// A one-off process the server started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// `run.<n>`, also its `DYNO`.
    pub dyno: String,
    /// The container's id.
    pub id: String,
    /// The release whose image and config it runs with.
    pub release: String,
}

/// Query of `GET /v1/apps/{app}/runs/attach`, the WebSocket of an attached one-off process.
/// Over it the client sends stdin as binary frames and [`RunControl`] as text frames; the
/// server sends output as binary frames whose first byte is [`RUN_STDOUT`] or [`RUN_STDERR`],
/// then one [`RunEvent`] text frame, then closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachRun {
    /// The command as a JSON array of words, as in [`CreateRun`].
    pub command: String,
    /// Give the process a terminal; its stdout and stderr are then one stream.
    #[serde(default)]
    pub tty: bool,
    /// The client terminal's `TERM`, with `tty`.
    pub term: Option<String>,
    /// The client terminal's size, with `tty`.
    pub rows: Option<u16>,
    pub cols: Option<u16>,
    /// Run in this Postgres add-on's image with its connection settings (`PGHOST` …
    /// `PGPASSWORD`) instead of the release's image and config: how `pg:psql` reaches
    /// `psql`, which the stack image does not have.
    #[serde(default)]
    pub addon: Option<String>,
}

/// First byte of an output frame of an attached run: the rest was printed on stdout.
pub const RUN_STDOUT: u8 = 1;
/// First byte of an output frame of an attached run: the rest was printed on stderr.
pub const RUN_STDERR: u8 = 2;

/// A text frame from the client of an attached run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunControl {
    /// `{"resize":{"rows":24,"cols":80}}`: the client's terminal changed size.
    Resize { rows: u16, cols: u16 },
    /// `{"eof":{}}`: the client's stdin ended.
    Eof {},
}

/// The last text frame the server sends an attached client before closing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEvent {
    /// `{"exited":{"code":3}}`: the process ended with this exit code.
    Exited { code: i64 },
    /// `{"failed":{"message":"…"}}`: the process could not run, or was lost.
    Failed { message: String },
}

/// `POST /v1/apps/{app}/addons`. Kind and name are plain strings so the server can say what
/// is wrong with them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateAddon {
    /// `postgres` or `redis`.
    pub kind: String,
    /// The add-on's name (`--as`); by default `<kind>-<n>`, the lowest `n` not taken.
    #[serde(default)]
    pub name: Option<String>,
}

/// One add-on of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddonInfo {
    pub name: String,
    pub kind: String,
    /// The config var that holds its URL: `DATABASE_URL`, `REDIS_URL` or `<NAME>_URL`.
    pub config_var: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `GET /v1/apps/{app}/addons/{name}`: the add-on and how its server is doing now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddonDetail {
    #[serde(flatten)]
    pub addon: AddonInfo,
    pub running: bool,
    /// The server's version, like `17.6`, when it answers.
    pub version: Option<String>,
    /// Bytes the data takes on disk, when the server answers.
    pub size_bytes: Option<u64>,
    /// Open client connections, when the server answers.
    pub connections: Option<u32>,
    /// Why the status is incomplete, when the server could not be asked.
    pub error: Option<String>,
}

/// Answer to creating or destroying an add-on: the add-on, the release that set or removed
/// its config var (none when the app has no release yet), and for a destroyed Postgres
/// add-on the final backup kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddonChanged {
    pub addon: AddonInfo,
    pub release: Option<String>,
    #[serde(default)]
    pub final_backup: Option<BackupInfo>,
}

/// Why a backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupTrigger {
    /// `pg:backups:capture`; ids start with `b`.
    Manual,
    /// The daily backup; ids start with `a`. Older than the retention, these are removed.
    Scheduled,
    /// Taken before the add-on was destroyed; ids start with `f`.
    Final,
}

impl BackupTrigger {
    pub const ALL: [BackupTrigger; 3] = [Self::Manual, Self::Scheduled, Self::Final];

    pub fn as_str(self) -> &'static str {
        match self {
            BackupTrigger::Manual => "manual",
            BackupTrigger::Scheduled => "scheduled",
            BackupTrigger::Final => "final",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|trigger| trigger.as_str() == s)
    }

    /// The letter that starts the ids of its backups, as in Heroku (`b001`, `a002`).
    pub fn prefix(self) -> char {
        match self {
            BackupTrigger::Manual => 'b',
            BackupTrigger::Scheduled => 'a',
            BackupTrigger::Final => 'f',
        }
    }
}

impl fmt::Display for BackupTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    Running,
    Succeeded,
    Failed,
}

impl BackupStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupStatus::Running => "running",
            BackupStatus::Succeeded => "succeeded",
            BackupStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Running, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

impl fmt::Display for BackupStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One backup of a Postgres add-on, kept under `<data-dir>/backups/<app>/` on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// `b001`: the trigger's letter and a number counting the app's backups.
    pub id: String,
    /// The add-on it was taken of; backups outlive it.
    pub addon: String,
    pub trigger: BackupTrigger,
    pub status: BackupStatus,
    /// The dump's file name in the app's backup folder, once it succeeded.
    pub file: Option<String>,
    pub size_bytes: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Answer to `POST /v1/apps/{app}/addons/{name}/backups/{id}/restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreInfo {
    /// The add-on restored into.
    pub addon: String,
    pub backup: BackupInfo,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for status in [
            ReleaseStatus::Pending,
            ReleaseStatus::Succeeded,
            ReleaseStatus::Failed,
            ReleaseStatus::RolledBack,
        ] {
            assert_eq!(ReleaseStatus::parse(status.as_str()), Some(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert_eq!(ReleaseStatus::RolledBack.to_string(), "rolled back");
        assert_eq!(BuildStatus::parse("failed"), Some(BuildStatus::Failed));
    }

    #[test]
    fn backup_triggers_and_statuses_round_trip() {
        for trigger in BackupTrigger::ALL {
            assert_eq!(BackupTrigger::parse(trigger.as_str()), Some(trigger));
            let json = serde_json::to_string(&trigger).unwrap();
            assert_eq!(json, format!("\"{}\"", trigger.as_str()));
        }
        let prefixes: Vec<char> = BackupTrigger::ALL.iter().map(|t| t.prefix()).collect();
        assert_eq!(prefixes, ['b', 'a', 'f']);
        for status in [
            BackupStatus::Running,
            BackupStatus::Succeeded,
            BackupStatus::Failed,
        ] {
            assert_eq!(BackupStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(BackupStatus::parse("lost"), None);
    }

    #[test]
    fn memory_is_shown_in_the_largest_whole_unit() {
        assert_eq!(format_memory(512 << 20), "512M");
        assert_eq!(format_memory(2 << 30), "2G");
        assert_eq!(format_memory(1536 << 20), "1536M");
        assert_eq!(
            crate::parse_memory(&format_memory(768 << 20)),
            Ok(768 << 20)
        );
    }

    #[test]
    fn config_patch_uses_null_to_unset() {
        let patch: ConfigPatch = serde_json::from_str(r#"{"A":"1","B":null}"#).unwrap();
        assert_eq!(patch["A"].as_deref(), Some("1"));
        assert_eq!(patch["B"], None);
    }

    #[test]
    fn run_frames_have_their_documented_shape() {
        let resize = RunControl::Resize { rows: 24, cols: 80 };
        assert_eq!(
            serde_json::to_string(&resize).unwrap(),
            r#"{"resize":{"rows":24,"cols":80}}"#
        );
        let eof: RunControl = serde_json::from_str(r#"{"eof":{}}"#).unwrap();
        assert_eq!(eof, RunControl::Eof {});
        let exited = RunEvent::Exited { code: 3 };
        assert_eq!(
            serde_json::to_string(&exited).unwrap(),
            r#"{"exited":{"code":3}}"#
        );
    }

    fn entry(source: LogSource, process: &str, text: &str) -> LogEntry {
        LogEntry {
            // 2026-11-22T01:02:03.123456789Z, as seen from +02:00
            at: OffsetDateTime::from_unix_timestamp_nanos(1_795_309_323_123_456_789)
                .unwrap()
                .to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap()),
            source,
            process: process.to_owned(),
            text: text.to_owned(),
        }
    }

    #[test]
    fn log_lines_render_in_heroku_format_in_utc() {
        assert_eq!(
            entry(LogSource::App, "web.1", "GET / 200").render(),
            "2026-11-22T01:02:03.123456+00:00 app[web.1]: GET / 200"
        );
        assert_eq!(
            entry(LogSource::Router, "router", "at=info method=GET path=\"/\"").render(),
            "2026-11-22T01:02:03.123456+00:00 slipway[router]: at=info method=GET path=\"/\""
        );
        assert_eq!(
            entry(LogSource::Platform, "web.1", "Starting process").render(),
            "2026-11-22T01:02:03.123456+00:00 slipway[web.1]: Starting process"
        );
        assert!(
            entry(LogSource::Build, "build", "-----> Released 1.0.0")
                .render()
                .ends_with(" slipway[build]: -----> Released 1.0.0")
        );
    }

    #[test]
    fn log_entries_round_trip_as_json() {
        let line = entry(LogSource::Platform, "release", "Release 1.0.0 started");
        let json = serde_json::to_value(&line).unwrap();
        assert_eq!(json["source"], "platform");
        assert_eq!(json["at"], "2026-11-22T03:02:03.123456789+02:00");
        let back: LogEntry = serde_json::from_value(json).unwrap();
        assert_eq!(back, line);
        for source in LogSource::ALL {
            assert_eq!(LogSource::parse(source.as_str()), Some(source));
        }
        assert_eq!(LogSource::parse("heroku"), None);
    }
}

/// Whether a custom domain's DNS points at the platform yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsStatus {
    /// Not yet: certificates wait, the domain is checked again every few seconds.
    Pending,
    Verified,
}

impl DnsStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DnsStatus::Pending => "pending",
            DnsStatus::Verified => "verified",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [DnsStatus::Pending, DnsStatus::Verified]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

/// Where a certificate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertSource {
    /// Ordered and renewed by Slipway.
    Acme,
    /// Uploaded with `certs:add`; never renewed by Slipway.
    Manual,
}

impl CertSource {
    pub fn as_str(self) -> &'static str {
        match self {
            CertSource::Acme => "acme",
            CertSource::Manual => "manual",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [CertSource::Acme, CertSource::Manual]
            .into_iter()
            .find(|source| source.as_str() == s)
    }
}

/// Where a certificate's issuance stands. A `failed` certificate that was issued before keeps
/// being served until it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertStatus {
    /// Waiting for DNS or for the ACME order.
    Pending,
    Issued,
    /// The last order failed; `last_error` says why and `next_attempt_at` when it retries.
    Failed,
}

impl CertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CertStatus::Pending => "pending",
            CertStatus::Issued => "issued",
            CertStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [CertStatus::Pending, CertStatus::Issued, CertStatus::Failed]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

/// `POST /v1/apps/{app}/domains`. A plain string so the server can say what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddDomain {
    pub hostname: String,
}

/// One custom domain of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainInfo {
    pub hostname: String,
    pub dns_status: DnsStatus,
    /// The record the domain needs, like `CNAME web.apps.example.com`.
    pub dns_expected: String,
    /// What the last check found.
    pub dns_found: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub checked_at: Option<OffsetDateTime>,
    /// The certificate's status, when the domain has or awaits one.
    pub cert_status: Option<CertStatus>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// One certificate of an app (or the platform's wildcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertInfo {
    /// The name it is for: a custom domain, or `*.<apps-domain>`.
    pub domain: String,
    pub source: CertSource,
    pub status: CertStatus,
    pub issuer: Option<String>,
    /// Hexadecimal.
    pub serial: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
}

/// `GET /v1/apps/{app}/certs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertsView {
    /// Whether Slipway orders certificates for the app's custom domains.
    pub auto: bool,
    pub certs: Vec<CertInfo>,
}

/// `PUT /v1/apps/{app}/certs/auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertsAuto {
    pub enabled: bool,
}

/// `POST /v1/apps/{app}/certs`: a user-supplied certificate chain and its private key, PEM.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddCert {
    pub chain_pem: String,
    pub key_pem: String,
}

/// Keeps the private key out of logs.
impl fmt::Debug for AddCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddCert")
            .field("chain_pem", &format_args!("{} bytes", self.chain_pem.len()))
            .field("key_pem", &format_args!("<redacted>"))
            .finish()
    }
}

/// How an audited action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Ok,
    /// Refused: no or a bad token, no access, a failed login, a rate limit.
    Denied,
    /// Allowed, and went wrong.
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [AuditOutcome::Ok, AuditOutcome::Denied, AuditOutcome::Failed]
            .into_iter()
            .find(|outcome| outcome.as_str() == s)
    }
}

/// `POST /v1/login`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// Keeps the password out of logs.
impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("email", &self.email)
            .field("password", &format_args!("<redacted>"))
            .finish()
    }
}

/// A new token, shown once: `POST /v1/login` and `POST /v1/tokens`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &format_args!("<redacted>"))
            .field("info", &self.info)
            .finish()
    }
}

/// A token as listed: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: Uuid,
    /// `read`, `write` or `admin`.
    pub scope: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateToken {
    /// `read`, `write` or `admin`; at most the scope of the token making the call.
    pub scope: String,
    /// Lifetime like `30d`, `12h` or `90m`; none for a token that does not expire.
    #[serde(default)]
    pub expires_in: Option<String>,
}

/// `POST /v1/apps/{app}/collaborators`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddCollaborator {
    pub email: String,
}

/// One user who may use an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollaboratorInfo {
    pub email: String,
    /// `owner` or `collaborator`.
    pub role: String,
}

/// A user, as admins see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub email: String,
    /// `admin` or `member`.
    pub role: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// `POST /v1/admin/users`. Without a password the server makes one and returns it once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateUser {
    pub email: String,
    /// `admin` or `member` (the default).
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}

impl fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateUser")
            .field("email", &self.email)
            .field("role", &self.role)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Answer to creating a user: the password, when the server made it (shown once).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedUser {
    pub user: UserInfo,
    #[serde(default)]
    pub password: Option<String>,
}

impl fmt::Debug for CreatedUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedUser")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One app as admins see it: `GET /v1/admin/apps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminAppInfo {
    pub name: String,
    pub owner: String,
    pub current_release: Option<String>,
    /// Process containers running now.
    pub containers: u32,
    /// Memory reserved by its processes (limits × scale), bytes.
    pub memory_bytes: u64,
    pub addons: u32,
    pub domains: u32,
}

/// One audit event: `GET /v1/admin/audit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub source_ip: Option<String>,
    pub detail: Option<String>,
    pub outcome: Option<AuditOutcome>,
}

/// `GET /v1/admin/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformStatus {
    pub version: String,
    pub uptime_seconds: u64,
    /// The Docker engine's version, or why it did not answer.
    pub docker: String,
    pub disk: DiskUse,
    pub apps: u32,
    pub users: u32,
    pub certificates: Vec<CertExpiry>,
    /// Releases that failed in the last 24 hours.
    pub failed_releases: Vec<FailedRelease>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskUse {
    /// The sizes of the engine's images, each counting the layers it shares with others.
    pub images_bytes: u64,
    /// `None` when the engine does not say.
    pub volumes_bytes: Option<u64>,
    pub data_dir_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertExpiry {
    pub domain: String,
    pub status: CertStatus,
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedRelease {
    pub app: String,
    pub version: String,
    pub description: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// `POST /v1/keys`: a public key as one line of an OpenSSH `.pub` file
/// (`ssh-ed25519 AAAA… comment`). A plain string, so the server can say what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddSshKey {
    pub public_key: String,
    /// What to call the key [default: its comment].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One of the caller's SSH keys, which authenticate `git push` over SSH.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKeyInfo {
    pub id: Uuid,
    pub name: String,
    /// The OpenSSH key type, like `ssh-ed25519`.
    pub algorithm: String,
    /// `SHA256:<base64>`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// `<algorithm> <base64>`, without a comment.
    pub public_key: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

/// `GET` and `PUT /v1/apps/{app}/buildpacks`: the buildpacks the app's pushes run, in order;
/// each a built-in name (`python`, `nodejs`, `static`, `procfile`) or a git URL with an
/// optional `#ref`. Empty: the app's `BUILDPACK_URL`, `.buildpacks`, Dockerfile, or
/// detection decide.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buildpacks {
    pub buildpacks: Vec<String>,
}

/// `GET`/`PUT /v1/apps/{app}/maintenance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Maintenance {
    pub enabled: bool,
}
