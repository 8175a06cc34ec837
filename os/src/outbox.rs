//! One connection's outbound queue, bounded in frames *and* bytes; the gateway keeps one per
//! client, the node one for its link.
//!
//! Producers (replies, broadcasts, invoke results) never wait: [`Outbox::push`]
//! either queues a frame or says the queue is full, and the caller decides (a droppable event is
//! skipped, anything else closes the connection as a slow consumer). The connection's writer is
//! the only consumer: it takes a frame with [`Outbox::next`], writes it, then calls
//! [`Outbox::sent`]. The frame being written still counts against the byte budget until then, so
//! what one connection holds is at most `max_bytes` (or one frame, when a single frame is larger
//! than the budget and the queue was empty), whatever its peer does.
//!
//! Outboxes made [`Outbox::with_total`] also share one [`Total`] budget: the bytes all of them
//! hold together. Past it a frame is refused (like a per-connection overflow) unless its outbox
//! holds nothing, so however many peers stop reading, the process holds at most the total plus
//! one frame per connection that is otherwise idle.
//!
//! A reader that answers a request [`Outbox::reserve`]s the reply's place first: events that
//! handling the request causes (`device.pair.resolved`, …) queue behind it, so a client hears
//! the answer to its request before the events it caused, as it did when replies were written
//! directly.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Full {
    /// The frame would take the buffered bytes past the budget.
    #[error("outbound bytes over budget ({buffered} buffered + {frame} > {max})")]
    Bytes {
        /// Bytes already held: queued frames plus the one being written.
        buffered: usize,
        /// Bytes of the refused frame.
        frame: usize,
        /// The byte budget.
        max: usize,
    },
    /// The queue holds its maximum number of frames.
    #[error("outbound queue holds {0} frames")]
    Frames(usize),
    /// The frame would take the bytes all outboxes hold together past their shared [`Total`].
    #[error("outbound bytes of all connections over budget ({buffered} + {frame} > {max})")]
    Total {
        /// Bytes all outboxes sharing the budget hold.
        buffered: usize,
        /// Bytes of the refused frame.
        frame: usize,
        /// The shared budget.
        max: usize,
    },
    /// The connection is closing; nothing more is written.
    #[error("connection closing")]
    Closed,
}

/// A reserved place in the queue, filled by [`Outbox::fill`] or given up by [`Outbox::cancel`].
#[derive(Debug)]
#[must_use]
pub struct Slot(u64);

struct State<T> {
    /// Frames in order; `None` is a reserved slot not yet filled (the writer waits for it).
    frames: VecDeque<(u64, Option<T>)>,
    next_id: u64,
    /// Bytes of queued frames plus the one being written.
    bytes: usize,
    /// Bytes of the frame the writer holds.
    in_flight: usize,
    closed: bool,
}

/// A write's deadline: this much…
pub const WRITE_BASE: Duration = Duration::from_secs(30);
/// …plus a second per this many bytes of the frame (a 25 MiB frame gets ~7 min: a slow Wi-Fi
/// link still delivers it, a peer that stopped reading is found out).
pub const WRITE_BYTES_PER_SEC: usize = 64 * 1024;

/// How long the writer draining an outbox may take to write a frame of `len` bytes before the
/// peer counts as no longer reading (both the gateway's and the node's links use it).
pub fn write_deadline(len: usize) -> Duration {
    WRITE_BASE + Duration::from_secs((len / WRITE_BYTES_PER_SEC) as u64)
}

/// What the byte budget counts of an item.
pub trait Weighed {
    /// Bytes this item holds.
    fn bytes(&self) -> usize;
}

impl Weighed for String {
    fn bytes(&self) -> usize {
        self.len()
    }
}

/// A byte budget shared by many outboxes (the gateway's: all its connections).
#[derive(Debug)]
pub struct Total {
    used: AtomicUsize,
    max: usize,
}

