//! The `health` summary: computed from the registry, cached for [`HEALTH_CACHE`], and compared
//! (timestamps aside) to decide whether a `health` event is due.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pincer_protocol::methods::{GatewayHealth, HealthSummary, SessionsHealth};

use crate::{now_ms, IMPLEMENTATION, VERSION};

/// Health snapshots younger than this are served from cache unless `probe` is set.
pub const HEALTH_CACHE: Duration = Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Cached {
    summary: HealthSummary,
    json: Arc<str>,
    at: Instant,
}

/// The health cache.
#[derive(Default)]
pub struct Health {
    cached: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").finish_non_exhaustive()
    }
}

/// What health is computed from.
pub struct Inputs<'a> {
    /// Reported as `sessions.path`.
    pub sessions_path: &'a std::path::Path,
    /// Connected nodes, reported as `gateway.nodes`.
    pub nodes: u64,
}

fn compute(i: &Inputs<'_>) -> HealthSummary {
    HealthSummary {
        ok: true,
        ts: now_ms(),
        duration_ms: 0,
        channels: Default::default(),
        channel_order: vec![],
        channel_labels: Default::default(),
        heartbeat_seconds: 0,
        default_agent_id: "main".into(),
        agents: vec![],
        sessions: SessionsHealth {
            path: i.sessions_path.display().to_string(),
            count: 0,
            recent: vec![],
        },
        gateway: Some(GatewayHealth {
            implementation: IMPLEMENTATION.into(),
            version: VERSION.into(),
            nodes: i.nodes,
        }),
    }
}

impl Health {
    /// Recomputes and caches the summary; returns its JSON and whether it changed.
    pub fn refresh(&self, inputs: &Inputs<'_>) -> (Arc<str>, bool) {
        let summary = compute(inputs);
        let json: Arc<str> = serde_json::to_string(&summary).unwrap_or_default().into();
        let mut h = lock(&self.cached);
        let changed = match h.as_ref() {
            None => true,
            Some(old) => {
                let mut a = old.summary.clone();
                a.ts = summary.ts;
                a.duration_ms = summary.duration_ms;
                a != summary
            }
        };
        *h = Some(Cached {
            summary,
            json: json.clone(),
            at: Instant::now(),
        });
        (json, changed)
    }

    /// The cached JSON when younger than [`HEALTH_CACHE`].
    pub fn fresh(&self) -> Option<Arc<str>> {
        lock(&self.cached)
            .as_ref()
            .filter(|h| h.at.elapsed() < HEALTH_CACHE)
            .map(|h| h.json.clone())
    }
}
