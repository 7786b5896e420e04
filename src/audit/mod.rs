//! The tamper-evident audit log, and the only writer of it: typed records chained by hash,
//! leaves of an RFC 6962 Merkle tree, signed checkpoints, verification and export. It records
//! who did what and when; never media, chat, SDP, keys, tokens or clinical text.

mod canonical;
pub mod checkpoint;
mod counts;
pub mod export;
pub mod keys;
pub mod merkle;
pub mod note;
pub mod record;
pub mod verify;
mod writer;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

pub use record::{Actor, Code, Details, Event, EventKind, Object, Outcome, Record};

use crate::store::{AuditQuery, AuditStore, SqliteAuditStore, StoreError, StoredRecord};
use keys::{KeyError, KeyRing};
use merkle::TreeBuilder;
use writer::{Command, Writer};

/// How often a checkpoint is signed when there are new records.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
/// The most records one query page returns.
pub const MAX_PAGE: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit log cannot be written right now")]
    Unavailable,
    #[error("the audit log is damaged: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("no audit record has seq {0}")]
    NoSuchRecord(u64),
    #[error("{0}")]
    BadRequest(String),
}

/// The handle every part of the gateway uses to record events.
#[derive(Debug, Clone)]
pub struct AuditLog {
    commands: mpsc::Sender<Command>,
    healthy: Arc<AtomicBool>,
    /// What the writer has committed, for the metrics.
    counts: counts::RecordCounts,
    db_path: PathBuf,
    keys: KeyRing,
}

