//! The policy: the one place that answers "may this principal do this action on this resource
//! at this time". A pure function of its inputs, so it can be tested exhaustively and
//! re-evaluated for a live participant whenever anything changes.

use jiff::Timestamp;

use crate::auth::device::DeviceHash;
use crate::domain::{AppointmentId, LinkId, ParticipantRole, Role, RoomId, StaffId, StaffRole, Window, WindowPosition};

/// Why something was refused. The codes are stable: clients, logs and the audit log use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    WindowNotOpen,
    WindowClosed,
    AppointmentCancelled,
    AppointmentEnded,
    LinkInvalid,
    LinkExpired,
    LinkRevoked,
    LinkBoundElsewhere,
    DeviceRevoked,
    RoomNotBooked,
    RoomLockedDown,
    RoleForbidden,
    NotAuthenticated,
    RateLimited,
    /// A join link presented without the browser identity it is (or would be) bound to.
    BrowserUnknown,
}

impl Reason {
    pub const ALL: [Reason; 15] = [
        Self::WindowNotOpen,
        Self::WindowClosed,
        Self::AppointmentCancelled,
        Self::AppointmentEnded,
        Self::LinkInvalid,
        Self::LinkExpired,
        Self::LinkRevoked,
        Self::LinkBoundElsewhere,
        Self::DeviceRevoked,
        Self::RoomNotBooked,
        Self::RoomLockedDown,
        Self::RoleForbidden,
        Self::NotAuthenticated,
        Self::RateLimited,
        Self::BrowserUnknown,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::WindowNotOpen => "window_not_open",
            Self::WindowClosed => "window_closed",
            Self::AppointmentCancelled => "appointment_cancelled",
            Self::AppointmentEnded => "appointment_ended",
            Self::LinkInvalid => "link_invalid",
            Self::LinkExpired => "link_expired",
            Self::LinkRevoked => "link_revoked",
            Self::LinkBoundElsewhere => "link_bound_elsewhere",
            Self::DeviceRevoked => "device_revoked",
            Self::RoomNotBooked => "room_not_booked",
            Self::RoomLockedDown => "room_locked_down",
            Self::RoleForbidden => "role_forbidden",
            Self::NotAuthenticated => "not_authenticated",
            Self::RateLimited => "rate_limited",
            Self::BrowserUnknown => "browser_unknown",
        }
    }

    /// A sentence for a person; the HTTP layer may add specifics such as the opening time.
    pub fn message(self) -> &'static str {
        match self {
            Self::WindowNotOpen => "This appointment is not open for joining yet.",
            Self::WindowClosed => "This appointment's time has passed.",
            Self::AppointmentCancelled => "This appointment was cancelled.",
            Self::AppointmentEnded => "This appointment has ended.",
            Self::LinkInvalid => "This link is not valid. Ask the booking team for a new one.",
            Self::LinkExpired => "This link has expired. Ask the booking team for a new one.",
            Self::LinkRevoked => "This link was withdrawn. Ask the booking team for a new one.",
            Self::LinkBoundElsewhere => {
                "This link was already opened in another browser. Use that browser, or ask the booking team to reissue it."
            }
            Self::DeviceRevoked => "This room's device credential was withdrawn. Ask staff to enrol the room again.",
            Self::RoomNotBooked => "This room has no booking for this appointment.",
            Self::RoomLockedDown => "The prison is in lockdown, so consultations cannot take place now.",
            Self::RoleForbidden => "Your role does not allow this.",
            Self::NotAuthenticated => "Sign in first.",
            Self::RateLimited => "Too many attempts. Wait a few minutes and try again.",
            Self::BrowserUnknown => {
                "This browser did not identify itself, so the link cannot be tied to it. Open the link's page with cookies allowed."
            }
        }
    }
}

/// Who is asking, as established by authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    Staff {
        id: StaffId,
        role: StaffRole,
    },
    /// A room's kiosk, by the device credential it presented: a replaced credential is no
    /// longer the room's, so the kiosk holding it is refused (see [`Credential`]).
    Room {
        room: RoomId,
        device: DeviceHash,
    },
    /// The holder of a verified join link.
    Link {
        link: LinkId,
        appointment: AppointmentId,
        role: ParticipantRole,
    },
}

