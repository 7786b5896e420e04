//! The audit log's persistence: what the audit module needs from a store, and the SQLite engine
//! for it. Only the audit module calls this; it knows nothing of hashing or signatures.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::StoreError;

/// A record as stored: its canonical body, its leaf hash and the copies kept for searching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub seq: u64,
    pub body: String,
    pub hash: [u8; 32],
    pub index: RecordIndex,
}

/// Searchable copies of fields in the record body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordIndex {
    pub recorded: String,
    pub kind: String,
    pub outcome: String,
    pub actor: Option<String>,
    pub appointment: Option<String>,
    pub room: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub id: i64,
    pub tree_size: u64,
    pub note: String,
    pub signed: String,
}

/// The end of the log as it is inside the append transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tail {
    /// Number of records, which is also the next `seq`.
    pub size: u64,
    pub last_hash: Option<[u8; 32]>,
    pub last_recorded: Option<String>,
    pub last_kind: Option<String>,
    pub last_checkpoint_size: Option<u64>,
}

/// What one append transaction writes.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<StoredRecord>,
    /// A checkpoint to store with the batch, inserted before the records: it covers the log
    /// as it was before them.
    pub checkpoint: Option<(u64, String, String)>,
}

/// Search criteria; every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub kind: Option<String>,
    pub outcome: Option<String>,
    pub actor: Option<String>,
    pub appointment: Option<String>,
    pub room: Option<String>,
    /// Return records with `seq` greater than this (paging).
    pub after_seq: Option<u64>,
    pub limit: usize,
}

/// What the audit module needs from a store.
pub trait AuditStore: Send {
    /// In one durable transaction: read the tail, let `build` make the batch from it, write the
    /// batch. Nothing is written if `build` fails. Returns what `build` returned.
    fn append<T>(&mut self, build: impl FnOnce(&Tail) -> Result<(Batch, T), StoreError>) -> Result<T, StoreError>;
    /// Calls `visit` for every record with `seq >= from`, in order, until it returns false.
    fn scan(&self, from: u64, visit: &mut dyn FnMut(StoredRecord) -> bool) -> Result<(), StoreError>;
    fn query(&self, query: &AuditQuery) -> Result<Vec<StoredRecord>, StoreError>;
    fn record(&self, seq: u64) -> Result<Option<StoredRecord>, StoreError>;
    /// Leaf hashes of records `0..size`, for proofs.
    fn leaf_hashes(&self, size: u64) -> Result<Vec<[u8; 32]>, StoreError>;
    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError>;
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError>;
}

/// The SQLite audit store: its own connection, so the group-commit writer never waits for
/// other parts of the gateway.
pub struct SqliteAuditStore {
    conn: Connection,
}

impl std::fmt::Debug for SqliteAuditStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteAuditStore")
    }
}

impl SqliteAuditStore {
    /// Opens the audit tables in an already migrated database file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self { conn: super::sqlite::open_connection(path)? })
    }
}

const COLUMNS: &str = "seq, body, hash, recorded, kind, outcome, actor, appointment, room";

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRecord> {
    let hash: Vec<u8> = row.get(2)?;
    let mut fixed = [0u8; 32];
    // The CHECK constraint keeps it 32 bytes; a tampered file may not, and verification reports it.
    if hash.len() == 32 {
        fixed.copy_from_slice(&hash);
    }
    Ok(StoredRecord {
        seq: row.get::<_, i64>(0)? as u64,
        body: row.get(1)?,
        hash: fixed,
        index: RecordIndex {
            recorded: row.get(3)?,
            kind: row.get(4)?,
            outcome: row.get(5)?,
            actor: row.get(6)?,
            appointment: row.get(7)?,
            room: row.get(8)?,
        },
    })
}

