//! Embedded session store: one redb file, `<data-dir>/sessions.redb`.
//!
//! Layout (schema version 1, see `migrations/0001_initial.md`):
//! - `meta`: `&str -> u64`, key `schema_version`.
//! - `sessions`: `&str (session id) -> &[u8] (JSON-encoded Session)`.
//! - `session_expiry`: `(u64 expires_at, &str session id) -> ()`, an index for sweeping.
//!
//! redb calls block, so each operation runs on tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Session, SessionStore, StoreError, StoreFuture};

pub const FILE_NAME: &str = "sessions.redb";
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("session_expiry");

pub struct RedbStore {
    db: Arc<Database>,
    path: PathBuf,
}

fn backend(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend(e.into().to_string())
}

impl RedbStore {
    /// Opens (creating if needed) `dir/sessions.redb` and applies migrations.
    pub fn open_dir(dir: &Path) -> Result<RedbStore, StoreError> {
        let open_err = |message: String| StoreError::Open {
            path: dir.join(FILE_NAME).display().to_string(),
            message,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| open_err(format!("cannot create directory: {e}")))?;
        let path = dir.join(FILE_NAME);
        let damaged = |reason: String| {
            open_err(format!(
                "the file is damaged ({reason}); stop rampart and move it aside \
                 (mv {p} {p}.corrupt) or start with another --data-dir; \
                 signed-in users will have to sign in again",
                p = path.display()
            ))
        };
        // redb panics on some damaged files rather than returning an error.
        let db = match catch_panic(|| Database::create(&path)) {
            Err(panic) => return Err(damaged(panic)),
            Ok(Err(e)) if is_damage(&e) => return Err(damaged(e.to_string())),
            Ok(Err(e)) => return Err(open_err(e.to_string())),
            Ok(Ok(db)) => db,
        };
        match catch_panic(|| migrate(&db)) {
            Err(panic) => return Err(damaged(panic)),
            Ok(Err(e @ StoreError::Backend(_))) if !e.to_string().contains("schema version") => {
                return Err(damaged(e.to_string()))
            }
            Ok(Err(e)) => return Err(open_err(e.to_string())),
            Ok(Ok(())) => {}
        }
        Ok(RedbStore {
            db: Arc::new(db),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            catch_panic(|| f(&db)).unwrap_or_else(|panic| {
                Err(StoreError::Backend(format!(
                    "{}: redb failed ({panic}); the file may be damaged: stop rampart and move it aside",
                    path.display()
                )))
            })
        })
        .await
        .map_err(|e| StoreError::Backend(format!("blocking task failed: {e}")))?
    }
}

/// Open errors that mean the file's contents are bad (as opposed to permissions, a lock held
/// by another process, and so on).
fn is_damage(e: &redb::DatabaseError) -> bool {
    matches!(
        e,
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_))
            | redb::DatabaseError::UpgradeRequired(_)
    ) || matches!(e, redb::DatabaseError::Storage(redb::StorageError::Io(io)) if io.kind() == std::io::ErrorKind::UnexpectedEof || io.kind() == std::io::ErrorKind::InvalidData)
}

thread_local! {
    /// Set while `catch_panic` runs on this thread: the panic hook stays quiet.
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into an error carrying its message. The panic is not printed
/// (no backtrace on stderr): the caller reports it as an error.
fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !CATCHING.with(|c| c.get()) {
                previous(info);
            }
        }));
    });
    let was = CATCHING.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "internal error".to_string())
    })
}

/// Creates the tables and records the schema version; refuses a newer schema.
fn migrate(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    {
        let mut meta = txn.open_table(META).map_err(backend)?;
        let current = meta
            .get("schema_version")
            .map_err(backend)?
            .map(|v| v.value());
        match current {
            None => {
                meta.insert("schema_version", SCHEMA_VERSION)
                    .map_err(backend)?;
            }
            Some(v) if v == SCHEMA_VERSION => {}
            Some(v) => {
                return Err(StoreError::Backend(format!(
                "schema version {v} is not supported by this rampart (expects {SCHEMA_VERSION}); \
                     use a matching rampart version or remove the file"
            )))
            }
        }
        txn.open_table(SESSIONS).map_err(backend)?;
        txn.open_table(EXPIRY).map_err(backend)?;
    }
    txn.commit().map_err(backend)
}

/// Reads the schema version of an opened database.
pub fn schema_version(db: &Database) -> Result<Option<u64>, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let meta = txn.open_table(META).map_err(backend)?;
    Ok(meta
        .get("schema_version")
        .map_err(backend)?
        .map(|v| v.value()))
}

fn decode(id: &str, bytes: &[u8]) -> Result<Session, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        id: id.to_string(),
        message: e.to_string(),
    })
}

