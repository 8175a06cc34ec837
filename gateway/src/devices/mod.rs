//! Device trust: paired devices, pending pairing requests, device tokens and setup-code
//! (bootstrap) tokens, all in one file written atomically: `<state>/devices/store.json` (0600).
//! One file means an approval (pending → paired + token) is a single atomic step.
//!
//! Tokens are stored only as SHA-256 hashes. Since a stored token cannot be handed out again,
//! each role keeps two slots: `current` (the token the client is known to hold) and `pending`
//! (the token last sent in `hello-ok`). Both are accepted; presenting `pending` promotes it.
//! So a client that crashed before saving a new token still gets in with its old one.
//!
//! Writes are group-committed by one writer thread: a change updates memory and queues a
//! snapshot; the writer writes the newest snapshot (temp file, fsync, rename, fsync of the
//! folder) and skips the ones it superseded. The gateway's event loop never waits on the disk:
//! it sends a reply that depends on a change only after [`DeviceStore::durable`] says that
//! change is on disk, so 200 boards pairing at once cost a handful of fsyncs, not 600 stalls
//! of every connection. A write that fails (full disk, read-only card) rolls memory back to
//! what is on disk: every change not yet written is undone and its waiter told so, so an
//! approval the operator was told failed never takes effect later.
//!
//! This module owns the [`DeviceStore`] facade: the file's layout, opening it (and keeping an
//! unreadable one aside), the lock, and the helpers its parts share. Each part is a
//! submodule that adds methods to the store:
//!
//! * `writer`: the group-commit writer thread, [`DeviceStore::durable`];
//! * `paired`: paired-device records ([`PairedDevice`]), approve, remove;
//! * `requests`: pending pairing requests ([`PendingRequest`]), approve / reject;
//! * `tokens`: device tokens (hashed current / pending slots), check, issue, rotate, revoke;
//! * `setup_codes`: one-time bootstrap tokens ([`BootstrapRecord`]);
//! * `node_approvals`: approved node command surfaces ([`NodeApproval`], [`NodePending`]).
//!
//! The store knows nothing of the handshake or of operator methods: `handshake` and `pairing`
//! call it, never the reverse.

mod node_approvals;
mod paired;
mod requests;
mod setup_codes;
mod tokens;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use node_approvals::{NodeApproval, NodePending};
pub use paired::PairedDevice;
pub use requests::{short_code, PendingRequest, Requested, PENDING_TTL_MS};
pub use setup_codes::{new_short_code, normalize_short, BootstrapCheck, BootstrapRecord};
pub use tokens::{RoleToken, TokenCheck, TokenSlot, REISSUE_AFTER_MS};

use writer::Writer;

/// Errors of the device store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceStoreError {
    /// The store file could not be read or written.
    #[error("device store {path}: {source}")]
    Io {
        /// The store file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The store file does not parse; the gateway does not start over it.
    #[error("device store {path} is unreadable ({message}); it was left untouched — move it aside to start over")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// No pending request with that id or short code (`INVALID_REQUEST "unknown requestId"`).
    #[error("unknown requestId")]
    UnknownRequest,
    /// No paired device with that id, or none holding that role.
    #[error("unknown deviceId")]
    UnknownDevice,
    /// A short code (given) that is the prefix of several pending request ids.
    #[error("ambiguous code {0:?}: matches several pending requests")]
    Ambiguous(String),
    /// A change was made in memory but did not reach the disk (full disk, read-only card, …).
    #[error("device store {path}: not written: {message}")]
    NotWritten {
        /// The store file.
        path: PathBuf,
        /// Why it was not written.
        message: String,
    },
    /// The bound on pending pairing requests is reached (per source address or overall).
    #[error("too many pending pairing requests {0}; approve or reject some first")]
    PendingFull(&'static str),
}

/// The store file's content (`store.json`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct StoreFile {
    version: u32,
    devices: BTreeMap<String, PairedDevice>,
    #[serde(default)]
    pending: BTreeMap<String, PendingRequest>,
    #[serde(default)]
    bootstrap: Vec<BootstrapRecord>,
    #[serde(default)]
    nodes: BTreeMap<String, NodeApproval>,
    #[serde(default)]
    node_pending: BTreeMap<String, NodePending>,
}

