//! Git over SSH, the second push transport: `ssh://git@host:2222/<app>.git`.
//!
//! A small SSH server (russh) that knows one thing: run `git receive-pack` or `git upload-pack`
//! on an app's repository for a user who registered the key they connect with and may use the
//! app. Authentication is by public key only and the user name is ignored, as HTTP Basic auth
//! ignores it: the key says who is pushing. The push then goes through the same pre-receive
//! hook as a smart-HTTP one, with the same environment, so the build streams back as `remote:`
//! lines and a failed build refuses the ref. Shells, terminals, forwarding and every other
//! command are refused with one line saying what works.
//!
//! Why russh rather than an OpenSSH `ForceCommand`: the platform stays one binary that needs no
//! system sshd, no `authorized_keys` file kept in step with the store and no system user, and
//! a key added with `slipway keys:add` works at once because the key is looked up in the store
//! on every connection.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{HashAlg, LineEnding};
use russh::keys::{Algorithm, EcdsaCurve, PrivateKey, PublicKey};
use russh::server::{
    Auth, ChannelOpenHandle, Config, Handler, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelOpenFailure, Disconnect, MethodKind, MethodSet, Pty};
use slipway_store::{TokenScope, User};
use slipway_types::AppName;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::Platform;
use crate::auth::Caller;

/// The host key's file name in the data directory, as OpenSSH names its own.
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";

/// How long a connection may take from TCP accept to a successful authentication.
const LOGIN_GRACE: Duration = Duration::from_secs(30);
/// Authentication failures before the connection is dropped (OpenSSH's `MaxAuthTries`).
const MAX_AUTH_ATTEMPTS: usize = 6;
/// Connections at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 256;
/// Session channels one connection may open over its life; git opens one.
const MAX_CHANNELS: usize = 4;
/// A build streams nothing back for minutes at times: keepalives tell a dead client from a
/// quiet push.
const KEEPALIVE: Duration = Duration::from_secs(30);
const KEEPALIVE_MAX: usize = 4;
/// How long a client told to disconnect may take to go.
const DISCONNECT_GRACE: Duration = Duration::from_secs(10);
/// Smallest RSA key accepted, as OpenSSH's `RequiredRSASize`.
const MIN_RSA_BITS: u32 = 2048;
/// Longest key name kept.
const MAX_KEY_NAME: usize = 100;

/// What works here, for every refusal of a command.
const USAGE: &str =
    "this SSH server only serves git: push with `git push ssh://git@<host>:<port>/<app>.git main`";

/// Reads the server's host key, creating an Ed25519 one (mode 0600) on first start, so
/// clients that pinned it keep trusting the server across restarts.
pub fn load_or_create_host_key(path: &Path) -> anyhow::Result<PrivateKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => PrivateKey::from_openssh(&text).with_context(|| {
            format!(
                "SSH host key file `{}` is not an OpenSSH private key",
                path.display()
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = PrivateKey::from(Ed25519Keypair::from_seed(&rand::random()));
            let text = key
                .to_openssh(LineEnding::LF)
                .context("encoding the new SSH host key")?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating SSH host key file `{}`", path.display()))?;
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing SSH host key file `{}`", path.display()))?;
            Ok(key)
        }
        Err(error) => Err(anyhow::anyhow!(
            "reading SSH host key file `{}`: {error}",
            path.display()
        )),
    }
}

/// A public key a user may register, in the forms the store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizedKey {
    /// The OpenSSH key type, like `ssh-ed25519`.
    pub algorithm: String,
    /// `<algorithm> <base64>`, without the comment.
    pub public_key: String,
    pub fingerprint: String,
    /// The comment of the `.pub` line, often `user@host`; may be empty.
    pub comment: String,
}

