//! The shared state of a running gateway and its registry of live connections: who is
//! connected, event fan-out with a `seq` per connection, and the pieces every connection
//! consults ([`presence`](crate::presence), [`health`](crate::health), the admission
//! [`limits`](crate::limits), queued system events).
//!
//! Broadcasts never wait: each connection has a bounded [`Outbox`](pincer_os::outbox::Outbox).
//! When it is full, a droppable event (`presence`, `health` refresh…) is skipped for that
//! connection (its `seq` is still consumed, so the client sees a gap), and a non-droppable one
//! (`tick`, `shutdown`) closes that connection with 1008 "slow consumer". Memory per connection
//! is therefore bounded whatever a client does.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use pincer_protocol::close;
use pincer_protocol::connect::PresenceEntry;
use pincer_protocol::frames::{encode_event_raw, StateVersion};
use pincer_protocol::scopes::Role;

use crate::config::Config;
use crate::conn::{ConnHandle, Registration};
use crate::dedupe::Dedupe;
use crate::devices::DeviceStore;
use crate::health::{self, Health};
use crate::limits::{AuthLockout, PreauthBudget};
use crate::now_ms;
use crate::presence::Presence;
use pincer_os::outbox::{Full, Outbox, Total};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A presence change goes out at once, unless one went out less than this long ago: then the
/// changes of the window go out together at its end (a storm of connects — 200 boards after a
/// power cut — would otherwise send every connection one full presence list per connect).
pub const PRESENCE_COALESCE: std::time::Duration = std::time::Duration::from_millis(100);

/// Queued system events kept for `status`: at most this many…
pub const SYSTEM_EVENTS_MAX: usize = 100;
/// …and this many bytes of text together (oldest dropped first).
pub const SYSTEM_EVENTS_BYTES: usize = 64 * 1024;
/// One system event's text is cut to this many bytes.
pub const SYSTEM_EVENT_TEXT_MAX: usize = 4 * 1024;

/// The gateway's shared state.
pub struct Hub {
    /// The resolved configuration.
    pub config: Config,
    /// The trust store: paired devices, tokens, pending requests, node approvals.
    pub devices: DeviceStore,
    /// Idempotency cache of method outcomes (`system-event`, …).
    pub dedupe: Mutex<Dedupe>,
    /// Connected nodes and their invokes in flight.
    pub nodes: crate::nodes::NodeRegistry,
    /// The presence list.
    pub presence: Presence,
    /// Unauthenticated sockets per address and overall.
    pub preauth: PreauthBudget,
    /// Failed-authentication counters and lockouts.
    pub lockout: AuthLockout,
    /// Outbound bytes of all connections together (`max_buffered_bytes_total`).
    pub outbound: Arc<Total>,
    /// The agent runtime (set once, right after the hub is made: it holds a weak reference back).
    pub agent: std::sync::OnceLock<Arc<pincer_agent::runtime::Agent>>,
    /// The messaging channels (set once, after the agent).
    pub channels: std::sync::OnceLock<Arc<pincer_channels::Channels>>,
    /// The port's TLS side, when `[tls] enabled` (set once, before the first accept).
    pub tls: std::sync::OnceLock<crate::tls::Tls>,
    /// The local Tailscale daemon: the tailnet address listened on, Serve, whois.
    pub tailscale: crate::tailscale::Tailscale,
    health: Health,
    started: Instant,
    /// This gateway process's id (a UUID), the `instanceId` of its own presence entry.
    pub instance_id: String,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnHandle>>>,
    state_version: Mutex<StateVersion>,
    system_events: Mutex<(VecDeque<String>, usize)>,
    shutting_down: AtomicBool,
    /// Set while [`Hub::flush_presence`] runs: presence events are then coalesced.
    presence_flusher: AtomicBool,
    presence_dirty: tokio::sync::Notify,
    /// When the last presence event went out, and whether changes wait for the flusher.
    presence_sent: Mutex<(Option<Instant>, bool)>,
}

