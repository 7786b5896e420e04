//! Verification: recomputes every record hash, the chain, the Merkle tree and every checkpoint
//! signature, from the store or from a JSON Lines export, and names the first record that fails.

use std::collections::HashMap;

use super::checkpoint::Checkpoint;
use super::merkle::{Hash, TreeBuilder};
use super::note::{self, NoteVerifier};
use super::record::{EventKind, Record, hex, record_hash, unhex};

/// The kinds of failure, each with its own exit code for `gatehouse audit verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// A record's content is not what was committed.
    Modified,
    /// A record is missing, or one was inserted, at this position.
    MissingOrInserted,
    /// Records are out of their committed order.
    Reordered,
    /// The log ends before a signed checkpoint says it does.
    Truncated,
    /// A checkpoint's signature is not from a trusted key, or a checkpoint was removed or swapped.
    BadSignature,
    /// The log does not contain the pinned checkpoint's tree.
    InconsistentWithPin,
}

impl FailureClass {
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Modified => 3,
            Self::MissingOrInserted => 4,
            Self::Reordered => 5,
            Self::Truncated => 6,
            Self::BadSignature => 7,
            Self::InconsistentWithPin => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Modified => "modified",
            Self::MissingOrInserted => "missing or inserted",
            Self::Reordered => "reordered",
            Self::Truncated => "truncated",
            Self::BadSignature => "bad signature",
            Self::InconsistentWithPin => "inconsistent with pin",
        }
    }
}

/// The first thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} at seq {seq}: {message}", class.name())]
pub struct Failure {
    pub class: FailureClass,
    pub seq: u64,
    pub message: String,
}

fn fail<T>(class: FailureClass, seq: u64, message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure { class, seq, message: message.into() })
}

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub records: u64,
    pub root: Hash,
    /// Tree size of the last signed checkpoint, if any.
    pub last_checkpoint: Option<u64>,
    pub checkpoints: usize,
    /// Records after the last checkpoint, not yet covered by a signature.
    pub unsigned: u64,
    pub pinned: Option<u64>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OK: {} records, tree size {}, root {}", self.records, self.records, hex(&self.root))?;
        match self.last_checkpoint {
            Some(size) => write!(f, "; last signed checkpoint at tree size {size} ({} checkpoints)", self.checkpoints)?,
            None => write!(f, "; no signed checkpoint yet")?,
        }
        write!(f, "; {} records follow it unsigned", self.unsigned)?;
        if let Some(pin) = self.pinned {
            write!(f, "; consistent with the pinned checkpoint at tree size {pin}")?;
        }
        Ok(())
    }
}

/// A checkpoint whose signature has been checked, ready to compare with the recomputed tree.
#[derive(Debug, Clone)]
pub struct TrustedCheckpoint {
    pub checkpoint: Checkpoint,
}

/// Opens a signed checkpoint note with the trusted keys and checks it names this log.
pub fn open_checkpoint(
    note_text: &str,
    verifiers: &[NoteVerifier],
    origin: Option<&str>,
) -> Result<TrustedCheckpoint, String> {
    let (body, _) = note::open(note_text.as_bytes(), verifiers).map_err(|e| e.to_string())?;
    let checkpoint = Checkpoint::parse(&body).map_err(|e| e.to_string())?;
    if let Some(origin) = origin
        && checkpoint.origin != origin
    {
        return Err(format!("it is for the log {:?}, not {origin:?}", checkpoint.origin));
    }
    Ok(TrustedCheckpoint { checkpoint })
}

