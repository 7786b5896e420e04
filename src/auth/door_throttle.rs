//! A limit per source address, and how the refusals it causes reach the audit log: the first
//! of a run is recorded as it happens, the rest as one summary per address per minute with
//! their number, so a flood cannot flood the log and every refusal is still accounted for.
//!
//! Each door decides what spends from an address's bucket and what an empty bucket means.
//! The join door spends on every attempt and refuses once empty; the lookups that valid
//! credentials make all day spend only on a refusal (see `schedule/throttle.rs`). Staff
//! sign-in spends up front and gives back on success, so only failures count however many
//! arrive at once (see `staff.rs`). Other refused requests only spend their right to a
//! record of their own: beyond the burst they are answered as before, and summarised.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

use super::Caller;
use super::policy::Principal;
use crate::audit::{AuditLog, Details, EventKind};
use crate::clock::Clock;
use crate::rate::{Rate, RetryAfter, TokenBucket};

/// At most one record of refused attempts per address per this long.
pub const SUMMARY_INTERVAL: SignedDuration = SignedDuration::from_secs(60);
/// The most addresses tracked at once; a flood from more than this many addresses is refused
/// from new addresses until the quiet ones are forgotten.
const MAX_SOURCES: usize = 50_000;

/// How often one source address may spend at a door: `burst` at once, then one every `refill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoorLimit {
    pub burst: u32,
    pub refill: SignedDuration,
}

impl DoorLimit {
    /// Join attempts: a burst of 30 (a ward of kiosks behind one address reconnecting
    /// together), then one every two seconds.
    pub const JOIN: Self = Self { burst: 30, refill: SignedDuration::from_secs(2) };
    /// Failed staff sign-ins: 20 at once (a hospital's staff
    /// behind one address mistyping through a morning), then one every 15 seconds. An account's
    /// own lockout stops guessing at one account sooner; this stops spraying guesses across
    /// many, each of which costs a password hash.
    pub const STAFF: Self = Self { burst: 20, refill: SignedDuration::from_secs(15) };
}

/// How a limit's summaries are recorded: the event kind and the reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryRecord {
    pub kind: EventKind,
    pub reason: &'static str,
}

impl SummaryRecord {
    /// Attempts refused for the address's limit, at a door anyone may knock on.
    pub const ACCESS_LIMITED: Self = Self { kind: EventKind::AccessDenied, reason: "rate_limited" };
    /// Staff sign-ins refused for the address's limit.
    pub const SIGN_IN_LIMITED: Self = Self { kind: EventKind::StaffSignInFailed, reason: "rate_limited" };
    /// Refusals answered as usual but beyond the address's share of records of their own.
    pub const REPEATED_REFUSALS: Self = Self { kind: EventKind::AccessDenied, reason: "repeated_refusals" };
}

/// What the door does with an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Refused; `record` says whether to audit this refusal now (the first of a run) or leave
    /// it to the address's next summary, and `retry_after` when the address may next try.
    Refused {
        record: bool,
        retry_after: RetryAfter,
    },
}

/// Refused attempts from one address not yet recorded one by one; no address for those
/// refused while too many addresses were being tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub ip: Option<IpAddr>,
    pub attempts: u64,
}

struct Source {
    bucket: TokenBucket,
    /// Refusals since the last record for this address, to go into its next summary.
    unrecorded: u64,
    /// When this address's refusals were last recorded.
    recorded_at: Option<Timestamp>,
}

/// The per-address limiter. A std mutex: held only for a map lookup.
pub struct DoorThrottle {
    /// What each address may spend.
    attempts: Rate,
    /// How its summaries are recorded.
    summarised_as: SummaryRecord,
    sources: Mutex<HashMap<IpAddr, Source>>,
    /// Refusals from addresses that could not be tracked, for the next summary.
    untracked: std::sync::atomic::AtomicU64,
}

impl DoorThrottle {
    pub fn new(limit: DoorLimit, summarised_as: SummaryRecord) -> Self {
        Self {
            attempts: Rate::every(limit.refill, limit.burst),
            summarised_as,
            sources: Mutex::default(),
            untracked: Default::default(),
        }
    }

