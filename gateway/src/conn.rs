//! An authenticated connection as the rest of the gateway sees it: who it is (role, scopes,
//! device), its bounded [`Outbox`], its event `seq`, and the close request that ends it.
//!
//! Nothing here touches the socket: the link's writer drains the outbox, and [`ConnHandle::kill`]
//! asks the link to close. Every producer pushes without waiting, so a peer that stops reading
//! can only fill its own outbox — and then it is closed as a slow consumer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use pincer_protocol::close;
use pincer_protocol::connect::PresenceEntry;
use pincer_protocol::scopes::Role;
use tokio::sync::Notify;

use pincer_os::outbox::{Full, Outbox};

/// A registered (authenticated) connection.
#[derive(Debug)]
pub struct ConnHandle {
    /// Registry key (process-local, never reused).
    pub id: u64,
    /// `hello-ok.server.connId`.
    pub conn_id: String,
    /// The client's device id; `None` for device-less operators.
    pub device_id: Option<String>,
    /// The role granted at connect.
    pub role: Role,
    /// The scopes granted at connect (none for nodes).
    pub scopes: Vec<String>,
    /// The negotiated protocol version (3 or 4).
    pub protocol: u32,
    /// Presence key when the connection is listed in presence.
    pub presence_key: Option<String>,
    /// Frames waiting for the link's writer.
    pub outbox: Outbox,
    seq: AtomicU64,
    close: Mutex<Option<(u16, String)>>,
    killed: AtomicBool,
    closing: Notify,
    /// Events skipped because the outbox was full.
    pub dropped: AtomicU64,
    /// Set for `role: "node"` connections.
    pub node: Option<crate::nodes::NodeSession>,
    /// The client asked for the agent's `tool` stream (`caps: ["tool-events"]`).
    pub tool_events: bool,
    /// What it watches (`sessions.subscribe`, `sessions.messages.subscribe`).
    pub watching: Mutex<Watching>,
}

/// A connection's session subscriptions.
#[derive(Debug, Default)]
pub struct Watching {
    /// `sessions.changed` for every session.
    pub sessions: bool,
    /// `session.message` for these session keys (at most [`MAX_WATCHED`]).
    pub messages: Vec<String>,
}

/// Sessions one connection may watch the messages of; a further subscribe drops the oldest.
pub const MAX_WATCHED: usize = 16;

impl Watching {
    /// Watches `key`'s messages (the oldest watched key goes past [`MAX_WATCHED`]).
    pub fn watch(&mut self, key: &str) {
        if !self.messages.iter().any(|k| k == key) {
            if self.messages.len() >= MAX_WATCHED {
                self.messages.remove(0);
            }
            self.messages.push(key.to_owned());
        }
    }
}

/// Details of a new connection, for the hub's `register`.
#[derive(Debug)]
pub struct Registration {
    /// `hello-ok.server.connId`.
    pub conn_id: String,
    /// The client's device id; `None` for device-less operators.
    pub device_id: Option<String>,
    /// The role granted.
    pub role: Role,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// The negotiated protocol version.
    pub protocol: u32,
    /// Presence key and entry; `None` for clients not tracked (modes `cli` and `probe`).
    pub presence: Option<(String, PresenceEntry)>,
    /// The node's session, for `role: "node"`.
    pub node: Option<crate::nodes::NodeSession>,
    /// `caps` held `tool-events`.
    pub tool_events: bool,
}

impl ConnHandle {
    pub(crate) fn new(id: u64, r: Registration, outbox: Outbox) -> ConnHandle {
        ConnHandle {
            id,
            conn_id: r.conn_id,
            device_id: r.device_id,
            role: r.role,
            scopes: r.scopes,
            protocol: r.protocol,
            presence_key: r.presence.as_ref().map(|(k, _)| k.clone()),
            outbox,
            seq: AtomicU64::new(0),
            close: Mutex::new(None),
            killed: AtomicBool::new(false),
            closing: Notify::new(),
            dropped: AtomicU64::new(0),
            node: r.node,
            tool_events: r.tool_events,
            watching: Mutex::new(Watching::default()),
        }
    }

    /// The next event `seq` of this connection.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Queues a frame that may be skipped when the outbox is full; false when it was.
    pub fn try_send(&self, frame: String) -> bool {
        self.outbox.push(frame).is_ok()
    }

    /// Queues a frame that must not be lost (a response, `tick`, `shutdown`): when the outbox
    /// is full the connection is closed with 1008 "slow consumer" instead. False when the frame
    /// was not queued.
    pub fn send_or_close(&self, frame: String) -> bool {
        self.queued_or_close(self.outbox.push(frame))
    }

    /// Puts a response in the place reserved for it; like [`ConnHandle::send_or_close`] when
    /// the outbox is over budget.
    pub fn reply(&self, slot: pincer_os::outbox::Slot, frame: String) -> bool {
        self.queued_or_close(self.outbox.fill(slot, frame))
    }

    /// A frame that must not be lost was queued, or the connection is closed as a slow
    /// consumer (nothing to do when it is closing anyway).
    fn queued_or_close(&self, pushed: Result<(), Full>) -> bool {
        match pushed {
            Ok(()) => true,
            Err(Full::Closed) => false,
            Err(full) => {
                tracing::warn!(conn = %self.conn_id, %full, "closing slow consumer");
                self.kill(close::POLICY_VIOLATION, close::reason::SLOW_CONSUMER);
                false
            }
        }
    }

    /// Asks the link to close with `code`/`reason` (the first request wins). Frames queued
    /// before it are still flushed (within the link's close grace), later ones are refused.
    pub fn kill(&self, code: u16, reason: &str) {
        {
            let mut c = self.close.lock().unwrap_or_else(|p| p.into_inner());
            if c.is_none() {
                *c = Some((code, reason.to_owned()));
            }
        }
        self.outbox.close();
        self.killed.store(true, Ordering::Release);
        self.closing.notify_waiters();
    }

    /// The pending close request, if any.
    pub fn close_request(&self) -> Option<(u16, String)> {
        self.close.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Resolves once [`ConnHandle::kill`] was called (at once if it already was).
    pub async fn killed(&self) {
        loop {
            let notified = self.closing.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.killed.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Whether an operator connection holds `scope` (admin holds all).
    pub fn has_scope(&self, scope: &str) -> bool {
        pincer_protocol::scopes::satisfies(&self.scopes, scope)
    }
}
