//! Tests that drive the media loop without sockets and in virtual time: an in-process str0m
//! client and the loop exchange packets by hand, and the clock only moves when the test says.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::sync::{mpsc, oneshot};

use super::config::Advertised;
use super::handle::{Command, parse_offer};
use super::media_loop::MediaLoop;
use super::{LinkQuality, ParticipantKey, SessionKey, SfuEvent, rtc_config};

const GATEWAY: &str = "192.0.2.1:8443";
const CLIENT: &str = "198.51.100.7:50000";

/// A client and the media loop, wired together by the test, sharing one virtual clock.
struct Wire {
    media: MediaLoop,
    client: Rtc,
    events: mpsc::UnboundedReceiver<SfuEvent>,
    /// When false, the client's packets are lost on the way, as when its network drops.
    client_reachable: bool,
    client_connected: bool,
    /// Quality reports seen so far, oldest first.
    qualities: Vec<LinkQuality>,
}

impl Wire {
    fn new(t0: Instant) -> Wire {
        let gateway: SocketAddr = GATEWAY.parse().unwrap();
        let mut media = MediaLoop::new(rtc_config(), Advertised { udp: vec![gateway], tcp: Vec::new() });
        media.now = t0;
        let (events_tx, events) = mpsc::unbounded_channel();
        media.handle_command(Command::Subscribe(events_tx));

        let mut client = Rtc::builder().build(t0);
        client.add_local_candidate(Candidate::host(CLIENT.parse().unwrap(), "udp").unwrap()).unwrap();
        let mut change = client.sdp_api();
        change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        change.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().unwrap();

        let (reply, mut answer) = oneshot::channel();
        let offer = parse_offer(&offer.to_sdp_string()).unwrap();
        let participant = ParticipantKey(1);
        media.handle_command(Command::AddParticipant {
            session: SessionKey(1),
            participant,
            reached: None,
            offer,
            reply,
        });
        let answer = answer.try_recv().unwrap().unwrap();
        client.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
        Wire { media, client, events, client_reachable: true, client_connected: false, qualities: Vec::new() }
    }

    /// Runs both sides until `until` in virtual time, delivering packets instantly.
    fn run_until(&mut self, until: Instant) {
        let (gateway, client) = (GATEWAY.parse().unwrap(), CLIENT.parse().unwrap());
        loop {
            // The client's turn: everything it wants to send, then its next deadline.
            let client_wake = loop {
                match self.client.poll_output().unwrap() {
                    Output::Timeout(t) => break t,
                    Output::Transmit(t) if self.client_reachable => {
                        self.media.handle_datagram(Protocol::Udp, &t.contents, client);
                    }
                    Output::Transmit(_) => {}
                    Output::Event(Event::Connected) => {
                        self.client_connected = true;
                    }
                    Output::Event(_) => {}
                }
            };
            // The gateway's turn, then deliver what it sent.
            self.media.turn();
            for transmit in std::mem::take(&mut self.media.outbox) {
                assert_eq!(transmit.destination, client, "the gateway sent to an address it never heard from");
                let receive = Receive::new(Protocol::Udp, gateway, client, &transmit.contents).unwrap();
                self.client.handle_input(Input::Receive(self.media.now, receive)).unwrap();
            }
            let next = client_wake.min(self.media.next_wake()).max(self.media.now);
            if next >= until {
                self.media.now = until;
                self.client.handle_input(Input::Timeout(until)).unwrap();
                self.media.turn();
                return;
            }
            // Never stand still: a deadline equal to now is served, then time moves on.
            self.media.now = next.max(self.media.now + Duration::from_millis(1));
            self.client.handle_input(Input::Timeout(self.media.now)).unwrap();
        }
    }

    /// The next event other than a quality report; those are kept in `qualities`.
    fn next_event(&mut self) -> Option<SfuEvent> {
        loop {
            match self.events.try_recv().ok()? {
                SfuEvent::Quality { quality, .. } => self.qualities.push(quality),
                event => return Some(event),
            }
        }
    }
}

#[test]
fn a_client_that_goes_silent_is_reported_disconnected_in_virtual_time() {
    let t0 = Instant::now();
    let mut wire = Wire::new(t0);
    wire.run_until(t0 + Duration::from_secs(2));
    assert!(wire.client_connected, "the client never connected");
    assert_eq!(wire.next_event(), Some(SfuEvent::Connected { participant: ParticipantKey(1) }));

    // A minute of virtual time with the client answering keeps the call up...
    wire.run_until(t0 + Duration::from_secs(62));
    assert_eq!(wire.next_event(), None, "a healthy client was dropped");

    // ...and once its packets stop arriving, ICE consent runs out and the caller hears of it.
    wire.client_reachable = false;
    let silent_from = wire.media.now;
    let mut ended = None;
    while ended.is_none() && wire.media.now < silent_from + Duration::from_secs(120) {
        let step = wire.media.now + Duration::from_secs(1);
        wire.run_until(step);
        ended = wire.next_event();
    }
    let Some(SfuEvent::Disconnected { participant, reason }) = ended else {
        panic!("no disconnection after two minutes of silence: {ended:?}");
    };
    assert_eq!(participant, ParticipantKey(1));
    assert_eq!(reason, super::DisconnectReason::IceDisconnected);
    // Consent freshness (RFC 7675) gives up within about 30 s, not at once.
    let after = wire.media.now - silent_from;
    assert!(after >= Duration::from_secs(2) && after <= Duration::from_secs(45), "after {after:?}");
}

#[test]
fn a_connected_clients_quality_is_reported_every_stats_interval_and_no_more() {
    let t0 = Instant::now();
    let mut wire = Wire::new(t0);
    wire.run_until(t0 + Duration::from_secs(2));
    assert_eq!(wire.next_event(), Some(SfuEvent::Connected { participant: ParticipantKey(1) }));
    let reported_before = wire.qualities.len();
    wire.run_until(t0 + Duration::from_secs(22));
    assert_eq!(wire.next_event(), None);
    // Twenty seconds at one report per two-second interval, give or take the edges.
    let reports = wire.qualities.len() - reported_before;
    assert!((9..=11).contains(&reports), "{reports} quality reports in 20 s");
    // A client that sends and receives no media has no loss or round trip to report.
    let last = wire.qualities.last().unwrap();
    assert_eq!((last.loss_in, last.loss_out, last.bitrate_in), (None, None, 0), "{last:?}");
}
