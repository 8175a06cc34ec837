//! Reconnect delays: exponential from 0.5 s to a 30 s cap, with jitter so that many nodes
//! restarting together (a gateway reboot) do not come back in lockstep.

use std::time::Duration;

/// Exponential backoff with "equal jitter": each delay is in [d/2, d].
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(500), Duration::from_secs(30))
    }
}

impl Backoff {
    /// Delays doubling from `base` up to `cap` (before jitter).
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The next delay (and counts the attempt).
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16));
        let d = exp.min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let mut r = [0u8; 4];
        let _ = getrandom::fill(&mut r);
        let frac = u32::from_le_bytes(r) as f64 / u32::MAX as f64;
        d.mul_f64(0.5 + 0.5 * frac)
    }

    /// Back to the base delay (after a connection that stayed up).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Delays handed out since the last [`reset`](Backoff::reset).
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(
            first >= Duration::from_millis(250) && first <= Duration::from_millis(500),
            "{first:?}"
        );
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(30));
        }
        let late = b.next_delay();
        assert!(late >= Duration::from_secs(15), "{late:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));
    }
}
