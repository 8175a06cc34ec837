//! Operator methods over the device trust store: `device.pair.*` and `device.token.*`, with
//! their events and the socket closes they imply.

use pincer_protocol::close;
use pincer_protocol::error::{code, ErrorShape};
use pincer_protocol::methods::{
    DeviceIdResult, DevicePairApproveResult, DevicePairListResult, DevicePairRejectResult,
    SetupCodeParams, SetupCodeResult, TokenRevokeParams, TokenRevokeResult, TokenRotateParams,
    TokenRotateResult,
};
use pincer_protocol::scopes::{self, Role};
use serde_json::json;

use crate::conn::ConnHandle;
use crate::devices::DeviceStoreError;
use crate::hub::Hub;
use crate::now_ms;
use crate::reply::{to_json, Reply};

/// Default and longest lifetime of a setup code.
pub const SETUP_CODE_TTL_MS: u64 = 10 * 60 * 1000;
/// Longest lifetime of a setup code, ms (7 days): a larger `ttlMs` is cut to this.
pub const SETUP_CODE_MAX_TTL_MS: u64 = 7 * 24 * 60 * 60 * 1000;

fn store_err(e: DeviceStoreError) -> ErrorShape {
    match e {
        DeviceStoreError::UnknownRequest
        | DeviceStoreError::UnknownDevice
        | DeviceStoreError::Ambiguous(_) => ErrorShape::invalid(e.to_string()),
        other => ErrorShape::unavailable(other.to_string()),
    }
}

fn resolved(hub: &Hub, request_id: &str, device_id: &str, decision: &str) {
    hub.pairing_event(
        "device.pair.resolved",
        &json!({ "requestId": request_id, "deviceId": device_id, "decision": decision, "ts": now_ms() }),
    );
}

/// `device.pair.list`: pending requests and paired devices, tokens redacted.
pub fn list(hub: &Hub) -> Reply {
    let (pending, paired) = hub.devices.list(now_ms());
    to_json(&DevicePairListResult {
        pending: pending
            .iter()
            .map(|p| serde_json::to_value(p).unwrap_or_default())
            .collect(),
        paired: paired.iter().map(|d| d.redacted()).collect(),
    })
}

/// `device.pair.approve` by request id or short code; the caller must hold every operator
/// scope the request asks for. Announces `device.pair.resolved`.
pub fn approve(hub: &Hub, caller: &ConnHandle, id_or_code: &str) -> Reply {
    // An operator may not hand out scopes it does not hold itself.
    let (pending, _) = hub.devices.list(now_ms());
    if let Some(req) = pending.iter().find(|p| p.request_id == id_or_code) {
        if let Some(missing) = req
            .scopes
            .iter()
            .find(|s| s.starts_with("operator.") && !caller.has_scope(s))
        {
            let c = if caller.protocol >= 4 {
                code::FORBIDDEN
            } else {
                code::INVALID_REQUEST
            };
            return Err(ErrorShape::new(c, format!("missing scope: {missing}")));
        }
    }
    let (req, device) = hub
        .devices
        .approve_request(id_or_code, now_ms())
        .map_err(store_err)?;
    tracing::info!(device_id = %req.device_id, request_id = %req.request_id, role = %req.role, "pairing approved");
    resolved(hub, &req.request_id, &req.device_id, "approved");
    to_json(&DevicePairApproveResult {
        request_id: req.request_id,
        device: device.redacted(),
    })
}

/// `device.pair.reject` by request id or short code; announces `device.pair.resolved`.
pub fn reject(hub: &Hub, id_or_code: &str) -> Reply {
    let req = hub
        .devices
        .reject_request(id_or_code, now_ms())
        .map_err(store_err)?;
    tracing::info!(device_id = %req.device_id, request_id = %req.request_id, "pairing rejected");
    resolved(hub, &req.request_id, &req.device_id, "rejected");
    to_json(&DevicePairRejectResult {
        request_id: req.request_id,
        device_id: req.device_id,
    })
}

