#![doc = include_str!("../README.md")]

mod addons;
mod alerts;
mod app;
mod auth;
mod certs;
pub mod config;
mod controllers;
mod dashboard;
mod deployer;
mod drains;
mod error;
mod extract;
mod forward;
mod handover;
mod leader;
mod logs;
mod metrics;
mod passwords;
mod push;
mod router;
mod runs;
mod ssh;
mod timeseries;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use slipway_addons::AddonImages;
use slipway_builder::{Builder, BuilderConfig};
use slipway_domains::check::DnsChecker;
use slipway_domains::dns::{DnsConfig, DnsServer, DnsSockets};
use slipway_engine::{ContainerEngine, DockerEngine, Swarm};
use slipway_git::{HookListener, Repos};
use slipway_router::{AccessLogSink, Router, RouterConfig};
use slipway_store::seal::Sealer;
use slipway_store::{Role, Store, TokenScope};
use slipway_types::api::ReleaseStatus;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Runtime, ServerArgs, ServerConfig};
pub use handover::Predecessor;

use crate::addons::{Addons, AddonsConfig};
use crate::app::{AppState, Platform};
use crate::auth::{TokenSigner, instance_id, load_or_create_master_key, write_secret_file};
use crate::certs::Certs;
use crate::deployer::{Deployer, DeployerConfig};
use crate::drains::Drains;
use crate::logs::LogHub;
use crate::passwords::LoginLimits;
use crate::push::BuildQueue;
use crate::runs::Runs;

/// How often the reconciler compares containers with the store.
const RECONCILE_EVERY: Duration = Duration::from_secs(5);

/// The server's sockets, bound before `run` so tests can bind port 0.
pub struct Listeners {
    pub api: TcpListener,
    pub http: TcpListener,
    pub https: TcpListener,
    /// Git over SSH.
    pub ssh: TcpListener,
    /// Bound when `--dns-listen` is set.
    pub dns: Option<DnsSockets>,
    /// The server these sockets were taken over from; it stops once `run` is ready to serve.
    pub predecessor: Option<Predecessor>,
}

impl Listeners {
    /// Takes the sockets over from a server running on the same data dir (a restart without
    /// downtime), else binds them.
    pub async fn open(config: &ServerConfig) -> anyhow::Result<Self> {
        match handover::take_over(config).await? {
            Some(listeners) => Ok(listeners),
            None => Self::bind(config).await,
        }
    }

    pub async fn bind(config: &ServerConfig) -> anyhow::Result<Self> {
        Ok(Self {
            api: bind(config.api_listen, "--api-listen").await?,
            http: bind(config.http_listen, "--http-listen").await?,
            https: bind(config.https_listen, "--https-listen").await?,
            ssh: bind(config.ssh_listen, "--ssh-listen").await?,
            dns: match config.dns_listen {
                Some(addr) => Some(DnsSockets::bind(addr).await?),
                None => None,
            },
            predecessor: None,
        })
    }
}

async fn bind(addr: std::net::SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({flag})"))
}

