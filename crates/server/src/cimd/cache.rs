//! The cache of valid documents: per URL, for the document's Cache-Control lifetime clamped to
//! the configured bounds, evicting expired then oldest entries when full.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::header::{CACHE_CONTROL, HeaderMap};

use crate::clients::Client;

// ---------------------------------------------------------------------------------------------

pub(crate) struct CacheEntry {
    client: Client,
    expires: Instant,
    inserted: Instant,
}

pub(crate) struct Cache {
    map: HashMap<String, CacheEntry>,
    cap: usize,
}

impl Cache {
    pub(crate) fn new(cap: usize) -> Cache {
        Cache {
            map: HashMap::new(),
            cap,
        }
    }

    pub(crate) fn get(&mut self, url: &str, now: Instant) -> Option<Client> {
        match self.map.get(url) {
            Some(e) if e.expires > now => Some(e.client.clone()),
            Some(_) => {
                self.map.remove(url);
                None
            }
            None => None,
        }
    }

    /// Insert, evicting expired entries and then the oldest one when full. The O(n) sweep runs
    /// only when the cache is full, so it is amortised over many inserts.
    pub(crate) fn insert(&mut self, url: String, client: Client, ttl: Duration, now: Instant) {
        if self.cap == 0 {
            return;
        }
        if self.map.len() >= self.cap && !self.map.contains_key(&url) {
            self.map.retain(|_, e| e.expires > now);
            if self.map.len() >= self.cap
                && let Some(oldest) = self
                    .map
                    .iter()
                    .min_by_key(|(_, e)| e.inserted)
                    .map(|(k, _)| k.clone())
            {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(
            url,
            CacheEntry {
                client,
                expires: now + ttl,
                inserted: now,
            },
        );
    }
}

/// How long to keep a valid document, from its `Cache-Control`; `None`: do not cache.
pub(crate) fn cache_ttl(headers: &HeaderMap, min: u64, max: u64) -> Option<Duration> {
    let mut max_age: Option<u64> = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let (name, arg) = match directive.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
                return None;
            }
            if name.eq_ignore_ascii_case("max-age")
                && let Some(arg) = arg
                && !arg.is_empty()
                && arg.bytes().all(|b| b.is_ascii_digit())
            {
                // Too many digits for u64: "a very long time" (RFC 9111 §1.2.2), clamped below.
                let secs = arg.parse::<u64>().unwrap_or(u64::MAX);
                max_age = Some(max_age.map_or(secs, |m| m.min(secs)));
            }
        }
    }
    let secs = max_age.unwrap_or(min).clamp(min, max);
    (secs > 0).then(|| Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cimd::document::parse_document;

    #[test]
    fn cache_lifetime_from_cache_control() {
        let ttl = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(CACHE_CONTROL, v.parse().unwrap());
            }
            cache_ttl(&h, 60, 86_400).map(|d| d.as_secs())
        };
        assert_eq!(ttl(&[]), Some(60), "absent: the minimum");
        assert_eq!(ttl(&["max-age=600"]), Some(600));
        assert_eq!(ttl(&["public, max-age=600"]), Some(600));
        assert_eq!(ttl(&["MAX-AGE = \"600\""]), Some(600));
        assert_eq!(ttl(&["max-age=5"]), Some(60), "clamped up");
        assert_eq!(ttl(&["max-age=0"]), Some(60), "clamped up");
        assert_eq!(ttl(&["max-age=9999999"]), Some(86_400), "clamped down");
        assert_eq!(ttl(&["max-age=99999999999999999999999"]), Some(86_400));
        assert_eq!(
            ttl(&["max-age=600", "max-age=120"]),
            Some(120),
            "the smaller"
        );
        assert_eq!(ttl(&["max-age=abc"]), Some(60), "unparseable: ignored");
        assert_eq!(ttl(&["max-age=-5"]), Some(60));
        assert_eq!(ttl(&["no-store"]), None);
        assert_eq!(ttl(&["max-age=600, no-store"]), None);
        assert_eq!(ttl(&["No-Cache"]), None);
        assert_eq!(ttl(&["private, max-age=300"]), Some(300));
        let mut h = HeaderMap::new();
        h.insert(CACHE_CONTROL, "max-age=0".parse().unwrap());
        assert_eq!(cache_ttl(&h, 0, 100), None, "a zero lifetime is not stored");
    }

    #[test]
    fn cache_evicts_expired_then_oldest() {
        let client = |id: &str| {
            let mut c = parse_document(
                id,
                "example.com",
                format!(r#"{{"client_id":"{id}","client_name":"A","redirect_uris":["https://a.example/cb"]}}"#)
                    .as_bytes(),
                &[],
            )
            .unwrap();
            c.client_id = id.into();
            c
        };
        let t0 = Instant::now();
        let mut cache = Cache::new(3);
        cache.insert("a".into(), client("a"), Duration::from_secs(100), t0);
        cache.insert(
            "b".into(),
            client("b"),
            Duration::from_secs(1),
            t0 + Duration::from_millis(1),
        );
        cache.insert(
            "c".into(),
            client("c"),
            Duration::from_secs(100),
            t0 + Duration::from_millis(2),
        );
        // Full, and b has expired: b goes, a stays.
        let t1 = t0 + Duration::from_secs(5);
        cache.insert("d".into(), client("d"), Duration::from_secs(100), t1);
        assert!(cache.get("a", t1).is_some());
        assert!(cache.get("b", t1).is_none());
        // Full, nothing expired: the oldest (a) goes.
        cache.insert("e".into(), client("e"), Duration::from_secs(100), t1);
        assert_eq!(cache.map.len(), 3);
        assert!(cache.get("a", t1).is_none());
        for k in ["c", "d", "e"] {
            assert_eq!(cache.get(k, t1).unwrap().client_id, k);
        }
        // Expiry on read.
        assert!(cache.get("c", t0 + Duration::from_secs(101)).is_none());
        assert_eq!(cache.map.len(), 2);
    }
}
