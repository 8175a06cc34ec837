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
    /// Device pairing: list, approve, reject, revoke, setup codes.
    #[command(subcommand)]
    Devices(DevicesCmd),
    /// Print the gateway's events as JSON lines until it closes the connection.
    Events(ClientArgs),
    /// Nodes: list, describe, approve their command surface, invoke commands.
    #[command(subcommand)]
    Nodes(NodesCmd),
}

#[derive(Subcommand)]
enum NodesCmd {
    /// Connected and paired nodes.
    List(ClientArgs),
    /// One node's details.
    Describe {
        node: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Node command surfaces waiting for approval.
    Pending(ClientArgs),
    /// Approve a node's pending command surface (request id, short code, or node id).
    Approve {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reject a node's pending command surface.
    Reject {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run a command on a node, e.g. `nodes invoke <node> camera.snap --out snap.jpg`.
    Invoke {
        node: String,
        command: String,
        /// Params as JSON.
        #[arg(long)]
        params: Option<String>,
        /// Invoke timeout.
        #[arg(long, default_value_t = 30_000)]
        invoke_timeout_ms: u64,
        /// Write the payload's decoded `base64` media to this file.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Subcommand)]
enum DevicesCmd {
    /// Pending requests and paired devices.
    List(ClientArgs),
    /// Approve a pending request by its id or short code.
    Approve {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reject a pending request.
    Reject {
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a device's token for one role (closes its sockets), or without --role forget the
    /// device entirely.
    Revoke {
        device_id: String,
        #[arg(long)]
        role: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Forget a paired device (closes its sockets).
    Remove {
        device_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Issue a one-time setup code for headless first boot.
    SetupCode {
        /// node | operator
        #[arg(long, default_value = "node")]
        role: String,
        /// Lifetime: 90s, 10m, 2h, 7d (default 10m).
        #[arg(long, default_value = "10m")]
        ttl: String,
        /// Gateway URL to embed (default: this gateway's bind address).
        #[arg(long = "gateway-url")]
        gateway_url: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Connection options shared by every operator subcommand.
#[derive(Args, Clone)]
struct ClientArgs {
    /// Gateway URL.
    #[arg(long, default_value = "ws://127.0.0.1:18789")]
    url: String,
    /// Shared token (default: stored device token, then the local gateway's token file).
    #[arg(long)]
    token: Option<String>,
    #[arg(long)]
    password: Option<String>,
    /// State directory holding this client's identity (and a local gateway's token).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Print the raw payload as JSON.
    #[arg(long)]
    json: bool,
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Extra upgrade header `Name: value` (repeatable; for testing proxies).
    #[arg(long = "header", hide = true)]
    headers: Vec<String>,
}

impl ClientArgs {
    fn options(&self) -> anyhow::Result<CallOptions> {
        let state_dir = self
            .state_dir
            .clone()
            .or_else(config::default_state_dir)
            .context("no state dir: pass --state-dir")?;
        Ok(CallOptions {
            url: self.url.clone(),
            token: self
                .token
                .clone()
                .or_else(|| config::env_first(&config::TOKEN_ENV)),
            password: self
                .password
                .clone()
                .or_else(|| config::env_first(&config::PASSWORD_ENV)),
            state_dir,
            timeout: Duration::from_millis(self.timeout_ms),
            headers: self
                .headers
                .iter()
                .filter_map(|h| {
                    h.split_once(':')
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                })
                .collect(),
            bootstrap_token: None,
            scopes: None,
        })
    }

    fn call(&self, method: &str, params: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let opts = self.options()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(rt.block_on(client::call(&opts, method, params))?)
    }
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
    #[command(flatten)]
    client: ClientArgs,
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
        Some(Cmd::Call(args)) => call(args),
        Some(Cmd::Run(args)) => serve(args),
        Some(Cmd::Devices(cmd)) => devices(cmd),
        Some(Cmd::Nodes(cmd)) => nodes(cmd),
        Some(Cmd::Events(c)) => events(c),
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
    let systemd = pincer_os::notify::systemd();
    runtime()?.block_on(async move {
        let gw = Gateway::bind(cfg).await?;
        let addr = gw.local_addr()?;
        println!("pincer-gateway listening on ws://{addr}");
        tracing::info!(%addr, "listening");
        if let Some(n) = &systemd {
            n.ready(&format!("listening on ws://{addr}"));
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

fn call(a: CallArgs) -> anyhow::Result<()> {
    let params: serde_json::Value =
        serde_json::from_str(&a.params).context("--params is not JSON")?;
    let payload = a.client.call(&a.method, params)?;
    print_json(&payload, a.client.json)
}

fn print_json(v: &serde_json::Value, raw: bool) -> anyhow::Result<()> {
    if raw {
        println!("{v}");
    } else {
        println!("{}", serde_json::to_string_pretty(v)?);
    }
    Ok(())
}

/// Parses `90s`, `10m`, `2h`, `7d` or plain milliseconds.
fn parse_duration_ms(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1_000),
        Some((i, 'm')) => (&s[..i], 60_000),
        Some((i, 'h')) => (&s[..i], 3_600_000),
        Some((i, 'd')) => (&s[..i], 86_400_000),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("invalid duration {s:?} (use 90s, 10m, 2h, 7d)"))?;
    Ok(n.saturating_mul(mult))
}

fn age(ts: u64) -> String {
    let s = pincer_gateway::now_ms().saturating_sub(ts) / 1000;
    if s < 120 {
        format!("{s}s ago")
    } else {
        format!("{}m ago", s / 60)
    }
}

fn devices(cmd: DevicesCmd) -> anyhow::Result<()> {
    use serde_json::json;
    match cmd {
        DevicesCmd::List(c) => {
            let v = c.call("device.pair.list", json!({}))?;
            if c.json {
                return print_json(&v, true);
            }
            let empty = vec![];
            let pending = v["pending"].as_array().unwrap_or(&empty);
            println!("Pending ({}):", pending.len());
            for p in pending {
                let id = p["requestId"].as_str().unwrap_or("");
                println!(
                    "  {}  {}  device {}  role {}  from {}  {}",
                    pincer_gateway::devices::short_code(id),
                    id,
                    &p["deviceId"].as_str().unwrap_or("")
                        [..12.min(p["deviceId"].as_str().unwrap_or("").len())],
                    p["role"].as_str().unwrap_or("?"),
                    p["remoteIp"].as_str().unwrap_or("?"),
                    age(p["ts"].as_u64().unwrap_or(0)),
                );
            }
            let paired = v["paired"].as_array().unwrap_or(&empty);
            println!("Paired ({}):", paired.len());
            for d in paired {
                println!(
                    "  {}  {}  roles {}  {}",
                    d["deviceId"].as_str().unwrap_or(""),
                    d["displayName"]
                        .as_str()
                        .or(d["clientId"].as_str())
                        .unwrap_or("-"),
                    d["roles"]
                        .as_array()
                        .map(|r| r
                            .iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(","))
                        .unwrap_or_default(),
                    d["platform"].as_str().unwrap_or(""),
                );
            }
            if !pending.is_empty() {
                println!("Approve with: pincer-gateway devices approve <code>");
            }
            Ok(())
        }
        DevicesCmd::Approve { id, client } => {
            let v = client.call("device.pair.approve", json!({ "requestId": id }))?;
            if client.json {
                return print_json(&v, true);
            }
            println!(
                "approved {} ({})",
                v["device"]["deviceId"].as_str().unwrap_or("?"),
                v["requestId"].as_str().unwrap_or("?")
            );
            Ok(())
        }
        DevicesCmd::Reject { id, client } => {
            let v = client.call("device.pair.reject", json!({ "requestId": id }))?;
            print_json(&v, client.json)
        }
        DevicesCmd::Revoke {
            device_id,
            role: Some(role),
            client,
        } => {
            let v = client.call(
                "device.token.revoke",
                json!({ "deviceId": device_id, "role": role }),
            )?;
            print_json(&v, client.json)
        }
        DevicesCmd::Revoke {
            device_id,
            role: None,
            client,
        }
        | DevicesCmd::Remove { device_id, client } => {
            let v = client.call("device.pair.remove", json!({ "deviceId": device_id }))?;
            print_json(&v, client.json)
        }
        DevicesCmd::SetupCode {
            role,
            ttl,
            gateway_url,
            client,
        } => {
            let mut params = json!({ "role": role, "ttlMs": parse_duration_ms(&ttl)? });
            if let Some(u) = gateway_url {
                params["url"] = json!(u);
            }
            let v = client.call("device.pair.setupCode", params)?;
            if client.json {
                return print_json(&v, true);
            }
            println!("Setup code (one device, expires in {ttl}):");
            println!("  {}", v["setupCode"].as_str().unwrap_or(""));
            println!("Short form: {}", v["shortCode"].as_str().unwrap_or(""));
            println!("Gateway:    {}", v["url"].as_str().unwrap_or(""));
            println!(
                "On the node: pincer-node run --gateway {} --setup-code {}",
                v["url"].as_str().unwrap_or(""),
                v["shortCode"].as_str().unwrap_or("")
            );
            Ok(())
        }
    }
}

/// Resolves a node argument: a full id, a unique id prefix, or a display name.
fn resolve_node(client: &ClientArgs, node: &str) -> anyhow::Result<String> {
    let v = client.call("node.list", serde_json::json!({}))?;
    let empty = vec![];
    let nodes = v["nodes"].as_array().unwrap_or(&empty);
    let matches: Vec<&str> = nodes
        .iter()
        .filter(|n| {
            let id = n["nodeId"].as_str().unwrap_or("");
            id == node
                || (node.len() >= 6 && id.starts_with(node))
                || n["displayName"].as_str() == Some(node)
        })
        .filter_map(|n| n["nodeId"].as_str())
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Ok(node.to_owned()),
        _ => anyhow::bail!("{node:?} matches several nodes: {}", matches.join(", ")),
    }
}

fn nodes(cmd: NodesCmd) -> anyhow::Result<()> {
    use serde_json::json;
    match cmd {
        NodesCmd::List(c) => {
            let v = c.call("node.list", json!({}))?;
            if c.json {
                return print_json(&v, true);
            }
            let empty = vec![];
            for n in v["nodes"].as_array().unwrap_or(&empty) {
                let list = |k: &str| {
                    n[k].as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str())
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .unwrap_or_default()
                };
                println!(
                    "{}  {:<20} {:<12} {}  commands: {}{}",
                    n["nodeId"].as_str().unwrap_or(""),
                    n["displayName"].as_str().unwrap_or("-"),
                    n["platform"].as_str().unwrap_or("-"),
                    if n["connected"].as_bool() == Some(true) {
                        "connected"
                    } else {
                        "offline  "
                    },
                    list("commands"),
                    if list("pendingCommands").is_empty() {
                        String::new()
                    } else {
                        format!("  awaiting approval: {}", list("pendingCommands"))
                    },
                );
            }
            Ok(())
        }
        NodesCmd::Describe { node, client } => {
            let id = resolve_node(&client, &node)?;
            let v = client.call("node.describe", json!({ "nodeId": id }))?;
            print_json(&v, client.json)
        }
        NodesCmd::Pending(c) => {
            let v = c.call("node.pair.list", json!({}))?;
            if c.json {
                return print_json(&v, true);
            }
            let empty = vec![];
            let pending = v["pending"].as_array().unwrap_or(&empty);
            println!("Pending ({}):", pending.len());
            for p in pending {
                let id = p["requestId"].as_str().unwrap_or("");
                println!(
                    "  {}  {}  node {}  {}  commands: {}",
                    pincer_gateway::devices::short_code(id),
                    id,
                    p["nodeId"].as_str().unwrap_or(""),
                    p["displayName"].as_str().unwrap_or("-"),
                    p["commands"]
                        .as_array()
                        .map(|a| a
                            .iter()
                            .filter_map(|x| x.as_str())
                            .collect::<Vec<_>>()
                            .join(","))
                        .unwrap_or_default(),
                );
            }
            if !pending.is_empty() {
                println!("Approve with: pincer-gateway nodes approve <code>");
            }
            Ok(())
        }
        NodesCmd::Approve { id, client } => {
            // Accept a node id too: approve that node's pending request.
            let node_id = resolve_node(&client, &id)?;
            let pending = client.call("node.pair.list", json!({}))?;
            let empty = vec![];
            let by_node = pending["pending"]
                .as_array()
                .unwrap_or(&empty)
                .iter()
                .find(|p| p["nodeId"].as_str() == Some(node_id.as_str()))
                .and_then(|p| p["requestId"].as_str().map(str::to_owned));
            let v = client.call(
                "node.pair.approve",
                json!({ "requestId": by_node.unwrap_or(id) }),
            )?;
            if client.json {
                return print_json(&v, true);
            }
            println!(
                "approved {}: {}",
                v["node"]["nodeId"].as_str().unwrap_or("?"),
                v["node"]["commands"]
            );
            Ok(())
        }
        NodesCmd::Reject { id, client } => {
            let v = client.call("node.pair.reject", json!({ "requestId": id }))?;
            print_json(&v, client.json)
        }
        NodesCmd::Invoke {
            node,
            command,
            params,
            invoke_timeout_ms,
            out,
            mut client,
        } => {
            let id = resolve_node(&client, &node)?;
            let mut p = json!({
                "nodeId": id, "command": command, "timeoutMs": invoke_timeout_ms,
                "idempotencyKey": pincer_gateway::secret::uuid_v4(),
            });
            if let Some(text) = params {
                p["params"] = serde_json::from_str(&text).context("--params is not JSON")?;
            }
            client.timeout_ms = client.timeout_ms.max(invoke_timeout_ms + 5_000);
            let v = client.call("node.invoke", p)?;
            if let Some(path) = out {
                let b64 = v["payload"]["base64"]
                    .as_str()
                    .context("the result has no base64 media to write")?;
                let bytes = pincer_protocol::base64url::decode(b64)
                    .context("the result's base64 does not decode")?;
                std::fs::write(&path, &bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote {} bytes to {}", bytes.len(), path.display());
                let mut shown = v["payload"].clone();
                shown["base64"] = json!(format!("<{} bytes>", bytes.len()));
                return print_json(&shown, client.json);
            }
            print_json(&v["payload"], client.json)
        }
    }
}

fn events(c: ClientArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let opts = c.options()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut print = |e: &pincer_protocol::frames::EventFrame| {
        let line = serde_json::to_string(e).unwrap_or_default();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    let (code, reason) = rt.block_on(client::watch(&opts, &mut print))?;
    eprintln!("connection closed: {code} {reason}");
    if code == 1000 {
        Ok(())
    } else {
        anyhow::bail!("closed with {code} {reason}")
    }
}
