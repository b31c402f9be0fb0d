//! The session actor owns every write to the session store (put on sign-in and refresh, delete
//! on sign-out or failed refresh, periodic sweep of expired sessions) and keeps the shared
//! request-path cache in step. Request handlers read through [`Sessions::get`]: cache first, the
//! store only on a miss, never the actor's mailbox.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::store::cache::SessionCache;
use crate::store::{unix_now, Session, SessionStore, StoreError};

/// How often expired sessions are swept.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How long a cached session is trusted before it is re-read from the store.
pub const CACHE_TTL: Duration = Duration::from_secs(30);

/// The write logic, independent of the actor runtime.
#[derive(Clone)]
pub struct SessionWriter {
    pub store: Arc<dyn SessionStore>,
    pub cache: Arc<SessionCache>,
}

impl SessionWriter {
    pub async fn put(&self, session: Session) -> Result<(), StoreError> {
        self.store.put(&session).await?;
        self.cache.insert(Arc::new(session));
        Ok(())
    }

    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.cache.remove(id);
        self.store.delete(id).await
    }

    pub async fn sweep(&self, now: u64) -> Result<usize, StoreError> {
        self.cache.evict(now);
        self.store.sweep(now).await
    }
}

pub struct SessionActor {
    writer: SessionWriter,
    sweep_interval: Duration,
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // When startup fails, the system is dropped with this actor never polled, and
        // `started` runs during that drop with no timer available: nothing to schedule then.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        ctx.run_interval(self.sweep_interval, |act, ctx| {
            let writer = act.writer.clone();
            ctx.spawn(
                async move {
                    match writer.sweep(unix_now()).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(swept = n, "expired sessions removed"),
                        Err(e) => tracing::warn!(error = %e, "session sweep failed"),
                    }
                }
                .into_actor(act),
            );
        });
    }
}

#[derive(Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct PutSession(pub Session);

#[derive(Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct DeleteSession(pub String);

#[derive(Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct SweepSessions(pub u64);

impl Handler<PutSession> for SessionActor {
    type Result = ResponseFuture<Result<(), StoreError>>;
    fn handle(&mut self, msg: PutSession, _: &mut Context<Self>) -> Self::Result {
        let w = self.writer.clone();
        Box::pin(async move {
            let id = msg.0.id.clone();
            let r = w.put(msg.0).await;
            if let Err(e) = &r {
                tracing::warn!(session = %id, error = %e, "storing session failed");
            }
            r
        })
    }
}

impl Handler<DeleteSession> for SessionActor {
    type Result = ResponseFuture<Result<bool, StoreError>>;
    fn handle(&mut self, msg: DeleteSession, _: &mut Context<Self>) -> Self::Result {
        let w = self.writer.clone();
        Box::pin(async move {
            let r = w.delete(&msg.0).await;
            if let Err(e) = &r {
                tracing::warn!(session = %msg.0, error = %e, "deleting session failed");
            }
            r
        })
    }
}

impl Handler<SweepSessions> for SessionActor {
    type Result = ResponseFuture<Result<usize, StoreError>>;
    fn handle(&mut self, msg: SweepSessions, _: &mut Context<Self>) -> Self::Result {
        let w = self.writer.clone();
        Box::pin(async move { w.sweep(msg.0).await })
    }
}

/// The handle the HTTP layer uses.
#[derive(Clone)]
pub struct Sessions {
    cache: Arc<SessionCache>,
    store: Arc<dyn SessionStore>,
    actor: Addr<SessionActor>,
}

fn mailbox(e: MailboxError) -> StoreError {
    StoreError::Backend(format!("session actor unavailable: {e}"))
}

impl Sessions {
    /// Starts the session actor; call inside a running actix `System`.
    pub fn start(store: Arc<dyn SessionStore>) -> Sessions {
        Self::start_with(store, SWEEP_INTERVAL, CACHE_TTL)
    }

    pub fn start_with(
        store: Arc<dyn SessionStore>,
        sweep_interval: Duration,
        cache_ttl: Duration,
    ) -> Sessions {
        let cache = Arc::new(SessionCache::new(cache_ttl));
        let evict = cache.clone();
        store.watch_deletions(Box::new(move |id| evict.remove(id)));
        let writer = SessionWriter {
            store: store.clone(),
            cache: cache.clone(),
        };
        let actor = SessionActor {
            writer,
            sweep_interval,
        }
        .start();
        Sessions {
            cache,
            store,
            actor,
        }
    }

