//! Staff accounts: creation, sign-in with password and TOTP, lockout after repeated failures,
//! and signed-in sessions with idle and absolute timeouts. Every outcome is audited.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use super::door_throttle::{DoorLimit, DoorThrottle, SummaryRecord, Verdict};
use super::policy::{Principal, Reason};
use super::{Caller, code, digest, new_secret, password, totp};
use crate::audit::{AuditError, AuditLog, EventKind, Object};
use crate::clock::Clock;
use crate::domain::{StaffId, StaffRole};
use crate::rate::RetryAfter;
use crate::store::{SessionRecord, StaffRecord, Store, StoreError};

/// A session unused for this long has ended.
pub const IDLE_TIMEOUT: SignedDuration = SignedDuration::from_mins(15);
/// A session ends this long after sign-in, however busy.
pub const ABSOLUTE_TIMEOUT: SignedDuration = SignedDuration::from_hours(8);
/// This many failures within [`FAILURE_WINDOW`] lock the account for [`LOCKOUT`].
pub const MAX_FAILURES: u32 = 10;
pub const FAILURE_WINDOW: SignedDuration = SignedDuration::from_mins(15);
pub const LOCKOUT: SignedDuration = SignedDuration::from_mins(15);

/// The issuer shown in authenticator apps.
const TOTP_ISSUER: &str = "Gatehouse";
const SESSION_PREFIX: &str = "ghs_";

#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    #[error("{}", .0.message())]
    Denied(Reason),
    /// Locked after repeated failures (the policy's `rate_limited`), until the lock lifts.
    #[error("This account is locked after too many failed sign-ins. Try again in {}.", .0.in_words())]
    RateLimited(RetryAfter),
    /// Too many failed sign-ins from the caller's address (also `rate_limited`), until its
    /// allowance refills.
    #[error("Too many failed sign-ins from this network. Try again in {}.", .0.in_words())]
    AddressLimited(RetryAfter),
    #[error("{0}")]
    Invalid(String),
    #[error("no staff account is called {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("the system random generator failed")]
    Random,
}

/// An account to create.
#[derive(Debug, Clone, Copy)]
pub struct NewStaff<'a> {
    pub username: &'a str,
    pub display_name: &'a str,
    pub role: StaffRole,
    /// Enrol a second factor even though the role does not require one.
    pub with_totp: bool,
}

/// A successful sign-in: the cookie value and the CSRF token go to the browser, once.
#[derive(Debug)]
pub struct SignedIn {
    pub session_token: String,
    pub csrf_token: String,
    pub staff: StaffRecord,
}

/// A signed-in staff member, as established from their session cookie.
#[derive(Debug, Clone)]
pub struct StaffSession {
    pub staff: StaffRecord,
    pub csrf_token: String,
}

impl StaffSession {
    pub fn principal(&self) -> Principal {
        Principal::Staff { id: self.staff.id, role: self.staff.role }
    }
}

#[derive(Clone)]
pub struct StaffAccounts {
    store: Arc<dyn Store>,
    audit: AuditLog,
    /// Failed sign-ins per source address. Every sign-in spends before anything is checked,
    /// so that sign-ins sent at once cannot all pass on one token, and a successful one gives
    /// it back: only failures count. Once an address has none left, its sign-ins are refused
    /// before any password is checked, until the bucket refills.
    sign_ins: Arc<DoorThrottle>,
}

impl std::fmt::Debug for StaffAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaffAccounts")
    }
}

/// The longest username an account may have.
const MAX_USERNAME_BYTES: usize = 64;
/// A TOTP code is six digits; a little room for spaces a person types between them.
const MAX_TOTP_BYTES: usize = 16;

fn username_ok(name: &str) -> bool {
    (3..=MAX_USERNAME_BYTES).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
}

impl StaffAccounts {
    pub fn new(store: Arc<dyn Store>, audit: AuditLog) -> Self {
        Self { store, audit, sign_ins: Arc::new(DoorThrottle::new(DoorLimit::STAFF, SummaryRecord::SIGN_IN_LIMITED)) }
    }