/// Parses one line of an OpenSSH `.pub` file and checks it is a key this server accepts.
/// The error is one line meant for the user.
pub fn parse_public_key(text: &str) -> Result<AuthorizedKey, String> {
    if text.trim_start().starts_with("-----BEGIN") {
        return Err(
            "this is a private key: give the public one (the `.pub` file beside it)".to_owned(),
        );
    }
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let (Some(line), None) = (lines.next(), lines.next()) else {
        return Err(
            "give exactly one public key, one line of a `.pub` file like `ssh-ed25519 AAAA… you@host`"
                .to_owned(),
        );
    };
    let key = PublicKey::from_openssh(line).map_err(|_| {
        let shown: String = line.chars().take(40).collect();
        format!("`{shown}…` is not an OpenSSH public key: give one line of a `.pub` file")
    })?;
    check_algorithm(&key)?;
    let comment = key.comment().as_str_lossy().trim().to_owned();
    let bare = PublicKey::new(key.key_data().clone(), "");
    let public_key = bare
        .to_openssh()
        .map_err(|_| "the public key cannot be encoded again".to_owned())?;
    Ok(AuthorizedKey {
        algorithm: key.algorithm().as_str().to_owned(),
        public_key,
        fingerprint: fingerprint(&key),
        comment,
    })
}

fn check_algorithm(key: &PublicKey) -> Result<(), String> {
    match key.algorithm() {
        Algorithm::Ed25519 | Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256 => Ok(()),
        Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256 | EcdsaCurve::NistP384 | EcdsaCurve::NistP521,
        } => Ok(()),
        Algorithm::Rsa { .. } => {
            let bits = key.key_data().rsa().map_or(0, |rsa| rsa.key_size());
            if bits >= MIN_RSA_BITS {
                Ok(())
            } else {
                Err(format!(
                    "this RSA key has {bits} bits, fewer than the {MIN_RSA_BITS} required: use an ed25519 key (`ssh-keygen -t ed25519`)"
                ))
            }
        }
        other => Err(format!(
            "`{}` keys are not supported: use an ed25519 key (`ssh-keygen -t ed25519`)",
            other.as_str()
        )),
    }
}

/// `SHA256:<base64>`, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The name a key is kept under: the one given, else the key's comment, else its type.
pub fn key_name(given: Option<&str>, key: &AuthorizedKey) -> Result<String, String> {
    let name = given.map(str::trim).unwrap_or(&key.comment);
    let name = if name.is_empty() {
        format!("{} key", key.algorithm)
    } else {
        name.to_owned()
    };
    if name.chars().count() > MAX_KEY_NAME || name.chars().any(char::is_control) {
        return Err(format!(
            "key name `{}` must be at most {MAX_KEY_NAME} printable characters",
            name.escape_default()
        ));
    }
    Ok(name)
}

/// The two git services served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `git push`.
    ReceivePack,
    /// `git fetch` and `git clone`.
    UploadPack,
}

impl Service {
    fn subcommand(self) -> &'static str {
        match self {
            Service::ReceivePack => "receive-pack",
            Service::UploadPack => "upload-pack",
        }
    }
}

/// An exec request this server runs: a git service on one app's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitCommand {
    pub service: Service,
    pub app: AppName,
}

/// Reads the command git's SSH transport sends, `git-receive-pack '/<app>.git'` (or
/// `git-upload-pack`, `git receive-pack`, with or without the leading `/`). The path must name
/// an app's repository and nothing else, so no path can leave the repositories folder. The
/// error is one line for the user.
pub fn parse_command(command: &[u8]) -> Result<GitCommand, String> {
    let command = std::str::from_utf8(command).map_err(|_| USAGE.to_owned())?;
    let (program, rest) = command
        .trim()
        .split_once(' ')
        .ok_or_else(|| USAGE.to_owned())?;
    let (service, argument) = match program {
        "git-receive-pack" => (Service::ReceivePack, rest),
        "git-upload-pack" => (Service::UploadPack, rest),
        "git" => match rest.trim_start().split_once(' ') {
            Some(("receive-pack", argument)) => (Service::ReceivePack, argument),
            Some(("upload-pack", argument)) => (Service::UploadPack, argument),
            _ => return Err(USAGE.to_owned()),
        },
        _ => return Err(USAGE.to_owned()),
    };
    let path = shell_word(argument.trim()).ok_or_else(|| USAGE.to_owned())?;
    let not_a_repo = || {
        format!(
            "`{}` is not an app repository: use `ssh://git@<host>:<port>/<app>.git`",
            path.escape_default()
        )
    };
    let name = path
        .strip_prefix('/')
        .unwrap_or(&path)
        .strip_suffix(".git")
        .ok_or_else(not_a_repo)?;
    let app = name.parse().map_err(|_| not_a_repo())?;
    Ok(GitCommand { service, app })
}

