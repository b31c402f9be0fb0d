//! The request path's session cache: a sharded map keyed by session id. Entries are re-read
//! from the store after `ttl` so a shared backend's deletes (other replicas) apply soon.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::Session;

const SHARDS: usize = 16;

struct Entry {
    session: Arc<Session>,
    loaded_at: Instant,
}

pub struct SessionCache {
    shards: Vec<RwLock<HashMap<String, Entry>>>,
    ttl: Duration,
}

impl SessionCache {
    pub fn new(ttl: Duration) -> SessionCache {
        SessionCache {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            ttl,
        }
    }

    fn shard(&self, id: &str) -> &RwLock<HashMap<String, Entry>> {
        let mut h = DefaultHasher::new();
        id.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    /// A fresh cached session, or `None` (absent or older than the TTL).
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let shard = self.shard(id).read().expect("poisoned");
        shard
            .get(id)
            .filter(|e| e.loaded_at.elapsed() < self.ttl)
            .map(|e| e.session.clone())
    }

    pub fn insert(&self, session: Arc<Session>) {
        self.shard(&session.id).write().expect("poisoned").insert(
            session.id.clone(),
            Entry {
                session,
                loaded_at: Instant::now(),
            },
        );
    }

    pub fn remove(&self, id: &str) {
        self.shard(id).write().expect("poisoned").remove(id);
    }

    /// Drops expired sessions and stale entries.
    pub fn evict(&self, now: u64) -> usize {
        let mut n = 0;
        for shard in &self.shards {
            let mut map = shard.write().expect("poisoned");
            let before = map.len();
            map.retain(|_, e| e.session.expires_at > now && e.loaded_at.elapsed() < self.ttl);
            n += before - map.len();
        }
        n
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().expect("poisoned").len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_evict() {
        let c = SessionCache::new(Duration::from_secs(60));
        let mut s = Session::new_for_test("a", "alice");
        s.expires_at = 100;
        c.insert(Arc::new(s));
        c.insert(Arc::new(Session::new_for_test("b", "bob")));
        assert_eq!(c.get("a").unwrap().user_id, "alice");
        assert_eq!(c.len(), 2);
        assert_eq!(c.evict(100), 1);
        assert!(c.get("a").is_none());
        c.remove("b");
        assert!(c.is_empty());
    }

    #[test]
    fn stale_entries_are_misses() {
        let c = SessionCache::new(Duration::from_millis(0));
        c.insert(Arc::new(Session::new_for_test("a", "alice")));
        assert!(c.get("a").is_none());
    }
}