    /// The same accounts with `limit` on failed sign-ins per source address instead of the
    /// default.
    pub fn with_sign_in_limit(mut self, limit: DoorLimit) -> Self {
        self.sign_ins = Arc::new(DoorThrottle::new(limit, SummaryRecord::SIGN_IN_LIMITED));
        self
    }

    /// Records the summaries of sign-ins refused for their address's limit every second until
    /// `stop`, then all that are left.
    pub async fn run_sign_in_summaries(self, clock: Clock, stop: tokio_util::sync::CancellationToken) {
        self.sign_ins.clone().run_summaries(self.audit.clone(), clock, stop).await;
    }

    /// Creates an account. Returns the TOTP enrolment URI when a second factor was set up: always
    /// for security and admin, and for a scheduler when `with_totp`.
    pub fn create(
        &self,
        operator: &Caller,
        new: &NewStaff<'_>,
        password_text: &str,
        now: Timestamp,
    ) -> Result<(StaffRecord, Option<String>), StaffError> {
        let NewStaff { username, display_name, role, with_totp } = *new;
        if !username_ok(username) {
            return Err(StaffError::Invalid("the username must be 3 to 64 letters, digits or ._-@ characters".into()));
        }
        password::check_strength(password_text).map_err(|e| StaffError::Invalid(e.to_string()))?;
        let display_name = display_name.trim();
        if display_name.is_empty() || display_name.chars().count() > 100 || display_name.chars().any(char::is_control) {
            return Err(StaffError::Invalid("the display name must be 1 to 100 characters".into()));
        }
        let secret = (with_totp || role.requires_totp())
            .then(totp::TotpSecret::generate)
            .transpose()
            .map_err(|_| StaffError::Random)?;
        let record = StaffRecord {
            id: StaffId::new(),
            username: username.to_owned(),
            display_name: display_name.to_owned(),
            role,
            password_hash: password::hash_password(password_text).map_err(|e| StaffError::Invalid(e.to_string()))?,
            totp_secret: secret.as_ref().map(totp::TotpSecret::to_base32),
            totp_last_step: None,
            disabled: false,
            failed_sign_ins: 0,
            first_failure_at: None,
            locked_until: None,
            created_at: now.as_second(),
        };
        self.store.insert_staff(&record)?;
        self.audit.append_blocking(operator.event(EventKind::StaffCreated).with_object(staff_object(&record)))?;
        let uri = secret.map(|s| totp::enrolment_uri(&s, &record.username, TOTP_ISSUER));
        Ok((record, uri))
    }

    pub fn list(&self) -> Result<Vec<StaffRecord>, StaffError> {
        Ok(self.store.list_staff()?)
    }

    fn by_username(&self, username: &str) -> Result<StaffRecord, StaffError> {
        self.store.staff_by_username(username)?.ok_or_else(|| StaffError::NotFound(username.to_owned()))
    }

    /// Disables an account and ends its sessions.
    pub fn disable(&self, operator: &Caller, username: &str) -> Result<(), StaffError> {
        let mut record = self.by_username(username)?;
        record.disabled = true;
        self.store.update_staff(&record)?;
        self.store.delete_sessions_of(record.id)?;
        self.audit.append_blocking(operator.event(EventKind::StaffDisabled).with_object(staff_object(&record)))?;
        Ok(())
    }

    /// Replaces the account's TOTP secret (a lost phone) and returns the new enrolment URI.
    pub fn reset_totp(&self, operator: &Caller, username: &str) -> Result<String, StaffError> {
        let mut record = self.by_username(username)?;
        let secret = totp::TotpSecret::generate().map_err(|_| StaffError::Random)?;
        record.totp_secret = Some(secret.to_base32());
        record.totp_last_step = None;
        self.store.update_staff(&record)?;
        self.store.delete_sessions_of(record.id)?;
        self.audit.append_blocking(operator.event(EventKind::StaffTotpReset).with_object(staff_object(&record)))?;
        Ok(totp::enrolment_uri(&secret, &record.username, TOTP_ISSUER))
    }