    /// Spends one from the address's bucket: allowed if there was one to spend.
    pub fn attempt(&self, ip: IpAddr, now: Timestamp) -> Verdict {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if sources.len() >= MAX_SOURCES && !sources.contains_key(&ip) {
            forget_quiet(&mut sources, now);
            if sources.len() >= MAX_SOURCES {
                // Cannot track it, so it is counted in a summary without an address.
                tracing::warn!("too many addresses are being limited at once; refusing new ones");
                self.untracked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let retry_after = RetryAfter::new(until_one_forgotten(&mut sources, now));
                return Verdict::Refused { record: false, retry_after };
            }
        }
        let source = sources.entry(ip).or_insert_with(|| Source {
            bucket: TokenBucket::new(self.attempts, now),
            unrecorded: 0,
            recorded_at: None,
        });
        if source.bucket.take(now) {
            return Verdict::Allowed;
        }
        let retry_after = RetryAfter::new(source.bucket.until_next(now));
        let recently_recorded = source.recorded_at.is_some_and(|at| now.duration_since(at) < SUMMARY_INTERVAL);
        if recently_recorded || source.unrecorded > 0 {
            source.unrecorded += 1;
            Verdict::Refused { record: false, retry_after }
        } else {
            source.recorded_at = Some(now);
            Verdict::Refused { record: true, retry_after }
        }
    }

    /// Gives back what an attempt allowed from `ip` spent, for a door that spends up front
    /// (so that attempts made at once cannot all pass on one token) but counts only failures.
    pub fn give_back(&self, ip: IpAddr, now: Timestamp) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(source) = sources.get_mut(&ip) {
            source.bucket.give_back(now);
        }
    }

    /// The summaries due now (each address's unrecorded refusals, at most once per interval;
    /// all of them when `all`, at shutdown), marked as recorded. Addresses with nothing left
    /// to limit or record are forgotten.
    pub fn due_summaries(&self, now: Timestamp, all: bool) -> Vec<Summary> {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        let mut due = Vec::new();
        for (ip, source) in sources.iter_mut() {
            let interval_over = source.recorded_at.is_none_or(|at| now.duration_since(at) >= SUMMARY_INTERVAL);
            if source.unrecorded > 0 && (interval_over || all) {
                due.push(Summary { ip: Some(*ip), attempts: source.unrecorded });
                source.unrecorded = 0;
                source.recorded_at = Some(now);
            }
        }
        forget_quiet(&mut sources, now);
        let untracked = self.untracked.swap(0, std::sync::atomic::Ordering::Relaxed);
        if untracked > 0 {
            due.push(Summary { ip: None, attempts: untracked });
        }
        due
    }

    /// Puts back summaries that could not be recorded, to be tried again.
    pub fn restore(&self, summaries: &[Summary]) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        for summary in summaries {
            match summary.ip.and_then(|ip| sources.get_mut(&ip)) {
                Some(source) => {
                    source.unrecorded += summary.attempts;
                    source.recorded_at = None;
                }
                None => {
                    self.untracked.fetch_add(summary.attempts, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }

    /// Records the summaries due now (all of them when `all`) as this limit's summary
    /// records, each with its number of attempts. Those that cannot be recorded are kept for
    /// the next try.
    pub async fn record_summaries(&self, audit: &AuditLog, now: Timestamp, all: bool) {
        let record = self.summarised_as;
        let due = self.due_summaries(now, all);
        for (index, summary) in due.iter().enumerate() {
            let details = Details { attempts: Some(summary.attempts), ..Details::default() };
            let event = Caller::new(Principal::Anonymous, summary.ip)
                .event(record.kind)
                .refused(record.reason)
                .with_details(details);
            if let Err(e) = audit.append(event).await {
                tracing::error!(error = %e, "cannot record attempts refused for their address's limit; will retry");
                self.restore(&due[index..]);
                return;
            }
        }
    }

    /// Records due summaries every second until `stop`, then all that are left.
    pub async fn run_summaries(self: std::sync::Arc<Self>, audit: AuditLog, clock: Clock, stop: CancellationToken) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => self.record_summaries(&audit, clock(), false).await,
            }
        }
        self.record_summaries(&audit, clock(), true).await;
    }
}

/// Forgets addresses whose bucket is full and which have nothing waiting to be recorded.
fn forget_quiet(sources: &mut HashMap<IpAddr, Source>, now: Timestamp) {
    sources.retain(|_, source| source.unrecorded > 0 || !source.bucket.is_full(now));
}