    /// Cached session, else the store's (then cached). Expired sessions are returned as stored;
    /// callers check validity.
    pub async fn get(&self, id: &str) -> Result<Option<Arc<Session>>, StoreError> {
        if let Some(s) = self.cache.get(id) {
            return Ok(Some(s));
        }
        match self.store.get(id).await? {
            Some(s) => {
                let s = Arc::new(s);
                self.cache.insert(s.clone());
                Ok(Some(s))
            }
            None => Ok(None),
        }
    }

    pub async fn put(&self, session: Session) -> Result<(), StoreError> {
        self.actor
            .send(PutSession(session))
            .await
            .map_err(mailbox)?
    }

    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        self.actor
            .send(DeleteSession(id.to_string()))
            .await
            .map_err(mailbox)?
    }

    /// Request-path write: the cache is updated at once and the store write is queued to the
    /// actor without waiting for it (the actor logs failures).
    pub fn put_nowait(&self, session: Session) {
        self.cache.insert(Arc::new(session.clone()));
        self.actor.do_send(PutSession(session));
    }

    /// Request-path delete: cache entry dropped now, store delete queued.
    pub fn delete_nowait(&self, id: &str) {
        self.cache.remove(id);
        self.actor.do_send(DeleteSession(id.to_string()));
    }

    pub async fn sweep(&self, now: u64) -> Result<usize, StoreError> {
        self.actor.send(SweepSessions(now)).await.map_err(mailbox)?
    }

    pub fn store_kind(&self) -> &'static str {
        self.store.kind()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[actix_rt::test]
    async fn writes_go_through_actor_and_reads_hit_cache() {
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::default());
        let sessions = Sessions::start(store.clone());
        let mut s = Session::new_for_test("s1", "alice");
        s.expires_at = 50;
        sessions.put(s).await.unwrap();
        assert!(store.get("s1").await.unwrap().is_some());
        assert_eq!(sessions.get("s1").await.unwrap().unwrap().user_id, "alice");
        // A store-only change is not seen while the cache entry is fresh.
        store.delete("s1").await.unwrap();
        assert!(sessions.get("s1").await.unwrap().is_some());
        // Delete through the actor clears both.
        sessions
            .put(Session::new_for_test("s2", "bob"))
            .await
            .unwrap();
        assert!(sessions.delete("s2").await.unwrap());
        assert!(sessions.get("s2").await.unwrap().is_none());
    }

    #[actix_rt::test]
    async fn periodic_sweep_removes_expired() {
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::default());
        let sessions = Sessions::start_with(store.clone(), Duration::from_millis(50), CACHE_TTL);
        let mut old = Session::new_for_test("old", "alice");
        old.expires_at = 1;
        sessions.put(old).await.unwrap();
        sessions
            .put(Session::new_for_test("new", "bob"))
            .await
            .unwrap();
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        assert!(store.get("old").await.unwrap().is_none());
        assert!(store.get("new").await.unwrap().is_some());
        assert!(sessions.get("old").await.unwrap().is_none());
    }

    #[actix_rt::test]
    async fn nowait_writes_reach_the_store() {
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::default());
        let sessions = Sessions::start(store.clone());
        sessions.put_nowait(Session::new_for_test("q", "quinn"));
        assert!(
            sessions.cache.get("q").is_some(),
            "visible at once through the cache"
        );
        // A later awaited message is handled after the queued one.
        sessions.sweep(0).await.unwrap();
        assert!(store.get("q").await.unwrap().is_some());
        sessions.delete_nowait("q");
        assert!(sessions.cache.get("q").is_none());
        sessions.sweep(0).await.unwrap();
        assert!(store.get("q").await.unwrap().is_none());
    }

    #[actix_rt::test]
    async fn cache_miss_reads_the_store() {
        let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::default());
        store
            .put(&Session::new_for_test("s", "carol"))
            .await
            .unwrap();
        let sessions = Sessions::start(store);
        assert_eq!(sessions.get("s").await.unwrap().unwrap().user_id, "carol");
        assert!(sessions.get("nope").await.unwrap().is_none());
    }
}