/// Runs the platform until `shutdown` fires. Apps keep running when the server stops; the
/// next start adopts them.
pub async fn run(
    mut config: ServerConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.api_listen = listeners.api.local_addr()?;
    config.http_listen = listeners.http.local_addr()?;
    config.https_listen = listeners.https.local_addr()?;
    config.ssh_listen = listeners.ssh.local_addr()?;
    config.dns_listen = listeners.dns.as_ref().map(DnsSockets::local_addr);
    let handed = handover::Handed::of(&listeners)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir `{}`", config.data_dir.display()))?;

    let master_key = load_or_create_master_key(&config.master_key_file)?;
    let leadership =
        leader::Leadership::new(&config.data_dir, config.api_url(), config.leader_lease)?;
    let store = Store::open(&config.database_url)
        .await?
        .sealing_with(Sealer::from_master_key(
            &master_key,
            b"slipway config vars v1",
        ))
        .fenced_by(leadership.fence());
    let docker = Arc::new(DockerEngine::connect().await?);
    let engine: Arc<dyn ContainerEngine> = docker.clone();
    engine.ping().await?;
    let swarm = swarm_runtime(&docker, config.runtime).await?;
    if !engine.image_exists(&config.stack_image).await? {
        anyhow::bail!(
            "stack image `{}` is missing: build it with `slipway stack:build`",
            config.stack_image
        );
    }
    let signer = TokenSigner::from_master_key(&master_key);
    bootstrap_admin(&store, &signer, &config).await?;
    let leading = leadership.try_acquire(&store).await;
    if listeners.predecessor.is_none() && leading {
        // With a predecessor, what is unfinished is its work in progress, not a crash's; on a
        // follower, it is the leader's.
        recover_interrupted(&store).await?;
    }

    let logs_dir = config.data_dir.join("logs");
    let logs = LogHub::open(logs_dir.clone(), config.log_lines)
        .with_context(|| format!("opening the log folder `{}`", logs_dir.display()))?;
    let router = Router::new(RouterConfig {
        listen_port: config.http_listen.port(),
        https_port: Some(config.https_listen.port()),
        access_log: Some(AccessLogSink::new({
            let logs = logs.clone();
            move |app, line| logs.router_line(app, line)
        })),
        ..RouterConfig::default()
    });
    let dns = match listeners.dns {
        Some(sockets) => Some(
            DnsServer::serve(
                sockets,
                DnsConfig {
                    apps_domain: config.apps_domain.clone(),
                    extra_zones: config.dns_zones.clone(),
                    public_ip: config.public_ip,
                },
                shutdown.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let checker = match config.dns_resolver {
        Some(addr) => DnsChecker::with_nameserver(addr),
        None => DnsChecker::system()?,
    };
    let certs = Certs::new(store.clone(), router.clone(), dns, checker, &config);
    let hook_socket = config.data_dir.join("hook.sock");
    let ssh_host_key = ssh::load_or_create_host_key(&config.data_dir.join(ssh::HOST_KEY_FILE))?;
    let exe = std::env::current_exe().context("locating the slipway binary for the git hook")?;
    let (notifier, notices) = alerts::Notifier::new();
    let platform = Arc::new(Platform {
        builder: Builder::new(
            engine.clone(),
            BuilderConfig {
                ca_bundle: config.build_ca_bundle.clone(),
                memory_bytes: config.build_memory,
                timeout: config.build_timeout,
                buildpack_cache: Some(config.data_dir.join("cache").join("buildpacks")),
                ..BuilderConfig::new(config.stack_image.clone())
            },
        ),
        repos: Repos::new(config.data_dir.join("repos"), exe, hook_socket.clone()),
        deployer: Deployer::new(
            engine.clone(),
            store.clone(),
            router.clone(),
            DeployerConfig {
                instance: instance_id(&master_key),
                logs: logs.clone(),
                apps_domain: config.apps_domain.clone(),
                release_timeout: config.release_timeout,
                notifier,
                swarm: swarm.clone(),
                registry: config.registry.clone(),
            },
        )?,
        builds: BuildQueue::new(config.build_concurrency),
        runs: Runs::new(
            engine.clone(),
            swarm.clone(),
            logs.clone(),
            instance_id(&master_key),
        ),
        addons: Addons::new(
            engine.clone(),
            swarm.clone(),
            &master_key,
            AddonsConfig {
                images: AddonImages {
                    postgres: config.postgres_image.clone(),
                    redis: config.redis_image.clone(),
                },
                backups_dir: config.data_dir.join("backups"),
                retention: config.backup_retention,
            },
        ),
        drains: Drains::new(
            logs.clone(),
            config.drain_ca_bundle.as_deref(),
            config.drain_buffer_lines,
        )?,
        logs,
        metrics: metrics::install()?,
        certs,
        logins: LoginLimits::default(),
        series: timeseries::TimeSeries::new(config.metrics_bucket),
        started: std::time::Instant::now(),
        leadership,
        swarm,
        store,
        signer,
        config,
    });

    for app in platform.store.apps().await? {
        platform.deployer.set_backends(&app.name, Vec::new());
    }
    platform
        .deployer
        .set_maintenance(platform.store.apps_in_maintenance().await?);
    platform
        .deployer
        .set_rate_limits(platform.store.rate_limits().await?);
    platform.certs.sync(&platform).await?;
    if leading {
        platform.deployer.reconcile_all().await?;
        platform.runs.adopt().await?;
    } else {
        // The leader's containers, one-off runs included, are the leader's to manage.
        platform.deployer.follow_routes().await?;
    }
    for drain in platform.store.drains(None).await? {
        platform.drains.start(&drain);
    }
    let staged_hooks = handover::staged_hook_socket(&hook_socket, listeners.predecessor.is_some());
    let hooks = HookListener::bind(&staged_hooks)?;
    if let Some(predecessor) = listeners.predecessor
        && !predecessor
            .take_over(&staged_hooks, &hook_socket, &shutdown)
            .await?
    {
        return Ok(());
    }

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(push::serve_pushes(platform.clone(), hooks));
    tasks.spawn(alerts::run(platform.clone(), notices, shutdown.clone()));
    let loops = handover::Loops::idle(
        shutdown.clone(),
        {
            let platform = platform.clone();
            move || platform.leadership.is_leader()
        },
        {
            let platform = platform.clone();
            move |stop| background_loops(&platform, &stop)
        },
    );
    tasks.spawn(leader::campaign(
        platform.clone(),
        loops.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(handover::serve_successors(
        handover::listen(&platform.config.data_dir)?,
        handed,
        loops.clone(),
        shutdown.clone(),
    ));
    let logs_shutdown = shutdown.clone();
    let logs = platform.logs.clone();
    tasks.spawn(async move {
        logs_shutdown.cancelled().await;
        logs.close();
    });
    // The router's drains are awaited, not aborted, so a restart drops no request in flight.
    // Stopped after the router has drained, so the last bucket holds every request it served.
    let series_stop = CancellationToken::new();
    let series = tokio::spawn(timeseries::collect(
        platform.clone(),
        router.clone(),
        series_stop.clone(),
    ));
    let mut serving = tokio::task::JoinSet::new();
    let tls_shutdown = shutdown.clone();
    let tls_router = router.clone();
    serving.spawn(async move {
        if let Err(error) = tls_router
            .serve_tls(listeners.https, tls_shutdown.cancelled_owned())
            .await
        {
            tracing::error!(%error, "router stopped serving HTTPS");
        }
    });
    let router_shutdown = shutdown.clone();
    serving.spawn(async move {
        if let Err(error) = router
            .serve(listeners.http, router_shutdown.cancelled_owned())
            .await
        {
            tracing::error!(%error, "router stopped");
        }
    });
    serving.spawn(ssh::serve(
        platform.clone(),
        listeners.ssh,
        ssh_host_key,
        hook_socket.clone(),
        shutdown.clone(),
    ));
    tracing::info!(
        api = %platform.config.api_url(),
        router = %platform.config.http_listen,
        https = %platform.config.https_listen,
        ssh = %platform.config.ssh_listen,
        dns = ?platform.config.dns_listen,
        apps_domain = %platform.config.apps_domain,
        "slipway is running"
    );
    let api = router::build(AppState(platform.clone()));
    axum::serve(
        listeners.api,
        api.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned())
    .await
    .context("serving the API")?;
    while serving.join_next().await.is_some() {}
    series_stop.cancel();
    if let Err(error) = series.await {
        tracing::warn!(%error, "the metrics series stopped abnormally");
    }
    loops.stop().await;
    tasks.shutdown().await;
    platform.logs.flush().await;
    Ok(())
}

/// The swarm apps run on with `--runtime swarm`, once the engine is known to manage one;
/// `None` with `--runtime docker`.
async fn swarm_runtime(
    docker: &Arc<DockerEngine>,
    runtime: Runtime,
) -> anyhow::Result<Option<Arc<dyn Swarm>>> {
    if runtime == Runtime::Docker {
        return Ok(None);
    }
    match docker.swarm_status().await? {
        Some(status) if status.manager => Ok(Some(docker.clone())),
        Some(_) => anyhow::bail!(
            "--runtime swarm needs a swarm manager, and this Docker engine is a worker: run the server on a manager node, or promote this one with `docker node promote`"
        ),
        None => anyhow::bail!(
            "--runtime swarm needs this Docker engine to be a swarm manager: run `docker swarm init --advertise-addr <ip>`, or join a swarm as a manager"
        ),
    }
}

/// On first start with an empty store: user `admin` and a token in `<data-dir>/admin.token`.
async fn bootstrap_admin(
    store: &Store,
    signer: &TokenSigner,
    config: &ServerConfig,
) -> anyhow::Result<()> {
    if store.user_count().await? > 0 {
        return Ok(());
    }
    let admin = store.create_user("admin", Role::Admin).await?;
    let record = store
        .create_token(admin.id, TokenScope::Admin, None)
        .await?;
    let token_file = config.data_dir.join("admin.token");
    write_secret_file(&token_file, &signer.issue(&record)?)?;
    tracing::info!(
        "created user `admin`; log in with: slipway login --url {} --token \"$(cat {})\"",
        config.api_url(),
        shell_path(&token_file)
    );
    Ok(())
}

fn shell_path(path: &Path) -> String {
    path.display().to_string().replace('"', "\\\"")
}

/// Builds, releases and backups a crash left half-done are failed: their pushes already
/// failed, and a backup cut short is no backup.
async fn recover_interrupted(store: &Store) -> anyhow::Result<()> {
    let note = "interrupted by a server restart";
    store.fail_unfinished_builds(note).await?;
    store.fail_running_backups(note).await?;
    for app in store.apps().await? {
        for release in store.releases(app.id).await? {
            if release.status == ReleaseStatus::Pending && Some(release.id) != app.current_release {
                store
                    .set_release_status(release.id, ReleaseStatus::Failed, Some(note))
                    .await?;
            }
        }
    }
    Ok(())
}

/// The loops that change containers, add-ons and certificates: one server at a time runs them
/// (see `handover`).
fn background_loops(
    platform: &Arc<Platform>,
    stop: &CancellationToken,
) -> tokio::task::JoinSet<()> {
    let mut loops = tokio::task::JoinSet::new();
    loops.spawn(reconcile_loop(platform.clone(), stop.clone()));
    loops.spawn(canary_loop(platform.clone(), stop.clone()));
    loops.spawn(addons::run(platform.clone(), stop.clone()));
    loops.spawn(certs::run_dns(platform.clone(), stop.clone()));
    loops.spawn(certs::run_orders(platform.clone(), stop.clone()));
    loops
}

/// Judges the running canaries every second; a decided one is finished in its own task, since
/// a promotion is a whole rolling replacement.
async fn canary_loop(platform: Arc<Platform>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(deployer::CANARY_CHECK_EVERY) => {}
        }
        for app in platform.deployer.watch_canaries() {
            let platform = platform.clone();
            tokio::spawn(async move {
                if let Err(error) = platform.deployer.finish_canary(&app).await {
                    tracing::warn!(%app, %error, "finishing a canary failed");
                }
            });
        }
    }
}

async fn reconcile_loop(platform: Arc<Platform>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RECONCILE_EVERY) => {}
        }
        if let Err(error) = platform.deployer.reconcile_all().await {
            tracing::warn!(%error, "reconcile failed");
        }
    }
}