/// Streams records through every check. Feed records in order with [`Verifier::push`], then
/// call [`Verifier::finish`].
#[derive(Debug)]
pub struct Verifier {
    tree: TreeBuilder,
    prev: Hash,
    prev_recorded: Option<time::OffsetDateTime>,
    /// Stored checkpoints by tree size, in the order they were signed.
    checkpoints: Vec<TrustedCheckpoint>,
    /// Roots that must hold at given sizes: (size, root, is_pin).
    expected_roots: HashMap<u64, Vec<(Hash, bool)>>,
    pin: Option<Checkpoint>,
    /// Tree size of the last checkpoint whose root matched: failures past it are localised there.
    last_good_checkpoint: u64,
    /// `audit.checkpoint_signed` records: (seq, tree size, root).
    announced: Vec<(u64, u64, Hash)>,
    /// Stored checkpoints out of order; reported at the end, after the more precise checks.
    disorder: Option<Failure>,
    /// Whether the stored checkpoints are at hand, so announced ones can be looked for.
    has_checkpoint_store: bool,
}

impl Verifier {
    /// `checkpoints` are the stored signed notes in signing order (None for an export, which
    /// carries none); each must verify with one of `verifiers` and name `origin`. `pin` is an
    /// earlier checkpoint kept by an auditor.
    pub fn new(
        checkpoints: Option<&[(String, u64)]>,
        verifiers: &[NoteVerifier],
        origin: Option<&str>,
        pin: Option<&str>,
    ) -> Result<Self, Failure> {
        let mut trusted: Vec<TrustedCheckpoint> = Vec::new();
        let mut disorder = None;
        for (note_text, stored_size) in checkpoints.unwrap_or_default() {
            let covered = stored_size.saturating_sub(1);
            let cp = match open_checkpoint(note_text, verifiers, origin) {
                Ok(cp) => cp,
                Err(e) => return fail(FailureClass::BadSignature, covered, format!("checkpoint does not verify: {e}")),
            };
            if disorder.is_none()
                && let Some(last) = trusted.last()
                && cp.checkpoint.size <= last.checkpoint.size
            {
                disorder = Some(Failure {
                    class: FailureClass::BadSignature,
                    seq: covered,
                    message: format!(
                        "checkpoint for tree size {} follows one for {}: checkpoints were replaced or reordered",
                        cp.checkpoint.size, last.checkpoint.size
                    ),
                });
            }
            trusted.push(cp);
        }
        let pin = match pin {
            Some(text) => match open_checkpoint(text, verifiers, origin) {
                Ok(cp) => Some(cp.checkpoint),
                Err(e) => {
                    return fail(
                        FailureClass::InconsistentWithPin,
                        0,
                        format!("the pinned checkpoint does not verify: {e}"),
                    );
                }
            },
            None => None,
        };
        let mut expected_roots: HashMap<u64, Vec<(Hash, bool)>> = HashMap::new();
        for cp in &trusted {
            expected_roots.entry(cp.checkpoint.size).or_default().push((cp.checkpoint.root, false));
        }
        if let Some(pin) = &pin {
            expected_roots.entry(pin.size).or_default().push((pin.root, true));
        }
        Ok(Self {
            tree: TreeBuilder::new(),
            prev: [0; 32],
            prev_recorded: None,
            checkpoints: trusted,
            expected_roots,
            pin,
            last_good_checkpoint: 0,
            announced: Vec::new(),
            disorder,
            has_checkpoint_store: checkpoints.is_some(),
        })
    }