impl Principal {
    pub fn role(&self) -> Option<Role> {
        match self {
            Self::Anonymous => None,
            Self::Staff { role, .. } => Some((*role).into()),
            Self::Room { .. } => Some(Role::Room),
            Self::Link { role, .. } => Some((*role).into()),
        }
    }
}

/// Everything that can be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Enter the consultation (or its waiting room).
    Join,
    /// Stay connected, or reconnect after a drop, once joined.
    Remain,
    Admit,
    ShareScreen,
    InviteGuest,
    EndSession,
    ViewSchedule,
    Book,
    Reschedule,
    Cancel,
    IssueLink,
    RevokeLink,
    EnrolRoom,
    RevokeRoom,
    ViewLiveSessions,
    TerminateSession,
    Lockdown,
    ReadAudit,
    ManageStaff,
    ManageKeys,
}

impl Action {
    pub const ALL: [Action; 20] = [
        Self::Join,
        Self::Remain,
        Self::Admit,
        Self::ShareScreen,
        Self::InviteGuest,
        Self::EndSession,
        Self::ViewSchedule,
        Self::Book,
        Self::Reschedule,
        Self::Cancel,
        Self::IssueLink,
        Self::RevokeLink,
        Self::EnrolRoom,
        Self::RevokeRoom,
        Self::ViewLiveSessions,
        Self::TerminateSession,
        Self::Lockdown,
        Self::ReadAudit,
        Self::ManageStaff,
        Self::ManageKeys,
    ];

    /// The roles that may ever do this.
    pub fn allowed_roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Self::Join | Self::Remain => &[Room, Clinician, Guest],
            Self::Admit | Self::ShareScreen | Self::InviteGuest | Self::EndSession => &[Clinician],
            Self::ViewSchedule => &[Scheduler, Security, Admin],
            Self::Book | Self::Reschedule | Self::Cancel | Self::IssueLink | Self::RevokeLink => &[Scheduler],
            Self::EnrolRoom | Self::RevokeRoom => &[Scheduler, Admin],
            Self::ViewLiveSessions | Self::TerminateSession | Self::Lockdown | Self::ReadAudit => &[Security],
            Self::ManageStaff | Self::ManageKeys => &[Admin],
        }
    }

    /// Actions inside a consultation, taken by its participants.
    fn is_in_consultation(self) -> bool {
        matches!(
            self,
            Self::Join | Self::Remain | Self::Admit | Self::ShareScreen | Self::InviteGuest | Self::EndSession
        )
    }
}

/// The state of the credential the principal presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Valid,
    Revoked,
    /// A join link first used from another browser.
    BoundElsewhere,
    Expired,
}

/// An appointment's stored status, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Booked,
    Cancelled,
    Ended,
}

/// The facts about the appointment an action concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppointmentFacts {
    pub id: AppointmentId,
    pub room: RoomId,
    pub status: Status,
    pub window: Window,
    /// A lockdown covers the appointment's room or site.
    pub locked_down: bool,
}

/// One question for the policy.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub principal: &'a Principal,
    pub action: Action,
    pub appointment: Option<&'a AppointmentFacts>,
    pub credential: Credential,
    pub rate_limited: bool,
    pub now: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Reason),
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Self::Allow
    }
}

/// The answer to every "may they?" question in the gateway.
pub fn decide(request: &Request<'_>) -> Decision {
    match check(request) {
        Ok(()) => Decision::Allow,
        Err(reason) => Decision::Deny(reason),
    }
}

fn check(r: &Request<'_>) -> Result<(), Reason> {
    // First: an address that tries too often is turned away before anyone checks who it is.
    if r.rate_limited {
        return Err(Reason::RateLimited);
    }
    let Some(role) = r.principal.role() else {
        return Err(Reason::NotAuthenticated);
    };
    check_credential(r.principal, r.credential)?;
    if !r.action.allowed_roles().contains(&role) {
        return Err(Reason::RoleForbidden);
    }
    let Some(appointment) = r.appointment else {
        return match r.principal {
            // A participant always acts on an appointment; without one there is nothing to join.
            Principal::Room { .. } => Err(Reason::RoomNotBooked),
            Principal::Link { .. } => Err(Reason::LinkInvalid),
            _ => Ok(()),
        };
    };
    check_scope(r.principal, appointment)?;
    if r.action.is_in_consultation() {
        return check_consultation(r.action, appointment, r.now);
    }
    check_scheduling(r.action, appointment, r.now)
}

