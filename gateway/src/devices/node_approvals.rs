//! Node surface approvals: which commands an operator allowed each node to run, and the
//! pending requests (one per node) of nodes that declare commands not approved yet.

use serde::{Deserialize, Serialize};

use super::{DeviceStore, DeviceStoreError};

/// An operator's approval of a node's command surface.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeApproval {
    /// The node's id (its device id).
    pub node_id: String,
    /// The commands approved.
    pub commands: Vec<String>,
    /// When they were approved, ms since the Unix epoch.
    pub approved_at_ms: u64,
    /// The node's display name at approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The node's platform at approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

/// A node surface waiting for approval (reference §3.5 pending entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodePending {
    /// Request id (a UUID), for `node.pair.approve` / `reject`.
    pub request_id: String,
    /// The node's id (its device id).
    pub node_id: String,
    /// `client.displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `client.platform`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// `client.version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `client.deviceFamily`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    /// `client.id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `client.mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_mode: Option<String>,
    /// Capability categories the node declared.
    pub caps: Vec<String>,
    /// The declared commands waiting for approval.
    pub commands: Vec<String>,
    /// The node's IP address when it asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    /// Always false: surfaces are never approved silently (kept for the reference's shape).
    pub silent: bool,
    /// When the request was made, ms since the Unix epoch.
    pub ts: u64,
}

impl DeviceStore {
    /// The approval record of `node_id`, if any.
    pub fn node_approval(&self, node_id: &str) -> Option<NodeApproval> {
        self.lock().nodes.get(node_id).cloned()
    }

    /// Creates or refreshes the pending surface request of a node (one per node).
    pub fn node_request(
        &self,
        mut req: NodePending,
        now_ms: u64,
    ) -> Result<(NodePending, bool), DeviceStoreError> {
        let mut file = self.lock();
        Self::prune(&mut file, now_ms);
        if let Some(old) = file
            .node_pending
            .values()
            .find(|p| p.node_id == req.node_id)
            .cloned()
        {
            if old.commands == req.commands {
                return Ok((old, false));
            }
            file.node_pending.remove(&old.request_id);
        }
        req.ts = now_ms;
        file.node_pending
            .insert(req.request_id.clone(), req.clone());
        self.persist(&file)?;
        Ok((req, true))
    }

    /// Approves a node surface request: the node may run the requested commands.
    pub fn node_approve(
        &self,
        id_or_code: &str,
        now_ms: u64,
    ) -> Result<(NodePending, NodeApproval), DeviceStoreError> {
        let mut file = self.lock();
        Self::prune(&mut file, now_ms);
        let id = Self::find_key(file.node_pending.keys(), id_or_code)?;
        let req = file
            .node_pending
            .remove(&id)
            .ok_or(DeviceStoreError::UnknownRequest)?;
        let entry = file
            .nodes
            .entry(req.node_id.clone())
            .or_insert_with(|| NodeApproval {
                node_id: req.node_id.clone(),
                commands: vec![],
                approved_at_ms: now_ms,
                display_name: None,
                platform: None,
            });
        for c in &req.commands {
            if !entry.commands.contains(c) {
                entry.commands.push(c.clone());
            }
        }
        entry.commands.sort();
        entry.approved_at_ms = now_ms;
        entry.display_name = req.display_name.clone().or(entry.display_name.take());
        entry.platform = req.platform.clone().or(entry.platform.take());
        let approval = entry.clone();
        self.persist(&file)?;
        Ok((req, approval))
    }

    /// Rejects a node surface request.
    pub fn node_reject(
        &self,
        id_or_code: &str,
        now_ms: u64,
    ) -> Result<NodePending, DeviceStoreError> {
        let mut file = self.lock();
        Self::prune(&mut file, now_ms);
        let id = Self::find_key(file.node_pending.keys(), id_or_code)?;
        let req = file
            .node_pending
            .remove(&id)
            .ok_or(DeviceStoreError::UnknownRequest)?;
        self.persist(&file)?;
        Ok(req)
    }

    /// Pending node requests and approvals.
    pub fn node_list(&self, now_ms: u64) -> (Vec<NodePending>, Vec<NodeApproval>) {
        let mut file = self.lock();
        Self::prune(&mut file, now_ms);
        (
            file.node_pending.values().cloned().collect(),
            file.nodes.values().cloned().collect(),
        )
    }
}