impl Hub {
    /// The shared state for `config`, over the trust store `devices`.
    pub fn new(config: Config, devices: DeviceStore) -> Hub {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        let instance_id = crate::secret::uuid_v4();
        let l = config.limits;
        Hub {
            preauth: PreauthBudget::new(l.max_preauth_per_ip, l.max_preauth_total),
            lockout: AuthLockout::new(&l),
            outbound: Total::new(l.max_buffered_bytes_total),
            presence: Presence::new(host, instance_id.clone()),
            health: Health::default(),
            devices,
            dedupe: Mutex::new(Dedupe::default()),
            nodes: Default::default(),
            started: Instant::now(),
            instance_id,
            next_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            state_version: Mutex::new(StateVersion {
                presence: 1,
                health: 1,
            }),
            system_events: Mutex::new((VecDeque::new(), 0)),
            shutting_down: AtomicBool::new(false),
            presence_flusher: AtomicBool::new(false),
            presence_dirty: tokio::sync::Notify::new(),
            presence_sent: Mutex::new((None, false)),
            agent: std::sync::OnceLock::new(),
            channels: std::sync::OnceLock::new(),
            tls: std::sync::OnceLock::new(),
            tailscale: crate::tailscale::Tailscale::new(&config.tailscale),
            config,
        }
    }

    /// Milliseconds since the hub was created.
    pub fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The current presence and health counters.
    pub fn state_version(&self) -> StateVersion {
        *lock(&self.state_version)
    }

    /// Authenticated connections registered now.
    pub fn connection_count(&self) -> usize {
        lock(&self.conns).len()
    }

    /// Registered connections with `role: "node"`.
    pub fn node_count(&self) -> usize {
        lock(&self.conns)
            .values()
            .filter(|c| c.role == Role::Node)
            .count()
    }

    /// Whether [`Hub::shutdown`] has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    // ---- registry --------------------------------------------------------------------------

    /// Registers an authenticated connection; the link drains its outbox.
    pub fn register(&self, r: Registration) -> Arc<ConnHandle> {
        let l = self.config.limits;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let presence = r.presence.clone();
        let handle = Arc::new(ConnHandle::new(
            id,
            r,
            Outbox::with_total(
                l.outbound_queue,
                l.max_buffered_bytes,
                self.outbound.clone(),
            ),
        ));
        lock(&self.conns).insert(id, handle.clone());
        self.nodes.attach(&handle);
        if let Some((key, entry)) = presence {
            self.presence_upsert(key, entry, true);
        }
        if handle.role == Role::Node {
            self.refresh_health(false);
        }
        handle
    }

    /// Removes a connection (on close).
    pub fn unregister(&self, handle: &ConnHandle) {
        lock(&self.conns).remove(&handle.id);
        self.nodes.detach(handle);
        if let Some(key) = &handle.presence_key {
            let still_connected = lock(&self.conns)
                .values()
                .any(|c| c.presence_key.as_deref() == Some(key));
            if !still_connected && self.presence.remove(key) {
                self.bump_presence();
            }
        }
        if handle.role == Role::Node {
            self.refresh_health(false);
        }
    }

    // ---- events ----------------------------------------------------------------------------