/// The one shell word `text` must be: single-quoted the way git quotes it (`'it'\''s'`,
/// `'a'\!'b'`), or bare without any character a shell treats specially.
fn shell_word(text: &str) -> Option<String> {
    if !text.starts_with('\'') {
        let plain = |c: char| c.is_ascii_alphanumeric() || "/._-".contains(c);
        return (!text.is_empty() && text.chars().all(plain)).then(|| text.to_owned());
    }
    let mut word = String::new();
    let mut chars = text.chars();
    loop {
        // Inside quotes: everything up to the closing quote is literal.
        if chars.next() != Some('\'') {
            return None;
        }
        loop {
            match chars.next()? {
                '\'' => break,
                c => word.push(c),
            }
        }
        // Between quoted parts only a backslash-escaped character may appear.
        match chars.clone().next() {
            None => return Some(word),
            Some('\\') => {
                chars.next();
                word.push(chars.next()?);
            }
            Some(_) => return None,
        }
        if chars.clone().next().is_none() {
            return Some(word);
        }
    }
}

/// What every connection shares.
struct Shared {
    platform: Arc<Platform>,
    hook_socket: PathBuf,
    shutdown: CancellationToken,
}

/// Serves git over SSH on `listener` until `shutdown` fires, then waits for the git commands
/// still running (a push finishes its build and deploy) while idle connections are closed.
pub async fn serve(
    platform: Arc<Platform>,
    listener: TcpListener,
    host_key: PrivateKey,
    hook_socket: PathBuf,
    shutdown: CancellationToken,
) {
    tracing::info!(
        listen = ?listener.local_addr().ok(),
        host_key = %fingerprint(host_key.public_key()),
        "serving git over SSH"
    );
    let config = Arc::new(Config {
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        keys: vec![host_key],
        max_auth_attempts: MAX_AUTH_ATTEMPTS,
        // OpenSSH clients open with a `none` attempt to learn the methods: answering it at
        // once reveals nothing and spares every push a second.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keepalive_interval: Some(KEEPALIVE),
        keepalive_max: KEEPALIVE_MAX,
        nodelay: true,
        ..Config::default()
    });
    let shared = Arc::new(Shared {
        platform,
        hook_socket,
        shutdown: shutdown.clone(),
    });
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) if connections.len() < MAX_CONNECTIONS => {
                    connections.spawn(connection(shared.clone(), config.clone(), socket, peer));
                }
                Ok((_, peer)) => {
                    tracing::warn!(%peer, limit = MAX_CONNECTIONS, "too many SSH connections: closed a new one");
                }
                Err(error) => {
                    // Out of file descriptors, most likely: wait for some to be released.
                    tracing::warn!(%error, "could not accept an SSH connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// One TCP connection, from the SSH handshake to its end. Unauthenticated connections are
/// dropped after [`LOGIN_GRACE`]; on shutdown, connections running no command are closed.
async fn connection(shared: Arc<Shared>, config: Arc<Config>, socket: TcpStream, peer: SocketAddr) {
    let (authenticated, on_auth) = oneshot::channel();
    let busy = Arc::new(AtomicUsize::new(0));
    let handler = Connection {
        shared: shared.clone(),
        peer,
        user: None,
        authenticated: Some(authenticated),
        channels: HashMap::new(),
        opened: 0,
        git_protocol: HashMap::new(),
        busy: busy.clone(),
    };
    let deadline = Instant::now() + LOGIN_GRACE;
    let shutdown = &shared.shutdown;
    let started = tokio::select! {
        started = timeout_at(deadline, russh::server::run_stream(config, socket, handler)) => started,
        () = shutdown.cancelled() => return,
    };
    let session = match started {
        Ok(Ok(session)) => session,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "SSH handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "no SSH handshake in time");
            return;
        }
    };
    let handle = session.handle();
    tokio::pin!(session);
    let signed_in = tokio::select! {
        result = &mut session => return log_end(peer, result),
        outcome = timeout_at(deadline, on_auth) => matches!(outcome, Ok(Ok(()))),
        () = shutdown.cancelled() => false,
    };
    if signed_in {
        tokio::select! {
            result = &mut session => return log_end(peer, result),
            () = shutdown.cancelled() => {}
        }
        // A running push finishes its build and deploy; the client leaves when it is done.
        if busy.load(Ordering::SeqCst) > 0 {
            return log_end(peer, session.await);
        }
    }
    let reason = if shutdown.is_cancelled() {
        "the server is restarting: try again"
    } else {
        "authentication timed out"
    };
    // An error means the session has ended already.
    let _ = handle
        .disconnect(Disconnect::ByApplication, reason.to_owned(), String::new())
        .await;
    match tokio::time::timeout(DISCONNECT_GRACE, session).await {
        Ok(result) => log_end(peer, result),
        Err(_) => tracing::debug!(%peer, "SSH client did not leave when told to"),
    }
}

fn log_end(peer: SocketAddr, result: Result<(), russh::Error>) {
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "SSH connection ended with an error");
    }
}

