//! The client's command line: global options, subcommands and the environment they run in.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::client::Client;
use crate::commands;
use crate::git;
use crate::login_file::LoginFile;
use crate::token::Token;

/// Where `slipway server` listens by default.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7070";

/// Options every client subcommand accepts, before or after the subcommand name.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalOpts {
    /// Server URL [default: the one stored by `slipway login`, else http://127.0.0.1:7070]
    #[arg(long, global = true, env = "SLIPWAY_URL", value_name = "URL")]
    pub url: Option<String>,
    /// API token [default: the one stored by `slipway login` for this server]
    #[arg(
        long,
        global = true,
        env = "SLIPWAY_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<Token>,
    /// App to act on [default: from the `platform` git remote of the current repository]
    #[arg(short = 'a', long, global = true, value_name = "APP")]
    pub app: Option<String>,
    /// Print JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
}

/// The client subcommands. The binary flattens this enum into its own, next to `server`.
#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// Sign in and store the URL and a token for later commands and `git push`
    ///
    /// With --email and --password-stdin, signs in with a password and gets a 30-day token;
    /// else takes --token, or reads the token from standard input when it is not a terminal.
    Login {
        /// Sign in as this user, with the password read from standard input
        #[arg(long, requires = "password_stdin")]
        email: Option<String>,
        /// Read the password from standard input
        #[arg(long, requires = "email")]
        password_stdin: bool,
        /// The password, read from standard input by `run`
        #[arg(skip)]
        password: Option<Token>,
    },
    /// Revoke the stored token on the server and forget it here
    Logout,
    /// List your API tokens (never the tokens themselves)
    Tokens,
    /// Create an API token, shown once
    #[command(name = "tokens:create")]
    TokensCreate {
        /// read, write or admin (at most your current token's scope)
        #[arg(long, default_value = "write")]
        scope: String,
        /// Lifetime like 30d, 12h or 90m [default: never expires]
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// Revoke one of your API tokens: the next request with it is refused
    #[command(name = "tokens:revoke")]
    TokensRevoke {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// List who may use the app: its owner and collaborators
    Access,
    /// Let a user use the app (owner or admin only)
    #[command(name = "access:add")]
    AccessAdd {
        #[arg(value_name = "EMAIL")]
        email: String,
    },
    /// Stop a user from using the app (owner or admin only)
    #[command(name = "access:remove")]
    AccessRemove {
        #[arg(value_name = "EMAIL")]
        email: String,
    },
    /// List every user (admins only)
    #[command(name = "admin:users")]
    AdminUsers,
    /// Create a user (admins only); prints a generated password unless --password-stdin
    #[command(name = "admin:users:create")]
    AdminUsersCreate {
        #[arg(value_name = "EMAIL")]
        email: String,
        /// admin or member
        #[arg(long, default_value = "member")]
        role: String,
        /// Read the new user's password from standard input
        #[arg(long)]
        password_stdin: bool,
        #[arg(skip)]
        password: Option<Token>,
    },
    /// Remove a user with their tokens (admins only); refuses the last admin and app owners
    #[command(name = "admin:users:remove")]
    AdminUsersRemove {
        #[arg(value_name = "EMAIL")]
        email: String,
    },
    /// List every app with its owner and resource use (admins only)
    #[command(name = "admin:apps")]
    AdminApps,
    /// Show the audit log, newest first (admins only); with -a/--app, only that app's events
    #[command(name = "admin:audit")]
    AdminAudit {
        /// How many events
        #[arg(short = 'n', long = "num", default_value_t = 100)]
        num: i64,
        /// Only events by this user
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
    },
    /// Show the platform's health: version, Docker, disk, certificates, failed releases
    #[command(name = "admin:status")]
    AdminStatus,
    /// List the swarm's nodes with their role, state, availability and tasks (admins only,
    /// --runtime swarm)
    #[command(name = "admin:nodes")]
    AdminNodes,
    /// Move every task off a swarm node, by hostname or id; admin:nodes:activate undoes it
    #[command(name = "admin:nodes:drain")]
    AdminNodesDrain {
        #[arg(value_name = "NAME")]
        node: String,
    },
    /// Let a drained swarm node take tasks again, by hostname or id
    #[command(name = "admin:nodes:activate")]
    AdminNodesActivate {
        #[arg(value_name = "NAME")]
        node: String,
    },
    /// Show who the token belongs to
    Whoami,
    /// List your SSH keys, which authenticate `git push` over SSH
    Keys,
    /// Register an SSH public key [default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub, then id_rsa.pub]
    #[command(name = "keys:add")]
    KeysAdd {
        #[arg(value_name = "FILE")]
        file: Option<std::path::PathBuf>,
    },
    /// Remove one of your SSH keys, by fingerprint (SHA256:…) or id
    #[command(name = "keys:remove")]
    KeysRemove {
        #[arg(value_name = "FINGERPRINT")]
        key: String,
    },
    /// List apps
    Apps,
    /// Create an app (and its `platform` git remote, inside a repository)
    #[command(name = "apps:create")]
    AppsCreate {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Show an app
    #[command(name = "apps:info")]
    AppsInfo,
    /// Destroy an app with everything it owns
    #[command(name = "apps:destroy")]
    AppsDestroy {
        /// The app's name again, to confirm
        #[arg(long, value_name = "NAME")]
        confirm: Option<String>,
    },
    /// Point a git remote of the current repository at the app
    #[command(name = "git:remote")]
    GitRemote {
        #[arg(short = 'r', long, value_name = "NAME", default_value = git::DEFAULT_REMOTE)]
        remote: String,
    },
    /// Show the app's config vars
    Config,
    /// Print one config var
    #[command(name = "config:get")]
    ConfigGet {
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// Set config vars and restart the app with them
    #[command(name = "config:set")]
    ConfigSet {
        #[arg(value_name = "KEY=VALUE", required = true)]
        vars: Vec<String>,
    },
    /// Unset config vars and restart the app without them
    #[command(name = "config:unset")]
    ConfigUnset {
        #[arg(value_name = "KEY", required = true)]
        keys: Vec<String>,
    },
    /// List releases, newest first
    Releases,
    /// Show one release
    #[command(name = "releases:info")]
    ReleasesInfo {
        #[arg(value_name = "VERSION")]
        version: String,
    },
    /// Show the app's recent log lines; with -t, keep printing new ones
    Logs {
        /// Keep printing new lines until interrupted
        #[arg(short = 't', long)]
        tail: bool,
        /// How many recent lines to show (up to 10000)
        #[arg(short = 'n', long = "num", value_name = "N", default_value_t = 100)]
        num: usize,
        /// Only lines from this source
        #[arg(long, value_name = "SOURCE", value_parser = ["app", "router", "build", "platform"])]
        source: Option<String>,
        /// Only lines of this process type (`web`) or dyno (`web.1`)
        #[arg(long, value_name = "PROCESS")]
        process: Option<String>,
    },
    /// Run a one-off process with the app's current release and config
    ///
    /// Everything after `--` is the command: several words reach the process as they are,
    /// one word is a shell command line (`slipway run 'rake db:migrate && echo done'`). Its
    /// input and output are attached here, with a terminal when this is one, and slipway
    /// exits with its exit status.
    Run {
        /// Start it in the background and return at once; it is removed when it exits
        #[arg(short = 'd', long)]
        detach: bool,
        /// Give it no terminal, even when this is one
        #[arg(long)]
        no_tty: bool,
        #[arg(
            value_name = "CMD",
            required = true,
            trailing_var_arg = true,
            allow_hyphen_values = true
        )]
        command: Vec<String>,
    },
    /// List builds, newest first
    Builds,
    /// Print a build's output
    #[command(name = "builds:output")]
    BuildsOutput {
        #[arg(value_name = "ID", default_value = "latest")]
        id: String,
    },
    /// Empty the app's build cache, so the next push builds from scratch
    #[command(name = "builds:cache:purge")]
    BuildsCachePurge,
    /// List the buildpacks the app's pushes run, in order
    Buildpacks,
    /// Set the buildpacks the app's pushes run, in order: built-in names (python, nodejs,
    /// static, procfile) or git URLs with an optional #ref
    #[command(name = "buildpacks:set")]
    BuildpacksSet {
        #[arg(value_name = "URL", required = true)]
        urls: Vec<String>,
    },
    /// Clear the app's buildpacks: pushes use BUILDPACK_URL, .buildpacks, the Dockerfile or
    /// detection again
    #[command(name = "buildpacks:clear")]
    BuildpacksClear,
    /// Roll back to an earlier release (by default the one before the current release)
    #[command(name = "releases:rollback")]
    ReleasesRollback {
        #[arg(value_name = "VERSION")]
        version: Option<String>,
    },
    /// Send the app's next code release (a push or a promotion) out as a canary
    ///
    /// The new release starts beside the current one in its own web containers and gets
    /// PERCENT of the requests. If its share of 5xx answers (or its p99) goes over the limit,
    /// it is removed and the release fails; if it holds for the duration, it is promoted to
    /// every container. Config changes and rollbacks always go out at once.
    #[command(name = "releases:canary")]
    ReleasesCanary {
        /// Share of requests the canary gets (1-99)
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=99))]
        percent: u8,
        /// How long the canary must hold before it is promoted, like 90s, 10m or 1h
        #[arg(long, default_value = "10m")]
        duration: String,
        /// Roll back when more than this share of the canary's requests fail (5xx)
        #[arg(long, default_value = "1%")]
        max_error_rate: String,
        /// Roll back when the canary's 99th percentile latency goes over this, in ms
        #[arg(long, value_name = "MS")]
        max_p99: Option<u32>,
        /// Keep each client on one side with a cookie
        #[arg(long)]
        sticky: bool,
    },
    /// Show the canary policy and the canary running now, with what it served so far
    #[command(name = "releases:canary:status")]
    ReleasesCanaryStatus,
    /// Promote the running canary to every container now
    #[command(name = "releases:canary:promote")]
    ReleasesCanaryPromote,
    /// Remove the running canary and fail its release; the current release keeps serving
    #[command(name = "releases:canary:abort")]
    ReleasesCanaryAbort,
    /// Send releases out to every container at once again
    #[command(name = "releases:canary:off")]
    ReleasesCanaryOff,
    /// Show the app's rate limit per client IP
    Ratelimit,
    /// Limit requests per client IP at the router, like 100/s or 6000/m; more get 429
    #[command(name = "ratelimit:set")]
    RatelimitSet {
        /// Requests per second (`/s`) or minute (`/m`)
        #[arg(value_name = "RATE")]
        rate: String,
        /// Requests a client may send at once before the rate applies [default: the rate]
        #[arg(long)]
        burst: Option<u32>,
    },
    /// Remove the app's rate limit
    #[command(name = "ratelimit:clear")]
    RatelimitClear,
    /// Show the formation and the running processes
    Ps,
    /// Scale process types, like web=3 worker=1 (no release is cut)
    #[command(name = "ps:scale")]
    PsScale {
        #[arg(value_name = "TYPE=N", required = true)]
        changes: Vec<String>,
    },
    /// Change the memory of process types, like web=1G (no release is cut)
    #[command(name = "ps:resize")]
    PsResize {
        #[arg(value_name = "TYPE=SIZE", required = true)]
        changes: Vec<String>,
    },
    /// Restart processes one at a time: all of them, or one type
    #[command(name = "ps:restart")]
    PsRestart {
        #[arg(value_name = "TYPE")]
        process: Option<String>,
    },
    /// Stop every process of a type (scales it to 0)
    #[command(name = "ps:stop")]
    PsStop {
        #[arg(value_name = "TYPE")]
        process: String,
    },
    /// List the app's custom domains with their DNS and certificate status
    Domains,
    /// Attach a custom domain; shows the DNS record it needs
    #[command(name = "domains:add")]
    DomainsAdd {
        #[arg(value_name = "HOST")]
        hostname: String,
    },
    /// Detach a custom domain and drop its certificate
    #[command(name = "domains:remove")]
    DomainsRemove {
        #[arg(value_name = "HOST")]
        hostname: String,
    },
    /// Wait until a domain's DNS points here and its certificate (if any) is issued
    #[command(name = "domains:wait")]
    DomainsWait {
        #[arg(value_name = "HOST")]
        hostname: String,
        /// Give up after this many seconds
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        timeout: u64,
    },
    /// List the app's certificates: domain, issuer, expiry, status, last error
    Certs,
    /// Let Slipway order and renew certificates for the app's custom domains (the default)
    #[command(name = "certs:auto:enable")]
    CertsAutoEnable,
    /// Stop ordering and renewing certificates for the app's custom domains
    #[command(name = "certs:auto:disable")]
    CertsAutoDisable,
    /// Serve your own certificate for the app's domains it covers
    #[command(name = "certs:add")]
    CertsAdd {
        /// PEM certificate chain, leaf first
        #[arg(value_name = "CRT")]
        chain: std::path::PathBuf,
        /// PEM private key
        #[arg(value_name = "KEY")]
        key: std::path::PathBuf,
    },
    /// Show the app's requests, latency, CPU and memory per minute (per hour beyond a day)
    Metrics {
        /// How far back, like 30m, 6h or 7d (at most 30d)
        #[arg(long, value_name = "DURATION", default_value = "1h")]
        since: String,
    },
    /// List the app's log drains with their delivered, dropped and buffered lines
    Drains,
    /// Ship every line of the app's log to syslog+tls://HOST:PORT, syslog://HOST:PORT or https://URL
    #[command(name = "drains:add")]
    DrainsAdd {
        #[arg(value_name = "URL")]
        drain_url: String,
    },
    /// Stop shipping the app's log to a drain, named by its id or URL
    #[command(name = "drains:remove")]
    DrainsRemove {
        #[arg(value_name = "ID|URL")]
        drain: String,
    },
    /// List the app's webhooks with their latest delivery
    Webhooks,
    /// POST the app's release and alert events, signed, to a URL; shows the signing secret once
    #[command(name = "webhooks:add")]
    WebhooksAdd {
        /// https://…, or http:// to a loopback address
        #[arg(value_name = "URL")]
        endpoint: String,
        /// Comma-separated event kinds: release, alert [default: both]
        #[arg(long, value_name = "KINDS")]
        events: Option<String>,
    },
    /// Stop sending events to a webhook
    #[command(name = "webhooks:remove")]
    WebhooksRemove {
        #[arg(value_name = "ID")]
        id: String,
    },
    /// List the app's alert rules, their thresholds and the alerts firing
    Alerts,
    /// Set an alert rule's threshold
    ///
    /// Rules: 5xx-rate PERCENT, p99-latency MS, memory PERCENT (of the limit),
    /// crash-loop N/M (N restarts within M minutes), cert-expiry DAYS.
    #[command(name = "alerts:set")]
    AlertsSet {
        #[arg(value_name = "RULE")]
        rule: String,
        #[arg(value_name = "THRESHOLD")]
        threshold: String,
    },
    /// Turn an alert rule off (default rules included)
    #[command(name = "alerts:remove")]
    AlertsRemove {
        #[arg(value_name = "RULE")]
        rule: String,
    },
    /// Show whether the app is in maintenance mode
    Maintenance,
    /// Serve a 503 maintenance page instead of the app; its processes keep running
    #[command(name = "maintenance:on")]
    MaintenanceOn,
    /// Serve the app again
    #[command(name = "maintenance:off")]
    MaintenanceOff,
    /// List the app's add-ons
    Addons,
    /// Create a Postgres or Redis server for the app and set its URL config var
    ///
    /// The first Postgres add-on sets DATABASE_URL and the first Redis one REDIS_URL; later
    /// ones set <NAME>_URL. Setting it cuts a release, like config:set.
    #[command(name = "addons:create")]
    AddonsCreate {
        /// `postgres` or `redis`
        #[arg(value_name = "TYPE")]
        kind: String,
        /// The add-on's name [default: <TYPE>-<n>]
        #[arg(long = "as", value_name = "NAME")]
        name: Option<String>,
    },
    /// Show an add-on: state, version, size on disk, connections
    #[command(name = "addons:info")]
    AddonsInfo {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Destroy an add-on and its data, after a final backup of a Postgres one
    #[command(name = "addons:destroy")]
    AddonsDestroy {
        #[arg(value_name = "NAME")]
        name: String,
        /// The add-on's name again, to confirm
        #[arg(long, value_name = "NAME")]
        confirm: Option<String>,
    },
    /// List backups of the app's Postgres add-ons, or of one (a destroyed one's too)
    #[command(name = "pg:backups")]
    PgBackups {
        #[arg(value_name = "DATABASE")]
        database: Option<String>,
    },
    /// Back up a Postgres add-on now [default: the one behind DATABASE_URL]
    #[command(name = "pg:backups:capture")]
    PgBackupsCapture {
        #[arg(value_name = "DATABASE")]
        database: Option<String>,
    },
    /// Replace a Postgres add-on's data with a backup [default: its latest good one]
    #[command(name = "pg:backups:restore")]
    PgBackupsRestore {
        #[arg(value_name = "ID")]
        id: Option<String>,
        #[arg(value_name = "DATABASE")]
        database: Option<String>,
    },
    /// Open psql on a Postgres add-on [default: the one behind DATABASE_URL]
    #[command(name = "pg:psql")]
    PgPsql {
        #[arg(value_name = "DATABASE")]
        database: Option<String>,
        /// Run this SQL and exit, instead of an interactive session
        #[arg(short = 'c', long = "command", value_name = "SQL")]
        sql: Option<String>,
        /// Give it no terminal, even when this is one
        #[arg(long)]
        no_tty: bool,
    },
    /// List the pipelines you may see, with their staging and production apps
    Pipelines,
    /// Create a pipeline: staging and production apps that share one build
    #[command(name = "pipelines:create")]
    PipelinesCreate {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Show a pipeline's apps by stage with their current releases
    #[command(name = "pipelines:info")]
    PipelinesInfo {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Destroy a pipeline (its owner or an admin); its apps keep running
    #[command(name = "pipelines:destroy")]
    PipelinesDestroy {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Put an app you own in a pipeline at a stage [default app: -a, else the git remote's]
    #[command(name = "pipelines:add")]
    PipelinesAdd {
        #[arg(value_name = "APP")]
        app_name: Option<String>,
        #[arg(short = 'p', long, value_name = "NAME")]
        pipeline: String,
        /// staging or production
        #[arg(short = 's', long, value_name = "STAGE")]
        stage: String,
    },
    /// Take the app out of its pipeline
    #[command(name = "pipelines:remove")]
    PipelinesRemove,
    /// Release the staging app's current release, same image, to production apps of its
    /// pipeline [default: every one]
    #[command(name = "pipelines:promote")]
    PipelinesPromote {
        /// Production apps to release to, comma-separated
        #[arg(long, value_name = "APP", value_delimiter = ',')]
        to: Vec<String>,
    },
}

/// The client alone, for programs that want no server subcommands.
#[derive(Debug, Parser)]
#[command(name = "slipway", about = "Slipway client")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: ClientCommand,
}

/// What the client reads from its surroundings: the login file's location and the directory
/// whose git repository `-a` is inferred from. `run` takes it from the process; tests build
/// one around temporary directories.
#[derive(Debug, Clone)]
pub struct Env {
    pub home: PathBuf,
    pub xdg_config_home: Option<PathBuf>,
    pub cwd: PathBuf,
}

impl Env {
    pub fn from_process() -> anyhow::Result<Env> {
        let home = std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .ok_or_else(|| anyhow!("HOME is not set: cannot find the login file"))?;
        let xdg_config_home = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|dir| dir.is_absolute());
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        Ok(Env {
            home: home.into(),
            xdg_config_home,
            cwd,
        })
    }

    /// `$XDG_CONFIG_HOME/slipway/config.toml`, else `~/.config/slipway/config.toml`.
    pub fn login_file(&self) -> PathBuf {
        self.xdg_config_home
            .clone()
            .unwrap_or_else(|| self.home.join(".config"))
            .join("slipway")
            .join("config.toml")
    }

    pub fn netrc(&self) -> PathBuf {
        self.home.join(".netrc")
    }
}

/// Runs one client command in the process's environment, printing to standard output.
pub async fn run(mut global: GlobalOpts, command: ClientCommand) -> anyhow::Result<()> {
    let env = Env::from_process()?;
    let command = match command {
        ClientCommand::Login {
            email: Some(email),
            password_stdin: true,
            ..
        } => ClientCommand::Login {
            email: Some(email),
            password_stdin: true,
            password: Some(secret_from_stdin("password")?),
        },
        ClientCommand::Login { .. } if global.token.is_none() => {
            global.token = token_from_stdin()?;
            command
        }
        ClientCommand::AdminUsersCreate {
            email,
            role,
            password_stdin: true,
            ..
        } => ClientCommand::AdminUsersCreate {
            email,
            role,
            password_stdin: true,
            password: Some(secret_from_stdin("password")?),
        },
        command => command,
    };
    run_in(&env, global, command, &mut std::io::stdout()).await
}

/// Runs one client command in `env`, printing to `out`. Reads nothing from the process
/// environment: the same code path as `run`, for tests.
pub async fn run_in(
    env: &Env,
    global: GlobalOpts,
    command: ClientCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let login = LoginFile::load(&env.login_file())?;
    let mut session = Session {
        env,
        global,
        login,
        out,
    };
    commands::dispatch(&mut session, command).await
}

/// A token piped in (`cat token | slipway login`), so it stays out of shell history.
fn token_from_stdin() -> anyhow::Result<Option<Token>> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let mut text = String::new();
    stdin
        .read_to_string(&mut text)
        .context("cannot read the token from standard input")?;
    let token = text.trim();
    Ok((!token.is_empty()).then(|| Token::from(token.to_owned())))
}

/// A secret piped in on standard input: the whole input without its trailing newline.
fn secret_from_stdin(what: &str) -> anyhow::Result<Token> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read the {what} from standard input"))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(!secret.is_empty(), "no {what} on standard input");
    Ok(Token::from(secret.to_owned()))
}

