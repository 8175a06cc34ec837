//! Liveness: the gateway sends `tick` every `policy.tickIntervalMs`; no frame at all for twice
//! that long means the link is dead (a half-open TCP connection after Wi-Fi loss), and the node
//! closes it with 4000 and reconnects.

use std::time::Duration;
use tokio::time::Instant;

/// Trips when no inbound frame arrived for two tick intervals.
#[derive(Debug)]
pub struct Watchdog {
    limit: Duration,
    last: Instant,
}

impl Watchdog {
    /// A watchdog for `tick_interval_ms` (2× that without frames trips it).
    pub fn new(tick_interval_ms: u64) -> Watchdog {
        Watchdog {
            limit: Duration::from_millis(tick_interval_ms.max(100).saturating_mul(2)),
            last: Instant::now(),
        }
    }

    /// Any inbound frame counts as a sign of life.
    pub fn feed(&mut self) {
        self.last = Instant::now();
    }

    /// The last frame arrived at `at`.
    pub fn fed_at(&mut self, at: Instant) {
        self.last = self.last.max(at);
    }

    /// When it trips if nothing arrives.
    pub fn deadline(&self) -> Instant {
        self.last + self.limit
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline()
    }
}