/// `device.pair.remove`: forgets the device and closes its sockets with 4001.
pub fn remove(hub: &Hub, device_id: &str) -> Reply {
    let dev = hub.devices.remove(device_id).map_err(store_err)?;
    let closed = hub.close_device(
        &dev.device_id,
        None,
        close::AUTH_CHANGED,
        close::reason::DEVICE_REMOVED,
    );
    tracing::info!(device_id, closed, "device removed");
    to_json(&DeviceIdResult {
        device_id: dev.device_id,
    })
}

/// `device.token.rotate`: a new token for the role (returned once); that role's sockets are
/// closed with 4001.
pub fn rotate(hub: &Hub, p: &TokenRotateParams) -> Reply {
    let now = now_ms();
    let (token, scopes) = hub
        .devices
        .rotate(&p.device_id, &p.role, p.scopes.as_deref(), now)
        .map_err(store_err)?;
    let closed = hub.close_device(
        &p.device_id,
        Role::parse(&p.role),
        close::AUTH_CHANGED,
        close::reason::DEVICE_REMOVED,
    );
    tracing::info!(device_id = %p.device_id, role = %p.role, closed, "device token rotated");
    to_json(&TokenRotateResult {
        device_id: p.device_id.to_string(),
        role: p.role.to_string(),
        token,
        scopes,
        rotated_at_ms: now,
    })
}

/// `device.token.revoke`: the role's token stops working; its sockets are closed with 4001.
pub fn revoke(hub: &Hub, p: &TokenRevokeParams) -> Reply {
    let now = now_ms();
    hub.devices
        .revoke(&p.device_id, &p.role, now)
        .map_err(store_err)?;
    let closed = hub.close_device(
        &p.device_id,
        Role::parse(&p.role),
        close::AUTH_CHANGED,
        close::reason::DEVICE_REMOVED,
    );
    tracing::info!(device_id = %p.device_id, role = %p.role, closed, "device token revoked");
    to_json(&TokenRevokeResult {
        device_id: p.device_id.to_string(),
        role: p.role.to_string(),
        revoked_at_ms: now,
    })
}

/// The URL a device on the network should use to reach this gateway.
fn advertised_url(hub: &Hub) -> String {
    // `tailnet`: the address listened on now (it may have come up after the start).
    let listening = hub.tailscale.report().listening;
    let resolved = match listening {
        Some(ip) => Ok(ip),
        None => hub.config.bind.resolve(),
    };
    let host = match resolved {
        Ok(ip) if !ip.is_unspecified() => ip.to_string(),
        // Bound to every address (`lan`): the one other hosts reach this one at.
        Ok(_) => lan_address().map_or_else(|| "127.0.0.1".into(), |ip| ip.to_string()),
        Err(_) => "127.0.0.1".into(),
    };
    format!("ws://{host}:{}", hub.config.port)
}

/// The source address of this host's default route, found by "connecting" a UDP socket to a
/// documentation address (TEST-NET-1; a UDP connect sends nothing); `None` without a route.
fn lan_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

/// `device.pair.setupCode`: a one-time code for a node (or a read-only operator), with the
/// gateway URL to embed.
pub fn setup_code(hub: &Hub, p: &SetupCodeParams) -> Reply {
    let role = p.role.as_deref().unwrap_or("node");
    if Role::parse(role).is_none() {
        return Err(ErrorShape::invalid(format!("invalid role: {role}")));
    }
    let ttl = p
        .ttl_ms
        .unwrap_or(SETUP_CODE_TTL_MS)
        .clamp(1_000, SETUP_CODE_MAX_TTL_MS);
    // A setup code admits a node (no scopes) or a read-only operator; more needs an operator.
    let scopes: Vec<String> = if role == "operator" {
        vec![scopes::READ.into()]
    } else {
        vec![]
    };
    let (token, short, expires) = hub
        .devices
        .create_bootstrap(role, &scopes, ttl, now_ms())
        .map_err(store_err)?;
    let url = p.url.clone().unwrap_or_else(|| advertised_url(hub));
    let setup = pincer_protocol::base64url::encode(
        json!({ "url": url, "bootstrapToken": token })
            .to_string()
            .as_bytes(),
    );
    tracing::info!(role, expires_at_ms = expires, "setup code issued");
    to_json(&SetupCodeResult {
        setup_code: setup,
        bootstrap_token: token,
        short_code: short,
        role: role.into(),
        expires_at_ms: expires,
        url: Some(url),
    })
}

