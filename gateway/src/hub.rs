//! The shared state of a running gateway: connection registry, event fan-out with a `seq` per
//! connection, presence, health, queued system events and the pre-auth budget.
//!
//! Every connection has a bounded outbound queue (`limits.outbound_queue` frames). Broadcasts
//! never wait: when a queue is full, a droppable event (`presence`, `health` refresh…) is
//! skipped for that connection (its `seq` is still consumed, so the client sees a gap), and a
//! non-droppable one (`tick`, `shutdown`) closes that connection with 1008 "slow consumer".
//! Memory per connection is therefore bounded whatever a client does.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pincer_protocol::close;
use pincer_protocol::connect::PresenceEntry;
use pincer_protocol::frames::{encode_event_raw, StateVersion};
use pincer_protocol::methods::{GatewayHealth, HealthSummary, SessionsHealth};
use pincer_protocol::scopes::Role;
use tokio::sync::{mpsc, Notify};

use crate::config::Config;
use crate::dedupe::Dedupe;
use crate::devices::DeviceStore;
use crate::{now_ms, IMPLEMENTATION, VERSION};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Something to write on a connection.
#[derive(Debug)]
pub enum Outbound {
    /// A complete text frame.
    Frame(String),
}

/// A registered (authenticated) connection as the hub sees it.
#[derive(Debug)]
pub struct ConnHandle {
    pub id: u64,
    pub conn_id: String,
    pub device_id: Option<String>,
    pub role: Role,
    pub scopes: Vec<String>,
    pub protocol: u32,
    /// Presence key when the connection is listed in presence.
    pub presence_key: Option<String>,
    tx: mpsc::Sender<Outbound>,
    seq: AtomicU64,
    close: Mutex<Option<(u16, String)>>,
    /// Woken when the connection must close.
    pub closing: Notify,
    /// Events skipped because the queue was full.
    pub dropped: AtomicU64,
    /// Set for `role: "node"` connections.
    pub node: Option<crate::nodes::NodeSession>,
}

impl ConnHandle {
    /// Queues a frame without waiting; false when the queue is full or closed.
    pub fn try_send(&self, o: Outbound) -> bool {
        self.tx.try_send(o).is_ok()
    }

    /// Queues a frame, waiting for room (used for responses, which must not be dropped).
    pub async fn send(&self, o: Outbound) -> bool {
        self.tx.send(o).await.is_ok()
    }

    /// Asks the link to close with `code`/`reason` (first request wins).
    pub fn kill(&self, code: u16, reason: &str) {
        let mut c = lock(&self.close);
        if c.is_none() {
            *c = Some((code, reason.to_owned()));
        }
        drop(c);
        self.closing.notify_one();
    }

    /// The pending close request, if any.
    pub fn close_request(&self) -> Option<(u16, String)> {
        lock(&self.close).clone()
    }

    /// Whether an operator connection holds `scope` (admin holds all).
    pub fn has_scope(&self, scope: &str) -> bool {
        pincer_protocol::scopes::satisfies(&self.scopes, scope)
    }
}

/// Details of a new connection for [`Hub::register`].
#[derive(Debug)]
pub struct Registration {
    pub conn_id: String,
    pub device_id: Option<String>,
    pub role: Role,
    pub scopes: Vec<String>,
    pub protocol: u32,
    pub presence: Option<(String, PresenceEntry)>,
    pub node: Option<crate::nodes::NodeSession>,
}

struct HealthCache {
    summary: HealthSummary,
    json: Arc<str>,
    at: Instant,
}

/// Health snapshots younger than this are served from cache unless `probe` is set.
const HEALTH_CACHE: Duration = Duration::from_secs(60);
/// Presence beacons (from `system-event`) expire after this.
const PRESENCE_TTL_MS: u64 = 5 * 60 * 1000;
/// At most this many presence entries.
const PRESENCE_MAX: usize = 200;
/// Queued system events kept for `status`.
const SYSTEM_EVENTS_MAX: usize = 100;

/// The gateway's shared state.
pub struct Hub {
    pub config: Config,
    pub devices: DeviceStore,
    pub dedupe: Mutex<Dedupe>,
    pub nodes: crate::nodes::NodeRegistry,
    started: Instant,
    pub instance_id: String,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnHandle>>>,
    presence: Mutex<Vec<(String, PresenceEntry, bool)>>,
    state_version: Mutex<StateVersion>,
    health: Mutex<Option<HealthCache>>,
    system_events: Mutex<VecDeque<String>>,
    preauth: Mutex<HashMap<IpAddr, usize>>,
    auth_failures: Mutex<HashMap<IpAddr, (VecDeque<u64>, u64)>>,
    shutting_down: AtomicBool,
    host: String,
}