impl AuditLog {
    /// Starts the writer for the audit tables in `db_path` (already migrated), signing with the
    /// key in `data_dir`.
    pub fn open(db_path: &Path, data_dir: &Path) -> Result<Self, AuditError> {
        let keys = KeyRing::new(data_dir);
        let signer = keys.signer()?;
        let store = SqliteAuditStore::open(db_path)?;
        let mut tree = TreeBuilder::new();
        let mut failure = None;
        store.scan(0, &mut |r| {
            if let Err(e) = tree.push(r.hash) {
                failure = Some(e.to_string());
            }
            failure.is_none()
        })?;
        if let Some(e) = failure {
            return Err(AuditError::Corrupt(e));
        }
        let healthy = Arc::new(AtomicBool::new(true));
        let (commands, receiver) = mpsc::channel();
        let counts = counts::RecordCounts::default();
        let writer = Writer { store, signer, tree, healthy: healthy.clone(), counts: counts.clone() };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|e| AuditError::Corrupt(format!("cannot start the audit writer: {e}")))?;
        Ok(Self { commands, healthy, counts, db_path: db_path.to_owned(), keys })
    }

    /// Adds the count of committed records to the gateway's metrics.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.counts.register(registry);
    }

    /// False while appends fail: no audit, no session.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Appends `event`; returns its `seq` once it is committed to disk.
    pub async fn append(&self, event: Event) -> Result<u64, AuditError> {
        let (ack, done) = oneshot::channel();
        self.send(Command::Append { event: Box::new(event), ack })?;
        done.await.map_err(|_| self.writer_gone())?
    }

    /// [`AuditLog::append`] for threads outside the async runtime.
    pub fn append_blocking(&self, event: Event) -> Result<u64, AuditError> {
        let (ack, done) = oneshot::channel();
        self.send(Command::Append { event: Box::new(event), ack })?;
        done.blocking_recv().map_err(|_| self.writer_gone())?
    }

    /// Signs a checkpoint if there are records since the last one; returns its tree size.
    pub async fn checkpoint(&self) -> Result<Option<u64>, AuditError> {
        let (ack, done) = oneshot::channel();
        self.send(Command::Checkpoint { ack })?;
        done.await.map_err(|_| self.writer_gone())?
    }

    pub fn checkpoint_blocking(&self) -> Result<Option<u64>, AuditError> {
        let (ack, done) = oneshot::channel();
        self.send(Command::Checkpoint { ack })?;
        done.blocking_recv().map_err(|_| self.writer_gone())?
    }

    fn send(&self, command: Command) -> Result<(), AuditError> {
        self.commands.send(command).map_err(|_| self.writer_gone())
    }

    fn writer_gone(&self) -> AuditError {
        self.healthy.store(false, Ordering::Release);
        AuditError::Unavailable
    }

    /// Signs a checkpoint every [`CHECKPOINT_INTERVAL`] while there are new records, and once
    /// more when `shutdown` fires.
    pub async fn run_checkpoints(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = self.checkpoint().await {
                        tracing::error!(error = %e, "cannot sign an audit checkpoint");
                    }
                }
            }
        }
    }

    fn reader(&self) -> Result<SqliteAuditStore, AuditError> {
        Ok(SqliteAuditStore::open(&self.db_path)?)
    }

    /// The verifier key for checkpoints signed now.
    pub fn verifier_key(&self) -> Result<String, AuditError> {
        Ok(self.keys.signer()?.verifier_key())
    }

    /// Searches the log, and records that `actor` did so.
    pub fn query(&self, actor: Actor, ip: Option<IpAddr>, query: &AuditQuery) -> Result<Vec<StoredRecord>, AuditError> {
        let mut query = query.clone();
        query.limit = query.limit.clamp(1, MAX_PAGE);
        let records = self.reader()?.query(&query)?;
        let details =
            Details { records: Some(records.len() as u64), filters: filter_names(&query), ..Details::default() };
        self.append_blocking(with_ip(Event::new(EventKind::AuditRead, actor).with_details(details), ip))?;
        Ok(records)
    }

    /// One record by `seq`, with a read recorded for `actor`.
    pub fn record(&self, actor: Actor, ip: Option<IpAddr>, seq: u64) -> Result<StoredRecord, AuditError> {
        let record = self.reader()?.record(seq)?.ok_or(AuditError::NoSuchRecord(seq))?;
        let details = Details { records: Some(1), ..Details::default() };
        self.append_blocking(with_ip(Event::new(EventKind::AuditRead, actor).with_details(details), ip))?;
        Ok(record)
    }

    /// Every record matching `query` (no page limit), in `format`, with the export recorded.
    pub fn export(
        &self,
        actor: Actor,
        ip: Option<IpAddr>,
        format: export::Format,
        query: &AuditQuery,
    ) -> Result<Vec<u8>, AuditError> {
        let reader = self.reader()?;
        let mut stored = Vec::new();
        let mut page = AuditQuery { limit: 10_000, ..query.clone() };
        loop {
            let batch = reader.query(&page)?;
            let Some(last) = batch.last() else { break };
            page.after_seq = Some(last.seq);
            stored.extend(batch);
        }
        let parsed = stored
            .iter()
            .map(|s| Record::parse(&s.body).map_err(|e| AuditError::Corrupt(format!("record {}: {e}", s.seq))))
            .collect::<Result<Vec<_>, _>>()?;
        let exported: Vec<export::Exported<'_>> =
            stored.iter().zip(&parsed).map(|(s, record)| export::Exported { body: &s.body, record }).collect();
        let bytes = match format {
            export::Format::Jsonl => export::jsonl(&exported),
            export::Format::Csv => export::csv(&exported),
            export::Format::Fhir => export::fhir(&exported, &self.keys.origin()?),
        };
        let details = Details {
            records: Some(exported.len() as u64),
            format: Some(Code::new(format.code()).map_err(|e| AuditError::BadRequest(e.to_string()))?),
            filters: filter_names(query),
            ..Details::default()
        };
        self.append_blocking(with_ip(Event::new(EventKind::AuditExported, actor).with_details(details), ip))?;
        Ok(bytes)
    }

    /// The latest signed checkpoint note and its tree size.
    pub fn latest_checkpoint(&self) -> Result<Option<(String, u64)>, AuditError> {
        Ok(self.reader()?.latest_checkpoint()?.map(|c| (c.note, c.tree_size)))
    }

    /// An RFC 9162 inclusion proof of record `seq` in the tree of `tree_size` records.
    pub fn inclusion_proof(&self, seq: u64, tree_size: u64) -> Result<InclusionProof, AuditError> {
        if seq >= tree_size {
            return Err(AuditError::BadRequest(format!("seq {seq} is not inside a tree of size {tree_size}")));
        }
        let leaves = self.reader()?.leaf_hashes(tree_size)?;
        if (leaves.len() as u64) < tree_size {
            return Err(AuditError::BadRequest(format!("the log holds only {} records", leaves.len())));
        }
        let path =
            merkle::inclusion_proof(&leaves, seq, tree_size).map_err(|e| AuditError::BadRequest(e.to_string()))?;
        Ok(InclusionProof {
            seq,
            tree_size,
            leaf_hash: leaves[seq as usize],
            root: merkle::root_from_leaves(&leaves),
            path,
        })
    }

    /// Verifies the whole log in this data folder. `pin` is an earlier checkpoint note kept
    /// elsewhere; `extra_keys` are verifier keys trusted besides the data folder's own.
    pub fn verify(
        db_path: &Path,
        data_dir: &Path,
        pin: Option<&str>,
        extra_keys: &[String],
    ) -> Result<verify::Summary, VerifyError> {
        Self::verify_with(db_path, &KeyRing::new(data_dir), pin, extra_keys)
    }

    /// Verifies the whole log as it stands now, as `gatehouse audit verify` does, and records
    /// that `actor` asked. The outer error is a failure to check; the inner one is what the
    /// check found wrong.
    pub fn verify_now(
        &self,
        actor: Actor,
        ip: Option<IpAddr>,
    ) -> Result<Result<verify::Summary, verify::Failure>, AuditError> {
        self.append_blocking(with_ip(Event::new(EventKind::AuditRead, actor), ip))?;
        match Self::verify_with(&self.db_path, &self.keys, None, &[]) {
            Ok(summary) => Ok(Ok(summary)),
            Err(VerifyError::Failed(failure)) => Ok(Err(failure)),
            Err(VerifyError::Cannot(e)) => Err(e),
        }
    }

    fn verify_with(
        db_path: &Path,
        ring: &KeyRing,
        pin: Option<&str>,
        extra_keys: &[String],
    ) -> Result<verify::Summary, VerifyError> {
        let mut verifiers = ring.verifiers().map_err(AuditError::from)?;
        for key in extra_keys {
            verifiers.push(
                note::NoteVerifier::parse(key).map_err(|e| AuditError::BadRequest(format!("bad verifier key: {e}")))?,
            );
        }
        let origin = ring.origin().map_err(AuditError::from)?;
        let store = SqliteAuditStore::open(db_path).map_err(AuditError::from)?;
        let checkpoints: Vec<(String, u64)> =
            store.checkpoints().map_err(AuditError::from)?.into_iter().map(|c| (c.note, c.tree_size)).collect();
        let mut verifier = verify::Verifier::new(Some(&checkpoints), &verifiers, Some(&origin), pin)?;
        let mut failure = None;
        store
            .scan(0, &mut |r| match verifier.push(Some(r.seq), &r.body, Some(&r.hash)) {
                Ok(()) => true,
                Err(f) => {
                    failure = Some(f);
                    false
                }
            })
            .map_err(AuditError::from)?;
        if let Some(f) = failure {
            return Err(f.into());
        }
        Ok(verifier.finish()?)
    }

    /// Verifies a JSON Lines export against a signed checkpoint note: the export must hold the
    /// log from its first record, and reproduce the checkpoint's tree.
    pub fn verify_export(jsonl: &str, checkpoint_note: &str, keys: &[String]) -> Result<verify::Summary, VerifyError> {
        let verifiers = keys
            .iter()
            .map(|k| note::NoteVerifier::parse(k).map_err(|e| AuditError::BadRequest(format!("bad verifier key: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut verifier = verify::Verifier::new(None, &verifiers, None, Some(checkpoint_note))?;
        for line in jsonl.lines().filter(|l| !l.is_empty()) {
            verifier.push(None, line, None)?;
        }
        Ok(verifier.finish()?)
    }
}

/// A proof that one record is in the tree a checkpoint signs.
#[derive(Debug, Clone)]
pub struct InclusionProof {
    pub seq: u64,
    pub tree_size: u64,
    pub leaf_hash: merkle::Hash,
    pub root: merkle::Hash,
    pub path: Vec<merkle::Hash>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("verification failed: {0}")]
    Failed(#[from] verify::Failure),
    #[error("cannot verify: {0}")]
    Cannot(#[from] AuditError),
}

fn with_ip(event: Event, ip: Option<IpAddr>) -> Event {
    match ip {
        Some(ip) => event.from_ip(ip),
        None => event,
    }
}

/// The names of the filters a query used, for its audit record.
fn filter_names(q: &AuditQuery) -> Vec<Code> {
    [
        ("from", q.from.is_some()),
        ("to", q.to.is_some()),
        ("kind", q.kind.is_some()),
        ("outcome", q.outcome.is_some()),
        ("actor", q.actor.is_some()),
        ("appointment", q.appointment.is_some()),
        ("room", q.room.is_some()),
    ]
    .into_iter()
    .filter(|(_, used)| *used)
    .filter_map(|(name, _)| Code::new(name).ok())
    .collect()
}
