//! The embedded SQLite store: one file in the data folder, WAL mode, `synchronous=FULL`, versioned migrations.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

use super::{Store, StoreError};

pub const DATABASE_FILE: &str = "gatehouse.db";

/// Migrations in order; the schema version is the number of migrations applied. Never edit a
/// released one: add a new one, so every data folder follows the same path.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_audit.sql"),
    include_str!("migrations/0003_schedule.sql"),
];

pub struct SqliteStore {
    path: PathBuf,
    /// One connection serialises writes, which SQLite does anyway; reads that need concurrency
    /// open their own connections through [`SqliteStore::open_reader`].
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `data_dir` and applies pending migrations.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir { path: data_dir.into(), source })?;
        let path = data_dir.join(DATABASE_FILE);
        let mut conn = open_connection(&path)?;
        migrate(&mut conn)?;
        Ok(Self { path, conn: Mutex::new(conn) })
    }

    /// A separate connection for long reads, so they do not hold up writers (WAL allows both).
    pub fn open_reader(&self) -> Result<Connection, StoreError> {
        open_connection(&self.path)
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (it rolls back), so the
        // poisoned guard is still safe to use.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Store for SqliteStore {
    fn check(&self) -> Result<(), StoreError> {
        self.lock().query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    fn schema_version(&self) -> Result<u32, StoreError> {
        Ok(user_version(&self.lock())?)
    }

    fn database_path(&self) -> &Path {
        &self.path
    }

    fn add_api_token(&self, id: &str, hash: &[u8; 32], label: &str, created: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO api_tokens (id, hash, label, created) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![id, hash.as_slice(), label, created],
        )?;
        Ok(())
    }

    fn api_token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<String>, StoreError> {
        use rusqlite::OptionalExtension;
        Ok(self
            .lock()
            .query_row("SELECT id FROM api_tokens WHERE hash = ?1", [hash.as_slice()], |row| row.get(0))
            .optional()?)
    }
}

pub(super) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    // WAL lets readers run beside the writer; FULL makes every commit durable before it returns,
    // which the audit log's "acknowledged means committed" promise needs.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as u32;
    let found = user_version(conn)?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as u32 + 1)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "applied database migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as u32);
        store.check().unwrap();
        let mode: String = store.lock().pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        drop(store);
        let store = SqliteStore::open(dir.path()).unwrap();
        store.lock().pragma_update(None, "user_version", 999).unwrap();
        drop(store);
        let err = SqliteStore::open(dir.path()).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { found: 999, .. }), "{err}");
    }
}
