//! Invoke routing: the registry of connected nodes (keyed by device id) and the invoke round
//! trip operator → gateway → node → gateway → operator.
//!
//! An invoke is a pending entry keyed by a gateway-generated id. It resolves when the node
//! answers with `node.invoke.result`, when its timer fires, or at once when the node's socket
//! goes away ("node disconnected").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pincer_protocol::error::ErrorShape;
use pincer_protocol::frames::encode_event_raw;
use pincer_protocol::methods::{NodeInvokeRequest, NodeInvokeResult, NodeInvokeResultParams};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::lock;
use super::policy::REFUSED;
use crate::conn::ConnHandle;

/// Default invoke timeout.
pub const DEFAULT_INVOKE_TIMEOUT_MS: u64 = 30_000;
/// Longest invoke timeout accepted.
pub const MAX_INVOKE_TIMEOUT_MS: u64 = 10 * 60 * 1000;

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

    /// The live connection of `node_id`.
    pub fn get(&self, node_id: &str) -> Option<Arc<ConnHandle>> {
        lock(&self.sessions).get(node_id).cloned()
    }

    /// Every live node connection.
    pub fn all(&self) -> Vec<Arc<ConnHandle>> {
        lock(&self.sessions).values().cloned().collect()
    }

    /// Connected nodes.
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
        let request = NodeInvokeRequest {
            id: id.clone(),
            node_id: node_id.into(),
            command: command.into(),
            params_json: params.map(|p| p.get().to_owned()),
            params: None,
            timeout_ms,
            idempotency_key: Some(idempotency_key.into()),
        };
        let payload = serde_json::to_string(&request)
            .map_err(|e| ErrorShape::unavailable(format!("cannot encode the invoke: {e}")))?;
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
        let frame = encode_event_raw("node.invoke.request", &payload, None, None);
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