/// The SSH side of one connection: who authenticated and the session channels they opened.
struct Connection {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// Who authenticated.
    user: Option<User>,
    authenticated: Option<oneshot::Sender<()>>,
    /// Channels opened and waiting for their request.
    channels: HashMap<ChannelId, Channel<Msg>>,
    opened: usize,
    /// `GIT_PROTOCOL` sent by the client per channel (`version=2`), passed on to git.
    git_protocol: HashMap<ChannelId, String>,
    /// Git commands running on this connection.
    busy: Arc<AtomicUsize>,
}

impl Connection {
    /// The registered key with this fingerprint and its user, if both exist.
    async fn lookup(&self, key: &PublicKey) -> Option<(User, Uuid)> {
        let fingerprint = fingerprint(key);
        let store = &self.shared.platform.store;
        let found = match store.ssh_key_by_fingerprint(&fingerprint).await {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(%error, "looking up an SSH key failed");
                return None;
            }
        };
        let Some(record) = found else {
            tracing::info!(peer = %self.peer, %fingerprint, "refused an SSH key no user registered");
            return None;
        };
        match store.user(record.user_id).await {
            Ok(Some(user)) => Some((user, record.id)),
            Ok(None) => None,
            Err(error) => {
                tracing::error!(%error, "looking up the user of an SSH key failed");
                None
            }
        }
    }

    /// Answers a channel request with one line on stderr and exit status 1, then closes the
    /// channel: git shows the line to the user as is.
    fn refuse(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
        message: &str,
    ) -> Result<(), russh::Error> {
        self.channels.remove(&channel);
        session.channel_success(channel)?;
        session.extended_data(channel, 1, format!("slipway: {message}\n"))?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)
    }

    /// Checks the command and the user's access, then starts git; a refusal says why.
    async fn start(&mut self, channel: ChannelId, command: &[u8]) -> Result<Running, String> {
        let parsed = parse_command(command)?;
        let Some(user) = self.user.clone() else {
            return Err("not authenticated".to_owned());
        };
        if self.shared.shutdown.is_cancelled() {
            return Err("the server is restarting: push again in a moment".to_owned());
        }
        let platform = &self.shared.platform;
        let caller = Caller {
            user,
            // A registered key acts for its user as a `write` token would: it may push.
            scope: TokenScope::Write,
            source_ip: Some(self.peer.ip()),
            // Authenticated by key, not by a token.
            token_id: None,
        };
        let name = parsed.app.as_str();
        let app = platform.app_for(&caller, name).await.map_err(|_| {
            format!("app `{name}` not found: create it with `slipway apps:create {name}`")
        })?;
        let repo = platform.repos.ensure(&app.name).await.map_err(|error| {
            tracing::error!(app = %app.name, %error, "preparing the repository failed");
            "internal server error".to_owned()
        })?;
        let mut git = Command::new("git");
        // The server's own GIT_* variables (it may run inside a git hook) must not point git
        // at another repository or configuration.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("GIT_") {
                git.env_remove(name);
            }
        }
        git.arg(parsed.service.subcommand())
            .arg(&repo)
            .env("REMOTE_USER", &caller.user.email)
            .env("REMOTE_ADDR", self.peer.ip().to_string())
            .env("SLIPWAY_HOOK_SOCKET", &self.shared.hook_socket)
            .env("SLIPWAY_APP", app.name.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(protocol) = self.git_protocol.remove(&channel) {
            git.env("GIT_PROTOCOL", protocol);
        }
        let child = git.spawn().map_err(|error| {
            tracing::error!(%error, "could not run git");
            "internal server error".to_owned()
        })?;
        tracing::info!(
            app = %app.name,
            user = %caller.user.email,
            service = parsed.service.subcommand(),
            peer = %self.peer,
            "git over SSH"
        );
        Ok(Running {
            child,
            app: app.name,
            busy: BusyGuard::enter(self.busy.clone()),
        })
    }
}

