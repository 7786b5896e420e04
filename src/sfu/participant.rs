//! One participant's peer connection: its str0m `Rtc`, the tracks it publishes and the tracks
//! of others it receives, and the renegotiation that adds or stops those.
//!
//! A participant never touches another participant. Everything that crosses between them
//! leaves as an [`Effect`], which the media loop routes within the session.
//!
//! As a subscriber, a participant receives one layer of each simulcast source, chosen within
//! its own bandwidth estimate (see `simulcast.rs`), and tells str0m's estimator what it is
//! sending and what it would send with ample bandwidth, so the estimator probes upwards.
//!
//! Every statistics interval it reports how its connection fared (`quality.rs`).

use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaKind, Mid, Rid, Rids};
use str0m::net::{TcpType, Transmit};
use str0m::rtp::StreamTx;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tracing::debug;

use super::config::Advertised;
use super::error::SfuError;
use super::event::{DisconnectReason, FailureReason, SfuEvent};
use super::handle::{ClientOffer, Fingerprints};
use super::ids::{ParticipantKey, SessionKey};
use super::keyframe::{KEYFRAME_REQUEST_INTERVAL, LayerThrottles};
use super::quality::QualityMeter;
use super::resend_history::ResendHistory;
use super::simulcast::{self, ALLOCATION_INTERVAL, RateMeter, SimulcastForwarder};

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
    /// A subscriber, or the loss of a packet, calls for a keyframe from a source: from one of
    /// its simulcast layers (`rid`), or from its one stream (`None`).
    KeyframeWanted { source: SourceTrack, rid: Option<Rid>, kind: KeyframeRequestKind },
    /// Something the caller must hear about.
    Event(SfuEvent),
}

