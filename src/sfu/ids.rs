//! The caller-chosen ids that name sessions and participants inside the media core.

use std::fmt;

/// Names one consultation. Media only ever flows between participants of the same session.
///
/// The value is opaque to the media core: the caller maps its appointments onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(pub u64);

/// Names one participant (one peer connection) across every session of the media core.
///
/// The value is opaque to the media core and never reaches the other party's SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantKey(pub u64);

impl fmt::Display for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session-{}", self.0)
    }
}

impl fmt::Display for ParticipantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "participant-{}", self.0)
    }
}