    /// Signs in with password and, where enrolled, a TOTP code.
    pub fn sign_in(
        &self,
        caller: &Caller,
        username: &str,
        password_text: &str,
        totp_code: Option<&str>,
        now: Timestamp,
    ) -> Result<SignedIn, StaffError> {
        if let Some(ip) = caller.ip
            && let Verdict::Refused { record, retry_after } = self.sign_ins.attempt(ip, now)
        {
            // The first refusal of a run now, the rest in the address's next summary.
            if record {
                self.audit_failure(caller, None, Reason::RateLimited)?;
            }
            return Err(StaffError::AddressLimited(retry_after));
        }
        // Longer than any username, password or code this gateway issues or accepts: refused
        // unread, as any other wrong credential is.
        let too_long = username.len() > MAX_USERNAME_BYTES
            || password_text.len() > password::MAX_PASSWORD_BYTES
            || totp_code.is_some_and(|code| code.len() > MAX_TOTP_BYTES);
        if too_long {
            return Err(self.failed(caller, None, Reason::NotAuthenticated)?);
        }
        let Some(mut record) = self.store.staff_by_username(username)? else {
            // Same cost as a real check, so timing does not reveal which usernames exist.
            password::verify_against_dummy(password_text);
            return Err(self.failed(caller, None, Reason::NotAuthenticated)?);
        };
        let now_s = now.as_second();
        if let Some(until) = record.locked_until.filter(|until| *until > now_s) {
            self.audit_failure(caller, Some(&record), Reason::RateLimited)?;
            return Err(StaffError::RateLimited(RetryAfter::new(SignedDuration::from_secs(until - now_s))));
        }
        let password_ok = password::verify_password(password_text, &record.password_hash);
        let step = match (&record.totp_secret, totp_code) {
            (Some(secret), Some(code)) => totp::TotpSecret::from_base32(secret)
                .ok()
                .and_then(|s| totp::verify(&s, code, now_s.max(0) as u64, record.totp_last_step)),
            (Some(_), None) => None,
            // A role that needs a second factor cannot sign in without one enrolled.
            (None, _) if record.role.requires_totp() => None,
            (None, _) => Some(0),
        };
        if !password_ok || step.is_none() || record.disabled {
            if !record.disabled {
                self.count_failure(caller, &mut record, now)?;
            }
            return Err(self.failed(caller, Some(&record), Reason::NotAuthenticated)?);
        }
        if let Some(ip) = caller.ip {
            self.sign_ins.give_back(ip, now);
        }
        record.failed_sign_ins = 0;
        record.first_failure_at = None;
        record.locked_until = None;
        if record.totp_secret.is_some() {
            record.totp_last_step = step;
        }
        self.store.update_staff(&record)?;
        let session_token = new_secret(SESSION_PREFIX).map_err(|_| StaffError::Random)?;
        let csrf_token = new_secret("").map_err(|_| StaffError::Random)?;
        self.store.insert_session(
            &digest(&session_token),
            &SessionRecord {
                staff_id: record.id,
                csrf_token: csrf_token.clone(),
                created_at: now_s,
                last_seen_at: now_s,
            },
        )?;
        let signed_in = Caller::new(Principal::Staff { id: record.id, role: record.role }, caller.ip);
        self.audit.append_blocking(signed_in.event(EventKind::StaffSignedIn).with_object(staff_object(&record)))?;
        Ok(SignedIn { session_token, csrf_token, staff: record })
    }

