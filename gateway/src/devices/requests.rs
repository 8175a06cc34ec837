//! Pending pairing requests: one per device, created or refreshed by the handshake, found by
//! id or short code, approved (the device becomes paired) or rejected by an operator.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::paired::PairedDevice;
use super::{DeviceStore, DeviceStoreError, StoreFile};

/// A pairing request waiting for an operator (reference §3.2 `pending.json` entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingRequest {
    /// Request id (a UUID), sent in `details.requestId`; its first 8 hex digits are the short code.
    pub request_id: String,
    /// The device's id.
    pub device_id: String,
    /// The device's public key, base64url of the raw 32 bytes.
    pub public_key: String,
    /// `client.displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `client.platform`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// `client.deviceFamily`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    /// `client.id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `client.mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_mode: Option<String>,
    /// The role asked for.
    pub role: String,
    /// Roles the approval grants.
    pub roles: Vec<String>,
    /// Scopes the approval grants (operator approvers must hold them).
    pub scopes: Vec<String>,
    /// The client's IP address when it asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    /// Always false here: silent pairings create no request (kept for the reference's shape).
    pub silent: bool,
    /// Whether the device is already paired and asks for a role or scope upgrade.
    pub is_repair: bool,
    /// When the request was made, ms since the Unix epoch; it expires after [`PENDING_TTL_MS`].
    pub ts: u64,
}

impl PendingRequest {
    /// The short code shown in logs and accepted by `devices approve`: the first 8 hex digits
    /// of the request id.
    pub fn short_code(&self) -> String {
        short_code(&self.request_id)
    }
}

/// First 8 hex digits of a request id, upper-cased for reading aloud.
pub fn short_code(request_id: &str) -> String {
    request_id
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .take(8)
        .collect::<String>()
        .to_ascii_uppercase()
}

/// Pending requests expire after this.
pub const PENDING_TTL_MS: u64 = 5 * 60 * 1000;
/// Pending requests from one source address at once…
pub const MAX_PENDING_PER_SOURCE: usize = 8;
/// …and from everyone together (each one is a store rewrite and an entry in
/// `device.pair.list`).
pub const MAX_PENDING: usize = 64;
/// Client metadata kept in a request (`displayName`, `platform`, …) is cut to this many bytes.
pub const PENDING_FIELD_MAX: usize = 128;

fn clip(field: &mut Option<String>) {
    if let Some(s) = field {
        pincer_protocol::clip_in_place(s, PENDING_FIELD_MAX);
    }
}

/// What [`DeviceStore::request`] did.
#[derive(Debug, Clone)]
pub struct Requested {
    /// The pending request, new or refreshed.
    pub request: PendingRequest,
    /// False when an identical pending request was refreshed.
    pub created: bool,
}

impl DeviceStore {
    /// Creates or refreshes the pending request of `req.device_id` (one per device). An
    /// identical request keeps its id and `ts`; a different one replaces it with merged roles
    /// and scopes under a new id.
    pub fn request(
        &self,
        mut req: PendingRequest,
        now_ms: u64,
    ) -> Result<Requested, DeviceStoreError> {
        for f in [
            &mut req.display_name,
            &mut req.platform,
            &mut req.device_family,
            &mut req.client_id,
            &mut req.client_mode,
        ] {
            clip(f);
        }
        let mut file = self.lock();
        Self::prune(&mut file, now_ms);
        let existing = file
            .pending
            .values()
            .find(|p| p.device_id == req.device_id)
            .cloned();
        let replaces = existing.is_some();
        if let Some(old) = existing {
            let same = old.public_key == req.public_key
                && old.role == req.role
                && old.scopes == req.scopes;
            if same {
                return Ok(Requested {
                    request: old,
                    created: false,
                });
            }
            file.pending.remove(&old.request_id);
            if old.public_key == req.public_key {
                for r in old.roles {
                    if !req.roles.contains(&r) {
                        req.roles.push(r);
                    }
                }
                for s in old.scopes {
                    if !req.scopes.contains(&s) {
                        req.scopes.push(s);
                    }
                }
                req.roles.sort();
                req.scopes.sort();
            }
        }
        if !replaces {
            let from_source = file
                .pending
                .values()
                .filter(|p| p.remote_ip.is_some() && p.remote_ip == req.remote_ip)
                .count();
            if from_source >= MAX_PENDING_PER_SOURCE {
                return Err(DeviceStoreError::PendingFull("from this address"));
            }
            if file.pending.len() >= MAX_PENDING {
                return Err(DeviceStoreError::PendingFull("in all"));
            }
        }
        req.ts = now_ms;
        file.pending.insert(req.request_id.clone(), req.clone());
        self.persist(&file)?;
        Ok(Requested {
            request: req,
            created: true,
        })
    }

    /// Finds a pending request by full id or by a unique prefix / short code (≥ 6 characters).
    fn find_pending(file: &StoreFile, id_or_code: &str) -> Result<String, DeviceStoreError> {
        Self::find_key(file.pending.keys(), id_or_code)
    }

    /// Approves a pending request (by id or short code): the device is paired for the requested
    /// roles and scopes. Returns the request and the paired record.
    pub fn approve_request(
        &self,
        id_or_code: &str,
        now_ms: u64,
    ) -> Result<(PendingRequest, PairedDevice), DeviceStoreError> {
        let req = {
            let mut file = self.lock();
            Self::prune(&mut file, now_ms);
            let id = Self::find_pending(&file, id_or_code)?;
            file.pending
                .get(&id)
                .cloned()
                .ok_or(DeviceStoreError::UnknownRequest)?
        };
        let record = PairedDevice {
            device_id: req.device_id.clone(),
            public_key: req.public_key.clone(),
            display_name: req.display_name.clone(),
            platform: req.platform.clone(),
            device_family: req.device_family.clone(),
            client_id: req.client_id.clone(),
            client_mode: req.client_mode.clone(),
            roles: req.roles.clone(),
            scopes: vec![],
            created_at_ms: now_ms,
            approved_at_ms: now_ms,
            tokens: BTreeMap::new(),
        };
        // approve() persists the paired record and the removal of the request together.
        let mut file = self.lock();
        file.pending.remove(&req.request_id);
        drop(file);
        self.approve(record, &req.role, &req.scopes)?;
        let paired = self
            .get(&req.device_id)
            .ok_or(DeviceStoreError::UnknownDevice)?;
        Ok((req, paired))
    }

    /// Rejects (drops) a pending request.
    pub fn reject_request(
        &self,
        id_or_code: &str,
        now_ms: u64,
    ) -> Result<PendingRequest, DeviceStoreError> {
        let mut file = self.lock();
        Self::prune(&mut file, now_ms);
        let id = Self::find_pending(&file, id_or_code)?;
        let req = file
            .pending
            .remove(&id)
            .ok_or(DeviceStoreError::UnknownRequest)?;
        self.persist(&file)?;
        Ok(req)
    }

    /// Pending requests and paired devices (without token hashes), for `device.pair.list`.
    pub fn list(&self, now_ms: u64) -> (Vec<PendingRequest>, Vec<PairedDevice>) {
        let mut file = self.lock();
        Self::prune(&mut file, now_ms);
        (
            file.pending.values().cloned().collect(),
            file.devices.values().cloned().collect(),
        )
    }
}
