//! The audit log under attack: a real log is written through the public API, tampered with
//! directly in the SQLite file or in an export, and `gatehouse audit verify` must name the
//! class of tampering (by exit code) and the first failing `seq`.

use std::path::{Path, PathBuf};

use gatehouse::audit::note::{NoteSigner, generate_pkcs8};
use gatehouse::audit::record::{Record, hex, record_hash, unhex};
use gatehouse::audit::{Actor, AuditLog, Code, Details, Event, EventKind, Object};
use gatehouse::store::{DATABASE_FILE, SqliteStore, Store};
use proptest::prelude::*;
use rusqlite::Connection;

use crate::support::run_cli;

const MODIFIED: i32 = 3;
const MISSING_OR_INSERTED: i32 = 4;
const REORDERED: i32 = 5;
const TRUNCATED: i32 = 6;
const BAD_SIGNATURE: i32 = 7;
const INCONSISTENT_WITH_PIN: i32 = 8;

/// A data folder holding a real log of `events` records plus checkpoints every ten events.
struct Log {
    _dir: tempfile::TempDir,
    data: PathBuf,
}

impl Log {
    fn new(events: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let log = Self { _dir: dir, data };
        log.grow(events);
        log
    }

    /// Appends `events` more events through the audit API, checkpointing every ten.
    fn grow(&self, events: usize) {
        let store = SqliteStore::open(&self.data).unwrap();
        let log = AuditLog::open(store.database_path(), &self.data).unwrap();
        for i in 0..events {
            log.append_blocking(sample_event(i)).unwrap();
            if i % 10 == 9 {
                log.checkpoint_blocking().unwrap();
            }
        }
    }

    fn db(&self) -> Connection {
        let conn = Connection::open(self.data.join(DATABASE_FILE)).unwrap();
        // The attacker owns the file: the append-only triggers are no obstacle.
        conn.execute_batch(
            "DROP TRIGGER IF EXISTS audit_records_no_update; DROP TRIGGER IF EXISTS audit_records_no_delete;
             DROP TRIGGER IF EXISTS audit_checkpoints_no_update; DROP TRIGGER IF EXISTS audit_checkpoints_no_delete;",
        )
        .unwrap();
        conn
    }