fn check_credential(principal: &Principal, credential: Credential) -> Result<(), Reason> {
    match (principal, credential) {
        (_, Credential::Valid) => Ok(()),
        (Principal::Room { .. }, _) => Err(Reason::DeviceRevoked),
        (Principal::Link { .. }, Credential::Revoked) => Err(Reason::LinkRevoked),
        (Principal::Link { .. }, Credential::BoundElsewhere) => Err(Reason::LinkBoundElsewhere),
        (Principal::Link { .. }, Credential::Expired) => Err(Reason::LinkExpired),
        // A disabled account or an expired staff session: sign in again.
        (Principal::Staff { .. } | Principal::Anonymous, _) => Err(Reason::NotAuthenticated),
    }
}

/// A room acts only on its own bookings; a link only on its own appointment.
fn check_scope(principal: &Principal, appointment: &AppointmentFacts) -> Result<(), Reason> {
    match principal {
        Principal::Room { room, .. } if *room != appointment.room => Err(Reason::RoomNotBooked),
        Principal::Link { appointment: linked, .. } if *linked != appointment.id => Err(Reason::LinkInvalid),
        _ => Ok(()),
    }
}

fn check_status(appointment: &AppointmentFacts) -> Result<(), Reason> {
    match appointment.status {
        Status::Booked => Ok(()),
        Status::Cancelled => Err(Reason::AppointmentCancelled),
        Status::Ended => Err(Reason::AppointmentEnded),
    }
}

/// Whether a consultation on this appointment may carry on now, whoever is in it: a live
/// session whose appointment was cancelled, ended, locked down or moved away ends with this
/// reason.
pub fn consultation_may_continue(appointment: &AppointmentFacts, now: Timestamp) -> Result<(), Reason> {
    check_consultation(Action::Remain, appointment, now)
}

fn check_consultation(action: Action, appointment: &AppointmentFacts, now: Timestamp) -> Result<(), Reason> {
    if appointment.locked_down {
        return Err(Reason::RoomLockedDown);
    }
    check_status(appointment)?;
    match (action, appointment.window.position(now)) {
        (_, WindowPosition::BeforeOpen) => Err(Reason::WindowNotOpen),
        (_, WindowPosition::After) => Err(Reason::WindowClosed),
        // New joins close at the booked end; those already in carry on through the overrun.
        // An invitation is for a new join, so it closes with them.
        (Action::Join | Action::InviteGuest, WindowPosition::Overrun) => Err(Reason::WindowClosed),
        _ => Ok(()),
    }
}

