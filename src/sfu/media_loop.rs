//! The media loop: one task that owns the UDP socket and every participant's `Rtc`.
//!
//! Each turn waits for a command, a datagram (from the UDP socket, or a packet from an ICE-TCP
//! connection) or the earliest str0m deadline, feeds that in, then settles: drives every
//! participant that has work, routes the effects that crossed between participants (which may
//! give others work), and sends the datagrams produced, each over the transport str0m chose:
//! the UDP socket, or the write queue of the ICE-TCP connection the client opened from that
//! address. The ICE-TCP tasks never see an `Rtc`; they only exchange packets with this loop.
//! All calls into one participant run under `catch_unwind`, so a panic ends that participant
//! and no one else.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use str0m::Input;
use str0m::RtcConfig;
use str0m::change::SdpAnswer;
use str0m::net::{DatagramSend, Protocol, Receive, Transmit};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::config::Advertised;
use super::error::SfuError;
use super::event::{FailureReason, SfuEvent};
use super::handle::{ClientOffer, Command};
use super::ice_tcp::{self, ConnId, TcpEvent};
use super::ids::{ParticipantKey, SessionKey};
use super::participant::{Effect, Ending, Participant};
use super::udp_batch;

/// The longest the loop sleeps with nothing scheduled, so a stalled deadline cannot wedge it.
const MAX_IDLE: Duration = Duration::from_millis(500);

/// Everything the loop owns except the socket and the command receiver, which stay outside
/// so that `select!` can borrow them while the handlers borrow this mutably.
pub(crate) struct MediaLoop {
    /// Template for each participant's `Rtc`: ICE-lite, codecs, BWE, crypto backend.
    rtc_config: RtcConfig,
    /// The gateway's own candidate addresses; the only addresses that ever appear in our SDP.
    advertised: Advertised,
    /// Live ICE-TCP connections by the client's address, which is what str0m names as a
    /// transmit's destination. The TCP tasks own the sockets; the loop only holds their queues.
    tcp_conns: HashMap<SocketAddr, TcpConn>,
    participants: HashMap<ParticipantKey, Participant>,
    /// Who is in each session, so that fanning a frame out visits the publisher's own session
    /// rather than every participant on the gateway.
    members: HashMap<SessionKey, Vec<ParticipantKey>>,
    /// Which participant each remote address belongs to, learnt once that participant's str0m
    /// accepted a packet from it: a packet then finds its owner with one `accepts` call rather
    /// than one per participant. Only accepted addresses are learnt, and a participant's are
    /// forgotten when it leaves, so the map is bounded by the participants' own paths.
    owners: HashMap<(Protocol, SocketAddr), ParticipantKey>,
    /// Source of the opaque stream labels handed to participants.
    next_label: u64,
    /// Participants with work since they were last driven.
    dirty: Vec<ParticipantKey>,
    /// The participants being driven or fanned out to right now: kept between turns so that
    /// neither driving nor fanning a packet out allocates a list of its own.
    scratch: Vec<ParticipantKey>,
    /// Effects waiting to be routed, in the order they happened.
    effects: VecDeque<Effect>,
    /// Datagrams waiting for the socket or an ICE-TCP connection.
    pub(crate) outbox: Vec<Transmit>,
    /// The present as far as the loop is concerned: read from the clock once per turn by `run`,
    /// and set directly by tests that drive the loop in virtual time.
    pub(crate) now: Instant,
    /// Every `events()` receiver still open.
    subscribers: Vec<mpsc::UnboundedSender<SfuEvent>>,
    #[cfg(test)]
    panic_next: Option<ParticipantKey>,
}

impl MediaLoop {
    pub(crate) fn new(rtc_config: RtcConfig, advertised: Advertised) -> Self {
        MediaLoop {
            rtc_config,
            advertised,
            tcp_conns: HashMap::new(),
            participants: HashMap::new(),
            members: HashMap::new(),
            owners: HashMap::new(),
            next_label: 0,
            dirty: Vec::new(),
            scratch: Vec::new(),
            effects: VecDeque::new(),
            outbox: Vec::new(),
            subscribers: Vec::new(),
            now: Instant::now(),
            #[cfg(test)]
            panic_next: None,
        }
    }