    fn verify(&self, extra: &[&str]) -> (i32, String) {
        let mut args = vec!["audit", "verify", "--data-dir", self.data.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (code, out, err) = run_cli(&args, &[]);
        (code, format!("{out}{err}"))
    }

    fn body(&self, seq: u64) -> String {
        self.db().query_row("SELECT body FROM audit_records WHERE seq = ?1", [seq as i64], |r| r.get(0)).unwrap()
    }

    fn checkpoint_note(&self) -> String {
        let (code, out, err) = run_cli(&["audit", "checkpoint", "--data-dir", self.data.to_str().unwrap()], &[]);
        assert_eq!(code, 0, "{err}");
        out
    }
}

fn sample_event(i: usize) -> Event {
    let room = Code::new(format!("room-{}", i % 3)).unwrap();
    let event = Event::new(EventKind::AuditRead, Actor::ApiToken { id: Code::new(format!("token-{i}")).unwrap() })
        .from_ip(format!("192.0.2.{}", i % 250).parse().unwrap())
        .with_object(Object { room: Some(room), ..Object::default() })
        .with_details(Details { records: Some(i as u64), ..Details::default() });
    if i % 7 == 3 { event.refused("not_authenticated") } else { event }
}

/// Asserts that verification fails with `code`, naming `seq`.
fn assert_fails(outcome: (i32, String), code: i32, seq: u64) {
    let (got, text) = outcome;
    assert_eq!(got, code, "wrong exit code; output: {text}");
    assert!(text.contains(&format!("at seq {seq}:")), "expected seq {seq}; output: {text}");
}

/// Re-chains records `from..` after an edit, as a careful attacker would: each `prev` and
/// stored hash is recomputed so that only the tree and the signatures can tell.
fn rechain(conn: &Connection, from: u64) {
    let mut prev: [u8; 32] = if from == 0 {
        [0; 32]
    } else {
        let h: Vec<u8> =
            conn.query_row("SELECT hash FROM audit_records WHERE seq = ?1", [from as i64 - 1], |r| r.get(0)).unwrap();
        h.try_into().unwrap()
    };
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT seq, body FROM audit_records WHERE seq >= ?1 ORDER BY seq")
        .unwrap()
        .query_map([from as i64], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (seq, body) in rows {
        let mut record = Record::parse(&body).unwrap();
        record.prev = hex(&prev);
        let body = record.canonical().unwrap();
        let hash = record_hash(&body);
        conn.execute(
            "UPDATE audit_records SET body = ?1, hash = ?2 WHERE seq = ?3",
            rusqlite::params![body, hash.as_slice(), seq],
        )
        .unwrap();
        prev = hash;
    }
}

#[test]
fn an_untouched_log_verifies_and_reports_unsigned_records() {
    let log = Log::new(25);
    let (code, text) = log.verify(&[]);
    assert_eq!(code, 0, "{text}");
    // 25 events and two checkpoint announcements; the second checkpoint covers 21 records.
    assert!(text.contains("OK: 27 records"), "{text}");
    assert!(text.contains("last signed checkpoint at tree size 21"), "{text}");
    assert!(text.contains("6 records follow it unsigned"), "{text}");
}

#[test]
fn the_database_refuses_updates_and_deletes() {
    let log = Log::new(12);
    let conn = Connection::open(log.data.join(DATABASE_FILE)).unwrap();
    for sql in [
        "UPDATE audit_records SET body = 'x' WHERE seq = 1",
        "DELETE FROM audit_records WHERE seq = 1",
        "DELETE FROM audit_checkpoints",
    ] {
        let err = conn.execute(sql, []).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

#[test]
fn a_deleted_record_is_missing() {
    let log = Log::new(30);
    log.db().execute("DELETE FROM audit_records WHERE seq = 17", []).unwrap();
    assert_fails(log.verify(&[]), MISSING_OR_INSERTED, 17);
}

#[test]
fn an_inserted_record_is_found() {
    let log = Log::new(30);
    let conn = log.db();
    let k = 12u64;
    let prev = unhex(&hex(&{
        let h: Vec<u8> =
            conn.query_row("SELECT hash FROM audit_records WHERE seq = ?1", [k as i64 - 1], |r| r.get(0)).unwrap();
        <[u8; 32]>::try_from(h).unwrap()
    }))
    .unwrap();
    let mut forged = Record::parse(&log.body(k)).unwrap();
    forged.ip = Some("198.51.100.66".parse().unwrap());
    forged.prev = hex(&prev);
    let body = forged.canonical().unwrap();
    conn.execute_batch(&format!(
        "UPDATE audit_records SET seq = seq + 1000000 WHERE seq >= {k};
         UPDATE audit_records SET seq = seq - 1000000 + 1 WHERE seq >= 1000000;"
    ))
    .unwrap();
    conn.execute(
        "INSERT INTO audit_records (seq, body, hash, recorded, kind, outcome) VALUES (?1, ?2, ?3, '', '', '')",
        rusqlite::params![k as i64, body, record_hash(&body).as_slice()],
    )
    .unwrap();
    assert_fails(log.verify(&[]), MISSING_OR_INSERTED, k);
}

#[test]
fn swapped_records_with_rewritten_seq_and_prev_are_reordered() {
    let log = Log::new(30);
    let conn = log.db();
    let k = 14u64;
    let (a, b) = (Record::parse(&log.body(k)).unwrap(), Record::parse(&log.body(k + 1)).unwrap());
    for (seq, mut record) in [(k, b), (k + 1, a)] {
        record.seq = seq;
        let body = record.canonical().unwrap();
        conn.execute("UPDATE audit_records SET body = ?1 WHERE seq = ?2", rusqlite::params![body, seq as i64]).unwrap();
    }
    rechain(&conn, k);
    assert_fails(log.verify(&[]), REORDERED, k);
}

#[test]
fn a_truncated_tail_below_the_last_checkpoint_is_found() {
    let log = Log::new(30);
    log.db().execute("DELETE FROM audit_records WHERE seq >= 20", []).unwrap();
    assert_fails(log.verify(&[]), TRUNCATED, 20);
}

#[test]
fn a_substituted_older_checkpoint_is_found() {
    let log = Log::new(30);
    let conn = log.db();
    let (first_note, first_size): (String, i64) = conn
        .query_row("SELECT note, tree_size FROM audit_checkpoints ORDER BY id LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    conn.execute(
        "UPDATE audit_checkpoints SET note = ?1, tree_size = ?2 WHERE id = (SELECT max(id) FROM audit_checkpoints)",
        rusqlite::params![first_note, first_size],
    )
    .unwrap();
    // The last checkpoint was announced by the record right after the tree it signed.
    let announced: i64 = conn
        .query_row("SELECT max(seq) FROM audit_records WHERE kind = 'audit.checkpoint_signed'", [], |r| r.get(0))
        .unwrap();
    assert_fails(log.verify(&[]), BAD_SIGNATURE, announced as u64);
}

#[test]
fn a_checkpoint_signed_by_another_key_is_refused() {
    let log = Log::new(30);
    let conn = log.db();
    let (note, size): (String, i64) = conn
        .query_row("SELECT note, tree_size FROM audit_checkpoints ORDER BY id DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    // Same origin, same tree, signed by a key the gateway never had.
    let body = note.split("\n\n").next().unwrap().to_owned() + "\n";
    let origin = body.lines().next().unwrap();
    let forger = NoteSigner::new(origin, &generate_pkcs8().unwrap()).unwrap();
    let forged = forger.sign(&body).unwrap();
    conn.execute("UPDATE audit_checkpoints SET note = ?1 WHERE id = (SELECT max(id) FROM audit_checkpoints)", [forged])
        .unwrap();
    assert_fails(log.verify(&[]), BAD_SIGNATURE, size as u64 - 1);
}

#[test]
fn a_truncated_and_regrown_log_resigned_with_the_real_key_fails_against_a_pin() {
    let log = Log::new(30);
    let pin = log.checkpoint_note();
    let pin_size: u64 = pin.lines().nth(1).unwrap().parse().unwrap();
    let pin_file = log.data.join("pinned-checkpoint.txt");
    std::fs::write(&pin_file, &pin).unwrap();
    {
        let conn = log.db();
        conn.execute("DELETE FROM audit_records WHERE seq >= 15", []).unwrap();
        conn.execute("DELETE FROM audit_checkpoints WHERE tree_size > 15", []).unwrap();
        conn.execute_batch(
            "CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records BEGIN SELECT RAISE(ABORT, 'x'); END;
             CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records BEGIN SELECT RAISE(ABORT, 'x'); END;
             CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints BEGIN SELECT RAISE(ABORT, 'x'); END;
             CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints BEGIN SELECT RAISE(ABORT, 'x'); END;",
        )
        .unwrap();
    }
    // The gateway's own key signs the regrown log, so on its own it looks consistent.
    log.grow(30);
    let (code, text) = log.verify(&[]);
    assert_eq!(code, 0, "without a pin the rewrite is invisible: {text}");
    assert_fails(log.verify(&["--pin", pin_file.to_str().unwrap()]), INCONSISTENT_WITH_PIN, pin_size - 1);
}

#[test]
fn a_pin_from_this_log_verifies() {
    let log = Log::new(20);
    let pin_file = log.data.join("pin.txt");
    std::fs::write(&pin_file, log.checkpoint_note()).unwrap();
    log.grow(15);
    let (code, text) = log.verify(&["--pin", pin_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("consistent with the pinned checkpoint"), "{text}");
}

/// Runs `gatehouse audit verify` on `export` against the checkpoint in `pin` and the public
/// `key`, from the data folder `data` (an auditor's own). Returns the exit code and all it printed.
pub fn verify_export(data: &Path, export: &Path, pin: &Path, key: &str) -> (i32, String) {
    let (data, export, pin) = (data.to_str().unwrap(), export.to_str().unwrap(), pin.to_str().unwrap());
    let args = ["audit", "verify", "--data-dir", data, "--export", export, "--pin", pin, "--key", key];
    let (code, out, err) = run_cli(&args, &[]);
    (code, format!("{out}{err}"))
}

#[test]
fn an_edited_jsonl_export_fails_against_its_checkpoint() {
    let log = Log::new(30);
    let data = log.data.to_str().unwrap();
    // The auditor takes a checkpoint, then an export that contains everything it covers.
    let note = log.checkpoint_note();
    let export = log.data.join("export.jsonl");
    let (code, _, err) =
        run_cli(&["audit", "export", "--data-dir", data, "--format", "jsonl", "-o", export.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    let pin = log.data.join("cp.txt");
    std::fs::write(&pin, &note).unwrap();
    let (_, key, _) = run_cli(&["audit", "key", "--data-dir", data], &[]);
    let key = key.trim().to_owned();
    // An auditor holding only the export, the checkpoint and the public key.
    let elsewhere = tempfile::tempdir().unwrap();
    let verify = |file: &Path| verify_export(elsewhere.path(), file, &pin, &key);
    let (code, text) = verify(&export);
    assert_eq!(code, 0, "{text}");

    let text = std::fs::read_to_string(&export).unwrap();
    let edited: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| if i == 9 { l.replace("192.0.2.", "203.0.113.") } else { l.to_owned() })
        .collect();
    assert_ne!(edited.join("\n"), text.trim_end());
    let tampered = log.data.join("tampered.jsonl");
    std::fs::write(&tampered, edited.join("\n") + "\n").unwrap();
    assert_fails(verify(&tampered), MODIFIED, 9);
}

/// A byte flipped in the stored log, at a random place in a random record.
fn flip(log: &Log, seq: u64, at: usize, bit: u8) -> bool {
    let body = log.body(seq);
    let mut bytes = body.into_bytes();
    let i = at % bytes.len();
    bytes[i] ^= 1 << (bit % 7);
    let Ok(flipped) = String::from_utf8(bytes) else { return false };
    log.db()
        .execute("UPDATE audit_records SET body = ?1 WHERE seq = ?2", rusqlite::params![flipped, seq as i64])
        .unwrap();
    true
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_flipped_byte_is_found_at_its_record(seq in 0u64..33, at in 0usize..4096, bit in 0u8..7) {
        let log = Log::new(30);
        prop_assume!(flip(&log, seq, at, bit));
        let db = log.data.join(DATABASE_FILE);
        let result = AuditLog::verify(&db, &log.data, None, &[]);
        match result {
            Err(gatehouse::audit::VerifyError::Failed(f)) => {
                prop_assert_eq!(f.class.exit_code() as i32, MODIFIED, "{}", f);
                prop_assert_eq!(f.seq, seq, "{}", f);
            }
            other => prop_assert!(false, "flip at seq {} went unnoticed: {:?}", seq, other),
        }
    }
}

#[test]
fn a_flipped_byte_is_reported_by_the_cli() {
    let log = Log::new(12);
    assert!(flip(&log, 5, 40, 1));
    assert_fails(log.verify(&[]), MODIFIED, 5);
}

#[test]
fn checkpoints_signed_before_a_key_rotation_still_verify() {
    let log = Log::new(15);
    let data = log.data.to_str().unwrap();
    let (_, old_key, _) = run_cli(&["audit", "key", "--data-dir", data], &[]);
    let (code, out, err) = run_cli(&["audit", "rotate-key", "--data-dir", data], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(old_key.trim()), "the key did not change: {out}");
    log.grow(15);
    let (_, new_key, _) = run_cli(&["audit", "key", "--data-dir", data], &[]);
    assert_ne!(old_key, new_key);
    let notes: Vec<String> = log
        .db()
        .prepare("SELECT note FROM audit_checkpoints ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key_id = |key: &str| key.trim().split('+').nth(1).unwrap().to_owned();
    let signed_by = |id: &str| {
        notes
            .iter()
            .filter(|n| {
                use base64::Engine;
                let sig = n.lines().last().unwrap().rsplit(' ').next().unwrap();
                let raw = base64::engine::general_purpose::STANDARD.decode(sig).unwrap();
                hex(&raw[..4]) == id
            })
            .count()
    };
    assert!(signed_by(&key_id(&old_key)) >= 1 && signed_by(&key_id(&new_key)) >= 1, "{notes:?}");
    let (code, text) = log.verify(&[]);
    assert_eq!(code, 0, "{text}");
    let rotated = log
        .db()
        .query_row("SELECT count(*) FROM audit_records WHERE kind = 'audit.key_rotated'", [], |r| r.get::<_, i64>(0))
        .unwrap();
    assert_eq!(rotated, 1);
}
