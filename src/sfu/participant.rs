//! One participant's peer connection: its str0m `Rtc`, the tracks it publishes and the tracks
//! of others it receives, and the renegotiation that adds or stops those.
//!
//! A participant never touches another participant. Everything that crosses between them
//! leaves as an [`Effect`], which the media loop routes within the session.

use std::time::Instant;

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::net::{TcpType, Transmit};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tracing::debug;

use super::config::Advertised;
use super::error::SfuError;
use super::event::{DisconnectReason, FailureReason, SfuEvent};
use super::handle::{ClientOffer, Fingerprints};
use super::ids::{ParticipantKey, SessionKey};
use super::keyframe::{KEYFRAME_REQUEST_INTERVAL, KeyframeThrottle};

/// One published track, named by who publishes it and its m-line on their connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SourceTrack {
    pub(crate) publisher: ParticipantKey,
    pub(crate) mid: Mid,
}

/// A cross-participant consequence of driving one participant, routed by the media loop.
#[derive(Debug)]
pub(crate) enum Effect {
    /// The participant started publishing a track; subscribers need an m-line for it.
    TrackPublished { source: SourceTrack, kind: MediaKind, label: String },
    /// The participant stopped publishing a track; subscribers' m-lines for it are stopped.
    TrackUnpublished { source: SourceTrack },
    /// A media frame (audio packet or complete video frame) to fan out. Boxed: `MediaData`
    /// is ten times the size of the other variants, and effects queue up by the hundred.
    Media { publisher: ParticipantKey, data: Box<MediaData> },
    /// A subscriber, or the loss of a packet, calls for a keyframe from a source.
    KeyframeWanted { source: SourceTrack, kind: KeyframeRequestKind },
    /// Something the caller must hear about.
    Event(SfuEvent),
}

/// A track this participant publishes to the gateway.
#[derive(Debug)]
struct TrackIn {
    mid: Mid,
    kind: MediaKind,
    /// Keyframe requests from every subscriber of this track pass through here.
    throttle: KeyframeThrottle,
}

/// A track of another participant that this participant receives.
#[derive(Debug)]
struct TrackOut {
    source: SourceTrack,
    kind: MediaKind,
    /// The publisher's stream label, so the client groups a publisher's tracks together.
    label: String,
    state: TrackOutState,
    /// The publisher left; the m-line must be stopped once it is negotiated.
    gone: bool,
}

/// Where an outgoing m-line is in offer/answer. Media is only written in `Open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrackOutState {
    ToOpen,
    Negotiating(Mid),
    Open(Mid),
    ToStop(Mid),
    NegotiatingStop(Mid),
}

/// How a participant's connection ended, decided inside the participant and acted on by the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    Disconnected(DisconnectReason),
    Failed(FailureReason),
}

/// A participant and the str0m state machine of its peer connection.
pub(crate) struct Participant {
    pub(crate) key: ParticipantKey,
    pub(crate) session: SessionKey,
    rtc: Rtc,
    /// Admitted from the waiting room: only then does media flow to and from this participant.
    pub(crate) forwarding: bool,
    /// Renegotiation waits for the connection: by then the client has applied our first
    /// answer, so an offer from us can never collide with its own pending offer.
    connected: bool,
    /// Our offer that awaits the client's answer. str0m negotiates one change set at a time.
    pending: Option<SdpPendingOffer>,
    /// The client's DTLS certificate: a later offer renegotiates this connection only if it
    /// comes from the same one.
    fingerprints: Fingerprints,
    tracks_in: Vec<TrackIn>,
    tracks_out: Vec<TrackOut>,
    /// Opaque stream label for this participant's tracks in other participants' SDP; it is
    /// not the caller's key, so one party's id never reaches the other.
    pub(crate) label: String,
    /// When str0m (or a deferred keyframe request) next needs this participant driven.
    pub(crate) deadline: Instant,
    /// Packets to send (over UDP or an ICE-TCP connection, as str0m says), drained by the loop
    /// after every call so that a panic mid-call loses only this participant's output.
    pub(crate) datagrams: Vec<Transmit>,
    /// Cross-participant effects, drained by the loop like `datagrams`.
    pub(crate) effects: Vec<Effect>,
    /// Set once the connection has ended; the loop removes the participant.
    pub(crate) ending: Option<Ending>,
    /// The gateway's own candidates this participant was given.
    pub(crate) candidates: Advertised,
}

