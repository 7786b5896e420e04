//! What a live session tells one connected participant. The signalling layer turns these into
//! its wire messages; the session knows nothing of JSON or WebSockets.

use jiff::Timestamp;

use crate::auth::policy::Reason;
use crate::domain::AppointmentId;

/// A participant as the others see them: a display name and a role, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerView {
    pub id: String,
    pub display_name: String,
    /// room, clinician or guest
    pub role: &'static str,
    /// waiting, admitted or away (dropped, may reconnect)
    pub state: &'static str,
}

/// Why a session (or one participant's part in it) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The clinician ended the consultation.
    EndedByClinician,
    /// Security staff ended it, with their reason.
    Terminated { reason: String },
    /// The policy no longer allows this participant (revoked, cancelled, lockdown, window).
    Policy(Reason),
    /// The participant left.
    Left,
    /// The same credential connected again while this connection was live (only the new
    /// connection is refused; this is sent to it).
    AlreadyConnected,
    /// The gateway is shutting down.
    Shutdown,
    /// The join could not be recorded in the audit log, so it was refused.
    AuditUnavailable,
}

impl EndReason {
    pub fn code(&self) -> &'static str {
        match self {
            Self::EndedByClinician => "ended_by_clinician",
            Self::Terminated { .. } => "terminated",
            Self::Policy(reason) => reason.code(),
            Self::Left => "left",
            Self::AlreadyConnected => "already_connected",
            Self::Shutdown => "gateway_shutdown",
            Self::AuditUnavailable => "audit_unavailable",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::EndedByClinician => "The clinician ended the consultation.".into(),
            Self::Terminated { reason } => format!("Security staff ended this consultation: {reason}"),
            Self::Policy(reason) => reason.message().into(),
            Self::Left => "You left the consultation.".into(),
            Self::AlreadyConnected => {
                "This link or room is already connected from another window. Close that window first.".into()
            }
            Self::Shutdown => "The gateway is restarting. Rejoin in a minute.".into(),
            Self::AuditUnavailable => {
                "The gateway cannot record your join right now, so it cannot let you in. Try again in a minute.".into()
            }
        }
    }
}

/// Which timing warning this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning {
    FiveMinutes,
    End,
}

/// Everything a connection hears from its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    Joined {
        appointment: AppointmentId,
        participant_id: String,
        role: &'static str,
        display_name: String,
        ends_at: Timestamp,
        hard_end: Timestamp,
        admitted: bool,
        /// The guests listed on the booking, as (participant id, display name): for a
        /// clinician, who may invite them; empty for everyone else.
        guests: Vec<(String, String)>,
    },
    Waiting,
    Admitted,
    Participants(Vec<PeerView>),
    Answer {
        sdp: String,
    },
    Offer {
        sdp: String,
    },
    Timing {
        ends_at: Timestamp,
        hard_end: Timestamp,
        warning: Option<Warning>,
    },
    Error {
        code: &'static str,
        message: String,
    },
    Ended(EndReason),
    /// A listed guest's join link, for the clinician who asked to invite them: only ever sent
    /// to that clinician.
    Invited {
        participant_id: String,
        display_name: String,
        token: String,
    },
}
