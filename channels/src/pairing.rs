//! DM pairing, as the reference does it: a sender the channel does not know gets an 8-character
//! code (uppercase, without the look-alikes `0 O 1 I`), valid for an hour, at most three pending
//! per account; the owner approves it (`pincer-gateway pairing approve telegram <CODE>`, or the
//! WS method `channels.pairing.approve`) and from then on the sender is allowed.
//!
//! One JSON file per account (`pairing.json`, written atomically), holding the pending requests
//! and the approved senders. Bounded: [`MAX_PENDING`] requests, [`MAX_APPROVED`] senders.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// How long a code stays valid, ms.
pub const TTL_MS: u64 = 60 * 60 * 1000;
/// Pending requests per account.
pub const MAX_PENDING: usize = 3;
/// Approved senders kept per account.
pub const MAX_APPROVED: usize = 1000;
/// The code alphabet: 32 symbols, no `0 O 1 I`.
const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// One pending request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// Its id (a UUID).
    pub id: String,
    /// The code the sender was given.
    pub code: String,
    /// The sender's id on the channel.
    pub sender_id: String,
    /// What the channel calls the sender (name, `@username`).
    pub sender_name: String,
    /// Created, ms.
    pub created_at_ms: u64,
    /// Last message from the sender, ms.
    pub last_seen_at_ms: u64,
}

/// One approved sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approved {
    /// The sender's id on the channel.
    pub sender_id: String,
    /// Its name when approved.
    pub sender_name: String,
    /// Approved, ms.
    pub approved_at_ms: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    pending: Vec<Request>,
    #[serde(default)]
    approved: Vec<Approved>,
}

/// What asking for a code did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// A new request with this code.
    New(String),
    /// The sender's request was already pending: the same code.
    Pending(String),
    /// [`MAX_PENDING`] others are pending; the sender gets no code now.
    Full,
}

/// The pairing store failed to write.
#[derive(Debug, thiserror::Error)]
#[error("pairing store {path}: {source}")]
pub struct PairingError {
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    pub source: std::io::Error,
}

/// One account's pairing state.
pub struct Pairing {
    path: PathBuf,
    state: Mutex<File>,
}

impl Pairing {
    /// Opens `path` (a missing file is an empty store; an unreadable one is set aside as
    /// `.bad` and logged, and the store starts empty).
    pub fn open(path: &Path) -> Pairing {
        let state = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), "unreadable pairing store set aside: {e}");
                let _ = std::fs::rename(path, path.with_extension("bad"));
                File::default()
            }),
            Err(_) => File::default(),
        };
        Pairing {
            path: path.to_owned(),
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> MutexGuard<'_, File> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, f: &File) -> Result<(), PairingError> {
        let bytes = serde_json::to_vec_pretty(f).unwrap_or_default();
        pincer_os::write_atomic(&self.path, &bytes).map_err(|source| PairingError {
            path: self.path.clone(),
            source,
        })
    }

    /// Whether `sender_id` was approved.
    pub fn is_approved(&self, sender_id: &str) -> bool {
        self.lock()
            .approved
            .iter()
            .any(|a| a.sender_id == sender_id)
    }

    /// A code for `sender_id` (its pending one, or a new one when there is room).
    pub fn ask(&self, sender_id: &str, sender_name: &str, now: u64) -> Result<Asked, PairingError> {
        let mut f = self.lock();
        f.pending
            .retain(|r| now.saturating_sub(r.created_at_ms) < TTL_MS);
        if let Some(r) = f.pending.iter_mut().find(|r| r.sender_id == sender_id) {
            r.last_seen_at_ms = now;
            let code = r.code.clone();
            self.save(&f)?;
            return Ok(Asked::Pending(code));
        }
        if f.pending.len() >= MAX_PENDING {
            return Ok(Asked::Full);
        }
        let code = loop {
            let c = new_code();
            if !f.pending.iter().any(|r| r.code == c) {
                break c;
            }
        };
        f.pending.push(Request {
            id: pincer_os::uuid_v4(),
            code: code.clone(),
            sender_id: sender_id.to_owned(),
            sender_name: sender_name.chars().take(100).collect(),
            created_at_ms: now,
            last_seen_at_ms: now,
        });
        if let Err(e) = self.save(&f) {
            f.pending.pop();
            return Err(e);
        }
        Ok(Asked::New(code))
    }

    /// Pending requests still valid at `now`.
    pub fn pending(&self, now: u64) -> Vec<Request> {
        let f = self.lock();
        f.pending
            .iter()
            .filter(|r| now.saturating_sub(r.created_at_ms) < TTL_MS)
            .cloned()
            .collect()
    }

    /// Approved senders.
    pub fn approved(&self) -> Vec<Approved> {
        self.lock().approved.clone()
    }

    fn take(f: &mut File, code_or_id: &str, now: u64) -> Option<Request> {
        let want = code_or_id.trim();
        let i = f.pending.iter().position(|r| {
            now.saturating_sub(r.created_at_ms) < TTL_MS
                && (r.code.eq_ignore_ascii_case(want) || r.id == want)
        })?;
        Some(f.pending.remove(i))
    }

    /// Approves the request with this code (any case) or id; the request, `None` when there is
    /// no such valid request.
    pub fn approve(&self, code_or_id: &str, now: u64) -> Result<Option<Request>, PairingError> {
        let mut f = self.lock();
        let Some(r) = Self::take(&mut f, code_or_id, now) else {
            return Ok(None);
        };
        f.approved.retain(|a| a.sender_id != r.sender_id);
        f.approved.push(Approved {
            sender_id: r.sender_id.clone(),
            sender_name: r.sender_name.clone(),
            approved_at_ms: now,
        });
        if f.approved.len() > MAX_APPROVED {
            let over = f.approved.len() - MAX_APPROVED;
            f.approved.drain(..over);
        }
        self.save(&f)?;
        Ok(Some(r))
    }

    /// Drops the request with this code or id without approving it.
    pub fn dismiss(&self, code_or_id: &str, now: u64) -> Result<Option<Request>, PairingError> {
        let mut f = self.lock();
        let r = Self::take(&mut f, code_or_id, now);
        if r.is_some() {
            self.save(&f)?;
        }
        Ok(r)
    }
}

