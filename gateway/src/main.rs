//! `pincer-gateway`: thin binary over the library. `run` (default) serves; `call` is an
//! operator client for scripts and tests.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use pincer_gateway::client::{self, CallOptions};
use pincer_gateway::config::{self, AuthMode, Config, Overrides};
use pincer_gateway::Gateway;

#[derive(Parser)]
#[command(
    name = "pincer-gateway",
    version,
    about = "OpenClaw-compatible gateway for small Linux boards"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the gateway (the default).
    Run(RunArgs),
    /// Call a gateway method as an operator and print the result.
    Call(CallArgs),
}

#[derive(Args, Default)]
struct RunArgs {
    /// loopback | lan | tailnet | <ip>
    #[arg(long)]
    bind: Option<String>,
    /// TCP port (0 picks a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Shared token (else PINCER_GATEWAY_TOKEN / OPENCLAW_GATEWAY_TOKEN / CLAWDBOT_GATEWAY_TOKEN,
    /// the config file, or a token generated into the state dir).
    #[arg(long)]
    token: Option<String>,
    /// Shared password (password auth mode).
    #[arg(long)]
    password: Option<String>,
    /// token | password | none
    #[arg(long)]
    auth: Option<String>,
    /// gateway.toml
    #[arg(long)]
    config: Option<PathBuf>,
    /// State directory (default: $PINCER_STATE_DIR, else $XDG_STATE_HOME/pincer, else ~/.local/state/pincer).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// `tick` interval.
    #[arg(long)]
    tick_interval_ms: Option<u64>,
    /// Deadline for the `connect` request after the socket opens.
    #[arg(long)]
    handshake_timeout_ms: Option<u64>,
}

#[derive(Args)]
struct CallArgs {
    /// Method name, e.g. health, status, system-presence.
    method: String,
    /// Params as JSON (default {}).
    #[arg(long, default_value = "{}")]
    params: String,
    /// Gateway URL.
    #[arg(long, default_value = "ws://127.0.0.1:18789")]
    url: String,
    /// Shared token (default: stored device token, then the local gateway's token file).
    #[arg(long)]
    token: Option<String>,
    #[arg(long)]
    password: Option<String>,
    /// State directory holding this client's identity.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Print the raw payload (compact JSON).
    #[arg(long)]
    json: bool,
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

/// Logs to stderr; `RUST_LOG` takes `level` or `target=level,...` directives (no regex engine:
/// it would cost ~300 KB of binary).
fn init_logging() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .with(filter)
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    match cli.cmd {
        Some(Cmd::Call(args)) => call(args),
        Some(Cmd::Run(args)) => serve(args),
        None => serve(cli.run),
    }
}

fn serve(a: RunArgs) -> anyhow::Result<()> {
    let cfg = Config::resolve(Overrides {
        bind: a.bind,
        port: a.port,
        state_dir: a.state_dir,
        token: a.token,
        password: a.password,
        auth_mode: a.auth,
        config: a.config,
        tick_interval_ms: a.tick_interval_ms,
        handshake_timeout_ms: a.handshake_timeout_ms,
    })?;
    if cfg.token_generated {
        if let AuthMode::Token(t) = &cfg.auth {
            eprintln!(
                "pincer-gateway: generated a gateway token (stored in {}):\n  {t}",
                cfg.state_dir.join(config::TOKEN_FILE).display()
            );
        }
    }
    runtime()?.block_on(async move {
        let gw = Gateway::bind(cfg).await?;
        let addr = gw.local_addr()?;
        println!("pincer-gateway listening on ws://{addr}");
        tracing::info!(%addr, "listening");
        gw.run(shutdown_signal()).await;
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

fn call(a: CallArgs) -> anyhow::Result<()> {
    let params: serde_json::Value =
        serde_json::from_str(&a.params).context("--params is not JSON")?;
    let state_dir = a
        .state_dir
        .or_else(config::default_state_dir)
        .context("no state dir: pass --state-dir")?;
    let opts = CallOptions {
        url: a.url,
        token: a.token.or_else(|| config::env_first(&config::TOKEN_ENV)),
        password: a.password,
        state_dir,
        timeout: Duration::from_millis(a.timeout_ms),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let payload = rt.block_on(client::call(&opts, &a.method, params))?;
    if a.json {
        println!("{payload}");
    } else {
        println!("{}", serde_json::to_string_pretty(&payload)?);
    }
    Ok(())
}
