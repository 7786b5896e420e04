//! The join door's use of the per-address limit (`auth::door_throttle`): every join attempt
//! spends from an address's bucket, and so does every credential refused at a lookup that
//! valid credentials make all day (every kiosk of a ward behind one address polls every 5 s,
//! so only a refusal spends there: counting every lookup would turn a ward's own kiosks away).
//! Other refused requests that anyone can send have a bucket of their own, which limits only
//! how many of them are recorded one by one.
use std::net::IpAddr;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::{Schedule, ScheduleError};
use crate::audit::{Event, EventKind, Object};
use crate::auth::Caller;
use crate::auth::door_throttle::Verdict;
use crate::auth::policy::{self, Action, Credential, Decision, Principal, Reason, Request};
use crate::clock::Clock;
use crate::rate::RetryAfter;

/// Which kind of door a credential was presented at: how its refusal counts against the
/// address's limit.
#[derive(Debug, Clone, Copy)]
pub(super) enum Door {
    /// A join, whose attempt was counted before the credential was looked at.
    Join,
    /// A lookup that valid credentials make all day (the kiosk's poll, the device check) at
    /// this time: only its refusal counts.
    Lookup(Timestamp),
}

impl Schedule {
    /// Counts a join attempt from `ip` (None: not from the network) against its limit. A
    /// refusal is the policy's `rate_limited`, audited now or in the address's next summary.
    pub(super) fn door_attempt(&self, ip: Option<IpAddr>, now: Timestamp) -> Result<(), ScheduleError> {
        let Some(ip) = ip else { return Ok(()) };
        match self.throttle.attempt(ip, now) {
            Verdict::Allowed => Ok(()),
            Verdict::Refused { record, retry_after } => {
                self.rate_limited(ip, record, retry_after, now).map_or(Ok(()), Err)
            }
        }
    }

    /// Refuses a credential presented at `door`, audited as `kind` with `reason`. At a lookup
    /// the refusal spends from the address's bucket: while there was a token to spend it is
    /// answered on its merits and recorded one by one; once the bucket is empty it becomes
    /// `rate_limited`, recorded at once or in the address's next summary.
    ///
    /// The credential is still checked once the bucket is empty, and a valid one still
    /// answered: only checking it tells a valid one from the rest, and refusing it unchecked
    /// would refuse the real kiosks of a ward that shares its address with whoever emptied the
    /// bucket. Checking is cheap (a SHA-256 and an indexed lookup, or an Ed25519 verification
    /// for a link), and the credentials are 256-bit secrets or signed tokens that cannot be
    /// guessed, so what the limit must save is not the check but a record per attempt in the
    /// audit log and the differing answers (unknown, revoked, forged) a prober would learn
    /// from. Both are saved: beyond the burst every refusal is the same 429, and summarised.
    pub(super) fn refuse_at(
        &self,
        door: Door,
        caller: &Caller,
        kind: EventKind,
        reason: Reason,
        object: Object,
    ) -> ScheduleError {
        if let (Door::Lookup(now), Some(ip)) = (door, caller.ip)
            && let Verdict::Refused { record, retry_after } = self.throttle.attempt(ip, now)
            && let Some(limited) = self.rate_limited(ip, record, retry_after, now)
        {
            return limited;
        }
        self.refuse(caller, kind, reason, object)
    }

    /// Records `refusal`, a request refused where anyone may ask: a staff request without a
    /// valid session, token or CSRF token, signalling opened from another site's page, or a
    /// connection cut off before its join. Each address has a share of records of their own
    /// (the join limit's numbers, in a bucket of its own); beyond it the refusals are counted
    /// into the address's summary instead, so that a flood of bad requests cannot flood the
    /// audit log. The answer is the same either way: these checks are cheap, and refusing
    /// more would let any web page that the people behind an address open shut them out.
    pub fn refuse_request(&self, ip: Option<IpAddr>, refusal: Event, now: Timestamp) -> Result<(), ScheduleError> {
        let record = match ip.map(|ip| self.refusals.attempt(ip, now)) {
            None | Some(Verdict::Allowed) => true,
            Some(Verdict::Refused { record, .. }) => record,
        };
        if record {
            self.audit.append_blocking(refusal)?;
        }
        Ok(())
    }

    /// The policy's refusal of an address that tried too often, audited now when `record`
    /// (the first of a run) and otherwise left to the address's next summary; None if the
    /// policy lets it through after all. Its `rate_limited` tells when to try again.
    fn rate_limited(&self, ip: IpAddr, record: bool, retry_after: RetryAfter, now: Timestamp) -> Option<ScheduleError> {
        let request = Request {
            principal: &Principal::Anonymous,
            action: Action::Join,
            appointment: None,
            credential: Credential::Valid,
            rate_limited: true,
            now,
        };
        let Decision::Deny(reason) = policy::decide(&request) else { return None };
        let refused = if record {
            let anonymous = Caller::new(Principal::Anonymous, Some(ip));
            self.refuse(&anonymous, EventKind::AccessDenied, reason, Object::default())
        } else {
            ScheduleError::Denied(reason)
        };
        Some(match refused {
            ScheduleError::Denied(Reason::RateLimited) => ScheduleError::RateLimited(retry_after),
            other => other,
        })
    }

    /// Records the summaries of the join door's refusals, and of refused requests beyond their
    /// address's share of records, every second until `stop`, then all that are left.
    pub async fn run_door_summaries(self, clock: Clock, stop: CancellationToken) {
        let refusals = self.refusals.clone().run_summaries(self.audit.clone(), clock.clone(), stop.clone());
        let attempts = self.throttle.clone().run_summaries(self.audit.clone(), clock, stop);
        tokio::join!(attempts, refusals);
    }
}
