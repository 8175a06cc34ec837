//! Idempotency: the first outcome of a side-effecting request is kept for 5 minutes (at most
//! 1,000 entries, oldest evicted first) and replayed for retries with the same key.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use pincer_protocol::error::ErrorShape;

/// How long an outcome is replayed.
pub const TTL: Duration = Duration::from_secs(5 * 60);
/// Most outcomes kept.
pub const MAX_ENTRIES: usize = 1000;

/// A stored outcome: the payload JSON or the error.
pub type Outcome = Result<String, ErrorShape>;

/// The dedupe cache, keyed `"<method>:<idempotencyKey>"`.
#[derive(Debug, Default)]
pub struct Dedupe {
    map: HashMap<String, (Instant, Outcome)>,
    order: VecDeque<(Instant, String)>,
}

impl Dedupe {
    fn sweep(&mut self, now: Instant) {
        while let Some((at, key)) = self.order.front() {
            let expired = now.duration_since(*at) >= TTL;
            if !expired && self.map.len() <= MAX_ENTRIES {
                break;
            }
            // Only drop the map entry if it is the one this order record refers to.
            if self.map.get(key).is_some_and(|(t, _)| t == at) {
                self.map.remove(key);
            }
            self.order.pop_front();
        }
    }

    /// The stored outcome for `key`, if still fresh.
    pub fn get(&mut self, key: &str) -> Option<Outcome> {
        let now = Instant::now();
        self.sweep(now);
        self.map.get(key).map(|(_, o)| o.clone())
    }

    /// Stores the first outcome for `key`.
    pub fn put(&mut self, key: String, outcome: Outcome) {
        let now = Instant::now();
        self.map.entry(key.clone()).or_insert((now, outcome));
        self.order.push_back((now, key));
        self.sweep(now);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_outcome_wins_and_size_is_bounded() {
        let mut d = Dedupe::default();
        d.put("m:a".into(), Ok("1".into()));
        d.put("m:a".into(), Ok("2".into()));
        assert_eq!(d.get("m:a"), Some(Ok("1".into())));
        for i in 0..(MAX_ENTRIES + 50) {
            d.put(format!("m:{i}"), Ok(i.to_string()));
        }
        assert!(d.len() <= MAX_ENTRIES);
        assert_eq!(
            d.get(&format!("m:{}", MAX_ENTRIES + 49)),
            Some(Ok((MAX_ENTRIES + 49).to_string()))
        );
        assert_eq!(d.get("m:0"), None, "oldest evicted");
    }
}