/// How long until `forget_quiet` can forget one of the tracked addresses, making room for
/// another: the soonest that one's bucket is full again and its refusals have been summarised.
fn until_one_forgotten(sources: &mut HashMap<IpAddr, Source>, now: Timestamp) -> SignedDuration {
    let summarised_in = |source: &Source| match (source.unrecorded, source.recorded_at) {
        (0, _) | (_, None) => SignedDuration::ZERO,
        (_, Some(at)) => (at + SUMMARY_INTERVAL).duration_since(now).max(SignedDuration::ZERO),
    };
    sources
        .values_mut()
        .map(|source| source.bucket.until_full(now).max(summarised_in(source)))
        .min()
        .unwrap_or(SignedDuration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_refusals_is_recorded_once_then_summarised_per_interval() {
        let throttle = DoorThrottle::new(DoorLimit::JOIN, SummaryRecord::ACCESS_LIMITED);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let start = Timestamp::now();
        assert!((0..30).all(|_| throttle.attempt(ip, start) == Verdict::Allowed));
        let retry_after = RetryAfter::new(SignedDuration::from_secs(2));
        assert_eq!(throttle.attempt(ip, start), Verdict::Refused { record: true, retry_after });
        for _ in 0..9 {
            assert_eq!(throttle.attempt(ip, start), Verdict::Refused { record: false, retry_after });
        }
        assert_eq!(throttle.attempt(other, start), Verdict::Allowed, "other addresses are not affected");
        assert!(throttle.due_summaries(start + SignedDuration::from_secs(59), false).is_empty());
        let later = start + SignedDuration::from_secs(60);
        assert_eq!(throttle.due_summaries(later, false), [Summary { ip: Some(ip), attempts: 9 }]);
        assert!(throttle.due_summaries(later, true).is_empty(), "each refusal is summarised once");
        // Refilled after a minute: let in again, and forgotten once quiet.
        assert_eq!(throttle.attempt(ip, later), Verdict::Allowed);
        throttle.due_summaries(later + SignedDuration::from_mins(2), false);
        assert!(throttle.sources.lock().unwrap().is_empty());
    }

    #[test]
    fn what_is_given_back_can_be_spent_again() {
        let throttle = DoorThrottle::new(
            DoorLimit { burst: 2, refill: SignedDuration::from_secs(10) },
            SummaryRecord::ACCESS_LIMITED,
        );
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let start = Timestamp::now();
        for _ in 0..5 {
            assert_eq!(throttle.attempt(ip, start), Verdict::Allowed);
            throttle.give_back(ip, start);
        }
        assert!((0..2).all(|_| throttle.attempt(ip, start) == Verdict::Allowed));
        let retry_after = RetryAfter::new(SignedDuration::from_secs(10));
        assert_eq!(throttle.attempt(ip, start), Verdict::Refused { record: true, retry_after });
        // Never more than the burst, however much is given back.
        let later = start + SignedDuration::from_mins(5);
        (0..5).for_each(|_| throttle.give_back(ip, later));
        assert!((0..2).all(|_| throttle.attempt(ip, later) == Verdict::Allowed));
        assert!(matches!(throttle.attempt(ip, later), Verdict::Refused { .. }));
    }

    #[test]
    fn a_refusal_says_when_the_address_may_next_try() {
        let limit = DoorLimit { burst: 3, refill: SignedDuration::from_secs(10) };
        let throttle = DoorThrottle::new(limit, SummaryRecord::ACCESS_LIMITED);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let start = Timestamp::now();
        let refused_for = |at: Timestamp| match throttle.attempt(ip, at) {
            Verdict::Refused { retry_after, .. } => retry_after,
            Verdict::Allowed => panic!("let through at {at}"),
        };
        assert!((0..3).all(|_| throttle.attempt(ip, start) == Verdict::Allowed));
        assert_eq!(refused_for(start), RetryAfter::new(limit.refill), "a whole refill from empty");
        let later = start + SignedDuration::from_secs(4);
        assert_eq!(refused_for(later), RetryAfter::new(SignedDuration::from_secs(6)), "less as the bucket refills");
        assert_eq!(throttle.attempt(ip, later + SignedDuration::from_secs(6)), Verdict::Allowed, "and let in then");
    }

    #[test]
    fn an_address_beyond_those_tracked_is_told_when_room_is_made() {
        let throttle = DoorThrottle::new(
            DoorLimit { burst: 1, refill: SignedDuration::from_secs(10) },
            SummaryRecord::ACCESS_LIMITED,
        );
        let start = Timestamp::now();
        {
            let mut sources = throttle.sources.lock().unwrap();
            for n in 0..MAX_SOURCES {
                let ip = IpAddr::from(std::net::Ipv6Addr::from(n as u128 + 1));
                let mut bucket = TokenBucket::new(throttle.attempts, start);
                bucket.take(start);
                sources.insert(ip, Source { bucket, unrecorded: 0, recorded_at: None });
            }
        }
        let later = start + SignedDuration::from_secs(3);
        let newcomer: IpAddr = "192.0.2.9".parse().unwrap();
        let retry_after = RetryAfter::new(SignedDuration::from_secs(7));
        assert_eq!(throttle.attempt(newcomer, later), Verdict::Refused { record: false, retry_after });
        assert_eq!(throttle.attempt(newcomer, later + SignedDuration::from_secs(7)), Verdict::Allowed);
    }
}
