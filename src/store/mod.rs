//! Session storage. The browser holds only a signed pointer (the session handle); the session
//! record (tokens, claims, expiry) lives here.
//!
//! [`SessionStore`] is the backend contract: async get/put/delete/sweep by session id, values
//! owned by the backend's own encoding. Backends: [`memory::MemoryStore`] and
//! [`redb::RedbStore`] (an embedded file in `--data-dir`). A Redis backend fits the same trait
//! (`SET session:<id> <value> EX <remaining lifetime>`; sweep is a no-op there because Redis
//! expires keys itself).
//!
//! Writes go through the session actor (`crate::actors::session`); the request path reads
//! through [`cache::SessionCache`] and only hits a backend on a miss.

pub mod cache;
pub mod memory;
pub mod redb;
pub mod redis;

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

use crate::http::auth::settings::StorageSettings;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("session store {path}: {message}")]
    Open { path: String, message: String },
    #[error("session store: {0}")]
    Backend(String),
    #[error("session store: stored session {id} is corrupt: {message}")]
    Corrupt { id: String, message: String },
}

/// One signed-in session (spec 2.4 "session record").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Random UUID, the `jti` of the session handle.
    pub id: String,
    /// IdP `sub` (Azure: `oid`).
    pub user_id: String,
    pub email: String,
    /// Which IdP configuration created it.
    pub idp_id: String,
    pub issued_at: u64,
    /// Hard end: issued_at + cookie_expire; never extended by refresh.
    pub expires_at: u64,
    pub id_token: String,
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires (unix s), if the IdP said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_expires_at: Option<u64>,
    /// ID token claims merged with UserInfo claims (UserInfo wins), as received.
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// Bumped on every write (refresh).
    #[serde(default)]
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<u64>,
}

impl Session {
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }

    /// The access token has expired (or expires within `margin` seconds).
    pub fn access_token_expired(&self, now: u64, margin: u64) -> bool {
        matches!(self.access_token_expires_at, Some(exp) if now + margin >= exp)
    }

    /// Session usable as-is for a request at `now`.
    pub fn is_usable(&self, now: u64) -> bool {
        !self.is_expired(now) && !self.access_token_expired(now, 0)
    }

    /// A minimal session for tests.
    pub fn new_for_test(id: &str, user_id: &str) -> Session {
        Session {
            id: id.into(),
            user_id: user_id.into(),
            email: String::new(),
            idp_id: "idp".into(),
            issued_at: 0,
            expires_at: u64::MAX / 2,
            id_token: String::new(),
            access_token: String::new(),
            refresh_token: None,
            access_token_expires_at: None,
            claims: Map::new(),
            version: 0,
            refreshed_at: None,
        }
    }
}

pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// A session backend.
pub trait SessionStore: Send + Sync + 'static {
    /// The stored session, or `None`. Expired sessions may still be returned until swept;
    /// callers check `expires_at`.
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Session>>;
    /// Inserts or replaces a session.
    fn put<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()>;
    /// Deletes; `true` when something was deleted.
    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool>;
    /// Deletes sessions with `expires_at <= now`; returns how many.
    fn sweep(&self, now: u64) -> StoreFuture<'_, usize>;
    /// Short name for logs (`memory`, `file`).
    fn kind(&self) -> &'static str;
    /// For stores shared between processes: call `on_delete` with the id of every session
    /// deleted anywhere (other replicas drop their cached copy at once). Local stores have
    /// nothing to report.
    fn watch_deletions(&self, on_delete: Box<dyn Fn(&str) + Send + Sync>) {
        let _ = on_delete;
    }
}

/// Opens the configured backend. `data_dir` is used for `file` storage without a connection
/// string.
///
/// `sealing_secret` (the `cookie_secret`) keys the encryption of sessions kept outside the
/// process in a shared service (Redis): a dump of the server alone reveals no tokens.
pub fn open_store(
    settings: &StorageSettings,
    data_dir: &Path,
    sealing_secret: &crate::http::auth::crypto::Secret32,
) -> Result<Arc<dyn SessionStore>, StoreError> {
    match settings {
        StorageSettings::Memory => Ok(Arc::new(memory::MemoryStore::default())),
        StorageSettings::File(dir) => {
            let dir = dir.as_deref().unwrap_or(data_dir);
            Ok(Arc::new(redb::RedbStore::open_dir(dir)?))
        }
        StorageSettings::Redis(url) => Ok(Arc::new(
            self::redis::RedisStore::open(url)?.sealed_with(sealing_secret),
        )),
    }
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every backend must have; run against each backend.
    use super::*;

    pub async fn check(store: &dyn SessionStore) {
        let mut a = Session::new_for_test("a", "alice");
        a.expires_at = 100;
        a.claims.insert("groups".into(), serde_json::json!(["x"]));
        let mut b = Session::new_for_test("b", "bob");
        b.expires_at = 200;
        assert!(store.get("a").await.unwrap().is_none());
        store.put(&a).await.unwrap();
        store.put(&b).await.unwrap();
        assert_eq!(store.get("a").await.unwrap().unwrap(), a);
        // replace with a new expiry
        a.version = 1;
        a.expires_at = 150;
        store.put(&a).await.unwrap();
        assert_eq!(store.get("a").await.unwrap().unwrap().version, 1);
        // sweep at 149 removes nothing, at 150 removes a, not b
        assert_eq!(store.sweep(149).await.unwrap(), 0);
        assert_eq!(store.sweep(150).await.unwrap(), 1);
        assert!(store.get("a").await.unwrap().is_none());
        assert!(store.get("b").await.unwrap().is_some());
        assert!(store.delete("b").await.unwrap());
        assert!(!store.delete("b").await.unwrap());
        assert!(store.get("b").await.unwrap().is_none());
        assert_eq!(store.sweep(1000).await.unwrap(), 0);
    }
}
