//! Method dispatch: role and scope checks, then the handler; side-effecting methods with an
//! `idempotencyKey` go through the [`crate::dedupe`] cache so a retry runs once.

use pincer_protocol::connect::PresenceEntry;
use pincer_protocol::decode::{Params, Request};
use pincer_protocol::error::ErrorShape;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use pincer_protocol::methods::{
    ConfigGetResult, StatusSummary, SystemEventParams, SystemEventResult,
};
use pincer_protocol::methods::{NodeListNode, NodeListResult};
use pincer_protocol::scopes::{self, Denied};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::AuthMode;
use crate::conn::ConnHandle;
use crate::hub::Hub;
use crate::reply::to_json;
pub use crate::reply::{missing_scope, Reply};
use crate::{now_ms, IMPLEMENTATION, VERSION};

/// Methods the gateway implements itself; the agent's are `pincer_agent::methods::METHODS`, and
/// [`all_methods`] (advertised in `hello-ok.features.methods`) is both.
pub const METHODS: &[&str] = &[
    "health",
    "status",
    "system-presence",
    "last-heartbeat",
    "config.get",
    "channels.status",
    "system-event",
    "device.pair.list",
    "device.pair.approve",
    "device.pair.reject",
    "device.pair.remove",
    "device.pair.setupCode",
    "device.token.rotate",
    "device.token.revoke",
    "node.list",
    "node.describe",
    "node.invoke",
    "node.invoke.result",
    "node.event",
    "node.pair.list",
    "node.pair.approve",
    "node.pair.reject",
    "node.runnerInventory.update",
    "node.skills.update",
    "node.pluginTools.update",
    "skills.bins",
];

/// Every method served: the gateway's own, then the agent's (`pincer_agent::methods::METHODS`).
pub fn all_methods() -> impl Iterator<Item = &'static str> {
    METHODS
        .iter()
        .chain(pincer_agent::methods::METHODS)
        .chain(pincer_agent::control_ui::METHODS)
        .chain(crate::control_ui::METHODS)
        .chain(crate::host_info::METHODS)
        .chain(crate::channel_methods::METHODS)
        .copied()
}

/// Every event emitted: the gateway's own, then the agent's.
pub fn all_events() -> impl Iterator<Item = &'static str> {
    EVENTS.iter().chain(pincer_agent::methods::EVENTS).copied()
}

/// Methods served but, as in the reference, not listed in `hello-ok.features.methods`.
pub const UNADVERTISED: &[&str] = &["chat.inject", "sessions.resolve", "cron.get"];

/// Events the gateway emits itself; [`all_events`] (advertised in `hello-ok.features.events`)
/// adds the agent's.
pub const EVENTS: &[&str] = &[
    "connect.challenge",
    "tick",
    "presence",
    "health",
    "shutdown",
    "device.pair.requested",
    "device.pair.resolved",
    "node.pair.requested",
    "node.pair.resolved",
    "node.invoke.request",
    "node.invoke.cancel",
];

/// Why a request was refused before reaching a handler (used to count role violations).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not refused for its role (it may still have failed).
    None,
    /// `unauthorized role:` — the method belongs to the other role; counted toward a 1008 close.
    Role,
}

/// A reply now, or one that arrives later (a node invoke) and is sent when ready.
pub enum Dispatch {
    /// The reply, ready.
    Now(Reply),
    /// A reply still being produced (a node invoke); sent when it resolves.
    Later(Pending),
    /// Two replies on one request id (`agent`: `accepted`, then the final): the first (if any)
    /// when the future resolves, then the second when it does.
    Twice(Pin<Box<dyn Future<Output = Replies> + Send>>),
}

/// A reply still being produced.
pub type Pending = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// The first of two replies (if any) and the one still to come.
pub type Replies = (Option<Reply>, Option<Pending>);

impl From<Reply> for Dispatch {
    fn from(r: Reply) -> Self {
        Dispatch::Now(r)
    }
}

