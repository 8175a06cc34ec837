//! Idempotency: the first outcome of a side-effecting request is kept for 5 minutes and
//! replayed for retries with the same key. Bounded in count ([`MAX_ENTRIES`]) and in bytes
//! ([`MAX_BYTES`], keys counted twice as they are stored twice), oldest evicted first; a key
//! longer than [`MAX_KEY`] is kept as its SHA-256, an outcome larger than [`MAX_OUTCOME`] is not
//! kept at all (a retry then runs again).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use pincer_protocol::error::ErrorShape;

/// How long an outcome is replayed.
pub const TTL: Duration = Duration::from_secs(5 * 60);
/// Most outcomes kept.
pub const MAX_ENTRIES: usize = 1000;
/// Most bytes kept: keys (twice) and outcomes.
pub const MAX_BYTES: usize = 1024 * 1024;
/// Longest key kept as it is; longer ones are kept as `sha256:<hex>`.
pub const MAX_KEY: usize = 128;
/// Largest outcome kept.
pub const MAX_OUTCOME: usize = 64 * 1024;

/// A stored outcome: the payload JSON or the error.
pub type Outcome = Result<String, ErrorShape>;

/// The dedupe cache, keyed `"<method>:<idempotencyKey>"`.
#[derive(Debug, Default)]
pub struct Dedupe {
    map: HashMap<String, (Instant, Outcome)>,
    order: VecDeque<(Instant, String)>,
    bytes: usize,
}

fn outcome_len(o: &Outcome) -> usize {
    match o {
        Ok(text) => text.len(),
        Err(e) => e.message.len() + e.code.len() + 64,
    }
}

impl Dedupe {
    /// The cache key for `method` and the client's idempotency `key`.
    pub fn key(method: &str, key: &str) -> String {
        if key.len() <= MAX_KEY {
            return format!("{method}:{key}");
        }
        use sha2::{Digest, Sha256};
        let hex: String = Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{method}:sha256:{hex}")
    }

    fn sweep(&mut self, now: Instant) {
        while let Some((at, key)) = self.order.front() {
            let expired = now.duration_since(*at) >= TTL;
            if !expired && self.map.len() <= MAX_ENTRIES && self.bytes <= MAX_BYTES {
                break;
            }
            self.bytes = self.bytes.saturating_sub(key.len());
            // Only drop the map entry if it is the one this order record refers to.
            if self.map.get(key).is_some_and(|(t, _)| t == at) {
                if let Some((_, o)) = self.map.remove(key) {
                    self.bytes = self.bytes.saturating_sub(key.len() + outcome_len(&o));
                }
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

    /// Stores the first outcome for `key` (a key from [`Dedupe::key`]).
    pub fn put(&mut self, key: String, outcome: Outcome) {
        if outcome_len(&outcome) > MAX_OUTCOME || self.map.contains_key(&key) {
            return;
        }
        let now = Instant::now();
        self.bytes += 2 * key.len() + outcome_len(&outcome);
        self.map.insert(key.clone(), (now, outcome));
        self.order.push_back((now, key));
        self.sweep(now);
    }

    /// Bytes held (keys twice, outcomes).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Outcomes held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is held.
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

    #[test]
    fn bytes_are_bounded_whatever_the_keys_and_outcomes() {
        let mut d = Dedupe::default();
        // a 1 MB key is kept as its hash, and still matches its retry
        let long = "k".repeat(1024 * 1024);
        let k = Dedupe::key("system-event", &long);
        assert!(k.len() < 100, "{}", k.len());
        d.put(k.clone(), Ok("1".into()));
        assert_eq!(
            d.get(&Dedupe::key("system-event", &long)),
            Some(Ok("1".into()))
        );
        assert_ne!(k, Dedupe::key("system-event", &"k".repeat(1024 * 1024 - 1)));
        // an outcome over the cap is not kept
        d.put("m:big".into(), Ok("x".repeat(MAX_OUTCOME + 1)));
        assert_eq!(d.get("m:big"), None);
        // many outcomes at the cap: the byte budget holds, the newest stay
        for i in 0..200 {
            d.put(format!("m:{i}"), Ok("y".repeat(MAX_OUTCOME)));
        }
        assert!(d.bytes() <= MAX_BYTES, "{} bytes", d.bytes());
        assert!(
            d.len() < 200 && d.len() >= MAX_BYTES / (MAX_OUTCOME + 64) - 1,
            "{}",
            d.len()
        );
        assert!(d.get("m:199").is_some() && d.get("m:0").is_none());
    }
}
