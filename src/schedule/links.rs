//! Join links and room devices at the door: issuing and revoking links, and deciding whether a
//! link holder or a room's kiosk may enter an appointment now. A link works only from the first
//! browser that used it.

use jiff::Timestamp;

use super::throttle::Door;
use super::{AppointmentView, Change, Schedule, ScheduleError, object_of};
use crate::audit::{EventKind, Object};
use crate::auth::device::DeviceHash;
use crate::auth::link_token::{LinkClaims, LinkError, LinkRole};
use crate::auth::policy::{Action, Credential, Principal, Reason};
use crate::auth::{Caller, code, device};
use crate::domain::{AppointmentId, LinkId, ParticipantId, ParticipantRole, Room, RoomId, Window};
use crate::store::{AppointmentFilter, LinkRecord};

/// A newly issued link: the token goes into the URL sent to the participant, once.
#[derive(Debug)]
pub struct IssuedLink {
    pub record: LinkRecord,
    pub token: String,
    pub display_name: String,
}

/// Someone let through the door: who they are and to which appointment.
#[derive(Debug, Clone)]
pub struct Admission {
    pub principal: Principal,
    pub view: AppointmentView,
    /// The name other participants see; never anything else about them.
    pub display_name: String,
    /// Who this is within the appointment: the participant's id, or the room's id for a kiosk.
    /// A second connection with the same member id is a duplicate.
    pub member_id: uuid::Uuid,
}

impl Admission {
    /// The role the others see: room, clinician or guest.
    pub fn role(&self) -> &'static str {
        match &self.principal {
            Principal::Link { role, .. } => role.as_str(),
            _ => "room",
        }
    }
}

/// A new link record, not yet stored.
fn fresh_link(
    appointment: AppointmentId,
    participant: ParticipantId,
    role: ParticipantRole,
    now: Timestamp,
) -> LinkRecord {
    LinkRecord {
        id: LinkId::new(),
        appointment,
        participant,
        role,
        issued_at: now.as_second(),
        revoked_at: None,
        bound_browser: None,
    }
}

fn link_object(view: &AppointmentView, link: LinkId) -> Object {
    Object { credential: code(link), participant: None, ..object_of(&view.appointment) }
}

impl Schedule {
    /// Issues a link for the appointment's clinician or one of its guests, replacing (revoking)
    /// any earlier link of theirs.
    pub fn issue_link(
        &self,
        caller: &Caller,
        appointment: AppointmentId,
        participant: ParticipantId,
        now: Timestamp,
    ) -> Result<IssuedLink, ScheduleError> {
        let view = self.view(appointment)?;
        self.authorize(caller, Action::IssueLink, Some(&view), Credential::Valid, now)?;
        let a = &view.appointment;
        let (role, display_name) = if a.clinician_id == participant {
            (ParticipantRole::Clinician, a.clinician_name.clone())
        } else if let Some(guest) = a.guests.iter().find(|g| g.id == participant) {
            (ParticipantRole::Guest, guest.display_name.clone())
        } else {
            return Err(ScheduleError::NotFound("participant on this appointment"));
        };
        for old in self.store.links_for(appointment)? {
            if old.participant == participant && old.revoked_at.is_none() {
                self.store.revoke_link(old.id, now.as_second())?;
                self.audit
                    .append_blocking(caller.event(EventKind::LinkRevoked).with_object(link_object(&view, old.id)))?;
            }
        }
        let record = fresh_link(appointment, participant, role, now);
        let token = self.sign_link(&view, &record)?;
        self.store.insert_link(&record)?;
        self.audit.append_blocking(caller.event(EventKind::LinkIssued).with_object(link_object(&view, record.id)))?;
        self.announce(Change::Appointment(appointment));
        Ok(IssuedLink { record, token, display_name })
    }