    /// Runs until every handle is dropped. `tcp` carries the ICE-TCP connections' packets, if
    /// ICE-TCP is on; dropping it when the loop ends winds the TCP tasks down.
    pub(crate) async fn run(
        mut self,
        socket: UdpSocket,
        mut tcp: Option<mpsc::Receiver<TcpEvent>>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        let mut batch = udp_batch::ReceiveBatch::new();
        loop {
            let wake = self.next_wake();
            let woken = tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => Woken::Command(command),
                    None => break,
                },
                ready = socket.readable() => match ready {
                    Ok(()) => Woken::Readable,
                    Err(e) => {
                        debug!(error = %e, "media socket not readable");
                        Woken::Timeout
                    }
                },
                event = next_tcp_event(&mut tcp) => match event {
                    Some(event) => Woken::Tcp(event),
                    // Only if the TCP side ended on its own; UDP carries on.
                    None => {
                        tcp = None;
                        Woken::Timeout
                    }
                },
                () = tokio::time::sleep_until(wake.into()) => Woken::Timeout,
            };
            self.now = Instant::now();
            match woken {
                Woken::Command(command) => self.handle_command(command),
                Woken::Readable => self.receive_ready(&socket, &mut batch),
                Woken::Tcp(event) => self.handle_tcp_event(event),
                Woken::Timeout => {}
            }
            self.turn();
            flush(&socket, &self.tcp_conns, &mut self.outbox).await;
        }
        for participant in self.participants.values_mut() {
            participant.disconnect();
        }
        info!("media loop stopped");
    }

    /// Handles the datagrams waiting in the socket, one batch of them, settling after each, so
    /// that a busy socket costs one wake-up, one system call, one scan for due deadlines and
    /// one flush per batch rather than per datagram.
    fn receive_ready(&mut self, socket: &UdpSocket, batch: &mut udp_batch::ReceiveBatch) {
        match batch.receive(socket) {
            Ok(()) => {
                for (datagram, source) in batch.datagrams() {
                    self.handle_datagram(Protocol::Udp, datagram, source);
                    self.settle();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // UDP receive errors concern one datagram (or a stale ICMP report); the socket
            // itself stays usable.
            Err(e) => debug!(error = %e, "media socket receive failed"),
        }
    }

    /// When the loop must next run even if nothing arrives.
    pub(crate) fn next_wake(&self) -> Instant {
        let idle = self.now + MAX_IDLE;
        self.participants.values().map(|p| p.deadline).min().map_or(idle, |d| d.min(idle))
    }

    /// Finishes a turn at `self.now`: drives every participant that is due or has work, and
    /// routes what crossed between them. What is left to send waits in `outbox`.
    pub(crate) fn turn(&mut self) {
        self.mark_due(self.now);
        self.settle();
    }

    pub(crate) fn handle_command(&mut self, command: Command) {
        match command {
            Command::AddParticipant { session, participant, reached, offer, reply } => {
                let _ = reply.send(self.add_participant(session, participant, reached, offer));
            }
            Command::Renegotiate { participant, offer, reply } => {
                let _ = reply.send(self.renegotiate(participant, offer));
            }
            Command::Answer { participant, answer, reply } => {
                let _ = reply.send(self.answer(participant, answer));
            }
            Command::RemoveParticipant { participant, reply } => {
                let result = match self.remove(participant) {
                    Some(mut removed) => {
                        // Best effort: a panic while disconnecting a leaving participant is moot.
                        let _ = catch_unwind(AssertUnwindSafe(|| removed.disconnect()));
                        self.forget_addresses_of(participant);
                        self.close_tcp_of(participant);
                        self.publisher_left(removed.session, participant);
                        Ok(())
                    }
                    None => Err(SfuError::UnknownParticipant(participant)),
                };
                let _ = reply.send(result);
            }
            Command::SetForwarding { participant, enabled, reply } => {
                let _ = reply.send(self.set_forwarding(participant, enabled));
            }
            Command::Subscribe(subscriber) => self.subscribers.push(subscriber),
            #[cfg(test)]
            Command::InjectPanic(participant) => {
                self.panic_next = Some(participant);
                self.dirty.push(participant);
            }
        }
    }

    fn add_participant(
        &mut self,
        session: SessionKey,
        key: ParticipantKey,
        reached: Option<std::net::IpAddr>,
        offer: ClientOffer,
    ) -> Result<String, SfuError> {
        if self.participants.contains_key(&key) {
            return Err(SfuError::DuplicateParticipant(key));
        }
        self.next_label += 1;
        let label = format!("gh{}", self.next_label);
        let config = self.rtc_config.clone();
        let advertised = &self.advertised.for_participant(reached);
        let now = self.now;
        // str0m's builder panics rather than returning some errors; keep that inside this call.
        let accepted =
            catch_unwind(AssertUnwindSafe(|| Participant::accept(key, session, label, config, advertised, offer, now)));
        let (participant, answer) = match accepted {
            Ok(result) => result?,
            Err(_) => return Err(SfuError::Engine("setting up the peer connection panicked".into())),
        };
        self.members.entry(session).or_default().push(key);
        self.participants.insert(key, participant);
        self.dirty.push(key);
        info!(%session, participant = %key, "participant added");
        Ok(answer.to_sdp_string())
    }

    fn renegotiate(&mut self, key: ParticipantKey, offer: ClientOffer) -> Result<String, SfuError> {
        let answer = self.guarded(key, |p| p.renegotiate(offer)).ok_or(SfuError::UnknownParticipant(key))??;
        // Driving it now sends any change of ours that the client's offer displaced.
        self.dirty.push(key);
        Ok(answer.to_sdp_string())
    }

    fn answer(&mut self, key: ParticipantKey, answer: SdpAnswer) -> Result<(), SfuError> {
        if !self.participants.contains_key(&key) {
            return Err(SfuError::UnknownParticipant(key));
        }
        let opened = self.guarded(key, |p| p.accept_answer(answer)).ok_or(SfuError::UnknownParticipant(key))??;
        self.dirty.push(key);
        for source in opened {
            self.effects.push_back(Effect::KeyframeWanted {
                source,
                rid: None,
                kind: str0m::media::KeyframeRequestKind::Pli,
            });
        }
        Ok(())
    }

    fn set_forwarding(&mut self, key: ParticipantKey, enabled: bool) -> Result<(), SfuError> {
        let Some(participant) = self.participants.get_mut(&key) else {
            return Err(SfuError::UnknownParticipant(key));
        };
        if participant.forwarding == enabled {
            return Ok(());
        }
        participant.forwarding = enabled;
        let session = participant.session;
        info!(%session, participant = %key, enabled, "forwarding changed");
        if !enabled {
            // Existing m-lines stay negotiated; routing simply stops using them.
            return Ok(());
        }
        // Cross-subscribe with every admitted participant of the session, both ways.
        let peers: Vec<ParticipantKey> =
            self.in_session(session).filter(|p| p.forwarding && p.key != key).map(|p| p.key).collect();
        for peer in peers {
            self.subscribe_all(peer, key);
            self.subscribe_all(key, peer);
        }
        Ok(())
    }

    /// Makes `subscriber` receive every track `publisher` publishes.
    fn subscribe_all(&mut self, subscriber: ParticipantKey, publisher: ParticipantKey) {
        let Some(publisher_state) = self.participants.get(&publisher) else {
            return;
        };
        let label = publisher_state.label.clone();
        let tracks: Vec<_> = publisher_state.published().collect();
        for (source, kind) in tracks {
            let open = self.guarded(subscriber, |p| p.subscribe(source, kind, &label)).unwrap_or(false);
            if open && kind == str0m::media::MediaKind::Video {
                let kind = str0m::media::KeyframeRequestKind::Pli;
                self.effects.push_back(Effect::KeyframeWanted { source, rid: None, kind });
            }
        }
        self.dirty.push(subscriber);
    }

    fn handle_tcp_event(&mut self, event: TcpEvent) {
        match event {
            TcpEvent::Opened { conn, remote, outgoing, validated } => {
                // A same-address entry can only be a connection whose `Closed` is still queued;
                // replacing it drops its queue, which ends it.
                let entry = TcpConn { conn, outgoing, on_validated: Some(validated), owner: None };
                self.tcp_conns.insert(remote, entry);
            }
            TcpEvent::Packet { conn, remote, data } => self.handle_tcp_packet(conn, remote, &data),
            TcpEvent::Closed { conn, remote } => {
                if self.tcp_conns.get(&remote).is_some_and(|c| c.conn == conn) {
                    self.tcp_conns.remove(&remote);
                }
            }
        }
    }

    /// A packet from an ICE-TCP connection. Until a participant has accepted a STUN binding
    /// request on it (checked against that participant's ICE credentials), a connection gets
    /// nothing else through, so an unknown client cannot reach DTLS or RTP handling over TCP.
    fn handle_tcp_packet(&mut self, conn: ConnId, remote: SocketAddr, data: &[u8]) {
        let Some(entry) = self.tcp_conns.get(&remote).filter(|c| c.conn == conn) else {
            return;
        };
        let binding_request = ice_tcp::is_binding_request(data);
        if entry.on_validated.is_some() && !binding_request {
            debug!("ICE-TCP packet before the connection was validated; dropped");
            return;
        }
        let owner = self.handle_datagram(Protocol::Tcp, data, remote);
        // An owner that ended while handling the request has already had its connections
        // closed; validating this one for it would leave it without an owner to end with.
        if let Some(owner) = owner.filter(|k| binding_request && self.participants.contains_key(k))
            && let Some(entry) = self.tcp_conns.get_mut(&remote)
            && let Some(validated) = entry.on_validated.take()
        {
            entry.owner = Some(owner);
            // The connection task may already be gone; its `Closed` event will follow.
            let _ = validated.send(());
        }
    }

    /// Feeds one received packet to the participant that accepts it, and names that participant.
    pub(crate) fn handle_datagram(
        &mut self,
        proto: Protocol,
        data: &[u8],
        source: SocketAddr,
    ) -> Option<ParticipantKey> {
        // The destination is set once the owner is known: `accepts` does not read it.
        let Ok(receive) = Receive::new(proto, source, source, data) else {
            // Not STUN, DTLS, RTP or RTCP: nothing to do with us.
            return None;
        };
        let mut input = Input::Receive(self.now, receive);
        // `accepts` only reads state, but it runs on untrusted input: a panic there counts as
        // "not this participant" and the participant's own handling will meet it again.
        let accepts = |p: &Participant| catch_unwind(AssertUnwindSafe(|| p.accepts(&input))).unwrap_or(false);
        // The participant last seen on this path, if it still takes the packet (a client that
        // reconnects from the same address is a new participant); otherwise ask them all.
        let known = self.owners.get(&(proto, source)).and_then(|key| self.participants.get(key)).filter(|p| accepts(p));
        let owner = match known {
            Some(owner) => owner,
            None => {
                let Some(owner) = self.participants.values().find(|p| accepts(p)) else {
                    // Common for the first STUN packets of a client whose offer is still in flight.
                    debug!(?proto, "no participant accepts a datagram");
                    return None;
                };
                self.owners.insert((proto, source), owner.key);
                owner
            }
        };
        // str0m matches STUN requests against the participant's candidates, so the destination
        // is the address its candidate advertised (the public one behind a 1:1 NAT, or the one
        // its signalling reached), not the socket's own.
        let key = owner.key;
        let destination = owner.candidates.destination(proto, source)?;
        if let Input::Receive(_, receive) = &mut input {
            receive.destination = destination;
        }
        let now = self.now;
        self.guarded(key, |p| p.receive(input, now));
        Some(key)
    }

    /// Marks every participant whose str0m deadline has passed.
    fn mark_due(&mut self, now: Instant) {
        self.dirty.extend(self.participants.values().filter(|p| p.deadline <= now).map(|p| p.key));
    }

    /// Drives participants and routes effects until nothing is left to do.
    fn settle(&mut self) {
        loop {
            while let Some(effect) = self.effects.pop_front() {
                self.route(effect);
            }
            if self.dirty.is_empty() {
                return;
            }
            let mut driving = std::mem::take(&mut self.scratch);
            driving.clear();
            std::mem::swap(&mut driving, &mut self.dirty);
            driving.sort_unstable();
            driving.dedup();
            let now = self.now;
            for key in driving.drain(..) {
                self.guarded(key, |p| p.drive(now));
            }
            self.scratch = driving;
        }
    }

    fn route(&mut self, effect: Effect) {
        match effect {
            Effect::Event(event) => self.emit(event),
            Effect::TrackPublished { source, kind, label } => {
                let Some(publisher) = self.participants.get(&source.publisher) else {
                    return;
                };
                if !publisher.forwarding {
                    // Subscriptions are made when the publisher is admitted.
                    return;
                }
                let subscribers = self.forwarding_peers(source.publisher);
                for &subscriber in &subscribers {
                    self.guarded(subscriber, |p| p.subscribe(source, kind, &label));
                    self.dirty.push(subscriber);
                }
                self.scratch = subscribers;
            }
            Effect::TrackUnpublished { source } => {
                let Some(session) = self.participants.get(&source.publisher).map(|p| p.session) else {
                    return;
                };
                let others: Vec<ParticipantKey> =
                    self.in_session(session).filter(|p| p.key != source.publisher).map(|p| p.key).collect();
                for other in others {
                    self.guarded(other, |p| p.sources_gone(|s| *s == source));
                    self.dirty.push(other);
                }
            }
            Effect::Media { publisher, data } => {
                if !self.participants.get(&publisher).is_some_and(|p| p.forwarding) {
                    return;
                }
                let now = self.now;
                let subscribers = self.forwarding_peers(publisher);
                for &subscriber in &subscribers {
                    self.guarded(subscriber, |p| p.write_media(publisher, &data, now));
                    self.dirty.push(subscriber);
                }
                self.scratch = subscribers;
            }
            Effect::KeyframeWanted { source, rid, kind } => {
                let now = self.now;
                self.guarded(source.publisher, |p| p.request_keyframe(source.mid, rid, kind, now));
                self.dirty.push(source.publisher);
            }
        }
    }

    /// The other admitted participants of `key`'s session; empty unless `key` is admitted.
    /// Gathered in the scratch list, which the caller puts back when done with it.
    fn forwarding_peers(&mut self, key: ParticipantKey) -> Vec<ParticipantKey> {
        let mut peers = std::mem::take(&mut self.scratch);
        peers.clear();
        if let Some(me) = self.participants.get(&key).filter(|me| me.forwarding) {
            let session = me.session;
            peers.extend(
                self.in_session(session).filter(|p| p.key != key && p.forwarding && p.ending.is_none()).map(|p| p.key),
            );
        }
        peers
    }

    /// The participants of one session still on the gateway.
    fn in_session(&self, session: SessionKey) -> impl Iterator<Item = &Participant> {
        let members = self.members.get(&session).map_or(&[][..], Vec::as_slice);
        members.iter().filter_map(|key| self.participants.get(key))
    }

    /// Takes a participant off the gateway's books (its session's members included).
    fn remove(&mut self, key: ParticipantKey) -> Option<Participant> {
        let removed = self.participants.remove(&key)?;
        if let Some(members) = self.members.get_mut(&removed.session) {
            members.retain(|k| *k != key);
            if members.is_empty() {
                self.members.remove(&removed.session);
            }
        }
        Some(removed)
    }

    /// Runs `work` on one participant under `catch_unwind` and collects what it produced.
    ///
    /// A panic ends that participant alone with `SfuEvent::Failed`; an ending decided inside
    /// the participant (ICE timeout, engine error) removes it the same way.
    fn guarded<R>(&mut self, key: ParticipantKey, work: impl FnOnce(&mut Participant) -> R) -> Option<R> {
        let participant = self.participants.get_mut(&key)?;
        #[cfg(test)]
        let inject = self.panic_next.take_if(|k| *k == key).is_some();
        let result = catch_unwind(AssertUnwindSafe(|| {
            #[cfg(test)]
            if inject {
                panic!("injected test panic");
            }
            work(participant)
        }));
        match result {
            Ok(value) => {
                self.outbox.append(&mut participant.datagrams);
                self.effects.extend(participant.effects.drain(..));
                if let Some(ending) = participant.ending.clone() {
                    self.end(key, ending);
                }
                Some(value)
            }
            Err(_) => {
                warn!(participant = %key, "media handling panicked; ending this participant only");
                self.end(key, Ending::Failed(FailureReason::Panicked));
                None
            }
        }
    }

    /// Removes a participant whose connection ended and tells the caller.
    fn end(&mut self, key: ParticipantKey, ending: Ending) {
        let Some(removed) = self.remove(key) else {
            return;
        };
        let event = match ending {
            Ending::Disconnected(reason) => {
                info!(participant = %key, %reason, "participant disconnected");
                SfuEvent::Disconnected { participant: key, reason }
            }
            Ending::Failed(reason) => {
                warn!(participant = %key, %reason, "participant failed");
                SfuEvent::Failed { participant: key, reason }
            }
        };
        // Queue, don't emit: events already queued for this participant must come first.
        self.effects.push_back(Effect::Event(event));
        self.forget_addresses_of(key);
        self.close_tcp_of(key);
        self.publisher_left(removed.session, key);
    }

    fn forget_addresses_of(&mut self, key: ParticipantKey) {
        self.owners.retain(|_, owner| *owner != key);
    }

    /// Closes the ICE-TCP connections a departed participant validated: dropping the write
    /// queue ends the connection task, so a client cannot keep a connection past its call.
    /// Packets still in flight from it find no entry and are dropped.
    fn close_tcp_of(&mut self, key: ParticipantKey) {
        self.tcp_conns.retain(|_, c| c.owner != Some(key));
    }

    /// Stops the m-lines that carried a departed participant's tracks to the others.
    fn publisher_left(&mut self, session: SessionKey, publisher: ParticipantKey) {
        let others: Vec<ParticipantKey> = self.in_session(session).map(|p| p.key).collect();
        for other in others {
            self.guarded(other, |p| p.sources_gone(|s| s.publisher == publisher));
            self.dirty.push(other);
        }
    }

    fn emit(&mut self, event: SfuEvent) {
        self.subscribers.retain(|s| s.send(event.clone()).is_ok());
    }
}

/// What ended the loop's wait.
enum Woken {
    Command(Command),
    /// The UDP socket has datagrams waiting.
    Readable,
    Tcp(TcpEvent),
    /// A deadline passed (or a receive error that needs no handling).
    Timeout,
}

/// The media loop's side of one ICE-TCP connection.
struct TcpConn {
    /// Tells a stale entry from a newer connection that reuses the same client address.
    conn: ConnId,
    /// The connection's bounded write queue; the loop never waits on it.
    outgoing: mpsc::Sender<DatagramSend>,
    /// Present until a participant accepts a STUN binding request from this connection.
    /// While present, nothing is sent to the connection and only binding requests are read.
    on_validated: Option<oneshot::Sender<()>>,
    /// The participant that validated the connection; the connection ends with it.
    owner: Option<ParticipantKey>,
}

/// The next ICE-TCP event, or never when ICE-TCP is off, so `select!` can always list it.
async fn next_tcp_event(tcp: &mut Option<mpsc::Receiver<TcpEvent>>) -> Option<TcpEvent> {
    match tcp {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends queued datagrams over the transport str0m chose for each. A datagram that cannot go
/// is dropped, as UDP would drop it anyway; NACK and RTX repair media, and STUN and DTLS
/// retransmit.
async fn flush(socket: &UdpSocket, tcp: &HashMap<SocketAddr, TcpConn>, outbox: &mut Vec<Transmit>) {
    for transmit in outbox.extract_if(.., |t| t.proto != Protocol::Udp) {
        match transmit.proto {
            Protocol::Tcp => send_tcp(tcp, transmit.destination, transmit.contents),
            // The gateway offers no such candidate, so str0m has no pair that uses one.
            _ => debug!("datagram for an unserved transport dropped"),
        }
    }
    udp_batch::send_all(socket, outbox).await;
    outbox.clear();
}

/// Queues a packet on the client's own ICE-TCP connection. The gateway never dials: with no
/// live, validated connection from that address, the packet is dropped.
fn send_tcp(tcp: &HashMap<SocketAddr, TcpConn>, destination: SocketAddr, datagram: DatagramSend) {
    let Some(conn) = tcp.get(&destination).filter(|c| c.on_validated.is_none()) else {
        debug!("no live ICE-TCP connection for a datagram; dropped");
        return;
    };
    match conn.outgoing.try_send(datagram) {
        Ok(()) => {}
        // The client reads slower than media arrives: shed load here rather than queue
        // without bound; the connection task closes a client that stops reading altogether.
        Err(TrySendError::Full(_)) => debug!("ICE-TCP write queue full; datagram dropped"),
        Err(TrySendError::Closed(_)) => debug!("ICE-TCP connection closing; datagram dropped"),
    }
}
