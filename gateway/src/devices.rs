//! Paired devices and their device tokens, persisted atomically under
//! `<state>/devices/paired.json` (mode 0600).
//!
//! Tokens are stored only as SHA-256 hashes. Since a stored token cannot be handed out again,
//! each role keeps two slots: `current` (the token the client is known to hold) and `pending`
//! (the token last sent in `hello-ok`). Both are accepted; presenting `pending` promotes it.
//! So a client that crashed before saving a new token still gets in with its old one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic;
use crate::secret::{ct_eq, new_token, token_hash};

/// Errors of the device store.
#[derive(Debug, thiserror::Error)]
pub enum DeviceStoreError {
    #[error("device store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("device store {path} is unreadable ({message}); it was left untouched — move it aside to start over")]
    Corrupt { path: PathBuf, message: String },
}

/// One issued token, by hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TokenSlot {
    pub hash: String,
    pub issued_at_ms: u64,
}

/// The token state of one role of one device.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleToken {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<TokenSlot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<TokenSlot>,
    pub scopes: Vec<String>,
    pub created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<u64>,
}

/// A paired device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairedDevice {
    pub device_id: String,
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_mode: Option<String>,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    pub created_at_ms: u64,
    pub approved_at_ms: u64,
    #[serde(default)]
    pub tokens: BTreeMap<String, RoleToken>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoreFile {
    version: u32,
    devices: BTreeMap<String, PairedDevice>,
}

/// Result of checking a device token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// Valid; the scopes the token carries.
    Valid(Vec<String>),
    /// The device has a token for this role but this is not it (or it was revoked).
    Mismatch,
    /// The device is unknown, its key differs, or it has no token for this role.
    Unknown,
}

/// The paired-device store.
#[derive(Debug)]
pub struct DeviceStore {
    path: PathBuf,
    inner: Mutex<StoreFile>,
}

