//! Shared session store on Redis, so several rampart replicas see the same sessions.
//!
//! Layout: `rampart:session:<id>` → JSON-encoded [`Session`], with the key expiring at the
//! session's own `expires_at` (`SET … EXAT`), so Redis drops expired sessions itself and
//! `sweep` has nothing to do. A sign-out deletes the key; other replicas stop honouring the
//! session when their short in-process cache entry lapses (see `store::cache`).
//!
//! Values are sealed (XChaCha20-Poly1305, key derived from `cookie_secret`, the session id as
//! associated data) so that the Redis data alone reveals no tokens and a value cannot be moved
//! to another session id.
//!
//! The connection is made on first use with a `ConnectionManager`, which reconnects by itself;
//! `redis://`, `rediss://` (TLS) and `redis+unix://` URLs are accepted.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use tokio::sync::OnceCell;

use super::{unix_now, Session, SessionStore, StoreError, StoreFuture};
use crate::http::auth::crypto::{open, seal, Secret32};

/// HKDF info for the key that seals sessions in Redis.
const SEAL_INFO: &[u8] = b"rampart redis session";

pub const KEY_PREFIX: &str = "rampart:session:";
/// Channel on which a deleted session's id is published, so every replica evicts its cached
/// copy immediately (the cache TTL is only the fallback when the subscription is down).
pub const DELETED_CHANNEL: &str = "rampart:session-deleted";

pub struct RedisStore {
    client: redis::Client,
    /// Encryption key for stored values (`None`: plain JSON, for tests of the raw layout).
    seal: Option<Secret32>,
    conn: OnceCell<ConnectionManager>,
    /// The URL without credentials, for messages.
    display: String,
}

fn backend(display: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("redis {display}: {e}"))
}

/// The URL with any password replaced by `***`.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

impl RedisStore {
    /// Checks the URL; the connection is made on first use.
    pub fn open(url: &str) -> Result<RedisStore, StoreError> {
        let display = redact(url);
        let client = redis::Client::open(url).map_err(|e| StoreError::Open {
            path: display.clone(),
            message: format!("invalid databroker_storage_connection_string: {e}"),
        })?;
        Ok(RedisStore {
            client,
            seal: None,
            conn: OnceCell::new(),
            display,
        })
    }

    /// Seals stored sessions with a key derived from `secret` (HKDF-SHA256).
    pub fn sealed_with(mut self, secret: &Secret32) -> RedisStore {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, &secret.0);
        let mut key = [0u8; 32];
        hk.expand(SEAL_INFO, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        self.seal = Some(Secret32(key));
        self
    }

    fn encode(&self, session: &Session) -> Result<Vec<u8>, StoreError> {
        let json = serde_json::to_vec(session)
            .map_err(|e| StoreError::Backend(format!("cannot encode session: {e}")))?;
        Ok(match &self.seal {
            Some(key) => seal(key, &json, session.id.as_bytes()),
            None => json,
        })
    }

    fn decode(&self, id: &str, bytes: &[u8]) -> Result<Session, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            id: id.to_string(),
            message,
        };
        let json = match &self.seal {
            Some(key) => open(key, bytes, id.as_bytes()).ok_or_else(|| {
                corrupt("cannot be decrypted (written with another cookie_secret?)".into())
            })?,
            None => bytes.to_vec(),
        };
        serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))
    }

    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        self.conn
            .get_or_try_init(|| async {
                // Fail fast so a request gets a clear error page instead of hanging; the next
                // request tries again, and once connected the manager reconnects by itself.
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(1)
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(5)));
                ConnectionManager::new_with_config(self.client.clone(), config)
                    .await
                    .map_err(|e| backend(&self.display, e))
            })
            .await
            .cloned()
    }

    /// Runs `op` on the connection; a connection failure (e.g. the first command after a
    /// Redis restart finds a broken pipe) is retried once, on the manager's new connection.
    async fn run<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let first = op(self.conn().await?).await;
        match first {
            Ok(v) => Ok(v),
            Err(e) if is_connection_error(&e) => {
                tracing::warn!(redis = %self.display, error = %e, "redis connection lost; reconnecting and retrying once");
                op(self.conn().await?)
                    .await
                    .map_err(|e| backend(&self.display, e))
            }
            Err(e) => Err(backend(&self.display, e)),
        }
    }

    fn key(id: &str) -> String {
        format!("{KEY_PREFIX}{id}")
    }
}