impl Participant {
    /// Creates the peer connection and accepts the client's offer, returning our answer.
    ///
    /// Only the gateway's own host candidates are added; the client's candidates stay inside
    /// str0m, which in ICE-lite mode never sends to them unprompted. TCP candidates are
    /// passive: the client connects, the gateway never dials.
    pub(crate) fn accept(
        key: ParticipantKey,
        session: SessionKey,
        label: String,
        config: RtcConfig,
        candidates: &Advertised,
        offer: ClientOffer,
        now: Instant,
    ) -> Result<(Participant, SdpAnswer), SfuError> {
        let mut rtc = config.build(now);
        let udp = candidates.udp.iter().map(|addr| Candidate::builder().udp().host(*addr).build());
        let tcp =
            candidates.tcp.iter().map(|addr| Candidate::builder().tcp().host(*addr).tcptype(TcpType::Passive).build());
        for candidate in udp.chain(tcp) {
            let candidate = candidate.map_err(|e| SfuError::Engine(e.to_string()))?;
            if rtc.add_local_candidate(candidate).is_none() {
                return Err(SfuError::Engine("the gateway's own candidate was refused".into()));
            }
        }
        let answer = rtc.sdp_api().accept_offer(offer.sdp).map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let participant = Participant {
            key,
            session,
            rtc,
            forwarding: false,
            connected: false,
            pending: None,
            fingerprints: offer.fingerprints,
            tracks_in: Vec::new(),
            tracks_out: Vec::new(),
            label,
            deadline: now,
            datagrams: Vec::new(),
            effects: Vec::new(),
            ending: None,
            candidates: candidates.clone(),
        };
        Ok((participant, answer))
    }

    pub(crate) fn accepts(&self, input: &Input) -> bool {
        self.ending.is_none() && self.rtc.accepts(input)
    }

    /// Feeds a datagram (or a timeout) into str0m.
    pub(crate) fn handle_input(&mut self, input: Input) {
        if self.ending.is_some() {
            return;
        }
        if let Err(e) = self.rtc.handle_input(input) {
            self.fail(e.to_string());
        }
    }

