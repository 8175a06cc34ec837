//! The node's identity on disk, in its state dir:
//!
//! * `identity.json` (0600): Ed25519 seed, `deviceId`, `publicKey`, and a stable `instanceId`;
//!   created on first run, never silently replaced — a file that does not parse is an error;
//! * `device-auth.json` (0600): the device token the gateway issued for role `node`.
//!
//! Both are written atomically ([`pincer_os::write_atomic`]).

use std::path::{Path, PathBuf};

use pincer_protocol::base64url;
use pincer_protocol::identity::DeviceKeyPair;
use serde::{Deserialize, Serialize};

use pincer_os::write_atomic;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid identity ({message}); move it aside to create a new one (the node will need pairing again)")]
    Corrupt { path: PathBuf, message: String },
    #[error("no randomness for a new key")]
    Randomness,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityFile {
    version: u32,
    device_id: String,
    public_key: String,
    seed: String,
    instance_id: String,
    created_at_ms: u64,
}

/// The loaded identity.
#[derive(Debug, Clone)]
pub struct Identity {
    pub key: DeviceKeyPair,
    pub device_id: String,
    pub public_key: String,
    pub instance_id: String,
    state_dir: PathBuf,
}

fn random_uuid() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Identity {
    /// Loads the identity from `state_dir`, creating it on first use.
    pub fn load_or_create(state_dir: &Path) -> Result<Identity, IdentityError> {
        let path = state_dir.join("identity.json");
        match std::fs::read(&path) {
            Ok(bytes) => {
                let corrupt = |m: String| IdentityError::Corrupt {
                    path: path.clone(),
                    message: m,
                };
                let f: IdentityFile =
                    serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
                let seed = base64url::decode_array::<32>(&f.seed)
                    .map_err(|e| corrupt(format!("seed: {e:?}")))?;
                let key = DeviceKeyPair::from_seed(seed);
                let pk = key.public_key();
                let device_id = pk.device_id().to_hex().as_str().to_owned();
                if device_id != f.device_id {
                    return Err(corrupt("deviceId does not match the key".into()));
                }
                Ok(Identity {
                    key,
                    device_id,
                    public_key: pk.to_base64url().as_str().to_owned(),
                    instance_id: f.instance_id,
                    state_dir: state_dir.to_path_buf(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = DeviceKeyPair::generate().map_err(|_| IdentityError::Randomness)?;
                let pk = key.public_key();
                let id = Identity {
                    device_id: pk.device_id().to_hex().as_str().to_owned(),
                    public_key: pk.to_base64url().as_str().to_owned(),
                    instance_id: random_uuid(),
                    key,
                    state_dir: state_dir.to_path_buf(),
                };
                let f = IdentityFile {
                    version: 1,
                    device_id: id.device_id.clone(),
                    public_key: id.public_key.clone(),
                    seed: base64url::encode(&id.key.seed()),
                    instance_id: id.instance_id.clone(),
                    created_at_ms: crate::now_ms(),
                };
                let text = serde_json::to_vec_pretty(&f).unwrap_or_default();
                write_atomic(&path, &text)
                    .map_err(|source| IdentityError::Write { path, source })?;
                tracing::info!(device_id = %id.device_id, "created a new node identity");
                Ok(id)
            }
            Err(source) => Err(IdentityError::Read { path, source }),
        }
    }

    fn auth_path(&self) -> PathBuf {
        self.state_dir.join("device-auth.json")
    }

    /// The device token stored for `role`, if any.
    pub fn device_token(&self, role: &str) -> Option<String> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.auth_path()).ok()?).ok()?;
        if v["deviceId"].as_str() != Some(self.device_id.as_str()) {
            return None;
        }
        v["tokens"][role]["token"].as_str().map(str::to_owned)
    }

    /// Saves the device token the gateway issued for `role`.
    pub fn save_device_token(&self, role: &str, token: &str) -> Result<(), IdentityError> {
        let path = self.auth_path();
        let mut v: serde_json::Value = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|v: &serde_json::Value| v["deviceId"].as_str() == Some(self.device_id.as_str()))
            .unwrap_or_else(
                || serde_json::json!({ "version": 1, "deviceId": self.device_id, "tokens": {} }),
            );
        v["tokens"][role] =
            serde_json::json!({ "token": token, "role": role, "updatedAtMs": crate::now_ms() });
        let text = serde_json::to_vec_pretty(&v).unwrap_or_default();
        write_atomic(&path, &text).map_err(|source| IdentityError::Write { path, source })
    }

    /// Forgets the device token for `role` (after the gateway refused it).
    pub fn clear_device_token(&self, role: &str) {
        if let Ok(bytes) = std::fs::read(self.auth_path()) {
            if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                if let Some(t) = v["tokens"].as_object_mut() {
                    t.remove(role);
                }
                let _ = write_atomic(
                    &self.auth_path(),
                    &serde_json::to_vec_pretty(&v).unwrap_or_default(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_corruption_is_not_papered_over() {
        let dir = std::env::temp_dir().join(format!("pincer-node-id-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = Identity::load_or_create(&dir).unwrap();
        let b = Identity::load_or_create(&dir).unwrap();
        assert_eq!(a.device_id, b.device_id);
        assert_eq!(a.instance_id, b.instance_id);
        a.save_device_token("node", "tok").unwrap();
        assert_eq!(b.device_token("node").as_deref(), Some("tok"));
        std::fs::write(dir.join("identity.json"), b"{ half").unwrap();
        assert!(matches!(
            Identity::load_or_create(&dir),
            Err(IdentityError::Corrupt { .. })
        ));
        assert_eq!(std::fs::read(dir.join("identity.json")).unwrap(), b"{ half");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
