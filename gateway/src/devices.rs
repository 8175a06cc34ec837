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
//! of every connection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::secret::{ct_eq, new_token, token_hash};
use pincer_os::write_atomic;

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
    #[error("unknown requestId")]
    UnknownRequest,
    #[error("unknown deviceId")]
    UnknownDevice,
    #[error("ambiguous code {0:?}: matches several pending requests")]
    Ambiguous(String),
    #[error("device store {path}: not written: {message}")]
    NotWritten { path: PathBuf, message: String },
}

/// How far the writer got: the newest snapshot generation it wrote, and whether that failed.
#[derive(Debug, Clone, Default)]
struct Flushed {
    generation: u64,
    error: Option<String>,
}

/// The newest snapshot waiting for the writer: one slot, not a queue, so a burst of changes
/// holds at most one pending copy of the store however slow the card is.
#[derive(Debug, Default)]
struct Pending {
    next: Option<(u64, StoreFile)>,
    closed: bool,
}

type Slot = std::sync::Arc<(Mutex<Pending>, Condvar)>;

/// The writer thread's end of the store.
#[derive(Debug)]
struct Writer {
    slot: Option<Slot>,
    flushed: tokio::sync::watch::Receiver<Flushed>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(path: PathBuf) -> Writer {
        let slot: Slot = Default::default();
        let (flushed_tx, flushed) = tokio::sync::watch::channel(Flushed::default());
        let theirs = slot.clone();
        let thread = std::thread::Builder::new()
            .name("device-store".into())
            .spawn(move || loop {
                let (generation, file) = {
                    let (lock, ready) = &*theirs;
                    let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
                    loop {
                        if let Some(next) = p.next.take() {
                            break next;
                        }
                        if p.closed {
                            return;
                        }
                        p = ready.wait(p).unwrap_or_else(|e| e.into_inner());
                    }
                };
                // Serialised here, off the event loop: with hundreds of devices the pretty
                // JSON is a few hundred KB.
                let bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
                let error = write_atomic(&path, &bytes).err().map(|e| {
                    tracing::error!(path = %path.display(), error = %e, "device store not written");
                    e.to_string()
                });
                flushed_tx.send_replace(Flushed { generation, error });
            })
            .ok();
        Writer {
            slot: thread.as_ref().map(|_| slot),
            flushed,
            thread,
        }
    }