/// 8 symbols of [`ALPHABET`] from the OS's randomness (32 divides 256: no bias).
fn new_code() -> String {
    let hex = pincer_os::uuid_v4().replace('-', "");
    hex.as_bytes()
        .chunks(2)
        .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        // The UUID's version and variant nibbles are fixed: skip those bytes.
        .enumerate()
        .filter(|(i, _)| *i != 6 && *i != 8)
        .map(|(_, b)| ALPHABET[(b % 32) as usize] as char)
        .take(8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(tag: &str) -> (Pairing, PathBuf) {
        let d = std::env::temp_dir().join(format!(
            "pincer-pairing-{tag}-{}-{}",
            std::process::id(),
            pincer_os::uuid_v4()
        ));
        (Pairing::open(&d.join("pairing.json")), d)
    }

    #[test]
    fn codes_look_right() {
        for _ in 0..200 {
            let c = new_code();
            assert_eq!(c.len(), 8);
            assert!(c.bytes().all(|b| ALPHABET.contains(&b)), "{c}");
        }
    }

    #[test]
    fn a_stranger_gets_one_code_three_at_most_and_approval_sticks() {
        let (p, d) = store("flow");
        let Asked::New(code) = p.ask("42", "Ann", 1_000).unwrap() else {
            panic!()
        };
        assert_eq!(
            p.ask("42", "Ann", 2_000).unwrap(),
            Asked::Pending(code.clone())
        );
        assert!(matches!(p.ask("43", "Bo", 2_000).unwrap(), Asked::New(_)));
        assert!(matches!(p.ask("44", "Cy", 2_000).unwrap(), Asked::New(_)));
        assert_eq!(p.ask("45", "Di", 2_000).unwrap(), Asked::Full);
        assert!(!p.is_approved("42"));
        let r = p.approve(&code.to_lowercase(), 3_000).unwrap().unwrap();
        assert_eq!(r.sender_id, "42");
        assert!(p.is_approved("42"));
        assert_eq!(p.approve(&code, 3_000).unwrap(), None, "used up");
        // Reopened (a restart): still approved, two still pending.
        let p = Pairing::open(&d.join("pairing.json"));
        assert!(p.is_approved("42"));
        assert_eq!(p.pending(3_000).len(), 2);
        // An hour later the codes are gone and there is room again.
        assert!(p.pending(2_000 + TTL_MS).is_empty());
        assert!(matches!(
            p.ask("45", "Di", 2_000 + TTL_MS).unwrap(),
            Asked::New(_)
        ));
        let _ = std::fs::remove_dir_all(&d);
    }
}
