//! Node routing: the registry of connected nodes (keyed by device id), the command policy
//! (platform defaults, config allow/deny, operator approval of dangerous commands), and the
//! invoke round trip operator → gateway → node → gateway → operator.
//!
//! An invoke is a pending entry keyed by a gateway-generated id. It resolves when the node
//! answers with `node.invoke.result`, when its timer fires, or at once when the node's socket
//! goes away ("node disconnected").

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pincer_protocol::error::ErrorShape;
use pincer_protocol::frames::encode_event_raw;
use pincer_protocol::methods::{NodeInvokeResult, NodeInvokeResultParams, NodeListNode};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::conn::ConnHandle;
use crate::devices::NodePending;
use pincer_protocol::connect::ConnectParams;
use pincer_protocol::scopes;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Default invoke timeout.
pub const DEFAULT_INVOKE_TIMEOUT_MS: u64 = 30_000;
/// Longest invoke timeout accepted.
pub const MAX_INVOKE_TIMEOUT_MS: u64 = 10 * 60 * 1000;

/// Commands every Linux node may run once declared (reference linux defaults + Pincer's HAL).
const LINUX_DEFAULTS: &[&str] = &[
    "system.run.prepare",
    "system.run",
    "system.which",
    "system.notify",
    "browser.proxy",
    "camera.list",
    "camera.snap",
    "camera.clip",
    "location.get",
    "screen.snapshot",
    "screen.record",
    "audio.list",
    "audio.record",
    "audio.play",
    "device.info",
    "device.status",
];

/// Commands for nodes of other platforms (reference defaults, exec excluded).
const OTHER_DEFAULTS: &[&str] = &[
    "canvas.present",
    "canvas.hide",
    "canvas.navigate",
    "canvas.eval",
    "canvas.snapshot",
    "canvas.a2ui.push",
    "canvas.a2ui.pushJSONL",
    "canvas.a2ui.reset",
    "camera.list",
    "location.get",
    "system.notify",
    "device.info",
    "device.status",
];

/// Commands that record, capture or execute: they work only after an operator approved the
/// node's surface once (`node.pair.approve`).
pub const DANGEROUS: &[&str] = &[
    "camera.snap",
    "camera.clip",
    "screen.record",
    "screen.snapshot",
    "audio.record",
    "system.run",
    "system.run.prepare",
    "contacts.add",
    "calendar.add",
    "reminders.add",
    "sms.send",
    "sms.search",
];

/// Never routed through `node.invoke`.
const REFUSED: &[&str] = &["system.execApprovals.get", "system.execApprovals.set"];

pub fn is_dangerous(cmd: &str) -> bool {
    DANGEROUS.contains(&cmd)
}

/// The gateway's allowlist for a node of `platform`.
pub fn allowlist(platform: &str, allow: &[String], deny: &[String]) -> Vec<String> {
    let p = platform.trim().to_ascii_lowercase();
    let base = if p.starts_with("linux") {
        LINUX_DEFAULTS
    } else {
        OTHER_DEFAULTS
    };
    let mut out: Vec<String> = base
        .iter()
        .map(|s| s.to_string())
        .chain(allow.iter().cloned())
        .collect();
    out.retain(|c| !deny.contains(c));
    out.sort();
    out.dedup();
    out
}

/// What a connected node declared and may run.
#[derive(Debug)]
pub struct NodeSession {
    pub node_id: String,
    pub display_name: Option<String>,
    pub platform: String,
    pub version: String,
    pub client_id: String,
    pub client_mode: String,
    pub device_family: Option<String>,
    pub model_identifier: Option<String>,
    pub path_env: Option<String>,
    pub remote_ip: String,
    pub caps: Vec<String>,
    pub permissions: Option<BTreeMap<String, bool>>,
    pub connected_at_ms: u64,
    /// Declared ∩ allowlist.
    pub declared: Vec<String>,
    /// What `node.invoke` may call now: declared minus unapproved dangerous commands.
    pub effective: Mutex<Vec<String>>,
}

impl NodeSession {
    /// Recomputes the effective commands after an approval.
    pub fn apply_approval(&self, approved: &[String]) {
        let eff: Vec<String> = self
            .declared
            .iter()
            .filter(|c| !is_dangerous(c) || approved.contains(c))
            .cloned()
            .collect();
        *lock(&self.effective) = eff;
    }

