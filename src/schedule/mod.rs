//! Rooms, appointments and lockdowns: booking, rescheduling, cancelling, enrolling rooms and
//! putting rooms or sites in lockdown. Every operation asks the policy first and is audited,
//! refusals included. Time is passed in; this module knows nothing of WebRTC or HTTP.

mod links;
mod throttle;
pub mod validate;

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::broadcast;

use crate::audit::{AuditError, AuditLog, EventKind, Object};
use crate::auth::door_throttle::{DoorLimit, DoorThrottle, SummaryRecord};
use crate::auth::links::LinkKeys;
use crate::auth::policy::{self, Action, AppointmentFacts, Credential, Decision, Principal, Reason, Request, Status};
use crate::auth::{Caller, code, device};
use crate::domain::{
    Appointment, AppointmentId, AppointmentStatus, Guest, GuestKind, Lockdown, LockdownScope, ParticipantId, Room,
    RoomId, StaffId, Window,
};
use crate::rate::RetryAfter;
use crate::store::{AppointmentFilter, LockdownRecord, Store, StoreError};
pub use links::{Admission, DeviceCheckCredential, IssuedLink, LinkContext};
pub use validate::Invalid;

/// The window allowances, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct WindowSettings {
    /// How long before the start joining opens.
    pub early_join: SignedDuration,
    /// How long after the booked end the session may run before it ends for everyone.
    pub overrun: SignedDuration,
}

impl Default for WindowSettings {
    fn default() -> Self {
        Self { early_join: SignedDuration::from_mins(15), overrun: SignedDuration::from_mins(10) }
    }
}

/// Something that changed which may end live connections: the session layer re-asks the
/// policy for everyone it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Appointment(AppointmentId),
    Room(RoomId),
    Site(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("{}", .0.message())]
    Denied(Reason),
    /// The policy's `rate_limited`, with when the caller may next try.
    #[error("{}", .0.message())]
    RateLimited(RetryAfter),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("the room is already booked then")]
    Clash(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Store(StoreError),
    #[error("the system random generator failed")]
    Random,
}

impl From<StoreError> for ScheduleError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Clash(id) => Self::Clash(id),
            StoreError::Conflict(message) => Self::Conflict(message),
            other => Self::Store(other),
        }
    }
}

/// A new booking as a scheduler enters it.
#[derive(Debug, Clone)]
pub struct NewAppointment {
    pub room: RoomId,
    pub start: Timestamp,
    pub end: Timestamp,
    pub clinician_name: String,
    pub clinician_email: String,
    pub patient_pseudonym: String,
    pub escort_name: String,
    pub guests: Vec<(String, GuestKind)>,
}

/// An appointment with what follows from the time and from lockdowns.
#[derive(Debug, Clone)]
pub struct AppointmentView {
    pub appointment: Appointment,
    pub room: Room,
    pub window: Window,
    /// The lockdown covering it, if any: it then shows as cancelled with this reason.
    pub lockdown: Option<Lockdown>,
}

impl AppointmentView {
    /// The status a person should see: `open` while joining is open, `cancelled` during a
    /// lockdown, otherwise the stored status.
    pub fn effective_status(&self, now: Timestamp) -> &'static str {
        use crate::domain::WindowPosition::*;
        if self.lockdown.is_some() && self.appointment.status.holds_room() {
            return "cancelled";
        }
        match (&self.appointment.status, self.window.position(now)) {
            (AppointmentStatus::Booked, Early | During | Overrun) => "open",
            (AppointmentStatus::Booked, After) => "ended",
            (status, _) => status.code(),
        }
    }

    /// The reason shown for a cancellation or termination, or the lockdown's.
    pub fn status_reason(&self) -> Option<&str> {
        match (&self.lockdown, &self.appointment.status) {
            (Some(l), AppointmentStatus::Booked) => Some(&l.reason),
            (_, AppointmentStatus::Cancelled { reason } | AppointmentStatus::Terminated { reason }) => Some(reason),
            _ => None,
        }
    }

    /// What the policy needs to know about it.
    pub fn facts(&self) -> AppointmentFacts {
        AppointmentFacts {
            id: self.appointment.id,
            room: self.appointment.room,
            status: match self.appointment.status {
                AppointmentStatus::Booked => Status::Booked,
                AppointmentStatus::Cancelled { .. } => Status::Cancelled,
                AppointmentStatus::Ended | AppointmentStatus::Terminated { .. } => Status::Ended,
            },
            window: self.window,
            locked_down: self.lockdown.is_some(),
        }
    }
}

