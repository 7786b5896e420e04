//! The forwarding hot path: one media packet in, N out, through the gateway's own media loop
//! (driven by hand through `sfu::sans_io`, the `bench` feature) with real str0m peers in
//! virtual time. What is timed is the gateway's handling of the publisher's packet: finding its
//! owner, SRTP unprotect, depacketising, routing to every subscriber, packetising and SRTP
//! protect for each, and collecting the datagrams to send. The clients' own work, and the
//! gateway's handling of their feedback (RTCP, consent checks), happen between samples.
//!
//! `cargo bench --features bench --bench forwarding`.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gatehouse::sfu::sans_io::SansIoMediaLoop;
use gatehouse::sfu::{ParticipantKey, SessionKey, SfuEvent};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Candidate, Event, Input, Output, Rtc};

const GATEWAY: &str = "192.0.2.1:8443";
const SUBSCRIBERS: [usize; 3] = [1, 3, 10];
/// How long the pacer may hold a packet before the sample counts as lost.
const PACER_PATIENCE: Duration = Duration::from_millis(250);
/// Other consultations on the gateway in the busy case.
const BYSTANDERS: usize = 100;

/// What the publisher sends, as the load tool does: Opus-sized audio at 50 packets/s and
/// 1000-byte one-packet VP8 frames at 187.5/s (1.5 Mbit/s).
#[derive(Clone, Copy)]
struct Stream {
    name: &'static str,
    kind: MediaKind,
    codec: Codec,
    bytes: usize,
    interval: Duration,
    clock: Frequency,
}

const AUDIO: Stream = Stream {
    name: "audio_120B",
    kind: MediaKind::Audio,
    codec: Codec::Opus,
    bytes: 120,
    interval: Duration::from_millis(20),
    clock: Frequency::FORTY_EIGHT_KHZ,
};
const VIDEO: Stream = Stream {
    name: "video_1000B",
    kind: MediaKind::Video,
    codec: Codec::Vp8,
    bytes: 1000,
    interval: Duration::from_micros(5333),
    clock: Frequency::NINETY_KHZ,
};

struct Peer {
    key: ParticipantKey,
    addr: SocketAddr,
    rtc: Rtc,
    /// The m-line of its own offer: what the publisher sends on.
    mid: Mid,
    /// Media frames this peer received.
    received: u64,
}

/// One publisher and its subscribers in one session, and the gateway between them.
struct Call {
    gateway: SansIoMediaLoop,
    gateway_addr: SocketAddr,
    /// The publisher first.
    peers: Vec<Peer>,
    by_addr: HashMap<SocketAddr, usize>,
    now: Instant,
    sent_frames: u64,
}

