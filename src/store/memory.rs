//! In-memory session store (`databroker_storage_type: memory`): lost on restart.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Session, SessionStore, StoreFuture};

#[derive(Default)]
pub struct MemoryStore {
    sessions: Mutex<HashMap<String, Session>>,
}

impl SessionStore for MemoryStore {
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Session>> {
        let v = self.sessions.lock().expect("poisoned").get(id).cloned();
        Box::pin(async move { Ok(v) })
    }

    fn put<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()> {
        self.sessions
            .lock()
            .expect("poisoned")
            .insert(session.id.clone(), session.clone());
        Box::pin(async { Ok(()) })
    }

    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        let removed = self.sessions.lock().expect("poisoned").remove(id).is_some();
        Box::pin(async move { Ok(removed) })
    }

    fn sweep(&self, now: u64) -> StoreFuture<'_, usize> {
        let mut map = self.sessions.lock().expect("poisoned");
        let before = map.len();
        map.retain(|_, s| s.expires_at > now);
        let n = before - map.len();
        Box::pin(async move { Ok(n) })
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_store_contract() {
        super::super::contract::check(&super::MemoryStore::default()).await;
    }
}