    /// Hands `file` (generation `generation`) to the writer, replacing a snapshot it has not
    /// started on yet. False when there is no writer thread.
    fn submit(&self, generation: u64, file: StoreFile) -> bool {
        let Some(slot) = &self.slot else {
            return false;
        };
        let (lock, ready) = &**slot;
        lock.lock().unwrap_or_else(|e| e.into_inner()).next = Some((generation, file));
        ready.notify_one();
        true
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // The writer finishes the pending snapshot, then sees `closed` and exits.
        if let Some(slot) = &self.slot {
            let (lock, ready) = &**slot;
            lock.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
            ready.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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

/// A pairing request waiting for an operator (reference §3.2 `pending.json` entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PendingRequest {
    pub request_id: String,
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
    pub role: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    pub silent: bool,
    pub is_repair: bool,
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

/// A setup code: a one-time bootstrap token for headless first boot.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapRecord {
    /// SHA-256 of the long token.
    pub hash: String,
    /// SHA-256 of the normalised short form (`XXXXXXXX`).
    pub short_hash: String,
    pub role: String,
    pub scopes: Vec<String>,
    pub issued_at_ms: u64,
    pub expires_at_ms: u64,
    /// Bound on first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeemed_at_ms: Option<u64>,
}

/// A shared-secret connect gets a new device token only if the last one is older than this.
pub const REISSUE_AFTER_MS: u64 = 10 * 60 * 1000;

/// Pending requests expire after this.
pub const PENDING_TTL_MS: u64 = 5 * 60 * 1000;

/// An operator's approval of a node's command surface.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeApproval {
    pub node_id: String,
    pub commands: Vec<String>,
    pub approved_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

/// A node surface waiting for approval (reference §3.5 pending entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodePending {
    pub request_id: String,
    pub node_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_mode: Option<String>,
    pub caps: Vec<String>,
    pub commands: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    pub silent: bool,
    pub ts: u64,
}

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
    recovered_from: Option<PathBuf>,
    /// Generation of the newest snapshot handed to the writer (assigned under `inner`'s lock).
    generation: AtomicU64,
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
        Ok(DeviceStore {
            writer: Writer::start(path.clone()),
            path,
            inner: Mutex::new(file),
            recovered_from,
            generation: AtomicU64::new(0),
        })
    }

    /// The generation of the newest change (compare before and after an operation to see
    /// whether it changed anything).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Waits until every change made so far is on disk; an error when the write failed
    /// (full disk, read-only card…) — then the change lives only in memory.
    pub async fn durable(&self) -> Result<(), DeviceStoreError> {
        if self.writer.slot.is_none() {
            return Ok(()); // no writer thread: persist() wrote in place
        }
        let target = self.generation();
        let mut rx = self.writer.flushed.clone();
        loop {
            if let Some(r) = self.outcome(&rx.borrow_and_update(), target) {
                return r;
            }
            if rx.changed().await.is_err() {
                return Err(DeviceStoreError::NotWritten {
                    path: self.path.clone(),
                    message: "the store's writer stopped".into(),
                });
            }
        }
    }

    /// What the writer's progress `f` says of generation `target`: `None` while not written.
    fn outcome(&self, f: &Flushed, target: u64) -> Option<Result<(), DeviceStoreError>> {
        (f.generation >= target).then(|| match &f.error {
            None => Ok(()),
            Some(message) => Err(DeviceStoreError::NotWritten {
                path: self.path.clone(),
                message: message.clone(),
            }),
        })
    }

    /// [`Self::durable`] for code outside the event loop (tests, shutdown), bounded by `within`.
    pub fn durable_blocking(&self, within: Duration) -> Result<(), DeviceStoreError> {
        if self.writer.slot.is_none() {
            return Ok(());
        }
        let target = self.generation();
        let deadline = Instant::now() + within;
        loop {
            if let Some(r) = self.outcome(&self.writer.flushed.borrow(), target) {
                return r;
            }
            if Instant::now() >= deadline {
                return Err(DeviceStoreError::NotWritten {
                    path: self.path.clone(),
                    message: format!("not on disk after {within:?}"),
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Where an unreadable store was moved at start-up, if that happened.
    pub fn recovered_from(&self) -> Option<&Path> {
        self.recovered_from.as_deref()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreFile> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a snapshot of `file` (called with `inner` locked, so generations follow the
    /// order of changes). Without a writer thread, writes in place.
    fn persist(&self, file: &StoreFile) -> Result<(), DeviceStoreError> {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        if self.writer.submit(generation, file.clone()) {
            return Ok(());
        }
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
}

/// What [`DeviceStore::request`] did.
#[derive(Debug, Clone)]
pub struct Requested {
    pub request: PendingRequest,
    /// False when an identical pending request was refreshed.
    pub created: bool,
}

/// Outcome of presenting a bootstrap token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapCheck {
    /// Valid for this device; the role and scopes it grants.
    Valid { role: String, scopes: Vec<String> },
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
    fn prune(file: &mut StoreFile, now_ms: u64) {
        file.pending
            .retain(|_, p| now_ms.saturating_sub(p.ts) < PENDING_TTL_MS);
        file.bootstrap.retain(|b| b.expires_at_ms > now_ms);
    }

    /// Creates or refreshes the pending request of `req.device_id` (one per device). An
    /// identical request keeps its id and `ts`; a different one replaces it with merged roles
    /// and scopes under a new id.
    pub fn request(
        &self,
        mut req: PendingRequest,
        now_ms: u64,
    ) -> Result<Requested, DeviceStoreError> {
        let mut file = self.lock();
        Self::prune(&mut file, now_ms);
        let existing = file
            .pending
            .values()
            .find(|p| p.device_id == req.device_id)
            .cloned();
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

    /// Pending requests and paired devices (without token hashes), for `device.pair.list`.
    pub fn list(&self, now_ms: u64) -> (Vec<PendingRequest>, Vec<PairedDevice>) {
        let mut file = self.lock();
        Self::prune(&mut file, now_ms);
        (
            file.pending.values().cloned().collect(),
            file.devices.values().cloned().collect(),
        )
    }

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

    // ---- node surface approvals ----------------------------------------------------------------

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

    /// Devices paired for role `node` (shown in `node.list` while offline).
    pub fn paired_nodes(&self) -> Vec<PairedDevice> {
        self.lock()
            .devices
            .values()
            .filter(|d| d.roles.iter().any(|r| r == "node"))
            .cloned()
            .collect()
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

    #[test]
    fn a_burst_of_changes_lands_and_a_failed_write_is_reported() {
        let dir = tmp("burst");
        let s = DeviceStore::open(&dir).unwrap();
        for i in 0..200 {
            s.approve(device(&format!("d{i}"), "k"), "node", &[])
                .unwrap();
        }
        s.durable_blocking(Duration::from_secs(10)).unwrap();
        let reopened = DeviceStore::open(&dir).unwrap();
        assert_eq!(reopened.len(), 200, "every change of the burst is on disk");
        drop(reopened);
        // The folder turns into a file: the next write fails, and a waiter hears of it.
        std::fs::remove_dir_all(dir.join("devices")).unwrap();
        std::fs::write(dir.join("devices"), b"not a folder").unwrap();
        s.approve(device("late", "k"), "node", &[]).unwrap();
        assert!(matches!(
            s.durable_blocking(Duration::from_secs(10)),
            Err(DeviceStoreError::NotWritten { .. })
        ));
        drop(s);
        std::fs::remove_dir_all(&dir).ok();
    }

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
