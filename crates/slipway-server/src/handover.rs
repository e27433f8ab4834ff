//! Zero-downtime restarts: a new `slipway server` started beside a running one on the same
//! data dir takes its listening sockets over instead of binding them.
//!
//! Every running server listens on `<data-dir>/handover.sock` (mode 0600). A starting server
//! connects there first; when a server answers:
//!
//! 1. the old server pauses its background loops (reconciler, add-ons, DNS checks, certificate
//!    orders), so two servers never converge the same containers, and sends a manifest (one
//!    JSON line naming each socket and its address) with the sockets themselves as
//!    `SCM_RIGHTS`;
//! 2. the new server uses each socket whose address matches its own configuration (binding
//!    the others), adopts the running containers and fills its router, then sends `ready`;
//! 3. the old server answers `stopping`, stops accepting, drains the requests in flight and
//!    exits 0, leaving the apps running; the new server moves its git hook socket into place,
//!    starts its loops and accepting, and listens on `handover.sock` for its own successor.
//!
//! Both processes hold the same listening sockets throughout, so a connection that arrives
//! while neither is accepting waits in the kernel's backlog instead of being refused. If the
//! new server fails or gives up before `ready`, the old one resumes its loops and keeps
//! serving.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketType,
};
use serde::{Deserialize, Serialize};
use slipway_domains::dns::DnsSockets;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{Listeners, ServerConfig};

/// The socket a running server listens on for its successor, in the data dir.
const SOCKET_FILE: &str = "handover.sock";

/// Bumped when the messages change, so a server never misreads another version's manifest.
const PROTOCOL: u32 = 1;

/// More sockets than any server has; bounds the ancillary buffer.
const MAX_SOCKETS: usize = 16;

/// The manifest is a few hundred bytes; anything longer is not from a Slipway server.
const MAX_MANIFEST: usize = 64 * 1024;

/// The old server pauses its loops before answering: a reconcile in progress finishes first.
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the new server may take to adopt containers and fill its router before the old
/// one gives up on it and resumes its loops.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// The old server answers `ready` at once.
const STOPPING_TIMEOUT: Duration = Duration::from_secs(30);

/// A loop that does not stop within this long after being asked is aborted.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(30);

const READY: &str = "ready";
const STOPPING: &str = "stopping";

/// The JSON line the old server sends with the sockets, in the order of the descriptors.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    protocol: u32,
    pid: u32,
    sockets: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    name: String,
    addr: SocketAddr,
}

/// Copies of a server's listening sockets, kept to give to a successor after the originals
/// were moved into the tasks serving them.
pub(crate) struct Handed {
    entries: Vec<Entry>,
    fds: Vec<OwnedFd>,
}

impl Handed {
    pub(crate) fn of(listeners: &Listeners) -> anyhow::Result<Self> {
        let mut handed = Self {
            entries: Vec::new(),
            fds: Vec::new(),
        };
        handed.add("api", &listeners.api, listeners.api.local_addr()?)?;
        handed.add("http", &listeners.http, listeners.http.local_addr()?)?;
        handed.add("https", &listeners.https, listeners.https.local_addr()?)?;
        handed.add("ssh", &listeners.ssh, listeners.ssh.local_addr()?)?;
        if let Some(dns) = &listeners.dns {
            handed.add("dns-udp", dns.udp(), dns.local_addr())?;
            handed.add("dns-tcp", dns.tcp(), dns.local_addr())?;
        }
        Ok(handed)
    }

    fn add(&mut self, name: &str, socket: &impl AsFd, addr: SocketAddr) -> anyhow::Result<()> {
        let fd = socket
            .as_fd()
            .try_clone_to_owned()
            .with_context(|| format!("duplicating the {name} socket for a successor"))?;
        self.entries.push(Entry {
            name: name.to_owned(),
            addr,
        });
        self.fds.push(fd);
        Ok(())
    }
}