impl DeviceStore {
    /// Opens (or starts) the store in `state_dir`. A file that does not parse is an error, never
    /// silently replaced.
    pub fn open(state_dir: &Path) -> Result<DeviceStore, DeviceStoreError> {
        let path = state_dir.join("devices").join("paired.json");
        let file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| DeviceStoreError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoreFile {
                version: 1,
                ..Default::default()
            },
            Err(source) => return Err(DeviceStoreError::Io { path, source }),
        };
        Ok(DeviceStore {
            path,
            inner: Mutex::new(file),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreFile> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn persist(&self, file: &StoreFile) -> Result<(), DeviceStoreError> {
        let text = serde_json::to_vec_pretty(file).unwrap_or_default();
        write_atomic(&self.path, &text).map_err(|source| DeviceStoreError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// The record of `device_id`, if paired.
    pub fn get(&self, device_id: &str) -> Option<PairedDevice> {
        self.lock().devices.get(device_id).cloned()
    }

    /// Number of paired devices.
    pub fn len(&self) -> usize {
        self.lock().devices.len()
    }

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

    /// Checks `token` for (`device_id`, `public_key`, `role`). Presenting the pending token
    /// promotes it to current.
    pub fn verify_token(
        &self,
        device_id: &str,
        public_key: &str,
        role: &str,
        token: &str,
    ) -> Result<TokenCheck, DeviceStoreError> {
        let mut file = self.lock();
        let Some(dev) = file.devices.get_mut(device_id) else {
            return Ok(TokenCheck::Unknown);
        };
        if dev.public_key != public_key {
            return Ok(TokenCheck::Unknown);
        }
        let Some(rt) = dev.tokens.get_mut(role) else {
            return Ok(TokenCheck::Unknown);
        };
        if rt.revoked_at_ms.is_some() {
            return Ok(TokenCheck::Mismatch);
        }
        let hash = token_hash(token);
        let is = |slot: &Option<TokenSlot>| {
            slot.as_ref()
                .is_some_and(|s| ct_eq(s.hash.as_bytes(), hash.as_bytes()))
        };
        if is(&rt.current) {
            return Ok(TokenCheck::Valid(rt.scopes.clone()));
        }
        if is(&rt.pending) {
            rt.current = rt.pending.take();
            let scopes = rt.scopes.clone();
            self.persist(&file)?;
            return Ok(TokenCheck::Valid(scopes));
        }
        Ok(TokenCheck::Mismatch)
    }

    /// Mints a new token for (`device_id`, `role`) into the pending slot and returns it.
    pub fn issue_token(
        &self,
        device_id: &str,
        role: &str,
        scopes: &[String],
        now_ms: u64,
    ) -> Result<Option<String>, DeviceStoreError> {
        let mut file = self.lock();
        let Some(dev) = file.devices.get_mut(device_id) else {
            return Ok(None);
        };
        let token = new_token();
        let rt = dev
            .tokens
            .entry(role.to_owned())
            .or_insert_with(|| RoleToken {
                created_at_ms: now_ms,
                ..Default::default()
            });
        rt.pending = Some(TokenSlot {
            hash: token_hash(&token),
            issued_at_ms: now_ms,
        });
        rt.revoked_at_ms = None;
        let mut merged: Vec<String> = rt.scopes.iter().chain(scopes).cloned().collect();
        merged.sort();
        merged.dedup();
        rt.scopes = merged;
        self.persist(&file)?;
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, key: &str) -> PairedDevice {
        PairedDevice {
            device_id: id.into(),
            public_key: key.into(),
            display_name: None,
            platform: Some("linux".into()),
            device_family: None,
            client_id: None,
            client_mode: None,
            roles: vec![],
            scopes: vec![],
            created_at_ms: 1,
            approved_at_ms: 1,
            tokens: BTreeMap::new(),
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pincer-devices-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn old_token_keeps_working_until_the_new_one_is_used() {
        let dir = tmp("rotate");
        let s = DeviceStore::open(&dir).unwrap();
        s.approve(device("d1", "k1"), "operator", &["operator.read".into()])
            .unwrap();
        let t1 = s
            .issue_token("d1", "operator", &["operator.read".into()], 5)
            .unwrap()
            .unwrap();
        // Client saved t1, then a new token was minted while it was away.
        let t2 = s.issue_token("d1", "operator", &[], 6).unwrap().unwrap();
        // t1 is pending-overwritten, but t1 was never promoted: only t2 is valid now.
        assert_eq!(
            s.verify_token("d1", "k1", "operator", &t1).unwrap(),
            TokenCheck::Mismatch
        );
        assert!(matches!(
            s.verify_token("d1", "k1", "operator", &t2).unwrap(),
            TokenCheck::Valid(_)
        ));
        // t2 is current now; a new pending t3 does not invalidate it.
        let t3 = s.issue_token("d1", "operator", &[], 7).unwrap().unwrap();
        assert!(matches!(
            s.verify_token("d1", "k1", "operator", &t2).unwrap(),
            TokenCheck::Valid(_)
        ));
        assert!(matches!(
            s.verify_token("d1", "k1", "operator", &t3).unwrap(),
            TokenCheck::Valid(_)
        ));
        // Another key or role never matches.
        assert_eq!(
            s.verify_token("d1", "k2", "operator", &t3).unwrap(),
            TokenCheck::Unknown
        );
        assert_eq!(
            s.verify_token("d1", "k1", "node", &t3).unwrap(),
            TokenCheck::Unknown
        );
        // Survives a reopen, and the file holds no token in clear.
        let s2 = DeviceStore::open(&dir).unwrap();
        assert!(matches!(
            s2.verify_token("d1", "k1", "operator", &t3).unwrap(),
            TokenCheck::Valid(_)
        ));
        let text = std::fs::read_to_string(dir.join("devices/paired.json")).unwrap();
        assert!(!text.contains(&t3));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn corrupt_store_is_reported_not_replaced() {
        let dir = tmp("corrupt");
        std::fs::create_dir_all(dir.join("devices")).unwrap();
        std::fs::write(dir.join("devices/paired.json"), b"{ torn").unwrap();
        assert!(matches!(
            DeviceStore::open(&dir),
            Err(DeviceStoreError::Corrupt { .. })
        ));
        assert_eq!(
            std::fs::read(dir.join("devices/paired.json")).unwrap(),
            b"{ torn"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