impl Hub {
    pub fn new(config: Config, devices: DeviceStore) -> Hub {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        Hub {
            config,
            devices,
            dedupe: Mutex::new(Dedupe::default()),
            nodes: Default::default(),
            started: Instant::now(),
            instance_id: crate::secret::uuid_v4(),
            next_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            presence: Mutex::new(Vec::new()),
            state_version: Mutex::new(StateVersion {
                presence: 1,
                health: 1,
            }),
            health: Mutex::new(None),
            system_events: Mutex::new(VecDeque::new()),
            preauth: Mutex::new(HashMap::new()),
            auth_failures: Mutex::new(HashMap::new()),
            shutting_down: AtomicBool::new(false),
            host,
        }
    }

    pub fn uptime_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn state_version(&self) -> StateVersion {
        *lock(&self.state_version)
    }

    pub fn connection_count(&self) -> usize {
        lock(&self.conns).len()
    }

    pub fn node_count(&self) -> usize {
        lock(&self.conns)
            .values()
            .filter(|c| c.role == Role::Node)
            .count()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    // ---- pre-auth budget -------------------------------------------------------------------

    /// Takes one unauthenticated slot for `ip`; `false` when the budget is spent.
    pub fn preauth_acquire(&self, ip: IpAddr) -> bool {
        let mut m = lock(&self.preauth);
        let n = m.entry(ip).or_insert(0);
        if *n >= self.config.limits.max_preauth_per_ip {
            return false;
        }
        *n += 1;
        true
    }

    /// Returns the slot taken by [`Self::preauth_acquire`].
    pub fn preauth_release(&self, ip: IpAddr) {
        let mut m = lock(&self.preauth);
        if let Some(n) = m.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }

    // ---- auth failure rate limit --------------------------------------------------------------

    /// Milliseconds until `ip` may try again, when it is locked out. Loopback is exempt.
    pub fn auth_locked(&self, ip: IpAddr, now_ms: u64) -> Option<u64> {
        if ip.is_loopback() {
            return None;
        }
        let m = lock(&self.auth_failures);
        let (_, until) = m.get(&ip)?;
        (*until > now_ms).then(|| until - now_ms)
    }

    /// Records a failed authentication from `ip`; returns true when this locks it out.
    pub fn auth_failed(&self, ip: IpAddr, now_ms: u64) -> bool {
        if ip.is_loopback() {
            return false;
        }
        let l = self.config.limits;
        let mut m = lock(&self.auth_failures);
        if m.len() > 10_000 {
            m.retain(|_, (f, until)| {
                *until > now_ms || f.back().is_some_and(|t| now_ms - t < l.auth_window_ms)
            });
        }
        let (fails, until) = m.entry(ip).or_default();
        while fails
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= l.auth_window_ms)
        {
            fails.pop_front();
        }
        fails.push_back(now_ms);
        if fails.len() >= l.auth_max_attempts {
            fails.clear();
            *until = now_ms + l.auth_lockout_ms;
            tracing::warn!(%ip, lockout_ms = l.auth_lockout_ms, "too many failed authentications; locked out");
            return true;
        }
        false
    }

    // ---- registry --------------------------------------------------------------------------

    /// Registers an authenticated connection; returns its handle and outbound queue.
    pub fn register(&self, r: Registration) -> (Arc<ConnHandle>, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(self.config.limits.outbound_queue);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let handle = Arc::new(ConnHandle {
            id,
            conn_id: r.conn_id,
            device_id: r.device_id,
            role: r.role,
            scopes: r.scopes,
            protocol: r.protocol,
            presence_key: r.presence.as_ref().map(|(k, _)| k.clone()),
            tx,
            seq: AtomicU64::new(0),
            close: Mutex::new(None),
            closing: Notify::new(),
            dropped: AtomicU64::new(0),
            node: r.node,
        });
        lock(&self.conns).insert(id, handle.clone());
        self.nodes.attach(&handle);
        if let Some((key, entry)) = r.presence {
            self.presence_upsert(key, entry, true);
        }
        if handle.role == Role::Node {
            self.refresh_health(false);
        }
        (handle, rx)
    }

