//! `pincer-node`: thin binary over the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use pincer_client::identity::{Identity, IdentityFiles};
use pincer_node::commands::AVAILABLE_CAPS;
use pincer_node::config::{NodeConfig, Overrides};
use pincer_node::link::Node;

#[derive(Parser)]
#[command(
    name = "pincer-node",
    version,
    about = "Headless OpenClaw node for small Linux boards"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Connect to the gateway and serve commands (reconnects by itself).
    Run(RunArgs),
    /// Print this node's device id.
    Identity(StateArgs),
    /// Check identity, capabilities and the gateway, and say what works.
    Doctor(RunArgs),
    /// Apply a board's pincer.toml (the SD image's first boot runs this): check all of it,
    /// write node.toml and the stored secrets, and print what the OS steps still do as
    /// key=value lines (nothing is written when the file has an error).
    Provision(ProvisionArgs),
}

#[derive(Args)]
struct ProvisionArgs {
    /// The pincer.toml to apply.
    file: PathBuf,
    /// Where secrets for the OS steps are stored (the Tailscale auth key), 0700.
    #[arg(long, default_value = "/var/lib/pincer-firstboot")]
    state_dir: PathBuf,
    /// The node.toml to write (mode 0640).
    #[arg(long, default_value = "/etc/pincer/node.toml")]
    config_out: PathBuf,
    /// The group that may read node.toml (the node's), when it exists.
    #[arg(long, default_value = "pincer")]
    config_group: String,
    /// Also write pincer.toml without its secrets here (for the boot partition).
    #[arg(long)]
    scrubbed_out: Option<PathBuf>,
    /// Time zones for the `timezone` check.
    #[arg(long, default_value = "/usr/share/zoneinfo")]
    zoneinfo: PathBuf,
}

/// `provision`: the errors are for pincer-error.txt, so only the message, on stderr.
fn provision(a: ProvisionArgs) -> std::process::ExitCode {
    use pincer_node::provision::{provision, Checks, Options};
    let opts = Options {
        checks: Checks {
            available_caps: AVAILABLE_CAPS,
            zoneinfo: a.zoneinfo,
        },
        config_out: a.config_out,
        config_gid: pincer_os::group_id(&a.config_group),
        state_dir: a.state_dir,
        scrubbed_out: a.scrubbed_out,
        now_unix: pincer_node::now_ms() / 1000,
    };
    match provision(&a.file, &opts) {
        Ok(p) => {
            print!("{}", p.os_env());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[derive(Args, Clone, Default)]
struct StateArgs {
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Args, Clone, Default)]
struct RunArgs {
    /// ws://HOST:PORT or wss://HOST:PORT (default ws://127.0.0.1:18789).
    #[arg(long)]
    gateway: Option<String>,
    /// Shared gateway token (else PINCER_GATEWAY_TOKEN / OPENCLAW_GATEWAY_TOKEN).
    #[arg(long, conflicts_with = "setup_code")]
    token: Option<String>,
    /// One-time setup code from `pincer-gateway devices setup-code`.
    #[arg(long)]
    setup_code: Option<String>,
    /// Capability classes to serve, e.g. `system` (comma separated).
    #[arg(long)]
    caps: Option<String>,
    /// Display name (default: host name).
    #[arg(long)]
    name: Option<String>,
    /// SHA-256 of the gateway's TLS certificate to pin (wss:// only).
    #[arg(long)]
    tls_fingerprint: Option<String>,
    /// gpsd address for `location.get` (default 127.0.0.1:2947).
    #[arg(long)]
    gpsd: Option<String>,
    #[command(flatten)]
    state: StateArgs,
}

fn resolve(a: &RunArgs) -> anyhow::Result<NodeConfig> {
    Ok(NodeConfig::resolve(
        Overrides {
            gateway: a.gateway.clone(),
            token: a.token.clone(),
            setup_code: a.setup_code.clone(),
            caps: a.caps.clone(),
            name: a.name.clone(),
            state_dir: a.state.state_dir.clone(),
            tls_fingerprint: a.tls_fingerprint.clone(),
            gpsd: a.gpsd.clone(),
            config: a.state.config.clone(),
        },
        AVAILABLE_CAPS,
    )?)
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    pincer_os::init_logging();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.cmd {
        Cmd::Identity(s) => {
            let cfg = resolve(&RunArgs {
                state: s,
                ..Default::default()
            })?;
            let id = Identity::load_or_create(IdentityFiles::node(&cfg.state_dir))?;
            println!("{}", id.device_id);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Run(a) => {
            let cfg = resolve(&a)?;
            let node = Node::from_config(cfg).context("node identity")?;
            tracing::info!(device_id = %node.identity.device_id, gateway = %node.config.gateway, caps = ?node.config.caps, "starting");
            let systemd = pincer_os::notify::systemd();
            rt.block_on(async {
                // Ready once running: the node serves (and keeps reconnecting) by itself, so
                // an unreachable gateway is not a failed start.
                if let Some(n) = &systemd {
                    n.ready("running");
                    pincer_os::notify::spawn_watchdog(n.clone());
                }
                node.run(async {
                    pincer_os::shutdown_signal().await;
                    if let Some(n) = &systemd {
                        n.stopping();
                    }
                })
                .await
            });
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Doctor(a) => rt
            .block_on(doctor(a))
            .map(|()| std::process::ExitCode::SUCCESS),
        Cmd::Provision(a) => Ok(provision(a)),
    }
}

async fn doctor(a: RunArgs) -> anyhow::Result<()> {
    let cfg = resolve(&a)?;
    for check in pincer_node::doctor::report(&cfg).await {
        println!("{check}");
    }
    Ok(())
}
