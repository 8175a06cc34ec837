//! Paired devices: the record of each trusted device (key, roles, scopes, tokens), approving a
//! device (merging with what it had), looking it up, forgetting it, and its redacted view.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::tokens::RoleToken;
use super::{DeviceStore, DeviceStoreError};

/// A paired device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairedDevice {
    /// Device id: hex SHA-256 of the public key.
    pub device_id: String,
    /// Ed25519 public key, base64url of the raw 32 bytes.
    pub public_key: String,
    /// `client.displayName` at the last approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `client.platform`, pinned at approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// `client.deviceFamily`, pinned at approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    /// `client.id` at the last approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `client.mode` at the last approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_mode: Option<String>,
    /// Roles approved (`operator`, `node`).
    pub roles: Vec<String>,
    /// Approved scope baseline: what connects and tokens may ask for.
    pub scopes: Vec<String>,
    /// When the device was first paired, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When it was last approved, ms since the Unix epoch.
    pub approved_at_ms: u64,
    /// Device token state per role.
    #[serde(default)]
    pub tokens: BTreeMap<String, RoleToken>,
}

impl PairedDevice {
    /// The record as `device.pair.list` shows it: token hashes replaced by a summary.
    pub fn redacted(&self) -> serde_json::Value {
        let tokens: Vec<serde_json::Value> = self
            .tokens
            .iter()
            .map(|(role, t)| {
                let mut v = serde_json::json!({ "role": role, "scopes": t.scopes, "createdAtMs": t.created_at_ms });
                if let Some(at) = t.current.as_ref().or(t.pending.as_ref()).map(|s| s.issued_at_ms) {
                    v["rotatedAtMs"] = at.into();
                }
                if let Some(at) = t.revoked_at_ms {
                    v["revokedAtMs"] = at.into();
                }
                v
            })
            .collect();
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["tokens"] = tokens.into();
        v
    }
}

impl DeviceStore {
    /// The record of `device_id`, if paired.
    pub fn get(&self, device_id: &str) -> Option<PairedDevice> {
        self.lock().devices.get(device_id).cloned()
    }

    /// Number of paired devices.
    pub fn len(&self) -> usize {
        self.lock().devices.len()
    }

    /// Whether no device is paired.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records `device` as approved for `role` with `scopes` (merging with what it had).
    pub fn approve(
        &self,
        mut device: PairedDevice,
        role: &str,
        scopes: &[String],
    ) -> Result<(), DeviceStoreError> {
        let mut file = self.lock();
        if let Some(old) = file.devices.get(&device.device_id) {
            if old.public_key == device.public_key {
                device.tokens = old.tokens.clone();
                device.created_at_ms = old.created_at_ms;
                for r in &old.roles {
                    if !device.roles.contains(r) {
                        device.roles.push(r.clone());
                    }
                }
                for s in &old.scopes {
                    if !device.scopes.contains(s) {
                        device.scopes.push(s.clone());
                    }
                }
            }
        }
        if !device.roles.iter().any(|r| r == role) {
            device.roles.push(role.to_owned());
        }
        for s in scopes {
            if !device.scopes.contains(s) {
                device.scopes.push(s.clone());
            }
        }
        device.roles.sort();
        device.scopes.sort();
        file.devices.insert(device.device_id.clone(), device);
        self.persist(&file)
    }

    /// Forgets a paired device (and its pending requests).
    pub fn remove(&self, device_id: &str) -> Result<PairedDevice, DeviceStoreError> {
        let mut file = self.lock();
        let dev = file
            .devices
            .remove(device_id)
            .ok_or(DeviceStoreError::UnknownDevice)?;
        file.pending.retain(|_, p| p.device_id != device_id);
        self.persist(&file)?;
        Ok(dev)
    }

    /// Devices paired for role `node` (shown in `node.list` while offline).
    pub fn paired_nodes(&self) -> Vec<PairedDevice> {
        self.lock()
            .devices
            .values()
            .filter(|d| d.roles.iter().any(|r| r == "node"))
            .cloned()
            .collect()
    }
}