    /// Advances str0m to `now` and drains its output until it asks for a timeout.
    pub(crate) fn drive(&mut self, now: Instant) {
        if self.ending.is_some() {
            return;
        }
        self.release_deferred_keyframe_requests(now);
        self.negotiate_if_needed();
        self.handle_input(Input::Timeout(now));
        while self.ending.is_none() {
            if !self.rtc.is_alive() {
                self.end(Ending::Disconnected(DisconnectReason::Closed));
                return;
            }
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    let throttle_deadline = self.tracks_in.iter().filter_map(|t| t.throttle.deadline()).min();
                    self.deadline = throttle_deadline.map_or(t, |d| d.min(t));
                    return;
                }
                Ok(Output::Transmit(t)) => self.datagrams.push(t),
                Ok(Output::Event(e)) => self.handle_event(e, now),
                Err(e) => self.fail(e.to_string()),
            }
        }
    }

    fn handle_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Connected => {
                self.connected = true;
                self.effects.push(Effect::Event(SfuEvent::Connected { participant: self.key }));
                // Tracks queued before the connection came up can be offered now.
                self.negotiate_if_needed();
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                // ICE-lite cannot restart ICE from our side; the client reconnects afresh.
                self.rtc.disconnect();
                self.end(Ending::Disconnected(DisconnectReason::IceDisconnected));
            }
            Event::MediaAdded(added) if added.direction.is_receiving() => self.start_publishing(added.mid, added.kind),
            Event::MediaChanged(changed) => {
                // The client renegotiated a track's direction: a stopped screen share, or a
                // camera turned back on.
                let publishing = self.tracks_in.iter().position(|t| t.mid == changed.mid);
                match (publishing, changed.direction.is_receiving()) {
                    (Some(index), false) => {
                        self.tracks_in.remove(index);
                        let source = SourceTrack { publisher: self.key, mid: changed.mid };
                        self.effects.push(Effect::TrackUnpublished { source });
                    }
                    (None, true) => {
                        if let Some(kind) = self.rtc.media(changed.mid).map(|m| m.kind()) {
                            self.start_publishing(changed.mid, kind);
                        }
                    }
                    _ => {}
                }
            }
            Event::MediaData(data) => {
                if !data.contiguous {
                    // A gap that NACK could not fill: subscribers' decoders need a fresh keyframe.
                    self.request_keyframe(data.mid, KeyframeRequestKind::Pli, now);
                }
                self.effects.push(Effect::Media { publisher: self.key, data: Box::new(data) });
            }
            Event::KeyframeRequest(req) => {
                if !self.forwarding {
                    // A participant in the waiting room has no say over anyone's encoder.
                    return;
                }
                let wanted = self.tracks_out.iter().find(|t| matches!(t.state, TrackOutState::Open(m) if m == req.mid));
                if let Some(track) = wanted {
                    self.effects.push(Effect::KeyframeWanted { source: track.source, kind: req.kind });
                }
            }
            Event::EgressBitrateEstimate(estimate) => {
                debug!(participant = %self.key, ?estimate, "egress bandwidth estimate");
            }
            Event::Closed => self.end(Ending::Disconnected(DisconnectReason::Closed)),
            _ => {}
        }
    }

    fn start_publishing(&mut self, mid: Mid, kind: MediaKind) {
        let throttle = KeyframeThrottle::new(KEYFRAME_REQUEST_INTERVAL);
        self.tracks_in.push(TrackIn { mid, kind, throttle });
        let source = SourceTrack { publisher: self.key, mid };
        self.effects.push(Effect::TrackPublished { source, kind, label: self.label.clone() });
    }

    /// Applies a further offer from the client to this peer connection and returns our answer.
    pub(crate) fn renegotiate(&mut self, offer: ClientOffer) -> Result<SdpAnswer, SfuError> {
        if offer.fingerprints != self.fingerprints {
            return Err(SfuError::NewPeerConnection(self.key));
        }
        // The client's offer wins a glare: str0m drops our unanswered offer when it accepts
        // the client's, so our changes go back in the queue and are offered again afterwards.
        if self.pending.take().is_some() {
            self.requeue_negotiating();
        }
        self.rtc.sdp_api().accept_offer(offer.sdp).map_err(|e| SfuError::BadSdp(e.to_string()))
    }

    /// Queues an m-line for `source` unless this participant already receives it.
    ///
    /// Returns true when the m-line already exists and is open, so the caller should ask the
    /// publisher for a keyframe now (a newly queued m-line asks once its answer arrives).
    pub(crate) fn subscribe(&mut self, source: SourceTrack, kind: MediaKind, label: &str) -> bool {
        if let Some(existing) = self.tracks_out.iter().find(|t| t.source == source && !t.gone) {
            return matches!(existing.state, TrackOutState::Open(_));
        }
        let label = label.to_owned();
        self.tracks_out.push(TrackOut { source, kind, label, state: TrackOutState::ToOpen, gone: false });
        false
    }

    /// Some received tracks are no longer published (their publisher left or stopped them):
    /// their m-lines are stopped.
    pub(crate) fn sources_gone(&mut self, gone: impl Fn(&SourceTrack) -> bool) {
        self.tracks_out.retain(|t| !(gone(&t.source) && t.state == TrackOutState::ToOpen));
        for track in self.tracks_out.iter_mut().filter(|t| gone(&t.source)) {
            track.gone = true;
            if let TrackOutState::Open(mid) = track.state {
                track.state = TrackOutState::ToStop(mid);
            }
        }
    }

    /// The tracks this participant publishes, for subscribers that arrive later.
    pub(crate) fn published(&self) -> impl Iterator<Item = (SourceTrack, MediaKind)> + '_ {
        self.tracks_in.iter().map(|t| (SourceTrack { publisher: self.key, mid: t.mid }, t.kind))
    }

    /// Writes a frame from `publisher` to the matching open m-line, if there is one.
    pub(crate) fn write_media(&mut self, publisher: ParticipantKey, data: &MediaData) {
        let source = SourceTrack { publisher, mid: data.mid };
        let Some(mid) = self.tracks_out.iter().find_map(|t| match t.state {
            TrackOutState::Open(mid) if t.source == source => Some(mid),
            _ => None,
        }) else {
            return;
        };
        let Some(writer) = self.rtc.writer(mid) else {
            return;
        };
        // The two clients may have negotiated different payload types for the same codec.
        let Some(pt) = writer.match_params(data.params) else {
            debug!(participant = %self.key, "dropping a frame in a codec this participant did not negotiate");
            return;
        };
        if let Err(e) = writer.write(pt, data.network_time, data.time, data.data.clone()) {
            debug!(participant = %self.key, error = %e, "dropping a frame the media engine refused");
        }
    }

    /// Asks the client for a keyframe on one of its tracks, at most once per interval.
    pub(crate) fn request_keyframe(&mut self, mid: Mid, kind: KeyframeRequestKind, now: Instant) {
        let Some(track) = self.tracks_in.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        if track.kind != MediaKind::Video {
            return;
        }
        if let Some(kind) = track.throttle.request(now, kind) {
            self.send_keyframe_request(mid, kind);
        }
    }

    fn release_deferred_keyframe_requests(&mut self, now: Instant) {
        let due: Vec<(Mid, KeyframeRequestKind)> =
            self.tracks_in.iter_mut().filter_map(|t| t.throttle.poll(now).map(|k| (t.mid, k))).collect();
        for (mid, kind) in due {
            self.send_keyframe_request(mid, kind);
        }
    }

    fn send_keyframe_request(&mut self, mid: Mid, kind: KeyframeRequestKind) {
        let Some(mut writer) = self.rtc.writer(mid) else {
            return;
        };
        // Fall back to the other kind when the client did not negotiate the one asked for.
        let kind = if writer.is_request_keyframe_possible(kind) {
            kind
        } else {
            match kind {
                KeyframeRequestKind::Pli => KeyframeRequestKind::Fir,
                KeyframeRequestKind::Fir => KeyframeRequestKind::Pli,
            }
        };
        if let Err(e) = writer.request_keyframe(None, kind) {
            // Normal before the first packet of the track has arrived.
            debug!(participant = %self.key, error = %e, "keyframe request not sent");
        }
    }

    /// Sends the client an offer for queued m-line changes, if it is ready for one.
    fn negotiate_if_needed(&mut self) {
        if !self.connected || self.pending.is_some() || self.ending.is_some() {
            return;
        }
        let mut change = self.rtc.sdp_api();
        for track in &mut self.tracks_out {
            match track.state {
                TrackOutState::ToOpen => {
                    let mid = change.add_media(track.kind, Direction::SendOnly, Some(track.label.clone()), None, None);
                    track.state = TrackOutState::Negotiating(mid);
                }
                TrackOutState::ToStop(mid) => {
                    change.stop_media(mid);
                    track.state = TrackOutState::NegotiatingStop(mid);
                }
                _ => {}
            }
        }
        if !change.has_changes() {
            return;
        }
        if let Some((offer, pending)) = change.apply() {
            self.pending = Some(pending);
            self.effects.push(Effect::Event(SfuEvent::Offer { participant: self.key, sdp: offer.to_sdp_string() }));
        }
    }

    /// Applies the client's answer to our offer. Returns the video sources that just opened,
    /// whose publishers should send a keyframe.
    pub(crate) fn accept_answer(&mut self, answer: SdpAnswer) -> Result<Vec<SourceTrack>, SfuError> {
        let Some(pending) = self.pending.take() else {
            return Err(SfuError::NoPendingOffer(self.key));
        };
        if let Err(e) = self.rtc.sdp_api().accept_answer(pending, answer) {
            self.requeue_negotiating();
            return Err(SfuError::BadSdp(e.to_string()));
        }
        let mut opened = Vec::new();
        self.tracks_out.retain(|t| !matches!(t.state, TrackOutState::NegotiatingStop(_)));
        for track in &mut self.tracks_out {
            if let TrackOutState::Negotiating(mid) = track.state {
                if track.gone {
                    track.state = TrackOutState::ToStop(mid);
                } else {
                    track.state = TrackOutState::Open(mid);
                    if track.kind == MediaKind::Video {
                        opened.push(track.source);
                    }
                }
            }
        }
        Ok(opened)
    }

    /// Puts the changes of an offer that will not be answered back in the queue, so the next
    /// offer carries them again.
    fn requeue_negotiating(&mut self) {
        for track in &mut self.tracks_out {
            track.state = match track.state {
                TrackOutState::Negotiating(_) => TrackOutState::ToOpen,
                TrackOutState::NegotiatingStop(mid) => TrackOutState::ToStop(mid),
                other => other,
            };
        }
    }

    /// Closes the connection on the caller's request.
    pub(crate) fn disconnect(&mut self) {
        self.rtc.disconnect();
    }

    fn fail(&mut self, reason: String) {
        self.rtc.disconnect();
        self.end(Ending::Failed(FailureReason::Engine(reason)));
    }

    fn end(&mut self, ending: Ending) {
        if self.ending.is_none() {
            self.ending = Some(ending);
        }
    }
}
