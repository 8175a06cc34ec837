//! Method dispatch: role and scope checks, then the handler; side-effecting methods with an
//! `idempotencyKey` go through the [`crate::dedupe`] cache so a retry runs once.

use pincer_protocol::connect::PresenceEntry;
use pincer_protocol::decode::{Params, Request};
use pincer_protocol::error::{code, ErrorShape};
use pincer_protocol::methods::{
    ChannelsStatusResult, ConfigGetResult, StatusSummary, SystemEventParams, SystemEventResult,
};
use pincer_protocol::scopes::{self, Denied};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::AuthMode;
use crate::hub::{ConnHandle, Hub};
use crate::{now_ms, IMPLEMENTATION, VERSION};

/// Methods this gateway implements (advertised in `hello-ok.features.methods`).
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
];

/// Events this gateway emits (advertised in `hello-ok.features.events`).
pub const EVENTS: &[&str] = &[
    "connect.challenge",
    "tick",
    "presence",
    "health",
    "shutdown",
    "device.pair.requested",
    "device.pair.resolved",
];

/// A method's outcome: payload JSON text, or an error.
pub type Reply = Result<String, ErrorShape>;

/// Why a request was refused before reaching a handler (used to count role violations).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    None,
    Role,
}

/// Handles one request of an authenticated connection.
pub fn dispatch(hub: &Hub, conn: &ConnHandle, req: Request) -> (Reply, Refusal) {
    if req.method == "connect" {
        return (
            Err(ErrorShape::invalid(
                "connect is only valid as the first request",
            )),
            Refusal::None,
        );
    }
    if !METHODS.contains(&req.method.as_str()) {
        return (
            Err(ErrorShape::invalid(format!(
                "unknown method: {}",
                req.method
            ))),
            Refusal::None,
        );
    }
    match scopes::authorize(conn.role, &conn.scopes, &req.method) {
        Ok(()) => {}
        Err(Denied::Role(r)) => {
            return (
                Err(ErrorShape::invalid(format!(
                    "unauthorized role: {}",
                    r.as_str()
                ))),
                Refusal::Role,
            )
        }
        Err(Denied::Scope(s)) => {
            // OpenClaw 2026.9 (protocol 4) answers FORBIDDEN; protocol 3 gateways INVALID_REQUEST.
            let c = if conn.protocol >= 4 {
                code::FORBIDDEN
            } else {
                code::INVALID_REQUEST
            };
            return (
                Err(ErrorShape::new(c, format!("missing scope: {s}"))),
                Refusal::None,
            );
        }
    }
    (run(hub, conn, req.params), Refusal::None)
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Reply {
    serde_json::to_string(v)
        .map_err(|e| ErrorShape::unavailable(format!("failed to encode result: {e}")))
}

fn run(hub: &Hub, conn: &ConnHandle, params: Params) -> Reply {
    match params {
        Params::Health(p) => Ok(hub.health_json(p.probe.unwrap_or(false)).to_string()),
        Params::Status(_) => status(hub, conn),
        Params::SystemPresence(_) => to_json(&hub.presence()),
        Params::LastHeartbeat(_) => Ok("null".into()),
        Params::ConfigGet(_) => config_get(hub),
        Params::ChannelsStatus(_) => to_json(&ChannelsStatusResult {
            ts: now_ms(),
            channel_order: vec![],
            channel_labels: Default::default(),
            channels: Default::default(),
            channel_accounts: Default::default(),
            channel_default_account_id: Default::default(),
        }),
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
        Params::Connect(_) | Params::Unknown(_) => {
            Err(ErrorShape::unavailable("method not routed"))
        }
    }
}

/// Runs `f` once per (`method`, `key`); retries get the first outcome.
fn idempotent(hub: &Hub, method: &str, key: Option<&str>, f: impl FnOnce() -> Reply) -> Reply {
    let Some(key) = key else { return f() };
    let k = format!("{method}:{key}");
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
    });
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