impl Call {
    /// A publisher and `subscribers` in one session, beside `bystanders` other connected
    /// two-person sessions that send nothing: they only make the gateway's tables larger.
    fn new(subscribers: usize, stream: Stream, bystanders: usize) -> Call {
        let now = Instant::now();
        let gateway_addr: SocketAddr = GATEWAY.parse().unwrap();
        let mut gateway = SansIoMediaLoop::new(gateway_addr, now);
        let mut peers = Vec::new();
        let in_call = (0..=subscribers).map(|index| (SessionKey(1), index == 0));
        let beside = (0..2 * bystanders).map(|index| (SessionKey(2 + index as u64 / 2), false));
        for (index, (session, publishes)) in in_call.chain(beside).enumerate() {
            let addr = SocketAddr::from(([198, 51, 100 + (index / 250) as u8, 1 + (index % 250) as u8], 50_000));
            let key = ParticipantKey(index as u64 + 1);
            let mut rtc = Rtc::builder().build(now);
            rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap()).unwrap();
            let mut change = rtc.sdp_api();
            // The publisher sends the stream; the others only receive what the gateway adds.
            let direction = if publishes { Direction::SendOnly } else { Direction::RecvOnly };
            let mid = change.add_media(stream.kind, direction, None, None, None);
            let (offer, pending) = change.apply().unwrap();
            let answer = gateway.add_participant(session, key, &offer.to_sdp_string()).unwrap();
            rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
            peers.push(Peer { key, addr, rtc, mid, received: 0 });
        }
        let by_addr = peers.iter().enumerate().map(|(i, p)| (p.addr, i)).collect();
        let mut call = Call { gateway, gateway_addr, peers, by_addr, now, sent_frames: 0 };
        for key in call.peers.iter().map(|p| p.key).collect::<Vec<_>>() {
            call.gateway.set_forwarding(key, true).unwrap();
        }
        call.run_until(now + Duration::from_secs(2));
        // Until every subscriber gets the publisher's frames (their m-lines are negotiated and
        // the first packets pass), at most ten seconds of virtual time.
        let deadline = call.now + Duration::from_secs(10);
        while call.peers[1..=subscribers].iter().any(|p| p.received == 0) {
            assert!(call.now < deadline, "the subscribers never received the publisher's media");
            call.step(stream);
            let packets = call.publish(stream);
            for packet in &packets {
                call.gateway.receive(call.now, call.peers[0].addr, packet);
            }
            call.deliver_gateway_output();
        }
        call
    }

    /// Runs clients and gateway until `until`, delivering every packet at once, answering the
    /// gateway's offers.
    fn run_until(&mut self, until: Instant) {
        loop {
            let mut client_wake = until;
            for index in 0..self.peers.len() {
                client_wake = client_wake.min(self.poll_peer(index));
            }
            self.gateway.advance(self.now);
            self.deliver_gateway_output();
            let next = client_wake.min(self.gateway.next_wake()).max(self.now);
            if next >= until {
                self.now = until;
                for peer in &mut self.peers {
                    peer.rtc.handle_input(Input::Timeout(until)).unwrap();
                }
                self.gateway.advance(until);
                self.deliver_gateway_output();
                return;
            }
            self.now = next.max(self.now + Duration::from_micros(100));
            for peer in &mut self.peers {
                peer.rtc.handle_input(Input::Timeout(self.now)).unwrap();
            }
        }
    }

    /// Moves time on by one frame interval and lets everyone catch up.
    fn step(&mut self, stream: Stream) {
        let until = self.now + stream.interval;
        self.run_until(until);
    }

    /// Everything one peer wants to send goes to the gateway; returns the peer's next deadline.
    fn poll_peer(&mut self, index: usize) -> Instant {
        loop {
            match self.peers[index].rtc.poll_output().unwrap() {
                Output::Timeout(t) => return t,
                Output::Transmit(t) => self.gateway.receive(self.now, self.peers[index].addr, &t.contents),
                Output::Event(Event::MediaData(_)) => self.peers[index].received += 1,
                Output::Event(_) => {}
            }
        }
    }

    /// Delivers the gateway's datagrams to their peers and answers its offers.
    fn deliver_gateway_output(&mut self) {
        let out: Vec<Transmit> = self.gateway.transmits().collect();
        self.deliver(out);
        while let Some(event) = self.gateway.next_event() {
            if let SfuEvent::Offer { participant, sdp } = event {
                let peer = self.peers.iter_mut().find(|p| p.key == participant).unwrap();
                let offer = SdpOffer::from_sdp_string(&sdp).unwrap();
                let answer = peer.rtc.sdp_api().accept_offer(offer).unwrap();
                self.gateway.answer(participant, &answer.to_sdp_string()).unwrap();
            }
        }
    }

    fn deliver(&mut self, transmits: Vec<Transmit>) {
        for transmit in transmits {
            let Some(&index) = self.by_addr.get(&transmit.destination) else { continue };
            let receive = Receive::new(Protocol::Udp, self.gateway_addr, transmit.destination, &transmit.contents);
            self.peers[index].rtc.handle_input(Input::Receive(self.now, receive.unwrap())).unwrap();
        }
    }

    /// The publisher writes one frame; returns the datagrams it sends for it.
    fn publish(&mut self, stream: Stream) -> Vec<Vec<u8>> {
        self.sent_frames += 1;
        let mid = self.peers[0].mid;
        let publisher = &mut self.peers[0].rtc;
        let writer = publisher.writer(mid).unwrap();
        let pt = writer.payload_params().find(|p| p.spec().codec == stream.codec).unwrap().pt();
        let ticks = stream.interval.as_micros() as u64 * u64::from(stream.clock.get()) / 1_000_000;
        let time = MediaTime::new(self.sent_frames * ticks, stream.clock);
        let mut frame = vec![0x5a; stream.bytes];
        frame[0] = 0x10; // VP8: an inter frame; harmless as Opus bytes.
        writer.write(pt, self.now, time, frame).unwrap();
        // str0m queues the frame's packets and sends them on a timeout at most a pacing
        // interval away: the publisher's clock (and so the packet's arrival) moves to it.
        let mut packets = Vec::new();
        let mut due = self.now;
        while packets.is_empty() && due < self.now + stream.interval {
            self.now = due;
            publisher.handle_input(Input::Timeout(due)).unwrap();
            due = loop {
                match publisher.poll_output().unwrap() {
                    Output::Transmit(t) => packets.push(t.contents.to_vec()),
                    Output::Event(_) => {}
                    Output::Timeout(t) => break t.max(due + Duration::from_micros(1)),
                }
            };
        }
        packets
    }
}

