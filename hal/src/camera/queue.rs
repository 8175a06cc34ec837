//! One user of a camera at a time, and closing it after the answer.
//!
//! A V4L2 capture queue has one owner: a second open's `REQBUFS` fails with `EBUSY` until the
//! first file is closed. So snaps and clips on one device take turns through a [`Queue`], and
//! the turn lasts until the device is *closed*, not until the photo is in hand. Closing frees
//! the capture buffers (milliseconds on a small board), so [`close_later`] moves that onto a
//! low-priority thread: the photo goes out first, the device is released while the node waits
//! on the network, and the next snap waits for the release in [`Queue::take`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// One [`Queue`] per device ever used (a handful of names: device nodes, libcamera ids).
#[derive(Debug, Clone, Default)]
pub struct Queues(Arc<Mutex<HashMap<String, Arc<Queue>>>>);

impl Queues {
    /// The queue of the device `name`.
    pub fn of(&self, name: &str) -> Arc<Queue> {
        let mut queues = self.0.lock().unwrap_or_else(|p| p.into_inner());
        queues.entry(name.to_owned()).or_default().clone()
    }
}

/// The turn-taking of one device.
#[derive(Debug, Default)]
pub struct Queue {
    busy: Mutex<bool>,
    freed: Condvar,
}

/// A turn on a [`Queue`]; the next caller goes when this is dropped (on any thread).
#[derive(Debug)]
pub struct Turn(Arc<Queue>);

impl Queue {
    /// Waits for the device to be free, then holds it until the returned [`Turn`] drops.
    pub fn take(queue: &Arc<Queue>) -> Turn {
        let mut busy = queue.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy {
            busy = queue.freed.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
        *busy = true;
        Turn(queue.clone())
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.0.freed.notify_one();
    }
}

/// Drops `device` (closing it), then `turn`, on the closing thread at the lowest CPU
/// priority: on a one-core board it runs while the caller's thread waits for I/O. The thread
/// starts with the first close and stays (starting one per photo costs a snap a millisecond or
/// two on a small board). At most [`CLOSE_QUEUE`] closes wait for it; beyond that, or when no
/// thread can be started, both drop here.
pub fn close_later<T: Send + 'static>(device: T, turn: Turn) {
    let job: Job = Box::new(move || {
        drop(device);
        drop(turn);
    });
    let refused = match closer() {
        Some(c) => {
            let mut jobs = c.jobs.lock().unwrap_or_else(|p| p.into_inner());
            if jobs.len() < CLOSE_QUEUE {
                jobs.push_back(job);
                c.ready.notify_one();
                None
            } else {
                Some(job)
            }
        }
        None => Some(job),
    };
    if let Some(job) = refused {
        job();
    }
}

/// Closes waiting for the closing thread (one per camera at most in practice: each holds its
/// device's turn).
pub const CLOSE_QUEUE: usize = 8;

type Job = Box<dyn FnOnce() + Send>;

/// The closing thread's queue (a mutex and a condvar: `std::sync::mpsc` would add tens of KB
/// to the node for one queue).
struct Closer {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

/// The closing thread's queue, its thread started on first use; `None` if it could not start.
fn closer() -> Option<&'static Closer> {
    static CLOSER: Closer = Closer {
        jobs: Mutex::new(VecDeque::new()),
        ready: Condvar::new(),
    };
    static STARTED: OnceLock<bool> = OnceLock::new();
    let c = &CLOSER;
    let started = *STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("camera-close".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                lower_priority();
                loop {
                    let job = {
                        let mut jobs = c.jobs.lock().unwrap_or_else(|p| p.into_inner());
                        loop {
                            match jobs.pop_front() {
                                Some(job) => break job,
                                None => {
                                    jobs = c.ready.wait(jobs).unwrap_or_else(|p| p.into_inner())
                                }
                            }
                        }
                    };
                    job();
                }
            })
            .is_ok()
    });
    started.then_some(c)
}

/// Nice 19 for the calling thread (Linux: `setpriority` on a thread id is per thread).
fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread; failure only leaves the priority as is.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Tells when it is dropped (the "device closed").
    struct Closed(mpsc::Sender<&'static str>);
    impl Drop for Closed {
        fn drop(&mut self) {
            let _ = self.0.send("closed");
        }
    }

    #[test]
    fn the_next_turn_starts_after_the_close() {
        let q = Arc::new(Queue::default());
        let (tx, rx) = mpsc::channel();
        let turn = Queue::take(&q);
        // A second user waits while the first still holds the device.
        let waiter = {
            let (q, tx) = (q.clone(), tx.clone());
            std::thread::spawn(move || {
                let _t = Queue::take(&q);
                let _ = tx.send("second");
            })
        };
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        close_later(Closed(tx), turn);
        // Whatever the threads' timing, the close comes first.
        assert_eq!(rx.recv().ok(), Some("closed"));
        assert_eq!(rx.recv().ok(), Some("second"));
        waiter.join().ok();
        // And the queue is free again.
        let _again = Queue::take(&q);
    }

    /// Blocks its dropping thread until told to go.
    struct Gate(mpsc::Receiver<()>);
    impl Drop for Gate {
        fn drop(&mut self) {
            let _ = self.0.recv_timeout(Duration::from_secs(10));
        }
    }

    #[test]
    fn closes_beyond_the_bound_happen_in_place() {
        let (go, gate) = mpsc::channel();
        close_later(Gate(gate), Queue::take(&Arc::new(Queue::default())));
        // The closing thread is stuck in the gate: closes queue up to CLOSE_QUEUE, then the
        // caller closes in place (the drop has happened when close_later returns).
        let (tx, rx) = mpsc::channel();
        let mut queued = 0;
        loop {
            close_later(Closed(tx.clone()), Queue::take(&Arc::new(Queue::default())));
            if rx.try_recv().is_ok() {
                break;
            }
            queued += 1;
            assert!(queued <= CLOSE_QUEUE + 1, "{queued} closes queued");
        }
        let _ = go.send(());
        for _ in 0..queued {
            assert_eq!(
                rx.recv_timeout(Duration::from_secs(10)).ok(),
                Some("closed")
            );
        }
    }
}
