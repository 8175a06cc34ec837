//! Durable ingress: an inbound update is on disk before the channel confirms it to its source
//! (for Telegram, before the `getUpdates` offset moves past it), and it leaves only once it has
//! been answered. Its record says how far it got, so a crash or a power cut at any point
//! replays it and answers it exactly once.
//!
//! One directory per account: `<id:020>.json` per update (written atomically: temp file,
//! `fsync`, rename), and `offset`, the highest id ever stored. The order of writes is: records,
//! then `offset`, then the drain may answer; so an id at or below `offset` without a record has
//! been answered, and one above it is new.
//!
//! Bounded: at most [`Limits::max_records`] records and [`Limits::max_bytes`] bytes of them.
//! A full ingress refuses new records ([`IngressError::Full`]); the poller then stops
//! confirming, and the source keeps the updates until there is room.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bounds of one account's ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Records kept at once.
    pub max_records: usize,
    /// Bytes of records kept at once.
    pub max_bytes: u64,
}

impl Default for Limits {
    /// 500 records, 8 MiB.
    fn default() -> Self {
        Limits {
            max_records: 500,
            max_bytes: 8 * 1024 * 1024,
        }
    }
}

/// How far an update got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum Progress {
    /// Stored, not yet looked at.
    Received,
    /// Its turn was started with this run id (a replay resumes that run's session).
    Started {
        /// The run id (derived from the update, so a replay starts the same id).
        run_id: String,
        /// The draft message being edited with the streamed reply, once sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        draft: Option<i64>,
        /// Reply pieces already delivered, text then photos (a replay sends only the rest).
        #[serde(default)]
        delivered: usize,
    },
}

/// One stored update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// The source's id (Telegram's `update_id`).
    pub id: i64,
    /// What it is answered in order with (Telegram: the chat id); records of one group are
    /// handed out oldest first.
    #[serde(default)]
    pub group: i64,
    /// When it was stored, ms.
    pub received_at: u64,
    /// How far it got.
    pub progress: Progress,
    /// The update as the source sent it.
    pub payload: Value,
}

/// What the ingress can fail with.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// The bounds are reached; try again once the drain caught up.
    #[error("ingress full ({records} records, {bytes} bytes)")]
    Full {
        /// Records held.
        records: usize,
        /// Bytes held.
        bytes: u64,
    },
    /// The disk refused.
    #[error("ingress {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

struct State {
    /// Record size and group by id (what the bounds and [`Ingress::next_of`] need, so neither
    /// reads the disk).
    sizes: BTreeMap<i64, (u64, i64)>,
    /// Highest id stored, ever.
    offset: Option<i64>,
}

