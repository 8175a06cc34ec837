//! Setup codes: one-time bootstrap tokens for headless first boot, in a long form and a short
//! `XXXX-XXXX` form (both stored only as hashes), bound to the first device that redeems them.

use serde::{Deserialize, Serialize};

use super::{DeviceStore, DeviceStoreError};
use crate::secret::{ct_eq, new_token, token_hash};

/// A setup code: a one-time bootstrap token for headless first boot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapRecord {
    /// SHA-256 of the long token.
    pub hash: String,
    /// SHA-256 of the normalised short form (`XXXXXXXX`).
    pub short_hash: String,
    /// Role the code admits.
    pub role: String,
    /// Scopes it grants (none for nodes; `operator.read` for operators).
    pub scopes: Vec<String>,
    /// When it was issued, ms since the Unix epoch.
    pub issued_at_ms: u64,
    /// When it expires, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// Bound on first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The public key of the device it is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// When it was first used, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeemed_at_ms: Option<u64>,
}

/// Outcome of presenting a bootstrap token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapCheck {
    /// Valid for this device; the role and scopes it grants.
    Valid {
        /// The role the code admits.
        role: String,
        /// The scopes it grants.
        scopes: Vec<String>,
    },
    /// Unknown, expired, bound to another device, or for another role.
    Invalid(&'static str),
}

/// Normalises a short setup code: upper case, no separators.
pub fn normalize_short(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// Crockford base32 alphabet (no I, L, O, U), for codes people type.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A fresh 8-character short code (40 bits) shown as `XXXX-XXXX`.
pub fn new_short_code() -> String {
    let t = new_token();
    let bytes = t.as_bytes();
    let raw: String = (0..8)
        .map(|i| CROCKFORD[(bytes[i] as usize * 7 + bytes[i + 8] as usize) % 32] as char)
        .collect();
    format!("{}-{}", &raw[..4], &raw[4..])
}

impl DeviceStore {
    /// Creates a setup code for `role`; returns (long token, short code, expiry).
    pub fn create_bootstrap(
        &self,
        role: &str,
        scopes: &[String],
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<(String, String, u64), DeviceStoreError> {
        let token = new_token();
        let short = new_short_code();
        let expires = now_ms + ttl_ms;
        let mut file = self.lock();
        Self::prune(&mut file, now_ms);
        file.bootstrap.push(BootstrapRecord {
            hash: token_hash(&token),
            short_hash: token_hash(&normalize_short(&short)),
            role: role.to_owned(),
            scopes: scopes.to_vec(),
            issued_at_ms: now_ms,
            expires_at_ms: expires,
            device_id: None,
            public_key: None,
            redeemed_at_ms: None,
        });
        self.persist(&file)?;
        Ok((token, short, expires))
    }

    /// Checks a bootstrap token (long or short form) for this device and role, binding it to
    /// the device on first use.
    pub fn redeem_bootstrap(
        &self,
        presented: &str,
        device_id: &str,
        public_key: &str,
        role: &str,
        now_ms: u64,
    ) -> Result<BootstrapCheck, DeviceStoreError> {
        let mut file = self.lock();
        Self::prune(&mut file, now_ms);
        let long = token_hash(presented.trim());
        let short = token_hash(&normalize_short(presented));
        let Some(rec) = file.bootstrap.iter_mut().find(|b| {
            ct_eq(b.hash.as_bytes(), long.as_bytes())
                || ct_eq(b.short_hash.as_bytes(), short.as_bytes())
        }) else {
            return Ok(BootstrapCheck::Invalid("unknown or expired setup code"));
        };
        if rec.role != role {
            return Ok(BootstrapCheck::Invalid("setup code is for another role"));
        }
        match (&rec.device_id, &rec.public_key) {
            (Some(d), Some(k)) if d == device_id && k == public_key => {}
            (Some(_), _) => {
                return Ok(BootstrapCheck::Invalid(
                    "setup code already used by another device",
                ))
            }
            _ => {
                rec.device_id = Some(device_id.to_owned());
                rec.public_key = Some(public_key.to_owned());
                rec.redeemed_at_ms = Some(now_ms);
            }
        }
        let out = BootstrapCheck::Valid {
            role: rec.role.clone(),
            scopes: rec.scopes.clone(),
        };
        self.persist(&file)?;
        Ok(out)
    }
}