/// One command's view of its options, the stored login and where to print.
pub(crate) struct Session<'a> {
    pub(crate) env: &'a Env,
    pub(crate) global: GlobalOpts,
    pub(crate) login: Option<LoginFile>,
    pub(crate) out: &'a mut (dyn Write + Send),
}

impl Session<'_> {
    /// `--url`, else the stored login's, else the default; without a trailing slash.
    pub(crate) fn server_url(&self) -> String {
        let url = self
            .global
            .url
            .as_deref()
            .or(self.login.as_ref().map(|login| login.url.as_str()))
            .unwrap_or(DEFAULT_URL);
        url.trim_end_matches('/').to_owned()
    }

    /// A client with a token: `--token`, else the stored one when it was stored for this
    /// server (a token is never sent to a server it was not issued for).
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        let url = self.server_url();
        let stored = self
            .login
            .as_ref()
            .filter(|login| login.url.trim_end_matches('/') == url)
            .map(|login| &login.token);
        let Some(token) = self.global.token.as_ref().or(stored) else {
            bail!(
                "not logged in to {url}: run `slipway login --url {url} --token TOKEN` or set SLIPWAY_TOKEN"
            );
        };
        Ok(Client::new(&url, Some(token.expose().to_owned()))?)
    }

    /// `-a`, else the app the `platform` remote of the current repository pushes to.
    pub(crate) async fn app(&self) -> anyhow::Result<String> {
        if let Some(app) = &self.global.app {
            return Ok(app.clone());
        }
        let remote = git::remote_url(&self.env.cwd, git::DEFAULT_REMOTE).await;
        match remote.as_deref().map(git::app_from_remote_url) {
            Some(Some(app)) => Ok(app.to_owned()),
            Some(None) => bail!(
                "git remote `{}` ({}) is not a slipway app URL: pass -a APP",
                git::DEFAULT_REMOTE,
                remote.unwrap_or_default()
            ),
            None => bail!(
                "no app given: pass -a APP, or run inside a repository with a `{}` git remote (`slipway git:remote -a APP` adds one)",
                git::DEFAULT_REMOTE
            ),
        }
    }

    pub(crate) fn print(&mut self, text: &str) -> anyhow::Result<()> {
        self.out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
            .context("cannot write the output")
    }

    pub(crate) fn print_json(&mut self, value: &impl Serialize) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(value).context("cannot encode JSON output")?;
        self.print(&format!("{text}\n"))
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("slipway").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn subcommands_are_named_with_colons() {
        let cli = parse(&["apps:create", "myapp"]).unwrap();
        assert!(matches!(cli.command, ClientCommand::AppsCreate { name } if name == "myapp"));
        let cli = parse(&["config:set", "A=1", "B=x=y"]).unwrap();
        assert!(
            matches!(cli.command, ClientCommand::ConfigSet { vars } if vars == ["A=1", "B=x=y"])
        );
        let cli = parse(&["builds:output"]).unwrap();
        assert!(matches!(cli.command, ClientCommand::BuildsOutput { id } if id == "latest"));
        let cli = parse(&["git:remote", "-r", "prod"]).unwrap();
        assert!(matches!(cli.command, ClientCommand::GitRemote { remote } if remote == "prod"));
        let cli = parse(&["git:remote"]).unwrap();
        assert!(matches!(cli.command, ClientCommand::GitRemote { remote } if remote == "platform"));
        assert!(parse(&["apps-create", "myapp"]).is_err());
    }

    #[test]
    fn global_options_go_before_or_after_the_subcommand() {
        let cli = parse(&["config", "-a", "myapp", "--json"]).unwrap();
        assert_eq!(cli.global.app.as_deref(), Some("myapp"));
        assert!(cli.global.json);
        let cli = parse(&["--app", "other", "apps:destroy", "--confirm", "other"]).unwrap();
        assert_eq!(cli.global.app.as_deref(), Some("other"));
        assert!(
            matches!(cli.command, ClientCommand::AppsDestroy { confirm } if confirm.as_deref() == Some("other"))
        );
        let cli = parse(&["login", "--url", "http://x.test", "--token", "t"]).unwrap();
        assert_eq!(cli.global.url.as_deref(), Some("http://x.test"));
        assert_eq!(
            cli.global.token.map(|t| t.expose().to_owned()).as_deref(),
            Some("t")
        );
    }

    #[test]
    fn set_and_unset_need_at_least_one_argument() {
        for command in ["config:set", "config:unset", "config:get", "apps:create"] {
            let err = parse(&[command]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument, "{command}");
        }
    }

    #[test]
    fn addon_commands_take_heroku_style_arguments() {
        let cli = parse(&["addons:create", "postgres", "--as", "main"]).unwrap();
        assert!(
            matches!(cli.command, ClientCommand::AddonsCreate { kind, name }
            if kind == "postgres" && name.as_deref() == Some("main"))
        );
        let cli = parse(&["addons:destroy", "main", "--confirm", "main"]).unwrap();
        assert!(
            matches!(cli.command, ClientCommand::AddonsDestroy { name, confirm }
            if name == "main" && confirm.as_deref() == Some("main"))
        );
        let cli = parse(&["pg:backups:restore", "b001", "main"]).unwrap();
        assert!(
            matches!(cli.command, ClientCommand::PgBackupsRestore { id, database }
            if id.as_deref() == Some("b001") && database.as_deref() == Some("main"))
        );
        let cli = parse(&["pg:backups:restore"]).unwrap();
        assert!(matches!(
            cli.command,
            ClientCommand::PgBackupsRestore {
                id: None,
                database: None
            }
        ));
        let cli = parse(&["pg:psql", "-c", "select 1"]).unwrap();
        assert!(
            matches!(cli.command, ClientCommand::PgPsql { database: None, sql, no_tty: false }
            if sql.as_deref() == Some("select 1"))
        );
        for command in ["addons:create", "addons:info", "addons:destroy"] {
            let err = parse(&[command]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument, "{command}");
        }
    }

    #[test]
    fn logs_takes_heroku_style_flags() {
        let cli = parse(&["logs"]).unwrap();
        assert!(matches!(
            cli.command,
            ClientCommand::Logs {
                tail: false,
                num: 100,
                source: None,
                process: None
            }
        ));
        let args = "logs -t -n 5 --source router --process web";
        let args: Vec<&str> = args.split(' ').collect();
        assert!(matches!(
            parse(&args).unwrap().command,
            ClientCommand::Logs { tail: true, num: 5, source: Some(s), process: Some(p) }
                if s == "router" && p == "web"
        ));
        let cli = parse(&["logs", "--tail", "--num", "7"]).unwrap();
        assert!(matches!(
            cli.command,
            ClientCommand::Logs {
                tail: true,
                num: 7,
                ..
            }
        ));
        let err = parse(&["logs", "--source", "heroku"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
    }

    /// How the binary combines its own subcommands with the client's.
    #[test]
    fn flattens_into_a_binary_with_more_subcommands() {
        #[derive(Debug, Parser)]
        struct Binary {
            #[command(flatten)]
            global: GlobalOpts,
            #[command(subcommand)]
            command: BinaryCommand,
        }
        #[derive(Debug, Subcommand)]
        enum BinaryCommand {
            Server,
            #[command(name = "stack:build")]
            StackBuild,
            #[command(flatten)]
            Client(ClientCommand),
        }
        use clap::CommandFactory;
        Binary::command().debug_assert();

        let parsed = Binary::try_parse_from(["slipway", "releases", "-a", "myapp"]).unwrap();
        assert!(matches!(
            parsed.command,
            BinaryCommand::Client(ClientCommand::Releases)
        ));
        assert_eq!(parsed.global.app.as_deref(), Some("myapp"));
        let parsed = Binary::try_parse_from(["slipway", "stack:build"]).unwrap();
        assert!(matches!(parsed.command, BinaryCommand::StackBuild));
    }

    #[test]
    fn the_login_file_honours_xdg_config_home() {
        let mut env = Env {
            home: "/home/u".into(),
            xdg_config_home: None,
            cwd: "/".into(),
        };
        assert_eq!(
            env.login_file(),
            PathBuf::from("/home/u/.config/slipway/config.toml")
        );
        env.xdg_config_home = Some("/xdg".into());
        assert_eq!(env.login_file(), PathBuf::from("/xdg/slipway/config.toml"));
        assert_eq!(env.netrc(), PathBuf::from("/home/u/.netrc"));
    }
}