/// A git command started for a channel.
struct Running {
    child: tokio::process::Child,
    app: AppName,
    busy: BusyGuard,
}

/// Counts a running command until dropped.
struct BusyGuard(Arc<AtomicUsize>);

impl BusyGuard {
    fn enter(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Copies the channel's data into git and git's output back (stderr as SSH stderr), then
/// sends git's exit status and closes the channel.
async fn relay(channel: Channel<Msg>, running: Running) {
    let Running {
        mut child,
        app,
        busy: _busy,
    } = running;
    let (mut from_client, to_client) = channel.split();
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        tracing::error!(app = %app, "git started without its pipes");
        return;
    };
    // Feeding git its input stops on its own when the client sends EOF; a push git refuses
    // early ends before that, so this task is dropped once git has exited.
    let feeding = tokio::spawn(async move {
        let mut input = from_client.make_reader();
        if let Err(error) = tokio::io::copy(&mut input, &mut stdin).await {
            tracing::debug!(%error, "git stopped reading the SSH client's input");
        }
    });
    // Each copy owns its pipe and closes it when the client is gone, so git stops on a broken
    // pipe instead of blocking on a full one.
    let (sent_out, sent_err) = tokio::join!(
        copy_out(stdout, to_client.make_writer()),
        copy_out(stderr, to_client.make_writer_ext(Some(1)))
    );
    if let Err(error) = sent_out.and(sent_err) {
        tracing::debug!(app = %app, %error, "the SSH client left before git finished");
    }
    let code = match child.wait().await {
        Ok(status) => status
            .code()
            .or_else(|| status.signal().map(|signal| 128 + signal))
            .unwrap_or(1),
        Err(error) => {
            tracing::error!(app = %app, %error, "could not wait for git");
            1
        }
    };
    feeding.abort();
    let closed = async {
        to_client
            .exit_status(u32::try_from(code).unwrap_or(1))
            .await?;
        to_client.eof().await?;
        to_client.close().await
    };
    if let Err(error) = closed.await {
        tracing::debug!(app = %app, %error, "the SSH client left before git's exit status");
    }
}

async fn copy_out(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
) -> std::io::Result<u64> {
    tokio::io::copy(&mut from, &mut to).await
}

impl Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(match self.lookup(offer.public_key).await {
            Some(_) => Auth::Accept,
            None => reject(),
        })
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let Some((user, key_id)) = self.lookup(key.public_key).await else {
            return Ok(reject());
        };
        if let Err(error) = self.shared.platform.store.touch_ssh_key(key_id).await {
            tracing::warn!(%error, "recording an SSH key's use failed");
        }
        self.user = Some(user);
        Ok(Auth::Accept)
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        if let Some(authenticated) = self.authenticated.take() {
            // The connection task stops listening only when it has given up on the session.
            let _ = authenticated.send(());
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.user.is_none() || self.opened >= MAX_CHANNELS {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        self.opened += 1;
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        self.git_protocol.remove(&channel);
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let safe = |c: char| c.is_ascii_alphanumeric() || "=:.,-".contains(c);
        if name == "GIT_PROTOCOL" && value.len() <= 64 && value.chars().all(safe) {
            self.git_protocol.insert(channel, value.to_owned());
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if !self.channels.contains_key(&channel) {
            // A second request on a channel that already runs something.
            return session.channel_failure(channel);
        }
        match self.start(channel, data).await {
            Ok(running) => {
                let Some(open) = self.channels.remove(&channel) else {
                    return session.channel_failure(channel);
                };
                session.channel_success(channel)?;
                tokio::spawn(relay(open, running));
                Ok(())
            }
            Err(message) => {
                tracing::info!(peer = %self.peer, reason = %message, "refused an SSH command");
                self.refuse(channel, session, &message)
            }
        }
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, session, USAGE)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse(channel, session, USAGE)
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }
}

fn reject() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
        partial_success: false,
    }
}

