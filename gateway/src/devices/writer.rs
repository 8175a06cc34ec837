//! The store's durable group-commit writer: one thread that serialises the newest snapshot and
//! writes it crash-safely (temp file, fsync, rename, fsync of the folder), skipping the
//! snapshots it superseded; and the store's side of it: `DeviceStore::persist` queues a
//! snapshot, [`DeviceStore::durable`] waits until a change is on disk.
//!
//! When a write fails the writer rolls the store's memory back to the last snapshot it wrote
//! and drops the snapshot waiting behind it: memory is again what is on disk, and every change
//! made since that snapshot (up to the store's generation at the rollback) is reported as not
//! written. A change the operator was told failed therefore never reaches the disk with a
//! later write.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pincer_os::write_atomic;

use super::{DeviceStore, DeviceStoreError, StoreFile};

/// Rolled-back ranges remembered for waiters that wake late (each is a few words).
const FAILURES_KEPT: usize = 32;

/// Generations `after + 1 ..= through` were rolled back because a write failed.
#[derive(Debug, Clone)]
struct Failure {
    after: u64,
    through: u64,
    message: String,
}

/// How far the writer got: the newest generation on disk, and the recent rolled-back ranges.
#[derive(Debug, Clone, Default)]
struct Flushed {
    written: u64,
    failures: VecDeque<Failure>,
}

impl Flushed {
    /// What this says of generation `target`: `None` while neither written nor rolled back.
    fn outcome(&self, target: u64) -> Option<Result<(), String>> {
        if let Some(f) = self
            .failures
            .iter()
            .find(|f| f.after < target && target <= f.through)
        {
            return Some(Err(f.message.clone()));
        }
        (target <= self.written).then_some(Ok(()))
    }
}

/// The newest snapshot waiting for the writer: one slot, not a queue, so a burst of changes
/// holds at most one pending copy of the store however slow the card is.
#[derive(Debug, Default)]
struct Pending {
    next: Option<(u64, StoreFile)>,
    closed: bool,
}

type Slot = Arc<(Mutex<Pending>, Condvar)>;

/// The writer thread's end of the store.
#[derive(Debug)]
pub(super) struct Writer {
    slot: Option<Slot>,
    flushed: tokio::sync::watch::Receiver<Flushed>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the writer thread holds: the store's memory and generation counter (to roll them
/// back), and the last snapshot that reached the disk.
struct Thread {
    path: PathBuf,
    slot: Slot,
    inner: Arc<Mutex<StoreFile>>,
    generation: Arc<AtomicU64>,
    on_disk: StoreFile,
    flushed: tokio::sync::watch::Sender<Flushed>,
}

impl Thread {
    /// The next snapshot to write; `None` once the store is closed and nothing is pending.
    fn next(&self) -> Option<(u64, StoreFile)> {
        let (lock, ready) = &*self.slot;
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(next) = p.next.take() {
                return Some(next);
            }
            if p.closed {
                return None;
            }
            p = ready.wait(p).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn run(mut self) {
        while let Some((generation, file)) = self.next() {
            // Serialised here, off the event loop: with hundreds of devices the pretty JSON is
            // a few hundred KB.
            let bytes = serde_json::to_vec_pretty(&file).unwrap_or_default();
            match write_atomic(&self.path, &bytes) {
                Ok(()) => {
                    self.on_disk = file;
                    self.flushed.send_modify(|f| f.written = generation);
                }
                Err(e) => self.roll_back(e.to_string()),
            }
        }
    }

    /// Memory back to what is on disk; the pending snapshot (if any) dropped; every
    /// generation not on disk reported failed with `message`.
    fn roll_back(&self, message: String) {
        // Lock order as in `persist` (memory, then the slot): no change slips in between.
        let mut memory = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *memory = self.on_disk.clone();
        self.slot.0.lock().unwrap_or_else(|e| e.into_inner()).next = None;
        let through = self.generation.load(Ordering::SeqCst);
        drop(memory);
        tracing::error!(
            path = %self.path.display(), error = %message,
            "device store not written: changes since the last write undone"
        );
        self.flushed.send_modify(|f| {
            let after = f.written;
            if f.failures.len() == FAILURES_KEPT {
                f.failures.pop_front();
            }
            f.failures.push_back(Failure {
                after,
                through,
                message,
            });
        });
    }
}

impl Writer {
    /// Starts the writer thread for the store at `path`, whose disk content is `on_disk`.
    pub(super) fn start(
        path: PathBuf,
        on_disk: StoreFile,
        inner: Arc<Mutex<StoreFile>>,
        generation: Arc<AtomicU64>,
    ) -> Writer {
        let slot: Slot = Default::default();
        let (flushed_tx, flushed) = tokio::sync::watch::channel(Flushed::default());
        let thread = Thread {
            path,
            slot: slot.clone(),
            inner,
            generation,
            on_disk,
            flushed: flushed_tx,
        };
        let thread = std::thread::Builder::new()
            .name("device-store".into())
            .spawn(move || thread.run())
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
    /// (full disk, read-only card…) — then the change has been undone in memory too.
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
        f.outcome(target).map(|r| {
            r.map_err(|message| DeviceStoreError::NotWritten {
                path: self.path.clone(),
                message,
            })
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
        // ... and the change it could not write is undone: memory is what is on disk.
        assert_eq!(s.len(), 200, "the unwritten approval was rolled back");
        // Once the disk is back, the next change is written without the undone one.
        std::fs::remove_file(dir.join("devices")).unwrap();
        s.approve(device("after", "k"), "node", &[]).unwrap();
        s.durable_blocking(Duration::from_secs(10)).unwrap();
        drop(s);
        let reopened = DeviceStore::open(&dir).unwrap();
        assert_eq!(reopened.len(), 201);
        let (_, paired) = reopened.list(0);
        assert!(paired.iter().any(|d| d.device_id == "after"));
        assert!(
            !paired.iter().any(|d| d.device_id == "late"),
            "the approval reported as failed is not on disk"
        );
        drop(reopened);
        std::fs::remove_dir_all(&dir).ok();
    }
}