fn forwarding(c: &mut Criterion) {
    for stream in [AUDIO, VIDEO] {
        let mut group = c.benchmark_group(format!("forward_{}", stream.name));
        group.throughput(Throughput::Elements(1));
        for subscribers in SUBSCRIBERS {
            let mut call = Call::new(subscribers, stream, 0);
            group.bench_with_input(BenchmarkId::new("subscribers", subscribers), &subscribers, |b, &n| {
                b.iter_custom(|iters| forward(&mut call, stream, n, iters))
            });
        }
        group.finish();
    }
    // The same packet with a busy gateway around it: what finding the packet's owner among
    // many participants costs. Fewer samples, since the bystanders' own traffic between
    // samples is simulated too.
    let mut group = c.benchmark_group(format!("forward_{}_beside_{BYSTANDERS}_consultations", AUDIO.name));
    group.throughput(Throughput::Elements(1)).sample_size(10).measurement_time(Duration::from_millis(300));
    let mut call = Call::new(1, AUDIO, BYSTANDERS);
    group.bench_function(BenchmarkId::new("subscribers", 1), |b| {
        b.iter_custom(|iters| forward(&mut call, AUDIO, 1, iters))
    });
    group.finish();
}

/// `iters` frames from the publisher, each one packet in and at least `subscribers` media
/// packets out; returns the time the gateway spent on them. When str0m's pacer holds a packet
/// for a later turn (a bandwidth estimate below the stream's rate), those turns are timed too.
fn forward(call: &mut Call, stream: Stream, subscribers: usize, iters: u64) -> Duration {
    let media = |out: &[Transmit]| out.iter().filter(|t| t.contents.len() >= stream.bytes).count();
    let mut spent = Duration::ZERO;
    for _ in 0..iters {
        call.step(stream);
        let packets = call.publish(stream);
        let start = Instant::now();
        for packet in &packets {
            call.gateway.receive(call.now, call.peers[0].addr, black_box(packet));
        }
        let mut out: Vec<Transmit> = call.gateway.transmits().collect();
        let released_by = call.now + PACER_PATIENCE;
        while media(&out) < subscribers && call.now < released_by {
            call.now = call.gateway.next_wake().clamp(call.now + Duration::from_micros(100), released_by);
            call.gateway.advance(call.now);
            out.extend(call.gateway.transmits());
        }
        spent += start.elapsed();
        let media_out = media(&out);
        assert!(media_out >= subscribers, "{media_out} media packets out for {subscribers} subscribers");
        call.deliver(out);
    }
    spent
}

criterion_group!(benches, forwarding);
criterion_main!(benches);
