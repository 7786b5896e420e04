//! Crash safety: a child process appends in a loop and reports each acknowledged `seq`; it is
//! killed with SIGKILL at random moments. Every acknowledged record must survive, and the log
//! must still verify.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use gatehouse::audit::{Actor, AuditLog, Event, EventKind};
use gatehouse::store::{DATABASE_FILE, SqliteStore, Store};

use crate::support::run_cli;

const CHILD_ENV: &str = "GATEHOUSE_TEST_CRASH_CHILD_DIR";
const KILLS: usize = 20;

/// The child: appends from several threads until killed, printing `ack SEQ` after each
/// acknowledgement. Run only by the test below.
#[test]
#[ignore = "run as a child process by acknowledged_records_survive_sigkill"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let dir = std::path::PathBuf::from(dir);
    let store = SqliteStore::open(&dir).unwrap();
    let log = AuditLog::open(store.database_path(), &dir).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                loop {
                    let seq = log.append_blocking(Event::new(EventKind::AuditRead, Actor::Operator)).unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {seq}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    // A checkpoint now and then, so kills also land during signing.
    loop {
        std::thread::sleep(Duration::from_millis(20));
        log.checkpoint_blocking().unwrap();
        if threads.iter().all(|t| t.is_finished()) {
            break;
        }
    }
}

/// A small xorshift: random enough for kill timings, with no extra dependency.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut rng = (clock ^ (std::process::id() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
    let mut acked = Vec::new();
    for round in 0..KILLS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "audit_crash::crash_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(seq) = line.strip_prefix("ack ") {
                    let _ = tx.send(seq.parse::<u64>().unwrap());
                }
            }
        });
        // Wait for the first acknowledgement, then kill at a random moment.
        let first = rx.recv_timeout(Duration::from_secs(30)).expect("the child acknowledged nothing");
        acked.push(first);
        std::thread::sleep(Duration::from_millis(next(&mut rng) % 250));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        acked.extend(rx.try_iter());
        assert!(acked.len() > round, "round {round} acknowledged nothing");

        let conn = rusqlite::Connection::open(data.join(DATABASE_FILE)).unwrap();
        let count: i64 = conn.query_row("SELECT count(*) FROM audit_records", [], |r| r.get(0)).unwrap();
        let max_acked = *acked.iter().max().unwrap();
        assert!(
            count as u64 > max_acked,
            "round {round}: acknowledged seq {max_acked} but only {count} records survive"
        );
        let mut present = conn.prepare("SELECT 1 FROM audit_records WHERE seq = ?1").unwrap();
        for seq in &acked {
            assert!(present.exists([*seq as i64]).unwrap(), "round {round}: acknowledged seq {seq} was lost");
        }
        let (code, out, err) = run_cli(&["audit", "verify", "--data-dir", data.to_str().unwrap()], &[]);
        assert_eq!(code, 0, "round {round}: verify failed after SIGKILL: {out}{err}");
    }
}
