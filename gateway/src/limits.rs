//! Admission limits that hold before anyone is authenticated: the pre-auth socket budget (per
//! client address and overall) and the lockout after repeated failed authentications.
//!
//! Both are plain counters behind one mutex each, consulted by the accept loop and the
//! handshake; neither knows about sockets.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use crate::config::Limits;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Addresses remembered by the lockout table before stale ones are swept.
const LOCKOUT_TABLE_SWEEP: usize = 10_000;

/// Unauthenticated sockets: at most `per_ip` from one address, `total` overall.
#[derive(Debug)]
pub struct PreauthBudget {
    per_ip: usize,
    total: usize,
    held: Mutex<(HashMap<IpAddr, usize>, usize)>,
}

impl PreauthBudget {
    /// A budget of `per_ip` sockets per address and `total` overall.
    pub fn new(per_ip: usize, total: usize) -> PreauthBudget {
        PreauthBudget {
            per_ip,
            total,
            held: Mutex::new((HashMap::new(), 0)),
        }
    }

    /// Takes one slot for `ip`; `false` when its share or the whole budget is spent.
    pub fn acquire(&self, ip: IpAddr) -> bool {
        let mut g = lock(&self.held);
        let (m, total) = &mut *g;
        if *total >= self.total {
            return false;
        }
        let n = m.entry(ip).or_insert(0);
        if *n >= self.per_ip {
            return false;
        }
        *n += 1;
        *total += 1;
        true
    }

    /// Returns a slot taken by [`PreauthBudget::acquire`].
    pub fn release(&self, ip: IpAddr) {
        let mut g = lock(&self.held);
        let (m, total) = &mut *g;
        if let Some(n) = m.get_mut(&ip) {
            *n = n.saturating_sub(1);
            *total = total.saturating_sub(1);
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }

    /// Slots held now.
    pub fn held(&self) -> usize {
        lock(&self.held).1
    }
}

/// Failed authentications per address within a window, then a lockout; and the failures of
/// all addresses together, past which guessing the shared secret is paused for everyone
/// remote (a guesser spread over many addresses). Loopback is exempt from both.
#[derive(Debug)]
pub struct AuthLockout {
    max_attempts: usize,
    window_ms: u64,
    lockout_ms: u64,
    max_total: usize,
    table: Mutex<HashMap<IpAddr, (VecDeque<u64>, u64)>>,
    /// Times of the recent failures of every non-loopback address (at most `max_total`).
    recent: Mutex<VecDeque<u64>>,
}

impl AuthLockout {
    /// Counters with the `auth_*` limits of `l`.
    pub fn new(l: &Limits) -> AuthLockout {
        AuthLockout {
            max_attempts: l.auth_max_attempts,
            window_ms: l.auth_window_ms,
            lockout_ms: l.auth_lockout_ms,
            max_total: l.auth_max_failures_total.max(1),
            table: Mutex::new(HashMap::new()),
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Milliseconds until remote clients may have the shared secret compared again, when the
    /// failures of all addresses together filled the window.
    pub fn guessing_paused(&self, ip: IpAddr, now_ms: u64) -> Option<u64> {
        if ip.is_loopback() {
            return None;
        }
        let mut r = lock(&self.recent);
        while r
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= self.window_ms)
        {
            r.pop_front();
        }
        (r.len() >= self.max_total).then(|| {
            r.front()
                .map_or(0, |t| (t + self.window_ms).saturating_sub(now_ms))
        })
    }

    /// Milliseconds until `ip` may try again, when it is locked out.
    pub fn locked(&self, ip: IpAddr, now_ms: u64) -> Option<u64> {
        if ip.is_loopback() {
            return None;
        }
        let m = lock(&self.table);
        let (_, until) = m.get(&ip)?;
        (*until > now_ms).then(|| until - now_ms)
    }

    /// Records a failed authentication from `ip`; true when this locks it out.
    pub fn failed(&self, ip: IpAddr, now_ms: u64) -> bool {
        if ip.is_loopback() {
            return false;
        }
        let mut m = lock(&self.table);
        if m.len() > LOCKOUT_TABLE_SWEEP {
            let window = self.window_ms;
            m.retain(|_, (f, until)| {
                *until > now_ms || f.back().is_some_and(|t| now_ms - t < window)
            });
        }
        let (fails, until) = m.entry(ip).or_default();
        while fails
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= self.window_ms)
        {
            fails.pop_front();
        }
        fails.push_back(now_ms);
        {
            let mut r = lock(&self.recent);
            if r.len() >= self.max_total {
                r.pop_front();
            }
            r.push_back(now_ms);
        }
        if fails.len() >= self.max_attempts {
            fails.clear();
            *until = now_ms + self.lockout_ms;
            tracing::warn!(%ip, lockout_ms = self.lockout_ms, "too many failed authentications; locked out");
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preauth_budget_per_address_and_overall() {
        let b = PreauthBudget::new(2, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let c: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(b.acquire(a));
        assert!(b.acquire(a));
        assert!(!b.acquire(a), "per-address share spent");
        assert!(b.acquire(c));
        assert!(!b.acquire(c), "overall budget spent");
        b.release(a);
        assert!(b.acquire(c));
        assert_eq!(b.held(), 3);
        b.release("10.9.9.9".parse().unwrap());
        assert_eq!(b.held(), 3, "releasing a slot never taken changes nothing");
    }

    #[test]
    fn lockout_after_repeated_failures_but_not_for_loopback() {
        let l = AuthLockout::new(&Limits {
            auth_max_attempts: 3,
            auth_window_ms: 1000,
            auth_lockout_ms: 5000,
            ..Limits::default()
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(!l.failed(ip, 0));
        assert!(!l.failed(ip, 10));
        assert!(l.failed(ip, 20));
        assert_eq!(l.locked(ip, 1020), Some(4000));
        assert_eq!(l.locked(ip, 6000), None);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        for t in 0..10 {
            assert!(!l.failed(lo, t));
        }
        assert_eq!(l.locked(lo, 10), None);
    }

    #[test]
    fn failures_spread_over_many_addresses_pause_guessing_for_every_remote_address() {
        let l = AuthLockout::new(&Limits {
            auth_max_attempts: 10,
            auth_window_ms: 1000,
            auth_max_failures_total: 20,
            ..Limits::default()
        });
        // 20 addresses, one failure each: none is locked out, but together they fill the window
        for i in 0..20u8 {
            let ip: IpAddr = format!("10.0.1.{i}").parse().unwrap();
            assert!(!l.failed(ip, u64::from(i)));
            assert_eq!(l.locked(ip, 20), None);
        }
        let fresh: IpAddr = "10.9.9.9".parse().unwrap();
        assert_eq!(l.guessing_paused(fresh, 20), Some(980));
        assert_eq!(l.guessing_paused("127.0.0.1".parse().unwrap(), 20), None);
        // the window moves on
        assert_eq!(l.guessing_paused(fresh, 999), Some(1));
        assert_eq!(l.guessing_paused(fresh, 1020), None);
    }
}
