//! The in-process cache: a map with an expiry per entry and the same
//! fill-only-where-empty and tombstone rules as the Redis one, so both
//! behave alike. Written here rather than taken from a caching crate
//! (moka, quick_cache) because those evict on their own terms and have no
//! "fill unless a tombstone is there" operation; this is the 80 lines that
//! rule needs, bounded by `capacity`.

use super::TOMBSTONE;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Entry {
    /// `None`: a tombstone.
    value: Option<Vec<u8>>,
    expires: Instant,
}

/// The map and when it was last swept of expired entries.
struct Entries {
    map: HashMap<String, Entry>,
    swept: Option<Instant>,
}

/// A full cache is swept at most this often: a sweep walks every entry
/// under the lock, which must not happen on every miss while full.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl Entries {
    /// Whether `incoming` more entries fit, after dropping the expired
    /// ones if the last sweep is old enough.
    fn room_for(&mut self, incoming: usize, capacity: usize, now: Instant) -> bool {
        if self.map.len() + incoming <= capacity {
            return true;
        }
        if self.swept.is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY) {
            self.map.retain(|_, e| e.expires > now);
            self.swept = Some(now);
        }
        self.map.len() + incoming <= capacity
    }
}

pub(super) struct MemoryCache {
    entries: Mutex<Entries>,
    ttl: Duration,
    capacity: usize,
}

impl MemoryCache {
    pub(super) fn new(ttl: Duration, capacity: usize) -> MemoryCache {
        MemoryCache {
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                swept: None,
            }),
            ttl,
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves a map that is still whole.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self, key: &str) -> Option<Vec<u8>> {
        let now = Instant::now();
        let entries = self.lock();
        entries
            .map
            .get(key)
            .filter(|e| e.expires > now)
            .and_then(|e| e.value.clone())
    }

    pub(super) fn fill(&self, key: &str, value: Vec<u8>) {
        let now = Instant::now();
        let mut entries = self.lock();
        if entries.map.get(key).is_some_and(|e| e.expires > now) {
            return;
        }
        if !entries.room_for(1, self.capacity, now) {
            return;
        }
        entries.map.insert(
            key.to_owned(),
            Entry {
                value: Some(value),
                expires: now + self.ttl,
            },
        );
    }

    pub(super) fn invalidate(&self, keys: &[String]) {
        let now = Instant::now();
        let mut entries = self.lock();
        // Tombstones go in even over capacity: they keep stale fills out,
        // and expire within seconds.
        entries.room_for(keys.len(), self.capacity, now);
        for key in keys {
            entries.map.insert(
                key.clone(),
                Entry {
                    value: None,
                    expires: now + TOMBSTONE,
                },
            );
        }
    }
}

impl MemoryCache {
    /// Tombstones every key that starts with `prefix`.
    pub(super) fn invalidate_prefix(&self, prefix: &str) {
        let expires = Instant::now() + TOMBSTONE;
        let mut entries = self.lock();
        for (key, e) in entries.map.iter_mut() {
            if key.starts_with(prefix) {
                *e = Entry { value: None, expires };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_holds_at_most_its_capacity_of_values() {
        let m = MemoryCache::new(Duration::from_secs(60), 2);
        m.fill("a", vec![1]);
        m.fill("b", vec![2]);
        m.fill("c", vec![3]);
        assert_eq!(
            (m.get("a"), m.get("b"), m.get("c")),
            (Some(vec![1]), Some(vec![2]), None)
        );
    }

    #[test]
    fn a_fill_does_not_replace_a_live_value() {
        let m = MemoryCache::new(Duration::from_secs(60), 10);
        m.fill("a", vec![1]);
        m.fill("a", vec![2]);
        assert_eq!(m.get("a"), Some(vec![1]));
    }
}
