//! `pincer-gateway`: thin binary over the library. `run` (the default) serves; `call`,
//! `devices`, `nodes` and `events` are the operator CLI (`pincer_gateway::operator`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use pincer_gateway::config::{self, AuthMode, Config, Overrides};
use pincer_gateway::{operator, Gateway};

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
    #[command(flatten)]
    Operator(operator::Command),
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
    /// Serve this static bundle (e.g. an installed openclaw's dist/control-ui) instead of the
    /// embedded WebChat.
    #[arg(long)]
    control_ui_dir: Option<PathBuf>,
}

/// One event-loop thread. A board's gateway serves a handful of clients; one thread keeps idle
/// RSS low (tokio's multi-thread scheduler alone pulls in libm and a stack per worker) and
/// still reaches ~90 % of the echo ceiling on this socket stack (docs/benchmarks.md).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    pincer_os::init_logging();
    match cli.cmd {
        Some(Cmd::Run(args)) => serve(args),
        Some(Cmd::Operator(cmd)) => Ok(cmd.run()?),
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
        control_ui_dir: a.control_ui_dir,
    })?;
    if cfg.token_generated {
        if let AuthMode::Token(t) = &cfg.auth {
            eprintln!(
                "pincer-gateway: generated a gateway token (stored in {}):\n  {t}",
                cfg.state_dir.join(config::TOKEN_FILE).display()
            );
        }
    }
    let systemd = pincer_os::notify::systemd();
    runtime()?.block_on(async move {
        let gw = Gateway::bind(cfg).await?;
        let addr = gw.local_addr()?;
        // One line (tests and scripts read it); the TLS fingerprint is in the log just before.
        let scheme = if gw.hub().tls.get().is_some() {
            "wss"
        } else {
            "ws"
        };
        println!("pincer-gateway listening on {scheme}://{addr}");
        tracing::info!(%addr, "listening");
        if let Some(serve) = gw.serve_addr() {
            tracing::info!(%serve, "Tailscale Serve listener (the Serve route points here)");
        }
        if let Some(n) = &systemd {
            n.ready(&format!("listening on {scheme}://{addr}"));
            pincer_os::notify::spawn_watchdog(n.clone());
        }
        gw.run(async {
            pincer_os::shutdown_signal().await;
            if let Some(n) = &systemd {
                n.stopping();
            }
        })
        .await;
        Ok(())
    })
}
