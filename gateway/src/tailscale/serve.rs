//! The gateway's own Tailscale Serve route: `tailscale serve --bg` from the tailnet's port 443
//! (HTTPS) or 80 (plain HTTP, `serve_https = false`) to the gateway's Serve listener on
//! loopback, set up once the daemon runs (boards boot in any order) and set again when the
//! daemon comes back; cleared at a clean shutdown. A background route survives a crash of
//! the gateway pointing at a port nobody listens on, and the next start replaces it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::TailscaleConfig;
use crate::hub::Hub;

/// How long one `tailscale serve` call may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);
/// Most of each of the CLI's output streams kept (its errors are a few lines).
const CLI_OUTPUT: usize = 16 * 1024;
/// How often the daemon is looked at: to set the route up once it runs, and again after it
/// restarted.
const WATCH: Duration = Duration::from_secs(2);
/// The slower look once the route is up.
const WATCH_UP: Duration = Duration::from_secs(15);

/// The tailnet-side port flag of the route.
fn port_flag(cfg: &TailscaleConfig) -> &'static str {
    if cfg.serve_https {
        "--https=443"
    } else {
        "--http=80"
    }
}

/// Runs the CLI with `args` against the configured socket: `Err` with what it printed.
/// (std's process through `pincer_os::process::run_bounded`, on a blocking thread: two calls
/// per start do not need tokio's process support, which measured 4 KB on x86_64 musl.)
async fn cli(cfg: &TailscaleConfig, args: &[String]) -> Result<(), String> {
    let mut cmd = std::process::Command::new(&cfg.cli);
    cmd.arg(format!("--socket={}", cfg.socket.display()))
        .args(args);
    let run = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let out = pincer_os::process::run_bounded(&mut cmd, CLI_TIMEOUT, CLI_OUTPUT, CLI_OUTPUT)
            .map_err(|e| e.to_string())?;
        if out.success {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        Err(text.trim().chars().take(400).collect())
    });
    run.await.map_err(|e| e.to_string())?
}

/// Points the route at `backend`.
async fn enable(cfg: &TailscaleConfig, backend: SocketAddr) -> Result<(), String> {
    cli(
        cfg,
        &[
            "serve".into(),
            "--bg".into(),
            "--yes".into(),
            port_flag(cfg).into(),
            format!("http://{backend}"),
        ],
    )
    .await
}

/// Removes the route (clean shutdown).
pub async fn disable(cfg: &TailscaleConfig) -> Result<(), String> {
    cli(
        cfg,
        &[
            "serve".into(),
            "--yes".into(),
            port_flag(cfg).into(),
            "off".into(),
        ],
    )
    .await
}

/// Keeps the route pointed at `backend` while the gateway runs.
pub async fn keep(hub: Arc<Hub>, backend: SocketAddr) {
    let cfg = &hub.config.tailscale;
    let ts = &hub.tailscale;
    ts.update(|r| r.serve_listener = Some(backend));
    let mut up = false;
    loop {
        let status = ts.refresh().await;
        match status {
            Ok(s) if s.running() => {
                if !up {
                    match enable(cfg, backend).await {
                        Ok(()) => {
                            let scheme = if cfg.serve_https { "https" } else { "http" };
                            let host = s
                                .dns_name
                                .clone()
                                .or_else(|| s.addresses.first().map(|a| a.to_string()))
                                .unwrap_or_default();
                            let url = format!("{scheme}://{host}/");
                            tracing::info!(%url, %backend, "Tailscale Serve route set up: operators on the tailnet sign in as their tailnet login");
                            ts.update(|r| {
                                r.serve_url = Some(url);
                                r.serve_error = None;
                            });
                            up = true;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "tailscale serve failed; retrying");
                            ts.update(|r| r.serve_error = Some(e));
                        }
                    }
                }
            }
            other => {
                if up {
                    tracing::warn!(
                        "tailscaled went away; the Serve route is set again when it is back"
                    );
                }
                up = false;
                let why = super::Tailscale::why_no_address(&other);
                ts.update(|r| {
                    r.serve_url = None;
                    r.serve_error = Some(why);
                });
            }
        }
        tokio::time::sleep(if up { WATCH_UP } else { WATCH }).await;
    }
}
