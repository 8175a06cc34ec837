//! One user of a camera at a time, and closing it after the answer.
//!
//! A V4L2 capture queue has one owner: a second open's `REQBUFS` fails with `EBUSY` until the
//! first file is closed. So snaps and clips on one device take turns through a [`Queue`], and
//! the turn lasts until the device is *closed*, not until the photo is in hand. Closing frees
//! the capture buffers (milliseconds on a small board), so [`close_later`] moves that onto a
//! low-priority thread: the photo goes out first, the device is released while the node waits
//! on the network, and the next snap waits for the release in [`Queue::take`].

use std::sync::{Arc, Condvar, Mutex};

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

/// Drops `device` (closing it), then `turn`, on a thread of its own at the lowest CPU
/// priority: on a one-core board it runs while the caller's thread waits for I/O. When no
/// thread can be started, both drop here.
pub fn close_later<T: Send + 'static>(device: T, turn: Turn) {
    // A thread that cannot start drops its closure, and with it both, before `spawn` returns.
    let _ = std::thread::Builder::new()
        .name("camera-close".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            lower_priority();
            drop(device);
            drop(turn);
        });
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
}