    fn count_failure(&self, caller: &Caller, record: &mut StaffRecord, now: Timestamp) -> Result<(), StaffError> {
        let now_s = now.as_second();
        let window_start = record.first_failure_at.filter(|first| now_s - first < FAILURE_WINDOW.as_secs());
        record.first_failure_at = Some(window_start.unwrap_or(now_s));
        record.failed_sign_ins = if window_start.is_some() { record.failed_sign_ins + 1 } else { 1 };
        if record.failed_sign_ins >= MAX_FAILURES {
            record.locked_until = Some(now_s + LOCKOUT.as_secs());
            record.failed_sign_ins = 0;
            record.first_failure_at = None;
            self.audit.append_blocking(caller.refusal(
                EventKind::StaffLockedOut,
                Reason::RateLimited,
                staff_object(record),
            ))?;
        }
        self.store.update_staff(record)?;
        Ok(())
    }

    fn failed(&self, caller: &Caller, record: Option<&StaffRecord>, reason: Reason) -> Result<StaffError, StaffError> {
        self.audit_failure(caller, record, reason)?;
        Ok(StaffError::Denied(reason))
    }

    fn audit_failure(&self, caller: &Caller, record: Option<&StaffRecord>, reason: Reason) -> Result<(), StaffError> {
        let object = record.map(staff_object).unwrap_or_default();
        self.audit.append_blocking(caller.refusal(EventKind::StaffSignInFailed, reason, object))?;
        Ok(())
    }

    /// The signed-in staff member behind a session cookie, if the session is still current.
    pub fn authenticate(&self, session_token: &str, now: Timestamp) -> Result<Option<StaffSession>, StaffError> {
        if !session_token.starts_with(SESSION_PREFIX) || session_token.len() > 128 {
            return Ok(None);
        }
        let hash = digest(session_token);
        let Some(session) = self.store.session(&hash)? else { return Ok(None) };
        let now_s = now.as_second();
        let idle = now_s - session.last_seen_at >= IDLE_TIMEOUT.as_secs();
        let too_old = now_s - session.created_at >= ABSOLUTE_TIMEOUT.as_secs();
        let staff = self.store.staff_by_id(session.staff_id)?;
        match staff {
            Some(staff) if !idle && !too_old && !staff.disabled => {
                self.store.touch_session(&hash, now_s)?;
                Ok(Some(StaffSession { staff, csrf_token: session.csrf_token }))
            }
            _ => {
                self.store.delete_session(&hash)?;
                Ok(None)
            }
        }
    }

    pub fn sign_out(&self, session: &StaffSession, session_token: &str, caller: &Caller) -> Result<(), StaffError> {
        self.store.delete_session(&digest(session_token))?;
        self.audit
            .append_blocking(caller.event(EventKind::StaffSignedOut).with_object(staff_object(&session.staff)))?;
        Ok(())
    }
}

fn staff_object(record: &StaffRecord) -> Object {
    Object { staff: code(record.id), ..Object::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SqliteStore, StaffStore};

    #[test]
    fn a_locked_account_is_told_how_long_the_lock_has_left() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let audit = AuditLog::open(store.database_path(), dir.path()).unwrap();
        let accounts = StaffAccounts::new(store.clone(), audit);
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let caller = Caller::new(Principal::Anonymous, None);
        let new =
            NewStaff { username: "sched", display_name: "Scheduler", role: StaffRole::Scheduler, with_totp: false };
        let (mut record, _) = accounts.create(&caller, &new, "a long enough password", now).unwrap();
        // As the tenth failure in a row leaves it.
        record.locked_until = Some(now.as_second() + LOCKOUT.as_secs());
        store.update_staff(&record).unwrap();

        let five_minutes_on = now + SignedDuration::from_mins(5);
        let refused = accounts.sign_in(&caller, "sched", "a long enough password", None, five_minutes_on).unwrap_err();
        let StaffError::RateLimited(retry_after) = refused else { panic!("{refused:?}") };
        assert_eq!(retry_after, RetryAfter::new(SignedDuration::from_mins(10)));
        assert_eq!(retry_after.whole_seconds(), 600);
    }
}