/// Handles one request of an authenticated connection.
pub fn dispatch(hub: &Arc<Hub>, conn: &Arc<ConnHandle>, req: Request) -> (Dispatch, Refusal) {
    if req.method == "connect" {
        let e = ErrorShape::invalid("connect is only valid as the first request");
        return (Err(e).into(), Refusal::None);
    }
    if !all_methods().any(|m| m == req.method) {
        let e = ErrorShape::invalid(format!("unknown method: {}", req.method));
        return (Err(e).into(), Refusal::None);
    }
    match scopes::authorize(conn.role, &conn.scopes, &req.method) {
        Ok(()) => {}
        Err(Denied::Role(r)) => {
            let e = ErrorShape::invalid(format!("unauthorized role: {}", r.as_str()));
            return (Err(e).into(), Refusal::Role);
        }
        Err(Denied::Scope(s)) => return (Err(missing_scope(conn, s)).into(), Refusal::None),
    }
    if crate::control_ui::METHODS.contains(&req.method.as_str()) {
        let raw = match &req.params {
            Params::Unknown(r) | Params::Agent(r) => r.as_ref().map(|r| r.get().to_owned()),
            _ => None,
        };
        let reply = crate::control_ui::answer(conn, &req.method, raw.as_deref());
        return (Dispatch::Now(reply), Refusal::None);
    }
    if crate::channel_methods::METHODS.contains(&req.method.as_str()) {
        let raw = match &req.params {
            Params::Unknown(r) | Params::Agent(r) => r.as_ref().map(|r| r.get().to_owned()),
            _ => None,
        };
        let d = crate::channel_methods::dispatch(hub, &req.method, raw.as_deref());
        return (d, Refusal::None);
    }
    if crate::host_info::METHODS.contains(&req.method.as_str()) {
        let reply = crate::host_info::answer(hub, &req.method);
        return (Dispatch::Now(reply), Refusal::None);
    }
    if crate::agent_methods::handles(&req.method) {
        if let Params::Agent(raw) | Params::Unknown(raw) = req.params {
            let d = crate::agent_methods::dispatch(hub, conn, &req.method, raw);
            return (d, Refusal::None);
        }
    }
    (run(hub, conn, &req.method, req.params), Refusal::None)
}

fn run(hub: &Arc<Hub>, conn: &Arc<ConnHandle>, method: &str, params: Params) -> Dispatch {
    let reply = match params {
        Params::Health(p) => Ok(hub.health_json(p.probe.unwrap_or(false)).to_string()),
        Params::Status(_) => status(hub, conn),
        Params::SystemPresence(_) => to_json(&hub.presence()),
        Params::LastHeartbeat(_) => Ok("null".into()),
        Params::ConfigGet(_) => config_get(hub),
        Params::ChannelsStatus(p) => {
            let hub = hub.clone();
            let probe = p.probe.unwrap_or(false);
            return Dispatch::Later(Box::pin(async move {
                crate::channel_methods::status(&hub, probe).await
            }));
        }
        Params::SystemEvent(p) => {
            idempotent(hub, "system-event", p.idempotency_key.as_deref(), || {
                system_event(hub, &p)
            })
        }
        Params::DevicePairList(_) => crate::pairing::list(hub),
        Params::DevicePairApprove(p) => crate::pairing::approve(hub, conn, &p.request_id),
        Params::DevicePairReject(p) => crate::pairing::reject(hub, &p.request_id),
        Params::DevicePairRemove(p) => crate::pairing::remove(hub, &p.device_id),
        Params::DevicePairSetupCode(p) => crate::pairing::setup_code(hub, &p),
        Params::DeviceTokenRotate(p) => crate::pairing::rotate(hub, &p),
        Params::DeviceTokenRevoke(p) => crate::pairing::revoke(hub, &p),
        Params::NodeList(_) => to_json(&NodeListResult {
            ts: now_ms(),
            nodes: node_catalog(hub),
        }),
        Params::NodeDescribe(p) => match node_catalog(hub)
            .into_iter()
            .find(|n| n.node_id == p.node_id.as_str())
        {
            Some(n) => {
                let mut v = serde_json::to_value(&n).unwrap_or_default();
                v["ts"] = json!(now_ms());
                Ok(v.to_string())
            }
            None => Err(ErrorShape::invalid("unknown nodeId")),
        },
        Params::NodeInvoke(p) => {
            let hub = hub.clone();
            return Dispatch::Later(Box::pin(async move {
                let r = hub
                    .nodes
                    .invoke(
                        &p.node_id,
                        &p.command,
                        p.params.as_deref(),
                        p.timeout_ms,
                        &p.idempotency_key,
                    )
                    .await?;
                to_json(&r)
            }));
        }
        Params::NodeInvokeResult(p) => hub.nodes.complete(conn, *p).map(|v| v.to_string()),
        Params::NodeEvent(p) => {
            tracing::debug!(conn = %conn.conn_id, event = %p.event, "node event");
            Ok(json!({ "ok": true, "event": p.event.as_str(), "handled": false }).to_string())
        }
        Params::NodePairList(_) => crate::pairing::node_list(hub),
        Params::NodePairApprove(p) => crate::pairing::node_approve(hub, conn, &p.request_id),
        Params::NodePairReject(p) => crate::pairing::node_reject(hub, &p.request_id),
        Params::NodeInventory(_) => {
            let node_id = conn
                .node
                .as_ref()
                .map(|n| n.node_id.clone())
                .unwrap_or_default();
            Ok(match method {
                "node.skills.update" => json!({ "nodeId": node_id, "skills": [] }),
                "node.pluginTools.update" => json!({ "nodeId": node_id, "tools": [] }),
                "skills.bins" => json!({ "bins": [] }),
                _ => json!({ "nodeId": node_id }),
            }
            .to_string())
        }
        Params::Connect(_) | Params::Agent(_) | Params::Unknown(_) => {
            Err(ErrorShape::unavailable("method not routed"))
        }
    };
    Dispatch::Now(reply)
}

