//! What the media core tells its caller: renegotiation offers, connection changes and each
//! connection's quality.

use std::fmt;

use super::ids::ParticipantKey;
use super::quality::LinkQuality;

/// A notification from the media loop to the signalling layer.
///
/// Events name only the participant they concern; they never carry another party's address.
#[derive(Debug, Clone, PartialEq)]
pub enum SfuEvent {
    /// The media core needs to send this participant new tracks (someone else started
    /// publishing). Deliver `sdp` to the client and pass its answer to `SfuHandle::answer`.
    Offer { participant: ParticipantKey, sdp: String },
    /// ICE and DTLS are up; media can flow.
    Connected { participant: ParticipantKey },
    /// The participant's connection ended normally or timed out. It has left the media core.
    Disconnected { participant: ParticipantKey, reason: DisconnectReason },
    /// The participant's connection broke on an error. It has left the media core.
    Failed { participant: ParticipantKey, reason: FailureReason },
    /// How the participant's connection fared over the last statistics interval (every two
    /// seconds while it is connected).
    Quality { participant: ParticipantKey, quality: LinkQuality },
}

/// Why a connection ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// ICE consent expired: the client stopped answering or went away.
    IceDisconnected,
    /// The peer connection was closed.
    Closed,
}

/// Why a connection was ended by the media core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    /// The participant's media handling panicked; only that participant was ended.
    Panicked,
    /// The media engine reported an error for this participant (the text is str0m's).
    Engine(String),
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DisconnectReason::IceDisconnected => f.write_str("ICE connectivity lost"),
            DisconnectReason::Closed => f.write_str("connection closed"),
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::Panicked => f.write_str("media handling panicked"),
            FailureReason::Engine(e) => write!(f, "media engine error: {e}"),
        }
    }
}