    /// The join link of a guest listed on the appointment, for its clinician to pass on during
    /// the consultation. A guest who already has a link gets that same link again (signed
    /// afresh, still bound to the browser that first used it), so inviting never cuts off a
    /// guest who is already in; a guest without one gets a new one. Either way it is recorded
    /// as issued by the clinician.
    pub fn invite_guest(
        &self,
        caller: &Caller,
        appointment: AppointmentId,
        participant: ParticipantId,
        now: Timestamp,
    ) -> Result<IssuedLink, ScheduleError> {
        let view = self.view(appointment)?;
        // The clinician's own link is asked about too: one revoked a moment ago invites no one.
        let credential = self.credential_state(&caller.principal)?;
        self.authorize(caller, Action::InviteGuest, Some(&view), credential, now)?;
        let Some(guest) = view.appointment.guests.iter().find(|g| g.id == participant) else {
            return Err(ScheduleError::NotFound("guest on this appointment"));
        };
        let links: Vec<LinkRecord> =
            self.store.links_for(appointment)?.into_iter().filter(|l| l.participant == participant).collect();
        let (record, new) = match links.iter().find(|l| l.revoked_at.is_none()) {
            Some(current) => (current.clone(), false),
            // The booking team withdrew this guest's link: only they may issue another.
            None if !links.is_empty() => {
                let object = Object { participant: code(participant), ..object_of(&view.appointment) };
                return match self.refuse(caller, EventKind::AccessDenied, Reason::LinkRevoked, object) {
                    ScheduleError::Denied(_) => Err(ScheduleError::Conflict(
                        "The booking team withdrew this guest's link. Ask them to issue a new one.".into(),
                    )),
                    unrecorded => Err(unrecorded),
                };
            }
            None => (fresh_link(appointment, participant, ParticipantRole::Guest, now), true),
        };
        let token = self.sign_link(&view, &record)?;
        if new {
            self.store.insert_link(&record)?;
        }
        self.audit.append_blocking(caller.event(EventKind::LinkIssued).with_object(link_object(&view, record.id)))?;
        if new {
            self.announce(Change::Appointment(appointment));
        }
        Ok(IssuedLink { record, token, display_name: guest.display_name.clone() })
    }

    /// The signed token of `record`, valid from the appointment's opening to its hard end.
    fn sign_link(&self, view: &AppointmentView, record: &LinkRecord) -> Result<String, ScheduleError> {
        let claims = LinkClaims {
            link_id: record.id.0,
            appointment: record.appointment.0,
            participant: record.participant.0,
            role: match record.role {
                ParticipantRole::Clinician => LinkRole::Clinician,
                ParticipantRole::Guest => LinkRole::Guest,
            },
            not_before: view.window.opens.as_second().max(0) as u64,
            // Reconnection is possible until the hard end; new joins close at the booked end (policy).
            expires: view.window.hard_end.as_second().max(0) as u64,
        };
        self.links.sign(&claims).map_err(|_| ScheduleError::Random)
    }

    pub fn links(
        &self,
        caller: &Caller,
        appointment: AppointmentId,
        now: Timestamp,
    ) -> Result<Vec<LinkRecord>, ScheduleError> {
        let view = self.view(appointment)?;
        self.authorize(caller, Action::ViewSchedule, Some(&view), Credential::Valid, now)?;
        Ok(self.store.links_for(appointment)?)
    }

    /// Revokes a link; a live connection made with it ends.
    pub fn revoke_link(&self, caller: &Caller, link: LinkId, now: Timestamp) -> Result<(), ScheduleError> {
        let record = self.store.link(link)?.ok_or(ScheduleError::NotFound("link"))?;
        let view = self.view(record.appointment)?;
        self.authorize(caller, Action::RevokeLink, Some(&view), Credential::Valid, now)?;
        self.store.revoke_link(link, now.as_second())?;
        self.audit.append_blocking(caller.event(EventKind::LinkRevoked).with_object(link_object(&view, link)))?;
        self.announce(Change::Appointment(record.appointment));
        Ok(())
    }

