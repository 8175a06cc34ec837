//! A connected node's session: what it declared, what it may run now, and its admission —
//! declared ∩ allowlist, minus dangerous commands no operator approved, the rest recorded as a
//! pending surface request (`node.pair.requested`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use pincer_protocol::connect::ConnectParams;
use pincer_protocol::methods::NodeListNode;
use pincer_protocol::scopes;
use serde_json::{json, Value};

use super::lock;
use super::policy::{allowlist, is_dangerous};
use crate::devices::{DeviceStore, NodePending};

/// What a connected node declared and may run.
#[derive(Debug)]
pub struct NodeSession {
    /// The node's id (its device id).
    pub node_id: String,
    /// `client.displayName`.
    pub display_name: Option<String>,
    /// `client.platform` (picks the allowlist).
    pub platform: String,
    /// `client.version`.
    pub version: String,
    /// `client.id`.
    pub client_id: String,
    /// `client.mode`.
    pub client_mode: String,
    /// `client.deviceFamily`.
    pub device_family: Option<String>,
    /// `client.modelIdentifier`.
    pub model_identifier: Option<String>,
    /// `connect.pathEnv`.
    pub path_env: Option<String>,
    /// The node's IP address.
    pub remote_ip: String,
    /// `connect.caps`, as declared.
    pub caps: Vec<String>,
    /// `connect.permissions`, as declared.
    pub permissions: Option<BTreeMap<String, bool>>,
    /// When it connected, ms since the Unix epoch.
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

    /// The node as `node.list` shows it; `approved` gives its `pendingCommands`.
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
///
/// Returns the session and, when a new surface request was recorded, that request (for the
/// caller to announce as `node.pair.requested`).
pub fn admit(
    policy: &Policy<'_>,
    devices: &DeviceStore,
    p: &ConnectParams,
    node_id: &str,
    remote_ip: &str,
    now_ms: u64,
) -> (NodeSession, Option<Value>) {
    let allow = allowlist(&p.client.platform, policy.allow, policy.deny);
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
    let approved = devices
        .node_approval(node_id)
        .map(|a| a.commands)
        .unwrap_or_default();
    session.apply_approval(&approved);
    let waiting = session.unapproved(&approved);
    let mut requested = None;
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
        match devices.node_request(req, now_ms) {
            Ok((req, created)) => {
                if created {
                    requested = Some(pending_json(&req));
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
    (session, requested)
}

/// The config's word on node commands: extra allowed and denied ones.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Commands allowed beyond the platform defaults (`node_allow`).
    pub allow: &'a [String],
    /// Commands never allowed (`node_deny`).
    pub deny: &'a [String],
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
