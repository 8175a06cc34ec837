//! A client's device identity on disk — one implementation for the node and the operator CLI:
//!
//! * the identity file (0600): Ed25519 seed, `deviceId`, `publicKey`, a stable `instanceId`;
//!   created on first use, never silently replaced — a file that does not parse, or whose
//!   `deviceId` is not its key's, is an error that says how to recover;
//! * the device-auth file (0600): the device tokens the gateway issued, one per role, bound to
//!   the `deviceId` they were issued to (a token file left from another key is ignored).
//!
//! Both are written atomically ([`pincer_os::write_atomic`]): a power cut leaves the old file
//! or the new one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pincer_protocol::base64url;
use pincer_protocol::identity::DeviceKeyPair;
use serde::{Deserialize, Serialize};

/// Errors reading or writing the identity.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file cannot be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The identity file is not one: left as it is.
    #[error("{path} is not a valid identity ({message}); move it aside to create a new one (the device will need pairing again)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The OS gave no randomness for a new key.
    #[error("no randomness for a new key")]
    Randomness,
}

/// Where a client keeps its identity and tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFiles {
    /// Key, device id, instance id.
    pub identity: PathBuf,
    /// Device tokens by role.
    pub auth: PathBuf,
}

impl IdentityFiles {
    /// pincer-node's layout: `<state>/identity.json` and `<state>/device-auth.json`.
    pub fn node(state_dir: &Path) -> IdentityFiles {
        IdentityFiles {
            identity: state_dir.join("identity.json"),
            auth: state_dir.join("device-auth.json"),
        }
    }

    /// The operator CLI's layout: `<state>/identity/device.json` and
    /// `<state>/identity/device-auth.json` (beside a local gateway's own state).
    pub fn operator(state_dir: &Path) -> IdentityFiles {
        let dir = state_dir.join("identity");
        IdentityFiles {
            identity: dir.join("device.json"),
            auth: dir.join("device-auth.json"),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdentityFile {
    version: u32,
    device_id: String,
    public_key: String,
    seed: String,
    /// Older operator identities have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance_id: Option<String>,
    created_at_ms: u64,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AuthFile {
    version: u32,
    device_id: String,
    #[serde(default)]
    tokens: BTreeMap<String, StoredToken>,
}

#[derive(Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct StoredToken {
    token: String,
    role: String,
    #[serde(default)]
    scopes: Vec<String>,
    updated_at_ms: u64,
}

/// A loaded identity.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The Ed25519 key pair.
    pub key: DeviceKeyPair,
    /// `deviceId`: hex SHA-256 of the public key.
    pub device_id: String,
    /// The public key, base64url.
    pub public_key: String,
    /// `client.instanceId`: stable across restarts (made on first use; an old operator
    /// identity without one gets a fresh one per run).
    pub instance_id: String,
    files: IdentityFiles,
}

impl Identity {
    /// Loads the identity from `files`, creating it on first use.
    pub fn load_or_create(files: IdentityFiles) -> Result<Identity, IdentityError> {
        let path = files.identity.clone();
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&bytes, files),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(files),
            Err(source) => Err(IdentityError::Read { path, source }),
        }
    }

