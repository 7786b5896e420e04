//! The group-commit writer: one thread owns the audit store's connection, gathers every append
//! that arrives while the previous commit is in flight, and commits them with one fsync. An
//! append is acknowledged only after its batch is committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};

use time::{Duration, OffsetDateTime};
use tokio::sync::oneshot;

use super::checkpoint::Checkpoint;
use super::merkle::TreeBuilder;
use super::note::NoteSigner;
use super::record::{Actor, Details, Event, EventKind, Record, hex, record_hash, timestamp};
use super::{AuditError, Code};
use crate::store::{AuditStore, Batch, RecordIndex, StoreError, StoredRecord, Tail};

/// How many requests one transaction takes at most; bounds the latency of the last one.
const MAX_BATCH: usize = 4096;

pub(super) enum Command {
    Append {
        event: Box<Event>,
        ack: oneshot::Sender<Result<u64, AuditError>>,
    },
    /// Sign a checkpoint if records were added since the last one.
    Checkpoint {
        ack: oneshot::Sender<Result<Option<u64>, AuditError>>,
    },
}

pub(super) struct Writer<S: AuditStore> {
    pub store: S,
    pub signer: NoteSigner,
    /// The Merkle frontier for the records committed so far, so a checkpoint's root costs
    /// O(log n) instead of a pass over the whole log.
    pub tree: TreeBuilder,
    /// Cleared while appends fail, so readiness (and with it new sessions) stops.
    pub healthy: Arc<AtomicBool>,
    pub counts: super::counts::RecordCounts,
}

/// Whether a batch was written or the in-memory tree was behind the store.
enum Written {
    Done {
        first_seq: u64,
        checkpoint: Option<u64>,
    },
    /// Another process appended since our tree was built; rebuild and try again.
    Stale,
}

impl<S: AuditStore> Writer<S> {
    pub fn run(mut self, commands: Receiver<Command>) {
        while let Ok(first) = commands.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match commands.try_recv() {
                    Ok(command) => batch.push(command),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            self.commit(batch);
        }
    }

    fn commit(&mut self, commands: Vec<Command>) {
        let mut events = Vec::new();
        let mut event_acks = Vec::new();
        let mut checkpoint_acks = Vec::new();
        for command in commands {
            match command {
                Command::Append { event, ack } => {
                    events.push(*event);
                    event_acks.push(ack);
                }
                Command::Checkpoint { ack } => checkpoint_acks.push(ack),
            }
        }
        let want_checkpoint = !checkpoint_acks.is_empty();
        let mut result = self.write(&events, want_checkpoint);
        if matches!(result, Ok(Written::Stale)) {
            result = self.rebuild_tree().and_then(|()| self.write(&events, want_checkpoint));
        }
        match result {
            Ok(Written::Done { first_seq, checkpoint }) => {
                self.healthy.store(true, Ordering::Release);
                self.counts.count(&events);
                for (i, ack) in event_acks.into_iter().enumerate() {
                    let _ = ack.send(Ok(first_seq + i as u64));
                }
                for ack in checkpoint_acks {
                    let _ = ack.send(Ok(checkpoint));
                }
            }
            Ok(Written::Stale) | Err(_) => {
                if let Err(e) = &result {
                    tracing::error!(error = %e, "audit append failed; new sessions are refused until it recovers");
                }
                self.healthy.store(false, Ordering::Release);
                // The tree may have advanced in memory for a batch that was rolled back.
                let _ = self.rebuild_tree();
                for ack in event_acks {
                    let _ = ack.send(Err(AuditError::Unavailable));
                }
                for ack in checkpoint_acks {
                    let _ = ack.send(Err(AuditError::Unavailable));
                }
            }
        }
    }

