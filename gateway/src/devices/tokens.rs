//! Device tokens: per role of a paired device, two hashed slots, `current` (the token the
//! client is known to hold) and `pending` (the token last sent in `hello-ok`); minting into
//! `pending`, checking (presenting `pending` promotes it), operator rotation and revocation.

use serde::{Deserialize, Serialize};

use super::{DeviceStore, DeviceStoreError};
use crate::secret::{ct_eq, new_token, token_hash};

/// One issued token, by hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TokenSlot {
    /// Hex SHA-256 of the token (the token itself is never stored).
    pub hash: String,
    /// When it was issued, ms since the Unix epoch.
    pub issued_at_ms: u64,
}

/// The token state of one role of one device.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleToken {
    /// The token the client is known to hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<TokenSlot>,
    /// The token last sent in `hello-ok`, promoted to `current` when presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<TokenSlot>,
    /// The scopes the token carries.
    pub scopes: Vec<String>,
    /// When this role first got a token, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When it was revoked (`device.token.revoke`), ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<u64>,
}

/// A shared-secret connect gets a new device token only if the last one is older than this.
pub const REISSUE_AFTER_MS: u64 = 10 * 60 * 1000;

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

impl DeviceStore {
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

    /// Whether `token` is a live device token of some paired device's `role` (for HTTP requests
    /// that carry a device token as a bearer, where no device proof comes with it). Read-only:
    /// nothing is promoted.
    pub fn is_live_token(&self, role: &str, token: &str) -> bool {
        let hash = token_hash(token);
        let file = self.lock();
        file.devices.values().any(|d| {
            d.tokens.get(role).is_some_and(|rt| {
                rt.revoked_at_ms.is_none()
                    && [&rt.current, &rt.pending].iter().any(|s| {
                        s.as_ref()
                            .is_some_and(|s| ct_eq(s.hash.as_bytes(), hash.as_bytes()))
                    })
            })
        })
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
        // A device that reconnects in a loop (flaky Wi-Fi) with the shared secret must not turn
        // every reconnect into an fsync'd write: while a token covering these scopes was issued
        // recently, issue none (the client keeps the one it has, or the shared secret).
        if let Some(rt) = dev.tokens.get(role) {
            let newest = rt
                .pending
                .as_ref()
                .or(rt.current.as_ref())
                .map_or(0, |s| s.issued_at_ms);
            let covers = scopes.iter().all(|s| rt.scopes.contains(s));
            if rt.revoked_at_ms.is_none()
                && covers
                && now_ms.saturating_sub(newest) < REISSUE_AFTER_MS
            {
                return Ok(None);
            }
        }
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

    /// Operator rotation: a new token becomes current at once (the old ones stop working).
    pub fn rotate(
        &self,
        device_id: &str,
        role: &str,
        scopes: Option<&[String]>,
        now_ms: u64,
    ) -> Result<(String, Vec<String>), DeviceStoreError> {
        let mut file = self.lock();
        let dev = file
            .devices
            .get_mut(device_id)
            .ok_or(DeviceStoreError::UnknownDevice)?;
        if !dev.roles.iter().any(|r| r == role) {
            return Err(DeviceStoreError::UnknownDevice);
        }
        let baseline = dev.scopes.clone();
        let token = new_token();
        let rt = dev
            .tokens
            .entry(role.to_owned())
            .or_insert_with(|| RoleToken {
                created_at_ms: now_ms,
                ..Default::default()
            });
        if let Some(s) = scopes {
            rt.scopes = s
                .iter()
                .filter(|x| pincer_protocol::scopes::satisfies(&baseline, x))
                .cloned()
                .collect();
        }
        rt.current = Some(TokenSlot {
            hash: token_hash(&token),
            issued_at_ms: now_ms,
        });
        rt.pending = None;
        rt.revoked_at_ms = None;
        let scopes = rt.scopes.clone();
        self.persist(&file)?;
        Ok((token, scopes))
    }

    /// Revokes the token of (`device_id`, `role`).
    pub fn revoke(&self, device_id: &str, role: &str, now_ms: u64) -> Result<(), DeviceStoreError> {
        let mut file = self.lock();
        let dev = file
            .devices
            .get_mut(device_id)
            .ok_or(DeviceStoreError::UnknownDevice)?;
        let rt = dev
            .tokens
            .get_mut(role)
            .ok_or(DeviceStoreError::UnknownDevice)?;
        rt.current = None;
        rt.pending = None;
        rt.revoked_at_ms = Some(now_ms);
        // A revoked role is no longer an approved role: reconnecting needs approval again.
        dev.roles.retain(|r| r != role);
        self.persist(&file)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::test_support::{device, tmp};
    use super::*;

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
        // A reconnect right away does not mint (and write) again.
        assert_eq!(s.issue_token("d1", "operator", &[], 6).unwrap(), None);
        // Client saved t1, then a new token was minted while it was away.
        let t2 = s
            .issue_token("d1", "operator", &[], 6 + REISSUE_AFTER_MS)
            .unwrap()
            .unwrap();
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
        let t3 = s
            .issue_token("d1", "operator", &[], 7 + 2 * REISSUE_AFTER_MS)
            .unwrap()
            .unwrap();
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
        s.durable_blocking(Duration::from_secs(5)).unwrap();
        let s2 = DeviceStore::open(&dir).unwrap();
        assert!(matches!(
            s2.verify_token("d1", "k1", "operator", &t3).unwrap(),
            TokenCheck::Valid(_)
        ));
        let text = std::fs::read_to_string(dir.join("devices/store.json")).unwrap();
        assert!(!text.contains(&t3));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