/// The server being replaced, until it has stopped accepting.
pub struct Predecessor {
    stream: BufReader<UnixStream>,
    pid: u32,
}

impl Predecessor {
    /// Tells the old server this one is ready and waits until it has stopped accepting, then
    /// moves the git hook socket bound at `staged_hooks` to `hooks`, where git hooks look.
    /// `false` when `shutdown` came first: the old server then resumes and keeps serving.
    pub(crate) async fn take_over(
        mut self,
        staged_hooks: &Path,
        hooks: &Path,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<bool> {
        let pid = self.pid;
        if shutdown.is_cancelled() {
            std::fs::remove_file(staged_hooks).ok();
            tracing::info!(
                pid,
                "stopped before taking over: the running server keeps serving"
            );
            return Ok(false);
        }
        self.stream
            .get_mut()
            .write_all(format!("{READY}\n").as_bytes())
            .await
            .with_context(|| format!("telling the running server (pid {pid}) to stop"))?;
        let answer = tokio::time::timeout(STOPPING_TIMEOUT, read_line(&mut self.stream))
            .await
            .with_context(|| format!("the running server (pid {pid}) did not answer `ready`"))?
            .with_context(|| format!("reading the answer of the running server (pid {pid})"))?;
        anyhow::ensure!(
            answer == STOPPING,
            "the running server (pid {pid}) did not let this one take over (it answered `{answer}`): it keeps serving"
        );
        if staged_hooks != hooks {
            std::fs::rename(staged_hooks, hooks).with_context(|| {
                format!(
                    "moving the git hook socket into place at `{}`",
                    hooks.display()
                )
            })?;
        }
        tracing::info!(pid, "took over from the previous server, which is draining");
        Ok(true)
    }
}

/// Where to bind the git hook socket: beside `hooks` while a predecessor still serves it there,
/// so [`Predecessor::take_over`] can swap it in with one rename and no push finds no listener.
pub(crate) fn staged_hook_socket(hooks: &Path, taking_over: bool) -> PathBuf {
    if taking_over {
        with_pid_suffix(hooks)
    } else {
        hooks.to_owned()
    }
}

fn with_pid_suffix(path: &Path) -> PathBuf {
    let mut staged = path.as_os_str().to_owned();
    staged.push(format!(".{}", std::process::id()));
    PathBuf::from(staged)
}

/// Takes the listening sockets over from a server running on the same data dir: `None` when
/// none answers (none runs, or one crashed and left its socket file), so the caller binds.
pub(crate) async fn take_over(config: &ServerConfig) -> anyhow::Result<Option<Listeners>> {
    let path = config.data_dir.join(SOCKET_FILE);
    let stream = match UnixStream::connect(&path).await {
        Ok(stream) => stream,
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(error) => {
            return Err(error).with_context(|| {
                format!("connecting to the running server at `{}`", path.display())
            });
        }
    };
    let (manifest, fds) = tokio::time::timeout(MANIFEST_TIMEOUT, receive_manifest(&stream))
        .await
        .context("the running server did not hand its sockets over in time")??;
    let pid = manifest.pid;
    tracing::info!(
        pid,
        "a server is running on this data dir: taking its sockets over"
    );
    let mut inherited: HashMap<String, (SocketAddr, OwnedFd)> = manifest
        .sockets
        .into_iter()
        .map(|entry| (entry.name, entry.addr))
        .zip(fds)
        .map(|((name, addr), fd)| (name, (addr, fd)))
        .collect();
    let mut take = |name: &str, wanted: SocketAddr| {
        let (addr, fd) = inherited.remove(name)?;
        let same = addr.ip() == wanted.ip() && (wanted.port() == 0 || addr.port() == wanted.port());
        if !same {
            tracing::info!(socket = name, %addr, %wanted, "the address changed: binding anew");
        }
        same.then_some(fd)
    };
    let api = take("api", config.api_listen);
    let http = take("http", config.http_listen);
    let https = take("https", config.https_listen);
    let ssh = take("ssh", config.ssh_listen);
    let dns = config
        .dns_listen
        .and_then(|wanted| Some((take("dns-udp", wanted)?, take("dns-tcp", wanted)?)));
    let listeners = Listeners {
        api: tcp_or_bind(api, config.api_listen, "--api-listen").await?,
        http: tcp_or_bind(http, config.http_listen, "--http-listen").await?,
        https: tcp_or_bind(https, config.https_listen, "--https-listen").await?,
        ssh: tcp_or_bind(ssh, config.ssh_listen, "--ssh-listen").await?,
        dns: match (config.dns_listen, dns) {
            (Some(_), Some((udp, tcp))) => Some(dns_sockets(udp, tcp)?),
            (Some(addr), None) => Some(DnsSockets::bind(addr).await?),
            (None, _) => None,
        },
        predecessor: Some(Predecessor {
            stream: BufReader::new(stream),
            pid,
        }),
    };
    Ok(Some(listeners))
}

async fn tcp_or_bind(
    inherited: Option<OwnedFd>,
    addr: SocketAddr,
    flag: &str,
) -> anyhow::Result<TcpListener> {
    match inherited {
        Some(fd) => {
            expect_type(&fd, SocketType::STREAM, flag)?;
            let listener = std::net::TcpListener::from(fd);
            listener.set_nonblocking(true)?;
            Ok(TcpListener::from_std(listener)?)
        }
        None => crate::bind(addr, flag).await,
    }
}

fn dns_sockets(udp: OwnedFd, tcp: OwnedFd) -> anyhow::Result<DnsSockets> {
    expect_type(&udp, SocketType::DGRAM, "--dns-listen")?;
    expect_type(&tcp, SocketType::STREAM, "--dns-listen")?;
    Ok(DnsSockets::from_std(
        std::net::UdpSocket::from(udp),
        std::net::TcpListener::from(tcp),
    )?)
}

fn expect_type(fd: &OwnedFd, wanted: SocketType, flag: &str) -> anyhow::Result<()> {
    let found = rustix::net::sockopt::socket_type(fd)?;
    anyhow::ensure!(
        found == wanted,
        "the running server handed over a socket of the wrong type for {flag}"
    );
    Ok(())
}

async fn receive_manifest(stream: &UnixStream) -> anyhow::Result<(Manifest, Vec<OwnedFd>)> {
    let mut bytes = Vec::new();
    let mut fds = Vec::new();
    while !bytes.contains(&b'\n') {
        anyhow::ensure!(
            bytes.len() < MAX_MANIFEST,
            "the running server sent a handover manifest over {MAX_MANIFEST} bytes"
        );
        let mut buffer = [0; 4096];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = stream
            .async_io(Interest::READABLE, || {
                Ok(rustix::net::recvmsg(
                    stream,
                    &mut [IoSliceMut::new(&mut buffer)],
                    &mut control,
                    RecvFlags::CMSG_CLOEXEC,
                )?)
            })
            .await
            .context("receiving the sockets of the running server")?;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received_fds) = message {
                fds.extend(received_fds);
            }
        }
        anyhow::ensure!(
            received.bytes > 0,
            "the running server closed the handover before sending its sockets"
        );
        bytes.extend_from_slice(&buffer[..received.bytes]);
    }
    let line = bytes
        .split(|&byte| byte == b'\n')
        .next()
        .unwrap_or_default();
    let manifest: Manifest =
        serde_json::from_slice(line).context("reading the handover manifest")?;
    anyhow::ensure!(
        manifest.protocol == PROTOCOL,
        "the running server speaks handover protocol {} and this one {PROTOCOL}: stop it before starting this one",
        manifest.protocol
    );
    anyhow::ensure!(
        manifest.sockets.len() == fds.len(),
        "the running server named {} sockets but sent {}",
        manifest.sockets.len(),
        fds.len()
    );
    Ok((manifest, fds))
}

