//! Rooms, appointments, their joining windows and lockdowns.

use jiff::{SignedDuration, Timestamp};

use super::ids::{AppointmentId, ParticipantId, RoomId, StaffId};

/// An enrolled prison teleconference room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub id: RoomId,
    /// The prison (site) the room is in; lockdowns can cover a whole site.
    pub site: String,
    pub name: String,
    /// IANA time zone name; times are stored in UTC and shown in this zone.
    pub timezone: String,
    /// Whether the room has a device credential that has not been revoked.
    pub device_active: bool,
}

/// The kind of an expected guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    Interpreter,
    Clinician,
}

impl GuestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interpreter => "interpreter",
            Self::Clinician => "clinician",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "interpreter" => Some(Self::Interpreter),
            "clinician" => Some(Self::Clinician),
            _ => None,
        }
    }
}

/// A guest listed on the appointment, who may be sent a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    pub id: ParticipantId,
    pub display_name: String,
    pub kind: GuestKind,
}

/// Where an appointment is in its life. `open` and `live` are not stored: they follow from
/// the time and from the live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppointmentStatus {
    Booked,
    Cancelled { reason: String },
    Ended,
    Terminated { reason: String },
}

impl AppointmentStatus {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Booked => "booked",
            Self::Cancelled { .. } => "cancelled",
            Self::Ended => "ended",
            Self::Terminated { .. } => "terminated",
        }
    }

    /// Whether the booking still holds its room's time.
    pub fn holds_room(&self) -> bool {
        matches!(self, Self::Booked)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appointment {
    pub id: AppointmentId,
    pub room: RoomId,
    pub start: Timestamp,
    pub end: Timestamp,
    pub clinician_id: ParticipantId,
    pub clinician_name: String,
    pub clinician_email: String,
    /// A pseudonymous identifier: never a name or prison number.
    pub patient_pseudonym: String,
    /// The officer or nurse in the room who vouches for the prisoner's identity.
    pub escort_name: String,
    pub guests: Vec<Guest>,
    pub status: AppointmentStatus,
    pub booked_by: StaffId,
}

/// Where a moment falls relative to an appointment's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowPosition {
    /// Before joining opens.
    BeforeOpen,
    /// Joining is open, before the booked start.
    Early,
    /// Between start and booked end.
    During,
    /// After the booked end, within the overrun: no new joins, live sessions carry on.
    Overrun,
    /// After the hard end.
    After,
}

/// The times that govern an appointment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Joining opens (start minus the early-join allowance).
    pub opens: Timestamp,
    pub start: Timestamp,
    /// The booked end: joining closes.
    pub end: Timestamp,
    /// The session ends for everyone (end plus the overrun allowance).
    pub hard_end: Timestamp,
}

impl Window {
    pub fn of(appointment: &Appointment, early_join: SignedDuration, overrun: SignedDuration) -> Self {
        // Saturating: a booking stored near the calendar's ends (before the scheduling checks
        // bounded it) must still be readable, listable and cancellable.
        Self {
            opens: appointment.start.checked_sub(early_join).unwrap_or(Timestamp::MIN),
            start: appointment.start,
            end: appointment.end,
            hard_end: appointment.end.checked_add(overrun).unwrap_or(Timestamp::MAX),
        }
    }

    pub fn position(&self, now: Timestamp) -> WindowPosition {
        if now < self.opens {
            WindowPosition::BeforeOpen
        } else if now < self.start {
            WindowPosition::Early
        } else if now < self.end {
            WindowPosition::During
        } else if now < self.hard_end {
            WindowPosition::Overrun
        } else {
            WindowPosition::After
        }
    }
}

/// What a lockdown covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockdownScope {
    Room(RoomId),
    Site(String),
}

/// A lockdown in force, from security staff, with the reason shown to the consultant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockdown {
    pub scope: LockdownScope,
    pub reason: String,
    pub since: Timestamp,
}

impl Lockdown {
    pub fn covers(&self, room: &Room) -> bool {
        match &self.scope {
            LockdownScope::Room(id) => *id == room.id,
            LockdownScope::Site(site) => *site == room.site,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_positions() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let w = Window {
            opens: t("2026-11-24T09:45:00Z"),
            start: t("2026-11-24T10:00:00Z"),
            end: t("2026-11-24T10:30:00Z"),
            hard_end: t("2026-11-24T10:40:00Z"),
        };
        assert_eq!(w.position(t("2026-11-24T09:44:59Z")), WindowPosition::BeforeOpen);
        assert_eq!(w.position(t("2026-11-24T09:45:00Z")), WindowPosition::Early);
        assert_eq!(w.position(t("2026-11-24T10:00:00Z")), WindowPosition::During);
        assert_eq!(w.position(t("2026-11-24T10:30:00Z")), WindowPosition::Overrun);
        assert_eq!(w.position(t("2026-11-24T10:40:00Z")), WindowPosition::After);
    }
}