/// Every node the gateway knows: live sessions, then devices paired as nodes that are offline.
/// Connected first, then by name, then id.
pub fn node_catalog(hub: &Hub) -> Vec<NodeListNode> {
    let (_, approvals) = hub.devices.node_list(now_ms());
    let approval = |id: &str| approvals.iter().find(|a| a.node_id == id);
    let mut out: Vec<NodeListNode> = hub
        .nodes
        .all()
        .iter()
        .filter_map(|c| c.node.as_ref())
        .map(|n| {
            let a = approval(&n.node_id);
            n.list_entry(
                a.map(|a| a.approved_at_ms),
                a.map(|a| a.commands.as_slice()).unwrap_or(&[]),
            )
        })
        .collect();
    for d in hub.devices.paired_nodes() {
        if out.iter().any(|n| n.node_id == d.device_id) {
            continue;
        }
        let a = approval(&d.device_id);
        out.push(NodeListNode {
            node_id: d.device_id.clone(),
            display_name: d.display_name.clone(),
            platform: d.platform.clone(),
            client_id: d.client_id.clone(),
            client_mode: d.client_mode.clone(),
            device_family: d.device_family.clone(),
            commands: a.map(|a| a.commands.clone()).unwrap_or_default(),
            paired: true,
            connected: false,
            approved_at_ms: a.map(|a| a.approved_at_ms).or(Some(d.approved_at_ms)),
            ..Default::default()
        });
    }
    out.sort_by(|a, b| {
        b.connected
            .cmp(&a.connected)
            .then_with(|| a.display_name.cmp(&b.display_name))
            .then_with(|| a.node_id.cmp(&b.node_id))
    });
    out
}

/// Runs `f` once per (`method`, `key`); retries get the first outcome.
fn idempotent(hub: &Hub, method: &str, key: Option<&str>, f: impl FnOnce() -> Reply) -> Reply {
    let Some(key) = key else { return f() };
    let k = crate::dedupe::Dedupe::key(method, key);
    let mut d = hub.dedupe.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(o) = d.get(&k) {
        return o;
    }
    // Holding the lock while running makes concurrent retries wait for the first outcome.
    let out = f();
    d.put(k, out.clone());
    out
}

fn system_event(hub: &Hub, p: &SystemEventParams) -> Reply {
    let queued = hub.queue_system_event(p.text.to_string());
    if let Some(key) = p.instance_id.clone().or_else(|| p.device_id.clone()) {
        let entry = PresenceEntry {
            host: p.host.clone(),
            ip: p.ip.clone(),
            version: p.version.clone(),
            platform: p.platform.clone(),
            device_family: p.device_family.clone(),
            model_identifier: p.model_identifier.clone(),
            mode: p.mode.clone(),
            last_input_seconds: p.last_input_seconds,
            reason: p.reason.clone(),
            tags: p.tags.clone(),
            text: Some(p.text.to_string()),
            ts: now_ms(),
            device_id: p.device_id.clone(),
            roles: p.roles.clone(),
            scopes: p.scopes.clone(),
            instance_id: p.instance_id.clone(),
            ..Default::default()
        };
        hub.presence_upsert(key, entry, false);
    }
    to_json(&SystemEventResult { ok: true, queued })
}