/// The paired-device store.
#[derive(Debug)]
pub struct DeviceStore {
    path: PathBuf,
    /// Shared with the writer thread, which rolls it back when a write fails.
    inner: Arc<Mutex<StoreFile>>,
    recovered_from: Option<PathBuf>,
    /// Generation of the newest snapshot handed to the writer (assigned under `inner`'s lock).
    generation: Arc<AtomicU64>,
    writer: Writer,
}

impl DeviceStore {
    /// Opens (or starts) the store in `state_dir`. A file that does not parse is renamed aside
    /// (`store.json.corrupt-<ms>`) and reported through [`Self::recovered_from`]; the gateway
    /// then starts with no trusted devices rather than guessing.
    pub fn open(state_dir: &Path) -> Result<DeviceStore, DeviceStoreError> {
        let path = state_dir.join("devices").join("store.json");
        let mut recovered_from = None;
        let file = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(f) => f,
                Err(e) => {
                    let aside = path.with_extension(format!("json.corrupt-{}", crate::now_ms()));
                    std::fs::rename(&path, &aside).map_err(|source| DeviceStoreError::Io {
                        path: path.clone(),
                        source,
                    })?;
                    tracing::error!(
                        path = %path.display(), kept = %aside.display(), error = %e,
                        "device store unreadable: kept aside, starting with no paired devices"
                    );
                    recovered_from = Some(aside);
                    StoreFile {
                        version: 1,
                        ..Default::default()
                    }
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoreFile {
                version: 1,
                ..Default::default()
            },
            Err(source) => return Err(DeviceStoreError::Io { path, source }),
        };
        let on_disk = file.clone();
        let inner = Arc::new(Mutex::new(file));
        let generation = Arc::new(AtomicU64::new(0));
        Ok(DeviceStore {
            writer: Writer::start(path.clone(), on_disk, inner.clone(), generation.clone()),
            path,
            inner,
            recovered_from,
            generation,
        })
    }

    /// Where an unreadable store was moved at start-up, if that happened.
    pub fn recovered_from(&self) -> Option<&Path> {
        self.recovered_from.as_deref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreFile> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops expired pending pairing requests and setup codes.
    fn prune(file: &mut StoreFile, now_ms: u64) {
        file.pending
            .retain(|_, p| now_ms.saturating_sub(p.ts) < PENDING_TTL_MS);
        file.bootstrap.retain(|b| b.expires_at_ms > now_ms);
    }

    /// Finds a key by full id or by a unique prefix / short code (≥ 6 characters).
    fn find_key<'a>(
        keys: impl Iterator<Item = &'a String> + Clone,
        id_or_code: &str,
    ) -> Result<String, DeviceStoreError> {
        if keys.clone().any(|k| k == id_or_code) {
            return Ok(id_or_code.to_owned());
        }
        let code = normalize_short(id_or_code).to_ascii_lowercase();
        if code.len() < 6 {
            return Err(DeviceStoreError::UnknownRequest);
        }
        let matches: Vec<&String> = keys
            .filter(|k| {
                k.chars()
                    .filter(|c| c.is_ascii_hexdigit())
                    .collect::<String>()
                    .to_ascii_lowercase()
                    .starts_with(&code)
            })
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(DeviceStoreError::UnknownRequest),
            _ => Err(DeviceStoreError::Ambiguous(id_or_code.to_owned())),
        }
    }
}

/// Helpers shared by the store's unit tests.
#[cfg(test)]
mod test_support {
    use super::*;

    pub(super) fn device(id: &str, key: &str) -> PairedDevice {
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

    pub(super) fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pincer-devices-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::test_support::{device, tmp};
    use super::*;

    #[test]
    fn corrupt_store_is_kept_aside_and_reported() {
        let dir = tmp("corrupt");
        std::fs::create_dir_all(dir.join("devices")).unwrap();
        std::fs::write(dir.join("devices/store.json"), b"{ torn").unwrap();
        let s = DeviceStore::open(&dir).unwrap();
        let aside = s.recovered_from().expect("reported").to_path_buf();
        assert_eq!(
            std::fs::read(&aside).unwrap(),
            b"{ torn",
            "original bytes kept"
        );
        assert!(s.is_empty());
        // The next write does not touch the kept copy.
        s.approve(device("d1", "k1"), "node", &[]).unwrap();
        s.durable_blocking(Duration::from_secs(5)).unwrap();
        assert!(std::fs::read_to_string(dir.join("devices/store.json"))
            .unwrap()
            .contains("d1"));
        assert_eq!(std::fs::read(&aside).unwrap(), b"{ torn");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
