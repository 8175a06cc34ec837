//! The session store: which sessions exist (an index written atomically) and what was said in
//! each (an append-only JSON-lines transcript per session).
//!
//! Why files and not SQLite: the binary stays small (no C library, static musl builds keep
//! working) and an SD card sees one small append and one `fdatasync` per message, plus one
//! index rewrite (a few KB) per run. A line is `{"seq":N,"message":{…}}\n`; a line cut by a
//! power cut or kill -9 (no newline, or not JSON) is dropped on the next read and cut off
//! before the next append, so history is never corrupted: at most the message being written
//! is lost. The partial text of a streaming reply is never written: a run that dies loses only
//! its own unfinished reply.
//!
//! Bounds (documented in ARCHITECTURE.md): at most [`Limits::max_sessions`] sessions (the least
//! recently updated one that is not a main session is deleted to make room), at most
//! [`Limits::max_transcript_bytes`] per transcript (past it the oldest turns are dropped,
//! atomically, down to half), one image at most [`MAX_IMAGE_BYTES`].

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::transcript::Message;

/// Base64 bytes of one image kept in a transcript; larger ones are replaced by a note.
pub const MAX_IMAGE_BYTES: usize = 4 * 1024 * 1024;

/// Store bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Sessions kept.
    pub max_sessions: usize,
    /// Bytes of one transcript file.
    pub max_transcript_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 200,
            max_transcript_bytes: 8 * 1024 * 1024,
        }
    }
}

/// The store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("session store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// No such session.
    #[error("session not found")]
    NotFound,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What the index keeps about one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionEntry {
    /// `agent:main:main`, …
    pub key: String,
    /// The id of its transcript (a UUID; kept across `sessions.reset`, as the reference does).
    pub session_id: String,
    /// Created, ms.
    pub created_at: u64,
    /// Last message, ms.
    pub updated_at: u64,
    /// `operator`, `run`, `channel`, …
    pub created_via: String,
    /// A label set with `sessions.patch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `<provider>/<model>` set with `sessions.patch {model}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_override: Option<String>,
    /// Bumped by every reset.
    #[serde(default)]
    pub lifecycle_revision: u64,
    /// Transcript entries (the next one gets `messages + 1` as its seq).
    #[serde(default)]
    pub messages: u64,
    /// Bytes of the transcript file that are known good.
    #[serde(default)]
    pub bytes: u64,
    /// The last text said, cut to 200 characters, for lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_preview: Option<String>,
    /// Tokens the last run used.
    #[serde(default)]
    pub input_tokens: u64,
    /// Tokens the last run produced.
    #[serde(default)]
    pub output_tokens: u64,
    /// How the last finished run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
}

/// The last finished run of a session, for lists (`status: "failed"`, `lastRunError`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    /// Its id.
    pub run_id: String,
    /// `ok`, `error` or `aborted`.
    pub status: String,
    /// What went wrong, cut to 500 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Started, ms.
    pub started_at: u64,
    /// Ended, ms.
    pub ended_at: u64,
}

/// One transcript line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Line {
    /// 1-based position in the transcript.
    pub seq: u64,
    /// The entry.
    pub message: Message,
}

#[derive(Serialize, Deserialize, Default)]
struct Index {
    version: u32,
    sessions: Vec<SessionEntry>,
}

/// The store: an index in memory (written through) and transcripts on disk.
pub struct Store {
    dir: PathBuf,
    limits: Limits,
    sessions: Mutex<HashMap<String, SessionEntry>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// Opens (or creates) the store in `dir`, checking each transcript against the index (a
    /// transcript that grew after the index was last written is counted again).
    pub fn open(dir: &Path, limits: Limits) -> Result<Store, StoreError> {
        pincer_os::ensure_private_dir(dir).map_err(io_err(dir))?;
        let index_path = dir.join("sessions.json");
        let index: Index = match fs::read(&index_path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!(path = %index_path.display(), error = %e, "session index unreadable; rebuilt empty");
                Index::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Index::default(),
            Err(e) => return Err(io_err(&index_path)(e)),
        };
        let store = Store {
            dir: dir.to_owned(),
            limits,
            sessions: Mutex::new(HashMap::new()),
        };
        let mut map = HashMap::new();
        for mut e in index.sessions {
            let path = store.transcript_path(&e.session_id);
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if len != e.bytes {
                let (lines, good) = read_lines(&path)?;
                e.messages = lines.last().map_or(0, |l| l.seq);
                e.bytes = good;
                if let Some(l) = lines.last() {
                    e.updated_at = e.updated_at.max(l.message.timestamp());
                }
            }
            map.insert(e.key.clone(), e);
        }
        *lock(&store.sessions) = map;
        Ok(store)
    }