    /// Declared dangerous commands not covered by `approved`.
    pub fn unapproved(&self, approved: &[String]) -> Vec<String> {
        self.declared
            .iter()
            .filter(|c| is_dangerous(c) && !approved.contains(c))
            .cloned()
            .collect()
    }

    pub fn list_entry(&self, approved_at_ms: Option<u64>, approved: &[String]) -> NodeListNode {
        let mut caps = self.caps.clone();
        caps.sort();
        let mut commands = lock(&self.effective).clone();
        commands.sort();
        NodeListNode {
            node_id: self.node_id.clone(),
            display_name: self.display_name.clone(),
            platform: Some(self.platform.clone()),
            version: Some(self.version.clone()),
            client_id: Some(self.client_id.clone()),
            client_mode: Some(self.client_mode.clone()),
            remote_ip: Some(self.remote_ip.clone()),
            device_family: self.device_family.clone(),
            model_identifier: self.model_identifier.clone(),
            path_env: self.path_env.clone(),
            caps,
            commands,
            permissions: self.permissions.clone(),
            paired: true,
            connected: true,
            connected_at_ms: Some(self.connected_at_ms),
            approved_at_ms,
            pending_commands: self.unapproved(approved),
        }
    }
}

/// Builds the session of a node that just passed the handshake: declared ∩ allowlist, minus
/// dangerous commands no operator approved yet. Unapproved ones become a pending surface request
/// (`node.pair.requested`), logged with the command that approves it.
pub fn admit(
    hub: &crate::hub::Hub,
    p: &ConnectParams,
    node_id: &str,
    remote_ip: &str,
    now_ms: u64,
) -> NodeSession {
    let allow = allowlist(
        &p.client.platform,
        &hub.config.node_allow,
        &hub.config.node_deny,
    );
    let mut declared: Vec<String> = Vec::new();
    for c in p.commands.as_deref().unwrap_or(&[]) {
        let c = c.trim();
        if allow.iter().any(|a| a == c) && !declared.iter().any(|d| d == c) {
            declared.push(c.to_owned());
        }
    }
    let session = NodeSession {
        node_id: node_id.to_owned(),
        display_name: p.client.display_name.as_ref().map(|s| s.to_string()),
        platform: p.client.platform.to_string(),
        version: p.client.version.to_string(),
        client_id: p.client.id.as_str().into(),
        client_mode: p.client.mode.as_str().into(),
        device_family: p.client.device_family.as_ref().map(|s| s.to_string()),
        model_identifier: p.client.model_identifier.as_ref().map(|s| s.to_string()),
        path_env: p.path_env.clone(),
        remote_ip: remote_ip.to_owned(),
        caps: p.caps.clone().unwrap_or_default(),
        permissions: p.permissions.clone(),
        connected_at_ms: now_ms,
        declared,
        effective: Mutex::new(vec![]),
    };
    let approved = hub
        .devices
        .node_approval(node_id)
        .map(|a| a.commands)
        .unwrap_or_default();
    session.apply_approval(&approved);
    let waiting = session.unapproved(&approved);
    if !waiting.is_empty() {
        let req = NodePending {
            request_id: crate::secret::uuid_v4(),
            node_id: node_id.to_owned(),
            display_name: session.display_name.clone(),
            platform: Some(session.platform.clone()),
            version: Some(session.version.clone()),
            device_family: session.device_family.clone(),
            client_id: Some(session.client_id.clone()),
            client_mode: Some(session.client_mode.clone()),
            caps: session.caps.clone(),
            commands: session.declared.clone(),
            remote_ip: Some(remote_ip.to_owned()),
            silent: false,
            ts: now_ms,
        };
        match hub.devices.node_request(req, now_ms) {
            Ok((req, created)) => {
                if created {
                    hub.pairing_event("node.pair.requested", &pending_json(&req));
                }
                tracing::warn!(
                    %node_id, request_id = %req.request_id, waiting = ?waiting,
                    "node commands await approval: `pincer-gateway nodes approve {}` (or `openclaw nodes approve {}`)",
                    crate::devices::short_code(&req.request_id), req.request_id
                );
            }
            Err(e) => tracing::error!(error = %e, "could not record node surface request"),
        }
    }
    session
}

/// A pending surface request as `node.pair.list` shows it.
pub fn pending_json(p: &NodePending) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or_default();
    let admin = p.commands.iter().any(|c| {
        matches!(
            c.as_str(),
            "system.run" | "system.run.prepare" | "system.which"
        )
    });
    v["requiredApproveScopes"] = if admin {
        json!([scopes::PAIRING, scopes::ADMIN])
    } else {
        json!([scopes::PAIRING, scopes::WRITE])
    };
    v
}