/// Listens on `<data-dir>/handover.sock` for a successor. The socket is bound beside it and
/// renamed over it, so a successor never finds the path missing, and it replaces the file of a
/// predecessor (which no longer answers) or one a crash left.
pub(crate) fn listen(data_dir: &Path) -> anyhow::Result<UnixListener> {
    let path = data_dir.join(SOCKET_FILE);
    let staged = with_pid_suffix(&path);
    match std::fs::remove_file(&staged) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(error)
                .with_context(|| format!("removing the stale socket `{}`", staged.display()));
        }
        _ => {}
    }
    let listener = UnixListener::bind(&staged)
        .with_context(|| format!("listening on `{}`", staged.display()))?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the permissions of `{}`", staged.display()))?;
    std::fs::rename(&staged, &path)
        .with_context(|| format!("moving the handover socket to `{}`", path.display()))?;
    Ok(listener)
}

/// Hands the sockets to the first successor that connects and becomes ready, then cancels
/// `shutdown` so this server drains and exits. Returns on `shutdown`.
pub(crate) async fn serve_successors(
    listener: UnixListener,
    handed: Handed,
    loops: Arc<Loops>,
    shutdown: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "could not accept a successor on the handover socket");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        tracing::info!("a new server is starting on this data dir: pausing the background loops");
        loops.pause().await;
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = hand_over(stream, &handed) => outcome,
        };
        match outcome {
            Ok(()) => {
                tracing::info!("the new server is ready: draining and stopping; apps keep running");
                shutdown.cancel();
                return;
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "the handover failed: this server keeps serving");
                loops.resume().await;
            }
        }
    }
}