    /// Where the store lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn transcript_path(&self, session_id: &str) -> PathBuf {
        self.dir.join(format!("{session_id}.jsonl"))
    }

    fn write_index(&self, map: &HashMap<String, SessionEntry>) -> Result<(), StoreError> {
        let mut sessions: Vec<SessionEntry> = map.values().cloned().collect();
        sessions.sort_by(|a, b| a.key.cmp(&b.key));
        let index = Index {
            version: 1,
            sessions,
        };
        let path = self.dir.join("sessions.json");
        let bytes = serde_json::to_vec(&index).unwrap_or_default();
        pincer_os::write_atomic(&path, &bytes).map_err(io_err(&path))
    }

    /// The entry of `key`.
    pub fn get(&self, key: &str) -> Option<SessionEntry> {
        lock(&self.sessions).get(key).cloned()
    }

    /// Every entry, most recently updated first.
    pub fn list(&self) -> Vec<SessionEntry> {
        let mut v: Vec<SessionEntry> = lock(&self.sessions).values().cloned().collect();
        v.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.key.cmp(&b.key)));
        v
    }

    /// The entry of `key`, created (`created_via`) if missing. `Ok((entry, created))`.
    pub fn ensure(
        &self,
        key: &str,
        created_via: &str,
        now: u64,
    ) -> Result<(SessionEntry, bool), StoreError> {
        let mut map = lock(&self.sessions);
        if let Some(e) = map.get(key) {
            return Ok((e.clone(), false));
        }
        let entry = SessionEntry {
            key: key.to_owned(),
            session_id: pincer_os::uuid_v4(),
            created_at: now,
            updated_at: now,
            created_via: created_via.to_owned(),
            label: None,
            model_override: None,
            lifecycle_revision: 0,
            messages: 0,
            bytes: 0,
            last_preview: None,
            input_tokens: 0,
            output_tokens: 0,
            last_run: None,
        };
        map.insert(key.to_owned(), entry.clone());
        let evicted = self.evict(&mut map);
        if let Err(e) = self.write_index(&map) {
            map.remove(key);
            return Err(e);
        }
        drop(map);
        for id in evicted {
            let _ = fs::remove_file(self.transcript_path(&id));
        }
        Ok((entry, true))
    }

    /// Past `max_sessions`: the least recently updated sessions that are not `…:main` go.
    fn evict(&self, map: &mut HashMap<String, SessionEntry>) -> Vec<String> {
        let mut gone = Vec::new();
        while map.len() > self.limits.max_sessions {
            let victim = map
                .values()
                .filter(|e| !e.key.ends_with(":main"))
                .min_by_key(|e| e.updated_at)
                .map(|e| e.key.clone());
            match victim.and_then(|k| map.remove(&k)) {
                Some(e) => {
                    tracing::info!(key = %e.key, "session pruned (max_sessions)");
                    gone.push(e.session_id);
                }
                None => break,
            }
        }
        gone
    }

    /// Changes an entry with `f` and writes the index.
    pub fn update(
        &self,
        key: &str,
        f: impl FnOnce(&mut SessionEntry),
    ) -> Result<SessionEntry, StoreError> {
        let mut map = lock(&self.sessions);
        let before = map.get(key).cloned().ok_or(StoreError::NotFound)?;
        let e = map.get_mut(key).ok_or(StoreError::NotFound)?;
        f(e);
        let after = e.clone();
        if let Err(err) = self.write_index(&map) {
            map.insert(key.to_owned(), before);
            return Err(err);
        }
        Ok(after)
    }

    /// Deletes a session and its transcript.
    pub fn delete(&self, key: &str) -> Result<SessionEntry, StoreError> {
        let mut map = lock(&self.sessions);
        let e = map.remove(key).ok_or(StoreError::NotFound)?;
        if let Err(err) = self.write_index(&map) {
            map.insert(key.to_owned(), e);
            return Err(err);
        }
        drop(map);
        let _ = fs::remove_file(self.transcript_path(&e.session_id));
        Ok(e)
    }

    /// Appends `message` to `key`'s transcript, durably (`fdatasync`), and returns its seq. A
    /// torn line left by a crash is cut off first. The index is not rewritten (see
    /// [`Store::checkpoint`]).
    pub fn append(&self, key: &str, message: &Message) -> Result<u64, StoreError> {
        let mut map = lock(&self.sessions);
        let e = map.get_mut(key).ok_or(StoreError::NotFound)?;
        let path = self.transcript_path(&e.session_id);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let len = f.metadata().map_err(io_err(&path))?.len();
        if len != e.bytes {
            // A torn tail (or a file shorter than known, after manual edits): cut to what is good.
            let (lines, good) = read_lines(&path)?;
            f.set_len(good).map_err(io_err(&path))?;
            e.bytes = good;
            e.messages = lines.last().map_or(0, |l| l.seq);
        }
        let seq = e.messages + 1;
        let mut message = message.clone();
        clamp_images(&mut message);
        let (at, preview) = (message.timestamp(), preview_of(&message));
        let mut line = serde_json::to_vec(&Line { seq, message }).unwrap_or_default();
        line.push(b'\n');
        let written = f.write_all(&line).and_then(|()| f.sync_data());
        if let Err(err) = written {
            let _ = f.set_len(e.bytes);
            return Err(io_err(&path)(err));
        }
        e.bytes += line.len() as u64;
        e.messages = seq;
        e.updated_at = e.updated_at.max(at);
        if let Some(p) = preview {
            e.last_preview = Some(p);
        }
        let over = e.bytes > self.limits.max_transcript_bytes;
        let session_id = e.session_id.clone();
        drop(map);
        if over {
            self.compact(key, &session_id)?;
        }
        Ok(seq)
    }

    /// Writes the index (after a run: counts, previews, tokens).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let map = lock(&self.sessions);
        self.write_index(&map)
    }

    /// Drops the oldest turns of a transcript down to half the bound, atomically, starting at
    /// a user turn so that no tool result loses its call.
    fn compact(&self, key: &str, session_id: &str) -> Result<(), StoreError> {
        let path = self.transcript_path(session_id);
        let (lines, _) = read_lines(&path)?;
        let budget = self.limits.max_transcript_bytes / 2;
        let mut keep_from = lines.len();
        let mut total = 0u64;
        for (i, l) in lines.iter().enumerate().rev() {
            total += serde_json::to_vec(l).map_or(0, |v| v.len() as u64 + 1);
            if total > budget {
                break;
            }
            if matches!(l.message, Message::User { .. } | Message::Reset { .. }) {
                keep_from = i;
            }
        }
        let mut out = Vec::new();
        for l in &lines[keep_from..] {
            if let Ok(v) = serde_json::to_vec(l) {
                out.extend_from_slice(&v);
                out.push(b'\n');
            }
        }
        pincer_os::write_atomic(&path, &out).map_err(io_err(&path))?;
        let mut map = lock(&self.sessions);
        if let Some(e) = map.get_mut(key) {
            e.bytes = out.len() as u64;
        }
        tracing::info!(
            key,
            dropped = keep_from,
            "transcript compacted (max_transcript_bytes)"
        );
        Ok(())
    }

    /// Every good line of `key`'s transcript.
    pub fn transcript(&self, key: &str) -> Result<Vec<Line>, StoreError> {
        let id = self.get(key).ok_or(StoreError::NotFound)?.session_id;
        Ok(read_lines(&self.transcript_path(&id))?.0)
    }

    /// Replaces the transcript with a reset marker (`sessions.reset`): same session id, a new
    /// lifecycle revision.
    pub fn reset(&self, key: &str, now: u64) -> Result<SessionEntry, StoreError> {
        let e = self.get(key).ok_or(StoreError::NotFound)?;
        let path = self.transcript_path(&e.session_id);
        let line = Line {
            seq: 1,
            message: Message::Reset { timestamp: now },
        };
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        pincer_os::write_atomic(&path, &bytes).map_err(io_err(&path))?;
        self.update(key, |e| {
            e.lifecycle_revision += 1;
            e.messages = 1;
            e.bytes = bytes.len() as u64;
            e.updated_at = now;
            e.last_preview = None;
        })
    }
}