// ---- node surface approval --------------------------------------------------------------------

/// `node.pair.list`: pending node surfaces and approved ones.
pub fn node_list(hub: &Hub) -> Reply {
    let (pending, approvals) = hub.devices.node_list(now_ms());
    let paired: Vec<serde_json::Value> = approvals
        .iter()
        .map(|a| {
            json!({
                "nodeId": a.node_id, "displayName": a.display_name, "platform": a.platform,
                "commands": a.commands, "approvedAtMs": a.approved_at_ms, "createdAtMs": a.approved_at_ms,
            })
        })
        .collect();
    to_json(&pincer_protocol::methods::NodePairListResult {
        pending: pending.iter().map(crate::nodes::pending_json).collect(),
        paired,
    })
}

/// `node.pair.approve`: needs `operator.admin` for exec commands, `operator.write` for others,
/// `operator.pairing` for none; the live node gets the new surface at once.
pub fn node_approve(hub: &Hub, caller: &ConnHandle, id_or_code: &str) -> Reply {
    let now = now_ms();
    // Approving exec needs admin; anything else write (reference approval-time check).
    let (pending, _) = hub.devices.node_list(now);
    let code = crate::devices::normalize_short(id_or_code).to_ascii_lowercase();
    let target = pending.iter().find(|p| {
        p.request_id == id_or_code
            || (code.len() >= 6
                && p.request_id
                    .replace('-', "")
                    .to_ascii_lowercase()
                    .starts_with(&code))
    });
    if let Some(p) = target {
        let exec = p.commands.iter().any(|c| {
            matches!(
                c.as_str(),
                "system.run" | "system.run.prepare" | "system.which"
            )
        });
        let need = if exec {
            scopes::ADMIN
        } else if p.commands.is_empty() {
            scopes::PAIRING
        } else {
            scopes::WRITE
        };
        if !caller.has_scope(need) {
            return Err(crate::reply::missing_scope(caller, need));
        }
    }
    let (req, approval) = hub
        .devices
        .node_approve(id_or_code, now)
        .map_err(store_err)?;
    if let Some(conn) = hub.nodes.get(&req.node_id) {
        if let Some(n) = conn.node.as_ref() {
            n.apply_approval(&approval.commands);
        }
        // The node learns at once that its surface changed.
        let ev = json!({ "requestId": req.request_id, "nodeId": req.node_id, "decision": "approved", "ts": now });
        let _ = conn.try_send(pincer_protocol::frames::encode_event_raw(
            "node.pair.resolved",
            &ev.to_string(),
            None,
            None,
        ));
    }
    tracing::info!(node_id = %req.node_id, commands = ?approval.commands, "node surface approved");
    hub.pairing_event(
        "node.pair.resolved",
        &json!({ "requestId": req.request_id, "nodeId": req.node_id, "decision": "approved", "ts": now }),
    );
    let node = json!({
        "nodeId": req.node_id, "displayName": req.display_name, "platform": req.platform, "version": req.version,
        "clientId": req.client_id, "clientMode": req.client_mode, "caps": req.caps,
        "commands": approval.commands, "createdAtMs": approval.approved_at_ms, "approvedAtMs": approval.approved_at_ms,
    });
    Ok(json!({ "requestId": req.request_id, "node": node }).to_string())
}

/// `node.pair.reject`; announces `node.pair.resolved`.
pub fn node_reject(hub: &Hub, id_or_code: &str) -> Reply {
    let now = now_ms();
    let req = hub
        .devices
        .node_reject(id_or_code, now)
        .map_err(store_err)?;
    hub.pairing_event(
        "node.pair.resolved",
        &json!({ "requestId": req.request_id, "nodeId": req.node_id, "decision": "rejected", "ts": now }),
    );
    Ok(json!({ "requestId": req.request_id, "nodeId": req.node_id }).to_string())
}
