//! The handle through which the rest of the gateway drives the media loop.
//!
//! Every call becomes a [`Command`] sent to the one media-loop task, which owns all state; the
//! reply comes back on a oneshot channel. No lock is shared between the two sides.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind};

use str0m::change::{SdpAnswer, SdpOffer};
use tokio::sync::{mpsc, oneshot};

use super::error::SfuError;
use super::event::SfuEvent;
use super::ids::{ParticipantKey, SessionKey};

/// Offers larger than this are refused before parsing; real offers are a few kilobytes.
const MAX_SDP_BYTES: usize = 64 * 1024;

/// A request to the media loop.
pub(crate) enum Command {
    AddParticipant {
        session: SessionKey,
        participant: ParticipantKey,
        /// The gateway address the client's signalling reached, when known.
        reached: Option<IpAddr>,
        offer: ClientOffer,
        reply: oneshot::Sender<Result<String, SfuError>>,
    },
    Renegotiate {
        participant: ParticipantKey,
        offer: ClientOffer,
        reply: oneshot::Sender<Result<String, SfuError>>,
    },
    Answer {
        participant: ParticipantKey,
        answer: SdpAnswer,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    RemoveParticipant {
        participant: ParticipantKey,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    SetForwarding {
        participant: ParticipantKey,
        enabled: bool,
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    Subscribe(mpsc::UnboundedSender<SfuEvent>),
    /// Makes the participant's next handling panic, to prove the loop survives it.
    #[cfg(test)]
    InjectPanic(ParticipantKey),
}

/// A cheap, cloneable handle to the running media core.
///
/// The media loop runs until every handle has been dropped.
#[derive(Clone)]
pub struct SfuHandle {
    // Unbounded so that `events()` can register synchronously; every other command awaits its
    // reply, so the number queued is bounded by the number of concurrent callers.
    commands: mpsc::UnboundedSender<Command>,
    local_addr: SocketAddr,
    local_tcp_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for SfuHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SfuHandle").finish_non_exhaustive()
    }
}

impl SfuHandle {
    pub(crate) fn new(
        commands: mpsc::UnboundedSender<Command>,
        local_addr: SocketAddr,
        local_tcp_addr: Option<SocketAddr>,
    ) -> Self {
        SfuHandle { commands, local_addr, local_tcp_addr }
    }

    /// The address the media socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the ICE-TCP listener is bound to; `None` when ICE-TCP is off.
    pub fn local_tcp_addr(&self) -> Option<SocketAddr> {
        self.local_tcp_addr
    }

    /// Adds a participant to `session` from the client's offer and returns the gateway's answer.
    ///
    /// The participant starts in the waiting room: no media flows to or from it until
    /// [`SfuHandle::set_forwarding`] admits it.
    pub async fn add_participant(
        &self,
        session: SessionKey,
        participant: ParticipantKey,
        offer_sdp: String,
    ) -> Result<String, SfuError> {
        self.add_participant_via(session, participant, offer_sdp, None).await
    }

    /// [`SfuHandle::add_participant`] for a client whose signalling reached the gateway at
    /// `reached`: where the gateway listens on all its addresses, that is the one its
    /// candidates name, so a client only ever learns the gateway address it already knows.
    pub async fn add_participant_via(
        &self,
        session: SessionKey,
        participant: ParticipantKey,
        offer_sdp: String,
        reached: Option<IpAddr>,
    ) -> Result<String, SfuError> {
        let offer = parse_offer(&offer_sdp)?;
        self.call(|reply| Command::AddParticipant { session, participant, reached, offer, reply }).await?
    }

    /// Applies a further offer from the participant's client to its existing peer connection
    /// (a track added or stopped, or an ICE restart) and returns the gateway's answer. Media
    /// keeps flowing throughout.
    ///
    /// An offer made by a new peer connection (another DTLS certificate) cannot be applied in
    /// place: that is [`SfuError::NewPeerConnection`], and the caller replaces the participant.
    /// If the media core's own offer to this participant is still unanswered, the client's
    /// offer wins and the media core offers its changes again afterwards.
    pub async fn renegotiate(&self, participant: ParticipantKey, offer_sdp: String) -> Result<String, SfuError> {
        let offer = parse_offer(&offer_sdp)?;
        self.call(|reply| Command::Renegotiate { participant, offer, reply }).await?
    }

    /// Delivers the client's answer to an [`SfuEvent::Offer`].
    pub async fn answer(&self, participant: ParticipantKey, answer_sdp: String) -> Result<(), SfuError> {
        let answer = parse_guarded(&answer_sdp, SdpAnswer::from_sdp_string)?;
        self.call(|reply| Command::Answer { participant, answer, reply }).await?
    }

    /// Ends a participant's connection. No event follows for a removal the caller asked for.
    pub async fn remove_participant(&self, participant: ParticipantKey) -> Result<(), SfuError> {
        self.call(|reply| Command::RemoveParticipant { participant, reply }).await?
    }

    /// Admits a participant (media flows both ways with the others admitted to its session)
    /// or returns it to the waiting room (it neither sends to nor receives from anyone).
    pub async fn set_forwarding(&self, participant: ParticipantKey, enabled: bool) -> Result<(), SfuError> {
        self.call(|reply| Command::SetForwarding { participant, enabled, reply }).await?
    }

    /// A new stream of every event from now on. Each call gets its own receiver and every
    /// receiver sees every event, so subscribe before adding participants. If the loop has
    /// stopped, the receiver is already closed.
    pub fn events(&self) -> mpsc::UnboundedReceiver<SfuEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        // A send error means the loop is gone; the dropped sender closes `rx`, which says so.
        let _ = self.commands.send(Command::Subscribe(tx));
        rx
    }

    #[cfg(test)]
    pub(crate) fn inject_panic(&self, participant: ParticipantKey) {
        let _ = self.commands.send(Command::InjectPanic(participant));
    }

    async fn call<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, SfuError> {
        let (reply, response) = oneshot::channel();
        self.commands.send(command(reply)).map_err(|_| SfuError::Stopped)?;
        response.await.map_err(|_| SfuError::Stopped)
    }
}

/// A client's parsed offer, with the DTLS fingerprints that name the peer connection it came
/// from.
pub(crate) struct ClientOffer {
    pub(crate) sdp: SdpOffer,
    pub(crate) fingerprints: Fingerprints,
}

/// The `a=fingerprint` values of an offer, normalised: the identity of the client's DTLS
/// certificate, and so of its peer connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprints(BTreeSet<String>);

impl Fingerprints {
    fn of(sdp: &str) -> Self {
        let values = sdp
            .lines()
            .filter_map(|l| l.trim().strip_prefix("a=fingerprint:"))
            .map(|v| v.trim().to_ascii_lowercase())
            .collect();
        Fingerprints(values)
    }
}

/// Parses a client's offer and refuses ones the gateway cannot use.
pub(crate) fn parse_offer(sdp: &str) -> Result<ClientOffer, SfuError> {
    // Data-channel-only offers parse, but a video gateway has nothing to do with them.
    let has_media = sdp.lines().any(|l| l.starts_with("m=audio ") || l.starts_with("m=video "));
    if !has_media {
        return Err(SfuError::BadSdp("the offer has no audio or video section".into()));
    }
    let fingerprints = Fingerprints::of(sdp);
    if fingerprints.0.is_empty() {
        return Err(SfuError::BadSdp("the offer has no DTLS fingerprint".into()));
    }
    Ok(ClientOffer { sdp: parse_guarded(sdp, SdpOffer::from_sdp_string)?, fingerprints })
}

/// Runs str0m's SDP parser on untrusted text, turning both errors and panics into `BadSdp`.
fn parse_guarded<T, E: std::fmt::Display>(sdp: &str, parse: impl FnOnce(&str) -> Result<T, E>) -> Result<T, SfuError> {
    if sdp.len() > MAX_SDP_BYTES {
        return Err(SfuError::BadSdp(format!("the description is larger than {MAX_SDP_BYTES} bytes")));
    }
    match catch_unwind(AssertUnwindSafe(|| parse(sdp))) {
        Ok(Ok(parsed)) => Ok(parsed),
        Ok(Err(e)) => Err(SfuError::BadSdp(e.to_string())),
        Err(_) => Err(SfuError::BadSdp("the description could not be parsed".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad(sdp: &str) {
        assert!(matches!(parse_offer(sdp), Err(SfuError::BadSdp(_))), "accepted: {sdp:?}");
    }

    #[test]
    fn garbage_and_media_less_offers_are_bad_sdp() {
        bad("");
        bad("hello, world");
        bad("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n");
        bad("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n");
        bad("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96");
        bad(&"m=audio ".repeat(20_000));
    }
}