/// The scheduling service.
#[derive(Clone)]
pub struct Schedule {
    store: Arc<dyn Store>,
    audit: AuditLog,
    settings: WindowSettings,
    /// Subscribers (live sessions) learn of changes at once, so revocations and lockdowns end
    /// connections within a second.
    changes: broadcast::Sender<Change>,
    /// Signs and verifies join links.
    links: Arc<LinkKeys>,
    /// Attempts per source address, shared by every door (HTTP and signalling): every join
    /// attempt spends from it, and every credential refused at a lookup (see `throttle.rs`).
    throttle: Arc<DoorThrottle>,
    /// Records of other refused requests per source address: beyond its burst, an address's
    /// refusals are still answered but only summarised (see `throttle.rs`).
    refusals: Arc<DoorThrottle>,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedule").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Schedule {
    pub fn new(store: Arc<dyn Store>, audit: AuditLog, settings: WindowSettings, links: Arc<LinkKeys>) -> Self {
        let (changes, _) = broadcast::channel(256);
        let throttle = Arc::new(DoorThrottle::new(DoorLimit::JOIN, SummaryRecord::ACCESS_LIMITED));
        let refusals = Arc::new(DoorThrottle::new(DoorLimit::JOIN, SummaryRecord::REPEATED_REFUSALS));
        Self { store, audit, settings, changes, links, throttle, refusals }
    }

    /// The same service with `limit` on join attempts per source address instead of the
    /// default, and the same share of records of other refused requests.
    pub fn with_join_limit(mut self, limit: DoorLimit) -> Self {
        self.throttle = Arc::new(DoorThrottle::new(limit, SummaryRecord::ACCESS_LIMITED));
        self.refusals = Arc::new(DoorThrottle::new(limit, SummaryRecord::REPEATED_REFUSALS));
        self
    }