fn preview_of(m: &Message) -> Option<String> {
    let text = match m {
        Message::User { text, .. } => crate::transcript::as_typed(text),
        Message::Assistant { text, .. } => text.clone(),
        _ => return None,
    };
    if text.is_empty() {
        return None;
    }
    Some(text.chars().take(200).collect())
}

fn clamp_images(m: &mut Message) {
    let images = match m {
        Message::User { images, .. } | Message::ToolResult { images, .. } => images,
        _ => return,
    };
    images.retain(|i| {
        let keep = i.data.len() <= MAX_IMAGE_BYTES;
        if !keep {
            tracing::warn!(
                bytes = i.data.len(),
                "image too large for the transcript; dropped"
            );
        }
        keep
    });
}

/// The good lines of a transcript and the byte length they span.
fn read_lines(path: &Path) -> Result<(Vec<Line>, u64), StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut lines = Vec::new();
    let mut good = 0usize;
    let mut start = 0usize;
    while let Some(nl) = bytes[start..].iter().position(|&b| b == b'\n') {
        let end = start + nl;
        match serde_json::from_slice::<Line>(&bytes[start..end]) {
            Ok(l) => {
                lines.push(l);
                good = end + 1;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), at = start, error = %e, "transcript line unreadable; history kept up to it");
                break;
            }
        }
        start = end + 1;
    }
    Ok((lines, good as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::StopReason;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pincer-store-{tag}-{}", pincer_os::uuid_v4()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn user(t: &str, at: u64) -> Message {
        Message::User {
            text: t.into(),
            images: vec![],
            timestamp: at,
            run_id: None,
        }
    }

    fn texts(s: &Store, key: &str) -> Vec<String> {
        s.transcript(key)
            .unwrap()
            .into_iter()
            .map(|l| match l.message {
                Message::User { text, .. } | Message::Assistant { text, .. } => text,
                _ => "-".into(),
            })
            .collect()
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_cut_before_the_next_append() {
        let d = dir("torn");
        let s = Store::open(&d, Limits::default()).unwrap();
        let (e, created) = s.ensure("agent:main:main", "operator", 1).unwrap();
        assert!(created);
        s.append("agent:main:main", &user("one", 1)).unwrap();
        s.append("agent:main:main", &user("two", 2)).unwrap();
        s.checkpoint().unwrap();
        // A power cut in the middle of the third line.
        let path = d.join(format!("{}.jsonl", e.session_id));
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"seq":3,"message":{"role":"user","te"#)
            .unwrap();
        drop(f);
        let s = Store::open(&d, Limits::default()).unwrap();
        assert_eq!(texts(&s, "agent:main:main"), ["one", "two"]);
        assert_eq!(s.get("agent:main:main").unwrap().messages, 2);
        assert_eq!(s.append("agent:main:main", &user("three", 3)).unwrap(), 3);
        assert_eq!(texts(&s, "agent:main:main"), ["one", "two", "three"]);
        let s = Store::open(&d, Limits::default()).unwrap();
        assert_eq!(texts(&s, "agent:main:main"), ["one", "two", "three"]);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn the_least_recently_updated_session_makes_room_but_main_stays() {
        let d = dir("evict");
        let limits = Limits {
            max_sessions: 3,
            ..Limits::default()
        };
        let s = Store::open(&d, limits).unwrap();
        s.ensure("agent:main:main", "operator", 1).unwrap();
        for (i, k) in ["agent:main:a", "agent:main:b", "agent:main:c"]
            .iter()
            .enumerate()
        {
            s.ensure(k, "operator", 10 + i as u64).unwrap();
            s.append(k, &user("x", 10 + i as u64)).unwrap();
        }
        let keys: Vec<String> = s.list().into_iter().map(|e| e.key).collect();
        assert_eq!(keys.len(), 3);
        assert!(keys.contains(&"agent:main:main".to_owned()));
        assert!(!keys.contains(&"agent:main:a".to_owned()), "{keys:?}");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_transcript_over_its_bound_keeps_its_newest_turns() {
        let d = dir("compact");
        let limits = Limits {
            max_transcript_bytes: 8 * 1024,
            ..Limits::default()
        };
        let s = Store::open(&d, limits).unwrap();
        s.ensure("agent:main:main", "operator", 1).unwrap();
        for i in 0..100u64 {
            s.append(
                "agent:main:main",
                &user(&format!("q{i} {}", "x".repeat(100)), i),
            )
            .unwrap();
            s.append(
                "agent:main:main",
                &Message::Assistant {
                    text: format!("a{i}"),
                    tool_calls: vec![],
                    stop_reason: StopReason::Stop,
                    model: "p/m".into(),
                    usage: Default::default(),
                    timestamp: i,
                    run_id: None,
                },
            )
            .unwrap();
        }
        let t = texts(&s, "agent:main:main");
        assert!(t.len() < 200 && t.len() > 10, "{}", t.len());
        assert!(t[0].starts_with('q'), "starts at a user turn: {}", t[0]);
        assert_eq!(t.last().unwrap(), "a99");
        let on_disk = fs::metadata(d.join(format!(
            "{}.jsonl",
            s.get("agent:main:main").unwrap().session_id
        )))
        .unwrap()
        .len();
        assert!(on_disk <= 8 * 1024, "{on_disk}");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn reset_keeps_the_session_id_and_leaves_a_marker() {
        let d = dir("reset");
        let s = Store::open(&d, Limits::default()).unwrap();
        let (e, _) = s.ensure("agent:main:main", "operator", 1).unwrap();
        s.append("agent:main:main", &user("before", 1)).unwrap();
        let after = s.reset("agent:main:main", 5).unwrap();
        assert_eq!(after.session_id, e.session_id);
        assert_eq!(after.lifecycle_revision, 1);
        assert_eq!(texts(&s, "agent:main:main"), ["-"]);
        let _ = fs::remove_dir_all(&d);
    }
}