    /// Checks the next record. `position` is where the store keeps it (if it keeps positions),
    /// `stored_hash` the hash stored beside it (if any).
    pub fn push(&mut self, position: Option<u64>, body: &str, stored_hash: Option<&Hash>) -> Result<(), Failure> {
        let expected = self.tree.size();
        if let Some(position) = position
            && position != expected
        {
            return fail(
                FailureClass::MissingOrInserted,
                expected,
                format!("record {expected} is missing: the next stored record is at position {position}"),
            );
        }
        let hash = record_hash(body);
        if stored_hash.is_some_and(|stored| *stored != hash) {
            return fail(FailureClass::Modified, expected, "the record does not match its stored hash");
        }
        let record = match Record::parse(body) {
            Ok(record) => record,
            Err(e) => return fail(FailureClass::Modified, expected, format!("the record is not valid: {e}")),
        };
        if record.seq > expected {
            return fail(
                FailureClass::MissingOrInserted,
                expected,
                format!("record {expected} is missing: the next record says it is {}", record.seq),
            );
        }
        if record.seq < expected {
            return fail(
                FailureClass::MissingOrInserted,
                record.seq,
                format!("a second record claims position {}: one was inserted", record.seq),
            );
        }
        if let Some(prev_recorded) = self.prev_recorded
            && record.recorded <= prev_recorded
        {
            return fail(
                FailureClass::Reordered,
                expected.saturating_sub(1),
                format!("record {} was recorded after record {expected}: records were reordered", expected - 1),
            );
        }
        if record.prev_hash() != Some(self.prev) {
            // The next record committed to its predecessor's hash; the predecessor changed since.
            let seq = expected.saturating_sub(1);
            return fail(FailureClass::Modified, seq, format!("record {seq} is not the one record {expected} follows"));
        }
        if record.kind == EventKind::CheckpointSigned
            && let (Some(size), Some(root)) =
                (record.details.tree_size, record.details.root.as_ref().and_then(|r| unhex(r.as_str())))
        {
            self.announced.push((record.seq, size, root));
        }
        self.tree.push(hash).map_err(|e| Failure {
            class: FailureClass::Modified,
            seq: expected,
            message: e.to_string(),
        })?;
        self.prev = hash;
        self.prev_recorded = Some(record.recorded);
        self.check_roots()
    }

    fn check_roots(&mut self) -> Result<(), Failure> {
        let size = self.tree.size();
        let Some(expected) = self.expected_roots.get(&size) else {
            return Ok(());
        };
        let root = self.tree.root();
        for (want, is_pin) in expected {
            if *want == root {
                continue;
            }
            if *is_pin {
                return fail(
                    FailureClass::InconsistentWithPin,
                    size - 1,
                    format!("records 0 to {} do not match the pinned checkpoint at tree size {size}", size - 1),
                );
            }
            return fail(
                FailureClass::Modified,
                self.last_good_checkpoint,
                format!(
                    "records {} to {} do not match the signed checkpoint at tree size {size}",
                    self.last_good_checkpoint,
                    size - 1
                ),
            );
        }
        self.last_good_checkpoint = size;
        Ok(())
    }

    /// Checks what can only be known at the end: nothing signed is missing from the tail, and
    /// every announced checkpoint is present.
    pub fn finish(self) -> Result<Summary, Failure> {
        let records = self.tree.size();
        if let Some(pin) = &self.pin
            && pin.size > records
        {
            return fail(
                FailureClass::InconsistentWithPin,
                records,
                format!("the pinned checkpoint covers {} records but the log holds {records}", pin.size),
            );
        }
        if let Some(largest) = self.checkpoints.iter().map(|cp| cp.checkpoint.size).max()
            && largest > records
        {
            return fail(
                FailureClass::Truncated,
                records,
                format!("a signed checkpoint covers {largest} records but the log holds {records}"),
            );
        }
        for (seq, size, root) in self.announced.iter().filter(|_| self.has_checkpoint_store) {
            let present = self.checkpoints.iter().any(|cp| cp.checkpoint.size == *size && cp.checkpoint.root == *root);
            if !present {
                return fail(
                    FailureClass::BadSignature,
                    *seq,
                    format!("record {seq} announces a checkpoint at tree size {size} that is no longer stored"),
                );
            }
        }
        if let Some(disorder) = self.disorder {
            return Err(disorder);
        }
        let last_checkpoint = self.checkpoints.last().map(|cp| cp.checkpoint.size);
        Ok(Summary {
            records,
            root: self.tree.root(),
            last_checkpoint,
            checkpoints: self.checkpoints.len(),
            unsigned: records - last_checkpoint.unwrap_or(0),
            pinned: self.pin.as_ref().map(|p| p.size),
        })
    }
}