/// One account's ingress directory.
pub struct Ingress {
    dir: PathBuf,
    limits: Limits,
    state: Mutex<State>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> IngressError + '_ {
    move |source| IngressError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Ingress {
    /// Opens (creating) `dir`. Unreadable or torn records are set aside as `*.bad` (logged),
    /// never silently dropped; leftover temp files are removed.
    pub fn open(dir: &Path, limits: Limits) -> Result<Ingress, IngressError> {
        pincer_os::ensure_private_dir(dir).map_err(io_err(dir))?;
        let offset_path = dir.join("offset");
        let offset = match std::fs::read_to_string(&offset_path) {
            Ok(s) => s.trim().parse::<i64>().ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&offset_path)(e)),
        };
        let mut sizes = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".json") else {
                if name.contains(".tmp") {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            };
            let Ok(id) = stem.parse::<i64>() else {
                continue;
            };
            match std::fs::read(&path).ok().and_then(|b| {
                serde_json::from_slice::<Record>(&b)
                    .ok()
                    .map(|r| (b.len(), r.group))
            }) {
                Some((len, group)) => {
                    sizes.insert(id, (len as u64, group));
                }
                None => {
                    tracing::warn!(file = %path.display(), "unreadable ingress record set aside");
                    let _ = std::fs::rename(&path, path.with_extension("bad"));
                }
            }
        }
        let offset = offset.max(sizes.keys().next_back().copied());
        Ok(Ingress {
            dir: dir.to_owned(),
            limits,
            state: Mutex::new(State { sizes, offset }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, id: i64) -> PathBuf {
        self.dir.join(format!("{id:020}.json"))
    }

    /// The highest id ever stored (the next poll asks for the ones after it).
    pub fn offset(&self) -> Option<i64> {
        self.lock().offset
    }

    /// Stores `payload` as update `id` of `group`, durably. `Ok(false)` when it is known already
    /// (stored, or answered: at or below the offset).
    pub fn push(&self, id: i64, group: i64, payload: Value) -> Result<bool, IngressError> {
        let mut st = self.lock();
        if st.sizes.contains_key(&id) || st.offset.is_some_and(|o| id <= o) {
            return Ok(false);
        }
        let rec = Record {
            id,
            group,
            received_at: pincer_os::now_ms(),
            progress: Progress::Received,
            payload,
        };
        let bytes = serde_json::to_vec(&rec).unwrap_or_default();
        let held: u64 = st.sizes.values().map(|(n, _)| n).sum();
        if st.sizes.len() >= self.limits.max_records
            || held + bytes.len() as u64 > self.limits.max_bytes
        {
            return Err(IngressError::Full {
                records: st.sizes.len(),
                bytes: held,
            });
        }
        let path = self.path(id);
        pincer_os::write_atomic(&path, &bytes).map_err(io_err(&path))?;
        st.sizes.insert(id, (bytes.len() as u64, group));
        Ok(true)
    }

    /// Records that the source may forget everything up to `id` (call after the records of a
    /// batch are stored, before the drain answers them).
    pub fn confirm(&self, id: i64) -> Result<(), IngressError> {
        let mut st = self.lock();
        if st.offset.is_some_and(|o| o >= id) {
            return Ok(());
        }
        let path = self.dir.join("offset");
        pincer_os::write_atomic(&path, id.to_string().as_bytes()).map_err(io_err(&path))?;
        st.offset = Some(id);
        Ok(())
    }

    fn read(&self, id: i64) -> Option<Record> {
        let b = std::fs::read(self.path(id)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// The stored records, oldest first (reads every one: for tests and tools, not the drain).
    pub fn pending(&self) -> Vec<Record> {
        let ids: Vec<i64> = self.lock().sizes.keys().copied().collect();
        ids.into_iter().filter_map(|id| self.read(id)).collect()
    }

    /// The groups with records waiting, by their oldest record.
    pub fn groups(&self) -> Vec<i64> {
        let st = self.lock();
        let mut out: Vec<i64> = Vec::new();
        for (_, g) in st.sizes.values() {
            if !out.contains(g) {
                out.push(*g);
            }
        }
        out
    }

    /// The oldest record of `group` (one file read).
    pub fn next_of(&self, group: i64) -> Option<Record> {
        let id = self
            .lock()
            .sizes
            .iter()
            .find(|(_, (_, g))| *g == group)
            .map(|(id, _)| *id)?;
        self.read(id)
    }

    /// Records of `group` waiting.
    pub fn count_of(&self, group: i64) -> usize {
        self.lock()
            .sizes
            .values()
            .filter(|(_, g)| *g == group)
            .count()
    }

    /// Rewrites a record's progress, durably.
    pub fn progress(&self, id: i64, progress: Progress) -> Result<(), IngressError> {
        let path = self.path(id);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let mut rec: Record = serde_json::from_slice(&bytes)
            .map_err(|e| io_err(&path)(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        rec.progress = progress;
        let bytes = serde_json::to_vec(&rec).unwrap_or_default();
        pincer_os::write_atomic(&path, &bytes).map_err(io_err(&path))?;
        self.lock()
            .sizes
            .insert(id, (bytes.len() as u64, rec.group));
        Ok(())
    }

    /// The update is answered: its record goes.
    pub fn done(&self, id: i64) -> Result<(), IngressError> {
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        self.lock().sizes.remove(&id);
        Ok(())
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.lock().sizes.len()
    }

    /// No records held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "pincer-ingress-{tag}-{}-{}",
            std::process::id(),
            pincer_os::uuid_v4()
        ));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn records_survive_a_reopen_and_answered_ids_are_not_taken_again() {
        let d = dir("reopen");
        let i = Ingress::open(&d, Limits::default()).unwrap();
        assert!(i.push(10, 0, json!({"update_id": 10})).unwrap());
        assert!(i.push(11, 0, json!({"update_id": 11})).unwrap());
        assert!(!i.push(10, 0, json!({})).unwrap(), "a duplicate");
        i.confirm(11).unwrap();
        i.progress(
            10,
            Progress::Started {
                run_id: "r".into(),
                draft: Some(5),
                delivered: 1,
            },
        )
        .unwrap();
        i.done(11).unwrap();
        drop(i);
        // A crash: reopen.
        let i = Ingress::open(&d, Limits::default()).unwrap();
        assert_eq!(i.offset(), Some(11));
        let p = i.pending();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].id, 10);
        assert!(matches!(
            p[0].progress,
            Progress::Started {
                draft: Some(5),
                delivered: 1,
                ..
            }
        ));
        assert!(
            !i.push(11, 0, json!({})).unwrap(),
            "answered before the crash"
        );
        assert!(i.push(12, 0, json!({})).unwrap());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn stored_but_unconfirmed_updates_are_known_after_a_crash() {
        let d = dir("unconfirmed");
        let i = Ingress::open(&d, Limits::default()).unwrap();
        assert!(i.push(7, 0, json!({})).unwrap());
        drop(i); // killed before confirm
        let i = Ingress::open(&d, Limits::default()).unwrap();
        assert_eq!(i.offset(), Some(7), "the poll resumes after it");
        assert!(!i.push(7, 0, json!({})).unwrap());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_full_ingress_refuses_and_a_torn_record_is_set_aside() {
        let d = dir("full");
        let limits = Limits {
            max_records: 2,
            max_bytes: 1024,
        };
        let i = Ingress::open(&d, limits).unwrap();
        i.push(1, 0, json!({})).unwrap();
        i.push(2, 0, json!({})).unwrap();
        assert!(matches!(
            i.push(3, 0, json!({})),
            Err(IngressError::Full { records: 2, .. })
        ));
        i.done(1).unwrap();
        assert!(matches!(
            i.push(4, 0, json!({ "text": "x".repeat(2000) })),
            Err(IngressError::Full { .. })
        ));
        assert!(i.push(4, 0, json!({})).unwrap());
        drop(i);
        std::fs::write(d.join(format!("{:020}.json", 2)), b"{\"id\":2,\"rece").unwrap();
        std::fs::write(d.join("x.json.tmp"), b"junk").unwrap();
        let i = Ingress::open(&d, limits).unwrap();
        assert_eq!(i.pending().len(), 1, "only the good record");
        assert!(d.join(format!("{:020}.bad", 2)).exists(), "kept for a look");
        assert!(!d.join("x.json.tmp").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn groups_come_out_oldest_first_and_survive_a_reopen() {
        let d = dir("groups");
        let i = Ingress::open(&d, Limits::default()).unwrap();
        i.push(1, 42, json!({"n": 1})).unwrap();
        i.push(2, 7, json!({"n": 2})).unwrap();
        i.push(3, 42, json!({"n": 3})).unwrap();
        assert_eq!(i.groups(), vec![42, 7]);
        assert_eq!(i.count_of(42), 2);
        assert_eq!(i.next_of(42).unwrap().id, 1);
        i.done(1).unwrap();
        drop(i);
        let i = Ingress::open(&d, Limits::default()).unwrap();
        assert_eq!(i.next_of(42).unwrap().payload, json!({"n": 3}));
        assert_eq!(i.count_of(42), 1);
        assert_eq!(i.groups(), vec![7, 42]);
        assert!(i.next_of(5).is_none());
        let _ = std::fs::remove_dir_all(&d);
    }
}