fn check_scheduling(action: Action, appointment: &AppointmentFacts, now: Timestamp) -> Result<(), Reason> {
    let position = appointment.window.position(now);
    let over = matches!(position, WindowPosition::Overrun | WindowPosition::After);
    match action {
        // Revoking is always possible: it only ever takes access away.
        Action::RevokeLink | Action::ViewSchedule | Action::ViewLiveSessions | Action::ReadAudit => Ok(()),
        // Cancelling is possible during a lockdown (that is when it is needed), not afterwards.
        Action::Cancel => {
            check_status(appointment)?;
            if over { Err(Reason::AppointmentEnded) } else { Ok(()) }
        }
        Action::Reschedule | Action::IssueLink | Action::Book => {
            if appointment.locked_down {
                return Err(Reason::RoomLockedDown);
            }
            check_status(appointment)?;
            if over { Err(Reason::AppointmentEnded) } else { Ok(()) }
        }
        Action::TerminateSession => {
            check_status(appointment)?;
            if position == WindowPosition::After { Err(Reason::WindowClosed) } else { Ok(()) }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    //! The exhaustive table: every principal × action × appointment state × window position ×
    //! credential state × rate limit, checked against expectations written as tables.

    use super::*;
    use crate::auth::device::DeviceHash;
    use crate::domain::{AppointmentId, LinkId, RoomId, StaffId};
    use Reason::*;

    const POSITIONS: [WindowPosition; 5] = [
        WindowPosition::BeforeOpen,
        WindowPosition::Early,
        WindowPosition::During,
        WindowPosition::Overrun,
        WindowPosition::After,
    ];

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum State {
        Booked,
        Cancelled,
        Ended,
        LockedDown,
    }

    /// Who may do what, as a literal table (one row per action).
    fn roles_table(action: Action) -> &'static [&'static str] {
        match action {
            Action::Join => &["room", "clinician", "guest"],
            Action::Remain => &["room", "clinician", "guest"],
            Action::Admit => &["clinician"],
            Action::ShareScreen => &["clinician"],
            Action::InviteGuest => &["clinician"],
            Action::EndSession => &["clinician"],
            Action::ViewSchedule => &["scheduler", "security", "admin"],
            Action::Book => &["scheduler"],
            Action::Reschedule => &["scheduler"],
            Action::Cancel => &["scheduler"],
            Action::IssueLink => &["scheduler"],
            Action::RevokeLink => &["scheduler"],
            Action::EnrolRoom => &["scheduler", "admin"],
            Action::RevokeRoom => &["scheduler", "admin"],
            Action::ViewLiveSessions => &["security"],
            Action::TerminateSession => &["security"],
            Action::Lockdown => &["security"],
            Action::ReadAudit => &["security"],
            Action::ManageStaff => &["admin"],
            Action::ManageKeys => &["admin"],
        }
    }

    type Row = [Option<Reason>; 5];
    const OPEN: Row = [None; 5];
    const fn all(r: Reason) -> Row {
        [Some(r); 5]
    }

    /// Expected outcome by appointment state (rows) and window position (columns:
    /// before open, early, during, overrun, after) for each action, once role and scope pass.
    fn state_table(action: Action, state: State) -> Row {
        let wno = Some(WindowNotOpen);
        let wc = Some(WindowClosed);
        let ae = Some(AppointmentEnded);
        match (action, state) {
            (Action::Join | Action::InviteGuest, State::Booked) => [wno, None, None, wc, wc],
            (Action::Remain | Action::Admit | Action::ShareScreen | Action::EndSession, State::Booked) => {
                [wno, None, None, None, wc]
            }
            (
                Action::Join
                | Action::Remain
                | Action::Admit
                | Action::ShareScreen
                | Action::InviteGuest
                | Action::EndSession,
                s,
            ) => match s {
                State::Cancelled => all(AppointmentCancelled),
                State::Ended => all(AppointmentEnded),
                _ => all(RoomLockedDown),
            },
            (Action::Book | Action::Reschedule | Action::IssueLink, State::Booked) => [None, None, None, ae, ae],
            (Action::Book | Action::Reschedule | Action::IssueLink, State::LockedDown) => all(RoomLockedDown),
            (Action::Cancel, State::Booked | State::LockedDown) => [None, None, None, ae, ae],
            (Action::TerminateSession, State::Booked | State::LockedDown) => [None, None, None, None, wc],
            (
                Action::Book | Action::Reschedule | Action::IssueLink | Action::Cancel | Action::TerminateSession,
                State::Cancelled,
            ) => all(AppointmentCancelled),
            (
                Action::Book | Action::Reschedule | Action::IssueLink | Action::Cancel | Action::TerminateSession,
                State::Ended,
            ) => all(AppointmentEnded),
            _ => OPEN,
        }
    }

    fn window() -> Window {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        Window {
            opens: t("2026-11-24T09:45:00Z"),
            start: t("2026-11-24T10:00:00Z"),
            end: t("2026-11-24T10:30:00Z"),
            hard_end: t("2026-11-24T10:40:00Z"),
        }
    }

    fn moment(position: WindowPosition) -> Timestamp {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        match position {
            WindowPosition::BeforeOpen => t("2026-11-24T09:00:00Z"),
            WindowPosition::Early => t("2026-11-24T09:50:00Z"),
            WindowPosition::During => t("2026-11-24T10:15:00Z"),
            WindowPosition::Overrun => t("2026-11-24T10:35:00Z"),
            WindowPosition::After => t("2026-11-24T11:00:00Z"),
        }
    }

    #[test]
    fn every_combination_matches_the_tables() {
        let appointment_id = AppointmentId::new();
        let room = RoomId::new();
        let other_room = RoomId::new();
        let device = DeviceHash([7; 32]);
        let link = |role, appointment| Principal::Link { link: LinkId::new(), appointment, role };
        let principals: Vec<(&str, Principal, bool)> = vec![
            ("anonymous", Principal::Anonymous, true),
            ("scheduler", Principal::Staff { id: StaffId::new(), role: StaffRole::Scheduler }, true),
            ("security", Principal::Staff { id: StaffId::new(), role: StaffRole::Security }, true),
            ("admin", Principal::Staff { id: StaffId::new(), role: StaffRole::Admin }, true),
            ("room", Principal::Room { room, device }, true),
            ("room", Principal::Room { room: other_room, device }, false),
            ("clinician", link(ParticipantRole::Clinician, appointment_id), true),
            ("clinician", link(ParticipantRole::Clinician, AppointmentId::new()), false),
            ("guest", link(ParticipantRole::Guest, appointment_id), true),
            ("guest", link(ParticipantRole::Guest, AppointmentId::new()), false),
        ];
        let credentials = [Credential::Valid, Credential::Revoked, Credential::BoundElsewhere, Credential::Expired];
        let states = [State::Booked, State::Cancelled, State::Ended, State::LockedDown];
        let mut checked = 0;
        let mut allowed = 0;
        for (role_name, principal, in_scope) in &principals {
            for action in Action::ALL {
                for state in states {
                    for position in POSITIONS {
                        for credential in credentials {
                            for rate_limited in [false, true] {
                                let facts = AppointmentFacts {
                                    id: appointment_id,
                                    room,
                                    status: match state {
                                        State::Cancelled => Status::Cancelled,
                                        State::Ended => Status::Ended,
                                        _ => Status::Booked,
                                    },
                                    window: window(),
                                    locked_down: state == State::LockedDown,
                                };
                                let request = Request {
                                    principal,
                                    action,
                                    appointment: Some(&facts),
                                    credential,
                                    rate_limited,
                                    now: moment(position),
                                };
                                let expected = if rate_limited {
                                    Some(RateLimited)
                                } else if *role_name == "anonymous" {
                                    Some(NotAuthenticated)
                                } else if credential != Credential::Valid {
                                    Some(match (role_name, credential) {
                                        (&"room", _) => DeviceRevoked,
                                        (&"clinician" | &"guest", Credential::Revoked) => LinkRevoked,
                                        (&"clinician" | &"guest", Credential::BoundElsewhere) => LinkBoundElsewhere,
                                        (&"clinician" | &"guest", _) => LinkExpired,
                                        _ => NotAuthenticated,
                                    })
                                } else if !roles_table(action).contains(role_name) {
                                    Some(RoleForbidden)
                                } else if !in_scope {
                                    Some(if *role_name == "room" { RoomNotBooked } else { LinkInvalid })
                                } else {
                                    state_table(action, state)[POSITIONS.iter().position(|p| *p == position).unwrap()]
                                };
                                let got = decide(&request);
                                let want = expected.map_or(Decision::Allow, Decision::Deny);
                                assert_eq!(
                                    got, want,
                                    "{role_name} (in scope: {in_scope}) {action:?} on {state:?} at {position:?}, \
                                     credential {credential:?}, rate limited {rate_limited}"
                                );
                                checked += 1;
                                allowed += usize::from(got.is_allowed());
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(checked, 10 * 20 * 4 * 5 * 4 * 2);
        assert!(allowed > 0);
    }

    #[test]
    fn a_participant_without_an_appointment_is_refused() {
        let now = moment(WindowPosition::During);
        let room = Principal::Room { room: RoomId::new(), device: DeviceHash([1; 32]) };
        let req = Request {
            principal: &room,
            action: Action::Join,
            appointment: None,
            credential: Credential::Valid,
            rate_limited: false,
            now,
        };
        assert_eq!(decide(&req), Decision::Deny(RoomNotBooked));
        let staff = Principal::Staff { id: StaffId::new(), role: StaffRole::Scheduler };
        let req = Request { principal: &staff, action: Action::Book, ..req };
        assert_eq!(decide(&req), Decision::Allow);
    }

    #[test]
    fn every_reason_has_a_code_and_a_sentence() {
        let mut codes: Vec<&str> = Reason::ALL.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Reason::ALL.len());
        assert!(Reason::ALL.iter().all(|r| r.message().ends_with('.')));
    }
}