    /// Whether the holder of `token`, in the browser identified by `browser`, may enter now.
    /// The first browser to use a link is bound to it, so a browser that does not identify
    /// itself (None) is refused.
    pub fn redeem_link(
        &self,
        token: &str,
        expected: Option<&str>,
        browser: Option<&[u8; 32]>,
        ip: Option<std::net::IpAddr>,
        now: Timestamp,
    ) -> Result<Admission, ScheduleError> {
        self.door_attempt(ip, now)?;
        let anonymous = Caller::new(Principal::Anonymous, ip);
        let now_unix = now.as_second().max(0) as u64;
        let claims = match self.links.verify(token, now_unix) {
            Ok(claims) => claims,
            // An early link is authentic: read it as of its opening time and let the policy
            // speak first, so that a cancellation or lockdown is told before the opening time.
            Err(LinkError::NotYetValid { opens_at }) => match self.links.verify(token, opens_at) {
                Ok(claims) => claims,
                Err(_) => {
                    return Err(self.refuse(
                        &anonymous,
                        EventKind::LinkRefused,
                        Reason::LinkInvalid,
                        Object::default(),
                    ));
                }
            },
            Err(e) => {
                let reason = match e.code() {
                    "window_not_open" => Reason::WindowNotOpen,
                    "link_expired" => Reason::LinkExpired,
                    _ => Reason::LinkInvalid,
                };
                return Err(self.refuse(&anonymous, EventKind::LinkRefused, reason, Object::default()));
            }
        };
        let link = LinkId(claims.link_id);
        let Some(record) = self.store.link(link)? else {
            return Err(self.refuse(&anonymous, EventKind::LinkRefused, Reason::LinkInvalid, Object::default()));
        };
        let role = record.role;
        let principal = Principal::Link { link, appointment: AppointmentId(claims.appointment), role };
        let caller = Caller::new(principal.clone(), ip);
        // The policy refuses a link presented for another appointment (scope check); an
        // appointment named by something that is no appointment id is refused here, alike.
        let appointment = match expected.map(str::parse::<AppointmentId>) {
            None => record.appointment,
            Some(Ok(id)) => id,
            Some(Err(_)) => {
                return Err(self.refuse(&caller, EventKind::LinkRefused, Reason::LinkInvalid, Object::default()));
            }
        };
        let view = match self.view(appointment) {
            Ok(view) => view,
            Err(ScheduleError::NotFound(_)) => {
                return Err(self.refuse(&caller, EventKind::LinkRefused, Reason::LinkInvalid, Object::default()));
            }
            Err(e) => return Err(e),
        };
        // A link is bound by its first successful use, so a refused early click on one device
        // does not lock the consultant out of the browser they join from later.
        let credential = match (record.revoked_at, record.bound_browser) {
            (Some(_), _) => Credential::Revoked,
            (None, Some(bound)) if browser != Some(&bound) => Credential::BoundElsewhere,
            (None, _) => Credential::Valid,
        };
        self.authorize(&caller, Action::Join, Some(&view), credential, now)?;
        let Some(browser) = browser else {
            // Binding to nobody would leave the link open to the next browser that tries it.
            let object = link_object(&view, link);
            return Err(self.refuse(&caller, EventKind::LinkRefused, Reason::BrowserUnknown, object));
        };
        // The link's own window holds even when the appointment moved earlier.
        if now_unix < claims.not_before {
            let object = link_object(&view, link);
            return Err(self.refuse(&caller, EventKind::LinkRefused, Reason::WindowNotOpen, object));
        }
        if record.bound_browser.is_none() {
            if self.store.bind_link(link, browser)?.as_ref() != Some(browser) {
                // Another browser won the race for this link.
                let object = link_object(&view, link);
                return Err(self.refuse(&caller, EventKind::LinkRefused, Reason::LinkBoundElsewhere, object));
            }
            self.audit.append_blocking(caller.event(EventKind::LinkUsed).with_object(link_object(&view, link)))?;
        }
        let display_name = if role == ParticipantRole::Clinician {
            view.appointment.clinician_name.clone()
        } else {
            view.appointment
                .guests
                .iter()
                .find(|g| g.id == record.participant)
                .map(|g| g.display_name.clone())
                .unwrap_or_default()
        };
        Ok(Admission { principal, view, display_name, member_id: record.participant.0 })
    }

    /// Whether a room's kiosk, by its device credential, may enter its current appointment.
    pub fn admit_room(
        &self,
        presented: &str,
        ip: Option<std::net::IpAddr>,
        now: Timestamp,
    ) -> Result<(RoomId, Result<Admission, ScheduleError>), ScheduleError> {
        self.door_attempt(ip, now)?;
        let (room, device) = self.room_of_device(presented, ip, Door::Join)?;
        let caller = Caller::new(Principal::Room { room: room.id, device }, ip);
        Ok((room.id, self.room_admission(&caller, room.id, now)))
    }

    /// The room a kiosk's device credential belongs to, and the credential's hash. An unknown
    /// or revoked credential is refused and audited as the `door` it came to refuses.
    fn room_of_device(
        &self,
        presented: &str,
        ip: Option<std::net::IpAddr>,
        door: Door,
    ) -> Result<(Room, DeviceHash), ScheduleError> {
        let anonymous = Caller::new(Principal::Anonymous, ip);
        let unknown =
            || self.refuse_at(door, &anonymous, EventKind::AccessDenied, Reason::NotAuthenticated, Object::default());
        let Some(hash) = device::lookup_hash(presented) else {
            return Err(unknown());
        };
        match self.store.room_by_device(&hash)? {
            Some(room) => Ok((room, DeviceHash(hash))),
            None => Err(match self.store.revoked_device(&hash)? {
                Some(room) => {
                    let caller = Caller::new(Principal::Room { room, device: DeviceHash(hash) }, ip);
                    let object = Object { room: code(room), ..Object::default() };
                    self.refuse_at(door, &caller, EventKind::AccessDenied, Reason::DeviceRevoked, object)
                }
                None => unknown(),
            }),
        }
    }