struct PendingInvoke {
    node_id: String,
    conn: u64,
    command: String,
    reply: oneshot::Sender<Result<NodeInvokeResult, ErrorShape>>,
}

/// Connected nodes and invokes in flight.
#[derive(Default)]
pub struct NodeRegistry {
    sessions: Mutex<HashMap<String, Arc<ConnHandle>>>,
    invokes: Mutex<HashMap<String, PendingInvoke>>,
}

impl NodeRegistry {
    /// Registers `conn` as the live session of its node; an older session of the same node is
    /// closed (the new one is kept).
    pub fn attach(&self, conn: &Arc<ConnHandle>) {
        let Some(node) = conn.node.as_ref() else {
            return;
        };
        let old = lock(&self.sessions).insert(node.node_id.clone(), conn.clone());
        if let Some(old) = old.filter(|o| o.id != conn.id) {
            tracing::info!(node_id = %node.node_id, "node reconnected; closing its previous socket");
            old.kill(
                pincer_protocol::close::NORMAL,
                "replaced by a newer connection",
            );
        }
    }

    /// Forgets `conn` (only if it is still the live session) and fails its invokes at once.
    pub fn detach(&self, conn: &ConnHandle) {
        let Some(node) = conn.node.as_ref() else {
            return;
        };
        {
            let mut s = lock(&self.sessions);
            if s.get(&node.node_id).is_some_and(|c| c.id == conn.id) {
                s.remove(&node.node_id);
            }
        }
        let failed: Vec<PendingInvoke> = {
            let mut inv = lock(&self.invokes);
            let ids: Vec<String> = inv
                .iter()
                .filter(|(_, p)| p.conn == conn.id)
                .map(|(k, _)| k.clone())
                .collect();
            ids.into_iter().filter_map(|k| inv.remove(&k)).collect()
        };
        for p in failed {
            let e = ErrorShape::unavailable(format!("node disconnected ({})", p.command))
                .with_details(json!({ "code": "NODE_DISCONNECTED", "nodeId": p.node_id }));
            let _ = p.reply.send(Err(e));
        }
    }