async fn hand_over(stream: UnixStream, handed: &Handed) -> anyhow::Result<()> {
    let manifest = Manifest {
        protocol: PROTOCOL,
        pid: std::process::id(),
        sockets: handed
            .entries
            .iter()
            .map(|entry| Entry {
                name: entry.name.clone(),
                addr: entry.addr,
            })
            .collect(),
    };
    let mut line = serde_json::to_vec(&manifest)?;
    line.push(b'\n');
    let fds: Vec<_> = handed.fds.iter().map(AsFd::as_fd).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_SOCKETS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    anyhow::ensure!(
        control.push(SendAncillaryMessage::ScmRights(&fds)),
        "too many sockets to hand over: {}",
        fds.len()
    );
    // The descriptors travel with the first byte; the rest of the line follows as plain data.
    let sent = stream
        .async_io(Interest::WRITABLE, || {
            Ok(rustix::net::sendmsg(
                &stream,
                &[IoSlice::new(&line)],
                &mut control,
                SendFlags::NOSIGNAL,
            )?)
        })
        .await
        .context("sending the sockets")?;
    let mut stream = BufReader::new(stream);
    stream.get_mut().write_all(&line[sent..]).await?;
    let answer = tokio::time::timeout(READY_TIMEOUT, read_line(&mut stream))
        .await
        .context("the new server did not become ready in time")??;
    anyhow::ensure!(answer == READY, "the new server answered `{answer}`");
    stream
        .get_mut()
        .write_all(format!("{STOPPING}\n").as_bytes())
        .await
        .context("answering the new server")?;
    Ok(())
}

/// One line without its newline; end of stream is an error, since every message is needed.
async fn read_line(stream: &mut BufReader<UnixStream>) -> anyhow::Result<String> {
    let mut line = String::new();
    let read = stream.read_line(&mut line).await?;
    anyhow::ensure!(read > 0, "the other server closed the handover connection");
    Ok(line.trim_end().to_owned())
}

type SpawnLoops = Box<dyn Fn(CancellationToken) -> JoinSet<()> + Send + Sync>;

