//! Persistence behind traits: callers depend on these traits, never on SQLite, so that a
//! PostgreSQL store can be added later without reshaping them.

mod audit;
mod schedule;
mod sqlite;

pub use audit::{AuditQuery, AuditStore, Batch, RecordIndex, SqliteAuditStore, StoredCheckpoint, StoredRecord, Tail};
pub use schedule::{
    AppointmentFilter, LinkRecord, LockdownRecord, ScheduleStore, SessionRecord, StaffRecord, StaffStore,
};
pub use sqlite::{DATABASE_FILE, SqliteStore};

/// Why the store could not do what was asked. Messages say what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data folder {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
    #[error(
        "the database was written by a newer Gatehouse (schema version {found}, this build knows up to {known}); run the newer version or restore a backup"
    )]
    TooNew { found: u32, known: u32 },
    #[error("{0}")]
    Conflict(String),
    #[error("the room is already booked then (appointment {0})")]
    Clash(String),
    #[error("the write was refused: {0}")]
    Rejected(String),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// What every store offers, whatever its engine: the gateway's own tables. The audit log has
/// its own trait and connection ([`AuditStore`]).
pub trait Store: StaffStore + ScheduleStore + Send + Sync + 'static {
    /// Answers only when the store can serve reads and writes; readiness depends on it.
    fn check(&self) -> Result<(), StoreError>;
    /// The schema version the store is migrated to.
    fn schema_version(&self) -> Result<u32, StoreError>;
    /// The path of the database file, for parts that keep their own connection (the audit writer).
    fn database_path(&self) -> &std::path::Path;
    fn add_api_token(&self, id: &str, hash: &[u8; 32], label: &str, created: &str) -> Result<(), StoreError>;
    /// The id of the API token with this hash, if any.
    fn api_token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<String>, StoreError>;
}