#[cfg(test)]
mod tests {
    use russh::keys::ssh_key::Mpint;
    use russh::keys::ssh_key::public::{DsaPublicKey, KeyData, RsaPublicKey};

    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti foo@bar.com";

    fn app(name: &str) -> AppName {
        name.parse().expect("app name")
    }

    #[test]
    fn parses_the_commands_git_sends() {
        for (command, service, name) in [
            (
                "git-receive-pack '/my-app.git'",
                Service::ReceivePack,
                "my-app",
            ),
            (
                "git-receive-pack 'my-app.git'",
                Service::ReceivePack,
                "my-app",
            ),
            (
                "git-upload-pack '/my-app.git'",
                Service::UploadPack,
                "my-app",
            ),
            (
                "git receive-pack '/my-app.git'",
                Service::ReceivePack,
                "my-app",
            ),
            ("git upload-pack 'web2.git'", Service::UploadPack, "web2"),
            (
                "git-receive-pack /my-app.git",
                Service::ReceivePack,
                "my-app",
            ),
            (
                "  git-receive-pack '/my-app.git'\n",
                Service::ReceivePack,
                "my-app",
            ),
        ] {
            let parsed = parse_command(command.as_bytes())
                .unwrap_or_else(|message| panic!("{command:?}: {message}"));
            assert_eq!(parsed.service, service, "{command}");
            assert_eq!(parsed.app, app(name), "{command}");
        }
        // A quote inside the quoted path is unquoted, then refused: no app name has one.
        let message = parse_command(b"git-receive-pack 'my-'\\''app.git'").unwrap_err();
        assert!(
            message.contains("`my-\\'app.git` is not an app repository"),
            "{message}"
        );
    }

    #[test]
    fn refuses_other_commands_with_the_usage() {
        for command in [
            "",
            "ls -la",
            "sh -c 'git-receive-pack /a.git'",
            "git-receive-pack",
            "git-upload-archive '/my-app.git'",
            "git status",
            "scp -t /tmp",
            "git-receive-pack '/my-app.git'; rm -rf /",
            "git-receive-pack '/my-app.git' extra",
            "git-receive-pack \"/my-app.git\"",
            "git-receive-pack $(id).git",
            "git-receive-pack 'unterminated.git",
        ] {
            let message = parse_command(command.as_bytes()).unwrap_err();
            assert!(
                message == USAGE || message.contains("is not an app repository"),
                "{command:?}: {message}"
            );
        }
        assert_eq!(parse_command(&[0xff, 0xfe]).unwrap_err(), USAGE);
    }

    #[test]
    fn refuses_paths_outside_the_app_repositories() {
        for path in [
            "'../../etc/passwd.git'",
            "'/../my-app.git'",
            "'/my-app.git/../other.git'",
            "'/srv/repos/my-app.git'",
            "'~/my-app.git'",
            "'/my-app'",
            "'/My-App.git'",
            "'/.git'",
            "'//my-app.git'",
            "'/my-app.git/'",
        ] {
            let command = format!("git-receive-pack {path}");
            let message = parse_command(command.as_bytes()).unwrap_err();
            assert!(
                message.contains("is not an app repository"),
                "{command}: {message}"
            );
        }
    }

