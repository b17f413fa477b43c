//! In-memory rate limits and short-lived caches with bounded size and amortised upkeep.
//!
//! [`ExpiringMap`] keeps entries that all live for the same time (`ttl`), in a hash map plus a
//! queue in insertion order, which is also expiry order. Each insert first drops at most a few
//! expired entries from the front of the queue, so no call ever scans the whole map; when the map
//! is full the oldest entry goes. [`RateLimiter`] counts calls per key in fixed windows on top of
//! it.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Expired entries dropped per insert: more than one, so the queue shrinks faster than it grows.
const SWEEP: usize = 4;

/// A map whose entries expire `ttl` after their insertion.
pub struct ExpiringMap<K, V> {
    map: HashMap<K, (Instant, V)>,
    /// (key, expiry) in insertion order. An entry replaced by a later insert leaves a stale item
    /// here, recognised by its expiry and skipped.
    queue: VecDeque<(K, Instant)>,
    ttl: Duration,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V> ExpiringMap<K, V> {
    pub fn new(ttl: Duration, cap: usize) -> Self {
        ExpiringMap {
            map: HashMap::new(),
            queue: VecDeque::new(),
            ttl,
            cap: cap.max(1),
        }
    }

    /// The live entry for `key` and when it expires.
    pub fn get_mut(&mut self, key: &K, now: Instant) -> Option<(Instant, &mut V)> {
        match self.map.get(key) {
            Some((exp, _)) if *exp <= now => {
                self.map.remove(key);
                None
            }
            Some(_) => self.map.get_mut(key).map(|(exp, v)| (*exp, v)),
            None => None,
        }
    }

    /// Insert (or replace) `key`, expiring `ttl` from `now`.
    pub fn insert(&mut self, key: K, value: V, now: Instant) {
        self.sweep(now);
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            self.evict_oldest();
        }
        let exp = now + self.ttl;
        self.queue.push_back((key.clone(), exp));
        self.map.insert(key, (exp, value));
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Drop up to [`SWEEP`] expired entries from the front of the queue.
    fn sweep(&mut self, now: Instant) {
        for _ in 0..SWEEP {
            match self.queue.front() {
                Some((_, exp)) if *exp <= now => {}
                _ => return,
            }
            if let Some((key, exp)) = self.queue.pop_front()
                && self.map.get(&key).is_some_and(|(e, _)| *e == exp)
            {
                self.map.remove(&key);
            }
        }
    }

    /// Drop the oldest live entry (stale queue items on the way are skipped; each is popped once).
    fn evict_oldest(&mut self) {
        while let Some((key, exp)) = self.queue.pop_front() {
            if self.map.get(&key).is_some_and(|(e, _)| *e == exp) {
                self.map.remove(&key);
                return;
            }
        }
    }
}

/// Calls per key per fixed window (the window starts with a key's first call).
pub struct RateLimiter<K> {
    windows: Mutex<ExpiringMap<K, u32>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `cap`: how many keys are tracked at most; past it the oldest window is forgotten.
    pub fn new(window: Duration, cap: usize) -> Self {
        RateLimiter {
            windows: Mutex::new(ExpiringMap::new(window, cap)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ExpiringMap<K, u32>> {
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count a call: `Ok` within `limit`, else `Err(time until the window ends)`.
    pub fn hit(&self, key: &K, limit: u32) -> Result<(), Duration> {
        self.add(key, 1, limit)
    }

    /// Count `n` calls at once (see [`RateLimiter::hit`]).
    pub fn add(&self, key: &K, n: u32, limit: u32) -> Result<(), Duration> {
        let now = Instant::now();
        let mut w = self.lock();
        let (count, exp) = match w.get_mut(key, now) {
            Some((exp, count)) => {
                *count = count.saturating_add(n);
                (*count, exp)
            }
            None => {
                w.insert(key.clone(), n, now);
                (n, now + w.ttl)
            }
        };
        if count <= limit {
            Ok(())
        } else {
            Err(retry_after(exp, now))
        }
    }

    /// Whether `key` has used up `limit` in its window (without counting a call): `Some(time
    /// until the window ends)` if so.
    pub fn exhausted(&self, key: &K, limit: u32) -> Option<Duration> {
        let now = Instant::now();
        let mut w = self.lock();
        let (exp, count) = w.get_mut(key, now)?;
        (*count >= limit).then(|| retry_after(exp, now))
    }

    /// How many keys are tracked.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

/// Whole seconds until `exp`, at least one (a `Retry-After` of 0 invites an immediate retry).
fn retry_after(exp: Instant, now: Instant) -> Duration {
    let secs = exp.saturating_duration_since(now).as_secs_f64().ceil() as u64;
    Duration::from_secs(secs.max(1))
}

/// What rate limits count a client under: its IPv4 address, or the /64 of its IPv6 address
/// (one subscriber usually holds a whole /64, so counting single IPv6 addresses would let it
/// walk around any limit).
pub fn rate_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip.to_canonical() {
        std::net::IpAddr::V6(v6) => std::net::IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !((1u128 << 64) - 1),
        )),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_counts_per_key_and_says_when_to_retry() {
        let l = RateLimiter::new(Duration::from_secs(60), 100);
        for _ in 0..3 {
            assert!(l.hit(&"a", 3).is_ok());
        }
        let wait = l.hit(&"a", 3).unwrap_err();
        assert!(wait <= Duration::from_secs(60) && wait >= Duration::from_secs(59));
        assert!(l.hit(&"b", 3).is_ok(), "another key has its own window");
        assert!(l.exhausted(&"a", 3).is_some());
        assert!(l.exhausted(&"b", 3).is_none());
        assert!(l.exhausted(&"c", 3).is_none(), "peeking does not count");
        assert!(l.add(&"d", 5, 4).is_err());
    }

    #[test]
    fn expired_windows_start_over() {
        let l = RateLimiter::new(Duration::from_millis(0), 100);
        for _ in 0..10 {
            assert!(l.hit(&1u8, 1).is_ok(), "a zero window never accumulates");
        }
    }

    /// At capacity, an insert removes one entry (the oldest) rather than scanning the map, and
    /// expired entries go a few at a time with each insert.
    #[test]
    fn the_map_stays_bounded_without_scanning() {
        let mut m = ExpiringMap::new(Duration::from_secs(60), 1000);
        let t0 = Instant::now();
        for i in 0..100_000u32 {
            m.insert(i, (), t0);
            assert!(m.len() <= 1000);
        }
        assert!(m.get_mut(&99_999, t0).is_some());
        assert!(m.get_mut(&0, t0).is_none(), "the oldest went first");
        // Re-inserting a key leaves a stale queue item, which eviction skips.
        m.insert(99_999, (), t0);
        assert_eq!(m.len(), 1000);
        // After expiry, each insert drops up to SWEEP old entries.
        let later = t0 + Duration::from_secs(61);
        m.insert(1_000_000, (), later);
        assert!(m.len() <= 1000 - SWEEP + 2, "{}", m.len());
        assert!(m.get_mut(&99_000, later).is_none(), "expired");
        assert!(m.get_mut(&1_000_000, later).is_some());
    }
}

/// How many client addresses the per-IP limiters track; past it the oldest window is forgotten
/// (the global limit still holds then).
const LIMITER_KEYS: usize = 100_000;

/// A per-client-IP limiter with one-minute windows.
pub fn per_ip_limiter() -> RateLimiter<std::net::IpAddr> {
    RateLimiter::new(Duration::from_secs(60), LIMITER_KEYS)
}

tokio::task_local! {
    pub static CURRENT: std::cell::Cell<Option<std::net::IpAddr>>;
}

/// The client address of the request this task is serving, for code far from the handler (the
/// metadata-document fetcher's per-client budget). `None` outside a request.
pub fn current_client_ip() -> Option<std::net::IpAddr> {
    CURRENT.try_with(std::cell::Cell::get).ok().flatten()
}
