//! `slipway`: one binary. `slipway server` runs the platform, `slipway stack:build` builds the
//! stack image, and every other subcommand is the client talking to a server's API.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use slipway_cli::{ClientCommand, GlobalOpts};
use slipway_engine::ContainerEngine;
use slipway_server::{Listeners, ServerArgs};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "slipway",
    version,
    about = "A self-hosted, Heroku-style platform-as-a-service"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalOpts,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform: API, git receiver, builder, deployer and router
    ///
    /// Started beside a running server with the same data dir, it takes that server's sockets
    /// over and the old one drains and exits: a restart or an upgrade without downtime, the
    /// apps running throughout.
    Server(Box<ServerArgs>),
    /// Build the stack image and the Postgres and Redis add-on images that are missing, from the
    /// machine's Debian mirror (needs root and debootstrap)
    #[command(name = "stack:build")]
    StackBuild {
        /// Debian suite to bootstrap
        #[arg(long, default_value = "trixie")]
        suite: String,
        /// Image to create
        #[arg(long, default_value = "slipway/stack:trixie")]
        image: String,
        /// Debian mirror [default: read from this machine's apt sources]
        #[arg(long)]
        mirror: Option<String>,
        /// Postgres add-on image to create
        #[arg(long, default_value = "slipway/postgres:17")]
        postgres_image: String,
        /// Redis add-on image to create
        #[arg(long, default_value = "slipway/redis:8")]
        redis_image: String,
        /// Rebuild the images even when they exist
        #[arg(long)]
        force: bool,
    },
    /// Copy a stopped server's store into a fresh, empty one: how to move from SQLite to
    /// PostgreSQL. Sealed values are copied as they are: run the servers on the new store with
    /// the same master key
    #[command(name = "store:copy")]
    StoreCopy {
        /// The store to read, like `sqlite:///var/lib/slipway/slipway.db`
        #[arg(long)]
        from: String,
        /// The empty store to fill, like `postgres://slipway:PASSWORD@db.internal/slipway`
        #[arg(long)]
        to: String,
    },
    /// Run by git as the pre-receive hook of every app repository
    #[command(name = "git-hook", hide = true)]
    GitHook { hook: String },
    #[command(flatten)]
    Client(ClientCommand),
}

/// mimalloc rather than glibc's malloc: the router allocates on every request (see
/// docs/decisions.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(error) if error.is::<slipway_cli::Exit>() => error
            .downcast::<slipway_cli::Exit>()
            .map_or(std::process::ExitCode::FAILURE, Into::into),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Server(args) => {
            init_tracing();
            let config = args.resolve()?;
            let listeners = Listeners::open(&config).await?;
            let shutdown = CancellationToken::new();
            tokio::spawn(stop_on_signal(shutdown.clone()));
            slipway_server::run(config, listeners, shutdown).await?;
        }
        Command::StackBuild {
            suite,
            image,
            mirror,
            postgres_image,
            redis_image,
            force,
        } => {
            init_tracing();
            let addons = [
                (slipway_builder::AddonImage::Postgres, postgres_image),
                (slipway_builder::AddonImage::Redis, redis_image),
            ];
            stack_build(suite, image, mirror, addons, force).await?;
        }
        Command::StoreCopy { from, to } => {
            let source = slipway_store::Store::open(&from).await?;
            let target = slipway_store::Store::open(&to).await?;
            for (table, rows) in source.copy_into(&target).await? {
                println!("{table}: {rows} rows");
            }
            println!(
                "copied {} into {}",
                slipway_store::redacted(&from),
                slipway_store::redacted(&to)
            );
            source.close().await;
            target.close().await;
        }
        Command::GitHook { hook } => {
            anyhow::ensure!(hook == "pre-receive", "unknown git hook `{hook}`");
            let code = slipway_git::run_pre_receive_hook().await;
            return Ok(std::process::ExitCode::from(
                u8::try_from(code).unwrap_or(1),
            ));
        }
        Command::Client(command) => slipway_cli::run(cli.global, command).await?,
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Builds each of the stack and add-on images that is missing (all of them with `force`).
async fn stack_build(
    suite: String,
    image: String,
    mirror: Option<String>,
    addons: [(slipway_builder::AddonImage, String); 2],
    force: bool,
) -> anyhow::Result<()> {
    let engine = Arc::new(slipway_engine::DockerEngine::connect().await?);
    let work_dir = tempdir_for_stack()?;
    let mut options = slipway_builder::StackOptions {
        reference: image,
        suite,
        mirror,
        work_dir,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(256);
    let printer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            println!("{line}");
        }
    });
    let keep = async |reference: &str| -> anyhow::Result<bool> {
        let exists = !force && engine.image_exists(reference).await?;
        if exists {
            tx.send(format!(
                "-----> {reference} exists; keeping it (--force rebuilds it)"
            ))
            .await
            .ok();
        }
        Ok(exists)
    };
    let result = async {
        if !keep(&options.reference).await? {
            slipway_builder::build_stack(engine.as_ref(), &options, &tx).await?;
        }
        for (addon, reference) in addons {
            if keep(&reference).await? {
                continue;
            }
            options.reference = reference;
            slipway_builder::build_addon_image(engine.as_ref(), addon, &options, &tx).await?;
        }
        anyhow::Ok(())
    }
    .await;
    drop(tx);
    printer.await.ok();
    result
}

fn tempdir_for_stack() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("slipway-stack-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down; apps keep running");
    shutdown.cancel();
}