fn status(hub: &Hub, conn: &ConnHandle) -> Reply {
    let admin = conn.has_scope(scopes::ADMIN);
    let mut gateway = json!({
        "implementation": IMPLEMENTATION,
        "version": VERSION,
        "uptimeMs": hub.uptime_ms(),
        "connections": hub.connection_count(),
        "nodes": hub.node_count(),
        "pairedDevices": hub.devices.len(),
        "authMode": hub.config.auth.name(),
        // What a client pins for `wss://` (`--tls-fingerprint`, `gateway.remote.tlsFingerprint`).
        "tls": match hub.tls.get() {
            Some(t) => json!({ "enabled": true, "fingerprintSha256": t.fingerprint() }),
            None => json!({ "enabled": false }),
        },
    });
    // The tailnet: with `bind = "tailnet"` the address listened on (or why none), the
    // daemon's state and login, the Serve route.
    let bind_tailnet = matches!(hub.config.bind, crate::config::Bind::Tailnet);
    if bind_tailnet || hub.config.tailscale.serve {
        gateway["tailnet"] = hub.tailscale.status_json(bind_tailnet, hub.config.port);
    }
    if let Some(p) = hub.devices.recovered_from() {
        gateway["trustStoreRecoveredFrom"] = json!(p.display().to_string());
    }
    if admin {
        gateway["stateDir"] = json!(hub.config.state_dir.display().to_string());
        gateway["rssBytes"] = json!(rss_bytes());
    }
    to_json(&StatusSummary {
        runtime_version: format!("{IMPLEMENTATION} {VERSION}"),
        heartbeat: json!({ "defaultAgentId": "main", "agents": [] }),
        channel_summary: vec![],
        queued_system_events: hub.system_events(),
        tasks: json!({
            "total": 0, "active": 0, "terminal": 0, "failures": 0,
            "byStatus": { "queued": 0, "running": 0, "succeeded": 0, "failed": 0, "timed_out": 0, "cancelled": 0, "lost": 0 },
            "byRuntime": {}
        }),
        task_audit: json!({ "total": 0, "warnings": 0, "errors": 0, "byCode": {} }),
        sessions: json!({
            "paths": [], "count": 0, "defaults": { "model": null, "contextTokens": null }, "recent": [], "byAgent": []
        }),
        gateway: Some(gateway),
    })
}

/// Resident set size of this process, from `/proc/self/status`.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

const REDACTED: &str = "__OPENCLAW_REDACTED__";

fn config_get(hub: &Hub) -> Reply {
    let c = &hub.config;
    let auth = match &c.auth {
        AuthMode::Token(_) => json!({ "mode": "token", "token": REDACTED }),
        AuthMode::Password(_) => json!({ "mode": "password", "password": REDACTED }),
        AuthMode::None => json!({ "mode": "none" }),
    };
    let bind = match &c.bind {
        crate::config::Bind::Loopback => "loopback".to_owned(),
        crate::config::Bind::Lan => "lan".to_owned(),
        crate::config::Bind::Tailnet => "tailnet".to_owned(),
        crate::config::Bind::Ip(ip) => ip.to_string(),
    };
    let config = json!({
        "gateway": {
            "mode": "local",
            "bind": bind,
            "port": c.port,
            "auth": auth,
            "limits": {
                "handshakeTimeoutMs": c.limits.handshake_timeout_ms,
                "tickIntervalMs": c.limits.tick_interval_ms,
                "maxPayload": c.limits.max_payload,
            },
        }
    });
    let text = config.to_string();
    let hash: String = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = c
        .config_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    to_json(&ConfigGetResult {
        exists: c.config_path.is_some(),
        path,
        valid: true,
        hash,
        config,
        issues: vec![],
    })
}
