//! Presence: who is connected (and who sent a beacon lately), the gateway's own entry first.
//!
//! Entries of live connections never expire; beacons from `system-event` expire after
//! [`PRESENCE_TTL_MS`]. At most [`PRESENCE_MAX`] entries are kept. The caller (the hub) bumps
//! `stateVersion.presence` and broadcasts after a change.

use std::sync::{Mutex, MutexGuard};

use pincer_protocol::connect::PresenceEntry;

use crate::{now_ms, IMPLEMENTATION, VERSION};

/// Presence beacons (from `system-event`) expire after this.
pub const PRESENCE_TTL_MS: u64 = 5 * 60 * 1000;
/// At most this many presence entries (besides the gateway's own).
pub const PRESENCE_MAX: usize = 200;

/// Client metadata in a presence entry (`displayName`, `version`, `platform`, …) is cut to
/// this many bytes: every presence event carries every entry to every connection.
pub const PRESENCE_FIELD_MAX: usize = 256;

/// `s` cut to [`PRESENCE_FIELD_MAX`] bytes at a character boundary.
pub fn clip_field(s: &str) -> &str {
    pincer_protocol::clip(s, PRESENCE_FIELD_MAX)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The presence list.
#[derive(Debug)]
pub struct Presence {
    host: String,
    instance_id: String,
    /// `linux <kernel release>`, read once (every presence list and hello-ok carries it).
    platform: String,
    entries: Mutex<Vec<(String, PresenceEntry, bool)>>,
}

impl Presence {
    /// The list with the gateway's own entry for `host` and `instance_id`.
    pub fn new(host: String, instance_id: String) -> Presence {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Presence {
            host,
            instance_id,
            platform: format!("linux {kernel}").trim().to_owned(),
            entries: Mutex::new(Vec::new()),
        }
    }

    fn self_entry(&self) -> PresenceEntry {
        PresenceEntry {
            host: Some(self.host.clone()),
            version: Some(VERSION.into()),
            platform: Some(self.platform.clone()),
            device_family: Some("Linux".into()),
            mode: Some("gateway".into()),
            reason: Some("self".into()),
            instance_id: Some(self.instance_id.clone()),
            text: Some(format!(
                "Gateway: {} · {IMPLEMENTATION} {VERSION} · mode gateway · reason self",
                self.host
            )),
            ts: now_ms(),
            ..Default::default()
        }
    }

    /// The current list, the gateway's own entry first.
    pub fn list(&self) -> Vec<PresenceEntry> {
        let now = now_ms();
        let mut p = lock(&self.entries);
        p.retain(|(_, e, connected)| *connected || now.saturating_sub(e.ts) < PRESENCE_TTL_MS);
        let mut out = vec![self.self_entry()];
        out.extend(p.iter().map(|(_, e, _)| e.clone()));
        out
    }

    /// Adds or replaces the entry `key`; `connected` entries do not expire.
    pub fn upsert(&self, key: String, entry: PresenceEntry, connected: bool) {
        let mut p = lock(&self.entries);
        p.retain(|(k, _, _)| *k != key);
        if p.len() >= PRESENCE_MAX {
            // Evict the oldest beacon (a connected entry only if there is no beacon).
            let i = p.iter().position(|(_, _, c)| !c).unwrap_or(0);
            p.remove(i);
        }
        p.push((key, entry, connected));
    }

    /// Removes the entry `key`; true when there was one.
    pub fn remove(&self, key: &str) -> bool {
        let mut p = lock(&self.entries);
        let before = p.len();
        p.retain(|(k, _, _)| k != key);
        before != p.len()
    }
}
