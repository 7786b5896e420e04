//! The media loop without its socket, for benchmarks outside the crate (the `bench` feature):
//! benches link the library only through its public API, and this is the one deliberate seam
//! through which they drive the very `MediaLoop` the gateway runs, with datagrams and a virtual
//! clock, so what they measure is the forwarding path itself. Hidden from the documentation: no
//! other part of the gateway uses it.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::change::SdpAnswer;
use str0m::net::{Protocol, Transmit};
use tokio::sync::{mpsc, oneshot};

use super::config::Advertised;
use super::handle::{Command, parse_offer};
use super::media_loop::MediaLoop;
use super::{ParticipantKey, SessionKey, SfuError, SfuEvent, rtc_config};

/// The media loop and its event stream, driven by hand.
pub struct SansIoMediaLoop {
    media: MediaLoop,
    events: mpsc::UnboundedReceiver<SfuEvent>,
}

impl SansIoMediaLoop {
    /// A media loop that advertises `gateway` as its one UDP candidate, its clock at `now`.
    pub fn new(gateway: SocketAddr, now: Instant) -> Self {
        let mut media = MediaLoop::new(rtc_config(), Advertised { udp: vec![gateway], tcp: Vec::new() });
        media.now = now;
        let (subscriber, events) = mpsc::unbounded_channel();
        media.handle_command(Command::Subscribe(subscriber));
        SansIoMediaLoop { media, events }
    }

    /// As `SfuHandle::add_participant`: the gateway's answer to the client's offer.
    pub fn add_participant(
        &mut self,
        session: SessionKey,
        participant: ParticipantKey,
        offer_sdp: &str,
    ) -> Result<String, SfuError> {
        let offer = parse_offer(offer_sdp)?;
        self.call(|reply| Command::AddParticipant { session, participant, reached: None, offer, reply })?
    }

    /// As `SfuHandle::answer`.
    pub fn answer(&mut self, participant: ParticipantKey, answer_sdp: &str) -> Result<(), SfuError> {
        let answer = SdpAnswer::from_sdp_string(answer_sdp).map_err(|e| SfuError::BadSdp(e.to_string()))?;
        self.call(|reply| Command::Answer { participant, answer, reply })?
    }

    /// As `SfuHandle::set_forwarding`.
    pub fn set_forwarding(&mut self, participant: ParticipantKey, enabled: bool) -> Result<(), SfuError> {
        self.call(|reply| Command::SetForwarding { participant, enabled, reply })?
    }

    /// The next event the loop reported, if any.
    pub fn next_event(&mut self) -> Option<SfuEvent> {
        self.events.try_recv().ok()
    }

    /// One UDP datagram from `source` arrives at `now`; the loop handles it and settles, as
    /// its `run` does for each datagram from the socket.
    pub fn receive(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        self.media.now = now;
        self.media.handle_datagram(Protocol::Udp, datagram, source);
        self.media.turn();
    }

    /// Time moves to `now` with nothing arriving: the loop serves whatever is due.
    pub fn advance(&mut self, now: Instant) {
        self.media.now = now;
        self.media.turn();
    }

    /// When the loop must next run even if nothing arrives.
    pub fn next_wake(&self) -> Instant {
        self.media.next_wake()
    }

    /// The datagrams the loop would send now, taken out of its outbox.
    pub fn transmits(&mut self) -> std::vec::Drain<'_, Transmit> {
        self.media.outbox.drain(..)
    }

    /// Hands a command to the loop; every reply is sent before `handle_command` returns.
    fn call<T>(&mut self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, SfuError> {
        let (reply, mut response) = oneshot::channel();
        self.media.handle_command(command(reply));
        response.try_recv().map_err(|_| SfuError::Stopped)
    }
}