    fn parse(bytes: &[u8], files: IdentityFiles) -> Result<Identity, IdentityError> {
        let corrupt = |m: String| IdentityError::Corrupt {
            path: files.identity.clone(),
            message: m,
        };
        let f: IdentityFile = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        let seed =
            base64url::decode_array::<32>(&f.seed).map_err(|e| corrupt(format!("seed: {e}")))?;
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
            instance_id: f.instance_id.unwrap_or_else(pincer_os::uuid_v4),
            files,
        })
    }

    fn create(files: IdentityFiles) -> Result<Identity, IdentityError> {
        let key = DeviceKeyPair::generate().map_err(|_| IdentityError::Randomness)?;
        let pk = key.public_key();
        let id = Identity {
            device_id: pk.device_id().to_hex().as_str().to_owned(),
            public_key: pk.to_base64url().as_str().to_owned(),
            instance_id: pincer_os::uuid_v4(),
            key,
            files,
        };
        let f = IdentityFile {
            version: 1,
            device_id: id.device_id.clone(),
            public_key: id.public_key.clone(),
            seed: base64url::encode(&id.key.seed()),
            instance_id: Some(id.instance_id.clone()),
            created_at_ms: pincer_os::now_ms(),
        };
        write_json(&id.files.identity, &f)?;
        tracing::info!(device_id = %id.device_id, file = %id.files.identity.display(), "created a new device identity");
        Ok(id)
    }

    /// Where this identity lives.
    pub fn files(&self) -> &IdentityFiles {
        &self.files
    }

    /// The auth file if it belongs to this identity (a missing, unreadable or foreign one is
    /// an empty one: the device pairs again, nothing is lost that the gateway does not hold).
    fn auth(&self) -> AuthFile {
        std::fs::read(&self.files.auth)
            .ok()
            .and_then(|b| serde_json::from_slice::<AuthFile>(&b).ok())
            .filter(|f| f.device_id == self.device_id)
            .unwrap_or_else(|| AuthFile {
                version: 1,
                device_id: self.device_id.clone(),
                tokens: BTreeMap::new(),
            })
    }

    /// The device token stored for `role`, if any.
    pub fn device_token(&self, role: &str) -> Option<String> {
        self.auth().tokens.remove(role).map(|t| t.token)
    }

    /// Saves the device token the gateway issued for `role` with its scopes.
    pub fn save_device_token(
        &self,
        role: &str,
        token: &str,
        scopes: &[String],
    ) -> Result<(), IdentityError> {
        let mut f = self.auth();
        f.tokens.insert(
            role.to_owned(),
            StoredToken {
                token: token.to_owned(),
                role: role.to_owned(),
                scopes: scopes.to_vec(),
                updated_at_ms: pincer_os::now_ms(),
            },
        );
        write_json(&self.files.auth, &f)
    }

    /// Forgets the device token for `role` (after the gateway refused it).
    pub fn clear_device_token(&self, role: &str) -> Result<(), IdentityError> {
        let mut f = self.auth();
        if f.tokens.remove(role).is_some() {
            write_json(&self.files.auth, &f)?;
        }
        Ok(())
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), IdentityError> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| IdentityError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    pincer_os::write_atomic(path, &text).map_err(|source| IdentityError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pincer-client-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn identity_is_created_once_and_corruption_is_not_papered_over() {
        let dir = temp("id");
        let a = Identity::load_or_create(IdentityFiles::node(&dir)).unwrap();
        let b = Identity::load_or_create(IdentityFiles::node(&dir)).unwrap();
        assert_eq!(a.device_id, b.device_id);
        assert_eq!(a.instance_id, b.instance_id);
        a.save_device_token("node", "tok", &[]).unwrap();
        assert_eq!(b.device_token("node").as_deref(), Some("tok"));
        b.clear_device_token("node").unwrap();
        assert_eq!(a.device_token("node"), None);
        std::fs::write(dir.join("identity.json"), b"{ half").unwrap();
        assert!(matches!(
            Identity::load_or_create(IdentityFiles::node(&dir)),
            Err(IdentityError::Corrupt { .. })
        ));
        assert_eq!(std::fs::read(dir.join("identity.json")).unwrap(), b"{ half");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn files_written_by_the_earlier_clients_still_load() {
        // The operator CLI's identity had no instanceId and its tokens carried scopes; the
        // node's tokens had none.
        let dir = temp("old");
        let key = DeviceKeyPair::from_seed([7; 32]);
        let id = key.public_key().device_id().to_hex().as_str().to_owned();
        let files = IdentityFiles::operator(&dir);
        std::fs::create_dir_all(dir.join("identity")).unwrap();
        let old = serde_json::json!({"version":1,"deviceId":id,"publicKey":key.public_key().to_base64url().as_str(),
            "seed":base64url::encode(&key.seed()),"createdAtMs":1});
        std::fs::write(&files.identity, old.to_string()).unwrap();
        let auth = serde_json::json!({"version":1,"deviceId":id,"tokens":{
            "operator":{"token":"op","role":"operator","scopes":["operator.read"],"updatedAtMs":1},
            "node":{"token":"nd","role":"node","updatedAtMs":1}}});
        std::fs::write(&files.auth, auth.to_string()).unwrap();
        let loaded = Identity::load_or_create(files).unwrap();
        assert_eq!(loaded.device_id, id);
        assert_eq!(loaded.device_token("operator").as_deref(), Some("op"));
        assert_eq!(loaded.device_token("node").as_deref(), Some("nd"));
        // a token file of another key is not used
        let other = Identity::load_or_create(IdentityFiles {
            identity: dir.join("other.json"),
            auth: loaded.files().auth.clone(),
        })
        .unwrap();
        assert_eq!(other.device_token("operator"), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