    #[test]
    fn unquotes_shell_words_the_way_git_quotes_them() {
        assert_eq!(shell_word("'a b'").as_deref(), Some("a b"));
        assert_eq!(shell_word("'it'\\''s'").as_deref(), Some("it's"));
        assert_eq!(shell_word("'a'\\!'b'").as_deref(), Some("a!b"));
        assert_eq!(
            shell_word("plain/path.git").as_deref(),
            Some("plain/path.git")
        );
        for bad in ["'a'b'", "'a", "a b", "'a' 'b'", "$HOME", "a;b", "'a'\\", ""] {
            assert_eq!(shell_word(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn parses_public_keys_and_their_fingerprints() {
        let key = parse_public_key(&format!("\n  {ED25519}  \n")).expect("valid key");
        assert_eq!(key.algorithm, "ssh-ed25519");
        assert_eq!(key.comment, "foo@bar.com");
        assert_eq!(
            key.public_key,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILM+rvN+ot98qgEN796jTiQfZfG1KaT0PtFDJ/XFSqti"
        );
        // As `ssh-keygen -lf` prints it.
        assert_eq!(
            key.fingerprint,
            "SHA256:UCUiLr7Pjs9wFFJMDByLgc3NrtdU344OgUM45wZPcIQ"
        );
        let again = parse_public_key(&key.public_key).expect("the key without its comment");
        assert_eq!(again.fingerprint, key.fingerprint);
        assert_eq!(again.comment, "");
        assert_eq!(key_name(None, &again).unwrap(), "ssh-ed25519 key");
        assert_eq!(key_name(None, &key).unwrap(), "foo@bar.com");
        assert_eq!(key_name(Some(" laptop "), &key).unwrap(), "laptop");
        assert!(key_name(Some("a\u{7}b"), &key).is_err());
        assert!(key_name(Some(&"x".repeat(101)), &key).is_err());
    }

    #[test]
    fn refuses_garbage_private_and_several_keys() {
        for (text, expected) in [
            ("", "exactly one public key"),
            ("hello world", "is not an OpenSSH public key"),
            (
                "ssh-ed25519 AAAAnotbase64!!",
                "is not an OpenSSH public key",
            ),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
                "this is a private key",
            ),
            (&format!("{ED25519}\n{ED25519}"), "exactly one public key"),
            // The type named in text must be the type encoded in the key.
            (
                &ED25519.replace("ssh-ed25519", "ssh-rsa"),
                "is not an OpenSSH public key",
            ),
        ] {
            let error = parse_public_key(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    /// A `.pub` line for key data made up in the test.
    fn pub_line(key_data: KeyData) -> String {
        PublicKey::new(key_data, "made@up")
            .to_openssh()
            .expect("encodes")
    }

    #[test]
    fn refuses_dsa_and_short_rsa_keys() {
        let number = |byte: u8, len: usize| Mpint::from_positive_bytes(&vec![byte; len]);
        let dsa = DsaPublicKey::new(
            number(0xc1, 128),
            number(0x91, 20),
            number(2, 128),
            number(3, 128),
        )
        .expect("dsa key data");
        let error = parse_public_key(&pub_line(KeyData::Dsa(dsa))).unwrap_err();
        assert!(
            error.contains("`ssh-dss` keys are not supported"),
            "{error}"
        );

        let exponent = Mpint::from_positive_bytes(&[1, 0, 1]);
        let short = RsaPublicKey::new(exponent.clone(), number(0xc5, 128)).expect("rsa key data");
        let error = parse_public_key(&pub_line(KeyData::Rsa(short))).unwrap_err();
        assert!(error.contains("has 1024 bits"), "{error}");
        let long = RsaPublicKey::new(exponent, number(0xc5, 256)).expect("rsa key data");
        let key = parse_public_key(&pub_line(KeyData::Rsa(long))).expect("a 2048-bit key");
        assert_eq!(key.algorithm, "ssh-rsa");
    }

    #[test]
    fn the_host_key_is_created_once_and_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(HOST_KEY_FILE);
        let created = load_or_create_host_key(&path).expect("a new host key");
        let mode = std::fs::metadata(&path).expect("key file").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let loaded = load_or_create_host_key(&path).expect("the same host key");
        assert_eq!(created.public_key(), loaded.public_key());
        assert_eq!(loaded.algorithm(), Algorithm::Ed25519);

        std::fs::write(&path, "not a key").expect("overwrite");
        let error = load_or_create_host_key(&path).unwrap_err().to_string();
        assert!(error.contains(HOST_KEY_FILE), "{error}");
    }
}