    pub fn settings(&self) -> WindowSettings {
        self.settings
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    fn announce(&self, change: Change) {
        // No subscriber simply means no live session to tell.
        let _ = self.changes.send(change);
    }

    /// Asks the policy (the operator at the console needs no permission); a refusal is audited
    /// before it is returned.
    pub fn authorize(
        &self,
        caller: &Caller,
        action: Action,
        view: Option<&AppointmentView>,
        credential: Credential,
        now: Timestamp,
    ) -> Result<(), ScheduleError> {
        // The operator at the gateway's console holds the data folder itself: the policy is
        // about everyone who reaches the gateway over the network.
        if caller.is_console() {
            return Ok(());
        }
        let facts = view.map(AppointmentView::facts);
        let request = Request {
            principal: &caller.principal,
            action,
            appointment: facts.as_ref(),
            credential,
            rate_limited: false,
            now,
        };
        match policy::decide(&request) {
            Decision::Allow => Ok(()),
            Decision::Deny(reason) => {
                let object = view.map(|v| object_of(&v.appointment)).unwrap_or_default();
                let kind = match (&caller.principal, action) {
                    (policy::Principal::Link { .. }, Action::Join) => EventKind::LinkRefused,
                    _ => EventKind::AccessDenied,
                };
                self.audit.append_blocking(caller.refusal(kind, reason, object))?;
                Err(ScheduleError::Denied(reason))
            }
        }
    }

    /// Audits a refusal decided outside the policy (for example an unknown credential).
    pub fn refuse(&self, caller: &Caller, kind: EventKind, reason: Reason, object: Object) -> ScheduleError {
        match self.audit.append_blocking(caller.refusal(kind, reason, object)) {
            Ok(_) => ScheduleError::Denied(reason),
            Err(e) => e.into(),
        }
    }

    fn record(&self, caller: &Caller, kind: EventKind, object: Object) -> Result<(), ScheduleError> {
        self.audit.append_blocking(caller.event(kind).with_object(object))?;
        Ok(())
    }

    // --- Rooms -----------------------------------------------------------------------------

    /// Enrols a room and returns its device credential, shown once.
    pub fn enrol_room(
        &self,
        caller: &Caller,
        site: &str,
        name: &str,
        timezone: &str,
        now: Timestamp,
    ) -> Result<(Room, String), ScheduleError> {
        self.authorize(caller, Action::EnrolRoom, None, Credential::Valid, now)?;
        let room = Room {
            id: RoomId::new(),
            site: validate::text("site", site, 100)?,
            name: validate::text("name", name, 100)?,
            timezone: validate::timezone(timezone)?,
            device_active: true,
        };
        let (secret, hash) = device::issue().map_err(|_| ScheduleError::Random)?;
        self.store.insert_room(&room, &hash, now.as_second())?;
        self.record(caller, EventKind::RoomEnrolled, Object { room: code(room.id), ..Object::default() })?;
        Ok((room, secret))
    }

    /// Issues a new device credential for a room, replacing (and so revoking) the old one.
    pub fn replace_device(&self, caller: &Caller, room: RoomId, now: Timestamp) -> Result<String, ScheduleError> {
        self.authorize(caller, Action::EnrolRoom, None, Credential::Valid, now)?;
        self.room(room)?;
        let (secret, hash) = device::issue().map_err(|_| ScheduleError::Random)?;
        self.store.set_room_device(room, Some(&hash), now.as_second())?;
        self.record(caller, EventKind::RoomDeviceReplaced, Object { room: code(room), ..Object::default() })?;
        self.announce(Change::Room(room));
        Ok(secret)
    }

    pub fn revoke_device(&self, caller: &Caller, room: RoomId, now: Timestamp) -> Result<(), ScheduleError> {
        self.authorize(caller, Action::RevokeRoom, None, Credential::Valid, now)?;
        self.room(room)?;
        self.store.set_room_device(room, None, now.as_second())?;
        self.record(caller, EventKind::RoomDeviceRevoked, Object { room: code(room), ..Object::default() })?;
        self.announce(Change::Room(room));
        Ok(())
    }

    pub fn rooms(&self, caller: &Caller, now: Timestamp) -> Result<Vec<Room>, ScheduleError> {
        self.authorize(caller, Action::ViewSchedule, None, Credential::Valid, now)?;
        Ok(self.store.rooms()?)
    }

    pub fn room(&self, id: RoomId) -> Result<Room, ScheduleError> {
        self.store.room(id)?.ok_or(ScheduleError::NotFound("room"))
    }

    /// The room a device credential belongs to, if the credential is current.
    pub fn room_by_device(&self, presented: &str) -> Result<Option<Room>, ScheduleError> {
        match device::lookup_hash(presented) {
            Some(hash) => Ok(self.store.room_by_device(&hash)?),
            None => Ok(None),
        }
    }

    // --- Appointments ------------------------------------------------------------------------

    /// An appointment with its room, window and any lockdown covering it.
    pub fn view(&self, id: AppointmentId) -> Result<AppointmentView, ScheduleError> {
        let appointment = self.store.appointment(id)?.ok_or(ScheduleError::NotFound("appointment"))?;
        self.view_of(appointment)
    }

    fn view_of(&self, appointment: Appointment) -> Result<AppointmentView, ScheduleError> {
        let room = self.room(appointment.room)?;
        let lockdown = self.lockdown_covering(&room)?;
        let window = Window::of(&appointment, self.settings.early_join, self.settings.overrun);
        Ok(AppointmentView { appointment, room, window, lockdown })
    }

    fn lockdown_covering(&self, room: &Room) -> Result<Option<Lockdown>, ScheduleError> {
        Ok(self.store.active_lockdowns()?.into_iter().map(|r| r.lockdown).find(|l| l.covers(room)))
    }

    pub fn book(&self, caller: &Caller, new: NewAppointment, now: Timestamp) -> Result<AppointmentView, ScheduleError> {
        // Who may book at all is asked before anything they sent is read: someone who may not
        // book is refused (and audited) alike whatever the booking says, and learns nothing of
        // rooms or checks. The policy asks again below with the booking as it would be.
        self.authorize(caller, Action::Book, None, Credential::Valid, now)?;
        let room = self.room(new.room)?;
        let (start, end) = (validate::whole_seconds(new.start), validate::whole_seconds(new.end));
        validate::times(start, end, now)?;
        let booked_by = match &caller.principal {
            policy::Principal::Staff { id, .. } => *id,
            _ => StaffId(uuid::Uuid::nil()),
        };
        let appointment = Appointment {
            id: AppointmentId::new(),
            room: room.id,
            start,
            end,
            clinician_id: ParticipantId::new(),
            clinician_name: validate::text("clinician_name", &new.clinician_name, 100)?,
            clinician_email: validate::email("clinician_email", &new.clinician_email)?,
            patient_pseudonym: validate::pseudonym(&new.patient_pseudonym)?,
            escort_name: validate::text("escort_name", &new.escort_name, 100)?,
            guests: new
                .guests
                .iter()
                .map(|(name, kind)| {
                    Ok(Guest {
                        id: ParticipantId::new(),
                        display_name: validate::text("guests", name, 100)?,
                        kind: *kind,
                    })
                })
                .collect::<Result<_, Invalid>>()?,
            status: AppointmentStatus::Booked,
            booked_by,
        };
        if appointment.guests.len() > 4 {
            return Err(Invalid { field: "guests", message: "at most 4 guests".into() }.into());
        }
        // The policy sees the booking as it would be, so a lockdown or a past window refuses it.
        let view = AppointmentView {
            window: Window::of(&appointment, self.settings.early_join, self.settings.overrun),
            lockdown: self.lockdown_covering(&room)?,
            appointment,
            room,
        };
        self.authorize(caller, Action::Book, Some(&view), Credential::Valid, now)?;
        self.store.insert_appointment(&view.appointment, now.as_second())?;
        self.record(caller, EventKind::AppointmentBooked, object_of(&view.appointment))?;
        Ok(view)
    }

    pub fn reschedule(
        &self,
        caller: &Caller,
        id: AppointmentId,
        start: Timestamp,
        end: Timestamp,
        now: Timestamp,
    ) -> Result<AppointmentView, ScheduleError> {
        let view = self.view(id)?;
        self.authorize(caller, Action::Reschedule, Some(&view), Credential::Valid, now)?;
        let (start, end) = (validate::whole_seconds(start), validate::whole_seconds(end));
        validate::times(start, end, now)?;
        self.store.reschedule(id, start, end, now.as_second())?;
        self.record(caller, EventKind::AppointmentRescheduled, object_of(&view.appointment))?;
        self.announce(Change::Appointment(id));
        self.view(id)
    }

    pub fn cancel(
        &self,
        caller: &Caller,
        id: AppointmentId,
        reason: &str,
        now: Timestamp,
    ) -> Result<AppointmentView, ScheduleError> {
        let view = self.view(id)?;
        self.authorize(caller, Action::Cancel, Some(&view), Credential::Valid, now)?;
        let reason = validate::text("reason", reason, 200)?;
        self.store.set_status(id, &AppointmentStatus::Cancelled { reason }, now.as_second())?;
        self.record(caller, EventKind::AppointmentCancelled, object_of(&view.appointment))?;
        self.announce(Change::Appointment(id));
        self.view(id)
    }

    pub fn get(&self, caller: &Caller, id: AppointmentId, now: Timestamp) -> Result<AppointmentView, ScheduleError> {
        let view = self.view(id)?;
        self.authorize(caller, Action::ViewSchedule, Some(&view), Credential::Valid, now)?;
        Ok(view)
    }

    pub fn list(
        &self,
        caller: &Caller,
        filter: &AppointmentFilter,
        now: Timestamp,
    ) -> Result<Vec<AppointmentView>, ScheduleError> {
        self.authorize(caller, Action::ViewSchedule, None, Credential::Valid, now)?;
        let rooms = self.store.rooms()?;
        let lockdowns = self.store.active_lockdowns()?;
        let mut out = Vec::new();
        for appointment in self.store.appointments(filter)? {
            let Some(room) = rooms.iter().find(|r| r.id == appointment.room).cloned() else { continue };
            let lockdown = lockdowns.iter().map(|r| &r.lockdown).find(|l| l.covers(&room)).cloned();
            let window = Window::of(&appointment, self.settings.early_join, self.settings.overrun);
            out.push(AppointmentView { appointment, room, window, lockdown });
        }
        Ok(out)
    }

    // --- Lockdowns ---------------------------------------------------------------------------

    pub fn place_lockdown(
        &self,
        caller: &Caller,
        scope: LockdownScope,
        reason: &str,
        now: Timestamp,
    ) -> Result<LockdownRecord, ScheduleError> {
        self.authorize(caller, Action::Lockdown, None, Credential::Valid, now)?;
        let reason = validate::text("reason", reason, 200)?;
        let placed_by = match &caller.principal {
            policy::Principal::Staff { id, .. } => *id,
            _ => return Err(ScheduleError::Denied(Reason::RoleForbidden)),
        };
        let object = match &scope {
            LockdownScope::Room(room) => {
                self.room(*room)?;
                Object { room: code(room), ..Object::default() }
            }
            LockdownScope::Site(site) => {
                let site = validate::text("site", site, 100)?;
                if !self.store.rooms()?.iter().any(|r| r.site == site) {
                    return Err(ScheduleError::NotFound("site"));
                }
                Object::default()
            }
        };
        let record = LockdownRecord {
            id: uuid::Uuid::now_v7(),
            lockdown: Lockdown { scope: scope.clone(), reason, since: now },
            placed_by,
        };
        self.store.insert_lockdown(&record)?;
        let object = Object { credential: code(record.id), ..object };
        self.record(caller, EventKind::LockdownPlaced, object)?;
        self.announce(match scope {
            LockdownScope::Room(room) => Change::Room(room),
            LockdownScope::Site(site) => Change::Site(site),
        });
        Ok(record)
    }

    pub fn lift_lockdown(&self, caller: &Caller, id: uuid::Uuid, now: Timestamp) -> Result<(), ScheduleError> {
        self.authorize(caller, Action::Lockdown, None, Credential::Valid, now)?;
        let by = match &caller.principal {
            policy::Principal::Staff { id, .. } => *id,
            _ => return Err(ScheduleError::Denied(Reason::RoleForbidden)),
        };
        if !self.store.lift_lockdown(id, by, now.as_second())? {
            return Err(ScheduleError::NotFound("lockdown in force"));
        }
        self.record(caller, EventKind::LockdownLifted, Object { credential: code(id), ..Object::default() })?;
        Ok(())
    }

    pub fn lockdowns(&self, caller: &Caller, now: Timestamp) -> Result<Vec<LockdownRecord>, ScheduleError> {
        self.authorize(caller, Action::ViewSchedule, None, Credential::Valid, now)?;
        Ok(self.store.active_lockdowns()?)
    }

    /// Records how a consultation ended (ended by the clinician or at its hard end, or
    /// terminated by security) and tells live sessions.
    pub fn mark_ended(
        &self,
        id: AppointmentId,
        status: AppointmentStatus,
        now: Timestamp,
    ) -> Result<(), ScheduleError> {
        self.store.set_status(id, &status, now.as_second())?;
        self.announce(Change::Appointment(id));
        Ok(())
    }

    /// The state of a participant's credential now: revoked links and room devices end live
    /// connections.
    pub fn credential_state(&self, principal: &Principal) -> Result<Credential, ScheduleError> {
        Ok(match principal {
            Principal::Link { link, .. } => match self.store.link(*link)? {
                Some(record) if record.revoked_at.is_none() => Credential::Valid,
                _ => Credential::Revoked,
            },
            // Valid only while the credential the kiosk presented is still the room's own:
            // replacing it ends a kiosk connected on the old one, as revoking does.
            Principal::Room { room, device } => match self.store.room_by_device(&device.0)? {
                Some(current) if current.id == *room => Credential::Valid,
                _ => Credential::Revoked,
            },
            _ => Credential::Valid,
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Tells live sessions that something about `change` is different now.
    pub fn changed(&self, change: Change) {
        self.announce(change);
    }
}

/// The audit object for an appointment.
pub fn object_of(appointment: &Appointment) -> Object {
    Object { appointment: code(appointment.id), room: code(appointment.room), ..Object::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::policy::Principal;
    use crate::domain::StaffRole;
    use crate::store::SqliteStore;

    fn schedule(dir: &std::path::Path) -> Schedule {
        let store = Arc::new(SqliteStore::open(dir).unwrap());
        let audit = AuditLog::open(store.database_path(), dir).unwrap();
        let links = Arc::new(LinkKeys::load(dir).unwrap());
        Schedule::new(store, audit, WindowSettings::default(), links)
    }

    /// Live sessions rely on hearing of every change that could end a connection.
    #[test]
    fn changes_that_can_end_live_connections_are_announced() {
        let dir = tempfile::tempdir().unwrap();
        let schedule = schedule(dir.path());
        let mut changes = schedule.subscribe();
        let now = Timestamp::now();
        let scheduler = Caller::new(Principal::Staff { id: StaffId::new(), role: StaffRole::Scheduler }, None);
        let security = Caller::new(Principal::Staff { id: StaffId::new(), role: StaffRole::Security }, None);
        let (room, _) = schedule.enrol_room(&scheduler, "HMP A", "Room", "Europe/London", now).unwrap();
        let new = NewAppointment {
            room: room.id,
            start: now,
            end: now + SignedDuration::from_mins(30),
            clinician_name: "Dr A".into(),
            clinician_email: "a@b.nhs.uk".into(),
            patient_pseudonym: "PT-1A".into(),
            escort_name: "Nurse B".into(),
            guests: vec![],
        };
        let view = schedule.book(&scheduler, new, now).unwrap();
        let id = view.appointment.id;
        let link = schedule.issue_link(&scheduler, id, view.appointment.clinician_id, now).unwrap();
        assert_eq!(changes.try_recv().unwrap(), Change::Appointment(id));
        schedule.revoke_link(&scheduler, link.record.id, now).unwrap();
        assert_eq!(changes.try_recv().unwrap(), Change::Appointment(id));
        schedule.revoke_device(&scheduler, room.id, now).unwrap();
        assert_eq!(changes.try_recv().unwrap(), Change::Room(room.id));
        schedule.place_lockdown(&security, LockdownScope::Site("HMP A".into()), "Drill", now).unwrap();
        assert_eq!(changes.try_recv().unwrap(), Change::Site("HMP A".into()));
        schedule.cancel(&scheduler, id, "Moved", now).unwrap();
        assert_eq!(changes.try_recv().unwrap(), Change::Appointment(id));
        // And the policy, asked again for the live participant, now says no.
        let view = schedule.view(id).unwrap();
        let clinician = Caller::new(
            Principal::Link { link: link.record.id, appointment: id, role: crate::domain::ParticipantRole::Clinician },
            None,
        );
        let denied = schedule.authorize(&clinician, Action::Remain, Some(&view), Credential::Valid, now).unwrap_err();
        assert!(matches!(denied, ScheduleError::Denied(Reason::RoomLockedDown)), "{denied}");
    }
}