    fn write(&mut self, events: &[Event], want_checkpoint: bool) -> Result<Written, AuditError> {
        let mut tree = self.tree.clone();
        let signer = &self.signer;
        let written = self.store.append(|tail| {
            if tail.size != tree.size() {
                return Ok((Batch::default(), Written::Stale));
            }
            let mut builder = BatchBuilder::new(tail, &mut tree);
            for event in events {
                builder.push(event.clone())?;
            }
            let mut checkpoint = None;
            if want_checkpoint && needs_checkpoint(tail, builder.size()) {
                let size = builder.size();
                let body =
                    Checkpoint { origin: signer.name().to_owned(), size, root: builder.root(), extensions: vec![] }
                        .to_body();
                let note = signer.sign(&body).map_err(|e| StoreError::Rejected(e.to_string()))?;
                let details = Details {
                    tree_size: Some(size),
                    root: Some(code(hex(&builder.root()))?),
                    key_id: Some(code(format!("{:08x}", signer.key_id()))?),
                    ..Details::default()
                };
                builder.push(Event::new(EventKind::CheckpointSigned, Actor::System).with_details(details))?;
                builder.batch.checkpoint = Some((size, note, timestamp::format(OffsetDateTime::now_utc())));
                checkpoint = Some(size);
            }
            let first_seq = tail.size;
            Ok((builder.batch, Written::Done { first_seq, checkpoint }))
        })?;
        if matches!(written, Written::Done { .. }) {
            self.tree = tree;
        }
        Ok(written)
    }

    fn rebuild_tree(&mut self) -> Result<(), AuditError> {
        let mut tree = TreeBuilder::new();
        let mut failure = None;
        self.store.scan(0, &mut |record| match tree.push(record.hash) {
            Ok(_) => true,
            Err(e) => {
                failure = Some(e);
                false
            }
        })?;
        if let Some(e) = failure {
            return Err(AuditError::Corrupt(e.to_string()));
        }
        self.tree = tree;
        Ok(())
    }
}

/// A checkpoint is worth signing when something other than the previous checkpoint's own
/// announcement has been added since it; otherwise an idle gateway would sign forever.
fn needs_checkpoint(tail: &Tail, size: u64) -> bool {
    let last = tail.last_checkpoint_size.unwrap_or(0);
    let only_announcement = size == tail.size
        && tail.size == last + 1
        && tail.last_kind.as_deref() == Some(EventKind::CheckpointSigned.code());
    size > last && !only_announcement
}

fn code(text: String) -> Result<Code, StoreError> {
    Code::new(text).map_err(|e| StoreError::Rejected(e.to_string()))
}

/// Turns events into chained, hashed records for one transaction.
struct BatchBuilder<'a> {
    batch: Batch,
    tree: &'a mut TreeBuilder,
    prev: [u8; 32],
    last_recorded: Option<OffsetDateTime>,
}

impl<'a> BatchBuilder<'a> {
    fn new(tail: &Tail, tree: &'a mut TreeBuilder) -> Self {
        Self {
            batch: Batch::default(),
            tree,
            prev: tail.last_hash.unwrap_or([0; 32]),
            last_recorded: tail.last_recorded.as_deref().and_then(timestamp::parse),
        }
    }

    fn size(&self) -> u64 {
        self.tree.size()
    }

    fn root(&self) -> [u8; 32] {
        self.tree.root()
    }

    fn push(&mut self, event: Event) -> Result<(), StoreError> {
        // Record times strictly increase, so a reordering of records is always visible.
        let now = OffsetDateTime::now_utc();
        let recorded = match self.last_recorded {
            Some(last) if now <= last => last + Duration::nanoseconds(1),
            _ => now,
        };
        let seq = self.tree.size();
        let record = Record::from_event(event, seq, recorded, &self.prev);
        let body = record.canonical().map_err(|e| StoreError::Rejected(e.to_string()))?;
        let hash = record_hash(&body);
        self.tree.push(hash).map_err(|e| StoreError::Rejected(e.to_string()))?;
        self.batch.records.push(StoredRecord { seq, body, hash, index: index_of(&record) });
        self.prev = hash;
        self.last_recorded = Some(recorded);
        Ok(())
    }
}

/// The searchable copies of a record's fields.
pub(super) fn index_of(record: &Record) -> RecordIndex {
    use super::record::Outcome;
    let actor = match &record.actor {
        Actor::Staff { id, .. } | Actor::Room { id } | Actor::Participant { id, .. } | Actor::ApiToken { id } => {
            Some(id.to_string())
        }
        Actor::System | Actor::Operator | Actor::Anonymous => None,
    };
    RecordIndex {
        recorded: timestamp::format(record.recorded),
        kind: record.kind.code().to_owned(),
        outcome: match &record.outcome {
            Outcome::Success => "success".to_owned(),
            Outcome::Refused { .. } => "refused".to_owned(),
            Outcome::Failed { .. } => "failed".to_owned(),
        },
        actor,
        appointment: record.object.appointment.as_ref().map(ToString::to_string),
        room: record.object.room.as_ref().map(ToString::to_string),
    }
}