impl SessionStore for RedbStore {
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Session>> {
        let id = id.to_string();
        Box::pin(self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = txn.open_table(SESSIONS).map_err(backend)?;
            let v = table.get(id.as_str()).map_err(backend)?;
            v.map(|g| decode(&id, g.value())).transpose()
        }))
    }

    fn put<'a>(&'a self, session: &'a Session) -> StoreFuture<'a, ()> {
        let session = session.clone();
        Box::pin(self.blocking(move |db| {
            let bytes = serde_json::to_vec(&session)
                .map_err(|e| StoreError::Backend(format!("encode session: {e}")))?;
            let txn = db.begin_write().map_err(backend)?;
            {
                let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
                let mut expiry = txn.open_table(EXPIRY).map_err(backend)?;
                let old = sessions
                    .insert(session.id.as_str(), bytes.as_slice())
                    .map_err(backend)?
                    .map(|g| decode(&session.id, g.value()).map(|s| s.expires_at));
                if let Some(Ok(old_exp)) = old {
                    expiry
                        .remove((old_exp, session.id.as_str()))
                        .map_err(backend)?;
                }
                expiry
                    .insert((session.expires_at, session.id.as_str()), ())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        }))
    }

    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        let id = id.to_string();
        Box::pin(self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let removed;
            {
                let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
                let mut expiry = txn.open_table(EXPIRY).map_err(backend)?;
                let old = sessions.remove(id.as_str()).map_err(backend)?;
                removed = old.is_some();
                if let Some(g) = old {
                    if let Ok(s) = decode(&id, g.value()) {
                        expiry
                            .remove((s.expires_at, id.as_str()))
                            .map_err(backend)?;
                    }
                }
            }
            txn.commit().map_err(backend)?;
            Ok(removed)
        }))
    }

    fn sweep(&self, now: u64) -> StoreFuture<'_, usize> {
        Box::pin(self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let mut n = 0;
            {
                let mut sessions = txn.open_table(SESSIONS).map_err(backend)?;
                let mut expiry = txn.open_table(EXPIRY).map_err(backend)?;
                let mut due: Vec<(u64, String)> = Vec::new();
                for item in expiry
                    .range((0u64, "")..=(now, "\u{10FFFF}"))
                    .map_err(backend)?
                {
                    let (k, _) = item.map_err(backend)?;
                    let (exp, id) = k.value();
                    due.push((exp, id.to_string()));
                }
                for (exp, id) in due {
                    expiry.remove((exp, id.as_str())).map_err(backend)?;
                    if sessions.remove(id.as_str()).map_err(backend)?.is_some() {
                        n += 1;
                    }
                }
            }
            txn.commit().map_err(backend)?;
            Ok(n)
        }))
    }

    fn kind(&self) -> &'static str {
        "file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn redb_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_dir(dir.path()).unwrap();
        super::super::contract::check(&store).await;
    }

    #[tokio::test]
    async fn survives_reopen_and_records_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RedbStore::open_dir(dir.path()).unwrap();
            store
                .put(&Session::new_for_test("s1", "alice"))
                .await
                .unwrap();
            assert_eq!(schema_version(&store.db).unwrap(), Some(1));
        }
        let store = RedbStore::open_dir(dir.path()).unwrap();
        assert_eq!(store.get("s1").await.unwrap().unwrap().user_id, "alice");
    }

    #[tokio::test]
    async fn refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("schema_version", 99)
                .unwrap();
            txn.commit().unwrap();
        }
        let e = RedbStore::open_dir(dir.path()).err().unwrap().to_string();
        assert!(e.contains("schema version 99"), "{e}");
        assert!(e.contains("sessions.redb"), "{e}");
    }

    #[tokio::test]
    async fn damaged_files_are_clear_errors_not_panics() {
        let good = tempfile::tempdir().unwrap();
        drop(RedbStore::open_dir(good.path()).unwrap());
        let bytes = std::fs::read(good.path().join(FILE_NAME)).unwrap();
        let mut garbage = bytes.clone();
        for (i, b) in garbage.iter_mut().enumerate().skip(64) {
            *b = (i * 31 % 251) as u8;
        }
        let mut pages = bytes.clone();
        for (i, b) in pages.iter_mut().enumerate().skip(4096) {
            *b = (i * 13 % 241) as u8;
        }
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("damaged pages", pages),
            (
                "garbage",
                (0..20000u32).map(|i| (i * 7 % 253) as u8).collect(),
            ),
            ("garbage after the header", garbage),
            ("truncated", bytes[..bytes.len() / 2].to_vec()),
            ("truncated header", bytes[..100].to_vec()),
        ];
        for (what, content) in cases {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(FILE_NAME), content).unwrap();
            match RedbStore::open_dir(dir.path()) {
                Err(e) => {
                    let e = e.to_string();
                    assert!(
                        e.contains("sessions.redb") && e.contains("move it aside"),
                        "{what}: {e}"
                    );
                }
                // redb may repair a file it can make sense of; then it must work or fail
                // with errors, never a panic.
                Ok(store) => {
                    let _ = store.get("x").await;
                    let _ = store.put(&Session::new_for_test("x", "x")).await;
                    let _ = store.sweep(u64::MAX).await;
                }
            }
        }
    }

    #[tokio::test]
    async fn a_panic_inside_redb_is_an_error_of_that_call() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_dir(dir.path()).unwrap();
        let e = store
            .blocking(|_| -> Result<(), StoreError> { panic!("redb internal assertion") })
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("redb internal assertion") && e.contains("sessions.redb"),
            "{e}"
        );
        // The store keeps working.
        store.put(&Session::new_for_test("s", "a")).await.unwrap();
        assert!(store.get("s").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn corrupt_record_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_dir(dir.path()).unwrap();
        {
            let txn = store.db.begin_write().unwrap();
            txn.open_table(SESSIONS)
                .unwrap()
                .insert("bad", b"{not json".as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let e = store.get("bad").await.unwrap_err().to_string();
        assert!(e.contains("bad") && e.contains("corrupt"), "{e}");
    }
}