impl Total {
    /// A shared budget of `max` bytes.
    pub fn new(max: usize) -> Arc<Total> {
        Arc::new(Total {
            used: AtomicUsize::new(0),
            max,
        })
    }

    /// Bytes the outboxes sharing this budget hold now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The budget.
    pub fn max(&self) -> usize {
        self.max
    }
}

/// A bounded outbound queue with one consumer.
pub struct Outbox<T = String> {
    state: Mutex<State<T>>,
    ready: Notify,
    /// Woken (all waiters) by [`Outbox::close`].
    closing: Notify,
    max_frames: usize,
    max_bytes: usize,
    total: Option<Arc<Total>>,
}

impl<T: Weighed> std::fmt::Debug for Outbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Outbox")
            .field("frames", &s.frames.len())
            .field("bytes", &s.bytes)
            .field("max_frames", &self.max_frames)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl<T: Weighed> Outbox<T> {
    /// A queue of at most `max_frames` frames and `max_bytes` bytes.
    pub fn new(max_frames: usize, max_bytes: usize) -> Outbox<T> {
        Outbox {
            state: Mutex::new(State {
                frames: VecDeque::new(),
                next_id: 0,
                bytes: 0,
                in_flight: 0,
                closed: false,
            }),
            ready: Notify::new(),
            closing: Notify::new(),
            max_frames: max_frames.max(1),
            max_bytes,
            total: None,
        }
    }

    /// Like [`Outbox::new`], and also within the budget `total` shares with other outboxes.
    pub fn with_total(max_frames: usize, max_bytes: usize, total: Arc<Total>) -> Outbox<T> {
        let mut q = Outbox::new(max_frames, max_bytes);
        q.total = Some(total);
        q
    }

    /// Counts `len` bytes more (or fewer) in this outbox and in the shared budget.
    fn add(&self, s: &mut State<T>, len: usize) {
        s.bytes += len;
        if let Some(t) = &self.total {
            t.used.fetch_add(len, Ordering::AcqRel);
        }
    }

    fn remove(&self, s: &mut State<T>, len: usize) {
        s.bytes -= len;
        if let Some(t) = &self.total {
            t.used.fetch_sub(len, Ordering::AcqRel);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `frame` without waiting.
    pub fn push(&self, frame: T) -> Result<(), Full> {
        let mut s = self.lock();
        if s.closed {
            return Err(Full::Closed);
        }
        if s.frames.len() >= self.max_frames {
            return Err(Full::Frames(s.frames.len()));
        }
        self.fits(&s, frame.bytes())?;
        self.add(&mut s, frame.bytes());
        let id = s.next_id;
        s.next_id += 1;
        s.frames.push_back((id, Some(frame)));
        drop(s);
        self.ready.notify_one();
        Ok(())
    }

    /// Whether `len` more bytes fit the budget. One frame larger than the whole budget still
    /// goes out when nothing else is buffered: otherwise a result the peer may receive
    /// (≤ maxPayload) could never be sent.
    /// Past the shared budget likewise, only a frame into an empty outbox goes.
    fn fits(&self, s: &State<T>, len: usize) -> Result<(), Full> {
        if s.bytes > 0 && s.bytes + len > self.max_bytes {
            return Err(Full::Bytes {
                buffered: s.bytes,
                frame: len,
                max: self.max_bytes,
            });
        }
        if let Some(t) = &self.total {
            let used = t.used();
            if s.bytes > 0 && used + len > t.max {
                return Err(Full::Total {
                    buffered: used,
                    frame: len,
                    max: t.max,
                });
            }
        }
        Ok(())
    }

    /// Reserves the next place in the queue (it holds no bytes until filled).
    pub fn reserve(&self) -> Slot {
        let mut s = self.lock();
        let id = s.next_id;
        s.next_id += 1;
        if !s.closed {
            s.frames.push_back((id, None));
        }
        Slot(id)
    }

    /// Puts `frame` in its reserved place, under the same budget as [`Outbox::push`].
    pub fn fill(&self, slot: Slot, frame: T) -> Result<(), Full> {
        let mut s = self.lock();
        let Some(i) = s.frames.iter().position(|(id, _)| *id == slot.0) else {
            return Err(Full::Closed);
        };
        if s.closed {
            s.frames.remove(i);
            return Err(Full::Closed);
        }
        if let Err(full) = self.fits(&s, frame.bytes()) {
            s.frames.remove(i);
            drop(s);
            self.ready.notify_one();
            return Err(full);
        }
        self.add(&mut s, frame.bytes());
        s.frames[i].1 = Some(frame);
        drop(s);
        self.ready.notify_one();
        Ok(())
    }

    /// Gives a reserved place up (the reply goes out later, or not at all).
    pub fn cancel(&self, slot: Slot) {
        let mut s = self.lock();
        if let Some(i) = s.frames.iter().position(|(id, _)| *id == slot.0) {
            s.frames.remove(i);
        }
        drop(s);
        self.ready.notify_one();
    }

    fn take_front(s: &mut State<T>) -> Option<T> {
        if !matches!(s.frames.front(), Some((_, Some(_)))) {
            return None;
        }
        let (_, f) = s.frames.pop_front()?;
        let f = f?;
        s.in_flight = f.bytes();
        Some(f)
    }

    /// The next frame to write; `None` once closed and drained. The frame's bytes stay counted
    /// until [`Outbox::sent`].
    pub async fn next(&self) -> Option<T> {
        loop {
            {
                let mut s = self.lock();
                if let Some(f) = Self::take_front(&mut s) {
                    return Some(f);
                }
                if s.closed && s.frames.iter().all(|(_, f)| f.is_none()) {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }

    /// A frame taken without waiting (used to flush before a close).
    pub fn try_next(&self) -> Option<T> {
        Self::take_front(&mut self.lock())
    }

    /// The writer finished with the frame it took.
    pub fn sent(&self) {
        let mut s = self.lock();
        let done = s.in_flight;
        self.remove(&mut s, done);
        s.in_flight = 0;
    }

    /// Refuses further frames; what is queued can still be drained (reserved slots that were
    /// not filled are dropped).
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.frames.retain(|(_, f)| f.is_some());
        drop(s);
        self.ready.notify_one();
        self.closing.notify_waiters();
    }

    /// Resolves once the outbox is closed (at once if it is), whatever the writer is doing: a
    /// link waits on it beside its writer, so a write stalled on a peer that stopped reading
    /// does not keep an over-budget link open until that write's deadline.
    pub async fn closed(&self) {
        loop {
            let notified = self.closing.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().closed {
                return;
            }
            notified.await;
        }
    }

    /// Bytes queued or being written.
    pub fn buffered_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Frames queued (not counting the one being written or reserved places).
    pub fn len(&self) -> usize {
        self.lock()
            .frames
            .iter()
            .filter(|(_, f)| f.is_some())
            .count()
    }

    /// True when no frame is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Outbox<T> {
    /// What is still queued leaves the shared budget with the outbox.
    fn drop(&mut self) {
        if let Some(t) = &self.total {
            let s = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
            t.used.fetch_sub(s.bytes, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outboxes_sharing_a_total_are_bounded_together() {
        let total = Total::new(10);
        let a: Outbox = Outbox::with_total(100, 100, total.clone());
        let b: Outbox = Outbox::with_total(100, 100, total.clone());
        a.push("aaaa".into()).unwrap();
        a.push("aaaa".into()).unwrap();
        b.push("bb".into()).unwrap();
        assert_eq!(total.used(), 10);
        assert_eq!(
            a.push("a".into()),
            Err(Full::Total {
                buffered: 10,
                frame: 1,
                max: 10
            })
        );
        // An empty outbox still gets one frame out (its peer is not the one hoarding).
        let c: Outbox = Outbox::with_total(100, 100, total.clone());
        c.push("cccc".into()).unwrap();
        assert!(c.push("c".into()).is_err());
        assert_eq!(total.used(), 14);
        // Written frames and dropped outboxes give their bytes back.
        a.try_next().unwrap();
        a.sent();
        assert_eq!(total.used(), 10);
        drop(a);
        assert_eq!(total.used(), 6);
        drop((b, c));
        assert_eq!(total.used(), 0);
    }

    #[test]
    fn bounded_in_bytes_including_the_frame_being_written() {
        let q: Outbox = Outbox::new(100, 10);
        q.push("aaaa".into()).unwrap();
        q.push("bbbb".into()).unwrap();
        assert_eq!(
            q.push("cccc".into()),
            Err(Full::Bytes {
                buffered: 8,
                frame: 4,
                max: 10
            })
        );
        let f = q.try_next().unwrap();
        assert_eq!(f, "aaaa");
        // Still being written: still counted.
        assert!(q.push("cccc".into()).is_err());
        q.sent();
        q.push("cccc".into()).unwrap();
        assert_eq!(q.buffered_bytes(), 8);
    }

    #[test]
    fn an_oversized_frame_goes_alone() {
        let q: Outbox = Outbox::new(100, 10);
        q.push("x".repeat(50)).unwrap();
        assert!(q.push("y".into()).is_err());
        q.try_next().unwrap();
        q.sent();
        q.push("y".into()).unwrap();
        assert!(q.push("z".repeat(50)).is_err(), "not behind another frame");
    }

    #[test]
    fn bounded_in_frames_and_closed_refuses() {
        let q: Outbox = Outbox::new(2, 1000);
        q.push("a".into()).unwrap();
        q.push("b".into()).unwrap();
        assert_eq!(q.push("c".into()), Err(Full::Frames(2)));
        q.close();
        assert_eq!(q.push("c".into()), Err(Full::Closed));
        assert_eq!(q.len(), 2, "queued frames can still be flushed");
    }

    #[test]
    fn a_reserved_reply_goes_before_what_was_queued_after_it() {
        let q: Outbox = Outbox::new(10, 1000);
        q.push("before".into()).unwrap();
        let slot = q.reserve();
        q.push("event".into()).unwrap();
        assert_eq!(q.try_next().as_deref(), Some("before"));
        q.sent();
        assert_eq!(q.try_next(), None, "waits for the reserved reply");
        q.fill(slot, "reply".into()).unwrap();
        assert_eq!(q.try_next().as_deref(), Some("reply"));
        q.sent();
        assert_eq!(q.try_next().as_deref(), Some("event"));
        q.sent();
        let slot = q.reserve();
        q.push("later".into()).unwrap();
        q.cancel(slot);
        assert_eq!(q.try_next().as_deref(), Some("later"));
    }

    #[tokio::test]
    async fn closed_resolves_while_a_frame_is_still_being_written() {
        let q = std::sync::Arc::new(Outbox::<String>::new(4, 100));
        q.push("stuck".into()).unwrap();
        let _writing = q.try_next().unwrap(); // never `sent()`: the peer stopped reading
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.closed().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        q.close();
        waiter.await.unwrap();
        q.closed().await; // and at once when already closed
    }

    #[tokio::test]
    async fn next_waits_for_a_frame_and_ends_when_closed() {
        let q = std::sync::Arc::new(Outbox::<String>::new(4, 100));
        let q2 = q.clone();
        let t = tokio::spawn(async move {
            let a = q2.next().await;
            q2.sent();
            let b = q2.next().await;
            (a, b)
        });
        tokio::task::yield_now().await;
        q.push("hello".into()).unwrap();
        q.close();
        let (a, b) = t.await.unwrap();
        assert_eq!(a.as_deref(), Some("hello"));
        assert_eq!(b, None);
    }
}