    /// What a kiosk shows while it waits: its room and the room's current or next booked
    /// appointment (with any lockdown covering it).
    pub fn kiosk_view(
        &self,
        presented: &str,
        ip: Option<std::net::IpAddr>,
        now: Timestamp,
    ) -> Result<(Room, Option<AppointmentView>), ScheduleError> {
        let (room, _) = self.room_of_device(presented, ip, Door::Lookup(now))?;
        let next = self.current_or_next(room.id, now)?;
        Ok((room, next))
    }

    /// Whether `presented` lets its holder check their connection: a room's enrolled device
    /// credential, or an authentic and unrevoked join link, even before its window opens.
    pub fn allow_device_check(
        &self,
        presented: DeviceCheckCredential<'_>,
        ip: Option<std::net::IpAddr>,
        now: Timestamp,
    ) -> Result<(), ScheduleError> {
        match presented {
            DeviceCheckCredential::Room(credential) => self.room_of_device(credential, ip, Door::Lookup(now)).map(drop),
            DeviceCheckCredential::Link(token) => match self.link_context(token, now)? {
                Some(_) => Ok(()),
                None => {
                    let anonymous = Caller::new(Principal::Anonymous, ip);
                    let door = Door::Lookup(now);
                    Err(self.refuse_at(
                        door,
                        &anonymous,
                        EventKind::LinkRefused,
                        Reason::LinkInvalid,
                        Object::default(),
                    ))
                }
            },
        }
    }

    /// What the door may tell the holder of an authentic, unrevoked link whose appointment it
    /// refuses: when joining opens, and the reason given for a cancellation, termination or
    /// lockdown. None for a link that is forged, unknown or revoked.
    pub fn link_context(&self, token: &str, now: Timestamp) -> Result<Option<LinkContext>, ScheduleError> {
        let now_unix = now.as_second().max(0) as u64;
        let claims = match self.links.verify(token, now_unix) {
            Ok(claims) => claims,
            // Authentic but early: read it as of its own opening time.
            Err(LinkError::NotYetValid { opens_at }) => match self.links.verify(token, opens_at) {
                Ok(claims) => claims,
                Err(_) => return Ok(None),
            },
            Err(_) => return Ok(None),
        };
        match self.store.link(LinkId(claims.link_id))? {
            Some(record) if record.revoked_at.is_none() => {}
            _ => return Ok(None),
        }
        let view = match self.view(AppointmentId(claims.appointment)) {
            Ok(view) => view,
            Err(ScheduleError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(LinkContext {
            opens: view.window.opens,
            status_reason: view.status_reason().map(str::to_owned),
            lockdown_reason: view.lockdown.map(|l| l.reason),
        }))
    }

    fn room_admission(&self, caller: &Caller, room: RoomId, now: Timestamp) -> Result<Admission, ScheduleError> {
        let view = self.current_or_next(room, now)?;
        self.authorize(caller, Action::Join, view.as_ref(), Credential::Valid, now)?;
        let view = view.ok_or(ScheduleError::Denied(Reason::RoomNotBooked))?;
        let display_name = view.room.name.clone();
        Ok(Admission { principal: caller.principal.clone(), view, display_name, member_id: room.0 })
    }

    /// The room's current or next appointment that is not over: one that was cancelled, ended
    /// or terminated early gives way to the next, even within its own overrun.
    fn current_or_next(&self, room: RoomId, now: Timestamp) -> Result<Option<AppointmentView>, ScheduleError> {
        let filter = AppointmentFilter {
            room: Some(room),
            from: Some(now - self.settings.overrun),
            to: None,
            status: None,
            limit: 20,
        };
        let next = self
            .store
            .appointments(&filter)?
            .into_iter()
            .filter(|a| a.status.holds_room())
            .find(|a| Window::of(a, self.settings.early_join, self.settings.overrun).hard_end > now);
        next.map(|a| self.view_of(a)).transpose()
    }
}

/// What a device check presents, see [`Schedule::allow_device_check`].
#[derive(Debug, Clone, Copy)]
pub enum DeviceCheckCredential<'a> {
    /// A room kiosk's device credential.
    Room(&'a str),
    /// A join link's token.
    Link(&'a str),
}

/// See [`Schedule::link_context`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkContext {
    pub opens: Timestamp,
    /// The reason given for a cancellation or termination, or the lockdown's.
    pub status_reason: Option<String>,
    /// The reason given for a lockdown covering the room, if one does.
    pub lockdown_reason: Option<String>,
}