/// The background loops that change containers, add-ons and certificates. One server at a
/// time runs them: a server pauses them while a successor starts, and resumes them if that
/// successor fails.
pub(crate) struct Loops {
    spawn: SpawnLoops,
    /// Whether this server may run them: only the leader does (see `leader`).
    allowed: Box<dyn Fn() -> bool + Send + Sync>,
    shutdown: CancellationToken,
    running: Mutex<Option<Running>>,
}

struct Running {
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Loops {
    /// Spawns the loops with `spawn`, which must make them return once their token is
    /// cancelled. `shutdown` stops them too.
    #[cfg(test)]
    pub(crate) fn start(
        shutdown: CancellationToken,
        spawn: impl Fn(CancellationToken) -> JoinSet<()> + Send + Sync + 'static,
    ) -> Arc<Self> {
        let stop = shutdown.child_token();
        let tasks = spawn(stop.clone());
        Arc::new(Self {
            spawn: Box::new(spawn),
            allowed: Box::new(|| true),
            shutdown,
            running: Mutex::new(Some(Running { stop, tasks })),
        })
    }

    /// Loops that are not running yet: `resume` starts them, when `allowed` says this server
    /// may run them (it leads, see `leader`).
    pub(crate) fn idle(
        shutdown: CancellationToken,
        allowed: impl Fn() -> bool + Send + Sync + 'static,
        spawn: impl Fn(CancellationToken) -> JoinSet<()> + Send + Sync + 'static,
    ) -> Arc<Self> {
        Arc::new(Self {
            spawn: Box::new(spawn),
            allowed: Box::new(allowed),
            shutdown,
            running: Mutex::new(None),
        })
    }

    /// Stops the loops, letting each finish what it is doing (bounded).
    pub(crate) async fn pause(&self) {
        let Some(mut running) = self.running.lock().await.take() else {
            return;
        };
        running.stop.cancel();
        let finished = tokio::time::timeout(PAUSE_TIMEOUT, async {
            while running.tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!("a background loop did not stop in time: aborting it");
            running.tasks.shutdown().await;
        }
    }

    pub(crate) async fn resume(&self) {
        let mut running = self.running.lock().await;
        if running.is_none() && !self.shutdown.is_cancelled() && (self.allowed)() {
            let stop = self.shutdown.child_token();
            let tasks = (self.spawn)(stop.clone());
            *running = Some(Running { stop, tasks });
        }
    }

    /// Aborts the loops, at server shutdown.
    pub(crate) async fn stop(&self) {
        if let Some(mut running) = self.running.lock().await.take() {
            running.tasks.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerArgs;

    fn config(data_dir: &Path) -> ServerConfig {
        let mut config = ServerArgs::default().resolve().unwrap();
        config.data_dir = data_dir.to_owned();
        let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
        config.api_listen = any_port;
        config.http_listen = any_port;
        config.https_listen = any_port;
        config.ssh_listen = any_port;
        config.dns_listen = Some(any_port);
        config
    }

    /// A running server's side: its sockets and paused-or-running loops, serving successors.
    struct Running {
        listeners: Listeners,
        loops: Arc<Loops>,
        shutdown: CancellationToken,
        serving: tokio::task::JoinHandle<()>,
    }

    async fn running_server(config: &ServerConfig) -> Running {
        let listeners = Listeners::bind(config).await.unwrap();
        let handed = Handed::of(&listeners).unwrap();
        let shutdown = CancellationToken::new();
        let loops = Loops::start(shutdown.clone(), |stop| {
            let mut tasks = JoinSet::new();
            tasks.spawn(async move { stop.cancelled().await });
            tasks
        });
        let serving = tokio::spawn(serve_successors(
            listen(&config.data_dir).unwrap(),
            handed,
            loops.clone(),
            shutdown.clone(),
        ));
        Running {
            listeners,
            loops,
            shutdown,
            serving,
        }
    }

    #[tokio::test]
    async fn a_successor_gets_the_same_sockets_and_the_predecessor_stops_once_it_is_ready() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let old = running_server(&config).await;
        let new = take_over(&config)
            .await
            .unwrap()
            .expect("the running server answers");

        let addr = |listener: &TcpListener| listener.local_addr().unwrap();
        assert_eq!(addr(&new.api), addr(&old.listeners.api));
        assert_eq!(addr(&new.http), addr(&old.listeners.http));
        assert_eq!(addr(&new.https), addr(&old.listeners.https));
        assert_eq!(addr(&new.ssh), addr(&old.listeners.ssh));
        let (new_dns, old_dns) = (
            new.dns.as_ref().unwrap(),
            old.listeners.dns.as_ref().unwrap(),
        );
        assert_eq!(new_dns.local_addr(), old_dns.local_addr());
        assert!(
            old.loops.running.lock().await.is_none(),
            "the predecessor pauses its loops once it has handed its sockets over"
        );
        // The very same socket: a connection to the old address is accepted by the new listener.
        let _client = tokio::net::TcpStream::connect(addr(&old.listeners.http))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), new.http.accept())
            .await
            .unwrap()
            .unwrap();

        let hooks = dir.path().join("hook.sock");
        let staged = staged_hook_socket(&hooks, true);
        std::fs::write(&staged, "").unwrap();
        let predecessor = new.predecessor.unwrap();
        assert!(
            predecessor
                .take_over(&staged, &hooks, &CancellationToken::new())
                .await
                .unwrap()
        );
        tokio::time::timeout(Duration::from_secs(5), old.shutdown.cancelled())
            .await
            .expect("the predecessor stops once its successor is ready");
        old.serving.await.unwrap();
        assert!(
            hooks.exists() && !staged.exists(),
            "the hook socket moved into place"
        );
    }

    #[tokio::test]
    async fn a_successor_that_gives_up_leaves_the_predecessor_serving() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let old = running_server(&config).await;
        let quitter = take_over(&config)
            .await
            .unwrap()
            .expect("the running server answers");
        drop(quitter);
        let mut resumed = false;
        for _ in 0..100 {
            if old.loops.running.lock().await.is_some() {
                resumed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(resumed, "the predecessor resumes its loops");
        assert!(!old.shutdown.is_cancelled());

        // A successor stopped before it is ready does not take over either.
        let stopped = take_over(&config)
            .await
            .unwrap()
            .expect("the running server answers");
        let hooks = dir.path().join("hook.sock");
        let staged = staged_hook_socket(&hooks, true);
        let cancelled = CancellationToken::new();
        cancelled.cancel();
        let predecessor = stopped.predecessor.unwrap();
        assert!(
            !predecessor
                .take_over(&staged, &hooks, &cancelled)
                .await
                .unwrap()
        );
        assert!(!old.shutdown.is_cancelled());
        old.shutdown.cancel();
        old.serving.await.unwrap();
    }

    #[tokio::test]
    async fn no_running_server_means_binding() {
        let dir = tempfile::tempdir().unwrap();
        assert!(take_over(&config(dir.path())).await.unwrap().is_none());
        // A socket file a crashed server left behind is no server either.
        let listener = listen(dir.path()).unwrap();
        drop(listener);
        assert!(take_over(&config(dir.path())).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn loops_pause_resume_and_stop_with_shutdown() {
        let shutdown = CancellationToken::new();
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let loops = Loops::start(shutdown.clone(), {
            let started = started.clone();
            move |stop| {
                started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut tasks = JoinSet::new();
                tasks.spawn(async move { stop.cancelled().await });
                tasks
            }
        });
        loops.pause().await;
        assert!(loops.running.lock().await.is_none());
        loops.resume().await;
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 2);
        shutdown.cancel();
        loops.pause().await;
        loops.resume().await;
        assert_eq!(
            started.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "loops must not restart after shutdown"
        );
        loops.stop().await;
    }
}