/// A track this participant publishes to the gateway.
#[derive(Debug)]
struct TrackIn {
    mid: Mid,
    kind: MediaKind,
    /// Sent in simulcast layers: a keyframe request must then name its layer, since str0m
    /// would otherwise pick any one of them.
    simulcast: bool,
    /// Keyframe requests from every subscriber of this track pass through here, per layer.
    throttles: LayerThrottles,
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
    /// Present once the source is seen sending simulcast layers: which one this participant
    /// gets, and when it may switch.
    layers: Option<SimulcastForwarder>,
    /// What was written on this m-line: the part of the bandwidth budget a track without
    /// layers takes.
    sent: RateMeter,
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

/// Every NACK is answered, as Janus and pion answer them: a receiver asks again for a packet
/// at most once per round trip, so resends stay in proportion to the loss. str0m's default
/// instead drops the queued resends whenever they pass 15 % of the bytes sent, which a lossy
/// link's repeated NACKs reach; with a short history the frames they held are then lost for
/// good.
const RESEND_RATIO_CAP: Option<f32> = None;

/// Sets up a newly opened outgoing video m-line: its resend history covers this participant's
/// round trip, and its packets go out as they arrive rather than through str0m's pacer.
/// Forwarded video is already shaped by the publisher's encoder and pacer, and the layers
/// chosen for this participant fit its estimate; RTP-forwarding SFUs (Janus, mediasoup) do not
/// pace it again.
/// str0m's pacer held a call's first video by up to 200 ms while its estimate climbed from
/// the starting rate, and would hold a non-simulcast source up to its 2 s queue limit
/// whenever the estimate fell below what that source sends.
fn open_outgoing_video(rtc: &mut Rtc, mid: Mid, history: ResendHistory) {
    if let Some(stream) = rtc.direct_api().stream_tx_by_mid(mid, None) {
        keep_for_resending(stream, history);
        stream.set_unpaced(true);
    }
}

/// Gives an outgoing video stream its resend history (dropping what it held).
fn keep_for_resending(stream: &mut StreamTx, history: ResendHistory) {
    stream.set_rtx_cache(history.packets(), history.kept(), RESEND_RATIO_CAP);
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
    /// The latest estimate of what the path to this participant carries (TWCC, or REMB from
    /// a client without TWCC): the budget its simulcast layers are chosen within. Until the
    /// first estimate, only the lowest layers are sent.
    estimate: Option<Bitrate>,
    /// When the simulcast layers this participant receives are next reconsidered.
    next_allocation: Instant,
    /// What the estimator was last told (minimum, desired, in bits per second), so it is told
    /// again only on a real change: each raise of `desired` may start a probe.
    bwe_told: (u64, u64),
    /// The gateway's own candidates this participant was given.
    pub(crate) candidates: Advertised,
    /// Gathers str0m's statistics into the quality reported to the caller.
    quality: QualityMeter,
    /// How long the video sent to this participant is kept for its NACKs, from its round trip.
    resend_history: ResendHistory,
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
            estimate: None,
            next_allocation: now,
            bwe_told: (0, 0),
            candidates: candidates.clone(),
            quality: QualityMeter::default(),
            resend_history: ResendHistory::default(),
        };
        Ok((participant, answer))
    }

    pub(crate) fn accepts(&self, input: &Input) -> bool {
        self.ending.is_none() && self.rtc.accepts(input)
    }

    /// Feeds a datagram (or a timeout) into str0m.
    fn handle_input(&mut self, input: Input) {
        if self.ending.is_some() {
            return;
        }
        if let Err(e) = self.rtc.handle_input(input) {
            self.fail(e.to_string());
        }
    }

    /// Feeds a received datagram into str0m and drains what it produced. str0m advances its
    /// clock to the datagram's arrival as part of handling it, so nothing else is owed until
    /// its next deadline: a second timeout at the same instant would walk every timer of the
    /// session again for nothing, once per packet.
    pub(crate) fn receive(&mut self, input: Input, now: Instant) {
        self.handle_input(input);
        self.drain(now);
    }

    /// Advances str0m to `now` and drains its output until it asks for a timeout. Whatever was
    /// queued since str0m last saw the time (frames written, keyframe requests, offers) waits
    /// for that timeout: str0m's pacer releases nothing before it.
    pub(crate) fn drive(&mut self, now: Instant) {
        if self.ending.is_some() {
            return;
        }
        self.release_deferred_keyframe_requests(now);
        self.negotiate_if_needed();
        self.handle_input(Input::Timeout(now));
        self.drain(now);
    }

    /// Polls str0m until it asks for a timeout, handling its events and keeping its datagrams.
    fn drain(&mut self, now: Instant) {
        while self.ending.is_none() {
            if !self.rtc.is_alive() {
                self.end(Ending::Disconnected(DisconnectReason::Closed));
                return;
            }
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.report_quality();
                    let throttle_deadline = self.tracks_in.iter().filter_map(|t| t.throttles.deadline()).min();
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
                if data.rid.is_some()
                    && let Some(track) = self.tracks_in.iter_mut().find(|t| t.mid == data.mid)
                {
                    track.simulcast = true;
                }
                if !data.contiguous {
                    // A gap that NACK could not fill: subscribers' decoders need a fresh keyframe.
                    self.request_keyframe(data.mid, data.rid, KeyframeRequestKind::Pli, now);
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
                    // Of a simulcast source, the layer this participant is shown.
                    let rid = track.layers.as_ref().and_then(SimulcastForwarder::forwarding);
                    self.effects.push(Effect::KeyframeWanted { source: track.source, rid, kind: req.kind });
                }
            }
            Event::EgressBitrateEstimate(kind) => {
                debug!(participant = %self.key, ?kind, "egress bandwidth estimate");
                if let BweKind::Twcc { estimate, .. } | BweKind::Remb { estimate, .. } = kind {
                    self.estimate = Some(estimate);
                    self.allocate_layers(now);
                }
            }
            Event::PeerStats(stats) => self.quality.peer(&stats),
            Event::MediaIngressStats(stats) => self.quality.ingress(&stats),
            Event::MediaEgressStats(stats) => self.quality.egress(&stats),
            Event::Closed => self.end(Ending::Disconnected(DisconnectReason::Closed)),
            _ => {}
        }
    }

    /// Reports the quality of the interval whose statistics str0m has just emitted in full
    /// (they all come before its next timeout). Nothing is reported before the connection is
    /// up, when there is nothing to measure.
    fn report_quality(&mut self) {
        let Some(quality) = self.quality.take() else {
            return;
        };
        if let Some(rtt) = quality.rtt {
            self.cover_round_trip(rtt);
        }
        if self.connected {
            self.effects.push(Effect::Event(SfuEvent::Quality { participant: self.key, quality }));
        }
    }

    /// Lengthens the resend history of every open outgoing video stream when this
    /// participant's round trip has grown past what it covers.
    fn cover_round_trip(&mut self, rtt: Duration) {
        if !self.resend_history.cover(rtt) {
            return;
        }
        debug!(participant = %self.key, kept_ms = self.resend_history.kept().as_millis(), "resend history lengthened");
        for track in &self.tracks_out {
            if let (TrackOutState::Open(mid), MediaKind::Video) = (track.state, track.kind)
                && let Some(stream) = self.rtc.direct_api().stream_tx_by_mid(mid, None)
            {
                keep_for_resending(stream, self.resend_history);
            }
        }
    }

    fn start_publishing(&mut self, mid: Mid, kind: MediaKind) {
        let throttles = LayerThrottles::new(KEYFRAME_REQUEST_INTERVAL);
        // The offer's `a=simulcast` names the layers; frames with a rid also reveal them.
        let simulcast =
            self.rtc.media(mid).is_some_and(|m| matches!(m.rids_rx(), Rids::Specific(rids) if !rids.is_empty()));
        self.tracks_in.push(TrackIn { mid, kind, simulcast, throttles });
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
        let state = TrackOutState::ToOpen;
        let (layers, sent) = (None, RateMeter::default());
        self.tracks_out.push(TrackOut { source, kind, label, state, gone: false, layers, sent });
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

    /// Writes a frame from `publisher` to the matching open m-line, if there is one: every
    /// frame of a plain source, and of a simulcast source those of the layer chosen for this
    /// participant.
    pub(crate) fn write_media(&mut self, publisher: ParticipantKey, data: &MediaData, now: Instant) {
        self.forward_frame(publisher, data, now);
        if data.rid.is_some() && now >= self.next_allocation {
            self.allocate_layers(now);
        }
    }

    fn forward_frame(&mut self, publisher: ParticipantKey, data: &MediaData, now: Instant) {
        let source = SourceTrack { publisher, mid: data.mid };
        let Some(track) = self.tracks_out.iter_mut().find(|t| t.source == source && !t.gone) else {
            return;
        };
        let time = match data.rid {
            None => data.time,
            Some(rid) => {
                // Every layer is measured, even before the m-line opens, so a choice can be
                // made as soon as it does.
                let layers = track.layers.get_or_insert_with(SimulcastForwarder::default);
                layers.observe(rid, data.data.len(), now);
                match layers.pass(rid, data.is_keyframe(), data.time, data.network_time) {
                    Some(time) => time,
                    None => return,
                }
            }
        };
        let TrackOutState::Open(mid) = track.state else {
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
        match writer.write(pt, data.network_time, time, data.data.clone()) {
            Ok(()) => track.sent.record(now, data.data.len()),
            Err(e) => debug!(participant = %self.key, error = %e, "dropping a frame the media engine refused"),
        }
    }

    /// Shares this participant's bandwidth estimate between the simulcast sources it receives,
    /// after what its plain tracks (audio, a screen without layers) take, asks publishers for
    /// keyframes of newly chosen layers, and tells the estimator what to aim for.
    fn allocate_layers(&mut self, now: Instant) {
        self.next_allocation = now + ALLOCATION_INTERVAL;
        if !self.forwarding {
            // Out of the consultation (not admitted yet, or no longer): no say over anyone's
            // encoder, and nothing to receive.
            return;
        }
        let open = |t: &&TrackOut| matches!(t.state, TrackOutState::Open(_));
        let plain: u64 =
            self.tracks_out.iter().filter(open).filter(|t| t.layers.is_none()).map(|t| t.sent.bitrate(now)).sum();
        let mut orders = Vec::new();
        let mut candidates = Vec::new();
        for (index, track) in self.tracks_out.iter().enumerate().filter(|(_, t)| open(t)) {
            if let Some(layers) = &track.layers {
                let (order, choosable) = layers.candidates(now);
                orders.push((index, order));
                candidates.push(choosable);
            }
        }
        if candidates.is_empty() {
            // Nothing in simulcast (any more): the estimator has its defaults, as in any plain
            // call, rather than probing for layers that are gone.
            self.tell_estimator(0, 0);
            return;
        }
        let estimate = self.estimate.map_or(0, |e| e.as_u64());
        let chosen = simulcast::allocate(estimate.saturating_sub(plain), &candidates);
        let layers_rate: u64 =
            candidates.iter().zip(&chosen).filter_map(|(c, choice)| choice.and_then(|i| c.rates.get(i))).sum();
        for ((index, order), choice) in orders.iter().zip(chosen) {
            let track = &mut self.tracks_out[*index];
            if let Some(layers) = track.layers.as_mut()
                && let Some(rid) = layers.choose(order, choice, now)
            {
                let (source, kind) = (track.source, KeyframeRequestKind::Pli);
                self.effects.push(Effect::KeyframeWanted { source, rid: Some(rid), kind });
            }
        }
        // What the chosen layers take, not what was sent: after a step down for congestion,
        // padding must not make up the old rate.
        let sending = plain + layers_rate;
        let wanted = plain + candidates.iter().map(simulcast::Candidates::wanted).sum::<u64>();
        self.tell_estimator(sending, wanted);
    }

    /// Tells str0m's estimator the rate being sent (its minimum: padding fills short gaps so
    /// the estimate does not sag between frames) and the rate this participant would take
    /// at the top layers (its desired rate, which it probes towards).
    fn tell_estimator(&mut self, sending: u64, wanted: u64) {
        let wanted = wanted.max(sending);
        let (told_sending, told_wanted) = self.bwe_told;
        // A fifth either way is a real change; smaller ones are measurement noise.
        let moved = |old: u64, new: u64| old.abs_diff(new).saturating_mul(5) > old;
        if moved(told_sending, sending) || moved(told_wanted, wanted) {
            self.rtc.bwe().set_bitrate(Bitrate::bps(sending), Bitrate::bps(wanted));
            self.bwe_told = (sending, wanted);
        }
    }

    /// Asks the client for a keyframe on one of its tracks (on one layer, `rid`, of a
    /// simulcast track), at most once per interval.
    pub(crate) fn request_keyframe(&mut self, mid: Mid, rid: Option<Rid>, kind: KeyframeRequestKind, now: Instant) {
        let Some(track) = self.tracks_in.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        if track.kind != MediaKind::Video {
            return;
        }
        if track.simulcast && rid.is_none() {
            // A request that names no layer would reach whichever one str0m finds first;
            // each subscriber asks for its own layer when it chooses one.
            return;
        }
        if let Some(kind) = track.throttles.request(rid, now, kind) {
            self.send_keyframe_request(mid, rid, kind);
        }
    }

    fn release_deferred_keyframe_requests(&mut self, now: Instant) {
        let mut due = Vec::new();
        for track in &mut self.tracks_in {
            due.extend(track.throttles.poll(now).into_iter().map(|(rid, kind)| (track.mid, rid, kind)));
        }
        for (mid, rid, kind) in due {
            self.send_keyframe_request(mid, rid, kind);
        }
    }

    fn send_keyframe_request(&mut self, mid: Mid, rid: Option<Rid>, kind: KeyframeRequestKind) {
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
        if let Err(e) = writer.request_keyframe(rid, kind) {
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
                        open_outgoing_video(&mut self.rtc, mid, self.resend_history);
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
