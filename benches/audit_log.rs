//! Audit log throughput: durable appends per second with 1 and 64 concurrent writers, and
//! verification speed over 1,000,000 records. Run with `cargo bench --bench audit_log`.
//! Prints one line per figure; docs/BENCHMARKS.md records them.

use std::sync::Arc;
use std::time::Instant;

use gatehouse::audit::{Actor, AuditLog, Code, Details, Event, EventKind, Object};
use gatehouse::store::{SqliteStore, Store};

fn event(i: u64) -> Event {
    Event::new(EventKind::AuditRead, Actor::ApiToken { id: Code::new(format!("token-{}", i % 97)).unwrap() })
        .from_ip([10, 0, (i % 250) as u8, 7].into())
        .with_object(Object { room: Some(Code::new(format!("room-{}", i % 13)).unwrap()), ..Object::default() })
        .with_details(Details { records: Some(i), ..Details::default() })
}

fn open(dir: &std::path::Path) -> AuditLog {
    let store = SqliteStore::open(dir).unwrap();
    AuditLog::open(store.database_path(), dir).unwrap()
}

/// Appends `per_writer` events from each of `writers` threads; returns appends per second.
fn durable_appends(writers: u64, per_writer: u64) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path()));
    let started = Instant::now();
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..per_writer {
                    log.append_blocking(event(w * per_writer + i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (writers * per_writer) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not, and gets a quick
    // smoke run of the same code instead of the full measurement. A name filter may follow.
    let full = std::env::args().any(|a| a == "--bench");
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let scale = if full { 1 } else { 100 };

    if wanted("append") {
        for (writers, per_writer) in [(1, 2_000 / scale), (64, 1_000 / scale)] {
            let rate = durable_appends(writers, per_writer);
            println!("durable appends, {writers} writer(s): {rate:.0} records/s ({} records)", writers * per_writer);
        }
    }

    if wanted("verify") {
        let total: u64 =
            std::env::var("AUDIT_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000 / scale);
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        let started = Instant::now();
        // Many appends in flight at once so the writer commits large batches.
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
        runtime.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for chunk in 0..64 {
                let log = log.clone();
                set.spawn(async move {
                    let mut i = chunk;
                    let mut pending = Vec::with_capacity(64);
                    while i < total {
                        pending.push(log.append(event(i)));
                        i += 64;
                        if pending.len() == 64 {
                            for append in pending.drain(..) {
                                append.await.unwrap();
                            }
                        }
                    }
                    for append in pending {
                        append.await.unwrap();
                    }
                });
                if chunk % 8 == 7 {
                    tokio::task::yield_now().await;
                }
            }
            while set.join_next().await.is_some() {}
            log.checkpoint().await.unwrap();
        });
        println!("bulk load: {total} records in {:.1} s", started.elapsed().as_secs_f64());
        drop(log);
        let db = dir.path().join(gatehouse::store::DATABASE_FILE);
        let started = Instant::now();
        let summary = AuditLog::verify(&db, dir.path(), None, &[]).unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "verify: {} records in {elapsed:.2} s = {:.0} records/s",
            summary.records,
            summary.records as f64 / elapsed
        );
    }
}