    /// Removes a connection (on close).
    pub fn unregister(&self, handle: &ConnHandle) {
        lock(&self.conns).remove(&handle.id);
        self.nodes.detach(handle);
        if let Some(key) = &handle.presence_key {
            let still_connected = lock(&self.conns)
                .values()
                .any(|c| c.presence_key.as_deref() == Some(key));
            if !still_connected {
                let removed = {
                    let mut p = lock(&self.presence);
                    let before = p.len();
                    p.retain(|(k, _, _)| k != key);
                    before != p.len()
                };
                if removed {
                    self.bump_presence();
                }
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
            let seq = c.seq.fetch_add(1, Ordering::Relaxed) + 1;
            let frame = encode_event_raw(event, payload_json, Some(seq), state_version);
            match c.tx.try_send(Outbound::Frame(frame)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) if droppable => {
                    c.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(conn = %c.conn_id, event, "outbound queue full; closing slow consumer");
                    c.kill(close::POLICY_VIOLATION, close::reason::SLOW_CONSUMER);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
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

    fn self_entry(&self) -> PresenceEntry {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        PresenceEntry {
            host: Some(self.host.clone()),
            version: Some(VERSION.into()),
            platform: Some(format!("linux {kernel}").trim().to_owned()),
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

    /// Current presence list, the gateway's own entry first.
    pub fn presence(&self) -> Vec<PresenceEntry> {
        let now = now_ms();
        let mut p = lock(&self.presence);
        p.retain(|(_, e, connected)| *connected || now.saturating_sub(e.ts) < PRESENCE_TTL_MS);
        let mut out = vec![self.self_entry()];
        out.extend(p.iter().map(|(_, e, _)| e.clone()));
        out
    }

    /// Adds or replaces the presence entry `key`; `connected` entries do not expire.
    pub fn presence_upsert(&self, key: String, entry: PresenceEntry, connected: bool) {
        {
            let mut p = lock(&self.presence);
            p.retain(|(k, _, _)| *k != key);
            if p.len() >= PRESENCE_MAX {
                // Evict the oldest beacon (never a connected entry if avoidable).
                if let Some(i) = p.iter().position(|(_, _, c)| !c).or(Some(0)) {
                    p.remove(i);
                }
            }
            p.push((key, entry, connected));
        }
        self.bump_presence();
    }

    fn bump_presence(&self) {
        let sv = {
            let mut sv = lock(&self.state_version);
            sv.presence += 1;
            *sv
        };
        let payload = serde_json::json!({ "presence": self.presence() }).to_string();
        self.broadcast("presence", &payload, Some(sv), true, |_| true);
    }

    // ---- health ----------------------------------------------------------------------------

    fn compute_health(&self) -> HealthSummary {
        let started = Instant::now();
        let sessions = SessionsHealth {
            path: self.config.state_dir.join("sessions").display().to_string(),
            count: 0,
            recent: vec![],
        };
        HealthSummary {
            ok: true,
            ts: now_ms(),
            duration_ms: started.elapsed().as_millis() as u64,
            channels: Default::default(),
            channel_order: vec![],
            channel_labels: Default::default(),
            heartbeat_seconds: 0,
            default_agent_id: "main".into(),
            agents: vec![],
            sessions,
            gateway: Some(GatewayHealth {
                implementation: IMPLEMENTATION.into(),
                version: VERSION.into(),
                nodes: self.node_count() as u64,
            }),
        }
    }

    /// Recomputes health; broadcasts a `health` event when it changed (ignoring timestamps).
    /// Returns the summary JSON.
    pub fn refresh_health(&self, force_event: bool) -> Arc<str> {
        let summary = self.compute_health();
        let json: Arc<str> = serde_json::to_string(&summary).unwrap_or_default().into();
        let changed = {
            let mut h = lock(&self.health);
            let changed = match h.as_ref() {
                None => true,
                Some(old) => {
                    let mut a = old.summary.clone();
                    a.ts = summary.ts;
                    a.duration_ms = summary.duration_ms;
                    a != summary
                }
            };
            *h = Some(HealthCache {
                summary,
                json: json.clone(),
                at: Instant::now(),
            });
            changed
        };
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
            if let Some(h) = lock(&self.health).as_ref() {
                if h.at.elapsed() < HEALTH_CACHE {
                    return h.json.clone();
                }
            }
        }
        self.refresh_health(false)
    }

    // ---- system events ---------------------------------------------------------------------

    /// Queues a system event text; returns its 1-based position counter.
    pub fn queue_system_event(&self, text: String) -> u64 {
        let mut q = lock(&self.system_events);
        if q.len() >= SYSTEM_EVENTS_MAX {
            q.pop_front();
        }
        q.push_back(text);
        q.len() as u64
    }

    pub fn system_events(&self) -> Vec<String> {
        lock(&self.system_events).iter().cloned().collect()
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
                ..Limits::default()
            },
            trusted_proxies: vec![],
            node_allow: vec![],
            node_deny: vec![],
            config_path: None,
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
        }
    }

    #[test]
    fn full_queue_drops_droppable_events_with_a_seq_gap_then_closes_on_ticks() {
        let (hub, dir) = hub(4);
        let (conn, mut rx) = hub.register(reg());
        for _ in 0..10 {
            hub.broadcast("presence", "{}", None, true, |_| true);
        }
        // Four queued, six dropped, and the connection is not closed for droppable events.
        assert_eq!(conn.dropped.load(Ordering::Relaxed), 6);
        assert!(conn.close_request().is_none());
        let mut seqs = vec![];
        while let Ok(Outbound::Frame(f)) = rx.try_recv() {
            let v: serde_json::Value = serde_json::from_str(&f).unwrap();
            seqs.push(v["seq"].as_u64().unwrap());
        }
        assert_eq!(seqs, vec![1, 2, 3, 4]);
        // The next event shows the gap to the client.
        hub.broadcast("presence", "{}", None, true, |_| true);
        let Ok(Outbound::Frame(f)) = rx.try_recv() else {
            panic!("no frame")
        };
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
        let (conn, _rx) = hub.register(Registration {
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
}