fn row_to_checkpoint(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredCheckpoint> {
    Ok(StoredCheckpoint {
        id: row.get(0)?,
        tree_size: row.get::<_, i64>(1)? as u64,
        note: row.get(2)?,
        signed: row.get(3)?,
    })
}

impl AuditStore for SqliteAuditStore {
    fn append<T>(&mut self, build: impl FnOnce(&Tail) -> Result<(Batch, T), StoreError>) -> Result<T, StoreError> {
        // IMMEDIATE takes the write lock before reading the tail, so a second process (the CLI
        // beside a running gateway) can never compute the same `seq`.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let last = tx
            .query_row("SELECT seq, hash, recorded, kind FROM audit_records ORDER BY seq DESC LIMIT 1", [], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })
            .optional()?;
        let last_checkpoint_size = tx
            .query_row("SELECT tree_size FROM audit_checkpoints ORDER BY id DESC LIMIT 1", [], |row| {
                row.get::<_, i64>(0)
            })
            .optional()?
            .map(|s| s as u64);
        let tail = Tail {
            size: last.as_ref().map_or(0, |(seq, ..)| *seq as u64 + 1),
            last_hash: last.as_ref().and_then(|(_, hash, ..)| hash.as_slice().try_into().ok()),
            last_recorded: last.as_ref().map(|(_, _, recorded, _)| recorded.clone()),
            last_kind: last.map(|(.., kind)| kind),
            last_checkpoint_size,
        };
        let (batch, result) = build(&tail)?;
        if let Some((size, note, signed)) = &batch.checkpoint {
            tx.execute(
                "INSERT INTO audit_checkpoints (tree_size, note, signed) VALUES (?1, ?2, ?3)",
                params![*size as i64, note, signed],
            )?;
        }
        {
            let mut insert = tx.prepare_cached(&format!(
                "INSERT INTO audit_records ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))?;
            for r in &batch.records {
                let i = &r.index;
                insert.execute(params![
                    r.seq as i64,
                    r.body,
                    r.hash.as_slice(),
                    i.recorded,
                    i.kind,
                    i.outcome,
                    i.actor,
                    i.appointment,
                    i.room
                ])?;
            }
        }
        tx.commit()?;
        Ok(result)
    }

    fn scan(&self, from: u64, visit: &mut dyn FnMut(StoredRecord) -> bool) -> Result<(), StoreError> {
        let mut stmt =
            self.conn.prepare(&format!("SELECT {COLUMNS} FROM audit_records WHERE seq >= ?1 ORDER BY seq"))?;
        let mut rows = stmt.query([from as i64])?;
        while let Some(row) = rows.next()? {
            if !visit(row_to_record(row)?) {
                break;
            }
        }
        Ok(())
    }

    fn query(&self, q: &AuditQuery) -> Result<Vec<StoredRecord>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM audit_records WHERE seq > ?1");
        let mut values: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(q.after_seq.map_or(-1, |s| s as i64))];
        let mut add = |clause: &str, value: &Option<String>| {
            if let Some(v) = value {
                values.push(Box::new(v.clone()));
                sql.push_str(&format!(" AND {clause} ?{}", values.len()));
            }
        };
        add("recorded >=", &q.from);
        add("recorded <", &q.to);
        add("kind =", &q.kind);
        add("outcome =", &q.outcome);
        add("actor =", &q.actor);
        add("appointment =", &q.appointment);
        add("room =", &q.room);
        values.push(Box::new(q.limit as i64));
        sql.push_str(&format!(" ORDER BY seq LIMIT ?{}", values.len()));
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(values.iter().map(|v| v.as_ref())), row_to_record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn record(&self, seq: u64) -> Result<Option<StoredRecord>, StoreError> {
        Ok(self
            .conn
            .query_row(&format!("SELECT {COLUMNS} FROM audit_records WHERE seq = ?1"), [seq as i64], row_to_record)
            .optional()?)
    }

    fn leaf_hashes(&self, size: u64) -> Result<Vec<[u8; 32]>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT hash FROM audit_records WHERE seq < ?1 ORDER BY seq")?;
        let rows = stmt.query_map([size as i64], |row| row.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::with_capacity(size as usize);
        for hash in rows {
            out.push(hash?.as_slice().try_into().unwrap_or([0u8; 32]));
        }
        Ok(out)
    }

    fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT id, tree_size, note, signed FROM audit_checkpoints ORDER BY id")?;
        let rows = stmt.query_map([], row_to_checkpoint)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, tree_size, note, signed FROM audit_checkpoints ORDER BY id DESC LIMIT 1",
                [],
                row_to_checkpoint,
            )
            .optional()?)
    }
}
