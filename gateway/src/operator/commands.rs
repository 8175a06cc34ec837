//! The operator subcommands and what each does.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use pincer_protocol::methods::NodeInvokeParams;
use pincer_protocol::text::NonEmpty;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::call::{call, watch, CallOptions};
use super::{render, CliError};
use crate::config;

/// The operator commands (flattened into the binary's subcommands).
#[derive(Subcommand)]
pub enum Command {
    /// Call a gateway method as an operator and print the result.
    Call {
        /// Method name, e.g. health, status, system-presence.
        method: String,
        /// Params as JSON (default {}).
        #[arg(long, default_value = "{}")]
        params: String,
        /// Where and how to connect.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Chat with the gateway's assistant: one --message, or a prompt on stdin.
    Chat {
        /// Session key (`main` is `agent:main:main`).
        #[arg(long, default_value = "main")]
        session: String,
        /// Send this message, print the reply and exit.
        #[arg(long, short)]
        message: Option<String>,
        /// Where and how to connect.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Device pairing: list, approve, reject, revoke, setup codes.
    #[command(subcommand)]
    Devices(DevicesCmd),
    /// Print the gateway's events as JSON lines until it closes the connection.
    Events(ClientArgs),
    /// Nodes: list, describe, approve their command surface, invoke commands.
    #[command(subcommand)]
    Nodes(NodesCmd),
    /// Channel DM pairing: who asked for a code, approve or dismiss them.
    #[command(subcommand)]
    Pairing(PairingCmd),
}

/// `pairing …` (the reference CLI's `openclaw pairing list|approve`).
#[derive(Subcommand)]
pub enum PairingCmd {
    /// Pending pairing requests (codes) of the channels.
    List {
        /// Only this channel (e.g. telegram).
        channel: Option<String>,
        /// Where and how to connect.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve a code: that sender may talk to the assistant from now on.
    Approve {
        /// The channel, e.g. telegram.
        channel: String,
        /// The code the sender was given (or its request id).
        code: String,
        /// Tell the sender on the channel.
        #[arg(long)]
        notify: bool,
        /// Where and how to connect.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Drop a pending request without approving it.
    Dismiss {
        /// The channel.
        channel: String,
        /// The code (or request id).
        code: String,
        /// Where and how to connect.
        #[command(flatten)]
        client: ClientArgs,
    },
}

impl PairingCmd {
    /// The request id of `code` on `channel` (a code is shown to people, the methods take ids).
    fn request_id(client: &ClientArgs, channel: &str, code: &str) -> Result<String, CliError> {
        let v = client.call("channels.pairing.list", json!({ "channel": channel }))?;
        let found = v["requests"].as_array().and_then(|rs| {
            rs.iter().find_map(|r| {
                let id = r["requestId"].as_str()?;
                let matches = id == code
                    || r["metadata"]["code"]
                        .as_str()
                        .is_some_and(|c| c.eq_ignore_ascii_case(code.trim()));
                matches.then(|| id.to_owned())
            })
        });
        found.ok_or_else(|| {
            CliError::Result(format!(
                "no pending {channel} pairing request with code {code:?} (codes expire after an hour; `pincer-gateway pairing list` shows them)"
            ))
        })
    }

    fn run(self) -> Result<(), CliError> {
        match self {
            PairingCmd::List { channel, client } => {
                let mut p = json!({});
                if let Some(c) = &channel {
                    p["channel"] = json!(c);
                }
                let v = client.call("channels.pairing.list", p)?;
                if client.json {
                    print_json(&v, true);
                    return Ok(());
                }
                let rs = v["requests"].as_array().cloned().unwrap_or_default();
                if rs.is_empty() {
                    println!("no pending pairing requests");
                }
                for r in rs {
                    println!(
                        "{}  {:<10} {}  {} (id {}), expires {}",
                        r["metadata"]["code"].as_str().unwrap_or("-"),
                        r["channel"].as_str().unwrap_or("?"),
                        r["senderLabel"].as_str().unwrap_or("?"),
                        r["senderId"].as_str().unwrap_or("?"),
                        r["requestId"].as_str().unwrap_or("?"),
                        r["expiresAt"].as_str().unwrap_or("?"),
                    );
                }
                Ok(())
            }
            PairingCmd::Approve {
                channel,
                code,
                notify,
                client,
            } => {
                let id = Self::request_id(&client, &channel, &code)?;
                let v = client.call(
                    "channels.pairing.approve",
                    json!({ "channel": channel, "accountId": "default", "requestId": id, "notify": notify }),
                )?;
                if client.json {
                    print_json(&v, true);
                } else {
                    println!(
                        "approved {channel} sender {}",
                        v["senderId"].as_str().unwrap_or("?")
                    );
                }
                Ok(())
            }
            PairingCmd::Dismiss {
                channel,
                code,
                client,
            } => {
                let id = Self::request_id(&client, &channel, &code)?;
                let v = client.call(
                    "channels.pairing.dismiss",
                    json!({ "channel": channel, "accountId": "default", "requestId": id }),
                )?;
                print_json(&v, client.json);
                Ok(())
            }
        }
    }
}

/// `nodes …`.
#[derive(Subcommand)]
pub enum NodesCmd {
    /// Connected and paired nodes.
    List(ClientArgs),
    /// One node's details.
    Describe {
        /// Node id, unique id prefix (6+) or display name.
        node: String,
        /// Where and how to connect.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Node command surfaces waiting for approval.
    Pending(ClientArgs),
    /// Approve a node's pending command surface (request id, short code, or node id).
    Approve {
        /// Request id, short code or node.
        id: String,
        /// Where and how to connect.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reject a node's pending command surface.
    Reject {
        /// Request id or short code.
        id: String,
        /// Where and how to connect.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run a command on a node, e.g. `nodes invoke <node> camera.snap --out snap.jpg`.
    Invoke {
        /// Node id, unique id prefix (6+) or display name.
        node: String,
        /// The command, e.g. camera.snap.
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
        /// Where and how to connect.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `devices …`.
#[derive(Subcommand)]
pub enum DevicesCmd {
    /// Pending requests and paired devices.
    List(ClientArgs),
    /// Approve a pending request by its id or short code.
    Approve {
        /// Request id or short code.
        id: String,
        /// Where and how to connect.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reject a pending request.
    Reject {
        /// Request id or short code.
        id: String,
        /// Where and how to connect.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a device's token for one role (closes its sockets), or without --role forget the
    /// device entirely.
    Revoke {
        /// The device.
        device_id: String,
        /// The role whose token is revoked.
        #[arg(long)]
        role: Option<String>,
        /// Where and how to connect.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Forget a paired device (closes its sockets).
    Remove {
        /// The device.
        device_id: String,
        /// Where and how to connect.
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
        /// Where and how to connect.
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Connection options shared by every operator subcommand.
#[derive(Args, Clone)]
pub struct ClientArgs {
    /// Gateway URL.
    #[arg(long, default_value = "ws://127.0.0.1:18789")]
    pub url: String,
    /// Shared token (default: stored device token, then the local gateway's token file).
    #[arg(long)]
    pub token: Option<String>,
    /// Shared password.
    #[arg(long)]
    pub password: Option<String>,
    /// State directory holding this client's identity (and a local gateway's token).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Print the raw payload as JSON.
    #[arg(long)]
    pub json: bool,
    /// Bound on the whole call.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Extra upgrade header `Name: value` (repeatable; for testing proxies).
    #[arg(long = "header", hide = true)]
    pub headers: Vec<String>,
    /// Trust exactly the gateway certificate with this SHA-256 (`wss://`; what the gateway
    /// prints at start and in `status`).
    #[arg(long)]
    pub tls_fingerprint: Option<String>,
}

impl ClientArgs {
    /// The call options these flags (and the environment) give.
    pub fn options(&self) -> Result<CallOptions, CliError> {
        let state_dir = self
            .state_dir
            .clone()
            .or_else(config::default_state_dir)
            .ok_or_else(|| CliError::Usage("no state dir: pass --state-dir".into()))?;
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
            tls_fingerprint: self.tls_fingerprint.clone(),
        })
    }

    fn call(&self, method: &str, params: Value) -> Result<Value, CliError> {
        let opts = self.options()?;
        let rt = runtime()?;
        Ok(rt.block_on(call(&opts, method, params))?)
    }

    fn call_as<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<(Value, T), CliError> {
        let v = self.call(method, params)?;
        let typed = serde_json::from_value(v.clone())
            .map_err(|e| CliError::Result(format!("{method} returned an unexpected shape: {e}")))?;
        Ok((v, typed))
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the runtime: {e}")))
}

fn print_json(v: &Value, raw: bool) {
    if raw {
        println!("{v}");
    } else {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }
}

fn json_arg(text: &str, flag: &str) -> Result<Value, CliError> {
    serde_json::from_str(text).map_err(|e| CliError::Usage(format!("{flag} is not JSON: {e}")))
}

/// Parses `90s`, `10m`, `2h`, `7d` or plain milliseconds.
pub fn parse_duration_ms(s: &str) -> Result<u64, CliError> {
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
        .map_err(|_| CliError::Usage(format!("invalid duration {s:?} (use 90s, 10m, 2h, 7d)")))?;
    Ok(n.saturating_mul(mult))
}

impl Command {
    /// Runs the command, printing its result on stdout.
    pub fn run(self) -> Result<(), CliError> {
        match self {
            Command::Call {
                method,
                params,
                client,
            } => {
                let v = client.call(&method, json_arg(&params, "--params")?)?;
                print_json(&v, client.json);
                Ok(())
            }
            Command::Chat {
                session,
                message,
                client,
            } => {
                let opts = client.options()?;
                runtime()?.block_on(super::chat::run(&opts, &session, message.as_deref()))
            }
            Command::Devices(cmd) => cmd.run(),
            Command::Nodes(cmd) => cmd.run(),
            Command::Pairing(cmd) => cmd.run(),
            Command::Events(c) => events(&c),
        }
    }
}

impl DevicesCmd {
    fn run(self) -> Result<(), CliError> {
        match self {
            DevicesCmd::List(c) => {
                let (v, list) =
                    c.call_as::<render::DevicePairListView>("device.pair.list", json!({}))?;
                if c.json {
                    print_json(&v, true);
                } else {
                    print!("{}", render::device_list(&list, crate::now_ms()));
                }
                Ok(())
            }
            DevicesCmd::Approve { id, client } => {
                let v = client.call("device.pair.approve", json!({ "requestId": id }))?;
                if client.json {
                    print_json(&v, true);
                } else {
                    println!(
                        "approved {} ({})",
                        v["device"]["deviceId"].as_str().unwrap_or("?"),
                        v["requestId"].as_str().unwrap_or("?")
                    );
                }
                Ok(())
            }
            DevicesCmd::Reject { id, client } => {
                let v = client.call("device.pair.reject", json!({ "requestId": id }))?;
                print_json(&v, client.json);
                Ok(())
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
                print_json(&v, client.json);
                Ok(())
            }
            DevicesCmd::Revoke {
                device_id,
                role: None,
                client,
            }
            | DevicesCmd::Remove { device_id, client } => {
                let v = client.call("device.pair.remove", json!({ "deviceId": device_id }))?;
                print_json(&v, client.json);
                Ok(())
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
                let (v, code) =
                    client.call_as::<render::SetupCodeView>("device.pair.setupCode", params)?;
                if client.json {
                    print_json(&v, true);
                } else {
                    print!("{}", render::setup_code(&code, &ttl));
                }
                Ok(())
            }
        }
    }
}

/// Resolves a node argument: a full id, a unique id prefix (6+ characters), or a display name;
/// anything else is passed on as it is (the gateway says whether it knows it).
fn resolve_node(client: &ClientArgs, node: &str) -> Result<String, CliError> {
    let (_, list) = client.call_as::<render::NodeListView>("node.list", json!({}))?;
    let matches: Vec<&str> = list
        .nodes
        .iter()
        .filter(|n| {
            n.node_id == node
                || (node.len() >= 6 && n.node_id.starts_with(node))
                || n.display_name.as_deref() == Some(node)
        })
        .map(|n| n.node_id.as_str())
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).to_owned()),
        [] => Ok(node.to_owned()),
        _ => Err(CliError::Usage(format!(
            "{node:?} matches several nodes: {}",
            matches.join(", ")
        ))),
    }
}

impl NodesCmd {
    fn run(self) -> Result<(), CliError> {
        match self {
            NodesCmd::List(c) => {
                let (v, list) = c.call_as::<render::NodeListView>("node.list", json!({}))?;
                if c.json {
                    print_json(&v, true);
                } else {
                    print!("{}", render::node_list(&list));
                }
                Ok(())
            }
            NodesCmd::Describe { node, client } => {
                let id = resolve_node(&client, &node)?;
                let v = client.call("node.describe", json!({ "nodeId": id }))?;
                print_json(&v, client.json);
                Ok(())
            }
            NodesCmd::Pending(c) => {
                let (v, list) =
                    c.call_as::<render::NodePairListView>("node.pair.list", json!({}))?;
                if c.json {
                    print_json(&v, true);
                } else {
                    print!("{}", render::node_pending(&list));
                }
                Ok(())
            }
            NodesCmd::Approve { id, client } => {
                // Accept a node id too: approve that node's pending request.
                let node_id = resolve_node(&client, &id)?;
                let (_, pending) =
                    client.call_as::<render::NodePairListView>("node.pair.list", json!({}))?;
                let request_id = pending
                    .pending
                    .into_iter()
                    .find(|p| p.node_id == node_id)
                    .map_or(id, |p| p.request_id);
                let v = client.call("node.pair.approve", json!({ "requestId": request_id }))?;
                if client.json {
                    print_json(&v, true);
                } else {
                    println!(
                        "approved {}: {}",
                        v["node"]["nodeId"].as_str().unwrap_or("?"),
                        v["node"]["commands"]
                    );
                }
                Ok(())
            }
            NodesCmd::Reject { id, client } => {
                let v = client.call("node.pair.reject", json!({ "requestId": id }))?;
                print_json(&v, client.json);
                Ok(())
            }
            NodesCmd::Invoke {
                node,
                command,
                params,
                invoke_timeout_ms,
                out,
                client,
            } => invoke(client, &node, &command, params, invoke_timeout_ms, out),
        }
    }
}

fn invoke(
    mut client: ClientArgs,
    node: &str,
    command: &str,
    params: Option<String>,
    invoke_timeout_ms: u64,
    out: Option<PathBuf>,
) -> Result<(), CliError> {
    let id = resolve_node(&client, node)?;
    let params = params
        .map(|text| {
            RawValue::from_string(text)
                .map_err(|e| CliError::Usage(format!("--params is not JSON: {e}")))
        })
        .transpose()?;
    let request = NodeInvokeParams {
        node_id: NonEmpty::from(id.as_str()),
        command: NonEmpty::new(command).ok_or_else(|| CliError::Usage("no command".into()))?,
        params,
        timeout_ms: Some(invoke_timeout_ms),
        idempotency_key: NonEmpty::from(crate::secret::uuid_v4().as_str()),
        session_key: None,
        turn_source_channel: None,
        turn_source_to: None,
        turn_source_account_id: None,
        turn_source_thread_id: None,
    };
    let p = serde_json::to_value(&request)
        .map_err(|e| CliError::Usage(format!("cannot encode node.invoke: {e}")))?;
    client.timeout_ms = client.timeout_ms.max(invoke_timeout_ms + 5_000);
    let v = client.call("node.invoke", p)?;
    let Some(path) = out else {
        print_json(&v["payload"], client.json);
        return Ok(());
    };
    let b64 = v["payload"]["base64"]
        .as_str()
        .ok_or_else(|| CliError::Result("the result has no base64 media to write".into()))?;
    let bytes = pincer_protocol::base64url::decode(b64)
        .map_err(|e| CliError::Result(format!("the result's base64 does not decode: {e}")))?;
    std::fs::write(&path, &bytes).map_err(|source| CliError::Write {
        path: path.clone(),
        source,
    })?;
    eprintln!("wrote {} bytes to {}", bytes.len(), path.display());
    let mut shown = v["payload"].clone();
    shown["base64"] = json!(format!("<{} bytes>", bytes.len()));
    print_json(&shown, client.json);
    Ok(())
}

fn events(c: &ClientArgs) -> Result<(), CliError> {
    let opts = c.options()?;
    let rt = runtime()?;
    let mut print = |e: &pincer_protocol::frames::EventFrame| {
        let line = serde_json::to_string(e).unwrap_or_default();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    let closed = rt.block_on(watch(&opts, &mut print))?;
    eprintln!("connection closed: {} {}", closed.code, closed.reason);
    if closed.code == 1000 {
        Ok(())
    } else {
        Err(CliError::Closed {
            code: closed.code,
            reason: closed.reason,
        })
    }
}