/// Errors of the connection rather than of the command: worth one retry on a new connection.
fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

impl SessionStore for RedisStore {
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Session>> {
        Box::pin(async move {
            let key = Self::key(id);
            let raw: Option<Vec<u8>> = self
                .run(|mut c| {
                    let key = key.clone();
                    async move { c.get(key).await }
                })
                .await?;
            raw.map(|bytes| self.decode(id, &bytes)).transpose()
        })
    }

    fn put<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let bytes = self.encode(session)?;
            let key = Self::key(&session.id);
            if session.expires_at <= unix_now() {
                // Already over: make sure no stale copy stays behind.
                let _: i64 = self
                    .run(|mut c| {
                        let key = key.clone();
                        async move { c.del(key).await }
                    })
                    .await?;
                return Ok(());
            }
            let opts = redis::SetOptions::default()
                .with_expiration(redis::SetExpiry::EXAT(session.expires_at));
            self.run(|mut c| {
                let (key, bytes, opts) = (key.clone(), bytes.clone(), opts.clone());
                async move { c.set_options::<_, _, ()>(key, bytes, opts).await }
            })
            .await
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let key = Self::key(id);
            let n: i64 = self
                .run(|mut c| {
                    let key = key.clone();
                    async move {
                        let n: i64 = c.del(key).await?;
                        let _: i64 = c.publish(DELETED_CHANNEL, id).await?;
                        Ok(n)
                    }
                })
                .await?;
            Ok(n > 0)
        })
    }

    fn sweep(&self, _now: u64) -> StoreFuture<'_, usize> {
        // Keys carry their own expiry.
        Box::pin(async { Ok(0) })
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn watch_deletions(&self, on_delete: Box<dyn Fn(&str) + Send + Sync>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        let shown = self.display.clone();
        runtime.spawn(async move {
            // Re-subscribe after a lost connection; deletions missed meanwhile expire from the
            // cache with its TTL.
            loop {
                match subscribe_deletions(&client, &*on_delete).await {
                    Ok(()) => tracing::warn!(redis = %shown, "session deletion subscription ended; reconnecting"),
                    Err(e) => tracing::warn!(redis = %shown, error = %e, "session deletion subscription failed; retrying"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

async fn subscribe_deletions(
    client: &redis::Client,
    on_delete: &(dyn Fn(&str) + Send + Sync),
) -> redis::RedisResult<()> {
    use futures_util::StreamExt;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(DELETED_CHANNEL).await?;
    let mut messages = pubsub.on_message();
    while let Some(msg) = messages.next().await {
        if let Ok(id) = msg.get_payload::<String>() {
            on_delete(&id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;

    /// A real redis-server on a unix socket in a temp dir, stopped on drop.
    struct RedisServer {
        child: Child,
        _dir: tempfile::TempDir,
        url: String,
    }

    impl RedisServer {
        fn start() -> RedisServer {
            let dir = tempfile::Builder::new()
                .prefix("rr")
                .tempdir_in("/tmp")
                .unwrap();
            let sock = dir.path().join("redis.sock");
            let child = Command::new("redis-server")
                .args(["--port", "0", "--save", "", "--appendonly", "no"])
                .arg("--unixsocket")
                .arg(&sock)
                .arg("--dir")
                .arg(dir.path())
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (scripts/test installs it)");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !sock.exists() {
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
            RedisServer {
                child,
                url: format!("redis+unix://{}", sock.display()),
                _dir: dir,
            }
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test]
    async fn sessions_round_trip_and_expire_in_redis() {
        let server = RedisServer::start();
        let store = RedisStore::open(&server.url).unwrap();
        let other_replica = RedisStore::open(&server.url).unwrap();
        let now = unix_now();
        let mut a = Session::new_for_test("a", "alice");
        a.expires_at = now + 3600;
        a.claims.insert("groups".into(), serde_json::json!(["x"]));
        assert!(store.get("a").await.unwrap().is_none());
        store.put(&a).await.unwrap();
        // Another replica sees it.
        assert_eq!(other_replica.get("a").await.unwrap().unwrap(), a);
        a.version = 2;
        store.put(&a).await.unwrap();
        assert_eq!(other_replica.get("a").await.unwrap().unwrap().version, 2);

        // Redis expires the key at the session's own end.
        let mut conn = store.conn().await.unwrap();
        let ttl: i64 = redis::cmd("TTL")
            .arg(RedisStore::key("a"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((3590..=3600).contains(&ttl), "ttl {ttl}");

        // Sign-out on one replica is a delete every replica sees, and is announced so that
        // replicas drop cached copies.
        let announced = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let sink = announced.clone();
        store.watch_deletions(Box::new(move |id| {
            sink.lock().unwrap().push(id.to_string())
        }));
        let deadline = Instant::now() + Duration::from_secs(10);
        // The subscription starts asynchronously: repeat the delete of a scratch session until
        // one announcement arrives.
        let mut probe = Session::new_for_test("probe", "p");
        probe.expires_at = now + 60;
        while announced.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "no deletion announced");
            other_replica.put(&probe).await.unwrap();
            other_replica.delete("probe").await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(other_replica.delete("a").await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !announced.lock().unwrap().iter().any(|id| id == "a") {
            assert!(Instant::now() < deadline, "deletion of a not announced");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!store.delete("a").await.unwrap());
        assert!(store.get("a").await.unwrap().is_none());

        // A session already past its end is not stored.
        let mut old = Session::new_for_test("old", "bob");
        old.expires_at = now - 1;
        store.put(&old).await.unwrap();
        assert!(store.get("old").await.unwrap().is_none());

        // Garbage under our key is reported as corrupt, naming the session.
        let _: () = conn.set(RedisStore::key("bad"), "not json").await.unwrap();
        let err = store.get("bad").await.unwrap_err().to_string();
        assert!(err.contains("stored session bad is corrupt"), "{err}");
        assert_eq!(store.sweep(now).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn sealed_sessions_reveal_nothing_and_need_the_same_secret() {
        let server = RedisServer::start();
        let store = RedisStore::open(&server.url)
            .unwrap()
            .sealed_with(&Secret32([9; 32]));
        let same_secret = RedisStore::open(&server.url)
            .unwrap()
            .sealed_with(&Secret32([9; 32]));
        let other_secret = RedisStore::open(&server.url)
            .unwrap()
            .sealed_with(&Secret32([1; 32]));
        let mut s = Session::new_for_test("s1", "alice");
        s.expires_at = unix_now() + 600;
        s.access_token = "secret-access-token".into();
        store.put(&s).await.unwrap();
        assert_eq!(same_secret.get("s1").await.unwrap().unwrap(), s);
        // The raw value holds no token text.
        let mut conn = store.conn().await.unwrap();
        let raw: Vec<u8> = conn.get(RedisStore::key("s1")).await.unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("secret-access-token"));
        assert!(!String::from_utf8_lossy(&raw).contains("alice"));
        // Another cookie_secret cannot read it, and a value moved to another id is refused.
        let err = other_secret.get("s1").await.unwrap_err().to_string();
        assert!(
            err.contains("stored session s1 is corrupt: cannot be decrypted"),
            "{err}"
        );
        let _: () = conn.set(RedisStore::key("s2"), raw).await.unwrap();
        assert!(store.get("s2").await.is_err());
    }

    #[tokio::test]
    async fn bad_urls_and_unreachable_servers_are_clear_errors() {
        let err = RedisStore::open("http://nope").err().unwrap().to_string();
        assert!(
            err.contains("invalid databroker_storage_connection_string"),
            "{err}"
        );
        let store = RedisStore::open("redis://user:hunter2@127.0.0.1:1/0").unwrap();
        let err = store.get("x").await.unwrap_err().to_string();
        assert!(
            err.starts_with("session store: redis redis://user:***@127.0.0.1:1/0"),
            "{err}"
        );
        assert!(!err.contains("hunter2"));
    }
}