    /// Sends `event` to every registered connection that `filter` accepts.
    pub fn broadcast(
        &self,
        event: &str,
        payload_json: &str,
        state_version: Option<StateVersion>,
        droppable: bool,
        filter: impl Fn(&ConnHandle) -> bool,
    ) {
        let conns: Vec<Arc<ConnHandle>> = lock(&self.conns).values().cloned().collect();
        for c in conns.iter().filter(|c| filter(c)) {
            let seq = c.next_seq();
            let frame = encode_event_raw(event, payload_json, Some(seq), state_version);
            if !droppable {
                c.send_or_close(frame);
                continue;
            }
            match c.outbox.push(frame) {
                Ok(()) | Err(Full::Closed) => {}
                Err(_) => {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// A pairing event (`device.pair.*`, `node.pair.*`): only to operators holding
    /// `operator.pairing` (or admin), never to nodes.
    pub fn pairing_event(&self, event: &str, payload: &serde_json::Value) {
        self.broadcast(event, &payload.to_string(), None, true, |c| {
            c.role == Role::Operator && c.has_scope(pincer_protocol::scopes::PAIRING)
        });
    }

    /// Closes every live socket of `device_id` (for `role`, or all roles) with `code`.
    pub fn close_device(
        &self,
        device_id: &str,
        role: Option<Role>,
        code: u16,
        reason: &str,
    ) -> usize {
        let conns: Vec<Arc<ConnHandle>> = lock(&self.conns)
            .values()
            .filter(|c| {
                c.device_id.as_deref() == Some(device_id) && role.is_none_or(|r| r == c.role)
            })
            .cloned()
            .collect();
        for c in &conns {
            c.kill(code, reason);
        }
        conns.len()
    }

    /// `tick {ts}` to everyone.
    pub fn tick(&self) {
        self.broadcast(
            "tick",
            &format!(r#"{{"ts":{}}}"#, now_ms()),
            None,
            false,
            |_| true,
        );
    }

    /// `shutdown` to everyone, then asks every link to close with 1012.
    pub fn shutdown(&self, reason: &str, restart_expected_ms: Option<u64>) {
        self.shutting_down.store(true, Ordering::Release);
        let payload = match restart_expected_ms {
            Some(ms) => serde_json::json!({ "reason": reason, "restartExpectedMs": ms }),
            None => serde_json::json!({ "reason": reason }),
        };
        self.broadcast("shutdown", &payload.to_string(), None, false, |_| true);
        for c in lock(&self.conns).values() {
            c.kill(close::SERVICE_RESTART, close::reason::SERVICE_RESTART);
        }
    }

    // ---- presence --------------------------------------------------------------------------

    /// Current presence list, the gateway's own entry first.
    pub fn presence(&self) -> Vec<PresenceEntry> {
        self.presence.list()
    }

    /// Adds or replaces the presence entry `key` and tells everyone.
    pub fn presence_upsert(&self, key: String, entry: PresenceEntry, connected: bool) {
        self.presence.upsert(key, entry, connected);
        self.bump_presence();
    }

    fn bump_presence(&self) {
        lock(&self.state_version).presence += 1;
        if self.presence_flusher.load(Ordering::Acquire) {
            let mut sent = lock(&self.presence_sent);
            if sent.1 {
                return; // the flusher sends it
            }
            if sent.0.is_some_and(|t| t.elapsed() < PRESENCE_COALESCE) {
                sent.1 = true;
                drop(sent);
                self.presence_dirty.notify_one();
                return;
            }
            sent.0 = Some(Instant::now());
        }
        self.broadcast_presence();
    }

    fn broadcast_presence(&self) {
        let sv = self.state_version();
        let payload = serde_json::json!({ "presence": self.presence() }).to_string();
        self.broadcast("presence", &payload, Some(sv), true, |_| true);
    }

    /// Sends one `presence` event per [`PRESENCE_COALESCE`] window with changes, for as long
    /// as it runs (the server runs it beside the accept loop).
    pub async fn flush_presence(&self) {
        self.presence_flusher.store(true, Ordering::Release);
        struct Off<'a>(&'a AtomicBool);
        impl Drop for Off<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let _off = Off(&self.presence_flusher);
        loop {
            self.presence_dirty.notified().await;
            let last = lock(&self.presence_sent).0;
            if let Some(t) = last {
                tokio::time::sleep_until((t + PRESENCE_COALESCE).into()).await;
            }
            *lock(&self.presence_sent) = (Some(Instant::now()), false);
            self.broadcast_presence();
        }
    }

    // ---- health ----------------------------------------------------------------------------

    /// Recomputes health; broadcasts a `health` event when it changed (ignoring timestamps).
    /// Returns the summary JSON.
    pub fn refresh_health(&self, force_event: bool) -> Arc<str> {
        let sessions = self.config.state_dir.join("sessions");
        let (json, changed) = self.health.refresh(&health::Inputs {
            sessions_path: &sessions,
            nodes: self.node_count() as u64,
        });
        if changed || force_event {
            let sv = {
                let mut sv = lock(&self.state_version);
                sv.health += 1;
                *sv
            };
            self.broadcast("health", &json, Some(sv), true, |_| true);
        }
        json
    }

    /// The health summary JSON: cached when younger than 60 s, unless `probe`.
    pub fn health_json(&self, probe: bool) -> Arc<str> {
        if !probe {
            if let Some(json) = self.health.fresh() {
                return json;
            }
        }
        self.refresh_health(false)
    }

    // ---- system events ---------------------------------------------------------------------

    /// Queues a system event text (cut to [`SYSTEM_EVENT_TEXT_MAX`] bytes); returns how many
    /// are queued. The oldest go first past [`SYSTEM_EVENTS_MAX`] / [`SYSTEM_EVENTS_BYTES`].
    pub fn queue_system_event(&self, mut text: String) -> u64 {
        pincer_protocol::clip_in_place(&mut text, SYSTEM_EVENT_TEXT_MAX);
        let mut g = lock(&self.system_events);
        let (q, bytes) = &mut *g;
        while !q.is_empty()
            && (q.len() >= SYSTEM_EVENTS_MAX || *bytes + text.len() > SYSTEM_EVENTS_BYTES)
        {
            if let Some(old) = q.pop_front() {
                *bytes -= old.len();
            }
        }
        *bytes += text.len();
        q.push_back(text);
        q.len() as u64
    }

    /// The queued system event texts, oldest first (`status.queuedSystemEvents`).
    pub fn system_events(&self) -> Vec<String> {
        lock(&self.system_events).0.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthMode, Bind, Limits};

    fn hub(queue: usize) -> (Hub, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("pincer-hub-{}-{queue}", std::process::id()));
        let config = Config {
            bind: Bind::Loopback,
            port: 0,
            state_dir: dir.clone(),
            auth: AuthMode::Token("t".into()),
            token_generated: false,
            limits: Limits {
                outbound_queue: queue,
                max_buffered_bytes: 1 << 20,
                ..Limits::default()
            },
            trusted_proxies: vec![],
            node_allow: vec![],
            node_deny: vec![],
            config_path: None,
            agent: pincer_agent::config::AgentConfig::resolve(
                &Default::default(),
                &Default::default(),
                &dir,
            ),
            control_ui: Default::default(),
            channels: Default::default(),
            tls: Default::default(),
            tailscale: Default::default(),
            allow_tailscale: false,
        };
        let devices = DeviceStore::open(&dir).unwrap();
        (Hub::new(config, devices), dir)
    }

    fn reg() -> Registration {
        Registration {
            conn_id: "c".into(),
            device_id: None,
            role: Role::Operator,
            scopes: vec![],
            protocol: 4,
            presence: None,
            node: None,
            tool_events: false,
        }
    }

    #[test]
    fn full_queue_drops_droppable_events_with_a_seq_gap_then_closes_on_ticks() {
        let (hub, dir) = hub(4);
        let conn = hub.register(reg());
        for _ in 0..10 {
            hub.broadcast("presence", "{}", None, true, |_| true);
        }
        // Four queued, six dropped, and the connection is not closed for droppable events.
        assert_eq!(conn.dropped.load(Ordering::Relaxed), 6);
        assert!(conn.close_request().is_none());
        let mut seqs = vec![];
        while let Some(f) = conn.outbox.try_next() {
            conn.outbox.sent();
            let v: serde_json::Value = serde_json::from_str(&f).unwrap();
            seqs.push(v["seq"].as_u64().unwrap());
        }
        assert_eq!(seqs, vec![1, 2, 3, 4]);
        // The next event shows the gap to the client.
        hub.broadcast("presence", "{}", None, true, |_| true);
        let f = conn.outbox.try_next().expect("a frame");
        conn.outbox.sent();
        assert!(f.contains(r#""seq":11"#), "{f}");
        // A non-droppable event on a full queue closes the slow consumer with 1008.
        for _ in 0..5 {
            hub.tick();
        }
        assert_eq!(
            conn.close_request(),
            Some((
                close::POLICY_VIOLATION,
                close::reason::SLOW_CONSUMER.to_owned()
            ))
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn presence_tracks_connections_and_state_version() {
        let (hub, dir) = hub(16);
        let before = hub.state_version().presence;
        let entry = PresenceEntry {
            instance_id: Some("i-1".into()),
            ts: now_ms(),
            ..Default::default()
        };
        let conn = hub.register(Registration {
            presence: Some(("i-1".into(), entry)),
            ..reg()
        });
        assert_eq!(hub.presence().len(), 2, "self + the client");
        assert_eq!(hub.state_version().presence, before + 1);
        hub.unregister(&conn);
        assert_eq!(hub.presence().len(), 1);
        assert_eq!(hub.state_version().presence, before + 2);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn system_events_are_bounded_in_count_and_bytes() {
        let (hub, dir) = hub(16);
        for i in 0..150 {
            hub.queue_system_event(format!("event {i}"));
        }
        let q = hub.system_events();
        assert_eq!(q.len(), SYSTEM_EVENTS_MAX);
        assert_eq!(q[0], "event 50", "oldest dropped first");
        hub.queue_system_event("é".repeat(10_000));
        let q = hub.system_events();
        let last = q.last().expect("queued");
        assert!(last.len() <= SYSTEM_EVENT_TEXT_MAX && last.starts_with('é'));
        for _ in 0..40 {
            hub.queue_system_event("x".repeat(SYSTEM_EVENT_TEXT_MAX));
        }
        let bytes: usize = hub.system_events().iter().map(String::len).sum();
        assert!(bytes <= SYSTEM_EVENTS_BYTES, "{bytes}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_presence_changes_goes_out_as_two_events() {
        let (hub, dir) = hub(1024);
        let hub = Arc::new(hub);
        let watcher = hub.register(reg());
        let h = hub.clone();
        let flusher = tokio::spawn(async move { h.flush_presence().await });
        while !hub.presence_flusher.load(Ordering::Acquire) {
            tokio::task::yield_now().await;
        }
        let before = hub.state_version().presence;
        for i in 0..50 {
            let entry = PresenceEntry {
                instance_id: Some(format!("i-{i}")),
                ts: now_ms(),
                ..Default::default()
            };
            hub.presence_upsert(format!("i-{i}"), entry, true);
        }
        // The clock is paused: it moves only while everything waits, so "within the window"
        // does not depend on how fast this machine is.
        tokio::time::sleep(PRESENCE_COALESCE * 3).await;
        let mut events = vec![];
        while let Some(f) = watcher.outbox.try_next() {
            watcher.outbox.sent();
            let v: serde_json::Value = serde_json::from_str(&f).unwrap();
            if v["event"] == "presence" {
                events.push(v);
            }
        }
        // The first change at once, the other 49 together at the end of the window.
        assert_eq!(events.len(), 2, "{events:?}");
        let last = &events[1];
        assert_eq!(
            last["payload"]["presence"].as_array().map(Vec::len),
            Some(51)
        );
        assert_eq!(last["stateVersion"]["presence"], before + 50);
        flusher.abort();
        let _ = std::fs::remove_dir_all(dir);
    }
}
