//! The store's durable group-commit writer: one thread that serialises the newest snapshot and
//! writes it crash-safely (temp file, fsync, rename, fsync of the folder), skipping the
//! snapshots it superseded; and the store's side of it: `DeviceStore::persist` queues a
//! snapshot, [`DeviceStore::durable`] waits until a change is on disk.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use pincer_os::write_atomic;

use super::{DeviceStore, DeviceStoreError, StoreFile};

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
pub(super) struct Writer {
    slot: Option<Slot>,
    flushed: tokio::sync::watch::Receiver<Flushed>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub(super) fn start(path: PathBuf) -> Writer {
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

impl DeviceStore {
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

    /// Queues a snapshot of `file` (called with `inner` locked, so generations follow the
    /// order of changes). Without a writer thread, writes in place.
    pub(super) fn persist(&self, file: &StoreFile) -> Result<(), DeviceStoreError> {
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
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{device, tmp};
    use super::*;

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
}