    pub fn get(&self, node_id: &str) -> Option<Arc<ConnHandle>> {
        lock(&self.sessions).get(node_id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<ConnHandle>> {
        lock(&self.sessions).values().cloned().collect()
    }

    pub fn count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Sends `command` to the node and waits for its result, the timeout, or its disconnect.
    pub async fn invoke(
        &self,
        node_id: &str,
        command: &str,
        params: Option<&serde_json::value::RawValue>,
        timeout_ms: Option<u64>,
        idempotency_key: &str,
    ) -> Result<NodeInvokeResult, ErrorShape> {
        if REFUSED.contains(&command) {
            return Err(ErrorShape::invalid(format!(
                "{command} is not available via node.invoke"
            )));
        }
        let Some(conn) = self.get(node_id) else {
            return Err(ErrorShape::unavailable("node not connected")
                .with_details(json!({ "code": "NOT_CONNECTED" })));
        };
        let Some(node) = conn.node.as_ref() else {
            return Err(ErrorShape::unavailable("node not connected")
                .with_details(json!({ "code": "NOT_CONNECTED" })));
        };
        if !node.declared.iter().any(|c| c == command) {
            let reason = if node.declared.is_empty() {
                "node did not declare commands"
            } else {
                "command not declared by node"
            };
            return Err(
                ErrorShape::invalid(format!("node command not allowed: {command}"))
                    .with_details(json!({ "reason": reason, "command": command })),
            );
        }
        if !lock(&node.effective).iter().any(|c| c == command) {
            return Err(ErrorShape::invalid(format!(
                "node command not allowed: {command} (awaiting operator approval: pincer-gateway nodes approve {node_id})"
            ))
            .with_details(json!({ "reason": "command awaiting approval", "command": command })));
        }
        let id = crate::secret::uuid_v4();
        let timeout = timeout_ms
            .unwrap_or(DEFAULT_INVOKE_TIMEOUT_MS)
            .min(MAX_INVOKE_TIMEOUT_MS);
        let mut payload = json!({
            "id": id,
            "nodeId": node_id,
            "command": command,
            "paramsJSON": params.map(|p| p.get()),
            "idempotencyKey": idempotency_key,
        });
        if let Some(t) = timeout_ms {
            payload["timeoutMs"] = json!(t);
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.invokes).insert(
            id.clone(),
            PendingInvoke {
                node_id: node_id.into(),
                conn: conn.id,
                command: command.into(),
                reply: tx,
            },
        );
        let frame = encode_event_raw("node.invoke.request", &payload.to_string(), None, None);
        // The node's link closes its outbox before it is detached, so an invoke that races a
        // disconnect is refused here instead of waiting for its timeout.
        match conn.outbox.push(frame) {
            Ok(()) => {}
            Err(pincer_os::outbox::Full::Closed) => {
                lock(&self.invokes).remove(&id);
                return Err(
                    ErrorShape::unavailable(format!("node disconnected ({command})"))
                        .with_details(json!({ "code": "NODE_DISCONNECTED", "nodeId": node_id })),
                );
            }
            Err(_) => {
                lock(&self.invokes).remove(&id);
                return Err(ErrorShape::unavailable(
                    "node is not keeping up (outbound queue full)",
                )
                .retry_after(1000));
            }
        }
        match tokio::time::timeout(Duration::from_millis(timeout), rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ErrorShape::unavailable(format!(
                "node disconnected ({command})"
            ))),
            Err(_) => {
                lock(&self.invokes).remove(&id);
                // Tell the node to stop working on it.
                let cancel = json!({ "invokeId": id, "nodeId": node_id });
                let _ = conn.try_send(encode_event_raw(
                    "node.invoke.cancel",
                    &cancel.to_string(),
                    None,
                    None,
                ));
                Err(ErrorShape::unavailable("TIMEOUT: node invoke timed out").with_details(json!({
                    "nodeError": { "code": "TIMEOUT", "message": format!("no result within {timeout} ms") }
                })))
            }
        }
    }

    /// A node's `node.invoke.result`. Returns the reply payload for the node.
    pub fn complete(
        &self,
        caller: &ConnHandle,
        p: NodeInvokeResultParams,
    ) -> Result<Value, ErrorShape> {
        let Some(node) = caller.node.as_ref() else {
            return Err(ErrorShape::invalid("unauthorized role: operator"));
        };
        if p.node_id.as_str() != node.node_id {
            return Err(ErrorShape::invalid("nodeId mismatch"));
        }
        let pending = {
            let mut inv = lock(&self.invokes);
            match inv.get(p.id.as_str()) {
                Some(e) if e.node_id == node.node_id => inv.remove(p.id.as_str()),
                _ => None,
            }
        };
        let Some(pending) = pending else {
            return Ok(json!({ "ok": true, "ignored": true }));
        };
        // Normalise: payloadJSON may be a string, null, or (wrongly) a parsed value.
        let (payload_json, payload) = match p.payload_json {
            Some(Value::String(s)) => {
                let parsed =
                    serde_json::from_str(&s).unwrap_or_else(|_| json!({ "payloadJSON": s }));
                (Some(s), parsed)
            }
            Some(Value::Null) | None => {
                let v = p.payload.unwrap_or(Value::Null);
                (
                    if v.is_null() {
                        None
                    } else {
                        Some(v.to_string())
                    },
                    v,
                )
            }
            Some(other) => (Some(other.to_string()), other),
        };
        let result = if p.ok {
            Ok(NodeInvokeResult {
                ok: true,
                node_id: node.node_id.clone(),
                command: pending.command.clone(),
                payload,
                payload_json,
            })
        } else {
            let err = p.error.unwrap_or_default();
            let code = err.code.clone().unwrap_or_else(|| "UNAVAILABLE".into());
            let message = err.message.clone().unwrap_or_else(|| "node error".into());
            let text = if message.starts_with(&code) {
                message.clone()
            } else {
                format!("{code}: {message}")
            };
            Err(ErrorShape::unavailable(text)
                .with_details(json!({ "nodeError": { "code": code, "message": message } })))
        };
        let _ = pending.reply.send(result);
        Ok(json!({ "ok": true }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_lists() {
        let l = allowlist("linux", &[], &["system.run".into()]);
        assert!(l.contains(&"camera.snap".to_string()));
        assert!(!l.contains(&"system.run".to_string()));
        let m = allowlist("macos", &["x.y".into()], &[]);
        assert!(m.contains(&"x.y".to_string()));
        assert!(!m.contains(&"system.run".to_string()));
        assert!(is_dangerous("camera.snap") && !is_dangerous("system.which"));
    }
}
