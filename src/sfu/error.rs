//! The one error type of the media core.

use std::io;

use super::ids::ParticipantKey;

/// What went wrong in a call into the media core.
///
/// Messages never carry SDP, candidates or network addresses, so they are safe to log and to
/// map into an API response.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    /// The UDP socket could not be bound or inspected at start-up.
    #[error("could not bind the media UDP socket: {0}")]
    Bind(#[source] io::Error),

    /// The ICE-TCP listener could not be bound or inspected at start-up.
    #[error("could not bind the ICE-TCP listener: {0}")]
    BindTcp(#[source] io::Error),

    /// The client's SDP could not be parsed or cannot be used for a call.
    #[error("the session description is not usable: {0}")]
    BadSdp(String),

    /// The caller reused a participant key that is still live.
    #[error("{0} is already in the media core")]
    DuplicateParticipant(ParticipantKey),

    /// The participant is not (or no longer) in the media core.
    #[error("{0} is not in the media core")]
    UnknownParticipant(ParticipantKey),

    /// An offer came from a different peer connection (another DTLS certificate) than the
    /// participant's current one, so it cannot renegotiate that connection in place.
    #[error("the offer belongs to a new peer connection, not {0}'s current one")]
    NewPeerConnection(ParticipantKey),

    /// An answer arrived but the media core had not sent that participant an offer.
    #[error("no offer from the media core is waiting for an answer from {0}")]
    NoPendingOffer(ParticipantKey),

    /// The media engine failed while setting up a participant; the participant was not added.
    #[error("the media engine failed: {0}")]
    Engine(String),

    /// The media loop has ended, so no command can be served.
    #[error("the media loop has stopped")]
    Stopped,
}
